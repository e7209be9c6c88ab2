//! The faults the simulator injects on demand, by name.
//!
//! Each fault imitates one way a real provider, PCCS or NRAS can go wrong, so that a test (or an
//! operator watching the demo) sees the specific check it should trip. Names are stable: they are
//! used by `teewatch sim --fault`, by the admin endpoint and by the fault-table test.
//!
//! A fault is on for every client, or only for one client address ([`FaultSet`]): the
//! simulator then answers that client (a vantage point) differently from the others, as a
//! network path that is intercepted in one region only would.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
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
    /// A rogue TLS terminator on the path: the connection is answered with another certificate
    /// and key (a leaf the served certificate signed, so a client trusting that certificate
    /// accepts it, as a client trusts a mis-issued certificate) while the evidence behind it is
    /// the genuine one, binding the genuine certificate. It is decided at the TLS handshake, so
    /// it applies to every route of the connection and to connections made after it is turned
    /// on; no effect over plain HTTP.
    TlsIntercept,
}

/// Every fault, for listings and the fault-table test.
pub const ALL_FAULTS: [Fault; 31] = [
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
    Fault::TlsIntercept,
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
            Fault::TlsIntercept => "tls-intercept",
        }
    }

    /// Faults of the shared services (PCCS, NRAS, JWKS) rather than of one model. A TCB status
    /// is what the PCCS's TCB info says, so it is one of them; so is a TLS interception, since
    /// every route shares the one listener and the handshake comes before any request names a
    /// model.
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
                | Fault::TlsIntercept
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

/// The faults in force in one place (a model, or the shared services): those on for every
/// client, and those on for one client address only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultSet {
    everyone: BTreeSet<Fault>,
    clients: BTreeMap<IpAddr, BTreeSet<Fault>>,
}

impl FaultSet {
    /// Turns `fault` on or off for every client (`client` `None`) or for one address. The two
    /// are independent: turning a fault off for everyone leaves it on for a client it was
    /// scoped to, and the other way round.
    pub fn set(&mut self, client: Option<IpAddr>, fault: Fault, on: bool) {
        let set = match client {
            None => &mut self.everyone,
            Some(ip) => self.clients.entry(canonical(ip)).or_default(),
        };
        if on {
            set.insert(fault);
        } else {
            set.remove(&fault);
        }
        self.clients.retain(|_, faults| !faults.is_empty());
    }

    /// Whether a request from `client` (`None`: no client, such as the configuration writer)
    /// sees `fault`: on for everyone, or scoped to that address.
    pub fn has(&self, fault: Fault, client: Option<IpAddr>) -> bool {
        self.everyone.contains(&fault)
            || client
                .and_then(|ip| self.clients.get(&canonical(ip)))
                .is_some_and(|faults| faults.contains(&fault))
    }

    /// The faults on for every client.
    pub fn everyone(&self) -> impl Iterator<Item = Fault> + '_ {
        self.everyone.iter().copied()
    }

    /// The faults scoped to each client address.
    pub fn clients(&self) -> impl Iterator<Item = (IpAddr, &BTreeSet<Fault>)> + '_ {
        self.clients.iter().map(|(ip, faults)| (*ip, faults))
    }
}

/// An address as one client: an IPv4 address reaching a dual-stack listener arrives as
/// `::ffff:a.b.c.d`, and must match a fault scoped to `a.b.c.d`.
pub fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// A fault on at start for one client address (`SimOptions::client_faults`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFault {
    pub client: IpAddr,
    /// The model, or `None` for every model (ignored for service-wide faults).
    pub model: Option<String>,
    pub fault: Fault,
}

/// Reads the `client` of a fault request: an IP address, as the simulator sees a TCP peer.
pub fn parse_client(text: &str) -> Result<IpAddr, String> {
    text.trim().parse::<IpAddr>().map(canonical).map_err(|_| {
        format!("client: expected an ip address such as \"127.0.0.2\", found \"{text}\"")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_scoped_to_a_client_is_seen_by_that_client_only() {
        let a = IpAddr::from([127, 0, 0, 1]);
        let b = IpAddr::from([127, 0, 0, 2]);
        let mut set = FaultSet::default();
        set.set(Some(b), Fault::DriftMrtd, true);
        assert!(set.has(Fault::DriftMrtd, Some(b)));
        assert!(!set.has(Fault::DriftMrtd, Some(a)));
        assert!(!set.has(Fault::DriftMrtd, None));
        // The same client reaching a dual-stack listener is the same client.
        let mapped = IpAddr::V6(std::net::Ipv4Addr::new(127, 0, 0, 2).to_ipv6_mapped());
        assert!(set.has(Fault::DriftMrtd, Some(mapped)));
        // On for everyone: every client and no client; off for everyone leaves the scoped one.
        set.set(None, Fault::DriftMrtd, true);
        assert!(set.has(Fault::DriftMrtd, Some(a)) && set.has(Fault::DriftMrtd, None));
        set.set(None, Fault::DriftMrtd, false);
        assert!(!set.has(Fault::DriftMrtd, Some(a)));
        assert!(set.has(Fault::DriftMrtd, Some(b)));
        set.set(Some(b), Fault::DriftMrtd, false);
        assert_eq!(set, FaultSet::default());
    }

    #[test]
    fn a_client_must_be_an_ip_address() {
        assert_eq!(
            parse_client(" 127.0.0.2 "),
            Ok(IpAddr::from([127, 0, 0, 2]))
        );
        assert_eq!(
            parse_client("::ffff:127.0.0.3"),
            Ok(IpAddr::from([127, 0, 0, 3]))
        );
        assert_eq!(
            parse_client("localhost"),
            Err("client: expected an ip address such as \"127.0.0.2\", found \"localhost\"".into())
        );
        assert!(parse_client("127.0.0.2:80").is_err());
    }

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
