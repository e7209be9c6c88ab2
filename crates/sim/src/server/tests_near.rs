//! NEAR AI's June 2026 shapes through the simulator's HTTP interface: the compose manager quoted
//! by its own node's TD over its action log in each of the three member orders, the OHTTP key
//! configurations signed by each part's attested key, the served TLS certificate, and the four
//! compose-manager and OHTTP faults. Every expected value is recomputed here from the bytes on
//! the wire (quote offsets, compact JSON, SHA-256, ed25519), not taken from the simulator.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::net::SocketAddr;

use aws_lc_rs::signature::{ED25519, UnparsedPublicKey};
use base64::Engine as _;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer as _, X509Certificate};

use super::tests::attest;
use super::{SimOptions, Simulator, model_name};
use crate::compose_manager::{ActionsOrder, ComposeFile, Generation};
use crate::faults::Fault;
use crate::format::SimFormat;
use teewatch_verify::hexutil;

/// TD report body fields of a v4 quote: (name, offset, length), written out from the TDX layout
/// (48-byte header, then the body).
const REGISTERS: [(&str, usize, usize); 6] = [
    ("mrtd", 48 + 136, 48),
    ("mrconfigid", 48 + 184, 48),
    ("rtmr0", 48 + 328, 48),
    ("rtmr1", 48 + 376, 48),
    ("rtmr2", 48 + 424, 48),
    ("rtmr3", 48 + 472, 48),
];
const REPORT_DATA: usize = 48 + 520;

/// How a test rearranges an action's members before hashing.
type Arrange = fn(&Map<String, Value>) -> Map<String, Value>;

/// The compose manager's member order, as REFERENCE.md §1 gives it.
const MANAGER_ORDER: [&str; 8] = [
    "timestamp",
    "action",
    "tag",
    "commit",
    "file",
    "file_sha256",
    "container",
    "services",
];

async fn start_near(formats: Vec<SimFormat>, orders: Vec<ActionsOrder>, nodes: usize) -> Simulator {
    let options = SimOptions {
        models: formats.len(),
        nodes,
        formats,
        actions_orders: orders,
        ..SimOptions::default()
    };
    let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
    Simulator::start(listen, options).await.unwrap()
}

fn hex(value: &Value) -> Vec<u8> {
    hexutil::decode(value.as_str().unwrap()).unwrap()
}

/// A part's quote, under either name NEAR gives it.
fn quote(part: &Value) -> Vec<u8> {
    let field = part.get("intel_quote").unwrap_or(&part["quote"]);
    hex(field)
}

fn registers(quote: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    REGISTERS
        .iter()
        .map(|(name, at, len)| (*name, quote[*at..*at + *len].to_vec()))
        .collect()
}

fn report_data(quote: &[u8]) -> Vec<u8> {
    quote[REPORT_DATA..REPORT_DATA + 64].to_vec()
}

/// The action's members in the compose manager's order: the known ones in `MANAGER_ORDER`, then
/// the others as the action lists them.
fn manager_order(action: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for key in MANAGER_ORDER {
        if let Some(v) = action.get(key) {
            out.insert(key.to_string(), v.clone());
        }
    }
    for (k, v) in action {
        if !MANAGER_ORDER.contains(&k.as_str()) {
            out.insert(k.clone(), v.clone());
        }
    }
    out
}

fn sorted(action: &Map<String, Value>) -> Map<String, Value> {
    let mut keys: Vec<&String> = action.keys().collect();
    keys.sort();
    keys.into_iter()
        .map(|k| (k.clone(), action[k].clone()))
        .collect()
}

/// SHA-256 of the actions as one compact JSON array, each action rearranged by `arrange`.
fn hash_of(actions: &[Value], arrange: Arrange) -> Vec<u8> {
    let array: Vec<Value> = actions
        .iter()
        .map(|a| Value::Object(arrange(a.as_object().unwrap())))
        .collect();
    let compact = serde_json::to_string(&array).unwrap();
    assert!(!compact.contains(": ") && !compact.contains(", "));
    Sha256::digest(compact.as_bytes()).to_vec()
}

fn as_is(action: &Map<String, Value>) -> Map<String, Value> {
    action.clone()
}

