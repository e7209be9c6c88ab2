//! Per-check expectations on bundles built from real vectors, stated explicitly, plus negative
//! tests that change one thing in a valid input and assert the specific failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use crate::common;

use common::{
    bundle, bundle_json, check, from_json, observed, reason, state, verdict, verdict_with,
};
use serde_json::json;
use teewatch::verify::{Policy, State};

use State::{Fail, Pass, Unknown};

/// The part checks in order, for bundles with one node (scope "").
const ORDER: [&str; 8] = [
    "tdx_quote_parse",
    "tdx_quote_signature",
    "tdx_tcb_status",
    "tdx_debug_disabled",
    "tdx_td_attributes",
    "report_data_binding",
    "event_log_replay",
    "compose_binding",
];

/// Expected states of the fixed checks for every real-vector bundle, in `ORDER`, then
/// `identity_pinned`, and the overall state of its verdict, each stated as a literal.
#[test]
fn expected_states_per_bundle() {
    let table: [(&str, [State; 9], State); 11] = [
        (
            "dcapqvl-v4-uptodate",
            [Pass, Pass, Pass, Pass, Pass, Fail, Fail, Unknown, Unknown],
            Fail,
        ),
        (
            "dcapqvl-v4-collateral-expired",
            [
                Pass, Unknown, Unknown, Pass, Pass, Fail, Fail, Unknown, Unknown,
            ],
            Fail,
        ),
        (
            "dcapqvl-v5-td15ex-uptodate",
            [Pass, Pass, Pass, Pass, Pass, Fail, Fail, Unknown, Unknown],
            Fail,
        ),
        (
            "automata-outofdate",
            [Pass, Pass, Fail, Pass, Pass, Pass, Fail, Unknown, Unknown],
            Fail,
        ),
        (
            "gotdxguest-no-tcb-level",
            [Pass, Pass, Fail, Pass, Fail, Fail, Fail, Unknown, Unknown],
            Fail,
        ),
        (
            "sgx-quote",
            [
                Fail, Unknown, Unknown, Unknown, Unknown, Unknown, Unknown, Unknown, Unknown,
            ],
            Fail,
        ),
        (
            "nearai-nanogpt-pins",
            [
                Pass, Unknown, Unknown, Pass, Pass, Fail, Fail, Unknown, Unknown,
            ],
            Fail,
        ),
        // identity_pinned is unknown for the three dstack bundles: their policies pin the
        // application or os_image_hash, never the OS registers mrtd and rtmr0-2 as well.
        (
            "dstack-quote-report",
            [
                Pass, Unknown, Unknown, Pass, Pass, Pass, Pass, Fail, Unknown,
            ],
            Fail,
        ),
        (
            "dstack-tdx-lite",
            [
                Pass, Unknown, Unknown, Pass, Pass, Fail, Pass, Fail, Unknown,
            ],
            Fail,
        ),
        (
            "pmlsdk-dstack-sample",
            [
                Pass, Unknown, Unknown, Pass, Pass, Fail, Pass, Pass, Unknown,
            ],
            Fail,
        ),
        ("fetch-failed", [Unknown; 9], Unknown),
    ];
    for (name, expected, overall) in table {
        let v = verdict(&bundle(name));
        let mut names: Vec<&str> = ORDER.to_vec();
        names.push("identity_pinned");
        for (check_name, want) in names.iter().zip(expected) {
            let (got, why) = check(&v, check_name, "");
            assert_eq!(got, want, "{name}: {check_name} is {got:?} ({why})");
        }
        assert_eq!(v.state, overall, "{name}: overall state");
    }
}

#[test]
fn dcap_qvl_v4_and_v5_quotes_verify_up_to_date() {
    for name in ["dcapqvl-v4-uptodate", "dcapqvl-v5-td15ex-uptodate"] {
        let v = verdict(&bundle(name));
        assert_eq!(state(&v, "tdx_quote_signature"), Pass, "{name}");
        assert_eq!(reason(&v, "tdx_tcb_status"), "UpToDate", "{name}");
        assert_eq!(
            observed(&v, "", "tcb_status"),
            vec![("UpToDate".to_string(), "quote")]
        );
        assert_eq!(
            observed(&v, "", "fmspc"),
            vec![("b0c06f000000".to_string(), "quote")]
        );
    }
}

