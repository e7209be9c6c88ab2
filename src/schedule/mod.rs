//! The daemon's scheduler: when each target is checked, and the machinery that starts those
//! checks on the wall clock.
//!
//! The policy (phase jitter, the interval grid, skipping a target whose check still runs,
//! catch-up after a pause, deadlines carried into each check) lives in [`planner`], a pure type
//! that takes `now` from its caller and is unit-tested with a fake clock. [`driver`] runs it: a
//! tokio-cron-scheduler job ticks once a second on the wall clock, asks the planner what is due
//! and hands each check to its own tokio task, bounded by a concurrency semaphore and the
//! check's deadline; a supervisor task recreates the ticker when it stops firing.
//! `docs/schedule.md` describes the policy and the library pitfalls it designs around.

pub mod driver;
pub mod planner;

use std::time::Duration;

pub use driver::{Runner, Scheduler, SchedulerOptions, ShutdownReport};
pub use planner::{
    Decision, Due, PlannedTarget, Planner, PlannerOptions, epoch_grid_slot_at_or_before,
};

/// Why the scheduler could not take a set of targets or could not run.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// croner did not accept a cron expression the configuration passed.
    #[error(
        "target \"{target}\": the cron expression \"{expression}\" is not understood: {reason}"
    )]
    Cron {
        target: String,
        expression: String,
        reason: String,
    },
    /// A cron expression that has no future occurrence, such as the 30th of February.
    #[error("target \"{target}\": the cron expression \"{expression}\" never fires")]
    CronNeverFires { target: String, expression: String },
    /// An interval of zero would make every tick due.
    #[error("target \"{target}\": the interval must be longer than zero")]
    ZeroInterval { target: String },
    /// An interval beyond what chrono can add to a date.
    #[error("target \"{target}\": the interval of {seconds} s is too long")]
    IntervalTooLong { target: String, seconds: u64 },
    /// Two targets with one name would share one running flag.
    #[error("target \"{target}\" is listed twice")]
    DuplicateTarget { target: String },
    /// A concurrency limit of zero would never start a check.
    #[error("the concurrency limit must be at least 1")]
    ZeroConcurrency,
    /// The ticker is a cron job with a seconds field, so its period is whole seconds.
    #[error("the tick must be a whole number of seconds from 1 to 59, found {0:?}")]
    Tick(Duration),
    /// tokio-cron-scheduler refused an operation.
    #[error("the wall-clock ticker (tokio-cron-scheduler) failed: {0}")]
    Ticker(#[from] tokio_cron_scheduler::JobSchedulerError),
    /// tokio-cron-scheduler did not answer in time; its actors may have stopped.
    #[error("the wall-clock ticker (tokio-cron-scheduler) did not answer within {0:?}")]
    TickerTimeout(Duration),
}
