//! The `teewatch` binary's contract: exit codes, the `--json` verdict, the human checklist, and how
//! bad command lines, bad bundles and bad configurations are reported; the submodules: every
//! `--help` example run as written, the help texts, completions, man page and version, and
//! output into a closed pipe.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

// The examples and the pipe tests drive `teewatch sim`, which exists only with the simulator.
#[cfg(feature = "sim")]
mod examples;
mod explains;
#[cfg(feature = "sim")]
mod pipes;

/// Every command path with a `--help` of its own, each of which must end with examples (run as
/// written by `examples`) and the command's exit codes (`explains`).
const COMMANDS: [&[&str]; 15] = [
    &[],
    &["verify"],
    &["check"],
    &["pin"],
    &["sim"],
    &["run"],
    &["demo"],
    &["history"],
    &["history", "export"],
    &["history", "ack"],
    &["history", "verify"],
    &["backup"],
    &["config", "check"],
    &["completions"],
    &["man"],
];

use crate::common;

use crate::common::process;

use std::path::{Path, PathBuf};
use std::process::Output;

use process::teewatch;

use serde_json::{Value, json};
use teewatch::verify::{self, Bundle, Policy, State, TrustAnchors};

const MRENCLAVE: &str = "6489d6c8e4f92f160b7cad34207b00c100000000000000000000000000000000";

fn bundle_path(name: &str) -> PathBuf {
    common::repo_path(&format!("tests/bundles/{name}.json"))
}

/// A scratch directory unique to this process and test, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("teewatch-cli-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn code(output: &Output) -> i32 {
    output.status.code().expect("the process exited normally")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("stdout is utf-8")
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).expect("stderr is utf-8")
}

/// Asserts the exit code, showing both streams when it is wrong.
#[track_caller]
fn assert_exit(output: &Output, expected: i32, what: &str) {
    assert_eq!(
        code(output),
        expected,
        "{what}: exit code\n--- stdout ---\n{}\n--- stderr ---\n{}",
        stdout(output),
        stderr(output)
    );
}

/// The verdict the library gives for a bundle file under the bundle's own policy snapshot.
fn library_verdict(path: &Path) -> Value {
    let bundle = Bundle::from_json(&std::fs::read_to_string(path).unwrap()).unwrap();
    let (policy, source) = match &bundle.policy {
        Some(snapshot) => (
            Policy::from_snapshot(snapshot).unwrap(),
            verify::policy::POLICY_FROM_BUNDLE,
        ),
        None => (Policy::default(), verify::policy::POLICY_DEFAULT),
    };
    let mut verdict = verify::verify(&bundle, &policy, &TrustAnchors::production());
    // The library leaves the policy's source to its caller; the cli names it.
    verdict.policy_source = Some(source.to_string());
    serde_json::to_value(verdict).unwrap()
}

fn real_bundles() -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(common::repo_path("tests/bundles"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("json"))
        .collect();
    paths.sort();
    assert!(
        paths.len() >= 10,
        "expected the real bundles in tests/bundles"
    );
    paths
}

/// The v4 dcap-qvl bundle reshaped as a two-node response, so that checks carry node scopes.
fn two_node_bundle(scratch: &Scratch) -> PathBuf {
    let mut value: Value =
        serde_json::from_str(&std::fs::read_to_string(bundle_path("dcapqvl-v4-uptodate")).unwrap())
            .unwrap();
    let first = value["attestation"].clone();
    let mut second = first.clone();
    second["signing_address"] = json!(format!("0x{}", "11".repeat(20)));
    value["target"] = json!("two-nodes");
    value["attestation"]["all_attestations"] = json!([first, second]);
    scratch.write(
        "two-nodes.json",
        &serde_json::to_string_pretty(&value).unwrap(),
    )
}

// ---------------------------------------------------------------------------------------------
// Verdict exit codes
// ---------------------------------------------------------------------------------------------

