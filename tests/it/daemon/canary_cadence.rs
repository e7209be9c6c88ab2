//! The canary cadence against the simulator, counting the chats it was asked for: with
//! `[target.canary] every = 3` the chats run on checks 1, 4 and 7 while the checks between list
//! the canary checks as not run and keep the target passing; a failing canary keeps the target
//! failing across the checks between; an attestation failure spends no chat; `every = 0` is
//! refused; every stored bundle re-verifies offline to its stored verdict; and the verdict the
//! daemon builds from the attestation's (`rejudge_canaries`) is the full verifier's, byte for
//! byte, on the real-vector bundles.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use crate::common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::daemon_run::{manual_schedule, sample, scrape, start_daemon, status_page};
use common::sim_run::{Running, start};

use teewatch::config::Config;
use teewatch::store::{HistoryFilter, Store};
use teewatch::verify::{self, Bundle, Check, State, Verdict};
use teewatch_sim::faults::Fault;
use teewatch_sim::server::{SimOptions, model_name};

const CANARY: [&str; 3] = ["canary_fresh", "canary_hashes", "canary_signature"];

/// The simulator's configuration with the one target's chats on every `every`-th check and the
/// schedule left to the test.
fn configure(run: &Running, every: u32) -> PathBuf {
    let path = run.dir.join("sim.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let with_every = text.replacen(
        "interval = \"10s\"\n",
        &format!("interval = \"10s\"\n\n[target.canary]\nevery = {every}\n"),
        1,
    );
    assert_ne!(
        with_every, text,
        "the simulator's target has an interval line"
    );
    std::fs::write(&path, with_every).unwrap();
    manual_schedule(&path);
    path
}

/// One check now, and how many chats the simulator was asked for during it.
async fn check_counting_chats(run: &Running, daemon: &teewatch::daemon::Daemon, t: &str) -> usize {
    let before = run.sim.state.chat_requests();
    assert!(daemon.check_now(t).await, "the check of {t} ran");
    run.sim.state.chat_requests() - before
}

/// The stored checks, oldest first, with their verdicts and bundles.
async fn stored(db: &Path) -> Vec<(i64, Verdict, serde_json::Value)> {
    let store = Store::open_existing(db).await.unwrap();
    let mut rows = store.history(&HistoryFilter::default()).await.unwrap();
    rows.reverse();
    let mut out = Vec::new();
    for row in rows {
        let verdict = store.verdict(row.id).await.unwrap();
        let bundle = store.export_bundle(row.id).await.unwrap();
        out.push((row.id, verdict, bundle));
    }
    store.close().await;
    out
}

fn canary_checks(verdict: &Verdict) -> Vec<&Check> {
    verdict
        .checks
        .iter()
        .filter(|c| CANARY.contains(&c.name.as_str()))
        .collect()
}

