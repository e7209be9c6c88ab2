//! teewatch's integration tests as one test binary (`cargo test --test it`), so the daemon, sqlx,
//! axum and aws-lc are linked once rather than once per file. Modules by concern: `verify` (the
//! verifier on real and simulated evidence, golden verdicts, robustness, the cross-check),
//! `fetch` (the HTTP client and what it records), `daemon` (the daemon in-process and as a
//! process, metrics, the status page, the store), `ops` (the CLI, alerts, the dashboard, systemd,
//! the docs), `sim` (the simulator end to end) and `vantage` (vantage points compared without a
//! database); `common` holds every helper they share. The
//! tests share one process: none changes the environment, the current directory or any other
//! process-wide state.

mod common;
mod daemon;
mod fetch;
mod fleet;
mod fuzz;
mod ops;
mod provenance;
mod sim;
mod vantage;
mod verify;
