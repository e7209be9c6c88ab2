//! The store on real checks: bundles fetched from the in-process simulator, verified, recorded,
//! and read back exactly; one transaction per check; histories and latest checks across a
//! reopen; retention; history filters; and what a check costs on disk.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use super::store_backend::{self, Backend, Raw, on_both};
use chrono::{DateTime, Utc};
use common::sim_run::{Running, failing, start};
use serde_json::Value;

use teewatch::config::StoreLocation;
use teewatch::drift::{self, DriftEvent, DriftReason, TargetHistory};
use teewatch::record::{CheckRecord, Phase, PhaseDuration};
use teewatch::store::{
    HistoryFilter, REMOVED_BY_RETENTION, Retention, RetentionReport, Store, StoreError,
};
use teewatch::verify::{self, Bundle, State};
use teewatch_sim::faults::Fault;
use teewatch_sim::server::{SimOptions, model_name};

/// A new store for a test: a file in the simulator run's folder (removed with it), or a fresh
/// PostgreSQL database; with a second connection to look at its rows.
async fn open(backend: Backend, run: &Running, label: &str) -> (Store, Raw, StoreLocation) {
    let location = backend.location(&run.dir, label).await;
    let store = Store::open_location(&location).await.unwrap();
    let raw = Raw::connect(&location).await;
    (store, raw, location)
}

pub(super) fn one_gpu() -> SimOptions {
    SimOptions {
        models: 1,
        nodes: 1,
        gpus: 1,
        ..SimOptions::default()
    }
}

pub(super) fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

fn days(n: i64) -> chrono::Duration {
    chrono::Duration::days(n)
}

pub(super) fn minutes(n: usize) -> chrono::Duration {
    chrono::Duration::minutes(n as i64)
}

/// Asserts that a check passed, listing what did not if it did not.
fn assert_pass(rec: &CheckRecord) {
    let v = &rec.verdict;
    assert_eq!(v.state, State::Pass, "{:#?}", failing(v));
}

/// One real check of the simulator's model recorded as target `name`, started at `started`:
/// fetched, verified, its measurements judged for drift against `history` (then absorbed at
/// `finished_at`, as the store does).
pub(super) async fn check(
    run: &Running,
    name: &str,
    started: DateTime<Utc>,
    history: &mut TargetHistory,
) -> CheckRecord {
    let target = run.config.target(&model_name(0)).unwrap();
    let fetched = run.fetcher.check_timed(&run.config, target).await.unwrap();
    let bundle = Bundle::from_value(fetched.bundle.clone()).unwrap();
    let verdict = verify::verify(&bundle, &target.policy, &run.config.trust_anchors());
    let measurements = drift::measurements(&verdict);
    let finished = started + chrono::Duration::milliseconds(1_234);
    let events = drift::detect(history, &measurements, &target.policy, finished);
    history.absorb(&measurements, &events, finished);
    let mut phases = fetched.phases;
    phases.push(PhaseDuration {
        phase: Phase::Verify,
        duration: Duration::from_micros(4_321),
    });
    CheckRecord {
        target: name.to_string(),
        scheduled_at: started - chrono::Duration::milliseconds(3),
        started_at: started,
        finished_at: finished,
        phases,
        fetch_errors: CheckRecord::fetch_errors_of(&bundle),
        instance: "test-instance".into(),
        vantage: String::new(),
        claim: None,
        bundle: fetched.bundle,
        verdict,
        measurements,
        drift: events,
    }
}

/// `check` with a fault injected in the simulator for its duration.
async fn check_under(
    run: &Running,
    fault: Fault,
    name: &str,
    started: DateTime<Utc>,
    history: &mut TargetHistory,
) -> CheckRecord {
    run.sim.state.set_fault(None, fault, true).unwrap();
    let rec = check(run, name, started, history).await;
    run.sim.state.set_fault(None, fault, false).unwrap();
    rec
}

