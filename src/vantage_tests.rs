//! Tests of the vantage-point comparison: one per rule of `vantage.rs`, each changing one thing
//! in two otherwise agreeing checks.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use super::*;

const INTERVAL: Duration = Duration::from_secs(60);

fn at(seconds_ago: i64) -> DateTime<Utc> {
    now() - chrono::Duration::seconds(seconds_ago)
}

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-12-07T01:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn outcome(name: &str, scope: &str, state: State) -> CheckOutcome {
    CheckOutcome {
        name: name.to_string(),
        scope: scope.to_string(),
        state,
    }
}

fn measurement(field: &str, node: &str, value: &str) -> Measurement {
    Measurement {
        field: field.to_string(),
        node: node.to_string(),
        value: value.to_string(),
        source: "quote".to_string(),
    }
}

/// A healthy check from `vantage`, `seconds_ago`: every check passes, MRTD `aa`.
fn healthy(vantage: &str, seconds_ago: i64) -> VantageCheck {
    VantageCheck {
        vantage: vantage.to_string(),
        finished_at: at(seconds_ago),
        state: State::Pass,
        checks: vec![
            outcome("tdx_quote_signature", "node:1", State::Pass),
            outcome("tls_key_binding", "", State::Pass),
            outcome("canary_signature", "canary:0", State::Pass),
        ],
        measurements: vec![
            measurement("mrtd", "node:1", "aa"),
            measurement("signing_address", "node:1", "0x01"),
        ],
    }
}

/// `check` with the named check's state (every scope of it) set to `state`.
fn with_state(mut check: VantageCheck, name: &str, state: State) -> VantageCheck {
    for c in check.checks.iter_mut().filter(|c| c.name == name) {
        c.state = state;
    }
    check.state = Verdict::overall(
        &check
            .checks
            .iter()
            .map(|c| crate::verify::Check {
                name: c.name.clone(),
                scope: c.scope.clone(),
                state: c.state,
                reason: String::new(),
            })
            .collect::<Vec<_>>(),
    );
    check
}

fn disagreeing(comparison: &Comparison) -> Vec<&str> {
    comparison
        .disagreements
        .keys()
        .map(String::as_str)
        .collect()
}

#[test]
fn agreeing_vantage_points_compare_every_check_and_disagree_on_nothing() {
    let c = compare(&[healthy("eu-1", 5), healthy("us-1", 30)], INTERVAL, now());
    assert_eq!(
        c.counted,
        BTreeMap::from([("eu-1".into(), State::Pass), ("us-1".into(), State::Pass)])
    );
    assert_eq!(
        c.compared,
        BTreeSet::from([
            "canary_signature".into(),
            MEASUREMENTS.into(),
            "tdx_quote_signature".into(),
            "tls_key_binding".into(),
        ])
    );
    assert!(c.disagreements.is_empty(), "{:?}", c.disagreements);
}

#[test]
fn a_check_passing_from_one_vantage_and_failing_from_another_disagrees() {
    let intercepted = with_state(healthy("us-1", 10), "tls_key_binding", State::Fail);
    let c = compare(&[healthy("eu-1", 5), intercepted], INTERVAL, now());
    assert_eq!(disagreeing(&c), ["tls_key_binding"]);
    assert!(c.disagrees("tls_key_binding") && !c.disagrees("tdx_quote_signature"));
    assert_eq!(c.counted["us-1"], State::Fail);
    let d = &c.disagreements["tls_key_binding"];
    assert_eq!(d.on, ["answer"]);
    assert_eq!(
        d.reason(),
        "tls_key_binding (answer): pass from eu-1; fail from us-1"
    );
}

#[test]
fn with_one_vantage_point_nothing_is_compared() {
    let failing = with_state(healthy("eu-1", 5), "tls_key_binding", State::Fail);
    let c = compare(&[failing], INTERVAL, now());
    assert_eq!(c.counted.len(), 1);
    assert!(c.compared.is_empty());
    assert!(c.disagreements.is_empty());
}

#[test]
fn a_stale_vantage_point_does_not_count() {
    // Two intervals and one second ago: stale; its failure is compared with nothing.
    let stale = with_state(healthy("us-1", 121), "tls_key_binding", State::Fail);
    let c = compare(&[healthy("eu-1", 5), stale.clone()], INTERVAL, now());
    assert_eq!(c.stale, BTreeSet::from(["us-1".to_string()]));
    assert_eq!(c.counted.keys().collect::<Vec<_>>(), ["eu-1"]);
    assert!(c.disagreements.is_empty());
    // Exactly two intervals ago still counts.
    let fresh = VantageCheck {
        finished_at: at(120),
        ..stale
    };
    let c = compare(&[healthy("eu-1", 5), fresh], INTERVAL, now());
    assert_eq!(disagreeing(&c), ["tls_key_binding"]);
    assert!(c.stale.is_empty());
}

#[test]
fn unknown_is_no_judgement_and_disagrees_with_nothing() {
    // Canary chats not due on one instance's check, or a fetch that failed from one network.
    let not_due = with_state(healthy("us-1", 10), "canary_signature", State::Unknown);
    let c = compare(&[healthy("eu-1", 5), not_due], INTERVAL, now());
    assert!(c.disagreements.is_empty(), "{:?}", c.disagreements);
    assert!(!c.compared.contains("canary_signature"));
    assert_eq!(c.counted["us-1"], State::Unknown);
}

