//! The Grafana dashboard (`dashboards/grafana/teewatch.json`, `docs/dashboard.md`): its shape
//! (datasource and target variables, panel ids, layout, state mappings), every PromQL expression
//! parsed by promtool, and every metric and label it uses checked against a populated scrape of
//! the daemon running against the simulator.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use common::daemon_run::{manual_schedule, scrape, start_daemon};
use common::sim_run::start;
use teewatch_sim::faults::Fault;
use teewatch_sim::server::{SimOptions, model_name};

const DASHBOARD: &str = "dashboards/grafana/teewatch.json";

/// Labels Prometheus attaches to every scraped series itself.
const TARGET_LABELS: [&str; 2] = ["job", "instance"];

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

/// One PromQL expression of the dashboard, where it is, and the label names its display uses
/// (`{{label}}` in a legend or an annotation's text, an annotation's tag keys).
#[derive(Debug)]
struct Expr {
    place: String,
    expr: String,
    display_labels: Vec<String>,
}

/// The `{{label}}` names of a legend or annotation format.
fn template_labels(format: &str) -> Vec<String> {
    let mut labels = Vec::new();
    let mut rest = format;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let end = after.find("}}").expect("unclosed {{ in a format");
        labels.push(after[..end].trim().to_string());
        rest = &after[end + 2..];
    }
    labels
}

/// The PromQL inside a query variable's query: the selector of `label_values(selector, label)`,
/// the expression of `query_result(expr)`; `None` for queries without one (`label_values(label)`,
/// `label_names()`, `metrics(regex)`).
fn variable_expr(query: &str) -> Option<String> {
    let query = query.trim();
    let inner = |prefix: &str| {
        query
            .strip_prefix(prefix)
            .and_then(|r| r.strip_suffix(')'))
            .map(str::trim)
    };
    if let Some(args) = inner("label_values(") {
        // The last comma outside braces and quotes separates the selector from the label.
        let (mut depth, mut quoted, mut split) = (0i32, false, None);
        for (i, c) in args.char_indices() {
            match c {
                '"' => quoted = !quoted,
                '{' | '(' if !quoted => depth += 1,
                '}' | ')' if !quoted => depth -= 1,
                ',' if !quoted && depth == 0 => split = Some(i),
                _ => {}
            }
        }
        return split.map(|i| args[..i].trim().to_string());
    }
    if let Some(expr) = inner("query_result(") {
        return Some(expr.to_string());
    }
    if query.starts_with("label_names(") || query.starts_with("metrics(") {
        return None;
    }
    panic!("unsupported variable query {query:?}: teach tests/dashboard.rs about it")
}

/// Every PromQL expression: panel targets, annotation queries and query variables.
fn expressions(dashboard: &Value) -> Vec<Expr> {
    let mut found = Vec::new();
    for panel in panels(dashboard) {
        let title = panel["title"].as_str().unwrap_or("");
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("panel {title:?}: a target without expr"));
            let legend = target["legendFormat"].as_str().unwrap_or("");
            found.push(Expr {
                place: format!("panel {title:?} target {}", target["refId"]),
                expr: expr.to_string(),
                display_labels: template_labels(legend),
            });
        }
    }
    for annotation in dashboard["annotations"]["list"]
        .as_array()
        .expect("annotations")
    {
        if annotation.get("builtIn").is_some_and(|b| b == 1) {
            continue;
        }
        let name = annotation["name"].as_str().unwrap_or("");
        let mut display_labels = Vec::new();
        for key in ["titleFormat", "textFormat"] {
            display_labels.extend(template_labels(annotation[key].as_str().unwrap_or("")));
        }
        display_labels.extend(
            annotation["tagKeys"]
                .as_str()
                .unwrap_or("")
                .split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(str::to_string),
        );
        let exprs = [&annotation["expr"], &annotation["target"]["expr"]];
        let exprs: Vec<&str> = exprs.iter().filter_map(|e| e.as_str()).collect();
        assert!(!exprs.is_empty(), "annotation {name:?} has no expr");
        for expr in exprs {
            found.push(Expr {
                place: format!("annotation {name:?}"),
                expr: expr.to_string(),
                display_labels: display_labels.clone(),
            });
        }
    }
    for var in dashboard["templating"]["list"]
        .as_array()
        .expect("templating")
    {
        if var["type"] != "query" {
            continue;
        }
        let name = var["name"].as_str().unwrap_or("");
        let query = variable_query(var);
        let mut queries = vec![query];
        queries.extend(var["definition"].as_str().filter(|d| *d != query));
        for query in queries {
            if let Some(expr) = variable_expr(query) {
                found.push(Expr {
                    place: format!("variable {name:?}"),
                    expr,
                    display_labels: Vec::new(),
                });
            }
        }
    }
    found
}

