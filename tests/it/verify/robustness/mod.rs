//! Robustness of the verifier and the bundle loader against hostile input: truncated and
//! bit-flipped quotes, garbage in every attestation field, broken event logs and malformed bundle
//! envelopes. Nothing may panic, and no forged quote may ever pass `tdx_quote_signature`.
//!
//! Every "does not pass" assertion is made on an input whose check passed before the change (a
//! control asserts it), so it fails for the change's reason. No real vector passes as a whole, so
//! the assertions are on the check the change reaches, never on the overall verdict.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use crate::common;

mod formats;

use serde_json::{Value, json};
use teewatch::verify::{self, Bundle, BundleError, Policy, State, TrustAnchors, Verdict};

const PARSE: &str = "tdx_quote_parse";
const SIGNATURE: &str = "tdx_quote_signature";

/// The v4 quote (48-byte header + 584-byte TD 1.0 body) and its collateral.
const V4_QUOTE: &str = "tests/vectors/tdx/dcap-qvl/tdx_quote";
const V4_COLLATERAL: &str = "tests/vectors/tdx/dcap-qvl/tdx_quote_collateral.json";
const V4_OBSERVED_AT: &str = "2025-06-25T00:00:00Z";
const V4_SIGNED_LEN: usize = 48 + 584;

/// The v5 quote (48-byte header + 6-byte body descriptor + 885-byte TD 1.5ex body).
const V5_QUOTE: &str = "tests/vectors/tdx/dcap-qvl/tdx_quote_td15ex";
const V5_COLLATERAL: &str = "tests/vectors/tdx/dcap-qvl/tdx_quote_td15ex_collateral.json";
const V5_OBSERVED_AT: &str = "2026-10-20T00:00:00Z";
const V5_SIGNED_LEN: usize = 54 + 885;

