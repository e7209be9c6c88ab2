//! The daemon in-process against the simulator: metrics after a pass, after each fault and after
//! a drift; drift stored once and not raised by round-robin nodes; restart continuity; exported
//! bundles re-verify identically; reload keeps the old configuration when the new one is bad.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::time::Duration;

use common::daemon_run::{db_path, manual_schedule, sample, scrape, series, start_daemon};
use common::sim_run::start;

use teewatch::sim::faults::Fault;
use teewatch::sim::server::{SimOptions, model_name};
use teewatch::store::{HistoryFilter, Store};
use teewatch::verify::{self, Bundle};

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
    let page = reqwest::get(format!("http://{}/", daemon.addr()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
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
    use teewatch::sim::format::SimFormat;
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
    // The NEAR gateway target: everything it can prove passes; the models behind the gateway
    // leave tls_key_binding unknown, never a pass.
    assert_eq!(format_info(&gateway, "near-gateway"), Some(1.0), "{m}");
    assert_eq!(check_state(&gateway, "attestation_format"), Some(PASS));
    assert_eq!(check_state(&gateway, "canary_signature"), Some(PASS));
    assert_eq!(check_state(&gateway, "tls_key_binding"), Some(UNKNOWN));
    assert_eq!(
        sample(&m, "teewatch_target_state", &[("target", &gateway)]),
        Some(UNKNOWN)
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
