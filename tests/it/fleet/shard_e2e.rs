//! The fleet end to end, as an operator runs it: one simulator with 2,000 models, three
//! `teewatch run` processes sharing one PostgreSQL database in shard mode, and what the issue
//! promises of them, read from the database and from `/metrics`: each target checked by exactly
//! one instance per slot, the work spread over the three, any instance serving the whole fleet's
//! state, an instance killed with SIGKILL losing its targets to the others within one interval,
//! an instance frozen with SIGSTOP likewise, and no slot ever checked twice, before, during or
//! after either.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::Connection as _;
use sqlx::postgres::PgConnection;

use crate::common::daemon_run::sample;
use crate::common::net::free_port;
use crate::common::postgres::fresh_database;
use crate::common::process::{KillOnDrop, signal};

const BIN: &str = env!("CARGO_BIN_EXE_teewatch");

/// Targets in the fleet: the figure.
const TARGETS: usize = 2000;
/// Each target's interval. Long enough that three debug-built daemons, the simulator and the
/// database server keep up with 2,000 targets on two cores.
const INTERVAL: Duration = Duration::from_secs(120);
/// How long an instance's heartbeat stays valid (under half the interval, as the configuration
/// requires).
const LEASE: &str = "20s";

/// One `teewatch run` of the fleet.
struct Instance {
    name: &'static str,
    port: u16,
    process: KillOnDrop,
    log: PathBuf,
}

impl Instance {
    fn start(dir: &Path, name: &'static str, sim_config: &str, db: &str) -> Instance {
        let config = dir.join(format!("{name}.toml"));
        let text = sim_config
            .replace(
                "interval = \"10s\"",
                &format!("interval = \"{}s\"", INTERVAL.as_secs()),
            )
            .replace(
                "db = \"sim.db\"",
                &format!(
                    "db = \"{db}\"\ninstance = \"{name}\"\nmode = \"shard\"\nlease = \"{LEASE}\""
                ),
            );
        assert!(
            text.contains(&format!("instance = \"{name}\"")),
            "the simulator's configuration has no db line to replace"
        );
        std::fs::write(&config, text).unwrap();
        let port = free_port();
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(BIN)
            .args(["run", "--listen", &format!("127.0.0.1:{port}"), "--config"])
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Instance {
            name,
            port,
            process: KillOnDrop::new(child),
            log,
        }
    }

