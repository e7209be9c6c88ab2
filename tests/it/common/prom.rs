//! Prometheus' own programs for the tests of the shipped alert rules (`tests/alerts.rs`,
//! `tests/prometheus_e2e.rs`): running `promtool` and the `prometheus` server (Debian's
//! `prometheus` package, found by `tool.rs`) from the repository root, and the one change the
//! end-to-end test makes to the rules (documented in `docs/alerts.md`).
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The shipped alert rules, their promtool unit tests (alert by alert; restarts, stalls and
/// scrape gaps; incidents; a fleet's instances and vantage points), their runbook and the example Alertmanager configuration, from the
/// repository root.
pub const RULES: &str = "dashboards/prometheus/alerts.yml";
pub const RULE_TESTS: [&str; 4] = [
    "dashboards/prometheus/alerts_test.yml",
    "dashboards/prometheus/alerts_restarts_test.yml",
    "dashboards/prometheus/alerts_incidents_test.yml",
    "dashboards/prometheus/alerts_fleet_test.yml",
];
pub const RUNBOOK: &str = "docs/alerts.md";
pub const ALERTMANAGER_CONFIG: &str = "dashboards/alertmanager/alertmanager.yml";

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn read(relative: &str) -> String {
    let path = repo_root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// What provides `promtool` and `prometheus` on Debian.
pub const INSTALL: &str = "apt-get install -y prometheus";

/// Runs `program args…` in the repository root: whether it succeeded, and what it said on
/// standard output and standard error.
pub fn run(program: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(program)
        .args(args)
        .current_dir(repo_root())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    let mut said = String::from_utf8_lossy(&out.stdout).into_owned();
    said.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), said)
}

/// The names of the alerting rules in a rule file, in file order (`- alert: NAME` lines).
pub fn alert_names(rules: &str) -> Vec<String> {
    rules
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- alert:"))
        .map(|name| name.trim().to_string())
        .collect()
}

/// The one change the end-to-end test makes to the shipped rules: every `for: <N>m` becomes
/// `for: <N>s`, and every `keep_firing_for: <N>m` becomes `keep_firing_for: <N>s`, so each alert
/// waits as many seconds as it waits minutes in production. Every other line is kept byte for
/// byte. Panics on a duration written any other way, because then the substitution would not
/// cover it.
pub fn minutes_to_seconds(rules: &str) -> String {
    let mut out = String::with_capacity(rules.len());
    for line in rules.split_inclusive('\n') {
        let body = line.trim_end_matches(['\n', '\r']);
        let trimmed = body.trim_start();
        let key = ["for:", "keep_firing_for:"]
            .into_iter()
            .find(|key| trimmed.starts_with(key));
        if let Some(key) = key {
            let minutes = trimmed[key.len()..]
                .trim()
                .strip_suffix('m')
                .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                .unwrap_or_else(|| {
                    panic!("`{body}` is not `{key} <N>m`; the end-to-end substitution needs it")
                });
            let indent = &body[..body.len() - trimmed.len()];
            out.push_str(&format!("{indent}{key} {minutes}s"));
            out.push_str(&line[body.len()..]);
        } else {
            out.push_str(line);
        }
    }
    out
}
