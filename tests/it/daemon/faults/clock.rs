//! The clock's rows: the daemon's injected clock jumps 40 days forward, then 40 days behind the
//! real time. Forward, the fresh collateral has expired at the bundle's `observed_at`; back, it
//! is not valid yet; either is `unknown`, never `pass`. Scheduling neither bursts to catch up
//! the skipped slots nor waits for the clock to return: each jump is followed by checks on the
//! usual rhythm.
//!
//! The daemon runs in-process here: only there can a test move its clock (a process's wall
//! clock cannot be moved without privileges), so these rows have no peak RSS of their own.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use teewatch::clock::Clock;
use teewatch::daemon::{Daemon, RunOptions};

use super::harness::{PATIENCE, StoredCheck, history, nothing_lost, row_config, stored};
use super::rows::{ROWS, Row, Setup};
use super::{BYSTANDER, Matrix, judge, latest_of};
use crate::common::daemon_run::scrape;
use teewatch_sim::server::model_name;

/// Waits until `ready` holds for a scrape of the in-process daemon.
async fn wait_for(daemon: &Daemon, what: &str, ready: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let text = scrape(daemon).await;
        if ready(&text) {
            return text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not seen within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text:?}: {e}"))
        .with_timezone(&Utc)
}

pub async fn clock_rows(matrix: &mut Matrix) {
    let target = model_name(0);
    let bystander = model_name(BYSTANDER);
    let config = matrix.write_config(
        "clock",
        &row_config(&matrix.sim_config, &[&target, &bystander], ""),
    );
    let _ = std::fs::remove_dir_all(matrix.run.dir.join("collateral"));
    let before = history(&matrix.db);
    let clock = Clock::adjustable();
    let daemon = Daemon::start_with_clock(
        RunOptions {
            config_path: config,
            listen: Some("127.0.0.1:0".parse().unwrap()),
            db: Some(matrix.db.clone()),
        },
        clock.clone(),
    )
    .await
    .unwrap_or_else(|e| panic!("the daemon did not start: {e}"));
    wait_for(&daemon, "a check before the jumps", |s| {
        stored(s, &target) >= 1.0
    })
    .await;
    let rows: Vec<Row> = ROWS
        .into_iter()
        .filter(|r| matches!(r.setup, Setup::ClockForward | Setup::ClockBackward))
        .collect();
    for row in rows {
        let jump = match row.setup {
            Setup::ClockForward => TimeDelta::days(40),
            _ => TimeDelta::days(-80),
        };
        let count = stored(&scrape(&daemon).await, &target);
        assert!(clock.jump(jump));
        let jumped_at = clock.now();
        // Two more records: the second started after the jump.
        let text = wait_for(&daemon, row.name, |s| stored(s, &target) >= count + 2.0).await;
        let checks = history(&matrix.db);
        let latest = latest_of(&checks, &target);
        println!("{}: {}", row.name, super::named(&row, latest));
        let mut problems = judge(&row, &target, latest, &text);
        // Two more on the rhythm: each started within an hour of its own slot (a burst catching
        // up 40 days of two-second slots would start them days late) and after the jump.
        let count = stored(&text, &target);
        wait_for(&daemon, "checks after the jump", |s| {
            stored(s, &target) >= count + 2.0
        })
        .await;
        let checks = history(&matrix.db);
        let recent: Vec<&StoredCheck> = checks
            .iter()
            .filter(|c| c.target == target)
            .rev()
            .take(2)
            .collect();
        for c in &recent {
            let lag = at(&c.started_at) - at(&c.scheduled_at);
            let started = at(&c.started_at);
            if lag > TimeDelta::hours(1) || started < jumped_at - TimeDelta::hours(1) {
                problems.push(format!(
                    "check {} scheduled at {} started at {} (clock jumped to {jumped_at}): not on the rhythm",
                    c.id, c.scheduled_at, c.started_at
                ));
            }
        }
        matrix.finish(row, None, problems);
    }
    daemon.shutdown(Duration::from_secs(10)).await;
    let after = history(&matrix.db);
    nothing_lost(&before, &after, "clock");
}
