//! The simulated NRAS: a TEST RSA-2048 intermediate standing in for "NVIDIA Attestation Service
//! GPU Intermediate 004", P-384 signing leaves it issues (rotated like NRAS's ~2-day leaves), the
//! JWKS publishing the current leaf, and the detached EAT `[["JWT", overall], {"GPU-n": jwt}]`
//! NRAS returns for a payload, with claims version 3.0 as NRAS issued them in 2025.
//!
//! An impostor intermediate with the trusted one's exact name but its own key is generated too:
//! switched on, the JWKS and tokens come from a leaf it signed, which is what an attacker who
//! controls the JWKS channel can produce, and which a verifier pinning the real intermediate must
//! refuse on the leaf's signature rather than on the name.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P384_SHA384_FIXED, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _,
    UnparsedPublicKey,
};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{DateTime, TimeDelta, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P384_SHA384, PKCS_RSA_SHA256, SerialNumber,
};
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256, Sha384};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer as _;

use teewatch_verify::gpu::spdm::SpdmEvidence;

use super::{NvidiaSimError, TEST_ORG, random_bytes, random_serial, set_validity, shift};

/// The intermediate's common name; the impostor uses it too.
const INTERMEDIATE_CN: &str = "teewatch TEST NRAS GPU Intermediate — not NVIDIA";
/// The signing leaves' common name, after NRAS's "NVIDIA Attestation Service GPU GH100".
const LEAF_CN: &str = "teewatch TEST NRAS GPU GH100 — not NVIDIA";
/// How long a signing leaf lives; NRAS's live about two days.
const LEAF_LIFETIME_HOURS: i64 = 48;
/// How long the intermediate lives; NRAS's Intermediate 004 is a four-year certificate.
const INTERMEDIATE_LIFETIME_DAYS: i64 = 4 * 365;
/// Token lifetime, `exp - iat` in live NRAS answers.
const TOKEN_LIFETIME_SECONDS: i64 = 3600;
/// The claims version produced; teewatch requires its full claim set for this version.
const CLAIMS_VERSION: &str = "3.0";

/// An intermediate: its certificate and the rcgen issuer that signs leaves with its key.
struct Authority {
    der: Vec<u8>,
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A signing leaf: its kid, certificate, key and the intermediate it chains to.
struct Signer {
    kid: String,
    leaf_der: Vec<u8>,
    key: EcdsaKeyPair,
    intermediate_der: Vec<u8>,
    not_after: DateTime<Utc>,
}

/// A simulated NVIDIA Remote Attestation Service.
pub struct NrasSim {
    issuer: String,
    trusted: Authority,
    untrusted: Authority,
    current: Signer,
    impostor: Signer,
    use_untrusted: bool,
}

impl std::fmt::Debug for NrasSim {
    /// Shows the issuer and kids, never the keys.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NrasSim")
            .field("issuer", &self.issuer)
            .field("kid", &self.current.kid)
            .field("impostor_kid", &self.impostor.kid)
            .field("use_untrusted", &self.use_untrusted)
            .finish()
    }
}

impl NrasSim {
    /// Generates the trusted and impostor intermediates (RSA-2048, self-signed, valid from a day
    /// before `now` for four years) and a current signing leaf under each. `issuer` is the base
    /// URL the simulator serves NRAS at; every token's `iss` is exactly it.
    pub fn generate(issuer: &str, now: DateTime<Utc>) -> Result<Self, NvidiaSimError> {
        let trusted = authority(now)?;
        let untrusted = authority(now)?;
        let current = issue_leaf(&trusted, now)?;
        let impostor = issue_leaf(&untrusted, now)?;
        Ok(NrasSim {
            issuer: issuer.to_string(),
            trusted,
            untrusted,
            current,
            impostor,
            use_untrusted: false,
        })
    }

