//! NRAS detached-EAT verification: tokens minted here with the test PKI in
//! `tests/fixtures/nras_test_pki/` (a copy of NRAS's shape: P-384 leaves signed by an RSA
//! intermediate) must pass, and each broken variant must fail with its own error; the claim
//! judgement is exercised on hand-made and real claim sets; the real NRAS responses, whose JWKS
//! is lost, are decoded and checked for structure.
//!
//! This file holds the shared inputs and the token's verification step by step; `judgement`
//! the claim judgement and claims versions, `real` the real responses.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod judgement;
mod real;

use crate::common;

use common::nras_mint::*;

use aws_lc_rs::hmac;
use serde_json::{Map, Value, json};
use teewatch::verify::Outcome;
use teewatch::verify::gpu::nras::{
    self, GpuRef, MatchRule, MatchedGpu, NRAS_ISSUER, NrasAnchors, NrasError, NrasInputs,
    VerifiedNras,
};

/// 2026-01-02T00:00:00Z, inside the test leaves' 2026-01-01..2026-01-03 window.
const NOW: i64 = 1_767_312_000;
/// 2026-01-05T00:00:00Z, after the test leaves expired.
const AFTER_LEAVES: i64 = 1_767_571_200;
const KID: &str = "test-kid-1";

fn nonce() -> [u8; 32] {
    std::array::from_fn(|i| i as u8 * 7 + 1)
}

fn nonce_hex() -> String {
    hex::encode(nonce())
}

fn json_file(relative: &str) -> Value {
    serde_json::from_slice(&read(relative)).unwrap()
}

fn leaf1() -> Signer {
    signer(KID, "leaf1")
}

/// The JWKS NRAS would publish for leaf1 under `KID`.
fn jwks() -> Value {
    test_jwks(KID, "leaf1")
}

/// A per-GPU claim set as NRAS v3 claims (x-nvidia-ver 3.0) carry it, all good.
fn gpu_claims(ueid: &str) -> Value {
    claims_of_gpu(ueid, gpu_claims_v3)
}

/// Test GPU `ueid`'s claims in the shape `shape` gives them, issued ten seconds before `NOW`
/// for `nonce()`.
fn claims_of_gpu(ueid: &str, shape: fn(&GpuClaims) -> Value) -> Value {
    shape(&GpuClaims {
        nonce_hex: &nonce_hex(),
        ueid,
        issued_at: NOW - 10,
        driver_version: "570.172.08",
        vbios_version: "96.00.CF.00.02",
    })
}

/// The ueid of test GPU `i`: a decimal like the serials NRAS reports.
fn ueid(i: usize) -> String {
    format!("59595005450381967321140424238917979203958384{:04}", i)
}

fn overall_claims(submods: Value) -> Value {
    overall_claims_v3(&nonce_hex(), NOW - 10, submods)
}

/// `n` GPU tokens GPU-0..GPU-(n-1), each carrying `ueid(i)`.
fn gpu_tokens(n: usize, signer: &Signer) -> Vec<(String, String)> {
    (0..n)
        .map(|i| (format!("GPU-{i}"), mint(&gpu_claims(&ueid(i)), signer)))
        .collect()
}

/// A complete valid answer for `n` GPUs signed by `signer`.
fn answer(n: usize, signer: &Signer) -> Value {
    let tokens = gpu_tokens(n, signer);
    let overall = mint(&overall_claims(submods(&tokens)), signer);
    detached(&overall, &tokens)
}

/// GPUs of the evidence without serial numbers, so matching goes by order.
fn gpus(n: usize) -> Vec<GpuRef> {
    (0..n).map(|index| GpuRef { index, ueid: None }).collect()
}

fn run(
    response: &Value,
    jwks: &Value,
    now: i64,
    gpus: &[GpuRef],
) -> Result<VerifiedNras, NrasError> {
    let intermediates = vec![pki("intermediate.der")];
    let anchors = NrasAnchors {
        intermediates_der: &intermediates,
        expected_iss: NRAS_ISSUER,
    };
    let inputs = NrasInputs { response, jwks };
    nras::verify_token(&inputs, &anchors, &nonce(), now, gpus)
}

