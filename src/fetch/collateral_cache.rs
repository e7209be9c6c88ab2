//! DCAP collateral kept between checks: in memory and on disk beside the database.
//!
//! Collateral is per FMSPC and valid about a month, while a target is checked every few minutes,
//! so the PCCS is asked again only when the cached copy is due: when it was fetched longer ago
//! than `[intel] collateral_refresh` (a day by default, so a revocation or a TCB recovery Intel
//! publishes is seen within a day rather than when the copy nears its end), or when it is within
//! [`REFRESH_MARGIN_DAYS`] of the end of its validity: the earliest `nextUpdate` or `notAfter` of
//! its TCB info, QE identity, CRLs and issuer chains, the verifier's own reading
//! ([`crate::verify::collateral::validity`]), so the cache refreshes on the date the verifier
//! stops accepting the copy and the expiry metric shows. While the copy is still valid a due
//! refresh is tried at most once per [`RETRY_INTERVAL_MINUTES`] per FMSPC (Intel's PCS may keep
//! serving the same collateral for a while, and a check every few minutes must not hammer a PCCS
//! that is down). A missing or expired copy is refetched on every check.
//!
//! A failed refresh never replaces nor deletes the cached copy: the caller only stores what the
//! PCCS answered, and [`CollateralCache::put`] refuses an answer whose validity the verifier
//! cannot read (it could judge no quote by it) and an already-expired answer when the cached copy
//! lasts longer. While the PCCS is unreachable the cached copy keeps serving, and once it has
//! expired the verifier judges the quote `unknown` (its validity windows no longer cover
//! `observed_at`), never `fail`.
//!
//! On disk each FMSPC has `collateral-<fmspc>.json` holding `{"format": "teewatch-collateral/1",
//! "fetched_at": <RFC 3339>, "collateral": <QuoteCollateralV3>}`, so the age of a copy survives a
//! restart. A file that is a bare `QuoteCollateralV3` (the layout before the fetch time was
//! recorded) still loads, with an unknown fetch time that counts as old: it is refreshed at the
//! first check.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::verify::collateral::{self, Validity};

/// How long before the end of its validity a cached collateral is refreshed whatever its age:
/// eight days, so a platform whose collateral is within 7 days of expiry means refreshing has
/// failed for a day (the `TeewatchCollateralExpiringSoon` alert,
/// `dashboards/prometheus/alerts.yml`).
pub const REFRESH_MARGIN_DAYS: i64 = 8;

/// While the cached copy is still valid, the least time between two refresh attempts of one
/// FMSPC. A missing or expired copy is refetched whatever the time since the last attempt.
pub const RETRY_INTERVAL_MINUTES: i64 = 60;

/// The `format` of a cache file that records when its collateral was fetched.
pub const FILE_FORMAT: &str = "teewatch-collateral/1";

/// One cached collateral, when its first part stops being valid and when it was fetched.
#[derive(Debug, Clone, PartialEq)]
pub struct Cached {
    pub collateral: Value,
    /// The end of the copy ([`Validity::expires_at`]): from this second on it is refetched on
    /// every check, and the verifier accepts it at most this one second more.
    pub expires_at: DateTime<Utc>,
    /// The part that ends first, as the verifier names it ("pck crl", "tcb info", …).
    pub expires_first: String,
    /// When the PCCS served this copy; `None` for a file written before teewatch recorded it,
    /// which counts as older than any refresh period.
    pub fetched_at: Option<DateTime<Utc>>,
}

