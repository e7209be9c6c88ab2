//! The fault matrix (issue 19, item 2): the daemon against every simulator fault over real HTTP
//! on loopback, plus a refused connection, a slow-loris body, a body that never ends, JSON
//! nested 100,000 deep, a full disk, a database locked by another process, and the wall clock
//! jumping forward and back.
//!
//! Each row runs its own `teewatch run` process (cold caches, so a service fault is not hidden
//! by a cached answer) on one database shared by all rows, with the faulted target and a
//! healthy bystander checked every two seconds. For each row: the daemon keeps serving
//! `/metrics` and keeps checking the bystander, the faulted target's stored verdict names the
//! expected check, state and reason, the fault shows in the named series, the process's peak
//! RSS (`VmHWM`) stays under [`RSS_BUDGET_MIB`], every check stored before the row is still
//! stored, and SIGTERM still stops it cleanly. The clock rows run the daemon in-process, since
//! only there can a test move its clock. The table in `docs/security.md` is written by this
//! test (`TEEWATCH_BLESS=1`) and checked by it on every run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod clock;
mod doc;
mod harness;
mod raw;
mod rows;
mod store;

use std::path::PathBuf;

use crate::common;
use common::daemon_run::sample;
use common::sim_run::{Running, start};
use harness::{StoredCheck, extra_target, history, nothing_lost, row_config, stored};
use rows::{Expect, Metric, ROWS, Row, Setup};
use teewatch::verify::State;
use teewatch_sim::format::SimFormat;
use teewatch_sim::server::{SimOptions, model_name};

/// The peak RSS a row's daemon may reach. A daemon with a few targets sits near 20 MiB (30 MiB
/// at 100 targets, BENCHMARKS.md); a fetch holds at most the 16 MiB body cap, and that body is
/// held a few times over while it is parsed, kept in the bundle and compressed into the store.
/// 128 MiB allows all of that with room, and still catches a body read without its cap (the
/// 50 MB and endless bodies) or a parser that blows up on deep nesting.
pub const RSS_BUDGET_MIB: u64 = 128;

/// What provides the sqlite3 command-line shell, which holds the database's lock in one row.
pub const SQLITE3_INSTALL: &str = "apt-get install -y --no-install-recommends sqlite3";

/// The model every row keeps healthy (model 0 is dstack, 1 a NEAR gateway, 2 dstack).
const BYSTANDER: usize = 2;

/// What a row found, for the table.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub row: Row,
    /// `None` for an in-process row.
    pub peak_rss_kib: Option<u64>,
}

/// The matrix's shared state: the simulator, its configuration, the one database.
struct Matrix {
    run: Running,
    sim_config: String,
    db: PathBuf,
    problems: Vec<String>,
    outcomes: Vec<Outcome>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_leaves_the_daemon_up_its_history_whole_and_the_fault_visible() {
    let sqlite3 = common::tool::tool("sqlite3", SQLITE3_INSTALL);
    // Every simulator fault has its row, once.
    for fault in teewatch_sim::faults::ALL_FAULTS {
        let rows = ROWS
            .iter()
            .filter(|r| matches!(r.setup, Setup::Sim { fault: f, .. } if f == fault))
            .count();
        assert_eq!(rows, 1, "{fault}: expected one row, found {rows}");
    }
    let formats = vec![SimFormat::Dstack, SimFormat::NearGateway, SimFormat::Dstack];
    let run = start(
        "fault-matrix",
        SimOptions {
            models: formats.len(),
            formats,
            tls: true,
            ..SimOptions::default()
        },
    )
    .await;
    let sim_config = std::fs::read_to_string(run.dir.join("sim.toml")).unwrap();
    let db = run.dir.join("faults.db");
    let mut matrix = Matrix {
        run,
        sim_config,
        db,
        problems: Vec::new(),
        outcomes: Vec::new(),
    };
    matrix.healthy_round().await;
    for row in ROWS {
        match row.setup {
            Setup::Sim { .. } | Setup::Raw(_) | Setup::Refused => matrix.provider_row(row).await,
            Setup::DiskFull => store::disk_full(&mut matrix, row).await,
            Setup::DbLocked => store::database_locked(&mut matrix, row, &sqlite3).await,
            Setup::ClockForward | Setup::ClockBackward => {}
        }
    }
    clock::clock_rows(&mut matrix).await;
    // The store is whole after everything.
    let integrity = std::process::Command::new(&sqlite3)
        .arg(&matrix.db)
        .arg("PRAGMA integrity_check;")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&integrity.stdout).trim(),
        "ok",
        "{}",
        String::from_utf8_lossy(&integrity.stderr)
    );
    assert!(
        matrix.problems.is_empty(),
        "{} of {} rows differ:\n{}",
        matrix.problems.len(),
        ROWS.len(),
        matrix.problems.join("\n")
    );
    doc::check_or_bless(&matrix.outcomes);
}

