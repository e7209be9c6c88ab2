//! `image_provenance` end to end: the simulator started with `provenance` runs a compose of one
//! image per case, signed through its test Fulcio and logged in its test Rekor; teewatch's fetch
//! looks each digest up, stores the answers in the bundle and the verifier judges each image.
//! Each case gives its own state and reason, including the `dsse` entries whose payload comes
//! from the simulated GitHub attestations API; the stored bundle re-verifies offline (`teewatch
//! verify`) to the same verdict, and a bundle made before payloads were fetched to its old one; a
//! second check with an unchanged compose asks Rekor and GitHub nothing.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use serde_json::Value;
use teewatch::verify::{self, Bundle, State, Verdict};
use teewatch_sim::server::{SimOptions, model_name};
use teewatch_sim::sigstore::{Case, EXPECTED_SUBJECT, OTHER_SUBJECT};

use crate::common::process;
use crate::common::sim_run::{self, Running};

async fn start(name: &str) -> Running {
    sim_run::start(
        name,
        SimOptions {
            provenance: true,
            ..SimOptions::default()
        },
    )
    .await
}

fn verdict_of(run: &Running, bundle: &Bundle) -> Verdict {
    let target = run.config.target(&model_name(0)).unwrap();
    verify::verify(bundle, &target.policy, &run.config.trust_anchors())
}

