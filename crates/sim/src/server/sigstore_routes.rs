//! The test Rekor's two read paths, as Sigstore's Rekor answers them: the index search
//! (`POST /api/v1/index/retrieve`, a JSON list of uuids, empty when nothing matches) and one
//! entry (`GET /api/v1/log/entries/{uuid}`, 404 when unknown); and GitHub's attestations API by
//! subject digest (`GET /{orgs|users}/{owner}/attestations/{digest}`), serving the dsse cases'
//! Sigstore bundles. Without `provenance` the simulator has neither and every path answers 404.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::SimState;

fn not_found(message: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({"code": 404, "message": message})),
    )
        .into_response()
}

pub(super) async fn rekor_retrieve(State(state): State<Arc<SimState>>, body: String) -> Response {
    let Some(sigstore) = &state.sigstore else {
        return not_found("this simulator runs no rekor (start it with provenance)");
    };
    let hash = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v.get("hash").and_then(Value::as_str).map(str::to_string));
    match hash {
        Some(hash) => axum::Json(sigstore.rekor.retrieve(&hash)).into_response(),
        None => (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"code": 400, "message": "expected {\"hash\": \"sha256:…\"}"})),
        )
            .into_response(),
    }
}

pub(super) async fn rekor_entry(
    State(state): State<Arc<SimState>>,
    Path(uuid): Path<String>,
) -> Response {
    let Some(sigstore) = &state.sigstore else {
        return not_found("this simulator runs no rekor (start it with provenance)");
    };
    match sigstore.rekor.entry(&uuid) {
        Some(text) => (
            [(header::CONTENT_TYPE, "application/json")],
            text.to_string(),
        )
            .into_response(),
        None => not_found(&format!("no entry with uuid {uuid}")),
    }
}

/// GitHub's `GET /orgs/{org}/attestations/{digest}` and `/users/{user}/…`. The simulated images'
/// owner is a user account, so its org lookup answers 404 as GitHub's does and teewatch must
/// fall back to the user's; a digest with nothing published answers 404 too.
pub(super) async fn github_attestations(
    State(state): State<Arc<SimState>>,
    Path((kind, owner, digest)): Path<(String, String, String)>,
) -> Response {
    let Some(sigstore) = &state.sigstore else {
        return not_found("this simulator runs no attestations api (start it with provenance)");
    };
    match sigstore.attestations(&kind, &owner, &digest) {
        Some(answer) => axum::Json(answer).into_response(),
        None => not_found("Not Found"),
    }
}
