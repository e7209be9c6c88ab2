//! A command line that explains itself: every `--help` ends with examples and exit codes,
//! `--version` names the commit, `completions` and `man` come from the parser's definitions,
//! `config check` takes `--config`, a missing target is named with the ones there are, an empty
//! configuration and a missing database are errors with their own codes, the checklist ends with
//! a summary derived from its checks, and a bundle made under test roots says so.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use crate::common::process;

use std::path::{Path, PathBuf};
use std::process::Output;

use process::teewatch;

fn repo(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn out(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn err(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

#[track_caller]
fn assert_exit(output: &Output, expected: i32, what: &str) {
    assert_eq!(
        output.status.code(),
        Some(expected),
        "{what}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out(output),
        err(output)
    );
}

/// A scratch directory unique to this process and test, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("teewatch-explain-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn every_help_has_examples_and_exit_codes() {
    for path in super::COMMANDS.iter() {
        let mut args: Vec<&str> = path.to_vec();
        args.push("--help");
        let output = teewatch(&args);
        assert_exit(&output, 0, &args.join(" "));
        let help = out(&output);
        let examples = help
            .split("Examples:\n")
            .nth(1)
            .unwrap_or_else(|| panic!("{args:?}: no Examples section:\n{help}"));
        assert!(
            examples.lines().any(|l| l.starts_with("  teewatch ")),
            "{args:?}: no example command:\n{help}"
        );
        let codes = help
            .split("Exit codes:\n")
            .nth(1)
            .unwrap_or_else(|| panic!("{args:?}: no Exit codes section:\n{help}"));
        assert!(
            codes.lines().any(|l| l.trim_start().starts_with("0  ")),
            "{args:?}: exit code 0 is not listed:\n{codes}"
        );
        assert!(
            codes.lines().any(|l| l.trim_start().starts_with("64  ")),
            "{args:?}: the usage code is not listed:\n{codes}"
        );
    }
}

/// The fault list in `sim --help` is the simulator's own: every name, none missing.
#[test]
fn sim_help_lists_every_fault_of_the_simulator() {
    let help = out(&teewatch(["sim", "--help"]));
    let faults = help
        .split("\nFaults (")
        .nth(1)
        .and_then(|s| s.split("Examples:").next())
        .expect("sim --help has a Faults section");
    let listed: Vec<&str> = faults
        .lines()
        .skip(1)
        .filter(|l| l.starts_with("    "))
        .flat_map(str::split_whitespace)
        .collect();
    let expected: Vec<&str> = teewatch_sim::faults::ALL_FAULTS
        .iter()
        .map(|f| f.name())
        .collect();
    let mut sorted_listed = listed.clone();
    sorted_listed.sort_unstable();
    let mut sorted_expected = expected.clone();
    sorted_expected.sort_unstable();
    assert_eq!(sorted_listed, sorted_expected, "{faults}");
}

#[test]
fn version_names_the_commit_and_its_date() {
    let output = teewatch(["--version"]);
    assert_exit(&output, 0, "--version");
    let text = out(&output);
    let rest = text
        .trim()
        .strip_prefix(&format!("teewatch {} (commit ", env!("CARGO_PKG_VERSION")))
        .unwrap_or_else(|| panic!("--version: {text}"));
    let (commit, date) = rest
        .trim_end_matches(')')
        .split_once(", ")
        .unwrap_or_else(|| panic!("--version: {text}"));
    // Built from this repository: git knows the commit and its date.
    assert!(
        commit.len() >= 7 && commit.chars().all(|c| c.is_ascii_hexdigit()),
        "commit: {commit:?}"
    );
    let parts: Vec<&str> = date.split('-').collect();
    assert!(
        parts.len() == 3 && parts.iter().all(|p| p.chars().all(|c| c.is_ascii_digit())),
        "date: {date:?}"
    );
}

#[test]
fn completions_and_the_manual_page_come_from_the_parser() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let output = teewatch(["completions", shell]);
        assert_exit(&output, 0, shell);
        let script = out(&output);
        // fish names long options without their dashes.
        for name in ["verify", "check", "history", "save-bundle"] {
            assert!(script.contains(name), "{shell} completions lack {name}");
        }
    }
    let output = teewatch(["completions", "tcsh"]);
    assert_exit(&output, 64, "an unknown shell");

    let output = teewatch(["man"]);
    assert_exit(&output, 0, "man");
    let page = out(&output);
    assert!(
        page.starts_with(".ie") || page.starts_with(".TH"),
        "{}",
        &page[..80]
    );
    assert!(page.contains(".TH teewatch 1"), "no title line");
    for section in [
        "TEEWATCH VERIFY",
        "TEEWATCH HISTORY EXPORT",
        "TEEWATCH CONFIG CHECK",
        "TEEWATCH SIM",
    ] {
        assert!(page.contains(section), "the page lacks {section}");
    }
    assert!(page.contains("Exit codes:") && page.contains("Examples:"));
}

const VALID: &str = "[[target]]\nname = \"alpha\"\n\n[[target]]\nname = \"beta\"\n";

