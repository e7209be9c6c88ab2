//! `[target.provenance]`: who may have built each container image the target's compose runs,
//! judged by `image_provenance` against Sigstore's transparency log.
//!
//! Each key is an image repository (`"ghcr.io/org/image"`, no tag or digest) whose value is an
//! inline table `{ issuer = "…", subject = "…", required = true }`; the two other keys name
//! where answers come from: `rekor_url` the Rekor to ask (Sigstore's public one by default),
//! `attestations_url` the GitHub attestations API asked for the signed payloads Rekor does not
//! serve (GitHub's, for `ghcr.io` images only, by default). A target without the
//! table gets no `image_provenance` check at all.

use std::collections::BTreeMap;

use toml::{Table, Value};

use super::validator::{UrlKind, Validator};
use crate::verify::image_provenance::{DEFAULT_REKOR_URL, ImageRule, ProvenancePolicy};

const RULE_KEYS: [&str; 3] = ["issuer", "subject", "required"];

/// Reads `[target.provenance]` at `path` (such as `target[0]`); `None` when absent or when
/// anything was reported.
pub(super) fn read(v: &mut Validator, t: &Table, path: &str) -> Option<ProvenancePolicy> {
    let at = format!("{path}.provenance");
    let table = v.table(t, "provenance", &at)?;
    let before = v.issues.len();
    let rekor_url = v
        .url(
            table,
            "rekor_url",
            &format!("{at}.rekor_url"),
            UrlKind::Base,
        )
        .ok()
        .flatten()
        .unwrap_or_else(|| DEFAULT_REKOR_URL.to_string());
    let attestations_url = v
        .url(
            table,
            "attestations_url",
            &format!("{at}.attestations_url"),
            UrlKind::Base,
        )
        .ok()
        .flatten();
    let mut images = BTreeMap::new();
    for (key, value) in table
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "rekor_url" | "attestations_url"))
    {
        let row = format!("{at}.\"{key}\"");
        let Value::Table(rule) = value else {
            v.issue(
                &row,
                format!(
                    "expected {{ issuer = \"…\", subject = \"…\" }} for image {key}, found {}",
                    value.type_str()
                ),
            );
            continue;
        };
        v.known_keys(&row, rule, &RULE_KEYS);
        let mut text = |field: &str| match rule.get(field) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                v.issue(
                    &format!("{row}.{field}"),
                    format!("expected a string, found {}", other.type_str()),
                );
                None
            }
            None => {
                v.issue(
                    &format!("{row}.{field}"),
                    format!(
                        "missing; image {key} needs the {field} its signing certificate must name"
                    ),
                );
                None
            }
        };
        let issuer = text("issuer");
        let subject = text("subject");
        let required = v.boolean(rule, "required", &format!("{row}.required"));
        if let (Some(issuer), Some(subject), Ok(required)) = (issuer, subject, required) {
            images.insert(
                key.clone(),
                ImageRule {
                    issuer,
                    subject,
                    required: required.unwrap_or(false),
                },
            );
        }
    }
    if images.is_empty() && v.issues.len() == before {
        v.issue(
            &at,
            "expected at least one image row (\"ghcr.io/org/image\" = { issuer = \"…\", subject = \"…\" }), found none".into(),
        );
    }
    (v.issues.len() == before).then_some(ProvenancePolicy {
        rekor_url,
        attestations_url,
        images,
    })
}
