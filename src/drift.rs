//! Drift: a fleet-wide measurement outside its pin allowlist, or a value never seen before for
//! its target.
//!
//! Pure, like `verify/`: the history of values a target has shown comes in, the events a new
//! check raises go out, and the store persists both so drift state survives restarts. Values that
//! differ per node by design (signing address, instance id) are tracked per node but never
//! raise drift, and a value seen before for the target is known, whichever node showed it, so a
//! model served round-robin by known nodes does not flap.
//!
//! A drift is accepted when the pins in force accept its value (a reload put them there) or
//! when someone acknowledged it after review; from then on its event no longer keeps the drift
//! flag up, while a value outside the pins always does.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::verify::{Policy, Source, Verdict};

/// The measurements expected to be equal on every node of a target, tracked for drift and
/// exported as `teewatch_measurement_info`. GPU blocks are folded into `gpu_measurements`; the
/// NEAR gateway's measurements are tracked under `gateway:<field>` (it runs other software than
/// the model, so its values would otherwise look like the model's drift); `attestation_format`
/// is the format the response came in. A NEAR compose manager's deployed software and its last
/// action are tracked too, so a redeploy or a container restart inside the TD is a drift event.
pub const FLEET_FIELDS: [&str; 27] = [
    "mrtd",
    "rtmr0",
    "rtmr1",
    "rtmr2",
    "mrseam",
    "compose_hash",
    "app_id",
    "os_image_hash",
    "key_provider",
    "gpu_measurements",
    "gpu_driver_version",
    "gpu_vbios_version",
    "attestation_format",
    "deployed_compose_sha256",
    "deployed_compose_file",
    "deployed_tag",
    "deployed_commit",
    "compose_manager_last_action",
    "gateway:mrtd",
    "gateway:rtmr0",
    "gateway:rtmr1",
    "gateway:rtmr2",
    "gateway:mrseam",
    "gateway:compose_hash",
    "gateway:app_id",
    "gateway:os_image_hash",
    "gateway:key_provider",
];

/// The prefix of the gateway's tracked fields.
pub const GATEWAY_PREFIX: &str = "gateway:";

/// The field that tracks the response's attestation format.
pub const ATTESTATION_FORMAT_FIELD: &str = "attestation_format";

/// Values that differ per node by design: stored with their node, never drift.
pub const PER_NODE_FIELDS: [&str; 2] = ["signing_address", "instance_id"];

/// The folded field holding a digest over every GPU block of every GPU of a node.
pub const GPU_MEASUREMENTS: &str = "gpu_measurements";

/// One proven value of a tracked field on one node.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Measurement {
    pub field: String,
    /// The node's scope (`""` for a single-node report, `node:0x…` otherwise).
    pub node: String,
    pub value: String,
    /// Where the value was read (`quote`, `event_log`, `gpu_evidence`), or `derived` for
    /// `gpu_measurements`.
    pub source: String,
}

/// Why a value raised a drift event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftReason {
    /// The target had shown other values for this field, never this one.
    New,
    /// The field is pinned and the value is not in its allowlist.
    NotAllowed,
}

impl DriftReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DriftReason::New => "new",
            DriftReason::NotAllowed => "not_allowed",
        }
    }

    pub fn from_name(name: &str) -> Option<DriftReason> {
        match name {
            "new" => Some(DriftReason::New),
            "not_allowed" => Some(DriftReason::NotAllowed),
            _ => None,
        }
    }
}

/// A value of a fleet-wide field that appeared and is new or not allowed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriftEvent {
    pub field: String,
    /// The node that showed the value first in this check.
    pub node: String,
    /// The values the target had shown for the field before, sorted.
    pub old_values: Vec<String>,
    pub new_value: String,
    pub reasons: Vec<DriftReason>,
    pub at: DateTime<Utc>,
}

/// How a drifted value was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AcceptedBy {
    /// The target's pins in force accept the value (put in force by a reload or a restart, or
    /// already when the value appeared).
    Pin,
    /// Someone acknowledged the drift after review (`teewatch history ack`).
    Ack,
}

impl AcceptedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            AcceptedBy::Pin => "pin",
            AcceptedBy::Ack => "ack",
        }
    }

    pub fn from_name(name: &str) -> Option<AcceptedBy> {
        match name {
            "pin" => Some(AcceptedBy::Pin),
            "ack" => Some(AcceptedBy::Ack),
            _ => None,
        }
    }
}

