//! Intel DCAP quote verification through dcap-qvl, with teewatch's own reading of its outcome.
//!
//! dcap-qvl checks the quote and QE signatures, the PCK chain to Intel's root, the CRLs, the QE
//! identity and the TCB info signature, then evaluates the TCB level. After every signature has
//! verified it may still stop with an error (a Revoked TCB, no matching TCB level, TD attributes
//! it dislikes): those are reported against `tdx_tcb_status` and `tdx_td_attributes`, not as a bad
//! signature. dcap-qvl reports errors as text, so the classification below is pinned to the exact
//! messages of dcap-qvl 0.7.1 (the dependency is pinned with `=`);
//! `tests/it/verify/dcap_errors.rs` has dcap-qvl produce each error it can reach from real and
//! test-PKI quotes and collateral changed in one place.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use dcap_qvl::QuoteCollateralV3;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::collateral::{self, Validity};
use super::hexutil;
use super::verdict::Outcome;

/// What dcap-qvl concluded about the TCB, once the signatures are settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TcbOutcome {
    /// The TCB level matched: its status and advisory ids.
    Evaluated {
        status: String,
        advisory_ids: Vec<String>,
    },
    /// dcap-qvl found the TCB Revoked, which fails under every policy.
    Revoked,
    /// The TCB could not be appraised against this collateral (for example no matching level).
    NotAppraisable(String),
    /// Evaluation stopped before a TCB status was produced; the reason names why.
    NotEvaluated(String),
}

/// The result of running dcap-qvl on one quote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DcapResult {
    pub signature: Outcome,
    pub tcb: TcbOutcome,
    /// The FMSPC of the quote's PCK certificate, when it could be read.
    pub fmspc: Option<String>,
}

/// Messages dcap-qvl 0.7.1 returns only after every signature has verified, and how to read them.
enum LateStop {
    Revoked,
    NotAppraisable,
    Attributes,
    CollateralMismatch,
    CollateralTime,
}

/// Classifies a dcap-qvl error by its message. `None` means a signature, chain, CRL or format
/// problem: the quote is not proven genuine.
fn classify(message: &str) -> Option<LateStop> {
    const TABLE: [(&str, LateStop); 20] = [
        ("TCB status is invalid: Revoked", LateStop::Revoked),
        ("No matching TCB level found", LateStop::NotAppraisable),
        ("TDX module identity check", LateStop::NotAppraisable),
        // The module's version has no identity in the TCB info, or its ISVSVN is below every
        // module level: after every signature, like a missing platform level.
        ("TDX module TCB level check", LateStop::NotAppraisable),
        (
            "Failed to evaluate the current TDX TCB",
            LateStop::NotAppraisable,
        ),
        ("Failed to get TD10 report", LateStop::NotAppraisable),
        (
            "TDX TCB Info is missing tdxModule field",
            LateStop::NotAppraisable,
        ),
        ("Debug mode is enabled", LateStop::Attributes),
        ("TD profiling is enabled", LateStop::Attributes),
        (
            "Reserved bits in TD attributes are set",
            LateStop::Attributes,
        ),
        ("TD migration is enabled", LateStop::Attributes),
        ("SERVTD_EXT is enabled", LateStop::Attributes),
        ("SEPT_VE_DISABLE is not enabled", LateStop::Attributes),
        ("Invalid MR service TD", LateStop::Attributes),
        ("Failed to parse TD attributes", LateStop::Attributes),
        ("Fmspc mismatch", LateStop::CollateralMismatch),
        (
            "TDX quote with non-TDX TCB info in the collateral",
            LateStop::CollateralMismatch,
        ),
        ("TCBInfo expired", LateStop::CollateralTime),
        ("QE Identity expired", LateStop::CollateralTime),
        ("issue date is in the future", LateStop::CollateralTime),
    ];
    TABLE
        .into_iter()
        .find(|(needle, _)| message.contains(needle))
        .map(|(_, stop)| stop)
}

/// One collateral of the bundle, read once: parsed, its FMSPC, and its validity.
#[derive(Debug)]
struct Candidate {
    collateral: QuoteCollateralV3,
    fmspc: Option<String>,
    validity: Result<Validity, collateral::Error>,
}

