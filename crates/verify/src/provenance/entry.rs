//! Step 1 of [`super::verify_entry`]: reading Rekor's answer to
//! `GET /api/v1/log/entries/{uuid}`, a JSON object with one key (the UUID) whose value holds
//! the base64 body, `integratedTime`, `logID` (hex), `logIndex`, an optional `attestation`
//! and `verification` (the signed entry timestamp and the inclusion proof with its checkpoint).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};

use super::ProvenanceError;

/// An entry's inclusion proof, as Rekor serves it.
#[derive(Debug, Clone)]
pub(crate) struct Proof {
    pub(crate) checkpoint: String,
    pub(crate) hashes: Vec<[u8; 32]>,
    /// The leaf's index in the tree (shard) the proof is for, not the entry's global index.
    pub(crate) log_index: u64,
    pub(crate) root_hash: [u8; 32],
    pub(crate) tree_size: u64,
}

/// A parsed Rekor entry.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) uuid: String,
    /// The body as served (base64): the signed entry timestamp covers this text.
    pub(crate) body_b64: String,
    /// The canonicalized body, the log's leaf.
    pub(crate) body: Vec<u8>,
    pub(crate) integrated_time: i64,
    pub(crate) log_id: [u8; 32],
    pub(crate) log_index: i64,
    pub(crate) set: Vec<u8>,
    pub(crate) proof: Proof,
    /// `attestation.data`, decoded, where Rekor stored the payload (intoto entries).
    pub(crate) attestation: Option<Vec<u8>>,
}

fn err(m: String) -> ProvenanceError {
    ProvenanceError::Entry(m)
}

fn field<'a>(
    obj: &'a Map<String, Value>,
    name: &str,
    within: &str,
) -> Result<&'a Value, ProvenanceError> {
    obj.get(name)
        .ok_or_else(|| err(format!("expected {name} in {within}, found none")))
}

fn string<'a>(
    obj: &'a Map<String, Value>,
    name: &str,
    within: &str,
) -> Result<&'a str, ProvenanceError> {
    let v = field(obj, name, within)?;
    v.as_str().ok_or_else(|| {
        err(format!(
            "expected {name} in {within} to be a string, found {v}"
        ))
    })
}

fn integer(obj: &Map<String, Value>, name: &str, within: &str) -> Result<i64, ProvenanceError> {
    let v = field(obj, name, within)?;
    v.as_i64().filter(|n| *n >= 0).ok_or_else(|| {
        err(format!(
            "expected {name} in {within} to be a non-negative integer, found {v}"
        ))
    })
}

fn object<'a>(
    obj: &'a Map<String, Value>,
    name: &str,
    within: &str,
) -> Result<&'a Map<String, Value>, ProvenanceError> {
    let v = field(obj, name, within)?;
    v.as_object().ok_or_else(|| {
        err(format!(
            "expected {name} in {within} to be an object, found {v}"
        ))
    })
}

fn base64(text: &str, what: &str) -> Result<Vec<u8>, ProvenanceError> {
    STANDARD
        .decode(text)
        .map_err(|e| err(format!("expected base64 {what}, found {e}")))
}

fn hash32(text: &str, what: &str) -> Result<[u8; 32], ProvenanceError> {
    hex::decode(text)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| err(format!("expected {what} as 64 hex digits, found {text:?}")))
}

/// Reads one entry; an answer with no entry or several is refused (the caller asked for one
/// UUID).
pub(crate) fn parse(entry_json: &str) -> Result<Entry, ProvenanceError> {
    let root: Value =
        serde_json::from_str(entry_json).map_err(|e| err(format!("expected json, found {e}")))?;
    let Value::Object(map) = root else {
        return Err(err(format!(
            "expected an object keyed by uuid, found {root}"
        )));
    };
    let mut entries = map.iter();
    let (uuid, value) = match (entries.next(), entries.next()) {
        (Some(one), None) => one,
        _ => {
            return Err(err(format!(
                "expected one entry keyed by its uuid, found {}",
                map.len()
            )));
        }
    };
    let obj = value.as_object().ok_or_else(|| {
        err(format!(
            "expected entry {uuid} to be an object, found {value}"
        ))
    })?;
    let body_b64 = string(obj, "body", "the entry")?;
    let body = base64(body_b64, "body")?;
    let integrated_time = integer(obj, "integratedTime", "the entry")?;
    let log_id = hash32(string(obj, "logID", "the entry")?, "logID")?;
    let log_index = integer(obj, "logIndex", "the entry")?;
    let verification = object(obj, "verification", "the entry")?;
    let set = base64(
        string(verification, "signedEntryTimestamp", "verification")?,
        "signedEntryTimestamp",
    )?;
    let proof = object(verification, "inclusionProof", "verification")?;
    let hashes = field(proof, "hashes", "inclusionProof")?
        .as_array()
        .ok_or_else(|| {
            err("expected inclusionProof.hashes to be an array, found another type".into())
        })?
        .iter()
        .map(|h| {
            h.as_str()
                .ok_or_else(|| {
                    err(format!(
                        "expected inclusionProof.hashes to hold strings, found {h}"
                    ))
                })
                .and_then(|s| hash32(s, "an inclusion proof hash"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let proof = Proof {
        checkpoint: string(proof, "checkpoint", "inclusionProof")?.to_string(),
        hashes,
        log_index: integer(proof, "logIndex", "inclusionProof")?.unsigned_abs(),
        root_hash: hash32(string(proof, "rootHash", "inclusionProof")?, "rootHash")?,
        tree_size: integer(proof, "treeSize", "inclusionProof")?.unsigned_abs(),
    };
    let attestation = match obj.get("attestation").and_then(Value::as_object) {
        Some(a) => match a.get("data").and_then(Value::as_str) {
            Some(data) => Some(base64(data, "attestation.data")?),
            None => None,
        },
        None => None,
    };
    Ok(Entry {
        uuid: uuid.clone(),
        body_b64: body_b64.to_string(),
        body,
        integrated_time,
        log_id,
        log_index,
        set,
        proof,
        attestation,
    })
}
