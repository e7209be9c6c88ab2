//! The daemon's HTTPS listener: an `axum::serve::Listener` that accepts TCP connections and hands
//! axum only those whose TLS handshake completed (client certificate verified, when the web
//! configuration asks for one).
//!
//! Each handshake takes the rustls configuration of the configuration generation in force when
//! the connection arrives, so a SIGHUP reload puts a renewed certificate, key or client CA in
//! force for new connections without a restart. Handshakes run in their own tasks with a
//! deadline, and at most [`MAX_HANDSHAKES`] at once, so a client that connects and never speaks
//! stalls nobody; a failed handshake is dropped with a debug line (never an error: scanners and
//! plain-HTTP clients are an expected sight on a port off loopback).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;

use super::runner::Shared;

/// How long a client has to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; connections beyond are closed at once.
pub const MAX_HANDSHAKES: usize = 256;

/// A TCP listener whose connections come out TLS-terminated.
pub struct TlsListener {
    tcp: TcpListener,
    shared: Arc<Shared>,
    /// The configuration the listener started with, used while the generation in force has
    /// none (a reload never puts such a one in force, see `http::keep_listener_settings`).
    started_with: Arc<ServerConfig>,
    handshakes: JoinSet<Option<(TlsStream<TcpStream>, SocketAddr)>>,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, config: Arc<ServerConfig>, shared: Arc<Shared>) -> TlsListener {
        TlsListener {
            tcp,
            shared,
            started_with: config,
            handshakes: JoinSet::new(),
        }
    }

    /// The rustls configuration of the generation in force.
    fn current(&self) -> Arc<ServerConfig> {
        self.shared
            .generation()
            .config
            .daemon
            .web
            .as_ref()
            .and_then(|web| web.tls.as_ref())
            .and_then(|tls| tls.server_config().ok())
            .unwrap_or_else(|| self.started_with.clone())
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
                        if self.handshakes.len() >= MAX_HANDSHAKES {
                            tracing::debug!(%addr, "too many TLS handshakes in progress; connection closed");
                            continue;
                        }
                        let acceptor = TlsAcceptor::from(self.current());
                        self.handshakes.spawn(async move {
                            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                                Ok(Ok(tls)) => Some((tls, addr)),
                                Ok(Err(e)) => {
                                    tracing::debug!(%addr, error = %e, "TLS handshake failed");
                                    None
                                }
                                Err(_) => {
                                    tracing::debug!(%addr, "TLS handshake timed out");
                                    None
                                }
                            }
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
