//! Helpers shared by the integration tests: loading the real-vector bundles and reading verdicts,
//! the simulator's test Intel PKI, and (in submodules) the simulator, the daemon, processes, the
//! tools the tests run and NRAS tokens.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

pub mod alertmanager;
pub mod daemon_run;
pub mod net;
pub mod nras_mint;
pub mod postgres;
pub mod process;
pub mod prom;
pub mod prom_server;
pub mod promtool;
pub mod sim_run;
pub mod tool;
pub mod tool_server;

use std::path::PathBuf;
use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use teewatch_sim::intel::IntelTestPki;

use teewatch::verify::{self, Bundle, Policy, State, TrustAnchors, Verdict};

/// Compares each `(name, verdict JSON)` with `<golden_dir>/<name>.json`, or writes them all when
/// `TEEWATCH_BLESS` is exactly `1`; panics listing every mismatch. Any other value of
/// `TEEWATCH_BLESS` is refused, so a stray `TEEWATCH_BLESS=0` or empty value never rewrites.
pub fn assert_golden(golden_dir: &std::path::Path, verdicts: &[(String, String)]) {
    let bless = bless();
    let mut mismatches = Vec::new();
    for (name, text) in verdicts {
        let golden = golden_dir.join(format!("{name}.json"));
        if bless {
            std::fs::create_dir_all(golden_dir).unwrap();
            std::fs::write(&golden, text).unwrap();
            continue;
        }
        match std::fs::read_to_string(&golden) {
            Ok(expected) if expected == *text => {}
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

/// Whether `TEEWATCH_BLESS=1` asks to rewrite the golden files: only exactly `1` does; unset is
/// no; any other value fails the test rather than guess.
pub fn bless() -> bool {
    match std::env::var_os("TEEWATCH_BLESS") {
        None => false,
        Some(v) if v == "1" => true,
        Some(v) => panic!("TEEWATCH_BLESS={v:?}: only TEEWATCH_BLESS=1 rewrites golden files"),
    }
}

/// A stored simulator bundle of `tests/bundles/formats/<name>/` as JSON, with the configuration
/// (pins, NRAS URL, `[dangerous]` test roots) it verifies under.
pub fn format_case(name: &str) -> (serde_json::Value, teewatch::config::Config) {
    let dir = repo_path(&format!("tests/bundles/formats/{name}"));
    let text = std::fs::read_to_string(dir.join("bundle.json")).unwrap();
    let config =
        teewatch::config::Config::load(&dir.join("sim.toml")).unwrap_or_else(|e| panic!("{e}"));
    (serde_json::from_str(&text).unwrap(), config)
}

/// Verifies a stored simulator bundle (as JSON) under its configuration.
pub fn verify_format_case(value: serde_json::Value, config: &teewatch::config::Config) -> Verdict {
    let bundle = Bundle::from_value(value).unwrap();
    let target = config.target(&bundle.target).unwrap();
    verify::verify(&bundle, &target.policy, &config.trust_anchors())
}

/// The simulator's test Intel PKI, one for the whole test binary (generating it is the slow
/// part), made at a fixed "now" that it returns with it.
pub fn intel_test_pki() -> &'static (IntelTestPki, DateTime<Utc>) {
    static PKI: OnceLock<(IntelTestPki, DateTime<Utc>)> = OnceLock::new();
    PKI.get_or_init(|| {
        let now = Utc::now();
        let pki = IntelTestPki::generate("http://127.0.0.1:9/", now).unwrap();
        (pki, now)
    })
}

/// A path in the repository, from its root.
pub fn repo_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// Loads `tests/bundles/<name>.json`.
pub fn bundle(name: &str) -> Bundle {
    let path = repo_path(&format!("tests/bundles/{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    Bundle::from_json(&text).unwrap()
}

/// The policy a bundle carries, or the default one.
pub fn own_policy(bundle: &Bundle) -> Policy {
    bundle
        .policy
        .as_ref()
        .map(|s| Policy::from_snapshot(s).unwrap())
        .unwrap_or_default()
}

/// Verifies a bundle under its own policy and the production anchors.
pub fn verdict(bundle: &Bundle) -> Verdict {
    verify::verify(bundle, &own_policy(bundle), &TrustAnchors::production())
}

pub fn verdict_with(bundle: &Bundle, policy: &Policy) -> Verdict {
    verify::verify(bundle, policy, &TrustAnchors::production())
}

/// The state and reason of the one check with this name and scope; panics if absent or repeated.
pub fn check<'a>(verdict: &'a Verdict, name: &str, scope: &str) -> (State, &'a str) {
    let found: Vec<_> = verdict
        .checks
        .iter()
        .filter(|c| c.name == name && c.scope == scope)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one {name} [{scope}] in {:#?}",
        verdict.checks
    );
    (found[0].state, found[0].reason.as_str())
}

pub fn state(verdict: &Verdict, name: &str) -> State {
    check(verdict, name, "").0
}

pub fn reason<'a>(verdict: &'a Verdict, name: &str) -> &'a str {
    check(verdict, name, "").1
}

/// The observed values of a field in a scope, with their sources.
pub fn observed(verdict: &Verdict, scope: &str, field: &str) -> Vec<(String, &'static str)> {
    verdict
        .observed
        .iter()
        .filter(|o| o.scope == scope && o.field == field)
        .map(|o| (o.value.clone(), o.source.as_str()))
        .collect()
}

/// A bundle as JSON, for tests that change one thing in a valid input.
pub fn bundle_json(name: &str) -> serde_json::Value {
    let path = repo_path(&format!("tests/bundles/{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

pub fn from_json(value: serde_json::Value) -> Bundle {
    Bundle::from_value(value).unwrap()
}

/// A dstack runtime event (imr 3) as JSON, with its digest as dstack computes it from the name
/// and payload: what an OS or an application appends to RTMR3.
pub fn runtime_event(name: &str, payload: &[u8]) -> serde_json::Value {
    use teewatch::verify::dstack::{self, RUNTIME_EVENT_TYPE};
    let event = dstack::Event {
        imr: 3,
        event_type: RUNTIME_EVENT_TYPE,
        supplied_digest: vec![],
        name: name.into(),
        payload: payload.to_vec(),
        version: 1,
    };
    serde_json::json!({
        "imr": 3,
        "event_type": RUNTIME_EVENT_TYPE,
        "digest": hex::encode(dstack::runtime_event_digest(&event)),
        "event": name,
        "event_payload": hex::encode(payload),
    })
}
