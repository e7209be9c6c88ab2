//! The binding of the signing key and the client's nonce into the quote.
//!
//! The quote's REPORTDATA must be the signing address (20 bytes for ECDSA, the 32-byte public key
//! for ed25519) right-padded with zeros to 32 bytes, followed by the raw 32-byte nonce this check
//! sent. When the part carries a `tls_cert_fingerprint` (the NEAR AI formats), the first half is
//! instead SHA-256 of the key bytes followed by the raw fingerprint bytes, which binds the TD's
//! TLS certificate too. Only this proves that the key lives in the attested TD and that the quote
//! is fresh; a nonce echoed elsewhere in the response proves nothing.

use sha2::Sha256;
use sha3::{Digest, Keccak256};

use super::hexutil;
use super::report::Part;
use super::verdict::Outcome;

/// The signing algorithms a report may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningAlgo {
    Ecdsa,
    Ed25519,
}

impl SigningAlgo {
    /// The report's `signing_algo`, defaulting to ECDSA as vllm-proxy does.
    pub fn of(part: &Part<'_>) -> Result<SigningAlgo, String> {
        match part.fields.get("signing_algo") {
            None | Some(serde_json::Value::Null) => Ok(SigningAlgo::Ecdsa),
            Some(serde_json::Value::String(algo)) => match algo.as_str() {
                "ecdsa" => Ok(SigningAlgo::Ecdsa),
                "ed25519" => Ok(SigningAlgo::Ed25519),
                other => Err(format!(
                    "signing_algo: expected \"ecdsa\" or \"ed25519\", found \"{other}\""
                )),
            },
            Some(other) => Err(format!(
                "signing_algo: expected \"ecdsa\" or \"ed25519\", found {}",
                super::bundle::json_kind(other)
            )),
        }
    }

    /// The name providers use in `signing_algo`.
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlgo::Ecdsa => "ecdsa",
            SigningAlgo::Ed25519 => "ed25519",
        }
    }

    fn key_len(self) -> usize {
        match self {
            SigningAlgo::Ecdsa => 20,
            SigningAlgo::Ed25519 => 32,
        }
    }
}

/// The raw signing address (ECDSA) or public key (ed25519) the report names.
pub fn signing_key_bytes(part: &Part<'_>, algo: SigningAlgo) -> Result<Vec<u8>, String> {
    let text = part
        .str_field("signing_address")
        .ok_or("the report carries no signing_address")?;
    let bytes =
        hexutil::decode(text).map_err(|e| format!("signing_address \"{text}\" is not hex: {e}"))?;
    if bytes.len() != algo.key_len() {
        return Err(format!(
            "signing_address: expected {} bytes for {:?}, found {}",
            algo.key_len(),
            algo,
            bytes.len()
        ));
    }
    if algo == SigningAlgo::Ecdsa {
        eip55_case(text, &bytes)?;
    }
    Ok(bytes)
}

/// An Ethereum address written in mixed case carries an EIP-55 checksum, and one whose checksum
/// is wrong is not that address but a corrupted one (EIP-55 has wallets refuse it), so the
/// report's own key field is broken. A single-case address carries no checksum and is accepted.
fn eip55_case(text: &str, address: &[u8]) -> Result<(), String> {
    let digits = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text);
    let upper = digits.bytes().any(|b| b.is_ascii_uppercase());
    let lower = digits.bytes().any(|b| b.is_ascii_lowercase());
    if !(upper && lower) {
        return Ok(());
    }
    let checksummed = eip55(address);
    if digits == checksummed {
        Ok(())
    } else {
        Err(format!(
            "signing_address: mixed case with a wrong eip-55 checksum: expected 0x{checksummed}, found {text}"
        ))
    }
}

/// The EIP-55 spelling of an address: each hex letter upper-cased where the matching nibble of
/// keccak256 of the lower-case hex text is 8 or more.
fn eip55(address: &[u8]) -> String {
    let lower = hexutil::lower(address);
    let hash = Keccak256::digest(lower.as_bytes());
    lower
        .chars()
        .enumerate()
        .map(|(i, c)| {
            let byte = hash.get(i / 2).copied().unwrap_or(0);
            let nibble = if i % 2 == 0 { byte >> 4 } else { byte & 0x0f };
            if nibble >= 8 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect()
}

/// The part's `tls_cert_fingerprint` as 32 raw bytes: `None` when the part has none, an error
/// text when it is present but unreadable.
pub fn tls_fingerprint(part: &Part<'_>) -> Option<Result<[u8; 32], String>> {
    let value = part.fields.get("tls_cert_fingerprint")?;
    if value.is_null() {
        return None;
    }
    Some((|| {
        let text = value.as_str().ok_or_else(|| {
            format!(
                "tls_cert_fingerprint: expected a hex string, found {}",
                super::bundle::json_kind(value)
            )
        })?;
        // Fingerprints are often printed with colons between the bytes.
        let bytes = hexutil::decode(&text.replace(':', ""))
            .map_err(|e| format!("tls_cert_fingerprint \"{text}\" is not hex: {e}"))?;
        <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
            format!(
                "tls_cert_fingerprint: expected 32 bytes (sha-256), found {}",
                bytes.len()
            )
        })
    })())
}

