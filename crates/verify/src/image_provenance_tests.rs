//! Tests of `image_provenance`'s judgement of one image: the policy's validation, tags,
//! unconfigured and unfetched images, no entry, and a real GitHub `dsse` entry with and without
//! its payload from the attestations API.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]
use super::*;

fn policy(images: &[(&str, &str)]) -> ProvenancePolicy {
    ProvenancePolicy {
        rekor_url: DEFAULT_REKOR_URL.into(),
        attestations_url: None,
        images: images
            .iter()
            .map(|(repo, subject)| {
                (
                    repo.to_string(),
                    ImageRule {
                        issuer: "https://issuer".into(),
                        subject: subject.to_string(),
                        required: false,
                    },
                )
            })
            .collect(),
    }
}

#[test]
fn a_policy_names_repositories_without_tag_and_non_empty_identities() {
    let ok = policy(&[("ghcr.io/o/a", "s")]);
    assert!(ok.validate().is_empty());
    let errors = policy(&[("ghcr.io/o/a:v1", "s"), ("ghcr.io/o/b", " ")]).validate();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].1.contains("without tag or digest"), "{errors:?}");
    assert_eq!(errors[1].0, "\"ghcr.io/o/b\".subject");
}

#[test]
fn a_tag_fails_and_an_unconfigured_or_unfetched_image_is_unknown() {
    let p = policy(&[("ghcr.io/o/a", "s")]);
    let no_trust = Err(&String::from("unused"));
    let tag = judge_image("ghcr.io/o/a:v1", &p, &[], no_trust);
    assert_eq!(
        tag,
        Outcome::Fail(
            "unpinned image: ghcr.io/o/a:v1 (expected a reference by digest, ghcr.io/o/a@sha256:…)"
                .into()
        )
    );
    let hex = "ab".repeat(32);
    let other = judge_image(&format!("ghcr.io/o/b@sha256:{hex}"), &p, &[], no_trust);
    assert_eq!(
        other,
        Outcome::Unknown("no allowed identity for ghcr.io/o/b in [target.provenance]".into())
    );
    let unfetched = judge_image(&format!("ghcr.io/o/a@sha256:{hex}"), &p, &[], no_trust);
    assert!(matches!(unfetched, Outcome::Unknown(r) if r.starts_with("no rekor answer")));
}

/// A real production entry (a GitHub `attest-build-provenance` dsse entry, D1's vector):
/// genuine in the log, but Rekor does not serve its payload, so it proves nothing about the
/// image yet: `unknown`, not a failure.
#[test]
fn a_dsse_entry_without_its_payload_is_unknown() {
    let entry = include_str!("../tests/vectors/sigstore/cli-cli/rekor_entry.json");
    let digest = "sha256:07e4b8c0e3580b3e4a1eb62c70f1ffb86004d3d94f50767cb404fa7a639b4d05";
    let p = policy(&[("ghcr.io/o/a", "s")]);
    let lookups = [RekorLookup {
        digest: digest.into(),
        uuids: vec![],
        entries: vec![entry.into()],
        payloads: None,
    }];
    let trust = SigstoreTrust::production().unwrap();
    let outcome = judge_image(&format!("ghcr.io/o/a@{digest}"), &p, &lookups, Ok(&trust));
    assert_eq!(
        outcome,
        Outcome::Unknown(format!(
            "{digest}: the rekor entry cannot be tied to the image: expected the signed payload (rekor does not serve it for dsse 0.0.1), found none (teewatch fetches no dsse or hashedrekord payload yet)"
        ))
    );
}

/// The same real entry with its payload as GitHub's attestations API serves it (the
/// vector's Sigstore bundle's DSSE envelope): the payload path proves the build on real
/// bytes; a payload that is not the entry's (another hash) leaves it `unknown`, saying where
/// it was looked for.
#[test]
fn a_dsse_entry_with_its_payload_from_the_attestations_api_passes() {
    let entry = include_str!("../tests/vectors/sigstore/cli-cli/rekor_entry.json");
    let bundle: serde_json::Value = serde_json::from_str(include_str!(
        "../tests/vectors/sigstore/cli-cli/reusable-workflow-attestation.sigstore.json"
    ))
    .unwrap();
    let payload = bundle["dsseEnvelope"]["payload"].as_str().unwrap();
    let digest = "sha256:07e4b8c0e3580b3e4a1eb62c70f1ffb86004d3d94f50767cb404fa7a639b4d05";
    let mut p = policy(&[("ghcr.io/o/a", "https://github.com/*")]);
    p.images.get_mut("ghcr.io/o/a").unwrap().issuer =
        "https://token.actions.githubusercontent.com".into();
    let url = "https://api.github.com/orgs/o/attestations/".to_string() + digest;
    let mut lookups = [RekorLookup {
        digest: digest.into(),
        uuids: vec![],
        entries: vec![entry.into()],
        payloads: Some(PayloadLookup {
            looked_up: vec![url.clone()],
            payloads: vec![payload.into()],
            error: None,
        }),
    }];
    let trust = SigstoreTrust::production().unwrap();
    let image = format!("ghcr.io/o/a@{digest}");
    let outcome = judge_image(&image, &p, &lookups, Ok(&trust));
    assert!(
        matches!(&outcome, Outcome::Pass(r) if r.starts_with("built and signed by https://github.com/") && r.contains("rekor log index 95781729 at 2024-05-21T")),
        "{outcome:?}"
    );
    // Another payload: its hash is not the entry's commitment.
    use base64::Engine as _;
    let other = base64::engine::general_purpose::STANDARD.encode(b"{}");
    lookups[0].payloads.as_mut().unwrap().payloads = vec![other];
    let outcome = judge_image(&image, &p, &lookups, Ok(&trust));
    assert!(
        matches!(&outcome, Outcome::Unknown(r) if r.starts_with(&format!("{digest}: the rekor entry cannot be tied to the image: expected a payload with the sha-256 the entry commits to (3f137e11")) && r.ends_with(&format!("(none of the 1 payloads found at {url} is the entry's)"))),
        "{outcome:?}"
    );
    lookups[0].payloads.as_mut().unwrap().payloads.clear();
    let outcome = judge_image(&image, &p, &lookups, Ok(&trust));
    assert!(
        matches!(&outcome, Outcome::Unknown(r) if r.ends_with(&format!("found none (no attestation found at {url})"))),
        "{outcome:?}"
    );
}

#[test]
fn no_entry_is_unknown_unless_required() {
    let hex = "cd".repeat(32);
    let mut p = policy(&[("ghcr.io/o/a", "s")]);
    let lookups = [RekorLookup {
        digest: format!("sha256:{hex}"),
        uuids: vec![],
        entries: vec![],
        payloads: None,
    }];
    let image = format!("ghcr.io/o/a@sha256:{hex}");
    let no_trust = Err(&String::from("unused"));
    assert_eq!(
        judge_image(&image, &p, &lookups, no_trust),
        Outcome::Unknown(format!("no rekor entry for sha256:{hex}"))
    );
    p.images.get_mut("ghcr.io/o/a").unwrap().required = true;
    assert_eq!(
        judge_image(&image, &p, &lookups, no_trust),
        Outcome::Fail(format!(
            "no rekor entry for sha256:{hex}, and provenance is required for ghcr.io/o/a"
        ))
    );
}
