//! Two whole daemons in one fleet against the simulator: they split the targets (each check
//! ran by its target's owner, after a claim), each serves every target's state through the
//! fleet view, the one on a clock ten minutes ahead keeps its lease (liveness is the database's
//! clock), and when it shuts down cleanly the other takes its targets over at once. Afterwards
//! the store holds exactly one check per claim: no slot was checked twice. The scrape with the
//! fleet's families passes `promtool check metrics`. `/readyz` says when the fleet's database
//! fails and recovers.
//!
//! The checks go to one SQLite file both daemons open, the fleet's tables to PostgreSQL
//! (`Daemon::start_in_fleet`): the fleet's rules apart from the PostgreSQL store, with a clock
//! the test moves. `shard_e2e.rs` runs the whole of it on PostgreSQL, as separate processes.

use std::time::Duration;

use chrono::TimeDelta;
use teewatch::clock::Clock;
use teewatch::daemon::{Daemon, RunOptions};
use teewatch::fleet::{FleetMode, rendezvous};
use teewatch::store::{HistoryFilter, Store};
use teewatch_sim::server::SimOptions;

use super::{fleet_database, pool, settings};
use crate::common::daemon_run::{db_path, sample, scrape, status_page};
use crate::common::sim_run::start;

const NOW_NS: &str = "(extract(epoch from clock_timestamp()) * 1e9)::bigint";

async fn start_member(
    run: &crate::common::sim_run::Running,
    url: &str,
    name: &str,
    clock: Clock,
) -> Daemon {
    let options = RunOptions {
        config_path: run.dir.join("sim.toml"),
        listen: Some("127.0.0.1:0".parse().unwrap()),
        db: Some(db_path(&run.dir)),
    };
    let s = settings(name, FleetMode::Shard, "", Duration::from_secs(2));
    Daemon::start_in_fleet(options, clock, pool(url, 4).await, s)
        .await
        .unwrap_or_else(|e| panic!("{name} did not start: {e}"))
}

