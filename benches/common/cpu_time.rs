//! A criterion measurement of the process's CPU time instead of wall-clock time.
//!
//! The benchmark machine is two shared cores that other builds keep busy: wall-clock time there
//! counts the time the bench waited for a core, which swung the same verification by a factor of
//! two within one run. CPU time counts only the work done, by every thread of the process (the
//! verifier runs on the calling thread; the process clock also covers any helper thread). Values
//! are nanoseconds, shown with criterion's usual duration units.

use criterion::measurement::{Measurement, ValueFormatter, WallTime};

/// The process's CPU time (`CLOCK_PROCESS_CPUTIME_ID`), in nanoseconds.
pub struct CpuTime;

fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec and the clock id is a constant Linux knows.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_PROCESS_CPUTIME_ID) failed");
    // A CPU clock is never negative.
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    secs * 1_000_000_000 + nanos
}

impl Measurement for CpuTime {
    type Intermediate = u64;
    type Value = u64;

    fn start(&self) -> u64 {
        now_ns()
    }

    fn end(&self, started: u64) -> u64 {
        now_ns().saturating_sub(started)
    }

    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }

    fn zero(&self) -> u64 {
        0
    }

    #[allow(clippy::cast_precision_loss)]
    fn to_f64(&self, value: &u64) -> f64 {
        *value as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        // Nanoseconds, like wall time: criterion's duration formatter fits both.
        static WALL: WallTime = WallTime;
        WALL.formatter()
    }
}