fn run_default(response: &Value, n: usize) -> Result<VerifiedNras, NrasError> {
    run(response, &jwks(), NOW, &gpus(n))
}

/// The reason of a passing judgement; panics naming any other.
fn passed(outcome: &Outcome) -> &str {
    match outcome {
        Outcome::Pass(reason) => reason,
        other => panic!("expected a pass, found {other:?}"),
    }
}

/// The reason of a failing judgement; panics naming any other.
fn failed(outcome: &Outcome) -> &str {
    match outcome {
        Outcome::Fail(reason) => reason,
        other => panic!("expected a failure, found {other:?}"),
    }
}

/// The reason of an `unknown` judgement; panics naming any other.
fn unknown(outcome: &Outcome) -> &str {
    match outcome {
        Outcome::Unknown(reason) => reason,
        other => panic!("expected unknown, found {other:?}"),
    }
}

fn all_pass(judged: &[(usize, Outcome)]) -> bool {
    judged.iter().all(|(_, o)| matches!(o, Outcome::Pass(_)))
}

// ---- valid answers ----------------------------------------------------------------------------

#[test]
fn valid_one_gpu_answer_verifies_and_passes() {
    let verified = run_default(&answer(1, &leaf1()), 1).unwrap();
    assert_eq!(verified.matched_by, MatchRule::Order);
    assert_eq!(verified.gpus.len(), 1);
    assert_eq!(verified.gpus[0].evidence_index, 0);
    assert_eq!(verified.gpus[0].submod, "GPU-0");
    assert_eq!(verified.overall["eat_nonce"], json!(nonce_hex()));
    let judged = nras::judge_result(&verified);
    assert_eq!(judged.len(), 1);
    let (index, outcome) = &judged[0];
    assert_eq!(*index, 0);
    let reason = passed(outcome);
    assert!(reason.contains("GPU-0"), "{reason}");
    assert!(reason.contains("claims version 3.0"), "{reason}");
}

#[test]
fn valid_eight_gpu_answer_verifies_with_submods_in_any_order() {
    let signer = leaf1();
    let tokens = gpu_tokens(8, &signer);
    // NRAS lists submods in no particular order (the real 8-GPU response starts GPU-0, GPU-7,
    // GPU-5, …); the verifier must not depend on it.
    let mut shuffled = tokens.clone();
    shuffled.swap(1, 7);
    shuffled.swap(2, 5);
    let overall = mint(&overall_claims(submods(&shuffled)), &signer);
    let verified = run_default(&detached(&overall, &tokens), 8).unwrap();
    assert_eq!(verified.matched_by, MatchRule::Order);
    let pairs: Vec<(usize, &str)> = verified
        .gpus
        .iter()
        .map(|g| (g.evidence_index, g.submod.as_str()))
        .collect();
    let expected: Vec<(usize, String)> = (0..8).map(|i| (i, format!("GPU-{i}"))).collect();
    let expected: Vec<(usize, &str)> = expected.iter().map(|(i, s)| (*i, s.as_str())).collect();
    assert_eq!(pairs, expected);
    let judged = nras::judge_result(&verified);
    assert_eq!(judged.len(), 8);
    assert!(all_pass(&judged), "{judged:?}");
}

#[test]
fn response_given_as_a_json_string_is_accepted() {
    let response = Value::String(answer(1, &leaf1()).to_string());
    run_default(&response, 1).unwrap();
}

// ---- step 2: the header -----------------------------------------------------------------------

#[test]
fn tampered_payload_fails_signature() {
    let signer = leaf1();
    let tokens = gpu_tokens(1, &signer);
    let overall = mint(&overall_claims(submods(&tokens)), &signer);
    // Change one claim after signing and keep the signature.
    let mut claims = claims_of(&overall);
    claims["x-nvidia-overall-att-result"] = json!(false);
    let forged = with_claims(&overall, &claims);
    let err = run_default(&detached(&forged, &tokens), 1).unwrap_err();
    assert!(
        matches!(&err, NrasError::SignatureInvalid { token, kid } if token == "overall" && kid == KID),
        "{err:?}"
    );
}

