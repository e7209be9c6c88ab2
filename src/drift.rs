//! Drift: a fleet-wide measurement outside its pin allowlist, or a value never seen before for
//! its target.
//!
//! Pure, like `verify/`: the history of values a target has shown comes in, the events a new
//! check raises go out, and the store persists both so drift state survives restarts. Values that
//! differ per node by design (signing address, instance id) are tracked per node but never
//! raise drift, and a value seen before for the target is known, whichever node showed it, so a
//! model served round-robin by known nodes does not flap.

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

/// What a target has shown so far: every value of every tracked field with when it was first
/// seen, and the fleet values that raised drift with when they did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetHistory {
    /// field → value → first seen.
    pub values: BTreeMap<String, BTreeMap<String, DateTime<Utc>>>,
    /// (field, value) → when its drift event was raised.
    pub drifted: BTreeMap<(String, String), DateTime<Utc>>,
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
/// the allowlist, or raised a drift event within `window` before `now`.
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
            .is_some_and(|at| now.signed_duration_since(*at) <= window);
        let drifting = recent || not_allowed(policy, &m.field, &m.value);
        let flag = flags.entry(m.field.clone()).or_insert(false);
        *flag = *flag || drifting;
    }
    flags
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::cloned_ref_to_slice_refs
)]
mod tests {
    use super::*;
    use crate::verify::{Observed, State};