#[test]
fn automata_quote_is_out_of_date_with_its_advisories() {
    let b = bundle("automata-outofdate");
    let v = verdict(&b);
    let why = reason(&v, "tdx_tcb_status");
    assert_eq!(state(&v, "tdx_tcb_status"), Fail);
    assert!(why.contains("found OutOfDate"), "{why}");
    for advisory in ["INTEL-SA-00960", "INTEL-SA-00982", "INTEL-SA-00986"] {
        assert!(why.contains(advisory), "{why}");
    }
    // The same evidence passes when the policy accepts OutOfDate.
    let mut lenient = Policy::default();
    lenient.allowed_tcb_statuses.push("OutOfDate".into());
    let v = verdict_with(&b, &lenient);
    assert_eq!(state(&v, "tdx_tcb_status"), Pass);
    assert!(reason(&v, "tdx_tcb_status").contains("INTEL-SA-00986"));
}

#[test]
fn go_tdx_guest_quote_has_no_matching_tcb_level() {
    let v = verdict(&bundle("gotdxguest-no-tcb-level"));
    assert_eq!(state(&v, "tdx_quote_signature"), Pass);
    assert_eq!(state(&v, "tdx_tcb_status"), Fail);
    assert!(reason(&v, "tdx_tcb_status").contains("no matching tcb level found"));
}

#[test]
fn sgx_quote_fails_parse_naming_sgx() {
    let v = verdict(&bundle("sgx-quote"));
    assert_eq!(
        reason(&v, "tdx_quote_parse"),
        "tee type: expected 0x81 (tdx), found 0x00 (sgx)"
    );
    assert_eq!(reason(&v, "tdx_quote_signature"), "tdx_quote_parse failed");
}

#[test]
fn collateral_outside_its_window_is_unknown_naming_the_part() {
    let v = verdict(&bundle("dcapqvl-v4-collateral-expired"));
    let why = reason(&v, "tdx_quote_signature");
    assert_eq!(state(&v, "tdx_quote_signature"), Unknown);
    assert!(
        why.contains("tcb info expired at 2025-07-19T10:16:03Z (observed_at 2025-09-01T00:00:00Z)"),
        "{why}"
    );
    assert!(
        why.contains("qe identity expired at 2025-07-19T10:32:27Z"),
        "{why}"
    );

    // Before the collateral was issued: also unknown, never pass.
    let mut early = bundle_json("dcapqvl-v4-uptodate");
    early["observed_at"] = json!("2025-06-01T00:00:00Z");
    let v = verdict(&from_json(early));
    assert_eq!(state(&v, "tdx_quote_signature"), Unknown);
    assert!(
        reason(&v, "tdx_quote_signature").contains("tcb info not valid until 2025-06-19T10:16:03Z")
    );

    // No collateral at all.
    let mut none = bundle_json("dcapqvl-v4-uptodate");
    none["tdx_collateral"] = json!(null);
    let v = verdict(&from_json(none));
    assert_eq!(
        reason(&v, "tdx_quote_signature"),
        "no tdx collateral in the bundle"
    );
    assert_eq!(state(&v, "tdx_tcb_status"), Unknown);
}

