//! The canary cadence of each target: whether this check spends its chats, what the last run
//! showed, and what the chats cost a day.
//!
//! `[target.canary] every = N` runs the chats on every N-th check; the attestation is checked
//! every time. The daemon counts, per target, the checks since the last one that ran the chats,
//! and keeps that run's canary checks to carry into the bundles of the checks between
//! (`canary_not_run`, judged in `crates/verify/src/canary/cadence.rs`). The count lives in
//! memory: the first check after a start runs the chats, so a restart never carries a result
//! it cannot show. A check whose attestation failed, or whose report could not be read, spends
//! no chat and counts as a check between runs, so chats are due again as soon as it recovers
//! when `every` checks have passed since the last run.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;

use crate::config::{MonitorConfig, Schedule};
use crate::sync::lock;
use crate::verify::canary::cadence::{CanaryNotRun, LastRun, NotRunWhy};
use crate::verify::checks::CANARY_CHECKS;
use crate::verify::{Check, State, Verdict};

/// Chats per canary run: one non-streamed and one streamed completion, when both are on.
pub fn chats_per_run(monitor: &MonitorConfig) -> u32 {
    u32::from(monitor.canary.non_stream) + u32::from(monitor.canary.stream)
}

/// One target's cadence.
#[derive(Debug, Clone, Default)]
pub struct Track {
    /// Checks stored since the last one that ran the chats.
    pub since: u32,
    pub last_run: Option<LastRun>,
}

impl Track {
    /// `None` when this check's chats are due: every check when `every` is 1, the first one
    /// the daemon makes, and every `every`-th after a run. Otherwise the bundle's
    /// `canary_not_run`, carrying the last run.
    pub fn not_due(&self, every: u32) -> Option<CanaryNotRun> {
        let last_run = self.last_run.as_ref()?;
        (self.since.saturating_add(1) < every).then(|| CanaryNotRun {
            why: NotRunWhy::NotDue,
            every: Some(every),
            last_run: Some(last_run.clone()),
        })
    }

    /// Takes in a stored check: one whose bundle lists chats (even failed ones, which were
    /// spent) becomes the last run; any other counts as a check between runs.
    pub fn stored(&mut self, check_id: i64, bundle: &Value, verdict: &Verdict) {
        if bundle.get("canary").is_some_and(Value::is_array) {
            self.since = 0;
            self.last_run = Some(LastRun {
                check_id,
                observed_at: verdict.observed_at.clone(),
                checks: verdict
                    .checks
                    .iter()
                    .filter(|c| CANARY_CHECKS.contains(&c.name.as_str()))
                    .cloned()
                    .collect(),
            });
        } else {
            self.since = self.since.saturating_add(1);
        }
    }
}

/// The checks to export as gauges and list on the status page: a canary check that was not due
/// shows its last run's state, so `teewatch_check_state` and the canary alerts keep that run's
/// value between runs instead of flapping to unknown, and a passing target lists nothing as
/// failing. The verdict itself never calls such a check `pass`.
pub fn published_checks(bundle: &Value, checks: &[Check]) -> Vec<Check> {
    let last_run = bundle
        .get("canary_not_run")
        .and_then(|v| serde_json::from_value::<CanaryNotRun>(v.clone()).ok())
        .filter(|n| n.why == NotRunWhy::NotDue)
        .and_then(|n| n.last_run);
    let Some(last_run) = last_run else {
        return checks.to_vec();
    };
    checks
        .iter()
        .map(|check| {
            if !CANARY_CHECKS.contains(&check.name.as_str()) {
                return check.clone();
            }
            let carried = last_run
                .checks
                .iter()
                .filter(|c| c.name == check.name)
                .map(|c| c.state)
                .max()
                .unwrap_or(State::Unknown);
            Check {
                state: carried,
                ..check.clone()
            }
        })
        .collect()
}

/// How many checks of `schedule` fall in a day: exact for an interval, the average over a year
/// for a cron expression (counted once per expression and remembered).
pub fn checks_per_day(schedule: &Schedule) -> Option<f64> {
    match schedule {
        Schedule::Interval(period) => {
            let seconds = period.as_secs_f64();
            (seconds > 0.0).then(|| 86_400.0 / seconds)
        }
        Schedule::Cron(expression) => {
            static COUNTED: OnceLock<Mutex<BTreeMap<String, Option<f64>>>> = OnceLock::new();
            let counted = COUNTED.get_or_init(|| Mutex::new(BTreeMap::new()));
            if let Some(known) = lock(counted).get(expression) {
                return *known;
            }
            let per_day = cron_per_day(expression);
            lock(counted).insert(expression.clone(), per_day);
            per_day
        }
    }
}

