//! The fleet's metrics (`docs/fleet.md`): every peer this instance has seen in the database with
//! whether its lease holds and how old its heartbeat is by the database's clock, the targets
//! each live peer owns in shard mode, the slot claims this instance lost to another, and which
//! instance (and vantage point) ran each target's latest check.
//!
//! They live in the registry beside the process-wide families; an instance without a fleet
//! (SQLite) never touches them, so its exposition is unchanged: a vector without series is not
//! rendered, and the claims counter is registered only when a fleet starts.

use std::collections::BTreeMap;

use prometheus::{GaugeVec, IntCounter, IntGaugeVec, Opts, Registry};

use super::{MetricsError, remove, set_float, set_int};

/// One peer as the heartbeat saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerGauge {
    pub peer: String,
    pub vantage: String,
    pub up: bool,
    /// `db_now - heartbeat_at`, in seconds.
    pub heartbeat_age_seconds: f64,
    /// Targets it owns in shard mode (`None` in replicate mode, where nobody owns any).
    pub targets_owned: Option<usize>,
}

/// The fleet families and the label sets created in them, to remove those that go away.
pub(super) struct FleetFamilies {
    up: IntGaugeVec,
    heartbeat_age: GaugeVec,
    owned: IntGaugeVec,
    claims_lost: IntCounter,
    checked_by: IntGaugeVec,
    /// The registry, for the claims counter, registered when a fleet starts.
    registry: Registry,
    state: std::sync::Mutex<FleetSeries>,
}

#[derive(Default)]
struct FleetSeries {
    claims_registered: bool,
    /// peer → vantage of its `up` series.
    peers: BTreeMap<String, String>,
    owned: Vec<String>,
    /// target → (checked_by, vantage) of its info series.
    checked_by: BTreeMap<String, (String, String)>,
}

