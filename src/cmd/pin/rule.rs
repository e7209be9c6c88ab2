//! When a verdict may give pins, and the pins it gives: the pass rule of `teewatch pin` and the
//! allowlists read from a verdict's evidence.
//!
//! A value is pinned only when every signature and binding check of every part passed
//! ([`REQUIRED_CHECKS`]), the TD is not a debug TD, and no platform's TCB is `Revoked`: a pin
//! written from a forged or unbound quote would turn the forgery into the reference. Values come
//! only from observations whose source is evidence, of the parts each pin table is judged on.

use std::collections::{BTreeMap, BTreeSet};

use teewatch::verify::checks::{
    ATTESTATION_FORMAT, COMPOSE_BINDING, EVENT_LOG_REPLAY, GPU_EVIDENCE_SIGNATURE, IDENTITY_PINNED,
    NRAS_TOKEN, PIN_PREFIX, REPORT_DATA_BINDING, TDX_DEBUG_DISABLED, TDX_QUOTE_PARSE,
    TDX_QUOTE_SIGNATURE, TDX_TCB_STATUS, TDX_TD_ATTRIBUTES,
};
use teewatch::verify::known;
use teewatch::verify::pins::PinTable;
use teewatch::verify::policy::{PinSide, pin_field};
use teewatch::verify::report::{GATEWAY_SCOPE, scope_serves_inference};
use teewatch::verify::{Check, Source, State, Verdict};

/// The checks that must be `pass` in every scope they appear in before anything is pinned: the
/// quote is a TDX quote, its signature verifies to the Intel root, the TD is not a debug TD and
/// has safe attributes, REPORTDATA binds the key and this check's nonce, the event log replays to
/// the registers and binds the app compose, a compose manager's quote is its model's own TD, and
/// every GPU's evidence and the NRAS token verify. `compose_binding` and `same_td` count where
/// the verdict lists them.
pub const REQUIRED_CHECKS: [&str; 10] = [
    TDX_QUOTE_PARSE,
    TDX_QUOTE_SIGNATURE,
    TDX_DEBUG_DISABLED,
    TDX_TD_ATTRIBUTES,
    REPORT_DATA_BINDING,
    EVENT_LOG_REPLAY,
    COMPOSE_BINDING,
    // A NEAR compose manager's quote is of its model's TD (judged only for compose managers).
    "same_td",
    GPU_EVIDENCE_SIGNATURE,
    NRAS_TOKEN,
];

/// The checks every attested part must have, whatever its role.
const PART_CHECKS: [&str; 6] = [
    TDX_QUOTE_PARSE,
    TDX_QUOTE_SIGNATURE,
    TDX_DEBUG_DISABLED,
    TDX_TD_ATTRIBUTES,
    REPORT_DATA_BINDING,
    EVENT_LOG_REPLAY,
];

/// The fields `teewatch pin` pins, in the order it prints them. `[target.gateway_pins]` gets
/// those of the TDX side. A field is pinned when the verdict holds evidence of it and this
/// version's pin table knows it.
pub const PINNED_FIELDS: [&str; 9] = [
    "mrtd",
    "rtmr0",
    "rtmr1",
    "rtmr2",
    "compose_hash",
    "app_id",
    "deployed_compose_sha256",
    "gpu_driver_version",
    "gpu_vbios_version",
];

/// A check that kept the verdict from giving pins (or a required check that is missing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub name: String,
    pub scope: String,
    pub state: State,
    pub reason: String,
}

impl Problem {
    fn of(check: &Check) -> Problem {
        Problem {
            name: check.name.clone(),
            scope: check.scope.clone(),
            state: check.state,
            reason: check.reason.clone(),
        }
    }

    fn missing(name: &str, scope: &str, what: &str) -> Problem {
        Problem {
            name: name.to_string(),
            scope: scope.to_string(),
            state: State::Fail,
            reason: format!("the verdict has no {name} {what}"),
        }
    }
}

/// One accepted value of a field, with the check that proved it and the parts that showed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinValue {
    pub value: String,
    /// The check(s) the value came from, such as `tdx_quote_signature + event_log_replay`.
    pub provenance: String,
    /// The scopes that showed it (`model:0`, `node:0x…/gpu:1`).
    pub scopes: Vec<String>,
    /// The name the known-measurements table gives the value (`mrtd`), printed beside it.
    pub name: Option<String>,
}

/// The allowlist of one field: the sorted distinct values of every part the table is judged on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPins {
    pub field: String,
    pub values: Vec<PinValue>,
}

