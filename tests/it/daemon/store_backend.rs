//! The two databases the store suite runs against, and what its tests need of each: a fresh
//! store (a file in the run's folder, or a new database on the test PostgreSQL server from
//! `common::postgres`), a second connection for looking at rows directly, and a macro that runs
//! one test body once per backend, so the same assertions hold on SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;

use sqlx::postgres::PgPool;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};
use teewatch::config::StoreLocation;

use crate::common;

/// Which database a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// A new, empty store's location: `teewatch.db` in `dir`, or a fresh PostgreSQL database
    /// named after `label`.
    pub async fn location(self, dir: &Path, label: &str) -> StoreLocation {
        match self {
            Backend::Sqlite => StoreLocation::Sqlite(dir.join("teewatch.db")),
            Backend::Postgres => StoreLocation::Postgres {
                url: common::postgres::fresh_database(label).await,
                password: None,
            },
        }
    }
}

/// A second connection to a store's database.
#[derive(Debug, Clone)]
pub enum Raw {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Raw {
    pub async fn connect(location: &StoreLocation) -> Raw {
        match location {
            StoreLocation::Sqlite(path) => Raw::Sqlite(
                SqlitePool::connect_with(SqliteConnectOptions::new().filename(path))
                    .await
                    .unwrap(),
            ),
            StoreLocation::Postgres { url, .. } => {
                Raw::Postgres(PgPool::connect(url).await.unwrap())
            }
        }
    }

    /// One integer (or none) from a query with `$1` bound to `id` when given.
    pub async fn scalar(&self, sql: &str, id: Option<i64>) -> Option<i64> {
        match self {
            Raw::Sqlite(pool) => {
                let mut q = sqlx::query_scalar(sql);
                if let Some(id) = id {
                    q = q.bind(id);
                }
                q.fetch_optional(pool).await.unwrap()
            }
            Raw::Postgres(pool) => {
                let mut q = sqlx::query_scalar(sql);
                if let Some(id) = id {
                    q = q.bind(id);
                }
                q.fetch_optional(pool).await.unwrap()
            }
        }
    }

    /// Runs a statement with `$1` bound to `bytes` and `$2` to `id`.
    pub async fn execute_with_bytes(&self, sql: &str, bytes: &[u8], id: i64) {
        match self {
            Raw::Sqlite(pool) => {
                sqlx::query(sql)
                    .bind(bytes)
                    .bind(id)
                    .execute(pool)
                    .await
                    .unwrap();
            }
            Raw::Postgres(pool) => {
                sqlx::query(sql)
                    .bind(bytes)
                    .bind(id)
                    .execute(pool)
                    .await
                    .unwrap();
            }
        }
    }

    /// The number of rows in every table of the schema (the 13 tables both dialects have).
    pub async fn row_counts(&self) -> BTreeMap<String, i64> {
        let tables: Vec<String> = match self {
            Raw::Sqlite(pool) => sqlx::query_scalar(
                "SELECT name FROM sqlite_master WHERE type = 'table'
                 AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_sqlx%'",
            )
            .fetch_all(pool)
            .await
            .unwrap(),
            Raw::Postgres(pool) => sqlx::query_scalar(
                "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'
                 AND tablename NOT LIKE '\\_sqlx%'",
            )
            .fetch_all(pool)
            .await
            .unwrap(),
        };
        // PostgreSQL also holds the fleet's two tables (migrations/postgres/0005_fleet.sql).
        let expected = match self {
            Raw::Sqlite(_) => 13,
            Raw::Postgres(_) => 15,
        };
        assert_eq!(tables.len(), expected, "{tables:?}");
        let mut counts = BTreeMap::new();
        for table in tables {
            let n = self
                .scalar(&format!("SELECT COUNT(*) FROM {table}"), None)
                .await
                .unwrap();
            counts.insert(table, n);
        }
        counts
    }
}

/// Runs `async fn $name(backend: Backend)` as two tests, `$name::sqlite` and `$name::postgres`.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use super::store_backend::Backend;

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name(Backend::Sqlite).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name(Backend::Postgres).await
                }
            }
        )*
    };
}
pub(crate) use on_both;
