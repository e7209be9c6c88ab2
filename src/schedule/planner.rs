//! The scheduling policy, with no clock and no I/O: when each target is next due, the phase
//! jitter that keeps targets from firing together, the skip rule for a target whose previous
//! check is still running, and catch-up after a pause.
//!
//! Every method takes `now` from its caller, so unit tests drive the policy with a fake clock and
//! the driver (`driver.rs`) drives it with the wall clock. Nothing here knows about tokio or
//! tokio-cron-scheduler.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use sha2::{Digest, Sha256};

use super::ScheduleError;
use crate::config::Schedule;

/// The default upper bound of a target's phase offset.
pub const DEFAULT_MAX_PHASE: Duration = Duration::from_secs(60);
/// The upper bound of a cron target's phase offset: cron users name a moment, so the offset
/// added to it stays small.
pub const CRON_MAX_PHASE: Duration = Duration::from_secs(30);

const NANOS_PER_SECOND: i128 = 1_000_000_000;

/// One target as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedTarget {
    /// The target's name, unique within a configuration.
    pub name: String,
    /// How often it is checked.
    pub schedule: Schedule,
    /// How long one check may run before it is cancelled.
    pub deadline: Duration,
}

/// Tuning of the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannerOptions {
    /// The largest phase offset given to a target (interval targets use at most their interval,
    /// cron targets at most [`CRON_MAX_PHASE`]).
    pub max_phase: Duration,
    /// Interval grids anchored at the Unix epoch instead of at the start: slot `k` of a target
    /// is `epoch + k·interval + phase`, the phase from the target's name over its whole
    /// interval. Instances of a fleet (`crate::fleet`) then plan every target at the same
    /// instants, so a target's slot in each window of one interval is the same on all of them:
    /// the instance that takes a dead peer's target over checks it one interval after the
    /// peer's last check, not up to two, and a slot the peer had claimed is never run again.
    pub epoch_aligned: bool,
}

impl Default for PlannerOptions {
    fn default() -> Self {
        PlannerOptions {
            max_phase: DEFAULT_MAX_PHASE,
            epoch_aligned: false,
        }
    }
}

/// A check to start now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// The target to check.
    pub target: String,
    /// The slot this check belongs to (at or before `started_at`).
    pub scheduled_at: DateTime<Utc>,
    /// When the check started: the planner sets the instant of the decision, and the driver
    /// updates it when the check gets its concurrency permit.
    pub started_at: DateTime<Utc>,
    /// How long the check may run.
    pub deadline: Duration,
}

/// What to do about one target whose slot has come.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Start a check; the target counts as running until [`Planner::finished`].
    Start(Due),
    /// The previous check of `target` is still running, so this slot is skipped.
    Skip {
        target: String,
        scheduled_at: DateTime<Utc>,
    },
}

impl Decision {
    /// The target the decision is about.
    pub fn target(&self) -> &str {
        match self {
            Decision::Start(due) => &due.target,
            Decision::Skip { target, .. } => target,
        }
    }

    /// The slot the decision is about.
    pub fn scheduled_at(&self) -> DateTime<Utc> {
        match self {
            Decision::Start(due) => due.scheduled_at,
            Decision::Skip { scheduled_at, .. } => *scheduled_at,
        }
    }
}

/// How the slots of one target are computed.
#[derive(Clone)]
enum Rule {
    /// Slots on the grid `anchor + k·period`, so that lag never accumulates.
    Interval {
        period: TimeDelta,
        anchor: DateTime<Utc>,
    },
    /// Cron occurrences shifted by a fixed offset (boxed: a parsed pattern is large).
    Cron { cron: Box<Cron>, offset: TimeDelta },
}

