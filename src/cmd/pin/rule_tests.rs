//! Unit tests of the pin rule: which verdicts give pins, and the allowlists they give.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use super::*;
use teewatch::verify::Observed;

fn c(name: &str, scope: &str, state: State) -> Check {
    let reason = format!("{name} says {}", state.as_str());
    let (name, scope) = (name.to_string(), scope.to_string());
    Check {
        name,
        scope,
        state,
        reason,
    }
}

/// A verdict with exactly these checks and observations (the rest from a real bundle).
fn verdict(checks: Vec<Check>, observed: &[(&str, &str, &str, Source)]) -> Verdict {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/bundles/fetch-failed.json"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let bundle = teewatch::verify::Bundle::from_json(&text).unwrap();
    let anchors = teewatch::verify::TrustAnchors::production();
    let mut v = teewatch::verify::verify(&bundle, &Default::default(), &anchors);
    v.checks = checks;
    v.observed = observed
        .iter()
        .map(|(scope, field, value, source)| Observed {
            scope: scope.to_string(),
            field: field.to_string(),
            value: value.to_string(),
            source: *source,
        })
        .collect();
    v
}

/// Every required check passing for each part, and for a model part its GPU and NRAS checks.
fn healthy(parts: &[(&str, bool)]) -> Vec<Check> {
    let mut out = vec![c(ATTESTATION_FORMAT, "", State::Pass)];
    for (scope, model) in parts {
        for name in PART_CHECKS
            .iter()
            .chain([&COMPOSE_BINDING, &TDX_TCB_STATUS])
        {
            out.push(c(name, scope, State::Pass));
        }
        if *model {
            let gpu = format!("{}0", gpu_prefix(scope));
            out.push(c(GPU_EVIDENCE_SIGNATURE, &gpu, State::Pass));
            out.push(c(NRAS_TOKEN, scope, State::Pass));
        }
    }
    out
}

fn set(mut checks: Vec<Check>, name: &str, scope: &str, state: State) -> Vec<Check> {
    for x in checks
        .iter_mut()
        .filter(|x| x.name == name && x.scope == scope)
    {
        *x = c(name, scope, state);
    }
    checks
}

fn values(block: &Block, field: &str) -> Vec<String> {
    block
        .fields
        .iter()
        .find(|f| f.field == field)
        .map(|f| f.values.iter().map(|v| v.value.clone()).collect())
        .unwrap_or_default()
}

const CM: Source = Source::ComposeManager;

const GATEWAY_ANSWER: [(&str, &str, &str, Source); 10] = [
    ("gateway", "mrtd", "aa", Source::Quote),
    ("gateway", "compose_hash", "cc", Source::EventLog),
    ("gateway", "tcb_status", "UpToDate", Source::Quote),
    ("model:0", "mrtd", "bb", Source::Quote),
    ("model:1", "mrtd", "b0", Source::Quote),
    ("model:1", "rtmr0", "01", Source::Claim),
    ("model:0", "tcb_status", "OutOfDate", Source::Quote),
    (
        "model:0/gpu:0",
        "gpu_driver_version",
        "570",
        Source::GpuEvidence,
    ),
    (
        "model:1/gpu:0",
        "gpu_driver_version",
        "570",
        Source::GpuEvidence,
    ),
    (
        "model:0/compose_manager",
        "deployed_compose_sha256",
        "dd",
        CM,
    ),
];

#[test]
fn a_verified_answer_gives_sorted_distinct_evidence_per_table() {
    let checks = healthy(&[("gateway", false), ("model:0", true), ("model:1", true)]);
    // A TCB status outside the policy does not stop pinning; it is reported.
    let checks = set(checks, TDX_TCB_STATUS, "model:0", State::Fail);
    let v = verdict(checks, &GATEWAY_ANSWER);
    let produced = derive(&v).unwrap();
    assert_eq!(produced.blocks.len(), 2);
    let (model, gateway) = (&produced.blocks[0], &produced.blocks[1]);
    assert_eq!(model.table, PinTable::Model);
    // Sorted and distinct across the models; the gateway's value is not the model's.
    assert_eq!(values(model, "mrtd"), ["b0", "bb"]);
    // A claim is never pinned.
    assert!(values(model, "rtmr0").is_empty());
    assert_eq!(values(model, "gpu_driver_version"), ["570"]);
    let driver = &model
        .fields
        .iter()
        .find(|f| f.field == "gpu_driver_version");
    assert_eq!(
        driver.unwrap().values[0].scopes,
        ["model:0/gpu:0", "model:1/gpu:0"]
    );
    assert_eq!(driver.unwrap().values[0].provenance, GPU_EVIDENCE_SIGNATURE);
    let compose = gateway.fields.iter().find(|f| f.field == "compose_hash");
    assert_eq!(
        compose.unwrap().values[0].provenance,
        "tdx_quote_signature + event_log_replay"
    );
    assert_eq!(gateway.table, PinTable::Gateway);
    assert_eq!(values(gateway, "mrtd"), ["aa"]);
    assert!(values(gateway, "gpu_driver_version").is_empty());
    assert_eq!(produced.tcb["OutOfDate"], ["model:0"]);
    assert_eq!(produced.tcb["UpToDate"], ["gateway"]);
    assert_eq!(produced.notes.len(), 1);
    assert_eq!(produced.notes[0].name, TDX_TCB_STATUS);
    // The compose manager runs in the model's TD: what it deployed is the model's pin.
    let deployed = model
        .fields
        .iter()
        .find(|f| f.field == "deployed_compose_sha256");
    assert_eq!(values(model, "deployed_compose_sha256"), ["dd"]);
    assert_eq!(
        deployed.unwrap().values[0].provenance,
        "tdx_quote_signature + report_data_binding + same_td"
    );
    assert!(values(gateway, "deployed_compose_sha256").is_empty());
    assert!(produced.unpinnable.is_empty());
    // A listed field this version cannot pin is named, not written.
    let fields = ["mrtd", "future_field"];
    let mut v = v;
    v.observed.push(Observed {
        scope: "model:0".into(),
        field: "future_field".into(),
        value: "ff".into(),
        source: Source::Quote,
    });
    assert_eq!(unpinnable(&v, &fields), ["future_field"]);
    assert_eq!(block(&v, PinTable::Model, &fields).fields.len(), 1);
}

