//! Coalescing of reconcile requests with a maximum delay.
//!
//! Transitions of one object's hosts, and changes to the objects it owns,
//! arrive in bursts; each burst should cost one reconcile. A plain debounce
//! (wait until the requests pause) starves an object whose requests never
//! pause: a large object with steady transitions would never be reconciled.
//! Here a request is released `debounce` after the last request for its
//! key, but never later than `max_delay` after the first one.
//!
//! [`Coalescer`] is the pure decision; [`coalesce`] runs it on a channel.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

use futures::Stream;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Pending requests and when each is due.
#[derive(Debug)]
pub struct Coalescer<K> {
    debounce: Duration,
    max_delay: Duration,
    /// Per key: (first request, due).
    pending: HashMap<K, (Instant, Instant)>,
}

impl<K: Clone + Eq + Hash> Coalescer<K> {
    pub fn new(debounce: Duration, max_delay: Duration) -> Self {
        Coalescer {
            debounce,
            max_delay: max_delay.max(debounce),
            pending: HashMap::new(),
        }
    }

    /// A request for `key` at `now`.
    pub fn request(&mut self, key: K, now: Instant) {
        let (debounce, max_delay) = (self.debounce, self.max_delay);
        let entry = self.pending.entry(key).or_insert((now, now));
        let deadline = entry.0 + max_delay;
        entry.1 = (now + debounce).min(deadline);
    }

    /// The keys due at `now`, removed from the pending set.
    pub fn take_due(&mut self, now: Instant) -> Vec<K> {
        let due: Vec<K> = self
            .pending
            .iter()
            .filter(|(_, (_, at))| *at <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &due {
            self.pending.remove(k);
        }
        due
    }

    /// When the next key is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.pending.values().map(|(_, at)| *at).min()
    }
}

/// The requests received on `requests`, coalesced; ends when `requests`
/// closes (pending requests are dropped then: nobody reconciles any more).
pub fn coalesce<K>(
    mut requests: mpsc::UnboundedReceiver<K>,
    debounce: Duration,
    max_delay: Duration,
) -> impl Stream<Item = K> + Send
where
    K: Clone + Eq + Hash + Send + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut coalescer = Coalescer::new(debounce, max_delay);
        loop {
            let next = coalescer.next_due();
            tokio::select! {
                request = requests.recv() => match request {
                    Some(key) => coalescer.request(key, Instant::now()),
                    None => return,
                },
                () = sleep_until(next) => {
                    for key in coalescer.take_due(Instant::now()) {
                        if tx.send(key).is_err() {
                            return;
                        }
                    }
                }
            }
        }
    });
    futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
#[path = "coalesce_tests.rs"]
mod tests;
