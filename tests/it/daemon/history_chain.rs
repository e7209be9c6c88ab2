//! The tamper-evident history: real checks of the simulator stored in a chain, then the database
//! edited with the real `sqlite3` shell as someone with write access would (a verdict, a bundle,
//! a deleted check, two checks swapped, the newest check dropped with the head rewritten), and
//! `teewatch history verify` must name the check and the kind of each break. An untouched
//! database, one after retention, and one migrated from before the chain verify clean.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::{DateTime, Utc};
use common::process::teewatch;
use common::sim_run::{Running, start};
use teewatch::record::CheckRecord;
use teewatch::store::{Retention, Store};
use teewatch::verify::{self, Bundle};
use teewatch_sim::server::{SimOptions, model_name};

/// Checks stored for target `m` (ids 1 to 6), and one for target `other` in between.
const CHECKS: usize = 6;

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

/// One real check of the simulator's model, recorded as target `name`, started at `started`.
async fn check(run: &Running, name: &str, started: DateTime<Utc>) -> CheckRecord {
    let target = run.config.target(&model_name(0)).unwrap();
    let fetched = run.fetcher.check_timed(&run.config, target).await.unwrap();
    let bundle = Bundle::from_value(fetched.bundle.clone()).unwrap();
    let verdict = verify::verify(&bundle, &target.policy, &run.config.trust_anchors());
    CheckRecord {
        target: name.to_string(),
        scheduled_at: started,
        started_at: started,
        finished_at: started + chrono::Duration::seconds(2),
        phases: fetched.phases,
        fetch_errors: CheckRecord::fetch_errors_of(&bundle),
        instance: "test-instance".into(),
        vantage: String::new(),
        claim: None,
        bundle: fetched.bundle,
        verdict,
        measurements: Vec::new(),
        drift: Vec::new(),
    }
}

/// Runs SQL on the database with the `sqlite3` shell, as an attacker with write access would.
fn sql(db: &Path, statements: &str) -> String {
    let out = Command::new(common::tool::sqlite3())
        .arg(db)
        .arg(statements)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sqlite3 {statements}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `teewatch history verify --db <db>` with `extra` arguments: exit code and standard output.
fn verify_db(db: &Path, extra: &[&str]) -> (i32, String) {
    let mut args = vec!["history", "verify", "--db", db.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = teewatch(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.is_empty(), "stderr: {stderr}");
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
    )
}

/// The line `history verify` prints for a target.
fn line_of<'a>(text: &'a str, target: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(&format!("{target}: ")))
        .unwrap_or_else(|| panic!("no line for {target} in:\n{text}"))
}

/// A copy of the database, for one tampering each.
fn copy(db: &Path, name: &str) -> PathBuf {
    let to = db.with_file_name(format!("{name}.db"));
    std::fs::copy(db, &to).unwrap();
    to
}

/// The store of `run` with six real checks of `m` (ids 1-3 and 5-7) and one of `other` (id 4),
/// closed with its log moved into the file so that a file copy holds everything.
async fn stored_chain(run: &Running) -> PathBuf {
    let db = run.dir.join("chain.db");
    let store = Store::open(&db).await.unwrap();
    let t0 = at("2026-03-01T00:00:00Z");
    for i in 0..CHECKS {
        if i == 3 {
            let other = check(run, "other", t0 + chrono::Duration::minutes(30)).await;
            store.record(&other).await.unwrap();
        }
        let rec = check(run, "m", t0 + chrono::Duration::minutes(10 * i as i64)).await;
        store.record_chained(&rec).await.unwrap();
    }
    store.size_bytes().await.unwrap();
    store.close().await;
    db
}

