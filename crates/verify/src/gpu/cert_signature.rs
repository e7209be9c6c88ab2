//! Certificate signatures, shared by the GPU device chain and the NRAS key chain: reading an
//! issuer key's type and curve, and checking that a certificate was signed by an issuer with the
//! algorithm its signature-algorithm OID names.

use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA384_ASN1, ECDSA_P384_SHA256_ASN1, ECDSA_P384_SHA384_ASN1,
    RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_2048_8192_SHA384, RSA_PKCS1_2048_8192_SHA512,
    UnparsedPublicKey, VerificationAlgorithm,
};
use x509_parser::certificate::X509Certificate;
use x509_parser::x509::SubjectPublicKeyInfo;

/// ecdsa-with-SHA384, the signature algorithm of every NVIDIA device certificate.
pub(crate) const OID_ECDSA_WITH_SHA384: &str = "1.2.840.10045.4.3.3";
/// ecdsa-with-SHA256.
pub(crate) const OID_ECDSA_WITH_SHA256: &str = "1.2.840.10045.4.3.2";
/// sha256/384/512WithRSAEncryption (NVIDIA's NRAS intermediate signs its leaves with SHA-256).
const OID_SHA256_WITH_RSA: &str = "1.2.840.113549.1.1.11";
const OID_SHA384_WITH_RSA: &str = "1.2.840.113549.1.1.12";
const OID_SHA512_WITH_RSA: &str = "1.2.840.113549.1.1.13";
/// rsaEncryption and id-ecPublicKey key types, and the named curves P-384 and P-256.
const OID_RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";
const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_CURVE_P384: &str = "1.3.132.0.34";
const OID_CURVE_P256: &str = "1.2.840.10045.3.1.7";

/// The curves an EC key may use here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Curve {
    P384,
    P256,
}

fn curve_oid(spki: &SubjectPublicKeyInfo<'_>) -> Option<String> {
    spki.algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .map(|oid| oid.to_id_string())
}

/// The named curve of an EC public key, or a description of what the key is instead.
pub(crate) fn ec_curve(spki: &SubjectPublicKeyInfo<'_>) -> Result<Curve, String> {
    if spki.algorithm.algorithm.to_id_string() != OID_EC_PUBLIC_KEY {
        return Err(key_description(spki));
    }
    match curve_oid(spki).as_deref() {
        Some(OID_CURVE_P384) => Ok(Curve::P384),
        Some(OID_CURVE_P256) => Ok(Curve::P256),
        _ => Err(key_description(spki)),
    }
}

/// A short description of a public key's type for error messages.
pub(crate) fn key_description(spki: &SubjectPublicKeyInfo<'_>) -> String {
    let algorithm = spki.algorithm.algorithm.to_id_string();
    match (algorithm.as_str(), curve_oid(spki).as_deref()) {
        (OID_EC_PUBLIC_KEY, Some(OID_CURVE_P384)) => "ecdsa p-384".to_string(),
        (OID_EC_PUBLIC_KEY, Some(OID_CURVE_P256)) => "ecdsa p-256".to_string(),
        (OID_EC_PUBLIC_KEY, Some(other)) => format!("ec curve {other}"),
        (OID_EC_PUBLIC_KEY, None) => "ec key without a named curve".to_string(),
        (OID_RSA_ENCRYPTION, _) => "rsa".to_string(),
        (other, _) => other.to_string(),
    }
}

/// Why a certificate's signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SignatureProblem {
    /// The outer and inner signature-algorithm fields differ: the signature would be judged by an
    /// algorithm the issuer never signed for.
    FieldsDisagree { outer: String, inner: String },
    /// The signature algorithm (by OID) is not one this chain accepts.
    UnsupportedAlgorithm(String),
    /// The algorithm is accepted but the issuer's key cannot verify it (described).
    UnsupportedIssuerKey(String),
    /// The signature does not verify with the issuer's key.
    Invalid,
}

/// Whether a chain accepts issuers that sign with RSA (NRAS's intermediate does; NVIDIA's device
/// chain is ECDSA throughout).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Issuers {
    EcdsaOnly,
    EcdsaOrRsa,
}

