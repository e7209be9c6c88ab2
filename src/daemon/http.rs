//! The daemon's HTTP endpoints: `/metrics` (Prometheus text format), `/healthz` (the process
//! answers), `/readyz` (the store answers and takes checks, the scheduler ticks) and the status
//! page at `/`.
//!
//! The listener ([`bind`]) speaks TLS when `[daemon] web_config` has a `tls_server_config`
//! (`tls.rs`), and every endpoint asks for HTTP basic authentication when it has
//! `basic_auth_users` ([`authenticate`]), as Prometheus exporters configured by exporter-toolkit
//! do. A plain listener off loopback is refused unless `allow_plain_http_off_loopback` says so.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State as AxumState};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::RunError;
use super::runner::Shared;
use super::status_page;
use super::tls::TlsListener;
use crate::config::{ConfigError, ConfigIssue, DaemonConfig, plain_off_loopback};
use crate::schedule::Scheduler;

/// What a 401 asks for.
pub const WWW_AUTHENTICATE: &str = "Basic realm=\"teewatch\"";
/// How long a successful bcrypt verification is remembered: a Prometheus scraping every 15 s
/// costs one bcrypt (tens of milliseconds of CPU at cost 10) every five minutes, not one per
/// scrape. Only successes are remembered, keyed by a hash of the user, the configured hash and
/// the password, so a changed password or hash (a reload) is verified afresh.
pub const AUTH_CACHE_TTL: Duration = Duration::from_secs(300);
/// Remembered verifications at most (clients with distinct credentials).
const AUTH_CACHE_CAPACITY: usize = 100;

/// What the handlers read: the shared daemon state and, once started, the scheduler.
#[derive(Clone)]
pub struct HttpState {
    pub shared: Arc<Shared>,
    pub scheduler: Arc<OnceLock<Scheduler>>,
}

/// The router of every endpoint, each behind basic authentication when the web configuration
/// in force has users.
pub fn router(state: HttpState) -> Router {
    let auth = AuthState {
        shared: state.shared.clone(),
        cache: Arc::new(AuthCache::new()),
    };
    Router::new()
        .route("/", get(index))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
        .layer(middleware::from_fn_with_state(auth, authenticate))
}

/// The daemon's listener: plain TCP, or TLS per the web configuration.
pub enum Listener {
    Plain(TcpListener),
    Tls(TlsListener),
}

/// Binds the listener for the configuration in force: TLS when the web configuration has a
/// `tls_server_config`. A plain listener on a non-loopback address (a `--listen` override
/// included) is refused unless `allow_plain_http_off_loopback` is set, as is a TLS
/// configuration whose files are systemd credentials this process cannot read.
pub async fn bind(
    listen: SocketAddr,
    shared: &Arc<Shared>,
    config_path: &Path,
) -> Result<Listener, RunError> {
    let generation = shared.generation();
    let daemon = &generation.config.daemon;
    let refuse = |path: &str, message: String| {
        RunError::Config(ConfigError {
            file: config_path.display().to_string(),
            issues: vec![ConfigIssue {
                path: path.to_string(),
                message,
            }],
        })
    };
    if let Some(message) = plain_off_loopback(
        listen,
        daemon.web.as_ref(),
        daemon.allow_plain_http_off_loopback,
    ) {
        return Err(refuse("daemon.listen", message));
    }
    let tls = match daemon.web.as_ref().and_then(|w| w.tls.as_ref()) {
        None => None,
        Some(tls) => Some(
            tls.server_config()
                .map_err(|reason| refuse("daemon.web_config", reason.to_string()))?,
        ),
    };
    let users = daemon.web.as_ref().map_or(0, |w| w.basic_auth_users.len());
    if !listen.ip().is_loopback() && tls.is_none() {
        tracing::warn!(
            %listen,
            "serving plain HTTP off loopback (allow_plain_http_off_loopback){}",
            if users > 0 { "; basic-auth passwords cross the network in the clear" } else { "" }
        );
    }
    let tcp = TcpListener::bind(listen)
        .await
        .map_err(|source| RunError::Bind {
            addr: listen,
            source,
        })?;
    tracing::info!(
        tls = tls.is_some(),
        client_auth = daemon
            .web
            .as_ref()
            .and_then(|w| w.tls.as_ref())
            .map_or("NoClientCert", |t| t.client_auth.name()),
        basic_auth_users = users,
        "listener bound"
    );
    Ok(match tls {
        None => Listener::Plain(tcp),
        Some(config) => Listener::Tls(TlsListener::new(tcp, config, shared.clone())),
    })
}

impl Listener {
    /// The address bound (the real port when `:0` was asked for).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Listener::Plain(tcp) => tcp.local_addr(),
            Listener::Tls(tls) => axum::serve::Listener::local_addr(tls),
        }
    }

    /// Serves `router` until `shutdown` completes, then lets open requests finish.
    pub async fn serve(
        self,
        router: Router,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> io::Result<()> {
        match self {
            Listener::Plain(tcp) => {
                axum::serve(tcp, router)
                    .with_graceful_shutdown(shutdown)
                    .await
            }
            Listener::Tls(tls) => {
                axum::serve(tls, router)
                    .with_graceful_shutdown(shutdown)
                    .await
            }
        }
    }
}

