//! Drift you can accept: a reload whose pin accepts a drifted value clears its
//! `teewatch_measurement_drift` at once (a reload that changes nothing does not) and records
//! when, which `teewatch history` shows; an unpinned drift acknowledged with
//! `teewatch history ack` against the running daemon's database (who, when, why) stops counting
//! at the target's next check; both survive a restart and a backup; the store accepts each
//! drifted value once, says why when a request names no drift, and retention forgets old
//! acceptances.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use super::store_backend::{self, Backend, on_both};
use crate::common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::daemon_run::{db_path, manual_schedule, sample, scrape, start_daemon};
use common::sim_run::{Running, start};
use serde_json::Value;

use teewatch::drift::{self, Acceptance, AcceptedBy, TargetHistory};
use teewatch::record::CheckRecord;
use teewatch::store::{AckOutcome, AckRequest, HistoryFilter, Retention, Store};
use teewatch::verify::{self, Bundle};
use teewatch_sim::faults::Fault;
use teewatch_sim::server::{SimOptions, model_name};

const BIN: &str = env!("CARGO_BIN_EXE_teewatch");

/// Runs the binary off the async runtime (the simulator and the daemon serve on it), as user
/// `alice` (the acknowledger the store records).
async fn teewatch(args: &[&str], db: &Path) -> Output {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let db = db.to_path_buf();
    tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(&args)
            .arg("--db")
            .arg(&db)
            .env("USER", "alice")
            .env_remove("SUDO_USER")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `teewatch_measurement_drift` of `target`'s compose hash in a scrape.
fn compose_drift(scrape: &str, target: &str) -> Option<f64> {
    sample(
        scrape,
        "teewatch_measurement_drift",
        &[("target", target), ("field", "compose_hash")],
    )
}

/// The value the target's compose hash drifted to, from its stored drift event.
async fn drifted_compose_hash(store: &Store, target: &str) -> (String, DateTime<Utc>) {
    let events = store
        .drift_events(&HistoryFilter {
            target: Some(target.to_string()),
            ..HistoryFilter::default()
        })
        .await
        .unwrap();
    let event = events
        .iter()
        .find(|e| e.event.field == "compose_hash")
        .unwrap_or_else(|| panic!("no compose_hash drift event: {events:#?}"));
    (event.event.new_value.clone(), event.event.at)
}

/// The configuration with the `compose_hash` pin line rewritten by `edit`.
fn edit_compose_pin(config: &Path, edit: impl Fn(&str) -> Option<String>) {
    let text = std::fs::read_to_string(config).unwrap();
    let mut found = false;
    let mut out = String::new();
    for line in text.lines() {
        if line.starts_with("compose_hash = [") {
            found = true;
            if let Some(new) = edit(line) {
                out.push_str(&new);
                out.push('\n');
            }
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert!(found, "no compose_hash pin in:\n{text}");
    std::fs::write(config, out).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_whose_pin_accepts_the_drifted_value_clears_the_gauge_at_once() {
    let run = start("accept-pin", SimOptions::default()).await;
    let config = run.dir.join("sim.toml");
    manual_schedule(&config);
    let target = model_name(0);
    let t = target.as_str();
    let daemon = start_daemon(&config, &run.dir).await;
    assert!(daemon.check_now(t).await);
    run.sim
        .state
        .set_fault(None, Fault::DriftCompose, true)
        .unwrap();
    assert!(daemon.check_now(t).await);
    assert_eq!(compose_drift(&scrape(&daemon).await, t), Some(1.0));

    // Control: a reload that leaves the pin as it was keeps the drift up.
    daemon.reload().await.unwrap();
    assert_eq!(compose_drift(&scrape(&daemon).await, t), Some(1.0));
    assert!(
        daemon
            .shared
            .store
            .acceptances(&HistoryFilter::default())
            .await
            .unwrap()
            .is_empty()
    );

    // The pin now accepts the new value: cleared by the reload itself, before any check.
    let (value, drifted_at) = drifted_compose_hash(&daemon.shared.store, t).await;
    edit_compose_pin(&config, |line| {
        Some(line.replacen(']', &format!(", \"{value}\"]"), 1))
    });
    let reloaded_at = Utc::now();
    daemon.reload().await.unwrap();
    let m = scrape(&daemon).await;
    assert_eq!(compose_drift(&m, t), Some(0.0), "{m}");

    // The history says when the value was accepted, and how.
    let accepted = daemon
        .shared
        .store
        .acceptances(&HistoryFilter::default())
        .await
        .unwrap();
    assert_eq!(accepted.len(), 1, "{accepted:#?}");
    let a = &accepted[0];
    assert_eq!(
        (a.target.as_str(), a.acceptance.field.as_str()),
        (t, "compose_hash")
    );
    assert_eq!(a.acceptance.value, value);
    assert_eq!(a.acceptance.how, AcceptedBy::Pin);
    assert!(
        a.acceptance.at >= reloaded_at && a.acceptance.at >= drifted_at,
        "{a:#?}"
    );
    let db = db_path(&run.dir);
    let out = teewatch(&["history"], &db).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let listed = stdout(&out);
    assert!(
        listed.contains(&format!(
            "{t}  compose_hash = {value}  accepted by the pins in force"
        )),
        "{listed}"
    );

    // The next check passes the pin; nothing more is recorded as accepted.
    assert!(daemon.check_now(t).await);
    let m = scrape(&daemon).await;
    assert_eq!(compose_drift(&m, t), Some(0.0));
    assert_eq!(
        sample(
            &m,
            "teewatch_check_state",
            &[("target", t), ("check", "pin:compose_hash")]
        ),
        Some(0.0)
    );
    daemon.shutdown(Duration::from_secs(5)).await;

    // A restart brings the accepted state back from the store, without recording it again.
    let daemon = start_daemon(&config, &run.dir).await;
    assert_eq!(compose_drift(&scrape(&daemon).await, t), Some(0.0));
    let again = daemon
        .shared
        .store
        .acceptances(&HistoryFilter::default())
        .await
        .unwrap();
    assert_eq!(again, accepted);
    daemon.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpinned_drift_acknowledged_against_the_live_database_stops_at_the_next_check() {
    let run = start("accept-ack", SimOptions::default()).await;
    let config = run.dir.join("sim.toml");
    manual_schedule(&config);
    // The compose hash is not pinned: its drift is a new value, held up by the drift window.
    edit_compose_pin(&config, |_| None);
    let target = model_name(0);
    let t = target.as_str();
    let daemon = start_daemon(&config, &run.dir).await;
    assert!(daemon.check_now(t).await);
    run.sim
        .state
        .set_fault(None, Fault::DriftCompose, true)
        .unwrap();
    assert!(daemon.check_now(t).await);
    let m = scrape(&daemon).await;
    assert_eq!(compose_drift(&m, t), Some(1.0));
    assert_eq!(
        sample(
            &m,
            "teewatch_check_state",
            &[("target", t), ("check", "pin:compose_hash")]
        ),
        None,
        "the compose hash is not pinned"
    );
    let (value, _) = drifted_compose_hash(&daemon.shared.store, t).await;
    let db = db_path(&run.dir);

    // A field that did not drift, or a value it did not drift to, names what did: usage error.
    let out = teewatch(&["history", "ack", "--target", t, "--field", "mrtd"], &db).await;
    assert_eq!(out.status.code(), Some(64), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("has no drift event of mrtd")
            && stderr(&out).contains("drifted fields: compose_hash"),
        "{}",
        stderr(&out)
    );
    let out = teewatch(
        &[
            "history",
            "ack",
            "--target",
            t,
            "--field",
            "compose_hash",
            "--value",
            "ff",
        ],
        &db,
    )
    .await;
    assert_eq!(out.status.code(), Some(64));
    assert!(
        stderr(&out).contains(&format!("expected one of its drifted values ({value})")),
        "{}",
        stderr(&out)
    );

    // Acknowledged while the daemon runs on the same database: recorded with who and why.
    let out = teewatch(
        &[
            "history",
            "ack",
            "--target",
            t,
            "--field",
            "compose_hash",
            "--note",
            "reviewed the new compose",
        ],
        &db,
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let said = stdout(&out);
    assert!(
        said.contains(&format!(
            "{t}  compose_hash = {value}  acknowledged by alice"
        )) && said.contains(": reviewed the new compose"),
        "{said}"
    );
    // The daemon takes it in at the target's next check.
    assert_eq!(compose_drift(&scrape(&daemon).await, t), Some(1.0));
    assert!(daemon.check_now(t).await);
    assert_eq!(compose_drift(&scrape(&daemon).await, t), Some(0.0));

    // Acknowledging again records nothing new.
    let out = teewatch(
        &["history", "ack", "--target", t, "--field", "compose_hash"],
        &db,
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("already accepted since it drifted:"),
        "{}",
        stdout(&out)
    );

    // The history lists it; a backup taken now holds it.
    let out = teewatch(&["history", "--json"], &db).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let accepted = listed["drift_accepted"].as_array().unwrap();
    assert_eq!(accepted.len(), 1, "{listed:#}");
    assert_eq!(accepted[0]["how"], "ack");
    assert_eq!(accepted[0]["field"], "compose_hash");
    assert_eq!(accepted[0]["value"], value.as_str());
    assert_eq!(accepted[0]["note"], "reviewed the new compose");
    assert!(
        accepted[0]["by"].as_str().unwrap().starts_with("alice"),
        "{listed:#}"
    );
    let copy = run.dir.join("backup.db");
    let out = teewatch(&["backup", "--out", copy.to_str().unwrap()], &db).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = teewatch(&["history", "--json"], &copy).await;
    let copied: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(copied["drift_accepted"], listed["drift_accepted"]);
    daemon.shutdown(Duration::from_secs(5)).await;

    // A restart keeps it accepted.
    let daemon = start_daemon(&config, &run.dir).await;
    assert_eq!(compose_drift(&scrape(&daemon).await, t), Some(0.0));
    daemon.shutdown(Duration::from_secs(5)).await;
}

/// One real check of the simulator's model recorded as target `name`, finished at `finished`,
/// its drift judged against `history` (then absorbed).
async fn check(
    run: &Running,
    name: &str,
    finished: DateTime<Utc>,
    history: &mut TargetHistory,
) -> CheckRecord {
    let target = run.config.target(&model_name(0)).unwrap();
    let fetched = run.fetcher.check_timed(&run.config, target).await.unwrap();
    let bundle = Bundle::from_value(fetched.bundle.clone()).unwrap();
    let verdict = verify::verify(&bundle, &target.policy, &run.config.trust_anchors());
    let measurements = drift::measurements(&verdict);
    let events = drift::detect(history, &measurements, &target.policy, finished);
    history.absorb(&measurements, &events, finished);
    CheckRecord {
        target: name.to_string(),
        scheduled_at: finished,
        started_at: finished,
        finished_at: finished,
        phases: fetched.phases,
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

on_both!(the_store_accepts_each_drifted_value_once_and_forgets_old_acceptances);

async fn the_store_accepts_each_drifted_value_once_and_forgets_old_acceptances(backend: Backend) {
    let run = start("accept-store", SimOptions::default()).await;
    let location = backend.location(&run.dir, "accept-store").await;
    let store = Store::open_location(&location).await.unwrap();
    let t0 = DateTime::parse_from_rfc3339("2026-06-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let day = chrono::Duration::days(1);
    let mut history = TargetHistory::default();
    store
        .record(&check(&run, "m", t0, &mut history).await)
        .await
        .unwrap();
    run.sim
        .state
        .set_fault(None, Fault::DriftMrtd, true)
        .unwrap();
    let drifted = check(&run, "m", t0 + day, &mut history).await;
    let value = drifted
        .drift
        .iter()
        .find(|e| e.field == "mrtd")
        .unwrap()
        .new_value
        .clone();
    store.record(&drifted).await.unwrap();
    let request = |target: &str, field: &str, value: Option<&str>, at| AckRequest {
        target: target.into(),
        field: field.into(),
        value: value.map(str::to_string),
        by: Some("alice@host".into()),
        note: Some("new OS image rolled out".into()),
        at,
    };
    let nothing = |outcome: AckOutcome| match outcome {
        AckOutcome::NothingToAccept(why) => why,
        other => panic!("{other:#?}"),
    };
    let why = nothing(
        store
            .acknowledge(&request("x", "mrtd", None, t0 + day * 2))
            .await
            .unwrap(),
    );
    assert_eq!(why, "no target named \"x\" in the store");
    let why = nothing(
        store
            .acknowledge(&request("m", "gpu_measurements", None, t0 + day * 2))
            .await
            .unwrap(),
    );
    assert!(why.contains("(drifted fields: "), "{why}");
    assert!(why.contains("mrtd"), "{why}");
    let why = nothing(
        store
            .acknowledge(&request("m", "mrtd", Some("00"), t0 + day * 2))
            .await
            .unwrap(),
    );
    assert!(why.contains(&value), "{why}");

    let AckOutcome::Accepted(rows) = store
        .acknowledge(&request("m", "mrtd", Some(&value), t0 + day * 2))
        .await
        .unwrap()
    else {
        panic!("not accepted")
    };
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0].acceptance,
        Acceptance {
            field: "mrtd".into(),
            value: value.clone(),
            how: AcceptedBy::Ack,
            by: Some("alice@host".into()),
            note: Some("new OS image rolled out".into()),
            at: t0 + day * 2,
        }
    );
    let AckOutcome::AlreadyAccepted(again) = store
        .acknowledge(&request("m", "mrtd", None, t0 + day * 3))
        .await
        .unwrap()
    else {
        panic!("accepted twice")
    };
    assert_eq!(again, rows);

    // Pins accepting it later: the latest acceptance is what a restart rebuilds.
    let by_pin = Acceptance {
        field: "mrtd".into(),
        value: value.clone(),
        how: AcceptedBy::Pin,
        by: None,
        note: None,
        at: t0 + day * 4,
    };
    store
        .record_acceptances("m", std::slice::from_ref(&by_pin))
        .await
        .unwrap();
    store.close().await;
    let store = Store::open_existing_location(&location).await.unwrap();
    let histories = store.histories().await.unwrap();
    assert_eq!(
        histories["m"].accepted[&("mrtd".to_string(), value.clone())],
        t0 + day * 4
    );
    let listed = store.acceptances(&HistoryFilter::default()).await.unwrap();
    let hows: Vec<AcceptedBy> = listed.iter().map(|a| a.acceptance.how).collect();
    assert_eq!(hows, [AcceptedBy::Pin, AcceptedBy::Ack], "newest first");
    let since = HistoryFilter {
        since: Some(t0 + day * 3),
        ..HistoryFilter::default()
    };
    assert_eq!(store.acceptances(&since).await.unwrap().len(), 1);

    // Retention 90 days after the acknowledgement: the checks and the acknowledgement go, the
    // later acceptance by pins stays until its own time comes.
    store
        .apply_retention(t0 + day * 93, &Retention::default())
        .await
        .unwrap();
    let left = store.acceptances(&HistoryFilter::default()).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].acceptance, by_pin);
    store.close().await;
}
