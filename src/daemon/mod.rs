//! `teewatch run`: the long-running daemon, wired like a script — configuration → store →
//! metrics restored from the store → scheduler → HTTP → READY → wait for signals → drain.
//!
//! [`Daemon::start`] returns a handle so tests run the whole daemon in-process against the
//! simulator; [`run`] adds the signal handling the binary needs (SIGHUP reloads, SIGTERM and
//! SIGINT drain in-flight checks within the configured deadline and close the store).

pub mod demo;
pub mod http;
pub mod logging;
pub mod notify;
pub mod runner;
pub mod status_page;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::config::{Config, ConfigError};
use crate::fetch::check::Fetcher;
use crate::fetch::http::{Http, HttpOptions};
use crate::metrics::Metrics;
use crate::schedule::{PlannerOptions, Scheduler, SchedulerOptions, ShutdownReport};
use crate::store::{Retention, Store, StoreError};
use runner::{CheckRunner, Shared};

/// How often retention runs (also once at start).
const RETENTION_PERIOD: Duration = Duration::from_secs(3600);

/// How the daemon is started.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub config_path: PathBuf,
    /// Overrides `[daemon] listen`.
    pub listen: Option<SocketAddr>,
    /// Overrides `[daemon] db`.
    pub db: Option<PathBuf>,
}

/// Why the daemon could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Config(ConfigError),
    #[error("opening the store: {0}")]
    Store(#[from] StoreError),
    #[error("metrics: {0}")]
    Metrics(String),
    #[error("http client: {0}")]
    Http(String),
    #[error("listening on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("starting the scheduler: {0}")]
    Scheduler(String),
}

impl RunError {
    /// The process exit code: 78 for an invalid configuration, 70 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Config(_) => crate::exit::CONFIG,
            _ => crate::exit::SOFTWARE,
        }
    }
}

/// A running daemon.
pub struct Daemon {
    pub shared: Arc<Shared>,
    scheduler: Arc<OnceLock<Scheduler>>,
    addr: SocketAddr,
    config_path: PathBuf,
    options: RunOptions,
    stop_http: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    http_task: JoinHandle<()>,
}

fn load_config(options: &RunOptions) -> Result<Config, ConfigError> {
    let mut config = Config::load(&options.config_path)?;
    if let Some(listen) = options.listen {
        config.daemon.listen = listen;
    }
    if let Some(db) = &options.db {
        config.daemon.db = db.clone();
    }
    Ok(config)
}

fn retention_of(config: &Config) -> Retention {
    Retention {
        verdicts_for: Duration::from_secs(u64::from(config.daemon.retention_days) * 86_400),
        keep_last_bundles: config.daemon.keep_bundles,
    }
}

