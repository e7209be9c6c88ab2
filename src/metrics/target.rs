//! One target's series, held as plain values together with the exposition text of each
//! target-scoped family, so that a scrape only concatenates text.
//!
//! Rendering 130,000 series through the prometheus crate gathers every series into protobuf
//! messages, sorts them and formats every number on each scrape; most of them change once a
//! minute at most. Here an update changes the values, marks the families it touched, and
//! [`TargetSeries::flush`] rewrites the text of those families for this target alone, so the
//! formatting cost is paid once per check instead of once per scrape. The values also serve as
//! the bookkeeping of which label sets exist, so a replaced value or a dropped target leaves
//! nothing behind. The lines are those the prometheus crate's text encoder writes: labels in
//! the order of their names, values as Rust prints an `f64`.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::{STATES, TargetSnapshot, labels, seconds, state_code};
use crate::drift::FLEET_FIELDS;
use crate::verify::{AttestationFormat, State};

/// The target-scoped families (every family with a `target` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Family {
    AttestationFormat,
    CheckState,
    Skipped,
    Checks,
    DriftEvents,
    FetchErrors,
    LastDuration,
    LastCheck,
    LastDispatched,
    LastSuccess,
    Changes,
    Drift,
    Info,
    NextCheck,
    Platform,
    TargetState,
    StateSince,
    TcbStatus,
}

/// The number of target-scoped families.
pub(super) const COUNT: usize = 18;

impl Family {
    pub(super) const ALL: [Family; COUNT] = [
        Family::AttestationFormat,
        Family::CheckState,
        Family::Skipped,
        Family::Checks,
        Family::DriftEvents,
        Family::FetchErrors,
        Family::LastDuration,
        Family::LastCheck,
        Family::LastDispatched,
        Family::LastSuccess,
        Family::Changes,
        Family::Drift,
        Family::Info,
        Family::NextCheck,
        Family::Platform,
        Family::TargetState,
        Family::StateSince,
        Family::TcbStatus,
    ];

    /// The family's name, as registered in `families.rs` (a unit test compares them).
    pub(super) fn name(self) -> &'static str {
        match self {
            Family::AttestationFormat => "teewatch_attestation_format_info",
            Family::CheckState => "teewatch_check_state",
            Family::Skipped => "teewatch_checks_skipped_total",
            Family::Checks => "teewatch_checks_total",
            Family::DriftEvents => "teewatch_drift_events_total",
            Family::FetchErrors => "teewatch_fetch_errors_total",
            Family::LastDuration => "teewatch_last_check_duration_seconds",
            Family::LastCheck => "teewatch_last_check_timestamp_seconds",
            Family::LastDispatched => "teewatch_last_dispatched_slot_timestamp_seconds",
            Family::LastSuccess => "teewatch_last_success_timestamp_seconds",
            Family::Changes => "teewatch_measurement_changes_total",
            Family::Drift => "teewatch_measurement_drift",
            Family::Info => "teewatch_measurement_info",
            Family::NextCheck => "teewatch_next_check_timestamp_seconds",
            Family::Platform => "teewatch_target_platform_info",
            Family::TargetState => "teewatch_target_state",
            Family::StateSince => "teewatch_target_state_since_timestamp_seconds",
            Family::TcbStatus => "teewatch_tdx_tcb_status",
        }
    }

    /// The `# TYPE` of the family.
    pub(super) fn kind(self) -> &'static str {
        match self {
            Family::Skipped
            | Family::Checks
            | Family::DriftEvents
            | Family::FetchErrors
            | Family::Changes => "counter",
            _ => "gauge",
        }
    }

    fn bit(self) -> u32 {
        1 << self as u32
    }
}

/// Every series of one target: the values, and the text of each family built from them.
#[derive(Default)]
pub(super) struct TargetSeries {
    state: Option<i64>,
    state_since: Option<f64>,
    last_check: Option<f64>,
    last_success: Option<f64>,
    next_check: Option<f64>,
    last_dispatched: Option<f64>,
    last_duration: Option<f64>,
    /// `check` label → worst state code.
    check_states: BTreeMap<String, i64>,
    drift: BTreeMap<&'static str, i64>,
    changes: BTreeMap<&'static str, u64>,
    /// Field → the `value` label of its `teewatch_measurement_info` series.
    info: BTreeMap<&'static str, String>,
    /// Field → what its last value compares as (`labels::measurement_key`), kept when the field
    /// disappears for a check, so a value that comes back different still counts as a change.
    last_keys: BTreeMap<&'static str, String>,
    tcb: Option<&'static str>,
    format: Option<&'static str>,
    /// The `fmspc` labels of `teewatch_target_platform_info`.
    platforms: BTreeSet<String>,
    fetch_errors: BTreeMap<(&'static str, &'static str), u64>,
    skipped: Option<u64>,
    /// `teewatch_checks_total` by state, in the order of `STATES`.
    checks: Option<[u64; 3]>,
    drift_events: Option<u64>,
    text: [String; COUNT],
    /// The families changed since the last `flush`, one bit each.
    dirty: u32,
}

