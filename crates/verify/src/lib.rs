//! The pure verifier: `(bundle, policy, trust anchors) -> Verdict`, judged at the bundle's
//! `observed_at`.
//!
//! Nothing in this crate does I/O, reads a clock or keeps global state: the instant every
//! validity window is judged at is the bundle's `observed_at`, so the same bundle always yields
//! the same verdict. Verification reads as numbered steps; each step records one named check.
//!
//! The crate boundary enforces it: no async runtime, HTTP, SQL or server crate is among its
//! dependencies (chrono comes without its clock), and its `clippy.toml` bans the standard
//! library's file system, network, clock, environment and process calls. The trust anchors it
//! compiles in are in `anchors/`. teewatch re-exports it as `teewatch::verify`.

pub mod binding;
pub mod bundle;
pub mod canary;
pub mod checks;
pub mod collateral;
pub mod compose_manager;
pub mod dcap;
pub mod dstack;
pub mod gpu;
pub mod hexutil;
pub mod image_provenance;
pub mod images;
pub mod known;
pub mod ohttp;
pub mod part;
pub mod pins;
pub mod policy;
pub mod provenance;
pub mod report;
pub mod tdx;
pub mod tls;
pub mod verdict;

pub use bundle::{Bundle, BundleError};
pub use policy::{Policy, TrustAnchors};
pub use verdict::{AttestationFormat, Check, Observed, Outcome, Source, State, Verdict};

use checks::*;
use verdict::{Recorder, VERDICT_FORMAT};

