//! The fleet keys of `[daemon]`: `instance` (this instance's name), `mode` (`"shard"` or
//! `"replicate"`), `vantage` (the network position a replicate instance checks from) and `lease`
//! (how long a heartbeat keeps an instance live). `docs/fleet.md` explains the fleet they
//! configure.
//!
//! `mode`, `vantage` and `lease` only mean something when instances share a PostgreSQL store, so
//! they are refused beside a SQLite `db` (one SQLite file has one writer): a configuration that
//! asks for a fleet it cannot have says so at load instead of running alone silently. `instance`
//! is accepted with either store, since it also names the checks an instance records.

use std::time::Duration;

use toml::{Table, Value};

use super::describe;
use super::schedule::{Schedule, parse_duration};
use super::target::TargetConfig;
use super::validator::Validator;

/// `[daemon] lease` when not given.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// The bounds of `lease`: below 2 s a heartbeat (every third of the lease) would compete with
/// the checks for the database; above an hour a dead instance's targets would go unchecked for
/// that long.
pub const MIN_LEASE: Duration = Duration::from_secs(2);
pub const MAX_LEASE: Duration = Duration::from_secs(3600);
/// The longest instance or vantage name (they are label values and primary keys).
pub const MAX_NAME: usize = 64;
/// The instance name when neither `instance` nor the host name gives one.
const FALLBACK_INSTANCE: &str = "teewatch";

/// How the instances sharing a database divide the targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FleetMode {
    /// Each target is checked by one live instance per slot.
    Shard,
    /// Every instance checks every target, once per slot and vantage point.
    Replicate,
}

impl FleetMode {
    /// The name written in the configuration and in `fleet_instances.mode`.
    pub fn as_str(self) -> &'static str {
        match self {
            FleetMode::Shard => "shard",
            FleetMode::Replicate => "replicate",
        }
    }
}

/// The fleet keys of `[daemon]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetSettings {
    /// This instance's name, `[A-Za-z0-9._-]{1,64}`; the host name by default.
    pub instance: String,
    pub mode: FleetMode,
    /// This instance's vantage point; "" in shard mode unless given.
    pub vantage: String,
    /// How long a heartbeat keeps this instance live.
    pub lease: Duration,
}

impl Default for FleetSettings {
    fn default() -> Self {
        FleetSettings {
            instance: host_instance_name(),
            mode: FleetMode::Shard,
            vantage: String::new(),
            lease: DEFAULT_LEASE,
        }
    }
}

/// Whether `db` (as written) names a PostgreSQL server rather than a SQLite file.
pub fn is_postgres_url(db: &str) -> bool {
    let db = db.trim();
    db.starts_with("postgres://") || db.starts_with("postgresql://")
}

/// Why `name` is not a valid instance or vantage name, if it is not.
pub fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Some(format!(
            "expected 1 to {MAX_NAME} characters of A-Z, a-z, 0-9, '.', '_' or '-', found {} characters",
            name.len()
        ));
    }
    name.chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        .map(|c| {
            format!(
                "expected only A-Z, a-z, 0-9, '.', '_' or '-', found {c:?} in \"{}\"",
                name.escape_default()
            )
        })
}

/// The host name as an instance name: its characters outside the allowed set dropped, cut to
/// [`MAX_NAME`]; [`FALLBACK_INSTANCE`] when nothing is left.
pub fn host_instance_name() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    sanitize_host(&raw)
}

fn sanitize_host(raw: &str) -> String {
    let name: String = raw
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .take(MAX_NAME)
        .collect();
    if name.is_empty() {
        FALLBACK_INSTANCE.to_string()
    } else {
        name
    }
}

