//! Unit tests of the scheduling policy, driven by a fake clock: every `now` is a value the test
//! chooses.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};

use super::*;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 10, 12, 0, 0).unwrap()
}

fn secs(s: i64) -> TimeDelta {
    TimeDelta::seconds(s)
}

fn interval(name: &str, seconds: u64) -> PlannedTarget {
    PlannedTarget {
        name: name.to_owned(),
        schedule: Schedule::Interval(Duration::from_secs(seconds)),
        deadline: Duration::from_secs(30),
    }
}

fn cron(name: &str, expression: &str) -> PlannedTarget {
    PlannedTarget {
        name: name.to_owned(),
        schedule: Schedule::Cron(expression.to_owned()),
        deadline: Duration::from_secs(30),
    }
}

fn planner(targets: &[PlannedTarget], now: DateTime<Utc>) -> Planner {
    let mut planner = Planner::new(PlannerOptions::default());
    planner.set_targets(targets, now).unwrap();
    planner
}

fn starts(decisions: &[Decision]) -> Vec<&Due> {
    decisions
        .iter()
        .filter_map(|d| match d {
            Decision::Start(due) => Some(due),
            Decision::Skip { .. } => None,
        })
        .collect()
}

fn skips(decisions: &[Decision]) -> usize {
    decisions
        .iter()
        .filter(|d| matches!(d, Decision::Skip { .. }))
        .count()
}

#[test]
fn phase_is_stable_and_within_range() {
    let range = Duration::from_secs(60);
    for i in 0..200 {
        let name = format!("target-{i}");
        let p = phase(&name, range);
        assert!(p < range);
        assert_eq!(p, phase(&name, range), "the phase must not change");
    }
    assert_eq!(phase("x", Duration::ZERO), Duration::ZERO);
}

#[test]
fn first_slot_is_now_plus_phase_within_the_interval() {
    let p = planner(&[interval("a", 30), interval("b", 600)], t0());
    let a = p.next_due("a").unwrap();
    assert!(a >= t0() && a < t0() + secs(30), "{a}");
    assert_eq!(
        a,
        t0() + TimeDelta::from_std(phase("a", Duration::from_secs(30))).unwrap()
    );
    // A long interval is bounded by max_phase (60 s), not by the interval.
    let b = p.next_due("b").unwrap();
    assert!(b >= t0() && b < t0() + secs(60), "{b}");
    assert_eq!(p.next_wakeup(), Some(a.min(b)));
}

#[test]
fn jitter_spreads_a_thousand_targets() {
    let targets: Vec<PlannedTarget> = (0..1000)
        .map(|i| interval(&format!("endpoint-{i:04}"), 60))
        .collect();
    let p = planner(&targets, t0());
    let mut per_second: HashMap<i64, usize> = HashMap::new();
    for target in &targets {
        let slot = p.next_due(&target.name).unwrap();
        assert!(slot >= t0() && slot < t0() + secs(60));
        *per_second.entry(slot.timestamp()).or_default() += 1;
    }
    // Uniform spreading puts about 17 in each second; no second may hold more than 4 %.
    let busiest = per_second.values().copied().max().unwrap();
    assert!(busiest <= 40, "{busiest} targets fire in the same second");
    assert!(
        per_second.len() >= 55,
        "only {} distinct seconds",
        per_second.len()
    );
}

#[test]
fn interval_target_fires_on_its_grid() {
    let mut p = planner(&[interval("a", 10)], t0());
    let first = p.next_due("a").unwrap();
    assert!(p.due(first - TimeDelta::milliseconds(1)).is_empty());
    for k in 0..5 {
        // Each tick comes a little late; the grid does not drift with it.
        let slot = first + secs(10 * k);
        let now = slot + TimeDelta::milliseconds(700);
        let decisions = p.due(now);
        let due = starts(&decisions);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].scheduled_at, slot);
        assert_eq!(due[0].started_at, now);
        p.finished("a");
        assert_eq!(p.next_due("a"), Some(slot + secs(10)));
        assert!(p.due(now + secs(1)).is_empty(), "one check per slot");
    }
}

#[test]
fn a_running_target_is_skipped_not_started_twice() {
    let mut p = planner(&[interval("a", 10)], t0());
    let first = p.next_due("a").unwrap();
    assert_eq!(starts(&p.due(first)).len(), 1);
    assert_eq!(p.running(), 1);
    // The check runs through the next three slots: each is skipped and counted.
    for k in 1..=3 {
        let decisions = p.due(first + secs(10 * k));
        assert_eq!(starts(&decisions).len(), 0);
        assert_eq!(skips(&decisions), 1);
        assert_eq!(
            decisions[0],
            Decision::Skip {
                target: "a".to_owned(),
                scheduled_at: first + secs(10 * k)
            }
        );
    }
    p.finished("a");
    assert_eq!(p.running(), 0);
    assert_eq!(starts(&p.due(first + secs(40))).len(), 1);
}

