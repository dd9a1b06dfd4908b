//! Scheduler behaviour against real listeners on 127.0.0.1. Waiting is done
//! by polling a condition with a deadline or by receiving on a channel; the
//! only fixed waits are the short windows in which something must NOT
//! happen.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};

use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::*;
use crate::probe::{HttpGet, Scheme};
use crate::threshold::SEEDED_MESSAGE;

/// What one finished probe looked like to the observer.
#[derive(Clone, Debug)]
struct Probed {
    kind: ProbeKind,
    verdict: Verdict,
    lateness: Duration,
    at: std::time::Instant,
}

#[derive(Default)]
struct Recording {
    probes: Mutex<Vec<Probed>>,
}

impl Recording {
    fn count(&self) -> usize {
        self.probes.lock().expect("lock").len()
    }

    fn count_of(&self, kind: ProbeKind) -> usize {
        self.probes
            .lock()
            .expect("lock")
            .iter()
            .filter(|p| p.kind == kind)
            .count()
    }

    fn all(&self) -> Vec<Probed> {
        self.probes.lock().expect("lock").clone()
    }
}

impl Observer for Recording {
    fn probe_finished(
        &self,
        kind: ProbeKind,
        verdict: Verdict,
        _latency: Duration,
        lateness: Duration,
    ) {
        self.probes.lock().expect("lock").push(Probed {
            kind,
            verdict,
            lateness,
            at: std::time::Instant::now(),
        });
    }
}

type Rx = mpsc::UnboundedReceiver<Transition<String>>;

fn spec(port: u16, failure: u32) -> TargetSpec {
    TargetSpec {
        probe: Arc::new(Probe::tcp()),
        target_port: port,
        probe_port: None,
        period: Duration::from_millis(100),
        timeout: Duration::from_millis(200),
        thresholds: Thresholds {
            failure,
            success: 1,
        },
        initial_delay: Duration::ZERO,
        intervals: Intervals::default(),
    }
}

fn http_spec(port: u16, period: Duration, timeout: Duration) -> TargetSpec {
    TargetSpec {
        probe: Arc::new(Probe::Http(HttpGet {
            scheme: Scheme::Http,
            path: "/".into(),
            ..HttpGet::default()
        })),
        period,
        timeout,
        ..spec(port, 1)
    }
}

fn id(port: &str) -> TargetId {
    TargetId {
        port: port.into(),
        host: IpAddr::from([127, 0, 0, 1]),
    }
}

fn scheduler() -> (Scheduler<String>, Rx, Arc<Recording>) {
    let observer = Arc::new(Recording::default());
    let (s, rx) = Scheduler::new(Prober::new("test").expect("prober"), observer.clone());
    (s, rx, observer)
}

/// Workers each hold a reference to the observer; with only the test's and
/// the scheduler's left, every worker task has ended.
fn workers_alive(observer: &Arc<Recording>) -> usize {
    Arc::strong_count(observer) - 2
}

async fn next(rx: &mut Rx) -> Transition<String> {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("a transition within 5s")
        .expect("channel open")
}

/// The target of the next transition, and its new state.
async fn next_state(rx: &mut Rx) -> (TargetId, HealthState) {
    let t = next(rx).await;
    (t.target, t.to.state)
}

