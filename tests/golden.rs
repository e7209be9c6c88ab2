//! Golden verdicts: every real-vector bundle in `tests/bundles/` verifies to the committed verdict
//! in `tests/golden/`. A verdict on real evidence changes only in a commit that says why the old
//! one was wrong; to record a deliberate change run `TEEWATCH_BLESS=1 cargo test --test golden`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

#[test]
fn every_bundle_matches_its_golden_verdict() {
    let bless = std::env::var_os("TEEWATCH_BLESS").is_some();
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
    let mut mismatches = Vec::new();
    for name in &names {
        let verdict = common::verdict(&common::bundle(name));
        let text = serde_json::to_string_pretty(&verdict).unwrap() + "\n";
        let golden = common::repo_path(&format!("tests/golden/{name}.json"));
        if bless {
            std::fs::write(&golden, &text).unwrap();
            continue;
        }
        match std::fs::read_to_string(&golden) {
            Ok(expected) if expected == text => {}
            Ok(_) => mismatches.push(format!("{name}: verdict differs from {golden:?}")),
            Err(_) => mismatches.push(format!("{name}: no golden verdict at {golden:?}")),
        }
    }
    assert!(
        mismatches.is_empty(),
        "{}\n(if the change is deliberate, rerun with TEEWATCH_BLESS=1 and say why in the commit)",
        mismatches.join("\n")
    );
}

#[test]
fn verifying_twice_gives_identical_json() {
    let bundle = common::bundle("pmlsdk-dstack-sample");
    let a = serde_json::to_string(&common::verdict(&bundle)).unwrap();
    let b = serde_json::to_string(&common::verdict(&bundle)).unwrap();
    assert_eq!(a, b);
}
