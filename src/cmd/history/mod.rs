//! `teewatch history`: the stored checks, drift events and accepted drift (`text.rs` prints
//! them), a stored check's bundle (`history export`) and the acknowledgement of a reviewed drift
//! (`history ack`, `ack.rs`) and the check of the history's hash chain (`history verify`,
//! `verify.rs`). Every one reads an existing store and never creates one: a path
//! with no database is exit 66.

mod ack;
mod text;
mod verify;

use std::path::{Path, PathBuf};

use teewatch::config::StoreLocation;
use teewatch::exit;
use teewatch::store::Store;

use super::{CmdError, Ctx, output};

/// `teewatch history`.
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(flatten)]
    pub source: Option<DbSource>,
    /// Only this target.
    #[arg(long)]
    pub target: Option<String>,
    /// Only checks since this time: RFC 3339 (`2026-11-28T00:00:00Z`) or a duration (`24h`).
    #[arg(long)]
    pub since: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Where `history` finds the database: `--db PATH` or the `[daemon] db` of `--config FILE`.
#[derive(clap::Args, Clone)]
#[group(required = true, multiple = false)]
pub struct DbSource {
    /// The SQLite database.
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// The configuration whose `[daemon] db` to read.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

#[derive(clap::Subcommand)]
pub enum Command {
    /// Write the evidence bundle of a stored check (it re-verifies with `teewatch verify`).
    #[command(after_help = export_help())]
    Export(ExportArgs),
    /// Accept a target's drift after review (recorded in the history with who and when; safe
    /// while the daemon runs, which stops counting the drift at the target's next check or a
    /// reload). A value outside the target's pins stays drifting until a pin accepts it.
    #[command(after_help = ack::after_help())]
    Ack(ack::Args),
    /// Recompute the hash chain of the stored checks and report, per target, that it is intact
    /// or where it breaks (a check edited, missing or reordered).
    #[command(after_help = verify::after_help())]
    Verify(verify::Args),
}

/// `teewatch history export`.
#[derive(clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub source: DbSource,
    /// The check id (as `history` lists it).
    #[arg(long)]
    pub check: i64,
    /// Write here instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// The exit codes of every command that reads the store: its output, a bad command line, a bad
/// stored check, no database, a failure, a bad configuration.
const STORE_EXITS: [u8; 6] = [
    exit::PASS,
    exit::USAGE,
    exit::DATA_ERR,
    exit::NO_INPUT,
    exit::SOFTWARE,
    exit::CONFIG,
];

pub fn after_help() -> String {
    super::help::after_help(
        &[
            (
                "the last hour of the database `teewatch run --db teewatch.db` keeps (exit 0)",
                "teewatch history --db teewatch.db --since 1h",
            ),
            (
                "one target's checks as JSON (exit 0)",
                "teewatch history --db teewatch.db --target TEE/sim-model-0 --json",
            ),
        ],
        &STORE_EXITS,
    )
}

fn export_help() -> String {
    super::help::after_help(
        &[(
            "the bundle of check 1, which `teewatch verify --config sim.toml check-1.json` re-judges (exit 0)",
            "teewatch history export --db teewatch.db --check 1 --out check-1.json",
        )],
        &STORE_EXITS,
    )
}

pub fn run(args: &Args, ctx: &Ctx) -> Result<u8, CmdError> {
    match (&args.command, &args.source) {
        (Some(Command::Export(export)), _) => run_export(export, ctx),
        (Some(Command::Ack(ack)), _) => ack::run(ack, ctx),
        (Some(Command::Verify(verify)), _) => verify::run(verify, ctx),
        (None, Some(source)) => list(args, source, ctx),
        (None, None) => Err(CmdError::usage("history needs --db PATH or --config FILE")),
    }
}

/// The database a source names: `--db` as given, or the configuration's `[daemon] db`.
pub fn database(source: &DbSource) -> Result<StoreLocation, CmdError> {
    let db = teewatch::daemon::history_db(source.db.as_deref(), source.config.as_deref())?;
    if let Some(path) = db.sqlite_path() {
        if !path.exists() {
            return Err(CmdError::no_input(format!(
                "no database at {}",
                path.display()
            )));
        }
    }
    Ok(db)
}

/// Opens the store a `history` command reads (never creating one): 66 when there is none, 65
/// when the file is not a teewatch store.
pub fn open(source: &DbSource, ctx: &Ctx) -> Result<Store, CmdError> {
    let db = database(source)?;
    ctx.runtime()?
        .block_on(Store::open_existing_location(&db))
        .map_err(|e| CmdError::data(format!("{db}: {e}")))
}

fn list(args: &Args, source: &DbSource, ctx: &Ctx) -> Result<u8, CmdError> {
    let since = match args.since.as_deref() {
        None => None,
        Some(s) => Some(
            text::parse_since(s, chrono::Utc::now())
                .map_err(|e| CmdError::usage(format!("--since: {e}")))?,
        ),
    };
    let store = open(source, ctx)?;
    let runtime = ctx.runtime()?;
    let filter = teewatch::store::HistoryFilter {
        target: args.target.clone(),
        since,
        limit: None,
    };
    let read = runtime.block_on(async {
        let checks = store.history(&filter).await.map_err(|e| ("checks", e))?;
        let drift = store
            .drift_events(&filter)
            .await
            .map_err(|e| ("drift events", e))?;
        let accepted = store
            .acceptances(&filter)
            .await
            .map_err(|e| ("accepted drift", e))?;
        Ok((checks, drift, accepted))
    });
    runtime.block_on(store.close());
    let (checks, drift, accepted) =
        read.map_err(|(what, e): (&str, teewatch::store::StoreError)| {
            CmdError::software(format!("reading {what}: {e}"))
        })?;
    if args.json {
        output::line(text::to_json(&checks, &drift, &accepted))?;
    } else {
        output::print(&text::to_table(&checks, &drift, &accepted))?;
    }
    Ok(exit::PASS)
}

fn run_export(args: &ExportArgs, ctx: &Ctx) -> Result<u8, CmdError> {
    let store = open(&args.source, ctx)?;
    let runtime = ctx.runtime()?;
    let bundle = runtime.block_on(store.export_bundle(args.check));
    runtime.block_on(store.close());
    let bundle = bundle.map_err(|e| CmdError::data(format!("check {}: {e}", args.check)))?;
    let text = serde_json::to_string_pretty(&bundle)
        .map_err(|e| CmdError::software(format!("serialising the bundle: {e}")))?;
    match &args.out {
        Some(path) => write(path, &format!("{text}\n")),
        None => output::line(text),
    }?;
    Ok(exit::PASS)
}

fn write(path: &Path, text: &str) -> Result<(), CmdError> {
    std::fs::write(path, text)
        .map_err(|e| CmdError::software(format!("writing {}: {e}", path.display())))
}