/// Poll until `f` is true or fail after 5 s.
async fn until(what: &str, f: impl Fn() -> bool) {
    let start = std::time::Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Nothing arrives on `rx` within `window`.
async fn quiet(rx: &mut Rx, window: Duration) {
    if let Ok(t) = tokio::time::timeout(window, rx.recv()).await {
        panic!("unexpected transition {t:?}");
    }
}

/// A port of 127.0.0.1 that nothing listens on (any more).
async fn closed_port() -> u16 {
    listener().await.1
}

/// A scheduler, and the name of the owner whose targets the test syncs.
fn scheduler_for(owner: &str) -> (Scheduler<String>, Rx, Arc<Recording>, String) {
    let (s, rx, observer) = scheduler();
    (s, rx, observer, owner.to_string())
}

/// A listening port (kept open while the listener lives) and
/// [`scheduler_for`] `owner`.
async fn listening_scheduler(
    owner: &str,
) -> (
    TcpListener,
    u16,
    Scheduler<String>,
    Rx,
    Arc<Recording>,
    String,
) {
    let (listener, port) = listener().await;
    let (s, rx, observer, owner) = scheduler_for(owner);
    (listener, port, s, rx, observer, owner)
}

/// A TCP target with a period of 600 s: after its first probe, any probe
/// within a test means its worker was restarted.
fn slow_spec(port: u16) -> TargetSpec {
    TargetSpec {
        period: Duration::from_secs(600),
        ..spec(port, 1)
    }
}

/// The one target `port` of 127.0.0.1, with `spec`.
fn only(port: &str, spec: TargetSpec) -> BTreeMap<TargetId, TargetSpec> {
    BTreeMap::from([(id(port), spec)])
}

async fn listener() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = l.local_addr().expect("addr").port();
    (l, port)
}

#[tokio::test]
async fn new_target_becomes_ready_then_not_ready_after_failures() {
    let (listener, port) = listener().await;
    let (s, mut rx, observer, owner) = scheduler_for("default/db");
    s.sync(&owner, only("pg", spec(port, 3)), |_| None);
    assert_eq!(s.health(&owner)[&id("pg")].state, HealthState::Pending);
    assert_eq!(s.target_count(), 1);

    let t = next(&mut rx).await;
    assert_eq!(
        (t.from, t.to.state),
        (HealthState::Pending, HealthState::Ready)
    );
    assert_eq!((t.owner.as_str(), &t.target), (owner.as_str(), &id("pg")));
    assert_eq!(
        s.health(&owner)[&id("pg")],
        t.to,
        "the snapshot matches what was sent"
    );

    drop(listener);
    let before = observer.count();
    // The next transition is the fall: nothing was sent in between.
    let t = next(&mut rx).await;
    assert_eq!(
        (t.from, t.to.state),
        (HealthState::Ready, HealthState::NotReady)
    );
    assert_eq!(
        t.to.message,
        format!("tcp connect 127.0.0.1:{port}: connection refused")
    );
    let failures = observer.all()[before..]
        .iter()
        .filter(|p| p.verdict == Verdict::Failure)
        .count();
    assert!(
        failures >= 3,
        "failureThreshold 3 needs three failed probes, saw {failures}"
    );
    assert_eq!(s.health(&owner)[&id("pg")], t.to);
    s.shutdown();
}

#[tokio::test]
async fn an_unreachable_new_target_is_reported_after_one_probe() {
    let port = closed_port().await;
    let (s, mut rx, _, owner) = scheduler_for("ns/gone");
    let start = std::time::Instant::now();
    s.sync(&owner, only("x", spec(port, 3)), |_| None);
    let t = next(&mut rx).await;
    assert_eq!(
        (t.from, t.to.state),
        (HealthState::Pending, HealthState::NotReady)
    );
    assert!(
        t.to.message.ends_with("connection refused"),
        "{}",
        t.to.message
    );
    // One period plus the timeout at most, though failureThreshold is 3.
    assert!(
        start.elapsed() < Duration::from_millis(300 + 500),
        "took {:?}",
        start.elapsed()
    );
    s.shutdown();
}

#[tokio::test]
async fn sync_with_the_same_spec_keeps_state_and_removal_drops_it() {
    let (_listener, port, s, mut rx, observer, owner) = listening_scheduler("ns/a").await;
    // A long period: after the first probes, any probe means a restart.
    let slow = slow_spec(port);
    let targets = BTreeMap::from([(id("x"), slow.clone()), (id("y"), slow.clone())]);
    s.sync(&owner, targets.clone(), |_| None);
    next(&mut rx).await;
    next(&mut rx).await;
    let before = s.health(&owner);
    assert!(before.values().all(|h| h.state == HealthState::Ready));
    assert_eq!(observer.count(), 2);
    s.sync(&owner, targets, |_| Some(false));
    assert_eq!(
        s.health(&owner),
        before,
        "unchanged targets keep their state"
    );
    quiet(&mut rx, Duration::from_millis(300)).await;
    assert_eq!(observer.count(), 2, "unchanged targets were not restarted");
    assert_eq!(workers_alive(&observer), 2);

    s.sync(&owner, only("y", slow), |_| None);
    assert_eq!(
        s.health(&owner).keys().cloned().collect::<Vec<_>>(),
        [id("y")]
    );
    assert_eq!(s.health(&owner)[&id("y")], before[&id("y")]);
    assert_eq!(s.target_count(), 1);
    until("the removed worker to end", || {
        workers_alive(&observer) == 1
    })
    .await;

    s.remove(&owner);
    assert!(s.health(&owner).is_empty());
    assert_eq!(s.target_count(), 0);
    until("every worker to end", || workers_alive(&observer) == 0).await;
}