/// A drift event as `drift::detect` raises it for a passing check's real MRTD, judged against a
/// history that only knew another value.
fn mrtd_drift(rec: &CheckRecord) -> Vec<DriftEvent> {
    let mut known = TargetHistory::default();
    known
        .values
        .entry("mrtd".into())
        .or_default()
        .insert("00".repeat(48), rec.started_at - days(1));
    let events = drift::detect(
        &known,
        &rec.measurements,
        &teewatch::verify::Policy::default(),
        rec.finished_at,
    );
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].reasons, [DriftReason::New]);
    events
}

/// The bundle exported for `id` equals `bundle`, with the same key order (same compact text),
/// and re-verifies to `rec`'s verdict.
async fn assert_exports(store: &Store, run: &Running, id: i64, rec: &CheckRecord) {
    let exported = store.export_bundle(id).await.unwrap();
    assert_eq!(exported, rec.bundle);
    assert_eq!(
        serde_json::to_string(&exported).unwrap(),
        serde_json::to_string(&rec.bundle).unwrap()
    );
    let target = run.config.target(&model_name(0)).unwrap();
    let again = verify::verify(
        &Bundle::from_value(exported).unwrap(),
        &target.policy,
        &run.config.trust_anchors(),
    );
    assert_eq!(again, rec.verdict);
    assert_eq!(store.verdict(id).await.unwrap(), rec.verdict);
}

on_both!(
    recorded_checks_export_the_same_bundle_and_verdict,
    a_check_that_fails_midway_leaves_no_rows,
    histories_and_latest_checks_survive_a_reopen,
    retention_removes_exactly_what_it_should,
    history_and_drift_events_filter_by_target_and_since,
    a_one_gpu_target_costs_a_few_kilobytes_per_check,
    a_reference_that_stops_fitting_is_renewed_and_remembers_earlier_shapes,
);

async fn recorded_checks_export_the_same_bundle_and_verdict(backend: Backend) {
    let run = start("store-export", one_gpu()).await;
    let (store, pool, _) = open(backend, &run, "store-export").await;
    assert!(store.ping().await);
    let mut history = TargetHistory::default();
    let t0 = at("2026-05-01T00:00:00.123456789Z");
    let mut recorded = Vec::new();
    for i in 0..4 {
        let rec = check(&run, "sim", t0 + minutes(i), &mut history).await;
        assert_pass(&rec);
        recorded.push((store.record(&rec).await.unwrap(), rec));
    }
    // A failing check keeps its non-pass results queryable and its verdict exact.
    let nine = t0 + minutes(9);
    let rec = check_under(&run, Fault::BadQuoteSignature, "sim", nine, &mut history).await;
    assert_eq!(rec.verdict.state, State::Fail);
    recorded.push((store.record(&rec).await.unwrap(), rec));

    for (id, rec) in &recorded {
        assert_exports(&store, &run, *id, rec).await;
    }
    let rows = store.history(&HistoryFilter::default()).await.unwrap();
    assert_eq!(rows.len(), 5);
    let (last_id, last) = recorded.last().unwrap();
    assert_eq!(rows[0].id, *last_id);
    assert_eq!(rows[0].started_at, last.started_at);
    assert_eq!(rows[0].scheduled_at, last.scheduled_at);
    assert_eq!(rows[0].finished_at, last.finished_at);
    assert_eq!(rows[0].attestation_format, "dstack");
    let expected: Vec<_> = last
        .verdict
        .checks
        .iter()
        .filter(|c| c.state != State::Pass)
        .cloned()
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(rows[0].failing, expected);
    assert!(
        rows[1..]
            .iter()
            .all(|r| r.failing.is_empty() && r.has_bundle)
    );

    // Checks written at the same time from several tasks (as the daemon's concurrent checks
    // do) wait for each other's write lock instead of failing.
    let tasks: Vec<_> = recorded
        .iter()
        .map(|(_, rec)| {
            let (store, mut rec) = (store.clone(), rec.clone());
            rec.target = format!("{}-copy", rec.target);
            tokio::spawn(async move { store.record(&rec).await.map(|id| (id, rec)) })
        })
        .collect();
    for task in tasks {
        let (id, rec) = task.await.unwrap().unwrap();
        assert_exports(&store, &run, id, &rec).await;
    }
    let copies = HistoryFilter {
        target: Some("sim-copy".into()),
        ..HistoryFilter::default()
    };
    assert_eq!(store.history(&copies).await.unwrap().len(), 5);

    // A stored bundle that does not match its recorded digest is reported, never returned.
    pool.execute_with_bytes(
        "UPDATE bundles SET sha256 = $1 WHERE check_id = $2",
        &[0u8; 32],
        recorded[0].0,
    )
    .await;
    let tampered = store.export_bundle(recorded[0].0).await;
    assert!(
        matches!(tampered, Err(StoreError::Corrupt(_))),
        "{tampered:?}"
    );

    assert!(matches!(
        store.verdict(9_999).await,
        Err(StoreError::NoSuchCheck(9_999))
    ));
    assert!(matches!(
        store.export_bundle(9_999).await,
        Err(StoreError::NoSuchCheck(9_999))
    ));
    store.close().await;
}

