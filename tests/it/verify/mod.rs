//! The verifier: golden verdicts on real and simulated bundles, per-check expectations on real
//! vectors, the known-measurements table, canaries, DCAP errors, GPU evidence and NRAS tokens,
//! OHTTP key binding, a hostile provider, robustness against garbage, and the independent Python
//! cross-check.

mod canary;
mod collateral;
mod crosscheck;
mod dcap_errors;
mod golden;
mod gpu_evidence;
mod gpu_verdict;
mod hostile_provider;
mod known;
mod nras;
mod ohttp;
mod real_vectors;
mod robustness;
mod tamper;
