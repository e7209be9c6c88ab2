//! Tests of the OHTTP attestation judgement: a valid binding for the gateway and for a model,
//! unbound keys left unknown, and one test per way a statement can be missing, malformed or
//! signed by the wrong key.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use serde_json::json;

use super::*;
use crate::report;
use crate::verdict::AttestationFormat;

/// An OHTTP key configuration as RFC 9458 writes one: key id 1, KEM X25519 (0x0020), its
/// 32-byte public key, then one suite: HKDF-SHA256 (0x0001) with AES-128-GCM (0x0001).
fn config_hex() -> String {
    format!("010020{}000400010001", "11".repeat(32))
}

fn key_pair() -> Ed25519KeyPair {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()
}

fn public(key: &Ed25519KeyPair) -> String {
    hexutil::lower(key.public_key().as_ref())
}

/// `ohttp_attestation` over `config` (hex) signed by `key`, naming `key` as signer.
fn statement(key: &Ed25519KeyPair, config: &str) -> Value {
    json!({
        "signing_algo": "ed25519",
        "signing_key": public(key),
        "key_config": config,
        "signature": hexutil::lower(key.sign(&hexutil::decode(config).unwrap()).as_ref()),
    })
}

/// The keys of a NEAR gateway answer: the gateway's and two models'.
struct Keys {
    gateway: Ed25519KeyPair,
    model: Ed25519KeyPair,
    other_model: Ed25519KeyPair,
}

fn keys() -> Keys {
    Keys {
        gateway: key_pair(),
        model: key_pair(),
        other_model: key_pair(),
    }
}

/// A NEAR gateway answer whose gateway (top level) and `model:0` carry a valid OHTTP
/// binding; `model:1` carries none.
fn answer(k: &Keys) -> Value {
    json!({
        "gateway_attestation": {"signing_address": public(&k.gateway), "signing_algo": "ed25519"},
        "ohttp_key_config": config_hex(),
        "ohttp_attestation": statement(&k.gateway, &config_hex()),
        "model_attestations": [
            {
                "signing_address": public(&k.model),
                "signing_algo": "ed25519",
                "ohttp_key_config": config_hex(),
                "ohttp_attestation": statement(&k.model, &config_hex()),
            },
            {"signing_address": public(&k.other_model), "signing_algo": "ed25519"},
        ],
    })
}

/// The recorded `ohttp_key_binding` checks as (scope, state, reason), with
/// `report_data_binding` passed for the `bound` scopes.
fn judged(answer: &Value, bound: &[&str]) -> Vec<(String, State, String)> {
    let parts = report::parts(answer, AttestationFormat::NearGateway);
    let mut rec = Recorder::default();
    for scope in bound {
        rec.check(REPORT_DATA_BINDING, scope, Outcome::Pass(String::new()));
    }
    judge(answer, &parts, &mut rec);
    rec.checks
        .into_iter()
        .filter(|c| c.name == OHTTP_KEY_BINDING)
        .map(|c| (c.scope, c.state, c.reason))
        .collect()
}

const ALL: &[&str] = &["gateway", "model:0", "model:1"];

/// The one check of `scope`.
fn one(answer: &Value, scope: &str) -> (State, String) {
    let found: Vec<_> = judged(answer, ALL)
        .into_iter()
        .filter(|(s, _, _)| s == scope)
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    let (_, state, reason) = found.into_iter().next().unwrap();
    (state, reason)
}

fn fails(answer: &Value, scope: &str, expected: &str) {
    assert_eq!(one(answer, scope), (State::Fail, expected.to_string()));
}

#[test]
fn a_valid_binding_passes_for_the_gateway_and_the_model_that_carries_one() {
    let k = keys();
    let checks = judged(&answer(&k), ALL);
    let scopes: Vec<&str> = checks.iter().map(|(s, _, _)| s.as_str()).collect();
    assert_eq!(scopes, ["gateway", "model:0"], "model:1 carries none");
    for ((scope, state, reason), key) in checks.iter().zip([&k.gateway, &k.model]) {
        assert_eq!(*state, State::Pass, "{scope}: {reason}");
        assert_eq!(
            *reason,
            format!(
                "ohttp key_config {} is signed (ed25519) by the attested key {} of {scope} and equals the sibling ohttp_key_config",
                config_hex(),
                public(key)
            )
        );
    }
}

#[test]
fn keys_and_configs_compare_as_bytes_not_as_text() {
    let k = keys();
    let mut a = answer(&k);
    a["ohttp_attestation"]["signing_key"] = json!(public(&k.gateway).to_uppercase());
    a["ohttp_key_config"] = json!(format!("0x{}", config_hex().to_uppercase()));
    a["gateway_attestation"]["signing_address"] = json!(format!("0x{}", public(&k.gateway)));
    assert_eq!(one(&a, "gateway").0, State::Pass);
}

