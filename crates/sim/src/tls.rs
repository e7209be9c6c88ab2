//! TLS certificates of the simulator: the one it serves HTTPS with (and NEAR parts bind), and the
//! internal certificate each model node holds for its own fingerprint.
//!
//! A NEAR AI report binds SHA256 of the TLS leaf's SubjectPublicKeyInfo DER into REPORTDATA, so
//! the fingerprint is read back from the certificate itself with x509-parser rather than trusted
//! from the key generator: what a client sees on the wire is what gets bound.

use rcgen::{CertificateParams, KeyPair, PKCS_ECDSA_P256_SHA256, PublicKeyData as _};
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer as _, X509Certificate};

/// A certificate could not be made or read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    #[error("generating the certificate: {0}")]
    Generate(String),
    #[error("reading back the generated certificate: {0}")]
    Parse(String),
}

/// A self-signed ECDSA P-256 certificate for `localhost` and 127.0.0.1 with its private key.
pub struct TlsIdentity {
    cert_der: Vec<u8>,
    cert_pem: String,
    key_pkcs8_der: Vec<u8>,
    spki_fingerprint: [u8; 32],
}

impl TlsIdentity {
    pub fn generate() -> Result<TlsIdentity, TlsError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .map_err(|e| TlsError::Generate(e.to_string()))?;
        let params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .map_err(|e| TlsError::Generate(e.to_string()))?;
        let cert = params
            .self_signed(&key)
            .map_err(|e| TlsError::Generate(e.to_string()))?;
        let cert_der = cert.der().to_vec();
        let spki_fingerprint = spki_fingerprint(&cert_der)?;
        Ok(TlsIdentity {
            cert_pem: cert.pem(),
            cert_der,
            key_pkcs8_der: key.serialize_der(),
            spki_fingerprint,
        })
    }

    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The private key as PKCS#8 DER, for the TLS server.
    pub fn key_pkcs8_der(&self) -> &[u8] {
        &self.key_pkcs8_der
    }

    /// SHA256 of the leaf's SubjectPublicKeyInfo DER.
    pub fn spki_fingerprint(&self) -> [u8; 32] {
        self.spki_fingerprint
    }
}

/// SHA256 of a certificate's SubjectPublicKeyInfo DER.
pub fn spki_fingerprint(cert_der: &[u8]) -> Result<[u8; 32], TlsError> {
    let (_, cert) =
        X509Certificate::from_der(cert_der).map_err(|e| TlsError::Parse(e.to_string()))?;
    Ok(Sha256::digest(cert.public_key().raw).into())
}

/// The SPKI fingerprint of a freshly generated key no certificate the simulator serves holds:
/// what a report names under the `tls-wrong-peer` fault.
pub fn fresh_spki_fingerprint() -> Result<[u8; 32], TlsError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    Ok(Sha256::digest(key.subject_public_key_info()).into())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_of_certificate_equals_key_spki() {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (_, parsed) = X509Certificate::from_der(cert.der()).unwrap();
        assert_eq!(
            parsed.public_key().raw,
            key.subject_public_key_info().as_slice()
        );
        let fp: [u8; 32] = Sha256::digest(key.subject_public_key_info()).into();
        assert_eq!(spki_fingerprint(cert.der()).unwrap(), fp);
    }

    #[test]
    fn generated_identity_names_localhost_and_loopback() {
        let identity = TlsIdentity::generate().unwrap();
        let (_, parsed) = X509Certificate::from_der(identity.cert_der()).unwrap();
        let san = parsed.subject_alternative_name().unwrap().unwrap();
        let names = format!("{:?}", san.value.general_names);
        assert!(names.contains("localhost"), "{names}");
        assert!(
            names.contains("127.0.0.1") || names.contains("[127, 0, 0, 1]"),
            "{names}"
        );
        assert!(
            identity
                .cert_pem()
                .starts_with("-----BEGIN CERTIFICATE-----")
        );
        assert_ne!(
            fresh_spki_fingerprint().unwrap(),
            identity.spki_fingerprint()
        );
    }
}
