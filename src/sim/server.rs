//! The simulator's HTTP server: provider (NanoGPT and vllm-proxy paths), PCCS, NRAS and an admin
//! endpoint for faults, all on one loopback listener.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use rand::RngCore;
use serde::Deserialize;
use serde_json::{Value, json};

use super::faults::Fault;
use super::intel::{self, IntelTestPki, TcbStatusChoice, TdBody};
use super::nvidia::{GpuState, NrasSim, NvidiaTestPki};
use super::provider::{self, SignedChat, SimModel};
use crate::verify::hexutil;

/// How the simulator is shaped.
#[derive(Debug, Clone)]
pub struct SimOptions {
    pub models: usize,
    pub nodes: usize,
    pub gpus: usize,
    pub api_key: String,
    /// How long after a chat its signature becomes available.
    pub signature_delay: Duration,
    /// Faults on at start: (model name or `None` for every model, fault).
    pub faults: Vec<(Option<String>, Fault)>,
}

impl Default for SimOptions {
    fn default() -> Self {
        let mut key = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut key);
        SimOptions {
            models: 1,
            nodes: 1,
            gpus: 1,
            api_key: format!("sim-{}", hexutil::lower(&key)),
            signature_delay: Duration::from_millis(0),
            faults: Vec::new(),
        }
    }
}

/// Why the simulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimStartError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the simulator only listens on loopback addresses, not {0}")]
    NotLoopback(SocketAddr),
    #[error("generating the test intel pki: {0}")]
    Intel(String),
    #[error("generating the test nvidia pki: {0}")]
    Nvidia(String),
}

/// Everything the handlers share.
pub struct SimState {
    pub base_url: String,
    pub api_key: String,
    pub intel: IntelTestPki,
    pub nvidia: NvidiaTestPki,
    pub nras: Mutex<NrasSim>,
    pub models: Vec<SimModel>,
    pub service_faults: Mutex<BTreeSet<Fault>>,
    chats: Mutex<HashMap<String, SignedChat>>,
    signature_delay: Duration,
}

impl SimState {
    fn service_fault(&self, fault: Fault) -> bool {
        self.service_faults
            .lock()
            .map(|f| f.contains(&fault))
            .unwrap_or(false)
    }

    fn model(&self, name: &str) -> Option<&SimModel> {
        self.models.iter().find(|m| m.name == name)
    }

    /// Turns a fault on or off for one model, or every model when `model` is `None`.
    pub fn set_fault(&self, model: Option<&str>, fault: Fault, on: bool) -> Result<(), String> {
        let apply = |set: &Mutex<BTreeSet<Fault>>| {
            if let Ok(mut set) = set.lock() {
                if on {
                    set.insert(fault);
                } else {
                    set.remove(&fault);
                }
            }
        };
        if fault.is_service_wide() {
            apply(&self.service_faults);
            return Ok(());
        }
        match model {
            None => self.models.iter().for_each(|m| apply(&m.faults)),
            Some(name) => apply(
                &self
                    .model(name)
                    .ok_or(format!("no model \"{name}\""))?
                    .faults,
            ),
        }
        Ok(())
    }

    /// Rotates the NRAS signing key (the JWKS follows).
    pub fn rotate_jwks(&self) -> Result<(), String> {
        let mut nras = self.nras.lock().map_err(|e| e.to_string())?;
        nras.rotate(Utc::now()).map_err(|e| e.to_string())
    }

    fn tcb_choice(&self) -> TcbStatusChoice {
        if self.service_fault(Fault::TcbRevoked) {
            TcbStatusChoice::Revoked
        } else if self.service_fault(Fault::TcbOutdated) {
            TcbStatusChoice::OutOfDate
        } else {
            TcbStatusChoice::UpToDate
        }
    }
}

