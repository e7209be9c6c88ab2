//! `teewatch demo` as a newcomer runs it: it prints the status page and metrics URLs, verdicts
//! arrive, the injected drift shows up as a drift line (once: the drifted model's later lines do
//! not repeat it) and as `teewatch_measurement_drift`, and
//! Ctrl-C stops it cleanly: exit 0 and no warning from the shutdown (shared state still
//! referenced when the store closes), also when it comes a few seconds in.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use crate::common::net;
use crate::common::process;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_teewatch");
/// How long Ctrl-C may take to stop the demo.
const STOP_WITHIN: Duration = Duration::from_secs(20);

#[test]
fn the_demo_shows_verdicts_then_a_drift_and_stops_on_ctrl_c() {
    let port = net::free_port();
    let dir = std::env::temp_dir().join(format!("teewatch-demo-test-{}", std::process::id()));
    let (mut guard, rx) = start_demo(port, &["--drift-after", "12s"], &dir);
    let mut lines: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    // The drift line, and a later verdict line of the drifted model (checks run every 10 s).
    let wanted = |lines: &[String]| {
        lines
            .iter()
            .position(|l| l.contains("drift: compose_hash"))
            .is_some_and(|at| {
                lines[at + 1..]
                    .iter()
                    .any(|l| l.contains("TEE/sim-model-0"))
            })
    };
    while !wanted(&lines) && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(500)) {
            lines.push(line);
        }
    }
    let text = lines.join("\n");
    if !wanted(&lines) {
        // Stopped as at the end; if it does not stop, the guard kills it.
        guard.signal_and_wait("INT", STOP_WITHIN);
        panic!("no drift line and later line of the drifted model within 90 s:\n{text}");
    }
    assert!(
        text.contains(&format!("status page    http://127.0.0.1:{port}/")),
        "{text}"
    );
    assert!(
        text.contains(&format!("metrics        http://127.0.0.1:{port}/metrics")),
        "{text}"
    );
    assert!(text.contains("TEST trust roots"), "{text}");
    // Verdicts arrived for both models before the drift, passing.
    assert!(
        text.contains("TEE/sim-model-1") && text.contains(" pass "),
        "{text}"
    );
    assert!(
        text.contains(">>> drift injected: TEE/sim-model-0"),
        "{text}"
    );
    let drift_line = lines
        .iter()
        .find(|l| l.contains("drift: compose_hash"))
        .unwrap();
    assert!(
        drift_line.contains("TEE/sim-model-0") && drift_line.contains("fail"),
        "{drift_line}"
    );
    assert!(drift_line.contains("pin:compose_hash"), "{drift_line}");
    // Said once: the drifted model's later lines (still failing the pin) do not repeat it.
    assert_eq!(
        lines.iter().filter(|l| l.contains("drift:")).count(),
        1,
        "{text}"
    );
    let later = lines
        .iter()
        .skip_while(|l| !l.contains("drift: compose_hash"))
        .skip(1)
        .find(|l| l.contains("TEE/sim-model-0"))
        .unwrap();
    assert!(
        later.contains("fail") && later.contains("pin:compose_hash"),
        "{later}"
    );

    // The metric an alert would fire on.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let metrics = runtime.block_on(async {
        reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    assert!(
        metrics.contains(
            "teewatch_measurement_drift{field=\"compose_hash\",target=\"TEE/sim-model-0\"} 1"
        ),
        "{metrics}"
    );

    assert_stops_cleanly_on_ctrl_c(&mut guard);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Starts `teewatch demo` listening on `127.0.0.1:<port>` with `args`, its files in `dir`. Its
/// standard output arrives line by line on the receiver, read to its end so the demo's last
/// lines never meet a closed pipe; its standard error waits on a pipe for `read_stderr`.
fn start_demo(port: u16, args: &[&str], dir: &Path) -> (process::KillOnDrop, Receiver<String>) {
    let child = Command::new(BIN)
        .args(["demo", "--listen", &format!("127.0.0.1:{port}")])
        .args(args)
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut guard = process::KillOnDrop::new(child);
    let stdout = guard.child().stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (guard, rx)
}

/// Ctrl-C stops the demo within 20 s with exit 0, and the shutdown (`Daemon::shutdown`, module
/// `teewatch::daemon`) warned about nothing: not about shared state still referenced when the
/// store closed, nor about a record or a connection it had to cut short, nor about the watchdog
/// seeing the stopping scheduler.
fn assert_stops_cleanly_on_ctrl_c(guard: &mut process::KillOnDrop) {
    let status = guard
        .signal_and_wait("INT", STOP_WITHIN)
        .expect("the demo did not stop within 20 s of SIGINT");
    let stderr = guard.read_stderr();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("shared state"), "{stderr}");
    assert!(
        !stderr
            .lines()
            .any(|l| l.contains(" WARN teewatch::daemon: ") || l.contains("ERROR")),
        "{stderr}"
    );
}

#[test]
fn ctrl_c_a_few_seconds_in_stops_the_demo_without_a_warning() {
    let port = net::free_port();
    let dir = std::env::temp_dir().join(format!("teewatch-demo-ctrl-c-{}", std::process::id()));
    let (mut guard, rx) = start_demo(port, &[], &dir);
    // Until both models have a verdict: the daemon, its HTTP server and the simulator have all
    // served, and the scheduler keeps dispatching checks every 10 s.
    let mut verdicts = 0;
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while verdicts < 2 && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(500)) {
            if [" pass ", " fail ", " unknown "]
                .iter()
                .any(|s| line.contains(s))
            {
                verdicts += 1;
            }
            seen.push_str(&line);
            seen.push('\n');
        }
    }
    assert!(verdicts >= 2, "the demo printed no verdicts:\n{seen}");
    // The status page and /metrics hold HTTP state too.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        for path in ["/", "/metrics", "/readyz"] {
            let status = reqwest::get(format!("http://127.0.0.1:{port}{path}"))
                .await
                .unwrap()
                .status();
            assert_eq!(status, 200, "{path}");
        }
    });
    assert_stops_cleanly_on_ctrl_c(&mut guard);
    let _ = std::fs::remove_dir_all(&dir);
}
