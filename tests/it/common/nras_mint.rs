//! Minting NRAS-shaped answers with the test PKI in `tests/fixtures/nras_test_pki/`, the one
//! place the tests make NRAS tokens: the claim sets NRAS issues (claims versions 3.0 and 2.0),
//! ES384 tokens, tokens signed otherwise or tampered with after signing, the JWKS that publishes
//! their keys, submod digests and the detached EAT around them. (The simulator's `NrasSim` mints
//! with keys it generates and only the claims it derives from evidence; the tests need the fixed
//! PKI, its rogue and expired leaves, and claims edited one at a time.)
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};
use teewatch::verify::gpu::nras::NRAS_ISSUER;
use x509_parser::prelude::FromDer as _;

pub fn read(relative: &str) -> Vec<u8> {
    let path = format!("{}/{relative}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub fn pki(name: &str) -> Vec<u8> {
    read(&format!("tests/fixtures/nras_test_pki/{name}"))
}

pub fn b64u(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A signing identity: a leaf certificate, its key and the kid its JWK is published under.
pub struct Signer {
    pub kid: String,
    pub key: EcdsaKeyPair,
}

pub fn signer(kid: &str, leaf: &str) -> Signer {
    Signer {
        kid: kid.to_string(),
        key: EcdsaKeyPair::from_pkcs8(
            &ECDSA_P384_SHA384_FIXED_SIGNING,
            &pki(&format!("{leaf}.pk8.der")),
        )
        .unwrap(),
    }
}

/// The uncompressed P-384 point of a DER certificate's key.
pub fn cert_point(der: &[u8]) -> Vec<u8> {
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der).unwrap();
    cert.public_key().subject_public_key.data.to_vec()
}

/// A JWK whose x/y come from `key_leaf_der` and whose x5c is `chain`.
pub fn jwk(kid: &str, key_leaf_der: &[u8], chain: &[&[u8]]) -> Value {
    let point = cert_point(key_leaf_der);
    json!({
        "kty": "EC",
        "use": "sig",
        "crv": "P-384",
        "alg": "ES384",
        "kid": kid,
        "x": b64u(&point[1..49]),
        "y": b64u(&point[49..97]),
        "x5c": chain.iter().map(|der| STANDARD.encode(der)).collect::<Vec<_>>(),
    })
}

/// `b64url(header).b64url(claims)`: the part of a compact JWS its signature covers.
pub fn signing_input(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        b64u(header.to_string().as_bytes()),
        b64u(claims.to_string().as_bytes())
    )
}

/// A compact JWS from its signing input and whatever signature bytes (none for `alg: none`, an
/// HMAC tag for the key-confusion attack).
pub fn with_signature(input: &str, signature: &[u8]) -> String {
    format!("{input}.{}", b64u(signature))
}

/// Signs `claims` under `header` as a compact ES384 JWS.
pub fn mint_with_header(header: &Value, claims: &Value, signer: &Signer) -> String {
    let input = signing_input(header, claims);
    let signature = signer
        .key
        .sign(&SystemRandom::new(), input.as_bytes())
        .unwrap();
    with_signature(&input, signature.as_ref())
}

/// The claims of a compact JWS.
pub fn claims_of(token: &str) -> Value {
    let part = token.split('.').nth(1).expect("a token without claims");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// `token` with its claims replaced by `claims`, its header and signature kept: what tampering
/// with a signed token gives.
pub fn with_claims(token: &str, claims: &Value) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "not a compact JWS: {token}");
    format!(
        "{}.{}.{}",
        parts[0],
        b64u(claims.to_string().as_bytes()),
        parts[2]
    )
}

pub fn mint(claims: &Value, signer: &Signer) -> String {
    mint_with_header(&json!({"kid": signer.kid, "alg": "ES384"}), claims, signer)
}

pub fn digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// `{"GPU-n": ["DIGEST", ["SHA-256", hex]]}` for the given tokens.
pub fn submods(tokens: &[(String, String)]) -> Value {
    let mut map = Map::new();
    for (name, token) in tokens {
        map.insert(name.clone(), json!(["DIGEST", ["SHA-256", digest(token)]]));
    }
    Value::Object(map)
}

pub fn detached(overall: &str, tokens: &[(String, String)]) -> Value {
    let mut map = Map::new();
    for (name, token) in tokens {
        map.insert(name.clone(), Value::String(token.clone()));
    }
    json!([["JWT", overall], map])
}

/// The JWKS NRAS would publish for the test leaf `leaf` (`leaf1`, `leaf2`, …) under `kid`, its
/// `x5c` the chain [leaf, test intermediate].
pub fn test_jwks(kid: &str, leaf: &str) -> Value {
    let leaf = pki(&format!("{leaf}.der"));
    let intermediate = pki("intermediate.der");
    json!({ "keys": [jwk(kid, &leaf, &[&leaf, &intermediate])] })
}

