//! Canary chat signatures on NEAR AI's real vectors: EIP-191 recovery, the signed hashes of the
//! exact bodies, and one-byte changes that must fail naming the half. Then the bytes themselves:
//! the json.dumps form only for a compact body without duplicate keys, a response that is not
//! UTF-8 stored as base64 and hashed as received, and the fetcher recording such a response
//! byte-exact from a loopback provider.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use crate::common;

use base64::Engine as _;
use serde_json::{Value, json};
use teewatch::verify::bundle::{Bundle, CanaryExchange};
use teewatch::verify::canary::{self, PartKey};
use teewatch::verify::{Outcome, State, Verdict};

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

fn node(address: &str, bound: bool) -> PartKey {
    PartKey {
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

fn sha_hex(bytes: &[u8]) -> String {
    hex::encode(sha2_256(bytes))
}

/// The real NEAR bundle with only its canary list replaced, verified under its own policy.
fn verdict_with_canary(entries: Vec<Value>) -> Verdict {
    let mut value = common::bundle_json("nearai-canary");
    value["canary"] = Value::Array(entries);
    common::verdict(&common::from_json(value))
}

const REQUEST: &str = r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":false}"#;

/// A compact non-streamed reply, as vllm sends it.
const HONEST: &str =
    r#"{"id":"x","choices":[{"message":{"content":"ok"}}],"usage":{"total_tokens":3}}"#;

/// A non-streamed canary entry whose provider signed `signed_response` as the response.
fn entry(response: &str, signed_response: &str) -> Value {
    json!({
        "stream": false,
        "request_body": REQUEST,
        "response_body": response,
        "signature": {
            "text": format!("{}:{}", sha_hex(REQUEST.as_bytes()), sha_hex(signed_response.as_bytes())),
            "signature": "0x00",
            "signing_algo": "ecdsa",
        },
    })
}

fn dumps_of(body: &str) -> String {
    canary::python_json_dumps(&serde_json::from_str(body).unwrap())
}

#[test]
fn a_compact_body_signed_in_its_json_dumps_form_still_passes() {
    // Some dstack vllm-proxy versions send compact JSON and sign json.dumps of its parse.
    let verdict = verdict_with_canary(vec![entry(HONEST, &dumps_of(HONEST))]);
    let (state, reason) = common::check(&verdict, "canary_hashes", "canary:0");
    assert_eq!(state, State::Pass, "{reason}");
    assert_eq!(
        reason,
        "signed text matches the exchange (request as raw bytes, response as python json.dumps form)"
    );
}

#[test]
fn a_duplicate_choices_key_fails_although_its_json_dumps_form_is_signed() {
    // The attack: the provider signs json.dumps of an honest parse and sends a body whose first
    // `choices` says something else. Parsers that keep the last duplicate (serde_json, Python)
    // read the honest answer; those that keep the first read the other one.
    let attack = HONEST.replacen(
        r#""choices":"#,
        r#""choices":[{"message":{"content":"send your key to evil.example"}}],"choices":"#,
        1,
    );
    assert_eq!(dumps_of(&attack), dumps_of(HONEST));
    let verdict = verdict_with_canary(vec![
        entry(HONEST, &dumps_of(HONEST)),
        entry(&attack, &dumps_of(HONEST)),
    ]);
    assert_eq!(
        common::check(&verdict, "canary_hashes", "canary:0").0,
        State::Pass
    );
    let (state, reason) = common::check(&verdict, "canary_hashes", "canary:1");
    assert_eq!(state, State::Fail, "{reason}");
    assert_eq!(
        reason,
        format!(
            "request hash matches; response hash differs: expected {} (raw bytes), found {} (the hash of its python json.dumps form); response body has a duplicate key `choices`: the json.dumps form is not accepted",
            sha_hex(attack.as_bytes()),
            sha_hex(dumps_of(HONEST).as_bytes())
        )
    );
}

#[test]
fn a_non_compact_body_fails_although_its_json_dumps_form_is_signed() {
    let spaced = HONEST.replacen(r#""id":"x","#, r#""id":"x", "#, 1);
    assert_eq!(dumps_of(&spaced), dumps_of(HONEST));
    let verdict = verdict_with_canary(vec![entry(&spaced, &dumps_of(HONEST))]);
    let (state, reason) = common::check(&verdict, "canary_hashes", "canary:0");
    assert_eq!(state, State::Fail, "{reason}");
    assert!(
        reason.ends_with("(the hash of its python json.dumps form); response body is not the compact serialisation of its own parse (whitespace at byte 10): the json.dumps form is not accepted"),
        "{reason}"
    );
}

/// A streamed reply with a byte that is not UTF-8 (a Latin-1 `é`) inside a chunk.
const NOT_UTF8: &[u8] =
    b"data: {\"id\":\"chat-s\",\"choices\":[{\"delta\":{\"content\":\"caf\xe9\"}}]}\n\ndata: [DONE]\n\n";

/// A streamed canary entry for `response`, signed over those exact bytes.
fn bytes_entry(response: &[u8], signed_response: &[u8]) -> Value {
    let exchange = CanaryExchange {
        stream: true,
        request_body: REQUEST.replace("false", "true"),
        response_body: response.to_vec(),
        signature: Some(json!({
            "text": format!("{}:{}", sha_hex(REQUEST.replace("false", "true").as_bytes()), sha_hex(signed_response)),
            "signature": "0x00",
            "signing_algo": "ecdsa",
        })),
    };
    serde_json::to_value(&exchange).unwrap()
}

#[test]
fn a_response_that_is_not_utf8_round_trips_as_base64_and_hashes_as_received() {
    let written = bytes_entry(NOT_UTF8, NOT_UTF8);
    assert!(written.get("response_body").is_none(), "{written}");
    assert_eq!(
        written["response_body_base64"],
        base64::engine::general_purpose::STANDARD.encode(NOT_UTF8)
    );

    // Through a whole bundle as text and back: the same bytes, written the same way.
    let mut value = common::bundle_json("nearai-canary");
    value["canary"] = json!([written.clone()]);
    let bundle = Bundle::from_json(&value.to_string()).unwrap();
    let exchanges = bundle.canary.as_deref().unwrap();
    assert_eq!(exchanges[0].response_body, NOT_UTF8);
    assert_eq!(Bundle::from_json(&bundle.to_json_pretty()).unwrap(), bundle);
    assert_eq!(serde_json::to_value(&bundle).unwrap()["canary"][0], written);
    let verdict = common::verdict(&bundle);
    let (state, reason) = common::check(&verdict, "canary_hashes", "canary:0");
    assert_eq!(state, State::Pass, "{reason}");

    // One byte flipped in the stored response: the signed hash no longer matches.
    let mut flipped = NOT_UTF8.to_vec();
    flipped[10] ^= 0x01;
    let verdict = verdict_with_canary(vec![bytes_entry(&flipped, NOT_UTF8)]);
    let (state, reason) = common::check(&verdict, "canary_hashes", "canary:0");
    assert_eq!(state, State::Fail, "{reason}");
    assert!(
        reason.starts_with(&format!(
            "request hash matches; response hash differs: expected {} (raw bytes), found {}",
            sha_hex(&flipped),
            sha_hex(NOT_UTF8)
        )),
        "{reason}"
    );
}

#[test]
fn bundles_with_text_bodies_write_them_back_unchanged() {
    let value = common::bundle_json("nearai-canary");
    let bundle = common::from_json(value.clone());
    assert_eq!(
        serde_json::to_value(&bundle).unwrap()["canary"],
        value["canary"]
    );
}

#[test]
fn a_canary_entry_carries_exactly_one_response_field() {
    let mut both = bytes_entry(NOT_UTF8, NOT_UTF8);
    both["response_body"] = json!("text");
    let mut neither = bytes_entry(NOT_UTF8, NOT_UTF8);
    neither
        .as_object_mut()
        .unwrap()
        .remove("response_body_base64");
    let mut bad = bytes_entry(NOT_UTF8, NOT_UTF8);
    bad["response_body_base64"] = json!("not base64!");
    for (entry, reason) in [
        (
            both,
            "canary entry: expected exactly one of `response_body` and `response_body_base64`, found both",
        ),
        (
            neither,
            "canary entry: expected exactly one of `response_body` and `response_body_base64`, found neither",
        ),
        (
            bad,
            "canary entry `response_body_base64`: expected standard base64, found invalid base64 (invalid symbol 32, offset 3)",
        ),
    ] {
        let mut value = common::bundle_json("nearai-canary");
        value["canary"] = json!([entry]);
        let error = Bundle::from_value(value).unwrap_err();
        assert_eq!(error.to_string(), format!("field `canary`: {reason}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fetcher_stores_a_response_that_is_not_utf8_byte_exact() {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use axum::extract::{Path, State as Shared};
    use axum::routing::{get, post};
    use teewatch::config::Config;
    use teewatch::fetch::check::Fetcher;
    use teewatch::fetch::http::{Http, HttpOptions};

    const NON_STREAMED: &[u8] =
        b"{\"id\":\"chat-n\",\"choices\":[{\"message\":{\"content\":\"caf\xe9\"}}]}";
    // A provider that answers bytes that are not UTF-8 and signs the hashes of the exact bytes it
    // received and sent.
    type Signed = Arc<Mutex<HashMap<String, String>>>;
    let app = axum::Router::new()
        .route(
            "/v1/attestation/report",
            get(|| async { axum::Json(json!({})) }),
        )
        .route(
            "/v1/chat/completions",
            post(
                |Shared(signed): Shared<Signed>, request: axum::body::Bytes| async move {
                    let stream =
                        serde_json::from_slice::<Value>(&request).unwrap()["stream"] == true;
                    let (id, answer) = if stream {
                        ("chat-s", NOT_UTF8)
                    } else {
                        ("chat-n", NON_STREAMED)
                    };
                    let text = format!("{}:{}", sha_hex(&request), sha_hex(answer));
                    signed.lock().unwrap().insert(id.to_string(), text);
                    answer
                },
            ),
        )
        .route(
            "/v1/signature/{id}",
            get(
                |Shared(signed): Shared<Signed>, Path(id): Path<String>| async move {
                    let text = signed.lock().unwrap().get(&id).cloned().unwrap();
                    axum::Json(json!({"text": text, "signature": "0x00", "signing_algo": "ecdsa"}))
                },
            ),
        )
        .with_state(Signed::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = std::env::temp_dir().join(format!("teewatch-canary-bytes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("key"), "test-key").unwrap();
    let text = format!(
        "[[target]]\nname = \"bytes\"\nprofile = \"vllm-proxy\"\nbase_url = \"http://{address}\"\nmodel = \"m\"\napi_key_file = \"key\"\ninterval = \"10s\"\n\n[target.canary]\nsignature_wait_seconds = 1\n"
    );
    let config = Config::parse_in(&text, "bytes.toml", &dir).unwrap_or_else(|e| panic!("{e}"));
    let fetcher = Fetcher::new(Http::new(HttpOptions::for_config(&config)).unwrap(), None);
    let fetched = fetcher
        .check(&config, config.target("bytes").unwrap())
        .await
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();

    // The non-streamed chat, then the streamed one, each as the base64 of the bytes sent.
    let entries = fetched["canary"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{fetched:#}");
    for (entry, sent) in entries.iter().zip([NON_STREAMED, NOT_UTF8]) {
        assert!(entry.get("response_body").is_none(), "{entry}");
        assert_eq!(
            entry["response_body_base64"],
            base64::engine::general_purpose::STANDARD.encode(sent)
        );
    }
    let bundle = common::from_json(fetched);
    for (exchange, sent) in bundle
        .canary
        .as_deref()
        .unwrap()
        .iter()
        .zip([NON_STREAMED, NOT_UTF8])
    {
        assert_eq!(exchange.response_body, sent);
        let out = canary::judge(exchange, &bundle.nonce_bytes(), &[]);
        assert_eq!(out.fresh.state(), State::Pass, "{:?}", out.fresh);
        assert_eq!(out.hashes.state(), State::Pass, "{:?}", out.hashes);
    }
}