/// Collateral already read, by content hash. A check every minute sees the same collateral for
/// weeks; reading its certificates and CRLs once saves that work on every quote. The cache holds
/// only what reading the same bytes again would give, so it changes no result.
#[derive(Debug, Default)]
pub struct CollateralCache {
    entries: Mutex<HashMap<[u8; 32], Arc<ReadCollateral>>>,
}

/// The collaterals of a bundle as read, or why they could not be.
type ReadCollateral = Result<Vec<Candidate>, String>;

/// More distinct collaterals than a fleet has FMSPCs; past it the cache starts over.
const COLLATERAL_CACHE_LIMIT: usize = 256;

impl CollateralCache {
    fn get_or_read(&self, collateral: &Value) -> Arc<ReadCollateral> {
        let key: [u8; 32] = Sha256::digest(collateral.to_string().as_bytes()).into();
        if let Some(found) = self.entries.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return found;
        }
        let read = Arc::new(read_collateral(collateral));
        if let Ok(mut map) = self.entries.lock() {
            if map.len() >= COLLATERAL_CACHE_LIMIT {
                map.clear();
            }
            map.insert(key, read.clone());
        }
        read
    }

    /// How many distinct collaterals are held.
    pub fn len(&self) -> usize {
        self.entries.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Reads every collateral of the bundle (one object, or a list of them).
fn read_collateral(collateral: &Value) -> ReadCollateral {
    let items = crate::collateral::entries(collateral);
    items
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let parsed = QuoteCollateralV3::deserialize(*v)
                .map_err(|e| format!("tdx_collateral[{i}] is not dcap-qvl collateral: {e}"))?;
            let fmspc = serde_json::from_str::<Value>(&parsed.tcb_info)
                .ok()
                .and_then(|info| info.get("fmspc")?.as_str().map(str::to_ascii_lowercase));
            let validity = collateral::validity_of(&parsed);
            Ok(Candidate {
                collateral: parsed,
                fmspc,
                validity,
            })
        })
        .collect()
}

/// Picks the collateral for a quote: the one whose TCB info names the quote's FMSPC, or the only
/// one given unless it names another FMSPC (then the quote's platform has none, which says more
/// than dcap-qvl's "fmspc mismatch").
fn select_collateral<'a>(
    candidates: &'a [Candidate],
    fmspc: Option<&str>,
) -> Result<&'a Candidate, String> {
    if let [only] = candidates {
        let other_platform = matches!((only.fmspc.as_deref(), fmspc), (Some(a), Some(b)) if a != b);
        if !other_platform {
            return Ok(only);
        }
    }
    let Some(fmspc) = fmspc else {
        return Err("the quote's fmspc could not be read to pick among several collaterals".into());
    };
    candidates
        .iter()
        .find(|c| c.fmspc.as_deref() == Some(fmspc))
        .ok_or_else(|| {
            let have: Vec<&str> = candidates
                .iter()
                .filter_map(|c| c.fmspc.as_deref())
                .collect();
            format!(
                "no collateral for fmspc {fmspc}: the bundle has collateral for [{}]",
                have.join(", ")
            )
        })
}

/// Why the collateral cannot judge a quote at `now`, if it cannot: the shared reading of its
/// validity ([`collateral::validity_of`]), judged at `observed_at`.
fn collateral_time_problem(
    validity: &Result<Validity, collateral::Error>,
    now: i64,
) -> Option<String> {
    let validity = match validity {
        Ok(v) => v,
        Err(e) => return Some(format!("collateral unreadable: {e}")),
    };
    let problems = validity.problems_at(now);
    (!problems.is_empty()).then(|| {
        format!(
            "collateral does not cover observed_at: {}",
            problems.join("; ")
        )
    })
}