impl FleetFamilies {
    pub(super) fn register(registry: &Registry) -> Result<FleetFamilies, MetricsError> {
        let up = IntGaugeVec::new(
            Opts::new(
                "teewatch_fleet_instance_up",
                "1 while the peer's lease in the fleet's database is unexpired (by the \
                 database's clock), 0 after; every peer this instance has seen, itself included.",
            ),
            &["peer", "vantage"],
        )
        .map_err(MetricsError::Create)?;
        let heartbeat_age = GaugeVec::new(
            Opts::new(
                "teewatch_fleet_instance_heartbeat_age_seconds",
                "Seconds since the peer's last heartbeat, by the database's clock.",
            ),
            &["peer"],
        )
        .map_err(MetricsError::Create)?;
        let owned = IntGaugeVec::new(
            Opts::new(
                "teewatch_fleet_targets_owned",
                "Targets each live peer owns in shard mode (rendezvous hashing over the live \
                 peers), as this instance computes it.",
            ),
            &["peer"],
        )
        .map_err(MetricsError::Create)?;
        let claims_lost = IntCounter::new(
            "teewatch_fleet_slot_claims_lost_total",
            "Slot claims this instance tried and another instance already held, or lost to a peer before its check was stored.",
        )
        .map_err(MetricsError::Create)?;
        let checked_by = IntGaugeVec::new(
            Opts::new(
                "teewatch_target_checked_by_info",
                "1 for the instance and vantage point that ran the target's latest check.",
            ),
            &["target", "checked_by", "vantage"],
        )
        .map_err(MetricsError::Create)?;
        for c in [&up, &owned, &checked_by] {
            registry
                .register(Box::new(c.clone()))
                .map_err(MetricsError::Register)?;
        }
        registry
            .register(Box::new(heartbeat_age.clone()))
            .map_err(MetricsError::Register)?;
        Ok(FleetFamilies {
            up,
            heartbeat_age,
            owned,
            claims_lost,
            checked_by,
            registry: registry.clone(),
            state: std::sync::Mutex::new(FleetSeries::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FleetSeries> {
        crate::sync::lock(&self.state)
    }

    /// Registers the claims counter at zero (once), so its rate exists from the fleet's start.
    pub(super) fn start(&self) {
        let mut state = self.lock();
        if !state.claims_registered {
            state.claims_registered = self
                .registry
                .register(Box::new(self.claims_lost.clone()))
                .is_ok();
        }
    }

    pub(super) fn set_peers(&self, peers: &[PeerGauge]) {
        let mut state = self.lock();
        let mut seen = BTreeMap::new();
        let mut owned = Vec::new();
        for p in peers {
            let peer = p.peer.clone();
            let vantage = p.vantage.clone();
            if let Some(old) = state.peers.get(&peer)
                && *old != vantage
            {
                remove(&self.up, &[&peer, old]);
            }
            set_int(&self.up, &[&peer, &vantage], i64::from(p.up));
            set_float(&self.heartbeat_age, &[&peer], p.heartbeat_age_seconds);
            if let Some(n) = p.targets_owned.filter(|_| p.up) {
                set_int(&self.owned, &[&peer], i64::try_from(n).unwrap_or(i64::MAX));
                owned.push(peer.clone());
            }
            seen.insert(peer, vantage);
        }
        for (peer, vantage) in &state.peers {
            if !seen.contains_key(peer) {
                remove(&self.up, &[peer, vantage]);
                remove(&self.heartbeat_age, &[peer]);
            }
        }
        for peer in &state.owned {
            if !owned.contains(peer) {
                remove(&self.owned, &[peer]);
            }
        }
        state.peers = seen;
        state.owned = owned;
    }

    pub(super) fn claim_lost(&self) {
        self.claims_lost.inc();
    }

    pub(super) fn set_checked_by(&self, target: &str, instance: &str, vantage: &str) {
        let target = target.to_string();
        let wanted = (instance.to_string(), vantage.to_string());
        let mut state = self.lock();
        if let Some(old) = state.checked_by.get(&target) {
            if *old == wanted {
                return;
            }
            remove(&self.checked_by, &[&target, &old.0, &old.1]);
        }
        set_int(&self.checked_by, &[&target, &wanted.0, &wanted.1], 1);
        state.checked_by.insert(target, wanted);
    }

    pub(super) fn retain_checked_by(&self, names: &[String]) {
        let keep = names;
        let mut state = self.lock();
        state.checked_by.retain(|target, (by, vantage)| {
            let kept = keep.contains(target);
            if !kept {
                remove(&self.checked_by, &[target, by, vantage]);
            }
            kept
        });
    }
}

#[cfg(test)]
mod tests {
    use super::super::Metrics;
    use super::PeerGauge;

    fn gauge(peer: &str, vantage: &str, up: bool, owned: Option<usize>) -> PeerGauge {
        PeerGauge {
            peer: peer.into(),
            vantage: vantage.into(),
            up,
            heartbeat_age_seconds: 1.5,
            targets_owned: owned,
        }
    }

    fn lines(m: &Metrics, family: &str) -> Vec<String> {
        m.render()
            .unwrap_or_else(|e| panic!("{e}"))
            .lines()
            .filter(|l| l.starts_with(family))
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn without_a_fleet_nothing_is_exported() {
        let m = Metrics::new().unwrap_or_else(|e| panic!("{e}"));
        let text = m.render().unwrap_or_else(|e| panic!("{e}"));
        assert!(!text.contains("teewatch_fleet_"), "{text}");
        assert!(!text.contains("teewatch_target_checked_by_info"), "{text}");
    }

    #[test]
    fn peers_follow_each_heartbeat_and_a_pruned_peer_leaves_no_series() {
        let m = Metrics::new().unwrap_or_else(|e| panic!("{e}"));
        m.fleet_started();
        assert_eq!(
            lines(&m, "teewatch_fleet_slot_claims_lost_total"),
            ["teewatch_fleet_slot_claims_lost_total 0"]
        );
        m.set_fleet_peers(&[
            gauge("mon-a", "", true, Some(4)),
            gauge("mon-b", "", true, Some(2)),
        ]);
        assert_eq!(
            lines(&m, "teewatch_fleet_targets_owned{"),
            [
                "teewatch_fleet_targets_owned{peer=\"mon-a\"} 4",
                "teewatch_fleet_targets_owned{peer=\"mon-b\"} 2"
            ]
        );
        // mon-b dies: up 0, owns nothing; then it is pruned: no series at all.
        m.set_fleet_peers(&[
            gauge("mon-a", "", true, Some(6)),
            gauge("mon-b", "", false, None),
        ]);
        assert_eq!(
            lines(&m, "teewatch_fleet_instance_up{"),
            [
                "teewatch_fleet_instance_up{peer=\"mon-a\",vantage=\"\"} 1",
                "teewatch_fleet_instance_up{peer=\"mon-b\",vantage=\"\"} 0"
            ]
        );
        assert_eq!(
            lines(&m, "teewatch_fleet_targets_owned{"),
            ["teewatch_fleet_targets_owned{peer=\"mon-a\"} 6"]
        );
        m.set_fleet_peers(&[gauge("mon-a", "", true, Some(6))]);
        assert_eq!(lines(&m, "teewatch_fleet_instance_up{").len(), 1);
        assert_eq!(
            lines(&m, "teewatch_fleet_instance_heartbeat_age_seconds{"),
            ["teewatch_fleet_instance_heartbeat_age_seconds{peer=\"mon-a\"} 1.5"]
        );
        m.fleet_claim_lost();
        assert_eq!(
            lines(&m, "teewatch_fleet_slot_claims_lost_total"),
            ["teewatch_fleet_slot_claims_lost_total 1"]
        );
    }

    #[test]
    fn checked_by_keeps_one_series_per_target() {
        // (The encoder writes labels in name order.)
        let m = Metrics::new().unwrap_or_else(|e| panic!("{e}"));
        m.set_checked_by("t1", "mon-a", "");
        m.set_checked_by("t1", "mon-b", "");
        m.set_checked_by("t2", "mon-a", "");
        assert_eq!(
            lines(&m, "teewatch_target_checked_by_info{"),
            [
                "teewatch_target_checked_by_info{checked_by=\"mon-a\",target=\"t2\",vantage=\"\"} 1",
                "teewatch_target_checked_by_info{checked_by=\"mon-b\",target=\"t1\",vantage=\"\"} 1"
            ]
        );
        m.retain_targets(&["t2".to_string()]);
        assert_eq!(lines(&m, "teewatch_target_checked_by_info{").len(), 1);
        // A check of a removed target still in flight brings no series back.
        m.set_checked_by("t1", "mon-a", "");
        assert_eq!(lines(&m, "teewatch_target_checked_by_info{").len(), 1);
    }
}