/// `report_data_binding`: REPORTDATA = signing key zero-padded to 32 bytes ‖ nonce, or
/// SHA256(signing key ‖ TLS fingerprint) ‖ nonce when the part carries a fingerprint.
pub fn report_data_binding(part: &Part<'_>, report_data: &[u8; 64], nonce: &[u8; 32]) -> Outcome {
    let algo = match SigningAlgo::of(part) {
        Ok(a) => a,
        Err(e) => return Outcome::Fail(e),
    };
    let key = match signing_key_bytes(part, algo) {
        Ok(k) => k,
        Err(e) => return Outcome::Fail(e),
    };
    let fingerprint = match tls_fingerprint(part) {
        None => None,
        Some(Ok(fp)) => Some(fp),
        Some(Err(e)) => return Outcome::Fail(e),
    };
    let key_name = match algo {
        SigningAlgo::Ecdsa => "signing address",
        SigningAlgo::Ed25519 => "ed25519 public key",
    };
    let prefix = if algo == SigningAlgo::Ecdsa { "0x" } else { "" };
    let key_text = format!("{key_name} {prefix}{}", hexutil::lower(&key));
    // What the first half holds: in a pass reason with the key, in a failure without it (the
    // failure shows both byte strings instead).
    let (expected_first, first_meaning, first_half) = match fingerprint {
        None => {
            let mut padded = [0u8; 32];
            if let Some(head) = padded.get_mut(..key.len()) {
                head.copy_from_slice(&key);
            }
            (
                padded,
                format!("{key_text} zero-padded"),
                key_name.to_string(),
            )
        }
        Some(fp) => {
            let digest: [u8; 32] = Sha256::new()
                .chain_update(&key)
                .chain_update(fp)
                .finalize()
                .into();
            let meaning = format!(
                "sha256({key_text} ‖ tls fingerprint {})",
                hexutil::lower(&fp)
            );
            (digest, meaning.clone(), meaning)
        }
    };
    let (found_first, found_second) = report_data.split_at(32);
    let mut differences = Vec::new();
    if found_first != expected_first {
        differences.push(format!(
            "first half ({first_half}): expected {}, found {}",
            hexutil::lower(&expected_first),
            hexutil::lower(found_first)
        ));
    }
    if found_second != nonce {
        let mut reason = format!(
            "second half (nonce): expected {}, found {}",
            hexutil::lower(nonce),
            hexutil::lower(found_second)
        );
        let echoed = ["nonce", "request_nonce"].iter().any(|k| {
            part.str_field(k)
                .and_then(|s| hexutil::decode(s).ok())
                .is_some_and(|b| b == nonce)
        });
        if echoed {
            reason.push_str(
                " (the response echoes the nonce in a json field, which proves nothing: the quote is bound to another nonce)",
            );
        }
        differences.push(reason);
    }
    if differences.is_empty() {
        Outcome::Pass(format!("reportdata = {first_meaning} ‖ nonce"))
    } else {
        Outcome::Fail(differences.join("; "))
    }
}

/// The Ethereum address of an uncompressed secp256k1 public key (64 bytes x‖y, or 65 with 0x04).
pub fn ethereum_address(public_key: &[u8]) -> Option<[u8; 20]> {
    let xy = match public_key.len() {
        64 => public_key,
        65 if public_key.first() == Some(&0x04) => public_key.get(1..)?,
        _ => return None,
    };
    let hash = Keccak256::digest(xy);
    hash.get(12..32).and_then(|s| <[u8; 20]>::try_from(s).ok())
}

