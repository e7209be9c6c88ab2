//! `[daemon] web_config`: TLS and basic authentication for the daemon's listener, configured in
//! the web configuration file of Prometheus exporters (the exporter-toolkit format), so that an
//! operator who runs node_exporter writes the same file for teewatch:
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt        # relative to this file
//!   key_file: server.key
//!   client_auth_type: RequireAndVerifyClientCert
//!   client_ca_file: ca.crt
//! basic_auth_users:
//!   prometheus: $2y$10$...       # bcrypt
//! ```
//!
//! The file is read with the rest of the configuration, so `teewatch config check` and a SIGHUP
//! reload validate it, and every problem in it is reported at once with the others. The files
//! `tls_server_config` names are read, and the rustls server configuration built, at load too
//! (`web_tls.rs`): a certificate that does not match its key is a configuration error, not a
//! failed handshake later.
//!
//! A file named `$CREDENTIALS_DIRECTORY/NAME` is a systemd credential (`LoadCredential=`), read
//! from the folder systemd gives the unit. Outside such a unit it cannot be read: everything else
//! is still checked, and the listener is refused at start (see [`WebTls::server_config`]).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde_norway::{Mapping, Value};

use super::CREDENTIALS_DIRECTORY;
use super::validator::Validator;
use super::web_tls::{self, WebTls};

/// The top-level keys teewatch reads.
pub const WEB_KEYS: [&str; 2] = ["tls_server_config", "basic_auth_users"];
/// exporter-toolkit keys teewatch does not implement, with what to do instead. They are errors
/// like unknown keys (a setting that would silently not apply is worse than a refusal), but
/// the message says why.
const UNSUPPORTED_WEB_KEYS: [(&str, &str); 2] = [
    (
        "http_server_config",
        "teewatch serves HTTP/1.1 with its own headers; remove it",
    ),
    (
        "rate_limit",
        "teewatch does not rate-limit requests; remove it",
    ),
];
/// The prefix of a file read from the systemd credentials folder.
pub const CREDENTIAL_PREFIX: &str = "$CREDENTIALS_DIRECTORY/";

/// A validated web configuration file.
#[derive(Clone, PartialEq, Eq)]
pub struct WebConfig {
    /// The file, as resolved against the configuration's folder.
    pub file: PathBuf,
    /// `tls_server_config`, when the listener speaks TLS.
    pub tls: Option<WebTls>,
    /// `basic_auth_users`: user name → bcrypt hash. Empty when the file has none (no
    /// authentication); never empty when the key is present.
    pub basic_auth_users: BTreeMap<String, String>,
}

impl fmt::Debug for WebConfig {
    // The user names, never their hashes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebConfig")
            .field("file", &self.file)
            .field("tls", &self.tls)
            .field(
                "basic_auth_users",
                &self.basic_auth_users.keys().collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Reads and validates the web configuration `file`; `at` is the configuration key naming it.
/// Every problem is recorded in `v`; `None` when the file cannot be read or parsed at all.
pub(super) fn read(v: &mut Validator, file: &Path, at: &str) -> Option<WebConfig> {
    let credentials = std::env::var_os(CREDENTIALS_DIRECTORY)
        .filter(|d| !d.is_empty())
        .map(PathBuf::from);
    read_in(v, file, at, credentials.as_deref())
}

/// [`read`] with the systemd credentials folder given (`None`: outside a unit with
/// credentials).
pub(super) fn read_in(
    v: &mut Validator,
    file: &Path,
    at: &str,
    credentials: Option<&Path>,
) -> Option<WebConfig> {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) => {
            v.issue(at, format!("cannot read {}: {e}", file.display()));
            return None;
        }
    };
    let root = match serde_norway::from_str::<Value>(&text) {
        Ok(value) => value,
        Err(e) => {
            v.issue(
                at,
                format!(
                    "{} is not valid YAML: {}",
                    file.display(),
                    e.to_string().trim().replace('\n', " ")
                ),
            );
            return None;
        }
    };
    let empty = Mapping::new();
    let map = match &root {
        // An empty file: neither TLS nor authentication, as in exporter-toolkit.
        Value::Null => &empty,
        Value::Mapping(m) => m,
        other => {
            v.issue(
                at,
                format!(
                    "{}: expected a mapping with tls_server_config and/or basic_auth_users, found {}",
                    file.display(),
                    kind(other)
                ),
            );
            return None;
        }
    };
    let base = file.parent().unwrap_or(Path::new("."));
    known_keys(v, map, at, &WEB_KEYS, &UNSUPPORTED_WEB_KEYS);
    let tls = map.get("tls_server_config").and_then(|value| {
        web_tls::read(
            v,
            value,
            &format!("{at}.tls_server_config"),
            base,
            credentials,
        )
    });
    let basic_auth_users = map
        .get("basic_auth_users")
        .map(|value| users(v, value, &format!("{at}.basic_auth_users")))
        .unwrap_or_default();
    Some(WebConfig {
        file: file.to_path_buf(),
        tls,
        basic_auth_users,
    })
}

