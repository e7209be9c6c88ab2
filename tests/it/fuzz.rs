//! The fuzz targets' regression inputs, replayed without the fuzzer: every file under
//! `fuzz/regressions/<target>/` goes through the same harness function its libFuzzer binary
//! calls (`fuzz/src/lib.rs`, included below), so a crash the fuzzer found and that was fixed
//! stays fixed in the ordinary suite. Also checks that the harness list and fuzz/Cargo.toml's
//! binaries name the same targets, so no target is built without being replayed or the reverse.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::common;

#[path = "../../fuzz/src/lib.rs"]
mod harness;

#[test]
fn every_regression_input_of_every_fuzz_target_runs_without_a_panic() {
    let root = common::repo_path("fuzz/regressions");
    let mut replayed = 0;
    let mut panicked = Vec::new();
    for entry in std::fs::read_dir(&root).unwrap() {
        let entry = entry.unwrap();
        if !entry.file_type().unwrap().is_dir() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((_, run)) = harness::TARGETS.iter().find(|(t, _)| *t == name) else {
            panic!("fuzz/regressions/{name}: expected the name of a fuzz target, found none");
        };
        for input in std::fs::read_dir(entry.path()).unwrap() {
            let path = input.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            if catch_unwind(AssertUnwindSafe(|| run(&data))).is_err() {
                panicked.push(path.display().to_string());
            }
            replayed += 1;
        }
    }
    assert!(
        panicked.is_empty(),
        "these regression inputs panic: {panicked:?}"
    );
    println!("replayed {replayed} regression inputs");
}

#[test]
fn the_harness_and_fuzz_cargo_toml_name_the_same_targets() {
    let manifest = std::fs::read_to_string(common::repo_path("fuzz/Cargo.toml")).unwrap();
    let mut bins: Vec<&str> = manifest
        .split("[[bin]]")
        .skip(1)
        .map(|section| {
            let line = section
                .lines()
                .find(|l| l.starts_with("name = "))
                .expect("every [[bin]] has a name");
            line.trim_start_matches("name = ").trim_matches('"')
        })
        .collect();
    bins.sort_unstable();
    let mut targets: Vec<&str> = harness::TARGETS.iter().map(|(t, _)| *t).collect();
    targets.sort_unstable();
    assert_eq!(bins, targets);
}

/// The harnesses' own properties hold on the evidence the seeds are cut from: every stored bundle
/// (real and simulated) reads back unchanged after teewatch writes it and verifies without a
/// panic, and the real quotes and the shipped configuration go through their targets.
#[test]
fn every_stored_bundle_survives_the_bundle_harness() {
    let mut bundles = Vec::new();
    let mut folders = vec![common::repo_path("tests/bundles")];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|e| e == "json") {
                bundles.push(path);
            }
        }
    }
    assert!(bundles.len() >= 20, "found only {} bundles", bundles.len());
    for path in &bundles {
        let data = std::fs::read(path).unwrap();
        // The harness returns early on what is not a bundle; each of these must be one.
        assert!(
            teewatch::verify::Bundle::from_json(std::str::from_utf8(&data).unwrap()).is_ok(),
            "{}",
            path.display()
        );
        harness::bundle(&data);
    }
    for quote in ["tdx_quote", "tdx_quote_td15ex"] {
        let path = common::repo_path(&format!("tests/vectors/tdx/dcap-qvl/{quote}"));
        harness::tdx_quote(&std::fs::read(path).unwrap());
    }
    harness::config(&std::fs::read(common::repo_path("config.toml")).unwrap());
}
