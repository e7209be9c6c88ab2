//! Golden verdicts: every real-vector bundle in `tests/bundles/` verifies to the committed verdict
//! in `tests/golden/`, and every bundle the simulator served in the formats beyond dstack (the
//! NEAR AI gateway and direct formats: ed25519, TLS-bound, a wrong TLS peer, through a proxying
//! profile; the Chutes and Tinfoil formats), stored with the configuration and test roots it
//! verifies under (`tests/bundles/formats/<name>/`), to the one in `tests/golden/formats/`. A
//! verdict changes only in a commit that says why the old one was wrong; to record a deliberate
//! change run `TEEWATCH_BLESS=1 cargo test --test it verify::golden`.
//!
//! No public capture of the other formats exists to test against, so those bundles come from the
//! simulator (real cryptography under test roots, see `tests/bundles/formats/README.md`);
//! `TEEWATCH_REGENERATE=1 cargo test --test it verify::golden -- --ignored` writes them anew
//! (`TEEWATCH_REGENERATE=near-gateway-ed25519,near-direct-3-nodes` only the cases named).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use crate::common;

use std::path::PathBuf;

use teewatch::config::Profile;
use teewatch::verify::{self, TrustAnchors};
use teewatch_sim::faults::Fault;
use teewatch_sim::format::SimFormat;
use teewatch_sim::server::{SimOptions, model_name};

/// The real-vector bundles of `tests/bundles/`, by name, sorted.
fn bundle_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(common::repo_path("tests/bundles"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(
        names.len() >= 11,
        "expected the real-vector bundles, found {names:?}"
    );
    names
}

#[test]
fn every_bundle_matches_its_golden_verdict() {
    let names = bundle_names();
    let verdicts: Vec<(String, String)> = names
        .iter()
        .map(|name| {
            let verdict = common::verdict(&common::bundle(name));
            (
                name.clone(),
                serde_json::to_string_pretty(&verdict).unwrap() + "\n",
            )
        })
        .collect();
    common::assert_golden(&common::repo_path("tests/golden"), &verdicts);
}

/// The verifier's cache remembers only work done on byte-identical inputs and judges validity at
/// each bundle's own `observed_at`, so a verdict from a used cache is the verdict from a fresh
/// one, byte for byte, and the golden one. The used cache has verified every bundle first: it
/// holds the collateral that `dcapqvl-v4-uptodate` and `dcapqvl-v4-collateral-expired` share (valid
/// at the first's `observed_at`, expired at the second's) and the GPU chains.
#[test]
fn a_used_cache_gives_the_verdict_of_a_fresh_one() {
    let names = bundle_names();
    let json = |name: &str, anchors: &TrustAnchors| {
        let bundle = common::bundle(name);
        let verdict = verify::verify(&bundle, &common::own_policy(&bundle), anchors);
        serde_json::to_string_pretty(&verdict).unwrap() + "\n"
    };
    let used = TrustAnchors::production();
    for name in &names {
        json(name, &used);
    }
    assert!(
        !used.cache.collateral.is_empty() && !used.cache.gpu_chains.is_empty(),
        "the used cache holds collateral and GPU chains"
    );
    let shared = |name: &str| common::bundle_json(name)["tdx_collateral"].to_string();
    assert_eq!(
        shared("dcapqvl-v4-uptodate"),
        shared("dcapqvl-v4-collateral-expired"),
        "two bundles share one collateral at different instants"
    );
    // Again in the reverse order, each with the used cache and with a fresh one.
    for name in names.iter().rev() {
        let warm = json(name, &used);
        let fresh = TrustAnchors::production();
        assert!(fresh.cache.collateral.is_empty() && fresh.cache.gpu_chains.is_empty());
        let cold = json(name, &fresh);
        assert_eq!(warm, cold, "{name}: a used cache changed the verdict");
        let golden = common::repo_path(&format!("tests/golden/{name}.json"));
        assert_eq!(
            std::fs::read_to_string(&golden).unwrap_or_default(),
            warm,
            "{name}: the verdict from a used cache differs from {golden:?}"
        );
    }
}

// ---- the formats beyond dstack, served by the simulator ---------------------------------------

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
        common::sim_run::save_case(&run, &dir, &bundle);
    }
}
