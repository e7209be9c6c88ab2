//! The Grafana dashboard (`dashboards/grafana/teewatch.json`, `docs/dashboard.md`): its shape
//! (datasource and target variables, panel ids, layout, state mappings), every PromQL expression
//! parsed by promtool, and every metric and label it uses checked against a populated scrape of
//! the daemon running against the simulator. The fleet dashboard (`teewatch-fleet.json`) is
//! checked in `fleet.rs`, with Grafana's SQL macros emulated in `grafana_sql.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use crate::common;
pub mod fleet;
pub mod grafana_sql;
mod links;
mod promql;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;

use common::daemon_run::{manual_schedule, scrape, start_daemon};
use common::sim_run::start;
use teewatch_sim::faults::Fault;
use teewatch_sim::server::{SimOptions, model_name};

use promql::{
    TARGET_LABELS, expressions, promtool_check_rules, read_scrape, refs, rules_file, substitute,
    variable_expr,
};

const DASHBOARD: &str = "dashboards/grafana/teewatch.json";

/// Series Prometheus makes itself rather than scraping them.
const PROMETHEUS_SERIES: [&str; 1] = ["up"];

fn dashboard() -> Value {
    let path = common::repo_path(DASHBOARD);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{DASHBOARD} is not JSON: {e}"))
}

/// Every panel, the panels of collapsed rows included, in document order.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut all = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        all.push(panel);
        if let Some(nested) = panel.get("panels").and_then(Value::as_array) {
            all.extend(nested);
        }
    }
    all
}

fn is_row(panel: &Value) -> bool {
    panel["type"] == "row"
}

fn variable<'a>(dashboard: &'a Value, name: &str) -> &'a Value {
    dashboard["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no variable {name}"))
}

/// The text of a query variable's query: a string, or `{"query": ...}` as Grafana 10 saves it.
fn variable_query(var: &Value) -> &str {
    match &var["query"] {
        Value::String(s) => s,
        other => other["query"]
            .as_str()
            .expect("query variable without a query"),
    }
}

fn refers_to_ds(datasource: &Value) -> bool {
    datasource["type"] == "prometheus" && datasource["uid"] == "${ds}"
}

// ------------------------------------------------------------------------------------------------
// tests

