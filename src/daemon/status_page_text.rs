//! Text as the status page writes it: HTML escaping, provider text shortened so that no cell
//! can widen the page (long hex runs cut to `first…last` with the whole run in a tooltip), the
//! row anchors dashboards link to, instants shown as ages with the exact time on hover, and the
//! names of the TDX modules and OS images the known-measurements table recognised.

use std::fmt::Write;

use chrono::{DateTime, SecondsFormat, Utc};

/// Hex runs in a reason at least this long (a nonce, a measurement, a key) are shortened to
/// their first and last [`HEX_KEEP`] digits, the whole run in the `title`: an unbroken 64- or
/// 96-digit run would otherwise widen its column past a 1,280-pixel screen.
pub const LONG_HEX: usize = 24;

/// Digits of a long hex run shown at each end.
pub const HEX_KEEP: usize = 8;

/// The names in the passing `pin:mrseam` and `pin:mrtd` checks the known-measurements table
/// judged (a target's own pins give none), each once, in the verdict's order.
pub fn known_names(checks: &[crate::verify::Check]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let judged = checks.iter().filter(|c| {
        c.state == crate::verify::State::Pass && (c.name == "pin:mrseam" || c.name == "pin:mrtd")
    });
    for name in judged.filter_map(|c| crate::verify::known::names_in_reason(&c.reason)) {
        if !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
    }
    names
}

/// The row's line naming the module and image that run, or nothing when none was recognised.
pub(super) fn known_html(names: &[String]) -> String {
    if names.is_empty() {
        return String::new();
    }
    let names: Vec<String> = names.iter().map(|n| escape(n)).collect();
    format!(
        "<br><small class=\"known\" title=\"named by the known-measurements table\">runs {}</small>",
        names.join(" · ")
    )
}

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

/// The first `max` characters of `text`, with `…` when something was cut.
pub(super) fn shorten(text: &str, max: usize) -> String {
    let mut chars = text.chars();
    let mut out: String = chars.by_ref().take(max).collect();
    if chars.next().is_some() {
        out.push('…');
    }
    out
}

/// The `id` of a target's row, `target-<name>` (unescaped): the anchor dashboards and runbooks
/// link to as `/#target-<name>`. A browser matches the fragment percent-decoded first, so a link
/// may percent-encode the name (Grafana's data links do).
pub fn anchor(target: &str) -> String {
    format!("target-{target}")
}

/// A piece of provider text: plain text, or a long hex run.
enum Piece<'a> {
    Text(&'a str),
    Hex(&'a str),
}

/// Splits text into plain text and hex runs of at least [`LONG_HEX`] digits.
fn pieces(text: &str) -> Vec<Piece<'_>> {
    // (start, end) byte offsets of every long run, in order.
    let mut runs = Vec::new();
    let mut run_start: Option<usize> = None;
    // A trailing non-hex sentinel closes a run that ends the text.
    for (i, c) in text.char_indices().chain([(text.len(), ' ')]) {
        match (c.is_ascii_hexdigit(), run_start) {
            (true, None) => run_start = Some(i),
            (false, Some(start)) => {
                if i - start >= LONG_HEX {
                    runs.push((start, i));
                }
                run_start = None;
            }
            _ => {}
        }
    }
    let mut out = Vec::with_capacity(2 * runs.len() + 1);
    let mut plain_start = 0;
    for (start, end) in runs {
        if let Some(before) = text.get(plain_start..start).filter(|b| !b.is_empty()) {
            out.push(Piece::Text(before));
        }
        if let Some(run) = text.get(start..end) {
            out.push(Piece::Hex(run));
        }
        plain_start = end;
    }
    if let Some(rest) = text.get(plain_start..).filter(|r| !r.is_empty()) {
        out.push(Piece::Text(rest));
    }
    out
}

/// Provider text as HTML: escaped, each long hex run shortened to `first…last` inside a
/// `<span class="hex">` whose `title` holds the whole run, and the whole cut with `…` after
/// `max` shown characters (a shortened run counts as the characters it shows).
pub fn reason_html(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max * 2) + 16);
    let mut left = max;
    for piece in pieces(text) {
        if left == 0 {
            out.push('…');
            break;
        }
        match piece {
            Piece::Text(plain) => {
                let count = plain.chars().count();
                if count > left {
                    let cut: String = plain.chars().take(left).collect();
                    out.push_str(&escape(&cut));
                    out.push('…');
                    return out;
                }
                out.push_str(&escape(plain));
                left -= count;
            }
            Piece::Hex(run) => {
                // ASCII digits: byte and character positions agree, and nothing needs escaping.
                let head = run.get(..HEX_KEEP).unwrap_or(run);
                let tail = run.get(run.len().saturating_sub(HEX_KEEP)..).unwrap_or("");
                let _ = write!(
                    out,
                    "<span class=\"hex\" title=\"{run}\">{head}…{tail}</span>"
                );
                left = left.saturating_sub(2 * HEX_KEEP + 1);
            }
        }
    }
    out
}

fn human_seconds(s: i64) -> String {
    match s {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} d", s / 86_400),
    }
}

/// An instant as its age (or its distance ahead), with the exact time in `datetime` and `title`.
pub(super) fn time(at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    match at {
        None => "never".to_string(),
        Some(at) => {
            let age = now.signed_duration_since(at).num_seconds();
            let text = if age >= 0 {
                format!("{} ago", human_seconds(age))
            } else {
                format!("in {}", human_seconds(-age))
            };
            format!(
                "<time datetime=\"{0}\" title=\"{0}\">{text}</time>",
                at.to_rfc3339_opts(SecondsFormat::Secs, true)
            )
        }
    }
}
