//! Pins: allowlists of accepted values for measured fields, and whether a target pins an identity.
//!
//! A pin is judged only against values proven by evidence (read from the quote, replayed from the
//! event log, or read from signed GPU evidence). A value the report merely claims never satisfies
//! a pin; when the step that would prove a value did not pass, the pin is `unknown` naming it.

use super::checks;
use super::known::{Candidates, KnownUse, unknown_label};
use super::policy::{PinSide, Pins, Policy, pin_field, pins_accept};
use super::verdict::{Check, Observed, Outcome, Source, State};

/// Which pin table a part is judged by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinTable {
    /// `[target.pins]`: the parts that run the model.
    Model,
    /// `[target.gateway_pins]`: the NEAR gateway.
    Gateway,
}

impl PinTable {
    pub fn pins(self, policy: &Policy) -> &Pins {
        match self {
            PinTable::Model => &policy.pins,
            PinTable::Gateway => &policy.gateway_pins,
        }
    }
}

/// The check that proves the value of a TDX-side field.
fn providing_check(field: &str) -> &'static str {
    match field {
        "compose_hash" | "app_id" | "instance_id" | "os_image_hash" | "key_provider" => {
            checks::EVENT_LOG_REPLAY
        }
        "signing_address" => checks::REPORT_DATA_BINDING,
        // The compose manager's binding is its action log's hash.
        f if super::policy::is_deployed_field(f) => checks::REPORT_DATA_BINDING,
        _ => checks::TDX_QUOTE_PARSE,
    }
}

/// The state of a check for a scope, if it was recorded.
fn state_of(checks_so_far: &[Check], name: &str, scope: &str) -> Option<State> {
    checks_so_far
        .iter()
        .find(|c| c.name == name && c.scope == scope)
        .map(|c| c.state)
}

/// What a TDX-side value is held to: a target's own allowlist, or the known-measurements table.
enum Allowed<'a> {
    Pins(&'a Pins),
    Known(Candidates),
}

impl Allowed<'_> {
    fn accepts(&self, field: &str, value: &str) -> bool {
        match self {
            Allowed::Pins(pins) => pins_accept(pins, field, value),
            Allowed::Known(known) => known.name_of(value).is_some(),
        }
    }

    /// `[a, b]`, or `the 4 known (table v1)`.
    fn expected(&self, field: &str) -> String {
        match self {
            Allowed::Pins(pins) => format!(
                "[{}]",
                pins.get(field).cloned().unwrap_or_default().join(", ")
            ),
            Allowed::Known(known) => known.describe(),
        }
    }
}

/// Judges one pin for one scope from the checks and observations made so far.
pub fn judge_pin(
    field: &str,
    scope: &str,
    pins: &Pins,
    checks_so_far: &[Check],
    observed: &[Observed],
) -> Outcome {
    let Some(spec) = pin_field(field) else {
        return Outcome::Fail(format!("pin on unknown field {field}"));
    };
    if spec.side == PinSide::Gpu {
        return judge_gpu_pin(field, scope, pins, checks_so_far, observed);
    }
    judge_tdx(field, scope, &Allowed::Pins(pins), checks_so_far, observed)
}

/// Judges `mrseam` or `mrtd` of one scope against the known-measurements table, for a pin
/// table that does not pin the field itself. Only the quote's own registers count, under the same
/// rules as a pin: a claimed value never passes, a forged quote's value is `unknown`.
pub fn judge_known(
    field: &str,
    scope: &str,
    known: &KnownUse,
    checks_so_far: &[Check],
    observed: &[Observed],
) -> Outcome {
    match known.candidates(field) {
        Ok(candidates) => judge_tdx(
            field,
            scope,
            &Allowed::Known(candidates),
            checks_so_far,
            observed,
        ),
        Err(reason) => Outcome::Unknown(reason),
    }
}

