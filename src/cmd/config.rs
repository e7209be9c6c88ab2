//! `teewatch config check`: validate a configuration file without running anything. It takes
//! `--config FILE` like every other command; the positional `FILE` of earlier versions stays.

use std::path::PathBuf;

use teewatch::exit;

use super::{CmdError, output};

/// `teewatch config`.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Validate a configuration file without running anything.
    #[command(after_help = after_help())]
    Check(CheckArgs),
}

/// `teewatch config check`.
#[derive(clap::Args)]
#[group(required = true, multiple = false)]
pub struct CheckArgs {
    /// The configuration file.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The configuration file, as earlier versions took it (the same as --config).
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
}

fn after_help() -> String {
    super::help::after_help(
        &[
            (
                "the configuration `teewatch sim --write-config` wrote (exit 0)",
                "teewatch config check --config sim.toml",
            ),
            (
                "the shipped example, named the way earlier versions took it (exit 0)",
                "teewatch config check config.toml",
            ),
        ],
        &[exit::PASS, exit::USAGE, exit::CONFIG],
    )
}

pub fn run(command: &Command) -> Result<u8, CmdError> {
    match command {
        Command::Check(args) => {
            let Some(path) = args.config.as_ref().or(args.file.as_ref()) else {
                return Err(CmdError::usage("config check needs --config FILE"));
            };
            let config = super::load_config(path)?;
            output::line(format!(
                "{}: valid, {} target(s)",
                path.display(),
                config.targets.len()
            ))?;
            Ok(exit::PASS)
        }
    }
}
