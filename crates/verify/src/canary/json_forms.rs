//! The second form a non-streamed canary body may be signed in: Python's `json.dumps` of its
//! parse, which some dstack vllm-proxy versions hash while sending compact JSON.
//!
//! That form is a hash of the parse, not of the bytes, so it stands for the bytes only when the
//! bytes are the one way of writing that parse: the compact serialisation of it (no whitespace
//! between tokens; each number written so that it reads back as itself) with no duplicate key at
//! any depth. A duplicated key is read as its last value by serde_json and Python but as its first
//! by other parsers, so a signature over the parse would cover a body a client reads differently;
//! the same holds for whitespace and digits a re-serialisation would not reproduce. Bodies that
//! fail these rules get no fallback, and the reason says why.

use serde::de::{DeserializeSeed, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// The `json.dumps` form of a JSON body, and why it may not stand for the body, if it may not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct DumpsForm {
    pub text: String,
    /// The refusal, naming the half (`request` or `response`); `None` when the form is accepted.
    pub refused: Option<String>,
}

/// The `json.dumps` form of `body` (`None` when the body is not JSON), refused unless the body is
/// the compact serialisation of its own parse without duplicate keys.
pub(super) fn dumps_form(body: &[u8], half: &str) -> Option<DumpsForm> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let refused = match first_duplicate_key(body) {
        Some(key) => Some(format!(
            "{half} body has a duplicate key `{key}`: the json.dumps form is not accepted"
        )),
        None => not_compact(body).map(|why| {
            format!(
                "{half} body is not the compact serialisation of its own parse ({why}): the json.dumps form is not accepted"
            )
        }),
    };
    Some(DumpsForm {
        text: python_json_dumps(&value),
        refused,
    })
}

/// The first key that appears twice in one object of `body`, compared after unescaping (so
/// `"choices"` and `"\u0063hoices"` are the same key), at any depth. serde_json's `Value` keeps
/// only the last duplicate, so this walks the document with its own visitor.
fn first_duplicate_key(body: &[u8]) -> Option<String> {
    let mut found = None;
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let walked = NoDuplicates { found: &mut found }.deserialize(&mut deserializer);
    if walked.is_ok() {
        // Trailing bytes were already refused by the `Value` parse; nothing more to learn here.
        let _ = deserializer.end();
    }
    found
}

/// A visitor that reads any JSON value, keeps nothing, and stops at the first duplicate key,
/// leaving it in `found`.
struct NoDuplicates<'a> {
    found: &'a mut Option<String>,
}

impl<'de> DeserializeSeed<'de> for NoDuplicates<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NoDuplicates<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any json value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(NoDuplicates {
                found: &mut *self.found,
            })?
            .is_some()
        {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut keys = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if keys.contains(&key) {
                *self.found = Some(key);
                return Err(A::Error::custom("duplicate key"));
            }
            map.next_value_seed(NoDuplicates {
                found: &mut *self.found,
            })?;
            keys.insert(key);
        }
        Ok(())
    }
}

/// Why `body` (valid JSON) is not the compact serialisation of its parse, if it is not: whitespace
/// between tokens, or a number that does not read back as written (an integer beyond 64 bits,
/// which the parse turns into a float, or digits beyond the shortest form of the parsed double).
/// String tokens need no rule: every escape form decodes to one string for every parser.
fn not_compact(body: &[u8]) -> Option<String> {
    let mut in_string = false;
    let mut escaped = false;
    let mut at = 0;
    while let Some(&byte) = body.get(at) {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            at += 1;
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b' ' | b'\t' | b'\n' | b'\r' => return Some(format!("whitespace at byte {at}")),
            b'-' | b'0'..=b'9' => {
                let length = body
                    .get(at..)
                    .unwrap_or_default()
                    .iter()
                    .take_while(|b| matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                    .count();
                let token = body
                    .get(at..at + length)
                    .and_then(|t| std::str::from_utf8(t).ok())
                    .unwrap_or_default();
                if let Some(why) = number_not_as_written(token) {
                    return Some(format!("number `{token}` at byte {at} {why}"));
                }
                at += length;
                continue;
            }
            _ => {}
        }
        at += 1;
    }
    None
}

/// Why a JSON number token does not read back as written, if it does not.
fn number_not_as_written(token: &str) -> Option<String> {
    if !token.contains(['.', 'e', 'E']) {
        if token.parse::<i64>().is_ok() || token.parse::<u64>().is_ok() {
            return None;
        }
        return Some("does not fit a 64-bit integer: its parse is a float".into());
    }
    let Ok(parsed) = token.parse::<f64>() else {
        return Some("is not a number".into());
    };
    let written = significant(token);
    if written.is_some() && written == significant(&format!("{parsed:e}")) {
        return None;
    }
    Some(format!("reads back as {}", python_float(parsed)))
}

/// A decimal number's sign, significant digits and power of ten (`-1.50e3` → `(true, "15", 2)`),
/// so that forms of one number compare equal; zero has no digits and power 0. `None` when the
/// exponent does not fit.
fn significant(number: &str) -> Option<(bool, String, i64)> {
    let negative = number.starts_with('-');
    let unsigned = number.trim_start_matches(['-', '+']);
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i64>().ok()?),
        None => (unsigned, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = format!("{whole}{fraction}");
    let digits = digits.trim_start_matches('0');
    let trimmed = digits.trim_end_matches('0');
    if trimmed.is_empty() {
        return Some((negative, String::new(), 0));
    }
    let zeros = i64::try_from(digits.len() - trimmed.len()).ok()?;
    let fraction_len = i64::try_from(fraction.len()).ok()?;
    let power = exponent.checked_sub(fraction_len)?.checked_add(zeros)?;
    Some((negative, trimmed.to_string(), power))
}

