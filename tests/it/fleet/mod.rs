//! The fleet against a real PostgreSQL server (`common::postgres`): slot claims under a race,
//! an instance that goes silent (a frozen process: its heartbeat stops, nothing else) losing
//! its targets once its lease runs out with nothing claimed twice, a clean leave handing over at
//! once, an unreachable database running nothing and saying so, and (`daemons.rs`) two whole
//! daemons sharing the targets with one of them on a skewed clock, and (`replicate.rs`) three
//! whole daemons checking every target from three vantage points, one of them intercepted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod daemons;
mod replicate;
mod shard_e2e;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use teewatch::fleet::{Fleet, FleetError, FleetMode, FleetSettings, rendezvous};
use teewatch::metrics::Metrics;

use crate::common::postgres::fresh_database;

/// The fleet's schema, applied to a fresh database as the store's migrator will.
const FLEET_SQL: [&str; 2] = [
    include_str!("../../../migrations/postgres/0005_fleet.sql"),
    include_str!("../../../migrations/postgres/0006_claim_hand_over.sql"),
];

/// A fresh database holding the fleet's tables.
pub async fn fleet_database(label: &str) -> String {
    let url = fresh_database(label).await;
    let pool = pool(&url, 1).await;
    for sql in FLEET_SQL {
        sqlx::raw_sql(sql).execute(&pool).await.unwrap();
    }
    pool.close().await;
    url
}

pub async fn pool(url: &str, connections: u32) -> PgPool {
    PgPoolOptions::new()
        .max_connections(connections)
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"))
}

fn settings(name: &str, mode: FleetMode, vantage: &str, lease: Duration) -> FleetSettings {
    FleetSettings {
        instance: name.into(),
        mode,
        vantage: vantage.into(),
        lease,
    }
}

async fn join(url: &str, s: FleetSettings, targets: &[String]) -> Fleet {
    Fleet::join(pool(url, 2).await, s, Metrics::new().unwrap(), targets)
        .await
        .unwrap_or_else(|e| panic!("joining: {e}"))
}

fn targets(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("model-{i:03}")).collect()
}

