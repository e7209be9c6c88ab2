//! `[[target]]`: one endpoint to monitor, and the policy its evidence is judged by.
//!
//! A target with any monitoring key (`profile`, `model`, `interval`, `cron`, `timeout_seconds`,
//! `[target.paths]`, `[target.canary]`) is monitored, and then needs a profile, a model and
//! exactly one API key source. A target with none of them carries only a policy (name, TCB
//! statuses, pins) for `teewatch verify --config`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use toml::{Table, Value};

use super::api_key::{ApiKeySource, is_credential_name, is_env_name};
use super::schedule::{Schedule, check_cron, parse_interval};
use super::validator::{Read, Reported, UrlKind, Validator};
use super::{describe, provider};
use crate::verify::known::{ExtraRow, KnownUse};
use crate::verify::policy::{Pins, Policy, PolicyError, PolicySnapshot};

pub use super::provider::{CanaryConfig, Profile, ProviderPaths};
pub use crate::verify::binding::SigningAlgo;

pub(super) const TARGET_KEYS: [&str; 20] = [
    "name",
    "profile",
    "signing_algo",
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
    "gateway_pins",
    "formats",
    "paths",
    "provenance",
    "known_measurements",
    "known_extra",
];
/// Keys that make a target monitored.
const MONITOR_KEYS: [&str; 8] = [
    "profile",
    "signing_algo",
    "model",
    "interval",
    "cron",
    "timeout_seconds",
    "paths",
    "canary",
];
const API_KEY_KEYS: [&str; 3] = ["api_key_env", "api_key_file", "api_key_credential"];

/// `timeout_seconds` when not given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// One `[[target]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetConfig {
    pub name: String,
    pub policy: Policy,
    /// How the target is monitored; `None` for a policy-only target (no monitoring keys).
    pub monitor: Option<MonitorConfig>,
}

impl TargetConfig {
    /// The provider's base URL, for a monitored target.
    pub fn base_url(&self) -> Option<&str> {
        self.monitor.as_ref().map(|m| m.base_url.as_str())
    }
}

/// How a monitored target is reached and probed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorConfig {
    pub profile: Profile,
    /// Base URL without a trailing `/` (the profile's default when not given).
    pub base_url: String,
    /// The model name sent to the provider.
    pub model: String,
    pub api_key: ApiKeySource,
    pub schedule: Schedule,
    /// The limit for each request of the target's check, to the provider and to the services
    /// (`timeout_seconds`, 1 to 600; at most the HTTP client's own deadline).
    pub timeout: Duration,
    pub paths: ProviderPaths,
    pub canary: CanaryConfig,
    /// The key the provider is asked to attest and sign with (`signing_algo`; the profile's
    /// default when not given: ed25519 for `near`, else ecdsa).
    pub signing_algo: SigningAlgo,
}

impl MonitorConfig {
    /// `base_url` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }
}

/// Reads one `[[target]]` table at `path` (such as `target[0]`).
pub(super) fn read(
    v: &mut Validator,
    t: &Table,
    path: &str,
    global_tcb: &[String],
    base: &Path,
) -> Option<TargetConfig> {
    v.known_keys(path, t, &TARGET_KEYS);
    let name = match t.get("name") {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
        Some(other) => {
            v.issue(
                &format!("{path}.name"),
                format!("expected a non-empty string, found {}", describe(other)),
            );
            None
        }
        None => {
            v.issue(
                &format!("{path}.name"),
                "missing; every target needs a name".into(),
            );
            None
        }
    };
    let policy = policy(v, t, path, global_tcb);
    let monitor = monitor(v, t, path, base);
    let mut policy = policy?;
    let monitor = monitor.ok()?;
    // A NEAR target reached directly binds its TLS key in the NEAR formats; answering in a
    // format without a TLS fingerprint must not silently drop that check.
    if policy.formats.is_none() && monitor.as_ref().is_some_and(|m| m.profile == Profile::Near) {
        policy.formats = Some(vec!["near-gateway".into(), "near-direct".into()]);
    }
    Some(TargetConfig {
        name: name?,
        policy,
        monitor,
    })
}

