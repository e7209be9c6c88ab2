//! The provenance verifier against a real production Rekor entry (GitHub's attest action, a
//! `dsse` entry from 2024, `tests/vectors/sigstore/PROVENANCE.md`) and the pinned production
//! trust root; then one change at a time, each asserting the step and reason it fails at.
//! Changes that need a re-signed entry (another time, another checkpoint) use a test Rekor key
//! beside the real Fulcio chain, signing with the same exported payload functions the
//! simulator uses.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
use teewatch_verify::provenance::{
    AllowedIdentity, ProvenanceError, SigstoreTrust, checkpoint_body, judge_identity, log_id,
    set_payload, verify_entry,
};

const ENTRY: &str = include_str!("vectors/sigstore/cli-cli/rekor_entry.json");
const STATEMENT: &[u8] = include_bytes!("vectors/sigstore/cli-cli/statement.json");
const DIGEST: &str = "sha256:07e4b8c0e3580b3e4a1eb62c70f1ffb86004d3d94f50767cb404fa7a639b4d05";
const UUID: &str =
    "24296fb24b8ad77a9c062cd382c466ed92b1cac96b4d0ef99a99003c78e40dbc3e523346fc00cada";
const ISSUER: &str = "https://token.actions.githubusercontent.com";
const SUBJECT: &str =
    "https://github.com/bdehamer/workflows/.github/workflows/attest.yml@refs/heads/main";
const FULCIO_PEM: &str = include_str!("../anchors/sigstore/fulcio_chain.pem");
const NVIDIA_ROOT_PEM: &str = include_str!("../anchors/nvidia_device_identity_ca.pem");

fn production() -> SigstoreTrust {
    SigstoreTrust::production().unwrap()
}

fn entry() -> Value {
    serde_json::from_str(ENTRY).unwrap()
}

/// The one entry object inside the answer keyed by UUID.
fn inner(v: &mut Value) -> &mut Value {
    v.get_mut(UUID).unwrap()
}

fn verify(
    v: &Value,
    trust: &SigstoreTrust,
) -> Result<teewatch_verify::provenance::VerifiedEntry, ProvenanceError> {
    verify_entry(&v.to_string(), Some(STATEMENT), DIGEST, trust)
}

/// Flips one bit of a base64 value's decoded bytes at `at`.
fn flip_b64(s: &str, at: usize) -> String {
    let mut raw = STANDARD.decode(s).unwrap();
    raw[at] ^= 1;
    STANDARD.encode(raw)
}

#[test]
fn production_trust_root_is_the_pinned_one() {
    let trust = production();
    assert_eq!(
        trust.rekor_log_ids(),
        vec!["c0d23d6ad406973f9559f3ba2d1ca01f84147d8ffc5b8445c224f98b9591801d".to_string()]
    );
}

#[test]
fn the_real_entry_verifies_against_the_production_root() {
    let verified = verify_entry(ENTRY, Some(STATEMENT), DIGEST, &production()).unwrap();
    assert_eq!(verified.identity.issuer, ISSUER);
    assert_eq!(verified.identity.subject, SUBJECT);
    assert_eq!(verified.integrated_time, 1716332177);
    assert_eq!(verified.log_index, 95781729);
    assert_eq!(verified.uuid, UUID);
    let allowed = AllowedIdentity {
        issuer: ISSUER.into(),
        subject: "https://github.com/bdehamer/workflows/.github/workflows/attest.yml@refs/heads/*"
            .into(),
    };
    assert_eq!(judge_identity(&verified.identity, &[allowed]), Ok(()));
}

#[test]
fn another_identity_is_not_allowed() {
    let verified = verify_entry(ENTRY, Some(STATEMENT), DIGEST, &production()).unwrap();
    let allowed = AllowedIdentity {
        issuer: ISSUER.into(),
        subject:
            "https://github.com/malancas/attest-demo/.github/workflows/shared.yml@refs/heads/main"
                .into(),
    };
    let Err(ProvenanceError::IdentityNotAllowed(m)) =
        judge_identity(&verified.identity, &[allowed])
    else {
        panic!("another workflow's identity must not be allowed");
    };
    assert!(m.contains(&format!("found {SUBJECT} from {ISSUER}")), "{m}");
}

