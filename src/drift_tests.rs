//! Unit tests of `drift.rs`: which values are measurements, when a value drifts, and how long
//! its flag stays up.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::cloned_ref_to_slice_refs
)]

use super::*;
use crate::verify::{Observed, State};

fn verdict(observed: &[(&str, &str, &str, Source)]) -> Verdict {
    Verdict {
        format: "teewatch-verdict/1".into(),
        target: "t".into(),
        observed_at: "2026-01-01T00:00:00Z".into(),
        attestation_format: crate::verify::AttestationFormat::Dstack,
        state: State::Pass,
        // The quote of the single part verified, so its values count.
        checks: vec![crate::verify::Check {
            name: crate::verify::checks::TDX_QUOTE_SIGNATURE.into(),
            scope: String::new(),
            state: State::Pass,
            reason: String::new(),
        }],
        observed: observed
            .iter()
            .map(|(scope, field, value, source)| Observed {
                scope: scope.to_string(),
                field: field.to_string(),
                value: value.to_string(),
                source: *source,
            })
            .collect(),
        trust: vec![],
        transport: None,
        policy_source: None,
    }
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

#[test]
fn a_compose_managers_new_action_is_news_only_against_the_same_td() {
    let m = |value: &str| Measurement {
        field: LAST_ACTION_FIELD.into(),
        node: "compose_manager".into(),
        value: value.into(),
        source: "compose_manager".into(),
    };
    let at = DateTime::parse_from_rfc3339("2026-06-10T08:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let mut history = TargetHistory::default();
    let first = [m("aa/compose_up@1")];
    history.absorb(&first, &[], at);
    // Another node, seen for the first time (round robin): its own baseline.
    let other = [m("bb/compose_up@2")];
    assert!(detect(&history, &other, &Policy::default(), at).is_empty());
    history.absorb(&other, &[], at);
    // The first node's log grew: an event naming that node's earlier action only.
    let events = detect(
        &history,
        &[m("aa/docker_restart@3")],
        &Policy::default(),
        at,
    );
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].old_values, ["aa/compose_up@1"]);
    assert_eq!(events[0].reasons, [DriftReason::New]);
}

#[test]
fn values_of_a_quote_whose_signature_did_not_verify_are_not_measurements() {
    let mut v = verdict(&[
        ("", "mrtd", "aa", Source::Quote),
        ("", "compose_hash", "cc", Source::EventLog),
        ("gpu:0", "gpu_driver_version", "550.1", Source::GpuEvidence),
    ]);
    v.checks[0].state = State::Unknown;
    let fields: Vec<String> = measurements(&v).into_iter().map(|m| m.field).collect();
    assert_eq!(fields, ["gpu_driver_version"]);
}

#[test]
fn claims_are_not_measurements_and_gpu_blocks_fold_per_node() {
    let v = verdict(&[
        ("", "mrtd", "aa", Source::Quote),
        ("", "os_image_hash", "bb", Source::Claim),
        ("gpu:0", "gpu_block_1", "01", Source::GpuEvidence),
        ("gpu:0", "gpu_block_2", "02", Source::GpuEvidence),
        ("gpu:1", "gpu_block_1", "01", Source::GpuEvidence),
        ("gpu:1", "gpu_block_2", "03", Source::GpuEvidence),
        ("gpu:0", "gpu_driver_version", "550.1", Source::GpuEvidence),
        ("gpu:1", "gpu_driver_version", "550.1", Source::GpuEvidence),
    ]);
    let m = measurements(&v);
    let fields: Vec<&str> = m.iter().map(|m| m.field.as_str()).collect();
    assert_eq!(fields, ["gpu_driver_version", "gpu_measurements", "mrtd"]);
    assert_eq!(m[0].value, "550.1");
    // Swapping the two GPUs gives the same digest; changing one block does not.
    let swapped = verdict(&[
        ("gpu:1", "gpu_block_1", "01", Source::GpuEvidence),
        ("gpu:1", "gpu_block_2", "02", Source::GpuEvidence),
        ("gpu:0", "gpu_block_1", "01", Source::GpuEvidence),
        ("gpu:0", "gpu_block_2", "03", Source::GpuEvidence),
    ]);
    let changed = verdict(&[
        ("gpu:0", "gpu_block_1", "01", Source::GpuEvidence),
        ("gpu:0", "gpu_block_2", "02", Source::GpuEvidence),
        ("gpu:1", "gpu_block_1", "01", Source::GpuEvidence),
        ("gpu:1", "gpu_block_2", "04", Source::GpuEvidence),
    ]);
    assert_eq!(measurements(&swapped)[0].value, m[1].value);
    assert_ne!(measurements(&changed)[0].value, m[1].value);
}

