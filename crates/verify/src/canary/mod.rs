//! The signed canary chats: proof that answers come from the attested signing key.
//!
//! teewatch sends a chat whose prompt carries the check's nonce, keeps the exact request and
//! response bytes, and fetches the provider's signature over `sha256(request):sha256(response)`
//! (or `model:req:resp`). Three checks follow: the chat is fresh (its request carries this nonce),
//! the signed hashes are those of the bytes actually exchanged, and the signature was made by the
//! key of a model-serving part whose REPORTDATA binding passed: an ECDSA (EIP-191) signature
//! recovers to its address, an ed25519 signature verifies under its public key. The Python
//! `json.dumps` form a non-streamed body may be signed in, and when it is accepted, is in
//! `json_forms`; a check that ran no chat (not due, or the attestation already failed) is
//! judged in `cadence`.

use k256::ecdsa::{RecoveryId, Signature, VerifyingKey};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sha3::Keccak256;

use super::binding;
use super::bundle::{CanaryExchange, json_kind};
use super::hexutil;
use super::verdict::Outcome;

pub mod cadence;
mod json_forms;

pub use json_forms::python_json_dumps;

/// A signing address and whether the quote binds it (its part's `report_data_binding` passed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartKey {
    pub scope: String,
    /// Lowercase hex without prefix.
    pub address: String,
    pub bound: bool,
    /// Whether the part runs the model (a node or model attestation, not the NEAR gateway).
    pub serves_inference: bool,
}

/// The three canary outcomes of one exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanaryOutcomes {
    pub fresh: Outcome,
    pub hashes: Outcome,
    pub signature: Outcome,
}

/// Judges one canary exchange against the check's nonce and the keys of the attested parts.
pub fn judge(exchange: &CanaryExchange, nonce: &[u8; 32], nodes: &[PartKey]) -> CanaryOutcomes {
    // 1. Freshness: the request we sent carried this check's nonce.
    let nonce_hex = hexutil::lower(nonce);
    let fresh = if exchange.request_body.contains(&nonce_hex) {
        Outcome::Pass("the request body carries this check's nonce".into())
    } else {
        Outcome::Fail(format!(
            "the request body does not contain this check's nonce {nonce_hex}: it may be a replayed chat"
        ))
    };

    // 2. and 3. need the signature endpoint's answer.
    let Some(response) = exchange.signature.as_ref().filter(|v| !v.is_null()) else {
        let missing = Outcome::Unknown("no signature was obtained for this chat".into());
        return CanaryOutcomes {
            fresh,
            hashes: missing.clone(),
            signature: missing,
        };
    };
    let text = match response.get("text") {
        Some(Value::String(t)) => t.as_str(),
        Some(other) => {
            let bad = Outcome::Fail(format!(
                "signature response `text`: expected a string, found {}",
                json_kind(other)
            ));
            return CanaryOutcomes {
                fresh,
                hashes: bad.clone(),
                signature: after_hashes(),
            };
        }
        None => {
            return CanaryOutcomes {
                fresh,
                hashes: Outcome::Fail("the signature response has no `text`".into()),
                signature: after_hashes(),
            };
        }
    };
    CanaryOutcomes {
        fresh,
        hashes: judge_hashes(exchange, text),
        signature: judge_signature(response, text, nodes),
    }
}

fn after_hashes() -> Outcome {
    Outcome::Unknown("the signature response carries no signed text".into())
}

