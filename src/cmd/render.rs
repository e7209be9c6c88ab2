//! Human-readable rendering of a verdict: a checklist an operator can read at a glance, ending
//! with a summary: the count of checks in each state and one sentence, derived from which groups
//! of checks passed, on what the verdict proves and what it does not.

use std::fmt::Write;

use crate::verify::checks::{self, PIN_PREFIX};
use crate::verify::{Check, State, Verdict};

fn mark(state: State) -> &'static str {
    match state {
        State::Pass => "✓",
        State::Fail => "✗",
        State::Unknown => "?",
    }
}

/// Renders the checklist: one line per check with its scope and reason, then the observed
/// identity with the source of each value.
pub fn checklist(verdict: &Verdict) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} {}  target {}  observed_at {}  format {}",
        mark(verdict.state),
        verdict.state.as_str().to_uppercase(),
        verdict.target,
        verdict.observed_at,
        verdict.attestation_format.as_str()
    );
    if !verdict.trust.is_empty() {
        let _ = writeln!(
            out,
            "! TEST TRUST ROOTS IN FORCE ({}): this verdict proves nothing about production hardware",
            verdict.trust.join(", ")
        );
    }
    if verdict.transport == Some(crate::verify::bundle::Transport::Proxied) {
        let _ = writeln!(
            out,
            "transport: proxied (the connection ended at a proxy: no tls check; the signed canaries are the end-to-end proof)"
        );
    }
    if let Some(source) = &verdict.policy_source {
        let _ = writeln!(out, "policy: {source}");
    }
    let _ = writeln!(out);
    let width = verdict
        .checks
        .iter()
        .map(|c| {
            c.name.len()
                + if c.scope.is_empty() {
                    0
                } else {
                    c.scope.len() + 3
                }
        })
        .max()
        .unwrap_or(0);
    for check in &verdict.checks {
        let label = if check.scope.is_empty() {
            check.name.clone()
        } else {
            format!("{} [{}]", check.name, check.scope)
        };
        let _ = writeln!(
            out,
            "  {} {label:<width$}  {}",
            mark(check.state),
            check.reason
        );
    }
    if !verdict.observed.is_empty() {
        let _ = writeln!(out, "\nobserved:");
        for o in &verdict.observed {
            let scope = if o.scope.is_empty() {
                String::new()
            } else {
                format!("[{}] ", o.scope)
            };
            let _ = writeln!(
                out,
                "  {scope}{:<16} {}  ({})",
                o.field,
                o.value,
                o.source.as_str()
            );
        }
    }
    let _ = writeln!(out, "\n{}", summary(verdict));
    out
}

/// What a group of checks proves when every one of them passed.
struct Group {
    /// The claim, as the subject of a sentence.
    claim: &'static str,
    /// Whether `claim` takes "are" rather than "is".
    plural: bool,
    checks: &'static [&'static str],
    /// The earlier claims (indices into `GROUPS`) this one means nothing without: a key binding
    /// read from a quote whose signature did not verify binds nothing, and a signature by that
    /// key proves no attested answer. GPU evidence stands on NVIDIA's chain alone.
    needs: &'static [usize],
}

/// The claims in the order the sentence names them (the software's is worded apart: `software`).
const GROUPS: [Group; 4] = [
    Group {
        claim: "genuine TDX hardware",
        plural: false,
        checks: &[
            checks::TDX_QUOTE_PARSE,
            checks::TDX_QUOTE_SIGNATURE,
            checks::TDX_TCB_STATUS,
            checks::TDX_DEBUG_DISABLED,
            checks::TDX_TD_ATTRIBUTES,
        ],
        needs: &[],
    },
    Group {
        claim: "a fresh key binding",
        plural: false,
        checks: &[
            checks::REPORT_DATA_BINDING,
            checks::SIGNING_KEY_ADDRESS,
            checks::TLS_KEY_BINDING,
            checks::SAME_TD,
            checks::OHTTP_KEY_BINDING,
        ],
        needs: &[0],
    },
    Group {
        claim: "genuine NVIDIA GPUs",
        plural: true,
        checks: &[
            checks::GPU_NONCE,
            checks::GPU_EVIDENCE_SIGNATURE,
            checks::NRAS_TOKEN,
            checks::NRAS_RESULT,
            checks::GPU_UNIQUE,
        ],
        needs: &[],
    },
    Group {
        claim: "signed answers from an attested key",
        plural: true,
        checks: &[
            checks::CANARY_FRESH,
            checks::CANARY_HASHES,
            checks::CANARY_SIGNATURE,
        ],
        needs: &[0, 1],
    },
];

/// The worst state among the checks whose name `is_member` accepts, and the first check in it.
fn worst(verdict: &Verdict, is_member: impl Fn(&str) -> bool) -> Option<(State, &Check)> {
    let members: Vec<&Check> = verdict
        .checks
        .iter()
        .filter(|c| is_member(&c.name))
        .collect();
    let state = members.iter().map(|c| c.state).max()?;
    let first = members.iter().find(|c| c.state == state)?;
    Some((state, first))
}

