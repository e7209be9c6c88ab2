//! The known-measurements table: MRSEAM values of Intel's TDX module releases and MRTD values of
//! dstack OS images, each with a name and its provenance, shipped in
//! `data/known-measurements.toml` and compiled into the binary.
//!
//! When a target pins neither `mrseam` nor `mrtd` itself, `pin:mrseam` and `pin:mrtd` are judged
//! against this table (see `pins.rs`), so an operator who pins nothing still learns which TDX
//! module and which image run, by name, and a value outside the table fails. A policy records the
//! table version it uses: rows are never deleted, only withdrawn from a later version, so a stored
//! bundle re-derives the same verdict with any later binary. The text is parsed once, on first
//! use; the parsed table is a pure function of compiled-in data, so caching it keeps the verifier
//! pure.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use super::policy::normalize_hex;

/// The table's text, as shipped.
pub const TABLE_TEXT: &str = include_str!("../data/known-measurements.toml");

/// The fields the table can name.
pub const KNOWN_FIELDS: [&str; 2] = ["mrseam", "mrtd"];

/// Marks a pass reason that came from the table: `<names> (known-measurements table v1): …`.
const REASON_MARK: &str = " (known-measurements table v";

/// One row of the shipped table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Row {
    /// `mrseam` or `mrtd`.
    pub field: String,
    /// 48 bytes as lowercase hex.
    pub value: String,
    /// The label shown in reasons and on the status page.
    pub name: String,
    /// What the value measures.
    pub what: String,
    /// Where it was observed or published.
    pub source: String,
    /// When.
    pub observed: String,
    /// The table version that added the row.
    pub since: u32,
    /// The table version from which the row no longer counts.
    #[serde(default)]
    pub withdrawn: Option<u32>,
}

impl Row {
    /// Whether the row counts in table version `version`.
    pub fn in_version(&self, version: u32) -> bool {
        self.since <= version && self.withdrawn.is_none_or(|w| w > version)
    }
}

/// The shipped table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Table {
    pub version: u32,
    /// The day of the last change.
    pub date: String,
    #[serde(rename = "row")]
    pub rows: Vec<Row>,
}

/// A row a target adds in its configuration (`[[target.known_extra]]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtraRow {
    pub field: String,
    pub value: String,
    pub name: String,
}

/// How a policy uses the table; stored in the bundle's policy snapshot as `known_measurements`.
/// A snapshot without it (every bundle stored before the table existed) does not use it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnownUse {
    /// The table version judged with.
    pub version: u32,
    /// The target's own extra rows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra: Vec<ExtraRow>,
}

impl KnownUse {
    /// The table as shipped in this binary, with no extra rows (`None` if the shipped table does
    /// not parse, which its tests rule out).
    pub fn current() -> Option<KnownUse> {
        table().ok().map(|t| KnownUse {
            version: t.version,
            extra: Vec::new(),
        })
    }

    /// Every problem with the extra rows, as `(path, message)`.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.version == 0 {
            out.push((
                "known_measurements.version".to_string(),
                "expected a table version of at least 1, found 0".to_string(),
            ));
        }
        for (index, row) in self.extra.iter().enumerate() {
            let path = format!("known_extra[{index}]");
            if !KNOWN_FIELDS.contains(&row.field.as_str()) {
                out.push((
                    format!("{path}.field"),
                    format!(
                        "expected one of {}, found \"{}\"",
                        KNOWN_FIELDS.join(", "),
                        row.field
                    ),
                ));
            }
            if normalize_hex(&row.value).is_none_or(|h| h.len() != 96) {
                out.push((
                    format!("{path}.value"),
                    format!(
                        "expected 96 hex characters (48 bytes), found \"{}\"",
                        row.value
                    ),
                ));
            }
            if row.name.trim().is_empty() {
                out.push((
                    format!("{path}.name"),
                    "expected a name, found an empty string".to_string(),
                ));
            }
        }
        out
    }

    /// The accepted values of `field` with their names: the shipped rows of this version, then
    /// the extra rows. Fails when this binary's table is older than the recorded version.
    pub fn candidates(&self, field: &str) -> Result<Candidates, String> {
        let table = table().map_err(|e| format!("the shipped known-measurements table: {e}"))?;
        if self.version > table.version {
            return Err(format!(
                "known-measurements table v{} was used, and this binary has v{}: judge with a newer teewatch",
                self.version, table.version
            ));
        }
        let mut rows: Vec<(String, String)> = table
            .rows
            .iter()
            .filter(|r| r.field == field && r.in_version(self.version))
            .map(|r| (r.value.clone(), r.name.clone()))
            .collect();
        rows.extend(
            self.extra
                .iter()
                .filter(|r| r.field == field)
                .filter_map(|r| Some((normalize_hex(&r.value)?, r.name.clone()))),
        );
        Ok(Candidates {
            version: self.version,
            rows,
        })
    }
}

