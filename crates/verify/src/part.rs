//! Verification of one attested part of a report (a dstack node, the NEAR gateway, a model
//! attestation behind it, a compose manager), as numbered steps.
//!
//! Each step records one check for the part's scope. A check whose input is missing because an
//! earlier step failed is `unknown` naming that step; checks that read the quote body still report
//! what the body says when its signature failed (the verdict fails anyway).

use serde_json::Value;

use super::binding;
use super::checks::*;
use super::compose_manager;
use super::dcap::{self, TcbOutcome};
use super::dstack;
use super::hexutil;
use super::policy::{Policy, TrustAnchors};
use super::report::{Part, PartRole};
use super::tdx::{self, TdxQuote};
use super::verdict::{Outcome, Recorder, Source};

/// What a part's verification needs besides the part itself.
pub struct PartContext<'a> {
    pub bundle: &'a super::bundle::Bundle,
    pub nonce: &'a [u8; 32],
    pub collateral: Option<&'a Value>,
    pub policy: &'a Policy,
    pub anchors: &'a TrustAnchors,
    /// `observed_at` in unix seconds: the instant every validity window is judged at.
    pub now: i64,
    /// How many parts of the answer run the model (and so carry GPU evidence).
    pub gpu_parts: usize,
}

fn after(step: &str, what: &str) -> Outcome {
    Outcome::Unknown(format!("{step} {what}"))
}

/// Verifies one part and records its checks and observations.
pub fn verify_part(part: &Part<'_>, ctx: &PartContext<'_>, rec: &mut Recorder) {
    let scope = part.scope.as_str();
    // A compose manager's quote binds its action log, not a signing key, and it has no app
    // compose of its own: it is the same TD as the part it belongs to.
    let is_manager = part.role == PartRole::ComposeManager;

    // 1. Parse the quote.
    let parsed = part
        .quote_hex()
        .and_then(|text| hexutil::decode(text).map_err(|e| format!("intel_quote is not hex: {e}")))
        .and_then(|raw| match TdxQuote::parse(&raw) {
            Ok(quote) => Ok((raw, quote)),
            Err(e) => Err(e.to_string()),
        });
    let (raw, quote) = match parsed {
        Ok((raw, quote)) => {
            rec.check(
                TDX_QUOTE_PARSE,
                scope,
                Outcome::Pass(format!(
                    "tdx quote v{}, body type {}, {} bytes",
                    quote.version,
                    quote.body_type,
                    raw.len()
                )),
            );
            (raw, quote)
        }
        Err(reason) => {
            rec.check(TDX_QUOTE_PARSE, scope, Outcome::Fail(reason));
            for name in [
                TDX_QUOTE_SIGNATURE,
                TDX_TCB_STATUS,
                TDX_DEBUG_DISABLED,
                TDX_TD_ATTRIBUTES,
                REPORT_DATA_BINDING,
            ] {
                rec.check(name, scope, after(TDX_QUOTE_PARSE, "failed"));
            }
            if is_manager {
                rec.check(SAME_TD, scope, after(TDX_QUOTE_PARSE, "failed"));
            } else {
                if let Some(outcome) = binding::signing_key_address(part) {
                    rec.check(SIGNING_KEY_ADDRESS, scope, outcome);
                }
                observe_signing_address(part, scope, false, rec);
            }
            rec.check(EVENT_LOG_REPLAY, scope, after(TDX_QUOTE_PARSE, "failed"));
            if is_manager {
                observe_deployed(part, scope, false, None, rec);
            } else {
                rec.check(COMPOSE_BINDING, scope, after(TDX_QUOTE_PARSE, "failed"));
            }
            observe_claims(part, scope, rec);
            verify_gpus(part, ctx, rec);
            return;
        }
    };
    observe_quote(&raw, &quote, scope, rec);

    // 2. The quote's signatures and chain (dcap-qvl), and 3. the TCB status it evaluates.
    let dcap = dcap::verify_quote(
        &raw,
        ctx.collateral,
        &ctx.anchors.intel_root_der,
        ctx.now,
        &ctx.anchors.cache.collateral,
    );
    rec.check(TDX_QUOTE_SIGNATURE, scope, dcap.signature.clone());
    if let Some(fmspc) = &dcap.fmspc {
        rec.observe(scope, "fmspc", fmspc.clone(), Source::Quote);
    }
    let tcb = judge_tcb(&dcap.tcb, ctx.policy, scope, rec);
    rec.check(TDX_TCB_STATUS, scope, tcb);

    // 4. Debug bit and 5. the other TD attributes, read from the body.
    rec.check(TDX_DEBUG_DISABLED, scope, judge_debug(&quote));
    rec.check(TDX_TD_ATTRIBUTES, scope, judge_attributes(&quote));

    if is_manager {
        verify_manager_body(part, ctx, &quote, rec);
        return;
    }

    // 6. REPORTDATA binds the signing key and this check's nonce.
    let binding = binding::report_data_binding(part, &quote.body.report_data, ctx.nonce);
    let bound = binding.state() == super::verdict::State::Pass;
    rec.check(REPORT_DATA_BINDING, scope, binding);
    observe_signing_address(part, scope, bound, rec);

    // 7. The public key, when given, belongs to the signing address.
    if let Some(outcome) = binding::signing_key_address(part) {
        rec.check(SIGNING_KEY_ADDRESS, scope, outcome);
    }

    // 8. Replay the event log against the RTMRs, then 9. bind the app compose.
    let replayed = replay_event_log(part, &quote, scope, rec);
    rec.check(
        COMPOSE_BINDING,
        scope,
        judge_compose(part, &quote, replayed.as_ref()),
    );
    observe_claims(part, scope, rec);

    // 10.–12. The GPUs beside the TD: their evidence, and NVIDIA's verdict on it.
    verify_gpus(part, ctx, rec);
}

