//! Fetching: the HTTP client against small local servers, the TLS peer key it records, PCS
//! answers turned into collateral, and `teewatch check` through the real HTTP path.

mod check_live;
mod http;
mod pccs;
mod tls_peer;
