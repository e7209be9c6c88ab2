//! The simulator's HTTP server: provider (NanoGPT and vllm-proxy paths), PCCS, NRAS and an admin
//! endpoint for faults, all on one loopback listener, over plain HTTP or (with `tls`) HTTPS.
//! `provider_routes` answers the provider paths with the responses `reports` builds in each
//! model's format, `services` the PCCS, NRAS and admin paths, `https` terminates TLS.
//!
//! The TLS certificate is generated at every start even over plain HTTP, because NEAR-format
//! reports bind its fingerprint either way; the NEAR gateway is one TD for the whole simulator, as
//! it fronts every model, and runs on the second simulated Intel platform (FMSPC 7E5700000001)
//! while the model nodes run on the first. A NEAR compose manager is no TD of its own: it runs
//! in each model node's TD and is quoted by it (`near`).
//!
//! Every handler that reads a fault learns the TCP peer's address ([`Peer`], from the
//! connection), so a fault can be scoped to one client: a vantage point behind an intercepted
//! path, or one that a node answers with another image, while every other client sees the
//! healthy simulator. A TLS interception is decided by the listener at the handshake.

mod https;
mod near;
mod provider_routes;
mod reports;
mod services;
mod sigstore_routes;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_clients;
#[cfg(test)]
mod tests_near;
#[cfg(test)]
mod tests_platforms;

use provider_routes::{attestation, chat, signature};
use services::*;
use sigstore_routes::{github_attestations, rekor_entry, rekor_retrieve};

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::connect_info::Connected;
use axum::routing::{get, post};
use axum::serve::IncomingStream;
use chrono::Utc;
use rand::RngCore;

use super::compose_manager::ActionsOrder;
use super::dstack::DstackIdentity;
use super::faults::{ClientFault, Fault, FaultSet, canonical};
use super::format::SimFormat;
use super::intel::{self, IntelTestPki, TcbStatusChoice};
use super::nvidia::{NrasSim, NvidiaTestPki};
use super::provider::{SignedChat, SimModel, SimNode};
use super::tls::TlsIdentity;
use teewatch_verify::hexutil;

/// How the simulator is shaped.
#[derive(Debug, Clone)]
pub struct SimOptions {
    pub models: usize,
    pub nodes: usize,
    pub gpus: usize,
    pub api_key: String,
    /// How long after a chat its signature becomes available.
    pub signature_delay: Duration,
    /// Faults on at start: (model name or `None` for every model, fault).
    pub faults: Vec<(Option<String>, Fault)>,
    /// Faults on at start for one client address only.
    pub client_faults: Vec<ClientFault>,
    /// How long ago the Intel collateral was issued (zero: now). Collateral lives 30 days, so an
    /// age beyond that serves expired collateral, as a PCCS that stopped updating would.
    pub collateral_age: chrono::Duration,
    /// Model `i` serves `formats[i]`, or dstack when the list is shorter.
    pub formats: Vec<SimFormat>,
    /// Model `i`'s compose managers hash and serve their actions in `actions_orders[i]`, or the
    /// compose manager's own order when the list is shorter (NEAR formats only).
    pub actions_orders: Vec<ActionsOrder>,
    /// Serve every route over HTTPS with the generated certificate.
    pub tls: bool,
    /// Every model's compose runs the `image_provenance` cases' images, which a test Fulcio
    /// and Rekor sign and log (`sigstore`).
    pub provenance: bool,
}

impl Default for SimOptions {
    fn default() -> Self {
        let mut key = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut key);
        SimOptions {
            models: 1,
            nodes: 1,
            gpus: 1,
            api_key: format!("sim-{}", hexutil::lower(&key)),
            signature_delay: Duration::from_millis(0),
            faults: Vec::new(),
            client_faults: Vec::new(),
            collateral_age: chrono::Duration::zero(),
            formats: Vec::new(),
            actions_orders: Vec::new(),
            tls: false,
            provenance: false,
        }
    }
}

