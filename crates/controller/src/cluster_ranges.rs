//! Discovery of the cluster's own ranges, which the address policy
//! ([`crate::policy`]) denies by default: the Service CIDRs (ServiceCIDR
//! objects of networking.k8s.io/v1 where the apiserver serves them, and
//! `--service-cidrs`), the nodes' `spec.podCIDRs` and `status.addresses`,
//! and kube-apiserver's own addresses (the endpoints of `default/kubernetes`).
//!
//! Watches keep small caches of these (nodes stripped to the two fields);
//! every change recomputes the ranges ([`ranges`], pure) and, when they
//! differ, publishes them on a `watch` channel that every scope reads and
//! reacts to (re-reconciling the objects whose verdicts changed).

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::sync::Arc;

use futures::StreamExt;
use ipnet::IpNet;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{Endpoints, Node, NodeSpec, NodeStatus};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::ServiceCIDR;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::policy::{ClusterRanges, RangeKind};
use crate::watch_cache::{Cached, spawn_until_shutdown};

/// Which of the cluster's ranges are denied (`--deny-cluster-ranges`):
/// `services` (ServiceCIDRs and `--service-cidrs`), `pods` (the nodes'
/// `spec.podCIDRs`), `nodes` (the nodes' `status.addresses`), `apiserver`
/// (the endpoints of `default/kubernetes`), or `none`. (No doc comments on
/// the variants: clap would switch all of `--help` to its long layout.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum RangeSource {
    Services,
    Pods,
    Nodes,
    Apiserver,
    None,
}

/// What discovery watches.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DiscoverySettings {
    pub sources: BTreeSet<RangeSource>,
    /// Service CIDRs given by flag: the only ones on apiservers that do not
    /// serve ServiceCIDR objects (before 1.33), added to them otherwise.
    pub service_cidrs: Vec<IpNet>,
}

impl DiscoverySettings {
    fn wants(&self, source: RangeSource) -> bool {
        self.sources.contains(&source) && !self.sources.contains(&RangeSource::None)
    }

    fn wants_nodes(&self) -> bool {
        self.wants(RangeSource::Pods) || self.wants(RangeSource::Nodes)
    }
}

/// Everything the ranges are computed from.
#[derive(Default)]
pub struct Sources<'a> {
    pub service_cidrs: Vec<&'a ServiceCIDR>,
    pub nodes: Vec<&'a Node>,
    /// `default/kubernetes`.
    pub apiserver_endpoints: Option<&'a Endpoints>,
    /// The EndpointSlices of `default/kubernetes`.
    pub apiserver_slices: Vec<&'a EndpointSlice>,
}

/// The cluster's ranges from its objects (pure); values that do not parse
/// (a hostname among a node's addresses) are skipped.
pub fn ranges(settings: &DiscoverySettings, sources: &Sources<'_>) -> ClusterRanges {
    let mut ranges = ClusterRanges::default();
    if settings.wants(RangeSource::Services) {
        for net in &settings.service_cidrs {
            ranges.insert(*net, RangeKind::Service);
        }
        for cidr in sources
            .service_cidrs
            .iter()
            .filter_map(|s| s.spec.as_ref())
            .flat_map(|s| s.cidrs.iter().flatten())
        {
            if let Some(net) = parse_net(cidr) {
                ranges.insert(net, RangeKind::Service);
            }
        }
    }
    for node in &sources.nodes {
        let name = node.name_any();
        if settings.wants(RangeSource::Pods) {
            let spec = node.spec.as_ref();
            let cidrs = spec
                .and_then(|s| s.pod_cidrs.clone())
                .into_iter()
                .flatten()
                .chain(spec.and_then(|s| s.pod_cidr.clone()));
            for cidr in cidrs {
                if let Some(net) = parse_net(&cidr) {
                    ranges.insert(net, RangeKind::PodRange { node: name.clone() });
                }
            }
        }
        if settings.wants(RangeSource::Nodes) {
            let addresses = node.status.as_ref().and_then(|s| s.addresses.as_ref());
            for address in addresses.into_iter().flatten() {
                if let Some(net) = parse_net(&address.address) {
                    ranges.insert(net, RangeKind::NodeAddress { node: name.clone() });
                }
            }
        }
    }
    if settings.wants(RangeSource::Apiserver) {
        let from_endpoints = sources
            .apiserver_endpoints
            .and_then(|e| e.subsets.as_ref())
            .into_iter()
            .flatten()
            .flat_map(crate::builder::subset_addresses)
            .map(|a| a.ip.clone());
        let from_slices = sources
            .apiserver_slices
            .iter()
            .flat_map(|s| s.endpoints.iter())
            .flat_map(|e| e.addresses.iter().cloned());
        for address in from_endpoints.chain(from_slices) {
            if let Some(net) = parse_net(&address) {
                ranges.insert(net, RangeKind::Apiserver);
            }
        }
    }
    ranges
}

