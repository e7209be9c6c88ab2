//! The fleet dashboard's SQL (`dashboards/grafana/teewatch-fleet.json`) against a real store: a
//! PostgreSQL database migrated by teewatch itself (`Store::open_location` on the `[daemon] db`
//! URL of a configuration), with real checks recorded as two instances from two vantage points
//! would record them (a pass from `eu-1`, a failure from `us-1`, a later pass raising a drift
//! event that is then acknowledged). Every query of every panel and variable is expanded as
//! Grafana's PostgreSQL data source expands it (`dashboard/grafana_sql.rs`) and run: each returns
//! the columns its panel reads and the rows those checks make. A control runs the first query
//! with the seconds filter instead of the nanosecond one and finds nothing. Without the test
//! server (`TEEWATCH_TEST_POSTGRES`, started by scripts/test) it fails saying how to start one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgPool, PgRow};
use sqlx::{Column as _, Row as _};

use super::dashboard::fleet::{fleet_dashboard, sql_queries};
use super::dashboard::grafana_sql::{Context, expand};
use crate::common::postgres::fresh_database;
use crate::common::sim_run::{Running, start};
use teewatch::config::Config;
use teewatch::drift::{self, DriftReason, TargetHistory};
use teewatch::record::{CheckRecord, Phase, PhaseDuration};
use teewatch::store::{AckOutcome, AckRequest, Store};
use teewatch::verify::{self, Bundle, State};
use teewatch_sim::faults::Fault;
use teewatch_sim::server::{SimOptions, model_name};

/// The columns each query returns, by where it is in the dashboard.
const COLUMNS: [(&str, &[&str]); 8] = [
    (
        "panel Checks per hour by state",
        &["time", "metric", "checks"],
    ),
    (
        "panel Checks per hour by instance",
        &["time", "metric", "checks"],
    ),
    (
        "panel Latest check per target and vantage",
        &[
            "target", "vantage", "instance", "state", "format", "finished",
        ],
    ),
    (
        "panel Failing checks with reasons",
        &[
            "time", "target", "instance", "vantage", "check", "scope", "state", "reason",
        ],
    ),
    (
        "panel Drift events over time",
        &["time", "metric", "events"],
    ),
    (
        "panel Drift events",
        &[
            "time",
            "target",
            "field",
            "node",
            "old_values",
            "new_value",
            "reasons",
            "instance",
            "vantage",
            "accepted",
        ],
    ),
    (
        "panel Accepted drift",
        &[
            "time",
            "target",
            "field",
            "value",
            "how",
            "accepted_by",
            "note",
        ],
    ),
    ("variable target", &["name"]),
];

/// One real check of the simulator's model, recorded as run by `instance` from `vantage`,
/// started at `started`; its drift judged against `history` (then absorbed).
async fn check(
    run: &Running,
    instance: &str,
    vantage: &str,
    started: DateTime<Utc>,
    history: &mut TargetHistory,
) -> CheckRecord {
    let target = run.config.target(&model_name(0)).unwrap();
    let fetched = run.fetcher.check_timed(&run.config, target).await.unwrap();
    let bundle = Bundle::from_value(fetched.bundle.clone()).unwrap();
    let verdict = verify::verify(&bundle, &target.policy, &run.config.trust_anchors());
    let measurements = drift::measurements(&verdict);
    let finished = started + chrono::Duration::milliseconds(1_500);
    let events = drift::detect(history, &measurements, &target.policy, finished);
    history.absorb(&measurements, &events, finished);
    let mut phases = fetched.phases;
    phases.push(PhaseDuration {
        phase: Phase::Verify,
        duration: Duration::from_millis(4),
    });
    CheckRecord {
        target: model_name(0),
        scheduled_at: started,
        started_at: started,
        finished_at: finished,
        phases,
        fetch_errors: CheckRecord::fetch_errors_of(&bundle),
        bundle: fetched.bundle,
        verdict,
        measurements,
        drift: events,
        instance: instance.to_string(),
        vantage: vantage.to_string(),
        claim: None,
    }
}

