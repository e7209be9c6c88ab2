//! The command implementations too long for `main.rs`, grouped by what they drive.

pub mod ack;
pub mod backup;
pub mod daemon;
// `teewatch demo` and `teewatch sim` exist only in the binary built with the simulator.
#[cfg(feature = "sim")]
pub mod demo;
pub mod pin;
#[cfg(feature = "sim")]
pub mod sim;
