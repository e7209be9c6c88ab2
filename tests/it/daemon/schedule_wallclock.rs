//! The scheduler against the real wall clock and the real tokio-cron-scheduler: short intervals
//! keep firing for minutes, a check longer than its interval skips instead of piling up, a check
//! that never ends is cancelled at its deadline, the concurrency limit holds, shutdown drains
//! then cancels, and a process stopped with SIGSTOP resumes checking within one interval of
//! SIGCONT without a burst.
//!
//! tokio-cron-scheduler polls the wall clock every 500 ms, so a paused tokio clock cannot drive
//! it; these tests take real time (the longest about two and a half minutes) and run in
//! parallel. They assert counts with generous tolerances, never the timing of a single tick.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::HashMap;
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::pin::Pin;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use crate::common::process;

use chrono::{DateTime, Utc};
use process::{KillOnDrop, signal};
use teewatch::config::Schedule;
use teewatch::schedule::{Due, PlannedTarget, PlannerOptions, Runner, Scheduler, SchedulerOptions};

/// What a fake check does.
#[derive(Clone, Copy)]
enum Work {
    Sleep(Duration),
    Forever,
}

/// One check as the fake runner saw it; `end` is set when its future is dropped, whether it
/// completed or was cancelled.
#[derive(Clone, Debug)]
struct Run {
    target: String,
    start: Instant,
    end: Option<Instant>,
}

#[derive(Default)]
struct Record {
    runs: Mutex<Vec<Run>>,
    skipped: Mutex<Vec<String>>,
    deadlines: Mutex<Vec<String>>,
    running: Mutex<HashMap<String, usize>>,
    /// The largest number of checks of one target seen running at once.
    max_per_target: AtomicUsize,
    total: AtomicUsize,
    max_total: AtomicUsize,
}

impl Record {
    fn starts(&self, target: &str) -> usize {
        self.runs
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.target == target)
            .count()
    }
    fn all_starts(&self) -> usize {
        self.runs.lock().unwrap().len()
    }
    fn skipped(&self, target: &str) -> usize {
        self.skipped
            .lock()
            .unwrap()
            .iter()
            .filter(|t| *t == target)
            .count()
    }
}

/// Counts a check as running from its start until its future is dropped.
struct RunGuard {
    record: Arc<Record>,
    index: usize,
    target: String,
}

impl RunGuard {
    fn begin(record: Arc<Record>, target: String) -> RunGuard {
        let index = {
            let mut runs = record.runs.lock().unwrap();
            runs.push(Run {
                target: target.clone(),
                start: Instant::now(),
                end: None,
            });
            runs.len() - 1
        };
        {
            let mut running = record.running.lock().unwrap();
            let n = running.entry(target.clone()).or_default();
            *n += 1;
            record.max_per_target.fetch_max(*n, Ordering::SeqCst);
        }
        let total = record.total.fetch_add(1, Ordering::SeqCst) + 1;
        record.max_total.fetch_max(total, Ordering::SeqCst);
        RunGuard {
            record,
            index,
            target,
        }
    }
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        self.record.total.fetch_sub(1, Ordering::SeqCst);
        *self
            .record
            .running
            .lock()
            .unwrap()
            .entry(self.target.clone())
            .or_default() -= 1;
        self.record.runs.lock().unwrap()[self.index].end = Some(Instant::now());
    }
}

struct FakeRunner {
    record: Arc<Record>,
    work: Box<dyn Fn(&str) -> Work + Send + Sync>,
}

impl Runner for FakeRunner {
    fn run(&self, due: Due) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let record = Arc::clone(&self.record);
        let work = (self.work)(&due.target);
        Box::pin(async move {
            let _guard = RunGuard::begin(record, due.target);
            match work {
                Work::Sleep(d) => tokio::time::sleep(d).await,
                Work::Forever => std::future::pending::<()>().await,
            }
        })
    }
    fn deadline_exceeded(&self, due: &Due) {
        self.record
            .deadlines
            .lock()
            .unwrap()
            .push(due.target.clone());
    }
    fn skipped(&self, target: &str, _scheduled_at: DateTime<Utc>) {
        self.record.skipped.lock().unwrap().push(target.to_owned());
    }
    fn next_check(&self, _target: &str, _at: DateTime<Utc>) {}
}