async fn a_check_that_fails_midway_leaves_no_rows(backend: Backend) {
    let run = start("store-atomic", one_gpu()).await;
    let (store, pool, _) = open(backend, &run, "store-atomic").await;
    let mut history = TargetHistory::default();
    let t0 = at("2026-05-01T00:00:00Z");
    let good = check(&run, "sim", t0, &mut history).await;
    let good_id = store.record(&good).await.unwrap();
    let before = pool.row_counts().await;

    // A drift event without a reason is refused by the database, after the target, the
    // reference blobs, the check, its phases and its measurements were written.
    let mut bad = check(&run, "sim", t0 + days(1), &mut history.clone()).await;
    bad.target = "brand-new-target".into();
    bad.drift = mrtd_drift(&bad);
    bad.drift[0].reasons.clear();
    let error = store.record(&bad).await.unwrap_err();
    assert!(matches!(error, StoreError::Sql(_)), "{error}");
    assert_eq!(pool.row_counts().await, before);

    // The same check with its reason is stored whole.
    bad.drift = mrtd_drift(&bad);
    let id = store.record(&bad).await.unwrap();
    assert_exports(&store, &run, id, &bad).await;
    assert_eq!(
        store
            .drift_events(&HistoryFilter::default())
            .await
            .unwrap()
            .len(),
        1
    );

    // A closed store writes nothing either.
    let clone = store.clone();
    store.close().await;
    let after = pool.row_counts().await;
    assert!(clone.record(&good).await.is_err());
    assert!(!clone.ping().await);
    assert_eq!(pool.row_counts().await, after);
    assert_ne!(good_id, id);
}

async fn histories_and_latest_checks_survive_a_reopen(backend: Backend) {
    let run = start("store-reopen", one_gpu()).await;
    let other = start("store-reopen-b", one_gpu()).await;
    let (store, _, location) = open(backend, &run, "store-reopen").await;
    let mut histories: BTreeMap<String, TargetHistory> = BTreeMap::new();
    let t0 = at("2026-05-01T00:00:00.5Z");
    let mut last_pass = None;
    for i in 0..3 {
        let history = histories.entry("a".into()).or_default();
        let rec = check(&run, "a", t0 + minutes(i), history).await;
        assert_pass(&rec);
        last_pass = Some(rec.finished_at);
        store.record(&rec).await.unwrap();
    }
    // Another OS image: a new, not allowed MRTD, which fails its pin and raises drift.
    run.sim
        .state
        .set_fault(None, Fault::DriftMrtd, true)
        .unwrap();
    let drifted = check(&run, "a", t0 + days(1), histories.get_mut("a").unwrap()).await;
    assert_eq!(drifted.verdict.state, State::Fail);
    // The simulated image changes MRTD and RTMR0-2 together; each is new and not allowed.
    let fields: Vec<&str> = drifted.drift.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["mrtd", "rtmr0", "rtmr1", "rtmr2"]);
    assert!(
        drifted
            .drift
            .iter()
            .all(|e| e.reasons == [DriftReason::New, DriftReason::NotAllowed])
    );
    let drifted_id = store.record(&drifted).await.unwrap();
    let b = check(&other, "b", t0, histories.entry("b".into()).or_default()).await;
    let b_id = store.record(&b).await.unwrap();
    store.close().await;

    let store = Store::open_existing_location(&location).await.unwrap();
    assert_eq!(store.histories().await.unwrap(), histories);
    let latest = store.latest_checks().await.unwrap();
    assert_eq!(latest.len(), 2);
    let (a, lb) = (&latest[0], &latest[1]);
    assert_eq!((a.target.as_str(), a.check_id), ("a", drifted_id));
    assert_eq!(a.state, State::Fail);
    assert_eq!(a.checks, drifted.verdict.checks);
    assert_eq!(a.measurements, drifted.measurements);
    assert_eq!(a.tcb_status.as_deref(), drifted.verdict.tcb_status());
    assert!(a.tcb_status.is_some());
    assert_eq!(
        (a.scheduled_at, a.started_at, a.finished_at),
        (
            drifted.scheduled_at,
            drifted.started_at,
            drifted.finished_at
        )
    );
    assert_eq!(a.last_success_at, last_pass);
    assert_eq!(a.duration, Duration::from_millis(1_234));
    assert_eq!((lb.target.as_str(), lb.check_id), ("b", b_id));
    assert_eq!(lb.last_success_at, Some(b.finished_at));
    assert_eq!(lb.measurements, b.measurements);
    // Newest first: events of one instant come back in reverse order of recording.
    let events = store.drift_events(&HistoryFilter::default()).await.unwrap();
    assert!(
        events
            .iter()
            .all(|e| e.check_id == drifted_id && e.target == "a")
    );
    let mut stored: Vec<DriftEvent> = events.into_iter().map(|e| e.event).collect();
    stored.reverse();
    assert_eq!(stored, drifted.drift);
}

