//! NRAS's claim judgement (`judge_result`) on minted answers: good claims pass, each bad claim
//! fails naming it, missing optional claims do not fail, and each claims version teewatch knows
//! requires its own certificate and OCSP claims while an unknown version is not judged.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use super::*;

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
        "2.0" => claims_of_gpu(&ueid(0), gpu_claims_v2),
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