#[test]
fn without_a_gateway_there_is_no_gateway_block() {
    let v = verdict(
        healthy(&[("", true)]),
        &[
            ("", "mrtd", "aa", Source::Quote),
            (
                "gpu:0",
                "gpu_vbios_version",
                "96.00.CF.00.02",
                Source::GpuEvidence,
            ),
        ],
    );
    let produced = derive(&v).unwrap();
    assert_eq!(produced.blocks.len(), 1);
    assert_eq!(values(&produced.blocks[0], "mrtd"), ["aa"]);
    assert_eq!(
        values(&produced.blocks[0], "gpu_vbios_version"),
        ["96.00.CF.00.02"]
    );
}

#[test]
fn every_required_check_that_did_not_pass_is_named() {
    let all = healthy(&[("gateway", false), ("model:0", true)]);
    for name in REQUIRED_CHECKS {
        for state in [State::Fail, State::Unknown] {
            let scope = if name == GPU_EVIDENCE_SIGNATURE {
                "model:0/gpu:0"
            } else if name == NRAS_TOKEN {
                "model:0"
            } else {
                "gateway"
            };
            let mut checks = set(all.clone(), name, scope, state);
            if !checks.iter().any(|x| x.name == name) {
                checks.push(c(name, scope, state));
            }
            let v = verdict(checks, &GATEWAY_ANSWER);
            let problems = derive(&v).unwrap_err();
            assert_eq!(problems.len(), 1, "{name} {state:?}: {problems:?}");
            assert_eq!(
                (problems[0].name.as_str(), problems[0].scope.as_str()),
                (name, scope)
            );
            assert_eq!(problems[0].state, state);
        }
    }
}

#[test]
fn checks_outside_the_rule_do_not_stop_pinning() {
    let mut checks = healthy(&[("model:0", true)]);
    for name in [
        "nras_result",
        "gpu_unique",
        "tls_key_binding",
        "canary_signature",
    ] {
        checks.push(c(name, "model:0", State::Fail));
    }
    checks.push(c("pin:mrtd", "model:0", State::Fail));
    checks.push(c(IDENTITY_PINNED, "", State::Unknown));
    let v = verdict(checks, &[("model:0", "mrtd", "bb", Source::Quote)]);
    let produced = derive(&v).unwrap();
    let noted: Vec<&str> = produced.notes.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        noted,
        [
            "nras_result",
            "gpu_unique",
            "tls_key_binding",
            "canary_signature"
        ]
    );
}

#[test]
fn a_revoked_platform_and_missing_evidence_are_refused() {
    let checks = healthy(&[("model:0", true)]);
    let v = verdict(
        checks.clone(),
        &[("model:0", "tcb_status", "Revoked", Source::Quote)],
    );
    let problems = derive(&v).unwrap_err();
    assert_eq!(problems[0].name, TDX_TCB_STATUS);
    assert!(problems[0].reason.contains("Revoked"));

    // A model part without GPU evidence or NRAS token checks.
    let checks: Vec<_> = checks
        .into_iter()
        .filter(|x| x.name != GPU_EVIDENCE_SIGNATURE && x.name != NRAS_TOKEN)
        .collect();
    let v = verdict(checks, &[]);
    let named: Vec<String> = derive(&v)
        .unwrap_err()
        .iter()
        .map(|p| format!("{} [{}]", p.name, p.scope))
        .collect();
    assert_eq!(
        named,
        ["nras_token [model:0]", "gpu_evidence_signature [model:0]"]
    );

    // No part at all (attestation not fetched): the unknown checks are named.
    let v = verdict(
        vec![
            c(ATTESTATION_FORMAT, "", State::Unknown),
            c(TDX_QUOTE_PARSE, "", State::Unknown),
        ],
        &[],
    );
    let problems = derive(&v).unwrap_err();
    assert_eq!(problems[0].name, TDX_QUOTE_PARSE);
    assert_eq!(problems[0].state, State::Unknown);

    // A format this version cannot verify: no part, the format check is named.
    let v = verdict(vec![c(ATTESTATION_FORMAT, "", State::Fail)], &[]);
    assert_eq!(derive(&v).unwrap_err()[0].name, ATTESTATION_FORMAT);
}