/// Why the simulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimStartError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the simulator only listens on loopback addresses, not {0}")]
    NotLoopback(SocketAddr),
    #[error("generating the test intel pki: {0}")]
    Intel(String),
    #[error("generating the test nvidia pki: {0}")]
    Nvidia(String),
    #[error("generating a node's keys or certificate: {0}")]
    Node(String),
    #[error("setting up tls: {0}")]
    Tls(String),
    #[error("generating the test sigstore: {0}")]
    Sigstore(String),
}

/// Everything the handlers share.
pub struct SimState {
    pub base_url: String,
    pub api_key: String,
    pub intel: IntelTestPki,
    pub nvidia: NvidiaTestPki,
    pub nras: Mutex<NrasSim>,
    pub models: Vec<SimModel>,
    /// Faults of the shared services and of the TLS connection, for every client or for one.
    pub service_faults: Mutex<FaultSet>,
    /// The NEAR AI gateway CVM in front of every NEAR-gateway model (CPU only), quoted on the
    /// second Intel platform.
    pub gateway: SimNode,
    /// The test Fulcio and Rekor, with `provenance`.
    pub sigstore: Option<crate::sigstore::SigstoreSim>,
    tls: TlsIdentity,
    /// What a rogue TLS terminator answers with under `tls-intercept`: another key, in a leaf
    /// the served certificate signed.
    interceptor: TlsIdentity,
    chats: Mutex<HashMap<String, SignedChat>>,
    /// Chat completions requested with a valid key, signed or not: what a paid API would bill.
    chat_requests: std::sync::atomic::AtomicUsize,
    signature_delay: Duration,
}

impl SimState {
    /// How many chat completions were requested with a valid key since the start.
    pub fn chat_requests(&self) -> usize {
        self.chat_requests
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The certificate the simulator serves (over HTTPS) and NEAR reports bind, as DER.
    pub fn tls_certificate_der(&self) -> &[u8] {
        self.tls.cert_der()
    }

    /// The same certificate as PEM.
    pub fn tls_certificate_pem(&self) -> &str {
        self.tls.cert_pem()
    }

    /// SHA256 of the served leaf's SubjectPublicKeyInfo DER.
    pub fn tls_spki_fingerprint(&self) -> [u8; 32] {
        self.tls.spki_fingerprint()
    }

    /// The certificate a client whose connection is intercepted sees, as DER.
    pub fn interceptor_certificate_der(&self) -> &[u8] {
        self.interceptor.cert_der()
    }

    /// SHA256 of the interceptor's SubjectPublicKeyInfo DER: what an intercepted client records
    /// as its TLS peer, which no report binds.
    pub fn interceptor_spki_fingerprint(&self) -> [u8; 32] {
        self.interceptor.spki_fingerprint()
    }

    /// Whether a request from `client` sees the service-wide `fault`.
    fn service_fault(&self, fault: Fault, client: Option<IpAddr>) -> bool {
        self.service_faults
            .lock()
            .map(|f| f.has(fault, client))
            .unwrap_or(false)
    }

    /// Whether connections from `client` are answered by the rogue TLS terminator.
    pub(super) fn intercepts(&self, client: IpAddr) -> bool {
        self.service_fault(Fault::TlsIntercept, Some(client))
    }

    fn model(&self, name: &str) -> Option<&SimModel> {
        self.models.iter().find(|m| m.name == name)
    }

    /// Turns a fault on or off for every client, for one model, or every model when `model` is
    /// `None`.
    pub fn set_fault(&self, model: Option<&str>, fault: Fault, on: bool) -> Result<(), String> {
        self.set_scoped_fault(None, model, fault, on)
    }

    /// Turns a fault on or off for requests from `client` only (its TCP peer address), for one
    /// model or every model; every other client keeps the answers it had.
    pub fn set_client_fault(
        &self,
        client: IpAddr,
        model: Option<&str>,
        fault: Fault,
        on: bool,
    ) -> Result<(), String> {
        self.set_scoped_fault(Some(client), model, fault, on)
    }

    /// [`SimState::set_fault`] (`client` `None`) or [`SimState::set_client_fault`]. A
    /// service-wide fault ignores `model`.
    pub fn set_scoped_fault(
        &self,
        client: Option<IpAddr>,
        model: Option<&str>,
        fault: Fault,
        on: bool,
    ) -> Result<(), String> {
        let client = client.map(canonical);
        let apply = |set: &Mutex<FaultSet>| {
            if let Ok(mut set) = set.lock() {
                set.set(client, fault, on);
            }
        };
        if fault.is_service_wide() {
            apply(&self.service_faults);
            return Ok(());
        }
        match model {
            None => self.models.iter().for_each(|m| apply(&m.faults)),
            Some(name) => apply(
                &self
                    .model(name)
                    .ok_or(format!("no model \"{name}\""))?
                    .faults,
            ),
        }
        Ok(())
    }

    /// Rotates the NRAS signing key (the JWKS follows).
    pub fn rotate_jwks(&self) -> Result<(), String> {
        let mut nras = self.nras.lock().map_err(|e| e.to_string())?;
        nras.rotate(Utc::now()).map_err(|e| e.to_string())
    }

    fn tcb_choice(&self, client: Option<IpAddr>) -> TcbStatusChoice {
        if self.service_fault(Fault::TcbRevoked, client) {
            TcbStatusChoice::Revoked
        } else if self.service_fault(Fault::TcbOutdated, client) {
            TcbStatusChoice::OutOfDate
        } else {
            TcbStatusChoice::UpToDate
        }
    }
}

/// The TCP peer of a request, as its handlers see it: the address a fault can be scoped to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub IpAddr);

impl Connected<IncomingStream<'_, tokio::net::TcpListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, tokio::net::TcpListener>) -> Peer {
        Peer(canonical(stream.remote_addr().ip()))
    }
}