impl Rule {
    /// The first slot strictly after `now`, or `None` when there is none (a cron expression
    /// without further occurrences, or a date beyond chrono's range).
    fn next_after(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Rule::Interval { period, anchor } => {
                let period = nanos(*period);
                if period <= 0 {
                    return None;
                }
                // k is the index of the first grid point after `now`; integer division keeps the
                // grid exact however long the process was away. Euclidean division also finds it
                // before the anchor, where a clock that jumped back puts `now`.
                let k = nanos(now - *anchor).div_euclid(period) + 1;
                anchor.checked_add_signed(delta_from_nanos(k.checked_mul(period)?)?)
            }
            Rule::Cron { cron, offset } => {
                // A slot is an occurrence plus the offset, so the next slot after `now` is the
                // next occurrence after `now - offset`. Croner's non-inclusive search starts at
                // the next whole second, so truncating first keeps the result strictly after.
                let shifted = now.checked_sub_signed(*offset)?.trunc_subsecs(0);
                let occurrence = cron.find_next_occurrence(&shifted, false).ok()?;
                occurrence.checked_add_signed(*offset)
            }
        }
    }
}

/// The planned part of a target that is still configured.
struct Plan {
    schedule: Schedule,
    rule: Rule,
    deadline: Duration,
    next: Option<DateTime<Utc>>,
}

/// One target's state. A target removed while its check runs keeps an entry without a plan until
/// that check finishes, so a target removed and re-added at once can never run twice in
/// parallel.
struct Entry {
    plan: Option<Plan>,
    running: bool,
}

/// The scheduling policy for a set of targets.
pub struct Planner {
    options: PlannerOptions,
    entries: BTreeMap<String, Entry>,
}

impl Planner {
    /// A planner without targets.
    pub fn new(options: PlannerOptions) -> Planner {
        Planner {
            options,
            entries: BTreeMap::new(),
        }
    }

    /// Sets the targets, at start and on every reload.
    ///
    /// New targets get their first slot; targets whose schedule is unchanged keep their next
    /// slot; targets whose schedule changed get a new first slot. A target keeps its running flag
    /// across a reload whatever changed. On an error (a cron expression croner does not accept or
    /// that never fires, a zero interval, a name listed twice) nothing changes.
    pub fn set_targets(
        &mut self,
        targets: &[PlannedTarget],
        now: DateTime<Utc>,
    ) -> Result<(), ScheduleError> {
        let mut plans: BTreeMap<String, Plan> = BTreeMap::new();
        for target in targets {
            if plans.contains_key(&target.name) {
                return Err(ScheduleError::DuplicateTarget {
                    target: target.name.clone(),
                });
            }
            let kept = self
                .entries
                .get(&target.name)
                .and_then(|e| e.plan.as_ref())
                .filter(|p| p.schedule == target.schedule);
            let plan = match kept {
                Some(old) => Plan {
                    schedule: old.schedule.clone(),
                    rule: old.rule.clone(),
                    deadline: target.deadline,
                    next: old.next,
                },
                None => self.new_plan(target, now)?,
            };
            plans.insert(target.name.clone(), plan);
        }

        let mut entries = BTreeMap::new();
        for (name, plan) in plans {
            let running = self.entries.get(&name).is_some_and(|e| e.running);
            entries.insert(
                name,
                Entry {
                    plan: Some(plan),
                    running,
                },
            );
        }
        // Removed targets whose check is still running stay, without a plan, until it finishes.
        for (name, entry) in std::mem::take(&mut self.entries) {
            if entry.running && !entries.contains_key(&name) {
                entries.insert(
                    name,
                    Entry {
                        plan: None,
                        running: true,
                    },
                );
            }
        }
        self.entries = entries;
        Ok(())
    }