/// On a reload, keeps the listener's web configuration when the new one would turn TLS on or
/// off (the listener is bound once; that takes a restart), or names credential files this
/// process cannot read. Certificates, keys, the client CA and users change on reload.
pub fn keep_listener_settings(old: &DaemonConfig, new: &mut DaemonConfig) {
    let tls = |d: &DaemonConfig| {
        d.web
            .as_ref()
            .and_then(|w| w.tls.as_ref())
            .map(|t| t.server_config().is_ok())
    };
    match (tls(old), tls(new)) {
        (None, None) | (Some(true), Some(true)) => {}
        (Some(true), Some(false)) => {
            tracing::warn!(
                "daemon.web_config: the new TLS files cannot be read here; the listener keeps its web configuration"
            );
            new.web = old.web.clone();
        }
        _ => {
            tracing::warn!(
                "daemon.web_config: turning TLS on or off takes effect after a restart; the listener keeps its web configuration"
            );
            new.web = old.web.clone();
        }
    }
    if new.allow_plain_http_off_loopback != old.allow_plain_http_off_loopback {
        tracing::warn!(
            "daemon.allow_plain_http_off_loopback changed; it takes effect after a restart"
        );
        new.allow_plain_http_off_loopback = old.allow_plain_http_off_loopback;
    }
}

/// What the authentication layer reads.
#[derive(Clone)]
struct AuthState {
    shared: Arc<Shared>,
    cache: Arc<AuthCache>,
}

/// Asks for HTTP basic authentication on every request while the web configuration in force
/// has users: 401 with `WWW-Authenticate: Basic realm="teewatch"` unless the credentials
/// verify against a user's bcrypt hash. Credentials are never logged.
async fn authenticate(
    AxumState(auth): AxumState<AuthState>,
    request: Request,
    next: Next,
) -> Response {
    let generation = auth.shared.generation();
    let users = match generation.config.daemon.web.as_ref() {
        Some(web) if !web.basic_auth_users.is_empty() => &web.basic_auth_users,
        _ => return next.run(request).await,
    };
    let verified = match basic_credentials(request.headers()) {
        Some((user, password)) => auth.cache.verify(users, &user, &password).await,
        None => false,
    };
    if verified {
        next.run(request).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(WWW_AUTHENTICATE),
            )],
            "Unauthorized\n",
        )
            .into_response()
    }
}

/// The user and password of an `Authorization: Basic` header.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// Successful verifications for [`AUTH_CACHE_TTL`], and the one bcrypt at a time the rest wait
/// for (a flood of wrong passwords costs the checks one core at most).
struct AuthCache {
    verified: Mutex<HashMap<[u8; 32], Instant>>,
    bcrypt: Arc<Semaphore>,
}

impl AuthCache {
    fn new() -> AuthCache {
        AuthCache {
            verified: Mutex::new(HashMap::new()),
            bcrypt: Arc::new(Semaphore::new(1)),
        }
    }

    /// Whether `password` is `user`'s. An unknown user costs a bcrypt too (against another
    /// user's hash, the result thrown away), so response times do not tell which names exist;
    /// bcrypt compares in constant time.
    async fn verify(&self, users: &BTreeMap<String, String>, user: &str, password: &str) -> bool {
        let stored = users.get(user);
        let key = cache_key(user, stored.map_or("", String::as_str), password);
        if stored.is_some() && self.remembered(&key) {
            return true;
        }
        let Some(hash) = stored.or_else(|| users.values().next()).cloned() else {
            return false;
        };
        let Ok(permit) = self.bcrypt.clone().acquire_owned().await else {
            return false;
        };
        let password = password.to_string();
        // The permit goes with the computation: a client that hangs up does not free it while
        // its bcrypt still runs, so a flood of dropped requests still holds one core at most.
        let matches = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            bcrypt::verify(password.as_bytes(), &hash).unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        let verified = matches && stored.is_some();
        if verified {
            self.remember(key);
        }
        verified
    }

    fn remembered(&self, key: &[u8; 32]) -> bool {
        let verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        verified
            .get(key)
            .is_some_and(|at| at.elapsed() < AUTH_CACHE_TTL)
    }

    fn remember(&self, key: [u8; 32]) {
        let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        verified.retain(|_, at| at.elapsed() < AUTH_CACHE_TTL);
        while verified.len() >= AUTH_CACHE_CAPACITY {
            let Some(oldest) = verified.iter().min_by_key(|(_, at)| **at).map(|(k, _)| *k) else {
                break;
            };
            verified.remove(&oldest);
        }
        verified.insert(key, Instant::now());
    }
}

/// SHA-256 over the user, the configured hash and the presented password, each length-prefixed
/// (the cache never holds a password).
fn cache_key(user: &str, hash: &str, password: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in [user, hash, password] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hasher.finalize().into()
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
    if let Some(reason) = state.shared.fleet.as_ref().and_then(|f| f.not_ready()) {
        reasons.push(reason);
    }
    // Targets whose checks cannot start (an unreadable API key) are named but keep the daemon
    // ready: it still checks the others and serves their metrics, and those targets' checks
    // are recorded as unknown with the reason.
    let cannot_check = state
        .shared
        .cannot_check_line()
        .map(|line| format!("; {line}"))
        .unwrap_or_default();
    if reasons.is_empty() {
        (StatusCode::OK, format!("ready{cannot_check}\n")).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}{cannot_check}\n", reasons.join("; ")),
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
