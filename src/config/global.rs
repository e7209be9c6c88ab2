//! The sections that apply to every target: `[daemon]` (where the daemon listens and keeps its
//! history), `[intel]` (the PCCS, the root CA CRL, how often collateral is refreshed and the
//! accepted TCB statuses) and `[nvidia]`
//! (NRAS, its JWKS and the NRAS trust anchors).

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use toml::{Table, Value};

use super::db::StoreLocation;
use super::describe;
use super::fleet::FleetSettings;
use super::schedule::{parse_duration, parse_interval};
use super::validator::{UrlKind, Validator};
use super::web::{self, WebConfig};
use crate::verify::policy::{DEFAULT_NRAS_URL, Policy};

/// `[daemon] listen` when not given: loopback, so that nothing is exposed by default.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9477";
/// `[daemon] db` when not given, relative to the configuration file's folder.
pub const DEFAULT_DB: &str = "teewatch.db";
pub const DEFAULT_RETENTION_DAYS: u32 = 90;
pub const DEFAULT_CONCURRENCY: usize = 8;
/// How long a new measurement value keeps `teewatch_measurement_drift` at 1.
pub const DEFAULT_DRIFT_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// Full bundles kept per target beyond failures and drifts.
pub const DEFAULT_KEEP_BUNDLES: usize = 10;
/// How long SIGTERM waits for in-flight checks before cancelling them.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Intel's Provisioning Certification Service.
pub const DEFAULT_PCCS_URL: &str = "https://api.trustedservices.intel.com";
/// Phala's PCCS, which serves the same collateral (documented as the alternative).
pub const PHALA_PCCS_URL: &str = "https://pccs.phala.network";
/// The Intel SGX root CA's CRL.
pub const DEFAULT_ROOT_CRL_URL: &str =
    "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der";
/// `[intel] collateral_refresh` when not given: a revocation or TCB recovery Intel publishes is
/// seen within a day, for one set of PCCS requests per platform a day.
pub const DEFAULT_COLLATERAL_REFRESH: Duration = Duration::from_secs(24 * 3600);
/// The bounds of `[intel] collateral_refresh`: below an hour nothing changes, since a refresh of
/// a still-valid copy is tried at most hourly; above a week a revocation could go unseen for
/// most of the collateral's month of validity.
pub const MIN_COLLATERAL_REFRESH: Duration = Duration::from_secs(3600);
pub const MAX_COLLATERAL_REFRESH: Duration = Duration::from_secs(7 * 24 * 3600);
/// Appended to the NRAS base URL when `jwks_url` is not given.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";

pub(super) const DAEMON_KEYS: [&str; 17] = [
    "listen",
    "web_config",
    "allow_plain_http_off_loopback",
    "db",
    "db_password_env",
    "db_password_file",
    "db_password_credential",
    "retention_days",
    "concurrency",
    "drift_window",
    "keep_bundles",
    "drain_timeout",
    "instance",
    "mode",
    "vantage",
    "lease",
    "source_address",
];
pub(super) const INTEL_KEYS: [&str; 4] = [
    "pccs_url",
    "root_crl_url",
    "allowed_tcb_statuses",
    "collateral_refresh",
];
pub(super) const NVIDIA_KEYS: [&str; 3] = ["nras_url", "jwks_url", "nras_anchors"];

/// `[daemon]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonConfig {
    /// Where the HTTP API and metrics listen.
    pub listen: SocketAddr,
    /// `web_config`: TLS and basic authentication for the listener (exporter-toolkit's web
    /// configuration file), resolved against the configuration file's folder.
    pub web: Option<WebConfig>,
    /// `allow_plain_http_off_loopback`: serve plain HTTP on a non-loopback address anyway.
    pub allow_plain_http_off_loopback: bool,
    /// The store: a SQLite file resolved against the configuration file's folder (the default),
    /// or a PostgreSQL database with where its password is read from (`db.rs`).
    pub db: StoreLocation,
    /// Days of history kept (1 to 36500).
    pub retention_days: u32,
    /// Targets checked at the same time (1 to 256).
    pub concurrency: usize,
    /// How long a new measurement value counts as drift.
    pub drift_window: Duration,
    /// Full bundles kept per target besides those of failures and drifts (0 to 10000).
    pub keep_bundles: usize,
    /// How long a shutdown waits for in-flight checks.
    pub drain_timeout: Duration,
    /// `instance`, `mode`, `vantage` and `lease`: this instance's place in a fleet sharing a
    /// PostgreSQL store (`docs/fleet.md`).
    pub fleet: FleetSettings,
    /// `source_address`: the local IP address every outbound connection (attestation, canary,
    /// PCCS, NRAS, Rekor...) is made from, so that one host can hold several vantage points;
    /// `None` lets the system choose.
    pub source_address: Option<IpAddr>,
}

