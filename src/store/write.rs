//! Writing one finished check: every row it produces in a single transaction, so that a crash or
//! an error midway leaves the store as if the check had never been recorded.
//!
//! The bundle and the verdict are compressed against the target's current reference documents
//! (`codec.rs`); when a document shows that its reference has gone stale, the reference is
//! renewed with it, inside the same transaction.

use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

use super::chain::{GENESIS, RecordFields};
use super::codec::{self, int, to_ns};
use super::{Store, StoreError, read};
use crate::record::CheckRecord;
use crate::verify::State;

/// The two kinds of documents that have per-target references.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bundle,
    Verdict,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Bundle => "bundle",
            Kind::Verdict => "verdict",
        }
    }
}

/// A document compressed against the reference blob `dict`.
struct Encoded {
    dict: i64,
    data: Vec<u8>,
}

/// A check as the store recorded it: its id and its record hash, the link the target's next
/// check names (`chain.rs`), which the daemon logs so that a copy outside the database can
/// later vouch for the history (`teewatch history verify --head`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub check_id: i64,
    pub record_hash: Vec<u8>,
}

impl Recorded {
    /// The record hash as lowercase hex.
    pub fn record_hash_hex(&self) -> String {
        hex::encode(&self.record_hash)
    }
}

impl Store {
    /// Records one finished check and returns its id (see [`Store::record_chained`]).
    pub async fn record(&self, rec: &CheckRecord) -> Result<i64, StoreError> {
        self.record_chained(rec).await.map(|r| r.check_id)
    }

    /// Records one finished check and returns its id and record hash.
    ///
    /// The target, the check with its verdict, the results that did not pass, the phase
    /// durations, the measurements (and the per-target history of their values), the drift
    /// events and the bundle are written in one transaction: either all of them are stored or
    /// none is. The measurements count as seen at `finished_at`, the instant the verdict was
    /// known; callers keeping a `TargetHistory` should absorb them at that same instant so that
    /// `histories()` rebuilds exactly what they hold.
    ///
    /// The check is linked into its target's hash chain in the same transaction: its record
    /// hash covers the previous check's record hash, which the target row keeps as its head.
    pub async fn record_chained(&self, rec: &CheckRecord) -> Result<Recorded, StoreError> {
        // Everything that needs no database is prepared before the transaction starts, so the
        // write lock is held only for the statements.
        let bundle = serde_json::to_vec(&rec.bundle).map_err(|source| StoreError::Encode {
            what: "the bundle",
            source,
        })?;
        let verdict = serde_json::to_vec(&rec.verdict).map_err(|source| StoreError::Encode {
            what: "the verdict",
            source,
        })?;
        let scheduled_at = to_ns(rec.scheduled_at)?;
        let started_at = to_ns(rec.started_at)?;
        let finished_at = to_ns(rec.finished_at)?;
        // A verdict states observed_at as RFC 3339; one that does not parse (or is out of
        // range) is stored as unknown rather than refusing the whole check.
        let observed_at = DateTime::parse_from_rfc3339(&rec.verdict.observed_at)
            .ok()
            .and_then(|t| t.with_timezone(&Utc).timestamp_nanos_opt());
        let verdict_sha256 = codec::sha256(&verdict);
        let bundle_sha256 = codec::sha256(&bundle);
        let mut drift_at = Vec::with_capacity(rec.drift.len());
        for event in &rec.drift {
            drift_at.push(to_ns(event.at)?);
        }

        let mut tx = self.pool.begin().await?;
        // The first statement writes, so the transaction takes the write lock at once and never
        // has to upgrade a read snapshot (which fails instead of waiting when another
        // connection wrote in between).
        // It also reads the target's chain head, and whether the check it names is still
        // stored: when retention deleted it, this check records the gap it links across.
        let (target_id, head, head_check, head_stored): (i64, Option<Vec<u8>>, Option<i64>, bool) =
            sqlx::query_as(
                "INSERT INTO targets (name) VALUES (?1)
                 ON CONFLICT (name) DO UPDATE SET name = excluded.name
                 RETURNING id, chain_head, chain_head_check,
                           EXISTS (SELECT 1 FROM checks c WHERE c.id = chain_head_check)",
            )
            .bind(&rec.target)
            .fetch_one(&mut *tx)
            .await?;
        let prev_hash = head.clone().unwrap_or_else(|| GENESIS.to_vec());

        let verdict_doc = encode(&mut tx, target_id, Kind::Verdict, &verdict).await?;
        let check_id: i64 = sqlx::query_scalar(
            "INSERT INTO checks (target_id, scheduled_at, started_at, finished_at, observed_at,
                                 state, attestation_format, verdict_dict, verdict_len, verdict,
                                 verdict_sha256, bundle_sha256, prev_hash)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
             RETURNING id",
        )
        .bind(target_id)
        .bind(scheduled_at)
        .bind(started_at)
        .bind(finished_at)
        .bind(observed_at)
        .bind(rec.verdict.state.as_str())
        .bind(rec.verdict.attestation_format.as_str())
        .bind(verdict_doc.dict)
        .bind(int(verdict.len()))
        .bind(verdict_doc.data)
        .bind(&verdict_sha256)
        .bind(&bundle_sha256)
        .bind(&prev_hash)
        .fetch_one(&mut *tx)
        .await?;

