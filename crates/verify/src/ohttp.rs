//! `ohttp_key_binding`: whether the OHTTP key a NEAR AI part publishes was signed by that part's
//! attested key.
//!
//! NEAR AI answers carry an OHTTP (end-to-end encryption) key configuration, `ohttp_key_config`,
//! that clients encrypt their prompts to, and beside it `ohttp_attestation = {signing_algo:
//! "ed25519", signing_key, key_config, signature}`. The gateway's two members sit at the top level
//! of the answer; each entry of `model_attestations` carries its own. The binding holds when the
//! signing key is the part's `signing_address`, which its quote binds through REPORTDATA
//! (`report_data_binding` passed in the same scope), the ed25519 signature over the raw
//! `key_config` bytes verifies under it, and `key_config` is the sibling `ohttp_key_config`. A
//! part without `ohttp_attestation` gets no check; a defect in what is there is a `fail`
//! whatever the binding said, and only an otherwise sound binding to a key whose
//! `report_data_binding` did not pass is `unknown`. Pure: it reads the response and the checks
//! recorded so far.

use aws_lc_rs::signature::{ED25519, UnparsedPublicKey};
use serde_json::{Map, Value};

use super::checks::{OHTTP_KEY_BINDING, REPORT_DATA_BINDING};
use super::hexutil;
use super::report::{GATEWAY_SCOPE, Part, PartRole};
use super::verdict::{Check, Outcome, Recorder, State};

/// The member holding the signed statement.
const ATTESTATION: &str = "ohttp_attestation";
/// The member holding the key configuration clients encrypt to.
const KEY_CONFIG: &str = "ohttp_key_config";
/// Bytes of an ed25519 public key and of an ed25519 signature.
const KEY_LEN: usize = 32;
const SIGNATURE_LEN: usize = 64;
/// Longer values are shortened in reasons (an OHTTP key configuration is about 40 bytes).
const SHOWN_BYTES: usize = 256;

/// Records `ohttp_key_binding` for every part that carries an `ohttp_attestation`, in part
/// order: the gateway's from the top level of `attestation`, every other part's from its own
/// fields. A top-level `ohttp_attestation` in a NEAR gateway answer without a gateway part
/// fails with scope `gateway`: no attested key could have published it.
pub fn judge(attestation: &Value, parts: &[Part<'_>], rec: &mut Recorder) {
    let top = attestation.as_object();
    let near_gateway = parts
        .iter()
        .any(|p| matches!(p.role, PartRole::Gateway | PartRole::Model));
    let has_gateway = parts.iter().any(|p| p.role == PartRole::Gateway);
    if near_gateway && !has_gateway && top.and_then(|t| present(t, ATTESTATION)).is_some() {
        rec.check(
            OHTTP_KEY_BINDING,
            GATEWAY_SCOPE,
            Outcome::Fail(format!(
                "{ATTESTATION} at the top level belongs to the gateway, and the answer has no gateway_attestation whose key could have signed it"
            )),
        );
    }
    for part in parts {
        let members = if part.role == PartRole::Gateway {
            top
        } else {
            Some(part.fields)
        };
        let Some(members) = members else {
            continue;
        };
        let Some(statement) = present(members, ATTESTATION) else {
            continue;
        };
        let outcome = judge_part(part, statement, members.get(KEY_CONFIG), &rec.checks);
        rec.check(OHTTP_KEY_BINDING, &part.scope, outcome);
    }
}

/// A member that is there and not `null`.
fn present<'a>(members: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    members.get(name).filter(|v| !v.is_null())
}

/// One part's binding, given its `ohttp_attestation` and the sibling `ohttp_key_config`.
fn judge_part(
    part: &Part<'_>,
    statement: &Value,
    sibling: Option<&Value>,
    checks: &[Check],
) -> Outcome {
    let scope = scope_name(&part.scope);
    // The key the quote binds, if the part names a readable one; without it the binding
    // cannot have passed, which the `unknown` below reports.
    let attested = part
        .str_field("signing_address")
        .and_then(|text| hexutil::decode(text).ok());
    let key = match verify_statement(statement, sibling, attested.as_deref(), scope) {
        Ok(key) => key,
        Err(reason) => return Outcome::Fail(reason),
    };
    let bound = checks
        .iter()
        .any(|c| c.name == REPORT_DATA_BINDING && c.scope == part.scope && c.state == State::Pass);
    if !bound || attested.is_none() {
        return Outcome::Unknown(format!(
            "{REPORT_DATA_BINDING} of {scope} did not pass, so its key is not attested"
        ));
    }
    Outcome::Pass(format!(
        "ohttp key_config {} is signed (ed25519) by the attested key {} of {scope} and equals the sibling {KEY_CONFIG}",
        shown(&key.config),
        hexutil::lower(&key.signing_key)
    ))
}