impl Daemon {
    /// Starts everything and returns once the daemon is serving.
    pub async fn start(options: RunOptions) -> Result<Daemon, RunError> {
        let config = load_config(&options).map_err(RunError::Config)?;
        if let Some(parent) = config.daemon.db.parent() {
            // The store creates the file; its folder must exist (systemd's StateDirectory does).
            let _ = std::fs::create_dir_all(parent);
        }
        let store = Store::open(&config.daemon.db).await?;
        let metrics = Metrics::new().map_err(|e| RunError::Metrics(e.to_string()))?;
        let histories = store.histories().await?;
        let latest = store.latest_checks().await?;
        let http = Http::new(HttpOptions::for_config(&config))
            .map_err(|e| RunError::Http(e.to_string()))?;
        let cache_dir = config.daemon.db.parent().map(|d| d.join("collateral"));
        let fetcher = Fetcher::new(http, cache_dir.as_deref());
        let listen = config.daemon.listen;
        let concurrency = config.daemon.concurrency;
        let retention = retention_of(&config);
        let shared = Arc::new(Shared::new(config, fetcher, store, metrics, histories));
        shared.restore(latest, Utc::now());
        let targets = shared.targets();
        shared.metrics.set_targets(targets.len());
        match shared.store.apply_retention(Utc::now(), &retention).await {
            Ok(report) => tracing::info!(?report, "retention applied"),
            Err(e) => tracing::error!(error = %e, "retention failed"),
        }

        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|source| RunError::Bind {
                addr: listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| RunError::Bind {
            addr: listen,
            source,
        })?;
        let scheduler_cell: Arc<OnceLock<Scheduler>> = Arc::new(OnceLock::new());
        let (stop_http, mut stop_rx) = watch::channel(false);
        let router = http::router(http::HttpState {
            shared: shared.clone(),
            scheduler: scheduler_cell.clone(),
        });
        let http_task = tokio::spawn(
            async move {
                let shutdown = async move {
                    let _ = stop_rx.wait_for(|stop| *stop).await;
                };
                if let Err(e) = axum::serve(listener, router)
                    .with_graceful_shutdown(shutdown)
                    .await
                {
                    tracing::error!(error = %e, "http server failed");
                }
            }
            .instrument(tracing::info_span!("http", %addr)),
        );

        let runner = Arc::new(CheckRunner {
            shared: shared.clone(),
        });
        let scheduler = Scheduler::start(
            targets,
            SchedulerOptions {
                concurrency,
                tick: Duration::from_secs(1),
                planner: PlannerOptions::default(),
            },
            runner,
        )
        .await
        .map_err(|e| RunError::Scheduler(e.to_string()))?;
        let _ = scheduler_cell.set(scheduler);

        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(
            retention_loop(shared.clone()).instrument(tracing::info_span!("retention")),
        ));
        tasks.push(tokio::spawn(
            watchdog_loop(shared.clone(), scheduler_cell.clone())
                .instrument(tracing::info_span!("watchdog")),
        ));
        tracing::info!(%addr, targets = shared.targets().len(), "teewatch is running");
        notify::ready(&status_line(&shared));
        Ok(Daemon {
            shared,
            scheduler: scheduler_cell,
            addr,
            config_path: options.config_path.clone(),
            options,
            stop_http,
            tasks,
            http_task,
        })
    }

    /// Where the HTTP endpoints listen (the real port when `:0` was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Runs one check of `target` now, outside the schedule, and returns once it is recorded
    /// (for tests and the demo; the scheduler's own checks are unaffected). False when no
    /// monitored target has that name.
    pub async fn check_now(&self, target: &str) -> bool {
        let Some(planned) = self.shared.targets().into_iter().find(|t| t.name == target) else {
            return false;
        };
        let now = Utc::now();
        let due = crate::schedule::Due {
            target: planned.name,
            scheduled_at: now,
            started_at: now,
            deadline: planned.deadline,
        };
        let span = tracing::info_span!("check", target = %target);
        self.shared.clone().check(due).instrument(span).await;
        true
    }

    /// The scheduler's next slot for a target.
    pub fn next_due(&self, target: &str) -> Option<chrono::DateTime<Utc>> {
        self.scheduler.get().and_then(|s| s.next_due(target))
    }

    /// Re-reads the configuration file. An invalid one keeps the old configuration in force and
    /// logs every problem; settings that need a restart (listen, db) are reported and ignored.
    pub async fn reload(&self) -> Result<(), ConfigError> {
        notify::reloading();
        let result = self.reload_inner().await;
        notify::reloaded(&status_line(&self.shared));
        result
    }

    async fn reload_inner(&self) -> Result<(), ConfigError> {
        let mut config = match load_config(&self.options) {
            Ok(c) => c,
            Err(e) => {
                for issue in &e.issues {
                    tracing::error!(path = %issue.path, "invalid configuration: {}", issue.message);
                }
                tracing::error!(
                    file = %self.config_path.display(),
                    "reload refused; the previous configuration stays in force"
                );
                return Err(e);
            }
        };
        let old = self.shared.generation();
        if config.daemon.listen != old.config.daemon.listen {
            tracing::warn!("daemon.listen changed; it takes effect after a restart");
            config.daemon.listen = old.config.daemon.listen;
        }
        if config.daemon.db != old.config.daemon.db {
            tracing::warn!("daemon.db changed; it takes effect after a restart");
            config.daemon.db = old.config.daemon.db.clone();
        }
        self.shared.replace_config(config);
        let targets = self.shared.targets();
        let count = targets.len();
        if let Some(scheduler) = self.scheduler.get() {
            if let Err(e) = scheduler.reload(targets).await {
                tracing::error!(error = %e, "the scheduler refused the new targets; the old schedule stays");
            }
        }
        tracing::info!(targets = count, "configuration reloaded");
        Ok(())
    }

    /// Stops scheduling, lets in-flight checks finish within `drain`, stops HTTP and closes
    /// the store.
    pub async fn shutdown(self, drain: Duration) -> ShutdownReport {
        notify::stopping();
        // The scheduler handle is cloned out of the cell: the HTTP server still holds the cell
        // until it stops, so the cell itself cannot be taken apart here.
        let drained = match self.scheduler.get().cloned() {
            Some(scheduler) => scheduler.shutdown(drain).await,
            None => ShutdownReport::default(),
        };
        for task in &self.tasks {
            task.abort();
        }
        let _ = self.stop_http.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.http_task).await;
        // The HTTP handlers held the last other references to the shared state.
        match Arc::try_unwrap(self.shared) {
            Ok(shared) => shared.store.close().await,
            Err(shared) => {
                tracing::warn!("shared state still referenced; closing the store pool anyway");
                shared.store.clone().close().await;
            }
        }
        tracing::info!(?drained, "teewatch stopped");
        drained
    }
}