/// Occurrences of a cron expression in the year 2023, as a daily average (so a monthly or yearly
/// expression is not judged by one week that happens to hold its day); a dense expression is
/// counted over its first 10,000 occurrences and scaled.
fn cron_per_day(expression: &str) -> Option<f64> {
    use croner::parser::{CronParser, Seconds, Year};
    const CAP: u32 = 10_000;
    const DAYS: i64 = 365;
    let cron = CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
        .parse(expression)
        .ok()?;
    let start: DateTime<Utc> = Utc.with_ymd_and_hms(2023, 1, 1, 0, 0, 0).single()?;
    let end = start + chrono::Duration::days(DAYS);
    // The search finds occurrences strictly after its start: begin a second early so one at
    // the week's first instant counts (and one at its end does not).
    let mut at = start - chrono::Duration::seconds(1);
    let mut count: u32 = 0;
    while count < CAP {
        let next = cron.find_next_occurrence(&at, false).ok()?;
        if next >= end {
            return Some(f64::from(count) / DAYS as f64);
        }
        count += 1;
        at = next;
    }
    let days = (at - start).num_seconds() as f64 / 86_400.0;
    (days > 0.0).then(|| f64::from(count) / days)
}

/// The chats a target costs a day: chats per run × checks per day ÷ `every`.
pub fn chats_per_day(monitor: &MonitorConfig) -> Option<f64> {
    let checks = checks_per_day(&monitor.schedule)?;
    Some(f64::from(chats_per_run(monitor)) * checks / f64::from(monitor.canary.every.max(1)))
}

/// `chats_per_day` as the page and the docs write it: whole chats, or one decimal below ten.
pub fn chats_per_day_text(monitor: &MonitorConfig) -> String {
    match chats_per_day(monitor) {
        Some(n) if n >= 10.0 => format!("{n:.0}"),
        Some(n) => format!("{n:.1}"),
        None => "?".to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn an_interval_gives_exact_checks_per_day() {
        let per_day = checks_per_day(&Schedule::Interval(Duration::from_secs(60))).unwrap();
        assert_eq!(per_day, 1440.0);
    }

    #[test]
    fn a_cron_expression_is_averaged_over_a_year() {
        // Hourly on weekdays only: 2023 (from a Sunday, 365 days) has 260 weekdays.
        let per_day = checks_per_day(&Schedule::Cron("0 * * * 1-5".into())).unwrap();
        assert!((per_day - 260.0 * 24.0 / 365.0).abs() < 1e-9, "{per_day}");
        // Once a year, on the first instant of the year counted.
        let per_day = checks_per_day(&Schedule::Cron("0 0 1 1 *".into())).unwrap();
        assert!((per_day - 1.0 / 365.0).abs() < 1e-12, "{per_day}");
        // Every 10 s: dense, counted on its first 10,000 and scaled.
        let per_day = checks_per_day(&Schedule::Cron("*/10 * * * * *".into())).unwrap();
        assert!((per_day - 8640.0).abs() < 1.0, "{per_day}");
    }

    #[test]
    fn chats_are_due_on_the_first_check_and_every_nth_after() {
        let mut track = Track::default();
        let verdict = |observed_at: &str| Verdict {
            format: String::new(),
            target: "t".into(),
            observed_at: observed_at.into(),
            attestation_format: crate::verify::AttestationFormat::Dstack,
            state: State::Pass,
            checks: Vec::new(),
            observed: Vec::new(),
            trust: Vec::new(),
            transport: None,
            policy_source: None,
        };
        let ran = serde_json::json!({"canary": []});
        let skipped = serde_json::json!({"canary": null});
        let mut due = Vec::new();
        for id in 1..=7 {
            let is_due = track.not_due(3).is_none();
            due.push(is_due);
            let bundle = if is_due { &ran } else { &skipped };
            track.stored(id, bundle, &verdict("2026-01-01T00:00:00Z"));
        }
        assert_eq!(due, [true, false, false, true, false, false, true]);
        assert_eq!(track.last_run.unwrap().check_id, 7);
    }
}
