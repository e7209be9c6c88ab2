//! A real Alertmanager (Debian's `prometheus-alertmanager`) running the example configuration
//! `dashboards/alertmanager/alertmanager.yml` for the end-to-end test, and the loopback HTTP
//! receiver its webhooks deliver to. The configuration is the shipped one with the two changes
//! `docs/alerts.md` documents: the receivers' webhook URLs point at the test's receiver, and
//! `group_wait`, `group_interval` and `repeat_interval` are read in sixtieths, as the rules'
//! `for:` minutes are read in seconds. `Notifier` bundles the server and the receiver with the
//! waits the test needs: a notification arrived, Alertmanager reports an alert inhibited.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::common::prom_server::{strings, until};
use crate::common::tool_server::{ScratchDir, ToolServer, api_client};

/// The webhook URLs of the example's two receivers, and the paths of the test's receiver they
/// become.
pub const PAGE_URL: &str = "https://pager.example.org/teewatch";
pub const TICKET_URL: &str = "https://tickets.example.org/teewatch";
pub const PAGE: &str = "page";
pub const TICKET: &str = "ticket";

/// The example configuration as the test runs it: each receiver's webhook URL replaced by
/// `http://{receiver}/page` or `…/ticket`, and every `group_wait`, `group_interval` and
/// `repeat_interval` divided by 60 (`30s` → `500ms`, `5m` → `5000ms`). Every other line is kept.
/// Panics if a URL is missing or a duration is not `<N>s`, `<N>m` or `<N>h`.
pub fn config_for_test(example: &str, receiver: SocketAddr) -> String {
    for url in [PAGE_URL, TICKET_URL] {
        assert_eq!(
            example.matches(url).count(),
            1,
            "expected the example to deliver to {url} once"
        );
    }
    let mut out = String::with_capacity(example.len());
    for line in example.split_inclusive('\n') {
        let body = line.trim_end_matches('\n');
        let trimmed = body.trim_start();
        let key = ["group_wait:", "group_interval:", "repeat_interval:"]
            .into_iter()
            .find(|key| trimmed.starts_with(key));
        if let Some(key) = key {
            let value = trimmed[key.len()..].trim();
            let indent = &body[..body.len() - trimmed.len()];
            out.push_str(&format!("{indent}{key} {}ms\n", sixtieth_ms(value)));
        } else {
            out.push_str(
                &line
                    .replace(PAGE_URL, &format!("http://{receiver}/{PAGE}"))
                    .replace(TICKET_URL, &format!("http://{receiver}/{TICKET}")),
            );
        }
    }
    out
}

/// A sixtieth of `<N>s`, `<N>m` or `<N>h`, in milliseconds.
fn sixtieth_ms(value: &str) -> u64 {
    let (number, unit) = value.split_at(value.len() - 1);
    let n: u64 = number
        .parse()
        .unwrap_or_else(|_| panic!("`{value}` is not <N>s, <N>m or <N>h"));
    let seconds = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => panic!("`{value}` is not <N>s, <N>m or <N>h"),
    };
    seconds * 1000 / 60
}

/// One notification the receiver got: the receiver's path, its group and its alerts.
#[derive(Debug, Clone)]
pub struct Notification {
    pub receiver: String,
    pub group_key: String,
    pub status: String,
    /// Each alert's status (`firing` or `resolved`) and labels.
    pub alerts: Vec<(String, BTreeMap<String, String>)>,
}

impl Notification {
    /// The alerts of the notification with that status, as `alertname` and `target` (empty for
    /// alerts without one).
    pub fn with_status(&self, status: &str) -> Vec<(String, String)> {
        self.alerts
            .iter()
            .filter(|(s, _)| s == status)
            .map(|(_, labels)| {
                let get = |k: &str| labels.get(k).cloned().unwrap_or_default();
                (get("alertname"), get("target"))
            })
            .collect()
    }
}