#[tokio::test]
async fn a_changed_spec_keeps_the_verdict_and_restarts_the_worker() {
    let (_listener, port, s, mut rx, observer, owner) = listening_scheduler("ns/a").await;
    // A long period: any probe after the first is due to a restart.
    let slow = slow_spec(port);
    s.sync(&owner, only("x", slow.clone()), |_| None);
    let ready = next(&mut rx).await.to;
    assert_eq!(ready.state, HealthState::Ready);
    assert_eq!(observer.count(), 1);

    // The restarted worker's first probe comes within one (new) period.
    let changed = TargetSpec {
        thresholds: Thresholds {
            failure: 5,
            success: 2,
        },
        period: Duration::from_millis(300),
        ..slow
    };
    s.sync(&owner, only("x", changed), |_| None);
    assert_eq!(
        s.health(&owner)[&id("x")],
        ready,
        "state and since are kept"
    );
    until("the restarted worker's probe", || observer.count() >= 2).await;
    assert_eq!(s.health(&owner)[&id("x")], ready);
    assert_eq!(
        workers_alive(&observer),
        1,
        "the old worker was replaced, not kept"
    );
    // success=2 and only one success since the restart: still the same
    // Ready, and nothing to report.
    assert!(rx.try_recv().is_err());
    s.shutdown();
}

#[tokio::test]
async fn restarted_targets_are_spread_over_a_period_and_new_ones_probed_at_once() {
    let (_listener, port, s, mut rx, observer, owner) = listening_scheduler("ns/big").await;
    let hosts: Vec<TargetId> = (1..=20).map(|i| id(&format!("p{i}"))).collect();
    let slow = slow_spec(port);
    let targets = |spec: &TargetSpec| -> BTreeMap<TargetId, TargetSpec> {
        hosts.iter().map(|h| (h.clone(), spec.clone())).collect()
    };
    s.sync(&owner, targets(&slow), |_| None);
    for _ in 0..20 {
        next(&mut rx).await;
    }
    assert_eq!(observer.count_of(ProbeKind::Tcp), 20);

    // One edit of the port's probe settings, and one new host.
    let period = Duration::from_secs(2);
    let edited = TargetSpec {
        period,
        timeout: Duration::from_millis(300),
        ..slow
    };
    let closed_port = closed_port().await;
    let mut all = targets(&edited);
    all.insert(
        id("new"),
        http_spec(closed_port, period, Duration::from_millis(300)),
    );
    let start = std::time::Instant::now();
    s.sync(&owner, all, |_| None);
    assert_eq!(
        next_state(&mut rx).await,
        (id("new"), HealthState::NotReady)
    );
    until("every restarted target's first probe", || {
        observer.count_of(ProbeKind::Tcp) >= 40
    })
    .await;
    let restarted: Vec<Duration> = observer
        .all()
        .iter()
        .filter(|p| p.kind == ProbeKind::Tcp)
        .skip(20)
        .map(|p| p.at - start)
        .collect();
    let first = restarted.iter().min().copied().unwrap_or_default();
    let last = restarted.iter().max().copied().unwrap_or_default();
    // Twenty uniform delays in [0, 2 s) span less than 0.5 s with a
    // probability below 1e-10; all at once, they span milliseconds.
    assert!(
        last - first > Duration::from_millis(500),
        "restarted probes were not spread: {restarted:?}"
    );
    s.shutdown();
}