/// The simulator's configuration with `[daemon] db` pointing at `url`, loaded as the daemon
/// loads it.
fn config_for(run: &Running, url: &str) -> Config {
    let path = run.dir.join("sim.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut replaced = 0;
    let text: String = text
        .lines()
        .map(|line| {
            if line.starts_with("db = ") {
                replaced += 1;
                format!("db = \"{url}\"\n")
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    assert_eq!(replaced, 1, "one `db =` line in {path:?}");
    let fleet = run.dir.join("fleet.toml");
    std::fs::write(&fleet, text).unwrap();
    Config::load(&fleet).unwrap_or_else(|e| panic!("{e}"))
}

fn text(row: &PgRow, column: &str) -> String {
    row.try_get::<String, _>(column)
        .unwrap_or_else(|e| panic!("{column}: {e}"))
}

/// Whole seconds, in nanoseconds (Grafana's ranges are whole milliseconds; whole seconds keep
/// the `$__timeFilter` emulation exact too).
fn whole_seconds_ns(at: DateTime<Utc>) -> i64 {
    at.timestamp() * 1_000_000_000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sql_query_of_the_fleet_dashboard_returns_its_columns_from_a_real_store() {
    let run = start("fleet-dashboard-sql", SimOptions::default()).await;
    let url = fresh_database("fleet dashboard sql").await;
    let config = config_for(&run, &url);
    let store = Store::open_location(&config.daemon.db).await.unwrap();
    let name = model_name(0);

    // tw-a checks from eu-1, tw-b from us-1, where the answer is another signing address.
    let now = Utc::now();
    let mut history = TargetHistory::default();
    let first = check(
        &run,
        "tw-a",
        "eu-1",
        now - chrono::Duration::hours(2),
        &mut history,
    )
    .await;
    assert_eq!(first.verdict.state, State::Pass, "{:?}", first.verdict);
    store.record(&first).await.unwrap();
    run.sim
        .state
        .set_fault(None, Fault::WrongAddress, true)
        .unwrap();
    let second = check(
        &run,
        "tw-b",
        "us-1",
        now - chrono::Duration::hours(2) + chrono::Duration::seconds(1),
        &mut history,
    )
    .await;
    run.sim
        .state
        .set_fault(None, Fault::WrongAddress, false)
        .unwrap();
    assert_eq!(second.verdict.state, State::Fail, "{:?}", second.verdict);
    store.record(&second).await.unwrap();
    // A later check from eu-1 that finds an MRTD never seen before: one drift event.
    let mut known = TargetHistory::default();
    known
        .values
        .entry("mrtd".into())
        .or_default()
        .insert("00".repeat(48), now - chrono::Duration::days(1));
    let third = check(
        &run,
        "tw-a",
        "eu-1",
        now - chrono::Duration::hours(1),
        &mut known,
    )
    .await;
    assert_eq!(third.drift.len(), 1, "{:?}", third.drift);
    assert_eq!(third.drift[0].reasons, [DriftReason::New]);
    store.record(&third).await.unwrap();
    let ack = store
        .acknowledge(&AckRequest {
            target: name.clone(),
            field: "mrtd".into(),
            value: None,
            by: Some("ops@example".into()),
            note: Some("release 2".into()),
            at: now - chrono::Duration::minutes(30),
        })
        .await
        .unwrap();
    assert!(matches!(ack, AckOutcome::Accepted(_)), "{ack:?}");

    let pool = PgPool::connect(&url).await.unwrap();
    let ctx = Context {
        from_ns: whole_seconds_ns(now - chrono::Duration::days(1)),
        to_ns: whole_seconds_ns(now + chrono::Duration::hours(1)),
        interval: "10m",
        variables: &[("target", &[name.as_str(), "not-a-target"])],
    };
    let queries = sql_queries(&fleet_dashboard());
    assert_eq!(
        queries.len(),
        COLUMNS.len(),
        "a query without expected columns here"
    );
    let mut results: BTreeMap<String, Vec<PgRow>> = BTreeMap::new();
    for q in &queries {
        let sql = expand(&q.sql, &ctx).unwrap_or_else(|e| panic!("{}: {e}", q.place));
        let rows = sqlx::query(&sql)
            .fetch_all(&pool)
            .await
            .unwrap_or_else(|e| panic!("{}: PostgreSQL refused\n{sql}\n{e}", q.place));
        let expected = COLUMNS
            .iter()
            .find(|(place, _)| *place == q.place)
            .unwrap_or_else(|| panic!("no expected columns for {}", q.place))
            .1;
        assert!(!rows.is_empty(), "{}: no rows from\n{sql}", q.place);
        let columns: Vec<&str> = rows[0].columns().iter().map(|c| c.name()).collect();
        assert_eq!(columns, expected, "{}", q.place);
        results.insert(q.place.clone(), rows);
    }

    // Time series: whole buckets inside the range, and every check counted once.
    let hours = &results["panel Checks per hour by state"];
    let mut by_state = BTreeMap::new();
    for row in hours {
        let time: f64 = row.try_get("time").unwrap();
        assert_eq!(time % 3600.0, 0.0, "a bucket starts on the hour: {time}");
        assert!(time * 1e9 >= ctx.from_ns as f64 - 3600e9 && time * 1e9 <= ctx.to_ns as f64);
        *by_state.entry(text(row, "metric")).or_insert(0) +=
            row.try_get::<i64, _>("checks").unwrap();
    }
    assert_eq!(
        by_state,
        BTreeMap::from([("fail".into(), 1), ("pass".into(), 2)])
    );
    let mut by_instance = BTreeMap::new();
    for row in &results["panel Checks per hour by instance"] {
        *by_instance.entry(text(row, "metric")).or_insert(0) +=
            row.try_get::<i64, _>("checks").unwrap();
    }
    assert_eq!(
        by_instance,
        BTreeMap::from([("tw-a".into(), 2), ("tw-b".into(), 1)])
    );

    // The latest check of the target from each vantage point, with who ran it.
    let latest: Vec<[String; 4]> = results["panel Latest check per target and vantage"]
        .iter()
        .map(|r| ["target", "vantage", "instance", "state"].map(|c| text(r, c)))
        .collect();
    assert_eq!(
        latest,
        [
            [name.clone(), "eu-1".into(), "tw-a".into(), "pass".into()],
            [name.clone(), "us-1".into(), "tw-b".into(), "fail".into()],
        ]
    );

    // The failing check's results: from us-1 only, with their reasons.
    let failing = &results["panel Failing checks with reasons"];
    assert!(failing.iter().any(|r| text(r, "state") == "fail"));
    for row in failing {
        assert_eq!(
            [text(row, "instance"), text(row, "vantage")],
            ["tw-b", "us-1"]
        );
        assert!(!text(row, "reason").is_empty() && !text(row, "check").is_empty());
    }

    // The drift event, raised by tw-a from eu-1, accepted since; and the acceptance.
    let drift = &results["panel Drift events"];
    assert_eq!(drift.len(), 1);
    assert_eq!(
        ["field", "instance", "vantage", "reasons"].map(|c| text(&drift[0], c)),
        ["mrtd", "tw-a", "eu-1", "new"]
    );
    assert!(drift[0].try_get::<bool, _>("accepted").unwrap());
    let over_time = &results["panel Drift events over time"];
    assert_eq!(text(&over_time[0], "metric"), "mrtd");
    let accepted = &results["panel Accepted drift"];
    assert_eq!(
        ["field", "how", "accepted_by", "note"].map(|c| text(&accepted[0], c)),
        ["mrtd", "ack", "ops@example", "release 2"]
    );
    let names: Vec<String> = results["variable target"]
        .iter()
        .map(|r| text(r, "name"))
        .collect();
    assert_eq!(names, [name.as_str()]);

    // The control: the same first query filtering in seconds finds none of those checks.
    let seconds = queries[0]
        .sql
        .replace("$__unixEpochNanoFilter(", "$__unixEpochFilter(");
    assert_ne!(seconds, queries[0].sql);
    let rows = sqlx::query(&expand(&seconds, &ctx).unwrap())
        .fetch_all(&pool)
        .await
        .unwrap();
    assert!(rows.is_empty(), "a seconds filter matched nanosecond times");
    pool.close().await;
}
