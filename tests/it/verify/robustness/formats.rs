//! Robustness of the NEAR AI formats: garbage in every field of every part, in the part lists
//! themselves and in the recorded TLS peer. Nothing may panic, the check that reads a broken field
//! never passes, and a verdict with a broken field the verifier reads is never a pass. Fields it
//! does not read as evidence (claims such as `vm_config`, echoes such as `nonce`) may hold garbage
//! without changing the verdict, and a null optional field is the same as an absent one.
//!
//! The bundles changed are healthy simulator bundles whose verdicts pass (asserted first), so
//! every "does not pass" below is the garbage's doing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use crate::common;

use serde_json::{Value, json};
use teewatch::verify::State;

fn garbage() -> Vec<Value> {
    vec![
        Value::Null,
        json!(true),
        json!(-1),
        json!(""),
        json!("zz"),
        json!("0x"),
        json!("00"),
        json!("ab".repeat(33)),
        json!([]),
        json!({}),
        json!([1, "a", null]),
        json!("\u{0000}\u{ffff}"),
    ]
}

/// Whether a garbage value in `field` must keep the verdict from passing: the field is read as
/// evidence and the value is not the null that means "absent" for an optional field.
fn breaks_the_verdict(field: &str, bad: &Value) -> bool {
    let optional = matches!(field, "signing_public_key" | "actions_hash" | "event_log");
    if optional && bad.is_null() {
        return false;
    }
    reader_of(field).is_some() || matches!(field, "info" | "signing_public_key" | "actions_hash")
}

/// The check that reads `field` of a part, which must not pass when the field is garbage.
fn reader_of(field: &str) -> Option<&'static str> {
    match field {
        "intel_quote" | "quote" => Some("tdx_quote_signature"),
        "actions" => Some("report_data_binding"),
        "signing_address" | "signing_algo" => Some("report_data_binding"),
        "tls_cert_fingerprint" => Some("report_data_binding"),
        "nvidia_payload" => Some("gpu_evidence_signature"),
        "event_log" => Some("event_log_replay"),
        _ => None,
    }
}

#[test]
fn garbage_in_every_field_of_every_near_part_never_passes_or_panics() {
    for name in ["near-gateway-ed25519", "near-direct-3-nodes"] {
        let (base, config) = common::format_case(name);
        // Control: the unchanged bundle passes, every reader check of every part included.
        let control = common::verify_format_case(base.clone(), &config);
        assert_eq!(
            control.state,
            State::Pass,
            "{name}: {:#?}",
            common::sim_run::failing(&control)
        );
        // (JSON pointer of a part, its scope in the verdict)
        let parts: Vec<(String, String)> = if name.starts_with("near-gateway") {
            let models = base["attestation"]["model_attestations"]
                .as_array()
                .unwrap()
                .len();
            std::iter::once(("/attestation/gateway_attestation".into(), "gateway".into()))
                .chain((0..models).map(|i| {
                    (
                        format!("/attestation/model_attestations/{i}"),
                        format!("model:{i}"),
                    )
                }))
                .collect()
        } else {
            vec![(
                "/attestation/compose_manager_attestation".into(),
                "compose_manager".into(),
            )]
        };
        for (pointer, scope) in &parts {
            let fields: Vec<String> = base
                .pointer(pointer)
                .unwrap()
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect();
            for field in &fields {
                for bad in garbage() {
                    let mut value = base.clone();
                    value.pointer_mut(pointer).unwrap()[field.as_str()] = bad.clone();
                    let v = common::verify_format_case(value, &config);
                    let what = format!("{name} {scope}.{field} = {bad}");
                    // A null `event_log` means "take the one in info.tcb_info" (documented), which
                    // is intact here.
                    let falls_back = field == "event_log" && bad.is_null();
                    if let Some(reader) = reader_of(field).filter(|_| !falls_back) {
                        let passed = v
                            .checks
                            .iter()
                            .filter(|c| c.name == reader)
                            // The part itself and its GPUs; a compose manager nested in a
                            // model part (`model:0/compose_manager`) is a part of its own.
                            .filter(|c| {
                                c.scope == *scope || c.scope.starts_with(&format!("{scope}/gpu:"))
                            })
                            .any(|c| c.state == State::Pass);
                        // A part without GPU evidence gets no GPU check at all, which is fine for
                        // the CPU-only parts only.
                        assert!(!passed, "{what}: {reader} passed");
                    }
                    if breaks_the_verdict(field, &bad) {
                        assert_ne!(v.state, State::Pass, "{what}");
                    }
                }
            }
        }
    }
}

#[test]
fn garbage_part_lists_and_tls_peers_are_judged_without_panic() {
    let (base, config) = common::format_case("near-gateway-ed25519");
    // Control: the unchanged bundle passes, its TLS binding included.
    let control = common::verify_format_case(base.clone(), &config);
    assert_eq!(
        control.state,
        State::Pass,
        "{:#?}",
        common::sim_run::failing(&control)
    );
    assert!(
        control
            .checks_named("tls_key_binding")
            .any(|c| c.state == State::Pass),
        "control: tls_key_binding passes"
    );
    for key in ["gateway_attestation", "model_attestations"] {
        for bad in garbage() {
            let mut value = base.clone();
            value["attestation"][key] = bad.clone();
            let v = common::verify_format_case(value, &config);
            assert_ne!(v.state, State::Pass, "{key} = {bad}");
        }
    }
    // Model entries that are not objects are kept as empty parts and fail, never skipped.
    let mut value = base.clone();
    value["attestation"]["model_attestations"] = json!([42, "x"]);
    let v = common::verify_format_case(value, &config);
    let parse: Vec<_> = v
        .checks_named("tdx_quote_parse")
        .map(|c| (c.scope.as_str(), c.state))
        .collect();
    assert_eq!(
        parse,
        [
            ("gateway", State::Pass),
            ("model:0", State::Fail),
            ("model:1", State::Fail)
        ]
    );
    for bad in ["", "!!!", "AAAA", "not base64 at all"] {
        let mut value = base.clone();
        value["tls_peer_spki"] = json!(bad);
        let v = common::verify_format_case(value, &config);
        assert!(
            v.checks_named("tls_key_binding")
                .all(|c| c.state != State::Pass),
            "tls_peer_spki = {bad:?}"
        );
    }
}
