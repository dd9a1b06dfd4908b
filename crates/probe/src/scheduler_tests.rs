use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::TcpListener;

use super::*;

#[derive(Default)]
struct Counting {
    probes: AtomicUsize,
}

impl Observer for Counting {
    fn probe_finished(&self, _: ProbeKind, _: Verdict, _: Duration, _: Duration) {
        self.probes.fetch_add(1, Ordering::SeqCst);
    }
}

fn spec(port: u16, failure: u32) -> TargetSpec {
    TargetSpec {
        probe: Probe::Tcp,
        target_port: port,
        period: Duration::from_millis(100),
        timeout: Duration::from_millis(200),
        thresholds: Thresholds { failure, success: 1 },
        initial_delay: Duration::ZERO,
    }
}

fn id(port: &str) -> TargetId {
    TargetId {
        port: port.into(),
        host: IpAddr::from([127, 0, 0, 1]),
    }
}

fn scheduler() -> (Scheduler<String>, mpsc::UnboundedReceiver<Transition<String>>, Arc<Counting>) {
    let observer = Arc::new(Counting::default());
    let (s, rx) = Scheduler::new(Prober::new("test").expect("prober"), observer.clone());
    (s, rx, observer)
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Transition<String>>) -> Transition<String> {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("a transition within 5s")
        .expect("channel open")
}

/// Poll until `f` is true or fail after 5 s.
async fn until(what: &str, f: impl Fn() -> bool) {
    let start = std::time::Instant::now();
    while !f() {
        assert!(start.elapsed() < Duration::from_secs(5), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn new_target_becomes_ready_then_not_ready_after_failures() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (s, mut rx, observer) = scheduler();
    let owner = "default/db".to_string();
    s.sync(&owner, BTreeMap::from([(id("pg"), spec(port, 3))]), |_| None);
    assert_eq!(s.health(&owner)[&id("pg")].state, HealthState::Pending);

    let t = next(&mut rx).await;
    assert_eq!((t.from, t.to.state), (HealthState::Pending, HealthState::Ready));
    assert_eq!(t.owner, owner);
    assert_eq!(s.health(&owner)[&id("pg")].state, HealthState::Ready);

    drop(listener);
    let before = observer.probes.load(Ordering::SeqCst);
    let t = next(&mut rx).await;
    assert_eq!((t.from, t.to.state), (HealthState::Ready, HealthState::NotReady));
    assert!(t.to.message.contains("connection refused"), "{}", t.to.message);
    let failures = observer.probes.load(Ordering::SeqCst) - before;
    assert!(failures >= 3, "failureThreshold 3 needs three failed probes, saw {failures}");
    s.shutdown();
}

#[tokio::test]
async fn sync_with_the_same_spec_keeps_state_and_removal_drops_it() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (s, mut rx, _) = scheduler();
    let owner = "ns/a".to_string();
    let targets = BTreeMap::from([(id("x"), spec(port, 1)), (id("y"), spec(port, 1))]);
    s.sync(&owner, targets.clone(), |_| None);
    next(&mut rx).await;
    next(&mut rx).await;
    let before = s.health(&owner);
    s.sync(&owner, targets, |_| None);
    assert_eq!(s.health(&owner), before, "unchanged targets keep their state");
    assert!(
        tokio::time::timeout(Duration::from_millis(400), rx.recv()).await.is_err(),
        "no transition from a no-op sync"
    );

    s.sync(&owner, BTreeMap::from([(id("y"), spec(port, 1))]), |_| None);
    assert_eq!(s.health(&owner).keys().cloned().collect::<Vec<_>>(), [id("y")]);
    assert_eq!(s.target_count(), 1);
    s.remove(&owner);
    assert!(s.health(&owner).is_empty());
    assert_eq!(s.target_count(), 0);
}

#[tokio::test]
async fn a_changed_spec_keeps_the_verdict() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (s, mut rx, _) = scheduler();
    let owner = "ns/a".to_string();
    s.sync(&owner, BTreeMap::from([(id("x"), spec(port, 1))]), |_| None);
    let ready_since = next(&mut rx).await.to.since;
    // Same host and port, other thresholds: still ready, same since.
    s.sync(&owner, BTreeMap::from([(id("x"), spec(port, 5))]), |_| None);
    let h = &s.health(&owner)[&id("x")];
    assert_eq!((h.state, h.since), (HealthState::Ready, ready_since));
    assert!(tokio::time::timeout(Duration::from_millis(400), rx.recv()).await.is_err());
}

