//! The shipped Prometheus alert rules (`dashboards/prometheus/alerts.yml`) and the example
//! Alertmanager configuration (`dashboards/alertmanager/alertmanager.yml`): promtool accepts the
//! rules and passes their unit tests (alert by alert, restarts and scrape gaps, incidents),
//! amtool accepts the configuration, and the promises of the rules file's header hold: every
//! selector of a scraped series carries the one job matcher, every `runbook_url` is the one base
//! and the alert's anchor in `docs/alerts.md`, every `for:` and `keep_firing_for:` has the form
//! the end-to-end test's substitution covers, no annotation prints an address, the inhibit rules
//! name only alerts and `cause` values the rules make, and the alerts about a platform name its
//! targets. Without promtool or amtool the tests that run them fail, naming the install command.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use crate::common::prom;
use crate::common::tool;

use std::collections::BTreeSet;

/// `promtool`, or the test fails naming the command that installs it.
#[track_caller]
fn promtool() -> std::path::PathBuf {
    tool::tool("promtool", prom::INSTALL)
}

/// The alerts, in file order, with their severities. Other files (dashboards, the runbook, the
/// Alertmanager example, the end-to-end test) name them: never rename one.
const ALERTS: [(&str, &str); 17] = [
    ("TeewatchAttestationFailing", "critical"),
    ("TeewatchMeasurementDrift", "critical"),
    ("TeewatchComposeManagerAction", "warning"),
    ("TeewatchCanarySignatureFailing", "critical"),
    ("TeewatchAttestationUnverifiable", "warning"),
    ("TeewatchAttestationMostlyUnverifiable", "warning"),
    ("TeewatchNrasUnreachable", "warning"),
    ("TeewatchPccsUnreachable", "warning"),
    ("TeewatchTcbStatusOutsidePolicy", "warning"),
    ("TeewatchCollateralExpiringSoon", "warning"),
    ("TeewatchCollateralStale", "warning"),
    ("TeewatchTargetStale", "warning"),
    ("TeewatchStoreWriteFailing", "critical"),
    ("TeewatchIdentityNotPinned", "info"),
    ("TeewatchDown", "critical"),
    ("TeewatchFleetInstanceLost", "warning"),
    ("TeewatchVantageDisagreement", "critical"),
];

/// The recording rules before the alerts: the seven held gauges (the platform map among them),
/// the two held fleet views (a peer's lease, a vantage disagreement) and the two `cause` rules.
const RECORDING_RULES: usize = 11;

/// The one job matcher and the one runbook base the header of the rules file names.
const JOB_MATCHER: &str = r#"job=~"teewatch.*""#;
const RUNBOOK_BASE: &str = "https://teewatch.example.org/docs/alerts.md";

/// The text of one alerting rule: from its `- alert:` line to the next rule or the end.
fn rule_block<'a>(rules: &'a str, name: &str) -> &'a str {
    let start = rules
        .find(&format!("- alert: {name}\n"))
        .unwrap_or_else(|| panic!("{name} is not in {}", prom::RULES));
    let rest = &rules[start + 2..];
    let end = rest.find("\n      - ").unwrap_or(rest.len());
    &rest[..end]
}

/// The value of `key:` in a rule block (the first line that starts with it), unquoted.
fn field<'a>(block: &'a str, key: &str) -> Option<&'a str> {
    block
        .lines()
        .find_map(|line| line.trim().strip_prefix(&format!("{key}:")))
        .map(|v| v.trim().trim_matches('"'))
}

/// Every rule's `expr`: the one-line form, or the lines of a `|` block up to the next key.
fn exprs(rules: &str) -> Vec<String> {
    let lines: Vec<&str> = rules.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(value) = line.trim_start().strip_prefix("expr:") else {
            continue;
        };
        if value.trim() != "|" {
            out.push(value.trim().to_string());
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let block: Vec<&str> = lines[i + 1..]
            .iter()
            .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
            .copied()
            .collect();
        out.push(block.join("\n"));
    }
    out
}

/// The metric selectors of an expression: each name of a series Prometheus scrapes from teewatch
/// (`teewatch_…` and `up`, never a recording rule's `…:…`) with its `{…}` matchers, if any.
fn scraped_selectors(expr: &str) -> Vec<(String, String)> {
    let bytes = expr.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':';
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if !word(bytes[i]) || (i > 0 && word(bytes[i - 1])) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && word(bytes[i]) {
            i += 1;
        }
        let name = &expr[start..i];
        if !(name.starts_with("teewatch_") || name == "up") || name.contains(':') {
            continue;
        }
        let matchers = if bytes.get(i) == Some(&b'{') {
            let end = expr[i..].find('}').map(|e| i + e + 1).unwrap();
            expr[i..end].to_string()
        } else {
            String::new()
        };
        out.push((name.to_string(), matchers));
    }
    out
}