/// The one-line summary systemd shows in `systemctl status`.
fn status_line(shared: &Shared) -> String {
    let statuses = shared.statuses();
    let count = |state| statuses.values().filter(|s| s.state == state).count();
    format!(
        "{} targets: {} pass, {} unknown, {} fail",
        shared.targets().len(),
        count(crate::verify::State::Pass),
        count(crate::verify::State::Unknown),
        count(crate::verify::State::Fail)
    )
}

async fn retention_loop(shared: Arc<Shared>) {
    let mut interval = tokio::time::interval(RETENTION_PERIOD);
    interval.tick().await;
    loop {
        interval.tick().await;
        let retention = retention_of(&shared.generation().config);
        match shared.store.apply_retention(Utc::now(), &retention).await {
            Ok(report) => tracing::info!(?report, "retention applied"),
            Err(e) => tracing::error!(error = %e, "retention failed"),
        }
    }
}

/// Pets the systemd watchdog only while the scheduler ticks and the store answers, and keeps
/// the STATUS line current.
async fn watchdog_loop(shared: Arc<Shared>, scheduler: Arc<OnceLock<Scheduler>>) {
    let period = notify::watchdog_period().unwrap_or(Duration::from_secs(10));
    let mut interval = tokio::time::interval(period);
    loop {
        interval.tick().await;
        let healthy = scheduler.get().is_some_and(Scheduler::is_healthy);
        if healthy && shared.store.ping().await {
            notify::watchdog();
        } else {
            tracing::warn!("unhealthy: watchdog not petted");
        }
        notify::status(&status_line(&shared));
    }
}

/// Runs the daemon until SIGTERM or SIGINT; SIGHUP reloads the configuration.
pub async fn run(options: RunOptions) -> Result<(), RunError> {
    use tokio::signal::unix::{SignalKind, signal};
    let daemon = Daemon::start(options).await?;
    let mut hup = signal(SignalKind::hangup()).map_err(|e| RunError::Scheduler(e.to_string()))?;
    let mut term =
        signal(SignalKind::terminate()).map_err(|e| RunError::Scheduler(e.to_string()))?;
    let mut int =
        signal(SignalKind::interrupt()).map_err(|e| RunError::Scheduler(e.to_string()))?;
    loop {
        tokio::select! {
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading the configuration");
                let _ = daemon.reload().await;
            }
            _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); break; }
            _ = int.recv() => { tracing::info!("SIGINT: shutting down"); break; }
        }
    }
    let drain = daemon.shared.generation().config.daemon.drain_timeout;
    daemon.shutdown(drain).await;
    Ok(())
}

/// The database a `history` command reads: `--db` as given, or the configuration's `[daemon] db`.
pub fn history_db(db: Option<&Path>, config: Option<&Path>) -> Result<PathBuf, ConfigError> {
    match (db, config) {
        (Some(db), _) => Ok(db.to_path_buf()),
        (None, Some(config)) => Config::load(config).map(|c| c.daemon.db),
        (None, None) => Ok(PathBuf::from(crate::config::DEFAULT_DB)),
    }
}