/// A drifted value of a target accepted: from `at` on, its drift event no longer keeps
/// `teewatch_measurement_drift` up (a value outside the pins still does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acceptance {
    pub field: String,
    pub value: String,
    pub how: AcceptedBy,
    /// Who acknowledged it (`user@host` as the command found them), when known; `None` for pins.
    pub by: Option<String>,
    /// Why, in the acknowledger's words.
    pub note: Option<String>,
    pub at: DateTime<Utc>,
}

/// What a target has shown so far: every value of every tracked field with when it was first
/// seen, the fleet values that raised drift with when they did, and when drifted values were
/// accepted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetHistory {
    /// field → value → first seen.
    pub values: BTreeMap<String, BTreeMap<String, DateTime<Utc>>>,
    /// (field, value) → when its drift event was raised.
    pub drifted: BTreeMap<(String, String), DateTime<Utc>>,
    /// (field, value) → when it was last accepted (by pins or an acknowledgement).
    pub accepted: BTreeMap<(String, String), DateTime<Utc>>,
}

/// The node a scope belongs to: `node:0x…/gpu:3` → `node:0x…`, `gpu:3` → `""`.
pub fn node_of(scope: &str) -> &str {
    if scope.starts_with("gpu:") {
        return "";
    }
    scope.split('/').next().unwrap_or("")
}

/// The tracked measurements of a verdict: only values proven by evidence (never claims), and of
/// the TDX side only from quotes whose signature verified (a forged quote must not seed "already
/// seen" values); the parts that run the model under their field names, the NEAR gateway under
/// `gateway:<field>` (the compose manager runs in the model's TD and is not tracked apart); GPU
/// versions folded per node (distinct values joined by `,`), GPU blocks folded per node into
/// `gpu_measurements`; and the response's attestation format.
pub fn measurements(verdict: &Verdict) -> Vec<Measurement> {
    use crate::verify::checks::{ATTESTATION_FORMAT, TDX_QUOTE_SIGNATURE};
    use crate::verify::report::{GATEWAY_SCOPE, scope_serves_inference};
    let mut out: BTreeSet<Measurement> = BTreeSet::new();
    // node → GPU scope → block index → value.
    let mut blocks: BTreeMap<&str, BTreeMap<&str, BTreeMap<u32, &str>>> = BTreeMap::new();
    // (node, field) → distinct values.
    let mut gpu_versions: BTreeMap<(&str, &str), BTreeSet<&str>> = BTreeMap::new();
    let verified_quotes: BTreeSet<&str> = verdict
        .checks
        .iter()
        .filter(|c| c.name == TDX_QUOTE_SIGNATURE && c.state == crate::verify::State::Pass)
        .map(|c| c.scope.as_str())
        .collect();
    // GPU values count only from evidence whose signature verified (their source says so); TDX
    // values only from a verified quote.
    // (A compose manager's values are evidence only when its quote verified and binds its log.)
    let proven = |o: &&crate::verify::Observed| {
        o.source.is_evidence()
            && (matches!(o.source, Source::GpuEvidence | Source::ComposeManager)
                || verified_quotes.contains(o.scope.as_str()))
    };
    for o in verdict.observed.iter().filter(proven) {
        if o.source == Source::ComposeManager {
            if FLEET_FIELDS.contains(&o.field.as_str()) {
                out.insert(Measurement {
                    field: o.field.clone(),
                    node: node_of(&o.scope).to_string(),
                    value: o.value.clone(),
                    source: o.source.as_str().to_string(),
                });
            }
            continue;
        }
        if o.scope == GATEWAY_SCOPE {
            let field = format!("{GATEWAY_PREFIX}{}", o.field);
            if FLEET_FIELDS.contains(&field.as_str()) {
                out.insert(Measurement {
                    field,
                    node: GATEWAY_SCOPE.to_string(),
                    value: o.value.clone(),
                    source: o.source.as_str().to_string(),
                });
            }
            continue;
        }
        if !scope_serves_inference(&o.scope) {
            continue;
        }
        let node = node_of(&o.scope);
        if let Some(index) = o.field.strip_prefix("gpu_block_") {
            if let Ok(index) = index.parse::<u32>() {
                blocks
                    .entry(node)
                    .or_default()
                    .entry(o.scope.as_str())
                    .or_default()
                    .insert(index, o.value.as_str());
            }
        } else if o.field == "gpu_driver_version" || o.field == "gpu_vbios_version" {
            gpu_versions
                .entry((node, o.field.as_str()))
                .or_default()
                .insert(o.value.as_str());
        } else if FLEET_FIELDS.contains(&o.field.as_str())
            || PER_NODE_FIELDS.contains(&o.field.as_str())
        {
            out.insert(Measurement {
                field: o.field.clone(),
                node: node.to_string(),
                value: o.value.clone(),
                source: o.source.as_str().to_string(),
            });
        }
    }
    for ((node, field), values) in gpu_versions {
        out.insert(Measurement {
            field: field.to_string(),
            node: node.to_string(),
            value: values.into_iter().collect::<Vec<_>>().join(","),
            source: Source::GpuEvidence.as_str().to_string(),
        });
    }
    for (node, gpus) in blocks {
        out.insert(Measurement {
            field: GPU_MEASUREMENTS.to_string(),
            node: node.to_string(),
            value: gpu_digest(gpus.values()),
            source: "derived".to_string(),
        });
    }
    // A response arrived (the format check was decided): the format it came in.
    if verdict
        .checks
        .iter()
        .any(|c| c.name == ATTESTATION_FORMAT && c.state != crate::verify::State::Unknown)
    {
        out.insert(Measurement {
            field: ATTESTATION_FORMAT_FIELD.to_string(),
            node: String::new(),
            value: verdict.attestation_format.as_str().to_string(),
            source: "response".to_string(),
        });
    }
    out.into_iter().collect()
}

