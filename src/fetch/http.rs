//! The one HTTP client every fetch goes through.
//!
//! [`Http`] wraps a single `reqwest` client (rustls, webpki roots) with the rules a fetch of
//! evidence needs: a connect and a total deadline, a body cap enforced while the body streams
//! in, no redirects (evidence must come from the configured URL, so a redirect is an
//! `http_status` failure), a fixed `User-Agent`, the API key sent only to the host it belongs
//! to and only over https or loopback http, and the TLS peer's public key captured for the
//! bundle's `tls_peer_spki`. Every failure is a [`FetchError`] whose endpoint and kind are the
//! fixed names of the bundle's `fetch_errors` (`docs/bundle.md`); its message never contains
//! the API key in any form, nor does a body received with it (`redact.rs`).

use std::error::Error as _;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use chrono::Utc;
use reqwest::header::{CONTENT_TYPE, HeaderMap, LOCATION, RETRY_AFTER};
use reqwest::{Client, Method, Url};
use serde_json::Value;

use crate::config::is_loopback_http;

/// The `User-Agent` of every request.
pub const USER_AGENT: &str = concat!("teewatch/", env!("CARGO_PKG_VERSION"));

pub use super::fetch_error::{Endpoint, ErrorKind, FetchError};
pub use super::retry::{parse_retry_after, with_retries};

/// The client's limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpOptions {
    /// Deadline for the TCP connection and TLS handshake. Default 10 s.
    pub connect_timeout: Duration,
    /// Deadline for the whole exchange, body included. Default 60 s.
    pub total_timeout: Duration,
    /// The largest body accepted. Default 16 MiB.
    pub max_body_bytes: usize,
    /// Extra TLS roots (DER) trusted beside the web PKI, for a private PCCS or for tests.
    pub extra_roots_der: Vec<Vec<u8>>,
    /// The local address every connection is made from (`[daemon] source_address`); `None`
    /// lets the system choose. A host with no address of its family cannot be reached from it
    /// (a `connect` error), rather than reached from another address.
    pub local_address: Option<IpAddr>,
}

impl Default for HttpOptions {
    fn default() -> HttpOptions {
        HttpOptions {
            connect_timeout: Duration::from_secs(10),
            total_timeout: Duration::from_secs(60),
            max_body_bytes: 16 * 1024 * 1024,
            extra_roots_der: Vec::new(),
            local_address: None,
        }
    }
}

impl HttpOptions {
    /// The defaults, trusting the configuration's `dangerous_tls_root` when it has one and
    /// connecting from its `[daemon] source_address`.
    pub fn for_config(config: &crate::config::Config) -> HttpOptions {
        HttpOptions {
            extra_roots_der: config.dangerous.tls_root_der.iter().cloned().collect(),
            local_address: config.daemon.source_address,
            ..HttpOptions::default()
        }
    }
}

/// The API key of a request and the only host it may be sent to.
#[derive(Clone, Copy)]
pub struct Auth<'a> {
    pub key: &'a str,
    /// The host (no scheme, no port) of the configured base URL; `[::1]` and `::1` both work.
    pub key_host: &'a str,
}

impl fmt::Debug for Auth<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("key", &"[redacted]")
            .field("key_host", &self.key_host)
            .finish()
    }
}

/// A 2xx answer.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: HeaderMap,
    /// The body exactly as received (no content decoding is negotiated).
    pub body: Vec<u8>,
    /// The DER SubjectPublicKeyInfo of the TLS peer's certificate; `None` over plain http.
    pub peer_spki_der: Option<Vec<u8>>,
}

impl HttpResponse {
    /// The body as JSON (key order preserved), or an `invalid_json` error for `endpoint`.
    pub fn json(&self, endpoint: Endpoint) -> Result<Value, FetchError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            FetchError::new(
                endpoint,
                ErrorKind::InvalidJson,
                format!("body of {} bytes is not json: {e}", self.body.len()),
            )
        })
    }

    /// A header's value when it is present and UTF-8; the first one when repeated.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
            .map(str::to_string)
    }
}

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the http client: {0}")]
pub struct BuildError(String);

/// The HTTP client. Cheap to clone (the connection pool is shared).
#[derive(Debug, Clone)]
pub struct Http {
    client: Client,
    options: HttpOptions,
}

