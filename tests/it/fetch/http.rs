//! The fetchers' HTTP client against small local servers: the body cap while streaming,
//! deadlines, refused connections, TLS failures, statuses and `Retry-After`, redirects (never
//! followed), where the API key goes (and where it never goes), the User-Agent, and the URL rule.
//!
//! Capturing the TLS peer's public key from a live https server is not exercised here: that
//! needs a TLS server (tokio-rustls), which is only a transitive dependency. The extraction from
//! the peer certificate is tested on an rcgen certificate; the end-to-end capture is covered by
//! the live-fetch tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use chrono::{TimeZone, Utc};
use teewatch::fetch::http::{
    Auth, Endpoint, ErrorKind, FetchError, Http, HttpOptions, USER_AGENT, parse_retry_after,
    require_secure, spki_der, with_retries,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const KEY: &str = "sk-teewatch-test-5ecret-key";
const MIB: usize = 1024 * 1024;

async fn serve(app: Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{address}")
}

fn http(options: HttpOptions) -> Http {
    Http::new(options).unwrap()
}

fn client() -> Http {
    http(HttpOptions::default())
}

fn assert_error(result: Result<impl std::fmt::Debug, FetchError>, kind: ErrorKind) -> FetchError {
    match result {
        Err(e) => {
            assert_eq!(e.kind, kind, "{e}");

            e
        }
        Ok(r) => panic!("expected a {kind} error, got {r:?}"),
    }
}

/// Reads an HTTP/1.1 request head from a raw socket.
async fn read_head(socket: &mut TcpStream) {
    let mut head = Vec::new();
    let mut buffer = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = socket.read(&mut buffer).await.unwrap();
        assert!(n > 0, "connection closed before the request head");
        head.extend_from_slice(&buffer[..n]);
    }
}

/// A raw server that answers one request with `total` bytes in 64 KiB chunks (no
/// Content-Length) and reports how many bytes it managed to write before the peer hung up.
async fn chunked_server(total: usize) -> (SocketAddr, tokio::task::JoinHandle<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let handle = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        read_head(&mut socket).await;
        socket
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n")
            .await
            .unwrap();
        let data = vec![b' '; 64 * 1024];
        let frame = [format!("{:x}\r\n", data.len()).as_bytes(), &data, b"\r\n"].concat();
        let mut written = 0;
        while written < total {
            if socket.write_all(&frame).await.is_err() {
                return written;
            }
            written += data.len();
        }
        let _ = socket.write_all(b"0\r\n\r\n").await;
        written
    });
    (address, handle)
}

