//! The scheduler that runs the planner on the wall clock: a tokio-cron-scheduler job ticks, each
//! due check runs in its own tokio task under a concurrency limit and its deadline, and a
//! supervisor recreates the ticker when it stops firing.
//!
//! The ticker's job only locks the planner, asks what is due and spawns; it never awaits a check,
//! so a long check cannot stall later ticks. tokio-cron-scheduler decides from the wall clock,
//! polled every 500 ms, which is why this module is tested against real time
//! (`tests/it/daemon/schedule_wallclock.rs`) while the policy is tested with a fake clock.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tokio_cron_scheduler::job::JobId;
use tokio_cron_scheduler::{Job, JobScheduler};
use tracing::Instrument;

use super::ScheduleError;
use super::planner::{Decision, Due, PlannedTarget, Planner, PlannerOptions};
use crate::clock::Clock;
use crate::sync::lock;

/// How long any call into tokio-cron-scheduler may take before the ticker is considered dead.
const LIBRARY_TIMEOUT: Duration = Duration::from_secs(5);
/// How many ticks the ticker may miss before the supervisor recreates it.
const STALL_TICKS: u32 = 3;
/// Added to the stall threshold: the library polls every 500 ms, so a healthy ticker fires up to
/// about half a second after its moment.
const STALL_SLACK: Duration = Duration::from_secs(1);
/// How long cancelled checks get to unwind at shutdown before the report is made anyway.
const CANCEL_GRACE: Duration = Duration::from_secs(5);

/// What the scheduler calls: the check itself and the events the daemon records.
pub trait Runner: Send + Sync + 'static {
    /// Runs one check to completion. The scheduler cancels (drops) the future when the deadline
    /// passes.
    fn run(&self, due: Due) -> Pin<Box<dyn Future<Output = ()> + Send>>;
    /// The check of `due` was cancelled at its deadline.
    fn deadline_exceeded(&self, due: &Due);
    /// A tick found the previous check of `target` still running.
    fn skipped(&self, target: &str, scheduled_at: DateTime<Utc>);
    /// The next slot of `target` changed (for the `teewatch_next_check_timestamp_seconds` gauge).
    fn next_check(&self, target: &str, at: DateTime<Utc>);
    /// A check of `target` was dispatched for the slot `scheduled_at` (for the
    /// `teewatch_last_dispatched_slot_timestamp_seconds` gauge). Called when the tick hands the
    /// check to its task, before it waits for its slot and a permit.
    fn dispatched(&self, target: &str, scheduled_at: DateTime<Utc>) {
        let _ = (target, scheduled_at);
    }
}

/// How the scheduler runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedulerOptions {
    /// How many checks may run at once across all targets.
    pub concurrency: usize,
    /// How often the ticker fires: whole seconds from 1 to 59.
    pub tick: Duration,
    /// The policy's tuning.
    pub planner: PlannerOptions,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        SchedulerOptions {
            concurrency: 4,
            tick: Duration::from_secs(1),
            planner: PlannerOptions::default(),
        }
    }
}

/// What happened to the checks in flight when the scheduler shut down.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Checks that ended on their own (completed or reached their deadline) during the drain.
    pub finished: usize,
    /// Checks cancelled when the drain ran out, and checks still waiting for a concurrency permit
    /// (they never started).
    pub cancelled: usize,
}

/// A running scheduler; a cheap handle that can be cloned.
#[derive(Clone)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

/// How one dispatched check ended.
enum Outcome {
    Completed,
    DeadlineExceeded,
    Cancelled,
    NotStarted,
}

/// The tokio-cron-scheduler instance and the id of the ticker job in it.
struct Ticker {
    scheduler: JobScheduler,
    job: JobId,
}

struct Inner {
    planner: Mutex<Planner>,
    runner: Arc<dyn Runner>,
    permits: Semaphore,
    tick: Duration,
    stall_after: Duration,
    /// The reference for `last_fire_ms`, so that the instant fits an atomic.
    epoch: Instant,
    /// When the ticker last fired, in milliseconds after `epoch` (monotonic time).
    last_fire_ms: AtomicU64,
    stopping: AtomicBool,
    /// Checks dispatched and not yet ended, including those waiting for a permit.
    in_flight: watch::Sender<usize>,
    /// Set once at shutdown when the drain runs out.
    cancel: watch::Sender<bool>,
    ended: AtomicUsize,
    cancelled: AtomicUsize,
    ticker: tokio::sync::Mutex<Option<Ticker>>,
    supervisor: Mutex<Option<JoinHandle<()>>>,
    /// The wall clock slots are planned on (the ticker itself fires on the system's).
    clock: Clock,
}

