//! NVIDIA GPU evidence and NVIDIA's NRAS verdict.
//!
//! `spdm` parses the SPDM GET_MEASUREMENTS request and response a GPU signs; `certs` verifies
//! that signature and the device certificate chain to the pinned NVIDIA Device Identity root;
//! `nras` verifies the detached EAT NVIDIA's Remote Attestation Service returns for the same
//! evidence and judges its claims; `unique` checks that no GPU is shown for two parts of one
//! answer.

pub(crate) mod cert_signature;
pub mod certs;
pub mod nras;
pub mod part;
pub mod spdm;
pub mod unique;
