//! The fault matrix as the table of `docs/security.md`, between its `fault-matrix` markers:
//! written from a run with `TEEWATCH_BLESS=1`, and otherwise checked on every run, with the peak
//! RSS column (a measurement, different on every run) compared only for being under budget.

use teewatch::verify::State;

use super::rows::{Expect, Metric, Row, Setup};
use super::{Outcome, RSS_BUDGET_MIB};
use crate::common;

const BEGIN: &str = "<!-- fault-matrix:begin -->";
const END: &str = "<!-- fault-matrix:end -->";

/// The series a row names, as the table shows it.
pub fn metric_text(row: &Row) -> String {
    match row.metric {
        Metric::CheckState(check) => {
            let code = match row.expect {
                Expect::Verdict { state, .. } => teewatch::metrics::state_code(state),
                Expect::NotStored { .. } => -1,
            };
            format!("`teewatch_check_state{{check=\"{check}\"}} {code}`")
        }
        Metric::FetchError { endpoint, kind } => {
            format!("`teewatch_fetch_errors_total{{endpoint=\"{endpoint}\",kind=\"{kind}\"}}`")
        }
        Metric::StoreErrors => "`teewatch_store_errors_total`".to_string(),
    }
}

fn injected(setup: Setup) -> String {
    match setup {
        Setup::Sim { fault, model } => {
            let model = if model == 0 {
                "dstack model"
            } else {
                "NEAR gateway model"
            };
            if fault.is_service_wide() {
                "simulator, every model".to_string()
            } else {
                format!("simulator, {model}")
            }
        }
        Setup::Raw(_) => "raw TCP provider".into(),
        Setup::Refused => "a closed port".into(),
        Setup::DiskFull => "RLIMIT_FSIZE 64 KiB".into(),
        Setup::DbLocked => "sqlite3 `BEGIN EXCLUSIVE` past the busy timeout".into(),
        Setup::ClockForward | Setup::ClockBackward => "injected clock (in-process)".into(),
    }
}

fn state(s: State) -> String {
    format!("`{}`", s.as_str())
}

/// A cell's text: pipes escaped.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

/// The table, with each row's measured peak RSS.
pub fn render(outcomes: &[Outcome]) -> String {
    let mut out = String::from(
        "| fault | injected by | stored verdict | the check that names it | metric | peak RSS |\n\
         |---|---|---|---|---|---|\n",
    );
    for o in outcomes {
        let row = &o.row;
        let (verdict, check) = match row.expect {
            Expect::Verdict {
                verdict,
                check,
                state: s,
                reason,
            } => {
                let reason = if reason.is_empty() {
                    String::new()
                } else {
                    format!(", reason contains \"{reason}\"")
                };
                (state(verdict), format!("`{check}` {}{reason}", state(s)))
            }
            Expect::NotStored { reason } => (
                "not stored; the last stored verdict stays served".to_string(),
                format!("log \"storing the check failed\", error contains \"{reason}\""),
            ),
        };
        let rss = o.peak_rss_kib.map_or("in-process".to_string(), |k| {
            format!("{:.0} MiB", k as f64 / 1024.0)
        });
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            row.name,
            cell(&injected(row.setup)),
            cell(&verdict),
            cell(&check),
            cell(&metric_text(row)),
            rss
        ));
    }
    out.push_str(&format!(
        "\nPeak RSS is `VmHWM` of the row's `teewatch run` process; the budget is {RSS_BUDGET_MIB} MiB.\n"
    ));
    out
}

/// The table with its measured column blanked, for comparing runs.
fn masked(table: &str) -> String {
    table
        .lines()
        .map(|line| match line.strip_suffix(" |") {
            Some(rest) if line.starts_with("| ") && !line.starts_with("| fault ") => {
                match rest.rsplit_once(" | ") {
                    Some((head, _)) => format!("{head} | … |"),
                    None => line.to_string(),
                }
            }
            _ => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Writes the table into `docs/security.md` under `TEEWATCH_BLESS=1`; else asserts that the
/// document's table is this run's (measurements aside) and that its recorded peaks are under
/// the budget.
pub fn check_or_bless(outcomes: &[Outcome]) {
    let path = common::repo_path("docs/security.md");
    let doc = std::fs::read_to_string(&path).unwrap();
    let (head, rest) = doc
        .split_once(BEGIN)
        .expect("docs/security.md has no fault-matrix:begin");
    let (current, tail) = rest
        .split_once(END)
        .expect("docs/security.md has no fault-matrix:end");
    let table = render(outcomes);
    if common::bless() {
        std::fs::write(&path, format!("{head}{BEGIN}\n{table}{END}{tail}")).unwrap();
        return;
    }
    assert_eq!(
        masked(current.trim()),
        masked(table.trim()),
        "docs/security.md's fault matrix differs from the test's rows; rerun with \
         TEEWATCH_BLESS=1 and say why in the commit"
    );
    for line in current.lines() {
        if let Some(mib) = line
            .strip_suffix(" MiB |")
            .and_then(|l| l.rsplit_once("| "))
            .and_then(|(_, n)| n.parse::<u64>().ok())
        {
            assert!(
                mib <= RSS_BUDGET_MIB,
                "docs/security.md records a peak of {mib} MiB, over the budget: {line}"
            );
        }
    }
}
