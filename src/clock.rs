//! The daemon's notion of "now": the system clock, or the system clock moved by an offset a test
//! can change while the daemon runs.
//!
//! Every place the daemon reads the wall clock for a check (the bundle's `observed_at`, the
//! collateral cache's refresh decision, the record's `finished_at`), for scheduling (the
//! planner's slots) and for retention reads it through a [`Clock`], so a test can jump the
//! clock forward past collateral, NRAS and certificate validity, or backward, and watch what the
//! daemon does. Production uses [`Clock::system`], whose offset is always zero. Monotonic
//! timers (tokio's sleeps and deadlines) are not moved: a jump of the wall clock does not
//! shorten or stretch a running check.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, TimeDelta, Utc};

/// A wall clock: the system's, plus an offset in milliseconds shared by every clone.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    /// `None` for the system clock: nothing can move it.
    offset_ms: Option<Arc<AtomicI64>>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock { offset_ms: None }
    }

    /// The system clock with an offset (zero at first) that [`Clock::jump`] moves, for tests.
    pub fn adjustable() -> Clock {
        Clock {
            offset_ms: Some(Arc::new(AtomicI64::new(0))),
        }
    }

    /// Now, as this clock reads it. An offset that would leave chrono's range reads as the
    /// system time.
    pub fn now(&self) -> DateTime<Utc> {
        let now = Utc::now();
        match &self.offset_ms {
            None => now,
            Some(offset) => {
                let by = TimeDelta::milliseconds(offset.load(Ordering::SeqCst));
                now.checked_add_signed(by).unwrap_or(now)
            }
        }
    }

    /// Moves an adjustable clock by `by` (negative: backward), for every clone; false, and no
    /// change, for the system clock.
    pub fn jump(&self, by: TimeDelta) -> bool {
        match &self.offset_ms {
            None => false,
            Some(offset) => {
                offset.fetch_add(by.num_milliseconds(), Ordering::SeqCst);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_clock_cannot_move_and_an_adjustable_one_moves_every_clone() {
        let system = Clock::system();
        assert!(!system.jump(TimeDelta::days(1)));
        assert!((system.now() - Utc::now()).num_seconds().abs() < 60);
        let clock = Clock::adjustable();
        let clone = clock.clone();
        assert!(clock.jump(TimeDelta::days(40)));
        let ahead = (clone.now() - Utc::now()).num_days();
        assert!((39..=40).contains(&ahead), "{ahead} days ahead");
        assert!(clone.jump(TimeDelta::days(-80)));
        assert!((clock.now() - Utc::now()).num_days() <= -39);
    }
}
