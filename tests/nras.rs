//! NRAS detached-EAT verification: tokens minted here with the test PKI in
//! `tests/fixtures/nras_test_pki/` (a copy of NRAS's shape: P-384 leaves signed by an RSA
//! intermediate) must pass, and each broken variant must fail with its own error; the claim
//! judgement is exercised on hand-made and real claim sets; the real NRAS responses, whose JWKS
//! is lost, are decoded and checked for structure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::nras_mint::*;

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
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
    let leaf = pki("leaf1.der");
    let intermediate = pki("intermediate.der");
    json!({ "keys": [jwk(KID, &leaf, &[&leaf, &intermediate])] })
}

/// A per-GPU claim set as NRAS v3 claims (x-nvidia-ver 3.0) carry it, all good.
fn gpu_claims(ueid: &str) -> Value {
    let chain = json!({
        "x-nvidia-cert-status": "valid",
        "x-nvidia-cert-ocsp-status": "good",
        "x-nvidia-cert-expiration-date": "2027-01-01T00:00:00Z",
        "x-nvidia-cert-revocation-reason": null,
    });
    json!({
        "iss": NRAS_ISSUER,
        "eat_nonce": nonce_hex(),
        "iat": NOW - 10,
        "nbf": NOW - 10,
        "exp": NOW + 3590,
        "ueid": ueid,
        "measres": "success",
        "secboot": true,
        "dbgstat": "disabled",
        "hwmodel": "GH100 A01 GSP BROM",
        "oemid": "5703",
        "x-nvidia-gpu-arch-check": true,
        "x-nvidia-gpu-driver-version": "570.172.08",
        "x-nvidia-gpu-vbios-version": "96.00.CF.00.02",
        "x-nvidia-gpu-attestation-report-parsed": true,
        "x-nvidia-gpu-attestation-report-nonce-match": true,
        "x-nvidia-gpu-attestation-report-signature-verified": true,
        "x-nvidia-gpu-attestation-report-cert-chain": chain,
        "x-nvidia-gpu-attestation-report-cert-chain-fwid-match": true,
        "x-nvidia-gpu-driver-rim-fetched": true,
        "x-nvidia-gpu-driver-rim-schema-validated": true,
        "x-nvidia-gpu-driver-rim-signature-verified": true,
        "x-nvidia-gpu-driver-rim-version-match": true,
        "x-nvidia-gpu-driver-rim-measurements-available": true,
        "x-nvidia-gpu-driver-rim-cert-chain": chain,
        "x-nvidia-gpu-vbios-rim-fetched": true,
        "x-nvidia-gpu-vbios-rim-schema-validated": true,
        "x-nvidia-gpu-vbios-rim-signature-verified": true,
        "x-nvidia-gpu-vbios-rim-version-match": true,
        "x-nvidia-gpu-vbios-rim-measurements-available": true,
        "x-nvidia-gpu-vbios-rim-cert-chain": chain,
        "x-nvidia-gpu-vbios-index-no-conflict": true,
        "x-nvidia-attestation-warning": null,
    })
}

/// The ueid of test GPU `i`: a decimal like the serials NRAS reports.
fn ueid(i: usize) -> String {
    format!("59595005450381967321140424238917979203958384{:04}", i)
}

fn overall_claims(submods: Value) -> Value {
    json!({
        "sub": "NVIDIA-PLATFORM-ATTESTATION",
        "x-nvidia-ver": "3.0",
        "iss": NRAS_ISSUER,
        "x-nvidia-overall-att-result": true,
        "submods": submods,
        "eat_nonce": nonce_hex(),
        "iat": NOW - 10,
        "nbf": NOW - 10,
        "exp": NOW + 3590,
        "jti": "00000000-0000-4000-8000-000000000000",
    })
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
    let parts: Vec<&str> = overall.split('.').collect();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims["x-nvidia-overall-att-result"] = json!(false);
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64u(claims.to_string().as_bytes()),
        parts[2]
    );
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
    let unsigned = format!(
        "{}.{}.",
        b64u(header.to_string().as_bytes()),
        b64u(claims.to_string().as_bytes())
    );
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
    let input = format!(
        "{}.{}",
        b64u(header.to_string().as_bytes()),
        b64u(claims.to_string().as_bytes())
    );
    let key = hmac::Key::new(hmac::HMAC_SHA384, &cert_point(&pki("leaf1.der")));
    let tag = hmac::sign(&key, input.as_bytes());
    let forged = format!("{input}.{}", b64u(tag.as_ref()));
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

