//! The canary chats of a live check: a streaming and a non-streaming completion whose prompt
//! carries the check's nonce, sent as exactly the bytes that are hashed, and the provider's
//! signature over them, fetched with the target's `signing_algo` and waited for while the proxy
//! still answers "not found". The response is recorded as the exact bytes received. Whether the
//! chats are spent at all is decided from the attestation's verdict, judged before them.

use std::time::Duration;

use serde_json::{Value, json};

use super::check::Fetcher;
use super::http::{Auth, Endpoint, ErrorKind, FetchError, with_retries};
use crate::config::MonitorConfig;
use crate::verify::bundle::CanaryExchange;
use crate::verify::canary::cadence::CanaryNotRun;
use crate::verify::checks::CANARY_CHECKS;
use crate::verify::{self, Bundle, State, Verdict};

/// Whether a check before the canary failed: the target fails whatever the chats would show,
/// so spending them would only cost the user money.
pub(super) fn failed_before_chats(verdict: &Verdict) -> bool {
    verdict
        .checks
        .iter()
        .any(|c| c.state == State::Fail && !CANARY_CHECKS.contains(&c.name.as_str()))
}

/// The verdict of the whole bundle from the one judged before the chats: the chats, their fetch
/// errors and why none ran are all that changed, so only the canary step is judged again
/// ([`verify::rejudge_canaries`]), and the result is `verify` of the bundle as assembled.
pub(super) fn judge_after_chats(
    (mut bundle, mut verdict): (Bundle, Verdict),
    canary: &Value,
    not_run: &Option<CanaryNotRun>,
    errors: &[FetchError],
) -> (Bundle, Verdict) {
    bundle.canary = serde_json::from_value(canary.clone()).unwrap_or_default();
    bundle.canary_not_run = not_run.clone();
    bundle.fetch_errors = errors
        .iter()
        .map(|e| verify::bundle::FetchError {
            endpoint: e.endpoint.as_str().to_string(),
            kind: e.kind.as_str().to_string(),
            message: e.message.clone(),
        })
        .collect();
    verify::rejudge_canaries(&mut verdict, &bundle);
    (bundle, verdict)
}

impl Fetcher {
    /// Runs the configured canary chats and returns the bundle's `canary` list. A chat that
    /// fails is recorded in `errors` and left out; a chat whose signature could not be fetched is
    /// kept with a null `signature`, so the verifier reports it as unknown.
    pub(super) async fn canaries(
        &self,
        monitor: &MonitorConfig,
        auth: &Auth<'_>,
        nonce_hex: &str,
        errors: &mut Vec<FetchError>,
    ) -> Value {
        // Each request to the provider is limited by the target's `timeout_seconds`.
        let http = self.http.with_total_timeout(monitor.timeout);
        let mut exchanges = Vec::new();
        let modes: Vec<bool> = [
            (false, monitor.canary.non_stream),
            (true, monitor.canary.stream),
        ]
        .into_iter()
        .filter_map(|(stream, on)| on.then_some(stream))
        .collect();
        for stream in modes {
            // Serialise once, hash those bytes, send those bytes.
            let request = json!({
                "model": monitor.model,
                "messages": [{"role": "user", "content": format!("{} (teewatch nonce {nonce_hex})", monitor.canary.prompt)}],
                "stream": stream,
                "max_tokens": monitor.canary.max_tokens,
            })
            .to_string();
            let url = monitor.url(&monitor.paths.chat);
            let response = match http
                .post_json(
                    Endpoint::Chat,
                    &url,
                    request.clone().into_bytes(),
                    Some(auth),
                )
                .await
            {
                Ok(r) => r,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            let id = chat_id(&response.body, stream);
            let signature = match id {
                None => {
                    errors.push(FetchError::new(
                        Endpoint::Chat,
                        ErrorKind::InvalidJson,
                        "the chat response carries no id",
                    ));
                    Value::Null
                }
                Some(id) => {
                    let url = format!(
                        "{}?model={}&signing_algo={}",
                        monitor.url(&monitor.paths.signature_for(&id)),
                        percent_encoding::utf8_percent_encode(
                            &monitor.model,
                            percent_encoding::NON_ALPHANUMERIC
                        ),
                        monitor.signing_algo.as_str()
                    );
                    let fetched = with_retries(monitor.canary.signature_wait, || {
                        let url = url.clone();
                        let http = &http;
                        async move {
                            let r = http.get(Endpoint::Signature, &url, Some(auth)).await;
                            // "Not found" right after a chat means "not yet": retry it too.
                            match r {
                                Err(mut e) if e.status == Some(404) => {
                                    e.retry_after = Some(Duration::from_millis(250));
                                    e.kind = ErrorKind::HttpStatus;
                                    Err(FetchError {
                                        status: Some(503),
                                        ..e
                                    })
                                }
                                other => other,
                            }
                        }
                    })
                    .await;
                    match fetched.and_then(|r| r.json(Endpoint::Signature)) {
                        Ok(v) => v,
                        Err(e) => {
                            errors.push(e);
                            Value::Null
                        }
                    }
                }
            };
            // The bytes received, unaltered: the bundle writes them as text when they are
            // UTF-8 and as base64 otherwise, so the verifier hashes exactly what arrived.
            let exchange = CanaryExchange {
                stream,
                request_body: request,
                response_body: response.body,
                signature: Some(signature),
            };
            match serde_json::to_value(&exchange) {
                Ok(entry) => exchanges.push(entry),
                Err(e) => errors.push(FetchError::new(
                    Endpoint::Chat,
                    ErrorKind::InvalidJson,
                    format!("the chat exchange could not be recorded: {e}"),
                )),
            }
        }
        Value::Array(exchanges)
    }
}

/// The id of a chat completion: the JSON body's `id`, or the first SSE chunk's. The body is read
/// lossily here because only the id is wanted (a stray byte elsewhere must not lose the
/// signature); the bundle keeps the bytes as received. Public for the fuzz target `sse` only.
#[doc(hidden)]
pub fn chat_id(body: &[u8], stream: bool) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    if stream {
        text.lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .find_map(|c| c.get("id").and_then(Value::as_str).map(str::to_string))
    } else {
        serde_json::from_str::<Value>(&text)
            .ok()?
            .get("id")?
            .as_str()
            .map(str::to_string)
    }
}
