//! Attestation responses in each simulated format: the dstack / vllm-proxy report here, NEAR AI's
//! gateway and direct shapes in `near`, and the Chutes and Tinfoil stand-ins.
//!
//! Every TD in a response ("part") is quoted with REPORTDATA binding the key the request's
//! `signing_algo` picks, the nonce, and for NEAR parts the TLS certificate fingerprint the part
//! names. The quote-level faults (wrong address, bad quote signature, debug TD, unbound nonce)
//! apply to every part of a response, the gateway and compose manager included, so a fault trips
//! its check whichever format a model serves; drift and GPU faults apply to the model's nodes.
//!
//! Model nodes (and dstack TDs) are quoted on the first simulated Intel platform, the NEAR
//! gateway on the second, so a NEAR gateway response carries quotes of two FMSPCs, each to be
//! verified with its own platform's collateral. A compose manager runs inside its model node's
//! TD, so its quote is that node's, on the first platform.
//!
//! Faults are read for the requesting client ([`Ctx::has`]), so a fault scoped to one client
//! address shapes only the answers that client gets.

use std::net::IpAddr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rand::RngCore;
use serde_json::{Value, json};

use super::SimState;
use super::near::{direct_report, gateway_report};
use super::provider_routes::set;
use crate::dstack::DstackTd;
use crate::faults::Fault;
use crate::format::{SigningAlgo, SimFormat};
use crate::intel::{Platform, TdBody};
use crate::keys::{NodeKeys, report_data};
use crate::nvidia::GpuState;
use crate::provider::SimModel;
use teewatch_verify::hexutil;

/// What one attestation request asks for.
#[derive(Debug, Clone, Copy)]
pub(super) struct ReportRequest<'a> {
    /// The client's nonce.
    pub nonce: &'a [u8; 32],
    pub algo: SigningAlgo,
    /// Asked on NanoGPT's `/api/...` path, which echoes the nonce.
    pub nanogpt: bool,
    /// The TCP peer's address, for faults scoped to one client.
    pub client: Option<IpAddr>,
}

/// One model's attestation response in its format.
pub(super) fn build_report(
    state: &SimState,
    model: &SimModel,
    request: ReportRequest<'_>,
) -> Result<Value, String> {
    // With the unbound-nonce fault the evidence is bound to a nonce of the server's choosing.
    let mut bound = *request.nonce;
    if model.has_for(Fault::UnboundNonce, request.client) {
        rand::thread_rng().fill_bytes(&mut bound);
    }
    let ctx = Ctx {
        state,
        model,
        algo: request.algo,
        client_nonce: request.nonce,
        bound_nonce: &bound,
        client: request.client,
    };
    match model.format {
        SimFormat::Dstack => dstack_report(&ctx, request.nanogpt),
        SimFormat::NearGateway => gateway_report(&ctx),
        SimFormat::NearDirect => direct_report(&ctx),
        SimFormat::Chutes => Ok(chutes_body(request.nonce)),
        SimFormat::Tinfoil => Ok(tinfoil_body()),
    }
}

/// The request and model every part of one response is built for.
pub(super) struct Ctx<'a> {
    pub state: &'a SimState,
    pub model: &'a SimModel,
    pub algo: SigningAlgo,
    pub client_nonce: &'a [u8; 32],
    /// The nonce the evidence binds: the client's, or the server's own under `unbound-nonce`.
    pub bound_nonce: &'a [u8; 32],
    /// The requesting client's address.
    pub client: Option<IpAddr>,
}

impl Ctx<'_> {
    /// Whether the requesting client sees `fault` on the model.
    pub fn has(&self, fault: Fault) -> bool {
        self.model.has_for(fault, self.client)
    }
}

/// One TD to quote: its measured state, the Intel platform it runs on, its keys, its GPUs (none
/// for a CPU-only part) and the TLS fingerprint its REPORTDATA binds, if any.
pub(super) struct PartTd<'a> {
    pub td: DstackTd,
    pub platform: Platform,
    pub keys: &'a NodeKeys,
    pub gpus: usize,
    /// The test PKI's first GPU this TD owns: each node has GPUs of its own, as real nodes do,
    /// so that no GPU appears in two parts of one answer.
    pub first_gpu: usize,
    pub fingerprint: Option<[u8; 32]>,
}

/// A quote of the part's TD carrying `report_data`, under the quote-level faults in force (a
/// debug TD, a corrupted signature).
pub(super) fn quote(
    ctx: &Ctx<'_>,
    part: &PartTd<'_>,
    report_data: [u8; 64],
) -> Result<Vec<u8>, String> {
    let mut body = TdBody {
        mrtd: part.td.identity.mrtd,
        mrconfigid: part.td.identity.mrconfigid(),
        rtmr: part.td.rtmr,
        report_data,
        ..TdBody::default()
    };
    if ctx.has(Fault::DebugTd) {
        if let Some(b) = body.td_attributes.first_mut() {
            *b |= 0x01;
        }
    }
    let intel = &ctx.state.intel;
    if ctx.has(Fault::BadQuoteSignature) {
        intel.quote_v4_bad_signature_on(part.platform, &body)
    } else {
        intel.quote_v4_on(part.platform, &body)
    }
    .map_err(|e| e.to_string())
}