// ---- judge_result -----------------------------------------------------------------------------

fn verified_with(
    overall_edit: impl FnOnce(&mut Value),
    gpu_edit: impl FnOnce(&mut Value),
) -> VerifiedNras {
    let mut overall = overall_claims(json!({}));
    overall_edit(&mut overall);
    let mut claims = gpu_claims(&ueid(0));
    gpu_edit(&mut claims);
    VerifiedNras {
        overall: overall.as_object().unwrap().clone(),
        gpus: vec![MatchedGpu {
            evidence_index: 0,
            submod: "GPU-0".into(),
            claims: claims.as_object().unwrap().clone(),
        }],
        matched_by: MatchRule::Order,
    }
}

fn judged_failure(verified: &VerifiedNras) -> String {
    let judged = nras::judge_result(verified);
    assert_eq!(judged.len(), 1);
    failed(&judged[0].1).to_string()
}

#[test]
fn good_claims_pass() {
    let judged = nras::judge_result(&verified_with(|_| {}, |_| {}));
    assert_eq!(judged.len(), 1);
    let reason = passed(&judged[0].1);
    assert!(reason.contains("driver 570.172.08"), "{reason}");
    assert!(reason.contains("vbios 96.00.CF.00.02"), "{reason}");
}

/// One change to a claim set.
type Edit = Box<dyn FnOnce(&mut Value)>;

#[test]
fn each_bad_claim_fails_naming_it() {
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "measres fail",
            Box::new(|c| c["measres"] = json!("fail")),
            "measres: expected \"success\", found \"fail\"",
        ),
        (
            "dbgstat enabled",
            Box::new(|c| c["dbgstat"] = json!("enabled")),
            "dbgstat: expected \"disabled\", found \"enabled\"",
        ),
        (
            "secboot false",
            Box::new(|c| c["secboot"] = json!(false)),
            "secboot: expected true, found false",
        ),
        (
            "measres missing",
            Box::new(|c| {
                c.as_object_mut().unwrap().remove("measres");
            }),
            "measres: expected \"success\", found missing",
        ),
        (
            "ocsp revoked",
            Box::new(|c| {
                c["x-nvidia-gpu-vbios-rim-cert-chain"]["x-nvidia-cert-ocsp-status"] =
                    json!("revoked")
            }),
            "x-nvidia-gpu-vbios-rim-cert-chain.x-nvidia-cert-ocsp-status: expected \"good\", found \"revoked\"",
        ),
        (
            "driver rim version mismatch",
            Box::new(|c| c["x-nvidia-gpu-driver-rim-version-match"] = json!(false)),
            "x-nvidia-gpu-driver-rim-version-match: expected true, found false",
        ),
        (
            "arch check as a string",
            Box::new(|c| c["x-nvidia-gpu-arch-check"] = json!("true")),
            "x-nvidia-gpu-arch-check: expected true, found \"true\"",
        ),
    ];
    for (name, edit, expected) in cases {
        let reason = judged_failure(&verified_with(|_| {}, edit));
        assert!(reason.contains(expected), "{name}: {reason}");
        assert!(
            reason.starts_with("nras rejects GPU-0: "),
            "{name}: {reason}"
        );
    }
}

#[test]
fn every_failing_claim_is_named_at_once() {
    let reason = judged_failure(&verified_with(
        |_| {},
        |c| {
            c["measres"] = json!("fail");
            c["dbgstat"] = json!("enabled");
        },
    ));
    assert!(reason.contains("measres: expected"), "{reason}");
    assert!(reason.contains("dbgstat: expected"), "{reason}");
}

#[test]
fn overall_false_fails_every_gpu() {
    let mut verified = verified_with(|o| o["x-nvidia-overall-att-result"] = json!(false), |_| {});
    let mut second = verified.gpus[0].clone();
    second.evidence_index = 1;
    second.submod = "GPU-1".into();
    verified.gpus.push(second);
    let judged = nras::judge_result(&verified);
    assert_eq!(judged.len(), 2);
    for (index, outcome) in &judged {
        let reason = failed(outcome);
        assert!(
            reason.contains("x-nvidia-overall-att-result: expected true, found false"),
            "{index}: {reason}"
        );
    }
}

