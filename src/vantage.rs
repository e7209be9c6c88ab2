//! Vantage points: whether the latest checks of one target, made from several network
//! positions (`mode = "replicate"`, one `vantage` per instance), disagree.
//!
//! Pure, like `drift`: the latest check from each vantage point comes in with the target's
//! interval and the current time, the comparison goes out; the fleet view feeds it and the
//! metrics render it (`teewatch_vantage_state`, `teewatch_vantage_disagreement`). An on-path
//! interception (a rogue TLS terminator, a hijacked route to another node) is invisible from a
//! single vantage point and shows here as two vantage points that judged the same thing
//! differently.
//!
//! The rules, each with a test below:
//! - A vantage point counts when its latest check finished within the last two intervals (one
//!   missed slot is tolerated; a vantage point that stopped checking is not compared with live
//!   ones). A check without a vantage (shard mode) is no vantage point.
//! - A check disagrees when, for one of its scopes, one counted vantage point judged it `pass`
//!   and another `fail`. `unknown` is no judgement, so it disagrees with nothing: a fetch that
//!   failed from one network only, or canary chats not due on that instance's check
//!   (`[target.canary] every`), is not what an interception looks like, and counting it would
//!   page on every network blip. A check one verdict lists and another does not is likewise not
//!   compared (another format or profile shows in `measurements` or in the checks both list).
//! - `measurements` disagrees when a tracked measurement (`drift::FLEET_FIELDS`) proven from two
//!   vantage points has different values: a node answering one network with another image. A
//!   field proven from one side only is not compared (the checks say why it is unproven).
//! - With fewer than two counted vantage points nothing is compared.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::drift::{FLEET_FIELDS, Measurement};
use crate::verify::{State, Verdict};

/// The name `teewatch_vantage_disagreement` gives a disagreement on tracked measurements.
pub const MEASUREMENTS: &str = "measurements";

/// How many intervals old a vantage point's latest check may be and still count.
pub const FRESH_INTERVALS: u32 = 2;

/// One check of a verdict, as far as comparing vantage points needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOutcome {
    pub name: String,
    pub scope: String,
    pub state: State,
}

/// The latest check of a target from one vantage point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VantageCheck {
    /// The vantage point's label (`[daemon] vantage`); empty for a check made in shard mode.
    pub vantage: String,
    pub finished_at: DateTime<Utc>,
    /// The verdict's overall state.
    pub state: State,
    pub checks: Vec<CheckOutcome>,
    /// The tracked measurements (`drift::measurements`).
    pub measurements: Vec<Measurement>,
}

impl VantageCheck {
    /// The parts of a verdict and its tracked measurements that vantage points are compared on.
    pub fn from_verdict(
        vantage: &str,
        finished_at: DateTime<Utc>,
        verdict: &Verdict,
        measurements: &[Measurement],
    ) -> VantageCheck {
        VantageCheck {
            vantage: vantage.to_string(),
            finished_at,
            state: verdict.state,
            checks: verdict
                .checks
                .iter()
                .map(|c| CheckOutcome {
                    name: c.name.clone(),
                    scope: c.scope.clone(),
                    state: c.state,
                })
                .collect(),
            measurements: measurements.to_vec(),
        }
    }
}

/// One thing the counted vantage points disagree on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disagreement {
    /// A verdict check's name, or [`MEASUREMENTS`].
    pub check: String,
    /// The scopes (of a check) or fields (of `measurements`) they differ on, sorted.
    pub on: Vec<String>,
    /// What each counted vantage point that judged it saw: `pass` or `fail` for a check (its
    /// worst state over the differing scopes), the differing fields' values for measurements.
    pub seen: BTreeMap<String, String>,
}

impl Disagreement {
    /// A one-line account for logs and the status page.
    pub fn reason(&self) -> String {
        let seen: Vec<String> = self
            .seen
            .iter()
            .map(|(vantage, what)| format!("{what} from {vantage}"))
            .collect();
        format!(
            "{} ({}): {}",
            self.check,
            self.on.join(", "),
            seen.join("; ")
        )
    }
}

/// How the latest checks of one target from its vantage points compare.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Comparison {
    /// Each counted vantage point's overall state, by label.
    pub counted: BTreeMap<String, State>,
    /// The vantage points whose latest check is too old to count, by label.
    pub stale: BTreeSet<String>,
    /// What two or more counted vantage points judged alike or not: check names and, when
    /// proven from two of them, [`MEASUREMENTS`].
    pub compared: BTreeSet<String>,
    /// What they disagree on, by check name.
    pub disagreements: BTreeMap<String, Disagreement>,
}

impl Comparison {
    /// Whether the counted vantage points disagree on `check`.
    pub fn disagrees(&self, check: &str) -> bool {
        self.disagreements.contains_key(check)
    }
}

