//! Label validation: every label value that does not come from teewatch's own code is checked
//! here before it reaches a metric.
//!
//! A label value is a series of its own, so a value taken verbatim from a provider (or from any
//! input teewatch does not control) could grow the scrape without bound or carry arbitrary text
//! into dashboards. Each function maps its input either to a value of a small, documented shape
//! or to a fixed fallback (`invalid`, `other`), never to the raw text. The rules are listed in
//! `docs/metrics.md`.

use std::borrow::Cow;

use sha2::{Digest, Sha256};

use crate::fetch::http::{Endpoint, ErrorKind};
use crate::verify::checks::{PIN_PREFIX, all_checks};
use crate::verify::policy::{KNOWN_TCB_STATUSES, pin_field};

/// The `value` exported for a measurement that is neither hex nor version-like.
pub const INVALID: &str = "invalid";

/// The label value for anything outside a fixed set.
pub const OTHER: &str = "other";

/// The longest hex measurement value exported: 48 bytes, the size of MRTD and the RTMRs.
pub const MAX_HEX_VALUE: usize = 96;

/// The longest version-like measurement value exported (GPU driver and VBIOS versions, joined
/// by commas when the GPUs of a node differ).
pub const MAX_TEXT_VALUE: usize = 64;

/// Every fetch-error endpoint of `src/fetch/http.rs`; anything else is exported as `other`.
pub const ENDPOINTS: [Endpoint; 9] = [
    Endpoint::Attestation,
    Endpoint::Chat,
    Endpoint::Signature,
    Endpoint::Pccs,
    Endpoint::RootCrl,
    Endpoint::Nras,
    Endpoint::Jwks,
    Endpoint::Rekor,
    Endpoint::GithubAttestations,
];

/// Every fetch-error kind of `src/fetch/http.rs`; anything else is exported as `other`.
pub const ERROR_KINDS: [ErrorKind; 7] = [
    ErrorKind::Connect,
    ErrorKind::Tls,
    ErrorKind::Timeout,
    ErrorKind::HttpStatus,
    ErrorKind::TooLarge,
    ErrorKind::InvalidJson,
    ErrorKind::NotStarted,
];

/// The `value` label of `teewatch_measurement_info`.
///
/// Hex (at most 96 digits, with or without `0x`, either case) is exported in lowercase without
/// the prefix, so the same measurement written two ways is one series. A version-like string
/// (`[0-9A-Za-z._,+-/:@]`, at most 64 characters: versions, file names, `action@time`) is
/// exported as it is. Anything else, including
/// the empty string, is exported as `invalid`.
pub fn measurement_value(raw: &str) -> Cow<'static, str> {
    let digits = raw
        .strip_prefix("0x")
        .or_else(|| raw.strip_prefix("0X"))
        .unwrap_or(raw);
    if is_hex(digits) && digits.len() <= MAX_HEX_VALUE {
        return Cow::Owned(digits.to_ascii_lowercase());
    }
    let version_like = raw.bytes().all(|b| {
        b.is_ascii_alphanumeric()
            || matches!(b, b'.' | b'_' | b',' | b'+' | b'-' | b'/' | b':' | b'@')
    });
    if !raw.is_empty() && raw.len() <= MAX_TEXT_VALUE && version_like {
        return Cow::Owned(raw.to_string());
    }
    Cow::Borrowed(INVALID)
}

/// What decides whether a measurement changed: its exported label, except that two different
/// invalid values must still count as a change although both are exported as `invalid`, so an
/// invalid value is compared by its SHA-256 (which also keeps arbitrary provider text out of
/// memory for longer than the call).
pub fn measurement_key(raw: &str) -> String {
    let label = measurement_value(raw);
    if label == INVALID {
        return format!("{INVALID}:{}", hex::encode(Sha256::digest(raw.as_bytes())));
    }
    label.into_owned()
}

/// The `fmspc` label: exactly 12 hex digits, exported in lowercase; `None` for anything else, in
/// which case the caller exports nothing.
pub fn fmspc(raw: &str) -> Option<String> {
    (raw.len() == 12 && is_hex(raw)).then(|| raw.to_ascii_lowercase())
}

/// The `status` label of `teewatch_tdx_tcb_status`: one of the TCB statuses dcap-qvl can
/// report, or `other`.
pub fn tcb_status(raw: &str) -> &'static str {
    KNOWN_TCB_STATUSES
        .iter()
        .copied()
        .find(|known| *known == raw)
        .unwrap_or(OTHER)
}

/// The `endpoint` label of `teewatch_fetch_errors_total`: a fixed endpoint name, or `other`.
pub fn endpoint(raw: &str) -> &'static str {
    ENDPOINTS
        .iter()
        .map(|e| e.as_str())
        .find(|name| *name == raw)
        .unwrap_or(OTHER)
}

