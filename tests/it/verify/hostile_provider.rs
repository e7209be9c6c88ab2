//! A provider that controls every byte it sends: a genuine TDX machine and genuine GPUs, running
//! its own OS, application and JSON. Each test starts from a valid real or simulator bundle,
//! changes what such a provider would change, and asserts the specific check that must catch it
//! and its reason (issue 13; the threat model is `docs/security.md`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use crate::common;

use common::{bundle_json, check, from_json, observed, verdict, verdict_with};
use serde_json::{Value, json};
use teewatch::verify::dstack;
use teewatch::verify::{Policy, State};

use State::{Fail, Pass, Unknown};

/// The event log of a dstack bundle, as a list of JSON events.
fn events(bundle: &Value) -> Vec<Value> {
    let log = &bundle["attestation"]["event_log"];
    match log {
        Value::String(text) => serde_json::from_str(text).unwrap(),
        Value::Array(list) => list.clone(),
        other => panic!("event_log is {other}"),
    }
}

/// Writes the events back (as the JSON string the real report carries) and, like a provider
/// whose application really extended RTMR3 with them, makes the quote's RTMR3 their replay.
/// The real quote's signature cannot cover the new RTMR3, so these bundles are used only where
/// the quote's signature was not decidable in the first place (no collateral in the vector):
/// the checks under test are the event-log rules, which run either way.
fn set_events_and_rtmr3(bundle: &mut Value, list: &[Value]) {
    let text = serde_json::to_string(list).unwrap();
    let parsed = dstack::parse_event_log(&Value::String(text.clone())).unwrap();
    let rtmr3 = dstack::replay(&parsed).rtmr[3];
    bundle["attestation"]["event_log"] = Value::String(text);
    let quote = bundle["attestation"]["intel_quote"].as_str().unwrap();
    let mut raw = hex::decode(quote).unwrap();
    assert_eq!(u16::from_le_bytes([raw[0], raw[1]]), 4, "a v4 quote");
    // RTMR3 sits at 472 in the TD report body, which starts at 48 in a v4 quote.
    raw[48 + 472..48 + 520].copy_from_slice(&rtmr3);
    bundle["attestation"]["intel_quote"] = Value::String(hex::encode(raw));
}

fn index_of(list: &[Value], name: &str) -> usize {
    list.iter()
        .position(|e| e["event"] == name && e["imr"] == 3)
        .unwrap_or_else(|| panic!("no {name} event"))
}

fn compose_payload(list: &[Value]) -> Vec<u8> {
    hex::decode(
        list[index_of(list, "compose-hash")]["event_payload"]
            .as_str()
            .unwrap(),
    )
    .unwrap()
}

#[test]
fn the_real_logs_replay_with_identity_before_system_ready_and_app_events_after() {
    let v = verdict(&from_json(bundle_json("dstack-quote-report")));
    let (state, reason) = check(&v, "event_log_replay", "");
    assert_eq!(state, Pass, "{reason}");
    assert!(
        reason.ends_with(
            "identity events written by the os before system-ready, 1 application event(s) after it"
        ),
        "{reason}"
    );
    assert_eq!(
        observed(&v, "", "application_event"),
        [("LIUM_MINER_HOTKEY".to_string(), "event_log")]
    );
    let v = verdict(&from_json(bundle_json("pmlsdk-dstack-sample")));
    assert_eq!(check(&v, "event_log_replay", "").0, Pass);
    assert_eq!(check(&v, "compose_binding", "").0, Pass);
}

/// Attack 1a: the genuine compose-hash event keeps its digest but gets another type. The replay
/// still reproduces the quote's RTMR3 (the digest is folded as given), while the event no
/// longer reads as a compose-hash event.
#[test]
fn a_retyped_identity_event_on_imr_3_fails_the_replay() {
    let mut bundle = bundle_json("pmlsdk-dstack-sample");
    let mut list = events(&bundle);
    let at = index_of(&list, "compose-hash");
    list[at]["event_type"] = json!(0x8000_0009u32);
    // Only the type changes: no quote change is needed for the registers to match.
    bundle["attestation"]["event_log"] = Value::String(serde_json::to_string(&list).unwrap());
    let v = verdict(&from_json(bundle));
    let (state, reason) = check(&v, "event_log_replay", "");
    assert_eq!(state, Fail);
    assert_eq!(
        reason,
        format!(
            "event {at} (compose-hash) on imr 3: expected a runtime event (type 0x08000001), found type 0x80000009"
        )
    );
    assert_eq!(
        check(&v, "compose_binding", "").1,
        "event_log_replay did not pass"
    );
    let (state, reason) = check(&v, "pin:compose_hash", "");
    assert_eq!(state, Unknown, "{reason}");
}

