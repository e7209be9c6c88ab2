//! The Prometheus metrics of the daemon: one registry holding every `teewatch_*` family and the
//! process collector, fed by the check runner and the scheduler, and rendered for `/metrics`.
//!
//! The per-target gauges are set from a [`TargetSnapshot`] after each check, or rebuilt from the
//! store after a restart, so a scrape always shows the latest verdict whichever way it was
//! reached. Every label value that teewatch does not choose itself goes through `labels`, and
//! every label set created for a target is remembered, so a measurement value or TCB status
//! that changes leaves exactly one series behind and a target dropped by a configuration reload
//! leaves none. The exported surface is documented in `docs/metrics.md`.

mod collateral;
mod families;
pub mod labels;
mod platform;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use prometheus::core::{MetricVec, MetricVecBuilder};
use prometheus::proto::MetricType;
use prometheus::{Encoder as _, Registry, TextEncoder};

use crate::drift::FLEET_FIELDS;
use crate::record::Phase;
use crate::verify::{AttestationFormat, Check, State};

pub use collateral::collateral_expiries;
pub use families::PHASE_BUCKETS;

/// The states `teewatch_checks_total` counts, each created at zero with the target.
const STATES: [State; 3] = [State::Pass, State::Unknown, State::Fail];

/// Why the metrics could not be set up or rendered.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot create a metric family: {0}")]
    Create(#[source] prometheus::Error),
    #[error("cannot register a metric family: {0}")]
    Register(#[source] prometheus::Error),
    #[error("cannot encode the metrics: {0}")]
    Encode(#[source] prometheus::Error),
    #[error("the encoded metrics are not UTF-8: {0}")]
    Utf8(#[from] std::string::FromUtf8Error),
}

/// The gauges of one target as they should be after a check (or after a restart, rebuilt from
/// the store).
#[derive(Debug, Clone, PartialEq)]
pub struct TargetSnapshot {
    pub target: String,
    pub state: State,
    /// All checks of the latest verdict; each name is exported once, with its worst state.
    pub checks: Vec<Check>,
    pub last_check: DateTime<Utc>,
    pub last_success: Option<DateTime<Utc>>,
    pub last_duration: Duration,
    pub tcb_status: Option<String>,
    /// The attestation format of the latest response (`None` when no response was read).
    pub attestation_format: Option<AttestationFormat>,
    /// Field → value (`crate::drift::latest_values`); fields outside `FLEET_FIELDS` are ignored.
    pub measurements: BTreeMap<String, String>,
    /// Field → drifting (`crate::drift::drift_flags`); fields outside `FLEET_FIELDS` are ignored.
    pub drift: BTreeMap<String, bool>,
}

/// The code of a state in `teewatch_target_state` and `teewatch_check_state`: 0 pass,
/// 1 unknown, 2 fail, so that `max` over series is the worst state.
pub fn state_code(state: State) -> i64 {
    match state {
        State::Pass => 0,
        State::Unknown => 1,
        State::Fail => 2,
    }
}

/// The handle to the registry; clones share it.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    families: families::Families,
    tracked: Mutex<Tracked>,
    /// The size of the last scrape, to size the next one's buffer.
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

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// A registry with every family registered, `teewatch_build_info` set and the phase
    /// histogram created at zero for every phase (so rates exist before the first check).
    pub fn new() -> Result<Metrics, MetricsError> {
        let registry = Registry::new();
        let families = families::Families::register(&registry)?;
        if let Some(info) = series(&families.build_info, &[env!("CARGO_PKG_VERSION")]) {
            info.set(1);
        }
        for phase in Phase::ALL {
            // Looking the series up creates it with zero observations.
            let _ = series(&families.phase_duration, &[phase.as_str()]);
        }
        Ok(Metrics {
            inner: Arc::new(Inner {
                registry,
                families,
                tracked: Mutex::new(Tracked::default()),
                last_render_len: AtomicUsize::new(0),
            }),
        })
    }

    /// After a check: sets every gauge of the target; `count_changes` is false when restoring
    /// after a restart (no counter increments, only gauges).
    ///
    /// Series the snapshot no longer supports are removed: a check name, measurement field or
    /// drift flag it lacks, the previous measurement value or TCB status, and the last success
    /// when it is `None`. The target's counters are created at zero so rates work from the
    /// first increment.
    pub fn set_target(&self, snapshot: &TargetSnapshot, count_changes: bool) {
        let f = &self.inner.families;
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
    pub fn set_drift(&self, target: &str, flags: &BTreeMap<String, bool>) {
        let f = &self.inner.families;
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
        let f = &self.inner.families;
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
        let f = &self.inner.families;
        for state in STATES {
            let _ = series(&f.checks, &[target, state.as_str()]);
        }
        let _ = series(&f.skipped, &[target]);
        let _ = series(&f.drift_events, &[target]);
    }

    /// Sets since when the target has been in its current state
    /// (`teewatch_target_state_since_timestamp_seconds`): the finish time of the first check of
    /// the run of checks with the latest state, after a check or restored from the store.
    pub fn set_state_since(&self, target: &str, since: DateTime<Utc>) {
        let mut tracked = self.lock();
        if tracked.entry(target).is_some() {
            set_float(&self.inner.families.state_since, &[target], seconds(since));
        }
    }

    /// Counts a finished check in `teewatch_checks_total`.
    pub fn check_finished(&self, target: &str, state: State) {
        let mut tracked = self.lock();
        if tracked.entry(target).is_none() {
            return;
        }
        self.create_counters(target);
        if let Some(counter) = series(&self.inner.families.checks, &[target, state.as_str()]) {
            counter.inc();
        }
    }

    /// Adds one phase's duration to `teewatch_check_duration_seconds`.
    pub fn observe_phase(&self, phase: Phase, duration: Duration) {
        if let Some(histogram) = series(&self.inner.families.phase_duration, &[phase.as_str()]) {
            histogram.observe(duration.as_secs_f64());
        }
    }

    /// Sets when the target's next check is due.
    pub fn set_next_check(&self, target: &str, at: DateTime<Utc>) {
        let mut tracked = self.lock();
        if tracked.entry(target).is_some() {
            set_float(&self.inner.families.next_check, &[target], seconds(at));
        }
    }

    /// Sets the latest schedule slot a check of the target was dispatched for (also restored
    /// from the store after a restart: the slot of the latest recorded check).
    pub fn set_last_dispatched(&self, target: &str, slot: DateTime<Utc>) {
        let mut tracked = self.lock();
        if tracked.entry(target).is_some() {
            set_float(
                &self.inner.families.last_dispatched,
                &[target],
                seconds(slot),
            );
        }
    }

    /// Counts a check whose record the store refused (`teewatch_store_errors_total`).
    pub fn store_error(&self) {
        self.inner.families.store_errors.inc();
    }

    /// Counts a check that was not started because the previous one was still running.
    pub fn skipped(&self, target: &str) {
        let mut tracked = self.lock();
        if tracked.entry(target).is_none() {
            return;
        }
        if let Some(counter) = series(&self.inner.families.skipped, &[target]) {
            counter.inc();
        }
    }

    /// Counts a failed fetch; an endpoint or kind outside the fixed sets of
    /// `src/fetch/http.rs` is counted as `other`.
    pub fn fetch_error(&self, target: &str, endpoint: &str, kind: &str) {
        let mut tracked = self.lock();
        let Some(entry) = tracked.entry(target) else {
            return;
        };
        let endpoint = labels::endpoint(endpoint);
        let kind = labels::error_kind(kind);
        entry.fetch_errors.insert((endpoint, kind));
        if let Some(counter) = series(&self.inner.families.fetch_errors, &[target, endpoint, kind])
        {
            counter.inc();
        }
    }

    /// Counts the drift events one check raised (zero still creates the series).
    pub fn drift_events(&self, target: &str, n: u64) {
        let mut tracked = self.lock();
        if tracked.entry(target).is_none() {
            return;
        }
        if let Some(counter) = series(&self.inner.families.drift_events, &[target]) {
            counter.inc_by(n);
        }
    }

    /// Sets when a platform's collateral expires (see [`collateral_expiries`]), replacing the
    /// previous value, since a refreshed collateral expires later. An FMSPC that is not exactly
    /// 12 hex digits is ignored.
    pub fn set_collateral_expiry(&self, fmspc: &str, at: DateTime<Utc>) {
        let Some(fmspc) = labels::fmspc(fmspc) else {
            return;
        };
        let mut tracked = self.lock();
        set_float(
            &self.inner.families.collateral_expiry,
            &[&fmspc],
            seconds(at),
        );
        tracked.fmspcs.insert(fmspc);
    }

    /// Sets when a platform's cached collateral was fetched from the PCCS, replacing the previous
    /// value; `None` (a copy whose fetch time is unknown) is exported as 0, which reads as
    /// stale. An FMSPC that is not exactly 12 hex digits is ignored.
    pub fn set_collateral_fetched(&self, fmspc: &str, at: Option<DateTime<Utc>>) {
        let Some(fmspc) = labels::fmspc(fmspc) else {
            return;
        };
        let mut tracked = self.lock();
        set_float(
            &self.inner.families.collateral_fetched,
            &[&fmspc],
            at.map_or(0.0, seconds),
        );
        tracked.fmspcs.insert(fmspc);
    }

    /// Removes the collateral expiry and fetch time of every platform not in `fmspcs` (compared
    /// after the same normalisation), so that a platform no target runs on any more stops
    /// looking like collateral about to expire or gone stale.
    pub fn retain_collateral(&self, fmspcs: &[String]) {
        let keep: BTreeSet<String> = fmspcs.iter().filter_map(|f| labels::fmspc(f)).collect();
        let mut tracked = self.lock();
        tracked.fmspcs.retain(|fmspc| {
            let kept = keep.contains(fmspc);
            if !kept {
                remove(&self.inner.families.collateral_expiry, &[fmspc]);
                remove(&self.inner.families.collateral_fetched, &[fmspc]);
            }
            kept
        });
    }

    /// Sets the number of configured targets.
    pub fn set_targets(&self, n: usize) {
        self.inner.families.targets.set(saturating_i64(n));
    }

    /// Sets the number of checks running now.
    pub fn set_in_flight(&self, n: usize) {
        self.inner.families.in_flight.set(saturating_i64(n));
    }

    /// Removes every series of targets not in `names` (after a configuration reload). From
    /// then on, updates for a target not in the latest `names` are ignored, so a check that
    /// was running for a removed target cannot bring its series back.
    pub fn retain_targets(&self, names: &[String]) {
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
        let f = &self.inner.families;
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
    pub fn render(&self) -> Result<String, MetricsError> {
        // Sized from the previous scrape, so a 10 MB exposition is not grown by doubling.
        let expected = self.inner.last_render_len.load(Ordering::Relaxed);
        let mut buffer = Vec::with_capacity(expected + expected / 8);
        TextEncoder::new()
            .encode(&self.inner.registry.gather(), &mut buffer)
            .map_err(MetricsError::Encode)?;
        self.inner
            .last_render_len
            .store(buffer.len(), Ordering::Relaxed);
        Ok(String::from_utf8(buffer)?)
    }

    /// The number of samples in a scrape (a histogram counts each bucket, `+Inf`, `_sum` and
    /// `_count`), for cardinality checks.
    pub fn series_count(&self) -> usize {
        self.inner
            .registry
            .gather()
            .iter()
            .map(|family| {
                let kind = family.get_field_type();
                family
                    .get_metric()
                    .iter()
                    .map(|m| match kind {
                        MetricType::HISTOGRAM => histogram_samples(m.get_histogram()),
                        MetricType::SUMMARY => m.get_summary().get_quantile().len() + 2,
                        _ => 1,
                    })
                    .sum::<usize>()
            })
            .sum()
    }

    fn lock(&self) -> MutexGuard<'_, Tracked> {
        // The guarded data is only bookkeeping of label sets, consistent after every statement,
        // so a panic elsewhere while it was held leaves nothing to repair.
        crate::sync::lock(&self.inner.tracked)
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

/// Buckets as written (plus `+Inf` unless the last bucket already is), `_sum` and `_count`.
fn histogram_samples(h: &prometheus::proto::Histogram) -> usize {
    let buckets = h.get_bucket();
    let explicit_inf = buckets
        .last()
        .is_some_and(|b| b.upper_bound().is_infinite());
    buckets.len() + usize::from(!explicit_inf) + 2
}

/// The series with these label values, created if absent. The label counts are fixed in this
/// module, so an error is a bug here; it is logged rather than allowed to stop a check.
fn series<T: MetricVecBuilder>(vec: &MetricVec<T>, labels: &[&str]) -> Option<T::M> {
    vec.get_metric_with_label_values(labels)
        .map_err(|error| tracing::warn!(%error, "metric series rejected"))
        .ok()
}

/// Removes a series; one that does not exist is already in the wanted state.
fn remove<T: MetricVecBuilder>(vec: &MetricVec<T>, labels: &[&str]) {
    let _ = vec.remove_label_values(labels);
}

fn set_int(vec: &prometheus::IntGaugeVec, labels: &[&str], value: i64) {
    if let Some(gauge) = series(vec, labels) {
        gauge.set(value);
    }
}

fn set_float(vec: &prometheus::GaugeVec, labels: &[&str], value: f64) {
    if let Some(gauge) = series(vec, labels) {
        gauge.set(value);
    }
}

/// Unix seconds with millisecond precision, as Prometheus timestamps are written.
fn seconds(at: DateTime<Utc>) -> f64 {
    at.timestamp_millis() as f64 / 1000.0
}

fn saturating_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn state_codes_order_like_states() {
        assert_eq!(state_code(State::Pass), 0);
        assert_eq!(state_code(State::Unknown), 1);
        assert_eq!(state_code(State::Fail), 2);
    }

    #[test]
    fn a_fresh_registry_renders_build_info_and_the_phase_histograms() {
        let metrics = Metrics::new().unwrap();
        let text = metrics.render().unwrap();
        let version = env!("CARGO_PKG_VERSION");
        assert!(text.contains(&format!("teewatch_build_info{{version=\"{version}\"}} 1")));
        for phase in Phase::ALL {
            let line = format!(
                "teewatch_check_duration_seconds_count{{phase=\"{}\"}} 0",
                phase.as_str()
            );
            assert!(text.contains(&line), "{line}");
        }
        let samples = text.lines().filter(|l| !l.starts_with('#')).count();
        assert_eq!(metrics.series_count(), samples);
    }

    #[test]
    fn updates_for_a_removed_target_are_ignored() {
        let metrics = Metrics::new().unwrap();
        metrics.skipped("a");
        metrics.retain_targets(&["b".to_string()]);
        metrics.skipped("a");
        metrics.fetch_error("a", "pccs", "timeout");
        metrics.skipped("b");
        let slot = DateTime::from_timestamp(1_767_225_600, 500_000_000).unwrap();
        metrics.set_last_dispatched("a", slot);
        metrics.set_last_dispatched("b", slot);
        let text = metrics.render().unwrap();
        assert!(!text.contains("target=\"a\""));
        assert!(text.contains("teewatch_checks_skipped_total{target=\"b\"} 1"));
        assert!(text.contains(
            "teewatch_last_dispatched_slot_timestamp_seconds{target=\"b\"} 1767225600.5"
        ));
        metrics.retain_targets(&[]);
        assert!(!metrics.render().unwrap().contains("target=\"b\""));
    }

    #[test]
    fn store_errors_are_counted_from_zero() {
        let metrics = Metrics::new().unwrap();
        assert!(
            metrics
                .render()
                .unwrap()
                .contains("teewatch_store_errors_total 0")
        );
        metrics.store_error();
        assert!(
            metrics
                .render()
                .unwrap()
                .contains("teewatch_store_errors_total 1")
        );
    }
}