impl Http {
    pub fn new(options: HttpOptions) -> Result<Http, BuildError> {
        let mut builder = Client::builder();
        for der in &options.extra_roots_der {
            let root =
                reqwest::Certificate::from_der(der).map_err(|e| BuildError(error_chain(&e)))?;
            builder = builder.add_root_certificate(root);
        }
        let client = builder
            .user_agent(USER_AGENT)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(options.connect_timeout)
            .timeout(options.total_timeout)
            // Every request of every fetch goes through this one client, so binding here covers
            // the attestation, canary, PCCS, NRAS, JWKS, Rekor and GitHub requests alike.
            .local_address(options.local_address)
            .tls_info(true)
            .build()
            .map_err(|e| BuildError(error_chain(&e)))?;
        Ok(Http { client, options })
    }

    pub fn options(&self) -> &HttpOptions {
        &self.options
    }

    /// The same client (and connection pool) with a total deadline per request no longer than
    /// `total` (the tighter of it and the client's own): a target's `timeout_seconds` for the
    /// requests to its provider.
    pub fn with_total_timeout(&self, total: Duration) -> Http {
        Http {
            client: self.client.clone(),
            options: HttpOptions {
                total_timeout: total.min(self.options.total_timeout),
                ..self.options.clone()
            },
        }
    }

    /// GETs `url`. With `auth`, the key goes as a bearer token, and only when the URL's host is
    /// `auth.key_host`; otherwise nothing is sent and the error (`connect`) says why.
    pub async fn get(
        &self,
        endpoint: Endpoint,
        url: &str,
        auth: Option<&Auth<'_>>,
    ) -> Result<HttpResponse, FetchError> {
        self.send(endpoint, Method::GET, url, None, auth).await
    }

    /// POSTs exactly `body` as `application/json`; `auth` as for [`Http::get`].
    pub async fn post_json(
        &self,
        endpoint: Endpoint,
        url: &str,
        body: Vec<u8>,
        auth: Option<&Auth<'_>>,
    ) -> Result<HttpResponse, FetchError> {
        self.send(endpoint, Method::POST, url, Some(body), auth)
            .await
    }

    async fn send(
        &self,
        endpoint: Endpoint,
        method: Method,
        url: &str,
        body: Option<Vec<u8>>,
        auth: Option<&Auth<'_>>,
    ) -> Result<HttpResponse, FetchError> {
        let result = self.exchange(endpoint, method, url, body, auth).await;
        match auth {
            Some(auth) => result.map_err(|e| e.redact(auth.key)),
            None => result,
        }
    }

    async fn exchange(
        &self,
        endpoint: Endpoint,
        method: Method,
        url: &str,
        body: Option<Vec<u8>>,
        auth: Option<&Auth<'_>>,
    ) -> Result<HttpResponse, FetchError> {
        let refused = |message: String| FetchError::new(endpoint, ErrorKind::Connect, message);
        require_secure(url).map_err(&refused)?;
        let parsed = Url::parse(url).map_err(|e| refused(format!("invalid url {url}: {e}")))?;
        let https = parsed.scheme() == "https";
        // Set on each request, so that a clone made by `with_total_timeout` keeps its own
        // deadline while sharing the pool.
        let mut request = self
            .client
            .request(method, parsed.clone())
            .timeout(self.options.total_timeout);
        if let Some(auth) = auth {
            if !host_is(&parsed, auth.key_host) {
                return Err(refused(format!(
                    "refused to send the api key to {}: it is only sent to {}",
                    parsed.host_str().unwrap_or("a url without a host"),
                    auth.key_host
                )));
            }
            request = request.bearer_auth(auth.key);
        }
        if let Some(body) = body {
            request = request.header(CONTENT_TYPE, "application/json").body(body);
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| send_error(endpoint, &e, https, &self.options))?;
        let status = response.status();
        if !status.is_success() {
            return Err(status_error(endpoint, response, auth.map(|a| a.key)).await);
        }
        let headers = response.headers().clone();
        let peer_spki_der = response
            .extensions()
            .get::<reqwest::tls::TlsInfo>()
            .and_then(reqwest::tls::TlsInfo::peer_certificate)
            .and_then(spki_der);
        let mut body = read_capped(endpoint, &mut response, &self.options).await?;
        // A provider that echoes the key in an answer must not make teewatch keep it: the body
        // becomes evidence, stored and shown. A signed body that held it no longer hashes to what
        // was signed, so its canary fails, which is right for such a provider.
        if let Some(redacted) = auth.and_then(|a| super::redact::bytes(&body, a.key)) {
            body = redacted;
        }
        Ok(HttpResponse {
            status: status.as_u16(),
            headers,
            body,
            peer_spki_der,
        })
    }
}

/// The raw DER SubjectPublicKeyInfo of a DER certificate, or `None` when it does not parse.
pub fn spki_der(certificate_der: &[u8]) -> Option<Vec<u8>> {
    x509_parser::parse_x509_certificate(certificate_der)
        .ok()
        .map(|(_, certificate)| certificate.tbs_certificate.subject_pki.raw.to_vec())
}

