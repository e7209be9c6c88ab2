//! A real Prometheus server (Debian's `prometheus`) scrapes the daemon, which checks the
//! simulator, evaluates the SHIPPED alert rules with the one documented change (`for: <N>m` →
//! `for: <N>s`, docs/alerts.md) and sends its alerts to a real Alertmanager (Debian's
//! `prometheus-alertmanager`) running the example configuration, whose webhooks deliver to a
//! loopback receiver here. Faults switched in the simulator must raise the right alerts in
//! Prometheus, and nothing else, and give the notifications docs/alerts.md#one-page-per-incident
//! lists: a pinned drift pages once (the drift; the failing alert is inhibited); a foreign canary
//! signature pages once (the canary alert); NRAS down pages nothing (one warning for NRAS, the
//! target's unverifiable warning inhibited); a stopped daemon pages once (TeewatchDown, which
//! holds back the alerts it keeps firing, RESOLVED never sent); a fleet-wide TCB change is one
//! grouped warning and no page. Without the tools this fails at once, naming the install command.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use crate::common;
use crate::common::alertmanager;
use crate::common::prom;
use crate::common::prom_server;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use alertmanager::{PAGE, TICKET, set, start_notifier};
use common::daemon_run::{sample, scrape, series, start_daemon};
use common::sim_run::start;
use prom_server::{
    Prometheus, assert_quiet_for_a_while, summary, until, until_firing, until_quiet, until_scraped,
    until_state,
};
use teewatch::daemon::Daemon;
use teewatch_sim::faults::Fault;
use teewatch_sim::server::{SimOptions, model_name};

const FAILING: &str = "TeewatchAttestationFailing";
const DRIFT: &str = "TeewatchMeasurementDrift";
const CANARY: &str = "TeewatchCanarySignatureFailing";
const UNVERIFIABLE: &str = "TeewatchAttestationUnverifiable";
const MOSTLY: &str = "TeewatchAttestationMostlyUnverifiable";
const NRAS: &str = "TeewatchNrasUnreachable";
const TCB: &str = "TeewatchTcbStatusOutsidePolicy";
const DOWN: &str = "TeewatchDown";

