//! Locking shared daemon state without letting one panicking task take the daemon down.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks a mutex, taking the data even if a panicking thread poisoned it. Callers guard state
/// that is updated in single steps (the planner, drift histories, status rows, metric label
/// bookkeeping), so it stays consistent through a panic elsewhere.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
