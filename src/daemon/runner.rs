//! One scheduled check from start to record: fetch the bundle, verify it off the async threads,
//! judge drift against the target's history, write everything in one store transaction, then
//! update the metrics and the status page from the same record.
//!
//! The daemon's shared state lives here too: the configuration in force (swapped whole on
//! SIGHUP), the fetcher with its caches, the store, the metrics and each target's drift history.
//!
//! A check that cannot start (its API key cannot be read) is still a check: it is recorded as
//! `unknown` with the reason, and the target is named on `/readyz` until its key can be read
//! (`keys.rs`). Accepted drift (pins that now accept a drifted value, acknowledgements) is
//! brought in from the store and recorded in `acceptance.rs`; the log lines of a finished check
//! are composed in `lines.rs`.

mod acceptance;
pub mod cadence;
mod fleet_view;
mod keys;
mod lines;
mod publish;
mod stand_in;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::sync::watch;
use tracing::Instrument;

use crate::clock::Clock;
use crate::config::{Config, TargetConfig};
use crate::drift::{self, DriftEvent, Measurement, TargetHistory};
use crate::fetch::check::{CanaryPlan, Fetched, Fetcher, timed_out_bundle};
use crate::metrics::{Metrics, TargetSnapshot};
use crate::record::{CheckRecord, Phase, PhaseDuration, SlotClaim};
use crate::schedule::{Due, PlannedTarget, Runner};
use crate::store::{LatestCheck, Store, StoreError};
use crate::sync::lock;
use crate::verify::{self, Bundle, Check, State, TrustAnchors};

pub use fleet_view::VantageBook;
pub use keys::CannotCheck;
use stand_in::{lenient_fetch_errors, unreadable_verdict};

/// How many request timeouts one whole check may take before it is cancelled: a check makes a
/// handful of sequential requests (report, collateral, NRAS, two chats and their signatures).
pub const DEADLINE_TIMEOUTS: u32 = 3;

/// What the status page shows of one target.
#[derive(Debug, Clone)]
pub struct TargetStatus {
    pub state: State,
    /// When the first check of the current run of `state` finished: "failing since" for a
    /// failing target (`teewatch_target_state_since_timestamp_seconds`).
    pub state_since: DateTime<Utc>,
    pub check_id: Option<i64>,
    pub last_check: DateTime<Utc>,
    pub last_success: Option<DateTime<Utc>>,
    /// The checks that did not pass in the last verdict.
    pub failing: Vec<Check>,
    pub tcb_status: Option<String>,
    pub last_drift: Option<DriftEvent>,
    /// Names of the `dangerous_*` test roots the last verdict was judged under.
    pub trust: Vec<String>,
    /// The TDX modules and OS images the known-measurements table named in the last verdict
    /// (`status_page::known_names`).
    pub known: Vec<String>,
    /// The fleet instance that ran the latest check, when a fleet runs and the store says.
    pub checked_by: Option<String>,
}

/// The configuration in force with the trust anchors built from it (built once per
/// configuration, so the verifier's caches inside the anchors are reused across checks).
pub struct Generation {
    pub config: Config,
    pub anchors: TrustAnchors,
    /// 1 for the configuration the daemon started with, one more for each reload put in force.
    pub number: u64,
    /// When this configuration was put in force.
    pub loaded_at: DateTime<Utc>,
}

impl Generation {
    /// Generation `number` of `config`, in force from now.
    pub fn new(config: Config, number: u64) -> Generation {
        let anchors = config.trust_anchors();
        Generation {
            config,
            anchors,
            number,
            loaded_at: Utc::now(),
        }
    }
}

/// A reload that was refused: the previous configuration stayed in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadRefusal {
    pub at: DateTime<Utc>,
    /// Why, in one line.
    pub reason: String,
}

/// A check whose record the store refused. It stays the daemon's state (`/readyz` not ready)
/// until a later check is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreFailure {
    pub at: DateTime<Utc>,
    pub target: String,
    pub error: String,
}

/// What the daemon reports about itself beside the targets: on `/readyz`, the status page and
/// the systemd status line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Notices {
    /// The latest reload, when it was refused (cleared by a reload put in force).
    pub reload_refused: Option<ReloadRefusal>,
    /// The latest failed store write, until a later one succeeds.
    pub store_failure: Option<StoreFailure>,
}

