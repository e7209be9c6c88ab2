//! Process exit codes shared by every teewatch command (documented in the README).
//!
//! The verdict codes (0, 1, 2) let scripts branch on the outcome; the others follow the BSD
//! `sysexits.h` convention. clap's own exit code 2 would collide with "unknown", so usage errors
//! are mapped to 64. A closed standard output (`teewatch check | head -1`) is not an error: the
//! command stops quietly and exits 0, since the reader has all it asked for.

use crate::verify::State;

/// Every check passed.
pub const PASS: u8 = 0;
/// At least one check failed.
pub const FAIL: u8 = 1;
/// No check failed, but at least one could not be decided.
pub const UNKNOWN: u8 = 2;
/// The command line was wrong.
pub const USAGE: u8 = 64;
/// An input file is not a readable bundle.
pub const DATA_ERR: u8 = 65;
/// An input the command needs does not exist (`history` and `backup` without a database).
pub const NO_INPUT: u8 = 66;
/// An output file cannot be created (it exists, or its folder is not writable).
pub const CANT_CREATE: u8 = 73;
/// An internal or fatal runtime error.
pub const SOFTWARE: u8 = 70;
/// The configuration is invalid.
pub const CONFIG: u8 = 78;

/// The exit code for an overall verdict state.
pub fn for_state(state: State) -> u8 {
    match state {
        State::Pass => PASS,
        State::Fail => FAIL,
        State::Unknown => UNKNOWN,
    }
}
