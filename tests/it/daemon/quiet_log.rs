//! Nothing noisy, read from `teewatch run`'s JSON log: a fetch error that leaves every check of
//! a target unknown is one line naming those checks (not one per check); a finished check's
//! line names its failing and its unknown checks apart; a target whose key cannot be read is
//! logged once, not at every check, and its recovery once; a key file others can access is
//! warned about once per configuration put in force (start and SIGHUP), however many targets
//! read it and however many checks run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use common::net::free_port;
use common::process::{KillOnDrop, run_with_json_log, signal};
use common::sim_run::{set_key_source, start};
use serde_json::Value;

use teewatch_sim::faults::Fault;
use teewatch_sim::server::{SimOptions, model_name};

async fn get(port: u16, path: &str) -> String {
    reqwest::get(format!("http://127.0.0.1:{port}{path}"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Finished checks of `target` so far, from /metrics.
fn finished(metrics: &str, target: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("teewatch_checks_total{") && l.contains(&format!("target=\"{target}\""))
        })
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// A log field: in the event's own fields, else in its span's (`target` of the check span).
fn field<'a>(line: &'a Value, name: &str) -> Option<&'a str> {
    line["fields"][name]
        .as_str()
        .or_else(|| line["span"][name].as_str())
}

fn message(line: &Value) -> &str {
    line["fields"]["message"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_line_per_distinct_problem_not_one_per_check() {
    let run = start(
        "quiet-log",
        SimOptions {
            models: 2,
            ..SimOptions::default()
        },
    )
    .await;
    let config = run.dir.join("sim.toml");
    let (answering_500, keyless) = (model_name(0), model_name(1));
    run.sim
        .state
        .set_fault(Some(&answering_500), Fault::Http500, true)
        .unwrap();
    let var = format!("TEEWATCH_TEST_UNSET_KEY_{}", std::process::id());
    set_key_source(&config, &keyless, &format!("api_key_env = \"{var}\""));
    let key = run.dir.join("sim.api-key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let port = free_port();
    let child = run_with_json_log(port, &config, &run.dir.join("quiet.db"))
        .env_remove(&var)
        .env_remove("NOTIFY_SOCKET")
        .env_remove("JOURNAL_STREAM")
        .spawn()
        .unwrap();
    let mut guard = KillOnDrop::new(child);

    // Two scheduled checks of each target (every 10 s).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await {
            let m = r.text().await.unwrap();
            if finished(&m, &answering_500) >= 2.0 && finished(&m, &keyless) >= 2.0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "not two checks each in 60 s:\n{m}"
            );
        }
        assert!(
            Instant::now() < deadline,
            "the daemon did not answer in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // SIGHUP with the key readable: the reload is done once /readyz stops naming the target.
    set_key_source(&config, &keyless, "api_key_file = \"sim.api-key\"");
    signal(guard.id(), "HUP");
    let deadline = Instant::now() + Duration::from_secs(20);
    while get(port, "/readyz").await.contains(&keyless) {
        assert!(
            Instant::now() < deadline,
            "the reload did not happen in 20 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::task::block_in_place(|| guard.signal_and_wait("TERM", Duration::from_secs(40)))
        .expect("did not stop within 40 s");
    let stderr = guard.read_stderr();
    assert!(!stderr.contains(&run.sim.state.api_key), "the key leaked");
    let lines: Vec<Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let of = |target: &str, text: &str| -> Vec<&Value> {
        lines
            .iter()
            .filter(|l| message(l).starts_with(text))
            .filter(|l| {
                field(l, "target") == Some(target) || field(l, "target_name") == Some(target)
            })
            .collect()
    };

    // The provider's 500: one line per check, naming every check it left unknown.
    let done = of(&answering_500, "check finished");
    let fetch = of(&answering_500, "fetch failed");
    assert!(done.len() >= 2, "{stderr}");
    assert_eq!(fetch.len(), done.len(), "{stderr}");
    for line in &fetch {
        assert_eq!(field(line, "endpoint"), Some("attestation"), "{line}");
        assert_eq!(field(line, "kind"), Some("http_status"), "{line}");
        assert!(
            field(line, "checks").unwrap().starts_with("all ")
                && field(line, "checks").unwrap().ends_with(" checks"),
            "{line}"
        );
    }
    // Finished checks name unknown and failing checks apart.
    for line in &done {
        assert_eq!(field(line, "state"), Some("unknown"), "{line}");
        assert_eq!(field(line, "failing"), Some("none"), "{line}");
        assert!(
            field(line, "unknown").unwrap().starts_with("all "),
            "{line}"
        );
    }

    // The unreadable key: said once at start, not again at each of its checks or the reload's
    // probe; its recovery once; no fetch error line for it.
    let cannot = of(&keyless, "check cannot start");
    assert_eq!(cannot.len(), 1, "{stderr}");
    assert!(
        field(cannot[0], "reason")
            .unwrap()
            .contains(&format!("environment variable {var} is not set")),
        "{}",
        cannot[0]
    );
    assert!(of(&keyless, "check finished").len() >= 2, "{stderr}");
    assert!(of(&keyless, "fetch failed").is_empty(), "{stderr}");
    assert_eq!(
        of(&keyless, "the target's check can start again").len(),
        1,
        "{stderr}"
    );

    // The open key file: once at start and once at the reload, which two targets then share.
    let warnings = lines
        .iter()
        .filter(|l| message(l).contains("is accessible by group or others"))
        .count();
    assert_eq!(warnings, 2, "{stderr}");
}