#[test]
fn config_check_takes_config_and_still_the_positional_file() {
    let scratch = Scratch::new("config_check");
    let path = scratch.write("two.toml", VALID);
    for args in [
        vec!["config", "check", "--config", path.to_str().unwrap()],
        vec!["config", "check", path.to_str().unwrap()],
    ] {
        let output = teewatch(&args);
        assert_exit(&output, 0, &args.join(" "));
        assert_eq!(
            out(&output),
            format!("{}: valid, 2 target(s)\n", path.display())
        );
    }
    let output = teewatch([
        "config",
        "check",
        "--config",
        path.to_str().unwrap(),
        path.to_str().unwrap(),
    ]);
    assert_exit(&output, 64, "both forms at once");
}

#[test]
fn an_empty_configuration_is_an_error() {
    let scratch = Scratch::new("empty");
    let bundle = repo("tests/bundles/dcapqvl-v4-uptodate.json");
    for (what, text) in [
        ("an empty file", ""),
        (
            "sections but no target",
            "[daemon]\nlisten = \"127.0.0.1:9477\"\n",
        ),
    ] {
        let path = scratch.write("empty.toml", text);
        let p = path.to_str().unwrap();
        for args in [
            vec!["config", "check", "--config", p],
            vec!["check", "--config", p],
            vec!["verify", "--config", p, bundle.to_str().unwrap()],
        ] {
            let output = teewatch(&args);
            assert_exit(&output, 78, &format!("{what}: {}", args.join(" ")));
            assert_eq!(
                err(&output),
                format!(
                    "{p}: 1 problem\n  target: expected at least one [[target]], found none: there is nothing to check\n"
                ),
                "{what}"
            );
            assert!(out(&output).is_empty());
        }
    }
}

#[test]
fn a_missing_target_is_named_with_the_targets_there_are() {
    let scratch = Scratch::new("targets");
    let path = scratch.write("two.toml", VALID);
    let p = path.to_str().unwrap();
    let bundle = repo("tests/bundles/dcapqvl-v4-uptodate.json");
    for args in [
        vec!["check", "--config", p, "--target", "nope"],
        vec!["pin", "--config", p, "--target", "nope"],
        vec![
            "verify",
            "--config",
            p,
            "--target",
            "nope",
            bundle.to_str().unwrap(),
        ],
    ] {
        let output = teewatch(&args);
        assert_exit(&output, 78, &args.join(" "));
        assert_eq!(
            err(&output),
            format!(
                "teewatch: {p}: no [[target]] named \"nope\"; its targets are \"alpha\", \"beta\"\n"
            )
        );
    }
}

#[test]
fn history_without_a_database_says_so_with_exit_66() {
    let scratch = Scratch::new("nodb");
    let db = scratch.0.join("missing.db");
    let d = db.to_str().unwrap();
    let config = scratch.write(
        "c.toml",
        &format!("[daemon]\ndb = \"{d}\"\n\n[[target]]\nname = \"alpha\"\n"),
    );
    let c = config.to_str().unwrap();
    for args in [
        vec!["history", "--db", d],
        vec!["history", "--config", c],
        vec!["history", "export", "--db", d, "--check", "1"],
        vec![
            "history", "ack", "--db", d, "--target", "alpha", "--field", "mrtd",
        ],
        vec!["backup", "--db", d, "--out", "/nonexistent/copy.db"],
    ] {
        let output = teewatch(&args);
        assert_exit(&output, 66, &args.join(" "));
        assert_eq!(err(&output), format!("teewatch: no database at {d}\n"));
        assert!(!db.exists(), "{args:?} created the database");
    }
    // A file that is there but no store is still a data error.
    let junk = scratch.write("junk.db", "not sqlite");
    let output = teewatch(["history", "--db", junk.to_str().unwrap()]);
    assert_exit(&output, 65, "a file that is no store");
}

/// The last two lines of a checklist.
fn summary(checklist: &str) -> (String, String) {
    let lines: Vec<&str> = checklist.lines().collect();
    let n = lines.len();
    (lines[n - 2].to_string(), lines[n - 1].to_string())
}

const ECDSA: &str = "tests/bundles/formats/near-gateway-ecdsa";

