//! The one error every command returns: what to print and which exit code to end with. `main`
//! prints it once, as `teewatch: <message>` (or a configuration's own report as it is).

use teewatch::config::ConfigError;
use teewatch::exit;

/// Why a command ended without a verdict.
#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    /// Printed as `teewatch: <message>`; the process exits with `code`.
    #[error("{message}")]
    Exit { code: u8, message: String },
    /// An invalid configuration: its report lists every problem on lines of its own and is
    /// printed as it is; exit 78.
    #[error("{0}")]
    Config(ConfigError),
    /// The reader of standard output closed it (`| head -1`): nothing is printed and the
    /// process exits 0, since the reader has what it asked for.
    #[error("standard output was closed")]
    ClosedOutput,
}

impl CmdError {
    pub fn new(code: u8, message: impl Into<String>) -> CmdError {
        CmdError::Exit {
            code,
            message: message.into(),
        }
    }

    /// 64: the command line asks for something impossible.
    pub fn usage(message: impl Into<String>) -> CmdError {
        CmdError::new(exit::USAGE, message)
    }

    /// 65: an input is not what it should be (a bundle, a stored check).
    pub fn data(message: impl Into<String>) -> CmdError {
        CmdError::new(exit::DATA_ERR, message)
    }

    /// 66: an input does not exist.
    pub fn no_input(message: impl Into<String>) -> CmdError {
        CmdError::new(exit::NO_INPUT, message)
    }

    /// 70: an internal or fatal runtime error.
    pub fn software(message: impl Into<String>) -> CmdError {
        CmdError::new(exit::SOFTWARE, message)
    }

    /// 78: the configuration cannot be used, in one line.
    pub fn config(message: impl Into<String>) -> CmdError {
        CmdError::new(exit::CONFIG, message)
    }

    /// The process exit code.
    pub fn code(&self) -> u8 {
        match self {
            CmdError::Exit { code, .. } => *code,
            CmdError::Config(_) => exit::CONFIG,
            CmdError::ClosedOutput => exit::PASS,
        }
    }

    /// What `main` writes on standard error (nothing for a closed output).
    pub fn report(&self) -> String {
        match self {
            CmdError::Exit { message, .. } => format!("teewatch: {message}\n"),
            // Already ends with a newline, as it always has been printed.
            CmdError::Config(e) => e.to_string(),
            CmdError::ClosedOutput => String::new(),
        }
    }
}

impl From<ConfigError> for CmdError {
    fn from(e: ConfigError) -> CmdError {
        CmdError::Config(e)
    }
}
