//! Writing one finished check to PostgreSQL: the same rows, hashes and compression as
//! `write.rs` writes to SQLite, shaped for a server that several instances write at once.
//!
//! Two things differ. Ids come from the tables' sequences (`nextval`), never from `MAX(id) + 1`,
//! which two transactions would compute alike. And concurrent writers of one target (replicate
//! mode: every instance checks every target) are serialized on the target's row: the check's
//! transaction first takes `SELECT … FOR UPDATE` on it, and only then reads the chain head and
//! the compression references, in a statement of its own, so it sees what the previous writer
//! committed (under READ COMMITTED each statement takes a new snapshot; a statement that waited
//! for the lock would still read the references from before the wait). So the chain stays one
//! line per target and the references are never renewed from a stale copy.
//!
//! Round trips are what a check costs on a network server, and sqlx has no pipelining, so the
//! rows are written by one statement: data-modifying CTEs, each inserting its rows from `unnest`
//! over array parameters. The statement text is the same for every check (an empty array
//! inserts nothing), so each connection prepares it once. A check takes five round trips: BEGIN,
//! the lock, the head, the rows, COMMIT (plus one in a fleet, where the check's slot claim is
//! marked stored first, a few when a reference is renewed, and two when a target is first
//! seen).

use std::collections::HashSet;

use sqlx::{PgConnection, PgPool, Row};

use super::StoreError;
use super::chain::GENESIS;
use super::codec::{self, int};
use super::write::{Kind, Prepared, Recorded, encode, reference_at};
use crate::record::SlotClaim;
use crate::verify::State;

/// Locks the target's row for the rest of the transaction.
const LOCK: &str = "SELECT id FROM targets WHERE name = $1 FOR UPDATE";

/// The target's chain head, whether the check it names is still stored, the new check's id and
/// the target's current reference of each kind (blob id, last ratio, and the blob's length,
/// hash and data), read after the lock is held.
const HEAD: &str = "SELECT t.chain_head, t.chain_head_check,
       EXISTS (SELECT 1 FROM checks c WHERE c.id = t.chain_head_check),
       nextval(pg_get_serial_sequence('checks', 'id')),
       vd.blob_id, vd.last_ratio, vb.raw_len, vb.sha256, vb.data,
       bd.blob_id, bd.last_ratio, bb.raw_len, bb.sha256, bb.data
     FROM targets t
     LEFT JOIN target_dicts vd ON vd.target_id = t.id AND vd.kind = 'verdict'
     LEFT JOIN blobs vb ON vb.id = vd.blob_id
     LEFT JOIN target_dicts bd ON bd.target_id = t.id AND bd.kind = 'bundle'
     LEFT JOIN blobs bb ON bb.id = bd.blob_id
     WHERE t.id = $1";

/// Every row of a check, in one statement; it returns how many rows it wrote.
const WRITE: &str = "WITH
ins_check AS (
    INSERT INTO checks (id, target_id, scheduled_at, started_at, finished_at, observed_at,
                        state, attestation_format, verdict_dict, verdict_len, verdict,
                        verdict_sha256, bundle_sha256, prev_hash, record_hash, instance, vantage)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
    RETURNING 1),
ins_results AS (
    INSERT INTO check_results (check_id, ordinal, name, scope, state, reason)
    SELECT $1, r.ordinal, r.name, r.scope, r.state, r.reason
    FROM unnest($18::bigint[], $19::text[], $20::text[], $21::text[], $22::text[])
         AS r(ordinal, name, scope, state, reason)
    RETURNING 1),
ins_phases AS (
    INSERT INTO check_phases (check_id, ordinal, phase, duration_ns)
    SELECT $1, p.ordinal, p.phase, p.duration_ns
    FROM unnest($23::bigint[], $24::text[], $25::bigint[]) AS p(ordinal, phase, duration_ns)
    RETURNING 1),
m AS (
    SELECT * FROM unnest($26::text[], $27::text[], $28::text[], $29::text[])
                  WITH ORDINALITY AS m(field, node, value, source, ordinal)),
ins_values AS (
    INSERT INTO measurement_values AS v
        (target_id, field, node, value, source, first_seen, last_seen, first_check, last_check)
    SELECT DISTINCT $2::bigint, m.field, m.node, m.value, m.source,
                    $5::bigint, $5::bigint, $1::bigint, $1::bigint
    FROM m
    ON CONFLICT (target_id, field, node, value, source) DO UPDATE SET
        first_check = CASE WHEN excluded.first_seen < v.first_seen
                           THEN excluded.first_check ELSE v.first_check END,
        first_seen = LEAST(v.first_seen, excluded.first_seen),
        last_check = CASE WHEN excluded.last_seen >= v.last_seen
                          THEN excluded.last_check ELSE v.last_check END,
        last_seen = GREATEST(v.last_seen, excluded.last_seen)
    RETURNING v.id, v.field, v.node, v.value, v.source),
