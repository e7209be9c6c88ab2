//! The Prometheus metrics: a populated scrape passes the real `promtool check metrics`, series
//! are replaced rather than accumulated, label values are validated, cardinality stays bounded
//! at 2,000 targets, a dropped target leaves no series, collateral expiry is read from real
//! bundles, each platform's collateral fetch time is exported and each target names the
//! platforms its collateral came from.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod collateral;
mod reference;
use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use teewatch::drift::FLEET_FIELDS;
use teewatch::metrics::{Metrics, TargetSnapshot, collateral_expiries, state_code};
use teewatch::record::Phase;
use teewatch::verify::checks::all_checks;
use teewatch::verify::{Check, State};

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn bundle(name: &str) -> Value {
    let path = format!("{}/tests/bundles/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A realistic value of each fleet field, distinct per seed: 48-byte TDX registers, 32-byte
/// hashes, a 20-byte app id, and the short text values.
fn measurement(field: &str, seed: usize) -> String {
    let hex = |bytes: usize| format!("{seed:08x}").repeat(bytes / 4);
    match field {
        "mrtd" | "rtmr0" | "rtmr1" | "rtmr2" | "mrseam" => hex(48),
        "compose_hash" | "os_image_hash" | "gpu_measurements" => hex(32),
        "app_id" => hex(20),
        "key_provider" => "kms".to_string(),
        "gpu_driver_version" => "550.54.15".to_string(),
        "gpu_vbios_version" => "96.00.9f.00.04".to_string(),
        "attestation_format" => "dstack".to_string(),
        other => match other.strip_prefix("gateway:") {
            Some(field) => measurement(field, seed + 1),
            None => panic!("no test value for {other}"),
        },
    }
}

/// Whether a fleet field exists for a dstack target (not the NEAR gateway's or compose
/// manager's).
fn dstack_field(field: &str) -> bool {
    !field.starts_with(teewatch::drift::GATEWAY_PREFIX)
        && !field.starts_with("deployed_")
        && !field.starts_with("compose_manager")
}

/// A full snapshot: every fixed check in two node scopes (the second one in `state`), every
/// fleet field, a drift flag for each (drifting for `mrtd` only when `drifting`), a TCB status.
fn snapshot(target: &str, state: State, seed: usize, drifting: bool) -> TargetSnapshot {
    let mut checks = Vec::new();
    for name in all_checks() {
        for (scope, s) in [("node:0xa", State::Pass), ("node:0xb", state)] {
            checks.push(Check {
                name: name.to_string(),
                scope: scope.to_string(),
                state: s,
                reason: String::new(),
            });
        }
    }
    // A dstack target: every fleet field but the NEAR ones (gateway, compose manager).
    let fields = || FLEET_FIELDS.iter().filter(|f| dstack_field(f));
    let measurements: BTreeMap<String, String> = fields()
        .map(|f| (f.to_string(), measurement(f, seed)))
        .collect();
    let drift: BTreeMap<String, bool> = fields()
        .map(|f| (f.to_string(), drifting && *f == "mrtd"))
        .collect();
    TargetSnapshot {
        target: target.to_string(),
        state,
        checks,
        last_check: at("2026-01-01T00:05:00Z"),
        last_success: (state == State::Pass).then(|| at("2026-01-01T00:05:00Z")),
        last_duration: Duration::from_millis(2_345),
        tcb_status: Some("UpToDate".to_string()),
        attestation_format: Some(teewatch::verify::AttestationFormat::Dstack),
        measurements,
        drift,
    }
}

/// The sample lines of a scrape (no comments).
fn samples(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.starts_with('#')).collect()
}

/// The value of the one sample whose name and labels are exactly `series`.
fn value(text: &str, series: &str) -> Option<f64> {
    let mut found = samples(text).into_iter().filter_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .parse::<f64>()
            .ok()
    });
    let first = found.next();
    assert!(found.next().is_none(), "{series} appears twice");
    first
}

/// The sample lines of one family that mention `needle`.
fn lines_of<'a>(text: &'a str, family: &str, needle: &str) -> Vec<&'a str> {
    samples(text)
        .into_iter()
        .filter(|l| l.starts_with(&format!("{family}{{")) && l.contains(needle))
        .collect()
}

