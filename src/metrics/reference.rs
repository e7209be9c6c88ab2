//! The previous implementation of the metrics, kept as the oracle of the fast rendering: every
//! series lives in the prometheus crate's vectors, tracked per target so it can be removed, and a
//! scrape gathers and encodes the whole registry.
//!
//! `Metrics::with_reference` feeds every update to one of these as well, so a test can compare
//! the two renderings of the same history series by series, and `benches/scrape.rs` can time the
//! old scrape against the new one in the same run. The daemon never makes one: holding 130,000
//! series in the crate's vectors is what the per-target text replaces.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use prometheus::{Encoder as _, Registry, TextEncoder};

use super::{
    MetricsError, STATES, TargetSnapshot, families, labels, remove, saturating_i64, seconds,
    series, set_float, set_int, state_code,
};
use crate::drift::FLEET_FIELDS;
use crate::record::Phase;
use crate::verify::{AttestationFormat, State};

/// The registry holding every family, target-scoped ones included.
pub(super) struct Reference {
    registry: Registry,
    families: families::Families,
    tracked: Mutex<Tracked>,
    last_render_len: AtomicUsize,
}

/// The label sets created per target, which the prometheus crate cannot list by one label.
#[derive(Default)]
struct Tracked {
    /// The target names of the latest `retain_targets`, if any: updates for other targets are
    /// ignored, so a check still in flight when its target was removed cannot bring its series
    /// back.
    configured: Option<BTreeSet<String>>,
    targets: BTreeMap<String, TargetSeries>,
    /// The `fmspc` labels of `teewatch_collateral_expiry_timestamp_seconds` and
    /// `teewatch_collateral_fetched_timestamp_seconds`.
    fmspcs: BTreeSet<String>,
}

#[derive(Default)]
struct TargetSeries {
    /// The `check` labels of `teewatch_check_state`.
    checks: BTreeSet<String>,
    /// Field → the `value` label of its `teewatch_measurement_info` series.
    info: BTreeMap<&'static str, String>,
    /// Field → what its last value compares as (`labels::measurement_key`), kept when the field
    /// disappears for a check, so a value that comes back different still counts as a change.
    last_keys: BTreeMap<&'static str, String>,
    /// The `status` label of `teewatch_tdx_tcb_status`.
    tcb: Option<&'static str>,
    /// The `format` label of `teewatch_attestation_format_info`.
    format: Option<&'static str>,
    /// The (endpoint, kind) labels of `teewatch_fetch_errors_total`.
    fetch_errors: BTreeSet<(&'static str, &'static str)>,
    /// The `fmspc` labels of `teewatch_target_platform_info`.
    platforms: BTreeSet<String>,
}

impl Reference {
    /// A registry with every family registered, as the old `Metrics::new` made it.
    pub(super) fn new() -> Result<Reference, MetricsError> {
        let registry = Registry::new();
        let families = families::Families::register(&registry, Some(&registry))?;
        if let Some(info) = series(&families.build_info, &[env!("CARGO_PKG_VERSION")]) {
            info.set(1);
        }
        for phase in Phase::ALL {
            let _ = series(&families.phase_duration, &[phase.as_str()]);
        }
        Ok(Reference {
            registry,
            families,
            tracked: Mutex::new(Tracked::default()),
            last_render_len: AtomicUsize::new(0),
        })
    }

