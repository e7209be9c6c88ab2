//! The faults the simulator injects on demand, by name.
//!
//! Each fault imitates one way a real provider, PCCS or NRAS can go wrong, so that a test (or an
//! operator watching the demo) sees the specific check it should trip. Names are stable: they are
//! used by `teewatch sim --fault`, by the admin endpoint and by the fault-table test.

use std::fmt;
use std::str::FromStr;

/// One injectable fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// A new MRTD (another OS image).
    DriftMrtd,
    /// A new app compose (another application), hence compose hash and MRCONFIGID.
    DriftCompose,
    /// A new GPU measurement block (other GPU firmware).
    DriftGpu,
    /// The nonce is echoed in the JSON but the quote and GPU evidence are bound to another one
    /// (NanoGPT's real behaviour in March 2026).
    UnboundNonce,
    /// REPORTDATA carries another signing address than the one the report names.
    WrongAddress,
    BadQuoteSignature,
    TcbOutdated,
    TcbRevoked,
    DebugTd,
    BadGpuSignature,
    /// NRAS answers, but says the GPUs failed.
    NrasFalse,
    NrasDown,
    NrasSlow,
    PccsDown,
    /// The JWKS is served by a key signed by an untrusted intermediate.
    JwksUntrusted,
    /// The signature endpoint never finds the chat.
    SignatureNever,
    /// The chat is signed by a key no attested node holds.
    SignatureOtherKey,
    /// A new chat is answered with an old chat's bytes and signature.
    CanaryReplay,
    Http429,
    Http500,
    Http503,
    /// The attestation endpoint never answers in time.
    Timeout,
    TruncatedJson,
    MalformedJson,
    /// A 50 MB attestation body.
    HugeBody,
    /// The part terminating TLS (the NEAR gateway, or the answering node of a direct NEAR
    /// response) names, and binds into REPORTDATA, the fingerprint of a key other than the
    /// served certificate's: the quote is consistent, only the TLS peer disagrees. No effect on
    /// formats without a TLS binding.
    TlsWrongPeer,
    /// NEAR formats: the compose manager's log gains a `compose_up` of another compose file,
    /// hashed and quoted correctly: a legitimate redeploy, which a verifier must report as
    /// drift of the deployed file, not as a failure.
    Redeploy,
    /// NEAR formats: the compose manager's log gains a `docker_restart` of the model's
    /// container, hashed and quoted correctly.
    Restart,
    /// NEAR formats: an action is edited after `actions_hash` was computed (the latest
    /// `compose_up` names the usual file while the manager hashed another), so the hash, which
    /// the quote binds, no longer matches the served actions.
    ActionsTampered,
    /// NEAR gateway format with ed25519 keys: every `ohttp_attestation` is signed by a key no
    /// part attested, while `signing_key` still names the attested key.
    OhttpWrongKey,
}

/// Every fault, for listings and the fault-table test.
pub const ALL_FAULTS: [Fault; 30] = [
    Fault::DriftMrtd,
    Fault::DriftCompose,
    Fault::DriftGpu,
    Fault::UnboundNonce,
    Fault::WrongAddress,
    Fault::BadQuoteSignature,
    Fault::TcbOutdated,
    Fault::TcbRevoked,
    Fault::DebugTd,
    Fault::BadGpuSignature,
    Fault::NrasFalse,
    Fault::NrasDown,
    Fault::NrasSlow,
    Fault::PccsDown,
    Fault::JwksUntrusted,
    Fault::SignatureNever,
    Fault::SignatureOtherKey,
    Fault::CanaryReplay,
    Fault::Http429,
    Fault::Http500,
    Fault::Http503,
    Fault::Timeout,
    Fault::TruncatedJson,
    Fault::MalformedJson,
    Fault::HugeBody,
    Fault::TlsWrongPeer,
    Fault::Redeploy,
    Fault::Restart,
    Fault::ActionsTampered,
    Fault::OhttpWrongKey,
];

impl Fault {
    pub fn name(self) -> &'static str {
        match self {
            Fault::DriftMrtd => "drift-mrtd",
            Fault::DriftCompose => "drift-compose",
            Fault::DriftGpu => "drift-gpu",
            Fault::UnboundNonce => "unbound-nonce",
            Fault::WrongAddress => "wrong-address",
            Fault::BadQuoteSignature => "bad-quote-signature",
            Fault::TcbOutdated => "tcb-outdated",
            Fault::TcbRevoked => "tcb-revoked",
            Fault::DebugTd => "debug-td",
            Fault::BadGpuSignature => "bad-gpu-signature",
            Fault::NrasFalse => "nras-false",
            Fault::NrasDown => "nras-down",
            Fault::NrasSlow => "nras-slow",
            Fault::PccsDown => "pccs-down",
            Fault::JwksUntrusted => "jwks-untrusted",
            Fault::SignatureNever => "signature-never",
            Fault::SignatureOtherKey => "signature-other-key",
            Fault::CanaryReplay => "canary-replay",
            Fault::Http429 => "http-429",
            Fault::Http500 => "http-500",
            Fault::Http503 => "http-503",
            Fault::Timeout => "timeout",
            Fault::TruncatedJson => "truncated-json",
            Fault::MalformedJson => "malformed-json",
            Fault::HugeBody => "huge-body",
            Fault::TlsWrongPeer => "tls-wrong-peer",
            Fault::Redeploy => "redeploy",
            Fault::Restart => "restart",
            Fault::ActionsTampered => "actions-tampered",
            Fault::OhttpWrongKey => "ohttp-wrong-key",
        }
    }

    /// Faults of the shared services (PCCS, NRAS, JWKS) rather than of one model. A TCB status
    /// is what the PCCS's TCB info says, so it is one of them.
    pub fn is_service_wide(self) -> bool {
        matches!(
            self,
            Fault::NrasFalse
                | Fault::NrasDown
                | Fault::NrasSlow
                | Fault::PccsDown
                | Fault::JwksUntrusted
                | Fault::TcbOutdated
                | Fault::TcbRevoked
        )
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown fault name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown fault \"{0}\"; expected one of {names}", names = ALL_FAULTS.iter().map(|f| f.name()).collect::<Vec<_>>().join(", "))]
pub struct UnknownFault(pub String);

impl FromStr for Fault {
    type Err = UnknownFault;

    fn from_str(s: &str) -> Result<Fault, UnknownFault> {
        ALL_FAULTS
            .iter()
            .copied()
            .find(|f| f.name() == s)
            .ok_or_else(|| UnknownFault(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        let mut names: Vec<&str> = ALL_FAULTS.iter().map(|f| f.name()).collect();
        for fault in ALL_FAULTS {
            assert_eq!(fault.name().parse::<Fault>(), Ok(fault));
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL_FAULTS.len());
        assert!("nope".parse::<Fault>().is_err());
    }
}
