//! One `teewatch run` process per row of the fault matrix: the configuration it gets (the row's
//! target and a bystander, checked every two seconds), waiting on its `/metrics`, its peak RSS
//! from `/proc`, the stored checks read back with `teewatch history --json`, and its log read
//! from a pipe while it runs (a file would count against a file-size limit, and an unread pipe
//! would block the daemon once full).

use std::io::Read as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common;
use common::daemon_run::sample;
use common::net::free_port;
use common::process::{KillOnDrop, assert_success, run_with_json_log, teewatch};

/// How often a row's daemon checks each target: every two seconds (a cron with seconds; the
/// shortest `interval` is 10 s), so a row needs seconds, not minutes.
pub const EVERY_TWO_SECONDS: &str = "cron = \"*/2 * * * * *\"";

/// Each request of a check may take 10 s (`timeout_seconds`), so a check's deadline is 30 s:
/// short enough for the slow faults to end quickly, long enough for a check that waits the
/// default 10 s for each of its two canary signatures.
pub const TIMEOUT_SECONDS: u64 = 10;

/// How long a row waits for what it expects before it fails: generous, since the machine is
/// shared; a healthy row takes a few seconds.
pub const PATIENCE: Duration = Duration::from_secs(90);

/// The configuration the simulator wrote, cut down to the `[[target]]` sections named in `keep`
/// (in that order), each checked every two seconds with a short request timeout, plus `extra`
/// sections as written.
pub fn row_config(sim_config: &str, keep: &[&str], extra: &str) -> String {
    let mut sections = sim_config.split("[[target]]\n");
    let mut out = sections.next().unwrap_or_default().to_string();
    let sections: Vec<&str> = sections.collect();
    for name in keep {
        let section = sections
            .iter()
            .find(|s| s.starts_with(&format!("name = \"{name}\"\n")))
            .unwrap_or_else(|| panic!("no [[target]] named {name}"));
        out.push_str("[[target]]\n");
        out.push_str(&fast(section));
    }
    out.push_str(extra);
    out
}

/// A target section checked every two seconds with the short timeout.
fn fast(section: &str) -> String {
    section.replacen(
        "interval = \"10s\"\n",
        &format!("{EVERY_TWO_SECONDS}\ntimeout_seconds = {TIMEOUT_SECONDS}\n"),
        1,
    )
}

/// A `[[target]]` of the vllm-proxy profile at `base_url` (plain http on loopback), with the
/// simulator's key file.
pub fn extra_target(name: &str, base_url: &str, key_file: &str) -> String {
    format!(
        "[[target]]\nname = \"{name}\"\nprofile = \"vllm-proxy\"\nbase_url = \"{base_url}\"\n\
         model = \"{name}\"\napi_key_file = \"{key_file}\"\n{EVERY_TWO_SECONDS}\n\
         timeout_seconds = {TIMEOUT_SECONDS}\n\n"
    )
}