/// Attack 1b: the genuine identity events retyped, and the application (after system-ready)
/// extends RTMR3 with copies carrying the pinned values.
#[test]
fn retyped_identity_events_plus_application_copies_fail_the_replay() {
    let mut bundle = bundle_json("pmlsdk-dstack-sample");
    let mut list = events(&bundle);
    let pinned_compose = compose_payload(&list);
    for name in ["compose-hash", "app-id", "key-provider"] {
        let at = index_of(&list, name);
        list[at]["event_type"] = json!(0x8000_0009u32);
    }
    list.push(common::runtime_event("compose-hash", &pinned_compose));
    set_events_and_rtmr3(&mut bundle, &list);
    let v = verdict(&from_json(bundle));
    let (state, reason) = check(&v, "event_log_replay", "");
    assert_eq!(state, Fail);
    assert!(
        reason.contains("(compose-hash) on imr 3: expected a runtime event (type 0x08000001), found type 0x80000009"),
        "{reason}"
    );
    assert!(
        reason.contains(&format!(
            "event {} (compose-hash) comes after system-ready, where the application writes",
            list.len() - 1
        )),
        "{reason}"
    );
    assert_ne!(v.state, Pass);
}

/// Attack 2: the OS wrote no os-image-hash event (the real 2025 dstack node); the application
/// emits one with the pinned value after system-ready.
#[test]
fn an_application_copy_of_an_identity_event_the_os_never_wrote_fails() {
    let mut bundle = bundle_json("dstack-quote-report");
    let mut list = events(&bundle);
    assert!(
        !list.iter().any(|e| e["event"] == "os-image-hash"),
        "this vector's os wrote no os-image-hash"
    );
    let pinned = bundle["policy"]["pins"]["os_image_hash"][0]
        .as_str()
        .unwrap()
        .to_string();
    list.push(common::runtime_event(
        "os-image-hash",
        &hex::decode(&pinned).unwrap(),
    ));
    set_events_and_rtmr3(&mut bundle, &list);
    let v = verdict(&from_json(bundle));
    let (state, reason) = check(&v, "event_log_replay", "");
    assert_eq!(state, Fail);
    assert_eq!(
        reason,
        format!(
            "event {} (os-image-hash) comes after system-ready, where the application writes: an os event name there is an application posing as the os",
            list.len() - 1
        )
    );
    let (state, reason) = check(&v, "pin:os_image_hash", "");
    assert_eq!(state, Unknown, "{reason}");
    assert_eq!(
        reason,
        "os_image_hash comes from event_log_replay, which did not pass"
    );
}

/// A second compose-hash event before system-ready is an attack, not a tie the first one wins.
#[test]
fn two_compose_hash_events_fail_the_replay() {
    let mut bundle = bundle_json("pmlsdk-dstack-sample");
    let mut list = events(&bundle);
    let at = index_of(&list, "compose-hash");
    list.insert(at + 1, common::runtime_event("compose-hash", &[0xAB; 32]));
    set_events_and_rtmr3(&mut bundle, &list);
    let v = verdict(&from_json(bundle));
    let (state, reason) = check(&v, "event_log_replay", "");
    assert_eq!(state, Fail);
    assert!(
        reason.starts_with(&format!(
            "two compose-hash events (events {at} and {})",
            at + 1
        )),
        "{reason}"
    );
}

fn pins(fields: &[(&str, &str)]) -> Policy {
    let mut policy = Policy::default();
    for (field, value) in fields {
        policy
            .pins
            .insert(field.to_string(), vec![value.to_string()]);
    }
    policy
}