impl TargetSeries {
    /// The text of one family for this target (empty when it has no series in it).
    pub(super) fn text(&self, family: Family) -> &str {
        self.text.get(family as usize).map_or("", String::as_str)
    }

    /// The number of samples of this target.
    pub(super) fn samples(&self) -> usize {
        self.text.iter().map(|t| t.matches('\n').count()).sum()
    }

    /// Rewrites the text of the families changed since the last flush.
    pub(super) fn flush(&mut self, target: &str) {
        if self.dirty == 0 {
            return;
        }
        let target = escape(target);
        for family in Family::ALL {
            if self.dirty & family.bit() == 0 {
                continue;
            }
            let mut text = self
                .text
                .get_mut(family as usize)
                .map(std::mem::take)
                .unwrap_or_default();
            text.clear();
            self.write(family, &target, &mut text);
            if let Some(slot) = self.text.get_mut(family as usize) {
                *slot = text;
            }
        }
        self.dirty = 0;
    }

    fn touch(&mut self, family: Family) {
        self.dirty |= family.bit();
    }

    /// After a check (see `Metrics::set_target`).
    pub(super) fn set_snapshot(&mut self, snapshot: &TargetSnapshot, count_changes: bool) {
        self.state = Some(state_code(snapshot.state));
        self.last_check = Some(seconds(snapshot.last_check));
        self.last_success = snapshot.last_success.map(seconds);
        self.last_duration = Some(snapshot.last_duration.as_secs_f64());
        let mut worst: BTreeMap<String, State> = BTreeMap::new();
        for check in &snapshot.checks {
            let state = worst
                .entry(labels::check_name(&check.name).into_owned())
                .or_insert(check.state);
            *state = (*state).max(check.state);
        }
        self.check_states = worst
            .into_iter()
            .map(|(name, state)| (name, state_code(state)))
            .collect();
        self.tcb = snapshot.tcb_status.as_deref().map(labels::tcb_status);
        self.format = snapshot.attestation_format.map(AttestationFormat::as_str);
        for field in FLEET_FIELDS {
            self.set_measurement(snapshot, field, count_changes);
            match snapshot.drift.get(field) {
                Some(drifting) => self.drift.insert(field, i64::from(*drifting)),
                None => self.drift.remove(field),
            };
        }
        self.create_counters();
        for family in [
            Family::TargetState,
            Family::LastCheck,
            Family::LastSuccess,
            Family::LastDuration,
            Family::CheckState,
            Family::TcbStatus,
            Family::AttestationFormat,
            Family::Drift,
        ] {
            self.touch(family);
        }
    }

    /// One field's `teewatch_measurement_info` series and its change counter.
    fn set_measurement(&mut self, snapshot: &TargetSnapshot, field: &'static str, count: bool) {
        let Some(raw) = snapshot.measurements.get(field) else {
            self.info.remove(field);
            self.touch(Family::Info);
            return;
        };
        let value = labels::measurement_value(raw).into_owned();
        let key = labels::measurement_key(raw);
        let changes = self.changes.entry(field).or_insert(0);
        if count && self.last_keys.get(field).is_some_and(|old| *old != key) {
            *changes += 1;
        }
        self.last_keys.insert(field, key);
        self.info.insert(field, value);
        self.touch(Family::Changes);
        self.touch(Family::Info);
    }

    /// The counters exist at zero from the first check, so rates work from the first increment.
    fn create_counters(&mut self) {
        self.checks.get_or_insert([0; 3]);
        self.skipped.get_or_insert(0);
        self.drift_events.get_or_insert(0);
        for family in [Family::Checks, Family::Skipped, Family::DriftEvents] {
            self.touch(family);
        }
    }

    /// Sets the drift flags of the fields in `flags` (see `Metrics::set_drift`).
    pub(super) fn set_drift(&mut self, flags: &BTreeMap<String, bool>) {
        for field in FLEET_FIELDS {
            if let Some(drifting) = flags.get(field) {
                self.drift.insert(field, i64::from(*drifting));
            }
        }
        self.touch(Family::Drift);
    }

    pub(super) fn set_state_since(&mut self, at: f64) {
        self.state_since = Some(at);
        self.touch(Family::StateSince);
    }

    pub(super) fn set_next_check(&mut self, at: f64) {
        self.next_check = Some(at);
        self.touch(Family::NextCheck);
    }

