//! Golden verdicts for the formats beyond dstack: bundles the simulator served in the NEAR AI
//! gateway and direct formats (ed25519, TLS-bound, a wrong TLS peer, through a proxying profile)
//! and in the Chutes and Tinfoil formats, each stored with the configuration and test roots it
//! verifies under (`tests/bundles/formats/<name>/`). The verdict must stay what is committed in
//! `tests/golden/formats/<name>.json`; a deliberate change is recorded with
//! `TEEWATCH_BLESS=1 cargo test --test format_golden` in a commit that says why.
//!
//! No public capture of these formats exists to test against, so these bundles come from the
//! simulator (real cryptography under test roots, see `tests/bundles/formats/README.md`);
//! `TEEWATCH_REGENERATE=1 cargo test --test format_golden -- --ignored` writes them anew
//! (`TEEWATCH_REGENERATE=near-gateway-ed25519,near-direct-3-nodes` only the cases named).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::path::PathBuf;

use teewatch::config::Profile;
use teewatch_sim::faults::Fault;
use teewatch_sim::format::SimFormat;
use teewatch_sim::server::{SimOptions, model_name};

fn formats_dir() -> PathBuf {
    common::repo_path("tests/bundles/formats")
}

/// The verdict on a stored bundle under the configuration stored beside it, as golden JSON.
fn verify_stored(name: &str) -> String {
    let (value, config) = common::format_case(name);
    let verdict = common::verify_format_case(value, &config);
    serde_json::to_string_pretty(&verdict).unwrap() + "\n"
}

#[test]
fn every_format_bundle_matches_its_golden_verdict() {
    let mut names: Vec<String> = std::fs::read_dir(formats_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "chutes",
            "near-direct-3-nodes",
            "near-gateway-ecdsa",
            "near-gateway-ed25519",
            "near-gateway-proxied",
            "near-gateway-wrong-tls-peer",
            "tinfoil"
        ]
    );
    let verdicts: Vec<(String, String)> = names
        .iter()
        .map(|name| (name.clone(), verify_stored(name)))
        .collect();
    common::assert_golden(&common::repo_path("tests/golden/formats"), &verdicts);
}

/// One stored case: how the simulator is shaped and how the check is made.
struct Case {
    name: &'static str,
    format: SimFormat,
    nodes: usize,
    fault: Option<Fault>,
    adjust: fn(&mut teewatch::config::MonitorConfig),
}

const CASES: [Case; 7] = [
    Case {
        name: "near-gateway-ed25519",
        format: SimFormat::NearGateway,
        nodes: 2,
        fault: None,
        adjust: |_| {},
    },
    Case {
        name: "near-gateway-ecdsa",
        format: SimFormat::NearGateway,
        nodes: 1,
        fault: None,
        adjust: |m| m.signing_algo = teewatch::config::SigningAlgo::Ecdsa,
    },
    Case {
        name: "near-gateway-wrong-tls-peer",
        format: SimFormat::NearGateway,
        nodes: 1,
        fault: Some(Fault::TlsWrongPeer),
        adjust: |_| {},
    },
    Case {
        name: "near-gateway-proxied",
        format: SimFormat::NearGateway,
        nodes: 1,
        fault: None,
        adjust: |m| {
            m.profile = Profile::Nanogpt;
            m.paths = Profile::Nanogpt.default_paths();
        },
    },
    Case {
        name: "near-direct-3-nodes",
        format: SimFormat::NearDirect,
        nodes: 3,
        fault: None,
        adjust: |_| {},
    },
    Case {
        name: "chutes",
        format: SimFormat::Chutes,
        nodes: 1,
        fault: None,
        adjust: |_| {},
    },
    Case {
        name: "tinfoil",
        format: SimFormat::Tinfoil,
        nodes: 1,
        fault: None,
        adjust: |_| {},
    },
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes tests/bundles/formats; run with TEEWATCH_REGENERATE=1 and --ignored"]
async fn regenerate_format_bundles() {
    let Some(wanted) = std::env::var_os("TEEWATCH_REGENERATE") else {
        return;
    };
    // `1` regenerates every case; a comma-separated list of names only those, so that the
    // golden verdicts of the others stay as they are.
    let wanted = wanted.to_string_lossy().into_owned();
    let chosen = |name: &str| wanted == "1" || wanted.split(',').any(|w| w.trim() == name);
    for case in CASES {
        if !chosen(case.name) {
            continue;
        }
        let options = SimOptions {
            formats: vec![case.format],
            nodes: case.nodes,
            tls: true,
            ..SimOptions::default()
        };
        let run = common::sim_run::start(&format!("golden-{}", case.name), options).await;
        let model = model_name(0);
        if let Some(fault) = case.fault {
            run.sim.state.set_fault(Some(&model), fault, true).unwrap();
        }
        let (_, bundle) = common::sim_run::check_adjusted(&run, &model, case.adjust).await;
        let dir = formats_dir().join(case.name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(&run.dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            // The configuration and its test roots; not the API key, the database or caches.
            if name == "sim.toml" || name.ends_with(".pem") {
                std::fs::copy(&path, dir.join(&name)).unwrap();
            }
        }
        std::fs::write(dir.join("bundle.json"), bundle.to_json_pretty() + "\n").unwrap();
    }
}
