//! Every attestation format NanoGPT serves, end to end through the live path: the simulator
//! answers in the NEAR AI gateway and direct formats (ed25519 keys, TLS fingerprints bound into
//! REPORTDATA, served over HTTPS so the fetch records a real TLS peer), and in the Chutes and
//! Tinfoil formats teewatch cannot verify. Each verdict must be honest and specific.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use crate::common;

use common::sim_run::{Running, check, check_adjusted, failing, start, unproven};

use teewatch::config::{Profile, SigningAlgo};
use teewatch::render;
use teewatch::verify::bundle::Transport;
use teewatch::verify::{AttestationFormat, State, Verdict};
use teewatch_sim::faults::Fault;
use teewatch_sim::format::SimFormat;
use teewatch_sim::server::{SimOptions, model_name};

async fn start_formats(name: &str, formats: &[SimFormat], nodes: usize, tls: bool) -> Running {
    start(
        name,
        SimOptions {
            models: formats.len(),
            formats: formats.to_vec(),
            nodes,
            tls,
            ..SimOptions::default()
        },
    )
    .await
}

/// (scope, state, reason) of every check with this name.
fn named<'a>(v: &'a Verdict, name: &'a str) -> Vec<(&'a str, State, &'a str)> {
    v.checks_named(name)
        .map(|c| (c.scope.as_str(), c.state, c.reason.as_str()))
        .collect()
}

