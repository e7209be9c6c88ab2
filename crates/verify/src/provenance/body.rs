//! Step 5 of [`super::verify_entry`]: the entry body's kind and what it commits to. Supported
//! are the kinds Sigstore's signers put in Rekor for container images: `dsse` 0.0.1 (GitHub's
//! attest-build-provenance, `cosign attest` today), `intoto` 0.0.2 (older `cosign attest`) and
//! `hashedrekord` 0.0.1 (`cosign sign`). Each names a signing certificate, a signature and the
//! SHA-256 of the signed payload.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};

use super::ProvenanceError;

/// The body kinds this module verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `hashedrekord` 0.0.1: a signature over the payload's bytes.
    HashedRekord,
    /// `dsse` 0.0.1: a DSSE envelope's signature over PAE(type, payload).
    Dsse,
    /// `intoto` 0.0.2: the same, in the older in-toto kind.
    Intoto,
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::HashedRekord => "hashedrekord 0.0.1",
            Kind::Dsse => "dsse 0.0.1",
            Kind::Intoto => "intoto 0.0.2",
        }
    }
}

/// What a body commits to.
#[derive(Debug, Clone)]
pub(crate) struct Body {
    pub(crate) kind: Kind,
    /// The signing certificate (DER).
    pub(crate) certificate_der: Vec<u8>,
    /// The signature (ASN.1 DER ECDSA) over the payload or its PAE.
    pub(crate) signature: Vec<u8>,
    /// The SHA-256 of the payload.
    pub(crate) payload_hash: [u8; 32],
    /// The DSSE payload type where the body records it (intoto); dsse bodies do not, and the
    /// in-toto type is the only one this module binds to an image.
    pub(crate) payload_type: Option<String>,
}

fn err(m: String) -> ProvenanceError {
    ProvenanceError::Body(m)
}

fn get<'a>(v: &'a Value, path: &[&str]) -> Result<&'a Value, ProvenanceError> {
    let mut cur = v;
    for (i, key) in path.iter().enumerate() {
        cur = cur.get(key).ok_or_else(|| {
            err(format!(
                "expected {} in the body, found none",
                path.get(..=i).unwrap_or_default().join(".")
            ))
        })?;
    }
    Ok(cur)
}

fn get_str<'a>(v: &'a Value, path: &[&str]) -> Result<&'a str, ProvenanceError> {
    let found = get(v, path)?;
    found.as_str().ok_or_else(|| {
        err(format!(
            "expected {} to be a string, found {found}",
            path.join(".")
        ))
    })
}

/// A `{algorithm, value}` hash that must be SHA-256.
fn sha256_of(v: &Value, path: &[&str]) -> Result<[u8; 32], ProvenanceError> {
    let mut alg_path = path.to_vec();
    alg_path.push("algorithm");
    let alg = get_str(v, &alg_path)?;
    if alg != "sha256" {
        return Err(err(format!(
            "expected {} to be sha256, found {alg}",
            alg_path.join(".")
        )));
    }
    let mut val_path = path.to_vec();
    val_path.push("value");
    let value = get_str(v, &val_path)?;
    hex::decode(value)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| {
            err(format!(
                "expected {} as 64 hex digits, found {value:?}",
                val_path.join(".")
            ))
        })
}

/// A certificate as a body holds it: base64 of its PEM text.
fn certificate(b64_pem: &str, what: &str) -> Result<Vec<u8>, ProvenanceError> {
    let pem = STANDARD
        .decode(b64_pem)
        .map_err(|e| err(format!("expected {what} as base64 pem, found {e}")))?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem)
        .map_err(|e| err(format!("expected {what} as a pem certificate, found {e}")))?;
    if pem.label != "CERTIFICATE" {
        // `cosign sign --key` logs a bare public key: no certificate, so no identity to judge.
        return Err(err(format!(
            "expected {what} to be a fulcio certificate, found a pem {} block",
            pem.label
        )));
    }
    Ok(pem.contents)
}

fn base64_field(text: &str, what: &str) -> Result<Vec<u8>, ProvenanceError> {
    STANDARD
        .decode(text)
        .map_err(|e| err(format!("expected {what} as base64, found {e}")))
}

/// The one signature of a DSSE-style signature list.
fn only_signature<'a>(
    list: &'a Value,
    path: &str,
) -> Result<&'a Map<String, Value>, ProvenanceError> {
    let items = list
        .as_array()
        .ok_or_else(|| err(format!("expected {path} to be an array, found {list}")))?;
    match items.as_slice() {
        [one] => one
            .as_object()
            .ok_or_else(|| err(format!("expected {path}[0] to be an object, found {one}"))),
        _ => Err(err(format!(
            "expected one signature in {path}, found {}",
            items.len()
        ))),
    }
}

fn map_str<'a>(
    m: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<&'a str, ProvenanceError> {
    m.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| err(format!("expected {path}.{key} as a string, found none")))
}

/// Reads the body's kind and commitments.
pub(crate) fn parse(body: &[u8]) -> Result<Body, ProvenanceError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| err(format!("expected json, found {e}")))?;
    let kind = get_str(&v, &["kind"])?;
    let version = get_str(&v, &["apiVersion"])?;
    match (kind, version) {
        ("hashedrekord", "0.0.1") => Ok(Body {
            kind: Kind::HashedRekord,
            certificate_der: certificate(
                get_str(&v, &["spec", "signature", "publicKey", "content"])?,
                "spec.signature.publicKey.content",
            )?,
            signature: base64_field(
                get_str(&v, &["spec", "signature", "content"])?,
                "spec.signature.content",
            )?,
            payload_hash: sha256_of(&v, &["spec", "data", "hash"])?,
            payload_type: None,
        }),
        ("dsse", "0.0.1") => {
            let sig = only_signature(get(&v, &["spec", "signatures"])?, "spec.signatures")?;
            Ok(Body {
                kind: Kind::Dsse,
                certificate_der: certificate(
                    map_str(sig, "verifier", "spec.signatures[0]")?,
                    "spec.signatures[0].verifier",
                )?,
                signature: base64_field(
                    map_str(sig, "signature", "spec.signatures[0]")?,
                    "spec.signatures[0].signature",
                )?,
                payload_hash: sha256_of(&v, &["spec", "payloadHash"])?,
                payload_type: None,
            })
        }
        ("intoto", "0.0.2") => {
            let path = "spec.content.envelope.signatures";
            let sig = only_signature(
                get(&v, &["spec", "content", "envelope", "signatures"])?,
                path,
            )?;
            // Rekor stores the envelope's `sig` (itself base64 text) base64-encoded once more.
            let once = base64_field(map_str(sig, "sig", path)?, "the envelope signature")?;
            let signature = std::str::from_utf8(&once)
                .ok()
                .and_then(|text| STANDARD.decode(text).ok())
                .ok_or_else(|| {
                    err(format!(
                        "expected {path}[0].sig to hold the envelope's base64 signature, base64-encoded, found other bytes"
                    ))
                })?;
            Ok(Body {
                kind: Kind::Intoto,
                certificate_der: certificate(
                    map_str(sig, "publicKey", path)?,
                    "the envelope signature's publicKey",
                )?,
                signature,
                payload_hash: sha256_of(&v, &["spec", "content", "payloadHash"])?,
                payload_type: Some(
                    get_str(&v, &["spec", "content", "envelope", "payloadType"])?.to_string(),
                ),
            })
        }
        (kind, version) => Err(err(format!(
            "expected hashedrekord 0.0.1, dsse 0.0.1 or intoto 0.0.2, found {kind} {version}"
        ))),
    }
}