#[test]
fn another_image_digest_is_not_bound() {
    let other = "sha256:17e4b8c0e3580b3e4a1eb62c70f1ffb86004d3d94f50767cb404fa7a639b4d05";
    let Err(ProvenanceError::Binding(m)) =
        verify_entry(ENTRY, Some(STATEMENT), other, &production())
    else {
        panic!("another digest must fail the binding");
    };
    assert!(
        m.starts_with("expected a statement subject with sha256 17e4b8c0"),
        "{m}"
    );
    assert!(m.contains("found 07e4b8c0"), "{m}");
}

#[test]
fn a_missing_or_altered_payload_is_not_bound() {
    let Err(ProvenanceError::Binding(m)) = verify_entry(ENTRY, None, DIGEST, &production()) else {
        panic!("no payload must fail the binding");
    };
    assert!(m.contains("found none"), "{m}");
    // The statement with its subject digest replaced by another: no longer the committed one.
    let forged = String::from_utf8(STATEMENT.to_vec())
        .unwrap()
        .replace("07e4b8c0", "17e4b8c0");
    let other = "sha256:17e4b8c0e3580b3e4a1eb62c70f1ffb86004d3d94f50767cb404fa7a639b4d05";
    let Err(ProvenanceError::Binding(m)) =
        verify_entry(ENTRY, Some(forged.as_bytes()), other, &production())
    else {
        panic!("a forged statement must fail the binding");
    };
    assert!(
        m.starts_with("expected a payload with the sha-256 the entry commits to (3f137e11"),
        "{m}"
    );
    let Err(ProvenanceError::Binding(m)) =
        verify_entry(ENTRY, Some(STATEMENT), "sha256:07E4", &production())
    else {
        panic!("a malformed digest must be refused");
    };
    assert!(
        m.starts_with("expected an image digest sha256:<64 lowercase hex>"),
        "{m}"
    );
}

#[test]
fn a_flipped_byte_in_the_signed_entry_timestamp_fails() {
    let mut v = entry();
    let set = inner(&mut v)["verification"]["signedEntryTimestamp"]
        .as_str()
        .unwrap()
        .to_string();
    inner(&mut v)["verification"]["signedEntryTimestamp"] = Value::from(flip_b64(&set, 40));
    let Err(ProvenanceError::SignedEntryTimestamp(m)) = verify(&v, &production()) else {
        panic!("a flipped set must fail step 3");
    };
    assert!(m.contains("does not verify"), "{m}");
}

#[test]
fn a_flipped_inclusion_proof_hash_fails() {
    let mut v = entry();
    let h = inner(&mut v)["verification"]["inclusionProof"]["hashes"][5]
        .as_str()
        .unwrap()
        .to_string();
    let mut raw = hex::decode(h).unwrap();
    raw[0] ^= 1;
    inner(&mut v)["verification"]["inclusionProof"]["hashes"][5] = Value::from(hex::encode(raw));
    let Err(ProvenanceError::InclusionProof(m)) = verify(&v, &production()) else {
        panic!("a flipped path hash must fail step 4");
    };
    assert!(
        m.starts_with("expected the path to lead to root hash 306ef9ef"),
        "{m}"
    );
}

#[test]
fn a_path_of_the_wrong_length_fails() {
    let mut v = entry();
    inner(&mut v)["verification"]["inclusionProof"]["hashes"]
        .as_array_mut()
        .unwrap()
        .pop();
    let Err(ProvenanceError::InclusionProof(m)) = verify(&v, &production()) else {
        panic!("a short path must fail step 4");
    };
    assert!(
        m.starts_with("expected a path of 20 hashes for leaf 91618298 of 91618299, found 19"),
        "{m}"
    );
}

#[test]
fn a_flipped_byte_in_the_checkpoint_signature_fails() {
    let mut v = entry();
    let cp = inner(&mut v)["verification"]["inclusionProof"]["checkpoint"]
        .as_str()
        .unwrap()
        .to_string();
    let (head, sig_line) = cp.trim_end().rsplit_once(' ').unwrap();
    let tampered = format!("{head} {}\n", flip_b64(sig_line, 20));
    inner(&mut v)["verification"]["inclusionProof"]["checkpoint"] = Value::from(tampered);
    let Err(ProvenanceError::Checkpoint(m)) = verify(&v, &production()) else {
        panic!("a flipped checkpoint signature must fail step 4");
    };
    assert!(
        m.contains("over the note, found one that does not verify"),
        "{m}"
    );
}

