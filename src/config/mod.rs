//! The configuration file: TOML as written, validated into the policy each target is held to.
//!
//! Loading works in two stages, as ripgrep does: the raw TOML table, then a validated `Config`.
//! Every problem is collected with its path, what was expected and what was found, so that one run
//! reports them all. This version reads the policy parts (`[intel]`, `[[target]]` names, pins and
//! TCB overrides); the daemon, fetch and credential keys are accepted and checked for typos, and
//! are used by later commands.

use std::fmt;
use std::path::Path;

use toml::{Table, Value};

use crate::verify::policy::{
    DEFAULT_NRAS_URL, KNOWN_TCB_STATUSES, Policy, PolicyError, PolicySnapshot, TrustAnchors,
};

mod dangerous;

pub use dangerous::DangerousRoots;

/// Keys each section accepts. Keys outside these lists are reported as typos.
const TOP_KEYS: [&str; 5] = ["daemon", "intel", "nvidia", "dangerous", "target"];
const DAEMON_KEYS: [&str; 5] = [
    "listen",
    "db",
    "retention_days",
    "concurrency",
    "log_format",
];
const INTEL_KEYS: [&str; 3] = ["pccs_url", "root_crl_url", "allowed_tcb_statuses"];
const NVIDIA_KEYS: [&str; 3] = ["nras_url", "jwks_url", "nras_anchors"];
const TARGET_KEYS: [&str; 15] = [
    "name",
    "profile",
    "base_url",
    "model",
    "api_key_env",
    "api_key_file",
    "api_key_credential",
    "interval",
    "cron",
    "timeout_seconds",
    "allowed_tcb_statuses",
    "canary",
    "pins",
    "paths",
    "signing_algo",
];

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

/// One monitored target as far as verification is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetConfig {
    pub name: String,
    /// The provider's base URL, when given.
    pub base_url: Option<String>,
    pub policy: Policy,
}

/// A validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub allowed_tcb_statuses: Vec<String>,
    /// NRAS base URL (no trailing slash); NRAS tokens must name it as `iss`.
    pub nras_url: String,
    /// DER of the NRAS intermediates from `[nvidia] nras_anchors`, when given.
    pub nras_anchors_der: Option<Vec<Vec<u8>>>,
    pub targets: Vec<TargetConfig>,
    /// Test roots from `[dangerous]` (loopback targets only), and the options' names.
    pub dangerous: DangerousRoots,
}

impl Config {
    /// The trust anchors this configuration puts in force.
    pub fn trust_anchors(&self) -> TrustAnchors {
        let mut anchors = TrustAnchors::production();
        anchors.nras_url = self.nras_url.clone();
        if let Some(der) = &self.nras_anchors_der {
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
        anchors.dangerous = roots.names.clone();
        anchors
    }

    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            issues: vec![ConfigIssue {
                path: "(file)".into(),
                message: format!("cannot read: {e}"),
            }],
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::parse_in(&text, &file, base)
    }

