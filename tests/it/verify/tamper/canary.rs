//! Rows on signed canary chats and the signing key: request and response bodies (a duplicate
//! key among them), the signed text, the signature bytes, the signing address in every format
//! trick (no `0x`, case, a wrong EIP-55 checksum, zero padding, a wrong length, another part's),
//! and a nonce echoed by the provider but not bound by the quote.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use serde_json::{Value, json};

use super::edit::*;
use super::{Base, DSTACK, ECDSA, ED25519, Row, fail, same};

const NEARAI: Base = Base::Real("nearai-canary");
const HASHES: &str = "canary_hashes";
const SIGNATURE: &str = "canary_signature";
const C0: &str = "/canary/0";
const C1: &str = "/canary/1";

/// The EIP-55 checksummed form of a lower-case `0x` address, with every letter's case then
/// inverted: the same 20 bytes, a checksum that is wrong at every letter.
fn wrong_checksum(address: &str) -> String {
    let hex = address.trim_start_matches("0x").to_ascii_lowercase();
    let hash = keccak256(hex.as_bytes());
    let mixed: String = hex
        .chars()
        .enumerate()
        .map(|(i, c)| {
            let nibble = (hash[i / 2] >> if i % 2 == 0 { 4 } else { 0 }) & 0x0f;
            // EIP-55 upper-cases a letter when its nibble is >= 8; this does the opposite.
            if c.is_ascii_alphabetic() && nibble < 8 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect();
    format!("0x{mixed}")
}

/// Keccak-256, from the hasher type the verifier's EIP-191 digest uses (the tests do not depend
/// on a Keccak crate of their own).
fn keccak256(data: &[u8]) -> Vec<u8> {
    use sha2::Digest as _;
    fn fresh<T: Default>(_: &T) -> T {
        T::default()
    }
    let mut hasher = fresh(&teewatch::verify::canary::eip191_digest(""));
    hasher.update(data);
    hasher.finalize().to_vec()
}

fn address_edit(v: &mut Value, part: &str, f: impl FnOnce(&str) -> String) {
    let at = format!("{part}/signing_address");
    let old = get(v, &at);
    set(v, &at, Value::String(f(old.as_str().unwrap())));
}

/// Teewatch's nonce and every echo of it replaced by a fresh one: an old answer replayed with
/// its echo updated, the quotes still binding the old nonce.
fn echo_new_nonce(v: &mut Value, parts: &[&str]) {
    let new = json!("11".repeat(32));
    set(v, "/nonce", new.clone());
    for part in parts {
        set(v, &format!("{part}/request_nonce"), new.clone());
    }
}

pub fn rows() -> Vec<Row> {
    vec![
        fail(
            "canary response body: one character of the answer",
            ECDSA,
            |v| replace_text(v, &format!("{C0}/response_body"), "\"ok", "\"no"),
            HASHES,
            "canary:0",
            "response hash differs",
        ),
        fail(
            "canary request body: one character of the prompt",
            ECDSA,
            |v| {
                replace_text(
                    v,
                    &format!("{C0}/request_body"),
                    "single word",
                    "single werd",
                )
            },
            HASHES,
            "canary:0",
            "request hash differs",
        ),
        fail(
            "canary response body: a duplicate choices key before the signed one",
            DSTACK,
            |v| {
                replace_text(
                    v,
                    &format!("{C0}/response_body"),
                    "\"choices\":",
                    "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"send your key to evil.example\"}}],\"choices\":",
                )
            },
            HASHES,
            "canary:0",
            "response body has a duplicate key `choices`",
        ),
        fail(
            "canary streamed response: one character of a chunk",
            ED25519,
            |v| replace_text(v, &format!("{C1}/response_body"), "data: {", "data:  {"),
            HASHES,
            "canary:1",
            "response hash differs",
        ),
        fail(
            "canary response body: one character",
            NEARAI,
            |v| replace_text(v, &format!("{C0}/response_body"), "\"id\"", "\"iD\""),
            HASHES,
            "canary:0",
            "response hash differs",
        ),
        fail(
            "signed text: a bit of the request hash",
            ECDSA,
            |v| {
                let at = format!("{C0}/signature/text");
                let text = get(v, &at).as_str().unwrap().to_string();
                let (model, rest) = text.split_once(':').unwrap();
                let first = if rest.starts_with('0') { "1" } else { "0" };
                set(v, &at, json!(format!("{model}:{first}{}", &rest[1..])));
            },
            HASHES,
            "canary:0",
            "request hash differs",
        ),
        fail(
            "signed text: the model name changed",
            ED25519,
            |v| {
                replace_text(
                    v,
                    &format!("{C0}/signature/text"),
                    "sim-model-0:",
                    "sim-model-1:",
                )
            },
            SIGNATURE,
            "canary:0",
            "verifies under none of the attested keys",
        ),
        fail(
            "signed text: a bit of the response hash",
            DSTACK,
            |v| {
                let at = format!("{C1}/signature/text");
                let text = get(v, &at).as_str().unwrap().to_string();
                let last = if text.ends_with('0') { "1" } else { "0" };
                set(v, &at, json!(format!("{}{last}", &text[..text.len() - 1])));
            },
            HASHES,
            "canary:1",
            "response hash differs",
        ),
        fail(
            "canary signature: a bit of r",
            ECDSA,
            |v| hex_flip(v, &format!("{C0}/signature/signature"), 10),
            SIGNATURE,
            "canary:0",
            "expected the signing address of an attested node",
        ),
        fail(
            "canary signature: recovery id 27 and 28 swapped",
            DSTACK,
            |v| hex_edit(v, &format!("{C0}/signature/signature"), |s| s[64] ^= 0x07),
            SIGNATURE,
            "canary:0",
            "expected the signing address of an attested node",
        ),
        fail(
            "canary signature: a bit of an ed25519 signature",
            ED25519,
            |v| hex_flip(v, &format!("{C1}/signature/signature"), 33),
            SIGNATURE,
            "canary:1",
            "verifies under none of the attested keys",
        ),
        same(
            "canary signature claims another attested key (model 1's for model 0's chat)",
            ED25519,
            |v| {
                let other = get(v, &format!("{C1}/signature/signing_address"));
                set(v, &format!("{C0}/signature/signing_address"), other);
            },
            SIGNATURE,
            "canary:0",
            "the attested signing key of model:0 (the response claims 3fe54994",
            "the claim is not believed: the key is found by verifying, and the claim is shown beside it",
        ),
        fail(
            "canary signature: signing_algo ecdsa made ed25519",
            ECDSA,
            |v| set(v, &format!("{C0}/signature/signing_algo"), json!("ed25519")),
            SIGNATURE,
            "canary:0",
            "ed25519 signature: expected 64 bytes, found 65",
        ),
        // ---- the attested signing address ---------------------------------------------------
        same(
            "signing address: without its 0x prefix",
            ECDSA,
            |v| address_edit(v, M0, |a| a.trim_start_matches("0x").to_string()),
            "signing_key_address",
            "model:0",
            "gives the signing address 0xd4aaf5051cd3630dda33f7155cebaf5265bbe8ad",
            "the same 20 bytes: addresses are compared as bytes, never as text",
        ),
        same(
            "signing address: upper case",
            ECDSA,
            |v| address_edit(v, M0, |a| format!("0x{}", a[2..].to_ascii_uppercase())),
            "signing_key_address",
            "model:0",
            "gives the signing address 0xd4aaf5051cd3630dda33f7155cebaf5265bbe8ad",
            "the same 20 bytes; eip-55 reads a single-case address as carrying no checksum",
        ),
        fail(
            "signing address: mixed case with a wrong eip-55 checksum",
            ECDSA,
            |v| address_edit(v, GW, wrong_checksum),
            "signing_key_address",
            "gateway",
            "mixed case with a wrong eip-55 checksum",
        ),
        fail(
            "signing address: zero-padded to 32 bytes",
            ECDSA,
            |v| address_edit(v, M0, |a| format!("{a}{}", "0".repeat(24))),
            "signing_key_address",
            "model:0",
            "expected 20 bytes for Ecdsa, found 32",
        ),
        fail(
            "signing address: one byte short",
            ECDSA,
            |v| address_edit(v, M0, |a| a[..a.len() - 2].to_string()),
            "signing_key_address",
            "model:0",
            "expected 20 bytes for Ecdsa, found 19",
        ),
        fail(
            "signing address: the gateway's, on the model",
            ECDSA,
            |v| {
                let gw = get(v, &format!("{GW}/signing_address"));
                set(v, &format!("{M0}/signing_address"), gw);
            },
            "signing_key_address",
            "model:0",
            "keccak256(signing_public_key): expected address 0x21f28a61",
        ),
        fail(
            "signing public key: the gateway's, on the model",
            ECDSA,
            |v| {
                let gw = get(v, &format!("{GW}/signing_public_key"));
                set(v, &format!("{M0}/signing_public_key"), gw);
            },
            "signing_key_address",
            "model:0",
            "keccak256(signing_public_key): expected address 0xd4aaf505",
        ),
        fail(
            "signing address: zero-padded to 32 bytes",
            DSTACK,
            |v| address_edit(v, TOP, |a| format!("{a}{}", "0".repeat(24))),
            "report_data_binding",
            "",
            "expected 20 bytes for Ecdsa, found 32",
        ),
        fail(
            "signing address: another key's",
            DSTACK,
            |v| address_edit(v, TOP, |_| format!("0x{}", "ab".repeat(20))),
            "report_data_binding",
            "",
            "first half (signing address)",
        ),
        same(
            "signing address: upper case hex of an ed25519 key",
            ED25519,
            |v| address_edit(v, M1, |a| a.to_ascii_uppercase()),
            "signing_key_address",
            "model:1",
            "the ed25519 public key equals the signing address",
            "the same 32 bytes, compared as bytes",
        ),
        same(
            "signing address: an ed25519 key with a 0x prefix",
            ED25519,
            |v| address_edit(v, M0, |a| format!("0x{a}")),
            "signing_key_address",
            "model:0",
            "the ed25519 public key equals the signing address",
            "the same 32 bytes, compared as bytes",
        ),
        // ---- the nonce ----------------------------------------------------------------------
        fail(
            "nonce echoed but not bound: teewatch's nonce and the echoes made a fresh one",
            ECDSA,
            |v| echo_new_nonce(v, &[GW, M0]),
            "report_data_binding",
            "gateway",
            "the quote is bound to another nonce",
        ),
        fail(
            "nonce echoed but not bound: teewatch's nonce and the echo made a fresh one",
            DSTACK,
            |v| echo_new_nonce(v, &[TOP]),
            "report_data_binding",
            "",
            "second half (nonce)",
        ),
        fail(
            "canary request: the nonce in the prompt changed, hashes kept",
            DSTACK,
            |v| {
                let nonce = get(v, "/nonce").as_str().unwrap().to_string();
                replace_text(v, &format!("{C0}/request_body"), &nonce, &"22".repeat(32));
            },
            "canary_fresh",
            "canary:0",
            "the request body does not contain this check's nonce",
        ),
        fail(
            "signing_algo: the model's ecdsa made ed25519",
            ECDSA,
            |v| set(v, &format!("{M0}/signing_algo"), json!("ed25519")),
            "signing_key_address",
            "model:0",
            "signing_address: expected 32 bytes for Ed25519, found 20",
        ),
    ]
}
