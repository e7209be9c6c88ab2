//! The status page at `/`: one table, one row per target, readable at a glance. No scripts and
//! no external assets (it must render on an air-gapped host); it refreshes itself every 15 s.

use std::collections::BTreeMap;
use std::fmt::Write;

use chrono::{DateTime, SecondsFormat, Utc};

use super::runner::{Generation, TargetStatus};
use crate::verify::State;

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

fn time(at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    match at {
        None => "never".to_string(),
        Some(at) => {
            let age = now.signed_duration_since(at).num_seconds();
            let ago = if age >= 0 {
                format!("{} ago", human_seconds(age))
            } else {
                format!("in {}", human_seconds(-age))
            };
            format!(
                "<time datetime=\"{0}\" title=\"{0}\">{ago}</time>",
                at.to_rfc3339_opts(SecondsFormat::Secs, true)
            )
        }
    }
}

fn human_seconds(s: i64) -> String {
    match s {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} d", s / 86_400),
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}\
table{border-collapse:collapse;width:100%}th,td{border:1px solid #ccc;padding:.35em .5em;\
text-align:left;vertical-align:top}th{background:#f3f3f3}.pass{background:#d9f2d9}\
.unknown{background:#fff2cc}.fail{background:#f8d0d0}.none{background:#eee}\
ul{margin:0;padding-left:1.1em}code{font-size:.9em;word-break:break-all}\
.trust{padding:.5em;border:1px solid #e0a800;background:#fff8e1}";

/// The whole page.
pub fn render(
    generation: &Generation,
    statuses: &BTreeMap<String, TargetStatus>,
    next_due: impl Fn(&str) -> Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> String {
    let config = &generation.config;
    let mut page = String::new();
    let _ = write!(
        page,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"15\"><title>teewatch</title>\
         <style>{STYLE}</style></head><body><h1>teewatch</h1>\
         <p>Version {} · <a href=\"/metrics\">/metrics</a> · <a href=\"/healthz\">/healthz</a> · \
         <a href=\"/readyz\">/readyz</a> · page generated {}</p>",
        env!("CARGO_PKG_VERSION"),
        now.to_rfc3339_opts(SecondsFormat::Secs, true)
    );
    let dangerous = &generation.anchors.dangerous;
    if dangerous.is_empty() {
        page.push_str(
            "<p id=\"trust\">Trust roots in force: the Intel SGX root CA, NVIDIA's device \
             identity CA and NRAS intermediates compiled into teewatch.</p>",
        );
    } else {
        let _ = write!(
            page,
            "<p id=\"trust\" class=\"trust\"><strong>Test trust roots in force</strong> \
             (<code>{}</code>): verdicts prove nothing about real hardware.</p>",
            escape(&dangerous.join(", "))
        );
    }
    page.push_str(
        "<table id=\"targets\"><thead><tr><th>target</th><th>state</th><th>last check</th>\
         <th>last success</th><th>next check</th><th>failing checks</th><th>TCB status</th>\
         <th>last drift</th></tr></thead><tbody>",
    );
    for (target, monitor) in config.monitored() {
        let name = &target.name;
        let status = statuses.get(name);
        let (class, state) = match status.map(|s| s.state) {
            Some(State::Pass) => ("pass", "pass"),
            Some(State::Unknown) => ("unknown", "unknown"),
            Some(State::Fail) => ("fail", "fail"),
            None => ("none", "not checked yet"),
        };
        let failing = match status {
            Some(s) if !s.failing.is_empty() => {
                let mut list = String::from("<ul>");
                for c in &s.failing {
                    let scope = if c.scope.is_empty() {
                        String::new()
                    } else {
                        format!(" [{}]", escape(&c.scope))
                    };
                    let _ = write!(
                        list,
                        "<li><strong>{}</strong>{scope} {}: {}</li>",
                        escape(&c.name),
                        c.state.as_str(),
                        escape(&c.reason)
                    );
                }
                list.push_str("</ul>");
                list
            }
            Some(_) => "none".to_string(),
            None => String::new(),
        };
        let drift = status
            .and_then(|s| s.last_drift.as_ref())
            .map(|d| {
                format!(
                    "<code>{}</code> → <code>{}</code> {}",
                    escape(&d.field),
                    escape(&d.new_value),
                    time(Some(d.at), now)
                )
            })
            .unwrap_or_else(|| "none".to_string());
        let _ = write!(
            page,
            "<tr class=\"{class}\" data-target=\"{0}\"><td><strong>{0}</strong><br><small>{1} · \
             <code>{2}</code></small></td><td class=\"state\">{state}</td><td>{3}</td><td>{4}</td>\
             <td>{5}</td><td>{failing}</td><td>{6}</td><td>{drift}</td></tr>",
            escape(name),
            escape(&monitor.model),
            escape(&monitor.base_url),
            time(status.map(|s| s.last_check), now),
            time(status.and_then(|s| s.last_success), now),
            time(next_due(name), now),
            escape(status.and_then(|s| s.tcb_status.as_deref()).unwrap_or("—")),
        );
    }
    page.push_str("</tbody></table></body></html>\n");
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
