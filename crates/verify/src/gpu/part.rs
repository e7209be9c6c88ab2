//! The GPU and NRAS checks of one attested part (a node, or a model behind a gateway).
//!
//! Steps, for a part whose format promises GPU evidence:
//! 10. read `nvidia_payload` (a JSON string or an object) and its `evidence_list`;
//! 11. per GPU (scope `…gpu:<i>`): `gpu_nonce` (the payload's and the SPDM request's nonce are
//!     this check's) and `gpu_evidence_signature` (P-384 signature by the leaf of a chain that
//!     reaches the pinned NVIDIA root), recording the measurements;
//! 12. `nras_token` for the part and `nras_result` per GPU, from the NRAS answer in the bundle.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

use super::certs;
use super::nras;
use super::spdm::SpdmEvidence;
use crate::bundle::{Bundle, json_kind};
use crate::checks::*;
use crate::hexutil;
use crate::policy::TrustAnchors;
use crate::verdict::{Outcome, Recorder, Source};

/// The scope of GPU `index` under a part's scope.
pub fn gpu_scope(part_scope: &str, index: usize) -> String {
    if part_scope.is_empty() {
        format!("gpu:{index}")
    } else {
        format!("{part_scope}/gpu:{index}")
    }
}

/// Start of the evidence window NanoGPT calls "NVIDIA MRENCLAVE".
const NVIDIA_MRENCLAVE_START: usize = 96;
/// Start of the evidence window NanoGPT calls "NVIDIA MRSIGNER".
const NVIDIA_MRSIGNER_START: usize = 160;

/// One GPU's evidence as found in the payload.
pub(super) struct GpuInput {
    pub(super) evidence: Result<Vec<u8>, String>,
    pub(super) chain_pem: Result<Vec<u8>, String>,
}

/// Reads a part's `nvidia_payload` field, which a format that promises GPU evidence must carry:
/// its nonce and the evidence of each GPU, or why there is none.
pub(super) fn read_part_payload(
    payload: Option<&Value>,
) -> Result<(Option<String>, Vec<GpuInput>), String> {
    match payload.filter(|p| !p.is_null()) {
        None => Err("the report carries no nvidia_payload".to_string()),
        Some(p) => read_payload(p),
    }
}

/// Reads `nvidia_payload`: its nonce and the evidence of each GPU.
fn read_payload(payload: &Value) -> Result<(Option<String>, Vec<GpuInput>), String> {
    let parsed;
    let payload = match payload {
        Value::String(text) => {
            parsed = serde_json::from_str::<Value>(text)
                .map_err(|e| format!("nvidia_payload is a string that is not json: {e}"))?;
            &parsed
        }
        other => other,
    };
    let Some(object) = payload.as_object() else {
        return Err(format!(
            "nvidia_payload: expected an object, found {}",
            json_kind(payload)
        ));
    };
    let nonce = object
        .get("nonce")
        .and_then(Value::as_str)
        .map(str::to_string);
    let list = match object.get("evidence_list") {
        Some(Value::Array(list)) if !list.is_empty() => list,
        Some(Value::Array(_)) => return Err("nvidia_payload.evidence_list is empty".into()),
        Some(other) => {
            return Err(format!(
                "nvidia_payload.evidence_list: expected a list, found {}",
                json_kind(other)
            ));
        }
        None => return Err("nvidia_payload has no evidence_list".into()),
    };
    let decode = |item: &Value, key: &str| -> Result<Vec<u8>, String> {
        let text = item
            .get(key)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("`{key}` missing or not a string"))?;
        STANDARD
            .decode(text.trim())
            .map_err(|e| format!("`{key}` is not base64: {e}"))
    };
    let gpus = list
        .iter()
        .map(|item| GpuInput {
            evidence: decode(item, "evidence"),
            chain_pem: decode(item, "certificate"),
        })
        .collect();
    Ok((nonce, gpus))
}

