//! Talking to the outside world: the provider, a PCCS, NRAS and its JWKS. This version holds the
//! pure pieces that turn raw service answers into bundle parts; the HTTP clients come with
//! `teewatch check`.

mod assemble;
pub mod attestations;
mod canary;
pub mod check;
pub mod collateral_cache;
mod fetch_error;
pub mod http;
pub mod pccs;
pub mod redact;
pub mod rekor;
mod retry;

/// The id of a chat body as the canary fetch reads it; exposed for the fuzz target `sse`.
#[doc(hidden)]
pub use canary::chat_id;