/// Steps 6–9 of a NEAR compose manager: REPORTDATA binds its action log and the nonce, its quote
/// is the TD of the part it belongs to, its event log replays; then what the log says runs.
fn verify_manager_body(
    part: &Part<'_>,
    ctx: &PartContext<'_>,
    quote: &TdxQuote,
    rec: &mut Recorder,
) {
    let scope = part.scope.as_str();
    // 6. REPORTDATA = sha256(actions) ‖ nonce.
    let binding = compose_manager::judge_binding(part, &quote.body.report_data, ctx.nonce);
    rec.check(REPORT_DATA_BINDING, scope, binding);
    // 7. The same TD as its owner.
    let owner = part.owner.as_deref().unwrap_or_default();
    let same = compose_manager::judge_same_td(scope, owner, &rec.observed);
    rec.check(SAME_TD, scope, same);
    // 8. Its event log (the TD's own) replays against its registers.
    let identity = replay_event_log(part, quote, scope, rec);
    // 9. What runs, as evidence only when the quote verified, binds the log and is that TD.
    let verified = [TDX_QUOTE_SIGNATURE, REPORT_DATA_BINDING, SAME_TD]
        .iter()
        .all(|name| {
            rec.checks.iter().any(|c| {
                c.name == *name && c.scope == scope && c.state == super::verdict::State::Pass
            })
        });
    let instance = identity.as_ref().and_then(|i| i.instance_id.as_deref());
    observe_deployed(part, scope, verified, instance, rec);
}

/// Records the deployed software the compose manager's action log names.
fn observe_deployed(
    part: &Part<'_>,
    scope: &str,
    verified: bool,
    instance_id: Option<&[u8]>,
    rec: &mut Recorder,
) {
    let Ok(actions) = compose_manager::actions(part) else {
        return;
    };
    let source = if verified {
        Source::ComposeManager
    } else {
        Source::Claim
    };
    for (field, value) in compose_manager::deployed(actions, instance_id) {
        rec.observe(scope, field, value, source);
    }
}

