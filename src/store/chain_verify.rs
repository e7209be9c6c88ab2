//! `teewatch history verify`: recomputes every target's hash chain (`chain.rs`) from what the
//! store holds and reports the first broken link of each, with what broke it.
//!
//! A target's checks are walked in chain order (by id, the order they were written). Each
//! check's record must hash to its stored record hash (else it was **edited**), its verdict and
//! bundle must hash to the hashes its record covers (else they were **edited**), and the previous
//! record hash it names must be the one of the check before it, or of the check retention
//! deleted there (a gap row), or 32 zero bytes for the first. A check naming the hash of a check
//! that comes later was **reordered**; one naming a hash that no stored check has follows a
//! check that is **missing** (deleted, or rewritten with its hash recomputed). The newest check
//! must be the target's chain head, else the newest checks are missing.
//!
//! Someone who can write the database and recomputes every hash from the first changed check on
//! leaves a consistent chain: only a record hash kept outside the database (the daemon logs each
//! one) catches that, through `head`.

use std::collections::HashMap;

use sqlx::{PgConnection, Row, SqliteConnection};

use super::chain::{GENESIS, RecordFields};
use super::codec;
use super::read::BlobConn;
use super::{Store, StoreError, on_pool};

/// What broke a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkFault {
    /// The check's record, verdict or bundle is not what was chained.
    Edited,
    /// A check before this one (or after the newest) is gone, or was rewritten with a
    /// recomputed hash.
    Missing,
    /// The check names as its predecessor a check that comes after it.
    Reordered,
}

impl LinkFault {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkFault::Edited => "edited",
            LinkFault::Missing => "missing",
            LinkFault::Reordered => "reordered",
        }
    }
}

/// The first broken link of a target's chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenLink {
    /// The check at which the chain breaks.
    pub check_id: i64,
    pub fault: LinkFault,
    /// What differs, expected against found.
    pub detail: String,
}

/// One target's chain as `verify_chain` found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetChain {
    pub target: String,
    /// Chained checks verified before the first broken link (all of them when intact).
    pub verified: u64,
    /// Checks stored before the chain existed (migration 0003), which it does not cover.
    pub unchained: u64,
    /// The newest verified check and its record hash (hex).
    pub head: Option<(i64, String)>,
    pub broken: Option<BrokenLink>,
    /// The verified check whose record hash is the `head` asked for, if any.
    pub head_found: Option<i64>,
}

/// One stored check, as the chain needs it.
struct Stored {
    id: i64,
    scheduled_at: i64,
    started_at: i64,
    finished_at: i64,
    state: String,
    attestation_format: String,
    verdict_dict: i64,
    verdict_len: i64,
    verdict: Vec<u8>,
    verdict_sha256: Option<Vec<u8>>,
    bundle_sha256: Option<Vec<u8>>,
    prev_hash: Option<Vec<u8>>,
    record_hash: Option<Vec<u8>>,
    bundle_removed_at: Option<i64>,
    bundle: Option<(i64, i64, Vec<u8>, Vec<u8>)>,
    gap: Option<(i64, Vec<u8>)>,
}

fn short(hash: &[u8]) -> String {
    let text = hex::encode(hash);
    text.get(..16).map_or(text.clone(), |s| format!("{s}…"))
}