/// What a GPU token's claims say about the GPU and when NRAS issued it.
pub struct GpuClaims<'a> {
    /// The request's nonce as hex (`eat_nonce`).
    pub nonce_hex: &'a str,
    /// The GPU's serial number as NRAS reports it, in decimal.
    pub ueid: &'a str,
    /// `iat` and `nbf`; the token expires an hour later, as NRAS's do.
    pub issued_at: i64,
    pub driver_version: &'a str,
    pub vbios_version: &'a str,
}

/// A per-GPU claim set as NRAS claims version 3.0 carries it, every judgement good.
pub fn gpu_claims_v3(gpu: &GpuClaims) -> Value {
    let chain = json!({
        "x-nvidia-cert-status": "valid",
        "x-nvidia-cert-ocsp-status": "good",
        "x-nvidia-cert-expiration-date": "2027-01-01T00:00:00Z",
        "x-nvidia-cert-revocation-reason": null,
    });
    json!({
        "iss": NRAS_ISSUER,
        "eat_nonce": gpu.nonce_hex,
        "iat": gpu.issued_at,
        "nbf": gpu.issued_at,
        "exp": gpu.issued_at + 3600,
        "ueid": gpu.ueid,
        "measres": "success",
        "secboot": true,
        "dbgstat": "disabled",
        "hwmodel": "GH100 A01 GSP BROM",
        "oemid": "5703",
        "x-nvidia-gpu-arch-check": true,
        "x-nvidia-gpu-driver-version": gpu.driver_version,
        "x-nvidia-gpu-vbios-version": gpu.vbios_version,
        "x-nvidia-gpu-attestation-report-parsed": true,
        "x-nvidia-gpu-attestation-report-nonce-match": true,
        "x-nvidia-gpu-attestation-report-signature-verified": true,
        "x-nvidia-gpu-attestation-report-cert-chain": chain,
        "x-nvidia-gpu-attestation-report-cert-chain-fwid-match": true,
        "x-nvidia-gpu-driver-rim-fetched": true,
        "x-nvidia-gpu-driver-rim-schema-validated": true,
        "x-nvidia-gpu-driver-rim-signature-verified": true,
        "x-nvidia-gpu-driver-rim-version-match": true,
        "x-nvidia-gpu-driver-rim-measurements-available": true,
        "x-nvidia-gpu-driver-rim-cert-chain": chain,
        "x-nvidia-gpu-vbios-rim-fetched": true,
        "x-nvidia-gpu-vbios-rim-schema-validated": true,
        "x-nvidia-gpu-vbios-rim-signature-verified": true,
        "x-nvidia-gpu-vbios-rim-version-match": true,
        "x-nvidia-gpu-vbios-rim-measurements-available": true,
        "x-nvidia-gpu-vbios-rim-cert-chain": chain,
        "x-nvidia-gpu-vbios-index-no-conflict": true,
        "x-nvidia-attestation-warning": null,
    })
}

/// A per-GPU claim set as NRAS claims version 2.0 carries it (the shape of the private-ml-sdk
/// responses in `tests/vectors/`): certificate chains as `…-cert-validated` booleans, no
/// certificate-chain objects, FWID or RIM version matches.
pub fn gpu_claims_v2(gpu: &GpuClaims) -> Value {
    let mut claims = gpu_claims_v3(gpu);
    let map = claims.as_object_mut().unwrap();
    for claim in [
        "x-nvidia-gpu-attestation-report-cert-chain",
        "x-nvidia-gpu-attestation-report-cert-chain-fwid-match",
        "x-nvidia-gpu-driver-rim-cert-chain",
        "x-nvidia-gpu-vbios-rim-cert-chain",
        "x-nvidia-gpu-driver-rim-version-match",
        "x-nvidia-gpu-vbios-rim-version-match",
    ] {
        map.remove(claim);
    }
    for claim in [
        "x-nvidia-gpu-attestation-report-cert-chain-validated",
        "x-nvidia-gpu-driver-rim-cert-validated",
        "x-nvidia-gpu-vbios-rim-cert-validated",
    ] {
        map.insert(claim.to_string(), json!(true));
    }
    claims
}

/// The overall token's claims (claims version 3.0, overall result true) over `submods`, issued
/// at `issued_at` for the nonce `nonce_hex`, expiring an hour later.
pub fn overall_claims_v3(nonce_hex: &str, issued_at: i64, submods: Value) -> Value {
    json!({
        "sub": "NVIDIA-PLATFORM-ATTESTATION",
        "x-nvidia-ver": "3.0",
        "iss": NRAS_ISSUER,
        "x-nvidia-overall-att-result": true,
        "submods": submods,
        "eat_nonce": nonce_hex,
        "iat": issued_at,
        "nbf": issued_at,
        "exp": issued_at + 3600,
        "jti": "00000000-0000-4000-8000-000000000000",
    })
}