#[tokio::test]
async fn seeded_targets_start_in_their_state_and_stay_quiet_when_probes_agree() {
    let (_listener, port, s, mut rx, observer, owner) = listening_scheduler("ns/a").await;
    let period = Duration::from_millis(300);
    let seeded = TargetSpec {
        period,
        ..spec(port, 1)
    };
    let start = std::time::Instant::now();
    s.sync(&owner, only("x", seeded.clone()), |_| Some(true));
    let h = &s.health(&owner)[&id("x")];
    assert_eq!(
        (h.state, h.message.as_str()),
        (HealthState::Ready, SEEDED_MESSAGE)
    );
    until("the first probe", || observer.count() >= 1).await;
    // The first probe waits a random part of one period, never more.
    assert!(observer.all()[0].at - start < period + Duration::from_millis(300));
    until("a few probes", || observer.count() >= 3).await;
    assert!(
        rx.try_recv().is_err(),
        "probes that agree with the seed publish nothing"
    );
    assert_eq!(s.health(&owner)[&id("x")].state, HealthState::Ready);

    // A seeded-unready target that answers becomes ready.
    let both = BTreeMap::from([(id("x"), seeded.clone()), (id("z"), seeded)]);
    s.sync(&owner, both, |id| Some(id.port != "z"));
    assert_eq!(s.health(&owner)[&id("z")].state, HealthState::NotReady);
    assert_eq!(s.health(&owner)[&id("z")].message, SEEDED_MESSAGE);
    let t = next(&mut rx).await;
    assert_eq!(
        (t.target, t.from, t.to.state),
        (id("z"), HealthState::NotReady, HealthState::Ready)
    );
    s.shutdown();
}

#[tokio::test]
async fn initial_delay_postpones_the_first_probe_of_a_new_target() {
    let (_listener, port, s, mut rx, observer, owner) = listening_scheduler("a").await;
    let delay = Duration::from_millis(400);
    let start = std::time::Instant::now();
    let delayed = TargetSpec {
        initial_delay: delay,
        ..spec(port, 1)
    };
    s.sync(&owner, only("x", delayed), |_| None);
    next(&mut rx).await;
    let first = observer.all()[0].at - start;
    assert!(first >= delay, "probed after {first:?}");
    s.shutdown();
}

/// An HTTP server whose handler takes `hold` and counts concurrent requests.
/// The count drops before the response is written, so a probe that starts
/// after the previous one finished can never see it raised.
async fn slow_http_server(hold: Duration) -> (u16, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let (listener, port) = listener().await;
    let requests = Arc::new(AtomicUsize::new(0));
    let max_in_flight = Arc::new(AtomicUsize::new(0));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let (r, m) = (requests.clone(), max_in_flight.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (r, m, in_flight) = (r.clone(), m.clone(), in_flight.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_: Request<Incoming>| {
                    let (r, m, in_flight) = (r.clone(), m.clone(), in_flight.clone());
                    async move {
                        let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                        m.fetch_max(now, Ordering::SeqCst);
                        tokio::time::sleep(hold).await;
                        in_flight.fetch_sub(1, Ordering::SeqCst);
                        r.fetch_add(1, Ordering::SeqCst);
                        Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new()))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (port, requests, max_in_flight)
}

#[tokio::test]
async fn probes_of_one_target_never_overlap_and_missed_ticks_are_skipped() {
    // Each probe takes 200 ms, four times the period.
    let (port, requests, max_in_flight) = slow_http_server(Duration::from_millis(200)).await;
    let (s, _rx, observer) = scheduler();
    let period = Duration::from_millis(50);
    let target = http_spec(port, period, Duration::from_secs(2));
    s.sync(&"ns/slow".to_string(), only("x", target), |_| None);
    until("five probes", || observer.count() >= 5).await;
    s.shutdown();
    assert_eq!(
        max_in_flight.load(Ordering::SeqCst),
        1,
        "probes of one target overlapped"
    );
    let probes = observer.all();
    assert!(
        probes.iter().all(|p| p.verdict == Verdict::Success),
        "{probes:?}"
    );
    assert!(requests.load(Ordering::SeqCst) >= 5);
    // Run late, back to back, missed ticks would make the lateness grow by
    // 150 ms a probe (600 ms by the fifth); skipped, it stays small.
    let worst = probes.iter().map(|p| p.lateness).max().unwrap_or_default();
    assert!(
        worst < Duration::from_millis(300),
        "lateness grew to {worst:?}"
    );
}

#[tokio::test]
async fn a_slow_target_does_not_delay_others() {
    // A listener that accepts and never answers: the HTTP probe of it runs
    // for its whole 10 s timeout.
    let (mute, mute_port) = listener().await;
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = mute.accept().await {
            held.push(s);
        }
    });
    let (_fast, fast_port) = listener().await;
    let (s, mut rx, observer, owner) = scheduler_for("ns/mixed");
    let targets = BTreeMap::from([
        (
            id("slow"),
            http_spec(
                mute_port,
                Duration::from_millis(100),
                Duration::from_secs(10),
            ),
        ),
        (id("fast"), spec(fast_port, 1)),
    ]);
    s.sync(&owner, targets, |_| None);
    assert_eq!(next_state(&mut rx).await, (id("fast"), HealthState::Ready));
    until("the fast target to keep its period", || {
        observer.count_of(ProbeKind::Tcp) >= 5
    })
    .await;
    assert_eq!(
        observer.count_of(ProbeKind::Http),
        0,
        "the slow probe is still running"
    );
    assert_eq!(s.health(&owner)[&id("slow")].state, HealthState::Pending);
    s.shutdown();
}

