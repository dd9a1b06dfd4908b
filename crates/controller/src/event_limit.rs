//! Events are rate-limited per object: a host that flaps every second, or a
//! status write that keeps failing, must not turn into an Event stream that
//! loads etcd for everyone. A token bucket per ClusterEndpoint ([`Bucket`],
//! pure: the caller passes the time); Events over the limit are dropped and
//! counted (`kube_endpoints_events_suppressed_total`). The status still
//! says everything: Events are the news, not the record.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Events one object may raise at once.
pub const BURST: u32 = 25;
/// One more Event allowed per this much time.
pub const REFILL: Duration = Duration::from_secs(10);

/// A token bucket: `burst` tokens, one more every `refill`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bucket {
    tokens: u32,
    burst: u32,
    refill: Duration,
    /// When the next token is added (while not full).
    next: Instant,
}

impl Bucket {
    pub fn new(burst: u32, refill: Duration, now: Instant) -> Self {
        Bucket {
            tokens: burst,
            burst,
            refill,
            next: now + refill,
        }
    }

    /// Take a token if there is one at `now`.
    pub fn take(&mut self, now: Instant) -> bool {
        // At most `burst` iterations: it stops once the bucket is full.
        while self.tokens < self.burst && now >= self.next {
            self.tokens += 1;
            self.next += self.refill;
        }
        if self.tokens == 0 {
            return false;
        }
        if self.tokens == self.burst {
            // A full bucket banks no time: the refill clock starts now.
            self.next = now + self.refill;
        }
        self.tokens -= 1;
        true
    }
}

/// A bucket per object.
pub struct EventLimiter<K> {
    buckets: Mutex<HashMap<K, Bucket>>,
    burst: u32,
    refill: Duration,
}

impl<K: Eq + Hash + Clone> EventLimiter<K> {
    pub fn new(burst: u32, refill: Duration) -> Self {
        EventLimiter {
            buckets: Mutex::new(HashMap::new()),
            burst,
            refill,
        }
    }

    /// Whether `key` may raise an Event now.
    pub fn allow(&self, key: &K) -> bool {
        let now = Instant::now();
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        buckets
            .entry(key.clone())
            .or_insert_with(|| Bucket::new(self.burst, self.refill, now))
            .take(now)
    }

    /// Drop the bucket of an object that is gone.
    pub fn forget(&self, key: &K) {
        self.buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_one_per_refill_and_no_banking_while_full() {
        let t0 = Instant::now();
        let mut b = Bucket::new(3, Duration::from_secs(10), t0);
        assert!((0..3).all(|_| b.take(t0)));
        assert!(!b.take(t0), "the burst is spent");
        assert!(!b.take(t0 + Duration::from_secs(9)));
        assert!(b.take(t0 + Duration::from_secs(10)), "one token per refill");
        assert!(!b.take(t0 + Duration::from_secs(11)));
        // A long quiet time fills the bucket to the burst, not beyond.
        let later = t0 + Duration::from_secs(1000);
        assert!((0..3).all(|_| b.take(later)));
        assert!(!b.take(later));
        // Idle while full: the refill clock starts at the first take.
        let mut full = Bucket::new(1, Duration::from_secs(10), t0);
        let t = t0 + Duration::from_secs(500);
        assert!(full.take(t));
        assert!(!full.take(t + Duration::from_secs(9)));
        assert!(full.take(t + Duration::from_secs(10)));
    }

    #[test]
    fn objects_have_their_own_buckets() {
        let limiter = EventLimiter::new(2, Duration::from_secs(3600));
        assert!(limiter.allow(&"a") && limiter.allow(&"a"));
        assert!(!limiter.allow(&"a"));
        assert!(limiter.allow(&"b"), "another object is not affected");
        limiter.forget(&"a");
        assert!(limiter.allow(&"a"), "a forgotten object starts afresh");
    }
}
