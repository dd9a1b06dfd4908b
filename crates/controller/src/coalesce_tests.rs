use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::*;

const DEBOUNCE: Duration = Duration::from_millis(200);
const MAX: Duration = Duration::from_secs(1);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A coalescer with the test's debounce and maximum delay, and the instant
/// the test starts at.
fn fresh() -> (Instant, Coalescer<&'static str>) {
    (Instant::now(), Coalescer::new(DEBOUNCE, MAX))
}

#[test]
fn a_burst_is_one_request_after_the_debounce() {
    let (t0, mut c) = fresh();
    c.request("a", t0);
    c.request("a", t0 + ms(50));
    assert_eq!(c.next_due(), Some(t0 + ms(250)));
    assert!(c.take_due(t0 + ms(249)).is_empty());
    assert_eq!(c.take_due(t0 + ms(250)), ["a"]);
    assert_eq!(c.next_due(), None);
}

#[test]
fn steady_requests_cannot_postpone_past_the_maximum_delay() {
    let (t0, mut c) = fresh();
    let mut released = Vec::new();
    // A request every 100 ms for 5 s: a plain debounce never fires.
    for i in 0..50 {
        let now = t0 + ms(100 * i);
        released.extend(c.take_due(now).into_iter().map(|k| (k, now)));
        c.request("a", now);
    }
    let times: Vec<u64> = released
        .iter()
        .map(|(_, at)| u64::try_from(at.duration_since(t0).as_millis()).expect("ms"))
        .collect();
    assert_eq!(times, [1000, 2000, 3000, 4000]);
}

#[test]
fn keys_are_independent() {
    let (t0, mut c) = fresh();
    c.request("a", t0);
    c.request("b", t0 + ms(100));
    let mut due = c.take_due(t0 + ms(200));
    due.sort();
    assert_eq!(due, ["a"]);
    assert_eq!(c.take_due(t0 + ms(300)), ["b"]);
}

#[tokio::test(start_paused = true)]
async fn the_stream_releases_each_key_once_per_window() {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut out = Box::pin(coalesce(rx, DEBOUNCE, MAX));
    let start = Instant::now();
    for _ in 0..30 {
        tx.send("a").expect("send");
        tokio::time::sleep(ms(100)).await;
    }
    // Requests every 100 ms for 3 s: released at the maximum delay each time.
    let first = out.next().await.expect("released");
    assert_eq!(first, "a");
    assert!(Instant::now().duration_since(start) >= ms(3000));
    tokio::time::sleep(MAX).await;
    drop(tx);
    let rest: Vec<&str> = out.collect().await;
    assert_eq!(rest.len(), 2, "three windows of 1 s in 3 s: {rest:?}");
}