#[test]
fn error_details_are_quoted() {
    let reason = judged_failure(&verified_with(
        |_| {},
        |c| {
            c["measres"] = json!("fail");
            c["x-nvidia-error-details"] = json!("Measurement mismatch at index 9");
        },
    ));
    assert!(
        reason.contains("x-nvidia-error-details: \"Measurement mismatch at index 9\""),
        "{reason}"
    );
}

#[test]
fn missing_optional_claims_are_not_failures() {
    // Claims no version always carries may be absent.
    let verified = verified_with(
        |_| {},
        |c| {
            let map = c.as_object_mut().unwrap();
            for claim in [
                "x-nvidia-gpu-driver-rim-version-match",
                "x-nvidia-gpu-vbios-rim-version-match",
                "x-nvidia-gpu-driver-rim-fetched",
                "x-nvidia-gpu-vbios-index-no-conflict",
            ] {
                map.remove(claim);
            }
        },
    );
    passed(&nras::judge_result(&verified)[0].1);
}

#[test]
fn claims_a_version_always_carries_must_be_present() {
    // A version 3.0 token that dropped its certificate-chain object has dropped a check.
    let verified = verified_with(
        |_| {},
        |c| {
            c.as_object_mut()
                .unwrap()
                .remove("x-nvidia-gpu-vbios-rim-cert-chain");
        },
    );
    let why = failed(&nras::judge_result(&verified)[0].1).to_string();
    assert!(
        why.contains(
            "x-nvidia-gpu-vbios-rim-cert-chain: required by claims version 3.0, found none"
        ),
        "{why}"
    );
    // The same claim set labelled version 2.0 is held to 2.0's claims, which it lacks.
    let verified = verified_with(|o| o["x-nvidia-ver"] = json!("2.0"), |_| {});
    let why = failed(&nras::judge_result(&verified)[0].1).to_string();
    assert!(
        why.contains(
            "x-nvidia-gpu-attestation-report-cert-chain-validated: required by claims version 2.0"
        ),
        "{why}"
    );
}

// ---- claims versions --------------------------------------------------------------------------

/// A per-GPU claim set as NRAS claims version 2.0 carries it (the shape of the private-ml-sdk
/// responses in `tests/vectors/`): certificate chains as `…-cert-validated` booleans, no
/// certificate-chain objects, FWID or RIM version matches.
fn gpu_claims_v2(ueid: &str) -> Value {
    let mut claims = gpu_claims(ueid);
    let map = claims.as_object_mut().unwrap();
    for claim in [
        "x-nvidia-gpu-attestation-report-cert-chain",
        "x-nvidia-gpu-attestation-report-cert-chain-fwid-match",
        "x-nvidia-gpu-driver-rim-cert-chain",
        "x-nvidia-gpu-vbios-rim-cert-chain",
        "x-nvidia-gpu-driver-rim-version-match",
        "x-nvidia-gpu-vbios-rim-version-match",
    ] {
        map.remove(claim);
    }
    for claim in [
        "x-nvidia-gpu-attestation-report-cert-chain-validated",
        "x-nvidia-gpu-driver-rim-cert-validated",
        "x-nvidia-gpu-vbios-rim-cert-validated",
    ] {
        map.insert(claim.to_string(), json!(true));
    }
    claims
}

/// NRAS's judgement of a minted 1-GPU answer of claims version `version` (its GPU claims as
/// that version carries them), after `overall_edit` and `gpu_edit`, verified end to end: the
/// token must pass `verify_token`, so only the claim judgement can object.
fn judged_answer(
    version: &str,
    overall_edit: impl FnOnce(&mut Value),
    gpu_edit: impl FnOnce(&mut Value),
) -> Outcome {
    let signer = leaf1();
    let mut gpu = match version {
        "2.0" => gpu_claims_v2(&ueid(0)),
        _ => gpu_claims(&ueid(0)),
    };
    gpu_edit(&mut gpu);
    let tokens = vec![("GPU-0".to_string(), mint(&gpu, &signer))];
    let mut overall = overall_claims(submods(&tokens));
    overall["x-nvidia-ver"] = json!(version);
    overall_edit(&mut overall);
    let response = detached(&mint(&overall, &signer), &tokens);
    let verified = run_default(&response, 1).unwrap();
    let mut judged = nras::judge_result(&verified);
    assert_eq!(judged.len(), 1);
    judged.remove(0).1
}

