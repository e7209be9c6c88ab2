//! `mrseam` and `mrtd` judged against the known-measurements table: only the quote's own
//! registers, under a verified signature, can pass; a claim, a forged quote or a value outside
//! the table never does.

use super::*;
use crate::known::{ExtraRow, KnownUse};

const MODULE_1_5_16: &str = "7bf063280e94fb051f5dd7b1fc59ce9aac42bb961df8d44b709c9b0ff87a7b4df648657ba6d1189589feab1d5a3c9a9d";
const MODULE_1_5_06: &str = "5b38e33a6487958b72c3c12a938eaa5e3fd4510c51aeeab58c7d5ecee41d7c436489d6c8e4f92f160b7cad34207b00c1";

fn check(name: &str, state: State) -> Check {
    Check {
        name: name.to_string(),
        scope: String::new(),
        state,
        reason: String::new(),
    }
}

fn seen(field: &str, value: &str, source: Source) -> Observed {
    Observed {
        scope: String::new(),
        field: field.to_string(),
        value: value.to_string(),
        source,
    }
}

fn verified() -> Vec<Check> {
    vec![
        check(checks::TDX_QUOTE_PARSE, State::Pass),
        check(checks::TDX_QUOTE_SIGNATURE, State::Pass),
    ]
}

fn table() -> KnownUse {
    KnownUse::current().unwrap_or_else(|| panic!("the shipped table parses"))
}

#[test]
fn a_known_module_passes_by_name() {
    let known = table();
    let outcome = judge_known(
        "mrseam",
        "",
        &known,
        &verified(),
        &[seen("mrseam", MODULE_1_5_16, Source::Quote)],
    );
    assert_eq!(
        outcome,
        Outcome::Pass(format!(
            "TDX module 1.5.16 (known-measurements table v{}): {MODULE_1_5_16} (quote)",
            known.version
        ))
    );
}

#[test]
fn a_module_outside_the_table_fails_as_unknown() {
    let known = table();
    let outcome = judge_known(
        "mrseam",
        "",
        &known,
        &verified(),
        &[seen("mrseam", MODULE_1_5_06, Source::Quote)],
    );
    assert_eq!(
        outcome,
        Outcome::Fail(format!(
            "unknown tdx module: expected one of the 4 known (table v{}), found {MODULE_1_5_06} (quote)",
            known.version
        ))
    );
}

#[test]
fn a_known_value_only_claimed_never_passes() {
    // The report's info or vm_config says 1.5.16; the quote says nothing.
    let outcome = judge_known(
        "mrseam",
        "",
        &table(),
        &verified(),
        &[seen("mrseam", MODULE_1_5_16, Source::Claim)],
    );
    assert_eq!(
        outcome,
        Outcome::Fail(format!(
            "mrseam is only claimed by the report ({MODULE_1_5_16}), not proven by the quote or the replayed event log"
        ))
    );
    // Nor does a claimed known value rescue an unknown proven one.
    let outcome = judge_known(
        "mrseam",
        "",
        &table(),
        &verified(),
        &[
            seen("mrseam", MODULE_1_5_06, Source::Quote),
            seen("mrseam", MODULE_1_5_16, Source::Claim),
        ],
    );
    assert!(matches!(outcome, Outcome::Fail(r) if r.starts_with("unknown tdx module")));
}

#[test]
fn a_known_value_in_a_forged_quote_is_unknown() {
    let mut checks = verified();
    if let Some(signature) = checks.last_mut() {
        signature.state = State::Fail;
    }
    let outcome = judge_known(
        "mrseam",
        "",
        &table(),
        &checks,
        &[seen("mrseam", MODULE_1_5_16, Source::Quote)],
    );
    assert_eq!(
        outcome,
        Outcome::Unknown(
            "quote not verified: mrseam comes from a quote whose tdx_quote_signature did not pass"
                .to_string()
        )
    );
}

#[test]
fn an_extra_row_passes_with_its_name_and_a_newer_table_is_unknown() {
    let mut known = table();
    known.extra.push(ExtraRow {
        field: "mrseam".into(),
        value: MODULE_1_5_06.to_ascii_uppercase(),
        name: "our lab host".into(),
    });
    let outcome = judge_known(
        "mrseam",
        "",
        &known,
        &verified(),
        &[seen("mrseam", MODULE_1_5_06, Source::Quote)],
    );
    assert!(
        matches!(&outcome, Outcome::Pass(r) if r.starts_with("our lab host (known-measurements table v")),
        "{outcome:?}"
    );
    known.version += 1;
    let outcome = judge_known(
        "mrseam",
        "",
        &known,
        &verified(),
        &[seen("mrseam", MODULE_1_5_06, Source::Quote)],
    );
    assert!(
        matches!(&outcome, Outcome::Unknown(r) if r.contains("this binary has v")),
        "{outcome:?}"
    );
}
