//! The fleet: several teewatch instances sharing one PostgreSQL store, either splitting the
//! targets (shard mode) or each checking every target from its own vantage point (replicate
//! mode). `docs/fleet.md` is the design and its reasons; in short:
//!
//! - every instance heartbeats into `fleet_instances` every third of its lease, by the
//!   database's clock, and is live while its heartbeat plus its lease is later than the
//!   database's now (`db.rs`, `heartbeat.rs`);
//! - in shard mode each target is owned by the live instance with the highest rendezvous score
//!   (`rendezvous.rs`), so a dead instance's targets, and only those, move to the others;
//! - before a check the runner asks [`Fleet::may_run`]: the owner (or, in replicate mode, every
//!   instance for its vantage point) claims the slot with one `INSERT … ON CONFLICT`, and only
//!   the claim that made the row (or took over the unstored claim of an instance that is no
//!   longer live) runs the check; the check is stored only while the claim is still its own
//!   (`store/write_pg.rs`), so no slot is stored twice even while two instances disagree about
//!   who is live, and none is lost with an instance that died holding it.
//!
//! When the database cannot be reached the instance runs nothing: its results could not be
//! stored anyway (the store is the same database), a check without a claim could run a slot a
//! peer also runs, and the peers that can reach the database take its targets over once its
//! lease runs out. It is not silent: `/readyz` says the fleet's database cannot be reached, each
//! refused check is logged, and the instance's own `teewatch_fleet_instance_up` falls to 0 on
//! its peers.

mod db;
pub mod heartbeat;
pub mod rendezvous;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::config::Schedule;
pub use crate::config::{FleetMode, FleetSettings};
use crate::metrics::{Metrics, PeerGauge};
pub use crate::record::SlotClaim;
use crate::sync::lock;
pub use db::{PRUNE_AFTER, PeerRow};

/// Why the fleet cannot say whether a check may run: the check is not run (see the module's
/// documentation for why that is the safe answer).
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("the fleet's database cannot be reached: {0}")]
    Database(#[from] sqlx::Error),
    #[error(
        "this instance's lease may have run out: its last heartbeat succeeded {age_s}s ago, expected less than its lease of {lease_s}s"
    )]
    Stale { age_s: u64, lease_s: u64 },
    #[error("this instance has not joined the fleet yet: no heartbeat has succeeded")]
    NotJoined,
    #[error("this instance has left the fleet (it is shutting down)")]
    Left,
}

/// This instance's last view of the fleet.
#[derive(Default)]
struct View {
    /// Every peer as of the last successful heartbeat.
    peers: Vec<PeerRow>,
    /// When the last heartbeat (and peer list) succeeded, on the monotonic clock.
    fresh_at: Option<Instant>,
    /// The last database error, until a heartbeat succeeds again.
    error: Option<String>,
    left: bool,
    /// This process's incarnation (`fleet_instances.started_at`, set by the joining
    /// heartbeat): it names this process's slot claims.
    incarnation: Option<i64>,
}

/// This instance's handle on the fleet.
pub struct Fleet {
    pool: PgPool,
    settings: FleetSettings,
    metrics: Metrics,
    view: Mutex<View>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("instance", &self.settings.instance)
            .field("mode", &self.settings.mode)
            .finish_non_exhaustive()
    }
}

impl Fleet {
    /// Joins the fleet: the first heartbeat (which sets `started_at`) and the peer list. The
    /// tables must exist (`migrations/postgres/0005_fleet.sql`).
    pub async fn join(
        pool: PgPool,
        settings: FleetSettings,
        metrics: Metrics,
        targets: &[String],
    ) -> Result<Fleet, FleetError> {
        metrics.fleet_started();
        let fleet = Fleet {
            pool,
            settings,
            metrics,
            view: Mutex::new(View::default()),
        };
        fleet.beat_inner(targets, true).await?;
        Ok(fleet)
    }

    pub fn instance(&self) -> &str {
        &self.settings.instance
    }

    /// This instance's vantage point ("" in shard mode unless configured).
    pub fn vantage(&self) -> &str {
        &self.settings.vantage
    }

    pub fn mode(&self) -> FleetMode {
        self.settings.mode
    }

    pub fn lease(&self) -> Duration {
        self.settings.lease
    }

    /// The vantage point slot claims are keyed by: '' in shard mode (one check per slot in the
    /// whole fleet), this instance's in replicate mode (one per slot and vantage point).
    fn claim_vantage(&self) -> &str {
        match self.settings.mode {
            FleetMode::Shard => "",
            FleetMode::Replicate => &self.settings.vantage,
        }
    }

    /// One heartbeat: writes this instance's, reads every peer's and sets the fleet gauges
    /// (`targets` are the configured targets, for `teewatch_fleet_targets_owned`).
    pub async fn beat(&self, targets: &[String]) -> Result<(), FleetError> {
        self.beat_inner(targets, false).await
    }