impl Store {
    /// Verifies the hash chain of every target (or only `target`), returning one entry per
    /// target by name. With `head`, each entry says which verified check has that record hash.
    pub async fn verify_chain(
        &self,
        target: Option<&str>,
        head: Option<&[u8]>,
    ) -> Result<Vec<TargetChain>, StoreError> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let legacy_max: i64 = sqlx::query_scalar("SELECT MAX(legacy_max_id) FROM chain_start")
                .fetch_one(&mut *tx)
                .await
                .map(|v: Option<i64>| v.unwrap_or(0))?;
            type TargetRow = (i64, String, Option<Vec<u8>>, Option<i64>);
            let targets: Vec<TargetRow> = sqlx::query_as(
                "SELECT id, name, chain_head, chain_head_check FROM targets
                 WHERE $1 IS NULL OR name = $1 ORDER BY name",
            )
            .bind(target)
            .fetch_all(&mut *tx)
            .await?;
            let mut blobs: HashMap<i64, Vec<u8>> = HashMap::new();
            let mut out = Vec::with_capacity(targets.len());
            for (target_id, name, chain_head, chain_head_check) in targets {
                let rows = tx.target_rows(target_id).await?;
                let mut report = TargetChain {
                    target: name.clone(),
                    verified: 0,
                    unchained: 0,
                    head: None,
                    broken: None,
                    head_found: None,
                };
                report.broken = walk(&mut *tx, &mut blobs, &name, &rows, legacy_max, &mut report)
                    .await?
                    .or_else(|| check_head(&report, chain_head.as_deref(), chain_head_check, &rows));
                if let Some(wanted) = head {
                    // Every chained check up to the newest verified one verified: the walk goes in
                    // id order and stops at the first break.
                    let verified_up_to = report.head.as_ref().map_or(i64::MIN, |(id, _)| *id);
                    report.head_found = rows
                        .iter()
                        .filter(|r| r.id <= verified_up_to)
                        .find(|r| r.record_hash.as_deref() == Some(wanted))
                        .map(|r| r.id);
                }
                out.push(report);
            }
            Ok(out)
        })
    }
}

/// A connection that can read a target's chain (both backends, one body).
trait ChainConn: BlobConn {
    /// The target's checks in chain order, with their bundles and gap rows.
    fn target_rows(
        &mut self,
        target_id: i64,
    ) -> impl std::future::Future<Output = Result<Vec<Stored>, StoreError>> + Send;
}

macro_rules! chain_conn {
    ($conn:ty) => {
        impl ChainConn for $conn {
            async fn target_rows(&mut self, target_id: i64) -> Result<Vec<Stored>, StoreError> {
                let conn = self;
                let rows = sqlx::query(
                    "SELECT c.id, c.scheduled_at, c.started_at, c.finished_at, c.state, c.attestation_format,
                            c.verdict_dict, c.verdict_len, c.verdict, c.verdict_sha256, c.bundle_sha256,
                            c.prev_hash, c.record_hash, c.bundle_removed_at,
                            b.dict, b.raw_len, b.sha256, b.data, g.prev_check, g.prev_hash
                     FROM checks c
                     LEFT JOIN bundles b ON b.check_id = c.id
                     LEFT JOIN chain_gaps g ON g.check_id = c.id
                     WHERE c.target_id = $1 ORDER BY c.id",
                )
                .bind(target_id)
                .fetch_all(&mut *conn)
                .await?;
                let mut out = Vec::with_capacity(rows.len());
                for row in rows {
                    let bundle = match (
                        row.try_get::<Option<i64>, _>(14)?,
                        row.try_get::<Option<i64>, _>(15)?,
                        row.try_get::<Option<Vec<u8>>, _>(16)?,
                        row.try_get::<Option<Vec<u8>>, _>(17)?,
                    ) {
                        (Some(dict), Some(len), Some(sha), Some(data)) => Some((dict, len, sha, data)),
                        _ => None,
                    };
                    let gap = match (
                        row.try_get::<Option<i64>, _>(18)?,
                        row.try_get::<Option<Vec<u8>>, _>(19)?,
                    ) {
                        (Some(check), Some(hash)) => Some((check, hash)),
                        _ => None,
                    };
                    out.push(Stored {
                        id: row.try_get(0)?,
                        scheduled_at: row.try_get(1)?,
                        started_at: row.try_get(2)?,
                        finished_at: row.try_get(3)?,
                        state: row.try_get(4)?,
                        attestation_format: row.try_get(5)?,
                        verdict_dict: row.try_get(6)?,
                        verdict_len: row.try_get(7)?,
                        verdict: row.try_get(8)?,
                        verdict_sha256: row.try_get(9)?,
                        bundle_sha256: row.try_get(10)?,
                        prev_hash: row.try_get(11)?,
                        record_hash: row.try_get(12)?,
                        bundle_removed_at: row.try_get(13)?,
                        bundle,
                        gap,
                    });
                }
                Ok(out)
            }
        }
    };
}
chain_conn!(SqliteConnection);
chain_conn!(PgConnection);

