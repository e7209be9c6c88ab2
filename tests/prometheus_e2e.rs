//! A real Prometheus server (Debian's `prometheus`) scrapes the daemon, which checks the
//! simulator, and evaluates the SHIPPED alert rules with the one documented change
//! (`for: <N>m` → `for: <N>s`, docs/alerts.md). Faults switched in the simulator must raise the
//! right alerts in Prometheus itself, and nothing else: a drift raises
//! `TeewatchMeasurementDrift` and `TeewatchAttestationFailing`; a canary signed by a foreign key
//! raises `TeewatchCanarySignatureFailing` and `TeewatchAttestationFailing`; NRAS down raises
//! only `TeewatchAttestationUnverifiable`, a warning; a stopped daemon raises `TeewatchDown`.
//! Without `prometheus` this fails at once, naming the install command.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;
#[path = "common/prom.rs"]
mod prom;

use common::net::free_port;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::daemon_run::{sample, scrape, series, start_daemon};
use common::sim_run::start;
use teewatch::daemon::Daemon;
use teewatch_sim::faults::Fault;
use teewatch_sim::server::{SimOptions, model_name};

const FAILING: &str = "TeewatchAttestationFailing";
const DRIFT: &str = "TeewatchMeasurementDrift";
const CANARY: &str = "TeewatchCanarySignatureFailing";
const UNVERIFIABLE: &str = "TeewatchAttestationUnverifiable";
const DOWN: &str = "TeewatchDown";

/// A Prometheus server with its configuration, the rules and its database in a temporary
/// folder. Dropping it (also while a failed assertion unwinds) kills the server and removes the
/// folder.
struct Prometheus {
    child: Option<Child>,
    dir: PathBuf,
    url: String,
    client: reqwest::Client,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One entry of `/api/v1/alerts`.
#[derive(Debug, Clone)]
struct Alert {
    name: String,
    state: String,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
}

impl Alert {
    fn label(&self, key: &str) -> &str {
        self.labels.get(key).map_or("", String::as_str)
    }

