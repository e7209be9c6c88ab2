//! DCAP collateral kept between checks: in memory and on disk beside the database.
//!
//! Collateral is per FMSPC and valid about a month, while a target is checked every few minutes;
//! the PCCS is asked again only when the cached copy is within [`REFRESH_MARGIN_DAYS`] of its
//! `nextUpdate`, and then, while the copy is still valid, at most once per
//! [`RETRY_INTERVAL_MINUTES`] per FMSPC (Intel's PCS may keep serving the same collateral for a
//! while, and a check every few minutes must not hammer the PCCS). A missing or expired copy is
//! refetched on every check. While the PCCS is unreachable the cached copy keeps serving, and once
//! it has expired the verifier judges the quote `unknown` (its validity windows no longer cover
//! `observed_at`), never `fail`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

/// How long before `nextUpdate` a cached collateral starts being refreshed: eight days, so a
/// platform whose collateral is within 7 days of expiry means refreshing has failed for a day
/// (the `TeewatchCollateralExpiringSoon` alert, `dashboards/prometheus/alerts.yml`).
pub const REFRESH_MARGIN_DAYS: i64 = 8;

/// While the cached copy is still valid, the least time between two refresh attempts of one
/// FMSPC. A missing or expired copy is refetched whatever the time since the last attempt.
pub const RETRY_INTERVAL_MINUTES: i64 = 60;

/// One cached collateral and when its earliest part stops being valid.
#[derive(Debug, Clone, PartialEq)]
pub struct Cached {
    pub collateral: Value,
    pub next_update: DateTime<Utc>,
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

/// The earliest `nextUpdate` of the TCB info and QE identity in a collateral.
pub fn next_update(collateral: &Value) -> Option<DateTime<Utc>> {
    ["tcb_info", "qe_identity"]
        .iter()
        .filter_map(|key| {
            let inner: Value = serde_json::from_str(collateral.get(*key)?.as_str()?).ok()?;
            let text = inner.get("nextUpdate")?.as_str()?;
            DateTime::parse_from_rfc3339(text)
                .ok()
                .map(|t| t.with_timezone(&Utc))
        })
        .min()
}

/// An FMSPC as a safe file-name part: 12 hex characters, or nothing.
fn fmspc_key(fmspc: &str) -> Option<String> {
    let lower = fmspc.to_ascii_lowercase();
    (lower.len() == 12 && lower.bytes().all(|b| b.is_ascii_hexdigit())).then_some(lower)
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
        let collateral: Value = serde_json::from_str(&text).ok()?;
        let cached = Cached {
            next_update: next_update(&collateral)?,
            collateral,
        };
        if let Ok(mut entries) = self.entries.lock() {
            entries.insert(key, cached.clone());
        }
        Some(cached)
    }