#[test]
fn alg_none_with_empty_signature_is_rejected() {
    let signer = leaf1();
    let tokens = gpu_tokens(1, &signer);
    let header = json!({"kid": KID, "alg": "none"});
    let claims = overall_claims(submods(&tokens));
    let unsigned = with_signature(&signing_input(&header, &claims), &[]);
    let err = run_default(&detached(&unsigned, &tokens), 1).unwrap_err();
    assert!(
        matches!(&err, NrasError::UnsupportedAlg { token, alg } if token == "overall" && alg == "\"none\""),
        "{err:?}"
    );
    assert!(err.to_string().contains("\"none\""), "{err}");
}

#[test]
fn alg_hs384_keyed_with_the_public_key_is_rejected() {
    // The classic confusion attack: an HMAC keyed with the public key everyone can read.
    let signer = leaf1();
    let tokens = gpu_tokens(1, &signer);
    let header = json!({"kid": KID, "alg": "HS384"});
    let claims = overall_claims(submods(&tokens));
    let input = signing_input(&header, &claims);
    let key = hmac::Key::new(hmac::HMAC_SHA384, &cert_point(&pki("leaf1.der")));
    let tag = hmac::sign(&key, input.as_bytes());
    let forged = with_signature(&input, tag.as_ref());
    let err = run_default(&detached(&forged, &tokens), 1).unwrap_err();
    assert!(
        matches!(&err, NrasError::UnsupportedAlg { alg, .. } if alg == "\"HS384\""),
        "{err:?}"
    );
}

#[test]
fn gpu_token_with_another_alg_is_rejected_too() {
    let signer = leaf1();
    let mut tokens = gpu_tokens(1, &signer);
    tokens[0].1 = mint_with_header(
        &json!({"kid": KID, "alg": "RS256"}),
        &gpu_claims(&ueid(0)),
        &signer,
    );
    let overall = mint(&overall_claims(submods(&tokens)), &signer);
    let err = run_default(&detached(&overall, &tokens), 1).unwrap_err();
    assert!(
        matches!(&err, NrasError::UnsupportedAlg { token, alg } if token == "GPU-0" && alg == "\"RS256\""),
        "{err:?}"
    );
}

// ---- step 3: the key --------------------------------------------------------------------------

#[test]
fn unknown_kid_is_rejected_naming_it() {
    let other = signer("not-in-the-jwks", "leaf1");
    let err = run_default(&answer(1, &other), 1).unwrap_err();
    assert!(
        matches!(&err, NrasError::UnknownKid { kid, .. } if kid == "not-in-the-jwks"),
        "{err:?}"
    );
    assert!(err.to_string().contains("not-in-the-jwks"), "{err}");
}

#[test]
fn leaf_signed_by_a_rogue_intermediate_is_rejected() {
    // The rogue intermediate copies the pinned one's name, so the leaf names the pinned issuer,
    // and the JWKS even sends the rogue certificate along; only the pinned key decides.
    let rogue = signer(KID, "rogue_leaf");
    let leaf = pki("rogue_leaf.der");
    let jwks = json!({ "keys": [jwk(KID, &leaf, &[&leaf, &pki("rogue_intermediate.der")])] });
    let err = run(&answer(1, &rogue), &jwks, NOW, &gpus(1)).unwrap_err();
    assert!(
        matches!(&err, NrasError::LeafSignatureInvalid { kid, issuer } if kid == KID && issuer.contains("Test NRAS GPU Intermediate")),
        "{err:?}"
    );
}