/// The expression with Grafana's variables replaced by what they expand to: multi-value
/// variables by a regex alternation, the interval variables by durations. An unknown variable
/// fails the test, so a new one has to be added here.
fn substitute(expr: &str) -> String {
    let value = |name: &str| -> &'static str {
        match name {
            "target" => "model-a|model-b",
            "job" => "teewatch|teewatch-staging",
            "__rate_interval" | "__interval" | "__range" => "1m",
            "__range_s" | "__interval_s" => "60",
            "__range_ms" | "__interval_ms" => "60000",
            other => panic!("unknown variable ${other} in {expr:?}: add it to substitute()"),
        }
    };
    let mut out = String::new();
    let mut rest = expr;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, consumed) = if let Some(braced) = after.strip_prefix('{') {
            let end = braced.find('}').expect("unclosed ${");
            let name = braced[..end].split(':').next().unwrap_or("");
            (name, end + 2)
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], end)
        };
        assert!(!name.is_empty(), "a bare $ in {expr:?}");
        out.push_str(value(name));
        rest = &after[consumed..];
    }
    out.push_str(rest);
    out
}

/// What an expression refers to: metric names, label names in selectors (with their metric)
/// and label names in grouping clauses (`by`, `without`, `on`, `ignoring`, `group_left/right`).
#[derive(Debug, Default)]
struct Refs {
    metrics: BTreeSet<String>,
    selector_labels: Vec<(Option<String>, String)>,
    grouping_labels: Vec<String>,
}

const AGGREGATIONS: [&str; 14] = [
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];
const GROUPING: [&str; 6] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
const KEYWORDS: [&str; 10] = [
    "and", "or", "unless", "bool", "offset", "atan2", "inf", "nan", "start", "end",
];

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// A small PromQL scanner: enough to tell metric names from functions, keywords, label names,
/// strings, numbers and durations. promtool has already checked the syntax.
fn refs(expr: &str) -> Refs {
    let chars: Vec<char> = expr.chars().collect();
    let mut refs = Refs::default();
    let mut i = 0;
    let mut last_metric: Option<String> = None;
    let skip_ws = |mut j: usize| {
        while j < chars.len() && chars[j].is_whitespace() {
            j += 1;
        }
        j
    };
    let read_ident = |j: usize| {
        let mut k = j;
        while k < chars.len() && is_ident(chars[k]) {
            k += 1;
        }
        (chars[j..k].iter().collect::<String>(), k)
    };
    let skip_string = |j: usize| {
        let quote = chars[j];
        let mut k = j + 1;
        while k < chars.len() && chars[k] != quote {
            if chars[k] == '\\' && quote != '`' {
                k += 1;
            }
            k += 1;
        }
        k + 1
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(i);
        } else if c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '[' {
            while i < chars.len() && chars[i] != ']' {
                i += 1;
            }
            i += 1;
        } else if c == '{' {
            // Label matchers: `name op "value"`, separated by commas.
            i += 1;
            loop {
                i = skip_ws(i);
                if i >= chars.len() || chars[i] == '}' {
                    i += 1;
                    break;
                }
                if chars[i] == '"' || chars[i] == '\'' || chars[i] == '`' {
                    i = skip_string(i);
                } else if is_ident_start(chars[i]) {
                    let (label, next) = read_ident(i);
                    refs.selector_labels.push((last_metric.clone(), label));
                    i = next;
                } else {
                    i += 1;
                }
            }
            last_metric = None;
        } else if c.is_ascii_digit() || c == '.' {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if is_ident_start(c) {
            let (word, next) = read_ident(i);
            i = next;
            let ahead = skip_ws(i);
            let paren = chars.get(ahead) == Some(&'(');
            if GROUPING.contains(&word.as_str()) {
                if paren {
                    let close = (ahead..chars.len())
                        .find(|&k| chars[k] == ')')
                        .expect("unclosed grouping");
                    let list: String = chars[ahead + 1..close].iter().collect();
                    refs.grouping_labels.extend(
                        list.split(',')
                            .map(str::trim)
                            .filter(|l| !l.is_empty())
                            .map(str::to_string),
                    );
                    i = close + 1;
                }
            } else if paren
                || AGGREGATIONS.contains(&word.as_str())
                || KEYWORDS.contains(&word.to_ascii_lowercase().as_str())
            {
                // A function call or an operator.
            } else {
                refs.metrics.insert(word.clone());
                last_metric = Some(word);
                continue;
            }
            last_metric = None;
        } else {
            if !c.is_whitespace() {
                last_metric = None;
            }
            i += 1;
        }
    }
    refs
}