/// Records the report's signing address: proven by the quote when the binding passed, else only
/// claimed.
fn observe_signing_address(part: &Part<'_>, scope: &str, bound: bool, rec: &mut Recorder) {
    if let Some(address) = part.str_field("signing_address") {
        let source = if bound { Source::Quote } else { Source::Claim };
        let value = hexutil::decode(address)
            .map(|b| hexutil::lower(&b))
            .unwrap_or_else(|_| address.to_string());
        rec.observe(scope, "signing_address", value, source);
    }
}

/// The GPU evidence is independent of the quote, so it is judged whatever the quote said. The
/// NEAR gateway and compose manager are CPU-only TDs: they get no GPU or NRAS checks at all.
fn verify_gpus(part: &Part<'_>, ctx: &PartContext<'_>, rec: &mut Recorder) {
    if !part.role.serves_inference() {
        return;
    }
    super::gpu::part::verify_part_gpus(
        part.fields.get("nvidia_payload"),
        &part.scope,
        ctx.gpu_parts,
        ctx.bundle,
        ctx.anchors,
        rec,
    );
}

fn judge_tcb(tcb: &TcbOutcome, policy: &Policy, scope: &str, rec: &mut Recorder) -> Outcome {
    match tcb {
        TcbOutcome::Evaluated {
            status,
            advisory_ids,
        } => {
            rec.observe(scope, "tcb_status", status.clone(), Source::Quote);
            if !advisory_ids.is_empty() {
                rec.observe(
                    scope,
                    "tcb_advisory_ids",
                    advisory_ids.join(","),
                    Source::Quote,
                );
            }
            let advisories = if advisory_ids.is_empty() {
                String::new()
            } else {
                format!(" with advisories {}", advisory_ids.join(", "))
            };
            if status != "Revoked" && policy.allowed_tcb_statuses.iter().any(|s| s == status) {
                Outcome::Pass(format!("{status}{advisories}"))
            } else {
                Outcome::Fail(format!(
                    "tcb status: expected one of [{}], found {status}{advisories}",
                    policy.allowed_tcb_statuses.join(", ")
                ))
            }
        }
        TcbOutcome::Revoked => {
            rec.observe(scope, "tcb_status", "Revoked", Source::Quote);
            Outcome::Fail("tcb status: found Revoked, which is never accepted".into())
        }
        TcbOutcome::NotAppraisable(reason) => {
            Outcome::Fail(format!("tcb not appraisable: {reason}"))
        }
        TcbOutcome::NotEvaluated(reason) => Outcome::Unknown(reason.clone()),
    }
}

fn judge_debug(quote: &TdxQuote) -> Outcome {
    if quote
        .body
        .td_attributes
        .first()
        .is_some_and(|b| b & 0x01 != 0)
    {
        Outcome::Fail(
            "tdattributes.debug: expected 0, found 1 (the host can read and change the td's memory)"
                .into(),
        )
    } else {
        Outcome::Pass("tdattributes.debug is 0".into())
    }
}

fn judge_attributes(quote: &TdxQuote) -> Outcome {
    let raw = quote.body.td_attributes;
    let Ok(attrs) = dcap_qvl::quote::TDAttributes::parse(raw) else {
        return Outcome::Fail(format!("td attributes {} unreadable", hexutil::lower(&raw)));
    };
    let mut problems = Vec::new();
    if attrs.tud & 0x70 != 0 {
        problems.push("profiling bits (tud 6:4) set".to_string());
    }
    if attrs.reserved != 0 {
        problems.push(format!(
            "reserved bits set (mask 0x{:016x})",
            attrs.reserved
        ));
    }
    if attrs.sec.migratable {
        problems.push("migratable set (a migration td can export the td)".to_string());
    }
    if !attrs.sec.sept_ve_disable {
        problems.push("sept_ve_disable not set".to_string());
    }
    let service_td = quote
        .body
        .mr_service_td
        .is_some_and(|m| !hexutil::is_zero(&m));
    if attrs.sec.servtd_ext || service_td {
        problems.push("bound to a service td (servtd_ext or mrservicetd set)".to_string());
    }
    if problems.is_empty() {
        Outcome::Pass(format!(
            "td attributes {}: sept_ve_disable set, not migratable, no profiling or reserved bits",
            hexutil::lower(&raw)
        ))
    } else {
        Outcome::Fail(format!(
            "td attributes {}: {}",
            hexutil::lower(&raw),
            problems.join("; ")
        ))
    }
}

