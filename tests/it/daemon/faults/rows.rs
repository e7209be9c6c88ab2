//! The rows of the fault matrix: each fault, where it is injected, what the stored verdict of
//! the faulted target must say (overall state, and the one check that names the fault with its
//! state and a piece of its reason), and the series of `/metrics` that shows it.

use teewatch::verify::State;
use teewatch_sim::faults::Fault;

use super::raw::RawMode;

/// Where a row's fault comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    /// A simulator fault on model `model` (0: dstack, 1: NEAR gateway; service-wide faults hit
    /// every model, the bystander too).
    Sim { fault: Fault, model: usize },
    /// A raw TCP provider misbehaving under HTTP.
    Raw(RawMode),
    /// A provider whose port nothing listens on.
    Refused,
    /// The store's files may not grow (RLIMIT_FSIZE on the daemon).
    DiskFull,
    /// Another process holds SQLite's write lock past the busy timeout.
    DbLocked,
    /// The daemon's injected clock jumps 40 days forward.
    ClockForward,
    /// The daemon's injected clock jumps 40 days back from the real time.
    ClockBackward,
}

/// What the faulted target's latest stored verdict says, or that the check could not be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    Verdict {
        verdict: State,
        check: &'static str,
        state: State,
        reason: &'static str,
    },
    /// The check ran but its record was refused; the stored history is unchanged by it.
    NotStored { reason: &'static str },
}

/// The series that shows the fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// `teewatch_check_state{target, check}` equals the expected state's code.
    CheckState(&'static str),
    /// `teewatch_fetch_errors_total{target, endpoint, kind}` is at least 1.
    FetchError {
        endpoint: &'static str,
        kind: &'static str,
    },
    /// `teewatch_store_errors_total` is at least 1.
    StoreErrors,
}

#[derive(Debug, Clone, Copy)]
pub struct Row {
    pub name: &'static str,
    pub setup: Setup,
    pub expect: Expect,
    pub metric: Metric,
}

const fn sim(fault: Fault, model: usize) -> Setup {
    Setup::Sim { fault, model }
}

const fn verdict(
    verdict: State,
    check: &'static str,
    state: State,
    reason: &'static str,
) -> Expect {
    Expect::Verdict {
        verdict,
        check,
        state,
        reason,
    }
}

const fn fails(check: &'static str, reason: &'static str) -> Expect {
    verdict(State::Fail, check, State::Fail, reason)
}

const fn unknown(check: &'static str, reason: &'static str) -> Expect {
    verdict(State::Unknown, check, State::Unknown, reason)
}

const fn fetch(endpoint: &'static str, kind: &'static str) -> Metric {
    Metric::FetchError { endpoint, kind }
}

use Metric::CheckState;
use State::{Fail, Pass, Unknown};