    /// DER of the trusted intermediate: the anchor to pin in place of NRAS's intermediate.
    pub fn intermediate_der(&self) -> &[u8] {
        &self.trusted.der
    }

    /// PEM of the trusted intermediate, for a `dangerous_nras_intermediates` file.
    pub fn intermediate_pem(&self) -> String {
        self.trusted.pem.clone()
    }

    /// DER of the impostor intermediate (same name, other key), never to be pinned.
    pub fn untrusted_intermediate_der(&self) -> &[u8] {
        &self.untrusted.der
    }

    /// The `iss` every token carries.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The kid tokens are currently signed under.
    pub fn kid(&self) -> &str {
        &self.active().kid
    }

    /// When the current trusted signing leaf expires: rotate before then, as NRAS does.
    pub fn leaf_not_after(&self) -> DateTime<Utc> {
        self.current.not_after
    }

    /// The JWKS NRAS publishes: the active leaf's key with its `x5c` chain [leaf, intermediate].
    /// Only the active key is listed, so a token from a rotated-out key has an unknown kid.
    pub fn jwks(&self) -> Value {
        let signer = self.active();
        // aws-lc-rs gives the uncompressed point 0x04 ‖ x ‖ y.
        let point = signer.key.public_key().as_ref();
        let x = point.get(1..49).unwrap_or_default();
        let y = point.get(49..97).unwrap_or_default();
        json!({
            "keys": [{
                "kty": "EC",
                "crv": "P-384",
                "alg": "ES384",
                "use": "sig",
                "kid": signer.kid,
                "x": URL_SAFE_NO_PAD.encode(x),
                "y": URL_SAFE_NO_PAD.encode(y),
                "x5c": [STANDARD.encode(&signer.leaf_der), STANDARD.encode(&signer.intermediate_der)],
            }]
        })
    }

    /// Replaces the trusted signing leaf with a fresh one (new key, new kid, valid from `now`);
    /// the old key leaves the JWKS.
    pub fn rotate(&mut self, now: DateTime<Utc>) -> Result<(), NvidiaSimError> {
        self.current = issue_leaf(&self.trusted, now)?;
        Ok(())
    }

    /// With `on`, the JWKS and tokens come from the impostor's leaf (the "untrusted NRAS signer"
    /// fault); with `!on`, from the trusted leaf again.
    pub fn use_untrusted_signer(&mut self, on: bool) {
        self.use_untrusted = on;
    }

    /// The detached EAT NRAS returns for `payload` (an `nvidia_payload` object or a JSON string
    /// of one) at `now`.
    ///
    /// Each GPU's evidence is parsed and checked the way NRAS checks it: report parsed, request
    /// nonce equal to the payload's nonce, and the SPDM signature valid under the leaf of the
    /// GPU's chain; those three claims report what was found, and the GPU's `ueid` is its leaf
    /// serial. The measurement comparison NRAS does against NVIDIA's RIMs is simulated by
    /// `verdict_ok`: `measres` is "success" or "fail" accordingly. Every other claim (RIMs,
    /// certificate chains, OCSP) is good. The overall result is `verdict_ok` and every GPU's
    /// checks passing, as NRAS ANDs its per-GPU results.
    pub fn attest(
        &self,
        payload: &Value,
        now: DateTime<Utc>,
        verdict_ok: bool,
    ) -> Result<Value, NvidiaSimError> {
        let (nonce_hex, gpus) = read_payload(payload)?;
        let iat = now.timestamp();
        let exp = shift(now, TimeDelta::seconds(TOKEN_LIFETIME_SECONDS))?.timestamp();
        let rim_expiry = shift(now, TimeDelta::days(180))?
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        let signer = self.active();

        let mut tokens = Map::new();
        let mut submods = Map::new();
        let mut all_passed = verdict_ok;
        for (index, gpu) in gpus.iter().enumerate() {
            let nonce_match = gpu.nonce_hex == nonce_hex;
            all_passed &= nonce_match && gpu.signature_verified;
            let claims = gpu_claims(GpuClaimInputs {
                gpu,
                issuer: &self.issuer,
                nonce_hex: &nonce_hex,
                iat,
                exp,
                rim_expiry: &rim_expiry,
                nonce_match,
                measurements_ok: verdict_ok,
            });
            let token = sign_jwt(signer, &claims)?;
            let name = format!("GPU-{index}");
            submods.insert(
                name.clone(),
                json!([
                    "DIGEST",
                    ["SHA-256", hex::encode(Sha256::digest(token.as_bytes()))]
                ]),
            );
            tokens.insert(name, Value::String(token));
        }
        let overall = json!({
            "sub": "NVIDIA-PLATFORM-ATTESTATION",
            "x-nvidia-ver": CLAIMS_VERSION,
            "nbf": iat,
            "iss": self.issuer,
            "x-nvidia-overall-att-result": all_passed,
            "submods": submods,
            "eat_nonce": nonce_hex,
            "exp": exp,
            "iat": iat,
            "jti": uuid_v4(),
        });
        let overall = sign_jwt(signer, &overall)?;
        Ok(json!([["JWT", overall], tokens]))
    }

