//! `teewatch backup`: an online, consistent copy of the store, checked before it is trusted.
//!
//! Safe while the daemon runs (SQLite's `VACUUM INTO` reads one consistent snapshot, WAL
//! included); the copy must be a new file, and it is opened read-only afterwards and checked
//! (`PRAGMA integrity_check`, schema version, checks held), so a backup that could not be
//! restored is reported now. Restoring is copying it over the database while the daemon is
//! stopped (`docs/store.md`). It reads the store the way `history` does (`history::open`).

use std::path::PathBuf;

use teewatch::exit;
use teewatch::store::StoreError;

use super::history::DbSource;
use super::{CmdError, Ctx, output};

/// `teewatch backup`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub source: DbSource,
    /// The copy to write; it must not exist.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn after_help() -> String {
    super::help::after_help(
        &[(
            "a checked copy of the database `teewatch run --db teewatch.db` keeps (exit 0)",
            "teewatch backup --db teewatch.db --out backup.db",
        )],
        &[
            exit::PASS,
            exit::USAGE,
            exit::DATA_ERR,
            exit::NO_INPUT,
            exit::SOFTWARE,
            exit::CANT_CREATE,
            exit::CONFIG,
        ],
    )
}

pub fn run(args: &Args, ctx: &Ctx) -> Result<u8, CmdError> {
    let store = super::history::open(&args.source, ctx)?;
    let runtime = ctx.runtime()?;
    let result = runtime.block_on(store.backup_to(&args.out));
    runtime.block_on(store.close());
    match result {
        Ok(summary) => {
            let chain = match &summary.chain_broken {
                None => "no history chain (schema before 3)".to_string(),
                Some(broken) if broken.is_empty() => "history chain intact".to_string(),
                Some(broken) => {
                    let links: Vec<String> = broken
                        .iter()
                        .map(|(target, link)| {
                            format!(
                                "{target} at check {} ({})",
                                link.check_id,
                                link.fault.as_str()
                            )
                        })
                        .collect();
                    format!(
                        "history chain broken: {} (teewatch history verify says more)",
                        links.join(", ")
                    )
                }
            };
            output::line(format!(
                "{}: {} bytes, schema {}, {} check(s), newest {}; integrity ok; {chain}",
                summary.path.display(),
                summary.bytes,
                summary.schema_version,
                summary.checks,
                summary
                    .newest_check
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                    .unwrap_or_else(|| "none".into())
            ))?;
            Ok(exit::PASS)
        }
        Err(e @ StoreError::BackupPostgres(_)) => Err(CmdError::usage(e.to_string())),
        Err(e @ StoreError::BackupExists(_)) => {
            Err(CmdError::new(exit::CANT_CREATE, e.to_string()))
        }
        Err(e) => Err(CmdError::software(e.to_string())),
    }
}
