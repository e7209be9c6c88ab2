//! Step 3 of `verify_token`: proving the key that signed a token. The token's `kid` must name
//! exactly one JWK; that JWK's x5c leaf must be signed by a pinned NRAS intermediate (RSA
//! PKCS#1 or ECDSA, chosen by the certificate's signature-algorithm OID and the issuer key's
//! type and curve); intermediate and leaf must both be valid at the instant judged; and the
//! JWK's x and y must be the leaf's own P-384 key. No key is believed because the JWKS sent it.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::Value;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer as _;

use super::jws::ALG;
use super::{NrasError, describe, kind, time_text};
use crate::gpu::cert_signature::{
    Curve, Issuers, SignatureProblem, ec_curve, key_description, verify_issued_by,
};

/// A pinned intermediate: its DER bytes and their parse.
pub(super) struct Pinned<'a> {
    der: &'a [u8],
    cert: X509Certificate<'a>,
}

/// Step 3, the anchors: every pinned intermediate must parse.
pub(super) fn parse_anchors(ders: &[Vec<u8>]) -> Result<Vec<Pinned<'_>>, NrasError> {
    ders.iter()
        .enumerate()
        .map(|(index, der)| {
            X509Certificate::from_der(der)
                .map(|(_, cert)| Pinned { der, cert })
                .map_err(|e| NrasError::AnchorCertificate {
                    index,
                    reason: e.to_string(),
                })
        })
        .collect()
}

/// Step 3: finds `kid` in the JWKS and proves the key through its leaf certificate; returns the
/// P-384 point.
pub(super) fn resolve_key(
    token: &str,
    kid: &str,
    jwks: &Value,
    pinned: &[Pinned],
    now: i64,
) -> Result<Vec<u8>, NrasError> {
    let jwk = find_jwk(token, kid, jwks)?;
    let (x, y) = jwk_coordinates(kid, jwk)?;

    // The chain as sent: the leaf is read from it, and x5c[1] may select a pinned intermediate
    // by its exact bytes, but the issuer's key always comes from the pins.
    let x5c = x5c_certificates(kid, jwk.get("x5c"))?;
    let leaf_der = x5c.first().map(Vec::as_slice).unwrap_or_default();
    let leaf = X509Certificate::from_der(leaf_der)
        .map(|(_, cert)| cert)
        .map_err(|e| NrasError::X5cCertificate {
            kid: kid.to_string(),
            index: 0,
            reason: e.to_string(),
        })?;
    let issuer = pinned_issuer(kid, &leaf, x5c.get(1).map(Vec::as_slice), pinned)?;

    let (not_before, not_after) = window(issuer);
    if now < not_before || now > not_after {
        return Err(NrasError::IntermediateNotValidAt {
            subject: issuer.subject().to_string(),
            not_before: time_text(not_before),
            not_after: time_text(not_after),
            now: time_text(now),
        });
    }
    let (not_before, not_after) = window(&leaf);
    if now < not_before || now > not_after {
        return Err(NrasError::LeafNotValidAt {
            kid: kid.to_string(),
            not_before: time_text(not_before),
            not_after: time_text(not_after),
            now: time_text(now),
        });
    }

    let point = p384_point(&leaf).map_err(|found| NrasError::LeafKeyNotP384 {
        kid: kid.to_string(),
        found,
    })?;
    for (coordinate, range, jwk_value) in [("x", 1..49, &x), ("y", 49..97, &y)] {
        if point.get(range) != Some(jwk_value.as_slice()) {
            return Err(NrasError::JwkKeyMismatch {
                kid: kid.to_string(),
                coordinate,
            });
        }
    }
    Ok(point.to_vec())
}

/// The one JWK whose `kid` is `kid`.
fn find_jwk<'a>(token: &str, kid: &str, jwks: &'a Value) -> Result<&'a Value, NrasError> {
    let Some(keys) = jwks.get("keys").and_then(Value::as_array) else {
        return Err(NrasError::JwksShape(kind(jwks)));
    };
    let matching: Vec<&Value> = keys
        .iter()
        .filter(|k| k.get("kid").and_then(Value::as_str) == Some(kid))
        .collect();
    match matching.as_slice() {
        [] => Err(NrasError::UnknownKid {
            token: token.to_string(),
            kid: kid.to_string(),
        }),
        [jwk] => Ok(*jwk),
        _ => Err(NrasError::DuplicateKid {
            kid: kid.to_string(),
            count: matching.len(),
        }),
    }
}

