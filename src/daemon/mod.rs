//! `teewatch run`: the long-running daemon, wired like a script — configuration → store →
//! metrics restored from the store → scheduler → HTTP → READY → wait for signals → drain.
//!
//! [`Daemon::start`] returns a handle so tests run the whole daemon in-process against the
//! simulator; [`run`] adds the signal handling the binary needs (SIGHUP reloads, SIGTERM and
//! SIGINT drain in-flight checks within the configured deadline and close the store).

pub mod http;
pub mod logging;
pub mod notify;
pub mod runner;
pub mod status_page;
pub mod tls;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::clock::Clock;
use crate::config::{Config, ConfigError, StoreLocation};
use crate::fetch::check::Fetcher;
use crate::fetch::http::{Http, HttpOptions};
use crate::metrics::Metrics;
use crate::schedule::{PlannerOptions, Scheduler, SchedulerOptions, ShutdownReport};
use crate::store::{Retention, Store, StoreError};
use runner::{CheckRunner, Shared};

/// How often the fleet view reads the checks peers stored (`fleet_view_loop`).
const FLEET_VIEW_PERIOD: Duration = Duration::from_secs(3);

/// How often retention runs (also once at start).
const RETENTION_PERIOD: Duration = Duration::from_secs(3600);

/// How long the shutdown waits, after the drain, for each remaining step: the records of checks
/// cancelled at their deadline, the HTTP connections, the last handles of the shared state.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

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
    #[error("joining the fleet: {0}")]
    Fleet(#[from] crate::fleet::FleetError),
    /// SIGHUP, SIGTERM or SIGINT could not be handled (the daemon stops at once).
    #[error("installing the {signal} handler: {source}")]
    Signal {
        signal: &'static str,
        source: std::io::Error,
    },
}

/// Why a reload was refused; the previous configuration, policies and schedule stay in force.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file does not load (every problem is listed).
    #[error("invalid configuration: {}", summary(.0))]
    Config(ConfigError),
    /// The configuration loads, but the scheduler cannot plan its targets (a cron expression
    /// croner does not accept or that never fires).
    #[error("the scheduler refused the new targets: {0}")]
    Schedule(#[from] crate::schedule::ScheduleError),
}

/// A configuration error in one line: `path: message; …`.
fn summary(error: &ConfigError) -> String {
    error
        .issues
        .iter()
        .map(|i| format!("{}: {}", i.path, i.message))
        .collect::<Vec<_>>()
        .join("; ")
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
    /// The fleet's heartbeat, when this instance belongs to one; stopped first on shutdown.
    heartbeat: Option<crate::fleet::heartbeat::Heartbeat>,
}

fn load_config(options: &RunOptions) -> Result<Config, ConfigError> {
    let mut config = Config::load(&options.config_path)?;
    if let Some(listen) = options.listen {
        config.daemon.listen = listen;
    }
    if let Some(db) = &options.db {
        config.daemon.db = db_override(db, &config.daemon.db).map_err(|message| ConfigError {
            file: "--db".into(),
            issues: vec![crate::config::ConfigIssue {
                path: "db".into(),
                message,
            }],
        })?;
    }
    Ok(config)
}

