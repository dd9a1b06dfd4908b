use std::time::{Duration, Instant};

use kube_endpoints_probe::HealthState::{NotReady, Pending, Ready};

use super::*;
use crate::testing::target;

const WINDOW: Duration = Duration::from_secs(10);

fn guard(percent: u8, min_targets: usize) -> Guard<&'static str> {
    Guard::new(FleetGuardSettings {
        percent,
        min_targets,
        window: WINDOW,
    })
}

fn host(i: usize) -> TargetId {
    target("web", &format!("198.18.9.{i}"))
}

/// `n` targets of `owner` (hosts 1..=n) fail at `at`; the last change.
fn fail(
    g: &mut Guard<&'static str>,
    owner: &'static str,
    n: usize,
    at: Instant,
    total: usize,
) -> Change {
    let mut last = Change::None;
    for i in 1..=n {
        let change = g.observe(owner, host(i), Ready, NotReady, at, total);
        if change != Change::None {
            last = change;
        }
    }
    last
}

#[test]
fn trips_when_more_than_the_share_fails_within_the_window() {
    let t0 = Instant::now();
    let mut g = guard(50, 10);
    // 5 of 10 is not more than half.
    assert_eq!(fail(&mut g, "a", 5, t0, 10), Change::None);
    assert!(!g.is_frozen());
    assert_eq!(
        g.observe(
            "a",
            host(6),
            Ready,
            NotReady,
            t0 + Duration::from_secs(1),
            10
        ),
        Change::Tripped
    );
    assert!(g.is_frozen());
    assert_eq!(g.held(&"a").len(), 6, "the failures of the window are held");
    assert!(g.held(&"b").is_empty());
}

#[test]
fn failures_spread_over_more_than_the_window_do_not_trip() {
    let t0 = Instant::now();
    let mut g = guard(50, 10);
    fail(&mut g, "a", 5, t0, 10);
    let later = t0 + WINDOW + Duration::from_secs(1);
    assert_eq!(
        g.observe("a", host(6), Ready, NotReady, later, 10),
        Change::None
    );
    assert_eq!(
        g.failing_count(),
        1,
        "the old failures were applied and left the count"
    );
}

#[test]
fn only_ready_to_failing_counts() {
    let t0 = Instant::now();
    let mut g = guard(50, 2);
    // New targets whose first verdict is a failure are not a flip.
    for i in 1..=4 {
        assert_eq!(
            g.observe("a", host(i), Pending, NotReady, t0, 4),
            Change::None
        );
    }
    assert_eq!(g.failing_count(), 0);
}

#[test]
fn a_small_controller_never_trips() {
    for total in [1, 5, 9] {
        let mut g = guard(50, 10);
        let failed = fail(&mut g, "a", total, Instant::now(), total);
        assert_eq!((failed, g.is_frozen()), (Change::None, false), "{total}");
    }
}

#[test]
fn percent_zero_switches_it_off() {
    let t0 = Instant::now();
    let mut g = guard(0, 1);
    assert_eq!(fail(&mut g, "a", 10, t0, 10), Change::None);
    assert!(g.held(&"a").is_empty());
}

#[test]
fn holds_further_failures_while_frozen_and_thaws_as_targets_recover() {
    let t0 = Instant::now();
    let mut g = guard(50, 4);
    assert_eq!(fail(&mut g, "a", 3, t0, 4), Change::Tripped);
    // Frozen: a failure long after the window is still held.
    let late = t0 + 10 * WINDOW;
    assert_eq!(
        g.observe("b", host(1), Ready, NotReady, late, 5),
        Change::None
    );
    assert_eq!(g.held(&"b").len(), 1);
    assert_eq!(g.held(&"a").len(), 3);
    // 4 of 5 failing; recoveries down to 3 of 5 (60 %) keep it frozen...
    assert_eq!(
        g.observe("a", host(1), NotReady, Ready, late, 5),
        Change::None
    );
    assert!(g.is_frozen());
    assert!(
        !g.held(&"a").contains(&host(1)),
        "a recovered host is not held"
    );
    // ... and at 2 of 5 (40 %) it thaws and holds nothing.
    assert_eq!(
        g.observe("a", host(2), NotReady, Ready, late, 5),
        Change::Thawed
    );
    assert!(!g.is_frozen());
    assert!(g.held(&"a").is_empty());
    assert!(g.held(&"b").is_empty());
    assert_eq!(g.failing_count(), 0, "a thaw starts counting afresh");
}

#[test]
fn forgetting_an_object_can_thaw() {
    let t0 = Instant::now();
    let mut g = guard(50, 2);
    assert_eq!(fail(&mut g, "a", 2, t0, 3), Change::Tripped);
    assert_eq!(g.forget(&"a", t0, 1), Change::Thawed);
    assert!(g.held(&"a").is_empty());
}

#[test]
fn the_shared_guard_announces_trips_and_thaws() {
    let shared = FleetGuard::<&'static str>::new(FleetGuardSettings {
        percent: 50,
        min_targets: 2,
        window: WINDOW,
    });
    let mut changes = shared.subscribe();
    assert!(!changes.has_changed().expect("open"));
    let (change, failing) = shared.observe("a", host(1), Ready, NotReady, 2);
    assert_eq!((change, failing), (Change::None, 1));
    assert!(!changes.has_changed().expect("open"));
    let (change, _) = shared.observe("a", host(2), Ready, NotReady, 2);
    assert_eq!(change, Change::Tripped);
    assert!(shared.is_frozen());
    assert!(changes.has_changed().expect("open"));
    changes.mark_unchanged();
    assert_eq!(shared.forget(&"a", 0), Change::Thawed);
    assert!(changes.has_changed().expect("open"));
}