fn keys(action: &Value) -> Vec<String> {
    action.as_object().unwrap().keys().cloned().collect()
}

fn actions(manager: &Value) -> Vec<Value> {
    manager["actions"].as_array().unwrap().clone()
}

/// The latest `compose_up` of a served log.
fn latest_up(actions: &[Value]) -> &Value {
    actions
        .iter()
        .rev()
        .find(|a| a["action"] == "compose_up")
        .unwrap()
}

/// The compose manager's shape, REPORTDATA = `actions_hash` ‖ nonce, and its quote made by the
/// owning node's TD (every register equal), with that TD's event log and vm_config.
fn assert_manager_of(node: &Value, manager: &Value, nonce: &[u8; 32]) {
    assert_eq!(
        keys(manager),
        [
            "actions",
            "actions_hash",
            "nonce",
            "nonce_source",
            "quote",
            "event_log",
            "report_data",
            "vm_config"
        ]
    );
    assert_eq!(manager["nonce"], hexutil::lower(nonce));
    assert_eq!(manager["nonce_source"], "client");
    let manager_quote = quote(manager);
    let node_quote = quote(node);
    assert_eq!(registers(&manager_quote), registers(&node_quote));
    let data = report_data(&manager_quote);
    assert_eq!(hex(&manager["report_data"]), data);
    assert_eq!(hex(&manager["actions_hash"]), &data[..32]);
    assert_eq!(&data[32..], nonce);
    let log: Value = serde_json::from_str(manager["event_log"].as_str().unwrap()).unwrap();
    assert_eq!(log, node["event_log"]);
    assert_eq!(manager["vm_config"], node["vm_config"]);
}

#[tokio::test]
async fn compose_managers_are_quoted_by_their_own_nodes_td_in_both_formats() {
    let sim = start_near(
        vec![SimFormat::NearGateway, SimFormat::NearDirect],
        vec![],
        3,
    )
    .await;
    let nonce = [0x6e; 32];
    let gateway = attest(&sim, 0, &nonce, None).await;
    let models = gateway["model_attestations"].as_array().unwrap();
    assert_eq!(models.len(), 3);
    for model in models {
        assert_manager_of(model, &model["compose_manager_attestation"], &nonce);
    }
    // Nodes differ in RTMR3 (their instance ids), so equal registers name the owning node.
    let rtmr3 = |part: &Value| registers(&quote(part))[5].1.clone();
    assert_ne!(rtmr3(&models[0]), rtmr3(&models[1]));
    // The gateway's own part carries no compose manager.
    assert!(
        gateway["gateway_attestation"]
            .get("compose_manager_attestation")
            .is_none()
    );

    // Direct: the top-level manager is the answering (top-level) node's, whichever answers.
    for _ in 0..3 {
        let direct = attest(&sim, 1, &nonce, None).await;
        let manager = &direct["compose_manager_attestation"];
        assert_manager_of(&direct, manager, &nonce);
        for part in direct["all_attestations"].as_array().unwrap() {
            assert!(part.get("compose_manager_attestation").is_none());
            if part["signing_address"] != direct["signing_address"] {
                assert_ne!(rtmr3(part), rtmr3(manager));
            }
        }
    }
}