#[tokio::test]
async fn shutdown_stops_probing() {
    let (_listener, port, s, mut rx, observer, a) = listening_scheduler("a").await;
    let targets = BTreeMap::from([(id("x"), spec(port, 1)), (id("y"), spec(port, 1))]);
    s.sync(&a, targets.clone(), |_| None);
    s.sync(&"b".to_string(), targets.clone(), |_| None);
    until("probing to start", || observer.count() >= 4).await;
    s.shutdown();
    assert_eq!(s.target_count(), 0);
    until("every worker to end", || workers_alive(&observer) == 0).await;
    let after = observer.count();
    // Final: a later sync starts nothing.
    s.sync(&a, targets, |_| None);
    assert_eq!((s.target_count(), workers_alive(&observer)), (0, 0));
    assert!(s.health(&a).is_empty());
    // Drain what was sent before shutdown; then the channel stays empty.
    while rx.try_recv().is_ok() {}
    quiet(&mut rx, Duration::from_millis(300)).await;
    assert_eq!(observer.count(), after, "no probe after every worker ended");
}

#[tokio::test]
async fn retain_drops_owners_that_are_gone() {
    let (_listener, port) = listener().await;
    let (s, _rx, observer) = scheduler();
    for owner in ["a", "b", "c"] {
        s.sync(&owner.to_string(), only("x", spec(port, 1)), |_| None);
    }
    assert_eq!(s.retain(|o| o != "b"), ["b".to_string()]);
    assert_eq!(s.target_count(), 2);
    assert!(s.health(&"b".to_string()).is_empty());
    assert_eq!(s.health(&"a".to_string()).len(), 1);
    until("b's worker to end", || workers_alive(&observer) == 2).await;
    s.shutdown();
}

#[tokio::test]
async fn state_counts_follow_seeds_and_probes() {
    let (_listener, port) = listener().await;
    let (s, mut rx, _, owner) = scheduler_for("a");
    let closed = closed_port().await;
    s.sync(
        &owner,
        BTreeMap::from([
            (id("up"), spec(port, 1)),
            (id("seeded"), spec(port, 1)),
            (id("down"), spec(closed, 1)),
        ]),
        |t| (t.port == "seeded").then_some(true),
    );
    let c = s.state_counts();
    assert_eq!((c.pending, c.ready, c.not_ready), (2, 1, 0));
    // `up` becomes ready and `down` not ready: two transitions.
    next(&mut rx).await;
    next(&mut rx).await;
    let c = s.state_counts();
    assert_eq!((c.pending, c.ready, c.not_ready), (0, 2, 1));
    s.shutdown();
}

