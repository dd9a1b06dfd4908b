//! Per-object retry delays: a failing write is retried after a delay that
//! doubles with each failure in a row, up to a cap, so that an object whose
//! writes keep failing (too large, refused...) does not hammer the API
//! every few seconds.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;

/// The first retry.
pub const FIRST_RETRY: Duration = Duration::from_secs(5);
/// The longest wait between retries.
pub const MAX_RETRY: Duration = Duration::from_secs(300);

/// The delay before retry number `failures` (0 for the first failure).
pub fn retry_delay(failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.min(16));
    FIRST_RETRY.saturating_mul(factor).min(MAX_RETRY)
}

/// Failures in a row, per key.
#[derive(Debug)]
pub struct Backoff<K> {
    failures: Mutex<HashMap<K, u32>>,
}

impl<K> Default for Backoff<K> {
    fn default() -> Self {
        Backoff {
            failures: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash + Clone> Backoff<K> {
    /// One more failure of `key`: how long to wait before retrying.
    pub fn failed(&self, key: &K) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = failures.entry(key.clone()).or_insert(0);
        let delay = retry_delay(*n);
        *n = n.saturating_add(1);
        delay
    }

    /// `key` succeeded (or is gone): start from the first delay again.
    pub fn reset(&self, key: &K) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

#[cfg(test)]
#[path = "backoff_tests.rs"]
mod tests;
