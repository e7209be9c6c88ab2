//! The store: every check's verdict, measurements, drift events and evidence bundle in one
//! SQLite file (the default) or a PostgreSQL database shared by a fleet of instances, through
//! sqlx, so that history, drift state and metrics survive restarts and any stored verdict can be
//! re-derived from its bundle.
//!
//! Only this module talks to the database. One check is written in one transaction
//! (`write.rs`); reads rebuild what the daemon and the `history` command need (`read.rs`);
//! retention drops old verdicts and most bundles (`retention.rs`); accepted drift is recorded
//! and read in `acceptance.rs`. Every check is linked into its target's hash chain
//! (`chain.rs`), which `chain_verify.rs` recomputes for `teewatch history verify`. Bundles and verdicts are
//! compressed against per-target reference documents (`codec.rs`), which is what makes a check
//! of a one-GPU target cost a couple of kilobytes instead of the 60 KB of its bundle. The schema
//! is in `migrations/sqlite/` and `migrations/postgres/` and explained in `docs/store.md`; the
//! write of a check on PostgreSQL, where several instances may write one target at once, is in
//! `write_pg.rs`.

mod acceptance;
mod backup;
mod chain;
mod chain_verify;
mod codec;
mod read;
mod retention;
mod write;
mod write_pg;

pub use acceptance::{AcceptanceRow, AcceptedByTarget, AckOutcome, AckRequest};
pub use backup::{BackupSummary, check_copy};
pub use chain_verify::{BrokenLink, LinkFault, TargetChain};
pub use read::REMOVED_BY_RETENTION;
pub use write::Recorded;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::config::{ApiKeySource, StoreLocation};
use crate::drift::{DriftEvent, Measurement};
use crate::verify::{Check, State};

/// How long a statement waits for another connection's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections in the pool: one writer at a time is all SQLite allows, the others serve reads
/// (the HTTP status page, the metrics rebuild) while a check is written.
const MAX_CONNECTIONS: u32 = 4;

/// How long the server lets a session sit idle inside a transaction before ending it (see
/// `connect_postgres`): far above the milliseconds between a check's statements, far below the
/// interval in which a peer must take a frozen instance's targets over.
const IDLE_IN_TRANSACTION: &str = "10s";

/// Connections to a PostgreSQL server: checks of different targets are written in parallel
/// there (each holds its target's row lock only), so more of them than SQLite's single writer.
const PG_MAX_CONNECTIONS: u32 = 8;

/// How long a statement waits for a free PostgreSQL connection before failing.
const PG_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the store {store}: {source}")]
    Open {
        store: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot read the password of the store {store}: {reason}")]
    Password { store: String, reason: String },
    #[error("no store at {} (the daemon creates it when it starts)", .0.display())]
    NoDatabase(PathBuf),
    #[error("cannot migrate the store: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("store query failed: {0}")]
    Sql(#[from] sqlx::Error),
    #[error(
        "the check of slot {slot_at} was not stored: its claim is now {holder}'s, which took the slot over after this instance's lease ran out"
    )]
    ClaimTakenOver { slot_at: i64, holder: String },
    #[error("no check with id {0} in the store")]
    NoSuchCheck(i64),
    #[error("check {check} has no stored bundle: {reason}")]
    BundleMissing { check: i64, reason: String },
    #[error("the store holds invalid data: {0}")]
    Corrupt(String),
    #[error("cannot encode {what} as JSON: {source}")]
    Encode {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("zstd: {0}")]
    Compression(#[source] std::io::Error),
    #[error("time {0} is outside what the store can represent (1677 to 2262)")]
    TimeOutOfRange(String),
    #[error(
        "{store} was written by a newer teewatch (schema migration {version} is unknown to this version): run that version, or restore the backup taken before the upgrade (docs/store.md)"
    )]
    NewerSchema { store: String, version: i64 },
    #[error(
        "teewatch backup copies a SQLite store; {0} is a PostgreSQL database: back it up with the server's own tools (pg_dump, or base backups with WAL archiving; docs/store.md)"
    )]
    BackupPostgres(String),
    #[error("{} exists: a backup is written to a new file, never over another", .0.display())]
    BackupExists(PathBuf),
    #[error("backup {}: {reason}", path.display())]
    Backup { path: PathBuf, reason: String },
}

/// What retention keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// Checks (and everything recorded with them) older than this are deleted.
    pub verdicts_for: Duration,
    /// The bundles of this many most recent checks per target are kept whatever their state.
    pub keep_last_bundles: usize,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            verdicts_for: Duration::from_secs(90 * 24 * 3600),
            keep_last_bundles: 10,
        }
    }
}

