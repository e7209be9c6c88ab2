//! A fleet's slot claimed by an instance that died or froze before storing its check is not lost
//! with it (issue 22, `docs/fleet.md` "A slot claimed and never stored"): a peer that comes to
//! own the target takes the claim over and runs the slot, and the old holder's late write is
//! refused, so the slot is stored exactly once. Against a real PostgreSQL store with real
//! checks of the simulator; each case changes one thing: the holder's lease has run out or
//! not, its check was stored or not, the holder restarted, and the write and the take-over race.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::Arc;
use std::time::Duration;

use common::sim_run::start;
use teewatch::drift::TargetHistory;
use teewatch::fleet::{Fleet, FleetMode, FleetSettings, rendezvous};
use teewatch::metrics::Metrics;
use teewatch::record::CheckRecord;
use teewatch::store::{Store, StoreError};

use super::store::{at, check, minutes, one_gpu};
use super::store_backend::Backend;
use crate::common;

/// Short, so that a silent instance's lease runs out within the test.
const LEASE: Duration = Duration::from_millis(1500);
const TARGET: &str = "shared";

async fn join(store: &Store, name: &str) -> Fleet {
    let settings = FleetSettings {
        instance: name.into(),
        mode: FleetMode::Shard,
        vantage: String::new(),
        lease: LEASE,
    };
    Fleet::join(
        store.postgres_pool().unwrap().clone(),
        settings,
        Metrics::new().unwrap(),
        &[TARGET.to_string()],
    )
    .await
    .unwrap_or_else(|e| panic!("joining as {name}: {e}"))
}

/// The two instance names, the target's owner while both are live first.
fn holder_and_peer() -> (&'static str, &'static str) {
    let owner = rendezvous::owner(TARGET, &["mon-x", "mon-y"]).unwrap();
    if owner == "mon-x" {
        ("mon-x", "mon-y")
    } else {
        ("mon-y", "mon-x")
    }
}

/// Heartbeats of every fleet in order, twice, so each view holds the others' latest.
async fn beat_all(fleets: &[&Fleet]) {
    for _ in 0..2 {
        for f in fleets {
            f.beat(&[TARGET.to_string()]).await.unwrap();
        }
    }
}

/// The instance of every stored check of the target, in id order.
async fn stored_by(store: &Store) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT c.instance FROM checks c JOIN targets t ON t.id = c.target_id
         WHERE t.name = $1 ORDER BY c.id",
    )
    .bind(TARGET)
    .fetch_all(store.postgres_pool().unwrap())
    .await
    .unwrap()
}

