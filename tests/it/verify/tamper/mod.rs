//! The tamper matrix (issue 19): one data-driven test that changes one thing in a valid bundle
//! per row and asserts the exact check that must catch it. The bases are the real vectors of
//! `tests/bundles/` and simulator bundles of every verifiable format (dstack, the NEAR gateway
//! with ECDSA and ed25519 keys, NEAR direct with its compose manager, OHTTP keys and the TLS
//! peer); each row first proves that its check passes on the base, so the row shows what the
//! change did, then that the changed bundle is not `pass` and the named check has the expected
//! state and reason. The table in `docs/security.md` is written from these rows by the test
//! itself (`TEEWATCH_BLESS=1`) and compared on every other run, so the document cannot drift.
//!
//! The rows live in one file per kind of evidence (`quote`, `events`, `gpu`, `canary`, `near`);
//! `edit` holds the byte- and JSON-level helpers they share. While writing a row,
//! `TEEWATCH_TAMPER_SHOW=1 cargo test --test it verify::tamper -- --nocapture` prints each row's
//! reason and, for a row that does not hold, every check of its verdict that did not pass.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod canary;
mod edit;
mod events;
mod gpu;
mod near;
mod quote;
mod regen;

use crate::common;

use serde_json::Value;
use teewatch::verify::{self, Bundle, Policy, State, TrustAnchors, Verdict};

/// Where a row's valid bundle comes from.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Base {
    /// A real vector, `tests/bundles/<name>.json`, judged under its own policy and Intel's and
    /// NVIDIA's production roots.
    Real(&'static str),
    /// A simulator bundle, `tests/bundles/<dir>/bundle.json`, judged under the configuration
    /// beside it (its pins and `[dangerous]` test roots).
    Sim(&'static str),
}

impl Base {
    fn label(self) -> String {
        match self {
            Base::Real(name) => format!("real `{name}`"),
            Base::Sim(dir) => format!("sim `{}`", dir.rsplit('/').next().unwrap_or(dir)),
        }
    }

    /// The bundle as JSON and what it is judged under.
    fn load(self) -> (Value, Policy, TrustAnchors) {
        match self {
            Base::Real(name) => {
                let value = common::bundle_json(name);
                let policy = common::own_policy(&common::from_json(value.clone()));
                (value, policy, TrustAnchors::production())
            }
            Base::Sim(dir) => {
                let dir = common::repo_path(&format!("tests/bundles/{dir}"));
                let text = std::fs::read_to_string(dir.join("bundle.json")).unwrap();
                let value: Value = serde_json::from_str(&text).unwrap();
                let config = teewatch::config::Config::load(&dir.join("sim.toml"))
                    .unwrap_or_else(|e| panic!("{e}"));
                let target = value["target"].as_str().unwrap();
                let policy = config.target(target).unwrap().policy.clone();
                (value, policy, config.trust_anchors())
            }
        }
    }
}

/// The simulator bases.
pub const DSTACK: Base = Base::Sim("tamper/dstack-sim");
pub const ECDSA: Base = Base::Sim("formats/near-gateway-ecdsa");
pub const ED25519: Base = Base::Sim("formats/near-gateway-ed25519");
pub const DIRECT: Base = Base::Sim("formats/near-direct-3-nodes");
pub const PROXIED: Base = Base::Sim("formats/near-gateway-proxied");

/// One mutation and what must catch it.
pub struct Row {
    /// What the provider changed, as the table shows it.
    pub mutation: &'static str,
    pub base: Base,
    pub mutate: fn(&mut Value),
    /// The check that must not pass, and its scope.
    pub check: &'static str,
    pub scope: &'static str,
    /// `Fail`, or `Unknown` where the design says the question cannot be decided; `why` then
    /// says why (shown in the table).
    pub state: State,
    /// A piece of the check's reason.
    pub reason: &'static str,
    pub why: &'static str,
}

/// A row that must fail.
pub const fn fail(
    mutation: &'static str,
    base: Base,
    mutate: fn(&mut Value),
    check: &'static str,
    scope: &'static str,
    reason: &'static str,
) -> Row {
    Row {
        mutation,
        base,
        mutate,
        check,
        scope,
        state: State::Fail,
        reason,
        why: "",
    }
}

/// A change that names the same evidence another way, or touches a member teewatch does not
/// rely on: the verdict must stay what it was and the check must still pass, for the reason
/// `why` gives (shown in the table, so what teewatch accepts is on record too).
pub const fn same(
    mutation: &'static str,
    base: Base,
    mutate: fn(&mut Value),
    check: &'static str,
    scope: &'static str,
    reason: &'static str,
    why: &'static str,
) -> Row {
    Row {
        mutation,
        base,
        mutate,
        check,
        scope,
        state: State::Pass,
        reason,
        why,
    }
}

/// A row whose check must be `unknown`, with the reason the design gives for it.
pub const fn unknown(
    mutation: &'static str,
    base: Base,
    mutate: fn(&mut Value),
    check: &'static str,
    scope: &'static str,
    reason: &'static str,
    why: &'static str,
) -> Row {
    Row {
        mutation,
        base,
        mutate,
        check,
        scope,
        state: State::Unknown,
        reason,
        why,
    }
}

fn judge(value: Value, policy: &Policy, anchors: &TrustAnchors) -> Result<Verdict, String> {
    let bundle = Bundle::from_value(value).map_err(|e| format!("bundle refused: {e}"))?;
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        verify::verify(&bundle, policy, anchors)
    }))
    .map_err(|_| "the verifier panicked".to_string())
}

