//! Unit tests of the driver on the wall clock: refused options, and the supervisor recreating a
//! ticker broken behind the scheduler's back (a job that stops firing, a library loop that
//! stopped). The behaviour under load, skips, deadlines and SIGSTOP is in
//! `tests/it/daemon/schedule_wallclock.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::atomic::AtomicUsize;

use super::*;
use crate::config::Schedule;

/// Counts check starts and remembers the dispatched slots; every check ends at once.
#[derive(Default)]
struct Counter {
    starts: AtomicUsize,
    dispatched: Mutex<Vec<(String, DateTime<Utc>)>>,
    runs: Mutex<Vec<Due>>,
}

impl Runner for Counter {
    fn run(&self, due: Due) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        self.starts.fetch_add(1, Ordering::SeqCst);
        lock(&self.runs).push(due);
        Box::pin(async {})
    }
    fn deadline_exceeded(&self, _due: &Due) {}
    fn skipped(&self, _target: &str, _scheduled_at: DateTime<Utc>) {}
    fn next_check(&self, _target: &str, _at: DateTime<Utc>) {}
    fn dispatched(&self, target: &str, scheduled_at: DateTime<Utc>) {
        lock(&self.dispatched).push((target.to_owned(), scheduled_at));
    }
}

fn every_second(name: &str) -> PlannedTarget {
    PlannedTarget {
        name: name.to_owned(),
        schedule: Schedule::Interval(Duration::from_secs(1)),
        deadline: Duration::from_secs(5),
    }
}

async fn start(counter: &Arc<Counter>) -> Scheduler {
    // Logs are captured and shown only when a test fails.
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("teewatch=info")
        .try_init();
    Scheduler::start(
        vec![every_second("a")],
        SchedulerOptions::default(),
        Arc::clone(counter) as Arc<dyn Runner>,
    )
    .await
    .unwrap()
}