#[test]
fn collateral_is_chosen_by_fmspc_from_a_list() {
    let v4 = bundle_json("dcapqvl-v4-uptodate");
    let automata = bundle_json("automata-outofdate");
    let mut both = v4.clone();
    both["tdx_collateral"] = json!([automata["tdx_collateral"], v4["tdx_collateral"]]);
    let v = verdict(&from_json(both));
    assert_eq!(state(&v, "tdx_quote_signature"), Pass);

    // A list without this platform's FMSPC cannot judge the quote.
    let mut wrong = v4;
    wrong["tdx_collateral"] = json!([automata["tdx_collateral"], automata["tdx_collateral"]]);
    let v = verdict(&from_json(wrong));
    assert_eq!(state(&v, "tdx_quote_signature"), Unknown);
    assert!(reason(&v, "tdx_quote_signature").contains("no collateral for fmspc b0c06f000000"));

    // A single collateral of another platform: dcap-qvl's fmspc check makes it unknown.
    let mut other = bundle_json("dcapqvl-v4-uptodate");
    other["tdx_collateral"] = automata["tdx_collateral"].clone();
    other["observed_at"] = json!("2025-02-20T00:00:00Z");
    let v = verdict(&from_json(other));
    assert_ne!(state(&v, "tdx_quote_signature"), Pass);
}

#[test]
fn nanogpt_intel_windows_match_the_nearai_sample_only() {
    // The 2025 NEAR sample carries no collateral, so its quote is not verified: its windows are
    // shown equal to the published values, but its pins cannot pass on them.
    let b = bundle("nearai-nanogpt-pins");
    let v = verdict(&b);
    let pins = &b.policy.as_ref().unwrap().pins;
    for field in ["intel_mrenclave", "intel_mrsigner"] {
        assert_eq!(observed(&v, "", field)[0].0, pins[field][0], "{field}");
        assert_eq!(check(&v, &format!("pin:{field}"), "").0, Unknown, "{field}");
        assert!(
            check(&v, &format!("pin:{field}"), "")
                .1
                .starts_with("quote not verified")
        );
    }
    // dcap-qvl's quote: same TDX module 1.5.06 (mrenclave window), another MRTD (mrsigner window).
    let v = verdict(&bundle("dcapqvl-v4-uptodate"));
    assert_eq!(state(&v, "pin:intel_mrenclave"), Pass);
    assert_eq!(state(&v, "pin:intel_mrsigner"), Fail);
    assert!(reason(&v, "pin:intel_mrsigner").contains(
        "found 00000000000000000000001000000000e70206000000000091eb2b44d141d4ec (quote)"
    ));
}

#[test]
fn report_data_binding_names_the_half_that_differs() {
    let good = bundle_json("dstack-quote-report");
    assert_eq!(
        state(&verdict(&from_json(good.clone())), "report_data_binding"),
        Pass
    );

    let mut other_nonce = good.clone();
    other_nonce["nonce"] = json!("ab".repeat(32));
    let v = verdict(&from_json(other_nonce));
    let why = reason(&v, "report_data_binding");
    assert_eq!(state(&v, "report_data_binding"), Fail);
    assert!(
        why.starts_with("second half (nonce): expected abab"),
        "{why}"
    );
    assert!(!why.contains("first half"), "{why}");

    let mut other_address = good.clone();
    other_address["attestation"]["signing_address"] =
        json!("0x5678000000000000000000000000000000000000");
    let v = verdict(&from_json(other_address));
    let why = reason(&v, "report_data_binding");
    assert!(
        why.starts_with("first half (signing address): expected 5678"),
        "{why}"
    );
    assert!(!why.contains("second half"), "{why}");
    // The address is then only claimed, so a pin on it cannot pass.
    assert_eq!(observed(&v, "", "signing_address")[0].1, "claim");
}

#[test]
fn an_echoed_nonce_counts_for_nothing() {
    // NanoGPT in March 2026: the response echoed the client nonce while the quote was bound to
    // another one. The echo must not help.
    let mut echoed = bundle_json("dstack-quote-report");
    let nonce = "cd".repeat(32);
    echoed["nonce"] = json!(nonce);
    echoed["attestation"]["nonce"] = json!(nonce);
    echoed["attestation"]["request_nonce"] = json!(nonce);
    let v = verdict(&from_json(echoed));
    assert_eq!(state(&v, "report_data_binding"), Fail);
    assert!(reason(&v, "report_data_binding").contains("echoes the nonce"));
}

