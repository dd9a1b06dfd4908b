//! What the cluster says about every target, from watches on EndpointSlices
//! and Endpoints (and ClusterEndpoint status for the unreachable profile).
//! A target is *ready* when both its slice endpoint and its Endpoints
//! address say so, *not ready* when both say not ready; each change of that
//! combined state is stamped with the time the watch event arrived. A
//! target that a source (the slices, the Endpoints) listed once and no
//! longer lists counts as not ready there: it is not routable (kube-proxy
//! routes only to listed, ready endpoints), so a controller that removes
//! failing hosts instead of listing them not ready is judged the same way
//! ([`judge`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Endpoints;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::core::DynamicObject;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::Value;

use crate::workload::target_key;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Combined {
    Unknown,
    Ready,
    NotReady,
}

#[derive(Default)]
struct Target {
    /// Readiness in its EndpointSlice; `None`: in none.
    slice: Option<bool>,
    /// Readiness in its Endpoints; `None`: not listed there.
    endpoints: Option<bool>,
    /// Whether a slice has listed it yet.
    slice_listed: bool,
    /// Whether the Endpoints have listed it yet.
    endpoints_listed: bool,
    ready_at: Option<Instant>,
    not_ready_at: Option<Instant>,
}

impl Target {
    fn combined(&self, check_endpoints: bool) -> Combined {
        let slice = in_rotation(self.slice, self.slice_listed);
        let endpoints = in_rotation(self.endpoints, self.endpoints_listed);
        judge(slice, endpoints, check_endpoints)
    }
}

/// What one source (the slices, or the Endpoints) says of a target: its
/// readiness where it lists it (`now`), not ready where it listed it
/// before and no more does (taken out of rotation), nothing before it ever
/// listed it.
fn in_rotation(now: Option<bool>, listed_before: bool) -> Option<bool> {
    now.or(listed_before.then_some(false))
}

/// The combined state of a target from what the EndpointSlices and the
/// Endpoints say of it ([`in_rotation`]), and whether the Endpoints
/// count at all: ready when both say ready, not ready when both say not
/// ready, unknown while either says nothing or they disagree.
fn judge(slice: Option<bool>, endpoints: Option<bool>, check_endpoints: bool) -> Combined {
    let endpoints = if check_endpoints { endpoints } else { slice };
    match (slice, endpoints) {
        (Some(true), Some(true)) => Combined::Ready,
        (Some(false), Some(false)) => Combined::NotReady,
        _ => Combined::Unknown,
    }
}

#[derive(Default)]
struct Inner {
    targets: HashMap<String, Target>,
    /// Keys each slice / Endpoints object last listed, to forget removed ones.
    slice_keys: HashMap<String, Vec<String>>,
    endpoints_keys: HashMap<String, Vec<String>>,
    ready: usize,
    not_ready: usize,
    /// Objects whose status reports a state, with when it was first seen.
    reported: HashMap<String, Instant>,
    watch_errors: usize,
}

/// Shared readiness state of the expected targets.
#[derive(Clone)]
pub struct Tracker {
    inner: Arc<Mutex<Inner>>,
    check_endpoints: bool,
}

#[derive(Clone, Copy)]
enum Source {
    Slice,
    Endpoints,
}

