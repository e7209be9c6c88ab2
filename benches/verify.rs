//! CPU time of one offline verification on real-size bundles: real vectors for the parts, and
//! whole bundles that pass every check, made by the simulator at bench start.
//!
//! Run: `cargo bench --bench verify` (or one group: `cargo bench --bench verify -- whole-`).
//! The numbers go to BENCHMARKS.md with the date, machine and exact command. What is measured
//! is the process's CPU time per verification (see `common/cpu_time.rs`), with the daemon's
//! allocator, so the figures are the daemon's cost and not the wait for a busy core.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use criterion::{Criterion, criterion_group, criterion_main};
use teewatch::verify::{self, Bundle, Policy, State, TrustAnchors, Verdict};
use teewatch_sim::server::{SimOptions, model_name};

#[path = "common/cpu_time.rs"]
mod cpu_time;
#[path = "../tests/it/common/sim_run.rs"]
mod sim_run;

use cpu_time::CpuTime;

/// The daemon's allocator (see `src/main.rs`), so the numbers are the daemon's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A whole one-node dstack bundle with `gpus` GPUs, as a live check stores it: the simulator
/// (its test Intel, NVIDIA and NRAS roots, real cryptography) serves the report with its event
/// log, the PCCS collateral, NRAS's answer and JWKS, and two ECDSA-signed canary chats, and
/// teewatch's own fetcher gathers them. Returns the bundle, the target's policy and the
/// configuration's anchors, after asserting that the bundle passes every check: a whole-bundle
/// figure is the cost of a verification that succeeds, not of one that stops early.
fn whole_bundle(gpus: usize) -> (Bundle, Policy, TrustAnchors) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (bundle, policy, anchors) = runtime.block_on(async {
        let run = sim_run::start(
            &format!("bench-whole-{gpus}gpu"),
            SimOptions {
                gpus,
                ..SimOptions::default()
            },
        )
        .await;
        let model = model_name(0);
        let bundle = Bundle::from_value(sim_run::fetch(&run, &model).await).unwrap();
        let target = run.config.target(&model).unwrap();
        (bundle, target.policy.clone(), run.config.trust_anchors())
    });
    let label = format!("whole-{gpus}gpu");
    let verdict = verify::verify(&bundle, &policy, &anchors);
    assert_passes(&label, &verdict);
    // Passing is not enough: the parts the figure claims to include must have been judged.
    let judged = |name: &str| verdict.checks.iter().filter(|c| c.name == name).count();
    for (name, want) in [
        ("tdx_quote_signature", 1),
        ("event_log_replay", 1),
        ("gpu_evidence_signature", gpus),
        ("nras_result", gpus),
        ("canary_signature", 2),
    ] {
        assert_eq!(
            judged(name),
            want,
            "{label}: {name} judged {} times",
            judged(name)
        );
    }
    eprintln!(
        "{label}: {} checks, all pass ({} bytes of bundle JSON)",
        verdict.checks.len(),
        serde_json::to_string(&bundle).unwrap().len()
    );
    (bundle, policy, anchors)
}

/// Panics, listing what did not pass, unless the verdict and every one of its checks passed.
fn assert_passes(label: &str, verdict: &Verdict) {
    let failing = sim_run::failing(verdict);
    assert!(
        verdict.state == State::Pass && failing.is_empty() && !verdict.checks.is_empty(),
        "{label}: the bundle must pass every check before it is timed, found overall {:?}:\n{}",
        verdict.state,
        failing.join("\n")
    );
}

/// The same anchors with an empty verifier cache, so every GPU chain link is verified again.
fn cold(anchors: &TrustAnchors) -> TrustAnchors {
    let mut fresh = anchors.clone();
    fresh.cache = Default::default();
    fresh
}

