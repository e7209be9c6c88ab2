//! A test Fulcio: a root and an intermediate CA shaped like Sigstore's (ECDSA P-384), issuing
//! short-lived (10 minute) P-256 code-signing leaves that name an OIDC identity as production
//! Fulcio does: the subject as a URI SAN, the issuer in the extensions 1.3.6.1.4.1.57264.1.1
//! (raw string, the older form) and 1.3.6.1.4.1.57264.1.8 (DER UTF8String).
//!
//! Its chain reaches teewatch only through `dangerous_sigstore_fulcio_root`: nothing it issues is
//! accepted under the production root.

use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
use chrono::{DateTime, Duration, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
    PKCS_ECDSA_P384_SHA384, SanType,
};

/// The Fulcio extension holding the OIDC issuer as raw bytes (deprecated, still written).
pub const OID_ISSUER_V1: [u64; 9] = [1, 3, 6, 1, 4, 1, 57264, 1, 1];
/// The Fulcio extension holding the OIDC issuer as a DER UTF8String.
pub const OID_ISSUER_V2: [u64; 9] = [1, 3, 6, 1, 4, 1, 57264, 1, 8];

/// How long a leaf is valid, as production Fulcio issues them.
pub const LEAF_LIFETIME_MINUTES: i64 = 10;

/// Why the test Fulcio could not issue.
#[derive(Debug, thiserror::Error)]
pub enum FulcioError {
    #[error("certificate generation failed: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("{0} is outside the range a certificate can name")]
    Time(String),
    #[error("the leaf key cannot be used for signing")]
    Key,
}

/// The CA: its chain as PEM and the intermediate that signs leaves.
pub struct FulcioTestCa {
    root_pem: String,
    intermediate_pem: String,
    intermediate: Issuer<'static, KeyPair>,
}

/// A leaf certificate and the key it certifies.
pub struct SigningLeaf {
    pub pem: String,
    pub key: EcdsaKeyPair,
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::OrganizationName,
        "teewatch TEST sigstore — not Sigstore",
    );
    dn.push(DnType::CommonName, common_name);
    dn
}

fn validity(
    params: &mut CertificateParams,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<(), FulcioError> {
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    let since = |t: DateTime<Utc>| {
        u64::try_from(t.timestamp())
            .map(std::time::Duration::from_secs)
            .map_err(|_| FulcioError::Time(t.to_rfc3339()))
    };
    params.not_before = epoch + since(from)?;
    params.not_after = epoch + since(to)?;
    Ok(())
}

/// DER of a UTF8String (tag 12) with a short or two-byte long length.
fn der_utf8_string(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = vec![0x0c];
    match bytes.len() {
        n @ 0..=127 => out.push(n as u8),
        n @ 128..=255 => out.extend([0x81, n as u8]),
        n => out.extend([0x82, (n >> 8) as u8, n as u8]),
    }
    out.extend_from_slice(bytes);
    out
}

impl FulcioTestCa {
    /// A root and an intermediate valid from a day before `now` for five years.
    pub fn generate(now: DateTime<Utc>) -> Result<FulcioTestCa, FulcioError> {
        let from = now - Duration::days(1);
        let to = now + Duration::days(5 * 365);
        let ca_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];

        let root_key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384)?;
        let mut root_params = CertificateParams::default();
        root_params.distinguished_name = name("teewatch TEST sigstore root");
        root_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
        root_params.key_usages = ca_usages.clone();
        validity(&mut root_params, from, to)?;
        let root = root_params.self_signed(&root_key)?;
        let root_issuer = Issuer::new(root_params, root_key);

        let intermediate_key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name("teewatch TEST sigstore intermediate");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = ca_usages;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, from, to)?;
        let intermediate = params.signed_by(&intermediate_key, &root_issuer)?;
        Ok(FulcioTestCa {
            root_pem: root.pem(),
            intermediate_pem: intermediate.pem(),
            intermediate: Issuer::new(params, intermediate_key),
        })
    }

    /// The chain a verifier is given: intermediate, then root (`dangerous_sigstore_fulcio_root`).
    pub fn chain_pem(&self) -> String {
        [self.intermediate_pem.as_str(), self.root_pem.as_str()].concat()
    }

    /// A leaf for `subject` (a URI: a workflow's path and ref) from `issuer`, valid for ten
    /// minutes from a minute before `at`.
    pub fn issue(
        &self,
        issuer: &str,
        subject: &str,
        at: DateTime<Utc>,
    ) -> Result<SigningLeaf, FulcioError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        // Fulcio leaves have an empty subject; the identity is in the SAN.
        params.distinguished_name = DistinguishedName::new();
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
        params.subject_alt_names = vec![SanType::URI(subject.to_string().try_into()?)];
        params.use_authority_key_identifier_extension = true;
        params.custom_extensions = vec![
            CustomExtension::from_oid_content(&OID_ISSUER_V1, issuer.as_bytes().to_vec()),
            CustomExtension::from_oid_content(&OID_ISSUER_V2, der_utf8_string(issuer)),
        ];
        let from = at - Duration::minutes(1);
        validity(
            &mut params,
            from,
            from + Duration::minutes(LEAF_LIFETIME_MINUTES),
        )?;
        let leaf = params.signed_by(&key, &self.intermediate)?;
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &key.serialize_der())
            .map_err(|_| FulcioError::Key)?;
        Ok(SigningLeaf {
            pem: leaf.pem(),
            key,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_leaf_names_its_identity_and_lives_ten_minutes() {
        let now = Utc::now();
        let ca = FulcioTestCa::generate(now).unwrap();
        let leaf = ca
            .issue(
                "https://issuer.test",
                "https://github.com/o/r/.github/workflows/b.yml@refs/heads/main",
                now,
            )
            .unwrap();
        let der = teewatch_verify::policy::pem_to_der(&leaf.pem).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let validity = cert.validity();
        assert_eq!(
            validity.not_after.timestamp() - validity.not_before.timestamp(),
            LEAF_LIFETIME_MINUTES * 60
        );
        let v2 = cert
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.4.1.57264.1.8")
            .unwrap();
        assert_eq!(v2.value, der_utf8_string("https://issuer.test").as_slice());
        assert_eq!(ca.chain_pem().matches("BEGIN CERTIFICATE").count(), 2);
    }
}
