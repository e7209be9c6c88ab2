//! teewatch: continuously proves that TEE-backed LLM endpoints are what they claim to be.
//!
//! The library holds everything but the command line: the pure verifier (`verify`), the
//! configuration (`config`), the human rendering of verdicts (`render`) and the process exit
//! codes every command shares (`exit`).

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
pub mod sim;
pub mod store;
mod sync;
pub mod verify;
