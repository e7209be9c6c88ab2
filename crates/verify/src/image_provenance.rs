//! `image_provenance`: each container image of the attested compose was built and signed by a
//! workflow the target allows, as Sigstore's public transparency log (Rekor) records.
//!
//! The policy (`[target.provenance]`) names, per image repository, the OIDC issuer and subject
//! the Fulcio certificate must carry, and whether an image without a Rekor entry fails or is only
//! `unknown`. The bundle stores the Rekor answers used (`rekor`: per image digest the index's
//! uuids and each entry as served), so the check re-derives offline. Verifying one entry (its
//! signed entry timestamp, inclusion proof, checkpoint, certificate chain and binding to the
//! digest) is `provenance::verify_entry`'s job; this file decides which images count and what
//! the answers mean for each.
//!
//! Only images of a compose bound to the quote count: for a part whose `compose_binding` did not
//! pass the check is `unknown`, never a pass.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::bundle::Bundle;
use super::checks::{COMPOSE_BINDING, IMAGE_PROVENANCE};
use super::images::{ImageRef, app_compose_images};
use super::policy::TrustAnchors;
use super::provenance::{self, AllowedIdentity, ProvenanceError, SigstoreTrust};
use super::report::{Part, PartRole};
use super::verdict::{Outcome, Recorder, State};

/// Sigstore's public Rekor, used when `[target.provenance]` names no `rekor_url`.
pub const DEFAULT_REKOR_URL: &str = "https://rekor.sigstore.dev";

/// GitHub's API, asked for the attestations (and so the signed payloads) of `ghcr.io` images when
/// `[target.provenance]` names no `attestations_url`.
pub const DEFAULT_ATTESTATIONS_URL: &str = "https://api.github.com";

/// At most this many entries are fetched and judged per digest: a digest signed more often
/// than that is judged on the first ones the index lists.
pub const MAX_ENTRIES_PER_DIGEST: usize = 8;

/// `[target.provenance]`: the identities allowed to have built each image repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvenancePolicy {
    /// The Rekor the answers are fetched from (recorded so a bundle names where they came from).
    #[serde(default = "default_rekor_url")]
    pub rekor_url: String,
    /// Where the signed payloads of `dsse` and `hashedrekord` entries are looked up (GitHub's
    /// attestations API); `None` asks [`DEFAULT_ATTESTATIONS_URL`] for `ghcr.io` images only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestations_url: Option<String>,
    /// Repository (`ghcr.io/org/image`, without tag or digest) to the rule it is held to.
    pub images: BTreeMap<String, ImageRule>,
}

fn default_rekor_url() -> String {
    DEFAULT_REKOR_URL.to_string()
}

impl ProvenancePolicy {
    /// The attestations API asked for `repository`'s payloads: the configured one, else GitHub's
    /// for images on `ghcr.io` (where GitHub publishes them); `None` for any other registry.
    pub fn attestations_base(&self, repository: &str) -> Option<String> {
        match &self.attestations_url {
            Some(url) => Some(url.trim_end_matches('/').to_string()),
            None => repository
                .starts_with("ghcr.io/")
                .then(|| DEFAULT_ATTESTATIONS_URL.to_string()),
        }
    }
}

/// One repository's rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRule {
    /// The OIDC issuer the Fulcio certificate names, such as
    /// `https://token.actions.githubusercontent.com`.
    pub issuer: String,
    /// The certificate's subject (for GitHub workflows the workflow URI with its ref).
    pub subject: String,
    /// An image with no Rekor entry fails instead of being `unknown`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub required: bool,
}

