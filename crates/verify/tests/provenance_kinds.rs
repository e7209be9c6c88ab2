//! The provenance verifier on the three body kinds container signers put in Rekor (`dsse`
//! 0.0.1, `intoto` 0.0.2, `hashedrekord` 0.0.1), built here with a test Fulcio CA (root,
//! intermediate, ten-minute leaf with Fulcio's identity extensions) and a test Rekor key, as
//! the simulator does through `[dangerous]`; and the body and identity failures a real vector
//! cannot show (a bare public key, an unsupported kind, a signature by another key, a leaf
//! without an issuer extension).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
    PKCS_ECDSA_P384_SHA384, PublicKeyData, SanType, SigningKey,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use teewatch_verify::provenance::{
    ProvenanceError, SigstoreTrust, checkpoint_body, dsse_pae, leaf_hash, log_id, node_hash,
    set_payload, verify_entry,
};

const DIGEST: &str = "sha256:5c99d8ed73711e9c33aeb592029fcb427c0595c0aa07edfd8165dbfb9a3b1206";
const ISSUER: &str = "https://token.actions.githubusercontent.com";
const WORKFLOW: &str = "https://github.com/org/image/.github/workflows/build.yml@refs/tags/v1";
/// 2025-01-01T00:05:00Z, inside the test leaf's ten minutes.
const LOGGED_AT: i64 = 1_735_689_900;

/// How the test leaf names its signer.
enum Who {
    /// The v2 issuer extension (DER UTF8String) and a URI SAN, as GitHub Actions' leaves.
    Workflow,
    /// The v1 issuer extension (raw string) and an e-mail SAN.
    Email,
    /// No issuer extension at all.
    NoIssuer,
}

struct TestSigstore {
    root_pem: String,
    intermediate_pem: String,
    intermediate: Issuer<'static, KeyPair>,
    rekor: KeyPair,
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "sigstore.dev");
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.not_before = rcgen::date_time_ymd(2024, 1, 1);
    p.not_after = rcgen::date_time_ymd(2030, 1, 1);
    p
}

impl TestSigstore {
    fn new() -> Self {
        let root_key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
        let root_params = ca_params("test-fulcio-root");
        let root = root_params.self_signed(&root_key).unwrap();
        let root_issuer = Issuer::new(root_params, root_key);
        let int_key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
        let int_params = ca_params("test-fulcio-intermediate");
        let int = int_params.signed_by(&int_key, &root_issuer).unwrap();
        Self {
            root_pem: root.pem(),
            intermediate_pem: int.pem(),
            intermediate: Issuer::new(int_params, int_key),
            rekor: KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap(),
        }
    }

    fn trust(&self) -> SigstoreTrust {
        let rekor_pem = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            STANDARD.encode(self.rekor.subject_public_key_info())
        );
        SigstoreTrust::from_pem(
            &format!("{}{}", self.root_pem, self.intermediate_pem),
            &rekor_pem,
        )
        .unwrap()
    }

    /// A ten-minute Fulcio-shaped leaf for `key`, PEM.
    fn leaf(&self, key: &KeyPair, who: Who) -> String {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name = DistinguishedName::new();
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.not_before = rcgen::date_time_ymd(2025, 1, 1);
        p.not_after = p.not_before + std::time::Duration::from_secs(600);
        match who {
            Who::Workflow => {
                p.subject_alt_names = vec![SanType::URI(WORKFLOW.try_into().unwrap())];
                let mut utf8 = vec![0x0c, ISSUER.len() as u8];
                utf8.extend_from_slice(ISSUER.as_bytes());
                p.custom_extensions = vec![CustomExtension::from_oid_content(
                    &[1, 3, 6, 1, 4, 1, 57264, 1, 8],
                    utf8,
                )];
            }
            Who::Email => {
                p.subject_alt_names =
                    vec![SanType::Rfc822Name("dev@example.com".try_into().unwrap())];
                p.custom_extensions = vec![CustomExtension::from_oid_content(
                    &[1, 3, 6, 1, 4, 1, 57264, 1, 1],
                    b"https://accounts.google.com".to_vec(),
                )];
            }
            Who::NoIssuer => {
                p.subject_alt_names = vec![SanType::URI(WORKFLOW.try_into().unwrap())];
            }
        }
        p.signed_by(key, &self.intermediate).unwrap().pem()
    }

    /// Rekor's answer for `body`, logged at `LOGGED_AT` as the second leaf of a two-leaf tree,
    /// with `attestation` stored beside it when given.
    fn entry(&self, body: &Value, attestation: Option<&[u8]>) -> String {
        let body_bytes = body.to_string().into_bytes();
        let body_b64 = STANDARD.encode(&body_bytes);
        let spki = self.rekor.subject_public_key_info();
        let id = log_id(&spki);
        let id_hex = hex::encode(id);
        let log_index = 7;
        let set = self
            .rekor
            .sign(&set_payload(&body_b64, LOGGED_AT, &id_hex, log_index))
            .unwrap();
        let sibling = leaf_hash(b"another entry");
        let leaf = leaf_hash(&body_bytes);
        let root = node_hash(&sibling, &leaf);
        let note = checkpoint_body("test-rekor - 1", 2, &root);
        let mut sig = id[..4].to_vec();
        sig.extend(self.rekor.sign(note.as_bytes()).unwrap());
        let checkpoint = format!("{note}\n\u{2014} test-rekor {}\n", STANDARD.encode(sig));
        let mut e = json!({
            "body": body_b64,
            "integratedTime": LOGGED_AT,
            "logID": id_hex,
            "logIndex": log_index,
            "verification": {
                "inclusionProof": {
                    "checkpoint": checkpoint,
                    "hashes": [hex::encode(sibling)],
                    "logIndex": 1,
                    "rootHash": hex::encode(root),
                    "treeSize": 2
                },
                "signedEntryTimestamp": STANDARD.encode(set)
            }
        });
        if let Some(a) = attestation {
            e["attestation"] = json!({ "data": STANDARD.encode(a) });
        }
        json!({ hex::encode(leaf): e }).to_string()
    }
}