    async fn scrape(&self) -> String {
        let url = format!("http://127.0.0.1:{}/metrics", self.port);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let answer = match reqwest::get(&url).await {
                Ok(response) => response.text().await,
                Err(e) => Err(e),
            };
            match answer {
                Ok(text) => return text,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => panic!(
                    "instance {} does not serve /metrics: {e}\nits log:\n{}",
                    self.name,
                    self.log_tail()
                ),
            }
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

/// A folder of the test's own, removed however the test ends (declared before the processes, so
/// dropped after them).
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // A failure shows what each instance logged (warnings and up): a check not run, a lost
        // database, a lagging schedule. The processes are gone by now, so the logs are whole.
        if std::thread::panicking() {
            let mut logs: Vec<PathBuf> = std::fs::read_dir(&self.0)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "log"))
                .collect();
            logs.sort();
            for log in logs {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                eprintln!(
                    "--- {}: {} lines, {} of them \"check not run\"; the last 20:",
                    log.display(),
                    lines.len(),
                    lines.iter().filter(|l| l.contains("check not run")).count()
                );
                for line in &lines[lines.len().saturating_sub(20)..] {
                    eprintln!("{}", line.chars().take(400).collect::<String>());
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What the database holds: every check's target, slot, instance and start, in ns.
struct Row {
    target: String,
    slot: i64,
    instance: String,
    started: i64,
}

async fn rows(db: &str) -> Vec<Row> {
    let mut conn = PgConnection::connect(db).await.unwrap();
    let rows: Vec<(String, i64, String, i64)> = sqlx::query_as(
        "SELECT t.name, c.scheduled_at, c.instance, c.started_at FROM checks c JOIN targets t ON t.id = c.target_id",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(target, slot, instance, started)| Row {
            target,
            slot,
            instance,
            started,
        })
        .collect()
}

/// The database's clock, in ns: the fleet's leases are judged by it.
async fn db_now(db: &str) -> i64 {
    let mut conn = PgConnection::connect(db).await.unwrap();
    sqlx::query_scalar("SELECT (extract(epoch from clock_timestamp()) * 1e9)::bigint")
        .fetch_one(&mut conn)
        .await
        .unwrap()
}

/// Slots checked more than once, as `target@window ×n`: a slot is the target's window of one
/// interval since the epoch (`teewatch::fleet::slot_key`), which every instance plans alike.
fn double_checks(rows: &[Row]) -> Vec<String> {
    let window = i64::try_from(INTERVAL.as_nanos()).unwrap();
    let mut seen: BTreeMap<(&str, i64), usize> = BTreeMap::new();
    for r in rows {
        *seen
            .entry((r.target.as_str(), r.slot.div_euclid(window)))
            .or_default() += 1;
    }
    seen.into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|((t, w), n)| format!("{t}@{} ×{n}", w * window))
        .collect()
}

/// Windows of one interval without a check of a target that was checked before and after them,
/// as `target: window (ns) ×n` for each gap of `n` windows.
fn skipped_windows(rows: &[Row]) -> Vec<String> {
    let window = i64::try_from(INTERVAL.as_nanos()).unwrap();
    let mut windows: BTreeMap<&str, BTreeSet<i64>> = BTreeMap::new();
    for r in rows {
        windows
            .entry(r.target.as_str())
            .or_default()
            .insert(r.slot.div_euclid(window));
    }
    let mut gaps = Vec::new();
    for (target, seen) in &windows {
        let seen: Vec<i64> = seen.iter().copied().collect();
        for pair in seen.windows(2) {
            if pair[1] - pair[0] > 1 {
                gaps.push(format!(
                    "{target}: {} ×{}",
                    (pair[0] + 1) * window,
                    pair[1] - pair[0] - 1
                ));
            }
        }
    }
    gaps
}

/// Waits until `done` holds for the database's rows, or fails after `within` saying `what`.
async fn wait_rows(
    db: &str,
    within: Duration,
    what: &str,
    done: impl Fn(&[Row]) -> bool,
) -> Vec<Row> {
    let deadline = Instant::now() + within;
    loop {
        let now = rows(db).await;
        if done(&now) {
            return now;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Targets whose latest check before `before` (ns) was run by `instance`.
fn owned_by(rows: &[Row], instance: &str, before: i64) -> BTreeSet<String> {
    let mut latest: BTreeMap<&str, (i64, &str)> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.started < before) {
        let entry = latest
            .entry(r.target.as_str())
            .or_insert((r.started, r.instance.as_str()));
        if r.started >= entry.0 {
            *entry = (r.started, r.instance.as_str());
        }
    }
    latest
        .into_iter()
        .filter(|(_, (_, i))| *i == instance)
        .map(|(t, _)| t.to_string())
        .collect()
}

/// Targets of `targets` that no instance other than `gone` checked in a slot at or after `since`
/// and at or before `until` (ns). Slots, not start times: when a check of a slot starts depends
/// on how busy the machine is, which slot an instance checks does not.
fn not_taken_over(
    rows: &[Row],
    targets: &BTreeSet<String>,
    gone: &str,
    since: i64,
    until: i64,
) -> Vec<String> {
    let taken: BTreeSet<&str> = rows
        .iter()
        .filter(|r| r.instance != gone && r.slot >= since && r.slot <= until)
        .map(|r| r.target.as_str())
        .collect();
    targets
        .iter()
        .filter(|t| !taken.contains(t.as_str()))
        .cloned()
        .collect()
}

/// The slots `gone` still holds claims of and never stored a check for, by target: the start
/// of each such slot's window, in ns. A peer that came to own the target takes such a claim
/// over and runs the slot (`docs/fleet.md`, "A slot claimed and never stored"); one left here
/// names a slot that was lost. For the failure message.
async fn unstored_claims(db: &str, gone: &str) -> BTreeMap<String, i64> {
    let mut conn = PgConnection::connect(db).await.unwrap();
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT target, slot_at FROM slot_claims WHERE instance = $1 AND NOT stored",
    )
    .bind(gone)
    .fetch_all(&mut conn)
    .await
    .unwrap();
    rows.into_iter().collect()
}

/// Asserts that every target of `targets` was checked by another instance than `gone` in a slot
/// within one interval of `since` (its death or freezing), including a target whose slot in
/// progress `gone` had claimed and never stored: its claim is taken over.
async fn assert_taken_over_in_time(
    db: &str,
    rows: &[Row],
    targets: &BTreeSet<String>,
    gone: &str,
    since: i64,
) {
    let interval = i64::try_from(INTERVAL.as_nanos()).unwrap();
    let late = not_taken_over(rows, targets, gone, since, since + interval);
    if late.is_empty() {
        return;
    }
    let unstored = unstored_claims(db, gone).await;
    panic!(
        "{} of {gone}'s {} targets had no check by another instance in a slot within one interval of {gone}'s end: {:?}; of them {} with a claim {gone} never stored and nobody took over ({:?})",
        late.len(),
        targets.len(),
        &late[..late.len().min(5)],
        late.iter().filter(|t| unstored.contains_key(*t)).count(),
        late.iter()
            .filter_map(|t| unstored.get(t).map(|slot| (t, slot)))
            .take(5)
            .collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_share_2000_targets_take_over_from_a_killed_and_a_frozen_one_and_never_check_a_slot_twice()
 {
    let db = fresh_database("fleet shard").await;
    let dir = Scratch::new("teewatch-fleet-shard");
    let sim_port = free_port();
    let sim_config = dir.path().join("sim.toml");
    let sim = Command::new(BIN)
        .args([
            "sim",
            "--listen",
            &format!("127.0.0.1:{sim_port}"),
            "--models",
            &TARGETS.to_string(),
            "--write-config",
        ])
        .arg(&sim_config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _sim = KillOnDrop::new(sim);
    let deadline = Instant::now() + Duration::from_secs(300);
    let text = loop {
        // The file is complete once its last target's pins are in it.
        let text = std::fs::read_to_string(&sim_config).unwrap_or_default();
        if text.contains(&format!("name = \"TEE/sim-model-{}\"", TARGETS - 1))
            && text.trim_end().ends_with(']')
        {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "the simulator wrote no configuration for {TARGETS} models"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };

    let a = Instance::start(dir.path(), "a", &text, &db);
    let b = Instance::start(dir.path(), "b", &text, &db);
    let mut c = Instance::start(dir.path(), "c", &text, &db);
    // Serving /metrics means started: the schema migrated and the fleet joined.
    for instance in [&a, &b, &c] {
        instance.scrape().await;
    }
    let all_serving = db_now(&db).await;

    // 1. One interval after they start, every target has been checked, by exactly one instance
    // per slot, and each instance has its share. (The waits here and below are generous: they
    // bound a machine too busy to keep up, not the fleet's promises, which are judged by slot.)
    let first = wait_rows(&db, INTERVAL * 3, "every target checked once", |rows| {
        rows.iter()
            .map(|r| r.target.as_str())
            .collect::<BTreeSet<_>>()
            .len()
            == TARGETS
    })
    .await;
    assert_eq!(
        double_checks(&first),
        Vec::<String>::new(),
        "slots checked twice"
    );
    // The shares are counted over the slots since all three serve /metrics: until an instance
    // has joined, the others rightly run its targets, and on a busy machine the last of three
    // processes can start tens of seconds after the first.
    let mut per_instance: BTreeMap<&str, usize> = BTreeMap::new();
    let steady: Vec<&Row> = first.iter().filter(|r| r.slot >= all_serving).collect();
    for r in &steady {
        *per_instance.entry(r.instance.as_str()).or_default() += 1;
    }
    assert_eq!(
        per_instance.keys().copied().collect::<Vec<_>>(),
        ["a", "b", "c"],
        "each instance checks some targets"
    );
    for (instance, checked) in &per_instance {
        assert!(
            checked * 6 > steady.len(),
            "instance {instance} ran {checked} of the {} checks since all three serve /metrics, expected about a third",
            steady.len()
        );
    }

    // 2. Any instance serves the fleet's state: a's scrape names every target, and which
    // instance ran each one's latest check.
    // The fleet view reads peers' checks every 3 s: a scrape right after the last check was
    // stored may not have it yet.
    let deadline = Instant::now() + Duration::from_secs(120);
    let scrape = loop {
        let scrape = a.scrape().await;
        let named = scrape
            .lines()
            .filter(|l| l.starts_with("teewatch_target_checked_by_info{"))
            .count();
        if named == TARGETS {
            break scrape;
        }
        assert!(
            Instant::now() < deadline,
            "a's /metrics names the instance of {named} of {TARGETS} targets' latest checks"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let states = scrape
        .lines()
        .filter(|l| l.starts_with("teewatch_target_state{"))
        .count();
    assert_eq!(
        states, TARGETS,
        "a's /metrics shows every target of the fleet"
    );
    for peer in ["a", "b", "c"] {
        assert_eq!(
            sample(&scrape, "teewatch_fleet_instance_up", &[("peer", peer)]),
            Some(1.0),
            "peer {peer} live on a's /metrics"
        );
        let checked = scrape
            .lines()
            .filter(|l| {
                l.starts_with("teewatch_target_checked_by_info{")
                    && l.contains(&format!("checked_by=\"{peer}\""))
            })
            .count();
        assert!(
            checked > 0,
            "a's /metrics names no target checked by {peer}"
        );
    }

    // 3. SIGKILL c: within one interval of its death every target it had is checked by a or b.
    let killed_at = db_now(&db).await;
    let c_targets = owned_by(&rows(&db).await, "c", killed_at);
    assert!(!c_targets.is_empty());
    c.process
        .signal_and_wait("KILL", Duration::from_secs(10))
        .expect("c exits on SIGKILL");
    let after_kill = wait_rows(&db, INTERVAL * 3, "c's targets taken over", |rows| {
        not_taken_over(rows, &c_targets, "c", killed_at, i64::MAX).is_empty()
    })
    .await;
    assert_taken_over_in_time(&db, &after_kill, &c_targets, "c", killed_at).await;
    assert_eq!(
        sample(
            &a.scrape().await,
            "teewatch_fleet_instance_up",
            &[("peer", "c")]
        ),
        Some(0.0),
        "a shows c lost"
    );

    // 4. SIGSTOP b (alive, its database connections open, but silent): a takes everything over
    // within one interval; after SIGCONT b rejoins, and no slot was checked twice.
    let frozen_at = db_now(&db).await;
    let b_targets = owned_by(&rows(&db).await, "b", frozen_at);
    signal(b.process.id(), "STOP");
    let after_stop = wait_rows(&db, INTERVAL * 3, "b's targets taken over", |rows| {
        not_taken_over(rows, &b_targets, "b", frozen_at, i64::MAX).is_empty()
    })
    .await;
    assert_taken_over_in_time(&db, &after_stop, &b_targets, "b", frozen_at).await;
    signal(b.process.id(), "CONT");
    let resumed_at = db_now(&db).await;
    let _ = wait_rows(&db, INTERVAL, "b checks again after SIGCONT", |rows| {
        rows.iter()
            .any(|r| r.instance == "b" && r.started > resumed_at)
    })
    .await;
    let all = rows(&db).await;
    assert_eq!(
        double_checks(&all),
        Vec::<String>::new(),
        "slots checked twice over the whole run"
    );
    // 5. And none missed: from its first check on, every target was checked in every window of
    // one interval, through the kill, the freeze and the return (a take-over runs the slot the
    // dead instance missed, and the target's next slot is checked on time).
    assert_eq!(
        skipped_windows(&all),
        Vec::<String>::new(),
        "windows of one interval in which a target went unchecked"
    );
    drop(b);
    drop(a);
}