/// What a sound statement establishes.
struct Signed {
    signing_key: Vec<u8>,
    config: Vec<u8>,
}

/// Every rule except the binding of the part's key, in order: the members' shapes, the signing
/// key against the attested one (when the part names one), the signature, the sibling.
fn verify_statement(
    statement: &Value,
    sibling: Option<&Value>,
    attested: Option<&[u8]>,
    scope: &str,
) -> Result<Signed, String> {
    let Value::Object(members) = statement else {
        return Err(format!(
            "{ATTESTATION}: expected an object, found {}",
            kind(Some(statement))
        ));
    };
    match members.get("signing_algo") {
        Some(Value::String(algo)) if algo == "ed25519" => {}
        Some(Value::String(algo)) => {
            return Err(format!(
                "ohttp signing_algo: expected \"ed25519\", found {}",
                quoted(algo)
            ));
        }
        other => {
            return Err(format!(
                "ohttp signing_algo: expected \"ed25519\", found {}",
                kind(other)
            ));
        }
    }
    let signing_key = hex_member("ohttp signing_key", members.get("signing_key"))?;
    if signing_key.len() != KEY_LEN {
        return Err(format!(
            "ohttp signing_key: expected {KEY_LEN} bytes, found {} bytes",
            signing_key.len()
        ));
    }
    let config = hex_member("ohttp key_config", members.get("key_config"))?;
    if config.is_empty() {
        return Err("ohttp key_config: expected at least 1 byte, found 0 bytes".to_string());
    }
    let signature = hex_member("ohttp signature", members.get("signature"))?;
    if signature.len() != SIGNATURE_LEN {
        return Err(format!(
            "ohttp signature: expected {SIGNATURE_LEN} bytes, found {} bytes",
            signature.len()
        ));
    }
    let sibling = hex_member(KEY_CONFIG, sibling)?;

    if let Some(attested) = attested.filter(|a| *a != signing_key.as_slice()) {
        return Err(format!(
            "ohttp signing_key: expected the attested key {} of {scope}, found {}",
            hexutil::lower(attested),
            hexutil::lower(&signing_key)
        ));
    }
    if UnparsedPublicKey::new(&ED25519, &signing_key)
        .verify(&config, &signature)
        .is_err()
    {
        return Err(format!(
            "ohttp signature over key_config does not verify under {}",
            hexutil::lower(&signing_key)
        ));
    }
    if sibling != config {
        return Err(format!(
            "ohttp key_config: expected the sibling {KEY_CONFIG} {}, found {}",
            shown(&sibling),
            shown(&config)
        ));
    }
    Ok(Signed {
        signing_key,
        config,
    })
}

/// A member that must be a hex string (optional `0x`, either case).
fn hex_member(name: &str, value: Option<&Value>) -> Result<Vec<u8>, String> {
    match value {
        Some(Value::String(text)) => {
            hexutil::decode(text).map_err(|e| format!("{name} is not hex: {e}"))
        }
        other => Err(format!(
            "{name}: expected a hex string, found {}",
            kind(other)
        )),
    }
}

/// What a JSON member is, for reasons.
fn kind(value: Option<&Value>) -> &'static str {
    match value {
        None => "none",
        Some(Value::Null) => "null",
        Some(Value::Bool(_)) => "a boolean",
        Some(Value::Number(_)) => "a number",
        Some(Value::String(_)) => "a string",
        Some(Value::Array(_)) => "an array",
        Some(Value::Object(_)) => "an object",
    }
}

/// A provider's string in a reason, quoted and cut at 64 characters.
fn quoted(text: &str) -> String {
    let cut: String = text.chars().take(64).collect();
    if cut.len() < text.len() {
        format!("{cut:?}…")
    } else {
        format!("{cut:?}")
    }
}

/// Bytes as lowercase hex, the first 32 bytes and the length when longer than `SHOWN_BYTES`.
fn shown(bytes: &[u8]) -> String {
    if bytes.len() <= SHOWN_BYTES {
        return hexutil::lower(bytes);
    }
    format!(
        "{}… ({} bytes)",
        hexutil::lower(bytes.get(..32).unwrap_or(bytes)),
        bytes.len()
    )
}

/// The scope as reasons name it (a single dstack node has the empty scope).
fn scope_name(scope: &str) -> &str {
    if scope.is_empty() { "the node" } else { scope }
}

#[cfg(test)]
#[path = "ohttp_tests.rs"]
mod tests;
