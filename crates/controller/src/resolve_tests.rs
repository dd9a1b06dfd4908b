use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn ok(addresses: &[&str], ttl: u64) -> Result<Answer, String> {
    Ok(Answer {
        addresses: addresses.iter().map(|a| ip(a)).collect(),
        ttl: Some(Duration::from_secs(ttl)),
    })
}

const BOUNDS: TtlBounds = TtlBounds {
    floor: Duration::from_secs(5),
    ceiling: Duration::from_secs(300),
};
const PERIOD: Duration = Duration::from_secs(30);

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

#[test]
fn a_first_answer_is_sorted_unique_and_a_change() {
    let (r, changed, _) = apply(
        &Resolution::default(),
        ok(
            &["198.18.0.9", "fd00:6b65::1", "198.18.0.2", "198.18.0.9"],
            60,
        ),
        at(1),
        PERIOD,
        BOUNDS,
    );
    assert!(changed);
    assert_eq!(
        r.addresses,
        vec![ip("198.18.0.2"), ip("198.18.0.9"), ip("fd00:6b65::1")]
    );
    assert_eq!(r.resolved_at, Some(at(1)));
    assert_eq!(r.failure, None);
}

/// 198.18.0.2, resolved at second 1.
fn resolved_once() -> Resolution {
    apply(
        &Resolution::default(),
        ok(&["198.18.0.2"], 60),
        at(1),
        PERIOD,
        BOUNDS,
    )
    .0
}

#[test]
fn the_same_answer_again_changes_nothing_not_even_the_time() {
    let first = resolved_once();
    let (again, changed, _) = apply(&first, ok(&["198.18.0.2"], 60), at(40), PERIOD, BOUNDS);
    assert!(!changed);
    assert_eq!(again, first);
    let (moved, changed, _) = apply(&first, ok(&["198.18.0.3"], 60), at(80), PERIOD, BOUNDS);
    assert!(changed);
    assert_eq!(moved.addresses, vec![ip("198.18.0.3")]);
    assert_eq!(moved.resolved_at, Some(at(80)));
}

#[test]
fn the_next_resolution_is_the_period_or_the_clamped_ttl_whichever_is_sooner() {
    let next = |ttl: Option<u64>, period: u64| {
        let answer = Ok(Answer {
            addresses: vec![ip("198.18.0.2")],
            ttl: ttl.map(Duration::from_secs),
        });
        apply(
            &Resolution::default(),
            answer,
            at(0),
            Duration::from_secs(period),
            BOUNDS,
        )
        .2
    };
    assert_eq!(next(Some(60), 30), Duration::from_secs(30));
    assert_eq!(next(Some(10), 30), Duration::from_secs(10));
    // A TTL below the floor is raised to it, above the ceiling cut to it.
    assert_eq!(next(Some(0), 30), Duration::from_secs(5));
    assert_eq!(next(Some(86_400), 3600), Duration::from_secs(300));
    assert_eq!(next(None, 3600), Duration::from_secs(300));
    // The period wins even below the floor: it is what the user asked.
    assert_eq!(next(Some(60), 2), Duration::from_secs(2));
}

#[test]
fn a_failure_keeps_the_last_good_addresses_and_only_its_start_is_a_change() {
    let good = resolved_once();
    let (down, changed, retry) = apply(&good, Err("timed out".into()), at(40), PERIOD, BOUNDS);
    assert!(changed);
    assert_eq!(down.addresses, good.addresses);
    assert_eq!(down.resolved_at, good.resolved_at);
    assert_eq!(
        down.failure,
        Some(Failure {
            message: "timed out".into(),
            since: at(40)
        })
    );
    assert_eq!(retry, PERIOD);
    // Another error of the same outage is no change: the first is kept.
    let (still, changed, _) = apply(&down, Err("refused".into()), at(70), PERIOD, BOUNDS);
    assert!(!changed);
    assert_eq!(still, down);
    // No records at all is a failure too: the last set is kept.
    let (empty, changed, _) = apply(&good, ok(&[], 60), at(40), PERIOD, BOUNDS);
    assert!(changed);
    assert_eq!(empty.addresses, good.addresses);
    assert_eq!(
        empty.failure.map(|f| f.message),
        Some("no A or AAAA records".into())
    );
    // Recovery with the same addresses clears the failure: a change.
    let (back, changed, _) = apply(&still, ok(&["198.18.0.2"], 60), at(100), PERIOD, BOUNDS);
    assert!(changed);
    assert_eq!(back, good);
}

#[test]
fn a_name_that_never_resolved_has_no_addresses() {
    let (r, changed, _) = apply(
        &Resolution::default(),
        Err("NXDOMAIN".into()),
        at(1),
        PERIOD,
        BOUNDS,
    );
    assert!(changed);
    assert!(r.addresses.is_empty());
    assert_eq!(r.resolved_at, None);
    assert!(r.failure.is_some());
}