/// What one retention pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionReport {
    pub checks_deleted: u64,
    /// Bundles removed, with their checks or on their own.
    pub bundles_deleted: u64,
    /// Reference blobs no longer used by anything.
    pub blobs_deleted: u64,
}

/// Which checks or drift events to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryFilter {
    pub target: Option<String>,
    /// Only those at or after this instant (a check's `started_at`, an event's `at`).
    pub since: Option<DateTime<Utc>>,
    /// At most this many, newest first.
    pub limit: Option<usize>,
}

/// One check as the history lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckRow {
    pub id: i64,
    pub target: String,
    pub scheduled_at: DateTime<Utc>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub state: State,
    pub attestation_format: String,
    /// The checks that did not pass, in verdict order.
    pub failing: Vec<Check>,
    pub has_bundle: bool,
    pub drift_events: usize,
    /// The instance that ran the check ('' for checks stored before migration 0004).
    pub instance: String,
    /// That instance's vantage point ('' in shard mode).
    pub vantage: String,
}

/// One stored drift event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriftRow {
    pub id: i64,
    pub check_id: i64,
    pub target: String,
    pub event: DriftEvent,
}

/// What the metrics need to be rebuilt for one target after a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatestCheck {
    pub target: String,
    pub check_id: i64,
    /// The schedule slot the check belonged to.
    pub scheduled_at: DateTime<Utc>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub state: State,
    pub checks: Vec<Check>,
    pub measurements: Vec<Measurement>,
    /// The TDX TCB status the verdict observed first, if any.
    pub tcb_status: Option<String>,
    /// The format of the response the verdict judged (`Verdict::response_format`).
    pub attestation_format: Option<crate::verify::AttestationFormat>,
    /// The `dangerous_*` test roots the verdict was judged under (`Verdict::trust`), so that a
    /// restart under other roots still says so.
    pub trust: Vec<String>,
    /// When the last passing check of the target (among those retained) finished.
    pub last_success_at: Option<DateTime<Utc>>,
    /// `finished_at - started_at`.
    pub duration: Duration,
    /// The instance that ran the check ('' for checks stored before migration 0004).
    pub instance: String,
    /// That instance's vantage point ('' in shard mode).
    pub vantage: String,
}

/// The store: a SQLite file or a PostgreSQL database. Cloning shares the connection pool.
#[derive(Debug, Clone)]
pub struct Store {
    pool: Pool,
    /// The store as messages name it (a file, or a URL without its password).
    shown: String,
}