impl ProvenancePolicy {
    /// Every problem with the policy, as `(key, message)`.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        let urls = [
            ("rekor_url", Some(&self.rekor_url)),
            ("attestations_url", self.attestations_url.as_ref()),
        ];
        for (key, url) in urls {
            if let Some(url) =
                url.filter(|u| !(u.starts_with("https://") || u.starts_with("http://")))
            {
                errors.push((
                    key.to_string(),
                    format!("expected an http:// or https:// url, found \"{url}\""),
                ));
            }
        }
        for (repository, rule) in &self.images {
            match ImageRef::parse(repository) {
                Ok(parsed) if parsed.digest.is_none() && parsed.repository == *repository => {}
                _ => errors.push((
                    format!("\"{repository}\""),
                    format!(
                        "expected an image repository without tag or digest (such as ghcr.io/org/image), found \"{repository}\""
                    ),
                )),
            }
            for (field, value) in [("issuer", &rule.issuer), ("subject", &rule.subject)] {
                if value.trim().is_empty() {
                    errors.push((
                        format!("\"{repository}\".{field}"),
                        format!("expected a non-empty {field}, found an empty string"),
                    ));
                }
            }
        }
        errors
    }
}

/// What Rekor answered for one image digest: the uuids its index returned and each entry as
/// served (`GET /api/v1/log/entries/{uuid}`'s body, as text), in the index's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RekorLookup {
    /// `sha256:<64 lowercase hex>`.
    pub digest: String,
    #[serde(default)]
    pub uuids: Vec<String>,
    #[serde(default)]
    pub entries: Vec<String>,
    /// The signed payloads gathered for entries Rekor serves without one (`dsse`,
    /// `hashedrekord`); absent when no entry needed one, and in bundles made before payloads
    /// were fetched (those re-verify exactly as before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payloads: Option<PayloadLookup>,
}

/// Where the payloads of one digest's entries were looked for and what was found. The source
/// is only a source of bytes: each payload counts only for the entry whose body commits to its
/// hash, and only when the entry's certificate key signed it and it names the digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayloadLookup {
    /// The URLs asked, in order (GitHub's attestations API by subject digest: the org's, then
    /// the user's); empty when no source is configured for the image's registry.
    #[serde(default)]
    pub looked_up: Vec<String>,
    /// Each candidate payload as served (base64 of a DSSE envelope's payload).
    #[serde(default)]
    pub payloads: Vec<String>,
    /// Why the look-up failed, when it did (the bundle's fetch errors say more).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Whether Rekor serves `entry_json` (a `GET /api/v1/log/entries/{uuid}` answer) without the
/// signed payload its body commits to: every kind but an `intoto` entry with its
/// `attestation.data`. A malformed answer needs none: the verifier rejects it anyway.
pub fn entry_needs_payload(entry_json: &str) -> bool {
    let Ok(serde_json::Value::Object(answer)) = serde_json::from_str(entry_json) else {
        return false;
    };
    answer.values().any(|entry| {
        entry
            .get("attestation")
            .and_then(|a| a.get("data"))
            .and_then(serde_json::Value::as_str)
            .is_none()
    })
}

