//! A test Rekor: a transparency log of `intoto` 0.0.2 entries in exactly the shape Sigstore's
//! production Rekor serves them (`GET /api/v1/log/entries/{uuid}`), with a real RFC 6962 Merkle
//! tree, an inclusion proof per entry, a checkpoint (signed note) over the tree head and a signed
//! entry timestamp (SET), all under a P-256 test key reached only through `dangerous_rekor_key`.
//!
//! The log is built once, whole, when the simulator starts: entries are immutable, so serving the
//! same bytes on every request is what a real log does. The index
//! (`POST /api/v1/index/retrieve`) maps each in-toto subject digest to its entries' uuids. Every
//! request is counted, so tests can show a second check with an unchanged compose asks nothing.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use serde_json::json;
use sha2::{Digest, Sha256};

use teewatch_verify::hexutil;
// The verifier's own encodings (leaf and node hashes, the SET payload, the checkpoint body, the
// log id), so that what the simulator signs and what the verifier checks cannot drift apart.
use teewatch_verify::provenance::{checkpoint_body, leaf_hash, log_id, node_hash, set_payload};

/// The log's tree id, prefixed to each leaf hash in an entry's 80-hex-digit uuid.
pub const TREE_ID: u64 = 0x7465_6577_6174_6368;
/// The checkpoint's origin name (production's is `rekor.sigstore.dev`).
pub const ORIGIN: &str = "rekor.teewatch-sim.test";

/// The DER prefix of a P-256 SubjectPublicKeyInfo, before the 65-byte uncompressed point.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// Why the log could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RekorSimError {
    #[error("the rekor test key cannot be generated or used")]
    Key,
}

/// One entry to log: its canonical body, when it was integrated, the attestation Rekor stores
/// beside it (the in-toto statement), the digests it is indexed under, and whether its served
/// inclusion proof is deliberately broken.
pub struct LogInput {
    pub body: String,
    pub integrated_time: i64,
    pub attestation: Option<Vec<u8>>,
    pub indexed_under: Vec<String>,
    pub break_proof: bool,
}

/// The built log.
pub struct RekorTestLog {
    public_key_pem: String,
    /// uuid (80 hex digits) to the entry's JSON as served.
    entries: BTreeMap<String, String>,
    index: BTreeMap<String, Vec<String>>,
    requests: AtomicUsize,
}

/// The largest power of two smaller than `n` (n ≥ 2).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// RFC 6962 §2.1: the Merkle tree hash of leaf hashes.
fn tree_hash(leaves: &[[u8; 32]]) -> [u8; 32] {
    match leaves {
        [] => Sha256::digest([]).into(),
        [one] => *one,
        _ => {
            let (left, right) = leaves.split_at(split(leaves.len()));
            node_hash(&tree_hash(left), &tree_hash(right))
        }
    }
}

