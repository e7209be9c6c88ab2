//! Nothing invisible: a target whose API key cannot be read is checked as `unknown` with that
//! reason instead of not at all. In the daemon its state gauge, the fetch-error counter, the
//! store, the status page and `teewatch history` show it, and `/readyz` names it (staying ready
//! for the other targets) until a reload makes the key readable; `teewatch check` goes on with
//! the other targets and exits 2. A key file others can access is warned about once per run,
//! however many targets share it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::process::Output;

use common::daemon_run::{db_path, manual_schedule, sample, scrape, start_daemon, status_page};
use common::process::teewatch;
use common::sim_run::{set_key_source, start};
use serde_json::Value;

use teewatch::store::HistoryFilter;
use teewatch::verify::State;
use teewatch_sim::server::{SimOptions, model_name};

const PASS: f64 = 0.0;
const UNKNOWN: f64 = 1.0;

/// An environment variable no test sets.
fn unset_var() -> String {
    let name = format!("TEEWATCH_TEST_UNSET_KEY_{}", std::process::id());
    assert!(std::env::var_os(&name).is_none());
    name
}

async fn readyz(addr: std::net::SocketAddr) -> (u16, String) {
    let response = reqwest::get(format!("http://{addr}/readyz")).await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

async fn run_bin(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || teewatch(args))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_whose_key_cannot_be_read_is_recorded_unknown_and_named_on_readyz() {
    let run = start(
        "cannot-start-daemon",
        SimOptions {
            models: 2,
            ..SimOptions::default()
        },
    )
    .await;
    let config = run.dir.join("sim.toml");
    manual_schedule(&config);
    let var = unset_var();
    let (good, broken) = (model_name(0), model_name(1));
    set_key_source(&config, &broken, &format!("api_key_env = \"{var}\""));
    let reason = format!("the api key could not be read: environment variable {var} is not set");
    let daemon = start_daemon(&config, &run.dir).await;

    // Named on /readyz from the start, before any check; still ready for the other target.
    let (status, body) = readyz(daemon.addr()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        format!("ready; cannot check 1 target(s), recorded as unknown: {broken} ({reason})\n")
    );

    // Its check is recorded as unknown with the reason; the other target is checked as usual.
    assert!(daemon.check_now(&broken).await);
    assert!(daemon.check_now(&broken).await);
    assert!(daemon.check_now(&good).await);
    let m = scrape(&daemon).await;
    assert_eq!(
        sample(&m, "teewatch_target_state", &[("target", &broken)]),
        Some(UNKNOWN),
        "{m}"
    );
    assert_eq!(
        sample(&m, "teewatch_target_state", &[("target", &good)]),
        Some(PASS)
    );
    assert_eq!(
        sample(
            &m,
            "teewatch_checks_total",
            &[("target", &broken), ("state", "unknown")]
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &m,
            "teewatch_fetch_errors_total",
            &[
                ("target", &broken),
                ("endpoint", "attestation"),
                ("kind", "not_started")
            ]
        ),
        Some(2.0)
    );
    let checks = daemon
        .shared
        .store
        .history(&HistoryFilter {
            target: Some(broken.clone()),
            ..HistoryFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(checks.len(), 2);
    assert_eq!(checks[0].state, State::Unknown);
    assert!(!checks[0].failing.is_empty());
    for check in &checks[0].failing {
        assert_eq!(check.state, State::Unknown, "{check:?}");
        assert!(
            check.reason.contains(&format!("(not_started: {reason})")),
            "{check:?}"
        );
    }
    let page = status_page(&daemon).await;
    assert!(page.contains(&reason), "the status page does not say why");

    // `teewatch history` lists the check with its reason.
    let db = db_path(&run.dir);
    let out = run_bin(vec![
        "history".into(),
        "--json".into(),
        "--db".into(),
        db.to_str().unwrap().into(),
        "--target".into(),
        broken.clone(),
    ])
    .await;
    assert_eq!(out.status.code(), Some(0));
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed["checks"][0]["state"], "unknown");
    assert!(
        listed["checks"][0]["failing"][0]["reason"]
            .as_str()
            .unwrap()
            .contains(&reason),
        "{listed:#}"
    );

    // A reload that makes the key readable takes the target off /readyz; its next check passes.
    set_key_source(&config, &broken, "api_key_file = \"sim.api-key\"");
    daemon.reload().await.unwrap();
    assert_eq!(readyz(daemon.addr()).await, (200, "ready\n".to_string()));
    assert!(daemon.check_now(&broken).await);
    let m = scrape(&daemon).await;
    assert_eq!(
        sample(&m, "teewatch_target_state", &[("target", &broken)]),
        Some(PASS)
    );
    daemon.shutdown(std::time::Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_goes_on_with_the_other_targets_and_warns_once_about_a_shared_open_key_file() {
    let run = start(
        "cannot-start-check",
        SimOptions {
            models: 3,
            ..SimOptions::default()
        },
    )
    .await;
    let config = run.dir.join("sim.toml");
    let var = unset_var();
    let broken = model_name(1);
    set_key_source(&config, &broken, &format!("api_key_env = \"{var}\""));
    let key = run.dir.join("sim.api-key");
    let args = |json: bool| {
        let mut args = vec![
            "check".to_string(),
            "--config".into(),
            config.to_str().unwrap().into(),
        ];
        if json {
            args.push("--json".into());
        }
        args
    };

    // Control: the simulator writes its key file private; nothing to warn about.
    let out = run_bin(args(false)).await;
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!err.contains("accessible by group or others"), "{err}");

    // Readable by the group: one warning, although two targets read that file.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = run_bin(args(false)).await;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{text}\n{err}");
    assert_eq!(
        err.matches("accessible by group or others").count(),
        1,
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "api key file {} is accessible by group or others: expected mode 0600 or stricter, \
             found 0640",
            key.display()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "teewatch: target \"{broken}\": api key: environment variable {var} is not set; its \
             checks are unknown"
        )),
        "{err}"
    );
    for model in 0..3 {
        assert!(text.contains(&model_name(model)), "{text}");
    }
    assert!(!text.contains(&run.sim.state.api_key) && !err.contains(&run.sim.state.api_key));

    // The verdicts: the two readable targets pass, the other is unknown naming its key.
    let out = run_bin(args(true)).await;
    assert_eq!(out.status.code(), Some(2));
    let verdicts: Value = serde_json::from_slice(&out.stdout).unwrap();
    let verdicts = verdicts.as_array().unwrap();
    assert_eq!(verdicts.len(), 3);
    for verdict in verdicts {
        if verdict["target"] == broken.as_str() {
            assert_eq!(verdict["state"], "unknown");
            for check in verdict["checks"].as_array().unwrap() {
                assert_eq!(check["state"], "unknown", "{check}");
                assert!(
                    check["reason"]
                        .as_str()
                        .unwrap()
                        .contains(&format!("environment variable {var} is not set")),
                    "{check}"
                );
            }
        } else {
            assert_eq!(verdict["state"], "pass", "{verdict:#}");
        }
    }
}