fn found(v: &Verdict, check: &str, scope: &str) -> Result<(State, String), String> {
    let hits: Vec<_> = v
        .checks
        .iter()
        .filter(|c| c.name == check && c.scope == scope)
        .collect();
    match hits.as_slice() {
        [one] => Ok((one.state, one.reason.clone())),
        _ => Err(format!(
            "expected one {check} [{scope}], found {}",
            hits.len()
        )),
    }
}

fn state_name(state: State) -> &'static str {
    match state {
        State::Pass => "pass",
        State::Fail => "fail",
        State::Unknown => "unknown",
    }
}

/// Runs one row; the problems it found, none when it holds.
fn run(row: &Row, cache: &mut Vec<(Base, Value, Policy, TrustAnchors)>) -> Vec<String> {
    if !cache.iter().any(|c| c.0 == row.base) {
        let (value, policy, anchors) = row.base.load();
        cache.push((row.base, value, policy, anchors));
    }
    let (_, base, policy, anchors) = cache.iter().find(|c| c.0 == row.base).unwrap();
    let mut problems = Vec::new();
    let before = judge(base.clone(), policy, anchors);
    let base_state = before.as_ref().map(|v| v.state).unwrap_or(State::Unknown);
    match before.and_then(|v| found(&v, row.check, row.scope)) {
        Ok((State::Pass, _)) => {}
        Ok((state, reason)) => problems.push(format!(
            "on the base: expected {} [{}] to pass, found {}: {reason}",
            row.check,
            row.scope,
            state_name(state)
        )),
        Err(e) => problems.push(format!("on the base: {e}")),
    }
    let mut changed = base.clone();
    let mutate = row.mutate;
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| mutate(&mut changed))).is_err() {
        problems.push("the mutation does not apply to this base".into());
        return problems;
    }
    if changed == *base {
        problems.push("the mutation changed nothing".into());
    }
    let verdict = match judge(changed, policy, anchors) {
        Ok(v) => v,
        Err(e) => {
            problems.push(e);
            return problems;
        }
    };
    if row.state == State::Pass {
        if verdict.state != base_state {
            problems.push(format!(
                "expected the verdict to stay {}, found {}",
                state_name(base_state),
                state_name(verdict.state)
            ));
        }
    } else if verdict.state == State::Pass {
        problems.push("false pass: the changed bundle passes".into());
    }
    match found(&verdict, row.check, row.scope) {
        Ok((state, reason)) => {
            if std::env::var_os("TEEWATCH_TAMPER_SHOW").is_some() {
                eprintln!("REASON\t{}\t{reason}", row.mutation);
            }
            if state != row.state || !reason.contains(row.reason) {
                problems.push(format!(
                    "expected {} with a reason containing {:?}, found {}: {reason}",
                    state_name(row.state),
                    row.reason,
                    state_name(state)
                ));
            }
        }
        Err(e) => problems.push(e),
    }
    if !problems.is_empty() && std::env::var_os("TEEWATCH_TAMPER_SHOW").is_some() {
        for c in verdict.checks.iter().filter(|c| c.state != State::Pass) {
            problems.push(format!(
                "  {} {} [{}]: {}",
                state_name(c.state),
                c.name,
                c.scope,
                c.reason
            ));
        }
    }
    problems
}