impl Matrix {
    /// Writes the row's configuration next to the simulator's (its key and root files are
    /// named relative to it) and returns its path.
    fn write_config(&self, name: &str, text: &str) -> PathBuf {
        let path = self.run.dir.join(format!("row-{name}.toml"));
        std::fs::write(&path, text).unwrap();
        path
    }

    /// A process with every model healthy, so the first fault row has history to lose.
    async fn healthy_round(&mut self) {
        let names: Vec<String> = (0..3).map(model_name).collect();
        let keep: Vec<&str> = names.iter().map(String::as_str).collect();
        let config = self.write_config("healthy", &row_config(&self.sim_config, &keep, ""));
        let mut daemon = harness::start(&config, &self.db, |_| {}).await;
        daemon
            .wait_for("a stored check of every model", |s| {
                names.iter().all(|n| stored(s, n) >= 1.0)
            })
            .await;
        daemon.stop();
        let checks = history(&self.db);
        for index in [0, BYSTANDER] {
            let latest = latest_of(&checks, &model_name(index)).unwrap();
            assert_eq!(
                latest.state,
                "pass",
                "healthy {}: {latest:?}",
                model_name(index)
            );
        }
    }

    /// A row whose fault is the provider's (or a service's): its own process on cold caches.
    async fn provider_row(&mut self, row: Row) {
        let key_file = "sim.api-key";
        let mut _server = None;
        let bystander = model_name(BYSTANDER);
        let (target, extra) = match row.setup {
            Setup::Sim { fault, model } => {
                let name = model_name(model);
                self.run
                    .sim
                    .state
                    .set_fault(Some(&name), fault, true)
                    .unwrap();
                (name, String::new())
            }
            Setup::Raw(mode) => {
                let server = raw::start(mode).await;
                let name = format!("raw-{}", mode.name());
                let base = format!("http://127.0.0.1:{}", server.port);
                _server = Some(server);
                let extra = extra_target(&name, &base, key_file);
                (name, extra)
            }
            Setup::Refused => {
                let port = common::net::free_port();
                let base = format!("http://127.0.0.1:{port}");
                (
                    "refused".to_string(),
                    extra_target("refused", &base, key_file),
                )
            }
            _ => unreachable!("not a provider row"),
        };
        let keep: Vec<&str> = if extra.is_empty() {
            vec![target.as_str(), bystander.as_str()]
        } else {
            vec![bystander.as_str()]
        };
        let config = self.write_config(row.name, &row_config(&self.sim_config, &keep, &extra));
        let before = history(&self.db);
        // Cold: a cached collateral or JWKS would hide a service's fault until it expires.
        let _ = std::fs::remove_dir_all(self.run.dir.join("collateral"));
        let mut daemon = harness::start(&config, &self.db, |_| {}).await;
        let scrape = daemon
            .wait_for(
                &format!(
                    "{}: a stored check of {target} and of the bystander",
                    row.name
                ),
                |s| stored(s, &target) >= 1.0 && stored(s, &bystander) >= 1.0,
            )
            .await;
        let rss = daemon.peak_rss_kib();
        let alive = daemon.alive();
        let log = daemon.stop();
        if let Setup::Sim { fault, model } = row.setup {
            self.run
                .sim
                .state
                .set_fault(Some(&model_name(model)), fault, false)
                .unwrap();
        }
        let after = history(&self.db);
        nothing_lost(&before, &after, row.name);
        let latest = latest_of(&after, &target);
        println!("{}: {}", row.name, named(&row, latest));
        let mut problems = judge(&row, &target, latest, &scrape);
        if !alive {
            problems.push(format!("the daemon was not running at the end:\n{log}"));
        }
        self.finish(row, Some(rss), problems);
    }