#[test]
fn rogue_leaf_sent_with_the_pinned_intermediate_is_rejected() {
    // x5c[1] equals the pinned intermediate byte for byte, which selects it, but its key still
    // has to verify the leaf.
    let rogue = signer(KID, "rogue_leaf");
    let leaf = pki("rogue_leaf.der");
    let jwks = json!({ "keys": [jwk(KID, &leaf, &[&leaf, &pki("intermediate.der")])] });
    let err = run(&answer(1, &rogue), &jwks, NOW, &gpus(1)).unwrap_err();
    assert!(
        matches!(err, NrasError::LeafSignatureInvalid { .. }),
        "{err:?}"
    );
}

#[test]
fn test_leaf_is_not_trusted_under_the_real_nras_intermediate() {
    let pem = read("tests/vectors/nvidia/nras/nras_gpu_intermediate_004.pem");
    let (_, real) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
    let intermediates = vec![real.contents];
    let anchors = NrasAnchors {
        intermediates_der: &intermediates,
        expected_iss: NRAS_ISSUER,
    };
    let response = answer(1, &leaf1());
    let jwks = jwks();
    let inputs = NrasInputs {
        response: &response,
        jwks: &jwks,
    };
    let err = nras::verify_token(&inputs, &anchors, &nonce(), NOW, &gpus(1)).unwrap_err();
    assert!(
        matches!(&err, NrasError::UntrustedIssuer { issuer, .. } if issuer.contains("Test NRAS GPU Intermediate")),
        "{err:?}"
    );
}

#[test]
fn jwk_coordinates_that_are_not_the_leaf_key_are_rejected() {
    // The JWK's x/y are leaf2's key while its x5c proves leaf1; tokens signed by leaf2.
    let leaf2 = signer(KID, "leaf2");
    let leaf = pki("leaf1.der");
    let jwks = json!({ "keys": [jwk(KID, &pki("leaf2.der"), &[&leaf, &pki("intermediate.der")])] });
    let err = run(&answer(1, &leaf2), &jwks, NOW, &gpus(1)).unwrap_err();
    assert!(
        matches!(&err, NrasError::JwkKeyMismatch { kid, coordinate: "x" } if kid == KID),
        "{err:?}"
    );
}

#[test]
fn expired_leaf_is_rejected() {
    // The token itself is still within exp, so only the leaf's window fails.
    let signer = leaf1();
    let tokens = gpu_tokens(1, &signer);
    let mut claims = overall_claims(submods(&tokens));
    claims["exp"] = json!(AFTER_LEAVES + 3600);
    let overall = mint(&claims, &signer);
    let err = run(
        &detached(&overall, &tokens),
        &jwks(),
        AFTER_LEAVES,
        &gpus(1),
    )
    .unwrap_err();
    assert!(
        matches!(&err, NrasError::LeafNotValidAt { not_after, now, .. }
            if not_after == "2026-01-03T00:00:00Z" && now == "2026-01-05T00:00:00Z"),
        "{err:?}"
    );
}

#[test]
fn jwk_of_another_curve_or_type_is_rejected() {
    let mut jwks = jwks();
    jwks["keys"][0]["crv"] = json!("P-256");
    let err = run(&answer(1, &leaf1()), &jwks, NOW, &gpus(1)).unwrap_err();
    assert!(
        matches!(&err, NrasError::JwkCurve { found, .. } if found == "\"P-256\""),
        "{err:?}"
    );

    let mut jwks = self::jwks();
    jwks["keys"][0]["kty"] = json!("RSA");
    let err = run(&answer(1, &leaf1()), &jwks, NOW, &gpus(1)).unwrap_err();
    assert!(matches!(err, NrasError::JwkKeyType { .. }), "{err:?}");
}

#[test]
fn jwk_without_x5c_is_rejected() {
    let mut jwks = jwks();
    jwks["keys"][0].as_object_mut().unwrap().remove("x5c");
    let err = run(&answer(1, &leaf1()), &jwks, NOW, &gpus(1)).unwrap_err();
    assert!(matches!(err, NrasError::X5cMissing { .. }), "{err:?}");
}

// ---- step 5: the claims -----------------------------------------------------------------------