#[test]
fn valid_answers_of_every_known_claims_version_pass() {
    for version in ["2.0", "3.0"] {
        let outcome = judged_answer(version, |_| {}, |_| {});
        let reason = passed(&outcome);
        assert!(
            reason.contains(&format!("claims version {version}")),
            "{version}: {reason}"
        );
    }
}

#[test]
fn an_answer_without_a_claims_version_is_unknown_naming_it() {
    let outcome = judged_answer(
        "3.0",
        |o| {
            o.as_object_mut().unwrap().remove("x-nvidia-ver");
        },
        |_| {},
    );
    let reason = unknown(&outcome);
    assert!(
        reason.contains("the overall token carries no x-nvidia-ver: claims version not understood"),
        "{reason}"
    );
    assert!(reason.contains("GPU-0"), "{reason}");
}

#[test]
fn an_answer_of_an_unknown_claims_version_is_unknown() {
    let outcome = judged_answer("3.0", |o| o["x-nvidia-ver"] = json!("4.0"), |_| {});
    let reason = unknown(&outcome);
    assert!(
        reason.contains("claims version 4.0 not understood"),
        "{reason}"
    );
    // A version that is not a string is not understood either.
    let outcome = judged_answer("3.0", |o| o["x-nvidia-ver"] = json!(3.0), |_| {});
    let reason = unknown(&outcome);
    assert!(
        reason.contains("x-nvidia-ver: expected a version string, found 3.0"),
        "{reason}"
    );
}

#[test]
fn a_rejection_in_an_unknown_claims_version_still_fails() {
    // NRAS saying no is a rejection whatever the version; the unknown version is named too.
    let outcome = judged_answer("4.0", |_| {}, |g| g["measres"] = json!("fail"));
    let reason = failed(&outcome);
    assert!(
        reason.contains("measres: expected \"success\", found \"fail\""),
        "{reason}"
    );
    assert!(
        reason.contains("claims version 4.0 not understood"),
        "{reason}"
    );
}

#[test]
fn every_known_claims_version_requires_its_certificate_and_ocsp_claims() {
    // (version, claim removed, expected reason): each case removes one claim from a valid answer.
    let cases = [
        (
            "2.0",
            "x-nvidia-gpu-attestation-report-cert-chain-validated",
            "x-nvidia-gpu-attestation-report-cert-chain-validated: required by claims version 2.0, found none",
        ),
        (
            "2.0",
            "x-nvidia-gpu-driver-rim-cert-validated",
            "x-nvidia-gpu-driver-rim-cert-validated: required by claims version 2.0, found none",
        ),
        (
            "2.0",
            "x-nvidia-gpu-vbios-rim-cert-validated",
            "x-nvidia-gpu-vbios-rim-cert-validated: required by claims version 2.0, found none",
        ),
        (
            "3.0",
            "x-nvidia-gpu-attestation-report-cert-chain",
            "x-nvidia-gpu-attestation-report-cert-chain: required by claims version 3.0, found none",
        ),
        (
            "3.0",
            "x-nvidia-gpu-driver-rim-cert-chain",
            "x-nvidia-gpu-driver-rim-cert-chain: required by claims version 3.0, found none",
        ),
        (
            "3.0",
            "x-nvidia-gpu-vbios-rim-cert-chain",
            "x-nvidia-gpu-vbios-rim-cert-chain: required by claims version 3.0, found none",
        ),
    ];
    for (version, claim, expected) in cases {
        let outcome = judged_answer(
            version,
            |_| {},
            |g| {
                g.as_object_mut().unwrap().remove(claim).unwrap();
            },
        );
        let reason = failed(&outcome);
        assert!(
            reason.starts_with("nras rejects GPU-0: "),
            "{claim}: {reason}"
        );
        assert!(reason.contains(expected), "{claim}: {reason}");
    }
}

#[test]
fn a_version_3_certificate_chain_without_its_ocsp_status_fails() {
    // The OCSP verdict inside a 3.0 certificate-chain object is required as well.
    for chain in [
        "x-nvidia-gpu-attestation-report-cert-chain",
        "x-nvidia-gpu-driver-rim-cert-chain",
        "x-nvidia-gpu-vbios-rim-cert-chain",
    ] {
        let outcome = judged_answer(
            "3.0",
            |_| {},
            |g| {
                g[chain]
                    .as_object_mut()
                    .unwrap()
                    .remove("x-nvidia-cert-ocsp-status")
                    .unwrap();
            },
        );
        let reason = failed(&outcome);
        assert!(
            reason.contains(&format!(
                "{chain}.x-nvidia-cert-ocsp-status: expected \"good\", found missing"
            )),
            "{chain}: {reason}"
        );
    }
}

