//! The configuration file: TOML as written, validated into typed settings and the policy each
//! target is held to (every key is documented in `docs/config.md`).
//!
//! Loading works in two stages, as ripgrep does: the raw TOML table, then a validated `Config`.
//! Every problem is collected with its path, what was expected and what was found, so that one run
//! reports them all. The sections live in their own files: `global` (`[daemon]`, `[intel]`,
//! `[nvidia]`), `target` and `provider` (`[[target]]`), `schedule`, `api_key` and `dangerous`.

use std::fmt;
use std::path::Path;

use toml::{Table, Value};

pub use crate::verify::policy::DEFAULT_NRAS_URL;
use crate::verify::policy::TrustAnchors;

mod api_key;
mod dangerous;
mod db;
mod fleet;
mod global;
mod provenance;
mod provider;
mod schedule;
mod target;
mod validator;
mod web;
mod web_tls;

pub use api_key::{ApiKeyError, ApiKeySource, CREDENTIALS_DIRECTORY};
pub use dangerous::DangerousRoots;
pub use db::{StoreLocation, display_url as db_display_url};
pub use fleet::{
    DEFAULT_LEASE, FleetMode, FleetSettings, MAX_LEASE, MIN_LEASE, host_instance_name,
    is_postgres_url, name_problem,
};
pub use global::plain_off_loopback;
pub use global::{DEFAULT_COLLATERAL_REFRESH, MAX_COLLATERAL_REFRESH, MIN_COLLATERAL_REFRESH};
pub use global::{
    DEFAULT_CONCURRENCY, DEFAULT_DB, DEFAULT_DRAIN_TIMEOUT, DEFAULT_DRIFT_WINDOW,
    DEFAULT_KEEP_BUNDLES, DEFAULT_LISTEN, DEFAULT_PCCS_URL, DEFAULT_RETENTION_DAYS,
    DEFAULT_ROOT_CRL_URL, DaemonConfig, IntelConfig, JWKS_PATH, NvidiaConfig, PHALA_PCCS_URL,
};
pub use provider::{
    CanaryConfig, DEFAULT_CANARY_MAX_TOKENS, DEFAULT_CANARY_PROMPT, ID_PLACEHOLDER, Profile,
    ProviderPaths,
};
pub use schedule::{DEFAULT_INTERVAL, MIN_INTERVAL, Schedule, check_cron, parse_interval};
pub use target::{DEFAULT_TIMEOUT, MonitorConfig, SigningAlgo, TargetConfig};
pub use web::{CREDENTIAL_PREFIX, WebConfig};
pub use web_tls::{ClientAuth, WebTls};

use validator::Validator;

/// Sections the file may hold. Keys outside these lists are reported as typos.
const TOP_KEYS: [&str; 5] = ["daemon", "intel", "nvidia", "dangerous", "target"];

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    pub path: String,
    pub message: String,
}

/// Every problem found in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub file: String,
    pub issues: Vec<ConfigIssue>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.issues.len();
        writeln!(
            f,
            "{}: {count} problem{}",
            self.file,
            if count == 1 { "" } else { "s" }
        )?;
        for issue in &self.issues {
            writeln!(f, "  {}: {}", issue.path, issue.message)?;
        }
        Ok(())
    }
}

/// A validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub daemon: DaemonConfig,
    pub intel: IntelConfig,
    pub nvidia: NvidiaConfig,
    pub targets: Vec<TargetConfig>,
    /// Test roots from `[dangerous]` (loopback targets only), and the options' names.
    pub dangerous: DangerousRoots,
}

impl Config {
    /// The trust anchors this configuration puts in force.
    pub fn trust_anchors(&self) -> TrustAnchors {
        let mut anchors = TrustAnchors::production();
        anchors.nras_url = self.nvidia.nras_url.clone();
        if let Some(der) = &self.nvidia.nras_anchors_der {
            anchors.nras_intermediates_der = der.clone();
        }
        let roots = &self.dangerous;
        if let Some(der) = &roots.intel_root_der {
            anchors.intel_root_der = der.clone();
        }
        if let Some(der) = &roots.nvidia_device_root_der {
            anchors.nvidia_device_root_der = der.clone();
        }
        if let Some(der) = &roots.nras_intermediates_der {
            anchors.nras_intermediates_der = der.clone();
        }
        anchors.sigstore_fulcio_pem = roots.sigstore_fulcio_pem.clone();
        anchors.rekor_key_pem = roots.rekor_key_pem.clone();
        anchors.dangerous = roots.names.clone();
        anchors
    }

