//! When the DCAP collateral of each platform stops being valid, for
//! `teewatch_collateral_expiry_timestamp_seconds`.
//!
//! Once any part of a platform's collateral is past its `nextUpdate`, the verifier can no longer
//! judge that platform's quotes and every target on it turns `unknown`. Exporting the earliest
//! `nextUpdate` per FMSPC lets an alert fire days before that happens, for instance when the
//! PCCS has stopped answering and the cache is living on its last copy.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::labels;

/// The earliest `nextUpdate` of the DCAP collateral in a bundle's `tdx_collateral`, per FMSPC.
///
/// `tdx_collateral` is one dcap-qvl `QuoteCollateralV3` object or an array of them
/// (`docs/bundle.md`). For each, the FMSPC is read from the signed TCB info and the expiry is the
/// earliest `nextUpdate` among the TCB info, the QE identity, the PCK CRL and the root CA CRL
/// (the CRLs are read from their DER with x509-parser). A part that cannot be read is left out
/// rather than failing the whole collateral, since the verifier, not the metrics, judges
/// malformed collateral. A collateral whose FMSPC is not exactly 12 hex digits, or none of whose
/// dates can be read, is skipped. Two collaterals for the same FMSPC give the earlier expiry.
/// The result is sorted by FMSPC, which is in lowercase.
pub fn collateral_expiries(bundle: &Value) -> Vec<(String, DateTime<Utc>)> {
    let collaterals: Vec<&Value> = match bundle.get("tdx_collateral") {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(item @ Value::Object(_)) => vec![item],
        _ => Vec::new(),
    };
    let mut earliest: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
    for collateral in collaterals {
        let Some(tcb_info) = signed_json(collateral, "tcb_info") else {
            continue;
        };
        let Some(fmspc) = tcb_info
            .get("fmspc")
            .and_then(Value::as_str)
            .and_then(labels::fmspc)
        else {
            continue;
        };
        let Some(at) = next_update_with(collateral, &tcb_info) else {
            continue;
        };
        earliest
            .entry(fmspc)
            .and_modify(|known| *known = (*known).min(at))
            .or_insert(at);
    }
    earliest.into_iter().collect()
}

/// The earliest `nextUpdate` of one `QuoteCollateralV3` object (TCB info, QE identity, PCK CRL
/// and root CA CRL), or `None` when no date in it can be read.
pub fn collateral_next_update(collateral: &Value) -> Option<DateTime<Utc>> {
    match signed_json(collateral, "tcb_info") {
        Some(tcb_info) => next_update_with(collateral, &tcb_info),
        None => next_update_with(collateral, &Value::Null),
    }
}

fn next_update_with(collateral: &Value, tcb_info: &Value) -> Option<DateTime<Utc>> {
    [
        json_next_update(tcb_info),
        signed_json(collateral, "qe_identity").and_then(|qe| json_next_update(&qe)),
        crl_next_update(collateral, "pck_crl"),
        crl_next_update(collateral, "root_ca_crl"),
    ]
    .into_iter()
    .flatten()
    .min()
}

/// A signed JSON part: dcap-qvl keeps `tcb_info` and `qe_identity` as the exact text Intel
/// signed, so it is a string to parse; an object is accepted too, since only the dates are read
/// here and the signature is the verifier's business.
fn signed_json(collateral: &Value, key: &str) -> Option<Value> {
    match collateral.get(key)? {
        Value::String(text) => serde_json::from_str(text).ok(),
        object @ Value::Object(_) => Some(object.clone()),
        _ => None,
    }
}

fn json_next_update(part: &Value) -> Option<DateTime<Utc>> {
    let text = part.get("nextUpdate")?.as_str()?;
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|at| at.with_timezone(&Utc))
}

/// The `nextUpdate` of a CRL stored as DER in hex.
fn crl_next_update(collateral: &Value, key: &str) -> Option<DateTime<Utc>> {
    let der = hex::decode(collateral.get(key)?.as_str()?).ok()?;
    let (_, crl) = x509_parser::parse_x509_crl(&der).ok()?;
    DateTime::from_timestamp(crl.next_update()?.timestamp(), 0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn collateral(fmspc: &str, tcb_next: &str, qe_next: &str) -> Value {
        json!({
            "tcb_info": json!({"fmspc": fmspc, "nextUpdate": tcb_next}).to_string(),
            "qe_identity": json!({"nextUpdate": qe_next}).to_string(),
            "pck_crl": "not hex",
        })
    }

    #[test]
    fn earliest_part_per_fmspc_and_bad_fmspc_skipped() {
        let bundle = json!({"tdx_collateral": [
            collateral("B0C06F000000", "2025-07-19T10:16:03Z", "2025-07-18T00:00:00Z"),
            collateral("b0c06f000000", "2025-07-17T00:00:00Z", "2025-07-20T00:00:00Z"),
            collateral("00A067110000", "2025-08-01T00:00:00Z", "not a date"),
            collateral("B0C06F00000", "2025-07-19T10:16:03Z", "2025-07-19T10:16:03Z"),
            collateral("B0C06F0000\"0", "2025-07-19T10:16:03Z", "2025-07-19T10:16:03Z"),
        ]});
        assert_eq!(
            collateral_expiries(&bundle),
            vec![
                ("00a067110000".to_string(), at("2025-08-01T00:00:00Z")),
                ("b0c06f000000".to_string(), at("2025-07-17T00:00:00Z")),
            ]
        );
    }

    #[test]
    fn single_object_null_and_garbage() {
        let one = json!({"tdx_collateral":
            collateral("B0C06F000000", "2025-07-19T10:16:03Z", "2025-07-20T00:00:00Z")});
        assert_eq!(
            collateral_expiries(&one),
            vec![("b0c06f000000".to_string(), at("2025-07-19T10:16:03Z"))]
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
