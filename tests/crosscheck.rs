//! Independent cross-check: the simulator's evidence is verified a second time by a small Python
//! script (`tests/crosscheck/crosscheck.py`, written from REFERENCE.md's formats with
//! `cryptography` and PyPI's `dcap-qvl`, not from teewatch's verifier), and every answer it gives
//! must agree with teewatch's verdict on the same bundle: healthy, and under the
//! `bad-quote-signature`, `bad-gpu-signature` and `unbound-nonce` faults. So simulator and
//! verifier cannot pass each other on a shared misunderstanding of the formats.
//!
//! Needs a Python with the packages pinned in `tests/crosscheck/requirements.txt`:
//! `TEEWATCH_PYTHON`, else the project's `.venv/bin/python` (`scripts/test` makes it). Without it
//! the tests fail naming the commands that make it; they never skip.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::sim_run::{Running, failing};

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde_json::{Value, json};
use teewatch::sim::faults::Fault;
use teewatch::sim::server::{SimOptions, model_name};
use teewatch::verify::{self, Bundle, State, Verdict};

const GPUS: usize = 2;

async fn start(name: &str) -> Running {
    common::sim_run::start(
        &format!("crosscheck-{name}"),
        SimOptions {
            gpus: GPUS,
            ..SimOptions::default()
        },
    )
    .await
}

/// Runs the script on `dir`; its JSON answer.
fn run_python(python: &Path, dir: &Path) -> Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/crosscheck/crosscheck.py");
    let started = Instant::now();
    let out = Command::new(python)
        .arg(&script)
        .arg(dir)
        .output()
        .unwrap_or_else(|e| panic!("running {python:?} {script:?}: {e}"));
    eprintln!("crosscheck.py on {dir:?}: {:?}", started.elapsed());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "crosscheck.py exited {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("crosscheck.py printed no JSON ({e}):\n{stdout}\n{stderr}"))
}

/// Fetches a bundle for `model`, has both sides judge it, and returns (teewatch, python).
async fn both(python: &Path, run: &Running, model: &str, tag: &str) -> (Verdict, Value) {
    let fetched = common::sim_run::fetch(run, model).await;
    let dir = run.dir.join(tag);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("bundle.json"),
        serde_json::to_string_pretty(&fetched).unwrap(),
    )
    .unwrap();
    let roots = json!({
        "intel_root_pem": run.sim.state.intel.root_pem(),
        "nvidia_root_pem": run.sim.state.nvidia.root_pem(),
        "nras_intermediate_pem": run.sim.state.nras.lock().unwrap().intermediate_pem(),
        "nras_issuer": run.sim.base_url,
    });
    std::fs::write(dir.join("roots.json"), roots.to_string()).unwrap();
    let answer = run_python(python, &dir);
    eprintln!("{tag}: python errors {}", answer["errors"]);
    let bundle = Bundle::from_value(fetched).unwrap();
    let target = run.config.target(model).unwrap();
    let verdict = verify::verify(&bundle, &target.policy, &run.config.trust_anchors());
    (verdict, answer)
}

/// Whether teewatch's one check `name` in `scope` passed; `None` (reported) when it is not there
/// exactly once.
fn passed(v: &Verdict, name: &str, scope: &str, problems: &mut Vec<String>) -> Option<bool> {
    let found: Vec<_> = v
        .checks
        .iter()
        .filter(|c| c.name == name && c.scope == scope)
        .collect();
    if found.len() != 1 {
        problems.push(format!(
            "teewatch has {} checks {name} [{scope}], expected one",
            found.len()
        ));
        return None;
    }
    Some(found[0].state == State::Pass)
}

fn observed(v: &Verdict, field: &str) -> Option<String> {
    v.observed
        .iter()
        .find(|o| o.scope.is_empty() && o.field == field)
        .map(|o| o.value.clone())
}

fn flag(py: &Value, key: &str) -> bool {
    py[key].as_bool().unwrap_or(false)
}