/// Several targets in every state, with drift, fetch errors, skips, phases and collateral.
fn populated() -> Metrics {
    let m = Metrics::new().unwrap();
    m.set_targets(4);
    m.set_in_flight(1);
    for (i, (name, state)) in [
        ("alpha", State::Pass),
        ("beta", State::Fail),
        ("gamma", State::Unknown),
    ]
    .into_iter()
    .enumerate()
    {
        m.set_target(&snapshot(name, state, i, state == State::Fail), true);
        m.check_finished(name, state);
        m.set_next_check(name, at("2026-01-01T00:10:00Z"));
    }
    // A target restored after a restart without a TCB status and with half its fields.
    let mut restored = snapshot("delta", State::Unknown, 9, false);
    restored.tcb_status = None;
    restored.measurements.retain(|f, _| f.starts_with("rt"));
    m.set_target(&restored, false);
    m.set_target(&snapshot("beta", State::Fail, 7, true), true);
    m.drift_events("beta", 2);
    m.skipped("gamma");
    m.fetch_error("gamma", "attestation", "timeout");
    m.fetch_error("gamma", "nras", "http_status");
    m.fetch_error("gamma", "somewhere", "dns");
    for (i, phase) in Phase::ALL.into_iter().enumerate() {
        m.observe_phase(phase, Duration::from_millis(3 * 10u64.pow(i as u32 % 5)));
    }
    let expiries = collateral_expiries(&bundle("dcapqvl-v4-uptodate.json"));
    for (fmspc, expiry) in &expiries {
        m.set_collateral_expiry(fmspc, *expiry);
        m.set_collateral_fetched(fmspc, Some(at("2025-06-19T10:30:00Z")));
    }
    // As the runner does: each target's platforms are those of its bundle's collateral.
    for name in ["alpha", "beta", "gamma"] {
        m.set_target_platforms(name, expiries.iter().map(|(f, _)| f.as_str()));
    }
    m
}

#[test]
fn populated_scrape_passes_promtool_check_metrics() {
    let text = populated().render().unwrap();
    for family in [
        "teewatch_target_state",
        "teewatch_check_state",
        "teewatch_last_check_timestamp_seconds",
        "teewatch_last_success_timestamp_seconds",
        "teewatch_next_check_timestamp_seconds",
        "teewatch_check_duration_seconds",
        "teewatch_last_check_duration_seconds",
        "teewatch_measurement_drift",
        "teewatch_measurement_changes_total",
        "teewatch_measurement_info",
        "teewatch_tdx_tcb_status",
        "teewatch_attestation_format_info",
        "teewatch_collateral_expiry_timestamp_seconds",
        "teewatch_collateral_fetched_timestamp_seconds",
        "teewatch_target_platform_info",
        "teewatch_fetch_errors_total",
        "teewatch_checks_skipped_total",
        "teewatch_checks_total",
        "teewatch_drift_events_total",
        "teewatch_build_info",
        "teewatch_targets",
        "teewatch_checks_in_flight",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
    ] {
        assert!(
            text.contains(&format!("# HELP {family} ")),
            "{family} missing from the scrape"
        );
    }
    common::promtool::assert_clean(&text);
}