#[test]
fn promtool_accepts_the_rules() {
    let (ok, said) = prom::run(&promtool(), &["check", "rules", prom::RULES]);
    assert!(ok, "promtool check rules failed:\n{said}");
    let expected = format!("SUCCESS: {} rules found", ALERTS.len() + RECORDING_RULES);
    assert!(
        said.contains(&expected),
        "expected {expected:?}, found:\n{said}"
    );
    assert!(
        !said.contains("WARNING") && !said.contains("FAILED"),
        "promtool complained:\n{said}"
    );
}

#[test]
fn promtool_unit_tests_of_every_alert_pass() {
    let mut args = vec!["test", "rules"];
    args.extend(prom::RULE_TESTS);
    let (ok, said) = prom::run(&promtool(), &args);
    assert!(ok, "promtool test rules failed:\n{said}");
    for file in prom::RULE_TESTS {
        let at = said
            .find(&format!("Unit Testing:  {file}"))
            .unwrap_or_else(|| panic!("promtool did not test {file}:\n{said}"));
        assert!(said[at..].contains("SUCCESS"), "{file}:\n{said}");
    }
    assert_eq!(
        said.matches("SUCCESS").count(),
        prom::RULE_TESTS.len(),
        "{said}"
    );
}

#[test]
fn amtool_accepts_the_example_alertmanager_configuration() {
    let (ok, said) = prom::run(
        &tool::amtool(),
        &["check-config", prom::ALERTMANAGER_CONFIG],
    );
    assert!(ok, "amtool check-config failed:\n{said}");
    assert!(said.contains("SUCCESS"), "{said}");
    let config = prom::read(prom::ALERTMANAGER_CONFIG);
    let inhibit = config.matches("- source_matchers:").count();
    assert!(
        said.contains(&format!(" - {inhibit} inhibit rules")),
        "amtool should find the {inhibit} inhibit rules of the file:\n{said}"
    );
}

#[test]
fn the_alerts_are_the_documented_ones_with_their_severities_and_annotations() {
    let rules = prom::read(prom::RULES);
    let names = prom::alert_names(&rules);
    let expected: Vec<&str> = ALERTS.iter().map(|(name, _)| *name).collect();
    assert_eq!(names, expected, "the alerts of {}", prom::RULES);
    assert_eq!(rules.matches("- record: ").count(), RECORDING_RULES);
    assert_eq!(rules.matches("- name: ").count(), 1, "one group");
    assert!(rules.contains("- name: teewatch\n"));
    let runbook = prom::read(prom::RUNBOOK);
    for (name, severity) in ALERTS {
        let block = rule_block(&rules, name);
        assert_eq!(field(block, "severity"), Some(severity), "{name}");
        for key in ["expr", "for", "summary", "description", "runbook_url"] {
            assert!(field(block, key).is_some(), "{name} has no {key}");
        }
        let anchor = name.to_lowercase();
        assert_eq!(
            field(block, "runbook_url"),
            Some(format!("{RUNBOOK_BASE}#{anchor}").as_str()),
            "{name}: the runbook base, then the alert's anchor"
        );
        // GitHub and most renderers make `## TeewatchDown` the anchor `#teewatchdown`.
        assert!(
            runbook.lines().any(|l| l == format!("## {name}")),
            "{} has no `## {name}` section for the anchor #{anchor}",
            prom::RUNBOOK
        );
        assert!(
            !block.contains("runbook:"),
            "{name}: `runbook_url` replaces the old `runbook`"
        );
    }
    // One base, named in the header: a single `sed` moves every link.
    assert_eq!(
        rules.matches("runbook_url: ").count(),
        ALERTS.len(),
        "one runbook_url per alert"
    );
    assert_eq!(
        rules.matches(RUNBOOK_BASE).count(),
        ALERTS.len() + 2,
        "the base appears in every runbook_url and twice in the header"
    );
}

#[test]
fn no_critical_alert_reads_an_outage() {
    let rules = prom::read(prom::RULES);
    for (name, severity) in ALERTS {
        if severity != "critical" {
            continue;
        }
        let expr = exprs(rule_block(&rules, name)).remove(0);
        assert!(
            !expr.contains("unknown"),
            "{name} is critical and reads an unknown state: {expr}"
        );
        for line in expr.lines().filter(|l| l.contains("_state")) {
            assert!(!line.contains("== 1"), "{name} is critical: {line}");
        }
    }
}

#[test]
fn annotations_never_print_an_address() {
    let rules = prom::read(prom::RULES);
    for (name, _) in ALERTS {
        let block = rule_block(&rules, name);
        let annotations = &block[block.find("annotations:").unwrap()..];
        // `$labels.instance` may be passed to a query, never printed.
        assert!(
            !annotations.contains("{{ $labels.instance }}"),
            "{name} prints its instance"
        );
        for address in ["127.0.0.1", "localhost", "::1", ":9477"] {
            assert!(!annotations.contains(address), "{name} names {address}");
        }
    }
}