/// The connection pool of one backend. Most of the store is written once for both: the SQL they
/// share uses `$N` placeholders, which both sqlx drivers read, and [`on_pool!`] expands a body
/// once per backend; what differs (the write of a check, sizes, backups) is kept side by side.
#[derive(Debug, Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the store's pool, whichever backend it is (the body is
/// compiled once for each, so its queries must suit both dialects).
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.pool {
            $crate::store::Pool::Sqlite($pool) => $body,
            $crate::store::Pool::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

impl Store {
    /// Opens the SQLite store at `path`, creating the file if it does not exist, and brings its
    /// schema up to date.
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        Store::connect(path, true).await
    }

    /// Opens an existing SQLite store (for reading it with `teewatch history`): a missing file
    /// is `NoDatabase`, never silently created. Its schema is still brought up to date.
    pub async fn open_existing(path: &Path) -> Result<Store, StoreError> {
        if !path.exists() {
            return Err(StoreError::NoDatabase(path.to_path_buf()));
        }
        Store::connect(path, false).await
    }

    /// Opens the store `[daemon] db` names: a SQLite file (created when missing) or a
    /// PostgreSQL database (which must exist; its schema is created or brought up to date).
    pub async fn open_location(location: &StoreLocation) -> Result<Store, StoreError> {
        match location {
            StoreLocation::Sqlite(path) => Store::open(path).await,
            StoreLocation::Postgres { url, password } => {
                Store::connect_postgres(url, password.as_ref()).await
            }
        }
    }

    /// [`Store::open_location`] for reading: a missing SQLite file is `NoDatabase`.
    pub async fn open_existing_location(location: &StoreLocation) -> Result<Store, StoreError> {
        match location {
            StoreLocation::Sqlite(path) => Store::open_existing(path).await,
            StoreLocation::Postgres { .. } => Store::open_location(location).await,
        }
    }

    /// The PostgreSQL pool, for the fleet's own tables (`fleet/`); `None` on SQLite.
    pub fn postgres_pool(&self) -> Option<&PgPool> {
        match &self.pool {
            Pool::Postgres(pool) => Some(pool),
            Pool::Sqlite(_) => None,
        }
    }

    /// The store as messages name it: its file, or its URL without a password.
    pub fn describe(&self) -> String {
        self.shown.clone()
    }

    /// Whether the store is a PostgreSQL database.
    pub fn is_postgres(&self) -> bool {
        self.postgres_pool().is_some()
    }

    async fn connect(path: &Path, create: bool) -> Result<Store, StoreError> {
        let open_error = |source| StoreError::Open {
            store: path.display().to_string(),
            source,
        };
        // `filename` takes the path as it is (no URL parsing), so any file name works.
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(create)
            // WAL lets readers (status page, metrics) run while a check is written; NORMAL
            // synchronous is durable across process crashes, which is what a monitor needs.
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            // A local file does not go stale the way a network connection does; pinging it on
            // every acquire was one more round trip to the SQLite worker thread per check.
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .map_err(open_error)?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&pool)
            .await
            .map_err(|e| migrate_error(e, &path.display().to_string()))?;
        Ok(Store {
            pool: Pool::Sqlite(pool),
            shown: path.display().to_string(),
        })
    }

    async fn connect_postgres(
        url: &str,
        password: Option<&ApiKeySource>,
    ) -> Result<Store, StoreError> {
        let shown = crate::config::db_display_url(url);
        let open_error = |source| StoreError::Open {
            store: shown.clone(),
            source,
        };
        let mut options = PgConnectOptions::from_str(url).map_err(open_error)?;
        if let Some(source) = password {
            let secret = source.resolve().map_err(|e| StoreError::Password {
                store: shown.clone(),
                reason: e.to_string(),
            })?;
            options = options.password(&secret);
        }
        // A transaction of teewatch's never waits between its statements for more than a
        // moment. One that does belongs to a frozen (SIGSTOPped) or stalled instance, whose
        // row locks would hold up the peer taking its targets over: the server ends such a
        // session after IDLE_IN_TRANSACTION, releasing its locks (the frozen instance's check
        // then fails to commit and is not stored, as when it is killed).
        options = options
            .application_name("teewatch")
            .options([("idle_in_transaction_session_timeout", IDLE_IN_TRANSACTION)]);
        let pool = PgPoolOptions::new()
            .max_connections(PG_MAX_CONNECTIONS)
            .acquire_timeout(PG_ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(open_error)?;
        sqlx::migrate!("./migrations/postgres")
            .run(&pool)
            .await
            .map_err(|e| migrate_error(e, &shown))?;
        Ok(Store {
            pool: Pool::Postgres(pool),
            shown,
        })
    }

    /// Closes every connection, waiting for those in use to be returned.
    pub async fn close(self) {
        on_pool!(self, pool => pool.close().await)
    }

    /// Whether the database answers (for `/readyz`).
    pub async fn ping(&self) -> bool {
        on_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await.is_ok())
    }

    /// The size of the database in bytes. On SQLite, `page_count * page_size` after moving the
    /// write-ahead log into it, so that it counts everything written so far; on PostgreSQL,
    /// `pg_database_size` of the database.
    pub async fn size_bytes(&self) -> Result<u64, StoreError> {
        let bytes = match &self.pool {
            Pool::Sqlite(pool) => {
                let mut conn = pool.acquire().await?;
                sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                    .execute(&mut *conn)
                    .await?;
                let pages: i64 = sqlx::query_scalar("PRAGMA page_count")
                    .fetch_one(&mut *conn)
                    .await?;
                let page_size: i64 = sqlx::query_scalar("PRAGMA page_size")
                    .fetch_one(&mut *conn)
                    .await?;
                pages.saturating_mul(page_size)
            }
            Pool::Postgres(pool) => {
                sqlx::query_scalar("SELECT pg_database_size(current_database())")
                    .fetch_one(pool)
                    .await?
            }
        };
        u64::try_from(bytes).map_err(|_| StoreError::Corrupt(format!("negative size {bytes}")))
    }
}

/// A migration error, with a newer schema (a rollback to an older binary) told apart: it must
/// not touch that schema.
fn migrate_error(error: sqlx::migrate::MigrateError, store: &str) -> StoreError {
    match error {
        sqlx::migrate::MigrateError::VersionMissing(version) => StoreError::NewerSchema {
            store: store.to_string(),
            version,
        },
        other => StoreError::Migrate(other),
    }
}

/// A state as stored in `checks.state` and `check_results.state`.
fn state_from_name(name: &str) -> Result<State, StoreError> {
    match name {
        "pass" => Ok(State::Pass),
        "unknown" => Ok(State::Unknown),
        "fail" => Ok(State::Fail),
        other => Err(StoreError::Corrupt(format!("unknown state {other:?}"))),
    }
}
