//! Load benchmark of the daemon: `teewatch sim` with N models in one process, `teewatch run`
//! checking all N every 60 s in another, and each process's cost read from /proc.
//!
//! Run with `cargo bench --bench daemon_load` (sizes 100, 1000, 2000 and 5000, three minutes
//! each), or choose sizes and minutes: `cargo bench --bench daemon_load -- 2000 --minutes 1`.
//! `--bin LABEL=PATH` (repeatable) runs the daemon from each binary in turn for every size, in
//! the order given (the first is the base), and prints the ratio of each other binary's row to
//! the base's: builds compared in the same run see the same machine. Without `--bin` the daemon is
//! the binary cargo built. The simulator is always cargo's binary, so every daemon faces the
//! same load. `--concurrency N` sets `[daemon] concurrency` (checks in flight; the daemon's
//! default otherwise). `--db postgres://user@host/db` (a server's maintenance database) runs
//! the daemon on a PostgreSQL store instead of SQLite: each run gets a fresh database on that
//! server, dropped afterwards (issue 22; the server's own CPU is not in the daemon's share).
//!
//! For each size and binary it records, after a warm-up of one interval: the daemon's CPU share
//! of one core and the simulator's (the two share the machine's cores), the daemon's peak RSS
//! (VmHWM), the schedule lag p50/p99 (start minus planned start, from the store), store bytes
//! per check, the median of ten `/metrics` scrapes with one reused client and the median of ten
//! fetches of the same bytes from a trivial loopback server (the transfer floor), the scrape's
//! bytes and series. Every wait has a deadline; temporary directories are removed however a run
//! ends.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "../tests/it/common/net.rs"]
mod net;
use net::free_port;
use std::path::{Path, PathBuf};

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use teewatch::config::StoreLocation;

#[path = "../tests/it/common/process.rs"]
mod process;
use process::KillOnDrop;

#[path = "common/scrape_client.rs"]
mod scrape_client;
use scrape_client::{Scraper, StaticServer};

const BIN: &str = env!("CARGO_BIN_EXE_teewatch");

/// Scrapes timed per run (daemon and floor alternately), after one untimed scrape.
const SCRAPES: usize = 10;

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/stat (did the process exit?): {e}"));
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// Peak resident set size in MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: f64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib / 1024.0
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    percentile(&values, 0.5)
}

/// A directory removed when dropped, also when the run panics.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One daemon binary under test.
struct Binary {
    label: String,
    path: PathBuf,
}

struct Row {
    checks: usize,
    cpu_share: f64,
    sim_cpu_share: f64,
    peak_rss_mib: f64,
    lag_p50_ms: f64,
    lag_p99_ms: f64,
    bytes_per_check: f64,
    scrape_ms: f64,
    floor_ms: f64,
    scrape_bytes: usize,
    series: usize,
}

impl Row {
    /// The row's numbers in table order, for the ratio line.
    fn values(&self) -> [f64; 11] {
        [
            self.checks as f64,
            self.cpu_share,
            self.sim_cpu_share,
            self.peak_rss_mib,
            self.lag_p50_ms,
            self.lag_p99_ms,
            self.bytes_per_check,
            self.scrape_ms,
            self.floor_ms,
            self.scrape_bytes as f64,
            self.series as f64,
        ]
    }
}

const HEADER: &str = "| build | targets | checks stored | teewatch CPU (share of one core) | simulator CPU | peak RSS | lag p50 | lag p99 | store bytes/check | `/metrics` scrape | floor: same bytes, static server | scrape bytes | series |";

fn print_row(label: &str, targets: usize, r: &Row) {
    println!(
        "| {label} | {targets} | {} | {:.1} % | {:.1} % | {:.0} MiB | {:.0} ms | {:.0} ms | {:.0} | {:.1} ms | {:.1} ms | {} | {} |",
        r.checks,
        r.cpu_share * 100.0,
        r.sim_cpu_share * 100.0,
        r.peak_rss_mib,
        r.lag_p50_ms,
        r.lag_p99_ms,
        r.bytes_per_check,
        r.scrape_ms,
        r.floor_ms,
        r.scrape_bytes,
        r.series
    );
}

