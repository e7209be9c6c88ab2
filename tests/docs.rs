//! The README's checklist and the docs name every check the verifier can report, and every
//! count of checks they state is the code's (the fixed names, and the names real verdicts of
//! each kind of answer list); README's exit codes are exactly `src/exit.rs`'s.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::collections::BTreeSet;

use teewatch::verify::Verdict;
use teewatch::verify::checks::{
    CANARY_CHECKS, GPU_CHECKS, NODE_CHECKS, OHTTP_KEY_BINDING, PIN_PREFIX, SIGNING_KEY_ADDRESS,
    all_checks,
};

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[test]
fn readme_and_verdict_doc_list_every_check() {
    let readme = read("README.md");
    let verdict_doc = read("docs/verdict.md");
    for name in all_checks() {
        assert!(
            readme.contains(&format!("`{name}`")),
            "README.md does not list {name}"
        );
        assert!(
            verdict_doc.contains(&format!("`{name}`")),
            "docs/verdict.md does not list {name}"
        );
    }
    assert!(readme.contains("`pin:<field>`"));
}

/// The exit codes as `src/exit.rs` defines them: each `pub const NAME: u8 = CODE;` with its doc
/// comment.
fn exit_codes_in_code() -> Vec<(String, u8, String)> {
    let source = read("src/exit.rs");
    let mut codes = Vec::new();
    let mut doc = Vec::new();
    for line in source.lines().map(str::trim) {
        if let Some(text) = line.strip_prefix("///") {
            doc.push(text.trim().to_string());
            continue;
        }
        if let Some(rest) = line.strip_prefix("pub const ") {
            let (name, value) = rest
                .split_once(": u8 = ")
                .unwrap_or_else(|| panic!("src/exit.rs: unexpected constant {line}"));
            let value: u8 = value.trim_end_matches(';').parse().unwrap();
            codes.push((name.to_string(), value, doc.join(" ")));
        }
        doc.clear();
    }
    codes
}

/// The codes of the README's exit code table (`### Exit codes`), in order.
fn exit_codes_in_readme() -> Vec<u8> {
    let readme = read("README.md");
    let table = readme
        .split("### Exit codes")
        .nth(1)
        .expect("README.md has an exit code table");
    table
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .filter_map(|l| l.trim_start_matches('|').split('|').next())
        .filter_map(|cell| cell.trim().parse().ok())
        .collect()
}

#[test]
fn readme_documents_exactly_the_exit_codes_of_the_code() {
    let code = exit_codes_in_code();
    // The parse reads the constants the binary uses.
    let by_name = |name: &str| code.iter().find(|(n, ..)| n == name).map(|(_, v, _)| *v);
    assert_eq!(by_name("PASS"), Some(teewatch::exit::PASS));
    assert_eq!(by_name("FAIL"), Some(teewatch::exit::FAIL));
    assert_eq!(by_name("UNKNOWN"), Some(teewatch::exit::UNKNOWN));
    assert_eq!(by_name("CONFIG"), Some(teewatch::exit::CONFIG));
    assert!(code.len() >= 7, "{code:?}");
    for (name, _, doc) in &code {
        assert!(!doc.is_empty(), "src/exit.rs: {name} has no doc comment");
    }
    let mut from_code: Vec<u8> = code.iter().map(|(_, v, _)| *v).collect();
    from_code.sort_unstable();
    assert_eq!(
        exit_codes_in_readme(),
        from_code,
        "README.md's exit code table must list exactly src/exit.rs's codes, in order"
    );
}

