//! What the log says about a finished check, kept short: the checks that failed and those that
//! are unknown named apart (scopes folded, so a check failing on three GPUs is one name), and
//! each distinct fetch error once, naming the checks whose reason it is, instead of once per
//! check that quotes it.

use serde_json::Value;

use crate::verify::{Check, State};

/// The names of the checks in `state`, in verdict order, each once with the number of scopes it
/// has that state in when more than one; `none` when there are none, and `all N checks` when
/// every check of the verdict is in that state.
pub(super) fn check_names(checks: &[Check], state: State) -> String {
    let matching: Vec<&Check> = checks.iter().filter(|c| c.state == state).collect();
    if matching.len() == checks.len() && checks.len() > 1 {
        return format!("all {} checks", checks.len());
    }
    folded(&matching)
}

/// Check names in order, each once, with the number of scopes when more than one; `none` for no
/// checks.
fn folded(checks: &[&Check]) -> String {
    if checks.is_empty() {
        return "none".to_string();
    }
    let mut names: Vec<(&str, usize)> = Vec::new();
    for check in checks {
        match names.iter_mut().find(|(name, _)| *name == check.name) {
            Some((_, count)) => *count += 1,
            None => names.push((&check.name, 1)),
        }
    }
    names
        .into_iter()
        .map(|(name, count)| {
            if count > 1 {
                format!("{name} ({count} scopes)")
            } else {
                name.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// One distinct fetch error of a check, for one log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FetchErrorLine {
    pub endpoint: String,
    pub kind: String,
    pub message: String,
    /// How many times the bundle lists it (the same NRAS error for each node, say).
    pub times: usize,
    /// The checks whose reason quotes it ([`check_names`] of those), or `none` when no check
    /// depends on it (collateral a cached copy stood in for).
    pub checks: String,
}

/// The distinct fetch errors a bundle lists (endpoint, kind and message alike), in bundle order,
/// each with the checks that are unknown because of it. Unreadable entries are left out (the
/// verdict of such a bundle names the bundle error instead).
pub(super) fn fetch_error_lines(bundle: &Value, checks: &[Check]) -> Vec<FetchErrorLine> {
    let entries = bundle
        .get("fetch_errors")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut lines: Vec<FetchErrorLine> = Vec::new();
    for entry in entries {
        let text = |key: &str| entry.get(key).and_then(Value::as_str).map(str::to_string);
        let (Some(endpoint), Some(kind), Some(message)) =
            (text("endpoint"), text("kind"), text("message"))
        else {
            continue;
        };
        if let Some(line) = lines
            .iter_mut()
            .find(|l| l.endpoint == endpoint && l.kind == kind && l.message == message)
        {
            line.times += 1;
            continue;
        }
        // A check is unknown because of this error when its reason quotes the message.
        let affected: Vec<&Check> = checks
            .iter()
            .filter(|c| c.state == State::Unknown && !message.is_empty())
            .filter(|c| c.reason.contains(&message))
            .collect();
        let names = if affected.len() == checks.len() && checks.len() > 1 {
            format!("all {} checks", checks.len())
        } else {
            folded(&affected)
        };
        lines.push(FetchErrorLine {
            endpoint,
            kind,
            message,
            times: 1,
            checks: names,
        });
    }
    lines
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(name: &str, scope: &str, state: State, reason: &str) -> Check {
        Check {
            name: name.into(),
            scope: scope.into(),
            state,
            reason: reason.into(),
        }
    }

    #[test]
    fn failing_and_unknown_checks_are_named_apart_with_scopes_folded() {
        let checks = [
            check("attestation_format", "", State::Pass, ""),
            check("pin:compose_hash", "", State::Fail, "not allowed"),
            check("nras_result", "gpu:0", State::Unknown, "nras: timeout"),
            check("nras_result", "gpu:1", State::Unknown, "nras: timeout"),
            check("nras_token", "", State::Unknown, "nras: timeout"),
        ];
        assert_eq!(check_names(&checks, State::Fail), "pin:compose_hash");
        assert_eq!(
            check_names(&checks, State::Unknown),
            "nras_result (2 scopes), nras_token"
        );
        assert_eq!(check_names(&checks[..1], State::Fail), "none");
        let all_unknown = [
            check("a", "", State::Unknown, "x"),
            check("b", "", State::Unknown, "x"),
        ];
        assert_eq!(check_names(&all_unknown, State::Unknown), "all 2 checks");
    }

    #[test]
    fn the_same_fetch_error_is_one_line_naming_the_checks_that_quote_it() {
        let message = "http://127.0.0.1:1/v3/attest/gpu: connection refused";
        let bundle = json!({"fetch_errors": [
            {"endpoint": "nras", "kind": "connect", "message": message},
            {"endpoint": "nras", "kind": "connect", "message": message},
            {"endpoint": "pccs", "kind": "http_status", "message": "503 from the pccs"},
            {"endpoint": "pccs"},
        ]});
        let reason = format!("no nras answer (nras: connect: {message})");
        let checks = [
            check("tdx_quote_signature", "", State::Pass, ""),
            check("nras_token", "", State::Unknown, &reason),
            check("nras_result", "gpu:0", State::Unknown, &reason),
            check("nras_result", "gpu:1", State::Unknown, &reason),
            check("identity_pinned", "", State::Unknown, "nothing pinned"),
        ];
        let lines = fetch_error_lines(&bundle, &checks);
        assert_eq!(lines.len(), 2, "{lines:#?}");
        assert_eq!(lines[0].endpoint, "nras");
        assert_eq!(lines[0].times, 2);
        assert_eq!(lines[0].checks, "nras_token, nras_result (2 scopes)");
        // The PCCS error made nothing unknown (a cached copy served).
        assert_eq!(lines[1].kind, "http_status");
        assert_eq!(lines[1].checks, "none");
    }

    #[test]
    fn an_error_every_check_quotes_is_said_to_affect_all_of_them() {
        let message = "connection refused";
        let bundle = json!({"fetch_errors": [{"endpoint": "attestation", "kind": "connect", "message": message}]});
        let reason = format!("attestation not fetched (connect: {message})");
        let checks: Vec<Check> = (0..19)
            .map(|i| check(&format!("c{i}"), "", State::Unknown, &reason))
            .collect();
        let lines = fetch_error_lines(&bundle, &checks);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].checks, "all 19 checks");
    }
}
