//! Reading the store back: the drift history and latest check of every target (what the daemon
//! rebuilds at start), the check and drift listings of `teewatch history`, and the exact verdict
//! and bundle of one check.
//!
//! Reads that take several statements run in one read transaction, so they see one consistent
//! snapshot even while a check is being written or retention runs.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgConnection, SqliteConnection};

use super::codec::{self, from_ns, int, to_ns};
use super::{
    CheckRow, DriftRow, HistoryFilter, LatestCheck, Store, StoreError, on_pool, state_from_name,
};
use crate::drift::{DriftEvent, DriftReason, Measurement, TargetHistory};
use crate::verify::{Check, Verdict};

/// Why `export_bundle` finds no bundle for a check whose bundle retention dropped.
pub const REMOVED_BY_RETENTION: &str = "removed by retention";

/// The filter as bound parameters: target (or NULL), since (or NULL), limit (`i64::MAX` for
/// none: PostgreSQL refuses SQLite's -1, and both take the largest integer as no limit).
pub(super) fn filter_params(
    filter: &HistoryFilter,
) -> Result<(Option<&str>, Option<i64>, i64), StoreError> {
    let since = filter.since.map(to_ns).transpose()?;
    let limit = filter.limit.map(int).unwrap_or(i64::MAX);
    Ok((filter.target.as_deref(), since, limit))
}

/// A connection of either backend inside a read or write transaction, for what several
/// statements of the store share.
pub(crate) trait BlobConn: Send {
    /// The content of a reference blob, checked against its length and hash.
    fn load_blob(
        &mut self,
        id: i64,
    ) -> impl std::future::Future<Output = Result<Vec<u8>, StoreError>> + Send;
}

