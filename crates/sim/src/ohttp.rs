//! NEAR AI's OHTTP fields: each TD's HPKE key configuration (RFC 9458 §3) and the ed25519
//! signature by the TD's attested key over its raw bytes.
//!
//! OHTTP encrypts a prompt end to end to the key in `key_config`; the signature is what ties that
//! key to the attested one, so the simulator signs it exactly as NEAR does (`ohttp_attestation`,
//! REFERENCE.md §1), or, under the `ohttp-wrong-key` fault, with a key no TD attested while still
//! naming the attested one.

use aws_lc_rs::agreement::{PrivateKey, X25519};
use aws_lc_rs::signature::Ed25519KeyPair;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use teewatch_verify::hexutil;

/// HPKE KEM DHKEM(X25519, HKDF-SHA256).
pub const KEM_X25519_HKDF_SHA256: u16 = 0x0020;
/// HPKE KDF HKDF-SHA256.
pub const KDF_HKDF_SHA256: u16 = 0x0001;
/// HPKE AEAD AES-128-GCM.
pub const AEAD_AES_128_GCM: u16 = 0x0001;
/// HPKE AEAD ChaCha20Poly1305.
pub const AEAD_CHACHA20_POLY1305: u16 = 0x0003;

/// The X25519 key could not be derived.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("deriving the ohttp x25519 key failed")]
pub struct OhttpError;

/// The key configuration of the TD named `label`, the same at every start: key id (u8), KEM id
/// (u16), the 32-byte X25519 public key, then the length (u16) and list of (KDF, AEAD) suites,
/// all big-endian.
pub fn key_config(label: &str) -> Result<Vec<u8>, OhttpError> {
    let seed: [u8; 32] = Sha256::digest(format!("teewatch-sim/ohttp/{label}").as_bytes()).into();
    let private = PrivateKey::from_private_key(&X25519, &seed).map_err(|_| OhttpError)?;
    let public = private.compute_public_key().map_err(|_| OhttpError)?;
    let suites = [
        (KDF_HKDF_SHA256, AEAD_AES_128_GCM),
        (KDF_HKDF_SHA256, AEAD_CHACHA20_POLY1305),
    ];
    let mut out = Vec::with_capacity(3 + 32 + 2 + 4 * suites.len());
    // The key id only has to tell a TD's keys apart; take it from the seed so parts differ.
    out.push(seed.first().copied().unwrap_or(0));
    out.extend_from_slice(&KEM_X25519_HKDF_SHA256.to_be_bytes());
    out.extend_from_slice(public.as_ref());
    let suites_len = u16::try_from(4 * suites.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&suites_len.to_be_bytes());
    for (kdf, aead) in suites {
        out.extend_from_slice(&kdf.to_be_bytes());
        out.extend_from_slice(&aead.to_be_bytes());
    }
    Ok(out)
}

/// `ohttp_attestation`: `signing_key` names the TD's attested ed25519 key, `signature` is made by
/// `signer` over the raw key configuration bytes (the attested key itself unless a fault says
/// otherwise).
pub fn attestation(key_config: &[u8], attested: &[u8; 32], signer: &Ed25519KeyPair) -> Value {
    json!({
        "signing_algo": "ed25519",
        "signing_key": hexutil::lower(attested),
        "key_config": hexutil::lower(key_config),
        "signature": hexutil::lower(signer.sign(key_config).as_ref()),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn key_config_is_rfc9458_shaped_and_per_part() {
        let config = key_config("TEE/m/node-0").unwrap();
        assert_eq!(config.len(), 1 + 2 + 32 + 2 + 8);
        assert_eq!(&config[1..3], &[0x00, 0x20]);
        assert_eq!(&config[35..37], &[0x00, 0x08]);
        assert_eq!(&config[37..], &[0, 1, 0, 1, 0, 1, 0, 3]);
        assert_eq!(config, key_config("TEE/m/node-0").unwrap());
        assert_ne!(config[3..35], key_config("TEE/m/node-1").unwrap()[3..35]);
    }
}
