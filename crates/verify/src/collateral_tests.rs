//! Tests of the shared collateral validity reading on Intel's real collateral (dcap-qvl's v4
//! sample, compiled in so the pure crate reads no file): every part's window, the PCK CRL as the
//! part that ends first, where each kind of part ends, and a clear error for each part changed
//! to be unreadable.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use super::*;

/// dcap-qvl's real v4 collateral for FMSPC B0C06F000000. Its dates, read with `openssl crl
/// -inform DER -lastupdate -nextupdate` and from the JSON: TCB info 2025-06-19T10:16:03Z to
/// 2025-07-19T10:16:03Z, QE identity 2025-06-19T10:32:27Z to 2025-07-19T10:32:27Z, PCK CRL
/// 2025-06-19T10:00:35Z to 2025-07-19T10:00:35Z, root CA CRL to 2026-04-03T11:21:57Z.
const REAL: &str = include_str!("../../../tests/vectors/tdx/dcap-qvl/tdx_quote_collateral.json");

fn real() -> Value {
    serde_json::from_str(REAL).unwrap()
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

fn part_of(validity: &Validity, part: &str) -> Window {
    validity
        .windows()
        .iter()
        .find(|w| w.part == part)
        .cloned()
        .unwrap_or_else(|| panic!("no window {part} in {:?}", validity.windows()))
}

#[test]
fn real_collateral_expires_first_with_its_pck_crl() {
    let v = validity(&real()).unwrap();
    let parts: Vec<&str> = v.windows().iter().map(|w| w.part.as_str()).collect();
    assert_eq!(
        parts.get(..4),
        Some(&["tcb info", "qe identity", "root ca crl", "pck crl"][..])
    );
    // Then every certificate of the three issuer chains, each named by its subject.
    assert!(
        parts.contains(&"tcb info issuer chain certificate \"Intel SGX TCB Signing\""),
        "{parts:?}"
    );
    assert!(
        parts.contains(&"pck crl issuer chain certificate \"Intel SGX PCK Platform CA\""),
        "{parts:?}"
    );
    assert_eq!(
        part_of(&v, "tcb info"),
        Window {
            part: "tcb info".into(),
            not_before: at("2025-06-19T10:16:03Z"),
            not_after: at("2025-07-19T10:16:03Z"),
            end_included: true,
        }
    );
    assert_eq!(
        part_of(&v, "qe identity").not_after,
        at("2025-07-19T10:32:27Z")
    );
    assert_eq!(
        part_of(&v, "root ca crl").not_after,
        at("2026-04-03T11:21:57Z")
    );
    // The PCK CRL ends 16 minutes before the TCB info: it is what expires first.
    assert_eq!(v.expires_first().part, "pck crl");
    assert_eq!(v.expires_at(), at("2025-07-19T10:00:35Z"));
    // The parsed form reads the same.
    let parsed = QuoteCollateralV3::deserialize(&real()).unwrap();
    assert_eq!(validity_of(&parsed).unwrap(), v);
}

#[test]
fn each_kind_of_part_ends_as_dcap_qvl_judges_it() {
    let v = validity(&real()).unwrap();
    let secs = |t: &str| at(t).timestamp();
    // The TCB info is valid at its nextUpdate second and not after (dcap-qvl's `now >
    // next_update`).
    let tcb_info = part_of(&v, "tcb info");
    assert!(tcb_info.end_included);
    assert!(tcb_info.covers(secs("2025-07-19T10:16:03Z")));
    assert!(!tcb_info.covers(secs("2025-07-19T10:16:04Z")));
    // A CRL has expired at its nextUpdate second (webpki's `time >= next_update`).
    let pck_crl = part_of(&v, "pck crl");
    assert!(!pck_crl.end_included);
    assert!(pck_crl.covers(secs("2025-07-19T10:00:34Z")));
    assert!(!pck_crl.covers(secs("2025-07-19T10:00:35Z")));
    // A certificate is valid at its notAfter second (webpki's `time > not_after`).
    let signer = part_of(
        &v,
        "tcb info issuer chain certificate \"Intel SGX TCB Signing\"",
    );
    assert!(signer.end_included);
    assert!(signer.covers(signer.not_after.timestamp()));
    assert!(!signer.covers(signer.not_after.timestamp() + 1));
    // Every part is valid from its first date on.
    assert!(!tcb_info.covers(secs("2025-06-19T10:16:02Z")));
    assert!(tcb_info.covers(secs("2025-06-19T10:16:03Z")));

    // The whole collateral, and the reasons the verifier gives.
    for inside in [
        "2025-06-19T10:32:27Z",
        "2025-06-25T00:00:00Z",
        "2025-07-19T10:00:34Z",
    ] {
        assert!(v.covers(secs(inside)), "{inside}");
        assert_eq!(
            v.problems_at(secs(inside)),
            Vec::<String>::new(),
            "{inside}"
        );
    }
    assert!(!v.covers(secs("2025-07-19T10:00:35Z")));
    assert_eq!(
        v.problems_at(secs("2025-07-19T10:00:35Z")),
        ["pck crl expired at 2025-07-19T10:00:35Z (observed_at 2025-07-19T10:00:35Z)"]
    );
    // Before the QE identity was issued (the latest issue date), and only that part.
    assert_eq!(
        v.problems_at(secs("2025-06-19T10:32:26Z")),
        ["qe identity not valid until 2025-06-19T10:32:27Z (observed_at 2025-06-19T10:32:26Z)"]
    );
}

#[test]
fn on_the_same_second_a_crl_ends_before_a_part_still_valid_at_it() {
    // The TCB info's nextUpdate moved onto the PCK CRL's (the signature is not read here).
    let same = changed("tcb_info", |t| {
        t.replace("2025-07-19T10:16:03Z", "2025-07-19T10:00:35Z")
    });
    let v = validity(&same).unwrap();
    assert_eq!(v.expires_first().part, "pck crl");
    // One second earlier the TCB info ends first.
    let earlier = changed("tcb_info", |t| {
        t.replace("2025-07-19T10:16:03Z", "2025-07-19T10:00:34Z")
    });
    let v = validity(&earlier).unwrap();
    assert_eq!(
        (v.expires_first().part.as_str(), v.expires_at()),
        ("tcb info", at("2025-07-19T10:00:34Z"))
    );
}

/// The real collateral with the string member `key` passed through `change`.
fn changed(key: &str, change: impl Fn(&str) -> String) -> Value {
    let mut c = real();
    let old = c[key].as_str().unwrap().to_string();
    c[key] = Value::String(change(&old));
    c
}

#[test]
fn each_unreadable_part_is_named() {
    let cases: [(Value, &str, &str); 5] = [
        (
            changed("tcb_info", |t| {
                t.replace("\"nextUpdate\"", "\"nextUpdated\"")
            }),
            "tcb info",
            "has no valid nextUpdate",
        ),
        (
            changed("qe_identity", |t| {
                t.replace("2025-06-19T10:32:27Z", "2025-06-19 10:32:27")
            }),
            "qe identity",
            "has no valid issueDate",
        ),
        (
            changed("tcb_info", |t| format!("{t},")),
            "tcb info",
            "is not json: trailing characters at line 1",
        ),
        (
            changed("pck_crl", |t| format!("00{t}")),
            "pck crl",
            "is not a der crl",
        ),
        (
            changed("qe_identity_issuer_chain", |t| t.replacen("MII", "MIX", 1)),
            "qe identity issuer chain",
            "certificate 0 is not x.509",
        ),
    ];
    for (collateral, part, problem) in cases {
        match validity(&collateral) {
            Err(Error::Part {
                part: p,
                problem: why,
            }) => {
                assert_eq!(p, part);
                assert!(
                    why.starts_with(problem),
                    "{part}: expected {problem:?}, found {why:?}"
                );
            }
            other => panic!("{part}: expected an error naming it, found {other:?}"),
        }
    }
}

#[test]
fn a_value_that_is_not_collateral_is_refused() {
    let mut c = real();
    c.as_object_mut().unwrap().remove("pck_crl");
    let error = validity(&c).unwrap_err();
    assert_eq!(
        error.to_string(),
        "not dcap-qvl collateral: missing field `pck_crl`"
    );
    for value in [
        Value::Null,
        Value::String("x".into()),
        serde_json::json!([]),
    ] {
        assert!(matches!(validity(&value), Err(Error::NotCollateral(_))));
    }
}