    /// Whether the caller should refetch the collateral of an FMSPC at `now`: always when there
    /// is no cached copy or it has expired; when it is within [`REFRESH_MARGIN_DAYS`] of its
    /// `nextUpdate`, only if no attempt was due in the last [`RETRY_INTERVAL_MINUTES`]. A yes for
    /// a still-valid copy counts as that attempt (checked and recorded under one lock, so
    /// concurrent checks of one platform fetch once), whether or not the fetch then succeeds.
    pub fn needs_refresh(&self, fmspc: &str, now: DateTime<Utc>) -> bool {
        let (Some(key), Some(cached)) = (fmspc_key(fmspc), self.get(fmspc)) else {
            return true;
        };
        if now >= cached.next_update {
            return true;
        }
        if now + Duration::days(REFRESH_MARGIN_DAYS) < cached.next_update {
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

    /// Stores freshly fetched collateral in memory and, when persistent, on disk (written to a
    /// temporary file and renamed, so a crash never leaves half a file).
    pub fn put(&self, fmspc: &str, collateral: Value) -> std::io::Result<()> {
        let Some(key) = fmspc_key(fmspc) else {
            return Ok(());
        };
        let Some(next) = next_update(&collateral) else {
            return Ok(());
        };
        if let Some(path) = self.file(&key) {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let temporary = path.with_extension("json.tmp");
            std::fs::write(&temporary, collateral.to_string())?;
            std::fs::rename(&temporary, &path)?;
        }
        if let Ok(mut entries) = self.entries.lock() {
            entries.insert(
                key,
                Cached {
                    collateral,
                    next_update: next,
                },
            );
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn collateral() -> Value {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/vectors/tdx/dcap-qvl/tdx_quote_collateral.json"
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn next_update_is_the_earliest_part() {
        let next = next_update(&collateral()).unwrap();
        assert_eq!(next.to_rfc3339(), "2025-07-19T10:16:03+00:00");
    }

    #[test]
    fn survives_a_restart_through_the_disk_and_refreshes_before_expiry() {
        let dir = std::env::temp_dir().join(format!("teewatch-collateral-{}", std::process::id()));
        let cache = CollateralCache::new(Some(&dir));
        assert!(cache.needs_refresh("b0c06f000000", Utc::now()));
        cache.put("B0C06F000000", collateral()).unwrap();
        let reopened = CollateralCache::new(Some(&dir));
        let cached = reopened.get("b0c06f000000").unwrap();
        assert_eq!(cached.collateral, collateral());
        let inside = DateTime::parse_from_rfc3339("2025-07-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let near_end = DateTime::parse_from_rfc3339("2025-07-18T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert!(!reopened.needs_refresh("b0c06f000000", inside));
        assert!(reopened.needs_refresh("b0c06f000000", near_end));
        // A name that is not an FMSPC never becomes a path.
        assert!(cache.get("../../etc/passwd").is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    /// A memory-only cache holding the test collateral (`nextUpdate` 2025-07-19T10:16:03Z).
    fn warm() -> CollateralCache {
        let cache = CollateralCache::new(None);
        cache.put("b0c06f000000", collateral()).unwrap();
        cache
    }

    #[test]
    fn refreshes_within_eight_days_of_next_update_and_not_before() {
        // Just over 8 days left: kept, however often asked.
        let cache = warm();
        for _ in 0..3 {
            assert!(!cache.needs_refresh("b0c06f000000", at("2025-07-11T10:00:00Z")));
        }
        // Exactly 8 days left, or less: refreshed.
        assert!(cache.needs_refresh("B0C06F000000", at("2025-07-11T10:16:03Z")));
        let cache = warm();
        assert!(cache.needs_refresh("b0c06f000000", at("2025-07-12T10:16:03Z")));
        let cache = warm();
        assert!(cache.needs_refresh("b0c06f000000", at("2025-07-19T10:16:02Z")));
    }

    #[test]
    fn a_refresh_of_a_valid_copy_is_tried_at_most_once_an_hour() {
        let cache = warm();
        let first = at("2025-07-15T00:00:00Z");
        assert!(cache.needs_refresh("b0c06f000000", first));
        // The PCCS served the same collateral (or failed): not again within the hour.
        cache.put("b0c06f000000", collateral()).unwrap();
        for minutes in [0, 1, 30, 59] {
            let now = first + Duration::minutes(minutes);
            assert!(!cache.needs_refresh("b0c06f000000", now), "{minutes} min");
        }
        // A clock set back a little does not count as a new hour either.
        assert!(!cache.needs_refresh("b0c06f000000", first - Duration::minutes(5)));
        // An hour after the attempt, once more; then again not within the hour of that one.
        let second = first + Duration::minutes(60);
        assert!(cache.needs_refresh("b0c06f000000", second));
        assert!(!cache.needs_refresh("b0c06f000000", second + Duration::minutes(30)));
        assert!(cache.needs_refresh("b0c06f000000", second + Duration::minutes(61)));
        // The limit is per FMSPC: another platform entering its margin is refreshed at once.
        let mut other = collateral();
        let earlier = other
            .get("tcb_info")
            .and_then(Value::as_str)
            .unwrap()
            .replace("2025-07-19T10:16:03Z", "2025-07-18T10:16:03Z");
        other
            .as_object_mut()
            .unwrap()
            .insert("tcb_info".into(), Value::String(earlier));
        cache.put("00906ed50000", other).unwrap();
        assert!(cache.needs_refresh("00906ed50000", second + Duration::minutes(62)));
        assert!(!cache.needs_refresh("00906ed50000", second + Duration::minutes(63)));
    }

    #[test]
    fn a_missing_or_expired_copy_is_always_refetched() {
        let cache = CollateralCache::new(None);
        let now = at("2025-07-19T10:16:03Z");
        for _ in 0..3 {
            assert!(cache.needs_refresh("b0c06f000000", now));
        }
        cache.put("b0c06f000000", collateral()).unwrap();
        // Expired (at or past nextUpdate): every check refetches, the hourly limit aside.
        for seconds in [0, 1, 2, 60, 3600] {
            let later = now + Duration::seconds(seconds);
            assert!(cache.needs_refresh("b0c06f000000", later), "{seconds} s");
            assert!(cache.needs_refresh("b0c06f000000", later), "{seconds} s");
        }
        // Even right after a refresh of the still-valid copy was tried.
        let cache = warm();
        assert!(cache.needs_refresh("b0c06f000000", now - Duration::seconds(1)));
        assert!(cache.needs_refresh("b0c06f000000", now));
        assert!(cache.needs_refresh("b0c06f000000", now));
    }
}
