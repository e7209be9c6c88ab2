//! The simulator's container provenance (`SimOptions::provenance`): a compose that lists one
//! image per `image_provenance` case, a test Fulcio that certifies the workflows signing them and
//! a test Rekor that logs the signatures.
//!
//! Each image is in-toto-attested as GitHub's `attest-build-provenance` and `cosign attest` do:
//! an in-toto statement naming the image digest as its subject, in a DSSE envelope signed with a
//! Fulcio leaf's key, logged as an `intoto` 0.0.2 entry with the statement kept as its
//! attestation. The cases:
//! - `app`: signed by the workflow the written configuration allows (passes);
//! - `forked`: signed by another repository's workflow (fails: another identity);
//! - `broken`: signed as expected, but its served inclusion proof has a flipped hash (fails);
//! - `unsigned`: no entry at all (`unknown`, or fails when provenance is required);
//! - `tagged`: referenced by tag, not digest (fails: unpinned image);
//!
//! and three logged as GitHub's `attest-build-provenance` does today, `dsse` 0.0.1 entries whose
//! body commits only to the statement's hash, the statement published by the simulated GitHub
//! attestations API (for the user account `teewatch-sim`: its org lookup answers 404):
//! - `attested`: signed by the expected workflow, its bundle published (passes);
//! - `mislabeled`: its entry and published statement name another digest (fails: the binding);
//! - `unpublished`: signed as expected, but nothing published (`unknown`: no payload).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::fulcio::{FulcioError, FulcioTestCa};
use super::rekor::{LogInput, RekorSimError, RekorTestLog};
use teewatch_verify::hexutil;

/// The OIDC issuer of every simulated signing identity.
pub const ISSUER: &str = "https://token.actions.githubusercontent.com";
/// The workflow the written configuration allows for every simulated image.
pub const EXPECTED_SUBJECT: &str =
    "https://github.com/teewatch-sim/app/.github/workflows/release.yml@refs/heads/main";
/// Another repository's workflow, which signed `forked`.
pub const OTHER_SUBJECT: &str =
    "https://github.com/someone-else/app/.github/workflows/release.yml@refs/heads/main";
/// The registry namespace of the simulated images.
pub const REGISTRY: &str = "ghcr.io/teewatch-sim";

/// The in-toto payload type of a DSSE envelope, as the verifier expects it.
const IN_TOTO: &str = teewatch_verify::provenance::IN_TOTO_PAYLOAD_TYPE;

/// One `image_provenance` case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    Signed,
    OtherIdentity,
    BrokenProof,
    Unsigned,
    ByTag,
    /// A `dsse` entry whose payload the attestations API publishes.
    DsseAttested,
    /// A `dsse` entry whose (published) statement names another digest.
    DsseOtherDigest,
    /// A `dsse` entry whose payload is published nowhere.
    DsseUnpublished,
}

impl Case {
    pub const ALL: [Case; 8] = [
        Case::Signed,
        Case::OtherIdentity,
        Case::BrokenProof,
        Case::Unsigned,
        Case::ByTag,
        Case::DsseAttested,
        Case::DsseOtherDigest,
        Case::DsseUnpublished,
    ];

    /// The image's name in the registry.
    pub fn name(self) -> &'static str {
        match self {
            Case::Signed => "app",
            Case::OtherIdentity => "forked",
            Case::BrokenProof => "broken",
            Case::Unsigned => "unsigned",
            Case::ByTag => "tagged",
            Case::DsseAttested => "attested",
            Case::DsseOtherDigest => "mislabeled",
            Case::DsseUnpublished => "unpublished",
        }
    }

    /// `ghcr.io/teewatch-sim/<name>`.
    pub fn repository(self) -> String {
        format!("{REGISTRY}/{}", self.name())
    }

    /// The image's digest, the same at every start.
    pub fn digest(self) -> [u8; 32] {
        Sha256::digest(format!("teewatch-sim/image/{}", self.name()).as_bytes()).into()
    }

    /// Whether it is logged as a `dsse` entry (payload from the attestations API).
    pub fn is_dsse(self) -> bool {
        matches!(
            self,
            Case::DsseAttested | Case::DsseOtherDigest | Case::DsseUnpublished
        )
    }

    /// The digest its signed statement names: its own, except `mislabeled`'s.
    pub fn statement_digest(self) -> [u8; 32] {
        match self {
            Case::DsseOtherDigest => Sha256::digest(b"teewatch-sim/image/another").into(),
            _ => self.digest(),
        }
    }

    /// `sha256:<hex>`.
    pub fn digest_text(self) -> String {
        format!("sha256:{}", hexutil::lower(&self.digest()))
    }

    /// The reference the compose names: by digest, except the by-tag case.
    pub fn reference(self) -> String {
        match self {
            Case::ByTag => format!("{}:latest", self.repository()),
            _ => format!("{}@{}", self.repository(), self.digest_text()),
        }
    }

    /// The scope of its `image_provenance` check.
    pub fn scope(self) -> String {
        format!("image:{}", self.reference())
    }
}

