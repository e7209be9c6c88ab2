//! Tests of the collateral cache: when a copy is refreshed (age, nearness to `nextUpdate`, the
//! hourly retry limit), that a failed refresh keeps the good copy, and that the fetch time
//! survives a restart while a file without one counts as old.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use super::*;

/// The end of the test collateral's validity: its PCK CRL's `nextUpdate` (the TCB info's is
/// 10:16:03).
const NEXT: &str = "2025-07-19T10:00:35Z";
/// `[intel] collateral_refresh` by default.
const DAY: std::time::Duration = crate::config::DEFAULT_COLLATERAL_REFRESH;
const WEEK: std::time::Duration = crate::config::MAX_COLLATERAL_REFRESH;
const FMSPC: &str = "b0c06f000000";

fn collateral() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/vectors/tdx/dcap-qvl/tdx_quote_collateral.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The test collateral with the TCB info's `nextUpdate` moved to `next` (the earliest part when
/// before the PCK CRL's).
fn with_tcb_next_update(next: &str) -> Value {
    let mut changed = collateral();
    let tcb_info = changed["tcb_info"]
        .as_str()
        .unwrap()
        .replace("2025-07-19T10:16:03Z", next);
    changed["tcb_info"] = Value::String(tcb_info);
    changed
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

/// A memory-only cache holding the test collateral, fetched at `fetched_at`.
fn warm_at(fetched_at: &str) -> CollateralCache {
    let cache = CollateralCache::new(None);
    cache.put(FMSPC, collateral(), at(fetched_at)).unwrap();
    cache
}

/// A fresh folder for a persistent cache, unique to the test.
fn temp_dir(test: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("teewatch-collateral-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn the_copy_ends_when_the_verifier_stops_accepting_it() {
    let cache = warm_at("2025-06-20T00:00:00Z");
    let cached = cache.get(FMSPC).unwrap();
    // The verifier's reading: the PCK CRL ends first, 16 minutes before the TCB info.
    let validity = crate::verify::collateral::validity(&collateral()).unwrap();
    assert_eq!(cached.expires_at, validity.expires_at());
    assert_eq!(cached.expires_at, at(NEXT));
    assert_eq!(cached.expires_first, "pck crl");
    // With the TCB info's nextUpdate moved before it, the TCB info ends first.
    let cache = CollateralCache::new(None);
    let earlier = with_tcb_next_update("2025-07-18T10:16:03Z");
    cache
        .put(FMSPC, earlier, at("2025-06-20T00:00:00Z"))
        .unwrap();
    let cached = cache.get(FMSPC).unwrap();
    assert_eq!(
        (cached.expires_at, cached.expires_first.as_str()),
        (at("2025-07-18T10:16:03Z"), "tcb info")
    );
}

#[test]
fn survives_a_restart_through_the_disk_and_refreshes_before_expiry() {
    let dir = temp_dir("restart");
    let cache = CollateralCache::new(Some(&dir));
    assert!(cache.needs_refresh(FMSPC, Utc::now(), DAY));
    let fetched = at("2025-07-10T00:00:00.123456789Z");
    cache.put("B0C06F000000", collateral(), fetched).unwrap();
    let reopened = CollateralCache::new(Some(&dir));
    let cached = reopened.get(FMSPC).unwrap();
    assert_eq!(cached.collateral, collateral());
    assert_eq!(cached.expires_at, at(NEXT));
    assert_eq!(cached.fetched_at, Some(fetched));
    // Inside the refresh period and far from nextUpdate: kept; within 8 days of it: refreshed.
    assert!(!reopened.needs_refresh(FMSPC, at("2025-07-10T12:00:00Z"), DAY));
    assert!(reopened.needs_refresh(FMSPC, at("2025-07-12T00:00:00Z"), WEEK));
    // A name that is not an FMSPC never becomes a path.
    assert!(cache.get("../../etc/passwd").is_none());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_fetch_time_survives_a_restart_so_the_age_stays_right() {
    let dir = temp_dir("fetched-at");
    let fetched = at("2025-06-20T08:00:00Z");
    CollateralCache::new(Some(&dir))
        .put(FMSPC, collateral(), fetched)
        .unwrap();
    // The file says when, beside the collateral.
    let text = std::fs::read_to_string(dir.join(format!("collateral-{FMSPC}.json"))).unwrap();
    let file: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(file["format"], FILE_FORMAT);
    assert_eq!(file["fetched_at"], "2025-06-20T08:00:00Z");
    assert_eq!(file["collateral"], collateral());
    // After a restart the copy is as old as it was: not due a minute before a day has passed,
    // due at a day, as if the daemon had kept running.
    let reopened = CollateralCache::new(Some(&dir));
    assert_eq!(reopened.get(FMSPC).unwrap().fetched_at, Some(fetched));
    assert!(!reopened.needs_refresh(FMSPC, at("2025-06-21T07:59:00Z"), DAY));
    let reopened = CollateralCache::new(Some(&dir));
    assert!(reopened.needs_refresh(FMSPC, at("2025-06-21T08:00:00Z"), DAY));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_legacy_file_without_a_fetch_time_loads_and_is_refreshed() {
    let dir = temp_dir("legacy");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("collateral-{FMSPC}.json"));
    // The layout before the fetch time was recorded: the bare QuoteCollateralV3.
    std::fs::write(&path, collateral().to_string()).unwrap();
    let cache = CollateralCache::new(Some(&dir));
    let cached = cache.get(FMSPC).unwrap();
    assert_eq!(cached.collateral, collateral());
    assert_eq!(cached.expires_at, at(NEXT));
    assert_eq!(cached.fetched_at, None);
    // A month from nextUpdate, yet of unknown age: refreshed, under the hourly limit.
    let now = at("2025-06-20T00:00:00Z");
    assert!(cache.needs_refresh(FMSPC, now, WEEK));
    assert!(!cache.needs_refresh(FMSPC, now + Duration::minutes(30), WEEK));
    // Once refreshed the file has the new layout and the copy is no longer due.
    let fetched = now + Duration::minutes(31);
    cache.put(FMSPC, collateral(), fetched).unwrap();
    let reopened = CollateralCache::new(Some(&dir));
    assert_eq!(reopened.get(FMSPC).unwrap().fetched_at, Some(fetched));
    assert!(!reopened.needs_refresh(FMSPC, fetched + Duration::hours(2), DAY));
    // A file of the new format whose fetch time cannot be read counts as old too.
    let broken =
        json!({"format": FILE_FORMAT, "fetched_at": "yesterday", "collateral": collateral()});
    std::fs::write(&path, broken.to_string()).unwrap();
    let reopened = CollateralCache::new(Some(&dir));
    assert_eq!(reopened.get(FMSPC).unwrap().fetched_at, None);
    assert!(reopened.needs_refresh(FMSPC, now, WEEK));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_copy_older_than_the_refresh_period_is_refreshed_however_far_its_next_update() {
    // Fetched a month before nextUpdate.
    let cache = warm_at("2025-06-20T00:00:00Z");
    let fetched = at("2025-06-20T00:00:00Z");
    // Not before a day has passed, however often asked.
    for minutes in [0, 1, 60, 12 * 60, 24 * 60 - 1] {
        let now = fetched + Duration::minutes(minutes);
        assert!(!cache.needs_refresh(FMSPC, now, DAY), "{minutes} min");
    }
    // A day old, with 28 days left: refreshed.
    assert!(cache.needs_refresh(FMSPC, fetched + Duration::hours(24), DAY));
    // The same age under a week's period is not due.
    let cache = warm_at("2025-06-20T00:00:00Z");
    assert!(!cache.needs_refresh(FMSPC, fetched + Duration::hours(24), WEEK));
    assert!(cache.needs_refresh(FMSPC, fetched + Duration::days(7), WEEK));
    // A successful refresh restarts the period: the refetched copy is due a day after it.
    let cache = warm_at("2025-06-20T00:00:00Z");
    let refetched = fetched + Duration::hours(25);
    assert!(cache.needs_refresh(FMSPC, refetched, DAY));
    cache.put(FMSPC, collateral(), refetched).unwrap();
    assert!(!cache.needs_refresh(FMSPC, refetched + Duration::hours(2), DAY));
    assert!(!cache.needs_refresh(FMSPC, refetched + Duration::hours(23), DAY));
    assert!(cache.needs_refresh(FMSPC, refetched + Duration::hours(24), DAY));
    // A fetch time well ahead of the clock (the clock was set back) does not hold refreshes off.
    let ahead = warm_at("2025-06-22T00:00:00Z");
    assert!(ahead.needs_refresh(FMSPC, fetched, DAY));
    // A little ahead is no reason to refetch.
    let ahead = warm_at("2025-06-20T00:05:00Z");
    assert!(!ahead.needs_refresh(FMSPC, fetched, DAY));
}

#[test]
fn a_due_refresh_of_a_valid_copy_is_tried_at_most_once_an_hour() {
    // Due by age: the PCCS fails (nothing is put), so the copy stays due.
    let cache = warm_at("2025-06-20T00:00:00Z");
    let first = at("2025-06-21T00:00:00Z");
    assert!(cache.needs_refresh(FMSPC, first, DAY));
    for minutes in [0, 1, 30, 59] {
        let now = first + Duration::minutes(minutes);
        assert!(!cache.needs_refresh(FMSPC, now, DAY), "{minutes} min");
    }
    // A clock set back a little does not count as a new hour either.
    assert!(!cache.needs_refresh(FMSPC, first - Duration::minutes(5), DAY));
    let second = first + Duration::minutes(60);
    assert!(cache.needs_refresh(FMSPC, second, DAY));
    assert!(!cache.needs_refresh(FMSPC, second + Duration::minutes(30), DAY));
    assert!(cache.needs_refresh(FMSPC, second + Duration::minutes(61), DAY));

    // Due by nearness to nextUpdate, the copy freshly fetched: the PCCS serves the same
    // collateral, so the copy stays due, but is not asked for again within the hour.
    let near = at("2025-07-15T00:00:00Z");
    let cache = warm_at("2025-07-15T00:00:00Z");
    assert!(cache.needs_refresh(FMSPC, near, DAY));
    cache.put(FMSPC, collateral(), near).unwrap();
    for minutes in [0, 1, 30, 59] {
        let now = near + Duration::minutes(minutes);
        assert!(!cache.needs_refresh(FMSPC, now, DAY), "{minutes} min");
    }
    let second = near + Duration::minutes(60);
    assert!(cache.needs_refresh(FMSPC, second, DAY));
    // The limit is per FMSPC: another platform becoming due is refreshed at once.
    cache
        .put(
            "00906ed50000",
            with_tcb_next_update("2025-07-18T10:16:03Z"),
            second,
        )
        .unwrap();
    assert!(cache.needs_refresh("00906ed50000", second + Duration::minutes(2), DAY));
    assert!(!cache.needs_refresh("00906ed50000", second + Duration::minutes(3), DAY));
}

#[test]
fn refreshes_within_eight_days_of_next_update_and_not_before() {
    // Fetched just now each time, so only nearness to nextUpdate (10:00:35) can make it due.
    let just_over = "2025-07-11T10:00:00Z";
    let cache = warm_at(just_over);
    for _ in 0..3 {
        assert!(!cache.needs_refresh(FMSPC, at(just_over), DAY));
    }
    // Exactly 8 days left, or less: refreshed.
    let exactly = "2025-07-11T10:00:35Z";
    assert!(warm_at(exactly).needs_refresh("B0C06F000000", at(exactly), DAY));
    let later = "2025-07-12T10:00:35Z";
    assert!(warm_at(later).needs_refresh(FMSPC, at(later), DAY));
    let last_second = "2025-07-19T10:00:34Z";
    assert!(warm_at(last_second).needs_refresh(FMSPC, at(last_second), DAY));
}

#[test]
fn a_missing_or_expired_copy_is_always_refetched() {
    let cache = CollateralCache::new(None);
    let now = at(NEXT);
    for _ in 0..3 {
        assert!(cache.needs_refresh(FMSPC, now, WEEK));
    }
    cache
        .put(FMSPC, collateral(), now - Duration::hours(1))
        .unwrap();
    // Expired (at or past nextUpdate): every check refetches, the hourly limit aside.
    for seconds in [0, 1, 2, 60, 3600] {
        let later = now + Duration::seconds(seconds);
        assert!(cache.needs_refresh(FMSPC, later, WEEK), "{seconds} s");
        assert!(cache.needs_refresh(FMSPC, later, WEEK), "{seconds} s");
    }
    // Even right after a refresh of the still-valid copy was tried.
    let cache = warm_at("2025-07-19T09:00:00Z");
    assert!(cache.needs_refresh(FMSPC, now - Duration::seconds(1), WEEK));
    assert!(cache.needs_refresh(FMSPC, now, WEEK));
    assert!(cache.needs_refresh(FMSPC, now, WEEK));
}

#[test]
fn a_failed_refresh_never_replaces_nor_deletes_the_good_copy() {
    let dir = temp_dir("failed");
    let good_at = at("2025-06-20T00:00:00Z");
    let cache = CollateralCache::new(Some(&dir));
    cache.put(FMSPC, collateral(), good_at).unwrap();
    let good = cache.get(FMSPC).unwrap();
    let now = good_at + Duration::hours(25);
    assert!(cache.needs_refresh(FMSPC, now, DAY));

    // An answer that is not collateral, and one whose PCK CRL cannot be read: the verifier
    // could judge no quote by either.
    let undated = json!({"tcb_info": "{}", "pck_crl": "not hex"});
    assert!(matches!(
        cache.put(FMSPC, undated, now),
        Err(PutError::Unreadable { .. })
    ));
    let mut unreadable = collateral();
    unreadable["pck_crl"] = Value::String("00".into());
    let refused = cache.put(FMSPC, unreadable, now).unwrap_err();
    assert!(
        refused.to_string().starts_with(
            "expected collateral for fmspc b0c06f000000 whose validity can be read, found pck crl is not a der crl"
        ),
        "{refused}"
    );
    // An answer that expired before it was fetched, while the cached copy lasts longer: a
    // stale PCCS must not cut the good copy short.
    let stale = with_tcb_next_update("2025-06-01T00:00:00Z");
    let refused = cache.put(FMSPC, stale, now).unwrap_err();
    assert!(matches!(refused, PutError::Expired { .. }), "{refused}");
    assert!(
        refused
            .to_string()
            .starts_with("expected collateral for fmspc b0c06f000000 valid at 2025-06-21 01:00:00 UTC, found it expired at 2025-06-01 00:00:00 UTC (tcb info first)"),
        "{refused}"
    );
    // A name that is not an FMSPC.
    assert!(matches!(
        cache.put("b0c06f00000g", collateral(), now),
        Err(PutError::Fmspc(_))
    ));
    assert_eq!(cache.get(FMSPC), Some(good.clone()));
    let reopened = CollateralCache::new(Some(&dir));
    assert_eq!(reopened.get(FMSPC), Some(good.clone()));

    // A refresh whose disk write fails: the previous file is left whole (the new copy serves
    // from memory until the restart).
    let blocker = dir.join(format!("collateral-{FMSPC}.json.tmp"));
    std::fs::create_dir_all(blocker.join("in-the-way")).unwrap();
    let refreshed = with_tcb_next_update("2025-07-18T00:00:00Z");
    let write = cache.put(FMSPC, refreshed.clone(), now).unwrap_err();
    assert!(matches!(write, PutError::Write { .. }), "{write}");
    assert_eq!(cache.get(FMSPC).unwrap().collateral, refreshed);
    assert_eq!(
        CollateralCache::new(Some(&dir)).get(FMSPC),
        Some(good.clone())
    );

    // With nothing cached an expired answer is kept: the verifier then says the collateral
    // expired (unknown), which says more than no collateral at all.
    let empty = CollateralCache::new(None);
    empty
        .put(FMSPC, with_tcb_next_update("2025-06-01T00:00:00Z"), now)
        .unwrap();
    assert_eq!(
        empty.get(FMSPC).unwrap().expires_at,
        at("2025-06-01T00:00:00Z")
    );
    let _ = std::fs::remove_dir_all(&dir);
}