fn scopes<'a>(v: &'a Verdict, name: &'a str) -> Vec<&'a str> {
    named(v, name).into_iter().map(|(s, _, _)| s).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_gateway_over_https_proves_everything_it_can_with_ed25519_keys() {
    let run = start_formats("near-gateway", &[SimFormat::NearGateway], 2, true).await;
    let model = model_name(0);
    let (v, bundle) = check_adjusted(&run, &model, |_| {}).await;
    assert_eq!(unproven(&v), Vec::<String>::new());
    assert_eq!(v.attestation_format, AttestationFormat::NearGateway);
    assert_eq!(
        named(&v, "attestation_format"),
        [(
            "",
            State::Pass,
            "near-gateway: gateway and 2 model attestation(s)"
        )]
    );
    // Every part's quote, binding and event log, each model's compose manager (quoted by the
    // model's own TD) right after it; GPUs and NRAS only for the models.
    assert_eq!(
        scopes(&v, "tdx_quote_signature"),
        [
            "gateway",
            "model:0",
            "model:0/compose_manager",
            "model:1",
            "model:1/compose_manager"
        ]
    );
    for (scope, state, reason) in named(&v, "same_td") {
        assert_eq!(state, State::Pass, "{scope}: {reason}");
        assert!(
            reason.ends_with("the compose manager runs in its td"),
            "{reason}"
        );
    }
    assert_eq!(
        scopes(&v, "pin:deployed_compose_sha256"),
        ["model:0/compose_manager", "model:1/compose_manager"]
    );
    // The OHTTP key configs of the gateway and of each model are signed by their attested keys.
    assert_eq!(scopes(&v, "ohttp_key_binding").len(), 3);
    assert_eq!(scopes(&v, "nras_token"), ["model:0", "model:1"]);
    assert_eq!(
        scopes(&v, "gpu_evidence_signature"),
        ["model:0/gpu:0", "model:1/gpu:0"]
    );
    assert!(v.checks.iter().all(|c| !c.scope.starts_with("gateway/")));
    let nras = bundle.nras.as_ref().unwrap().as_array().unwrap();
    let nras_scopes: Vec<&str> = nras.iter().map(|e| e["scope"].as_str().unwrap()).collect();
    assert_eq!(nras_scopes, ["model:0", "model:1"]);
    // The binding hashes the ed25519 key with the TLS fingerprint; a compose manager's binds its
    // action log.
    for (scope, state, reason) in named(&v, "report_data_binding") {
        assert_eq!(state, State::Pass, "{scope}: {reason}");
        let expected = if scope.ends_with("compose_manager") {
            "reportdata = sha256 of the "
        } else {
            "reportdata = sha256(ed25519 public key "
        };
        assert!(reason.starts_with(expected), "{reason}");
    }
    // One answer for the connection: it ended in the gateway, whose verified quote binds the
    // key, and the served certificate is the gateway's.
    let tls = named(&v, "tls_key_binding");
    assert_eq!(tls.len(), 1, "{tls:?}");
    assert_eq!((tls[0].0, tls[0].1), ("", State::Pass), "{}", tls[0].2);
    assert!(
        tls[0]
            .2
            .contains("of gateway; the served tls_certificate is the gateway's"),
        "{}",
        tls[0].2
    );
    assert_eq!(v.state, State::Pass, "{:#?}", failing(&v));
    // The model's pins apply to the models; the gateway, which runs other software, is judged
    // by its own gateway_pins (which the simulator's configuration writes).
    assert_eq!(scopes(&v, "pin:mrtd"), ["model:0", "model:1", "gateway"]);
    for (scope, state, reason) in named(&v, "pin:compose_hash") {
        assert_eq!(state, State::Pass, "{scope}: {reason}");
    }
    assert_eq!(named(&v, "identity_pinned")[0].1, State::Pass);
    // Both canary chats are signed with a model's ed25519 key over `model:req:resp`.
    for (scope, state, reason) in named(&v, "canary_signature") {
        assert_eq!(state, State::Pass, "{scope}: {reason}");
        assert!(reason.contains("verifies under ed25519 key"), "{reason}");
        assert!(reason.contains("of model:"), "{reason}");
    }
    for (_, state, reason) in named(&v, "canary_hashes") {
        assert_eq!(state, State::Pass, "{reason}");
        assert!(reason.contains(&format!("model {model}")), "{reason}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_gateway_with_ecdsa_keys_binds_the_address_and_recovers_canaries() {
    let run = start_formats("near-ecdsa", &[SimFormat::NearGateway], 1, true).await;
    let (v, _) = check_adjusted(&run, &model_name(0), |m| {
        m.signing_algo = SigningAlgo::Ecdsa;
    })
    .await;
    assert_eq!(unproven(&v), Vec::<String>::new());
    for (scope, state, reason) in named(&v, "report_data_binding") {
        assert_eq!(state, State::Pass, "{reason}");
        if !scope.ends_with("compose_manager") {
            assert!(
                reason.starts_with("reportdata = sha256(signing address 0x"),
                "{reason}"
            );
        }
    }
    // No attested ed25519 key: the simulator publishes no OHTTP attestation, and none is judged.
    assert!(named(&v, "ohttp_key_binding").is_empty());
    for (_, state, reason) in named(&v, "canary_signature") {
        assert_eq!(state, State::Pass, "{reason}");
        assert!(reason.contains("recovers to 0x"), "{reason}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_direct_single_node_passes_with_its_compose_manager() {
    let run = start_formats("near-direct", &[SimFormat::NearDirect], 1, true).await;
    let v = check(&run, &model_name(0)).await;
    assert_eq!(v.state, State::Pass, "{:#?}", failing(&v));
    assert_eq!(
        named(&v, "attestation_format"),
        [(
            "",
            State::Pass,
            "near-direct: 1 node(s) and the compose manager"
        )]
    );
    assert_eq!(scopes(&v, "tdx_quote_signature"), ["", "compose_manager"]);
    assert_eq!(scopes(&v, "same_td"), ["compose_manager"]);
    assert_eq!(scopes(&v, "nras_token"), [""]);
    // One answer for the connection, judged for the whole answer.
    assert_eq!(scopes(&v, "tls_key_binding"), [""]);
    assert_eq!(scopes(&v, "pin:compose_hash"), [""]);
    assert_eq!(
        scopes(&v, "pin:deployed_compose_sha256"),
        ["compose_manager"]
    );
    let deployed: Vec<&str> = v
        .observed
        .iter()
        .filter(|o| o.field == "deployed_compose_file")
        .map(|o| o.source.as_str())
        .collect();
    assert_eq!(
        deployed,
        ["compose_manager"],
        "proven by the compose manager's quote"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_direct_with_several_nodes_has_one_tls_verdict_and_passes() {
    let run = start_formats("near-direct-nodes", &[SimFormat::NearDirect], 3, true).await;
    let v = check(&run, &model_name(0)).await;
    assert_eq!(unproven(&v), Vec::<String>::new());
    // Any node may end the connection: the one whose fingerprint is the peer's passes the one
    // check, and the nodes beside it leave nothing unknown.
    let tls = named(&v, "tls_key_binding");
    assert_eq!(tls.len(), 1, "{tls:?}");
    assert_eq!((tls[0].0, tls[0].1), ("", State::Pass), "{}", tls[0].2);
    assert!(tls[0].2.contains("of node:"), "{}", tls[0].2);
    assert_eq!(v.state, State::Pass, "{:#?}", failing(&v));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_tls_peer_fails_tls_key_binding_and_nothing_else() {
    let run = start_formats("wrong-peer", &[SimFormat::NearGateway], 1, true).await;
    let model = model_name(0);
    run.sim
        .state
        .set_fault(Some(&model), Fault::TlsWrongPeer, true)
        .unwrap();
    let v = check(&run, &model).await;
    assert_eq!(v.state, State::Fail);
    let failed: Vec<_> = v.checks.iter().filter(|c| c.state == State::Fail).collect();
    assert_eq!(failed.len(), 1, "{:#?}", failing(&v));
    assert_eq!(
        (failed[0].name.as_str(), failed[0].scope.as_str()),
        ("tls_key_binding", "")
    );
    assert!(
        failed[0]
            .reason
            .ends_with("the connection did not end in an attested td"),
        "{}",
        failed[0].reason
    );
    // The quote consistently binds the other certificate: the binding itself holds.
    assert_eq!(named(&v, "report_data_binding")[0].1, State::Pass);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_a_proxying_profile_tls_is_not_judged_and_over_plain_http_it_is_unknown() {
    // NanoGPT's paths over HTTPS: the connection ends at the proxy, whose key says nothing about
    // the TD. The check is not emitted, the verdict says the transport is proxied, and the
    // signed canaries carry the proof end to end.
    let run = start_formats("proxied", &[SimFormat::NearGateway], 1, true).await;
    let (v, bundle) = check_adjusted(&run, &model_name(0), |m| {
        m.profile = Profile::Nanogpt;
        m.paths = Profile::Nanogpt.default_paths();
        // A NEAR model reached through NanoGPT answers in the NEAR format.
        m.signing_algo = SigningAlgo::Ed25519;
    })
    .await;
    assert_eq!(bundle.tls_peer_spki, None);
    assert_eq!(bundle.transport, Some(Transport::Proxied));
    assert_eq!(v.transport, Some(Transport::Proxied));
    assert!(named(&v, "tls_key_binding").is_empty());
    assert!(render::checklist(&v).contains("transport: proxied"));

    // The near profile over plain HTTP: there is no TLS peer at all.
    let plain = start_formats("plain", &[SimFormat::NearGateway], 1, false).await;
    let v = check(&plain, &model_name(0)).await;
    assert_eq!(v.state, State::Unknown, "{:#?}", failing(&v));
    let tls = &named(&v, "tls_key_binding")[0];
    assert_eq!((tls.0, tls.1), ("", State::Unknown));
    assert!(
        tls.2.starts_with("no tls peer key was recorded"),
        "{}",
        tls.2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chutes_and_tinfoil_fail_attestation_format_naming_the_format() {
    let formats = [SimFormat::Chutes, SimFormat::Tinfoil];
    let run = start_formats("unsupported", &formats, 1, true).await;
    for (index, (format, name)) in [
        (AttestationFormat::Chutes, "chutes"),
        (AttestationFormat::Tinfoil, "tinfoil"),
    ]
    .into_iter()
    .enumerate()
    {
        let v = check(&run, &model_name(index)).await;
        assert_eq!(v.attestation_format, format);
        assert_eq!(v.state, State::Fail);
        let failed: Vec<_> = v.checks.iter().filter(|c| c.state == State::Fail).collect();
        assert_eq!(failed.len(), 1, "{:#?}", failing(&v));
        assert_eq!(failed[0].name, "attestation_format");
        assert!(
            failed[0]
                .reason
                .contains(&format!("found {name} (not verifiable")),
            "{}",
            failed[0].reason
        );
        // The part checks cannot start, and say why.
        let parse = &named(&v, "tdx_quote_parse")[0];
        assert_eq!(
            (parse.1, parse.2),
            (State::Unknown, "attestation_format failed")
        );
        // Chats are answered but never signed: the canary signature is unknown, not a pass.
        assert!(
            v.checks_named("canary_signature")
                .all(|c| c.state == State::Unknown)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_and_its_models_are_each_verified_with_their_own_platforms_collateral() {
    let run = start_formats("platforms", &[SimFormat::NearGateway], 1, true).await;
    let (v, bundle) = check_adjusted(&run, &model_name(0), |_| {}).await;
    assert_eq!(unproven(&v), Vec::<String>::new());
    // The gateway sits on another platform than its model: the bundle carries both collaterals.
    let fmspcs: Vec<(&str, &str)> = v
        .observed
        .iter()
        .filter(|o| o.field == "fmspc")
        .map(|o| (o.scope.as_str(), o.value.as_str()))
        .collect();
    // The compose manager is quoted by its model's own TD, so on the model's platform.
    assert_eq!(
        fmspcs,
        [
            ("gateway", "7e5700000001"),
            ("model:0", "7e5700000000"),
            ("model:0/compose_manager", "7e5700000000")
        ]
    );
    let collateral = bundle.tdx_collateral.clone().unwrap();
    assert_eq!(collateral.as_array().unwrap().len(), 2);

    // Without the gateway platform's collateral only the gateway's quote is undecided.
    let mut value = serde_json::to_value(&bundle).unwrap();
    let kept: Vec<serde_json::Value> = collateral
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| !c["tcb_info"].as_str().unwrap().contains("7E5700000001"))
        .cloned()
        .collect();
    assert_eq!(kept.len(), 1);
    value["tdx_collateral"] = serde_json::Value::Array(kept);
    let stripped = teewatch::verify::Bundle::from_value(value).unwrap();
    let target = run.config.target(&model_name(0)).unwrap();
    let v = teewatch::verify::verify(&stripped, &target.policy, &run.config.trust_anchors());
    let signature = named(&v, "tdx_quote_signature");
    assert_eq!(
        (signature[0].0, signature[0].1),
        ("gateway", State::Unknown)
    );
    assert!(
        signature[0]
            .2
            .contains("no collateral for fmspc 7e5700000001"),
        "{}",
        signature[0].2
    );
    assert_eq!((signature[1].0, signature[1].1), ("model:0", State::Pass));
}

/// What a NEAR compose manager does after the first check is seen: a container restart is a new
/// last action (a drift event, the verdict still passing), a redeploy a new deployed compose file
/// (drift, and the pinned file fails).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_manager_actions_since_the_last_check_are_drift_events() {
    use teewatch::drift::{TargetHistory, detect, measurements};
    let run = start_formats("manager-actions", &[SimFormat::NearGateway], 1, true).await;
    let model = model_name(0);
    let policy = run.config.target(&model).unwrap().policy.clone();
    let first = check(&run, &model).await;
    assert_eq!(first.state, State::Pass, "{:#?}", failing(&first));
    let mut history = TargetHistory::default();
    let at = chrono::Utc::now();
    let seen = measurements(&first);
    assert!(
        seen.iter()
            .any(|m| m.field == "deployed_compose_sha256" && m.source == "compose_manager"),
        "{seen:#?}"
    );
    history.absorb(&seen, &detect(&history, &seen, &policy, at), at);

    run.sim
        .state
        .set_fault(Some(&model), Fault::Restart, true)
        .unwrap();
    let restarted = check(&run, &model).await;
    assert_eq!(restarted.state, State::Pass, "{:#?}", failing(&restarted));
    let events = detect(&history, &measurements(&restarted), &policy, at);
    let fields: Vec<&str> = events.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["compose_manager_last_action"], "{events:#?}");
    assert!(
        events[0].new_value.contains("/docker_restart@"),
        "{events:#?}"
    );

    run.sim
        .state
        .set_fault(Some(&model), Fault::Redeploy, true)
        .unwrap();
    let redeployed = check(&run, &model).await;
    let (_, state, reason) = named(&redeployed, "pin:deployed_compose_sha256")[0];
    assert_eq!(state, State::Fail, "{reason}");
    let events = detect(&history, &measurements(&redeployed), &policy, at);
    let deployed = events
        .iter()
        .find(|e| e.field == "deployed_compose_sha256")
        .unwrap_or_else(|| panic!("{events:#?}"));
    assert_eq!(
        deployed.reasons,
        [
            teewatch::drift::DriftReason::New,
            teewatch::drift::DriftReason::NotAllowed
        ]
    );
}
