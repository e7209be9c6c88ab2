//! Crash safety: `teewatch run` as a process, checking many simulator targets every second,
//! SIGKILLed at 50 moments drawn from a seeded RNG and restarted each time on the same database.
//! The moments are of four kinds, in turn: a random delay after the start (sometimes before the
//! daemon is running: migrations, the restore from the store) or, every other time, inside the
//! retention pass each start runs; right after the n-th check was logged as stored; right after
//! the n-th `INSERT INTO checks` of a record's transaction (inside the write); and a random delay
//! after the daemon is ready. The first start, on no database, is killed inside its first schema
//! migration. Halfway, one target's OS image drifts (the simulator's `drift-mrtd`, through its
//! admin endpoint), and that run is killed right after the first failing check of it was stored.
//!
//! Afterwards: SQLite's `integrity_check` is `ok` and no reference dangles; every check a killed
//! daemon logged as stored is in the database under the same target and state, and every row
//! decodes to its verdict; no check is recorded twice (one row per target and slot, one per
//! bundle digest, one per nonce); every row no log line announced is the write a kill cut between
//! its commit and its log line. A last restart that runs no check of its own shows, from the
//! store alone, each target's state, its last check, last success and state-since times as its
//! rows say, and the drift on `/metrics` and the status page; the drift was recorded once, by the
//! first check that saw it, however many restarts followed. The figures are printed for
//! `docs/security.md` (the seed too, and `TEEWATCH_CRASH_SEED` replays a run).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod db;
mod log;
mod run;
mod trust;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use chrono::Utc;

use crate::common;
use common::daemon_run::{sample, series};
use common::net::free_port;
use common::process::{KillOnDrop, run_with_json_log};
use common::sim_run::start;
use log::Trigger;
use run::{Rng, Run, get, killed_run, moment, ready};
use teewatch_sim::server::{SimOptions, model_name};

