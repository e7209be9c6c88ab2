//! Canary chat signatures on NEAR AI's real vectors: EIP-191 recovery, the signed hashes of the
//! exact bodies, and one-byte changes that must fail naming the half.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use serde_json::{Value, json};
use teewatch::verify::bundle::CanaryExchange;
use teewatch::verify::canary::{self, NodeKey};
use teewatch::verify::{Outcome, State};

fn vectors() -> Vec<Value> {
    let path = common::repo_path("tests/vectors/provider/nearai/signature_vectors.json");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    doc["vectors"].as_array().unwrap().clone()
}

fn address_hex(text: &str) -> String {
    text.trim_start_matches("0x").to_ascii_lowercase()
}

/// The exchange of the first vector, as teewatch would have recorded it, with our nonce spliced
/// into a copy of the request only where a test says so.
fn exchange(v: &Value) -> CanaryExchange {
    CanaryExchange {
        stream: true,
        request_body: v["request_body_exact"].as_str().unwrap().to_string(),
        response_body: v["response_body_exact"]
            .as_str()
            .unwrap()
            .as_bytes()
            .to_vec(),
        signature: Some(v["signature_response"].clone()),
    }
}

fn node(address: &str, bound: bool) -> NodeKey {
    NodeKey {
        scope: String::new(),
        address: address_hex(address),
        bound,
        serves_inference: true,
    }
}

#[test]
fn every_vector_recovers_to_its_stated_address() {
    for v in vectors() {
        let sig = &v["signature_response"];
        let recovered = canary::recover_eip191(
            sig["text"].as_str().unwrap(),
            sig["signature"].as_str().unwrap(),
        )
        .unwrap();
        assert_eq!(
            hex::encode(recovered),
            address_hex(sig["signing_address"].as_str().unwrap())
        );
    }
}

#[test]
fn hashes_reproduce_from_the_exact_bodies_and_the_key_is_attested() {
    let v = &vectors()[0];
    let address = v["signature_response"]["signing_address"].as_str().unwrap();
    let out = canary::judge(&exchange(v), &[0; 32], &[node(address, true)]);
    assert_eq!(out.hashes.state(), State::Pass, "{:?}", out.hashes);
    assert_eq!(out.signature.state(), State::Pass, "{:?}", out.signature);
    // Our nonce is not in NEAR's request: as a canary of ours it would be a replay.
    assert_eq!(out.fresh.state(), State::Fail);
}

#[test]
fn a_one_byte_change_in_either_body_fails_naming_the_half() {
    let v = &vectors()[0];
    let address = v["signature_response"]["signing_address"].as_str().unwrap();
    let nodes = [node(address, true)];

    let mut changed = exchange(v);
    changed.request_body = changed.request_body.replacen("two words", "two wordz", 1);
    let out = canary::judge(&changed, &[0; 32], &nodes);
    assert!(
        matches!(&out.hashes, Outcome::Fail(r) if r.starts_with("response hash matches; request hash differs")),
        "{:?}",
        out.hashes
    );

    let mut changed = exchange(v);
    changed.response_body = String::from_utf8(changed.response_body)
        .unwrap()
        .replacen("chatcmpl", "chatcmpL", 1)
        .into_bytes();
    let out = canary::judge(&changed, &[0; 32], &nodes);
    assert!(
        matches!(&out.hashes, Outcome::Fail(r) if r.starts_with("request hash matches; response hash differs")),
        "{:?}",
        out.hashes
    );
    // The signature itself still recovers: the signed text was not touched.
    assert_eq!(out.signature.state(), State::Pass);
}

#[test]
fn the_signature_must_come_from_an_attested_and_bound_node() {
    let v = &vectors()[0];
    let address = v["signature_response"]["signing_address"].as_str().unwrap();
    let other = "0x1234000000000000000000000000000000000000";
    let out = canary::judge(&exchange(v), &[0; 32], &[node(other, true)]);
    assert!(
        matches!(&out.signature, Outcome::Fail(r) if r.contains("expected the signing address of an attested node [0x1234")),
        "{:?}",
        out.signature
    );
    let out = canary::judge(&exchange(v), &[0; 32], &[node(address, false)]);
    assert_eq!(out.signature.state(), State::Unknown);
    // A signature from another key over the same text.
    let mut forged = exchange(v);
    let other_sig = vectors()[1]["signature_response"]["signature"].clone();
    forged.signature.as_mut().unwrap()["signature"] = other_sig;
    let out = canary::judge(&forged, &[0; 32], &[node(address, true)]);
    assert_eq!(out.signature.state(), State::Fail);
    assert!(
        matches!(&out.signature, Outcome::Fail(r) if r.contains("(the response claims 0xcaaa")),
        "{:?}",
        out.signature
    );
}

#[test]
fn model_prefixed_text_and_python_json_dumps_form_are_accepted() {
    // A non-streaming reply sent compactly but hashed by the proxy in Python's json.dumps form.
    let request = r#"{"model":"m","messages":[{"role":"user","content":"nonce 00"}]}"#;
    let response =
        r#"{"id":"x","choices":[{"message":{"content":"héllo"}}],"usage":{"total_tokens":3}}"#;
    let dumped = canary::python_json_dumps(&serde_json::from_str(response).unwrap());
    assert_eq!(
        dumped,
        r#"{"id": "x", "choices": [{"message": {"content": "h\u00e9llo"}}], "usage": {"total_tokens": 3}}"#
    );
    let text = format!(
        "TEE/gpt-oss:120b:{}:{}",
        hex::encode(sha2_256(request.as_bytes())),
        hex::encode(sha2_256(dumped.as_bytes()))
    );
    let exchange = CanaryExchange {
        stream: false,
        request_body: request.into(),
        response_body: response.into(),
        signature: Some(json!({"text": text, "signature": "0x00", "signing_algo": "ecdsa"})),
    };
    let out = canary::judge(&exchange, &[0; 32], &[]);
    assert!(
        matches!(&out.hashes, Outcome::Pass(r) if r.contains("model TEE/gpt-oss:120b") && r.contains("response as python json.dumps form")),
        "{:?}",
        out.hashes
    );
    assert!(
        matches!(&out.signature, Outcome::Fail(r) if r.starts_with("signature: expected 65 bytes")),
        "{:?}",
        out.signature
    );
}

#[test]
fn a_missing_signature_is_unknown_not_fail() {
    let v = &vectors()[0];
    let mut ex = exchange(v);
    ex.signature = None;
    let out = canary::judge(&ex, &[0; 32], &[]);
    assert_eq!(out.hashes.state(), State::Unknown);
    assert_eq!(out.signature.state(), State::Unknown);
}

fn sha2_256(bytes: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).to_vec()
}