#[test]
fn the_checklist_ends_with_a_summary_of_its_checks() {
    // All proven: the simulator bundle with the configuration that trusts its roots.
    let config = repo(&format!("{ECDSA}/sim.toml"));
    let bundle = repo(&format!("{ECDSA}/bundle.json"));
    let output = teewatch([
        "verify",
        "--config",
        config.to_str().unwrap(),
        bundle.to_str().unwrap(),
    ]);
    assert_exit(&output, 0, "all pass");
    let json = teewatch([
        "verify",
        "--json",
        "--config",
        config.to_str().unwrap(),
        bundle.to_str().unwrap(),
    ]);
    let verdict: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let total = verdict["checks"].as_array().unwrap().len();
    let (counts, sentence) = summary(&out(&output));
    assert_eq!(
        counts,
        format!("summary: {total} pass, 0 fail, 0 unknown ({total} checks)")
    );
    assert_eq!(
        sentence,
        "genuine TDX hardware, a fresh key binding, genuine NVIDIA GPUs, signed answers from an \
         attested key and the pinned software are proven"
    );

    // One thing changed: the mrtd pin names another value, so only the software is not proven.
    let scratch = Scratch::new("summary");
    let text = std::fs::read_to_string(&config).unwrap();
    let pinned = verdict["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "pin:mrtd")
        .unwrap();
    assert_eq!(pinned["state"], "pass");
    let mrtd_line = text
        .lines()
        .find(|l| l.starts_with("mrtd = "))
        .expect("the simulator pins mrtd");
    let edited = text.replacen(mrtd_line, &format!("mrtd = [\"{}\"]", "ab".repeat(48)), 1);
    // Relative paths (its test roots) are read beside the configuration.
    for entry in std::fs::read_dir(repo(ECDSA)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), scratch.0.join(entry.file_name())).unwrap();
    }
    let wrong = scratch.write("sim.toml", &edited);
    let output = teewatch([
        "verify",
        "--config",
        wrong.to_str().unwrap(),
        bundle.to_str().unwrap(),
    ]);
    assert_exit(&output, 1, "a wrong mrtd pin");
    let (counts, sentence) = summary(&out(&output));
    assert!(counts.contains(" 1 fail, 0 unknown"), "{counts}");
    assert_eq!(
        sentence,
        "genuine TDX hardware, a fresh key binding, genuine NVIDIA GPUs and signed answers from \
         an attested key are proven; the software is not the pinned one (pin:mrtd failed)"
    );

    // One thing changed: no configuration, so Intel's real root judges the quotes made under
    // test roots. The canary signatures still verify against the key the report binds, but a
    // binding inside an unverified quote proves nothing: the sentence must not call them proven.
    let output = teewatch(["verify", bundle.to_str().unwrap()]);
    assert_exit(
        &output,
        1,
        "without the configuration that trusts the test roots",
    );
    let (_, sentence) = summary(&out(&output));
    assert!(
        sentence.starts_with(
            "nothing is proven; genuine TDX hardware is not proven (tdx_quote_signature failed)"
        ),
        "{sentence}"
    );
    assert!(
        sentence.contains(
            "signed answers from an attested key are not proven (they rest on genuine TDX \
             hardware, which is not proven)"
        ),
        "{sentence}"
    );

    // A real sample: what is not proven, each with the check that kept it.
    let output = teewatch([
        "verify",
        repo("tests/bundles/pmlsdk-dstack-sample.json")
            .to_str()
            .unwrap(),
    ]);
    let (_, sentence) = summary(&out(&output));
    assert_eq!(
        sentence,
        "nothing is proven; genuine TDX hardware is undecided (tdx_quote_signature unknown); a \
         fresh key binding is not proven (report_data_binding failed); genuine NVIDIA GPUs are \
         not proven (gpu_nonce failed); signed answers from an attested key are undecided \
         (canary_fresh unknown); which software runs is not pinned"
    );

    // Nothing fetched: nothing proven.
    let output = teewatch([
        "verify",
        repo("tests/bundles/fetch-failed.json").to_str().unwrap(),
    ]);
    assert_eq!(
        summary(&out(&output)).1,
        "nothing is proven: attestation_format is unknown"
    );
}

#[test]
fn a_bundle_made_under_test_roots_says_so_without_its_configuration() {
    let bundle = repo(&format!("{ECDSA}/bundle.json"));
    let b = bundle.to_str().unwrap();
    let output = teewatch(["verify", b]);
    assert_exit(&output, 1, "judged against Intel's root");
    let note = err(&output);
    assert!(
        note.starts_with(&format!(
            "teewatch: note: {b}: made under test roots (CN=teewatch TEST Intel SGX Root CA"
        )),
        "{note}"
    );
    assert!(
        note.contains("verify with the configuration that trusts them (--config FILE)"),
        "{note}"
    );
    assert_eq!(note.lines().count(), 1, "{note}");
    // The verdict is still printed, as JSON too.
    assert!(out(&output).starts_with("✗ FAIL  target TEE/sim-model-0"));
    let json = teewatch(["verify", "--json", b]);
    assert_exit(&json, 1, "--json");
    assert!(err(&json).contains("made under test roots"));
    let _: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();

    // With the configuration that trusts them: no note.
    let config = repo(&format!("{ECDSA}/sim.toml"));
    let output = teewatch(["verify", "--config", config.to_str().unwrap(), b]);
    assert_exit(&output, 0, "with its configuration");
    assert!(err(&output).is_empty(), "{}", err(&output));

    // A real bundle under Intel's root: no note.
    let real = repo("tests/bundles/dcapqvl-v4-uptodate.json");
    let output = teewatch(["verify", real.to_str().unwrap()]);
    assert!(err(&output).is_empty(), "{}", err(&output));
    assert!(Path::new(&real).exists());
}