/// The pins of one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub table: PinTable,
    pub fields: Vec<FieldPins>,
}

/// What a verdict that passed the rule gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Produced {
    /// `[target.pins]`, then `[target.gateway_pins]` when the answer has a NEAR gateway.
    pub blocks: Vec<Block>,
    /// TCB status → the parts that showed it.
    pub tcb: BTreeMap<String, Vec<String>>,
    /// Checks outside the rule that did not pass (pins and `identity_pinned` left out: they judge
    /// the policy being replaced), for the operator to read before trusting the values.
    pub notes: Vec<Problem>,
    /// The TDX module each part runs, as the known-measurements table names it (`mrseam` is not
    /// written: the table judges it): `7bf06328… TDX module 1.5.16 (model:0)`.
    pub modules: Vec<String>,
    /// Fields of [`PINNED_FIELDS`] the evidence shows but this version cannot pin.
    pub unpinnable: Vec<String>,
}

/// Applies the pass rule to a verdict and, when it holds, reads the pins.
pub fn derive(verdict: &Verdict) -> Result<Produced, Vec<Problem>> {
    let problems = problems(verdict);
    if !problems.is_empty() {
        return Err(problems);
    }
    let parts = part_scopes(verdict);
    let mut blocks = vec![block(verdict, PinTable::Model, &PINNED_FIELDS)];
    if parts.contains(&GATEWAY_SCOPE) {
        blocks.push(block(verdict, PinTable::Gateway, &PINNED_FIELDS));
    }
    let mut tcb: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for o in verdict.observed.iter().filter(|o| o.field == "tcb_status") {
        tcb.entry(o.value.clone())
            .or_default()
            .push(o.scope.clone());
    }
    let notes = verdict
        .checks
        .iter()
        .filter(|c| c.state != State::Pass && !REQUIRED_CHECKS.contains(&c.name.as_str()))
        .filter(|c| c.name != IDENTITY_PINNED && !c.name.starts_with(PIN_PREFIX))
        .map(Problem::of)
        .collect();
    Ok(Produced {
        blocks,
        tcb,
        notes,
        modules: modules(verdict),
        unpinnable: unpinnable(verdict, &PINNED_FIELDS),
    })
}

/// Each distinct proven MRSEAM with the table's name for it (or that it has none) and the parts
/// that showed it.
fn modules(verdict: &Verdict) -> Vec<String> {
    let mut seen: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for o in verdict
        .observed
        .iter()
        .filter(|o| o.field == "mrseam" && o.source.is_evidence())
    {
        seen.entry(o.value.as_str())
            .or_default()
            .insert(if o.scope.is_empty() {
                "the node"
            } else {
                o.scope.as_str()
            });
    }
    seen.into_iter()
        .map(|(value, scopes)| {
            let name = known::shipped_name("mrseam", value)
                .unwrap_or("not in the known-measurements table");
            let scopes: Vec<&str> = scopes.into_iter().collect();
            format!("{value} {name} ({})", scopes.join(" "))
        })
        .collect()
}

/// The fields of `fields` the evidence shows but this version's pin table does not know.
fn unpinnable(verdict: &Verdict, fields: &[&str]) -> Vec<String> {
    fields
        .iter()
        .filter(|f| pin_field(f).is_none())
        .filter(|f| {
            verdict
                .observed
                .iter()
                .any(|o| o.field == **f && o.source.is_evidence())
        })
        .map(|f| f.to_string())
        .collect()
}

/// The scopes of the attested parts: those with a `tdx_quote_parse` check.
fn part_scopes(verdict: &Verdict) -> Vec<&str> {
    verdict
        .checks_named(TDX_QUOTE_PARSE)
        .map(|c| c.scope.as_str())
        .collect()
}

