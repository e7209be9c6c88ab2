//! The daemon's HTTP endpoints: `/metrics` (Prometheus text format), `/healthz` (the process
//! answers), `/readyz` (the store answers and takes checks, the scheduler ticks) and the status
//! page at `/`.

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::State as AxumState;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use super::runner::Shared;
use super::status_page;
use crate::schedule::Scheduler;

/// What the handlers read: the shared daemon state and, once started, the scheduler.
#[derive(Clone)]
pub struct HttpState {
    pub shared: Arc<Shared>,
    pub scheduler: Arc<OnceLock<Scheduler>>,
}

/// The router of every endpoint.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn metrics(AxumState(state): AxumState<HttpState>) -> Response {
    if let Some(scheduler) = state.scheduler.get() {
        state.shared.metrics.set_in_flight(scheduler.in_flight());
    }
    match state.shared.metrics.render() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("rendering metrics failed: {e}\n"),
        )
            .into_response(),
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready while the store answers, the latest check was stored (a failed write keeps it not
/// ready until a later one succeeds) and the scheduler ticks; otherwise 503 naming each reason.
async fn readyz(AxumState(state): AxumState<HttpState>) -> Response {
    let store_ok = state.shared.store.ping().await;
    let scheduler_ok = state.scheduler.get().is_some_and(Scheduler::is_healthy);
    let store_failure = state.shared.notices().store_failure;
    let mut reasons = Vec::new();
    if !store_ok {
        reasons.push("the store does not answer".to_string());
    }
    if let Some(f) = store_failure {
        reasons.push(format!(
            "storing a check of {} failed at {} ({}); not ready until a check is stored",
            f.target,
            f.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            f.error
        ));
    }
    if !scheduler_ok {
        reasons.push("the scheduler is not ticking".to_string());
    }
    if reasons.is_empty() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", reasons.join("; ")),
        )
            .into_response()
    }
}

async fn index(AxumState(state): AxumState<HttpState>) -> Html<String> {
    let generation = state.shared.generation();
    let statuses = state.shared.statuses();
    let scheduler = state.scheduler.get();
    Html(status_page::render(
        &generation,
        &statuses,
        &state.shared.notices(),
        |target| scheduler.and_then(|s| s.next_due(target)),
        chrono::Utc::now(),
    ))
}
