//! The simulated provider: models served by dstack nodes, each with its own TD, a secp256k1 and
//! an ed25519 signing key and an internal TLS certificate, answering attestation requests in the
//! model's format and signing chats as vllm-proxy (or NEAR AI's proxy) does.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use k256::ecdsa::SigningKey;
use rand::RngCore;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::compose_manager::ActionsOrder;
use super::dstack::{DstackIdentity, DstackTd};
use super::faults::{Fault, FaultSet};
use super::format::SimFormat;
use super::keys::{KeyError, NodeKeys};
use super::tls::{TlsError, TlsIdentity};
use teewatch_verify::canary::eip191_digest;
use teewatch_verify::hexutil;

/// One node: a TD, the keys the proxy generated inside it, and the internal TLS certificate it
/// terminates connections with when nothing sits in front of it.
pub struct SimNode {
    pub td: DstackTd,
    pub keys: NodeKeys,
    pub tls: TlsIdentity,
}

/// A node's keys or certificate could not be generated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Tls(#[from] TlsError),
}

impl SimNode {
    pub fn new(identity: DstackIdentity) -> Result<SimNode, NodeError> {
        let mut instance_id = [0u8; 20];
        rand::thread_rng().fill_bytes(&mut instance_id);
        Ok(SimNode {
            td: DstackTd::boot(identity, instance_id),
            keys: NodeKeys::generate()?,
            tls: TlsIdentity::generate()?,
        })
    }

    /// The 20-byte Ethereum address of the node's secp256k1 key.
    pub fn address(&self) -> [u8; 20] {
        self.keys.address
    }

    /// The uncompressed public key without its 0x04 prefix, as `signing_public_key` carries it.
    pub fn public_key_xy(&self) -> Vec<u8> {
        self.keys.public_key_xy()
    }
}

/// A signed chat kept for the signature endpoint: signed with both keys of the node that served
/// it, since the algorithm is only chosen when the signature is asked for.
#[derive(Debug, Clone)]
pub struct SignedChat {
    pub model: String,
    pub text: String,
    /// `0x` ‖ r ‖ s ‖ v, EIP-191.
    pub signature: String,
    /// `0x` + the node's address.
    pub address: String,
    /// 128 hex characters, no prefix.
    pub ed25519_signature: String,
    /// The node's ed25519 public key, 64 hex characters, no prefix.
    pub ed25519_public_key: String,
    pub created: Instant,
}

/// The bytes of a completed chat, kept to replay for the canary-replay fault.
#[derive(Debug, Clone)]
pub struct ChatRecord {
    pub chat_id: String,
    pub response_body: String,
    pub stream: bool,
}

/// One simulated model and the nodes that serve it round-robin.
pub struct SimModel {
    pub name: String,
    pub format: SimFormat,
    /// The member order its compose managers hash and serve their actions in (NEAR formats).
    pub actions_order: ActionsOrder,
    pub nodes: Vec<SimNode>,
    pub gpus: usize,
    round_robin: AtomicUsize,
    /// The faults in force, for every client or for one client address.
    pub faults: Mutex<FaultSet>,
    /// The base identity; drift faults derive another from it.
    pub identity: DstackIdentity,
    pub drifted: Mutex<Option<Vec<SimNode>>>,
    pub last_chat: Mutex<HashMap<bool, ChatRecord>>,
}

impl SimModel {
    pub fn new(
        name: &str,
        format: SimFormat,
        nodes: usize,
        gpus: usize,
    ) -> Result<SimModel, NodeError> {
        SimModel::with_identity(name, format, nodes, gpus, DstackIdentity::derived(name))
    }

    /// A model whose nodes boot `identity` (the simulator's provenance compose, for one).
    pub fn with_identity(
        name: &str,
        format: SimFormat,
        nodes: usize,
        gpus: usize,
        identity: DstackIdentity,
    ) -> Result<SimModel, NodeError> {
        Ok(SimModel {
            name: name.to_string(),
            format,
            actions_order: ActionsOrder::default(),
            nodes: (0..nodes.max(1))
                .map(|_| SimNode::new(identity.clone()))
                .collect::<Result<_, _>>()?,
            gpus: gpus.max(1),
            round_robin: AtomicUsize::new(0),
            faults: Mutex::new(FaultSet::default()),
            identity,
            drifted: Mutex::new(None),
            last_chat: Mutex::new(HashMap::new()),
        })
    }

