//! The store's rows: a disk that is full (the daemon may not grow any file past a limit) and a
//! database another process keeps locked past the busy timeout. In both the daemon must log
//! the refused record, count it in `teewatch_store_errors_total`, keep serving the latest
//! stored verdict and keep checking; nothing stored before may be lost, and once the lock is
//! released the next check is stored again.

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Stdio};

use super::harness::{self, history, nothing_lost, row_config, stored};
use super::rows::{Expect, Row};
use super::{BYSTANDER, Matrix, judge};
use crate::common::daemon_run::sample;
use teewatch_sim::server::model_name;

/// The largest file offset the disk-full daemon may write: its database and WAL are already
/// larger, so its first record that needs a new page fails as on a full disk. The shared-memory
/// index (32 KiB) and the collateral cache's small files still fit.
const FILE_SIZE_LIMIT: u64 = 64 * 1024;

/// `teewatch run` under RLIMIT_FSIZE, with SIGXFSZ ignored so a write past the limit fails with
/// EFBIG (as on a full disk) instead of killing the process.
fn limit_file_size(command: &mut Command) {
    // SAFETY: between fork and exec only async-signal-safe calls are made: setrlimit(2) and
    // signal(2), with no allocation.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: FILE_SIZE_LIMIT,
                rlim_max: FILE_SIZE_LIMIT,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::signal(libc::SIGXFSZ, libc::SIG_IGN) == libc::SIG_ERR {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

pub async fn disk_full(matrix: &mut Matrix, row: Row) {
    let bystander = model_name(BYSTANDER);
    let target = model_name(0);
    let config = matrix.write_config(
        row.name,
        &row_config(&matrix.sim_config, &[&target, &bystander], ""),
    );
    let before = history(&matrix.db);
    let size = std::fs::metadata(&matrix.db).unwrap().len();
    assert!(
        size > FILE_SIZE_LIMIT,
        "the database ({size} bytes) must already pass the {FILE_SIZE_LIMIT}-byte limit"
    );
    let mut daemon = harness::start(&config, &matrix.db, limit_file_size).await;
    // The restored verdicts are served before and while the store refuses records.
    let scrape = daemon
        .wait_for("two refused records", |s| {
            sample(s, "teewatch_store_errors_total", &[]).is_some_and(|n| n >= 2.0)
        })
        .await;
    let mut problems = judge(&row, &target, None, &scrape);
    problems.extend(still_serving(&scrape, &[&target, &bystander]));
    let rss = daemon.peak_rss_kib();
    let log = daemon.stop();
    problems.extend(logged_refusal(&log, row));
    let after = history(&matrix.db);
    nothing_lost(&before, &after, row.name);
    matrix.finish(row, Some(rss), problems);
}

pub async fn database_locked(matrix: &mut Matrix, row: Row, sqlite3: &Path) {
    let bystander = model_name(BYSTANDER);
    let target = model_name(0);
    let config = matrix.write_config(
        row.name,
        &row_config(&matrix.sim_config, &[&target, &bystander], ""),
    );
    let before = history(&matrix.db);
    let mut daemon = harness::start(&config, &matrix.db, |_| {}).await;
    daemon
        .wait_for("a stored check before the lock", |s| {
            stored(s, &target) >= 1.0
        })
        .await;
    // Another process takes the write lock and holds it until told to commit.
    let mut holder = Command::new(sqlite3)
        .arg(&matrix.db)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = holder.stdin.take().unwrap();
    stdin
        .write_all(b"BEGIN EXCLUSIVE;\nSELECT 'locked';\n")
        .unwrap();
    stdin.flush().unwrap();
    let mut line = String::new();
    BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "locked", "sqlite3 did not take the lock");
    let scrape = daemon
        .wait_for("a record refused while the database is locked", |s| {
            sample(s, "teewatch_store_errors_total", &[]).is_some_and(|n| n >= 1.0)
        })
        .await;
    let mut problems = judge(&row, &target, None, &scrape);
    problems.extend(still_serving(&scrape, &[&target, &bystander]));
    let stored_while_locked = stored(&scrape, &target);
    // Released: the next check is stored again.
    stdin.write_all(b"COMMIT;\n").unwrap();
    drop(stdin);
    let status = holder.wait().unwrap();
    assert!(status.success(), "sqlite3 failed: {status}");
    daemon
        .wait_for("a stored check after the lock is released", |s| {
            stored(s, &target) > stored_while_locked
        })
        .await;
    let rss = daemon.peak_rss_kib();
    let log = daemon.stop();
    problems.extend(logged_refusal(&log, row));
    let after = history(&matrix.db);
    if nothing_lost(&before, &after, row.name) == 0 {
        problems.push("nothing was stored after the lock was released".into());
    }
    matrix.finish(row, Some(rss), problems);
}

/// The latest stored verdict of each target is still on `/metrics` (restored at start).
fn still_serving(scrape: &str, targets: &[&str]) -> Vec<String> {
    targets
        .iter()
        .filter(|t| sample(scrape, "teewatch_target_state", &[("target", t)]).is_none())
        .map(|t| format!("teewatch_target_state of {t} is no longer served"))
        .collect()
}

/// The log names the refused record and, when the row gives one, why.
fn logged_refusal(log: &str, row: Row) -> Vec<String> {
    let Expect::NotStored { reason } = row.expect else {
        return Vec::new();
    };
    let refused: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("storing the check failed"))
        .collect();
    if let Some(first) = refused.first() {
        println!("{}: {first}", row.name);
    }
    if refused.iter().any(|l| l.contains(reason)) {
        Vec::new()
    } else {
        vec![format!(
            "no log line says the record was refused because of {reason:?}; refusals: {refused:#?}"
        )]
    }
}
