//! Accepted drift: recording that a drifted value of a target was accepted, by the pins in force
//! or by someone's acknowledgement, and reading those acceptances back for the daemon's drift
//! flags and for `teewatch history`.
//!
//! An acknowledgement is one `INSERT … SELECT` over the target's drift events: a single write
//! statement, so it is safe against the live daemon's database (WAL; it waits for the daemon's
//! write lock like any writer) and accepts exactly the drifted values that are not accepted yet.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::codec::{from_ns, to_ns};
use super::{HistoryFilter, Store, StoreError, on_pool, read};
use crate::drift::{Acceptance, AcceptedBy};

/// Target → (field, value) → when it was last accepted.
pub type AcceptedByTarget = BTreeMap<String, BTreeMap<(String, String), DateTime<Utc>>>;

/// One stored acceptance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptanceRow {
    pub id: i64,
    pub target: String,
    pub acceptance: Acceptance,
}

/// An acknowledgement of a target's drifted field after review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckRequest {
    pub target: String,
    pub field: String,
    /// Only this drifted value; every drifted value of the field not accepted yet when `None`.
    pub value: Option<String>,
    pub by: Option<String>,
    pub note: Option<String>,
    pub at: DateTime<Utc>,
}

/// What an acknowledgement did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckOutcome {
    /// These drifted values are now accepted.
    Accepted(Vec<AcceptanceRow>),
    /// Every drifted value asked about was accepted already; the latest acceptance of each.
    AlreadyAccepted(Vec<AcceptanceRow>),
    /// Nothing the request names drifted; why, naming what did.
    NothingToAccept(String),
}

impl Store {
    /// Records acceptances of drifted values of `target`, in one transaction.
    pub async fn record_acceptances(
        &self,
        target: &str,
        acceptances: &[Acceptance],
    ) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            if acceptances.is_empty() {
                return Ok(());
            }
            let mut at = Vec::with_capacity(acceptances.len());
            for a in acceptances {
                at.push(to_ns(a.at)?);
            }
            let mut tx = pool.begin().await?;
            for (a, at) in acceptances.iter().zip(at) {
                sqlx::query(
                    "INSERT INTO drift_acceptances (target_id, field, value, how, by, note, at)
                     SELECT id, $2, $3, $4, $5, $6, $7 FROM targets WHERE name = $1",
                )
                .bind(target)
                .bind(&a.field)
                .bind(&a.value)
                .bind(a.how.as_str())
                .bind(&a.by)
                .bind(&a.note)
                .bind(at)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// When each accepted value was last accepted, by target name and (field, value): of one
    /// target, or of all of them.
    pub async fn acceptances_of(
        &self,
        target: Option<&str>,
    ) -> Result<AcceptedByTarget, StoreError> {
        on_pool!(self, pool => {
            let rows: Vec<(String, String, String, i64)> = sqlx::query_as(
                "SELECT t.name, a.field, a.value, MAX(a.at)
                 FROM drift_acceptances a JOIN targets t ON t.id = a.target_id
                 WHERE $1 IS NULL OR t.name = $1 GROUP BY t.name, a.field, a.value",
            )
            .bind(target)
            .fetch_all(pool)
            .await?;
            let mut out = AcceptedByTarget::new();
            for (target, field, value, at) in rows {
                out.entry(target)
                    .or_default()
                    .insert((field, value), from_ns(at));
            }
            Ok(out)
        })
    }

    /// Acceptances matching the filter (`since` on the acceptance's `at`), newest first.
    pub async fn acceptances(
        &self,
        filter: &HistoryFilter,
    ) -> Result<Vec<AcceptanceRow>, StoreError> {
        on_pool!(self, pool => {
            let (target, since, limit) = read::filter_params(filter)?;
            let rows: Vec<AcceptanceTuple> = sqlx::query_as(
                "SELECT a.id, t.name, a.field, a.value, a.how, a.by, a.note, a.at
                 FROM drift_acceptances a JOIN targets t ON t.id = a.target_id
                 WHERE ($1 IS NULL OR t.name = $1) AND ($2 IS NULL OR a.at >= $2)
                 ORDER BY a.at DESC, a.id DESC LIMIT $3",
            )
            .bind(target)
            .bind(since)
            .bind(limit)
            .fetch_all(pool)
            .await?;
            rows.into_iter().map(acceptance_row).collect()
        })
    }

    /// Acknowledges a target's drifted field (or one drifted value of it) after review: every
    /// drifted value the request names that has no acceptance since its drift event is
    /// accepted, in one statement.
    pub async fn acknowledge(&self, request: &AckRequest) -> Result<AckOutcome, StoreError> {
        on_pool!(self, pool => {
            let at = to_ns(request.at)?;
            let inserted: Vec<i64> = sqlx::query_scalar(
                "WITH drifted AS (
                     SELECT d.target_id, d.field, d.new_value AS value, MIN(d.at) AS drifted_at
                     FROM drift_events d JOIN targets t ON t.id = d.target_id
                     WHERE t.name = $1 AND d.field = $2 AND ($3 IS NULL OR d.new_value = $3)
                     GROUP BY d.target_id, d.field, d.new_value)
                 INSERT INTO drift_acceptances (target_id, field, value, how, by, note, at)
                 SELECT target_id, field, value, 'ack', $4, $5, $6 FROM drifted
                 WHERE NOT EXISTS (
                     SELECT 1 FROM drift_acceptances a
                     WHERE a.target_id = drifted.target_id AND a.field = drifted.field
                       AND a.value = drifted.value AND a.at >= drifted.drifted_at)
                 RETURNING id",
            )
            .bind(&request.target)
            .bind(&request.field)
            .bind(&request.value)
            .bind(&request.by)
            .bind(&request.note)
            .bind(at)
            .fetch_all(pool)
            .await?;
            let ids: Vec<i64> = inserted;
            if !ids.is_empty() {
                let mut rows = Vec::with_capacity(ids.len());
                for id in ids {
                    let row: AcceptanceTuple = sqlx::query_as(
                    "SELECT a.id, t.name, a.field, a.value, a.how, a.by, a.note, a.at
                         FROM drift_acceptances a JOIN targets t ON t.id = a.target_id
                         WHERE a.id = $1",
                    )
                    .bind(id)
                    .fetch_one(pool)
                    .await?;
                    rows.push(acceptance_row(row)?);
                }
                return Ok(AckOutcome::Accepted(rows));
            }
            self.why_nothing_to_acknowledge(request).await
        })
    }

