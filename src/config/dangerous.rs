//! `[dangerous]`: test trust roots, for simulated targets on loopback only.
//!
//! Each option replaces a pinned production anchor with one from a file. They exist so that the
//! simulator's evidence can be verified with real cryptography; they are refused unless every
//! target talks to a loopback address, and every verdict made under them names them.

use std::path::Path;

use toml::{Table, Value};

use super::{Validator, is_loopback_url};
use crate::verify::policy::pem_to_der;

/// The options this version understands.
pub const DANGEROUS_KEYS: [&str; 6] = [
    "dangerous_intel_root_ca",
    "dangerous_nvidia_device_root",
    "dangerous_nras_intermediates",
    "dangerous_tls_root",
    "dangerous_sigstore_fulcio_root",
    "dangerous_rekor_key",
];

/// The Sigstore test roots, read as PEM text (a Fulcio chain, a Rekor public key): the
/// verifier parses them, and both must be set for either to take effect.
const SIGSTORE_KEYS: [&str; 2] = ["dangerous_sigstore_fulcio_root", "dangerous_rekor_key"];

/// The test roots a configuration puts in force, as DER.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DangerousRoots {
    pub intel_root_der: Option<Vec<u8>>,
    pub nvidia_device_root_der: Option<Vec<u8>>,
    pub nras_intermediates_der: Option<Vec<Vec<u8>>>,
    /// A TLS root the HTTP client trusts beside the web PKI, for an HTTPS simulator on
    /// loopback. It is read when the daemon starts (a reload does not change it).
    pub tls_root_der: Option<Vec<u8>>,
    /// Sigstore test roots as PEM: the Fulcio CA chain and the Rekor public key.
    pub sigstore_fulcio_pem: Option<String>,
    pub rekor_key_pem: Option<String>,
    /// The names of the options set, for every verdict's `trust`.
    pub names: Vec<String>,
}

/// Reads `[dangerous]`, reporting unknown keys and unreadable files.
pub(super) fn read(v: &mut Validator, root: &Table, base: &Path) -> DangerousRoots {
    let mut roots = DangerousRoots::default();
    let Some(table) = v.table(root, "dangerous", "dangerous") else {
        return roots;
    };
    for (key, value) in table {
        let path = format!("dangerous.{key}");
        if !key.starts_with("dangerous_") {
            v.issue(
                &path,
                "options in [dangerous] must be named dangerous_*".to_string(),
            );
            continue;
        }
        if SIGSTORE_KEYS.contains(&key.as_str()) {
            let Value::String(file) = value else {
                v.issue(
                    &path,
                    format!("expected a pem file path, found {}", value.type_str()),
                );
                continue;
            };
            let Some(pem) = read_pem(v, base, file, &path) else {
                continue;
            };
            if key == "dangerous_rekor_key" {
                roots.rekor_key_pem = Some(pem);
            } else {
                roots.sigstore_fulcio_pem = Some(pem);
            }
            roots.names.push(key.clone());
            continue;
        }
        let paths: Vec<String> = match (key.as_str(), value) {
            ("dangerous_nras_intermediates", Value::Array(_)) => {
                v.string_list(table, key, &path).unwrap_or_default()
            }
            (k, Value::String(p))
                if DANGEROUS_KEYS.contains(&k) && k != "dangerous_nras_intermediates" =>
            {
                vec![p.clone()]
            }
            (k, other) if DANGEROUS_KEYS.contains(&k) => {
                v.issue(
                    &path,
                    format!(
                        "expected {}, found {}",
                        if k == "dangerous_nras_intermediates" {
                            "a list of certificate file paths"
                        } else {
                            "a certificate file path"
                        },
                        other.type_str()
                    ),
                );
                continue;
            }
            _ => {
                v.issue(
                    &path,
                    format!(
                        "unknown dangerous option; expected one of {}",
                        DANGEROUS_KEYS.join(", ")
                    ),
                );
                continue;
            }
        };
        let certificates = v.read_certificates(&paths, base, &path);
        if certificates.len() != paths.len() {
            continue;
        }
        match key.as_str() {
            "dangerous_intel_root_ca" => roots.intel_root_der = certificates.into_iter().next(),
            "dangerous_nvidia_device_root" => {
                roots.nvidia_device_root_der = certificates.into_iter().next()
            }
            "dangerous_tls_root" => roots.tls_root_der = certificates.into_iter().next(),
            _ => roots.nras_intermediates_der = Some(certificates),
        }
        roots.names.push(key.clone());
    }
    if roots.sigstore_fulcio_pem.is_some() != roots.rekor_key_pem.is_some() {
        v.issue(
            "dangerous",
            "expected both dangerous_sigstore_fulcio_root and dangerous_rekor_key (a test fulcio needs its test rekor), found one".into(),
        );
    }
    // Verdicts list the options in one documented order, whatever order the file uses.
    roots
        .names
        .sort_by_key(|n| DANGEROUS_KEYS.iter().position(|k| k == n));
    roots
}

/// A PEM file's text, reporting an unreadable or non-PEM file at `path`.
fn read_pem(v: &mut Validator, base: &Path, file: &str, path: &str) -> Option<String> {
    let full = base.join(file);
    match std::fs::read_to_string(&full) {
        Ok(text) if text.contains("-----BEGIN ") => Some(text),
        Ok(_) => {
            v.issue(
                path,
                format!(
                    "expected a pem file, found no pem block in {}",
                    full.display()
                ),
            );
            None
        }
        Err(e) => {
            v.issue(path, format!("cannot read {}: {e}", full.display()));
            None
        }
    }
}

/// Test roots are for loopback targets only: every target must name a loopback `base_url`.
pub(super) fn require_loopback(
    v: &mut Validator,
    roots: &DangerousRoots,
    targets: &[(String, Option<String>)],
) {
    if roots.names.is_empty() {
        return;
    }
    for (index, (name, base_url)) in targets.iter().enumerate() {
        let loopback = base_url.as_deref().is_some_and(is_loopback_url);
        if !loopback {
            v.issue(
                &format!("target[{index}].base_url"),
                format!(
                    "[dangerous] test roots ({}) are refused for target \"{name}\": expected an http:// or https:// loopback base_url, found {}",
                    roots.names.join(", "),
                    base_url.as_deref().map(|u| format!("\"{u}\"")).unwrap_or_else(|| "none".into())
                ),
            );
        }
    }
}

/// Reads a PEM or DER certificate file's DER (shared with `[nvidia] nras_anchors`).
pub(super) fn certificate_der(bytes: Vec<u8>) -> Vec<u8> {
    std::str::from_utf8(&bytes)
        .ok()
        .and_then(pem_to_der)
        .unwrap_or(bytes)
}
