//! What `teewatch history` prints: the stored checks, drift events and accepted drift as a table for people
//! or JSON for scripts, the `--since` argument (an RFC 3339 instant or a duration back from
//! now), and what `history ack` says it did.

use std::fmt::Write;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use teewatch::config::parse_interval;
use teewatch::drift::AcceptedBy;
use teewatch::store::{AcceptanceRow, AckOutcome, CheckRow, DriftRow};

/// Reads `--since`: an RFC 3339 instant, or a duration such as `30m`, `24h` or `7d` before `now`.
pub fn parse_since(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    let duration = parse_interval(text).map_err(|_| {
        format!(
            "expected an RFC 3339 time such as \"2026-11-28T00:00:00Z\" or a duration such as \
             \"30m\", \"24h\" or \"7d\", found \"{text}\""
        )
    })?;
    let back = chrono::Duration::from_std(duration)
        .map_err(|_| format!("the duration \"{text}\" is too long"))?;
    now.checked_sub_signed(back)
        .ok_or_else(|| format!("the duration \"{text}\" is too long"))
}

fn time(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Checks, drift events and accepted drift as JSON:
/// `{"checks": [...], "drift_events": [...], "drift_accepted": [...]}`, each newest first.
pub fn to_json(checks: &[CheckRow], drift: &[DriftRow], accepted: &[AcceptanceRow]) -> String {
    let checks: Vec<Value> = checks
        .iter()
        .map(|c| {
            json!({
                "id": c.id,
                "target": c.target,
                "scheduled_at": time(&c.scheduled_at),
                "started_at": time(&c.started_at),
                "finished_at": time(&c.finished_at),
                "state": c.state.as_str(),
                "attestation_format": c.attestation_format,
                "failing": c.failing,
                "has_bundle": c.has_bundle,
                "drift_events": c.drift_events,
                "instance": c.instance,
                "vantage": c.vantage,
            })
        })
        .collect();
    let drift: Vec<Value> = drift
        .iter()
        .map(|d| {
            json!({
                "id": d.id,
                "check_id": d.check_id,
                "target": d.target,
                "field": d.event.field,
                "node": d.event.node,
                "old_values": d.event.old_values,
                "new_value": d.event.new_value,
                "reasons": d.event.reasons,
                "at": time(&d.event.at),
            })
        })
        .collect();
    let accepted: Vec<Value> = accepted
        .iter()
        .map(|a| {
            json!({
                "id": a.id,
                "target": a.target,
                "field": a.acceptance.field,
                "value": a.acceptance.value,
                "how": a.acceptance.how.as_str(),
                "by": a.acceptance.by,
                "note": a.acceptance.note,
                "at": time(&a.acceptance.at),
            })
        })
        .collect();
    serde_json::to_string_pretty(
        &json!({"checks": checks, "drift_events": drift, "drift_accepted": accepted}),
    )
    .unwrap_or_else(|_| "{}".to_string())
}

/// Checks, drift events and accepted drift as aligned text.
pub fn to_table(checks: &[CheckRow], drift: &[DriftRow], accepted: &[AcceptanceRow]) -> String {
    let mut out = String::new();
    if checks.is_empty() {
        out.push_str("no checks\n");
    } else {
        let width = checks
            .iter()
            .map(|c| c.target.len())
            .max()
            .unwrap_or(6)
            .max(6);
        let _ = writeln!(
            out,
            "{:>8}  {:<20}  {:<width$}  {:<7}  {:<6}  failing",
            "check", "finished", "target", "state", "bundle"
        );
        for c in checks {
            let failing: Vec<String> = c
                .failing
                .iter()
                .map(|f| {
                    if f.scope.is_empty() {
                        format!("{} ({})", f.name, f.state.as_str())
                    } else {
                        format!("{}[{}] ({})", f.name, f.scope, f.state.as_str())
                    }
                })
                .collect();
            let _ = writeln!(
                out,
                "{:>8}  {:<20}  {:<width$}  {:<7}  {:<6}  {}",
                c.id,
                time(&c.finished_at),
                c.target,
                c.state.as_str(),
                if c.has_bundle { "yes" } else { "no" },
                if failing.is_empty() {
                    "-".to_string()
                } else {
                    failing.join(", ")
                }
            );
        }
    }
    if !drift.is_empty() {
        out.push_str("\ndrift events\n");
        for d in drift {
            let reasons: Vec<&str> = d.event.reasons.iter().map(|r| r.as_str()).collect();
            let _ = writeln!(
                out,
                "{}  {}  check {}  {}{}: {} → {} ({})",
                time(&d.event.at),
                d.target,
                d.check_id,
                d.event.field,
                if d.event.node.is_empty() {
                    String::new()
                } else {
                    format!(" on {}", d.event.node)
                },
                if d.event.old_values.is_empty() {
                    "(none)".to_string()
                } else {
                    d.event.old_values.join(", ")
                },
                d.event.new_value,
                reasons.join(", ")
            );
        }
    }
    if !accepted.is_empty() {
        out.push_str("\ndrift accepted\n");
        for a in accepted {
            let _ = writeln!(out, "{}", acceptance_line(a));
        }
    }
    out
}

/// One accepted drifted value: `<at>  <target>  <field> = <value>  accepted by the pins in force`
/// or `… acknowledged by <who>: <note>`.
pub fn acceptance_line(a: &AcceptanceRow) -> String {
    let how = match a.acceptance.how {
        AcceptedBy::Pin => "accepted by the pins in force".to_string(),
        AcceptedBy::Ack => format!(
            "acknowledged by {}",
            a.acceptance.by.as_deref().unwrap_or("an unknown user")
        ),
    };
    let note = a
        .acceptance
        .note
        .as_deref()
        .map(|n| format!(": {n}"))
        .unwrap_or_default();
    format!(
        "{}  {}  {} = {}  {how}{note}",
        time(&a.acceptance.at),
        a.target,
        a.acceptance.field,
        a.acceptance.value
    )
}

/// What `teewatch history ack` says it did, and whether it accepted anything (exit 0) or named
/// nothing that drifted (a usage error).
pub fn ack_report(outcome: &AckOutcome) -> (String, bool) {
    match outcome {
        AckOutcome::Accepted(rows) => {
            let mut out = String::new();
            for a in rows {
                let _ = writeln!(out, "{}", acceptance_line(a));
            }
            out.push_str(
                "the daemon stops counting these drift events at the target's next check or \
                 at a reload (systemctl reload teewatch)\n",
            );
            (out, true)
        }
        AckOutcome::AlreadyAccepted(rows) => {
            let mut out = String::from("already accepted since it drifted:\n");
            for a in rows {
                let _ = writeln!(out, "{}", acceptance_line(a));
            }
            (out, true)
        }
        AckOutcome::NothingToAccept(why) => (format!("nothing to acknowledge: {why}\n"), false),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_rfc3339_and_durations() {
        let now = DateTime::parse_from_rfc3339("2026-11-29T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            time(&parse_since("2026-11-28T00:00:00Z", now).unwrap()),
            "2026-11-28T00:00:00Z"
        );
        assert_eq!(
            time(&parse_since("24h", now).unwrap()),
            "2026-11-28T12:00:00Z"
        );
        let e = parse_since("yesterday", now).unwrap_err();
        assert!(e.contains("found \"yesterday\""), "{e}");
    }
}
