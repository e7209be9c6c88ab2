//! Rows on NEAR AI's parts beyond the quote: the compose manager's action log, nonce, quote and
//! event log, the OHTTP key configurations and their attestations, and the TLS peer, served
//! certificate and bound fingerprint.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::edit::*;
use super::{DIRECT, ECDSA, ED25519, PROXIED, Row, fail};

const CM: &str = "model:0/compose_manager";
const BINDING: &str = "report_data_binding";
const OHTTP: &str = "ohttp_key_binding";
const TLS: &str = "tls_key_binding";
const DIRECT_CM: &str = "/attestation/compose_manager_attestation";
const NODE1: &str = "/attestation/all_attestations/1";
const NODE2: &str = "/attestation/all_attestations/2";

fn actions_edit(v: &mut Value, f: impl FnOnce(&mut Vec<Value>)) {
    let at = format!("{CM0}/actions");
    let mut list = get(v, &at).as_array().unwrap().clone();
    f(&mut list);
    set(v, &at, Value::Array(list));
}

pub fn rows() -> Vec<Row> {
    vec![
        fail(
            "compose manager: the deployed file's hash edited in the last action",
            ED25519,
            |v| actions_edit(v, |l| l[4]["file_sha256"] = json!("ab".repeat(32))),
            BINDING,
            CM,
            "reportdata[0..32]: expected sha256 of the",
        ),
        fail(
            "compose manager: the redeploy hidden (compose_down dropped)",
            ED25519,
            |v| actions_edit(v, |l| drop(l.remove(3))),
            BINDING,
            CM,
            "reportdata[0..32]: expected sha256 of the",
        ),
        fail(
            "compose manager: two actions reordered",
            ECDSA,
            |v| actions_edit(v, |l| l.swap(2, 4)),
            BINDING,
            CM,
            "reportdata[0..32]: expected sha256 of the",
        ),
        fail(
            "compose manager: an action edited and actions_hash set to the edited log's hash",
            ECDSA,
            |v| {
                actions_edit(v, |l| l[2]["tag"] = json!("v2026.06.0"));
                let actions = serde_json::to_vec(&get(v, &format!("{CM0}/actions"))).unwrap();
                let hash = hex::encode(Sha256::digest(actions));
                set(v, &format!("{CM0}/actions_hash"), json!(hash));
            },
            BINDING,
            CM,
            "reportdata[0..32]: expected sha256 of the",
        ),
        fail(
            "compose manager: one bit of its quote's nonce half (an answer for another nonce)",
            ED25519,
            |v| quote_flip(v, CM0, REPORTDATA + 60),
            BINDING,
            CM,
            "reportdata[32..64]: expected this check's nonce",
        ),
        fail(
            "compose manager: quoted by another node's td",
            DIRECT,
            |v| {
                let other = get(v, &format!("{NODE1}/intel_quote"));
                set(v, &format!("{DIRECT_CM}/quote"), other);
            },
            "same_td",
            "compose_manager",
            "the compose manager's quote comes from another td than ",
        ),
        fail(
            "compose manager: its event log swapped for the gateway's",
            ECDSA,
            |v| {
                let gw = get(v, &format!("{GW}/event_log"));
                let text = serde_json::to_string(&gw).unwrap();
                set(v, &format!("{CM0}/event_log"), Value::String(text));
            },
            "event_log_replay",
            CM,
            "rtmr0: replayed",
        ),
        // ---- OHTTP --------------------------------------------------------------------------
        fail(
            "ohttp key config: model 1's published for model 0",
            ED25519,
            |v| {
                let other = get(v, &format!("{M1}/ohttp_key_config"));
                set(v, &format!("{M0}/ohttp_key_config"), other);
            },
            OHTTP,
            "model:0",
            "expected the sibling ohttp_key_config",
        ),
        fail(
            "ohttp key config and its attestation: model 1's for model 0",
            ED25519,
            |v| {
                for member in ["ohttp_key_config", "ohttp_attestation"] {
                    let other = get(v, &format!("{M1}/{member}"));
                    set(v, &format!("{M0}/{member}"), other);
                }
            },
            OHTTP,
            "model:0",
            "ohttp signing_key: expected the attested key",
        ),
        fail(
            "ohttp key config: one byte of the gateway's",
            PROXIED,
            |v| hex_flip(v, "/attestation/ohttp_key_config", 5),
            OHTTP,
            "gateway",
            "expected the sibling ohttp_key_config",
        ),
        fail(
            "ohttp attestation: one bit of the gateway's signature",
            ED25519,
            |v| hex_flip(v, "/attestation/ohttp_attestation/signature", 3),
            OHTTP,
            "gateway",
            "ohttp signature over key_config does not verify",
        ),
        fail(
            "ohttp attestation: signed and named by model 0's key, for the gateway",
            ED25519,
            |v| {
                let other = get(v, &format!("{M0}/ohttp_attestation"));
                set(v, "/attestation/ohttp_attestation", other);
                let config = get(v, &format!("{M0}/ohttp_key_config"));
                set(v, "/attestation/ohttp_key_config", config);
            },
            OHTTP,
            "gateway",
            "ohttp signing_key: expected the attested key",
        ),
        // ---- TLS ----------------------------------------------------------------------------
        fail(
            "tls peer swapped: the key of another server",
            ED25519,
            |v| {
                let other: Value = serde_json::from_str(
                    &std::fs::read_to_string(crate::common::repo_path(
                        "tests/bundles/formats/near-gateway-wrong-tls-peer/bundle.json",
                    ))
                    .unwrap(),
                )
                .unwrap();
                set(v, "/tls_peer_spki", other["tls_peer_spki"].clone());
            },
            TLS,
            "",
            "the connection did not end in an attested td",
        ),
        fail(
            "tls peer swapped: the peer key of another answer's gateway",
            DIRECT,
            |v| {
                let other: Value = serde_json::from_str(
                    &std::fs::read_to_string(crate::common::repo_path(
                        "tests/bundles/formats/near-gateway-ecdsa/bundle.json",
                    ))
                    .unwrap(),
                )
                .unwrap();
                set(v, "/tls_peer_spki", other["tls_peer_spki"].clone());
            },
            TLS,
            "",
            "expected the tls_cert_fingerprint of a node",
        ),
        fail(
            "tls certificate served: a genuine certificate of another key",
            ECDSA,
            |v| {
                let other = std::fs::read_to_string(crate::common::repo_path(
                    "tests/bundles/formats/near-gateway-ecdsa/sim.intel-root.pem",
                ))
                .unwrap();
                set(v, "/attestation/tls_certificate", Value::String(other));
            },
            TLS,
            "",
            "tls_certificate: expected the gateway's tls_cert_fingerprint ",
        ),
        fail(
            "tls fingerprint: one character of the gateway's",
            ED25519,
            |v| {
                let at = format!("{GW}/tls_cert_fingerprint");
                let old = get(v, &at).as_str().unwrap().to_string();
                let first = if old.starts_with('0') { "1" } else { "0" };
                set(v, &at, json!(format!("{first}{}", &old[1..])));
            },
            BINDING,
            "gateway",
            "first half (sha256(ed25519 public key",
        ),
        fail(
            "a direct node's quote replaced by another node's",
            DIRECT,
            |v| {
                let other = get(v, &format!("{NODE2}/intel_quote"));
                set(v, &format!("{NODE1}/intel_quote"), other);
            },
            BINDING,
            "node:7eb1f5b0d598a997350f6c91445ecc33fb10cac21a580a3d25407adc17d58154",
            "first half (sha256(ed25519 public key",
        ),
        fail(
            "near direct: the node that signed a chat dropped from all_attestations",
            DIRECT,
            |v| {
                let at = "/attestation/all_attestations";
                let mut list = get(v, at).as_array().unwrap().clone();
                list.remove(2);
                set(v, at, Value::Array(list));
            },
            "canary_signature",
            "canary:1",
            "expected the signing key of an attested node",
        ),
    ]
}