const H48: &str = "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000";
const H32: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[test]
fn identity_needs_the_os_registers_and_the_application() {
    let bundle = from_json(bundle_json("pmlsdk-dstack-sample"));
    let all = [
        ("mrtd", H48),
        ("rtmr0", H48),
        ("rtmr1", H48),
        ("rtmr2", H48),
        ("compose_hash", H32),
    ];
    let v = verdict_with(&bundle, &pins(&all));
    let (state, reason) = check(&v, "identity_pinned", "");
    assert_eq!(state, Pass, "{reason}");
    assert_eq!(
        reason,
        "os pinned by mrtd, rtmr0-2 and application by compose_hash"
    );

    // The application alone: a custom OS can write any compose hash.
    let v = verdict_with(&bundle, &pins(&[("compose_hash", H32)]));
    let (state, reason) = check(&v, "identity_pinned", "");
    assert_eq!(state, Unknown);
    assert!(
        reason.starts_with(
            "pins: the os needs mrtd, rtmr0, rtmr1 and rtmr2 pinned (missing mrtd, rtmr0, rtmr1, rtmr2)"
        ),
        "{reason}"
    );
    // os_image_hash is an RTMR3 event written by the OS: it does not pin the OS.
    let v = verdict_with(
        &bundle,
        &pins(&[("os_image_hash", H32), ("compose_hash", H32)]),
    );
    assert_eq!(check(&v, "identity_pinned", "").0, Unknown);
    // One register short.
    let v = verdict_with(
        &bundle,
        &pins(
            &all[..3]
                .iter()
                .chain(&all[4..])
                .copied()
                .collect::<Vec<_>>(),
        ),
    );
    let (state, reason) = check(&v, "identity_pinned", "");
    assert_eq!(state, Unknown);
    assert!(reason.contains("(missing rtmr2)"), "{reason}");
    // The OS alone.
    let v = verdict_with(&bundle, &pins(&all[..4]));
    let (state, reason) = check(&v, "identity_pinned", "");
    assert_eq!(state, Unknown);
    assert!(
        reason
            .starts_with("pins: the application needs compose_hash or app_id pinned (neither is)"),
        "{reason}"
    );
}

/// A quote whose signature did not verify still shows its values, but never satisfies a pin.
#[test]
fn pins_on_an_unverified_quote_are_unknown() {
    let bundle = from_json(bundle_json("automata-outofdate"));
    let v = verdict(&bundle);
    assert_eq!(check(&v, "tdx_quote_signature", "").0, Pass);
    let mrtd = observed(&v, "", "mrtd")[0].0.clone();
    let policy = pins(&[("mrtd", &mrtd)]);
    let v = verdict_with(&bundle, &policy);
    assert_eq!(check(&v, "pin:mrtd", "").0, Pass);

    // One change: a byte of the quote's ECDSA signature (v4: the body ends at 632, then the
    // signature data length, then the 64-byte signature).
    let mut value = bundle_json("automata-outofdate");
    let quote = value["attestation"]["intel_quote"].as_str().unwrap();
    let mut raw = hex::decode(quote).unwrap();
    raw[640] ^= 0x01;
    value["attestation"]["intel_quote"] = Value::String(hex::encode(raw));
    let v = verdict_with(&from_json(value), &policy);
    assert_ne!(check(&v, "tdx_quote_signature", "").0, Pass);
    let (state, reason) = check(&v, "pin:mrtd", "");
    assert_eq!(state, Unknown);
    assert!(
        reason.starts_with(
            "quote not verified: mrtd comes from a quote whose tdx_quote_signature did not pass"
        ),
        "{reason}"
    );
    assert_eq!(
        observed(&v, "", "mrtd")[0].0,
        mrtd,
        "the value is still shown"
    );
}

/// The NEAR gateway sees every prompt in the clear: it is pinned like the model, and a target
/// that names the gateway's identity has `identity_pinned` only with it.
#[test]
fn the_gateway_is_pinned_like_the_model() {
    let (value, config) = common::format_case("near-gateway-ed25519");
    let v = common::verify_format_case(value.clone(), &config);
    for field in ["mrtd", "rtmr0", "rtmr1", "rtmr2", "compose_hash", "app_id"] {
        let (state, reason) = check(&v, &format!("pin:{field}"), "gateway");
        assert_eq!(state, Pass, "{field}: {reason}");
    }
    let (state, reason) = check(&v, "identity_pinned", "");
    assert_eq!(state, Pass, "{reason}");
    assert!(
        reason.contains("; gateway: os pinned by mrtd, rtmr0-2"),
        "{reason}"
    );

    // The same answer judged without gateway pins: any genuine TD would pass as the gateway.
    let bundle = from_json(value.clone());
    let mut policy = config.target(&bundle.target).unwrap().policy.clone();
    let gateway_pins = std::mem::take(&mut policy.gateway_pins);
    let v = teewatch::verify::verify(&bundle, &policy, &config.trust_anchors());
    let (state, reason) = check(&v, "identity_pinned", "");
    assert_eq!(state, Unknown);
    assert!(
        reason.starts_with("gateway_pins: the os needs mrtd, rtmr0, rtmr1 and rtmr2 pinned"),
        "{reason}"
    );

    // Another gateway software: its compose hash is outside the gateway's allowlist.
    let mut other = gateway_pins.clone();
    other.insert("compose_hash".into(), vec![H32.into()]);
    policy.gateway_pins = other;
    let v = teewatch::verify::verify(&bundle, &policy, &config.trust_anchors());
    let (state, reason) = check(&v, "pin:compose_hash", "gateway");
    assert_eq!(state, Fail);
    assert!(
        reason.starts_with(&format!("expected one of [{H32}], found ")),
        "{reason}"
    );
    assert!(reason.ends_with("(event_log)"), "{reason}");
    // The model's own compose hash pin is untouched by the gateway's.
    assert_eq!(check(&v, "pin:compose_hash", "model:0").0, Pass);
}

