//! TLS certificates of the simulator: the one it serves HTTPS with (and NEAR parts bind), and the
//! internal certificate each model node holds for its own fingerprint.
//!
//! A NEAR AI report binds SHA256 of the TLS leaf's SubjectPublicKeyInfo DER into REPORTDATA, so
//! the fingerprint is read back from the certificate itself with x509-parser rather than trusted
//! from the key generator: what a client sees on the wire is what gets bound.
//!
//! The served certificate can also issue an interceptor's leaf (`tls-intercept`): another key,
//! for the same names, that a client trusting the served certificate accepts, as a client
//! trusts a rogue terminator's mis-issued certificate.

use rcgen::{
    CertificateParams, DnType, Issuer, KeyPair, PKCS_ECDSA_P256_SHA256, PublicKeyData as _,
};
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

/// The parameters of the served certificate: `localhost` and 127.0.0.1, rcgen's default name.
/// Made the same way each time, so an issuer built from them names the served certificate.
fn served_params() -> Result<CertificateParams, TlsError> {
    CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .map_err(|e| TlsError::Generate(e.to_string()))
}

impl TlsIdentity {
    pub fn generate() -> Result<TlsIdentity, TlsError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .map_err(|e| TlsError::Generate(e.to_string()))?;
        let cert = served_params()?
            .self_signed(&key)
            .map_err(|e| TlsError::Generate(e.to_string()))?;
        TlsIdentity::from_parts(cert.der().to_vec(), cert.pem(), &key)
    }

    /// A leaf for the same names with a fresh key, signed by this (self-signed) identity's key
    /// under its name: what a rogue TLS terminator presents. A client whose trust store holds
    /// this identity's certificate accepts it, and records another TLS peer key than the one
    /// any report binds.
    pub fn issue_interceptor(&self) -> Result<TlsIdentity, TlsError> {
        let issuer_key = KeyPair::try_from(self.key_pkcs8_der.as_slice())
            .map_err(|e| TlsError::Generate(e.to_string()))?;
        let issuer = Issuer::new(served_params()?, issuer_key);
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .map_err(|e| TlsError::Generate(e.to_string()))?;
        let mut params = served_params()?;
        params
            .distinguished_name
            .push(DnType::CommonName, "teewatch sim tls interceptor");
        let cert = params
            .signed_by(&key, &issuer)
            .map_err(|e| TlsError::Generate(e.to_string()))?;
        TlsIdentity::from_parts(cert.der().to_vec(), cert.pem(), &key)
    }

    fn from_parts(
        cert_der: Vec<u8>,
        cert_pem: String,
        key: &KeyPair,
    ) -> Result<TlsIdentity, TlsError> {
        let spki_fingerprint = spki_fingerprint(&cert_der)?;
        Ok(TlsIdentity {
            cert_pem,
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

    #[test]
    fn the_interceptor_has_its_own_key_under_the_served_certificate() {
        let served = TlsIdentity::generate().unwrap();
        let rogue = served.issue_interceptor().unwrap();
        assert_ne!(rogue.spki_fingerprint(), served.spki_fingerprint());
        let (_, served_cert) = X509Certificate::from_der(served.cert_der()).unwrap();
        let (_, rogue_cert) = X509Certificate::from_der(rogue.cert_der()).unwrap();
        // Issued under the served certificate's name (that a client trusting the served
        // certificate accepts its signature is shown over a real handshake in the server's
        // tests).
        assert_eq!(rogue_cert.issuer(), served_cert.subject());
        assert_ne!(rogue_cert.subject(), served_cert.subject());
    }
}
