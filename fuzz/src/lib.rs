//! The fuzz harnesses: one function per target, each handing arbitrary bytes to one of
//! teewatch's readers of untrusted input the way teewatch itself calls it, and asserting the
//! properties every input must keep (no panic anywhere; what is written reads back the same).
//! The binaries in `fuzz_targets/` are one line each around these functions, and the project's
//! `cargo test` replays every regression input (and every stored bundle) through the same
//! functions without the fuzzer (`tests/it/fuzz.rs` includes this file), so a fixed crash stays
//! fixed.
//!
//! The inputs are what the network or a file gives: JSON for the bundle, the attestation
//! report, the event log, the NRAS answer and the compose manager's part; raw bytes for the TDX
//! quote, the SPDM evidence and the chat bodies; TOML for the configuration. `fuzz/seeds.py`
//! cuts seeds of each from the real vectors and simulator bundles in `tests/`.

use std::path::Path;

use serde_json::{Map, Value, json};
use teewatch::verify::bundle::CanaryExchange;
use teewatch::verify::compose_manager::{self, MemberOrder};
use teewatch::verify::gpu::nras::{self, GpuRef, NrasAnchors, NrasInputs};
use teewatch::verify::gpu::spdm::SpdmEvidence;
use teewatch::verify::policy::{TrustAnchors, pem_to_der};
use teewatch::verify::report::Part;
use teewatch::verify::{self, Bundle, Policy, State, canary, dcap, dstack, tdx};

/// One target's harness: it returns normally on every input, or the input is a finding.
pub type Harness = fn(&[u8]);

/// Every target, by the name of its binary and of its folders under `fuzz/`.
pub const TARGETS: [(&str, Harness); 9] = [
    ("bundle", bundle),
    ("attestation", attestation),
    ("tdx_quote", tdx_quote),
    ("spdm", spdm),
    ("event_log", event_log),
    ("nras", nras),
    ("sse", sse),
    ("compose_manager", compose_manager),
    ("config", config),
];

/// The simulator's test roots of one simulator bundle (tests/bundles/formats), so that its
/// evidence verifies past the signatures and the fuzzer reaches the checks behind them.
const SIM_INTEL_ROOT: &str =
    include_str!("../../tests/bundles/formats/near-gateway-ed25519/sim.intel-root.pem");
const SIM_NVIDIA_ROOT: &str =
    include_str!("../../tests/bundles/formats/near-gateway-ed25519/sim.nvidia-root.pem");
const SIM_NRAS_INTERMEDIATE: &str =
    include_str!("../../tests/bundles/formats/near-gateway-ed25519/sim.nras-intermediate.pem");

/// The collateral of dcap-qvl's v4 quote vector, which the quote target verifies against.
const V4_COLLATERAL: &str =
    include_str!("../../tests/vectors/tdx/dcap-qvl/tdx_quote_collateral.json");
/// 2025-06-25T00:00:00Z, inside that collateral's validity.
const V4_NOW: i64 = 1_750_809_600;

/// The simulator's anchors, as `[dangerous]` would set them.
fn sim_anchors() -> TrustAnchors {
    let mut anchors = TrustAnchors::production();
    anchors.intel_root_der = pem_to_der(SIM_INTEL_ROOT).unwrap_or_default();
    anchors.nvidia_device_root_der = pem_to_der(SIM_NVIDIA_ROOT).unwrap_or_default();
    anchors.nras_intermediates_der = pem_to_der(SIM_NRAS_INTERMEDIATE).into_iter().collect();
    anchors
}

/// A bundle file (`teewatch verify BUNDLE`): the envelope reads, writes back to the same bundle,
/// and verifies under its own policy with the production and the simulator's anchors.
pub fn bundle(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(bundle) = Bundle::from_json(text) else {
        return;
    };
    let written = bundle.to_json_pretty();
    match Bundle::from_json(&written) {
        Ok(again) => assert!(again == bundle, "a bundle reads back unchanged"),
        Err(e) => panic!("a bundle teewatch wrote does not read back: {e}"),
    }
    let policy = bundle
        .policy
        .as_ref()
        .and_then(|s| Policy::from_snapshot(s).ok())
        .unwrap_or_default();
    for anchors in [TrustAnchors::production(), sim_anchors()] {
        let verdict = verify::verify(&bundle, &policy, &anchors);
        let _ = serde_json::to_string(&verdict);
    }
}