#[test]
fn state_codes_are_pass_0_unknown_1_fail_2() {
    assert_eq!(state_code(State::Pass), 0);
    assert_eq!(state_code(State::Unknown), 1);
    assert_eq!(state_code(State::Fail), 2);
    let text = populated().render().unwrap();
    for (target, code) in [("alpha", 0.0), ("gamma", 1.0), ("beta", 2.0)] {
        let series = format!("teewatch_target_state{{target=\"{target}\"}}");
        assert_eq!(value(&text, &series), Some(code), "{series}");
        // One node passes and the other is in the target's state: the worst is exported.
        let series =
            format!("teewatch_check_state{{check=\"tdx_quote_signature\",target=\"{target}\"}}");
        assert_eq!(value(&text, &series), Some(code), "{series}");
        let checks = lines_of(&text, "teewatch_check_state", &format!("\"{target}\""));
        assert_eq!(
            checks.len(),
            all_checks().count(),
            "{target}: one series per check"
        );
    }
    assert_eq!(
        value(
            &text,
            "teewatch_checks_total{state=\"fail\",target=\"beta\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            "teewatch_checks_total{state=\"pass\",target=\"beta\"}"
        ),
        Some(0.0)
    );
    // No success yet: no series rather than a zero timestamp.
    assert_eq!(
        lines_of(&text, "teewatch_last_success_timestamp_seconds", "beta").len(),
        0
    );
    assert_eq!(
        value(
            &text,
            "teewatch_last_success_timestamp_seconds{target=\"alpha\"}"
        ),
        Some(at("2026-01-01T00:05:00Z").timestamp() as f64)
    );
}

#[test]
fn a_changed_value_leaves_one_info_series_and_counts_once_but_not_on_restore() {
    let m = Metrics::new().unwrap();
    let changes = "teewatch_measurement_changes_total{field=\"mrtd\",target=\"t\"}";
    m.set_target(&snapshot("t", State::Pass, 1, false), true);
    let text = m.render().unwrap();
    assert_eq!(
        value(&text, changes),
        Some(0.0),
        "the first value is no change"
    );

    // The same value written with 0x and in upper case is the same value.
    let mut same = snapshot("t", State::Pass, 1, false);
    let upper = format!("0x{}", measurement("mrtd", 1).to_uppercase());
    same.measurements.insert("mrtd".into(), upper);
    m.set_target(&same, true);
    assert_eq!(value(&m.render().unwrap(), changes), Some(0.0));

    m.set_target(&snapshot("t", State::Pass, 2, true), true);
    let text = m.render().unwrap();
    for field in FLEET_FIELDS.iter().filter(|f| dstack_field(f)) {
        let info = lines_of(
            &text,
            "teewatch_measurement_info",
            &format!("field=\"{field}\""),
        );
        assert_eq!(info.len(), 1, "{field}: {info:?}");
    }
    let mrtd = lines_of(&text, "teewatch_measurement_info", "field=\"mrtd\"");
    assert!(mrtd[0].contains(&measurement("mrtd", 2)), "{mrtd:?}");
    assert_eq!(value(&text, changes), Some(1.0));
    // key_provider did not change between seeds.
    assert_eq!(
        value(
            &text,
            "teewatch_measurement_changes_total{field=\"key_provider\",target=\"t\"}"
        ),
        Some(0.0)
    );
    assert_eq!(
        value(
            &text,
            "teewatch_measurement_drift{field=\"mrtd\",target=\"t\"}"
        ),
        Some(1.0)
    );

    // A restore with yet another value replaces the series but counts nothing.
    m.set_target(&snapshot("t", State::Pass, 3, false), false);
    let text = m.render().unwrap();
    let mrtd = lines_of(&text, "teewatch_measurement_info", "field=\"mrtd\"");
    assert_eq!(mrtd.len(), 1);
    assert!(mrtd[0].contains(&measurement("mrtd", 3)), "{mrtd:?}");
    assert_eq!(value(&text, changes), Some(1.0));
    assert_eq!(
        value(
            &text,
            "teewatch_measurement_drift{field=\"mrtd\",target=\"t\"}"
        ),
        Some(0.0)
    );
}

#[test]
fn tcb_status_is_one_fixed_series_and_absent_without_a_quote() {
    let m = Metrics::new().unwrap();
    let mut s = snapshot("t", State::Fail, 1, false);
    s.tcb_status = Some("OutOfDate".into());
    m.set_target(&s, true);
    s.tcb_status = Some("Revoked".into());
    m.set_target(&s, true);
    let text = m.render().unwrap();
    assert_eq!(lines_of(&text, "teewatch_tdx_tcb_status", "").len(), 1);
    assert_eq!(
        value(
            &text,
            "teewatch_tdx_tcb_status{status=\"Revoked\",target=\"t\"}"
        ),
        Some(1.0)
    );
    s.tcb_status = Some("Totally \"new\"\nstatus".into());
    m.set_target(&s, true);
    let text = m.render().unwrap();
    assert_eq!(lines_of(&text, "teewatch_tdx_tcb_status", "").len(), 1);
    assert_eq!(
        value(
            &text,
            "teewatch_tdx_tcb_status{status=\"other\",target=\"t\"}"
        ),
        Some(1.0)
    );
    s.tcb_status = None;
    m.set_target(&s, true);
    assert!(lines_of(&m.render().unwrap(), "teewatch_tdx_tcb_status", "").is_empty());
}

#[test]
fn invalid_labels_become_invalid_or_other_and_a_bad_fmspc_is_skipped() {
    let m = Metrics::new().unwrap();
    let mut s = snapshot("t", State::Pass, 1, false);
    s.measurements
        .insert("key_provider".into(), "kms\" evil=\"1".into());
    s.measurements
        .insert("gpu_driver_version".into(), "550\nfake_metric 1".into());
    s.measurements.insert("mrtd".into(), "ab".repeat(100));
    m.set_target(&s, true);
    m.fetch_error("t", "pccs", "dns_failure");
    m.fetch_error("t", "elsewhere", "timeout");
    m.fetch_error("t", "pccs", "timeout");
    m.set_collateral_expiry("B0C06F00000", at("2026-01-01T00:00:00Z"));
    m.set_collateral_expiry("B0C06F00000Z", at("2026-01-01T00:00:00Z"));
    m.set_collateral_expiry("b0c06f000000\"", at("2026-01-01T00:00:00Z"));
    m.set_collateral_expiry("00A067110000", at("2026-01-01T00:00:00Z"));
    let text = m.render().unwrap();

    for field in ["key_provider", "gpu_driver_version", "mrtd"] {
        let series = format!(
            "teewatch_measurement_info{{field=\"{field}\",target=\"t\",value=\"invalid\"}}"
        );
        assert_eq!(value(&text, &series), Some(1.0), "{series}");
    }
    assert!(!text.contains("evil"));
    assert!(!text.contains("fake_metric"));
    assert!(!text.contains(&"ab".repeat(100)));
    for (endpoint, kind) in [("pccs", "other"), ("other", "timeout"), ("pccs", "timeout")] {
        let series = format!(
            "teewatch_fetch_errors_total{{endpoint=\"{endpoint}\",kind=\"{kind}\",target=\"t\"}}"
        );
        assert_eq!(value(&text, &series), Some(1.0), "{series}");
    }
    assert!(!text.contains("dns_failure") && !text.contains("elsewhere"));
    let expiries = lines_of(&text, "teewatch_collateral_expiry_timestamp_seconds", "");
    assert_eq!(
        expiries,
        [format!(
            "teewatch_collateral_expiry_timestamp_seconds{{fmspc=\"00a067110000\"}} {}",
            at("2026-01-01T00:00:00Z").timestamp()
        )]
    );
}

#[test]
fn retain_targets_removes_every_series_of_a_dropped_target() {
    let m = Metrics::new().unwrap();
    for (i, name) in ["kept-target", "dropped-target"].into_iter().enumerate() {
        m.set_target(&snapshot(name, State::Fail, i, true), true);
        m.check_finished(name, State::Fail);
        m.set_next_check(name, at("2026-01-01T00:10:00Z"));
        m.skipped(name);
        m.fetch_error(name, "attestation", "connect");
        m.fetch_error(name, "bogus", "bogus");
        m.drift_events(name, 1);
        m.set_target_platforms(name, ["b0c06f000000"]);
    }
    // The dropped target moved to another platform: the old series went with it.
    m.set_target_platforms("dropped-target", ["00a067110000"]);
    // A second value so the dropped target has had two info series and two statuses.
    let mut changed = snapshot("dropped-target", State::Pass, 5, false);
    changed.tcb_status = Some("OutOfDate".into());
    changed.checks.push(Check {
        name: "pin:mrtd".into(),
        scope: String::new(),
        state: State::Pass,
        reason: String::new(),
    });
    m.set_target(&changed, true);
    let before = m.render().unwrap();
    let kept_before = before.lines().filter(|l| l.contains("kept-target")).count();
    assert!(before.lines().any(|l| l.contains("dropped-target")));

    m.retain_targets(&["kept-target".to_string()]);
    let after = m.render().unwrap();
    let mentions: Vec<&str> = after
        .lines()
        .filter(|l| l.contains("dropped-target"))
        .collect();
    assert!(mentions.is_empty(), "left behind: {mentions:#?}");
    assert_eq!(
        after.lines().filter(|l| l.contains("kept-target")).count(),
        kept_before
    );
    // A late update for the dropped target does not bring it back.
    m.skipped("dropped-target");
    m.set_target(&changed, true);
    assert!(!m.render().unwrap().contains("dropped-target"));
}

#[test]
fn cardinality_at_2000_targets() {
    const TARGETS: usize = 2_000;
    // The target-independent part: the same calls without any target.
    let setup = |m: &Metrics| {
        m.set_targets(TARGETS);
        m.set_in_flight(8);
        for phase in Phase::ALL {
            m.observe_phase(phase, Duration::from_millis(40));
        }
        m.set_collateral_expiry("b0c06f000000", at("2026-02-01T00:00:00Z"));
    };
    let baseline = Metrics::new().unwrap();
    setup(&baseline);
    let independent = baseline.series_count();

    let m = Metrics::new().unwrap();
    setup(&m);
    for i in 0..TARGETS {
        let name = format!("provider-{i:04}-model");
        m.set_target(&snapshot(&name, State::Pass, i, i % 10 == 0), true);
        m.check_finished(&name, State::Pass);
        m.set_next_check(&name, at("2026-01-01T00:10:00Z"));
        m.skipped(&name);
        m.fetch_error(&name, "nras", "timeout");
        m.drift_events(&name, 0);
        m.set_state_since(&name, at("2026-01-01T00:00:00Z"));
        m.set_last_dispatched(&name, at("2026-01-01T00:05:00Z"));
        m.set_target_platforms(&name, ["b0c06f000000"]);
    }
    let total = m.series_count();
    let text = m.render().unwrap();
    assert_eq!(
        samples(&text).len(),
        total,
        "series_count matches the scrape"
    );
    let per_target = (total - independent) as f64 / TARGETS as f64;
    let target_lines = samples(&text)
        .into_iter()
        .filter(|l| l.contains("target=\""))
        .count();
    assert_eq!(target_lines, total - independent);
    println!(
        "{TARGETS} targets: {total} series, {independent} target-independent, \
         {per_target:.1} per target, scrape {} bytes ({:.2} MB)",
        text.len(),
        text.len() as f64 / 1e6
    );
    assert!(per_target <= 78.0, "{per_target} series per target");
    // 68 series per target since `attestation_format`, `tls_key_binding` and the format info
    // series were added (12.3 MB); 72 since the `gpu_unique` check and the `attestation_format`
    // drift field (its measurement and drift series) were added (13.0 MB); 74 with the compose
    // manager's `same_td` check (here in both node scopes); 77 with the state-since and
    // dispatched-slot gauges a running daemon sets (left out before) and the platform info
    // series. docs/metrics.md#cardinality breaks the figure down by family. A NEAR gateway
    // target adds up to 27 more (its 9 tracked fields, in the three measurement families) and
    // 15 for its compose manager's 5 fields. The bound leaves room for label growth, not for new
    // families.
    assert!(text.len() <= 14_500_000, "scrape of {} bytes", text.len());
}

#[test]
fn a_target_that_changes_format_exports_only_the_new_one() {
    use teewatch::verify::AttestationFormat;
    let m = Metrics::new().unwrap();
    m.retain_targets(&["moving".to_string()]);
    let mut s = snapshot("moving", State::Pass, 1, false);
    m.set_target(&s, true);
    s.attestation_format = Some(AttestationFormat::Chutes);
    s.state = State::Fail;
    m.set_target(&s, true);
    let text = m.render().unwrap();
    let lines = lines_of(&text, "teewatch_attestation_format_info", "\"moving\"");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("format=\"chutes\""), "{lines:?}");
    // A check that read no response exports no format at all.
    s.attestation_format = None;
    m.set_target(&s, true);
    let text = m.render().unwrap();
    assert!(lines_of(&text, "teewatch_attestation_format_info", "\"moving\"").is_empty());
}
