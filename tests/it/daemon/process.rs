//! `teewatch run` as a process: exit codes, systemd notifications (READY, STATUS, WATCHDOG) on a
//! real notify socket, SIGHUP with a bad configuration (refused, named in STATUS), SIGTERM
//! draining to exit 0 with the store closed last, JSON logs,
//! and `teewatch history` / `history export` on the database it leaves behind.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use crate::common;

use common::net::free_port;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::process::{KillOnDrop, assert_success, run_with_json_log, signal, teewatch};
use common::sim_run::start;
use std::ffi::OsStr;
use teewatch_sim::server::{SimOptions, model_name};

const BIN: &str = env!("CARGO_BIN_EXE_teewatch");

async fn wait_ready(port: u16, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{port}/readyz")).await {
            if r.status() == 200 {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the daemon was not ready within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn an_invalid_configuration_exits_78_naming_the_problem() {
    let dir = std::env::temp_dir().join(format!("teewatch-run-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(&path, "[daemon]\nconcurrency = 0\n").unwrap();
    let out = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("daemon.concurrency"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_address_in_use_is_a_fatal_runtime_error_70() {
    let dir = std::env::temp_dir().join(format!("teewatch-run-busy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // A policy-only target: nothing to check, but a configuration needs one target.
    let path = dir.join("policy-only.toml");
    std::fs::write(&path, "[[target]]\nname = \"policy-only\"\n").unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(BIN)
        .args(["run", "--listen", &addr, "--db"])
        .arg(dir.join("busy.db"))
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(70));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("listening on {addr}")), "{stderr}");
    drop(taken);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_under_a_notify_socket_reloads_drains_and_leaves_a_readable_history() {
    let run = start("daemon-process", SimOptions::default()).await;
    let config = run.dir.join("sim.toml");
    let db = run.dir.join("process.db");
    let port = free_port();
    let socket_path = run.dir.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();

    let child = run_with_json_log(port, &config, &db)
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "1000000")
        .env_remove("WATCHDOG_PID")
        .env_remove("JOURNAL_STREAM")
        .spawn()
        .unwrap();
    let mut guard = KillOnDrop::new(child);
    wait_ready(port, Duration::from_secs(30)).await;

    // READY with a STATUS line, then watchdog pets every half period.
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline
        && !(seen.contains("READY=1") && seen.matches("WATCHDOG=1").count() >= 2)
    {
        let mut buf = [0u8; 4096];
        if let Ok(n) = socket.recv(&mut buf) {
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            seen.push('\n');
        }
    }
    assert!(seen.contains("READY=1"), "{seen}");
    assert!(seen.contains("STATUS=1 targets"), "{seen}");
    assert!(seen.matches("WATCHDOG=1").count() >= 2, "{seen}");

    // The scheduler checks the target (interval 10 s, first slot within it).
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let m = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if m.contains(&format!(
            "teewatch_checks_total{{state=\"pass\",target=\"{}\"}}",
            model_name(0)
        )) {
            break;
        }
        assert!(Instant::now() < deadline, "no check within 40 s:\n{m}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // SIGHUP with a broken file keeps the daemon running on the old configuration.
    let good = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        good.replacen("[daemon]\n", "[daemon]\nretention_days = 0\n", 1),
    )
    .unwrap();
    signal(guard.id(), "HUP");
    // systemd's status line says the reload was refused, and why.
    let mut status = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && !status.contains("reload refused") {
        let mut buf = [0u8; 4096];
        if let Ok(n) = socket.recv(&mut buf) {
            status = String::from_utf8_lossy(&buf[..n]).into_owned();
        }
    }
    assert!(
        status.contains("STATUS=1 targets") && status.contains("reload refused"),
        "{status}"
    );
    assert!(status.contains("daemon.retention_days"), "{status}");
    let ready = reqwest::get(format!("http://127.0.0.1:{port}/readyz"))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    std::fs::write(&config, &good).unwrap();

    // SIGTERM drains and exits 0.
    let status =
        tokio::task::block_in_place(|| guard.signal_and_wait("TERM", Duration::from_secs(40)))
            .expect("did not stop within 40 s of SIGTERM");
    let stderr = guard.read_stderr();
    assert_eq!(status.code(), Some(0), "{stderr}");
    // JSON logs: every line is an object; the reload error names the field.
    for line in stderr.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v.get("level").is_some(), "{line}");
    }
    assert!(stderr.contains("daemon.retention_days"), "{stderr}");
    assert!(stderr.contains("reload refused"), "{stderr}");
    assert!(stderr.contains("teewatch stopped"), "{stderr}");
    // The store closed after everything else let go of the shared state.
    assert!(
        !stderr.contains("shared state still referenced"),
        "{stderr}"
    );
    assert!(stderr.contains("\"store_closed_alone\":true"), "{stderr}");

    // The history lists the checks; an exported bundle verifies offline.
    let out = teewatch([
        OsStr::new("history"),
        "--json".as_ref(),
        "--db".as_ref(),
        db.as_ref(),
    ]);
    assert_success(&out);
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let checks = listed["checks"].as_array().unwrap();
    assert!(!checks.is_empty());
    let id = checks[0]["id"].as_i64().unwrap();
    let exported = run.dir.join("exported.json");
    let id = id.to_string();
    assert_success(&teewatch([
        OsStr::new("history"),
        "export".as_ref(),
        "--db".as_ref(),
        db.as_ref(),
        "--check".as_ref(),
        id.as_ref(),
        "--out".as_ref(),
        exported.as_ref(),
    ]));
    assert_success(&teewatch([
        OsStr::new("verify"),
        "--config".as_ref(),
        config.as_ref(),
        exported.as_ref(),
    ]));
    // A check id that does not exist is a data error, and a missing database is not created.
    let out = Command::new(BIN)
        .args(["history", "export", "--db"])
        .arg(&db)
        .args(["--check", "999999"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(65));
    let missing = run.dir.join("missing.db");
    let out = Command::new(BIN)
        .args(["history", "--db"])
        .arg(&missing)
        .output()
        .unwrap();
    // No input (66), named as such, rather than a data error.
    assert_eq!(out.status.code(), Some(66));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no database at"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!missing.exists());
}

/// Scrapes `/metrics` of a daemon process.
async fn scrape_port(port: u16) -> String {
    reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_daemon_restarts_with_its_gauges_and_drift_from_the_store() {
    use common::daemon_run::{manual_schedule, sample, series};
    use teewatch_sim::faults::Fault;

    let run = start("daemon-kill", SimOptions::default()).await;
    let config = run.dir.join("sim.toml");
    let db = run.dir.join("kill.db");
    let target = model_name(0);
    let t = target.as_str();
    let spawn = |port: u16| {
        Command::new(BIN)
            .args(["run", "--listen", &format!("127.0.0.1:{port}"), "--config"])
            .arg(&config)
            .arg("--db")
            .arg(&db)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let port = free_port();
    let mut guard = KillOnDrop::new(spawn(port));
    wait_ready(port, Duration::from_secs(30)).await;

    // A passing check, then a drift (the scheduler checks every 10 s).
    let wait_for = |what: &'static str, done: Box<dyn Fn(&str) -> bool + Send>| async move {
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            let m = scrape_port(port).await;
            if done(&m) {
                return m;
            }
            assert!(
                Instant::now() < deadline,
                "{what} did not happen within 40 s:\n{m}"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    };
    let pass_line = format!("teewatch_checks_total{{state=\"pass\",target=\"{t}\"}} 1");
    wait_for("a passing check", Box::new(move |m| m.contains(&pass_line))).await;
    run.sim
        .state
        .set_fault(None, Fault::DriftCompose, true)
        .unwrap();
    let drift_line =
        format!("teewatch_measurement_drift{{field=\"compose_hash\",target=\"{t}\"}} 1");
    let before = wait_for("the drift", Box::new(move |m| m.contains(&drift_line))).await;

    // SIGKILL: no drain, no clean close; every committed check must survive.
    signal(guard.id(), "KILL");
    let _ = guard.take().wait();
    // The restarted daemon runs no check of its own, so what it shows comes from the store.
    manual_schedule(&config);
    let port = free_port();
    let mut guard = KillOnDrop::new(spawn(port));
    wait_ready(port, Duration::from_secs(30)).await;
    let after = scrape_port(port).await;
    assert_eq!(
        sample(
            &after,
            "teewatch_checks_total",
            &[("target", t), ("state", "fail")]
        )
        .unwrap_or(0.0),
        0.0,
        "the restarted daemon checked on its own"
    );
    for name in [
        "teewatch_target_state",
        "teewatch_measurement_drift",
        "teewatch_measurement_info",
        "teewatch_tdx_tcb_status",
        "teewatch_last_success_timestamp_seconds",
    ] {
        assert_eq!(
            series(&after, name, &[("target", t)]),
            series(&before, name, &[("target", t)]),
            "{name}"
        );
    }
    assert_eq!(
        sample(&after, "teewatch_target_state", &[("target", t)]),
        Some(2.0)
    );
    let last_before = sample(
        &before,
        "teewatch_last_check_timestamp_seconds",
        &[("target", t)],
    );
    let last_after = sample(
        &after,
        "teewatch_last_check_timestamp_seconds",
        &[("target", t)],
    );
    assert!(
        last_after >= last_before,
        "{last_after:?} < {last_before:?}"
    );
    signal(guard.id(), "TERM");
    let status = guard.take().wait().unwrap();
    assert_eq!(status.code(), Some(0));
}
