//! The provider paths: attestation reports, chats signed like vllm-proxy, and their signatures,
//! with the HTTP-level and evidence faults a model can be switched into.

use std::time::{Duration, Instant};

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use rand::RngCore;
use serde::Deserialize;
use serde_json::{Value, json};

use super::SimState;
use crate::sim::faults::Fault;
use crate::sim::intel::TdBody;
use crate::sim::nvidia::GpuState;
use crate::sim::provider::{self, SignedChat, SimModel};
use crate::verify::hexutil;

/// Sets a member of a JSON object (a no-op on anything else).
pub(super) fn set(value: &mut Value, key: &str, member: Value) {
    if let Some(object) = value.as_object_mut() {
        object.insert(key.to_string(), member);
    }
}

pub(super) fn detail(status: StatusCode, message: &str) -> Response {
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
pub(super) struct AttestationQuery {
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

pub(super) async fn attestation(
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

pub(super) async fn signature(
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

pub(super) async fn chat(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    request: Bytes,
) -> Response {
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