    /// After a check: sets every gauge of the target; `count_changes` is false when restoring
    /// after a restart (no counter increments, only gauges).
    ///
    /// Series the snapshot no longer supports are removed: a check name, measurement field or
    /// drift flag it lacks, the previous measurement value or TCB status, and the last success
    /// when it is `None`. The target's counters are created at zero so rates work from the
    /// first increment.
    pub(super) fn set_target(&self, snapshot: &TargetSnapshot, count_changes: bool) {
        let f = &self.families;
        let mut tracked = self.lock();
        let Some(entry) = tracked.entry(&snapshot.target) else {
            return;
        };
        let target = snapshot.target.as_str();
        set_int(&f.target_state, &[target], state_code(snapshot.state));
        set_float(&f.last_check, &[target], seconds(snapshot.last_check));
        match snapshot.last_success {
            Some(at) => set_float(&f.last_success, &[target], seconds(at)),
            None => remove(&f.last_success, &[target]),
        }
        set_float(
            &f.last_duration,
            &[target],
            snapshot.last_duration.as_secs_f64(),
        );

        let mut worst: BTreeMap<String, State> = BTreeMap::new();
        for check in &snapshot.checks {
            let state = worst
                .entry(labels::check_name(&check.name).into_owned())
                .or_insert(check.state);
            *state = (*state).max(check.state);
        }
        for gone in entry.checks.iter().filter(|c| !worst.contains_key(*c)) {
            remove(&f.check_state, &[target, gone]);
        }
        for (check, state) in &worst {
            set_int(&f.check_state, &[target, check], state_code(*state));
        }
        entry.checks = worst.into_keys().collect();

        let tcb = snapshot.tcb_status.as_deref().map(labels::tcb_status);
        if let Some(old) = entry.tcb.filter(|old| Some(*old) != tcb) {
            remove(&f.tcb_status, &[target, old]);
        }
        if let Some(status) = tcb {
            set_int(&f.tcb_status, &[target, status], 1);
        }
        entry.tcb = tcb;

        let format = snapshot.attestation_format.map(AttestationFormat::as_str);
        if let Some(old) = entry.format.filter(|old| Some(*old) != format) {
            remove(&f.attestation_format, &[target, old]);
        }
        if let Some(format) = format {
            set_int(&f.attestation_format, &[target, format], 1);
        }
        entry.format = format;

        for field in FLEET_FIELDS {
            self.set_measurement(entry, snapshot, field, count_changes);
            match snapshot.drift.get(field) {
                Some(drifting) => set_int(&f.drift, &[target, field], i64::from(*drifting)),
                None => remove(&f.drift, &[target, field]),
            }
        }
        self.create_counters(target);
    }

    /// Sets a target's drift flags alone (`teewatch_measurement_drift`), as a reload or an
    /// acknowledgement changes them between checks. Only the fields in `flags` (those the
    /// target's latest check showed) are set; a target without a recorded check, or one a
    /// reload removed, is left alone.
    pub(super) fn set_drift(&self, target: &str, flags: &BTreeMap<String, bool>) {
        let f = &self.families;
        let mut tracked = self.lock();
        if !tracked.targets.contains_key(target) || tracked.entry(target).is_none() {
            return;
        }
        for field in FLEET_FIELDS {
            if let Some(drifting) = flags.get(field) {
                set_int(&f.drift, &[target, field], i64::from(*drifting));
            }
        }
    }

    /// One field's `teewatch_measurement_info` series and its change counter.
    fn set_measurement(
        &self,
        entry: &mut TargetSeries,
        snapshot: &TargetSnapshot,
        field: &'static str,
        count_changes: bool,
    ) {
        let f = &self.families;
        let target = snapshot.target.as_str();
        let Some(raw) = snapshot.measurements.get(field) else {
            if let Some(old) = entry.info.remove(field) {
                remove(&f.info, &[target, field, &old]);
            }
            return;
        };
        let value = labels::measurement_value(raw).into_owned();
        let key = labels::measurement_key(raw);
        let changes = series(&f.changes, &[target, field]);
        if count_changes && entry.last_keys.get(field).is_some_and(|old| *old != key) {
            if let Some(changes) = changes {
                changes.inc();
            }
        }
        entry.last_keys.insert(field, key);
        // The old series goes before the new one is set: a scrape in between then misses the
        // field for an instant, whereas the other order could show two values, which breaks
        // the one-to-one joins `info` series are used for.
        if let Some(old) = entry.info.insert(field, value.clone()) {
            if old != value {
                remove(&f.info, &[target, field, &old]);
            }
        }
        set_int(&f.info, &[target, field, &value], 1);
    }

    /// Creates the target's counters at zero.
    fn create_counters(&self, target: &str) {
        let f = &self.families;
        for state in STATES {
            let _ = series(&f.checks, &[target, state.as_str()]);
        }
        let _ = series(&f.skipped, &[target]);
        let _ = series(&f.drift_events, &[target]);
    }

    /// Sets since when the target has been in its current state
    /// (`teewatch_target_state_since_timestamp_seconds`): the finish time of the first check of
    /// the run of checks with the latest state, after a check or restored from the store.
    pub(super) fn set_state_since(&self, target: &str, since: DateTime<Utc>) {
        let mut tracked = self.lock();
        if tracked.entry(target).is_some() {
            set_float(&self.families.state_since, &[target], seconds(since));
        }
    }

    /// Counts a finished check in `teewatch_checks_total`.
    pub(super) fn check_finished(&self, target: &str, state: State) {
        let mut tracked = self.lock();
        if tracked.entry(target).is_none() {
            return;
        }
        self.create_counters(target);
        if let Some(counter) = series(&self.families.checks, &[target, state.as_str()]) {
            counter.inc();
        }
    }

