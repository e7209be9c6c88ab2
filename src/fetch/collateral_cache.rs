//! DCAP collateral kept between checks: in memory and on disk beside the database.
//!
//! Collateral is per FMSPC and valid about a month, while a target is checked every few minutes;
//! the PCCS is asked again only when the cached copy nears its `nextUpdate`. While the PCCS is
//! unreachable the cached copy keeps serving, and once it has expired the verifier judges the
//! quote `unknown` (its validity windows no longer cover `observed_at`), never `fail`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

/// How long before `nextUpdate` a cached collateral is refreshed.
pub const REFRESH_MARGIN_HOURS: i64 = 24;

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

    /// Whether the cached copy should be refetched at `now`.
    pub fn needs_refresh(&self, fmspc: &str, now: DateTime<Utc>) -> bool {
        self.get(fmspc)
            .is_none_or(|c| now + Duration::hours(REFRESH_MARGIN_HOURS) >= c.next_update)
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
}
