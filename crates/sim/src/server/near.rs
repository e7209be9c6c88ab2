//! NEAR AI's two shapes, as served from June 2026 (REFERENCE.md §1): through its gateway, or
//! answered by the model node itself.
//!
//! Each model node's TD also runs NEAR's compose manager, which deploys the model's containers at
//! run time and attests its action log with a quote of that same TD: the same registers and
//! platform as the node's own quote, REPORTDATA = `actions_hash` ‖ nonce. The direct shape carries
//! the answering node's compose manager at the top level; the gateway shape one per entry of
//! `model_attestations`. Beside the gateway's and each model node's part sits its OHTTP key
//! configuration, signed by the part's attested ed25519 key; a request for ECDSA keys gets no
//! OHTTP fields, as there is no attested ed25519 key to sign with.

use aws_lc_rs::signature::Ed25519KeyPair;
use serde_json::{Map, Value, json};

use super::reports::{Ctx, PartTd, evidence, model_td, quote};
use crate::compose_manager::{self, LogEvents};
use crate::faults::Fault;
use crate::format::SigningAlgo;
use crate::intel::Platform;
use crate::keys::{NodeKeys, generate_ed25519};
use crate::ohttp;
use crate::tls::fresh_spki_fingerprint;
use teewatch_verify::hexutil;

/// A NEAR part: the key fields, the echoed nonce, the quote, the GPU payload (GPU parts only),
/// the dstack event log, info and vm_config, and the bound TLS fingerprint if any.
fn near_part(ctx: &Ctx<'_>, part: &PartTd<'_>) -> Result<Map<String, Value>, String> {
    let (quote, payload) = evidence(ctx, part)?;
    let mut out = Map::new();
    let mut put = |key: &str, value: Value| {
        out.insert(key.to_string(), value);
    };
    put(
        "signing_address",
        Value::String(part.keys.signing_address(ctx.algo)),
    );
    put("signing_algo", Value::String(ctx.algo.name().to_string()));
    put(
        "signing_public_key",
        Value::String(part.keys.signing_public_key(ctx.algo)),
    );
    put(
        "request_nonce",
        Value::String(hexutil::lower(ctx.client_nonce)),
    );
    put("intel_quote", Value::String(hexutil::lower(&quote)));
    if let Some(payload) = payload {
        put("nvidia_payload", Value::String(payload.to_string()));
    }
    put("event_log", part.td.event_log());
    put("info", part.td.info());
    put(
        "vm_config",
        Value::String(part.td.vm_config(part.gpus).to_string()),
    );
    if let Some(fp) = part.fingerprint {
        put("tls_cert_fingerprint", Value::String(hexutil::lower(&fp)));
    }
    Ok(out)
}

/// A model node's NEAR part, with its model name.
fn near_model_part(
    ctx: &Ctx<'_>,
    index: usize,
    fingerprint: [u8; 32],
) -> Result<Map<String, Value>, String> {
    let part = model_td(ctx, index, Some(fingerprint))?;
    let mut out = near_part(ctx, &part)?;
    out.insert(
        "model_name".to_string(),
        Value::String(ctx.model.name.clone()),
    );
    Ok(out)
}

/// The fingerprint the part terminating the client's connection names: the served
/// certificate's, or under `tls-wrong-peer` that of a key no served certificate holds.
fn terminating_fingerprint(ctx: &Ctx<'_>) -> Result<[u8; 32], String> {
    if ctx.has(Fault::TlsWrongPeer) {
        fresh_spki_fingerprint().map_err(|e| e.to_string())
    } else {
        Ok(ctx.state.tls_spki_fingerprint())
    }
}

/// The internal certificate fingerprint of a model node.
fn node_fingerprint(ctx: &Ctx<'_>, index: usize) -> Result<[u8; 32], String> {
    ctx.model
        .nodes
        .get(index)
        .map(|n| n.tls.spki_fingerprint())
        .ok_or_else(|| "no such node".to_string())
}

/// The NEAR gateway's CPU-only part: no GPUs, on the second platform, as the gateway can run on
/// other hardware than the models it fronts.
fn gateway_part(ctx: &Ctx<'_>, fingerprint: [u8; 32]) -> Result<Map<String, Value>, String> {
    let gateway = &ctx.state.gateway;
    near_part(
        ctx,
        &PartTd {
            td: gateway.td.clone(),
            platform: Platform::Second,
            keys: &gateway.keys,
            gpus: 0,
            first_gpu: 0,
            fingerprint: Some(fingerprint),
        },
    )
}

