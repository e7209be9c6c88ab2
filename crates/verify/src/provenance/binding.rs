//! Step 8 of [`super::verify_entry`], the binding to the image: Rekor's search index is an
//! unsigned lookup, so an entry found by digest proves nothing until its signed body is shown
//! to be about that digest. The body commits to the payload's SHA-256; the payload must hash to
//! it, carry a signature by the certificate's key (the body's signature, over the payload for
//! `hashedrekord`, over its DSSE pre-authentication encoding otherwise), and name the digest:
//! as a subject of an in-toto statement, or as cosign's `docker-manifest-digest`.

use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1, ECDSA_P384_SHA384_ASN1, UnparsedPublicKey};
use serde_json::Value;
use sha2::{Digest, Sha256};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use super::ProvenanceError;
use super::body::{Body, Kind};
use crate::gpu::cert_signature::{Curve, ec_curve};

/// The DSSE payload type of in-toto statements, the only DSSE payload bound to an image here.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

fn err(m: String) -> ProvenanceError {
    ProvenanceError::Binding(m)
}

/// DSSE's pre-authentication encoding: `DSSEv1 <len(type)> <type> <len(payload)> <payload>`,
/// the bytes a DSSE signature covers.
pub fn dsse_pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// The hex of a `sha256:<64 lowercase hex>` image digest.
fn digest_hex(image_digest: &str) -> Result<&str, ProvenanceError> {
    image_digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .ok_or_else(|| {
            err(format!(
                "expected an image digest sha256:<64 lowercase hex>, found {image_digest:?}"
            ))
        })
}

/// Whether a signed payload names `image_digest`: an in-toto statement (any `_type` under
/// `https://in-toto.io/Statement/`) with a subject whose `digest.sha256` is the digest, or
/// cosign's simple-signing JSON whose `critical.image.docker-manifest-digest` is it.
pub fn payload_names_digest(payload: &[u8], image_digest: &str) -> Result<(), ProvenanceError> {
    let hex = digest_hex(image_digest)?;
    let v: Value = serde_json::from_slice(payload)
        .map_err(|e| err(format!("expected the payload to be json, found {e}")))?;
    if let Some(t) = v.get("_type").and_then(Value::as_str) {
        if !t.starts_with("https://in-toto.io/Statement/") {
            return Err(err(format!(
                "expected an in-toto statement type, found {t}"
            )));
        }
        let subjects = v
            .get("subject")
            .and_then(Value::as_array)
            .ok_or_else(|| err("expected the statement's subject list, found none".into()))?;
        let digests: Vec<&str> = subjects
            .iter()
            .filter_map(|s| s.get("digest")?.get("sha256")?.as_str())
            .collect();
        if digests.contains(&hex) {
            return Ok(());
        }
        return Err(err(format!(
            "expected a statement subject with sha256 {hex}, found {}",
            if digests.is_empty() {
                "none".to_string()
            } else {
                digests.join(", ")
            }
        )));
    }
    if let Some(critical) = v.get("critical") {
        let found = critical
            .get("image")
            .and_then(|i| i.get("docker-manifest-digest"))
            .and_then(Value::as_str);
        return match found {
            Some(d) if d == image_digest => Ok(()),
            Some(d) => Err(err(format!(
                "expected docker-manifest-digest {image_digest}, found {d}"
            ))),
            None => Err(err(
                "expected critical.image.docker-manifest-digest in the simple-signing payload, found none".into(),
            )),
        };
    }
    Err(err(
        "expected an in-toto statement or a cosign simple-signing payload, found other json".into(),
    ))
}

/// Step 8: the payload is the one the body commits to, signed by the certificate's key, and
/// names the image.
pub(crate) fn verify(
    body: &Body,
    payload: &[u8],
    image_digest: &str,
) -> Result<(), ProvenanceError> {
    digest_hex(image_digest)?;
    let hash: [u8; 32] = Sha256::digest(payload).into();
    if hash != body.payload_hash {
        return Err(err(format!(
            "expected a payload with the sha-256 the entry commits to ({}), found one hashing to {}",
            hex::encode(body.payload_hash),
            hex::encode(hash)
        )));
    }
    let signed = match body.kind {
        Kind::HashedRekord => payload.to_vec(),
        Kind::Dsse | Kind::Intoto => {
            let payload_type = body.payload_type.as_deref().unwrap_or(IN_TOTO_PAYLOAD_TYPE);
            if payload_type != IN_TOTO_PAYLOAD_TYPE {
                return Err(err(format!(
                    "expected payload type {IN_TOTO_PAYLOAD_TYPE}, found {payload_type}"
                )));
            }
            dsse_pae(payload_type, payload)
        }
    };
    let (_, leaf) = X509Certificate::from_der(&body.certificate_der)
        .map_err(|e| err(format!("expected the signing certificate, found {e}")))?;
    let spki = leaf.public_key();
    let algorithm = match ec_curve(spki) {
        Ok(Curve::P256) => &ECDSA_P256_SHA256_ASN1,
        Ok(Curve::P384) => &ECDSA_P384_SHA384_ASN1,
        Err(other) => {
            return Err(err(format!(
                "expected an ecdsa p-256 or p-384 signing key, found {other}"
            )));
        }
    };
    UnparsedPublicKey::new(algorithm, spki.subject_public_key.data.as_ref())
        .verify(&signed, &body.signature)
        .map_err(|_| {
            err(format!(
                "expected the entry's signature over the payload ({}) by the certificate's key, found one that does not verify",
                body.kind.name()
            ))
        })?;
    payload_names_digest(payload, image_digest)
}