/// `[intel]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntelConfig {
    /// PCCS base URL (no trailing `/`) for TCB info, QE identity and PCK CRLs.
    pub pccs_url: String,
    /// The Intel SGX root CA CRL.
    pub root_crl_url: String,
    /// TCB statuses accepted unless a target lists its own.
    pub allowed_tcb_statuses: Vec<String>,
    /// A cached collateral fetched longer ago than this is fetched again (1 h to 7 d).
    pub collateral_refresh: Duration,
}

/// `[nvidia]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvidiaConfig {
    /// NRAS base URL (no trailing `/`); NRAS tokens must name it as `iss`.
    pub nras_url: String,
    /// Where NRAS's signing keys are read; `{nras_url}/.well-known/jwks.json` by default.
    pub jwks_url: String,
    /// DER of the NRAS intermediates from `nras_anchors`, when given (otherwise the compiled-in
    /// ones apply).
    pub nras_anchors_der: Option<Vec<Vec<u8>>>,
}

/// Reads `[daemon]`; relative paths are resolved against `base`.
pub(super) fn daemon(v: &mut Validator, root: &Table, base: &Path) -> DaemonConfig {
    let empty = Table::new();
    let t = v.table(root, "daemon", "daemon").unwrap_or(&empty);
    v.known_keys("daemon", t, &DAEMON_KEYS);
    let default_listen = SocketAddr::from(([127, 0, 0, 1], 9477));
    let listen = match t.get("listen") {
        None => default_listen,
        Some(Value::String(s)) => match s.trim().parse::<SocketAddr>() {
            Ok(addr) => addr,
            Err(_) => {
                v.issue(
                    "daemon.listen",
                    format!("expected an ip address and port such as \"{DEFAULT_LISTEN}\" or \"[::1]:9477\", found \"{s}\""),
                );
                default_listen
            }
        },
        Some(other) => {
            v.issue(
                "daemon.listen",
                format!(
                    "expected an ip address and port such as \"{DEFAULT_LISTEN}\", found {}",
                    describe(other)
                ),
            );
            default_listen
        }
    };
    let db = super::db::store_location(v, t, base, DEFAULT_DB);
    let retention_days = v
        .integer(t, "retention_days", "daemon.retention_days", 1..=36_500)
        .ok()
        .flatten()
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(DEFAULT_RETENTION_DAYS);
    let concurrency = v
        .integer(t, "concurrency", "daemon.concurrency", 1..=256)
        .ok()
        .flatten()
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(DEFAULT_CONCURRENCY);
    let keep_bundles = v
        .integer(t, "keep_bundles", "daemon.keep_bundles", 0..=10_000)
        .ok()
        .flatten()
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(DEFAULT_KEEP_BUNDLES);
    let drift_window = duration(v, t, "drift_window", DEFAULT_DRIFT_WINDOW);
    let drain_timeout = duration(v, t, "drain_timeout", DEFAULT_DRAIN_TIMEOUT);
    let fleet = super::fleet::read(v, t);
    let source_address = source_address(v, t);
    let issues_before = v.issues.len();
    let web = match v.string(
        t,
        "web_config",
        "daemon.web_config",
        "a web configuration file path",
    ) {
        Ok(Some(path)) => web::read(v, &base.join(path), "daemon.web_config"),
        _ => None,
    };
    let allow_plain_http_off_loopback = v
        .boolean(
            t,
            "allow_plain_http_off_loopback",
            "daemon.allow_plain_http_off_loopback",
        )
        .ok()
        .flatten()
        .unwrap_or(false);
    // A broken web configuration is reported by itself, not also as a missing one.
    let web_failed = v.issues.len() > issues_before;
    if let Some(message) = plain_off_loopback(listen, web.as_ref(), allow_plain_http_off_loopback)
        .filter(|_| !web_failed)
    {
        v.issue("daemon.listen", message);
    }
    DaemonConfig {
        listen,
        web,
        allow_plain_http_off_loopback,
        db,
        retention_days,
        concurrency,
        drift_window,
        keep_bundles,
        drain_timeout,
        fleet,
        source_address,
    }
}