    fn active(&self) -> &Signer {
        if self.use_untrusted {
            &self.impostor
        } else {
            &self.current
        }
    }
}

/// A self-signed RSA-2048 CA under `INTERMEDIATE_CN`, signing with sha256WithRSAEncryption.
/// rcgen generates the RSA key itself with the aws-lc-rs backend.
fn authority(now: DateTime<Utc>) -> Result<Authority, NvidiaSimError> {
    let key = KeyPair::generate_for(&PKCS_RSA_SHA256)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, INTERMEDIATE_CN);
    params
        .distinguished_name
        .push(DnType::OrganizationName, TEST_ORG);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.serial_number = Some(SerialNumber::from_slice(&random_serial()));
    set_validity(
        &mut params,
        shift(now, TimeDelta::days(-1))?,
        shift(now, TimeDelta::days(INTERMEDIATE_LIFETIME_DAYS))?,
    )?;
    let cert = params.self_signed(&key)?;
    Ok(Authority {
        der: cert.der().to_vec(),
        pem: cert.pem(),
        issuer: Issuer::new(params, key),
    })
}

/// A fresh P-384 signing leaf under `authority`, valid from a minute before `now` for
/// `LEAF_LIFETIME_HOURS`, with a kid shaped like NRAS's (`…-<timestamp>-<uuid>`).
fn issue_leaf(authority: &Authority, now: DateTime<Utc>) -> Result<Signer, NvidiaSimError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384)?;
    let not_after = shift(now, TimeDelta::hours(LEAF_LIFETIME_HOURS))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, LEAF_CN);
    params
        .distinguished_name
        .push(DnType::OrganizationName, TEST_ORG);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.serial_number = Some(SerialNumber::from_slice(&random_serial()));
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, shift(now, TimeDelta::minutes(-1))?, not_after)?;
    let cert = params.signed_by(&key, &authority.issuer)?;
    Ok(Signer {
        kid: format!(
            "teewatch-test-eat-kid-{}-{}",
            now.format("%Y%m%d%H%M%S%3f"),
            uuid_v4()
        ),
        leaf_der: cert.der().to_vec(),
        key: EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, key.serialized_der())?,
        intermediate_der: authority.der.clone(),
        not_after,
    })
}

/// What NRAS learns from one GPU's evidence.
struct GpuFacts {
    /// The evidence's request nonce, lowercase hex.
    nonce_hex: String,
    /// Whether the SPDM signature verifies with the chain's leaf key.
    signature_verified: bool,
    driver_version: String,
    vbios_version: String,
    /// The leaf serial in decimal.
    ueid: String,
}

