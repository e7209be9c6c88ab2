//! Pins: allowlists of accepted values for measured fields, and whether a target pins an identity.
//!
//! A pin is judged only against values proven by evidence (read from the quote, replayed from the
//! event log, or read from signed GPU evidence). A value the report merely claims never satisfies
//! a pin; when the step that would prove a value did not pass, the pin is `unknown` naming it.

use super::checks;
use super::policy::{PinSide, Policy, pin_field};
use super::verdict::{Check, Observed, Outcome, Source, State};

/// The check that proves the value of a TDX-side field.
fn providing_check(field: &str) -> &'static str {
    match field {
        "compose_hash" | "app_id" | "instance_id" | "os_image_hash" | "key_provider" => {
            checks::EVENT_LOG_REPLAY
        }
        "signing_address" => checks::REPORT_DATA_BINDING,
        _ => checks::TDX_QUOTE_PARSE,
    }
}

/// Judges one pin for one scope from the checks and observations made so far.
pub fn judge_pin(
    field: &str,
    scope: &str,
    policy: &Policy,
    checks_so_far: &[Check],
    observed: &[Observed],
) -> Outcome {
    let Some(spec) = pin_field(field) else {
        return Outcome::Fail(format!("pin on unknown field {field}"));
    };
    if spec.side == PinSide::Gpu {
        return judge_gpu_pin(field, scope, policy, checks_so_far, observed);
    }
    let step = providing_check(field);
    let step_state = checks_so_far
        .iter()
        .find(|c| c.name == step && c.scope == scope)
        .map(|c| c.state);
    if step_state != Some(State::Pass) {
        return Outcome::Unknown(format!("{field} comes from {step}, which did not pass"));
    }
    let here = |source_ok: fn(Source) -> bool| {
        observed
            .iter()
            .filter(move |o| o.scope == scope && o.field == field && source_ok(o.source))
    };
    let allowed = policy
        .pins
        .get(field)
        .cloned()
        .unwrap_or_default()
        .join(", ");
    let proven: Vec<&Observed> = here(Source::is_evidence).collect();
    if let Some(first) = proven.first() {
        return if proven.iter().all(|o| policy.pin_accepts(field, &o.value)) {
            Outcome::Pass(format!(
                "{} ({}) is allowed",
                first.value,
                first.source.as_str()
            ))
        } else {
            let found: Vec<String> = proven
                .iter()
                .filter(|o| !policy.pin_accepts(field, &o.value))
                .map(|o| format!("{} ({})", o.value, o.source.as_str()))
                .collect();
            Outcome::Fail(format!(
                "expected one of [{allowed}], found {}",
                found.join(", ")
            ))
        };
    }
    let claimed: Vec<String> = here(|s| s == Source::Claim)
        .map(|o| o.value.clone())
        .collect();
    if claimed.is_empty() {
        Outcome::Fail(format!(
            "{field} is not present in the report's evidence (expected one of [{allowed}])"
        ))
    } else {
        Outcome::Fail(format!(
            "{field} is only claimed by the report ({}), not proven by the quote or the replayed event log",
            claimed.join(", ")
        ))
    }
}

/// A pin on a GPU field: every GPU of the part must carry an allowed value, read from evidence
/// whose signature verified.
fn judge_gpu_pin(
    field: &str,
    scope: &str,
    policy: &Policy,
    checks_so_far: &[Check],
    observed: &[Observed],
) -> Outcome {
    let prefix = if scope.is_empty() {
        "gpu:".to_string()
    } else {
        format!("{scope}/gpu:")
    };
    let gpu_checks: Vec<&Check> = checks_so_far
        .iter()
        .filter(|c| c.name == checks::GPU_EVIDENCE_SIGNATURE && c.scope.starts_with(&prefix))
        .collect();
    if gpu_checks.is_empty() {
        return Outcome::Unknown(format!(
            "{field} comes from {}, which did not pass: the part has no readable gpu evidence",
            checks::GPU_EVIDENCE_SIGNATURE
        ));
    }
    let allowed = policy
        .pins
        .get(field)
        .cloned()
        .unwrap_or_default()
        .join(", ");
    let mut found = Vec::new();
    let mut rejected = Vec::new();
    let mut unproven = Vec::new();
    for check in gpu_checks {
        let gpu = check.scope.as_str();
        if check.state != State::Pass {
            unproven.push(gpu.to_string());
            continue;
        }
        let values: Vec<&Observed> = observed
            .iter()
            .filter(|o| o.scope == gpu && o.field == field && o.source.is_evidence())
            .collect();
        if values.is_empty() {
            rejected.push(format!("{gpu} has no {field}"));
        }
        for value in values {
            if policy.pin_accepts(field, &value.value) {
                found.push(format!("{gpu}: {}", value.value));
            } else {
                rejected.push(format!("{gpu}: {}", value.value));
            }
        }
    }
    // A proven value outside the allowlist fails whatever the other GPUs say; a GPU whose
    // evidence is unproven keeps the pin from passing.
    if !rejected.is_empty() {
        Outcome::Fail(format!(
            "expected one of [{allowed}], found {}",
            rejected.join(", ")
        ))
    } else if !unproven.is_empty() {
        Outcome::Unknown(format!(
            "{field} of {} comes from {}, which did not pass",
            unproven.join(", "),
            checks::GPU_EVIDENCE_SIGNATURE
        ))
    } else {
        Outcome::Pass(format!("every gpu is allowed ({})", found.join(", ")))
    }
}

/// `identity_pinned`: whether the target pins which software runs, not only genuine hardware.
pub fn identity_pinned(policy: &Policy) -> Outcome {
    const APP: [&str; 2] = ["compose_hash", "app_id"];
    const OS: [&str; 5] = ["mrtd", "rtmr0", "rtmr1", "rtmr2", "os_image_hash"];
    let pinned = |fields: &[&str]| -> Vec<String> {
        fields
            .iter()
            .filter(|f| policy.pins.contains_key(**f))
            .map(|f| f.to_string())
            .collect()
    };
    let app = pinned(&APP);
    let os = pinned(&OS);
    if app.is_empty() && os.is_empty() {
        Outcome::Unknown(
            "no app identity (compose_hash, app_id) or os identity (mrtd, rtmr0-2, os_image_hash) is pinned: the checks prove genuine hardware, not which software runs on it"
                .into(),
        )
    } else {
        let mut parts = Vec::new();
        if !app.is_empty() {
            parts.push(format!("app identity pinned by {}", app.join(", ")));
        }
        if !os.is_empty() {
            parts.push(format!("os identity pinned by {}", os.join(", ")));
        }
        Outcome::Pass(parts.join("; "))
    }
}