#[test]
fn baseline_is_not_drift_a_new_value_is_once_and_round_robin_is_not() {
    let policy = Policy::default();
    let mut history = TargetHistory::default();
    let node_a = Measurement {
        field: "mrtd".into(),
        node: "node:0xa".into(),
        value: "aa".into(),
        source: "quote".into(),
    };
    let node_b = Measurement {
        node: "node:0xb".into(),
        value: "bb".into(),
        ..node_a.clone()
    };
    let t0 = at("2026-01-01T00:00:00Z");
    // Both nodes in the first check: the baseline.
    let first = [node_a.clone(), node_b.clone()];
    assert!(detect(&history, &first, &policy, t0).is_empty());
    history.absorb(&first, &[], t0);
    // Round-robin: one node per check, both known.
    assert!(detect(&history, &[node_b.clone()], &policy, t0).is_empty());
    assert!(detect(&history, &[node_a.clone()], &policy, t0).is_empty());
    // A new value is an event naming the old ones.
    let node_c = Measurement {
        value: "cc".into(),
        ..node_a.clone()
    };
    let events = detect(&history, &[node_c.clone()], &policy, t0);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].old_values, ["aa", "bb"]);
    assert_eq!(events[0].reasons, [DriftReason::New]);
    history.absorb(&[node_c.clone()], &events, t0);
    // Once absorbed, the same value raises nothing.
    assert!(detect(&history, &[node_c], &policy, t0).is_empty());
}

#[test]
fn value_outside_the_allowlist_drifts_even_as_baseline() {
    let mut policy = Policy::default();
    policy.pins.insert("mrtd".into(), vec!["0xAA".into()]);
    let history = TargetHistory::default();
    let allowed = Measurement {
        field: "mrtd".into(),
        node: "".into(),
        value: "aa".into(),
        source: "quote".into(),
    };
    assert!(
        detect(
            &history,
            &[allowed.clone()],
            &policy,
            at("2026-01-01T00:00:00Z")
        )
        .is_empty()
    );
    let other = Measurement {
        value: "bb".into(),
        ..allowed
    };
    let events = detect(
        &history,
        &[other.clone()],
        &policy,
        at("2026-01-01T00:00:00Z"),
    );
    assert_eq!(events[0].reasons, [DriftReason::NotAllowed]);
    let flags = drift_flags(
        &history,
        &[other],
        &policy,
        at("2030-01-01T00:00:00Z"),
        Duration::from_secs(60),
    );
    assert_eq!(flags.get("mrtd"), Some(&true));
}

#[test]
fn drift_flag_clears_after_the_window() {
    let policy = Policy::default();
    let mut history = TargetHistory::default();
    let m = Measurement {
        field: "compose_hash".into(),
        node: "".into(),
        value: "cc".into(),
        source: "event_log".into(),
    };
    let t0 = at("2026-01-01T00:00:00Z");
    history
        .drifted
        .insert(("compose_hash".into(), "cc".into()), t0);
    let window = Duration::from_secs(3600);
    let flags = |now| drift_flags(&history, &[m.clone()], &policy, now, window);
    assert_eq!(
        flags(at("2026-01-01T00:59:00Z")).get("compose_hash"),
        Some(&true)
    );
    assert_eq!(
        flags(at("2026-01-01T01:01:00Z")).get("compose_hash"),
        Some(&false)
    );
}

