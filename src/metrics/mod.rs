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
mod fleet;
pub mod labels;
mod platform;
mod reference;
mod target;
mod vantage;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use prometheus::core::{MetricVec, MetricVecBuilder};
use prometheus::proto::MetricType;
use prometheus::{Registry, TextEncoder};

use crate::record::Phase;
use crate::verify::{AttestationFormat, Check, State};
use target::TargetSeries;

pub use collateral::collateral_expiries;
pub use families::PHASE_BUCKETS;
pub use fleet::PeerGauge;
pub use vantage::vantage_label;

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

/// The handle to the metrics; clones share them.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    /// The process-wide families and the process collector; the target-scoped families are
    /// rendered from `tracked` instead.
    registry: Registry,
    families: families::Families,
    /// The fleet's families (`fleet.rs`), without series unless a fleet runs.
    fleet: fleet::FleetFamilies,
    /// The `# HELP` and `# TYPE` lines of each target-scoped family, in the order of names.
    headers: Vec<(target::Family, String)>,
    tracked: Mutex<Tracked>,
    /// The size of the last scrape, to size the next one's buffer.
    last_render_len: AtomicUsize,
    /// The previous implementation fed the same updates, for tests and benchmarks only.
    reference: Option<reference::Reference>,
    /// `teewatch_vantage_*`, rendered after every other family (their names sort last).
    vantage: vantage::VantageMetrics,
}

