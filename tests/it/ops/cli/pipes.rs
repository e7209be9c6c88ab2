//! Nothing breaks on a pipe: `teewatch check … | head -1` and `teewatch history export … | head
//! -c 300` end quietly with exit 0 (no panic, nothing on standard error) once their reader has
//! closed the pipe. Standard output is a pipe shrunk to one page whose read end the test closes
//! after one line or 300 bytes; each test first asserts that the full output is longer than the
//! pipe can hold, so a write after the close, and the error it gets, is certain.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use crate::common;

use std::fs::File;
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Stdio};

use common::daemon_run::{db_path, start_daemon};
use common::sim_run::start;
use teewatch_sim::server::{SimOptions, model_name};

const BIN: &str = env!("CARGO_BIN_EXE_teewatch");

/// A pipe whose capacity is one page: its read end and its write end, and the capacity.
fn small_pipe() -> (File, OwnedFd, usize) {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two descriptors into the array it is given, which has room for them.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both descriptors were just opened and are owned by nothing else.
    let (read, write) = unsafe { (File::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: F_SETPIPE_SZ takes an integer and touches no memory of this process.
    let capacity = unsafe { libc::fcntl(fds[1], libc::F_SETPIPE_SZ, 4096) };
    assert!(
        capacity > 0,
        "F_SETPIPE_SZ: {}",
        std::io::Error::last_os_error()
    );
    (read, write, usize::try_from(capacity).unwrap())
}

/// What a run with its output on a small pipe did after the reader stopped.
struct Closed {
    code: Option<i32>,
    stderr: String,
    capacity: usize,
}

/// Runs teewatch with `args`, reads until `enough` says the reader has what it wanted, closes
/// the read end and waits for the process.
fn run_closing(args: &[String], enough: impl Fn(&[u8]) -> bool) -> Closed {
    let (mut read, write, capacity) = small_pipe();
    let child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::from(write))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    // One byte at a time, so nothing beyond what the reader wants is taken from the pipe.
    while !enough(&seen) {
        match read.read(&mut byte).unwrap() {
            0 => panic!("the output ended before the reader had enough: {seen:?}"),
            _ => seen.push(byte[0]),
        }
    }
    drop(read);
    let output = child.wait_with_output().unwrap();
    Closed {
        code: output.status.code(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        capacity,
    }
}

/// The full standard output of a run, to know that it cannot fit in the small pipe.
fn full_output(args: &[String]) -> Vec<u8> {
    let output = Command::new(BIN).args(args).output().unwrap();
    assert!(
        output.status.code().is_some(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_piped_into_head_one_ends_quietly() {
    let run = start(
        "pipes-check",
        SimOptions {
            models: 3,
            gpus: 2,
            ..SimOptions::default()
        },
    )
    .await;
    let args: Vec<String> = vec![
        "check".into(),
        "--config".into(),
        run.dir.join("sim.toml").to_str().unwrap().into(),
    ];
    let all = {
        let args = args.clone();
        tokio::task::spawn_blocking(move || full_output(&args))
            .await
            .unwrap()
    };
    let closed = tokio::task::spawn_blocking(move || {
        run_closing(&args, |seen: &[u8]| seen.ends_with(b"\n"))
    })
    .await
    .unwrap();
    let first_line = all.iter().position(|b| *b == b'\n').unwrap() + 1;
    assert!(
        all.len() > closed.capacity + first_line,
        "the output ({} bytes) must outgrow the pipe ({} bytes) for the test to mean anything",
        all.len(),
        closed.capacity
    );
    assert_eq!(closed.code, Some(0), "stderr:\n{}", closed.stderr);
    assert!(
        !closed.stderr.contains("panicked") && !closed.stderr.contains("Broken pipe"),
        "{}",
        closed.stderr
    );
    assert!(closed.stderr.is_empty(), "{}", closed.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_export_piped_into_head_c_300_ends_quietly() {
    let run = start("pipes-export", SimOptions::default()).await;
    let daemon = start_daemon(&run.dir.join("sim.toml"), &run.dir).await;
    assert!(daemon.check_now(&model_name(0)).await);
    let db = db_path(&run.dir);
    let listed = {
        let db = db.clone();
        tokio::task::spawn_blocking(move || {
            full_output(&[
                "history".into(),
                "--db".into(),
                db.to_str().unwrap().into(),
                "--json".into(),
            ])
        })
        .await
        .unwrap()
    };
    let listed: serde_json::Value = serde_json::from_slice(&listed).unwrap();
    let check = listed["checks"][0]["id"].as_i64().unwrap();
    assert_eq!(listed["checks"][0]["has_bundle"], true, "{listed}");
    let args: Vec<String> = vec![
        "history".into(),
        "export".into(),
        "--db".into(),
        db.to_str().unwrap().into(),
        "--check".into(),
        check.to_string(),
    ];
    let all = {
        let args = args.clone();
        tokio::task::spawn_blocking(move || full_output(&args))
            .await
            .unwrap()
    };
    let closed =
        tokio::task::spawn_blocking(move || run_closing(&args, |seen: &[u8]| seen.len() == 300))
            .await
            .unwrap();
    assert!(
        all.len() > closed.capacity + 300,
        "the bundle ({} bytes) must outgrow the pipe ({} bytes)",
        all.len(),
        closed.capacity
    );
    assert_eq!(closed.code, Some(0), "stderr:\n{}", closed.stderr);
    assert!(closed.stderr.is_empty(), "{}", closed.stderr);
    daemon.shutdown(std::time::Duration::from_secs(5)).await;
}
