//! The Rekor client for `image_provenance`: per image digest, the uuids Rekor's index lists
//! (`POST /api/v1/index/retrieve` with `{"hash":"sha256:…"}`) and each entry as served
//! (`GET /api/v1/log/entries/{uuid}`), plus, when an entry comes without its signed payload
//! (`dsse`, `hashedrekord`), the candidate payloads GitHub's attestations API publishes for the
//! digest (`attestations.rs`); all kept in the bundle's `rekor` so `verify` re-derives the
//! result offline.
//!
//! The index is an unsigned lookup: nothing here trusts it. The verifier proves each entry (its
//! signed timestamp, inclusion proof and binding to the digest); a lying index can only hide an
//! entry, which makes the image `unknown` (or fail, when provenance is required), never pass.
//!
//! Answers are cached in memory by Rekor URL, payload source and digest: an entry and its
//! payload are immutable, so a check makes no Rekor or GitHub call unless the compose changed.
//! "No entry yet" and "no payload yet" can change (an image may be signed or its attestation
//! published later), so they are kept for [`NO_ENTRY_TTL`] only; failures are not kept. The cache does not
//! persist across restarts: the first check after a start asks Rekor again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::http::{Endpoint, ErrorKind, FetchError, Http};
use crate::verify::image_provenance::{
    self, MAX_ENTRIES_PER_DIGEST, PayloadLookup, ProvenancePolicy, RekorLookup,
};

/// How long an empty index answer is reused before Rekor is asked again.
pub const NO_ENTRY_TTL: Duration = Duration::from_secs(3600);

/// Answers by `(rekor_url, digest)`.
#[derive(Debug, Default)]
pub struct RekorCache {
    answers: Mutex<HashMap<(String, String), (RekorLookup, Instant)>>,
}

impl RekorCache {
    fn get(&self, rekor_url: &str, digest: &str) -> Option<RekorLookup> {
        let answers = self.answers.lock().ok()?;
        let (lookup, at) = answers.get(&(rekor_url.to_string(), digest.to_string()))?;
        let complete = !lookup.entries.is_empty()
            && lookup
                .payloads
                .as_ref()
                .is_none_or(|p| !p.payloads.is_empty());
        let fresh = complete || at.elapsed() < NO_ENTRY_TTL;
        fresh.then(|| lookup.clone())
    }

    fn put(&self, rekor_url: &str, lookup: &RekorLookup) {
        if let Ok(mut answers) = self.answers.lock() {
            answers.insert(
                (rekor_url.to_string(), lookup.digest.clone()),
                (lookup.clone(), Instant::now()),
            );
        }
    }