/// A scrape read as families (name → type) and the label names of each series name.
struct Scrape {
    families: BTreeMap<String, String>,
    labels: BTreeMap<String, BTreeSet<String>>,
}

fn read_scrape(text: &str) -> Scrape {
    let mut families = BTreeMap::new();
    let mut labels: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let name = parts.next().expect("TYPE without a name").to_string();
            let kind = parts.next().expect("TYPE without a type").to_string();
            families.insert(name, kind);
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let end = line.find(['{', ' ']).unwrap_or(line.len());
        let name = line[..end].to_string();
        let entry = labels.entry(name).or_default();
        if let Some(label_text) = line[end..].strip_prefix('{') {
            // Label names are identifiers followed by `="`; values may hold anything, so walk
            // them as strings.
            let mut rest = label_text;
            while let Some(eq) = rest.find("=\"") {
                let label = rest[..eq].trim_start_matches([',', ' ']);
                entry.insert(label.to_string());
                let mut chars = rest[eq + 2..].char_indices();
                let mut close = None;
                while let Some((k, c)) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' => {
                            close = Some(eq + 2 + k);
                            break;
                        }
                        _ => {}
                    }
                }
                rest = &rest[close.expect("unclosed label value") + 1..];
            }
        }
    }
    Scrape { families, labels }
}

impl Scrape {
    /// Whether a series name a query uses exists: a family that is not a histogram or summary,
    /// or one of the series of such a family (`_bucket`, `_sum`, `_count`). A histogram's bare
    /// family name has no series.
    fn has_series(&self, name: &str) -> bool {
        if let Some(kind) = self.families.get(name) {
            return kind != "histogram" && kind != "summary";
        }
        ["_bucket", "_sum", "_count"].iter().any(|suffix| {
            name.strip_suffix(suffix)
                .and_then(|base| self.families.get(base))
                .is_some_and(|kind| {
                    kind == "histogram" || (kind == "summary" && *suffix != "_bucket")
                })
        })
    }

    fn labels_of(&self, name: &str) -> BTreeSet<String> {
        let mut labels: BTreeSet<String> = self.labels.get(name).cloned().unwrap_or_default();
        labels.extend(TARGET_LABELS.iter().map(|l| l.to_string()));
        labels
    }
}

// ------------------------------------------------------------------------------------------------
// promtool

/// Runs `promtool check rules` on a file: whether it succeeded and what it said.
fn promtool_check_rules(promtool: &Path, path: &Path) -> (bool, String) {
    let out = Command::new(promtool)
        .args(["check", "rules"])
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("cannot run promtool: {e}"));
    let mut said = String::from_utf8_lossy(&out.stdout).into_owned();
    said.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), said)
}

/// A rules file with one recording rule per expression (JSON strings are YAML strings).
fn rules_file(exprs: &[String]) -> String {
    let mut text = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (n, expr) in exprs.iter().enumerate() {
        text.push_str(&format!(
            "      - record: dashboard:expr_{}\n        expr: {}\n",
            n + 1,
            serde_json::to_string(expr).unwrap()
        ));
    }
    text
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
        if is_row(panel) {
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
    let d = dashboard();
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

#[test]
fn the_scanner_tells_metrics_from_functions_labels_and_keywords() {
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