/// Why fetched collateral was not stored; in every case the cached copy, if any, is kept.
#[derive(Debug, thiserror::Error)]
pub enum PutError {
    #[error("expected an fmspc of 12 hex digits, found {0:?}")]
    Fmspc(String),
    #[error(
        "expected collateral for fmspc {fmspc} whose validity can be read, found {error}; the cached copy is kept"
    )]
    Unreadable {
        fmspc: String,
        error: collateral::Error,
    },
    #[error(
        "expected collateral for fmspc {fmspc} valid at {fetched_at}, found it expired at {expires_at} ({expires_first} first); the cached copy, valid until {kept_until}, is kept"
    )]
    Expired {
        fmspc: String,
        fetched_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
        expires_first: String,
        kept_until: DateTime<Utc>,
    },
    /// The copy is in memory and serves; only its persistence failed.
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The cache, keyed by lowercase FMSPC.
#[derive(Debug, Default)]
pub struct CollateralCache {
    dir: Option<PathBuf>,
    entries: Mutex<HashMap<String, Cached>>,
    /// When a still-valid copy was last due for a refresh, per FMSPC (memory only: after a
    /// restart the first check may try once more).
    attempts: Mutex<HashMap<String, DateTime<Utc>>>,
}

/// An FMSPC as a safe file-name part: 12 hex characters, or nothing.
fn fmspc_key(fmspc: &str) -> Option<String> {
    let lower = fmspc.to_ascii_lowercase();
    (lower.len() == 12 && lower.bytes().all(|b| b.is_ascii_hexdigit())).then_some(lower)
}

/// A cache file's collateral and fetch time: the current layout, or a bare collateral (the
/// layout before the fetch time was recorded) with an unknown fetch time.
fn read_file(text: &str) -> Option<(Value, Option<DateTime<Utc>>)> {
    let value: Value = serde_json::from_str(text).ok()?;
    if value.get("format").and_then(Value::as_str) != Some(FILE_FORMAT) {
        return Some((value, None));
    }
    let Value::Object(mut file) = value else {
        return None;
    };
    let fetched_at = file
        .get("fetched_at")
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc));
    Some((file.remove("collateral")?, fetched_at))
}

impl Cached {
    fn new(collateral: Value, validity: &Validity, fetched_at: Option<DateTime<Utc>>) -> Cached {
        Cached {
            collateral,
            expires_at: validity.expires_at(),
            expires_first: validity.expires_first().part.clone(),
            fetched_at,
        }
    }
}

/// Whether a still-valid copy is due for a refresh at `now`: near its end, or older than
/// `refresh`, or of unknown age.
fn due(cached: &Cached, now: DateTime<Utc>, refresh: Duration) -> bool {
    let near_end = now
        .checked_add_signed(Duration::days(REFRESH_MARGIN_DAYS))
        .is_none_or(|edge| edge >= cached.expires_at);
    // Either way round, so a fetch time ahead of the clock (set back since) does not hold
    // refreshes off until the clock catches up.
    let old = cached
        .fetched_at
        .is_none_or(|at| (now - at).abs() >= refresh);
    near_end || old
}

impl CollateralCache {
    /// A cache persisted in `dir` (created when first written), or memory-only with `None`.
    pub fn new(dir: Option<&Path>) -> CollateralCache {
        CollateralCache {
            dir: dir.map(Path::to_path_buf),
            entries: Mutex::new(HashMap::new()),
            attempts: Mutex::new(HashMap::new()),
        }
    }

    fn file(&self, key: &str) -> Option<PathBuf> {
        Some(self.dir.as_ref()?.join(format!("collateral-{key}.json")))
    }

    /// The cached collateral for an FMSPC, from memory or else from disk.
    pub fn get(&self, fmspc: &str) -> Option<Cached> {
        let key = fmspc_key(fmspc)?;
        if let Some(found) = self.entries.lock().ok()?.get(&key).cloned() {
            return Some(found);
        }
        let text = std::fs::read_to_string(self.file(&key)?).ok()?;
        let (collateral, fetched_at) = read_file(&text)?;
        // A file whose validity cannot be read is as good as none: the next check refetches.
        let validity = collateral::validity(&collateral).ok()?;
        let cached = Cached::new(collateral, &validity, fetched_at);
        if let Ok(mut entries) = self.entries.lock() {
            entries.insert(key, cached.clone());
        }
        Some(cached)
    }

