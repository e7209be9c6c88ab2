//! Collateral whose PCK CRL expires first, read the same way by all three places that judge
//! collateral validity (issue 17 item 4): the collateral cache refreshes on the PCK CRL's
//! `nextUpdate`, the expiry metric shows it, and the verifier judges a quote observed after it
//! `unknown` with a reason naming the PCK CRL.
//!
//! The collateral is Intel's real one, unchanged: dcap-qvl's v4 sample for FMSPC B0C06F000000,
//! whose PCK CRL (`nextUpdate` 2025-07-19T10:00:35Z) ends 16 minutes before its TCB info
//! (10:16:03) and 32 before its QE identity (10:32:27). A reading that skipped the CRLs would put
//! the end at the TCB info's date, so each assertion between 10:00:35 and 10:16:03 tells the
//! readings apart. CRLs are signed by Intel, so no date of them can be changed; the one field
//! changed here is the bundle's `observed_at`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::PathBuf;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;
use teewatch::fetch::collateral_cache::CollateralCache;
use teewatch::metrics::{Metrics, collateral_expiries};
use teewatch::verify::collateral::validity;
use teewatch::verify::policy::INTEL_SGX_ROOT_CA_DER;
use teewatch::verify::{self, Bundle, Policy, State, TrustAnchors};

const FMSPC: &str = "b0c06f000000";
/// The PCK CRL's `nextUpdate`: the end of the whole collateral.
const PCK_CRL_END: &str = "2025-07-19T10:00:35Z";
/// The TCB info's `nextUpdate`, where a reading without the CRLs would put the end.
const TCB_INFO_END: &str = "2025-07-19T10:16:03Z";
/// `[intel] collateral_refresh` by default.
const DAY: StdDuration = StdDuration::from_secs(24 * 3600);

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

/// The real bundle around dcap-qvl's v4 quote and its collateral (`tests/bundles/`).
fn bundle_json() -> Value {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/bundles/dcapqvl-v4-uptodate.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn collateral() -> Value {
    bundle_json()["tdx_collateral"].clone()
}

#[test]
fn the_shared_reading_names_the_pck_crl_first() {
    let validity = validity(&collateral()).unwrap();
    assert_eq!(validity.expires_first().part, "pck crl");
    assert_eq!(validity.expires_at(), at(PCK_CRL_END));
    let tcb_info = validity
        .windows()
        .iter()
        .find(|w| w.part == "tcb info")
        .unwrap();
    assert_eq!(tcb_info.not_after, at(TCB_INFO_END));
}

#[test]
fn the_cache_refreshes_on_the_pck_crl_date_not_the_tcb_infos() {
    let cache = CollateralCache::new(None);
    let fetched = at("2025-07-19T09:30:00Z");
    cache.put(FMSPC, collateral(), fetched).unwrap();
    let cached = cache.get(FMSPC).unwrap();
    assert_eq!(
        (cached.expires_at, cached.expires_first.as_str()),
        (at(PCK_CRL_END), "pck crl")
    );
    // Within 8 days of the end the copy is due: one attempt, then none for an hour while the
    // copy is valid (the PCCS is down and nothing new is put).
    assert!(cache.needs_refresh(FMSPC, fetched, DAY));
    let last_valid = at(PCK_CRL_END) - Duration::seconds(1);
    assert!(!cache.needs_refresh(FMSPC, last_valid, DAY));
    // From the PCK CRL's nextUpdate on (the second the verifier stops accepting the copy) it is
    // refetched on every check, the hourly limit aside, though the TCB info is valid for 16
    // more minutes.
    for now in [
        at(PCK_CRL_END),
        at(PCK_CRL_END),
        at(PCK_CRL_END) + Duration::minutes(5),
        at(TCB_INFO_END) - Duration::seconds(1),
    ] {
        assert!(cache.needs_refresh(FMSPC, now, DAY), "{now}");
    }
}

#[test]
fn the_expiry_metric_shows_the_pck_crl_date() {
    let expiries = collateral_expiries(&bundle_json());
    assert_eq!(expiries, [(FMSPC.to_string(), at(PCK_CRL_END))]);
    // As the runner exports it after a check.
    let metrics = Metrics::new().unwrap();
    for (fmspc, expiry) in &expiries {
        metrics.set_collateral_expiry(fmspc, *expiry);
    }
    let text = metrics.render().unwrap();
    let series = format!("teewatch_collateral_expiry_timestamp_seconds{{fmspc=\"{FMSPC}\"}} ");
    let line = text
        .lines()
        .find(|l| l.starts_with(&series))
        .unwrap_or_else(|| panic!("expected {series}in\n{text}"));
    assert_eq!(
        line.strip_prefix(&series).unwrap().parse::<f64>().unwrap(),
        at(PCK_CRL_END).timestamp() as f64
    );
}

/// The verifier's `tdx_quote_signature` on the real bundle observed at `observed_at`.
fn quote_signature(observed_at: &str) -> (State, String) {
    let mut value = bundle_json();
    value["observed_at"] = Value::String(observed_at.into());
    let bundle = Bundle::from_value(value).unwrap();
    let policy = bundle
        .policy
        .as_ref()
        .map(|s| Policy::from_snapshot(s).unwrap())
        .unwrap_or_default();
    let verdict = verify::verify(&bundle, &policy, &TrustAnchors::production());
    let check = verdict
        .checks
        .iter()
        .find(|c| c.name == "tdx_quote_signature" && c.scope.is_empty())
        .unwrap();
    (check.state, check.reason.clone())
}

#[test]
fn the_verifier_judges_a_quote_observed_after_the_pck_crl_unknown_naming_it() {
    // Control: a second before the PCK CRL's nextUpdate the collateral covers the quote.
    let (state, reason) = quote_signature("2025-07-19T10:00:34Z");
    assert_eq!(state, State::Pass, "{reason}");
    // At that second and five minutes later, with the TCB info and QE identity still valid:
    // unknown, and the reason names the PCK CRL and only it.
    for observed_at in [PCK_CRL_END, "2025-07-19T10:05:00Z"] {
        let (state, reason) = quote_signature(observed_at);
        assert_eq!(state, State::Unknown, "{observed_at}: {reason}");
        assert_eq!(
            reason,
            format!(
                "collateral does not cover observed_at: pck crl expired at {PCK_CRL_END} (observed_at {observed_at})"
            )
        );
    }
}

/// Why the shared reading ends a CRL at its nextUpdate second, while the TCB info is still valid
/// at its own: dcap-qvl 0.7.1 (webpki) rejects the chain with the PCK CRL at that second, as a
/// failure the verifier would otherwise have reported as a bad signature.
#[test]
fn dcap_qvl_alone_fails_the_chain_at_the_pck_crl_next_update() {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/tdx/dcap-qvl/tdx_quote");
    let quote = std::fs::read(&path).unwrap();
    let collateral: dcap_qvl::QuoteCollateralV3 = serde_json::from_value(collateral()).unwrap();
    let verify_at = |t: &str| {
        dcap_qvl::verify::QuoteVerifier::new(INTEL_SGX_ROOT_CA_DER.to_vec())
            .allow_debug(true)
            .verify(&quote, &collateral, at(t).timestamp() as u64)
            .map(|report| report.status)
            .map_err(|e| format!("{e:#}"))
    };
    assert_eq!(verify_at("2025-07-19T10:00:34Z").as_deref(), Ok("UpToDate"));
    let error = verify_at(PCK_CRL_END).unwrap_err();
    assert!(
        error.contains("CrlExpired") && error.contains("next_update: UnixTime(1752919235)"),
        "expected the pck crl expired, found {error}"
    );
}
