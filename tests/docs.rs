//! The README's checklist and the docs name every check the verifier can report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use teewatch::verify::checks::all_checks;

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
