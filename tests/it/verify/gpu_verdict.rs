//! GPU evidence, NRAS and pins through the whole verifier, on bundles built from real evidence,
//! and `gpu_unique` on real evidence and on the simulator's NEAR gateway answers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use crate::common;

use common::nras_mint::{
    GpuClaims, detached, gpu_claims_v3, mint, overall_claims_v3, pki, signer, submods, test_jwks,
};
use common::{
    bundle, bundle_json, check, from_json, observed, reason, state, verdict, verdict_with,
};
use serde_json::{Value, json};
use teewatch::verify::{self, Bundle, Policy, State, TrustAnchors};
use teewatch_sim::format::SimFormat;
use teewatch_sim::server::{SimOptions, model_name};

use State::{Fail, Pass, Unknown};

/// nvtrust's sample: its nonce and the decimal serial of its leaf certificate (NRAS's `ueid`).
const NVTRUST_NONCE: &str = "931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb";
const NVTRUST_UEID: &str = "478176379286082186618948445787393647364802107249";
/// 2026-01-02T00:00:00Z, inside the test NRAS leaves' validity.
const NRAS_TEST_NOW: &str = "2026-01-02T00:00:00Z";
const NRAS_TEST_NOW_SECS: i64 = 1_767_312_000;

#[test]
fn gpu_checks_per_bundle() {
    // (bundle, gpu count, gpu_evidence_signature, nras_token)
    let table = [
        ("gpu-nvtrust-hopper", 1, Pass, Fail),
        ("gpu-blackwell", 1, Pass, Unknown),
        ("gpu-trustee-trailing-byte", 1, Pass, Unknown),
        ("gpu-invalid-signature", 1, Fail, Unknown),
        ("gpu-ppcie-8xh100", 8, Pass, Unknown),
    ];
    for (name, gpus, signature, token) in table {
        let v = verdict(&bundle(name));
        for i in 0..gpus {
            let scope = format!("gpu:{i}");
            assert_eq!(check(&v, "gpu_nonce", &scope).0, Pass, "{name} {scope}");
            assert_eq!(
                check(&v, "gpu_evidence_signature", &scope).0,
                signature,
                "{name} {scope}"
            );
            let result = check(&v, "nras_result", &scope).0;
            assert_eq!(
                result, Unknown,
                "{name}: nras_result cannot pass without a verified token"
            );
        }
        assert_eq!(
            v.checks_named("gpu_evidence_signature").count(),
            gpus,
            "{name}"
        );
        assert_eq!(state(&v, "nras_token"), token, "{name}");
    }
    // The real NRAS token's JWKS was not preserved: an unknown key, never a pass.
    let v = verdict(&bundle("gpu-nvtrust-hopper"));
    assert!(reason(&v, "nras_token").contains("nv-eat-kid-prod-20250609211310110"));
    // Evidence whose signature failed yields claims, not evidence.
    let v = verdict(&bundle("gpu-invalid-signature"));
    assert_eq!(observed(&v, "gpu:0", "gpu_block_5")[0].1, "claim");
}

#[test]
fn gpu_measurements_are_observed_from_signed_evidence() {
    let v = verdict(&bundle("gpu-nvtrust-hopper"));
    assert_eq!(
        observed(&v, "gpu:0", "gpu_driver_version"),
        vec![("550.90.07".to_string(), "gpu_evidence")]
    );
    assert_eq!(
        observed(&v, "gpu:0", "gpu_vbios_version"),
        vec![("96.00.9F.00.01".to_string(), "gpu_evidence")]
    );
    // NanoGPT's published NVIDIA "MRENCLAVE" is this sample's evidence[96..128]...
    assert_eq!(state(&v, "pin:nvidia_mrenclave"), Pass);
    // ...while its evidence[160..192] starts 3000164f445c3e28, not the published 3000ec80d19d7814,
    // so no allowlist holding the published value can accept this GPU.
    let signer_window = &observed(&v, "gpu:0", "nvidia_mrsigner")[0].0;
    assert!(
        signer_window.starts_with("3000164f445c3e28"),
        "{signer_window}"
    );
    assert!(!signer_window.starts_with("3000ec80d19d7814"));
    let mut policy = Policy::default();
    policy.pins.insert(
        "nvidia_mrsigner".into(),
        vec![format!("3000ec80d19d7814{}", "0".repeat(48))],
    );
    let v = verdict_with(&bundle("gpu-nvtrust-hopper"), &policy);
    assert_eq!(state(&v, "pin:nvidia_mrsigner"), Fail);
}

