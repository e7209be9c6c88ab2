//! The simulator: end to end through the live path in every format it serves, its test Intel
//! PKI and its NVIDIA GPUs and NRAS.

mod e2e;
mod intel;
mod nvidia;