/// The JWK's type, curve and algorithm checks, and its decoded x and y.
fn jwk_coordinates(kid: &str, jwk: &Value) -> Result<(Vec<u8>, Vec<u8>), NrasError> {
    let kty = jwk.get("kty");
    if kty.and_then(Value::as_str) != Some("EC") {
        return Err(NrasError::JwkKeyType {
            kid: kid.to_string(),
            found: describe(kty),
        });
    }
    let crv = jwk.get("crv");
    if crv.and_then(Value::as_str) != Some("P-384") {
        return Err(NrasError::JwkCurve {
            kid: kid.to_string(),
            found: describe(crv),
        });
    }
    if let Some(alg) = jwk.get("alg") {
        if alg.as_str() != Some(ALG) {
            return Err(NrasError::JwkAlg {
                kid: kid.to_string(),
                found: describe(Some(alg)),
            });
        }
    }
    Ok((
        jwk_coordinate(kid, "x", jwk.get("x"))?,
        jwk_coordinate(kid, "y", jwk.get("y"))?,
    ))
}

/// The pinned intermediate whose key verifies the leaf's signature. A pinned intermediate is a
/// candidate when the JWKS sent exactly it as x5c[1] or when the leaf names it as issuer; being
/// a candidate proves nothing until its own key verifies the leaf.
fn pinned_issuer<'p>(
    kid: &str,
    leaf: &X509Certificate,
    sent_intermediate: Option<&[u8]>,
    pinned: &'p [Pinned<'p>],
) -> Result<&'p X509Certificate<'p>, NrasError> {
    let candidates: Vec<&X509Certificate> = pinned
        .iter()
        .filter(|p| {
            sent_intermediate == Some(p.der) || p.cert.subject().as_raw() == leaf.issuer().as_raw()
        })
        .map(|p| &p.cert)
        .collect();
    let mut tried = Vec::new();
    for candidate in candidates {
        match verify_issued_by(leaf, candidate, Issuers::EcdsaOrRsa) {
            Ok(()) => return Ok(candidate),
            Err(SignatureProblem::Invalid) => tried.push(candidate.subject().to_string()),
            Err(SignatureProblem::UnsupportedAlgorithm(algorithm)) => {
                return Err(NrasError::UnsupportedCertSignature {
                    kid: kid.to_string(),
                    found: format!("signature algorithm {algorithm}"),
                });
            }
            Err(SignatureProblem::UnsupportedIssuerKey(key)) => {
                return Err(NrasError::UnsupportedCertSignature {
                    kid: kid.to_string(),
                    found: format!("an issuer key {key}"),
                });
            }
            Err(SignatureProblem::FieldsDisagree { outer, inner }) => {
                return Err(NrasError::CertSignatureAlgorithmMismatch {
                    kid: kid.to_string(),
                    outer,
                    inner,
                });
            }
        }
    }
    if tried.is_empty() {
        Err(NrasError::UntrustedIssuer {
            kid: kid.to_string(),
            issuer: leaf.issuer().to_string(),
        })
    } else {
        Err(NrasError::LeafSignatureInvalid {
            kid: kid.to_string(),
            issuer: tried.join("\", \""),
        })
    }
}

/// A certificate's validity window in unix seconds.
fn window(cert: &X509Certificate) -> (i64, i64) {
    let validity = cert.validity();
    (
        validity.not_before.timestamp(),
        validity.not_after.timestamp(),
    )
}

/// Decodes a JWK coordinate: base64url of exactly 48 bytes.
fn jwk_coordinate(
    kid: &str,
    coordinate: &'static str,
    value: Option<&Value>,
) -> Result<Vec<u8>, NrasError> {
    let error = |found: String| NrasError::JwkCoordinate {
        kid: kid.to_string(),
        coordinate,
        found,
    };
    let Some(text) = value.and_then(Value::as_str) else {
        return Err(error(describe(value)));
    };
    // RFC 7518 forbids padding, but a stray `=` changes nothing about the key, so it is dropped
    // rather than turned into a failure.
    let bytes = URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .map_err(|_| error("text that is not base64url".to_string()))?;
    if bytes.len() != 48 {
        return Err(error(format!("{} bytes", bytes.len())));
    }
    Ok(bytes)
}

/// Decodes the JWK's `x5c` list of standard-base64 DER certificates.
fn x5c_certificates(kid: &str, value: Option<&Value>) -> Result<Vec<Vec<u8>>, NrasError> {
    let Some(items) = value.and_then(Value::as_array).filter(|a| !a.is_empty()) else {
        return Err(NrasError::X5cMissing {
            kid: kid.to_string(),
            found: describe(value),
        });
    };
    items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            item.as_str()
                .and_then(|text| STANDARD.decode(text).ok())
                .ok_or_else(|| NrasError::X5cBase64 {
                    kid: kid.to_string(),
                    index,
                })
        })
        .collect()
}

/// The certificate's P-384 public key as an uncompressed point, or what it holds instead.
fn p384_point<'a>(cert: &'a X509Certificate) -> Result<&'a [u8], String> {
    let spki = cert.public_key();
    if ec_curve(spki) != Ok(Curve::P384) {
        return Err(key_description(spki));
    }
    let point: &[u8] = spki.subject_public_key.data.as_ref();
    if point.len() != 97 || point.first() != Some(&0x04) {
        return Err(format!(
            "a {}-byte point that is not uncompressed p-384",
            point.len()
        ));
    }
    Ok(point)
}