/// After a fault switch: waits until no scheduled check that started before it is still
/// running, then checks once, so every later check and the gauges see the new state.
async fn check_after_switch(daemon: &Daemon, target: &str) {
    until("checks in flight", Duration::from_secs(60), || async {
        let m = scrape(daemon).await;
        match sample(&m, "teewatch_checks_in_flight", &[]) {
            Some(0.0) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert!(daemon.check_now(target).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prometheus_raises_the_shipped_alerts_for_each_fault_and_nothing_else() {
    let binary = common::tool::tool("prometheus", prom::INSTALL);
    let began = Instant::now();
    // The simulator's configuration checks every 10 s: the scheduler runs on its own, and each
    // fault switch is followed by one check driven here so the phases do not wait for it.
    let run = start("prometheus-e2e", SimOptions::default()).await;
    let daemon = start_daemon(&run.dir.join("sim.toml"), &run.dir).await;
    let target = model_name(0);
    let t = target.as_str();
    assert!(daemon.check_now(t).await);
    let notifier = start_notifier().await;
    let prometheus =
        Prometheus::start(&binary, daemon.addr(), Some(notifier.alertmanager.addr)).await;
    let instance = daemon.addr().to_string();

    // The shipped rules are loaded, with every `for` read in seconds.
    let shipped = prom::alert_names(&prom::read(prom::RULES));
    let groups = prometheus.api("/api/v1/rules", &[]).await;
    let groups = groups["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0]["name"], "teewatch");
    let rules = groups[0]["rules"].as_array().unwrap();
    let loaded: Vec<&str> = rules
        .iter()
        .filter(|r| r["type"] == "alerting")
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(loaded, shipped);
    let duration = |name: &str| {
        rules
            .iter()
            .find(|r| r["name"] == name)
            .and_then(|r| r["duration"].as_f64())
    };
    assert_eq!(duration(DRIFT), Some(0.0));
    assert_eq!(duration(FAILING), Some(3.0));
    assert_eq!(duration(UNVERIFIABLE), Some(30.0));
    assert_eq!(duration(DOWN), Some(5.0));

    // Scraped, passing, and quiet: no alert, no notification.
    until_scraped(&prometheus, &instance).await;
    until_state(&prometheus, t, 0.0).await;
    let up = prometheus.query("up{job=\"teewatch\"}").await;
    assert_eq!(up.len(), 1);
    assert_eq!(up[0].1, 1.0);
    assert_quiet_for_a_while(&prometheus, "a healthy target").await;
    assert!(notifier.receiver.notifications().is_empty());
    eprintln!("e2e: healthy after {:?}", began.elapsed());

    // 1. Another OS image: the MRTD drifts at once, and its pin makes the target fail. One
    // page: the drift, naming the new value; the failing alert (cause="pin") is held back.
    run.sim
        .state
        .set_fault(None, Fault::DriftMrtd, true)
        .unwrap();
    check_after_switch(&daemon, t).await;
    let m = scrape(&daemon).await;
    let info = series(
        &m,
        "teewatch_measurement_info",
        &[("target", t), ("field", "mrtd")],
    );
    let new_mrtd = info[0]
        .split("value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_string();
    let alerts = until_firing(
        &prometheus,
        "drift",
        &[
            (DRIFT, &[("target", t), ("field", "mrtd")]),
            (FAILING, &[("target", t), ("cause", "pin")]),
        ],
        &[DRIFT, FAILING],
        Duration::from_secs(30),
    )
    .await;
    for a in &alerts {
        assert_eq!(a.label("severity"), "critical", "{a:?}");
        assert_eq!(a.label("instance"), instance, "{a:?}");
        assert!(
            !a.annotation("description").contains(&instance),
            "an annotation names the address: {a:?}"
        );
    }
    let drift = alerts
        .iter()
        .find(|a| a.name == DRIFT && a.label("field") == "mrtd")
        .unwrap();
    assert!(
        drift
            .annotation("description")
            .contains(&format!("the value now is {new_mrtd}.")),
        "{drift:?}"
    );
    let failing = alerts.iter().find(|a| a.name == FAILING).unwrap();
    assert!(
        failing.annotation("description").contains("pin:mrtd"),
        "{failing:?}"
    );
    assert_eq!(
        failing.annotation("runbook_url"),
        "https://teewatch.example.org/docs/alerts.md#teewatchattestationfailing"
    );
    notifier.until_notified(PAGE, "firing", (DRIFT, t), 0).await;
    notifier.until_inhibited(FAILING, t, &[(DRIFT, t)]).await;
    notifier.settle().await;
    assert_eq!(notifier.firing_since(PAGE, 0), set(&[(DRIFT, t)]));
    assert_eq!(notifier.receiver.to(PAGE).len(), 1, "one page");
    assert!(notifier.receiver.to(TICKET).is_empty());
    // Back to the pinned image: the value is known and allowed, so nothing stays raised
    // whatever the drift window; the page is resolved.
    run.sim
        .state
        .set_fault(None, Fault::DriftMrtd, false)
        .unwrap();
    check_after_switch(&daemon, t).await;
    until_quiet(&prometheus, "after the drift", Duration::from_secs(30)).await;
    notifier
        .until_notified(PAGE, "resolved", (DRIFT, t), 0)
        .await;
    eprintln!("e2e: drift done after {:?}", began.elapsed());

    // 2. Canary replies signed by a key no attested node holds: one page, the canary alert.
    let seen = notifier.receiver.notifications().len();
    run.sim
        .state
        .set_fault(None, Fault::SignatureOtherKey, true)
        .unwrap();
    check_after_switch(&daemon, t).await;
    let alerts = until_firing(
        &prometheus,
        "foreign canary signature",
        &[
            (CANARY, &[("target", t), ("check", "canary_signature")]),
            (FAILING, &[("target", t), ("cause", "canary")]),
        ],
        &[CANARY, FAILING],
        Duration::from_secs(30),
    )
    .await;
    let failing = alerts.iter().find(|a| a.name == FAILING).unwrap();
    assert!(
        failing
            .annotation("description")
            .contains("canary_signature"),
        "{failing:?}"
    );
    for a in &alerts {
        assert_eq!(a.label("severity"), "critical", "{a:?}");
    }
    notifier
        .until_notified(PAGE, "firing", (CANARY, t), seen)
        .await;
    notifier.until_inhibited(FAILING, t, &[(CANARY, t)]).await;
    notifier.settle().await;
    assert_eq!(notifier.firing_since(PAGE, seen), set(&[(CANARY, t)]));
    assert!(notifier.firing_since(TICKET, seen).is_empty());
    run.sim
        .state
        .set_fault(None, Fault::SignatureOtherKey, false)
        .unwrap();
    check_after_switch(&daemon, t).await;
    until_state(&prometheus, t, 0.0).await;
    until_quiet(&prometheus, "after the canary", Duration::from_secs(30)).await;
    notifier
        .until_notified(PAGE, "resolved", (CANARY, t), seen)
        .await;
    eprintln!("e2e: canary done after {:?}", began.elapsed());

    // 3. NRAS down: unknown, not failing. Only warnings: TeewatchNrasUnreachable for the
    // daemon, and the target's unverifiable warning (cause="nras") after its `for` (30 s
    // here), which the NRAS warning holds back. The chronic-outage warning may join: its
    // one-hour windows are not shortened, so in this short run NRAS's unknown checks can be
    // most of those the hour has seen. Nothing pages.
    let seen = notifier.receiver.notifications().len();
    run.sim
        .state
        .set_fault(None, Fault::NrasDown, true)
        .unwrap();
    check_after_switch(&daemon, t).await;
    until_state(&prometheus, t, 1.0).await;
    let first_pending: std::cell::Cell<Option<Instant>> = std::cell::Cell::new(None);
    let alerts = until(
        "NRAS down raises only warnings",
        Duration::from_secs(90),
        || {
            let first_pending = &first_pending;
            let prometheus = &prometheus;
            async move {
                let alerts = prometheus.alerts().await;
                let names: BTreeSet<&str> = alerts.iter().map(|a| a.name.as_str()).collect();
                assert!(
                    names
                        .iter()
                        .all(|n| [UNVERIFIABLE, NRAS, MOSTLY].contains(n)),
                    "NRAS down must raise nothing else:\n{}",
                    summary(&alerts)
                );
                let unverifiable = |state: &str| {
                    alerts
                        .iter()
                        .any(|a| a.name == UNVERIFIABLE && a.state == state)
                };
                if unverifiable("pending") && first_pending.get().is_none() {
                    first_pending.set(Some(Instant::now()));
                }
                let nras_firing = alerts.iter().any(|a| a.name == NRAS && a.state == "firing");
                if unverifiable("firing") && nras_firing {
                    Ok(alerts)
                } else {
                    Err(summary(&alerts))
                }
            }
        },
    )
    .await;
    let waited = first_pending
        .get()
        .expect("the unverifiable alert was never seen pending")
        .elapsed();
    assert!(
        waited >= Duration::from_secs(25),
        "fired {waited:?} after it was first seen pending, under its `for` of 30 s"
    );
    for a in &alerts {
        assert_eq!(a.label("severity"), "warning", "{a:?}");
    }
    let unverifiable = alerts.iter().find(|a| a.name == UNVERIFIABLE).unwrap();
    assert_eq!(unverifiable.label("target"), t);
    assert_eq!(unverifiable.label("cause"), "nras");
    let description = unverifiable.annotation("description");
    assert!(description.contains("nras_token"), "{description}");
    assert!(description.contains("nras/http_status"), "{description}");
    let nras = alerts.iter().find(|a| a.name == NRAS).unwrap();
    assert!(
        nras.annotation("description").contains(&format!(": {t}.")),
        "{nras:?}"
    );
    notifier
        .until_notified(TICKET, "firing", (NRAS, ""), seen)
        .await;
    notifier
        .until_inhibited(UNVERIFIABLE, t, &[(NRAS, "")])
        .await;
    notifier.settle().await;
    assert!(
        notifier.firing_since(PAGE, seen).is_empty(),
        "NRAS down pages"
    );
    let tickets = notifier.firing_since(TICKET, seen);
    assert!(
        tickets.contains(&(NRAS.to_string(), String::new())),
        "{tickets:?}"
    );
    assert!(
        tickets
            .iter()
            .all(|(name, _)| name == NRAS || name == MOSTLY),
        "{tickets:?}"
    );
    run.sim
        .state
        .set_fault(None, Fault::NrasDown, false)
        .unwrap();
    check_after_switch(&daemon, t).await;
    until_state(&prometheus, t, 0.0).await;
    until_quiet(&prometheus, "after NRAS came back", Duration::from_secs(60)).await;
    eprintln!("e2e: NRAS done after {:?}", began.elapsed());

    // 4. The drift again, then the daemon stops: TeewatchDown is the one new page. The drift
    // and failing alerts keep firing on their last known state (no RESOLVED), held back by
    // TeewatchDown (the first inhibit rule that matches is the one Alertmanager names).
    let seen = notifier.receiver.notifications().len();
    run.sim
        .state
        .set_fault(None, Fault::DriftMrtd, true)
        .unwrap();
    check_after_switch(&daemon, t).await;
    let firing_at_stop = until_firing(
        &prometheus,
        "drift before the stop",
        &[(DRIFT, &[("target", t)]), (FAILING, &[("target", t)])],
        &[DRIFT, FAILING],
        Duration::from_secs(30),
    )
    .await;
    notifier
        .until_notified(PAGE, "firing", (DRIFT, t), seen)
        .await;
    notifier.until_inhibited(FAILING, t, &[(DRIFT, t)]).await;
    let seen = notifier.receiver.notifications().len();
    daemon.shutdown(Duration::from_secs(5)).await;
    let alerts = until_firing(
        &prometheus,
        "daemon stopped",
        &[
            (
                DOWN,
                &[("job", "teewatch"), ("instance", instance.as_str())],
            ),
            (DRIFT, &[("target", t)]),
            (FAILING, &[("target", t)]),
        ],
        &[DOWN, DRIFT, FAILING],
        Duration::from_secs(30),
    )
    .await;
    // The image change drifts the RTMRs too (new values, unpinned): one drift alert per field.
    let names: BTreeSet<&str> = alerts.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(
        names,
        BTreeSet::from([DOWN, DRIFT, FAILING]),
        "{}",
        summary(&alerts)
    );
    let down = alerts.iter().find(|a| a.name == DOWN).unwrap();
    assert_eq!(down.label("severity"), "critical");
    notifier
        .until_notified(PAGE, "firing", (DOWN, ""), seen)
        .await;
    notifier.until_inhibited(DRIFT, t, &[(DOWN, "")]).await;
    notifier.until_inhibited(FAILING, t, &[(DOWN, "")]).await;
    notifier.settle().await;
    let since_stop: Vec<_> = notifier
        .receiver
        .notifications()
        .into_iter()
        .skip(seen)
        .collect();
    // A notification of the same group may carry alerts of an earlier incident that resolved
    // long before (Alertmanager keeps them in the group until notified: here the canary phase's);
    // what must not happen is that an alert firing when the daemon stopped is sent as resolved.
    let resolved_at_stop: Vec<_> = since_stop
        .iter()
        .flat_map(|n| n.alerts.iter())
        .filter(|(status, labels)| {
            status == "resolved" && firing_at_stop.iter().any(|a| &a.labels == labels)
        })
        .collect();
    assert!(
        resolved_at_stop.is_empty(),
        "an alert firing at the stop was sent as RESOLVED: {resolved_at_stop:#?}\nin {since_stop:#?}"
    );
    assert!(
        !firing_at_stop.is_empty(),
        "the drift and failing alerts fire before the stop"
    );
    // One new page: the groups paged for the first time since the stop hold TeewatchDown only.
    // The drift's own group may be notified again while its alerts are not yet inhibited (a
    // further drifted field joins it): an update of the page already open, same group key.
    let all = notifier.receiver.notifications();
    let paged_before: BTreeSet<&str> = all
        .iter()
        .take(seen)
        .filter(|n| n.receiver == PAGE)
        .map(|n| n.group_key.as_str())
        .collect();
    let new_pages: BTreeSet<(String, String)> = all
        .iter()
        .skip(seen)
        .filter(|n| n.receiver == PAGE && !paged_before.contains(n.group_key.as_str()))
        .flat_map(|n| n.with_status("firing"))
        .collect();
    assert_eq!(new_pages, set(&[(DOWN, "")]), "{since_stop:#?}");
    eprintln!("e2e: finished after {:?}", began.elapsed());
    drop(prometheus);
    drop(notifier);
    drop(run);
}

/// Intel's TCB recovery reaches every platform of the fleet: three targets whose PCCS serves
/// TCB info that rates them OutOfDate from their first check. Prometheus raises the TCB warning
/// and a failing alert with `cause="tcb_status"` for each; Alertmanager sends the warnings as
/// one grouped notification and holds every failing page back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fleet_wide_tcb_change_is_one_grouped_warning_and_no_page() {
    let binary = common::tool::tool("prometheus", prom::INSTALL);
    let run = start(
        "prometheus-tcb",
        SimOptions {
            models: 3,
            ..SimOptions::default()
        },
    )
    .await;
    run.sim
        .state
        .set_fault(None, Fault::TcbOutdated, true)
        .unwrap();
    let daemon = start_daemon(&run.dir.join("sim.toml"), &run.dir).await;
    let targets: Vec<String> = (0..3).map(model_name).collect();
    for target in &targets {
        assert!(daemon.check_now(target).await);
    }
    let notifier = start_notifier().await;
    let prometheus =
        Prometheus::start(&binary, daemon.addr(), Some(notifier.alertmanager.addr)).await;
    let mut wanted: Vec<(&str, Vec<(&str, &str)>)> = Vec::new();
    for target in &targets {
        wanted.push((TCB, vec![("target", target.as_str())]));
        wanted.push((
            FAILING,
            vec![("target", target.as_str()), ("cause", "tcb_status")],
        ));
    }
    let wanted: Vec<(&str, &[(&str, &str)])> =
        wanted.iter().map(|(n, l)| (*n, l.as_slice())).collect();
    let alerts = until_firing(
        &prometheus,
        "fleet-wide TCB change",
        &wanted,
        &[TCB, FAILING],
        Duration::from_secs(60),
    )
    .await;
    for a in alerts.iter().filter(|a| a.name == TCB) {
        assert_eq!(a.label("severity"), "warning", "{a:?}");
        assert!(a.annotation("description").contains("OutOfDate"), "{a:?}");
    }
    for target in &targets {
        notifier
            .until_inhibited(FAILING, target, &[(TCB, target)])
            .await;
    }
    let every: BTreeSet<(String, String)> = targets
        .iter()
        .map(|t| (TCB.to_string(), t.clone()))
        .collect();
    until(
        "one ticket lists every target",
        Duration::from_secs(30),
        || async {
            let tickets = notifier.receiver.to(TICKET);
            let last: BTreeSet<(String, String)> = tickets
                .last()
                .map(|n| n.with_status("firing").into_iter().collect())
                .unwrap_or_default();
            if last == every {
                Ok(())
            } else {
                Err(format!("{tickets:#?}"))
            }
        },
    )
    .await;
    notifier.settle().await;
    assert!(
        notifier.receiver.to(PAGE).is_empty(),
        "a fleet-wide TCB change pages: {:#?}",
        notifier.receiver.to(PAGE)
    );
    let groups: BTreeSet<String> = notifier
        .receiver
        .to(TICKET)
        .into_iter()
        .map(|n| n.group_key)
        .collect();
    assert_eq!(groups.len(), 1, "one group: {groups:?}");
    assert_eq!(notifier.firing_since(TICKET, 0), every);
    drop(prometheus);
    drop(notifier);
    drop(run);
}

/// A NEAR gateway target and a NEAR direct target, pinned as the simulator's configuration pins
/// them (gateway and deployed compose file included), pass and raise no alert in Prometheus:
/// nothing is left `unknown` for being behind the gateway or beside the answering node.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn healthy_near_targets_pass_and_stay_quiet() {
    use teewatch_sim::format::SimFormat;
    let binary = common::tool::tool("prometheus", prom::INSTALL);
    let run = start(
        "prometheus-near",
        SimOptions {
            models: 2,
            formats: vec![SimFormat::NearGateway, SimFormat::NearDirect],
            nodes: 2,
            tls: true,
            ..SimOptions::default()
        },
    )
    .await;
    let daemon = start_daemon(&run.dir.join("sim.toml"), &run.dir).await;
    let targets = [model_name(0), model_name(1)];
    for target in &targets {
        assert!(daemon.check_now(target).await);
    }
    let prometheus = Prometheus::start(&binary, daemon.addr(), None).await;
    for target in &targets {
        until_state(&prometheus, target, 0.0).await;
    }
    assert_quiet_for_a_while(&prometheus, "healthy NEAR targets").await;
}

/// The example Alertmanager configuration as the end-to-end test runs it: only the two webhook
/// URLs and the three grouping durations change, each duration to a sixtieth.
#[test]
fn the_alertmanager_substitution_changes_only_urls_and_intervals() {
    let example = prom::read(prom::ALERTMANAGER_CONFIG);
    let receiver: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
    let test = alertmanager::config_for_test(&example, receiver);
    assert_eq!(test.lines().count(), example.lines().count());
    let mut changed = 0;
    for (before, after) in example.lines().zip(test.lines()) {
        if before == after {
            continue;
        }
        changed += 1;
        let key = before.trim_start().split(':').next().unwrap();
        match key {
            "- url" => assert!(
                after.ends_with("url: http://127.0.0.1:9/page")
                    || after.ends_with("url: http://127.0.0.1:9/ticket"),
                "{after}"
            ),
            "group_wait" | "group_interval" | "repeat_interval" => {}
            _ => {
                panic!("expected only urls and intervals to change, found {before:?} -> {after:?}")
            }
        }
    }
    assert_eq!(
        changed,
        2 + example.matches("_interval:").count() + example.matches("group_wait:").count()
    );
    assert!(test.contains("group_wait: 500ms"), "30s is 500ms");
    assert!(test.contains("group_interval: 5000ms"), "5m is 5 s");
    assert!(
        test.contains("repeat_interval: 720000ms"),
        "12h is 12 minutes"
    );
}
