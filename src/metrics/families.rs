//! The metric families teewatch exports: their names, help texts, labels and histogram buckets,
//! and their registration in one registry together with the process collector.
//!
//! Keeping every name and help text in one place makes the exported surface easy to review
//! against `docs/metrics.md`, and registration returns an error instead of panicking, so a
//! clash (two families of one name) is reported by `Metrics::new` rather than crashing the
//! daemon.

use prometheus::core::Collector;
use prometheus::{
    GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

use super::MetricsError;
use super::target::Family;

/// The upper bounds of `teewatch_check_duration_seconds`, in seconds: from 1 ms (a verify of a
/// small bundle, a store write) to 60 s (the total deadline of one fetch), about three buckets a
/// decade so a percentile is read within a factor of about two.
pub const PHASE_BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// The HELP text shared by the two state gauges, since both use the same code.
const STATE_CODE: &str = "0 pass, 1 unknown, 2 fail";

/// Every family, registered.
#[derive(Clone)]
pub(super) struct Families {
    pub target_state: IntGaugeVec,
    pub state_since: GaugeVec,
    pub check_state: IntGaugeVec,
    pub last_check: GaugeVec,
    pub last_success: GaugeVec,
    pub next_check: GaugeVec,
    pub last_dispatched: GaugeVec,
    pub phase_duration: HistogramVec,
    pub last_duration: GaugeVec,
    pub drift: IntGaugeVec,
    pub changes: IntCounterVec,
    pub info: IntGaugeVec,
    pub tcb_status: IntGaugeVec,
    pub attestation_format: IntGaugeVec,
    pub collateral_expiry: GaugeVec,
    pub collateral_fetched: GaugeVec,
    pub platform: IntGaugeVec,
    pub fetch_errors: IntCounterVec,
    pub skipped: IntCounterVec,
    pub checks: IntCounterVec,
    pub drift_events: IntCounterVec,
    pub store_errors: IntCounter,
    pub build_info: IntGaugeVec,
    pub targets: IntGauge,
    pub in_flight: IntGauge,
}

impl Families {
    /// Creates every family and registers the process-wide ones, with the process collector, in
    /// `registry`, and the target-scoped ones in `targets` if given. `Metrics` renders the
    /// target-scoped families itself and keeps their vectors only for their names and help
    /// texts; the reference implementation registers everything in one registry.
    pub fn register(
        registry: &Registry,
        targets: Option<&Registry>,
    ) -> Result<Families, MetricsError> {
        let r = registry;
        let families = Families {
            target_state: scoped(
                targets,
                IntGaugeVec::new(
                    Opts::new(
                        "teewatch_target_state",
                        format!("State of the target's latest verdict: {STATE_CODE}."),
                    ),
                    &["target"],
                ),
            )?,
            state_since: scoped(
                targets,
                GaugeVec::new(
                    Opts::new(
                        "teewatch_target_state_since_timestamp_seconds",
                        "Unix time at which the first check of the target's current state \
                         finished (when teewatch_target_state last changed).",
                    ),
                    &["target"],
                ),
            )?,
            check_state: scoped(
                targets,
                IntGaugeVec::new(
                    Opts::new(
                        "teewatch_check_state",
                        format!(
                            "Worst state of the named check over all its scopes in the \
                             target's latest verdict: {STATE_CODE}."
                        ),
                    ),
                    &["target", "check"],
                ),
            )?,
            last_check: scoped(
                targets,
                GaugeVec::new(
                    Opts::new(
                        "teewatch_last_check_timestamp_seconds",
                        "Unix time at which the target's latest check finished.",
                    ),
                    &["target"],
                ),
            )?,
            last_success: scoped(
                targets,
                GaugeVec::new(
                    Opts::new(
                        "teewatch_last_success_timestamp_seconds",
                        "Unix time at which the target's latest passing check finished; \
                         absent if none passed yet.",
                    ),
                    &["target"],
                ),
            )?,
            next_check: scoped(
                targets,
                GaugeVec::new(
                    Opts::new(
                        "teewatch_next_check_timestamp_seconds",
                        "Unix time at which the target's next check is scheduled.",
                    ),
                    &["target"],
                ),
            )?,
            last_dispatched: scoped(
                targets,
                GaugeVec::new(
                    Opts::new(
                        "teewatch_last_dispatched_slot_timestamp_seconds",
                        "Unix time of the latest schedule slot a check of the target was \
                         dispatched for.",
                    ),
                    &["target"],
                ),
            )?,
            phase_duration: add(
                r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "teewatch_check_duration_seconds",
                        "Duration of each phase of a check, over all targets.",
                    )
                    .buckets(PHASE_BUCKETS.to_vec()),
                    &["phase"],
                ),
            )?,
            last_duration: scoped(
                targets,
                GaugeVec::new(
                    Opts::new(
                        "teewatch_last_check_duration_seconds",
                        "Duration of the target's latest check, all phases.",
                    ),
                    &["target"],
                ),
            )?,
            drift: scoped(
                targets,
                IntGaugeVec::new(
                    Opts::new(
                        "teewatch_measurement_drift",
                        "1 while the field's latest value is outside its pin allowlist or \
                         recently appeared as a new value, else 0.",
                    ),
                    &["target", "field"],
                ),
            )?,
            changes: scoped(
                targets,
                IntCounterVec::new(
                    Opts::new(
                        "teewatch_measurement_changes_total",
                        "Times the exported value of the field changed since teewatch started.",
                    ),
                    &["target", "field"],
                ),
            )?,
            info: scoped(
                targets,
                IntGaugeVec::new(
                    Opts::new(
                        "teewatch_measurement_info",
                        "Always 1; the value label holds the field's latest value (lowercase \
                         hex or a version string, else invalid).",
                    ),
                    &["target", "field", "value"],
                ),
            )?,
            tcb_status: scoped(
                targets,
                IntGaugeVec::new(
                    Opts::new(
                        "teewatch_tdx_tcb_status",
                        "Always 1; the status label holds the TDX TCB status of the target's \
                         latest quote (other if not a known status).",
                    ),
                    &["target", "status"],
                ),
            )?,
            attestation_format: scoped(
                targets,
                IntGaugeVec::new(
                    Opts::new(
                        "teewatch_attestation_format_info",
                        "Always 1; the format label holds the attestation format of the \
                         target's latest response (dstack, near-gateway, near-direct, chutes, \
                         tinfoil or unknown).",
                    ),
                    &["target", "format"],
                ),
            )?,
            collateral_expiry: add(
                r,
                GaugeVec::new(
                    Opts::new(
                        "teewatch_collateral_expiry_timestamp_seconds",
                        "Unix time of the earliest nextUpdate of the DCAP collateral (TCB info, \
                         QE identity, CRLs) of the platform.",
                    ),
                    &["fmspc"],
                ),
            )?,
            collateral_fetched: add(
                r,
                GaugeVec::new(
                    Opts::new(
                        "teewatch_collateral_fetched_timestamp_seconds",
                        "Unix time the platform's cached DCAP collateral was fetched from the \
                         PCCS; 0 when unknown (a cache file written before it was recorded).",
                    ),
                    &["fmspc"],
                ),
            )?,
            platform: scoped(
                targets,
                IntGaugeVec::new(
                    Opts::new(
                        "teewatch_target_platform_info",
                        "Always 1; one series per platform (fmspc) whose DCAP collateral the \
                         target's latest check used, to join the collateral gauges to targets.",
                    ),
                    &["target", "fmspc"],
                ),
            )?,
            fetch_errors: scoped(
                targets,
                IntCounterVec::new(
                    Opts::new(
                        "teewatch_fetch_errors_total",
                        "Failed fetches by endpoint and kind of failure.",
                    ),
                    &["target", "endpoint", "kind"],
                ),
            )?,
            skipped: scoped(
                targets,
                IntCounterVec::new(
                    Opts::new(
                        "teewatch_checks_skipped_total",
                        "Checks not started because the target's previous check was still \
                         running.",
                    ),
                    &["target"],
                ),
            )?,
            checks: scoped(
                targets,
                IntCounterVec::new(
                    Opts::new(
                        "teewatch_checks_total",
                        "Finished checks by the state of their verdict.",
                    ),
                    &["target", "state"],
                ),
            )?,
            drift_events: scoped(
                targets,
                IntCounterVec::new(
                    Opts::new(
                        "teewatch_drift_events_total",
                        "Drift events raised: a measurement took a new value or one outside \
                         its allowlist.",
                    ),
                    &["target"],
                ),
            )?,
            store_errors: add(
                r,
                IntCounter::new(
                    "teewatch_store_errors_total",
                    "Checks whose record could not be written to the store (not recorded, \
                     not shown in the per-target metrics).",
                ),
            )?,
            build_info: add(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "teewatch_build_info",
                        "Always 1; the version label holds the running teewatch version.",
                    ),
                    &["version"],
                ),
            )?,
            targets: add(
                r,
                IntGauge::new("teewatch_targets", "Number of configured targets."),
            )?,
            in_flight: add(
                r,
                IntGauge::new("teewatch_checks_in_flight", "Number of checks running now."),
            )?,
        };
        register_process_collector(r)?;
        Ok(families)
    }
}

