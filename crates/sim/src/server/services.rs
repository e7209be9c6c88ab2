//! The shared services: a PCCS (Intel PCS v4 shapes), NRAS and its JWKS, and the admin endpoint
//! that switches faults. The PCCS answers TCB info for every simulated platform's FMSPC; its
//! CRLs and QE identity are shared by all of them. Service faults may be scoped to one client
//! address, like a model's.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{Value, json};

use super::provider_routes::detail;
use super::{Peer, SimState};
use crate::faults::{Fault, FaultSet, parse_client};
use crate::intel::{self, Platform};

async fn pccs_guard(state: &SimState, client: IpAddr) -> Option<Response> {
    state
        .service_fault(Fault::PccsDown, Some(client))
        .then(|| detail(StatusCode::SERVICE_UNAVAILABLE, "pccs unavailable"))
}

pub(super) async fn pccs_root_crl(
    State(state): State<Arc<SimState>>,
    ConnectInfo(Peer(client)): ConnectInfo<Peer>,
) -> Response {
    if let Some(r) = pccs_guard(&state, client).await {
        return r;
    }
    match state.intel.pccs(state.tcb_choice(Some(client))) {
        Ok(p) => p.root_ca_crl_hex().into_response(),
        Err(e) => detail(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

pub(super) async fn pccs_pck_crl(
    State(state): State<Arc<SimState>>,
    ConnectInfo(Peer(client)): ConnectInfo<Peer>,
) -> Response {
    if let Some(r) = pccs_guard(&state, client).await {
        return r;
    }
    match state.intel.pccs(state.tcb_choice(Some(client))) {
        Ok(p) => with_chain(
            Body::from(p.pck_crl_der),
            intel::PCK_CRL_ISSUER_CHAIN_HEADER,
            &p.pck_crl_issuer_chain,
        ),
        Err(e) => detail(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// The query of a TCB info request: `fmspc` (twelve hex digits, either case); anything else,
/// such as dcap-qvl's `update=standard`, is ignored.
#[derive(Deserialize)]
pub(super) struct TcbInfoQuery {
    fmspc: Option<String>,
}

/// The TCB info of the simulated platform the queried FMSPC names: 400 without a well-formed
/// FMSPC, 404 for one no simulated platform has, as Intel PCS answers.
pub(super) async fn pccs_tcb_info(
    State(state): State<Arc<SimState>>,
    ConnectInfo(Peer(client)): ConnectInfo<Peer>,
    Query(query): Query<TcbInfoQuery>,
) -> Response {
    if let Some(r) = pccs_guard(&state, client).await {
        return r;
    }
    let Some(fmspc) = query
        .fmspc
        .filter(|f| f.len() == 12 && f.bytes().all(|b| b.is_ascii_hexdigit()))
    else {
        return detail(StatusCode::BAD_REQUEST, "fmspc must be 12 hex digits");
    };
    let Some(platform) = Platform::from_fmspc_hex(&fmspc) else {
        return detail(
            StatusCode::NOT_FOUND,
            &format!("no tcb info for fmspc {fmspc}"),
        );
    };
    match state
        .intel
        .pccs_on(platform, state.tcb_choice(Some(client)))
    {
        Ok(p) => with_chain(
            Body::from(p.tcb_info_body),
            intel::TCB_INFO_ISSUER_CHAIN_HEADER,
            &p.tcb_info_issuer_chain,
        ),
        Err(e) => detail(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

pub(super) async fn pccs_qe_identity(
    State(state): State<Arc<SimState>>,
    ConnectInfo(Peer(client)): ConnectInfo<Peer>,
) -> Response {
    if let Some(r) = pccs_guard(&state, client).await {
        return r;
    }
    match state.intel.pccs(state.tcb_choice(Some(client))) {
        Ok(p) => with_chain(
            Body::from(p.qe_identity_body),
            intel::QE_IDENTITY_ISSUER_CHAIN_HEADER,
            &p.qe_identity_issuer_chain,
        ),
        Err(e) => detail(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

fn with_chain(body: Body, header_name: &'static str, chain: &str) -> Response {
    let mut response = Response::new(body);
    if let Ok(value) = HeaderValue::from_str(&intel::header_value(chain)) {
        response.headers_mut().insert(header_name, value);
    }
    response
}

pub(super) async fn nras_attest(
    State(state): State<Arc<SimState>>,
    ConnectInfo(Peer(client)): ConnectInfo<Peer>,
    body: Bytes,
) -> Response {
    let client = Some(client);
    if state.service_fault(Fault::NrasDown, client) {
        return detail(StatusCode::SERVICE_UNAVAILABLE, "nras unavailable");
    }
    if state.service_fault(Fault::NrasSlow, client) {
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
    let Ok(payload) = serde_json::from_slice::<Value>(&body) else {
        return detail(StatusCode::BAD_REQUEST, "body is not json");
    };
    let ok = !state.service_fault(Fault::NrasFalse, client);
    let untrusted = state.service_fault(Fault::JwksUntrusted, client);
    let answer = match state.nras.lock() {
        // The signer follows the fault when tokens are made too, not only when the JWKS is
        // served: otherwise the first token after the fault is turned off is still signed by
        // the untrusted key, whose kid the (trusted) JWKS fetched next no longer lists. It is
        // set under the lock for each request, so clients scoped differently never mix.
        Ok(mut nras) => {
            nras.use_untrusted_signer(untrusted);
            nras.attest(&payload, Utc::now(), ok)
        }
        Err(e) => return detail(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    match answer {
        Ok(eat) => axum::Json(eat).into_response(),
        Err(e) => detail(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

pub(super) async fn jwks(
    State(state): State<Arc<SimState>>,
    ConnectInfo(Peer(client)): ConnectInfo<Peer>,
) -> Response {
    let untrusted = state.service_fault(Fault::JwksUntrusted, Some(client));
    match state.nras.lock() {
        Ok(mut nras) => {
            nras.use_untrusted_signer(untrusted);
            axum::Json(nras.jwks()).into_response()
        }
        Err(e) => detail(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

#[derive(Deserialize)]
pub(super) struct FaultRequest {
    model: Option<String>,
    fault: String,
    on: bool,
    /// Only requests from this IP address see the fault (every client when absent).
    client: Option<String>,
}

pub(super) async fn admin_fault(
    State(state): State<Arc<SimState>>,
    axum::Json(request): axum::Json<FaultRequest>,
) -> Response {
    let fault = match request.fault.parse::<Fault>() {
        Ok(f) => f,
        Err(e) => return detail(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let client = match request.client.as_deref().map(parse_client).transpose() {
        Ok(client) => client,
        Err(e) => return detail(StatusCode::BAD_REQUEST, &e),
    };
    match state.set_scoped_fault(client, request.model.as_deref(), fault, request.on) {
        Ok(()) => admin_state(State(state)).await,
        Err(e) => detail(StatusCode::NOT_FOUND, &e),
    }
}

pub(super) async fn admin_state(State(state): State<Arc<SimState>>) -> Response {
    let models: Vec<Value> = state
        .models
        .iter()
        .map(|m| {
            let (faults, client_faults) = m.faults.lock().map(|f| listed(&f)).unwrap_or_default();
            json!({
                "model": m.name,
                "format": m.format.name(),
                "nodes": m.nodes.len(),
                "gpus": m.gpus,
                "faults": faults,
                "client_faults": client_faults,
            })
        })
        .collect();
    let (service, service_clients) = state
        .service_faults
        .lock()
        .map(|f| listed(&f))
        .unwrap_or_default();
    axum::Json(json!({
        "models": models,
        "service_faults": service,
        "service_client_faults": service_clients,
    }))
    .into_response()
}

/// A fault set as the admin endpoint lists it: the names on for everyone, and per client
/// address the names scoped to it.
fn listed(set: &FaultSet) -> (Vec<&'static str>, BTreeMap<String, Vec<&'static str>>) {
    let everyone = set.everyone().map(Fault::name).collect();
    let clients = set
        .clients()
        .map(|(ip, faults)| (ip.to_string(), faults.iter().map(|f| f.name()).collect()))
        .collect();
    (everyone, clients)
}

pub(super) async fn admin_rotate(State(state): State<Arc<SimState>>) -> Response {
    match state.rotate_jwks() {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => detail(StatusCode::INTERNAL_SERVER_ERROR, &e),
    }
}
