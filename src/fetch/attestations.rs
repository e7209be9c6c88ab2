//! GitHub's attestations API as a source of signed payloads for `image_provenance`: Rekor's
//! `dsse` 0.0.1 entries (GitHub's `attest-build-provenance`, current `cosign attest`) commit only
//! to the payload's hash, and Rekor does not serve the payload. GitHub publishes each
//! attestation's Sigstore bundle by subject digest
//! (`GET {base}/orgs/{owner}/attestations/sha256:{hex}`, or `/users/{owner}/…` for an account
//! that is not an organisation), and the bundle's DSSE envelope carries the payload.
//!
//! Nothing here is trusted: the payloads are candidates. The verifier uses one only for the
//! entry whose body commits to its hash, checks the entry's certificate key signed it, and that
//! it names the digest. A lying API can only withhold a payload (the image stays `unknown`).

use serde_json::Value;

use super::http::{Endpoint, ErrorKind, FetchError, Http};
use crate::verify::image_provenance::PayloadLookup;

/// At most this many payloads are kept per digest (GitHub lists 30 per page by default).
pub const MAX_PAYLOADS_PER_DIGEST: usize = 16;

/// The account an image belongs to on GitHub: the first path segment after the registry
/// (`ghcr.io/<owner>/<image>`), lowercased as GitHub's names are case-insensitive. `None` when
/// the repository has no such segment or it is not a plausible GitHub name.
pub fn owner_of(repository: &str) -> Option<String> {
    let mut segments = repository.split('/');
    let _registry = segments.next()?;
    let owner = segments.next()?;
    segments.next()?;
    let plausible = !owner.is_empty()
        && owner.len() <= 39
        && owner
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    plausible.then(|| owner.to_ascii_lowercase())
}

/// The payloads GitHub publishes for `digest` of `repository` at `base`: the organisation's
/// list, else (when GitHub answers 404 there) the user's. Both 404 is "no attestation", an
/// answer like any other; every other failure is an error.
pub async fn payloads(
    http: &Http,
    base: &str,
    repository: &str,
    digest: &str,
) -> Result<PayloadLookup, FetchError> {
    let Some(owner) = owner_of(repository) else {
        return Err(FetchError::new(
            Endpoint::GithubAttestations,
            ErrorKind::Connect,
            format!("expected an image repository <registry>/<owner>/<name>, found {repository}"),
        ));
    };
    let base = base.trim_end_matches('/');
    let mut looked_up = Vec::new();
    for kind in ["orgs", "users"] {
        let url = format!("{base}/{kind}/{owner}/attestations/{digest}");
        looked_up.push(url.clone());
        match http.get(Endpoint::GithubAttestations, &url, None).await {
            Ok(response) => {
                let answer: Value = serde_json::from_slice(&response.body)
                    .map_err(|e| invalid(format!("{url}: expected json, found {e}")))?;
                let payloads = payloads_of(&answer).map_err(|m| invalid(format!("{url}: {m}")))?;
                return Ok(PayloadLookup {
                    looked_up,
                    payloads,
                    error: None,
                });
            }
            Err(e) if e.status == Some(404) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(PayloadLookup {
        looked_up,
        payloads: Vec::new(),
        error: None,
    })
}

fn invalid(message: String) -> FetchError {
    FetchError::new(
        Endpoint::GithubAttestations,
        ErrorKind::InvalidJson,
        message,
    )
}

/// The DSSE payloads of an answer `{"attestations": [{"bundle": {"dsseEnvelope": {"payload":
/// base64, …}, …}, "repository_id": …}, …]}`, as served (base64). An attestation without an
/// inline bundle or DSSE envelope (a message-signature bundle, or one listed only by
/// `bundle_url`) carries no payload and is skipped; a payload that is not base64 is an error.
pub fn payloads_of(answer: &Value) -> Result<Vec<String>, String> {
    use base64::Engine as _;
    let list = answer
        .get("attestations")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            format!(
                "expected an object with an attestations list, found {}",
                crate::verify::bundle::json_kind(answer)
            )
        })?;
    let mut out: Vec<String> = Vec::new();
    for (i, attestation) in list.iter().enumerate() {
        let Some(payload) = attestation
            .get("bundle")
            .and_then(|b| b.get("dsseEnvelope"))
            .and_then(|e| e.get("payload"))
        else {
            continue;
        };
        let text = payload
            .as_str()
            .filter(|t| base64::engine::general_purpose::STANDARD.decode(t).is_ok())
            .ok_or_else(|| {
                format!("expected attestations[{i}].bundle.dsseEnvelope.payload as base64, found other text")
            })?;
        if !out.iter().any(|p| p == text) && out.len() < MAX_PAYLOADS_PER_DIGEST {
            out.push(text.to_string());
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_owner_is_the_first_path_segment() {
        assert_eq!(owner_of("ghcr.io/Cli/cli").as_deref(), Some("cli"));
        assert_eq!(owner_of("ghcr.io/o/group/img").as_deref(), Some("o"));
        assert_eq!(owner_of("ghcr.io/img"), None);
        assert_eq!(owner_of("ghcr.io/a%2f..b/img"), None);
    }

    /// The real cli/cli attestation (the verifier's vector) as GitHub's API lists it: its
    /// payload is the in-toto statement the vector's Rekor entry commits to.
    #[test]
    fn the_payload_of_a_real_github_attestation_is_extracted_as_served() {
        let bundle: Value = serde_json::from_str(include_str!(
            "../../crates/verify/tests/vectors/sigstore/cli-cli/reusable-workflow-attestation.sigstore.json"
        ))
        .unwrap();
        let answer = json!({"attestations": [
            {"bundle": bundle, "repository_id": 212613049},
            {"bundle": bundle, "repository_id": 212613049},
            {"bundle_url": "https://example.test/bundle", "repository_id": 1},
        ]});
        let found = payloads_of(&answer).unwrap();
        assert_eq!(found.len(), 1);
        use base64::Engine as _;
        let statement = base64::engine::general_purpose::STANDARD
            .decode(&found[0])
            .unwrap();
        let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&statement));
        assert_eq!(
            hash,
            "3f137e11f40623b435c00ac2b689a15b525477d312fdf2316dcba1d4f4ba86f8"
        );
    }

    #[test]
    fn a_malformed_answer_is_an_error() {
        assert_eq!(
            payloads_of(&json!([])).unwrap_err(),
            "expected an object with an attestations list, found an array"
        );
        let bad = json!({"attestations": [{"bundle": {"dsseEnvelope": {"payload": "%%"}}}]});
        assert_eq!(
            payloads_of(&bad).unwrap_err(),
            "expected attestations[0].bundle.dsseEnvelope.payload as base64, found other text"
        );
    }
}