#[tokio::test]
async fn a_clone_is_the_same_scheduler() {
    let (_listener, port) = listener().await;
    let (s, _rx, _) = scheduler();
    let other = s.clone();
    other.sync(&"a".to_string(), only("x", spec(port, 1)), |_| None);
    assert_eq!(s.target_count(), 1);
    s.shutdown();
    assert_eq!(other.target_count(), 0);
}

#[test]
fn jitter_stays_within_one_period_and_varies() {
    let period = Duration::from_secs(10);
    let samples: Vec<Duration> = (0..200).map(|_| jitter(period)).collect();
    assert!(samples.iter().all(|d| *d < period));
    let distinct: std::collections::BTreeSet<_> = samples.iter().collect();
    assert!(
        distinct.len() > 100,
        "jitter is not random: {} distinct values",
        distinct.len()
    );
    assert_eq!(jitter(Duration::ZERO), Duration::ZERO);
}

#[test]
fn next_tick_keeps_the_phase_and_skips_missed_ticks() {
    let t0 = Instant::now();
    let p = Duration::from_millis(100);
    let ms = Duration::from_millis;
    // On time: one period after the previous scheduled start.
    assert_eq!(next_tick(t0, p, t0 + ms(30)), t0 + ms(100));
    // A probe that overran two ticks: the next tick still on the grid.
    assert_eq!(next_tick(t0, p, t0 + ms(250)), t0 + ms(300));
    // Exactly on a tick that is now: that one is gone too.
    assert_eq!(next_tick(t0, p, t0 + ms(300)), t0 + ms(400));
    // Absurd periods do not panic.
    assert!(next_tick(t0, Duration::MAX, t0) > t0);
}

#[tokio::test]
async fn absurd_durations_do_not_panic() {
    let (_listener, port) = listener().await;
    let (s, mut rx, _) = scheduler();
    let huge = TargetSpec {
        period: Duration::MAX,
        timeout: Duration::MAX,
        ..spec(port, 1)
    };
    s.sync(&"a".to_string(), only("x", huge), |_| None);
    let t = next(&mut rx).await;
    assert_eq!(t.to.state, HealthState::Ready);
    s.shutdown();
}

#[tokio::test]
async fn in_flight_probes_are_capped_and_queued_probes_are_not_failed() {
    let (port, requests, max_in_flight) = slow_http_server(Duration::from_millis(150)).await;
    let observer = Arc::new(Recording::default());
    let (s, _rx) = Scheduler::<String>::with_max_in_flight(
        Prober::new("test").expect("prober"),
        observer.clone(),
        2,
    );
    let targets: BTreeMap<TargetId, TargetSpec> = (0..6)
        .map(|i| {
            (
                id(&format!("t{i}")),
                // A timeout shorter than the queue is long: waiting for a
                // permit must not eat into it.
                http_spec(port, Duration::from_millis(100), Duration::from_millis(400)),
            )
        })
        .collect();
    s.sync(&"ns/many".to_string(), targets, |_| None);
    until("a dozen probes", || observer.count() >= 12).await;
    s.shutdown();
    assert_eq!(max_in_flight.load(Ordering::SeqCst), 2, "the cap held");
    let probes = observer.all();
    assert!(
        probes.iter().all(|p| p.verdict == Verdict::Success),
        "a queued probe was failed: {probes:?}"
    );
    assert!(requests.load(Ordering::SeqCst) >= 12);
    assert!(
        probes
            .iter()
            .any(|p| p.lateness >= Duration::from_millis(100)),
        "queueing shows as lateness"
    );
    assert!(s.in_flight() <= 2);
}

