//! `teewatch history ack`: accept a target's drift after review. The acknowledgement is one
//! write to the store, safe while the daemon runs (it waits for the daemon's write lock like any
//! writer); the daemon brings it in at the target's next check or at a reload.

use anyhow::Context;

use teewatch::exit;
use teewatch::store::AckRequest;

use crate::DbSource;

pub fn history_ack(
    source: &DbSource,
    target: String,
    field: String,
    value: Option<String>,
    note: Option<String>,
) -> anyhow::Result<u8> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let store = match super::daemon::history_store(source, &runtime)? {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let request = AckRequest {
        target,
        field,
        value,
        by: acknowledger(),
        note: note.filter(|n| !n.trim().is_empty()),
        at: chrono::Utc::now(),
    };
    let outcome = runtime.block_on(store.acknowledge(&request));
    runtime.block_on(store.close());
    let outcome = outcome.context("recording the acknowledgement")?;
    let (text, accepted) = teewatch::history::ack_report(&outcome);
    if accepted {
        print!("{text}");
        Ok(exit::PASS)
    } else {
        eprint!("teewatch: history ack: {text}");
        Ok(exit::USAGE)
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
