//! The dashboard's PromQL as the tests read it: every expression with where it is, Grafana's
//! variables replaced by what they expand to, the metrics and labels an expression names (read
//! from the syntax tree of the maintained `promql-parser` crate), a scrape read as families and
//! label names, and promtool's rule check.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use promql_parser::label::MatchOp;
use promql_parser::parser::{Expr as Ast, VectorSelector};
use serde_json::Value;

use super::{panels, variable_query};

/// Labels Prometheus attaches to every scraped series itself.
pub const TARGET_LABELS: [&str; 2] = ["job", "instance"];

/// One PromQL expression of the dashboard, where it is, and the label names its display uses
/// (`{{label}}` in a legend or an annotation's text, an annotation's tag keys).
#[derive(Debug)]
pub struct Expr {
    pub place: String,
    pub expr: String,
    pub display_labels: Vec<String>,
}

/// The `{{label}}` names of a legend or annotation format.
pub fn template_labels(format: &str) -> Vec<String> {
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
pub fn variable_expr(query: &str) -> Option<String> {
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
pub fn expressions(dashboard: &Value) -> Vec<Expr> {
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
pub fn substitute(expr: &str) -> String {
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
pub struct Refs {
    pub metrics: BTreeSet<String>,
    pub selector_labels: Vec<(Option<String>, String)>,
    pub grouping_labels: Vec<String>,
}

/// What `expr` refers to, read from the syntax tree the `promql-parser` crate builds (the
/// expression must parse; promtool checks the same expressions as well). Labels are listed in
/// the order they are written.
pub fn refs(expr: &str) -> Refs {
    let tree = promql_parser::parser::parse(expr)
        .unwrap_or_else(|e| panic!("{expr:?} is not PromQL: {e}"));
    let mut refs = Refs::default();
    collect(&tree, &mut refs);
    refs
}

fn collect(expr: &Ast, refs: &mut Refs) {
    match expr {
        Ast::Aggregate(aggregate) => {
            if let Some(modifier) = &aggregate.modifier {
                refs.grouping_labels
                    .extend(modifier.labels().labels.iter().cloned());
            }
            if let Some(param) = &aggregate.param {
                collect(param, refs);
            }
            collect(&aggregate.expr, refs);
        }
        Ast::Binary(binary) => {
            collect(&binary.lhs, refs);
            if let Some(modifier) = &binary.modifier {
                if let Some(matching) = &modifier.matching {
                    refs.grouping_labels
                        .extend(matching.labels().labels.iter().cloned());
                }
                if let Some(include) = modifier.card.labels() {
                    refs.grouping_labels.extend(include.labels.iter().cloned());
                }
            }
            collect(&binary.rhs, refs);
        }
        Ast::Unary(unary) => collect(&unary.expr, refs),
        Ast::Paren(paren) => collect(&paren.expr, refs),
        Ast::Subquery(subquery) => collect(&subquery.expr, refs),
        Ast::Call(call) => call.args.args.iter().for_each(|arg| collect(arg, refs)),
        Ast::VectorSelector(selector) => collect_selector(selector, refs),
        Ast::MatrixSelector(matrix) => collect_selector(&matrix.vs, refs),
        Ast::NumberLiteral(_) | Ast::StringLiteral(_) => {}
        Ast::Extension(_) => panic!("the parser made an extension node, which it never does"),
    }
}

/// A selector's metric (its name, or an exact `__name__` matcher) and the labels it matches on.
fn collect_selector(selector: &VectorSelector, refs: &mut Refs) {
    let matchers = selector
        .matchers
        .matchers
        .iter()
        .chain(selector.matchers.or_matchers.iter().flatten());
    let metric = selector.name.clone().or_else(|| {
        matchers
            .clone()
            .find(|m| m.name == "__name__" && m.op == MatchOp::Equal)
            .map(|m| m.value.clone())
    });
    if let Some(metric) = &metric {
        refs.metrics.insert(metric.clone());
    }
    for matcher in matchers.filter(|m| m.name != "__name__") {
        refs.selector_labels
            .push((metric.clone(), matcher.name.clone()));
    }
}

/// A scrape read as families (name → type) and the label names of each series name.
pub struct Scrape {
    pub families: BTreeMap<String, String>,
    labels: BTreeMap<String, BTreeSet<String>>,
}

pub fn read_scrape(text: &str) -> Scrape {
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
    pub fn has_series(&self, name: &str) -> bool {
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

    pub fn labels_of(&self, name: &str) -> BTreeSet<String> {
        let mut labels: BTreeSet<String> = self.labels.get(name).cloned().unwrap_or_default();
        labels.extend(TARGET_LABELS.iter().map(|l| l.to_string()));
        labels
    }
}

// ------------------------------------------------------------------------------------------------
// promtool

/// Runs `promtool check rules` on a file: whether it succeeded and what it said.
pub fn promtool_check_rules(promtool: &Path, path: &Path) -> (bool, String) {
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
pub fn rules_file(exprs: &[String]) -> String {
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