#[tokio::test]
async fn probe_port_is_probed_instead_of_the_target_port() {
    let (_listener, open) = listener().await;
    let closed_port = closed_port().await;
    let (s, mut rx, _, owner) = scheduler_for("ns/patroni");
    let via_probe_port = TargetSpec {
        probe_port: Some(open),
        ..spec(closed_port, 1)
    };
    s.sync(&owner, only("pg", via_probe_port), |_| None);
    let t = next(&mut rx).await;
    assert_eq!(t.to.state, HealthState::Ready, "{}", t.to.message);
    // And the other way round: the message names the probed port.
    let other = TargetSpec {
        probe_port: Some(closed_port),
        ..spec(open, 1)
    };
    s.sync(&owner, only("pg", other), |_| None);
    let t = next(&mut rx).await;
    assert_eq!(
        t.to.message,
        format!("tcp connect 127.0.0.1:{closed_port}: connection refused")
    );
    s.shutdown();
}

#[tokio::test]
async fn unhealthy_period_slows_probing_of_failing_targets() {
    let port = closed_port().await;
    let (s, mut rx, observer, owner) = scheduler_for("ns/dead");
    let spec = TargetSpec {
        intervals: Intervals {
            unhealthy_period: Some(Duration::from_secs(600)),
            ..Intervals::default()
        },
        ..spec(port, 1)
    };
    s.sync(&owner, only("x", spec.clone()), |_| None);
    assert_eq!(next(&mut rx).await.to.state, HealthState::NotReady);
    // At the usual 100 ms period there would be several probes by now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        observer.count(),
        1,
        "a NotReady target waits its own period"
    );

    // Without it, the same target is probed every period.
    let plain = TargetSpec {
        intervals: Intervals::default(),
        ..spec
    };
    s.sync(&owner, only("x", plain), |_| None);
    until("probing at the usual period", || observer.count() >= 4).await;
    s.shutdown();
}