#[tokio::test]
async fn actions_hash_covers_the_log_in_each_of_the_three_orders() {
    let orders = vec![
        ActionsOrder::Manager,
        ActionsOrder::SortedView,
        ActionsOrder::Sorted,
    ];
    let formats = vec![SimFormat::NearDirect; 3];
    let sim = start_near(formats, orders, 1).await;
    let nonce = [0x4f; 32];
    let mut logs = Vec::new();
    for index in 0..3 {
        let report = attest(&sim, index, &nonce, None).await;
        let manager = &report["compose_manager_attestation"];
        assert_manager_of(&report, manager, &nonce);
        let served = actions(manager);
        let hash = hex(&manager["actions_hash"]);
        let manager_hash = hash_of(&served, manager_order);
        let sorted_hash = hash_of(&served, sorted);
        assert_ne!(manager_hash, sorted_hash);
        match index {
            // (a) hashed and served in the manager's order.
            0 => {
                assert_eq!(hash, manager_hash);
                assert_eq!(hash, hash_of(&served, as_is));
                for action in &served {
                    assert_eq!(
                        keys(action),
                        keys(&Value::Object(manager_order(action.as_object().unwrap())))
                    );
                }
                assert_eq!(keys(&served[0]), ["timestamp", "action", "version"]);
            }
            // (b) hashed in the manager's order, served sorted: as served it does not hash.
            1 => {
                assert_eq!(hash, manager_hash);
                assert_ne!(hash, hash_of(&served, as_is));
                assert_eq!(keys(&served[0]), ["action", "timestamp", "version"]);
            }
            // (c) hashed and served sorted.
            _ => {
                assert_eq!(hash, sorted_hash);
                assert_eq!(hash, hash_of(&served, as_is));
                assert_eq!(keys(&served[0]), ["action", "timestamp", "version"]);
            }
        }
        if index > 0 {
            for action in &served {
                let mut expected = keys(action);
                expected.sort();
                assert_eq!(keys(action), expected);
            }
        }
        // The same log whatever the order, up to member order.
        logs.push(
            served
                .iter()
                .map(|a| Value::Object(sorted(a.as_object().unwrap())))
                .collect::<Vec<_>>(),
        );
        // The deployed file: the latest compose_up names the model's compose file by SHA-256.
        let up = latest_up(&served);
        let file = ComposeFile::of(&model_name(index), Generation::Current);
        assert_eq!(up["file"], format!("prod/sim-model-{index}.yaml"));
        assert_eq!(
            hex(&up["file_sha256"]),
            Sha256::digest(file.content.as_bytes()).to_vec()
        );
        assert!(up["tag"].is_string());
        assert_eq!(up["commit"].as_str().unwrap().len(), 40);
        let names: Vec<&str> = served
            .iter()
            .map(|a| a["action"].as_str().unwrap())
            .collect();
        assert_eq!(
            names[..2],
            ["compose_manager_started", "kernel_algif_blacklist_ok"]
        );
    }
    // Models differ only in their files; the three orders carry the same kinds of actions.
    let kinds = |log: &Vec<Value>| log.iter().map(|a| a["action"].clone()).collect::<Vec<_>>();
    assert_eq!(kinds(&logs[0]), kinds(&logs[1]));
    assert_eq!(kinds(&logs[1]), kinds(&logs[2]));
}

/// A part's OHTTP fields: the key configuration hex in both places, RFC 9458-shaped, and a valid
/// ed25519 signature over its raw bytes by `attested`, which `signing_key` names. Returns the key
/// configuration and whether the signature verified.
fn ohttp_of(part: &Value, attested: &[u8; 32]) -> (Vec<u8>, bool) {
    let config = hex(&part["ohttp_key_config"]);
    let attestation = &part["ohttp_attestation"];
    assert_eq!(
        keys(attestation),
        ["signing_algo", "signing_key", "key_config", "signature"]
    );
    assert_eq!(attestation["signing_algo"], "ed25519");
    assert_eq!(attestation["key_config"], part["ohttp_key_config"]);
    assert_eq!(hex(&attestation["signing_key"]), attested);
    assert_eq!(&config[1..3], &[0x00, 0x20]);
    let suites = usize::from(u16::from_be_bytes([config[35], config[36]]));
    assert_eq!(config.len(), 1 + 2 + 32 + 2 + suites);
    let signature = hex(&attestation["signature"]);
    let verified = UnparsedPublicKey::new(&ED25519, attested)
        .verify(&config, &signature)
        .is_ok();
    (config, verified)
}

/// SHA-256 of the SPKI of the PEM certificate, read with base64 and x509-parser.
fn pem_spki_fingerprint(pem: &str) -> Vec<u8> {
    let body: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .concat();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap();
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    Sha256::digest(cert.public_key().raw).to_vec()
}