#[test]
fn the_exit_code_follows_the_verdict() {
    // Exit 0: every check passes. No real vector binds a signing address and this check's nonce
    // under collateral that covers it, so these are simulator bundles checked with their own
    // configuration (its pins and `[dangerous]` test roots).
    for case in [
        "near-gateway-ed25519",
        "near-gateway-ecdsa",
        "near-direct-3-nodes",
    ] {
        let dir = common::repo_path(&format!("tests/bundles/formats/{case}"));
        let (bundle, config) = (dir.join("bundle.json"), dir.join("sim.toml"));
        let human = teewatch([
            "verify".as_ref(),
            bundle.as_os_str(),
            "--config".as_ref(),
            config.as_os_str(),
        ]);
        assert_exit(&human, 0, &format!("{case} (every check passes)"));
        assert!(stdout(&human).contains("PASS"), "{}", stdout(&human));
        let json = teewatch([
            "verify".as_ref(),
            "--json".as_ref(),
            bundle.as_os_str(),
            "--config".as_ref(),
            config.as_os_str(),
        ]);
        assert_exit(&json, 0, &format!("{case} --json"));
        let verdict: Value = serde_json::from_str(&stdout(&json)).unwrap();
        assert_eq!(verdict["state"], "pass", "{case}");
        let not_passing: Vec<&Value> = verdict["checks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["state"] != "pass")
            .collect();
        assert!(not_passing.is_empty(), "{case}: {not_passing:#?}");
    }

    let unknown = teewatch(["verify".as_ref(), bundle_path("fetch-failed").as_os_str()]);
    assert_exit(&unknown, 2, "fetch-failed (every check unknown)");
    assert!(stdout(&unknown).contains("UNKNOWN"), "{}", stdout(&unknown));

    let failed = teewatch([
        "verify".as_ref(),
        bundle_path("dcapqvl-v4-uptodate").as_os_str(),
    ]);
    assert_exit(&failed, 1, "dcapqvl-v4-uptodate (some checks fail)");
    assert!(stdout(&failed).contains("FAIL"), "{}", stdout(&failed));

    // The code is the same with --json.
    for (name, expected) in [("fetch-failed", 2), ("dcapqvl-v4-uptodate", 1)] {
        let out = teewatch([
            "verify".as_ref(),
            "--json".as_ref(),
            bundle_path(name).as_os_str(),
        ]);
        assert_exit(&out, expected, &format!("{name} --json"));
    }
}

#[test]
fn every_real_bundle_exits_with_the_code_of_its_verdict_state() {
    for path in real_bundles() {
        let verdict = library_verdict(&path);
        let expected = match verdict["state"].as_str().unwrap() {
            "pass" => 0,
            "fail" => 1,
            "unknown" => 2,
            other => panic!("{}: state {other}", path.display()),
        };
        let out = teewatch(["verify".as_ref(), path.as_os_str()]);
        assert_exit(&out, expected, &path.display().to_string());
    }
}

// ---------------------------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------------------------

#[test]
fn json_output_is_the_library_verdict() {
    let scratch = Scratch::new("json_output_is_the_library_verdict");
    let mut paths = real_bundles();
    paths.push(two_node_bundle(&scratch));
    for path in paths {
        let out = teewatch(["verify".as_ref(), "--json".as_ref(), path.as_os_str()]);
        let what = path.display().to_string();
        assert!(matches!(code(&out), 1 | 2), "{what}: exit {}", code(&out));
        let printed: Value = serde_json::from_str(&stdout(&out))
            .unwrap_or_else(|e| panic!("{what}: --json output is not json: {e}\n{}", stdout(&out)));
        assert_eq!(printed["format"], "teewatch-verdict/1", "{what}");
        assert_eq!(
            printed,
            library_verdict(&path),
            "{what}: cli and library verdicts differ"
        );
        assert!(stderr(&out).is_empty(), "{what}: stderr {}", stderr(&out));
    }
}

#[test]
fn human_output_lists_every_check_with_its_mark_and_scope() {
    let scratch = Scratch::new("human_output_lists_every_check");
    for path in [
        bundle_path("dcapqvl-v4-uptodate"),
        two_node_bundle(&scratch),
    ] {
        let what = path.display().to_string();
        let out = teewatch(["verify".as_ref(), path.as_os_str()]);
        assert_exit(&out, 1, &what);
        let text = stdout(&out);
        assert!(text.contains('✓'), "{what}: no ✓ in\n{text}");
        assert!(text.contains('✗'), "{what}: no ✗ in\n{text}");

        let verdict: verify::Verdict = serde_json::from_value(library_verdict(&path)).unwrap();
        assert!(text.starts_with("✗ FAIL"), "{what}: headline\n{text}");
        for check in &verdict.checks {
            let label = if check.scope.is_empty() {
                check.name.clone()
            } else {
                format!("{} [{}]", check.name, check.scope)
            };
            let mark = match check.state {
                State::Pass => "✓",
                State::Fail => "✗",
                State::Unknown => "?",
            };
            let listed = text.lines().any(|line| {
                line.trim_start()
                    .strip_prefix(mark)
                    .is_some_and(|rest| rest.trim_start().starts_with(&format!("{label} ")))
            });
            assert!(listed, "{what}: no line \"{mark} {label}\" in\n{text}");
        }
    }

    // The two-node bundle's checks carry both node scopes.
    let text = stdout(&teewatch([
        "verify".as_ref(),
        two_node_bundle(&scratch).as_os_str(),
    ]));
    for scope in [
        format!("[node:0x{}]", "00".repeat(20)),
        format!("[node:0x{}]", "11".repeat(20)),
    ] {
        assert!(
            text.contains(&format!("tdx_quote_signature {scope}")),
            "{scope} in\n{text}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Usage errors: 64, never clap's own 2 (which would read as "unknown")
// ---------------------------------------------------------------------------------------------

#[test]
fn usage_errors_exit_64() {
    let bundle = bundle_path("dcapqvl-v4-uptodate");
    let bundle = bundle.to_str().unwrap();
    let cases: [(&str, Vec<&str>); 8] = [
        ("no arguments", vec![]),
        ("unknown subcommand", vec!["frobnicate"]),
        ("unknown top-level flag", vec!["--frobnicate"]),
        (
            "unknown verify flag",
            vec!["verify", "--frobnicate", bundle],
        ),
        (
            "--target without --config",
            vec!["verify", "--target", "x", bundle],
        ),
        ("verify without a bundle", vec!["verify"]),
        ("config without a subcommand", vec!["config"]),
        ("config check without a file", vec!["config", "check"]),
    ];
    for (what, args) in cases {
        let out = teewatch(&args);
        assert_exit(&out, 64, what);
        assert!(
            !stderr(&out).is_empty(),
            "{what}: the usage error must be explained on stderr"
        );
        assert!(stdout(&out).is_empty(), "{what}: stdout {}", stdout(&out));
    }
}

#[test]
fn help_and_version_exit_0() {
    for args in [
        vec!["--help"],
        vec!["-h"],
        vec!["verify", "--help"],
        vec!["config", "check", "--help"],
    ] {
        let out = teewatch(&args);
        assert_exit(&out, 0, &args.join(" "));
        assert!(stdout(&out).contains("Usage"), "{args:?}: {}", stdout(&out));
    }
    let out = teewatch(["--version"]);
    assert_exit(&out, 0, "--version");
    assert!(
        stdout(&out).contains(env!("CARGO_PKG_VERSION")),
        "--version: {}",
        stdout(&out)
    );
}

// ---------------------------------------------------------------------------------------------
// Bad bundles: 65
// ---------------------------------------------------------------------------------------------

#[test]
fn unreadable_bundles_exit_65() {
    let scratch = Scratch::new("unreadable_bundles_exit_65");
    let mut missing_nonce: Value =
        serde_json::from_str(&std::fs::read_to_string(bundle_path("dcapqvl-v4-uptodate")).unwrap())
            .unwrap();
    missing_nonce.as_object_mut().unwrap().remove("nonce");

    let cases = [
        ("missing file", scratch.path("does-not-exist.json"), None),
        (
            "not json",
            scratch.write("not-json.json", "this is not json {"),
            None,
        ),
        (
            "a json array",
            scratch.write("array.json", "[1, 2, 3]"),
            None,
        ),
        (
            "no nonce",
            scratch.write("no-nonce.json", &missing_nonce.to_string()),
            Some("`nonce`"),
        ),
    ];
    for (what, path, needle) in cases {
        for json_flag in [false, true] {
            let mut args = vec!["verify".as_ref(), path.as_os_str()];
            if json_flag {
                args.push("--json".as_ref());
            }
            let out = teewatch(&args);
            assert_exit(&out, 65, what);
            let err = stderr(&out);
            assert!(
                err.contains(path.to_str().unwrap()),
                "{what}: stderr names the file: {err}"
            );
            if let Some(needle) = needle {
                assert!(
                    err.contains(needle),
                    "{what}: stderr must name {needle}: {err}"
                );
            }
            assert!(
                stdout(&out).is_empty(),
                "{what}: no verdict is printed: {}",
                stdout(&out)
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Bad configurations: 78
// ---------------------------------------------------------------------------------------------

const VALID_CONFIG: &str = r#"
[intel]
allowed_tcb_statuses = ["UpToDate", "SWHardeningNeeded"]

[[target]]
name = "dcapqvl-v4-uptodate"
api_key_env = "NANOGPT_API_KEY"

[target.pins]
intel_mrenclave = ["6489d6c8e4f92f160b7cad34207b00c100000000000000000000000000000000"]
"#;

fn verify_with_config(config: &Path) -> Output {
    teewatch([
        "verify".as_ref(),
        "--config".as_ref(),
        config.as_os_str(),
        bundle_path("dcapqvl-v4-uptodate").as_os_str(),
    ])
}

#[test]
fn bad_configurations_exit_78() {
    let scratch = Scratch::new("bad_configurations_exit_78");
    let target = "[[target]]\nname = \"dcapqvl-v4-uptodate\"\n";
    let cases: Vec<(&str, PathBuf, &str)> = vec![
        ("missing file", scratch.path("missing.toml"), "cannot read"),
        (
            "invalid toml",
            scratch.write("syntax.toml", "[[target]\nname = "),
            "(syntax)",
        ),
        (
            "unknown pin field",
            scratch.write(
                "pin-field.toml",
                &format!("{target}[target.pins]\nmrenclave_typo = [\"{MRENCLAVE}\"]\n"),
            ),
            "mrenclave_typo",
        ),
        (
            "non-hex pin",
            scratch.write(
                "pin-hex.toml",
                &format!(
                    "{target}[target.pins]\nintel_mrenclave = [\"{}\"]\n",
                    "zz".repeat(32)
                ),
            ),
            "intel_mrenclave",
        ),
        (
            "inline api_key",
            scratch.write(
                "api-key.toml",
                &format!("{target}api_key = \"sk-do-not-print\"\n"),
            ),
            "api_key",
        ),
        (
            "no target for the bundle",
            scratch.write("other-target.toml", "[[target]]\nname = \"someone-else\"\n"),
            "dcapqvl-v4-uptodate",
        ),
    ];
    for (what, path, needle) in cases {
        let out = verify_with_config(&path);
        assert_exit(&out, 78, what);
        let err = stderr(&out);
        assert!(
            err.contains(needle),
            "{what}: stderr must mention {needle:?}: {err}"
        );
        assert!(
            !err.contains("sk-do-not-print"),
            "{what}: the api key leaked: {err}"
        );
        assert!(
            stdout(&out).is_empty(),
            "{what}: no verdict is printed: {}",
            stdout(&out)
        );
    }

    // --target naming a target the configuration lacks.
    let valid = scratch.write("valid.toml", VALID_CONFIG);
    let out = teewatch([
        "verify".as_ref(),
        "--config".as_ref(),
        valid.as_os_str(),
        "--target".as_ref(),
        "nobody".as_ref(),
        bundle_path("dcapqvl-v4-uptodate").as_os_str(),
    ]);
    assert_exit(&out, 78, "--target naming no configured target");
    assert!(stderr(&out).contains("nobody"), "{}", stderr(&out));
}

#[test]
fn every_configuration_mistake_is_reported_at_once() {
    let scratch = Scratch::new("every_configuration_mistake");
    let config = scratch.write(
        "three.toml",
        &format!(
            r#"
[intel]
allowed_tcb_statuses = ["UpToDate", "MostlyUpToDate"]

[[target]]
name = "dcapqvl-v4-uptodate"

[target.pins]
intel_mrenclav = ["{MRENCLAVE}"]
mrtd = ["not-hex"]
"#
        ),
    );
    let needles = ["MostlyUpToDate", "intel_mrenclav", "not-hex", "3 problems"];
    for out in [
        verify_with_config(&config),
        teewatch(["config".as_ref(), "check".as_ref(), config.as_os_str()]),
    ] {
        assert_exit(&out, 78, "three mistakes");
        let err = stderr(&out);
        for needle in needles {
            assert!(
                err.contains(needle),
                "stderr must mention {needle:?}:\n{err}"
            );
        }
        assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    }
}

#[test]
fn config_check_exits_0_for_a_valid_file_and_78_for_an_invalid_one() {
    let scratch = Scratch::new("config_check");
    let valid = scratch.write("valid.toml", VALID_CONFIG);
    let out = teewatch(["config".as_ref(), "check".as_ref(), valid.as_os_str()]);
    assert_exit(&out, 0, "config check on a valid file");
    assert!(stdout(&out).contains("valid"), "{}", stdout(&out));

    let shipped = common::repo_path("config.toml");
    if shipped.exists() {
        let out = teewatch(["config".as_ref(), "check".as_ref(), shipped.as_os_str()]);
        assert_exit(&out, 0, "config check on the shipped example");
    }

    let invalid = scratch.write(
        "invalid.toml",
        "[[target]]\nname = \"x\"\ncolour = \"blue\"\n",
    );
    let out = teewatch(["config".as_ref(), "check".as_ref(), invalid.as_os_str()]);
    assert_exit(&out, 78, "config check on an invalid file");
    assert!(stderr(&out).contains("colour"), "{}", stderr(&out));

    let out = teewatch([
        "config".as_ref(),
        "check".as_ref(),
        scratch.path("missing.toml").as_os_str(),
    ]);
    assert_exit(&out, 78, "config check on a missing file");
}

// ---------------------------------------------------------------------------------------------
// Judging with a configuration's policy
// ---------------------------------------------------------------------------------------------

/// A bundle received from someone else carries the policy they chose: without `--config` the
/// checklist and the JSON verdict say the policy came from the bundle, and with it, from yours.
#[test]
fn the_verdict_says_where_its_policy_came_from() {
    let bundle = bundle_path("pmlsdk-dstack-sample");
    let out = teewatch(["verify".as_ref(), bundle.as_os_str()]);
    assert!(
        stdout(&out).contains(&format!(
            "\npolicy: {}\n",
            verify::policy::POLICY_FROM_BUNDLE
        )),
        "{}",
        stdout(&out)
    );
    let out = teewatch(["verify".as_ref(), "--json".as_ref(), bundle.as_os_str()]);
    let verdict: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(verdict["policy_source"], verify::policy::POLICY_FROM_BUNDLE);
    let out = teewatch([
        "verify".as_ref(),
        "--json".as_ref(),
        bundle_path("fetch-failed").as_os_str(),
    ]);
    let verdict: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(verdict["policy_source"], verify::policy::POLICY_DEFAULT);

    let scratch = Scratch::new("the_verdict_says_where_its_policy_came_from");
    let config = scratch.write("own.toml", "[[target]]\nname = \"mine\"\n");
    let out = teewatch([
        "verify".as_ref(),
        "--json".as_ref(),
        "--config".as_ref(),
        config.as_os_str(),
        "--target".as_ref(),
        "mine".as_ref(),
        bundle.as_os_str(),
    ]);
    let verdict: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        verdict["policy_source"],
        format!(
            "target \"mine\" of {} (your configuration)",
            config.display()
        )
    );
}

#[test]
fn a_configured_pin_is_judged_on_the_bundle() {
    let scratch = Scratch::new("a_configured_pin_is_judged");
    let config = scratch.write(
        "pin.toml",
        &format!("[[target]]\nname = \"nanogpt-sample\"\n\n[target.pins]\nintel_mrenclave = \"{MRENCLAVE}\"\n"),
    );
    let out = teewatch([
        "verify".as_ref(),
        "--json".as_ref(),
        "--config".as_ref(),
        config.as_os_str(),
        "--target".as_ref(),
        "nanogpt-sample".as_ref(),
        bundle_path("dcapqvl-v4-uptodate").as_os_str(),
    ]);
    assert_exit(&out, 1, "pinned intel_mrenclave");
    let verdict: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let pins: Vec<&Value> = verdict["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"].as_str().is_some_and(|n| n.starts_with("pin:")))
        .collect();
    // The configured pin, and the known-measurements table on mrseam and mrtd, which the
    // configuration does not pin: dcap-qvl's sample quote verifies, and runs module 1.5.06 and a
    // sample TD, neither of them known.
    assert_eq!(pins.len(), 3, "the configured pin and the table: {pins:?}");
    assert_eq!(pins[0]["name"], "pin:intel_mrenclave");
    assert_eq!(pins[0]["state"], "pass", "{}", pins[0]);
    assert_eq!(pins[1]["name"], "pin:mrseam");
    assert_eq!(
        pins[1]["reason"],
        "unknown tdx module: expected one of the 4 known (table v1), found 5b38e33a6487958b72c3c12a938eaa5e3fd4510c51aeeab58c7d5ecee41d7c436489d6c8e4f92f160b7cad34207b00c1 (quote)"
    );
    assert_eq!(pins[2]["name"], "pin:mrtd");
    assert_eq!(
        pins[2]["reason"],
        "unknown os image: expected one of the 2 known (table v1), found 91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7 (quote)"
    );
    // Opting out leaves only the configured pin.
    let opted_out = scratch.write(
        "opted-out.toml",
        &format!("[[target]]\nname = \"nanogpt-sample\"\nknown_measurements = false\n\n[target.pins]\nintel_mrenclave = \"{MRENCLAVE}\"\n"),
    );
    let out = teewatch([
        "verify".as_ref(),
        "--json".as_ref(),
        "--config".as_ref(),
        opted_out.as_os_str(),
        "--target".as_ref(),
        "nanogpt-sample".as_ref(),
        bundle_path("dcapqvl-v4-uptodate").as_os_str(),
    ]);
    let verdict: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let names: Vec<&str> = verdict["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .filter(|n| n.starts_with("pin:"))
        .collect();
    assert_eq!(
        names,
        ["pin:intel_mrenclave"],
        "only the configured pin is judged"
    );
    // The verdict names the bundle's target, whichever configured target judged it.
    assert_eq!(verdict["target"], "dcapqvl-v4-uptodate");

    // The configuration replaces the bundle's own snapshot (which also pins intel_mrsigner).
    let own = library_verdict(&bundle_path("dcapqvl-v4-uptodate"));
    assert!(
        own["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "pin:intel_mrsigner"),
        "the bundle's own policy pins intel_mrsigner"
    );

    // A pin that does not match fails.
    let wrong = scratch.write(
        "wrong.toml",
        &format!(
            "[[target]]\nname = \"dcapqvl-v4-uptodate\"\n\n[target.pins]\nintel_mrenclave = \"{}\"\n",
            "ab".repeat(32)
        ),
    );
    let out = teewatch([
        "verify".as_ref(),
        "--json".as_ref(),
        "--config".as_ref(),
        wrong.as_os_str(),
        bundle_path("dcapqvl-v4-uptodate").as_os_str(),
    ]);
    assert_exit(&out, 1, "mismatching intel_mrenclave pin");
    let verdict: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let pin = verdict["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "pin:intel_mrenclave")
        .expect("the pin is judged");
    assert_eq!(pin["state"], "fail", "{pin}");
}
