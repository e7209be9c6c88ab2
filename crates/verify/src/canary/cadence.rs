//! Checks whose canary chats were not run: not due under the target's `[target.canary] every`,
//! or not spent because the attestation had already failed.
//!
//! Nothing is proven about the chats of such a check, so its canary checks never `pass`. They
//! must not turn the target `unknown` on every check between two runs either: a check that was
//! not due lists them as `unknown` (not run, with the reason and the last run's result and age)
//! or `fail` when the last run failed, and the overall state is that of everything checked this
//! time combined with the last run's result, which the bundle carries (`canary_not_run`). A
//! failing run therefore keeps the target failing until a chat passes, and `teewatch verify`
//! of the stored bundle re-derives the same verdict offline. The daemon keeps that result in
//! its bundles; the stored bundle of the check that ran the chats proves it.

use serde::{Deserialize, Serialize};

use crate::bundle::Bundle;
use crate::checks::{CANARY_CHECKS, CANARY_FRESH};
use crate::verdict::{Check, Outcome, Recorder, State, Verdict};

/// Why a check carries no canary chat although the target is monitored with chats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotRunWhy {
    /// The chats run on every `every`-th check, and this was not one.
    NotDue,
    /// A check before the chats failed, so no chat was spent.
    AttestationFailed,
}

/// The bundle's `canary_not_run`: why the chats did not run, and the last run's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CanaryNotRun {
    pub why: NotRunWhy,
    /// The target's `[target.canary] every`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<u32>,
    /// The latest earlier check of the target that ran the chats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<LastRun>,
}

/// The canary checks of the latest check that ran the chats.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastRun {
    /// The stored check's id (`teewatch history export <id>` gives its bundle).
    pub check_id: i64,
    /// Its bundle's `observed_at`.
    pub observed_at: String,
    /// Its `canary_*` checks as its verdict listed them.
    pub checks: Vec<Check>,
}

impl LastRun {
    /// The worst state of the run's canary checks: what the run proved as a whole.
    pub fn state(&self) -> State {
        Verdict::overall(&self.checks)
    }
}

/// Step 8 for a bundle without chats that says why: the three canary checks with scope `""`.
pub fn record_not_run(bundle: &Bundle, not_run: &CanaryNotRun, rec: &mut Recorder) {
    match not_run.why {
        NotRunWhy::AttestationFailed => {
            let mut failed: Vec<&str> = Vec::new();
            for check in rec.checks.iter().filter(|c| c.state == State::Fail) {
                if !failed.contains(&check.name.as_str()) {
                    failed.push(&check.name);
                }
            }
            let outcome = if failed.is_empty() {
                Outcome::Unknown(
                    "not run: the bundle says the attestation failed, and no check before the canary failed".into(),
                )
            } else {
                Outcome::Unknown(format!(
                    "not run: the attestation did not pass ({} failed), so no chat was spent",
                    failed.join(", ")
                ))
            };
            for name in CANARY_CHECKS {
                rec.check(name, "", outcome.clone());
            }
        }
        NotRunWhy::NotDue => {
            let cadence = match not_run.every {
                Some(n) if n > 1 => format!("the chats run on every {} check", ordinal(n)),
                Some(_) => "the chats run on every check, and were not run on this one".to_string(),
                None => "the chats were not due".to_string(),
            };
            for name in CANARY_CHECKS {
                rec.check(name, "", carried(bundle, not_run, &cadence, name));
            }
        }
    }
}

/// One canary check of a check that was not due: `fail` when the last run failed it, else
/// `unknown`, naming the last run and its age.
fn carried(bundle: &Bundle, not_run: &CanaryNotRun, cadence: &str, name: &str) -> Outcome {
    let Some(last) = &not_run.last_run else {
        return Outcome::Unknown(format!(
            "not run on this check: {cadence}, and the bundle names no earlier run"
        ));
    };
    let of_name: Vec<&Check> = last.checks.iter().filter(|c| c.name == name).collect();
    let worst = of_name.iter().map(|c| c.state).max();
    let age = chrono::DateTime::parse_from_rfc3339(&last.observed_at)
        .ok()
        .map(|at| (bundle.observed_at - at.with_timezone(&chrono::Utc)).num_seconds())
        .map(|s| format!(", {s} s before this check"))
        .unwrap_or_default();
    let run = format!(
        "not run on this check: {cadence}; its last run (check {} at {}{age})",
        last.check_id, last.observed_at
    );
    match worst {
        None => Outcome::Unknown(format!("{run} has no {name} check")),
        Some(State::Pass) => Outcome::Unknown(format!("{run} passed")),
        Some(state) => {
            let reason = of_name
                .iter()
                .find(|c| c.state == state)
                .map(|c| c.reason.as_str())
                .unwrap_or_default();
            match state {
                State::Fail => Outcome::Fail(format!("{run} failed: {reason}")),
                _ => Outcome::Unknown(format!("{run} was unknown: {reason}")),
            }
        }
    }
}

/// The overall state of a verdict: the worst of its checks, except that a check whose chats
/// were not due judges its canary by the last run's result instead of by its own canary checks
/// (which are never `pass`, as nothing was proven about chats this time).
pub fn overall(bundle: &Bundle, checks: &[Check]) -> State {
    let carried = bundle
        .canary_not_run
        .as_ref()
        .filter(|_| bundle.attestation.is_some())
        .filter(|_| bundle.canary.as_deref().unwrap_or_default().is_empty())
        .filter(|n| n.why == NotRunWhy::NotDue)
        .and_then(|n| n.last_run.as_ref());
    let Some(last) = carried else {
        return Verdict::overall(checks);
    };
    let checked: Vec<Check> = checks
        .iter()
        .filter(|c| !CANARY_CHECKS.contains(&c.name.as_str()))
        .cloned()
        .collect();
    // The last run must have judged at least the freshness of a chat to stand for one.
    let last_state = if last.checks.iter().any(|c| c.name == CANARY_FRESH) {
        last.state()
    } else {
        State::Unknown
    };
    Verdict::overall(&checked).max(last_state)
}

/// "3rd", "2nd", "11th".
fn ordinal(n: u32) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}