#[tokio::test]
async fn ohttp_keys_are_signed_by_each_parts_attested_ed25519_key() {
    let sim = start_near(
        vec![SimFormat::NearGateway, SimFormat::NearDirect],
        vec![],
        2,
    )
    .await;
    let nonce = [0x0b; 32];
    let report = attest(&sim, 0, &nonce, None).await;
    let gateway_key = sim.state.gateway.keys.ed25519_public;
    assert_eq!(
        hex(&report["gateway_attestation"]["signing_address"]),
        gateway_key
    );
    let (gateway_config, verified) = ohttp_of(&report, &gateway_key);
    assert!(verified);
    let mut configs = vec![gateway_config];
    for (part, node) in report["model_attestations"]
        .as_array()
        .unwrap()
        .iter()
        .zip(&sim.state.models[0].nodes)
    {
        let attested = node.keys.ed25519_public;
        assert_eq!(hex(&part["signing_address"]), attested);
        let (config, verified) = ohttp_of(part, &attested);
        assert!(verified);
        configs.push(config);
    }
    configs.sort();
    configs.dedup();
    assert_eq!(configs.len(), 3, "one key configuration per part");
    // The same configurations on the next answer.
    let again = attest(&sim, 0, &nonce, None).await;
    assert_eq!(again["ohttp_key_config"], report["ohttp_key_config"]);
    assert_eq!(
        again["model_attestations"][1]["ohttp_key_config"],
        report["model_attestations"][1]["ohttp_key_config"]
    );
    // The gateway's TLS leaf, as PEM, is the certificate whose key the gateway binds.
    let pem = report["tls_certificate"].as_str().unwrap();
    assert_eq!(pem, sim.state.tls_certificate_pem());
    assert_eq!(
        pem_spki_fingerprint(pem),
        hex(&report["gateway_attestation"]["tls_cert_fingerprint"])
    );

    // With ECDSA keys there is no attested ed25519 key to sign with: no OHTTP fields at all.
    let ecdsa = attest(&sim, 0, &nonce, Some("ecdsa")).await;
    assert!(ecdsa["tls_certificate"].is_string());
    for part in std::iter::once(&ecdsa).chain(ecdsa["model_attestations"].as_array().unwrap()) {
        assert!(part.get("ohttp_key_config").is_none());
        assert!(part.get("ohttp_attestation").is_none());
    }
    // The direct format carries none either.
    let direct = attest(&sim, 1, &nonce, None).await;
    assert!(direct.get("ohttp_attestation").is_none());
}

/// The compose manager of a model's answer (direct: top level; gateway: the first model entry).
fn manager_of(report: &Value) -> Value {
    report
        .get("compose_manager_attestation")
        .unwrap_or(&report["model_attestations"][0]["compose_manager_attestation"])
        .clone()
}

#[tokio::test]
async fn redeploy_and_restart_append_correctly_hashed_actions() {
    let sim = start_near(
        vec![SimFormat::NearDirect, SimFormat::NearGateway],
        vec![],
        1,
    )
    .await;
    let nonce = [0x72; 32];
    for index in 0..2 {
        let model = model_name(index);
        let healthy = actions(&manager_of(&attest(&sim, index, &nonce, None).await));
        let healthy_up = latest_up(&healthy).clone();

        sim.state
            .set_fault(Some(&model), Fault::Redeploy, true)
            .unwrap();
        let report = attest(&sim, index, &nonce, None).await;
        sim.state
            .set_fault(Some(&model), Fault::Redeploy, false)
            .unwrap();
        let manager = manager_of(&report);
        let served = actions(&manager);
        assert_eq!(served.len(), healthy.len() + 1);
        assert_eq!(served[..healthy.len()], healthy[..]);
        let up = served.last().unwrap();
        assert_eq!(up["action"], "compose_up");
        assert_ne!(up["file"], healthy_up["file"]);
        assert_ne!(up["file_sha256"], healthy_up["file_sha256"]);
        let next = ComposeFile::of(&model, Generation::Next);
        assert_eq!(up["file"], next.path.as_str());
        assert_eq!(
            hex(&up["file_sha256"]),
            Sha256::digest(next.content.as_bytes()).to_vec()
        );
        assert_eq!(
            hex(&manager["actions_hash"]),
            hash_of(&served, manager_order)
        );
        assert_eq!(
            &report_data(&quote(&manager))[..32],
            &hex(&manager["actions_hash"])[..]
        );

        sim.state
            .set_fault(Some(&model), Fault::Restart, true)
            .unwrap();
        let report = attest(&sim, index, &nonce, None).await;
        sim.state
            .set_fault(Some(&model), Fault::Restart, false)
            .unwrap();
        let manager = manager_of(&report);
        let served = actions(&manager);
        assert_eq!(served.len(), healthy.len() + 1);
        assert_eq!(served[..healthy.len()], healthy[..]);
        let restart = served.last().unwrap();
        assert_eq!(
            keys(restart),
            ["timestamp", "action", "container"].map(String::from)
        );
        assert_eq!(restart["action"], "docker_restart");
        assert_eq!(restart["container"], "vllm");
        // The deployed file stays the healthy one.
        assert_eq!(latest_up(&served), &healthy_up);
        assert_eq!(
            hex(&manager["actions_hash"]),
            hash_of(&served, manager_order)
        );
        assert_eq!(
            &report_data(&quote(&manager))[..32],
            &hex(&manager["actions_hash"])[..]
        );
    }
}