/// `summary: N pass, N fail, N unknown (N checks)` and the sentence on what is proven.
fn summary(verdict: &Verdict) -> String {
    let count = |state: State| verdict.checks.iter().filter(|c| c.state == state).count();
    let counts = format!(
        "summary: {} pass, {} fail, {} unknown ({} checks)",
        count(State::Pass),
        count(State::Fail),
        count(State::Unknown),
        verdict.checks.len()
    );
    format!("{counts}\n{}", proves(verdict))
}

/// One sentence: the claims proven, then each claim not proven with the first check that kept
/// it (failed before unknown), then what is said of the software.
fn proves(verdict: &Verdict) -> String {
    if let Some((state, check)) = worst(verdict, |n| n == checks::ATTESTATION_FORMAT) {
        if state != State::Pass {
            let how = if state == State::Fail {
                "failed"
            } else {
                "is unknown"
            };
            return format!("nothing is proven: {} {how}", check.name);
        }
    }
    let mut proven: Vec<&str> = Vec::new();
    let mut not: Vec<String> = Vec::new();
    let mut plural_proven = false;
    // Which claims stand, by index into `GROUPS`, for the claims that rest on them.
    let mut stands = [false; GROUPS.len()];
    for (index, group) in GROUPS.iter().enumerate() {
        let Some((state, check)) = worst(verdict, |n| group.checks.contains(&n)) else {
            continue;
        };
        let verb = if group.plural { "are" } else { "is" };
        let unproven_need = group
            .needs
            .iter()
            .find(|&&need| !stands.get(need).copied().unwrap_or(false))
            .and_then(|&need| GROUPS.get(need));
        match (state, unproven_need) {
            (State::Pass, Some(need)) => not.push(format!(
                "{} {verb} not proven ({} on {}, which is not proven)",
                group.claim,
                if group.plural {
                    "they rest"
                } else {
                    "it rests"
                },
                need.claim
            )),
            (State::Pass, None) => {
                plural_proven |= group.plural;
                proven.push(group.claim);
                if let Some(stand) = stands.get_mut(index) {
                    *stand = true;
                }
            }
            (State::Fail, _) => not.push(format!(
                "{} {verb} not proven ({} failed)",
                group.claim, check.name
            )),
            (State::Unknown, _) => not.push(format!(
                "{} {verb} undecided ({} unknown)",
                group.claim, check.name
            )),
        }
    }
    match software(verdict) {
        // Measurements from a quote whose signature did not verify prove nothing.
        Software::Proven if !stands.first().copied().unwrap_or(false) => not.push(
            "the pinned software is not proven (it rests on genuine TDX hardware, which is not \
             proven)"
                .into(),
        ),
        Software::Proven => proven.push("the pinned software"),
        Software::Not(text) => not.push(text),
        Software::Absent => {}
    }
    let mut sentence = match proven.as_slice() {
        [] => String::from("nothing is proven"),
        [one] => format!("{one} {} proven", if plural_proven { "are" } else { "is" }),
        [init @ .., last] => format!("{} and {last} are proven", init.join(", ")),
    };
    for part in not {
        sentence.push_str("; ");
        sentence.push_str(&part);
    }
    sentence
}

/// What the verdict says of the software that runs.
enum Software {
    /// The measured software is the pinned one, and the pins cover the OS and the application.
    Proven,
    /// Anything less, worded.
    Not(String),
    /// No software checks in the verdict.
    Absent,
}

fn software(verdict: &Verdict) -> Software {
    let measured = worst(verdict, |n| {
        n == checks::EVENT_LOG_REPLAY || n == checks::COMPOSE_BINDING
    });
    let pins = worst(verdict, |n| n.starts_with(PIN_PREFIX));
    let pinned = worst(verdict, |n| n == checks::IDENTITY_PINNED);
    if measured.is_none() && pins.is_none() && pinned.is_none() {
        return Software::Absent;
    }
    if let Some((State::Fail, check)) = measured {
        return Software::Not(format!(
            "which software runs is not proven ({} failed)",
            check.name
        ));
    }
    if let Some((State::Fail, check)) = pins {
        return Software::Not(format!(
            "the software is not the pinned one ({} failed)",
            check.name
        ));
    }
    match pinned {
        Some((State::Pass, _)) => {}
        Some((State::Fail, check)) => {
            return Software::Not(format!(
                "which software runs is not pinned ({} failed)",
                check.name
            ));
        }
        _ => return Software::Not("which software runs is not pinned".into()),
    }
    for (state, check) in [measured, pins].into_iter().flatten() {
        if state != State::Pass {
            return Software::Not(format!(
                "the pinned software is undecided ({} unknown)",
                check.name
            ));
        }
    }
    Software::Proven
}