fn statement(digest_hex: &str) -> Vec<u8> {
    json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{ "name": "ghcr.io/org/image", "digest": { "sha256": digest_hex } }],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {}
    })
    .to_string()
    .into_bytes()
}

fn simple_signing(digest: &str) -> Vec<u8> {
    json!({
        "critical": {
            "identity": { "docker-reference": "ghcr.io/org/image" },
            "image": { "docker-manifest-digest": digest },
            "type": "cosign container image signature"
        },
        "optional": null
    })
    .to_string()
    .into_bytes()
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn dsse_body(cert_pem: &str, sig: &[u8], payload: &[u8]) -> Value {
    json!({
        "apiVersion": "0.0.1",
        "kind": "dsse",
        "spec": {
            "envelopeHash": { "algorithm": "sha256", "value": "00".repeat(32) },
            "payloadHash": { "algorithm": "sha256", "value": sha256_hex(payload) },
            "signatures": [{ "signature": STANDARD.encode(sig), "verifier": STANDARD.encode(cert_pem) }]
        }
    })
}

fn hashedrekord_body(public_pem: &str, sig: &[u8], payload: &[u8]) -> Value {
    json!({
        "apiVersion": "0.0.1",
        "kind": "hashedrekord",
        "spec": {
            "data": { "hash": { "algorithm": "sha256", "value": sha256_hex(payload) } },
            "signature": { "content": STANDARD.encode(sig), "publicKey": { "content": STANDARD.encode(public_pem) } }
        }
    })
}

const IN_TOTO: &str = "application/vnd.in-toto+json";

#[test]
fn a_dsse_entry_verifies_and_names_the_workflow() {
    let s = TestSigstore::new();
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let payload = statement(&DIGEST[7..]);
    let sig = key.sign(&dsse_pae(IN_TOTO, &payload)).unwrap();
    let entry = s.entry(
        &dsse_body(&s.leaf(&key, Who::Workflow), &sig, &payload),
        None,
    );
    let v = verify_entry(&entry, Some(&payload), DIGEST, &s.trust()).unwrap();
    assert_eq!(v.identity.issuer, ISSUER);
    assert_eq!(v.identity.subject, WORKFLOW);
    assert_eq!((v.integrated_time, v.log_index), (LOGGED_AT, 7));
}

#[test]
fn an_intoto_entry_verifies_from_the_attestation_rekor_stored() {
    let s = TestSigstore::new();
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let payload = statement(&DIGEST[7..]);
    let sig = key.sign(&dsse_pae(IN_TOTO, &payload)).unwrap();
    let body = json!({
        "apiVersion": "0.0.2",
        "kind": "intoto",
        "spec": { "content": {
            "envelope": {
                "payloadType": IN_TOTO,
                "signatures": [{
                    // Rekor stores the envelope's base64 `sig` base64-encoded again.
                    "sig": STANDARD.encode(STANDARD.encode(&sig)),
                    "publicKey": STANDARD.encode(s.leaf(&key, Who::Workflow))
                }]
            },
            "hash": { "algorithm": "sha256", "value": "00".repeat(32) },
            "payloadHash": { "algorithm": "sha256", "value": sha256_hex(&payload) }
        }}
    });
    let entry = s.entry(&body, Some(&payload));
    let v = verify_entry(&entry, None, DIGEST, &s.trust()).unwrap();
    assert_eq!(v.identity.subject, WORKFLOW);
}

#[test]
fn a_hashedrekord_entry_verifies_with_the_simple_signing_payload() {
    let s = TestSigstore::new();
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let payload = simple_signing(DIGEST);
    let sig = key.sign(&payload).unwrap();
    let entry = s.entry(
        &hashedrekord_body(&s.leaf(&key, Who::Email), &sig, &payload),
        None,
    );
    let v = verify_entry(&entry, Some(&payload), DIGEST, &s.trust()).unwrap();
    // The v1 issuer extension and the e-mail SAN.
    assert_eq!(v.identity.issuer, "https://accounts.google.com");
    assert_eq!(v.identity.subject, "dev@example.com");
    // Another image's digest in a payload the same key signed and Rekor logged.
    let other = "sha256:6c99d8ed73711e9c33aeb592029fcb427c0595c0aa07edfd8165dbfb9a3b1206";
    let Err(ProvenanceError::Binding(m)) = verify_entry(&entry, Some(&payload), other, &s.trust())
    else {
        panic!("another digest must fail the binding");
    };
    assert_eq!(
        m,
        format!("expected docker-manifest-digest {other}, found {DIGEST}")
    );
}

#[test]
fn a_signature_by_another_key_is_not_bound() {
    let s = TestSigstore::new();
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let other = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let payload = statement(&DIGEST[7..]);
    let sig = other.sign(&dsse_pae(IN_TOTO, &payload)).unwrap();
    let entry = s.entry(
        &dsse_body(&s.leaf(&key, Who::Workflow), &sig, &payload),
        None,
    );
    let Err(ProvenanceError::Binding(m)) = verify_entry(&entry, Some(&payload), DIGEST, &s.trust())
    else {
        panic!("a signature by another key must fail step 8");
    };
    assert!(
        m.contains("(dsse 0.0.1) by the certificate's key, found one that does not verify"),
        "{m}"
    );
}

#[test]
fn a_bare_public_key_or_another_kind_fails_at_the_body() {
    let s = TestSigstore::new();
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let payload = simple_signing(DIGEST);
    let sig = key.sign(&payload).unwrap();
    let entry = s.entry(
        &hashedrekord_body(&key.public_key_pem(), &sig, &payload),
        None,
    );
    let Err(ProvenanceError::Body(m)) = verify_entry(&entry, Some(&payload), DIGEST, &s.trust())
    else {
        panic!("a key-signed entry has no identity: step 5");
    };
    assert_eq!(
        m,
        "expected spec.signature.publicKey.content to be a fulcio certificate, found a pem PUBLIC KEY block"
    );
    let entry = s.entry(
        &json!({"apiVersion": "0.0.1", "kind": "rekord", "spec": {}}),
        None,
    );
    let Err(ProvenanceError::Body(m)) = verify_entry(&entry, Some(&payload), DIGEST, &s.trust())
    else {
        panic!("an unsupported kind must fail step 5");
    };
    assert_eq!(
        m,
        "expected hashedrekord 0.0.1, dsse 0.0.1 or intoto 0.0.2, found rekord 0.0.1"
    );
}

#[test]
fn a_leaf_without_an_issuer_extension_fails_at_the_identity() {
    let s = TestSigstore::new();
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let payload = statement(&DIGEST[7..]);
    let sig = key.sign(&dsse_pae(IN_TOTO, &payload)).unwrap();
    let entry = s.entry(
        &dsse_body(&s.leaf(&key, Who::NoIssuer), &sig, &payload),
        None,
    );
    let Err(ProvenanceError::Identity(m)) =
        verify_entry(&entry, Some(&payload), DIGEST, &s.trust())
    else {
        panic!("no issuer extension must fail step 7");
    };
    assert!(
        m.starts_with("expected a fulcio oidc issuer extension"),
        "{m}"
    );
}

#[test]
fn a_leaf_of_another_test_ca_fails_the_chain() {
    let s = TestSigstore::new();
    let elsewhere = TestSigstore::new();
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let payload = statement(&DIGEST[7..]);
    let sig = key.sign(&dsse_pae(IN_TOTO, &payload)).unwrap();
    // Same names, other keys: the leaf's issuer name matches but its signature does not.
    let entry = s.entry(
        &dsse_body(&elsewhere.leaf(&key, Who::Workflow), &sig, &payload),
        None,
    );
    let Err(ProvenanceError::CertificateChain(m)) =
        verify_entry(&entry, Some(&payload), DIGEST, &s.trust())
    else {
        panic!("a leaf of another ca must fail step 6");
    };
    assert!(
        m.contains("found no ca of that name whose key signed it"),
        "{m}"
    );
}