#[test]
fn at_most_max_addresses_per_name_are_kept() {
    let many: Vec<String> = (0..200).map(|i| format!("198.18.1.{i}")).collect();
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    let (r, _, _) = apply(&Resolution::default(), ok(&refs, 60), at(1), PERIOD, BOUNDS);
    assert_eq!(r.addresses.len(), MAX_ADDRESSES_PER_NAME);
}

/// A DNS the test controls: name -> answer, and a count of queries.
#[derive(Clone, Default)]
struct FakeDns {
    records: Arc<Mutex<BTreeMap<String, Result<Answer, String>>>>,
    queries: Arc<Mutex<Vec<String>>>,
}

impl FakeDns {
    fn set(&self, name: &str, answer: Result<Answer, String>) {
        self.records.lock().unwrap().insert(name.into(), answer);
    }
    fn lookup(&self) -> Lookup {
        let dns = self.clone();
        Arc::new(move |name: String| {
            let dns = dns.clone();
            Box::pin(async move {
                dns.queries.lock().unwrap().push(name.clone());
                dns.records
                    .lock()
                    .unwrap()
                    .get(&name)
                    .cloned()
                    .unwrap_or_else(|| Err("NXDOMAIN".into()))
            })
        })
    }
}

fn uses(names: &[(&str, u64)]) -> BTreeMap<String, Duration> {
    names
        .iter()
        .map(|(n, p)| (n.to_string(), Duration::from_secs(*p)))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn workers_publish_changes_to_the_users_of_a_name_only() {
    let dns = FakeDns::default();
    dns.set("db.test", ok(&["198.18.0.2"], 60));
    dns.set("web.test", ok(&["198.18.0.5"], 60));
    let (resolver, mut changes) = Resolver::<&'static str>::new(dns.lookup(), BOUNDS);
    // Not resolved yet: known, without addresses.
    let first = resolver.sync(&"a", &uses(&[("db.test", 10)]));
    assert_eq!(first["db.test"], Resolution::default());
    resolver.sync(&"b", &uses(&[("db.test", 10), ("web.test", 10)]));
    let mut woken = vec![changes.recv().await.unwrap(), changes.recv().await.unwrap()];
    woken.extend([changes.recv().await.unwrap()]);
    woken.sort();
    assert_eq!(woken, vec!["a", "b", "b"]);
    let now = resolver.sync(&"a", &uses(&[("db.test", 10)]));
    assert_eq!(now["db.test"].addresses, vec![ip("198.18.0.2")]);

    // Unchanged answers publish nothing; a changed one wakes both users.
    tokio::time::sleep(Duration::from_secs(25)).await;
    assert!(changes.try_recv().is_err());
    dns.set("db.test", ok(&["198.18.0.3"], 60));
    let mut woken = vec![changes.recv().await.unwrap(), changes.recv().await.unwrap()];
    woken.sort();
    assert_eq!(woken, vec!["a", "b"]);
    let now = resolver.sync(&"a", &uses(&[("db.test", 10)]));
    assert_eq!(now["db.test"].addresses, vec![ip("198.18.0.3")]);
}

#[tokio::test(start_paused = true)]
async fn a_name_nobody_uses_stops_its_worker() {
    let dns = FakeDns::default();
    dns.set("db.test", ok(&["198.18.0.2"], 60));
    let (resolver, _changes) = Resolver::<u32>::new(dns.lookup(), BOUNDS);
    resolver.sync(&1, &uses(&[("db.test", 10)]));
    resolver.sync(&2, &uses(&[("db.test", 10)]));
    resolver.remove(&1);
    assert_eq!(resolver.names(), vec!["db.test".to_string()]);
    resolver.sync(&2, &BTreeMap::new());
    assert!(resolver.names().is_empty());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = dns.queries.lock().unwrap().len();
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(dns.queries.lock().unwrap().len(), before);
}

#[tokio::test(start_paused = true)]
async fn a_shorter_period_asked_for_takes_effect_at_once() {
    let dns = FakeDns::default();
    dns.set("db.test", ok(&["198.18.0.2"], 3000));
    let (resolver, mut changes) = Resolver::<u32>::new(dns.lookup(), TtlBounds::default());
    resolver.sync(&1, &uses(&[("db.test", 3600)]));
    changes.recv().await.unwrap();
    resolver.sync(&2, &uses(&[("db.test", 1)]));
    dns.set("db.test", ok(&["198.18.0.3"], 3000));
    // Without the wake-up this would wait for the first user's 3000 s.
    tokio::time::timeout(Duration::from_secs(10), changes.recv())
        .await
        .expect("re-resolved within the new period")
        .unwrap();
}