    async fn beat_inner(&self, targets: &[String], joining: bool) -> Result<(), FleetError> {
        if lock(&self.view).left {
            return Err(FleetError::Left);
        }
        let beat = db::Beat {
            name: &self.settings.instance,
            vantage: &self.settings.vantage,
            mode: self.settings.mode.as_str(),
            version: env!("CARGO_PKG_VERSION"),
            lease: self.settings.lease,
            joining,
        };
        let result = async {
            let started_at = db::heartbeat(&self.pool, &beat).await?;
            Ok::<_, sqlx::Error>((started_at, db::peers(&self.pool).await?))
        }
        .await;
        let peers = match result {
            Ok((started_at, peers)) => {
                if joining {
                    lock(&self.view).incarnation = Some(started_at);
                }
                peers
            }
            Err(e) => {
                lock(&self.view).error = Some(e.to_string());
                return Err(e.into());
            }
        };
        self.metrics.set_fleet_peers(&self.gauges(&peers, targets));
        let mut view = lock(&self.view);
        view.peers = peers;
        view.fresh_at = Some(Instant::now());
        view.error = None;
        Ok(())
    }

    /// The gauges of `peers`: each live shard peer's owned targets among `targets`.
    fn gauges(&self, peers: &[PeerRow], targets: &[String]) -> Vec<PeerGauge> {
        let live = shard_owners(peers);
        let mut owned = vec![0usize; live.len()];
        if self.settings.mode == FleetMode::Shard {
            for t in targets {
                if let Some(o) = rendezvous::owner(t, &live)
                    && let Some(i) = live.iter().position(|l| *l == o)
                    && let Some(n) = owned.get_mut(i)
                {
                    *n += 1;
                }
            }
        }
        peers
            .iter()
            .map(|p| PeerGauge {
                peer: p.name.clone(),
                vantage: p.vantage.clone(),
                up: p.live(),
                heartbeat_age_seconds: p.heartbeat_age().as_secs_f64(),
                targets_owned: live
                    .iter()
                    .position(|l| *l == p.name)
                    .and_then(|i| owned.get(i).copied())
                    .filter(|_| self.settings.mode == FleetMode::Shard),
            })
            .collect()
    }

    /// Whether this instance runs `target`'s check of the slot `slot_at` ([`slot_key`]): in
    /// shard mode when it owns the target among the live instances and its claim of the slot
    /// won; in replicate mode when its claim for its vantage point won. A lost claim is counted
    /// in `teewatch_fleet_slot_claims_lost_total`. An error means the check is not run.
    ///
    /// The claim won is returned: the check's record carries it, and the store writes the check
    /// only while the claim is still this instance's (a peer takes over the claims of an
    /// instance whose lease ran out before it stored them, `db::claim`).
    pub async fn may_run(
        &self,
        target: &str,
        slot_at: i64,
    ) -> Result<Option<SlotClaim>, FleetError> {
        let incarnation = {
            let view = lock(&self.view);
            if view.left {
                return Err(FleetError::Left);
            }
            let Some(fresh_at) = view.fresh_at else {
                return Err(FleetError::NotJoined);
            };
            let age = fresh_at.elapsed();
            if age >= self.settings.lease {
                return Err(FleetError::Stale {
                    age_s: age.as_secs(),
                    lease_s: self.settings.lease.as_secs(),
                });
            }
            if self.settings.mode == FleetMode::Shard {
                let live = shard_owners(&view.peers);
                if rendezvous::owner(target, &live) != Some(self.settings.instance.as_str()) {
                    return Ok(None);
                }
            }
            view.incarnation.ok_or(FleetError::NotJoined)?
        };
        let won = match db::claim(
            &self.pool,
            target,
            self.claim_vantage(),
            slot_at,
            &self.settings.instance,
            incarnation,
        )
        .await
        {
            Ok(won) => won,
            Err(e) => {
                lock(&self.view).error = Some(e.to_string());
                return Err(e.into());
            }
        };
        if !won {
            self.metrics.fleet_claim_lost();
            return Ok(None);
        }
        Ok(Some(SlotClaim {
            vantage: self.claim_vantage().to_string(),
            slot_at,
            incarnation,
        }))
    }

    /// This process's claim of `target`'s slot `slot_at` while it holds the claim and its check
    /// is not stored yet; `None` when it made no such claim or a peer took it over.
    pub async fn held_claim(
        &self,
        target: &str,
        slot_at: i64,
    ) -> Result<Option<SlotClaim>, FleetError> {
        let Some(incarnation) = lock(&self.view).incarnation else {
            return Err(FleetError::NotJoined);
        };
        let vantage = self.claim_vantage();
        let held = db::holds(
            &self.pool,
            target,
            vantage,
            slot_at,
            &self.settings.instance,
            incarnation,
        )
        .await?;
        Ok(held.then(|| SlotClaim {
            vantage: vantage.to_string(),
            slot_at,
            incarnation,
        }))
    }