impl Connected<IncomingStream<'_, https::TlsListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, https::TlsListener>) -> Peer {
        Peer(canonical(stream.remote_addr().ip()))
    }
}

/// A running simulator.
pub struct Simulator {
    pub base_url: String,
    pub state: Arc<SimState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Model names the simulator serves: `TEE/sim-model-<i>`.
pub fn model_name(index: usize) -> String {
    format!("TEE/sim-model-{index}")
}

impl Simulator {
    /// Starts the simulator on `listen` (loopback only; port 0 picks a free port).
    pub async fn start(
        listen: SocketAddr,
        options: SimOptions,
    ) -> Result<Simulator, SimStartError> {
        if !listen.ip().is_loopback() {
            return Err(SimStartError::NotLoopback(listen));
        }
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|source| SimStartError::Listen {
                addr: listen,
                source,
            })?;
        let addr = listener
            .local_addr()
            .map_err(|source| SimStartError::Listen {
                addr: listen,
                source,
            })?;
        let scheme = if options.tls { "https" } else { "http" };
        let base_url = format!("{scheme}://{addr}");
        let tls = TlsIdentity::generate().map_err(|e| SimStartError::Tls(e.to_string()))?;
        let interceptor = tls
            .issue_interceptor()
            .map_err(|e| SimStartError::Tls(e.to_string()))?;
        let now = Utc::now();
        let intel = IntelTestPki::generate(&base_url, now - options.collateral_age)
            .map_err(|e| SimStartError::Intel(e.to_string()))?;
        // Each node of a model owns its own GPUs (node `i` the GPUs from `i * gpus` on), so that
        // no GPU is shown in two parts of one answer; models share them, as separate answers.
        let gpu_count = options.gpus.max(1).saturating_mul(options.nodes.max(1));
        let nvidia = NvidiaTestPki::generate(gpu_count, now)
            .map_err(|e| SimStartError::Nvidia(e.to_string()))?;
        let nras =
            NrasSim::generate(&base_url, now).map_err(|e| SimStartError::Nvidia(e.to_string()))?;
        let node_error = |e: super::provider::NodeError| SimStartError::Node(e.to_string());
        let models = (0..options.models.max(1))
            .map(|i| {
                let format = options.formats.get(i).copied().unwrap_or_default();
                let name = model_name(i);
                let mut identity = DstackIdentity::derived(&name);
                if options.provenance {
                    identity.app_compose = crate::sigstore::app_compose(&name);
                }
                let mut model =
                    SimModel::with_identity(&name, format, options.nodes, options.gpus, identity)?;
                model.actions_order = options.actions_orders.get(i).copied().unwrap_or_default();
                Ok(model)
            })
            .collect::<Result<_, _>>()
            .map_err(node_error)?;
        let gateway = SimNode::new(DstackIdentity {
            mrtd: crate::dstack::GATEWAY_MRTD,
            ..DstackIdentity::derived("near-gateway")
        })
        .map_err(node_error)?;
        let sigstore = if options.provenance {
            Some(
                crate::sigstore::SigstoreSim::generate(now)
                    .map_err(|e| SimStartError::Sigstore(e.to_string()))?,
            )
        } else {
            None
        };
        let server_configs = if options.tls {
            Some((
                https::server_config(&tls).map_err(SimStartError::Tls)?,
                https::server_config(&interceptor).map_err(SimStartError::Tls)?,
            ))
        } else {
            None
        };
        let state = Arc::new(SimState {
            base_url: base_url.clone(),
            api_key: options.api_key.clone(),
            intel,
            nvidia,
            nras: Mutex::new(nras),
            models,
            service_faults: Mutex::new(FaultSet::default()),
            gateway,
            sigstore,
            tls,
            interceptor,
            chats: Mutex::new(HashMap::new()),
            chat_requests: std::sync::atomic::AtomicUsize::new(0),
            signature_delay: options.signature_delay,
        });
        for (model, fault) in &options.faults {
            // An unknown model name was already refused by the caller; ignore it here.
            let _ = state.set_fault(model.as_deref(), *fault, true);
        }
        for scoped in &options.client_faults {
            let _ =
                state.set_client_fault(scoped.client, scoped.model.as_deref(), scoped.fault, true);
        }
        let app = router(state.clone());
        let task = match server_configs {
            Some((genuine, rogue)) => {
                let decider = state.clone();
                let intercepted = move |ip: IpAddr| decider.intercepts(ip);
                let listener = https::TlsListener::new(listener, genuine, rogue, intercepted);
                tokio::spawn(async move {
                    let service = app.into_make_service_with_connect_info::<Peer>();
                    let _ = axum::serve(listener, service).await;
                })
            }
            None => tokio::spawn(async move {
                let service = app.into_make_service_with_connect_info::<Peer>();
                let _ = axum::serve(listener, service).await;
            }),
        };
        Ok(Simulator {
            base_url,
            state,
            task,
        })
    }
}

fn router(state: Arc<SimState>) -> Router {
    Router::new()
        .route("/api/v1/tee/attestation", get(attestation))
        .route("/v1/attestation/report", get(attestation))
        .route("/api/v1/tee/signature/{id}", get(signature))
        .route("/v1/signature/{id}", get(signature))
        .route("/api/v1/chat/completions", post(chat))
        .route("/v1/chat/completions", post(chat))
        .route(intel::ROOT_CA_CRL_PATH, get(pccs_root_crl))
        .route("/sgx/certification/v4/pckcrl", get(pccs_pck_crl))
        .route(intel::TCB_INFO_PATH, get(pccs_tcb_info))
        .route(intel::QE_IDENTITY_PATH, get(pccs_qe_identity))
        .route("/v3/attest/gpu", post(nras_attest))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/api/v1/index/retrieve", post(rekor_retrieve))
        .route("/api/v1/log/entries/{uuid}", get(rekor_entry))
        .route(
            "/{kind}/{owner}/attestations/{digest}",
            get(github_attestations),
        )
        .route("/admin/faults", get(admin_state).post(admin_fault))
        .route("/admin/rotate-jwks", post(admin_rotate))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            https::one_request_while_intercepted,
        ))
        .with_state(state)
}
