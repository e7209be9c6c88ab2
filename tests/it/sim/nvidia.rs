//! The NVIDIA simulator's output must pass the verifier's own GPU and NRAS checks under the test
//! roots it hands out, fail under NVIDIA's real roots, and fail in exactly the way each injected
//! fault (bad GPU signature, FWID mismatch, failing verdict, rotated key, untrusted signer) is
//! meant to.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use serde_json::Value;
use teewatch::verify::Outcome;
use teewatch::verify::gpu::certs::{ChainCache, GpuEvidenceError, verify_gpu_evidence};
use teewatch::verify::gpu::nras::{
    GpuRef, MatchRule, NrasAnchors, NrasError, NrasInputs, VerifiedNras, judge_result, verify_token,
};
use teewatch::verify::gpu::spdm::SpdmEvidence;
use teewatch::verify::policy::{NVIDIA_DEVICE_ROOT_PEM, pem_to_der};
use teewatch_sim::nvidia::{GpuState, NrasSim, NvidiaSimError, NvidiaTestPki};

const ISSUER: &str = "http://127.0.0.1:18443/nras";

fn nonce() -> [u8; 32] {
    std::array::from_fn(|i| (i as u8).wrapping_mul(13).wrapping_add(5))
}

/// (evidence bytes, chain PEM bytes) of every GPU of a payload, after checking its shape.
fn items(payload: &Value) -> Vec<(Vec<u8>, Vec<u8>)> {
    assert_eq!(payload["nonce"], hex::encode(nonce()));
    assert_eq!(payload["arch"], "HOPPER");
    payload["evidence_list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            assert_eq!(item["arch"], "HOPPER");
            (
                STANDARD.decode(item["evidence"].as_str().unwrap()).unwrap(),
                STANDARD
                    .decode(item["certificate"].as_str().unwrap())
                    .unwrap(),
            )
        })
        .collect()
}

fn verify_all(
    payload: &Value,
    root_der: &[u8],
    now: i64,
) -> Vec<Result<teewatch::verify::gpu::certs::GpuDevice, GpuEvidenceError>> {
    let cache = ChainCache::default();
    items(payload)
        .iter()
        .map(|(evidence, chain)| {
            let parsed = SpdmEvidence::parse(evidence).unwrap();
            verify_gpu_evidence(evidence, &parsed, chain, root_der, now, &cache)
        })
        .collect()
}

fn gpu_refs(pki: &NvidiaTestPki, n: usize) -> Vec<GpuRef> {
    (0..n)
        .map(|index| GpuRef {
            index,
            ueid: pki.ueid(index),
        })
        .collect()
}

fn verify_nras(
    sim: &NrasSim,
    eat: &Value,
    jwks: &Value,
    pki: &NvidiaTestPki,
    n: usize,
    now: i64,
) -> Result<VerifiedNras, NrasError> {
    verify_token(
        &NrasInputs {
            response: eat,
            jwks,
        },
        &NrasAnchors {
            intermediates_der: &[sim.intermediate_der().to_vec()],
            expected_iss: ISSUER,
        },
        &nonce(),
        now,
        &gpu_refs(pki, n),
    )
}

