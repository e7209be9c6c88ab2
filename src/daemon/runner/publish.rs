//! What the metrics and the status page show of the daemon's checks: restored from the store at
//! start (the latest stored check of each target, its drift and its collateral), then published
//! after each check the store committed, never before.

use super::*;

/// How many distinct collaterals `collateral_expiries` remembers: one per platform (FMSPC) and
/// collateral generation in use, a handful at most.
const COLLATERAL_MEMO: usize = 8;

impl Shared {
    /// Rebuilds gauges and the status page from the store after a start, so nothing reads as
    /// zero or missing until the next check. `state_since` is [`Store::state_since`]; a target
    /// missing from it counts from its latest check.
    pub fn restore(
        &self,
        latest: Vec<LatestCheck>,
        state_since: &BTreeMap<String, DateTime<Utc>>,
        now: DateTime<Utc>,
    ) {
        let generation = self.generation();
        let config = &generation.config;
        let window = config.daemon.drift_window;
        let histories = lock(&self.histories);
        let no_history = TargetHistory::default();
        for stored in latest {
            let Some(target) = config.target(&stored.target) else {
                continue;
            };
            let history = histories.get(&stored.target).unwrap_or(&no_history);
            let snapshot = TargetSnapshot {
                target: stored.target.clone(),
                state: stored.state,
                checks: stored.checks.clone(),
                last_check: stored.finished_at,
                last_success: stored.last_success_at,
                last_duration: stored.duration,
                tcb_status: stored.tcb_status.clone(),
                attestation_format: stored.attestation_format,
                measurements: drift::latest_values(&stored.measurements),
                drift: drift::drift_flags(
                    history,
                    &stored.measurements,
                    &target.policy,
                    now,
                    window,
                ),
            };
            lock(&self.latest).insert(stored.target.clone(), stored.measurements.clone());
            let since = state_since
                .get(&stored.target)
                .copied()
                .unwrap_or(stored.finished_at);
            self.metrics.set_target(&snapshot, false);
            self.metrics.set_state_since(&stored.target, since);
            self.metrics
                .set_last_dispatched(&stored.target, stored.scheduled_at);
            let last_drift = last_drift_of(history);
            lock(&self.status).insert(
                stored.target.clone(),
                TargetStatus {
                    state: stored.state,
                    state_since: since,
                    check_id: Some(stored.check_id),
                    last_check: stored.finished_at,
                    last_success: stored.last_success_at,
                    failing: failing(&stored.checks),
                    known: crate::daemon::status_page::known_names(&stored.checks),
                    checked_by: self.restored_checked_by(&stored),
                    tcb_status: stored.tcb_status,
                    last_drift,
                    trust: stored.trust,
                },
            );
        }
    }

    /// Restores `teewatch_collateral_expiry_timestamp_seconds` from the stored bundles of the
    /// targets' latest checks (older checks first, so the newest collateral of a platform wins,
    /// as it does after checks), and each platform's fetch time from the collateral cache, as
    /// [`Shared::publish`] sets them, with the platforms of each configured target. A latest
    /// check whose bundle retention removed, or which carried no collateral, leaves its
    /// platforms to the next check.
    pub async fn restore_collateral(&self, latest: &[LatestCheck]) {
        let generation = self.generation();
        let mut ordered: Vec<&LatestCheck> = latest.iter().collect();
        ordered.sort_by_key(|l| (l.finished_at, l.check_id));
        for stored in ordered {
            let bundle = match self.store.export_bundle(stored.check_id).await {
                Ok(bundle) => bundle,
                Err(crate::store::StoreError::BundleMissing { .. }) => continue,
                Err(e) => {
                    tracing::warn!(
                        target_name = %stored.target,
                        check_id = stored.check_id,
                        error = %e,
                        "the latest check's bundle cannot be read; its collateral expiry waits for the next check"
                    );
                    continue;
                }
            };
            // A target no longer configured keeps its history, not its series.
            if generation.config.target(&stored.target).is_some() {
                self.set_collateral_metrics(&stored.target, &bundle);
            }
        }
    }

    /// The collateral expiry of each platform in a target's bundle, the fetch time the cache it
    /// came from recorded, and the platforms the target runs on.
    fn set_collateral_metrics(&self, target: &str, bundle: &Value) {
        let expiries = self.collateral_expiries(bundle);
        for (fmspc, at) in &expiries {
            self.metrics.set_collateral_expiry(fmspc, *at);
            // The bundle does not say when its collateral was fetched; the cache it came from
            // does (and remembers it across restarts).
            if let Some(cached) = self.fetcher.collateral_cache().get(fmspc) {
                self.metrics
                    .set_collateral_fetched(fmspc, cached.fetched_at);
            }
        }
        self.metrics
            .set_target_platforms(target, expiries.iter().map(|(fmspc, _)| fmspc.as_str()));
    }

