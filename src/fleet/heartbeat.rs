//! The heartbeat task: a beat every third of the lease (so two may fail before the lease runs
//! out), a prune of day-old claims and silent peers every hour, and on a clean stop the end of
//! this instance's lease, so its peers take its targets over at their next beat.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::Fleet;

/// How long a stop waits for the last heartbeat, and then for the leave, to answer.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// How often claims and silent peers are pruned.
const PRUNE_PERIOD: Duration = Duration::from_secs(3600);

/// The configured target names, read at each beat (a reload changes them).
pub type TargetNames = Box<dyn Fn() -> Vec<String> + Send + Sync>;

/// The running heartbeat task.
pub struct Heartbeat {
    fleet: Arc<Fleet>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Heartbeat {
    /// Starts beating for `fleet` (which has joined).
    pub fn spawn(fleet: Arc<Fleet>, targets: TargetNames) -> Heartbeat {
        let (stop, mut stopped) = watch::channel(false);
        let period = (fleet.lease() / 3).max(Duration::from_millis(100));
        let beating = fleet.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut failing = false;
            let mut last_prune: Option<tokio::time::Instant> = None;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stopped.wait_for(|s| *s) => break,
                }
                match beating.beat(&targets()).await {
                    Ok(()) if failing => {
                        failing = false;
                        tracing::info!("fleet heartbeat succeeds again");
                    }
                    Ok(()) => {}
                    Err(e) if !failing => {
                        failing = true;
                        tracing::error!(error = %e, "fleet heartbeat failed; no check runs until one succeeds");
                    }
                    Err(e) => tracing::debug!(error = %e, "fleet heartbeat still failing"),
                }
                if last_prune.is_none_or(|at| at.elapsed() >= PRUNE_PERIOD) {
                    last_prune = Some(tokio::time::Instant::now());
                    match beating.prune().await {
                        Ok((claims, peers)) => tracing::debug!(claims, peers, "fleet pruned"),
                        Err(e) => tracing::warn!(error = %e, "pruning old slot claims failed"),
                    }
                }
            }
        });
        Heartbeat { fleet, stop, task }
    }

    /// Stops beating and ends the lease now (a clean shutdown). A database that does not
    /// answer holds the shutdown up for at most [`STOP_WAIT`] per step: the peers then take
    /// over when the lease runs out instead.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let mut task = self.task;
        if tokio::time::timeout(STOP_WAIT, &mut task).await.is_err() {
            task.abort();
            let _ = task.await;
        }
        match tokio::time::timeout(STOP_WAIT, self.fleet.leave()).await {
            Ok(Ok(())) => {
                tracing::info!("left the fleet; peers take this instance's targets over")
            }
            Ok(Err(e)) => tracing::warn!(
                error = %e,
                "leaving the fleet failed; peers take over when the lease runs out"
            ),
            Err(_) => tracing::warn!(
                "leaving the fleet timed out; peers take over when the lease runs out"
            ),
        }
    }

    /// Stops beating without leaving, as a process killed or frozen would (for tests: peers
    /// take over only once the lease runs out).
    pub async fn abandon(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}