#[test]
fn evidence_verifies_under_the_test_root_for_1_4_and_8_gpus() {
    let now = Utc::now();
    let real_root = pem_to_der(NVIDIA_DEVICE_ROOT_PEM).unwrap();
    for n in [1usize, 4, 8] {
        let pki = NvidiaTestPki::generate(n, now).unwrap();
        assert_eq!(pki.gpu_count(), n);
        let payload = pki.payload(&nonce(), &pki.default_gpus()).unwrap();
        let items = items(&payload);
        assert_eq!(items.len(), n);

        let mut ueids = Vec::new();
        for (i, (evidence, chain)) in items.iter().enumerate() {
            let parsed = SpdmEvidence::parse(evidence).unwrap();
            assert_eq!(parsed.request_nonce, nonce());
            assert_eq!(parsed.trailing_bytes, 0);
            assert_eq!(parsed.blocks.len(), 64);
            assert!(parsed.blocks.iter().all(|b| b.value.len() == 48));
            assert_eq!(parsed.driver_version(), Some("570.172.08"));
            assert_eq!(parsed.vbios_version().as_deref(), Some("96.00.CF.00.02"));
            assert_eq!(parsed.chip_sku(), Some("882"));
            assert_eq!(parsed.project(), Some("1010"));
            assert_eq!(parsed.msrscnt().unwrap().len(), 64);
            assert_eq!(parsed.fwid(), Some(GpuState::default().fwid.as_slice()));

            let device = verify_gpu_evidence(
                evidence,
                &parsed,
                chain,
                pki.root_der(),
                now.timestamp(),
                &ChainCache::default(),
            )
            .unwrap_or_else(|e| panic!("{n} gpus, gpu {i}: {e}"));
            assert!(device.fwid_compared);
            assert!(device.root_included);
            // Five certificates, as NVIDIA's: leaf, per-GPU BROM CA, provisioner, identity, root.
            assert_eq!(device.subjects.len(), 5);
            assert_eq!(device.subjects[0], format!("teewatch TEST GH100 GPU {i}"));
            assert_eq!(
                device.subjects[1],
                format!("teewatch TEST GH100 GSP BROM {i} — not NVIDIA")
            );
            assert_eq!(
                device.subjects[4],
                "teewatch TEST NVIDIA Device Identity CA — not NVIDIA"
            );
            assert_eq!(Some(device.ueid.clone()), pki.ueid(i));
            ueids.push(device.ueid);

            // NVIDIA's real root must never accept the test chain.
            let real = verify_gpu_evidence(
                evidence,
                &parsed,
                chain,
                &real_root,
                now.timestamp(),
                &ChainCache::default(),
            );
            assert!(
                matches!(real, Err(GpuEvidenceError::NotRooted { .. })),
                "{real:?}"
            );
        }
        ueids.sort();
        ueids.dedup();
        assert_eq!(ueids.len(), n, "every leaf has its own serial");
        assert!(pki.ueid(n).is_none());
    }
}

#[test]
fn bad_signature_fails_exactly_that_gpu() {
    let now = Utc::now();
    let pki = NvidiaTestPki::generate(4, now).unwrap();
    let gpus = pki.default_gpus();
    for bad in 0..4 {
        let payload = pki.payload_bad_signature(&nonce(), &gpus, bad).unwrap();
        for (i, result) in verify_all(&payload, pki.root_der(), now.timestamp())
            .into_iter()
            .enumerate()
        {
            if i == bad {
                assert!(
                    matches!(result, Err(GpuEvidenceError::EvidenceSignature { .. })),
                    "gpu {i}: {result:?}"
                );
            } else {
                assert!(result.is_ok(), "gpu {i}: {result:?}");
            }
        }
    }
    assert!(matches!(
        pki.payload_bad_signature(&nonce(), &gpus, 4),
        Err(NvidiaSimError::NoSuchGpu { .. })
    ));
}

#[test]
fn gpu_state_changes_the_signed_evidence() {
    let now = Utc::now();
    let pki = NvidiaTestPki::generate(2, now).unwrap();
    let mut gpus = pki.default_gpus();
    gpus[0].driver_version = "550.90.07".to_string();
    gpus[0].vbios = GpuState::encode_vbios("96.00.9F.00.01").unwrap();
    gpus[0].blocks.truncate(16);
    gpus[0].blocks[3].1 = [0xAB; 48];
    gpus[1].fwid = [0x11; 48];
    let payload = pki.payload(&nonce(), &gpus).unwrap();
    let items = items(&payload);
    let parsed = SpdmEvidence::parse(&items[0].0).unwrap();
    assert_eq!(parsed.driver_version(), Some("550.90.07"));
    assert_eq!(parsed.vbios_version().as_deref(), Some("96.00.9F.00.01"));
    assert_eq!(parsed.blocks.len(), 16);
    assert_eq!(parsed.block(4).unwrap().value, vec![0xAB; 48]);

    let results = verify_all(&payload, pki.root_der(), now.timestamp());
    assert!(results[0].is_ok(), "{:?}", results[0]);
    // A FWID other than the leaf's is the FWID-mismatch fault.
    assert!(
        matches!(results[1], Err(GpuEvidenceError::FwidMismatch { .. })),
        "{:?}",
        results[1]
    );

    // States the parser would refuse are refused up front.
    let mut duplicate = GpuState::default();
    duplicate.blocks[1].0 = 1;
    assert!(matches!(
        pki.payload(&nonce(), &[duplicate]),
        Err(NvidiaSimError::GpuState { index: 0, .. })
    ));
    let control = GpuState {
        driver_version: "570\n".to_string(),
        ..GpuState::default()
    };
    assert!(pki.payload(&nonce(), &[control]).is_err());
    assert!(
        pki.payload(&nonce(), &vec![GpuState::default(); 3])
            .is_err()
    );
    assert!(matches!(
        GpuState::encode_vbios("96.00.9F.00"),
        Err(NvidiaSimError::Vbios(_))
    ));
    assert!(NvidiaTestPki::generate(0, now).is_err());
}

