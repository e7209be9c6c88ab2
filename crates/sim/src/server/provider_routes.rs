//! The provider paths: attestation reports (built in `reports`), chats signed like vllm-proxy or
//! NEAR AI's proxy with both of the serving node's keys, and their signatures, with the
//! HTTP-level and evidence faults a model can be switched into, as the requesting client sees
//! them (a fault may be scoped to one client address).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{Value, json};

use super::reports::{ReportRequest, build_report};
use super::{Peer, SimState};
use crate::faults::Fault;
use crate::format::SigningAlgo;
use crate::keys::{ed25519_sign_hex, generate_ed25519};
use crate::provider::{self, SignedChat, SimModel};
use teewatch_verify::hexutil;

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
    signing_algo: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct SignatureQuery {
    signing_algo: Option<String>,
}

/// The HTTP-level faults of the attestation endpoint, if one is on for `client`.
async fn http_fault(model: &SimModel, client: Option<IpAddr>) -> Option<Response> {
    let has = |fault| model.has_for(fault, client);
    if has(Fault::Http429) {
        let mut response = detail(StatusCode::TOO_MANY_REQUESTS, "rate limited");
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return Some(response);
    }
    if has(Fault::Http500) {
        return Some(detail(StatusCode::INTERNAL_SERVER_ERROR, "internal error"));
    }
    if has(Fault::Http503) {
        return Some(detail(
            StatusCode::SERVICE_UNAVAILABLE,
            "no healthy upstream",
        ));
    }
    if has(Fault::Timeout) {
        tokio::time::sleep(Duration::from_secs(300)).await;
    }
    None
}

pub(super) async fn attestation(
    State(state): State<Arc<SimState>>,
    ConnectInfo(Peer(client)): ConnectInfo<Peer>,
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
    let algo =
        match SigningAlgo::from_query(query.signing_algo.as_deref(), model.format.default_algo()) {
            Ok(algo) => algo,
            Err(e) => return detail(StatusCode::BAD_REQUEST, &e),
        };
    let client = Some(client);
    if let Some(response) = http_fault(model, client).await {
        return response;
    }
    let request = ReportRequest {
        nonce: &nonce,
        algo,
        nanogpt: uri.path().starts_with("/api/"),
        client,
    };
    let report = match build_report(&state, model, request) {
        Ok(r) => r,
        Err(e) => return detail(StatusCode::INTERNAL_SERVER_ERROR, &e),
    };
    let text = report.to_string();
    let body = if model.has_for(Fault::TruncatedJson, client) {
        text.chars().take(text.len() / 2).collect()
    } else if model.has_for(Fault::MalformedJson, client) {
        text.replacen('{', "{{", 1)
    } else if model.has_for(Fault::HugeBody, client) {
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

/// `GET /v1/signature/{id}?model=..&signing_algo=..`: the chat's signature by the key the
/// algorithm names, defaulting as the attestation endpoint does for the chat's model.
pub(super) async fn signature(
    State(state): State<Arc<SimState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<SignatureQuery>,
) -> Response {
    if !authorized(&state, &headers) {
        return detail(StatusCode::UNAUTHORIZED, "invalid api key");
    }
    let found = state
        .chats
        .lock()
        .ok()
        .and_then(|chats| chats.get(&id).cloned());
    let default = found
        .as_ref()
        .and_then(|chat| state.model(&chat.model))
        .map_or(SigningAlgo::Ecdsa, |m| m.format.default_algo());
    let algo = match SigningAlgo::from_query(query.signing_algo.as_deref(), default) {
        Ok(algo) => algo,
        Err(e) => return detail(StatusCode::BAD_REQUEST, &e),
    };
    match found {
        Some(chat) if chat.created.elapsed() >= state.signature_delay => {
            let (signature, address) = match algo {
                SigningAlgo::Ecdsa => (chat.signature, chat.address),
                SigningAlgo::Ed25519 => (chat.ed25519_signature, chat.ed25519_public_key),
            };
            axum::Json(json!({
                "text": chat.text,
                "signature": signature,
                "signing_address": address,
                "signing_algo": algo.name(),
            }))
            .into_response()
        }
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
    ConnectInfo(Peer(client)): ConnectInfo<Peer>,
    headers: HeaderMap,
    request: Bytes,
) -> Response {
    if !authorized(&state, &headers) {
        return detail(StatusCode::UNAUTHORIZED, "invalid api key");
    }
    state
        .chat_requests
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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

    let client = Some(client);
    // Canary replay: an earlier chat's bytes come back, with its id (and so its signature).
    if model.has_for(Fault::CanaryReplay, client) {
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
    // Chutes and Tinfoil stand-ins answer chats but sign none; the signature endpoint then
    // finds nothing, as it does for an unknown id.
    if model.format.signs_chats() && !model.has_for(Fault::SignatureNever, client) {
        let text = provider::signed_text_for(model.format, &model.name, &request, body.as_bytes());
        let other_key = model.has_for(Fault::SignatureOtherKey, client);
        match sign_chat(model, node, text, other_key) {
            Ok(signed) => {
                if let Ok(mut chats) = state.chats.lock() {
                    chats.insert(id.clone(), signed);
                }
            }
            Err(e) => return detail(StatusCode::INTERNAL_SERVER_ERROR, &e),
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

/// Signs a chat's text with both keys of the node that served it, or (`other_key`: the
/// signature-other-key fault) with fresh keys no attested node holds (the reported address stays
/// the node's, as a proxy that signed with the wrong key would report).
fn sign_chat(
    model: &SimModel,
    node: usize,
    text: String,
    other_key: bool,
) -> Result<SignedChat, String> {
    let node = model.nodes.get(node).ok_or("no node")?;
    let ecdsa_key = if other_key {
        k256::ecdsa::SigningKey::random(&mut rand::thread_rng())
    } else {
        node.keys.ecdsa.clone()
    };
    let fresh;
    let ed25519_key = if other_key {
        fresh = generate_ed25519().map_err(|e| e.to_string())?;
        &fresh
    } else {
        &node.keys.ed25519
    };
    let signature = provider::personal_sign(&ecdsa_key, &text).ok_or("ecdsa signing failed")?;
    Ok(SignedChat {
        model: model.name.clone(),
        signature,
        address: node.keys.signing_address(SigningAlgo::Ecdsa),
        ed25519_signature: ed25519_sign_hex(ed25519_key, &text),
        ed25519_public_key: node.keys.signing_address(SigningAlgo::Ed25519),
        text,
        created: Instant::now(),
    })
}

fn respond(body: String, stream: bool) -> Response {
    let content_type = if stream {
        "text/event-stream"
    } else {
        "application/json"
    };
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}