/// `signing_key_address`, when the report gives `signing_public_key`: the key must belong to the
/// signing address. Returns `None` when the report has no public key (the check is then omitted).
pub fn signing_key_address(part: &Part<'_>) -> Option<Outcome> {
    // Absent (or null) means not given; anything else that is not a string is a broken key,
    // never a reason to skip the check.
    let key_text = match part.fields.get("signing_public_key")? {
        serde_json::Value::Null => return None,
        serde_json::Value::String(text) => text,
        other => {
            return Some(Outcome::Fail(format!(
                "signing_public_key: expected a hex string, found {}",
                super::bundle::json_kind(other)
            )));
        }
    };
    let outcome = (|| {
        let algo = SigningAlgo::of(part)?;
        let address = signing_key_bytes(part, algo)?;
        let key =
            hexutil::decode(key_text).map_err(|e| format!("signing_public_key is not hex: {e}"))?;
        match algo {
            SigningAlgo::Ecdsa => {
                let derived = ethereum_address(&key).ok_or_else(|| {
                    format!(
                        "signing_public_key: expected 64 bytes x‖y (or 65 with 0x04), found {} bytes",
                        key.len()
                    )
                })?;
                if derived.as_slice() == address.as_slice() {
                    Ok(format!(
                        "keccak256(signing_public_key) gives the signing address 0x{}",
                        hexutil::lower(&address)
                    ))
                } else {
                    Err(format!(
                        "keccak256(signing_public_key): expected address 0x{}, found 0x{}",
                        hexutil::lower(&address),
                        hexutil::lower(&derived)
                    ))
                }
            }
            SigningAlgo::Ed25519 => {
                if key == address {
                    Ok("the ed25519 public key equals the signing address".to_string())
                } else {
                    Err(format!(
                        "ed25519 signing_public_key: expected {} (the signing address), found {}",
                        hexutil::lower(&address),
                        hexutil::lower(&key)
                    ))
                }
            }
        }
    })();
    Some(match outcome {
        Ok(reason) => Outcome::Pass(reason),
        Err(reason) => Outcome::Fail(reason),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use serde_json::{Map, Value, json};

    use super::*;
    use crate::verdict::State;

    const NONCE: [u8; 32] = [7; 32];

    fn report(fields: Value) -> Map<String, Value> {
        fields.as_object().cloned().unwrap()
    }

    /// REPORTDATA as a NEAR node computes it: sha256(key ‖ fingerprint) ‖ nonce.
    fn tls_report_data(key: &[u8], fingerprint: &[u8; 32]) -> [u8; 64] {
        let mut out = [0u8; 64];
        out[..32].copy_from_slice(
            &Sha256::new()
                .chain_update(key)
                .chain_update(fingerprint)
                .finalize(),
        );
        out[32..].copy_from_slice(&NONCE);
        out
    }

    #[test]
    fn an_ed25519_key_with_a_tls_fingerprint_is_bound_through_sha256() {
        let key = [0x11u8; 32];
        let fp = [0x22u8; 32];
        let fields = report(json!({
            "signing_algo": "ed25519",
            "signing_address": hexutil::lower(&key),
            "tls_cert_fingerprint": hexutil::lower(&fp),
        }));
        let part = Part::new(String::new(), &fields);
        let outcome = report_data_binding(&part, &tls_report_data(&key, &fp), &NONCE);
        assert_eq!(outcome.state(), State::Pass, "{outcome:?}");

        // The same quote against a report naming another certificate fails on the first half.
        let mut other = fields.clone();
        other.insert(
            "tls_cert_fingerprint".into(),
            json!(hexutil::lower(&[0x23u8; 32])),
        );
        let part = Part::new(String::new(), &other);
        let outcome = report_data_binding(&part, &tls_report_data(&key, &fp), &NONCE);
        assert_eq!(outcome.state(), State::Fail);
        let Outcome::Fail(reason) = outcome else {
            unreachable!()
        };
        assert!(
            reason.starts_with("first half (sha256(ed25519 public key"),
            "{reason}"
        );
    }

    #[test]
    fn a_mixed_case_address_must_carry_its_eip55_checksum() {
        // EIP-55's own test vector.
        let good = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";
        let bytes = hexutil::decode(good).unwrap();
        assert_eq!(format!("0x{}", eip55(&bytes)), good);
        let key = |text: &str| {
            let fields = report(json!({ "signing_algo": "ecdsa", "signing_address": text }));
            signing_key_bytes(&Part::new(String::new(), &fields), SigningAlgo::Ecdsa)
        };
        assert_eq!(key(good).unwrap(), bytes);
        assert_eq!(key(&good.to_ascii_lowercase()).unwrap(), bytes);
        assert_eq!(key(&good[2..].to_ascii_uppercase()).unwrap(), bytes);
        // One letter's case changed: the same bytes, a broken checksum.
        let bad = good.replacen("aA", "AA", 1);
        assert_eq!(
            key(&bad).unwrap_err(),
            format!(
                "signing_address: mixed case with a wrong eip-55 checksum: expected {good}, found {bad}"
            )
        );
    }

    #[test]
    fn an_ecdsa_address_with_a_fingerprint_hashes_the_20_address_bytes() {
        let address = [0x33u8; 20];
        let fp = [0x44u8; 32];
        let fields = report(json!({
            "signing_algo": "ecdsa",
            "signing_address": format!("0x{}", hexutil::lower(&address)),
            "tls_cert_fingerprint": hexutil::lower(&fp),
        }));
        let part = Part::new(String::new(), &fields);
        let outcome = report_data_binding(&part, &tls_report_data(&address, &fp), &NONCE);
        assert_eq!(outcome.state(), State::Pass, "{outcome:?}");
        // Zero-padding the address (the binding without TLS) is not accepted for such a part.
        let mut padded = [0u8; 64];
        padded[..20].copy_from_slice(&address);
        padded[32..].copy_from_slice(&NONCE);
        assert_eq!(
            report_data_binding(&part, &padded, &NONCE).state(),
            State::Fail
        );
    }
}
