//! `tls_key_binding`: one answer per connection to "did the TLS connection teewatch fetched the
//! attestation over end inside an attested TD".
//!
//! The NEAR AI formats put a `tls_cert_fingerprint` (SHA-256 of the certificate's
//! SubjectPublicKeyInfo DER) into their parts, and each quote binds its part's fingerprint through
//! REPORTDATA (see `binding`). The fetch records the SPKI the connection actually saw
//! (`tls_peer_spki`). The check is judged once, for the whole answer (scope `""`): it passes when
//! the peer's key is the fingerprint of a part that can end the connection (the gateway in the
//! gateway format, any node in the direct format) and whose quote signature and binding passed;
//! it fails when no such part names the peer's key. In the gateway format the served
//! `tls_certificate` must also be the gateway's. Models behind a gateway never meet teewatch's
//! connection: their fingerprints stay bound through their own `report_data_binding`, and the hop
//! from gateway to model is covered by the gateway's pinned identity.
//!
//! When teewatch reaches the provider through a proxy (profile `nanogpt`), the connection ends at
//! the proxy and its key says nothing about the TD: the check is not emitted, the verdict names
//! the transport, and the signed canary is the end-to-end proof.

use base64::Engine as _;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::binding;
use super::bundle::Transport;
use super::checks::{REPORT_DATA_BINDING, TDX_QUOTE_SIGNATURE, TLS_KEY_BINDING};
use super::hexutil;
use super::report::{Part, PartRole};
use super::verdict::{AttestationFormat, Outcome, Recorder, State};