/// Compares the latest check of each vantage point (the latest one per label is used when a
/// label comes twice) for a target checked every `interval`, at `now`.
pub fn compare(checks: &[VantageCheck], interval: Duration, now: DateTime<Utc>) -> Comparison {
    let mut latest: BTreeMap<&str, &VantageCheck> = BTreeMap::new();
    for check in checks.iter().filter(|c| !c.vantage.is_empty()) {
        let newer = latest
            .get(check.vantage.as_str())
            .is_none_or(|seen| check.finished_at > seen.finished_at);
        if newer {
            latest.insert(&check.vantage, check);
        }
    }
    let window = chrono::Duration::from_std(interval.saturating_mul(FRESH_INTERVALS))
        .unwrap_or(chrono::Duration::MAX);
    let mut comparison = Comparison::default();
    let mut counted: Vec<&VantageCheck> = Vec::new();
    for (vantage, check) in latest {
        // A check from the future (clocks apart) is as fresh as one from now.
        if now.signed_duration_since(check.finished_at) <= window {
            comparison.counted.insert(vantage.to_string(), check.state);
            counted.push(check);
        } else {
            comparison.stale.insert(vantage.to_string());
        }
    }
    if counted.len() < 2 {
        return comparison;
    }
    compare_checks(&counted, &mut comparison);
    compare_measurements(&counted, &mut comparison);
    comparison
}

/// Check by check and scope, the `pass` and `fail` judgements of the counted vantage points.
fn compare_checks(counted: &[&VantageCheck], comparison: &mut Comparison) {
    // (name, scope) → vantage → worst judged state of that scope in its verdict.
    let mut judged: BTreeMap<(&str, &str), BTreeMap<&str, State>> = BTreeMap::new();
    for check in counted {
        for outcome in check.checks.iter().filter(|c| c.state != State::Unknown) {
            let state = judged
                .entry((outcome.name.as_str(), outcome.scope.as_str()))
                .or_default()
                .entry(check.vantage.as_str())
                .or_insert(outcome.state);
            *state = (*state).max(outcome.state);
        }
    }
    // name → (scopes they differ on, vantage → worst state over those scopes).
    type Split<'a> = (Vec<String>, BTreeMap<&'a str, State>);
    let mut split: BTreeMap<&str, Split<'_>> = BTreeMap::new();
    for ((name, scope), by_vantage) in judged {
        if by_vantage.len() < 2 {
            continue;
        }
        comparison.compared.insert(name.to_string());
        let pass = by_vantage.values().any(|s| *s == State::Pass);
        let fail = by_vantage.values().any(|s| *s == State::Fail);
        if !(pass && fail) {
            continue;
        }
        let (scopes, seen) = split.entry(name).or_default();
        scopes.push(scope_label(scope).to_string());
        for (vantage, state) in by_vantage {
            let worst = seen.entry(vantage).or_insert(state);
            *worst = (*worst).max(state);
        }
    }
    for (name, (on, seen)) in split {
        let seen = seen
            .into_iter()
            .map(|(vantage, state)| (vantage.to_string(), state.as_str().to_string()))
            .collect();
        comparison.disagreements.insert(
            name.to_string(),
            Disagreement {
                check: name.to_string(),
                on,
                seen,
            },
        );
    }
}

/// Tracked measurements, field by field, between the counted vantage points that proved them.
fn compare_measurements(counted: &[&VantageCheck], comparison: &mut Comparison) {
    // field → vantage → the values it proved, whichever node showed them (a target served
    // round-robin shows every node from every vantage point, or the same values on each).
    let mut proven: BTreeMap<&str, BTreeMap<&str, BTreeSet<&str>>> = BTreeMap::new();
    for check in counted {
        for m in check
            .measurements
            .iter()
            .filter(|m| FLEET_FIELDS.contains(&m.field.as_str()))
        {
            proven
                .entry(m.field.as_str())
                .or_default()
                .entry(check.vantage.as_str())
                .or_default()
                .insert(m.value.as_str());
        }
    }
    let mut fields = Vec::new();
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (field, by_vantage) in &proven {
        if by_vantage.len() < 2 {
            continue;
        }
        comparison.compared.insert(MEASUREMENTS.to_string());
        let mut values = by_vantage.values();
        let first = values.next();
        if values.all(|v| Some(v) == first) {
            continue;
        }
        fields.push((*field).to_string());
        for (vantage, values) in by_vantage {
            let values: Vec<&str> = values.iter().copied().collect();
            seen.entry((*vantage).to_string())
                .or_default()
                .push(format!("{field}={}", values.join("|")));
        }
    }
    if !fields.is_empty() {
        comparison.disagreements.insert(
            MEASUREMENTS.to_string(),
            Disagreement {
                check: MEASUREMENTS.to_string(),
                on: fields,
                seen: seen.into_iter().map(|(v, s)| (v, s.join(" "))).collect(),
            },
        );
    }
}

/// A scope as a disagreement names it: the whole answer's scope is empty.
fn scope_label(scope: &str) -> &str {
    if scope.is_empty() { "answer" } else { scope }
}

#[cfg(test)]
#[path = "vantage_tests.rs"]
mod tests;
