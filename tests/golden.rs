//! Golden verdicts: every real-vector bundle in `tests/bundles/` verifies to the committed verdict
//! in `tests/golden/`. A verdict on real evidence changes only in a commit that says why the old
//! one was wrong; to record a deliberate change run `TEEWATCH_BLESS=1 cargo test --test golden`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use teewatch::verify::{self, TrustAnchors};

/// The real-vector bundles of `tests/bundles/`, by name, sorted.
fn bundle_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(common::repo_path("tests/bundles"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(
        names.len() >= 11,
        "expected the real-vector bundles, found {names:?}"
    );
    names
}

#[test]
fn every_bundle_matches_its_golden_verdict() {
    let names = bundle_names();
    let verdicts: Vec<(String, String)> = names
        .iter()
        .map(|name| {
            let verdict = common::verdict(&common::bundle(name));
            (
                name.clone(),
                serde_json::to_string_pretty(&verdict).unwrap() + "\n",
            )
        })
        .collect();
    common::assert_golden(&common::repo_path("tests/golden"), &verdicts);
}

/// The verifier's cache remembers only work done on byte-identical inputs and judges validity at
/// each bundle's own `observed_at`, so a verdict from a used cache is the verdict from a fresh
/// one, byte for byte, and the golden one. The used cache has verified every bundle first: it
/// holds the collateral that `dcapqvl-v4-uptodate` and `dcapqvl-v4-collateral-expired` share (valid
/// at the first's `observed_at`, expired at the second's) and the GPU chains.
#[test]
fn a_used_cache_gives_the_verdict_of_a_fresh_one() {
    let names = bundle_names();
    let json = |name: &str, anchors: &TrustAnchors| {
        let bundle = common::bundle(name);
        let verdict = verify::verify(&bundle, &common::own_policy(&bundle), anchors);
        serde_json::to_string_pretty(&verdict).unwrap() + "\n"
    };
    let used = TrustAnchors::production();
    for name in &names {
        json(name, &used);
    }
    assert!(
        !used.cache.collateral.is_empty() && !used.cache.gpu_chains.is_empty(),
        "the used cache holds collateral and GPU chains"
    );
    let shared = |name: &str| common::bundle_json(name)["tdx_collateral"].to_string();
    assert_eq!(
        shared("dcapqvl-v4-uptodate"),
        shared("dcapqvl-v4-collateral-expired"),
        "two bundles share one collateral at different instants"
    );
    // Again in the reverse order, each with the used cache and with a fresh one.
    for name in names.iter().rev() {
        let warm = json(name, &used);
        let fresh = TrustAnchors::production();
        assert!(fresh.cache.collateral.is_empty() && fresh.cache.gpu_chains.is_empty());
        let cold = json(name, &fresh);
        assert_eq!(warm, cold, "{name}: a used cache changed the verdict");
        let golden = common::repo_path(&format!("tests/golden/{name}.json"));
        assert_eq!(
            std::fs::read_to_string(&golden).unwrap_or_default(),
            warm,
            "{name}: the verdict from a used cache differs from {golden:?}"
        );
    }
}