/// Records `tls_key_binding` (scope `""`) when the answer's format binds TLS keys or a part
/// carries a fingerprint, unless the transport is proxied.
pub fn judge(
    parts: &[Part<'_>],
    attestation: &Value,
    format: AttestationFormat,
    tls_peer_spki: Option<&str>,
    transport: Option<Transport>,
    rec: &mut Recorder,
) {
    let any_fingerprint = parts
        .iter()
        .any(|part| binding::tls_fingerprint(part).is_some());
    if !any_fingerprint && !format.binds_tls() {
        // The dstack format binds no TLS key: the check does not apply.
        return;
    }
    if transport == Some(Transport::Proxied) {
        return;
    }
    let outcome = judge_connection(parts, attestation, format, tls_peer_spki, rec);
    rec.check(TLS_KEY_BINDING, "", outcome);
}

/// Whether a part may end teewatch's connection in this format.
fn can_terminate(part: &Part<'_>, format: AttestationFormat) -> bool {
    match format {
        AttestationFormat::NearGateway => part.role == PartRole::Gateway,
        _ => part.role == PartRole::Node,
    }
}

fn passed(rec: &Recorder, name: &str, scope: &str) -> bool {
    rec.checks
        .iter()
        .any(|c| c.name == name && c.scope == scope && c.state == State::Pass)
}

fn judge_connection(
    parts: &[Part<'_>],
    attestation: &Value,
    format: AttestationFormat,
    tls_peer_spki: Option<&str>,
    rec: &Recorder,
) -> Outcome {
    // 1. The key teewatch's connection saw.
    let Some(peer_b64) = tls_peer_spki else {
        return Outcome::Unknown(
            "no tls peer key was recorded (the attestation was fetched over plain http), so the connection cannot be compared with the attested certificates"
                .into(),
        );
    };
    let peer: [u8; 32] = match base64::engine::general_purpose::STANDARD.decode(peer_b64) {
        Ok(der) => Sha256::digest(der).into(),
        Err(e) => return Outcome::Fail(format!("the bundle's tls_peer_spki is not base64: {e}")),
    };

    // 2. The fingerprints of the parts that can end the connection.
    let mut candidates = Vec::new();
    for part in parts.iter().filter(|p| can_terminate(p, format)) {
        match binding::tls_fingerprint(part) {
            None => {}
            Some(Err(reason)) => return Outcome::Fail(format!("{}: {reason}", label(part))),
            Some(Ok(fingerprint)) => candidates.push((part, fingerprint)),
        }
    }
    let Some((part, _)) = candidates.iter().find(|(_, fp)| *fp == peer) else {
        let offered: Vec<String> = candidates
            .iter()
            .map(|(part, fp)| format!("{} {}", label(part), hexutil::lower(fp)))
            .collect();
        return Outcome::Fail(format!(
            "tls peer spki sha256: expected the tls_cert_fingerprint of {} ({}), found {}: the connection did not end in an attested td",
            if format == AttestationFormat::NearGateway {
                "the gateway"
            } else {
                "a node"
            },
            if offered.is_empty() {
                "none carries one".to_string()
            } else {
                offered.join(", ")
            },
            hexutil::lower(&peer)
        ));
    };

    // 3. In the gateway format, the certificate the answer serves is the gateway's too.
    let mut facts = vec![format!(
        "the tls peer's spki sha256 {} equals the tls_cert_fingerprint of {}",
        hexutil::lower(&peer),
        label(part)
    )];
    if format == AttestationFormat::NearGateway {
        match served_certificate_fingerprint(attestation) {
            None => {}
            Some(Err(reason)) => return Outcome::Fail(reason),
            Some(Ok(served)) if served != peer => {
                return Outcome::Fail(format!(
                    "tls_certificate: expected the gateway's tls_cert_fingerprint {}, found a certificate whose spki sha256 is {}",
                    hexutil::lower(&peer),
                    hexutil::lower(&served)
                ));
            }
            Some(Ok(_)) => facts.push("the served tls_certificate is the gateway's".into()),
        }
    }

    // 4. The quote vouches for that fingerprint only when it verified and binds it.
    let scope = part.scope.as_str();
    for step in [TDX_QUOTE_SIGNATURE, REPORT_DATA_BINDING] {
        if !passed(rec, step, scope) {
            return Outcome::Unknown(format!(
                "{}, but its {step} did not pass, so no verified quote vouches for it",
                facts.join("; ")
            ));
        }
    }
    facts.push("its verified quote binds it".into());
    Outcome::Pass(facts.join("; "))
}

fn label(part: &Part<'_>) -> String {
    if part.scope.is_empty() {
        "the node".to_string()
    } else {
        part.scope.clone()
    }
}

/// SHA-256 of the SPKI of the gateway format's top-level `tls_certificate` (PEM of the leaf),
/// when the answer carries one.
fn served_certificate_fingerprint(attestation: &Value) -> Option<Result<[u8; 32], String>> {
    let value = attestation
        .get("tls_certificate")
        .filter(|v| !v.is_null())?;
    Some((|| {
        let pem = value.as_str().ok_or_else(|| {
            format!(
                "tls_certificate: expected a pem string, found {}",
                super::bundle::json_kind(value)
            )
        })?;
        let der = super::policy::pem_to_der(pem)
            .ok_or_else(|| "tls_certificate: not a pem certificate".to_string())?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| format!("tls_certificate: not a readable certificate: {e}"))?;
        Ok(Sha256::digest(cert.public_key().raw).into())
    })())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use serde_json::{Map, Value, json};

    use super::*;
    use crate::report::TlsPosition;

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

    fn part<'a>(scope: &str, fields: &'a Map<String, Value>, role: PartRole) -> Part<'a> {
        Part::with_role(scope.into(), fields, role, TlsPosition::Terminating)
    }

    /// A recorder in which these scopes' quotes verified and bind their keys.
    fn verified(scopes: &[&str]) -> Recorder {
        let mut rec = Recorder::default();
        for scope in scopes {
            rec.check(TDX_QUOTE_SIGNATURE, scope, Outcome::Pass(String::new()));
            rec.check(REPORT_DATA_BINDING, scope, Outcome::Pass(String::new()));
        }
        rec
    }

    fn judged(
        parts: &[Part<'_>],
        format: AttestationFormat,
        peer_spki: Option<&[u8]>,
        transport: Option<Transport>,
        mut rec: Recorder,
    ) -> Option<(State, String)> {
        let spki = peer_spki.map(peer);
        judge(
            parts,
            &json!({}),
            format,
            spki.as_deref(),
            transport,
            &mut rec,
        );
        rec.checks
            .iter()
            .find(|c| c.name == TLS_KEY_BINDING)
            .map(|c| (c.state, c.reason.clone()))
    }

    #[test]
    fn one_verdict_for_the_connection_the_gateway_passes_and_models_get_none() {
        let fp = fingerprint_of(SPKI);
        let gateway = fields(Some(&fp));
        let model = fields(Some(&fingerprint_of(b"model key")));
        let parts = [
            part("gateway", &gateway, PartRole::Gateway),
            part("model:0", &model, PartRole::Model),
        ];
        let rec = verified(&["gateway", "model:0"]);
        let (state, reason) = judged(
            &parts,
            AttestationFormat::NearGateway,
            Some(SPKI),
            Some(Transport::Direct),
            rec,
        )
        .unwrap();
        assert_eq!(state, State::Pass, "{reason}");
        assert!(
            reason.contains("equals the tls_cert_fingerprint of gateway"),
            "{reason}"
        );
    }

    #[test]
    fn a_model_key_on_the_wire_of_a_gateway_answer_fails() {
        let model_fp = fingerprint_of(b"model key");
        let gateway = fields(Some(&fingerprint_of(SPKI)));
        let model = fields(Some(&model_fp));
        let parts = [
            part("gateway", &gateway, PartRole::Gateway),
            part("model:0", &model, PartRole::Model),
        ];
        let (state, reason) = judged(
            &parts,
            AttestationFormat::NearGateway,
            Some(b"model key"),
            None,
            verified(&["gateway", "model:0"]),
        )
        .unwrap();
        assert_eq!(state, State::Fail);
        assert!(
            reason.starts_with(
                "tls peer spki sha256: expected the tls_cert_fingerprint of the gateway (gateway "
            ),
            "{reason}"
        );
        assert!(
            reason.ends_with(&format!(
                "found {model_fp}: the connection did not end in an attested td"
            )),
            "{reason}"
        );
    }

    #[test]
    fn any_node_of_a_direct_answer_may_end_the_connection() {
        let a = fields(Some(&fingerprint_of(b"node a")));
        let b = fields(Some(&fingerprint_of(SPKI)));
        let parts = [
            part("node:a", &a, PartRole::Node),
            part("node:b", &b, PartRole::Node),
        ];
        let (state, reason) = judged(
            &parts,
            AttestationFormat::NearDirect,
            Some(SPKI),
            Some(Transport::Direct),
            verified(&["node:a", "node:b"]),
        )
        .unwrap();
        assert_eq!(state, State::Pass, "{reason}");
        assert!(reason.contains("of node:b"), "{reason}");
    }

    #[test]
    fn a_proxied_transport_emits_no_check() {
        let gateway = fields(Some(&fingerprint_of(SPKI)));
        let parts = [part("gateway", &gateway, PartRole::Gateway)];
        assert_eq!(
            judged(
                &parts,
                AttestationFormat::NearGateway,
                None,
                Some(Transport::Proxied),
                verified(&["gateway"]),
            ),
            None
        );
    }

    #[test]
    fn no_recorded_peer_on_a_direct_connection_is_unknown_never_a_pass() {
        let gateway = fields(Some(&fingerprint_of(SPKI)));
        let parts = [part("gateway", &gateway, PartRole::Gateway)];
        let (state, reason) = judged(
            &parts,
            AttestationFormat::NearGateway,
            None,
            None,
            verified(&["gateway"]),
        )
        .unwrap();
        assert_eq!(state, State::Unknown);
        assert!(
            reason.starts_with("no tls peer key was recorded"),
            "{reason}"
        );
    }

    #[test]
    fn a_matching_fingerprint_without_a_verified_binding_is_unknown() {
        let gateway = fields(Some(&fingerprint_of(SPKI)));
        let parts = [part("gateway", &gateway, PartRole::Gateway)];
        let mut rec = Recorder::default();
        rec.check(TDX_QUOTE_SIGNATURE, "gateway", Outcome::Pass(String::new()));
        rec.check(REPORT_DATA_BINDING, "gateway", Outcome::Fail("x".into()));
        let (state, reason) = judged(
            &parts,
            AttestationFormat::NearGateway,
            Some(SPKI),
            None,
            rec,
        )
        .unwrap();
        assert_eq!(state, State::Unknown);
        assert!(
            reason.ends_with(
                "but its report_data_binding did not pass, so no verified quote vouches for it"
            ),
            "{reason}"
        );
    }

    #[test]
    fn the_dstack_format_without_fingerprints_gets_no_check() {
        let node = fields(None);
        let parts = [part("", &node, PartRole::Node)];
        assert_eq!(
            judged(
                &parts,
                AttestationFormat::Dstack,
                Some(SPKI),
                None,
                verified(&[""])
            ),
            None
        );
    }

    #[test]
    fn an_unreadable_fingerprint_fails_with_its_reason() {
        let gateway = fields(Some("zz"));
        let parts = [part("gateway", &gateway, PartRole::Gateway)];
        let (state, reason) = judged(
            &parts,
            AttestationFormat::NearGateway,
            Some(SPKI),
            None,
            verified(&["gateway"]),
        )
        .unwrap();
        assert_eq!(state, State::Fail);
        assert!(
            reason.starts_with("gateway: tls_cert_fingerprint \"zz\" is not hex"),
            "{reason}"
        );
    }
}
