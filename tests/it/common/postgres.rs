//! The PostgreSQL server the store and fleet tests run against: the throw-away cluster that
//! `scripts/test` starts for the run (`scripts/test-postgres`) and names in
//! `TEEWATCH_TEST_POSTGRES`. Each test gets a database of its own, made here and never shared,
//! so tests run in parallel without seeing each other's rows. Without the variable, or with a
//! server that does not answer, the test fails naming the command that provides one: it never
//! passes by skipping the database it is about.

use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::Connection as _;
use sqlx::postgres::PgConnection;

use super::tool;

/// The environment variable naming the maintenance database of the test server.
pub const SERVER_VAR: &str = "TEEWATCH_TEST_POSTGRES";

/// How to get a server without the whole suite: the lines `scripts/test` runs.
const START_ONE: &str = "bash -c 'cannot() { echo \"$1: $2\"; exit 1; }; . scripts/test-postgres; \
     echo $TEEWATCH_TEST_POSTGRES; sleep infinity'";

/// The maintenance database's URL, or the test fails saying how to start a server.
#[track_caller]
pub fn server_url() -> String {
    let Ok(url) = std::env::var(SERVER_VAR) else {
        panic!(
            "{SERVER_VAR} is not set: this test runs against a real PostgreSQL server and does \
             not skip. Run `{}` (it installs PostgreSQL and starts a throw-away server for the \
             run), or start one with `{START_ONE}` and export the URL it prints as {SERVER_VAR}",
            tool::SETUP
        )
    };
    tool::record("postgres");
    url
}

/// A new, empty database on the test server, as a URL a store can open. Its name says which
/// process and test made it, so a failing run's leftovers can be told apart.
pub async fn fresh_database(label: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let admin = server_url();
    let mut conn = PgConnection::connect(&admin).await.unwrap_or_else(|e| {
        panic!(
            "the test PostgreSQL server at {admin} ({SERVER_VAR}) does not answer: {e}. Run `{}`, \
             which starts one for the run",
            tool::SETUP
        )
    });
    let clean: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(30)
        .collect();
    let name = format!(
        "tw_{}_{}_{clean}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    sqlx::query(&format!(
        "CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8'"
    ))
    .execute(&mut conn)
    .await
    .unwrap_or_else(|e| panic!("cannot create the test database {name} on {admin}: {e}"));
    conn.close().await.ok();
    database_url(&admin, &name)
}

/// `admin` with its database replaced by `name`.
pub fn database_url(admin: &str, name: &str) -> String {
    let (before_query, query) = match admin.split_once('?') {
        Some((head, query)) => (head, format!("?{query}")),
        None => (admin, String::new()),
    };
    let base = match before_query.rsplit_once('/') {
        Some((server, _database)) if server.contains("//") => server,
        _ => before_query,
    };
    format!("{base}/{name}{query}")
}

#[tokio::test]
async fn each_fresh_database_is_empty_and_its_own() {
    let first = fresh_database("harness a").await;
    let second = fresh_database("harness b").await;
    assert_ne!(first, second);
    let mut a = PgConnection::connect(&first).await.unwrap();
    sqlx::query("CREATE TABLE t (x BIGINT)")
        .execute(&mut a)
        .await
        .unwrap();
    sqlx::query("INSERT INTO t VALUES (7)")
        .execute(&mut a)
        .await
        .unwrap();
    let mut b = PgConnection::connect(&second).await.unwrap();
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .fetch_one(&mut b)
    .await
    .unwrap();
    assert_eq!(tables, 0, "a fresh database holds no table");
    let x: i64 = sqlx::query_scalar("SELECT x FROM t")
        .fetch_one(&mut a)
        .await
        .unwrap();
    assert_eq!(x, 7);
}

#[test]
fn database_url_replaces_only_the_database() {
    assert_eq!(
        database_url("postgres://teewatch@127.0.0.1:5432/postgres", "tw_1"),
        "postgres://teewatch@127.0.0.1:5432/tw_1"
    );
    assert_eq!(
        database_url("postgres://u@h:1/postgres?sslmode=disable", "x"),
        "postgres://u@h:1/x?sslmode=disable"
    );
}