#[test]
fn the_alerts_about_a_platform_name_its_targets_through_the_held_platform_map() {
    let rules = prom::read(prom::RULES);
    // An alert per platform (its summary names the `fmspc`) has no `target` label: its
    // description lists the platform's targets of the same daemon, held through a restart.
    let per_platform: Vec<&str> = ALERTS
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| {
            field(rule_block(&rules, name), "summary").is_some_and(|s| s.contains("$labels.fmspc"))
        })
        .collect();
    assert_eq!(
        per_platform,
        ["TeewatchCollateralExpiringSoon", "TeewatchCollateralStale"]
    );
    let lookup = r#"printf "target:teewatch_target_platform_info:last_known{job=%q,instance=%q,fmspc=%q}" $labels.job $labels.instance $labels.fmspc | query"#;
    for name in per_platform {
        let block = rule_block(&rules, name);
        let description = &block[block.find("description:").unwrap()..];
        assert_eq!(
            description.matches(lookup).count(),
            1,
            "{name} lists the platform's targets once, in every state"
        );
        assert!(
            description.contains(r#"{{ range $i, $s := sortByLabel "target" . }}"#),
            "{name} prints the targets in order"
        );
    }
}

/// What breaks the job-matcher promise in one expression: a selector of a scraped series that
/// does not start with the matcher, or a job selected any other way (the label may appear only
/// in that matcher and in groupings such as `on (job, instance)`).
fn job_matcher_problems(expr: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, matchers) in scraped_selectors(expr) {
        if !matchers.starts_with(&format!("{{{JOB_MATCHER}")) {
            problems.push(format!(
                "`{name}{matchers}` does not start with {JOB_MATCHER}"
            ));
        }
    }
    let without = expr.replace(JOB_MATCHER, "");
    for (i, _) in without.match_indices("job") {
        let after = without[i + 3..].trim_start();
        if !(after.starts_with(',') || after.starts_with(')')) {
            problems.push(format!(
                "a job selected otherwise: `job{}`",
                &after[..after.len().min(20)]
            ));
        }
    }
    problems
}

