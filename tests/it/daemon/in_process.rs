//! The daemon in-process against the simulator: metrics after a pass, after each fault and after
//! a drift; drift stored once and not raised by round-robin nodes; restart continuity; exported
//! bundles re-verify identically; reload keeps the old configuration when the new one is bad,
//! and all of it (targets, policies, schedule) when the scheduler refuses the new one; an answer
//! that is not a bundle is stored as unknown with its bytes; a failed store write is counted,
//! not shown and not ready; a cron slot missed while the daemon was down is caught up once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use super::store_backend::Backend;
use crate::common;
use teewatch::config::StoreLocation;

use std::time::Duration;

use common::daemon_run::{
    db_path, manual_schedule, sample, scrape, series, start_daemon, status_page,
};
use common::sim_run::start;

use teewatch::daemon::ReloadError;
use teewatch::store::{HistoryFilter, Store};
use teewatch::verify::{self, Bundle, State};
use teewatch_sim::faults::Fault;
use teewatch_sim::server::{SimOptions, model_name};

const PASS: f64 = 0.0;
const UNKNOWN: f64 = 1.0;
const FAIL: f64 = 2.0;

fn config_path(run: &common::sim_run::Running) -> std::path::PathBuf {
    run.dir.join("sim.toml")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_a_pass_and_every_fault() {
    let run = start("daemon-faults", SimOptions::default()).await;
    manual_schedule(&config_path(&run));
    let daemon = start_daemon(&config_path(&run), &run.dir).await;
    let target = model_name(0);
    let t = target.as_str();

    assert!(daemon.check_now(t).await);
    let m = scrape(&daemon).await;
    assert_eq!(
        sample(&m, "teewatch_target_state", &[("target", t)]),
        Some(PASS),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            "teewatch_check_state",
            &[("target", t), ("check", "tdx_quote_signature")]
        ),
        Some(PASS)
    );
    assert_eq!(
        sample(
            &m,
            "teewatch_tdx_tcb_status",
            &[("target", t), ("status", "UpToDate")]
        ),
        Some(1.0)
    );
    let last_check = sample(
        &m,
        "teewatch_last_check_timestamp_seconds",
        &[("target", t)],
    )
    .unwrap();
    let mut last_success = sample(
        &m,
        "teewatch_last_success_timestamp_seconds",
        &[("target", t)],
    )
    .unwrap();
    assert_eq!(last_check, last_success);
    assert!(
        sample(
            &m,
            "teewatch_next_check_timestamp_seconds",
            &[("target", t)]
        )
        .unwrap()
            > last_check
    );
    // One info series per fleet field the simulator proves, all without drift.
    for field in [
        "mrtd",
        "rtmr0",
        "compose_hash",
        "app_id",
        "gpu_measurements",
    ] {
        assert_eq!(
            series(
                &m,
                "teewatch_measurement_info",
                &[("target", t), ("field", field)]
            )
            .len(),
            1,
            "{field}"
        );
        assert_eq!(
            sample(
                &m,
                "teewatch_measurement_drift",
                &[("target", t), ("field", field)]
            ),
            Some(0.0),
            "{field}"
        );
    }
    assert_eq!(
        sample(
            &m,
            "teewatch_checks_total",
            &[("target", t), ("state", "pass")]
        ),
        Some(1.0)
    );

    // Each fault trips its check, and the target's state follows; the slow faults (timeouts)
    // are covered by the simulator's own fault table.
    let table = [
        (Fault::BadQuoteSignature, "tdx_quote_signature", FAIL),
        // (TCB status faults live in the PCCS's TCB info, which the daemon has cached.)
        (Fault::DebugTd, "tdx_debug_disabled", FAIL),
        (Fault::UnboundNonce, "report_data_binding", FAIL),
        (Fault::BadGpuSignature, "gpu_evidence_signature", FAIL),
        (Fault::NrasFalse, "nras_result", FAIL),
        (Fault::NrasDown, "nras_token", UNKNOWN),
        (Fault::PccsDown, "tdx_quote_signature", PASS), // the cached collateral keeps serving
        (Fault::SignatureOtherKey, "canary_signature", FAIL),
        (Fault::Http500, "tdx_quote_parse", UNKNOWN),
        (Fault::MalformedJson, "tdx_quote_parse", UNKNOWN),
    ];
    for (fault, check, code) in table {
        run.sim.state.set_fault(None, fault, true).unwrap();
        assert!(daemon.check_now(t).await);
        run.sim.state.set_fault(None, fault, false).unwrap();
        let m = scrape(&daemon).await;
        assert_eq!(
            sample(
                &m,
                "teewatch_check_state",
                &[("target", t), ("check", check)]
            ),
            Some(code),
            "{fault:?}"
        );
        let target_state = sample(&m, "teewatch_target_state", &[("target", t)]).unwrap();
        assert!(
            target_state >= code,
            "{fault:?}: target state {target_state}"
        );
        // Success moves with a passing check and stays where it was otherwise.
        let success = sample(
            &m,
            "teewatch_last_success_timestamp_seconds",
            &[("target", t)],
        )
        .unwrap();
        if target_state == PASS {
            assert!(success > last_success, "{fault:?}");
            last_success = success;
        } else {
            assert_eq!(success, last_success, "{fault:?}");
        }
    }
    let m = scrape(&daemon).await;
    assert!(
        sample(
            &m,
            "teewatch_fetch_errors_total",
            &[("target", t), ("endpoint", "nras")]
        )
        .unwrap()
            >= 1.0,
        "{m}"
    );
    assert!(
        sample(
            &m,
            "teewatch_fetch_errors_total",
            &[
                ("target", t),
                ("endpoint", "attestation"),
                ("kind", "http_status")
            ]
        )
        .unwrap()
            >= 1.0
    );
    // No fault above changes a measurement, so none raised drift.
    for line in series(&m, "teewatch_measurement_drift", &[("target", t)]) {
        assert!(line.ends_with(" 0"), "{line}");
    }
    // Healthy again.
    assert!(daemon.check_now(t).await);
    let m = scrape(&daemon).await;
    assert_eq!(
        sample(&m, "teewatch_target_state", &[("target", t)]),
        Some(PASS)
    );
    daemon.shutdown(Duration::from_secs(5)).await;
}