/// Reports keys outside `known`, those exporter-toolkit knows but teewatch does not implement
/// with the advice for each, and keys that are not strings.
pub(super) fn known_keys(
    v: &mut Validator,
    map: &Mapping,
    at: &str,
    known: &[&str],
    unsupported: &[(&str, &str)],
) {
    for key in map.keys() {
        let Some(name) = key.as_str() else {
            v.issue(at, format!("expected string keys, found {}", kind(key)));
            continue;
        };
        if known.contains(&name) {
            continue;
        }
        let path = format!("{at}.{name}");
        match unsupported.iter().find(|(k, _)| *k == name) {
            Some((_, advice)) => v.issue(
                &path,
                format!("an exporter-toolkit setting teewatch does not support: {advice}"),
            ),
            None => v.issue(
                &path,
                format!("unknown key; expected one of {}", known.join(", ")),
            ),
        }
    }
}

/// A short name for the kind of a YAML value.
pub(super) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// An optional non-empty string setting.
pub(super) fn string<'m>(
    v: &mut Validator,
    map: &'m Mapping,
    key: &str,
    at: &str,
) -> Option<&'m str> {
    match map.get(key)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.as_str()),
        Value::String(_) => {
            v.issue(&format!("{at}.{key}"), "expected a non-empty string".into());
            None
        }
        other => {
            v.issue(
                &format!("{at}.{key}"),
                format!("expected a string, found {}", kind(other)),
            );
            None
        }
    }
}

/// `basic_auth_users`: user name → bcrypt hash. Hashes are never repeated in messages.
fn users(v: &mut Validator, value: &Value, at: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let map = match value {
        Value::Mapping(m) if !m.is_empty() => m,
        // An empty list would silently leave every endpoint open.
        Value::Mapping(_) | Value::Null => {
            v.issue(
                at,
                "expected at least one user (name: bcrypt hash); remove the key to serve without authentication".into(),
            );
            return out;
        }
        other => {
            v.issue(
                at,
                format!(
                    "expected a mapping of user names to bcrypt hashes, found {}",
                    kind(other)
                ),
            );
            return out;
        }
    };
    for (key, hash) in map {
        let user = match key {
            Value::String(s) if !s.is_empty() && !s.contains(':') => s.clone(),
            Value::String(s) => {
                v.issue(
                    &format!("{at}.{s}"),
                    "a user name must be non-empty and hold no ':' (HTTP basic authentication splits on it)".into(),
                );
                continue;
            }
            other => {
                v.issue(
                    at,
                    format!("expected user names as strings, found {}", kind(other)),
                );
                continue;
            }
        };
        let path = format!("{at}.{user}");
        let valid = match hash {
            Value::String(h) => h
                .parse::<bcrypt::HashParts>()
                .is_ok_and(|p| (4..=31).contains(&p.get_cost()))
                .then(|| h.clone()),
            _ => None,
        };
        match valid {
            Some(h) => {
                out.insert(user, h);
            }
            None => v.issue(
                &path,
                "expected a bcrypt hash ($2a$, $2b$ or $2y$, cost 4 to 31, 60 characters), such as the output of `htpasswd -nBC 10 \"\" | tr -d ':\\n'`".into(),
            ),
        }
    }
    out
}