    fn verdict(observed: &[(&str, &str, &str, Source)]) -> Verdict {
        Verdict {
            format: "teewatch-verdict/1".into(),
            target: "t".into(),
            observed_at: "2026-01-01T00:00:00Z".into(),
            attestation_format: crate::verify::AttestationFormat::Dstack,
            state: State::Pass,
            // The quote of the single part verified, so its values count.
            checks: vec![crate::verify::Check {
                name: crate::verify::checks::TDX_QUOTE_SIGNATURE.into(),
                scope: String::new(),
                state: State::Pass,
                reason: String::new(),
            }],
            observed: observed
                .iter()
                .map(|(scope, field, value, source)| Observed {
                    scope: scope.to_string(),
                    field: field.to_string(),
                    value: value.to_string(),
                    source: *source,
                })
                .collect(),
            trust: vec![],
            transport: None,
            policy_source: None,
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn a_compose_managers_new_action_is_news_only_against_the_same_td() {
        let m = |value: &str| Measurement {
            field: LAST_ACTION_FIELD.into(),
            node: "compose_manager".into(),
            value: value.into(),
            source: "compose_manager".into(),
        };
        let at = DateTime::parse_from_rfc3339("2026-06-10T08:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut history = TargetHistory::default();
        let first = [m("aa/compose_up@1")];
        history.absorb(&first, &[], at);
        // Another node, seen for the first time (round robin): its own baseline.
        let other = [m("bb/compose_up@2")];
        assert!(detect(&history, &other, &Policy::default(), at).is_empty());
        history.absorb(&other, &[], at);
        // The first node's log grew: an event naming that node's earlier action only.
        let events = detect(
            &history,
            &[m("aa/docker_restart@3")],
            &Policy::default(),
            at,
        );
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].old_values, ["aa/compose_up@1"]);
        assert_eq!(events[0].reasons, [DriftReason::New]);
    }

    #[test]
    fn values_of_a_quote_whose_signature_did_not_verify_are_not_measurements() {
        let mut v = verdict(&[
            ("", "mrtd", "aa", Source::Quote),
            ("", "compose_hash", "cc", Source::EventLog),
            ("gpu:0", "gpu_driver_version", "550.1", Source::GpuEvidence),
        ]);
        v.checks[0].state = State::Unknown;
        let fields: Vec<String> = measurements(&v).into_iter().map(|m| m.field).collect();
        assert_eq!(fields, ["gpu_driver_version"]);
    }

    #[test]
    fn claims_are_not_measurements_and_gpu_blocks_fold_per_node() {
        let v = verdict(&[
            ("", "mrtd", "aa", Source::Quote),
            ("", "os_image_hash", "bb", Source::Claim),
            ("gpu:0", "gpu_block_1", "01", Source::GpuEvidence),
            ("gpu:0", "gpu_block_2", "02", Source::GpuEvidence),
            ("gpu:1", "gpu_block_1", "01", Source::GpuEvidence),
            ("gpu:1", "gpu_block_2", "03", Source::GpuEvidence),
            ("gpu:0", "gpu_driver_version", "550.1", Source::GpuEvidence),
            ("gpu:1", "gpu_driver_version", "550.1", Source::GpuEvidence),
        ]);
        let m = measurements(&v);
        let fields: Vec<&str> = m.iter().map(|m| m.field.as_str()).collect();
        assert_eq!(fields, ["gpu_driver_version", "gpu_measurements", "mrtd"]);
        assert_eq!(m[0].value, "550.1");
        // Swapping the two GPUs gives the same digest; changing one block does not.
        let swapped = verdict(&[
            ("gpu:1", "gpu_block_1", "01", Source::GpuEvidence),
            ("gpu:1", "gpu_block_2", "02", Source::GpuEvidence),
            ("gpu:0", "gpu_block_1", "01", Source::GpuEvidence),
            ("gpu:0", "gpu_block_2", "03", Source::GpuEvidence),
        ]);
        let changed = verdict(&[
            ("gpu:0", "gpu_block_1", "01", Source::GpuEvidence),
            ("gpu:0", "gpu_block_2", "02", Source::GpuEvidence),
            ("gpu:1", "gpu_block_1", "01", Source::GpuEvidence),
            ("gpu:1", "gpu_block_2", "04", Source::GpuEvidence),
        ]);
        assert_eq!(measurements(&swapped)[0].value, m[1].value);
        assert_ne!(measurements(&changed)[0].value, m[1].value);
    }

    #[test]
    fn baseline_is_not_drift_a_new_value_is_once_and_round_robin_is_not() {
        let policy = Policy::default();
        let mut history = TargetHistory::default();
        let node_a = Measurement {
            field: "mrtd".into(),
            node: "node:0xa".into(),
            value: "aa".into(),
            source: "quote".into(),
        };
        let node_b = Measurement {
            node: "node:0xb".into(),
            value: "bb".into(),
            ..node_a.clone()
        };
        let t0 = at("2026-01-01T00:00:00Z");
        // Both nodes in the first check: the baseline.
        let first = [node_a.clone(), node_b.clone()];
        assert!(detect(&history, &first, &policy, t0).is_empty());
        history.absorb(&first, &[], t0);
        // Round-robin: one node per check, both known.
        assert!(detect(&history, &[node_b.clone()], &policy, t0).is_empty());
        assert!(detect(&history, &[node_a.clone()], &policy, t0).is_empty());
        // A new value is an event naming the old ones.
        let node_c = Measurement {
            value: "cc".into(),
            ..node_a.clone()
        };
        let events = detect(&history, &[node_c.clone()], &policy, t0);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].old_values, ["aa", "bb"]);
        assert_eq!(events[0].reasons, [DriftReason::New]);
        history.absorb(&[node_c.clone()], &events, t0);
        // Once absorbed, the same value raises nothing.
        assert!(detect(&history, &[node_c], &policy, t0).is_empty());
    }

    #[test]
    fn value_outside_the_allowlist_drifts_even_as_baseline() {
        let mut policy = Policy::default();
        policy.pins.insert("mrtd".into(), vec!["0xAA".into()]);
        let history = TargetHistory::default();
        let allowed = Measurement {
            field: "mrtd".into(),
            node: "".into(),
            value: "aa".into(),
            source: "quote".into(),
        };
        assert!(
            detect(
                &history,
                &[allowed.clone()],
                &policy,
                at("2026-01-01T00:00:00Z")
            )
            .is_empty()
        );
        let other = Measurement {
            value: "bb".into(),
            ..allowed
        };
        let events = detect(
            &history,
            &[other.clone()],
            &policy,
            at("2026-01-01T00:00:00Z"),
        );
        assert_eq!(events[0].reasons, [DriftReason::NotAllowed]);
        let flags = drift_flags(
            &history,
            &[other],
            &policy,
            at("2030-01-01T00:00:00Z"),
            Duration::from_secs(60),
        );
        assert_eq!(flags.get("mrtd"), Some(&true));
    }

    #[test]
    fn drift_flag_clears_after_the_window() {
        let policy = Policy::default();
        let mut history = TargetHistory::default();
        let m = Measurement {
            field: "compose_hash".into(),
            node: "".into(),
            value: "cc".into(),
            source: "event_log".into(),
        };
        let t0 = at("2026-01-01T00:00:00Z");
        history
            .drifted
            .insert(("compose_hash".into(), "cc".into()), t0);
        let window = Duration::from_secs(3600);
        let flags = |now| drift_flags(&history, &[m.clone()], &policy, now, window);
        assert_eq!(
            flags(at("2026-01-01T00:59:00Z")).get("compose_hash"),
            Some(&true)
        );
        assert_eq!(
            flags(at("2026-01-01T01:01:00Z")).get("compose_hash"),
            Some(&false)
        );
    }

    #[test]
    fn node_of_scopes() {
        assert_eq!(node_of(""), "");
        assert_eq!(node_of("gpu:3"), "");
        assert_eq!(node_of("node:0xab/gpu:3"), "node:0xab");
        assert_eq!(node_of("node:#1"), "node:#1");
    }
}