async fn retention_removes_exactly_what_it_should(backend: Backend) {
    // Two simulators with their own PKIs: the second one's bundles share little with the first's,
    // so the target's bundle reference is renewed and the first reference becomes garbage once
    // the old checks go.
    let first = start("store-retention-a", one_gpu()).await;
    let second = start("store-retention-b", one_gpu()).await;
    let (store, pool, _) = open(backend, &first, "store-retention").await;
    let now = at("2026-06-01T00:00:00Z");
    let mut history = TargetHistory::default();
    let mut ids = BTreeMap::new();
    let mut recs = BTreeMap::new();
    // (label, simulator, age in days, fault, with a drift event)
    let plan: [(&str, &Running, i64, Option<Fault>, bool); 8] = [
        ("old-drift", &first, 120, None, true),
        ("old", &first, 100, None, false),
        ("failed", &second, 30, Some(Fault::BadQuoteSignature), false),
        ("drifted", &second, 20, None, true),
        ("pass-dropped", &second, 10, None, false),
        ("unknown-dropped", &second, 9, Some(Fault::NrasDown), false),
        ("recent-1", &second, 2, None, false),
        ("recent-2", &second, 1, None, false),
    ];
    for (label, run, age, fault, drift) in plan {
        let mut rec = match fault {
            Some(fault) => check_under(run, fault, "m", now - days(age), &mut history).await,
            None => check(run, "m", now - days(age), &mut history).await,
        };
        if drift {
            rec.drift = mrtd_drift(&rec);
        }
        ids.insert(label, store.record(&rec).await.unwrap());
        recs.insert(label, rec);
    }
    assert_eq!(recs["failed"].verdict.state, State::Fail);
    assert_eq!(recs["unknown-dropped"].verdict.state, State::Unknown);
    assert_eq!(recs["pass-dropped"].verdict.state, State::Pass);
    let mut other_history = TargetHistory::default();
    let other = check(&second, "other", now - days(50), &mut other_history).await;
    let other_id = store.record(&other).await.unwrap();
    let histories_before = store.histories().await.unwrap();
    let blobs_before = pool.row_counts().await["blobs"];
    let blob_of = async |sql: &str, id: i64| -> Option<i64> { pool.scalar(sql, Some(id)).await };
    let first_reference = blob_of("SELECT dict FROM bundles WHERE check_id = $1", ids["old"]).await;

    let retention = Retention {
        keep_last_bundles: 2,
        ..Retention::default()
    };
    let report = store.apply_retention(now, &retention).await.unwrap();
    assert_eq!(report.checks_deleted, 2);
    assert_eq!(report.bundles_deleted, 4);
    assert!(report.blobs_deleted >= 1, "{report:?}");
    assert_eq!(
        pool.row_counts().await["blobs"],
        blobs_before - report.blobs_deleted as i64
    );
    // No blob is left that nothing uses, and everything used is there.
    let orphans: i64 = pool
        .scalar(
            "SELECT COUNT(*) FROM blobs WHERE id NOT IN (SELECT dict FROM bundles)
             AND id NOT IN (SELECT verdict_dict FROM checks) AND id NOT IN (SELECT blob_id FROM target_dicts)",
            None,
        )
        .await
        .unwrap();
    assert_eq!(orphans, 0);
    // The first simulator's reference, used only by the deleted checks' bundles, is gone.
    let first_reference = first_reference.unwrap();
    assert_eq!(
        blob_of("SELECT id FROM blobs WHERE id = $1", first_reference).await,
        None
    );

    for label in ["old-drift", "old"] {
        assert!(matches!(
            store.verdict(ids[label]).await,
            Err(StoreError::NoSuchCheck(_))
        ));
    }
    for label in ["pass-dropped", "unknown-dropped"] {
        match store.export_bundle(ids[label]).await {
            Err(StoreError::BundleMissing { check, reason }) => {
                assert_eq!((check, reason.as_str()), (ids[label], REMOVED_BY_RETENTION));
            }
            other => panic!("{label}: {other:?}"),
        }
        assert_eq!(
            store.verdict(ids[label]).await.unwrap(),
            recs[label].verdict
        );
    }
    for label in ["failed", "drifted", "recent-1", "recent-2"] {
        assert_exports(&store, &second, ids[label], &recs[label]).await;
    }
    assert_exports(&store, &second, other_id, &other).await;
    let rows = store.history(&HistoryFilter::default()).await.unwrap();
    let listed: Vec<(i64, bool)> = rows.iter().map(|r| (r.id, r.has_bundle)).collect();
    let expected: Vec<(i64, bool)> = [
        (ids["recent-2"], true),
        (ids["recent-1"], true),
        (ids["unknown-dropped"], false),
        (ids["pass-dropped"], false),
        (ids["drifted"], true),
        (ids["failed"], true),
        (other_id, true),
    ]
    .into();
    assert_eq!(listed, expected);
    // Only the retained check's drift event is left; the values ever seen are all kept.
    let events = store.drift_events(&HistoryFilter::default()).await.unwrap();
    assert_eq!(
        events.iter().map(|e| e.check_id).collect::<Vec<_>>(),
        [ids["drifted"]]
    );
    let after = store.histories().await.unwrap();
    assert_eq!(after["m"].values, histories_before["m"].values);
    assert_eq!(after["other"], histories_before["other"]);

    // A second pass finds nothing more, and recording goes on against the renewed references.
    let again = store.apply_retention(now, &retention).await.unwrap();
    assert_eq!(again, RetentionReport::default());
    let next = check(&second, "m", now, &mut history).await;
    let next_id = store.record(&next).await.unwrap();
    assert_exports(&store, &second, next_id, &next).await;
}