        // Rows go in one multi-row statement per table: sqlx runs SQLite on a worker thread,
        // so every statement is a round trip between threads, and per-row statements made that
        // hand-off the daemon's largest CPU cost at 2,000 targets.
        let failing: Vec<(usize, &crate::verify::Check)> = rec
            .verdict
            .checks
            .iter()
            .enumerate()
            .filter(|(_, c)| c.state != State::Pass)
            .collect();
        if !failing.is_empty() {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO check_results (check_id, ordinal, name, scope, state, reason) ",
            );
            insert.push_values(failing, |mut row, (ordinal, check)| {
                row.push_bind(check_id)
                    .push_bind(int(ordinal))
                    .push_bind(&check.name)
                    .push_bind(&check.scope)
                    .push_bind(check.state.as_str())
                    .push_bind(&check.reason);
            });
            insert.build().execute(&mut *tx).await?;
        }

        if !rec.phases.is_empty() {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO check_phases (check_id, ordinal, phase, duration_ns) ",
            );
            insert.push_values(
                rec.phases.iter().enumerate(),
                |mut row, (ordinal, phase)| {
                    row.push_bind(check_id)
                        .push_bind(int(ordinal))
                        .push_bind(phase.phase.as_str())
                        .push_bind(codec::duration_ns(phase.duration));
                },
            );
            insert.build().execute(&mut *tx).await?;
        }

        if !rec.measurements.is_empty() {
            // The history keeps the earliest first sighting and the latest last one, so checks
            // recorded out of order still leave the right bounds.
            let mut upsert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO measurement_values
                     (target_id, field, node, value, source,
                      first_seen, last_seen, first_check, last_check) ",
            );
            upsert.push_values(&rec.measurements, |mut row, m| {
                row.push_bind(target_id)
                    .push_bind(&m.field)
                    .push_bind(&m.node)
                    .push_bind(&m.value)
                    .push_bind(&m.source)
                    .push_bind(finished_at)
                    .push_bind(finished_at)
                    .push_bind(check_id)
                    .push_bind(check_id);
            });
            upsert.push(
                " ON CONFLICT (target_id, field, node, value, source) DO UPDATE SET
                     first_check = CASE WHEN excluded.first_seen < first_seen
                                        THEN excluded.first_check ELSE first_check END,
                     first_seen = MIN(first_seen, excluded.first_seen),
                     last_check = CASE WHEN excluded.last_seen >= last_seen
                                       THEN excluded.last_check ELSE last_check END,
                     last_seen = MAX(last_seen, excluded.last_seen)",
            );
            upsert.build().execute(&mut *tx).await?;
            // Then the check's links to those values, in measurement order, found by the
            // history table's unique key.
            let mut link = QueryBuilder::<Sqlite>::new(
                "INSERT INTO check_measurements (check_id, ordinal, value_id)
                 SELECT ",
            );
            link.push_bind(check_id);
            link.push(", m.column1, v.id FROM (");
            link.push_values(
                rec.measurements.iter().enumerate(),
                |mut row, (ordinal, m)| {
                    row.push_bind(int(ordinal))
                        .push_bind(&m.field)
                        .push_bind(&m.node)
                        .push_bind(&m.value)
                        .push_bind(&m.source);
                },
            );
            link.push(") AS m JOIN measurement_values AS v ON v.target_id = ");
            link.push_bind(target_id);
            link.push(
                " AND v.field = m.column2 AND v.node = m.column3 AND v.value = m.column4
                  AND v.source = m.column5",
            );
            let linked = link.build().execute(&mut *tx).await?.rows_affected();
            if usize::try_from(linked).ok() != Some(rec.measurements.len()) {
                return Err(StoreError::Corrupt(format!(
                    "expected {} measurement links, wrote {linked}",
                    rec.measurements.len()
                )));
            }
        }

        for (event, at) in rec.drift.iter().zip(drift_at) {
            let old_values =
                serde_json::to_string(&event.old_values).map_err(|source| StoreError::Encode {
                    what: "drift old values",
                    source,
                })?;
            let reasons: Vec<&str> = event.reasons.iter().map(|r| r.as_str()).collect();
            sqlx::query(
                "INSERT INTO drift_events
                     (check_id, target_id, field, node, old_values, new_value, reasons, at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .bind(check_id)
            .bind(target_id)
            .bind(&event.field)
            .bind(&event.node)
            .bind(old_values)
            .bind(&event.new_value)
            .bind(reasons.join(","))
            .bind(at)
            .execute(&mut *tx)
            .await?;
        }

        let bundle_doc = encode(&mut tx, target_id, Kind::Bundle, &bundle).await?;
        sqlx::query(
            "INSERT INTO bundles (check_id, dict, raw_len, sha256, data)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .bind(check_id)
        .bind(bundle_doc.dict)
        .bind(int(bundle.len()))
        .bind(&bundle_sha256)
        .bind(bundle_doc.data)
        .execute(&mut *tx)
        .await?;

        let record_hash = RecordFields {
            target: &rec.target,
            check_id,
            scheduled_at,
            started_at,
            finished_at,
            state: rec.verdict.state.as_str(),
            attestation_format: rec.verdict.attestation_format.as_str(),
            verdict_sha256: &verdict_sha256,
            bundle_sha256: &bundle_sha256,
            prev_hash: &prev_hash,
        }
        .hash();
        sqlx::query("UPDATE checks SET record_hash = ?2 WHERE id = ?1")
            .bind(check_id)
            .bind(&record_hash)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE targets SET chain_head = ?2, chain_head_check = ?3 WHERE id = ?1")
            .bind(target_id)
            .bind(&record_hash)
            .bind(check_id)
            .execute(&mut *tx)
            .await?;
        if let (Some(head), Some(head_check), false) = (head, head_check, head_stored) {
            sqlx::query(
                "INSERT OR REPLACE INTO chain_gaps (check_id, prev_check, prev_hash, noted_at)
                 VALUES (?1, ?2, ?3, ?4)",
            )
            .bind(check_id)
            .bind(head_check)
            .bind(head)
            .bind(finished_at)
            .execute(&mut *tx)
            .await?;
        }

        tx.commit().await?;
        Ok(Recorded {
            check_id,
            record_hash,
        })
    }
}

/// Compresses a document against the target's reference of its kind, renewing the reference
/// first when there is none yet or the document shows it has gone stale.
async fn encode(
    conn: &mut SqliteConnection,
    target_id: i64,
    kind: Kind,
    doc: &[u8],
) -> Result<Encoded, StoreError> {
    let current: Option<(i64, Option<f64>)> = sqlx::query_as(
        "SELECT blob_id, last_ratio FROM target_dicts WHERE target_id = ?1 AND kind = ?2",
    )
    .bind(target_id)
    .bind(kind.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    let old_reference = match current {
        None => None,
        Some((blob, last_ratio)) => {
            let reference = read::load_blob(conn, blob).await?;
            let data = codec::compress_with(&reference, doc)?;
            if !codec::should_renew(data.len(), doc.len(), last_ratio) {
                sqlx::query(
                    "UPDATE target_dicts SET last_ratio = ?3 WHERE target_id = ?1 AND kind = ?2",
                )
                .bind(target_id)
                .bind(kind.as_str())
                .bind(codec::ratio(data.len(), doc.len()))
                .execute(&mut *conn)
                .await?;
                return Ok(Encoded { dict: blob, data });
            }
            Some(reference)
        }
    };
    let reference = codec::extend_reference(old_reference.as_deref(), doc);
    let blob = put_blob(conn, &reference).await?;
    // The document is the end of its new reference, so it compresses to a few bytes.
    let data = codec::compress_with(&reference, doc)?;
    // The ratio against a reference that contains the document says nothing about the next
    // one, hence NULL until a document is compressed against it for real.
    sqlx::query(
        "INSERT INTO target_dicts (target_id, kind, blob_id, last_ratio) VALUES (?1, ?2, ?3, NULL)
         ON CONFLICT (target_id, kind) DO UPDATE SET blob_id = excluded.blob_id, last_ratio = NULL",
    )
    .bind(target_id)
    .bind(kind.as_str())
    .bind(blob)
    .execute(&mut *conn)
    .await?;
    Ok(Encoded { dict: blob, data })
}

/// Stores a reference document once, by content hash, and returns its blob id.
async fn put_blob(conn: &mut SqliteConnection, content: &[u8]) -> Result<i64, StoreError> {
    let digest = codec::sha256(content);
    let existing: Option<i64> = sqlx::query_scalar("SELECT id FROM blobs WHERE sha256 = ?1")
        .bind(&digest)
        .fetch_optional(&mut *conn)
        .await?;
    if let Some(id) = existing {
        return Ok(id);
    }
    let data = codec::compress_alone(content)?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO blobs (sha256, raw_len, data) VALUES (?1, ?2, ?3) RETURNING id",
    )
    .bind(digest)
    .bind(int(content.len()))
    .bind(data)
    .fetch_one(&mut *conn)
    .await?;
    Ok(id)
}
