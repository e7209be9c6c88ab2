//! The help texts' examples run as written. Every example of every command's `--help` is read
//! from the binary's own help and run in one scratch folder that holds the repository's
//! `tests/` and `config.toml` (as links) and, once the `sim` example has written it, the
//! simulator's `sim.toml`: the ones that end must end with the exit code their comment
//! documents, and the ones that run until Ctrl-C (`sim`, `run`, `demo`) must come up and then
//! stop with 0 on SIGINT or SIGTERM. The `history` examples read the database the `run` example
//! keeps; `history ack` accepts the drift the test switches on in the simulator it started.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use crate::common::process;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use process::KillOnDrop;

const BIN: &str = env!("CARGO_BIN_EXE_teewatch");

/// One example: what its comment says and the command line.
#[derive(Debug, Clone)]
struct Example {
    comment: String,
    args: Vec<String>,
}

impl Example {
    /// The documented exit code, or `None` for an example that runs until Ctrl-C.
    fn expected(&self) -> Option<i32> {
        if self.comment.ends_with("(until Ctrl-C)") {
            return None;
        }
        let code = self
            .comment
            .rsplit_once("(exit ")
            .and_then(|(_, rest)| rest.strip_suffix(')'))
            .unwrap_or_else(|| panic!("example without a documented outcome: {self:?}"));
        Some(code.parse().unwrap())
    }

    fn line(&self) -> String {
        format!("teewatch {}", self.args.join(" "))
    }
}

/// The examples of one command's `--help`.
fn examples(path: &[&str]) -> Vec<Example> {
    let mut args: Vec<&str> = path.to_vec();
    args.push("--help");
    let output = Command::new(BIN).args(&args).output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    let help = String::from_utf8(output.stdout).unwrap();
    let section = help
        .split("Examples:\n")
        .nth(1)
        .and_then(|s| s.split("\n\n").next())
        .unwrap_or_else(|| panic!("{args:?}: no examples"));
    let mut found = Vec::new();
    let mut comment = None;
    for line in section.lines() {
        if let Some(text) = line.strip_prefix("  # ") {
            comment = Some(text.to_string());
        } else if let Some(command) = line.strip_prefix("  teewatch ") {
            found.push(Example {
                comment: comment
                    .take()
                    .unwrap_or_else(|| panic!("{line}: no comment")),
                args: command.split_whitespace().map(str::to_string).collect(),
            });
        }
    }
    assert!(!found.is_empty(), "{args:?}: no examples");
    found
}

