//! `tls_key_binding`: whether the TLS connection teewatch fetched the attestation over ended in
//! the attested TD.
//!
//! The NEAR AI formats put a `tls_cert_fingerprint` (SHA-256 of the certificate's
//! SubjectPublicKeyInfo DER) into each part, and the quote binds it through REPORTDATA (see
//! `binding`). The fetch records the SPKI the connection actually saw (`tls_peer_spki`). Only the
//! part that terminated that connection can be compared with it: the gateway, or the node whose
//! report answered in the direct format. Parts behind it and nodes listed beside it were never on
//! the wire, and a proxying profile (or plain HTTP) records no peer, so those are `unknown` with
//! the reason, never a pass. A peer key that no part's fingerprint names fails: teewatch talked to
//! something the report does not attest.

use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::binding;
use super::checks::{REPORT_DATA_BINDING, TLS_KEY_BINDING};
use super::hexutil;
use super::report::{NodeReport, TlsPosition};
use super::verdict::{Outcome, Recorder, State};

/// One part's fingerprint as far as this check is concerned.
enum Fingerprint {
    Absent,
    Unreadable(String),
    Present([u8; 32]),
}

/// Records `tls_key_binding` for every part that carries a fingerprint, and for the part that
/// answered when the format binds TLS keys (`format_binds_tls`) even if it carries none.
/// `tls_peer_spki` is the bundle's base64 DER of the peer's SPKI.
pub fn judge(
    parts: &[NodeReport<'_>],
    tls_peer_spki: Option<&str>,
    format_binds_tls: bool,
    rec: &mut Recorder,
) {
    let fingerprints: Vec<Fingerprint> = parts
        .iter()
        .map(|part| match binding::tls_fingerprint(part) {
            None => Fingerprint::Absent,
            Some(Ok(fp)) => Fingerprint::Present(fp),
            Some(Err(reason)) => Fingerprint::Unreadable(reason),
        })
        .collect();
    let any_fingerprint = fingerprints
        .iter()
        .any(|f| !matches!(f, Fingerprint::Absent));
    if !any_fingerprint && !format_binds_tls {
        // The dstack format binds no TLS key: the check does not apply.
        return;
    }

    let peer = match tls_peer_spki.map(|b64| {
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map(|der| -> [u8; 32] { Sha256::digest(der).into() })
    }) {
        None => None,
        Some(Ok(fp)) => Some(fp),
        Some(Err(e)) => {
            rec.check(
                TLS_KEY_BINDING,
                "",
                Outcome::Fail(format!("the bundle's tls_peer_spki is not base64: {e}")),
            );
            return;
        }
    };
    let matching: Vec<&str> = parts
        .iter()
        .zip(&fingerprints)
        .filter(|(_, fp)| matches!((fp, &peer), (Fingerprint::Present(a), Some(b)) if a == b))
        .map(|(part, _)| part.scope.as_str())
        .collect();
    let terminating = parts
        .iter()
        .find(|p| p.tls == TlsPosition::Terminating)
        .map(|p| p.scope.as_str());

    for (part, fingerprint) in parts.iter().zip(&fingerprints) {
        let outcome = match (fingerprint, part.tls) {
            (Fingerprint::Absent, TlsPosition::Terminating) if format_binds_tls => {
                judge_missing(peer.as_ref(), &matching)
            }
            (Fingerprint::Absent, _) => continue,
            (Fingerprint::Unreadable(reason), _) => Outcome::Fail(reason.clone()),
            (Fingerprint::Present(_), TlsPosition::Behind) => Outcome::Unknown(format!(
                "behind {}: teewatch's tls connection ended there, so this part's certificate was never seen",
                terminating.unwrap_or("the part that answered")
            )),
            (Fingerprint::Present(_), TlsPosition::Beside) => Outcome::Unknown(
                "listed beside the node that answered: teewatch's tls connection did not reach this part"
                    .into(),
            ),
            (Fingerprint::Present(fp), TlsPosition::Terminating) => {
                judge_terminating(part, fp, peer.as_ref(), &matching, rec)
            }
        };
        rec.check(TLS_KEY_BINDING, &part.scope, outcome);
    }
    if terminating.is_none() && peer.is_some() && matching.is_empty() {
        rec.check(
            TLS_KEY_BINDING,
            "",
            Outcome::Fail(no_match_reason(peer.as_ref())),
        );
    }
}

fn no_peer() -> Outcome {
    Outcome::Unknown(
        "no tls peer key was recorded (the attestation was fetched through a proxying profile such as nanogpt, or over plain http), so the connection cannot be compared with the attested certificate"
            .into(),
    )
}

fn no_match_reason(peer: Option<&[u8; 32]>) -> String {
    format!(
        "the tls peer's spki sha256 is {}, and no part of the report carries that fingerprint: the connection did not end in an attested td",
        peer.map(|p| hexutil::lower(p)).unwrap_or_default()
    )
}

/// The answering part of a format that binds TLS keys carries no fingerprint.
fn judge_missing(peer: Option<&[u8; 32]>, matching: &[&str]) -> Outcome {
    match peer {
        None => no_peer(),
        Some(_) if matching.is_empty() => Outcome::Fail(format!(
            "the part that answered carries no tls_cert_fingerprint; {}",
            no_match_reason(peer)
        )),
        Some(_) => Outcome::Unknown(format!(
            "the part that answered carries no tls_cert_fingerprint; the peer's key is that of {}",
            matching.join(", ")
        )),
    }
}

fn judge_terminating(
    part: &NodeReport<'_>,
    fingerprint: &[u8; 32],
    peer: Option<&[u8; 32]>,
    matching: &[&str],
    rec: &Recorder,
) -> Outcome {
    let Some(peer) = peer else {
        return no_peer();
    };
    if peer != fingerprint {
        let others: Vec<&str> = matching
            .iter()
            .copied()
            .filter(|s| *s != part.scope)
            .collect();
        return if others.is_empty() {
            Outcome::Fail(format!(
                "tls peer spki sha256: expected {} (the attested tls_cert_fingerprint of the part that answered), found {}; no part of the report carries the peer's fingerprint",
                hexutil::lower(fingerprint),
                hexutil::lower(peer)
            ))
        } else {
            Outcome::Unknown(format!(
                "the tls peer's key is that of {}, not of the part that answered (fingerprint {})",
                others.join(", "),
                hexutil::lower(fingerprint)
            ))
        };
    }
    let bound = rec
        .checks
        .iter()
        .any(|c| c.name == REPORT_DATA_BINDING && c.scope == part.scope && c.state == State::Pass);
    if bound {
        Outcome::Pass(format!(
            "the tls peer's spki sha256 {} equals the tls_cert_fingerprint the quote binds",
            hexutil::lower(peer)
        ))
    } else {
        Outcome::Unknown(format!(
            "the tls peer's spki sha256 {} equals the report's tls_cert_fingerprint, but {REPORT_DATA_BINDING} did not pass, so the quote does not vouch for it",
            hexutil::lower(peer)
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use serde_json::{Map, Value, json};

    use super::*;
    use crate::verify::report::PartRole;

    const SPKI: &[u8] = b"the der of the gateway's subject public key info";

    fn fingerprint_of(spki: &[u8]) -> String {
        hexutil::lower(&Sha256::digest(spki))
    }

    fn peer(spki: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(spki)
    }

    fn fields(fingerprint: Option<&str>) -> Map<String, Value> {
        let mut map = Map::new();
        if let Some(fp) = fingerprint {
            map.insert("tls_cert_fingerprint".into(), json!(fp));
        }
        map
    }

    fn part<'a>(
        scope: &str,
        fields: &'a Map<String, Value>,
        role: PartRole,
        tls: TlsPosition,
    ) -> NodeReport<'a> {
        NodeReport::with_role(scope.into(), fields, role, tls)
    }

    /// A recorder in which the named scopes' `report_data_binding` passed.
    fn bound(scopes: &[&str]) -> Recorder {
        let mut rec = Recorder::default();
        for scope in scopes {
            rec.check(REPORT_DATA_BINDING, scope, Outcome::Pass(String::new()));
        }
        rec
    }

    fn outcome<'a>(rec: &'a Recorder, scope: &str) -> (State, &'a str) {
        let c = rec
            .checks
            .iter()
            .find(|c| c.name == TLS_KEY_BINDING && c.scope == scope)
            .unwrap_or_else(|| panic!("no tls_key_binding for {scope:?}: {:?}", rec.checks));
        (c.state, c.reason.as_str())
    }

    #[test]
    fn the_gateway_passes_on_its_own_key_and_models_behind_it_are_unknown() {
        let fp = fingerprint_of(SPKI);
        let gateway = fields(Some(&fp));
        let model = fields(Some(&fingerprint_of(b"model")));
        let parts = [
            part(
                "gateway",
                &gateway,
                PartRole::Gateway,
                TlsPosition::Terminating,
            ),
            part("model:0", &model, PartRole::Model, TlsPosition::Behind),
        ];
        let mut rec = bound(&["gateway", "model:0"]);
        judge(&parts, Some(&peer(SPKI)), true, &mut rec);
        let (state, reason) = outcome(&rec, "gateway");
        assert_eq!(state, State::Pass, "{reason}");
        assert!(reason.contains(&fp), "{reason}");
        let (state, reason) = outcome(&rec, "model:0");
        assert_eq!(state, State::Unknown);
        assert!(reason.starts_with("behind gateway"), "{reason}");
    }

    /// Judges a lone, bound gateway whose certificate is `SPKI` against `peer_spki`.
    fn judge_lone_gateway(peer_spki: Option<&[u8]>) -> Recorder {
        let gateway = fields(Some(&fingerprint_of(SPKI)));
        let parts = [part(
            "gateway",
            &gateway,
            PartRole::Gateway,
            TlsPosition::Terminating,
        )];
        let mut rec = bound(&["gateway"]);
        judge(&parts, peer_spki.map(peer).as_deref(), true, &mut rec);
        rec
    }

    #[test]
    fn another_peer_key_fails_naming_both_fingerprints() {
        let fp = fingerprint_of(SPKI);
        let rec = judge_lone_gateway(Some(b"a man in the middle"));
        let (state, reason) = outcome(&rec, "gateway");
        assert_eq!(state, State::Fail);
        assert!(reason.contains(&format!("expected {fp}")), "{reason}");
        assert!(
            reason.contains(&format!("found {}", fingerprint_of(b"a man in the middle"))),
            "{reason}"
        );
    }

    #[test]
    fn no_recorded_peer_is_unknown_never_a_pass() {
        let rec = judge_lone_gateway(None);
        let (state, reason) = outcome(&rec, "gateway");
        assert_eq!(state, State::Unknown);
        assert!(reason.contains("no tls peer key was recorded"), "{reason}");
    }

    #[test]
    fn a_matching_fingerprint_without_a_passing_binding_is_unknown() {
        let fp = fingerprint_of(SPKI);
        let node = fields(Some(&fp));
        let parts = [part("", &node, PartRole::Node, TlsPosition::Terminating)];
        let mut rec = Recorder::default();
        rec.check(REPORT_DATA_BINDING, "", Outcome::Fail("differs".into()));
        judge(&parts, Some(&peer(SPKI)), true, &mut rec);
        let (state, reason) = outcome(&rec, "");
        assert_eq!(state, State::Unknown);
        assert!(
            reason.contains("report_data_binding did not pass"),
            "{reason}"
        );
    }

    #[test]
    fn a_peer_that_is_a_node_beside_the_answering_one_is_unknown() {
        let answering = fields(Some(&fingerprint_of(b"node a")));
        let beside = fields(Some(&fingerprint_of(SPKI)));
        let parts = [
            part(
                "node:a",
                &answering,
                PartRole::Node,
                TlsPosition::Terminating,
            ),
            part("node:b", &beside, PartRole::Node, TlsPosition::Beside),
        ];
        let mut rec = bound(&["node:a", "node:b"]);
        judge(&parts, Some(&peer(SPKI)), true, &mut rec);
        let (state, reason) = outcome(&rec, "node:a");
        assert_eq!(state, State::Unknown);
        assert!(reason.contains("that of node:b"), "{reason}");
        assert_eq!(outcome(&rec, "node:b").0, State::Unknown);
    }

    #[test]
    fn the_dstack_format_without_fingerprints_gets_no_check() {
        let node = fields(None);
        let parts = [part("", &node, PartRole::Node, TlsPosition::Terminating)];
        let mut rec = bound(&[""]);
        judge(&parts, Some(&peer(SPKI)), false, &mut rec);
        assert!(rec.checks.iter().all(|c| c.name != TLS_KEY_BINDING));
    }

    #[test]
    fn a_near_report_whose_answering_part_has_no_fingerprint_fails_when_nothing_matches() {
        let node = fields(None);
        let parts = [part("", &node, PartRole::Node, TlsPosition::Terminating)];
        let mut rec = bound(&[""]);
        judge(&parts, Some(&peer(SPKI)), true, &mut rec);
        let (state, reason) = outcome(&rec, "");
        assert_eq!(state, State::Fail);
        assert!(
            reason.contains("carries no tls_cert_fingerprint"),
            "{reason}"
        );
    }

    #[test]
    fn an_unreadable_fingerprint_fails_with_its_reason() {
        let node = fields(Some("not hex"));
        let parts = [part("", &node, PartRole::Node, TlsPosition::Terminating)];
        let mut rec = bound(&[""]);
        judge(&parts, Some(&peer(SPKI)), true, &mut rec);
        let (state, reason) = outcome(&rec, "");
        assert_eq!(state, State::Fail);
        assert!(reason.starts_with("tls_cert_fingerprint"), "{reason}");
    }
}