/// Records the values read from the quote body.
fn observe_quote(raw: &[u8], quote: &TdxQuote, scope: &str, rec: &mut Recorder) {
    let body = &quote.body;
    let fields: [(&str, &[u8]); 12] = [
        ("mrtd", &body.mrtd),
        ("rtmr0", &body.rtmr[0]),
        ("rtmr1", &body.rtmr[1]),
        ("rtmr2", &body.rtmr[2]),
        ("rtmr3", &body.rtmr[3]),
        ("mrseam", &body.mrseam),
        ("mrsignerseam", &body.mrsignerseam),
        ("mrconfigid", &body.mrconfigid),
        ("td_attributes", &body.td_attributes),
        ("xfam", &body.xfam),
        ("tee_tcb_svn", &body.tee_tcb_svn),
        ("report_data", &body.report_data),
    ];
    for (field, bytes) in fields {
        rec.observe(scope, field, hexutil::lower(bytes), Source::Quote);
    }
    for (field, start) in [
        ("intel_mrenclave", tdx::INTEL_MRENCLAVE_START),
        ("intel_mrsigner", tdx::INTEL_MRSIGNER_START),
    ] {
        if let Some(window) = tdx::nanogpt_window(raw, start) {
            rec.observe(scope, field, hexutil::lower(&window), Source::Quote);
        }
    }
}

/// Step 8: replays the log. Returns the OS-written identity when the replay matched the quote
/// and the identity events obey the RTMR3 rules, so that its values count as evidence.
fn replay_event_log(
    part: &Part<'_>,
    quote: &TdxQuote,
    scope: &str,
    rec: &mut Recorder,
) -> Option<dstack::RuntimeIdentity> {
    let Some(log) = part.event_log() else {
        rec.check(
            EVENT_LOG_REPLAY,
            scope,
            Outcome::Fail("the report carries no event log".into()),
        );
        return None;
    };
    let events = match dstack::parse_event_log(log) {
        Ok(events) => events,
        Err(e) => {
            rec.check(EVENT_LOG_REPLAY, scope, Outcome::Fail(e.to_string()));
            return None;
        }
    };
    let replay = dstack::replay(&events);
    let mut mismatches = replay.problems.clone();
    let mut replayed = Vec::new();
    let mut skipped = Vec::new();
    for (index, (ours, theirs)) in replay.rtmr.iter().zip(quote.body.rtmr.iter()).enumerate() {
        let has_events = replay.event_counts.get(index).is_some_and(|n| *n > 0);
        if index < 3 && !has_events {
            skipped.push(format!("rtmr{index}"));
            continue;
        }
        if ours == theirs {
            replayed.push(format!("rtmr{index}"));
        } else {
            mismatches.push(format!(
                "rtmr{index}: replayed {}, quote has {}",
                hexutil::lower(ours),
                hexutil::lower(theirs)
            ));
        }
    }
    let identity = match dstack::runtime_identity(&events) {
        Ok(identity) => Some(identity),
        Err(e) => {
            mismatches.push(e.to_string());
            None
        }
    };
    // Values from a log that did not replay are still shown, as claims.
    let ok = mismatches.is_empty();
    let source = if ok { Source::EventLog } else { Source::Claim };
    if let Some(identity) = &identity {
        observe_identity(identity, scope, source, rec);
    }
    let Some(identity) = identity.filter(|_| ok) else {
        rec.check(
            EVENT_LOG_REPLAY,
            scope,
            Outcome::Fail(mismatches.join("; ")),
        );
        return None;
    };
    let mut reason = format!(
        "{} replayed from {} events match the quote (runtime digests recomputed from payloads)",
        replayed.join(", "),
        events.len()
    );
    if !skipped.is_empty() {
        reason.push_str(&format!(
            "; {} not replayed: no boot events in the log",
            skipped.join(", ")
        ));
    }
    if identity.system_ready {
        reason.push_str(&format!(
            "; identity events written by the os before system-ready, {} application event(s) after it",
            identity.application_events.len()
        ));
    } else {
        reason.push_str("; no system-ready event: every runtime event is the os's");
    }
    rec.check(EVENT_LOG_REPLAY, scope, Outcome::Pass(reason));
    Some(identity)
}

