//! `teewatch backup` against a live store: the daemon checks the simulator while the backup is
//! taken, the copy holds every check committed before it and re-exports byte-identical bundles,
//! an existing file is never written over, a restored copy brings the daemon back with its
//! history, and a store from a newer teewatch is refused by name (the rollback rule).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::daemon_run::{db_path, start_daemon};
use common::process::teewatch;
use common::sim_run::start;
use serde_json::Value;
use teewatch_sim::server::{SimOptions, model_name};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs the binary off the async runtime (the simulator and daemon serve on it).
async fn run(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || teewatch(args))
        .await
        .unwrap()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn s(path: &Path) -> String {
    path.to_str().unwrap().to_string()
}

/// The check ids `teewatch history --json` lists for a database.
async fn check_ids(db: &Path) -> Vec<i64> {
    let out = run(args(&["history", "--db", &s(db), "--json"])).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut ids: Vec<i64> = listed["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_i64().unwrap())
        .collect();
    ids.sort();
    ids
}

/// The version of the newest migration in `migrations/sqlite/` (`NNNN_name.sql`): the schema a store
/// this teewatch opened has.
fn newest_migration() -> i64 {
    std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite"))
        .unwrap()
        .filter_map(|entry| {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            name.split_once('_')?.0.parse::<i64>().ok()
        })
        .max()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_online_backup_is_consistent_restorable_and_never_overwrites() {
    let run_dir = start("backup", SimOptions::default()).await;
    let config = run_dir.dir.join("sim.toml");
    let daemon = start_daemon(&config, &run_dir.dir).await;
    let target = model_name(0);
    for _ in 0..3 {
        assert!(daemon.check_now(&target).await);
    }
    let live = db_path(&run_dir.dir);
    let before = check_ids(&live).await;
    assert!(before.len() >= 3, "{before:?}");

    // 1. Taken while the daemon runs (its WAL holds recent pages).
    let copy = run_dir.dir.join("backup.db");
    let out = run(args(&["backup", "--db", &s(&live), "--out", &s(&copy)])).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(
        said.contains("integrity ok; history chain intact"),
        "{said}"
    );
    let schema = format!(", schema {}, ", newest_migration());
    assert!(said.contains(&schema), "{said}");
    // Every check committed before the backup is in it (the daemon may have added more since).
    let copied = check_ids(&copy).await;
    assert!(
        before.iter().all(|id| copied.contains(id)),
        "{before:?} not all in {copied:?}"
    );
    assert!(
        said.contains(&format!(", {} check(s), ", copied.len())),
        "{said}"
    );
    // The copy's bundles are the live store's, byte for byte.
    let id = before[0].to_string();
    let from_live = run(args(&[
        "history",
        "export",
        "--db",
        &s(&live),
        "--check",
        &id,
    ]))
    .await;
    let from_copy = run(args(&[
        "history",
        "export",
        "--db",
        &s(&copy),
        "--check",
        &id,
    ]))
    .await;
    assert_eq!(
        from_live.status.code(),
        Some(0),
        "{}",
        text(&from_live.stderr)
    );
    assert_eq!(from_live.stdout, from_copy.stdout);

    // 2. Never written over: a second backup to the same file fails and leaves it untouched.
    let kept = std::fs::read(&copy).unwrap();
    let out = run(args(&["backup", "--db", &s(&live), "--out", &s(&copy)])).await;
    assert_eq!(out.status.code(), Some(73), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("a backup is written to a new file, never over another"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::read(&copy).unwrap(), kept);

    // 3. Restore: with the daemon stopped, the copy replaces the database (its WAL and shared
    // memory files go with the old one), and the daemon starts on it with that history.
    daemon.shutdown(Duration::from_secs(5)).await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", live.display()));
    }
    std::fs::copy(&copy, &live).unwrap();
    let daemon = start_daemon(&config, &run_dir.dir).await;
    let restored = check_ids(&live).await;
    assert_eq!(restored, copied);
    assert!(daemon.check_now(&target).await);
    assert_eq!(check_ids(&live).await.len(), copied.len() + 1);
    daemon.shutdown(Duration::from_secs(5)).await;

    // 4. Rollback: a store a newer teewatch migrated is refused by name, its schema and data left as they are.
    let newer = run_dir.dir.join("newer.db");
    std::fs::copy(&copy, &newer).unwrap();
    {
        use sqlx::ConnectOptions as _;
        let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&newer)
            .connect()
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (9999, 'from the future', 1, x'00', 0)",
        )
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let out = run(args(&["history", "--db", &s(&newer)])).await;
    assert_eq!(out.status.code(), Some(65), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains(
            "was written by a newer teewatch (schema migration 9999 is unknown to this version)"
        ),
        "{}",
        text(&out.stderr)
    );
    // No migration ran and nothing was written: the schema and the checks are as they were.
    let after = teewatch::store::check_copy(&newer).await.unwrap();
    assert_eq!(after.schema_version, 9999);
    assert_eq!(after.checks, copied.len() as i64);
}