#[test]
fn absent_or_null_ohttp_attestation_records_nothing() {
    let k = keys();
    let mut a = answer(&k);
    a.as_object_mut().unwrap().remove("ohttp_attestation");
    a["model_attestations"][0]["ohttp_attestation"] = Value::Null;
    assert_eq!(judged(&a, ALL), []);
    // A key configuration alone is not judged either: nothing claims it is attested.
    assert!(a["ohttp_key_config"].is_string());
}

#[test]
fn the_gateway_binding_is_read_from_the_top_level_only() {
    let k = keys();
    let mut a = answer(&k);
    let top = a.as_object_mut().unwrap();
    let statement = top.remove("ohttp_attestation").unwrap();
    a["gateway_attestation"]["ohttp_attestation"] = statement;
    let checks = judged(&a, ALL);
    assert!(checks.iter().all(|(s, _, _)| s != "gateway"), "{checks:?}");
}

#[test]
fn a_top_level_binding_without_a_gateway_fails() {
    let k = keys();
    let mut a = answer(&k);
    a.as_object_mut().unwrap().remove("gateway_attestation");
    fails(
        &a,
        "gateway",
        "ohttp_attestation at the top level belongs to the gateway, and the answer has no gateway_attestation whose key could have signed it",
    );
    assert_eq!(one(&a, "model:0").0, State::Pass);
}

#[test]
fn an_unbound_key_is_unknown() {
    let k = keys();
    let checks = judged(&answer(&k), &["gateway"]);
    assert_eq!(
        checks[1],
        (
            "model:0".to_string(),
            State::Unknown,
            "report_data_binding of model:0 did not pass, so its key is not attested".to_string()
        )
    );
    assert_eq!(checks[0].1, State::Pass);
}

#[test]
fn a_part_without_a_readable_signing_address_is_unknown() {
    let k = keys();
    let mut a = answer(&k);
    a["model_attestations"][0]["signing_address"] = json!("not hex");
    let checks = judged(&a, &["gateway"]);
    assert_eq!(checks[1].1, State::Unknown, "{checks:?}");
    assert_eq!(
        checks[1].2,
        "report_data_binding of model:0 did not pass, so its key is not attested"
    );
}

#[test]
fn a_defect_fails_even_when_the_key_is_not_bound() {
    let k = keys();
    let mut a = answer(&k);
    a["model_attestations"][0]["ohttp_key_config"] = json!("00");
    let checks = judged(&a, &[]);
    assert_eq!(
        checks[1],
        (
            "model:0".to_string(),
            State::Fail,
            format!(
                "ohttp key_config: expected the sibling ohttp_key_config 00, found {}",
                config_hex()
            )
        )
    );
}

#[test]
fn a_strangers_signing_key_fails() {
    let k = keys();
    let stranger = key_pair();
    let mut a = answer(&k);
    a["model_attestations"][0]["ohttp_attestation"] = statement(&stranger, &config_hex());
    fails(
        &a,
        "model:0",
        &format!(
            "ohttp signing_key: expected the attested key {} of model:0, found {}",
            public(&k.model),
            public(&stranger)
        ),
    );
}

#[test]
fn another_parts_signing_key_fails() {
    let k = keys();
    let mut a = answer(&k);
    a["ohttp_attestation"] = statement(&k.model, &config_hex());
    fails(
        &a,
        "gateway",
        &format!(
            "ohttp signing_key: expected the attested key {} of gateway, found {}",
            public(&k.gateway),
            public(&k.model)
        ),
    );
}

#[test]
fn a_signature_by_another_key_fails() {
    let k = keys();
    let mut a = answer(&k);
    let forged = statement(&key_pair(), &config_hex());
    a["ohttp_attestation"]["signature"] = forged["signature"].clone();
    fails(
        &a,
        "gateway",
        &format!(
            "ohttp signature over key_config does not verify under {}",
            public(&k.gateway)
        ),
    );
}

#[test]
fn a_signature_over_other_bytes_fails() {
    let k = keys();
    let mut a = answer(&k);
    let other = statement(&k.model, "02");
    a["model_attestations"][0]["ohttp_attestation"]["signature"] = other["signature"].clone();
    fails(
        &a,
        "model:0",
        &format!(
            "ohttp signature over key_config does not verify under {}",
            public(&k.model)
        ),
    );
}

#[test]
fn a_signed_config_that_is_not_the_sibling_fails() {
    let k = keys();
    let mut a = answer(&k);
    a["model_attestations"][0]["ohttp_key_config"] = json!("0102");
    fails(
        &a,
        "model:0",
        &format!(
            "ohttp key_config: expected the sibling ohttp_key_config 0102, found {}",
            config_hex()
        ),
    );
}

#[test]
fn a_missing_sibling_fails() {
    let k = keys();
    let mut a = answer(&k);
    a.as_object_mut().unwrap().remove("ohttp_key_config");
    fails(
        &a,
        "gateway",
        "ohttp_key_config: expected a hex string, found none",
    );
}