#[test]
fn signing_public_key_must_hash_to_the_signing_address() {
    let mut b = bundle_json("dstack-quote-report");
    // secp256k1 generator point: the public key of private key 1.
    b["attestation"]["signing_public_key"] = json!(
        "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798483ada7726a3c4655da4fbfc0e1108a8fd17b448a68554199c47d08ffb10d4b8"
    );
    let v = verdict(&from_json(b.clone()));
    assert_eq!(state(&v, "signing_key_address"), Fail);
    assert_eq!(
        reason(&v, "signing_key_address"),
        "keccak256(signing_public_key): expected address 0x1234000000000000000000000000000000000000, found 0x7e5f4552091a69125d5dfcb7b8c2659029395bdf"
    );
    b["attestation"]["signing_address"] = json!("0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf");
    let v = verdict(&from_json(b));
    assert_eq!(state(&v, "signing_key_address"), Pass);
    // Absent public key: the check is omitted, nothing else is.
    let v = verdict(&bundle("dstack-quote-report"));
    assert_eq!(v.checks_named("signing_key_address").count(), 0);
}

#[test]
fn event_log_replay_on_real_logs() {
    // 28 events with supplied digests, application events after system-ready.
    let v = verdict(&bundle("dstack-quote-report"));
    assert_eq!(
        reason(&v, "event_log_replay"),
        "rtmr0, rtmr1, rtmr2, rtmr3 replayed from 28 events match the quote (runtime digests recomputed from payloads); identity events written by the os before system-ready, 1 application event(s) after it"
    );
    assert_eq!(
        observed(&v, "", "compose_hash")[0],
        (
            "3763bc34552cf3a27ff71ad5f7a90471562a1a2df552dfc1998cba2d60da27e7".to_string(),
            "event_log"
        )
    );
    assert_eq!(
        observed(&v, "", "key_provider")[0],
        ("local-sgx".to_string(), "event_log")
    );
    // imr 3 events with empty supplied digests: recomputed, and the replay still matches.
    let v = verdict(&bundle("dstack-tdx-lite"));
    assert_eq!(state(&v, "event_log_replay"), Pass);
    // info.tcb_info.event_log given as a list inside a JSON-string tcb_info.
    let v = verdict(&bundle("pmlsdk-dstack-sample"));
    assert_eq!(state(&v, "event_log_replay"), Pass);
}

#[test]
fn event_log_tampering_fails_replay_naming_the_register() {
    let good = bundle_json("dstack-quote-report");
    let events: Vec<serde_json::Value> =
        serde_json::from_str(good["attestation"]["event_log"].as_str().unwrap()).unwrap();

    // A runtime payload changed (its digest left as logged): recomputation exposes it.
    let mut runtime = events.clone();
    let i = runtime
        .iter()
        .position(|e| e["event"] == "compose-hash")
        .unwrap();
    runtime[i]["event_payload"] = json!("00".repeat(32));
    let mut b = good.clone();
    b["attestation"]["event_log"] = json!(runtime);
    let v = verdict(&from_json(b));
    let why = reason(&v, "event_log_replay");
    assert_eq!(state(&v, "event_log_replay"), Fail);
    assert!(why.contains("(compose-hash): supplied digest"), "{why}");
    assert!(why.contains("rtmr3: replayed"), "{why}");
    // The compose hash is then only a claim, so a compose pin is unknown naming the replay.
    assert_eq!(observed(&v, "", "compose_hash")[0].1, "claim");

    // A runtime payload and its digest both replaced consistently: rtmr3 no longer matches.
    let mut forged = events.clone();
    forged[i]["event_payload"] = json!("11".repeat(32));
    forged[i]["digest"] = json!("");
    let mut b = good.clone();
    b["attestation"]["event_log"] = json!(forged);
    let v = verdict(&from_json(b));
    let why = reason(&v, "event_log_replay");
    assert!(why.starts_with("rtmr3: replayed"), "{why}");

    // A boot digest changed: rtmr0 no longer replays.
    let mut boot = events.clone();
    boot[0]["digest"] = json!("00".repeat(48));
    let mut b = good.clone();
    b["attestation"]["event_log"] = json!(boot);
    let v = verdict(&from_json(b));
    assert!(reason(&v, "event_log_replay").starts_with("rtmr0: replayed"));

    // An event dropped.
    let mut dropped = events;
    dropped.remove(i);
    let mut b = good.clone();
    b["attestation"]["event_log"] = json!(dropped);
    assert_eq!(state(&verdict(&from_json(b)), "event_log_replay"), Fail);

    // No event log at all: evidence the format promises is missing, which fails.
    let mut b = good;
    b["attestation"]
        .as_object_mut()
        .unwrap()
        .remove("event_log");
    let v = verdict(&from_json(b));
    assert_eq!(
        reason(&v, "event_log_replay"),
        "the report carries no event log"
    );
}