    /// Adds one phase's duration to `teewatch_check_duration_seconds`.
    pub(super) fn observe_phase(&self, phase: Phase, duration: Duration) {
        if let Some(histogram) = series(&self.families.phase_duration, &[phase.as_str()]) {
            histogram.observe(duration.as_secs_f64());
        }
    }

    /// Sets when the target's next check is due.
    pub(super) fn set_next_check(&self, target: &str, at: DateTime<Utc>) {
        let mut tracked = self.lock();
        if tracked.entry(target).is_some() {
            set_float(&self.families.next_check, &[target], seconds(at));
        }
    }

    /// Sets the latest schedule slot a check of the target was dispatched for (also restored
    /// from the store after a restart: the slot of the latest recorded check).
    pub(super) fn set_last_dispatched(&self, target: &str, slot: DateTime<Utc>) {
        let mut tracked = self.lock();
        if tracked.entry(target).is_some() {
            set_float(&self.families.last_dispatched, &[target], seconds(slot));
        }
    }

    /// Counts a check whose record the store refused (`teewatch_store_errors_total`).
    pub(super) fn store_error(&self) {
        self.families.store_errors.inc();
    }

    /// Counts a check that was not started because the previous one was still running.
    pub(super) fn skipped(&self, target: &str) {
        let mut tracked = self.lock();
        if tracked.entry(target).is_none() {
            return;
        }
        if let Some(counter) = series(&self.families.skipped, &[target]) {
            counter.inc();
        }
    }

    /// Counts a failed fetch; an endpoint or kind outside the fixed sets of
    /// `src/fetch/http.rs` is counted as `other`.
    pub(super) fn fetch_error(&self, target: &str, endpoint: &str, kind: &str) {
        let mut tracked = self.lock();
        let Some(entry) = tracked.entry(target) else {
            return;
        };
        let endpoint = labels::endpoint(endpoint);
        let kind = labels::error_kind(kind);
        entry.fetch_errors.insert((endpoint, kind));
        if let Some(counter) = series(&self.families.fetch_errors, &[target, endpoint, kind]) {
            counter.inc();
        }
    }

    /// Counts the drift events one check raised (zero still creates the series).
    pub(super) fn drift_events(&self, target: &str, n: u64) {
        let mut tracked = self.lock();
        if tracked.entry(target).is_none() {
            return;
        }
        if let Some(counter) = series(&self.families.drift_events, &[target]) {
            counter.inc_by(n);
        }
    }

    /// Sets when a platform's collateral expires (see [`collateral_expiries`]), replacing the
    /// previous value, since a refreshed collateral expires later. An FMSPC that is not exactly
    /// 12 hex digits is ignored.
    pub(super) fn set_collateral_expiry(&self, fmspc: &str, at: DateTime<Utc>) {
        let Some(fmspc) = labels::fmspc(fmspc) else {
            return;
        };
        let mut tracked = self.lock();
        set_float(&self.families.collateral_expiry, &[&fmspc], seconds(at));
        tracked.fmspcs.insert(fmspc);
    }

    /// Sets when a platform's cached collateral was fetched from the PCCS, replacing the previous
    /// value; `None` (a copy whose fetch time is unknown) is exported as 0, which reads as
    /// stale. An FMSPC that is not exactly 12 hex digits is ignored.
    pub(super) fn set_collateral_fetched(&self, fmspc: &str, at: Option<DateTime<Utc>>) {
        let Some(fmspc) = labels::fmspc(fmspc) else {
            return;
        };
        let mut tracked = self.lock();
        set_float(
            &self.families.collateral_fetched,
            &[&fmspc],
            at.map_or(0.0, seconds),
        );
        tracked.fmspcs.insert(fmspc);
    }

    /// Removes the collateral expiry and fetch time of every platform not in `fmspcs` (compared
    /// after the same normalisation), so that a platform no target runs on any more stops
    /// looking like collateral about to expire or gone stale.
    pub(super) fn retain_collateral(&self, fmspcs: &[String]) {
        let keep: BTreeSet<String> = fmspcs.iter().filter_map(|f| labels::fmspc(f)).collect();
        let mut tracked = self.lock();
        tracked.fmspcs.retain(|fmspc| {
            let kept = keep.contains(fmspc);
            if !kept {
                remove(&self.families.collateral_expiry, &[fmspc]);
                remove(&self.families.collateral_fetched, &[fmspc]);
            }
            kept
        });
    }

    /// Sets the number of configured targets.
    pub(super) fn set_targets(&self, n: usize) {
        self.families.targets.set(saturating_i64(n));
    }

