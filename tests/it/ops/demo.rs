//! `teewatch demo` as a newcomer runs it: it prints the status page and metrics URLs, verdicts
//! arrive (a line per change of a target's verdict), the injected drift shows up as a drift line
//! (once) and as `teewatch_measurement_drift`, and after the drifted model has failed a few
//! checks the demo pins the new compose hash the way `teewatch pin --write` does, reloads, and
//! the model passes again: the gauge is back to 0, the configuration holds the new hash and the
//! store recorded the drift as accepted by the pins. Ctrl-C stops it cleanly: exit 0 and no
//! warning from the shutdown (shared state still referenced when the store closes), also when it
//! comes a few seconds in.
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

/// The verdict word of a demo line (`HH:MM:SS  TARGET  STATE  …`), if it is a verdict line.
fn verdict_of(line: &str) -> Option<&str> {
    let mut words = line.split_whitespace();
    let time = words.next()?;
    let _target = words.next()?;
    let state = words.next()?;
    let is_time = time.len() == 8 && time.chars().filter(|c| *c == ':').count() == 2;
    (is_time && ["pass", "fail", "unknown"].contains(&state)).then_some(state)
}

/// `teewatch_measurement_drift` of the drifted model's compose hash, scraped from the demo.
fn compose_drift_gauge(port: u16) -> String {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let metrics = runtime.block_on(async {
        reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    metrics
        .lines()
        .find(|l| {
            l.starts_with(
                "teewatch_measurement_drift{field=\"compose_hash\",target=\"TEE/sim-model-0\"}",
            )
        })
        .unwrap_or_else(|| panic!("no compose_hash drift gauge of TEE/sim-model-0:\n{metrics}"))
        .to_string()
}

#[test]
fn the_demo_shows_verdicts_a_drift_and_its_acceptance_then_stops_on_ctrl_c() {
    let port = net::free_port();
    let dir = std::env::temp_dir().join(format!("teewatch-demo-test-{}", std::process::id()));
    let (mut guard, rx) = start_demo(port, &["--drift-after", "12s"], &dir);
    let mut lines: Vec<String> = Vec::new();
    // Checks run every 10 s: the drift is seen at the first check after 12 s, accepted after
    // the third failing check, and the next check passes; under a loaded machine, allow plenty.
    let deadline = Instant::now() + Duration::from_secs(180);
    let drift_at = |lines: &[String]| lines.iter().position(|l| l.contains("drift: compose_hash"));
    while drift_at(&lines).is_none() && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(500)) {
            lines.push(line);
        }
    }
    if drift_at(&lines).is_none() {
        guard.signal_and_wait("INT", STOP_WITHIN);
        panic!("no drift line within 180 s:\n{}", lines.join("\n"));
    }
    // The metric an alert would fire on, scraped while the drift is news: the demo accepts it
    // only two checks (20 s) later.
    let raised = compose_drift_gauge(port);
    assert!(raised.ends_with(" 1"), "{raised}");

    let recovered_at = |lines: &[String]| {
        lines
            .iter()
            .position(|l| l.contains("TEE/sim-model-0") && l.contains("recovered after"))
    };
    while recovered_at(&lines).is_none() && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(500)) {
            lines.push(line);
        }
    }
    let text = lines.join("\n");
    if recovered_at(&lines).is_none() {
        guard.signal_and_wait("INT", STOP_WITHIN);
        panic!("the drifted model did not recover within 180 s:\n{text}");
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
    assert!(text.contains("(profile nanogpt)"), "{text}");
    // Verdicts arrived for both models before the drift, passing.
    for model in ["TEE/sim-model-0", "TEE/sim-model-1"] {
        assert!(
            lines
                .iter()
                .any(|l| l.contains(model) && verdict_of(l) == Some("pass")),
            "no passing line of {model}:\n{text}"
        );
    }
    assert!(
        text.contains(">>> drift injected: TEE/sim-model-0"),
        "{text}"
    );
    let drift_line = &lines[drift_at(&lines).unwrap()];
    assert!(
        drift_line.contains("TEE/sim-model-0") && verdict_of(drift_line) == Some("fail"),
        "{drift_line}"
    );
    assert!(drift_line.contains("pin:compose_hash"), "{drift_line}");
    let new_hash = drift_line
        .rsplit("→ ")
        .next()
        .unwrap()
        .trim_end_matches('…')
        .to_string();
    // Each change once: one drift line, and no line between it and the acceptance (the drifted
    // model's later failing checks are the same verdict).
    assert_eq!(
        lines.iter().filter(|l| l.contains("drift:")).count(),
        1,
        "{text}"
    );
    let accepted = lines
        .iter()
        .position(|l| l.starts_with(">>> TEE/sim-model-0 has failed 3 checks since the drift"))
        .unwrap_or_else(|| panic!("no acceptance line:\n{text}"));
    assert!(
        lines[drift_at(&lines).unwrap() + 1..accepted]
            .iter()
            .all(|l| verdict_of(l).is_none()),
        "{text}"
    );
    // The acceptance: the pin command's code path, the compose hash pinned to the drifted
    // value, the reload, and the gauge read back as 0; then the model passes again.
    let after: Vec<&String> = lines[accepted..].iter().collect();
    let after_text = after
        .iter()
        .map(|l| l.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        after_text.contains("teewatch pin --config ")
            && after_text.contains(" --target TEE/sim-model-0 --bundle ")
            && after_text.contains(" --write"),
        "{after_text}"
    );
    let pinned = after
        .iter()
        .find(|l| l.trim_start().starts_with("pins.compose_hash: "))
        .unwrap_or_else(|| panic!("no compose_hash change:\n{after_text}"));
    assert!(
        pinned.contains(&format!("→ [{new_hash}")),
        "expected the pin to become {new_hash}…, found: {pinned}"
    );
    assert!(
        after_text.contains(">>> reloaded (configuration generation 2)")
            && after_text.contains(
                "teewatch_measurement_drift{target=\"TEE/sim-model-0\",field=\"compose_hash\"} is 0 now"
            ),
        "{after_text}"
    );
    let recovered = &lines[recovered_at(&lines).unwrap()];
    assert_eq!(verdict_of(recovered), Some("pass"), "{recovered}");
    assert!(recovered_at(&lines).unwrap() > accepted, "{text}");
    // Scraped after the model passed again: cleared by the reload, and the passing check keeps
    // it so.
    let cleared = compose_drift_gauge(port);
    assert!(cleared.ends_with(" 0"), "{cleared}");

    assert_stops_cleanly_on_ctrl_c(&mut guard);

    // What the demo left behind says the same: the configuration pins the new hash, and the
    // store recorded the drift and its acceptance by the pins.
    let config = std::fs::read_to_string(dir.join("demo.toml")).unwrap();
    assert!(config.contains(&new_hash), "{config}");
    assert!(config.contains("profile = \"nanogpt\""), "{config}");
    let history = Command::new(BIN)
        .args(["history", "--db"])
        .arg(dir.join("demo.db"))
        .output()
        .unwrap();
    let history = String::from_utf8_lossy(&history.stdout);
    assert!(
        history.lines().any(|l| l.contains("TEE/sim-model-0")
            && l.contains(&format!("compose_hash = {new_hash}"))
            && l.ends_with("accepted by the pins in force")),
        "{history}"
    );
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
            if verdict_of(&line).is_some() {
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
    // The last line names the folder the demo kept, which holds its store.
    // The reader thread ends at the pipe's end, which came with the exit.
    let rest: Vec<String> = rx.iter().collect();
    let kept = format!("kept {}: ", dir.display());
    let last = rest.last().map(String::as_str).unwrap_or_default();
    assert!(last.starts_with(&kept), "{rest:?}");
    assert!(dir.join("demo.db").exists(), "{}", dir.display());
    let _ = std::fs::remove_dir_all(&dir);
}