/// The loopback HTTP server Alertmanager's webhooks post to; it keeps every notification.
pub struct Receiver {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Notification>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    pub async fn start() -> Receiver {
        use axum::extract::{Path as UrlPath, State};
        use axum::routing::post;
        let received: Arc<Mutex<Vec<Notification>>> = Arc::default();
        let app = axum::Router::new()
            .route(
                "/{receiver}",
                post(
                    |State(received): State<Arc<Mutex<Vec<Notification>>>>,
                     UrlPath(receiver): UrlPath<String>,
                     axum::Json(body): axum::Json<Value>| async move {
                        let alerts = body["alerts"]
                            .as_array()
                            .map(|alerts| {
                                alerts
                                    .iter()
                                    .map(|a| {
                                        let status = a["status"].as_str().unwrap_or_default();
                                        (status.to_string(), strings(&a["labels"]))
                                    })
                                    .collect()
                            })
                            .unwrap_or_default();
                        received.lock().unwrap().push(Notification {
                            receiver,
                            group_key: body["groupKey"].as_str().unwrap_or_default().to_string(),
                            status: body["status"].as_str().unwrap_or_default().to_string(),
                            alerts,
                        });
                    },
                ),
            )
            .with_state(received.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            addr,
            received,
            task,
        }
    }

    /// Every notification so far, in arrival order.
    pub fn notifications(&self) -> Vec<Notification> {
        self.received.lock().unwrap().clone()
    }

    /// The notifications so far to one receiver (`PAGE` or `TICKET`).
    pub fn to(&self, receiver: &str) -> Vec<Notification> {
        self.notifications()
            .into_iter()
            .filter(|n| n.receiver == receiver)
            .collect()
    }
}

/// One alert as Alertmanager holds it: its labels, fingerprint, state (`active` or
/// `suppressed`) and the fingerprints of the alerts that inhibit it.
#[derive(Debug, Clone)]
pub struct HeldAlert {
    pub labels: BTreeMap<String, String>,
    pub fingerprint: String,
    pub state: String,
    pub inhibited_by: Vec<String>,
}

impl HeldAlert {
    pub fn name(&self) -> &str {
        self.labels.get("alertname").map_or("", String::as_str)
    }

    pub fn target(&self) -> &str {
        self.labels.get("target").map_or("", String::as_str)
    }
}

/// An Alertmanager server with its configuration and storage in a temporary folder, listening
/// on loopback only (the cluster listener is off). Dropping it kills the server and removes the
/// folder.
pub struct Alertmanager {
    server: ToolServer,
    /// After `server`, so dropped after it: the folder goes once the server is killed.
    dir: ScratchDir,
    pub addr: SocketAddr,
    client: reqwest::Client,
}

impl Alertmanager {
    /// Starts `binary` with `config`, waiting until it answers `/-/ready`.
    pub async fn start(binary: &Path, config: &str) -> Alertmanager {
        let dir = ScratchDir::new("alertmanager");
        let (config_file, data) = (dir.path().join("alertmanager.yml"), dir.path().join("data"));
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(&config_file, config).unwrap();
        let client = api_client();
        let server = ToolServer::start(
            "alertmanager",
            binary,
            &dir.path().join("alertmanager.log"),
            "/-/ready",
            &client,
            |addr| {
                vec![
                    format!("--config.file={}", config_file.display()),
                    format!("--storage.path={}", data.display()),
                    format!("--web.listen-address={addr}"),
                    "--cluster.listen-address=".to_string(),
                    "--log.level=warn".to_string(),
                ]
            },
        )
        .await;
        Alertmanager {
            addr: server.addr,
            server,
            dir,
            client,
        }
    }

    pub fn log(&self) -> String {
        self.server.log()
    }