#[test]
fn nras_answer_verifies_and_passes_every_gpu() {
    let now = Utc::now();
    for n in [1usize, 4, 8] {
        let pki = NvidiaTestPki::generate(n, now).unwrap();
        let sim = NrasSim::generate(ISSUER, now).unwrap();
        let payload = pki.payload(&nonce(), &pki.default_gpus()).unwrap();
        let eat = sim.attest(&payload, now, true).unwrap();
        let verified = verify_nras(&sim, &eat, &sim.jwks(), &pki, n, now.timestamp())
            .unwrap_or_else(|e| panic!("{n} gpus: {e}"));
        assert_eq!(verified.matched_by, MatchRule::Ueid);
        assert_eq!(verified.gpus.len(), n);
        assert_eq!(verified.overall["x-nvidia-ver"], "3.0");
        let results = judge_result(&verified);
        assert_eq!(results.len(), n);
        for (index, (evidence_index, outcome)) in results.iter().enumerate() {
            assert_eq!(*evidence_index, index);
            let Outcome::Pass(reason) = outcome else {
                panic!("expected a pass, found {outcome:?}")
            };
            assert!(reason.contains("570.172.08"), "{reason}");
            assert!(reason.contains("96.00.CF.00.02"), "{reason}");
        }
        // The GPU tokens carry the leaf serials, matched to the right GPUs.
        for gpu in &verified.gpus {
            assert_eq!(
                gpu.claims["ueid"].as_str(),
                pki.ueid(gpu.evidence_index).as_deref()
            );
        }

        // The payload as a JSON string, as providers embed it, gives the same verdicts.
        let as_string = Value::String(payload.to_string());
        let eat = sim.attest(&as_string, now, true).unwrap();
        let verified = verify_nras(&sim, &eat, &sim.jwks(), &pki, n, now.timestamp()).unwrap();
        assert!(
            judge_result(&verified)
                .iter()
                .all(|(_, r)| matches!(r, Outcome::Pass(_)))
        );
    }
}

#[test]
fn failing_verdict_fails_judge_result() {
    let now = Utc::now();
    let pki = NvidiaTestPki::generate(2, now).unwrap();
    let sim = NrasSim::generate(ISSUER, now).unwrap();
    let payload = pki.payload(&nonce(), &pki.default_gpus()).unwrap();
    let eat = sim.attest(&payload, now, false).unwrap();
    let verified = verify_nras(&sim, &eat, &sim.jwks(), &pki, 2, now.timestamp()).unwrap();
    assert_eq!(verified.overall["x-nvidia-overall-att-result"], false);
    for (_, outcome) in judge_result(&verified) {
        let Outcome::Fail(reason) = outcome else {
            panic!("expected a failure, found {outcome:?}")
        };
        assert!(reason.contains("x-nvidia-overall-att-result"), "{reason}");
        assert!(reason.contains("measres"), "{reason}");
    }
}

#[test]
fn nras_reports_a_bad_gpu_signature_for_that_gpu_only() {
    let now = Utc::now();
    let pki = NvidiaTestPki::generate(3, now).unwrap();
    let sim = NrasSim::generate(ISSUER, now).unwrap();
    let payload = pki
        .payload_bad_signature(&nonce(), &pki.default_gpus(), 1)
        .unwrap();
    let eat = sim.attest(&payload, now, true).unwrap();
    let verified = verify_nras(&sim, &eat, &sim.jwks(), &pki, 3, now.timestamp()).unwrap();
    let gpu1 = verified
        .gpus
        .iter()
        .find(|g| g.evidence_index == 1)
        .unwrap();
    assert_eq!(
        gpu1.claims["x-nvidia-gpu-attestation-report-signature-verified"],
        false
    );
    assert_eq!(verified.overall["x-nvidia-overall-att-result"], false);
    for gpu in verified.gpus.iter().filter(|g| g.evidence_index != 1) {
        assert_eq!(
            gpu.claims["x-nvidia-gpu-attestation-report-signature-verified"],
            true
        );
    }
}