fn print_ratio(label: &str, base_label: &str, targets: usize, new: &Row, base: &Row) {
    let cells: Vec<String> = new
        .values()
        .iter()
        .zip(base.values())
        .map(|(n, b)| {
            if b == 0.0 || !b.is_finite() || !n.is_finite() {
                "–".to_string()
            } else {
                format!("{:.2}×", n / b)
            }
        })
        .collect();
    println!(
        "| {label} / {base_label} | {targets} | {} |",
        cells.join(" | ")
    );
}

/// Waits up to `within` for `path` to exist.
fn wait_for_file(path: &Path, within: Duration, what: &str) {
    let deadline = Instant::now() + within;
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{what}: {} did not appear within {within:?}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A fresh database on the PostgreSQL server `server` (a URL naming its maintenance database),
/// as the URL of the new database and its name.
fn fresh_postgres(
    runtime: &tokio::runtime::Runtime,
    server: &str,
    label: &str,
) -> (String, String) {
    use sqlx::Connection as _;
    let name = format!("teewatch_load_{}_{label}", std::process::id());
    runtime.block_on(async {
        let mut conn = sqlx::PgConnection::connect(server)
            .await
            .unwrap_or_else(|e| panic!("--db {server}: cannot connect: {e}"));
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("--db {server}: cannot create {name}: {e}"));
        conn.close().await.ok();
    });
    let (head, query) = match server.split_once('?') {
        Some((head, query)) => (head, format!("?{query}")),
        None => (server, String::new()),
    };
    let base = head.rsplit_once('/').map_or(head, |(base, _)| base);
    (format!("{base}/{name}{query}"), name)
}

/// Drops a database `fresh_postgres` made (after the daemon using it stopped).
fn drop_postgres(runtime: &tokio::runtime::Runtime, server: &str, name: &str) {
    use sqlx::Connection as _;
    runtime.block_on(async {
        if let Ok(mut conn) = sqlx::PgConnection::connect(server).await {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut conn)
                .await;
            conn.close().await.ok();
        }
    });
}

/// The store's size in bytes, its checks, and the lag in ms of each check started at or after
/// `since` (sorted), read by a second connection (WAL allows it while the daemon writes).
fn read_store(
    runtime: &tokio::runtime::Runtime,
    db: &StoreLocation,
    since: Option<chrono::DateTime<chrono::Utc>>,
) -> (u64, usize, Vec<f64>) {
    runtime.block_on(async {
        let store = teewatch::store::Store::open_existing_location(db)
            .await
            .unwrap_or_else(|e| panic!("cannot open the store {db}: {e}"));
        let bytes = store.size_bytes().await.unwrap();
        let all = store
            .history(&teewatch::store::HistoryFilter::default())
            .await
            .unwrap();
        store.close().await;
        let mut lags: Vec<f64> = match since {
            None => Vec::new(),
            Some(since) => all
                .iter()
                .filter(|c| c.started_at >= since)
                .map(|c| {
                    (c.started_at - c.scheduled_at)
                        .num_microseconds()
                        .unwrap_or(0) as f64
                        / 1000.0
                })
                .collect(),
        };
        lags.sort_by(f64::total_cmp);
        (bytes, all.len(), lags)
    })
}