    /// Reads and validates a configuration file; relative paths in it are resolved against the
    /// file's folder. A file without a `[[target]]` is refused: every command that reads one
    /// (`run`, `check`, `pin`, `verify --config`, `config check`) would have nothing to do.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            issues: vec![ConfigIssue {
                path: "(file)".into(),
                message: format!("cannot read: {e}"),
            }],
        })?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        Config::parse_checked(&text, &file, base, true)
    }

    /// Validates configuration text; `file` names it in errors and relative paths are read
    /// from the current directory.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        Config::parse_in(text, file, Path::new("."))
    }

    /// Validates configuration text; relative paths are resolved against `base`. Text without a
    /// `[[target]]` is valid here (the unit tests read sections alone); `load` refuses it.
    pub fn parse_in(text: &str, file: &str, base: &Path) -> Result<Config, ConfigError> {
        Config::parse_checked(text, file, base, false)
    }

    /// `parse_in`, and with `need_target` an issue when the text declares no `[[target]]`.
    fn parse_checked(
        text: &str,
        file: &str,
        base: &Path,
        need_target: bool,
    ) -> Result<Config, ConfigError> {
        let fail = |issues| ConfigError {
            file: file.to_string(),
            issues,
        };
        let table: Table = text.parse().map_err(|e: toml::de::Error| {
            fail(vec![ConfigIssue {
                path: "(syntax)".into(),
                message: e.to_string().trim().replace('\n', " "),
            }])
        })?;
        let mut v = Validator::default();
        v.known_keys("", &table, &TOP_KEYS);
        let mut daemon = global::daemon(&mut v, &table, base);
        let intel = global::intel(&mut v, &table);
        let dangerous = dangerous::read(&mut v, &table, base);
        let nvidia = global::nvidia(&mut v, &table, base);
        let targets = read_targets(&mut v, &table, &intel.allowed_tcb_statuses, base);
        fleet::check_lease(&mut v, &table, &mut daemon.fleet, &targets);
        let declares_none = match table.get("target") {
            None => true,
            Some(Value::Array(list)) => list.is_empty(),
            Some(_) => false,
        };
        if need_target && declares_none {
            v.issue(
                "target",
                "expected at least one [[target]], found none: there is nothing to check".into(),
            );
        }
        let declared: Vec<(String, Option<String>)> = table
            .get("target")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .map(|t| {
                        let text = |k: &str| t.get(k).and_then(Value::as_str).map(str::to_string);
                        // A profile's default base URL counts as the target's.
                        let default = || {
                            text("profile")
                                .and_then(|p| Profile::parse(&p))
                                .and_then(Profile::default_base_url)
                                .map(str::to_string)
                        };
                        let base_url = text("base_url").or_else(default);
                        (text("name").unwrap_or_default(), base_url)
                    })
                    .collect()
            })
            .unwrap_or_default();
        dangerous::require_loopback(&mut v, &dangerous, &declared);
        if v.issues.is_empty() {
            Ok(Config {
                daemon,
                intel,
                nvidia,
                targets,
                dangerous,
            })
        } else {
            Err(fail(v.issues))
        }
    }

    /// The target with this name.
    pub fn target(&self, name: &str) -> Option<&TargetConfig> {
        self.targets.iter().find(|t| t.name == name)
    }

    /// The targets that are monitored (those with a profile, model and API key source).
    pub fn monitored(&self) -> impl Iterator<Item = (&TargetConfig, &MonitorConfig)> {
        self.targets
            .iter()
            .filter_map(|t| t.monitor.as_ref().map(|m| (t, m)))
    }
}

/// Reads every `[[target]]`, reporting duplicate names.
fn read_targets(
    v: &mut Validator,
    table: &Table,
    global_tcb: &[String],
    base: &Path,
) -> Vec<TargetConfig> {
    let mut targets = Vec::new();
    let mut seen_names: Vec<String> = Vec::new();
    match table.get("target") {
        None => {}
        Some(Value::Array(list)) => {
            for (index, item) in list.iter().enumerate() {
                let path = format!("target[{index}]");
                match item {
                    Value::Table(t) => {
                        if let Some(Value::String(name)) = t.get("name") {
                            if seen_names.contains(name) {
                                v.issue(
                                    &format!("{path}.name"),
                                    format!("duplicate target name \"{name}\""),
                                );
                            }
                            seen_names.push(name.clone());
                        }
                        if let Some(target) = target::read(v, t, &path, global_tcb, base) {
                            targets.push(target);
                        }
                    }
                    other => v.issue(
                        &path,
                        format!("expected a table, found {}", other.type_str()),
                    ),
                }
            }
        }
        Some(other) => v.issue(
            "target",
            format!("expected [[target]] tables, found {}", other.type_str()),
        ),
    }
    targets
}

/// `http://` to a loopback host (`localhost`, 127.0.0.0/8 or `[::1]`), allowed for test
/// services only.
pub fn is_loopback_http(url: &str) -> bool {
    url.strip_prefix("http://")
        .is_some_and(is_loopback_authority)
}

/// `http://` or `https://` to a loopback host, as `is_loopback_http` reads it.
pub fn is_loopback_url(url: &str) -> bool {
    url.strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .is_some_and(is_loopback_authority)
}

/// Whether the part of a URL after its scheme names a loopback host.
fn is_loopback_authority(rest: &str) -> bool {
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    // Credentials before an `@` would make the real host the part after it; refuse them outright.
    if authority.contains('@') {
        return false;
    }
    let host = if let Some(bracketed) = authority.strip_prefix('[') {
        match bracketed.split_once(']') {
            Some((inside, after)) if after.is_empty() || after.starts_with(':') => inside,
            _ => return false,
        }
    } else {
        authority.split(':').next().unwrap_or_default()
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn describe(value: &Value) -> String {
    match value {
        Value::String(s) => format!("\"{s}\""),
        other => other.type_str().to_string(),
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_provenance;
#[cfg(test)]
mod tests_targets;
#[cfg(test)]
mod tests_web;
