//! `teewatch demo`: the simulator and the daemon together on loopback, so a newcomer sees
//! verdicts arrive on the status page and in `/metrics`, then what an alert-worthy change looks
//! like — one model starts serving another application (a drift) — and how an operator who
//! approves the change recovers from it: the new compose hash is pinned the way
//! `teewatch pin --write` pins it, the daemon reloads the configuration the way SIGHUP makes it,
//! and the target passes again.
//!
//! The targets use the `nanogpt` profile: the simulator serves NanoGPT's API paths and echoes the
//! client's nonce as NanoGPT does, and teewatch judges the connection as proxied. The
//! configuration is the one the simulator writes: it trusts the simulator's **test** roots
//! through `[dangerous]` options, says so at its top, and every verdict made under it lists them.
//! Only the binary built with the `sim` feature has this command; the daemon library knows
//! nothing of the simulator and runs here exactly as `teewatch run` runs it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};

use teewatch::daemon::logging::LogFormat;
use teewatch::daemon::runner::TargetStatus;
use teewatch::daemon::{Daemon, RunError, RunOptions};
use teewatch::exit;
use teewatch::verify::{Bundle, State};
use teewatch_sim::faults::Fault;
use teewatch_sim::server::{SimOptions, Simulator, model_name};

use super::{CmdError, Ctx, output};

/// How many failing checks of the drifted target the demo shows before it accepts the drift:
/// long enough to see the alert hold (a check every 10 s), short enough to wait for.
const ACCEPT_AFTER_FAILING_CHECKS: u32 = 3;

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
    let outcome = runtime.block_on(async {
        // Ctrl-C is caught from here on, before the first line is printed: a reader who stops
        // the demo as soon as it speaks gets a clean stop, not the default SIGINT death.
        let mut interrupt =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
                .map_err(DemoError::Signal)?;
        run(options, async move {
            interrupt.recv().await;
        })
        .await
    });
    match outcome {
        Ok(()) => Ok(exit::PASS),
        // A closed standard output ends the demo quietly, as it ends every command.
        Err(DemoError::Output(e)) => Err(e),
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
    #[error("catching Ctrl-C: {0}")]
    Signal(std::io::Error),
    #[error("{0}")]
    Output(#[from] CmdError),
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
    use_nanogpt_profile(&config_path).map_err(DemoError::Config)?;
    let daemon = Daemon::start(RunOptions {
        config_path: config_path.clone(),
        listen: Some(options.listen),
        db: Some(options.dir.join("demo.db")),
    })
    .await?;
    let addr = daemon.addr();
    output::line(
        "teewatch demo: a simulated provider with TEST trust roots (nothing here is real hardware)",
    )?;
    output::line(format!(
        "  simulator      {} (profile nanogpt)",
        sim.base_url
    ))?;
    output::line(format!("  configuration  {}", config_path.display()))?;
    output::line(format!("  status page    http://{addr}/"))?;
    output::line(format!("  metrics        http://{addr}/metrics"))?;
    output::line(format!(
        "  history        teewatch history --db {}",
        options.dir.join("demo.db").display()
    ))?;
    output::line(format!(
        "Checks run every 10 s; a line is printed when a target's verdict changes. In {} s {} \
         starts serving another application (a drift); after {ACCEPT_AFTER_FAILING_CHECKS} \
         failing checks the demo accepts it as an operator would: it pins the new compose hash \
         and reloads.",
        options.drift_after.as_secs(),
        drifting_model()
    ))?;
    output::line("Press Ctrl-C to stop.\n")?;

    let demo = Demo {
        daemon: &daemon,
        sim: &sim,
        config_path: &config_path,
        dir: &options.dir,
    };
    let watch = demo.watch(options.drift_after);
    tokio::pin!(stop);
    tokio::select! {
        watched = watch => watched?,
        () = &mut stop => {}
    }
    output::line("\nstopping…")?;
    daemon.shutdown(Duration::from_secs(10)).await;
    drop(sim);
    // The folder is kept (the history command printed above reads it), so say where it is and
    // how to remove it rather than leave an unnamed folder in /tmp.
    output::line(format!(
        "kept {}: the configuration, the history and any accepted bundle (remove it with: rm -r {})",
        options.dir.display(),
        options.dir.display()
    ))?;
    Ok(())
}

/// Makes every target of the simulator's configuration a `nanogpt` target. Their loopback
/// `base_url` stays: the test roots are accepted only for loopback targets.
fn use_nanogpt_profile(path: &Path) -> std::io::Result<()> {
    let text = std::fs::read_to_string(path)?;
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    if let Some(targets) = doc
        .get_mut("target")
        .and_then(toml_edit::Item::as_array_of_tables_mut)
    {
        for target in targets.iter_mut() {
            target.insert("profile", toml_edit::value("nanogpt"));
        }
    }
    std::fs::write(path, doc.to_string())
}

/// What the watch loop works with.
struct Demo<'a> {
    daemon: &'a Daemon,
    sim: &'a Simulator,
    config_path: &'a Path,
    dir: &'a Path,
}