/// Verifies a bundle against a policy and trust anchors.
///
/// One list of steps, in the order the checks are reported. Each step records the named check
/// (per part, with the part's scope, where it says "each part"); the file in parentheses judges it.
/// A check whose input is missing because an earlier step failed is `unknown` naming that step.
///
/// 1. No response in the bundle: every check `unknown`, with the fetch error as the reason
///    (`lib.rs`).
/// 2. `attestation_format`: which format the response is, and the attested parts it lists
///    (`report.rs` reads, `lib.rs` judges).
/// 3. Each part (a dstack node, the NEAR gateway, a model attestation, a compose manager)
///    (`part.rs`):
///    1. `tdx_quote_parse`: the quote's header, body and signature data (`tdx.rs`);
///    2. `tdx_quote_signature`: every signature, chain and CRL, by dcap-qvl with collateral valid
///       at `observed_at` (`dcap.rs`);
///    3. `tdx_tcb_status`: the TCB level dcap-qvl evaluates, against the policy (`part.rs`);
///    4. `tdx_debug_disabled` and 5. `tdx_td_attributes`, read from the body (`part.rs`);
///    6. `report_data_binding`: REPORTDATA binds the signing key (and TLS fingerprint) and this
///       check's nonce (`binding.rs`); for a compose manager, its action log and the nonce
///       (`compose_manager.rs`);
///    7. `signing_key_address`: the public key, when given, is the signing address's
///       (`binding.rs`); for a compose manager, `same_td`: the TD of the part it runs in
///       (`compose_manager.rs`);
///    8. `event_log_replay`: the event log replays to the quote's RTMRs, and the OS-written
///       identity it yields (`dstack.rs`, `part.rs`);
///    9. `compose_binding`: the app compose is the one the TD measured (`part.rs`);
///    10. the GPU evidence the format promises is present (`gpu/part.rs`);
///    11. per GPU, `gpu_nonce` and `gpu_evidence_signature` up to the pinned NVIDIA root
///        (`gpu/spdm`, `gpu/certs`);
///    12. `nras_token` for the part and `nras_result` per GPU (`gpu/nras`).
/// 4. `gpu_unique`: no GPU is shown for two parts (`gpu/unique.rs`).
/// 5. `ohttp_key_binding`, per part that carries one: the OHTTP key was signed by the part's
///    attested key (`ohttp.rs`).
/// 6. `tls_key_binding`: the connection the report came over ended in an attested part
///    (`tls.rs`).
/// 7. `pin:<field>`: every pin, per part it applies to, judged on proven values only
///    (`pins.rs`).
///    Then `image_provenance`, only for a target with `[target.provenance]`: per image of
///    every compose bound to its quote, a Rekor entry with an allowed identity
///    (`image_provenance.rs`, step 7b).
/// 8. `canary_fresh`, `canary_hashes`, `canary_signature` per canary chat, against the keys of
///    the parts that run the model and whose binding passed (`canary/`); for a check that ran
///    no chat and says why (`canary_not_run`), once each, not run (`canary/cadence.rs`).
/// 9. `identity_pinned`: whether the pins say which software runs, not only that the hardware is
///    genuine (`pins.rs`).
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
            rec.check(ATTESTATION_FORMAT, "", Outcome::Unknown(reason.clone()));
            skip_parts(&reason, &mut rec);
            for field in policy.pins.keys() {
                rec.check(&pin_check_name(field), "", Outcome::Unknown(reason.clone()));
            }
            if policy.provenance.is_some() {
                rec.check(IMAGE_PROVENANCE, "", Outcome::Unknown(reason.clone()));
            }
            for name in CANARY_CHECKS {
                rec.check(name, "", Outcome::Unknown(reason.clone()));
            }
            rec.check(IDENTITY_PINNED, "", Outcome::Unknown(reason));
        }
        Some(attestation) => {
            // 2. Which format the response is in, and the attested parts it lists.
            let parts = report::parts(attestation, format);
            rec.check(ATTESTATION_FORMAT, "", judge_format(format, &parts, policy));
            if parts.is_empty() {
                let reason = if format.is_supported() {
                    format!("the {} report lists no attested part", format.as_str())
                } else {
                    format!("{ATTESTATION_FORMAT} failed")
                };
                skip_parts(&reason, &mut rec);
            }

            // 3. Each attested part: quote, TCB, attributes, binding, event log, compose, GPUs.
            let ctx = part::PartContext {
                bundle,
                nonce: &nonce,
                collateral: bundle.tdx_collateral.as_ref(),
                policy,
                anchors,
                now: bundle.observed_at.timestamp(),
                gpu_parts: parts.iter().filter(|p| p.role.serves_inference()).count(),
            };
            for part in &parts {
                part::verify_part(part, &ctx, &mut rec);
            }
            // 4. No GPU is shown for two parts: GPU evidence is bound only to the nonce, which
            // every part shares. Without parts, `skip_parts` already recorded it.
            if !parts.is_empty() {
                let outcome = gpu::unique::judge(&parts, &rec.checks);
                rec.check(GPU_UNIQUE, "", outcome);
            }
            // 5. The OHTTP key clients encrypt to was signed by the part's attested key.
            ohttp::judge(attestation, &parts, &mut rec);

            // 6. The TLS connection the report was fetched over ended in an attested TD (one
            // answer per connection; none through a proxy).
            tls::judge(
                &parts,
                attestation,
                format,
                bundle.tls_peer_spki.as_deref(),
                bundle.transport,
                &mut rec,
            );

            // 7. Pins, per part, judged only on proven values: the model's pins on the parts
            // that run the model, the gateway's pins on the NEAR gateway (it runs other
            // software and sees every prompt). The compose manager runs in the model's TD.
            judge_pins(&parts, policy, &mut rec);

            // 7b. Who built each image of the bound composes, from the Rekor answers stored.
            image_provenance::judge(
                bundle,
                &parts,
                policy.provenance.as_ref(),
                anchors,
                &mut rec,
            );

            // 8. The signed canary chats, against the inference parts whose binding passed.
            judge_canaries(bundle, &nonce, &parts, &mut rec);

            // 9. Whether the pins say which software runs, not only that the hardware is genuine.
            let has = |role| parts.iter().any(|p| p.role == role);
            rec.check(
                IDENTITY_PINNED,
                "",
                pins::identity_pinned(
                    policy,
                    has(report::PartRole::Gateway),
                    has(report::PartRole::ComposeManager),
                ),
            );
        }
    }

    let Recorder { checks, observed } = rec;
    Verdict {
        format: VERDICT_FORMAT.to_string(),
        target: bundle.target.clone(),
        observed_at: bundle.observed_at_text(),
        attestation_format: format,
        state: canary::cadence::overall(bundle, &checks),
        checks,
        observed,
        trust: anchors.dangerous.clone(),
        transport: bundle.transport,
        policy_source: None,
    }
}