impl Families {
    /// The `# HELP` and `# TYPE` lines of every target-scoped family, from the help text its
    /// vector was made with (so they cannot drift apart), sorted by name as a scrape orders
    /// families.
    pub fn target_headers(&self) -> Vec<(Family, String)> {
        let f = self;
        let mut headers: Vec<(Family, String)> = Family::ALL
            .iter()
            .map(|family| {
                let collector: &dyn Collector = match family {
                    Family::AttestationFormat => &f.attestation_format,
                    Family::CheckState => &f.check_state,
                    Family::Skipped => &f.skipped,
                    Family::Checks => &f.checks,
                    Family::DriftEvents => &f.drift_events,
                    Family::FetchErrors => &f.fetch_errors,
                    Family::LastDuration => &f.last_duration,
                    Family::LastCheck => &f.last_check,
                    Family::LastDispatched => &f.last_dispatched,
                    Family::LastSuccess => &f.last_success,
                    Family::Changes => &f.changes,
                    Family::Drift => &f.drift,
                    Family::Info => &f.info,
                    Family::NextCheck => &f.next_check,
                    Family::Platform => &f.platform,
                    Family::TargetState => &f.target_state,
                    Family::StateSince => &f.state_since,
                    Family::TcbStatus => &f.tcb_status,
                };
                let help = collector
                    .desc()
                    .first()
                    .map(|d| d.help.replace('\\', "\\\\").replace('\n', "\\n"))
                    .unwrap_or_default();
                let (name, kind) = (family.name(), family.kind());
                (
                    *family,
                    format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"),
                )
            })
            .collect();
        headers.sort_by_key(|(family, _)| family.name());
        headers
    }
}

