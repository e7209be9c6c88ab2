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

#[test]
fn readme_documents_every_exit_code() {
    let readme = read("README.md");
    for code in [0, 1, 2, 64, 65, 70, 78] {
        assert!(
            readme.contains(&format!("| {code} |")),
            "README.md does not document exit {code}"
        );
    }
}
