//! The vocabulary the controller's shell shares: which object ([`CepKey`]),
//! the fixed [`Settings`], the watch [`Caches`] and the [`Context`] every
//! reconcile gets.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Client;
use kube::core::{ApiResource, DynamicObject};
use kube::runtime::events::Recorder;
use kube::runtime::reflector::Store;
use kube_endpoints_api::Condition;
use kube_endpoints_probe::Scheduler;

use crate::backoff::Backoff;
use crate::budget::{Budget, ObjectKey};
use crate::builder::BuildSettings;
use crate::cluster_ranges::RangesReceiver;
use crate::consent::AdoptionPolicy;
use crate::event_limit::EventLimiter;
use crate::fleet_guard::{FleetGuard, FleetGuardSettings};
use crate::metrics::Metrics;
use crate::policy::AddressPolicy;

pub use crate::cep_key::CepKey;

/// Settings that do not change while running.
#[derive(Clone, Debug)]
pub struct Settings {
    /// How the objects are built.
    pub build: BuildSettings,
    /// Reconciles running at once, per served group and namespace scope.
    pub max_concurrent_reconciles: u16,
    /// The operator's address policy (`--allowed-cidrs`, `--denied-cidrs`).
    pub policy: AddressPolicy,
    /// When a hand-made Service or Endpoints may be adopted.
    pub adoption: AdoptionPolicy,
    /// Probes in flight at once, per scope's probe engine.
    pub max_in_flight_probes: usize,
    /// Read the Secrets and ConfigMaps labelled for probe credentials
    /// (`--probe-credentials`).
    pub probe_credentials: bool,
    /// TLS certificates expiring within this raise `CertificateExpiring`
    /// (`--cert-expiry-warning-days`); `None`: never.
    pub cert_expiry_warning: Option<std::time::Duration>,
    /// When the fleet guard trips ([`crate::fleet_guard`]).
    pub fleet_guard: FleetGuardSettings,
    /// Where hosts given as DNS names are resolved, and the TTL bounds
    /// (`--dns-server`, `--dns-min-ttl`, `--dns-max-ttl`).
    pub dns: crate::resolve::ResolverSettings,
    /// With `--shards` > 1: the one shard whose objects this controller
    /// reconciles (the others' objects are filtered out of its stream).
    pub shard: Option<crate::sharding::Shard>,
}

/// What every scope of the process shares.
#[derive(Clone)]
pub struct Shared {
    /// The cluster's own ranges, kept current by discovery.
    pub ranges: RangesReceiver,
    /// The target budgets.
    pub budget: Arc<Budget>,
    /// Fed by every scope's probe transitions; holds failures that came
    /// all at once.
    pub fleet_guard: Arc<FleetGuard<ObjectKey>>,
    /// The DNS client every scope's name workers ask.
    pub dns: crate::resolve::Lookup,
}

/// Caches of the objects the controller writes, kept by watches so that a
/// reconcile reads nothing from the API.
#[derive(Clone)]
pub struct Caches {
    pub services: Store<Service>,
    pub endpoints: Store<Endpoints>,
    /// Only slices labelled with our controller id.
    pub slices: Store<EndpointSlice>,
    /// `slices` by the Service they are labelled for.
    pub slices_by_service: crate::slice_index::SliceIndex,
}

/// What every reconcile of one scope (API group and namespace) shares.
pub struct Context {
    pub client: Client,
    /// The ClusterEndpoint resource of this scope's group.
    pub resource: ApiResource,
    pub scheduler: Scheduler<CepKey>,
    /// The workers resolving the hosts given as DNS names.
    pub resolver: crate::resolve::Resolver<CepKey>,
    pub settings: Settings,
    pub caches: Caches,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    /// The ClusterEndpoints of this scope, as watched (undecoded).
    pub objects: Store<DynamicObject>,
    /// Retry delays of objects whose writes fail.
    pub backoff: Backoff<CepKey>,
    /// The conditions each object's Warning Events were last decided on,
    /// so that a status write that keeps failing does not repeat them.
    pub announced: Mutex<HashMap<CepKey, Vec<Condition>>>,
    pub shared: Shared,
    /// Per-object Event rate.
    pub event_limiter: EventLimiter<CepKey>,
    /// The labelled Secrets and ConfigMaps (`None` with
    /// `--probe-credentials=false`).
    pub credentials: Option<crate::credentials::Stores>,
    /// The certificates each object's `CertificateExpiring` Events were
    /// last decided on, as `announced` is for conditions.
    pub announced_certificates:
        Mutex<HashMap<CepKey, std::collections::BTreeSet<crate::certificates::Expiring>>>,
    /// The drained hosts and promoted backups each object's Events were
    /// last decided on, as `announced` is for conditions.
    pub announced_hosts:
        Mutex<HashMap<CepKey, std::collections::BTreeSet<crate::host_report::Role>>>,
}

impl Context {
    /// Stop probing an object and drop what is remembered about it.
    pub fn forget(&self, key: &CepKey) {
        self.scheduler.remove(key);
        let group = &self.resource.group;
        let total = self.metrics.target_total();
        self.shared
            .fleet_guard
            .forget(&crate::budget::key(group, key), total);
        self.resolver.remove(key);
        self.metrics.forget_object(&key.namespace, &key.name);
        self.backoff.reset(key);
        self.event_limiter.forget(key);
        self.announced
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
        self.announced_certificates
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
        self.announced_hosts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}
