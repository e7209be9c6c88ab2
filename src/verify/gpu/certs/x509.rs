//! The X.509 side of the device chain: that the leaf is an end-entity key for signing evidence,
//! each link's issuer name, CA role and key usage, each link's signature checked with the
//! issuer's key by the signature-algorithm OID and the key's curve, every certificate's validity
//! window, and the names error messages give certificates.

use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA384_ASN1, ECDSA_P384_SHA256_ASN1, ECDSA_P384_SHA384_ASN1,
    UnparsedPublicKey, VerificationAlgorithm,
};
use x509_parser::certificate::X509Certificate;
use x509_parser::x509::{SubjectPublicKeyInfo, X509Name};

use super::GpuEvidenceError;

/// ecdsa-with-SHA384, the signature algorithm of every NVIDIA device certificate.
pub(super) const OID_ECDSA_WITH_SHA384: &str = "1.2.840.10045.4.3.3";
/// ecdsa-with-SHA256, accepted so that chains with a P-256 issuer are read by the same rule.
pub(super) const OID_ECDSA_WITH_SHA256: &str = "1.2.840.10045.4.3.2";
/// id-ecPublicKey.
const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
/// The named curve secp384r1 (P-384).
const OID_CURVE_P384: &str = "1.3.132.0.34";
/// The named curve prime256v1 (P-256).
const OID_CURVE_P256: &str = "1.2.840.10045.3.1.7";

/// The leaf signs evidence, so it must not be a CA and, when it restricts its key usage, must
/// allow digital signatures. A chain that starts with a CA has lost its leaf (trustee's case 4).
pub(super) fn check_leaf_role(leaf: &X509Certificate<'_>) -> Result<(), GpuEvidenceError> {
    let extension_error = |e: x509_parser::error::X509Error| GpuEvidenceError::Extension {
        index: 0,
        subject: describe(leaf),
        reason: e.to_string().to_lowercase(),
    };
    if let Some(bc) = leaf.basic_constraints().map_err(extension_error)? {
        if bc.value.ca {
            return Err(GpuEvidenceError::LeafIsCa {
                subject: describe(leaf),
            });
        }
    }
    if let Some(ku) = leaf.key_usage().map_err(extension_error)? {
        if !ku.value.digital_signature() {
            return Err(GpuEvidenceError::LeafKeyUsage {
                subject: describe(leaf),
            });
        }
    }
    Ok(())
}

/// Checks each certificate of `linked` against its issuer: the next certificate, or the pinned
/// root for the last one.
pub(super) fn check_links(
    linked: &[X509Certificate<'_>],
    root: &X509Certificate<'_>,
    verify_signatures: bool,
) -> Result<(), GpuEvidenceError> {
    for (index, cert) in linked.iter().enumerate() {
        let (issuer, issuer_label) = match linked.get(index.saturating_add(1)) {
            Some(next) => (
                next,
                format!(
                    "certificate {} ({})",
                    index.saturating_add(1),
                    describe(next)
                ),
            ),
            None => (root, format!("the pinned root ({})", describe(root))),
        };

        // Names: RFC 5280 chains by name; NVIDIA's names are encoded identically on both sides,
        // so the DER bytes are compared exactly.
        if cert.issuer().as_raw() != issuer.subject().as_raw() {
            return Err(GpuEvidenceError::IssuerMismatch {
                index,
                subject: describe(cert),
                issuer: issuer_label,
                named_issuer: describe_name(cert.issuer()),
            });
        }

        // The issuer must be allowed to issue certificates.
        let extension_error = |e: x509_parser::error::X509Error| GpuEvidenceError::Extension {
            index: index.saturating_add(1),
            subject: describe(issuer),
            reason: e.to_string().to_lowercase(),
        };
        match issuer.basic_constraints().map_err(extension_error)? {
            Some(bc) if bc.value.ca => {}
            Some(_) => {
                return Err(GpuEvidenceError::IssuerNotCa {
                    index,
                    issuer: issuer_label,
                    found: "false",
                });
            }
            None => {
                return Err(GpuEvidenceError::IssuerNotCa {
                    index,
                    issuer: issuer_label,
                    found: "absent",
                });
            }
        }
        if let Some(ku) = issuer.key_usage().map_err(extension_error)? {
            if !ku.value.key_cert_sign() {
                return Err(GpuEvidenceError::IssuerKeyUsage {
                    index,
                    issuer: issuer_label,
                });
            }
        }

        if verify_signatures {
            verify_link(cert, index, issuer, &issuer_label)?;
        }
    }
    Ok(())
}

/// Verifies one certificate's signature with its issuer's key, choosing the algorithm from the
/// certificate's signature algorithm and the issuer key's curve.
fn verify_link(
    cert: &X509Certificate<'_>,
    index: usize,
    issuer: &X509Certificate<'_>,
    issuer_label: &str,
) -> Result<(), GpuEvidenceError> {
    let outer = cert.signature_algorithm.algorithm.to_id_string();
    let inner = cert.tbs_certificate.signature.algorithm.to_id_string();
    // The algorithm outside the signed part must repeat the one inside it, or the signature
    // would be judged by an algorithm the issuer never signed for.
    if cert.signature_algorithm != cert.tbs_certificate.signature {
        return Err(GpuEvidenceError::SignatureAlgorithmMismatch {
            index,
            subject: describe(cert),
            outer,
            inner,
        });
    }
    let hash = match outer.as_str() {
        OID_ECDSA_WITH_SHA384 => Hash::Sha384,
        OID_ECDSA_WITH_SHA256 => Hash::Sha256,
        _ => {
            return Err(GpuEvidenceError::UnsupportedSignatureAlgorithm {
                index,
                subject: describe(cert),
                found: outer,
            });
        }
    };
    let issuer_key = issuer.public_key();
    let curve = ec_curve(issuer_key).map_err(|found| GpuEvidenceError::UnsupportedIssuerKey {
        issuer: issuer_label.to_string(),
        found,
    })?;
    let algorithm: &'static dyn VerificationAlgorithm = match (curve, hash) {
        (Curve::P384, Hash::Sha384) => &ECDSA_P384_SHA384_ASN1,
        (Curve::P384, Hash::Sha256) => &ECDSA_P384_SHA256_ASN1,
        (Curve::P256, Hash::Sha256) => &ECDSA_P256_SHA256_ASN1,
        (Curve::P256, Hash::Sha384) => &ECDSA_P256_SHA384_ASN1,
    };
    UnparsedPublicKey::new(algorithm, issuer_key.subject_public_key.data.as_ref())
        .verify(
            cert.tbs_certificate.as_ref(),
            cert.signature_value.data.as_ref(),
        )
        .map_err(|_| GpuEvidenceError::LinkSignature {
            index,
            subject: describe(cert),
            issuer: issuer_label.to_string(),
        })
}

