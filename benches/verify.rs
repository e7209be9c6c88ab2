//! CPU time of one offline verification on real-size bundles built from real vectors.
//!
//! Run: `cargo bench --bench verify`. The numbers go to BENCHMARKS.md with the date and machine.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use criterion::{Criterion, criterion_group, criterion_main};
use teewatch::verify::{self, Bundle, Policy, TrustAnchors};

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
