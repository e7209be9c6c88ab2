//! The dashboard's "why, one click away" parts: every link goes to the status page (its root, or
//! the row of one target by an anchor the page really renders) or to a heading `docs/alerts.md`
//! really has, both under one dashboard variable each; the table of failing and unknown checks
//! joins each check with the time its target entered its state (promtool evaluates its queries
//! on known series); the alert list shows every teewatch alert; "failing since" is shown.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::promql::{refs, substitute};
use super::{dashboard, panels, variable};
use crate::common;
use crate::common::daemon_run::{manual_schedule, start_daemon};
use crate::common::sim_run::start;
use teewatch_sim::faults::Fault;
use teewatch_sim::server::{SimOptions, model_name};

/// How a link names the status page and the runbook: the variables, never encoded (Grafana
/// percent-encodes a data link's variables unless told `:raw`, which would break `https://`).
const STATUS_BASE: &str = "${teewatch_url:raw}";
const RUNBOOK_BASE: &str = "${runbook_url:raw}";

/// The rows' anchor prefix (`src/daemon/status_page_text.rs`).
const ANCHOR_PREFIX: &str = "/#target-";

const WHY_TABLE: &str = "Failing and unknown checks";
const ALERT_LIST: &str = "Firing alerts";

/// One link of the dashboard: where it is, and the field an override gives it to.
#[derive(Debug)]
struct Link<'a> {
    place: String,
    url: String,
    /// The panel it belongs to (`None` for the dashboard's own links).
    panel: Option<&'a Value>,
    /// `Some(name)` for a link an override gives to the field named `name`.
    field: Option<String>,
}

/// Every link: the dashboard's, each panel's, and the data links of each panel's fields.
fn links(d: &Value) -> Vec<Link<'_>> {
    let mut found = Vec::new();
    let urls = |list: &Value| -> Vec<String> {
        list.as_array()
            .into_iter()
            .flatten()
            .map(|l| l["url"].as_str().expect("a link without url").to_string())
            .collect()
    };
    for url in urls(&d["links"]) {
        found.push(Link {
            place: "dashboard links".into(),
            url,
            panel: None,
            field: None,
        });
    }
    for panel in panels(d) {
        let title = panel["title"].as_str().unwrap_or("");
        for url in urls(&panel["links"]) {
            found.push(Link {
                place: format!("panel {title:?} links"),
                url,
                panel: Some(panel),
                field: None,
            });
        }
        for url in urls(&panel["fieldConfig"]["defaults"]["links"]) {
            found.push(Link {
                place: format!("panel {title:?} data links"),
                url,
                panel: Some(panel),
                field: None,
            });
        }
        for o in panel["fieldConfig"]["overrides"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let by_name = o["matcher"]["id"] == "byName";
            let field = o["matcher"]["options"].as_str().filter(|_| by_name);
            for property in o["properties"].as_array().into_iter().flatten() {
                if property["id"] == "links" {
                    for url in urls(&property["value"]) {
                        found.push(Link {
                            place: format!("panel {title:?} field {field:?}"),
                            url,
                            panel: Some(panel),
                            field: field.map(str::to_string),
                        });
                    }
                }
            }
        }
    }
    found
}

/// The anchors GitHub and most Markdown renderers give the headings of a Markdown file:
/// lower case, spaces to `-`, other punctuation dropped. Fenced code is skipped.
fn heading_anchors(markdown: &str) -> BTreeSet<String> {
    let mut anchors = BTreeSet::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        let Some(text) = line.strip_prefix('#') else {
            continue;
        };
        if fenced {
            continue;
        }
        let text = text.trim_start_matches('#').trim();
        let anchor: String = text
            .to_lowercase()
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                _ => None,
            })
            .collect();
        anchors.insert(anchor);
    }
    anchors
}