/// Whether `url` may carry evidence requests and keys: https, or http to a loopback host
/// (127.0.0.0/8, `[::1]`, `localhost`). The error says why not.
pub fn require_secure(url: &str) -> Result<(), String> {
    let parsed = Url::parse(url).map_err(|e| format!("invalid url {url}: {e}"))?;
    let loopback = || {
        parsed.host_str().is_some_and(|host| {
            host.eq_ignore_ascii_case("localhost")
                || host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        })
    };
    match parsed.scheme() {
        "https" if parsed.host_str().is_some_and(|h| !h.is_empty()) => Ok(()),
        // Both readings must agree: `is_loopback_http` is the configuration's rule, the parsed
        // host is where the request really goes (userinfo such as `http://127.0.0.1:1@host/`
        // must not pass).
        "http" if is_loopback_http(url) && loopback() => Ok(()),
        "http" => Err(format!(
            "refused {url}: plain http is allowed only to a loopback host (127.0.0.0/8, [::1], localhost); use https"
        )),
        other => Err(format!(
            "refused {url}: expected https, found scheme {other}"
        )),
    }
}

/// Whether the URL's host is `key_host` (ASCII case-insensitive; IPv6 with or without brackets).
/// The host of a URL as `Auth::key_host` expects it, or `None` when the URL has none.
pub fn host_of(url: &str) -> Option<String> {
    Url::parse(url)
        .ok()?
        .host_str()
        .map(str::to_ascii_lowercase)
}

fn host_is(url: &Url, key_host: &str) -> bool {
    let bare = |h: &str| -> String {
        h.trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase()
    };
    let want = bare(key_host);
    !want.is_empty() && url.host_str().is_some_and(|host| bare(host) == want)
}

/// The error's message with its causes: reqwest's own text names only the URL.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.ends_with(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

/// Whether a failed connection failed in TLS. rustls's errors reach us as the `InvalidData` I/O
/// error tokio-rustls wraps them in (a TCP connect never yields that kind), which hyper-rustls
/// wraps again in an `Other` I/O error; `io::Error::source` skips such wrapped errors, so each
/// I/O error is also opened with `get_ref`.
fn is_tls_failure(error: &reqwest::Error) -> bool {
    fn rustls_io(error: &(dyn std::error::Error + 'static)) -> bool {
        let mut current = Some(error);
        while let Some(io) = current.and_then(|e| e.downcast_ref::<std::io::Error>()) {
            if io.kind() == std::io::ErrorKind::InvalidData && io.get_ref().is_some() {
                return true;
            }
            current = io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static));
        }
        false
    }
    let mut source = error.source();
    while let Some(cause) = source {
        if rustls_io(cause) {
            return true;
        }
        source = cause.source();
    }
    false
}

fn send_error(
    endpoint: Endpoint,
    error: &reqwest::Error,
    https: bool,
    options: &HttpOptions,
) -> FetchError {
    let chain = error_chain(error);
    if error.is_timeout() {
        let message = format!(
            "no answer within the deadline (connect {} s, total {} s): {chain}",
            seconds(options.connect_timeout),
            seconds(options.total_timeout)
        );
        FetchError::new(endpoint, ErrorKind::Timeout, message)
    } else if https && is_tls_failure(error) {
        FetchError::new(endpoint, ErrorKind::Tls, chain)
    } else {
        FetchError::new(endpoint, ErrorKind::Connect, chain)
    }
}

fn body_error(endpoint: Endpoint, error: &reqwest::Error, options: &HttpOptions) -> FetchError {
    let chain = error_chain(error);
    if error.is_timeout() {
        let message = format!(
            "body not complete within the {} s deadline: {chain}",
            seconds(options.total_timeout)
        );
        FetchError::new(endpoint, ErrorKind::Timeout, message)
    } else {
        FetchError::new(
            endpoint,
            ErrorKind::Connect,
            format!("reading the body: {chain}"),
        )
    }
}