#[test]
fn gpu_pins_must_hold_for_every_gpu() {
    let b = bundle("gpu-ppcie-8xh100");
    let v = verdict(&b);
    let driver = observed(&v, "gpu:0", "gpu_driver_version")[0].0.clone();
    assert_eq!(driver, "590.12");
    let mut policy = Policy::default();
    policy
        .pins
        .insert("gpu_driver_version".into(), vec!["590.12".into()]);
    policy
        .pins
        .insert("gpu_vbios_version".into(), vec!["96.00.A5.00.01".into()]);
    let v = verdict_with(&b, &policy);
    assert_eq!(state(&v, "pin:gpu_driver_version"), Pass);
    assert_eq!(state(&v, "pin:gpu_vbios_version"), Pass);
    // A ninth GPU with other firmware (nvtrust's sample, its signature valid): the pin must now
    // fail, naming only that GPU.
    let mut mixed = bundle_json("gpu-ppcie-8xh100");
    let other = bundle_json("gpu-nvtrust-hopper");
    let mut payload: Value =
        serde_json::from_str(mixed["attestation"]["nvidia_payload"].as_str().unwrap()).unwrap();
    let other_payload: Value =
        serde_json::from_str(other["attestation"]["nvidia_payload"].as_str().unwrap()).unwrap();
    payload["evidence_list"]
        .as_array_mut()
        .unwrap()
        .push(other_payload["evidence_list"][0].clone());
    mixed["attestation"]["nvidia_payload"] = json!(payload.to_string());
    let v = verdict_with(&from_json(mixed), &policy);
    assert_eq!(check(&v, "gpu_evidence_signature", "gpu:8").0, Pass);
    assert_eq!(check(&v, "gpu_nonce", "gpu:8").0, Fail);
    assert_eq!(
        reason(&v, "pin:gpu_driver_version"),
        "expected one of [590.12], found gpu:8: 550.90.07"
    );
    // A GPU pin on a part without GPU evidence is unknown naming the check it waits for.
    let v = verdict_with(&bundle("dstack-quote-report"), &policy);
    assert!(reason(&v, "pin:gpu_driver_version").contains("gpu_evidence_signature"));
}

#[test]
fn gpu_nonce_names_the_nonce_that_differs() {
    let good = bundle_json("gpu-nvtrust-hopper");
    // The bundle's nonce is another: both the payload's and the signed request's differ.
    let mut b = good.clone();
    b["nonce"] = json!("ab".repeat(32));
    let v = verdict(&from_json(b));
    let why = check(&v, "gpu_nonce", "gpu:0").1;
    assert!(why.contains("nvidia_payload.nonce: expected abab"), "{why}");
    assert!(why.contains("spdm request nonce: expected abab"), "{why}");
    // Only the payload's nonce rewritten: the signed request still says the old one.
    let mut b = good.clone();
    let mut payload: Value =
        serde_json::from_str(b["attestation"]["nvidia_payload"].as_str().unwrap()).unwrap();
    payload["nonce"] = json!("ab".repeat(32));
    b["attestation"]["nvidia_payload"] = json!(payload.to_string());
    b["nonce"] = json!("ab".repeat(32));
    let v = verdict(&from_json(b));
    let why = check(&v, "gpu_nonce", "gpu:0").1;
    assert!(!why.contains("nvidia_payload.nonce"), "{why}");
    assert!(
        why.starts_with("spdm request nonce: expected abab"),
        "{why}"
    );
    // No payload at all: the dstack format promises GPU evidence, so its absence fails.
    let mut b = good;
    b["attestation"]
        .as_object_mut()
        .unwrap()
        .remove("nvidia_payload");
    let v = verdict(&from_json(b));
    assert_eq!(
        reason(&v, "gpu_evidence_signature"),
        "the report carries no nvidia_payload"
    );
    assert_eq!(state(&v, "nras_token"), Unknown);
}

/// A detached EAT minted with the test NRAS PKI for nvtrust's evidence, with `gpu_claims`
/// edited by `edit`.
fn minted_nras(edit: impl Fn(&mut Value)) -> Value {
    minted_nras_with(|_| {}, edit)
}