/// Every simulator fault (in `ALL_FAULTS` order), then the faults below HTTP, the store's and
/// the clock's.
pub const ROWS: [Row; 39] = [
    Row {
        name: "drift-mrtd",
        setup: sim(Fault::DriftMrtd, 0),
        expect: fails("pin:mrtd", "(quote)"),
        metric: CheckState("pin:mrtd"),
    },
    Row {
        name: "drift-compose",
        setup: sim(Fault::DriftCompose, 0),
        expect: fails("pin:compose_hash", "(event_log)"),
        metric: CheckState("pin:compose_hash"),
    },
    Row {
        name: "drift-gpu",
        setup: sim(Fault::DriftGpu, 0),
        expect: fails("pin:gpu_block_1", "found gpu:0:"),
        metric: CheckState("pin:gpu_block_1"),
    },
    Row {
        name: "unbound-nonce",
        setup: sim(Fault::UnboundNonce, 0),
        expect: fails("report_data_binding", "second half (nonce)"),
        metric: CheckState("report_data_binding"),
    },
    Row {
        name: "wrong-address",
        setup: sim(Fault::WrongAddress, 0),
        expect: fails("report_data_binding", "first half (signing address)"),
        metric: CheckState("report_data_binding"),
    },
    Row {
        name: "bad-quote-signature",
        setup: sim(Fault::BadQuoteSignature, 0),
        expect: fails(
            "tdx_quote_signature",
            "isv enclave report signature is invalid",
        ),
        metric: CheckState("tdx_quote_signature"),
    },
    Row {
        name: "tcb-outdated",
        setup: sim(Fault::TcbOutdated, 0),
        expect: fails("tdx_tcb_status", "found OutOfDate"),
        metric: CheckState("tdx_tcb_status"),
    },
    Row {
        name: "tcb-revoked",
        setup: sim(Fault::TcbRevoked, 0),
        expect: fails("tdx_tcb_status", "found Revoked, which is never accepted"),
        metric: CheckState("tdx_tcb_status"),
    },
    Row {
        name: "debug-td",
        setup: sim(Fault::DebugTd, 0),
        expect: fails(
            "tdx_debug_disabled",
            "tdattributes.debug: expected 0, found 1",
        ),
        metric: CheckState("tdx_debug_disabled"),
    },
    Row {
        name: "bad-gpu-signature",
        setup: sim(Fault::BadGpuSignature, 0),
        expect: fails(
            "gpu_evidence_signature",
            "evidence signature does not verify",
        ),
        metric: CheckState("gpu_evidence_signature"),
    },
    Row {
        name: "nras-false",
        setup: sim(Fault::NrasFalse, 0),
        expect: fails("nras_result", "nras rejects GPU-0"),
        metric: CheckState("nras_result"),
    },
    Row {
        name: "nras-down",
        setup: sim(Fault::NrasDown, 0),
        expect: unknown("nras_token", "nras not reached (nras http_status: 503"),
        metric: fetch("nras", "http_status"),
    },
    Row {
        name: "nras-slow",
        setup: sim(Fault::NrasSlow, 0),
        expect: unknown("nras_token", "nras not reached (nras timeout"),
        metric: fetch("nras", "timeout"),
    },
    Row {
        name: "pccs-down",
        setup: sim(Fault::PccsDown, 0),
        expect: unknown("tdx_quote_signature", "no tdx collateral in the bundle"),
        metric: fetch("pccs", "http_status"),
    },
    Row {
        name: "jwks-untrusted",
        setup: sim(Fault::JwksUntrusted, 0),
        expect: fails(
            "nras_token",
            "signature to verify with the pinned intermediate",
        ),
        metric: CheckState("nras_token"),
    },
    // Right after jwks-untrusted: its first token after the fault is off must be signed by the
    // trusted key again (the simulator once kept the untrusted signer until the next JWKS
    // fetch, so this row's nras_token failed).
    Row {
        name: "signature-never",
        setup: sim(Fault::SignatureNever, 0),
        expect: unknown("canary_signature", "no signature was obtained"),
        metric: fetch("signature", "http_status"),
    },
    Row {
        name: "signature-other-key",
        setup: sim(Fault::SignatureOtherKey, 0),
        expect: fails(
            "canary_signature",
            "expected the signing address of an attested node",
        ),
        metric: CheckState("canary_signature"),
    },
    Row {
        name: "canary-replay",
        setup: sim(Fault::CanaryReplay, 0),
        expect: fails("canary_hashes", "request hash differs"),
        metric: CheckState("canary_hashes"),
    },
    Row {
        name: "http-429",
        setup: sim(Fault::Http429, 0),
        expect: unknown(
            "tdx_quote_parse",
            "attestation not fetched (http_status: 429",
        ),
        metric: fetch("attestation", "http_status"),
    },
    Row {
        name: "http-500",
        setup: sim(Fault::Http500, 0),
        expect: unknown(
            "tdx_quote_parse",
            "attestation not fetched (http_status: 500",
        ),
        metric: fetch("attestation", "http_status"),
    },
    Row {
        name: "http-503",
        setup: sim(Fault::Http503, 0),
        expect: unknown(
            "tdx_quote_parse",
            "attestation not fetched (http_status: 503",
        ),
        metric: fetch("attestation", "http_status"),
    },
    Row {
        name: "timeout",
        setup: sim(Fault::Timeout, 0),
        expect: unknown(
            "tdx_quote_parse",
            "attestation not fetched (timeout: no answer within the deadline",
        ),
        metric: fetch("attestation", "timeout"),
    },
    Row {
        name: "truncated-json",
        setup: sim(Fault::TruncatedJson, 0),
        expect: unknown("tdx_quote_parse", "EOF while parsing"),
        metric: fetch("attestation", "invalid_json"),
    },
    Row {
        name: "malformed-json",
        setup: sim(Fault::MalformedJson, 0),
        expect: unknown("tdx_quote_parse", "key must be a string"),
        metric: fetch("attestation", "invalid_json"),
    },
    Row {
        name: "huge-body",
        setup: sim(Fault::HugeBody, 0),
        expect: unknown("tdx_quote_parse", "is over the 16 MiB cap; not read"),
        metric: fetch("attestation", "too_large"),
    },
    Row {
        name: "tls-wrong-peer",
        setup: sim(Fault::TlsWrongPeer, 1),
        expect: fails(
            "tls_key_binding",
            "the connection did not end in an attested td",
        ),
        metric: CheckState("tls_key_binding"),
    },
    Row {
        name: "redeploy",
        setup: sim(Fault::Redeploy, 1),
        expect: fails("pin:deployed_compose_sha256", "(compose_manager)"),
        metric: CheckState("pin:deployed_compose_sha256"),
    },
    // A container restart is legitimate: the whole verdict stays pass.
    Row {
        name: "restart",
        setup: sim(Fault::Restart, 1),
        expect: verdict(Pass, "report_data_binding", Pass, ""),
        metric: CheckState("report_data_binding"),
    },
    Row {
        name: "actions-tampered",
        setup: sim(Fault::ActionsTampered, 1),
        expect: fails(
            "report_data_binding",
            "expected sha256 of the 5 actions served",
        ),
        metric: CheckState("report_data_binding"),
    },
    Row {
        name: "ohttp-wrong-key",
        setup: sim(Fault::OhttpWrongKey, 1),
        expect: fails(
            "ohttp_key_binding",
            "ohttp signature over key_config does not verify",
        ),
        metric: CheckState("ohttp_key_binding"),
    },
    // A rogue TLS terminator whose certificate the daemon trusts: the evidence behind it is
    // genuine, only the connection's key is not the attested one.
    Row {
        name: "tls-intercept",
        setup: sim(Fault::TlsIntercept, 1),
        expect: fails(
            "tls_key_binding",
            "the connection did not end in an attested td",
        ),
        metric: CheckState("tls_key_binding"),
    },
    Row {
        name: "connection-refused",
        setup: Setup::Refused,
        expect: unknown("tdx_quote_parse", "attestation not fetched (connect:"),
        metric: fetch("attestation", "connect"),
    },
    Row {
        name: "slow-loris",
        setup: Setup::Raw(RawMode::SlowLoris),
        expect: unknown(
            "tdx_quote_parse",
            "body not complete within the 10 s deadline",
        ),
        metric: fetch("attestation", "timeout"),
    },
    Row {
        name: "endless-body",
        setup: Setup::Raw(RawMode::EndlessBody),
        expect: unknown(
            "tdx_quote_parse",
            "body over the 16 MiB cap; stopped reading",
        ),
        metric: fetch("attestation", "too_large"),
    },
    Row {
        name: "deep-json",
        setup: Setup::Raw(RawMode::DeepJson),
        expect: unknown("tdx_quote_parse", "recursion limit exceeded"),
        metric: fetch("attestation", "invalid_json"),
    },
    Row {
        name: "disk-full",
        setup: Setup::DiskFull,
        // EFBIG from RLIMIT_FSIZE reaches SQLite as a failed write (a real ENOSPC would read
        // "database or disk is full"); either way the record is refused, not half written.
        expect: Expect::NotStored {
            reason: "disk I/O error",
        },
        metric: Metric::StoreErrors,
    },
    Row {
        name: "database-locked",
        setup: Setup::DbLocked,
        expect: Expect::NotStored {
            reason: "database is locked",
        },
        metric: Metric::StoreErrors,
    },
    Row {
        name: "clock-forward-40-days",
        setup: Setup::ClockForward,
        expect: verdict(Fail, "tdx_quote_signature", Unknown, "expired at"),
        metric: CheckState("tdx_quote_signature"),
    },
    Row {
        name: "clock-back-40-days",
        setup: Setup::ClockBackward,
        expect: verdict(Fail, "tdx_quote_signature", Unknown, "not valid until"),
        metric: CheckState("tdx_quote_signature"),
    },
];
