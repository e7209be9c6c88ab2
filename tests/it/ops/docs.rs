//! The README's checklist and the docs name every check the verifier can report, and every
//! count of checks they state is the code's (the fixed names, and the names real verdicts of
//! each kind of answer list); README's exit codes are exactly `src/cmd/exit.rs`'s; and every file,
//! folder and section the docs, the systemd unit and the Prometheus files cite is in the
//! repository.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use crate::common;

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

use teewatch::verify::Verdict;
use teewatch::verify::checks::{
    CANARY_CHECKS, GPU_CHECKS, OHTTP_KEY_BINDING, PART_CHECKS, PIN_PREFIX, SIGNING_KEY_ADDRESS,
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

/// The exit codes as `src/cmd/exit.rs` defines them: each `pub const NAME: u8 = CODE;` with its doc
/// comment.
fn exit_codes_in_code() -> Vec<(String, u8, String)> {
    let source = read("src/cmd/exit.rs");
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
                .unwrap_or_else(|| panic!("src/cmd/exit.rs: unexpected constant {line}"));
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
        assert!(
            !doc.is_empty(),
            "src/cmd/exit.rs: {name} has no doc comment"
        );
    }
    let mut from_code: Vec<u8> = code.iter().map(|(_, v, _)| *v).collect();
    from_code.sort_unstable();
    assert_eq!(
        exit_codes_in_readme(),
        from_code,
        "README.md's exit code table must list exactly src/cmd/exit.rs's codes, in order"
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
        ("part checks", PART_CHECKS.len()),
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
        ("docs/verdict.md", "part checks"),
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

/// The repository's top-level folders: a path starting with one of these, anywhere in a citing
/// file's text (backticks, links, code blocks, comments), is read as a path from the root.
const TOP_DIRS: [&str; 11] = [
    ".ci",
    "benches",
    "crates",
    "dashboards",
    "docs",
    "migrations",
    "pkg",
    "scripts",
    "src",
    "systemd",
    "tests",
];

/// The files that cite repository paths, relative to the root: the Markdown docs, the systemd
/// files and the Prometheus and Alertmanager YAML.
fn citing_files() -> Vec<String> {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, found);
            } else {
                found.push(path);
            }
        }
    }
    let root = common::repo_path("");
    let mut found = Vec::new();
    for dir in ["docs", "systemd", "dashboards"] {
        walk(&root.join(dir), &mut found);
    }
    let mut files: Vec<String> = found
        .iter()
        .map(|p| p.strip_prefix(&root).unwrap().to_str().unwrap().to_string())
        .filter(|f| {
            f.starts_with("systemd/")
                || (f.starts_with("docs/") && f.ends_with(".md"))
                || (f.starts_with("dashboards/") && f.ends_with(".yml"))
        })
        .collect();
    files.sort();
    let mut all = vec![
        "README.md".to_string(),
        "ARCHITECTURE.md".to_string(),
        "BENCHMARKS.md".to_string(),
    ];
    all.extend(files);
    all
}

/// Each path a line cites, outside a link's target, with one of `TOP_DIRS` or `../` at its start,
/// as written (braces, `*` and `<placeholder>` parts kept), without a sentence's final full stop.
/// Such a path is read from the root, so one starting with `../` is outside the repository.
fn paths_in_line(line: &str) -> Vec<&str> {
    let is_path_char = |c: char| c.is_ascii_alphanumeric() || "_./-*{}<>#".contains(c);
    let mut found = Vec::new();
    let mut from = 0;
    for (at, _) in line.char_indices() {
        if at < from {
            continue;
        }
        let rest = &line[at..];
        let starts = rest.starts_with("../")
            || TOP_DIRS
                .iter()
                .any(|d| rest.starts_with(d) && rest[d.len()..].starts_with('/'));
        let after_boundary = line[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || "_./-".contains(c)));
        // A link's target is read by `link_targets`, from the linking file's folder.
        if !starts || !after_boundary || line[..at].ends_with("](") {
            continue;
        }
        let mut braces = 0;
        let len = rest
            .char_indices()
            .find(|&(_, c)| {
                match c {
                    '{' => braces += 1,
                    '}' => braces -= 1,
                    ',' if braces > 0 => return false,
                    _ => {}
                }
                !is_path_char(c)
            })
            .map_or(rest.len(), |(i, _)| i);
        let path = rest[..len].trim_end_matches('.');
        found.push(path);
        from = at + len;
    }
    found
}

