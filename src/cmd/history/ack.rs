//! `teewatch history ack`: accept a target's drift after review. The acknowledgement is one
//! write to the store, safe while the daemon runs (it waits for the daemon's write lock like any
//! writer); the daemon brings it in at the target's next check or at a reload.

use teewatch::exit;
use teewatch::store::AckRequest;

use super::DbSource;
use crate::cmd::{CmdError, Ctx, output};

/// `teewatch history ack`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub source: DbSource,
    /// The target whose drift to accept.
    #[arg(long)]
    pub target: String,
    /// The drifted field (as `history` lists it, e.g. compose_hash).
    #[arg(long)]
    pub field: String,
    /// Only this drifted value (default: every drifted value of the field not accepted yet).
    #[arg(long)]
    pub value: Option<String>,
    /// Why it is accepted, kept with the acknowledgement.
    #[arg(long)]
    pub note: Option<String>,
}

pub fn after_help() -> String {
    crate::cmd::help::after_help(
        &[(
            "accept the compose drift a simulator model raised, with a note (exit 0)",
            "teewatch history ack --db teewatch.db --target TEE/sim-model-0 --field compose_hash --note reviewed",
        )],
        &super::STORE_EXITS,
    )
}

pub fn run(args: &Args, ctx: &Ctx) -> Result<u8, CmdError> {
    let store = super::open(&args.source, ctx)?;
    let runtime = ctx.runtime()?;
    let request = AckRequest {
        target: args.target.clone(),
        field: args.field.clone(),
        value: args.value.clone(),
        by: acknowledger(),
        note: args.note.clone().filter(|n| !n.trim().is_empty()),
        at: chrono::Utc::now(),
    };
    let outcome = runtime.block_on(store.acknowledge(&request));
    runtime.block_on(store.close());
    let outcome =
        outcome.map_err(|e| CmdError::software(format!("recording the acknowledgement: {e}")))?;
    let (text, accepted) = super::text::ack_report(&outcome);
    if accepted {
        output::print(&text)?;
        Ok(exit::PASS)
    } else {
        Err(CmdError::usage(format!(
            "history ack: {}",
            text.trim_end_matches('\n')
        )))
    }
}

/// Who is acknowledging, as far as the environment says: the user who ran sudo, else the login
/// user, with the host name when it can be read (`None` when no user is named).
fn acknowledger() -> Option<String> {
    let user = ["SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|u| !u.trim().is_empty()))?;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty());
    Some(match host {
        Some(host) => format!("{user}@{host}"),
        None => user,
    })
}