/// [`minted_nras`] with the overall claims edited by `overall_edit` as well. The claim set is
/// NRAS's claims version 3.0 with every claim that version requires, for nvtrust's GPU.
fn minted_nras_with(overall_edit: impl Fn(&mut Value), edit: impl Fn(&mut Value)) -> Value {
    let leaf = signer("test-kid-1", "leaf1");
    let issued_at = NRAS_TEST_NOW_SECS - 5;
    let mut gpu = gpu_claims_v3(&GpuClaims {
        nonce_hex: NVTRUST_NONCE,
        ueid: NVTRUST_UEID,
        issued_at,
        driver_version: "550.90.07",
        vbios_version: "96.00.9F.00.01",
    });
    edit(&mut gpu);
    let tokens = vec![("GPU-0".to_string(), mint(&gpu, &leaf))];
    let mut overall = overall_claims_v3(NVTRUST_NONCE, issued_at, submods(&tokens));
    overall_edit(&mut overall);
    json!({
        "response": detached(&mint(&overall, &leaf), &tokens),
        "jwks": test_jwks("test-kid-1", "leaf1"),
    })
}

fn test_nras_anchors() -> TrustAnchors {
    let mut anchors = TrustAnchors::production();
    anchors.nras_intermediates_der = vec![pki("intermediate.der")];
    anchors
}

#[test]
fn a_verified_nras_token_for_real_evidence_passes_end_to_end() {
    let mut b = bundle_json("gpu-nvtrust-hopper");
    b["observed_at"] = json!(NRAS_TEST_NOW);
    b["nras"] = minted_nras(|_| {});
    let bundle = from_json(b.clone());
    let v = verify::verify(&bundle, &Policy::default(), &test_nras_anchors());
    assert_eq!(
        state(&v, "nras_token"),
        Pass,
        "{}",
        reason(&v, "nras_token")
    );
    assert!(reason(&v, "nras_token").contains("gpus matched by ueid"));
    assert_eq!(check(&v, "nras_result", "gpu:0").0, Pass);
    // The production anchors do not trust the test intermediate.
    let v = verify::verify(&bundle, &Policy::default(), &TrustAnchors::production());
    assert_eq!(state(&v, "nras_token"), Fail);

    // NRAS says the measurements do not match.
    b["nras"] = minted_nras(|gpu| gpu["measres"] = json!("fail"));
    let v = verify::verify(
        &from_json(b.clone()),
        &Policy::default(),
        &test_nras_anchors(),
    );
    assert_eq!(state(&v, "nras_token"), Pass);
    let (result, why) = check(&v, "nras_result", "gpu:0");
    assert_eq!(result, Fail);
    assert!(why.contains("measres"), "{why}");

    // NRAS answered for another GPU: the ueid matches no evidence.
    b["nras"] = minted_nras(|gpu| gpu["ueid"] = json!("1"));
    let v = verify::verify(
        &from_json(b.clone()),
        &Policy::default(),
        &test_nras_anchors(),
    );
    assert_eq!(state(&v, "nras_token"), Fail);

    // NRAS unreachable: unknown, quoting the fetch error, never fail.
    b["nras"] = json!(null);
    b["fetch_errors"] =
        json!([{"endpoint": "nras", "kind": "timeout", "message": "no answer in 30 s"}]);
    let v = verify::verify(&from_json(b), &Policy::default(), &test_nras_anchors());
    assert_eq!(state(&v, "nras_token"), Unknown);
    assert!(reason(&v, "nras_token").contains("nras timeout: no answer in 30 s"));
}