/// `[daemon] source_address`: an IP address outbound connections can be made from. The
/// unspecified address would mean "any" (no choice at all), and a multicast or broadcast
/// address cannot be a connection's source, so those are refused; whether the address belongs
/// to this host is only known when a connection is made (a `connect` fetch error says so), since
/// a configuration may be checked on another machine than the one it runs on.
fn source_address(v: &mut Validator, t: &Table) -> Option<IpAddr> {
    let path = "daemon.source_address";
    let expected = "expected an ip address of this host such as \"192.0.2.10\" or \"2001:db8::10\"";
    let text = match t.get("source_address") {
        None => return None,
        Some(Value::String(s)) => s,
        Some(other) => {
            v.issue(path, format!("{expected}, found {}", describe(other)));
            return None;
        }
    };
    let Ok(ip) = text.trim().parse::<IpAddr>() else {
        v.issue(path, format!("{expected}, found \"{text}\""));
        return None;
    };
    let unusable = match ip {
        IpAddr::V4(v4) => v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast(),
        IpAddr::V6(v6) => v6.is_unspecified() || v6.is_multicast(),
    };
    if unusable {
        v.issue(
            path,
            format!(
                "{expected}, found \"{text}\", which cannot be the source of a connection \
                 (unspecified, multicast or broadcast)"
            ),
        );
        return None;
    }
    Some(ip)
}

/// Why a listener on `listen` must not serve plain HTTP, when it must not: a non-loopback
/// address without `tls_server_config` in the web configuration, unless
/// `allow_plain_http_off_loopback` says the network is trusted. Checked at load and again at
/// start, after a `--listen` override.
pub fn plain_off_loopback(
    listen: SocketAddr,
    web: Option<&WebConfig>,
    allowed: bool,
) -> Option<String> {
    let tls = web.is_some_and(|w| w.tls.is_some());
    (!listen.ip().is_loopback() && !tls && !allowed).then(|| {
        format!(
            "{listen} is not a loopback address, and without TLS /metrics and the status page would go over the network in the clear: \
             set web_config = \"/etc/teewatch/web.yml\" with a tls_server_config (and basic_auth_users) in [daemon] (docs/config.md#tls-and-authentication), \
             or, on a network you trust, allow_plain_http_off_loopback = true"
        )
    })
}

/// A `[daemon]` duration written like an interval (`"30s"`, `"24h"`, at least 10 s).
fn duration(v: &mut Validator, t: &Table, key: &str, default: Duration) -> Duration {
    let path = format!("daemon.{key}");
    match t.get(key) {
        None => default,
        Some(Value::String(s)) => parse_interval(s).unwrap_or_else(|m| {
            v.issue(&path, m);
            default
        }),
        Some(other) => {
            v.issue(
                &path,
                format!(
                    "expected a duration such as \"30s\" or \"24h\", found {}",
                    describe(other)
                ),
            );
            default
        }
    }
}

/// Reads `[intel]`.
pub(super) fn intel(v: &mut Validator, root: &Table) -> IntelConfig {
    let empty = Table::new();
    let t = v.table(root, "intel", "intel").unwrap_or(&empty);
    v.known_keys("intel", t, &INTEL_KEYS);
    let pccs_url = v
        .url(t, "pccs_url", "intel.pccs_url", UrlKind::Base)
        .ok()
        .flatten()
        .unwrap_or_else(|| DEFAULT_PCCS_URL.to_string());
    let root_crl_url = v
        .url(t, "root_crl_url", "intel.root_crl_url", UrlKind::Document)
        .ok()
        .flatten()
        .unwrap_or_else(|| DEFAULT_ROOT_CRL_URL.to_string());
    let allowed_tcb_statuses = v
        .string_list(t, "allowed_tcb_statuses", "intel.allowed_tcb_statuses")
        .unwrap_or_else(|| Policy::default().allowed_tcb_statuses);
    v.tcb_statuses(&allowed_tcb_statuses, "intel.allowed_tcb_statuses");
    let collateral_refresh = collateral_refresh(v, t);
    IntelConfig {
        pccs_url,
        root_crl_url,
        allowed_tcb_statuses,
        collateral_refresh,
    }
}