    fn annotation(&self, key: &str) -> &str {
        self.annotations.get(key).map_or("", String::as_str)
    }
}

fn strings(value: &Value) -> BTreeMap<String, String> {
    value
        .as_object()
        .map(|map| {
            map.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

impl Prometheus {
    /// Starts `prometheus` scraping `teewatch` every second under the job name `teewatch`, and
    /// evaluating the shipped rules every second with `for: <N>m` read as `for: <N>s`.
    async fn start(binary: &Path, teewatch: SocketAddr) -> Prometheus {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let dir = std::env::temp_dir().join(format!(
            "teewatch-prometheus-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut server = Prometheus {
            child: None,
            dir: dir.clone(),
            url: String::new(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
        };
        let rules = dir.join("alerts.yml");
        std::fs::write(&rules, prom::minutes_to_seconds(&prom::read(prom::RULES))).unwrap();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {}\n\
                 scrape_configs:\n  - job_name: teewatch\n    static_configs:\n      - targets: ['{teewatch}']\n",
                rules.display()
            ),
        )
        .unwrap();
        // A free port can be taken between the probe and the bind: try a few.
        for _ in 0..3 {
            let port = free_port();
            let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
            let child = Command::new(binary)
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--log.level=warn")
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start prometheus: {e}"));
            server.child = Some(child);
            server.url = format!("http://127.0.0.1:{port}");
            if server.ready(Duration::from_secs(30)).await {
                return server;
            }
            if let Some(mut child) = server.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        panic!("prometheus did not start:\n{}", server.log());
    }

    /// Waits for `/-/ready`; false when the server exited or did not get ready in time.
    async fn ready(&mut self, limit: Duration) -> bool {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if let Some(child) = self.child.as_mut() {
                if child.try_wait().unwrap().is_some() {
                    return false;
                }
            }
            if let Ok(r) = self
                .client
                .get(format!("{}/-/ready", self.url))
                .send()
                .await
            {
                if r.status() == 200 {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        false
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// The `data` of a successful API answer.
    async fn api(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let response = self
            .client
            .get(format!("{}{path}", self.url))
            .query(query)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["status"], "success", "{path}: {body}");
        body["data"].clone()
    }

    /// An instant query: each series' labels and value.
    async fn query(&self, expr: &str) -> Vec<(BTreeMap<String, String>, f64)> {
        let data = self.api("/api/v1/query", &[("query", expr)]).await;
        data["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let value = r["value"][1].as_str().unwrap().parse::<f64>().unwrap();
                (strings(&r["metric"]), value)
            })
            .collect()
    }

    /// The active (pending or firing) alerts.
    async fn alerts(&self) -> Vec<Alert> {
        let data = self.api("/api/v1/alerts", &[]).await;
        data["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                let labels = strings(&a["labels"]);
                Alert {
                    name: labels.get("alertname").cloned().unwrap_or_default(),
                    state: a["state"].as_str().unwrap_or_default().to_string(),
                    labels,
                    annotations: strings(&a["annotations"]),
                }
            })
            .collect()
    }
}

/// Polls `probe` every 250 ms until it gives a value; panics with its last word after `limit`.
async fn until<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let end = Instant::now() + limit;
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(last) => assert!(
                Instant::now() < end,
                "{what}: not within {limit:?}; last seen: {last}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn summary(alerts: &[Alert]) -> String {
    let names: Vec<String> = alerts
        .iter()
        .map(|a| format!("{}[{}]{:?}", a.name, a.state, a.labels))
        .collect();
    format!("{names:#?}")
}

/// Waits until every alert in `wanted` is firing, panicking at once if an alert outside
/// `allowed` shows up, even pending. Returns the alerts of that moment.
async fn until_firing(
    prometheus: &Prometheus,
    phase: &str,
    wanted: &[(&str, &[(&str, &str)])],
    allowed: &[&str],
    limit: Duration,
) -> Vec<Alert> {
    until(phase, limit, || async {
        let alerts = prometheus.alerts().await;
        for alert in &alerts {
            assert!(
                allowed.contains(&alert.name.as_str()),
                "{phase}: {} must not be raised:\n{}",
                alert.name,
                summary(&alerts)
            );
        }
        let all_firing = wanted.iter().all(|(name, labels)| {
            alerts.iter().any(|a| {
                a.name == *name
                    && a.state == "firing"
                    && labels.iter().all(|(k, v)| a.label(k) == *v)
            })
        });
        if all_firing {
            Ok(alerts)
        } else {
            Err(summary(&alerts))
        }
    })
    .await
}

/// Waits until no alert is active at all.
async fn until_quiet(prometheus: &Prometheus, phase: &str, limit: Duration) {
    until(phase, limit, || async {
        let alerts = prometheus.alerts().await;
        if alerts.is_empty() {
            Ok(())
        } else {
            Err(summary(&alerts))
        }
    })
    .await;
}

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

/// The state Prometheus scraped for the target.
async fn until_state(prometheus: &Prometheus, target: &str, code: f64) {
    let expr = format!("teewatch_target_state{{job=\"teewatch\",target=\"{target}\"}}");
    until(
        &format!("Prometheus scrapes state {code} for {target}"),
        Duration::from_secs(30),
        || async {
            let result = prometheus.query(&expr).await;
            if result.len() == 1 && result[0].1 == code {
                Ok(())
            } else {
                Err(format!("{result:?}"))
            }
        },
    )
    .await;
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
    let prometheus = Prometheus::start(&binary, daemon.addr()).await;
    let instance = daemon.addr().to_string();

    // The shipped rules are loaded, with every `for` read in seconds.
    let shipped = prom::alert_names(&prom::read(prom::RULES));
    let groups = prometheus.api("/api/v1/rules", &[]).await;
    let groups = groups["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0]["name"], "teewatch");
    let rules = groups[0]["rules"].as_array().unwrap();
    let loaded: Vec<&str> = rules.iter().map(|r| r["name"].as_str().unwrap()).collect();
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

    // Scraped, passing, and quiet.
    until(
        "the teewatch target is up",
        Duration::from_secs(30),
        || async {
            let targets = prometheus.api("/api/v1/targets", &[]).await;
            let up = targets["activeTargets"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| {
                    t["labels"]["job"] == "teewatch"
                        && t["labels"]["instance"] == instance.as_str()
                        && t["health"] == "up"
                });
            if up { Ok(()) } else { Err(targets.to_string()) }
        },
    )
    .await;
    until_state(&prometheus, t, 0.0).await;
    let up = prometheus.query("up{job=\"teewatch\"}").await;
    assert_eq!(up.len(), 1);
    assert_eq!(up[0].1, 1.0);
    let quiet_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < quiet_until {
        let alerts = prometheus.alerts().await;
        assert!(
            alerts.is_empty(),
            "a healthy target raised:\n{}",
            summary(&alerts)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!("e2e: healthy after {:?}", began.elapsed());

    // 1. Another OS image: the MRTD drifts at once, and its pin makes the target fail.
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
            (FAILING, &[("target", t)]),
        ],
        &[DRIFT, FAILING],
        Duration::from_secs(30),
    )
    .await;
    for a in &alerts {
        assert_eq!(a.label("severity"), "critical", "{a:?}");
        assert_eq!(a.label("instance"), instance, "{a:?}");
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
        failing.annotation("runbook"),
        "docs/alerts.md#teewatchattestationfailing"
    );
    // Back to the pinned image: the value is known and allowed, so nothing stays raised
    // whatever the drift window.
    run.sim
        .state
        .set_fault(None, Fault::DriftMrtd, false)
        .unwrap();
    check_after_switch(&daemon, t).await;
    until_quiet(&prometheus, "after the drift", Duration::from_secs(30)).await;
    eprintln!("e2e: drift done after {:?}", began.elapsed());

    // 2. Canary replies signed by a key no attested node holds.
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
            (FAILING, &[("target", t)]),
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
    run.sim
        .state
        .set_fault(None, Fault::SignatureOtherKey, false)
        .unwrap();
    check_after_switch(&daemon, t).await;
    until_state(&prometheus, t, 0.0).await;
    until_quiet(&prometheus, "after the canary", Duration::from_secs(30)).await;
    eprintln!("e2e: canary done after {:?}", began.elapsed());

    // 3. NRAS down: unknown, not failing. Only the unverifiable warning may appear, and only
    // after its `for` (30 s here).
    run.sim
        .state
        .set_fault(None, Fault::NrasDown, true)
        .unwrap();
    check_after_switch(&daemon, t).await;
    until_state(&prometheus, t, 1.0).await;
    let first_pending: std::cell::Cell<Option<Instant>> = std::cell::Cell::new(None);
    let alerts = until(
        "NRAS down raises only the unverifiable warning",
        Duration::from_secs(90),
        || {
            let first_pending = &first_pending;
            let prometheus = &prometheus;
            async move {
                let alerts = prometheus.alerts().await;
                let names: BTreeSet<&str> = alerts.iter().map(|a| a.name.as_str()).collect();
                assert!(
                    names.iter().all(|n| *n == UNVERIFIABLE),
                    "NRAS down must raise nothing else:\n{}",
                    summary(&alerts)
                );
                if alerts.iter().any(|a| a.state == "pending") && first_pending.get().is_none() {
                    first_pending.set(Some(Instant::now()));
                }
                if alerts.iter().any(|a| a.state == "firing") {
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
    assert_eq!(alerts.len(), 1, "{}", summary(&alerts));
    let unverifiable = &alerts[0];
    assert_eq!(unverifiable.label("target"), t);
    assert_eq!(unverifiable.label("severity"), "warning");
    let description = unverifiable.annotation("description");
    assert!(description.contains("nras_token"), "{description}");
    assert!(description.contains("nras/http_status"), "{description}");
    run.sim
        .state
        .set_fault(None, Fault::NrasDown, false)
        .unwrap();
    check_after_switch(&daemon, t).await;
    until_state(&prometheus, t, 0.0).await;
    until_quiet(&prometheus, "after NRAS came back", Duration::from_secs(30)).await;
    eprintln!("e2e: NRAS done after {:?}", began.elapsed());

    // 4. The daemon stops: its series go stale and only TeewatchDown fires.
    daemon.shutdown(Duration::from_secs(5)).await;
    let alerts = until_firing(
        &prometheus,
        "daemon stopped",
        &[(
            DOWN,
            &[("job", "teewatch"), ("instance", instance.as_str())],
        )],
        &[DOWN],
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(alerts.len(), 1, "{}", summary(&alerts));
    assert_eq!(alerts[0].label("severity"), "critical");
    eprintln!("e2e: finished after {:?}", began.elapsed());
    drop(prometheus);
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
    let prometheus = Prometheus::start(&binary, daemon.addr()).await;
    for target in &targets {
        until_state(&prometheus, target, 0.0).await;
    }
    let quiet_until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < quiet_until {
        let alerts = prometheus.alerts().await;
        assert!(
            alerts.is_empty(),
            "healthy NEAR targets raised:\n{}",
            summary(&alerts)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