/// Records the identity values of RTMR3 with their source.
fn observe_identity(
    identity: &dstack::RuntimeIdentity,
    scope: &str,
    source: Source,
    rec: &mut Recorder,
) {
    let hex_fields = [
        ("compose_hash", &identity.compose_hash),
        ("app_id", &identity.app_id),
        ("instance_id", &identity.instance_id),
        ("os_image_hash", &identity.os_image_hash),
    ];
    for (field, value) in hex_fields {
        if let Some(bytes) = value {
            rec.observe(scope, field, hexutil::lower(bytes), source);
        }
    }
    if let Some(name) = &identity.key_provider {
        rec.observe(scope, "key_provider", name.clone(), source);
    }
    // The application's own events are shown for what they are, never as identity.
    for name in &identity.application_events {
        rec.observe(scope, "application_event", name.clone(), source);
    }
}

/// Step 9: the compose binding, judged on the replayed identity and the quote's MRCONFIGID.
fn judge_compose(
    part: &Part<'_>,
    quote: &TdxQuote,
    identity: Option<&dstack::RuntimeIdentity>,
) -> Outcome {
    let Some(identity) = identity else {
        return after(EVENT_LOG_REPLAY, "did not pass");
    };
    dstack::compose_binding(
        part.app_compose().as_deref(),
        identity.compose_hash.as_deref(),
        &quote.body.mrconfigid,
    )
}

/// Records values the report only asserts (`info`, `vm_config`) when no evidence shows the same
/// value for the field, so that a reader sees what was claimed but not proven.
fn observe_claims(part: &Part<'_>, scope: &str, rec: &mut Recorder) {
    let info = part.info();
    let tcb_info = part.tcb_info();
    let vm_config = part.vm_config();
    let claims: [(&str, Option<&Value>); 8] = [
        ("compose_hash", info.and_then(|i| i.get("compose_hash"))),
        ("app_id", info.and_then(|i| i.get("app_id"))),
        ("instance_id", info.and_then(|i| i.get("instance_id"))),
        ("os_image_hash", info.and_then(|i| i.get("os_image_hash"))),
        (
            "os_image_hash",
            vm_config.as_ref().and_then(|v| v.get("os_image_hash")),
        ),
        ("mrtd", tcb_info.and_then(|t| t.get("mrtd"))),
        ("rtmr3", tcb_info.and_then(|t| t.get("rtmr3"))),
        ("compose_hash", tcb_info.and_then(|t| t.get("compose_hash"))),
    ];
    for (field, value) in claims {
        let Some(text) = value.and_then(Value::as_str) else {
            continue;
        };
        let value = hexutil::decode(text)
            .map(|b| hexutil::lower(&b))
            .unwrap_or_else(|_| text.to_string());
        let already = rec
            .observed
            .iter()
            .any(|o| o.scope == scope && o.field == field && o.value == value);
        if !already {
            rec.observe(scope, field, value, Source::Claim);
        }
    }
}