#[test]
fn catch_up_after_a_long_pause_fires_once_and_realigns() {
    let mut p = planner(&[interval("a", 10)], t0());
    let first = p.next_due("a").unwrap();
    assert_eq!(starts(&p.due(first)).len(), 1);
    p.finished("a");
    // The clock jumps ten intervals and a bit (a stopped process, a suspended VM).
    let resumed = first + secs(100) + TimeDelta::milliseconds(3_500);
    let decisions = p.due(resumed);
    assert_eq!(decisions.len(), 1, "one check, not a burst: {decisions:?}");
    let due = starts(&decisions);
    assert_eq!(due[0].scheduled_at, first + secs(10));
    p.finished("a");
    // The next slot is back on the original grid, strictly after the resume.
    assert_eq!(p.next_due("a"), Some(first + secs(110)));
    assert!(p.due(resumed + secs(1)).is_empty());
    assert_eq!(starts(&p.due(first + secs(110))).len(), 1);
}

#[test]
fn deadline_is_carried_into_due() {
    let mut target = interval("a", 10);
    target.deadline = Duration::from_millis(4_250);
    let mut p = planner(&[target], t0());
    let decisions = p.due(t0() + secs(11));
    assert_eq!(starts(&decisions)[0].deadline, Duration::from_millis(4_250));
}

#[test]
fn cron_five_fields_fire_at_occurrences_plus_phase() {
    let offset = TimeDelta::from_std(phase("c", CRON_MAX_PHASE)).unwrap();
    // Half a minute past an occurrence, whatever the offset, the next slot is the following one.
    let mut p = planner(&[cron("c", "*/5 * * * *")], t0() + secs(31));
    // Occurrences every five minutes at second 0, shifted by the target's phase (< 30 s).
    let first = t0() + secs(300) + offset;
    assert_eq!(p.next_due("c"), Some(first));
    let decisions = p.due(first + secs(2));
    assert_eq!(starts(&decisions)[0].scheduled_at, first);
    p.finished("c");
    assert_eq!(p.next_due("c"), Some(first + secs(300)));
}

#[test]
fn cron_six_fields_have_seconds_first() {
    let offset = TimeDelta::from_std(phase("s", CRON_MAX_PHASE)).unwrap();
    let p = planner(&[cron("s", "15 30 * * * *")], t0());
    // Second 15 of minute 30 of every hour.
    assert_eq!(p.next_due("s"), Some(t0() + secs(30 * 60 + 15) + offset));

    let mut p = Planner::new(PlannerOptions {
        max_phase: Duration::ZERO,
        ..PlannerOptions::default()
    });
    p.set_targets(
        &[cron("s", "*/10 * * * * *")],
        t0() + TimeDelta::milliseconds(500),
    )
    .unwrap();
    assert_eq!(p.next_due("s"), Some(t0() + secs(10)));
    // Strictly after now, also when now is exactly an occurrence.
    p.due(t0() + secs(10));
    assert_eq!(p.next_due("s"), Some(t0() + secs(20)));
}

#[test]
fn cron_phase_is_bounded_by_thirty_seconds_and_by_max_phase() {
    for i in 0..100 {
        let name = format!("c{i}");
        let p = planner(&[cron(&name, "0 * * * *")], t0() + secs(31));
        let slot = p.next_due(&name).unwrap();
        assert!(
            slot >= t0() + secs(3600) && slot < t0() + secs(3630),
            "{slot}"
        );
    }
    let mut p = Planner::new(PlannerOptions {
        max_phase: Duration::from_secs(5),
        ..PlannerOptions::default()
    });
    p.set_targets(&[cron("c", "0 * * * *")], t0() + secs(31))
        .unwrap();
    let slot = p.next_due("c").unwrap();
    assert!(slot < t0() + secs(3605), "{slot}");
}

#[test]
fn cron_catch_up_fires_once() {
    let mut p = planner(&[cron("c", "* * * * *")], t0());
    let first = p.next_due("c").unwrap();
    let decisions = p.due(first + secs(3600));
    assert_eq!(decisions.len(), 1);
    assert_eq!(starts(&decisions)[0].scheduled_at, first);
    assert_eq!(p.next_due("c"), Some(first + secs(3660)));
}

