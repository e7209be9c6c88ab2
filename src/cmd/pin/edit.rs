//! The pin blocks as TOML, and `--write`: setting them in one `[[target]]` of a configuration
//! file with `toml_edit`, so every comment and the layout survive, then replacing the file
//! atomically once the result validates.
//!
//! Each allowlist is written one value a line with a comment giving the day the evidence was
//! observed and the check that proved the value. The printed block and the written one come from
//! the same text, so what the operator reviews is what lands in the file. A field whose old
//! allowlist already holds exactly the new values is left as it was, comments included.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use teewatch::verify::pins::PinTable;
use teewatch::verify::policy::{PinKind, normalize_hex, pin_field};
use toml_edit::{DocumentMut, Item, Table, TableLike, Value};

use super::rule::{Block, FieldPins};

/// Why the configuration could not be edited; nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a TOML document toml_edit can edit: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: no [[target]] named \"{target}\" written as a [[target]] table")]
    NoTarget { path: PathBuf, target: String },
    #[error("{path}: target \"{target}\": {table} is not a table")]
    NotATable {
        path: PathBuf,
        target: String,
        table: &'static str,
    },
    #[error("internal: the pin text for {field} does not parse as TOML: {message}")]
    Render { field: String, message: String },
    #[error("{path}: cannot write: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the edited configuration does not validate, so {path} was left unchanged:\n{message}")]
    Invalid { path: PathBuf, message: String },
}

impl EditError {
    /// 78 when the configuration cannot be edited as asked, 70 when writing failed or the
    /// edit would have made it invalid (a bug: the file was valid and the values verified).
    pub fn exit_code(&self) -> u8 {
        match self {
            EditError::Read { .. }
            | EditError::Parse { .. }
            | EditError::NoTarget { .. }
            | EditError::NotATable { .. } => teewatch::exit::CONFIG,
            EditError::Render { .. } | EditError::Write { .. } | EditError::Invalid { .. } => {
                teewatch::exit::SOFTWARE
            }
        }
    }
}

/// The key of a table inside `[[target]]`.
pub fn table_key(table: PinTable) -> &'static str {
    match table {
        PinTable::Model => "pins",
        PinTable::Gateway => "gateway_pins",
    }
}

/// The TOML string for a value, quoted and escaped.
fn quoted(value: &str) -> String {
    Value::from(value).to_string().trim().to_string()
}

/// The allowlist as a TOML array, one value a line with its comment: the day, the check that
/// proved it, and (when the field has several values) the parts that showed it.
pub fn array_text(field: &FieldPins, date: &str) -> String {
    let several = field.values.len() > 1;
    let mut out = String::from("[\n");
    for v in &field.values {
        let mut comment = format!("{date}, {}", v.provenance);
        if several {
            comment.push_str(&format!(", on {}", v.scopes.join(" ")));
        }
        if let Some(name) = &v.name {
            comment.push_str(&format!(", {name}"));
        }
        out.push_str(&format!("    {}, # {comment}\n", quoted(&v.value)));
    }
    out.push(']');
    out
}

/// A block as printed: the table header and one allowlist per field.
pub fn block_text(block: &Block, date: &str) -> String {
    let mut out = format!("[target.{}]\n", table_key(block.table));
    for field in &block.fields {
        out.push_str(&format!("{} = {}\n", field.field, array_text(field, date)));
    }
    out
}

/// One field's allowlist before and after `--write`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub table: &'static str,
    pub field: String,
    /// `None` when the field was not pinned.
    pub old: Option<Vec<String>>,
    pub new: Vec<String>,
}

impl Change {
    pub fn changed(&self) -> bool {
        self.old
            .as_ref()
            .is_none_or(|old| !same_values(&self.field, old, &self.new))
    }
}

/// Whether two allowlists of a field accept the same values (hex compared as bytes, in any
/// order).
pub fn same_values(field: &str, a: &[String], b: &[String]) -> bool {
    same_set(field, a) == same_set(field, b)
}

