//! Keeping the API key out of everything a fetch brings back. A hostile or careless provider can
//! echo the key in an error body, a redirect's URL or even a 200 answer, and not only as sent:
//! base64-encoded, percent-encoded or JSON-escaped. Whatever teewatch keeps of an exchange that
//! carried the key (error messages, which reach logs, verdicts and the store, and bodies, which
//! become evidence) passes through here first, so none of those forms survives, nor the start of
//! one cut off at the end of an excerpt.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};

/// What replaces the key.
pub const REDACTED: &str = "[redacted]";

/// The shortest start of a form of the key that is removed from the end of a cut excerpt: a
/// shorter one says too little about the key to be worth mangling the text.
const MIN_PARTIAL: usize = 4;

/// Every form in which an echo of `secret` may come back, longest first (so that a form is
/// replaced before another that is its prefix, as base64 without padding is).
pub fn forms(secret: &str) -> Vec<String> {
    if secret.is_empty() {
        return Vec::new();
    }
    let percent = |upper: bool, keep_unreserved: bool| -> String {
        let mut out = String::with_capacity(secret.len() * 3);
        for b in secret.bytes() {
            if b.is_ascii_alphanumeric() || (keep_unreserved && b"-_.~".contains(&b)) {
                out.push(char::from(b));
            } else if upper {
                out.push_str(&format!("%{b:02X}"));
            } else {
                out.push_str(&format!("%{b:02x}"));
            }
        }
        out
    };
    let mut forms = vec![
        secret.to_string(),
        percent(true, true),
        percent(false, true),
        percent(true, false),
        percent(false, false),
        STANDARD.encode(secret),
        STANDARD_NO_PAD.encode(secret),
        URL_SAFE.encode(secret),
        URL_SAFE_NO_PAD.encode(secret),
        secret.replace('/', "\\/"),
        hex::encode(secret),
        hex::encode_upper(secret),
    ];
    forms.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    forms.dedup();
    forms
}

/// `text` with every form of `secret` replaced by [`REDACTED`].
pub fn text(text: &str, secret: &str) -> String {
    let mut out = text.to_string();
    for form in forms(secret) {
        if out.contains(&form) {
            out = out.replace(&form, REDACTED);
        }
    }
    out
}

/// `text` (an excerpt cut at its end) redacted, and without a trailing start of a form of the
/// key, which the cut may have left of a whole one.
pub fn excerpt(text: &str, secret: &str) -> String {
    let mut out = self::text(text, secret);
    for form in forms(secret) {
        let longest = (MIN_PARTIAL..form.len())
            .rev()
            .filter_map(|n| form.get(..n))
            .find(|start| out.ends_with(start));
        if let Some(start) = longest {
            out.truncate(out.len() - start.len());
            out.push_str(REDACTED);
        }
    }
    out
}

/// A body with every form of `secret` replaced by [`REDACTED`]; `None` when it holds none (the
/// usual case, in which the body is kept exactly as received).
///
/// Every fetched body passes through here, so the search is memchr's substring search rather
/// than a comparison at every offset (which was a tenth of the daemon's CPU at 2,000 targets).
pub fn bytes(body: &[u8], secret: &str) -> Option<Vec<u8>> {
    let forms = forms(secret);
    if !forms
        .iter()
        .any(|f| memchr::memmem::find(body, f.as_bytes()).is_some())
    {
        return None;
    }
    let mut out = body.to_vec();
    for form in forms {
        let finder = memchr::memmem::Finder::new(form.as_bytes());
        let mut next = Vec::with_capacity(out.len());
        let mut rest: &[u8] = &out;
        while let Some(at) = finder.find(rest) {
            next.extend_from_slice(rest.get(..at).unwrap_or_default());
            next.extend_from_slice(REDACTED.as_bytes());
            rest = rest.get(at + form.len()..).unwrap_or_default();
        }
        next.extend_from_slice(rest);
        out = next;
    }
    Some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const KEY: &str = "sk-Tw+Secret/Key=42";

    #[test]
    fn every_encoded_form_is_replaced() {
        let echoed = format!(
            "a {KEY} b {} c {} d sk-Tw%2BSecret%2FKey%3D42 e sk%2dTw%2bSecret%2fKey%3d42 f sk-Tw+Secret\\/Key=42 g",
            STANDARD.encode(KEY),
            URL_SAFE_NO_PAD.encode(KEY)
        );
        assert_eq!(
            text(&echoed, KEY),
            "a [redacted] b [redacted] c [redacted] d [redacted] e [redacted] f [redacted] g"
        );
        assert_eq!(text("nothing here", KEY), "nothing here");
        assert_eq!(text("x", ""), "x");
    }

    #[test]
    fn a_key_cut_at_the_end_of_an_excerpt_leaves_nothing_of_itself() {
        assert_eq!(excerpt("error: sk-Tw+Sec", KEY), "error: [redacted]");
        // Too short a start to be the key's is left alone.
        assert_eq!(excerpt("error: sk-", KEY), "error: sk-");
    }

    #[test]
    fn bodies_are_rewritten_only_when_they_hold_the_key() {
        assert_eq!(bytes(b"{\"a\":1}", KEY), None);
        let body = format!("{{\"id\":\"chat-{KEY}\",\"t\":\"{KEY}\"}}");
        assert_eq!(
            bytes(body.as_bytes(), KEY).unwrap(),
            b"{\"id\":\"chat-[redacted]\",\"t\":\"[redacted]\"}"
        );
    }
}