fn run_in(dir: &Path, args: &[String]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

/// Runs a finishing example and compares its exit code with the documented one.
fn check_example(dir: &Path, example: &Example, failures: &mut Vec<String>) {
    let expected = example.expected().unwrap();
    let output = run_in(dir, &example.args);
    if output.status.code() != Some(expected) {
        failures.push(format!(
            "{}: expected exit {expected}, found {:?}\nstdout: {}\nstderr: {}",
            example.line(),
            output.status.code(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
}

/// Starts a long-running example with both streams piped.
fn spawn(dir: &Path, example: &Example) -> KillOnDrop {
    assert_eq!(example.expected(), None, "{example:?}");
    KillOnDrop::new(
        Command::new(BIN)
            .args(&example.args)
            .current_dir(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

/// Reads the child's standard output line by line until one satisfies `wanted`; every line read.
fn read_until(child: &mut Child, wanted: impl Fn(&str) -> bool) -> Vec<String> {
    let stdout = child.stdout.take().unwrap();
    let mut reader = BufReader::new(stdout);
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 {
            panic!("the output ended before the awaited line: {lines:?}");
        }
        let done = wanted(&line);
        lines.push(line);
        if done {
            break;
        }
    }
    // Keep draining, so that later output never blocks the child on a full pipe.
    std::thread::spawn(move || {
        let mut rest = Vec::new();
        let _ = reader.read_to_end(&mut rest);
    });
    lines
}

/// Waits, checking `ready` every 200 ms, until it holds; fails after three minutes (a limit
/// against a hang, not an assertion on speed).
fn wait_for(what: &str, ready: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(180);
    while !ready() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The stored history of `db` as JSON, if it can be read yet.
fn history(dir: &Path, db: &str) -> Option<serde_json::Value> {
    let output = run_in(
        dir,
        &["history".into(), "--db".into(), db.into(), "--json".into()],
    );
    if output.status.code() != Some(0) {
        return None;
    }
    serde_json::from_slice(&output.stdout).ok()
}

/// Switches a fault on in the simulator at `base` (`http://127.0.0.1:PORT`) through its admin
/// endpoint, over a plain HTTP/1.1 request.
fn set_fault(base: &str, model: &str, fault: &str) {
    let authority = base.strip_prefix("http://").unwrap().trim_end_matches('/');
    let body = serde_json::json!({"model": model, "fault": fault, "on": true}).to_string();
    let mut stream = std::net::TcpStream::connect(authority).unwrap();
    write!(
        stream,
        "POST /admin/faults HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// Stops a long-running example with `sig` and asserts it exits 0.
fn stop(mut child: KillOnDrop, sig: &str, what: &str) {
    let status = child
        .signal_and_wait(sig, Duration::from_secs(60))
        .unwrap_or_else(|| panic!("{what} did not stop on SIG{sig}"));
    let stderr = child.read_stderr();
    assert_eq!(status.code(), Some(0), "{what}: {stderr}");
}

/// A scratch folder with the repository's `tests/` and `config.toml` linked in.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        let dir = std::env::temp_dir().join(format!("teewatch-examples-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        for name in ["tests", "config.toml"] {
            std::os::unix::fs::symlink(repo.join(name), dir.join(name)).unwrap();
        }
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn the_help_examples_run_as_written() {
    let all: Vec<(String, Example)> = super::COMMANDS
        .iter()
        .flat_map(|path| {
            examples(path)
                .into_iter()
                .map(|e| (path.join(" "), e))
                .collect::<Vec<_>>()
        })
        .collect();
    let scratch = Scratch::new();
    let dir = scratch.0.as_path();
    let mut ran: BTreeSet<String> = BTreeSet::new();
    let mut failures = Vec::new();
    let find = |first: &str| -> Vec<Example> {
        all.iter()
            .filter(|(_, e)| e.args.first().map(String::as_str) == Some(first))
            .map(|(_, e)| e.clone())
            .collect()
    };

    // 1. The simulator, writing sim.toml; its banner names its address.
    let sim_example = find("sim").into_iter().next().expect("a sim example");
    let mut sim = spawn(dir, &sim_example);
    let banner = read_until(sim.child(), |l| l.contains("wrote "));
    let base = banner[0]
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap()
        .to_string();
    ran.insert(sim_example.line());

    // 2. Everything that ends on its own and needs no database.
    for (path, example) in &all {
        let first = example.args.first().map(String::as_str);
        if example.expected().is_some()
            && !matches!(first, Some("history" | "backup"))
            && !path.starts_with("history")
        {
            check_example(dir, example, &mut failures);
            ran.insert(example.line());
        }
    }

    // 3. The daemon, until its database holds a check of every target.
    let run_example = find("run").into_iter().next().expect("a run example");
    let db = run_example
        .args
        .windows(2)
        .find(|w| w[0] == "--db")
        .map(|w| w[1].clone())
        .expect("the run example names its database");
    let daemon = spawn(dir, &run_example);
    wait_for("a check of each target", || {
        history(dir, &db).is_some_and(|h| {
            let targets: BTreeSet<&str> = h["checks"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|c| c["target"].as_str())
                .collect();
            targets.len() >= 2
        })
    });
    ran.insert(run_example.line());

    // 4. A drift for `history ack` to accept: the simulator's first model changes its app.
    set_fault(&base, "TEE/sim-model-0", "drift-compose");
    wait_for("the compose drift in the history", || {
        history(dir, &db).is_some_and(|h| {
            h["drift_events"]
                .as_array()
                .unwrap()
                .iter()
                .any(|d| d["field"] == "compose_hash")
        })
    });

    // 5. The history and backup examples on that database (the export before `verify` of it).
    for (_, example) in &all {
        let first = example.args.first().map(String::as_str);
        if matches!(first, Some("history" | "backup")) {
            check_example(dir, example, &mut failures);
            ran.insert(example.line());
        }
    }

    // 6. The demo comes up and stops on Ctrl-C.
    for example in find("demo") {
        let mut demo = spawn(dir, &example);
        read_until(demo.child(), |_| true);
        stop(demo, "INT", "demo");
        ran.insert(example.line());
    }

    stop(daemon, "TERM", "run");
    stop(sim, "INT", "sim");
    let every: BTreeSet<String> = all.iter().map(|(_, e)| e.line()).collect();
    assert_eq!(ran, every, "every example runs");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    // The sim example wrote the configuration the others used.
    assert!(dir.join("sim.toml").exists());
}