fn one_gpu() -> SimOptions {
    SimOptions {
        models: 1,
        nodes: 1,
        gpus: 1,
        ..SimOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn each_edit_deletion_and_reordering_is_found_at_its_link() {
    let run = start("history-chain", one_gpu()).await;
    let db = stored_chain(&run).await;
    // Target m holds checks 1, 2, 3, 5, 6, 7; other holds 4.
    assert_eq!(
        sql(&db, "SELECT group_concat(c.id) FROM checks c JOIN targets t ON t.id = c.target_id WHERE t.name = 'm' ORDER BY c.id;").trim(),
        "1,2,3,5,6,7"
    );

    // Untouched: both chains intact, and the head is the record hash the store returned last.
    let (code, text) = verify_db(&db, &[]);
    assert_eq!(code, 0, "{text}");
    assert!(
        line_of(&text, "m").starts_with("m: intact, 6 checks, head "),
        "{text}"
    );
    assert!(
        line_of(&text, "other").starts_with("other: intact, 1 check,"),
        "{text}"
    );
    let head = sql(&db, "SELECT hex(record_hash) FROM checks WHERE id = 7;")
        .trim()
        .to_lowercase();
    assert!(
        line_of(&text, "m").contains(&format!("head {head} (check 7)")),
        "{text}"
    );

    // A verdict's state changed in its column: the record no longer hashes to its stored hash.
    let edited = copy(&db, "state");
    sql(&edited, "UPDATE checks SET state = 'fail' WHERE id = 3;");
    let (code, text) = verify_db(&edited, &[]);
    assert_eq!(code, 1, "{text}");
    let line = line_of(&text, "m");
    assert!(
        line.starts_with(
            "m: broken at check 3: edited: expected the record to hash to its stored "
        ),
        "{line}"
    );
    assert!(line.ends_with("(2 checks verified before it)"), "{line}");
    assert!(
        line_of(&text, "other").starts_with("other: intact"),
        "{text}"
    );
    // A backup of it says so too (and is still made: it is a faithful copy).
    let backup = edited.with_file_name("state-backup.db");
    let out = teewatch([
        "backup",
        "--db",
        edited.to_str().unwrap(),
        "--out",
        backup.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.trim_end().ends_with(
            "integrity ok; history chain broken: m at check 3 (edited) (teewatch history verify says more)"
        ),
        "{said}"
    );

    // The verdict's bytes replaced by another check's (both decompress): its hash differs.
    let edited = copy(&db, "verdict");
    sql(
        &edited,
        "UPDATE checks SET (verdict_dict, verdict_len, verdict) = \
         (SELECT verdict_dict, verdict_len, verdict FROM checks WHERE id = 4) WHERE id = 2;",
    );
    let (code, text) = verify_db(&edited, &[]);
    assert_eq!(code, 1, "{text}");
    let line = line_of(&text, "m");
    assert!(line.starts_with("m: broken at check 2: edited: "), "{line}");
    assert!(
        line.contains("expected the verdict to hash to")
            || line.contains("the verdict cannot be read"),
        "{line}"
    );

    // A bundle swapped for another check's of the same target, its stored hash left alone.
    let edited = copy(&db, "bundle");
    sql(
        &edited,
        "UPDATE bundles SET (dict, raw_len, data) = \
         (SELECT dict, raw_len, data FROM bundles WHERE check_id = 6) WHERE check_id = 5;",
    );
    let (code, text) = verify_db(&edited, &[]);
    assert_eq!(code, 1, "{text}");
    let line = line_of(&text, "m");
    assert!(line.starts_with("m: broken at check 5: edited: "), "{line}");
    assert!(
        line.contains("expected the bundle to hash to")
            || line.contains("the bundle cannot be read"),
        "{line}"
    );
    // And with its stored hash made to match the swapped bytes: the chain still knows.
    sql(
        &edited,
        "UPDATE bundles SET sha256 = (SELECT sha256 FROM bundles WHERE check_id = 6) WHERE check_id = 5;",
    );
    let (_, text) = verify_db(&edited, &[]);
    assert!(
        line_of(&text, "m")
            .starts_with("m: broken at check 5: edited: expected the bundle's stored hash to be "),
        "{text}"
    );

    // A check in the middle deleted (with everything stored with it): the next one's link names
    // a record no stored check has.
    let edited = copy(&db, "deleted");
    sql(
        &edited,
        "PRAGMA foreign_keys = ON; DELETE FROM checks WHERE id = 3;",
    );
    let (code, text) = verify_db(&edited, &[]);
    assert_eq!(code, 1, "{text}");
    let line = line_of(&text, "m");
    assert!(
        line.starts_with(
            "m: broken at check 5: missing: expected the previous link to be check 2 ("
        ),
        "{line}"
    );
    assert!(line.contains("which no stored check has"), "{line}");

    // Two checks swapped by id: the first now names, as its predecessor, a check after it.
    let edited = copy(&db, "swapped");
    sql(
        &edited,
        "UPDATE checks SET id = -5 WHERE id = 5; UPDATE checks SET id = 5 WHERE id = 6; \
         UPDATE checks SET id = 6 WHERE id = -5;",
    );
    let (code, text) = verify_db(&edited, &[]);
    assert_eq!(code, 1, "{text}");
    let line = line_of(&text, "m");
    assert!(
        line.starts_with(
            "m: broken at check 5: reordered: expected the previous link to be check 3 ("
        ),
        "{line}"
    );
    assert!(line.contains("found check 6 ("), "{line}");

    // Two checks' times swapped: the times are part of each record, so the first is edited.
    let edited = copy(&db, "times");
    sql(
        &edited,
        "UPDATE checks SET started_at = CASE id WHEN 2 THEN (SELECT started_at FROM checks WHERE id = 3) \
         ELSE (SELECT started_at FROM checks WHERE id = 2) END WHERE id IN (2, 3);",
    );
    let (_, text) = verify_db(&edited, &[]);
    assert!(
        line_of(&text, "m").starts_with("m: broken at check 2: edited: "),
        "{text}"
    );

    // The newest check deleted: the target's head still names it.
    let edited = copy(&db, "newest");
    sql(&edited, "DELETE FROM checks WHERE id = 7;");
    let (code, text) = verify_db(&edited, &[]);
    assert_eq!(code, 1, "{text}");
    assert!(
        line_of(&text, "m").starts_with(
            "m: broken at check 6: missing: expected the newest check to be the target's head "
        ),
        "{text}"
    );
    // With the head rewritten to the check before it, the database is consistent again: only
    // the record hash logged when check 7 finished, kept outside the database, shows the cut.
    sql(
        &edited,
        "UPDATE targets SET chain_head = (SELECT record_hash FROM checks WHERE id = 6), \
         chain_head_check = 6 WHERE name = 'm';",
    );
    let (code, text) = verify_db(&edited, &[]);
    assert_eq!(code, 0, "{text}");
    let (code, text) = verify_db(&edited, &["--head", &head]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains(&format!(
            "head {head}: expected in an intact chain, found in none"
        )),
        "{text}"
    );
    // On the untouched database the same head is found, at check 7; a malformed one is a
    // usage error.
    let (code, text) = verify_db(&db, &["--head", &head.to_uppercase(), "--target", "m"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("found at check 7 of m"), "{text}");
    let out = teewatch([
        "history",
        "verify",
        "--db",
        db.to_str().unwrap(),
        "--head",
        "abc",
    ]);
    assert_eq!(out.status.code(), Some(64));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "teewatch: --head: expected 64 hex digits (a sha-256), found 3 characters\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_and_a_migrated_store_keep_the_chain_checkable() {
    let run = start("history-chain-retention", one_gpu()).await;
    let db = stored_chain(&run).await;

    // Retention drops m's first two checks and keeps the bundles of each target's last two.
    let store = Store::open(&db).await.unwrap();
    let report = store
        .apply_retention(
            at("2026-03-01T00:15:00Z") + chrono::Duration::days(90),
            &Retention {
                verdicts_for: std::time::Duration::from_secs(90 * 24 * 3600),
                keep_last_bundles: 2,
            },
        )
        .await
        .unwrap();
    assert_eq!(report.checks_deleted, 2);
    assert_eq!(report.bundles_deleted, 4);
    store.size_bytes().await.unwrap();
    store.close().await;
    let (code, text) = verify_db(&db, &[]);
    assert_eq!(code, 0, "{text}");
    assert!(
        line_of(&text, "m").starts_with("m: intact, 4 checks, "),
        "{text}"
    );
    // The first kept check links across the gap retention noted, and the dropped bundles left
    // their hashes in the chain.
    assert_eq!(
        sql(&db, "SELECT check_id, prev_check FROM chain_gaps;").trim(),
        "3|2"
    );
    assert_eq!(
        sql(&db, "SELECT count(*) FROM checks WHERE bundle_removed_at IS NOT NULL AND length(bundle_sha256) = 32;").trim(),
        "2"
    );
    // Deleting the first kept check as well, by hand, is still found.
    let edited = copy(&db, "after-retention");
    sql(
        &edited,
        "PRAGMA foreign_keys = ON; DELETE FROM checks WHERE id = 3;",
    );
    let (_, text) = verify_db(&edited, &[]);
    assert!(
        line_of(&text, "m").starts_with(
            "m: broken at check 5: missing: expected the previous link to be the start of the chain"
        ),
        "{text}"
    );

    // Every check of m dropped, then a new one written: it notes the gap to the head it links to.
    let store = Store::open(&db).await.unwrap();
    store
        .apply_retention(
            at("2026-03-02T00:00:00Z") + chrono::Duration::days(90),
            &Retention::default(),
        )
        .await
        .unwrap();
    let next = check(&run, "m", at("2026-06-01T00:00:00Z")).await;
    let recorded = store.record_chained(&next).await.unwrap();
    store.size_bytes().await.unwrap();
    store.close().await;
    let (code, text) = verify_db(&db, &[]);
    assert_eq!(code, 0, "{text}");
    assert!(
        line_of(&text, "m").starts_with(&format!(
            "m: intact, 1 check, head {} (check {})",
            recorded.record_hash_hex(),
            recorded.check_id
        )),
        "{text}"
    );
    assert_eq!(
        sql(
            &db,
            &format!(
                "SELECT prev_check FROM chain_gaps WHERE check_id = {};",
                recorded.check_id
            )
        )
        .trim(),
        "7"
    );

    // A store from before the chain: its checks are counted as not covered, the chain starts
    // at the first check written after the migration, and a chained check whose hash is
    // removed to pass as an old one is found.
    let legacy = run.dir.join("legacy.db");
    let store = Store::open(&legacy).await.unwrap();
    for i in 0..2 {
        store
            .record(
                &check(
                    &run,
                    "m",
                    at("2026-03-01T00:00:00Z") + chrono::Duration::minutes(i),
                )
                .await,
            )
            .await
            .unwrap();
    }
    store.size_bytes().await.unwrap();
    store.close().await;
    sql(
        &legacy,
        "UPDATE checks SET verdict_sha256 = NULL, bundle_sha256 = NULL, prev_hash = NULL, record_hash = NULL; \
         UPDATE targets SET chain_head = NULL, chain_head_check = NULL; \
         UPDATE chain_start SET legacy_max_id = 2;",
    );
    let store = Store::open(&legacy).await.unwrap();
    for i in 2..4 {
        store
            .record(
                &check(
                    &run,
                    "m",
                    at("2026-03-01T00:00:00Z") + chrono::Duration::minutes(i),
                )
                .await,
            )
            .await
            .unwrap();
    }
    store.size_bytes().await.unwrap();
    store.close().await;
    let (code, text) = verify_db(&legacy, &[]);
    assert_eq!(code, 0, "{text}");
    assert!(
        line_of(&text, "m").starts_with("m: intact, 2 checks, "),
        "{text}"
    );
    assert!(
        line_of(&text, "m").ends_with(", 2 checks stored before the chain began not covered"),
        "{text}"
    );
    sql(
        &legacy,
        "UPDATE checks SET record_hash = NULL WHERE id = 4;",
    );
    let (code, text) = verify_db(&legacy, &[]);
    assert_eq!(code, 1, "{text}");
    assert!(
        line_of(&text, "m").starts_with("m: broken at check 4: edited: expected a record hash (the check was stored after the chain began), found none"),
        "{text}"
    );
}
