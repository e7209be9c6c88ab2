//! `teewatch run`: the daemon until SIGTERM or SIGINT (SIGHUP reloads). Everything it does is the
//! library's `teewatch::daemon`; this file only maps its end to an exit code.

use std::net::SocketAddr;
use std::path::PathBuf;

use teewatch::daemon::logging::LogFormat;
use teewatch::daemon::{RunError, RunOptions};
use teewatch::exit;

use super::{CmdError, Ctx};

/// `teewatch run`.
#[derive(clap::Args)]
pub struct Args {
    /// The configuration file.
    #[arg(long)]
    pub config: PathBuf,
    /// Listen here instead of `[daemon] listen`.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Use this database instead of `[daemon] db`.
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Log format (timestamps are left out when stderr is the systemd journal).
    #[arg(long, value_enum, default_value = "human")]
    pub log_format: LogFormat,
}

pub fn after_help() -> String {
    super::help::after_help(
        &[(
            "the daemon on the simulator's configuration, on a free port its log names (until Ctrl-C)",
            "teewatch run --config sim.toml --listen 127.0.0.1:0 --db teewatch.db",
        )],
        &[exit::PASS, exit::USAGE, exit::SOFTWARE, exit::CONFIG],
    )
}

pub fn run(args: &Args, ctx: &Ctx) -> Result<u8, CmdError> {
    teewatch::daemon::logging::init(args.log_format);
    let options = RunOptions {
        config_path: args.config.clone(),
        listen: args.listen,
        db: args.db.clone(),
    };
    match ctx.runtime()?.block_on(teewatch::daemon::run(options)) {
        Ok(()) => Ok(exit::PASS),
        Err(RunError::Config(e)) => Err(CmdError::Config(e)),
        Err(e) => {
            tracing::error!(error = %e, "teewatch stopped");
            Err(CmdError::new(e.exit_code(), e.to_string()))
        }
    }
}