/// What was last printed of one target, so that only changes are printed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Shown {
    state: State,
    failing: Vec<String>,
}

/// Where the drift story stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Before `--drift-after`.
    Healthy,
    /// Injected; counting the drifted target's failing checks.
    Drifted { failing_checks: u32 },
    /// Pinned and reloaded (or the attempt failed and was said): nothing more to do.
    Accepted,
}

impl Demo<'_> {
    /// Prints each change of a target's verdict, injects the drift when its time comes and
    /// accepts it once the drifted target has failed long enough.
    async fn watch(&self, drift_after: Duration) -> Result<(), CmdError> {
        let started = tokio::time::Instant::now();
        let drifted = drifting_model();
        let mut seen: BTreeMap<String, Option<i64>> = BTreeMap::new();
        let mut shown: BTreeMap<String, Shown> = BTreeMap::new();
        // When each target stopped passing, for the line that says it recovered.
        let mut failing_since: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
        // The drift each target's lines have said already: a drift is news once.
        let mut drift_said: BTreeMap<String, (String, String)> = BTreeMap::new();
        let mut stage = Stage::Healthy;
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tick.tick().await;
            if stage == Stage::Healthy && started.elapsed() >= drift_after {
                stage = Stage::Drifted { failing_checks: 0 };
                self.inject_drift(&drifted)?;
            }
            for (target, status) in self.daemon.shared.statuses() {
                let last = seen.entry(target.clone()).or_insert(None);
                if *last == status.check_id {
                    continue;
                }
                *last = status.check_id;
                let now = Shown {
                    state: status.state,
                    failing: failing_checks(&status),
                };
                let drift = status
                    .last_drift
                    .as_ref()
                    .filter(|d| {
                        let said = (d.field.clone(), d.new_value.clone());
                        drift_said.insert(target.clone(), said.clone()) != Some(said)
                    })
                    .map(|d| format!("  drift: {} → {}", d.field, short(&d.new_value)))
                    .unwrap_or_default();
                let previous = shown.insert(target.clone(), now.clone());
                if previous.as_ref() != Some(&now) || !drift.is_empty() {
                    let recovered = match (previous.map(|p| p.state), now.state) {
                        (Some(State::Pass), _) | (None, _) => String::new(),
                        (Some(_), State::Pass) => failing_since
                            .get(&target)
                            .map(|since| {
                                let secs = (status.last_check - *since).num_seconds().max(0);
                                format!("recovered after {secs} s failing")
                            })
                            .unwrap_or_else(|| "recovered".into()),
                        (Some(_), _) => String::new(),
                    };
                    print_line(&target, &status, &now, &recovered, &drift)?;
                }
                if now.state == State::Pass {
                    failing_since.remove(&target);
                } else {
                    failing_since
                        .entry(target.clone())
                        .or_insert(status.last_check);
                }
                if let Stage::Drifted { failing_checks } = &mut stage {
                    if target == drifted && now.state == State::Fail {
                        *failing_checks += 1;
                        if *failing_checks >= ACCEPT_AFTER_FAILING_CHECKS {
                            if let Some(check_id) = status.check_id {
                                self.accept(&target, check_id, *failing_checks).await?;
                            }
                            stage = Stage::Accepted;
                        }
                    }
                }
            }
        }
    }

    /// Turns on the simulator's compose drift for one model.
    fn inject_drift(&self, model: &str) -> Result<(), CmdError> {
        match self
            .sim
            .state
            .set_fault(Some(model), Fault::DriftCompose, true)
        {
            Ok(()) => output::line(format!(
                "\n>>> drift injected: {model} now runs another app compose. Its next check \
                 fails pin:compose_hash and raises a drift event; \
                 teewatch_measurement_drift{{target=\"{model}\",field=\"compose_hash\"}} becomes 1.\n"
            )),
            Err(e) => output::line(format!("\n>>> could not inject the drift: {e}\n")),
        }
    }

    /// The operator approves the new application: the values check `check_id` verified are
    /// pinned in the demo's configuration through `teewatch pin --write`'s code path, and the
    /// daemon reloads it through SIGHUP's. A step that fails is said, and the demo goes on.
    async fn accept(
        &self,
        target: &str,
        check_id: i64,
        failing_checks: u32,
    ) -> Result<(), CmdError> {
        output::line(format!(
            "\n>>> {target} has failed {failing_checks} checks since the drift. The operator \
             approves the new application:"
        ))?;
        let bundle_path = self.dir.join(format!("accepted-check-{check_id}.json"));
        let bundle = match self.stored_bundle(check_id, &bundle_path).await {
            Ok(bundle) => bundle,
            Err(e) => {
                output::line(format!(">>> could not accept the drift: {e}\n"))?;
                return Ok(());
            }
        };
        output::line(format!(
            "    teewatch pin --config {} --target {target} --bundle {} --write",
            self.config_path.display(),
            bundle_path.display()
        ))?;
        // The file edit and one verification: milliseconds, on the demo's own thread (the
        // daemon's checks run on the runtime's workers).
        match super::pin::write_from_bundle(self.config_path, target, &bundle) {
            Ok(changes) => {
                for c in changes.iter().filter(|c| c.changed()) {
                    let old = c
                        .old
                        .as_ref()
                        .map_or_else(|| "(not pinned)".to_string(), |values| short_list(values));
                    output::line(format!(
                        "      {}.{}: {old} → {}",
                        c.table,
                        c.field,
                        short_list(&c.new)
                    ))?;
                }
            }
            Err(e) => {
                output::line(format!(">>> could not pin: {e}\n"))?;
                return Ok(());
            }
        }
        output::line(
            "    systemctl reload teewatch   (SIGHUP; here the demo's daemon reloads in-process)",
        )?;
        match self.daemon.reload().await {
            Ok(()) => {
                let gauge = self
                    .drift_gauge(target, "compose_hash")
                    .map_or_else(|| "absent".to_string(), |v| v.to_string());
                output::line(format!(
                    ">>> reloaded (configuration generation {}): the pins in force accept the new \
                     compose hash, so teewatch_measurement_drift{{target=\"{target}\",field=\"compose_hash\"}} \
                     is {gauge} now and the next check passes pin:compose_hash.\n",
                    self.daemon.shared.generation().number
                ))
            }
            Err(e) => output::line(format!(">>> the reload was refused: {e}\n")),
        }
    }

    /// The bundle the daemon stored for `check_id`, also written to `path` so the printed
    /// `teewatch pin` command can be run again by hand.
    async fn stored_bundle(&self, check_id: i64, path: &Path) -> Result<Bundle, String> {
        let value = self
            .daemon
            .shared
            .store
            .export_bundle(check_id)
            .await
            .map_err(|e| format!("reading check {check_id}'s bundle from the store: {e}"))?;
        let text = serde_json::to_string_pretty(&value)
            .map_err(|e| format!("check {check_id}'s bundle: {e}"))?;
        std::fs::write(path, text + "\n")
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        Bundle::from_value(value).map_err(|e| format!("check {check_id}'s bundle: {e}"))
    }

    /// The value of `teewatch_measurement_drift` for a target and field in the daemon's
    /// exposition, as a scrape would read it.
    fn drift_gauge(&self, target: &str, field: &str) -> Option<f64> {
        let text = self.daemon.shared.metrics.render().ok()?;
        let target_label = format!("target=\"{target}\"");
        let field_label = format!("field=\"{field}\"");
        text.lines()
            .filter(|l| l.starts_with("teewatch_measurement_drift{"))
            .find(|l| l.contains(&target_label) && l.contains(&field_label))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }
}

/// One name per failing check, however many nodes or GPUs it failed on.
fn failing_checks(status: &TargetStatus) -> Vec<String> {
    status
        .failing
        .iter()
        .filter(|c| c.state == State::Fail)
        .map(|c| c.name.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// One verdict line: time, target, state, then what fails, a recovery and a new drift.
fn print_line(
    target: &str,
    status: &TargetStatus,
    shown: &Shown,
    recovered: &str,
    drift: &str,
) -> Result<(), CmdError> {
    let detail = if !shown.failing.is_empty() {
        format!("failing: {}", shown.failing.join(", "))
    } else {
        recovered.to_string()
    };
    let line = format!(
        "{}  {:<18} {:<7} {}{}",
        status.last_check.format("%H:%M:%S"),
        target,
        status.state.as_str(),
        detail,
        drift
    );
    output::line(line.trim_end())
}

/// A list of pinned values with each shortened.
fn short_list(values: &[String]) -> String {
    let values: Vec<String> = values.iter().map(|v| short(v)).collect();
    format!("[{}]", values.join(", "))
}

fn short(value: &str) -> String {
    if value.chars().count() > 16 {
        format!("{}…", value.chars().take(16).collect::<String>())
    } else {
        value.to_string()
    }
}
