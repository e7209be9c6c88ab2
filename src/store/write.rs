//! Writing one finished check: every row it produces in a single transaction, so that a crash or
//! an error midway leaves the store as if the check had never been recorded.
//!
//! The bundle and the verdict are compressed against the target's current reference documents
//! (`codec.rs`); when a document shows that its reference has gone stale, the reference is
//! renewed with it, inside the same transaction.

use chrono::{DateTime, Utc};
use sqlx::sqlite::SqlitePool;
use sqlx::{PgConnection, QueryBuilder, Row, Sqlite, SqliteConnection};

use super::chain::{GENESIS, RecordFields};
use super::codec::{self, int, to_ns};
use super::{Pool, Store, StoreError, read};
use crate::drift::DriftEvent;
use crate::record::CheckRecord;
use crate::verify::State;

/// The reference of one kind in a head row's five columns from `$at` (blob id, last ratio, and
/// the blob's length, hash and data): none when the target has none yet, corruption when it
/// names a blob that is missing or does not match its hash. A macro, so that one body reads
/// the rows of both backends.
macro_rules! reference_at {
    ($row:expr, $at:expr) => {
        super::write::current_reference(
            $row.try_get::<Option<i64>, _>($at)?,
            $row.try_get($at + 1)?,
            $row.try_get($at + 2)?,
            $row.try_get($at + 3)?,
            $row.try_get($at + 4)?,
        )?
    };
}
pub(super) use reference_at;

/// The two kinds of documents that have per-target references.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Bundle,
    Verdict,
}

impl Kind {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Kind::Bundle => "bundle",
            Kind::Verdict => "verdict",
        }
    }
}

/// A document compressed against the reference blob `dict`.
pub(super) struct Encoded {
    pub dict: i64,
    /// compressed / raw when `dict` was the target's reference already (it is stored as the
    /// reference's last ratio); `None` when the reference was renewed for this document.
    pub kept_ratio: Option<f64>,
    pub data: Vec<u8>,
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
        // write lock (SQLite's, or the target's row lock on PostgreSQL) is held only for the
        // statements.
        let p = Prepared::new(rec)?;
        match &self.pool {
            Pool::Sqlite(pool) => record_sqlite(pool, &p).await,
            Pool::Postgres(pool) => super::write_pg::record(pool, &p).await,
        }
    }
}

/// A check turned into what the store writes, by both backends alike.
pub(super) struct Prepared<'r> {
    pub rec: &'r CheckRecord,
    /// The bundle and verdict as compact JSON, and their SHA-256.
    pub bundle: Vec<u8>,
    pub verdict: Vec<u8>,
    pub bundle_sha256: Vec<u8>,
    pub verdict_sha256: Vec<u8>,
    pub scheduled_at: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub observed_at: Option<i64>,
    /// Each drift event with its old values as JSON, its reasons joined by commas and its time.
    pub drift: Vec<(&'r DriftEvent, String, String, i64)>,
}

