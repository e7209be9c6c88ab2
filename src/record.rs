//! What one finished check hands to the store and the metrics: the bundle, its verdict, the
//! measurements extracted for drift tracking, the drift events they raised, and how long each
//! phase took.
//!
//! This is the single value that crosses from the check runner to `store/` and `metrics/`, so
//! both record exactly the same facts about a check.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::drift::{DriftEvent, Measurement};
use crate::verify::{Bundle, Verdict};

/// The phases of one check whose durations are recorded and exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// The attestation report request.
    Attestation,
    /// DCAP collateral (cache or PCCS).
    Collateral,
    /// NRAS and its JWKS.
    Nras,
    /// The canary chats and their signatures.
    Canary,
    /// The pure verifier.
    Verify,
    /// Writing the check to the store.
    Store,
}

impl Phase {
    /// Every phase, in the order a check runs them.
    pub const ALL: [Phase; 6] = [
        Phase::Attestation,
        Phase::Collateral,
        Phase::Nras,
        Phase::Canary,
        Phase::Verify,
        Phase::Store,
    ];

    /// The name used in the store and in the `phase` metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Attestation => "attestation",
            Phase::Collateral => "collateral",
            Phase::Nras => "nras",
            Phase::Canary => "canary",
            Phase::Verify => "verify",
            Phase::Store => "store",
        }
    }

    /// The phase with the given name.
    pub fn from_name(name: &str) -> Option<Phase> {
        Phase::ALL.into_iter().find(|p| p.as_str() == name)
    }
}

/// How long one phase of one check took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhaseDuration {
    pub phase: Phase,
    pub duration: Duration,
}

/// One fetch error as the bundle recorded it (endpoint and kind are from fixed sets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchErrorSummary {
    pub endpoint: String,
    pub kind: String,
}

/// Everything one finished check produced.
#[derive(Debug, Clone)]
pub struct CheckRecord {
    /// The target's name from the configuration.
    pub target: String,
    /// When the scheduler meant the check to start.
    pub scheduled_at: DateTime<Utc>,
    /// When it actually started (the difference is the schedule lag).
    pub started_at: DateTime<Utc>,
    /// When verification finished (before the store write).
    pub finished_at: DateTime<Utc>,
    /// Durations of the phases that ran, in order; `Store` is added by the store itself only in
    /// metrics, since the write cannot time itself inside its own transaction.
    pub phases: Vec<PhaseDuration>,
    /// The evidence bundle (`teewatch-bundle/1`) exactly as fetched.
    pub bundle: Value,
    /// The verdict of `verify` on that bundle.
    pub verdict: Verdict,
    /// The measurements tracked for drift (see `drift::measurements`).
    pub measurements: Vec<Measurement>,
    /// Drift events this check raised (usually none).
    pub drift: Vec<DriftEvent>,
    /// The fetch errors the bundle recorded.
    pub fetch_errors: Vec<FetchErrorSummary>,
    /// The instance that ran the check (`[daemon] instance`, the host name by default).
    pub instance: String,
    /// That instance's vantage point (`[daemon] vantage`; '' in shard mode).
    pub vantage: String,
    /// The fleet's claim of the slot the check ran in (`None` without a fleet): the store writes
    /// the check only while the claim is still this instance's.
    pub claim: Option<SlotClaim>,
}

/// A fleet instance's claim of one slot of a target (`crate::fleet`): the check it ran under
/// the claim is stored only while the claim is still this instance's, so a peer that took the
/// slot over from an instance whose lease ran out is the only one to store it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotClaim {
    /// The vantage point the claim is keyed by ('' in shard mode).
    pub vantage: String,
    /// The slot's key (`crate::fleet::slot_key`), in ns since the epoch.
    pub slot_at: i64,
    /// The claiming process's incarnation (its `fleet_instances.started_at`).
    pub incarnation: i64,
}

impl CheckRecord {
    /// The fetch errors a (parsed) bundle recorded.
    pub fn fetch_errors_of(bundle: &Bundle) -> Vec<FetchErrorSummary> {
        bundle
            .fetch_errors
            .iter()
            .map(|e| FetchErrorSummary {
                endpoint: e.endpoint.clone(),
                kind: e.kind.clone(),
            })
            .collect()
    }
}
