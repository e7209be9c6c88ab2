//! `teewatch history verify`: recomputes the hash chain of every target's stored checks (or one
//! target's) and prints, per target, that it is intact or its first broken link: the check, what
//! broke it (edited, missing, reordered) and what differs. With `--head`, a record hash kept
//! outside the database (the daemon logs one with every finished check) must be found in an
//! intact chain: that is what catches someone who rewrote the database and recomputed the hashes.

use teewatch::exit;
use teewatch::store::TargetChain;

use super::DbSource;
use crate::cmd::{CmdError, Ctx, output};

/// `teewatch history verify`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub source: DbSource,
    /// Only this target's chain.
    #[arg(long)]
    pub target: Option<String>,
    /// A record hash (64 hex digits, as the daemon's "check finished" log line gives it) that
    /// must be in an intact chain.
    #[arg(long)]
    pub head: Option<String>,
}

/// The exit codes: intact, broken, bad command line, unreadable store, no database, failure.
const EXITS: [u8; 6] = [
    exit::PASS,
    exit::FAIL,
    exit::USAGE,
    exit::DATA_ERR,
    exit::NO_INPUT,
    exit::SOFTWARE,
];

pub fn after_help() -> String {
    crate::cmd::help::after_help(
        &[(
            "every target's chain in the database `teewatch run --db teewatch.db` keeps, intact (exit 0)",
            "teewatch history verify --db teewatch.db",
        )],
        &EXITS,
    )
}

pub fn run(args: &Args, ctx: &Ctx) -> Result<u8, CmdError> {
    let head = match args.head.as_deref() {
        None => None,
        Some(text) => Some(parse_head(text).map_err(|e| CmdError::usage(format!("--head: {e}")))?),
    };
    let store = super::open(&args.source, ctx)?;
    let runtime = ctx.runtime()?;
    let chains = runtime.block_on(store.verify_chain(args.target.as_deref(), head.as_deref()));
    runtime.block_on(store.close());
    let chains =
        chains.map_err(|e| CmdError::software(format!("verifying the history chain: {e}")))?;
    if let Some(target) = &args.target {
        if chains.is_empty() {
            return Err(CmdError::usage(format!(
                "no target \"{target}\" in the store"
            )));
        }
    }
    let (text, intact) = report(&chains, args.head.as_deref());
    output::print(&text)?;
    Ok(if intact { exit::PASS } else { exit::FAIL })
}

/// A record hash as given on the command line: 64 hex digits, either case.
fn parse_head(text: &str) -> Result<Vec<u8>, String> {
    let text = text.trim();
    if text.len() != 64 {
        return Err(format!(
            "expected 64 hex digits (a sha-256), found {} characters",
            text.len()
        ));
    }
    hex::decode(text.to_ascii_lowercase()).map_err(|e| format!("expected hex digits: {e}"))
}

/// "1 check", "2 checks".
fn checks(n: u64) -> String {
    if n == 1 {
        "1 check".into()
    } else {
        format!("{n} checks")
    }
}

/// One line per target, then the `--head` finding; and whether everything held.
fn report(chains: &[TargetChain], head: Option<&str>) -> (String, bool) {
    let mut out = String::new();
    let mut intact = true;
    for chain in chains {
        let unchained = if chain.unchained > 0 {
            format!(
                ", {} stored before the chain began not covered",
                checks(chain.unchained)
            )
        } else {
            String::new()
        };
        match &chain.broken {
            None => {
                let head = chain
                    .head
                    .as_ref()
                    .map_or("no chained checks".to_string(), |(id, h)| {
                        format!("head {h} (check {id})")
                    });
                out.push_str(&format!(
                    "{}: intact, {}, {head}{unchained}\n",
                    chain.target,
                    checks(chain.verified)
                ));
            }
            Some(link) => {
                intact = false;
                out.push_str(&format!(
                    "{}: broken at check {}: {}: {} ({} verified before it{unchained})\n",
                    chain.target,
                    link.check_id,
                    link.fault.as_str(),
                    link.detail,
                    checks(chain.verified)
                ));
            }
        }
    }
    if let Some(head) = head {
        match chains.iter().find_map(|c| c.head_found.map(|id| (c, id))) {
            Some((chain, id)) => out.push_str(&format!(
                "head {head}: found at check {id} of {}, in an intact part of its chain\n",
                chain.target
            )),
            None => {
                intact = false;
                out.push_str(&format!(
                    "head {head}: expected in an intact chain, found in none: the history was rewritten or cut after it was logged\n"
                ));
            }
        }
    }
    (out, intact)
}