/// The TCB statuses and pins.
fn policy(v: &mut Validator, t: &Table, path: &str, global_tcb: &[String]) -> Option<Policy> {
    let own_path = format!("{path}.allowed_tcb_statuses");
    let allowed = match v.string_list(t, "allowed_tcb_statuses", &own_path) {
        Some(list) => {
            v.tcb_statuses(&list, &own_path);
            list
        }
        None => global_tcb.to_vec(),
    };
    let pins = pin_table(v, t, "pins", path);
    let gateway_pins = pin_table(v, t, "gateway_pins", path);
    let formats = v.string_list(t, "formats", &format!("{path}.formats"));
    let provenance = super::provenance::read(v, t, path);
    let known_measurements = known(v, t, path);
    let snapshot = PolicySnapshot {
        allowed_tcb_statuses: Some(allowed),
        pins,
        gateway_pins,
        formats,
        provenance,
        known_measurements,
    };
    match Policy::from_snapshot(&snapshot) {
        Ok(p) => Some(p),
        Err(errors) => {
            for e in errors {
                // Unknown statuses were already reported where they are written.
                if !matches!(e, PolicyError::UnknownTcbStatus { .. }) {
                    let text = e.to_string();
                    let (field, message) = text.split_once(": ").unwrap_or((&text, ""));
                    v.issue(&format!("{path}.{field}"), message.to_string());
                }
            }
            None
        }
    }
}

/// `known_measurements` (on unless `false`) and the target's extra rows `[[target.known_extra]]`
/// (`field`, `value`, `name`). The rows' values are checked by the policy.
fn known(v: &mut Validator, t: &Table, path: &str) -> Option<KnownUse> {
    let enabled = v
        .boolean(
            t,
            "known_measurements",
            &format!("{path}.known_measurements"),
        )
        .ok()
        .flatten()
        .unwrap_or(true);
    let extra_path = format!("{path}.known_extra");
    let mut extra = Vec::new();
    match t.get("known_extra") {
        None => {}
        Some(Value::Array(rows)) => {
            for (index, row) in rows.iter().enumerate() {
                let row_path = format!("{extra_path}[{index}]");
                let Value::Table(row) = row else {
                    v.issue(
                        &row_path,
                        format!(
                            "expected a table with field, value and name, found {}",
                            row.type_str()
                        ),
                    );
                    continue;
                };
                v.known_keys(&row_path, row, &["field", "value", "name"]);
                let mut text = |key: &str, what: &str| {
                    let read = v.string(row, key, &format!("{row_path}.{key}"), what);
                    match read {
                        Ok(Some(s)) => Some(s.to_string()),
                        Ok(None) => {
                            v.issue(
                                &format!("{row_path}.{key}"),
                                format!("missing; expected {what}"),
                            );
                            None
                        }
                        Err(_) => None,
                    }
                };
                let field = text("field", "mrseam or mrtd");
                let value = text("value", "a 48-byte value as hex");
                let name = text("name", "the name shown for the value");
                if let (Some(field), Some(value), Some(name)) = (field, value, name) {
                    extra.push(ExtraRow { field, value, name });
                }
            }
        }
        Some(other) => v.issue(
            &extra_path,
            format!(
                "expected rows written [[target.known_extra]], found {}",
                other.type_str()
            ),
        ),
    }
    if !enabled {
        if !extra.is_empty() {
            v.issue(
                &extra_path,
                "rows are set, and known_measurements = false turns the table off; remove one of them"
                    .to_string(),
            );
        }
        return None;
    }
    // The shipped table always parses (its tests prove it); if it did not, every table-judged
    // pin would be `unknown` saying so, never pass.
    let mut known = KnownUse::current().unwrap_or(KnownUse {
        version: 1,
        extra: Vec::new(),
    });
    known.extra = extra;
    Some(known)
}