fn read_bytes(relative: &str) -> Vec<u8> {
    std::fs::read(common::repo_path(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

fn read_json(relative: &str) -> Value {
    let text = std::fs::read_to_string(common::repo_path(relative))
        .unwrap_or_else(|e| panic!("{relative}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

/// A bundle wrapping one quote in a plain vllm-proxy report, with its collateral.
fn quote_bundle(quote: &[u8], collateral: &Value, observed_at: &str) -> Bundle {
    let value = json!({
        "format": "teewatch-bundle/1",
        "target": "robustness",
        "observed_at": observed_at,
        "nonce": "00".repeat(32),
        "attestation": {
            "signing_address": format!("0x{}", "00".repeat(20)),
            "signing_algo": "ecdsa",
            "intel_quote": hex::encode(quote),
        },
        "tdx_collateral": collateral,
    });
    Bundle::from_value(value).expect("a well-formed bundle envelope")
}

fn verify_default(bundle: &Bundle) -> Verdict {
    verify::verify(bundle, &Policy::default(), &TrustAnchors::production())
}

/// The state of the (single-scope) check with this name.
fn state(verdict: &Verdict, name: &str) -> Option<State> {
    verdict.checks_named(name).next().map(|c| c.state)
}

fn reason(verdict: &Verdict, name: &str) -> String {
    verdict
        .checks_named(name)
        .map(|c| format!("[{}] {}", c.scope, c.reason))
        .collect::<Vec<_>>()
        .join("; ")
}

// ---------------------------------------------------------------------------------------------
// Truncated quotes
// ---------------------------------------------------------------------------------------------

/// Where the quote's own structure ends: header and body, the 4-byte signature data length, and
/// the signature data that length declares. Bytes after it are not part of the quote.
fn declared_end(quote: &[u8], signed_len: usize) -> usize {
    let length: [u8; 4] = quote[signed_len..signed_len + 4].try_into().unwrap();
    signed_len + 4 + usize::try_from(u32::from_le_bytes(length)).unwrap()
}

#[test]
fn every_truncation_of_a_real_quote_is_judged_without_panic_and_never_passes() {
    let quote = read_bytes(V4_QUOTE);
    let collateral = read_json(V4_COLLATERAL);

    // Control: the whole quote verifies, so a failure below is the truncation's doing.
    let full = verify_default(&quote_bundle(&quote, &collateral, V4_OBSERVED_AT));
    assert_eq!(
        state(&full, PARSE),
        Some(State::Pass),
        "{}",
        reason(&full, PARSE)
    );
    assert_eq!(
        state(&full, SIGNATURE),
        Some(State::Pass),
        "control: the untouched quote must verify: {}",
        reason(&full, SIGNATURE)
    );

    // The real vector is 5006 bytes, but its signature data length says the quote ends at 4936:
    // the last 70 bytes are zero padding outside the quote. Cutting only padding leaves the whole
    // signed quote, which must still verify; cutting into the quote must never pass.
    let end = declared_end(&quote, V4_SIGNED_LEN);
    assert!(end <= quote.len());
    assert!(
        quote[end..].iter().all(|b| *b == 0),
        "the bytes after the quote are zero padding"
    );

    let (mut parse_failures, mut padding_only) = (0usize, 0usize);
    for len in 0..quote.len() {
        let verdict = verify_default(&quote_bundle(&quote[..len], &collateral, V4_OBSERVED_AT));
        let parse = state(&verdict, PARSE);
        let signature = state(&verdict, SIGNATURE);
        assert!(parse.is_some(), "length {len}: no {PARSE} check");
        assert!(signature.is_some(), "length {len}: no {SIGNATURE} check");
        if len >= end {
            padding_only += 1;
            assert_eq!(
                parse,
                Some(State::Pass),
                "length {len}: {}",
                reason(&verdict, PARSE)
            );
            assert_eq!(
                signature,
                Some(State::Pass),
                "length {len}: only padding was cut: {}",
                reason(&verdict, SIGNATURE)
            );
            continue;
        }
        assert_ne!(
            signature,
            Some(State::Pass),
            "length {len} of {}: a truncated quote passed the signature check",
            quote.len()
        );
        // The quote declares its signature data length, so every cut into it fails to parse, and
        // a quote that does not parse never reaches the signature check.
        assert_eq!(
            parse,
            Some(State::Fail),
            "length {len}: {}",
            reason(&verdict, PARSE)
        );
        assert_eq!(
            signature,
            Some(State::Unknown),
            "length {len}: {}",
            reason(&verdict, SIGNATURE)
        );
        parse_failures += 1;
    }
    assert_eq!(parse_failures, end);
    assert_eq!(padding_only, quote.len() - end);
}

/// The bundle-level test above never hands a truncated quote to dcap-qvl (the parser stops it
/// first), so drive dcap-qvl's own decoder directly with every prefix too.
#[test]
fn every_truncation_fed_straight_to_dcap_qvl_is_rejected_without_panic() {
    let quote = read_bytes(V4_QUOTE);
    let collateral = read_json(V4_COLLATERAL);
    let anchors = TrustAnchors::production();
    let now = chrono::DateTime::parse_from_rfc3339(V4_OBSERVED_AT)
        .unwrap()
        .timestamp();

    let full = verify::dcap::verify_quote(
        &quote,
        Some(&collateral),
        &anchors.intel_root_der,
        now,
        &anchors.cache.collateral,
    );
    assert_eq!(
        full.signature.state(),
        State::Pass,
        "control: {:?}",
        full.signature
    );

    let end = declared_end(&quote, V4_SIGNED_LEN);
    for len in 0..end {
        let result = verify::dcap::verify_quote(
            &quote[..len],
            Some(&collateral),
            &anchors.intel_root_der,
            now,
            &anchors.cache.collateral,
        );
        assert_ne!(
            result.signature.state(),
            State::Pass,
            "length {len}: dcap-qvl accepted a truncated quote"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Bit flips in the signed part of the quote
// ---------------------------------------------------------------------------------------------

/// Flips every bit of `quote[..signed_len]` and counts how each variant was judged.
fn flip_every_bit(quote: &[u8], collateral: &Value, observed_at: &str, signed_len: usize) {
    let full = verify_default(&quote_bundle(quote, collateral, observed_at));
    assert_eq!(
        state(&full, SIGNATURE),
        Some(State::Pass),
        "control: the untouched quote must verify: {}",
        reason(&full, SIGNATURE)
    );

    // Each variant is counted once: the quote did not parse (so the signature was never
    // judged), or the signature check passed, failed or could not be decided.
    let (mut passes, mut fails, mut unknowns, mut parse_fails) = (0usize, 0usize, 0usize, 0usize);
    let mut passed_at = Vec::new();
    let mut variant = quote.to_vec();
    for byte in 0..signed_len {
        for bit in 0..8 {
            variant[byte] ^= 1 << bit;
            let verdict = verify_default(&quote_bundle(&variant, collateral, observed_at));
            variant[byte] ^= 1 << bit;

            let signature = state(&verdict, SIGNATURE);
            if state(&verdict, PARSE) != Some(State::Pass) {
                parse_fails += 1;
                assert_eq!(
                    state(&verdict, PARSE),
                    Some(State::Fail),
                    "byte {byte} bit {bit}"
                );
                assert_ne!(
                    signature,
                    Some(State::Pass),
                    "byte {byte} bit {bit}: unparsed quote passed"
                );
            } else {
                match signature {
                    Some(State::Pass) => {
                        passes += 1;
                        passed_at.push(format!("byte {byte} bit {bit}"));
                    }
                    Some(State::Fail) => fails += 1,
                    Some(State::Unknown) => unknowns += 1,
                    None => panic!("byte {byte} bit {bit}: no {SIGNATURE} check"),
                }
            }
        }
    }
    assert_eq!(variant, quote, "the variant buffer must be restored");
    let total = signed_len * 8;
    assert_eq!(passes + fails + unknowns + parse_fails, total);
    let summary = format!(
        "{total} bit flips over bytes 0..{signed_len}: signature pass {passes}, fail {fails}, \
         unknown {unknowns}, quote parse failed {parse_fails}"
    );
    assert_eq!(passes, 0, "{summary}; passed at {passed_at:?}");
    eprintln!("{summary}");
}

#[test]
fn no_single_bit_flip_in_a_v4_header_or_body_passes_the_signature() {
    let quote = read_bytes(V4_QUOTE);
    assert_eq!(u16::from_le_bytes([quote[0], quote[1]]), 4);
    flip_every_bit(
        &quote,
        &read_json(V4_COLLATERAL),
        V4_OBSERVED_AT,
        V4_SIGNED_LEN,
    );
}

#[test]
fn no_single_bit_flip_in_a_v5_header_or_body_passes_the_signature() {
    let quote = read_bytes(V5_QUOTE);
    assert_eq!(u16::from_le_bytes([quote[0], quote[1]]), 5);
    flip_every_bit(
        &quote,
        &read_json(V5_COLLATERAL),
        V5_OBSERVED_AT,
        V5_SIGNED_LEN,
    );
}

// ---------------------------------------------------------------------------------------------
// Garbage in the attestation fields
// ---------------------------------------------------------------------------------------------

fn garbage_values() -> Vec<(&'static str, Value)> {
    let mut nested = json!([]);
    for _ in 0..100 {
        nested = json!([nested]);
    }
    vec![
        ("null", Value::Null),
        ("0", json!(0)),
        ("-1", json!(-1)),
        ("1e308", json!(1e308)),
        ("true", json!(true)),
        ("\"\"", json!("")),
        ("\"zz\"", json!("zz")),
        ("\"0x\"", json!("0x")),
        ("[]", json!([])),
        ("{}", json!({})),
        ("[1,2]", json!([1, 2])),
        ("1 MB of a", json!("a".repeat(1 << 20))),
        ("100 nested arrays", nested),
    ]
}

/// A real bundle as JSON, and the policy its snapshot names.
fn real_base(name: &str) -> (Value, Policy) {
    let value = read_json(&format!("tests/bundles/{name}.json"));
    let bundle = Bundle::from_value(value.clone()).unwrap();
    let policy = bundle
        .policy
        .as_ref()
        .map(|s| Policy::from_snapshot(s).unwrap())
        .unwrap_or_default();
    (value, policy)
}

/// The dstack bundle as JSON, and the policy its snapshot names.
fn dstack_base() -> (Value, Policy) {
    real_base("dstack-quote-report")
}

fn verify_value(value: Value, policy: &Policy) -> Verdict {
    let bundle =
        Bundle::from_value(value).expect("garbage inside the attestation keeps the envelope valid");
    verify::verify(&bundle, policy, &TrustAnchors::production())
}

fn assert_nothing_passes(verdict: &Verdict, name: &str, what: &str) {
    for check in verdict.checks_named(name) {
        assert_ne!(
            check.state,
            State::Pass,
            "{what}: {name} [{}] passed: {}",
            check.scope,
            check.reason
        );
    }
}

/// Asserts that every `name` check of the unchanged input passes, so that a later "does not
/// pass" on a changed copy is the change's doing.
#[track_caller]
fn assert_control_passes(verdict: &Verdict, name: &str, what: &str) {
    let states: Vec<State> = verdict.checks_named(name).map(|c| c.state).collect();
    assert!(
        !states.is_empty() && states.iter().all(|s| *s == State::Pass),
        "control ({what}): {name} must pass before the change, got {states:?}: {}",
        reason(verdict, name)
    );
}

/// Garbage in each attestation field: nothing panics, and the check that reads the field does not
/// pass, on a real bundle where that check passed before. Fields whose readers no real bundle
/// passes (`signing_algo`, `info`, `vm_config`, …) are judged without panic only.
#[test]
fn garbage_in_every_attestation_field_never_passes_or_panics() {
    // (bundle, field, the checks that read it and must stop passing)
    let cases: [(&str, &str, &[&str]); 11] = [
        ("dstack-quote-report", "intel_quote", &[PARSE]),
        ("dcapqvl-v4-uptodate", "intel_quote", &[PARSE, SIGNATURE]),
        (
            "dstack-quote-report",
            "signing_address",
            &["report_data_binding"],
        ),
        ("dstack-quote-report", "event_log", &["event_log_replay"]),
        (
            "pmlsdk-dstack-sample",
            "event_log",
            &["event_log_replay", "compose_binding"],
        ),
        ("dstack-quote-report", "signing_algo", &[]),
        ("dstack-quote-report", "vm_config", &[]),
        ("pmlsdk-dstack-sample", "info", &[]),
        ("dstack-quote-report", "all_attestations", &[]),
        // Not in every report, but read when present.
        ("dstack-quote-report", "quote", &[]),
        ("dstack-quote-report", "signing_public_key", &[]),
    ];
    for (name, field, readers) in cases {
        let (base, policy) = real_base(name);
        let control = verify_value(base.clone(), &policy);
        for reader in readers {
            assert_control_passes(&control, reader, name);
        }
        for (label, garbage) in garbage_values() {
            let what = format!("{name}: {field} = {label}");
            let mut value = base.clone();
            value["attestation"][field] = garbage;
            // A null `event_log` means "take the one in info.tcb_info" (documented), which is
            // intact in the Phala sample: its readers still pass.
            let falls_back = field == "event_log"
                && label == "null"
                && base["attestation"]["info"]["tcb_info"].is_string();
            let verdict = verify_value(value, &policy);
            assert!(!verdict.checks.is_empty(), "{what}: no checks");
            for reader in readers {
                if falls_back {
                    assert_control_passes(&verdict, reader, &what);
                } else {
                    assert_nothing_passes(&verdict, reader, &what);
                }
            }
            if field == "intel_quote" {
                let parse: Vec<State> = verdict.checks_named(PARSE).map(|c| c.state).collect();
                assert!(
                    !parse.is_empty() && parse.iter().all(|s| *s == State::Fail),
                    "{what}: {PARSE} must fail, got {parse:?}"
                );
            }
        }
    }
}

/// The dstack bundle has no collateral, so its signature could never pass; here garbage replaces
/// the quote of a bundle whose collateral does verify the real quote.
#[test]
fn garbage_quotes_beside_valid_collateral_never_pass_the_signature() {
    let mut base = read_json("tests/bundles/dcapqvl-v4-uptodate.json");
    let control = verify_value(base.clone(), &Policy::default());
    assert_control_passes(&control, PARSE, "the real quote");
    assert_control_passes(&control, SIGNATURE, "the real quote");

    let real = base["attestation"]["intel_quote"]
        .as_str()
        .unwrap()
        .to_string();
    let mut garbage = garbage_values();
    garbage.push((
        "the real quote with a 0x prefix and a trailing odd nibble",
        json!(format!("0x{real}0")),
    ));
    garbage.push((
        "the real quote in upper case, cut one byte before its declared end",
        json!(real[..2 * (declared_end(&read_bytes(V4_QUOTE), V4_SIGNED_LEN) - 1)].to_uppercase()),
    ));
    for (label, value) in garbage {
        base["attestation"]["intel_quote"] = value;
        let verdict = verify_value(base.clone(), &Policy::default());
        assert_eq!(
            state(&verdict, PARSE),
            Some(State::Fail),
            "intel_quote = {label}"
        );
        assert_nothing_passes(&verdict, SIGNATURE, &format!("intel_quote = {label}"));
    }

    // `quote` disagreeing with `intel_quote` is refused rather than either one being picked.
    base["attestation"]["intel_quote"] = json!(real);
    base["attestation"]["quote"] = json!(hex::encode(read_bytes(V5_QUOTE)));
    let verdict = verify_value(base, &Policy::default());
    assert_eq!(
        state(&verdict, PARSE),
        Some(State::Fail),
        "{}",
        reason(&verdict, PARSE)
    );
    assert_nothing_passes(&verdict, SIGNATURE, "disagreeing quote");
}

/// Hostile entries in two real logs: the replay fails where it passed, and `compose_binding`,
/// which passes on the Phala sample's log, stops passing with it.
#[test]
fn hostile_event_log_entries_fail_the_replay() {
    for (name, compose_passes) in [
        ("dstack-quote-report", false),
        ("pmlsdk-dstack-sample", true),
    ] {
        hostile_event_log_entries_fail_the_replay_of(name, compose_passes);
    }
}

fn hostile_event_log_entries_fail_the_replay_of(name: &str, compose_passes: bool) {
    let (base, policy) = real_base(name);
    let log_text = base["attestation"]["event_log"]
        .as_str()
        .expect("the fixture's log is a string");
    let log: Vec<Value> = serde_json::from_str(log_text).unwrap();
    assert!(log.len() > 2);

    // Control: the untouched log replays (and, on the Phala sample, binds the compose file).
    let control = verify_value(base.clone(), &policy);
    assert_control_passes(&control, "event_log_replay", name);
    assert_eq!(
        state(&control, "compose_binding") == Some(State::Pass),
        compose_passes,
        "{name}: {}",
        reason(&control, "compose_binding")
    );

    let edits: Vec<(&str, &str, Value)> = vec![
        ("imr 7", "imr", json!(7)),
        ("negative imr", "imr", json!(-1)),
        ("imr 2^64-1", "imr", json!(u64::MAX)),
        ("imr as text", "imr", json!("3")),
        ("fractional imr", "imr", json!(1.5)),
        ("event_type 2^40", "event_type", json!(1u64 << 40)),
        ("negative event_type", "event_type", json!(-1)),
        ("digest xyz", "digest", json!("xyz")),
        ("digest as a number", "digest", json!(12)),
        ("short digest", "digest", json!("00ff")),
        (
            "non-hex event_payload",
            "event_payload",
            json!("not hex at all"),
        ),
        ("odd-length event_payload", "event_payload", json!("abc")),
        (
            "event_payload as an object",
            "event_payload",
            json!({"a": 1}),
        ),
        ("event name as a list", "event", json!(["compose-hash"])),
    ];
    let last = log.len() - 1;
    for (label, key, replacement) in edits {
        // The first event is a boot event (RTMR0), the last a runtime event (RTMR3).
        for index in [0, last] {
            let mut edited = log.clone();
            edited[index][key] = replacement.clone();
            // Both encodings the report may use: a JSON list and a string holding one.
            for as_string in [false, true] {
                let what = format!(
                    "{name}: event {index} {label} (log as {})",
                    if as_string { "string" } else { "list" }
                );
                let mut value = base.clone();
                value["attestation"]["event_log"] = if as_string {
                    Value::String(serde_json::to_string(&edited).unwrap())
                } else {
                    Value::Array(edited.clone())
                };
                let verdict = verify_value(value, &policy);
                assert_eq!(
                    state(&verdict, "event_log_replay"),
                    Some(State::Fail),
                    "{what}: {}",
                    reason(&verdict, "event_log_replay")
                );
                if compose_passes {
                    assert_nothing_passes(&verdict, "compose_binding", &what);
                }
            }
        }
    }

    // Entries that are not objects at all, and a log that is not a list.
    for (label, log_value) in [
        ("entry null", json!([null])),
        ("entry number", json!([5])),
        ("entry list", json!([[0, 1]])),
        ("log object", json!({"imr": 0})),
        ("log string of an object", json!("{\"imr\": 0}")),
        ("log string not json", json!("[{")),
    ] {
        let mut value = base.clone();
        value["attestation"]["event_log"] = log_value;
        let verdict = verify_value(value, &policy);
        assert_eq!(
            state(&verdict, "event_log_replay"),
            Some(State::Fail),
            "{name}: {label}: {}",
            reason(&verdict, "event_log_replay")
        );
    }
}

#[test]
fn several_garbage_nodes_are_each_judged_and_fail() {
    let (base, policy) = dstack_base();
    let control = verify_value(base.clone(), &policy);
    assert_control_passes(&control, PARSE, "the single-node report");
    let mut value = base.clone();
    value["attestation"]["all_attestations"] = json!([
        {},
        {"signing_address": 7, "intel_quote": "zz"},
        {"signing_address": "0xabc", "intel_quote": null, "quote": [1]},
        {"signing_address": "0xabc", "intel_quote": "00", "quote": "01"},
    ]);
    let verdict = verify_value(value, &policy);
    let parse: Vec<(String, State)> = verdict
        .checks_named(PARSE)
        .map(|c| (c.scope.clone(), c.state))
        .collect();
    // The top-level report (its address is not among the listed ones) plus four listed nodes.
    assert_eq!(parse.len(), 5, "{parse:?}");
    assert_eq!(
        parse.iter().filter(|(_, s)| *s == State::Fail).count(),
        4,
        "{parse:?}"
    );
    let mut scopes: Vec<&String> = parse.iter().map(|(scope, _)| scope).collect();
    scopes.sort();
    scopes.dedup();
    assert_eq!(scopes.len(), 5, "every node needs its own scope: {parse:?}");
    // The top-level report's own quote still parses: the failures are the garbage nodes'.
    assert_eq!(
        parse.iter().filter(|(_, s)| *s == State::Pass).count(),
        1,
        "{parse:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// The bundle loader
// ---------------------------------------------------------------------------------------------

fn minimal_bundle() -> Value {
    json!({
        "format": "teewatch-bundle/1",
        "target": "loader",
        "observed_at": "2025-06-25T00:00:00Z",
        "nonce": "ab".repeat(32),
        "attestation": {"intel_quote": "00"},
    })
}

fn load(value: &Value) -> Result<Bundle, BundleError> {
    Bundle::from_json(&value.to_string())
}

fn assert_invalid_field(result: Result<Bundle, BundleError>, expected_field: &str, what: &str) {
    match result {
        Err(BundleError::InvalidField { field, reason }) => {
            assert_eq!(field, expected_field, "{what}: {reason}");
        }
        other => panic!("{what}: expected InvalidField({expected_field}), got {other:?}"),
    }
}

#[test]
fn the_loader_rejects_documents_that_are_not_bundles() {
    assert!(matches!(
        Bundle::from_json(""),
        Err(BundleError::NotJson(_))
    ));
    assert!(matches!(
        Bundle::from_json("{"),
        Err(BundleError::NotJson(_))
    ));
    assert!(matches!(
        Bundle::from_json("\u{feff}{}"),
        Err(BundleError::NotJson(_))
    ));
    assert_eq!(
        Bundle::from_json("null"),
        Err(BundleError::NotObject("null"))
    );
    assert_eq!(
        Bundle::from_json("[]"),
        Err(BundleError::NotObject("an array"))
    );
    assert_eq!(
        Bundle::from_json("\"bundle\""),
        Err(BundleError::NotObject("a string"))
    );
    assert_eq!(
        Bundle::from_json("42"),
        Err(BundleError::NotObject("a number"))
    );
    assert_eq!(
        Bundle::from_json("{}"),
        Err(BundleError::MissingField("format"))
    );
}

#[test]
fn the_loader_names_each_missing_required_field() {
    assert!(load(&minimal_bundle()).is_ok());
    for field in ["format", "target", "observed_at", "nonce", "attestation"] {
        let mut value = minimal_bundle();
        value.as_object_mut().unwrap().remove(field);
        assert_eq!(
            load(&value),
            Err(BundleError::MissingField(field)),
            "without {field}"
        );
    }
}

#[test]
fn the_loader_rejects_bad_envelope_values_with_the_specific_error() {
    for wrong in [
        json!("teewatch-bundle/2"),
        json!("TEEWATCH-BUNDLE/1"),
        json!(""),
        json!(1),
        json!(null),
    ] {
        let mut value = minimal_bundle();
        value["format"] = wrong.clone();
        match load(&value) {
            Err(BundleError::WrongFormat(found)) => assert_eq!(found, wrong.to_string()),
            other => panic!("format {wrong}: expected WrongFormat, got {other:?}"),
        }
    }

    for (label, nonce) in [
        ("63 chars", json!("a".repeat(63))),
        ("65 chars", json!("a".repeat(65))),
        ("64 non-hex chars", json!("g".repeat(64))),
        ("0x prefix", json!(format!("0x{}", "a".repeat(62)))),
        ("64 bytes of multi-byte chars", json!("é".repeat(32))),
        ("empty", json!("")),
        ("a number", json!(0)),
        ("null", json!(null)),
    ] {
        let mut value = minimal_bundle();
        value["nonce"] = nonce;
        assert_invalid_field(load(&value), "nonce", &format!("nonce {label}"));
    }

    for (label, observed_at) in [
        ("yesterday", json!("yesterday")),
        ("date only", json!("2025-06-25")),
        ("no zone", json!("2025-06-25T00:00:00")),
        ("empty", json!("")),
        ("unix seconds", json!(1750809600)),
        ("null", json!(null)),
    ] {
        let mut value = minimal_bundle();
        value["observed_at"] = observed_at;
        assert_invalid_field(load(&value), "observed_at", &format!("observed_at {label}"));
    }

    for (label, target) in [
        ("empty", json!("")),
        ("a number", json!(3)),
        ("null", json!(null)),
    ] {
        let mut value = minimal_bundle();
        value["target"] = target;
        assert_invalid_field(load(&value), "target", &format!("target {label}"));
    }

    // Optional parts of the wrong shape are envelope errors too, not panics.
    for (key, wrong) in [
        ("fetch_errors", json!("timeout")),
        ("fetch_errors", json!([{"endpoint": 1}])),
        ("endpoints", json!("https://example.invalid")),
        ("canary", json!({})),
        ("policy", json!("strict")),
        ("policy", json!({"pins": {"mrtd": "not a list"}})),
        ("tls_peer_spki", json!(5)),
    ] {
        let mut value = minimal_bundle();
        value[key] = wrong.clone();
        assert_invalid_field(load(&value), key, &format!("{key} = {wrong}"));
    }
}

#[test]
fn the_loader_accepts_a_null_attestation_and_ignores_unknown_fields() {
    let mut value = minimal_bundle();
    value["attestation"] = Value::Null;
    let bundle = load(&value).expect("attestation: null is allowed");
    assert_eq!(bundle.attestation, None);
    // A bundle without an attestation is judged, not rejected: everything is unknown.
    let verdict = verify_default(&bundle);
    assert_eq!(verdict.state, State::Unknown);
    assert!(
        verdict.checks.iter().all(|c| c.state == State::Unknown),
        "{:?}",
        verdict.checks
    );

    let mut value = minimal_bundle();
    value["x_future_field"] = json!({"anything": [1, 2, 3]});
    value["another"] = json!(null);
    let with_extras = load(&value).expect("unknown fields are ignored");
    assert_eq!(with_extras, load(&minimal_bundle()).unwrap());
    assert_eq!(with_extras.target, "loader");
    assert_eq!(with_extras.nonce_bytes(), [0xab; 32]);

    // Optional parts written as null read as absent.
    let mut value = minimal_bundle();
    for key in [
        "endpoints",
        "fetch_errors",
        "tdx_collateral",
        "nras",
        "canary",
        "tls_peer_spki",
        "policy",
    ] {
        value[key] = Value::Null;
    }
    let nulls = load(&value).expect("null optional parts load");
    assert_eq!(nulls, load(&minimal_bundle()).unwrap());

    // Sub-second and offset timestamps load and are normalised to UTC.
    let mut value = minimal_bundle();
    value["observed_at"] = json!("2025-06-25T02:00:00.5+02:00");
    assert_eq!(
        load(&value).unwrap().observed_at_text(),
        "2025-06-25T00:00:00.500Z"
    );
}

#[test]
fn every_real_bundle_loads_and_verifies_without_panic() {
    let dir = common::repo_path("tests/bundles");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let file = entry.unwrap().path();
        if file.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let bundle = Bundle::from_json(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let policy = bundle
            .policy
            .as_ref()
            .map(|s| Policy::from_snapshot(s).unwrap())
            .unwrap_or_default();
        let first = verify::verify(&bundle, &policy, &TrustAnchors::production());
        let again = verify::verify(&bundle, &policy, &TrustAnchors::production());
        assert_eq!(
            first,
            again,
            "{}: verification is not deterministic",
            file.display()
        );
        seen += 1;
    }
    assert!(seen >= 10, "expected the real bundles in {}", dir.display());
}
