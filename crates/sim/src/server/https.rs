//! HTTPS for the simulator: an `axum::serve::Listener` that accepts TCP connections and hands
//! axum only those whose TLS handshake completed.
//!
//! Handshakes run in their own tasks, so one client that connects and never speaks cannot stall
//! every other connection; each has a deadline, and a failed or late handshake is dropped
//! silently (a TLS client that distrusts the test certificate is an expected sight here). The
//! handshake tasks live in a `JoinSet` owned by the listener, so they end with the server task.
//!
//! The certificate is chosen per connection from the peer's address before the handshake:
//! the genuine one, or the rogue terminator's when `tls-intercept` is on for that client (or for
//! everyone). Only the TCP peer is known then, which is exactly what a fault is scoped to.
//! While the fault is on for a client, every response to it closes its connection
//! ([`one_request_while_intercepted`]), so a pooled connection never outlives a change of the
//! fault: as when a real terminator appears on a path (the old connections break) or goes away
//! (its connections end with it).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderValue;
use axum::http::header::CONNECTION;
use axum::middleware::Next;
use axum::response::Response;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::server::TlsStream;

use super::{Peer, SimState};
use crate::tls::TlsIdentity;

/// How long a client has to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A rustls server configuration for `identity`: ring as the provider (the one rustls is built
/// with in this tree, named explicitly so no process-wide default has to be installed), HTTP/1.1
/// only, as the router serves.
pub(super) fn server_config(identity: &TlsIdentity) -> Result<Arc<ServerConfig>, String> {
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(identity.cert_der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(identity.key_pkcs8_der().to_vec())),
        )
        .map_err(|e| e.to_string())?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Whether a connection from this address is answered by the rogue terminator.
type Intercepted = Box<dyn Fn(IpAddr) -> bool + Send + Sync>;

/// A TCP listener whose connections come out TLS-terminated.
pub(super) struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    rogue: TlsAcceptor,
    intercepted: Intercepted,
    handshakes: JoinSet<Option<(TlsStream<TcpStream>, SocketAddr)>>,
}

impl TlsListener {
    /// Terminates with `genuine`, or with `rogue` for a peer `intercepted` names.
    pub(super) fn new(
        tcp: TcpListener,
        genuine: Arc<ServerConfig>,
        rogue: Arc<ServerConfig>,
        intercepted: impl Fn(IpAddr) -> bool + Send + Sync + 'static,
    ) -> TlsListener {
        TlsListener {
            tcp,
            acceptor: TlsAcceptor::from(genuine),
            rogue: TlsAcceptor::from(rogue),
            intercepted: Box::new(intercepted),
            handshakes: JoinSet::new(),
        }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            tokio::select! {
                accepted = self.tcp.accept() => match accepted {
                    Ok((stream, addr)) => {
                        let acceptor = if (self.intercepted)(addr.ip()) {
                            self.rogue.clone()
                        } else {
                            self.acceptor.clone()
                        };
                        self.handshakes.spawn(async move {
                            tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream))
                                .await
                                .ok()?
                                .ok()
                                .map(|tls| (tls, addr))
                        });
                    }
                    // Running out of descriptors and the like: back off rather than spin, as
                    // axum's own TCP listener does.
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                },
                Some(done) = self.handshakes.join_next(), if !self.handshakes.is_empty() => {
                    if let Ok(Some(connection)) = done {
                        return connection;
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// Middleware: a response to a client that `tls-intercept` names says `Connection: close`. The
/// certificate is chosen once per connection, at its handshake; without this a client's pooled
/// keep-alive connection would stay with the terminator after the fault is cleared, and with
/// the genuine server after it is turned on. So at most one answer after a change comes over
/// the connection made before it.
pub(super) async fn one_request_while_intercepted(
    State(state): State<Arc<SimState>>,
    ConnectInfo(Peer(client)): ConnectInfo<Peer>,
    request: Request,
    next: Next,
) -> Response {
    let intercepted = state.intercepts(client);
    let mut response = next.run(request).await;
    if intercepted {
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response
}
