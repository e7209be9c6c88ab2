//! The `teewatch` command line: parses the arguments into one command (`src/cmd/`, one file
//! each), runs it, prints its error once and exits with its code.

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use teewatch::exit;

mod allocator;
mod cmd;

use cmd::{Ctx, output};

#[derive(Parser)]
#[command(
    name = "teewatch",
    version = cmd::VERSION,
    about = "Continuously proves that TEE-backed LLM endpoints are what they claim to be",
    after_help = cmd::help::top()
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Verify a stored evidence bundle offline and print the verdict.
    #[command(after_help = cmd::verify::after_help())]
    Verify(cmd::verify::Args),
    /// One live check of one or all configured targets, printing the verdicts.
    #[command(after_help = cmd::check::after_help())]
    Check(cmd::check::Args),
    /// Verify one live check (or a saved bundle) of a target and print its verified values as
    /// pins; with --write, set them in the configuration file.
    #[command(after_help = cmd::pin::after_help())]
    Pin(cmd::pin::Args),
    /// Run the TEE provider, PCCS and NRAS simulator (test trust roots, loopback only).
    #[cfg(feature = "sim")]
    #[command(after_help = cmd::sim::after_help())]
    Sim(cmd::sim::Args),
    /// Run the daemon: check every target on its schedule, keep the history, serve /metrics.
    #[command(after_help = cmd::run::after_help())]
    Run(cmd::run::Args),
    /// Start the simulator and the daemon on loopback: watch verdicts arrive, then a drift.
    #[cfg(feature = "sim")]
    #[command(after_help = cmd::demo::after_help())]
    Demo(cmd::demo::Args),
    /// List past checks and drift events from the store.
    #[command(after_help = cmd::history::after_help())]
    History(cmd::history::Args),
    /// Write an online, consistent copy of the store (safe while the daemon runs) and check it.
    #[command(after_help = cmd::backup::after_help())]
    Backup(cmd::backup::Args),
    /// Work with configuration files.
    Config {
        #[command(subcommand)]
        command: cmd::config::Command,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(after_help = cmd::completions::after_help())]
    Completions(cmd::completions::Args),
    /// Print the manual page (roff), every command's help and examples included.
    #[command(after_help = cmd::completions::man_after_help())]
    Man,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap's own code 2 would read as "unknown": usage errors are 64, help and version 0.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::USAGE
            } else {
                exit::PASS
            });
        }
    };
    let ctx = Ctx::default();
    let result = match &cli.command {
        Command::Verify(args) => cmd::verify::run(args),
        Command::Check(args) => cmd::check::run(args, &ctx),
        Command::Pin(args) => cmd::pin::run(args, &ctx),
        #[cfg(feature = "sim")]
        Command::Sim(args) => cmd::sim::run(args, &ctx),
        Command::Run(args) => cmd::run::run(args, &ctx),
        #[cfg(feature = "sim")]
        Command::Demo(args) => cmd::demo::run_demo(args, &ctx),
        Command::History(args) => cmd::history::run(args, &ctx),
        Command::Backup(args) => cmd::backup::run(args, &ctx),
        Command::Config { command } => cmd::config::run(command),
        Command::Completions(args) => cmd::completions::completions(args, Cli::command()),
        Command::Man => cmd::completions::man(Cli::command()),
    };
    let code = match result {
        Ok(code) => code,
        Err(e) => {
            output::error_text(&e.report());
            e.code()
        }
    };
    ExitCode::from(code)
}

/// The parser's own consistency (conflicting names, bad defaults), checked by clap.
#[cfg(test)]
#[test]
fn the_command_line_is_consistent() {
    Cli::command().debug_assert();
}