ins_links AS (
    INSERT INTO check_measurements (check_id, ordinal, value_id)
    SELECT $1, m.ordinal - 1, iv.id
    FROM m JOIN ins_values iv ON iv.field = m.field AND iv.node = m.node
                              AND iv.value = m.value AND iv.source = m.source
    RETURNING 1),
ins_drift AS (
    INSERT INTO drift_events (check_id, target_id, field, node, old_values, new_value, reasons, at)
    SELECT $1, $2, d.field, d.node, d.old_values, d.new_value, d.reasons, d.at
    FROM unnest($30::text[], $31::text[], $32::text[], $33::text[], $34::text[], $35::bigint[])
         AS d(field, node, old_values, new_value, reasons, at)
    RETURNING 1),
ins_bundle AS (
    INSERT INTO bundles (check_id, dict, raw_len, sha256, data)
    VALUES ($1, $36, $37, $38, $39)
    RETURNING 1),
upd_ratios AS (
    UPDATE target_dicts SET last_ratio = r.ratio
    FROM unnest($40::text[], $41::float8[]) AS r(kind, ratio)
    WHERE target_dicts.target_id = $2 AND target_dicts.kind = r.kind
    RETURNING 1),
upd_head AS (
    UPDATE targets SET chain_head = $15, chain_head_check = $1 WHERE id = $2
    RETURNING 1),
ins_gap AS (
    INSERT INTO chain_gaps (check_id, prev_check, prev_hash, noted_at)
    SELECT $1, $42, $43, $5 WHERE $44
    ON CONFLICT (check_id) DO UPDATE SET prev_check = excluded.prev_check,
        prev_hash = excluded.prev_hash, noted_at = excluded.noted_at
    RETURNING 1)
SELECT (SELECT count(*) FROM ins_check) + (SELECT count(*) FROM ins_results)
     + (SELECT count(*) FROM ins_phases) + (SELECT count(*) FROM ins_values)
     + (SELECT count(*) FROM ins_links) + (SELECT count(*) FROM ins_drift)
     + (SELECT count(*) FROM ins_bundle) + (SELECT count(*) FROM upd_ratios)
     + (SELECT count(*) FROM upd_head) + (SELECT count(*) FROM ins_gap)";

/// The target's id, with its row locked until the transaction ends; the row is created first
/// when the target is new (by whichever instance gets there first).
async fn lock_target(conn: &mut PgConnection, name: &str) -> Result<i64, StoreError> {
    let id: Option<i64> = sqlx::query_scalar(LOCK)
        .bind(name)
        .fetch_optional(&mut *conn)
        .await?;
    if let Some(id) = id {
        return Ok(id);
    }
    sqlx::query("INSERT INTO targets (name) VALUES ($1) ON CONFLICT (name) DO NOTHING")
        .bind(name)
        .execute(&mut *conn)
        .await?;
    Ok(sqlx::query_scalar(LOCK)
        .bind(name)
        .fetch_one(&mut *conn)
        .await?)
}

/// Marks the check's slot claim stored, in the check's transaction: the claim's row stays
/// locked until the transaction ends, so a peer's take-over of the claim (`crate::fleet`,
/// `db::claim`) either happens before, and this write is refused, or waits and finds the claim
/// stored. Refused ([`StoreError::ClaimTakenOver`]) when the claim is no longer this instance's
/// incarnation's; the transaction is then rolled back when dropped.
async fn confirm_claim(
    conn: &mut PgConnection,
    target: &str,
    instance: &str,
    claim: &SlotClaim,
) -> Result<(), StoreError> {
    let confirmed = sqlx::query(
        "UPDATE slot_claims SET stored = true
         WHERE target = $1 AND vantage = $2 AND slot_at = $3 AND instance = $4 AND incarnation = $5",
    )
    .bind(target)
    .bind(&claim.vantage)
    .bind(claim.slot_at)
    .bind(instance)
    .bind(claim.incarnation)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if confirmed == 1 {
        return Ok(());
    }
    let holder: Option<String> = sqlx::query_scalar(
        "SELECT instance FROM slot_claims WHERE target = $1 AND vantage = $2 AND slot_at = $3",
    )
    .bind(target)
    .bind(&claim.vantage)
    .bind(claim.slot_at)
    .fetch_optional(&mut *conn)
    .await?;
    Err(StoreError::ClaimTakenOver {
        slot_at: claim.slot_at,
        holder: holder.unwrap_or_else(|| "nobody (the claim is gone)".into()),
    })
}

