//! Probe credentials: the Secrets and ConfigMaps ClusterEndpoints refer to
//! (CA bundles, client certificates, header values), read from watch caches
//! that select on the opt-in label `kube-endpoints.io/probe-credentials:
//! "true"`, so the controller never lists, caches or reads any other Secret.
//!
//! [`Resolver`] answers `plan`'s lookups for one object's namespace (a
//! reference can name nothing outside it); [`watch`] keeps the caches and
//! reports which Secret or ConfigMap changed, and [`affected`] finds the
//! objects that refer to it, to reconcile them. Values never leave this
//! module but as [`Sensitive`].

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::Api;
use kube::core::DynamicObject;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use kube_endpoints_api::LABEL_PROBE_CREDENTIALS;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::cep_key::CepKey;
use crate::decode::decode;
use crate::metrics::Metrics;
use crate::plan::{Lookup, Resolve, Sensitive, SourceKind, references};
use crate::watch_cache::{Cached, spawn_until_shutdown};

/// The label selector of the credential watches.
pub fn selector() -> String {
    format!("{LABEL_PROBE_CREDENTIALS}=true")
}

/// The caches of labelled Secrets and ConfigMaps of one scope.
#[derive(Clone)]
pub struct Stores {
    pub secrets: Store<Secret>,
    pub config_maps: Store<ConfigMap>,
}

/// A Secret or ConfigMap that was created, changed or deleted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Changed {
    pub kind: SourceKind,
    pub namespace: String,
    pub name: String,
}

/// Lookups in one namespace. `stores` is `None` when reading credentials
/// is turned off (`--probe-credentials=false`): every reference is then
/// reported missing, saying so.
pub struct Resolver<'a> {
    pub stores: Option<&'a Stores>,
    pub namespace: &'a str,
}

impl Resolve for Resolver<'_> {
    fn lookup(&self, kind: SourceKind, name: &str, key: &str) -> Lookup {
        let Some(stores) = self.stores else {
            return Lookup::Missing(format!(
                "{} {name:?} cannot be read: the controller runs with --probe-credentials=false",
                kind.as_str()
            ));
        };
        let not_found = || {
            Lookup::Missing(format!(
                "{} {name:?} not found in namespace {:?} (only those labelled {LABEL_PROBE_CREDENTIALS}: \"true\" are read)",
                kind.as_str(),
                self.namespace
            ))
        };
        // `None`: no such object; `Some(None)`: the object has no such key.
        let value: Option<Option<Vec<u8>>> = match kind {
            SourceKind::Secret => stores
                .secrets
                .get(&ObjectRef::new(name).within(self.namespace))
                .map(|secret| Some(secret.data.as_ref()?.get(key)?.0.clone())),
            SourceKind::ConfigMap => stores
                .config_maps
                .get(&ObjectRef::new(name).within(self.namespace))
                .map(|config_map| {
                    let text = config_map.data.as_ref().and_then(|d| d.get(key));
                    match text {
                        Some(text) => Some(text.as_bytes().to_vec()),
                        None => Some(config_map.binary_data.as_ref()?.get(key)?.0.clone()),
                    }
                }),
        };
        match value {
            None => not_found(),
            Some(None) => Lookup::Missing(format!("{} {name:?} has no key {key:?}", kind.as_str())),
            Some(Some(bytes)) => Lookup::Found(Sensitive::new(bytes)),
        }
    }
}

/// Start the two label-selected watches of `namespace` (all when `None`).
/// Changes after the initial list are sent on `changed`; the initial list
/// is not (every object is reconciled at start anyway).
pub fn watch(
    client: &Client,
    namespace: Option<&str>,
    changed: mpsc::UnboundedSender<Changed>,
    metrics: &Arc<Metrics>,
    scope: &str,
    shutdown: &CancellationToken,
) -> Stores {
    Stores {
        secrets: cache::<Secret>(
            client,
            namespace,
            SourceKind::Secret,
            changed.clone(),
            metrics,
            format!("{scope}secrets"),
            shutdown,
        ),
        config_maps: cache::<ConfigMap>(
            client,
            namespace,
            SourceKind::ConfigMap,
            changed,
            metrics,
            format!("{scope}configmaps"),
            shutdown,
        ),
    }
}

fn cache<K>(
    client: &Client,
    namespace: Option<&str>,
    kind: SourceKind,
    changed: mpsc::UnboundedSender<Changed>,
    metrics: &Arc<Metrics>,
    watch: String,
    shutdown: &CancellationToken,
) -> Store<K>
where
    K: Cached + Resource<Scope = k8s_openapi::NamespaceResourceScope>,
{
    let api: Api<K> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let (reader, writer) = reflector::store();
    let metrics = metrics.clone();
    let resource = match kind {
        SourceKind::Secret => "secrets",
        SourceKind::ConfigMap => "configmaps",
    };
    let stream = watcher(api, watcher::Config::default().labels(&selector()))
        .default_backoff()
        .modify(|o: &mut K| o.meta_mut().managed_fields = None)
        .reflect(writer)
        .for_each(move |event| {
            metrics.watch_event(&watch, resource, event.is_ok());
            match event {
                Ok(watcher::Event::Apply(o) | watcher::Event::Delete(o)) => {
                    if let Some(namespace) = o.namespace() {
                        let _ = changed.send(Changed {
                            kind,
                            namespace,
                            name: o.name_any(),
                        });
                    }
                }
                Ok(_) => {}
                // Never the object: an error names the watch only.
                Err(e) => warn!(watch = %watch, error = %e, "watch error; retrying with backoff"),
            }
            futures::future::ready(())
        });
    spawn_until_shutdown(stream, shutdown);
    reader
}

/// The objects of `objects` that refer to `changed`.
pub fn affected(objects: &Store<DynamicObject>, changed: &Changed) -> Vec<CepKey> {
    objects
        .state()
        .iter()
        .filter(|o| o.namespace().as_deref() == Some(changed.namespace.as_str()))
        .filter(|o| {
            decode(o).spec.as_ref().is_ok_and(|spec| {
                references(spec)
                    .iter()
                    .any(|(kind, name)| *kind == changed.kind && *name == changed.name)
            })
        })
        .filter_map(|o| CepKey::of(o.as_ref()).ok())
        .collect()
}

#[cfg(test)]
#[path = "credentials_tests.rs"]
mod tests;