    /// The first plan of a target: its rule, phase and first slot.
    fn new_plan(&self, target: &PlannedTarget, now: DateTime<Utc>) -> Result<Plan, ScheduleError> {
        let name = &target.name;
        let (rule, next) = match &target.schedule {
            Schedule::Interval(interval) => {
                if interval.is_zero() {
                    return Err(ScheduleError::ZeroInterval {
                        target: name.clone(),
                    });
                }
                let too_long = || ScheduleError::IntervalTooLong {
                    target: name.clone(),
                    seconds: interval.as_secs(),
                };
                let period = TimeDelta::from_std(*interval).map_err(|_| too_long())?;
                if self.options.epoch_aligned {
                    let phase =
                        TimeDelta::from_std(phase(name, *interval)).map_err(|_| too_long())?;
                    let anchor = DateTime::<Utc>::UNIX_EPOCH
                        .checked_add_signed(phase)
                        .ok_or_else(too_long)?;
                    let rule = Rule::Interval { period, anchor };
                    let next = rule.next_after(now);
                    (rule, next)
                } else {
                    let phase =
                        TimeDelta::from_std(phase(name, (*interval).min(self.options.max_phase)))
                            .map_err(|_| too_long())?;
                    let anchor = now.checked_add_signed(phase).ok_or_else(too_long)?;
                    (Rule::Interval { period, anchor }, Some(anchor))
                }
            }
            Schedule::Cron(expression) => {
                let cron = CronParser::builder()
                    .seconds(Seconds::Optional)
                    .year(Year::Disallowed)
                    .build()
                    .parse(expression)
                    .map_err(|e| ScheduleError::Cron {
                        target: name.clone(),
                        expression: expression.clone(),
                        reason: e.to_string(),
                    })?;
                let range = self.options.max_phase.min(CRON_MAX_PHASE);
                // The phase is below 30 s, which always fits a TimeDelta.
                let offset = TimeDelta::from_std(phase(name, range)).unwrap_or_default();
                let rule = Rule::Cron {
                    cron: Box::new(cron),
                    offset,
                };
                let next = rule.next_after(now);
                if next.is_none() {
                    return Err(ScheduleError::CronNeverFires {
                        target: name.clone(),
                        expression: expression.clone(),
                    });
                }
                (rule, next)
            }
        };
        Ok(Plan {
            schedule: target.schedule.clone(),
            rule,
            deadline: target.deadline,
            next,
        })
    }

    /// After a restart: a cron target whose schedule had a slot after `last_slots[target]` (the
    /// slot of the target's last recorded check) and at or before `now` missed it while the
    /// daemon was away, so that slot becomes its next one and the first tick catches it up,
    /// once, as `due` does after a pause. Call it right after the first `set_targets`.
    ///
    /// Interval targets need nothing: their grid starts afresh with the process, so their first
    /// slot comes within their phase (at most a minute) of the start anyway. A target without a
    /// recorded check has missed nothing it knows of.
    pub fn resume(&mut self, last_slots: &BTreeMap<String, DateTime<Utc>>, now: DateTime<Utc>) {
        for (name, entry) in &mut self.entries {
            let (Some(plan), Some(last)) = (entry.plan.as_mut(), last_slots.get(name)) else {
                continue;
            };
            if !matches!(plan.rule, Rule::Cron { .. }) {
                continue;
            }
            let Some(missed) = plan.rule.next_after(*last).filter(|missed| *missed <= now) else {
                continue;
            };
            if plan.next.is_none_or(|next| missed < next) {
                plan.next = Some(missed);
            }
        }
    }

    /// Decides every target whose slot is at or before `now`: a check starts (and the target is
    /// then running) or, when the previous check still runs, the slot is skipped. Either way the
    /// target's next slot becomes the first one strictly after `now`, so after a long pause a
    /// target fires once rather than once per missed slot. Decisions come in slot order.
    pub fn due(&mut self, now: DateTime<Utc>) -> Vec<Decision> {
        let mut decisions = Vec::new();
        for (name, entry) in &mut self.entries {
            let Some(plan) = entry.plan.as_mut() else {
                continue;
            };
            // A planned slot later than the rule's first slot after `now` means the clock went
            // back: the slot was planned on the later time. Without this the target would wait
            // for the clock to catch up (as long as the jump); with it, it keeps its rhythm.
            if let Some(fresh) = plan.rule.next_after(now) {
                if plan.next.is_some_and(|next| next > fresh) {
                    plan.next = Some(fresh);
                }
            }
            let Some(slot) = plan.next.filter(|slot| *slot <= now) else {
                continue;
            };
            if entry.running {
                decisions.push(Decision::Skip {
                    target: name.clone(),
                    scheduled_at: slot,
                });
            } else {
                entry.running = true;
                decisions.push(Decision::Start(Due {
                    target: name.clone(),
                    scheduled_at: slot,
                    started_at: now,
                    deadline: plan.deadline,
                }));
            }
            plan.next = plan.rule.next_after(now);
        }
        decisions.sort_by_key(Decision::scheduled_at);
        decisions
    }

