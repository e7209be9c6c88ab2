//! dcap-qvl reports errors as text, and `crates/verify/src/dcap.rs` reads the late ones (those it
//! returns only after every signature verified) by message to put them on the right check. Here
//! dcap-qvl produces each error for real, from a quote and its collateral changed in one place, and
//! the result must land where it belongs:
//!
//! - a forged quote or collateral is a failed `tdx_quote_signature`, whatever the forged text
//!   says (a TCB info rewritten to `Revoked` is a bad signature, not a revoked platform);
//! - a signed TCB level of `Revoked` is `Revoked`; no matching level or module identity is "not
//!   appraisable"; TD attributes dcap-qvl refuses stop the TCB evaluation; in all three the
//!   signatures verified, so `tdx_quote_signature` passes;
//! - collateral for another platform or not covering `observed_at` is `unknown`, never a failure.
//!   teewatch's own checks (`select_collateral`, the validity windows) catch both before
//!   dcap-qvl's "Fmspc mismatch" and "... expired", so those entries of the classifier only guard.
//!
//! The real cases use Intel-signed vectors from `tests/vectors/` under Intel's root. Intel's
//! signing keys are not ours, so the late errors that need a signed change (a Revoked level, other
//! TD attributes, other SVNs) use the simulator's test Intel PKI, whose quotes and collateral are
//! real cryptography under its own root, with one field changed from its healthy default.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use crate::common;

use chrono::DateTime;
use serde_json::Value;
use teewatch::verify::State;
use teewatch::verify::dcap::{CollateralCache, DcapResult, TcbOutcome, verify_quote};
use teewatch::verify::policy::INTEL_SGX_ROOT_CA_DER;
use teewatch_sim::intel::{TcbStatusChoice, TdBody};

/// dcap-qvl's real v4 quote (48-byte header, 584-byte TD 1.0 body, then the 4-byte signature data
/// length and the quote's ECDSA signature) and its Intel-signed collateral, valid at `V4_AT`.
const V4_QUOTE: &str = "tests/vectors/tdx/dcap-qvl/tdx_quote";
const V4_COLLATERAL: &str = "tests/vectors/tdx/dcap-qvl/tdx_quote_collateral.json";
const V4_AT: &str = "2025-06-25T00:00:00Z";
const V4_SIGNATURE: usize = 48 + 584 + 4;