async fn history_and_drift_events_filter_by_target_and_since(backend: Backend) {
    let run = start("store-filter", one_gpu()).await;
    let (store, _, _) = open(backend, &run, "store-filters").await;
    let t0 = at("2026-05-01T00:00:00Z");
    let mut ids: BTreeMap<(&str, i64), i64> = BTreeMap::new();
    for name in ["x", "y"] {
        let mut history = TargetHistory::default();
        for day in 0..4 {
            let mut rec = check(&run, name, t0 + days(day), &mut history).await;
            if day % 2 == 1 {
                rec.drift = mrtd_drift(&rec);
            }
            ids.insert((name, day), store.record(&rec).await.unwrap());
        }
    }
    let filter = |target: Option<&str>, since: Option<i64>, limit: Option<usize>| HistoryFilter {
        target: target.map(str::to_string),
        since: since.map(|d| t0 + days(d)),
        limit,
    };
    let checks = async |target, since, limit| -> Vec<i64> {
        let rows = store.history(&filter(target, since, limit)).await.unwrap();
        rows.into_iter().map(|r| r.id).collect()
    };
    let events = async |target, since, limit| -> Vec<i64> {
        let rows = store
            .drift_events(&filter(target, since, limit))
            .await
            .unwrap();
        rows.into_iter().map(|r| r.check_id).collect()
    };
    let id = |target, day| ids[&(target, day)];
    assert_eq!(checks(None, None, None).await.len(), 8);
    let x_all = [id("x", 3), id("x", 2), id("x", 1), id("x", 0)];
    assert_eq!(checks(Some("x"), None, None).await, x_all);
    assert_eq!(
        checks(Some("y"), Some(2), None).await,
        [id("y", 3), id("y", 2)]
    );
    // Same instants for both targets: newest first, the later id first among equals.
    let newest = [id("y", 3), id("x", 3), id("y", 2)];
    assert_eq!(checks(None, Some(2), Some(3)).await, newest);
    assert!(checks(Some("z"), None, None).await.is_empty());
    let rows = store
        .history(&filter(Some("x"), None, Some(2)))
        .await
        .unwrap();
    let drift_counts: Vec<usize> = rows.iter().map(|r| r.drift_events).collect();
    assert_eq!(drift_counts, [1, 0]);

    assert_eq!(
        events(Some("y"), None, None).await,
        [id("y", 3), id("y", 1)]
    );
    assert_eq!(events(None, Some(2), None).await, [id("y", 3), id("x", 3)]);
    assert_eq!(events(None, None, Some(1)).await, [id("y", 3)]);
    let rows = store
        .drift_events(&filter(Some("x"), None, None))
        .await
        .unwrap();
    assert!(
        rows.iter()
            .all(|r| r.target == "x" && r.event.field == "mrtd")
    );
}