/// The target of each Markdown link `[text](target)` in a line that points into the
/// repository (no URL scheme), with its `#section` if any.
fn link_targets(line: &str) -> Vec<&str> {
    line.match_indices("](")
        .filter_map(|(at, _)| {
            let rest = &line[at + 2..];
            let target = rest[..rest.find(')')?].split_whitespace().next()?;
            (!target.contains("://") && !target.starts_with("mailto:")).then_some(target)
        })
        .collect()
}

/// `a/{b,c}.rs` as `a/b.rs` and `a/c.rs`.
fn expand_braces(path: &str) -> Vec<String> {
    let Some(open) = path.find('{') else {
        return vec![path.to_string()];
    };
    let Some(close) = path[open..].find('}').map(|i| open + i) else {
        return vec![path.to_string()];
    };
    path[open + 1..close]
        .split(',')
        .flat_map(|alt| expand_braces(&format!("{}{alt}{}", &path[..open], &path[close + 1..])))
        .collect()
}

/// `name` matches `pattern`, where `*` stands for any run of characters.
fn wildcard_match(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, tail)) => {
            name.starts_with(head)
                && (head.len()..=name.len())
                    .filter(|&i| name.is_char_boundary(i))
                    .any(|i| wildcard_match(tail, &name[i..]))
        }
    }
}

/// Whether some path under `dir` matches these components (`*` as a wildcard in each).
fn glob_exists(dir: &Path, components: &[String]) -> bool {
    let Some((first, rest)) = components.split_first() else {
        return dir.exists();
    };
    if !first.contains('*') {
        return glob_exists(&dir.join(first), rest);
    }
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.filter_map(Result::ok).any(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| wildcard_match(first, n))
                && glob_exists(&e.path(), rest)
        })
    })
}

/// The section anchors of a Markdown file as GitHub makes them from its headings: lower case,
/// spaces as `-`, punctuation other than `-` and `_` dropped.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut in_code = false;
    let mut found = BTreeSet::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        }
        let heading = line.trim_start_matches('#');
        if in_code || heading.len() == line.len() || !heading.starts_with(' ') {
            continue;
        }
        let slug: String = heading
            .trim()
            .to_lowercase()
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                _ => None,
            })
            .collect();
        found.insert(slug);
    }
    found
}

/// What is wrong with one citation in `file` (a path from the root when `from_root`, else from
/// the file's folder), or `None` when every file it names exists, and its section too.
fn citation_problem(root: &Path, file: &str, cited: &str, from_root: bool) -> Option<String> {
    let (path, section) = match cited.split_once('#') {
        Some((path, section)) => (path, Some(section)),
        None => (cited, None),
    };
    let base = if path.is_empty() {
        file
    } else if from_root {
        ""
    } else {
        Path::new(file).parent().unwrap().to_str().unwrap()
    };
    for expanded in expand_braces(path) {
        // Lexically, so that a path leaving the repository is caught even where it exists.
        let mut parts: Vec<String> = Vec::new();
        let joined = Path::new(base).join(&expanded);
        for component in joined.components() {
            match component {
                Component::Normal(part) => parts.push(part.to_str().unwrap().to_string()),
                Component::ParentDir if parts.pop().is_none() => {
                    return Some(format!(
                        "{file}: `{cited}` is outside the repository; state what it says instead"
                    ));
                }
                _ => {}
            }
        }
        // A `<placeholder>` stands for any name, like `*`.
        let parts: Vec<String> = parts
            .iter()
            .map(|p| {
                let mut out = String::new();
                let mut in_placeholder = false;
                for c in p.chars() {
                    match c {
                        '<' => in_placeholder = true,
                        '>' if in_placeholder => {
                            in_placeholder = false;
                            out.push('*');
                        }
                        c if !in_placeholder => out.push(c),
                        _ => {}
                    }
                }
                out
            })
            .collect();
        if !glob_exists(root, &parts) {
            return Some(format!(
                "{file}: `{cited}` names {}, which the repository does not contain",
                parts.join("/")
            ));
        }
        if let Some(section) = section.filter(|_| expanded.ends_with(".md") || path.is_empty()) {
            let target = root.join(parts.join("/"));
            let text = std::fs::read_to_string(&target).unwrap();
            if !anchors(&text).contains(section) {
                return Some(format!(
                    "{file}: `{cited}`: expected a heading making #{section} in {}, found none",
                    parts.join("/")
                ));
            }
        }
    }
    None
}

