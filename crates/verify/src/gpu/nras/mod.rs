//! Verification of the detached EAT that NVIDIA's Remote Attestation Service (NRAS) returns for
//! GPU evidence, and the judgement of the claims it carries.
//!
//! An NRAS answer is `[["JWT", <overall token>], {"GPU-0": <token>, …}]`: one ES384 JWT with the
//! overall result, the caller's nonce and a SHA-256 digest of every per-GPU token, plus the per-GPU
//! tokens themselves. `verify_token` proves the answer came from NRAS for this nonce and ties every
//! GPU token to one GPU of the evidence; `judge_result` then reads what NRAS concluded. Both are
//! pure: the JWKS, the pinned intermediates and the instant to judge at are all inputs, and
//! nothing here fetches, reads a clock or keeps state. A JWKS is only as trustworthy as the
//! channel it came over, so no key is believed because it arrives: each one must carry a leaf
//! certificate that a pinned NRAS intermediate signed.
//!
//! The steps live in submodules: `jws` reads the response and its compact tokens (steps 1, 2
//! and 4), `keys` proves each signing key through a pinned intermediate (step 3), `claims`
//! checks what the tokens say and judges NRAS's verdict (steps 5 to 7, `judge_result`), and
//! `error` holds `NrasError`. This module runs the steps in order and holds the public types.

mod claims;
mod error;
mod jws;
mod keys;

use serde_json::{Map, Value};

pub use claims::{judge_gpu_claims, judge_result};
pub use error::NrasError;

use claims::{check_submods, check_time_and_identity, match_gpus};
use jws::{check_header, decode_jws, read_response, verify_signature};
use keys::{parse_anchors, resolve_key};

/// The `iss` of production NRAS tokens: the service's base URL.
pub const NRAS_ISSUER: &str = "https://nras.attestation.nvidia.com";

/// How far in the future `nbf` and `iat` may lie, in seconds. NRAS is asked after the provider's
/// report arrived, and `now` is that arrival, so a genuine token is usually a little newer than
/// the instant it is judged at.
pub const FUTURE_SKEW_SECONDS: i64 = 300;

/// The label errors use for the overall token.
const OVERALL: &str = "overall";

/// One GPU of the evidence, in evidence order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuRef {
    /// The GPU's position in the evidence list.
    pub index: usize,
    /// The decimal serial number of the GPU's leaf device certificate, which NRAS reports as the
    /// token's `ueid`; `None` when the caller could not read it.
    pub ueid: Option<String>,
}

/// What NRAS sent: its response and the JWKS its keys were read from.
#[derive(Debug, Clone, Copy)]
pub struct NrasInputs<'a> {
    /// The detached EAT, as a JSON value or a JSON string holding it.
    pub response: &'a Value,
    /// The JWKS (`{"keys": [...]}`) fetched from NRAS.
    pub jwks: &'a Value,
}

/// What the verifier trusts: the NRAS intermediates and the issuer tokens must name.
#[derive(Debug, Clone, Copy)]
pub struct NrasAnchors<'a> {
    /// DER certificates of the pinned NRAS intermediates that may sign the JWKS leaves.
    pub intermediates_der: &'a [Vec<u8>],
    /// The exact `iss` every token must carry, normally [`NRAS_ISSUER`].
    pub expected_iss: &'a str,
}

/// How GPU tokens were tied to the GPUs of the evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchRule {
    /// By each token's `ueid`, the serial number of the GPU's device certificate.
    Ueid,
    /// By position: `GPU-0` is the first GPU of the evidence, and so on.
    Order,
}

impl MatchRule {
    /// The rule's stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            MatchRule::Ueid => "ueid",
            MatchRule::Order => "order",
        }
    }
}

/// A verified NRAS answer: the overall claims and every GPU's claims, tied to the evidence.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedNras {
    /// The overall token's claims.
    pub overall: Map<String, Value>,
    /// One entry per GPU, sorted by evidence index.
    pub gpus: Vec<MatchedGpu>,
    /// How the GPU tokens were matched to the evidence.
    pub matched_by: MatchRule,
}

/// One GPU token tied to one GPU of the evidence.
#[derive(Debug, Clone, PartialEq)]
pub struct MatchedGpu {
    /// The `GpuRef::index` of the GPU this token speaks for.
    pub evidence_index: usize,
    /// The submod name, such as `GPU-0`.
    pub submod: String,
    /// The token's claims.
    pub claims: Map<String, Value>,
}

/// An NRAS answer decoded without any verification, for vectors whose JWKS is lost.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedNras {
    /// The overall token's claims.
    pub overall: Map<String, Value>,
    /// Each GPU token's submod name and claims, in the response's order.
    pub gpus: Vec<(String, Map<String, Value>)>,
}