fn load(name: &str) -> Bundle {
    let path = format!("{}/tests/bundles/{name}.json", env!("CARGO_MANIFEST_DIR"));
    Bundle::from_json(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn policy_of(bundle: &Bundle) -> Policy {
    bundle
        .policy
        .as_ref()
        .map(|s| Policy::from_snapshot(s).unwrap())
        .unwrap_or_default()
}

fn bench(c: &mut Criterion<CpuTime>) {
    let anchors = TrustAnchors::production();
    // Intel side of a one-node bundle: quote, DCAP collateral (chains, CRLs, TCB info, QE
    // identity) through dcap-qvl, plus attributes, binding and pins.
    // dstack side: 29-event log replay with recomputed runtime digests and the compose binding.
    for name in [
        "dcapqvl-v4-uptodate",
        "dcapqvl-v5-td15ex-uptodate",
        "pmlsdk-dstack-sample",
    ] {
        let bundle = load(name);
        let policy = policy_of(&bundle);
        c.bench_function(&format!("verify/{name}"), |b| {
            b.iter(|| verify::verify(&bundle, &policy, &anchors))
        });
    }
    // A whole one-node dstack report with collateral: the dcap-qvl quote carrying the real
    // 29-event log and dstack info of the private-ml-sdk sample (the replay then fails against
    // this quote's RTMRs, but it does all the same work).
    let mut combined: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!(
            "{}/tests/bundles/dcapqvl-v4-uptodate.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap(),
    )
    .unwrap();
    let sample = load("pmlsdk-dstack-sample");
    let sample_attestation = sample.attestation.unwrap();
    combined["attestation"]["event_log"] = sample_attestation["event_log"].clone();
    combined["attestation"]["info"] = sample_attestation["info"].clone();
    let bundle = Bundle::from_value(combined).unwrap();
    let policy = policy_of(&bundle);
    c.bench_function("verify/one-node-report-with-collateral", |b| {
        b.iter(|| verify::verify(&bundle, &policy, &anchors))
    });
    // The GPU side: one real H100 and eight, steady state (chains cached after the first run)
    // and cold (a fresh cache per verification, so every link signature is verified).
    for name in ["gpu-nvtrust-hopper", "gpu-ppcie-8xh100"] {
        let bundle = load(name);
        let policy = policy_of(&bundle);
        let warm = TrustAnchors::production();
        c.bench_function(&format!("verify/{name}/steady"), |b| {
            b.iter(|| verify::verify(&bundle, &policy, &warm))
        });
        c.bench_function(&format!("verify/{name}/cold"), |b| {
            b.iter(|| verify::verify(&bundle, &policy, &TrustAnchors::production()))
        });
    }
    // Whole bundles (Intel + dstack event log + GPUs + NRAS + canaries) that pass every check,
    // cold and steady.
    for gpus in [1, 8] {
        let (bundle, policy, anchors) = whole_bundle(gpus);
        c.bench_function(&format!("verify/whole-{gpus}gpu/steady"), |b| {
            b.iter(|| verify::verify(&bundle, &policy, &anchors))
        });
        c.bench_function(&format!("verify/whole-{gpus}gpu/cold"), |b| {
            b.iter(|| verify::verify(&bundle, &policy, &cold(&anchors)))
        });
    }
    // A NEAR AI gateway answer as the simulator serves it over HTTPS (stored with its config and
    // test roots): three quotes (gateway and two models) with collateral, two GPUs with their
    // NRAS answers, the TLS binding and two ed25519 canary signatures.
    let dir = format!(
        "{}/tests/bundles/formats/near-gateway-ed25519",
        env!("CARGO_MANIFEST_DIR")
    );
    let config =
        teewatch::config::Config::load(std::path::Path::new(&format!("{dir}/sim.toml"))).unwrap();
    let bundle =
        Bundle::from_json(&std::fs::read_to_string(format!("{dir}/bundle.json")).unwrap()).unwrap();
    let policy = config.target(&bundle.target).unwrap().policy.clone();
    let near_anchors = config.trust_anchors();
    assert_passes(
        "near-gateway-2-models",
        &verify::verify(&bundle, &policy, &near_anchors),
    );
    c.bench_function("verify/near-gateway-2-models/steady", |b| {
        b.iter(|| verify::verify(&bundle, &policy, &near_anchors))
    });
    // dcap-qvl alone on the same quote and collateral, for the ratio: teewatch's Intel side is
    // dcap-qvl plus collateral-window checks, FMSPC selection, body parsing and the other checks.
    let v4 = load("dcapqvl-v4-uptodate");
    let quote = hex::decode(
        v4.attestation.as_ref().unwrap()["intel_quote"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let collateral: dcap_qvl::QuoteCollateralV3 =
        serde_json::from_value(v4.tdx_collateral.clone().unwrap()).unwrap();
    let now = u64::try_from(v4.observed_at.timestamp()).unwrap();
    let verifier = dcap_qvl::verify::QuoteVerifier::new(anchors.intel_root_der.clone());
    c.bench_function("dcap-qvl/verify-alone-v4", |b| {
        b.iter(|| verifier.verify(&quote, &collateral, now).unwrap())
    });
    // Loading a bundle from its JSON text, which `teewatch verify` and the store do first.
    let text = std::fs::read_to_string(format!(
        "{}/tests/bundles/dcapqvl-v4-uptodate.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    c.bench_function("bundle/parse-one-node", |b| {
        b.iter(|| Bundle::from_json(&text).unwrap())
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(CpuTime);
    targets = bench
}
criterion_main!(benches);