    /// Whether `fault` is on for every client.
    pub fn has(&self, fault: Fault) -> bool {
        self.has_for(fault, None)
    }

    /// Whether a request from `client` sees `fault` (on for everyone, or scoped to it).
    pub fn has_for(&self, fault: Fault, client: Option<IpAddr>) -> bool {
        self.faults
            .lock()
            .map(|f| f.has(fault, client))
            .unwrap_or(false)
    }

    /// The node that answers next.
    pub fn next_node(&self) -> usize {
        self.round_robin.fetch_add(1, Ordering::Relaxed) % self.nodes.len()
    }

    /// The identity currently deployed for every client, with drift faults applied.
    pub fn current_identity(&self) -> DstackIdentity {
        self.identity_for(None)
    }

    /// The identity `client` sees deployed: drift faults scoped to it apply too, as a node
    /// answering that client only runs another image.
    pub fn identity_for(&self, client: Option<IpAddr>) -> DstackIdentity {
        let mut identity = self.identity.clone();
        if self.has_for(Fault::DriftMrtd, client) {
            if let Some(b) = identity.mrtd.first_mut() {
                *b ^= 0xff;
            }
            if let Some(b) = identity.boot_seed.first_mut() {
                *b ^= 0xff;
            }
        }
        if self.has_for(Fault::DriftCompose, client) {
            identity.app_compose = identity
                .app_compose
                .replace("\"kms_enabled\":true", "\"kms_enabled\":true,\"drift\":1");
        }
        identity
    }

    /// The TD a node runs now for every client: its own, or one rebooted under the drifted
    /// identity.
    pub fn td_for(&self, node: usize) -> DstackTd {
        self.td_seen_by(node, None)
    }

    /// The TD a node shows `client`, drift faults scoped to it included.
    pub fn td_seen_by(&self, node: usize, client: Option<IpAddr>) -> DstackTd {
        let current = self.identity_for(client);
        let base = self.nodes.get(node).map(|n| n.td.clone());
        match base {
            Some(td) if td.identity == current => td,
            Some(td) => DstackTd::boot(current, td.instance_id),
            None => DstackTd::boot(current, [0; 20]),
        }
    }
}

/// Signs `text` with EIP-191 personal_sign, returning `0x` ‖ r ‖ s ‖ v (v = 27/28).
pub fn personal_sign(key: &SigningKey, text: &str) -> Option<String> {
    let (signature, recovery) = key.sign_digest_recoverable(eip191_digest(text)).ok()?;
    let mut bytes = signature.to_bytes().to_vec();
    bytes.push(27 + recovery.to_byte());
    Some(format!("0x{}", hexutil::lower(&bytes)))
}

/// `sha256(request):sha256(response)`, the text vllm-proxy signs.
pub fn signed_text(request: &[u8], response: &[u8]) -> String {
    format!(
        "{}:{}",
        hexutil::lower(&Sha256::digest(request)),
        hexutil::lower(&Sha256::digest(response))
    )
}

/// The text a model of `format` signs: newer NEAR proxies prefix the requested model name.
pub fn signed_text_for(format: SimFormat, model: &str, request: &[u8], response: &[u8]) -> String {
    let hashes = signed_text(request, response);
    if format.is_near() {
        format!("{model}:{hashes}")
    } else {
        hashes
    }
}

/// A fresh chat id like vllm's.
pub fn chat_id() -> String {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("chatcmpl-{}", hexutil::lower(&bytes))
}

/// The assistant's answer to a canary prompt, deterministic so tests can read it.
pub fn answer_text(prompt: &str) -> String {
    format!("ok: {}", prompt.chars().rev().take(16).collect::<String>())
}

/// A non-streaming completion body.
pub fn completion_body(id: &str, model: &str, content: &str, created: i64) -> Value {
    json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16},
    })
}

/// A streaming completion as the SSE text vllm sends.
pub fn completion_stream(id: &str, model: &str, content: &str, created: i64) -> String {
    let mut out = String::new();
    let split = content
        .char_indices()
        .nth(3)
        .map_or(content.len(), |(i, _)| i);
    let (head, tail) = content.split_at(split);
    for piece in [head, tail] {
        let chunk = json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": null}],
        });
        out.push_str(&format!("data: {chunk}\n\n"));
    }
    let last = json!({
        "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
    });
    out.push_str(&format!("data: {last}\n\ndata: [DONE]\n\n"));
    out
}
