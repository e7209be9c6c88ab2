//! The `teewatch` command line: reads like a script from arguments to exit code.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use teewatch::config::Config;
use teewatch::daemon::logging::LogFormat;

mod cmd;

/// mimalloc instead of glibc malloc: the daemon allocates many small short-lived buffers per check
/// (JSON, hex, HTTP), and glibc's allocator spent 12 % of the CPU on them at 2,000 targets.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
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
    /// One live check of one or all configured targets, printing the verdicts.
    Check {
        /// The configuration file.
        #[arg(long)]
        config: PathBuf,
        /// Check only this target.
        #[arg(long)]
        target: Option<String>,
        /// Print a JSON array of teewatch-verdict/1 verdicts.
        #[arg(long)]
        json: bool,
        /// Write each target's bundle to DIR/<target>.json.
        #[arg(long, value_name = "DIR")]
        save_bundle: Option<PathBuf>,
    },
    /// Verify one live check (or a saved bundle) of a target and print its verified values as
    /// pins; with --write, set them in the configuration file.
    Pin {
        /// The configuration file.
        #[arg(long)]
        config: PathBuf,
        /// The target to pin.
        #[arg(long)]
        target: String,
        /// Take the evidence from this saved bundle instead of a live check.
        #[arg(long)]
        bundle: Option<PathBuf>,
        /// Set the pins in the configuration file (comments and layout kept).
        #[arg(long)]
        write: bool,
    },
    /// Run the TEE provider, PCCS and NRAS simulator (test trust roots, loopback only).
    #[cfg(feature = "sim")]
    Sim {
        /// Address to listen on (loopback only).
        #[arg(long, default_value = "127.0.0.1:8088")]
        listen: std::net::SocketAddr,
        /// How many models to serve.
        #[arg(long, default_value_t = 1)]
        models: usize,
        /// Nodes per model (served round-robin, each with its own key).
        #[arg(long, default_value_t = 1)]
        nodes: usize,
        /// GPUs per node.
        #[arg(long, default_value_t = 1)]
        gpus: usize,
        /// Faults on at start, as `NAME` or `MODEL=NAME` (repeatable).
        #[arg(long = "fault")]
        faults: Vec<String>,
        /// Milliseconds before a chat's signature becomes available.
        #[arg(long, default_value_t = 0)]
        signature_delay_ms: u64,
        /// Write a ready teewatch configuration (and the API key and test roots beside it).
        #[arg(long)]
        write_config: Option<PathBuf>,
        /// Attestation format of each model, in order: dstack, near-gateway, near-direct, chutes
        /// or tinfoil (repeatable; models beyond the list serve dstack).
        #[arg(long = "format", value_name = "NAME")]
        formats: Vec<String>,
        /// Member order of each NEAR model's compose-manager actions, in order: manager (hashed
        /// and served in the compose manager's order), sorted-view (hashed so, served sorted by
        /// key) or sorted (hashed and served sorted) (repeatable; models beyond the list: manager).
        #[arg(long = "actions-order", value_name = "ORDER")]
        actions_orders: Vec<String>,
        /// Serve everything over HTTPS with the simulator's self-signed certificate.
        #[arg(long)]
        tls: bool,
    },
    /// Run the daemon: check every target on its schedule, keep the history, serve /metrics.
    Run {
        /// The configuration file.
        #[arg(long)]
        config: PathBuf,
        /// Listen here instead of `[daemon] listen`.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Use this database instead of `[daemon] db`.
        #[arg(long)]
        db: Option<PathBuf>,
        /// Log format (timestamps are left out when stderr is the systemd journal).
        #[arg(long, value_enum, default_value = "human")]
        log_format: LogFormat,
    },
    /// Start the simulator and the daemon on loopback: watch verdicts arrive, then a drift.
    #[cfg(feature = "sim")]
    Demo {
        /// Where the status page and /metrics listen.
        #[arg(long, default_value = "127.0.0.1:9477")]
        listen: std::net::SocketAddr,
        /// Where to keep the demo's configuration, test roots and database (a temporary folder
        /// by default).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// When to inject the drift.
        #[arg(long, default_value = "60s")]
        drift_after: String,
    },
    /// List past checks and drift events from the store.
    #[command(args_conflicts_with_subcommands = true)]
    History {
        #[command(flatten)]
        source: Option<DbSource>,
        /// Only this target.
        #[arg(long)]
        target: Option<String>,
        /// Only checks since this time: RFC 3339 (`2026-11-28T00:00:00Z`) or a duration (`24h`).
        #[arg(long)]
        since: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(subcommand)]
        command: Option<HistoryCommand>,
    },
    /// Write an online, consistent copy of the store (safe while the daemon runs) and check it.
    Backup {
        #[command(flatten)]
        source: DbSource,
        /// The copy to write; it must not exist.
        #[arg(long)]
        out: PathBuf,
    },
    /// Work with configuration files.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