/// A reference blob, loaded once per verification.
async fn blob<'b, C: BlobConn>(
    conn: &mut C,
    blobs: &'b mut HashMap<i64, Vec<u8>>,
    id: i64,
) -> Result<&'b [u8], String> {
    if let std::collections::hash_map::Entry::Vacant(slot) = blobs.entry(id) {
        slot.insert(conn.load_blob(id).await.map_err(|e| e.to_string())?);
    }
    Ok(blobs.get(&id).map(Vec::as_slice).unwrap_or_default())
}

/// Walks one target's checks, counting into `report`; the first broken link, if any.
async fn walk<C: BlobConn>(
    conn: &mut C,
    blobs: &mut HashMap<i64, Vec<u8>>,
    target: &str,
    rows: &[Stored],
    legacy_max: i64,
    report: &mut TargetChain,
) -> Result<Option<BrokenLink>, StoreError> {
    // Which check has which stored record hash, to tell a reordered link from a missing one.
    let position: HashMap<&[u8], usize> = rows
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.record_hash.as_deref().map(|h| (h, i)))
        .collect();
    let broken = |check_id: i64, fault: LinkFault, detail: String| {
        Ok(Some(BrokenLink {
            check_id,
            fault,
            detail,
        }))
    };
    let mut previous: Option<(i64, &[u8])> = None;
    for (index, row) in rows.iter().enumerate() {
        let (Some(record_hash), Some(prev_hash)) = (&row.record_hash, &row.prev_hash) else {
            if previous.is_none() && row.id <= legacy_max {
                report.unchained += 1;
                continue;
            }
            return broken(
                row.id,
                LinkFault::Edited,
                "expected a record hash (the check was stored after the chain began), found none"
                    .into(),
            );
        };
        // The link this check must name: its predecessor's, the one retention deleted before
        // it, or the start of the chain.
        let (expected, expected_from): (&[u8], String) = match (&row.gap, previous) {
            (Some((check, hash)), _) => (hash, format!("deleted check {check}")),
            (None, Some((id, hash))) => (hash, format!("check {id}")),
            (None, None) => (&GENESIS, "the start of the chain".into()),
        };
        if prev_hash.as_slice() != expected {
            if let Some(later) = position.get(prev_hash.as_slice()).filter(|&&i| i > index) {
                let later_id = rows.get(*later).map_or(0, |r| r.id);
                return broken(
                    row.id,
                    LinkFault::Reordered,
                    format!(
                        "expected the previous link to be {expected_from} ({}), found check {later_id} ({}), which comes after it",
                        short(expected),
                        short(prev_hash)
                    ),
                );
            }
        }
        let recomputed = RecordFields {
            target,
            check_id: row.id,
            scheduled_at: row.scheduled_at,
            started_at: row.started_at,
            finished_at: row.finished_at,
            state: &row.state,
            attestation_format: &row.attestation_format,
            verdict_sha256: row.verdict_sha256.as_deref().unwrap_or_default(),
            bundle_sha256: row.bundle_sha256.as_deref().unwrap_or_default(),
            prev_hash,
        }
        .hash();
        if &recomputed != record_hash {
            return broken(
                row.id,
                LinkFault::Edited,
                format!(
                    "expected the record to hash to its stored {}, found {}: its target, times, state, format or hashes changed",
                    short(record_hash),
                    short(&recomputed)
                ),
            );
        }
        if let Some(detail) = content_fault(conn, blobs, row).await? {
            return broken(row.id, LinkFault::Edited, detail);
        }
        if prev_hash.as_slice() != expected {
            return broken(
                row.id,
                LinkFault::Missing,
                format!(
                    "expected the previous link to be {expected_from} ({}), found {}, which no stored check has: a check before it was deleted or rewritten",
                    short(expected),
                    short(prev_hash)
                ),
            );
        }
        report.verified += 1;
        report.head = Some((row.id, hex::encode(record_hash)));
        previous = Some((row.id, record_hash));
    }
    Ok(None)
}

