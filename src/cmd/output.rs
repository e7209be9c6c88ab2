//! Every byte a command prints goes through here: standard output locked per write and flushed,
//! so that a reader closing the pipe (`teewatch check … | head -1`) ends the command quietly
//! with [`CmdError::ClosedOutput`] (exit 0) instead of a panic; notes and the final error go to
//! standard error, where a failed write is ignored (there is nowhere left to report it).

use std::fmt::Display;
use std::io::Write;

use super::CmdError;

/// Writes `text` to standard output as it is.
pub fn print(text: &str) -> Result<(), CmdError> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::BrokenPipe => CmdError::ClosedOutput,
            _ => CmdError::software(format!("writing to standard output: {e}")),
        })
}

/// Writes `text` and a newline to standard output.
pub fn line(text: impl Display) -> Result<(), CmdError> {
    print(&format!("{text}\n"))
}

/// A note on standard error that does not end the command: `teewatch: <text>`.
pub fn note(text: impl Display) {
    error_text(&format!("teewatch: {text}\n"));
}

/// Writes `text` to standard error as it is.
pub fn error_text(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes()).and_then(|()| err.flush());
}
