//! What only a PostgreSQL store has to get right (issue 22): several instances writing checks
//! of one target at once through their own connections keep one intact hash chain and
//! consistent compression references; a schema from a newer teewatch is refused; a password
//! comes only from its source; `teewatch backup` refuses and names `pg_dump`; and `teewatch
//! history` and `history verify` read a PostgreSQL store given by URL. The behaviour both
//! backends share is tested on both in `store.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::process::Command;
use std::sync::Arc;

use common::sim_run::start;
use teewatch::config::{ApiKeySource, StoreLocation};
use teewatch::drift::TargetHistory;
use teewatch::store::{HistoryFilter, Retention, Store, StoreError};

use super::store::{at, check, minutes, one_gpu};
use super::store_backend::{Backend, Raw};
use crate::common;

const BIN: &str = env!("CARGO_BIN_EXE_teewatch");

/// Writers, each with its own store (its own pool, as separate instances have), and checks
/// each writes.
const WRITERS: usize = 4;
const PER_WRITER: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_of_one_target_keep_one_intact_chain() {
    let run = start("pg-concurrent", one_gpu()).await;
    let location = Backend::Postgres.location(&run.dir, "pg-concurrent").await;
    // The checks, made first (real bundles from the simulator), then written all at once.
    let t0 = at("2026-05-01T00:00:00Z");
    let mut history = TargetHistory::default();
    let mut records = Vec::new();
    for i in 0..WRITERS * PER_WRITER {
        let mut rec = check(&run, "shared", t0 + minutes(i), &mut history).await;
        rec.instance = format!("instance-{}", i % WRITERS);
        rec.vantage = format!("vantage-{}", i % WRITERS);
        records.push(rec);
    }
    let records = Arc::new(records);
    let barrier = Arc::new(tokio::sync::Barrier::new(WRITERS));
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let (location, records, barrier) = (location.clone(), records.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            let store = Store::open_location(&location).await.unwrap();
            barrier.wait().await;
            let mut ids = Vec::new();
            for rec in records.iter().skip(w).step_by(WRITERS) {
                ids.push((store.record(rec).await.unwrap(), rec.bundle.clone()));
            }
            store.close().await;
            ids
        }));
    }
    let mut written = Vec::new();
    for task in tasks {
        written.extend(task.await.unwrap());
    }
    assert_eq!(written.len(), WRITERS * PER_WRITER);

    let store = Store::open_location(&location).await.unwrap();
    let chains = store.verify_chain(None, None).await.unwrap();
    assert_eq!(chains.len(), 1, "{chains:?}");
    assert_eq!(chains[0].broken, None, "{chains:?}");
    assert_eq!(chains[0].verified, (WRITERS * PER_WRITER) as u64);
    // Every bundle comes back exactly, whichever reference it was compressed against.
    for (id, bundle) in &written {
        assert_eq!(&store.export_bundle(*id).await.unwrap(), bundle);
    }
    // Each check names the instance and vantage point that wrote it.
    let rows = store.history(&HistoryFilter::default()).await.unwrap();
    let mut instances: Vec<&str> = rows.iter().map(|r| r.instance.as_str()).collect();
    instances.sort_unstable();
    instances.dedup();
    assert_eq!(instances.len(), WRITERS, "{instances:?}");
    assert!(
        rows.iter()
            .all(|r| r.vantage.replace("vantage", "instance") == r.instance)
    );
    let latest = store.latest_checks().await.unwrap();
    assert_eq!(latest.len(), 1);
    assert!(latest[0].instance.starts_with("instance-"));

    // Retention deleting the older half leaves a chain that still verifies, across its gap.
    let now = t0 + minutes(WRITERS * PER_WRITER / 2) + chrono::Duration::days(90);
    let report = store
        .apply_retention(now, &Retention::default())
        .await
        .unwrap();
    assert!(report.checks_deleted > 0, "{report:?}");
    let chains = store.verify_chain(None, None).await.unwrap();
    assert_eq!(chains[0].broken, None, "{chains:?}");
    assert_eq!(
        chains[0].verified + report.checks_deleted,
        (WRITERS * PER_WRITER) as u64
    );

    // An edited verdict is found at its link, as on SQLite.
    let raw = Raw::connect(&location).await;
    let newest = rows[0].id;
    raw.execute_with_bytes(
        "UPDATE checks SET verdict_sha256 = $1 WHERE id = $2",
        &[7u8; 32],
        newest,
    )
    .await;
    let chains = store.verify_chain(None, None).await.unwrap();
    let broken = chains[0].broken.as_ref().unwrap();
    assert_eq!(broken.check_id, newest);
    assert_eq!(broken.fault.as_str(), "edited");
    store.close().await;
}