/// A running `teewatch run`, its port, and its log as read so far.
pub struct Daemon {
    pub guard: KillOnDrop,
    pub port: u16,
    log: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

/// Starts `teewatch run` on `config` and `db`; `prepare` adjusts the command first (a resource
/// limit). Returns once `/metrics` answers.
pub async fn start(config: &Path, db: &Path, prepare: impl FnOnce(&mut Command)) -> Daemon {
    let port = free_port();
    let mut command = run_with_json_log(port, config, db);
    command.stderr(Stdio::piped());
    prepare(&mut command);
    let mut guard = KillOnDrop::new(command.spawn().unwrap());
    let mut stderr = guard.child().stderr.take().unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let sink = log.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let mut daemon = Daemon {
        guard,
        port,
        log,
        reader: Some(reader),
    };
    let deadline = Instant::now() + PATIENCE;
    while daemon.try_scrape().await.is_none() {
        assert!(
            daemon.alive(),
            "the daemon exited at start:\n{}",
            daemon.log()
        );
        assert!(
            Instant::now() < deadline,
            "no /metrics within {PATIENCE:?}:\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    daemon
}

impl Daemon {
    pub fn alive(&mut self) -> bool {
        self.guard.child().try_wait().unwrap().is_none()
    }

    /// The log so far (JSON lines).
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    async fn try_scrape(&self) -> Option<String> {
        let response = reqwest::get(format!("http://127.0.0.1:{}/metrics", self.port))
            .await
            .ok()?;
        if response.status() != 200 {
            return None;
        }
        response.text().await.ok()
    }

    /// A scrape of `/metrics`; panics when the daemon does not answer (it must stay up).
    pub async fn scrape(&mut self) -> String {
        match self.try_scrape().await {
            Some(text) => text,
            None => panic!(
                "the daemon stopped serving /metrics (alive: {}):\n{}",
                self.alive(),
                self.log()
            ),
        }
    }

    /// Waits until `ready` holds for a scrape; panics with the last scrape and the log after
    /// [`PATIENCE`].
    pub async fn wait_for(&mut self, what: &str, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let scrape = self.scrape().await;
            if ready(&scrape) {
                return scrape;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not seen within {PATIENCE:?}\nmetrics:\n{}\nlog:\n{}",
                relevant(&scrape),
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The peak resident set size so far (`VmHWM`), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        peak_rss_kib(self.guard.id())
    }

    /// SIGTERM, and the exit status within 30 s (the daemon drains and closes the store).
    pub fn stop(mut self) -> String {
        let status = self.guard.signal_and_wait("TERM", Duration::from_secs(30));
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        let log = self.log();
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(0),
            "the daemon did not stop cleanly on SIGTERM:\n{log}"
        );
        log
    }
}

/// The peak resident set size (`VmHWM` of `/proc/<pid>/status`) of process `pid`, in KiB.
pub fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM in /proc/{pid}/status:\n{status}"))
}

/// Every series of the scrape that a row's assertion message needs.
fn relevant(scrape: &str) -> String {
    scrape
        .lines()
        .filter(|l| {
            !l.starts_with('#')
                && [
                    "teewatch_checks_total",
                    "teewatch_check_state",
                    "teewatch_fetch_errors_total",
                    "teewatch_store_errors_total",
                    "teewatch_target_state",
                ]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// How many checks of `target` the daemon finished and stored (all states).
pub fn stored(scrape: &str, target: &str) -> f64 {
    ["pass", "unknown", "fail"]
        .iter()
        .filter_map(|state| {
            sample(
                scrape,
                "teewatch_checks_total",
                &[("target", target), ("state", state)],
            )
        })
        .sum()
}

/// One stored check as `teewatch history --json` lists it.
#[derive(Debug, Clone)]
pub struct StoredCheck {
    pub id: i64,
    pub target: String,
    pub state: String,
    pub scheduled_at: String,
    pub started_at: String,
    /// `(name, state, reason)` of each check that did not pass.
    pub failing: Vec<(String, String, String)>,
}

/// Every stored check in `db`, oldest first, read by `teewatch history --json` (another process,
/// as an operator would, while the daemon may still run).
pub fn history(db: &Path) -> Vec<StoredCheck> {
    if !db.exists() {
        return Vec::new();
    }
    let out = teewatch([
        "history".as_ref(),
        "--json".as_ref(),
        "--db".as_ref(),
        db.as_os_str(),
    ]);
    assert_success(&out);
    let value: Value = serde_json::from_slice(&out.stdout).unwrap();
    let text = |v: &Value, key: &str| v[key].as_str().unwrap_or_default().to_string();
    let mut checks: Vec<StoredCheck> = value["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| StoredCheck {
            id: c["id"].as_i64().unwrap(),
            target: text(c, "target"),
            state: text(c, "state"),
            scheduled_at: text(c, "scheduled_at"),
            started_at: text(c, "started_at"),
            failing: c["failing"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|f| (text(f, "name"), text(f, "state"), text(f, "reason")))
                .collect(),
        })
        .collect();
    checks.sort_by_key(|c| c.id);
    checks
}

/// The ids of the stored checks.
pub fn ids(checks: &[StoredCheck]) -> Vec<i64> {
    checks.iter().map(|c| c.id).collect()
}

/// Asserts that every check stored before is still stored, and returns how many were added.
pub fn nothing_lost(before: &[StoredCheck], after: &[StoredCheck], row: &str) -> usize {
    let now: std::collections::BTreeSet<i64> = ids(after).into_iter().collect();
    let lost: Vec<i64> = ids(before)
        .into_iter()
        .filter(|id| !now.contains(id))
        .collect();
    assert!(lost.is_empty(), "{row}: stored checks lost: {lost:?}");
    after.len().saturating_sub(before.len())
}