/// The pinned images of the app compose of every part but compose managers, each digest once:
/// those whose Rekor entries a check needs (the verifier decides which composes are bound).
/// Unpinned and malformed references are left out.
pub fn pinned_images(parts: &[Part<'_>]) -> Vec<ImageRef> {
    let mut images: Vec<ImageRef> = Vec::new();
    for part in parts.iter().filter(|p| p.role != PartRole::ComposeManager) {
        let Some(compose) = part.app_compose() else {
            continue;
        };
        for image in app_compose_images(&compose).unwrap_or_default() {
            let Ok(parsed) = ImageRef::parse(&image) else {
                continue;
            };
            if parsed.digest.is_some() && !images.iter().any(|i| i.digest == parsed.digest) {
                images.push(parsed);
            }
        }
    }
    images
}

/// Records `image_provenance` for every image of the bound composes (scope `image:<reference>`),
/// or `unknown` for a part whose compose is not bound. Nothing when the target configures no
/// provenance.
pub fn judge(
    bundle: &Bundle,
    parts: &[Part<'_>],
    policy: Option<&ProvenancePolicy>,
    anchors: &TrustAnchors,
    rec: &mut Recorder,
) {
    let Some(policy) = policy else {
        return;
    };
    let trust = match (&anchors.sigstore_fulcio_pem, &anchors.rekor_key_pem) {
        (Some(fulcio), Some(rekor)) => SigstoreTrust::from_pem(fulcio, rekor),
        _ => SigstoreTrust::production(),
    }
    .map_err(|e| format!("the sigstore trust root cannot be read: {e}"));
    let mut images: Vec<String> = Vec::new();
    for part in parts.iter().filter(|p| p.role != PartRole::ComposeManager) {
        let scope = part.scope.as_str();
        let bound = rec
            .checks
            .iter()
            .any(|c| c.name == COMPOSE_BINDING && c.scope == scope && c.state == State::Pass);
        if !bound {
            rec.check(
                IMAGE_PROVENANCE,
                scope,
                Outcome::Unknown(format!(
                    "{COMPOSE_BINDING} did not pass: the compose's images are not proven to run"
                )),
            );
            continue;
        }
        let listed = part
            .app_compose()
            .ok_or_else(|| "the report carries no app_compose".to_string())
            .and_then(|compose| app_compose_images(&compose));
        match listed {
            Ok(list) if list.is_empty() => rec.check(
                IMAGE_PROVENANCE,
                scope,
                Outcome::Fail("the bound compose names no image".into()),
            ),
            Ok(list) => {
                for image in list {
                    if !images.contains(&image) {
                        images.push(image);
                    }
                }
            }
            Err(reason) => rec.check(IMAGE_PROVENANCE, scope, Outcome::Fail(reason)),
        }
    }
    let lookups = bundle.rekor.as_deref().unwrap_or_default();
    for image in images {
        let outcome = judge_image(&image, policy, lookups, trust.as_ref());
        rec.check(IMAGE_PROVENANCE, &format!("image:{image}"), outcome);
    }
}

/// One image: pinned, configured, and an entry with an allowed identity.
fn judge_image(
    image: &str,
    policy: &ProvenancePolicy,
    lookups: &[RekorLookup],
    trust: Result<&SigstoreTrust, &String>,
) -> Outcome {
    let parsed = match ImageRef::parse(image) {
        Ok(parsed) => parsed,
        Err(reason) => return Outcome::Fail(reason),
    };
    let Some(digest) = parsed.digest else {
        return Outcome::Fail(format!(
            "unpinned image: {image} (expected a reference by digest, {}@sha256:…)",
            parsed.repository
        ));
    };
    let Some(rule) = policy.images.get(&parsed.repository) else {
        return Outcome::Unknown(format!(
            "no allowed identity for {} in [target.provenance]",
            parsed.repository
        ));
    };
    let Some(lookup) = lookups.iter().find(|l| l.digest == digest) else {
        return Outcome::Unknown(format!(
            "no rekor answer for {digest} in the bundle (see its fetch errors)"
        ));
    };
    if lookup.entries.is_empty() {
        let text = format!("no rekor entry for {digest}");
        return if rule.required {
            Outcome::Fail(format!(
                "{text}, and provenance is required for {}",
                parsed.repository
            ))
        } else {
            Outcome::Unknown(text)
        };
    }
    let trust = match trust {
        Ok(trust) => trust,
        Err(reason) => return Outcome::Unknown(reason.clone()),
    };
    let allowed = [AllowedIdentity {
        issuer: rule.issuer.clone(),
        subject: rule.subject.clone(),
    }];
    // Any one entry with an allowed identity proves the build; otherwise the most telling
    // failure is reported: another identity over a broken entry. An entry whose payload Rekor
    // does not serve (dsse, hashedrekord) and for which no gathered payload hashes to its
    // commitment is neither: it cannot be tied to the image.
    let candidates = candidate_payloads(lookup.payloads.as_ref());
    let mut other_identity: Option<String> = None;
    let mut broken: Option<String> = None;
    let mut no_payload: Option<String> = None;
    for entry in &lookup.entries {
        match verify_with_payloads(entry, &candidates, &digest, trust) {
            Judged::NoPayload(m) => {
                no_payload.get_or_insert(m);
            }
            Judged::Verified(verified) => {
                match provenance::judge_identity(&verified.identity, &allowed) {
                    Ok(()) => {
                        let at = chrono::DateTime::from_timestamp(verified.integrated_time, 0)
                            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                            .unwrap_or_else(|| verified.integrated_time.to_string());
                        return Outcome::Pass(format!(
                            "built and signed by {} (issuer {}), rekor log index {} at {at}",
                            verified.identity.subject, verified.identity.issuer, verified.log_index
                        ));
                    }
                    Err(e) => {
                        other_identity.get_or_insert(e.to_string());
                    }
                }
            }
            Judged::Rejected(e) => {
                broken.get_or_insert(e.to_string());
            }
        }
    }
    match (other_identity, broken, no_payload) {
        (Some(reason), _, _) => Outcome::Fail(format!("{digest}: {reason}")),
        (None, Some(reason), _) => {
            Outcome::Fail(format!("{digest}: rekor entry rejected: {reason}"))
        }
        (None, None, Some(reason)) => Outcome::Unknown(format!(
            "{digest}: the rekor entry cannot be tied to the image: {reason} ({})",
            payload_search(lookup.payloads.as_ref(), &parsed.repository)
        )),
        (None, None, None) => Outcome::Unknown(format!("no rekor entry for {digest}")),
    }
}

/// What became of one entry: verified, rejected by a step, or not tied to the image because
/// no payload it commits to was at hand (neither served by Rekor nor among the candidates).
#[derive(Debug)]
enum Judged {
    Verified(provenance::VerifiedEntry),
    Rejected(ProvenanceError),
    NoPayload(String),
}

/// The gathered payloads, decoded; one that is not base64 is left out (it cannot be any
/// entry's payload).
fn candidate_payloads(payloads: Option<&PayloadLookup>) -> Vec<Vec<u8>> {
    use base64::Engine as _;
    payloads
        .map(|p| p.payloads.as_slice())
        .unwrap_or_default()
        .iter()
        .filter_map(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
        .collect()
}

/// Verifies `entry` with the payload Rekor serves in it (an `intoto` entry's statement, judged
/// as served, mismatch included); else with the candidate whose SHA-256 the entry's body
/// commits to (an entry commits to exactly one payload), picked by hash so the entry is
/// verified once. With no such candidate the entry is verified with the last candidate, or
/// none, so that a fault of an earlier step still rejects it and otherwise the binding step
/// says which payload is missing.
fn verify_with_payloads(
    entry: &str,
    candidates: &[Vec<u8>],
    digest: &str,
    trust: &SigstoreTrust,
) -> Judged {
    use sha2::{Digest as _, Sha256};
    let Some(commitment) = provenance::unserved_payload_hash(entry) else {
        return match provenance::verify_entry(entry, None, digest, trust) {
            Ok(verified) => Judged::Verified(verified),
            Err(e) => Judged::Rejected(e),
        };
    };
    let own = candidates
        .iter()
        .find(|c| <[u8; 32]>::from(Sha256::digest(c)) == commitment);
    match provenance::verify_entry(
        entry,
        own.or(candidates.last()).map(Vec::as_slice),
        digest,
        trust,
    ) {
        Ok(verified) => Judged::Verified(verified),
        // Not the entry's payload (or none at all): it cannot be tied to the image.
        Err(ProvenanceError::Binding(m)) if own.is_none() => Judged::NoPayload(m),
        Err(e) => Judged::Rejected(e),
    }
}

/// Where the payload was looked for, for an `unknown` reason. Bundles made before payloads were
/// fetched keep their old wording, so they re-verify to the same verdict.
fn payload_search(payloads: Option<&PayloadLookup>, repository: &str) -> String {
    match payloads {
        None => "teewatch fetches no dsse or hashedrekord payload yet".to_string(),
        Some(PayloadLookup {
            error: Some(error), ..
        }) => format!("the payload look-up failed: {error}"),
        Some(p) if p.looked_up.is_empty() => format!(
            "no payload source for {repository}: github's attestations api is asked for ghcr.io images only; set [target.provenance] attestations_url"
        ),
        Some(p) if p.payloads.is_empty() => {
            format!("no attestation found at {}", p.looked_up.join(" or "))
        }
        Some(p) => format!(
            "none of the {} payloads found at {} is the entry's",
            p.payloads.len(),
            p.looked_up.join(" or ")
        ),
    }
}

#[cfg(test)]
#[path = "image_provenance_tests.rs"]
mod tests;
