//! The status page at `/`: a summary line, the trust roots in force and one table row per
//! target, readable at a glance. No scripts and no external assets (it must render on an
//! air-gapped host); it refreshes itself every [`REFRESH_SECONDS`].
//!
//! Targets that need attention come first (fail, then unknown, then pass, then not checked yet),
//! and a passing row carries only a few short cells, so the page stays light with thousands of
//! targets. Everything that comes from a provider or the configuration (reasons, model names,
//! URLs, measurement values) is HTML-escaped; long provider text is shortened. The hooks tests
//! rely on are documented in `docs/status_page.md`.

use std::collections::BTreeMap;
use std::fmt::Write;

use chrono::{DateTime, SecondsFormat, Utc};
use sha2::{Digest, Sha256};

#[path = "status_page_text.rs"]
mod text;
pub use text::{HEX_KEEP, LONG_HEX, anchor, escape, known_names, reason_html};
use text::{known_html, shorten, time};

use super::runner::{Generation, Notices, TargetStatus};
use crate::config::{MonitorConfig, TargetConfig};
use crate::verify::policy::{
    INTEL_SGX_ROOT_CA_DER, NRAS_INTERMEDIATE_004_PEM, NVIDIA_DEVICE_ROOT_PEM, pem_to_der,
};
use crate::verify::{Check, State, TrustAnchors};

/// How often the page reloads itself (`<meta http-equiv="refresh">`).
pub const REFRESH_SECONDS: u32 = 30;

/// Checks listed with their reasons per target; the rest are counted.
pub const MAX_LISTED_CHECKS: usize = 6;

/// Characters of a reason shown before it is cut with `…`.
pub const MAX_REASON_CHARS: usize = 300;

/// Characters of a drifted measurement value shown (the full value is in the `title`).
const MAX_VALUE_CHARS: usize = 16;

/// How late a next check may be before it is flagged as overdue.
const OVERDUE_AFTER_SECONDS: i64 = 60;

/// Where a target stands on the page, in display order: what needs attention first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Standing {
    Fail,
    Unknown,
    Pass,
    NotChecked,
}

impl Standing {
    pub fn of(status: Option<&TargetStatus>) -> Standing {
        match status.map(|s| s.state) {
            Some(State::Fail) => Standing::Fail,
            Some(State::Unknown) => Standing::Unknown,
            Some(State::Pass) => Standing::Pass,
            None => Standing::NotChecked,
        }
    }

    /// The `data-state` value and CSS class.
    pub fn as_str(self) -> &'static str {
        match self {
            Standing::Fail => "fail",
            Standing::Unknown => "unknown",
            Standing::Pass => "pass",
            Standing::NotChecked => "none",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Standing::Fail => "fail",
            Standing::Unknown => "unknown",
            Standing::Pass => "pass",
            Standing::NotChecked => "not checked yet",
        }
    }

    /// A symbol beside the colour, so the state does not rest on colour alone.
    fn symbol(self) -> &'static str {
        match self {
            Standing::Fail => "✖",
            Standing::Unknown => "?",
            Standing::Pass => "✔",
            Standing::NotChecked => "–",
        }
    }
}

/// One monitored target as the page shows it.
struct Row<'a> {
    target: &'a TargetConfig,
    monitor: &'a MonitorConfig,
    status: Option<&'a TargetStatus>,
    standing: Standing,
}

/// The monitored targets in display order: fail, unknown, pass, not checked; by name within each.
fn rows<'a>(
    generation: &'a Generation,
    statuses: &'a BTreeMap<String, TargetStatus>,
) -> Vec<Row<'a>> {
    let mut rows: Vec<Row<'a>> = generation
        .config
        .monitored()
        .map(|(target, monitor)| {
            let status = statuses.get(&target.name);
            Row {
                target,
                monitor,
                status,
                standing: Standing::of(status),
            }
        })
        .collect();
    rows.sort_by(|a, b| (a.standing, &a.target.name).cmp(&(b.standing, &b.target.name)));
    rows
}