/// Writes one check to PostgreSQL (see the module documentation).
pub(super) async fn record(pool: &PgPool, p: &Prepared<'_>) -> Result<Recorded, StoreError> {
    let rec = p.rec;
    let mut tx = pool.begin().await?;
    if let Some(claim) = &rec.claim {
        confirm_claim(&mut tx, &rec.target, &rec.instance, claim).await?;
    }
    let target_id = lock_target(&mut tx, &rec.target).await?;
    let head = sqlx::query(HEAD)
        .bind(target_id)
        .fetch_one(&mut *tx)
        .await?;
    let chain_head: Option<Vec<u8>> = head.try_get(0)?;
    let head_check: Option<i64> = head.try_get(1)?;
    let head_stored: bool = head.try_get(2)?;
    let check_id: i64 = head.try_get(3)?;
    let verdict_ref = reference_at!(head, 4);
    let bundle_ref = reference_at!(head, 9);
    let prev_hash = chain_head.clone().unwrap_or_else(|| GENESIS.to_vec());

    let verdict_doc = encode(&mut *tx, target_id, Kind::Verdict, verdict_ref, &p.verdict).await?;
    let bundle_doc = encode(&mut *tx, target_id, Kind::Bundle, bundle_ref, &p.bundle).await?;
    let record_hash = p.record_hash(check_id, &prev_hash);

    let failing: Vec<(usize, &crate::verify::Check)> = rec
        .verdict
        .checks
        .iter()
        .enumerate()
        .filter(|(_, c)| c.state != State::Pass)
        .collect();
    let distinct_values: HashSet<(&str, &str, &str, &str)> = rec
        .measurements
        .iter()
        .map(|m| {
            (
                m.field.as_str(),
                m.node.as_str(),
                m.value.as_str(),
                m.source.as_str(),
            )
        })
        .collect();
    let mut ratio_kinds: Vec<&str> = Vec::new();
    let mut ratios: Vec<f64> = Vec::new();
    for (kind, doc) in [(Kind::Verdict, &verdict_doc), (Kind::Bundle, &bundle_doc)] {
        if let Some(ratio) = doc.kept_ratio {
            ratio_kinds.push(kind.as_str());
            ratios.push(ratio);
        }
    }
    // When retention deleted the check the chain head names, this check records the gap it
    // links across.
    let gap = match (&chain_head, head_check, head_stored) {
        (Some(head), Some(head_check), false) => Some((head_check, head.as_slice())),
        _ => None,
    };
    let expected = 3
        + failing.len()
        + rec.phases.len()
        + distinct_values.len()
        + rec.measurements.len()
        + p.drift.len()
        + ratios.len()
        + usize::from(gap.is_some());

    let written: i64 = sqlx::query_scalar(WRITE)
        .bind(check_id)
        .bind(target_id)
        .bind(p.scheduled_at)
        .bind(p.started_at)
        .bind(p.finished_at)
        .bind(p.observed_at)
        .bind(rec.verdict.state.as_str())
        .bind(rec.verdict.attestation_format.as_str())
        .bind(verdict_doc.dict)
        .bind(int(p.verdict.len()))
        .bind(verdict_doc.data.as_slice())
        .bind(p.verdict_sha256.as_slice())
        .bind(p.bundle_sha256.as_slice())
        .bind(prev_hash.as_slice())
        .bind(record_hash.as_slice())
        .bind(rec.instance.as_str())
        .bind(rec.vantage.as_str())
        // $18-$22: the results that did not pass.
        .bind(failing.iter().map(|(i, _)| int(*i)).collect::<Vec<_>>())
        .bind(
            failing
                .iter()
                .map(|(_, c)| c.name.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            failing
                .iter()
                .map(|(_, c)| c.scope.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            failing
                .iter()
                .map(|(_, c)| c.state.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            failing
                .iter()
                .map(|(_, c)| c.reason.as_str())
                .collect::<Vec<_>>(),
        )
        // $23-$25: the phases.
        .bind((0..rec.phases.len()).map(int).collect::<Vec<_>>())
        .bind(
            rec.phases
                .iter()
                .map(|ph| ph.phase.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            rec.phases
                .iter()
                .map(|ph| codec::duration_ns(ph.duration))
                .collect::<Vec<_>>(),
        )
        // $26-$29: the measurements, in order.
        .bind(
            rec.measurements
                .iter()
                .map(|m| m.field.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            rec.measurements
                .iter()
                .map(|m| m.node.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            rec.measurements
                .iter()
                .map(|m| m.value.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            rec.measurements
                .iter()
                .map(|m| m.source.as_str())
                .collect::<Vec<_>>(),
        )
        // $30-$35: the drift events.
        .bind(
            p.drift
                .iter()
                .map(|d| d.0.field.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            p.drift
                .iter()
                .map(|d| d.0.node.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(p.drift.iter().map(|d| d.1.as_str()).collect::<Vec<_>>())
        .bind(
            p.drift
                .iter()
                .map(|d| d.0.new_value.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(p.drift.iter().map(|d| d.2.as_str()).collect::<Vec<_>>())
        .bind(p.drift.iter().map(|d| d.3).collect::<Vec<_>>())
        // $36-$39: the bundle.
        .bind(bundle_doc.dict)
        .bind(int(p.bundle.len()))
        .bind(p.bundle_sha256.as_slice())
        .bind(bundle_doc.data.as_slice())
        // $40-$41: the ratios of references kept.
        .bind(ratio_kinds)
        .bind(ratios)
        // $42-$44: the gap, if any.
        .bind(gap.map(|(check, _)| check))
        .bind(gap.map(|(_, hash)| hash))
        .bind(gap.is_some())
        .fetch_one(&mut *tx)
        .await?;
    if written != int(expected) {
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