/// A 1-GPU answer whose overall claims were changed by `edit` before signing.
fn answer_with_overall(edit: impl FnOnce(&mut Value)) -> Value {
    let signer = leaf1();
    let tokens = gpu_tokens(1, &signer);
    let mut claims = overall_claims(submods(&tokens));
    edit(&mut claims);
    detached(&mint(&claims, &signer), &tokens)
}

#[test]
fn token_exp_in_the_past_is_rejected() {
    let response = answer_with_overall(|c| c["exp"] = json!(NOW - 1));
    let err = run_default(&response, 1).unwrap_err();
    assert!(
        matches!(&err, NrasError::Expired { token, .. } if token == "overall"),
        "{err:?}"
    );
}

#[test]
fn token_from_the_future_beyond_the_skew_is_rejected() {
    let response = answer_with_overall(|c| c["iat"] = json!(NOW + 299));
    run_default(&response, 1).unwrap();
    let response = answer_with_overall(|c| c["nbf"] = json!(NOW + 301));
    let err = run_default(&response, 1).unwrap_err();
    assert!(
        matches!(&err, NrasError::NotYetValid { claim: "nbf", .. }),
        "{err:?}"
    );
}

#[test]
fn wrong_issuer_is_rejected() {
    let response =
        answer_with_overall(|c| c["iss"] = json!("https://nras.attestation-stg.nvidia.com"));
    let err = run_default(&response, 1).unwrap_err();
    assert!(
        matches!(&err, NrasError::IssuerMismatch { found, .. } if found == "https://nras.attestation-stg.nvidia.com"),
        "{err:?}"
    );
}

#[test]
fn missing_exp_is_rejected() {
    let response = answer_with_overall(|c| {
        c.as_object_mut().unwrap().remove("exp");
    });
    let err = run_default(&response, 1).unwrap_err();
    assert!(
        matches!(err, NrasError::MissingClaim { claim: "exp", .. }),
        "{err:?}"
    );
}

#[test]
fn wrong_eat_nonce_is_rejected() {
    let response = answer_with_overall(|c| c["eat_nonce"] = json!("00".repeat(32)));
    let err = run_default(&response, 1).unwrap_err();
    assert!(
        matches!(&err, NrasError::NonceMismatch { token, found, .. } if token == "overall" && found == &"00".repeat(32)),
        "{err:?}"
    );
}

#[test]
fn eat_nonce_compares_case_insensitively() {
    let response = answer_with_overall(|c| c["eat_nonce"] = json!(nonce_hex().to_uppercase()));
    run_default(&response, 1).unwrap();
}

#[test]
fn wrong_eat_nonce_in_a_gpu_token_is_rejected() {
    let signer = leaf1();
    let mut claims = gpu_claims(&ueid(0));
    claims["eat_nonce"] = json!("ff".repeat(32));
    let tokens = vec![("GPU-0".to_string(), mint(&claims, &signer))];
    let overall = mint(&overall_claims(submods(&tokens)), &signer);
    let err = run_default(&detached(&overall, &tokens), 1).unwrap_err();
    assert!(
        matches!(&err, NrasError::NonceMismatch { token, .. } if token == "GPU-0"),
        "{err:?}"
    );
}

// ---- step 6: submods --------------------------------------------------------------------------

#[test]
fn wrong_submod_digest_is_rejected() {
    let signer = leaf1();
    let tokens = gpu_tokens(1, &signer);
    let mut listed = submods(&tokens);
    listed["GPU-0"][1][1] = json!(digest("another token"));
    let overall = mint(&overall_claims(listed), &signer);
    let err = run_default(&detached(&overall, &tokens), 1).unwrap_err();
    assert!(
        matches!(&err, NrasError::SubmodDigestMismatch { submod, expected, found }
            if submod == "GPU-0" && expected == &digest("another token") && found == &digest(&tokens[0].1)),
        "{err:?}"
    );
}

#[test]
fn missing_gpu_submod_is_rejected() {
    // Two GPUs in the evidence, but NRAS speaks for one.
    let err = run_default(&answer(1, &leaf1()), 2).unwrap_err();
    assert_eq!(
        err,
        NrasError::GpuCountMismatch {
            expected: 2,
            found: 1
        }
    );
}

