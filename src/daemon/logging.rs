//! Structured logs through `tracing`: human-readable by default, JSON on request, and without
//! timestamps or colours when stderr goes to the systemd journal (which stamps every line itself).

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One readable line per event.
    Human,
    /// One JSON object per event (for log shippers).
    Json,
}

/// Whether stderr is connected to the journal: systemd sets `JOURNAL_STREAM` to the device and
/// inode of the stream it gave the service, so a match means our stderr is that stream.
pub fn under_journald() -> bool {
    let Ok(value) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.split_once(':') else {
        return false;
    };
    stderr_dev_ino().is_some_and(|(d, i)| d.to_string() == dev && i.to_string() == ino)
}

#[cfg(unix)]
fn stderr_dev_ino() -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata("/proc/self/fd/2").ok()?;
    Some((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn stderr_dev_ino() -> Option<(u64, u64)> {
    None
}

/// The filter when `RUST_LOG` is not set: teewatch at info, the scheduler library's chatter at
/// warn.
const DEFAULT_FILTER: &str = "info,tokio_cron_scheduler=warn";

/// Installs the global subscriber. The level comes from `RUST_LOG` (default [`DEFAULT_FILTER`]). Returns
/// false when a subscriber was already installed (tests start several daemons in one process).
pub fn init(format: LogFormat) -> bool {
    init_with_default(format, DEFAULT_FILTER)
}

/// [`init`] with another filter for when `RUST_LOG` is not set.
pub fn init_with_default(format: LogFormat, default_filter: &str) -> bool {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let journald = under_journald();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(!journald && std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match (format, journald) {
        (LogFormat::Json, true) => builder.json().without_time().try_init().is_ok(),
        (LogFormat::Json, false) => builder.json().try_init().is_ok(),
        (LogFormat::Human, true) => builder.without_time().try_init().is_ok(),
        (LogFormat::Human, false) => builder.try_init().is_ok(),
    }
}