/// The `kind` label of `teewatch_fetch_errors_total`: a fixed error kind, or `other`.
pub fn error_kind(raw: &str) -> &'static str {
    ERROR_KINDS
        .iter()
        .map(|k| k.as_str())
        .find(|name| *name == raw)
        .unwrap_or(OTHER)
}

/// The `check` label of `teewatch_check_state`: a fixed check name, `pin:<field>` for a field
/// a policy may pin, or `other`.
pub fn check_name(raw: &str) -> Cow<'static, str> {
    if let Some(name) = all_checks().find(|name| *name == raw) {
        return Cow::Borrowed(name);
    }
    match raw.strip_prefix(PIN_PREFIX) {
        Some(field) if pin_field(field).is_some() => Cow::Owned(raw.to_string()),
        _ => Cow::Borrowed(OTHER),
    }
}

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_values_are_normalised_and_bounded() {
        assert_eq!(measurement_value("0xABcd"), "abcd");
        assert_eq!(measurement_value("0XAB"), "ab");
        assert_eq!(measurement_value(&"a".repeat(96)), "a".repeat(96));
        assert_eq!(
            measurement_value(&format!("0x{}", "A".repeat(96))),
            "a".repeat(96)
        );
        assert_eq!(measurement_value(&"a".repeat(97)), INVALID);
        assert_eq!(measurement_value(&"f".repeat(200)), INVALID);
    }

    #[test]
    fn version_like_values_pass_and_anything_else_is_invalid() {
        assert_eq!(measurement_value("550.54.15,560.1"), "550.54.15,560.1");
        assert_eq!(measurement_value("96.00.9F.00.04"), "96.00.9F.00.04");
        assert_eq!(measurement_value("kms-v1+x_y"), "kms-v1+x_y");
        for bad in ["", "a\"b", "line\nbreak", "a b", "é", "{\"a\":1}"] {
            assert_eq!(measurement_value(bad), INVALID, "{bad:?}");
        }
        assert_eq!(measurement_value(&"v".repeat(65)), INVALID);
    }

    #[test]
    fn invalid_values_still_differ_by_key() {
        assert_ne!(measurement_key("a\"b"), measurement_key("a\"c"));
        assert_eq!(measurement_key("0xAB"), measurement_key("ab"));
    }

    #[test]
    fn fmspc_is_twelve_hex_digits() {
        assert_eq!(fmspc("B0C06F000000").as_deref(), Some("b0c06f000000"));
        for bad in [
            "B0C06F00000",
            "B0C06F0000000",
            "0xB0C06F0000",
            "B0C06F00000G",
            "",
        ] {
            assert_eq!(fmspc(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn fixed_sets_map_the_rest_to_other() {
        assert_eq!(tcb_status("UpToDate"), "UpToDate");
        assert_eq!(tcb_status("Revoked"), "Revoked");
        assert_eq!(tcb_status("uptodate"), OTHER);
        assert_eq!(endpoint("root_crl"), "root_crl");
        assert_eq!(endpoint("ROOT_CRL"), OTHER);
        assert_eq!(error_kind("too_large"), "too_large");
        assert_eq!(error_kind("dns"), OTHER);
        assert_eq!(check_name("tdx_quote_signature"), "tdx_quote_signature");
        assert_eq!(check_name("pin:mrtd"), "pin:mrtd");
        assert_eq!(check_name("pin:gpu_block_3"), "pin:gpu_block_3");
        assert_eq!(check_name("pin:nonsense"), OTHER);
        assert_eq!(check_name("made_up"), OTHER);
    }

    /// The matches are exhaustive on purpose: a new endpoint or error kind in
    /// `src/fetch/http.rs` stops this test from compiling, which is the reminder to add it to
    /// `ENDPOINTS` or `ERROR_KINDS` as well.
    #[test]
    fn every_endpoint_and_kind_is_listed() {
        for e in ENDPOINTS {
            match e {
                Endpoint::Attestation
                | Endpoint::Chat
                | Endpoint::Signature
                | Endpoint::Pccs
                | Endpoint::RootCrl
                | Endpoint::Nras
                | Endpoint::Jwks
                | Endpoint::Rekor
                | Endpoint::GithubAttestations => assert_eq!(endpoint(e.as_str()), e.as_str()),
            }
        }
        for k in ERROR_KINDS {
            match k {
                ErrorKind::Connect
                | ErrorKind::Tls
                | ErrorKind::Timeout
                | ErrorKind::HttpStatus
                | ErrorKind::TooLarge
                | ErrorKind::InvalidJson
                | ErrorKind::NotStarted => assert_eq!(error_kind(k.as_str()), k.as_str()),
            }
        }
    }
}
