//! The X.509 side of the device chain: that the leaf is an end-entity key for signing evidence,
//! each link's issuer name, CA role and key usage, each link's signature checked with the
//! issuer's key by the signature-algorithm OID and the key's curve, every certificate's validity
//! window, and the names error messages give certificates.

use x509_parser::certificate::X509Certificate;
use x509_parser::x509::X509Name;

use super::GpuEvidenceError;
pub(super) use crate::gpu::cert_signature::{
    Curve, OID_ECDSA_WITH_SHA256, OID_ECDSA_WITH_SHA384, ec_curve, key_description,
};
use crate::gpu::cert_signature::{Issuers, SignatureProblem, verify_issued_by};

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
    // NVIDIA's device chain is ECDSA throughout; the shared rule reads the algorithm from the
    // certificate and the curve from the issuer's key.
    match verify_issued_by(cert, issuer, Issuers::EcdsaOnly) {
        Ok(()) => Ok(()),
        Err(SignatureProblem::FieldsDisagree { outer, inner }) => {
            Err(GpuEvidenceError::SignatureAlgorithmMismatch {
                index,
                subject: describe(cert),
                outer,
                inner,
            })
        }
        Err(SignatureProblem::UnsupportedAlgorithm(found)) => {
            Err(GpuEvidenceError::UnsupportedSignatureAlgorithm {
                index,
                subject: describe(cert),
                found,
            })
        }
        Err(SignatureProblem::UnsupportedIssuerKey(found)) => {
            Err(GpuEvidenceError::UnsupportedIssuerKey {
                issuer: issuer_label.to_string(),
                found,
            })
        }
        Err(SignatureProblem::Invalid) => Err(GpuEvidenceError::LinkSignature {
            index,
            subject: describe(cert),
            issuer: issuer_label.to_string(),
        }),
    }
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