#[test]
fn gpu_token_without_submod_is_rejected() {
    let signer = leaf1();
    let tokens = gpu_tokens(2, &signer);
    let overall = mint(&overall_claims(submods(&tokens[..1])), &signer);
    let err = run_default(&detached(&overall, &tokens), 2).unwrap_err();
    assert_eq!(
        err,
        NrasError::TokenWithoutSubmod {
            submod: "GPU-1".into()
        }
    );
}

#[test]
fn submod_without_token_is_rejected() {
    let signer = leaf1();
    let tokens = gpu_tokens(2, &signer);
    let overall = mint(&overall_claims(submods(&tokens)), &signer);
    let err = run_default(&detached(&overall, &tokens[..1]), 1).unwrap_err();
    assert_eq!(
        err,
        NrasError::SubmodWithoutToken {
            submod: "GPU-1".into()
        }
    );
}

// ---- step 7: matching -------------------------------------------------------------------------

#[test]
fn ueids_match_tokens_to_evidence_whatever_the_order() {
    let response = answer(4, &leaf1());
    // Evidence lists the GPUs as NRAS's GPU-2, GPU-0, GPU-3, GPU-1.
    let evidence: Vec<GpuRef> = [2, 0, 3, 1]
        .iter()
        .enumerate()
        .map(|(index, n)| GpuRef {
            index,
            ueid: Some(ueid(*n)),
        })
        .collect();
    let verified = run(&response, &jwks(), NOW, &evidence).unwrap();
    assert_eq!(verified.matched_by, MatchRule::Ueid);
    let pairs: Vec<(usize, &str)> = verified
        .gpus
        .iter()
        .map(|g| (g.evidence_index, g.submod.as_str()))
        .collect();
    assert_eq!(
        pairs,
        vec![(0, "GPU-2"), (1, "GPU-0"), (2, "GPU-3"), (3, "GPU-1")]
    );
    for gpu in &verified.gpus {
        assert_eq!(gpu.claims["ueid"], json!(evidence[gpu.evidence_index].ueid));
    }
}

#[test]
fn unknown_ueid_is_rejected_naming_it() {
    let response = answer(2, &leaf1());
    let evidence = vec![
        GpuRef {
            index: 0,
            ueid: Some(ueid(0)),
        },
        GpuRef {
            index: 1,
            ueid: Some("12345".into()),
        },
    ];
    let err = run(&response, &jwks(), NOW, &evidence).unwrap_err();
    assert_eq!(
        err,
        NrasError::UnknownUeid {
            submod: "GPU-1".into(),
            ueid: ueid(1)
        }
    );
    assert!(err.to_string().contains(&ueid(1)), "{err}");
}

#[test]
fn order_matching_refuses_a_pair_whose_ueids_disagree() {
    // One GPU's serial is unknown, so matching falls back to order, but where both sides know
    // the serial they must agree.
    let response = answer(2, &leaf1());
    let evidence = vec![
        GpuRef {
            index: 0,
            ueid: Some(ueid(1)),
        },
        GpuRef {
            index: 1,
            ueid: None,
        },
    ];
    let err = run(&response, &jwks(), NOW, &evidence).unwrap_err();
    assert!(
        matches!(&err, NrasError::UeidOrderConflict { submod, evidence_index: 0, .. } if submod == "GPU-0"),
        "{err:?}"
    );
}

#[test]
fn order_matching_needs_sequential_submod_names() {
    let signer = leaf1();
    let tokens = vec![
        ("GPU-0".to_string(), mint(&gpu_claims(&ueid(0)), &signer)),
        ("GPU-2".to_string(), mint(&gpu_claims(&ueid(2)), &signer)),
    ];
    let overall = mint(&overall_claims(submods(&tokens)), &signer);
    let err = run_default(&detached(&overall, &tokens), 2).unwrap_err();
    assert!(matches!(err, NrasError::SubmodNumbering { .. }), "{err:?}");
}