/// Every stored bundle re-verifies offline, under the configuration, to the stored verdict.
fn assert_reverifies(config_path: &Path, t: &str, checks: &[(i64, Verdict, serde_json::Value)]) {
    let config = Config::load(config_path).unwrap();
    let policy = &config.target(t).unwrap().policy;
    let anchors = config.trust_anchors();
    for (id, verdict, bundle) in checks {
        let offline = verify::verify(
            &Bundle::from_value(bundle.clone()).unwrap(),
            policy,
            &anchors,
        );
        assert_eq!(&offline, verdict, "check {id} re-verifies to its verdict");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chats_run_on_every_third_check_and_the_checks_between_still_pass() {
    let run = start("canary-every-3", SimOptions::default()).await;
    let path = configure(&run, 3);
    let daemon = start_daemon(&path, &run.dir).await;
    let target = model_name(0);
    let t = target.as_str();

    let mut chats = Vec::new();
    for _ in 0..7 {
        chats.push(check_counting_chats(&run, &daemon, t).await);
        let m = scrape(&daemon).await;
        // The target passes on every check, and the canary gauge keeps the last run's pass.
        assert_eq!(
            sample(&m, "teewatch_target_state", &[("target", t)]),
            Some(0.0),
            "check {}: {m}",
            chats.len()
        );
        assert_eq!(
            sample(
                &m,
                "teewatch_check_state",
                &[("target", t), ("check", "canary_signature")]
            ),
            Some(0.0)
        );
    }
    // Both modes (streamed and not) on checks 1, 4 and 7 only.
    assert_eq!(chats, [2, 0, 0, 2, 0, 0, 2]);
    let page = status_page(&daemon).await;
    // The manual schedule is a yearly cron: 2 chats a year, a third of them spent.
    assert!(
        page.contains("<small data-chats-per-day=\"0.0\">0.0 chats/day, every 3 checks</small>"),
        "{page}"
    );
    daemon.shutdown(Duration::from_secs(5)).await;

    let checks = stored(&common::daemon_run::db_path(&run.dir)).await;
    assert_eq!(checks.len(), 7);
    for (i, (id, verdict, bundle)) in checks.iter().enumerate() {
        assert_eq!(verdict.state, State::Pass, "check {id}: {verdict:#?}");
        let canary = canary_checks(verdict);
        if i % 3 == 0 {
            // Two chats, each judged: six canary checks, all passing.
            assert_eq!(canary.len(), 6, "{canary:#?}");
            assert!(canary.iter().all(|c| c.state == State::Pass), "{canary:#?}");
            assert!(bundle.get("canary_not_run").is_none());
        } else {
            let run_id = checks[i - i % 3].0;
            let run_at = &checks[i - i % 3].1.observed_at;
            assert_eq!(canary.len(), 3, "{canary:#?}");
            for check in canary {
                assert_eq!(check.state, State::Unknown, "{check:?}");
                assert_eq!(check.scope, "");
                let prefix = format!(
                    "not run on this check: the chats run on every 3rd check; its last run (check {run_id} at {run_at}, "
                );
                assert!(check.reason.starts_with(&prefix), "{}", check.reason);
                assert!(
                    check.reason.ends_with(" s before this check) passed"),
                    "{}",
                    check.reason
                );
            }
            assert_eq!(bundle["canary_not_run"]["why"], "not_due");
            assert_eq!(bundle["canary_not_run"]["last_run"]["check_id"], run_id);
            assert!(bundle["canary"].is_null());
        }
    }
    assert_reverifies(&path, t, &checks);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_canary_keeps_the_target_failing_until_a_chat_passes() {
    let run = start("canary-every-3-failing", SimOptions::default()).await;
    let path = configure(&run, 3);
    let daemon = start_daemon(&path, &run.dir).await;
    let target = model_name(0);
    let t = target.as_str();

    // The chats are signed by a key no part attests.
    run.sim
        .state
        .set_fault(None, Fault::SignatureOtherKey, true)
        .unwrap();
    let mut chats = Vec::new();
    for _ in 0..3 {
        chats.push(check_counting_chats(&run, &daemon, t).await);
        let m = scrape(&daemon).await;
        assert_eq!(
            sample(&m, "teewatch_target_state", &[("target", t)]),
            Some(2.0),
            "{m}"
        );
        // The gauge (and so TeewatchCanarySignatureFailing) keeps the failing run's value.
        assert_eq!(
            sample(
                &m,
                "teewatch_check_state",
                &[("target", t), ("check", "canary_signature")]
            ),
            Some(2.0)
        );
    }
    assert_eq!(chats, [2, 0, 0]);
    // The provider is fixed; the next run's chats pass and clear the target.
    run.sim
        .state
        .set_fault(None, Fault::SignatureOtherKey, false)
        .unwrap();
    assert_eq!(check_counting_chats(&run, &daemon, t).await, 2);
    let m = scrape(&daemon).await;
    assert_eq!(
        sample(&m, "teewatch_target_state", &[("target", t)]),
        Some(0.0)
    );
    daemon.shutdown(Duration::from_secs(5)).await;

    let checks = stored(&common::daemon_run::db_path(&run.dir)).await;
    let states: Vec<State> = checks.iter().map(|(_, v, _)| v.state).collect();
    assert_eq!(states, [State::Fail, State::Fail, State::Fail, State::Pass]);
    let first_id = checks[0].0;
    for (_, verdict, _) in &checks[1..3] {
        // Only the carried canary fails: the attestation passed on these checks.
        let failing: Vec<&str> = verdict
            .checks
            .iter()
            .filter(|c| c.state == State::Fail)
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(failing, ["canary_signature"], "{verdict:#?}");
        let signature = verdict.checks_named("canary_signature").next().unwrap();
        assert!(
            signature.reason.starts_with(&format!(
                "not run on this check: the chats run on every 3rd check; its last run (check {first_id} at "
            )) && signature.reason.contains(" failed: signature recovers to 0x"),
            "{}",
            signature.reason
        );
    }
    assert_reverifies(&path, t, &checks);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attestation_failure_spends_no_chat() {
    let run = start("canary-attestation-failed", SimOptions::default()).await;
    let path = configure(&run, 1);
    let daemon = start_daemon(&path, &run.dir).await;
    let target = model_name(0);
    let t = target.as_str();

    run.sim
        .state
        .set_fault(None, Fault::BadQuoteSignature, true)
        .unwrap();
    assert_eq!(check_counting_chats(&run, &daemon, t).await, 0);
    run.sim
        .state
        .set_fault(None, Fault::BadQuoteSignature, false)
        .unwrap();
    // Recovered: the chats are spent again, on every check as `every = 1` says.
    assert_eq!(check_counting_chats(&run, &daemon, t).await, 2);
    daemon.shutdown(Duration::from_secs(5)).await;

    let checks = stored(&common::daemon_run::db_path(&run.dir)).await;
    let (_, failed, bundle) = &checks[0];
    assert_eq!(failed.state, State::Fail);
    assert_eq!(bundle["canary_not_run"]["why"], "attestation_failed");
    for check in canary_checks(failed) {
        assert_eq!(check.state, State::Unknown);
        assert_eq!(
            check.reason,
            "not run: the attestation did not pass (tdx_quote_signature failed), so no chat was spent"
        );
    }
    assert_eq!(checks[1].1.state, State::Pass);
    assert_reverifies(&path, t, &checks);
}

#[test]
fn every_zero_or_negative_is_refused_naming_the_key() {
    for (every, found) in [("0", "0"), ("-2", "-2")] {
        let text = format!(
            "[[target]]\nname = \"t\"\nprofile = \"nanogpt\"\nmodel = \"TEE/m\"\n\
             api_key_env = \"TEEWATCH_TEST_KEY\"\n\n[target.canary]\nevery = {every}\n"
        );
        let error = Config::parse(&text, "t.toml").unwrap_err().to_string();
        assert!(
            error.contains(&format!(
                "target[0].canary.every: expected an integer from 1 to 10000, found {found}"
            )),
            "{error}"
        );
    }
    let config = Config::parse(
        "[[target]]\nname = \"t\"\nprofile = \"nanogpt\"\nmodel = \"TEE/m\"\n\
         api_key_env = \"TEEWATCH_TEST_KEY\"\n\n[target.canary]\nevery = 6\n",
        "t.toml",
    )
    .unwrap();
    let monitor = config.target("t").unwrap().monitor.as_ref().unwrap();
    assert_eq!(monitor.canary.every, 6);
    // 2 chats a run, 288 checks a day at the default 5 minutes, on one check in six.
    assert_eq!(
        teewatch::daemon::runner::cadence::chats_per_day(monitor),
        Some(96.0)
    );
}

/// The verdict the daemon builds from the one judged before the chats is the verifier's own: on
/// every real-vector bundle, judged first without its chats, then given them back.
#[test]
fn rejudging_the_canaries_gives_the_full_verdict() {
    let dir = common::repo_path("tests/bundles");
    let mut judged = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let bundle = common::bundle(&name);
        let full = common::verdict(&bundle);
        let mut without = bundle.clone();
        without.canary = None;
        let mut rejudged = common::verdict(&without);
        verify::rejudge_canaries(&mut rejudged, &bundle);
        assert_eq!(
            serde_json::to_string_pretty(&rejudged).unwrap(),
            serde_json::to_string_pretty(&full).unwrap(),
            "{name}"
        );
        judged += 1;
    }
    assert!(judged >= 11, "the real-vector bundles were judged");
}