/// Finds the NRAS answer for a part: a single `{response, jwks}` applies when the answer has one
/// GPU-bearing part, whatever its scope (a NEAR gateway answer with one model, say); with several
/// each needs a list entry naming its `scope`, so that one part's answer is never judged for
/// another.
fn nras_for<'a>(
    bundle: &'a Bundle,
    scope: &str,
    gpu_parts: usize,
) -> Option<(&'a Value, &'a Value)> {
    let pick = |entry: &'a Value| Some((entry.get("response")?, entry.get("jwks")?));
    match bundle.nras.as_ref()? {
        Value::Array(list) => list
            .iter()
            .find(|e| e.get("scope").and_then(Value::as_str) == Some(scope))
            .and_then(pick),
        single @ Value::Object(_) if gpu_parts == 1 => pick(single),
        _ => None,
    }
}

/// Why NRAS has nothing to say, quoting the bundle's NRAS fetch errors when there are some.
fn no_nras_reason(bundle: &Bundle) -> String {
    let errors: Vec<String> = bundle
        .fetch_errors
        .iter()
        .filter(|e| e.endpoint == "nras" || e.endpoint == "jwks")
        .map(|e| format!("{} {}: {}", e.endpoint, e.kind, e.message))
        .collect();
    if errors.is_empty() {
        "no nras response in the bundle for this part".into()
    } else {
        format!("nras not reached ({})", errors.join("; "))
    }
}

/// Records the GPU and NRAS checks of one part.
pub fn verify_part_gpus(
    payload: Option<&Value>,
    scope: &str,
    gpu_parts: usize,
    bundle: &Bundle,
    anchors: &TrustAnchors,
    rec: &mut Recorder,
) {
    let nonce = bundle.nonce_bytes();
    let now = bundle.observed_at.timestamp();

    // 10. The payload and its evidence list: a format that promises GPU evidence must carry it.
    let (payload_nonce, gpus) = match read_part_payload(payload) {
        Ok(found) => found,
        Err(reason) => {
            rec.check(GPU_NONCE, scope, Outcome::Fail(reason.clone()));
            rec.check(GPU_EVIDENCE_SIGNATURE, scope, Outcome::Fail(reason));
            let why = format!("{GPU_EVIDENCE_SIGNATURE} failed: no gpu evidence");
            rec.check(NRAS_TOKEN, scope, Outcome::Unknown(why.clone()));
            rec.check(NRAS_RESULT, scope, Outcome::Unknown(why));
            return;
        }
    };

    // 11. Each GPU: nonce, signature and chain, measurements.
    let mut refs = Vec::new();
    for (index, gpu) in gpus.iter().enumerate() {
        let gscope = gpu_scope(scope, index);
        let parsed = gpu.evidence.clone().and_then(|bytes| {
            SpdmEvidence::parse(&bytes)
                .map(|p| (bytes, p))
                .map_err(|e| e.to_string())
        });
        rec.check(
            GPU_NONCE,
            &gscope,
            judge_nonce(payload_nonce.as_deref(), parsed.as_ref().ok(), &nonce),
        );
        let device = match (&parsed, &gpu.chain_pem) {
            (Ok((bytes, evidence)), Ok(chain)) => certs::verify_gpu_evidence(
                bytes,
                evidence,
                chain,
                &anchors.nvidia_device_root_der,
                now,
                &anchors.cache.gpu_chains,
            )
            .map_err(|e| e.to_string()),
            (Err(e), _) => Err(format!("evidence unreadable: {e}")),
            (_, Err(e)) => Err(format!("certificate chain unreadable: {e}")),
        };
        let signed = device.is_ok();
        rec.check(
            GPU_EVIDENCE_SIGNATURE,
            &gscope,
            match &device {
                Ok(d) => Outcome::Pass(format!(
                    "p-384 signature by the device key; chain of {} certificates reaches the pinned nvidia device identity root{}",
                    d.subjects.len(),
                    if d.fwid_compared { "; leaf fwid equals opaque field 20" } else { "" }
                )),
                Err(reason) => Outcome::Fail(reason.clone()),
            },
        );
        if let Ok((bytes, evidence)) = &parsed {
            observe_gpu(bytes, evidence, &gscope, signed, rec);
        }
        refs.push(nras::GpuRef {
            index,
            ueid: device.ok().map(|d| d.ueid),
        });
    }

    // 12. NRAS: its token for the whole part, its verdict per GPU.
    let Some((response, jwks)) = nras_for(bundle, scope, gpu_parts) else {
        let reason = no_nras_reason(bundle);
        rec.check(NRAS_TOKEN, scope, Outcome::Unknown(reason.clone()));
        for index in 0..gpus.len() {
            rec.check(
                NRAS_RESULT,
                &gpu_scope(scope, index),
                Outcome::Unknown(reason.clone()),
            );
        }
        return;
    };
    let inputs = nras::NrasInputs { response, jwks };
    let nras_anchors = nras::NrasAnchors {
        intermediates_der: &anchors.nras_intermediates_der,
        expected_iss: &anchors.nras_url,
    };
    match nras::verify_token(&inputs, &nras_anchors, &nonce, now, &refs) {
        Ok(verified) => {
            rec.check(
                NRAS_TOKEN,
                scope,
                Outcome::Pass(format!(
                    "es384 tokens signed by a key chaining to the pinned nras intermediate; nonce, issuer, times and {} submod digests match; gpus matched by {}",
                    verified.gpus.len(),
                    verified.matched_by.as_str()
                )),
            );
            for (index, outcome) in nras::judge_result(&verified) {
                rec.check(NRAS_RESULT, &gpu_scope(scope, index), outcome);
            }
        }
        Err(error) => {
            rec.check(NRAS_TOKEN, scope, Outcome::Fail(error.to_string()));
            for index in 0..gpus.len() {
                rec.check(
                    NRAS_RESULT,
                    &gpu_scope(scope, index),
                    Outcome::Unknown(format!("{NRAS_TOKEN} failed: its claims prove nothing")),
                );
            }
        }
    }
}