    /// How many digests are cached (for tests and the status page).
    pub fn len(&self) -> usize {
        self.answers.lock().map(|a| a.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The Rekor answers for `images` (each `(repository, sha256:<hex>)`), from the cache or
/// Rekor, with the payloads of entries Rekor serves without one; a digest whose Rekor lookup
/// failed is left out and its error added to `errors` (a failed payload look-up is recorded in
/// the answer and in `errors`, and not cached).
pub async fn lookups(
    http: &Http,
    cache: &RekorCache,
    policy: &ProvenancePolicy,
    images: &[(String, String)],
    errors: &mut Vec<FetchError>,
) -> Vec<RekorLookup> {
    let base = policy.rekor_url.trim_end_matches('/');
    let mut out = Vec::with_capacity(images.len());
    for (repository, digest) in images {
        let source = policy.attestations_base(repository);
        // The cache key names both sources: another payload source is another answer.
        let key = format!("{base} {}", source.as_deref().unwrap_or("-"));
        if let Some(cached) = cache.get(&key, digest) {
            out.push(cached);
            continue;
        }
        let mut answer = match lookup(http, base, digest).await {
            Ok(answer) => answer,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let mut failed = false;
        if answer
            .entries
            .iter()
            .any(|e| image_provenance::entry_needs_payload(e))
        {
            answer.payloads = Some(match &source {
                None => PayloadLookup {
                    looked_up: Vec::new(),
                    payloads: Vec::new(),
                    error: None,
                },
                Some(source) => {
                    match super::attestations::payloads(http, source, repository, digest).await {
                        Ok(found) => found,
                        Err(e) => {
                            failed = true;
                            let error = Some(e.message.clone());
                            errors.push(e);
                            PayloadLookup {
                                looked_up: vec![source.clone()],
                                payloads: Vec::new(),
                                error,
                            }
                        }
                    }
                }
            });
        }
        if !failed {
            cache.put(&key, &answer);
        }
        out.push(answer);
    }
    out
}

/// Asks the index for `digest`, then fetches each entry it lists (at most
/// [`MAX_ENTRIES_PER_DIGEST`]).
async fn lookup(http: &Http, base: &str, digest: &str) -> Result<RekorLookup, FetchError> {
    let body = json!({ "hash": digest }).to_string().into_bytes();
    let url = format!("{base}/api/v1/index/retrieve");
    let index = http
        .post_json(Endpoint::Rekor, &url, body, None)
        .await?
        .json(Endpoint::Rekor)?;
    let uuids = index_uuids(&index)?;
    let mut entries = Vec::new();
    for uuid in uuids.iter().take(MAX_ENTRIES_PER_DIGEST) {
        let url = format!("{base}/api/v1/log/entries/{uuid}");
        let response = http.get(Endpoint::Rekor, &url, None).await?;
        // Kept as served: the verifier re-reads exactly these bytes.
        let text = String::from_utf8(response.body).map_err(|_| {
            FetchError::new(
                Endpoint::Rekor,
                ErrorKind::InvalidJson,
                format!("entry {uuid}: expected utf-8 json, found other bytes"),
            )
        })?;
        if !serde_json::from_str::<Value>(&text).is_ok_and(|v| v.is_object()) {
            return Err(FetchError::new(
                Endpoint::Rekor,
                ErrorKind::InvalidJson,
                format!(
                    "entry {uuid}: expected a json object, found {} bytes of something else",
                    text.len()
                ),
            ));
        }
        entries.push(text);
    }
    Ok(RekorLookup {
        digest: digest.to_string(),
        uuids,
        entries,
        payloads: None,
    })
}

/// The index answer: a JSON list of entry uuids (hex, 64 or 80 digits: a tree id may prefix
/// the leaf hash). Anything else is an error rather than a URL path built from it.
fn index_uuids(index: &Value) -> Result<Vec<String>, FetchError> {
    let invalid = |found: String| {
        FetchError::new(
            Endpoint::Rekor,
            ErrorKind::InvalidJson,
            format!("index answer: expected a list of entry uuids, found {found}"),
        )
    };
    let Value::Array(items) = index else {
        return Err(invalid(crate::verify::bundle::json_kind(index).to_string()));
    };
    let mut uuids = Vec::with_capacity(items.len());
    for item in items {
        match item.as_str() {
            Some(uuid)
                if matches!(uuid.len(), 64 | 80) && uuid.bytes().all(|b| b.is_ascii_hexdigit()) =>
            {
                if !uuids.iter().any(|u: &String| u == uuid) {
                    uuids.push(uuid.to_ascii_lowercase());
                }
            }
            _ => {
                let shown: String = item.to_string().chars().take(100).collect();
                return Err(invalid(shown));
            }
        }
    }
    Ok(uuids)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_index_answer_must_be_hex_uuids() {
        let ok = index_uuids(&json!(["ab".repeat(40), "cd".repeat(32), "ab".repeat(40)])).unwrap();
        assert_eq!(ok.len(), 2);
        let e = index_uuids(&json!(["../../admin"])).unwrap_err();
        assert_eq!(
            e.message,
            "index answer: expected a list of entry uuids, found \"../../admin\""
        );
        let e = index_uuids(&json!({"uuid": 1})).unwrap_err();
        assert!(e.message.ends_with("found an object"), "{}", e.message);
    }

    #[test]
    fn an_empty_answer_expires_and_an_entry_does_not() {
        let cache = RekorCache::default();
        let empty = RekorLookup {
            digest: "sha256:00".into(),
            uuids: vec![],
            entries: vec![],
            payloads: None,
        };
        cache.put("r", &empty);
        assert_eq!(cache.get("r", "sha256:00"), Some(empty.clone()));
        // Aged past the TTL by rewriting its time: an empty answer is asked again.
        if let Some(slot) = cache.answers.lock().unwrap().values_mut().next() {
            slot.1 = Instant::now() - NO_ENTRY_TTL - Duration::from_secs(1);
        }
        assert_eq!(cache.get("r", "sha256:00"), None);
        let full = RekorLookup {
            entries: vec!["{}".into()],
            ..empty
        };
        cache.put("r", &full);
        if let Some(slot) = cache.answers.lock().unwrap().values_mut().next() {
            slot.1 = Instant::now() - NO_ENTRY_TTL - Duration::from_secs(1);
        }
        assert_eq!(cache.get("r", "sha256:00"), Some(full));
    }
}