/// A CIDR, or a single address as its /32 or /128.
pub fn parse_net(s: &str) -> Option<IpNet> {
    let s = s.trim();
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(IpNet::from))
}

/// The published ranges: a constant when nothing is discovered.
pub type RangesReceiver = watch::Receiver<Arc<ClusterRanges>>;

/// The ranges from the flags alone (no discovery).
pub fn fixed(settings: &DiscoverySettings) -> RangesReceiver {
    let (tx, rx) = watch::channel(Arc::new(ranges(settings, &Sources::default())));
    // The receiver keeps the last value when the sender is gone.
    drop(tx);
    rx
}

#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("stopped before the cluster's ranges were known")]
    Stopped,
}

/// Start the watches and return once every cache has synced, with the
/// ranges as a watch channel kept up to date until `shutdown`.
pub async fn discover(
    client: Client,
    settings: DiscoverySettings,
    shutdown: CancellationToken,
) -> Result<RangesReceiver, DiscoveryError> {
    let serves_service_cidrs =
        settings.wants(RangeSource::Services) && serves_service_cidrs(&client).await;
    if settings.wants(RangeSource::Services) && !serves_service_cidrs {
        info!(
            flags = ?settings.service_cidrs,
            "the apiserver serves no networking.k8s.io/v1 ServiceCIDRs: the Service ranges come from --service-cidrs only"
        );
    }
    let (changed_tx, changed_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let caches = Caches {
        service_cidrs: serves_service_cidrs.then(|| {
            cache(
                Api::<ServiceCIDR>::all(client.clone()),
                watcher::Config::default(),
                |_| {},
                &changed_tx,
                &shutdown,
            )
        }),
        nodes: settings.wants_nodes().then(|| {
            cache(
                Api::<Node>::all(client.clone()),
                watcher::Config::default(),
                keep_ranges_only,
                &changed_tx,
                &shutdown,
            )
        }),
        endpoints: settings
            .wants(RangeSource::Apiserver)
            .then(|| kubernetes_object::<Endpoints>(&client, &changed_tx, &shutdown)),
        slices: settings
            .wants(RangeSource::Apiserver)
            .then(|| kubernetes_object::<EndpointSlice>(&client, &changed_tx, &shutdown)),
    };
    drop(changed_tx);
    caches.wait_until_ready(&shutdown).await?;
    let first = caches.compute(&settings);
    log_ranges(&first);
    let (tx, rx) = watch::channel(Arc::new(first));
    tokio::spawn(publish(caches, settings, changed_rx, tx, shutdown));
    Ok(rx)
}

struct Caches {
    service_cidrs: Option<Store<ServiceCIDR>>,
    nodes: Option<Store<Node>>,
    endpoints: Option<Store<Endpoints>>,
    slices: Option<Store<EndpointSlice>>,
}

impl Caches {
    async fn wait_until_ready(&self, shutdown: &CancellationToken) -> Result<(), DiscoveryError> {
        let ready = async {
            let mut results = Vec::new();
            if let Some(s) = &self.service_cidrs {
                results.push(s.wait_until_ready().await.is_ok());
            }
            if let Some(s) = &self.nodes {
                results.push(s.wait_until_ready().await.is_ok());
            }
            if let Some(s) = &self.endpoints {
                results.push(s.wait_until_ready().await.is_ok());
            }
            if let Some(s) = &self.slices {
                results.push(s.wait_until_ready().await.is_ok());
            }
            results.into_iter().all(|ok| ok)
        };
        tokio::select! {
            ok = ready => if ok { Ok(()) } else { Err(DiscoveryError::Stopped) },
            () = shutdown.cancelled() => Err(DiscoveryError::Stopped),
        }
    }

    fn compute(&self, settings: &DiscoverySettings) -> ClusterRanges {
        let service_cidrs: Vec<Arc<ServiceCIDR>> = state(&self.service_cidrs);
        let nodes: Vec<Arc<Node>> = state(&self.nodes);
        let endpoints: Vec<Arc<Endpoints>> = state(&self.endpoints);
        let slices: Vec<Arc<EndpointSlice>> = state(&self.slices);
        ranges(
            settings,
            &Sources {
                service_cidrs: service_cidrs.iter().map(Arc::as_ref).collect(),
                nodes: nodes.iter().map(Arc::as_ref).collect(),
                apiserver_endpoints: endpoints.first().map(Arc::as_ref),
                apiserver_slices: slices.iter().map(Arc::as_ref).collect(),
            },
        )
    }
}

fn state<K>(store: &Option<Store<K>>) -> Vec<Arc<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    store.as_ref().map(Store::state).unwrap_or_default()
}