#[tokio::test]
async fn open_existing_never_creates_a_store() {
    let dir = std::env::temp_dir().join(format!("teewatch-store-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("missing.db");
    match Store::open_existing(&path).await {
        Err(StoreError::NoDatabase(p)) => assert_eq!(p, path),
        other => panic!("{other:?}"),
    }
    assert!(!path.exists());
    // Once created, it opens, empty.
    Store::open(&path).await.unwrap().close().await;
    let store = Store::open_existing(&path).await.unwrap();
    assert!(store.latest_checks().await.unwrap().is_empty());
    assert!(store.histories().await.unwrap().is_empty());
    store.close().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

async fn a_one_gpu_target_costs_a_few_kilobytes_per_check(backend: Backend) {
    const CHECKS: usize = 200;
    let run = start("store-size", one_gpu()).await;
    let (store, pool, _) = open(backend, &run, "store-size").await;
    let empty = store.size_bytes().await.unwrap();
    let mut history = TargetHistory::default();
    let t0 = at("2026-05-01T00:00:00Z");
    let mut raw_bytes = 0usize;
    let mut recorded = Vec::with_capacity(CHECKS);
    let started = std::time::Instant::now();
    for i in 0..CHECKS {
        let rec = check(&run, "sim", t0 + minutes(i), &mut history).await;
        assert_pass(&rec);
        raw_bytes += serde_json::to_vec(&rec.bundle).unwrap().len();
        let id = store.record(&rec).await.unwrap();
        recorded.push((id, rec.bundle));
    }
    let elapsed = started.elapsed();
    let size = store.size_bytes().await.unwrap();
    let per_check = (size - empty) / CHECKS as u64;
    let raw_per_check = (raw_bytes / CHECKS) as u64;
    println!(
        "store: {CHECKS} checks of a one-GPU target: {per_check} bytes per check \
         ({} KB in all), raw bundle JSON {raw_per_check} bytes: {:.1}x smaller ({elapsed:?})",
        (size - empty) / 1024,
        raw_per_check as f64 / per_check as f64
    );
    // Where the bytes go, from the database's own page statistics.
    let tables: Vec<(String, i64)> = match &pool {
        Raw::Sqlite(pool) => sqlx::query_as(
            "SELECT name, SUM(pgsize) FROM dbstat GROUP BY name HAVING SUM(pgsize) > 8192
             ORDER BY 2 DESC",
        )
        .fetch_all(pool)
        .await
        .unwrap(),
        Raw::Postgres(pool) => sqlx::query_as(
            "SELECT relname::text, pg_total_relation_size(relid) FROM pg_statio_user_tables
             WHERE pg_total_relation_size(relid) > 8192 ORDER BY 2 DESC",
        )
        .fetch_all(pool)
        .await
        .unwrap(),
    };
    for (table, bytes) in tables {
        println!(
            "store:   {table}: {} bytes per check",
            bytes / CHECKS as i64
        );
    }
    // The compressed bundles are the same on both: about 1.3 KB each against the reference.
    let bundle_bytes = pool
        .scalar(
            "SELECT CAST(SUM(length(data)) AS BIGINT) FROM bundles",
            None,
        )
        .await
        .unwrap();
    assert!(
        bundle_bytes < 2_000 * CHECKS as i64,
        "{bundle_bytes} bytes of bundles"
    );
    // Measured on SQLite: about 2 KB per check, some 30 times smaller than the raw bundle. On
    // PostgreSQL about 5.6 KB: 24-byte row headers, more index pages, and the dead versions of
    // the target's row (updated by every check) until autovacuum reclaims them.
    let (limit, factor) = match backend {
        Backend::Sqlite => (4 * 1024, 15),
        Backend::Postgres => (8 * 1024, 8),
    };
    assert!(per_check < limit, "{per_check} bytes per check");
    assert!(
        per_check * factor < raw_per_check,
        "{per_check} vs {raw_per_check}"
    );
    // One reference for the bundles and one for the verdicts served all the checks.
    assert_eq!(pool.row_counts().await["blobs"], 2);
    for (id, bundle) in &recorded {
        let exported: Value = store.export_bundle(*id).await.unwrap();
        assert_eq!(&exported, bundle);
    }
}

async fn a_reference_that_stops_fitting_is_renewed_and_remembers_earlier_shapes(backend: Backend) {
    let a = start("store-renew-a", one_gpu()).await;
    let b = start("store-renew-b", one_gpu()).await;
    let (store, pool, _) = open(backend, &a, "store-renew").await;
    let stored_len = |id: i64| {
        let pool = pool.clone();
        async move {
            // length() of a BLOB or a BYTEA is its size in bytes in both dialects (an INTEGER
            // on PostgreSQL, hence the cast).
            let n: i64 = pool
                .scalar(
                    "SELECT CAST(length(data) AS BIGINT) FROM bundles WHERE check_id = $1",
                    Some(id),
                )
                .await
                .unwrap();
            n
        }
    };
    let mut history = TargetHistory::default();
    let t0 = at("2026-05-01T00:00:00Z");
    // The target's first check is a failed fetch: its tiny bundle becomes the first reference.
    let failed = check_under(&a, Fault::Http500, "t", t0, &mut history).await;
    assert_eq!(failed.verdict.state, State::Unknown);
    assert!(failed.bundle["attestation"].is_null());
    store.record(&failed).await.unwrap();
    // Full bundles from one simulator, then another with its own PKI and keys, then the first
    // again (as a round-robin of unlike nodes would give): each new shape renews the reference
    // once, and every later bundle of a known shape costs little.
    let mut sizes = Vec::new();
    for (i, sim) in [&a, &a, &a, &b, &b, &b, &a, &b].into_iter().enumerate() {
        let rec = check(sim, "t", t0 + minutes(i + 1), &mut history).await;
        let id = store.record(&rec).await.unwrap();
        assert_exports(&store, sim, id, &rec).await;
        sizes.push(stored_len(id).await);
    }
    println!("store: bundle sizes across renewals: {sizes:?}");
    // A bundle that renewed the reference is stored as a reference to itself: a few bytes.
    assert!(sizes[0] < 200 && sizes[3] < 200, "{sizes:?}");
    for (i, size) in sizes.iter().enumerate() {
        assert!(*size < 3_000, "bundle {i}: {sizes:?}");
    }
    let renewals: i64 = pool
        .scalar("SELECT COUNT(DISTINCT dict) FROM bundles", None)
        .await
        .unwrap();
    assert_eq!(renewals, 3);
}
