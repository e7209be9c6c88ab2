//! `[daemon] source_address` reaches the socket: a server sees the configured address as the
//! TCP peer of teewatch's request.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use teewatch::config::Config;
use teewatch::fetch::http::{Endpoint, Http, HttpOptions};

/// The peer address of the one request a throw-away HTTP server answers.
async fn peer_of_one_request(http: &Http) -> IpAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let (mut stream, peer) = listener.accept().await.unwrap();
        let mut request = [0u8; 1024];
        let _ = stream.read(&mut request).await.unwrap();
        stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}")
            .await
            .unwrap();
        peer.ip()
    });
    let response = http.get(Endpoint::Attestation, &url, None).await.unwrap();
    assert_eq!(response.body, b"{}");
    server.await.unwrap()
}

#[tokio::test]
async fn every_request_leaves_from_the_configured_source_address() {
    for (line, expected) in [
        ("source_address = \"127.0.0.2\"", [127, 0, 0, 2]),
        ("source_address = \"127.0.0.3\"", [127, 0, 0, 3]),
        ("", [127, 0, 0, 1]),
    ] {
        let config = Config::parse(&format!("[daemon]\n{line}\n"), "t.toml").unwrap();
        let http = Http::new(HttpOptions::for_config(&config)).unwrap();
        assert_eq!(
            peer_of_one_request(&http).await,
            IpAddr::from(expected),
            "{line:?}"
        );
    }
}

#[tokio::test]
async fn a_source_address_that_cannot_reach_the_server_is_a_connect_error_not_another_address() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    // An IPv6 source for an IPv4 server, and an address this host does not have (TEST-NET-1):
    // no connection at all, never one from a default address.
    for source in ["::1", "192.0.2.77"] {
        let http = Http::new(HttpOptions {
            local_address: Some(source.parse().unwrap()),
            ..HttpOptions::default()
        })
        .unwrap();
        let error = http
            .get(Endpoint::Attestation, &url, None)
            .await
            .unwrap_err();
        assert_eq!(error.kind.as_str(), "connect", "{source}: {error}");
    }
}
