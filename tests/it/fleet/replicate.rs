//! Replicate mode end to end: three whole daemons in one process, one PostgreSQL database for
//! their checks and their fleet, `mode = "replicate"` with the vantage points eu-1, us-1 and
//! ap-1, each leaving from its own loopback address (`source_address` 127.0.0.1, .2, .3). The
//! simulator answers 127.0.0.3 through a rogue TLS terminator (`tls-intercept` scoped to that
//! client), which only a format that binds TLS keys can see: the NEAR gateway model fails
//! `tls_key_binding` from ap-1 alone. Every instance checks every target, once per slot and
//! vantage point; any instance's `/metrics` names the disagreement on that model and on nothing
//! else; each instance's target gauges show its own vantage point's verdict, including the ap-1
//! instance, which starts after the others stored theirs; and when the fault is cleared the
//! disagreement returns to 0.
//!
//! Why one gateway model beside dstack ones: the interception is of the connection, made before
//! any model is named, so from 127.0.0.3 every target is intercepted. The dstack format binds
//! no TLS key (`tls_key_binding` is not judged), so its targets are the controls: intercepted
//! too, and rightly no disagreement.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use teewatch::config::Schedule;
use teewatch::daemon::{Daemon, RunOptions};
use teewatch_sim::faults::{ClientFault, Fault};
use teewatch_sim::format::SimFormat;
use teewatch_sim::server::{SimOptions, model_name};

use super::pool;
use crate::common::daemon_run::{sample, scrape, series};
use crate::common::postgres::fresh_database;
use crate::common::sim_run::{Running, start};

/// (instance, vantage point, source address): ap-1's path is the intercepted one.
const MEMBERS: [(&str, &str, Ipv4Addr); 3] = [
    ("mon-eu", "eu-1", Ipv4Addr::new(127, 0, 0, 1)),
    ("mon-us", "us-1", Ipv4Addr::new(127, 0, 0, 2)),
    ("mon-ap", "ap-1", Ipv4Addr::new(127, 0, 0, 3)),
];
const INTERCEPTED: usize = 2;

/// Fail, unknown and pass as `teewatch_*_state` encode them (docs/metrics.md).
const PASS: f64 = 0.0;
const FAIL: f64 = 2.0;

/// The simulator's configuration for one member, in a folder of its own (so each has its own
/// collateral cache, as separate hosts would), with the fleet keys and `db` set. No `lease`:
/// the default shrinks to a third of the shortest interval.
fn member_config(run: &Running, url: &str, member: usize) -> PathBuf {
    let (instance, vantage, source) = MEMBERS[member];
    let dir = run.dir.join(instance);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(&run.dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_file() && name != "sim.toml" {
            std::fs::copy(&path, dir.join(&name)).unwrap();
        }
    }
    let text = std::fs::read_to_string(run.dir.join("sim.toml")).unwrap();
    let db_line = text
        .lines()
        .find(|l| l.starts_with("db = "))
        .unwrap()
        .to_string();
    let text = text.replacen(&db_line, &format!("db = \"{url}\""), 1).replacen(
        "[daemon]\n",
        &format!(
            "[daemon]\ninstance = \"{instance}\"\nmode = \"replicate\"\nvantage = \"{vantage}\"\nsource_address = \"{source}\"\n"
        ),
        1,
    );
    let path = dir.join("teewatch.toml");
    std::fs::write(&path, text).unwrap();
    path
}

async fn start_member(run: &Running, url: &str, member: usize) -> Daemon {
    Daemon::start(RunOptions {
        config_path: member_config(run, url, member),
        listen: Some("127.0.0.1:0".parse().unwrap()),
        db: None,
    })
    .await
    .unwrap_or_else(|e| panic!("{} did not start: {e}", MEMBERS[member].0))
}

