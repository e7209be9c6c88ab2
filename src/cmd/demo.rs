//! `teewatch demo`: the simulator and the daemon together on loopback, so a newcomer sees
//! verdicts arrive on the status page and in `/metrics`, and then — after a minute — what an
//! alert-worthy change looks like: one model starts serving another application (a drift).
//!
//! The configuration is the one the simulator writes: it trusts the simulator's **test** roots
//! through `[dangerous]` options, says so at its top, and every verdict made under it lists them.
//! Only the binary built with the `sim` feature has this command; the daemon library knows
//! nothing of the simulator and runs here exactly as `teewatch run` runs it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use teewatch::daemon::logging::LogFormat;
use teewatch::daemon::{Daemon, RunError, RunOptions};
use teewatch::exit;
use teewatch_sim::faults::Fault;
use teewatch_sim::server::{SimOptions, Simulator, model_name};

use super::{CmdError, Ctx};

/// `teewatch demo`.
#[derive(clap::Args)]
pub struct Args {
    /// Where the status page and /metrics listen.
    #[arg(long, default_value = "127.0.0.1:9477")]
    pub listen: SocketAddr,
    /// Where to keep the demo's configuration, test roots and database (a temporary folder
    /// by default).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// When to inject the drift.
    #[arg(long, default_value = "60s")]
    pub drift_after: String,
}

pub fn after_help() -> String {
    super::help::after_help(
        &[(
            "the demo on a free port (the printed status page names it), the drift after 20 s (until Ctrl-C)",
            "teewatch demo --listen 127.0.0.1:0 --drift-after 20s",
        )],
        &[exit::PASS, exit::USAGE, exit::SOFTWARE],
    )
}

/// `teewatch demo`: the simulator and the daemon on loopback until Ctrl-C.
pub fn run_demo(args: &Args, ctx: &Ctx) -> Result<u8, CmdError> {
    let (listen, dir) = (args.listen, args.dir.clone());
    let drift_after = teewatch::config::parse_interval(&args.drift_after)
        .map_err(|e| CmdError::usage(format!("--drift-after: {e}")))?;
    // The demo prints its own lines; only problems are logged (unless RUST_LOG says otherwise).
    teewatch::daemon::logging::init_with_default(LogFormat::Human, "warn");
    let dir = dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("teewatch-demo-{}", std::process::id()))
    });
    let runtime = ctx.runtime()?;
    let options = DemoOptions {
        listen,
        dir,
        drift_after,
        models: 2,
    };
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match runtime.block_on(run(options, stop)) {
        Ok(()) => Ok(exit::PASS),
        Err(e) => Err(CmdError::software(format!("demo: {e}"))),
    }
}

/// How `teewatch demo` runs.
#[derive(Debug, Clone)]
struct DemoOptions {
    /// Where the daemon serves the status page and `/metrics`.
    listen: SocketAddr,
    /// Where the demo keeps its configuration, test roots and database.
    dir: PathBuf,
    /// How long after start the drift is injected.
    drift_after: Duration,
    /// Models the simulator serves.
    models: usize,
}

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
enum DemoError {
    #[error("creating {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("starting the simulator: {0}")]
    Simulator(String),
    #[error("writing the demo configuration: {0}")]
    Config(std::io::Error),
    #[error("{0}")]
    Daemon(#[from] RunError),
}

/// The model whose application changes when the drift is injected.
fn drifting_model() -> String {
    model_name(0)
}

/// Runs the demo until `stop` resolves (Ctrl-C in the binary).
async fn run(
    options: DemoOptions,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), DemoError> {
    std::fs::create_dir_all(&options.dir).map_err(|source| DemoError::Dir {
        path: options.dir.clone(),
        source,
    })?;
    let sim = Simulator::start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        SimOptions {
            models: options.models.max(1),
            nodes: 2,
            gpus: 1,
            ..SimOptions::default()
        },
    )
    .await
    .map_err(|e| DemoError::Simulator(e.to_string()))?;
    let config_path = options.dir.join("demo.toml");
    teewatch_sim::write_config::write_config(&sim.state, &config_path)
        .map_err(DemoError::Config)?;
    let daemon = Daemon::start(RunOptions {
        config_path: config_path.clone(),
        listen: Some(options.listen),
        db: Some(options.dir.join("demo.db")),
    })
    .await?;
    let addr = daemon.addr();
    println!(
        "teewatch demo: a simulated provider with TEST trust roots (nothing here is real hardware)"
    );
    println!("  simulator      {}", sim.base_url);
    println!("  configuration  {}", config_path.display());
    println!("  status page    http://{addr}/");
    println!("  metrics        http://{addr}/metrics");
    println!(
        "  history        teewatch history --db {}",
        options.dir.join("demo.db").display()
    );
    println!(
        "Checks run every 10 s; in {} s {} starts serving another application (a drift).",
        options.drift_after.as_secs(),
        drifting_model()
    );
    println!("Press Ctrl-C to stop.\n");

    let watch = watch_verdicts(&daemon, &sim, options.drift_after);
    tokio::pin!(stop);
    tokio::select! {
        () = watch => {}
        () = &mut stop => {}
    }
    println!("\nstopping…");
    daemon.shutdown(Duration::from_secs(10)).await;
    drop(sim);
    Ok(())
}

/// Prints each verdict as it arrives and injects the drift when its time comes.
async fn watch_verdicts(daemon: &Daemon, sim: &Simulator, drift_after: Duration) {
    let started = tokio::time::Instant::now();
    let mut seen: std::collections::BTreeMap<String, Option<i64>> = Default::default();
    // The drift each target's lines have said already: a drift is news once.
    let mut drift_said: std::collections::BTreeMap<String, (String, String)> = Default::default();
    let mut drifted = false;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        if !drifted && started.elapsed() >= drift_after {
            drifted = true;
            let model = drifting_model();
            match sim.state.set_fault(Some(&model), Fault::DriftCompose, true) {
                Ok(()) => println!(
                    "\n>>> drift injected: {model} now runs another app compose. Its next check \
                     fails pin:compose_hash and raises a drift event; \
                     teewatch_measurement_drift{{target=\"{model}\",field=\"compose_hash\"}} becomes 1.\n"
                ),
                Err(e) => println!("\n>>> could not inject the drift: {e}\n"),
            }
        }
        for (target, status) in daemon.shared.statuses() {
            let last = seen.entry(target.clone()).or_insert(None);
            if *last == status.check_id {
                continue;
            }
            *last = status.check_id;
            // One name per failing check, however many nodes or GPUs it failed on.
            let failing: Vec<String> = status
                .failing
                .iter()
                .filter(|c| c.state == teewatch::verify::State::Fail)
                .map(|c| c.name.clone())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            let drift = status
                .last_drift
                .as_ref()
                .filter(|d| {
                    let said = (d.field.clone(), d.new_value.clone());
                    drift_said.insert(target.clone(), said.clone()) != Some(said)
                })
                .map(|d| format!("  drift: {} → {}", d.field, short(&d.new_value)))
                .unwrap_or_default();
            println!(
                "{}  {:<18} {:<7} {}{}",
                status.last_check.format("%H:%M:%S"),
                target,
                status.state.as_str(),
                if failing.is_empty() {
                    String::new()
                } else {
                    format!("failing: {}", failing.join(", "))
                },
                drift
            );
        }
    }
}

fn short(value: &str) -> String {
    if value.chars().count() > 16 {
        format!("{}…", value.chars().take(16).collect::<String>())
    } else {
        value.to_string()
    }
}
