//! The `teewatch` command line: reads like a script from arguments to exit code.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use teewatch::config::Config;
use teewatch::exit;
use teewatch::render;
use teewatch::verify::{self, Bundle, Policy, TrustAnchors};

#[derive(Parser)]
#[command(
    name = "teewatch",
    version,
    about = "Continuously proves that TEE-backed LLM endpoints are what they claim to be"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Verify a stored evidence bundle offline and print the verdict.
    Verify {
        /// The bundle (teewatch-bundle/1 JSON).
        bundle: PathBuf,
        /// Judge with this configuration's policy and trust anchors instead of the bundle's snapshot.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The target whose policy applies (defaults to the bundle's target); needs --config.
        #[arg(long, requires = "config")]
        target: Option<String>,
        /// Print the verdict as teewatch-verdict/1 JSON.
        #[arg(long)]
        json: bool,
    },
    /// Work with configuration files.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a configuration file without running anything.
    Check { file: PathBuf },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::PASS
            };
            return ExitCode::from(code);
        }
    };
    let code = match cli.command {
        Command::Verify {
            bundle,
            config,
            target,
            json,
        } => run_verify(&bundle, config.as_deref(), target.as_deref(), json),
        Command::Config {
            command: ConfigCommand::Check { file },
        } => match Config::load(&file) {
            Ok(config) => {
                println!(
                    "{}: valid, {} target(s)",
                    file.display(),
                    config.targets.len()
                );
                Ok(exit::PASS)
            }
            Err(e) => {
                eprint!("{e}");
                Ok(exit::CONFIG)
            }
        },
    };
    match code {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("teewatch: {e:#}");
            ExitCode::from(exit::SOFTWARE)
        }
    }
}

fn run_verify(
    bundle_path: &std::path::Path,
    config_path: Option<&std::path::Path>,
    target: Option<&str>,
    json: bool,
) -> anyhow::Result<u8> {
    let text = match std::fs::read_to_string(bundle_path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("teewatch: {}: cannot read: {e}", bundle_path.display());
            return Ok(exit::DATA_ERR);
        }
    };
    let bundle = match Bundle::from_json(&text) {
        Ok(b) => b,
        Err(e) => {
            eprintln!(
                "teewatch: {}: not a teewatch bundle: {e}",
                bundle_path.display()
            );
            return Ok(exit::DATA_ERR);
        }
    };
    let mut anchors = TrustAnchors::production();
    let policy = match config_path {
        Some(path) => {
            let config = match Config::load(path) {
                Ok(c) => c,
                Err(e) => {
                    eprint!("{e}");
                    return Ok(exit::CONFIG);
                }
            };
            let name = target.unwrap_or(&bundle.target);
            let Some(target) = config.target(name) else {
                eprintln!(
                    "teewatch: {}: no [[target]] named \"{name}\"",
                    path.display()
                );
                return Ok(exit::CONFIG);
            };
            anchors = config.trust_anchors();
            target.policy.clone()
        }
        None => match &bundle.policy {
            Some(snapshot) => match Policy::from_snapshot(snapshot) {
                Ok(p) => p,
                Err(errors) => {
                    for e in errors {
                        eprintln!("teewatch: {}: policy.{e}", bundle_path.display());
                    }
                    return Ok(exit::DATA_ERR);
                }
            },
            None => Policy::default(),
        },
    };
    let verdict = verify::verify(&bundle, &policy, &anchors);
    if json {
        let text = serde_json::to_string_pretty(&verdict).context("serialising the verdict")?;
        println!("{text}");
    } else {
        print!("{}", render::checklist(&verdict));
    }
    Ok(exit::for_state(verdict.state))
}