    /// The collateral expiries of a bundle, remembered for the last few distinct collaterals.
    /// Every target on a platform carries the same collateral, and reading its validity parses
    /// its CRLs and JSON documents: done for every check, that was 3 % of the daemon's CPU at
    /// 2,000 targets. The expiries depend on the bundle's `tdx_collateral` only.
    fn collateral_expiries(&self, bundle: &Value) -> CollateralExpiries {
        let Some(collateral) = bundle.get("tdx_collateral") else {
            return Vec::new();
        };
        let mut memo = lock(&self.collateral_memo);
        if let Some((_, expiries)) = memo.iter().find(|(known, _)| known == collateral) {
            return expiries.clone();
        }
        let expiries = crate::metrics::collateral_expiries(bundle);
        if memo.len() >= COLLATERAL_MEMO {
            memo.remove(0);
        }
        memo.push((collateral.clone(), expiries.clone()));
        expiries
    }

    /// Updates the metrics and the status page from a stored check whose measurements and drift
    /// events the history has absorbed.
    pub(super) fn publish(
        &self,
        generation: &Generation,
        target: &TargetConfig,
        record: &CheckRecord,
        recorded: &crate::store::Recorded,
        now: DateTime<Utc>,
    ) {
        let check_id = recorded.check_id;
        let verdict = &record.verdict;
        if let Some(monitor) = &target.monitor {
            let mut tracks = lock(&self.canary);
            let track = tracks.entry(target.name.clone()).or_default();
            // A target checked with every check's chats keeps no run to carry.
            if monitor.canary.every > 1 {
                track.stored(check_id, &record.bundle, verdict);
            }
        }
        let published = cadence::published_checks(&record.bundle, &verdict.checks);
        lock(&self.latest).insert(target.name.clone(), record.measurements.clone());
        let (flags, last_drift) = {
            let mut histories = lock(&self.histories);
            let history = histories.entry(target.name.clone()).or_default();
            let flags = drift::drift_flags(
                history,
                &record.measurements,
                &target.policy,
                now,
                generation.config.daemon.drift_window,
            );
            (flags, last_drift_of(history))
        };
        let (previous_success, previous_run) = lock(&self.status)
            .get(&target.name)
            .map_or((None, None), |s| {
                (s.last_success, Some((s.state, s.state_since)))
            });
        // The run of one state continues while checks keep that state; a new state starts its
        // own run at this check.
        let state_since = match previous_run {
            Some((state, since)) if state == verdict.state => since,
            _ => record.finished_at,
        };
        let last_success = if verdict.state == State::Pass {
            Some(record.finished_at)
        } else {
            previous_success
        };
        let duration = (record.finished_at - record.started_at)
            .to_std()
            .unwrap_or(Duration::ZERO);
        let snapshot = TargetSnapshot {
            target: target.name.clone(),
            state: verdict.state,
            checks: published.clone(),
            last_check: record.finished_at,
            last_success,
            last_duration: duration,
            tcb_status: verdict.tcb_status().map(str::to_string),
            attestation_format: verdict.response_format(),
            measurements: drift::latest_values(&record.measurements),
            drift: flags,
        };
        self.metrics.set_target(&snapshot, true);
        self.metrics.set_state_since(&target.name, state_since);
        self.metrics.check_finished(&target.name, verdict.state);
        if !record.drift.is_empty() {
            self.metrics
                .drift_events(&target.name, record.drift.len() as u64);
            for event in &record.drift {
                tracing::warn!(
                    field = %event.field,
                    node = %event.node,
                    new_value = %event.new_value,
                    old_values = ?event.old_values,
                    reasons = ?event.reasons,
                    "measurement drift"
                );
            }
        }
        self.set_collateral_metrics(&target.name, &record.bundle);
        let failing_checks = failing(&published);
        tracing::info!(
            state = verdict.state.as_str(),
            failing = %lines::check_names(&verdict.checks, State::Fail),
            unknown = %lines::check_names(&verdict.checks, State::Unknown),
            duration_ms = duration.as_millis() as u64,
            lag_ms = (record.started_at - record.scheduled_at).num_milliseconds(),
            check_id,
            // The chain's head, kept by the journal outside the database, for `teewatch history
            // verify --head` (docs/store.md).
            record_hash = %recorded.record_hash_hex(),
            "check finished"
        );
        lock(&self.status).insert(
            target.name.clone(),
            TargetStatus {
                state: verdict.state,
                state_since,
                check_id: Some(check_id),
                last_check: record.finished_at,
                last_success,
                failing: failing_checks,
                known: crate::daemon::status_page::known_names(&published),
                tcb_status: snapshot.tcb_status.clone(),
                last_drift,
                trust: verdict.trust.clone(),
                checked_by: self.own_checked_by(&target.name),
            },
        );
    }
}

fn failing(checks: &[Check]) -> Vec<Check> {
    checks
        .iter()
        .filter(|c| c.state != State::Pass)
        .cloned()
        .collect()
}

/// The most recent drift event a history records, rebuilt as an event (old values are not kept
/// in the in-memory history, so they are left empty here; the store has them).
fn last_drift_of(history: &TargetHistory) -> Option<DriftEvent> {
    history
        .drifted
        .iter()
        .max_by_key(|(_, at)| **at)
        .map(|((field, value), at)| DriftEvent {
            field: field.clone(),
            node: String::new(),
            old_values: Vec::new(),
            new_value: value.clone(),
            reasons: Vec::new(),
            at: *at,
        })
}