/// The check counts the docs state, each computed here from the code: the fixed check names,
/// and the distinct check names of real verdicts of each kind of answer.
fn check_counts() -> Vec<(&'static str, usize)> {
    let names = |verdict: &Verdict| -> usize {
        let names: BTreeSet<&str> = verdict
            .checks
            .iter()
            .map(|c| c.name.as_str())
            .filter(|n| !n.starts_with(PIN_PREFIX))
            .collect();
        names.len()
    };
    let dstack = common::verdict(&common::bundle("dstack-tdx-lite"));
    assert!(
        !dstack.checks.iter().any(|c| c.name == SIGNING_KEY_ADDRESS),
        "the dstack case must lack signing_public_key"
    );
    // The same answer carrying a public key: the one check that adds.
    let mut with_key = common::bundle_json("dstack-tdx-lite");
    with_key["attestation"]["signing_public_key"] = "00".into();
    let with_key = common::verdict(&common::from_json(with_key));
    let near = |case: &str| {
        let (value, config) = common::format_case(case);
        common::verify_format_case(value, &config)
    };
    let near_ecdsa = near("near-gateway-ecdsa");
    let near_ohttp = near("near-gateway-ed25519");
    assert!(
        near_ohttp
            .checks
            .iter()
            .any(|c| c.name == OHTTP_KEY_BINDING)
    );
    let fetch_failed = common::verdict(&common::bundle("fetch-failed"));
    assert_eq!(names(&with_key), names(&dstack) + 1);
    vec![
        ("fixed checks", all_checks().count()),
        ("for a dstack answer", names(&dstack)),
        ("for a NEAR AI answer", names(&near_ecdsa)),
        ("for one with OHTTP key attestations", names(&near_ohttp)),
        ("when no answer could be fetched", names(&fetch_failed)),
        ("node checks", NODE_CHECKS.len()),
        ("GPU checks", GPU_CHECKS.len()),
        ("canary checks", CANARY_CHECKS.len()),
    ]
}

/// A number written in digits or as a word, as the docs write counts.
fn number(word: &str) -> Option<usize> {
    const WORDS: [&str; 13] = [
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
        "eleven", "twelve",
    ];
    word.parse()
        .ok()
        .or_else(|| WORDS.iter().position(|w| w.eq_ignore_ascii_case(word)))
}

/// The project's prose: the README, ARCHITECTURE.md and every page of docs/.
fn prose() -> Vec<(String, String)> {
    let mut files = vec!["README.md".to_string(), "ARCHITECTURE.md".to_string()];
    let mut docs: Vec<String> = std::fs::read_dir(format!("{}/docs", env!("CARGO_MANIFEST_DIR")))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".md"))
        .map(|n| format!("docs/{n}"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
        .into_iter()
        .map(|f| {
            // Line breaks inside a paragraph are spaces to a reader.
            let text = read(&f).split_whitespace().collect::<Vec<_>>().join(" ");
            (f, text)
        })
        .collect()
}

#[test]
fn docs_state_the_check_counts_the_code_has() {
    let counts = check_counts();
    let mut stated: Vec<(String, &str, usize)> = Vec::new();
    let mut problems = Vec::new();
    for (file, text) in prose() {
        for (phrase, expected) in &counts {
            for (at, _) in text.match_indices(&format!(" {phrase}")) {
                // The word before the phrase, without punctuation: `(18 for a dstack answer`.
                let before = text[..at]
                    .rsplit(' ')
                    .next()
                    .unwrap_or("")
                    .trim_matches(|c: char| !c.is_ascii_alphanumeric());
                let Some(found) = number(before) else {
                    continue;
                };
                stated.push((file.clone(), phrase, found));
                if found != *expected {
                    problems.push(format!(
                        "{file}: \"{before} {phrase}\": expected {expected}, found {found}"
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The statements this test exists for are there.
    for (file, phrase) in [
        ("README.md", "fixed checks"),
        ("README.md", "for a dstack answer"),
        ("README.md", "for a NEAR AI answer"),
        ("README.md", "for one with OHTTP key attestations"),
        ("README.md", "when no answer could be fetched"),
        ("docs/verdict.md", "fixed checks"),
        ("docs/verdict.md", "for a dstack answer"),
        ("docs/verdict.md", "node checks"),
        ("docs/verdict.md", "GPU checks"),
        ("docs/verdict.md", "canary checks"),
        ("docs/metrics.md", "fixed checks"),
        ("docs/metrics.md", "for a dstack answer"),
        ("docs/dashboard.md", "fixed checks"),
    ] {
        assert!(
            stated.iter().any(|(f, p, _)| f == file && *p == phrase),
            "{file} does not state the number of {phrase}; stated: {stated:?}"
        );
    }
}
