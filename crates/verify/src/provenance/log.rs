//! Steps 2–4 of [`super::verify_entry`], the transparency log's proofs: the signed entry
//! timestamp (Rekor's promise, ECDSA over the canonical JSON of the entry's body, time, log id
//! and index), the RFC 9162 inclusion proof from the entry's leaf to a root hash, and the
//! checkpoint (a signed note) that commits the log's key to that root and tree size.
//!
//! The hashing and payload functions are public so the simulator builds entries with exactly
//! the bytes this module checks.

use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::ProvenanceError;
use super::entry::Entry;
use super::trust::RekorKey;

/// A log's id: the SHA-256 of its public key's DER SubjectPublicKeyInfo.
pub fn log_id(spki_der: &[u8]) -> [u8; 32] {
    Sha256::digest(spki_der).into()
}

/// The bytes Rekor signs as an entry's signed entry timestamp: the RFC 8785 canonical JSON of
/// `{body, integratedTime, logID, logIndex}` (keys in that order, which is their sorted order;
/// `body` the base64 text Rekor serves, `logID` lowercase hex, the numbers as integers).
pub fn set_payload(
    body_b64: &str,
    integrated_time: i64,
    log_id_hex: &str,
    log_index: i64,
) -> Vec<u8> {
    // serde_json's string escaping is RFC 8785's for these ASCII values; the numbers are
    // integers, which both print the same way.
    format!(
        "{{\"body\":{},\"integratedTime\":{},\"logID\":{},\"logIndex\":{}}}",
        Value::from(body_b64),
        integrated_time,
        Value::from(log_id_hex),
        log_index
    )
    .into_bytes()
}

/// An RFC 9162 leaf hash: SHA-256(0x00 ‖ leaf).
pub fn leaf_hash(leaf: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(leaf);
    h.finalize().into()
}

