//! Independent cross-check: every bundle is judged a second time by a Python verifier
//! (`tests/crosscheck/crosscheck.py`), written from the wire formats and Intel's and NVIDIA's
//! documented structures with other libraries (`cryptography`/OpenSSL for X.509, CRLs, P-256,
//! P-384 and ed25519; `coincurve`/libsecp256k1 for EIP-191 recovery; its own DCAP chain, TCB
//! level matching and Keccak-256), not from teewatch's verifier and not through dcap-qvl. It
//! answers with teewatch's check names and scopes, and each of its answers must agree with
//! teewatch's verdict on the same bundle, check by check, and every check of the kinds it judges
//! that teewatch reports must have its Python counterpart:
//!
//! - the simulator's dstack, NEAR gateway (ed25519 and ECDSA) and NEAR direct answers, one node
//!   and several, healthy (everything passes on both sides) and under faults, where the check the
//!   fault targets fails on both sides and every other check still agrees;
//! - every stored bundle: the real vectors under the production anchors (real Intel PCK chains,
//!   collateral and TCB levels, real GPU evidence, real canary signatures) and the stored format
//!   bundles under their simulator roots.
//!
//! So simulator and verifier cannot pass each other on a shared misunderstanding of the formats,
//! and teewatch's DCAP verdicts are not dcap-qvl's alone.
//!
//! Needs a Python with the packages pinned in `tests/crosscheck/requirements.txt`:
//! `TEEWATCH_PYTHON`, else the project's `.venv/bin/python` (`scripts/test` makes it). Without it
//! the tests fail naming the commands that make it; they never skip.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use crate::common;

use common::sim_run::{Running, unproven};

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use teewatch::config::{MonitorConfig, SigningAlgo};
use teewatch::fetch::check::Fetcher;
use teewatch::fetch::http::{Http, HttpOptions};
use teewatch::verify::{self, Bundle, State, TrustAnchors, Verdict};
use teewatch_sim::faults::Fault;
use teewatch_sim::format::SimFormat;
use teewatch_sim::server::{SimOptions, model_name};

/// The checks the Python side judges. For these, every check teewatch reports must have a
/// Python counterpart with the same scope (once the format is recognised); `pin:*` and
/// `identity_pinned` are policy over values both sides already compare, and stay teewatch's.
const JUDGED: [&str; 21] = [
    "attestation_format",
    "tdx_quote_parse",
    "tdx_quote_signature",
    "tdx_tcb_status",
    "tdx_debug_disabled",
    "tdx_td_attributes",
    "report_data_binding",
    "signing_key_address",
    "event_log_replay",
    "compose_binding",
    "same_td",
    "gpu_nonce",
    "gpu_evidence_signature",
    "nras_token",
    "nras_result",
    "gpu_unique",
    "ohttp_key_binding",
    "tls_key_binding",
    "canary_fresh",
    "canary_hashes",
    "canary_signature",
];

/// Observed values both sides read; where both report one for a scope they must be equal.
const OBSERVED: [&str; 10] = [
    "mrtd",
    "rtmr0",
    "rtmr1",
    "rtmr2",
    "rtmr3",
    "mrconfigid",
    "report_data",
    "fmspc",
    "tcb_status",
    "tcb_advisory_ids",
];