/// The canary checks for every exchange (scope `canary:<i>`), or `unknown` when there is none.
fn judge_canaries(
    bundle: &Bundle,
    nonce: &[u8; 32],
    parts: &[report::Part<'_>],
    rec: &mut Recorder,
) {
    let exchanges = bundle.canary.as_deref().unwrap_or_default();
    if let Some(not_run) = bundle
        .canary_not_run
        .as_ref()
        .filter(|_| exchanges.is_empty())
    {
        canary::cadence::record_not_run(bundle, not_run, rec);
        return;
    }
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
    // The keys that may sign a chat: those of the parts that run the model. A gateway key
    // signing a completion would mean the gateway, not the model, produced it.
    let keys: Vec<canary::PartKey> = rec
        .observed
        .iter()
        .filter(|o| o.field == "signing_address")
        .map(|o| canary::PartKey {
            scope: o.scope.clone(),
            address: o.value.clone(),
            bound: o.source == Source::Quote,
            serves_inference: report::scope_serves_inference(&o.scope),
        })
        .collect();
    for (index, exchange) in exchanges.iter().enumerate() {
        let scope = format!("canary:{index}");
        let mut outcomes = canary::judge(exchange, nonce, &keys);
        // Without any part whose report was read, there is no attested key to compare with: the
        // input is missing because an earlier step failed, so the signature cannot be judged.
        if keys.is_empty() && outcomes.signature.state() == State::Fail {
            let reason = if parts.is_empty() {
                format!("no attested part was read ({ATTESTATION_FORMAT} did not pass)")
            } else {
                format!(
                    "no signing address was read from an attested report ({TDX_QUOTE_PARSE} did not pass)"
                )
            };
            outcomes.signature = Outcome::Unknown(reason);
        }
        rec.check(CANARY_FRESH, &scope, outcomes.fresh);
        rec.check(CANARY_HASHES, &scope, outcomes.hashes);
        rec.check(CANARY_SIGNATURE, &scope, outcomes.signature);
    }
}

/// Step 8 again, for a verdict of the same bundle made before its chats were run (or found not
/// due): the canary checks are judged anew from `bundle` and the overall state recomputed, so
/// the daemon decides whether to spend a chat from the attestation's verdict without verifying
/// the quotes twice. The result is `verify(bundle)` exactly: steps 2 to 7 and 9 do not read the
/// chats, and step 8 reads only the observations of the steps before it.
pub fn rejudge_canaries(verdict: &mut Verdict, bundle: &Bundle) {
    let Some(attestation) = &bundle.attestation else {
        return;
    };
    // Step 9 comes last; anything else there means the verdict is not one of ours.
    if verdict.checks.last().map(|c| c.name.as_str()) != Some(IDENTITY_PINNED) {
        return;
    }
    let mut checks = std::mem::take(&mut verdict.checks);
    let identity = checks.pop();
    checks.retain(|c| !CANARY_CHECKS.contains(&c.name.as_str()));
    let mut rec = Recorder {
        checks,
        observed: std::mem::take(&mut verdict.observed),
    };
    let parts = report::parts(attestation, report::detect_format(attestation));
    judge_canaries(bundle, &bundle.nonce_bytes(), &parts, &mut rec);
    let Recorder {
        mut checks,
        observed,
    } = rec;
    checks.extend(identity);
    verdict.state = canary::cadence::overall(bundle, &checks);
    verdict.checks = checks;
    verdict.observed = observed;
}

/// Step 7: every pin of both tables, for every part it applies to.
fn judge_pins(parts: &[report::Part<'_>], policy: &Policy, rec: &mut Recorder) {
    for table in [pins::PinTable::Model, pins::PinTable::Gateway] {
        let pin_set = table.pins(policy);
        for field in pin_set.keys() {
            // What a compose manager deployed is read from its own part.
            let deployed = policy::is_deployed_field(field);
            let scopes: Vec<&str> = parts
                .iter()
                .filter(|p| match table {
                    pins::PinTable::Model if deployed => p.role == report::PartRole::ComposeManager,
                    pins::PinTable::Model => p.role.serves_inference(),
                    pins::PinTable::Gateway => p.role == report::PartRole::Gateway,
                })
                .map(|p| p.scope.as_str())
                .collect();
            if scopes.is_empty() {
                let (scope, outcome) = match table {
                    pins::PinTable::Model if parts.is_empty() => (
                        "",
                        Outcome::Unknown(format!("{ATTESTATION_FORMAT} gave no attested part")),
                    ),
                    pins::PinTable::Model if deployed => (
                        "",
                        Outcome::Fail(format!(
                            "{field} is pinned, and the report has no compose manager attestation"
                        )),
                    ),
                    pins::PinTable::Model => (
                        "",
                        Outcome::Unknown("the report has no model attestation".to_string()),
                    ),
                    // A target that pins a gateway expects one: an answer without it must not
                    // skip those pins silently.
                    pins::PinTable::Gateway => (
                        report::GATEWAY_SCOPE,
                        Outcome::Fail(
                            "gateway_pins are set, and the report has no gateway attestation"
                                .to_string(),
                        ),
                    ),
                };
                rec.check(&pin_check_name(field), scope, outcome);
            }
            for scope in &scopes {
                let outcome = pins::judge_pin(field, scope, pin_set, &rec.checks, &rec.observed);
                rec.check(&pin_check_name(field), scope, outcome);
            }
        }
        if let Some(known) = &policy.known {
            judge_known(parts, table, pin_set, known, rec);
        }
    }
}

/// Step 7, continued: `mrseam` and `mrtd` of a pin table that pins neither itself, judged
/// against the known-measurements table (the target's own pins win). A report without a gateway
/// gets no gateway check from the table: only pins the target wrote expect a gateway.
fn judge_known(
    parts: &[report::Part<'_>],
    table: pins::PinTable,
    pin_set: &policy::Pins,
    known: &known::KnownUse,
    rec: &mut Recorder,
) {
    let unpinned = known::KNOWN_FIELDS
        .iter()
        .filter(|f| !pin_set.contains_key(**f));
    for field in unpinned {
        let scopes: Vec<&str> = parts
            .iter()
            .filter(|p| match table {
                pins::PinTable::Model => p.role.serves_inference(),
                pins::PinTable::Gateway => p.role == report::PartRole::Gateway,
            })
            .map(|p| p.scope.as_str())
            .collect();
        if scopes.is_empty() && table == pins::PinTable::Model {
            let reason = if parts.is_empty() {
                format!("{ATTESTATION_FORMAT} gave no attested part")
            } else {
                "the report has no model attestation".to_string()
            };
            rec.check(&pin_check_name(field), "", Outcome::Unknown(reason));
        }
        for scope in &scopes {
            let outcome = pins::judge_known(field, scope, known, &rec.checks, &rec.observed);
            rec.check(&pin_check_name(field), scope, outcome);
        }
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

/// `attestation_format`: a supported format with at least one attested part passes; anything
/// else fails naming what was found, so that a model moving to another stack is never silent.
fn judge_format(format: AttestationFormat, parts: &[report::Part<'_>], policy: &Policy) -> Outcome {
    if !format.is_supported() {
        return Outcome::Fail(match format {
            AttestationFormat::Unknown => {
                "attestation format: expected one of [dstack, near-gateway, near-direct], found a response in no recognised format".to_string()
            }
            other => format!(
                "attestation format: expected one of [dstack, near-gateway, near-direct], found {} (not verifiable by this version of teewatch)",
                other.as_str()
            ),
        });
    }
    if parts.is_empty() {
        return Outcome::Fail(format!(
            "the {} report lists no attested part",
            format.as_str()
        ));
    }
    if !parts.iter().any(|p| p.role.serves_inference()) {
        return Outcome::Fail(format!(
            "the {} report lists no model attestation",
            format.as_str()
        ));
    }
    if let Some(accepted) = policy
        .formats
        .as_ref()
        .filter(|_| !policy.accepts_format(format.as_str()))
    {
        return Outcome::Fail(format!(
            "attestation format: expected one of [{}] (the target's formats), found {}",
            accepted.join(", "),
            format.as_str()
        ));
    }
    let described = match format {
        AttestationFormat::NearGateway => {
            let models = parts
                .iter()
                .filter(|p| p.role == report::PartRole::Model)
                .count();
            let gateway = parts.iter().any(|p| p.role == report::PartRole::Gateway);
            format!(
                "{}{models} model attestation(s)",
                if gateway {
                    "gateway and "
                } else {
                    "no gateway, "
                }
            )
        }
        _ => {
            let nodes = parts
                .iter()
                .filter(|p| p.role == report::PartRole::Node)
                .count();
            let manager = parts
                .iter()
                .any(|p| p.role == report::PartRole::ComposeManager);
            format!(
                "{nodes} node(s){}",
                if manager {
                    " and the compose manager"
                } else {
                    ""
                }
            )
        }
    };
    Outcome::Pass(format!("{}: {described}", format.as_str()))
}

/// Without an attested part the per-part checks cannot start: each is `unknown` with scope `""`,
/// naming why.
fn skip_parts(reason: &str, rec: &mut Recorder) {
    for name in PART_CHECKS.into_iter().chain(GPU_CHECKS) {
        rec.check(name, "", Outcome::Unknown(reason.to_string()));
    }
}