/// A pin table (`pins`, `gateway_pins`): field to its accepted values, a single string being a
/// list of one. The values are checked by the policy.
fn pin_table(v: &mut Validator, t: &Table, key: &str, path: &str) -> Pins {
    let mut pins = BTreeMap::new();
    if let Some(pin_table) = v.table(t, key, &format!("{path}.{key}")) {
        for (field, value) in pin_table {
            let pin_path = format!("{path}.{key}.{field}");
            match value {
                Value::String(s) => {
                    pins.insert(field.clone(), vec![s.clone()]);
                }
                Value::Array(_) => {
                    if let Some(list) = v.string_list(pin_table, field, &pin_path) {
                        pins.insert(field.clone(), list);
                    }
                }
                other => v.issue(
                    &pin_path,
                    format!(
                        "expected a list of accepted values, found {}",
                        other.type_str()
                    ),
                ),
            }
        }
    }
    pins
}

/// The monitoring keys: `Ok(None)` for a policy-only target, `Err` once anything was reported.
fn monitor(v: &mut Validator, t: &Table, path: &str, base: &Path) -> Read<MonitorConfig> {
    let at = |key: &str| format!("{path}.{key}");
    let before = v.issues.len();
    let monitored = MONITOR_KEYS.iter().any(|k| t.contains_key(*k));
    let profile = match t.get("profile") {
        None => Ok(None),
        Some(Value::String(s)) => match Profile::parse(s) {
            Some(p) => Ok(Some(p)),
            None => Err(v.report(
                &at("profile"),
                format!(
                    "expected one of {}, found \"{s}\"",
                    Profile::NAMES.join(", ")
                ),
            )),
        },
        Some(other) => Err(v.report(
            &at("profile"),
            format!(
                "expected one of {}, found {}",
                Profile::NAMES.join(", "),
                describe(other)
            ),
        )),
    };
    let base_url = v.url(t, "base_url", &at("base_url"), UrlKind::Base);
    let model = v.string(t, "model", &at("model"), "a model name");
    let api_key = api_key(v, t, path, base);
    let schedule = schedule(v, t, path);
    let timeout = v.integer(t, "timeout_seconds", &at("timeout_seconds"), 1..=600);
    let paths = provider::path_overrides(v, t, path);
    let canary = provider::canary(v, t, path);
    let signing_algo = match t.get("signing_algo") {
        None => Ok(None),
        Some(Value::String(s)) if s == "ecdsa" => Ok(Some(SigningAlgo::Ecdsa)),
        Some(Value::String(s)) if s == "ed25519" => Ok(Some(SigningAlgo::Ed25519)),
        Some(other) => Err(v.report(
            &at("signing_algo"),
            format!(
                "expected \"ecdsa\" or \"ed25519\", found {}",
                describe(other)
            ),
        )),
    };
    if !monitored {
        return if v.issues.len() > before {
            Err(Reported)
        } else {
            Ok(None)
        };
    }
    if let Ok(None) = profile {
        v.issue(
            &at("profile"),
            format!(
                "missing; a monitored target needs a provider profile: one of {}",
                Profile::NAMES.join(", ")
            ),
        );
    }
    if let Ok(None) = model {
        v.issue(
            &at("model"),
            "missing; expected the model name the provider serves, such as \"TEE/gpt-oss-120b\""
                .into(),
        );
    }
    // An inline `api_key` was already reported, with advice on the three sources.
    if matches!(api_key, Ok(None)) && !t.contains_key("api_key") {
        v.issue(
            path,
            format!(
                "missing an api key source; expected exactly one of {}",
                API_KEY_KEYS.join(", ")
            ),
        );
    }
    let base_url = match (&profile, base_url) {
        (_, Ok(Some(url))) => Some(url),
        (Ok(Some(p)), Ok(None)) => match p.default_base_url() {
            Some(url) => Some(url.to_string()),
            None => {
                v.issue(
                    &at("base_url"),
                    format!(
                        "missing; the {} profile has no default: expected an https:// base url (http only for loopback)",
                        p.as_str()
                    ),
                );
                None
            }
        },
        _ => None,
    };
    if v.issues.len() > before {
        return Err(Reported);
    }
    let (Ok(Some(profile)), Some(base_url), Ok(Some(model)), Ok(Some(api_key))) =
        (profile, base_url, model, api_key)
    else {
        return Err(Reported);
    };
    let (Ok(schedule), Ok(timeout), Ok(paths), Ok(canary), Ok(signing_algo)) =
        (schedule, timeout, paths, canary, signing_algo)
    else {
        return Err(Reported);
    };
    Ok(Some(MonitorConfig {
        profile,
        base_url,
        model: model.to_string(),
        api_key,
        schedule,
        timeout: timeout
            .and_then(|s| u64::try_from(s).ok())
            .map_or(DEFAULT_TIMEOUT, Duration::from_secs),
        paths: paths.over(profile.default_paths()),
        canary,
        signing_algo: signing_algo.unwrap_or(profile.default_signing_algo()),
    }))
}