#[tokio::test]
async fn a_streamed_body_over_the_cap_is_refused_without_reading_it_all() {
    let total = 20 * MIB;
    let (address, server) = chunked_server(total).await;
    let http = http(HttpOptions {
        max_body_bytes: MIB,
        ..HttpOptions::default()
    });
    let started = Instant::now();
    let error = assert_error(
        http.get(Endpoint::Attestation, &format!("http://{address}/"), None)
            .await,
        ErrorKind::TooLarge,
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(error.endpoint, Endpoint::Attestation);
    assert!(error.message.contains("1 MiB"), "{}", error.message);
    // The client hung up: the server could not write the whole body.
    let written = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the server noticed the hang-up")
        .unwrap();
    assert!(written < total, "the server wrote all {written} bytes");
}

#[tokio::test]
async fn a_content_length_over_the_cap_is_refused_before_reading() {
    let base = serve(Router::new().route("/", get(|| async { vec![b'x'; 2 * MIB] }))).await;
    let http = http(HttpOptions {
        max_body_bytes: MIB,
        ..HttpOptions::default()
    });
    let error = assert_error(
        http.get(Endpoint::Pccs, &base, None).await,
        ErrorKind::TooLarge,
    );
    assert!(
        error.message.contains("content-length"),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn a_body_of_exactly_the_cap_is_accepted() {
    let base = serve(
        Router::new()
            .route("/at", get(|| async { vec![b'x'; 1000] }))
            .route("/over", get(|| async { vec![b'x'; 1001] })),
    )
    .await;
    let http = http(HttpOptions {
        max_body_bytes: 1000,
        ..HttpOptions::default()
    });
    let response = http
        .get(Endpoint::RootCrl, &format!("{base}/at"), None)
        .await
        .unwrap();
    assert_eq!(response.body.len(), 1000);
    assert_eq!(response.peer_spki_der, None, "no TLS peer over http");
    assert_error(
        http.get(Endpoint::RootCrl, &format!("{base}/over"), None)
            .await,
        ErrorKind::TooLarge,
    );
}

#[tokio::test]
async fn a_slow_answer_is_a_timeout() {
    let base = serve(Router::new().route(
        "/",
        get(|| async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            "{}"
        }),
    ))
    .await;
    let http = http(HttpOptions {
        total_timeout: Duration::from_millis(500),
        ..HttpOptions::default()
    });
    let started = Instant::now();
    let error = assert_error(
        http.get(Endpoint::Nras, &base, None).await,
        ErrorKind::Timeout,
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(error.message.contains("0.5 s"), "{}", error.message);
}

#[tokio::test]
async fn a_body_that_stalls_is_a_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        read_head(&mut socket).await;
        socket
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{\"partial\":")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    let http = http(HttpOptions {
        total_timeout: Duration::from_millis(500),
        ..HttpOptions::default()
    });
    let error = assert_error(
        http.get(Endpoint::Attestation, &format!("http://{address}/"), None)
            .await,
        ErrorKind::Timeout,
    );
    assert!(error.message.contains("body"), "{}", error.message);
}

#[tokio::test]
async fn a_closed_port_is_a_connect_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let error = assert_error(
        client()
            .get(Endpoint::Jwks, &format!("http://{address}/"), None)
            .await,
        ErrorKind::Connect,
    );
    assert_eq!(error.status, None);
    assert!(error.message.contains("onnect"), "{}", error.message);
}

#[tokio::test]
async fn a_server_that_does_not_speak_tls_is_a_tls_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut hello = [0u8; 1024];
        let _ = socket.read(&mut hello).await;
        let _ = socket
            .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
            .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
    });
    let error = assert_error(
        client()
            .get(Endpoint::Attestation, &format!("https://{address}/"), None)
            .await,
        ErrorKind::Tls,
    );
    assert!(
        error.message.contains("corrupt message"),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn statuses_carry_their_code_retry_after_and_body_start() {
    let base = serve(
        Router::new()
            .route(
                "/busy",
                get(|| async {
                    (
                        StatusCode::TOO_MANY_REQUESTS,
                        [(header::RETRY_AFTER, "1")],
                        "slow down",
                    )
                }),
            )
            .route(
                "/broken",
                get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "model\nnot loaded") }),
            ),
    )
    .await;
    let error = assert_error(
        client()
            .get(Endpoint::Attestation, &format!("{base}/busy"), None)
            .await,
        ErrorKind::HttpStatus,
    );
    assert_eq!(error.status, Some(429));
    assert_eq!(error.retry_after, Some(Duration::from_secs(1)));
    assert!(error.is_retryable());
    assert_eq!(error.message, "429 Too Many Requests: slow down");

    let error = assert_error(
        client()
            .get(Endpoint::Attestation, &format!("{base}/broken"), None)
            .await,
        ErrorKind::HttpStatus,
    );
    assert_eq!(error.status, Some(500));
    assert_eq!(error.retry_after, None);
    assert!(!error.is_retryable());
    assert_eq!(error.message, "500 Internal Server Error: model not loaded");
    assert_eq!(
        error.bundle_entry(),
        serde_json::json!({"endpoint": "attestation", "kind": "http_status", "message": "500 Internal Server Error: model not loaded"})
    );
}