impl<'r> Prepared<'r> {
    fn new(rec: &'r CheckRecord) -> Result<Prepared<'r>, StoreError> {
        let bundle = serde_json::to_vec(&rec.bundle).map_err(|source| StoreError::Encode {
            what: "the bundle",
            source,
        })?;
        let verdict = serde_json::to_vec(&rec.verdict).map_err(|source| StoreError::Encode {
            what: "the verdict",
            source,
        })?;
        // A verdict states observed_at as RFC 3339; one that does not parse (or is out of
        // range) is stored as unknown rather than refusing the whole check.
        let observed_at = DateTime::parse_from_rfc3339(&rec.verdict.observed_at)
            .ok()
            .and_then(|t| t.with_timezone(&Utc).timestamp_nanos_opt());
        let mut drift = Vec::with_capacity(rec.drift.len());
        for event in &rec.drift {
            let old_values =
                serde_json::to_string(&event.old_values).map_err(|source| StoreError::Encode {
                    what: "drift old values",
                    source,
                })?;
            let reasons: Vec<&str> = event.reasons.iter().map(|r| r.as_str()).collect();
            drift.push((event, old_values, reasons.join(","), to_ns(event.at)?));
        }
        Ok(Prepared {
            rec,
            bundle_sha256: codec::sha256(&bundle),
            verdict_sha256: codec::sha256(&verdict),
            bundle,
            verdict,
            scheduled_at: to_ns(rec.scheduled_at)?,
            started_at: to_ns(rec.started_at)?,
            finished_at: to_ns(rec.finished_at)?,
            observed_at,
            drift,
        })
    }

    /// The record hash of the check stored with `check_id` after `prev_hash`.
    pub fn record_hash(&self, check_id: i64, prev_hash: &[u8]) -> Vec<u8> {
        RecordFields {
            target: &self.rec.target,
            check_id,
            scheduled_at: self.scheduled_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
            state: self.rec.verdict.state.as_str(),
            attestation_format: self.rec.verdict.attestation_format.as_str(),
            verdict_sha256: &self.verdict_sha256,
            bundle_sha256: &self.bundle_sha256,
            prev_hash,
        }
        .hash()
    }
}

/// Writes one check to SQLite.
async fn record_sqlite(pool: &SqlitePool, p: &Prepared<'_>) -> Result<Recorded, StoreError> {
    let Prepared {
        rec,
        bundle,
        verdict,
        bundle_sha256,
        verdict_sha256,
        scheduled_at,
        started_at,
        finished_at,
        observed_at,
        drift,
    } = p;
    let (scheduled_at, started_at, finished_at, observed_at) =
        (*scheduled_at, *started_at, *finished_at, *observed_at);
    // sqlx runs SQLite on a worker thread and every statement is a round trip to it, so a
    // check takes four: BEGIN, one statement that reads everything the check depends on,
    // one batch of every row it writes, and COMMIT (plus a few when a reference is renewed).
    let mut tx = pool.begin().await?;
    // The first statement writes, so the transaction takes the write lock at once and never
    // has to upgrade a read snapshot (which fails instead of waiting when another
    // connection wrote in between).
    let head = sqlx::query(HEAD)
        .bind(&rec.target)
        .fetch_one(&mut *tx)
        .await?;
    let target_id: i64 = head.try_get(0)?;
    let chain_head: Option<Vec<u8>> = head.try_get(1)?;
    let head_check: Option<i64> = head.try_get(2)?;
    let head_stored: bool = head.try_get(3)?;
    let check_id: i64 = head.try_get(4)?;
    let verdict_ref = reference_at!(head, 5);
    let bundle_ref = reference_at!(head, 10);
    let prev_hash = chain_head.clone().unwrap_or_else(|| GENESIS.to_vec());

    // The verdict's reference is renewed before the bundle's, as it always was, so blob ids
    // keep their order.
    let verdict_doc = encode(&mut *tx, target_id, Kind::Verdict, verdict_ref, verdict).await?;
    let bundle_doc = encode(&mut *tx, target_id, Kind::Bundle, bundle_ref, bundle).await?;

    // The check's id is known before it is inserted (`HEAD` reads the id SQLite would give
    // it), so its record hash goes in with the row.
    let record_hash = p.record_hash(check_id, &prev_hash);

    // Every row of the check in one batch of statements, each with its rows in one
    // multi-row statement (sqlx numbers the unnumbered `?` parameters across the batch).
    let mut batch = QueryBuilder::<Sqlite>::new(
        "INSERT INTO checks (id, target_id, scheduled_at, started_at, finished_at,
                                 observed_at, state, attestation_format, verdict_dict,
                                 verdict_len, verdict, verdict_sha256, bundle_sha256, prev_hash,
                                 record_hash, instance, vantage) ",
    );
    batch.push_values([()], |mut row, ()| {
        row.push_bind(check_id)
            .push_bind(target_id)
            .push_bind(scheduled_at)
            .push_bind(started_at)
            .push_bind(finished_at)
            .push_bind(observed_at)
            .push_bind(rec.verdict.state.as_str())
            .push_bind(rec.verdict.attestation_format.as_str())
            .push_bind(verdict_doc.dict)
            .push_bind(int(verdict.len()))
            .push_bind(verdict_doc.data.as_slice())
            .push_bind(verdict_sha256.as_slice())
            .push_bind(bundle_sha256.as_slice())
            .push_bind(prev_hash.as_slice())
            .push_bind(record_hash.as_slice())
            .push_bind(rec.instance.as_str())
            .push_bind(rec.vantage.as_str());
    });
    // Rows each statement of the batch writes, to confirm every one was.
    let mut expected: u64 = 1;

