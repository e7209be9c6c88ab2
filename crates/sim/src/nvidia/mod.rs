//! Simulated NVIDIA GPUs and a simulated NRAS, with real cryptography under TEST roots.
//!
//! `NvidiaTestPki` plays the GPUs: a P-384 device-identity PKI shaped like NVIDIA's (a
//! self-signed root, intermediates, one leaf per GPU carrying the firmware id in the Hopper
//! TcbInfo extension) and SPDM GET_MEASUREMENTS evidence signed by each leaf, wrapped in the
//! `nvidia_payload` JSON that vllm-proxy returns. `NrasSim` plays NVIDIA's Remote Attestation
//! Service: an RSA intermediate, rotating P-384 signing leaves published as a JWKS, and the
//! detached EAT NRAS returns for a payload. Everything is generated fresh at start-up, named
//! "teewatch TEST … not NVIDIA", and verifies only against the roots these types hand out, so
//! nothing made here can pass for NVIDIA's evidence under the real pinned roots.
//!
//! The layout follows the parsers in `verify::gpu` byte for byte (see `spdm` here for the SPDM
//! side and `nras` for the tokens), because the point of the simulator is that the verifier
//! accepts its output through the very code paths real evidence takes.

mod nras;
mod spdm;

pub use nras::NrasSim;
pub use spdm::{GpuState, NvidiaTestPki};

use std::time::Duration as StdDuration;

use chrono::{DateTime, Datelike as _, TimeDelta, Timelike as _, Utc};
use rcgen::CertificateParams;

/// The organisation every TEST certificate names, so none can be mistaken for NVIDIA's.
const TEST_ORG: &str = "teewatch TEST (not NVIDIA)";

/// Why the simulator could not produce what was asked.
#[derive(Debug, thiserror::Error)]
pub enum NvidiaSimError {
    /// rcgen refused to build or sign a certificate.
    #[error("test certificate generation failed: {0}")]
    Certificate(#[from] rcgen::Error),
    /// aws-lc-rs refused a key or a signature.
    #[error("test key or signature failed: {0}")]
    Crypto(String),
    /// A certificate the simulator made does not parse back, which would be a simulator bug.
    #[error("test certificate does not parse back: {0}")]
    CertificateParse(String),
    /// The PKI was asked for no GPUs, or for more than it is willing to make.
    #[error("gpu count {found} is outside 1..={max}")]
    GpuCount { found: usize, max: usize },
    /// More GPU states were passed than the PKI has GPUs, or a GPU index is out of range.
    #[error("gpu {index} does not exist: the test pki has {count} gpus")]
    NoSuchGpu { index: usize, count: usize },
    /// A GPU state that cannot be encoded as evidence the parser accepts.
    #[error("gpu {index} state cannot be encoded: {reason}")]
    GpuState { index: usize, reason: String },
    /// VBIOS text that is not NVIDIA's five dotted hex bytes.
    #[error("vbios version {0:?} is not five dotted hex bytes like \"96.00.9F.00.01\"")]
    Vbios(String),
    /// An instant that X.509 validity (as rcgen encodes it) cannot carry.
    #[error("time {0} is outside the years 1 to 9999 that test certificates can carry")]
    TimeOutOfRange(String),
    /// The payload given to the simulated NRAS is not an `nvidia_payload`.
    #[error("nras simulator: payload rejected: {0}")]
    Payload(String),
}

impl From<aws_lc_rs::error::Unspecified> for NvidiaSimError {
    fn from(_: aws_lc_rs::error::Unspecified) -> Self {
        NvidiaSimError::Crypto("aws-lc-rs reported an unspecified error".to_string())
    }
}

impl From<aws_lc_rs::error::KeyRejected> for NvidiaSimError {
    fn from(e: aws_lc_rs::error::KeyRejected) -> Self {
        NvidiaSimError::Crypto(format!("key rejected: {e}"))
    }
}

/// `t` moved by `delta`, or an error instead of chrono's overflow panic.
fn shift(t: DateTime<Utc>, delta: TimeDelta) -> Result<DateTime<Utc>, NvidiaSimError> {
    t.checked_add_signed(delta)
        .ok_or_else(|| NvidiaSimError::TimeOutOfRange(format!("{t} + {delta}")))
}

/// Sets a certificate's validity window from chrono instants.
///
/// rcgen takes `time::OffsetDateTime`, and `time` is not a dependency of this crate; rcgen's own
/// `date_time_ymd` plus a `std::time::Duration` builds the value without naming the type. The
/// year is checked first because `date_time_ymd` panics outside the years `time` supports.
fn set_validity(
    params: &mut CertificateParams,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
) -> Result<(), NvidiaSimError> {
    let convert = |t: DateTime<Utc>| {
        let out_of_range = || NvidiaSimError::TimeOutOfRange(t.to_rfc3339());
        if !(1..=9999).contains(&t.year()) {
            return Err(out_of_range());
        }
        let month = u8::try_from(t.month()).map_err(|_| out_of_range())?;
        let day = u8::try_from(t.day()).map_err(|_| out_of_range())?;
        let seconds = u64::from(t.num_seconds_from_midnight());
        Ok(rcgen::date_time_ymd(t.year(), month, day) + StdDuration::from_secs(seconds))
    };
    params.not_before = convert(not_before)?;
    params.not_after = convert(not_after)?;
    Ok(())
}

/// The last instant X.509 can name, which NVIDIA's device certificates use as notAfter.
fn end_of_time() -> Result<DateTime<Utc>, NvidiaSimError> {
    DateTime::from_timestamp(253_402_300_799, 0)
        .ok_or_else(|| NvidiaSimError::TimeOutOfRange("9999-12-31T23:59:59Z".to_string()))
}

/// `N` random bytes from the thread's CSPRNG.
fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut out);
    out
}

/// A positive 20-byte certificate serial (the size NVIDIA's leaves use) whose first byte is
/// non-zero, so the DER INTEGER keeps all 20 bytes and the decimal ueid has a stable length.
fn random_serial() -> [u8; 20] {
    let mut serial = random_bytes::<20>();
    if let Some(first) = serial.first_mut() {
        *first = (*first & 0x7F) | 0x40;
    }
    serial
}