    /// Validates configuration text; `file` names it in errors and relative paths are read
    /// from the current directory.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        Config::parse_in(text, file, Path::new("."))
    }

    /// Validates configuration text; relative paths are resolved against `base`.
    fn parse_in(text: &str, file: &str, base: &Path) -> Result<Config, ConfigError> {
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
        for (section, keys) in [
            ("daemon", &DAEMON_KEYS[..]),
            ("intel", &INTEL_KEYS[..]),
            ("nvidia", &NVIDIA_KEYS[..]),
        ] {
            if let Some(t) = v.table(&table, section, section) {
                v.known_keys(section, t, keys);
            }
        }
        let intel = v.table(&table, "intel", "intel");
        let allowed_tcb_statuses = intel
            .and_then(|t| v.string_list(t, "allowed_tcb_statuses", "intel.allowed_tcb_statuses"))
            .unwrap_or_else(|| Policy::default().allowed_tcb_statuses);
        v.tcb_statuses(&allowed_tcb_statuses, "intel.allowed_tcb_statuses");
        let dangerous = dangerous::read(&mut v, &table, base);
        let nvidia = v.table(&table, "nvidia", "nvidia");
        let nras_url = match nvidia.and_then(|t| t.get("nras_url")) {
            None => DEFAULT_NRAS_URL.to_string(),
            Some(Value::String(url)) if url.starts_with("https://") || is_loopback_http(url) => {
                url.trim_end_matches('/').to_string()
            }
            Some(other) => {
                v.issue(
                    "nvidia.nras_url",
                    format!(
                        "expected an https:// base url (http only for loopback), found {}",
                        describe(other)
                    ),
                );
                String::new()
            }
        };
        let nras_anchors_der = nvidia
            .and_then(|t| v.string_list(t, "nras_anchors", "nvidia.nras_anchors"))
            .map(|paths| v.read_certificates(&paths, base, "nvidia.nras_anchors"));

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
                                if targets.iter().any(|x: &TargetConfig| &x.name == name)
                                    || seen_names.contains(name)
                                {
                                    v.issue(
                                        &format!("{path}.name"),
                                        format!("duplicate target name \"{name}\""),
                                    );
                                }
                                seen_names.push(name.clone());
                            }
                            if let Some(target) = v.target(t, &path, &allowed_tcb_statuses) {
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
        let declared: Vec<(String, Option<String>)> = table
            .get("target")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .map(|t| {
                        let text = |k: &str| t.get(k).and_then(Value::as_str).map(str::to_string);
                        (text("name").unwrap_or_default(), text("base_url"))
                    })
                    .collect()
            })
            .unwrap_or_default();
        dangerous::require_loopback(&mut v, &dangerous, &declared);
        if v.issues.is_empty() {
            Ok(Config {
                allowed_tcb_statuses,
                nras_url,
                nras_anchors_der,
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
}

/// Collects issues while walking the raw table.
#[derive(Default)]
pub(super) struct Validator {
    issues: Vec<ConfigIssue>,
}

impl Validator {
    pub(super) fn issue(&mut self, path: &str, message: String) {
        self.issues.push(ConfigIssue {
            path: path.to_string(),
            message,
        });
    }

    /// Reads one PEM or DER certificate per path, reporting each unreadable one.
    pub(super) fn read_certificates(
        &mut self,
        paths: &[String],
        base: &Path,
        at: &str,
    ) -> Vec<Vec<u8>> {
        if paths.is_empty() {
            self.issue(
                at,
                "expected at least one certificate file, found an empty list".into(),
            );
        }
        let mut out = Vec::new();
        for (index, path) in paths.iter().enumerate() {
            let full = base.join(path);
            let bytes = match std::fs::read(&full) {
                Ok(b) => b,
                Err(e) => {
                    self.issue(
                        &format!("{at}[{index}]"),
                        format!("cannot read {}: {e}", full.display()),
                    );
                    continue;
                }
            };
            let der = dangerous::certificate_der(bytes);
            if x509_parser::parse_x509_certificate(&der).is_err() {
                self.issue(
                    &format!("{at}[{index}]"),
                    format!("{} is not a pem or der x.509 certificate", full.display()),
                );
                continue;
            }
            out.push(der);
        }
        out
    }

    fn tcb_statuses(&mut self, statuses: &[String], path: &str) {
        for (index, status) in statuses.iter().enumerate() {
            if !KNOWN_TCB_STATUSES.contains(&status.as_str()) {
                self.issue(
                    &format!("{path}[{index}]"),
                    format!(
                        "expected one of {}, found \"{status}\"",
                        KNOWN_TCB_STATUSES.join(", ")
                    ),
                );
            }
        }
    }

    fn known_keys(&mut self, section: &str, table: &Table, known: &[&str]) {
        for key in table.keys() {
            if key == "api_key" {
                self.issue(
                    &format!("{section}.{key}"),
                    "an api key must not be written into the configuration; name it with api_key_env, api_key_file or api_key_credential".into(),
                );
            } else if !known.contains(&key.as_str()) {
                let path = if section.is_empty() {
                    key.clone()
                } else {
                    format!("{section}.{key}")
                };
                self.issue(
                    &path,
                    format!("unknown key; expected one of {}", known.join(", ")),
                );
            }
        }
    }

    pub(super) fn table<'t>(
        &mut self,
        parent: &'t Table,
        key: &str,
        path: &str,
    ) -> Option<&'t Table> {
        match parent.get(key)? {
            Value::Table(t) => Some(t),
            other => {
                self.issue(
                    path,
                    format!("expected a table, found {}", other.type_str()),
                );
                None
            }
        }
    }

    pub(super) fn string_list(
        &mut self,
        table: &Table,
        key: &str,
        path: &str,
    ) -> Option<Vec<String>> {
        match table.get(key)? {
            Value::Array(items) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::String(s) => out.push(s.clone()),
                        other => self.issue(
                            &format!("{path}[{i}]"),
                            format!("expected a string, found {}", other.type_str()),
                        ),
                    }
                }
                Some(out)
            }
            other => {
                self.issue(
                    path,
                    format!("expected a list of strings, found {}", other.type_str()),
                );
                None
            }
        }
    }

    fn target(&mut self, t: &Table, path: &str, global_tcb: &[String]) -> Option<TargetConfig> {
        self.known_keys(path, t, &TARGET_KEYS);
        let name = match t.get("name") {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
            Some(other) => {
                self.issue(
                    &format!("{path}.name"),
                    format!("expected a non-empty string, found {}", describe(other)),
                );
                None
            }
            None => {
                self.issue(
                    &format!("{path}.name"),
                    "missing; every target needs a name".into(),
                );
                None
            }
        };
        let own_path = format!("{path}.allowed_tcb_statuses");
        let allowed = match self.string_list(t, "allowed_tcb_statuses", &own_path) {
            Some(list) => {
                self.tcb_statuses(&list, &own_path);
                list
            }
            None => global_tcb.to_vec(),
        };
        let mut pins = std::collections::BTreeMap::new();
        if let Some(pin_table) = self.table(t, "pins", &format!("{path}.pins")) {
            for key in pin_table.keys() {
                let pin_path = format!("{path}.pins.{key}");
                match pin_table.get(key) {
                    Some(Value::String(s)) => {
                        pins.insert(key.clone(), vec![s.clone()]);
                    }
                    Some(Value::Array(_)) => {
                        if let Some(list) = self.string_list(pin_table, key, &pin_path) {
                            pins.insert(key.clone(), list);
                        }
                    }
                    Some(other) => self.issue(
                        &pin_path,
                        format!(
                            "expected a list of accepted values, found {}",
                            other.type_str()
                        ),
                    ),
                    None => {}
                }
            }
        }
        let snapshot = PolicySnapshot {
            allowed_tcb_statuses: Some(allowed),
            pins,
        };
        let policy = match Policy::from_snapshot(&snapshot) {
            Ok(p) => Some(p),
            Err(errors) => {
                for e in errors {
                    // Unknown statuses were already reported where they are written.
                    if !matches!(e, PolicyError::UnknownTcbStatus { .. }) {
                        let text = e.to_string();
                        let (field, message) = text.split_once(": ").unwrap_or((&text, ""));
                        self.issue(&format!("{path}.{field}"), message.to_string());
                    }
                }
                None
            }
        };
        let base_url = match t.get("base_url") {
            None => None,
            Some(Value::String(url)) => Some(url.trim_end_matches('/').to_string()),
            Some(other) => {
                self.issue(
                    &format!("{path}.base_url"),
                    format!("expected a url string, found {}", other.type_str()),
                );
                None
            }
        };
        Some(TargetConfig {
            name: name?,
            base_url,
            policy: policy?,
        })
    }
}

/// `http://` to a loopback host (`localhost`, 127.0.0.0/8 or `[::1]`), allowed for test
/// services only.
pub fn is_loopback_http(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
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