#[test]
fn dashboard_is_importable_with_its_variables() {
    let d = dashboard();
    assert_eq!(d["uid"], "teewatch");
    assert!(d["title"].as_str().is_some_and(|t| !t.is_empty()));
    let schema = d["schemaVersion"].as_u64().expect("schemaVersion");
    assert!(
        (36..=41).contains(&schema),
        "schemaVersion {schema}: Grafana 10/11 use 36 to 41"
    );
    assert!(
        d.get("__inputs").is_none(),
        "the datasource is the variable ds, not an import input"
    );

    let ds = variable(&d, "ds");
    assert_eq!(ds["type"], "datasource");
    assert_eq!(ds["query"], "prometheus");

    let target = variable(&d, "target");
    assert_eq!(target["type"], "query");
    assert!(refers_to_ds(&target["datasource"]), "{target}");
    assert_eq!(target["multi"], true);
    assert_eq!(target["includeAll"], true);
    let query = variable_query(target);
    assert!(
        query.starts_with("label_values(teewatch_target_state") && query.ends_with(", target)"),
        "{query}"
    );
    for var in d["templating"]["list"].as_array().unwrap() {
        if var["type"] == "query" {
            assert!(refers_to_ds(&var["datasource"]), "variable {var}");
            assert_eq!(
                var["definition"].as_str(),
                Some(variable_query(var)),
                "{var}"
            );
        }
    }

    for annotation in d["annotations"]["list"].as_array().unwrap() {
        if annotation.get("builtIn").is_none_or(|b| b != 1) {
            assert!(
                refers_to_ds(&annotation["datasource"]),
                "annotation {annotation}"
            );
        }
    }

    let mut ids = BTreeSet::new();
    for panel in panels(&d) {
        let title = panel["title"].as_str().unwrap_or("");
        assert!(!title.is_empty(), "a panel without a title: {panel}");
        let id = panel["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("{title}: id"));
        assert!(ids.insert(id), "panel id {id} ({title}) is not unique");
        let grid = &panel["gridPos"];
        let [h, w, x, _] = ["h", "w", "x", "y"].map(|k| {
            grid[k]
                .as_u64()
                .unwrap_or_else(|| panic!("{title}: gridPos.{k}"))
        });
        assert!(h >= 1 && w >= 1 && x + w <= 24, "{title}: gridPos {grid}");
        // Rows query nothing; the alert list reads Grafana's rule list, not a data source
        // (tests/dashboard/links.rs checks it).
        if is_row(panel) || panel["type"] == "alertlist" {
            continue;
        }
        assert!(
            refers_to_ds(&panel["datasource"]),
            "{title}: datasource {}",
            panel["datasource"]
        );
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no queries");
        let mut refs = BTreeSet::new();
        for t in targets {
            assert!(refers_to_ds(&t["datasource"]), "{title}: target {t}");
            assert!(
                refs.insert(t["refId"].to_string()),
                "{title}: refId repeated"
            );
        }
        if let Some(repeat) = panel.get("repeat") {
            assert_eq!(repeat, "target", "{title}");
        }
    }
}

#[test]
fn panels_do_not_overlap() {
    assert_no_overlap(&dashboard());
}

/// No two panels of a dashboard overlap.
fn assert_no_overlap(d: &Value) {
    // The expanded panels, and separately each collapsed row's own panels.
    let mut groups: Vec<Vec<&Value>> = vec![d["panels"].as_array().unwrap().iter().collect()];
    for panel in d["panels"].as_array().unwrap() {
        if let Some(nested) = panel.get("panels").and_then(Value::as_array) {
            groups.push(nested.iter().collect());
        }
    }
    for group in groups {
        let boxes: Vec<(&str, [u64; 4])> = group
            .iter()
            .map(|p| {
                let g = &p["gridPos"];
                (
                    p["title"].as_str().unwrap_or(""),
                    ["x", "y", "w", "h"].map(|k| g[k].as_u64().unwrap()),
                )
            })
            .collect();
        for (i, (a, [ax, ay, aw, ah])) in boxes.iter().enumerate() {
            for (b, [bx, by, bw, bh]) in &boxes[i + 1..] {
                let apart = ax + aw <= *bx || bx + bw <= *ax || ay + ah <= *by || by + bh <= *ay;
                assert!(apart, "panels {a:?} and {b:?} overlap");
            }
        }
    }
}

/// Whether a panel maps the state code 0, 1, 2 to pass (green), unknown (yellow), fail (red),
/// in its defaults or an override.
fn has_state_mapping(panel: &Value) -> bool {
    fn mappings(v: &Value, out: &mut Vec<Value>) {
        match v {
            Value::Object(map) => {
                if map.get("type").is_some_and(|t| t == "value") && map.contains_key("options") {
                    out.push(v.clone());
                }
                map.values().for_each(|child| mappings(child, out));
            }
            Value::Array(items) => items.iter().for_each(|child| mappings(child, out)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    mappings(&panel["fieldConfig"], &mut found);
    found.iter().any(|m| {
        [
            ("0", "pass", "green"),
            ("1", "unknown", "yellow"),
            ("2", "fail", "red"),
        ]
        .iter()
        .all(|(code, text, color)| {
            let option = &m["options"][code];
            option["text"] == *text && option["color"] == *color
        })
    })
}

#[test]
fn panels_showing_a_state_code_map_it_to_its_name() {
    let d = dashboard();
    let mut state_panels = 0;
    for panel in panels(&d) {
        let shows_state = panel["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["expr"].as_str())
            .any(|expr| {
                let metrics = refs(&substitute(expr)).metrics;
                (metrics.contains("teewatch_target_state")
                    || metrics.contains("teewatch_check_state"))
                    && !expr.contains("bool")
                    && !expr.contains("changes(")
            });
        if shows_state {
            state_panels += 1;
            assert!(
                has_state_mapping(panel),
                "panel {} shows a state code without the 0 pass / 1 unknown / 2 fail mapping",
                panel["title"]
            );
        }
    }
    assert!(state_panels >= 3, "only {state_panels} state panels");
}

/// What the checks below read from an expression: metrics apart from functions, keywords and
/// numbers, the labels of each selector with its metric, and the labels of every grouping
/// clause; and the PromQL inside a Grafana variable, and the variables substituted.
#[test]
fn expressions_are_read_for_metrics_selector_labels_and_grouping_labels() {
    let r = refs(&substitute(
        "histogram_quantile(0.95, sum by (le, phase) (rate(teewatch_check_duration_seconds_bucket\
         {job=~\"$job\",phase!=\"a b\"}[$__rate_interval]))) > bool 0 or on (target) \
         time() - teewatch_last_check_timestamp_seconds offset 5m and up",
    ));
    assert_eq!(
        r.metrics.iter().map(String::as_str).collect::<Vec<_>>(),
        [
            "teewatch_check_duration_seconds_bucket",
            "teewatch_last_check_timestamp_seconds",
            "up"
        ]
    );
    assert_eq!(r.grouping_labels, ["le", "phase", "target"]);
    assert_eq!(
        r.selector_labels,
        [
            (
                Some("teewatch_check_duration_seconds_bucket".to_string()),
                "job".to_string()
            ),
            (
                Some("teewatch_check_duration_seconds_bucket".to_string()),
                "phase".to_string()
            ),
        ]
    );
    assert_eq!(
        variable_expr("label_values(teewatch_target_state{job=~\"a,b\"}, target)").as_deref(),
        Some("teewatch_target_state{job=~\"a,b\"}")
    );
    assert_eq!(variable_expr("label_values(job)"), None);
    assert_eq!(
        substitute("x{target=~\"${target:regex}\"}[$__range]"),
        "x{target=~\"model-a|model-b\"}[1m]"
    );
}

#[test]
fn every_expression_parses_in_promtool() {
    let promtool = common::tool::tool("promtool", "apt-get install -y prometheus");
    let d = dashboard();
    let exprs = expressions(&d);
    assert!(exprs.len() >= 20, "only {} expressions", exprs.len());
    let substituted: Vec<String> = exprs.iter().map(|e| substitute(&e.expr)).collect();
    for (e, s) in exprs.iter().zip(&substituted) {
        assert!(!s.contains('$'), "{}: {s}", e.place);
    }

    let dir = std::env::temp_dir().join(format!("teewatch-dashboard-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rules = dir.join("dashboard.rules.yml");
    std::fs::write(&rules, rules_file(&substituted)).unwrap();
    let broken = dir.join("broken.rules.yml");
    std::fs::write(&broken, rules_file(&["sum(teewatch_targets".to_string()])).unwrap();
    let (ok, said) = promtool_check_rules(&promtool, &rules);
    let (control_ok, _) = promtool_check_rules(&promtool, &broken);
    std::fs::remove_dir_all(&dir).unwrap();

    let listing: String = exprs
        .iter()
        .zip(&substituted)
        .enumerate()
        .map(|(n, (e, s))| format!("dashboard:expr_{}  {}\n    {s}\n", n + 1, e.place))
        .collect();
    assert!(ok, "promtool rejected an expression:\n{said}\n{listing}");
    assert!(
        said.contains(&format!("SUCCESS: {} rules found", substituted.len())),
        "{said}"
    );
    assert!(!control_ok, "promtool accepted a broken expression");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_and_label_the_dashboard_uses_is_exported() {
    let run = start("dashboard", SimOptions::default()).await;
    let config = run.dir.join("sim.toml");
    manual_schedule(&config);
    let daemon = start_daemon(&config, &run.dir).await;
    let target = model_name(0);
    assert!(daemon.check_now(&target).await);
    // A fetch error, so that teewatch_fetch_errors_total has series.
    run.sim
        .state
        .set_fault(None, Fault::NrasDown, true)
        .unwrap();
    assert!(daemon.check_now(&target).await);
    run.sim
        .state
        .set_fault(None, Fault::NrasDown, false)
        .unwrap();
    assert!(daemon.check_now(&target).await);
    let text = scrape(&daemon).await;
    daemon.shutdown(Duration::from_secs(5)).await;
    let scrape = read_scrape(&text);
    assert!(
        scrape.families.contains_key("teewatch_target_state"),
        "{text}"
    );

    let mut problems = Vec::new();
    let mut used = BTreeSet::new();
    for e in expressions(&dashboard()) {
        let r = refs(&substitute(&e.expr));
        assert!(
            !r.metrics.is_empty(),
            "{}: no metric in {}",
            e.place,
            e.expr
        );
        let mut known_labels: BTreeSet<String> =
            TARGET_LABELS.iter().map(|l| l.to_string()).collect();
        for metric in &r.metrics {
            used.insert(metric.clone());
            if PROMETHEUS_SERIES.contains(&metric.as_str()) {
                continue;
            }
            if !scrape.has_series(metric) {
                problems.push(format!("{}: {metric} is not in the scrape", e.place));
            }
            known_labels.extend(scrape.labels_of(metric));
        }
        for (metric, label) in &r.selector_labels {
            let labels = match metric {
                Some(m) if !PROMETHEUS_SERIES.contains(&m.as_str()) => scrape.labels_of(m),
                Some(_) => TARGET_LABELS.iter().map(|l| l.to_string()).collect(),
                None => known_labels.clone(),
            };
            if !labels.contains(label) {
                problems.push(format!(
                    "{}: {} has no label {label:?}",
                    e.place,
                    metric.as_deref().unwrap_or("the expression")
                ));
            }
        }
        for label in r.grouping_labels.iter().chain(&e.display_labels) {
            if !known_labels.contains(label) {
                problems.push(format!(
                    "{}: label {label:?} is on none of {:?}",
                    e.place, r.metrics
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{}\n\nfamilies in the scrape: {:?}",
        problems.join("\n"),
        scrape.families.keys().collect::<Vec<_>>()
    );
    // The dashboard covers the per-target families the brief names.
    for family in [
        "teewatch_target_state",
        "teewatch_check_state",
        "teewatch_target_state_since_timestamp_seconds",
        "teewatch_last_success_timestamp_seconds",
        "teewatch_next_check_timestamp_seconds",
        "teewatch_measurement_info",
        "teewatch_measurement_drift",
        "teewatch_tdx_tcb_status",
        "teewatch_drift_events_total",
        "teewatch_fetch_errors_total",
        "teewatch_check_duration_seconds_bucket",
        "teewatch_collateral_expiry_timestamp_seconds",
        "teewatch_checks_skipped_total",
        "teewatch_checks_in_flight",
        "teewatch_build_info",
    ] {
        assert!(
            used.contains(family),
            "the dashboard does not show {family}"
        );
    }
}

#[test]
fn docs_describe_every_panel_variable_and_annotation() {
    let d = dashboard();
    let doc = std::fs::read_to_string(common::repo_path("docs/dashboard.md")).unwrap();
    for panel in panels(&d) {
        let title = panel["title"].as_str().unwrap();
        let mention = if is_row(panel) {
            format!("### {title}")
        } else {
            format!("**{title}**")
        };
        assert!(doc.contains(&mention), "docs/dashboard.md lacks {mention}");
    }
    for var in d["templating"]["list"].as_array().unwrap() {
        let name = format!("`${}`", var["name"].as_str().unwrap());
        assert!(doc.contains(&name), "docs/dashboard.md lacks {name}");
    }
    for annotation in d["annotations"]["list"].as_array().unwrap() {
        if annotation.get("builtIn").is_none_or(|b| b != 1) {
            let name = format!("| {} |", annotation["name"].as_str().unwrap());
            assert!(doc.contains(&name), "docs/dashboard.md lacks {name}");
        }
    }
}
