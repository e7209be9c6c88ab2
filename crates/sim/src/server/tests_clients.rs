//! Faults scoped to one client address, through the real HTTP interface: two clients bound to
//! 127.0.0.1 and 127.0.0.2 (the whole of 127.0.0.0/8 is local on Linux) ask the same simulator,
//! and only the one the fault names gets the faulty answer, as one vantage point behind an
//! intercepted path would.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::net::{IpAddr, SocketAddr};

use serde_json::{Value, json};

use super::{SimOptions, Simulator, model_name};
use crate::faults::{ClientFault, Fault};
use crate::format::SimFormat;
use teewatch_verify::hexutil;

/// MRTD's offset in a v4 quote: the 48-byte header, then TEE_TCB_SVN (16), MRSEAM (48),
/// MRSIGNERSEAM (48), SEAMATTRIBUTES, TDATTRIBUTES and XFAM (8 each).
const MRTD_OFFSET: usize = 48 + 16 + 48 + 48 + 8 + 8 + 8;

const HEALTHY: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));
const SCOPED: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

async fn start(format: SimFormat, tls: bool, client_faults: Vec<ClientFault>) -> Simulator {
    let options = SimOptions {
        formats: vec![format],
        tls,
        client_faults,
        ..SimOptions::default()
    };
    let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
    Simulator::start(listen, options).await.unwrap()
}

/// A client whose connections come from `from`, trusting only the served certificate.
fn client_from(sim: &Simulator, from: IpAddr) -> reqwest::Client {
    let root = reqwest::Certificate::from_der(sim.state.tls_certificate_der()).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(root)
        .local_address(from)
        .tls_info(true)
        .build()
        .unwrap()
}

/// The attestation report `from` gets for model 0, and the SPKI fingerprint of the TLS leaf its
/// connection saw (over HTTPS).
async fn attest_from(sim: &Simulator, from: IpAddr) -> (Value, Option<[u8; 32]>) {
    let url = format!(
        "{}/v1/attestation/report?model={}&nonce={}",
        sim.base_url,
        model_name(0),
        hexutil::lower(&[7; 32])
    );
    let response = client_from(sim, from)
        .get(url)
        .bearer_auth(&sim.state.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "from {from}");
    let peer = response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .map(|der| crate::tls::spki_fingerprint(der).unwrap());
    (response.json().await.unwrap(), peer)
}

fn mrtd_of(part: &Value) -> Vec<u8> {
    let quote = hexutil::decode(part["intel_quote"].as_str().unwrap()).unwrap();
    quote[MRTD_OFFSET..MRTD_OFFSET + 48].to_vec()
}

