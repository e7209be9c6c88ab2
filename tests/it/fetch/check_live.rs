//! `teewatch check` against the simulator through the real HTTP path: all-pass, saved bundles
//! that re-verify to the identical verdict, faults through the fetcher, and an API key that never
//! leaks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use crate::common;

use common::process::teewatch;
use common::sim_run::start;
use serde_json::Value;
use teewatch_sim::faults::Fault;
use teewatch_sim::server::{SimOptions, model_name};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_passes_and_saved_bundles_reverify_identically() {
    let run = start(
        "check",
        SimOptions {
            models: 2,
            ..SimOptions::default()
        },
    )
    .await;
    let config = run.dir.join("sim.toml");
    let saved = run.dir.join("bundles");
    let (config_s, saved_s) = (
        config.to_str().unwrap().to_string(),
        saved.to_str().unwrap().to_string(),
    );
    let out = tokio::task::spawn_blocking(move || {
        teewatch([
            "check",
            "--config",
            &config_s,
            "--json",
            "--save-bundle",
            &saved_s,
        ])
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let verdicts: Vec<Value> = serde_json::from_str(&stdout).unwrap();
    assert_eq!(verdicts.len(), 2);
    for verdict in &verdicts {
        assert_eq!(verdict["state"], "pass");
        let target = verdict["target"].as_str().unwrap();
        let file = saved.join(format!("{}.json", target.replace('/', "_")));
        assert!(file.exists(), "{file:?}");
        // The saved bundle re-verifies to exactly the verdict `check` printed.
        let again = teewatch([
            "verify",
            "--json",
            "--config",
            config.to_str().unwrap(),
            file.to_str().unwrap(),
        ]);
        let again: Value = serde_json::from_slice(&again.stdout).unwrap();
        assert_eq!(&again, verdict);
        // The API key is in no saved bundle and no output.
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(!text.contains(&run.sim.state.api_key));
    }
    assert!(!stdout.contains(&run.sim.state.api_key) && !stderr.contains(&run.sim.state.api_key));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_failures_are_unknown_and_evidence_faults_fail() {
    let run = start("check-faults", SimOptions::default()).await;
    let config = run.dir.join("sim.toml").to_str().unwrap().to_string();
    let model = model_name(0);
    for (fault, expected_exit, check, state) in [
        (Fault::Http503, 2, "tdx_quote_parse", "unknown"),
        (Fault::Http429, 2, "tdx_quote_parse", "unknown"),
        (Fault::MalformedJson, 2, "tdx_quote_parse", "unknown"),
        (Fault::NrasDown, 2, "nras_token", "unknown"),
        (Fault::DebugTd, 1, "tdx_debug_disabled", "fail"),
        (Fault::CanaryReplay, 1, "canary_hashes", "fail"),
    ] {
        run.sim.state.set_fault(Some(&model), fault, true).unwrap();
        let args = config.clone();
        let out =
            tokio::task::spawn_blocking(move || teewatch(["check", "--config", &args, "--json"]))
                .await
                .unwrap();
        run.sim.state.set_fault(Some(&model), fault, false).unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert_eq!(out.status.code(), Some(expected_exit), "{fault}: {stdout}");
        let verdicts: Vec<Value> = serde_json::from_str(&stdout).unwrap();
        let states: Vec<&str> = verdicts[0]["checks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["name"] == check)
            .map(|c| c["state"].as_str().unwrap())
            .collect();
        assert!(states.contains(&state), "{fault}: {check} {states:?}");
        assert!(!stdout.contains(&run.sim.state.api_key));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_collateral_cache_serves_while_the_pccs_is_down() {
    let run = start("check-pccs", SimOptions::default()).await;
    let config = run.dir.join("sim.toml").to_str().unwrap().to_string();
    // A first check fills the on-disk cache beside the database.
    let args = config.clone();
    let out = tokio::task::spawn_blocking(move || teewatch(["check", "--config", &args, "--json"]))
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // With the PCCS down, a new process still verifies the quote from the cache.
    run.sim
        .state
        .set_fault(None, Fault::PccsDown, true)
        .unwrap();
    let args = config.clone();
    let out = tokio::task::spawn_blocking(move || teewatch(["check", "--config", &args, "--json"]))
        .await
        .unwrap();
    let verdicts: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let signature = verdicts[0]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "tdx_quote_signature")
        .unwrap()
        .clone();
    assert_eq!(signature["state"], "pass", "{signature}");
    assert_eq!(out.status.code(), Some(0));
}
