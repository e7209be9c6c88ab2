//! The shipped Prometheus alert rules (`dashboards/prometheus/alerts.yml`): promtool accepts
//! them and passes their unit tests (`alerts_test.yml`), every alert has a runbook section in
//! `docs/alerts.md` and unit tests that fire and that do not, and every `for:` has the form the
//! end-to-end test's substitution covers. Without promtool the promtool tests fail, naming the
//! install command.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "common/prom.rs"]
mod prom;
#[path = "common/tool.rs"]
mod tool;

/// `promtool`, or the test fails naming the command that installs it.
#[track_caller]
fn promtool() -> std::path::PathBuf {
    tool::tool("promtool", prom::INSTALL)
}

/// The alerts, in file order, with their severities. Other files (dashboards, the runbook, the
/// end-to-end test) name them: never rename one.
const ALERTS: [(&str, &str); 12] = [
    ("TeewatchAttestationFailing", "critical"),
    ("TeewatchMeasurementDrift", "critical"),
    ("TeewatchComposeManagerAction", "warning"),
    ("TeewatchCanarySignatureFailing", "critical"),
    ("TeewatchAttestationUnverifiable", "warning"),
    ("TeewatchTcbStatusOutsidePolicy", "warning"),
    ("TeewatchCollateralExpiringSoon", "warning"),
    ("TeewatchCollateralStale", "warning"),
    ("TeewatchTargetStale", "warning"),
    ("TeewatchStoreWriteFailing", "critical"),
    ("TeewatchIdentityNotPinned", "info"),
    ("TeewatchDown", "critical"),
];

/// The text of one alerting rule: from its `- alert:` line to the next rule or the end.
fn rule_block<'a>(rules: &'a str, name: &str) -> &'a str {
    let start = rules
        .find(&format!("- alert: {name}\n"))
        .unwrap_or_else(|| panic!("{name} is not in {}", prom::RULES));
    let rest = &rules[start + 2..];
    let end = rest.find("- alert: ").unwrap_or(rest.len());
    &rest[..end]
}

/// The value of `key:` in a rule block (the first line that starts with it), unquoted.
fn field<'a>(block: &'a str, key: &str) -> Option<&'a str> {
    block
        .lines()
        .find_map(|line| line.trim().strip_prefix(&format!("{key}:")))
        .map(|v| v.trim().trim_matches('"'))
}

#[test]
fn promtool_accepts_the_rules() {
    let (ok, said) = prom::run(&promtool(), &["check", "rules", prom::RULES]);
    assert!(ok, "promtool check rules failed:\n{said}");
    assert!(
        said.contains(&format!("SUCCESS: {} rules found", ALERTS.len())),
        "{said}"
    );
    assert!(
        !said.contains("WARNING") && !said.contains("FAILED"),
        "promtool complained:\n{said}"
    );
}

#[test]
fn promtool_unit_tests_of_every_alert_pass() {
    let (ok, said) = prom::run(&promtool(), &["test", "rules", prom::RULE_TESTS]);
    assert!(ok, "promtool test rules failed:\n{said}");
    assert!(said.contains("SUCCESS"), "{said}");
}

#[test]
fn the_alerts_are_the_documented_ones_with_their_severities_and_annotations() {
    let rules = prom::read(prom::RULES);
    let names = prom::alert_names(&rules);
    let expected: Vec<&str> = ALERTS.iter().map(|(name, _)| *name).collect();
    assert_eq!(names, expected, "the alerts of {}", prom::RULES);
    assert_eq!(
        rules.matches("- name: ").count(),
        1,
        "one group, `teewatch`"
    );
    assert!(rules.contains("- name: teewatch\n"));
    for (name, severity) in ALERTS {
        let block = rule_block(&rules, name);
        assert_eq!(field(block, "severity"), Some(severity), "{name}");
        for key in ["expr", "for", "summary", "description"] {
            assert!(field(block, key).is_some(), "{name} has no {key}");
        }
        assert_eq!(
            field(block, "runbook"),
            Some(format!("docs/alerts.md#{}", name.to_lowercase()).as_str()),
            "{name}"
        );
    }
    // An outage (state 1) is never critical.
    for (name, severity) in ALERTS {
        let expr = field(rule_block(&rules, name), "expr").unwrap();
        if expr.contains("== 1") && expr.contains("state") {
            assert_ne!(severity, "critical", "{name} is about an outage");
        }
    }
}

#[test]
fn every_alert_has_a_runbook_section_and_unit_tests_that_fire_and_that_do_not() {
    let runbook = prom::read(prom::RUNBOOK);
    let tests = prom::read(prom::RULE_TESTS);
    let lines: Vec<&str> = tests.lines().map(str::trim).collect();
    for (name, _) in ALERTS {
        assert!(
            runbook.lines().any(|l| l == format!("## {name}")),
            "{} has no `## {name}` section",
            prom::RUNBOOK
        );
        // Each `alertname: X` is followed by `exp_alerts: []` (must not fire) or by
        // `exp_alerts:` and a list (fires).
        let (mut fires, mut silent) = (0, 0);
        for (i, line) in lines.iter().enumerate() {
            if *line != format!("alertname: {name}") {
                continue;
            }
            match lines.get(i + 1).copied() {
                Some("exp_alerts: []") => silent += 1,
                Some("exp_alerts:") => fires += 1,
                other => panic!("{name}: unexpected {other:?} after its alertname"),
            }
        }
        assert!(fires > 0, "{name} has no unit test in which it fires");
        assert!(
            silent > 0,
            "{name} has no unit test in which it must not fire"
        );
    }
}

#[test]
fn every_for_has_the_form_the_end_to_end_substitution_covers() {
    let rules = prom::read(prom::RULES);
    let fast = prom::minutes_to_seconds(&rules);
    let fors: Vec<&str> = rules
        .lines()
        .filter(|l| l.trim_start().starts_with("for:"))
        .collect();
    assert_eq!(fors.len(), ALERTS.len(), "every alert states its `for`");
    // Only the `for:` lines change, each from minutes to as many seconds.
    assert_eq!(fast.lines().count(), rules.lines().count());
    for (before, after) in rules.lines().zip(fast.lines()) {
        if before.trim_start().starts_with("for:") {
            assert_eq!(after, format!("{}s", before.strip_suffix('m').unwrap()));
        } else {
            assert_eq!(before, after);
        }
    }
    for (name, seconds) in [
        ("TeewatchMeasurementDrift", "0s"),
        ("TeewatchAttestationFailing", "3s"),
        ("TeewatchAttestationUnverifiable", "30s"),
        ("TeewatchDown", "5s"),
    ] {
        assert_eq!(
            field(rule_block(&fast, name), "for"),
            Some(seconds),
            "{name}"
        );
    }
    let runbook = prom::read(prom::RUNBOOK);
    assert!(
        runbook.contains("every\n`for: <N>m` becomes `for: <N>s`"),
        "{} documents the substitution",
        prom::RUNBOOK
    );
}

#[test]
#[should_panic(expected = "is not `for: <N>m`")]
fn the_substitution_refuses_a_for_it_would_miss() {
    let _ = prom::minutes_to_seconds("        for: 1h\n");
}