    /// The owner of `target` among the live shard instances as this instance last saw them.
    pub fn owner_of(&self, target: &str) -> Option<String> {
        let view = lock(&self.view);
        rendezvous::owner(target, &shard_owners(&view.peers)).map(str::to_string)
    }

    /// Every peer as of the last successful heartbeat.
    pub fn peers(&self) -> Vec<PeerRow> {
        lock(&self.view).peers.clone()
    }

    /// Why this instance is not ready as a member of the fleet, if it is not (for `/readyz`).
    pub fn not_ready(&self) -> Option<String> {
        let view = lock(&self.view);
        if let Some(e) = &view.error {
            return Some(format!(
                "the fleet's database cannot be reached ({e}); no check runs until a heartbeat succeeds, and peers take this instance's targets over when its lease runs out"
            ));
        }
        let age = view.fresh_at.map(|at| at.elapsed())?;
        (age >= self.settings.lease).then(|| {
            format!(
                "the last fleet heartbeat succeeded {}s ago, longer than the lease of {}s; no check runs until one succeeds",
                age.as_secs(),
                self.settings.lease.as_secs()
            )
        })
    }

    /// Leaves the fleet (a clean shutdown): no check runs from now on, and the lease ends now so
    /// peers take the targets over at their next heartbeat instead of after the lease.
    pub async fn leave(&self) -> Result<(), FleetError> {
        lock(&self.view).left = true;
        db::leave(&self.pool, &self.settings.instance).await?;
        Ok(())
    }

    /// Deletes claims and silent peers older than [`PRUNE_AFTER`].
    pub async fn prune(&self) -> Result<(u64, u64), FleetError> {
        Ok(db::prune(&self.pool).await?)
    }
}

/// The names of the live shard-mode peers (replicate instances own nothing).
fn shard_owners(peers: &[PeerRow]) -> Vec<&str> {
    peers
        .iter()
        .filter(|p| p.live() && p.mode == FleetMode::Shard.as_str())
        .map(|p| p.name.as_str())
        .collect()
}

/// The fleet-wide key of the slot a check scheduled at `scheduled_at` belongs to, in ns since
/// the epoch. Instances plan interval targets on grids anchored at their own start, so their
/// slots of one target differ; the key is the start of the epoch-aligned window of one interval
/// that holds the slot, the same on every instance, so at most one check per target and
/// interval is claimed whichever instance plans it. Cron slots are the same instant on every
/// instance (the occurrence plus a phase from the target's name), truncated to the second.
pub fn slot_key(schedule: &Schedule, scheduled_at: DateTime<Utc>) -> i64 {
    let at = scheduled_at
        .timestamp_nanos_opt()
        .unwrap_or(scheduled_at.timestamp().saturating_mul(1_000_000_000));
    let window = match schedule {
        Schedule::Interval(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX).max(1),
        Schedule::Cron(_) => 1_000_000_000,
    };
    at.div_euclid(window).saturating_mul(window)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .unwrap_or_else(|e| panic!("{e}"))
            .with_timezone(&Utc)
    }

    #[test]
    fn slots_of_one_interval_window_share_a_key_whatever_the_grid() {
        let minute = Schedule::Interval(Duration::from_secs(60));
        let a = slot_key(&minute, at("2026-12-07T12:00:07.250Z"));
        let b = slot_key(&minute, at("2026-12-07T12:00:31Z"));
        let next = slot_key(&minute, at("2026-12-07T12:01:07.250Z"));
        assert_eq!(a, b);
        assert_eq!(next - a, 60_000_000_000);
        assert_eq!(a, at("2026-12-07T12:00:00Z").timestamp() * 1_000_000_000);
        let cron = Schedule::Cron("*/5 * * * *".into());
        assert_eq!(
            slot_key(&cron, at("2026-12-07T12:05:12.9Z")),
            at("2026-12-07T12:05:12Z").timestamp() * 1_000_000_000
        );
    }

    fn row(name: &str, mode: &str, heartbeat_at: i64, db_now: i64) -> PeerRow {
        PeerRow {
            name: name.into(),
            vantage: String::new(),
            mode: mode.into(),
            version: "0".into(),
            started_at: 0,
            heartbeat_at,
            lease_ns: 10,
            db_now,
        }
    }

    #[test]
    fn liveness_is_heartbeat_plus_lease_after_the_database_now() {
        assert!(row("a", "shard", 100, 109).live());
        assert!(!row("a", "shard", 100, 110).live());
        assert_eq!(row("a", "shard", 100, 90).heartbeat_age(), Duration::ZERO);
        let peers = [
            row("live", "shard", 100, 105),
            row("dead", "shard", 10, 105),
            row("replica", "replicate", 100, 105),
        ];
        assert_eq!(shard_owners(&peers), vec!["live"]);
    }
}