#[tokio::test]
async fn seeded_targets_start_in_their_state_and_stay_quiet_when_probes_agree() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (s, mut rx, observer) = scheduler();
    let owner = "ns/a".to_string();
    s.sync(&owner, BTreeMap::from([(id("x"), spec(port, 1))]), |_| Some(true));
    assert_eq!(s.health(&owner)[&id("x")].state, HealthState::Ready);
    until("a few probes", || observer.probes.load(Ordering::SeqCst) >= 3).await;
    assert!(rx.try_recv().is_err(), "probes that agree with the seed publish nothing");

    // A seeded-unready target that answers becomes ready.
    s.sync(&owner, BTreeMap::from([(id("z"), spec(port, 1))]), |_| Some(false));
    assert_eq!(s.health(&owner)[&id("z")].state, HealthState::NotReady);
    let t = next(&mut rx).await;
    assert_eq!((t.target, t.from, t.to.state), (id("z"), HealthState::NotReady, HealthState::Ready));
}

#[tokio::test]
async fn probes_of_one_target_never_overlap() {
    // A server that never answers: each probe takes the full timeout, which
    // is longer than the period.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let max_in_flight = Arc::new(AtomicUsize::new(0));
    let connections = Arc::new(AtomicUsize::new(0));
    {
        let (in_flight, max_in_flight, connections) = (in_flight.clone(), max_in_flight.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (in_flight, max_in_flight) = (in_flight.clone(), max_in_flight.clone());
                connections.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    max_in_flight.fetch_max(now, Ordering::SeqCst);
                    let mut buf = [0u8; 1024];
                    // Hold the connection until the prober gives up.
                    let _ = tokio::io::AsyncReadExt::read(&mut stream, &mut buf).await;
                    while tokio::io::AsyncReadExt::read(&mut stream, &mut buf).await.is_ok_and(|n| n > 0) {}
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
    }
    let (s, _rx, _) = scheduler();
    let owner = "ns/slow".to_string();
    let mut slow = spec(port, 1);
    slow.probe = Probe::Http(crate::probe::HttpGet {
        scheme: crate::probe::Scheme::Http,
        path: "/".into(),
        host: None,
        headers: vec![],
    });
    slow.period = Duration::from_millis(50);
    slow.timeout = Duration::from_millis(300);
    s.sync(&owner, BTreeMap::from([(id("x"), slow)]), |_| None);
    until("four probes", || connections.load(Ordering::SeqCst) >= 4).await;
    assert_eq!(max_in_flight.load(Ordering::SeqCst), 1, "probes of one target overlapped");
    s.shutdown();
}

#[tokio::test]
async fn shutdown_stops_probing() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (s, _rx, observer) = scheduler();
    s.sync(&"a".to_string(), BTreeMap::from([(id("x"), spec(port, 1))]), |_| None);
    until("probing to start", || observer.probes.load(Ordering::SeqCst) >= 2).await;
    s.shutdown();
    // Let any probe in flight finish, then the count must stay put.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = observer.probes.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(observer.probes.load(Ordering::SeqCst), after);
    assert_eq!(s.target_count(), 0);
}

#[tokio::test]
async fn retain_drops_owners_that_are_gone() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (s, _rx, _) = scheduler();
    for owner in ["a", "b", "c"] {
        s.sync(&owner.to_string(), BTreeMap::from([(id("x"), spec(port, 1))]), |_| None);
    }
    s.retain(|o| o != "b");
    assert_eq!(s.target_count(), 2);
    assert!(s.health(&"b".to_string()).is_empty());
}