/// Every citation of `text` (the contents of `file`) that names no file of the repository,
/// with its line, and how many citations were checked.
fn broken_citations(root: &Path, file: &str, text: &str) -> (Vec<String>, usize) {
    let markdown = file.ends_with(".md");
    let mut problems = Vec::new();
    let mut checked = 0;
    for (number, line) in text.lines().enumerate() {
        let mut citations: Vec<(&str, bool)> =
            paths_in_line(line).into_iter().map(|p| (p, true)).collect();
        if markdown {
            citations.extend(link_targets(line).into_iter().map(|t| (t, false)));
        }
        for (cited, from_root) in citations {
            checked += 1;
            if let Some(problem) = citation_problem(root, file, cited, from_root) {
                problems.push(problem.replacen(file, &format!("{file}:{}", number + 1), 1));
            }
        }
    }
    (problems, checked)
}

#[test]
fn every_path_the_docs_cite_is_in_the_repository() {
    let root = common::repo_path("");
    let mut problems = Vec::new();
    let mut checked = 0;
    let files = citing_files();
    for file in &files {
        let (found, count) = broken_citations(&root, file, &read(file));
        problems.extend(found);
        checked += count;
    }
    assert!(
        problems.is_empty(),
        "cited paths the repository does not contain:\n{}",
        problems.join("\n")
    );
    // The scan reads what it is for: the files, and hundreds of citations among them.
    for file in [
        "README.md",
        "ARCHITECTURE.md",
        "BENCHMARKS.md",
        "docs/alerts.md",
        "systemd/teewatch.service",
        "dashboards/prometheus/alerts.yml",
    ] {
        assert!(
            files.iter().any(|f| f == file),
            "{file} is not scanned: {files:?}"
        );
    }
    assert!(
        checked > 300,
        "expected over 300 citations, found {checked}"
    );
}

#[test]
fn a_wrong_cited_path_is_reported() {
    let root = common::repo_path("");
    let architecture = read("ARCHITECTURE.md");
    let line = "| `src/daemon/{http,status_page}.rs` | `/metrics`, `/healthz`, `/readyz` and the status page";
    assert!(architecture.contains(line));
    let (problems, checked) = broken_citations(&root, "ARCHITECTURE.md", line);
    assert_eq!((problems.len(), checked), (0, 1), "{problems:?}");
    // One brace alternative renamed: only it is missing.
    let wrong = line.replace("status_page}", "status_pages}");
    let (problems, _) = broken_citations(&root, "ARCHITECTURE.md", &wrong);
    assert_eq!(
        problems,
        [
            "ARCHITECTURE.md:1: `src/daemon/{http,status_pages}.rs` names src/daemon/status_pages.rs, which the repository does not contain"
        ]
    );
    // A path from before the workspace split, a placeholder that matches nothing, a link
    // relative to the wrong folder, a missing section and a file outside the repository.
    for (file, text, expected) in [
        (
            "README.md",
            "compiled in (`src/anchors/`)",
            "README.md:1: `src/anchors/` names src/anchors, which the repository does not contain",
        ),
        (
            "docs/bundle.md",
            "see `tests/bundles/<case>.yaml`.",
            "docs/bundle.md:1: `tests/bundles/<case>.yaml` names tests/bundles/*.yaml, which the repository does not contain",
        ),
        (
            "docs/systemd.md",
            "[`config.toml`](config.toml)",
            "docs/systemd.md:1: `config.toml` names docs/config.toml, which the repository does not contain",
        ),
        (
            "docs/gpu.md",
            "[one GPU](security.md#one-gpu-two-parts)",
            "docs/gpu.md:1: `security.md#one-gpu-two-parts`: expected a heading making #one-gpu-two-parts in docs/security.md, found none",
        ),
        (
            "docs/pins.md",
            "(`../shared/REFERENCE.md` §3)",
            "docs/pins.md:1: `../shared/REFERENCE.md` is outside the repository; state what it says instead",
        ),
    ] {
        let (problems, checked) = broken_citations(&root, file, text);
        assert_eq!(problems, [expected], "{text}");
        assert_eq!(checked, 1, "{text}");
    }
    // The same citations written right pass.
    for (file, text) in [
        ("README.md", "compiled in (`crates/verify/anchors/`)"),
        ("docs/bundle.md", "see `tests/bundles/<case>.json`."),
        ("docs/systemd.md", "[`config.toml`](../config.toml)"),
        ("docs/gpu.md", "[one GPU](security.md#one-gpu-one-part)"),
    ] {
        assert_eq!(broken_citations(&root, file, text), (vec![], 1), "{text}");
    }
}
