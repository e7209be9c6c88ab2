//! `ohttp_key_binding` through the whole verifier on the simulator's NEAR gateway answer
//! (ed25519 keys). The stored answer carries the gateway's OHTTP attestation at the top level and
//! one per model, each signed by its part's attested key, and all pass. Its parts' private keys
//! are not at hand: the negative tests replace one part's members with ones signed by keys made
//! here and check that a signature the part's key did not make, or a signing key that is not the
//! part's, fails that part's check and nothing else.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use crate::common;

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use serde_json::{Value, json};
use teewatch::verify::hexutil;
use teewatch::verify::{State, Verdict};

const CASE: &str = "near-gateway-ed25519";
const CHECK: &str = "ohttp_key_binding";

/// An RFC 9458 key configuration: key id 1, X25519 with its 32-byte key, HKDF-SHA256 and
/// AES-128-GCM.
fn key_config() -> String {
    format!("010020{}000400010001", "2a".repeat(32))
}

fn key_pair() -> Ed25519KeyPair {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()
}

fn public(key: &Ed25519KeyPair) -> String {
    hexutil::lower(key.public_key().as_ref())
}

/// `ohttp_attestation` naming `signing_key`, with `signer`'s signature over the key config.
fn statement(signing_key: &str, signer: &Ed25519KeyPair) -> Value {
    let config = key_config();
    json!({
        "signing_algo": "ed25519",
        "signing_key": signing_key,
        "key_config": config,
        "signature": hexutil::lower(signer.sign(&hexutil::decode(&config).unwrap()).as_ref()),
    })
}

fn verify(value: Value) -> Verdict {
    let (_, config) = common::format_case(CASE);
    common::verify_format_case(value, &config)
}

/// The verdict's checks other than `ohttp_key_binding`, as (name, scope, state, reason).
fn others(v: &Verdict) -> Vec<(String, String, State, String)> {
    v.checks
        .iter()
        .filter(|c| c.name != CHECK)
        .map(|c| (c.name.clone(), c.scope.clone(), c.state, c.reason.clone()))
        .collect()
}

#[test]
fn the_simulators_ohttp_attestations_pass_for_every_part() {
    let (value, _) = common::format_case(CASE);
    let v = verify(value);
    let scopes: Vec<(&str, State)> = v
        .checks_named(CHECK)
        .map(|c| (c.scope.as_str(), c.state))
        .collect();
    assert_eq!(
        scopes,
        [
            ("gateway", State::Pass),
            ("model:0", State::Pass),
            ("model:1", State::Pass)
        ]
    );
    assert_eq!(v.state, State::Pass);
}

#[test]
fn an_answer_without_ohttp_members_has_no_ohttp_key_binding() {
    let (mut value, _) = common::format_case(CASE);
    let attestation = value["attestation"].as_object_mut().unwrap();
    attestation.remove("ohttp_attestation");
    attestation.remove("ohttp_key_config");
    for model in attestation["model_attestations"].as_array_mut().unwrap() {
        let model = model.as_object_mut().unwrap();
        model.remove("ohttp_attestation");
        model.remove("ohttp_key_config");
    }
    let v = verify(value);
    assert_eq!(v.checks_named(CHECK).count(), 0, "{:#?}", v.checks);
    // The parts' keys are attested, so the failures below are about the OHTTP members alone.
    for scope in ["gateway", "model:0"] {
        assert_eq!(
            common::check(&v, "report_data_binding", scope).0,
            State::Pass
        );
    }
}

#[test]
fn a_signature_the_attested_key_did_not_make_fails() {
    let (mut value, _) = common::format_case(CASE);
    let baseline = verify(value.clone());
    let attestation = &mut value["attestation"];
    let gateway_key = attestation["gateway_attestation"]["signing_address"]
        .as_str()
        .unwrap()
        .to_string();
    // The gateway's key is named, but a fresh key signed the configuration.
    attestation["ohttp_attestation"] = statement(&gateway_key, &key_pair());
    attestation["ohttp_key_config"] = json!(key_config());
    let v = verify(value);
    assert_eq!(
        common::check(&v, CHECK, "gateway"),
        (
            State::Fail,
            format!("ohttp signature over key_config does not verify under {gateway_key}").as_str()
        )
    );
    let states: Vec<State> = v.checks_named(CHECK).map(|c| c.state).collect();
    assert_eq!(states, [State::Fail, State::Pass, State::Pass]);
    assert_eq!(v.state, State::Fail);
    assert_eq!(others(&v), others(&baseline), "nothing else changes");
}

#[test]
fn a_strangers_signing_key_fails() {
    let (mut value, _) = common::format_case(CASE);
    let baseline = verify(value.clone());
    let model = &mut value["attestation"]["model_attestations"][0];
    let model_key = model["signing_address"].as_str().unwrap().to_string();
    // A stranger signed the configuration and names itself: a sound signature, the wrong key.
    let stranger = key_pair();
    model["ohttp_attestation"] = statement(&public(&stranger), &stranger);
    model["ohttp_key_config"] = json!(key_config());
    let v = verify(value);
    assert_eq!(
        common::check(&v, CHECK, "model:0"),
        (
            State::Fail,
            format!(
                "ohttp signing_key: expected the attested key {model_key} of model:0, found {}",
                public(&stranger)
            )
            .as_str()
        )
    );
    assert_eq!(common::check(&v, CHECK, "model:1").0, State::Pass);
    assert_eq!(others(&v), others(&baseline), "nothing else changes");
    // Reported right after `gpu_unique`, before `tls_key_binding`.
    let names: Vec<&str> = v.checks.iter().map(|c| c.name.as_str()).collect();
    let at = names.iter().position(|n| *n == CHECK).unwrap();
    assert_eq!(v.checks[at].scope, "gateway");
    assert_eq!(names[at - 1], "gpu_unique");
}
