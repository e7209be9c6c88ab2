//! The attestation formats a simulated model can serve, and the signing algorithm a request asks
//! for.
//!
//! `Dstack` is the dstack / vllm-proxy report NanoGPT and Phala serve; `NearGateway` and
//! `NearDirect` are NEAR AI cloud's two shapes (a gateway CVM in front of the model nodes, or the
//! model node answering itself, with the compose manager that runs in its TD), both binding a TLS
//! certificate fingerprint into REPORTDATA. `Chutes` and `Tinfoil` are shape stand-ins for formats
//! teewatch cannot verify: only their discriminating keys (`attestation_type` and `format`) come
//! from real captures (REFERENCE.md §1), every other byte is random, so a verifier can do no more
//! than recognise them.

use std::fmt;
use std::str::FromStr;

/// The attestation format of one simulated model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum SimFormat {
    /// dstack / vllm-proxy: the node's report at top level, `all_attestations` with several.
    #[default]
    Dstack,
    /// NEAR AI through its gateway: `gateway_attestation` and `model_attestations`.
    NearGateway,
    /// NEAR AI model node answering directly, with its compose manager's attestation.
    NearDirect,
    /// A Chutes-shaped stand-in (not verifiable).
    Chutes,
    /// A Tinfoil-shaped stand-in (not verifiable).
    Tinfoil,
}

/// Every format, for listings and the name test.
pub const ALL_FORMATS: [SimFormat; 5] = [
    SimFormat::Dstack,
    SimFormat::NearGateway,
    SimFormat::NearDirect,
    SimFormat::Chutes,
    SimFormat::Tinfoil,
];

impl SimFormat {
    pub fn name(self) -> &'static str {
        match self {
            SimFormat::Dstack => "dstack",
            SimFormat::NearGateway => "near-gateway",
            SimFormat::NearDirect => "near-direct",
            SimFormat::Chutes => "chutes",
            SimFormat::Tinfoil => "tinfoil",
        }
    }

    /// NEAR AI's formats, which default to ed25519 and sign `<model>:<req>:<resp>`.
    pub fn is_near(self) -> bool {
        matches!(self, SimFormat::NearGateway | SimFormat::NearDirect)
    }

    /// Whether chats of this format are signed at all: the stand-ins only answer.
    pub fn signs_chats(self) -> bool {
        !matches!(self, SimFormat::Chutes | SimFormat::Tinfoil)
    }

    /// The signing algorithm used when a request names none: NEAR proxies default to ed25519,
    /// vllm-proxy to ECDSA.
    pub fn default_algo(self) -> SigningAlgo {
        if self.is_near() {
            SigningAlgo::Ed25519
        } else {
            SigningAlgo::Ecdsa
        }
    }
}

impl fmt::Display for SimFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown format name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown format \"{0}\"; expected one of {names}", names = ALL_FORMATS.iter().map(|f| f.name()).collect::<Vec<_>>().join(", "))]
pub struct UnknownFormat(pub String);

impl FromStr for SimFormat {
    type Err = UnknownFormat;

    fn from_str(s: &str) -> Result<SimFormat, UnknownFormat> {
        ALL_FORMATS
            .iter()
            .copied()
            .find(|f| f.name() == s)
            .ok_or_else(|| UnknownFormat(s.to_string()))
    }
}

/// The key a report part names and a chat signature is made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SigningAlgo {
    /// secp256k1, EIP-191 signatures, an Ethereum address.
    Ecdsa,
    /// ed25519, the public key as the address.
    Ed25519,
}

impl SigningAlgo {
    pub fn name(self) -> &'static str {
        match self {
            SigningAlgo::Ecdsa => "ecdsa",
            SigningAlgo::Ed25519 => "ed25519",
        }
    }

    /// The `signing_algo` query parameter, or `default` when it is absent; the error is the
    /// `detail` a 400 answer carries.
    pub fn from_query(value: Option<&str>, default: SigningAlgo) -> Result<SigningAlgo, String> {
        match value {
            None => Ok(default),
            Some("ecdsa") => Ok(SigningAlgo::Ecdsa),
            Some("ed25519") => Ok(SigningAlgo::Ed25519),
            Some(other) => Err(format!(
                "signing_algo must be \"ecdsa\" or \"ed25519\", not \"{other}\""
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_names_round_trip() {
        for format in ALL_FORMATS {
            assert_eq!(format.name().parse::<SimFormat>(), Ok(format));
        }
        assert!("near".parse::<SimFormat>().is_err());
        assert_eq!(SimFormat::default(), SimFormat::Dstack);
    }

    #[test]
    fn signing_algo_defaults_by_format() {
        let default = SimFormat::NearDirect.default_algo();
        assert_eq!(
            SigningAlgo::from_query(None, default),
            Ok(SigningAlgo::Ed25519)
        );
        assert_eq!(
            SigningAlgo::from_query(None, SimFormat::Dstack.default_algo()),
            Ok(SigningAlgo::Ecdsa)
        );
        assert_eq!(
            SigningAlgo::from_query(Some("ecdsa"), default),
            Ok(SigningAlgo::Ecdsa)
        );
        assert!(SigningAlgo::from_query(Some("rsa"), default).is_err());
    }
}