#[test]
fn a_cron_slot_missed_across_a_restart_is_caught_up_once() {
    let offset = TimeDelta::from_std(phase("c", CRON_MAX_PHASE)).unwrap();
    // Hourly at :00 (plus the phase). The last recorded check was the 09:00 slot; the daemon was
    // down from 09:10 to 12:00 + 31 s, so the 10:00, 11:00 and 12:00 slots were missed.
    let last = t0() - secs(3 * 3600) + offset;
    let restart = t0() + secs(31);
    let mut p = planner(&[cron("c", "0 * * * *")], restart);
    assert_eq!(p.next_due("c"), Some(t0() + secs(3600) + offset));
    p.resume(&BTreeMap::from([("c".to_owned(), last)]), restart);
    // The oldest missed slot is due at once: one check, not three.
    assert_eq!(p.next_due("c"), Some(last + secs(3600)));
    let decisions = p.due(restart + secs(1));
    assert_eq!(decisions.len(), 1, "{decisions:?}");
    assert_eq!(starts(&decisions)[0].scheduled_at, last + secs(3600));
    p.finished("c");
    // Then back on the schedule: the next occurrence after now.
    assert_eq!(p.next_due("c"), Some(t0() + secs(3600) + offset));
    assert!(p.due(restart + secs(60)).is_empty());
}

#[test]
fn resume_leaves_targets_that_missed_nothing_and_interval_targets_alone() {
    let offset = TimeDelta::from_std(phase("c", CRON_MAX_PHASE)).unwrap();
    let restart = t0() + secs(31);
    let targets = [
        cron("c", "0 * * * *"),
        interval("i", 3600),
        cron("never-checked", "0 * * * *"),
    ];
    let mut p = planner(&targets, restart);
    let before: Vec<_> = p.slots();
    // c's last check was the 12:00 slot itself: nothing was missed. i's last check was long
    // ago, but an interval target's first slot after a start is within its phase anyway.
    let last = BTreeMap::from([
        ("c".to_owned(), t0() + offset),
        ("i".to_owned(), t0() - secs(86_400)),
        ("removed".to_owned(), t0() - secs(86_400)),
    ]);
    p.resume(&last, restart);
    assert_eq!(p.slots(), before);
    // A last slot in the future (a clock set back) is not a missed slot either.
    p.resume(
        &BTreeMap::from([("c".to_owned(), t0() + secs(7200))]),
        restart,
    );
    assert_eq!(p.slots(), before);
}

#[test]
fn reload_keeps_unchanged_slots_and_running_flags() {
    let mut p = planner(&[interval("keep", 10), interval("change", 10)], t0());
    let keep = p.next_due("keep").unwrap();
    let change = p.next_due("change").unwrap();
    let now = t0() + secs(15);
    let decisions = p.due(now);
    assert_eq!(starts(&decisions).len(), 2);
    let keep_next = p.next_due("keep").unwrap();
    assert!(keep_next > now && keep_next - keep <= secs(20));
    assert!(p.next_due("change").unwrap() > now && change <= now);

    let later = t0() + secs(17);
    let mut keep_target = interval("keep", 10);
    keep_target.deadline = Duration::from_secs(3);
    p.set_targets(
        &[keep_target, interval("change", 60), interval("new", 10)],
        later,
    )
    .unwrap();
    assert_eq!(p.next_due("keep"), Some(keep_next));
    let changed = p.next_due("change").unwrap();
    assert!(changed >= later && changed < later + secs(60));
    let new = p.next_due("new").unwrap();
    assert!(new >= later && new < later + secs(10));
    // Both checks started before the reload are still running.
    assert_eq!(p.running(), 2);
    let decisions = p.due(keep_next);
    assert!(
        decisions.contains(&Decision::Skip {
            target: "keep".to_owned(),
            scheduled_at: keep_next
        }),
        "{decisions:?}"
    );
    p.finished("keep");
    let decisions = p.due(keep_next + secs(10));
    let due = starts(&decisions);
    let keep = due.iter().find(|d| d.target == "keep").unwrap();
    assert_eq!(
        keep.deadline,
        Duration::from_secs(3),
        "the new deadline applies"
    );
}

#[test]
fn a_removed_target_disappears_but_its_running_check_still_blocks_a_rerun() {
    let mut p = planner(&[interval("a", 10), interval("b", 10)], t0());
    assert_eq!(starts(&p.due(t0() + secs(11))).len(), 2);
    p.finished("b");
    p.set_targets(&[], t0() + secs(12)).unwrap();
    assert_eq!(p.next_due("a"), None);
    assert_eq!(p.next_due("b"), None);
    assert_eq!(p.next_wakeup(), None);
    assert_eq!(p.running(), 1, "a's check is still running");
    // Re-added while the old check runs: its first slot is skipped, not run in parallel.
    p.set_targets(&[interval("a", 10)], t0() + secs(13))
        .unwrap();
    let decisions = p.due(t0() + secs(30));
    assert_eq!(skips(&decisions), 1);
    p.finished("a");
    assert_eq!(p.running(), 0);
    assert_eq!(starts(&p.due(t0() + secs(40))).len(), 1);
}