/// Every row, in table order.
fn rows() -> Vec<Row> {
    [
        quote::rows(),
        events::rows(),
        gpu::rows(),
        canary::rows(),
        near::rows(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The markdown table of the rows, as `docs/security.md` carries it between the markers.
fn table(rows: &[Row]) -> String {
    let attacks = rows.iter().filter(|r| r.state != State::Pass).count();
    let mut out = format!(
        "{attacks} single mutations that change what the evidence proves, each caught by the check \
         named, none giving `pass`; and {} that name the same evidence another way or touch a \
         member teewatch does not rely on, which rightly keep their verdict (result `pass`, with \
         the reason).\n\n\
         | # | base | mutation | check [scope] | result | reason contains |\n\
         |---|---|---|---|---|---|\n",
        rows.len() - attacks
    );
    for (i, row) in rows.iter().enumerate() {
        let scope = if row.scope.is_empty() {
            String::new()
        } else {
            format!(" [{}]", row.scope)
        };
        let result = if row.why.is_empty() {
            state_name(row.state).to_string()
        } else {
            format!("{} ({})", state_name(row.state), row.why)
        };
        out.push_str(&format!(
            "| {} | {} | {} | `{}`{} | {} | {} |\n",
            i + 1,
            row.base.label(),
            row.mutation.replace('|', "\\|"),
            row.check,
            scope,
            result,
            row.reason.replace('|', "\\|"),
        ));
    }
    out
}

const BEGIN: &str = "<!-- tamper-matrix:begin -->\n";
const END: &str = "<!-- tamper-matrix:end -->";

#[test]
fn every_single_mutation_of_a_valid_bundle_is_caught_by_its_check() {
    let rows = rows();
    let attacks = rows.iter().filter(|r| r.state != State::Pass).count();
    assert!(attacks >= 80, "only {attacks} attack rows");
    let mut names = std::collections::BTreeSet::new();
    for row in &rows {
        assert!(
            names.insert((row.mutation, row.base.label())),
            "row {:?} is listed twice",
            row.mutation
        );
    }
    let mut cache = Vec::new();
    let mut problems = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        for p in run(row, &mut cache) {
            problems.push(format!(
                "row {} ({}, {}): {p}",
                i + 1,
                row.base.label(),
                row.mutation
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    let path = common::repo_path("docs/security.md");
    let doc = std::fs::read_to_string(&path).unwrap();
    let start = doc
        .find(BEGIN)
        .expect("docs/security.md has the begin marker")
        + BEGIN.len();
    let end = doc.find(END).expect("docs/security.md has the end marker");
    let generated = table(&rows);
    if doc[start..end] == generated {
        return;
    }
    if common::bless() {
        let updated = format!("{}{generated}{}", &doc[..start], &doc[end..]);
        std::fs::write(&path, updated).unwrap();
        return;
    }
    panic!(
        "the tamper matrix in docs/security.md differs from the rows; rewrite it with \
         `TEEWATCH_BLESS=1 cargo test --test it verify::tamper`"
    );
}
