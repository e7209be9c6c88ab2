//! The simulator's formats, keys and HTTPS through its real HTTP interface: what a client sees on
//! the wire is what these tests read.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::net::SocketAddr;
use std::sync::Arc;

use aws_lc_rs::signature::{ED25519, UnparsedPublicKey};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

use super::{SimOptions, Simulator, model_name};
use crate::faults::Fault;
use crate::format::SimFormat;
use teewatch_verify::hexutil;

/// REPORTDATA's offset in a v4 quote: the 48-byte header, then 520 bytes of the TD report body.
const REPORT_DATA_OFFSET: usize = 48 + 520;

pub(super) async fn start(formats: Vec<SimFormat>, nodes: usize, tls: bool) -> Simulator {
    let options = SimOptions {
        models: formats.len().max(1),
        nodes,
        formats,
        tls,
        ..SimOptions::default()
    };
    let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
    Simulator::start(listen, options).await.unwrap()
}

pub(super) fn client(sim: &Simulator) -> reqwest::Client {
    let root = reqwest::Certificate::from_der(sim.state.tls_certificate_der()).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(root)
        .build()
        .unwrap()
}

pub(super) async fn attest(
    sim: &Simulator,
    model: usize,
    nonce: &[u8; 32],
    algo: Option<&str>,
) -> Value {
    let response = attest_raw(sim, model, nonce, algo).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn attest_raw(
    sim: &Simulator,
    model: usize,
    nonce: &[u8; 32],
    algo: Option<&str>,
) -> reqwest::Response {
    let mut url = format!(
        "{}/v1/attestation/report?model={}&nonce={}",
        sim.base_url,
        model_name(model),
        hexutil::lower(nonce)
    );
    if let Some(algo) = algo {
        url.push_str(&format!("&signing_algo={algo}"));
    }
    client(sim)
        .get(url)
        .bearer_auth(&sim.state.api_key)
        .send()
        .await
        .unwrap()
}

fn report_data(part: &Value) -> Vec<u8> {
    let quote = hexutil::decode(part["intel_quote"].as_str().unwrap()).unwrap();
    quote[REPORT_DATA_OFFSET..REPORT_DATA_OFFSET + 64].to_vec()
}

/// The raw key bytes a part names: the address for ECDSA, the public key for ed25519.
fn key_bytes(part: &Value) -> Vec<u8> {
    let address = part["signing_address"].as_str().unwrap();
    match part["signing_algo"].as_str().unwrap() {
        "ecdsa" => hexutil::decode(address.strip_prefix("0x").unwrap()).unwrap(),
        "ed25519" => {
            assert_eq!(address.len(), 64);
            assert_eq!(part["signing_public_key"].as_str(), Some(address));
            hexutil::decode(address).unwrap()
        }
        other => panic!("algo {other}"),
    }
}

fn fingerprint(part: &Value) -> [u8; 32] {
    let hex = part["tls_cert_fingerprint"].as_str().unwrap();
    hexutil::decode(hex).unwrap().try_into().unwrap()
}

/// REPORTDATA = SHA256(key ‖ fingerprint) ‖ nonce.
fn assert_bound(part: &Value, fp: &[u8; 32], nonce: &[u8; 32]) {
    let data = report_data(part);
    let expected = Sha256::digest([key_bytes(part), fp.to_vec()].concat());
    assert_eq!(&data[..32], expected.as_slice());
    assert_eq!(&data[32..], nonce);
}

#[tokio::test]
async fn near_gateway_parts_bind_key_fingerprint_and_nonce_for_both_algorithms() {
    let sim = start(vec![SimFormat::NearGateway], 2, false).await;
    let nonce = [0x5a; 32];
    for (algo, expected_algo) in [(Some("ecdsa"), "ecdsa"), (None, "ed25519")] {
        let report = attest(&sim, 0, &nonce, algo).await;
        let gateway = &report["gateway_attestation"];
        assert_eq!(gateway["signing_algo"], expected_algo);
        assert!(gateway.get("nvidia_payload").is_none());
        assert_eq!(fingerprint(gateway), sim.state.tls_spki_fingerprint());
        assert_eq!(gateway["request_nonce"], hexutil::lower(&nonce));
        assert_bound(gateway, &sim.state.tls_spki_fingerprint(), &nonce);
        assert_eq!(
            report["tls_certificate"].as_str(),
            Some(sim.state.tls_certificate_pem())
        );
        let models = report["model_attestations"].as_array().unwrap();
        assert_eq!(models.len(), 2);
        for (part, node) in models.iter().zip(&sim.state.models[0].nodes) {
            assert!(part["nvidia_payload"].is_string());
            assert_eq!(part["model_name"], model_name(0));
            assert_eq!(part["signing_algo"], expected_algo);
            assert_eq!(fingerprint(part), node.tls.spki_fingerprint());
            assert_bound(part, &node.tls.spki_fingerprint(), &nonce);
        }
    }
}

#[tokio::test]
async fn near_direct_answering_node_binds_served_certificate() {
    let sim = start(vec![SimFormat::NearDirect], 3, false).await;
    let nonce = [0x21; 32];
    let report = attest(&sim, 0, &nonce, None).await;
    assert_eq!(report["model_name"], model_name(0));
    assert!(report["nvidia_payload"].is_string());
    assert_eq!(fingerprint(&report), sim.state.tls_spki_fingerprint());
    assert_bound(&report, &sim.state.tls_spki_fingerprint(), &nonce);
    // The compose manager names no key of its own: its quote binds its actions (tests_near).
    let manager = &report["compose_manager_attestation"];
    assert!(manager.get("nvidia_payload").is_none());
    assert!(manager.get("tls_cert_fingerprint").is_none());
    assert!(manager.get("signing_address").is_none());
    let all = report["all_attestations"].as_array().unwrap();
    assert_eq!(all.len(), 3);
    let mut answering = 0;
    for (part, node) in all.iter().zip(&sim.state.models[0].nodes) {
        assert!(part["nvidia_payload"].is_string());
        assert_eq!(part["model_name"], model_name(0));
        if part["signing_address"] == report["signing_address"] {
            answering += 1;
            for (key, value) in part.as_object().unwrap() {
                assert_eq!(&report[key], value, "{key}");
            }
        } else {
            assert_eq!(fingerprint(part), node.tls.spki_fingerprint());
            assert_bound(part, &node.tls.spki_fingerprint(), &nonce);
        }
    }
    assert_eq!(answering, 1);
}

#[tokio::test]
async fn tls_wrong_peer_moves_fingerprint_and_report_data_together() {
    let sim = start(
        vec![SimFormat::NearGateway, SimFormat::NearDirect],
        1,
        false,
    )
    .await;
    sim.state
        .set_fault(None, Fault::TlsWrongPeer, true)
        .unwrap();
    let served = sim.state.tls_spki_fingerprint();
    let nonce = [0x33; 32];
    let gateway = attest(&sim, 0, &nonce, None).await;
    let terminating = &gateway["gateway_attestation"];
    assert_ne!(fingerprint(terminating), served);
    assert_bound(terminating, &fingerprint(terminating), &nonce);
    // The model nodes behind the gateway keep their own certificates.
    let part = &gateway["model_attestations"][0];
    assert_eq!(
        fingerprint(part),
        sim.state.models[0].nodes[0].tls.spki_fingerprint()
    );
    let direct = attest(&sim, 1, &nonce, Some("ecdsa")).await;
    assert_ne!(fingerprint(&direct), served);
    assert_bound(&direct, &fingerprint(&direct), &nonce);
}

#[tokio::test]
async fn wrong_address_and_unbound_nonce_reach_near_parts() {
    let sim = start(vec![SimFormat::NearGateway], 1, false).await;
    let nonce = [0x44; 32];
    sim.state
        .set_fault(None, Fault::WrongAddress, true)
        .unwrap();
    let report = attest(&sim, 0, &nonce, None).await;
    let part = &report["model_attestations"][0];
    let data = report_data(part);
    let honest = Sha256::digest([key_bytes(part), fingerprint(part).to_vec()].concat());
    assert_ne!(&data[..32], honest.as_slice());
    assert_eq!(&data[32..], &nonce);
    sim.state
        .set_fault(None, Fault::WrongAddress, false)
        .unwrap();
    sim.state
        .set_fault(None, Fault::UnboundNonce, true)
        .unwrap();
    let report = attest(&sim, 0, &nonce, None).await;
    let part = &report["gateway_attestation"];
    assert_eq!(part["request_nonce"], hexutil::lower(&nonce));
    assert_ne!(&report_data(part)[32..], &nonce);
}

#[tokio::test]
async fn dstack_report_keeps_its_fields_and_refuses_unknown_algorithms() {
    let sim = start(Vec::new(), 1, false).await;
    let nonce = [0x11; 32];
    let report = attest(&sim, 0, &nonce, None).await;
    let keys: Vec<&str> = report
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "signing_address",
            "signing_algo",
            "signing_public_key",
            "intel_quote",
            "quote",
            "nvidia_payload",
            "event_log",
            "info",
            "vm_config",
            "request_nonce"
        ]
    );
    assert_eq!(report["signing_algo"], "ecdsa");
    let data = report_data(&report);
    assert_eq!(&data[..20], key_bytes(&report).as_slice());
    assert!(data[20..32].iter().all(|b| *b == 0));
    let ed = attest(&sim, 0, &nonce, Some("ed25519")).await;
    assert_eq!(&report_data(&ed)[..32], key_bytes(&ed).as_slice());
    let refused = attest_raw(&sim, 0, &nonce, Some("rsa")).await;
    assert_eq!(refused.status(), 400);
    let body: Value = refused.json().await.unwrap();
    assert!(body["detail"].is_string());
}