    /// Sets the number of checks running now.
    pub(super) fn set_in_flight(&self, n: usize) {
        self.families.in_flight.set(saturating_i64(n));
    }

    /// Removes every series of targets not in `names` (after a configuration reload). From
    /// then on, updates for a target not in the latest `names` are ignored, so a check that
    /// was running for a removed target cannot bring its series back.
    pub(super) fn retain_targets(&self, names: &[String]) {
        let keep: BTreeSet<String> = names.iter().cloned().collect();
        let mut tracked = self.lock();
        let dropped: Vec<String> = tracked
            .targets
            .keys()
            .filter(|name| !keep.contains(*name))
            .cloned()
            .collect();
        for name in dropped {
            if let Some(series) = tracked.targets.remove(&name) {
                self.remove_target(&name, &series);
            }
        }
        tracked.configured = Some(keep);
    }

    fn remove_target(&self, target: &str, tracked: &TargetSeries) {
        let f = &self.families;
        remove(&f.target_state, &[target]);
        for vec in [
            &f.state_since,
            &f.last_check,
            &f.last_success,
            &f.next_check,
            &f.last_dispatched,
            &f.last_duration,
        ] {
            remove(vec, &[target]);
        }
        for vec in [&f.skipped, &f.drift_events] {
            remove(vec, &[target]);
        }
        for state in STATES {
            remove(&f.checks, &[target, state.as_str()]);
        }
        for check in &tracked.checks {
            remove(&f.check_state, &[target, check]);
        }
        for field in FLEET_FIELDS {
            remove(&f.drift, &[target, field]);
            remove(&f.changes, &[target, field]);
        }
        for (field, value) in &tracked.info {
            remove(&f.info, &[target, field, value]);
        }
        if let Some(status) = tracked.tcb {
            remove(&f.tcb_status, &[target, status]);
        }
        if let Some(format) = tracked.format {
            remove(&f.attestation_format, &[target, format]);
        }
        for (endpoint, kind) in &tracked.fetch_errors {
            remove(&f.fetch_errors, &[target, endpoint, kind]);
        }
        self.remove_platforms(target, &tracked.platforms);
    }

    /// The text exposition format of every family.
    pub(super) fn render(&self) -> Result<String, MetricsError> {
        // Sized from the previous scrape, so a 10 MB exposition is not grown by doubling.
        let expected = self.last_render_len.load(Ordering::Relaxed);
        let mut buffer = Vec::with_capacity(expected + expected / 8);
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .map_err(MetricsError::Encode)?;
        self.last_render_len.store(buffer.len(), Ordering::Relaxed);
        Ok(String::from_utf8(buffer)?)
    }

    fn lock(&self) -> MutexGuard<'_, Tracked> {
        // The guarded data is only bookkeeping of label sets, consistent after every statement,
        // so a panic elsewhere while it was held leaves nothing to repair.
        crate::sync::lock(&self.tracked)
    }
}

impl Reference {
    /// Sets the platforms the target's latest check used collateral of, replacing the previous
    /// set: a platform no longer among them loses its series, and a check that used no
    /// collateral (no quote arrived) leaves none. An FMSPC that is not exactly 12 hex digits is
    /// ignored; a target a reload removed is left alone.
    pub(super) fn set_target_platforms<'a>(
        &self,
        target: &str,
        fmspcs: impl IntoIterator<Item = &'a str>,
    ) {
        let family = &self.families.platform;
        let platforms: BTreeSet<String> = fmspcs.into_iter().filter_map(labels::fmspc).collect();
        let mut tracked = self.lock();
        let Some(entry) = tracked.entry(target) else {
            return;
        };
        for gone in entry.platforms.difference(&platforms) {
            remove(family, &[target, gone]);
        }
        for fmspc in &platforms {
            set_int(family, &[target, fmspc], 1);
        }
        entry.platforms = platforms;
    }

    /// Removes the platform series of a target a reload dropped.
    pub(super) fn remove_platforms(&self, target: &str, platforms: &BTreeSet<String>) {
        for fmspc in platforms {
            remove(&self.families.platform, &[target, fmspc]);
        }
    }
}

impl Tracked {
    /// The target's bookkeeping, or `None` when a reload removed the target.
    fn entry(&mut self, target: &str) -> Option<&mut TargetSeries> {
        if let Some(configured) = &self.configured {
            if !configured.contains(target) {
                return None;
            }
        }
        Some(self.targets.entry(target.to_string()).or_default())
    }
}