    /// The check of `target` ended (completed, cancelled at its deadline, or never started).
    pub fn finished(&mut self, target: &str) {
        let retired = match self.entries.get_mut(target) {
            Some(entry) => {
                entry.running = false;
                entry.plan.is_none()
            }
            None => false,
        };
        if retired {
            self.entries.remove(target);
        }
    }

    /// The next slot of a configured target.
    pub fn next_due(&self, target: &str) -> Option<DateTime<Utc>> {
        self.entries.get(target)?.plan.as_ref()?.next
    }

    /// The earliest next slot of all targets.
    pub fn next_wakeup(&self) -> Option<DateTime<Utc>> {
        self.entries
            .values()
            .filter_map(|e| e.plan.as_ref()?.next)
            .min()
    }

    /// How many targets have a check running (or waiting for a concurrency permit).
    pub fn running(&self) -> usize {
        self.entries.values().filter(|e| e.running).count()
    }

    /// Every configured target with its next slot, in name order.
    pub fn slots(&self) -> Vec<(String, DateTime<Utc>)> {
        self.entries
            .iter()
            .filter_map(|(name, e)| Some((name.clone(), e.plan.as_ref()?.next?)))
            .collect()
    }
}

/// The latest slot at or before `at` of an interval target on the epoch-aligned grid a fleet
/// plans it on (`epoch + phase + k·interval`, as [`PlannerOptions::epoch_aligned`] makes it);
/// `None` for a zero interval or beyond chrono's range. A take-over runs the slot a dead peer
/// missed as this slot, so the target's next slot on the grid is in the next window and is
/// checked on time.
pub fn epoch_grid_slot_at_or_before(
    name: &str,
    interval: Duration,
    at: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let period = nanos(TimeDelta::from_std(interval).ok()?);
    if period <= 0 {
        return None;
    }
    let phase = TimeDelta::from_std(phase(name, interval)).ok()?;
    let anchor = DateTime::<Utc>::UNIX_EPOCH.checked_add_signed(phase)?;
    let k = nanos(at - anchor).div_euclid(period);
    anchor.checked_add_signed(delta_from_nanos(k.checked_mul(period)?)?)
}

/// A target's phase offset in `[0, range)`, from a hash of its name: the same target gets the
/// same offset after every restart, and different targets spread evenly across the range.
pub fn phase(name: &str, range: Duration) -> Duration {
    let range = range.as_nanos();
    if range == 0 {
        return Duration::ZERO;
    }
    let digest = Sha256::digest(name.as_bytes());
    let hash = digest
        .iter()
        .take(16)
        .fold(0u128, |acc, byte| (acc << 8) | u128::from(*byte));
    Duration::from_nanos(u64::try_from(hash % range).unwrap_or(0))
}

/// A signed duration in nanoseconds, without overflow for any span chrono can represent.
fn nanos(delta: TimeDelta) -> i128 {
    i128::from(delta.num_seconds()) * NANOS_PER_SECOND + i128::from(delta.subsec_nanos())
}

/// The inverse of [`nanos`], for spans chrono can represent.
fn delta_from_nanos(nanos: i128) -> Option<TimeDelta> {
    let seconds = i64::try_from(nanos.div_euclid(NANOS_PER_SECOND)).ok()?;
    let rest = u32::try_from(nanos.rem_euclid(NANOS_PER_SECOND)).ok()?;
    TimeDelta::new(seconds, rest)
}

#[cfg(test)]
#[path = "planner_tests.rs"]
mod tests;
