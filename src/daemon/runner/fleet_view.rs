//! The daemon's side of the fleet (`crate::fleet`, `docs/fleet.md`): asking the fleet before a
//! scheduled check whether this instance runs it, naming the instance that ran each target's
//! latest check, and the fleet view, which brings the checks every instance stored into this
//! instance's metrics and status page through the same reading the start restores from, so
//! any instance can be scraped for the whole fleet.

use std::collections::BTreeSet;

use crate::vantage::{VantageCheck, compare};

use super::*;
use crate::fleet::{FleetMode, SlotClaim};
use crate::store::StoreError;

impl Shared {
    /// Whether this instance runs `due` (always without a fleet): `Some` with the fleet's claim
    /// the check runs under (`None` without a fleet), or `None` when it does not run. A check
    /// the fleet refuses because its database cannot be reached is not run (`crate::fleet` says
    /// why) and is logged; `/readyz` reports it until a heartbeat succeeds.
    pub(super) async fn fleet_may_run(
        &self,
        target: &TargetConfig,
        due: &Due,
    ) -> Option<Option<SlotClaim>> {
        let Some((fleet, slot)) = self.fleet_slot(target, due) else {
            return Some(None);
        };
        match fleet.may_run(&target.name, slot).await {
            Ok(Some(claim)) => Some(Some(claim)),
            Ok(None) => {
                tracing::debug!(slot, "another instance runs this slot");
                None
            }
            // Leaving is a shutdown in progress: the peers take the slot.
            Err(e @ crate::fleet::FleetError::Left) => {
                tracing::debug!(error = %e, slot, "check not run");
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, slot, "check not run: the fleet cannot tell whether this instance runs it");
                None
            }
        }
    }

    /// This instance's claim of `due`'s slot, for recording a check cancelled at its deadline:
    /// `Some(None)` without a fleet, `Some(claim)` while this process holds the claim unstored,
    /// `None` when it does not (the check was cancelled before claiming, or a peer took the slot
    /// over) or the fleet's database cannot say (logged).
    pub(super) async fn fleet_held_claim(
        &self,
        target: &TargetConfig,
        due: &Due,
    ) -> Option<Option<SlotClaim>> {
        let Some((fleet, slot)) = self.fleet_slot(target, due) else {
            return Some(None);
        };
        match fleet.held_claim(&target.name, slot).await {
            Ok(Some(claim)) => Some(Some(claim)),
            Ok(None) => {
                tracing::debug!(
                    slot,
                    "a check past its deadline is not recorded: this instance holds no claim of its slot"
                );
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, slot, "a check past its deadline is not recorded: the fleet cannot tell whether this instance holds its slot");
                None
            }
        }
    }

    /// The fleet and the key of `due`'s slot ([`crate::fleet::slot_key`]); `None` without a
    /// fleet, or for a target that is not monitored (a one-off check is nobody's slot).
    fn fleet_slot(&self, target: &TargetConfig, due: &Due) -> Option<(&crate::fleet::Fleet, i64)> {
        let fleet = self.fleet.as_ref()?;
        let monitor = target.monitor.as_ref()?;
        Some((
            fleet,
            crate::fleet::slot_key(&monitor.schedule, due.scheduled_at),
        ))
    }

    /// The instance named as having run a check this instance just stored (also exported as
    /// `teewatch_target_checked_by_info`); `None` without a fleet.
    pub(super) fn own_checked_by(&self, target: &str) -> Option<String> {
        let fleet = self.fleet.as_ref()?;
        self.metrics
            .set_checked_by(target, fleet.instance(), fleet.vantage());
        Some(fleet.instance().to_string())
    }

    /// The instance that ran a stored check, as the store records it, also set as
    /// `teewatch_target_checked_by_info`; `None` without a fleet or for a check stored before
    /// instances were recorded.
    pub(super) fn restored_checked_by(&self, stored: &LatestCheck) -> Option<String> {
        self.fleet.as_ref()?;
        if stored.instance.is_empty() {
            return None;
        }
        self.metrics
            .set_checked_by(&stored.target, &stored.instance, &stored.vantage);
        Some(stored.instance.clone())
    }

    /// One pass of the fleet view: the latest check of every target whose latest check has an
    /// id above `after` is published, unless this instance already shows it (its own check,
    /// or one an earlier pass brought in). Returns the highest check id seen (`after` when
    /// there was none), which the caller passes back two passes later: a check whose
    /// transaction took its id before another's but committed after it is then still read.
    pub async fn refresh_fleet_view(&self, after: i64) -> Result<i64, StoreError> {
        let latest = self.store.latest_checks_after(after).await?;
        let newest = latest.iter().map(|l| l.check_id).max().unwrap_or(after);
        let now = self.clock.now();
        let (fresh, state_since) = {
            let statuses = lock(&self.status);
            let mut fresh = Vec::new();
            let mut since = BTreeMap::new();
            for l in latest {
                let shown = statuses.get(&l.target);
                if shown
                    .is_some_and(|s| s.check_id == Some(l.check_id) || s.last_check > l.finished_at)
                {
                    continue;
                }
                // A run of one state continues across instances as it does across checks.
                let run_since = match shown {
                    Some(s) if s.state == l.state => s.state_since,
                    _ => l.finished_at,
                };
                since.insert(l.target.clone(), run_since);
                fresh.push(l);
            }
            (fresh, since)
        };
        if fresh.is_empty() {
            return Ok(newest);
        }
        {
            // The drift flags are judged against a history that knows the values a peer saw.
            let mut histories = lock(&self.histories);
            for l in &fresh {
                histories.entry(l.target.clone()).or_default().absorb(
                    &l.measurements,
                    &[],
                    l.finished_at,
                );
            }
        }
        tracing::debug!(checks = fresh.len(), "fleet view: published peers' checks");
        self.restore(fresh, &state_since, now);
        Ok(newest)
    }

    /// The configured targets this instance owns among the live shard peers it last saw;
    /// `None` without a fleet in shard mode.
    pub fn owned_targets(&self) -> Option<BTreeSet<String>> {
        let fleet = self.fleet.as_ref()?;
        if fleet.mode() != FleetMode::Shard {
            return None;
        }
        Some(
            self.targets()
                .into_iter()
                .filter(|t| fleet.owner_of(&t.name).as_deref() == Some(fleet.instance()))
                .map(|t| t.name)
                .collect(),
        )
    }

    /// The take-over: checks each target in `gained` (targets this instance has just come to
    /// own, because their owner's lease ran out or it left) now, at most `[daemon] concurrency`
    /// at a time, instead of at its next slot. Each check is the target's latest slot on the
    /// fleet's grid at the moment ownership changed, run late, and claims that slot's window as
    /// a scheduled one would: when the old owner already checked that slot, the claim is lost
    /// and nothing runs twice; otherwise the slot the old owner missed (or claimed and never
    /// stored) is made up within a heartbeat of its lease's end. So a dead instance's targets
    /// are checked again within one interval of its death, and the next slot on the grid, in
    /// the next window, is checked on time. (Claiming the window that holds now instead would
    /// take the claim of a slot still to come in it: that slot would then be lost, and the
    /// target left unchecked for up to two intervals.)
    pub async fn take_over(self: &Arc<Self>, gained: Vec<String>) {
        let limit = self.generation().config.daemon.concurrency.max(1);
        let permits = Arc::new(tokio::sync::Semaphore::new(limit));
        let mut running = tokio::task::JoinSet::new();
        tracing::info!(
            targets = gained.len(),
            "taking over targets from a peer whose lease ended"
        );
        // Every check of the take-over belongs to a slot at or before the moment ownership
        // changed, however long the last of them waits for a permit: a busy instance starts
        // them late, but it checks the slot the peer left unchecked, not a later one.
        let changed_at = self.clock.now();
        // The planned targets, read once: a take-over can gain a thousand of them.
        let mut planned_by_name: BTreeMap<String, PlannedTarget> = self
            .targets()
            .into_iter()
            .map(|t| (t.name.clone(), t))
            .collect();
        for name in gained {
            let Some(planned) = planned_by_name.remove(&name) else {
                continue;
            };
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            let shared = self.clone();
            // A cron slot is its occurrence to the second, which a take-over at another second
            // never claims: it runs as an extra check at the moment of the change.
            let scheduled_at = match &planned.schedule {
                crate::config::Schedule::Interval(interval) => {
                    crate::schedule::epoch_grid_slot_at_or_before(
                        &planned.name,
                        *interval,
                        changed_at,
                    )
                    .unwrap_or(changed_at)
                }
                crate::config::Schedule::Cron(_) => changed_at,
            };
            let due = Due {
                target: planned.name,
                scheduled_at,
                started_at: self.clock.now(),
                deadline: planned.deadline,
            };
            let span = tracing::info_span!("check", target = %due.target, take_over = true);
            running.spawn(
                async move {
                    shared.check(due).await;
                    drop(permit);
                }
                .instrument(span),
            );
        }
        while running.join_next().await.is_some() {}
    }

    /// Whether this instance belongs to a replicate fleet: every instance checks every target,
    /// its target gauges show its own vantage point's checks, and peers' checks feed only the
    /// comparison of vantage points ([`Shared::refresh_vantages`]).
    pub fn replicates(&self) -> bool {
        self.fleet
            .as_ref()
            .is_some_and(|f| f.mode() == FleetMode::Replicate)
    }

    /// One pass of a replicate fleet's comparison: the latest check of each target from each
    /// vantage point stored with an id above `after` goes into `book`, then every configured
    /// target's checks in `book` are compared (`crate::vantage::compare`, a vantage point
    /// counting while its latest check is under two intervals old) and set as
    /// `teewatch_vantage_state` and `teewatch_vantage_disagreement`. Returns the highest id
    /// read, as [`Shared::refresh_fleet_view`] does.
    pub async fn refresh_vantages(
        &self,
        after: i64,
        book: &mut VantageBook,
    ) -> Result<i64, StoreError> {
        let latest = self.store.latest_checks_per_vantage_after(after).await?;
        let newest = latest.iter().map(|l| l.check_id).max().unwrap_or(after);
        for l in latest {
            let outcomes = l
                .checks
                .iter()
                .map(|c| crate::vantage::CheckOutcome {
                    name: c.name.clone(),
                    scope: c.scope.clone(),
                    state: c.state,
                })
                .collect();
            let seen = book.entry(l.target.clone()).or_default();
            if seen
                .get(&l.vantage)
                .is_some_and(|v| v.finished_at > l.finished_at)
            {
                continue;
            }
            seen.insert(
                l.vantage.clone(),
                VantageCheck {
                    vantage: l.vantage.clone(),
                    finished_at: l.finished_at,
                    state: l.state,
                    checks: outcomes,
                    measurements: l.measurements,
                },
            );
        }
        let now = self.clock.now();
        let generation = self.generation();
        for target in generation.config.monitored().map(|(t, _)| t) {
            let Some(seen) = book.get(&target.name) else {
                continue;
            };
            let checks: Vec<VantageCheck> = seen.values().cloned().collect();
            let comparison = compare(&checks, comparison_interval(target), now);
            self.metrics.set_vantage(&target.name, &comparison);
        }
        book.retain(|name, _| generation.config.target(name).is_some());
        Ok(newest)
    }
}

/// Each target's latest check from each vantage point, as a replicate fleet's view has read
/// them: target → vantage point → check.
pub type VantageBook = BTreeMap<String, BTreeMap<String, VantageCheck>>;

/// The interval a target's vantage points are compared over: its own, or an hour for a cron
/// schedule (whose gaps vary; an hour covers the common hourly and more frequent ones).
fn comparison_interval(target: &TargetConfig) -> Duration {
    match target.monitor.as_ref().map(|m| &m.schedule) {
        Some(crate::config::Schedule::Interval(d)) => *d,
        _ => Duration::from_secs(3600),
    }
}