/// The values of an allowlist as compared by the verifier (hex as lower-case bytes), as a set.
fn same_set(field: &str, values: &[String]) -> std::collections::BTreeSet<String> {
    let hex = pin_field(field).is_some_and(|f| f.name == "gpu_block" || f.kind != PinKind::Text);
    values
        .iter()
        .map(|v| {
            if hex {
                normalize_hex(v).unwrap_or_else(|| v.clone())
            } else {
                v.clone()
            }
        })
        .collect()
}

/// The strings of an existing pin item (a string or an array of strings).
fn old_values(item: &Item) -> Vec<String> {
    match item.as_value() {
        Some(Value::String(s)) => vec![s.value().clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| match v.as_str() {
                Some(s) => s.to_string(),
                None => v.to_string().trim().to_string(),
            })
            .collect(),
        Some(other) => vec![other.to_string().trim().to_string()],
        None => Vec::new(),
    }
}

/// Sets every field of the blocks in the `[[target]]` named `target` of `text`, creating the
/// tables if missing and leaving every other key, table and target as it was. Returns the new
/// text and one change per field (changed or not).
pub fn apply(
    path: &Path,
    text: &str,
    target: &str,
    blocks: &[Block],
    date: &str,
) -> Result<(String, Vec<Change>), EditError> {
    let mut doc: DocumentMut =
        text.parse()
            .map_err(|e: toml_edit::TomlError| EditError::Parse {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
    let no_target = || EditError::NoTarget {
        path: path.to_path_buf(),
        target: target.to_string(),
    };
    let entry = doc
        .get_mut("target")
        .and_then(Item::as_array_of_tables_mut)
        .and_then(|targets| {
            targets
                .iter_mut()
                .find(|t| t.get("name").and_then(Item::as_str) == Some(target))
        })
        .ok_or_else(no_target)?;
    let mut changes = Vec::new();
    for block in blocks {
        let key = table_key(block.table);
        if !entry.contains_key(key) {
            let mut table = Table::new();
            table.decor_mut().set_prefix("\n");
            entry.insert(key, Item::Table(table));
        }
        let table: &mut dyn TableLike = entry
            .get_mut(key)
            .and_then(Item::as_table_like_mut)
            .ok_or_else(|| EditError::NotATable {
                path: path.to_path_buf(),
                target: target.to_string(),
                table: key,
            })?;
        for field in &block.fields {
            let change = Change {
                table: key,
                field: field.field.clone(),
                old: table.get(&field.field).map(old_values),
                new: field.values.iter().map(|v| v.value.clone()).collect(),
            };
            if change.changed() {
                set_field(table, field, date)?;
            }
            changes.push(change);
        }
    }
    Ok((doc.to_string(), changes))
}

/// Replaces (or adds) one allowlist, keeping the old value's surrounding whitespace and comment.
fn set_field(table: &mut dyn TableLike, field: &FieldPins, date: &str) -> Result<(), EditError> {
    let mut value: Value = array_text(field, date)
        .parse()
        .map_err(|e: toml_edit::TomlError| EditError::Render {
            field: field.field.clone(),
            message: e.to_string(),
        })?;
    match table.get_mut(&field.field) {
        Some(item) => {
            if let Some(old) = item.as_value() {
                *value.decor_mut() = old.decor().clone();
            }
            *item = Item::Value(value);
        }
        None => {
            table.insert(&field.field, Item::Value(value));
        }
    }
    Ok(())
}

/// Writes `text` over `path` atomically: a temporary file beside it with the same permissions,
/// checked by `validate` (the project's own loader) before it is renamed over the original. A
/// symbolic link is followed, so the file it names is replaced, not the link.
pub fn write_atomically(
    path: &Path,
    text: &str,
    validate: impl FnOnce(&Path) -> Result<(), String>,
) -> Result<(), EditError> {
    let write_error = |source| EditError::Write {
        path: path.to_path_buf(),
        source,
    };
    let real = std::fs::canonicalize(path).map_err(write_error)?;
    let permissions = std::fs::metadata(&real).map_err(write_error)?.permissions();
    let dir = real.parent().unwrap_or(Path::new("."));
    let name = real
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(".{name}.teewatch-pin.{}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .map_err(write_error)?;
        file.set_permissions(permissions).map_err(write_error)?;
        file.write_all(text.as_bytes()).map_err(write_error)?;
        file.sync_all().map_err(write_error)?;
        drop(file);
        validate(&temp).map_err(|message| EditError::Invalid {
            path: path.to_path_buf(),
            message,
        })?;
        std::fs::rename(&temp, &real).map_err(write_error)?;
        // Make the rename itself durable; a failure here does not undo it.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::super::rule::PinValue;
    use super::*;

    const MRTD_A: &str = "76907bca005fae87dfdc29423338b38efdc4390c68f2db2b766dfb5c28594e7da528aae9cb3bbc5d2cad36c76d0dd43c";
    const MRTD_B: &str = "1528f902a462b3eabcc6663cefe58597c2ca43d40cbd454f0172df4e43481e929bbcf7ccb724388b5038dff3da36356e";

    fn field(name: &str, values: &[&str], provenance: &str) -> FieldPins {
        FieldPins {
            field: name.to_string(),
            values: values
                .iter()
                .enumerate()
                .map(|(i, v)| PinValue {
                    value: v.to_string(),
                    provenance: provenance.to_string(),
                    scopes: vec![format!("model:{i}")],
                    name: None,
                })
                .collect(),
        }
    }

    fn model_block() -> Block {
        Block {
            table: PinTable::Model,
            fields: vec![
                field("mrtd", &[MRTD_A, MRTD_B], "tdx_quote_signature"),
                field(
                    "gpu_driver_version",
                    &["570.172.08"],
                    "gpu_evidence_signature",
                ),
            ],
        }
    }

    const CONFIG: &str = r#"# the fleet
[daemon]
db = "x.db" # beside the file

[[target]]
name = "other"
[target.pins]
mrtd = ["00"] # untouched

[[target]]
# the one we pin
name = "mine"
model = "m"

[target.canary]
max_tokens = 8 # short

# trailing comment
"#;

    #[test]
    fn the_printed_block_is_commented_toml() {
        let text = block_text(&model_block(), "2026-12-06");
        assert_eq!(
            text,
            format!(
                "[target.pins]\nmrtd = [\n    \"{MRTD_A}\", # 2026-12-06, tdx_quote_signature, on model:0\n    \"{MRTD_B}\", # 2026-12-06, tdx_quote_signature, on model:1\n]\ngpu_driver_version = [\n    \"570.172.08\", # 2026-12-06, gpu_evidence_signature\n]\n"
            )
        );
        let parsed: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(parsed["target"]["pins"]["mrtd"][1].as_str(), Some(MRTD_B));
    }

    #[test]
    fn a_value_the_known_measurements_table_names_carries_its_name() {
        let mut mrtd = field("mrtd", &[MRTD_A], "tdx_quote_signature");
        if let Some(v) = mrtd.values.first_mut() {
            v.name = Some("dstack-nvidia-0.5.5 (NEAR gateway)".into());
        }
        assert_eq!(
            array_text(&mrtd, "2026-12-06"),
            format!(
                "[\n    \"{MRTD_A}\", # 2026-12-06, tdx_quote_signature, dstack-nvidia-0.5.5 (NEAR gateway)\n]"
            )
        );
    }

    #[test]
    fn missing_tables_are_created_in_the_named_target_only() {
        let gateway = Block {
            table: PinTable::Gateway,
            fields: vec![field("mrtd", &[MRTD_B], "tdx_quote_signature")],
        };
        let (text, changes) = apply(
            Path::new("c.toml"),
            CONFIG,
            "mine",
            &[model_block(), gateway],
            "2026-12-06",
        )
        .unwrap();
        // Every original line survives, in order.
        let mut rest = text.as_str();
        for line in CONFIG.lines().filter(|l| !l.is_empty()) {
            let at = rest
                .find(line)
                .unwrap_or_else(|| panic!("{line:?} lost:\n{text}"));
            rest = &rest[at + line.len()..];
        }
        let parsed: toml::Table = toml::from_str(&text).unwrap();
        let targets = parsed["target"].as_array().unwrap();
        assert_eq!(targets[0]["pins"]["mrtd"][0].as_str(), Some("00"));
        assert!(targets[0].get("gateway_pins").is_none());
        assert_eq!(targets[1]["pins"]["mrtd"].as_array().unwrap().len(), 2);
        assert_eq!(targets[1]["gateway_pins"]["mrtd"][0].as_str(), Some(MRTD_B));
        assert_eq!(targets[1]["canary"]["max_tokens"].as_integer(), Some(8));
        // The new tables sit inside the target, before the file's trailing comment.
        assert!(text.find("[target.gateway_pins]").unwrap() < text.find("# trailing").unwrap());
        assert!(text.contains("    \"570.172.08\", # 2026-12-06, gpu_evidence_signature\n"));
        assert_eq!(changes.len(), 3);
        assert!(changes.iter().all(|c| c.old.is_none() && c.changed()));
    }

    #[test]
    fn an_existing_pin_is_replaced_keeping_its_comments_and_an_equal_one_is_kept() {
        let config = format!(
            "[[target]]\nname = \"mine\"\n\n[target.pins]\n# the os\nmrtd = \"0x{}\" # old\nkey_provider = [\"kms\"]\ngpu_driver_version = [\"570.172.08\"] # reviewed\n",
            "00".repeat(48)
        );
        let (text, changes) = apply(
            Path::new("c.toml"),
            &config,
            "mine",
            &[model_block()],
            "2026-12-06",
        )
        .unwrap();
        assert!(text.contains("# the os\nmrtd = [\n"), "{text}");
        assert!(text.contains("] # old\n"), "{text}");
        assert!(text.contains("key_provider = [\"kms\"]\n"));
        // Already exactly these values: left as written, comment included.
        assert!(text.contains("gpu_driver_version = [\"570.172.08\"] # reviewed\n"));
        assert_eq!(changes[0].old, Some(vec![format!("0x{}", "00".repeat(48))]));
        assert!(changes[0].changed());
        assert!(!changes[1].changed());
        // The same values again change nothing.
        let (again, changes) = apply(
            Path::new("c.toml"),
            &text,
            "mine",
            &[model_block()],
            "2026-12-07",
        )
        .unwrap();
        assert_eq!(again, text);
        assert!(changes.iter().all(|c| !c.changed()));
        // Hex compares as bytes: upper case and 0x are the same pin.
        let upper = Change {
            table: "pins",
            field: "mrtd".into(),
            old: Some(vec![format!("0X{}", MRTD_A.to_uppercase())]),
            new: vec![MRTD_A.to_string()],
        };
        assert!(!upper.changed());
    }

    #[test]
    fn pins_written_inline_or_dotted_are_edited_in_place() {
        for config in [
            "[[target]]\nname = \"mine\"\npins = { key_provider = [\"kms\"] }\n",
            "[[target]]\nname = \"mine\"\npins.key_provider = [\"kms\"]\n",
        ] {
            let (text, _) = apply(
                Path::new("c.toml"),
                config,
                "mine",
                &[model_block()],
                "2026-12-06",
            )
            .unwrap();
            let parsed: toml::Table =
                toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
            let pins = &parsed["target"][0]["pins"];
            assert_eq!(pins["key_provider"][0].as_str(), Some("kms"));
            assert_eq!(pins["mrtd"][0].as_str(), Some(MRTD_A), "{text}");
        }
    }

    #[test]
    fn an_unknown_target_or_a_pins_value_that_is_no_table_is_an_error() {
        let err = apply(Path::new("c.toml"), CONFIG, "nobody", &[model_block()], "d");
        assert!(matches!(err, Err(EditError::NoTarget { .. })));
        let err = apply(
            Path::new("c.toml"),
            "[[target]]\nname = \"mine\"\npins = 3\n",
            "mine",
            &[model_block()],
            "d",
        );
        assert!(matches!(err, Err(EditError::NotATable { .. })));
    }

    #[test]
    fn the_file_is_replaced_only_once_it_validates_and_keeps_its_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("teewatch-pin-edit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(&path, "old\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let refused = write_atomically(&path, "new\n", |_| Err("bad".into()));
        assert!(matches!(refused, Err(EditError::Invalid { .. })));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old\n");
        let mut seen = None;
        write_atomically(&path, "new\n", |temp| {
            seen = Some(std::fs::read_to_string(temp).unwrap());
            Ok(())
        })
        .unwrap();
        assert_eq!(seen.as_deref(), Some("new\n"));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o640);
        // Nothing but the file is left behind.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
