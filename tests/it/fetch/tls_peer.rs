//! The TLS peer's SubjectPublicKeyInfo is captured from a real TLS connection: the key a
//! vllm-proxy's certificate carries is what `tls_peer_spki` records for the TLS-binding check.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::Arc;

use teewatch::fetch::http::{Endpoint, Http, HttpOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peer_key_of_an_https_fetch_is_recorded() {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let cert_der = cert.der().to_vec();
    let config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert_der.clone())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = acceptor.accept(tcp).await.unwrap();
        let mut request = Vec::new();
        let mut buffer = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tls.read(&mut buffer).await.unwrap();
            if n == 0 {
                break;
            }
            request.extend_from_slice(&buffer[..n]);
        }
        let response = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}";
        tls.write_all(response).await.unwrap();
        tls.shutdown().await.ok();
    });

    let http = Http::new(HttpOptions {
        extra_roots_der: vec![cert_der],
        ..HttpOptions::default()
    })
    .unwrap();
    let response = http
        .get(
            Endpoint::Attestation,
            &format!("https://localhost:{port}/report"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    // The SPKI is the DER of the key's PEM form ("PUBLIC KEY" is a SubjectPublicKeyInfo).
    let pem = key.public_key_pem();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    use base64::Engine;
    let spki = base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap();
    assert_eq!(response.peer_spki_der.as_deref(), Some(spki.as_slice()));
}
