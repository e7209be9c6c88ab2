//! The walker every section shares: it reads values out of the raw TOML table and records each
//! problem with its path, what was expected and what was found, so that one run reports them all.
//!
//! Readers return `Ok(None)` for an absent key, `Ok(Some(value))` for a valid one and
//! `Err(Reported)` for a value already reported, so that callers neither report a wrong value a
//! second time as "missing" nor substitute a default for it silently.

use std::ops::RangeInclusive;
use std::path::Path;

use toml::{Table, Value};

use super::{ConfigIssue, dangerous, describe, is_loopback_http};
use crate::verify::policy::KNOWN_TCB_STATUSES;

/// A problem already recorded in the validator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Reported;

/// A read value: absent, valid, or wrong (and already reported).
pub(super) type Read<T> = Result<Option<T>, Reported>;

/// The advice given for an API key written into the file.
const INLINE_KEY_ADVICE: &str = "an api key must not be written into the configuration; name where to read it instead: api_key_env = \"NANOGPT_API_KEY\" (an environment variable), api_key_file = \"/etc/teewatch/nanogpt.key\" (a file holding only the key) or api_key_credential = \"nanogpt\" (a systemd LoadCredential= name)";

/// Which kind of URL a key holds: base URLs get paths appended, so they take no query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum UrlKind {
    Base,
    Document,
}

/// Collects issues while walking the raw table.
#[derive(Default)]
pub(super) struct Validator {
    pub(super) issues: Vec<ConfigIssue>,
}

impl Validator {
    pub(super) fn issue(&mut self, path: &str, message: String) {
        self.issues.push(ConfigIssue {
            path: path.to_string(),
            message,
        });
    }

    /// Records an issue and returns the marker for it.
    pub(super) fn report(&mut self, path: &str, message: String) -> Reported {
        self.issue(path, message);
        Reported
    }

    /// Reports every key outside `known`, and an inline `api_key` with advice.
    pub(super) fn known_keys(&mut self, section: &str, table: &Table, known: &[&str]) {
        for key in table.keys() {
            let path = if section.is_empty() {
                key.clone()
            } else {
                format!("{section}.{key}")
            };
            if key == "api_key" {
                self.issue(&path, INLINE_KEY_ADVICE.into());
            } else if !known.contains(&key.as_str()) {
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

    /// A string; `what` names the expected content, such as "a model name".
    pub(super) fn string<'t>(
        &mut self,
        t: &'t Table,
        key: &str,
        path: &str,
        what: &str,
    ) -> Read<&'t str> {
        match t.get(key) {
            None => Ok(None),
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.as_str())),
            Some(other) => Err(self.report(
                path,
                format!(
                    "expected {what} (a non-empty string), found {}",
                    describe(other)
                ),
            )),
        }
    }

    /// A string whose value is never repeated in a message (it may be a key pasted by mistake).
    pub(super) fn secret_safe_string<'t>(
        &mut self,
        t: &'t Table,
        key: &str,
        path: &str,
        what: &str,
    ) -> Read<&'t str> {
        match t.get(key) {
            None => Ok(None),
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.as_str())),
            Some(Value::String(_)) => {
                Err(self.report(path, format!("expected {what}, found an empty string")))
            }
            Some(other) => Err(self.report(
                path,
                format!("expected {what} (a string), found {}", other.type_str()),
            )),
        }
    }

    /// An integer within `range`.
    pub(super) fn integer(
        &mut self,
        t: &Table,
        key: &str,
        path: &str,
        range: RangeInclusive<i64>,
    ) -> Read<i64> {
        let expected = format!(
            "expected an integer from {} to {}",
            range.start(),
            range.end()
        );
        match t.get(key) {
            None => Ok(None),
            Some(Value::Integer(n)) if range.contains(n) => Ok(Some(*n)),
            Some(Value::Integer(n)) => Err(self.report(path, format!("{expected}, found {n}"))),
            Some(other) => Err(self.report(path, format!("{expected}, found {}", describe(other)))),
        }
    }

    pub(super) fn boolean(&mut self, t: &Table, key: &str, path: &str) -> Read<bool> {
        match t.get(key) {
            None => Ok(None),
            Some(Value::Boolean(b)) => Ok(Some(*b)),
            Some(other) => Err(self.report(
                path,
                format!("expected true or false, found {}", describe(other)),
            )),
        }
    }

    /// A service URL: `https://` with a host, or `http://` to a loopback address. Base URLs lose
    /// a trailing `/` and may carry no query or fragment.
    pub(super) fn url(&mut self, t: &Table, key: &str, path: &str, kind: UrlKind) -> Read<String> {
        let expected = match kind {
            UrlKind::Base => "expected an https:// base url (http only for loopback)",
            UrlKind::Document => "expected an https:// url (http only for loopback)",
        };
        match t.get(key) {
            None => Ok(None),
            Some(Value::String(url)) if url_is_acceptable(url, kind) => Ok(Some(match kind {
                UrlKind::Base => url.trim_end_matches('/').to_string(),
                UrlKind::Document => url.clone(),
            })),
            Some(other) => Err(self.report(path, format!("{expected}, found {}", describe(other)))),
        }
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

    pub(super) fn tcb_statuses(&mut self, statuses: &[String], path: &str) {
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
}

/// `https://` with a non-empty host and no user information, or loopback `http://`; no
/// whitespace; a base URL has no query or fragment.
fn url_is_acceptable(url: &str, kind: UrlKind) -> bool {
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    if kind == UrlKind::Base && url.contains(['?', '#']) {
        return false;
    }
    if is_loopback_http(url) {
        return true;
    }
    url.strip_prefix("https://").is_some_and(|rest| {
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        // No user:password@ part: credentials do not belong in the file.
        !authority.is_empty() && !authority.starts_with(':') && !authority.contains('@')
    })
}