fn bytes(relative: &str) -> Vec<u8> {
    std::fs::read(common::repo_path(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

fn json(relative: &str) -> Value {
    serde_json::from_slice(&bytes(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

fn secs(rfc3339: &str) -> i64 {
    DateTime::parse_from_rfc3339(rfc3339).unwrap().timestamp()
}

/// dcap-qvl through teewatch's wrapper under Intel's root, with a fresh cache.
fn intel(quote: &[u8], collateral: &Value, at: &str) -> DcapResult {
    verify_quote(
        quote,
        Some(collateral),
        INTEL_SGX_ROOT_CA_DER,
        secs(at),
        &CollateralCache::default(),
    )
}

/// A real bundle's quote, collateral and `observed_at`.
fn real_bundle(name: &str) -> (Vec<u8>, Value, String) {
    let bundle = json(&format!("tests/bundles/{name}.json"));
    let quote = hex::decode(bundle["attestation"]["intel_quote"].as_str().unwrap()).unwrap();
    let at = bundle["observed_at"].as_str().unwrap().to_string();
    (quote, bundle["tdx_collateral"].clone(), at)
}

/// Replaces the first occurrence of `from` in the collateral's signed JSON document `field`.
fn edit_document(collateral: &Value, field: &str, from: &str, to: &str) -> Value {
    let text = collateral[field].as_str().unwrap();
    assert!(text.contains(from), "{field} has no {from}");
    let mut changed = collateral.clone();
    changed[field] = Value::String(text.replacen(from, to, 1));
    changed
}

#[track_caller]
fn assert_signature(result: &DcapResult, state: State, contains: &str) {
    let outcome = format!("{:?}", result.signature);
    assert_eq!(result.signature.state(), state, "{outcome}");
    assert!(
        outcome.contains(contains),
        "tdx_quote_signature should say {contains:?}: {outcome}"
    );
}

// ---------------------------------------------------------------------------------------------
// Real vectors under Intel's root
// ---------------------------------------------------------------------------------------------

#[test]
fn the_unchanged_real_quote_verifies_up_to_date() {
    let result = intel(&bytes(V4_QUOTE), &json(V4_COLLATERAL), V4_AT);
    assert_signature(&result, State::Pass, "verify to the intel root");
    assert_eq!(
        result.tcb,
        TcbOutcome::Evaluated {
            status: "UpToDate".into(),
            advisory_ids: vec![]
        }
    );
}

#[test]
fn a_flipped_byte_of_the_quote_signature_is_a_failed_signature() {
    let mut quote = bytes(V4_QUOTE);
    quote[V4_SIGNATURE] ^= 0x01;
    let result = intel(&quote, &json(V4_COLLATERAL), V4_AT);
    assert_signature(&result, State::Fail, "signature");
    assert_eq!(
        result.tcb,
        TcbOutcome::NotEvaluated("tdx_quote_signature failed".into())
    );
}

/// dcap-qvl's message for a forged TCB info names the TCB status text it carries; the forgery is
/// still a bad signature, not a revoked platform.
#[test]
fn a_tcb_info_rewritten_to_revoked_is_a_failed_signature_not_a_revoked_tcb() {
    let collateral = edit_document(
        &json(V4_COLLATERAL),
        "tcb_info",
        "\"tcbStatus\":\"UpToDate\"",
        "\"tcbStatus\":\"Revoked\"",
    );
    let result = intel(&bytes(V4_QUOTE), &collateral, V4_AT);
    assert_signature(&result, State::Fail, "tcb_info");
    assert_eq!(
        result.tcb,
        TcbOutcome::NotEvaluated("tdx_quote_signature failed".into())
    );
}

#[test]
fn a_rewritten_qe_identity_is_a_failed_signature() {
    let collateral = edit_document(
        &json(V4_COLLATERAL),
        "qe_identity",
        "\"id\":\"TD_QE\"",
        "\"id\":\"QE\"",
    );
    let result = intel(&bytes(V4_QUOTE), &collateral, V4_AT);
    assert_signature(&result, State::Fail, "qe_identity");
}

/// go-tdx-guest's real quote meets none of its real TCB info's levels: dcap-qvl stops with "No
/// matching TCB level found" after every signature verified.
#[test]
fn a_real_quote_without_a_matching_tcb_level_is_not_appraisable() {
    let (quote, collateral, at) = real_bundle("gotdxguest-no-tcb-level");
    let result = intel(&quote, &collateral, &at);
    assert_signature(&result, State::Pass, "verify to the intel root");
    match &result.tcb {
        TcbOutcome::NotAppraisable(why) => {
            assert!(why.contains("no matching tcb level found"), "{why}")
        }
        other => panic!("expected not appraisable, got {other:?}"),
    }
}

#[test]
fn real_collateral_after_its_next_update_is_unknown() {
    // The same quote and collateral as the control, one instant later: after nextUpdate.
    let result = intel(
        &bytes(V4_QUOTE),
        &json(V4_COLLATERAL),
        "2025-09-01T00:00:00Z",
    );
    assert_signature(
        &result,
        State::Unknown,
        "collateral does not cover observed_at: tcb info expired at 2025-07-19T10:16:03Z",
    );
    // And before the TCB info was issued.
    let result = intel(
        &bytes(V4_QUOTE),
        &json(V4_COLLATERAL),
        "2025-06-01T00:00:00Z",
    );
    assert_signature(
        &result,
        State::Unknown,
        "tcb info not valid until 2025-06-19T10:16:03Z",
    );
}

#[test]
fn real_collateral_of_another_platform_is_unknown() {
    // dcap-qvl's SGX quote's collateral (FMSPC 00A067110000) beside the TDX quote (B0C06F000000).
    let other = json("tests/vectors/tdx/dcap-qvl/sgx_quote_collateral.json");
    let result = intel(&bytes(V4_QUOTE), &other, V4_AT);
    assert_signature(
        &result,
        State::Unknown,
        "no collateral for fmspc b0c06f000000: the bundle has collateral for [00a067110000]",
    );
}

// ---------------------------------------------------------------------------------------------
// The simulator's test Intel PKI: late errors that need a signed change
// ---------------------------------------------------------------------------------------------

/// dcap-qvl on a test quote of `body` with the collateral whose level has `status`.
fn simulated(body: &TdBody, status: TcbStatusChoice) -> DcapResult {
    let (pki, now) = common::intel_test_pki();
    verify_quote(
        &pki.quote_v4(body).unwrap(),
        Some(&pki.collateral(status).unwrap()),
        pki.root_der(),
        now.timestamp(),
        &CollateralCache::default(),
    )
}

#[test]
fn the_unchanged_test_quote_verifies_up_to_date() {
    let result = simulated(&TdBody::default(), TcbStatusChoice::UpToDate);
    assert_signature(&result, State::Pass, "verify to the intel root");
    assert!(
        matches!(&result.tcb, TcbOutcome::Evaluated { status, .. } if status == "UpToDate"),
        "{:?}",
        result.tcb
    );
}

#[test]
fn a_signed_revoked_level_is_revoked_after_the_signatures() {
    let result = simulated(&TdBody::default(), TcbStatusChoice::Revoked);
    assert_signature(&result, State::Pass, "verify to the intel root");
    assert_eq!(result.tcb, TcbOutcome::Revoked);
}

#[test]
fn svns_below_every_level_are_not_appraisable() {
    let mut body = TdBody::default();
    // TDX component 2 under every level of the test TCB info (which requires 3).
    body.tee_tcb_svn[2] = 0;
    let result = simulated(&body, TcbStatusChoice::UpToDate);
    assert_signature(&result, State::Pass, "verify to the intel root");
    match &result.tcb {
        TcbOutcome::NotAppraisable(why) => {
            assert!(why.contains("no matching tcb level found"), "{why}")
        }
        other => panic!("expected not appraisable, got {other:?}"),
    }
}

/// The TDX module the TD reports must be one the TCB info knows, at a level it lists. Both are
/// judged after every signature verified (dcap-qvl's "TDX module TCB level check"): the TCB cannot
/// be appraised, which is not a forged quote.
#[test]
fn a_tdx_module_the_tcb_info_does_not_cover_is_not_appraisable() {
    // (what, TEE_TCB_SVN byte, value, dcap-qvl's message)
    let cases = [
        // TEE_TCB_SVN[1] is the module version; the test TCB info knows versions 1 and 3.
        (
            "module version 5",
            1,
            5,
            "no tdx module identity with id tdx_05 found in tcb info",
        ),
        // TEE_TCB_SVN[0] is the module's ISVSVN; version 1's levels start at 4.
        (
            "module isvsvn 3",
            0,
            3,
            "tdx module isvsvn 3 is below minimum required",
        ),
    ];
    for (what, byte, value, message) in cases {
        let mut body = TdBody::default();
        body.tee_tcb_svn[byte] = value;
        let result = simulated(&body, TcbStatusChoice::UpToDate);
        assert_signature(&result, State::Pass, "verify to the intel root");
        match &result.tcb {
            TcbOutcome::NotAppraisable(why) => assert!(
                why.contains("tdx module tcb level check") && why.contains(message),
                "{what}: {why}"
            ),
            other => panic!("{what}: expected not appraisable, got {other:?}"),
        }
    }
}

/// Each TD attribute dcap-qvl refuses (debug and profiling are allowed here so that the TCB
/// status is still reported; `tdx_debug_disabled` judges them): the signatures verified and the
/// TCB evaluation stopped at the attributes, naming dcap-qvl's reason.
#[test]
fn td_attributes_dcap_qvl_refuses_stop_the_tcb_evaluation() {
    // (what, byte, value of that byte of TD_ATTRIBUTES, dcap-qvl's message)
    let cases = [
        (
            "SEPT_VE_DISABLE clear",
            3,
            0x00,
            "sept_ve_disable is not enabled",
        ),
        ("migratable", 3, 0x30, "td migration is enabled"),
        ("SERVTD_EXT", 2, 0x02, "servtd_ext is enabled"),
        (
            "reserved bit 8",
            1,
            0x01,
            "reserved bits in td attributes are set",
        ),
    ];
    for (what, byte, value, message) in cases {
        let mut body = TdBody::default();
        body.td_attributes[byte] = value;
        let result = simulated(&body, TcbStatusChoice::UpToDate);
        assert_signature(&result, State::Pass, "verify to the intel root");
        match &result.tcb {
            TcbOutcome::NotEvaluated(why) => assert!(
                why.starts_with("dcap-qvl stopped at the td attributes") && why.contains(message),
                "{what}: {why}"
            ),
            other => panic!("{what}: expected the evaluation to stop, got {other:?}"),
        }
    }
}