/// Bounds a call into tokio-cron-scheduler, whose actors may have died.
async fn bounded<T>(
    call: impl Future<Output = Result<T, tokio_cron_scheduler::JobSchedulerError>>,
) -> Result<T, ScheduleError> {
    match tokio::time::timeout(LIBRARY_TIMEOUT, call).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(ScheduleError::TickerTimeout(LIBRARY_TIMEOUT)),
    }
}

impl Scheduler {
    /// Plans `targets` and starts ticking. Fails on invalid options or targets, or when
    /// tokio-cron-scheduler cannot start.
    pub async fn start(
        targets: Vec<PlannedTarget>,
        options: SchedulerOptions,
        runner: Arc<dyn Runner>,
    ) -> Result<Scheduler, ScheduleError> {
        Scheduler::resume(targets, &BTreeMap::new(), options, runner).await
    }

    /// [`Scheduler::start`] after a restart: `last_slots` holds the slot of each target's last
    /// recorded check, and a cron slot missed since then is caught up once at the first tick
    /// ([`Planner::resume`]).
    pub async fn resume(
        targets: Vec<PlannedTarget>,
        last_slots: &BTreeMap<String, DateTime<Utc>>,
        options: SchedulerOptions,
        runner: Arc<dyn Runner>,
    ) -> Result<Scheduler, ScheduleError> {
        Scheduler::resume_with_clock(targets, last_slots, options, runner, Clock::system()).await
    }

    /// [`Scheduler::resume`] planning slots on `clock` (a test's adjustable clock).
    pub async fn resume_with_clock(
        targets: Vec<PlannedTarget>,
        last_slots: &BTreeMap<String, DateTime<Utc>>,
        options: SchedulerOptions,
        runner: Arc<dyn Runner>,
        clock: Clock,
    ) -> Result<Scheduler, ScheduleError> {
        if options.concurrency == 0 {
            return Err(ScheduleError::ZeroConcurrency);
        }
        let tick = options.tick;
        if tick.subsec_nanos() != 0 || !(1..=59).contains(&tick.as_secs()) {
            return Err(ScheduleError::Tick(tick));
        }
        let mut planner = Planner::new(options.planner);
        let now = clock.now();
        planner.set_targets(&targets, now)?;
        planner.resume(last_slots, now);
        let slots = planner.slots();
        let epoch = Instant::now();
        let inner = Arc::new(Inner {
            planner: Mutex::new(planner),
            runner,
            permits: Semaphore::new(options.concurrency),
            tick,
            stall_after: tick * STALL_TICKS + STALL_SLACK,
            epoch,
            last_fire_ms: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            in_flight: watch::Sender::new(0),
            cancel: watch::Sender::new(false),
            ended: AtomicUsize::new(0),
            cancelled: AtomicUsize::new(0),
            ticker: tokio::sync::Mutex::new(None),
            supervisor: Mutex::new(None),
            clock,
        });
        let ticker = Ticker::start(Arc::downgrade(&inner), tick).await?;
        *inner.ticker.lock().await = Some(ticker);
        let supervisor = tokio::spawn(
            supervise(Arc::downgrade(&inner), tick)
                .instrument(tracing::info_span!("schedule_supervisor")),
        );
        *lock(&inner.supervisor) = Some(supervisor);
        for (target, at) in &slots {
            inner.runner.next_check(target, *at);
        }
        tracing::info!(
            targets = slots.len(),
            concurrency = options.concurrency,
            tick_s = tick.as_secs(),
            "scheduler started"
        );
        Ok(Scheduler { inner })
    }

    /// Replaces the targets (SIGHUP): unchanged targets keep their next slot, and no target ever
    /// runs twice at once across a reload. On an error the previous targets stay in force.
    pub async fn reload(&self, targets: Vec<PlannedTarget>) -> Result<(), ScheduleError> {
        self.reload_with(targets, || ()).await
    }

