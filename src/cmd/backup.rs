//! `teewatch backup`: an online, consistent copy of the store, checked before it is trusted.
//!
//! Safe while the daemon runs (SQLite's `VACUUM INTO` reads one consistent snapshot, WAL
//! included); the copy must be a new file, and it is opened read-only afterwards and checked
//! (`PRAGMA integrity_check`, schema version, checks held), so a backup that could not be
//! restored is reported now. Restoring is copying it over the database while the daemon is
//! stopped (`docs/store.md`).

use std::path::Path;

use anyhow::Context;

use teewatch::exit;
use teewatch::store::{Store, StoreError};

use crate::DbSource;

pub fn backup(source: &DbSource, out: &Path) -> anyhow::Result<u8> {
    let db = match teewatch::daemon::history_db(source.db.as_deref(), source.config.as_deref()) {
        Ok(db) => db,
        Err(e) => {
            eprint!("{e}");
            return Ok(exit::CONFIG);
        }
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let store = match runtime.block_on(Store::open_existing(&db)) {
        Ok(store) => store,
        Err(e) => {
            eprintln!("teewatch: {}: {e}", db.display());
            return Ok(exit::DATA_ERR);
        }
    };
    let result = runtime.block_on(store.backup_to(out));
    runtime.block_on(store.close());
    match result {
        Ok(summary) => {
            println!(
                "{}: {} bytes, schema {}, {} check(s), newest {}; integrity ok",
                summary.path.display(),
                summary.bytes,
                summary.schema_version,
                summary.checks,
                summary
                    .newest_check
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                    .unwrap_or_else(|| "none".into())
            );
            Ok(exit::PASS)
        }
        Err(e @ StoreError::BackupExists(_)) => {
            eprintln!("teewatch: {e}");
            Ok(exit::CANT_CREATE)
        }
        Err(e) => {
            eprintln!("teewatch: {e}");
            Ok(exit::SOFTWARE)
        }
    }
}