/// Renders JSON as Python's `json.dumps(value)` does with its defaults: `", "` and `": "`
/// separators, ASCII-only output with `\uXXXX` escapes, and Python's float repr.
pub fn python_json_dumps(value: &Value) -> String {
    let mut out = String::new();
    write_python(value, &mut out);
    out
}

fn write_python(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            if n.is_f64() {
                out.push_str(&python_float(n.as_f64().unwrap_or(0.0)));
            } else {
                out.push_str(&n.to_string());
            }
        }
        Value::String(s) => write_python_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_python(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_python_string(key, out);
                out.push_str(": ");
                write_python(item, out);
            }
            out.push('}');
        }
    }
}

fn write_python_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) >= 0x80 => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Python's `repr(float)`: shortest round-trip digits, exponent form below 1e-4 and from 1e16,
/// with a signed two-digit exponent.
fn python_float(x: f64) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    let text = format!("{x:?}");
    match text.split_once('e') {
        Some((mantissa, exponent)) => {
            let (sign, digits) = match exponent.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', exponent),
            };
            let mantissa = mantissa.strip_suffix(".0").unwrap_or(mantissa);
            format!("{mantissa}e{sign}{digits:0>2}")
        }
        None => text,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn python_dumps_matches_python() {
        let value: Value = serde_json::from_str(
            r#"{"a":[1,2.5,1e-5,1e16,-0.0],"é":"ü\n\u0001😀","t":true,"n":null,"x":1.0}"#,
        )
        .unwrap();
        // The text Python 3 prints for json.dumps of the same object.
        assert_eq!(
            python_json_dumps(&value),
            r#"{"a": [1, 2.5, 1e-05, 1e+16, -0.0], "\u00e9": "\u00fc\n\u0001\ud83d\ude00", "t": true, "n": null, "x": 1.0}"#
        );
    }

    fn refusal(body: &str) -> Option<String> {
        dumps_form(body.as_bytes(), "response").unwrap().refused
    }

    #[test]
    fn a_compact_body_without_duplicates_is_accepted() {
        for body in [
            r#"{"id":"x","choices":[{"message":{"content":"h\u00e9llo wörld"}}],"usage":{"total_tokens":3}}"#,
            r#"{"lp":[-1.2e-05,1e-5,0.1,1.0,-0.0,0,-7,18446744073709551615,1E2,2.50]}"#,
            r#"[{"a":1},{"a":2}]"#,
            r#""a string with spaces, \"quotes\" and \\ a backslash""#,
        ] {
            assert_eq!(refusal(body), None, "{body}");
        }
    }

    #[test]
    fn a_duplicate_key_is_found_at_any_depth_and_after_unescaping() {
        for (body, key) in [
            (r#"{"id":"x","choices":[1],"choices":[2]}"#, "choices"),
            (
                r#"{"choices":[{"message":{"content":"a","content":"b"}}]}"#,
                "content",
            ),
            (r#"{"choices":[1],"\u0063hoices":[2]}"#, "choices"),
        ] {
            assert_eq!(
                refusal(body).unwrap(),
                format!(
                    "response body has a duplicate key `{key}`: the json.dumps form is not accepted"
                ),
                "{body}"
            );
        }
        // The same key in sibling objects is not a duplicate.
        assert_eq!(refusal(r#"{"a":{"k":1},"b":{"k":1}}"#), None);
    }

    #[test]
    fn a_body_a_re_serialisation_would_not_reproduce_is_refused() {
        for (body, why) in [
            (r#"{"id": "x"}"#, "whitespace at byte 6"),
            ("{\"id\":\"x\"}\n", "whitespace at byte 10"),
            (" {}", "whitespace at byte 0"),
            (
                r#"{"n":123456789012345678901}"#,
                "number `123456789012345678901` at byte 5 does not fit a 64-bit integer: its parse is a float",
            ),
            (
                r#"{"p":0.30000000000000001}"#,
                "number `0.30000000000000001` at byte 5 reads back as 0.3",
            ),
            (r#"[1e-400]"#, "number `1e-400` at byte 1 reads back as 0.0"),
        ] {
            assert_eq!(
                refusal(body).unwrap(),
                format!(
                    "response body is not the compact serialisation of its own parse ({why}): the json.dumps form is not accepted"
                ),
                "{body}"
            );
        }
    }

    #[test]
    fn a_body_that_is_not_json_has_no_dumps_form() {
        for body in [
            &b"data: {}\n\n"[..],
            b"{\"a\":1",
            b"{\"a\":\"\xff\"}",
            b"{} {}",
        ] {
            assert_eq!(dumps_form(body, "response"), None);
        }
    }

    #[test]
    fn significant_digits_compare_forms_of_one_number() {
        assert_eq!(significant("-1.50e3"), Some((true, "15".into(), 2)));
        assert_eq!(significant("0.00100"), Some((false, "1".into(), -3)));
        assert_eq!(significant("1e-3"), significant("0.001"));
        assert_eq!(significant("0.0"), Some((false, String::new(), 0)));
        assert_eq!(significant("1e99999999999999999999"), None);
    }
}
