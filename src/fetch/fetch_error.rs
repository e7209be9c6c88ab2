//! What a failed fetch is: the fixed `endpoint` and `kind` names of a bundle's `fetch_errors`
//! (`docs/bundle.md`) and the error that carries them, with its message kept free of the API key.

use std::fmt;
use std::time::Duration;

use serde_json::{Value, json};

/// Which fetch failed: the fixed `endpoint` names of a bundle's `fetch_errors`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Attestation,
    Chat,
    Signature,
    Pccs,
    RootCrl,
    Nras,
    Jwks,
    /// Sigstore's transparency log (`image_provenance`).
    Rekor,
    /// GitHub's attestations API, the source of the signed payloads Rekor does not serve.
    GithubAttestations,
}

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Attestation => "attestation",
            Endpoint::Chat => "chat",
            Endpoint::Signature => "signature",
            Endpoint::Pccs => "pccs",
            Endpoint::RootCrl => "root_crl",
            Endpoint::Nras => "nras",
            Endpoint::Jwks => "jwks",
            Endpoint::Rekor => "rekor",
            Endpoint::GithubAttestations => "github_attestations",
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a fetch failed: the fixed `kind` names of a bundle's `fetch_errors`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// No connection, or the request was refused before anything was sent.
    Connect,
    /// The TLS handshake or the server's certificate failed.
    Tls,
    /// No complete answer within the connect or total deadline.
    Timeout,
    /// A status other than 2xx, redirects included.
    HttpStatus,
    /// The body passed the size cap.
    TooLarge,
    /// The body is not JSON.
    InvalidJson,
    /// Nothing was requested: the check could not start (its API key could not be read).
    NotStarted,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Tls => "tls",
            ErrorKind::Timeout => "timeout",
            ErrorKind::HttpStatus => "http_status",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::InvalidJson => "invalid_json",
            ErrorKind::NotStarted => "not_started",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed fetch. `status` is set exactly when `kind` is [`ErrorKind::HttpStatus`];
/// `retry_after` when that answer carried a readable `Retry-After`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{endpoint}: {kind}: {message}")]
pub struct FetchError {
    pub endpoint: Endpoint,
    pub kind: ErrorKind,
    /// For people; never contains the API key.
    pub message: String,
    pub retry_after: Option<Duration>,
    pub status: Option<u16>,
}

impl FetchError {
    pub fn new(endpoint: Endpoint, kind: ErrorKind, message: impl Into<String>) -> FetchError {
        FetchError {
            endpoint,
            kind,
            message: message.into(),
            retry_after: None,
            status: None,
        }
    }

    /// The bundle's `fetch_errors` entry: `{"endpoint", "kind", "message"}`.
    pub fn bundle_entry(&self) -> Value {
        json!({
            "endpoint": self.endpoint.as_str(),
            "kind": self.kind.as_str(),
            "message": self.message,
        })
    }

    /// Whether [`super::retry::with_retries`] tries again: 429, 503, no connection, or a timeout.
    pub fn is_retryable(&self) -> bool {
        match self.kind {
            ErrorKind::Connect | ErrorKind::Timeout => true,
            ErrorKind::HttpStatus => matches!(self.status, Some(429 | 503)),
            ErrorKind::Tls
            | ErrorKind::TooLarge
            | ErrorKind::InvalidJson
            | ErrorKind::NotStarted => false,
        }
    }

    /// Removes `secret`, in every form `redact.rs` knows, from the message, whatever echoed it
    /// (a server's error body, a redirect's URL).
    pub(super) fn redact(mut self, secret: &str) -> FetchError {
        self.message = super::redact::text(&self.message, secret);
        self
    }
}
