//! The hash chain over stored checks: the canonical encoding of one check's record and its
//! SHA-256, the record hash. Each check's record includes the record hash of the check stored
//! before it for the same target, so changing, removing or reordering a stored check breaks a
//! link that `chain_verify.rs` finds.
//!
//! The encoding is a fixed domain tag followed by every field as an 8-byte big-endian length
//! and its bytes, in a fixed order: no field can run into the next, and two different records
//! never encode alike. Integers are written as 8-byte big-endian two's complement. Everything
//! here is pure; `write.rs` stores the hashes and `chain_verify.rs` recomputes them.

use sha2::{Digest, Sha256};

/// The first bytes of every encoded record; a new encoding gets a new tag.
const DOMAIN: &[u8] = b"teewatch check record v1";

/// The previous record hash of a target's first chained check.
pub(crate) const GENESIS: [u8; 32] = [0u8; 32];

/// The fields of one stored check that its record hash covers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecordFields<'a> {
    pub target: &'a str,
    pub check_id: i64,
    pub scheduled_at: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub state: &'a str,
    pub attestation_format: &'a str,
    /// SHA-256 of the stored verdict JSON.
    pub verdict_sha256: &'a [u8],
    /// SHA-256 of the stored bundle JSON.
    pub bundle_sha256: &'a [u8],
    /// The record hash of the target's previous check ([`GENESIS`] for the first).
    pub prev_hash: &'a [u8],
}

impl RecordFields<'_> {
    /// The canonical encoding of the record.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.target.len());
        out.extend_from_slice(DOMAIN);
        let mut field = |bytes: &[u8]| {
            out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
            out.extend_from_slice(bytes);
        };
        field(self.target.as_bytes());
        field(&self.check_id.to_be_bytes());
        field(&self.scheduled_at.to_be_bytes());
        field(&self.started_at.to_be_bytes());
        field(&self.finished_at.to_be_bytes());
        field(self.state.as_bytes());
        field(self.attestation_format.as_bytes());
        field(self.verdict_sha256);
        field(self.bundle_sha256);
        field(self.prev_hash);
        out
    }

    /// The record hash: SHA-256 of the canonical encoding.
    pub(crate) fn hash(&self) -> Vec<u8> {
        Sha256::digest(self.encode()).to_vec()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn fields<'a>(target: &'a str, state: &'a str, prev: &'a [u8]) -> RecordFields<'a> {
        RecordFields {
            target,
            check_id: 7,
            scheduled_at: 1,
            started_at: 2,
            finished_at: 3,
            state,
            attestation_format: "dstack",
            verdict_sha256: &[1; 32],
            bundle_sha256: &[2; 32],
            prev_hash: prev,
        }
    }

    #[test]
    fn every_field_and_the_previous_link_change_the_hash() {
        let base = fields("a", "pass", &GENESIS).hash();
        assert_eq!(base.len(), 32);
        assert_eq!(base, fields("a", "pass", &GENESIS).hash());
        assert_ne!(base, fields("a", "fail", &GENESIS).hash());
        assert_ne!(base, fields("b", "pass", &GENESIS).hash());
        assert_ne!(base, fields("a", "pass", &[9; 32]).hash());
        let mut other = fields("a", "pass", &GENESIS);
        other.check_id = 8;
        assert_ne!(base, other.hash());
        other = fields("a", "pass", &GENESIS);
        other.started_at = 5;
        assert_ne!(base, other.hash());
    }

    #[test]
    fn fields_cannot_run_into_each_other() {
        // "ab" + "c" and "a" + "bc" must not encode alike.
        let mut one = fields("ab", "c", &GENESIS);
        one.attestation_format = "";
        let mut two = fields("a", "bc", &GENESIS);
        two.attestation_format = "";
        assert_ne!(one.encode(), two.encode());
    }
}
