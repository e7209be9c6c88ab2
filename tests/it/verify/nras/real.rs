//! Real NRAS responses (private-ml-sdk's samples, NVIDIA's attestation SDK): their JWKS is lost,
//! so they are decoded and checked for structure and digests, their claim sets pass judgement,
//! and without their JWKS they fail on the kid.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use super::*;

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