/// Exactly one of `api_key_env`, `api_key_file`, `api_key_credential`; `Ok(None)` for none.
/// Values are never repeated in messages: a key pasted into the wrong field must not leak.
fn api_key(v: &mut Validator, t: &Table, path: &str, base: &Path) -> Read<ApiKeySource> {
    let at = |key: &str| format!("{path}.{key}");
    let present: Vec<&str> = API_KEY_KEYS
        .iter()
        .copied()
        .filter(|k| t.contains_key(*k))
        .collect();
    if present.len() > 1 {
        return Err(v.report(
            path,
            format!(
                "expected exactly one of {}, found {}",
                API_KEY_KEYS.join(", "),
                present.join(" and ")
            ),
        ));
    }
    let env_name = "an environment variable name (letters, digits and _, not starting with a digit; the value is not shown in case it is a key)";
    if let Some(name) = v.secret_safe_string(t, "api_key_env", &at("api_key_env"), env_name)? {
        if !is_env_name(name) {
            return Err(v.report(
                &at("api_key_env"),
                format!("expected {env_name}, found another string"),
            ));
        }
        return Ok(Some(ApiKeySource::Env(name.to_string())));
    }
    let file = "a path to a file holding only the key";
    if let Some(file) = v.secret_safe_string(t, "api_key_file", &at("api_key_file"), file)? {
        return Ok(Some(ApiKeySource::File(base.join(file))));
    }
    let credential = "a systemd credential name (one file name, as in LoadCredential=NAME:PATH; the value is not shown in case it is a key)";
    if let Some(name) = v.secret_safe_string(
        t,
        "api_key_credential",
        &at("api_key_credential"),
        credential,
    )? {
        if !is_credential_name(name) {
            return Err(v.report(
                &at("api_key_credential"),
                format!("expected {credential}, found another string"),
            ));
        }
        return Ok(Some(ApiKeySource::Credential(name.to_string())));
    }
    Ok(None)
}

/// `interval` or `cron` (not both); every 5 minutes when neither is given. Each is checked even
/// when both are written, so that one run reports everything.
fn schedule(v: &mut Validator, t: &Table, path: &str) -> Result<Schedule, Reported> {
    let at = |key: &str| format!("{path}.{key}");
    let interval = match t.get("interval") {
        None => Ok(None),
        Some(Value::String(s)) => parse_interval(s)
            .map(Some)
            .map_err(|m| v.report(&at("interval"), m)),
        Some(other) => Err(v.report(
            &at("interval"),
            format!(
                "expected a duration such as \"30s\", \"5m\" or \"1h30m\", found {}",
                describe(other)
            ),
        )),
    };
    let cron = match t.get("cron") {
        None => Ok(None),
        Some(Value::String(s)) => check_cron(s)
            .map(Some)
            .map_err(|m| v.report(&at("cron"), m)),
        Some(other) => Err(v.report(
            &at("cron"),
            format!(
                "expected a cron expression such as \"*/5 * * * *\", found {}",
                describe(other)
            ),
        )),
    };
    if t.contains_key("interval") && t.contains_key("cron") {
        return Err(v.report(path, "expected interval or cron, found both".into()));
    }
    Ok(match (interval?, cron?) {
        (Some(interval), _) => Schedule::Interval(interval),
        (None, Some(cron)) => Schedule::Cron(cron),
        (None, None) => Schedule::default(),
    })
}