    /// Records a row's outcome, printing its figures and any problem.
    fn finish(&mut self, row: Row, peak_rss_kib: Option<u64>, problems: Vec<String>) {
        let rss = peak_rss_kib.map_or("in-process".to_string(), |k| {
            format!("{:.1} MiB", k as f64 / 1024.0)
        });
        println!("fault matrix: {:<24} peak RSS {rss}", row.name);
        if let Some(kib) = peak_rss_kib {
            if kib > RSS_BUDGET_MIB * 1024 {
                self.problems.push(format!(
                    "{}: peak RSS {rss} over the {RSS_BUDGET_MIB} MiB budget",
                    row.name
                ));
            }
        }
        for p in problems {
            self.problems.push(format!("{}: {p}", row.name));
        }
        self.outcomes.push(Outcome { row, peak_rss_kib });
    }
}

/// The latest stored check of `target`.
fn latest_of<'a>(checks: &'a [StoredCheck], target: &str) -> Option<&'a StoredCheck> {
    checks
        .iter()
        .filter(|c| c.target == target)
        .max_by_key(|c| c.id)
}

/// The stored verdict and the row's check in it, as the run found them (printed per row).
fn named(row: &Row, latest: Option<&StoredCheck>) -> String {
    let (Expect::Verdict { check, .. }, Some(latest)) = (row.expect, latest) else {
        return "no verdict".into();
    };
    let found: Vec<String> = latest
        .failing
        .iter()
        .filter(|(n, ..)| n == check)
        .map(|(_, s, r)| format!("{s}: {r}"))
        .collect();
    format!("verdict {}; {check}: {found:?}", latest.state)
}

/// What differs between a row's expectation and the target's latest stored check and scrape.
fn judge(row: &Row, target: &str, latest: Option<&StoredCheck>, scrape: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if let Expect::Verdict {
        verdict,
        check,
        state,
        reason,
    } = row.expect
    {
        let Some(latest) = latest else {
            return vec![format!("no stored check of {target}")];
        };
        let found = || format!("found {} with {:#?}", latest.state, latest.failing);
        if latest.state != verdict.as_str() {
            problems.push(format!(
                "expected verdict {}, {}",
                verdict.as_str(),
                found()
            ));
        }
        let named = latest
            .failing
            .iter()
            .any(|(n, s, r)| n == check && s == state.as_str() && r.contains(reason));
        let passes = state == State::Pass && !latest.failing.iter().any(|(n, ..)| n == check);
        if !(named || passes) {
            problems.push(format!(
                "expected {check} {} with a reason containing {reason:?}, {}",
                state.as_str(),
                found()
            ));
        }
    }
    let shown = match row.metric {
        Metric::CheckState(check) => {
            let Expect::Verdict { state, .. } = row.expect else {
                unreachable!("a check's state is shown only for a stored verdict")
            };
            let code = teewatch::metrics::state_code(state) as f64;
            sample(
                scrape,
                "teewatch_check_state",
                &[("target", target), ("check", check)],
            ) == Some(code)
        }
        Metric::FetchError { endpoint, kind } => sample(
            scrape,
            "teewatch_fetch_errors_total",
            &[("target", target), ("endpoint", endpoint), ("kind", kind)],
        )
        .is_some_and(|n| n >= 1.0),
        Metric::StoreErrors => {
            sample(scrape, "teewatch_store_errors_total", &[]).is_some_and(|n| n >= 1.0)
        }
    };
    if !shown {
        let lines: Vec<&str> = scrape
            .lines()
            .filter(|l| l.contains(&format!("target=\"{target}\"")) && !l.starts_with('#'))
            .filter(|l| {
                l.starts_with("teewatch_check_state") || l.starts_with("teewatch_fetch_errors")
            })
            .collect();
        problems.push(format!(
            "the metric {} does not show it:\n{}",
            doc::metric_text(row),
            lines.join("\n")
        ));
    }
    problems
}