impl Tracker {
    /// Track exactly these targets (`object/port/host`); others are ignored.
    pub fn new(keys: impl IntoIterator<Item = String>, check_endpoints: bool) -> Tracker {
        let targets = keys.into_iter().map(|k| (k, Target::default())).collect();
        Tracker {
            inner: Arc::new(Mutex::new(Inner {
                targets,
                ..Inner::default()
            })),
            check_endpoints,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// (ready, not ready, tracked) targets now.
    pub fn counts(&self) -> (usize, usize, usize) {
        let g = self.lock();
        (g.ready, g.not_ready, g.targets.len())
    }

    pub fn watch_errors(&self) -> usize {
        self.lock().watch_errors
    }

    /// Forget the stamps of these targets (before breaking or healing them).
    pub fn reset_stamps(&self, keys: &[String]) {
        let mut g = self.lock();
        for k in keys {
            if let Some(t) = g.targets.get_mut(k) {
                t.ready_at = None;
                t.not_ready_at = None;
            }
        }
    }

    /// For each key: when it last became `want` (None if it has not, or is
    /// not in that state now).
    pub fn stamps(&self, keys: &[String], want: Combined) -> Vec<Option<Instant>> {
        let g = self.lock();
        let check = self.check_endpoints;
        keys.iter()
            .map(|k| {
                let t = g.targets.get(k)?;
                if t.combined(check) != want {
                    return None;
                }
                match want {
                    Combined::Ready => t.ready_at,
                    Combined::NotReady => t.not_ready_at,
                    Combined::Unknown => None,
                }
            })
            .collect()
    }

    /// How many of the targets *not* in `except` became not ready after `since`.
    pub fn collateral(&self, except: &[String], since: Instant) -> usize {
        let g = self.lock();
        let except: std::collections::HashSet<&String> = except.iter().collect();
        g.targets
            .iter()
            .filter(|(k, t)| !except.contains(k) && t.not_ready_at.is_some_and(|at| at > since))
            .count()
    }

    /// Objects that report a state in status, with when each was first seen.
    pub fn reported(&self) -> HashMap<String, Instant> {
        self.lock().reported.clone()
    }

    fn set(&self, source: Source, owner: String, entries: Vec<(String, bool)>) {
        let now = Instant::now();
        let mut guard = self.lock();
        let g = &mut *guard;
        let new_keys: Vec<String> = entries.iter().map(|(k, _)| k.clone()).collect();
        let old_keys = match source {
            Source::Slice => g.slice_keys.insert(owner, new_keys),
            Source::Endpoints => g.endpoints_keys.insert(owner, new_keys),
        }
        .unwrap_or_default();
        let mut updates: Vec<(String, Option<bool>)> =
            old_keys.into_iter().map(|k| (k, None)).collect();
        updates.extend(entries.into_iter().map(|(k, r)| (k, Some(r))));
        for (key, value) in updates {
            let check = self.check_endpoints;
            let Some(t) = g.targets.get_mut(&key) else {
                continue;
            };
            let before = t.combined(check);
            let (said, listed) = match source {
                Source::Slice => (&mut t.slice, &mut t.slice_listed),
                Source::Endpoints => (&mut t.endpoints, &mut t.endpoints_listed),
            };
            *said = value;
            *listed |= value.is_some();
            let after = t.combined(check);
            if before == after {
                continue;
            }
            match before {
                Combined::Ready => g.ready -= 1,
                Combined::NotReady => g.not_ready -= 1,
                Combined::Unknown => {}
            }
            match after {
                Combined::Ready => {
                    g.ready += 1;
                    t.ready_at = Some(now);
                }
                Combined::NotReady => {
                    g.not_ready += 1;
                    t.not_ready_at = Some(now);
                }
                Combined::Unknown => {}
            }
        }
    }

    fn slice_event(&self, slice: &EndpointSlice, deleted: bool) {
        let owner = slice.name_any();
        let mut entries = Vec::new();
        if !deleted {
            let service = slice
                .labels()
                .get("kubernetes.io/service-name")
                .cloned()
                .unwrap_or_default();
            for port in slice.ports.iter().flatten() {
                let port_name = port.name.clone().unwrap_or_default();
                for e in &slice.endpoints {
                    let ready = e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false);
                    for a in &e.addresses {
                        entries.push((target_key(&service, &port_name, a), ready));
                    }
                }
            }
        }
        self.set(Source::Slice, owner, entries);
    }

    fn endpoints_event(&self, ep: &Endpoints, deleted: bool) {
        let name = ep.name_any();
        let mut entries = Vec::new();
        if !deleted {
            for subset in ep.subsets.iter().flatten() {
                for port in subset.ports.iter().flatten() {
                    let port_name = port.name.clone().unwrap_or_default();
                    for (list, ready) in [
                        (&subset.addresses, true),
                        (&subset.not_ready_addresses, false),
                    ] {
                        for a in list.iter().flatten() {
                            entries.push((target_key(&name, &port_name, &a.ip), ready));
                        }
                    }
                }
            }
        }
        self.set(Source::Endpoints, name, entries);
    }

    fn cep_event(&self, obj: &DynamicObject) {
        if reports_state(&obj.data, obj.metadata.generation) {
            let mut g = self.lock();
            g.reported
                .entry(obj.name_any())
                .or_insert_with(Instant::now);
        }
    }

    fn watch_error(&self) {
        self.lock().watch_errors += 1;
    }
}

/// Whether a ClusterEndpoint's status reports the state of its hosts: the
/// status is of the current generation (when the controller sets
/// `observedGeneration`) and has a phase other than `Pending`.
pub fn reports_state(data: &Value, generation: Option<i64>) -> bool {
    let status = &data["status"];
    let phase = status["phase"].as_str().unwrap_or("");
    let observed = status["observedGeneration"].as_i64();
    let current = observed.is_none() || observed == generation;
    current && !phase.is_empty() && phase != "Pending"
}

/// Watch `api`, telling `on` about every object seen (`false`) or deleted
/// (`true`), until aborted.
fn spawn_watch<K>(
    api: Api<K>,
    t: Tracker,
    on: fn(&Tracker, &K, bool),
) -> tokio::task::JoinHandle<()>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
    K::DynamicType: Default,
{
    tokio::spawn(async move {
        let mut stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => on(&t, &o, false),
                Ok(watcher::Event::Delete(o)) => on(&t, &o, true),
                Ok(_) => {}
                Err(_) => t.watch_error(),
            }
        }
    })
}

