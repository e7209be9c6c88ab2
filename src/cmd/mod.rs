//! The command implementations too long for `main.rs`, grouped by what they drive.

pub mod ack;
pub mod backup;
pub mod daemon;
pub mod pin;