#[test]
fn compose_binding_on_the_mrconfigid_form_and_its_tampering() {
    let good = bundle_json("pmlsdk-dstack-sample");
    let v = verdict(&from_json(good.clone()));
    assert_eq!(
        reason(&v, "compose_binding"),
        "sha256(app_compose) equals the replayed compose-hash event; mrconfigid = 0x01 ‖ sha256(app_compose)"
    );
    // One character of the app compose changed.
    let mut b = good;
    let info = b["attestation"]["info"].as_object_mut().unwrap();
    let mut tcb: serde_json::Value =
        serde_json::from_str(info["tcb_info"].as_str().unwrap()).unwrap();
    let compose = tcb["app_compose"]
        .as_str()
        .unwrap()
        .replacen("allowed_envs", "allowed_envz", 1);
    tcb["app_compose"] = json!(compose);
    info.insert("tcb_info".into(), json!(tcb.to_string()));
    let v = verdict(&from_json(b));
    assert!(
        reason(&v, "compose_binding")
            .starts_with("compose-hash event: expected sha256(app_compose)")
    );
}

#[test]
fn claimed_values_never_satisfy_a_pin() {
    // dstack-tdx-lite: vm_config claims os_image_hash e6f5…, the replayed event says 07a2….
    let v = verdict(&bundle("dstack-tdx-lite"));
    let os = observed(&v, "", "os_image_hash");
    assert!(os.contains(&(
        "07a2388c7a6a1b6a646d443f1517990a4ec294471d63146cda9d56972765051d".into(),
        "event_log"
    )));
    assert!(os.contains(&(
        "e6f5cfec20c02e7b97baa213d0f718020b55e040172d90ccbcb946d56c8b09db".into(),
        "claim"
    )));
    // That quote carries no collateral: the replayed value neither passes nor fails a pin.
    assert_eq!(state(&v, "pin:os_image_hash"), Unknown);
    assert!(reason(&v, "pin:os_image_hash").starts_with("quote not verified"));
    // dstack-quote-report: os_image_hash appears only in vm_config.
    let v = verdict(&bundle("dstack-quote-report"));
    assert!(reason(&v, "pin:os_image_hash").contains("only claimed by the report"));
}