// ---- real vectors -----------------------------------------------------------------------------

const PHALA_1GPU: &str =
    "tests/vectors/provider/private-ml-sdk/phala_pmlsdk_nras_sample_response_1gpu.json";
const PHALA_8GPU: &str =
    "tests/vectors/provider/private-ml-sdk/phala_pmlsdk_nras_sample_response_ppcie_8gpu.json";
const SDK_EAT: &str = "tests/vectors/nvidia/attestation-sdk/hopperClaimsv3_detached_eat.json";
const SDK_DECODED: &str = "tests/vectors/nvidia/attestation-sdk/hopperClaimsv3_decoded.json";

/// The GPU tokens of a real response, by submod name.
fn raw_gpu_tokens(response: &Value) -> Map<String, Value> {
    response[1].as_object().unwrap().clone()
}

/// A verified-shaped value from decoded claims, matched by order.
fn as_verified(decoded: &nras::DecodedNras) -> VerifiedNras {
    VerifiedNras {
        overall: decoded.overall.clone(),
        gpus: decoded
            .gpus
            .iter()
            .enumerate()
            .map(|(i, (submod, claims))| MatchedGpu {
                evidence_index: i,
                submod: submod.clone(),
                claims: claims.clone(),
            })
            .collect(),
        matched_by: MatchRule::Order,
    }
}

#[test]
fn real_one_gpu_response_decodes() {
    let decoded = nras::decode_unverified(&json_file(PHALA_1GPU)).unwrap();
    assert!(
        decoded.overall["eat_nonce"]
            .as_str()
            .unwrap()
            .starts_with("56f5c2c4")
    );
    assert_eq!(decoded.overall["iat"], json!(1_759_774_032));
    assert_eq!(decoded.overall["x-nvidia-ver"], json!("2.0"));
    assert_eq!(decoded.gpus.len(), 1);
    assert_eq!(decoded.gpus[0].0, "GPU-0");
    // A claims-version 2.0 GPU token: boolean cert-chain claims, no cert-chain objects.
    let gpu = &decoded.gpus[0].1;
    assert_eq!(
        gpu["x-nvidia-gpu-attestation-report-cert-chain-validated"],
        json!(true)
    );
    assert!(!gpu.contains_key("x-nvidia-gpu-attestation-report-cert-chain"));
    passed(&nras::judge_result(&as_verified(&decoded))[0].1);
}

#[test]
fn real_eight_gpu_response_decodes_with_matching_digests() {
    let response = json_file(PHALA_8GPU);
    let decoded = nras::decode_unverified(&response).unwrap();
    assert!(
        decoded.overall["eat_nonce"]
            .as_str()
            .unwrap()
            .starts_with("d6a4f9aa")
    );
    let submods = decoded.overall["submods"].as_object().unwrap();
    assert_eq!(submods.len(), 8);
    assert_eq!(decoded.gpus.len(), 8);
    let tokens = raw_gpu_tokens(&response);
    for (name, entry) in submods {
        let token = tokens[name].as_str().unwrap();
        assert_eq!(entry[0], json!("DIGEST"));
        assert_eq!(entry[1][0], json!("SHA-256"));
        assert_eq!(entry[1][1], json!(digest(token)), "{name}");
    }
    for (_, claims) in &decoded.gpus {
        assert_eq!(claims["eat_nonce"], decoded.overall["eat_nonce"]);
    }
    assert!(all_pass(&nras::judge_result(&as_verified(&decoded))));
}