#[test]
fn a_wrong_log_id_fails() {
    let mut v = entry();
    inner(&mut v)["logID"] =
        Value::from("d0d23d6ad406973f9559f3ba2d1ca01f84147d8ffc5b8445c224f98b9591801d");
    let Err(ProvenanceError::UnknownLog { found, expected }) = verify(&v, &production()) else {
        panic!("an unknown log must fail step 2");
    };
    assert_eq!(
        found,
        "d0d23d6ad406973f9559f3ba2d1ca01f84147d8ffc5b8445c224f98b9591801d"
    );
    assert_eq!(
        expected,
        "c0d23d6ad406973f9559f3ba2d1ca01f84147d8ffc5b8445c224f98b9591801d"
    );
}

#[test]
fn a_uuid_that_is_not_the_entrys_fails() {
    let mut v = entry();
    let e = v.as_object_mut().unwrap().remove(UUID).unwrap();
    let other = format!("{}0", &UUID[..UUID.len() - 1]);
    v.as_object_mut().unwrap().insert(other, e);
    let Err(ProvenanceError::InclusionProof(m)) = verify(&v, &production()) else {
        panic!("another uuid must fail step 4");
    };
    assert!(
        m.starts_with("expected the entry's uuid to be its leaf hash"),
        "{m}"
    );
}

#[test]
fn a_certificate_from_another_ca_fails() {
    // The real Rekor key, but NVIDIA's device root as the only "Fulcio" CA.
    let rekor = include_str!("../anchors/sigstore/rekor.pem");
    let trust = SigstoreTrust::from_pem(NVIDIA_ROOT_PEM, rekor).unwrap();
    let Err(ProvenanceError::CertificateChain(m)) = verify(&entry(), &trust) else {
        panic!("a chain to another ca must fail step 6");
    };
    assert!(
        m.starts_with(
            "expected O=sigstore.dev, CN=sigstore-intermediate to be issued by a fulcio ca"
        ),
        "{m}"
    );
}

#[test]
fn malformed_answers_fail_at_parsing() {
    for (input, reason) in [
        ("[]", "expected an object keyed by uuid"),
        ("{}", "expected one entry keyed by its uuid, found 0"),
        ("not json", "expected json"),
    ] {
        let Err(ProvenanceError::Entry(m)) =
            verify_entry(input, Some(STATEMENT), DIGEST, &production())
        else {
            panic!("{input} must fail step 1");
        };
        assert!(m.starts_with(reason), "{m}");
    }
    let mut v = entry();
    inner(&mut v)
        .as_object_mut()
        .unwrap()
        .remove("verification");
    let Err(ProvenanceError::Entry(m)) = verify(&v, &production()) else {
        panic!("an entry without verification must fail step 1");
    };
    assert_eq!(m, "expected verification in the entry, found none");
}

/// A test Rekor key standing in for production's, so the real entry can be re-signed with one
/// thing changed.
struct TestLog {
    key: EcdsaKeyPair,
    id: [u8; 32],
    pem: String,
}