#[test]
fn pins_whose_source_step_failed_are_unknown_and_gpu_pins_wait_for_gpu_checks() {
    let mut policy = Policy::default();
    for (field, value) in [
        (
            "compose_hash",
            "3763bc34552cf3a27ff71ad5f7a90471562a1a2df552dfc1998cba2d60da27e7",
        ),
        (
            "nvidia_mrenclave",
            "00000000020133000130008048dfd18fe229bf16eb9d30cca0f11a24dafe6eb7",
        ),
        (
            "signing_address",
            "0x1234000000000000000000000000000000000000",
        ),
    ] {
        policy.pins.insert(field.into(), vec![value.into()]);
    }
    let mut b = bundle_json("dstack-quote-report");
    b["nonce"] = json!("ff".repeat(32));
    b["attestation"]["event_log"] = json!("[]");
    let v = verdict_with(&from_json(b), &policy);
    assert_eq!(
        reason(&v, "pin:compose_hash"),
        "compose_hash comes from event_log_replay, which did not pass"
    );
    assert_eq!(
        reason(&v, "pin:signing_address"),
        "signing_address comes from report_data_binding, which did not pass"
    );
    assert_eq!(state(&v, "pin:nvidia_mrenclave"), Unknown);
    // With the evidence intact the values are proven by the replay and the binding, but this
    // vector has no collateral, so its quote is not verified and the pins stay unknown.
    let v = verdict_with(&bundle("dstack-quote-report"), &policy);
    for pin in ["pin:compose_hash", "pin:signing_address"] {
        assert_eq!(state(&v, pin), Unknown, "{pin}");
        assert!(reason(&v, pin).starts_with("quote not verified"), "{pin}");
    }
}

#[test]
fn several_nodes_are_verified_each_under_its_own_scope() {
    let a = bundle_json("dstack-quote-report");
    let b = bundle_json("dstack-tdx-lite");
    let mut two = a.clone();
    let mut second = b["attestation"].clone();
    second["signing_address"] = json!("0xabcdef0000000000000000000000000000000000");
    two["attestation"]["all_attestations"] = json!([a["attestation"], second]);
    let mut policy = Policy::default();
    policy
        .pins
        .insert("key_provider".into(), vec!["kms".into()]);
    let v = verdict_with(&from_json(two), &policy);
    let first = "node:0x1234000000000000000000000000000000000000";
    let other = "node:0xabcdef0000000000000000000000000000000000";
    assert_eq!(check(&v, "report_data_binding", first).0, Pass);
    assert_eq!(check(&v, "report_data_binding", other).0, Fail);
    assert_eq!(check(&v, "event_log_replay", other).0, Pass);
    // The pin is judged per node, on each node's own value (local-sgx on the first, kms on the
    // second); neither quote is verified (no collateral), so neither pin is decided.
    assert_eq!(observed(&v, first, "key_provider")[0].0, "local-sgx");
    assert_eq!(observed(&v, other, "key_provider")[0].0, "kms");
    assert_eq!(check(&v, "pin:key_provider", first).0, Unknown);
    assert_eq!(check(&v, "pin:key_provider", other).0, Unknown);
    // Only the format, gpu_unique (across the nodes), the canary checks (no canary here) and
    // identity_pinned are bundle-wide.
    let bundle_wide: Vec<&str> = v
        .checks
        .iter()
        .filter(|c| c.scope.is_empty())
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        bundle_wide,
        [
            "attestation_format",
            "gpu_unique",
            "canary_fresh",
            "canary_hashes",
            "canary_signature",
            "identity_pinned"
        ]
    );
    // Each node's GPU checks sit under its own scope.
    assert_eq!(check(&v, "gpu_evidence_signature", first).0, Fail);
    assert_eq!(check(&v, "nras_token", other).0, Unknown);
}