    let failing: Vec<(usize, &crate::verify::Check)> = rec
        .verdict
        .checks
        .iter()
        .enumerate()
        .filter(|(_, c)| c.state != State::Pass)
        .collect();
    if !failing.is_empty() {
        expected += failing.len() as u64;
        batch.push(";\nINSERT INTO check_results (check_id, ordinal, name, scope, state, reason) ");
        batch.push_values(failing, |mut row, (ordinal, check)| {
            row.push_bind(check_id)
                .push_bind(int(ordinal))
                .push_bind(check.name.as_str())
                .push_bind(check.scope.as_str())
                .push_bind(check.state.as_str())
                .push_bind(check.reason.as_str());
        });
    }

    if !rec.phases.is_empty() {
        expected += rec.phases.len() as u64;
        batch.push(";\nINSERT INTO check_phases (check_id, ordinal, phase, duration_ns) ");
        batch.push_values(
            rec.phases.iter().enumerate(),
            |mut row, (ordinal, phase)| {
                row.push_bind(check_id)
                    .push_bind(int(ordinal))
                    .push_bind(phase.phase.as_str())
                    .push_bind(codec::duration_ns(phase.duration));
            },
        );
    }

    if !rec.measurements.is_empty() {
        // One row each in the history (inserted or updated) and one link each.
        expected += 2 * rec.measurements.len() as u64;
        // The history keeps the earliest first sighting and the latest last one, so checks
        // recorded out of order still leave the right bounds.
        batch.push(
            ";\nINSERT INTO measurement_values
                     (target_id, field, node, value, source,
                      first_seen, last_seen, first_check, last_check) ",
        );
        batch.push_values(&rec.measurements, |mut row, m| {
            row.push_bind(target_id)
                .push_bind(m.field.as_str())
                .push_bind(m.node.as_str())
                .push_bind(m.value.as_str())
                .push_bind(m.source.as_str())
                .push_bind(finished_at)
                .push_bind(finished_at)
                .push_bind(check_id)
                .push_bind(check_id);
        });
        batch.push(
            " ON CONFLICT (target_id, field, node, value, source) DO UPDATE SET
                     first_check = CASE WHEN excluded.first_seen < first_seen
                                        THEN excluded.first_check ELSE first_check END,
                     first_seen = MIN(first_seen, excluded.first_seen),
                     last_check = CASE WHEN excluded.last_seen >= last_seen
                                       THEN excluded.last_check ELSE last_check END,
                     last_seen = MAX(last_seen, excluded.last_seen)",
        );
        // Then the check's links to those values, in measurement order, found by the
        // history table's unique key.
        batch.push(
            ";\nINSERT INTO check_measurements (check_id, ordinal, value_id)
                 SELECT ",
        );
        batch.push_bind(check_id);
        batch.push(", m.column1, v.id FROM (");
        batch.push_values(
            rec.measurements.iter().enumerate(),
            |mut row, (ordinal, m)| {
                row.push_bind(int(ordinal))
                    .push_bind(m.field.as_str())
                    .push_bind(m.node.as_str())
                    .push_bind(m.value.as_str())
                    .push_bind(m.source.as_str());
            },
        );
        batch.push(") AS m JOIN measurement_values AS v ON v.target_id = ");
        batch.push_bind(target_id);
        batch.push(
            " AND v.field = m.column2 AND v.node = m.column3 AND v.value = m.column4
                  AND v.source = m.column5",
        );
    }

    if !drift.is_empty() {
        expected += drift.len() as u64;
        batch.push(
            ";\nINSERT INTO drift_events
                     (check_id, target_id, field, node, old_values, new_value, reasons, at) ",
        );
        batch.push_values(drift.iter(), |mut row, (event, old_values, reasons, at)| {
            row.push_bind(check_id)
                .push_bind(target_id)
                .push_bind(event.field.as_str())
                .push_bind(event.node.as_str())
                .push_bind(old_values.as_str())
                .push_bind(event.new_value.as_str())
                .push_bind(reasons.as_str())
                .push_bind(*at);
        });
    }

    expected += 1;
    batch.push(";\nINSERT INTO bundles (check_id, dict, raw_len, sha256, data) ");
    batch.push_values([()], |mut row, ()| {
        row.push_bind(check_id)
            .push_bind(bundle_doc.dict)
            .push_bind(int(bundle.len()))
            .push_bind(bundle_sha256.as_slice())
            .push_bind(bundle_doc.data.as_slice());
    });

