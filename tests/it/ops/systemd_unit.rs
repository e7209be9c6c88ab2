//! The systemd unit (`systemd/teewatch.service`): systemd's own tools accept it without a word,
//! alone and with the fleet drop-in (`systemd/teewatch-fleet.conf`), and score its sandbox at
//! most 1.5 (`systemd/check.sh`); it agrees with the shipped `config.toml` (credential names,
//! configuration path, state directory, stop timeout), and the drop-in loads the database
//! password credential that the fleet configuration of `docs/fleet-ops.md` names.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use teewatch::config::{ApiKeySource, Config};

use crate::common::tool;

/// What provides `systemd-analyze` on Debian.
const INSTALL: &str = "apt-get install -y systemd";

const MAX_EXPOSURE: f64 = 1.5;
/// The exit code `systemd/check.sh` uses when `systemd-analyze` is not installed.
const TOOL_MISSING: i32 = 77;

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// The `[Service]` (or other `section`) assignments of the unit, in order, comments skipped.
fn unit_entries(section: &str) -> Vec<(String, String)> {
    file_entries("systemd/teewatch.service", section)
}

/// The assignments of `section` in a unit file or drop-in, in order, comments skipped.
fn file_entries(file: &str, section: &str) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo_path(file)).unwrap();
    let mut current = String::new();
    let mut entries = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') && line.ends_with(']') {
            current = line[1..line.len() - 1].to_string();
            continue;
        }
        assert!(
            !line.ends_with('\\'),
            "continuation lines are not used in the unit: {line}"
        );
        let (key, value) = line.split_once('=').expect("KEY=VALUE");
        if current == section {
            entries.push((key.trim().to_string(), value.trim().to_string()));
        }
    }
    entries
}

/// Every value of `key` in `[Service]`.
fn service_values(key: &str) -> Vec<String> {
    unit_entries("Service")
        .into_iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v)
        .collect()
}

/// The one value of `key` in `[Service]`.
fn service_value(key: &str) -> String {
    let values = service_values(key);
    assert_eq!(
        values.len(),
        1,
        "{key}= must appear exactly once: {values:?}"
    );
    values[0].clone()
}

/// A systemd time span made of `<number><unit>` parts (`45s`, `1min 30s`, `2m`, `500ms`).
fn timespan(text: &str) -> Duration {
    let mut total = Duration::ZERO;
    for part in text.split_whitespace() {
        let split = part
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(part.len());
        let (number, unit) = part.split_at(split);
        let n: u64 = number
            .parse()
            .unwrap_or_else(|_| panic!("timespan {text:?}"));
        total += match unit {
            "ms" | "msec" => Duration::from_millis(n),
            "" | "s" | "sec" | "second" | "seconds" => Duration::from_secs(n),
            "m" | "min" | "minute" | "minutes" => Duration::from_secs(n * 60),
            "h" | "hr" | "hour" | "hours" => Duration::from_secs(n * 3600),
            _ => panic!("unsupported time unit in {text:?}"),
        };
    }
    total
}

fn shipped_config() -> Config {
    Config::load(&repo_path("config.toml")).unwrap()
}

#[test]
fn check_script_passes_with_a_low_exposure_score() {
    // Found before the script runs, so a missing tool fails here naming the install command.
    tool::tool("systemd-analyze", INSTALL);
    let out = Command::new("bash")
        .arg(repo_path("systemd/check.sh"))
        .arg(env!("CARGO_BIN_EXE_teewatch"))
        .output()
        .expect("running bash systemd/check.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(
        out.status.code(),
        Some(TOOL_MISSING),
        "systemd/check.sh did not find systemd-analyze (run `{}`, or `{INSTALL}`):\n{stderr}",
        tool::SETUP
    );
    assert!(
        out.status.success(),
        "systemd/check.sh failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("verify with systemd/teewatch-fleet.conf: clean"),
        "systemd/check.sh did not verify the fleet drop-in:\n{stdout}"
    );
    let score: f64 = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("overall exposure: "))
        .filter_map(|rest| rest.split_whitespace().next())
        .next_back()
        .unwrap_or_else(|| panic!("no `overall exposure:` line:\n{stdout}"))
        .parse()
        .unwrap();
    println!("systemd-analyze security: overall exposure {score}");
    assert!(
        score <= MAX_EXPOSURE,
        "exposure {score} is above {MAX_EXPOSURE}:\n{stdout}"
    );
}

