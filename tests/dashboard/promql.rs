//! The dashboard's PromQL as the tests read it: every expression with where it is, Grafana's
//! variables replaced by what they expand to, a small scanner for the metrics and labels an
//! expression names, a scrape read as families and label names, and promtool's rule check.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

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

pub const AGGREGATIONS: [&str; 14] = [
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
pub const GROUPING: [&str; 6] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
pub const KEYWORDS: [&str; 10] = [
    "and", "or", "unless", "bool", "offset", "atan2", "inf", "nan", "start", "end",
];

pub fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

pub fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// A small PromQL scanner: enough to tell metric names from functions, keywords, label names,
/// strings, numbers and durations. promtool has already checked the syntax.
pub fn refs(expr: &str) -> Refs {
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