/// Verifies a quote with dcap-qvl under the given Intel root at `now` (unix seconds).
pub fn verify_quote(
    raw_quote: &[u8],
    collateral: Option<&Value>,
    intel_root_der: &[u8],
    now: i64,
    cache: &CollateralCache,
) -> DcapResult {
    let quote = dcap_qvl::quote::Quote::parse(raw_quote).ok();
    let fmspc = quote
        .as_ref()
        .and_then(|q| dcap_qvl::intel::quote_fmspc(q).ok())
        .map(|f| hexutil::lower(&f));
    let not_evaluated = |why: &str| TcbOutcome::NotEvaluated(format!("tdx_quote_signature {why}"));

    // 1. Collateral: present, readable, for this platform, and valid at observed_at.
    let Some(collateral) = collateral else {
        return DcapResult {
            signature: Outcome::Unknown("no tdx collateral in the bundle".into()),
            tcb: not_evaluated("could not run"),
            fmspc,
        };
    };
    let read = cache.get_or_read(collateral);
    let selected = match read.as_ref() {
        Ok(candidates) => select_collateral(candidates, fmspc.as_deref()),
        Err(e) => Err(e.clone()),
    };
    let candidate = match selected {
        Ok(c) => c,
        Err(e) => {
            return DcapResult {
                signature: Outcome::Unknown(e),
                tcb: not_evaluated("could not run"),
                fmspc,
            };
        }
    };
    if let Some(problem) = collateral_time_problem(&candidate.validity, now) {
        return DcapResult {
            signature: Outcome::Unknown(problem),
            tcb: not_evaluated("could not run"),
            fmspc,
        };
    }
    // A quote that embeds its PCK chain (certification data type 5) is judged by that chain, not
    // by one a collateral source attached for another quote.
    let embeds_chain = quote.as_ref().is_some_and(|q| q.inner_cert_type() == 5);
    let cleared;
    let collateral = if embeds_chain && candidate.collateral.pck_certificate_chain.is_some() {
        let mut copy = candidate.collateral.clone();
        copy.pck_certificate_chain = None;
        cleared = copy;
        &cleared
    } else {
        &candidate.collateral
    };

    // 2. dcap-qvl: every signature, chain and CRL, then the TCB level. Debug TDs are allowed
    //    here so that the TCB status is still reported; `tdx_debug_disabled` judges the bit.
    let Ok(now_secs) = u64::try_from(now) else {
        return DcapResult {
            signature: Outcome::Unknown(format!("observed_at {now} is before 1970")),
            tcb: not_evaluated("could not run"),
            fmspc,
        };
    };
    let verifier = dcap_qvl::verify::QuoteVerifier::new(intel_root_der.to_vec()).allow_debug(true);
    match verifier.verify(raw_quote, collateral, now_secs) {
        Ok(report) => DcapResult {
            signature: Outcome::Pass(
                "quote, qe report, pck chain, crls, qe identity and tcb info signatures verify to the intel root"
                    .into(),
            ),
            tcb: TcbOutcome::Evaluated {
                status: report.status,
                advisory_ids: report.advisory_ids,
            },
            fmspc,
        },
        Err(error) => {
            let top = error.to_string();
            let full = format!("{error:#}").to_lowercase();
            let signatures_ok = Outcome::Pass(
                "quote, qe report, pck chain, crls, qe identity and tcb info signatures verify to the intel root"
                    .into(),
            );
            let (signature, tcb) = match classify(&top) {
                Some(LateStop::Revoked) => (signatures_ok, TcbOutcome::Revoked),
                Some(LateStop::NotAppraisable) => {
                    (signatures_ok, TcbOutcome::NotAppraisable(full))
                }
                Some(LateStop::Attributes) => (
                    signatures_ok,
                    TcbOutcome::NotEvaluated(format!(
                        "dcap-qvl stopped at the td attributes ({full}) before reporting a tcb status"
                    )),
                ),
                Some(LateStop::CollateralMismatch) => (
                    Outcome::Unknown(format!("collateral does not fit this quote: {full}")),
                    not_evaluated("could not complete"),
                ),
                Some(LateStop::CollateralTime) => (
                    Outcome::Unknown(format!("collateral does not cover observed_at: {full}")),
                    not_evaluated("could not complete"),
                ),
                None => (Outcome::Fail(full), not_evaluated("failed")),
            };
            DcapResult {
                signature,
                tcb,
                fmspc,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_intel_root_is_the_one_dcap_qvl_ships() {
        use sha2::{Digest, Sha256};
        assert_eq!(
            hexutil::lower(&Sha256::digest(crate::policy::INTEL_SGX_ROOT_CA_DER)),
            "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"
        );
    }
}