/// `[intel] collateral_refresh`: a duration from [`MIN_COLLATERAL_REFRESH`] to
/// [`MAX_COLLATERAL_REFRESH`], the default when absent or wrong (the error is reported).
fn collateral_refresh(v: &mut Validator, t: &Table) -> Duration {
    let path = "intel.collateral_refresh";
    let text = match t.get("collateral_refresh") {
        None => return DEFAULT_COLLATERAL_REFRESH,
        Some(Value::String(s)) => s,
        Some(other) => {
            v.issue(
                path,
                format!(
                    "expected a duration such as \"24h\", found {}",
                    describe(other)
                ),
            );
            return DEFAULT_COLLATERAL_REFRESH;
        }
    };
    match parse_duration(text) {
        Ok(d) if (MIN_COLLATERAL_REFRESH..=MAX_COLLATERAL_REFRESH).contains(&d) => d,
        Ok(_) => {
            v.issue(
                path,
                format!(
                    "expected a duration from \"1h\" (a refresh is tried at most hourly) to \"7d\" \
                     (collateral is valid about 30 days; longer would leave a revocation unseen \
                     for weeks), found \"{text}\""
                ),
            );
            DEFAULT_COLLATERAL_REFRESH
        }
        Err(m) => {
            v.issue(path, m);
            DEFAULT_COLLATERAL_REFRESH
        }
    }
}

/// Reads `[nvidia]`; anchor files are resolved against `base`.
pub(super) fn nvidia(v: &mut Validator, root: &Table, base: &Path) -> NvidiaConfig {
    let empty = Table::new();
    let t = v.table(root, "nvidia", "nvidia").unwrap_or(&empty);
    v.known_keys("nvidia", t, &NVIDIA_KEYS);
    let nras_url = v
        .url(t, "nras_url", "nvidia.nras_url", UrlKind::Base)
        .ok()
        .flatten()
        .unwrap_or_else(|| DEFAULT_NRAS_URL.to_string());
    let jwks_url = v
        .url(t, "jwks_url", "nvidia.jwks_url", UrlKind::Document)
        .ok()
        .flatten()
        .unwrap_or_else(|| format!("{nras_url}{JWKS_PATH}"));
    let nras_anchors_der = v
        .string_list(t, "nras_anchors", "nvidia.nras_anchors")
        .map(|paths| v.read_certificates(&paths, base, "nvidia.nras_anchors"));
    NvidiaConfig {
        nras_url,
        jwks_url,
        nras_anchors_der,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::Config;
    use std::net::IpAddr;

    fn source(text: &str) -> Result<Option<IpAddr>, String> {
        Config::parse(&format!("[daemon]\n{text}\n"), "t.toml")
            .map(|c| c.daemon.source_address)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn source_address_is_an_ip_address_of_either_family() {
        assert_eq!(source(""), Ok(None));
        assert_eq!(
            source("source_address = \"127.0.0.2\""),
            Ok(Some(IpAddr::from([127, 0, 0, 2])))
        );
        assert_eq!(
            source("source_address = \" 2001:db8::10 \""),
            Ok(Some("2001:db8::10".parse().unwrap()))
        );
    }

    #[test]
    fn a_source_address_that_is_no_ip_address_is_refused() {
        for (value, found) in [
            ("\"localhost\"", "found \"localhost\""),
            ("\"127.0.0.2:0\"", "found \"127.0.0.2:0\""),
            ("\"\"", "found \"\""),
            ("2", "found integer"),
        ] {
            let error = source(&format!("source_address = {value}")).unwrap_err();
            assert!(
                error.contains(&format!(
                    "daemon.source_address: expected an ip address of this host such as \"192.0.2.10\" or \"2001:db8::10\", {found}"
                )),
                "{value}: {error}"
            );
        }
    }

    #[test]
    fn a_source_address_no_connection_can_come_from_is_refused() {
        for value in ["0.0.0.0", "::", "224.0.0.1", "255.255.255.255", "ff02::1"] {
            let error = source(&format!("source_address = \"{value}\"")).unwrap_err();
            assert!(
                error.contains(&format!(
                    "found \"{value}\", which cannot be the source of a connection (unspecified, multicast or broadcast)"
                )),
                "{value}: {error}"
            );
        }
    }
}
