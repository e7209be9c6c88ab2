//! An online, consistent copy of the live store, and the check that the copy is whole.
//!
//! A file copy of a SQLite database in WAL mode misses what the write-ahead log still holds and
//! can catch a page mid-write. `VACUUM INTO` writes a consistent snapshot of the database as one
//! read transaction sees it, while the daemon keeps writing. The copy is then opened read-only,
//! checked with `PRAGMA integrity_check` and its history's hash chain (`chain_verify.rs`), and
//! summarised (schema version, checks, newest check, targets whose chain is broken), so a backup
//! that cannot be restored, or that holds a tampered history, is reported when it is made, not
//! when it is needed.

use std::path::{Path, PathBuf};

use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

use super::{Pool, Store, StoreError};

/// What a finished backup holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSummary {
    pub path: PathBuf,
    pub bytes: u64,
    /// The newest migration applied to the copy.
    pub schema_version: i64,
    pub checks: i64,
    /// `started_at` of the newest check in the copy.
    pub newest_check: Option<chrono::DateTime<chrono::Utc>>,
    /// Each target whose hash chain is broken in the copy, with its first broken link; `None`
    /// for a copy from before the chain (schema older than migration 3).
    pub chain_broken: Option<Vec<(String, super::BrokenLink)>>,
}

impl Store {
    /// Writes a consistent copy of the store to `out`, which must not exist, and checks it.
    pub async fn backup_to(&self, out: &Path) -> Result<BackupSummary, StoreError> {
        let pool = match &self.pool {
            Pool::Sqlite(pool) => pool,
            Pool::Postgres(_) => return Err(StoreError::BackupPostgres(self.describe())),
        };
        if out.exists() {
            return Err(StoreError::BackupExists(out.to_path_buf()));
        }
        let target = out.to_str().ok_or_else(|| StoreError::Backup {
            path: out.to_path_buf(),
            reason: "the path is not valid unicode".into(),
        })?;
        sqlx::query("VACUUM INTO ?1")
            .bind(target)
            .execute(pool)
            .await
            .map_err(|e| StoreError::Backup {
                path: out.to_path_buf(),
                reason: e.to_string(),
            })?;
        check_copy(out).await
    }
}

/// The migration that added the hash chain.
const CHAIN_SCHEMA: i64 = 3;

/// Opens a copy read-only and checks that it is whole and readable, and its history chain.
pub async fn check_copy(path: &Path) -> Result<BackupSummary, StoreError> {
    let failed = |reason: String| StoreError::Backup {
        path: path.to_path_buf(),
        reason,
    };
    let options = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .create_if_missing(false);
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .map_err(|e| failed(format!("cannot open the copy: {e}")))?;
    let result = async {
        let integrity: String = sqlx::query("PRAGMA integrity_check")
            .fetch_one(&pool)
            .await?
            .try_get(0)?;
        if integrity != "ok" {
            return Ok(Err(format!(
                "integrity_check: expected ok, found {integrity}"
            )));
        }
        let schema_version: i64 =
            sqlx::query("SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success")
                .fetch_one(&pool)
                .await?
                .try_get(0)?;
        let row = sqlx::query("SELECT COUNT(*), MAX(started_at) FROM checks")
            .fetch_one(&pool)
            .await?;
        let checks: i64 = row.try_get(0)?;
        let newest: Option<i64> = row.try_get(1)?;
        Ok::<_, sqlx::Error>(Ok((schema_version, checks, newest)))
    }
    .await;
    let chain = match &result {
        Ok(Ok((version, _, _))) if *version >= CHAIN_SCHEMA => {
            let copy = Store {
                pool: Pool::Sqlite(pool.clone()),
                shown: path.display().to_string(),
            };
            match copy.verify_chain(None, None).await {
                Ok(chains) => Ok(Some(
                    chains
                        .into_iter()
                        .filter_map(|c| c.broken.map(|b| (c.target, b)))
                        .collect(),
                )),
                Err(e) => Err(format!("verifying the history chain: {e}")),
            }
        }
        _ => Ok(None),
    };
    pool.close().await;
    let (schema_version, checks, newest) =
        result.map_err(|e| failed(e.to_string()))?.map_err(failed)?;
    let chain_broken = chain.map_err(failed)?;
    let bytes = std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|e| failed(e.to_string()))?;
    Ok(BackupSummary {
        path: path.to_path_buf(),
        bytes,
        schema_version,
        checks,
        newest_check: newest.map(chrono::DateTime::from_timestamp_nanos),
        chain_broken,
    })
}
