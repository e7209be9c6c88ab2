//! The simulator end to end: a bundle fetched over HTTP verifies all-pass under the simulator's
//! test roots (and only under them), and each injected fault trips the check it should.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod formats;

use crate::common;

use common::sim_run::{check, cold_check, failing, start, unproven};

use teewatch::verify::{self, Bundle, State, TrustAnchors};
use teewatch_sim::faults::Fault;
use teewatch_sim::format::SimFormat;
use teewatch_sim::server::{SimOptions, model_name};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_simulator_is_all_pass_under_its_test_roots() {
    let run = start("healthy", SimOptions::default()).await;
    let v = check(&run, &model_name(0)).await;
    assert_eq!(v.state, State::Pass, "{:#?}", failing(&v));
    assert_eq!(
        v.trust,
        [
            "dangerous_intel_root_ca",
            "dangerous_nvidia_device_root",
            "dangerous_nras_intermediates",
            "dangerous_tls_root"
        ]
    );
    // Under the production anchors nothing of the simulator is genuine.
    let bundle = Bundle::from_value(common::sim_run::fetch(&run, &model_name(0)).await).unwrap();
    let target = run.config.target(&model_name(0)).unwrap();
    let mut production = TrustAnchors::production();
    production.nras_url = run.config.trust_anchors().nras_url;
    let v = verify::verify(&bundle, &target.policy, &production);
    for name in [
        "tdx_quote_signature",
        "gpu_evidence_signature",
        "nras_token",
    ] {
        assert!(
            v.checks_named(name).all(|c| c.state == State::Fail),
            "{name}: {:#?}",
            failing(&v)
        );
    }
}