impl Notices {
    /// The notices as `; `-separated text, empty when there are none.
    pub fn line(&self) -> String {
        let mut parts = Vec::new();
        if let Some(r) = &self.reload_refused {
            parts.push(format!(
                "reload refused at {}: {}",
                r.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                r.reason
            ));
        }
        if let Some(f) = &self.store_failure {
            parts.push(format!(
                "storing a check of {} failed at {}: {}",
                f.target,
                f.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                f.error
            ));
        }
        parts.join("; ")
    }
}

/// The earliest collateral expiry of each platform (FMSPC) a bundle carries.
type CollateralExpiries = Vec<(String, DateTime<Utc>)>;

/// A test hook that changes each fetched answer before it is read as a bundle (see
/// [`Shared::set_answer_hook`]).
pub type AnswerHook = Arc<dyn Fn(&mut Value) + Send + Sync>;

/// State shared by the scheduler's checks, the HTTP server and the signal handlers.
pub struct Shared {
    generation: RwLock<Arc<Generation>>,
    pub fetcher: Fetcher,
    pub store: Store,
    pub metrics: Metrics,
    histories: Mutex<BTreeMap<String, TargetHistory>>,
    /// The tracked measurements of each target's latest stored check, to judge its drift flags
    /// again when a reload or an acknowledgement changes what is accepted.
    latest: Mutex<BTreeMap<String, Vec<Measurement>>>,
    status: Mutex<BTreeMap<String, TargetStatus>>,
    notices: Mutex<Notices>,
    /// The targets whose checks cannot start, and why (`/readyz` names them).
    cannot_check: Mutex<BTreeMap<String, CannotCheck>>,
    /// Each target's canary cadence: checks since the last chats, and what they showed.
    canary: Mutex<BTreeMap<String, cadence::Track>>,
    /// Records of checks cancelled at their deadline still being written (they run outside the
    /// scheduler's check tasks, so its drain does not wait for them; the daemon's shutdown does).
    recording: watch::Sender<usize>,
    answer_hook: RwLock<Option<AnswerHook>>,
    /// The collateral expiries of the last few distinct collaterals checks carried
    /// (`publish.rs`).
    collateral_memo: Mutex<Vec<(Value, CollateralExpiries)>>,
    /// The wall clock of checks, records, scheduling and retention.
    pub clock: Clock,
    /// The fleet this instance belongs to (a PostgreSQL store); `None` runs every check.
    pub fleet: Option<Arc<crate::fleet::Fleet>>,
}

impl Shared {
    pub fn new(
        config: Config,
        fetcher: Fetcher,
        store: Store,
        metrics: Metrics,
        histories: BTreeMap<String, TargetHistory>,
    ) -> Shared {
        let shared = Shared {
            generation: RwLock::new(Arc::new(Generation::new(config, 1))),
            fetcher,
            store,
            metrics,
            histories: Mutex::new(histories),
            latest: Mutex::new(BTreeMap::new()),
            status: Mutex::new(BTreeMap::new()),
            notices: Mutex::new(Notices::default()),
            cannot_check: Mutex::new(BTreeMap::new()),
            canary: Mutex::new(BTreeMap::new()),
            recording: watch::Sender::new(0),
            answer_hook: RwLock::new(None),
            collateral_memo: Mutex::new(Vec::new()),
            clock: Clock::system(),
            fleet: None,
        };
        shared.probe_keys();
        shared
    }

    /// The state reading "now" from `clock` (a test's adjustable clock) instead of the system.
    pub fn with_clock(mut self, clock: Clock) -> Shared {
        self.clock = clock;
        self
    }

    /// The state asking `fleet` before each scheduled check whether this instance runs it.
    pub fn with_fleet(mut self, fleet: Arc<crate::fleet::Fleet>) -> Shared {
        self.fleet = Some(fleet);
        self
    }

