//! What an operator runs and reads: the CLI's contract, `teewatch pin` and `teewatch demo`, the
//! shipped alert rules and Alertmanager configuration (also with a real Prometheus), the Grafana
//! dashboard, the systemd unit, and the docs against the code.

mod alerts;
mod cli;
mod dashboard;
// `teewatch demo` exists only with the simulator built in.
#[cfg(feature = "sim")]
mod demo;
mod docs;
mod fleet_dashboard_sql;
mod package;
mod pin;
mod prometheus_e2e;
mod systemd_unit;
