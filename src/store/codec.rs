//! How the store keeps bundles and verdicts small: zstd with a per-target reference document as
//! a raw-content dictionary, and the rule that decides when that reference is renewed.
//!
//! Two checks of the same target share almost everything: the DCAP collateral, the certificate
//! chains (including the PCK chain inside every quote), the event log, the app compose, the JWKS,
//! most of the GPU evidence. Compressed against an earlier bundle of the same target, a new one
//! costs only what is actually new in it. The reference is a few earlier documents joined by
//! newlines (compact JSON never contains a raw newline, so the join is unambiguous) and stored
//! once, by content hash, in the `blobs` table. Each stored document depends on its reference
//! only, never on the previous check, so deleting any check or bundle never breaks another.
//!
//! Everything here is pure; `write.rs` and `read.rs` move the bytes in and out of SQLite.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::StoreError;

/// zstd level of the per-check payloads. Against a good reference, higher levels gained nothing
/// measurable on simulated bundles (1,267 bytes at level 3, 1,269 at level 19) and cost time.
const DELTA_LEVEL: i32 = 3;

/// zstd level of reference documents: they are written rarely and kept long.
const BLOB_LEVEL: i32 = 12;

/// A reference keeps at most this many documents ...
const MAX_REFERENCE_DOCS: usize = 4;

/// ... and at most this many bytes (always at least the newest document).
const MAX_REFERENCE_BYTES: usize = 1 << 20;

/// Below this many compressed bytes a document never renews the reference: the saving could not
/// pay for a new reference blob.
const ROTATE_FLOOR: usize = 1024;

/// A document compressed to more than this fraction of its size shows that the reference has
/// little in common with it (another platform, new collateral, a first check that failed).
const ROTATE_ABSOLUTE: f64 = 0.25;

/// No stored document is larger (bundles are capped far below by the 16 MiB fetch limit); a
/// larger recorded length is corruption, refused before anything is allocated for it.
const MAX_DOCUMENT_BYTES: usize = 256 << 20;

/// The SHA-256 of some bytes.
pub(crate) fn sha256(data: &[u8]) -> Vec<u8> {
    Sha256::digest(data).to_vec()
}

/// Compresses a document on its own (for reference blobs).
pub(crate) fn compress_alone(data: &[u8]) -> Result<Vec<u8>, StoreError> {
    zstd::bulk::compress(data, BLOB_LEVEL).map_err(StoreError::Compression)
}

/// Compresses a document against a reference.
///
/// The reference is given to zstd as a prefix rather than a dictionary: a raw-content
/// dictionary is decoded as exactly such a prefix (`decompress` reads both), but loading one
/// for compression first builds a prepared dictionary (CDict) and then copies its tables into
/// the context, on every check. Keeping prepared dictionaries between checks is no option:
/// zstd sizes one at about 470 KB for a 60 KB reference at level 3, so 1.8 GB for the two
/// references of each of 2,000 targets.
pub(crate) fn compress_with(reference: &[u8], data: &[u8]) -> Result<Vec<u8>, StoreError> {
    use zstd::zstd_safe::{CCtx, CParameter, compress_bound};
    let zstd_error = |code: usize| {
        StoreError::Compression(std::io::Error::other(zstd::zstd_safe::get_error_name(code)))
    };
    let mut cctx = CCtx::try_create().ok_or_else(|| {
        StoreError::Compression(std::io::Error::other("cannot allocate a zstd context"))
    })?;
    cctx.set_parameter(CParameter::CompressionLevel(DELTA_LEVEL))
        .map_err(zstd_error)?;
    cctx.ref_prefix(reference).map_err(zstd_error)?;
    let mut out = Vec::with_capacity(compress_bound(data.len()));
    cctx.compress2(&mut out, data).map_err(zstd_error)?;
    Ok(out)
}

/// Decompresses a document (against `reference`, empty for none) that must be `raw_len` bytes.
pub(crate) fn decompress(
    reference: &[u8],
    data: &[u8],
    raw_len: i64,
    what: &str,
) -> Result<Vec<u8>, StoreError> {
    let expected = usize::try_from(raw_len)
        .ok()
        .filter(|n| *n <= MAX_DOCUMENT_BYTES)
        .ok_or_else(|| StoreError::Corrupt(format!("{what}: impossible length {raw_len}")))?;
    let mut decompressor =
        zstd::bulk::Decompressor::with_dictionary(reference).map_err(StoreError::Compression)?;
    let out = decompressor
        .decompress(data, expected)
        .map_err(|e| StoreError::Corrupt(format!("{what}: cannot decompress: {e}")))?;
    if out.len() != expected {
        return Err(StoreError::Corrupt(format!(
            "{what}: {} bytes decompressed, {expected} expected",
            out.len()
        )));
    }
    Ok(out)
}

/// The reference that follows `old` once `doc` is added to it: the newest documents, oldest
/// first, within the count and byte limits. The newest document goes last because zstd reaches
/// the end of a dictionary with the shortest offsets.
pub(crate) fn extend_reference(old: Option<&[u8]>, doc: &[u8]) -> Vec<u8> {
    let mut docs: Vec<&[u8]> = old
        .map(|old| old.split(|b| *b == b'\n').collect())
        .unwrap_or_default();
    docs.push(doc);
    let mut kept: Vec<&[u8]> = Vec::new();
    let mut total = 0usize;
    for part in docs.iter().rev() {
        if kept.len() == MAX_REFERENCE_DOCS
            || (!kept.is_empty() && total + part.len() + 1 > MAX_REFERENCE_BYTES)
        {
            break;
        }
        total += part.len() + 1;
        kept.push(part);
    }
    kept.reverse();
    kept.join(&b'\n')
}

