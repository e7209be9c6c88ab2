//! When DCAP collateral is valid: the one reading the verifier (is it valid at `observed_at`?),
//! the daemon's collateral cache (when must the copy be fetched again?) and the expiry metric
//! (`teewatch_collateral_expiry_timestamp_seconds`: when do the platform's quotes turn
//! `unknown`?) all use, so the three can never disagree about a date.
//!
//! A collateral is valid while every dated part of it is: the TCB info and the QE identity (from
//! `issueDate` to `nextUpdate`), the root CA CRL and the PCK CRL (from `thisUpdate` to
//! `nextUpdate`) and each certificate of the three issuer chains (from `notBefore` to
//! `notAfter`). It expires with its first part, which [`Validity::expires_first`] names: in
//! Intel's real collateral that is often the PCK CRL, minutes before the TCB info. These are the
//! parts dcap-qvl dates too, but dcap-qvl says which one has expired only as text, and for a CRL
//! only as a failed certificate chain (`CrlExpired`), which reads as a bad signature; so teewatch
//! reads the dates itself and judges expired collateral `unknown` before dcap-qvl runs. A PCK
//! certificate chain a collateral source attaches is not read: it belongs to the quote (a quote
//! of certification data type 5 carries its own), and dcap-qvl judges it with the quote.
//!
//! Windows are judged at whole seconds and their ends as dcap-qvl 0.7.1 judges them, so that
//! teewatch never hands dcap-qvl collateral it would then reject as a failed signature: the TCB
//! info and QE identity are still valid at their `nextUpdate` second (dcap-qvl refuses only
//! after it), as are certificates at their `notAfter` (webpki), but a CRL has expired at its
//! `nextUpdate` second (webpki's `time >= next_update`). Every part is valid from its first
//! date on.

use chrono::{DateTime, SecondsFormat, Utc};
use dcap_qvl::QuoteCollateralV3;
use serde::Deserialize;
use serde_json::Value;
use x509_parser::prelude::*;

/// Why the validity of a collateral cannot be read; the verifier then judges no quote by it, the
/// cache refuses to store it and the metric leaves it out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The value is not dcap-qvl's `QuoteCollateralV3`.
    #[error("not dcap-qvl collateral: {0}")]
    NotCollateral(String),
    /// One part cannot be read or carries no usable date; `part` names it as [`Window::part`]
    /// would.
    #[error("{part} {problem}")]
    Part { part: String, problem: String },
}

fn part_error(part: &str, problem: String) -> Error {
    Error::Part {
        part: part.to_string(),
        problem,
    }
}

/// A dated part of the collateral and the dates it is valid between, as the part writes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// "tcb info", "qe identity", "root ca crl", "pck crl", or an issuer chain's certificate
    /// with its subject's common name (`tcb info issuer chain certificate "Intel SGX TCB
    /// Signing"`).
    pub part: String,
    /// `issueDate`, `thisUpdate` or `notBefore`: valid from this second on.
    pub not_before: DateTime<Utc>,
    /// `nextUpdate` or `notAfter`: the end of the window.
    pub not_after: DateTime<Utc>,
    /// Whether the part is still valid at the `not_after` second itself: yes for the TCB info,
    /// the QE identity and certificates, no for a CRL.
    pub end_included: bool,
}

impl Window {
    /// Whether the part is valid at `now` (unix seconds).
    pub fn covers(&self, now: i64) -> bool {
        !self.not_yet(now) && !self.ended(now)
    }

    fn not_yet(&self, now: i64) -> bool {
        now < self.not_before.timestamp()
    }

    fn ended(&self, now: i64) -> bool {
        let end = self.not_after.timestamp();
        if self.end_included {
            now > end
        } else {
            now >= end
        }
    }
}

/// Every validity window of one collateral, and the one that ends first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validity {
    windows: Vec<Window>,
    first: Window,
}

impl Validity {
    /// The windows in a fixed order: TCB info, QE identity, root CA CRL, PCK CRL, then the
    /// certificates of the TCB info, QE identity and PCK CRL issuer chains as they appear.
    pub fn windows(&self) -> &[Window] {
        &self.windows
    }

    /// The part whose window ends first: the earliest `not_after`, a CRL before a part that is
    /// still valid at the same second, then the first in [`Validity::windows`] order.
    pub fn expires_first(&self) -> &Window {
        &self.first
    }

    /// The end of the whole collateral: the `not_after` of [`Validity::expires_first`]. From
    /// this second on the collateral is expired or valid for at most this one second more, so a
    /// copy must be replaced by then.
    pub fn expires_at(&self) -> DateTime<Utc> {
        self.first.not_after
    }

    /// Whether every part is valid at `now` (unix seconds).
    pub fn covers(&self, now: i64) -> bool {
        self.windows.iter().all(|w| w.covers(now))
    }

