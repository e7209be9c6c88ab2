//! The fleet dashboard (`dashboards/grafana/teewatch-fleet.json`, `docs/dashboard.md`): its two
//! data sources are dashboard variables (`${ds}` for Prometheus, `${DS_POSTGRES}` for the shared
//! store), every Prometheus expression parses in promtool and reads the fleet metrics with the
//! labels they carry, every SQL query expands as Grafana expands it and reads the store's
//! nanosecond times through the nanosecond macros, state codes have their colours, and the docs
//! describe every panel. `tests/it/ops/fleet_dashboard_sql.rs` runs the SQL against a real store.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeSet;

use serde_json::Value;

use super::grafana_sql::{Context, expand};
use super::promql::{
    TARGET_LABELS, promtool_check_rules, refs, rules_file, substitute, template_labels,
    variable_expr,
};
use super::{assert_no_overlap, has_state_mapping, is_row, panels, variable, variable_query};
use crate::common;

pub const FLEET_DASHBOARD: &str = "dashboards/grafana/teewatch-fleet.json";

/// The fleet metrics (issue 22's contract) with the labels each carries besides `job` and
/// `instance`, and the metric the `$job` variable reads.
const FLEET_METRICS: [(&str, &[&str]); 8] = [
    ("teewatch_fleet_instance_up", &["peer", "vantage"]),
    ("teewatch_fleet_instance_heartbeat_age_seconds", &["peer"]),
    ("teewatch_fleet_targets_owned", &["peer"]),
    ("teewatch_fleet_slot_claims_lost_total", &[]),
    (
        "teewatch_target_checked_by_info",
        &["target", "checked_by", "vantage"],
    ),
    ("teewatch_vantage_state", &["target", "vantage"]),
    ("teewatch_vantage_disagreement", &["target", "check"]),
    ("teewatch_build_info", &["version"]),
];

pub fn fleet_dashboard() -> Value {
    let path = common::repo_path(FLEET_DASHBOARD);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{FLEET_DASHBOARD} is not JSON: {e}"))
}

fn is_prometheus(ds: &Value) -> bool {
    ds["type"] == "prometheus" && ds["uid"] == "${ds}"
}

fn is_postgres(ds: &Value) -> bool {
    ds["type"] == "grafana-postgresql-datasource" && ds["uid"] == "${DS_POSTGRES}"
}

/// One SQL query of the dashboard: where it is, its text and the format Grafana reads its rows
/// in (`table`, `time_series`; a variable's query is a `table` of values).
pub struct SqlQuery {
    pub place: String,
    pub sql: String,
    pub format: String,
}

/// Every SQL query: the panels' targets on `${DS_POSTGRES}`, then the variables'.
pub fn sql_queries(d: &Value) -> Vec<SqlQuery> {
    let mut found = Vec::new();
    for panel in panels(d) {
        let title = panel["title"].as_str().unwrap_or("");
        for t in panel["targets"].as_array().into_iter().flatten() {
            if let Some(sql) = t["rawSql"].as_str() {
                found.push(SqlQuery {
                    place: format!("panel {title}"),
                    sql: sql.to_string(),
                    format: t["format"].as_str().unwrap_or("").to_string(),
                });
            }
        }
    }
    for var in d["templating"]["list"].as_array().unwrap() {
        if var["type"] == "query" && is_postgres(&var["datasource"]) {
            found.push(SqlQuery {
                place: format!("variable {}", var["name"].as_str().unwrap()),
                sql: variable_query(var).to_string(),
                format: "table".into(),
            });
        }
    }
    found
}

/// Every PromQL expression with where it is and the labels its legend prints: the panels'
/// targets on `${ds}` and the selectors of the Prometheus variables.
fn prometheus_expressions(d: &Value) -> Vec<(String, String, Vec<String>)> {
    let mut found = Vec::new();
    for panel in panels(d) {
        let title = panel["title"].as_str().unwrap_or("");
        for t in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = t["expr"].as_str() {
                let legend = template_labels(t["legendFormat"].as_str().unwrap_or(""));
                found.push((format!("panel {title}"), expr.to_string(), legend));
            }
        }
    }
    for var in d["templating"]["list"].as_array().unwrap() {
        if var["type"] == "query" && is_prometheus(&var["datasource"]) {
            let expr = variable_expr(variable_query(var)).expect("a selector");
            found.push((format!("variable {}", var["name"]), expr, Vec::new()));
        }
    }
    found
}

