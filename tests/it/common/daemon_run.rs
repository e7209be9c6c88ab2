//! Running the whole daemon in-process against the simulator, and reading its `/metrics`.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};

use teewatch::daemon::{Daemon, RunOptions};

/// Rewrites the simulator's configuration so the scheduler leaves the targets alone (a yearly
/// cron), letting a test drive every check itself with `check_now`.
pub fn manual_schedule(config: &Path) {
    let text = std::fs::read_to_string(config).unwrap();
    std::fs::write(
        config,
        text.replace("interval = \"10s\"", "cron = \"0 0 1 1 *\""),
    )
    .unwrap();
}

/// Starts a daemon on a free loopback port with its database in `dir`.
pub async fn start_daemon(config: &Path, dir: &Path) -> Daemon {
    Daemon::start(RunOptions {
        config_path: config.to_path_buf(),
        listen: Some("127.0.0.1:0".parse().unwrap()),
        db: Some(db_path(dir)),
    })
    .await
    .unwrap_or_else(|e| panic!("daemon did not start: {e}"))
}

pub fn db_path(dir: &Path) -> PathBuf {
    dir.join("teewatch.db")
}

/// The status page (`/`), whatever the status of the answer (a test asserts what it shows).
pub async fn status_page(daemon: &Daemon) -> String {
    reqwest::get(format!("http://{}/", daemon.addr()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// A scrape of `/metrics`.
pub async fn scrape(daemon: &Daemon) -> String {
    let url = format!("http://{}/metrics", daemon.addr());
    let response = reqwest::get(&url).await.unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

/// The value of the one series named `name` whose labels include all of `labels`, if any.
pub fn sample(scrape: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<f64> = scrape
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, label_text) = match series.split_once('{') {
                Some((m, rest)) => (m, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            if metric != name {
                return None;
            }
            let all = labels
                .iter()
                .all(|(k, v)| label_text.contains(&format!("{k}=\"{v}\"")));
            all.then(|| value.parse::<f64>().ok()).flatten()
        })
        .collect();
    assert!(
        matching.len() <= 1,
        "{name} {labels:?} matches {} series",
        matching.len()
    );
    matching.first().copied()
}

/// Every series of `name` whose labels include all of `labels`, as full lines.
pub fn series<'a>(scrape: &'a str, name: &str, labels: &[(&str, &str)]) -> Vec<&'a str> {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .collect()
}