/// `gpu_nonce`: the payload's nonce and the SPDM request's nonce are this check's nonce.
fn judge_nonce(
    payload_nonce: Option<&str>,
    evidence: Option<&(Vec<u8>, SpdmEvidence)>,
    nonce: &[u8; 32],
) -> Outcome {
    let expected = hexutil::lower(nonce);
    let mut problems = Vec::new();
    match payload_nonce.map(|n| hexutil::decode(n).map(|b| hexutil::lower(&b))) {
        Some(Ok(found)) if found == expected => {}
        Some(Ok(found)) => problems.push(format!(
            "nvidia_payload.nonce: expected {expected}, found {found}"
        )),
        Some(Err(_)) | None => problems.push("nvidia_payload.nonce missing or not hex".to_string()),
    }
    match evidence {
        Some((_, e)) if e.request_nonce == *nonce => {}
        Some((_, e)) => problems.push(format!(
            "spdm request nonce: expected {expected}, found {}",
            hexutil::lower(&e.request_nonce)
        )),
        None => {
            problems.push("the evidence is unreadable, so its request nonce is unknown".to_string())
        }
    }
    if problems.is_empty() {
        Outcome::Pass("the payload and the signed spdm request carry this check's nonce".into())
    } else {
        Outcome::Fail(problems.join("; "))
    }
}

/// Records a GPU's measurements. They count as evidence only when the signature verified.
fn observe_gpu(
    bytes: &[u8],
    evidence: &SpdmEvidence,
    scope: &str,
    signed: bool,
    rec: &mut Recorder,
) {
    let source = if signed {
        Source::GpuEvidence
    } else {
        Source::Claim
    };
    for block in &evidence.blocks {
        rec.observe(
            scope,
            &format!("gpu_block_{}", block.index),
            hexutil::lower(&block.value),
            source,
        );
    }
    if let Some(v) = evidence.driver_version() {
        rec.observe(scope, "gpu_driver_version", v, source);
    }
    if let Some(v) = evidence.vbios_version() {
        rec.observe(scope, "gpu_vbios_version", v, source);
    }
    if let Some(v) = evidence.fwid() {
        rec.observe(scope, "gpu_fwid", hexutil::lower(v), source);
    }
    for (field, start) in [
        ("nvidia_mrenclave", NVIDIA_MRENCLAVE_START),
        ("nvidia_mrsigner", NVIDIA_MRSIGNER_START),
    ] {
        if let Some(window) = bytes.get(start..start + 32) {
            rec.observe(scope, field, hexutil::lower(window), source);
        }
    }
}