#[test]
fn the_fleet_dashboard_is_importable_with_both_data_sources_as_variables() {
    let d = fleet_dashboard();
    assert_eq!(d["uid"], "teewatch-fleet");
    assert!(d["title"].as_str().is_some_and(|t| !t.is_empty()));
    let schema = d["schemaVersion"].as_u64().expect("schemaVersion");
    assert!((36..=41).contains(&schema), "schemaVersion {schema}");
    // Data source variables resolve on import and under file provisioning alike; import
    // inputs (`__inputs`) are not resolved by provisioning.
    assert!(d.get("__inputs").is_none(), "no import inputs");
    assert_eq!(variable(&d, "ds")["type"], "datasource");
    assert_eq!(variable(&d, "ds")["query"], "prometheus");
    let pg = variable(&d, "DS_POSTGRES");
    assert_eq!(pg["type"], "datasource");
    // `postgres` is the plugin's id before Grafana 10.3 and its alias since.
    assert_eq!(pg["query"], "postgres");
    let target = variable(&d, "target");
    assert!(is_postgres(&target["datasource"]), "{target}");
    assert_eq!(
        variable_query(target),
        "SELECT name FROM targets ORDER BY name"
    );
    assert_eq!(target["multi"], true);
    assert_eq!(target["includeAll"], true);
    // One variable feeds SQL (`:sqlstring`) and PromQL (`:regex`): a custom "All" value could
    // not be both, so All stands for every value.
    assert!(target.get("allValue").is_none(), "{target}");
    let runbook = variable(&d, "runbook_url");
    assert_eq!(runbook["type"], "textbox");
    assert_eq!(
        runbook["query"],
        "https://teewatch.example.org/docs/alerts.md"
    );

    let (mut prometheus, mut postgres, mut ids) = (0, 0, BTreeSet::new());
    for panel in panels(&d) {
        let title = panel["title"].as_str().unwrap_or("");
        assert!(!title.is_empty(), "a panel without a title");
        let id = panel["id"].as_u64().unwrap();
        assert!(ids.insert(id), "panel id {id} ({title}) is not unique");
        let g = &panel["gridPos"];
        let [h, w, x] = ["h", "w", "x"].map(|k| g[k].as_u64().unwrap());
        assert!(h >= 1 && w >= 1 && x + w <= 24, "{title}: {g}");
        if is_row(panel) {
            continue;
        }
        let ds = &panel["datasource"];
        let sql = is_postgres(ds);
        assert!(sql || is_prometheus(ds), "{title}: datasource {ds}");
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no queries");
        for t in targets {
            assert_eq!(&t["datasource"], ds, "{title}: a query on another source");
            if sql {
                assert!(
                    t["rawSql"].is_string() && t.get("expr").is_none(),
                    "{title}"
                );
                assert_eq!(t["rawQuery"], true, "{title}");
                let format = t["format"].as_str().unwrap_or("");
                assert!(
                    ["table", "time_series"].contains(&format),
                    "{title}: {format}"
                );
            } else {
                assert!(
                    t["expr"].is_string() && t.get("rawSql").is_none(),
                    "{title}"
                );
            }
        }
        if sql {
            postgres += 1;
        } else {
            prometheus += 1;
        }
    }
    assert!(
        prometheus >= 6 && postgres >= 6,
        "{prometheus} / {postgres}"
    );
    assert_no_overlap(&d);

    // Runbook links open a heading docs/alerts.md has.
    let alerts = std::fs::read_to_string(common::repo_path("docs/alerts.md")).unwrap();
    let mut links: Vec<&Value> = d["links"].as_array().unwrap().iter().collect();
    for panel in panels(&d) {
        links.extend(panel["links"].as_array().into_iter().flatten());
    }
    let mut anchors = 0;
    for link in links {
        let url = link["url"].as_str().unwrap_or("");
        if link["type"] == "dashboards" || url == "${runbook_url:raw}" {
            continue;
        }
        let anchor = url
            .strip_prefix("${runbook_url:raw}#")
            .unwrap_or_else(|| panic!("link {url} is not under ${{runbook_url:raw}}"));
        assert!(
            alerts.lines().any(|l| l
                .strip_prefix("## ")
                .is_some_and(|h| h.to_lowercase() == anchor)),
            "docs/alerts.md has no heading for #{anchor}"
        );
        anchors += 1;
    }
    assert!(anchors >= 4, "only {anchors} runbook links");
}