/// How many targets stand where.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub total: usize,
    pub pass: usize,
    pub unknown: usize,
    pub fail: usize,
    pub not_checked: usize,
}

impl Summary {
    fn of(rows: &[Row<'_>]) -> Summary {
        let mut s = Summary {
            total: rows.len(),
            ..Summary::default()
        };
        for row in rows {
            match row.standing {
                Standing::Pass => s.pass += 1,
                Standing::Unknown => s.unknown += 1,
                Standing::Fail => s.fail += 1,
                Standing::NotChecked => s.not_checked += 1,
            }
        }
        s
    }

    /// The summary line: `N targets: x pass, y unknown, z fail` (and how many are not checked
    /// yet, when any are).
    pub fn line(&self) -> String {
        let mut line = format!(
            "{} target{}: {} pass, {} unknown, {} fail",
            self.total,
            if self.total == 1 { "" } else { "s" },
            self.pass,
            self.unknown,
            self.fail
        );
        if self.not_checked > 0 {
            let _ = write!(line, ", {} not checked yet", self.not_checked);
        }
        line
    }

    /// The worst standing present, for the summary's colour.
    fn worst(&self) -> Standing {
        if self.fail > 0 {
            Standing::Fail
        } else if self.unknown > 0 {
            Standing::Unknown
        } else if self.pass > 0 {
            Standing::Pass
        } else {
            Standing::NotChecked
        }
    }
}

/// Colours pass WCAG AA contrast for their text; every state also carries its word and symbol.
///
/// The targets table fits its window whatever a provider sends: a fixed layout with set column
/// widths, and text that breaks anywhere when a word is longer than its cell (names, URLs). A
/// shortened hex run is an inline block, so it moves to the next line whole instead of
/// breaking in two. `tests/it/daemon/status_page/` measures the page at 1,280 pixels in Chromium.
const STYLE: &str = "\
:root{color-scheme:light}\
body{font-family:system-ui,sans-serif;margin:1em 1.5em;color:#1a1a1a;background:#fff;line-height:1.35}\
main{overflow-wrap:break-word}\
h1{font-size:1.4em;margin:.2em 0}h2{font-size:1.1em;margin:1em 0 .3em}\
a{color:#0645ad}small,.meta{color:#444}p{margin:.4em 0}\
#summary{font-size:1.25em;font-weight:600;padding:.4em .6em;border-left:.4em solid;margin:.6em 0}\
table{border-collapse:collapse}\
th,td{border:1px solid #bbb;padding:.3em .45em;text-align:left;vertical-align:top}\
thead th{background:#e8e8e8}\
#targets{width:100%;table-layout:fixed}#targets thead th{position:sticky;top:0}\
#targets th,#targets td{overflow-wrap:anywhere}\
#targets thead th:nth-child(1){width:13%}#targets thead th:nth-child(5){width:29%}\
#targets thead th:nth-child(6),#targets thead th:nth-child(7){width:9%}\
#targets tbody th{font-weight:600;border-left:.4em solid #78909c}\
#targets tbody tr{scroll-margin-top:2.5em}\
#targets tr:target>th,#targets tr:target>td{outline:2px solid #0645ad;outline-offset:-2px}\
#targets tr[data-state=pass]>th{border-left-color:#1e7b34}\
#targets tr[data-state=unknown]>th{border-left-color:#a87800}\
#targets tr[data-state=fail]>th{border-left-color:#c62828}\
.pass{background:#e3f4e6;color:#0b4a1d;border-color:#1e7b34}\
.unknown{background:#fff3c4;color:#4d3800;border-color:#a87800}\
.fail{background:#fde2e4;color:#7d0d1c;border-color:#c62828}\
.none{background:#eceff1;color:#2f3d44;border-color:#78909c}\
td.st{font-weight:700;border-color:#bbb}caption{text-align:left}\
.hex{display:inline-block;max-width:100%;font-family:ui-monospace,monospace;font-size:.9em;\
text-decoration:underline dotted;cursor:help}\
ul{margin:0;padding-left:1.1em}li{margin:.1em 0}\
code{font-family:ui-monospace,monospace;font-size:.9em;word-break:break-all}\
.ck{font-weight:600}.warn{background:#fff3c4;color:#4d3800}\
.tag{display:inline-block;background:#7d0d1c;color:#fff;padding:0 .3em;border-radius:.2em;font-weight:700}\
#trust{padding:.3em .8em;border:2px solid #1e7b34;background:#f3faf4;margin:.6em 0}\
#trust.test{border-color:#b71c1c;background:#fdecea;color:#4a0a0a}\
#trust summary{cursor:pointer;color:#444}#trust td,#trust th{background:transparent}";

/// The whole page.
pub fn render(
    generation: &Generation,
    statuses: &BTreeMap<String, TargetStatus>,
    notices: &Notices,
    next_due: impl Fn(&str) -> Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> String {
    let rows = rows(generation, statuses);
    let summary = Summary::of(&rows);
    let line = summary.line();
    // A passing row is a few hundred bytes; failing rows carry their checks.
    let mut page = String::with_capacity(8192 + rows.len() * 512);
    let _ = write!(
        page,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">\
         <title>teewatch: {title}</title><style>{STYLE}</style></head><body><main>\
         <h1>teewatch</h1>\
         <p id=\"summary\" class=\"{worst}\" role=\"status\" data-total=\"{total}\" \
         data-pass=\"{pass}\" data-unknown=\"{unknown}\" data-fail=\"{fail}\" \
         data-none=\"{none}\">{line}</p>\
         <p class=\"meta\">teewatch {version} · page generated {generated} · refreshes every \
         {REFRESH_SECONDS} s · <a href=\"/metrics\">/metrics</a> · <a href=\"/healthz\">/healthz</a> \
         · <a href=\"/readyz\">/readyz</a></p>",
        title = escape(&line),
        worst = summary.worst().as_str(),
        total = summary.total,
        pass = summary.pass,
        unknown = summary.unknown,
        fail = summary.fail,
        none = summary.not_checked,
        version = env!("CARGO_PKG_VERSION"),
        generated = now.to_rfc3339_opts(SecondsFormat::Secs, true),
    );
    notices_section(&mut page, generation, notices, now);
    trust_section(&mut page, &generation.anchors);
    page.push_str(
        "<h2 id=\"targets-heading\">Targets</h2>\
         <table id=\"targets\" aria-labelledby=\"targets-heading\"><caption class=\"meta\">\
         Failing targets first, then unknown, passing and not yet checked. \
         <em>since</em>: when the target entered its state (failing since, for a failing \
         target). <em>chats/day</em>: the canary chats the target's schedule and \
         <code>[target.canary] every</code> spend a day. <code>#N</code>: the stored check (<code>teewatch history export --check N\
         </code>). Shortened hex shows its whole value on hover.</caption>\
         <thead><tr><th scope=\"col\">target</th><th scope=\"col\">state</th>\
         <th scope=\"col\">since</th>\
         <th scope=\"col\">last success</th><th scope=\"col\">failing checks</th>\
         <th scope=\"col\">TCB status</th><th scope=\"col\">last drift</th>\
         <th scope=\"col\">last check</th><th scope=\"col\">next check</th></tr></thead><tbody>",
    );
    let window_seconds =
        i64::try_from(generation.config.daemon.drift_window.as_secs()).unwrap_or(i64::MAX);
    for row in &rows {
        target_row(
            &mut page,
            row,
            &generation.anchors.dangerous,
            next_due(&row.target.name),
            window_seconds,
            now,
        );
    }
    page.push_str("</tbody></table>");
    if summary.total == 0 {
        page.push_str("<p>No monitored targets are configured.</p>");
    }
    page.push_str("</main></body></html>\n");
    page
}

/// The daemon's own problems, above everything else: a refused reload (the configuration in
/// force is still the previous one) and a store that refused a check.
fn notices_section(
    page: &mut String,
    generation: &Generation,
    notices: &Notices,
    now: DateTime<Utc>,
) {
    if let Some(refusal) = &notices.reload_refused {
        let _ = write!(
            page,
            "<p id=\"reload-refused\" class=\"fail\" role=\"alert\">Reload refused {at}: {reason}. \
             The configuration loaded {loaded} (generation {number}) stays in force.</p>",
            at = time(Some(refusal.at), now),
            reason = reason_html(&refusal.reason, MAX_REASON_CHARS),
            loaded = time(Some(generation.loaded_at), now),
            number = generation.number,
        );
    }
    if let Some(failure) = &notices.store_failure {
        let _ = write!(
            page,
            "<p id=\"store-failure\" class=\"fail\" role=\"alert\">Storing a check of {target} \
             failed {at}: {error}. Checks that are not stored are not shown; this clears when a \
             check is stored.</p>",
            target = escape(&failure.target),
            at = time(Some(failure.at), now),
            error = reason_html(&failure.error, MAX_REASON_CHARS),
        );
    }
}

/// One anchor of the trust section.
struct Anchor<'a> {
    what: &'static str,
    ders: Vec<&'a [u8]>,
    /// The `dangerous_*` option that replaced it, if one is in force.
    dangerous: Option<&'static str>,
    /// Whether the configuration (not `[dangerous]`) replaced the compiled-in anchor.
    configured: bool,
    /// The option that can replace it outside `[dangerous]`.
    configured_by: &'static str,
}

fn fingerprint(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    crate::verify::hexutil::lower(&digest)
}

/// The trust roots in force: compiled-in production anchors, or `[dangerous]` test roots.
fn trust_section(page: &mut String, anchors: &TrustAnchors) {
    let is = |name: &'static str| anchors.dangerous.iter().any(|d| d == name).then_some(name);
    let production_nras: Vec<Vec<u8>> = pem_to_der(NRAS_INTERMEDIATE_004_PEM).into_iter().collect();
    let production_nvidia = pem_to_der(NVIDIA_DEVICE_ROOT_PEM).unwrap_or_default();
    let list = [
        Anchor {
            what: "Intel SGX root CA (TDX quotes, collateral)",
            ders: vec![anchors.intel_root_der.as_slice()],
            dangerous: is("dangerous_intel_root_ca"),
            configured: anchors.intel_root_der != INTEL_SGX_ROOT_CA_DER,
            configured_by: "the configuration",
        },
        Anchor {
            what: "NVIDIA device identity CA (GPU certificate chains)",
            ders: vec![anchors.nvidia_device_root_der.as_slice()],
            dangerous: is("dangerous_nvidia_device_root"),
            configured: anchors.nvidia_device_root_der != production_nvidia,
            configured_by: "the configuration",
        },
        Anchor {
            what: "NRAS intermediates (NRAS token keys)",
            ders: anchors
                .nras_intermediates_der
                .iter()
                .map(Vec::as_slice)
                .collect(),
            dangerous: is("dangerous_nras_intermediates"),
            configured: anchors.nras_intermediates_der != production_nras,
            configured_by: "<code>[nvidia] nras_anchors</code>",
        },
    ];
    if anchors.dangerous.is_empty() {
        page.push_str(
            "<section id=\"trust\" data-trust=\"production\" aria-label=\"trust roots\"><p>\
             <strong>Production trust roots in force</strong>: the anchors compiled into \
             teewatch (no <code>[dangerous]</code> test roots).</p>",
        );
    } else {
        let _ = write!(
            page,
            "<section id=\"trust\" class=\"test\" data-trust=\"test\" aria-label=\"trust roots\">\
             <p><span class=\"tag\">TEST</span> <strong>Test trust roots in force</strong>: \
             <code>[dangerous]</code> {} replace{} production anchors. Verdicts prove nothing \
             about real hardware.</p>",
            anchors
                .dangerous
                .iter()
                .map(|d| format!("<code>{}</code>", escape(d)))
                .collect::<Vec<_>>()
                .join(", "),
            if anchors.dangerous.len() == 1 {
                "s"
            } else {
                ""
            }
        );
    }
    page.push_str(
        "<details><summary>Anchors in force</summary><table><thead><tr>\
         <th scope=\"col\">anchor</th><th scope=\"col\">source</th>\
         <th scope=\"col\">SHA-256 of the DER</th></tr></thead><tbody>",
    );
    for anchor in &list {
        let source = match (anchor.dangerous, anchor.configured) {
            (Some(option), _) => format!(
                "<span class=\"tag\">TEST ROOT</span> <code>[dangerous] {}</code>",
                escape(option)
            ),
            (None, true) => format!("configured ({})", anchor.configured_by),
            (None, false) => "compiled in (production)".to_string(),
        };
        let prints: Vec<String> = anchor
            .ders
            .iter()
            .map(|der| format!("<code>{}</code>", fingerprint(der)))
            .collect();
        let _ = write!(
            page,
            "<tr><th scope=\"row\">{}</th><td>{source}</td><td>{}</td></tr>",
            anchor.what,
            if prints.is_empty() {
                "none".to_string()
            } else {
                prints.join("<br>")
            }
        );
    }
    let _ = write!(
        page,
        "</tbody></table><p class=\"meta\">NRAS: <code>{}</code></p></details></section>",
        escape(&anchors.nras_url)
    );
}

fn target_row(
    page: &mut String,
    row: &Row<'_>,
    dangerous_now: &[String],
    next: Option<DateTime<Utc>>,
    window_seconds: i64,
    now: DateTime<Utc>,
) {
    let standing = row.standing;
    let state = standing.as_str();
    let name = escape(&row.target.name);
    let _ = write!(
        page,
        "<tr data-target=\"{name}\" data-state=\"{state}\" id=\"{id}\"><th scope=\"row\">\
         {name}",
        id = escape(&anchor(&row.target.name)),
    );
    if row.monitor.model != row.target.name {
        let _ = write!(
            page,
            "<br><small>model <code>{}</code></small>",
            escape(&row.monitor.model)
        );
    }
    page.push_str(&row.status.map(|s| known_html(&s.known)).unwrap_or_default());
    // What the target's canary costs: 2 chats per run, every `every`-th check.
    let every = row.monitor.canary.every;
    let _ = write!(
        page,
        "<br><small data-chats-per-day=\"{chats}\">{chats} chats/day{cadence}</small>",
        chats = super::runner::cadence::chats_per_day_text(row.monitor),
        cadence = if every > 1 {
            format!(", every {every} checks")
        } else {
            String::new()
        },
    );
    if standing != Standing::Pass {
        let _ = write!(
            page,
            "<br><small><code>{}</code></small>",
            escape(&row.monitor.base_url)
        );
    }
    // A verdict judged under test roots that are no longer (all) in force, e.g. after a reload.
    let stale_trust = row
        .status
        .map(|s| s.trust.as_slice())
        .filter(|trust| !trust.is_empty() && *trust != dangerous_now);
    if let Some(trust) = stale_trust {
        let _ = write!(
            page,
            "<br><small class=\"tag\">judged under test roots: {}</small>",
            escape(&trust.join(", "))
        );
    }
    let since = match row.status {
        Some(status) => time(Some(status.state_since), now),
        None => "—".to_string(),
    };
    let _ = write!(
        page,
        "</th><td class=\"st {state}\"><span aria-hidden=\"true\">{}</span> {}</td>\
         <td class=\"since\">{since}</td><td>{}</td><td>",
        standing.symbol(),
        standing.label(),
        time(row.status.and_then(|s| s.last_success), now),
    );
    match row.status {
        Some(status) if !status.failing.is_empty() => failing_checks(page, &status.failing),
        Some(_) => page.push_str("none"),
        None => page.push('—'),
    }
    let tcb = row.status.and_then(|s| s.tcb_status.as_deref());
    match tcb {
        Some("UpToDate") => page.push_str("</td><td>UpToDate</td><td>"),
        Some(other) => {
            let _ = write!(page, "</td><td class=\"warn\">{}</td><td>", escape(other));
        }
        None => page.push_str("</td><td>—</td><td>"),
    }
    match row.status.and_then(|s| s.last_drift.as_ref()) {
        Some(drift) => {
            let age = now.signed_duration_since(drift.at).num_seconds();
            let recent = age <= window_seconds;
            let _ = write!(
                page,
                "<span{}><code>{}</code> → <code title=\"{}\">{}</code> {}{}</span>",
                if recent { " class=\"warn\"" } else { "" },
                escape(&drift.field),
                escape(&drift.new_value),
                escape(&shorten(&drift.new_value, MAX_VALUE_CHARS)),
                time(Some(drift.at), now),
                if recent {
                    " (within the drift window)"
                } else {
                    ""
                },
            );
        }
        None => page.push_str("none"),
    }
    page.push_str("</td><td>");
    match row.status {
        Some(status) => {
            page.push_str(&time(Some(status.last_check), now));
            if let Some(id) = status.check_id {
                let _ = write!(page, " <small>#{id}</small>");
            }
            // In a fleet, which instance ran it (any instance serves every target's row).
            if let Some(by) = &status.checked_by {
                let _ = write!(page, " <small>by {}</small>", escape(by));
            }
        }
        None => page.push_str("never"),
    }
    page.push_str("</td><td>");
    match next {
        Some(at) => {
            page.push_str(&time(Some(at), now));
            if now.signed_duration_since(at).num_seconds() > OVERDUE_AFTER_SECONDS {
                page.push_str(" <strong class=\"warn\">overdue</strong>");
            }
        }
        None => page.push('—'),
    }
    page.push_str("</td></tr>");
}

/// The checks that did not pass: failures first, each with its reason, at most
/// [`MAX_LISTED_CHECKS`] of them, the rest counted.
fn failing_checks(page: &mut String, checks: &[Check]) {
    let mut ordered: Vec<&Check> = checks.iter().filter(|c| c.state != State::Pass).collect();
    // Stable: within a state, the verdict's own order (the order the steps ran).
    ordered.sort_by_key(|c| std::cmp::Reverse(c.state));
    page.push_str("<ul>");
    for check in ordered.iter().take(MAX_LISTED_CHECKS) {
        let state = check.state.as_str();
        let _ = write!(
            page,
            "<li data-check=\"{name}\" data-check-state=\"{state}\"><code class=\"ck\">{name}</code>",
            name = escape(&check.name)
        );
        if !check.scope.is_empty() {
            let _ = write!(page, " <small>[{}]</small>", reason_html(&check.scope, 48));
        }
        let _ = write!(
            page,
            " <em class=\"{state}\">{state}</em>: {}</li>",
            reason_html(&check.reason, MAX_REASON_CHARS)
        );
    }
    let rest = ordered.len().saturating_sub(MAX_LISTED_CHECKS);
    if rest > 0 {
        let _ = write!(
            page,
            "<li>and {rest} more not passing (<code>teewatch history export</code> has the \
             verdict)</li>"
        );
    }
    page.push_str("</ul>");
}

#[cfg(test)]
#[path = "status_page_tests.rs"]
mod tests;