#[tokio::test]
async fn actions_tampered_serves_the_healthy_log_under_another_hash() {
    let orders = vec![ActionsOrder::Sorted, ActionsOrder::SortedView];
    let sim = start_near(vec![SimFormat::NearGateway; 2], orders, 2).await;
    let nonce = [0x19; 32];
    for (index, arrange) in [(0, sorted as Arrange), (1, manager_order)] {
        let model = model_name(index);
        let healthy = attest(&sim, index, &nonce, None).await;
        sim.state
            .set_fault(Some(&model), Fault::ActionsTampered, true)
            .unwrap();
        let report = attest(&sim, index, &nonce, None).await;
        sim.state
            .set_fault(Some(&model), Fault::ActionsTampered, false)
            .unwrap();
        for (entry, before) in report["model_attestations"]
            .as_array()
            .unwrap()
            .iter()
            .zip(healthy["model_attestations"].as_array().unwrap())
        {
            let manager = &entry["compose_manager_attestation"];
            let was = &before["compose_manager_attestation"];
            // The served actions are the healthy ones, byte for byte...
            assert_eq!(manager["actions"], was["actions"]);
            // ...but the hash, which the quote binds, is not theirs in any order.
            let hash = hex(&manager["actions_hash"]);
            assert_ne!(hash, hex(&was["actions_hash"]));
            assert_eq!(hex(&was["actions_hash"]), hash_of(&actions(was), arrange));
            for order in [manager_order as Arrange, sorted, as_is] {
                assert_ne!(hash, hash_of(&actions(manager), order));
            }
            let data = report_data(&quote(manager));
            assert_eq!(&data[..32], &hash[..]);
            assert_eq!(&data[32..], &nonce);
            // OHTTP is untouched.
            let attested: [u8; 32] = hex(&entry["signing_address"]).try_into().unwrap();
            assert!(ohttp_of(entry, &attested).1);
        }
    }
}

#[tokio::test]
async fn ohttp_wrong_key_signs_with_an_unattested_key_naming_the_attested_one() {
    let sim = start_near(vec![SimFormat::NearGateway], vec![], 2).await;
    let nonce = [0x58; 32];
    let healthy = attest(&sim, 0, &nonce, None).await;
    sim.state
        .set_fault(None, Fault::OhttpWrongKey, true)
        .unwrap();
    let report = attest(&sim, 0, &nonce, None).await;
    let gateway_key = sim.state.gateway.keys.ed25519_public;
    let (config, verified) = ohttp_of(&report, &gateway_key);
    assert!(!verified);
    assert_eq!(config, hex(&healthy["ohttp_key_config"]));
    for ((entry, before), node) in report["model_attestations"]
        .as_array()
        .unwrap()
        .iter()
        .zip(healthy["model_attestations"].as_array().unwrap())
        .zip(&sim.state.models[0].nodes)
    {
        let (config, verified) = ohttp_of(entry, &node.keys.ed25519_public);
        assert!(!verified);
        assert_eq!(config, hex(&before["ohttp_key_config"]));
        // The compose manager is untouched.
        let manager = &entry["compose_manager_attestation"];
        assert_eq!(
            manager["actions"],
            before["compose_manager_attestation"]["actions"]
        );
        assert_eq!(
            hex(&manager["actions_hash"]),
            hash_of(&actions(manager), manager_order)
        );
    }
}