/// An attestation report as a provider serves it, in any format: every reader of its parts
/// (quotes, bindings, event logs, compose, GPU evidence, OHTTP keys, TLS) behind the format
/// detection, through the whole verifier. Without collateral no quote signature is checked,
/// which keeps each run cheap (the `bundle` target covers that path) and means no report may
/// pass.
pub fn attestation(data: &[u8]) {
    let Ok(report) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let envelope = json!({
        "format": "teewatch-bundle/1",
        "target": "fuzz",
        "observed_at": "2026-12-01T00:00:00Z",
        "nonce": "00".repeat(32),
        "attestation": report,
        "tls_peer_spki": null,
    });
    let Ok(bundle) = Bundle::from_value(envelope) else {
        return;
    };
    // Without collateral no quote signature can be checked, so nothing in it is proven: a `pass`
    // here would be a report the verifier believed on its own word.
    let verdict = verify::verify(&bundle, &Policy::default(), &sim_anchors());
    assert!(
        verdict.state != State::Pass,
        "a report without collateral passed: {:?}",
        verdict.checks
    );
}

/// A TDX quote: teewatch's own reader of its header and body, the NanoGPT REPORTDATA window,
/// and dcap-qvl's parse and verification against a real collateral, as `tdx_quote_signature`
/// runs it.
pub fn tdx_quote(data: &[u8]) {
    if let Ok(quote) = tdx::TdxQuote::parse(data) {
        let _ = format!("{quote:?}");
    }
    for start in [0, 48, 568, data.len().saturating_sub(32)] {
        let _ = tdx::nanogpt_window(data, start);
    }
    let _ = dcap_qvl::quote::Quote::parse(data);
    let Ok(collateral) = serde_json::from_str::<Value>(V4_COLLATERAL) else {
        return;
    };
    let cache = dcap::CollateralCache::default();
    let anchors = TrustAnchors::production();
    let _ = dcap::verify_quote(
        data,
        Some(&collateral),
        &anchors.intel_root_der,
        V4_NOW,
        &cache,
    );
}

/// One GPU's SPDM evidence (GET_MEASUREMENTS request and response): the parse and every field
/// teewatch reads from it.
pub fn spdm(data: &[u8]) {
    let Ok(evidence) = SpdmEvidence::parse(data) else {
        return;
    };
    let _ = evidence.signed_region(data);
    for index in [0, 1, 2, 35, 36, 50, 255] {
        let _ = evidence.block(index);
    }
    let _ = (
        evidence.driver_version(),
        evidence.vbios_version(),
        evidence.fwid(),
    );
    let _ = (
        evidence.chip_sku(),
        evidence.chip_sku_mod(),
        evidence.project(),
    );
    let _ = (
        evidence.project_sku(),
        evidence.project_sku_mod(),
        evidence.msrscnt(),
    );
    let _ = (evidence.nvdec0_status(), evidence.protected_pcie_status());
    let _ = (evidence.opaque_data_version(), evidence.feature_flag());
}

/// A dstack event log (a JSON list, or a string holding one): parse, replay to the RTMRs, the
/// OS-written identity, and each runtime event's digest.
pub fn event_log(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let Ok(events) = dstack::parse_event_log(&value) else {
        return;
    };
    let replayed = dstack::replay(&events);
    assert!(
        replayed.event_counts.iter().sum::<usize>() <= events.len(),
        "the replay measures no event twice"
    );
    let _ = dstack::runtime_identity(&events);
    for event in &events {
        let _ = dstack::runtime_event_digest(event);
    }
}