/// Whether a document that compressed to `compressed` bytes (from `raw` bytes) should renew the
/// reference, given the ratio of the previous document against the same reference.
///
/// Renewing costs one reference blob, about as much as compressing a document on its own, so it
/// happens only when the reference has clearly gone stale: the document is not small, and it
/// either compressed badly in absolute terms or noticeably worse than the previous one did. The
/// second test compares ratios, not sizes, so a run of tiny bundles (fetch failures) neither
/// triggers a renewal nor makes the next full bundle look expensive.
pub(crate) fn should_renew(compressed: usize, raw: usize, last_ratio: Option<f64>) -> bool {
    if compressed <= ROTATE_FLOOR || raw == 0 {
        return false;
    }
    let ratio = ratio(compressed, raw);
    ratio > ROTATE_ABSOLUTE || last_ratio.is_some_and(|last| ratio > 1.5 * last + 0.01)
}

/// compressed / raw, for `target_dicts.last_ratio`.
pub(crate) fn ratio(compressed: usize, raw: usize) -> f64 {
    if raw == 0 {
        return 1.0;
    }
    // Lengths are far below 2^52, so the conversions are exact.
    compressed as f64 / raw as f64
}

/// A time as stored: nanoseconds since the Unix epoch.
pub(crate) fn to_ns(at: DateTime<Utc>) -> Result<i64, StoreError> {
    at.timestamp_nanos_opt()
        .ok_or_else(|| StoreError::TimeOutOfRange(at.to_rfc3339()))
}

/// A stored time.
pub(crate) fn from_ns(ns: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(ns)
}

/// A count or index as an SQLite integer (they never come near 2^63).
pub(crate) fn int(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A duration as stored (nanoseconds), saturating: no phase lasts 292 years.
pub(crate) fn duration_ns(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn doc(seed: u8, len: usize) -> Vec<u8> {
        // Pseudo-random printable bytes without newlines: incompressible on their own.
        let mut x: u32 = u32::from(seed).wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                b'!' + (x % 90) as u8
            })
            .collect()
    }

    #[test]
    fn a_document_round_trips_against_its_reference_and_costs_only_its_changes() {
        let old = doc(1, 50_000);
        let mut new = old.clone();
        new[25_000..25_064].copy_from_slice(&doc(2, 64));
        let reference = extend_reference(None, &old);
        assert_eq!(reference, old);
        let delta = compress_with(&reference, &new).unwrap();
        assert!(delta.len() < 300, "{} bytes", delta.len());
        assert_eq!(
            decompress(&reference, &delta, new.len() as i64, "t").unwrap(),
            new
        );
        // The wrong length or the wrong reference is corruption, not garbage.
        assert!(decompress(&reference, &delta, new.len() as i64 + 1, "t").is_err());
        let alone = compress_alone(&new).unwrap();
        assert_eq!(decompress(&[], &alone, new.len() as i64, "t").unwrap(), new);
    }

    #[test]
    fn references_keep_the_newest_documents_within_their_limits() {
        let docs: Vec<Vec<u8>> = (0..6).map(|i| doc(i, 10)).collect();
        let mut reference: Option<Vec<u8>> = None;
        for d in &docs {
            reference = Some(extend_reference(reference.as_deref(), d));
        }
        let parts: Vec<&[u8]> = reference.as_ref().unwrap().split(|b| *b == b'\n').collect();
        let expected: Vec<&[u8]> = docs[2..].iter().map(Vec::as_slice).collect();
        assert_eq!(parts, expected);
        // A document larger than the byte limit is kept alone.
        let big = vec![b'x'; MAX_REFERENCE_BYTES + 10];
        assert_eq!(extend_reference(reference.as_deref(), &big), big);
    }

    #[test]
    fn the_reference_is_renewed_only_when_it_has_gone_stale() {
        // Small documents never renew it.
        assert!(!should_renew(900, 1_000, Some(0.01)));
        // A typical check, then one a little worse, does not.
        assert!(!should_renew(1_300, 60_000, None));
        assert!(!should_renew(1_500, 60_000, Some(1_300.0 / 60_000.0)));
        // Much worse than the last one (new JWKS certificates), or bad in absolute terms, does.
        assert!(should_renew(3_100, 60_000, Some(1_300.0 / 60_000.0)));
        assert!(should_renew(20_000, 60_000, None));
        // A full bundle after a failed fetch (tiny bundle, poor ratio) is not judged against it.
        assert!(!should_renew(1_300, 60_000, Some(200.0 / 500.0)));
    }

    #[test]
    fn times_round_trip_to_the_nanosecond() {
        let at = DateTime::parse_from_rfc3339("2026-03-01T12:34:56.123456789Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(from_ns(to_ns(at).unwrap()), at);
        let far = DateTime::parse_from_rfc3339("2300-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert!(to_ns(far).is_err());
    }
}