/// The placeholder after `/#target-` in a status page link, if it names the target of what
/// was clicked there: the clicked cell of the `target` column, the `target` label of the
/// clicked series (every query of the panel keeps it), or the target of a panel repeated per
/// target.
fn names_the_target(link: &Link<'_>, placeholder: &str) -> Result<(), String> {
    let panel = link.panel.ok_or("a dashboard link has no target")?;
    match placeholder {
        "${__value.raw}" if link.field.as_deref() == Some("target") => Ok(()),
        "${__value.raw}" => Err(format!(
            "${{__value.raw}} is the target only on the field target, found it on {:?}",
            link.field
        )),
        "${__field.labels.target}" => {
            for t in panel["targets"].as_array().into_iter().flatten() {
                let expr = substitute(t["expr"].as_str().unwrap_or(""));
                let grouped = refs(&expr).grouping_labels;
                if !grouped.iter().any(|l| l == "target") {
                    return Err(format!("query {expr} does not keep the label target"));
                }
            }
            Ok(())
        }
        "${target}" if panel["repeat"] == "target" => Ok(()),
        other => Err(format!(
            "expected ${{__value.raw}} on the target field, ${{__field.labels.target}} or \
             ${{target}} in a panel repeated per target, found {other}"
        )),
    }
}

#[test]
fn every_link_goes_to_the_status_page_or_a_runbook_heading_that_exists() {
    let d = dashboard();
    let runbook = std::fs::read_to_string(common::repo_path("docs/alerts.md")).unwrap();
    let headings = heading_anchors(&runbook);
    assert!(
        headings.contains("teewatchdown") && headings.contains("teewatchattestationfailing"),
        "{headings:?}"
    );
    let all = links(&d);
    let mut problems = Vec::new();
    let (mut to_rows, mut to_runbooks) = (0, BTreeSet::new());
    for link in &all {
        let url = link.url.as_str();
        if let Some(rest) = url.strip_prefix(STATUS_BASE) {
            if rest == "/" {
                continue;
            }
            match rest.strip_prefix(ANCHOR_PREFIX) {
                Some(placeholder) => match names_the_target(link, placeholder) {
                    Ok(()) => to_rows += 1,
                    Err(e) => problems.push(format!("{}: {url}: {e}", link.place)),
                },
                None => problems.push(format!(
                    "{}: expected {STATUS_BASE}/ or {STATUS_BASE}{ANCHOR_PREFIX}<target>, \
                     found {url}",
                    link.place
                )),
            }
        } else if let Some(rest) = url.strip_prefix(RUNBOOK_BASE) {
            match rest.strip_prefix('#') {
                None if rest.is_empty() => {}
                Some(anchor) if headings.contains(anchor) => {
                    to_runbooks.insert(anchor.to_string());
                }
                _ => problems.push(format!(
                    "{}: {url}: expected #<a heading of docs/alerts.md>, found {rest:?}",
                    link.place
                )),
            }
        } else {
            problems.push(format!(
                "{}: expected a url under {STATUS_BASE} or {RUNBOOK_BASE}, found {url}",
                link.place
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(to_rows >= 4, "only {to_rows} links open a target's row");
    assert!(
        to_runbooks.len() >= 6,
        "only {} runbooks are linked: {to_runbooks:?}",
        to_runbooks.len()
    );
    // The dashboard itself links both, and the panels that answer "why" link where it is.
    let dashboard_links: Vec<&str> = all
        .iter()
        .filter(|l| l.panel.is_none())
        .map(|l| l.url.as_str())
        .collect();
    let expected = [format!("{STATUS_BASE}/"), RUNBOOK_BASE.to_string()];
    assert_eq!(
        dashboard_links,
        expected.iter().map(String::as_str).collect::<Vec<_>>()
    );
    for (panel, link) in [
        (
            WHY_TABLE,
            format!("{STATUS_BASE}{ANCHOR_PREFIX}${{__value.raw}}"),
        ),
        (
            WHY_TABLE,
            format!("{RUNBOOK_BASE}#teewatchattestationfailing"),
        ),
        (
            "State per target",
            format!("{STATUS_BASE}{ANCHOR_PREFIX}${{__field.labels.target}}"),
        ),
        (
            "Schedule and freshness",
            format!("{STATUS_BASE}{ANCHOR_PREFIX}${{__value.raw}}"),
        ),
        ("Daemon up", format!("{RUNBOOK_BASE}#teewatchdown")),
    ] {
        assert!(
            all.iter()
                .any(|l| l.place.contains(&format!("{panel:?}")) && l.url == link),
            "panel {panel:?} has no link {link}"
        );
    }
}

#[test]
fn the_link_bases_are_variables_with_the_rules_runbook_base_as_default() {
    let d = dashboard();
    let default = |name: &str| {
        let var = variable(&d, name);
        assert_eq!(var["type"], "textbox", "{var}");
        let query = var["query"]
            .as_str()
            .expect("a textbox default")
            .to_string();
        assert_eq!(var["current"]["value"], query, "{var}");
        assert!(
            query.starts_with("https://") && !query.ends_with('/'),
            "{name}: expected an https:// url without a trailing slash, found {query}"
        );
        query
    };
    default("teewatch_url");
    let runbook = default("runbook_url");
    // The alert rules' runbook_url annotations start with the same base, so the dashboard and
    // the notifications open the same page.
    let rules =
        std::fs::read_to_string(common::repo_path("dashboards/prometheus/alerts.yml")).unwrap();
    let annotations: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("runbook_url:"))
        .map(|v| v.trim().trim_matches('"'))
        .collect();
    assert!(!annotations.is_empty(), "no runbook_url in alerts.yml");
    for url in annotations {
        assert!(
            url.starts_with(&format!("{runbook}#")),
            "alerts.yml runbook_url {url}: expected the dashboard's base {runbook}#…"
        );
    }
}

/// Grafana's percent-encoding of a data link's variable (JavaScript's `encodeURIComponent`).
fn uri_encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What a browser looks for when it follows a fragment: the fragment percent-decoded.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let hex = text
            .get(i + 1..i + 3)
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

/// The page's `id="…"` values, unescaped as a browser reads them.
fn ids(page: &str) -> BTreeSet<String> {
    page.split(" id=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(|id| {
            id.replace("&quot;", "\"")
                .replace("&#39;", "'")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&amp;", "&")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_link_opens_a_row_the_status_page_renders() {
    let options = SimOptions {
        models: 2,
        ..SimOptions::default()
    };
    let run = start("dashboard-links", options).await;
    let config = run.dir.join("sim.toml");
    manual_schedule(&config);
    // One target name with characters a URL has to encode: a space, a slash, a quote.
    let (plain, odd_model) = (model_name(0), model_name(1));
    let odd = format!("eu west/{odd_model} \"b\"");
    let text = std::fs::read_to_string(&config).unwrap();
    let renamed = text.replacen(
        &format!("name = \"{odd_model}\""),
        &format!("name = {}", toml_string(&odd)),
        1,
    );
    assert_ne!(renamed, text, "no target named {odd_model} in {text}");
    std::fs::write(&config, renamed).unwrap();
    let daemon = start_daemon(&config, &run.dir).await;
    run.sim
        .state
        .set_fault(Some(&odd_model), Fault::BadQuoteSignature, true)
        .unwrap();
    assert!(daemon.check_now(&plain).await);
    assert!(daemon.check_now(&odd).await);
    let base = format!("http://{}", daemon.addr());
    let page = reqwest::get(format!("{base}/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    daemon.shutdown(Duration::from_secs(5)).await;
    let ids = ids(&page);

    let d = dashboard();
    let row_links: Vec<String> = links(&d)
        .into_iter()
        .filter_map(|l| l.url.strip_prefix(STATUS_BASE).map(str::to_string))
        .filter(|rest| rest.starts_with(ANCHOR_PREFIX))
        .collect();
    assert!(!row_links.is_empty());
    for target in [&plain, &odd] {
        for rest in &row_links {
            // Grafana fills in the target's name percent-encoded; the browser decodes it.
            let placeholder = rest.strip_prefix(ANCHOR_PREFIX).unwrap();
            let url = format!("{base}{rest}").replace(placeholder, &uri_encode(target));
            let fragment = url.split_once('#').unwrap().1;
            let wanted = percent_decode(fragment);
            assert!(
                ids.contains(&wanted),
                "{url}: the status page has no id {wanted:?}; its ids: {ids:?}"
            );
        }
    }
    // The control: a name the configuration does not have has no row.
    assert!(!ids.contains("target-no such target"));
}

/// A TOML basic string.
fn toml_string(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

fn panel<'a>(d: &'a Value, title: &str) -> &'a Value {
    panels(d)
        .into_iter()
        .find(|p| p["title"] == title)
        .unwrap_or_else(|| panic!("no panel {title:?}"))
}

/// The unit an override gives the field `name`.
fn field_unit<'a>(panel: &'a Value, name: &str) -> Option<&'a str> {
    panel["fieldConfig"]["overrides"]
        .as_array()?
        .iter()
        .filter(|o| o["matcher"]["options"] == name)
        .flat_map(|o| o["properties"].as_array().into_iter().flatten())
        .find(|p| p["id"] == "unit")
        .and_then(|p| p["value"].as_str())
}

/// The query of `panel` whose value the `organize` transformation renames to `column`.
fn column_query(panel: &Value, column: &str) -> String {
    let renames = panel["transformations"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["id"] == "organize")
        .map(|t| &t["options"]["renameByName"])
        .expect("an organize transformation");
    let (value, _) = renames
        .as_object()
        .unwrap()
        .iter()
        .find(|(_, to)| *to == column)
        .unwrap_or_else(|| panic!("no column {column:?} in {renames}"));
    let ref_id = value.strip_prefix("Value #").unwrap();
    let target = panel["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["refId"] == ref_id)
        .unwrap();
    assert_eq!(target["format"], "table", "{target}");
    assert_eq!(target["instant"], true, "{target}");
    target["expr"].as_str().unwrap().to_string()
}

#[test]
fn failing_since_is_shown_in_the_why_table_and_the_schedule_table() {
    let d = dashboard();
    let why = panel(&d, WHY_TABLE);
    assert_eq!(why["type"], "table");
    assert!(
        why["transformations"][0]["id"] == "merge",
        "the columns are joined by merge: {}",
        why["transformations"]
    );
    for column in ["Failing since", "Unknown since"] {
        assert_eq!(field_unit(why, column), Some("dateTimeFromNow"), "{column}");
        assert!(
            column_query(why, column).contains("teewatch_target_state_since_timestamp_seconds")
        );
    }
    let schedule = panel(&d, "Schedule and freshness");
    assert_eq!(field_unit(schedule, "State since"), Some("dateTimeFromNow"));
    assert!(
        column_query(schedule, "State since")
            .contains("teewatch_target_state_since_timestamp_seconds")
    );
}

/// A promtool unit test of the why table's queries on two targets: `model-a` failing since
/// 1,000 s with one failing and one passing check, `model-b` unknown since 2,000 s with one
/// unknown check. `expected_a_since` is the failing row's
/// expected "failing since" in milliseconds.
fn why_table_test(state: &str, failing: &str, unknown: &str, expected_a_since: u64) -> String {
    let series = |name: &str, labels: &str, value: u32| {
        format!(
            "      - series: '{name}{{job=\"teewatch\",instance=\"h:9477\",{labels}}}'\n        \
             values: '{value}x5'\n"
        )
    };
    let mut input = String::new();
    for (target, check, code) in [
        ("model-a", "tdx_quote_signature", 2),
        ("model-a", "gpu_nonce", 0),
        ("model-b", "nras_token", 1),
    ] {
        input.push_str(&series(
            "teewatch_check_state",
            &format!("target=\"{target}\",check=\"{check}\""),
            code,
        ));
    }
    for (target, code, since) in [("model-a", 2, 1000), ("model-b", 1, 2000)] {
        let labels = format!("target=\"{target}\"");
        input.push_str(&series("teewatch_target_state", &labels, code));
        input.push_str(&series(
            "teewatch_target_state_since_timestamp_seconds",
            &labels,
            since,
        ));
    }
    let case = |expr: &str, samples: &[(&str, &str, u64)]| {
        let mut text = format!(
            "      - expr: {}\n        eval_time: 1m\n        exp_samples:\n",
            serde_json::to_string(&substitute(expr)).unwrap()
        );
        for (target, check, value) in samples {
            text.push_str(&format!(
                "          - labels: '{{check=\"{check}\", target=\"{target}\"}}'\n            \
                 value: {value}\n"
            ));
        }
        text
    };
    let mut tests = String::new();
    tests.push_str(&case(
        state,
        &[
            ("model-a", "tdx_quote_signature", 2),
            ("model-b", "nras_token", 1),
        ],
    ));
    tests.push_str(&case(
        failing,
        &[("model-a", "tdx_quote_signature", expected_a_since)],
    ));
    tests.push_str(&case(unknown, &[("model-b", "nras_token", 2_000_000)]));
    format!(
        "rule_files: []\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n\
         {input}    promql_expr_test:\n{tests}"
    )
}

fn promtool_test(promtool: &Path, dir: &Path, name: &str, text: &str) -> (bool, String) {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    let out = std::process::Command::new(promtool)
        .args(["test", "rules"])
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("cannot run promtool: {e}"));
    let mut said = String::from_utf8_lossy(&out.stdout).into_owned();
    said.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), said)
}

#[test]
fn the_why_table_lists_each_non_passing_check_with_its_targets_since() {
    let promtool = common::tool::tool("promtool", "apt-get install -y prometheus");
    let d = dashboard();
    let why = panel(&d, WHY_TABLE);
    let state = column_query(why, "State");
    let failing = column_query(why, "Failing since");
    let unknown = column_query(why, "Unknown since");
    for expr in [&state, &failing, &unknown] {
        // merge joins rows on equal labels: every query yields exactly (target, check).
        assert!(
            expr.starts_with("max by (target, check) (teewatch_check_state{")
                || expr.starts_with("(max by (target, check) (teewatch_check_state{"),
            "{expr}"
        );
    }
    let dir = std::env::temp_dir().join(format!("teewatch-why-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = why_table_test(&state, &failing, &unknown, 1_000_000);
    let (ok, said) = promtool_test(&promtool, &dir, "why.yml", &good);
    // The control: the same test expecting model-b's time for model-a's row must fail.
    let wrong = why_table_test(&state, &failing, &unknown, 2_000_000);
    let (control_ok, control_said) = promtool_test(&promtool, &dir, "why-wrong.yml", &wrong);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(ok, "promtool test rules failed:\n{said}\n{good}");
    assert!(said.contains("SUCCESS"), "{said}");
    assert!(!control_ok, "a wrong failing-since passed:\n{control_said}");
    let control_lower = control_said.to_lowercase();
    assert!(
        control_lower.contains("exp: {check=\"tdx_quote_signature\", target=\"model-a\"} 2e+06")
            && control_lower
                .contains("got: {check=\"tdx_quote_signature\", target=\"model-a\"} 1e+06"),
        "{control_said}"
    );
}

#[test]
fn the_alert_list_shows_every_teewatch_alert_firing_or_pending() {
    let d = dashboard();
    let list = panel(&d, ALERT_LIST);
    assert_eq!(list["type"], "alertlist");
    let options = &list["options"];
    assert_eq!(options["viewMode"], "list");
    assert_eq!(
        options["dashboardAlerts"], false,
        "the rules are Prometheus'"
    );
    for state in ["firing", "pending"] {
        assert_eq!(options["stateFilter"][state], true, "{state}");
    }
    assert_eq!(options["stateFilter"]["normal"], false);
    assert_eq!(
        options["alertInstanceLabelFilter"].as_str().unwrap_or(""),
        "",
        "a label filter would hide alerts without that label"
    );
    // Grafana keeps the rules whose name contains alertName, ignoring case.
    let name = options["alertName"].as_str().unwrap().to_lowercase();
    let rules =
        std::fs::read_to_string(common::repo_path("dashboards/prometheus/alerts.yml")).unwrap();
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert:"))
        .map(str::trim)
        .collect();
    assert!(alerts.len() >= 10, "{alerts:?}");
    for alert in alerts {
        assert!(
            alert.to_lowercase().contains(&name),
            "the alert list (name filter {name:?}) hides {alert}"
        );
    }
    let requires = d["__requires"].as_array().unwrap();
    assert!(requires.iter().any(|r| r["id"] == "alertlist"));
}
