//! Golden verdicts: every real-vector bundle in `tests/bundles/` verifies to the committed verdict
//! in `tests/golden/`. A verdict on real evidence changes only in a commit that says why the old
//! one was wrong; to record a deliberate change run `TEEWATCH_BLESS=1 cargo test --test golden`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

#[test]
fn every_bundle_matches_its_golden_verdict() {
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

#[test]
fn verifying_twice_gives_identical_json() {
    let bundle = common::bundle("pmlsdk-dstack-sample");
    let a = serde_json::to_string(&common::verdict(&bundle)).unwrap();
    let b = serde_json::to_string(&common::verdict(&bundle)).unwrap();
    assert_eq!(a, b);
}