#[test]
fn every_selector_of_a_scraped_series_carries_the_one_job_matcher() {
    let rules = prom::read(prom::RULES);
    let all = exprs(&rules);
    assert_eq!(all.len(), ALERTS.len() + RECORDING_RULES);
    for expr in &all {
        assert_eq!(
            job_matcher_problems(expr),
            Vec::<String>::new(),
            "in:\n{expr}"
        );
    }
    let seen: BTreeSet<String> = all
        .iter()
        .flat_map(|e| scraped_selectors(e))
        .map(|(name, _)| name)
        .collect();
    assert!(
        seen.contains("up") && seen.contains("teewatch_target_state"),
        "{seen:?}"
    );
    // The header's `sed` changes every one of them and nothing else.
    let header_sed = r#"sed -i 's/job=~"teewatch\.\*"/job=~"my-job"/g' alerts.yml"#;
    assert!(rules.contains(header_sed), "the header shows the sed");
    let moved = rules.replace(JOB_MATCHER, r#"job=~"my-job""#);
    for expr in exprs(&moved) {
        assert!(!expr.contains("teewatch.*"), "{expr}");
    }
}

#[test]
fn the_job_matcher_check_finds_a_selector_without_it_or_another_job_matcher() {
    let rules = prom::read(prom::RULES);
    let expr = exprs(rule_block(&rules, "TeewatchStoreWriteFailing")).remove(0);
    assert_eq!(job_matcher_problems(&expr), Vec::<String>::new());
    // The matcher dropped from the one selector.
    let bare = expr.replace(&format!("{{{JOB_MATCHER}}}"), "");
    assert_eq!(
        job_matcher_problems(&bare),
        [format!(
            "`teewatch_store_errors_total` does not start with {JOB_MATCHER}"
        )]
    );
    // Another job selected beside it.
    let other = expr.replace(JOB_MATCHER, &format!(r#"{JOB_MATCHER},job!="test""#));
    assert_eq!(
        job_matcher_problems(&other),
        [r#"a job selected otherwise: `job!="test"}[15m]) > 0`"#.to_string()]
    );
}

#[test]
fn every_alert_has_a_runbook_section_and_unit_tests_that_fire_and_that_do_not() {
    let tests: String = prom::RULE_TESTS.iter().map(|f| prom::read(f)).collect();
    let lines: Vec<&str> = tests.lines().map(str::trim).collect();
    for (name, _) in ALERTS {
        // Each `alertname: X` is followed by `exp_alerts: []` (must not fire) or by
        // `exp_alerts:` and a list, or an alias of one (fires).
        let (mut fires, mut silent) = (0, 0);
        for (i, line) in lines.iter().enumerate() {
            if *line != format!("alertname: {name}") {
                continue;
            }
            match lines.get(i + 1).copied() {
                Some("exp_alerts: []") => silent += 1,
                Some(l) if l.starts_with("exp_alerts:") => fires += 1,
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
fn the_runbook_explains_the_mechanism_and_the_pages_of_each_incident() {
    let runbook = prom::read(prom::RUNBOOK);
    for heading in [
        "## Restarts, stalls and scrape gaps",
        "## One page per incident",
    ] {
        assert!(
            runbook.lines().any(|l| l == heading),
            "{} has no `{heading}` (its anchor is linked from the rules)",
            prom::RUNBOOK
        );
    }
    let rules = prom::read(prom::RULES);
    assert!(rules.contains("docs/alerts.md#restarts-stalls-and-scrape-gaps"));
    assert!(rules.contains("docs/alerts.md#one-page-per-incident"));
    let section = &runbook[runbook.find("## One page per incident").unwrap()..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |e| e + 3)];
    for scenario in [
        "a 2-second restart",
        "an 8-minute stall",
        "an NRAS outage",
        "a fleet-wide TCB change",
        "a pinned drift",
        "chronic flapping",
    ] {
        let row = section
            .lines()
            .find(|l| l.starts_with(&format!("| {scenario} ")))
            .unwrap_or_else(|| panic!("the table of {} has no row `{scenario}`", prom::RUNBOOK));
        // scenario, what Prometheus raises, pages, tickets
        assert_eq!(row.matches(" | ").count(), 3, "{row}");
    }
}

#[test]
fn the_inhibit_rules_name_alerts_and_causes_the_rules_make() {
    let rules = prom::read(prom::RULES);
    let config = prom::read(prom::ALERTMANAGER_CONFIG);
    let names: BTreeSet<String> = prom::alert_names(&rules).into_iter().collect();
    // Every `alertname="X"` the configuration matches on is an alert of the rules.
    for (i, _) in config.match_indices("alertname=\"") {
        let rest = &config[i + "alertname=\"".len()..];
        let name = &rest[..rest.find('"').unwrap()];
        assert!(
            names.contains(name),
            "{} names {name}, no alert",
            prom::ALERTMANAGER_CONFIG
        );
    }
    // The causes the recording rules set, and those the inhibit rules read.
    let made: BTreeSet<&str> = rules
        .match_indices("\"cause\", \"")
        .map(|(i, _)| {
            let rest = &rules[i + "\"cause\", \"".len()..];
            &rest[..rest.find('"').unwrap()]
        })
        .collect();
    assert_eq!(
        made,
        BTreeSet::from([
            "canary",
            "nras",
            "not_pinned",
            "other",
            "pccs",
            "pin",
            "proof",
            "tcb_status"
        ])
    );
    let read: BTreeSet<&str> = config
        .lines()
        .filter(|l| l.trim_start().starts_with("target_matchers:"))
        .flat_map(|l| l.match_indices("cause=\"").map(move |(i, _)| (l, i)))
        .map(|(l, i)| {
            let rest = &l[i + "cause=\"".len()..];
            &rest[..rest.find('"').unwrap()]
        })
        .collect();
    // `proof` and `other` are what no other alert explains: they always notify.
    let explained: BTreeSet<&str> = made
        .iter()
        .copied()
        .filter(|c| !["proof", "other"].contains(c))
        .collect();
    assert_eq!(read, explained, "the causes the inhibit rules hold back");
}

#[test]
fn every_duration_has_the_form_the_end_to_end_substitution_covers() {
    let rules = prom::read(prom::RULES);
    let fast = prom::minutes_to_seconds(&rules);
    let timed = |l: &str| {
        let l = l.trim_start();
        l.starts_with("for:") || l.starts_with("keep_firing_for:")
    };
    let fors = rules
        .lines()
        .filter(|l| l.trim_start().starts_with("for:"))
        .count();
    assert_eq!(fors, ALERTS.len(), "every alert states its `for`");
    // Only those lines change, each from minutes to as many seconds.
    assert_eq!(fast.lines().count(), rules.lines().count());
    for (before, after) in rules.lines().zip(fast.lines()) {
        if timed(before) {
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
    assert_eq!(
        field(
            rule_block(&fast, "TeewatchNrasUnreachable"),
            "keep_firing_for"
        ),
        Some("10s")
    );
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

#[test]
#[should_panic(expected = "is not `keep_firing_for: <N>m`")]
fn the_substitution_refuses_a_keep_firing_for_it_would_miss() {
    let _ = prom::minutes_to_seconds("        keep_firing_for: 90s\n");
}