/// How many times the daemon is killed.
const KILLS: usize = 50;
/// Targets, each checked every second: two dozen records a second, and at each start the first
/// tick catches every one of them up at once.
const TARGETS: usize = 24;
/// The run, counted from 0, before which target 0 drifts; it is killed after its first failing
/// check is stored.
const DRIFT_AT: usize = 25;
/// The shortest schedule the configuration takes: `interval` has a 10 s minimum, a cron
/// expression with a seconds field fires every second.
const EVERY_SECOND: &str = "cron = \"* * * * * *\"";
/// teewatch at info, and every SQL statement sqlx runs (after it ran), so that a kill can land
/// inside a record's transaction.
const LOG_FILTER: &str = "info,tokio_cron_scheduler=warn,sqlx::query=debug";
/// The state code of `teewatch_target_state`.
fn state_code(state: &str) -> f64 {
    match state {
        "pass" => 0.0,
        "unknown" => 1.0,
        "fail" => 2.0,
        other => panic!("no state {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_sigkills_lose_no_stored_check_and_record_none_twice() {
    let began = Instant::now();
    let seed = match std::env::var("TEEWATCH_CRASH_SEED") {
        Ok(text) => text
            .parse::<u64>()
            .unwrap_or_else(|e| panic!("TEEWATCH_CRASH_SEED={text:?}: {e}")),
        Err(_) => Utc::now().timestamp_nanos_opt().unwrap().unsigned_abs(),
    };
    println!("crash test seed {seed} (replay with TEEWATCH_CRASH_SEED={seed})");
    let mut rng = Rng(seed);

    let sim = start(
        "crash",
        SimOptions {
            models: TARGETS,
            ..SimOptions::default()
        },
    )
    .await;
    let config = sim.dir.join("sim.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert_eq!(text.matches("interval = \"10s\"").count(), TARGETS);
    std::fs::write(&config, text.replace("interval = \"10s\"", EVERY_SECOND)).unwrap();
    let db = sim.dir.join("crash.db");
    let drifting = model_name(0);

    let mut runs: Vec<Run> = Vec::with_capacity(KILLS);
    let mut first_migrations = 0;
    for i in 0..KILLS {
        if i == DRIFT_AT {
            let answer = reqwest::Client::new()
                .post(format!("{}/admin/faults", sim.sim.base_url))
                .header("content-type", "application/json")
                .body(
                    serde_json::json!({"model": drifting, "fault": "drift-mrtd", "on": true})
                        .to_string(),
                )
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status(), 200, "{}", answer.text().await.unwrap());
        }
        let moment = moment(i, &mut rng);
        let run = killed_run(&config, &db, moment).await;
        assert_eq!(
            run.log.count(
                "storing the check failed; it is not recorded and the metrics do not show it"
            ),
            0,
            "run {i}: a store write failed:\n{}",
            run.log.tail()
        );
        runs.push(run);
        if i == 0 {
            // Whether the kill came before the first migration's commit, for the figures.
            first_migrations = db::migrations_applied(&db).await;
        }
    }
    let killing = began.elapsed();

    // The database as the last kill left it, write-ahead log and all.
    let pool = db::open(&db).await;
    let integrity = db::integrity(&pool).await;
    assert_eq!(integrity, vec!["ok".to_string()], "PRAGMA integrity_check");
    assert_eq!(db::dangling_references(&pool).await, Vec::<String>::new());
    assert_eq!(db::recorded_twice(&pool).await, Vec::<String>::new());
    assert_eq!(db::bundles_astray(&pool).await, Vec::<String>::new());
    let rows = db::checks(&pool).await;
    let by_id: BTreeMap<i64, &db::Row> = rows.iter().map(|r| (r.id, r)).collect();

    // Every check a daemon logged as stored is there, under its target and with its state.
    let mut logged = BTreeSet::new();
    for (i, run) in runs.iter().enumerate() {
        for stored in &run.log.stored {
            let row = by_id.get(&stored.check_id).unwrap_or_else(|| {
                panic!(
                    "run {i}: check {} of {} was logged as stored but is not in the database",
                    stored.check_id, stored.target
                )
            });
            assert_eq!(
                (&row.target, &row.state),
                (&stored.target, &stored.state),
                "run {i}: check {}",
                stored.check_id
            );
            assert!(
                logged.insert(stored.check_id),
                "check id {} logged twice",
                stored.check_id
            );
        }
    }
    // Every other row is the write of a check its run was in the middle of recording when it
    // was killed (committed, its log line not yet written); any other write cut short is gone.
    let mut committed_unlogged = 0usize;
    let mut rolled_back = 0usize;
    let mut kills_in_write = 0usize;
    for (i, run) in runs.iter().enumerate() {
        let window = db::ns(run.spawned_at)..=db::ns(run.killed_at);
        let unlogged: Vec<&db::Row> = rows
            .iter()
            .filter(|r| !logged.contains(&r.id) && window.contains(&r.started_at))
            .collect();
        for row in &unlogged {
            assert!(
                run.log.writing.contains(&row.target),
                "run {i}: check {} of {} is stored, but the log never announced its write",
                row.id,
                row.target
            );
        }
        committed_unlogged += unlogged.len();
        let cut = run.log.writing.len() - unlogged.len();
        rolled_back += cut;
        if cut > 0 {
            kills_in_write += 1;
        }
    }
    let in_runs = |r: &&db::Row| {
        runs.iter()
            .any(|run| (db::ns(run.spawned_at)..=db::ns(run.killed_at)).contains(&r.started_at))
    };
    assert!(rows.iter().all(|r| in_runs(&r)), "rows outside every run");
    assert_eq!(rows.len(), logged.len() + committed_unlogged);

    // Every row still decodes to its verdict, and every bundle retention kept to its own fresh
    // nonce: no check was stored twice under two rows.
    let store = teewatch::store::Store::open_existing(&db).await.unwrap();
    let mut nonces: BTreeMap<String, i64> = BTreeMap::new();
    for row in &rows {
        let verdict = store
            .verdict(row.id)
            .await
            .unwrap_or_else(|e| panic!("check {}: {e}", row.id));
        assert_eq!(verdict.state.as_str(), row.state, "check {}", row.id);
        let bundle = match store.export_bundle(row.id).await {
            Ok(bundle) => bundle,
            Err(teewatch::store::StoreError::BundleMissing { .. }) => continue,
            Err(e) => panic!("check {}: {e}", row.id),
        };
        let nonce = bundle["nonce"]
            .as_str()
            .unwrap_or_else(|| panic!("check {}: a bundle without a nonce", row.id));
        if let Some(other) = nonces.insert(nonce.to_string(), row.id) {
            panic!("checks {other} and {} carry one nonce {nonce}", row.id);
        }
    }
    store.close().await;
    // The drift is recorded once, by the first check that saw it: every restart after it read
    // the drifted values back as known, so no later check reported them again.
    let drift = db::drift_events(&pool).await;
    assert!(
        drift
            .iter()
            .any(|(t, field, _, _)| *t == drifting && field == "mrtd"),
        "no mrtd drift of {drifting} was stored: {drift:?}"
    );
    assert!(
        drift.iter().all(|(t, _, _, n)| *t == drifting && *n == 1),
        "drift recorded again after a restart, or of another target: {drift:?}"
    );
    pool.close().await;

    // The newest row of each target, as the store orders them.
    let mut latest: BTreeMap<&str, &db::Row> = BTreeMap::new();
    for row in &rows {
        let newer = latest
            .get(row.target.as_str())
            .is_none_or(|l| (row.started_at, row.id) > (l.started_at, l.id));
        if newer {
            latest.insert(&row.target, row);
        }
    }
    assert_eq!(latest.len(), TARGETS, "targets never stored: {latest:?}");

    // A last start that runs no check: what it shows comes from the store alone.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace(EVERY_SECOND, "cron = \"0 0 1 1 *\"")).unwrap();
    let port = free_port();
    let child = run_with_json_log(port, &config, &db)
        .env_remove("NOTIFY_SOCKET")
        .env_remove("JOURNAL_STREAM")
        .spawn()
        .unwrap();
    let mut guard = KillOnDrop::new(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready(port).await {
        assert!(Instant::now() < deadline, "the last start was never ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = get(port, "/metrics").await;
    let page = get(port, "/").await;
    for (target, row) in &latest {
        let t = *target;
        assert_eq!(
            sample(&metrics, "teewatch_target_state", &[("target", t)]),
            Some(state_code(&row.state)),
            "{t}: its newest row is check {} ({})",
            row.id,
            row.state
        );
        let mine: Vec<&db::Row> = rows.iter().filter(|r| r.target == t).collect();
        let last_success = mine
            .iter()
            .filter(|r| r.state == "pass")
            .max_by_key(|r| (r.started_at, r.id))
            .map(|r| r.finished_at);
        // The state's run starts at the first check after the newest one in another state.
        let changed = mine
            .iter()
            .filter(|r| r.state != row.state)
            .map(|r| r.started_at)
            .max();
        let since = mine
            .iter()
            .filter(|r| changed.is_none_or(|c| r.started_at > c))
            .min_by_key(|r| (r.started_at, r.id))
            .map(|r| r.finished_at);
        for (name, stored) in [
            (
                "teewatch_last_check_timestamp_seconds",
                Some(row.finished_at),
            ),
            ("teewatch_last_success_timestamp_seconds", last_success),
            ("teewatch_target_state_since_timestamp_seconds", since),
        ] {
            let shown = sample(&metrics, name, &[("target", t)]);
            let stored = stored.map(|ns| ns as f64 / 1e9);
            assert!(
                match (shown, stored) {
                    (Some(a), Some(b)) => (a - b).abs() < 1e-3,
                    (a, b) => a == b,
                },
                "{t}: {name} is {shown:?}, the stored checks say {stored:?}"
            );
        }
        let drift: Vec<&str> = series(&metrics, "teewatch_measurement_drift", &[("target", t)])
            .into_iter()
            .filter(|l| !l.ends_with(" 0"))
            .collect();
        if t == drifting {
            assert_eq!(
                sample(
                    &metrics,
                    "teewatch_measurement_drift",
                    &[("target", t), ("field", "mrtd")]
                ),
                Some(1.0),
                "{metrics}"
            );
            assert_eq!(row.state, "fail", "the drifted target's newest check");
        } else {
            assert_eq!(drift, Vec::<&str>::new(), "{t} drifted");
        }
    }
    // The drifted target's row names one of the drifted registers as its last drift; no other
    // row shows one.
    let row_start = page
        .find(&format!("<tr data-target=\"{drifting}\""))
        .unwrap_or_else(|| panic!("no row of {drifting} on the status page:\n{page}"));
    let row = &page[row_start..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(
        ["mrtd", "rtmr0", "rtmr1", "rtmr2"]
            .iter()
            .any(|f| row.contains(&format!("<span class=\"warn\"><code>{f}</code> →"))),
        "the status page does not show the drift of {drifting}:\n{row}"
    );
    assert_eq!(
        page.matches("(within the drift window)").count(),
        1,
        "{page}"
    );
    let ran: f64 = series(&metrics, "teewatch_checks_total", &[])
        .iter()
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum();
    assert_eq!(ran, 0.0, "the last start checked on its own");
    let status =
        tokio::task::block_in_place(|| guard.signal_and_wait("TERM", Duration::from_secs(40)))
            .expect("did not stop within 40 s of SIGTERM");
    let stderr = guard.read_stderr();
    assert_eq!(status.code(), Some(0), "{stderr}");

    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for run in &runs {
        *kinds.entry(run.moment.kind()).or_default() += 1;
    }
    let never_ready = runs
        .iter()
        .filter(|r| r.log.count("teewatch is running") == 0);
    println!(
        "crash test figures: seed {seed}; {KILLS} SIGKILLs of `teewatch run`, each followed by a \
         restart on the same database, {TARGETS} targets checked every second, in {:.1} s \
         ({:.1} s with the checks after them)",
        killing.as_secs_f64(),
        began.elapsed().as_secs_f64()
    );
    for (kind, n) in &kinds {
        println!("  kills {kind}: {n}");
    }
    println!("  schema migrations committed when the first start was killed: {first_migrations}");
    let retention_cut = runs
        .iter()
        .filter(|r| matches!(r.moment, run::Moment::Line(Trigger::InRetention)))
        .filter(|r| r.log.count("retention applied") == 0)
        .count();
    println!("  retention passes killed before they logged their commit: {retention_cut}");
    println!(
        "  checks logged as stored: {}; rows in the database: {}; committed but cut before \
         their log line: {committed_unlogged}; writes cut inside their transaction (rolled back): \
         {rolled_back}, in {kills_in_write} kills; kills before the daemon said it was running: {}",
        logged.len(),
        rows.len(),
        never_ready.count()
    );
    println!(
        "  PRAGMA integrity_check: {}; dangling references: 0; checks recorded twice: 0 (by \
         slot, bundle digest, and the nonces of {} bundles); \
         drift events: {} (each recorded once); gauges and drift restored for {} targets",
        integrity.join(" "),
        nonces.len(),
        drift.len(),
        latest.len()
    );
}