async fn admin(sim: &Simulator, body: Value) -> (u16, Value) {
    let response = client_from(sim, HEALTHY)
        .post(format!("{}/admin/faults", sim.base_url))
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn a_drift_scoped_to_one_client_is_served_to_that_client_only() {
    let sim = start(SimFormat::Dstack, false, Vec::new()).await;
    let genuine = sim.state.models[0].identity.mrtd.to_vec();
    let (status, listed) = admin(
        &sim,
        json!({"model": model_name(0), "fault": "drift-mrtd", "on": true, "client": "127.0.0.2"}),
    )
    .await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["models"][0]["faults"], json!([]));
    assert_eq!(
        listed["models"][0]["client_faults"],
        json!({"127.0.0.2": ["drift-mrtd"]})
    );
    let (healthy, _) = attest_from(&sim, HEALTHY).await;
    let (scoped, _) = attest_from(&sim, SCOPED).await;
    assert_eq!(mrtd_of(&healthy), genuine);
    assert_ne!(
        mrtd_of(&scoped),
        genuine,
        "the scoped client sees another image"
    );
    // The configuration writer (no client) keeps the genuine image for its pins.
    assert_eq!(
        sim.state.models[0].td_for(0).identity.mrtd.to_vec(),
        genuine
    );
    // Off for that client: the genuine image again.
    let (status, listed) = admin(
        &sim,
        json!({"fault": "drift-mrtd", "on": false, "client": "127.0.0.2"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(listed["models"][0]["client_faults"], json!({}));
    let (scoped, _) = attest_from(&sim, SCOPED).await;
    assert_eq!(mrtd_of(&scoped), genuine);
}

#[tokio::test]
async fn an_interception_scoped_to_one_client_shows_it_another_certificate() {
    let intercept = ClientFault {
        client: SCOPED,
        model: None,
        fault: Fault::TlsIntercept,
    };
    let sim = start(SimFormat::NearGateway, true, vec![intercept]).await;
    let served = sim.state.tls_spki_fingerprint();
    let rogue = sim.state.interceptor_spki_fingerprint();
    assert_ne!(served, rogue);
    let (healthy, healthy_peer) = attest_from(&sim, HEALTHY).await;
    // The intercepted client completes its handshake trusting only the served certificate (the
    // rogue leaf chains to it) and meets another key.
    let (scoped, scoped_peer) = attest_from(&sim, SCOPED).await;
    assert_eq!(healthy_peer, Some(served));
    assert_eq!(scoped_peer, Some(rogue));
    // Behind the terminator the evidence is the genuine one, binding the served certificate.
    for report in [&healthy, &scoped] {
        assert_eq!(
            report["gateway_attestation"]["tls_cert_fingerprint"].as_str(),
            Some(hexutil::lower(&served).as_str())
        );
    }
    let listed = client_from(&sim, HEALTHY)
        .get(format!("{}/admin/faults", sim.base_url))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(listed["service_faults"], json!([]));
    assert_eq!(
        listed["service_client_faults"],
        json!({"127.0.0.2": ["tls-intercept"]})
    );
    // On for everyone: the healthy client's next connection is intercepted too.
    sim.state
        .set_fault(None, Fault::TlsIntercept, true)
        .unwrap();
    let (_, peer) = attest_from(&sim, HEALTHY).await;
    assert_eq!(peer, Some(rogue));
}

/// The SPKI fingerprint of the leaf the connection behind one request of `client` saw.
async fn peer_of(sim: &Simulator, client: &reqwest::Client) -> [u8; 32] {
    let response = client
        .get(format!("{}/admin/faults", sim.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let info = response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .unwrap();
    crate::tls::spki_fingerprint(info.peer_certificate().unwrap()).unwrap()
}

#[tokio::test]
async fn a_pooled_connection_does_not_outlive_a_change_of_the_interception() {
    let sim = start(SimFormat::NearGateway, true, Vec::new()).await;
    let served = sim.state.tls_spki_fingerprint();
    let rogue = sim.state.interceptor_spki_fingerprint();
    // One client throughout, as a daemon keeps one pool: its keep-alive connection is genuine.
    let client = client_from(&sim, SCOPED);
    assert_eq!(peer_of(&sim, &client).await, served);
    assert_eq!(peer_of(&sim, &client).await, served);
    sim.state
        .set_client_fault(SCOPED, None, Fault::TlsIntercept, true)
        .unwrap();
    // The answer over the connection made before the fault closes it; the next one is the
    // terminator's, and so is every one while the fault holds.
    assert_eq!(peer_of(&sim, &client).await, served);
    for _ in 0..3 {
        assert_eq!(peer_of(&sim, &client).await, rogue);
    }
    sim.state
        .set_client_fault(SCOPED, None, Fault::TlsIntercept, false)
        .unwrap();
    // The terminator's connections ended with each answer: the next request is genuine.
    assert_eq!(peer_of(&sim, &client).await, served);
}

#[tokio::test]
async fn a_service_fault_scoped_to_one_client_spares_the_others() {
    let sim = start(SimFormat::Dstack, false, Vec::new()).await;
    sim.state
        .set_client_fault(SCOPED, None, Fault::PccsDown, true)
        .unwrap();
    let url = format!("{}{}", sim.base_url, crate::intel::QE_IDENTITY_PATH);
    let healthy = client_from(&sim, HEALTHY).get(&url).send().await.unwrap();
    let scoped = client_from(&sim, SCOPED).get(&url).send().await.unwrap();
    assert_eq!(healthy.status(), 200);
    assert_eq!(scoped.status(), 503);
}

#[tokio::test]
async fn a_fault_request_with_a_client_that_is_no_ip_address_is_refused() {
    let sim = start(SimFormat::Dstack, false, Vec::new()).await;
    let (status, body) = admin(
        &sim,
        json!({"fault": "drift-mrtd", "on": true, "client": "vantage-eu-1"}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["detail"],
        "client: expected an ip address such as \"127.0.0.2\", found \"vantage-eu-1\""
    );
    // Nothing was turned on.
    let (healthy, _) = attest_from(&sim, SCOPED).await;
    assert_eq!(
        mrtd_of(&healthy),
        sim.state.models[0].identity.mrtd.to_vec()
    );
}
