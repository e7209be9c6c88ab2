//! Targets whose checks cannot start: an API key that cannot be read is found when a
//! configuration is put in force (start and each reload) and at every check, logged when it
//! starts or changes (not at every check), and named on `/readyz` until the key can be read. Key
//! files other users can access are warned about once per configuration put in force.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::Shared;
use crate::fetch::check::key_file_warnings;
use crate::sync::lock;

/// Why a target's checks cannot start, since when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CannotCheck {
    pub since: DateTime<Utc>,
    /// Without the target's name, never with the key.
    pub reason: String,
}

impl Shared {
    /// Reads every monitored target's API key once, for a configuration just put in force:
    /// warns about key files others can access, and notes the targets whose key cannot be read
    /// (forgetting those whose key now can, and targets no longer monitored).
    pub(super) fn probe_keys(&self) {
        let generation = self.generation();
        for warning in key_file_warnings(&generation.config) {
            tracing::warn!("{warning}");
        }
        let mut found: BTreeMap<String, String> = BTreeMap::new();
        for (target, monitor) in generation.config.monitored() {
            if let Err(e) = monitor.api_key.resolve() {
                found.insert(
                    target.name.clone(),
                    format!("the api key could not be read: {e}"),
                );
            }
        }
        let monitored: Vec<&str> = generation
            .config
            .monitored()
            .map(|(t, _)| t.name.as_str())
            .collect();
        lock(&self.cannot_check).retain(|name, _| monitored.contains(&name.as_str()));
        for name in monitored {
            match found.remove(name) {
                Some(reason) => self.cannot_start(name, reason),
                None => self.can_check(name),
            }
        }
    }

    /// Notes that `target`'s check cannot start, logging it when that is news (a target that
    /// could start before, or another reason): the same reason at every later check is not
    /// logged again.
    pub(super) fn cannot_start(&self, target: &str, reason: String) {
        let mut cannot = lock(&self.cannot_check);
        if cannot.get(target).is_some_and(|c| c.reason == reason) {
            tracing::debug!(target_name = %target, %reason, "check cannot start (still)");
            return;
        }
        tracing::error!(
            target_name = %target,
            %reason,
            "check cannot start; the target's checks are recorded as unknown until it can"
        );
        cannot.insert(
            target.to_string(),
            CannotCheck {
                since: Utc::now(),
                reason,
            },
        );
    }

    /// Notes that `target`'s check could start (its key is readable), logging the recovery.
    pub(super) fn can_check(&self, target: &str) {
        if let Some(was) = lock(&self.cannot_check).remove(target) {
            tracing::info!(
                target_name = %target,
                was = %was.reason,
                "the target's check can start again"
            );
        }
    }

    /// The targets whose checks cannot start, by name.
    pub fn cannot_check(&self) -> BTreeMap<String, CannotCheck> {
        lock(&self.cannot_check).clone()
    }

    /// `/readyz`'s line naming the targets that cannot be checked, `None` when every target can.
    pub fn cannot_check_line(&self) -> Option<String> {
        let cannot = self.cannot_check();
        if cannot.is_empty() {
            return None;
        }
        let listed: Vec<String> = cannot
            .iter()
            .map(|(name, c)| format!("{name} ({})", c.reason))
            .collect();
        Some(format!(
            "cannot check {} target(s), recorded as unknown: {}",
            cannot.len(),
            listed.join("; ")
        ))
    }
}