/// Start the watches of `namespace`; they run until the returned handles
/// are aborted (or dropped with the runtime).
pub fn spawn_watches(
    client: &Client,
    namespace: &str,
    tracker: &Tracker,
    ceps: Option<kube::core::ApiResource>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut handles = vec![spawn_watch(
        Api::<EndpointSlice>::namespaced(client.clone(), namespace),
        tracker.clone(),
        Tracker::slice_event,
    )];
    if tracker.check_endpoints {
        handles.push(spawn_watch(
            Api::<Endpoints>::namespaced(client.clone(), namespace),
            tracker.clone(),
            Tracker::endpoints_event,
        ));
    }
    if let Some(resource) = ceps {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
        let t = tracker.clone();
        handles.push(tokio::spawn(async move {
            let mut stream = watcher(api, watcher::Config::default())
                .default_backoff()
                .applied_objects()
                .boxed();
            while let Some(event) = stream.next().await {
                match event {
                    Ok(obj) => t.cep_event(&obj),
                    Err(_) => t.watch_error(),
                }
            }
        }));
    }
    handles
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn slice(name: &str, svc: &str, port: &str, eps: &[(&str, bool)]) -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4",
            "ports": [{"name": port, "port": 9001}],
            "endpoints": eps.iter().map(|(a, r)| json!({"addresses": [a], "conditions": {"ready": r}})).collect::<Vec<_>>(),
        }))
        .unwrap_or_default()
    }

    fn endpoints(name: &str, port: &str, ready: &[&str], not_ready: &[&str]) -> Endpoints {
        let addrs = |l: &[&str]| l.iter().map(|a| json!({"ip": a})).collect::<Vec<_>>();
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "subsets": [{"ports": [{"name": port, "port": 9001}], "addresses": addrs(ready), "notReadyAddresses": addrs(not_ready)}],
        }))
        .unwrap_or_default()
    }

    #[test]
    fn combined_state_needs_slices_and_endpoints_to_agree() {
        let keys = vec!["a/p/198.19.0.1".to_string(), "a/p/198.19.0.2".to_string()];
        let t = Tracker::new(keys.clone(), true);
        // Slice a-p-1: host 1 ready, host 2 as given.
        let slice_with_host_2 = |ready: bool| {
            slice(
                "a-p-1",
                "a",
                "p",
                &[("198.19.0.1", true), ("198.19.0.2", ready)],
            )
        };
        t.slice_event(&slice_with_host_2(false), false);
        assert_eq!(t.counts(), (0, 0, 2));
        t.endpoints_event(
            &endpoints("a", "p", &["198.19.0.1"], &["198.19.0.2"]),
            false,
        );
        assert_eq!(t.counts(), (1, 1, 2));
        assert!(t.stamps(&keys[..1], Combined::Ready)[0].is_some());
        assert!(t.stamps(&keys[1..], Combined::NotReady)[0].is_some());
        // Host 2 recovers in the slice only: unknown until Endpoints agrees.
        t.reset_stamps(&keys[1..]);
        t.slice_event(&slice_with_host_2(true), false);
        assert_eq!(t.counts(), (1, 0, 2));
        t.endpoints_event(
            &endpoints("a", "p", &["198.19.0.1", "198.19.0.2"], &[]),
            false,
        );
        assert_eq!(t.counts(), (2, 0, 2));
        assert!(t.stamps(&keys[1..], Combined::Ready)[0].is_some());
        // A deleted slice forgets its endpoints.
        t.slice_event(&slice("a-p-1", "a", "p", &[]), true);
        assert_eq!(t.counts(), (0, 0, 2));
    }

    #[test]
    fn a_target_listed_and_then_removed_is_not_ready() {
        use Combined::*;
        let said = in_rotation;
        // Never listed: nothing said. Listed, then removed: not ready.
        assert_eq!(said(None, false), None);
        assert_eq!(said(None, true), Some(false));
        assert_eq!(said(Some(true), true), Some(true));
        // Removed from both: not routable.
        let removed = said(None, true);
        assert_eq!(judge(removed, removed, true), NotReady);
        assert_eq!(judge(removed, None, false), NotReady);
        // Removed from one, listed not ready in the other: not routable.
        assert_eq!(judge(removed, Some(false), true), NotReady);
        // Removed from one, still ready in the other: they disagree.
        assert_eq!(judge(removed, Some(true), true), Unknown);
        // One source has not listed it yet: unknown.
        assert_eq!(judge(Some(false), None, true), Unknown);
        assert_eq!(judge(Some(true), Some(true), true), Ready);
        assert_eq!(judge(Some(true), None, false), Ready);
    }

    #[test]
    fn a_controller_that_removes_failing_hosts_is_judged_by_their_absence() {
        let keys = vec!["a/p/198.19.0.1".to_string(), "a/p/198.19.0.2".to_string()];
        let t = Tracker::new(keys.clone(), true);
        let both = [("198.19.0.1", true), ("198.19.0.2", true)];
        t.slice_event(&slice("a-p-1", "a", "p", &both), false);
        t.endpoints_event(
            &endpoints("a", "p", &["198.19.0.1", "198.19.0.2"], &[]),
            false,
        );
        assert_eq!(t.counts(), (2, 0, 2));
        // Host 2 fails: the controller drops it from the slice first (its
        // Endpoints still say ready: unknown), then from the Endpoints.
        t.reset_stamps(&keys[1..]);
        t.slice_event(&slice("a-p-1", "a", "p", &both[..1]), false);
        assert_eq!(t.counts(), (1, 0, 2));
        assert_eq!(t.stamps(&keys[1..], Combined::NotReady), vec![None]);
        t.endpoints_event(&endpoints("a", "p", &["198.19.0.1"], &[]), false);
        assert_eq!(t.counts(), (1, 1, 2));
        assert!(t.stamps(&keys[1..], Combined::NotReady)[0].is_some());
        // Back in both: ready again.
        t.slice_event(&slice("a-p-1", "a", "p", &both), false);
        t.endpoints_event(
            &endpoints("a", "p", &["198.19.0.1", "198.19.0.2"], &[]),
            false,
        );
        assert_eq!(t.counts(), (2, 0, 2));
        assert!(t.stamps(&keys[1..], Combined::Ready)[0].is_some());
    }

    #[test]
    fn slices_alone_when_endpoints_are_not_checked() {
        let t = Tracker::new(vec!["a/p/198.19.0.1".to_string()], false);
        t.slice_event(&slice("a-p-1", "a", "p", &[("198.19.0.1", true)]), false);
        assert_eq!(t.counts(), (1, 0, 1));
    }

    #[test]
    fn status_reports_state_unless_pending_or_stale() {
        assert!(reports_state(
            &json!({"status": {"phase": "UnHealthy", "observedGeneration": 1}}),
            Some(1)
        ));
        assert!(reports_state(
            &json!({"status": {"phase": "Healthy"}}),
            Some(3)
        ));
        assert!(!reports_state(
            &json!({"status": {"phase": "Pending", "observedGeneration": 1}}),
            Some(1)
        ));
        assert!(!reports_state(
            &json!({"status": {"phase": "Healthy", "observedGeneration": 1}}),
            Some(2)
        ));
        assert!(!reports_state(&json!({}), Some(1)));
    }
}
