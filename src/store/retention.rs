//! Retention: what the store forgets, so that a daemon running for years keeps a bounded file.
//!
//! Verdicts are kept for a period (90 days by default) with everything recorded alongside them.
//! Full bundles are kept only where someone will want to re-verify or debug: failed checks,
//! checks that raised drift, and the last few checks of each target. Reference blobs that nothing
//! uses any more go last. The measurement history is never pruned, since drift ("a value never
//! seen before") is judged against it.
//!
//! Deleting checks keeps their targets' hash chains checkable (`chain.rs`): before a check is
//! deleted, the next kept check of its target is given a gap row with the deleted check's id and
//! record hash, the link it names. A check with no kept successor stays named by its target's
//! chain head, and the next check written records that gap itself (`write.rs`). A dropped
//! bundle leaves its hash in `checks.bundle_sha256`.

use chrono::{DateTime, Utc};

use super::codec::{int, to_ns};
use super::{Retention, RetentionReport, Store, StoreError, on_pool};

impl Store {
    /// Applies `retention` as of `now`, in one transaction, and reports what it removed.
    pub async fn apply_retention(
        &self,
        now: DateTime<Utc>,
        retention: &Retention,
    ) -> Result<RetentionReport, StoreError> {
        on_pool!(self, pool => {
            let keep_for =
                chrono::Duration::from_std(retention.verdicts_for).unwrap_or(chrono::Duration::MAX);
            // A period reaching before what the store can represent keeps everything.
            let cutoff = now
                .checked_sub_signed(keep_for)
                .and_then(|t| t.timestamp_nanos_opt())
                .unwrap_or(i64::MIN);
            let now_ns = to_ns(now)?;
            let keep_last = int(retention.keep_last_bundles);

            let mut tx = pool.begin().await?;
            // The links across the checks about to go: each deleted chained check whose next check
            // of the target (in chain order) stays. The first statement writes, so the transaction
            // holds the write lock from here on.
            sqlx::query(
                "INSERT INTO chain_gaps (check_id, prev_check, prev_hash, noted_at)
                 SELECT s.id, d.id, d.record_hash, $2
                 FROM checks d
                 JOIN checks s ON s.id = (SELECT MIN(n.id) FROM checks n
                                          WHERE n.target_id = d.target_id AND n.id > d.id)
                 WHERE d.started_at < $1 AND s.started_at >= $1 AND d.record_hash IS NOT NULL
                 ON CONFLICT (check_id) DO UPDATE SET prev_check = excluded.prev_check,
                     prev_hash = excluded.prev_hash, noted_at = excluded.noted_at",
            )
            .bind(cutoff)
            .bind(now_ns)
            .execute(&mut *tx)
            .await?;
            // Old checks go with their bundles; counting those first, since the cascade does not
            // report what it deleted.
            let old_bundles = sqlx::query(
                "DELETE FROM bundles
                 WHERE check_id IN (SELECT id FROM checks WHERE started_at < $1)",
            )
            .bind(cutoff)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            // Results, phases, measurements and drift events follow by ON DELETE CASCADE.
            let checks_deleted = sqlx::query("DELETE FROM checks WHERE started_at < $1")
                .bind(cutoff)
                .execute(&mut *tx)
                .await?
                .rows_affected();

            // An acceptance is later than the drift event it accepts, so one older than the cutoff
            // accepts only events deleted above.
            sqlx::query("DELETE FROM drift_acceptances WHERE at < $1")
                .bind(cutoff)
                .execute(&mut *tx)
                .await?;

            // Among the remaining checks, the bundles nobody needs: not failed, no drift, and not
            // among the target's `keep_last` newest checks.
            sqlx::query(
                "UPDATE checks SET bundle_removed_at = $1
                 WHERE id IN (
                     SELECT r.id FROM (
                         SELECT id, state, ROW_NUMBER() OVER (
                             PARTITION BY target_id ORDER BY started_at DESC, id DESC) AS newest
                         FROM checks) r
                     JOIN bundles b ON b.check_id = r.id
                     WHERE r.newest > $2 AND r.state <> 'fail'
                       AND NOT EXISTS (SELECT 1 FROM drift_events d WHERE d.check_id = r.id))",
            )
            .bind(now_ns)
            .bind(keep_last)
            .execute(&mut *tx)
            .await?;
            let dropped_bundles = sqlx::query(
                "DELETE FROM bundles
                 WHERE check_id IN (SELECT id FROM checks WHERE bundle_removed_at IS NOT NULL)",
            )
            .execute(&mut *tx)
            .await?
            .rows_affected();

            // Reference blobs still used by a bundle, a verdict or a target's current reference
            // stay; the others are unreachable.
            let blobs_deleted = sqlx::query(
                "DELETE FROM blobs
                 WHERE id NOT IN (SELECT dict FROM bundles)
                   AND id NOT IN (SELECT verdict_dict FROM checks)
                   AND id NOT IN (SELECT blob_id FROM target_dicts)",
            )
            .execute(&mut *tx)
            .await?
            .rows_affected();

            tx.commit().await?;
            Ok(RetentionReport {
                checks_deleted,
                bundles_deleted: old_bundles + dropped_bundles,
                blobs_deleted,
            })
        })
    }
}
