//! teewatch: continuously proves that TEE-backed LLM endpoints are what they claim to be.
//!
//! The library holds everything but the command line: the configuration (`config`), the
//! fetchers, the scheduler, the store, the metrics and the daemon. Of the command line
//! (`src/cmd/`, the binary's) it holds the two pieces others use too: the human rendering of
//! verdicts (`cmd::render`) and the process exit codes every command shares (`cmd::exit`), also
//! reachable as `render` and `exit`. The pure verifier is its
//! own crate, `teewatch-verify` (crates/verify), re-exported here as `verify` so that
//! `teewatch::verify::…` and `crate::verify::…` name it; the simulator, `teewatch-sim`
//! (crates/sim), is not part of the library at all.

pub mod clock;
pub mod config;
pub mod daemon;
pub mod drift;
pub mod fetch;
pub mod fleet;
pub mod metrics;
pub mod record;
pub mod schedule;
pub mod store;
mod sync;
pub mod vantage;

/// The files of `src/cmd/` that the library compiles; the binary's `src/cmd/mod.rs` has the
/// commands themselves.
pub mod cmd {
    pub mod exit;
    pub mod render;
}
pub use cmd::{exit, render};

/// The pure verifier (crates/verify): no I/O, no clock, no async.
pub use teewatch_verify as verify;