/// `rec` as `instance` ran it under `fleet`'s claim of `slot`, which must win.
async fn claimed(fleet: &Fleet, slot: i64, mut rec: CheckRecord) -> CheckRecord {
    let claim = fleet.may_run(TARGET, slot).await.unwrap();
    assert!(
        claim.is_some(),
        "{} did not win slot {slot}",
        fleet.instance()
    );
    rec.instance = fleet.instance().to_string();
    rec.claim = claim;
    rec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slot_claimed_and_never_stored_is_handed_over_and_stored_once() {
    let run = start("pg-hand-over", one_gpu()).await;
    let location = Backend::Postgres.location(&run.dir, "pg-hand-over").await;
    let store = Store::open_location(&location).await.unwrap();
    let t0 = at("2026-05-01T00:00:00Z");
    let mut history = TargetHistory::default();
    let mut checks = Vec::new();
    for i in 0..4 {
        checks.push(check(&run, TARGET, t0 + minutes(i), &mut history).await);
    }
    let mut checks = checks.into_iter();
    let (holder_name, peer_name) = holder_and_peer();
    let holder = join(&store, holder_name).await;
    let peer = join(&store, peer_name).await;
    beat_all(&[&holder, &peer]).await;
    assert_eq!(peer.owner_of(TARGET).as_deref(), Some(holder_name));

    // 1. The holder claims slot 1 and goes silent before storing; once its lease has run out the
    // peer owns the target and takes the claim over. The holder's late write is refused, naming
    // the peer; the peer's is stored.
    let late = claimed(&holder, 1, checks.next().unwrap()).await;
    tokio::time::sleep(LEASE + Duration::from_millis(300)).await;
    peer.beat(&[TARGET.to_string()]).await.unwrap();
    assert_eq!(peer.owner_of(TARGET).as_deref(), Some(peer_name));
    let taken = claimed(&peer, 1, checks.next().unwrap()).await;
    match store.record(&late).await {
        Err(StoreError::ClaimTakenOver { slot_at, holder }) => {
            assert_eq!((slot_at, holder.as_str()), (1, peer_name));
        }
        other => panic!("the late write of a taken-over slot gave {other:?}"),
    }
    store.record(&taken).await.unwrap();
    assert_eq!(stored_by(&store).await, [peer_name]);

    // 2. Changed: the holder stored its check before going silent. The peer does not take the
    // slot over: it has its check.
    beat_all(&[&holder, &peer]).await;
    assert_eq!(peer.owner_of(TARGET).as_deref(), Some(holder_name));
    let stored = claimed(&holder, 2, checks.next().unwrap()).await;
    store.record(&stored).await.unwrap();
    tokio::time::sleep(LEASE + Duration::from_millis(300)).await;
    peer.beat(&[TARGET.to_string()]).await.unwrap();
    assert_eq!(peer.owner_of(TARGET).as_deref(), Some(peer_name));
    assert_eq!(peer.may_run(TARGET, 2).await.unwrap(), None);
    assert_eq!(stored_by(&store).await, [peer_name, holder_name]);

    // 3. Changed: the holder is live. Its unstored claim stays its own, even when it asks again
    // (as a take-over of a window it already claimed does).
    beat_all(&[&holder, &peer]).await;
    let unstored = claimed(&holder, 3, checks.next().unwrap()).await;
    assert_eq!(holder.may_run(TARGET, 3).await.unwrap(), None);

    // 4. Changed: the holder restarted (same name, a new process) before storing: the new
    // process takes its old incarnation's claim over at once, and the old one's write is
    // refused.
    let restarted = join(&store, holder_name).await;
    beat_all(&[&restarted, &peer]).await;
    let again = restarted.may_run(TARGET, 3).await.unwrap().unwrap();
    assert_ne!(
        Some(again.incarnation),
        unstored.claim.as_ref().map(|c| c.incarnation)
    );
    assert!(matches!(
        store.record(&unstored).await,
        Err(StoreError::ClaimTakenOver { slot_at: 3, .. })
    ));
    assert_eq!(stored_by(&store).await, [peer_name, holder_name]);
    store.close().await;
}

/// Slots raced: the holder's write of each against the peer's take-over of it.
const RACED: i64 = 12;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_late_write_racing_the_take_over_stores_each_slot_exactly_once() {
    let run = start("pg-hand-over-race", one_gpu()).await;
    let location = Backend::Postgres
        .location(&run.dir, "pg-hand-over-race")
        .await;
    let store = Arc::new(Store::open_location(&location).await.unwrap());
    let t0 = at("2026-05-01T00:00:00Z");
    let mut history = TargetHistory::default();
    let (holder_name, peer_name) = holder_and_peer();
    let holder = join(&store, holder_name).await;
    let peer = Arc::new(join(&store, peer_name).await);
    beat_all(&[&holder, &peer]).await;
    let mut late = Vec::new();
    for slot in 0..RACED {
        let rec = check(&run, TARGET, t0 + minutes(slot as usize), &mut history).await;
        late.push(claimed(&holder, slot, rec).await);
    }
    tokio::time::sleep(LEASE + Duration::from_millis(300)).await;
    peer.beat(&[TARGET.to_string()]).await.unwrap();
    assert_eq!(peer.owner_of(TARGET).as_deref(), Some(peer_name));

    let mut racing = Vec::new();
    for (slot, rec) in (0..RACED).zip(late) {
        let (store, peer) = (store.clone(), peer.clone());
        racing.push(tokio::spawn(async move {
            let (written, taken) = tokio::join!(store.record(&rec), peer.may_run(TARGET, slot));
            (slot, written, taken.unwrap().is_some())
        }));
    }
    let mut wrote = 0;
    for task in racing {
        let (slot, written, taken) = task.await.unwrap();
        match (&written, taken) {
            (Ok(_), false) => wrote += 1,
            (Err(StoreError::ClaimTakenOver { .. }), true) => {}
            _ => panic!("slot {slot}: the holder's write gave {written:?}, the take-over {taken}"),
        }
    }
    // Every slot's check is stored by the holder or runs at the peer, never both: the table
    // holds the holder's writes, and each slot's claim names who has it.
    assert_eq!(stored_by(&store).await.len(), wrote);
    let claims: Vec<(String, bool)> = sqlx::query_as(
        "SELECT instance, stored FROM slot_claims WHERE target = $1 ORDER BY slot_at",
    )
    .bind(TARGET)
    .fetch_all(store.postgres_pool().unwrap())
    .await
    .unwrap();
    assert_eq!(claims.len(), RACED as usize);
    for (instance, stored) in &claims {
        assert_eq!(stored, &(instance == holder_name), "{claims:?}");
    }
}
