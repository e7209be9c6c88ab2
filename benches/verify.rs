//! CPU time of one offline verification on real-size bundles built from real vectors.
//!
//! Run: `cargo bench --bench verify`. The numbers go to BENCHMARKS.md with the date and machine.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use teewatch::verify::{self, Bundle, Policy, TrustAnchors};

#[path = "../tests/common/nras_mint.rs"]
mod nras_mint;

/// 2026-10-20T00:00:00Z: inside the v5 sample's collateral and the bench NRAS leaf's validity.
const WHOLE_NOW: i64 = 1_792_454_400;

fn load_json(name: &str) -> Value {
    let path = format!("{}/tests/bundles/{name}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A whole one-node bundle as a live check would store it: dcap-qvl's v5 quote with its
/// collateral, the GPU evidence of `gpu_bundle`, an NRAS answer minted for those GPUs with the
/// test NRAS PKI (so every token is really verified), and NEAR AI's real signed canary chat.
fn whole_bundle(gpu_bundle: &str) -> (Bundle, TrustAnchors) {
    let mut doc = load_json("dcapqvl-v5-td15ex-uptodate");
    let gpu = load_json(gpu_bundle);
    doc["nonce"] = gpu["nonce"].clone();
    doc["attestation"]["nvidia_payload"] = gpu["attestation"]["nvidia_payload"].clone();
    let payload: Value =
        serde_json::from_str(gpu["attestation"]["nvidia_payload"].as_str().unwrap()).unwrap();
    let count = payload["evidence_list"].as_array().unwrap().len();
    let nonce = gpu["nonce"].as_str().unwrap();
    let signer = nras_mint::signer("bench-kid", "bench_leaf");
    let times = json!({"iat": WHOLE_NOW - 5, "nbf": WHOLE_NOW - 5, "exp": WHOLE_NOW + 3595});
    let tokens: Vec<(String, String)> = (0..count)
        .map(|i| {
            let mut claims = json!({
                "iss": "https://nras.attestation.nvidia.com", "eat_nonce": nonce,
                "measres": "success", "secboot": true, "dbgstat": "disabled",
                "x-nvidia-gpu-arch-check": true,
                "x-nvidia-gpu-attestation-report-parsed": true,
                "x-nvidia-gpu-attestation-report-nonce-match": true,
                "x-nvidia-gpu-attestation-report-signature-verified": true,
            });
            for (k, v) in times.as_object().unwrap() {
                claims[k] = v.clone();
            }
            (format!("GPU-{i}"), nras_mint::mint(&claims, &signer))
        })
        .collect();
    let mut overall = json!({
        "iss": "https://nras.attestation.nvidia.com", "eat_nonce": nonce,
        "x-nvidia-overall-att-result": true, "submods": nras_mint::submods(&tokens),
    });
    for (k, v) in times.as_object().unwrap() {
        overall[k] = v.clone();
    }
    let leaf = nras_mint::pki("bench_leaf.der");
    doc["nras"] = json!({
        "response": nras_mint::detached(&nras_mint::mint(&overall, &signer), &tokens),
        "jwks": {"keys": [nras_mint::jwk("bench-kid", &leaf, &[&leaf, &nras_mint::pki("intermediate.der")])]},
    });
    doc["canary"] = load_json("nearai-canary")["canary"].clone();
    let mut anchors = TrustAnchors::production();
    anchors.nras_intermediates_der = vec![nras_mint::pki("intermediate.der")];
    (Bundle::from_value(doc).unwrap(), anchors)
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

fn bench(c: &mut Criterion) {
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
    // Whole bundles (Intel + GPU + NRAS + canary), cold and steady.
    for (label, gpu_bundle) in [("1gpu", "gpu-nvtrust-hopper"), ("8gpu", "gpu-ppcie-8xh100")] {
        let (bundle, anchors) = whole_bundle(gpu_bundle);
        let policy = Policy::default();
        let first = verify::verify(&bundle, &policy, &anchors);
        for name in [
            "tdx_quote_signature",
            "gpu_evidence_signature",
            "nras_token",
            "nras_result",
            "canary_signature",
        ] {
            assert!(
                first
                    .checks
                    .iter()
                    .filter(|c| c.name == name)
                    .all(|c| c.state != verify::State::Unknown),
                "{label}: {name} was not exercised: {:?}",
                first
                    .checks
                    .iter()
                    .filter(|c| c.name == name)
                    .collect::<Vec<_>>()
            );
        }
        c.bench_function(&format!("verify/whole-{label}/steady"), |b| {
            b.iter(|| verify::verify(&bundle, &policy, &anchors))
        });
        c.bench_function(&format!("verify/whole-{label}/cold"), |b| {
            b.iter(|| {
                let mut fresh = TrustAnchors::production();
                fresh.nras_intermediates_der = anchors.nras_intermediates_der.clone();
                verify::verify(&bundle, &policy, &fresh)
            })
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

criterion_group!(benches, bench);
criterion_main!(benches);
