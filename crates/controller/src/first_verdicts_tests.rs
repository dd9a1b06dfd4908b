use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kube_endpoints_probe::{Health, HealthState};

use super::*;

fn at(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_000_000) + Duration::from_millis(ms)
}

fn health(state: HealthState, since_ms: u64) -> Health {
    Health {
        state,
        since: at(since_ms),
        message: String::new(),
    }
}

/// A target still waiting for its first verdict, probed since `since_ms`.
fn pending_since(since_ms: u64) -> Health {
    health(HealthState::Pending, since_ms)
}

const SECOND: Duration = Duration::from_secs(1);

#[test]
fn a_new_object_waits_for_its_first_verdicts_at_most_one_timeout() {
    let pending = pending_since(0);
    let ready = health(HealthState::Ready, 40);
    // Just started: the whole timeout is left.
    assert_eq!(hold(false, [(&pending, SECOND)], at(0)), Some(SECOND));
    // Some verdicts in, one still pending: until its window closes.
    assert_eq!(
        hold(false, [(&ready, SECOND), (&pending, SECOND)], at(300)),
        Some(Duration::from_millis(700))
    );
    // The window closed: write now, the pending host as not ready.
    assert_eq!(hold(false, [(&pending, SECOND)], at(1000)), None);
    assert_eq!(hold(false, [(&pending, SECOND)], at(5000)), None);
}

#[test]
fn every_verdict_in_means_write_now() {
    let ready = health(HealthState::Ready, 10);
    let not_ready = health(HealthState::NotReady, 20);
    assert_eq!(
        hold(false, [(&ready, SECOND), (&not_ready, SECOND)], at(30)),
        None
    );
    // No probed target at all (static ports, or every host denied).
    assert_eq!(hold(false, [], at(0)), None);
}

#[test]
fn an_object_that_lists_anything_is_written_at_once() {
    // Seeded targets are never pending; and a host added to an object that
    // already lists others must not hold back their changes.
    let pending = pending_since(0);
    assert_eq!(hold(true, [(&pending, SECOND)], at(0)), None);
}

#[test]
fn the_longest_open_window_decides_and_no_wait_exceeds_its_timeout() {
    let early = pending_since(0);
    let late = pending_since(500);
    assert_eq!(
        hold(false, [(&early, SECOND), (&late, SECOND)], at(600)),
        Some(Duration::from_millis(900))
    );
    // Per-port timeouts: the 3 s port's window is still open.
    assert_eq!(
        hold(false, [(&early, SECOND), (&early, 3 * SECOND)], at(1500)),
        Some(Duration::from_millis(1500))
    );
    // A target that claims to have started in the future (the clock
    // stepped back) waits one timeout at most.
    let future = pending_since(60_000);
    assert_eq!(hold(false, [(&future, SECOND)], at(0)), Some(SECOND));
}

#[test]
fn a_wait_too_short_to_requeue_is_none() {
    let pending = pending_since(0);
    assert_eq!(hold(false, [(&pending, SECOND)], at(995)), None);
    assert_eq!(
        hold(false, [(&pending, SECOND)], at(985)),
        Some(Duration::from_millis(15))
    );
}