    // The ratio of each document against a reference it kept (a renewed one has NULL).
    for (kind, doc) in [(Kind::Verdict, &verdict_doc), (Kind::Bundle, &bundle_doc)] {
        if let Some(ratio) = doc.kept_ratio {
            expected += 1;
            batch.push(";\nUPDATE target_dicts SET last_ratio = ");
            batch.push_bind(ratio);
            batch.push(" WHERE target_id = ");
            batch.push_bind(target_id);
            batch.push(" AND kind = ");
            batch.push_bind(kind.as_str());
        }
    }

    expected += 1;
    batch.push(";\nUPDATE targets SET chain_head = ");
    batch.push_bind(record_hash.as_slice());
    batch.push(", chain_head_check = ");
    batch.push_bind(check_id);
    batch.push(" WHERE id = ");
    batch.push_bind(target_id);
    // When retention deleted the check the chain head names, this check records the gap
    // it links across.
    if let (Some(head), Some(head_check), false) = (&chain_head, head_check, head_stored) {
        expected += 1;
        batch.push(
            ";\nINSERT OR REPLACE INTO chain_gaps (check_id, prev_check, prev_hash, noted_at) ",
        );
        batch.push_values([()], |mut row, ()| {
            row.push_bind(check_id)
                .push_bind(head_check)
                .push_bind(head.as_slice())
                .push_bind(finished_at);
        });
    }

    let written = batch.build().execute(&mut *tx).await?.rows_affected();
    if written != expected {
        return Err(StoreError::Corrupt(format!(
            "expected {expected} rows written for the check, wrote {written}"
        )));
    }

    tx.commit().await?;
    Ok(Recorded {
        check_id,
        record_hash,
    })
}

/// The check's first statement: it upserts the target, and reads its chain head, whether the
/// check the head names is still stored, the id the new check will get (SQLite gives a rowid
/// one more than the largest; `checks` has no AUTOINCREMENT), and the target's current
/// reference of each kind (blob id, last ratio, and the blob's length, hash and data).
const HEAD: &str = "INSERT INTO targets (name) VALUES (?1)
     ON CONFLICT (name) DO UPDATE SET name = excluded.name
     RETURNING id, chain_head, chain_head_check,
       EXISTS (SELECT 1 FROM checks c WHERE c.id = chain_head_check),
       (SELECT COALESCE(MAX(c.id), 0) + 1 FROM checks c),
       (SELECT d.blob_id FROM target_dicts d
         WHERE d.target_id = targets.id AND d.kind = 'verdict'),
       (SELECT d.last_ratio FROM target_dicts d
         WHERE d.target_id = targets.id AND d.kind = 'verdict'),
       (SELECT b.raw_len FROM target_dicts d JOIN blobs b ON b.id = d.blob_id
         WHERE d.target_id = targets.id AND d.kind = 'verdict'),
       (SELECT b.sha256 FROM target_dicts d JOIN blobs b ON b.id = d.blob_id
         WHERE d.target_id = targets.id AND d.kind = 'verdict'),
       (SELECT b.data FROM target_dicts d JOIN blobs b ON b.id = d.blob_id
         WHERE d.target_id = targets.id AND d.kind = 'verdict'),
       (SELECT d.blob_id FROM target_dicts d
         WHERE d.target_id = targets.id AND d.kind = 'bundle'),
       (SELECT d.last_ratio FROM target_dicts d
         WHERE d.target_id = targets.id AND d.kind = 'bundle'),
       (SELECT b.raw_len FROM target_dicts d JOIN blobs b ON b.id = d.blob_id
         WHERE d.target_id = targets.id AND d.kind = 'bundle'),
       (SELECT b.sha256 FROM target_dicts d JOIN blobs b ON b.id = d.blob_id
         WHERE d.target_id = targets.id AND d.kind = 'bundle'),
       (SELECT b.data FROM target_dicts d JOIN blobs b ON b.id = d.blob_id
         WHERE d.target_id = targets.id AND d.kind = 'bundle')";

/// A target's current reference of one kind.
pub(super) struct Current {
    pub blob: i64,
    pub last_ratio: Option<f64>,
    pub reference: Vec<u8>,
}

