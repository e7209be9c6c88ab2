//! The simulator end to end: a bundle fetched over HTTP verifies all-pass under the simulator's
//! test roots (and only under them), and each injected fault trips the check it should.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::path::PathBuf;

use teewatch::config::Config;
use teewatch::sim::faults::Fault;
use teewatch::sim::server::{SimOptions, Simulator, model_name};
use teewatch::verify::{self, Bundle, State, TrustAnchors, Verdict};

struct Running {
    sim: Simulator,
    config: Config,
    dir: PathBuf,
}

async fn start(name: &str, options: SimOptions) -> Running {
    let sim = Simulator::start("127.0.0.1:0".parse().unwrap(), options)
        .await
        .unwrap();
    let dir = std::env::temp_dir().join(format!("teewatch-sim-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("sim.toml");
    teewatch::sim::write_config::write_config(&sim.state, &path).unwrap();
    let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    Running { sim, config, dir }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn check(run: &Running, model: &str) -> Verdict {
    let fetched =
        common::sim_fetch::fetch_bundle(&run.sim.base_url, &run.sim.state.api_key, model).await;
    let bundle = Bundle::from_value(fetched.bundle).unwrap();
    let target = run.config.target(model).unwrap();
    verify::verify(&bundle, &target.policy, &run.config.trust_anchors())
}

fn failing(v: &Verdict) -> Vec<String> {
    v.checks
        .iter()
        .filter(|c| c.state != State::Pass)
        .map(|c| format!("{} [{}] {:?}: {}", c.name, c.scope, c.state, c.reason))
        .collect()
}

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
            "dangerous_nras_intermediates"
        ]
    );
    // Under the production anchors nothing of the simulator is genuine.
    let fetched =
        common::sim_fetch::fetch_bundle(&run.sim.base_url, &run.sim.state.api_key, &model_name(0))
            .await;
    let bundle = Bundle::from_value(fetched.bundle).unwrap();
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

/// One row per fault: the check it must trip, and to which state.
const FAULT_TABLE: [(Fault, &str, State); 25] = [
    (Fault::DriftMrtd, "pin:mrtd", State::Fail),
    (Fault::DriftCompose, "pin:compose_hash", State::Fail),
    (Fault::DriftGpu, "pin:gpu_block_1", State::Fail),
    (Fault::UnboundNonce, "report_data_binding", State::Fail),
    (Fault::WrongAddress, "report_data_binding", State::Fail),
    (Fault::BadQuoteSignature, "tdx_quote_signature", State::Fail),
    (Fault::TcbOutdated, "tdx_tcb_status", State::Fail),
    (Fault::TcbRevoked, "tdx_tcb_status", State::Fail),
    (Fault::DebugTd, "tdx_debug_disabled", State::Fail),
    (Fault::BadGpuSignature, "gpu_evidence_signature", State::Fail),
    (Fault::NrasFalse, "nras_result", State::Fail),
    (Fault::NrasDown, "nras_token", State::Unknown),
    (Fault::NrasSlow, "nras_token", State::Unknown),
    (Fault::PccsDown, "tdx_quote_signature", State::Unknown),
    (Fault::JwksUntrusted, "nras_token", State::Fail),
    (Fault::SignatureNever, "canary_signature", State::Unknown),
    (Fault::SignatureOtherKey, "canary_signature", State::Fail),
    (Fault::CanaryReplay, "canary_hashes", State::Fail),
    (Fault::Http429, "tdx_quote_parse", State::Unknown),
    (Fault::Http500, "tdx_quote_parse", State::Unknown),
    (Fault::Http503, "tdx_quote_parse", State::Unknown),
    (Fault::Timeout, "tdx_quote_parse", State::Unknown),
    (Fault::TruncatedJson, "tdx_quote_parse", State::Unknown),
    (Fault::MalformedJson, "tdx_quote_parse", State::Unknown),
    (Fault::HugeBody, "tdx_quote_parse", State::Unknown),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_trips_its_check() {
    assert_eq!(
        FAULT_TABLE.len(),
        teewatch::sim::faults::ALL_FAULTS.len(),
        "every fault has a row"
    );
    let run = start("faults", SimOptions::default()).await;
    let model = model_name(0);
    // A healthy check first: it also leaves a signed chat for the replay fault to return.
    let healthy = check(&run, &model).await;
    assert_eq!(healthy.state, State::Pass, "{:#?}", failing(&healthy));
    let mut problems = Vec::new();
    for (fault, name, expected) in FAULT_TABLE {
        run.sim.state.set_fault(Some(&model), fault, true).unwrap();
        let v = check(&run, &model).await;
        run.sim.state.set_fault(Some(&model), fault, false).unwrap();
        let states: Vec<State> = v.checks_named(name).map(|c| c.state).collect();
        // The fault shows as the expected state somewhere in its check (per node, GPU or chat),
        // and never as a pass of the whole verdict.
        if !states.contains(&expected) || v.state == State::Pass {
            problems.push(format!("{fault}: {name} expected {expected:?}, found {states:?}; {:#?}", failing(&v)));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // Faults off again: healthy once more.
    let v = check(&run, &model).await;
    assert_eq!(v.state, State::Pass, "{:#?}", failing(&v));
}
