//! The fleet's statements on the shared PostgreSQL database (`migrations/postgres/
//! 0005_fleet.sql`): heartbeats, the peer list, leaving, slot claims and pruning. Every time is
//! taken from the database's clock inside the statement, never from this process, so an
//! instance whose clock is wrong still keeps (and loses) its lease on time.

use std::time::Duration;

use sqlx::PgPool;

/// The database's now in ns since the epoch (the contract's expression, kept in one place).
const NOW_NS: &str = "(extract(epoch from clock_timestamp()) * 1e9)::bigint";

/// Claims and silent peers older than this are pruned.
pub const PRUNE_AFTER: Duration = Duration::from_secs(24 * 3600);

/// One row of `fleet_instances` with the database's now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRow {
    pub name: String,
    pub vantage: String,
    pub mode: String,
    pub version: String,
    pub started_at: i64,
    pub heartbeat_at: i64,
    pub lease_ns: i64,
    /// The database's clock when the row was read.
    pub db_now: i64,
}

impl PeerRow {
    /// Live while its heartbeat plus its lease is later than the database's now.
    pub fn live(&self) -> bool {
        self.heartbeat_at.saturating_add(self.lease_ns) > self.db_now
    }

    /// How old its heartbeat is, by the database's clock (0 for one from the future, which a
    /// clock stepped back on the server could make).
    pub fn heartbeat_age(&self) -> Duration {
        Duration::from_nanos(u64::try_from(self.db_now - self.heartbeat_at).unwrap_or(0))
    }
}

/// What an instance writes about itself with each heartbeat.
#[derive(Debug, Clone)]
pub struct Beat<'a> {
    pub name: &'a str,
    pub vantage: &'a str,
    pub mode: &'a str,
    pub version: &'a str,
    pub lease: Duration,
    /// The first beat of this process: `started_at` is set to now.
    pub joining: bool,
}

fn ns(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// Writes a heartbeat (creating the row on the first); returns `started_at`, this process's
/// incarnation: it names the claims this process makes, so a peer can tell a restarted
/// instance's old claims from its live ones.
pub async fn heartbeat(pool: &PgPool, beat: &Beat<'_>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(&format!(
        "INSERT INTO fleet_instances (name, vantage, mode, version, started_at, heartbeat_at, lease_ns)
         VALUES ($1, $2, $3, $4, {NOW_NS}, {NOW_NS}, $5)
         ON CONFLICT (name) DO UPDATE SET
             vantage = EXCLUDED.vantage,
             mode = EXCLUDED.mode,
             version = EXCLUDED.version,
             started_at = CASE WHEN $6 THEN EXCLUDED.started_at ELSE fleet_instances.started_at END,
             heartbeat_at = EXCLUDED.heartbeat_at,
             lease_ns = EXCLUDED.lease_ns
         RETURNING started_at"
    ))
    .bind(beat.name)
    .bind(beat.vantage)
    .bind(beat.mode)
    .bind(beat.version)
    .bind(ns(beat.lease))
    .bind(beat.joining)
    .fetch_one(pool)
    .await
}

/// Every instance that ever joined (and was not pruned), by name, with the database's now.
pub async fn peers(pool: &PgPool) -> Result<Vec<PeerRow>, sqlx::Error> {
    type Row = (String, String, String, String, i64, i64, i64, i64);
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "WITH now AS (SELECT {NOW_NS} AS ns)
         SELECT name, vantage, mode, version, started_at, heartbeat_at, lease_ns, now.ns
         FROM fleet_instances, now ORDER BY name"
    ))
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(name, vantage, mode, version, started_at, heartbeat_at, lease_ns, db_now)| PeerRow {
                name,
                vantage,
                mode,
                version,
                started_at,
                heartbeat_at,
                lease_ns,
                db_now,
            },
        )
        .collect())
}

/// Ends this instance's lease now (a clean shutdown): its row stays, so peers still show it as
/// down, but nobody waits for the lease to run out before taking its targets.
pub async fn leave(pool: &PgPool, name: &str) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "UPDATE fleet_instances SET heartbeat_at = {NOW_NS} - lease_ns WHERE name = $1"
    ))
    .bind(name)
    .execute(pool)
    .await?;
    Ok(())
}

/// Claims a slot for `instance` (in its incarnation `incarnation`): true when this statement
/// made the claim this instance's, false when another claim holds it. Of any number of
/// concurrent claims exactly one wins: the INSERT, or the take-over of the existing row, which
/// holds that row's lock.
///
/// An existing claim is taken over only when its check was not stored and the incarnation that
/// made it is no longer live (its instance died, froze past its lease, restarted or left): that
/// slot was lost with it and is run by the claimant instead. The holder's own write then finds
/// the claim gone and stores nothing (`write_pg.rs`), so the slot is still stored once.
pub async fn claim(
    pool: &PgPool,
    target: &str,
    vantage: &str,
    slot_at: i64,
    instance: &str,
    incarnation: i64,
) -> Result<bool, sqlx::Error> {
    let won: Option<String> = sqlx::query_scalar(&format!(
        "INSERT INTO slot_claims AS s (target, vantage, slot_at, instance, claimed_at, incarnation, stored)
         VALUES ($1, $2, $3, $4, {NOW_NS}, $5, false)
         ON CONFLICT (target, vantage, slot_at) DO UPDATE SET
             instance = EXCLUDED.instance,
             incarnation = EXCLUDED.incarnation,
             claimed_at = EXCLUDED.claimed_at
         WHERE NOT s.stored
           AND NOT EXISTS (
               SELECT 1 FROM fleet_instances f
               WHERE f.name = s.instance AND f.started_at = s.incarnation
                 AND f.heartbeat_at + f.lease_ns > {NOW_NS})
         RETURNING s.instance"
    ))
    .bind(target)
    .bind(vantage)
    .bind(slot_at)
    .bind(instance)
    .bind(incarnation)
    .fetch_optional(pool)
    .await?;
    Ok(won.is_some())
}

/// Whether `instance` in its incarnation `incarnation` holds the claim of the slot and has not
/// stored its check.
pub async fn holds(
    pool: &PgPool,
    target: &str,
    vantage: &str,
    slot_at: i64,
    instance: &str,
    incarnation: i64,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM slot_claims
             WHERE target = $1 AND vantage = $2 AND slot_at = $3
               AND instance = $4 AND incarnation = $5 AND NOT stored)",
    )
    .bind(target)
    .bind(vantage)
    .bind(slot_at)
    .bind(instance)
    .bind(incarnation)
    .fetch_one(pool)
    .await
}

/// Deletes claims older than [`PRUNE_AFTER`] and peers silent that long; returns how many
/// claims and peers went.
pub async fn prune(pool: &PgPool) -> Result<(u64, u64), sqlx::Error> {
    let cutoff = ns(PRUNE_AFTER);
    let claims = sqlx::query(&format!(
        "DELETE FROM slot_claims WHERE claimed_at < {NOW_NS} - $1"
    ))
    .bind(cutoff)
    .execute(pool)
    .await?
    .rows_affected();
    let peers = sqlx::query(&format!(
        "DELETE FROM fleet_instances WHERE heartbeat_at + lease_ns < {NOW_NS} - $1"
    ))
    .bind(cutoff)
    .execute(pool)
    .await?
    .rows_affected();
    Ok((claims, peers))
}