    /// Every alert Alertmanager holds, active, inhibited or silenced.
    pub async fn alerts(&self) -> Vec<HeldAlert> {
        let body: Value = self
            .client
            .get(format!("http://{}/api/v2/alerts", self.addr))
            .send()
            .await
            .unwrap_or_else(|e| panic!("alertmanager /api/v2/alerts: {e}"))
            .json()
            .await
            .unwrap();
        body.as_array()
            .unwrap_or_else(|| panic!("alertmanager /api/v2/alerts: {body}"))
            .iter()
            .map(|a| HeldAlert {
                labels: strings(&a["labels"]),
                fingerprint: a["fingerprint"].as_str().unwrap_or_default().to_string(),
                state: a["status"]["state"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                inhibited_by: a["status"]["inhibitedBy"]
                    .as_array()
                    .map(|v| {
                        v.iter()
                            .filter_map(|f| f.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default(),
            })
            .collect()
    }
}

/// The example's `group_interval` (5m) as the test reads it: a sixtieth.
pub const GROUP_INTERVAL: Duration = Duration::from_secs(5);

/// The real Alertmanager with the example configuration, and the receiver of its webhooks.
pub struct Notifier {
    pub alertmanager: Alertmanager,
    pub receiver: Receiver,
}

pub async fn start_notifier() -> Notifier {
    let binary = crate::common::tool::alertmanager();
    let receiver = Receiver::start().await;
    let config = config_for_test(
        &crate::common::prom::read(crate::common::prom::ALERTMANAGER_CONFIG),
        receiver.addr,
    );
    let alertmanager = Alertmanager::start(&binary, &config).await;
    Notifier {
        alertmanager,
        receiver,
    }
}

impl Notifier {
    /// Waits until Alertmanager holds `name` of `target` as suppressed, inhibited by exactly the
    /// alerts `by` (name and target) it also holds: the source of the first inhibit rule that
    /// matches, which is what Alertmanager records.
    pub async fn until_inhibited(&self, name: &str, target: &str, by: &[(&str, &str)]) {
        let what = format!("alertmanager inhibits {name} of {target:?} by {by:?}");
        until(&what, Duration::from_secs(30), || async {
            let held = self.alertmanager.alerts().await;
            let find = |n: &str, t: &str| -> Option<&HeldAlert> {
                held.iter().find(|a| a.name() == n && a.target() == t)
            };
            let Some(alert) = find(name, target) else {
                return Err(format!("{name} not held: {held:#?}"));
            };
            let sources: Option<BTreeSet<&str>> = by
                .iter()
                .map(|(n, t)| find(n, t).map(|a| a.fingerprint.as_str()))
                .collect();
            let Some(sources) = sources else {
                return Err(format!("a source of {by:?} not held: {held:#?}"));
            };
            let inhibited_by: BTreeSet<&str> =
                alert.inhibited_by.iter().map(String::as_str).collect();
            if alert.state == "suppressed" && inhibited_by == sources {
                Ok(())
            } else {
                Err(format!("{alert:#?}"))
            }
        })
        .await;
    }

    /// Waits until a notification to `receiver`, from the `from`-th notification on, lists
    /// `(alertname, target)` with `status`.
    pub async fn until_notified(
        &self,
        receiver: &str,
        status: &str,
        alert: (&str, &str),
        from: usize,
    ) {
        let what = format!("a {status} notification of {alert:?} to {receiver}");
        until(&what, Duration::from_secs(30), || async {
            let all = self.receiver.notifications();
            let wanted = (alert.0.to_string(), alert.1.to_string());
            if all
                .iter()
                .skip(from)
                .any(|n| n.receiver == receiver && n.with_status(status).contains(&wanted))
            {
                Ok(())
            } else {
                Err(format!("{:#?}", self.receiver.notifications()))
            }
        })
        .await;
    }

    /// The alerts notified as firing to `receiver` from the `from`-th notification on.
    pub fn firing_since(&self, receiver: &str, from: usize) -> BTreeSet<(String, String)> {
        self.receiver
            .notifications()
            .into_iter()
            .skip(from)
            .filter(|n| n.receiver == receiver)
            .flat_map(|n| n.with_status("firing"))
            .collect()
    }

    /// Gives Alertmanager one more group interval, so that a notification the inhibit rules
    /// should hold back has its flush to show up in (this waits; it asserts no duration).
    pub async fn settle(&self) {
        tokio::time::sleep(GROUP_INTERVAL + Duration::from_secs(1)).await;
    }
}

pub fn set(pairs: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}
