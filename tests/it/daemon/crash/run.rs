//! One run of the crash test: the daemon started on the shared database, killed at its moment
//! (a delay after its start or readiness, or a log line the reader kills on), and what it logged
//! until it died; and the seeded RNG that draws the moments.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::log::{self, RunLog, Trigger};
use super::{DRIFT_AT, LOG_FILTER};
use crate::common::net::free_port;
use crate::common::process::{KillOnDrop, run_with_json_log, signal};
use teewatch_sim::server::model_name;

/// How long one run may wait for its kill before the test gives up on it.
const RUN_LIMIT: Duration = Duration::from_secs(90);

/// SplitMix64: a seeded sequence, so that a failing run can be replayed with its seed.
pub struct Rng(pub u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn millis(&mut self, up_to: u64) -> Duration {
        Duration::from_millis(self.below(up_to + 1))
    }
}

/// When a run is killed.
#[derive(Debug, Clone)]
pub enum Moment {
    /// This long after the process was started.
    AfterStart(Duration),
    /// This long after `/readyz` first answered 200.
    AfterReady(Duration),
    /// Right after a log line.
    Line(Trigger),
}

impl Moment {
    pub fn kind(&self) -> &'static str {
        match self {
            Moment::AfterStart(_) => "random delay after start",
            Moment::AfterReady(_) => "random delay after ready",
            Moment::Line(Trigger::Stored(_)) => "right after a check was logged as stored",
            Moment::Line(Trigger::InWrite(_)) => "right after a record's INSERT INTO checks",
            Moment::Line(Trigger::FailedCheckOf(_)) => "right after the drifted check was stored",
            Moment::Line(Trigger::InMigration) => "inside the first schema migration",
            Moment::Line(Trigger::InRetention) => "inside retention's transaction at start",
        }
    }
}

/// The moment of run `i`: the four kinds in turn, their parameter drawn from `rng`, but for
/// the first run and the drift's.
pub fn moment(i: usize, rng: &mut Rng) -> Moment {
    // The first start creates the schema: it dies inside its first migration.
    if i == 0 {
        return Moment::Line(Trigger::InMigration);
    }
    if i == DRIFT_AT {
        return Moment::Line(Trigger::FailedCheckOf(model_name(0)));
    }
    match i % 4 {
        // Every other one of these dies inside the retention pass each start runs.
        0 if i % 8 == 4 => Moment::Line(Trigger::InRetention),
        0 => Moment::AfterStart(rng.millis(300)),
        1 => Moment::Line(Trigger::Stored(1 + rng.below(20) as usize)),
        2 => Moment::Line(Trigger::InWrite(1 + rng.below(20) as usize)),
        _ => Moment::AfterReady(rng.millis(2500)),
    }
}

/// One killed run.
pub struct Run {
    pub moment: Moment,
    pub spawned_at: DateTime<Utc>,
    pub killed_at: DateTime<Utc>,
    pub log: RunLog,
}

/// Whether `/readyz` answers 200.
pub async fn ready(port: u16) -> bool {
    match reqwest::get(format!("http://127.0.0.1:{port}/readyz")).await {
        Ok(r) => r.status() == 200,
        Err(_) => false,
    }
}

pub async fn get(port: u16, path: &str) -> String {
    reqwest::get(format!("http://127.0.0.1:{port}{path}"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Starts the daemon, kills it at `moment` and returns what it logged until it died.
pub async fn killed_run(config: &Path, db: &Path, moment: Moment) -> Run {
    let port = free_port();
    let spawned_at = Utc::now();
    let child = run_with_json_log(port, config, db)
        .env("RUST_LOG", LOG_FILTER)
        .env_remove("NOTIFY_SOCKET")
        .env_remove("JOURNAL_STREAM")
        .spawn()
        .unwrap();
    let mut guard = KillOnDrop::new(child);
    let pid = guard.id();
    let stderr = guard.child().stderr.take().unwrap();
    let trigger = match &moment {
        Moment::Line(t) => Some(t.clone()),
        _ => None,
    };
    let reader = log::read(stderr, pid, trigger);
    let started = Instant::now();
    let mut killed_here = None;
    let exited_early = |guard: &mut KillOnDrop| guard.child().try_wait().unwrap().is_some();
    match &moment {
        Moment::AfterStart(delay) => {
            tokio::time::sleep(*delay).await;
            if !exited_early(&mut guard) {
                signal(pid, "KILL");
                killed_here = Some(Utc::now());
            }
        }
        Moment::AfterReady(delay) => {
            while !ready(port).await && started.elapsed() < RUN_LIMIT {
                if exited_early(&mut guard) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            tokio::time::sleep(*delay).await;
            if !exited_early(&mut guard) {
                signal(pid, "KILL");
                killed_here = Some(Utc::now());
            }
        }
        Moment::Line(_) => {}
    }
    // The reader kills on its line; a run whose line never comes is ended here and reported.
    let status = loop {
        if let Some(status) = guard.child().try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > RUN_LIMIT {
            let _ = guard.child().kill();
            let status = guard.child().wait().unwrap();
            let log = reader.join().unwrap();
            panic!(
                "{moment:?} did not come within {RUN_LIMIT:?} ({status}); the log ends:\n{}",
                log.tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let log = reader.join().unwrap();
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "the daemon ended on its own ({status}) before its kill ({moment:?}); the log ends:\n{}",
        log.tail()
    );
    let killed_at = log.killed_at.or(killed_here).unwrap();
    Run {
        moment,
        spawned_at,
        killed_at,
        log,
    }
}
