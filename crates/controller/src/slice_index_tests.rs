use std::collections::BTreeMap;

use kube::api::ObjectMeta;
use kube::runtime::reflector;
use kube::runtime::reflector::store::Writer;

use super::*;

fn slice(ns: &str, name: &str, service: &str) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            labels: Some(BTreeMap::from([(
                LABEL_SERVICE_NAME.to_string(),
                service.to_string(),
            )])),
            ..ObjectMeta::default()
        },
        address_type: "IPv4".into(),
        endpoints: Vec::new(),
        ports: None,
    }
}

/// A store and its index, fed the same events in the order the watch
/// stream feeds them (the store first).
struct Cache {
    writer: Writer<EndpointSlice>,
    store: Store<EndpointSlice>,
    index: SliceIndex,
}

impl Cache {
    fn new() -> Self {
        let (store, writer) = reflector::store();
        Cache {
            writer,
            store,
            index: SliceIndex::default(),
        }
    }

    fn event(&mut self, event: watcher::Event<EndpointSlice>) {
        self.writer.apply_watcher_event(&event);
        self.index.observe(&event);
    }

    fn names(&self, ns: &str, service: &str) -> Vec<String> {
        self.index
            .slices(&self.store, ns, service)
            .iter()
            .map(|s| s.name_any())
            .collect()
    }
}

#[test]
fn finds_the_slices_of_one_service_only() {
    let mut cache = Cache::new();
    for s in [
        slice("a", "db-2", "db"),
        slice("a", "db-1", "db"),
        slice("a", "web-1", "web"),
        slice("b", "db-1", "db"),
    ] {
        cache.event(watcher::Event::Apply(s));
    }
    assert_eq!(cache.names("a", "db"), ["db-1", "db-2"]);
    assert_eq!(cache.names("a", "web"), ["web-1"]);
    assert_eq!(cache.names("b", "db"), ["db-1"]);
    assert!(cache.names("a", "other").is_empty());
}

#[test]
fn follows_deletes_and_relabels() {
    let mut cache = Cache::new();
    cache.event(watcher::Event::Apply(slice("a", "s-1", "db")));
    cache.event(watcher::Event::Apply(slice("a", "s-2", "db")));
    cache.event(watcher::Event::Delete(slice("a", "s-1", "db")));
    assert_eq!(cache.names("a", "db"), ["s-2"]);
    // Relabelled to another Service: found there, no longer here.
    cache.event(watcher::Event::Apply(slice("a", "s-2", "web")));
    assert!(cache.names("a", "db").is_empty());
    assert_eq!(cache.names("a", "web"), ["s-2"]);
}

#[test]
fn a_relist_that_misses_a_delete_never_returns_the_deleted_slice() {
    let mut cache = Cache::new();
    cache.event(watcher::Event::Apply(slice("a", "gone", "db")));
    cache.event(watcher::Event::Apply(slice("a", "kept", "db")));
    // The watch was down while `gone` was deleted: the re-list replaces the
    // store and says nothing of it.
    cache.event(watcher::Event::Init);
    cache.event(watcher::Event::InitApply(slice("a", "kept", "db")));
    cache.event(watcher::Event::InitApply(slice("a", "new", "db")));
    cache.event(watcher::Event::InitDone);
    assert_eq!(cache.names("a", "db"), ["kept", "new"]);
    // Pruned by that lookup.
    let names = cache.index.lock();
    let key = ("a".to_string(), "db".to_string());
    assert_eq!(names.get(&key).map(BTreeSet::len), Some(2));
}

#[test]
fn agrees_with_a_scan_of_the_store() {
    let mut cache = Cache::new();
    for i in 0..200 {
        let service = format!("svc-{}", i % 7);
        cache.event(watcher::Event::Apply(slice(
            "a",
            &format!("s-{i}"),
            &service,
        )));
        if i % 5 == 0 {
            cache.event(watcher::Event::Delete(slice(
                "a",
                &format!("s-{}", i / 2),
                &format!("svc-{}", (i / 2) % 7),
            )));
        }
    }
    for n in 0..7 {
        let service = format!("svc-{n}");
        let mut scanned: Vec<String> = cache
            .store
            .state()
            .iter()
            .filter(|s| s.labels().get(LABEL_SERVICE_NAME) == Some(&service))
            .map(|s| s.name_any())
            .collect();
        scanned.sort();
        assert_eq!(cache.names("a", &service), scanned, "{service}");
    }
}