fn target(name: &str, interval: Duration, deadline: Duration) -> PlannedTarget {
    PlannedTarget {
        name: name.to_owned(),
        schedule: Schedule::Interval(interval),
        deadline,
    }
}

async fn start(
    targets: Vec<PlannedTarget>,
    options: SchedulerOptions,
    work: impl Fn(&str) -> Work + Send + Sync + 'static,
) -> (Scheduler, Arc<Record>) {
    let record = Arc::new(Record::default());
    let runner = Arc::new(FakeRunner {
        record: Arc::clone(&record),
        work: Box::new(work),
    });
    let scheduler = Scheduler::start(targets, options, runner).await.unwrap();
    (scheduler, record)
}

/// Checks of one target never overlap: each starts after the previous one ended.
fn assert_no_overlap(record: &Record, name: &str) {
    let runs: Vec<Run> = record
        .runs
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.target == name)
        .cloned()
        .collect();
    for pair in runs.windows(2) {
        let ended = pair[0].end.expect("an earlier check is still running");
        assert!(pair[1].start >= ended, "{name}: two checks at once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn short_intervals_keep_firing_for_minutes() {
    let interval = Duration::from_secs(2);
    let span = Duration::from_secs(150);
    let names: Vec<String> = (0..5).map(|i| format!("t{i}")).collect();
    let targets = names
        .iter()
        .map(|n| target(n, interval, Duration::from_secs(10)))
        .collect();
    let (scheduler, record) = start(targets, SchedulerOptions::default(), |_| {
        Work::Sleep(Duration::from_millis(100))
    })
    .await;
    let begun = Instant::now();
    let mut unhealthy = 0;
    while begun.elapsed() < span {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if !scheduler.is_healthy() {
            unhealthy += 1;
        }
    }
    scheduler.shutdown(Duration::from_secs(2)).await;

    // Each target's first slot is within one interval of the start (its phase), so 75 slots fall
    // in 150 s; ticks come up to about 1.5 s late, which may push the last ones out.
    let expected = (span.as_secs() / interval.as_secs()) as usize;
    for name in &names {
        let starts = record.starts(name);
        eprintln!("{name}: {starts} checks in {span:?}, expected about {expected}");
        assert!(
            starts + 3 >= expected && starts <= expected + 1,
            "{name}: {starts} checks, expected about {expected}"
        );
        assert_eq!(
            record.skipped(name),
            0,
            "{name}: checks of 100 ms never skip"
        );
        assert_no_overlap(&record, name);
    }
    assert_eq!(record.max_per_target.load(Ordering::SeqCst), 1);
    assert_eq!(unhealthy, 0, "the ticker stalled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_longer_than_its_interval_skips_instead_of_piling_up() {
    let (scheduler, record) = start(
        vec![target(
            "slow",
            Duration::from_secs(1),
            Duration::from_secs(30),
        )],
        SchedulerOptions::default(),
        |_| Work::Sleep(Duration::from_millis(3_500)),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(15)).await;
    let in_flight = scheduler.in_flight();
    scheduler.shutdown(Duration::from_secs(5)).await;

    assert!(in_flight <= 1, "{in_flight} checks in flight");
    assert_eq!(record.max_per_target.load(Ordering::SeqCst), 1);
    assert_no_overlap(&record, "slow");
    // A check takes 3.5 s and the next free slot comes at most a second later: a start every
    // four seconds, the slots in between skipped.
    let starts = record.starts("slow");
    assert!((3..=5).contains(&starts), "{starts} checks in 15 s");
    let skipped = record.skipped("slow");
    eprintln!("{starts} checks and {skipped} skips in 15 s");
    assert!(skipped >= 6, "only {skipped} skips");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_past_its_deadline_is_cancelled_and_the_next_slot_fires() {
    let (scheduler, record) = start(
        vec![target(
            "stuck",
            Duration::from_secs(2),
            Duration::from_secs(1),
        )],
        SchedulerOptions::default(),
        |_| Work::Forever,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(9)).await;
    scheduler.shutdown(Duration::from_secs(1)).await;

    let runs = record.runs.lock().unwrap().clone();
    let deadlines = record.deadlines.lock().unwrap().len();
    assert!(runs.len() >= 3, "only {} checks in 9 s", runs.len());
    assert!(
        deadlines + 1 >= runs.len(),
        "{deadlines} deadlines for {} checks",
        runs.len()
    );
    for run in runs.iter().take(deadlines) {
        // The future was dropped at the deadline: it ran about one second.
        let ran = run.end.expect("a cancelled check was not dropped") - run.start;
        assert!(
            ran >= Duration::from_millis(900) && ran < Duration::from_millis(2_500),
            "ran {ran:?}"
        );
    }
    assert_eq!(
        record.skipped("stuck"),
        0,
        "a cancelled check does not block its next slot"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_concurrency_limit_holds_across_targets() {
    let targets = (0..20)
        .map(|i| {
            target(
                &format!("c{i}"),
                Duration::from_secs(60),
                Duration::from_secs(30),
            )
        })
        .collect();
    let options = SchedulerOptions {
        concurrency: 3,
        // No phase: all twenty are due on the first tick.
        planner: PlannerOptions {
            max_phase: Duration::ZERO,
            ..PlannerOptions::default()
        },
        ..SchedulerOptions::default()
    };
    let (scheduler, record) = start(targets, options, |_| {
        Work::Sleep(Duration::from_millis(500))
    })
    .await;
    let begun = Instant::now();
    let mut most_in_flight = 0;
    while record.all_starts() < 20 || record.total.load(Ordering::SeqCst) > 0 {
        assert!(
            begun.elapsed() < Duration::from_secs(15),
            "checks did not all run"
        );
        most_in_flight = most_in_flight.max(scheduler.in_flight());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    scheduler.shutdown(Duration::from_secs(1)).await;

    assert_eq!(record.max_total.load(Ordering::SeqCst), 3);
    assert_eq!(record.all_starts(), 20);
    // Checks waiting for a permit count as in flight (and as running for the skip rule).
    assert!(most_in_flight > 3, "at most {most_in_flight} in flight");
    assert!(record.skipped.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_then_cancels() {
    let targets = vec![
        target("quick", Duration::from_secs(60), Duration::from_secs(30)),
        target("endless", Duration::from_secs(60), Duration::from_secs(60)),
    ];
    let options = SchedulerOptions {
        planner: PlannerOptions {
            max_phase: Duration::ZERO,
            ..PlannerOptions::default()
        },
        ..SchedulerOptions::default()
    };
    let (scheduler, record) = start(targets, options, |name| {
        if name == "quick" {
            Work::Sleep(Duration::from_millis(1_000))
        } else {
            Work::Forever
        }
    })
    .await;
    let begun = Instant::now();
    while record.all_starts() < 2 {
        assert!(
            begun.elapsed() < Duration::from_secs(5),
            "checks did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stopping = Instant::now();
    let report = scheduler.shutdown(Duration::from_secs(2)).await;
    let took = stopping.elapsed();

    assert_eq!(report.finished, 1, "{report:?}");
    assert_eq!(report.cancelled, 1, "{report:?}");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(5),
        "{took:?}"
    );
    let runs = record.runs.lock().unwrap();
    assert!(
        runs.iter().all(|r| r.end.is_some()),
        "a check outlived shutdown"
    );
    assert!(record.deadlines.lock().unwrap().is_empty());
}

/// The environment variable that turns `sigstop_child` into the child process.
const CHILD: &str = "TEEWATCH_SCHED_CHILD";
const CHILD_INTERVAL: Duration = Duration::from_secs(2);

/// The child of `sigstop_resumes_within_one_interval`: a scheduler with one target every 2 s,
/// printing `CHECK <unix ms>` at each check start. Does nothing unless run as the child.
#[test]
fn sigstop_child() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // The scheduler's logs go to stderr, which the parent shows when it fails.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter("teewatch=info")
        .try_init();
    runtime.block_on(async {
        struct Printer;
        impl Runner for Printer {
            fn run(&self, _due: Due) -> Pin<Box<dyn Future<Output = ()> + Send>> {
                println!("CHECK {}", Utc::now().timestamp_millis());
                Box::pin(tokio::time::sleep(Duration::from_millis(100)))
            }
            fn deadline_exceeded(&self, _due: &Due) {}
            fn skipped(&self, _target: &str, _scheduled_at: DateTime<Utc>) {}
            fn next_check(&self, _target: &str, _at: DateTime<Utc>) {}
        }
        let scheduler = Scheduler::start(
            vec![target("child", CHILD_INTERVAL, Duration::from_secs(10))],
            SchedulerOptions::default(),
            Arc::new(Printer),
        )
        .await
        .unwrap();
        // The parent kills the child; this bound only matters if the parent died first.
        tokio::time::sleep(Duration::from_secs(90)).await;
        scheduler.shutdown(Duration::from_secs(1)).await;
    });
}

/// Receives check lines until `until`, returning when each arrived.
fn collect_until(lines: &mpsc::Receiver<Instant>, until: Instant) -> Vec<Instant> {
    let mut arrived = Vec::new();
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(at) => arrived.push(at),
            Err(mpsc::RecvTimeoutError::Timeout) => break,
            Err(mpsc::RecvTimeoutError::Disconnected) => panic!("the child exited"),
        }
    }
    arrived
}

#[test]
fn sigstop_resumes_within_one_interval() {
    if std::env::var_os(CHILD).is_some() {
        return;
    }
    // The harness names a test by its module path without the crate's name.
    let (_, module) = module_path!().split_once("::").unwrap();
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            &format!("{module}::sigstop_child"),
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop::new(child);
    let pid = child.id();
    let stdout = child.child().stdout.take().unwrap();
    let stderr = child.child().stderr.take().unwrap();
    let logs = Arc::new(Mutex::new(String::new()));
    let child_logs = Arc::clone(&logs);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let mut logs = child_logs.lock().unwrap();
            logs.push_str(&line);
            logs.push('\n');
        }
    });
    let (sender, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.starts_with("CHECK ") && sender.send(Instant::now()).is_err() {
                break;
            }
        }
    });

    // Running normally: three checks.
    for _ in 0..3 {
        lines
            .recv_timeout(Duration::from_secs(10))
            .expect("the child does not check");
    }
    signal(pid, "STOP");
    std::thread::sleep(CHILD_INTERVAL * 3);
    // Lines printed just before the stop may still be in the pipe.
    while lines.try_recv().is_ok() {}
    signal(pid, "CONT");
    let resumed = Instant::now();
    let after = collect_until(&lines, resumed + Duration::from_secs(10));

    let logs = logs.lock().unwrap().clone();
    let first = after
        .first()
        .unwrap_or_else(|| panic!("no check after SIGCONT; child logs:\n{logs}"));
    let delay = first.duration_since(resumed);
    let burst = after
        .iter()
        .filter(|at| at.duration_since(resumed) <= Duration::from_secs(1))
        .count();
    eprintln!(
        "first check {delay:?} after SIGCONT, {} checks in 10 s, {burst} in the first second",
        after.len()
    );
    assert!(
        delay <= CHILD_INTERVAL + Duration::from_secs(1),
        "first check {delay:?} after SIGCONT; child logs:\n{logs}"
    );
    assert!(
        after.len() >= 4,
        "only {} checks in 10 s after SIGCONT; child logs:\n{logs}",
        after.len()
    );
    assert!(
        burst <= 2,
        "{burst} checks within a second of SIGCONT; child logs:\n{logs}"
    );
}
