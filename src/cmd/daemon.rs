//! The daemon-side commands: `run` and `history [export]`.

use std::path::{Path, PathBuf};

use anyhow::Context;

use teewatch::daemon::logging::LogFormat;
use teewatch::exit;

use crate::DbSource;

pub fn run_daemon(
    config: PathBuf,
    listen: Option<std::net::SocketAddr>,
    db: Option<PathBuf>,
    log_format: LogFormat,
) -> anyhow::Result<u8> {
    use teewatch::daemon::{RunError, RunOptions};
    teewatch::daemon::logging::init(log_format);
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let options = RunOptions {
        config_path: config,
        listen,
        db,
    };
    match runtime.block_on(teewatch::daemon::run(options)) {
        Ok(()) => Ok(exit::PASS),
        Err(RunError::Config(e)) => {
            eprint!("{e}");
            Ok(exit::CONFIG)
        }
        Err(e) => {
            tracing::error!(error = %e, "teewatch stopped");
            eprintln!("teewatch: {e}");
            Ok(e.exit_code())
        }
    }
}

/// Opens the store a `history` command reads (never creating one).
pub(crate) fn history_store(
    source: &DbSource,
    runtime: &tokio::runtime::Runtime,
) -> anyhow::Result<Result<teewatch::store::Store, u8>> {
    let db = match teewatch::daemon::history_db(source.db.as_deref(), source.config.as_deref()) {
        Ok(db) => db,
        Err(e) => {
            eprint!("{e}");
            return Ok(Err(exit::CONFIG));
        }
    };
    match runtime.block_on(teewatch::store::Store::open_existing(&db)) {
        Ok(store) => Ok(Ok(store)),
        Err(e) => {
            eprintln!("teewatch: {}: {e}", db.display());
            Ok(Err(exit::DATA_ERR))
        }
    }
}

pub fn history_list(
    source: &DbSource,
    target: Option<String>,
    since: Option<&str>,
    json: bool,
) -> anyhow::Result<u8> {
    let since = match since.map(|s| teewatch::history::parse_since(s, chrono::Utc::now())) {
        None => None,
        Some(Ok(at)) => Some(at),
        Some(Err(e)) => {
            eprintln!("teewatch: --since: {e}");
            return Ok(exit::USAGE);
        }
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let store = match history_store(source, &runtime)? {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let filter = teewatch::store::HistoryFilter {
        target,
        since,
        limit: None,
    };
    let checks = runtime
        .block_on(store.history(&filter))
        .context("reading checks")?;
    let drift = runtime
        .block_on(store.drift_events(&filter))
        .context("reading drift events")?;
    let accepted = runtime
        .block_on(store.acceptances(&filter))
        .context("reading accepted drift")?;
    runtime.block_on(store.close());
    if json {
        println!("{}", teewatch::history::to_json(&checks, &drift, &accepted));
    } else {
        print!(
            "{}",
            teewatch::history::to_table(&checks, &drift, &accepted)
        );
    }
    Ok(exit::PASS)
}

pub fn history_export(source: &DbSource, check: i64, out: Option<&Path>) -> anyhow::Result<u8> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let store = match history_store(source, &runtime)? {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let bundle = runtime.block_on(store.export_bundle(check));
    runtime.block_on(store.close());
    let bundle = match bundle {
        Ok(b) => b,
        Err(e) => {
            eprintln!("teewatch: check {check}: {e}");
            return Ok(exit::DATA_ERR);
        }
    };
    let text = serde_json::to_string_pretty(&bundle).context("serialising the bundle")?;
    match out {
        Some(path) => std::fs::write(path, format!("{text}\n"))
            .with_context(|| format!("writing {}", path.display()))?,
        None => println!("{text}"),
    }
    Ok(exit::PASS)
}