    /// [`Scheduler::reload`] that also puts in force whatever else belongs with the new targets
    /// (the daemon's configuration): `commit` runs only when the planner accepted the targets,
    /// and under the planner's lock, so no tick dispatches a check between the new schedule and
    /// `commit`. When the planner refuses them, neither changes.
    pub async fn reload_with(
        &self,
        targets: Vec<PlannedTarget>,
        commit: impl FnOnce(),
    ) -> Result<(), ScheduleError> {
        let slots = {
            let mut planner = lock(&self.inner.planner);
            planner.set_targets(&targets, self.inner.clock.now())?;
            commit();
            planner.slots()
        };
        for (target, at) in &slots {
            self.inner.runner.next_check(target, *at);
        }
        tracing::info!(targets = slots.len(), "scheduler reloaded");
        Ok(())
    }

    /// The next slot of a target, if it is configured and has one.
    pub fn next_due(&self, target: &str) -> Option<DateTime<Utc>> {
        lock(&self.inner.planner).next_due(target)
    }

    /// Whether the ticker fired within the last few ticks and the scheduler is not shutting
    /// down; for `/readyz` and the systemd watchdog.
    pub fn is_healthy(&self) -> bool {
        !self.inner.stopping.load(Ordering::SeqCst)
            && self.inner.last_fire().elapsed() <= self.inner.stall_after
    }

    /// Checks dispatched and not yet ended, including those waiting for a concurrency permit.
    pub fn in_flight(&self) -> usize {
        *self.inner.in_flight.borrow()
    }

    /// Stops ticking, waits up to `drain` for the checks in flight, then cancels the rest.
    /// Checks still waiting for a concurrency permit never start. Every handle stops with it.
    pub async fn shutdown(self, drain: Duration) -> ShutdownReport {
        let inner = self.inner;
        // Setting the flag under the planner's lock means no tick dispatches after this point
        // without its check being counted in `in_flight` first.
        let (ended_before, cancelled_before) = {
            let _planner = lock(&inner.planner);
            inner.stopping.store(true, Ordering::SeqCst);
            (
                inner.ended.load(Ordering::SeqCst),
                inner.cancelled.load(Ordering::SeqCst),
            )
        };
        if let Some(supervisor) = lock(&inner.supervisor).take() {
            supervisor.abort();
        }
        if let Some(ticker) = inner.ticker.lock().await.take() {
            ticker.stop().await;
        }
        inner.permits.close();
        let mut in_flight = inner.in_flight.subscribe();
        let pending = *in_flight.borrow();
        tracing::info!(pending, drain_s = drain.as_secs_f64(), "scheduler stopping");
        let drained = tokio::time::timeout(drain, in_flight.wait_for(|n| *n == 0))
            .await
            .is_ok();
        if !drained {
            inner.cancel.send_replace(true);
            let unwound = tokio::time::timeout(CANCEL_GRACE, in_flight.wait_for(|n| *n == 0))
                .await
                .is_ok();
            if !unwound {
                tracing::warn!(
                    remaining = *in_flight.borrow(),
                    "checks did not stop after cancellation"
                );
            }
        }
        let report = ShutdownReport {
            finished: inner
                .ended
                .load(Ordering::SeqCst)
                .saturating_sub(ended_before),
            cancelled: inner
                .cancelled
                .load(Ordering::SeqCst)
                .saturating_sub(cancelled_before),
        };
        tracing::info!(
            finished = report.finished,
            cancelled = report.cancelled,
            "scheduler stopped"
        );
        report
    }
}

impl Inner {
    fn last_fire(&self) -> Instant {
        self.epoch + Duration::from_millis(self.last_fire_ms.load(Ordering::SeqCst))
    }

    fn mark_fired(&self) {
        let elapsed = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_fire_ms.store(elapsed, Ordering::SeqCst);
    }