/// Waits until `starts` exceeds `count`, or panics after `limit`.
async fn wait_for_starts(counter: &Counter, count: usize, limit: Duration) {
    let begun = Instant::now();
    while counter.starts.load(Ordering::SeqCst) <= count {
        assert!(
            begun.elapsed() < limit,
            "no more than {count} checks within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls health until it has been false and then true again; returns how long it was false.
async fn wait_for_unhealthy_then_healthy(scheduler: &Scheduler, limit: Duration) -> Duration {
    let begun = Instant::now();
    while scheduler.is_healthy() {
        assert!(begun.elapsed() < limit, "health never dropped");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let dropped = Instant::now();
    while !scheduler.is_healthy() {
        assert!(begun.elapsed() < limit, "health never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    dropped.elapsed()
}

#[tokio::test]
async fn invalid_options_and_targets_are_refused() {
    let counter: Arc<dyn Runner> = Arc::new(Counter::default());
    let refused = [
        SchedulerOptions {
            concurrency: 0,
            ..SchedulerOptions::default()
        },
        SchedulerOptions {
            tick: Duration::from_millis(500),
            ..SchedulerOptions::default()
        },
        SchedulerOptions {
            tick: Duration::from_secs(60),
            ..SchedulerOptions::default()
        },
    ];
    for options in refused {
        let result = Scheduler::start(vec![], options, Arc::clone(&counter)).await;
        assert!(result.is_err(), "{options:?}");
    }
    let twice = vec![every_second("a"), every_second("a")];
    let result = Scheduler::start(twice, SchedulerOptions::default(), counter).await;
    assert!(matches!(result, Err(ScheduleError::DuplicateTarget { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supervisor_recreates_a_job_that_stopped_firing() {
    let counter = Arc::new(Counter::default());
    let scheduler = start(&counter).await;
    wait_for_starts(&counter, 1, Duration::from_secs(5)).await;
    assert!(scheduler.is_healthy());

    // Remove the ticker job behind the scheduler's back: to the scheduler this looks exactly
    // like tokio-cron-scheduler's repeated job that stops firing.
    let old_job = {
        let ticker = scheduler.inner.ticker.lock().await;
        let ticker = ticker.as_ref().unwrap();
        ticker.scheduler.remove(&ticker.job).await.unwrap();
        ticker.job
    };
    let silent = wait_for_unhealthy_then_healthy(&scheduler, Duration::from_secs(20)).await;
    assert!(silent < Duration::from_secs(5), "unhealthy for {silent:?}");
    let new_job = scheduler.inner.ticker.lock().await.as_ref().unwrap().job;
    assert_ne!(old_job, new_job, "the job was recreated");

    let before = counter.starts.load(Ordering::SeqCst);
    wait_for_starts(&counter, before + 1, Duration::from_secs(5)).await;
    let report = scheduler.shutdown(Duration::from_secs(1)).await;
    assert_eq!(report.cancelled, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supervisor_replaces_a_scheduler_whose_loop_stopped() {
    let counter = Arc::new(Counter::default());
    let scheduler = start(&counter).await;
    wait_for_starts(&counter, 1, Duration::from_secs(5)).await;

    // Stop the library's polling loop: recreating the job alone cannot help, so the supervisor
    // must go on to replace the whole tokio-cron-scheduler instance.
    {
        let mut ticker = scheduler.inner.ticker.lock().await;
        ticker.as_mut().unwrap().scheduler.shutdown().await.unwrap();
    }
    let silent = wait_for_unhealthy_then_healthy(&scheduler, Duration::from_secs(30)).await;
    assert!(silent < Duration::from_secs(12), "unhealthy for {silent:?}");

    let before = counter.starts.load(Ordering::SeqCst);
    wait_for_starts(&counter, before + 1, Duration::from_secs(5)).await;
    scheduler.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_ticking_and_health() {
    let counter = Arc::new(Counter::default());
    let scheduler = start(&counter).await;
    let handle = scheduler.clone();
    wait_for_starts(&counter, 0, Duration::from_secs(5)).await;
    let report = scheduler.shutdown(Duration::from_secs(1)).await;
    assert_eq!(report.cancelled, 0);
    assert!(!handle.is_healthy());
    let after = counter.starts.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(
        counter.starts.load(Ordering::SeqCst),
        after,
        "no check after shutdown"
    );
    assert!(handle.next_due("a").is_some(), "the plan is still readable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dispatched_slot_is_reported_before_its_check_runs() {
    let counter = Arc::new(Counter::default());
    let scheduler = start(&counter).await;
    wait_for_starts(&counter, 2, Duration::from_secs(10)).await;
    scheduler.shutdown(Duration::from_secs(1)).await;
    let dispatched = lock(&counter.dispatched).clone();
    let runs = lock(&counter.runs).clone();
    // Every check that ran was reported first, with its own slot.
    assert!(dispatched.len() >= runs.len(), "{dispatched:?} {runs:?}");
    for (reported, due) in dispatched.iter().zip(&runs) {
        assert_eq!(reported, &(due.target.clone(), due.scheduled_at));
    }
}

#[tokio::test]
async fn a_reload_the_planner_refuses_commits_nothing() {
    let counter = Arc::new(Counter::default());
    let scheduler = start(&counter).await;
    let before = scheduler.next_due("a");
    let mut committed = false;
    let never = PlannedTarget {
        name: "b".to_owned(),
        schedule: Schedule::Cron("0 0 30 2 *".to_owned()),
        deadline: Duration::from_secs(5),
    };
    let error = scheduler
        .reload_with(vec![every_second("a"), never], || committed = true)
        .await
        .unwrap_err();
    assert!(
        matches!(error, ScheduleError::CronNeverFires { .. }),
        "{error}"
    );
    assert!(!committed, "commit ran for a refused reload");
    assert_eq!(scheduler.next_due("a"), before);
    assert_eq!(scheduler.next_due("b"), None);

    scheduler
        .reload_with(vec![every_second("a"), every_second("c")], || {
            committed = true
        })
        .await
        .unwrap();
    assert!(committed);
    assert!(scheduler.next_due("c").is_some());
    scheduler.shutdown(Duration::from_secs(1)).await;
}