#[tokio::test]
async fn retries_honour_retry_after_and_stop_on_success() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let base = serve(Router::new().route(
        "/",
        get(move || {
            let counter = counter.clone();
            async move {
                if counter.fetch_add(1, Ordering::SeqCst) % 2 == 0 {
                    (
                        StatusCode::TOO_MANY_REQUESTS,
                        [(header::RETRY_AFTER, "1")],
                        "",
                    )
                        .into_response()
                } else {
                    (
                        StatusCode::OK,
                        [(header::RETRY_AFTER, "0")],
                        "{\"ok\":true}",
                    )
                        .into_response()
                }
            }
        }),
    ))
    .await;
    let http = client();
    let started = Instant::now();
    let value = with_retries(Duration::from_secs(10), || async {
        http.get(Endpoint::Attestation, &base, None)
            .await?
            .json(Endpoint::Attestation)
    })
    .await
    .unwrap();
    assert_eq!(value, serde_json::json!({"ok": true}));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn retries_stop_on_other_errors_and_when_retry_after_exceeds_the_budget() {
    let calls = Arc::new(AtomicUsize::new(0));
    let (broken, busy) = (calls.clone(), calls.clone());
    let base = serve(
        Router::new()
            .route(
                "/broken",
                get(move || {
                    broken.fetch_add(1, Ordering::SeqCst);
                    async { StatusCode::INTERNAL_SERVER_ERROR }
                }),
            )
            .route(
                "/busy",
                get(move || {
                    busy.fetch_add(1, Ordering::SeqCst);
                    async {
                        (
                            StatusCode::SERVICE_UNAVAILABLE,
                            [(header::RETRY_AFTER, "30")],
                        )
                    }
                }),
            ),
    )
    .await;
    let http = client();
    let url = format!("{base}/broken");
    let error = with_retries(Duration::from_secs(10), || {
        http.get(Endpoint::Pccs, &url, None)
    })
    .await
    .unwrap_err();
    assert_eq!((error.status, calls.load(Ordering::SeqCst)), (Some(500), 1));

    calls.store(0, Ordering::SeqCst);
    let started = Instant::now();
    let url = format!("{base}/busy");
    let error = with_retries(Duration::from_secs(2), || {
        http.get(Endpoint::Pccs, &url, None)
    })
    .await
    .unwrap_err();
    assert_eq!(error.retry_after, Some(Duration::from_secs(30)));
    assert_eq!((error.status, calls.load(Ordering::SeqCst)), (Some(503), 1));
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn retries_back_off_on_refused_connections_within_the_budget() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    drop(listener);
    let http = client();
    let attempts = AtomicUsize::new(0);
    let started = Instant::now();
    let error = with_retries(Duration::from_millis(1500), || {
        attempts.fetch_add(1, Ordering::SeqCst);
        http.get(Endpoint::Chat, &url, None)
    })
    .await
    .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Connect);
    // Waits of about 250 ms and 500 ms fit in 1.5 s; the next (about 1 s) may or may not.
    let attempts = attempts.load(Ordering::SeqCst);
    assert!((3..=4).contains(&attempts), "{attempts} attempts");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn invalid_json_is_reported_as_such() {
    let base = serve(Router::new().route("/", get(|| async { "<html>not json</html>" }))).await;
    let response = client().get(Endpoint::Nras, &base, None).await.unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("content-type").as_deref(),
        Some("text/plain; charset=utf-8")
    );
    let error = assert_error(response.json(Endpoint::Nras), ErrorKind::InvalidJson);
    assert_eq!(error.endpoint, Endpoint::Nras);
    assert_eq!(error.status, None);
}