/// The compose YAML that runs every case's image.
pub fn compose_yaml() -> String {
    let mut yaml = String::from("services:\n");
    for case in Case::ALL {
        yaml.push_str(&format!(
            "  {}:\n    image: {}\n",
            case.name(),
            case.reference()
        ));
    }
    yaml
}

/// The dstack `app_compose` of a model named `name` running [`compose_yaml`].
pub fn app_compose(name: &str) -> String {
    json!({
        "manifest_version": 2,
        "name": name,
        "runner": "docker-compose",
        "docker_compose_file": compose_yaml(),
        "kms_enabled": true,
    })
    .to_string()
}

/// Why the test Sigstore could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SigstoreSimError {
    #[error(transparent)]
    Fulcio(#[from] FulcioError),
    #[error(transparent)]
    Rekor(#[from] RekorSimError),
    #[error("signing the dsse envelope failed")]
    Sign,
}

/// The test Fulcio and Rekor, with every case logged, and the Sigstore bundles the simulated
/// GitHub attestations API publishes (by image digest).
pub struct SigstoreSim {
    pub fulcio: FulcioTestCa,
    pub rekor: RekorTestLog,
    bundles: BTreeMap<String, serde_json::Value>,
    attestation_requests: AtomicUsize,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// An SLSA provenance statement about one image, built by `subject`'s workflow.
fn statement(case: Case, subject: &str) -> Vec<u8> {
    json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{
            "name": case.repository(),
            "digest": { "sha256": hexutil::lower(&case.statement_digest()) },
        }],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {
            "buildDefinition": {
                "buildType": "https://actions.github.io/buildtypes/workflow/v1",
                "externalParameters": { "workflow": { "ref": "refs/heads/main", "path": ".github/workflows/release.yml" } },
                "resolvedDependencies": [],
            },
            "runDetails": { "builder": { "id": subject } },
        },
    })
    .to_string()
    .into_bytes()
}

/// The canonical `intoto` 0.0.2 body Rekor stores for a signed statement (the envelope without
/// its payload; the signature and the certificate base64-encoded once more, as Rekor does).
fn intoto_body(payload: &[u8], signature: &[u8], certificate_pem: &str) -> String {
    let sig = b64(signature);
    let public_key = b64(certificate_pem.as_bytes());
    let envelope_hash = Sha256::digest(
        json!({
            "payload": b64(payload),
            "payloadType": IN_TOTO,
            "signatures": [{ "publicKey": public_key, "sig": sig }],
        })
        .to_string()
        .as_bytes(),
    );
    // Members written in sorted order, so the text is canonical with or without serde_json's
    // order-preserving maps.
    json!({
        "apiVersion": "0.0.2",
        "kind": "intoto",
        "spec": {
            "content": {
                "envelope": {
                    "payloadType": IN_TOTO,
                    "signatures": [{ "publicKey": public_key, "sig": b64(sig.as_bytes()) }],
                },
                "hash": { "algorithm": "sha256", "value": hexutil::lower(&envelope_hash) },
                "payloadHash": { "algorithm": "sha256", "value": hexutil::lower(&Sha256::digest(payload)) },
            },
        },
    })
    .to_string()
}

/// The canonical `dsse` 0.0.1 body Rekor stores: the envelope's and the payload's hashes and
/// the signature with its certificate (base64 PEM), not the payload.
fn dsse_body(
    envelope: &serde_json::Value,
    payload: &[u8],
    signature: &[u8],
    certificate_pem: &str,
) -> String {
    json!({
        "apiVersion": "0.0.1",
        "kind": "dsse",
        "spec": {
            "envelopeHash": { "algorithm": "sha256", "value": hexutil::lower(&Sha256::digest(envelope.to_string().as_bytes())) },
            "payloadHash": { "algorithm": "sha256", "value": hexutil::lower(&Sha256::digest(payload)) },
            "signatures": [{ "signature": b64(signature), "verifier": b64(certificate_pem.as_bytes()) }],
        },
    })
    .to_string()
}

/// The base64 DER of a PEM certificate (its body lines joined), as a Sigstore bundle's
/// `rawBytes` holds it.
fn pem_body(pem: &str) -> String {
    pem.lines().filter(|l| !l.starts_with("-----")).collect()
}

