//! Accepted drift in the running daemon. A drifted value stops holding its drift gauge up once
//! the pins in force accept it (at once: the flags are judged against the policy in force) or
//! once someone acknowledged it (`teewatch history ack`, written to the store by another
//! process). The daemon brings acknowledgements in at the target's next check while one of its
//! flags is up, and for every target at a reload; it records an acceptance by pins the first
//! time it finds one, so `teewatch history` shows when the value was accepted.

use chrono::{DateTime, Utc};

use super::{Generation, Shared};
use crate::config::TargetConfig;
use crate::drift::{self, Acceptance, AcceptedBy, Measurement};
use crate::sync::lock;

impl Shared {
    /// After a configuration was put in force (a reload, or the start): brings in every
    /// acknowledgement from the store, records the drifted values the pins in force now accept,
    /// and sets every target's drift gauges from the result.
    pub async fn settle_drift(&self) {
        let generation = self.generation();
        let acknowledged = match self.store.acceptances_of(None).await {
            Ok(all) => all,
            Err(e) => {
                tracing::warn!(error = %e, "accepted drift could not be read from the store");
                Default::default()
            }
        };
        {
            let mut histories = lock(&self.histories);
            for (target, accepted) in acknowledged {
                if let Some(history) = histories.get_mut(&target) {
                    for ((field, value), at) in accepted {
                        history.accept(&field, &value, at);
                    }
                }
            }
        }
        let now = self.clock.now();
        for (target, _) in generation.config.monitored() {
            self.record_pin_acceptances(target, now).await;
            let latest = lock(&self.latest).get(&target.name).cloned();
            if let Some(latest) = latest {
                let flags = self.flags(&generation, target, &latest, now);
                self.metrics.set_drift(&target.name, &flags);
            }
        }
    }

    /// Before a stored check of `target` is published: while one of its drift flags is up, brings
    /// in acknowledgements made since; then records the drifted values its pins accept.
    pub(super) async fn settle_target(
        &self,
        generation: &Generation,
        target: &TargetConfig,
        measurements: &[Measurement],
        now: DateTime<Utc>,
    ) {
        let flagged = self
            .flags(generation, target, measurements, now)
            .values()
            .any(|up| *up);
        if flagged {
            match self.store.acceptances_of(Some(&target.name)).await {
                Ok(mut all) => {
                    if let Some(accepted) = all.remove(&target.name) {
                        let mut histories = lock(&self.histories);
                        let history = histories.entry(target.name.clone()).or_default();
                        for ((field, value), at) in accepted {
                            history.accept(&field, &value, at);
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accepted drift could not be read from the store");
                }
            }
        }
        self.record_pin_acceptances(target, now).await;
    }

    /// Records, as accepted by pins at `now`, each drifted value of `target` the pins in force
    /// accept with no acceptance since its drift event. A failed write is retried at the next
    /// check or reload; the gauge does not wait for it.
    async fn record_pin_acceptances(&self, target: &TargetConfig, now: DateTime<Utc>) {
        let awaiting = lock(&self.histories)
            .get(&target.name)
            .map(|history| drift::awaiting_pin_acceptance(history, &target.policy))
            .unwrap_or_default();
        if awaiting.is_empty() {
            return;
        }
        let acceptances: Vec<Acceptance> = awaiting
            .into_iter()
            .map(|(field, value)| Acceptance {
                field,
                value,
                how: AcceptedBy::Pin,
                by: None,
                note: None,
                at: now,
            })
            .collect();
        match self
            .store
            .record_acceptances(&target.name, &acceptances)
            .await
        {
            Ok(()) => {
                let mut histories = lock(&self.histories);
                let history = histories.entry(target.name.clone()).or_default();
                for a in &acceptances {
                    history.accept(&a.field, &a.value, a.at);
                    tracing::info!(
                        target_name = %target.name,
                        field = %a.field,
                        value = %a.value,
                        "drifted value accepted by the pins in force"
                    );
                }
            }
            Err(e) => tracing::warn!(
                target_name = %target.name,
                error = %e,
                "recording drift accepted by the pins failed; retried at the next check"
            ),
        }
    }

    /// The drift flags of `target`'s `measurements` under the configuration in force.
    fn flags(
        &self,
        generation: &Generation,
        target: &TargetConfig,
        measurements: &[Measurement],
        now: DateTime<Utc>,
    ) -> std::collections::BTreeMap<String, bool> {
        let histories = lock(&self.histories);
        let no_history = drift::TargetHistory::default();
        let history = histories.get(&target.name).unwrap_or(&no_history);
        drift::drift_flags(
            history,
            measurements,
            &target.policy,
            now,
            generation.config.daemon.drift_window,
        )
    }
}