    /// One tick: decide what is due and dispatch it. Runner callbacks are made after the
    /// planner's lock is released, so a runner may call back into the scheduler.
    fn on_tick(self: &Arc<Self>) {
        self.mark_fired();
        let now = self.clock.now();
        let (decisions, slots) = {
            let mut planner = lock(&self.planner);
            if self.stopping.load(Ordering::SeqCst) {
                return;
            }
            // Look one tick ahead and let each check wait for its exact slot: the ticker fires
            // once a second, so deciding only on what is already due would start checks up to a
            // whole tick late (half a tick on average).
            let horizon = now + chrono::Duration::from_std(self.tick).unwrap_or_default();
            let decisions = planner.due(horizon);
            let starts = decisions
                .iter()
                .filter(|d| matches!(d, Decision::Start(_)))
                .count();
            if starts > 0 {
                self.in_flight.send_modify(|n| *n += starts);
            }
            let slots: Vec<(String, Option<DateTime<Utc>>)> = decisions
                .iter()
                .map(|d| (d.target().to_owned(), planner.next_due(d.target())))
                .collect();
            (decisions, slots)
        };
        for decision in decisions {
            match decision {
                Decision::Start(due) => {
                    self.runner.dispatched(&due.target, due.scheduled_at);
                    self.dispatch(due);
                }
                Decision::Skip {
                    target,
                    scheduled_at,
                } => {
                    tracing::warn!(
                        target = %target,
                        %scheduled_at,
                        "previous check still running; this slot is skipped"
                    );
                    self.runner.skipped(&target, scheduled_at);
                }
            }
        }
        for (target, at) in slots {
            if let Some(at) = at {
                self.runner.next_check(&target, at);
            }
        }
    }

    /// Runs one check in its own task. `in_flight` already counts it.
    fn dispatch(self: &Arc<Self>, due: Due) {
        let span = tracing::info_span!(
            "check",
            target = %due.target,
            scheduled_at = %due.scheduled_at
        );
        let inner = Arc::clone(self);
        let mut cancel = self.cancel.subscribe();
        tokio::spawn(
            async move {
                // Dropped last, also when the runner panics: the target stops counting as
                // running only once the check is really gone.
                let _finish = Finish {
                    inner: Arc::clone(&inner),
                    target: due.target.clone(),
                };
                let outcome = tokio::select! {
                    biased;
                    _ = cancel.wait_for(|stop| *stop) => Outcome::Cancelled,
                    outcome = inner.run_one(due) => outcome,
                };
                let counter = match outcome {
                    Outcome::Completed | Outcome::DeadlineExceeded => &inner.ended,
                    Outcome::Cancelled => {
                        tracing::info!("check cancelled at shutdown");
                        &inner.cancelled
                    }
                    Outcome::NotStarted => &inner.cancelled,
                };
                counter.fetch_add(1, Ordering::SeqCst);
            }
            .instrument(span),
        );
    }

    /// Waits for the check's slot and a permit, then runs the check under its deadline.
    async fn run_one(&self, mut due: Due) -> Outcome {
        if let Ok(wait) = (due.scheduled_at - self.clock.now()).to_std() {
            tokio::time::sleep(wait).await;
        }
        let Ok(_permit) = self.permits.acquire().await else {
            return Outcome::NotStarted;
        };
        due.started_at = self.clock.now();
        tracing::debug!("check started");
        let result = tokio::time::timeout(due.deadline, self.runner.run(due.clone())).await;
        // The check's future is dropped by now, so a cancelled check is gone before it is
        // reported.
        match result {
            Ok(()) => {
                tracing::debug!("check ended");
                Outcome::Completed
            }
            Err(_) => {
                tracing::warn!(
                    deadline_s = due.deadline.as_secs_f64(),
                    "check cancelled at its deadline"
                );
                self.runner.deadline_exceeded(&due);
                Outcome::DeadlineExceeded
            }
        }
    }

    /// Recreates the ticker: first only its job (the library's known failure is a job that stops
    /// firing), and when that did not help, the whole tokio-cron-scheduler instance.
    async fn repair_ticker(self: &Arc<Self>, replace_scheduler: bool) {
        let mut slot = self.ticker.lock().await;
        if self.stopping.load(Ordering::SeqCst) {
            return;
        }
        let weak = Arc::downgrade(self);
        let result = match slot.as_mut() {
            Some(ticker) if !replace_scheduler => ticker.replace_job(weak, self.tick).await,
            _ => {
                if let Some(old) = slot.take() {
                    old.stop().await;
                }
                Ticker::start(weak, self.tick)
                    .await
                    .map(|ticker| *slot = Some(ticker))
            }
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "could not recreate the ticker; retrying later");
        }
    }
}