/// A running simulator.
pub struct Simulator {
    pub base_url: String,
    pub state: Arc<SimState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Model names the simulator serves: `TEE/sim-model-<i>`.
pub fn model_name(index: usize) -> String {
    format!("TEE/sim-model-{index}")
}

impl Simulator {
    /// Starts the simulator on `listen` (loopback only; port 0 picks a free port).
    pub async fn start(
        listen: SocketAddr,
        options: SimOptions,
    ) -> Result<Simulator, SimStartError> {
        if !listen.ip().is_loopback() {
            return Err(SimStartError::NotLoopback(listen));
        }
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|source| SimStartError::Listen {
                addr: listen,
                source,
            })?;
        let addr = listener
            .local_addr()
            .map_err(|source| SimStartError::Listen {
                addr: listen,
                source,
            })?;
        let base_url = format!("http://{addr}");
        let now = Utc::now();
        let intel = IntelTestPki::generate(&base_url, now)
            .map_err(|e| SimStartError::Intel(e.to_string()))?;
        let nvidia = NvidiaTestPki::generate(options.gpus.max(1), now)
            .map_err(|e| SimStartError::Nvidia(e.to_string()))?;
        let nras =
            NrasSim::generate(&base_url, now).map_err(|e| SimStartError::Nvidia(e.to_string()))?;
        let models = (0..options.models.max(1))
            .map(|i| SimModel::new(&model_name(i), options.nodes, options.gpus))
            .collect();
        let state = Arc::new(SimState {
            base_url: base_url.clone(),
            api_key: options.api_key.clone(),
            intel,
            nvidia,
            nras: Mutex::new(nras),
            models,
            service_faults: Mutex::new(BTreeSet::new()),
            chats: Mutex::new(HashMap::new()),
            signature_delay: options.signature_delay,
        });
        for (model, fault) in &options.faults {
            // An unknown model name was already refused by the caller; ignore it here.
            let _ = state.set_fault(model.as_deref(), *fault, true);
        }
        let app = router(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Simulator {
            base_url,
            state,
            task,
        })
    }
}

fn router(state: Arc<SimState>) -> Router {
    Router::new()
        .route("/api/v1/tee/attestation", get(attestation))
        .route("/v1/attestation/report", get(attestation))
        .route("/api/v1/tee/signature/{id}", get(signature))
        .route("/v1/signature/{id}", get(signature))
        .route("/api/v1/chat/completions", post(chat))
        .route("/v1/chat/completions", post(chat))
        .route(intel::ROOT_CA_CRL_PATH, get(pccs_root_crl))
        .route("/sgx/certification/v4/pckcrl", get(pccs_pck_crl))
        .route(intel::TCB_INFO_PATH, get(pccs_tcb_info))
        .route(intel::QE_IDENTITY_PATH, get(pccs_qe_identity))
        .route("/v3/attest/gpu", post(nras_attest))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/admin/faults", get(admin_state).post(admin_fault))
        .route("/admin/rotate-jwks", post(admin_rotate))
        .with_state(state)
}

/// Sets a member of a JSON object (a no-op on anything else).
fn set(value: &mut Value, key: &str, member: Value) {
    if let Some(object) = value.as_object_mut() {
        object.insert(key.to_string(), member);
    }
}

fn detail(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({"detail": message}))).into_response()
}

fn authorized(state: &SimState, headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|key| key == state.api_key)
}

#[derive(Deserialize)]
struct AttestationQuery {
    model: Option<String>,
    nonce: Option<String>,
}

/// The HTTP-level faults of the attestation endpoint, if one is on.
async fn http_fault(model: &SimModel) -> Option<Response> {
    if model.has(Fault::Http429) {
        let mut response = detail(StatusCode::TOO_MANY_REQUESTS, "rate limited");
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return Some(response);
    }
    if model.has(Fault::Http500) {
        return Some(detail(StatusCode::INTERNAL_SERVER_ERROR, "internal error"));
    }
    if model.has(Fault::Http503) {
        return Some(detail(
            StatusCode::SERVICE_UNAVAILABLE,
            "no healthy upstream",
        ));
    }
    if model.has(Fault::Timeout) {
        tokio::time::sleep(Duration::from_secs(300)).await;
    }
    None
}