#[test]
fn attestation_sdk_detached_eat_decodes_to_its_published_claims() {
    let response = json_file(SDK_EAT);
    let decoded = nras::decode_unverified(&response).unwrap();
    let published = json_file(SDK_DECODED);
    // The published decoding holds only the GPU token's claims.
    assert_eq!(published.as_object().unwrap().len(), 1);
    assert_eq!(decoded.gpus.len(), 1);
    assert_eq!(decoded.gpus[0].0, "GPU-0");
    assert_eq!(Value::Object(decoded.gpus[0].1.clone()), published["GPU-0"]);
    // The overall token: claims version 3.0, same nonce, a one-hour window, the GPU-0 digest.
    let overall = &decoded.overall;
    assert_eq!(overall["x-nvidia-ver"], json!("3.0"));
    assert_eq!(overall["iss"], json!(NRAS_ISSUER));
    assert_eq!(overall["x-nvidia-overall-att-result"], json!(true));
    assert_eq!(overall["eat_nonce"], published["GPU-0"]["eat_nonce"]);
    assert_eq!(
        overall["exp"].as_i64().unwrap() - overall["iat"].as_i64().unwrap(),
        3600
    );
    let token = raw_gpu_tokens(&response)["GPU-0"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        overall["submods"]["GPU-0"],
        json!(["DIGEST", ["SHA-256", digest(&token)]])
    );
    passed(&nras::judge_result(&as_verified(&decoded))[0].1);
}

#[test]
fn attestation_sdk_eat_without_its_jwks_fails_on_the_kid() {
    let response = json_file(SDK_EAT);
    let intermediates = vec![{
        let pem = read("tests/vectors/nvidia/nras/nras_gpu_intermediate_004.pem");
        x509_parser::pem::parse_x509_pem(&pem).unwrap().1.contents
    }];
    let anchors = NrasAnchors {
        intermediates_der: &intermediates,
        expected_iss: NRAS_ISSUER,
    };
    let jwks = json!({"keys": []});
    let inputs = NrasInputs {
        response: &response,
        jwks: &jwks,
    };
    let nonce: [u8; 32] =
        hex::decode("931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb")
            .unwrap()
            .try_into()
            .unwrap();
    let err = nras::verify_token(&inputs, &anchors, &nonce, 1_749_601_858, &gpus(1)).unwrap_err();
    assert!(
        matches!(&err, NrasError::UnknownKid { token, kid }
            if token == "overall" && kid.starts_with("nv-eat-kid-prod-20250609211310110-")),
        "{err:?}"
    );
}

#[test]
fn real_claim_sets_pass_judgement() {
    // nvtrust's attestation-SDK claim sets: version 2.0 (overall + detached) and the granular
    // version 3.0 pair, all good.
    let dir = "tests/vectors/nvidia/nvtrust";
    for (overall, detached) in [
        (
            "claims_overall_claims_remote.json",
            "claims_detached_claims_remote.json",
        ),
        (
            "claims_overall_granular_claims_remote.json",
            "claims_detached_granular_claims_remote.json",
        ),
    ] {
        let decoded = nras::DecodedNras {
            overall: json_file(&format!("{dir}/{overall}"))
                .as_object()
                .unwrap()
                .clone(),
            gpus: vec![(
                "GPU-0".to_string(),
                json_file(&format!("{dir}/{detached}"))
                    .as_object()
                    .unwrap()
                    .clone(),
            )],
        };
        let judged = nras::judge_result(&as_verified(&decoded));
        let reason = match &judged[0].1 {
            Outcome::Pass(reason) => reason,
            other => panic!("{detached}: {other:?}"),
        };
        if detached.contains("granular") {
            // This set carries a warning about a RIM signer certificate on hold; it is passed
            // on, not judged.
            assert!(reason.contains("warning"), "{reason}");
        }
    }
}

#[test]
fn real_responses_without_jwks_fail_on_the_kid() {
    for (path, n) in [(PHALA_1GPU, 1), (PHALA_8GPU, 8)] {
        let response = json_file(path);
        let err = run(&response, &json!({"keys": []}), NOW, &gpus(n)).unwrap_err();
        assert!(
            matches!(&err, NrasError::UnknownKid { kid, .. } if kid.starts_with("nv-eat-kid-prod-")),
            "{path}: {err:?}"
        );
    }
}

#[test]
fn real_nras_intermediate_parses_as_an_anchor() {
    // The pinned default: an RSA-2048 key, itself signed ECDSA-SHA384 by "NVIDIA Attestation
    // Service CA 001". A JWKS whose leaf it did not sign is refused for that reason, not
    // because the anchor cannot be read.
    let pem = read("tests/vectors/nvidia/nras/nras_gpu_intermediate_004.pem");
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
    let cert = pem.parse_x509().unwrap();
    assert!(
        cert.subject()
            .to_string()
            .contains("NVIDIA Attestation Service GPU Intermediate 004")
    );
    assert_eq!(
        cert.public_key().algorithm.algorithm.to_id_string(),
        "1.2.840.113549.1.1.1"
    );
}