/// The known values of one field at one table version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidates {
    pub version: u32,
    /// (lowercase hex value, name).
    pub rows: Vec<(String, String)>,
}

impl Candidates {
    /// The name of a value, if it is known (hex compared as bytes).
    pub fn name_of(&self, value: &str) -> Option<&str> {
        let value = normalize_hex(value)?;
        self.rows
            .iter()
            .find(|(v, _)| *v == value)
            .map(|(_, n)| n.as_str())
    }

    /// `the 4 known (table v1)`.
    pub fn describe(&self) -> String {
        format!("the {} known (table v{})", self.rows.len(), self.version)
    }

    /// The start of a pass reason: `TDX module 1.5.16 (known-measurements table v1)`.
    pub fn pass_prefix(&self, names: &[&str]) -> String {
        format!("{}{REASON_MARK}{})", names.join(", "), self.version)
    }
}

/// What an unknown value of a field is called in a failing reason.
pub fn unknown_label(field: &str) -> &'static str {
    match field {
        "mrseam" => "unknown tdx module",
        _ => "unknown os image",
    }
}

/// The names a passing table-judged reason gives (for the status page), or `None` for any other
/// reason (a target's own pin, a failure).
pub fn names_in_reason(reason: &str) -> Option<&str> {
    reason.split_once(REASON_MARK).map(|(names, _)| names)
}

/// The shipped table, parsed and checked on first use.
pub fn table() -> Result<&'static Table, &'static str> {
    static TABLE: OnceLock<Result<Table, String>> = OnceLock::new();
    TABLE
        .get_or_init(|| parse(TABLE_TEXT))
        .as_ref()
        .map_err(String::as_str)
}

/// The name the shipped table (current version) gives a value of a field, for `teewatch pin`.
pub fn shipped_name(field: &str, value: &str) -> Option<&'static str> {
    let table = table().ok()?;
    let value = normalize_hex(value)?;
    table
        .rows
        .iter()
        .find(|r| r.field == field && r.value == value && r.in_version(table.version))
        .map(|r| r.name.as_str())
}

/// Parses a table and checks every row: a known field, 96 lowercase hex characters, every text
/// non-empty, versions in order, and no value with two rows in force in the same version.
pub fn parse(text: &str) -> Result<Table, String> {
    let table: Table =
        toml::from_str(text).map_err(|e| format!("expected a known-measurements table: {e}"))?;
    let mut problems = Vec::new();
    if table.version == 0 {
        problems.push("version: expected at least 1, found 0".to_string());
    }
    if table.date.trim().is_empty() {
        problems.push("date: expected the day of the last change, found nothing".to_string());
    }
    // (field, value) → the rows holding it.
    let mut seen: BTreeMap<(&str, &str), Vec<&Row>> = BTreeMap::new();
    for (index, row) in table.rows.iter().enumerate() {
        let at = format!("row[{index}]");
        if !KNOWN_FIELDS.contains(&row.field.as_str()) {
            problems.push(format!(
                "{at}.field: expected one of {}, found \"{}\"",
                KNOWN_FIELDS.join(", "),
                row.field
            ));
        }
        let lower_hex = row.value.len() == 96
            && row
                .value
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !lower_hex {
            problems.push(format!(
                "{at}.value: expected 96 lowercase hex characters, found \"{}\"",
                row.value
            ));
        }
        for (key, text) in [
            ("name", &row.name),
            ("what", &row.what),
            ("source", &row.source),
            ("observed", &row.observed),
        ] {
            if text.trim().is_empty() {
                problems.push(format!("{at}.{key}: expected text, found nothing"));
            }
        }
        if row.since == 0 || row.since > table.version {
            problems.push(format!(
                "{at}.since: expected a version from 1 to {}, found {}",
                table.version, row.since
            ));
        }
        if let Some(w) = row.withdrawn {
            if w <= row.since || w > table.version {
                problems.push(format!(
                    "{at}.withdrawn: expected a version after since ({}) up to {}, found {w}",
                    row.since, table.version
                ));
            }
        }
        seen.entry((row.field.as_str(), row.value.as_str()))
            .or_default()
            .push(row);
    }
    for ((field, value), rows) in &seen {
        let clash =
            (1..=table.version).any(|v| rows.iter().filter(|r| r.in_version(v)).count() > 1);
        if clash {
            let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
            problems.push(format!(
                "{field} {value}: expected one row in force per version, found {} ({})",
                rows.len(),
                names.join(", ")
            ));
        }
    }
    if problems.is_empty() {
        Ok(table)
    } else {
        Err(problems.join("; "))
    }
}

#[cfg(test)]
#[path = "known_tests.rs"]
mod tests;