/// Polls `done` every half second until it holds or `limit` has passed; false when it never
/// held.
async fn eventually<F, Fut>(limit: Duration, mut done: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if done().await {
            return true;
        }
        if started.elapsed() > limit {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Every stored check as (target, vantage point, instance, scheduled at in ns).
async fn stored_checks(db: &sqlx::PgPool) -> Vec<(String, String, String, i64)> {
    sqlx::query_as(
        "SELECT t.name, c.vantage, c.instance, c.scheduled_at
         FROM checks c JOIN targets t ON t.id = c.target_id ORDER BY c.id",
    )
    .fetch_all(db)
    .await
    .unwrap()
}

/// The vantage points each target has been checked from.
async fn vantages_by_target(db: &sqlx::PgPool) -> BTreeMap<String, BTreeSet<String>> {
    let mut seen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (target, vantage, _, _) in stored_checks(db).await {
        seen.entry(target).or_default().insert(vantage);
    }
    seen
}

/// The `teewatch_vantage_disagreement` series at 1 in a scrape, as (target, line).
fn disagreeing(m: &str) -> Vec<&str> {
    series(m, "teewatch_vantage_disagreement", &[])
        .into_iter()
        .filter(|l| l.ends_with(" 1"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_vantage_points_check_everything_and_any_instance_names_the_one_intercepted_path() {
    let gateway = model_name(0);
    let run = start(
        "fleet-replicate",
        SimOptions {
            models: 3,
            formats: vec![SimFormat::NearGateway, SimFormat::Dstack, SimFormat::Dstack],
            tls: true,
            client_faults: vec![ClientFault {
                client: IpAddr::V4(MEMBERS[INTERCEPTED].2),
                model: Some(gateway.clone()),
                fault: Fault::TlsIntercept,
            }],
            ..SimOptions::default()
        },
    )
    .await;
    let names: Vec<String> = run
        .config
        .monitored()
        .map(|(t, _)| t.name.clone())
        .collect();
    assert_eq!(names.len(), 3);
    let target = run.config.target(&gateway).unwrap();
    let Schedule::Interval(interval) = target.monitor.as_ref().unwrap().schedule else {
        panic!("the simulator's configuration checks on an interval");
    };
    let url = fresh_database("fleet replicate").await;
    let all: BTreeSet<String> = MEMBERS.iter().map(|m| m.1.to_string()).collect();

    // eu-1 and us-1 first, until each has stored a check of every target.
    let eu = start_member(&run, &url, 0).await;
    let us = start_member(&run, &url, 1).await;
    let db = pool(&url, 2).await;
    let first_two: BTreeSet<String> = all.iter().filter(|v| *v != "ap-1").cloned().collect();
    let stored = || async {
        let seen = vantages_by_target(&db).await;
        names.iter().all(|t| seen.get(t) == Some(&first_two))
    };
    assert!(
        eventually(interval * 6, stored).await,
        "{:?}",
        vantages_by_target(&db).await
    );

    // ap-1 joins later. Its gauges show its own vantage point's checks only, from its start
    // on: what it restores from the store is not a peer's latest check.
    let ap = start_member(&run, &url, 2).await;
    let m = scrape(&ap).await;
    let named = series(&m, "teewatch_target_checked_by_info", &[]);
    assert!(
        named.iter().all(|l| l.contains("checked_by=\"mon-ap\"")),
        "the ap-1 instance shows a peer's check as its own: {named:?}"
    );
    let members = [&eu, &us, &ap];

    // Every instance checks every target.
    let everywhere = || async {
        let seen = vantages_by_target(&db).await;
        names.iter().all(|t| seen.get(t) == Some(&all))
    };
    assert!(
        eventually(interval * 6, everywhere).await,
        "{:?}",
        vantages_by_target(&db).await
    );
    for (target, vantage, instance, _) in stored_checks(&db).await {
        let member = MEMBERS.iter().find(|m| m.1 == vantage).unwrap();
        assert_eq!(instance, member.0, "{target} checked from {vantage}");
    }

    // Any instance names the one disagreement, and the state of every target from every vantage
    // point (once its fleet view has read the checks just stored).
    for (i, d) in members.iter().enumerate() {
        let agreed = || async {
            let m = scrape(d).await;
            disagreeing(&m).len() == 1
                && sample(
                    &m,
                    "teewatch_vantage_disagreement",
                    &[("target", &gateway), ("check", "tls_key_binding")],
                ) == Some(1.0)
                && names.iter().all(|t| {
                    all.iter().all(|v| {
                        sample(
                            &m,
                            "teewatch_vantage_state",
                            &[("target", t), ("vantage", v)],
                        )
                        .is_some()
                    })
                })
        };
        assert!(
            eventually(interval * 3, agreed).await,
            "{}: {}",
            MEMBERS[i].0,
            scrape(d).await
        );
        let m = scrape(d).await;
        assert_eq!(
            disagreeing(&m),
            vec![
            format!(
                "teewatch_vantage_disagreement{{check=\"tls_key_binding\",target=\"{gateway}\"}} 1"
            )
            .as_str()
        ]
        );
        let state = |v: &str| {
            sample(
                &m,
                "teewatch_vantage_state",
                &[("target", &gateway), ("vantage", v)],
            )
        };
        assert_eq!(state("ap-1"), Some(FAIL), "{m}");
        // The healthy paths saw what the eu-1 instance's own gauge shows.
        let healthy = sample(
            &scrape(&eu).await,
            "teewatch_target_state",
            &[("target", &gateway)],
        );
        assert!(healthy.is_some_and(|s| s < FAIL), "{healthy:?}");
        assert_eq!(state("eu-1"), healthy, "{m}");
        assert_eq!(state("us-1"), healthy, "{m}");
        // The dstack targets were intercepted from ap-1 too; nothing they judge differs.
        for t in &names[1..] {
            for v in &all {
                assert_eq!(
                    sample(
                        &m,
                        "teewatch_vantage_state",
                        &[("target", t), ("vantage", v)]
                    ),
                    Some(PASS),
                    "{t} from {v}: {m}"
                );
            }
        }
    }

    // Each instance's own target gauges show its own vantage point's verdict, and name it.
    for (i, d) in members.iter().enumerate() {
        let (instance, vantage, _) = MEMBERS[i];
        let m = scrape(d).await;
        let binding = sample(
            &m,
            "teewatch_check_state",
            &[("target", &gateway), ("check", "tls_key_binding")],
        );
        let expected = if i == INTERCEPTED { FAIL } else { PASS };
        assert_eq!(binding, Some(expected), "{instance}: {m}");
        for t in &names {
            assert_eq!(
                series(&m, "teewatch_target_checked_by_info", &[("target", t)]),
                vec![
                    format!(
                        "teewatch_target_checked_by_info{{checked_by=\"{instance}\",target=\"{t}\",vantage=\"{vantage}\"}} 1"
                    )
                    .as_str()
                ],
                "{instance}"
            );
        }
    }

    // The terminator goes away; ap-1's next check passes, and the disagreement ends.
    run.sim
        .state
        .set_client_fault(
            IpAddr::V4(MEMBERS[INTERCEPTED].2),
            Some(&gateway),
            Fault::TlsIntercept,
            false,
        )
        .unwrap();
    let cleared_at = Instant::now();
    for (i, d) in members.iter().enumerate() {
        let cleared = || async {
            let m = scrape(d).await;
            sample(
                &m,
                "teewatch_vantage_disagreement",
                &[("target", &gateway), ("check", "tls_key_binding")],
            ) == Some(0.0)
                && disagreeing(&m).is_empty()
        };
        // Two intervals, and the fleet view's few seconds on top.
        assert!(
            eventually(
                (interval * 2 + Duration::from_secs(5)).saturating_sub(cleared_at.elapsed()),
                cleared
            )
            .await,
            "{} after {:?}: {}",
            MEMBERS[i].0,
            cleared_at.elapsed(),
            scrape(d).await
        );
    }
    let m = scrape(&ap).await;
    assert_eq!(
        sample(
            &m,
            "teewatch_check_state",
            &[("target", &gateway), ("check", "tls_key_binding")]
        ),
        Some(PASS),
        "{m}"
    );

    for d in [eu, us, ap] {
        d.shutdown(Duration::from_secs(10)).await;
    }
    // No target was checked twice by one vantage point in one slot: each stored check is in a
    // slot of its own for its target and vantage point, and each is the one its claim allowed.
    let mut slots: BTreeMap<(String, String, i64), usize> = BTreeMap::new();
    for (target, vantage, _, scheduled_at) in stored_checks(&db).await {
        let at = chrono::DateTime::from_timestamp_nanos(scheduled_at);
        let slot = teewatch::fleet::slot_key(&Schedule::Interval(interval), at);
        *slots.entry((target, vantage, slot)).or_default() += 1;
    }
    let twice: Vec<_> = slots.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "checked twice in one slot: {twice:?}");
    let claims: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT target, vantage, slot_at FROM slot_claims")
            .fetch_all(&db)
            .await
            .unwrap();
    let claimed: BTreeSet<_> = claims.into_iter().collect();
    let checked: BTreeSet<_> = slots.into_keys().collect();
    assert_eq!(checked, claimed, "checks stored vs slots claimed");
}
