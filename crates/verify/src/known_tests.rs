//! The shipped known-measurements table parses, every row is well-formed and sourced, and each
//! malformed row is refused with its own reason.

use super::*;

const GOOD_ROW: &str = r#"
[[row]]
field = "mrseam"
value = "7bf063280e94fb051f5dd7b1fc59ce9aac42bb961df8d44b709c9b0ff87a7b4df648657ba6d1189589feab1d5a3c9a9d"
name = "TDX module 1.5.16"
what = "a module"
source = "REFERENCE.md"
observed = "2026"
since = 1
"#;

fn table_with(version: u32, rows: &str) -> String {
    format!("version = {version}\ndate = \"2026-12-06\"\n{rows}")
}

#[test]
fn the_shipped_table_parses_and_every_row_is_sourced() {
    let table = table().unwrap_or_else(|e| panic!("{e}"));
    assert!(table.version >= 1);
    assert_eq!(
        table.rows.len(),
        6,
        "the four modules and two images of REFERENCE.md §2"
    );
    for row in &table.rows {
        assert!(KNOWN_FIELDS.contains(&row.field.as_str()), "{row:?}");
        assert_eq!(row.value.len(), 96, "{row:?}");
        assert!(!row.source.trim().is_empty() && !row.observed.trim().is_empty());
    }
    // No value carries two names.
    let mut names: BTreeMap<(&str, &str), &str> = BTreeMap::new();
    for row in table.rows.iter().filter(|r| r.in_version(table.version)) {
        let before = names.insert((&row.field, &row.value), &row.name);
        assert!(before.is_none(), "{} has two names", row.value);
    }
}

#[test]
fn reference_values_carry_their_names() {
    let name = |field, value| shipped_name(field, value);
    assert_eq!(
        name(
            "mrseam",
            "0x7BF063280E94FB051F5DD7B1FC59CE9AAC42BB961DF8D44B709C9B0FF87A7B4DF648657BA6D1189589FEAB1D5A3C9A9D"
        ),
        Some("TDX module 1.5.16")
    );
    assert_eq!(
        name(
            "mrtd",
            "f06dfda6dce1cf904d4e2bab1dc370634cf95cefa2ceb2de2eee127c9382698090d7a4a13e14c536ec6c9c3c8fa87077"
        ),
        Some("dstack-nvidia-0.5.5 (NEAR gateway)")
    );
    // A module value is not an image: the field is part of the key.
    assert_eq!(
        name(
            "mrtd",
            "7bf063280e94fb051f5dd7b1fc59ce9aac42bb961df8d44b709c9b0ff87a7b4df648657ba6d1189589feab1d5a3c9a9d"
        ),
        None
    );
}