/// An NRAS answer and the JWKS beside it, as a bundle's `nras` holds them (`{response, jwks}`,
/// with the optional `nonce` hex and `now` unix seconds the seeds carry): decoded without
/// verification, then verified under the simulator's and the production intermediates.
pub fn nras(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let null = Value::Null;
    let response = value.get("response").unwrap_or(&null);
    let jwks = value.get("jwks").unwrap_or(&null);
    let mut nonce = [0u8; 32];
    if let Some(bytes) = value
        .get("nonce")
        .and_then(Value::as_str)
        .and_then(|t| teewatch::verify::hexutil::decode(t).ok())
        && bytes.len() == nonce.len()
    {
        nonce.copy_from_slice(&bytes);
    }
    let now = value
        .get("now")
        .and_then(Value::as_i64)
        .unwrap_or(1_764_547_200);
    // One GPU per token the answer carries, tied by position, as when no serial was read.
    let count = nras::decode_unverified(response)
        .map(|d| d.gpus.len())
        .unwrap_or(1);
    let gpus: Vec<GpuRef> = (0..count.min(64))
        .map(|index| GpuRef { index, ueid: None })
        .collect();
    let inputs = NrasInputs { response, jwks };
    for intermediates in [
        sim_anchors().nras_intermediates_der,
        TrustAnchors::production().nras_intermediates_der,
    ] {
        let anchors = NrasAnchors {
            intermediates_der: &intermediates,
            expected_iss: value
                .get("iss")
                .and_then(Value::as_str)
                .unwrap_or(nras::NRAS_ISSUER),
        };
        if let Ok(verified) = nras::verify_token(&inputs, &anchors, &nonce, now, &gpus) {
            let _ = nras::judge_result(&verified);
        }
    }
}

/// A chat completion body as received (a JSON body, or a stream of server-sent events): the
/// daemon's reader of its id (`teewatch::fetch::chat_id`) both ways, and the verifier's
/// `canary_hashes` on it, which also tries the Python `json.dumps` form a body may be signed in.
pub fn sse(data: &[u8]) {
    let _ = teewatch::fetch::chat_id(data, true);
    let _ = teewatch::fetch::chat_id(data, false);
    let nonce = [0x5a_u8; 32];
    let request_body = format!(
        "{{\"model\":\"m\",\"messages\":[{{\"role\":\"user\",\"content\":\"hi {}\"}}]}}",
        teewatch::verify::hexutil::lower(&nonce)
    );
    for stream in [false, true] {
        let exchange = CanaryExchange {
            stream,
            request_body: request_body.clone(),
            response_body: data.to_vec(),
            signature: Some(json!({
                "text": format!("{}:{}", "ab".repeat(32), "cd".repeat(32)),
                "signature": format!("0x{}", "11".repeat(65)),
                "signing_address": format!("0x{}", "22".repeat(20)),
                "signing_algo": "ecdsa",
            })),
        };
        let _ = canary::judge(&exchange, &nonce, &[]);
    }
    if let Ok(value) = serde_json::from_slice::<Value>(data) {
        let _ = canary::python_json_dumps(&value);
    }
}

/// A compose manager's attestation (its part's fields): the action log read, serialised and
/// hashed in every member order, what it deployed, and its REPORTDATA binding.
pub fn compose_manager(data: &[u8]) {
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let fields: Map<String, Value> = fields;
    let part = Part::new("compose_manager".into(), &fields);
    if let Ok(actions) = compose_manager::actions(&part) {
        for order in MemberOrder::ALL {
            let text = compose_manager::serialise_actions(actions, order);
            assert!(
                serde_json::from_str::<Value>(&text).is_ok(),
                "a serialised action log is json"
            );
            let _ = compose_manager::actions_hash(actions, order);
        }
        let _ = compose_manager::deployed(actions, None);
        let _ = compose_manager::deployed(actions, Some(&[7u8; 20][..]));
    }
    let _ = compose_manager::judge_binding(&part, &[0u8; 64], &[0u8; 32]);
}

/// A configuration file (`teewatch run --config`): the whole loader, every section and every
/// target's policy; files it names are looked for in a folder that does not exist.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let base = Path::new("/nonexistent/teewatch-fuzz");
    match teewatch::config::Config::parse_in(text, "fuzz.toml", base) {
        Ok(config) => {
            let _ = config.trust_anchors();
            for target in &config.targets {
                let _ = format!("{target:?}");
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}
