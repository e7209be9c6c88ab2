//! The collateral families and the platform map: collateral expiry read from real bundles, each
//! platform's fetch time from the collateral cache, platforms no target uses any more dropped,
//! and each target's platforms (`teewatch_target_platform_info`) taken from the collateral its
//! latest check used, as the runner sets them.

use serde_json::{Value, json};
use teewatch::fetch::collateral_cache::CollateralCache;
use teewatch::metrics::{Metrics, collateral_expiries};

use super::{at, bundle, lines_of, value};
use crate::common;

#[test]
fn retain_collateral_drops_platforms_no_longer_used() {
    let m = Metrics::new().unwrap();
    m.set_collateral_expiry("B0C06F000000", at("2026-01-01T00:00:00Z"));
    m.set_collateral_expiry("00A067110000", at("2026-02-01T00:00:00Z"));
    m.retain_collateral(&["b0c06f000000".to_string()]);
    let text = m.render().unwrap();
    assert_eq!(
        lines_of(&text, "teewatch_collateral_expiry_timestamp_seconds", ""),
        [format!(
            "teewatch_collateral_expiry_timestamp_seconds{{fmspc=\"b0c06f000000\"}} {}",
            at("2026-01-01T00:00:00Z").timestamp()
        )]
    );
}

#[test]
fn collateral_fetch_time_is_exported_per_platform_from_the_cache() {
    const FAMILY: &str = "teewatch_collateral_fetched_timestamp_seconds";
    let m = Metrics::new().unwrap();
    // As the runner does: the fetch time the cache recorded for the collateral a check used.
    let cache = CollateralCache::new(None);
    let collateral = bundle("dcapqvl-v4-uptodate.json")["tdx_collateral"].clone();
    cache
        .put("B0C06F000000", collateral, at("2026-01-01T00:00:00Z"))
        .unwrap();
    let cached = cache.get("b0c06f000000").unwrap();
    m.set_collateral_fetched("B0C06F000000", cached.fetched_at);
    // A copy of unknown age (a cache file from before the fetch time was kept) reads as 0, so
    // the stale alert fires for it rather than nothing.
    m.set_collateral_fetched("00A067110000", None);
    // Not an FMSPC: never a label.
    m.set_collateral_fetched("B0C06F00000", Some(at("2026-01-01T00:00:00Z")));
    m.set_collateral_fetched("b0c06f000000\"", Some(at("2026-01-01T00:00:00Z")));
    let text = m.render().unwrap();
    assert_eq!(
        lines_of(&text, FAMILY, ""),
        [
            format!("{FAMILY}{{fmspc=\"00a067110000\"}} 0"),
            format!("{FAMILY}{{fmspc=\"b0c06f000000\"}} 1767225600"),
        ]
    );
    assert!(text.contains(&format!("# TYPE {FAMILY} gauge")));
    common::promtool::assert_clean(&text);
    // A refresh replaces the value rather than adding a series.
    m.set_collateral_fetched("b0c06f000000", Some(at("2026-01-02T00:00:00.500Z")));
    let text = m.render().unwrap();
    assert_eq!(
        value(&text, &format!("{FAMILY}{{fmspc=\"b0c06f000000\"}}")),
        Some(1_767_312_000.5)
    );
    // A platform no target uses any more loses its fetch time with its expiry.
    m.set_collateral_expiry("b0c06f000000", at("2026-01-31T00:00:00Z"));
    m.retain_collateral(&["00a067110000".to_string()]);
    let text = m.render().unwrap();
    assert_eq!(
        lines_of(&text, FAMILY, ""),
        [format!("{FAMILY}{{fmspc=\"00a067110000\"}} 0")]
    );
    assert!(lines_of(&text, "teewatch_collateral_expiry_timestamp_seconds", "").is_empty());
}