/// A part's quote binding its key (and fingerprint) and, with GPUs, its `nvidia_payload` object.
pub(super) fn evidence(
    ctx: &Ctx<'_>,
    part: &PartTd<'_>,
) -> Result<(Vec<u8>, Option<Value>), String> {
    let mut key = part.keys.key_bytes(ctx.algo);
    if ctx.has(Fault::WrongAddress) {
        rand::thread_rng().fill_bytes(&mut key);
    }
    let report_data = report_data(&key, part.fingerprint.as_ref(), ctx.bound_nonce);
    let quote = quote(ctx, part, report_data)?;
    if part.gpus == 0 {
        return Ok((quote, None));
    }
    let gpus: Vec<GpuState> = (0..part.gpus)
        .map(|_| {
            let mut gpu = GpuState::default();
            if ctx.has(Fault::DriftGpu) {
                if let Some((_, value)) = gpu.blocks.first_mut() {
                    if let Some(b) = value.first_mut() {
                        *b ^= 0xff;
                    }
                }
            }
            gpu
        })
        .collect();
    let bad = ctx.has(Fault::BadGpuSignature).then_some(0);
    let payload = ctx
        .state
        .nvidia
        .payload_of(part.first_gpu, ctx.bound_nonce, &gpus, bad)
        .map_err(|e| e.to_string())?;
    Ok((quote, Some(payload)))
}

/// A model node's TD, under the drift faults in force.
pub(super) fn model_td<'a>(
    ctx: &Ctx<'a>,
    index: usize,
    fingerprint: Option<[u8; 32]>,
) -> Result<PartTd<'a>, String> {
    let node = ctx.model.nodes.get(index).ok_or("no such node")?;
    Ok(PartTd {
        td: ctx.model.td_seen_by(index, ctx.client),
        platform: Platform::First,
        keys: &node.keys,
        gpus: ctx.model.gpus,
        first_gpu: index.saturating_mul(ctx.model.gpus),
        fingerprint,
    })
}

/// A dstack / vllm-proxy node report, field for field as vllm-proxy serves it.
fn dstack_part(ctx: &Ctx<'_>, index: usize) -> Result<Value, String> {
    let part = model_td(ctx, index, None)?;
    let (quote, payload) = evidence(ctx, &part)?;
    Ok(json!({
        "signing_address": part.keys.signing_address(ctx.algo),
        "signing_algo": ctx.algo.name(),
        "signing_public_key": part.keys.signing_public_key(ctx.algo),
        "intel_quote": hexutil::lower(&quote),
        "quote": hexutil::lower(&quote),
        "nvidia_payload": payload.map(|p| p.to_string()).unwrap_or_default(),
        "event_log": part.td.event_log(),
        "info": part.td.info(),
        "vm_config": part.td.vm_config(ctx.model.gpus).to_string(),
    }))
}

/// The answering node's report, and every node's in `all_attestations` when there are several.
fn dstack_report(ctx: &Ctx<'_>, nanogpt: bool) -> Result<Value, String> {
    let answering = ctx.model.next_node();
    let reports: Vec<Value> = (0..ctx.model.nodes.len())
        .map(|i| dstack_part(ctx, i))
        .collect::<Result<_, _>>()?;
    let mut top = reports.get(answering).cloned().unwrap_or(Value::Null);
    if ctx.model.nodes.len() > 1 {
        set(&mut top, "all_attestations", Value::Array(reports));
    }
    if nanogpt || ctx.has(Fault::UnboundNonce) {
        // NanoGPT echoes the client's nonce; it proves nothing.
        set(
            &mut top,
            "nonce",
            Value::String(hexutil::lower(ctx.client_nonce)),
        );
    }
    set(
        &mut top,
        "request_nonce",
        Value::String(hexutil::lower(ctx.client_nonce)),
    );
    Ok(top)
}

fn random_bytes(len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes
}

/// A Chutes-shaped stand-in: only `attestation_type` is from a real capture.
pub(super) fn chutes_body(nonce: &[u8; 32]) -> Value {
    json!({
        "attestation_type": "chutes",
        "nonce": hexutil::lower(nonce),
        "evidence": [{
            "instance_id": hexutil::lower(&random_bytes(16)),
            "quote": BASE64.encode(random_bytes(1024)),
            "gpu_evidence": [],
        }],
    })
}

/// A Tinfoil-shaped stand-in: only the `format` predicate URL is from a real capture.
pub(super) fn tinfoil_body() -> Value {
    json!({
        "format": "https://tinfoil.sh/predicate/tdx-guest/v2",
        "body": BASE64.encode(random_bytes(512)),
    })
}