/// Whether the stored verdict and bundle still hash to what the record covers.
async fn content_fault<C: BlobConn>(
    conn: &mut C,
    blobs: &mut HashMap<i64, Vec<u8>>,
    row: &Stored,
) -> Result<Option<String>, StoreError> {
    let chained_verdict = row.verdict_sha256.as_deref().unwrap_or_default();
    let verdict = match blob(conn, blobs, row.verdict_dict).await {
        Ok(reference) => codec::decompress(reference, &row.verdict, row.verdict_len, "verdict")
            .map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    match verdict {
        Err(e) => return Ok(Some(format!("the verdict cannot be read: {e}"))),
        Ok(json) if codec::sha256(&json) != chained_verdict => {
            return Ok(Some(format!(
                "expected the verdict to hash to {}, found {}",
                short(chained_verdict),
                short(&codec::sha256(&json))
            )));
        }
        Ok(_) => {}
    }
    let chained_bundle = row.bundle_sha256.as_deref().unwrap_or_default();
    match &row.bundle {
        None if row.bundle_removed_at.is_none() => Ok(Some(
            "expected the bundle (retention did not remove it), found none".into(),
        )),
        None => Ok(None),
        Some((dict, raw_len, stored_sha, data)) => {
            if stored_sha.as_slice() != chained_bundle {
                return Ok(Some(format!(
                    "expected the bundle's stored hash to be {}, found {}",
                    short(chained_bundle),
                    short(stored_sha)
                )));
            }
            let json = match blob(conn, blobs, *dict).await {
                Ok(reference) => codec::decompress(reference, data, *raw_len, "bundle")
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e),
            };
            match json {
                Err(e) => Ok(Some(format!("the bundle cannot be read: {e}"))),
                Ok(json) if codec::sha256(&json) != chained_bundle => Ok(Some(format!(
                    "expected the bundle to hash to {}, found {}",
                    short(chained_bundle),
                    short(&codec::sha256(&json))
                ))),
                Ok(_) => Ok(None),
            }
        }
    }
}

/// Whether the newest verified check is the target's chain head: when it is not, the checks
/// written after it are gone.
fn check_head(
    report: &TargetChain,
    chain_head: Option<&[u8]>,
    chain_head_check: Option<i64>,
    rows: &[Stored],
) -> Option<BrokenLink> {
    let head = chain_head?;
    let newest = report.head.as_ref();
    if newest.is_some_and(|(_, h)| *h == hex::encode(head)) {
        return None;
    }
    // The head may name a check retention deleted after the last one was written; that is no
    // break when no chained check of the target is left at all.
    if newest.is_none() && rows.iter().all(|r| r.record_hash.is_none()) {
        let head_kept = rows.iter().any(|r| Some(r.id) == chain_head_check);
        if !head_kept {
            return None;
        }
    }
    let (after, check_id) = match newest {
        Some((id, _)) => (format!("check {id}"), *id),
        None => ("the start of the chain".into(), 0),
    };
    Some(BrokenLink {
        check_id,
        fault: LinkFault::Missing,
        detail: format!(
            "expected the newest check to be the target's head {} (check {}), found {after} as the newest: the checks after it were deleted",
            short(head),
            chain_head_check.map_or("?".into(), |c| c.to_string())
        ),
    })
}