    /// Whether the caller should refetch the collateral of an FMSPC at `now`, given the refresh
    /// period `refresh` (`[intel] collateral_refresh`): always when there is no cached copy or it
    /// has reached its end ([`Cached::expires_at`], the same instant the verifier and the expiry
    /// metric read); when the copy is due (older than `refresh`, of unknown age, or within
    /// [`REFRESH_MARGIN_DAYS`] of its end), only if no attempt was due in the last
    /// [`RETRY_INTERVAL_MINUTES`]. A yes for a still-valid copy counts as that attempt (checked
    /// and recorded under one lock, so concurrent checks of one platform fetch once), whether or
    /// not the fetch then succeeds.
    pub fn needs_refresh(
        &self,
        fmspc: &str,
        now: DateTime<Utc>,
        refresh: std::time::Duration,
    ) -> bool {
        let (Some(key), Some(cached)) = (fmspc_key(fmspc), self.get(fmspc)) else {
            return true;
        };
        // From the last valid second on: refetching a second early costs nothing, a second late
        // would hand the verifier a copy it no longer accepts.
        if now >= cached.expires_at {
            return true;
        }
        let refresh = Duration::from_std(refresh).unwrap_or(Duration::MAX);
        if !due(&cached, now, refresh) {
            return false;
        }
        let Ok(mut attempts) = self.attempts.lock() else {
            return true;
        };
        // Either way round, so a clock set back does not hold retries off until it catches up.
        let recent = attempts
            .get(&key)
            .is_some_and(|last| (now - *last).abs() < Duration::minutes(RETRY_INTERVAL_MINUTES));
        if !recent {
            attempts.insert(key, now);
        }
        !recent
    }

    /// Stores collateral the PCCS served at `fetched_at`, in memory and, when persistent, on disk
    /// (written to a temporary file and renamed, so a crash never leaves half a file and a
    /// failed write leaves the previous file whole). Refused, keeping the cached copy: an FMSPC
    /// that is not 12 hex digits, collateral whose validity the verifier cannot read (it could
    /// judge no quote by it), and collateral already expired at `fetched_at` while the cached
    /// copy lasts longer (a PCCS serving stale
    /// collateral must not cut a good copy short). When only the disk write fails the new copy
    /// still serves from memory and the error says so.
    pub fn put(
        &self,
        fmspc: &str,
        collateral: Value,
        fetched_at: DateTime<Utc>,
    ) -> Result<(), PutError> {
        let key = fmspc_key(fmspc).ok_or_else(|| PutError::Fmspc(fmspc.to_string()))?;
        let validity = collateral::validity(&collateral).map_err(|error| PutError::Unreadable {
            fmspc: key.clone(),
            error,
        })?;
        let end = validity.expires_at();
        if end <= fetched_at {
            if let Some(kept) = self.get(&key).filter(|c| c.expires_at > end) {
                return Err(PutError::Expired {
                    fmspc: key,
                    fetched_at,
                    expires_at: end,
                    expires_first: validity.expires_first().part.clone(),
                    kept_until: kept.expires_at,
                });
            }
        }
        let path = self.file(&key);
        let file = path.as_ref().map(|_| {
            json!({
                "format": FILE_FORMAT,
                "fetched_at": fetched_at.to_rfc3339_opts(SecondsFormat::AutoSi, true),
                "collateral": &collateral,
            })
        });
        if let Ok(mut entries) = self.entries.lock() {
            entries.insert(key, Cached::new(collateral, &validity, Some(fetched_at)));
        }
        match (path, file) {
            (Some(path), Some(file)) => write_atomically(&path, &file.to_string())
                .map_err(|source| PutError::Write { path, source }),
            _ => Ok(()),
        }
    }
}

/// Writes `text` to a temporary file beside `path` and renames it over `path`; on failure the
/// temporary file is removed and `path` is left as it was.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let temporary = path.with_extension("json.tmp");
    let written = std::fs::write(&temporary, text).and_then(|()| std::fs::rename(&temporary, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}

#[cfg(test)]
#[path = "collateral_cache_tests.rs"]
mod tests;
