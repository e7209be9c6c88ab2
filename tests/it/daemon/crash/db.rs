//! What the crash test reads from the database the killed daemons left: SQLite's own integrity
//! and foreign-key checks, every check row, and the rows that would show a check recorded twice.
//! Read through sqlx directly (not the store's API) so that what is asserted is what is on disk.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};

/// One stored check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub id: i64,
    pub target: String,
    pub scheduled_at: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub state: String,
}

/// Nanoseconds since the epoch, as the store writes times.
pub fn ns(at: DateTime<Utc>) -> i64 {
    at.timestamp_nanos_opt().unwrap()
}

/// One connection to an existing database (recovering its write-ahead log, as any opener does).
pub async fn open(path: &Path) -> SqlitePool {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(false);
    SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()))
}

/// `PRAGMA integrity_check`'s answer, one string per line (`["ok"]` for a sound file).
pub async fn integrity(pool: &SqlitePool) -> Vec<String> {
    sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_all(pool)
        .await
        .unwrap()
}

/// `PRAGMA foreign_key_check`: every row whose reference names nothing, as `table rowid parent`.
pub async fn dangling_references(pool: &SqlitePool) -> Vec<String> {
    let rows: Vec<(String, Option<i64>, String, i64)> = sqlx::query_as("PRAGMA foreign_key_check")
        .fetch_all(pool)
        .await
        .unwrap();
    rows.into_iter()
        .map(|(table, rowid, parent, _)| format!("{table} row {rowid:?} -> {parent}"))
        .collect()
}

/// Every stored check, by id.
pub async fn checks(pool: &SqlitePool) -> Vec<Row> {
    let rows: Vec<(i64, String, i64, i64, i64, String)> = sqlx::query_as(
        "SELECT c.id, t.name, c.scheduled_at, c.started_at, c.finished_at, c.state
         FROM checks c JOIN targets t ON t.id = c.target_id ORDER BY c.id",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(
            |(id, target, scheduled_at, started_at, finished_at, state)| Row {
                id,
                target,
                scheduled_at,
                started_at,
                finished_at,
                state,
            },
        )
        .collect()
}

/// Checks recorded twice: two rows of one target for one schedule slot, or two stored bundles
/// with one digest (a bundle carries the check's fresh nonce, so two checks never share one).
pub async fn recorded_twice(pool: &SqlitePool) -> Vec<String> {
    let slots: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT t.name, c.scheduled_at, COUNT(*) FROM checks c JOIN targets t ON t.id = c.target_id
         GROUP BY c.target_id, c.scheduled_at HAVING COUNT(*) > 1",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let bundles: Vec<(Vec<u8>, i64)> =
        sqlx::query_as("SELECT sha256, COUNT(*) FROM bundles GROUP BY sha256 HAVING COUNT(*) > 1")
            .fetch_all(pool)
            .await
            .unwrap();
    slots
        .into_iter()
        .map(|(target, slot, n)| format!("{target}: {n} checks for the slot {slot}"))
        .chain(
            bundles
                .into_iter()
                .map(|(sha, n)| format!("{n} bundles with the digest {sha:02x?}")),
        )
        .collect()
}

/// Checks that lost their bundle without retention saying so, or say so and still have it.
pub async fn bundles_astray(pool: &SqlitePool) -> Vec<String> {
    let rows: Vec<(i64, Option<i64>, Option<i64>)> = sqlx::query_as(
        "SELECT c.id, c.bundle_removed_at, b.check_id FROM checks c
         LEFT JOIN bundles b ON b.check_id = c.id
         WHERE (c.bundle_removed_at IS NULL) = (b.check_id IS NULL)",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(id, removed, bundle)| {
            format!("check {id}: bundle_removed_at {removed:?}, bundle row {bundle:?}")
        })
        .collect()
}

/// The stored drift events, as (target, field, new value, how many times it was recorded).
pub async fn drift_events(pool: &SqlitePool) -> Vec<(String, String, String, i64)> {
    sqlx::query_as(
        "SELECT t.name, d.field, d.new_value, COUNT(*) FROM drift_events d
         JOIN targets t ON t.id = d.target_id
         GROUP BY t.name, d.field, d.node, d.new_value ORDER BY t.name, d.field",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

/// How many schema migrations sqlx records as applied (0 when none committed yet).
pub async fn migrations_applied(path: &Path) -> i64 {
    let pool = open(path).await;
    let applied = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    applied
}