/// An RFC 9162 interior node hash: SHA-256(0x01 ‖ left ‖ right).
pub fn node_hash(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root hash an inclusion proof leads to from `leaf` at `index` in a tree of `tree_size`
/// leaves (RFC 9162 §2.1.3.2), or why the proof cannot be one for that position: an index
/// outside the tree, or a path too long or too short for it.
pub fn root_from_inclusion_proof(
    index: u64,
    tree_size: u64,
    leaf: &[u8; 32],
    path: &[[u8; 32]],
) -> Result<[u8; 32], String> {
    if index >= tree_size {
        return Err(format!(
            "expected a leaf index below the tree size {tree_size}, found {index}"
        ));
    }
    let mut f_n = index;
    let mut s_n = tree_size - 1;
    let mut r = *leaf;
    for p in path {
        if s_n == 0 {
            return Err(format!(
                "expected a path of {} hashes for leaf {index} of {tree_size}, found {}",
                expected_path_len(index, tree_size),
                path.len()
            ));
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n != 0 {
        return Err(format!(
            "expected a path of {} hashes for leaf {index} of {tree_size}, found {}",
            expected_path_len(index, tree_size),
            path.len()
        ));
    }
    Ok(r)
}

/// How many hashes the audit path of leaf `index` in a tree of `tree_size` has (for messages):
/// the walk of [`root_from_inclusion_proof`] without the hashing.
fn expected_path_len(index: u64, tree_size: u64) -> u32 {
    let (mut f_n, mut s_n, mut n) = (index, tree_size.saturating_sub(1), 0);
    while s_n != 0 {
        n += 1;
        if f_n & 1 == 0 && f_n == s_n {
            while f_n & 1 == 0 && f_n != 0 {
                f_n >>= 1;
                s_n >>= 1;
            }
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    n
}

/// The signed text of a checkpoint: origin, tree size and base64 root hash, one per line.
pub fn checkpoint_body(origin: &str, tree_size: u64, root_hash: &[u8; 32]) -> String {
    format!("{origin}\n{tree_size}\n{}\n", STANDARD.encode(root_hash))
}

/// Step 3: the signed entry timestamp verifies with the log's key.
pub(crate) fn verify_set(entry: &Entry, key: &RekorKey) -> Result<(), ProvenanceError> {
    let payload = set_payload(
        &entry.body_b64,
        entry.integrated_time,
        &hex::encode(entry.log_id),
        entry.log_index,
    );
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &key.point)
        .verify(&payload, &entry.set)
        .map_err(|_| {
            ProvenanceError::SignedEntryTimestamp(format!(
                "expected a signature by rekor key {} over the entry's body, time, log id and index, found one that does not verify",
                hex::encode(key.log_id)
            ))
        })
}

/// Step 4: the entry's UUID is its leaf hash, the inclusion proof leads from that leaf to the
/// proof's root hash, and a checkpoint signed by the log's key names that root and tree size.
pub(crate) fn verify_inclusion(entry: &Entry, key: &RekorKey) -> Result<(), ProvenanceError> {
    let leaf = leaf_hash(&entry.body);
    let leaf_hex = hex::encode(leaf);
    // The UUID is the leaf hash, alone or after the 16-hex-digit id of the shard's tree.
    let uuid = entry.uuid.to_ascii_lowercase();
    let tree_id_ok =
        |id: &str| id.is_empty() || (id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()));
    match uuid.strip_suffix(&leaf_hex) {
        Some(tree_id) if tree_id_ok(tree_id) => {}
        _ => {
            return Err(ProvenanceError::InclusionProof(format!(
                "expected the entry's uuid to be its leaf hash {leaf_hex}, optionally after a 16-hex-digit tree id, found {}",
                entry.uuid
            )));
        }
    }
    let proof = &entry.proof;
    let root = root_from_inclusion_proof(proof.log_index, proof.tree_size, &leaf, &proof.hashes)
        .map_err(ProvenanceError::InclusionProof)?;
    if root != proof.root_hash {
        return Err(ProvenanceError::InclusionProof(format!(
            "expected the path to lead to root hash {}, found {}",
            hex::encode(proof.root_hash),
            hex::encode(root)
        )));
    }
    verify_checkpoint(&proof.checkpoint, key, proof.tree_size, &proof.root_hash)
}

/// The checkpoint is a signed note: a body (origin, tree size, base64 root hash, optional
/// further lines), a blank line, then signature lines `— <name> <base64(key hint ‖ sig)>`. The
/// key hint of a Sigstore ECDSA log is the first four bytes of its log id.
fn verify_checkpoint(
    text: &str,
    key: &RekorKey,
    tree_size: u64,
    root_hash: &[u8; 32],
) -> Result<(), ProvenanceError> {
    let err = |m: String| ProvenanceError::Checkpoint(m);
    let split = text.find("\n\n").ok_or_else(|| {
        err("expected a note body, a blank line and signatures, found no blank line".into())
    })?;
    let (body, rest) = text.split_at(split + 1);
    let signatures = rest.strip_prefix('\n').unwrap_or(rest);
    let mut lines = body.lines();
    let origin = lines.next().unwrap_or("");
    if origin.is_empty() {
        return Err(err("expected an origin line, found an empty one".into()));
    }
    let size_line = lines.next().unwrap_or("");
    let size: u64 = size_line.parse().map_err(|_| {
        err(format!(
            "expected a tree size on the second line, found {size_line:?}"
        ))
    })?;
    let root_line = lines.next().unwrap_or("");
    let root = STANDARD
        .decode(root_line)
        .ok()
        .and_then(|r| <[u8; 32]>::try_from(r).ok())
        .ok_or_else(|| {
            err(format!(
                "expected a base64 sha-256 root hash on the third line, found {root_line:?}"
            ))
        })?;

    let hint = key.log_id.get(..4).unwrap_or_default();
    let verifier = UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &key.point);
    let mut seen = Vec::new();
    let mut signed = false;
    for line in signatures.lines().filter(|l| !l.is_empty()) {
        let Some(rest) = line.strip_prefix("\u{2014} ") else {
            return Err(err(format!(
                "expected signature lines starting with an em dash, found {line:?}"
            )));
        };
        let Some((name, sig_b64)) = rest.rsplit_once(' ') else {
            return Err(err(format!(
                "expected \"— <name> <signature>\", found {line:?}"
            )));
        };
        let raw = STANDARD.decode(sig_b64).map_err(|_| {
            err(format!(
                "expected a base64 signature from {name}, found {sig_b64:?}"
            ))
        })?;
        let (line_hint, sig) = raw.split_at_checked(4).unwrap_or((&raw, &[]));
        if line_hint != hint {
            seen.push(format!("{name} ({})", hex::encode(line_hint)));
            continue;
        }
        if verifier.verify(body.as_bytes(), sig).is_err() {
            return Err(err(format!(
                "expected a signature by rekor key {} over the note, found one that does not verify",
                hex::encode(key.log_id)
            )));
        }
        signed = true;
    }
    if !signed {
        return Err(err(format!(
            "expected a signature with key hint {}, found {}",
            hex::encode(hint),
            if seen.is_empty() {
                "none".to_string()
            } else {
                seen.join(", ")
            }
        )));
    }
    if size != tree_size {
        return Err(err(format!(
            "expected the proof's tree size {tree_size}, found {size}"
        )));
    }
    if &root != root_hash {
        return Err(err(format!(
            "expected the proof's root hash {}, found {}",
            hex::encode(root_hash),
            hex::encode(root)
        )));
    }
    Ok(())
}