/// SHA-256 over every GPU's block list, independent of the order the GPUs were listed in: each
/// GPU becomes `index=value;…` in block order, the GPU lines are sorted and joined by newlines.
fn gpu_digest<'a>(gpus: impl Iterator<Item = &'a BTreeMap<u32, &'a str>>) -> String {
    let mut lines: Vec<String> = gpus
        .map(|blocks| {
            blocks
                .iter()
                .map(|(index, value)| format!("{index}={}", value.to_ascii_lowercase()))
                .collect::<Vec<_>>()
                .join(";")
        })
        .collect();
    lines.sort();
    hex::encode(Sha256::digest(lines.join("\n").as_bytes()))
}

/// Whether a value is outside the field's allowlist (a field without pins has none): the
/// gateway's fields against `gateway_pins`, the format against `formats`.
fn not_allowed(policy: &Policy, field: &str, value: &str) -> bool {
    if field == ATTESTATION_FORMAT_FIELD {
        return !policy.accepts_format(value);
    }
    let (pins, field) = match field.strip_prefix(GATEWAY_PREFIX) {
        Some(field) => (&policy.gateway_pins, field),
        None => (&policy.pins, field),
    };
    pins.contains_key(field) && !crate::verify::policy::pins_accept(pins, field, value)
}

/// Whether the field is pinned and its pins accept the value: the operator's allowlist says the
/// value is wanted, so a drift event it raised is accepted. The format field is "pinned" by
/// `formats`.
pub fn pins_accept(policy: &Policy, field: &str, value: &str) -> bool {
    if field == ATTESTATION_FORMAT_FIELD {
        return policy.formats.is_some() && policy.accepts_format(value);
    }
    let (pins, field) = match field.strip_prefix(GATEWAY_PREFIX) {
        Some(field) => (&policy.gateway_pins, field),
        None => (&policy.pins, field),
    };
    pins.contains_key(field) && crate::verify::policy::pins_accept(pins, field, value)
}

/// The drifted values of a history that the pins in force accept and for which no acceptance
/// is recorded since their drift event: each is to be recorded as accepted by pins.
pub fn awaiting_pin_acceptance(history: &TargetHistory, policy: &Policy) -> Vec<(String, String)> {
    history
        .drifted
        .iter()
        .filter(|((field, value), at)| {
            !history.is_accepted(field, value, **at) && pins_accept(policy, field, value)
        })
        .map(|(key, _)| key.clone())
        .collect()
}

/// The drift events a check's measurements raise against what the target showed before.
///
/// A value raises an event the first time it is seen for the target, when the target had other
/// values for the field (`new`) or when the field is pinned and the value is not allowed
/// (`not_allowed`). The first values a target ever shows are its baseline: not new. A value is
/// judged once, so an unchanged drifted value is stored once, not once per check.
pub fn detect(
    history: &TargetHistory,
    measurements: &[Measurement],
    policy: &Policy,
    at: DateTime<Utc>,
) -> Vec<DriftEvent> {
    let mut events: Vec<DriftEvent> = Vec::new();
    for m in measurements
        .iter()
        .filter(|m| FLEET_FIELDS.contains(&m.field.as_str()))
    {
        let known = history.values.get(&m.field);
        if known.is_some_and(|values| values.contains_key(&m.value)) {
            continue;
        }
        if m.field == LAST_ACTION_FIELD {
            if let Some(event) = new_action(known, m, at) {
                events.push(event);
            }
            continue;
        }
        if events
            .iter()
            .any(|e| e.field == m.field && e.new_value == m.value)
        {
            continue;
        }
        let mut reasons = Vec::new();
        if known.is_some_and(|values| !values.is_empty()) {
            reasons.push(DriftReason::New);
        }
        if not_allowed(policy, &m.field, &m.value) {
            reasons.push(DriftReason::NotAllowed);
        }
        if reasons.is_empty() {
            continue;
        }
        events.push(DriftEvent {
            field: m.field.clone(),
            node: m.node.clone(),
            old_values: known
                .map(|values| values.keys().cloned().collect())
                .unwrap_or_default(),
            new_value: m.value.clone(),
            reasons,
            at,
        });
    }
    events
}

