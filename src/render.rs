//! Human-readable rendering of a verdict: a checklist an operator can read at a glance.

use std::fmt::Write;

use crate::verify::{State, Verdict};

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
    out
}