/// Polls `done` every half second, up to `tries` times; false when it never held.
async fn eventually<F, Fut>(tries: usize, mut done: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..tries {
        if done().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_split_the_targets_serve_the_whole_fleet_and_hand_over_on_a_clean_stop() {
    let run = start(
        "fleet-daemons",
        SimOptions {
            models: 6,
            ..SimOptions::default()
        },
    )
    .await;
    let names: Vec<String> = run
        .config
        .monitored()
        .map(|(t, _)| t.name.clone())
        .collect();
    assert_eq!(names.len(), 6);
    let url = fleet_database("fleet daemons").await;
    let db = pool(&url, 2).await;
    let a = start_member(&run, &url, "mon-a", Clock::system()).await;
    let skewed = Clock::adjustable();
    assert!(skewed.jump(TimeDelta::minutes(10)));
    let b = start_member(&run, &url, "mon-b", skewed).await;

    // Every target checked at least once, and each instance showing all of them.
    let claimed = || async {
        let n: i64 = sqlx::query_scalar("SELECT count(DISTINCT target) FROM slot_claims")
            .fetch_one(&db)
            .await
            .unwrap();
        n == 6
    };
    assert!(
        eventually(120, claimed).await,
        "not every target was claimed"
    );
    for d in [&a, &b] {
        let shown = || async {
            let m = scrape(d).await;
            names
                .iter()
                .all(|t| sample(&m, "teewatch_target_state", &[("target", t)]).is_some())
        };
        assert!(eventually(60, shown).await, "{}", scrape(d).await);
    }

    // mon-b's clock is ten minutes ahead; its heartbeat is still dated by the database.
    let age: i64 = sqlx::query_scalar(&format!(
        "SELECT {NOW_NS} - heartbeat_at FROM fleet_instances WHERE name = 'mon-b'"
    ))
    .fetch_one(&db)
    .await
    .unwrap();
    assert!((0..2_000_000_000).contains(&age), "heartbeat age {age} ns");
    for d in [&a, &b] {
        let m = scrape(d).await;
        for peer in ["mon-a", "mon-b"] {
            assert_eq!(
                sample(
                    &m,
                    "teewatch_fleet_instance_up",
                    &[("peer", peer), ("vantage", "")]
                ),
                Some(1.0),
                "{m}"
            );
        }
        let owned: f64 = ["mon-a", "mon-b"]
            .iter()
            .filter_map(|p| sample(&m, "teewatch_fleet_targets_owned", &[("peer", p)]))
            .sum();
        assert_eq!(owned, 6.0, "{m}");
    }
    // The fleet's families pass promtool's lint beside every other.
    crate::common::promtool::assert_clean(&scrape(&a).await);
    // Each owner names itself on its status page and in teewatch_target_checked_by_info.
    let owner0 = rendezvous::owner(&names[0], &["mon-a", "mon-b"]).unwrap();
    let own = if owner0 == "mon-a" { &a } else { &b };
    let page = status_page(own).await;
    assert!(page.contains(&format!("by {owner0}")), "{page}");
    let m = scrape(own).await;
    assert_eq!(
        sample(
            &m,
            "teewatch_target_checked_by_info",
            &[("target", &names[0]), ("checked_by", owner0)]
        ),
        Some(1.0),
        "{m}"
    );
    // Every claim so far is its target's owner's, but for mon-a's claims in the moment before
    // mon-b's first heartbeat reached it (mon-a owned everything until then).
    let b_started: i64 =
        sqlx::query_scalar("SELECT started_at FROM fleet_instances WHERE name = 'mon-b'")
            .fetch_one(&db)
            .await
            .unwrap();
    let rows: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT target, instance, claimed_at FROM slot_claims")
            .fetch_all(&db)
            .await
            .unwrap();
    assert!(rows.len() >= 6, "{rows:?}");
    for (t, instance, claimed_at) in &rows {
        if rendezvous::owner(t, &["mon-a", "mon-b"]) != Some(instance.as_str()) {
            assert_eq!(instance, "mon-a", "{rows:?}");
            assert!(*claimed_at < b_started + 2_000_000_000, "{rows:?}");
        }
    }

    // A clean stop: mon-a takes everything over at its next heartbeat, not after a lease.
    b.shutdown(Duration::from_secs(10)).await;
    let left_at: i64 = sqlx::query_scalar(&format!("SELECT {NOW_NS}"))
        .fetch_one(&db)
        .await
        .unwrap();
    let down = || async {
        let m = scrape(&a).await;
        sample(
            &m,
            "teewatch_fleet_instance_up",
            &[("peer", "mon-b"), ("vantage", "")],
        ) == Some(0.0)
    };
    assert!(eventually(20, down).await, "{}", scrape(&a).await);
    let taken_over = || async {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(DISTINCT target) FROM slot_claims WHERE instance = 'mon-a' AND claimed_at > $1",
        )
        .bind(left_at)
        .fetch_one(&db)
        .await
        .unwrap();
        n == 6
    };
    assert!(
        eventually(60, taken_over).await,
        "mon-a did not take every target over"
    );
    a.shutdown(Duration::from_secs(10)).await;

    // One stored check per claim, and no more: no slot ran twice.
    let claims: i64 = sqlx::query_scalar("SELECT count(*) FROM slot_claims")
        .fetch_one(&db)
        .await
        .unwrap();
    let store = Store::open(&db_path(&run.dir)).await.unwrap();
    let checks = store.history(&HistoryFilter::default()).await.unwrap();
    assert_eq!(
        checks.len() as i64,
        claims,
        "checks stored vs slots claimed"
    );
}

/// The answer of `/readyz`: its status and text.
async fn readyz(daemon: &Daemon) -> (u16, String) {
    let response = reqwest::get(format!("http://{}/readyz", daemon.addr()))
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_says_when_the_fleets_database_fails_and_recovers() {
    let run = start("fleet-readyz", SimOptions::default()).await;
    crate::common::daemon_run::manual_schedule(&run.dir.join("sim.toml"));
    let url = fleet_database("fleet readyz").await;
    let db = pool(&url, 1).await;
    let daemon = start_member(&run, &url, "mon-a", Clock::system()).await;
    assert_eq!(readyz(&daemon).await.0, 200);
    // The heartbeat's table goes away: each heartbeat fails from now on.
    sqlx::query("ALTER TABLE fleet_instances RENAME TO fleet_instances_away")
        .execute(&db)
        .await
        .unwrap();
    let failing = || async {
        let (status, text) = readyz(&daemon).await;
        status == 503 && text.contains("the fleet's database cannot be reached")
    };
    assert!(eventually(20, failing).await, "{:?}", readyz(&daemon).await);
    sqlx::query("ALTER TABLE fleet_instances_away RENAME TO fleet_instances")
        .execute(&db)
        .await
        .unwrap();
    let ready = || async { readyz(&daemon).await.0 == 200 };
    assert!(eventually(20, ready).await, "{:?}", readyz(&daemon).await);
    daemon.shutdown(Duration::from_secs(5)).await;
}