fn seconds(duration: Duration) -> String {
    let text = format!("{:.3}", duration.as_secs_f64());
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn size(bytes: usize) -> String {
    const MIB: usize = 1024 * 1024;
    if bytes >= MIB && bytes % MIB == 0 {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{bytes} bytes")
    }
}

/// Reads the body, stopping as soon as it passes `cap`: at most `cap` bytes are ever held.
async fn read_capped(
    endpoint: Endpoint,
    response: &mut reqwest::Response,
    options: &HttpOptions,
) -> Result<Vec<u8>, FetchError> {
    let cap = options.max_body_bytes;
    let too_large = |message: String| FetchError::new(endpoint, ErrorKind::TooLarge, message);
    let announced = response.content_length();
    if let Some(length) = announced {
        if usize::try_from(length).map_or(true, |length| length > cap) {
            return Err(too_large(format!(
                "content-length {length} is over the {} cap; not read",
                size(cap)
            )));
        }
    }
    let expected = announced.and_then(|l| usize::try_from(l).ok()).unwrap_or(0);
    let mut body = Vec::with_capacity(expected.min(cap).min(1024 * 1024));
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| body_error(endpoint, &e, options))?
    {
        if chunk.len() > cap.saturating_sub(body.len()) {
            return Err(too_large(format!(
                "body over the {} cap; stopped reading after {} bytes",
                size(cap),
                body.len().saturating_add(chunk.len())
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The error of a non-2xx answer: its status, `Retry-After`, and for people the redirect target
/// or the start of the error body.
/// With `secret` (the exchange carried the key), every form of it is removed before the
/// excerpts are cut, so a cut cannot leave the start of one.
async fn status_error(
    endpoint: Endpoint,
    mut response: reqwest::Response,
    secret: Option<&str>,
) -> FetchError {
    let status = response.status();
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
            .map(str::to_string)
    };
    let retry_after = header(RETRY_AFTER).and_then(|v| parse_retry_after(&v, Utc::now()));
    let message = if status.is_redirection() {
        format!(
            "{status}: redirect to {} not followed (evidence must come from the configured url)",
            header(LOCATION)
                .as_deref()
                .map_or("nowhere".to_string(), |l| printable_redacted(l, secret))
        )
    } else {
        match error_body_start(&mut response, secret).await {
            Some(start) if !start.is_empty() => format!("{status}: {start}"),
            _ => status.to_string(),
        }
    };
    FetchError {
        endpoint,
        kind: ErrorKind::HttpStatus,
        message,
        retry_after,
        status: Some(status.as_u16()),
    }
}

/// Up to 200 characters of an error answer's body, read for at most two seconds.
async fn error_body_start(
    response: &mut reqwest::Response,
    secret: Option<&str>,
) -> Option<String> {
    const WANT: usize = 512;
    let read = async {
        let mut start = Vec::new();
        while start.len() < WANT {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    let take = chunk.len().min(WANT.saturating_sub(start.len()));
                    start.extend_from_slice(chunk.get(..take).unwrap_or_default());
                }
                Ok(None) | Err(_) => break,
            }
        }
        start
    };
    let start = tokio::time::timeout(Duration::from_secs(2), read)
        .await
        .ok()?;
    let text = String::from_utf8_lossy(&start);
    Some(match secret {
        // Reading stopped at WANT bytes, which may have cut a form of the key.
        Some(secret) if start.len() >= WANT => {
            printable_redacted(&super::redact::excerpt(&text, secret), Some(secret))
        }
        other => printable_redacted(&text, other),
    })
}

/// [`printable`], with every form of `secret` removed first and no start of one left at the
/// cut.
fn printable_redacted(text: &str, secret: Option<&str>) -> String {
    let Some(secret) = secret else {
        return printable(text);
    };
    let cut = printable(&super::redact::text(text, secret));
    match cut.strip_suffix('…') {
        Some(start) => format!("{}…", super::redact::excerpt(start, secret)),
        None => cut,
    }
}

/// Text for one log line: control characters become spaces, at most 200 characters.
fn printable(text: &str) -> String {
    const LIMIT: usize = 200;
    let mut out: String = text
        .trim()
        .chars()
        .take(LIMIT)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.trim().chars().nth(LIMIT).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn keys_go_only_to_their_host() {
        let url = |u: &str| Url::parse(u).unwrap();
        assert!(host_is(
            &url("https://API.example.com/x"),
            "api.example.com"
        ));
        assert!(host_is(&url("http://[::1]:8080/"), "::1"));
        assert!(host_is(&url("http://[::1]:8080/"), "[::1]"));
        assert!(!host_is(
            &url("https://api.example.com.evil/"),
            "api.example.com"
        ));
        assert!(!host_is(
            &url("https://api.example.com@evil.com/"),
            "api.example.com"
        ));
        assert!(!host_is(&url("https://api.example.com/"), ""));
    }

    #[test]
    fn printable_flattens_and_truncates() {
        assert_eq!(printable(" a\nb\u{0}c "), "a b c");
        let long = "x".repeat(300);
        assert_eq!(printable(&long).chars().count(), 201);
    }
}