macro_rules! blob_conn {
    ($conn:ty) => {
        impl BlobConn for $conn {
            async fn load_blob(&mut self, id: i64) -> Result<Vec<u8>, StoreError> {
                let row: Option<(i64, Vec<u8>, Vec<u8>)> =
                    sqlx::query_as("SELECT raw_len, sha256, data FROM blobs WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&mut *self)
                        .await?;
                let (raw_len, digest, data) =
                    row.ok_or_else(|| StoreError::Corrupt(format!("blob {id} is missing")))?;
                blob_content(id, raw_len, &digest, &data)
            }
        }
    };
}
blob_conn!(SqliteConnection);
blob_conn!(PgConnection);

/// The content of blob `id` from its stored columns, checked against its length and hash.
pub(crate) fn blob_content(
    id: i64,
    raw_len: i64,
    digest: &[u8],
    data: &[u8],
) -> Result<Vec<u8>, StoreError> {
    let content = codec::decompress(&[], data, raw_len, &format!("blob {id}"))?;
    if codec::sha256(&content) != digest {
        return Err(StoreError::Corrupt(format!(
            "blob {id} does not match its hash"
        )));
    }
    Ok(content)
}

/// A stored verdict: decompressed against its reference and parsed.
async fn decode_verdict<C: BlobConn>(
    conn: &mut C,
    check_id: i64,
    dict: i64,
    raw_len: i64,
    data: &[u8],
) -> Result<Verdict, StoreError> {
    let reference = conn.load_blob(dict).await?;
    let what = format!("verdict of check {check_id}");
    let json = codec::decompress(&reference, data, raw_len, &what)?;
    serde_json::from_slice(&json).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// Each target's latest check (the latest by start, then id), when its id is above `$1`.
const LATEST_PER_TARGET: &str =
    "SELECT t.name, c.id, c.scheduled_at, c.started_at, c.finished_at, c.state,
        c.verdict_dict, c.verdict_len, c.verdict,
        (SELECT p.finished_at FROM checks p
         WHERE p.target_id = t.id AND p.state = 'pass'
         ORDER BY p.started_at DESC, p.id DESC LIMIT 1),
        c.instance, c.vantage
 FROM targets t
 JOIN checks c ON c.id = (SELECT c2.id FROM checks c2 WHERE c2.target_id = t.id
                          ORDER BY c2.started_at DESC, c2.id DESC LIMIT 1)
 WHERE c.id > $1
 ORDER BY t.name";

/// Each target's latest check from each vantage point, when its id is above `$1` (the index
/// `(target_id, vantage, id)` of migration 0004 serves the inner look-up).
const LATEST_PER_VANTAGE: &str =
    "SELECT t.name, c.id, c.scheduled_at, c.started_at, c.finished_at, c.state,
        c.verdict_dict, c.verdict_len, c.verdict,
        (SELECT p.finished_at FROM checks p
         WHERE p.target_id = t.id AND p.vantage = c.vantage AND p.state = 'pass'
         ORDER BY p.started_at DESC, p.id DESC LIMIT 1),
        c.instance, c.vantage
 FROM targets t
 JOIN (SELECT target_id, vantage, MAX(id) AS id FROM checks GROUP BY target_id, vantage) v
   ON v.target_id = t.id
 JOIN checks c ON c.id = v.id
 WHERE c.id > $1
 ORDER BY t.name, c.vantage";

impl Store {
    /// The drift history of every recorded target: each value every tracked field has shown
    /// with when it was first seen (on any node), each drifted value with when its first
    /// retained drift event was raised, and when each accepted value was last accepted.
    pub async fn histories(&self) -> Result<BTreeMap<String, TargetHistory>, StoreError> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let mut out: BTreeMap<String, TargetHistory> = BTreeMap::new();
            let targets: Vec<String> = sqlx::query_scalar("SELECT name FROM targets")
                .fetch_all(&mut *tx)
                .await?;
            for name in targets {
                out.insert(name, TargetHistory::default());
            }
            let values: Vec<(String, String, String, i64)> = sqlx::query_as(
                "SELECT t.name, v.field, v.value, MIN(v.first_seen)
                 FROM measurement_values v JOIN targets t ON t.id = v.target_id
                 GROUP BY t.name, v.field, v.value",
            )
            .fetch_all(&mut *tx)
            .await?;
            for (target, field, value, first_seen) in values {
                out.entry(target)
                    .or_default()
                    .values
                    .entry(field)
                    .or_default()
                    .insert(value, from_ns(first_seen));
            }
            let drifted: Vec<(String, String, String, i64)> = sqlx::query_as(
                "SELECT t.name, d.field, d.new_value, MIN(d.at)
                 FROM drift_events d JOIN targets t ON t.id = d.target_id
                 GROUP BY t.name, d.field, d.new_value",
            )
            .fetch_all(&mut *tx)
            .await?;
            for (target, field, value, at) in drifted {
                out.entry(target)
                    .or_default()
                    .drifted
                    .insert((field, value), from_ns(at));
            }
            let accepted: Vec<(String, String, String, i64)> = sqlx::query_as(
                "SELECT t.name, a.field, a.value, MAX(a.at)
                 FROM drift_acceptances a JOIN targets t ON t.id = a.target_id
                 GROUP BY t.name, a.field, a.value",
            )
            .fetch_all(&mut *tx)
            .await?;
            for (target, field, value, at) in accepted {
                out.entry(target)
                    .or_default()
                    .accepted
                    .insert((field, value), from_ns(at));
            }
            Ok(out)
        })
    }

    /// The newest check of every target that has one, by target name.
    pub async fn latest_checks(&self) -> Result<Vec<LatestCheck>, StoreError> {
        self.latest_checks_after(i64::MIN).await
    }

    /// [`Store::latest_checks`] of the targets whose latest check has an id above `after` (the
    /// fleet view's poll: only what changed since it last looked).
    pub async fn latest_checks_after(&self, after: i64) -> Result<Vec<LatestCheck>, StoreError> {
        self.latest_of(after, LATEST_PER_TARGET).await
    }

    /// The latest check of each target from each vantage point (`checks.vantage`), of those
    /// with an id above `after`: what a replicate fleet compares (`crate::vantage`).
    pub async fn latest_checks_per_vantage_after(
        &self,
        after: i64,
    ) -> Result<Vec<LatestCheck>, StoreError> {
        self.latest_of(after, LATEST_PER_VANTAGE).await
    }

    /// The checks `sql` selects (one of the two `LATEST_*` statements) with an id above `after`.
    async fn latest_of(
        &self,
        after: i64,
        sql: &'static str,
    ) -> Result<Vec<LatestCheck>, StoreError> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            type Row = (
                String,
                i64,
                i64,
                i64,
                i64,
                String,
                i64,
                i64,
                Vec<u8>,
                Option<i64>,
                String,
                String,
            );
            let rows: Vec<Row> = sqlx::query_as(sql)
                .bind(after)
                .fetch_all(&mut *tx)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for (
                target,
                check_id,
                scheduled,
                started,
                finished,
                state,
                dict,
                len,
                data,
                last_success,
                instance,
                vantage,
            ) in rows
            {
                let verdict = decode_verdict(&mut *tx, check_id, dict, len, &data).await?;
                let measurements: Vec<(String, String, String, String)> = sqlx::query_as(
                    "SELECT v.field, v.node, v.value, v.source
                     FROM check_measurements m JOIN measurement_values v ON v.id = m.value_id
                     WHERE m.check_id = $1 ORDER BY m.ordinal",
                )
                .bind(check_id)
                .fetch_all(&mut *tx)
                .await?;
                let started_at = from_ns(started);
                let finished_at = from_ns(finished);
                out.push(LatestCheck {
                    target,
                    check_id,
                    scheduled_at: from_ns(scheduled),
                    started_at,
                    finished_at,
                    state: state_from_name(&state)?,
                    tcb_status: verdict.tcb_status().map(str::to_string),
                    attestation_format: verdict.response_format(),
                    trust: verdict.trust,
                    checks: verdict.checks,
                    measurements: measurements
                        .into_iter()
                        .map(|(field, node, value, source)| Measurement {
                            field,
                            node,
                            value,
                            source,
                        })
                        .collect(),
                    last_success_at: last_success.map(from_ns),
                    instance,
                    vantage,
                    duration: finished_at
                        .signed_duration_since(started_at)
                        .to_std()
                        .unwrap_or(Duration::ZERO),
                });
            }
            Ok(out)
        })
    }

    /// Since when each recorded target has been in the state of its newest check, by target
    /// name: the finish time of the first check after the newest check in another state, or of
    /// the oldest retained check when none differs (retention may have deleted the change). For
    /// `teewatch_target_state_since_timestamp_seconds` and the status page after a restart.
    ///
    /// The newest check in another state is found by walking the target's checks backwards on
    /// `checks_target_started`, so it reads the checks of the current run only.
    pub async fn state_since(&self) -> Result<BTreeMap<String, DateTime<Utc>>, StoreError> {
        on_pool!(self, pool => {
            let rows: Vec<(String, Option<i64>)> = sqlx::query_as(
                "WITH latest AS (
                     SELECT t.id AS target_id, t.name AS name,
                            (SELECT c.state FROM checks c WHERE c.target_id = t.id
                             ORDER BY c.started_at DESC, c.id DESC LIMIT 1) AS state
                     FROM targets t),
                 changed AS (
                     SELECT l.target_id, l.name,
                            (SELECT o.started_at FROM checks o
                             WHERE o.target_id = l.target_id AND o.state <> l.state
                             ORDER BY o.started_at DESC LIMIT 1) AS changed_at
                     FROM latest l WHERE l.state IS NOT NULL)
                 SELECT name,
                        (SELECT c.finished_at FROM checks c
                         WHERE c.target_id = changed.target_id
                           AND (changed.changed_at IS NULL OR c.started_at > changed.changed_at)
                         ORDER BY c.started_at, c.id LIMIT 1)
                 FROM changed ORDER BY name",
            )
            .fetch_all(pool)
            .await?;
            Ok(rows
                .into_iter()
                .filter_map(|(name, since)| Some((name, from_ns(since?))))
                .collect())
        })
    }

    /// Checks matching the filter, newest first (by `started_at`).
    pub async fn history(&self, filter: &HistoryFilter) -> Result<Vec<CheckRow>, StoreError> {
        on_pool!(self, pool => {
            let (target, since, limit) = filter_params(filter)?;
            let mut tx = pool.begin().await?;
            // The checks the filter selects, shared by both statements.
            const SELECTED: &str = "SELECT c.id FROM checks c JOIN targets t ON t.id = c.target_id
                 WHERE ($1 IS NULL OR t.name = $1) AND ($2 IS NULL OR c.started_at >= $2)
                 ORDER BY c.started_at DESC, c.id DESC LIMIT $3";
            let results: Vec<(i64, String, String, String, String)> = sqlx::query_as(&format!(
                "SELECT check_id, name, scope, state, reason FROM check_results
                 WHERE check_id IN ({SELECTED}) ORDER BY check_id, ordinal"
            ))
            .bind(target)
            .bind(since)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
            let mut failing: HashMap<i64, Vec<Check>> = HashMap::new();
            for (check_id, name, scope, state, reason) in results {
                failing.entry(check_id).or_default().push(Check {
                    name,
                    scope,
                    state: state_from_name(&state)?,
                    reason,
                });
            }
            type Row = (
                i64,
                String,
                i64,
                i64,
                i64,
                String,
                String,
                bool,
                i64,
                String,
                String,
            );
            let rows: Vec<Row> = sqlx::query_as(
                "SELECT c.id, t.name, c.scheduled_at, c.started_at, c.finished_at, c.state,
                        c.attestation_format,
                        EXISTS (SELECT 1 FROM bundles b WHERE b.check_id = c.id),
                        (SELECT COUNT(*) FROM drift_events d WHERE d.check_id = c.id),
                        c.instance, c.vantage
                 FROM checks c JOIN targets t ON t.id = c.target_id
                 WHERE ($1 IS NULL OR t.name = $1) AND ($2 IS NULL OR c.started_at >= $2)
                 ORDER BY c.started_at DESC, c.id DESC LIMIT $3",
            )
            .bind(target)
            .bind(since)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
            rows.into_iter()
                .map(
                    |(
                    id,
                    target,
                    scheduled,
                    started,
                    finished,
                    state,
                    format,
                    bundle,
                    drift,
                    instance,
                    vantage,
                )| {
                        Ok(CheckRow {
                            id,
                            target,
                            scheduled_at: from_ns(scheduled),
                            started_at: from_ns(started),
                            finished_at: from_ns(finished),
                            state: state_from_name(&state)?,
                            attestation_format: format,
                            failing: failing.remove(&id).unwrap_or_default(),
                            has_bundle: bundle,
                            drift_events: usize::try_from(drift).unwrap_or(0),
                        instance,
                        vantage,
                        })
                    },
                )
                .collect()
        })
    }

    /// Drift events matching the filter, newest first (by the event's `at`).
    pub async fn drift_events(&self, filter: &HistoryFilter) -> Result<Vec<DriftRow>, StoreError> {
        on_pool!(self, pool => {
            let (target, since, limit) = filter_params(filter)?;
            type Row = (
                i64,
                i64,
                String,
                String,
                String,
                String,
                String,
                String,
                i64,
            );
            let rows: Vec<Row> = sqlx::query_as(
                "SELECT d.id, d.check_id, t.name, d.field, d.node, d.old_values, d.new_value,
                        d.reasons, d.at
                 FROM drift_events d JOIN targets t ON t.id = d.target_id
                 WHERE ($1 IS NULL OR t.name = $1) AND ($2 IS NULL OR d.at >= $2)
                 ORDER BY d.at DESC, d.id DESC LIMIT $3",
            )
            .bind(target)
            .bind(since)
            .bind(limit)
            .fetch_all(pool)
            .await?;
            rows.into_iter()
                .map(
                    |(id, check_id, target, field, node, old, new_value, reasons, at)| {
                        let old_values: Vec<String> = serde_json::from_str(&old).map_err(|e| {
                            StoreError::Corrupt(format!("drift event {id}: old values: {e}"))
                        })?;
                        let reasons = reasons
                            .split(',')
                            .map(|r| {
                                DriftReason::from_name(r).ok_or_else(|| {
                                    StoreError::Corrupt(format!("drift event {id}: reason {r:?}"))
                                })
                            })
                            .collect::<Result<Vec<_>, _>>()?;
                        Ok(DriftRow {
                            id,
                            check_id,
                            target,
                            event: DriftEvent {
                                field,
                                node,
                                old_values,
                                new_value,
                                reasons,
                                at: from_ns(at),
                            },
                        })
                    },
                )
                .collect()
        })
    }

    /// The verdict recorded with a check, exactly as it was recorded.
    pub async fn verdict(&self, check_id: i64) -> Result<Verdict, StoreError> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let row: Option<(i64, i64, Vec<u8>)> =
                sqlx::query_as("SELECT verdict_dict, verdict_len, verdict FROM checks WHERE id = $1")
                    .bind(check_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            let (dict, len, data) = row.ok_or(StoreError::NoSuchCheck(check_id))?;
            decode_verdict(&mut *tx, check_id, dict, len, &data).await
        })
    }

    /// The bundle recorded with a check, equal to the recorded JSON value (object key order
    /// included). `BundleMissing` says why when retention removed it.
    pub async fn export_bundle(&self, check_id: i64) -> Result<Value, StoreError> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            type Row = (
                Option<i64>,
                Option<i64>,
                Option<i64>,
                Option<Vec<u8>>,
                Option<Vec<u8>>,
            );
            let row: Option<Row> = sqlx::query_as(
                "SELECT c.bundle_removed_at, b.dict, b.raw_len, b.sha256, b.data
                 FROM checks c LEFT JOIN bundles b ON b.check_id = c.id WHERE c.id = $1",
            )
            .bind(check_id)
            .fetch_optional(&mut *tx)
            .await?;
            let (removed, dict, raw_len, digest, data) =
                row.ok_or(StoreError::NoSuchCheck(check_id))?;
            let (Some(dict), Some(raw_len), Some(digest), Some(data)) = (dict, raw_len, digest, data)
            else {
                let reason = if removed.is_some() {
                    REMOVED_BY_RETENTION
                } else {
                    "no bundle was stored with this check"
                };
                return Err(StoreError::BundleMissing {
                    check: check_id,
                    reason: reason.to_string(),
                });
            };
            let reference = tx.load_blob(dict).await?;
            let what = format!("bundle of check {check_id}");
            let json = codec::decompress(&reference, &data, raw_len, &what)?;
            if codec::sha256(&json) != digest {
                return Err(StoreError::Corrupt(format!(
                    "{what} does not match its hash"
                )));
            }
            serde_json::from_slice(&json).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
        })
    }
}