/// Every reason the verdict may not give pins, in the verdict's order; empty when it may.
pub fn problems(verdict: &Verdict) -> Vec<Problem> {
    let mut out: Vec<Problem> = verdict
        .checks
        .iter()
        .filter(|c| REQUIRED_CHECKS.contains(&c.name.as_str()) && c.state != State::Pass)
        .map(Problem::of)
        .collect();
    let parts = part_scopes(verdict);
    let has_check = |name: &str, scope: &str| {
        verdict
            .checks
            .iter()
            .any(|c| c.name == name && c.scope == scope)
    };
    for part in &parts {
        for name in PART_CHECKS {
            if !has_check(name, part) {
                out.push(Problem::missing(name, part, "for this part"));
            }
        }
    }
    let models: Vec<&str> = parts
        .iter()
        .copied()
        .filter(|s| scope_serves_inference(s))
        .collect();
    if models.is_empty() && out.is_empty() {
        // A verdict without a part that runs the model has nothing to pin.
        let format = verdict.checks_named(ATTESTATION_FORMAT).next();
        out.push(match format.filter(|c| c.state != State::Pass) {
            Some(check) => Problem::of(check),
            None => Problem::missing(TDX_QUOTE_PARSE, "", "for a part that runs the model"),
        });
    }
    for model in &models {
        if !has_check(NRAS_TOKEN, model) {
            out.push(Problem::missing(NRAS_TOKEN, model, "for this part"));
        }
        let gpus = gpu_prefix(model);
        let gpu_checked = verdict
            .checks_named(GPU_EVIDENCE_SIGNATURE)
            .any(|c| c.scope == *model || c.scope.starts_with(&gpus));
        if !gpu_checked {
            out.push(Problem::missing(
                GPU_EVIDENCE_SIGNATURE,
                model,
                "for any gpu of this part",
            ));
        }
    }
    // A revoked platform is never pinned, whatever the policy allows; other TCB statuses are
    // shown, since the TCB is judged at every check and updating it must not need new pins.
    for o in verdict
        .observed
        .iter()
        .filter(|o| o.field == "tcb_status" && o.value == "Revoked")
    {
        out.push(Problem {
            name: TDX_TCB_STATUS.to_string(),
            scope: o.scope.clone(),
            state: State::Fail,
            reason: "the platform's TCB is Revoked: a revoked platform is never pinned".into(),
        });
    }
    out
}

/// The scope prefix of a part's GPUs.
fn gpu_prefix(part: &str) -> String {
    if part.is_empty() {
        "gpu:".to_string()
    } else {
        format!("{part}/gpu:")
    }
}

/// Whether an observation's scope belongs to the parts a table is judged on: the gateway's for
/// `gateway_pins`; every other part for `pins` (the nodes or models, their GPUs, and the compose
/// manager running in their TD).
fn in_table(table: PinTable, scope: &str) -> bool {
    let first = scope.split('/').next().unwrap_or_default();
    match table {
        PinTable::Model => first != GATEWAY_SCOPE,
        PinTable::Gateway => first == GATEWAY_SCOPE,
    }
}

/// The check a value of this source was proven by.
fn provenance(source: Source) -> &'static str {
    match source {
        Source::Quote => TDX_QUOTE_SIGNATURE,
        Source::EventLog => "tdx_quote_signature + event_log_replay",
        Source::GpuEvidence => GPU_EVIDENCE_SIGNATURE,
        // A NEAR compose manager's action log: evidence once its quote verified, its REPORTDATA
        // binds the log and its TD is the model's.
        Source::ComposeManager => "tdx_quote_signature + report_data_binding + same_td",
        other => other.as_str(),
    }
}

/// The pins of one table: for each field it may pin that the evidence shows, the sorted
/// distinct values.
fn block(verdict: &Verdict, table: PinTable, fields: &[&str]) -> Block {
    let mut out = Vec::new();
    for field in fields {
        let pinnable = pin_field(field)
            .is_some_and(|spec| table == PinTable::Model || spec.side == PinSide::Tdx);
        if !pinnable {
            continue;
        }
        // value → (provenance, scopes)
        let mut values: BTreeMap<&str, (BTreeSet<&str>, BTreeSet<&str>)> = BTreeMap::new();
        for o in verdict
            .observed
            .iter()
            .filter(|o| o.field == *field && o.source.is_evidence() && in_table(table, &o.scope))
        {
            let entry = values.entry(o.value.as_str()).or_default();
            entry.0.insert(provenance(o.source));
            entry.1.insert(o.scope.as_str());
        }
        if values.is_empty() {
            continue;
        }
        out.push(FieldPins {
            field: field.to_string(),
            values: values
                .into_iter()
                .map(|(value, (provenance, scopes))| PinValue {
                    value: value.to_string(),
                    provenance: provenance.into_iter().collect::<Vec<_>>().join("; "),
                    scopes: scopes.into_iter().map(str::to_string).collect(),
                    name: known::shipped_name(field, value).map(str::to_string),
                })
                .collect(),
        });
    }
    Block { table, fields: out }
}

#[cfg(test)]
#[path = "rule_tests.rs"]
mod tests;