/// Checks notBefore ≤ now ≤ notAfter.
pub(super) fn check_validity(
    cert: &X509Certificate<'_>,
    index: Option<usize>,
    now: i64,
) -> Result<(), GpuEvidenceError> {
    let not_before = cert.validity().not_before.timestamp();
    let not_after = cert.validity().not_after.timestamp();
    if not_before <= now && now <= not_after {
        return Ok(());
    }
    let certificate = match index {
        Some(i) => format!("certificate {i} ({})", describe(cert)),
        None => format!("the pinned root ({})", describe(cert)),
    };
    Err(GpuEvidenceError::NotValid {
        index,
        certificate,
        at: format_time(now),
        not_before: format_time(not_before),
        not_after: format_time(not_after),
    })
}

/// The curves an issuer or leaf key may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Curve {
    P384,
    P256,
}

/// The hashes a certificate signature may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hash {
    Sha384,
    Sha256,
}

/// The named curve of an EC public key, or a description of what the key is instead.
pub(super) fn ec_curve(spki: &SubjectPublicKeyInfo<'_>) -> Result<Curve, String> {
    if spki.algorithm.algorithm.to_id_string() != OID_EC_PUBLIC_KEY {
        return Err(key_description(spki));
    }
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .map(|oid| oid.to_id_string());
    match curve.as_deref() {
        Some(OID_CURVE_P384) => Ok(Curve::P384),
        Some(OID_CURVE_P256) => Ok(Curve::P256),
        _ => Err(key_description(spki)),
    }
}

/// A short description of a public key's type for error messages.
pub(super) fn key_description(spki: &SubjectPublicKeyInfo<'_>) -> String {
    let algorithm = spki.algorithm.algorithm.to_id_string();
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .map(|oid| oid.to_id_string());
    match (algorithm.as_str(), curve.as_deref()) {
        (OID_EC_PUBLIC_KEY, Some(OID_CURVE_P384)) => "ecdsa p-384".to_string(),
        (OID_EC_PUBLIC_KEY, Some(OID_CURVE_P256)) => "ecdsa p-256".to_string(),
        (OID_EC_PUBLIC_KEY, Some(other)) => format!("ec curve {other}"),
        (OID_EC_PUBLIC_KEY, None) => "ec key without a named curve".to_string(),
        (other, _) => other.to_string(),
    }
}

/// A certificate's common name, or its whole subject when it has none.
pub(super) fn common_name(cert: &X509Certificate<'_>) -> String {
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| cert.subject().to_string())
}

/// "CN=…" for a certificate's subject, as error messages name certificates.
pub(super) fn describe(cert: &X509Certificate<'_>) -> String {
    describe_name(cert.subject())
}

/// "CN=…" for a name, or the whole name when it has no common name.
pub(super) fn describe_name(name: &X509Name<'_>) -> String {
    match name
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
    {
        Some(cn) => format!("CN={cn}"),
        None => name.to_string(),
    }
}

/// Unix seconds as RFC 3339 UTC, e.g. "2026-11-28T00:00:00Z".
fn format_time(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| format!("unix time {secs}"))
}