async fn attestation(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    Query(query): Query<AttestationQuery>,
) -> Response {
    if !authorized(&state, &headers) {
        return detail(StatusCode::UNAUTHORIZED, "invalid api key");
    }
    let Some(model) = query.model.as_deref().and_then(|m| state.model(m)) else {
        return detail(StatusCode::NOT_FOUND, "model not found");
    };
    let nonce_text = query.nonce.unwrap_or_default();
    let Ok(nonce) = hexutil::decode(&nonce_text) else {
        return detail(StatusCode::BAD_REQUEST, "Nonce must be hex-encoded");
    };
    let Ok(nonce) = <[u8; 32]>::try_from(nonce.as_slice()) else {
        return detail(StatusCode::BAD_REQUEST, "Nonce must be 32 bytes");
    };
    if let Some(response) = http_fault(model).await {
        return response;
    }
    let nanogpt = uri.path().starts_with("/api/");
    let report = match build_report(&state, model, &nonce, nanogpt) {
        Ok(r) => r,
        Err(e) => return detail(StatusCode::INTERNAL_SERVER_ERROR, &e),
    };
    let text = report.to_string();
    let body = if model.has(Fault::TruncatedJson) {
        text.chars().take(text.len() / 2).collect()
    } else if model.has(Fault::MalformedJson) {
        text.replacen('{', "{{", 1)
    } else if model.has(Fault::HugeBody) {
        let mut padded = report;
        set(
            &mut padded,
            "padding",
            Value::String("x".repeat(50 * 1024 * 1024)),
        );
        padded.to_string()
    } else {
        text
    };
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// One model's attestation response: the answering node's report, and every node's in
/// `all_attestations` when there are several.
fn build_report(
    state: &SimState,
    model: &SimModel,
    nonce: &[u8; 32],
    nanogpt: bool,
) -> Result<Value, String> {
    let answering = model.next_node();
    // With the unbound-nonce fault the evidence is bound to a nonce of the server's choosing.
    let mut bound_nonce = *nonce;
    if model.has(Fault::UnboundNonce) {
        rand::thread_rng().fill_bytes(&mut bound_nonce);
    }
    let reports: Vec<Value> = (0..model.nodes.len())
        .map(|i| node_report(state, model, i, &bound_nonce))
        .collect::<Result<_, _>>()?;
    let mut top = reports.get(answering).cloned().unwrap_or(Value::Null);
    if model.nodes.len() > 1 {
        set(&mut top, "all_attestations", Value::Array(reports));
    }
    if nanogpt || model.has(Fault::UnboundNonce) {
        // NanoGPT echoes the client's nonce; it proves nothing.
        set(&mut top, "nonce", Value::String(hexutil::lower(nonce)));
    }
    set(
        &mut top,
        "request_nonce",
        Value::String(hexutil::lower(nonce)),
    );
    Ok(top)
}

fn node_report(
    state: &SimState,
    model: &SimModel,
    index: usize,
    nonce: &[u8; 32],
) -> Result<Value, String> {
    let node = model.nodes.get(index).ok_or("no such node")?;
    let td = model.td_for(index);
    let mut report_data = [0u8; 64];
    let mut address = node.address;
    if model.has(Fault::WrongAddress) {
        rand::thread_rng().fill_bytes(&mut address);
    }
    if let Some(first) = report_data.get_mut(..20) {
        first.copy_from_slice(&address);
    }
    if let Some(second) = report_data.get_mut(32..) {
        second.copy_from_slice(nonce);
    }
    let mut body = TdBody {
        mrtd: td.identity.mrtd,
        mrconfigid: td.identity.mrconfigid(),
        rtmr: td.rtmr,
        report_data,
        ..TdBody::default()
    };
    if model.has(Fault::DebugTd) {
        if let Some(b) = body.td_attributes.first_mut() {
            *b |= 0x01;
        }
    }
    let quote = if model.has(Fault::BadQuoteSignature) {
        state.intel.quote_v4_bad_signature(&body)
    } else {
        state.intel.quote_v4(&body)
    }
    .map_err(|e| e.to_string())?;
    let gpus: Vec<GpuState> = (0..model.gpus)
        .map(|_| {
            let mut gpu = GpuState::default();
            if model.has(Fault::DriftGpu) {
                if let Some((_, value)) = gpu.blocks.first_mut() {
                    if let Some(b) = value.first_mut() {
                        *b ^= 0xff;
                    }
                }
            }
            gpu
        })
        .collect();
    let payload = if model.has(Fault::BadGpuSignature) {
        state.nvidia.payload_bad_signature(nonce, &gpus, 0)
    } else {
        state.nvidia.payload(nonce, &gpus)
    }
    .map_err(|e| e.to_string())?;
    Ok(json!({
        "signing_address": format!("0x{}", hexutil::lower(&node.address)),
        "signing_algo": "ecdsa",
        "signing_public_key": hexutil::lower(&node.public_key_xy()),
        "intel_quote": hexutil::lower(&quote),
        "quote": hexutil::lower(&quote),
        "nvidia_payload": payload.to_string(),
        "event_log": td.event_log(),
        "info": td.info(),
        "vm_config": td.vm_config(model.gpus).to_string(),
    }))
}

async fn signature(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if !authorized(&state, &headers) {
        return detail(StatusCode::UNAUTHORIZED, "invalid api key");
    }
    let found = state
        .chats
        .lock()
        .ok()
        .and_then(|chats| chats.get(&id).cloned());
    match found {
        Some(chat) if chat.created.elapsed() >= state.signature_delay => axum::Json(json!({
            "text": chat.text,
            "signature": chat.signature,
            "signing_address": chat.address,
            "signing_algo": "ecdsa",
        }))
        .into_response(),
        _ => (
            StatusCode::NOT_FOUND,
            axum::Json(
                json!({"error": {"message": "Chat id not found or expired", "type": "not_found"}}),
            ),
        )
            .into_response(),
    }
}

async fn chat(State(state): State<Arc<SimState>>, headers: HeaderMap, request: Bytes) -> Response {
    if !authorized(&state, &headers) {
        return detail(StatusCode::UNAUTHORIZED, "invalid api key");
    }
    let Ok(parsed) = serde_json::from_slice::<Value>(&request) else {
        return detail(StatusCode::BAD_REQUEST, "request body is not json");
    };
    let Some(model) = parsed
        .get("model")
        .and_then(Value::as_str)
        .and_then(|m| state.model(m))
    else {
        return detail(StatusCode::NOT_FOUND, "model not found");
    };
    let stream = parsed
        .get("stream")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let prompt = parsed
        .pointer("/messages/0/content")
        .and_then(Value::as_str)
        .unwrap_or_default();

    // Canary replay: an earlier chat's bytes come back, with its id (and so its signature).
    if model.has(Fault::CanaryReplay) {
        let earlier = model
            .last_chat
            .lock()
            .ok()
            .and_then(|m| m.get(&stream).cloned());
        if let Some(earlier) = earlier {
            return respond(earlier.response_body, stream);
        }
    }
    let node = model.next_node();
    let id = provider::chat_id();
    let created = Utc::now().timestamp();
    let content = provider::answer_text(prompt);
    let body = if stream {
        provider::completion_stream(&id, &model.name, &content, created)
    } else {
        provider::completion_body(&id, &model.name, &content, created).to_string()
    };
    let text = provider::signed_text(&request, body.as_bytes());
    let key = if model.has(Fault::SignatureOtherKey) {
        k256::ecdsa::SigningKey::random(&mut rand::thread_rng())
    } else {
        match model.nodes.get(node) {
            Some(n) => n.key.clone(),
            None => return detail(StatusCode::INTERNAL_SERVER_ERROR, "no node"),
        }
    };
    let address = model
        .nodes
        .get(node)
        .map(|n| format!("0x{}", hexutil::lower(&n.address)))
        .unwrap_or_default();
    if !model.has(Fault::SignatureNever) {
        if let (Some(signature), Ok(mut chats)) =
            (provider::personal_sign(&key, &text), state.chats.lock())
        {
            chats.insert(
                id.clone(),
                SignedChat {
                    model: model.name.clone(),
                    text,
                    signature,
                    address,
                    created: Instant::now(),
                },
            );
        }
    }
    if let Ok(mut last) = model.last_chat.lock() {
        last.insert(
            stream,
            provider::ChatRecord {
                chat_id: id,
                response_body: body.clone(),
                stream,
            },
        );
    }
    respond(body, stream)
}

fn respond(body: String, stream: bool) -> Response {
    let content_type = if stream {
        "text/event-stream"
    } else {
        "application/json"
    };
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn pccs_guard(state: &SimState) -> Option<Response> {
    state
        .service_fault(Fault::PccsDown)
        .then(|| detail(StatusCode::SERVICE_UNAVAILABLE, "pccs unavailable"))
}

async fn pccs_root_crl(State(state): State<Arc<SimState>>) -> Response {
    if let Some(r) = pccs_guard(&state).await {
        return r;
    }
    match state.intel.pccs(state.tcb_choice()) {
        Ok(p) => p.root_ca_crl_hex().into_response(),
        Err(e) => detail(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

async fn pccs_pck_crl(State(state): State<Arc<SimState>>) -> Response {
    if let Some(r) = pccs_guard(&state).await {
        return r;
    }
    match state.intel.pccs(state.tcb_choice()) {
        Ok(p) => with_chain(
            Body::from(p.pck_crl_der),
            intel::PCK_CRL_ISSUER_CHAIN_HEADER,
            &p.pck_crl_issuer_chain,
        ),
        Err(e) => detail(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

async fn pccs_tcb_info(State(state): State<Arc<SimState>>) -> Response {
    if let Some(r) = pccs_guard(&state).await {
        return r;
    }
    match state.intel.pccs(state.tcb_choice()) {
        Ok(p) => with_chain(
            Body::from(p.tcb_info_body),
            intel::TCB_INFO_ISSUER_CHAIN_HEADER,
            &p.tcb_info_issuer_chain,
        ),
        Err(e) => detail(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

async fn pccs_qe_identity(State(state): State<Arc<SimState>>) -> Response {
    if let Some(r) = pccs_guard(&state).await {
        return r;
    }
    match state.intel.pccs(state.tcb_choice()) {
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

async fn nras_attest(State(state): State<Arc<SimState>>, body: Bytes) -> Response {
    if state.service_fault(Fault::NrasDown) {
        return detail(StatusCode::SERVICE_UNAVAILABLE, "nras unavailable");
    }
    if state.service_fault(Fault::NrasSlow) {
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
    let Ok(payload) = serde_json::from_slice::<Value>(&body) else {
        return detail(StatusCode::BAD_REQUEST, "body is not json");
    };
    let ok = !state.service_fault(Fault::NrasFalse);
    let answer = match state.nras.lock() {
        Ok(nras) => nras.attest(&payload, Utc::now(), ok),
        Err(e) => return detail(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    match answer {
        Ok(eat) => axum::Json(eat).into_response(),
        Err(e) => detail(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

async fn jwks(State(state): State<Arc<SimState>>) -> Response {
    let untrusted = state.service_fault(Fault::JwksUntrusted);
    match state.nras.lock() {
        Ok(mut nras) => {
            nras.use_untrusted_signer(untrusted);
            axum::Json(nras.jwks()).into_response()
        }
        Err(e) => detail(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

#[derive(Deserialize)]
struct FaultRequest {
    model: Option<String>,
    fault: String,
    on: bool,
}

async fn admin_fault(
    State(state): State<Arc<SimState>>,
    axum::Json(request): axum::Json<FaultRequest>,
) -> Response {
    let fault = match request.fault.parse::<Fault>() {
        Ok(f) => f,
        Err(e) => return detail(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    match state.set_fault(request.model.as_deref(), fault, request.on) {
        Ok(()) => admin_state(State(state)).await,
        Err(e) => detail(StatusCode::NOT_FOUND, &e),
    }
}

async fn admin_state(State(state): State<Arc<SimState>>) -> Response {
    let models: Vec<Value> = state
        .models
        .iter()
        .map(|m| {
            let faults: Vec<&str> = m
                .faults
                .lock()
                .map(|f| f.iter().map(|x| x.name()).collect())
                .unwrap_or_default();
            json!({"model": m.name, "nodes": m.nodes.len(), "gpus": m.gpus, "faults": faults})
        })
        .collect();
    let service: Vec<&str> = state
        .service_faults
        .lock()
        .map(|f| f.iter().map(|x| x.name()).collect())
        .unwrap_or_default();
    axum::Json(json!({"models": models, "service_faults": service})).into_response()
}

async fn admin_rotate(State(state): State<Arc<SimState>>) -> Response {
    match state.rotate_jwks() {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => detail(StatusCode::INTERNAL_SERVER_ERROR, &e),
    }
}