/// One row per fault: the format of the model it is injected into, the check it must trip, and
/// to which state. The TLS, compose-manager and OHTTP faults need a NEAR model (the dstack format
/// binds no TLS key and has no compose manager). A row expecting `Pass` is a legitimate change
/// (a container restart) that must leave the whole verdict passing.
const FAULT_TABLE: [(Fault, SimFormat, &str, State); 31] = [
    (Fault::DriftMrtd, SimFormat::Dstack, "pin:mrtd", State::Fail),
    (
        Fault::DriftCompose,
        SimFormat::Dstack,
        "pin:compose_hash",
        State::Fail,
    ),
    (
        Fault::DriftGpu,
        SimFormat::Dstack,
        "pin:gpu_block_1",
        State::Fail,
    ),
    (
        Fault::UnboundNonce,
        SimFormat::Dstack,
        "report_data_binding",
        State::Fail,
    ),
    (
        Fault::WrongAddress,
        SimFormat::Dstack,
        "report_data_binding",
        State::Fail,
    ),
    (
        Fault::BadQuoteSignature,
        SimFormat::Dstack,
        "tdx_quote_signature",
        State::Fail,
    ),
    (
        Fault::TcbOutdated,
        SimFormat::Dstack,
        "tdx_tcb_status",
        State::Fail,
    ),
    (
        Fault::TcbRevoked,
        SimFormat::Dstack,
        "tdx_tcb_status",
        State::Fail,
    ),
    (
        Fault::DebugTd,
        SimFormat::Dstack,
        "tdx_debug_disabled",
        State::Fail,
    ),
    (
        Fault::BadGpuSignature,
        SimFormat::Dstack,
        "gpu_evidence_signature",
        State::Fail,
    ),
    (
        Fault::NrasFalse,
        SimFormat::Dstack,
        "nras_result",
        State::Fail,
    ),
    (
        Fault::NrasDown,
        SimFormat::Dstack,
        "nras_token",
        State::Unknown,
    ),
    (
        Fault::NrasSlow,
        SimFormat::Dstack,
        "nras_token",
        State::Unknown,
    ),
    (
        Fault::PccsDown,
        SimFormat::Dstack,
        "tdx_quote_signature",
        State::Unknown,
    ),
    (
        Fault::JwksUntrusted,
        SimFormat::Dstack,
        "nras_token",
        State::Fail,
    ),
    (
        Fault::SignatureNever,
        SimFormat::Dstack,
        "canary_signature",
        State::Unknown,
    ),
    (
        Fault::SignatureOtherKey,
        SimFormat::Dstack,
        "canary_signature",
        State::Fail,
    ),
    (
        Fault::CanaryReplay,
        SimFormat::Dstack,
        "canary_hashes",
        State::Fail,
    ),
    (
        Fault::Http429,
        SimFormat::Dstack,
        "tdx_quote_parse",
        State::Unknown,
    ),
    (
        Fault::Http500,
        SimFormat::Dstack,
        "tdx_quote_parse",
        State::Unknown,
    ),
    (
        Fault::Http503,
        SimFormat::Dstack,
        "tdx_quote_parse",
        State::Unknown,
    ),
    (
        Fault::Timeout,
        SimFormat::Dstack,
        "tdx_quote_parse",
        State::Unknown,
    ),
    (
        Fault::TruncatedJson,
        SimFormat::Dstack,
        "tdx_quote_parse",
        State::Unknown,
    ),
    (
        Fault::MalformedJson,
        SimFormat::Dstack,
        "tdx_quote_parse",
        State::Unknown,
    ),
    (
        Fault::HugeBody,
        SimFormat::Dstack,
        "tdx_quote_parse",
        State::Unknown,
    ),
    (
        Fault::TlsWrongPeer,
        SimFormat::NearGateway,
        "tls_key_binding",
        State::Fail,
    ),
    // A redeploy is legitimate, but the deployed file is pinned: it shows as drift of that pin.
    (
        Fault::Redeploy,
        SimFormat::NearGateway,
        "pin:deployed_compose_sha256",
        State::Fail,
    ),
    (
        Fault::Restart,
        SimFormat::NearGateway,
        "report_data_binding",
        State::Pass,
    ),
    (
        Fault::ActionsTampered,
        SimFormat::NearGateway,
        "report_data_binding",
        State::Fail,
    ),
    (
        Fault::OhttpWrongKey,
        SimFormat::NearGateway,
        "ohttp_key_binding",
        State::Fail,
    ),
    (
        Fault::TlsIntercept,
        SimFormat::NearGateway,
        "tls_key_binding",
        State::Fail,
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_trips_its_check() {
    assert_eq!(
        FAULT_TABLE.len(),
        teewatch_sim::faults::ALL_FAULTS.len(),
        "every fault has a row"
    );
    // Over HTTPS, with a dstack model and a NEAR AI gateway model.
    let formats = [SimFormat::Dstack, SimFormat::NearGateway];
    let options = SimOptions {
        models: formats.len(),
        formats: formats.to_vec(),
        tls: true,
        ..SimOptions::default()
    };
    let run = start("faults", options).await;
    // A healthy check first: it also leaves a signed chat for the replay fault to return.
    for index in 0..formats.len() {
        let healthy = check(&run, &model_name(index)).await;
        assert_eq!(unproven(&healthy), Vec::<String>::new());
    }
    let mut problems = Vec::new();
    for (fault, format, name, expected) in FAULT_TABLE {
        let index = formats.iter().position(|f| *f == format).unwrap();
        let model = model_name(index);
        run.sim.state.set_fault(Some(&model), fault, true).unwrap();
        // Cold caches: the first check after the fault, with nothing cached to fall back on.
        let v = cold_check(&run, &model, fault.name()).await;
        run.sim.state.set_fault(Some(&model), fault, false).unwrap();
        let states: Vec<State> = v.checks_named(name).map(|c| c.state).collect();
        // The fault shows as the expected state somewhere in its check (per node, GPU or chat),
        // and never as a pass of the whole verdict; a legitimate change leaves it all passing.
        let whole_ok = if expected == State::Pass {
            v.state == State::Pass
        } else {
            v.state != State::Pass
        };
        if !states.contains(&expected) || !whole_ok {
            problems.push(format!(
                "{fault}: {name} expected {expected:?}, found {states:?}; {:#?}",
                failing(&v)
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // Faults off again: healthy once more.
    for index in 0..formats.len() {
        let v = check(&run, &model_name(index)).await;
        assert_eq!(unproven(&v), Vec::<String>::new());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_nodes_and_gpus_are_all_pass_round_robin() {
    let options = SimOptions {
        models: 2,
        nodes: 3,
        gpus: 2,
        ..SimOptions::default()
    };
    let run = start("nodes", options).await;
    for model in [model_name(0), model_name(1)] {
        for _ in 0..2 {
            let v = check(&run, &model).await;
            assert_eq!(v.state, State::Pass, "{model}: {:#?}", failing(&v));
            let scopes: Vec<&str> = v
                .checks_named("tdx_quote_signature")
                .map(|c| c.scope.as_str())
                .collect();
            assert_eq!(scopes.len(), 3, "{scopes:?}");
            assert!(
                scopes.iter().all(|s| s.starts_with("node:0x")),
                "{scopes:?}"
            );
            assert_eq!(v.checks_named("gpu_evidence_signature").count(), 6);
            // Different signing keys per node.
            let mut addresses: Vec<&str> = v
                .observed
                .iter()
                .filter(|o| o.field == "signing_address")
                .map(|o| o.value.as_str())
                .collect();
            addresses.dedup();
            assert_eq!(addresses.len(), 3);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_api_details_match_vllm_proxy() {
    let run = start(
        "api",
        SimOptions {
            signature_delay: std::time::Duration::from_millis(300),
            ..SimOptions::default()
        },
    )
    .await;
    let client = reqwest::Client::new();
    let base = &run.sim.base_url;
    let key = &run.sim.state.api_key;
    let model = model_name(0);
    // Without the key: 401. With a bad nonce: vllm-proxy's 400 bodies.
    let r = client
        .get(format!(
            "{base}/v1/attestation/report?model={model}&nonce={}",
            "00".repeat(32)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    for (nonce, message) in [
        ("zz", "Nonce must be hex-encoded"),
        ("abcd", "Nonce must be 32 bytes"),
    ] {
        let r = client
            .get(format!(
                "{base}/api/v1/tee/attestation?model={model}&nonce={nonce}"
            ))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        assert_eq!(
            r.json::<serde_json::Value>().await.unwrap()["detail"],
            message
        );
    }
    // Unknown chat id: the real 404 body.
    let r = client
        .get(format!("{base}/v1/signature/chatcmpl-nope"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap(),
        serde_json::json!({"error": {"message": "Chat id not found or expired", "type": "not_found"}})
    );
    // A signature appears only after the configured delay.
    let request =
        serde_json::json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
            .to_string();
    let body: serde_json::Value = client
        .post(format!("{base}/api/v1/chat/completions"))
        .bearer_auth(key)
        .body(request)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = body["id"].as_str().unwrap();
    let early = client
        .get(format!("{base}/api/v1/tee/signature/{id}?model={model}"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(early.status(), 404);
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let late = client
        .get(format!("{base}/api/v1/tee/signature/{id}?model={model}"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(late.status(), 200);
    // The NanoGPT path echoes the client nonce at the top level.
    let nonce = "ab".repeat(32);
    let report: serde_json::Value = client
        .get(format!(
            "{base}/api/v1/tee/attestation?model={model}&nonce={nonce}"
        ))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(report["nonce"], nonce.as_str());
    // The admin endpoint lists and switches faults.
    let state: serde_json::Value = client
        .post(format!("{base}/admin/faults"))
        .json(&serde_json::json!({"model": model, "fault": "debug-td", "on": true}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        state["models"][0]["faults"],
        serde_json::json!(["debug-td"])
    );
    let r = client
        .post(format!("{base}/admin/faults"))
        .json(&serde_json::json!({"fault": "no-such-fault", "on": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_collateral_and_jwks_keep_serving_while_services_are_down_or_rotate() {
    let run = start("caches", SimOptions::default()).await;
    let model = model_name(0);
    assert_eq!(check(&run, &model).await.state, State::Pass);
    // The PCCS goes down: the warm fetcher verifies from its cached collateral.
    run.sim
        .state
        .set_fault(None, Fault::PccsDown, true)
        .unwrap();
    let v = check(&run, &model).await;
    assert_eq!(v.state, State::Pass, "{:#?}", failing(&v));
    // A cold fetcher has nothing to fall back on: unknown, never fail.
    let v = cold_check(&run, &model, "cold").await;
    assert!(
        v.checks_named("tdx_quote_signature")
            .all(|c| c.state == State::Unknown)
    );
    run.sim
        .state
        .set_fault(None, Fault::PccsDown, false)
        .unwrap();
    // NRAS rotates its key: the unknown kid makes the warm fetcher refetch the JWKS at once.
    run.sim.state.rotate_jwks().unwrap();
    let v = check(&run, &model).await;
    assert_eq!(v.state, State::Pass, "{:#?}", failing(&v));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_rotation_on_demand_is_followed_by_a_fresh_fetch() {
    let run = start("rotate", SimOptions::default()).await;
    let model = model_name(0);
    let before = run.sim.state.nras.lock().unwrap().kid().to_string();
    run.sim.state.rotate_jwks().unwrap();
    let after = run.sim.state.nras.lock().unwrap().kid().to_string();
    assert_ne!(before, after);
    let v = check(&run, &model).await;
    assert_eq!(v.state, State::Pass, "{:#?}", failing(&v));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signature_that_appears_late_is_waited_for() {
    let run = start(
        "late-signature",
        SimOptions {
            signature_delay: std::time::Duration::from_millis(1500),
            ..SimOptions::default()
        },
    )
    .await;
    // The default wait (10 s) covers the delay: the fetcher retries the 404s.
    let v = check(&run, &model_name(0)).await;
    assert_eq!(v.state, State::Pass, "{:#?}", failing(&v));
    // A wait shorter than the delay gives up: unknown, never fail.
    let path = run.dir.join("sim.toml");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "interval = \"10s\"\n",
        "interval = \"10s\"\n\n[target.canary]\nsignature_wait_seconds = 1\n",
    );
    let short = teewatch::config::Config::parse_in(&text, "short.toml", &run.dir).unwrap();
    let target = short.target(&model_name(0)).unwrap();
    let bundle = run.fetcher.check(&short, target).await.unwrap();
    let bundle = Bundle::from_value(bundle).unwrap();
    let v = verify::verify(&bundle, &target.policy, &short.trust_anchors());
    assert!(
        v.checks_named("canary_signature")
            .all(|c| c.state == State::Unknown),
        "{:#?}",
        failing(&v)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_collateral_is_unknown_never_fail_cached_or_not() {
    let run = start(
        "expired-collateral",
        SimOptions {
            collateral_age: chrono::Duration::days(40),
            ..SimOptions::default()
        },
    )
    .await;
    let model = model_name(0);
    for pccs_down in [false, true] {
        // First from the PCCS, then from the cache it filled while the PCCS is down.
        run.sim
            .state
            .set_fault(None, Fault::PccsDown, pccs_down)
            .unwrap();
        let v = check(&run, &model).await;
        let signature: Vec<_> = v.checks_named("tdx_quote_signature").collect();
        assert!(
            signature
                .iter()
                .all(|c| c.state == State::Unknown && c.reason.contains("expired at")),
            "pccs down {pccs_down}: {signature:#?}"
        );
        assert_eq!(v.state, State::Unknown, "{:#?}", failing(&v));
    }
}