#[test]
fn invalid_targets_are_refused_and_nothing_changes() {
    let mut p = planner(&[interval("a", 10)], t0());
    let before = p.next_due("a");
    let refused = [
        vec![interval("a", 10), interval("a", 20)],
        vec![interval("z", 0)],
        vec![cron("c", "0 0 30 2 *")],
        vec![cron("c", "not a cron")],
    ];
    for targets in refused {
        let error = p.set_targets(&targets, t0() + secs(5)).unwrap_err();
        assert!(!error.to_string().is_empty());
        assert_eq!(p.next_due("a"), before, "{error}");
    }
}

#[test]
fn decisions_come_in_slot_order() {
    let targets: Vec<PlannedTarget> = (0..20).map(|i| interval(&format!("t{i}"), 60)).collect();
    let mut p = planner(&targets, t0());
    let decisions = p.due(t0() + secs(61));
    assert_eq!(decisions.len(), 20);
    assert!(
        decisions
            .windows(2)
            .all(|w| w[0].scheduled_at() <= w[1].scheduled_at())
    );
}

#[test]
fn a_clock_that_jumps_back_keeps_the_rhythm_on_the_earlier_time() {
    for target in [interval("a", 10), cron("a", "*/10 * * * * *")] {
        let mut p = planner(std::slice::from_ref(&target), t0());
        let first = p.next_due("a").unwrap();
        assert_eq!(starts(&p.due(first)).len(), 1);
        p.finished("a");
        // The wall clock is set back a day: the slot planned on the later time is a day away.
        let back = first - TimeDelta::days(1) + secs(1);
        assert!(p.due(back).is_empty(), "{target:?}: nothing is due yet");
        let next = p.next_due("a").unwrap();
        assert!(
            next > back && next <= back + secs(10),
            "{target:?}: the next slot {next} is within one period of {back}"
        );
        assert_eq!(starts(&p.due(next)).len(), 1, "{target:?}");
        p.finished("a");
        assert_eq!(p.next_due("a"), Some(next + secs(10)), "{target:?}");
    }
}

#[test]
fn epoch_aligned_grids_give_every_instance_the_same_slots_whenever_it_started() {
    let aligned = PlannerOptions {
        epoch_aligned: true,
        ..PlannerOptions::default()
    };
    let two_minutes = Duration::from_secs(120);
    let targets: Vec<PlannedTarget> = (0..50).map(|i| interval(&format!("m{i}"), 120)).collect();
    let mut first = Planner::new(aligned);
    first.set_targets(&targets, t0()).unwrap();
    // A second instance started 47.3 s later plans each target's next slot at the first
    // instance's grid point after its own start.
    let later = t0() + TimeDelta::milliseconds(47_300);
    let mut second = Planner::new(aligned);
    second.set_targets(&targets, later).unwrap();
    let period = TimeDelta::seconds(120);
    for t in &targets {
        let a = first.next_due(&t.name).unwrap();
        let b = second.next_due(&t.name).unwrap();
        assert!(a > t0() && a <= t0() + period, "{a}");
        assert!(b > later && b <= later + period, "{b}");
        let apart = b - a;
        assert!(
            apart == TimeDelta::zero() || apart == period,
            "{} then {}: not on one grid",
            a,
            b
        );
        // The slot is the name's phase into its window of one interval since the epoch.
        let into_window = b.timestamp_nanos_opt().unwrap().rem_euclid(120_000_000_000);
        assert_eq!(
            u128::try_from(into_window).unwrap(),
            phase(&t.name, two_minutes).as_nanos()
        );
    }
    // The slot at or before an instant is the grid point one period before the next one
    // (the take-over's slot), and a grid point is its own.
    for t in &targets {
        let next = second.next_due(&t.name).unwrap();
        assert_eq!(
            epoch_grid_slot_at_or_before(&t.name, two_minutes, later),
            Some(next - period),
            "{}",
            t.name
        );
        assert_eq!(
            epoch_grid_slot_at_or_before(&t.name, two_minutes, next),
            Some(next)
        );
    }
    assert_eq!(
        epoch_grid_slot_at_or_before("m0", Duration::ZERO, later),
        None
    );
    // Unaligned planners (a lone instance) keep their grid at their start, as before.
    let mut lone = Planner::new(PlannerOptions::default());
    lone.set_targets(&targets[..1], later).unwrap();
    assert_eq!(
        lone.next_due("m0"),
        Some(later + TimeDelta::from_std(phase("m0", Duration::from_secs(60))).unwrap())
    );
}