    /// Why an acknowledgement accepted nothing: the values were accepted already, or the
    /// request names no drift (saying which fields or values of the target did drift).
    async fn why_nothing_to_acknowledge(
        &self,
        request: &AckRequest,
    ) -> Result<AckOutcome, StoreError> {
        on_pool!(self, pool => {
            let known: Option<i64> = sqlx::query_scalar("SELECT id FROM targets WHERE name = $1")
                .bind(&request.target)
                .fetch_optional(pool)
                .await?;
            if known.is_none() {
                return Ok(AckOutcome::NothingToAccept(format!(
                    "no target named \"{}\" in the store",
                    request.target
                )));
            }
            let drifted: Vec<(String, String)> = sqlx::query_as(
                "SELECT DISTINCT d.field, d.new_value
                 FROM drift_events d JOIN targets t ON t.id = d.target_id
                 WHERE t.name = $1 ORDER BY d.field, d.new_value",
            )
            .bind(&request.target)
            .fetch_all(pool)
            .await?;
            let of_field: Vec<&str> = drifted
                .iter()
                .filter(|(f, _)| *f == request.field)
                .map(|(_, v)| v.as_str())
                .collect();
            if of_field.is_empty() {
                let mut fields: Vec<&str> = drifted.iter().map(|(f, _)| f.as_str()).collect();
                fields.dedup();
                return Ok(AckOutcome::NothingToAccept(format!(
                    "target \"{}\" has no drift event of {}: expected one of its drifted fields, \
                     found none of that name (drifted fields: {})",
                    request.target,
                    request.field,
                    list_or_none(&fields)
                )));
            }
            if let Some(value) = &request.value {
                if !of_field.contains(&value.as_str()) {
                    return Ok(AckOutcome::NothingToAccept(format!(
                        "{} of target \"{}\" never drifted to {value}: expected one of its drifted \
                         values ({})",
                        request.field,
                        request.target,
                        list_or_none(&of_field)
                    )));
                }
            }
            // Drifted, so accepted already: the latest acceptance of each value asked about.
            let rows: Vec<AcceptanceTuple> = sqlx::query_as(
                "SELECT a.id, t.name, a.field, a.value, a.how, a.by, a.note, a.at
                 FROM drift_acceptances a JOIN targets t ON t.id = a.target_id
                 WHERE t.name = $1 AND a.field = $2 AND ($3 IS NULL OR a.value = $3)
                   AND a.at = (SELECT MAX(b.at) FROM drift_acceptances b
                               WHERE b.target_id = a.target_id AND b.field = a.field
                                 AND b.value = a.value)
                 ORDER BY a.value",
            )
            .bind(&request.target)
            .bind(&request.field)
            .bind(&request.value)
            .fetch_all(pool)
            .await?;
            Ok(AckOutcome::AlreadyAccepted(
                rows.into_iter().map(acceptance_row).collect::<Result<_, _>>()?,
            ))
        })
    }
}

fn list_or_none(items: &[&str]) -> String {
    if items.is_empty() {
        "none".to_string()
    } else {
        items.join(", ")
    }
}

/// One `drift_acceptances` row joined with its target's name:
/// id, name, field, value, how, by, note, at.
type AcceptanceTuple = (
    i64,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    i64,
);

fn acceptance_row(row: AcceptanceTuple) -> Result<AcceptanceRow, StoreError> {
    let (id, target, field, value, how, by, note, at) = row;
    let how = AcceptedBy::from_name(&how)
        .ok_or_else(|| StoreError::Corrupt(format!("drift acceptance {id}: how {how:?}")))?;
    Ok(AcceptanceRow {
        id,
        target,
        acceptance: Acceptance {
            field,
            value,
            how,
            by,
            note,
            at: from_ns(at),
        },
    })
}