/// Verifies that `issuer`'s key signed `cert`, with the algorithm `cert` names.
pub(crate) fn verify_issued_by(
    cert: &X509Certificate<'_>,
    issuer: &X509Certificate<'_>,
    issuers: Issuers,
) -> Result<(), SignatureProblem> {
    let outer = cert.signature_algorithm.algorithm.to_id_string();
    if cert.signature_algorithm != cert.tbs_certificate.signature {
        return Err(SignatureProblem::FieldsDisagree {
            outer,
            inner: cert.tbs_certificate.signature.algorithm.to_id_string(),
        });
    }
    let key = issuer.public_key();
    let rsa_allowed = issuers == Issuers::EcdsaOrRsa;
    let algorithm: &'static dyn VerificationAlgorithm = match outer.as_str() {
        OID_ECDSA_WITH_SHA256 | OID_ECDSA_WITH_SHA384 => {
            let curve = ec_curve(key).map_err(SignatureProblem::UnsupportedIssuerKey)?;
            match (curve, outer.as_str() == OID_ECDSA_WITH_SHA384) {
                (Curve::P384, true) => &ECDSA_P384_SHA384_ASN1,
                (Curve::P384, false) => &ECDSA_P384_SHA256_ASN1,
                (Curve::P256, true) => &ECDSA_P256_SHA384_ASN1,
                (Curve::P256, false) => &ECDSA_P256_SHA256_ASN1,
            }
        }
        OID_SHA256_WITH_RSA | OID_SHA384_WITH_RSA | OID_SHA512_WITH_RSA if rsa_allowed => {
            if key.algorithm.algorithm.to_id_string() != OID_RSA_ENCRYPTION {
                return Err(SignatureProblem::UnsupportedIssuerKey(key_description(key)));
            }
            match outer.as_str() {
                OID_SHA256_WITH_RSA => &RSA_PKCS1_2048_8192_SHA256,
                OID_SHA384_WITH_RSA => &RSA_PKCS1_2048_8192_SHA384,
                _ => &RSA_PKCS1_2048_8192_SHA512,
            }
        }
        _ => return Err(SignatureProblem::UnsupportedAlgorithm(outer)),
    };
    UnparsedPublicKey::new(algorithm, key.subject_public_key.data.as_ref())
        .verify(
            cert.tbs_certificate.as_ref(),
            cert.signature_value.data.as_ref(),
        )
        .map_err(|_| SignatureProblem::Invalid)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use x509_parser::prelude::FromDer;

    // The test reads the NRAS-shaped test PKI from the repository's tests/ (shared with the integration
    // tests); the verifier itself never touches the file system (clippy.toml).
    #[allow(clippy::disallowed_methods)]
    fn fixture(path: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/../../tests/fixtures/nras_test_pki/{path}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    /// NRAS's shape: a P-384 leaf signed by an RSA intermediate with SHA-256. Accepted where RSA
    /// issuers are, refused by name where the chain must be ECDSA.
    #[test]
    fn rsa_issuers_only_where_allowed() {
        let leaf_der = fixture("leaf1.der");
        let issuer_der = fixture("intermediate.der");
        let (_, leaf) = X509Certificate::from_der(&leaf_der).unwrap();
        let (_, issuer) = X509Certificate::from_der(&issuer_der).unwrap();
        assert_eq!(
            verify_issued_by(&leaf, &issuer, Issuers::EcdsaOrRsa),
            Ok(())
        );
        assert_eq!(
            verify_issued_by(&leaf, &issuer, Issuers::EcdsaOnly),
            Err(SignatureProblem::UnsupportedAlgorithm(
                "1.2.840.113549.1.1.11".into()
            ))
        );
        // Signed by another key of the same name.
        let rogue_der = fixture("rogue_intermediate.der");
        let (_, rogue) = X509Certificate::from_der(&rogue_der).unwrap();
        assert_eq!(
            verify_issued_by(&leaf, &rogue, Issuers::EcdsaOrRsa),
            Err(SignatureProblem::Invalid)
        );
        // An RSA signature can never be checked with an EC key.
        assert_eq!(
            verify_issued_by(&leaf, &leaf, Issuers::EcdsaOrRsa),
            Err(SignatureProblem::UnsupportedIssuerKey("ecdsa p-384".into()))
        );
    }
}