#[test]
fn node_of_scopes() {
    assert_eq!(node_of(""), "");
    assert_eq!(node_of("gpu:3"), "");
    assert_eq!(node_of("node:0xab/gpu:3"), "node:0xab");
    assert_eq!(node_of("node:#1"), "node:#1");
}

#[test]
fn a_drift_the_pins_now_accept_or_acknowledged_after_it_stops_drifting_at_once() {
    let m = Measurement {
        field: "compose_hash".into(),
        node: "".into(),
        value: "cc".into(),
        source: "event_log".into(),
    };
    let t0 = at("2026-01-01T00:00:00Z");
    let now = at("2026-01-01T00:10:00Z");
    let window = Duration::from_secs(3600);
    let mut history = TargetHistory::default();
    history
        .drifted
        .insert(("compose_hash".into(), "cc".into()), t0);
    let flag = |history: &TargetHistory, policy: &Policy| {
        drift_flags(history, &[m.clone()], policy, now, window)
            .get("compose_hash")
            .copied()
    };
    // Unpinned, within the window: drifting, and nothing awaits a pin acceptance.
    let unpinned = Policy::default();
    assert_eq!(flag(&history, &unpinned), Some(true));
    assert!(awaiting_pin_acceptance(&history, &unpinned).is_empty());

    // Pinned to the old value only: outside the allowlist.
    let mut refusing = Policy::default();
    refusing
        .pins
        .insert("compose_hash".into(), vec!["aa".into()]);
    assert_eq!(flag(&history, &refusing), Some(true));
    assert!(awaiting_pin_acceptance(&history, &refusing).is_empty());

    // The pin now accepts it: not drifting, and the acceptance awaits recording.
    let mut accepting = refusing.clone();
    accepting
        .pins
        .insert("compose_hash".into(), vec!["aa".into(), "CC".into()]);
    assert_eq!(flag(&history, &accepting), Some(false));
    assert_eq!(
        awaiting_pin_acceptance(&history, &accepting),
        [("compose_hash".to_string(), "cc".to_string())]
    );

    // An acknowledgement older than the drift event accepts nothing.
    let mut acked = history.clone();
    acked.accept("compose_hash", "cc", at("2025-12-31T23:59:59Z"));
    assert_eq!(flag(&acked, &unpinned), Some(true));
    // One at or after it does, and then nothing awaits a pin acceptance either.
    acked.accept("compose_hash", "cc", t0);
    assert_eq!(flag(&acked, &unpinned), Some(false));
    assert!(awaiting_pin_acceptance(&acked, &accepting).is_empty());
    // The latest acceptance is kept.
    acked.accept("compose_hash", "cc", at("2025-01-01T00:00:00Z"));
    assert_eq!(acked.accepted[&("compose_hash".into(), "cc".into())], t0);
    // An acknowledgement does not override a pin that refuses the value.
    assert_eq!(flag(&acked, &refusing), Some(true));
}

#[test]
fn the_format_field_is_pinned_by_formats() {
    let mut policy = Policy::default();
    assert!(!pins_accept(&policy, ATTESTATION_FORMAT_FIELD, "dstack"));
    policy.formats = Some(vec!["dstack".into()]);
    assert!(pins_accept(&policy, ATTESTATION_FORMAT_FIELD, "dstack"));
    assert!(!pins_accept(
        &policy,
        ATTESTATION_FORMAT_FIELD,
        "near-direct"
    ));
    policy
        .gateway_pins
        .insert("mrtd".into(), vec!["0xAB".into()]);
    assert!(pins_accept(&policy, "gateway:mrtd", "ab"));
    assert!(!pins_accept(&policy, "mrtd", "ab"));
}
