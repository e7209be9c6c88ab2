//! The NRAS response envelope and the compact JWS tokens inside it: reading
//! `[["JWT", overall], {submod: token}]` (step 1 of `verify_token`), splitting and decoding each
//! token and holding its header to the ES384-only rules (step 2), and verifying its raw r‖s
//! ES384 signature with a key that `keys` has already proved (step 4). Nothing here decides
//! which key to trust.

use aws_lc_rs::signature::{ECDSA_P384_SHA384_FIXED, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use super::{NrasError, describe, kind};

/// The only JWS algorithm NRAS uses, and the only one accepted.
pub(super) const ALG: &str = "ES384";

/// One compact JWS, split and decoded but not yet trusted.
pub(super) struct Jws {
    /// `overall` or the submod name.
    pub(super) label: String,
    /// The exact compact string, whose SHA-256 the overall token lists.
    pub(super) compact: String,
    pub(super) header: Map<String, Value>,
    pub(super) claims: Map<String, Value>,
    pub(super) signature: Vec<u8>,
}

impl Jws {
    /// The ASCII `header.payload` the signature covers.
    fn signing_input(&self) -> &str {
        self.compact
            .rsplit_once('.')
            .map(|(input, _)| input)
            .unwrap_or("")
    }
}

/// Step 1: reads `[["JWT", overall], {submod: token}]`, also from a JSON string holding it.
pub(super) fn read_response(
    response: &Value,
) -> Result<(String, Vec<(String, String)>), NrasError> {
    // Some providers pass NRAS's body through as a string rather than as JSON.
    let parsed;
    let response = match response {
        Value::String(text) => {
            parsed = serde_json::from_str::<Value>(text)
                .map_err(|e| NrasError::ResponseNotJson(e.to_string()))?;
            &parsed
        }
        other => other,
    };
    let Some(items) = response.as_array() else {
        return Err(NrasError::ResponseShape(kind(response)));
    };
    let [first, second] = items.as_slice() else {
        return Err(NrasError::ResponseShape(format!(
            "a list of {} items",
            items.len()
        )));
    };
    let overall = match first.as_array().map(Vec::as_slice) {
        Some([Value::String(tag), Value::String(token)]) if tag == "JWT" => token.clone(),
        _ => {
            return Err(NrasError::ResponseShape(format!(
                "first item {}",
                describe(Some(first))
            )));
        }
    };
    let Some(submods) = second.as_object() else {
        return Err(NrasError::ResponseShape(format!(
            "second item {}",
            kind(second)
        )));
    };
    let mut gpus = Vec::with_capacity(submods.len());
    for (name, token) in submods {
        let Some(token) = token.as_str() else {
            return Err(NrasError::ResponseShape(format!(
                "token {name} as {}",
                kind(token)
            )));
        };
        gpus.push((name.clone(), token.to_string()));
    }
    Ok((overall, gpus))
}

/// Step 2, first half: splits a compact JWS and decodes its three parts.
pub(super) fn decode_jws(label: &str, compact: &str) -> Result<Jws, NrasError> {
    let parts: Vec<&str> = compact.split('.').collect();
    let [header_b64, payload_b64, signature_b64] = parts.as_slice() else {
        return Err(NrasError::JwtParts {
            token: label.to_string(),
            found: parts.len(),
        });
    };
    let decode = |part: &'static str, text: &str| {
        URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| NrasError::JwtBase64 {
                token: label.to_string(),
                part,
            })
    };
    let header_bytes = decode("header", header_b64)?;
    let payload_bytes = decode("payload", payload_b64)?;
    let signature = decode("signature", signature_b64)?;
    let object = |part: &'static str, bytes: &[u8]| match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(NrasError::JwtJson {
            token: label.to_string(),
            part,
            found: kind(&other),
        }),
        Err(e) => Err(NrasError::JwtJson {
            token: label.to_string(),
            part,
            found: format!("invalid json ({e})"),
        }),
    };
    Ok(Jws {
        label: label.to_string(),
        compact: compact.to_string(),
        header: object("header", &header_bytes)?,
        claims: object("payload", &payload_bytes)?,
        signature,
    })
}

/// Step 2, second half: the header must say ES384, mark nothing critical and name a key.
pub(super) fn check_header(token: &Jws) -> Result<String, NrasError> {
    let alg = token.header.get("alg");
    if alg.and_then(Value::as_str) != Some(ALG) {
        return Err(NrasError::UnsupportedAlg {
            token: token.label.clone(),
            alg: describe(alg),
        });
    }
    // RFC 7515 requires rejecting a token whose critical extensions the verifier does not
    // implement; this one implements none (RFC 7797's unencoded payloads among them).
    if let Some(crit) = token.header.get("crit") {
        return Err(NrasError::CriticalHeader {
            token: token.label.clone(),
            found: describe(Some(crit)),
        });
    }
    match token.header.get("kid") {
        Some(Value::String(kid)) if !kid.is_empty() => Ok(kid.clone()),
        other => Err(NrasError::MissingKid {
            token: token.label.clone(),
            found: describe(other),
        }),
    }
}

/// Step 4: the raw r‖s ES384 signature over `header.payload`.
pub(super) fn verify_signature(token: &Jws, kid: &str, point: &[u8]) -> Result<(), NrasError> {
    if token.signature.len() != 96 {
        return Err(NrasError::SignatureLength {
            token: token.label.clone(),
            found: token.signature.len(),
        });
    }
    UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, point)
        .verify(token.signing_input().as_bytes(), &token.signature)
        .map_err(|_| NrasError::SignatureInvalid {
            token: token.label.clone(),
            kid: kid.to_string(),
        })
}
