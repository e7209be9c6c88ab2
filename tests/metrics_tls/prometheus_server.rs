//! A Prometheus server (Debian's `prometheus`) run for one test with its own scrape
//! configuration, and the parts of its HTTP API the test reads: readiness, the active targets
//! with their health and last error, and instant queries.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::net::free_port;

/// A Prometheus server scraping the daemon with the scrape configuration `jobs`.
pub struct Prometheus {
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
    }
}

impl Prometheus {
    pub async fn start(binary: &Path, dir: &Path, jobs: &str) -> Prometheus {
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n{jobs}"
            ),
        )
        .unwrap();
        let mut server = Prometheus {
            child: None,
            dir: dir.to_path_buf(),
            url: String::new(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
        };
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

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// The active targets: job → (health, last error).
    pub async fn targets(&self) -> Vec<(String, String, String)> {
        let body: Value = self
            .client
            .get(format!("{}/api/v1/targets", self.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["data"]["activeTargets"]
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

    /// An instant query's first value, if any.
    pub async fn value(&self, expr: &str) -> Option<f64> {
        let body: Value = self
            .client
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", expr)])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|v| v.parse().ok())
    }
}
