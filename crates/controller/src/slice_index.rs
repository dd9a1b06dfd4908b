//! The cached EndpointSlices of each Service, by namespace and the
//! `kubernetes.io/service-name` label, so that a reconcile finds its
//! object's slices without scanning the whole slice cache.
//!
//! A scan costs O(slices in the cache) per reconcile, O(N²) over a fleet
//! being created: at 10,000 objects it was most of the controller's CPU
//! while converging, CPU that kube-apiserver on the same node needed.
//!
//! The index only points into the reflector's store, which stays the truth:
//! a lookup reads each named slice from the store and keeps it only if it
//! is still there and still labelled for that Service; names that fail are
//! pruned then. So a delete missed while the watch was down (a re-list
//! replaces the store without per-object deletes) or a relabelled slice
//! never yields a wrong answer, and costs one stale name until the next
//! lookup of its Service.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;

use crate::builder::LABEL_SERVICE_NAME;

/// (namespace, Service name).
type ServiceKey = (String, String);

/// Slice names by the Service they are labelled for. Cheap to clone (shared).
#[derive(Clone, Debug, Default)]
pub struct SliceIndex {
    names: Arc<Mutex<HashMap<ServiceKey, BTreeSet<String>>>>,
}

impl SliceIndex {
    /// Follow one watch event (after the store has applied it).
    pub fn observe(&self, event: &watcher::Event<EndpointSlice>) {
        match event {
            watcher::Event::Apply(slice) | watcher::Event::InitApply(slice) => {
                if let Some(key) = service_key(slice) {
                    self.lock().entry(key).or_default().insert(slice.name_any());
                }
            }
            watcher::Event::Delete(slice) => {
                if let Some(key) = service_key(slice) {
                    let mut names = self.lock();
                    if let Some(set) = names.get_mut(&key) {
                        set.remove(&slice.name_any());
                        if set.is_empty() {
                            names.remove(&key);
                        }
                    }
                }
            }
            watcher::Event::Init | watcher::Event::InitDone => {}
        }
    }

    /// The slices in `store` labelled for Service `namespace`/`service`,
    /// sorted by name.
    pub fn slices(
        &self,
        store: &Store<EndpointSlice>,
        namespace: &str,
        service: &str,
    ) -> Vec<Arc<EndpointSlice>> {
        let key = (namespace.to_string(), service.to_string());
        let mut names = self.lock();
        let Some(set) = names.get_mut(&key) else {
            return Vec::new();
        };
        let mut found = Vec::with_capacity(set.len());
        set.retain(|name| {
            let slice = store
                .get(&ObjectRef::new(name).within(namespace))
                .filter(|s| {
                    s.labels().get(LABEL_SERVICE_NAME).map(String::as_str) == Some(service)
                });
            found.extend(slice.clone());
            slice.is_some()
        });
        if set.is_empty() {
            names.remove(&key);
        }
        found
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<ServiceKey, BTreeSet<String>>> {
        // The map is consistent after every statement: a panic elsewhere
        // while it was held leaves nothing half-done.
        self.names.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn service_key(slice: &EndpointSlice) -> Option<ServiceKey> {
    Some((
        slice.namespace()?,
        slice.labels().get(LABEL_SERVICE_NAME)?.clone(),
    ))
}

#[cfg(test)]
#[path = "slice_index_tests.rs"]
mod tests;