async fn chat(sim: &Simulator, model: usize) -> (Vec<u8>, Vec<u8>, String) {
    let request = serde_json::to_vec(&serde_json::json!({
        "model": model_name(model),
        "messages": [{"role": "user", "content": "canary"}],
    }))
    .unwrap();
    let response = client(sim)
        .post(format!("{}/v1/chat/completions", sim.base_url))
        .bearer_auth(&sim.state.api_key)
        .body(request.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = response.bytes().await.unwrap().to_vec();
    let id = serde_json::from_slice::<Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    (request, body, id)
}

async fn signature(sim: &Simulator, model: usize, id: &str, algo: Option<&str>) -> (u16, Value) {
    let mut url = format!(
        "{}/v1/signature/{id}?model={}",
        sim.base_url,
        model_name(model)
    );
    if let Some(algo) = algo {
        url.push_str(&format!("&signing_algo={algo}"));
    }
    let response = client(sim)
        .get(url)
        .bearer_auth(&sim.state.api_key)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn chats_are_signed_with_both_keys() {
    let sim = start(vec![SimFormat::NearDirect, SimFormat::Dstack], 1, false).await;
    let node = &sim.state.models[0].nodes[0];
    let (request, body, id) = chat(&sim, 0).await;
    let hashes = format!(
        "{}:{}",
        hexutil::lower(&Sha256::digest(&request)),
        hexutil::lower(&Sha256::digest(&body))
    );
    let (status, ed) = signature(&sim, 0, &id, None).await;
    assert_eq!(status, 200);
    assert_eq!(ed["signing_algo"], "ed25519");
    let text = format!("{}:{hashes}", model_name(0));
    assert_eq!(ed["text"], text);
    assert_eq!(
        ed["signing_address"],
        hexutil::lower(&node.keys.ed25519_public)
    );
    let sig_hex = ed["signature"].as_str().unwrap();
    assert_eq!(sig_hex.len(), 128);
    let sig = hexutil::decode(sig_hex).unwrap();
    let pk = hexutil::decode(ed["signing_address"].as_str().unwrap()).unwrap();
    UnparsedPublicKey::new(&ED25519, pk)
        .verify(text.as_bytes(), &sig)
        .unwrap();
    let (status, ecdsa) = signature(&sim, 0, &id, Some("ecdsa")).await;
    assert_eq!(status, 200);
    assert_eq!(ecdsa["text"], text);
    assert_eq!(
        ecdsa["signing_address"],
        format!("0x{}", hexutil::lower(&node.keys.address))
    );
    assert_eq!(ecdsa["signature"].as_str().unwrap().len(), 2 + 130);
    let (status, _) = signature(&sim, 0, &id, Some("rsa")).await;
    assert_eq!(status, 400);
    // Dstack keeps the bare hashes and ECDSA by default.
    let (request, body, id) = chat(&sim, 1).await;
    let (_, plain) = signature(&sim, 1, &id, None).await;
    assert_eq!(plain["signing_algo"], "ecdsa");
    assert_eq!(
        plain["text"],
        format!(
            "{}:{}",
            hexutil::lower(&Sha256::digest(&request)),
            hexutil::lower(&Sha256::digest(&body))
        )
    );
}

#[tokio::test]
async fn signature_other_key_signs_with_a_fresh_ed25519_key() {
    let sim = start(vec![SimFormat::NearGateway], 1, false).await;
    sim.state
        .set_fault(None, Fault::SignatureOtherKey, true)
        .unwrap();
    let (_, _, id) = chat(&sim, 0).await;
    let (_, ed) = signature(&sim, 0, &id, Some("ed25519")).await;
    let sig = hexutil::decode(ed["signature"].as_str().unwrap()).unwrap();
    let pk = hexutil::decode(ed["signing_address"].as_str().unwrap()).unwrap();
    let text = ed["text"].as_str().unwrap();
    assert!(
        UnparsedPublicKey::new(&ED25519, pk)
            .verify(text.as_bytes(), &sig)
            .is_err()
    );
}

#[tokio::test]
async fn chutes_and_tinfoil_carry_their_discriminating_keys_and_sign_nothing() {
    let sim = start(vec![SimFormat::Chutes, SimFormat::Tinfoil], 1, false).await;
    let nonce = [0x77; 32];
    let chutes = attest(&sim, 0, &nonce, None).await;
    assert_eq!(chutes["attestation_type"], "chutes");
    assert_eq!(chutes["nonce"], hexutil::lower(&nonce));
    assert_eq!(chutes["evidence"][0]["gpu_evidence"], serde_json::json!([]));
    assert!(chutes["evidence"][0]["quote"].is_string());
    let tinfoil = attest(&sim, 1, &nonce, None).await;
    assert_eq!(
        tinfoil["format"],
        "https://tinfoil.sh/predicate/tdx-guest/v2"
    );
    assert!(tinfoil["body"].is_string());
    for model in 0..2 {
        let (_, _, id) = chat(&sim, model).await;
        let (status, _) = signature(&sim, model, &id, None).await;
        assert_eq!(status, 404);
    }
}

#[tokio::test]
async fn https_simulator_serves_its_certificate() {
    let sim = start(vec![SimFormat::NearGateway], 1, true).await;
    assert!(sim.base_url.starts_with("https://127.0.0.1:"));
    // A plain-HTTP client fails its handshake; the server shrugs it off and keeps serving.
    let addr = sim.base_url.trim_start_matches("https://").to_string();
    let plain = reqwest::get(format!("http://{addr}/admin/faults")).await;
    assert!(plain.map(|r| r.status() != 200).unwrap_or(true));
    let response = client(&sim)
        .get(format!("{}/admin/faults", sim.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let report = attest(&sim, 0, &[1; 32], None).await;
    assert!(report["gateway_attestation"].is_object());

    // The leaf a TLS client receives has the SPKI fingerprint the reports bind.
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(
            sim.state.tls_certificate_der().to_vec(),
        ))
        .unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    let (_, session) = tls.get_ref();
    let leaf = session.peer_certificates().unwrap()[0].clone();
    assert_eq!(
        crate::tls::spki_fingerprint(&leaf).unwrap(),
        sim.state.tls_spki_fingerprint()
    );
}

#[tokio::test]
async fn write_config_names_tls_root_and_profiles() {
    let sim = start(
        vec![SimFormat::NearGateway, SimFormat::Chutes, SimFormat::Dstack],
        1,
        true,
    )
    .await;
    let dir = std::env::temp_dir().join(format!("teewatch-sim-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("sim.toml");
    let written = crate::write_config::write_config(&sim.state, &path).unwrap();
    let tls_root = dir.join("sim.tls-root.pem");
    assert!(written.roots.contains(&tls_root));
    assert_eq!(
        std::fs::read_to_string(&tls_root).unwrap(),
        sim.state.tls_certificate_pem()
    );
    let text = std::fs::read_to_string(&path).unwrap();
    let parsed: toml::Value = toml::from_str(&text).unwrap();
    assert_eq!(
        parsed["dangerous"]["dangerous_tls_root"].as_str(),
        Some("sim.tls-root.pem")
    );
    let targets = parsed["target"].as_array().unwrap();
    let profiles: Vec<&str> = targets
        .iter()
        .map(|t| t["profile"].as_str().unwrap())
        .collect();
    assert_eq!(profiles, ["near", "vllm-proxy", "vllm-proxy"]);
    assert!(targets[0].get("pins").is_some());
    assert!(targets[1].get("pins").is_none());
    assert_eq!(
        targets[1]["canary"]["signature_wait_seconds"].as_integer(),
        Some(1)
    );
    assert!(targets[2].get("pins").is_some());
    assert!(
        targets
            .iter()
            .all(|t| t["base_url"].as_str() == Some(sim.base_url.as_str()))
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
