//! Retrying a fetch: which failures are worth another attempt (429, 503, no connection, a
//! timeout), a jittered backoff that never undercuts the server's `Retry-After`, and a budget
//! after which the last error is returned rather than slept on.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};

use super::fetch_error::FetchError;

/// A `Retry-After` value as a wait from `now`: delta-seconds, or an HTTP-date (IMF-fixdate,
/// RFC 850 or asctime form; a date in the past is no wait). `None` when unreadable.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return value.parse::<u64>().ok().map(Duration::from_secs);
    }
    let at = DateTime::parse_from_rfc2822(value)
        .map(|d| d.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            ["%A, %d-%b-%y %H:%M:%S GMT", "%a %b %e %H:%M:%S %Y"]
                .iter()
                .find_map(|format| NaiveDateTime::parse_from_str(value, format).ok())
                .map(|naive| naive.and_utc())
        })?;
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

/// Backoff before retry number `attempt + 1`, before jitter: 250 ms doubling, at most 5 s.
fn backoff(attempt: u32) -> Duration {
    const BASE_MS: u64 = 250;
    const CAP: Duration = Duration::from_secs(5);
    Duration::from_millis(BASE_MS.saturating_mul(1u64 << attempt.min(16))).min(CAP)
}

/// The wait before the next attempt: the jittered backoff, but never earlier than the server's
/// `Retry-After`.
fn retry_delay(attempt: u32, retry_after: Option<Duration>, jitter: f64) -> Duration {
    let delay = backoff(attempt).mul_f64(jitter);
    retry_after.map_or(delay, |after| after.max(delay))
}

/// Runs `op` until it succeeds, fails in a way not worth retrying (anything but 429, 503,
/// `connect` and `timeout`), or `budget` runs out. Waits between attempts back off from 250 ms,
/// doubling up to 5 s, with ±20 % jitter, and are never shorter than the server's
/// `Retry-After`. When the next wait would not end within the remaining budget (a
/// `Retry-After` longer than what is left, say), it returns the last error at once instead of
/// sleeping for nothing.
pub async fn with_retries<T, F, Fut>(budget: Duration, mut op: F) -> Result<T, FetchError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, FetchError>>,
{
    let start = tokio::time::Instant::now();
    let mut attempt: u32 = 0;
    loop {
        let error = match op().await {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        if !error.is_retryable() {
            return Err(error);
        }
        let jitter = {
            use rand::Rng;
            rand::thread_rng().gen_range(0.8..=1.2)
        };
        let delay = retry_delay(attempt, error.retry_after, jitter);
        let remaining = budget.saturating_sub(start.elapsed());
        if delay >= remaining {
            return Err(error);
        }
        tokio::time::sleep(delay).await;
        attempt = attempt.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_250_ms_up_to_5_s() {
        let schedule: Vec<u128> = (0..8).map(|a| backoff(a).as_millis()).collect();
        assert_eq!(schedule, [250, 500, 1000, 2000, 4000, 5000, 5000, 5000]);
        assert_eq!(backoff(u32::MAX), Duration::from_secs(5));
    }

    #[test]
    fn retry_after_is_a_floor_under_the_jittered_backoff() {
        assert_eq!(retry_delay(0, None, 0.8), Duration::from_millis(200));
        assert_eq!(retry_delay(2, None, 1.2), Duration::from_millis(1200));
        let after = Some(Duration::from_secs(1));
        assert_eq!(retry_delay(0, after, 1.2), Duration::from_secs(1));
        assert_eq!(retry_delay(4, after, 1.0), Duration::from_secs(4));
    }
}
