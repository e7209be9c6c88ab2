//! The signing keys a simulated TD holds (a secp256k1 key as vllm-proxy generates, and an ed25519
//! key as NEAR AI's proxies use), the report fields naming them, and the REPORTDATA that binds
//! one of them to a nonce and, for NEAR parts, to a TLS certificate fingerprint.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use k256::ecdsa::SigningKey;
use sha2::{Digest, Sha256};

use super::format::SigningAlgo;
use teewatch_verify::binding::ethereum_address;
use teewatch_verify::hexutil;

/// A key could not be generated (the system random source failed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("generating an ed25519 key failed")]
pub struct KeyError;

/// Generates an ed25519 key pair through its PKCS#8 form, the only generation aws-lc-rs offers
/// on every version we accept.
pub fn generate_ed25519() -> Result<Ed25519KeyPair, KeyError> {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| KeyError)?;
    Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|_| KeyError)
}

/// The 32-byte public key of an ed25519 key pair (zeros if aws-lc-rs ever returned another
/// length, which would then fail every binding check rather than panic here).
pub fn ed25519_public(key: &Ed25519KeyPair) -> [u8; 32] {
    <[u8; 32]>::try_from(key.public_key().as_ref()).unwrap_or([0; 32])
}

/// The 20-byte Ethereum address of a secp256k1 key.
pub fn address_of(key: &SigningKey) -> [u8; 20] {
    let point = key.verifying_key().to_encoded_point(false);
    ethereum_address(point.as_bytes()).unwrap_or_default()
}

/// Signs the UTF-8 bytes of `text` with ed25519: 128 lowercase hex characters, no prefix.
pub fn ed25519_sign_hex(key: &Ed25519KeyPair, text: &str) -> String {
    hexutil::lower(key.sign(text.as_bytes()).as_ref())
}

/// Both keys of one TD.
pub struct NodeKeys {
    pub ecdsa: SigningKey,
    pub address: [u8; 20],
    pub ed25519: Ed25519KeyPair,
    pub ed25519_public: [u8; 32],
}

impl NodeKeys {
    pub fn generate() -> Result<NodeKeys, KeyError> {
        let ecdsa = SigningKey::random(&mut rand::thread_rng());
        let address = address_of(&ecdsa);
        let ed25519 = generate_ed25519()?;
        let ed25519_public = ed25519_public(&ed25519);
        Ok(NodeKeys {
            ecdsa,
            address,
            ed25519,
            ed25519_public,
        })
    }

    /// The uncompressed secp256k1 public key without its 0x04 prefix (x ‖ y, 64 bytes).
    pub fn public_key_xy(&self) -> Vec<u8> {
        let point = self.ecdsa.verifying_key().to_encoded_point(false);
        point
            .as_bytes()
            .get(1..)
            .map(<[u8]>::to_vec)
            .unwrap_or_default()
    }

    /// The raw bytes REPORTDATA binds: the 20-byte address, or the 32-byte ed25519 public key.
    pub fn key_bytes(&self, algo: SigningAlgo) -> Vec<u8> {
        match algo {
            SigningAlgo::Ecdsa => self.address.to_vec(),
            SigningAlgo::Ed25519 => self.ed25519_public.to_vec(),
        }
    }

    /// `signing_address` as a report and a signature answer carry it: `0x` + address hex for
    /// ECDSA, the bare public key hex for ed25519.
    pub fn signing_address(&self, algo: SigningAlgo) -> String {
        match algo {
            SigningAlgo::Ecdsa => format!("0x{}", hexutil::lower(&self.address)),
            SigningAlgo::Ed25519 => hexutil::lower(&self.ed25519_public),
        }
    }

    /// `signing_public_key`: x ‖ y for ECDSA, the 32-byte key for ed25519.
    pub fn signing_public_key(&self, algo: SigningAlgo) -> String {
        match algo {
            SigningAlgo::Ecdsa => hexutil::lower(&self.public_key_xy()),
            SigningAlgo::Ed25519 => hexutil::lower(&self.ed25519_public),
        }
    }
}

/// REPORTDATA: the first half is SHA256(key ‖ fingerprint) when a TLS fingerprint is bound, else
/// the key bytes right-padded with zeros; the second half is the nonce.
pub fn report_data(key: &[u8], fingerprint: Option<&[u8; 32]>, nonce: &[u8; 32]) -> [u8; 64] {
    let mut out = [0u8; 64];
    let mut first = [0u8; 32];
    match fingerprint {
        Some(fp) => {
            let mut hasher = Sha256::new();
            hasher.update(key);
            hasher.update(fp);
            first = hasher.finalize().into();
        }
        None => {
            for (o, k) in first.iter_mut().zip(key.iter()) {
                *o = *k;
            }
        }
    }
    let (head, tail) = out.split_at_mut(32);
    head.copy_from_slice(&first);
    tail.copy_from_slice(nonce);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{ED25519, UnparsedPublicKey};

    #[test]
    fn report_data_pads_or_hashes() {
        let keys = NodeKeys::generate().unwrap();
        let nonce = [7u8; 32];
        let padded = report_data(&keys.key_bytes(SigningAlgo::Ecdsa), None, &nonce);
        assert_eq!(&padded[..20], &keys.address);
        assert!(padded[20..32].iter().all(|b| *b == 0));
        assert_eq!(&padded[32..], &nonce);
        let fp = [9u8; 32];
        let bound = report_data(&keys.key_bytes(SigningAlgo::Ed25519), Some(&fp), &nonce);
        let expected = Sha256::digest([&keys.ed25519_public[..], &fp[..]].concat());
        assert_eq!(&bound[..32], expected.as_slice());
        assert_eq!(&bound[32..], &nonce);
    }

    #[test]
    fn report_fields_name_the_key() {
        let keys = NodeKeys::generate().unwrap();
        let ed = keys.signing_address(SigningAlgo::Ed25519);
        assert_eq!(ed.len(), 64);
        assert!(!ed.starts_with("0x"));
        assert_eq!(ed, keys.signing_public_key(SigningAlgo::Ed25519));
        let ecdsa = keys.signing_address(SigningAlgo::Ecdsa);
        assert_eq!(ecdsa.len(), 42);
        assert_eq!(keys.signing_public_key(SigningAlgo::Ecdsa).len(), 128);
    }

    #[test]
    fn ed25519_signature_verifies() {
        let keys = NodeKeys::generate().unwrap();
        let text = "m:aa:bb";
        let signature = hexutil::decode(&ed25519_sign_hex(&keys.ed25519, text)).unwrap();
        UnparsedPublicKey::new(&ED25519, keys.ed25519_public)
            .verify(text.as_bytes(), &signature)
            .unwrap();
    }
}