#[test]
fn every_prometheus_expression_of_the_fleet_dashboard_parses_in_promtool() {
    let promtool = common::tool::tool("promtool", "apt-get install -y prometheus");
    let exprs = prometheus_expressions(&fleet_dashboard());
    assert!(exprs.len() >= 7, "only {} expressions", exprs.len());
    let substituted: Vec<String> = exprs.iter().map(|(_, e, _)| substitute(e)).collect();
    let dir = std::env::temp_dir().join(format!("teewatch-fleet-dashboard-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rules = dir.join("fleet.rules.yml");
    std::fs::write(&rules, rules_file(&substituted)).unwrap();
    let broken = dir.join("broken.rules.yml");
    // The same first expression with one parenthesis dropped: the check must fail on it.
    let mut cut = substituted[0].clone();
    cut.pop();
    std::fs::write(&broken, rules_file(&[cut])).unwrap();
    let (ok, said) = promtool_check_rules(&promtool, &rules);
    let (control_ok, control_said) = promtool_check_rules(&promtool, &broken);
    std::fs::remove_dir_all(&dir).unwrap();
    let listing: String = exprs
        .iter()
        .zip(&substituted)
        .map(|((place, _, _), s)| format!("{place}: {s}\n"))
        .collect();
    assert!(ok, "promtool rejected an expression:\n{said}\n{listing}");
    assert!(
        said.contains(&format!("SUCCESS: {} rules found", substituted.len())),
        "{said}"
    );
    assert!(
        !control_ok,
        "promtool accepted a broken expression: {control_said}"
    );
}

#[test]
fn the_prometheus_panels_read_every_fleet_metric_with_the_labels_it_carries() {
    let mut used = BTreeSet::new();
    let mut problems = Vec::new();
    for (place, expr, legend) in prometheus_expressions(&fleet_dashboard()) {
        let r = refs(&substitute(&expr));
        let mut known: BTreeSet<&str> = TARGET_LABELS.into_iter().collect();
        for metric in &r.metrics {
            match FLEET_METRICS.iter().find(|(m, _)| m == metric) {
                Some((_, labels)) => known.extend(labels.iter()),
                None => problems.push(format!("{place}: {metric} is no fleet metric")),
            }
            used.insert(metric.clone());
        }
        for (metric, label) in &r.selector_labels {
            let ok = match metric {
                Some(m) => {
                    FLEET_METRICS
                        .iter()
                        .find(|(name, _)| name == m)
                        .is_some_and(|(_, l)| l.contains(&label.as_str()))
                        || TARGET_LABELS.contains(&label.as_str())
                }
                None => known.contains(label.as_str()),
            };
            if !ok {
                problems.push(format!("{place}: {metric:?} has no label {label}"));
            }
        }
        for label in r.grouping_labels.iter().chain(&legend) {
            if !known.contains(label.as_str()) {
                problems.push(format!(
                    "{place}: label {label} is on none of {:?}",
                    r.metrics
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    for (metric, _) in FLEET_METRICS {
        assert!(
            used.contains(metric),
            "the fleet dashboard does not show {metric}"
        );
    }
}

/// What is wrong with how a query reads the store's times: every `$__` macro applied to a
/// column must treat it as nanoseconds (the `…Nano…` filters, a group over the column divided
/// into seconds), since a seconds or timestamp macro on a nanosecond column matches nothing or
/// fails; and the query must keep to the selected targets.
fn time_problems(sql: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for (at, _) in sql.match_indices("$__") {
        let call = &sql[at..];
        let call = &call[..call.find(')').map_or(call.len(), |e| e + 1)];
        let ok = call.starts_with("$__unixEpochNanoFilter(")
            || ((call.starts_with("$__unixEpochGroupAlias(")
                || call.starts_with("$__unixEpochGroup("))
                && call.contains(" / 1000000000,"))
            || call.starts_with("$__interval");
        if !ok {
            problems.push(format!("{call} does not read nanoseconds"));
        }
    }
    if !sql.contains("IN (${target:sqlstring})") && !sql.starts_with("SELECT name FROM targets") {
        problems.push("no `IN (${target:sqlstring})`: the target variable is ignored".into());
    }
    problems
}

#[test]
fn every_sql_query_expands_and_reads_nanoseconds_through_the_nano_macros() {
    let d = fleet_dashboard();
    let queries = sql_queries(&d);
    assert!(queries.len() >= 8, "only {} SQL queries", queries.len());
    let ctx = Context {
        from_ns: 1_765_000_000 * 1_000_000_000,
        to_ns: 1_765_086_400 * 1_000_000_000,
        interval: "10m",
        variables: &[("target", &["model-a", "model-b"])],
    };
    for q in &queries {
        assert_eq!(time_problems(&q.sql), Vec::<String>::new(), "{}", q.place);
        let sql = expand(&q.sql, &ctx).unwrap_or_else(|e| panic!("{}: {e}", q.place));
        assert!(!sql.contains('$'), "{}: {sql}", q.place);
        if q.format == "time_series" {
            // Grafana's SQL time series: a `time` column and the series name in `metric`.
            assert!(
                sql.contains(" AS \"time\"") && sql.contains(" AS metric"),
                "{}",
                q.place
            );
            assert!(
                sql.contains("ORDER BY 1"),
                "{}: rows sorted by time",
                q.place
            );
        } else {
            assert_eq!(q.format, "table", "{}", q.place);
        }
    }
    // One change each, and the check says what is wrong.
    let q = &queries[0].sql;
    let seconds = q.replace("$__unixEpochNanoFilter(", "$__unixEpochFilter(");
    assert_eq!(
        time_problems(&seconds),
        ["$__unixEpochFilter(c.started_at) does not read nanoseconds"]
    );
    let grouped = q.replace(" / 1000000000, '1h')", ", '1h')");
    assert_eq!(
        time_problems(&grouped),
        ["$__unixEpochGroupAlias(c.started_at, '1h') does not read nanoseconds"]
    );
    let everything = q.replace("IN (${target:sqlstring})", "IS NOT NULL");
    assert_eq!(
        time_problems(&everything),
        ["no `IN (${target:sqlstring})`: the target variable is ignored"]
    );
}

#[test]
fn fleet_panels_showing_a_state_map_it_to_its_name_and_colour() {
    let d = fleet_dashboard();
    let mut state_panels = 0;
    for panel in panels(&d) {
        let exprs: Vec<&str> = panel["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["expr"].as_str())
            .collect();
        if exprs.iter().any(|e| e.contains("teewatch_vantage_state")) {
            state_panels += 1;
            assert!(has_state_mapping(panel), "{}", panel["title"]);
        }
        // A SQL table's `state` column holds the names: each gets its colour.
        let sql_state = panel["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["rawSql"].as_str())
            .any(|s| s.contains(".state,") && panel["type"] == "table");
        if sql_state {
            state_panels += 1;
            let overrides = panel["fieldConfig"]["overrides"].as_array().unwrap();
            let state = overrides
                .iter()
                .find(|o| o["matcher"]["options"] == "state")
                .unwrap_or_else(|| panic!("{}: no override of state", panel["title"]));
            let options = &state["properties"][0]["value"][0]["options"];
            for (name, color) in [("pass", "green"), ("unknown", "yellow"), ("fail", "red")] {
                assert_eq!(options[name]["color"], color, "{}: {name}", panel["title"]);
            }
        }
    }
    assert!(state_panels >= 3, "only {state_panels} state panels");
}

#[test]
fn docs_describe_every_fleet_panel_and_variable() {
    let d = fleet_dashboard();
    let doc = std::fs::read_to_string(common::repo_path("docs/dashboard.md")).unwrap();
    let at = doc
        .find("\n## The fleet dashboard\n")
        .expect("docs/dashboard.md has a section `## The fleet dashboard`");
    let section = &doc[at + 1..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |e| e + 3)];
    for panel in panels(&d) {
        let title = panel["title"].as_str().unwrap();
        let mention = if is_row(panel) {
            format!("### {title}")
        } else {
            format!("**{title}**")
        };
        assert!(
            section.contains(&mention),
            "the fleet section lacks {mention}"
        );
    }
    for var in d["templating"]["list"].as_array().unwrap() {
        let name = format!("`${}`", var["name"].as_str().unwrap());
        assert!(section.contains(&name), "the fleet section lacks {name}");
    }
}
