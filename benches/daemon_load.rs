//! Load benchmark of the daemon: `teewatch sim` with N models in one process, `teewatch run`
//! checking all N every 60 s in another, and teewatch's own cost read from /proc.
//!
//! Run with `cargo bench --bench daemon_load` (sizes 100, 1000, 2000; about four minutes each)
//! or `cargo bench --bench daemon_load -- 100 --minutes 2`. For each size it records, after a
//! warm-up of one interval: the daemon's CPU share of one core, its peak RSS (VmHWM), the
//! schedule lag p50/p99 (start minus planned start, from the store), store bytes per check and
//! the time of a `/metrics` scrape. The simulator's CPU is not counted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "../tests/it/common/net.rs"]
mod net;
use net::free_port;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_teewatch");

#[path = "../tests/it/common/process.rs"]
mod process;
use process::KillOnDrop;

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
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

fn get(url: &str) -> Option<String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let r = reqwest::get(url).await.ok()?;
        r.text().await.ok()
    })
}

fn wait_for(url: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while get(url).is_none() {
        assert!(
            Instant::now() < deadline,
            "{url} did not answer within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

struct Row {
    targets: usize,
    checks: usize,
    cpu_share: f64,
    peak_rss_mib: f64,
    lag_p50_ms: f64,
    lag_p99_ms: f64,
    bytes_per_check: f64,
    scrape_ms: f64,
    series: usize,
}

fn run_size(targets: usize, measure: Duration) -> Row {
    let dir = std::env::temp_dir().join(format!("teewatch-load-{}-{targets}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
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
    let mut guard = vec![KillOnDrop::new(sim)];
    let deadline = Instant::now() + Duration::from_secs(600);
    while !config.exists() {
        assert!(
            Instant::now() < deadline,
            "the simulator wrote no configuration"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    std::thread::sleep(Duration::from_millis(500));
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("interval = \"10s\"", "interval = \"60s\""),
    )
    .unwrap();

    let port = free_port();
    let db = dir.join("load.db");
    let daemon = Command::new(BIN)
        .args(["run", "--listen", &format!("127.0.0.1:{port}"), "--config"])
        .arg(&config)
        .arg("--db")
        .arg(&db)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = daemon.id();
    guard.push(KillOnDrop::new(daemon));
    let metrics_url = format!("http://127.0.0.1:{port}/metrics");
    wait_for(&metrics_url, Duration::from_secs(60));

    // Warm-up: one interval, so every target has been checked once and caches are warm.
    std::thread::sleep(Duration::from_secs(60));
    // The store's size and check count when the window opens (a second reader; WAL allows it).
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (bytes_start, checks_start) = runtime.block_on(async {
        let store = teewatch::store::Store::open_existing(&db).await.unwrap();
        let bytes = store.size_bytes().await.unwrap();
        let n = store
            .history(&teewatch::store::HistoryFilter::default())
            .await
            .unwrap()
            .len();
        store.close().await;
        (bytes, n)
    });
    let cpu_start = cpu_seconds(pid);
    let wall_start = Instant::now();
    let window_start = chrono::Utc::now();
    std::thread::sleep(measure);
    let cpu = cpu_seconds(pid) - cpu_start;
    let wall = wall_start.elapsed().as_secs_f64();
    let peak = peak_rss_mib(pid);
    let mut scrapes = Vec::new();
    let mut body = String::new();
    for _ in 0..5 {
        let t = Instant::now();
        body = get(&metrics_url).unwrap();
        scrapes.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    scrapes.sort_by(f64::total_cmp);
    let series = body.lines().filter(|l| !l.starts_with('#')).count();

    // Stop the daemon cleanly, then read the store.
    process::signal(pid, "TERM");
    let mut daemon = guard.pop().unwrap().take();
    let _ = daemon.wait();
    let (lags, checks, bytes) = runtime.block_on(async {
        let store = teewatch::store::Store::open_existing(&db).await.unwrap();
        let all = store
            .history(&teewatch::store::HistoryFilter::default())
            .await
            .unwrap();
        let bytes = store.size_bytes().await.unwrap();
        store.close().await;
        let mut lags: Vec<f64> = all
            .iter()
            .filter(|c| c.started_at >= window_start)
            .map(|c| {
                (c.started_at - c.scheduled_at)
                    .num_microseconds()
                    .unwrap_or(0) as f64
                    / 1000.0
            })
            .collect();
        lags.sort_by(f64::total_cmp);
        (lags, all.len(), bytes)
    });
    let _ = std::fs::remove_dir_all(&dir);
    Row {
        targets,
        checks,
        cpu_share: cpu / wall,
        peak_rss_mib: peak,
        lag_p50_ms: percentile(&lags, 0.5),
        lag_p99_ms: percentile(&lags, 0.99),
        // Growth during the window over the checks made in it: what a check costs once every
        // target's compression reference exists.
        bytes_per_check: bytes.saturating_sub(bytes_start) as f64
            / checks.saturating_sub(checks_start).max(1) as f64,
        scrape_ms: percentile(&scrapes, 0.5),
        series,
    }
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let mut sizes: Vec<usize> = Vec::new();
    let mut minutes = 3u64;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if arg == "--minutes" {
            minutes = iter.next().and_then(|m| m.parse().ok()).unwrap_or(minutes);
        } else if let Ok(n) = arg.parse::<usize>() {
            sizes.push(n);
        }
    }
    if sizes.is_empty() {
        sizes = vec![100, 1000, 2000];
    }
    println!(
        "| targets | checks stored | teewatch CPU (share of one core) | peak RSS | schedule lag p50 | lag p99 | store bytes/check | /metrics scrape | series |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for size in sizes {
        let r = run_size(size, Duration::from_secs(minutes * 60));
        println!(
            "| {} | {} | {:.1} % | {:.0} MiB | {:.0} ms | {:.0} ms | {:.0} | {:.0} ms | {} |",
            r.targets,
            r.checks,
            r.cpu_share * 100.0,
            r.peak_rss_mib,
            r.lag_p50_ms,
            r.lag_p99_ms,
            r.bytes_per_check,
            r.scrape_ms,
            r.series
        );
    }
}