/// `canary_hashes`: the signed text names the hashes of the exact bytes exchanged.
fn judge_hashes(exchange: &CanaryExchange, text: &str) -> Outcome {
    let mut parts = text.rsplitn(3, ':');
    let (Some(signed_response), Some(signed_request)) = (parts.next(), parts.next()) else {
        return Outcome::Fail(format!(
            "signed text: expected \"<sha256 request>:<sha256 response>\" or \"<model>:<req>:<resp>\", found \"{text}\""
        ));
    };
    let model = parts.next();
    let request = match_half(
        "request",
        exchange.request_body.as_bytes(),
        signed_request,
        exchange.stream,
    );
    let response = match_half(
        "response",
        &exchange.response_body,
        signed_response,
        exchange.stream,
    );
    let describe = |half: &str, found: &str, mismatch: &Mismatch| {
        let expected: Vec<String> = mismatch
            .tried
            .iter()
            .map(|(h, form)| format!("{h} ({form})"))
            .collect();
        let mut text = format!(
            "{half} hash differs: expected {}, found {found}",
            expected.join(" or ")
        );
        if let Some(refused) = &mismatch.refused {
            if refused.dumps_matches {
                text.push_str(" (the hash of its python json.dumps form)");
            }
            text.push_str("; ");
            text.push_str(&refused.reason);
        }
        text
    };
    match (request, response) {
        (Ok(req_form), Ok(resp_form)) => {
            let model = model.map(|m| format!("model {m}, ")).unwrap_or_default();
            Outcome::Pass(format!(
                "signed text matches the exchange ({model}request as {req_form}, response as {resp_form})"
            ))
        }
        (Ok(_), Err(mismatch)) => Outcome::Fail(format!(
            "request hash matches; {}",
            describe("response", signed_response, &mismatch)
        )),
        (Err(mismatch), Ok(_)) => Outcome::Fail(format!(
            "response hash matches; {}",
            describe("request", signed_request, &mismatch)
        )),
        (Err(req_mismatch), Err(resp_mismatch)) => Outcome::Fail(format!(
            "{}; {}",
            describe("request", signed_request, &req_mismatch),
            describe("response", signed_response, &resp_mismatch)
        )),
    }
}

/// Why one half's signed hash matched no accepted form of its body.
#[derive(Debug)]
struct Mismatch {
    /// Every accepted form tried, with its hash.
    tried: Vec<(String, &'static str)>,
    /// Why the `json.dumps` form was not tried, when the body is JSON but that form may not
    /// stand for it.
    refused: Option<Refused>,
}

#[derive(Debug)]
struct Refused {
    reason: String,
    /// Whether the refused form's hash is the signed one: the shape of the duplicate-key attack.
    dumps_matches: bool,
}

/// Whether `signed` is the SHA-256 of `body` exactly as exchanged, or (non-streaming JSON) of
/// Python's `json.dumps` rendering of its parse, which some vllm-proxy versions hash; that second
/// form counts only for a body that is the compact serialisation of its parse without duplicate
/// keys (`json_forms`). Returns the form that matched, or what was tried and refused.
fn match_half(
    half: &str,
    body: &[u8],
    signed: &str,
    stream: bool,
) -> Result<&'static str, Mismatch> {
    let signed = signed.to_ascii_lowercase();
    let raw = hexutil::lower(&Sha256::digest(body));
    if raw == signed {
        return Ok("raw bytes");
    }
    let mut mismatch = Mismatch {
        tried: vec![(raw, "raw bytes")],
        refused: None,
    };
    if stream {
        return Err(mismatch);
    }
    if let Some(form) = json_forms::dumps_form(body, half) {
        let dumped = hexutil::lower(&Sha256::digest(form.text.as_bytes()));
        match form.refused {
            None if dumped == signed => return Ok("python json.dumps form"),
            None => mismatch.tried.push((dumped, "python json.dumps form")),
            Some(reason) => {
                mismatch.refused = Some(Refused {
                    reason,
                    dumps_matches: dumped == signed,
                });
            }
        }
    }
    Err(mismatch)
}