fn gpu_flag(py: &Value, gpu: usize, key: &str) -> bool {
    py["gpus"][gpu][key].as_bool().unwrap_or(false)
}

/// One comparison: teewatch's pass/fail of a check against Python's answer.
fn same(problems: &mut Vec<String>, what: &str, teewatch: Option<bool>, python: bool) {
    if let Some(t) = teewatch {
        if t != python {
            problems.push(format!(
                "{what}: teewatch says {}, python says {}",
                if t { "pass" } else { "fail" },
                if python { "valid" } else { "invalid" }
            ));
        }
    }
}

/// Every place where the two sides disagree on the same bundle.
fn disagreements(v: &Verdict, py: &Value) -> Vec<String> {
    let mut p = Vec::new();

    // The quote.
    let parse = passed(v, "tdx_quote_parse", "", &mut p);
    same(
        &mut p,
        "quote parses as a TDX quote",
        parse,
        flag(py, "quote_parses") && flag(py, "tee_type_tdx"),
    );
    if py["quote_version"] != json!(4) {
        p.push(format!(
            "python reads quote version {}, the simulator makes v4",
            py["quote_version"]
        ));
    }
    let signature = passed(v, "tdx_quote_signature", "", &mut p);
    same(
        &mut p,
        "quote signature (dcap-qvl under the test root)",
        signature,
        flag(py, "quote_signature_valid"),
    );
    same(
        &mut p,
        "quote signature (python's own ECDSA, QE report and PCK chain checks)",
        signature,
        flag(py, "quote_signature_valid_own"),
    );
    if signature == Some(true) {
        let ours = observed(v, "tcb_status");
        if ours.as_deref() != py["tcb_status"].as_str() {
            p.push(format!(
                "tcb status: teewatch {ours:?}, dcap-qvl {}",
                py["tcb_status"]
            ));
        }
    }
    let binding = passed(v, "report_data_binding", "", &mut p);
    same(
        &mut p,
        "REPORTDATA = address ‖ zeros ‖ nonce",
        binding,
        flag(py, "report_data_address_matches") && flag(py, "report_data_nonce_matches"),
    );
    for field in ["mrtd", "rtmr3"] {
        let ours = observed(v, field);
        if ours.is_none() || ours.as_deref() != py[field].as_str() {
            p.push(format!("{field}: teewatch {ours:?}, python {}", py[field]));
        }
    }
    let replay = passed(v, "event_log_replay", "", &mut p);
    same(
        &mut p,
        "event log replay (rtmr3 from recomputed runtime digests, rtmr0-2)",
        replay,
        flag(py, "rtmr3_replayed_matches") && flag(py, "rtmr012_replayed_matches"),
    );

    // The GPUs.
    let teewatch_gpus = v.checks_named("gpu_evidence_signature").count();
    if py["gpu_count"].as_u64() != Some(teewatch_gpus as u64) {
        p.push(format!(
            "gpu count: teewatch {teewatch_gpus}, python {}",
            py["gpu_count"]
        ));
    }
    for gpu in 0..teewatch_gpus {
        let scope = format!("gpu:{gpu}");
        let evidence = passed(v, "gpu_evidence_signature", &scope, &mut p);
        same(
            &mut p,
            &format!("{scope} spdm signature, chain and fwid"),
            evidence,
            gpu_flag(py, gpu, "gpu_signature_valid")
                && gpu_flag(py, gpu, "gpu_chain_valid")
                && py["gpus"][gpu]["gpu_fwid_matches"] != json!(false),
        );
        let nonce = passed(v, "gpu_nonce", &scope, &mut p);
        same(
            &mut p,
            &format!("{scope} nonce"),
            nonce,
            gpu_flag(py, gpu, "gpu_nonce_matches"),
        );
    }

    // NRAS.
    let token = passed(v, "nras_token", "", &mut p);
    same(
        &mut p,
        "nras token (signatures, eat_nonce, issuer, submod digests)",
        token,
        flag(py, "nras_signature_valid")
            && flag(py, "nras_eat_nonce_matches")
            && flag(py, "nras_issuer_matches")
            && flag(py, "nras_submod_digests_match"),
    );
    let results: Vec<bool> = v
        .checks_named("nras_result")
        .map(|c| c.state == State::Pass)
        .collect();
    let overall = py["nras_overall_result"].as_bool() == Some(true);
    if !overall && results.iter().all(|r| *r) {
        p.push("nras overall result: python reads false, teewatch passes every GPU".into());
    }
    if token == Some(true) && overall && !results.iter().all(|r| *r) {
        p.push("nras overall result: python reads true, teewatch fails a GPU".into());
    }
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_bundle_is_valid_to_both_sides_and_they_agree() {
    let python = common::tool::python();
    let run = start("healthy").await;
    let (v, py) = both(&python, &run, &model_name(0), "healthy").await;
    assert_eq!(v.state, State::Pass, "{:#?}", failing(&v));
    let problems = disagreements(&v, &py);
    assert!(
        problems.is_empty(),
        "{}\npython: {py:#}",
        problems.join("\n")
    );
    // Healthy means every independent answer is positive, not merely equal.
    for key in [
        "quote_parses",
        "tee_type_tdx",
        "report_data_address_matches",
        "report_data_nonce_matches",
        "quote_signature_valid",
        "quote_signature_valid_own",
        "rtmr3_replayed_matches",
        "rtmr012_replayed_matches",
        "nras_signature_valid",
        "nras_eat_nonce_matches",
        "nras_issuer_matches",
        "nras_submod_digests_match",
        "nras_overall_result",
    ] {
        assert_eq!(py[key], json!(true), "python {key}: {py:#}");
    }
    assert_eq!(py["tcb_status"], json!("UpToDate"), "{py:#}");
    assert_eq!(py["gpu_count"], json!(GPUS), "{py:#}");
    assert_eq!(py["nras_gpu_count"], json!(GPUS), "{py:#}");
    for gpu in 0..GPUS {
        for key in [
            "gpu_signature_valid",
            "gpu_chain_valid",
            "gpu_nonce_matches",
            "gpu_fwid_matches",
        ] {
            assert!(gpu_flag(&py, gpu, key), "python gpu {gpu} {key}: {py:#}");
        }
    }
    assert_eq!(py["errors"], json!([]), "{py:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_fault_is_invalid_to_both_sides_for_the_same_reason() {
    let python = common::tool::python();
    let run = start("faults").await;
    let model = model_name(0);
    let mut problems = Vec::new();
    for fault in [
        Fault::BadQuoteSignature,
        Fault::BadGpuSignature,
        Fault::UnboundNonce,
    ] {
        run.sim.state.set_fault(Some(&model), fault, true).unwrap();
        let (v, py) = both(&python, &run, &model, &fault.to_string()).await;
        run.sim.state.set_fault(Some(&model), fault, false).unwrap();
        let mut here: Vec<String> = disagreements(&v, &py);
        let mut expect = |ok: bool, what: &str| {
            if !ok {
                here.push(format!("expected {what}"));
            }
        };
        let check = |name: &str, scope: &str| {
            v.checks
                .iter()
                .find(|c| c.name == name && c.scope == scope)
                .map(|c| c.state)
        };
        expect(v.state != State::Pass, "teewatch's verdict not to pass");
        match fault {
            Fault::BadQuoteSignature => {
                expect(
                    check("tdx_quote_signature", "") == Some(State::Fail),
                    "teewatch: tdx_quote_signature fails",
                );
                expect(
                    !flag(&py, "quote_signature_valid") && !flag(&py, "quote_signature_valid_own"),
                    "python: quote signature invalid (dcap-qvl and own)",
                );
                // Nothing else is wrong with the quote.
                expect(
                    flag(&py, "report_data_address_matches")
                        && flag(&py, "report_data_nonce_matches")
                        && flag(&py, "rtmr3_replayed_matches"),
                    "python: binding and replay still fine",
                );
            }
            Fault::BadGpuSignature => {
                expect(
                    check("gpu_evidence_signature", "gpu:0") == Some(State::Fail),
                    "teewatch: gpu_evidence_signature [gpu:0] fails",
                );
                expect(
                    check("gpu_evidence_signature", "gpu:1") == Some(State::Pass),
                    "teewatch: gpu_evidence_signature [gpu:1] passes",
                );
                expect(
                    !gpu_flag(&py, 0, "gpu_signature_valid") && gpu_flag(&py, 0, "gpu_chain_valid"),
                    "python: gpu 0 signature invalid, its chain valid",
                );
                expect(
                    gpu_flag(&py, 1, "gpu_signature_valid"),
                    "python: gpu 1 signature valid",
                );
                expect(
                    flag(&py, "quote_signature_valid"),
                    "python: quote signature still valid",
                );
            }
            Fault::UnboundNonce => {
                expect(
                    check("report_data_binding", "") == Some(State::Fail),
                    "teewatch: report_data_binding fails",
                );
                expect(
                    flag(&py, "report_data_address_matches")
                        && !flag(&py, "report_data_nonce_matches"),
                    "python: REPORTDATA has the address but not the nonce",
                );
                expect(
                    (0..GPUS).all(|g| check("gpu_nonce", &format!("gpu:{g}")) == Some(State::Fail)),
                    "teewatch: gpu_nonce fails on every GPU",
                );
                expect(
                    (0..GPUS).all(|g| !gpu_flag(&py, g, "gpu_nonce_matches")),
                    "python: no GPU carries the nonce",
                );
                expect(
                    !flag(&py, "nras_eat_nonce_matches"),
                    "python: NRAS eat_nonce is not the nonce",
                );
                expect(
                    flag(&py, "quote_signature_valid") && gpu_flag(&py, 0, "gpu_signature_valid"),
                    "python: signatures themselves still valid",
                );
            }
            _ => unreachable!(),
        }
        if !here.is_empty() {
            problems.push(format!(
                "{fault}:\n  {}\n  teewatch failing: {:#?}\n  python: {py:#}",
                here.join("\n  "),
                failing(&v)
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_script_reports_bad_input_instead_of_crashing() {
    let python = common::tool::python();
    let dir = std::env::temp_dir().join(format!("teewatch-crosscheck-{}-bad", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bundle = json!({
        "format": "teewatch-bundle/1",
        "nonce": "zz",
        "attestation": {
            "intel_quote": "0400020081",
            "signing_address": 7,
            "event_log": "not json",
            "nvidia_payload": "{\"nonce\": \"00\", \"evidence_list\": [{\"evidence\": \"!!\", \"certificate\": \"\"}]}",
        },
        "tdx_collateral": null,
        "nras": {"response": [["JWT", "a.b.c"], {"GPU-0": 5}], "jwks": {"keys": []}},
    });
    std::fs::write(dir.join("bundle.json"), bundle.to_string()).unwrap();
    std::fs::write(dir.join("roots.json"), "{\"intel_root_pem\": \"nope\"}").unwrap();
    let py = run_python(&python, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    for key in [
        "quote_parses",
        "quote_signature_valid",
        "quote_signature_valid_own",
        "report_data_address_matches",
        "report_data_nonce_matches",
        "rtmr3_replayed_matches",
        "nras_signature_valid",
        "nras_eat_nonce_matches",
        "nras_submod_digests_match",
    ] {
        assert_eq!(py[key], json!(false), "{key}: {py:#}");
    }
    for gpu in py["gpus"].as_array().unwrap() {
        assert_eq!(gpu["gpu_signature_valid"], json!(false), "{py:#}");
    }
    assert!(!py["errors"].as_array().unwrap().is_empty(), "{py:#}");

    // And no input directory at all.
    let py = run_python(&python, &dir);
    assert_eq!(py["quote_parses"], json!(false), "{py:#}");
    assert!(!py["errors"].as_array().unwrap().is_empty(), "{py:#}");
}