/// RFC 6962 §2.1.1: the audit path of leaf `m`, from the leaf up.
fn audit_path(m: usize, leaves: &[[u8; 32]]) -> Vec<[u8; 32]> {
    if leaves.len() <= 1 {
        return Vec::new();
    }
    let k = split(leaves.len());
    let (left, right) = leaves.split_at(k);
    if m < k {
        let mut path = audit_path(m, left);
        path.push(tree_hash(right));
        path
    } else {
        let mut path = audit_path(m - k, right);
        path.push(tree_hash(left));
        path
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

impl RekorTestLog {
    /// Logs `inputs` in order (log index = position) under a fresh key.
    pub fn build(inputs: Vec<LogInput>) -> Result<RekorTestLog, RekorSimError> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
            .map_err(|_| RekorSimError::Key)?;
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref())
            .map_err(|_| RekorSimError::Key)?;
        let spki = [&P256_SPKI_PREFIX[..], key.public_key().as_ref()].concat();
        let log_id_bytes = log_id(&spki);
        let log_id = hexutil::lower(&log_id_bytes);
        let sign = |message: &[u8]| -> Result<Vec<u8>, RekorSimError> {
            key.sign(&rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| RekorSimError::Key)
        };

        let leaves: Vec<[u8; 32]> = inputs
            .iter()
            .map(|i| leaf_hash(i.body.as_bytes()))
            .collect();
        let root = tree_hash(&leaves);
        let tree_size = leaves.len();
        // The checkpoint: a signed note over origin, size and root; the signature line carries
        // the key hint (the first four bytes of SHA-256 of the key's DER SPKI).
        let note = checkpoint_body(&format!("{ORIGIN} - {TREE_ID}"), tree_size as u64, &root);
        let hint = log_id_bytes.get(..4).unwrap_or_default();
        let note_signature = [hint, &sign(note.as_bytes())?].concat();
        let checkpoint = format!("{note}\n\u{2014} {ORIGIN} {}\n", b64(&note_signature));

        let mut entries = BTreeMap::new();
        let mut index: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (log_index, (input, leaf)) in inputs.iter().zip(&leaves).enumerate() {
            let uuid = format!("{TREE_ID:016x}{}", hexutil::lower(leaf));
            let body = b64(input.body.as_bytes());
            // The SET: canonical JSON of {body, integratedTime, logID, logIndex}.
            let set = sign(&set_payload(
                &body,
                input.integrated_time,
                &log_id,
                log_index as i64,
            ))?;
            let mut hashes: Vec<String> = audit_path(log_index, &leaves)
                .iter()
                .map(|h| hexutil::lower(h))
                .collect();
            if input.break_proof {
                // One flipped nibble in the first sibling: the path no longer reaches the root.
                if let Some(first) = hashes.first_mut() {
                    let flipped = if first.starts_with('0') { "1" } else { "0" };
                    first.replace_range(..1, flipped);
                }
            }
            let mut entry = json!({
                "body": body,
                "integratedTime": input.integrated_time,
                "logID": log_id,
                "logIndex": log_index,
                "verification": {
                    "inclusionProof": {
                        "checkpoint": checkpoint,
                        "hashes": hashes,
                        "logIndex": log_index,
                        "rootHash": hexutil::lower(&root),
                        "treeSize": tree_size,
                    },
                    "signedEntryTimestamp": b64(&set),
                },
            });
            if let (Some(data), Some(fields)) = (&input.attestation, entry.as_object_mut()) {
                fields.insert("attestation".into(), json!({ "data": b64(data) }));
            }
            entries.insert(uuid.clone(), json!({ uuid.clone(): entry }).to_string());
            for digest in &input.indexed_under {
                index.entry(digest.clone()).or_default().push(uuid.clone());
            }
        }
        let public_key_pem = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            b64(&spki)
                .as_bytes()
                .chunks(64)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect::<Vec<_>>()
                .join("\n")
        );
        Ok(RekorTestLog {
            public_key_pem,
            entries,
            index,
            requests: AtomicUsize::new(0),
        })
    }

    /// The log's public key (`dangerous_rekor_key`).
    pub fn public_key_pem(&self) -> &str {
        &self.public_key_pem
    }

    /// `POST /api/v1/index/retrieve` for `{"hash": digest}`: the uuids, possibly none.
    pub fn retrieve(&self, digest: &str) -> Vec<String> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.index
            .get(&digest.to_ascii_lowercase())
            .cloned()
            .unwrap_or_default()
    }

    /// `GET /api/v1/log/entries/{uuid}`: the entry as served, by its 80- or 64-digit uuid.
    pub fn entry(&self, uuid: &str) -> Option<&str> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let uuid = uuid.to_ascii_lowercase();
        self.entries
            .get(&uuid)
            .or_else(|| {
                self.entries
                    .iter()
                    .find(|(k, _)| k.get(16..) == Some(uuid.as_str()))
                    .map(|(_, v)| v)
            })
            .map(String::as_str)
    }

    /// How many Rekor requests (index and entry) were answered since the start.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn every_audit_path_reaches_the_root_for_every_tree_size() {
        for size in 1..=13usize {
            let leaves: Vec<[u8; 32]> = (0..size).map(|i| leaf_hash(&[i as u8])).collect();
            let root = tree_hash(&leaves);
            for m in 0..size {
                let path = audit_path(m, &leaves);
                let found = teewatch_verify::provenance::root_from_inclusion_proof(
                    m as u64,
                    size as u64,
                    &leaves[m],
                    &path,
                )
                .unwrap();
                assert_eq!(found, root, "{m}/{size}");
            }
        }
    }

    #[test]
    fn an_entry_is_served_keyed_by_its_uuid_with_its_proof() {
        let log = RekorTestLog::build(vec![
            LogInput {
                body: "{\"a\":1}".into(),
                integrated_time: 1,
                attestation: None,
                indexed_under: vec!["sha256:aa".into()],
                break_proof: false,
            },
            LogInput {
                body: "{\"b\":2}".into(),
                integrated_time: 2,
                attestation: Some(b"x".to_vec()),
                indexed_under: vec![],
                break_proof: false,
            },
        ])
        .unwrap();
        let uuids = log.retrieve("sha256:aa");
        assert_eq!(uuids.len(), 1);
        let served: serde_json::Value =
            serde_json::from_str(log.entry(&uuids[0]).unwrap()).unwrap();
        let entry = &served[&uuids[0]];
        assert_eq!(entry["verification"]["inclusionProof"]["treeSize"], 2);
        assert_eq!(
            entry["verification"]["inclusionProof"]["hashes"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert!(
            entry["verification"]["inclusionProof"]["checkpoint"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{ORIGIN} - {TREE_ID}\n2\n"))
        );
        assert_eq!(log.requests(), 2);
    }
}