    pub(super) fn set_last_dispatched(&mut self, at: f64) {
        self.last_dispatched = Some(at);
        self.touch(Family::LastDispatched);
    }

    pub(super) fn check_finished(&mut self, state: State) {
        self.create_counters();
        let counts = self.checks.get_or_insert([0; 3]);
        let slot = STATES.iter().position(|s| *s == state);
        if let Some(count) = slot.and_then(|i| counts.get_mut(i)) {
            *count += 1;
        }
    }

    pub(super) fn skipped(&mut self) {
        *self.skipped.get_or_insert(0) += 1;
        self.touch(Family::Skipped);
    }

    pub(super) fn fetch_error(&mut self, endpoint: &'static str, kind: &'static str) {
        *self.fetch_errors.entry((endpoint, kind)).or_insert(0) += 1;
        self.touch(Family::FetchErrors);
    }

    pub(super) fn drift_events(&mut self, n: u64) {
        let events = self.drift_events.get_or_insert(0);
        *events = events.saturating_add(n);
        self.touch(Family::DriftEvents);
    }

    pub(super) fn set_platforms(&mut self, platforms: BTreeSet<String>) {
        self.platforms = platforms;
        self.touch(Family::Platform);
    }

    /// Writes the family's lines of this target; `target` is already escaped.
    fn write(&self, family: Family, target: &str, out: &mut String) {
        let name = family.name();
        let mut one = |value: Option<f64>| {
            if let Some(value) = value {
                sample(out, name, &[], target, None, value);
            }
        };
        match family {
            Family::TargetState => one(self.state.map(|v| v as f64)),
            Family::StateSince => one(self.state_since),
            Family::LastCheck => one(self.last_check),
            Family::LastSuccess => one(self.last_success),
            Family::NextCheck => one(self.next_check),
            Family::LastDispatched => one(self.last_dispatched),
            Family::LastDuration => one(self.last_duration),
            Family::Skipped => one(self.skipped.map(|v| v as f64)),
            Family::DriftEvents => one(self.drift_events.map(|v| v as f64)),
            Family::CheckState => {
                for (check, code) in &self.check_states {
                    let check = escape(check);
                    sample(out, name, &[("check", &check)], target, None, *code as f64);
                }
            }
            Family::Checks => {
                for (state, count) in STATES.iter().zip(self.checks.iter().flatten()) {
                    let labels = [("state", state.as_str())];
                    sample(out, name, &labels, target, None, *count as f64);
                }
            }
            Family::FetchErrors => {
                for ((endpoint, kind), count) in &self.fetch_errors {
                    let labels = [("endpoint", *endpoint), ("kind", *kind)];
                    sample(out, name, &labels, target, None, *count as f64);
                }
            }
            Family::Changes => {
                for (field, count) in &self.changes {
                    sample(out, name, &[("field", field)], target, None, *count as f64);
                }
            }
            Family::Drift => {
                for (field, flag) in &self.drift {
                    sample(out, name, &[("field", field)], target, None, *flag as f64);
                }
            }
            Family::Info => {
                for (field, value) in &self.info {
                    let value = escape(value);
                    let after = Some(("value", value.as_ref()));
                    sample(out, name, &[("field", field)], target, after, 1.0);
                }
            }
            Family::TcbStatus => {
                if let Some(status) = self.tcb {
                    sample(out, name, &[("status", status)], target, None, 1.0);
                }
            }
            Family::AttestationFormat => {
                if let Some(format) = self.format {
                    sample(out, name, &[("format", format)], target, None, 1.0);
                }
            }
            Family::Platform => {
                for fmspc in &self.platforms {
                    let fmspc = escape(fmspc);
                    sample(out, name, &[("fmspc", &fmspc)], target, None, 1.0);
                }
            }
        }
    }
}

/// One sample line: the labels that sort before `target`, `target`, then `after`; every value
/// already escaped.
fn sample(
    out: &mut String,
    name: &str,
    before: &[(&str, &str)],
    target: &str,
    after: Option<(&str, &str)>,
    value: f64,
) {
    out.push_str(name);
    out.push('{');
    for (label, value) in before {
        push_label(out, label, value);
        out.push(',');
    }
    push_label(out, "target", target);
    if let Some((label, value)) = after {
        out.push(',');
        push_label(out, label, value);
    }
    // Writing to a String cannot fail.
    let _ = writeln!(out, "}} {value}");
}

fn push_label(out: &mut String, label: &str, value: &str) {
    out.push_str(label);
    out.push_str("=\"");
    out.push_str(value);
    out.push('"');
}

/// A label value as the text format writes it: backslash, double quote and newline escaped.
pub(super) fn escape(value: &str) -> Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return Cow::Borrowed(value);
    }
    let mut escaped = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    Cow::Owned(escaped)
}