/// Every claim of a slot: target → instance.
async fn claims_of(url: &str, slot: i64) -> BTreeMap<String, String> {
    let pool = pool(url, 1).await;
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT target, instance FROM slot_claims WHERE slot_at = $1")
            .bind(slot)
            .fetch_all(&pool)
            .await
            .unwrap();
    pool.close().await;
    rows.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_many_racing_claims_of_one_slot_exactly_one_wins_per_vantage_point() {
    let url = fleet_database("fleet race").await;
    let lease = Duration::from_secs(30);
    let mut fleets = Vec::new();
    for i in 0..10 {
        let vantage = if i < 7 { "eu-1" } else { "us-1" };
        let s = settings(&format!("mon-{i}"), FleetMode::Replicate, vantage, lease);
        fleets.push(Arc::new(join(&url, s, &[]).await));
    }
    for slot in 0..8i64 {
        let mut racing = Vec::new();
        for fleet in &fleets {
            let fleet = fleet.clone();
            racing.push(tokio::spawn(async move {
                let won = fleet.may_run("model-000", slot).await.unwrap();
                (
                    fleet.vantage().to_string(),
                    fleet.instance().to_string(),
                    won,
                )
            }));
        }
        let mut winners: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for r in racing {
            let (vantage, instance, won) = r.await.unwrap();
            if won.is_some() {
                winners.entry(vantage).or_default().push(instance);
            }
        }
        assert_eq!(winners.len(), 2, "slot {slot}: {winners:?}");
        for (vantage, won) in &winners {
            assert_eq!(won.len(), 1, "slot {slot} {vantage}: {won:?}");
        }
    }
    let pool = pool(&url, 1).await;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM slot_claims")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 16, "one claim per slot and vantage point");
}

/// Asks every fleet in order whether it runs each target's `slot`; returns target → winner and
/// the errors each instance got.
async fn run_slot(
    fleets: &[&Fleet],
    names: &[String],
    slot: i64,
) -> (BTreeMap<String, String>, BTreeMap<String, Vec<String>>) {
    let mut winners = BTreeMap::new();
    let mut errors: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for t in names {
        for fleet in fleets {
            match fleet.may_run(t, slot).await {
                Ok(Some(_)) => {
                    let before = winners.insert(t.clone(), fleet.instance().to_string());
                    assert_eq!(before, None, "{t} slot {slot} run twice");
                }
                Ok(None) => {}
                Err(e) => errors
                    .entry(fleet.instance().to_string())
                    .or_default()
                    .push(e.to_string()),
            }
        }
    }
    (winners, errors)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_instance_loses_its_targets_after_its_lease_and_nothing_is_claimed_twice() {
    let url = fleet_database("fleet silent").await;
    let lease = Duration::from_secs(2);
    let names = targets(300);
    let [a, b, c] = ["mon-a", "mon-b", "mon-c"];
    let fa = join(&url, settings(a, FleetMode::Shard, "", lease), &names).await;
    let fb = join(&url, settings(b, FleetMode::Shard, "", lease), &names).await;
    let fc = join(&url, settings(c, FleetMode::Shard, "", lease), &names).await;
    for f in [&fa, &fb, &fc] {
        f.beat(&names).await.unwrap();
    }
    let all = [a, b, c];
    let (winners, errors) = run_slot(&[&fa, &fb, &fc], &names, 1).await;
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(winners.len(), names.len());
    for (t, w) in &winners {
        assert_eq!(Some(w.as_str()), rendezvous::owner(t, &all), "{t}");
    }
    assert_eq!(claims_of(&url, 1).await, winners);

    // mon-b freezes: its heartbeat stops, nothing else about it changes. The others keep
    // beating until the database's clock says its lease ran out.
    let mut gone = false;
    for _ in 0..100 {
        fa.beat(&names).await.unwrap();
        fc.beat(&names).await.unwrap();
        if fa.peers().iter().any(|p| p.name == b && !p.live())
            && fc.peers().iter().any(|p| p.name == b && !p.live())
        {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "mon-b still live to its peers: {:?}", fa.peers());
    // Its own view is older than its lease too by now, so it refuses to run anything: a frozen
    // process that wakes up does not run its old targets on a stale view.
    tokio::time::sleep(lease).await;
    for f in [&fa, &fc, &fa, &fc] {
        f.beat(&names).await.unwrap();
    }
    let (winners, errors) = run_slot(&[&fa, &fc, &fb], &names, 2).await;
    assert_eq!(winners.len(), names.len(), "every target taken over");
    let b_errors = &errors[b];
    assert_eq!(b_errors.len(), names.len(), "{errors:?}");
    assert!(
        b_errors[0].starts_with("this instance's lease may have run out"),
        "{b_errors:?}"
    );
    assert_eq!(errors.len(), 1, "{errors:?}");
    let survivors = [a, c];
    for (t, w) in &winners {
        assert_eq!(Some(w.as_str()), rendezvous::owner(t, &survivors), "{t}");
        let before = rendezvous::owner(t, &all);
        if before != Some(b) {
            assert_eq!(before, Some(w.as_str()), "{t} moved from a live instance");
        }
    }
    assert_eq!(claims_of(&url, 2).await, winners);

    // It wakes up: after a heartbeat it owns its targets again, from the next slot on. (Each
    // beats twice, so that every view holds every peer's fresh heartbeat.)
    for f in [&fb, &fa, &fc, &fb, &fa, &fc] {
        f.beat(&names).await.unwrap();
    }
    let (winners, errors) = run_slot(&[&fb, &fa, &fc], &names, 3).await;
    assert!(errors.is_empty(), "{errors:?}");
    for (t, w) in &winners {
        assert_eq!(Some(w.as_str()), rendezvous::owner(t, &all), "{t}");
    }
    // And a slot already claimed stays with its claimer, whoever asks again.
    for t in names.iter().take(20) {
        for f in [&fa, &fb, &fc] {
            assert!(
                f.may_run(t, 2).await.unwrap().is_none(),
                "{t} slot 2 claimed twice"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_leave_hands_the_targets_over_at_once() {
    let url = fleet_database("fleet leave").await;
    // A lease far longer than the test: only the leave can explain the take-over.
    let lease = Duration::from_secs(600);
    let names = targets(60);
    let fa = join(&url, settings("mon-a", FleetMode::Shard, "", lease), &names).await;
    let fb = Arc::new(join(&url, settings("mon-b", FleetMode::Shard, "", lease), &names).await);
    fa.beat(&names).await.unwrap();
    let owned_by_b = names
        .iter()
        .filter(|t| fa.owner_of(t).as_deref() == Some("mon-b"))
        .count();
    assert!(owned_by_b > 10, "mon-b owns {owned_by_b}");
    let heartbeat = teewatch::fleet::heartbeat::Heartbeat::spawn(fb.clone(), {
        let names = names.clone();
        Box::new(move || names.clone())
    });
    heartbeat.stop().await;
    fa.beat(&names).await.unwrap();
    let b_row = fa.peers().into_iter().find(|p| p.name == "mon-b").unwrap();
    assert!(!b_row.live(), "{b_row:?}");
    for t in &names {
        assert_eq!(fa.owner_of(t).as_deref(), Some("mon-a"), "{t}");
        assert!(fa.may_run(t, 1).await.unwrap().is_some(), "{t}");
        assert!(matches!(fb.may_run(t, 1).await, Err(FleetError::Left)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_runs_nothing_and_says_so() {
    let url = fleet_database("fleet unreachable").await;
    let names = targets(5);
    let p = pool(&url, 2).await;
    let s = settings("mon-a", FleetMode::Shard, "", Duration::from_secs(30));
    let fleet = Fleet::join(p.clone(), s, Metrics::new().unwrap(), &names)
        .await
        .unwrap();
    assert_eq!(fleet.not_ready(), None);
    assert!(fleet.may_run(&names[0], 1).await.unwrap().is_some());
    p.close().await;
    let e = fleet.may_run(&names[1], 1).await.unwrap_err();
    assert!(matches!(e, FleetError::Database(_)), "{e}");
    let e = fleet.beat(&names).await.unwrap_err();
    assert!(matches!(e, FleetError::Database(_)), "{e}");
    let reason = fleet.not_ready().unwrap();
    assert!(
        reason.starts_with("the fleet's database cannot be reached"),
        "{reason}"
    );
    let claims = claims_of(&url, 1).await;
    assert_eq!(claims.len(), 1, "{claims:?}");
}