/// A TDX-side field against its allowlist.
fn judge_tdx(
    field: &str,
    scope: &str,
    allow: &Allowed<'_>,
    checks_so_far: &[Check],
    observed: &[Observed],
) -> Outcome {
    let step = providing_check(field);
    if state_of(checks_so_far, step, scope) != Some(State::Pass) {
        return Outcome::Unknown(format!("{field} comes from {step}, which did not pass"));
    }

    let here = |source_ok: fn(Source) -> bool| {
        observed
            .iter()
            .filter(move |o| o.scope == scope && o.field == field && source_ok(o.source))
    };
    let allowed = allow.expected(field);
    let proven: Vec<&Observed> = here(Source::is_evidence).collect();
    // Every TDX-side value (the registers, and the event log replayed against them) is only as
    // good as the quote's signature: a forged quote must neither satisfy nor fail a pin. (A
    // value absent from the evidence fails below whatever the signature says.)
    if !proven.is_empty()
        && state_of(checks_so_far, checks::TDX_QUOTE_SIGNATURE, scope) != Some(State::Pass)
    {
        return Outcome::Unknown(format!(
            "quote not verified: {field} comes from a quote whose {} did not pass",
            checks::TDX_QUOTE_SIGNATURE
        ));
    }
    if let Some(first) = proven.first() {
        let refused: Vec<String> = proven
            .iter()
            .filter(|o| !allow.accepts(field, &o.value))
            .map(|o| format!("{} ({})", o.value, o.source.as_str()))
            .collect();
        return match allow {
            _ if !refused.is_empty() => {
                let unknown = match allow {
                    Allowed::Pins(_) => String::new(),
                    Allowed::Known(_) => format!("{}: ", unknown_label(field)),
                };
                Outcome::Fail(format!(
                    "{unknown}expected one of {allowed}, found {}",
                    refused.join(", ")
                ))
            }
            Allowed::Pins(_) => Outcome::Pass(format!(
                "{} ({}) is allowed",
                first.value,
                first.source.as_str()
            )),
            Allowed::Known(known) => {
                // Every distinct name, in the order the parts showed them.
                let mut names: Vec<&str> = Vec::new();
                for name in proven.iter().filter_map(|o| known.name_of(&o.value)) {
                    if !names.contains(&name) {
                        names.push(name);
                    }
                }
                Outcome::Pass(format!(
                    "{}: {} ({})",
                    known.pass_prefix(&names),
                    first.value,
                    first.source.as_str()
                ))
            }
        };
    }
    let claimed: Vec<String> = here(|s| s == Source::Claim)
        .map(|o| o.value.clone())
        .collect();
    if claimed.is_empty() {
        Outcome::Fail(format!(
            "{field} is not present in the report's evidence (expected one of {allowed})"
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
    pins: &Pins,
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
    let allowed = pins.get(field).cloned().unwrap_or_default().join(", ");
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
            if pins_accept(pins, field, &value.value) {
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

/// The registers that name the OS: the TD's firmware (MRTD) and the kernel, command line and
/// boot configuration measured into RTMR0–2. RTMR3's events are written by that OS.
pub const OS_IDENTITY_FIELDS: [&str; 4] = ["mrtd", "rtmr0", "rtmr1", "rtmr2"];

/// The fields that name the application, each sufficient on its own (but see
/// [`DEPLOYED_IDENTITY_FIELD`]).
pub const APP_IDENTITY_FIELDS: [&str; 3] = ["compose_hash", "app_id", "deployed_compose_sha256"];

/// Where a NEAR compose manager deploys the model's containers at run time, the boot-time compose
/// hash names the compose manager, and this field names the software actually serving.
pub const DEPLOYED_IDENTITY_FIELD: &str = "deployed_compose_sha256";

/// What one pin table pins of the OS-and-application identity, or what it lacks.
fn identity_of(pins: &Pins, deployed: bool) -> Result<String, String> {
    let missing_os: Vec<&str> = OS_IDENTITY_FIELDS
        .iter()
        .copied()
        .filter(|f| !pins.contains_key(*f))
        .collect();
    let app: Vec<&str> = APP_IDENTITY_FIELDS
        .iter()
        .copied()
        .filter(|f| pins.contains_key(*f))
        .collect();
    let mut lacks = Vec::new();
    if !missing_os.is_empty() {
        lacks.push(format!(
            "the os needs mrtd, rtmr0, rtmr1 and rtmr2 pinned (missing {})",
            missing_os.join(", ")
        ));
    }
    if app.is_empty() {
        lacks.push("the application needs compose_hash or app_id pinned (neither is)".to_string());
    } else if deployed && !pins.contains_key(DEPLOYED_IDENTITY_FIELD) {
        lacks.push(
            "the application runs in containers a compose manager deployed: it needs deployed_compose_sha256 pinned (the compose hash names the compose manager)"
                .to_string(),
        );
    }
    if lacks.is_empty() {
        Ok(format!(
            "os pinned by mrtd, rtmr0-2 and application by {}",
            app.join(", ")
        ))
    } else {
        Err(lacks.join("; "))
    }
}

/// `identity_pinned`: whether the target pins which software runs, not only genuine hardware.
///
/// RTMR3's events (compose hash, app id, os-image-hash) are written by the guest OS, so a
/// custom OS can write any of them: the application is pinned only together with the OS
/// registers. A report with a NEAR gateway, which sees every prompt, needs the gateway's
/// identity pinned too; one with a NEAR compose manager needs the software it deployed pinned.
pub fn identity_pinned(policy: &Policy, has_gateway: bool, has_compose_manager: bool) -> Outcome {
    let model = identity_of(&policy.pins, has_compose_manager);
    let gateway = has_gateway.then(|| identity_of(&policy.gateway_pins, false));
    match (model, gateway) {
        (Ok(model), None) => Outcome::Pass(model),
        (Ok(model), Some(Ok(gateway))) => {
            Outcome::Pass(format!("model: {model}; gateway: {gateway}"))
        }
        (model, gateway) => {
            let mut lacks = Vec::new();
            if let Err(e) = model {
                lacks.push(format!("pins: {e}"));
            }
            if let Some(Err(e)) = gateway {
                lacks.push(format!("gateway_pins: {e}"));
            }
            Outcome::Unknown(format!(
                "{}: the checks prove genuine hardware, not which software runs on it",
                lacks.join("; ")
            ))
        }
    }
}

#[cfg(test)]
#[path = "pins_tests.rs"]
mod tests;
