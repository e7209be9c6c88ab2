//! Putting a `teewatch-bundle/1` together: from what a fetched check gathered, and for checks in
//! which nothing arrived (cancelled at their deadline, or unable to start), so every check is
//! recorded as a bundle the verifier can judge.

use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use rand::RngCore;
use serde_json::{Value, json};

use super::http::{Endpoint, ErrorKind, FetchError};
use crate::config::{Config, TargetConfig};
use crate::verify::hexutil;

/// What one check gathered, before it becomes a bundle.
pub(super) struct BundleParts<'a> {
    pub(super) observed_at: chrono::DateTime<Utc>,
    pub(super) nonce_hex: String,
    pub(super) attestation: Value,
    pub(super) errors: &'a [FetchError],
    pub(super) collateral: Value,
    pub(super) nras: Value,
    pub(super) canary: Value,
    pub(super) tls_peer_spki: Value,
    /// The Rekor answers (`image_provenance`); `None` leaves the field out, as for a target
    /// without `[target.provenance]`, so such bundles stay as they were.
    pub(super) rekor: Option<Vec<crate::verify::image_provenance::RekorLookup>>,
}

/// The one place a `teewatch-bundle/1` is put together, for fetched checks and for checks that
/// ran out of time alike.
pub(super) fn assemble(config: &Config, target: &TargetConfig, parts: BundleParts<'_>) -> Value {
    let mut bundle = json!({
        "format": crate::verify::bundle::BUNDLE_FORMAT,
        "target": target.name,
        "observed_at": parts.observed_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        "nonce": parts.nonce_hex,
        "endpoints": {
            "provider": target.base_url(),
            "nras": config.nvidia.nras_url,
            "pccs": config.intel.pccs_url,
        },
        "attestation": parts.attestation,
        "fetch_errors": parts.errors.iter().map(FetchError::bundle_entry).collect::<Vec<_>>(),
        "tdx_collateral": parts.collateral,
        "nras": parts.nras,
        "canary": parts.canary,
        "tls_peer_spki": parts.tls_peer_spki,
        // Whether the connection's TLS key can say anything about the TD (see verify/tls.rs).
        "transport": target.monitor.as_ref().map(|m| {
            if m.profile.connects_directly() {
                crate::verify::bundle::Transport::Direct
            } else {
                crate::verify::bundle::Transport::Proxied
            }
        }),
        "policy": target.policy.snapshot(),
    });
    if let (Some(rekor), Some(fields)) = (parts.rekor, bundle.as_object_mut()) {
        fields.insert("rekor".into(), json!(rekor));
    }
    bundle
}

/// A fresh random 32-byte nonce as lowercase hex.
pub(super) fn fresh_nonce_hex() -> String {
    let mut nonce = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut nonce);
    hexutil::lower(&nonce)
}

/// The bundle of a check cancelled at its deadline: nothing arrived in time, which the verifier
/// turns into `unknown` (unverifiable), never `fail`.
pub fn timed_out_bundle(config: &Config, target: &TargetConfig, deadline: Duration) -> Value {
    let error = FetchError::new(
        Endpoint::Attestation,
        ErrorKind::Timeout,
        format!(
            "the check did not finish within its deadline of {} s",
            deadline.as_secs()
        ),
    );
    nothing_arrived(config, target, error)
}

/// The bundle of a check that could not start (its API key could not be read): nothing was
/// requested, which the verifier turns into `unknown` quoting `reason` on every check, never
/// `fail`. `reason` must not contain a credential (no [`CheckError`] does).
pub fn not_started_bundle(config: &Config, target: &TargetConfig, reason: &str) -> Value {
    let error = FetchError::new(Endpoint::Attestation, ErrorKind::NotStarted, reason);
    nothing_arrived(config, target, error)
}

/// A bundle in which nothing arrived, `error` saying why.
fn nothing_arrived(config: &Config, target: &TargetConfig, error: FetchError) -> Value {
    assemble(
        config,
        target,
        BundleParts {
            observed_at: Utc::now(),
            nonce_hex: fresh_nonce_hex(),
            attestation: Value::Null,
            errors: std::slice::from_ref(&error),
            collateral: Value::Null,
            nras: Value::Null,
            canary: Value::Null,
            tls_peer_spki: Value::Null,
            rekor: None,
        },
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::verify::{self, Bundle, State};

    #[test]
    fn a_timed_out_check_is_a_bundle_whose_verdict_is_unknown_naming_the_deadline() {
        let config = Config::parse(
            "[[target]]\nname = \"t\"\nprofile = \"nanogpt\"\nmodel = \"TEE/m\"\n\
             api_key_env = \"TEEWATCH_TEST_KEY\"\n",
            "test.toml",
        )
        .unwrap();
        let target = config.target("t").unwrap();
        let json = timed_out_bundle(&config, target, Duration::from_secs(180));
        assert_eq!(json["fetch_errors"][0]["kind"], "timeout");
        let bundle = Bundle::from_value(json).unwrap();
        let verdict = verify::verify(&bundle, &target.policy, &config.trust_anchors());
        assert_eq!(verdict.state, State::Unknown);
        assert!(
            verdict
                .checks
                .iter()
                .all(|c| c.state == State::Unknown && c.reason.contains("deadline of 180 s")),
            "{:#?}",
            verdict.checks
        );
    }
}