#[test]
fn load_credential_names_are_the_configs_credential_names() {
    let mut loaded = BTreeSet::new();
    for key in ["LoadCredential", "LoadCredentialEncrypted"] {
        for value in service_values(key) {
            let (name, source) = value
                .split_once(':')
                .unwrap_or_else(|| panic!("{key}={value} names no source file"));
            assert!(
                source.starts_with("/etc/teewatch/"),
                "{key}={value}: keys belong under /etc/teewatch"
            );
            assert!(
                loaded.insert(name.to_string()),
                "credential {name} loaded twice"
            );
        }
    }
    let config = shipped_config();
    let named: BTreeSet<String> = config
        .monitored()
        .filter_map(|(_, m)| match &m.api_key {
            ApiKeySource::Credential(name) => Some(name.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        loaded, named,
        "the unit's LoadCredential= names must be exactly config.toml's api_key_credential names"
    );

    // Every monitored target must find its key under the unit: the unit sets no environment
    // variable unless it says so with Environment=.
    let environment: BTreeSet<String> = service_values("Environment")
        .iter()
        .flat_map(|v| v.split_whitespace())
        .filter_map(|a| {
            a.trim_matches('"')
                .split_once('=')
                .map(|(k, _)| k.to_string())
        })
        .collect();
    for (target, monitor) in config.monitored() {
        if let ApiKeySource::Env(var) = &monitor.api_key {
            assert!(
                environment.contains(var),
                "target {} reads its key from ${var}, which the unit does not set; use \
                 api_key_credential with a LoadCredential= line instead",
                target.name
            );
        }
    }
}

#[test]
fn exec_start_state_and_configuration_directories_match_the_config() {
    let exec_start = service_value("ExecStart");
    let words: Vec<&str> = exec_start.split_whitespace().collect();
    // Where the Debian package installs the binary (Cargo.toml, [package.metadata.deb]).
    assert_eq!(words[0], "/usr/bin/teewatch", "{exec_start}");
    assert_eq!(words[1], "run", "{exec_start}");
    let config_at = words
        .iter()
        .position(|w| *w == "--config")
        .map(|i| words[i + 1])
        .unwrap_or_else(|| panic!("ExecStart names no --config: {exec_start}"));
    assert_eq!(config_at, "/etc/teewatch/config.toml");
    let configuration_dir = service_value("ConfigurationDirectory");
    assert_eq!(
        Path::new("/etc").join(&configuration_dir),
        Path::new(config_at).parent().unwrap(),
        "ConfigurationDirectory= must hold the --config file"
    );
    assert!(
        !words.contains(&"--db") && !words.contains(&"--listen"),
        "the unit should not override the config: {exec_start}"
    );

    let config = shipped_config();
    let state_dir = service_value("StateDirectory");
    assert_eq!(
        config.daemon.db.sqlite_path().unwrap().parent().unwrap(),
        Path::new("/var/lib").join(&state_dir),
        "config.toml's [daemon] db must live in the unit's StateDirectory= (/var/lib/{state_dir})"
    );
    assert_eq!(
        config.daemon.db.sqlite_path(),
        Some(Path::new("/var/lib/teewatch/teewatch.db"))
    );
    assert_eq!(service_value("DynamicUser"), "yes");
    assert!(
        config.daemon.listen.ip().is_loopback(),
        "the shipped config listens on loopback"
    );

    // systemd must wait out the drain (plus up to 5 s for HTTP and the store) before SIGKILL.
    let stop = timespan(&service_value("TimeoutStopSec"));
    assert!(
        stop >= config.daemon.drain_timeout + Duration::from_secs(10),
        "TimeoutStopSec={stop:?} must exceed drain_timeout {:?} by 10 s",
        config.daemon.drain_timeout
    );

    assert_eq!(service_value("Type"), "notify");
    assert_eq!(service_value("NotifyAccess"), "main");
    let watchdog = timespan(&service_value("WatchdogSec"));
    assert!(
        watchdog >= Duration::from_secs(10),
        "WatchdogSec={watchdog:?} leaves the daemon too little time"
    );
    assert_eq!(service_value("ExecReload"), "/bin/kill -HUP $MAINPID");
    assert_eq!(service_value("Restart"), "on-failure");
    assert_eq!(
        service_value("RestartPreventExitStatus"),
        "78",
        "an invalid configuration (exit 78) must not be restarted in a loop"
    );
}

#[test]
fn the_fleet_drop_in_loads_the_credential_the_fleet_configuration_names() {
    let file = "systemd/teewatch-fleet.conf";
    let service = file_entries(file, "Service");
    let keys: Vec<&str> = service.iter().map(|(k, _)| k.as_str()).collect();
    // A drop-in that only adds: no sandboxing or ExecStart of its own to drift from the unit.
    assert_eq!(keys, ["LoadCredential"], "{file}");
    let (name, source) = service[0].1.split_once(':').unwrap();
    assert_eq!(
        source,
        format!("/etc/teewatch/credentials/{name}"),
        "{file}: the password file belongs with the other credentials"
    );
    let unit: Vec<(String, String)> = file_entries(file, "Unit");
    assert_eq!(
        unit,
        [("After".to_string(), "postgresql.service".to_string())],
        "{file}: ordering only, never a dependency on a local server"
    );
    // Every instance's configuration in the fleet guide names that credential.
    let guide = std::fs::read_to_string(repo_path("docs/fleet-ops.md")).unwrap();
    let named = format!("db_password_credential = \"{name}\"");
    assert!(
        guide.matches(&named).count() >= 2,
        "docs/fleet-ops.md: each instance's configuration should say {named}"
    );
    assert!(
        guide.contains(&format!("LoadCredential={name}:")),
        "docs/fleet-ops.md shows the drop-in's LoadCredential= line"
    );
}