/// The `compose_manager_attestation` of model node `index`: its action log (in the model's
/// member order, with the redeploy and restart faults' actions), `actions_hash`, the client nonce
/// it echoes, and a quote of the node's own TD whose REPORTDATA is `actions_hash` ‖ the bound
/// nonce, with that TD's event log and vm_config.
fn compose_manager_attestation(ctx: &Ctx<'_>, index: usize) -> Result<Value, String> {
    let model = ctx.model;
    let part = model_td(ctx, index, None)?;
    let events = LogEvents {
        redeploy: ctx.has(Fault::Redeploy),
        restart: ctx.has(Fault::Restart),
    };
    let log = compose_manager::action_log(&model.name, index, events);
    let tampered = ctx
        .has(Fault::ActionsTampered)
        .then_some(model.name.as_str());
    let served = compose_manager::serve(&log, model.actions_order, tampered)?;
    let mut report_data = [0u8; 64];
    let (head, tail) = report_data.split_at_mut(32);
    head.copy_from_slice(&served.actions_hash);
    tail.copy_from_slice(ctx.bound_nonce);
    let quote = quote(ctx, &part, report_data)?;
    Ok(json!({
        "actions": served.actions,
        "actions_hash": hexutil::lower(&served.actions_hash),
        "nonce": hexutil::lower(ctx.client_nonce),
        "nonce_source": "client",
        "quote": hexutil::lower(&quote),
        "event_log": part.td.event_log().to_string(),
        "report_data": hexutil::lower(&report_data),
        "vm_config": part.td.vm_config(part.gpus).to_string(),
    }))
}

/// `ohttp_key_config` and `ohttp_attestation` of the TD named `label` holding `keys`, when the
/// request asked for ed25519 keys (none otherwise). Under `ohttp-wrong-key` the signature is made
/// by a fresh key while `signing_key` still names the attested one.
fn ohttp_fields(
    ctx: &Ctx<'_>,
    keys: &NodeKeys,
    label: &str,
) -> Result<Vec<(&'static str, Value)>, String> {
    if ctx.algo != SigningAlgo::Ed25519 {
        return Ok(Vec::new());
    }
    let config = ohttp::key_config(label).map_err(|e| e.to_string())?;
    let fresh: Ed25519KeyPair;
    let signer = if ctx.has(Fault::OhttpWrongKey) {
        fresh = generate_ed25519().map_err(|e| e.to_string())?;
        &fresh
    } else {
        &keys.ed25519
    };
    Ok(vec![
        ("ohttp_key_config", Value::String(hexutil::lower(&config))),
        (
            "ohttp_attestation",
            ohttp::attestation(&config, &keys.ed25519_public, signer),
        ),
    ])
}

/// The OHTTP label of a model node: stable across starts, distinct per node.
fn node_label(ctx: &Ctx<'_>, index: usize) -> String {
    format!("{}/node-{index}", ctx.model.name)
}

/// The label of the NEAR gateway's OHTTP key.
const GATEWAY_LABEL: &str = "near-gateway";

/// NEAR AI through its gateway: the gateway CVM's CPU-only part bound to the served certificate;
/// every model node's part bound to its own internal certificate, with its compose manager and
/// OHTTP key; the served certificate; and the gateway's own OHTTP key.
pub(super) fn gateway_report(ctx: &Ctx<'_>) -> Result<Value, String> {
    let gateway_attestation = gateway_part(ctx, terminating_fingerprint(ctx)?)?;
    let models: Vec<Value> = (0..ctx.model.nodes.len())
        .map(|i| {
            let mut part = near_model_part(ctx, i, node_fingerprint(ctx, i)?)?;
            part.insert(
                "compose_manager_attestation".to_string(),
                compose_manager_attestation(ctx, i)?,
            );
            let node = ctx.model.nodes.get(i).ok_or("no such node")?;
            for (key, value) in ohttp_fields(ctx, &node.keys, &node_label(ctx, i))? {
                part.insert(key.to_string(), value);
            }
            Ok(Value::Object(part))
        })
        .collect::<Result<_, String>>()?;
    let mut top = Map::new();
    top.insert(
        "gateway_attestation".to_string(),
        Value::Object(gateway_attestation),
    );
    top.insert("model_attestations".to_string(), Value::Array(models));
    top.insert(
        "tls_certificate".to_string(),
        Value::String(ctx.state.tls_certificate_pem().to_string()),
    );
    for (key, value) in ohttp_fields(ctx, &ctx.state.gateway.keys, GATEWAY_LABEL)? {
        top.insert(key.to_string(), value);
    }
    Ok(Value::Object(top))
}

/// NEAR AI answered by the model node itself: its part at top level bound to the served
/// certificate, with its own compose manager's attestation, and every node's part when there are
/// several.
pub(super) fn direct_report(ctx: &Ctx<'_>) -> Result<Value, String> {
    let answering = ctx.model.next_node();
    let terminating = terminating_fingerprint(ctx)?;
    let parts: Vec<Map<String, Value>> = (0..ctx.model.nodes.len())
        .map(|i| {
            let fp = if i == answering {
                terminating
            } else {
                node_fingerprint(ctx, i)?
            };
            near_model_part(ctx, i, fp)
        })
        .collect::<Result<_, _>>()?;
    let mut top = parts.get(answering).cloned().ok_or("no answering node")?;
    top.insert(
        "compose_manager_attestation".to_string(),
        compose_manager_attestation(ctx, answering)?,
    );
    if parts.len() > 1 {
        top.insert(
            "all_attestations".to_string(),
            Value::Array(parts.into_iter().map(Value::Object).collect()),
        );
    }
    Ok(Value::Object(top))
}