#[test]
fn collateral_expiries_of_real_bundles() {
    // dcapqvl-v4-uptodate.json: TCB info nextUpdate 2025-07-19T10:16:03Z, QE identity
    // 2025-07-19T10:32:27Z, PCK CRL 2025-07-19T10:00:35Z, root CA CRL 2026-04-03T11:21:57Z
    // (read with `openssl crl -inform DER -nextupdate`): the PCK CRL is the earliest.
    let v4 = bundle("dcapqvl-v4-uptodate.json");
    assert_eq!(
        collateral_expiries(&v4),
        [("b0c06f000000".to_string(), at("2025-07-19T10:00:35Z"))]
    );
    // dcapqvl-v5-td15ex-uptodate.json: TCB info 2026-11-07T00:09:46Z, QE identity
    // 2026-11-06T23:45:11Z, PCK CRL 2026-11-07T00:28:26Z, root CA CRL 2027-02-26T13:04:00Z.
    let v5 = bundle("dcapqvl-v5-td15ex-uptodate.json");
    assert_eq!(
        collateral_expiries(&v5),
        [("b0c06f000000".to_string(), at("2026-11-06T23:45:11Z"))]
    );
    // sgx-quote.json (FMSPC 00A067110000): TCB info 2025-07-19T10:56:11Z, QE identity
    // 2025-07-19T10:01:18Z, PCK CRL 2025-07-19T10:23:18Z, root CA CRL 2026-04-03T11:21:57Z.
    // As an array with both B0C06F000000 collaterals: one entry per FMSPC, the earliest.
    let sgx = bundle("sgx-quote.json");
    let array = json!({"tdx_collateral": [
        v5["tdx_collateral"].clone(),
        sgx["tdx_collateral"].clone(),
        v4["tdx_collateral"].clone(),
    ]});
    assert_eq!(
        collateral_expiries(&array),
        [
            ("00a067110000".to_string(), at("2025-07-19T10:01:18Z")),
            ("b0c06f000000".to_string(), at("2025-07-19T10:00:35Z")),
        ]
    );
    assert!(collateral_expiries(&bundle("fetch-failed.json")).is_empty());
}

#[test]
fn each_target_names_the_platforms_of_the_collateral_its_latest_check_used() {
    const FAMILY: &str = "teewatch_target_platform_info";
    let m = Metrics::new().unwrap();
    // As the runner does after a check: the FMSPCs of the bundle's collateral. A gateway whose
    // models sit on another platform carries the collateral of both.
    let gateway = json!({"tdx_collateral": [
        bundle("sgx-quote.json")["tdx_collateral"].clone(),
        bundle("dcapqvl-v4-uptodate.json")["tdx_collateral"].clone(),
    ]});
    let platforms = |b: &Value| {
        collateral_expiries(b)
            .into_iter()
            .map(|(fmspc, _)| fmspc)
            .collect::<Vec<_>>()
    };
    let model = bundle("dcapqvl-v5-td15ex-uptodate.json");
    m.set_target_platforms("gateway", platforms(&gateway).iter().map(String::as_str));
    m.set_target_platforms("model", platforms(&model).iter().map(String::as_str));
    let text = m.render().unwrap();
    assert_eq!(
        lines_of(&text, FAMILY, ""),
        [
            format!("{FAMILY}{{fmspc=\"00a067110000\",target=\"gateway\"}} 1"),
            format!("{FAMILY}{{fmspc=\"b0c06f000000\",target=\"gateway\"}} 1"),
            format!("{FAMILY}{{fmspc=\"b0c06f000000\",target=\"model\"}} 1"),
        ]
    );
    assert!(text.contains(&format!("# TYPE {FAMILY} gauge")));
    common::promtool::assert_clean(&text);
    // A check in which no quote arrived used no collateral: the target names no platform until
    // a check does again.
    let failed = bundle("fetch-failed.json");
    m.set_target_platforms("model", platforms(&failed).iter().map(String::as_str));
    assert_eq!(
        lines_of(&m.render().unwrap(), FAMILY, "\"model\""),
        Vec::<&str>::new()
    );
}