/// Runs the script on `dir`; its JSON answer.
fn run_python(python: &Path, dir: &Path) -> Value {
    let script = common::repo_path("tests/crosscheck/crosscheck.py");
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

fn pem(der: &[u8]) -> String {
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = text
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

/// The trust anchors teewatch verifies with, as the script reads them.
fn roots(anchors: &TrustAnchors) -> Value {
    json!({
        "intel_root_pem": pem(&anchors.intel_root_der),
        "nvidia_root_pem": pem(&anchors.nvidia_device_root_der),
        "nras_intermediates_pem": anchors.nras_intermediates_der.iter().map(|d| pem(d)).collect::<String>(),
        "nras_issuer": anchors.nras_url,
    })
}

/// Python's answer on `bundle` under `anchors`, from a fresh folder `dir`.
fn python_judges(python: &Path, dir: &Path, bundle: &Value, anchors: &TrustAnchors) -> Value {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("bundle.json"),
        serde_json::to_string_pretty(bundle).unwrap(),
    )
    .unwrap();
    std::fs::write(dir.join("roots.json"), roots(anchors).to_string()).unwrap();
    let py = run_python(python, dir);
    let _ = std::fs::remove_dir_all(dir);
    py
}

fn py_checks(py: &Value) -> &[Value] {
    py["checks"].as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// Python's pass/fail of one check, when it judged it exactly once.
fn py_passed(py: &Value, name: &str, scope: &str) -> Option<bool> {
    let found: Vec<&Value> = py_checks(py)
        .iter()
        .filter(|c| c["name"] == name && c["scope"] == scope)
        .collect();
    (found.len() == 1).then(|| found[0]["pass"] == json!(true))
}

fn rust_state(v: &Verdict, name: &str, scope: &str) -> Option<State> {
    let found: Vec<_> = v
        .checks
        .iter()
        .filter(|c| c.name == name && c.scope == scope)
        .collect();
    (found.len() == 1).then(|| found[0].state)
}

/// Every place where the two sides disagree on the same bundle, and every error the script
/// reported (an error means it could not read something it should have).
fn disagreements(v: &Verdict, py: &Value) -> Vec<String> {
    let mut p = Vec::new();
    for e in py["errors"].as_array().into_iter().flatten() {
        p.push(format!("python error: {e}"));
    }
    let mut seen = BTreeSet::new();
    for c in py_checks(py) {
        let (name, scope) = (c["name"].as_str().unwrap(), c["scope"].as_str().unwrap());
        if !seen.insert((name, scope)) {
            p.push(format!("python judges {name} [{scope}] twice"));
            continue;
        }
        let python = c["pass"] == json!(true);
        match rust_state(v, name, scope) {
            None => p.push(format!(
                "{name} [{scope}]: python says {}, teewatch has it {} times",
                if python { "pass" } else { "fail" },
                v.checks
                    .iter()
                    .filter(|r| r.name == name && r.scope == scope)
                    .count()
            )),
            Some(state) if (state == State::Pass) != python => {
                let reason = &v
                    .checks
                    .iter()
                    .find(|r| r.name == name && r.scope == scope)
                    .unwrap()
                    .reason;
                p.push(format!(
                    "{name} [{scope}]: teewatch {state:?} ({reason}), python {} ({})",
                    if python { "pass" } else { "fail" },
                    c["why"].as_str().unwrap_or("")
                ));
            }
            Some(_) => {}
        }
    }
    // Coverage: once the format is recognised, Python judges every check of its kinds.
    if py_passed(py, "attestation_format", "") == Some(true) {
        for c in &v.checks {
            if JUDGED.contains(&c.name.as_str())
                && !seen.contains(&(c.name.as_str(), c.scope.as_str()))
            {
                p.push(format!(
                    "{} [{}] ({:?}) has no python counterpart",
                    c.name, c.scope, c.state
                ));
            }
        }
    }
    // Values both read.
    for o in py["observed"].as_array().into_iter().flatten() {
        let (scope, field) = (o["scope"].as_str().unwrap(), o["field"].as_str().unwrap());
        if !OBSERVED.contains(&field) {
            continue;
        }
        let python = o["value"].as_str().unwrap_or("").to_ascii_lowercase();
        let ours: Vec<String> = v
            .observed
            .iter()
            .filter(|r| r.scope == scope && r.field == field)
            .map(|r| r.value.to_ascii_lowercase())
            .collect();
        let set = |s: &str| s.split(',').map(str::to_string).collect::<BTreeSet<_>>();
        let same = |r: &String| {
            if field == "tcb_advisory_ids" {
                set(r) == set(&python)
            } else {
                *r == python
            }
        };
        if ours.is_empty() && field == "tcb_status" {
            // A status of a matched TCB level is one teewatch must report too, once the
            // signature verified on both sides (no level matched: both fail tdx_tcb_status,
            // compared above, and teewatch observes no status).
            let unmatched = ["tcbnotsupported", "tdxmodulemismatch"].contains(&python.as_str());
            if !unmatched && rust_state(v, "tdx_quote_signature", scope) == Some(State::Pass) {
                p.push(format!(
                    "tcb_status [{scope}]: python {python}, teewatch none"
                ));
            }
        } else if !ours.is_empty() && !ours.iter().any(same) {
            p.push(format!(
                "{field} [{scope}]: teewatch {ours:?}, python {python}"
            ));
        }
    }
    p
}

/// The python checks that did not pass, one line each.
fn python_failing(py: &Value) -> Vec<String> {
    py_checks(py)
        .iter()
        .filter(|c| c["pass"] != json!(true))
        .map(|c| format!("{} [{}]: {}", c["name"], c["scope"], c["why"]))
        .collect()
}

/// Models 0, 1 and 2 of the simulator serve dstack, the NEAR gateway and NEAR direct.
const DSTACK: usize = 0;
const GATEWAY: usize = 1;
const DIRECT: usize = 2;

/// A simulator over HTTPS (so NEAR's TLS binding is judged) with one model per format, `nodes`
/// nodes (model attestations behind the gateway) and `gpus` GPUs each.
async fn start(name: &str, nodes: usize, gpus: usize) -> Running {
    common::sim_run::start(
        &format!("crosscheck-{name}"),
        SimOptions {
            models: 3,
            nodes,
            gpus,
            formats: vec![
                SimFormat::Dstack,
                SimFormat::NearGateway,
                SimFormat::NearDirect,
            ],
            tls: true,
            ..SimOptions::default()
        },
    )
    .await
}

/// One check of model `index` with its target adjusted by `adjust`, through a fresh fetcher (no
/// cached collateral or JWKS, so service faults are seen): the bundle and teewatch's verdict.
async fn fetch(
    run: &Running,
    index: usize,
    adjust: fn(&mut MonitorConfig),
    tag: &str,
) -> (Value, Verdict) {
    let model = model_name(index);
    let mut config = run.config.clone();
    let target = config.targets.iter_mut().find(|t| t.name == model).unwrap();
    adjust(target.monitor.as_mut().unwrap());
    let http = Http::new(HttpOptions {
        total_timeout: Duration::from_secs(5),
        ..HttpOptions::for_config(&config)
    })
    .unwrap();
    let fetcher = Fetcher::new(http, Some(&run.dir.join(format!("collateral-{tag}"))));
    let target = config.target(&model).unwrap();
    let fetched = fetcher.check(&config, target).await.unwrap();
    let bundle = Bundle::from_value(fetched.clone()).unwrap();
    let verdict = verify::verify(&bundle, &target.policy, &config.trust_anchors());
    (fetched, verdict)
}

fn as_is(_: &mut MonitorConfig) {}

fn ecdsa(m: &mut MonitorConfig) {
    m.signing_algo = SigningAlgo::Ecdsa;
}

/// Fetches, has both sides judge, and returns (teewatch, python).
async fn both(
    python: &Path,
    run: &Running,
    index: usize,
    adjust: fn(&mut MonitorConfig),
    tag: &str,
) -> (Verdict, Value) {
    let (bundle, verdict) = fetch(run, index, adjust, tag).await;
    let py = python_judges(
        python,
        &run.dir.join(tag),
        &bundle,
        &run.config.trust_anchors(),
    );
    (verdict, py)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_bundle_is_valid_to_both_sides_and_they_agree() {
    let python = common::tool::python();
    let one = start("healthy-1", 1, 2).await;
    let three = start("healthy-3", 3, 1).await;
    // (simulator, model, adjustment, what, GPUs in the answer, OHTTP attestations served)
    type Case<'a> = (
        &'a Running,
        usize,
        fn(&mut MonitorConfig),
        &'a str,
        usize,
        bool,
    );
    let cases: [Case; 7] = [
        (&one, DSTACK, as_is, "dstack, one node, two gpus", 2, false),
        (&one, GATEWAY, as_is, "near gateway, ed25519", 2, true),
        (&one, GATEWAY, ecdsa, "near gateway, ecdsa", 2, false),
        (&one, DIRECT, as_is, "near direct", 2, false),
        (&three, DSTACK, as_is, "dstack, three nodes", 3, false),
        (
            &three,
            GATEWAY,
            as_is,
            "near gateway, three models",
            3,
            true,
        ),
        (&three, DIRECT, as_is, "near direct, three nodes", 3, false),
    ];
    let mut problems = Vec::new();
    for (i, (run, index, adjust, what, gpus, ohttp)) in cases.into_iter().enumerate() {
        let (v, py) = both(&python, run, index, adjust, &format!("healthy-{i}")).await;
        let mut here = disagreements(&v, &py);
        here.extend(unproven(&v).into_iter().map(|c| format!("teewatch: {c}")));
        here.extend(
            python_failing(&py)
                .into_iter()
                .map(|c| format!("python: {c}")),
        );
        // Healthy means every kind of check was judged, not merely that nothing failed.
        let names: BTreeSet<&str> = py_checks(&py)
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        let mut want = vec![
            "tdx_quote_signature",
            "tdx_tcb_status",
            "report_data_binding",
            "event_log_replay",
            "compose_binding",
            "gpu_evidence_signature",
            "nras_token",
            "nras_result",
            "gpu_unique",
            "canary_fresh",
            "canary_hashes",
            "canary_signature",
        ];
        if index != DSTACK {
            want.extend(["signing_key_address", "same_td", "tls_key_binding"]);
        }
        if ohttp {
            want.push("ohttp_key_binding");
        }
        for name in want {
            if !names.contains(name) {
                here.push(format!("python judged no {name}"));
            }
        }
        let judged_gpus = py_checks(&py)
            .iter()
            .filter(|c| c["name"] == "gpu_evidence_signature")
            .count();
        if judged_gpus != gpus {
            here.push(format!("python judged {judged_gpus} gpus, expected {gpus}"));
        }
        if !here.is_empty() {
            problems.push(format!("{what}:\n  {}", here.join("\n  ")));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// One fault case: model, target adjustment, fault, and the checks it must fail on both sides
/// (none: a legitimate change that both sides accept, or one only pins catch).
struct FaultCase {
    index: usize,
    adjust: fn(&mut MonitorConfig),
    fault: Fault,
    fails: &'static [(&'static str, &'static str)],
}

const FAULTS: [FaultCase; 21] = [
    FaultCase {
        index: DSTACK,
        adjust: as_is,
        fault: Fault::BadQuoteSignature,
        fails: &[("tdx_quote_signature", "")],
    },
    FaultCase {
        index: DSTACK,
        adjust: as_is,
        fault: Fault::BadGpuSignature,
        fails: &[("gpu_evidence_signature", "gpu:0")],
    },
    FaultCase {
        index: DSTACK,
        adjust: as_is,
        fault: Fault::UnboundNonce,
        fails: &[
            ("report_data_binding", ""),
            ("gpu_nonce", "gpu:0"),
            ("gpu_nonce", "gpu:1"),
        ],
    },
    FaultCase {
        index: DSTACK,
        adjust: as_is,
        fault: Fault::WrongAddress,
        fails: &[("report_data_binding", "")],
    },
    FaultCase {
        index: DSTACK,
        adjust: as_is,
        fault: Fault::TcbOutdated,
        fails: &[("tdx_tcb_status", "")],
    },
    FaultCase {
        index: DSTACK,
        adjust: as_is,
        fault: Fault::TcbRevoked,
        fails: &[("tdx_tcb_status", "")],
    },
    FaultCase {
        index: DSTACK,
        adjust: as_is,
        fault: Fault::DebugTd,
        fails: &[("tdx_debug_disabled", "")],
    },
    FaultCase {
        index: DSTACK,
        adjust: as_is,
        fault: Fault::NrasFalse,
        fails: &[("nras_result", "gpu:0"), ("nras_result", "gpu:1")],
    },
    FaultCase {
        index: DSTACK,
        adjust: as_is,
        fault: Fault::JwksUntrusted,
        fails: &[("nras_token", "")],
    },
    FaultCase {
        index: DSTACK,
        adjust: as_is,
        fault: Fault::SignatureOtherKey,
        fails: &[("canary_signature", "canary:0")],
    },
    FaultCase {
        index: DSTACK,
        adjust: as_is,
        fault: Fault::CanaryReplay,
        fails: &[("canary_hashes", "canary:1")],
    },
    FaultCase {
        index: DSTACK,
        adjust: as_is,
        fault: Fault::DriftCompose,
        fails: &[],
    },
    FaultCase {
        index: GATEWAY,
        adjust: as_is,
        fault: Fault::TlsWrongPeer,
        fails: &[("tls_key_binding", "")],
    },
    FaultCase {
        index: GATEWAY,
        adjust: as_is,
        fault: Fault::ActionsTampered,
        fails: &[("report_data_binding", "model:0/compose_manager")],
    },
    FaultCase {
        index: GATEWAY,
        adjust: as_is,
        fault: Fault::OhttpWrongKey,
        fails: &[
            ("ohttp_key_binding", "gateway"),
            ("ohttp_key_binding", "model:0"),
        ],
    },
    FaultCase {
        index: GATEWAY,
        adjust: as_is,
        fault: Fault::Redeploy,
        fails: &[],
    },
    FaultCase {
        index: GATEWAY,
        adjust: as_is,
        fault: Fault::BadQuoteSignature,
        fails: &[("tdx_quote_signature", "model:0")],
    },
    FaultCase {
        index: GATEWAY,
        adjust: ecdsa,
        fault: Fault::SignatureOtherKey,
        fails: &[("canary_signature", "canary:0")],
    },
    FaultCase {
        index: DIRECT,
        adjust: as_is,
        fault: Fault::ActionsTampered,
        fails: &[("report_data_binding", "compose_manager")],
    },
    FaultCase {
        index: DIRECT,
        adjust: as_is,
        fault: Fault::TlsWrongPeer,
        fails: &[("tls_key_binding", "")],
    },
    FaultCase {
        index: DIRECT,
        adjust: as_is,
        fault: Fault::UnboundNonce,
        fails: &[("report_data_binding", ""), ("gpu_nonce", "gpu:0")],
    },
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_fault_is_invalid_to_both_sides_for_the_same_reason() {
    let python = common::tool::python();
    let run = start("faults", 1, 2).await;
    let mut problems = Vec::new();
    for (i, case) in FAULTS.iter().enumerate() {
        let model = model_name(case.index);
        run.sim
            .state
            .set_fault(Some(&model), case.fault, true)
            .unwrap();
        let (v, py) = both(
            &python,
            &run,
            case.index,
            case.adjust,
            &format!("fault-{i}"),
        )
        .await;
        run.sim
            .state
            .set_fault(Some(&model), case.fault, false)
            .unwrap();
        // The simulator's NRAS switches its signer back only when the JWKS is next fetched,
        // which a check does after NRAS: switch it now so the next case starts clean.
        run.sim
            .state
            .nras
            .lock()
            .unwrap()
            .use_untrusted_signer(false);
        eprintln!(
            "{} on model {}: teewatch fails {:?}; python fails {:?}",
            case.fault,
            case.index,
            common::sim_run::failing(&v),
            python_failing(&py)
        );
        let mut here = disagreements(&v, &py);
        for (name, scope) in case.fails {
            if rust_state(&v, name, scope) == Some(State::Pass)
                || rust_state(&v, name, scope).is_none()
            {
                here.push(format!("expected teewatch's {name} [{scope}] to fail"));
            }
            if py_passed(&py, name, scope) != Some(false) {
                here.push(format!("expected python's {name} [{scope}] to fail"));
            }
        }
        if case.fails.is_empty() {
            // A change only pins see (or none at all): Python, which judges no pin, passes all.
            here.extend(
                python_failing(&py)
                    .into_iter()
                    .map(|c| format!("python: {c}")),
            );
            here.extend(
                unproven(&v)
                    .into_iter()
                    .filter(|c| !c.starts_with("pin:") && !c.starts_with("identity_pinned"))
                    .map(|c| format!("teewatch: {c}")),
            );
        } else if v.state == State::Pass {
            here.push("expected teewatch's verdict not to pass".into());
        }
        if !here.is_empty() {
            problems.push(format!(
                "{} on model {}:\n  {}",
                case.fault,
                case.index,
                here.join("\n  ")
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_stored_bundle_is_judged_alike_by_both_sides() {
    let python = common::tool::python();
    let scratch =
        std::env::temp_dir().join(format!("teewatch-crosscheck-{}-stored", std::process::id()));
    let mut problems = Vec::new();
    let mut judged = 0;
    // Real vectors, under the production anchors and each bundle's own policy.
    let mut names: Vec<String> = std::fs::read_dir(common::repo_path("tests/bundles"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            name.strip_suffix(".json").map(str::to_string)
        })
        .collect();
    names.sort();
    for name in &names {
        let bundle = common::bundle(name);
        let v = common::verdict(&bundle);
        let py = python_judges(
            &python,
            &scratch.join(name),
            &common::bundle_json(name),
            &TrustAnchors::production(),
        );
        let here = disagreements(&v, &py);
        judged += py_checks(&py).len();
        if !here.is_empty() {
            problems.push(format!("{name}:\n  {}", here.join("\n  ")));
        }
    }
    // The stored simulator bundles of the other formats, under their configurations.
    let mut formats: Vec<String> = std::fs::read_dir(common::repo_path("tests/bundles/formats"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    formats.sort();
    for name in &formats {
        let (value, config) = common::format_case(name);
        let v = common::verify_format_case(value.clone(), &config);
        let py = python_judges(
            &python,
            &scratch.join(name),
            &value,
            &config.trust_anchors(),
        );
        let here = disagreements(&v, &py);
        judged += py_checks(&py).len();
        if !here.is_empty() {
            problems.push(format!("formats/{name}:\n  {}", here.join("\n  ")));
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    assert!(
        names.len() >= 17 && formats.len() >= 7,
        "{names:?} {formats:?}"
    );
    assert!(judged > 400, "python judged only {judged} checks");
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
        "canary": [{"stream": false, "request_body": "{}", "response_body": "{}", "signature": {"text": "a:b", "signature": "0x00"}}],
    });
    std::fs::write(dir.join("bundle.json"), bundle.to_string()).unwrap();
    std::fs::write(dir.join("roots.json"), "{\"intel_root_pem\": \"nope\"}").unwrap();
    let py = run_python(&python, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(py["format"], json!("dstack"), "{py:#}");
    assert_eq!(
        py_passed(&py, "attestation_format", ""),
        Some(true),
        "{py:#}"
    );
    // Every check of the part, GPU and canary is judged, and none passes.
    for (name, scope) in [
        ("tdx_quote_parse", ""),
        ("tdx_quote_signature", ""),
        ("tdx_tcb_status", ""),
        ("report_data_binding", ""),
        ("event_log_replay", ""),
        ("gpu_evidence_signature", "gpu:0"),
        ("gpu_nonce", "gpu:0"),
        ("nras_token", ""),
        ("gpu_unique", ""),
        ("canary_fresh", "canary:0"),
        ("canary_hashes", "canary:0"),
        ("canary_signature", "canary:0"),
    ] {
        assert_eq!(
            py_passed(&py, name, scope),
            Some(false),
            "{name} [{scope}]: {py:#}"
        );
    }
    assert!(!py["errors"].as_array().unwrap().is_empty(), "{py:#}");

    // And no input directory at all.
    let py = run_python(&python, &dir);
    assert!(py_checks(&py).is_empty(), "{py:#}");
    assert!(!py["errors"].as_array().unwrap().is_empty(), "{py:#}");
}

/// Judges `bundle` on both sides under `anchors`; every disagreement, prefixed with `what`.
fn compare(
    python: &Path,
    dir: &Path,
    what: &str,
    bundle: &Value,
    anchors: &TrustAnchors,
) -> (Verdict, Value, Vec<String>) {
    let parsed = Bundle::from_value(bundle.clone()).unwrap();
    let policy = parsed
        .policy
        .as_ref()
        .map(|s| verify::Policy::from_snapshot(s).unwrap())
        .unwrap_or_default();
    let v = verify::verify(&parsed, &policy, anchors);
    let py = python_judges(python, dir, bundle, anchors);
    let problems = disagreements(&v, &py)
        .into_iter()
        .map(|p| format!("{what}: {p}"))
        .collect();
    (v, py, problems)
}

/// Changes the byte at `offset` of a hex string.
fn flip_hex(hex_text: &str, offset: usize) -> String {
    let mut bytes = hex::decode(hex_text.trim_start_matches("0x")).unwrap();
    bytes[offset] ^= 0x01;
    hex::encode(bytes)
}

#[test]
fn one_change_in_real_intel_evidence_fails_both_sides_alike() {
    // dcap-qvl's real v4 quote and Intel's real collateral for it, under the real Intel root:
    // each mutation changes one thing, and both sides must fail the quote's signature (or its
    // TCB) for it and agree on every other check.
    let python = common::tool::python();
    let scratch =
        std::env::temp_dir().join(format!("teewatch-crosscheck-{}-intel", std::process::id()));
    let original = common::bundle_json("dcapqvl-v4-uptodate");
    let quote = original["attestation"]["intel_quote"]
        .as_str()
        .unwrap()
        .to_string();
    let raw = hex::decode(&quote).unwrap();
    // v4: body 48..632, then the signature data: u32 length, quote signature (64), attestation
    // key (64), certification data type and size (6), QE report (384), its signature (64), QE
    // auth data length (2) and data, then the PCK chain's type and size (6) and PEM.
    let qe_report = 636 + 64 + 64 + 6;
    let auth_len = usize::from(u16::from_le_bytes([
        raw[qe_report + 448],
        raw[qe_report + 449],
    ]));
    let pem_start = qe_report + 450 + auth_len + 6;
    let mut cases: Vec<(String, Value, &str)> = Vec::new();
    let mut mutate = |what: &str, check: &'static str, change: &dyn Fn(&mut Value)| {
        let mut b = original.clone();
        change(&mut b);
        cases.push((what.to_string(), b, check));
    };
    mutate("mrtd byte", "tdx_quote_signature", &|b| {
        b["attestation"]["intel_quote"] = json!(flip_hex(&quote, 48 + 136));
    });
    mutate("attestation key byte", "tdx_quote_signature", &|b| {
        b["attestation"]["intel_quote"] = json!(flip_hex(&quote, 636 + 64 + 5));
    });
    mutate("qe report isvsvn", "tdx_quote_signature", &|b| {
        b["attestation"]["intel_quote"] = json!(flip_hex(&quote, qe_report + 258));
    });
    mutate("qe report signature byte", "tdx_quote_signature", &|b| {
        b["attestation"]["intel_quote"] = json!(flip_hex(&quote, qe_report + 384 + 7));
    });
    if auth_len > 0 {
        mutate("qe auth data byte", "tdx_quote_signature", &|b| {
            b["attestation"]["intel_quote"] = json!(flip_hex(&quote, qe_report + 450));
        });
    }
    mutate("pck leaf certificate byte", "tdx_quote_signature", &|b| {
        // A base64 letter in the middle of the leaf: its DER, hence its signature, changes.
        let mut bytes = hex::decode(&quote).unwrap();
        let at = pem_start + 200;
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        b["attestation"]["intel_quote"] = json!(hex::encode(bytes));
    });
    mutate("tcb info text", "tdx_quote_signature", &|b| {
        let text = b["tdx_collateral"]["tcb_info"]
            .as_str()
            .unwrap()
            .replacen("UpToDate", "UpToDatE", 1);
        b["tdx_collateral"]["tcb_info"] = json!(text);
    });
    mutate("qe identity text", "tdx_quote_signature", &|b| {
        let text = b["tdx_collateral"]["qe_identity"]
            .as_str()
            .unwrap()
            .replacen("\"isvprodid\":2", "\"isvprodid\":3", 1);
        b["tdx_collateral"]["qe_identity"] = json!(text);
    });
    mutate("root ca crl byte", "tdx_quote_signature", &|b| {
        let crl = b["tdx_collateral"]["root_ca_crl"]
            .as_str()
            .unwrap()
            .to_string();
        b["tdx_collateral"]["root_ca_crl"] = json!(flip_hex(&crl, 40));
    });
    mutate("pck crl byte", "tdx_quote_signature", &|b| {
        let crl = b["tdx_collateral"]["pck_crl"].as_str().unwrap().to_string();
        b["tdx_collateral"]["pck_crl"] = json!(flip_hex(&crl, 60));
    });
    mutate("judged a year later", "tdx_quote_signature", &|b| {
        b["observed_at"] = json!("2026-06-25T00:00:00Z");
    });
    mutate("policy allows only OutOfDate", "tdx_tcb_status", &|b| {
        b["policy"]["allowed_tcb_statuses"] = json!(["OutOfDate"]);
    });
    let anchors = TrustAnchors::production();
    // The original passes both sides' quote checks, so each failure below is the change's.
    let (v, py, mut problems) = compare(
        &python,
        &scratch.join("original"),
        "original",
        &original,
        &anchors,
    );
    for check in ["tdx_quote_signature", "tdx_tcb_status"] {
        assert_eq!(
            rust_state(&v, check, ""),
            Some(State::Pass),
            "{check}: {v:#?}"
        );
        assert_eq!(py_passed(&py, check, ""), Some(true), "{check}: {py:#}");
    }
    assert!(!py["checks"].as_array().unwrap().is_empty(), "{py:#}");
    for (i, (what, bundle, check)) in cases.iter().enumerate() {
        let (v, py, here) = compare(
            &python,
            &scratch.join(format!("case-{i}")),
            what,
            bundle,
            &anchors,
        );
        problems.extend(here);
        if rust_state(&v, check, "") == Some(State::Pass) {
            problems.push(format!("{what}: teewatch's {check} passes"));
        }
        if py_passed(&py, check, "") != Some(false) {
            problems.push(format!("{what}: python's {check} does not fail"));
        }
        eprintln!(
            "{what}: teewatch {:?}, python {}",
            v.checks
                .iter()
                .find(|c| c.name == *check)
                .map(|c| &c.reason),
            py_checks(&py)
                .iter()
                .find(|c| c["name"] == *check)
                .map(|c| c["why"].to_string())
                .unwrap_or_default()
        );
    }
    let _ = std::fs::remove_dir_all(&scratch);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn tcb_levels_are_matched_alike() {
    // Quotes of the simulator's test Intel PKI with other TEE_TCB_SVNs, against its TCB info
    // in each status: the TDX module identity and its levels, the platform's TDX components, the
    // SGX level and the QE level must give both sides the same status.
    use teewatch_sim::intel::{IntelTestPki, TcbStatusChoice, TdBody};
    let python = common::tool::python();
    let scratch =
        std::env::temp_dir().join(format!("teewatch-crosscheck-{}-tcb", std::process::id()));
    let now = chrono::Utc::now();
    let pki = IntelTestPki::generate("http://127.0.0.1:9", now).unwrap();
    let mut anchors = TrustAnchors::production();
    anchors.intel_root_der = pki.root_der().to_vec();
    // (TEE_TCB_SVN[0..3]: module ISVSVN, module version, first platform TDX component)
    let svns: [[u8; 3]; 8] = [
        [6, 1, 3], // the simulated module: UpToDate
        [5, 1, 3], // below the module's UpToDate level, on its OutOfDate one
        [3, 1, 3], // below every level of module TDX_01
        [3, 3, 3], // module version 3: TDX_03's level
        [6, 2, 3], // module version 2: no TDX_02 identity
        [6, 1, 2], // platform TDX component below every level
        [6, 0, 3], // module version 0: all sixteen components compared with the levels
        [5, 0, 3], // version 0 and component 0 below the levels
    ];
    let mut problems = Vec::new();
    let mut statuses = BTreeSet::new();
    for status in TcbStatusChoice::ALL {
        let collateral = pki.collateral(status).unwrap();
        for svn in svns {
            let mut body = TdBody::default();
            body.tee_tcb_svn[..3].copy_from_slice(&svn);
            let quote = pki.quote_v4(&body).unwrap();
            let bundle = json!({
                "format": "teewatch-bundle/1",
                "target": "tcb",
                "observed_at": now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "nonce": "00".repeat(32),
                "attestation": {"intel_quote": hex::encode(quote), "signing_address": format!("0x{}", "00".repeat(20))},
                "tdx_collateral": [collateral],
            });
            let what = format!("{} {svn:?}", status.as_str());
            let (v, py, here) = compare(&python, &scratch.join(&what), &what, &bundle, &anchors);
            problems.extend(here);
            let ours = v
                .observed
                .iter()
                .find(|o| o.field == "tcb_status")
                .map(|o| o.value.clone());
            let theirs = py["observed"]
                .as_array()
                .unwrap()
                .iter()
                .find(|o| o["field"] == "tcb_status")
                .map(|o| o["value"].as_str().unwrap().to_string());
            eprintln!(
                "{what}: teewatch {ours:?} {:?} ({}), python {theirs:?} ({})",
                rust_state(&v, "tdx_tcb_status", ""),
                v.checks
                    .iter()
                    .find(|c| c.name == "tdx_tcb_status")
                    .map(|c| c.reason.as_str())
                    .unwrap_or(""),
                py_checks(&py)
                    .iter()
                    .find(|c| c["name"] == "tdx_tcb_status")
                    .map(|c| c["why"].to_string())
                    .unwrap_or_default(),
            );
            statuses.insert(theirs.unwrap_or_else(|| "none".into()));
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    // The cases reach more than one outcome, so the matching itself is compared.
    assert!(statuses.len() >= 4, "{statuses:?}");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