#[test]
fn a_good_row_parses() {
    let table = parse(&table_with(1, GOOD_ROW)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(table.rows.len(), 1);
}

#[test]
fn each_malformed_row_is_refused_with_its_reason() {
    let cases: [(&str, String, &str); 7] = [
        (
            "short value",
            GOOD_ROW.replace("3c9a9d\"", "3c9a9\""),
            "row[0].value: expected 96 lowercase hex characters",
        ),
        (
            "upper-case value",
            GOOD_ROW.replace("7bf06328", "7BF06328"),
            "row[0].value: expected 96 lowercase hex characters",
        ),
        (
            "unknown field",
            GOOD_ROW.replace("field = \"mrseam\"", "field = \"rtmr0\""),
            "row[0].field: expected one of mrseam, mrtd, found \"rtmr0\"",
        ),
        (
            "no source",
            GOOD_ROW.replace("source = \"REFERENCE.md\"", "source = \" \""),
            "row[0].source: expected text, found nothing",
        ),
        (
            "added after the table's version",
            GOOD_ROW.replace("since = 1", "since = 2"),
            "row[0].since: expected a version from 1 to 1, found 2",
        ),
        (
            "withdrawn before it was added",
            GOOD_ROW.replace("since = 1", "since = 1\nwithdrawn = 1"),
            "row[0].withdrawn: expected a version after since (1) up to 1, found 1",
        ),
        (
            "one value with two names",
            format!("{GOOD_ROW}{}", GOOD_ROW.replace("1.5.16", "1.5.99")),
            "expected one row in force per version, found 2 (TDX module 1.5.16, TDX module 1.5.99)",
        ),
    ];
    for (what, rows, expected) in cases {
        let error = parse(&table_with(1, &rows)).err().unwrap_or_default();
        assert!(error.contains(expected), "{what}: {error}");
    }
    let unknown_key = parse(&table_with(
        1,
        &GOOD_ROW.replace("since = 1", "since = 1\nvm = 1"),
    ));
    assert!(
        unknown_key.is_err_and(|e| e.contains("unknown field `vm`")),
        "unknown keys are refused"
    );
}

#[test]
fn a_renamed_row_is_withdrawn_not_edited_and_old_versions_keep_their_name() {
    let renamed = format!(
        "{}{}",
        GOOD_ROW.replace("since = 1", "since = 1\nwithdrawn = 2"),
        GOOD_ROW
            .replace("1.5.16", "1.5.16 (renamed)")
            .replace("since = 1", "since = 2")
    );
    let table = parse(&table_with(2, &renamed)).unwrap_or_else(|e| panic!("{e}"));
    let in_force = |v: u32| -> Vec<&str> {
        table
            .rows
            .iter()
            .filter(|r| r.in_version(v))
            .map(|r| r.name.as_str())
            .collect()
    };
    assert_eq!(in_force(1), ["TDX module 1.5.16"]);
    assert_eq!(in_force(2), ["TDX module 1.5.16 (renamed)"]);
}

#[test]
fn candidates_add_extra_rows_and_refuse_a_newer_version() {
    let mut use_ = KnownUse::current().unwrap_or_else(|| panic!("the shipped table parses"));
    use_.extra.push(ExtraRow {
        field: "mrtd".into(),
        value: format!("0x{}", "ab".repeat(48)),
        name: "my image".into(),
    });
    assert!(use_.problems().is_empty());
    let mrtd = use_.candidates("mrtd").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(mrtd.rows.len(), 3);
    assert_eq!(mrtd.name_of(&"AB".repeat(48)), Some("my image"));
    assert_eq!(
        mrtd.describe(),
        format!("the 3 known (table v{})", use_.version)
    );
    assert_eq!(use_.candidates("mrseam").map(|c| c.rows.len()), Ok(4));

    let newer = KnownUse {
        version: use_.version + 1,
        extra: Vec::new(),
    };
    let error = newer.candidates("mrtd").err().unwrap_or_default();
    assert!(error.contains("was used, and this binary has"), "{error}");
}

#[test]
fn bad_extra_rows_are_named() {
    let use_ = KnownUse {
        version: 1,
        extra: vec![ExtraRow {
            field: "rtmr3".into(),
            value: "00".into(),
            name: " ".into(),
        }],
    };
    let problems: Vec<String> = use_
        .problems()
        .into_iter()
        .map(|(p, m)| format!("{p}: {m}"))
        .collect();
    assert_eq!(
        problems,
        [
            "known_extra[0].field: expected one of mrseam, mrtd, found \"rtmr3\"",
            "known_extra[0].value: expected 96 hex characters (48 bytes), found \"00\"",
            "known_extra[0].name: expected a name, found an empty string",
        ]
    );
}

#[test]
fn only_table_pass_reasons_carry_names() {
    let c = Candidates {
        version: 1,
        rows: Vec::new(),
    };
    let reason = format!("{}: 7bf0… (quote)", c.pass_prefix(&["TDX module 1.5.16"]));
    assert_eq!(names_in_reason(&reason), Some("TDX module 1.5.16"));
    assert_eq!(names_in_reason("7bf0… (quote) is allowed"), None);
}
