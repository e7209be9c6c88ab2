//! Reading one `teewatch run`'s JSON log as it is written, and SIGKILLing the process the moment
//! a chosen line appears: right after a check's record was committed ("check finished", which the
//! daemon logs only once the store's transaction is committed), or right after a statement inside
//! a transaction: the `INSERT INTO checks` of a record, retention's marking of the bundles it
//! drops, or sqlx's own row marking the first schema migration applied. sqlx logs each statement (its first words as `summary`) once it has run, so
//! the transaction is open then and its commit a few statements away.
//!
//! The reader runs on its own thread so that the kill follows the line by as little as a pipe
//! read; the log up to the process's death is returned whole once it has ended, which is the
//! exact record of what the daemon said before it died.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::process::ChildStderr;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::common::process::signal;

/// The line whose appearance kills the process (`None`: the test kills it itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// Right after the `n`-th "check finished" line of this run.
    Stored(usize),
    /// Right after the `n`-th `INSERT INTO checks` statement of this run: inside a record's
    /// transaction.
    InWrite(usize),
    /// Right after the first "check finished" of `target` whose verdict is `fail`.
    FailedCheckOf(String),
    /// Right after sqlx recorded the first schema migration as applied, inside the migration's
    /// transaction (the commit comes next).
    InMigration,
    /// Right after retention marked the bundles it drops, inside its transaction (the bundles
    /// themselves are deleted next).
    InRetention,
}

/// One check the daemon logged as stored: its id and its target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub check_id: i64,
    pub target: String,
    pub state: String,
}

/// What one run's log said, read to its end.
#[derive(Debug, Default)]
pub struct RunLog {
    /// Every line, as written (JSON objects, or text such as a panic message).
    pub lines: Vec<String>,
    /// The checks it logged as stored, in log order.
    pub stored: Vec<Stored>,
    /// Targets whose record had run its `INSERT INTO checks` with no "check finished" after it
    /// when the log ended: a write the kill may have cut.
    pub writing: Vec<String>,
    /// When the reader sent SIGKILL, if the trigger came.
    pub killed_at: Option<DateTime<Utc>>,
}

impl RunLog {
    /// The last lines, for assertion messages.
    pub fn tail(&self) -> String {
        let from = self.lines.len().saturating_sub(30);
        self.lines[from..]
            .iter()
            .map(|l| l.chars().take(300).collect::<String>())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Lines whose message is `message`.
    pub fn count(&self, message: &str) -> usize {
        self.lines
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["fields"]["message"].as_str() == Some(message))
            .count()
    }
}

/// A field of a log line: the event's own, else its span's (`target` of the check span).
fn field<'a>(line: &'a Value, name: &str) -> Option<&'a str> {
    line["fields"][name]
        .as_str()
        .or_else(|| line["span"][name].as_str())
}

/// Reads `stderr` of the process `pid` to its end on a thread, killing the process when
/// `trigger`'s line appears. Join the handle once the process has died.
pub fn read(
    stderr: ChildStderr,
    pid: u32,
    trigger: Option<Trigger>,
) -> std::thread::JoinHandle<RunLog> {
    std::thread::spawn(move || {
        let mut log = RunLog::default();
        let mut finished = 0usize;
        let mut inserts = 0usize;
        // Per target: whether its latest `INSERT INTO checks` has no "check finished" yet.
        let mut open: BTreeMap<String, bool> = BTreeMap::new();
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let parsed: Option<Value> = serde_json::from_str(&line).ok();
            log.lines.push(line);
            let Some(v) = parsed else { continue };
            let message = v["fields"]["message"].as_str().unwrap_or("");
            let target = field(&v, "target").unwrap_or("").to_string();
            let fire = if message == "check finished" {
                finished += 1;
                let check_id = v["fields"]["check_id"]
                    .as_i64()
                    .unwrap_or_else(|| panic!("a check finished line without a check_id: {v}"));
                let state = field(&v, "state").unwrap_or("").to_string();
                open.insert(target.clone(), false);
                log.stored.push(Stored {
                    check_id,
                    target: target.clone(),
                    state: state.clone(),
                });
                match &trigger {
                    Some(Trigger::Stored(n)) => finished == *n,
                    Some(Trigger::FailedCheckOf(t)) => *t == target && state == "fail",
                    _ => false,
                }
            } else if v["target"].as_str() == Some("sqlx::query") {
                let summary = v["fields"]["summary"].as_str().unwrap_or("");
                if summary.starts_with("INSERT INTO checks ") {
                    inserts += 1;
                    open.insert(target.clone(), true);
                    trigger == Some(Trigger::InWrite(inserts))
                } else if summary.starts_with("INSERT INTO _sqlx_migrations ") {
                    trigger == Some(Trigger::InMigration)
                } else {
                    summary.starts_with("UPDATE checks SET bundle_removed_at ")
                        && trigger == Some(Trigger::InRetention)
                }
            } else {
                false
            };
            if fire && log.killed_at.is_none() {
                signal(pid, "KILL");
                log.killed_at = Some(Utc::now());
            }
        }
        log.writing = open
            .into_iter()
            .filter(|(_, writing)| *writing)
            .map(|(target, _)| target)
            .collect();
        log
    })
}
