//! The verdict and fetch errors of an answer that could not be read as a bundle, judged on the
//! fetcher's own stand-in bundle (nothing arrived) so the check is still recorded.

use std::time::Duration;

use chrono::DateTime;
use serde_json::Value;

use super::Generation;
use crate::config::TargetConfig;
use crate::fetch::check::timed_out_bundle;
use crate::record::FetchErrorSummary;
use crate::verify::{self, Bundle, State};

/// The verdict of an answer that could not be read as a bundle: every check the target's
/// verdicts carry (as for an answer that never arrived), each `unknown` naming the bundle error.
/// Its `observed_at` is the answer's own when that is readable, else now.
///
/// It is the verdict of a stand-in: the readable bundle of a check in which nothing arrived
/// (the one a check cancelled at its deadline records), which the fetcher's own assembly makes.
/// `None` only if even that were unreadable, which its unit test rules out.
pub(super) fn unreadable_verdict(
    generation: &Generation,
    target: &TargetConfig,
    answer: &Value,
    error: &verify::BundleError,
) -> Option<verify::Verdict> {
    let mut stand_in = timed_out_bundle(&generation.config, target, Duration::ZERO);
    if let Some(observed_at) = answer.get("observed_at").filter(|t| {
        t.as_str()
            .is_some_and(|t| DateTime::parse_from_rfc3339(t).is_ok())
    }) {
        if let Some(slot) = stand_in.get_mut("observed_at") {
            slot.clone_from(observed_at);
        }
    }
    let stand_in = match Bundle::from_value(stand_in) {
        Ok(bundle) => bundle,
        Err(e) => {
            tracing::error!(error = %e, "the stand-in bundle is unreadable too; not recorded");
            return None;
        }
    };
    let mut verdict = verify::verify(&stand_in, &target.policy, &generation.anchors);
    let reason = format!("the fetched answer could not be read as a bundle: {error}");
    for check in &mut verdict.checks {
        check.state = State::Unknown;
        check.reason.clone_from(&reason);
    }
    verdict.state = State::Unknown;
    Some(verdict)
}

/// The fetch errors an unreadable answer lists, when that part of it can be read.
pub(super) fn lenient_fetch_errors(answer: &Value) -> Vec<FetchErrorSummary> {
    answer
        .get("fetch_errors")
        .cloned()
        .and_then(|errors| serde_json::from_value::<Vec<verify::bundle::FetchError>>(errors).ok())
        .unwrap_or_default()
        .into_iter()
        .map(|e| FetchErrorSummary {
            endpoint: e.endpoint,
            kind: e.kind,
        })
        .collect()
}