/// Reads `nvidia_payload`: the nonce (lowercase hex) and each GPU's facts. Anything NRAS would
/// answer with an HTTP error instead of a token (not JSON, no evidence, evidence or chain that
/// does not parse) is an error.
fn read_payload(payload: &Value) -> Result<(String, Vec<GpuFacts>), NvidiaSimError> {
    let reject = |reason: String| NvidiaSimError::Payload(reason);
    let parsed;
    let payload = match payload {
        Value::String(text) => {
            parsed = serde_json::from_str::<Value>(text)
                .map_err(|e| reject(format!("a string that is not json: {e}")))?;
            &parsed
        }
        other => other,
    };
    let nonce_hex = payload
        .get("nonce")
        .and_then(Value::as_str)
        .ok_or_else(|| reject("no string nonce".to_string()))?
        .to_ascii_lowercase();
    if nonce_hex.len() != 64 || hex::decode(&nonce_hex).is_err() {
        return Err(reject(format!(
            "nonce {nonce_hex:?} is not 32 bytes of hex"
        )));
    }
    let list = payload
        .get("evidence_list")
        .and_then(Value::as_array)
        .filter(|l| !l.is_empty())
        .ok_or_else(|| reject("no non-empty evidence_list".to_string()))?;
    let facts = list
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let decode = |key: &str| {
                item.get(key)
                    .and_then(Value::as_str)
                    .and_then(|text| STANDARD.decode(text.trim()).ok())
                    .ok_or_else(|| reject(format!("gpu {index}: `{key}` missing or not base64")))
            };
            let evidence = decode("evidence")?;
            let chain_pem = decode("certificate")?;
            gpu_facts(&evidence, &chain_pem)
                .map_err(|reason| reject(format!("gpu {index}: {reason}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((nonce_hex, facts))
}

/// Parses one GPU's evidence and leaf certificate and checks the evidence signature.
fn gpu_facts(evidence: &[u8], chain_pem: &[u8]) -> Result<GpuFacts, String> {
    let parsed = SpdmEvidence::parse(evidence).map_err(|e| format!("evidence: {e}"))?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(chain_pem)
        .map_err(|e| format!("certificate chain: {e}"))?;
    let (_, leaf) =
        X509Certificate::from_der(&pem.contents).map_err(|e| format!("leaf certificate: {e}"))?;
    let signature_verified = parsed.signed_region(evidence).is_some_and(|signed| {
        UnparsedPublicKey::new(
            &ECDSA_P384_SHA384_FIXED,
            leaf.public_key().subject_public_key.data.as_ref(),
        )
        .verify(signed, &parsed.signature)
        .is_ok()
    });
    Ok(GpuFacts {
        nonce_hex: hex::encode(parsed.request_nonce),
        signature_verified,
        driver_version: parsed.driver_version().unwrap_or_default().to_string(),
        vbios_version: parsed.vbios_version().unwrap_or_default(),
        ueid: leaf.tbs_certificate.serial.to_str_radix(10),
    })
}

/// Everything one GPU token's claims depend on.
struct GpuClaimInputs<'a> {
    gpu: &'a GpuFacts,
    issuer: &'a str,
    nonce_hex: &'a str,
    iat: i64,
    exp: i64,
    rim_expiry: &'a str,
    nonce_match: bool,
    measurements_ok: bool,
}

/// A GPU token's claims as NRAS's claims version 3.0 carries them (see
/// `tests/vectors/nvidia/attestation-sdk/hopperClaimsv3_detached_eat.json`).
fn gpu_claims(inputs: GpuClaimInputs<'_>) -> Value {
    let GpuClaimInputs {
        gpu,
        issuer,
        nonce_hex,
        iat,
        exp,
        rim_expiry,
        nonce_match,
        measurements_ok,
    } = inputs;
    let chain = |expires: &str| {
        json!({
            "x-nvidia-cert-status": "valid",
            "x-nvidia-cert-ocsp-status": "good",
            "x-nvidia-cert-expiration-date": expires,
            "x-nvidia-cert-revocation-reason": null,
        })
    };
    let mut claims = json!({
        "iss": issuer,
        "eat_nonce": nonce_hex,
        "iat": iat,
        "nbf": iat,
        "exp": exp,
        "jti": uuid_v4(),
        "ueid": gpu.ueid,
        "hwmodel": "GH100 A01 GSP BROM",
        "oemid": "5703",
        "measres": if measurements_ok { "success" } else { "fail" },
        "secboot": true,
        "dbgstat": "disabled",
        "x-nvidia-gpu-arch-check": true,
        "x-nvidia-gpu-driver-version": gpu.driver_version,
        "x-nvidia-gpu-vbios-version": gpu.vbios_version,
        "x-nvidia-gpu-attestation-report-parsed": true,
        "x-nvidia-gpu-attestation-report-nonce-match": nonce_match,
        "x-nvidia-gpu-attestation-report-signature-verified": gpu.signature_verified,
        "x-nvidia-gpu-attestation-report-cert-chain": chain("9999-12-31T23:59:59Z"),
        "x-nvidia-gpu-attestation-report-cert-chain-fwid-match": true,
        "x-nvidia-gpu-driver-rim-fetched": true,
        "x-nvidia-gpu-driver-rim-schema-validated": true,
        "x-nvidia-gpu-driver-rim-signature-verified": true,
        "x-nvidia-gpu-driver-rim-version-match": true,
        "x-nvidia-gpu-driver-rim-measurements-available": true,
        "x-nvidia-gpu-driver-rim-cert-chain": chain(rim_expiry),
        "x-nvidia-gpu-vbios-rim-fetched": true,
        "x-nvidia-gpu-vbios-rim-schema-validated": true,
        "x-nvidia-gpu-vbios-rim-signature-verified": true,
        "x-nvidia-gpu-vbios-rim-version-match": true,
        "x-nvidia-gpu-vbios-rim-measurements-available": true,
        "x-nvidia-gpu-vbios-rim-cert-chain": chain(rim_expiry),
        "x-nvidia-gpu-vbios-index-no-conflict": true,
        "x-nvidia-attestation-warning": null,
    });
    if !measurements_ok {
        // NRAS lists the measurements that differ from the RIMs' golden values.
        if let Some(map) = claims.as_object_mut() {
            map.insert(
                "x-nvidia-mismatch-measurement-records".to_string(),
                json!([{
                    "index": 9,
                    "goldenValue": hex::encode(Sha384::digest(b"teewatch TEST golden value")),
                    "runtimeValue": hex::encode(Sha384::digest(b"teewatch TEST runtime value")),
                }]),
            );
        }
    }
    claims
}

/// A compact ES384 JWS over `claims` with NRAS's header `{"kid", "alg"}` and a raw r‖s signature.
fn sign_jwt(signer: &Signer, claims: &Value) -> Result<String, NvidiaSimError> {
    let header = json!({"kid": signer.kid, "alg": "ES384"});
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = signer.key.sign(&SystemRandom::new(), input.as_bytes())?;
    Ok(format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(signature.as_ref())
    ))
}

/// A random RFC 4122 version-4 UUID, the form of NRAS's `jti` and kid suffixes.
fn uuid_v4() -> String {
    let mut b = random_bytes::<16>();
    if let Some(v) = b.get_mut(6) {
        *v = (*v & 0x0F) | 0x40;
    }
    if let Some(v) = b.get_mut(8) {
        *v = (*v & 0x3F) | 0x80;
    }
    let h = hex::encode(b);
    let part = |r: std::ops::Range<usize>| h.get(r).unwrap_or_default().to_string();
    format!(
        "{}-{}-{}-{}-{}",
        part(0..8),
        part(8..12),
        part(12..16),
        part(16..20),
        part(20..32)
    )
}