/// The series of every target, and the platforms of the collateral gauges.
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

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Every family set up, `teewatch_build_info` set and the phase histogram created at zero
    /// for every phase (so rates exist before the first check).
    pub fn new() -> Result<Metrics, MetricsError> {
        Metrics::build(None)
    }

    /// Like [`Metrics::new`], but every update also goes to the previous implementation, which
    /// kept every series in the prometheus crate's vectors; [`Metrics::render_reference`]
    /// renders that. For tests and benchmarks: it doubles the cost of every update.
    #[doc(hidden)]
    pub fn with_reference() -> Result<Metrics, MetricsError> {
        Metrics::build(Some(reference::Reference::new()?))
    }

    fn build(reference: Option<reference::Reference>) -> Result<Metrics, MetricsError> {
        let registry = Registry::new();
        let families = families::Families::register(&registry, None)?;
        if let Some(info) = series(&families.build_info, &[env!("CARGO_PKG_VERSION")]) {
            info.set(1);
        }
        for phase in Phase::ALL {
            // Looking the series up creates it with zero observations.
            let _ = series(&families.phase_duration, &[phase.as_str()]);
        }
        let headers = families.target_headers();
        let fleet = fleet::FleetFamilies::register(&registry)?;
        Ok(Metrics {
            inner: Arc::new(Inner {
                registry,
                families,
                fleet,
                headers,
                tracked: Mutex::new(Tracked::default()),
                last_render_len: AtomicUsize::new(0),
                reference,
                vantage: vantage::VantageMetrics::default(),
            }),
        })
    }

    fn reference(&self) -> Option<&reference::Reference> {
        self.inner.reference.as_ref()
    }

    /// Updates one target's series (nothing when a reload removed the target) and rewrites the
    /// text of the families the update touched.
    fn update(&self, target: &str, change: impl FnOnce(&mut TargetSeries)) {
        let mut tracked = self.lock();
        if let Some(entry) = tracked.entry(target) {
            change(entry);
            entry.flush(target);
        }
    }

    /// After a check: sets every gauge of the target; `count_changes` is false when restoring
    /// after a restart (no counter increments, only gauges).
    ///
    /// Series the snapshot no longer supports are removed: a check name, measurement field or
    /// drift flag it lacks, the previous measurement value or TCB status, and the last success
    /// when it is `None`. The target's counters are created at zero so rates work from the
    /// first increment.
    pub fn set_target(&self, snapshot: &TargetSnapshot, count_changes: bool) {
        if let Some(r) = self.reference() {
            r.set_target(snapshot, count_changes);
        }
        self.update(&snapshot.target, |t| {
            t.set_snapshot(snapshot, count_changes);
        });
    }

    /// Sets a target's drift flags alone (`teewatch_measurement_drift`), as a reload or an
    /// acknowledgement changes them between checks. Only the fields in `flags` (those the
    /// target's latest check showed) are set; a target without a recorded check, or one a
    /// reload removed, is left alone.
    pub fn set_drift(&self, target: &str, flags: &BTreeMap<String, bool>) {
        if let Some(r) = self.reference() {
            r.set_drift(target, flags);
        }
        if self.lock().targets.contains_key(target) {
            self.update(target, |t| t.set_drift(flags));
        }
    }

    /// Sets since when the target has been in its current state
    /// (`teewatch_target_state_since_timestamp_seconds`): the finish time of the first check of
    /// the run of checks with the latest state, after a check or restored from the store.
    pub fn set_state_since(&self, target: &str, since: DateTime<Utc>) {
        if let Some(r) = self.reference() {
            r.set_state_since(target, since);
        }
        self.update(target, |t| t.set_state_since(seconds(since)));
    }

    /// Counts a finished check in `teewatch_checks_total`.
    pub fn check_finished(&self, target: &str, state: State) {
        if let Some(r) = self.reference() {
            r.check_finished(target, state);
        }
        self.update(target, |t| t.check_finished(state));
    }

    /// Adds one phase's duration to `teewatch_check_duration_seconds`.
    pub fn observe_phase(&self, phase: Phase, duration: Duration) {
        if let Some(r) = self.reference() {
            r.observe_phase(phase, duration);
        }
        if let Some(histogram) = series(&self.inner.families.phase_duration, &[phase.as_str()]) {
            histogram.observe(duration.as_secs_f64());
        }
    }

    /// Sets when the target's next check is due.
    pub fn set_next_check(&self, target: &str, at: DateTime<Utc>) {
        if let Some(r) = self.reference() {
            r.set_next_check(target, at);
        }
        self.update(target, |t| t.set_next_check(seconds(at)));
    }

    /// Sets the latest schedule slot a check of the target was dispatched for (also restored
    /// from the store after a restart: the slot of the latest recorded check).
    pub fn set_last_dispatched(&self, target: &str, slot: DateTime<Utc>) {
        if let Some(r) = self.reference() {
            r.set_last_dispatched(target, slot);
        }
        self.update(target, |t| t.set_last_dispatched(seconds(slot)));
    }

    /// Counts a check whose record the store refused (`teewatch_store_errors_total`).
    pub fn store_error(&self) {
        if let Some(r) = self.reference() {
            r.store_error();
        }
        self.inner.families.store_errors.inc();
    }

    /// Counts a check that was not started because the previous one was still running.
    pub fn skipped(&self, target: &str) {
        if let Some(r) = self.reference() {
            r.skipped(target);
        }
        self.update(target, TargetSeries::skipped);
    }

    /// Counts a failed fetch; an endpoint or kind outside the fixed sets of
    /// `src/fetch/http.rs` is counted as `other`.
    pub fn fetch_error(&self, target: &str, endpoint: &str, kind: &str) {
        if let Some(r) = self.reference() {
            r.fetch_error(target, endpoint, kind);
        }
        let endpoint = labels::endpoint(endpoint);
        let kind = labels::error_kind(kind);
        self.update(target, |t| t.fetch_error(endpoint, kind));
    }

    /// Counts the drift events one check raised (zero still creates the series).
    pub fn drift_events(&self, target: &str, n: u64) {
        if let Some(r) = self.reference() {
            r.drift_events(target, n);
        }
        self.update(target, |t| t.drift_events(n));
    }

    /// Sets when a platform's collateral expires (see [`collateral_expiries`]), replacing the
    /// previous value, since a refreshed collateral expires later. An FMSPC that is not exactly
    /// 12 hex digits is ignored.
    pub fn set_collateral_expiry(&self, fmspc: &str, at: DateTime<Utc>) {
        if let Some(r) = self.reference() {
            r.set_collateral_expiry(fmspc, at);
        }
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
        if let Some(r) = self.reference() {
            r.set_collateral_fetched(fmspc, at);
        }
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
        if let Some(r) = self.reference() {
            r.retain_collateral(fmspcs);
        }
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

    /// A fleet started: its claims counter is exported from zero.
    pub fn fleet_started(&self) {
        self.inner.fleet.start();
    }

    /// Sets every peer's `teewatch_fleet_instance_up`, heartbeat age and owned targets, removing
    /// the series of peers no longer listed.
    pub fn set_fleet_peers(&self, peers: &[PeerGauge]) {
        self.inner.fleet.set_peers(peers);
    }

    /// Counts a slot claim another instance held (`teewatch_fleet_slot_claims_lost_total`).
    pub fn fleet_claim_lost(&self) {
        self.inner.fleet.claim_lost();
    }

    /// Names the instance and vantage point of a target's latest check
    /// (`teewatch_target_checked_by_info`), replacing the previous one.
    pub fn set_checked_by(&self, target: &str, instance: &str, vantage: &str) {
        if self
            .lock()
            .configured
            .as_ref()
            .is_some_and(|c| !c.contains(target))
        {
            return;
        }
        self.inner.fleet.set_checked_by(target, instance, vantage);
    }

    /// Sets the number of configured targets.
    pub fn set_targets(&self, n: usize) {
        if let Some(r) = self.reference() {
            r.set_targets(n);
        }
        self.inner.families.targets.set(saturating_i64(n));
    }

    /// Sets the number of checks running now.
    pub fn set_in_flight(&self, n: usize) {
        if let Some(r) = self.reference() {
            r.set_in_flight(n);
        }
        self.inner.families.in_flight.set(saturating_i64(n));
    }

    /// Removes every series of targets not in `names` (after a configuration reload). From
    /// then on, updates for a target not in the latest `names` are ignored, so a check that
    /// was running for a removed target cannot bring its series back.
    pub fn retain_targets(&self, names: &[String]) {
        if let Some(r) = self.reference() {
            r.retain_targets(names);
        }
        self.inner.fleet.retain_checked_by(names);
        let keep: BTreeSet<String> = names.iter().cloned().collect();
        self.inner.vantage.retain_targets(&keep);
        let mut tracked = self.lock();
        tracked.targets.retain(|name, _| keep.contains(name));
        tracked.configured = Some(keep);
    }

    /// Sets the target's `teewatch_vantage_state` and `teewatch_vantage_disagreement` from the
    /// comparison of its latest checks from each vantage point (`crate::vantage::compare`).
    pub fn set_vantage(&self, target: &str, comparison: &crate::vantage::Comparison) {
        self.inner.vantage.set(target, comparison);
    }

    /// The text exposition format of every family: the process-wide ones gathered and encoded
    /// by the prometheus crate, the target-scoped ones concatenated from each target's text,
    /// merged in the order of family names as the crate orders them. A family is written once,
    /// with its samples contiguous, and left out when no target has a series in it.
    pub fn render(&self) -> Result<String, MetricsError> {
        let global = self.inner.registry.gather();
        // Sized from the previous scrape, so a 10 MB exposition is not grown by doubling.
        let expected = self.inner.last_render_len.load(Ordering::Relaxed);
        let mut out = String::with_capacity(expected + expected / 8);
        let encoder = TextEncoder::new();
        let mut rest = global.as_slice();
        let tracked = self.lock();
        for (family, header) in &self.inner.headers {
            let before = rest
                .iter()
                .take_while(|mf| mf.name() < family.name())
                .count();
            let (now, later) = rest.split_at(before);
            encoder
                .encode_utf8(now, &mut out)
                .map_err(MetricsError::Encode)?;
            rest = later;
            let mut texts = tracked
                .targets
                .values()
                .map(|t| t.text(*family))
                .filter(|text| !text.is_empty())
                .peekable();
            if texts.peek().is_some() {
                out.push_str(header);
                texts.for_each(|text| out.push_str(text));
            }
        }
        drop(tracked);
        encoder
            .encode_utf8(rest, &mut out)
            .map_err(MetricsError::Encode)?;
        self.inner.vantage.render(&mut out);
        self.inner
            .last_render_len
            .store(out.len(), Ordering::Relaxed);
        Ok(out)
    }

    /// The previous implementation's rendering of the same updates (see
    /// [`Metrics::with_reference`]); `None` for metrics made by [`Metrics::new`].
    #[doc(hidden)]
    pub fn render_reference(&self) -> Option<Result<String, MetricsError>> {
        self.reference().map(reference::Reference::render)
    }

    /// The number of samples in a scrape (a histogram counts each bucket, `+Inf`, `_sum` and
    /// `_count`), for cardinality checks.
    pub fn series_count(&self) -> usize {
        let global: usize = self
            .inner
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
            .sum();
        let targets: usize = self
            .lock()
            .targets
            .values()
            .map(TargetSeries::samples)
            .sum();
        global + targets + self.inner.vantage.samples()
    }

    fn lock(&self) -> MutexGuard<'_, Tracked> {
        // The guarded data is updated in single steps, consistent after every statement, so a
        // panic elsewhere while it was held leaves nothing to repair.
        crate::sync::lock(&self.inner.tracked)
    }
}

impl Tracked {
    /// The target's series, or `None` when a reload removed the target.
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