#[tokio::test]
async fn json_keeps_key_order() {
    let base = serve(Router::new().route("/", get(|| async { r#"{"z":1,"a":2}"# }))).await;
    let value = client()
        .get(Endpoint::Attestation, &base, None)
        .await
        .unwrap()
        .json(Endpoint::Attestation)
        .unwrap();
    assert_eq!(value.to_string(), r#"{"z":1,"a":2}"#);
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let followed = Arc::new(AtomicUsize::new(0));
    let counter = followed.clone();
    let base = serve(
        Router::new()
            .route(
                "/moved",
                get(|| async { Redirect::temporary("/elsewhere") }),
            )
            .route(
                "/elsewhere",
                get(move || {
                    counter.fetch_add(1, Ordering::SeqCst);
                    async { "{}" }
                }),
            ),
    )
    .await;
    let error = assert_error(
        client()
            .get(Endpoint::Attestation, &format!("{base}/moved"), None)
            .await,
        ErrorKind::HttpStatus,
    );
    assert_eq!(error.status, Some(307));
    assert!(error.message.contains("/elsewhere"), "{}", error.message);
    assert!(error.message.contains("not followed"), "{}", error.message);
    assert_eq!(followed.load(Ordering::SeqCst), 0);
}

type Seen = Arc<Mutex<Vec<Option<String>>>>;

/// A server recording the Authorization header of every request, echoing it back in a 401 on
/// `/echo`.
async fn auth_server() -> (String, u16, Seen) {
    let seen: Seen = Arc::default();
    let (record, echo) = (seen.clone(), seen.clone());
    let authorization = |headers: &HeaderMap| {
        headers
            .get(header::AUTHORIZATION)
            .map(|v| v.to_str().unwrap().to_string())
    };
    let base = serve(
        Router::new()
            .route(
                "/",
                get(move |headers: HeaderMap| async move {
                    record.lock().unwrap().push(authorization(&headers));
                    "{}"
                }),
            )
            .route(
                "/echo",
                get(move |headers: HeaderMap| async move {
                    let value = authorization(&headers);
                    echo.lock().unwrap().push(value.clone());
                    (
                        StatusCode::UNAUTHORIZED,
                        format!("bad token {}", value.unwrap_or_default()),
                    )
                }),
            ),
    )
    .await;
    let port = base.rsplit(':').next().unwrap().parse().unwrap();
    (base, port, seen)
}

#[tokio::test]
async fn the_key_goes_to_its_host_only() {
    let (base, port, seen) = auth_server().await;
    let auth = Auth {
        key: KEY,
        key_host: "127.0.0.1",
    };
    client()
        .get(Endpoint::Attestation, &base, Some(&auth))
        .await
        .unwrap();
    assert_eq!(*seen.lock().unwrap(), [Some(format!("Bearer {KEY}"))]);

    // Same server, another host name: refused before anything is sent.
    let elsewhere = format!("http://localhost:{port}/");
    let error = assert_error(
        client()
            .get(Endpoint::Attestation, &elsewhere, Some(&auth))
            .await,
        ErrorKind::Connect,
    );
    assert!(
        error
            .message
            .contains("refused to send the api key to localhost"),
        "{}",
        error.message
    );
    for text in [error.to_string(), format!("{error:?}"), format!("{auth:?}")] {
        assert!(!text.contains(KEY), "{text}");
    }
    let error = assert_error(
        client()
            .post_json(Endpoint::Chat, &elsewhere, b"{}".to_vec(), Some(&auth))
            .await,
        ErrorKind::Connect,
    );
    assert!(!error.message.contains(KEY));
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "the server saw no other request"
    );

    // Without a key, no Authorization header at all.
    client()
        .get(Endpoint::Attestation, &elsewhere, None)
        .await
        .unwrap();
    assert_eq!(seen.lock().unwrap()[1], None);
}

#[tokio::test]
async fn a_key_echoed_by_the_server_is_redacted_from_the_error() {
    let (base, _, seen) = auth_server().await;
    let auth = Auth {
        key: KEY,
        key_host: "127.0.0.1",
    };
    let error = assert_error(
        client()
            .get(Endpoint::Signature, &format!("{base}/echo"), Some(&auth))
            .await,
        ErrorKind::HttpStatus,
    );
    assert_eq!(seen.lock().unwrap().len(), 1);
    assert_eq!(
        error.message,
        "401 Unauthorized: bad token Bearer [redacted]"
    );
}

#[tokio::test]
async fn user_agent_and_exact_post_bytes() {
    let base = serve(
        Router::new()
            .route(
                "/ua",
                get(|headers: HeaderMap| async move {
                    headers[header::USER_AGENT].to_str().unwrap().to_string()
                }),
            )
            .route(
                "/echo",
                post(|headers: HeaderMap, body: axum::body::Bytes| async move {
                    let content_type = headers[header::CONTENT_TYPE].to_str().unwrap().to_string();
                    ([(header::CONTENT_TYPE, content_type)], body)
                }),
            ),
    )
    .await;
    let http = client();
    let response = http
        .get(Endpoint::Attestation, &format!("{base}/ua"), None)
        .await
        .unwrap();
    let expected = format!("teewatch/{}", env!("CARGO_PKG_VERSION"));
    assert_eq!(String::from_utf8(response.body).unwrap(), expected);
    assert_eq!(USER_AGENT, expected);

    let sent = b"{ \"model\":\"m\",  \"stream\":true }\n".to_vec();
    let response = http
        .post_json(Endpoint::Chat, &format!("{base}/echo"), sent.clone(), None)
        .await
        .unwrap();
    assert_eq!(response.body, sent);
    assert_eq!(
        response.header("Content-Type").as_deref(),
        Some("application/json")
    );
}

#[test]
fn only_https_or_loopback_http() {
    for url in [
        "https://x",
        "https://api.example.com/v1?x=1",
        "http://127.0.0.1:1/",
        "http://127.8.9.10/",
        "http://[::1]/",
        "http://[::1]:8080/x",
        "http://localhost:3000",
    ] {
        assert_eq!(require_secure(url), Ok(()), "{url}");
    }
    for url in [
        "http://example.com",
        "http://127.example.com",
        "http://127.0.0.1.example.com/",
        "http://127.0.0.1:1@example.com/",
        "http://localhost:1@example.com/",
        "http://10.0.0.1/",
        "ftp://127.0.0.1/",
        "not a url",
        "https://",
    ] {
        assert!(require_secure(url).is_err(), "{url}");
    }
}

#[tokio::test]
async fn insecure_urls_are_refused_before_connecting() {
    let error = assert_error(
        client()
            .get(Endpoint::Attestation, "http://example.com/", None)
            .await,
        ErrorKind::Connect,
    );
    assert!(error.message.contains("loopback"), "{}", error.message);
}

#[test]
fn retry_after_as_seconds_or_http_date() {
    let now = Utc.with_ymd_and_hms(2025, 6, 25, 0, 0, 0).unwrap();
    assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
    assert_eq!(
        parse_retry_after(" 120 ", now),
        Some(Duration::from_secs(120))
    );
    for date in [
        "Wed, 25 Jun 2025 00:00:07 GMT",
        "Wednesday, 25-Jun-25 00:00:07 GMT",
        "Wed Jun 25 00:00:07 2025",
    ] {
        assert_eq!(
            parse_retry_after(date, now),
            Some(Duration::from_secs(7)),
            "{date}"
        );
    }
    assert_eq!(
        parse_retry_after("Tue, 24 Jun 2025 23:00:00 GMT", now),
        Some(Duration::ZERO)
    );
    for bad in ["", "-1", "1.5", "soon", "Wed, 32 Jun 2025 00:00:00 GMT"] {
        assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
    }
}

#[test]
fn the_peer_spki_is_read_from_the_certificate() {
    use rcgen::PublicKeyData;
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    assert_eq!(
        spki_der(certified.cert.der()),
        Some(certified.signing_key.subject_public_key_info())
    );
    assert_eq!(spki_der(b"not a certificate"), None);
}

#[test]
fn names_are_the_bundle_names() {
    let endpoints = [
        Endpoint::Attestation,
        Endpoint::Chat,
        Endpoint::Signature,
        Endpoint::Pccs,
        Endpoint::RootCrl,
        Endpoint::Nras,
        Endpoint::Jwks,
    ];
    assert_eq!(
        endpoints.map(Endpoint::as_str),
        [
            "attestation",
            "chat",
            "signature",
            "pccs",
            "root_crl",
            "nras",
            "jwks"
        ]
    );
    let kinds = [
        ErrorKind::Connect,
        ErrorKind::Tls,
        ErrorKind::Timeout,
        ErrorKind::HttpStatus,
        ErrorKind::TooLarge,
        ErrorKind::InvalidJson,
    ];
    assert_eq!(
        kinds.map(ErrorKind::as_str),
        [
            "connect",
            "tls",
            "timeout",
            "http_status",
            "too_large",
            "invalid_json"
        ]
    );
    let defaults = HttpOptions::default();
    assert_eq!(defaults.connect_timeout, Duration::from_secs(10));
    assert_eq!(defaults.total_timeout, Duration::from_secs(60));
    assert_eq!(defaults.max_body_bytes, 16 * MIB);
}