#[test]
fn a_wrong_signing_algo_fails() {
    let k = keys();
    let mut a = answer(&k);
    a["ohttp_attestation"]["signing_algo"] = json!("ecdsa");
    fails(
        &a,
        "gateway",
        "ohttp signing_algo: expected \"ed25519\", found \"ecdsa\"",
    );
}

#[test]
fn a_missing_signing_algo_fails() {
    let k = keys();
    let mut a = answer(&k);
    a["ohttp_attestation"]
        .as_object_mut()
        .unwrap()
        .remove("signing_algo");
    fails(
        &a,
        "gateway",
        "ohttp signing_algo: expected \"ed25519\", found none",
    );
}

#[test]
fn a_statement_that_is_not_an_object_fails() {
    let k = keys();
    let mut a = answer(&k);
    a["ohttp_attestation"] = json!("signed");
    fails(
        &a,
        "gateway",
        "ohttp_attestation: expected an object, found a string",
    );
}

#[test]
fn a_signing_key_that_is_not_a_string_fails() {
    let k = keys();
    let mut a = answer(&k);
    a["ohttp_attestation"]["signing_key"] = json!(7);
    fails(
        &a,
        "gateway",
        "ohttp signing_key: expected a hex string, found a number",
    );
}

#[test]
fn a_signing_key_that_is_not_hex_fails() {
    let k = keys();
    let mut a = answer(&k);
    a["ohttp_attestation"]["signing_key"] = json!("zz");
    fails(
        &a,
        "gateway",
        "ohttp signing_key is not hex: invalid hex character 'z' at position 0",
    );
}

#[test]
fn a_signing_key_of_the_wrong_length_fails() {
    let k = keys();
    let mut a = answer(&k);
    a["ohttp_attestation"]["signing_key"] = json!(&public(&k.gateway)[..40]);
    fails(
        &a,
        "gateway",
        "ohttp signing_key: expected 32 bytes, found 20 bytes",
    );
}

#[test]
fn a_key_config_that_is_not_hex_fails() {
    let k = keys();
    let mut a = answer(&k);
    a["ohttp_attestation"]["key_config"] = json!("abc");
    fails(
        &a,
        "gateway",
        "ohttp key_config is not hex: odd number of hex digits (3)",
    );
}

#[test]
fn an_empty_key_config_fails() {
    let k = keys();
    let mut a = answer(&k);
    a["ohttp_attestation"]["key_config"] = json!("");
    fails(
        &a,
        "gateway",
        "ohttp key_config: expected at least 1 byte, found 0 bytes",
    );
}

#[test]
fn a_missing_signature_fails() {
    let k = keys();
    let mut a = answer(&k);
    a["ohttp_attestation"]
        .as_object_mut()
        .unwrap()
        .remove("signature");
    fails(
        &a,
        "gateway",
        "ohttp signature: expected a hex string, found none",
    );
}

#[test]
fn a_signature_of_the_wrong_length_fails() {
    let k = keys();
    let mut a = answer(&k);
    a["ohttp_attestation"]["signature"] = json!("00".repeat(65));
    fails(
        &a,
        "gateway",
        "ohttp signature: expected 64 bytes, found 65 bytes",
    );
}

#[test]
fn long_values_are_shortened_in_reasons() {
    let long = vec![0xab; 300];
    assert_eq!(shown(&long), format!("{}… (300 bytes)", "ab".repeat(32)));
    assert_eq!(quoted(&"x".repeat(70)), format!("\"{}\"…", "x".repeat(64)));
}

#[test]
fn garbage_never_panics() {
    let k = keys();
    let garbage = [
        Value::Null,
        json!(true),
        json!(1),
        json!("x"),
        json!([]),
        json!({}),
        json!({"signing_algo": "ed25519"}),
        json!({"signing_algo": "ed25519", "signing_key": "", "key_config": "", "signature": ""}),
        json!({"signing_algo": ["ed25519"], "signing_key": {}, "key_config": 1, "signature": null}),
    ];
    for value in garbage {
        for sibling in [Value::Null, json!(1), json!("zz"), json!(config_hex())] {
            let mut a = answer(&k);
            a["ohttp_attestation"] = value.clone();
            a["ohttp_key_config"] = sibling.clone();
            a["model_attestations"][0]["ohttp_attestation"] = value.clone();
            a["model_attestations"][0]["ohttp_key_config"] = sibling;
            for (_, state, _) in judged(&a, ALL) {
                assert_ne!(state, State::Pass, "{value}");
            }
        }
    }
    // Not an object at all, and a dstack node with the empty scope.
    judged(&json!([1, 2]), ALL);
    let node = json!({"signing_address": public(&k.model), "ohttp_attestation": statement(&k.model, &config_hex()), "ohttp_key_config": config_hex()});
    let parts = report::parts(&node, AttestationFormat::Dstack);
    let mut rec = Recorder::default();
    judge(&node, &parts, &mut rec);
    assert_eq!(
        rec.checks[0].reason,
        "report_data_binding of the node did not pass, so its key is not attested"
    );
}