/// Recompute on every change; publish only what differs.
async fn publish(
    caches: Caches,
    settings: DiscoverySettings,
    mut changed: tokio::sync::mpsc::UnboundedReceiver<()>,
    tx: watch::Sender<Arc<ClusterRanges>>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            got = changed.recv() => if got.is_none() { return },
            () = shutdown.cancelled() => return,
        }
        // Fold a burst of changes (a node re-list) into one computation.
        while changed.try_recv().is_ok() {}
        let next = caches.compute(&settings);
        tx.send_if_modified(|current| {
            if **current == next {
                return false;
            }
            log_ranges(&next);
            *current = Arc::new(next);
            true
        });
    }
}

fn log_ranges(ranges: &ClusterRanges) {
    let listed: Vec<String> = ranges
        .iter()
        .take(20)
        .map(|(net, kind)| format!("{net} ({kind:?})"))
        .collect();
    info!(ranges = %listed.join(", "), "the cluster's own ranges (denied by the address policy)");
}

/// Does the apiserver serve networking.k8s.io/v1 ServiceCIDRs?
async fn serves_service_cidrs(client: &Client) -> bool {
    match client
        .list_api_group_resources("networking.k8s.io/v1")
        .await
    {
        Ok(list) => list.resources.iter().any(|r| r.name == "servicecidrs"),
        Err(e) => {
            warn!(error = %e, "cannot list networking.k8s.io/v1 resources; assuming no ServiceCIDRs");
            false
        }
    }
}

/// What a reflector cache (and its watch) needs of the objects it holds.
/// The `default/kubernetes` object of kind `K` (Endpoints or EndpointSlice),
/// which lists kube-apiserver's own addresses, cached as [`cache`] does.
fn kubernetes_object<K>(
    client: &Client,
    changed: &tokio::sync::mpsc::UnboundedSender<()>,
    shutdown: &CancellationToken,
) -> Store<K>
where
    K: Cached + Resource<Scope = NamespaceResourceScope>,
{
    cache(
        Api::namespaced(client.clone(), "default"),
        watcher::Config::default().fields("metadata.name=kubernetes"),
        drop_managed_fields,
        changed,
        shutdown,
    )
}

/// A cache of `K` whose every change is announced on `changed`.
fn cache<K>(
    api: Api<K>,
    config: watcher::Config,
    modify: fn(&mut K),
    changed: &tokio::sync::mpsc::UnboundedSender<()>,
    shutdown: &CancellationToken,
) -> Store<K>
where
    K: Cached,
{
    let (reader, writer) = reflector::store();
    let changed = changed.clone();
    let stream = watcher(api, config)
        .default_backoff()
        .modify(modify)
        .reflect(writer)
        .for_each(move |event| {
            match event {
                Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => {}
                Ok(_) => {
                    let _ = changed.send(());
                }
                Err(e) => warn!(error = %e, "cluster-range watch error; retrying with backoff"),
            }
            futures::future::ready(())
        });
    spawn_until_shutdown(stream, shutdown);
    reader
}

fn drop_managed_fields<K: Resource>(obj: &mut K) {
    obj.meta_mut().managed_fields = None;
}

/// Nodes are large (images, conditions); keep the two fields we read.
fn keep_ranges_only(node: &mut Node) {
    node.metadata = ObjectMeta {
        name: node.metadata.name.take(),
        resource_version: node.metadata.resource_version.take(),
        ..ObjectMeta::default()
    };
    node.spec = node.spec.take().map(|s| NodeSpec {
        pod_cidr: s.pod_cidr,
        pod_cidrs: s.pod_cidrs,
        ..NodeSpec::default()
    });
    node.status = node.status.take().map(|s| NodeStatus {
        addresses: s.addresses,
        ..NodeStatus::default()
    });
}

#[cfg(test)]
#[path = "cluster_ranges_tests.rs"]
mod tests;