/// Reads the fleet keys of the `[daemon]` table `t`.
pub(super) fn read(v: &mut Validator, t: &Table) -> FleetSettings {
    let mut settings = FleetSettings::default();
    let postgres = matches!(t.get("db"), Some(Value::String(s)) if is_postgres_url(s));
    if let Some(name) = name_key(v, t, "instance") {
        settings.instance = name;
    }
    match t.get("mode") {
        None => {}
        Some(Value::String(s)) if s == "shard" => settings.mode = FleetMode::Shard,
        Some(Value::String(s)) if s == "replicate" => settings.mode = FleetMode::Replicate,
        Some(other) => v.issue(
            "daemon.mode",
            format!(
                "expected \"shard\" or \"replicate\", found {}",
                describe(other)
            ),
        ),
    }
    if let Some(name) = name_key(v, t, "vantage") {
        settings.vantage = name;
    }
    if settings.mode == FleetMode::Replicate
        && settings.vantage.is_empty()
        && !t.contains_key("vantage")
    {
        v.issue(
            "daemon.vantage",
            "expected a vantage point name such as \"eu-1\" with mode = \"replicate\" (results are stored per vantage point), found none".into(),
        );
    }
    match t.get("lease") {
        None => {}
        Some(Value::String(s)) => match parse_duration(s) {
            Ok(d) if (MIN_LEASE..=MAX_LEASE).contains(&d) => settings.lease = d,
            Ok(_) => v.issue(
                "daemon.lease",
                format!("expected a duration from \"2s\" to \"1h\", found \"{s}\""),
            ),
            Err(m) => v.issue("daemon.lease", m),
        },
        Some(other) => v.issue(
            "daemon.lease",
            format!(
                "expected a duration such as \"30s\", found {}",
                describe(other)
            ),
        ),
    }
    if !postgres {
        for key in ["mode", "vantage", "lease"] {
            if t.contains_key(key) {
                v.issue(
                    &format!("daemon.{key}"),
                    "expected a postgres:// db with the fleet keys (one SQLite file has one writer, so instances cannot share it), found a SQLite db".into(),
                );
            }
        }
    }
    settings
}

/// An `instance` or `vantage` name, reported when it is not one.
fn name_key(v: &mut Validator, t: &Table, key: &str) -> Option<String> {
    let path = format!("daemon.{key}");
    match t.get(key) {
        None => None,
        Some(Value::String(s)) => match name_problem(s) {
            None => Some(s.clone()),
            Some(problem) => {
                v.issue(&path, problem);
                None
            }
        },
        Some(other) => {
            v.issue(
                &path,
                format!(
                    "expected a name such as \"eu-1\", found {}",
                    describe(other)
                ),
            );
            None
        }
    }
}