/// The owner of the simulated images on GitHub (`ghcr.io/teewatch-sim/…`).
pub const OWNER: &str = "teewatch-sim";

impl SigstoreSim {
    /// Signs and logs every case that has an entry, an hour before `now`, between filler
    /// entries so that the tree and its proofs are not trivial.
    pub fn generate(now: DateTime<Utc>) -> Result<SigstoreSim, SigstoreSimError> {
        let fulcio = FulcioTestCa::generate(now)?;
        let signed_at = now - Duration::hours(1);
        let mut inputs = Vec::new();
        let mut bundles = BTreeMap::new();
        for (i, case) in Case::ALL.into_iter().enumerate() {
            // A filler before each case: other projects' entries in the same log.
            inputs.push(LogInput {
                body: json!({"apiVersion": "0.0.1", "kind": "filler", "spec": {"n": i}})
                    .to_string(),
                integrated_time: signed_at.timestamp() - 60,
                attestation: None,
                indexed_under: Vec::new(),
                break_proof: false,
            });
            let subject = match case {
                Case::Unsigned | Case::ByTag => continue,
                Case::OtherIdentity => OTHER_SUBJECT,
                Case::Signed
                | Case::BrokenProof
                | Case::DsseAttested
                | Case::DsseOtherDigest
                | Case::DsseUnpublished => EXPECTED_SUBJECT,
            };
            let leaf = fulcio.issue(ISSUER, subject, signed_at)?;
            let payload = statement(case, subject);
            let signature = leaf
                .key
                .sign(
                    &aws_lc_rs::rand::SystemRandom::new(),
                    &teewatch_verify::provenance::dsse_pae(IN_TOTO, &payload),
                )
                .map_err(|_| SigstoreSimError::Sign)?;
            if case.is_dsse() {
                // As GitHub's attest-build-provenance: the envelope goes to the attestations
                // API in a Sigstore bundle; Rekor keeps only hashes of it.
                let envelope = json!({
                    "payload": b64(&payload),
                    "payloadType": IN_TOTO,
                    "signatures": [{ "sig": b64(signature.as_ref()), "keyid": "" }],
                });
                inputs.push(LogInput {
                    body: dsse_body(&envelope, &payload, signature.as_ref(), &leaf.pem),
                    integrated_time: signed_at.timestamp(),
                    attestation: None,
                    indexed_under: vec![case.digest_text()],
                    break_proof: false,
                });
                if case != Case::DsseUnpublished {
                    bundles.insert(
                        case.digest_text(),
                        json!({
                            "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
                            "verificationMaterial": { "certificate": { "rawBytes": pem_body(&leaf.pem) } },
                            "dsseEnvelope": envelope,
                        }),
                    );
                }
                continue;
            }
            inputs.push(LogInput {
                body: intoto_body(&payload, signature.as_ref(), &leaf.pem),
                integrated_time: signed_at.timestamp(),
                attestation: Some(payload),
                indexed_under: vec![case.digest_text()],
                break_proof: case == Case::BrokenProof,
            });
        }
        Ok(SigstoreSim {
            fulcio,
            rekor: RekorTestLog::build(inputs)?,
            bundles,
            attestation_requests: AtomicUsize::new(0),
        })
    }

    /// GitHub's attestations API answer for `/{kind}/{owner}/attestations/{digest}`: only the
    /// user account's list knows the simulated images (an org lookup is 404, as for any user),
    /// and a digest with nothing published is 404.
    pub fn attestations(&self, kind: &str, owner: &str, digest: &str) -> Option<serde_json::Value> {
        self.attestation_requests.fetch_add(1, Ordering::Relaxed);
        if kind != "users" || !owner.eq_ignore_ascii_case(OWNER) {
            return None;
        }
        let bundle = self.bundles.get(&digest.to_ascii_lowercase())?;
        Some(json!({ "attestations": [{ "bundle": bundle, "repository_id": 1 }] }))
    }

    /// How many attestations API requests were answered since the start.
    pub fn attestation_requests(&self) -> usize {
        self.attestation_requests.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_compose_names_every_case_and_only_signed_cases_are_indexed() {
        let images = teewatch_verify::images::app_compose_images(&app_compose("m")).unwrap();
        let expected: Vec<String> = Case::ALL.iter().map(|c| c.reference()).collect();
        assert_eq!(images, expected);
        let sim = SigstoreSim::generate(Utc::now()).unwrap();
        for case in Case::ALL {
            let found = sim.rekor.retrieve(&case.digest_text()).len();
            let signed = !matches!(case, Case::Unsigned | Case::ByTag);
            assert_eq!(found, usize::from(signed), "{case:?}");
        }
    }
}