impl TestLog {
    fn new() -> Self {
        let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
        // The DER SubjectPublicKeyInfo of a P-256 key: the fixed prefix, then the point.
        let mut spki = hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200").unwrap();
        spki.extend_from_slice(key.public_key().as_ref());
        let pem = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            STANDARD.encode(&spki)
        );
        Self {
            id: log_id(&spki),
            key,
            pem,
        }
    }

    fn sign(&self, msg: &[u8]) -> Vec<u8> {
        self.key
            .sign(&SystemRandom::new(), msg)
            .unwrap()
            .as_ref()
            .to_vec()
    }

    fn trust(&self) -> SigstoreTrust {
        SigstoreTrust::from_pem(FULCIO_PEM, &self.pem).unwrap()
    }

    /// Re-signs the real entry at `integrated_time` with a checkpoint naming `tree_size` and
    /// `root` (the proof's own unless changed).
    fn resign(
        &self,
        integrated_time: i64,
        checkpoint_size: Option<u64>,
        checkpoint_root: Option<[u8; 32]>,
    ) -> Value {
        let mut v = entry();
        let e = inner(&mut v);
        let body = e["body"].as_str().unwrap().to_string();
        let index = e["logIndex"].as_i64().unwrap();
        let id_hex = hex::encode(self.id);
        e["logID"] = Value::from(id_hex.clone());
        e["integratedTime"] = Value::from(integrated_time);
        let set = self.sign(&set_payload(&body, integrated_time, &id_hex, index));
        e["verification"]["signedEntryTimestamp"] = Value::from(STANDARD.encode(set));
        let proof = &e["verification"]["inclusionProof"];
        let size = checkpoint_size.unwrap_or(proof["treeSize"].as_u64().unwrap());
        let root: [u8; 32] = checkpoint_root.unwrap_or_else(|| {
            hex::decode(proof["rootHash"].as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap()
        });
        let note = checkpoint_body("rekor.sigstore.dev - 2605736670972794746", size, &root);
        let mut sig = self.id[..4].to_vec();
        sig.extend(self.sign(note.as_bytes()));
        let cp = format!(
            "{note}\n\u{2014} rekor.sigstore.dev {}\n",
            STANDARD.encode(sig)
        );
        e["verification"]["inclusionProof"]["checkpoint"] = Value::from(cp);
        v
    }
}

#[test]
fn a_resigned_entry_verifies_with_its_test_key() {
    // The control for the tests below: re-signing alone changes nothing that matters.
    let log = TestLog::new();
    let v = log.resign(1716332177, None, None);
    assert_eq!(verify(&v, &log.trust()).unwrap().identity.subject, SUBJECT);
    // And the production key does not know the test log.
    assert!(matches!(
        verify(&v, &production()),
        Err(ProvenanceError::UnknownLog { .. })
    ));
}

#[test]
fn an_integrated_time_outside_the_leafs_validity_fails() {
    let log = TestLog::new();
    // The leaf is valid 2024-05-21 22:56:17 .. 23:06:17 UTC; one hour later it has expired.
    let v = log.resign(1716332177 + 3600, None, None);
    let Err(ProvenanceError::CertificateValidity(m)) = verify(&v, &log.trust()) else {
        panic!("a time after the leaf expired must fail step 6");
    };
    assert!(
        m.contains("within the signing certificate's validity"),
        "{m}"
    );
    assert!(m.contains("(1716335777)"), "{m}");
}

#[test]
fn a_checkpoint_naming_another_tree_fails() {
    let log = TestLog::new();
    let v = log.resign(1716332177, Some(91618300), None);
    let Err(ProvenanceError::Checkpoint(m)) = verify(&v, &log.trust()) else {
        panic!("a checkpoint of another size must fail step 4");
    };
    assert_eq!(m, "expected the proof's tree size 91618299, found 91618300");
    let v = log.resign(1716332177, None, Some([9; 32]));
    let Err(ProvenanceError::Checkpoint(m)) = verify(&v, &log.trust()) else {
        panic!("a checkpoint of another root must fail step 4");
    };
    assert!(
        m.starts_with("expected the proof's root hash 306ef9ef"),
        "{m}"
    );
}

#[test]
fn the_pinned_anchors_are_the_ones_provenance_md_names() {
    use sha2::{Digest, Sha256};
    // The SHA-256 of each DER block, as anchors/sigstore/PROVENANCE.md lists them.
    let ders: Vec<String> = x509_parser::pem::Pem::iter_from_buffer(FULCIO_PEM.as_bytes())
        .map(|p| hex::encode(Sha256::digest(p.unwrap().contents)))
        .collect();
    assert_eq!(
        ders,
        [
            "03a38ffb1f450100c2596d1d10b900ac4d504058006dda58199576bbeb9c73d0",
            "3ba7b6cc4e95469d4d334b49cb257ad8537076fa84b0ca87ff4ecfe6a54680c1",
            "15d795348226b4649f750f5802592c393bee7cc53c3b86982175b7ad087efe47",
        ]
    );
}