/// Without a `lease` key the default is at most a third of the shortest interval. The lease must be shorter than half the shortest interval of a monitored target, so that a
/// dead instance's targets are taken over within one interval: the lease runs out, and the next
/// slot is claimed by a live instance. Cron targets are not counted (their gaps vary).
pub(super) fn check_lease(
    v: &mut Validator,
    table: &Table,
    settings: &mut FleetSettings,
    targets: &[TargetConfig],
) {
    let Some(Value::Table(daemon)) = table.get("daemon") else {
        return;
    };
    let fleet = matches!(daemon.get("db"), Some(Value::String(s)) if is_postgres_url(s));
    if !fleet {
        return;
    }
    let shortest = targets
        .iter()
        .filter_map(|t| t.monitor.as_ref())
        .filter_map(|m| match &m.schedule {
            Schedule::Interval(d) => Some(*d),
            Schedule::Cron(_) => None,
        })
        .min();
    // Without a `lease`, the default shrinks to a third of the shortest interval (never below
    // the minimum), so a fleet of targets checked every few seconds needs no extra key.
    if daemon.get("lease").is_none()
        && let Some(shortest) = shortest
    {
        settings.lease = settings.lease.min(shortest / 3).max(MIN_LEASE);
    }
    if let Some(shortest) = shortest
        && settings.lease.saturating_mul(2) >= shortest
    {
        v.issue(
            "daemon.lease",
            format!(
                "expected a lease shorter than half the shortest target interval ({}s), so a dead instance's targets are taken over within one interval, found {}s",
                shortest.as_secs(),
                settings.lease.as_secs()
            ),
        );
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn read_text(text: &str) -> (FleetSettings, Vec<String>) {
        let table: Table = text.parse().unwrap_or_else(|e| panic!("{e}"));
        let mut v = Validator::default();
        let settings = read(&mut v, &table);
        let issues = v
            .issues
            .iter()
            .map(|i| format!("{}: {}", i.path, i.message))
            .collect();
        (settings, issues)
    }

    const PG: &str = "db = \"postgres://teewatch@db.example:5432/teewatch\"\n";

    #[test]
    fn defaults_are_shard_with_a_30s_lease_and_the_host_name() {
        let (s, issues) = read_text(PG);
        assert!(issues.is_empty(), "{issues:?}");
        assert_eq!(s.mode, FleetMode::Shard);
        assert_eq!(s.lease, DEFAULT_LEASE);
        assert_eq!(s.vantage, "");
        assert_eq!(s.instance, host_instance_name());
        assert_eq!(name_problem(&s.instance), None);
    }

    #[test]
    fn a_replicate_instance_reads_every_key() {
        let (s, issues) = read_text(&format!(
            "{PG}instance = \"mon-eu.1\"\nmode = \"replicate\"\nvantage = \"eu-1\"\nlease = \"10s\"\n"
        ));
        assert!(issues.is_empty(), "{issues:?}");
        assert_eq!(
            s,
            FleetSettings {
                instance: "mon-eu.1".into(),
                mode: FleetMode::Replicate,
                vantage: "eu-1".into(),
                lease: Duration::from_secs(10),
            }
        );
    }

    #[test]
    fn replicate_without_a_vantage_is_refused() {
        let (_, issues) = read_text(&format!("{PG}mode = \"replicate\"\n"));
        assert_eq!(issues.len(), 1, "{issues:?}");
        assert!(
            issues[0].starts_with("daemon.vantage: expected a vantage point name"),
            "{issues:?}"
        );
    }

    #[test]
    fn each_bad_value_names_its_key_and_what_was_found() {
        let cases = [
            (
                "mode = \"leader\"",
                "daemon.mode: expected \"shard\" or \"replicate\", found",
            ),
            (
                "instance = \"a b\"",
                "daemon.instance: expected only A-Z, a-z, 0-9, '.', '_' or '-', found ' '",
            ),
            (
                "instance = \"\"",
                "daemon.instance: expected 1 to 64 characters",
            ),
            (
                "vantage = \"eu/1\"",
                "daemon.vantage: expected only A-Z, a-z, 0-9, '.', '_' or '-', found '/'",
            ),
            (
                "lease = \"1s\"",
                "daemon.lease: expected a duration from \"2s\" to \"1h\", found \"1s\"",
            ),
            (
                "lease = \"2h\"",
                "daemon.lease: expected a duration from \"2s\" to \"1h\", found \"2h\"",
            ),
            (
                "lease = 30",
                "daemon.lease: expected a duration such as \"30s\", found",
            ),
            (
                "instance = 7",
                "daemon.instance: expected a name such as \"eu-1\", found",
            ),
        ];
        for (line, expected) in cases {
            let (_, issues) = read_text(&format!("{PG}{line}\n"));
            assert_eq!(issues.len(), 1, "{line}: {issues:?}");
            assert!(issues[0].starts_with(expected), "{line}: {issues:?}");
        }
        let long = "x".repeat(65);
        let (_, issues) = read_text(&format!("{PG}instance = \"{long}\"\n"));
        assert!(
            issues[0].contains("expected 1 to 64 characters") && issues[0].contains("found 65"),
            "{issues:?}"
        );
    }

    #[test]
    fn fleet_keys_are_refused_beside_sqlite_but_instance_is_not() {
        let (s, issues) = read_text("db = \"teewatch.db\"\ninstance = \"solo\"\n");
        assert!(issues.is_empty(), "{issues:?}");
        assert_eq!(s.instance, "solo");
        for key in ["mode = \"shard\"", "vantage = \"eu-1\"", "lease = \"10s\""] {
            let (_, issues) = read_text(&format!("{key}\n"));
            assert_eq!(issues.len(), 1, "{key}: {issues:?}");
            assert!(
                issues[0].contains("expected a postgres:// db with the fleet keys")
                    && issues[0].ends_with("found a SQLite db"),
                "{key}: {issues:?}"
            );
        }
    }

    #[test]
    fn host_names_become_valid_instance_names() {
        assert_eq!(sanitize_host("mon-1.example.org\n"), "mon-1.example.org");
        assert_eq!(sanitize_host("  \n"), FALLBACK_INSTANCE);
        assert_eq!(sanitize_host("héllo"), "hllo");
        assert_eq!(sanitize_host(&"a".repeat(80)).len(), MAX_NAME);
        assert!(is_postgres_url("postgresql://h/db"));
        assert!(!is_postgres_url("sqlite:teewatch.db"));
    }
}