/// `canary_signature`: the signature was made by the key of an attested part that runs the model.
fn judge_signature(response: &Value, text: &str, nodes: &[PartKey]) -> Outcome {
    let Some(signature) = response.get("signature").and_then(Value::as_str) else {
        return Outcome::Fail("the signature response has no `signature` string".into());
    };
    let claimed = response
        .get("signing_address")
        .and_then(Value::as_str)
        .and_then(|a| hexutil::decode(a).ok())
        .map(|a| hexutil::lower(&a));
    // Without `signing_algo`, the signature's length says which it is (65 bytes r‖s‖v for
    // ECDSA, 64 for ed25519).
    let algo = match response.get("signing_algo").and_then(Value::as_str) {
        Some(algo) => algo.to_string(),
        None => match hexutil::decode(signature).map(|b| b.len()) {
            Ok(64) => "ed25519".to_string(),
            _ => "ecdsa".to_string(),
        },
    };
    // How keys are written: ECDSA addresses with 0x, ed25519 keys as bare hex.
    let (signer, verb, prefix, key_word) = match algo.as_str() {
        "ecdsa" => match recover_eip191(text, signature) {
            Ok(address) => (hexutil::lower(&address), "recovers to", "0x", "address"),
            Err(reason) => return Outcome::Fail(reason),
        },
        "ed25519" => match ed25519_signer(text, signature, claimed.as_deref(), nodes) {
            Ok(key) => (key, "verifies under ed25519 key", "", "key"),
            Err(reason) => return Outcome::Fail(reason),
        },
        other => {
            return Outcome::Fail(format!(
                "signing_algo: expected \"ecdsa\" or \"ed25519\", found \"{other}\""
            ));
        }
    };
    let mut note = String::new();
    if let Some(claimed) = &claimed {
        if *claimed != signer {
            note = format!(" (the response claims {prefix}{claimed})");
        }
    }
    let of_scope = |scope: &str| {
        if scope.is_empty() {
            String::new()
        } else {
            format!(" of {scope}")
        }
    };
    match nodes.iter().find(|n| n.address == signer) {
        Some(node) if !node.serves_inference => Outcome::Fail(format!(
            "signature {verb} {prefix}{signer}, the signing {key_word}{}, which does not run the model: expected the key of a model attestation{note}",
            of_scope(&node.scope)
        )),
        Some(node) if node.bound => Outcome::Pass(format!(
            "signature {verb} {prefix}{signer}, the attested signing {key_word}{}{note}",
            of_scope(&node.scope)
        )),
        Some(_) => Outcome::Unknown(format!(
            "signature {verb} {prefix}{signer}, whose report_data_binding did not pass{note}"
        )),
        None => {
            let known: Vec<String> = nodes
                .iter()
                .filter(|n| n.serves_inference)
                .map(|n| format!("{prefix}{}", n.address))
                .collect();
            Outcome::Fail(format!(
                "signature {verb} {prefix}{signer}, expected the signing {key_word} of an attested node [{}]{note}",
                known.join(", ")
            ))
        }
    }
}

