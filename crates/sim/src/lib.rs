//! A simulated TEE provider, PCCS and NRAS with real cryptography under test trust roots, for the
//! demo and every end-to-end test. Nothing here is used by the verifier: the simulator must pass
//! the same checks real evidence does, through the `dangerous_*` test-root options only.
//!
//! It is its own crate, `teewatch-sim`, with the dependencies only it needs (the TLS server,
//! certificate minting): teewatch's tests use it, and the binary's `teewatch sim` and
//! `teewatch demo` exist only with the default `sim` feature, so the production build
//! (`--no-default-features`) contains none of it.

pub mod compose_manager;
pub mod dstack;
pub mod faults;
pub mod format;
pub mod fulcio;
pub mod intel;
pub mod keys;
pub mod nvidia;
pub mod ohttp;
pub mod provider;
pub mod rekor;
pub mod server;
pub mod sigstore;
pub mod tls;
pub mod write_config;
