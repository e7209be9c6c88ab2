//! A real Prometheus server (Debian's `prometheus`) for the tests that run one. For the
//! end-to-end test it scrapes the daemon every second under the job name `teewatch`, evaluates
//! the SHIPPED rules every second with the one documented change (`for: <N>m` → `for: <N>s`,
//! docs/alerts.md) and, when given one, sends its alerts to an Alertmanager; for the `/metrics`
//! TLS test it scrapes with the test's own jobs. Also the parts of its HTTP API the tests read,
//! and the polling helpers that wait on it.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::prom;
use crate::common::tool_server::{ScratchDir, ToolServer, api_client};

/// A Prometheus server with its configuration and its database in a folder. Dropping it (also
/// while a failed assertion unwinds) kills the server, then removes the folder if it made it.
pub struct Prometheus {
    server: ToolServer,
    /// After `server`, so dropped after it: the folder goes once the server is killed.
    dir: Option<ScratchDir>,
    client: reqwest::Client,
}

/// One entry of `/api/v1/alerts`.
#[derive(Debug, Clone)]
pub struct Alert {
    pub name: String,
    pub state: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

impl Alert {
    pub fn label(&self, key: &str) -> &str {
        self.labels.get(key).map_or("", String::as_str)
    }

    pub fn annotation(&self, key: &str) -> &str {
        self.annotations.get(key).map_or("", String::as_str)
    }
}

/// A JSON object of strings (labels, annotations) as a map; a value that is not a string reads
/// as empty.
pub fn strings(value: &Value) -> BTreeMap<String, String> {
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
    /// Starts `prometheus` scraping `teewatch` every second under the job name `teewatch`,
    /// evaluating the shipped rules every second with `for: <N>m` read as `for: <N>s`, and
    /// sending the alerts to `alertmanager` when given.
    pub async fn start(
        binary: &Path,
        teewatch: SocketAddr,
        alertmanager: Option<SocketAddr>,
    ) -> Prometheus {
        let dir = ScratchDir::new("prometheus");
        let rules = dir.path().join("alerts.yml");
        std::fs::write(&rules, prom::minutes_to_seconds(&prom::read(prom::RULES))).unwrap();
        let alerting = alertmanager.map_or(String::new(), |am| {
            format!(
                "alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['{am}']\n"
            )
        });
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {}\n\
             scrape_configs:\n  - job_name: teewatch\n    static_configs:\n      - targets: ['{teewatch}']\n\
             {alerting}",
            rules.display()
        );
        let server = Prometheus::run(binary, dir.path(), &config).await;
        Prometheus {
            server,
            dir: Some(dir),
            client: api_client(),
        }
    }

    /// Starts `prometheus` scraping every second with the scrape configuration `jobs` (the items
    /// of `scrape_configs`), its files in the test's folder `dir`, which it leaves there; paths
    /// in `jobs` are read from `dir`.
    pub async fn start_scraping(binary: &Path, dir: &Path, jobs: &str) -> Prometheus {
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n{jobs}"
        );
        Prometheus {
            server: Prometheus::run(binary, dir, &config).await,
            dir: None,
            client: api_client(),
        }
    }

    /// Runs `binary` with `config` written to `<dir>/prometheus.yml`, its database and log in
    /// `dir`.
    async fn run(binary: &Path, dir: &Path, config: &str) -> ToolServer {
        let path = dir.join("prometheus.yml");
        std::fs::write(&path, config).unwrap();
        ToolServer::start(
            "prometheus",
            binary,
            &dir.join("prometheus.log"),
            "/-/ready",
            &api_client(),
            |addr| {
                vec![
                    format!("--config.file={}", path.display()),
                    format!("--storage.tsdb.path={}", dir.join("data").display()),
                    format!("--web.listen-address={addr}"),
                    "--log.level=warn".to_string(),
                ]
            },
        )
        .await
    }

    pub fn log(&self) -> String {
        self.server.log()
    }

    /// The `data` of a successful API answer.
    pub async fn api(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let response = self
            .client
            .get(format!("{}{path}", self.server.url()))
            .query(query)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["status"], "success", "{path}: {body}");
        body["data"].clone()
    }

    /// An instant query: each series' labels and value.
    pub async fn query(&self, expr: &str) -> Vec<(BTreeMap<String, String>, f64)> {
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

    /// An instant query's first value, if any.
    pub async fn value(&self, expr: &str) -> Option<f64> {
        self.query(expr).await.first().map(|(_, value)| *value)
    }

    /// The active targets: (job, health, last error).
    pub async fn targets(&self) -> Vec<(String, String, String)> {
        let data = self.api("/api/v1/targets", &[]).await;
        data["activeTargets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
                (
                    text(&t["labels"]["job"]),
                    text(&t["health"]),
                    text(&t["lastError"]),
                )
            })
            .collect()
    }

    /// The active (pending or firing) alerts.
    pub async fn alerts(&self) -> Vec<Alert> {
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
pub async fn until<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> T
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

pub fn summary(alerts: &[Alert]) -> String {
    let names: Vec<String> = alerts
        .iter()
        .map(|a| format!("{}[{}]{:?}", a.name, a.state, a.labels))
        .collect();
    format!("{names:#?}")
}

/// Waits until every alert in `wanted` is firing, panicking at once if an alert outside
/// `allowed` shows up, even pending. Returns the alerts of that moment.
pub async fn until_firing(
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
pub async fn until_quiet(prometheus: &Prometheus, phase: &str, limit: Duration) {
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

/// The state Prometheus scraped for the target.
pub async fn until_state(prometheus: &Prometheus, target: &str, code: f64) {
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

/// Waits until Prometheus scrapes the daemon, its targets' states known.
pub async fn until_scraped(prometheus: &Prometheus, instance: &str) {
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
                        && t["labels"]["instance"] == instance
                        && t["health"] == "up"
                });
            if up { Ok(()) } else { Err(targets.to_string()) }
        },
    )
    .await;
}

/// Asserts for a few seconds that Prometheus raises nothing.
pub async fn assert_quiet_for_a_while(prometheus: &Prometheus, what: &str) {
    let quiet_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < quiet_until {
        let alerts = prometheus.alerts().await;
        assert!(alerts.is_empty(), "{what} raised:\n{}", summary(&alerts));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