#[test]
fn formats_this_version_cannot_read_fail_honestly() {
    for (attestation, format) in [
        (json!({"attestation_type": "chutes"}), "chutes"),
        (
            json!({"format": "https://tinfoil.sh/predicate/sev-snp-guest/v1"}),
            "tinfoil",
        ),
    ] {
        let mut b = bundle_json("dstack-quote-report");
        b["attestation"] = attestation;
        let v = verdict(&from_json(b));
        assert_eq!(v.attestation_format.as_str(), format);
        assert_eq!(state(&v, "attestation_format"), Fail);
        assert!(
            reason(&v, "attestation_format").contains(&format!("found {format} (not verifiable")),
            "{}",
            reason(&v, "attestation_format")
        );
        assert_eq!(state(&v, "tdx_quote_parse"), Unknown);
        assert_eq!(reason(&v, "tdx_quote_parse"), "attestation_format failed");
        assert_eq!(v.state, Fail);
    }
    let mut b = bundle_json("dstack-quote-report");
    b["attestation"] = json!({"hello": "world"});
    let v = verdict(&from_json(b));
    assert_eq!(v.attestation_format.as_str(), "unknown");
    assert_eq!(
        reason(&v, "attestation_format"),
        "attestation format: expected one of [dstack, near-gateway, near-direct], found a response in no recognised format"
    );
    // A NEAR gateway answer without any model attestation proves nothing about the model.
    let mut b = bundle_json("dstack-quote-report");
    b["attestation"] = json!({"gateway_attestation": {}, "model_attestations": []});
    let v = verdict(&from_json(b));
    assert_eq!(v.attestation_format.as_str(), "near-gateway");
    assert_eq!(
        reason(&v, "attestation_format"),
        "the near-gateway report lists no model attestation"
    );
    assert_eq!(check(&v, "tdx_quote_parse", "gateway").0, Fail);
    assert_eq!(v.state, Fail);
}

#[test]
fn a_failed_fetch_makes_every_check_unknown() {
    let mut b = bundle_json("fetch-failed");
    b["policy"] = json!({"pins": {"mrtd": ["00".repeat(48)]}});
    let v = verdict(&from_json(b));
    assert_eq!(v.state, Unknown);
    assert!(v.checks.iter().all(|c| c.state == Unknown));
    assert!(reason(&v, "pin:mrtd").contains("timeout: no response within 30 s"));
}

#[test]
fn a_report_listed_only_in_all_attestations_is_the_node() {
    let mut b = bundle_json("dstack-quote-report");
    let report = b["attestation"].clone();
    b["attestation"] = json!({"all_attestations": [report]});
    let v = verdict(&from_json(b));
    assert_eq!(state(&v, "report_data_binding"), Pass);
    assert_eq!(state(&v, "event_log_replay"), Pass);
}

#[test]
fn intel_quote_and_quote_must_carry_the_same_bytes() {
    let mut b = bundle_json("dstack-quote-report");
    let hex = b["attestation"]["intel_quote"]
        .as_str()
        .unwrap()
        .to_string();
    b["attestation"]["quote"] = json!(format!("0x{}", hex.to_uppercase()));
    assert_eq!(
        state(&verdict(&from_json(b.clone())), "tdx_quote_parse"),
        Pass
    );
    let mut other = hex.clone();
    other.replace_range(0..2, "05");
    b["attestation"]["quote"] = json!(other);
    let v = verdict(&from_json(b));
    assert_eq!(
        reason(&v, "tdx_quote_parse"),
        "`intel_quote` and `quote` carry different quotes"
    );
}

#[test]
fn a_non_string_signing_algo_is_malformed_not_ecdsa() {
    let mut b = bundle_json("dstack-quote-report");
    b["attestation"]["signing_algo"] = json!(0);
    let v = verdict(&from_json(b));
    assert_eq!(
        reason(&v, "report_data_binding"),
        "signing_algo: expected \"ecdsa\" or \"ed25519\", found a number"
    );
}

#[test]
fn node_scopes_are_unique_even_for_odd_addresses() {
    let a = bundle_json("dstack-quote-report");
    let mut odd = a["attestation"].clone();
    odd["signing_address"] = json!("2");
    let mut none = a["attestation"].clone();
    none.as_object_mut().unwrap().remove("signing_address");
    let mut b = a.clone();
    b["attestation"]["all_attestations"] = json!([a["attestation"], odd, none]);
    let v = verdict(&from_json(b));
    let mut scopes: Vec<&str> = v
        .checks_named("tdx_quote_parse")
        .map(|c| c.scope.as_str())
        .collect();
    assert_eq!(
        scopes,
        [
            "node:0x1234000000000000000000000000000000000000",
            "node:#1",
            "node:#2"
        ]
    );
    scopes.dedup();
    assert_eq!(scopes.len(), 3);
}