/// Where `history` finds the database: `--db PATH` or the `[daemon] db` of `--config FILE`.
#[derive(clap::Args, Clone)]
#[group(required = true, multiple = false)]
struct DbSource {
    /// The SQLite database.
    #[arg(long)]
    db: Option<PathBuf>,
    /// The configuration whose `[daemon] db` to read.
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum HistoryCommand {
    /// Write the evidence bundle of a stored check (it re-verifies with `teewatch verify`).
    Export {
        #[command(flatten)]
        source: DbSource,
        /// The check id (as `history` lists it).
        #[arg(long)]
        check: i64,
        /// Write here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Accept a target's drift after review (recorded in the history with who and when; safe
    /// while the daemon runs, which stops counting the drift at the target's next check or a
    /// reload). A value outside the target's pins stays drifting until a pin accepts it.
    Ack {
        #[command(flatten)]
        source: DbSource,
        /// The target whose drift to accept.
        #[arg(long)]
        target: String,
        /// The drifted field (as `history` lists it, e.g. compose_hash).
        #[arg(long)]
        field: String,
        /// Only this drifted value (default: every drifted value of the field not accepted yet).
        #[arg(long)]
        value: Option<String>,
        /// Why it is accepted, kept with the acknowledgement.
        #[arg(long)]
        note: Option<String>,
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
        Command::Check {
            config,
            target,
            json,
            save_bundle,
        } => run_check(&config, target.as_deref(), json, save_bundle.as_deref()),
        Command::Pin {
            config,
            target,
            bundle,
            write,
        } => cmd::pin::run_pin(&config, &target, bundle.as_deref(), write),
        #[cfg(feature = "sim")]
        Command::Sim {
            listen,
            models,
            nodes,
            gpus,
            faults,
            signature_delay_ms,
            write_config,
            formats,
            actions_orders,
            tls,
        } => cmd::sim::run_sim(
            listen,
            models,
            nodes,
            gpus,
            &faults,
            signature_delay_ms,
            write_config.as_deref(),
            &formats,
            &actions_orders,
            tls,
        ),
        Command::Run {
            config,
            listen,
            db,
            log_format,
        } => cmd::daemon::run_daemon(config, listen, db, log_format),
        #[cfg(feature = "sim")]
        Command::Demo {
            listen,
            dir,
            drift_after,
        } => cmd::demo::run_demo(listen, dir, &drift_after),
        Command::History {
            source,
            target,
            since,
            json,
            command,
        } => match command {
            Some(HistoryCommand::Export { source, check, out }) => {
                cmd::daemon::history_export(&source, check, out.as_deref())
            }
            Some(HistoryCommand::Ack {
                source,
                target,
                field,
                value,
                note,
            }) => cmd::ack::history_ack(&source, target, field, value, note),
            None => match source {
                Some(source) => cmd::daemon::history_list(&source, target, since.as_deref(), json),
                None => {
                    eprintln!("teewatch: history needs --db PATH or --config FILE");
                    Ok(exit::USAGE)
                }
            },
        },
        Command::Backup { source, out } => cmd::backup::backup(&source, &out),
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

/// A verdict's `policy_source` when a configuration's target judged it.
fn configured_policy_source(target: &str, config_path: &std::path::Path) -> String {
    format!(
        "target \"{target}\" of {} (your configuration)",
        config_path.display()
    )
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
    let (policy, policy_source) = match config_path {
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
            (target.policy.clone(), configured_policy_source(name, path))
        }
        None => match &bundle.policy {
            Some(snapshot) => match Policy::from_snapshot(snapshot) {
                Ok(p) => (p, verify::policy::POLICY_FROM_BUNDLE.to_string()),
                Err(errors) => {
                    for e in errors {
                        eprintln!("teewatch: {}: policy.{e}", bundle_path.display());
                    }
                    return Ok(exit::DATA_ERR);
                }
            },
            None => (
                Policy::default(),
                verify::policy::POLICY_DEFAULT.to_string(),
            ),
        },
    };
    let mut verdict = verify::verify(&bundle, &policy, &anchors);
    verdict.policy_source = Some(policy_source);
    if json {
        let text = serde_json::to_string_pretty(&verdict).context("serialising the verdict")?;
        println!("{text}");
    } else {
        print!("{}", render::checklist(&verdict));
    }
    Ok(exit::for_state(verdict.state))
}

/// `teewatch check`: fetch, verify and print each target once.
fn run_check(
    config_path: &std::path::Path,
    only: Option<&str>,
    json: bool,
    save_bundle: Option<&std::path::Path>,
) -> anyhow::Result<u8> {
    use teewatch::fetch::check::{Fetcher, bundle_file_name};
    use teewatch::fetch::http::{Http, HttpOptions};

    let config = match Config::load(config_path) {
        Ok(c) => c,
        Err(e) => {
            eprint!("{e}");
            return Ok(exit::CONFIG);
        }
    };
    let targets: Vec<&teewatch::config::TargetConfig> = match only {
        Some(name) => match config.target(name) {
            Some(t) => vec![t],
            None => {
                eprintln!(
                    "teewatch: {}: no [[target]] named \"{name}\"",
                    config_path.display()
                );
                return Ok(exit::CONFIG);
            }
        },
        // Policy-only targets have nothing to fetch.
        None => config.monitored().map(|(t, _)| t).collect(),
    };
    for warning in teewatch::fetch::check::key_file_warnings(&config) {
        eprintln!("teewatch: warning: {warning}");
    }
    let anchors = config.trust_anchors();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let http = Http::new(HttpOptions::for_config(&config))
        .map_err(|e| anyhow::anyhow!("http client: {e}"))?;
    let cache_dir = config.daemon.db.parent().map(|d| d.join("collateral"));
    let fetcher = Fetcher::new(http, cache_dir.as_deref());
    let mut verdicts = Vec::new();
    let mut worst = verify::State::Pass;
    for target in targets {
        let bundle_json = match runtime.block_on(fetcher.check(&config, target)) {
            Ok(b) => b,
            // A key that cannot be read makes this target's checks unknown, not the whole run.
            Err(e) => match e.stand_in_bundle(&config, target) {
                Some(bundle) => {
                    eprintln!("teewatch: {e}; its checks are unknown");
                    bundle
                }
                None => {
                    eprintln!("teewatch: {e}");
                    return Ok(exit::CONFIG);
                }
            },
        };
        if let Some(dir) = save_bundle {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            let path = dir.join(bundle_file_name(&target.name));
            let text =
                serde_json::to_string_pretty(&bundle_json).context("serialising the bundle")?;
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        }
        let bundle = Bundle::from_value(bundle_json).context("the fetched bundle is malformed")?;
        let mut verdict = verify::verify(&bundle, &target.policy, &anchors);
        verdict.policy_source = Some(configured_policy_source(&target.name, config_path));
        worst = worst.max(verdict.state);
        if !json {
            print!("{}", render::checklist(&verdict));
            println!();
        }
        verdicts.push(verdict);
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&verdicts).context("serialising the verdicts")?
        );
    }
    Ok(exit::for_state(worst))
}
