//! The daemon: in-process against the simulator (and its canary cadence) and as a `teewatch run` process, its metrics
//! (plain and over TLS), status page, store, backups, accepted drift, the scheduler against the
//! wall clock, its log, the targets it cannot check, the fault matrix, SIGKILL at random
//! moments, the tamper-evident history and secrets.

mod backup;
mod canary_cadence;
mod cannot_start;
mod claim_hand_over;
mod crash;
mod drift_accept;
mod faults;
mod history_chain;
mod in_process;
mod metrics;
mod metrics_tls;
mod process;
mod quiet_log;
mod schedule_wallclock;
mod secrets;
mod status_page;
mod store;
mod store_backend;
mod store_postgres;
