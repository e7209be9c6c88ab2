//! When the DCAP collateral of each platform stops being valid, for
//! `teewatch_collateral_expiry_timestamp_seconds`.
//!
//! Once any part of a platform's collateral is past its end, the verifier can no longer judge
//! that platform's quotes and every target on it turns `unknown`. Exporting that instant per
//! FMSPC lets an alert fire days before it happens, for instance when the PCCS has stopped
//! answering and the cache is living on its last copy. The instant is the verifier's own reading
//! ([`crate::verify::collateral::validity`]), the one the collateral cache refreshes on, so the
//! metric shows the date quotes actually turn `unknown`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::labels;
use crate::verify::collateral;

/// When the DCAP collateral in a bundle's `tdx_collateral` stops being valid, per FMSPC.
///
/// `tdx_collateral` is one dcap-qvl `QuoteCollateralV3` object or an array of them
/// (`docs/bundle.md`). For each, the FMSPC is read from the signed TCB info and the expiry is
/// [`collateral::Validity::expires_at`]: the earliest `nextUpdate` or `notAfter` of the TCB info,
/// the QE identity, the PCK CRL, the root CA CRL and the issuer chains' certificates. A
/// collateral whose validity cannot be read is skipped (the verifier judges quotes on it
/// `unknown` and says why), and so is one whose FMSPC is not exactly 12 hex digits. Two
/// collaterals for the same FMSPC give the earlier expiry. The result is sorted by FMSPC, which
/// is in lowercase.
pub fn collateral_expiries(bundle: &Value) -> Vec<(String, DateTime<Utc>)> {
    // A collateral that is not an object has no `tcb_info`, and is skipped below.
    let collaterals = bundle
        .get("tdx_collateral")
        .map(collateral::entries)
        .unwrap_or_default();
    let mut earliest: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
    for collateral in collaterals {
        let Some(fmspc) = collateral
            .get("tcb_info")
            .and_then(Value::as_str)
            .and_then(|text| serde_json::from_str::<Value>(text).ok())
            .and_then(|info| info.get("fmspc")?.as_str().and_then(labels::fmspc))
        else {
            continue;
        };
        let Ok(validity) = collateral::validity(collateral) else {
            continue;
        };
        let at = validity.expires_at();
        earliest
            .entry(fmspc)
            .and_modify(|known| *known = (*known).min(at))
            .or_insert(at);
    }
    earliest.into_iter().collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    /// Real collateral from `tests/vectors/tdx/dcap-qvl/`.
    fn vector(name: &str) -> Value {
        let path = format!(
            "{}/tests/vectors/tdx/dcap-qvl/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    /// dcap-qvl's v4 TDX collateral (FMSPC B0C06F000000): its PCK CRL ends first, at
    /// 2025-07-19T10:00:35Z, 16 minutes before its TCB info.
    fn v4() -> Value {
        vector("tdx_quote_collateral.json")
    }

    /// `collateral` with one string member changed by `change`.
    fn changed(mut collateral: Value, key: &str, change: impl Fn(&str) -> String) -> Value {
        let text = change(collateral[key].as_str().unwrap());
        collateral[key] = Value::String(text);
        collateral
    }

    #[test]
    fn earliest_end_per_fmspc_and_bad_fmspc_or_unreadable_skipped() {
        // The SGX collateral (00A067110000) ends with its QE identity, 2025-07-19T10:01:18Z;
        // v5's (B0C06F000000 too) months after v4's, so v4's PCK CRL date is the platform's.
        let bundle = json!({"tdx_collateral": [
            vector("tdx_quote_td15ex_collateral.json"),
            v4(),
            vector("sgx_quote_collateral.json"),
            // One FMSPC digit short: never a label.
            changed(v4(), "tcb_info", |t| t.replace("B0C06F000000", "B0C06F00000")),
            // Readable but for its PCK CRL: the verifier judges nothing by it, nor does the
            // metric (it would otherwise show the TCB info's later date).
            changed(vector("tdx_quote_td15ex_collateral.json"), "pck_crl", |t| format!("00{t}")),
        ]});
        assert_eq!(
            collateral_expiries(&bundle),
            vec![
                ("00a067110000".to_string(), at("2025-07-19T10:01:18Z")),
                ("b0c06f000000".to_string(), at("2025-07-19T10:00:35Z")),
            ]
        );
        let unreadable = json!({"tdx_collateral": changed(v4(), "pck_crl", |t| format!("00{t}"))});
        assert!(collateral_expiries(&unreadable).is_empty());
    }

    #[test]
    fn single_object_null_and_garbage() {
        let one = json!({"tdx_collateral": v4()});
        assert_eq!(
            collateral_expiries(&one),
            vec![("b0c06f000000".to_string(), at("2025-07-19T10:00:35Z"))]
        );
        for bundle in [
            json!({}),
            json!({"tdx_collateral": null}),
            json!({"tdx_collateral": "x"}),
            json!({"tdx_collateral": [1, {"tcb_info": "{"}]}),
        ] {
            assert!(collateral_expiries(&bundle).is_empty());
        }
    }
}