    /// The configuration in force.
    pub fn generation(&self) -> Arc<Generation> {
        match self.generation.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Puts a new configuration in force as the next generation (checks already running finish
    /// under the old one), and forgets a refused reload.
    pub fn replace_config(&self, config: Config) {
        let mut guard = match self.generation.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let next = Arc::new(Generation::new(config, guard.number.saturating_add(1)));
        *guard = next;
        drop(guard);
        let names: Vec<String> = self.targets().into_iter().map(|t| t.name).collect();
        self.metrics.retain_targets(&names);
        self.metrics.set_targets(names.len());
        lock(&self.status).retain(|name, _| names.contains(name));
        lock(&self.latest).retain(|name, _| names.contains(name));
        lock(&self.canary).retain(|name, _| names.contains(name));
        lock(&self.notices).reload_refused = None;
        self.probe_keys();
    }

    /// Remembers a refused reload for the status page, `/readyz`'s neighbours and systemd.
    pub fn reload_refused(&self, reason: String) {
        lock(&self.notices).reload_refused = Some(ReloadRefusal {
            at: Utc::now(),
            reason,
        });
    }

    /// What the daemon reports about itself (a refused reload, a failing store).
    pub fn notices(&self) -> Notices {
        lock(&self.notices).clone()
    }

    /// For tests: `hook` changes every fetched answer before it is read as a bundle, to show
    /// what the daemon does with an answer the fetcher should never produce. `None` removes it.
    pub fn set_answer_hook(&self, hook: Option<AnswerHook>) {
        match self.answer_hook.write() {
            Ok(mut h) => *h = hook,
            Err(poisoned) => *poisoned.into_inner() = hook,
        }
    }

    fn answer_hook(&self) -> Option<AnswerHook> {
        match self.answer_hook.read() {
            Ok(h) => h.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Waits up to `within` for the records of checks cancelled at their deadline; false when
    /// some were still being written.
    pub async fn records_written(&self, within: Duration) -> bool {
        let mut pending = self.recording.subscribe();
        tokio::time::timeout(within, pending.wait_for(|n| *n == 0))
            .await
            .is_ok()
    }

    /// The monitored targets of the configuration in force, as the scheduler plans them.
    pub fn targets(&self) -> Vec<PlannedTarget> {
        planned_targets(&self.generation().config)
    }

    /// A copy of every target's status, for the status page.
    pub fn statuses(&self) -> BTreeMap<String, TargetStatus> {
        lock(&self.status).clone()
    }

    /// One check of `due`: fetch, verify, record. A check that cannot start (its API key cannot
    /// be read) is recorded as `unknown` with the reason, like one that found nothing.
    pub async fn check(self: Arc<Self>, due: Due) {
        let generation = self.generation();
        let Some(target) = generation.config.target(&due.target).cloned() else {
            return;
        };
        let Some(claim) = self.fleet_may_run(&target, &due).await else {
            return;
        };
        // The chats are spent only when due, and the attestation is judged before them.
        let not_due = target.monitor.as_ref().and_then(|m| {
            lock(&self.canary)
                .get(&target.name)
                .and_then(|track| track.not_due(m.canary.every))
        });
        let plan = CanaryPlan {
            not_due,
            judge: Some((&target.policy, &generation.anchors)),
        };
        let (mut fetched, origin) = match self
            .fetcher
            .check_planned(&generation.config, &target, plan)
            .await
        {
            Ok(f) => {
                self.can_check(&target.name);
                (f, Origin::Fetched)
            }
            Err(e) => {
                let reason = e.reason();
                let Some(mut bundle) = e.stand_in_bundle(&generation.config, &target) else {
                    // Not monitored (a reload raced the schedule): nothing to check.
                    tracing::debug!(error = %e, "target no longer monitored; not checked");
                    return;
                };
                self.cannot_start(&target.name, reason);
                self.observed_now(&mut bundle);
                let fetched = Fetched {
                    bundle,
                    phases: Vec::new(),
                    judged: None,
                };
                (fetched, Origin::StandIn)
            }
        };
        if let Some(hook) = self.answer_hook() {
            hook(&mut fetched.bundle);
            // The verdict judged before the hook is not that of the changed answer.
            fetched.judged = None;
        }
        self.finish(generation, target, due, fetched, origin, claim)
            .await;
    }

    /// Records a check that was cancelled at its deadline as an unverifiable check, in its own
    /// task; the daemon's shutdown waits for it ([`Shared::records_written`]).
    pub fn spawn_deadline_exceeded(self: &Arc<Self>, due: Due) {
        let span = tracing::info_span!("check", target = %due.target);
        self.recording.send_modify(|n| *n += 1);
        let guard = Recording(self.clone());
        tokio::spawn(
            async move {
                guard.0.clone().deadline_exceeded(due).await;
                drop(guard);
            }
            .instrument(span),
        );
    }

    /// Records a check that was cancelled at its deadline as an unverifiable check.
    pub async fn deadline_exceeded(self: Arc<Self>, due: Due) {
        let generation = self.generation();
        let Some(target) = generation.config.target(&due.target).cloned() else {
            return;
        };
        // In a fleet the cancelled check is recorded only under this instance's claim of its
        // slot: a check cancelled before its claim was made (or after a peer took it over) is
        // not this instance's to record, and recording it could store the slot twice.
        let Some(claim) = self.fleet_held_claim(&target, &due).await else {
            return;
        };
        tracing::warn!(
            deadline_s = due.deadline.as_secs(),
            "check exceeded its deadline"
        );
        let mut bundle = timed_out_bundle(&generation.config, &target, due.deadline);
        self.observed_now(&mut bundle);
        let fetched = Fetched {
            bundle,
            phases: Vec::new(),
            judged: None,
        };
        self.finish(generation, target, due, fetched, Origin::StandIn, claim)
            .await;
    }

    /// Dates a stand-in bundle (a check in which nothing arrived) on the daemon's clock, as a
    /// fetched bundle's `observed_at` is, so its record agrees with its neighbours when a
    /// test moves the clock.
    fn observed_now(&self, bundle: &mut Value) {
        if let Some(fields) = bundle.as_object_mut() {
            let now = self
                .clock
                .now()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            fields.insert("observed_at".into(), Value::String(now));
        }
    }

    async fn finish(
        self: &Arc<Self>,
        generation: Arc<Generation>,
        target: TargetConfig,
        due: Due,
        fetched: Fetched,
        origin: Origin,
        claim: Option<SlotClaim>,
    ) {
        let Fetched {
            bundle: bundle_json,
            mut phases,
            judged,
        } = fetched;
        let verify_start = Instant::now();
        let judged_already = judged.is_some();
        let judged =
            judged.map(|(bundle, verdict)| (verdict, CheckRecord::fetch_errors_of(&bundle)));
        // Verified in place: a few milliseconds of CPU, which the runtime's workers absorb more
        // cheaply than a hand-off to the blocking pool and back for every check. A fetch that
        // judged the attestation before the chats has the verdict already.
        let (verdict, fetch_errors) = match judged {
            Some(judged) => judged,
            None => match Bundle::from_value(bundle_json.clone()) {
                Ok(bundle) => (
                    verify::verify(&bundle, &target.policy, &generation.anchors),
                    CheckRecord::fetch_errors_of(&bundle),
                ),
                Err(e) => {
                    // The fetcher should never assemble such an answer; when it does, the check is
                    // still recorded, with the bytes as they were, as an unverifiable check.
                    tracing::error!(
                        error = %e,
                        "the fetched answer is not a readable bundle; recorded as unknown with its bytes"
                    );
                    let Some(verdict) = unreadable_verdict(&generation, &target, &bundle_json, &e)
                    else {
                        return;
                    };
                    (verdict, lenient_fetch_errors(&bundle_json))
                }
            },
        };
        if !judged_already {
            phases.push(PhaseDuration {
                phase: Phase::Verify,
                duration: verify_start.elapsed(),
            });
        }
        if origin == Origin::Fetched {
            // Each distinct fetch error once, naming the checks it left unknown. A stand-in's
            // one error (deadline, unreadable key) was logged where it arose.
            for line in lines::fetch_error_lines(&bundle_json, &verdict.checks) {
                tracing::warn!(
                    endpoint = %line.endpoint,
                    kind = %line.kind,
                    times = line.times,
                    checks = %line.checks,
                    "fetch failed: {}",
                    line.message
                );
            }
        }
        let finished_at = self.clock.now();
        let measurements = drift::measurements(&verdict);
        let events = {
            let histories = lock(&self.histories);
            let no_history = TargetHistory::default();
            let history = histories.get(&target.name).unwrap_or(&no_history);
            drift::detect(history, &measurements, &target.policy, finished_at)
        };
        let record = CheckRecord {
            target: target.name.clone(),
            scheduled_at: due.scheduled_at,
            started_at: due.started_at,
            finished_at,
            phases: phases.clone(),
            fetch_errors,
            bundle: bundle_json,
            verdict,
            measurements,
            drift: events,
            // `[daemon] instance` (the host name by default), and the vantage point of a
            // replicate fleet ("" otherwise: a shard fleet's checks are from no particular one).
            instance: generation.config.daemon.fleet.instance.clone(),
            vantage: self
                .fleet
                .as_ref()
                .filter(|f| f.mode() == crate::fleet::FleetMode::Replicate)
                .map(|f| f.vantage().to_string())
                .unwrap_or_default(),
            claim,
        };
        let store_start = Instant::now();
        let stored = self.store.record_chained(&record).await;
        self.metrics
            .observe_phase(Phase::Store, store_start.elapsed());
        for p in &phases {
            self.metrics.observe_phase(p.phase, p.duration);
        }
        for e in &record.fetch_errors {
            self.metrics.fetch_error(&target.name, &e.endpoint, &e.kind);
        }
        match stored {
            Ok(recorded) => {
                lock(&self.notices).store_failure = None;
                lock(&self.histories)
                    .entry(target.name.clone())
                    .or_default()
                    .absorb(&record.measurements, &record.drift, record.finished_at);
                self.settle_target(&generation, &target, &record.measurements, self.clock.now())
                    .await;
                self.publish(&generation, &target, &record, &recorded, self.clock.now());
            }
            Err(StoreError::ClaimTakenOver { slot_at, holder }) => {
                // This instance's lease ran out before the check was stored (it was frozen, or
                // cut off from the database) and a peer took the slot over: the peer's check is
                // the slot's, and this one is dropped so the slot is stored once. Not a store
                // failure: the store is fine.
                tracing::warn!(
                    slot_at,
                    holder = %holder,
                    state = record.verdict.state.as_str(),
                    "check dropped: this instance's lease ran out before it was stored and a peer took its slot over"
                );
                self.metrics.fleet_claim_lost();
            }
            Err(e) => {
                // Nothing of the check is kept, so nothing may look as if it were: the drift
                // history, the gauges, the counters of finished checks and the status page stay
                // as the last stored check left them. `/readyz` says so until a write succeeds.
                tracing::error!(
                    error = %e,
                    state = record.verdict.state.as_str(),
                    "storing the check failed; it is not recorded and the metrics do not show it"
                );
                self.metrics.store_error();
                lock(&self.notices).store_failure = Some(StoreFailure {
                    at: Utc::now(),
                    target: target.name.clone(),
                    error: e.to_string(),
                });
            }
        }
    }
}

/// The scheduler's view of the daemon: it starts checks and reports skips and deadlines.
pub struct CheckRunner {
    pub shared: Arc<Shared>,
}

impl Runner for CheckRunner {
    fn run(&self, due: Due) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let span = tracing::info_span!("check", target = %due.target);
        let shared = self.shared.clone();
        Box::pin(shared.check(due).instrument(span))
    }

    fn deadline_exceeded(&self, due: &Due) {
        self.shared.spawn_deadline_exceeded(due.clone());
    }

    fn skipped(&self, target: &str, scheduled_at: DateTime<Utc>) {
        tracing::warn!(target_name = %target, %scheduled_at, "previous check still running; tick skipped");
        self.shared.metrics.skipped(target);
    }

    fn next_check(&self, target: &str, at: DateTime<Utc>) {
        self.shared.metrics.set_next_check(target, at);
    }

    fn dispatched(&self, target: &str, scheduled_at: DateTime<Utc>) {
        self.shared
            .metrics
            .set_last_dispatched(target, scheduled_at);
    }
}

/// Where a check's bundle came from: fetched, or made for a check in which nothing could arrive
/// (cancelled at its deadline, or unable to start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Fetched,
    StandIn,
}

/// Counts a deadline record as pending while it lives.
struct Recording(Arc<Shared>);

impl Drop for Recording {
    fn drop(&mut self) {
        self.0.recording.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// The monitored targets of a configuration as the scheduler plans them.
pub fn planned_targets(config: &Config) -> Vec<PlannedTarget> {
    config
        .monitored()
        .map(|(target, monitor)| PlannedTarget {
            name: target.name.clone(),
            schedule: monitor.schedule.clone(),
            deadline: monitor.timeout.saturating_mul(DEADLINE_TIMEOUTS),
        })
        .collect()
}