#[test]
fn nras_claims_of_a_version_not_understood_never_pass_end_to_end() {
    let mut b = bundle_json("gpu-nvtrust-hopper");
    b["observed_at"] = json!(NRAS_TEST_NOW);
    // The valid answer passes, so each change below is the only reason for what follows.
    b["nras"] = minted_nras(|_| {});
    let v = verify::verify(
        &from_json(b.clone()),
        &Policy::default(),
        &test_nras_anchors(),
    );
    assert_eq!(check(&v, "nras_result", "gpu:0").0, Pass);

    // No x-nvidia-ver: the token is NRAS's, but its claims cannot be read.
    b["nras"] = minted_nras_with(
        |overall| {
            overall.as_object_mut().unwrap().remove("x-nvidia-ver");
        },
        |_| {},
    );
    let v = verify::verify(
        &from_json(b.clone()),
        &Policy::default(),
        &test_nras_anchors(),
    );
    assert_eq!(state(&v, "nras_token"), Pass);
    let (result, why) = check(&v, "nras_result", "gpu:0");
    assert_eq!(result, Unknown, "{why}");
    assert!(
        why.contains("the overall token carries no x-nvidia-ver: claims version not understood"),
        "{why}"
    );

    // A claims version this release does not know.
    b["nras"] = minted_nras_with(|overall| overall["x-nvidia-ver"] = json!("4.0"), |_| {});
    let v = verify::verify(
        &from_json(b.clone()),
        &Policy::default(),
        &test_nras_anchors(),
    );
    assert_eq!(state(&v, "nras_token"), Pass);
    let (result, why) = check(&v, "nras_result", "gpu:0");
    assert_eq!(result, Unknown, "{why}");
    assert!(why.contains("claims version 4.0 not understood"), "{why}");

    // Version 3.0 without the GPU certificate chain's status and OCSP verdict.
    b["nras"] = minted_nras(|gpu| {
        gpu.as_object_mut()
            .unwrap()
            .remove("x-nvidia-gpu-attestation-report-cert-chain");
    });
    let v = verify::verify(&from_json(b), &Policy::default(), &test_nras_anchors());
    let (result, why) = check(&v, "nras_result", "gpu:0");
    assert_eq!(result, Fail, "{why}");
    assert!(
        why.contains(
            "x-nvidia-gpu-attestation-report-cert-chain: required by claims version 3.0, found none"
        ),
        "{why}"
    );
}

#[test]
fn the_gpu_chain_cache_changes_no_verdict() {
    let b = bundle("gpu-ppcie-8xh100");
    let anchors = TrustAnchors::production();
    let first = verify::verify(&b, &Policy::default(), &anchors);
    let second = verify::verify(&b, &Policy::default(), &anchors);
    assert_eq!(first, second);
    assert!(anchors.cache.gpu_chains.hits() >= 8);
}

// ---- gpu_unique -------------------------------------------------------------------------------

/// A bundle's `nvidia_payload` (stored as a JSON string) parsed, edited and stored back.
fn edit_payload(b: &mut Value, edit: impl FnOnce(&mut Value)) {
    let mut payload: Value =
        serde_json::from_str(b["attestation"]["nvidia_payload"].as_str().unwrap()).unwrap();
    edit(&mut payload);
    b["attestation"]["nvidia_payload"] = json!(payload.to_string());
}

#[test]
fn distinct_real_gpus_pass_gpu_unique() {
    let v = verdict(&bundle("gpu-ppcie-8xh100"));
    assert_eq!(
        check(&v, "gpu_unique", ""),
        (
            Pass,
            "8 gpus across 1 part, each a distinct device (leaf certificate and serial)"
        )
    );
    let v = verdict(&bundle("gpu-nvtrust-hopper"));
    assert_eq!(
        check(&v, "gpu_unique", ""),
        (
            Pass,
            "1 gpu across 1 part, each a distinct device (leaf certificate and serial)"
        )
    );
    // Recorded once per verdict, with the whole answer's scope.
    assert_eq!(v.checks_named("gpu_unique").count(), 1);
}

#[test]
fn the_same_gpu_twice_within_one_part_fails_gpu_unique() {
    let mut b = bundle_json("gpu-ppcie-8xh100");
    edit_payload(&mut b, |payload| {
        let list = payload["evidence_list"].as_array_mut().unwrap();
        let first = list[0].clone();
        list.push(first);
    });
    let v = verdict(&from_json(b));
    // The copy is genuine evidence of a genuine GPU: only gpu_unique can see it is no ninth GPU.
    assert_eq!(check(&v, "gpu_evidence_signature", "gpu:8").0, Pass);
    let (result, why) = check(&v, "gpu_unique", "");
    assert_eq!(result, Fail, "{why}");
    assert!(
        why.starts_with("gpu 8 is the same device as gpu 0 (certificate sha256 "),
        "{why}"
    );
}

