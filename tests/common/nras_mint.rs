//! Minting NRAS-shaped answers with the test PKI in `tests/fixtures/nras_test_pki/`: ES384
//! tokens, the JWKS that publishes their keys, submod digests and the detached EAT around them.
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

/// Signs `claims` under `header` as a compact ES384 JWS.
pub fn mint_with_header(header: &Value, claims: &Value, signer: &Signer) -> String {
    let input = format!(
        "{}.{}",
        b64u(header.to_string().as_bytes()),
        b64u(claims.to_string().as_bytes())
    );
    let signature = signer
        .key
        .sign(&SystemRandom::new(), input.as_bytes())
        .unwrap();
    format!("{input}.{}", b64u(signature.as_ref()))
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