#[tokio::test]
async fn a_schema_from_a_newer_teewatch_is_refused() {
    let location = Backend::Postgres
        .location(&std::env::temp_dir(), "pg-newer-schema")
        .await;
    Store::open_location(&location).await.unwrap().close().await;
    let Raw::Postgres(pool) = Raw::connect(&location).await else {
        unreachable!()
    };
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (9999, 'from the future', true, '\\x00'::bytea, 0)",
    )
    .execute(&pool)
    .await
    .unwrap();
    match Store::open_location(&location).await {
        Err(e @ StoreError::NewerSchema { version: 9999, .. }) => {
            assert!(e.to_string().contains("newer teewatch"), "{e}")
        }
        other => panic!("expected the newer schema refused, found {other:?}"),
    }
}

#[tokio::test]
async fn the_password_comes_only_from_its_source() {
    let StoreLocation::Postgres { url, .. } = Backend::Postgres
        .location(&std::env::temp_dir(), "pg-password")
        .await
    else {
        unreachable!()
    };
    let missing = StoreLocation::Postgres {
        url: url.clone(),
        password: Some(ApiKeySource::Env("TEEWATCH_TEST_NO_SUCH_PASSWORD".into())),
    };
    match Store::open_location(&missing).await {
        Err(e @ StoreError::Password { .. }) => assert!(
            e.to_string()
                .contains("environment variable TEEWATCH_TEST_NO_SUCH_PASSWORD is not set"),
            "{e}"
        ),
        other => panic!("expected the password source's error, found {other:?}"),
    }
}

/// A frozen instance's open transaction must not hold its target's row lock for ever (a peer
/// taking the target over would wait on it): the store's sessions are ended by the server after
/// ten seconds idle inside a transaction.
#[tokio::test]
async fn the_stores_sessions_are_ended_when_idle_inside_a_transaction() {
    let location = Backend::Postgres
        .location(&std::env::temp_dir(), "pg-idle-in-transaction")
        .await;
    let store = Store::open_location(&location).await.unwrap();
    let pool = store.postgres_pool().unwrap();
    let setting: String = sqlx::query_scalar("SHOW idle_in_transaction_session_timeout")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(setting, "10s");
    // A connection of another client keeps the server's default (none).
    let Raw::Postgres(raw) = Raw::connect(&location).await else {
        unreachable!()
    };
    let other: String = sqlx::query_scalar("SHOW idle_in_transaction_session_timeout")
        .fetch_one(&raw)
        .await
        .unwrap();
    assert_eq!(other, "0");
    store.close().await;
}

/// Runs the binary off the async runtime.
async fn teewatch(args: &[&str]) -> std::process::Output {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || Command::new(BIN).args(&args).output().unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_reads_a_postgres_store_and_backup_names_pg_dump() {
    let run = start("pg-history-cli", one_gpu()).await;
    let location = Backend::Postgres.location(&run.dir, "pg-history-cli").await;
    let StoreLocation::Postgres { url, .. } = &location else {
        unreachable!()
    };
    let store = Store::open_location(&location).await.unwrap();
    let mut history = TargetHistory::default();
    let t0 = at("2026-05-01T00:00:00Z");
    for i in 0..3 {
        store
            .record(&check(&run, "m", t0 + minutes(i), &mut history).await)
            .await
            .unwrap();
    }
    store.close().await;

    let out = teewatch(&["history", "--db", url, "--json"]).await;
    assert!(out.status.success(), "{out:?}");
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        listed["checks"].as_array().map(Vec::len),
        Some(3),
        "{listed}"
    );
    assert_eq!(listed["checks"][0]["instance"], "test-instance", "{listed}");

    let out = teewatch(&["history", "verify", "--db", url]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(text.contains("m: intact, 3 checks"), "{text}");

    let copy = run.dir.join("backup.db");
    let out = teewatch(&["backup", "--db", url, "--out", copy.to_str().unwrap()]).await;
    let error = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    assert!(error.contains("pg_dump"), "{error}");
    assert!(!copy.exists());

    // A password written into the URL is refused before anything connects, naming the keys.
    let with_password = url.replacen("://", "://teewatch:s3cret@", 1);
    let out = teewatch(&["history", "--db", &with_password]).await;
    let error = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{out:?}");
    assert!(error.contains("db_password_env"), "{error}");
    assert!(!error.contains("s3cret"), "{error}");
}