#[test]
fn gateway_pins_without_a_gateway_in_the_answer_fail() {
    let (value, config) = common::format_case("near-direct-3-nodes");
    let bundle = from_json(value);
    let mut policy = config.target(&bundle.target).unwrap().policy.clone();
    policy.gateway_pins.insert("mrtd".into(), vec![H48.into()]);
    let v = teewatch::verify::verify(&bundle, &policy, &config.trust_anchors());
    let (state, reason) = check(&v, "pin:mrtd", "gateway");
    assert_eq!(state, Fail);
    assert_eq!(
        reason,
        "gateway_pins are set, and the report has no gateway attestation"
    );
}

/// A target that names its formats fails an answer in another one, and a `near` target accepts
/// only the NEAR formats unless it says otherwise (its TLS check depends on them).
#[test]
fn an_answer_in_a_format_the_target_does_not_accept_fails() {
    let (value, config) = common::format_case("near-gateway-ed25519");
    let bundle = from_json(value);
    let target = config.target(&bundle.target).unwrap();
    assert_eq!(
        target.policy.formats.as_deref(),
        Some(&["near-gateway".to_string(), "near-direct".to_string()][..]),
        "the near profile's default"
    );
    let mut policy = target.policy.clone();
    policy.formats = Some(vec!["near-direct".into()]);
    let v = teewatch::verify::verify(&bundle, &policy, &config.trust_anchors());
    let (state, reason) = check(&v, "attestation_format", "");
    assert_eq!(state, Fail);
    assert_eq!(
        reason,
        "attestation format: expected one of [near-direct] (the target's formats), found near-gateway"
    );

    // A dstack answer to a target held to the NEAR formats (as a near profile target is).
    let bundle = from_json(bundle_json("pmlsdk-dstack-sample"));
    let mut policy = common::own_policy(&bundle);
    policy.formats = target.policy.formats.clone();
    let v = verdict_with(&bundle, &policy);
    assert_eq!(
        check(&v, "attestation_format", "").1,
        "attestation format: expected one of [near-gateway, near-direct] (the target's formats), found dstack"
    );
}

/// Drift is tracked on verified values only; the gateway under its own fields; the format too.
#[test]
fn drift_tracks_verified_values_the_gateway_and_the_format() {
    use teewatch::drift::measurements;
    let bundle = from_json(bundle_json("automata-outofdate"));
    let fields = |v: &teewatch::verify::Verdict| -> Vec<String> {
        measurements(v).into_iter().map(|m| m.field).collect()
    };
    let v = verdict(&bundle);
    assert!(fields(&v).contains(&"mrtd".to_string()));
    assert!(fields(&v).contains(&"attestation_format".to_string()));

    // One change: a byte of the quote's signature. The values are shown, never tracked.
    let mut value = bundle_json("automata-outofdate");
    let mut raw = hex::decode(value["attestation"]["intel_quote"].as_str().unwrap()).unwrap();
    raw[640] ^= 0x01;
    value["attestation"]["intel_quote"] = Value::String(hex::encode(raw));
    let v = verdict(&from_json(value));
    assert!(!observed(&v, "", "mrtd").is_empty());
    let tracked = fields(&v);
    for field in ["mrtd", "rtmr0", "mrseam", "signing_address"] {
        assert!(
            !tracked.contains(&field.to_string()),
            "{field} in {tracked:?}"
        );
    }

    let (value, config) = common::format_case("near-gateway-ed25519");
    let v = common::verify_format_case(value, &config);
    let all = measurements(&v);
    let gateway_mrtd = observed(&v, "gateway", "mrtd")[0].0.clone();
    assert!(
        all.iter()
            .any(|m| m.field == "gateway:mrtd" && m.value == gateway_mrtd && m.node == "gateway"),
        "{all:#?}"
    );
    assert!(
        !all.iter()
            .any(|m| m.field == "mrtd" && m.value == gateway_mrtd),
        "the gateway's mrtd is not the model's"
    );
    assert!(
        all.iter()
            .any(|m| m.field == "attestation_format" && m.value == "near-gateway")
    );
}

// ---------------------------------------------------------------------------------------------
// NEAR's compose manager, OHTTP and TLS certificate (issue 14), on the stored simulator answers.