#[test]
fn gpu_unique_is_unknown_without_proven_device_certificates() {
    // No nvidia_payload: nothing to compare.
    let v = verdict(&bundle("dstack-quote-report"));
    assert_eq!(
        check(&v, "gpu_unique", ""),
        (
            Unknown,
            "the report has no readable gpu evidence (the report carries no nvidia_payload)"
        )
    );
    // A GPU whose evidence signature failed presents a certificate that is not proven its own.
    let v = verdict(&bundle("gpu-invalid-signature"));
    assert_eq!(
        check(&v, "gpu_unique", ""),
        (
            Unknown,
            "gpu 0: gpu_evidence_signature did not pass, so its certificate is not proven to be its device's"
        )
    );
    // An unreadable certificate chain.
    let mut b = bundle_json("gpu-nvtrust-hopper");
    edit_payload(&mut b, |payload| {
        payload["evidence_list"][0]["certificate"] = json!("not base64!");
    });
    let v = verdict(&from_json(b));
    let (result, why) = check(&v, "gpu_unique", "");
    assert_eq!(result, Unknown, "{why}");
    assert!(
        why.starts_with("gpu 0: no readable device certificate (`certificate` is not base64"),
        "{why}"
    );
    // Without an attestation every check, gpu_unique included, is unknown once.
    let v = verdict(&bundle("fetch-failed"));
    assert_eq!(check(&v, "gpu_unique", "").0, Unknown);
}

/// The verdict on `bundle` under the configuration of the simulator run's check of `model`.
fn judge(run: &common::sim_run::Running, model: &str, bundle: Value) -> verify::Verdict {
    let target = run.config.target(model).unwrap();
    let bundle = Bundle::from_value(bundle).unwrap();
    verify::verify(&bundle, &target.policy, &run.config.trust_anchors())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gpu_shown_for_two_model_parts_fails_gpu_unique() {
    // A NEAR gateway model served by two nodes with one GPU each.
    let run = common::sim_run::start(
        "gpu-unique",
        SimOptions {
            formats: vec![SimFormat::NearGateway],
            nodes: 2,
            tls: true,
            ..SimOptions::default()
        },
    )
    .await;
    let model = model_name(0);
    let bundle = common::sim_run::fetch(&run, &model).await;
    let v = judge(&run, &model, bundle.clone());
    assert_eq!(
        check(&v, "gpu_unique", ""),
        (
            Pass,
            "2 gpus across 2 parts, each a distinct device (leaf certificate and serial)"
        )
    );
    for scope in ["model:0/gpu:0", "model:1/gpu:0"] {
        assert_eq!(check(&v, "nras_result", scope).0, Pass, "{scope}");
    }

    // model:0's GPU evidence and NRAS answer copied into model:1: all parts share the nonce,
    // so every per-part GPU check of model:1 still passes.
    let mut copied = bundle;
    let parts = &mut copied["attestation"]["model_attestations"];
    parts[1]["nvidia_payload"] = parts[0]["nvidia_payload"].clone();
    let nras = copied["nras"].as_array_mut().unwrap();
    let from = nras.iter().position(|e| e["scope"] == "model:0").unwrap();
    let to = nras.iter().position(|e| e["scope"] == "model:1").unwrap();
    for field in ["response", "jwks"] {
        nras[to][field] = nras[from][field].clone();
    }
    let v = judge(&run, &model, copied);
    for name in ["gpu_nonce", "gpu_evidence_signature", "nras_result"] {
        let (result, why) = check(&v, name, "model:1/gpu:0");
        assert_eq!(result, Pass, "{name}: {why}");
    }
    assert_eq!(check(&v, "nras_token", "model:1").0, Pass);
    let (result, why) = check(&v, "gpu_unique", "");
    assert_eq!(result, Fail, "{why}");
    assert!(
        why.starts_with(
            "gpu 0 of model:1 is the same device as gpu 0 of model:0 (certificate sha256 "
        ),
        "{why}"
    );
}

/// `nras` as one object applies to an answer with one GPU-bearing part, whatever its scope (a
/// NEAR gateway answer with one model); with two such parts it names no part and judges none.
#[test]
fn nras_as_one_object_serves_the_one_gpu_bearing_part_of_any_scope() {
    let (mut value, config) = common::format_case("near-gateway-ecdsa");
    let entry = value["nras"][0].clone();
    value["nras"] = json!({"response": entry["response"], "jwks": entry["jwks"]});
    let v = common::verify_format_case(value, &config);
    assert_eq!(check(&v, "nras_token", "model:0").0, Pass);
    assert_eq!(v.state, Pass);

    let (mut value, config) = common::format_case("near-gateway-ed25519");
    let entry = value["nras"][0].clone();
    value["nras"] = json!({"response": entry["response"], "jwks": entry["jwks"]});
    let v = common::verify_format_case(value, &config);
    for scope in ["model:0", "model:1"] {
        let (state, reason) = check(&v, "nras_token", scope);
        assert_eq!(state, Unknown, "{scope}");
        assert_eq!(
            reason, "no nras response in the bundle for this part",
            "{scope}"
        );
    }
}
