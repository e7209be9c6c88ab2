//! The verdict: what `verify` concludes about one evidence bundle.
//!
//! A verdict is an ordered list of named checks, each `pass`, `fail` or `unknown` with a reason,
//! plus the measurements that were observed and where each came from. It carries no timings, so
//! verifying the same bundle twice gives byte-identical JSON (`teewatch-verdict/1`, specified in
//! `docs/verdict.md`).

use serde::{Deserialize, Serialize};

/// The format tag written into every verdict.
pub const VERDICT_FORMAT: &str = "teewatch-verdict/1";

/// The state of one check, and of the verdict as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Pass,
    Unknown,
    Fail,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pass => "pass",
            State::Unknown => "unknown",
            State::Fail => "fail",
        }
    }
}

/// One named check for one scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    /// Empty for the whole bundle, else the part as a path such as `node:0xabc…` or `gpu:3`.
    pub scope: String,
    pub state: State,
    pub reason: String,
}

/// Where an observed value came from, which decides whether a pin may match it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Read from the body of a TDX quote (proven once the quote signature verifies).
    Quote,
    /// Read from an event whose RTMR replay matched the quote.
    EventLog,
    /// Read from signed SPDM GPU evidence.
    GpuEvidence,
    /// Read from a NEAR compose manager's action log whose hash a verified quote of the model's
    /// own TD binds.
    ComposeManager,
    /// Only asserted by the report; never satisfies a pin.
    Claim,
}

impl Source {
    /// Whether a pin may be satisfied by a value with this source.
    pub fn is_evidence(self) -> bool {
        !matches!(self, Source::Claim)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Quote => "quote",
            Source::EventLog => "event_log",
            Source::GpuEvidence => "gpu_evidence",
            Source::ComposeManager => "compose_manager",
            Source::Claim => "claim",
        }
    }
}

/// A measurement or identity value seen in the evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observed {
    pub scope: String,
    pub field: String,
    pub value: String,
    pub source: Source,
}

/// Which attestation format a provider response was recognised as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttestationFormat {
    Dstack,
    NearGateway,
    NearDirect,
    Chutes,
    Tinfoil,
    Unknown,
}

impl AttestationFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            AttestationFormat::Dstack => "dstack",
            AttestationFormat::NearGateway => "near-gateway",
            AttestationFormat::NearDirect => "near-direct",
            AttestationFormat::Chutes => "chutes",
            AttestationFormat::Tinfoil => "tinfoil",
            AttestationFormat::Unknown => "unknown",
        }
    }

    /// Whether this version can verify the format.
    pub fn is_supported(self) -> bool {
        matches!(
            self,
            AttestationFormat::Dstack
                | AttestationFormat::NearGateway
                | AttestationFormat::NearDirect
        )
    }

    /// Whether the format binds each part's TLS certificate into its quote.
    pub fn binds_tls(self) -> bool {
        matches!(
            self,
            AttestationFormat::NearGateway | AttestationFormat::NearDirect
        )
    }
}

/// The result of verifying one bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub format: String,
    pub target: String,
    pub observed_at: String,
    pub attestation_format: AttestationFormat,
    pub state: State,
    pub checks: Vec<Check>,
    pub observed: Vec<Observed>,
    /// Names of the `dangerous_*` options that were in force for this verdict.
    pub trust: Vec<String>,
    /// How the attestation fetch reached the provider, when the bundle says: `proxied` means
    /// the connection ended at a proxy, so no `tls_key_binding` is judged and the signed canary
    /// is the end-to-end proof.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<super::bundle::Transport>,
    /// Where the policy came from, when the caller says: `teewatch verify` without `--config`
    /// judges with the policy stored in the bundle, which whoever made the bundle chose, so the
    /// verdict says so rather than pass for proof under the reader's own policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_source: Option<String>,
}

impl Verdict {
    /// The overall state: `fail` if any check failed, else `unknown` if any is unknown, else
    /// `pass`. A verdict without checks cannot prove anything and is `unknown`.
    pub fn overall(checks: &[Check]) -> State {
        if checks.is_empty() {
            return State::Unknown;
        }
        checks
            .iter()
            .map(|c| c.state)
            .max()
            .unwrap_or(State::Unknown)
    }

    /// The checks with the given name, in order.
    /// The TDX TCB status the verdict observed first (the first part's quote), if any.
    pub fn tcb_status(&self) -> Option<&str> {
        self.observed
            .iter()
            .find(|o| o.field == "tcb_status")
            .map(|o| o.value.as_str())
    }

    /// The format of the response the verdict judged: `None` when no response was read (its
    /// `attestation_format` check is then `unknown`).
    pub fn response_format(&self) -> Option<AttestationFormat> {
        self.checks
            .iter()
            .any(|c| c.name == super::checks::ATTESTATION_FORMAT && c.state != State::Unknown)
            .then_some(self.attestation_format)
    }

    pub fn checks_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Check> + 'a {
        self.checks.iter().filter(move |c| c.name == name)
    }
}

/// Accumulates checks and observations in the order the verifier produces them.
#[derive(Debug, Default)]
pub struct Recorder {
    pub checks: Vec<Check>,
    pub observed: Vec<Observed>,
}

impl Recorder {
    pub fn check(&mut self, name: &str, scope: &str, outcome: Outcome) {
        let (state, reason) = match outcome {
            Outcome::Pass(reason) => (State::Pass, reason),
            Outcome::Fail(reason) => (State::Fail, reason),
            Outcome::Unknown(reason) => (State::Unknown, reason),
        };
        self.checks.push(Check {
            name: name.to_string(),
            scope: scope.to_string(),
            state,
            reason,
        });
    }

    pub fn observe(&mut self, scope: &str, field: &str, value: impl Into<String>, source: Source) {
        self.observed.push(Observed {
            scope: scope.to_string(),
            field: field.to_string(),
            value: value.into(),
            source,
        });
    }
}

/// The outcome of one check before it is recorded under a name and scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Pass(String),
    Fail(String),
    Unknown(String),
}

impl Outcome {
    pub fn state(&self) -> State {
        match self {
            Outcome::Pass(_) => State::Pass,
            Outcome::Fail(_) => State::Fail,
            Outcome::Unknown(_) => State::Unknown,
        }
    }

    pub fn reason(&self) -> &str {
        match self {
            Outcome::Pass(r) | Outcome::Fail(r) | Outcome::Unknown(r) => r,
        }
    }
}