#[test]
fn a_check_present_in_one_verdict_and_absent_in_another_is_not_compared() {
    let mut without = healthy("us-1", 10);
    without.checks.retain(|c| c.name != "tls_key_binding");
    let failing = with_state(healthy("eu-1", 5), "tls_key_binding", State::Fail);
    let c = compare(&[failing, without], INTERVAL, now());
    assert!(!c.compared.contains("tls_key_binding"));
    assert!(c.disagreements.is_empty(), "{:?}", c.disagreements);
}

#[test]
fn checks_are_compared_scope_by_scope() {
    // node:1 passes from eu-1 and fails from us-1; node:2 fails from both: only node:1 differs.
    let mut eu = healthy("eu-1", 5);
    eu.checks
        .push(outcome("tdx_quote_signature", "node:2", State::Fail));
    let mut us = with_state(healthy("us-1", 10), "tdx_quote_signature", State::Fail);
    us.checks
        .push(outcome("tdx_quote_signature", "node:2", State::Fail));
    let c = compare(&[eu, us], INTERVAL, now());
    let d = &c.disagreements["tdx_quote_signature"];
    assert_eq!(d.on, ["node:1"]);
    assert_eq!(
        d.seen,
        BTreeMap::from([
            ("eu-1".into(), "pass".into()),
            ("us-1".into(), "fail".into())
        ])
    );
}

#[test]
fn different_tracked_measurements_disagree_on_measurements() {
    let mut other_image = healthy("us-1", 10);
    other_image.measurements[0].value = "bb".into();
    let c = compare(&[healthy("eu-1", 5), other_image], INTERVAL, now());
    assert_eq!(disagreeing(&c), [MEASUREMENTS]);
    let d = &c.disagreements[MEASUREMENTS];
    assert_eq!(d.on, ["mrtd"]);
    assert_eq!(
        d.reason(),
        "measurements (mrtd): mrtd=aa from eu-1; mrtd=bb from us-1"
    );
}

#[test]
fn per_node_values_and_fields_proven_from_one_side_only_are_not_compared() {
    // Another node answered (its own signing address), and the MRTD is unproven from us-1 (its
    // quote did not verify there): neither is a different measurement.
    let mut other = healthy("us-1", 10);
    other.measurements = vec![measurement("signing_address", "node:2", "0x02")];
    let c = compare(&[healthy("eu-1", 5), other], INTERVAL, now());
    assert!(!c.compared.contains(MEASUREMENTS));
    assert!(c.disagreements.is_empty(), "{:?}", c.disagreements);
}

#[test]
fn the_same_values_from_different_nodes_agree() {
    let mut other_node = healthy("us-1", 10);
    other_node.measurements = vec![measurement("mrtd", "node:2", "aa")];
    let c = compare(&[healthy("eu-1", 5), other_node], INTERVAL, now());
    assert!(c.compared.contains(MEASUREMENTS));
    assert!(c.disagreements.is_empty(), "{:?}", c.disagreements);
}

#[test]
fn a_check_without_a_vantage_is_no_vantage_point() {
    let shard = with_state(healthy("", 5), "tls_key_binding", State::Fail);
    let c = compare(&[shard, healthy("eu-1", 5)], INTERVAL, now());
    assert_eq!(c.counted.keys().collect::<Vec<_>>(), ["eu-1"]);
    assert!(c.disagreements.is_empty());
}

#[test]
fn only_the_latest_check_of_a_vantage_point_counts() {
    let earlier = with_state(healthy("us-1", 50), "tls_key_binding", State::Fail);
    let c = compare(
        &[healthy("us-1", 10), earlier, healthy("eu-1", 5)],
        INTERVAL,
        now(),
    );
    assert!(c.disagreements.is_empty(), "{:?}", c.disagreements);
    assert_eq!(c.counted["us-1"], State::Pass);
}

#[test]
fn one_dissenting_vantage_point_among_three_is_named() {
    let intercepted = with_state(healthy("ap-1", 20), "tls_key_binding", State::Fail);
    let c = compare(
        &[healthy("eu-1", 5), intercepted, healthy("us-1", 10)],
        INTERVAL,
        now(),
    );
    assert_eq!(
        c.disagreements["tls_key_binding"].reason(),
        "tls_key_binding (answer): fail from ap-1; pass from eu-1; pass from us-1"
    );
}

#[test]
fn from_verdict_keeps_every_check_and_the_overall_state() {
    let verdict = Verdict {
        format: crate::verify::verdict::VERDICT_FORMAT.into(),
        target: "t".into(),
        observed_at: "2026-12-07T01:00:00Z".into(),
        attestation_format: crate::verify::AttestationFormat::Dstack,
        state: State::Fail,
        checks: vec![crate::verify::Check {
            name: "tls_key_binding".into(),
            scope: String::new(),
            state: State::Fail,
            reason: "x".into(),
        }],
        observed: Vec::new(),
        trust: Vec::new(),
        transport: None,
        policy_source: None,
    };
    let m = [measurement("mrtd", "", "aa")];
    let check = VantageCheck::from_verdict("eu-1", at(0), &verdict, &m);
    assert_eq!(check.state, State::Fail);
    assert_eq!(check.checks, [outcome("tls_key_binding", "", State::Fail)]);
    assert_eq!(check.measurements, m);
}