/// A JWKS key that passed every check: its kid and its P-384 point (0x04‖x‖y).
struct TrustedKey {
    kid: String,
    point: Vec<u8>,
}

/// Verifies an NRAS answer for `nonce` at `now` (unix seconds) and ties its GPU tokens to `gpus`.
pub fn verify_token(
    inputs: &NrasInputs,
    anchors: &NrasAnchors,
    nonce: &[u8; 32],
    now: i64,
    gpus: &[GpuRef],
) -> Result<VerifiedNras, NrasError> {
    // 1. The response's shape: one overall token and a map of GPU tokens.
    let (overall_compact, gpu_compacts) = read_response(inputs.response)?;

    // 2. Every token splits and decodes, is ES384 and names its key.
    let overall = decode_jws(OVERALL, &overall_compact)?;
    let mut tokens = Vec::with_capacity(gpu_compacts.len());
    for (submod, compact) in &gpu_compacts {
        tokens.push(decode_jws(submod, compact)?);
    }
    let mut kids = Vec::with_capacity(tokens.len() + 1);
    for token in std::iter::once(&overall).chain(tokens.iter()) {
        kids.push(check_header(token)?);
    }

    // 3. Each kid resolves to a JWKS key whose leaf certificate a pinned intermediate signed,
    //    which is valid now and whose key the JWK repeats.
    let pinned = parse_anchors(anchors.intermediates_der)?;
    let mut keys: Vec<TrustedKey> = Vec::new();
    for (token, kid) in std::iter::once(&overall).chain(tokens.iter()).zip(&kids) {
        if !keys.iter().any(|k| &k.kid == kid) {
            let point = resolve_key(&token.label, kid, inputs.jwks, &pinned, now)?;
            keys.push(TrustedKey {
                kid: kid.clone(),
                point,
            });
        }
    }

    // 4. Every token's signature verifies with its key.
    for (token, kid) in std::iter::once(&overall).chain(tokens.iter()).zip(&kids) {
        // Step 3 resolved every kid; were one missing, the empty key would fail verification.
        let point = keys
            .iter()
            .find(|k| &k.kid == kid)
            .map(|k| k.point.as_slice())
            .unwrap_or_default();
        verify_signature(token, kid, point)?;
    }

    // 5. The claims: issuer, validity window and nonce, required in the overall token and
    //    checked in the GPU tokens wherever they repeat them.
    let nonce_hex = hex::encode(nonce);
    check_time_and_identity(&overall, anchors.expected_iss, &nonce_hex, now, true)?;
    for token in &tokens {
        check_time_and_identity(token, anchors.expected_iss, &nonce_hex, now, false)?;
    }

    // 6. The overall token vouches for exactly the GPU tokens sent, one per GPU of the evidence.
    check_submods(&overall, &tokens, gpus.len())?;

    // 7. Each GPU token belongs to one GPU of the evidence.
    let (assignment, matched_by) = match_gpus(&tokens, gpus)?;
    let mut matched: Vec<MatchedGpu> = tokens
        .into_iter()
        .zip(assignment)
        .map(|(token, evidence_index)| MatchedGpu {
            evidence_index,
            submod: token.label,
            claims: token.claims,
        })
        .collect();
    matched.sort_by_key(|g| g.evidence_index);

    Ok(VerifiedNras {
        overall: overall.claims,
        gpus: matched,
        matched_by,
    })
}

/// Decodes an NRAS answer's structure and claims without checking any signature or claim.
pub fn decode_unverified(response: &Value) -> Result<DecodedNras, NrasError> {
    let (overall_compact, gpu_compacts) = read_response(response)?;
    let overall = decode_jws(OVERALL, &overall_compact)?;
    let mut gpus = Vec::with_capacity(gpu_compacts.len());
    for (submod, compact) in &gpu_compacts {
        let token = decode_jws(submod, compact)?;
        gpus.push((token.label, token.claims));
    }
    Ok(DecodedNras {
        overall: overall.claims,
        gpus,
    })
}

/// A JSON value for a message: compact JSON, shortened when long, or `missing`.
fn describe(value: Option<&Value>) -> String {
    const LIMIT: usize = 120;
    let Some(value) = value else {
        return "missing".to_string();
    };
    let text = value.to_string();
    if text.chars().count() <= LIMIT {
        text
    } else {
        let short: String = text.chars().take(LIMIT).collect();
        format!("{short}…")
    }
}

/// The JSON type of a value, for shape errors.
fn kind(value: &Value) -> String {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
    .to_string()
}

/// Unix seconds as RFC 3339 UTC, falling back to the number when out of range.
fn time_text(seconds: i64) -> String {
    chrono::DateTime::from_timestamp(seconds, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| seconds.to_string())
}