fn run_size(
    binary: &Binary,
    targets: usize,
    measure: Duration,
    concurrency: Option<usize>,
    postgres: Option<&str>,
    scraper: &Scraper,
    runtime: &tokio::runtime::Runtime,
) -> Row {
    let dir = std::env::temp_dir().join(format!(
        "teewatch-load-{}-{targets}-{}",
        std::process::id(),
        binary
            .label
            .replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // Declared before the process guards, so dropped after them: the directory goes once the
    // processes writing to it are killed.
    let _dir_guard = TempDir(dir.clone());
    let sim_port = free_port();
    let config = dir.join("sim.toml");
    let sim = Command::new(BIN)
        .args([
            "sim",
            "--listen",
            &format!("127.0.0.1:{sim_port}"),
            "--models",
            &targets.to_string(),
            "--write-config",
        ])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let sim_pid = sim.id();
    let _sim_guard = KillOnDrop::new(sim);
    wait_for_file(
        &config,
        Duration::from_secs(600),
        "the simulator wrote no configuration",
    );
    // The file appears before its last write ends.
    std::thread::sleep(Duration::from_millis(500));
    let mut text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("interval = \"10s\"", "interval = \"60s\"");
    if let Some(n) = concurrency {
        assert!(
            text.contains("[daemon]\n"),
            "the simulator's configuration has no [daemon] table to set concurrency in"
        );
        text = text.replace("[daemon]\n", &format!("[daemon]\nconcurrency = {n}\n"));
    }
    std::fs::write(&config, text).unwrap();

    let port = free_port();
    let (db, dropped) = match postgres {
        None => (StoreLocation::Sqlite(dir.join("load.db")), None),
        Some(server) => {
            let (url, name) = fresh_postgres(runtime, server, &targets.to_string());
            (
                StoreLocation::Postgres {
                    url,
                    password: None,
                },
                Some(DropDatabase {
                    runtime,
                    server,
                    name,
                }),
            )
        }
    };
    // `--db` as the command line takes it: the file, or the URL.
    let db_arg = match &db {
        StoreLocation::Sqlite(path) => path.display().to_string(),
        StoreLocation::Postgres { url, .. } => url.clone(),
    };
    let daemon = Command::new(&binary.path)
        .args(["run", "--listen", &format!("127.0.0.1:{port}"), "--config"])
        .arg(&config)
        .arg("--db")
        .arg(&db_arg)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.path.display()));
    let pid = daemon.id();
    let mut daemon = KillOnDrop::new(daemon);
    let metrics_url = format!("http://127.0.0.1:{port}/metrics");
    scraper.wait_for(&metrics_url, Duration::from_secs(120));

    // Warm-up: one interval, so every target has been checked once and caches are warm.
    std::thread::sleep(Duration::from_secs(60));
    let (bytes_start, checks_start, _) = read_store(runtime, &db, None);
    let cpu_start = cpu_seconds(pid);
    let sim_cpu_start = cpu_seconds(sim_pid);
    let wall_start = Instant::now();
    let window_start = chrono::Utc::now();
    std::thread::sleep(measure);
    let cpu = cpu_seconds(pid) - cpu_start;
    let sim_cpu = cpu_seconds(sim_pid) - sim_cpu_start;
    let wall = wall_start.elapsed().as_secs_f64();
    let peak = peak_rss_mib(pid);

    // Scrapes while checks still run: one untimed (it also gives the floor its bytes), then the
    // daemon and the static server alternately, so that both see the same moments.
    let (body, _) = scraper.timed_get(&metrics_url);
    let floor = StaticServer::start(body);
    let floor_url = floor.url();
    scraper.timed_get(&floor_url);
    let mut scrapes = Vec::new();
    let mut floors = Vec::new();
    let mut body = Vec::new();
    for _ in 0..SCRAPES {
        let (b, ms) = scraper.timed_get(&metrics_url);
        body = b;
        scrapes.push(ms);
        floors.push(scraper.timed_get(&floor_url).1);
    }
    drop(floor);
    let series = body
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty() && !l.starts_with(b"#"))
        .count();

    // Stop the daemon cleanly (so the store is complete), then read the store.
    let status = daemon.signal_and_wait("TERM", Duration::from_secs(60));
    assert!(
        status.is_some(),
        "{} did not exit within 60 s of SIGTERM",
        binary.label
    );
    let (bytes, checks, lags) = read_store(runtime, &db, Some(window_start));
    drop(dropped);
    Row {
        checks,
        cpu_share: cpu / wall,
        sim_cpu_share: sim_cpu / wall,
        peak_rss_mib: peak,
        lag_p50_ms: percentile(&lags, 0.5),
        lag_p99_ms: percentile(&lags, 0.99),
        // Growth during the window over the checks made in it: what a check costs once every
        // target's compression reference exists.
        bytes_per_check: bytes.saturating_sub(bytes_start) as f64
            / checks.saturating_sub(checks_start).max(1) as f64,
        scrape_ms: median(scrapes),
        floor_ms: median(floors),
        scrape_bytes: body.len(),
        series,
    }
}