/// The ed25519 public key (lowercase hex) under which `signature_hex` verifies `text`: the
/// attested keys are tried first, then the key the response claims. ed25519 signatures do not
/// recover their key, so an error lists what was tried.
fn ed25519_signer(
    text: &str,
    signature_hex: &str,
    claimed: Option<&str>,
    nodes: &[PartKey],
) -> Result<String, String> {
    use aws_lc_rs::signature::{ED25519, UnparsedPublicKey};

    let signature =
        hexutil::decode(signature_hex).map_err(|e| format!("signature is not hex: {e}"))?;
    if signature.len() != 64 {
        return Err(format!(
            "ed25519 signature: expected 64 bytes, found {} bytes",
            signature.len()
        ));
    }
    let mut candidates: Vec<&str> = nodes.iter().map(|n| n.address.as_str()).collect();
    candidates.extend(claimed);
    for candidate in &candidates {
        let Ok(key) = hexutil::decode(candidate) else {
            continue;
        };
        if key.len() == 32
            && UnparsedPublicKey::new(&ED25519, &key)
                .verify(text.as_bytes(), &signature)
                .is_ok()
        {
            return Ok(candidate.to_string());
        }
    }
    Err(format!(
        "ed25519 signature verifies under none of the attested keys [{}]{}",
        nodes
            .iter()
            .map(|n| n.address.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        claimed
            .map(|c| format!(" nor under the key the response claims ({c})"))
            .unwrap_or_default()
    ))
}

/// The hash EIP-191 personal_sign signs: keccak256("\x19Ethereum Signed Message:\n" ‖ len ‖ text),
/// as a digest ready for k256's prehash signing and recovery.
pub fn eip191_digest(text: &str) -> Keccak256 {
    Keccak256::new_with_prefix(format!("\x19Ethereum Signed Message:\n{}", text.len()).as_bytes())
        .chain_update(text.as_bytes())
}

/// The Ethereum address that signed `text` with EIP-191 personal_sign.
pub fn recover_eip191(text: &str, signature_hex: &str) -> Result<[u8; 20], String> {
    let bytes = hexutil::decode(signature_hex).map_err(|e| format!("signature is not hex: {e}"))?;
    let (rs, v) = match bytes.split_last() {
        Some((v, rs)) if bytes.len() == 65 => (rs, *v),
        _ => {
            return Err(format!(
                "signature: expected 65 bytes r‖s‖v, found {} bytes",
                bytes.len()
            ));
        }
    };
    let parity = match v {
        27 | 28 => v - 27,
        0 | 1 => v,
        other => {
            return Err(format!(
                "signature v: expected 27 or 28 (or 0 or 1), found {other}"
            ));
        }
    };
    let signature = Signature::from_slice(rs)
        .map_err(|_| "signature r‖s is not a valid secp256k1 signature".to_string())?;
    // A high-s signature is the same signature mirrored; recover from its low-s twin.
    let (signature, parity) = match signature.normalize_s() {
        Some(low) => (low, parity ^ 1),
        None => (signature, parity),
    };
    let recovery_id = RecoveryId::from_byte(parity).ok_or("signature recovery id is invalid")?;
    let key = VerifyingKey::recover_from_digest(eip191_digest(text), &signature, recovery_id)
        .map_err(|_| "signature does not recover to any public key".to_string())?;
    let point = key.to_encoded_point(false);
    binding::ethereum_address(point.as_bytes())
        .ok_or_else(|| "recovered key is malformed".to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::verdict::State;

    fn ed25519_key() -> aws_lc_rs::signature::Ed25519KeyPair {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        aws_lc_rs::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()
    }

    fn key_hex(key: &aws_lc_rs::signature::Ed25519KeyPair) -> String {
        use aws_lc_rs::signature::KeyPair as _;
        hexutil::lower(key.public_key().as_ref())
    }

    fn signed(key: &aws_lc_rs::signature::Ed25519KeyPair, text: &str) -> Value {
        serde_json::json!({
            "text": text,
            "signature": hexutil::lower(key.sign(text.as_bytes()).as_ref()),
            "signing_address": key_hex(key),
            "signing_algo": "ed25519",
        })
    }

    fn node(key: &str, serves_inference: bool) -> PartKey {
        PartKey {
            scope: if serves_inference {
                "model:0"
            } else {
                "gateway"
            }
            .into(),
            address: key.into(),
            bound: true,
            serves_inference,
        }
    }

    #[test]
    fn an_ed25519_signature_passes_only_under_an_attested_model_key() {
        let text = "TEE/glm-4.7:aa:bb";
        let model = ed25519_key();
        let gateway = ed25519_key();
        let nodes = [
            node(&key_hex(&gateway), false),
            node(&key_hex(&model), true),
        ];
        let outcome = judge_signature(&signed(&model, text), text, &nodes);
        assert_eq!(outcome.state(), State::Pass, "{outcome:?}");

        // One changed byte of the signed text: no attested key verifies it.
        let outcome = judge_signature(&signed(&model, text), "TEE/glm-4.7:aa:bc", &nodes);
        let Outcome::Fail(reason) = outcome else {
            panic!("expected a failure, found {outcome:?}")
        };
        assert!(
            reason.starts_with("ed25519 signature verifies under none"),
            "{reason}"
        );

        // The gateway's key is attested but does not run the model.
        let outcome = judge_signature(&signed(&gateway, text), text, &nodes);
        let Outcome::Fail(reason) = outcome else {
            panic!("expected a failure, found {outcome:?}")
        };
        assert!(reason.contains("which does not run the model"), "{reason}");

        // A key no part attests, although the response names it as its own.
        let stranger = ed25519_key();
        let outcome = judge_signature(&signed(&stranger, text), text, &nodes);
        let Outcome::Fail(reason) = outcome else {
            panic!("expected a failure, found {outcome:?}")
        };
        assert!(
            reason.contains(&format!(
                "verifies under ed25519 key {}",
                key_hex(&stranger)
            )),
            "{reason}"
        );
    }

    #[test]
    fn a_signature_without_signing_algo_is_read_by_its_length() {
        let text = "a:b";
        let model = ed25519_key();
        let mut response = signed(&model, text);
        response.as_object_mut().unwrap().remove("signing_algo");
        let outcome = judge_signature(&response, text, &[node(&key_hex(&model), true)]);
        assert_eq!(outcome.state(), State::Pass, "{outcome:?}");
    }

    fn sha(bytes: &[u8]) -> String {
        hexutil::lower(&Sha256::digest(bytes))
    }

    /// A non-streamed exchange whose provider signed `signed_response` as the response.
    fn non_streamed(response: &[u8], signed_response: &[u8]) -> (CanaryExchange, String) {
        let request = r#"{"model":"m","stream":false}"#;
        let text = format!("{}:{}", sha(request.as_bytes()), sha(signed_response));
        let exchange = CanaryExchange {
            stream: false,
            request_body: request.into(),
            response_body: response.to_vec(),
            signature: None,
        };
        (exchange, text)
    }

    fn dumps_of(body: &str) -> String {
        python_json_dumps(&serde_json::from_str(body).unwrap())
    }

    #[test]
    fn the_json_dumps_form_of_a_compact_body_passes_and_says_so() {
        let body = r#"{"id":"x","choices":[{"message":{"content":"héllo"}}]}"#;
        let (exchange, text) = non_streamed(body.as_bytes(), dumps_of(body).as_bytes());
        let outcome = judge_hashes(&exchange, &text);
        assert_eq!(
            outcome,
            Outcome::Pass(
                "signed text matches the exchange (request as raw bytes, response as python json.dumps form)"
                    .into()
            )
        );
    }

    #[test]
    fn a_duplicate_key_refuses_the_json_dumps_form_even_when_its_hash_is_signed() {
        // Every parser that keeps the last duplicate reads the honest body; one that keeps the
        // first reads "evil". The signature covers only the parse.
        let honest = r#"{"id":"x","choices":[{"message":{"content":"ok"}}]}"#;
        let attack = r#"{"id":"x","choices":[{"message":{"content":"evil"}}],"choices":[{"message":{"content":"ok"}}]}"#;
        assert_eq!(dumps_of(attack), dumps_of(honest));
        let (exchange, text) = non_streamed(attack.as_bytes(), dumps_of(honest).as_bytes());
        let Outcome::Fail(reason) = judge_hashes(&exchange, &text) else {
            panic!("expected a failure")
        };
        assert_eq!(
            reason,
            format!(
                "request hash matches; response hash differs: expected {} (raw bytes), found {} (the hash of its python json.dumps form); response body has a duplicate key `choices`: the json.dumps form is not accepted",
                sha(attack.as_bytes()),
                sha(dumps_of(honest).as_bytes())
            )
        );
    }

    #[test]
    fn a_non_compact_body_refuses_the_json_dumps_form() {
        // One space after a comma: not the compact form, and not the json.dumps form either.
        let body = r#"{"id":"x", "n":1}"#;
        let (exchange, text) = non_streamed(body.as_bytes(), dumps_of(body).as_bytes());
        let Outcome::Fail(reason) = judge_hashes(&exchange, &text) else {
            panic!("expected a failure")
        };
        assert!(
            reason.ends_with("(the hash of its python json.dumps form); response body is not the compact serialisation of its own parse (whitespace at byte 10): the json.dumps form is not accepted"),
            "{reason}"
        );
        // Its raw bytes, signed as they are, still pass.
        let (exchange, text) = non_streamed(body.as_bytes(), body.as_bytes());
        assert_eq!(judge_hashes(&exchange, &text).state(), State::Pass);
    }

    #[test]
    fn a_refused_body_whose_dumps_form_is_not_signed_says_why_it_was_not_tried() {
        let body = r#"{"a":1,"a":2}"#;
        let (exchange, text) = non_streamed(body.as_bytes(), b"something else");
        let Outcome::Fail(reason) = judge_hashes(&exchange, &text) else {
            panic!("expected a failure")
        };
        assert!(
            reason.ends_with(&format!(
                "expected {} (raw bytes), found {}; response body has a duplicate key `a`: the json.dumps form is not accepted",
                sha(body.as_bytes()),
                sha(b"something else")
            )),
            "{reason}"
        );
    }

    #[test]
    fn a_body_that_is_not_utf8_is_hashed_as_its_bytes() {
        let body = b"{\"id\":\"x\",\"content\":\"caf\xe9\"}";
        let (exchange, text) = non_streamed(body, body);
        assert_eq!(judge_hashes(&exchange, &text).state(), State::Pass);
        // The lossy text form is not what was received, so its hash is not accepted.
        let lossy = String::from_utf8_lossy(body).into_owned();
        let (exchange, text) = non_streamed(body, lossy.as_bytes());
        let Outcome::Fail(reason) = judge_hashes(&exchange, &text) else {
            panic!("expected a failure")
        };
        assert!(
            reason.starts_with("request hash matches; response hash differs"),
            "{reason}"
        );
    }
}