fn direct_case() -> (Value, teewatch::config::Config) {
    common::format_case("near-direct-3-nodes")
}

#[test]
fn the_compose_manager_passes_as_served_and_with_its_members_listed_in_another_order() {
    let (value, config) = direct_case();
    let v = common::verify_format_case(value.clone(), &config);
    assert_eq!(v.state, Pass);
    assert_eq!(check(&v, "same_td", "compose_manager").0, Pass);
    // The same actions with each action's members listed sorted: one encoding of the same list,
    // so the hash over the compose manager's own order still binds it.
    let mut sorted = value;
    for action in sorted["attestation"]["compose_manager_attestation"]["actions"]
        .as_array_mut()
        .unwrap()
    {
        let mut members: Vec<(String, Value)> = action
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        members.sort_by(|a, b| a.0.cmp(&b.0));
        *action = Value::Object(members.into_iter().collect());
    }
    let v = common::verify_format_case(sorted, &config);
    let (state, reason) = check(&v, "report_data_binding", "compose_manager");
    assert_eq!(state, Pass, "{reason}");
    assert!(
        reason.contains("the compose manager's member order"),
        "{reason}"
    );
}

#[test]
fn an_action_edited_after_hashing_fails_the_compose_managers_binding() {
    let (mut value, config) = direct_case();
    let actions = &mut value["attestation"]["compose_manager_attestation"]["actions"];
    let last = actions.as_array().unwrap().len() - 1;
    actions[last]["file_sha256"] = json!("ab".repeat(32));
    let v = common::verify_format_case(value, &config);
    let (state, reason) = check(&v, "report_data_binding", "compose_manager");
    assert_eq!(state, Fail);
    assert!(
        reason.starts_with(&format!(
            "reportdata[0..32]: expected sha256 of the {} actions served as compact json",
            last + 1
        )),
        "{reason}"
    );
    // What the edited log names is shown, never proven.
    let deployed = observed(&v, "compose_manager", "deployed_compose_sha256");
    assert_eq!(deployed, [("ab".repeat(32), "claim")]);
    assert_eq!(
        check(&v, "pin:deployed_compose_sha256", "compose_manager").0,
        Unknown
    );
}

#[test]
fn a_compose_manager_quoted_by_another_td_fails_same_td() {
    let (mut value, config) = direct_case();
    // Another node's genuine quote (another TD) in place of the compose manager's.
    let other = value["attestation"]["all_attestations"][1]["intel_quote"].clone();
    value["attestation"]["compose_manager_attestation"]["quote"] = other;
    let v = common::verify_format_case(value, &config);
    let (state, reason) = check(&v, "same_td", "compose_manager");
    assert_eq!(state, Fail);
    assert!(
        reason.starts_with("the compose manager's quote comes from another td than "),
        "{reason}"
    );
    assert!(reason.contains("rtmr3: expected "), "{reason}");
}

#[test]
fn a_served_tls_certificate_that_is_not_the_gateways_fails_the_tls_binding() {
    let (mut value, config) = common::format_case("near-gateway-ed25519");
    let before = common::verify_format_case(value.clone(), &config);
    assert_eq!(check(&before, "tls_key_binding", "").0, Pass);
    // A genuine certificate, but of another key: the simulator's test Intel root.
    let other = std::fs::read_to_string(common::repo_path(
        "tests/bundles/formats/near-gateway-ed25519/sim.intel-root.pem",
    ))
    .unwrap();
    value["attestation"]["tls_certificate"] = Value::String(other);
    let v = common::verify_format_case(value, &config);
    let (state, reason) = check(&v, "tls_key_binding", "");
    assert_eq!(state, Fail);
    assert!(
        reason.starts_with("tls_certificate: expected the gateway's tls_cert_fingerprint "),
        "{reason}"
    );
}

#[test]
fn identity_with_a_compose_manager_needs_the_deployed_compose_file_pinned() {
    let (value, config) = direct_case();
    let bundle = from_json(value);
    let mut policy = config.target(&bundle.target).unwrap().policy.clone();
    assert_eq!(
        check(
            &teewatch::verify::verify(&bundle, &policy, &config.trust_anchors()),
            "identity_pinned",
            ""
        )
        .0,
        Pass
    );
    policy.pins.remove("deployed_compose_sha256");
    let v = teewatch::verify::verify(&bundle, &policy, &config.trust_anchors());
    let (state, reason) = check(&v, "identity_pinned", "");
    assert_eq!(state, Unknown);
    assert!(
        reason.contains(
            "it needs deployed_compose_sha256 pinned (the compose hash names the compose manager)"
        ),
        "{reason}"
    );
}