/// See [`reference_at!`].
pub(super) fn current_reference(
    blob: Option<i64>,
    last_ratio: Option<f64>,
    raw_len: Option<i64>,
    digest: Option<Vec<u8>>,
    data: Option<Vec<u8>>,
) -> Result<Option<Current>, StoreError> {
    let Some(blob) = blob else {
        return Ok(None);
    };
    let (Some(raw_len), Some(digest), Some(data)) = (raw_len, digest, data) else {
        return Err(StoreError::Corrupt(format!("blob {blob} is missing")));
    };
    Ok(Some(Current {
        blob,
        last_ratio,
        reference: read::blob_content(blob, raw_len, &digest, &data)?,
    }))
}

/// What renewing a reference writes, on either backend.
pub(super) trait RefConn: Send {
    /// Stores a reference document once, by content hash, and returns its blob id.
    fn put_blob(
        &mut self,
        content: &[u8],
    ) -> impl std::future::Future<Output = Result<i64, StoreError>> + Send;

    /// Makes `blob` the target's reference of `kind`, with no ratio yet.
    fn set_reference(
        &mut self,
        target_id: i64,
        kind: Kind,
        blob: i64,
    ) -> impl std::future::Future<Output = Result<(), StoreError>> + Send;
}

macro_rules! ref_conn {
    ($conn:ty) => {
        impl RefConn for $conn {
            async fn put_blob(&mut self, content: &[u8]) -> Result<i64, StoreError> {
                let digest = codec::sha256(content);
                let existing: Option<i64> =
                    sqlx::query_scalar("SELECT id FROM blobs WHERE sha256 = $1")
                        .bind(&digest)
                        .fetch_optional(&mut *self)
                        .await?;
                if let Some(id) = existing {
                    return Ok(id);
                }
                let data = codec::compress_alone(content)?;
                // Another instance may store the same blob between the two statements (only on
                // PostgreSQL, where writers of different targets run at once): then its row is
                // the one, read once it committed.
                let inserted: Option<i64> = sqlx::query_scalar(
                    "INSERT INTO blobs (sha256, raw_len, data) VALUES ($1, $2, $3)
                     ON CONFLICT (sha256) DO NOTHING RETURNING id",
                )
                .bind(&digest)
                .bind(int(content.len()))
                .bind(data)
                .fetch_optional(&mut *self)
                .await?;
                match inserted {
                    Some(id) => Ok(id),
                    None => Ok(sqlx::query_scalar("SELECT id FROM blobs WHERE sha256 = $1")
                        .bind(&digest)
                        .fetch_one(&mut *self)
                        .await?),
                }
            }

            async fn set_reference(
                &mut self,
                target_id: i64,
                kind: Kind,
                blob: i64,
            ) -> Result<(), StoreError> {
                // The ratio against a reference that contains the document says nothing about
                // the next one, hence NULL until a document is compressed against it for real.
                sqlx::query(
                    "INSERT INTO target_dicts (target_id, kind, blob_id, last_ratio)
                     VALUES ($1, $2, $3, NULL)
                     ON CONFLICT (target_id, kind)
                     DO UPDATE SET blob_id = excluded.blob_id, last_ratio = NULL",
                )
                .bind(target_id)
                .bind(kind.as_str())
                .bind(blob)
                .execute(&mut *self)
                .await?;
                Ok(())
            }
        }
    };
}
ref_conn!(SqliteConnection);
ref_conn!(PgConnection);

/// Compresses a document against the target's reference of its kind; when there is none yet or
/// the document shows it has gone stale, renews the reference first (those statements run at
/// once; a kept reference's new ratio goes into the check's batch as `kept_ratio`).
pub(super) async fn encode<C: RefConn>(
    conn: &mut C,
    target_id: i64,
    kind: Kind,
    current: Option<Current>,
    doc: &[u8],
) -> Result<Encoded, StoreError> {
    let old_reference = match current {
        None => None,
        Some(current) => {
            let data = codec::compress_with(&current.reference, doc)?;
            if !codec::should_renew(data.len(), doc.len(), current.last_ratio) {
                return Ok(Encoded {
                    dict: current.blob,
                    kept_ratio: Some(codec::ratio(data.len(), doc.len())),
                    data,
                });
            }
            Some(current.reference)
        }
    };
    let reference = codec::extend_reference(old_reference.as_deref(), doc);
    let blob = conn.put_blob(&reference).await?;
    // The document is the end of its new reference, so it compresses to a few bytes.
    let data = codec::compress_with(&reference, doc)?;
    conn.set_reference(target_id, kind, blob).await?;
    Ok(Encoded {
        dict: blob,
        kept_ratio: None,
        data,
    })
}