/// The series of `target` a restart must bring back from the store, as scraped lines.
fn restored_gauges(scrape: &str, target: &str) -> Vec<String> {
    [
        "teewatch_target_state",
        "teewatch_last_check_timestamp_seconds",
        "teewatch_last_success_timestamp_seconds",
        "teewatch_measurement_drift",
        "teewatch_measurement_info",
        "teewatch_tdx_tcb_status",
    ]
    .iter()
    .flat_map(|name| series(scrape, name, &[("target", target)]))
    .map(str::to_string)
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_stored_once_survives_a_restart_and_exports_re_verify() {
    let run = start("daemon-drift", SimOptions::default()).await;
    manual_schedule(&config_path(&run));
    let target = model_name(0);
    let t = target.as_str();
    let daemon = start_daemon(&config_path(&run), &run.dir).await;
    assert!(daemon.check_now(t).await);
    let before = scrape(&daemon).await;
    let old_mrtd = series(
        &before,
        "teewatch_measurement_info",
        &[("target", t), ("field", "mrtd")],
    )[0]
    .to_string();

    run.sim
        .state
        .set_fault(None, Fault::DriftMrtd, true)
        .unwrap();
    assert!(daemon.check_now(t).await);
    assert!(daemon.check_now(t).await);
    let m = scrape(&daemon).await;
    assert_eq!(
        sample(
            &m,
            "teewatch_measurement_drift",
            &[("target", t), ("field", "mrtd")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &m,
            "teewatch_measurement_changes_total",
            &[("target", t), ("field", "mrtd")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &m,
            "teewatch_measurement_drift",
            &[("target", t), ("field", "compose_hash")]
        ),
        Some(0.0)
    );
    let info = series(
        &m,
        "teewatch_measurement_info",
        &[("target", t), ("field", "mrtd")],
    );
    assert_eq!(info.len(), 1, "the old value's series must be removed");
    assert_ne!(info[0], old_mrtd);
    assert_eq!(
        sample(
            &m,
            "teewatch_check_state",
            &[("target", t), ("check", "pin:mrtd")]
        ),
        Some(FAIL)
    );
    let gauges_before = restored_gauges(&m, t);
    daemon.shutdown(Duration::from_secs(5)).await;

    // Another OS image changes MRTD and the RTMRs it measures: one event per changed field, all
    // raised by the first drifted check (the second check raised none), each naming the old value.
    let store = Store::open_existing(&db_path(&run.dir)).await.unwrap();
    let events = store.drift_events(&HistoryFilter::default()).await.unwrap();
    let fields: std::collections::BTreeSet<&str> =
        events.iter().map(|e| e.event.field.as_str()).collect();
    assert!(fields.contains("mrtd"), "{events:#?}");
    assert!(
        !fields.contains("compose_hash") && !fields.contains("gpu_measurements"),
        "{events:#?}"
    );
    assert_eq!(
        fields.len(),
        events.len(),
        "one event per field: {events:#?}"
    );
    let first_drifted = events[0].check_id;
    for e in &events {
        assert_eq!(e.check_id, first_drifted);
        assert_eq!(e.event.old_values.len(), 1);
        assert_ne!(e.event.old_values[0], e.event.new_value);
    }
    let event_count = events.len();
    // Every stored check exports a bundle that re-verifies to the stored verdict.
    let checks = store.history(&HistoryFilter::default()).await.unwrap();
    assert_eq!(checks.len(), 3);
    let config = teewatch::config::Config::load(&config_path(&run)).unwrap();
    let policy = &config.target(t).unwrap().policy;
    for row in &checks {
        let bundle = store.export_bundle(row.id).await.unwrap();
        let verdict = verify::verify(
            &Bundle::from_value(bundle).unwrap(),
            policy,
            &config.trust_anchors(),
        );
        assert_eq!(
            verdict,
            store.verdict(row.id).await.unwrap(),
            "check {}",
            row.id
        );
    }
    store.close().await;

    // After a restart, before any check, the gauges come from the store.
    let daemon = start_daemon(&config_path(&run), &run.dir).await;
    let m = scrape(&daemon).await;
    let gauges_after = restored_gauges(&m, t);
    assert_eq!(gauges_after, gauges_before);
    // The drifted value is known now: another check raises no second event.
    assert!(daemon.check_now(t).await);
    daemon.shutdown(Duration::from_secs(5)).await;
    let store = Store::open_existing(&db_path(&run.dir)).await.unwrap();
    assert_eq!(
        store
            .drift_events(&HistoryFilter::default())
            .await
            .unwrap()
            .len(),
        event_count
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_nodes_do_not_drift() {
    let options = SimOptions {
        nodes: 3,
        gpus: 2,
        ..SimOptions::default()
    };
    let run = start("daemon-round-robin", options).await;
    manual_schedule(&config_path(&run));
    let target = model_name(0);
    let daemon = start_daemon(&config_path(&run), &run.dir).await;
    for _ in 0..5 {
        assert!(daemon.check_now(&target).await);
    }
    let m = scrape(&daemon).await;
    assert_eq!(
        sample(&m, "teewatch_target_state", &[("target", &target)]),
        Some(PASS),
        "{m}"
    );
    for line in series(&m, "teewatch_measurement_drift", &[("target", &target)]) {
        assert!(line.ends_with(" 0"), "{line}");
    }
    for line in series(
        &m,
        "teewatch_measurement_changes_total",
        &[("target", &target)],
    ) {
        assert!(line.ends_with(" 0"), "{line}");
    }
    daemon.shutdown(Duration::from_secs(5)).await;
    let store = Store::open_existing(&db_path(&run.dir)).await.unwrap();
    assert!(
        store
            .drift_events(&HistoryFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_checks_every_target_on_its_own() {
    let options = SimOptions {
        models: 2,
        ..SimOptions::default()
    };
    let run = start("daemon-scheduled", options).await;
    // The simulator's configuration checks every 10 s.
    let daemon = start_daemon(&config_path(&run), &run.dir).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let m = scrape(&daemon).await;
        let done = (0..2).all(|i| {
            sample(
                &m,
                "teewatch_checks_total",
                &[("target", &model_name(i)), ("state", "pass")],
            )
            .is_some_and(|n| n >= 2.0)
        });
        if done {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "two checks per target did not happen within 60 s:\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let status = reqwest::get(format!("http://{}/readyz", daemon.addr()))
        .await
        .unwrap();
    assert_eq!(status.status(), 200);
    let page = status_page(&daemon).await;
    assert!(
        page.contains(&model_name(1)) && page.contains("Test trust roots in force"),
        "{page}"
    );
    daemon.shutdown(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_keeps_the_old_configuration_when_the_new_one_is_invalid() {
    let options = SimOptions {
        models: 2,
        ..SimOptions::default()
    };
    let run = start("daemon-reload", options).await;
    let path = config_path(&run);
    manual_schedule(&path);
    let daemon = start_daemon(&path, &run.dir).await;
    for i in 0..2 {
        assert!(daemon.check_now(&model_name(i)).await);
    }
    let good = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        good.replacen("[daemon]\n", "[daemon]\nconcurrency = 0\n", 1),
    )
    .unwrap();
    let error = daemon.reload().await.unwrap_err();
    let ReloadError::Config(error) = error else {
        panic!("{error}");
    };
    assert!(
        error.issues.iter().any(|i| i.path == "daemon.concurrency"),
        "{error}"
    );
    assert!(
        daemon.check_now(&model_name(1)).await,
        "the old configuration is still in force"
    );

    // Dropping a target removes its series.
    let second = good
        .find(&format!("[[target]]\nname = \"{}\"", model_name(1)))
        .unwrap();
    std::fs::write(&path, &good[..second]).unwrap();
    daemon.reload().await.unwrap();
    let m = scrape(&daemon).await;
    assert!(!m.contains(&format!("target=\"{}\"", model_name(1))), "{m}");
    assert_eq!(sample(&m, "teewatch_targets", &[]), Some(1.0));
    assert!(!daemon.check_now(&model_name(1)).await);
    daemon.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_a_check_in_flight_finish_and_be_stored() {
    // Signatures appear 3 s after each chat, so every scheduled check takes several seconds.
    let options = SimOptions {
        signature_delay: Duration::from_secs(3),
        ..SimOptions::default()
    };
    let run = start("daemon-drain", options).await;
    let daemon = start_daemon(&config_path(&run), &run.dir).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let m = scrape(&daemon).await;
        if sample(&m, "teewatch_checks_in_flight", &[]) == Some(1.0) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no check was in flight within 30 s:\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A dispatched check waits up to one tick for its exact slot; a check that has not started
    // when the shutdown begins is cancelled, not drained. Past that second it is running (and
    // waits for its signatures for several seconds more).
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        sample(&scrape(&daemon).await, "teewatch_checks_in_flight", &[]),
        Some(1.0)
    );
    let report = daemon.shutdown(Duration::from_secs(30)).await;
    assert_eq!((report.finished, report.cancelled), (1, 0), "{report:?}");
    let store = Store::open_existing(&db_path(&run.dir)).await.unwrap();
    let checks = store.history(&HistoryFilter::default()).await.unwrap();
    assert_eq!(checks.len(), 1, "the drained check was stored");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_name_each_target_format_and_fail_an_unsupported_one() {
    use teewatch_sim::format::SimFormat;
    let formats = [SimFormat::NearGateway, SimFormat::Chutes];
    let options = SimOptions {
        models: formats.len(),
        formats: formats.to_vec(),
        tls: true,
        ..SimOptions::default()
    };
    let run = start("daemon-formats", options).await;
    manual_schedule(&config_path(&run));
    let daemon = start_daemon(&config_path(&run), &run.dir).await;
    let (gateway, chutes) = (model_name(0), model_name(1));
    assert!(daemon.check_now(&gateway).await);
    assert!(daemon.check_now(&chutes).await);
    let m = scrape(&daemon).await;
    let format_info = |target: &str, format: &str| {
        sample(
            &m,
            "teewatch_attestation_format_info",
            &[("target", target), ("format", format)],
        )
    };
    let check_state = |target: &str, check: &str| {
        sample(
            &m,
            "teewatch_check_state",
            &[("target", target), ("check", check)],
        )
    };
    // The NEAR gateway target: everything it can prove passes, the TLS connection (one answer
    // per connection) included: it ended at the attested gateway.
    assert_eq!(format_info(&gateway, "near-gateway"), Some(1.0), "{m}");
    assert_eq!(check_state(&gateway, "attestation_format"), Some(PASS));
    assert_eq!(check_state(&gateway, "canary_signature"), Some(PASS));
    assert_eq!(check_state(&gateway, "tls_key_binding"), Some(PASS));
    assert_eq!(
        sample(&m, "teewatch_target_state", &[("target", &gateway)]),
        Some(PASS),
        "{m}"
    );
    // The Chutes target: the operator sees the format and a failing attestation_format.
    assert_eq!(format_info(&chutes, "chutes"), Some(1.0), "{m}");
    assert_eq!(
        series(
            &m,
            "teewatch_attestation_format_info",
            &[("target", &chutes)]
        )
        .len(),
        1
    );
    assert_eq!(check_state(&chutes, "attestation_format"), Some(FAIL));
    assert_eq!(
        sample(&m, "teewatch_target_state", &[("target", &chutes)]),
        Some(FAIL)
    );
    common::promtool::assert_clean(&m);
    daemon.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collateral_fetch_time_is_exported_and_kept_across_a_restart() {
    let run = start("daemon-collateral-age", SimOptions::default()).await;
    manual_schedule(&config_path(&run));
    let target = model_name(0);
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    };
    // Model nodes run on the simulator's first platform.
    let fetched_at = |m: &str| {
        sample(
            m,
            "teewatch_collateral_fetched_timestamp_seconds",
            &[("fmspc", "7e5700000000")],
        )
    };
    let daemon = start_daemon(&config_path(&run), &run.dir).await;
    assert_eq!(fetched_at(&scrape(&daemon).await), None);
    let before = now();
    assert!(daemon.check_now(&target).await);
    let after = now();
    let m = scrape(&daemon).await;
    let first = fetched_at(&m).unwrap_or_else(|| panic!("no fetch time in\n{m}"));
    assert!(
        before - 1.0 <= first && first <= after,
        "{before} {first} {after}"
    );
    daemon.shutdown(Duration::from_secs(5)).await;

    // After a restart the copy on disk is as old as before: not refetched (the PCCS still
    // answers, so a refetch would show as a later time), and its fetch time still exported.
    let daemon = start_daemon(&config_path(&run), &run.dir).await;
    assert!(daemon.check_now(&target).await);
    let m = scrape(&daemon).await;
    assert_eq!(fetched_at(&m), Some(first), "{m}");
    assert_eq!(
        sample(&m, "teewatch_target_state", &[("target", &target)]),
        Some(PASS)
    );
    daemon.shutdown(Duration::from_secs(5)).await;
}

/// Log lines written while it is the thread's default subscriber (the test's own thread runs
/// the daemon calls it awaits directly).
#[derive(Clone, Default)]
struct CapturedLog(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CapturedLog {
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        let writer = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

async fn get(daemon: &teewatch::daemon::Daemon, path: &str) -> (u16, String) {
    let response = reqwest::get(format!("http://{}{path}", daemon.addr()))
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_the_scheduler_refuses_keeps_targets_policies_and_schedule() {
    let options = SimOptions {
        models: 2,
        ..SimOptions::default()
    };
    let run = start("daemon-reload-atomic", options).await;
    let path = config_path(&run);
    manual_schedule(&path);
    let daemon = start_daemon(&path, &run.dir).await;
    let (a, b) = (model_name(0), model_name(1));
    assert!(daemon.check_now(&b).await);
    let before = daemon.shared.generation();
    assert_eq!(before.number, 1);
    let slots = [daemon.next_due(&a), daemon.next_due(&b)];
    assert!(slots.iter().all(Option::is_some));
    let next_checks = |m: &str| {
        [&a, &b].map(|t| sample(m, "teewatch_next_check_timestamp_seconds", &[("target", t)]))
    };
    let gauges_before = next_checks(&scrape(&daemon).await);

    // The new file loads (croner's shape check passes), but target a's cron expression names
    // the 30th of February, which never comes: the scheduler refuses it. The same file gives b
    // a pin its evidence does not match and a 10 s interval, and adds a target.
    let good = std::fs::read_to_string(&path).unwrap();
    let split = good.find(&format!("[[target]]\nname = \"{b}\"")).unwrap();
    let (part_a, part_b) = good.split_at(split);
    let compose = part_b
        .lines()
        .find(|l| l.starts_with("compose_hash = "))
        .unwrap();
    let part_b = part_b
        .replacen(
            compose,
            &format!("compose_hash = [\"{}\"]", "00".repeat(32)),
            1,
        )
        .replacen("cron = \"0 0 1 1 *\"", "interval = \"10s\"", 1);
    let added = part_b.replacen(&format!("name = \"{b}\""), "name = \"added\"", 1);
    let refused = format!(
        "{}{part_b}\n{added}",
        part_a.replacen("cron = \"0 0 1 1 *\"", "cron = \"0 0 30 2 *\"", 1)
    );
    std::fs::write(&path, &refused).unwrap();
    teewatch::config::Config::load(&path).expect("the new file itself is valid");

    let log = CapturedLog::default();
    let error = {
        let _guard = log.install();
        daemon.reload().await.unwrap_err()
    };
    let ReloadError::Schedule(reason) = &error else {
        panic!("{error}");
    };
    let reason = reason.to_string();
    assert!(
        reason.contains(&a) && reason.contains("never fires"),
        "{reason}"
    );
    // The log says the reload was refused, and why.
    let logged = log.text();
    assert!(
        logged.contains("reload refused") && logged.contains("never fires"),
        "{logged}"
    );

    // Everything old stays: the configuration generation itself, b's policy, the targets, the
    // schedule and its gauges.
    let after = daemon.shared.generation();
    assert!(std::sync::Arc::ptr_eq(&before, &after));
    assert_eq!(after.number, 1);
    assert_eq!(after.config, before.config);
    assert!(after.config.target("added").is_none());
    assert!(!daemon.check_now("added").await);
    assert_eq!([daemon.next_due(&a), daemon.next_due(&b)], slots);
    let m = scrape(&daemon).await;
    assert_eq!(next_checks(&m), gauges_before);
    assert!(!m.contains("target=\"added\""), "{m}");
    assert!(daemon.check_now(&b).await);
    let m = scrape(&daemon).await;
    assert_eq!(
        sample(&m, "teewatch_target_state", &[("target", &b)]),
        Some(PASS),
        "b is still judged under its old pins:\n{m}"
    );

    // The status page says so.
    let (_, page) = get(&daemon, "/").await;
    let notice = page
        .split("id=\"reload-refused\"")
        .nth(1)
        .and_then(|rest| rest.split("</p>").next())
        .unwrap_or_else(|| panic!("no refused reload on the page:\n{page}"));
    assert!(notice.contains("never fires"), "{notice}");
    assert!(notice.contains("(generation 1) stays in force"), "{notice}");
    assert_eq!(
        daemon.shared.notices().reload_refused.map(|r| r.reason),
        Some(error.to_string())
    );

    // A file the scheduler accepts goes in force whole: the new pin, the new target, the new
    // schedule, and the notice goes.
    std::fs::write(&path, format!("{part_a}{part_b}\n{added}")).unwrap();
    daemon.reload().await.unwrap();
    let now_in_force = daemon.shared.generation();
    assert_eq!(now_in_force.number, 2);
    assert!(now_in_force.config.target("added").is_some());
    assert!(
        daemon.next_due(&b) < slots[1],
        "b moved to its 10 s interval"
    );
    assert!(daemon.check_now(&b).await);
    let m = scrape(&daemon).await;
    assert_eq!(
        sample(
            &m,
            "teewatch_check_state",
            &[("target", &b), ("check", "pin:compose_hash")]
        ),
        Some(FAIL)
    );
    let (_, page) = get(&daemon, "/").await;
    assert!(!page.contains("reload-refused"));
    assert!(daemon.shared.notices().reload_refused.is_none());
    daemon.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_that_is_not_a_bundle_is_stored_as_unknown_with_its_bytes() {
    let run = start("daemon-unreadable", SimOptions::default()).await;
    manual_schedule(&config_path(&run));
    let daemon = start_daemon(&config_path(&run), &run.dir).await;
    let target = model_name(0);
    let t = target.as_str();
    let answers = std::sync::Arc::new(std::sync::Mutex::new(Vec::<serde_json::Value>::new()));

    // What the fetcher assembled, with one part the envelope check refuses: a nonce that is
    // not 64 hex digits (check_envelope), then a canary entry with neither response body
    // (check_optional).
    type Break = fn(&mut serde_json::Value);
    let breaks: [(Break, &str); 2] = [
        (
            |v| v["nonce"] = serde_json::json!("not a nonce"),
            "field `nonce`: expected 64 hex characters",
        ),
        (
            |v| {
                v["canary"] = serde_json::json!([{"stream": false, "request_body": "{}"}]);
            },
            "field `canary`: canary entry: expected exactly one of",
        ),
    ];
    for (break_it, _) in breaks {
        let seen = answers.clone();
        daemon.shared.set_answer_hook(Some(std::sync::Arc::new(
            move |v: &mut serde_json::Value| {
                break_it(v);
                seen.lock().unwrap().push(v.clone());
            },
        )));
        assert!(daemon.check_now(t).await);
    }
    daemon.shared.set_answer_hook(None);
    let m = scrape(&daemon).await;
    assert_eq!(
        sample(&m, "teewatch_target_state", &[("target", t)]),
        Some(UNKNOWN),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            "teewatch_checks_total",
            &[("target", t), ("state", "unknown")]
        ),
        Some(2.0)
    );
    assert!(daemon.check_now(t).await);
    daemon.shutdown(Duration::from_secs(5)).await;

    let store = Store::open_existing(&db_path(&run.dir)).await.unwrap();
    let mut checks = store.history(&HistoryFilter::default()).await.unwrap();
    assert_eq!(checks.len(), 3);
    assert_eq!(checks[0].state, State::Pass, "a readable answer afterwards");
    checks.reverse();
    let answers = answers.lock().unwrap().clone();
    let config = teewatch::config::Config::load(&config_path(&run)).unwrap();
    let policy = &config.target(t).unwrap().policy;
    for ((row, answer), (_, error)) in checks.iter().zip(&answers).zip(breaks) {
        assert_eq!(row.state, State::Unknown);
        assert!(row.has_bundle);
        // The bytes as the fetcher assembled them, not dropped and not repaired.
        let exported = store.export_bundle(row.id).await.unwrap();
        assert_eq!(&exported, answer);
        let refused = Bundle::from_value(exported).unwrap_err().to_string();
        assert!(refused.contains(error), "{refused}");
        // Every check a verdict of this target carries is there, unknown, naming the error.
        let verdict = store.verdict(row.id).await.unwrap();
        assert_eq!(verdict.state, State::Unknown);
        assert_eq!(verdict.target, t);
        for name in [
            "attestation_format",
            "tdx_quote_signature",
            "pin:mrtd",
            "canary_signature",
        ] {
            assert!(
                verdict.checks.iter().any(|c| c.name == name),
                "{name} missing: {verdict:#?}"
            );
        }
        assert!(!verdict.checks.is_empty());
        for check in &verdict.checks {
            assert_eq!(check.state, State::Unknown, "{check:?}");
            assert!(
                check.reason.contains("could not be read as a bundle")
                    && check.reason.contains(error),
                "{check:?}"
            );
        }
        assert_eq!(row.failing.len(), verdict.checks.len());
    }
    // The readable check after them re-verifies as any other.
    let last = store.export_bundle(checks[2].id).await.unwrap();
    let verdict = verify::verify(
        &Bundle::from_value(last).unwrap(),
        policy,
        &config.trust_anchors(),
    );
    assert_eq!(verdict, store.verdict(checks[2].id).await.unwrap());
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_store_write_is_counted_not_shown_and_not_ready_until_a_write_succeeds() {
    use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};
    let run = start("daemon-store-failure", SimOptions::default()).await;
    manual_schedule(&config_path(&run));
    let daemon = start_daemon(&config_path(&run), &run.dir).await;
    let target = model_name(0);
    let t = target.as_str();
    assert!(daemon.check_now(t).await);
    let recorded = scrape(&daemon).await;
    assert_eq!(
        sample(&recorded, "teewatch_store_errors_total", &[]),
        Some(0.0)
    );
    assert_eq!(get(&daemon, "/readyz").await.0, 200);
    let check_id = daemon.shared.statuses()[t].check_id;
    assert!(check_id.is_some());

    // Mid-run, the bundles table goes away: every check's transaction fails at its last insert.
    let pool = SqlitePool::connect_with(SqliteConnectOptions::new().filename(db_path(&run.dir)))
        .await
        .unwrap();
    sqlx::query("DROP TABLE bundles")
        .execute(&pool)
        .await
        .unwrap();
    // A check that would fail if it were recorded.
    run.sim
        .state
        .set_fault(None, Fault::BadQuoteSignature, true)
        .unwrap();
    assert!(daemon.check_now(t).await);
    let m = scrape(&daemon).await;
    assert_eq!(sample(&m, "teewatch_store_errors_total", &[]), Some(1.0));
    // Nothing shows the check as recorded: every per-target series is as the stored check left
    // it (no fail state, no newer last check, no count of a failed check).
    let per_target = |scrape: &str| -> Vec<String> {
        scrape
            .lines()
            .filter(|l| l.contains(&format!("target=\"{t}\"")))
            .filter(|l| !l.starts_with("teewatch_next_check_timestamp_seconds"))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(per_target(&m), per_target(&recorded));
    assert_eq!(daemon.shared.statuses()[t].check_id, check_id);
    let (status, body) = get(&daemon, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains(&format!("storing a check of {t} failed"))
            && body.contains("no such table: bundles"),
        "{body}"
    );
    let (_, page) = get(&daemon, "/").await;
    assert!(page.contains("id=\"store-failure\""), "{page}");

    // Once the table is back, the next check is stored, shown, and the daemon is ready again.
    let migration = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite/0001_initial.sql"),
    )
    .unwrap();
    let create = migration
        .split(';')
        .find(|statement| statement.contains("CREATE TABLE bundles"))
        .unwrap();
    sqlx::query(create).execute(&pool).await.unwrap();
    pool.close().await;
    assert!(daemon.check_now(t).await);
    let m = scrape(&daemon).await;
    assert_eq!(
        sample(&m, "teewatch_target_state", &[("target", t)]),
        Some(FAIL)
    );
    assert_eq!(
        sample(
            &m,
            "teewatch_checks_total",
            &[("target", t), ("state", "fail")]
        ),
        Some(1.0)
    );
    assert_eq!(sample(&m, "teewatch_store_errors_total", &[]), Some(1.0));
    let (status, body) = get(&daemon, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    daemon.shutdown(Duration::from_secs(5)).await;

    let store = Store::open_existing(&db_path(&run.dir)).await.unwrap();
    let states: Vec<State> = store
        .history(&HistoryFilter::default())
        .await
        .unwrap()
        .iter()
        .map(|c| c.state)
        .collect();
    assert_eq!(
        states,
        [State::Fail, State::Pass],
        "the failed write left nothing"
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cron_slot_missed_while_the_daemon_was_down_is_caught_up_once() {
    use chrono::{DurationRound, TimeDelta, Utc};
    use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};
    let run = start("daemon-cron-catch-up", SimOptions::default()).await;
    let path = config_path(&run);
    manual_schedule(&path);
    let target = model_name(0);
    let t = target.as_str();
    let daemon = start_daemon(&path, &run.dir).await;
    assert!(daemon.check_now(t).await);
    daemon.shutdown(Duration::from_secs(5)).await;

    // That check was the slot of two hours ago of an hourly schedule: the daemon was then down
    // for the slots since.
    let pool = SqlitePool::connect_with(SqliteConnectOptions::new().filename(db_path(&run.dir)))
        .await
        .unwrap();
    sqlx::query("UPDATE checks SET scheduled_at = scheduled_at - 2 * 3600 * 1000000000")
        .execute(&pool)
        .await
        .unwrap();
    let last_ns: i64 = sqlx::query_scalar("SELECT scheduled_at FROM checks")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("cron = \"0 0 1 1 *\"", "cron = \"0 * * * *\""),
    )
    .unwrap();
    let last = chrono::DateTime::from_timestamp_nanos(last_ns);
    let offset = TimeDelta::from_std(teewatch::schedule::planner::phase(
        t,
        teewatch::schedule::planner::CRON_MAX_PHASE,
    ))
    .unwrap();
    let missed =
        (last - offset).duration_trunc(TimeDelta::hours(1)).unwrap() + TimeDelta::hours(1) + offset;
    assert!(missed < Utc::now() - TimeDelta::minutes(50));

    // At start the oldest missed slot is checked at once, and only that one.
    let daemon = start_daemon(&path, &run.dir).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let m = loop {
        let m = scrape(&daemon).await;
        let done = sample(
            &m,
            "teewatch_checks_total",
            &[("target", t), ("state", "pass")],
        )
        .is_some_and(|n| n >= 1.0);
        if done {
            break m;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the missed slot was not caught up within 20 s:\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let seconds = |at: chrono::DateTime<Utc>| at.timestamp_millis() as f64 / 1000.0;
    assert_eq!(
        sample(
            &m,
            "teewatch_last_dispatched_slot_timestamp_seconds",
            &[("target", t)]
        ),
        Some(seconds(missed))
    );
    let next = daemon.next_due(t).unwrap();
    assert!(
        next > Utc::now() && next - Utc::now() <= TimeDelta::minutes(61),
        "{next}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let m = scrape(&daemon).await;
    assert_eq!(
        sample(
            &m,
            "teewatch_checks_total",
            &[("target", t), ("state", "pass")]
        ),
        Some(1.0),
        "one catch-up, not one per missed slot"
    );
    daemon.shutdown(Duration::from_secs(5)).await;
    let store = Store::open_existing(&db_path(&run.dir)).await.unwrap();
    let checks = store.history(&HistoryFilter::default()).await.unwrap();
    assert_eq!(checks.len(), 2);
    assert_eq!(checks[0].scheduled_at, missed);
    store.close().await;
}

/// A scrape as the restart comparison reads it: every gauge sample by series (name and labels)
/// with its value, and the series of every other family (counters restart at zero, histograms
/// hold this process's observations). The process's own `process_*` series are left out.
struct Exposition {
    gauges: std::collections::BTreeMap<String, String>,
    others: std::collections::BTreeSet<String>,
}

fn exposition(scrape: &str) -> Exposition {
    let mut types = std::collections::BTreeMap::new();
    let mut out = Exposition {
        gauges: std::collections::BTreeMap::new(),
        others: std::collections::BTreeSet::new(),
    };
    for line in scrape.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            types.insert(name.to_string(), kind.to_string());
            continue;
        }
        // Process figures and the age of a fleet heartbeat (a PostgreSQL store is a fleet of
        // one) are readings of the moment, not state the restart should restore.
        if line.starts_with('#')
            || line.is_empty()
            || line.starts_with("process_")
            || line.starts_with("teewatch_fleet_instance_heartbeat_age_seconds")
        {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        let name = series.split('{').next().unwrap();
        if types.get(name).map(String::as_str) == Some("gauge") {
            out.gauges.insert(series.to_string(), value.to_string());
        } else {
            out.others.insert(series.to_string());
        }
    }
    out
}

/// Scrapes until `done` holds for a scrape, for at most `within`.
async fn scrape_until(
    daemon: &teewatch::daemon::Daemon,
    within: Duration,
    what: &str,
    done: impl Fn(&str) -> bool,
) -> String {
    let deadline = std::time::Instant::now() + within;
    loop {
        let m = scrape(daemon).await;
        if done(&m) {
            return m;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what} not within {within:?}:\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Issue 16 item 4: a restarted daemon answers its first scrape, before any check, with every
/// gauge the stopped one showed (per-target states, times, TCB status, formats, measurements,
/// drift flags, state-since, last dispatched slot, next check, the platforms' collateral
/// expiry and fetch time, and each target's platforms), from the store and the collateral cache
/// alone.
///
/// On PostgreSQL too (issue 22): the same gauges come back from a PostgreSQL store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_daemon_scrapes_like_the_stopped_one_before_any_check() {
    restarted_daemon_scrapes_like_the_stopped_one(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_daemon_on_postgres_scrapes_like_the_stopped_one_before_any_check() {
    restarted_daemon_scrapes_like_the_stopped_one(Backend::Postgres).await;
}

async fn restarted_daemon_scrapes_like_the_stopped_one(backend: Backend) {
    let options = SimOptions {
        models: 2,
        ..SimOptions::default()
    };
    let run = start("daemon-restart-gauges", options).await;
    let location = backend.location(&run.dir, "daemon-restart").await;
    // `--db` as the command line gives it: the file, or the postgres URL.
    let db = match &location {
        StoreLocation::Sqlite(path) => path.clone(),
        StoreLocation::Postgres { url, .. } => std::path::PathBuf::from(url),
    };
    let start_daemon = async |path: &std::path::Path, _dir: &std::path::Path| {
        teewatch::daemon::Daemon::start(teewatch::daemon::RunOptions {
            config_path: path.to_path_buf(),
            listen: Some("127.0.0.1:0".parse().unwrap()),
            db: Some(db.clone()),
        })
        .await
        .unwrap_or_else(|e| panic!("daemon did not start: {e}"))
    };
    let path = config_path(&run);
    let (good, bad) = (model_name(0), model_name(1));
    run.sim
        .state
        .set_fault(Some(&bad), Fault::UnboundNonce, true)
        .unwrap();
    // Checked by the scheduler (so the dispatched-slot gauge is the scheduler's), every 3 s.
    let every_3s = "cron = \"*/3 * * * * *\"";
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("interval = \"10s\"", every_3s)).unwrap();
    let daemon = start_daemon(&path, &run.dir).await;
    let checks_of = |m: &str, t: &str| {
        ["pass", "unknown", "fail"]
            .iter()
            .filter_map(|s| sample(m, "teewatch_checks_total", &[("target", t), ("state", s)]))
            .sum::<f64>()
    };
    scrape_until(
        &daemon,
        Duration::from_secs(60),
        "two checks per target",
        |m| checks_of(m, &good) >= 2.0 && checks_of(m, &bad) >= 2.0,
    )
    .await;
    // Then no more checks: a yearly cron, put in force by a reload; a check dispatched before
    // it finishes first.
    std::fs::write(
        &path,
        std::fs::read_to_string(&path)
            .unwrap()
            .replace(every_3s, "cron = \"0 0 1 1 *\""),
    )
    .unwrap();
    daemon.reload().await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = scrape_until(
        &daemon,
        Duration::from_secs(30),
        "no check in flight",
        |m| sample(m, "teewatch_checks_in_flight", &[]) == Some(0.0),
    )
    .await;
    daemon.shutdown(Duration::from_secs(5)).await;

    let store = Store::open_existing_location(&location).await.unwrap();
    let history = store.history(&HistoryFilter::default()).await.unwrap();
    store.close().await;
    let recorded = |t: &str| history.iter().filter(|c| c.target == t).count() as f64;
    assert_eq!(checks_of(&before, &good), recorded(&good), "{before}");
    assert_eq!(checks_of(&before, &bad), recorded(&bad), "{before}");

    let daemon = start_daemon(&path, &run.dir).await;
    let after = scrape(&daemon).await;
    assert_eq!(checks_of(&after, &good) + checks_of(&after, &bad), 0.0);
    daemon.shutdown(Duration::from_secs(5)).await;

    // The gauges the issue found missing after a restart are there.
    for (name, labels) in [
        (
            "teewatch_collateral_expiry_timestamp_seconds",
            vec![("fmspc", "7e5700000000")],
        ),
        (
            "teewatch_collateral_fetched_timestamp_seconds",
            vec![("fmspc", "7e5700000000")],
        ),
        (
            "teewatch_tdx_tcb_status",
            vec![("target", good.as_str()), ("status", "UpToDate")],
        ),
        (
            "teewatch_tdx_tcb_status",
            vec![("target", bad.as_str()), ("status", "UpToDate")],
        ),
        (
            "teewatch_target_state_since_timestamp_seconds",
            vec![("target", bad.as_str())],
        ),
        (
            "teewatch_target_platform_info",
            vec![("target", good.as_str()), ("fmspc", "7e5700000000")],
        ),
        (
            "teewatch_target_platform_info",
            vec![("target", bad.as_str()), ("fmspc", "7e5700000000")],
        ),
    ] {
        assert!(
            sample(&after, name, &labels).is_some(),
            "{name} {labels:?}:\n{after}"
        );
    }
    // State-since is the first check of the current run, not the latest check.
    let first_check = |t: &str| {
        history
            .iter()
            .filter(|c| c.target == t)
            .map(|c| c.finished_at)
            .min()
            .unwrap()
    };
    for t in [&good, &bad] {
        let since = sample(
            &after,
            "teewatch_target_state_since_timestamp_seconds",
            &[("target", t)],
        );
        assert_eq!(
            since,
            Some(first_check(t).timestamp_millis() as f64 / 1000.0),
            "{t}"
        );
        assert!(
            since
                < sample(
                    &after,
                    "teewatch_last_check_timestamp_seconds",
                    &[("target", t)]
                ),
            "{t}"
        );
    }

    let (before, after) = (exposition(&before), exposition(&after));
    let differing: Vec<String> = before
        .gauges
        .iter()
        .filter(|(series, value)| after.gauges.get(*series) != Some(*value))
        .map(|(series, value)| {
            format!(
                "{series}: {value} before, {:?} after",
                after.gauges.get(series)
            )
        })
        .chain(
            after
                .gauges
                .keys()
                .filter(|s| !before.gauges.contains_key(*s))
                .map(|s| format!("{s}: only after the restart")),
        )
        .collect();
    assert!(
        differing.is_empty(),
        "gauges differ across the restart:\n{}",
        differing.join("\n")
    );
    assert_eq!(
        before.others, after.others,
        "the series of counters and histograms"
    );
    assert!(before.gauges.len() > 40, "{:?}", before.gauges.keys());
}