impl Drop for Inner {
    /// Without an explicit shutdown, the last handle going away still stops the library's loop.
    fn drop(&mut self) {
        if let Some(supervisor) = lock(&self.supervisor).take() {
            supervisor.abort();
        }
        if let Some(ticker) = self.ticker.get_mut().take() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(
                    ticker
                        .stop()
                        .instrument(tracing::info_span!("schedule_ticker_stop")),
                );
            }
        }
    }
}

/// Ends a dispatched check's bookkeeping when its task ends, however it ends.
struct Finish {
    inner: Arc<Inner>,
    target: String,
}

impl Drop for Finish {
    fn drop(&mut self) {
        lock(&self.inner.planner).finished(&self.target);
        self.inner
            .in_flight
            .send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl Ticker {
    /// A new tokio-cron-scheduler instance with the ticker job, started.
    async fn start(inner: Weak<Inner>, tick: Duration) -> Result<Ticker, ScheduleError> {
        let scheduler = bounded(JobScheduler::new()).await?;
        let job = bounded(scheduler.add(ticker_job(inner, tick)?)).await?;
        bounded(scheduler.start()).await?;
        Ok(Ticker { scheduler, job })
    }

    /// Removes the ticker job and adds a fresh one.
    async fn replace_job(
        &mut self,
        inner: Weak<Inner>,
        tick: Duration,
    ) -> Result<(), ScheduleError> {
        if let Err(e) = bounded(self.scheduler.remove(&self.job)).await {
            tracing::warn!(error = %e, "could not remove the stalled ticker job");
        }
        self.job = bounded(self.scheduler.add(ticker_job(inner, tick)?)).await?;
        Ok(())
    }

    /// Removes the job and stops the library's loop.
    async fn stop(mut self) {
        if let Err(e) = bounded(self.scheduler.remove(&self.job)).await {
            tracing::debug!(error = %e, "could not remove the ticker job");
        }
        if let Err(e) = bounded(self.scheduler.shutdown()).await {
            tracing::debug!(error = %e, "could not shut tokio-cron-scheduler down");
        }
    }
}

/// The ticker job: a cron job with a seconds field rather than a repeated job, because the
/// library computes a cron job's next tick from the current time, while a repeated job's next
/// tick is its previous one plus the period and stops firing once that falls into the past.
fn ticker_job(inner: Weak<Inner>, tick: Duration) -> Result<Job, ScheduleError> {
    let expression = format!("*/{} * * * * *", tick.as_secs());
    let job = Job::new_async(expression, move |_id, _scheduler| {
        let inner = inner.clone();
        Box::pin(
            async move {
                if let Some(inner) = inner.upgrade() {
                    inner.on_tick();
                }
            }
            .instrument(tracing::debug_span!("schedule_tick")),
        )
    })?;
    Ok(job)
}

/// Watches the ticker and recreates it when it has not fired for several ticks.
async fn supervise(inner: Weak<Inner>, tick: Duration) {
    let mut last_wake = Instant::now();
    let mut grace_from = Instant::now();
    let mut repairs: u32 = 0;
    loop {
        tokio::time::sleep(tick).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        if inner.stopping.load(Ordering::SeqCst) {
            return;
        }
        let now = Instant::now();
        // Waking far too late means the whole process was stopped (SIGSTOP, a suspended VM) or
        // starved; the ticker was as frozen as this task, so it gets a full stall period from
        // now before it is judged.
        if now.duration_since(last_wake) > tick * STALL_TICKS {
            grace_from = now;
        }
        last_wake = now;
        let last_fire = inner.last_fire();
        if now.duration_since(last_fire) <= inner.stall_after {
            repairs = 0;
            continue;
        }
        if now.duration_since(last_fire.max(grace_from)) <= inner.stall_after {
            continue;
        }
        tracing::warn!(
            silent_s = now.duration_since(last_fire).as_secs_f64(),
            replace_scheduler = repairs > 0,
            "the wall-clock ticker stopped firing; recreating it"
        );
        inner.repair_ticker(repairs > 0).await;
        repairs = repairs.saturating_add(1);
        grace_from = Instant::now();
    }
}

#[cfg(test)]
#[path = "driver_tests.rs"]
mod tests;