/// The compose manager's last action, `<td>/<action>@<timestamp>`: compared per TD.
pub const LAST_ACTION_FIELD: &str = "compose_manager_last_action";

/// A compose manager's last action is news only against the same TD's earlier one: each node
/// keeps its own log, so a node seen for the first time (round robin) is its own baseline.
fn new_action(
    known: Option<&BTreeMap<String, DateTime<Utc>>>,
    m: &Measurement,
    at: DateTime<Utc>,
) -> Option<DriftEvent> {
    let td = m.value.split_once('/').map(|(td, _)| td)?;
    let same_td: Vec<String> = known?
        .keys()
        .filter(|v| v.split_once('/').is_some_and(|(other, _)| other == td))
        .cloned()
        .collect();
    (!same_td.is_empty()).then(|| DriftEvent {
        field: m.field.clone(),
        node: m.node.clone(),
        old_values: same_td,
        new_value: m.value.clone(),
        reasons: vec![DriftReason::New],
        at,
    })
}

impl TargetHistory {
    /// Whether the drifted value was accepted at or after its drift event (raised at
    /// `drifted_at`).
    pub fn is_accepted(&self, field: &str, value: &str, drifted_at: DateTime<Utc>) -> bool {
        self.accepted
            .get(&(field.to_string(), value.to_string()))
            .is_some_and(|at| *at >= drifted_at)
    }

    /// Records that the value was accepted at `at` (the latest acceptance is kept).
    pub fn accept(&mut self, field: &str, value: &str, at: DateTime<Utc>) {
        let slot = self
            .accepted
            .entry((field.to_string(), value.to_string()))
            .or_insert(at);
        *slot = (*slot).max(at);
    }

    /// Adds a check's measurements (seen at `at`) and the events it raised to the history.
    pub fn absorb(
        &mut self,
        measurements: &[Measurement],
        events: &[DriftEvent],
        at: DateTime<Utc>,
    ) {
        for event in events {
            self.drifted
                .entry((event.field.clone(), event.new_value.clone()))
                .or_insert(event.at);
        }
        for m in measurements {
            self.values
                .entry(m.field.clone())
                .or_default()
                .entry(m.value.clone())
                .or_insert(at);
        }
    }
}

/// The value exported for each fleet field: with several nodes, the value of the first node in
/// scope order (one series per target and field, as the metrics require).
pub fn latest_values(measurements: &[Measurement]) -> BTreeMap<String, String> {
    let mut latest: BTreeMap<String, String> = BTreeMap::new();
    for m in measurements
        .iter()
        .filter(|m| FLEET_FIELDS.contains(&m.field.as_str()))
    {
        latest.entry(m.field.clone()).or_insert(m.value.clone());
    }
    latest
}

/// Whether each fleet field of the latest check is drifting now: some node's value is outside
/// the allowlist, or raised a drift event within `window` before `now` that is not accepted (the
/// pins in force accept the value, or an acceptance was recorded after the event).
pub fn drift_flags(
    history: &TargetHistory,
    latest: &[Measurement],
    policy: &Policy,
    now: DateTime<Utc>,
    window: Duration,
) -> BTreeMap<String, bool> {
    let window = chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
    let mut flags: BTreeMap<String, bool> = BTreeMap::new();
    for m in latest
        .iter()
        .filter(|m| FLEET_FIELDS.contains(&m.field.as_str()))
    {
        let recent = history
            .drifted
            .get(&(m.field.clone(), m.value.clone()))
            .is_some_and(|at| {
                now.signed_duration_since(*at) <= window
                    && !history.is_accepted(&m.field, &m.value, *at)
                    && !pins_accept(policy, &m.field, &m.value)
            });
        let drifting = recent || not_allowed(policy, &m.field, &m.value);
        let flag = flags.entry(m.field.clone()).or_insert(false);
        *flag = *flag || drifting;
    }
    flags
}

#[cfg(test)]
#[path = "drift_tests.rs"]
mod tests;
