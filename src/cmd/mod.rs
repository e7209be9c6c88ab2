//! The commands, one file (or folder) each, with their clap `Args`: `verify`, `check`, `pin/`,
//! `run`, `history/` (with `export` and `ack`), `backup`, `config`, `completions` (and `man`),
//! and with the `sim` feature `sim` and `demo`. Each returns the verdict's exit code or a
//! [`CmdError`] that `main` prints once; each writes its output through [`output`], which ends
//! the command quietly when its reader closes the pipe.
//!
//! `exit.rs` and `render.rs` sit in this folder too but belong to the library (`teewatch::cmd`),
//! since the daemon and the tests use them as well.

pub mod backup;
pub mod check;
pub mod completions;
pub mod config;
// `teewatch demo` and `teewatch sim` exist only in the binary built with the simulator; no other
// command imports it.
#[cfg(feature = "sim")]
pub mod demo;
pub mod error;
pub mod help;
pub mod history;
pub mod output;
pub mod pin;
pub mod run;
#[cfg(feature = "sim")]
pub mod sim;
pub mod verify;

use std::cell::OnceCell;
use std::path::Path;

use teewatch::config::{Config, TargetConfig};
use teewatch::exit;
use teewatch::fetch::check::Fetcher;
use teewatch::fetch::http::{Http, HttpOptions};
use teewatch::verify::Bundle;

pub use error::CmdError;

/// What `teewatch --version` prints after the name: the package version, the commit it was built
/// from and that commit's date (or `SOURCE_DATE_EPOCH`), from build.rs.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("TEEWATCH_GIT_COMMIT"),
    ", ",
    env!("TEEWATCH_BUILD_DATE"),
    ")"
);

/// What every command may need from `main`: the one async runtime, built the first time a
/// command asks for it (`verify`, `config check`, `completions` and `man` never do).
#[derive(Default)]
pub struct Ctx {
    runtime: OnceCell<tokio::runtime::Runtime>,
}

impl Ctx {
    /// The process's tokio runtime.
    pub fn runtime(&self) -> Result<&tokio::runtime::Runtime, CmdError> {
        if let Some(runtime) = self.runtime.get() {
            return Ok(runtime);
        }
        let runtime = tokio::runtime::Runtime::new()
            .map_err(|e| CmdError::software(format!("starting the async runtime: {e}")))?;
        Ok(self.runtime.get_or_init(|| runtime))
    }
}

/// Loads and validates a configuration; its report (every problem, several lines) is printed as
/// it is, with exit 78.
pub fn load_config(path: &Path) -> Result<Config, CmdError> {
    Config::load(path).map_err(CmdError::Config)
}

/// The configured target `name`, or exit 78 naming the targets the file has.
pub fn find_target<'c>(
    config: &'c Config,
    path: &Path,
    name: &str,
) -> Result<&'c TargetConfig, CmdError> {
    config.target(name).ok_or_else(|| {
        let names: Vec<String> = config
            .targets
            .iter()
            .map(|t| format!("\"{}\"", t.name))
            .collect();
        CmdError::new(
            exit::CONFIG,
            format!(
                "{}: no [[target]] named \"{name}\"; its targets are {}",
                path.display(),
                names.join(", ")
            ),
        )
    })
}

/// Reads a saved bundle; 65 when it cannot be read or is not a bundle.
pub fn read_bundle(path: &Path) -> Result<Bundle, CmdError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CmdError::data(format!("{}: cannot read: {e}", path.display())))?;
    Bundle::from_json(&text)
        .map_err(|e| CmdError::data(format!("{}: not a teewatch bundle: {e}", path.display())))
}

/// A verdict's `policy_source` when a configuration's target judged it.
pub fn configured_policy_source(target: &str, config_path: &Path) -> String {
    format!(
        "target \"{target}\" of {} (your configuration)",
        config_path.display()
    )
}

/// The fetcher `check` and `pin` use: the configuration's HTTP client and the collateral cache
/// beside its database.
pub fn fetcher(config: &Config) -> Result<Fetcher, CmdError> {
    let http = Http::new(HttpOptions::for_config(config))
        .map_err(|e| CmdError::software(format!("http client: {e}")))?;
    let cache_dir = teewatch::daemon::collateral_dir(config, None);
    Ok(Fetcher::new(http, cache_dir.as_deref()))
}
