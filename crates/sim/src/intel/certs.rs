//! Certificate, CRL and raw-signature helpers the test Intel PKI is built with.
//!
//! rcgen makes the certificates and CRLs (signed in DER form); Intel's own structures (QE report,
//! quote, TCB info, QE identity) carry raw 64-byte r‖s ECDSA P-256 signatures, which aws-lc-rs
//! makes here from the same keys.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use chrono::{DateTime, Utc};
use rcgen::{
    CertificateParams, CertificateRevocationListParams, CrlDistributionPoint, DistinguishedName,
    DnType, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, SerialNumber,
};

use super::SimError;

/// A JSON document and the TCB signing key's raw r‖s signature over its exact bytes.
#[derive(Clone)]
pub(super) struct SignedJson {
    pub(super) json: String,
    pub(super) signature: [u8; 64],
}

/// Seconds since the epoch as the `Duration` rcgen's dates are built from (rcgen takes `time`
/// dates, which this crate does not name).
fn since_epoch(t: DateTime<Utc>) -> Result<std::time::Duration, SimError> {
    u64::try_from(t.timestamp())
        .map(std::time::Duration::from_secs)
        .map_err(|_| SimError::Time(t.to_rfc3339()))
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "teewatch test PKI");
    dn.push(DnType::CountryName, "ZZ");
    dn
}

/// The parameters every certificate of the test PKI shares: the test organisation, a validity
/// window, one CRL distribution point and SHA-256 key identifiers.
pub(super) fn cert_params(
    common_name: &str,
    is_ca: IsCa,
    key_usages: Vec<KeyUsagePurpose>,
    crl_url: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<CertificateParams, SimError> {
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    let mut params = CertificateParams::default();
    params.distinguished_name = name(common_name);
    params.is_ca = is_ca;
    params.key_usages = key_usages;
    params.not_before = epoch + since_epoch(from)?;
    params.not_after = epoch + since_epoch(to)?;
    params.crl_distribution_points = vec![CrlDistributionPoint {
        uris: vec![crl_url.to_string()],
    }];
    params.use_authority_key_identifier_extension = true;
    params.key_identifier_method = KeyIdMethod::Sha256;
    Ok(params)
}

/// An empty CRL (nothing in the test PKI is revoked) signed by `issuer`, in DER.
pub(super) fn crl(
    issuer: &Issuer<'_, &KeyPair>,
    this_update: DateTime<Utc>,
    next_update: DateTime<Utc>,
) -> Result<Vec<u8>, SimError> {
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    let params = CertificateRevocationListParams {
        this_update: epoch + since_epoch(this_update)?,
        next_update: epoch + since_epoch(next_update)?,
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: Vec::new(),
        key_identifier_method: KeyIdMethod::Sha256,
    };
    Ok(params.signed_by(issuer)?.der().to_vec())
}

/// The aws-lc-rs signer for an rcgen key, to produce raw r‖s signatures (rcgen signs DER).
pub(super) fn raw_signer(key: &KeyPair) -> Result<EcdsaKeyPair, SimError> {
    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, key.serialized_der())
        .map_err(|_| SimError::Crypto("key import"))
}

/// ECDSA P-256 / SHA-256 over `message`, as the 64-byte r‖s Intel's structures carry.
pub(super) fn sign_raw(key: &EcdsaKeyPair, message: &[u8]) -> Result<[u8; 64], SimError> {
    let signature = key
        .sign(&SystemRandom::new(), message)
        .map_err(|_| SimError::Crypto("signing"))?;
    <[u8; 64]>::try_from(signature.as_ref()).map_err(|_| SimError::Crypto("signature length"))
}

/// `json` with the signature of its exact bytes.
pub(super) fn signed_json(key: &EcdsaKeyPair, json: String) -> Result<SignedJson, SimError> {
    let signature = sign_raw(key, json.as_bytes())?;
    Ok(SignedJson { json, signature })
}
