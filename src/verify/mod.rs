//! The pure verifier: `(bundle, policy, trust anchors) -> Verdict`, judged at the bundle's
//! `observed_at`.
//!
//! Nothing in this module does I/O, reads a clock or keeps global state: the instant every
//! validity window is judged at is the bundle's `observed_at`, so the same bundle always yields
//! the same verdict. Verification reads as numbered steps; each step records one named check.

pub mod binding;
pub mod bundle;
pub mod canary;
pub mod checks;
pub mod dcap;
pub mod dstack;
pub mod gpu;
pub mod hexutil;
pub mod node;
pub mod pins;
pub mod policy;
pub mod report;
pub mod tdx;
pub mod verdict;

pub use bundle::{Bundle, BundleError};
pub use policy::{Policy, TrustAnchors};
pub use verdict::{AttestationFormat, Check, Observed, Outcome, Source, State, Verdict};

use checks::*;
use verdict::{Recorder, VERDICT_FORMAT};

/// Verifies a bundle against a policy and trust anchors.
pub fn verify(bundle: &Bundle, policy: &Policy, anchors: &TrustAnchors) -> Verdict {
    let mut rec = Recorder::default();
    let nonce = bundle.nonce_bytes();
    let format = bundle
        .attestation
        .as_ref()
        .map(report::detect_format)
        .unwrap_or(AttestationFormat::Unknown);

    match &bundle.attestation {
        // 1. No response: nothing can be decided, and every check says why.
        None => {
            let reason = fetch_failure_reason(bundle);
            for name in NODE_CHECKS.into_iter().chain(GPU_CHECKS) {
                rec.check(name, "", Outcome::Unknown(reason.clone()));
            }
            for field in policy.pins.keys() {
                rec.check(&pin_check_name(field), "", Outcome::Unknown(reason.clone()));
            }
            for name in CANARY_CHECKS {
                rec.check(name, "", Outcome::Unknown(reason.clone()));
            }
            rec.check(IDENTITY_PINNED, "", Outcome::Unknown(reason));
        }
        Some(attestation) => {
            // 2. Each attested node: quote, TCB, attributes, binding, event log, compose.
            let nodes = if format == AttestationFormat::Dstack {
                report::nodes(attestation)
            } else {
                Vec::new()
            };
            if nodes.is_empty() {
                unsupported_format(format, &mut rec);
            }
            let ctx = node::NodeContext {
                bundle,
                nonce: &nonce,
                collateral: bundle.tdx_collateral.as_ref(),
                policy,
                anchors,
                now: bundle.observed_at.timestamp(),
            };
            for node in &nodes {
                node::verify_node(node, &ctx, &mut rec);
            }

            // 3. Pins, per node scope, judged only on proven values.
            let scopes: Vec<String> = if nodes.is_empty() {
                vec![String::new()]
            } else {
                nodes.iter().map(|n| n.scope.clone()).collect()
            };
            for field in policy.pins.keys() {
                for scope in &scopes {
                    let outcome = if nodes.is_empty() {
                        Outcome::Unknown(format!("{TDX_QUOTE_PARSE} failed"))
                    } else {
                        pins::judge_pin(field, scope, policy, &rec.checks, &rec.observed)
                    };
                    rec.check(&pin_check_name(field), scope, outcome);
                }
            }

            // 4. The signed canary chats, against the nodes whose binding passed.
            judge_canaries(bundle, &nonce, &mut rec);

            // 5. Whether the pins say which software runs, not only that the hardware is genuine.
            rec.check(IDENTITY_PINNED, "", pins::identity_pinned(policy));
        }
    }

    let Recorder { checks, observed } = rec;
    Verdict {
        format: VERDICT_FORMAT.to_string(),
        target: bundle.target.clone(),
        observed_at: bundle.observed_at_text(),
        attestation_format: format,
        state: Verdict::overall(&checks),
        checks,
        observed,
        trust: anchors.dangerous.clone(),
    }
}

/// The canary checks for every exchange (scope `canary:<i>`), or `unknown` when there is none.
fn judge_canaries(bundle: &Bundle, nonce: &[u8; 32], rec: &mut Recorder) {
    let exchanges = bundle.canary.as_deref().unwrap_or_default();
    if exchanges.is_empty() {
        for name in CANARY_CHECKS {
            rec.check(
                name,
                "",
                Outcome::Unknown("no canary chat in the bundle".into()),
            );
        }
        return;
    }
    let nodes: Vec<canary::NodeKey> = rec
        .observed
        .iter()
        .filter(|o| o.field == "signing_address")
        .map(|o| canary::NodeKey {
            scope: o.scope.clone(),
            address: o.value.clone(),
            bound: o.source == Source::Quote,
        })
        .collect();
    for (index, exchange) in exchanges.iter().enumerate() {
        let scope = format!("canary:{index}");
        let mut outcomes = canary::judge(exchange, nonce, &nodes);
        // Without any node whose report was read, there is no attested key to compare with: the
        // input is missing because an earlier step failed, so the signature cannot be judged.
        if nodes.is_empty() && outcomes.signature.state() == State::Fail {
            outcomes.signature = Outcome::Unknown(format!(
                "no signing address was read from an attested report ({TDX_QUOTE_PARSE} did not pass)"
            ));
        }
        rec.check(CANARY_FRESH, &scope, outcomes.fresh);
        rec.check(CANARY_HASHES, &scope, outcomes.hashes);
        rec.check(CANARY_SIGNATURE, &scope, outcomes.signature);
    }
}

/// `pin:<field>`.
pub fn pin_check_name(field: &str) -> String {
    format!("{PIN_PREFIX}{field}")
}

/// Why there is no attestation to judge, from the bundle's fetch errors.
fn fetch_failure_reason(bundle: &Bundle) -> String {
    let errors: Vec<String> = bundle
        .fetch_errors
        .iter()
        .filter(|e| e.endpoint == "attestation")
        .map(|e| format!("{}: {}", e.kind, e.message))
        .collect();
    if errors.is_empty() {
        "attestation not fetched".to_string()
    } else {
        format!("attestation not fetched ({})", errors.join("; "))
    }
}

/// A response this version cannot read as a dstack report: the quote checks cannot start.
fn unsupported_format(format: AttestationFormat, rec: &mut Recorder) {
    let reason = match format {
        AttestationFormat::Dstack => "the dstack report lists no node".to_string(),
        AttestationFormat::Unknown => {
            "the response is not a recognised attestation format".to_string()
        }
        other => format!(
            "attestation format {} is not supported by this version of teewatch",
            other.as_str()
        ),
    };
    rec.check(TDX_QUOTE_PARSE, "", Outcome::Fail(reason));
    for name in NODE_CHECKS.iter().skip(1) {
        if *name != SIGNING_KEY_ADDRESS {
            rec.check(
                name,
                "",
                Outcome::Unknown(format!("{TDX_QUOTE_PARSE} failed")),
            );
        }
    }
}