#[tokio::test]
async fn edge_period_confirms_a_transition_at_once() {
    let (_listener, port, s, mut rx, observer, owner) = listening_scheduler("ns/edge").await;
    let confirming = TargetSpec {
        intervals: Intervals {
            edge_period: Some(Duration::ZERO),
            ..Intervals::default()
        },
        ..slow_spec(port)
    };
    s.sync(
        &owner,
        BTreeMap::from([(id("plain"), slow_spec(port)), (id("confirm"), confirming)]),
        |_| None,
    );
    next(&mut rx).await;
    next(&mut rx).await;
    // Pending → Ready is a transition: the confirming target is probed
    // again at once, the plain one waits its 600 s.
    until("the confirmation probe", || observer.count() >= 3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(observer.count(), 3, "one confirmation, then the period");
    s.shutdown();
}

#[tokio::test]
async fn configuration_errors_keep_the_state() {
    let (_listener, port, s, mut rx, observer, owner) = listening_scheduler("ns/bad").await;
    let bad = TargetSpec {
        probe: Arc::new(Probe::Http(HttpGet {
            headers: vec![("bad header".into(), "x".into())],
            ..HttpGet::default()
        })),
        ..spec(port, 1)
    };
    s.sync(&owner, only("x", bad), |_| Some(true));
    until("a few probes", || observer.count() >= 3).await;
    assert!(
        observer
            .all()
            .iter()
            .all(|p| p.verdict == Verdict::ConfigError)
    );
    assert_eq!(s.health(&owner)[&id("x")].state, HealthState::Ready);
    assert!(rx.try_recv().is_err(), "no transition");
    s.shutdown();
}

#[tokio::test]
async fn tls_certificate_expiry_is_kept_per_target() {
    use crate::probe::tests_tls::{Pki, Serve, server_config, tls_server};
    use crate::probe::{Expect, TcpProbe};
    let pki = Pki::new("scheduler test CA");
    let leaf = pki.leaf(2040, false);
    let (addr, _) = tls_server(server_config(&leaf, &[], None), Serve::Redis).await;
    let (s, mut rx, _, owner) = scheduler_for("ns/tls");
    let tls = TargetSpec {
        probe: Arc::new(Probe::Tcp(TcpProbe {
            send: b"PING\r\n".to_vec(),
            expect: Some(Expect::Contains(b"+PONG".to_vec())),
            tls: Some(pki.tls()),
        })),
        ..spec(addr.port(), 1)
    };
    s.sync(
        &owner,
        BTreeMap::from([(id("tls"), tls), (id("plain"), spec(addr.port(), 1))]),
        |_| None,
    );
    assert_eq!(next(&mut rx).await.to.state, HealthState::Ready);
    next(&mut rx).await;
    let expiry = s.cert_not_after(&owner);
    assert_eq!(expiry.keys().cloned().collect::<Vec<_>>(), [id("tls")]);
    let secs = expiry[&id("tls")]
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    assert_eq!(secs as i64, leaf.not_after_unix);
    s.shutdown();
}

#[test]
fn jitter_percent_stays_within_its_share_of_the_period() {
    let period = Duration::from_secs(10);
    let samples: Vec<Duration> = (0..200).map(|_| jitter_percent(period, 20)).collect();
    assert!(samples.iter().all(|d| *d < Duration::from_secs(2)));
    let distinct: std::collections::BTreeSet<_> = samples.iter().collect();
    assert!(distinct.len() > 100, "{} distinct values", distinct.len());
    assert_eq!(jitter_percent(period, 0), Duration::ZERO);
    assert!(
        (0..100).all(|_| jitter_percent(period, 250) < period),
        "capped at 100%"
    );
    assert!(jitter_percent(Duration::MAX, 100) <= Duration::MAX);
}

#[tokio::test]
async fn certificate_changes_are_sent_once_per_new_certificate() {
    use crate::probe::TcpProbe;
    use crate::probe::tests_tls::{Pki, Serve, server_config, tls_server};
    let pki = Pki::new("scheduler change CA");
    let leaf = pki.leaf(2039, false);
    let (addr, _) = tls_server(server_config(&leaf, &[], None), Serve::Redis).await;
    let (s, mut rx, observer) = scheduler();
    let mut changes = s.certificate_changes();
    let owner = "ns/cert".to_string();
    let tls = TargetSpec {
        probe: Arc::new(Probe::Tcp(TcpProbe {
            tls: Some(pki.tls()),
            ..TcpProbe::default()
        })),
        period: Duration::from_millis(50),
        ..spec(addr.port(), 1)
    };
    s.sync(&owner, BTreeMap::from([(id("tls"), tls)]), |_| None);
    assert_eq!(next(&mut rx).await.to.state, HealthState::Ready);
    let change = tokio::time::timeout(Duration::from_secs(5), changes.recv())
        .await
        .expect("a change in time")
        .expect("a change");
    assert_eq!(
        (change.owner.as_str(), change.target),
        ("ns/cert", id("tls"))
    );
    let secs = change
        .not_after
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    assert_eq!(secs as i64, leaf.not_after_unix);
    // Further probes of the same certificate send nothing (the observer
    // hears of a probe before its certificate is stored: at 4 probes
    // heard, the first 3 are stored).
    until("four probes", || observer.count() >= 4).await;
    assert!(
        changes.try_recv().is_err(),
        "the same certificate is no news"
    );
    s.shutdown();
}

/// An idle worker (one per target, most of them waiting for their next
/// tick) must not carry a probe's future inline: an HTTP or gRPC exchange
/// is several KiB, which at 100,000 targets was ~350 MiB of idle memory.
#[tokio::test]
async fn an_idle_worker_task_is_small() {
    let (s, _rx, _observer) = scheduler();
    let spec = http_spec(1, Duration::from_secs(10), Duration::from_secs(1));
    let worker = Worker {
        owner: "owner".to_string(),
        id: id("http"),
        tracker: ThresholdTracker::new_pending(spec.thresholds, SystemTime::now()),
        spec,
        health: Arc::new(Mutex::new(Health {
            state: HealthState::Pending,
            since: SystemTime::now(),
            message: String::new(),
        })),
        cert_not_after: Arc::new(AtomicU64::new(0)),
        cancel: CancellationToken::new(),
        engine: s.inner.engine.clone(),
    };
    let task = worker.run(Duration::ZERO);
    let size = std::mem::size_of_val(&task);
    assert!(size < 1024, "a worker's future is {size} bytes");
}