/// The `image_provenance` check of one case's image.
fn image_check(v: &Verdict, case: Case) -> (State, String) {
    let check = v
        .checks
        .iter()
        .find(|c| c.name == "image_provenance" && c.scope == case.scope())
        .unwrap_or_else(|| panic!("no image_provenance for {}: {:#?}", case.scope(), v.checks));
    (check.state, check.reason.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_image_case_gives_its_specific_result_and_nothing_else_fails() {
    let run = start("provenance-cases").await;
    let bundle = Bundle::from_value(sim_run::fetch(&run, &model_name(0)).await).unwrap();
    let v = verdict_of(&run, &bundle);

    let (state, reason) = image_check(&v, Case::Signed);
    assert_eq!(state, State::Pass, "{reason}");
    assert!(reason.starts_with(&format!("built and signed by {EXPECTED_SUBJECT} (issuer https://token.actions.githubusercontent.com), rekor log index 1 at ")), "{reason}");

    let (state, reason) = image_check(&v, Case::OtherIdentity);
    assert_eq!(state, State::Fail, "{reason}");
    assert_eq!(
        reason,
        format!(
            "{}: signer identity: expected {EXPECTED_SUBJECT} from https://token.actions.githubusercontent.com, found {OTHER_SUBJECT} from https://token.actions.githubusercontent.com",
            Case::OtherIdentity.digest_text()
        )
    );

    let (state, reason) = image_check(&v, Case::BrokenProof);
    assert_eq!(state, State::Fail, "{reason}");
    assert!(
        reason.starts_with(&format!(
            "{}: rekor entry rejected: inclusion proof: expected the path to lead to root hash ",
            Case::BrokenProof.digest_text()
        )),
        "{reason}"
    );

    let (state, reason) = image_check(&v, Case::Unsigned);
    assert_eq!(state, State::Unknown, "{reason}");
    assert_eq!(
        reason,
        format!("no rekor entry for {}", Case::Unsigned.digest_text())
    );

    let (state, reason) = image_check(&v, Case::ByTag);
    assert_eq!(state, State::Fail, "{reason}");
    assert_eq!(
        reason,
        "unpinned image: ghcr.io/teewatch-sim/tagged:latest (expected a reference by digest, ghcr.io/teewatch-sim/tagged@sha256:…)"
    );

    // The dsse entries: the payload from the attestations API (the org lookup answers 404, the
    // user's has it) ties the entry to the image.
    let (state, reason) = image_check(&v, Case::DsseAttested);
    assert_eq!(state, State::Pass, "{reason}");
    assert!(reason.starts_with(&format!("built and signed by {EXPECTED_SUBJECT} (issuer https://token.actions.githubusercontent.com), rekor log index 9 at ")), "{reason}");

    let (state, reason) = image_check(&v, Case::DsseOtherDigest);
    assert_eq!(state, State::Fail, "{reason}");
    assert_eq!(
        reason,
        format!(
            "{}: rekor entry rejected: image binding: expected a statement subject with sha256 {}, found {}",
            Case::DsseOtherDigest.digest_text(),
            hex::encode(Case::DsseOtherDigest.digest()),
            hex::encode(Case::DsseOtherDigest.statement_digest())
        )
    );

    let (state, reason) = image_check(&v, Case::DsseUnpublished);
    assert_eq!(state, State::Unknown, "{reason}");
    let digest = Case::DsseUnpublished.digest_text();
    let base = &run.sim.state.base_url;
    assert_eq!(
        reason,
        format!(
            "{digest}: the rekor entry cannot be tied to the image: expected the signed payload (rekor does not serve it for dsse 0.0.1), found none (no attestation found at {base}/orgs/teewatch-sim/attestations/{digest} or {base}/users/teewatch-sim/attestations/{digest})"
        )
    );

    // Every other check passes: the cases are the only findings.
    let others: Vec<_> = sim_run::failing(&v)
        .into_iter()
        .chain(sim_run::unproven(&v))
        .filter(|c| !c.contains("image_provenance"))
        .collect();
    assert!(others.is_empty(), "{others:#?}");
    assert_eq!(v.checks_named("image_provenance").count(), Case::ALL.len());
    assert_eq!(v.state, State::Fail);
    // The answers used are in the bundle: one lookup per pinned image, entries only where
    // the log has one.
    let lookups = bundle.rekor.as_deref().unwrap();
    assert_eq!(lookups.len(), 7);
    let lookup = |case: Case| {
        lookups
            .iter()
            .find(|l| l.digest == case.digest_text())
            .unwrap()
    };
    let unsigned = lookup(Case::Unsigned);
    assert!(unsigned.uuids.is_empty() && unsigned.entries.is_empty());
    // Payloads only where an entry came without one: the intoto entries carry theirs.
    assert!(lookup(Case::Signed).payloads.is_none());
    let attested = lookup(Case::DsseAttested).payloads.as_ref().unwrap();
    assert_eq!(attested.payloads.len(), 1);
    assert_eq!(attested.looked_up.len(), 2);
    assert!(
        lookup(Case::DsseUnpublished)
            .payloads
            .as_ref()
            .unwrap()
            .payloads
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_provenance_turns_a_missing_entry_into_a_failure() {
    let run = start("provenance-required").await;
    let bundle = Bundle::from_value(sim_run::fetch(&run, &model_name(0)).await).unwrap();
    let mut policy = run.config.target(&model_name(0)).unwrap().policy.clone();
    let rules = &mut policy.provenance.as_mut().unwrap().images;
    rules
        .get_mut(&Case::Unsigned.repository())
        .unwrap()
        .required = true;
    let v = verify::verify(&bundle, &policy, &run.config.trust_anchors());
    let (state, reason) = image_check(&v, Case::Unsigned);
    assert_eq!(state, State::Fail, "{reason}");
    assert_eq!(
        reason,
        format!(
            "no rekor entry for {}, and provenance is required for ghcr.io/teewatch-sim/unsigned",
            Case::Unsigned.digest_text()
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_of_a_compose_not_bound_to_the_quote_proves_nothing() {
    let run = start("provenance-unbound").await;
    let mut json = sim_run::fetch(&run, &model_name(0)).await;
    // Another digest for the signed image in the report's app compose only: the compose no
    // longer hashes to what the TD measured.
    let signed_hex = Case::Signed.digest_text().replace("sha256:", "");
    let attestation = json["attestation"]
        .to_string()
        .replace(&signed_hex, &"0".repeat(64));
    json["attestation"] = serde_json::from_str(&attestation).unwrap();
    let v = verdict_of(&run, &Bundle::from_value(json).unwrap());
    let bound: Vec<_> = v.checks_named("compose_binding").collect();
    assert!(bound.iter().all(|c| c.state == State::Fail), "{bound:#?}");
    let checks: Vec<_> = v.checks_named("image_provenance").collect();
    assert_eq!(checks.len(), 1, "{checks:#?}");
    assert_eq!(checks[0].state, State::Unknown);
    assert_eq!(
        checks[0].reason,
        "compose_binding did not pass: the compose's images are not proven to run"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_bundle_reverifies_offline_to_the_same_verdict() {
    let run = start("provenance-offline").await;
    let json = sim_run::fetch(&run, &model_name(0)).await;
    let live = verdict_of(&run, &Bundle::from_value(json.clone()).unwrap());
    let path = run.dir.join("provenance-bundle.json");
    std::fs::write(&path, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    // A separate process with only the file and the configuration: the verdict comes from the
    // bundle's stored Rekor answers alone.
    let config = run.dir.join("sim.toml");
    let out = process::teewatch([
        "verify".as_ref(),
        "--json".as_ref(),
        path.as_os_str(),
        "--config".as_ref(),
        config.as_os_str(),
    ]);
    let offline: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let live: Value = serde_json::to_value(&live).unwrap();
    assert_eq!(offline["state"], live["state"]);
    assert_eq!(offline["checks"], live["checks"]);
    assert_eq!(offline["state"], "fail");
    // The dsse image passed offline from the payload stored in the bundle alone.
    let attested = offline["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["scope"] == Case::DsseAttested.scope().as_str())
        .unwrap();
    assert_eq!(attested["state"], "pass", "{attested}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_made_before_payloads_were_fetched_reverifies_as_before() {
    let run = start("provenance-old-bundle").await;
    let mut json = sim_run::fetch(&run, &model_name(0)).await;
    // The shape an older teewatch stored: no `payloads` in any Rekor answer.
    for lookup in json["rekor"].as_array_mut().unwrap() {
        lookup.as_object_mut().unwrap().remove("payloads");
    }
    let v = verdict_of(&run, &Bundle::from_value(json).unwrap());
    for case in [
        Case::DsseAttested,
        Case::DsseOtherDigest,
        Case::DsseUnpublished,
    ] {
        let (state, reason) = image_check(&v, case);
        assert_eq!(state, State::Unknown, "{case:?}: {reason}");
        assert_eq!(
            reason,
            format!(
                "{}: the rekor entry cannot be tied to the image: expected the signed payload (rekor does not serve it for dsse 0.0.1), found none (teewatch fetches no dsse or hashedrekord payload yet)",
                case.digest_text()
            )
        );
    }
    // The intoto cases are judged exactly as with the payloads.
    assert_eq!(image_check(&v, Case::Signed).0, State::Pass);
}

/// The states of the `image_provenance` checks of a verdict as JSON, by scope.
fn image_states(verdict: &Value) -> Vec<(String, String)> {
    verdict["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"] == "image_provenance")
        .map(|c| {
            (
                c["scope"].as_str().unwrap().to_string(),
                c["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teewatch_check_gives_each_case_and_its_saved_bundle_verifies_alike() {
    let run = start("provenance-cli").await;
    let config = run.dir.join("sim.toml");
    let saved = run.dir.join("bundles");
    let args = [
        "check".into(),
        "--config".into(),
        config.clone().into_os_string(),
        "--target".into(),
        model_name(0).into(),
        "--json".into(),
        "--save-bundle".into(),
        saved.clone().into_os_string(),
    ];
    let out = tokio::task::spawn_blocking(move || process::teewatch(args))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let checked: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{e}: {text}\n{}", String::from_utf8_lossy(&out.stderr)));
    let checked = if checked.is_array() {
        checked[0].clone()
    } else {
        checked
    };
    let expected: Vec<(String, String)> = [
        (Case::Signed, "pass"),
        (Case::OtherIdentity, "fail"),
        (Case::BrokenProof, "fail"),
        (Case::Unsigned, "unknown"),
        (Case::ByTag, "fail"),
        (Case::DsseAttested, "pass"),
        (Case::DsseOtherDigest, "fail"),
        (Case::DsseUnpublished, "unknown"),
    ]
    .iter()
    .map(|(case, state)| (case.scope(), state.to_string()))
    .collect();
    assert_eq!(image_states(&checked), expected, "{text}");
    // The saved bundle, verified by another process with no simulator to ask.
    let bundle = std::fs::read_dir(&saved)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let out = process::teewatch([
        "verify".as_ref(),
        "--json".as_ref(),
        bundle.as_os_str(),
        "--config".as_ref(),
        config.as_os_str(),
    ]);
    let verified: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(verified["checks"], checked["checks"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_check_with_an_unchanged_compose_asks_rekor_and_github_nothing() {
    let run = start("provenance-cache").await;
    let sigstore = run.sim.state.sigstore.as_ref().unwrap();
    let rekor = &sigstore.rekor;
    let first = sim_run::fetch(&run, &model_name(0)).await;
    // Seven pinned images: seven index look-ups and an entry for each of the six signed ones;
    // the three dsse entries' payloads from the attestations API, org then user: six requests.
    assert_eq!(rekor.requests(), 13);
    assert_eq!(sigstore.attestation_requests(), 6);
    let second = sim_run::fetch(&run, &model_name(0)).await;
    assert_eq!(rekor.requests(), 13, "the second check asked rekor again");
    assert_eq!(
        sigstore.attestation_requests(),
        6,
        "the second check asked the attestations api again"
    );
    assert_eq!(first["rekor"], second["rekor"]);
    assert_eq!(run.fetcher.rekor_cached(), 7);
    // A fresh fetcher (a restart: the cache is in memory only) asks again.
    let _ = sim_run::cold_check(&run, &model_name(0), "restart").await;
    assert_eq!(rekor.requests(), 26);
    assert_eq!(sigstore.attestation_requests(), 12);
}