/// A target-scoped family, registered only where a registry is given.
fn scoped<C>(registry: Option<&Registry>, made: prometheus::Result<C>) -> Result<C, MetricsError>
where
    C: Collector + Clone + 'static,
{
    match registry {
        Some(registry) => add(registry, made),
        None => made.map_err(MetricsError::Create),
    }
}

/// Registers one family, keeping a handle to it.
fn add<C>(registry: &Registry, made: prometheus::Result<C>) -> Result<C, MetricsError>
where
    C: Collector + Clone + 'static,
{
    let collector = made.map_err(MetricsError::Create)?;
    registry
        .register(Box::new(collector.clone()))
        .map_err(MetricsError::Register)?;
    Ok(collector)
}

/// The prometheus crate's `process_*` collector (CPU, memory, file descriptors, threads, start
/// time), except that `process_start_time_seconds` falls back to the time the collector was made
/// when the crate cannot compute it: it needs the boot time from /proc/stat, which systemd's
/// `ProcSubset=pid` hides.
#[cfg(target_os = "linux")]
struct ProcessMetrics {
    inner: prometheus::process_collector::ProcessCollector,
    made_at: f64,
}

#[cfg(target_os = "linux")]
impl Collector for ProcessMetrics {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.inner.desc()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let mut families = self.inner.collect();
        for family in &mut families {
            if family.name() != "process_start_time_seconds" {
                continue;
            }
            for metric in family.mut_metric() {
                if metric.get_gauge().get_value() == 0.0 {
                    let mut gauge = metric.get_gauge().clone();
                    gauge.set_value(self.made_at);
                    metric.set_gauge(gauge);
                }
            }
        }
        families
    }
}

#[cfg(target_os = "linux")]
fn register_process_collector(registry: &Registry) -> Result<(), MetricsError> {
    let made_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64().floor())
        .unwrap_or(0.0);
    registry
        .register(Box::new(ProcessMetrics {
            inner: prometheus::process_collector::ProcessCollector::for_self(),
            made_at,
        }))
        .map_err(MetricsError::Register)
}

#[cfg(not(target_os = "linux"))]
fn register_process_collector(_registry: &Registry) -> Result<(), MetricsError> {
    Ok(())
}