    /// Each part not valid at `now` (unix seconds), as "pck crl expired at 2025-07-19T10:00:35Z
    /// (observed_at …)" or "tcb info not valid until … (observed_at …)", in window order; empty
    /// when the collateral covers `now`.
    pub fn problems_at(&self, now: i64) -> Vec<String> {
        let mut problems = Vec::new();
        for w in &self.windows {
            if w.not_yet(now) {
                problems.push(format!(
                    "{} not valid until {} (observed_at {})",
                    w.part,
                    show(w.not_before.timestamp()),
                    show(now)
                ));
            } else if w.ended(now) {
                problems.push(format!(
                    "{} expired at {} (observed_at {})",
                    w.part,
                    show(w.not_after.timestamp()),
                    show(now)
                ));
            }
        }
        problems
    }
}

/// The validity of one collateral as the bundle, the cache and a PCCS answer hold it: a JSON
/// `QuoteCollateralV3` (CRLs and signatures in hex, TCB info and QE identity as the text Intel
/// signed).
/// The collaterals a bundle's `tdx_collateral` holds: one object, or a list of them (one per
/// platform). Every reader of the field takes it apart here, so they agree on its shape.
pub fn entries(tdx_collateral: &Value) -> Vec<&Value> {
    match tdx_collateral {
        Value::Array(list) => list.iter().collect(),
        other => vec![other],
    }
}

pub fn validity(collateral: &Value) -> Result<Validity, Error> {
    let parsed = QuoteCollateralV3::deserialize(collateral)
        .map_err(|e| Error::NotCollateral(e.to_string()))?;
    validity_of(&parsed)
}

/// The validity of one collateral already parsed.
pub fn validity_of(c: &QuoteCollateralV3) -> Result<Validity, Error> {
    let mut windows = Vec::new();
    for (part, json) in [("tcb info", &c.tcb_info), ("qe identity", &c.qe_identity)] {
        let value: Value = serde_json::from_str(json)
            .map_err(|e| part_error(part, format!("is not json: {e}")))?;
        let date = |key: &str| {
            value
                .get(key)
                .and_then(Value::as_str)
                .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
                .and_then(|t| DateTime::from_timestamp(t.timestamp(), 0))
                .ok_or_else(|| part_error(part, format!("has no valid {key}")))
        };
        windows.push(Window {
            part: part.to_string(),
            not_before: date("issueDate")?,
            not_after: date("nextUpdate")?,
            end_included: true,
        });
    }
    for (part, der) in [("root ca crl", &c.root_ca_crl), ("pck crl", &c.pck_crl)] {
        let (_, crl) =
            parse_x509_crl(der).map_err(|e| part_error(part, format!("is not a der crl: {e}")))?;
        let next = crl
            .next_update()
            .ok_or_else(|| part_error(part, "has no nextUpdate".into()))?;
        windows.push(Window {
            part: part.to_string(),
            not_before: instant(part, crl.last_update())?,
            not_after: instant(part, next)?,
            end_included: false,
        });
    }
    for (chain, pem_chain) in [
        ("tcb info issuer chain", &c.tcb_info_issuer_chain),
        ("qe identity issuer chain", &c.qe_identity_issuer_chain),
        ("pck crl issuer chain", &c.pck_crl_issuer_chain),
    ] {
        for (i, pem) in Pem::iter_from_buffer(pem_chain.as_bytes()).enumerate() {
            let pem = pem.map_err(|e| part_error(chain, format!("is not pem: {e}")))?;
            let cert = pem
                .parse_x509()
                .map_err(|e| part_error(chain, format!("certificate {i} is not x.509: {e}")))?;
            let subject = cert
                .subject()
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok())
                .unwrap_or("?");
            let part = format!("{chain} certificate \"{subject}\"");
            windows.push(Window {
                not_before: instant(&part, cert.validity().not_before)?,
                not_after: instant(&part, cert.validity().not_after)?,
                end_included: true,
                part,
            });
        }
    }
    // Never empty: the TCB info's window is always there.
    let first = windows
        .iter()
        .min_by_key(|w| (w.not_after, w.end_included))
        .cloned()
        .ok_or_else(|| part_error("tcb info", "has no window".into()))?;
    Ok(Validity { windows, first })
}

/// An ASN.1 time as a chrono instant; every time x509-parser reads fits, so the error only
/// guards.
fn instant(part: &str, time: ASN1Time) -> Result<DateTime<Utc>, Error> {
    DateTime::from_timestamp(time.timestamp(), 0).ok_or_else(|| {
        part_error(
            part,
            format!("has a date outside chrono's range: {}", time.timestamp()),
        )
    })
}

/// Unix seconds in RFC 3339 at whole seconds, as every verdict shows instants.
fn show(secs: i64) -> String {
    DateTime::<Utc>::from_timestamp(secs, 0)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_else(|| secs.to_string())
}

#[cfg(test)]
#[path = "collateral_tests.rs"]
mod tests;
