//! teewatch: continuously proves that TEE-backed LLM endpoints are what they claim to be.
//!
//! The library holds everything but the command line: the configuration (`config`), the
//! fetchers, the scheduler, the store, the metrics, the daemon, the human rendering of verdicts
//! (`render`) and the process exit codes every command shares (`exit`). The pure verifier is its
//! own crate, `teewatch-verify` (crates/verify), re-exported here as `verify` so that
//! `teewatch::verify::…` and `crate::verify::…` name it; the simulator, `teewatch-sim`
//! (crates/sim), is not part of the library at all.

pub mod config;
pub mod daemon;
pub mod drift;
pub mod exit;
pub mod fetch;
pub mod history;
pub mod metrics;
pub mod record;
pub mod render;
pub mod schedule;
pub mod store;
mod sync;

/// The pure verifier (crates/verify): no I/O, no clock, no async.
pub use teewatch_verify as verify;