/// Drops a run's PostgreSQL database however the run ends.
struct DropDatabase<'a> {
    runtime: &'a tokio::runtime::Runtime,
    server: &'a str,
    name: String,
}

impl Drop for DropDatabase<'_> {
    fn drop(&mut self) {
        drop_postgres(self.runtime, self.server, &self.name);
    }
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let mut sizes: Vec<usize> = Vec::new();
    let mut minutes = 3u64;
    let mut binaries: Vec<Binary> = Vec::new();
    let mut concurrency = None;
    let mut postgres: Option<String> = None;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if arg == "--minutes" {
            let value = iter.next().map(String::as_str).unwrap_or("");
            minutes = value
                .parse()
                .unwrap_or_else(|_| panic!("--minutes expects a whole number, found {value:?}"));
        } else if arg == "--concurrency" {
            let value = iter.next().map(String::as_str).unwrap_or("");
            concurrency = Some(value.parse().unwrap_or_else(|_| {
                panic!("--concurrency expects a whole number, found {value:?}")
            }));
        } else if arg == "--db" {
            let value = iter.next().map(String::as_str).unwrap_or("");
            assert!(
                value.starts_with("postgres://") || value.starts_with("postgresql://"),
                "--db expects a postgres:// url of a server's maintenance database, found {value:?}"
            );
            postgres = Some(value.to_string());
        } else if arg == "--bin" {
            let value = iter.next().map(String::as_str).unwrap_or("");
            let (label, path) = value
                .split_once('=')
                .unwrap_or_else(|| panic!("--bin expects LABEL=PATH, found {value:?}"));
            let path = PathBuf::from(path);
            assert!(
                path.is_file(),
                "--bin {label}: no file at {}",
                path.display()
            );
            binaries.push(Binary {
                label: label.to_string(),
                path,
            });
        } else if let Ok(n) = arg.parse::<usize>() {
            sizes.push(n);
        } else {
            panic!(
                "unknown argument {arg:?}: expected sizes, --minutes N, --concurrency N, --db URL or --bin LABEL=PATH"
            );
        }
    }
    if sizes.is_empty() {
        sizes = vec![100, 1000, 2000, 5000];
    }
    if binaries.is_empty() {
        binaries.push(Binary {
            label: "this build".to_string(),
            path: PathBuf::from(BIN),
        });
    }
    let scraper = Scraper::new();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    println!("{HEADER}");
    println!("|{}", "---|".repeat(13));
    for size in sizes {
        let mut rows = Vec::new();
        for binary in &binaries {
            eprintln!(
                "daemon_load: {size} targets, {} ({}), load average {}",
                binary.label,
                binary.path.display(),
                load_average()
            );
            let row = run_size(
                binary,
                size,
                Duration::from_secs(minutes * 60),
                concurrency,
                postgres.as_deref(),
                &scraper,
                &runtime,
            );
            let label = match &postgres {
                Some(_) => format!("{} (PostgreSQL)", binary.label),
                None => format!("{} (SQLite)", binary.label),
            };
            print_row(&label, size, &row);
            rows.push(row);
        }
        for (binary, row) in binaries.iter().zip(&rows).skip(1) {
            print_ratio(&binary.label, &binaries[0].label, size, row, &rows[0]);
        }
    }
    eprintln!("daemon_load: done, load average {}", load_average());
}