#[test]
fn rotation_drops_the_old_key() {
    let now = Utc::now();
    let pki = NvidiaTestPki::generate(1, now).unwrap();
    let mut sim = NrasSim::generate(ISSUER, now).unwrap();
    let payload = pki.payload(&nonce(), &pki.default_gpus()).unwrap();
    let old_jwks = sim.jwks();
    let old_kid = sim.kid().to_string();
    let old_eat = sim.attest(&payload, now, true).unwrap();

    sim.rotate(now).unwrap();
    assert_ne!(sim.kid(), old_kid);
    let new_jwks = sim.jwks();
    assert_eq!(new_jwks["keys"].as_array().unwrap().len(), 1);
    let new_eat = sim.attest(&payload, now, true).unwrap();

    let stale = verify_nras(&sim, &new_eat, &old_jwks, &pki, 1, now.timestamp());
    assert!(
        matches!(stale, Err(NrasError::UnknownKid { .. })),
        "{stale:?}"
    );
    verify_nras(&sim, &new_eat, &new_jwks, &pki, 1, now.timestamp()).unwrap();
    // A token signed before the rotation names a key the new JWKS no longer has.
    let dropped = verify_nras(&sim, &old_eat, &new_jwks, &pki, 1, now.timestamp());
    assert!(
        matches!(dropped, Err(NrasError::UnknownKid { .. })),
        "{dropped:?}"
    );
}

#[test]
fn untrusted_signer_is_refused() {
    let now = Utc::now();
    let pki = NvidiaTestPki::generate(2, now).unwrap();
    let mut sim = NrasSim::generate(ISSUER, now).unwrap();
    let payload = pki.payload(&nonce(), &pki.default_gpus()).unwrap();

    sim.use_untrusted_signer(true);
    let eat = sim.attest(&payload, now, true).unwrap();
    let result = verify_nras(&sim, &eat, &sim.jwks(), &pki, 2, now.timestamp());
    assert!(
        matches!(
            result,
            Err(NrasError::UntrustedIssuer { .. } | NrasError::LeafSignatureInvalid { .. })
        ),
        "{result:?}"
    );
    // The impostor is trusted by nobody but itself: pinning it would accept the token.
    let pinned_impostor = verify_token(
        &NrasInputs {
            response: &eat,
            jwks: &sim.jwks(),
        },
        &NrasAnchors {
            intermediates_der: &[sim.untrusted_intermediate_der().to_vec()],
            expected_iss: ISSUER,
        },
        &nonce(),
        now.timestamp(),
        &gpu_refs(&pki, 2),
    );
    assert!(pinned_impostor.is_ok(), "{pinned_impostor:?}");

    sim.use_untrusted_signer(false);
    let eat = sim.attest(&payload, now, true).unwrap();
    verify_nras(&sim, &eat, &sim.jwks(), &pki, 2, now.timestamp()).unwrap();
}

#[test]
fn nras_tokens_are_judged_at_the_right_time() {
    let now = Utc::now();
    let pki = NvidiaTestPki::generate(1, now).unwrap();
    let sim = NrasSim::generate(ISSUER, now).unwrap();
    let payload = pki.payload(&nonce(), &pki.default_gpus()).unwrap();
    let eat = sim.attest(&payload, now, true).unwrap();
    // Two hours later the token has expired (exp = iat + 3600).
    let later = now.timestamp() + 7200;
    let expired = verify_nras(&sim, &eat, &sim.jwks(), &pki, 1, later);
    assert!(
        matches!(expired, Err(NrasError::Expired { .. })),
        "{expired:?}"
    );
    // Three days later the signing leaf itself has lapsed: rotation is needed.
    let lapsed = sim.leaf_not_after().timestamp() + 1;
    let eat = sim
        .attest(&payload, DateTime::from_timestamp(lapsed, 0).unwrap(), true)
        .unwrap();
    let result = verify_nras(&sim, &eat, &sim.jwks(), &pki, 1, lapsed);
    assert!(
        matches!(result, Err(NrasError::LeafNotValidAt { .. })),
        "{result:?}"
    );
    // The wrong issuer is refused.
    let other = NrasSim::generate("http://127.0.0.1:1/other", now).unwrap();
    let eat = other.attest(&payload, now, true).unwrap();
    let result = verify_token(
        &NrasInputs {
            response: &eat,
            jwks: &other.jwks(),
        },
        &NrasAnchors {
            intermediates_der: &[other.intermediate_der().to_vec()],
            expected_iss: ISSUER,
        },
        &nonce(),
        now.timestamp(),
        &gpu_refs(&pki, 1),
    );
    assert!(
        matches!(result, Err(NrasError::IssuerMismatch { .. })),
        "{result:?}"
    );
    assert!(
        sim.intermediate_pem()
            .starts_with("-----BEGIN CERTIFICATE-----")
    );
    assert_eq!(
        pem_to_der(&sim.intermediate_pem()).unwrap(),
        sim.intermediate_der()
    );
    assert_eq!(pem_to_der(pki.root_pem()).unwrap(), pki.root_der());
}

#[test]
fn simulator_types_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<NvidiaTestPki>();
    assert_send_sync::<NrasSim>();
}