/// `--db` over `[daemon] db`: a path names a SQLite file as given; a postgres URL keeps the
/// configuration's `db_password_*` source, so that the password stays out of the command line.
pub fn db_override(db: &Path, configured: &StoreLocation) -> Result<StoreLocation, String> {
    let Some(text) = db.to_str() else {
        return Ok(StoreLocation::Sqlite(db.to_path_buf()));
    };
    match StoreLocation::parse(text, Path::new(""))? {
        StoreLocation::Postgres { url, .. } => {
            let password = match configured {
                StoreLocation::Postgres { password, .. } => password.clone(),
                StoreLocation::Sqlite(_) => None,
            };
            Ok(StoreLocation::Postgres { url, password })
        }
        StoreLocation::Sqlite(path) => Ok(StoreLocation::Sqlite(path)),
    }
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
        Daemon::start_with_clock(options, Clock::system()).await
    }

    /// [`Daemon::start`] reading the wall clock from `clock` for checks, records, scheduling and
    /// retention, so a test can jump it while the daemon runs.
    pub async fn start_with_clock(options: RunOptions, clock: Clock) -> Result<Daemon, RunError> {
        Daemon::start_inner(options, clock, None).await
    }

    /// [`Daemon::start_with_clock`] as a member of the fleet whose tables are in `pool`, with
    /// `settings` instead of the configuration's fleet keys (which a SQLite `db` refuses).
    /// For tests while the checks themselves go to a SQLite store.
    #[doc(hidden)]
    pub async fn start_in_fleet(
        options: RunOptions,
        clock: Clock,
        pool: sqlx::PgPool,
        settings: crate::fleet::FleetSettings,
    ) -> Result<Daemon, RunError> {
        Daemon::start_inner(options, clock, Some((pool, settings))).await
    }

    async fn start_inner(
        options: RunOptions,
        clock: Clock,
        fleet: Option<(sqlx::PgPool, crate::fleet::FleetSettings)>,
    ) -> Result<Daemon, RunError> {
        let config = load_config(&options).map_err(RunError::Config)?;
        if let Some(parent) = config.daemon.db.sqlite_path().and_then(Path::parent) {
            // The store creates the file; its folder must exist (systemd's StateDirectory does).
            let _ = std::fs::create_dir_all(parent);
        }
        let store = Store::open_location(&config.daemon.db).await?;
        let metrics = Metrics::new().map_err(|e| RunError::Metrics(e.to_string()))?;
        let histories = store.histories().await?;
        // A PostgreSQL store is a fleet's (of one, without the fleet keys): its instances
        // claim each slot, so several can share the database; SQLite has one writer and none.
        let fleet = fleet.or_else(|| {
            store
                .postgres_pool()
                .map(|pool| (pool.clone(), config.daemon.fleet.clone()))
        });
        let fleet = match fleet {
            Some((pool, settings)) => {
                let names: Vec<String> = runner::planned_targets(&config)
                    .into_iter()
                    .map(|t| t.name)
                    .collect();
                let fleet =
                    crate::fleet::Fleet::join(pool, settings, metrics.clone(), &names).await?;
                tracing::info!(
                    instance = fleet.instance(),
                    mode = fleet.mode().as_str(),
                    vantage = fleet.vantage(),
                    "joined the fleet"
                );
                Some(Arc::new(fleet))
            }
            None => None,
        };
        // A replicate instance's gauges show its own vantage point's checks (peers' feed only
        // the comparison of vantage points), so it restores its own latest, not a peer's.
        let latest = match &fleet {
            Some(f) if f.mode() == crate::fleet::FleetMode::Replicate => store
                .latest_checks_per_vantage_after(i64::MIN)
                .await?
                .into_iter()
                .filter(|l| l.vantage == f.vantage())
                .collect(),
            _ => store.latest_checks().await?,
        };
        // The fleet view reads checks from here on.
        let newest_check = latest.iter().map(|l| l.check_id).max().unwrap_or(0);
        let state_since = store.state_since().await?;
        // The slot of each target's last recorded check, for catching up a missed cron slot.
        let last_slots: std::collections::BTreeMap<String, chrono::DateTime<Utc>> = latest
            .iter()
            .map(|l| (l.target.clone(), l.scheduled_at))
            .collect();
        let http = Http::new(HttpOptions::for_config(&config))
            .map_err(|e| RunError::Http(e.to_string()))?;
        let cache_dir = collateral_dir(&config, options.config_path.parent());
        let fetcher = Fetcher::new(http, cache_dir.as_deref()).with_clock(clock.clone());
        let listen = config.daemon.listen;
        let concurrency = config.daemon.concurrency;
        let retention = retention_of(&config);
        let mut shared =
            Shared::new(config, fetcher, store, metrics, histories).with_clock(clock.clone());
        if let Some(fleet) = &fleet {
            shared = shared.with_fleet(fleet.clone());
        }
        let shared = Arc::new(shared);
        // Every gauge comes back from the store before the listener answers a scrape.
        shared.restore_collateral(&latest).await;
        shared.restore(latest, &state_since, clock.now());
        // Drift the pins in force accept (the configuration changed while the daemon was down)
        // is recorded as accepted.
        shared.settle_drift().await;
        let targets = shared.targets();
        shared.metrics.set_targets(targets.len());
        match shared.store.apply_retention(clock.now(), &retention).await {
            Ok(report) => tracing::info!(?report, "retention applied"),
            Err(e) => tracing::error!(error = %e, "retention failed"),
        }

        let listener = http::bind(listen, &shared, &options.config_path).await?;
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
                if let Err(e) = listener.serve(router, shutdown).await {
                    tracing::error!(error = %e, "http server failed");
                }
            }
            .instrument(tracing::info_span!("http", %addr)),
        );

        let runner = Arc::new(CheckRunner {
            shared: shared.clone(),
        });
        let scheduler = Scheduler::resume_with_clock(
            targets,
            &last_slots,
            SchedulerOptions {
                concurrency,
                tick: Duration::from_secs(1),
                planner: PlannerOptions {
                    // A fleet's instances plan every target at the same instants (take-over
                    // one interval after a dead peer's last check; `crate::fleet`).
                    epoch_aligned: fleet.is_some(),
                    ..PlannerOptions::default()
                },
            },
            runner,
            clock,
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
        let heartbeat = fleet.map(|fleet| {
            tasks.push(tokio::spawn(
                fleet_view_loop(shared.clone(), newest_check)
                    .instrument(tracing::info_span!("fleet_view")),
            ));
            let beating = shared.clone();
            crate::fleet::heartbeat::Heartbeat::spawn(
                fleet,
                Box::new(move || beating.targets().into_iter().map(|t| t.name).collect()),
            )
        });
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
            heartbeat,
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
        let now = self.shared.clock.now();
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

    /// Re-reads the configuration file and puts it in force whole, or not at all: targets,
    /// policies and schedule change together. A file that does not load, or whose targets the
    /// scheduler cannot plan, keeps everything as it was; the log, the status page and the
    /// systemd status say why. Settings that need a restart (listen, db) are reported and
    /// ignored.
    pub async fn reload(&self) -> Result<(), ReloadError> {
        notify::reloading();
        let result = self.reload_inner().await;
        if let Err(e) = &result {
            if let ReloadError::Config(config) = e {
                for issue in &config.issues {
                    tracing::error!(path = %issue.path, "invalid configuration: {}", issue.message);
                }
            }
            tracing::error!(
                file = %self.config_path.display(),
                generation = self.shared.generation().number,
                reason = %e,
                "reload refused; the previous configuration stays in force"
            );
            self.shared.reload_refused(e.to_string());
        }
        notify::reloaded(&status_line(&self.shared));
        result
    }

    async fn reload_inner(&self) -> Result<(), ReloadError> {
        let mut config = load_config(&self.options).map_err(ReloadError::Config)?;
        let old = self.shared.generation();
        if config.daemon.listen != old.config.daemon.listen {
            tracing::warn!("daemon.listen changed; it takes effect after a restart");
            config.daemon.listen = old.config.daemon.listen;
        }
        if config.daemon.db != old.config.daemon.db {
            tracing::warn!("daemon.db changed; it takes effect after a restart");
            config.daemon.db = old.config.daemon.db.clone();
        }
        if config.daemon.fleet != old.config.daemon.fleet {
            tracing::warn!(
                "daemon.instance, mode, vantage or lease changed; they take effect after a restart"
            );
            config.daemon.fleet = old.config.daemon.fleet.clone();
        }
        // The HTTP client, bound to the source address, is built once at start.
        if config.daemon.source_address != old.config.daemon.source_address {
            tracing::warn!("daemon.source_address changed; it takes effect after a restart");
            config.daemon.source_address = old.config.daemon.source_address;
        }
        http::keep_listener_settings(&old.config.daemon, &mut config.daemon);
        let targets = runner::planned_targets(&config);
        let count = targets.len();
        // The configuration goes in force only once the scheduler took its targets, and under
        // the planner's lock, so no check is dispatched from the new schedule under the old
        // configuration. Before the scheduler exists (never, once `start` returned) it is
        // swapped alone.
        match self.scheduler.get() {
            Some(scheduler) => {
                scheduler
                    .reload_with(targets, || self.shared.replace_config(config))
                    .await?;
            }
            None => self.shared.replace_config(config),
        }
        // Drift the new pins accept stops showing now, not at the end of its drift window, and
        // acknowledgements made since the last check are brought in.
        self.shared.settle_drift().await;
        tracing::info!(
            targets = count,
            generation = self.shared.generation().number,
            "configuration reloaded"
        );
        Ok(())
    }

    /// Stops scheduling, lets in-flight checks finish within `drain`, stops HTTP and closes
    /// the store, in the order that leaves nothing using the store when it closes: the
    /// background tasks (retention, and the watchdog, which would otherwise report the stopping
    /// scheduler as unhealthy), the scheduler and its checks, the records of checks cancelled
    /// at their deadline, the HTTP server, and then the last holders of the shared state.
    pub async fn shutdown(self, drain: Duration) -> ShutdownReport {
        notify::stopping();
        // Leaving the fleet first hands this instance's targets to its peers at their next
        // heartbeat; the checks running here finish and are stored, and no slot is run twice
        // since each was claimed.
        if let Some(heartbeat) = self.heartbeat {
            heartbeat.stop().await;
        }
        for task in &self.tasks {
            task.abort();
        }
        for task in self.tasks {
            // An aborted task ends at its next await; waiting drops what it held (a retention
            // pass in progress rolls back).
            let _ = task.await;
        }
        // The scheduler handle is cloned out of the cell: the HTTP server still holds the cell
        // until it stops, so the cell itself cannot be taken apart here.
        let drained = match self.scheduler.get().cloned() {
            Some(scheduler) => scheduler.shutdown(drain).await,
            None => ShutdownReport::default(),
        };
        if !self.shared.records_written(SHUTDOWN_GRACE).await {
            tracing::warn!("a check cancelled at its deadline was not recorded before the stop");
        }
        let _ = self.stop_http.send(true);
        let mut http_task = self.http_task;
        if tokio::time::timeout(SHUTDOWN_GRACE, &mut http_task)
            .await
            .is_err()
        {
            tracing::warn!("HTTP connections still open after the grace period; closing them");
            http_task.abort();
            let _ = http_task.await;
        }
        // The HTTP state held the other handle to the scheduler cell; the scheduler holds the
        // check runner, which holds the shared state.
        drop(self.scheduler);
        let mut shared = self.shared;
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        let closed = loop {
            match Arc::try_unwrap(shared) {
                Ok(alone) => {
                    alone.store.close().await;
                    break true;
                }
                // The scheduler's last tasks drop their handles as they unwind.
                Err(still) if tokio::time::Instant::now() < deadline => {
                    shared = still;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(still) => {
                    tracing::warn!(
                        references = Arc::strong_count(&still),
                        "shared state still referenced; closing the store pool anyway"
                    );
                    still.store.clone().close().await;
                    break false;
                }
            }
        };
        tracing::info!(?drained, store_closed_alone = closed, "teewatch stopped");
        drained
    }
}

/// The one-line summary systemd shows in `systemctl status`, with a refused reload and a
/// failing store when there are.
fn status_line(shared: &Shared) -> String {
    let statuses = shared.statuses();
    let count = |state| statuses.values().filter(|s| s.state == state).count();
    let mut line = format!(
        "{} targets: {} pass, {} unknown, {} fail",
        shared.targets().len(),
        count(crate::verify::State::Pass),
        count(crate::verify::State::Unknown),
        count(crate::verify::State::Fail)
    );
    let notices = shared.notices().line();
    if !notices.is_empty() {
        line.push_str("; ");
        line.push_str(&notices);
    }
    line
}

/// The fleet view: every few seconds, the checks peers stored since the last look are published
/// here too (`Shared::refresh_fleet_view`). The mark passed is that of two passes back, so a
/// check committed after a later-numbered one is still seen.
async fn fleet_view_loop(shared: Arc<Shared>, newest: i64) {
    let mut interval = tokio::time::interval(FLEET_VIEW_PERIOD);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let replicates = shared.replicates();
    // A replicate fleet's first pass reads every vantage point's latest check, so that the
    // comparison holds at once after a start.
    let start = if replicates { i64::MIN } else { newest };
    let (mut lagging, mut previous) = (start, start);
    // The targets this instance owned at the last pass: one it owns now and did not then was a
    // peer's, and is taken over at once (`Shared::take_over`).
    let mut owned = shared.owned_targets();
    let mut book = runner::VantageBook::new();
    loop {
        interval.tick().await;
        // A replicate fleet's gauges show this instance's own vantage point; its peers' checks
        // are compared with them instead of published.
        let pass = if replicates {
            shared.refresh_vantages(lagging, &mut book).await
        } else {
            shared.refresh_fleet_view(lagging).await
        };
        match pass {
            Ok(seen) => {
                lagging = previous;
                previous = seen.max(previous);
            }
            Err(e) => tracing::warn!(error = %e, "fleet view: reading peers' checks failed"),
        }
        let now_owned = shared.owned_targets();
        if let (Some(before), Some(now)) = (&owned, &now_owned) {
            let gained: Vec<String> = now.difference(before).cloned().collect();
            if !gained.is_empty() {
                shared.take_over(gained).await;
            }
        }
        owned = now_owned;
    }
}

async fn retention_loop(shared: Arc<Shared>) {
    let mut interval = tokio::time::interval(RETENTION_PERIOD);
    interval.tick().await;
    loop {
        interval.tick().await;
        let retention = retention_of(&shared.generation().config);
        match shared
            .store
            .apply_retention(shared.clock.now(), &retention)
            .await
        {
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
    let handler = |kind: SignalKind, name: &'static str| {
        signal(kind).map_err(|source| RunError::Signal {
            signal: name,
            source,
        })
    };
    let mut hup = handler(SignalKind::hangup(), "SIGHUP")?;
    let mut term = handler(SignalKind::terminate(), "SIGTERM")?;
    let mut int = handler(SignalKind::interrupt(), "SIGINT")?;
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

/// Where the collateral cache is kept: beside a SQLite store. A PostgreSQL store has no
/// folder: then in `$STATE_DIRECTORY` (systemd's StateDirectory=), else in `config_dir` (the
/// configuration file's folder) when known, else nowhere (collateral is fetched, not cached).
pub fn collateral_dir(config: &Config, config_dir: Option<&Path>) -> Option<PathBuf> {
    match config.daemon.db.sqlite_path() {
        Some(path) => path.parent().map(|d| d.join("collateral")),
        None => std::env::var_os("STATE_DIRECTORY")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .or_else(|| config_dir.map(Path::to_path_buf))
            .map(|d| d.join("collateral")),
    }
}

/// The database a `history` command reads: `--db` as given, or the configuration's `[daemon] db`
/// (with its password source; `--db` with a postgres URL keeps the configuration's).
pub fn history_db(db: Option<&Path>, config: Option<&Path>) -> Result<StoreLocation, ConfigError> {
    let configured = match config {
        Some(config) => Config::load(config)?.daemon.db,
        None => StoreLocation::Sqlite(PathBuf::from(crate::config::DEFAULT_DB)),
    };
    match db {
        None => Ok(configured),
        Some(db) => db_override(db, &configured).map_err(|message| ConfigError {
            file: "--db".into(),
            issues: vec![crate::config::ConfigIssue {
                path: "db".into(),
                message,
            }],
        }),
    }
}
