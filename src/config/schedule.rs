//! When a target is checked: a fixed interval (`"30s"`, `"5m"`, `"1h30m"`) or a cron expression.
//!
//! Cron expressions are only checked for shape here (5 fields, or 6 with seconds first, each
//! field's values within range); the scheduler interprets them.

use std::time::Duration;

/// The shortest interval accepted: checks cost the provider a completion each time.
pub const MIN_INTERVAL: Duration = Duration::from_secs(10);
/// The interval used when a target names neither `interval` nor `cron`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5 * 60);

/// How often a target is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// Every so often, from when the daemon starts.
    Interval(Duration),
    /// A cron expression: 5 fields (minute hour day-of-month month day-of-week), or 6 with
    /// seconds first; fields separated by single spaces.
    Cron(String),
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule::Interval(DEFAULT_INTERVAL)
    }
}

const INTERVAL_FORMAT: &str =
    "a duration such as \"30s\", \"5m\", \"1h\" or \"1h30m\" (units d, h, m, s, largest first)";

/// Parses an interval: one or more `<number><unit>` with units `d`, `h`, `m`, `s`, each at most
/// once and largest first, and at least [`MIN_INTERVAL`].
pub fn parse_interval(text: &str) -> Result<Duration, String> {
    let duration = parse_duration(text)?;
    if duration < MIN_INTERVAL {
        return Err(format!(
            "expected an interval of at least {}s, found \"{text}\"",
            MIN_INTERVAL.as_secs()
        ));
    }
    Ok(duration)
}

/// Parses a duration written like an interval but without its minimum, for keys that state
/// their own bounds (and say them in their error) rather than the interval's 10 s.
pub(super) fn parse_duration(text: &str) -> Result<Duration, String> {
    let wrong = || format!("expected {INTERVAL_FORMAT}, found \"{text}\"");
    let units: [(char, u64); 4] = [('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)];
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(wrong());
    }
    let mut seconds: u64 = 0;
    let mut next_unit = 0;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(wrong)?;
        let (number, after) = rest.split_at(digits);
        let number: u64 = number.parse().map_err(|_| wrong())?;
        let mut chars = after.chars();
        let unit = chars.next().ok_or_else(wrong)?;
        let position = units
            .iter()
            .skip(next_unit)
            .position(|(u, _)| *u == unit)
            .ok_or_else(wrong)?
            + next_unit;
        let scale = units.get(position).map(|(_, s)| *s).ok_or_else(wrong)?;
        seconds = number
            .checked_mul(scale)
            .and_then(|s| seconds.checked_add(s))
            .ok_or_else(wrong)?;
        next_unit = position + 1;
        rest = chars.as_str();
    }
    Ok(Duration::from_secs(seconds))
}

/// One cron field: its name, its range, and the names its values may use.
struct CronField {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

const SECOND: CronField = CronField {
    name: "second",
    min: 0,
    max: 59,
    names: &[],
};
const FIVE_FIELDS: [CronField; 5] = [
    CronField {
        name: "minute",
        min: 0,
        max: 59,
        names: &[],
    },
    CronField {
        name: "hour",
        min: 0,
        max: 23,
        names: &[],
    },
    CronField {
        name: "day of month",
        min: 1,
        max: 31,
        names: &[],
    },
    CronField {
        name: "month",
        min: 1,
        max: 12,
        names: &MONTHS,
    },
    CronField {
        name: "day of week",
        min: 0,
        max: 7,
        names: &DAYS,
    },
];

/// Checks a cron expression's shape, returning it with its fields separated by single spaces.
pub fn check_cron(text: &str) -> Result<String, String> {
    let fields: Vec<&str> = text.split_whitespace().collect();
    let specs: Vec<&CronField> = match fields.len() {
        5 => FIVE_FIELDS.iter().collect(),
        6 => std::iter::once(&SECOND).chain(FIVE_FIELDS.iter()).collect(),
        n => {
            return Err(format!(
                "expected a cron expression of 5 fields (minute hour day-of-month month day-of-week) or 6 (seconds first), found {n} field{} in \"{text}\"",
                if n == 1 { "" } else { "s" }
            ));
        }
    };
    for (field, spec) in fields.iter().zip(specs) {
        if !cron_field_ok(field, spec) {
            let names = if spec.names.is_empty() {
                String::new()
            } else {
                format!(
                    " or {}-{}",
                    spec.names.first().unwrap_or(&""),
                    spec.names.last().unwrap_or(&"")
                )
            };
            return Err(format!(
                "expected the {} field to be *, a value, a range a-b, a list a,b or a step */n, with values from {} to {}{names}, found \"{field}\" in \"{text}\"",
                spec.name, spec.min, spec.max
            ));
        }
    }
    Ok(fields.join(" "))
}

/// One field: comma-separated items, each `*`, `?`, a value or a range `a-b`, with an optional
/// `/step`.
fn cron_field_ok(field: &str, spec: &CronField) -> bool {
    field.split(',').all(|item| {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => (range, Some(step)),
            None => (item, None),
        };
        let step_ok = step.is_none_or(|s| {
            s.parse::<u32>()
                .is_ok_and(|n| n >= 1 && n <= spec.max.max(1))
        });
        let range_ok = match range {
            "*" => true,
            "?" => spec.name.starts_with("day of"),
            _ => match range.split_once('-') {
                Some((a, b)) => match (cron_value(a, spec), cron_value(b, spec)) {
                    (Some(a), Some(b)) => a <= b,
                    _ => false,
                },
                None => cron_value(range, spec).is_some(),
            },
        };
        step_ok && range_ok
    })
}

/// A value within the field's range, as a number or (for months and weekdays) a name.
fn cron_value(text: &str, spec: &CronField) -> Option<u32> {
    if let Ok(n) = text.parse::<u32>() {
        return (spec.min..=spec.max).contains(&n).then_some(n);
    }
    let upper = text.to_ascii_uppercase();
    let index = spec.names.iter().position(|n| *n == upper)?;
    u32::try_from(index).ok().map(|i| i + spec.min)
}
