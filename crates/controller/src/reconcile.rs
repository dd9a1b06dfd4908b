//! Reconcile: the thin imperative shell. Read (from caches), validate and
//! build (pure), apply what differs, record status and Events.
//!
//! Probing never happens here: the probe engine runs every target on its own
//! schedule and a health transition merely triggers a reconcile of its object.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::core::ApiResource;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};
use kube_endpoints_api::{ClusterEndpointStatus, Condition, DynClusterEndpoint};
use kube_endpoints_probe::{Scheduler, TargetId};
use serde::Serialize;
use serde_json::{Value, json};
use tracing::{debug, info, warn};

use crate::builder::{self, Owner, Ownership, StatusInput, Sync};
use crate::diff::contains;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::plan::{Plan, plan};

/// Identifies a ClusterEndpoint within one controller (whose group is fixed).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CepKey {
    pub namespace: String,
    pub name: String,
}

impl CepKey {
    pub fn of(cep: &DynClusterEndpoint) -> Result<Self> {
        Ok(CepKey {
            namespace: cep
                .namespace()
                .ok_or(Error::MissingField("metadata.namespace"))?,
            name: cep.name_any(),
        })
    }

    pub fn object_ref(&self, resource: &ApiResource) -> ObjectRef<DynClusterEndpoint> {
        ObjectRef::new_with(&self.name, resource.clone()).within(&self.namespace)
    }
}

/// Settings that do not change while running.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Value of the EndpointSlice managed-by label.
    pub controller_id: String,
    /// Server-side apply field manager.
    pub field_manager: String,
    /// Keep the compatibility core/v1 Endpoints object.
    pub write_endpoints: bool,
    /// Reconciles running at once, per served group and namespace scope.
    pub max_concurrent_reconciles: u16,
}

/// Caches of the objects the controller writes, kept by watches so that a
/// reconcile reads nothing from the API.
#[derive(Clone)]
pub struct Caches {
    pub services: Store<Service>,
    pub endpoints: Store<Endpoints>,
    pub slices: Store<EndpointSlice>,
}

pub struct Context {
    pub client: Client,
    pub resource: ApiResource,
    pub scheduler: Scheduler<CepKey>,
    pub settings: Settings,
    pub caches: Caches,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
}

impl Context {
    /// Stop probing an object and drop its per-host series.
    pub fn forget(&self, key: &CepKey) {
        self.scheduler.remove(key);
        self.metrics.forget_object(&key.namespace, &key.name);
    }
}

/// How long to wait before retrying a sync that failed (the API may recover,
/// or the user may fix a conflicting object, which also triggers us).
const RETRY_AFTER: Duration = Duration::from_secs(30);

pub async fn reconcile(cep: Arc<DynClusterEndpoint>, ctx: Arc<Context>) -> Result<Action> {
    let started = std::time::Instant::now();
    ctx.metrics.reconciles.inc();
    let result = reconcile_inner(&cep, &ctx).await;
    ctx.metrics
        .reconcile_duration
        .observe(started.elapsed().as_secs_f64());
    result
}

pub fn error_policy(_cep: Arc<DynClusterEndpoint>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics
        .reconcile_errors
        .get_or_create(&crate::metrics::ReasonLabels {
            reason: error.reason().to_string(),
        })
        .inc();
    warn!(reason = error.reason(), %error, "reconcile failed");
    Action::requeue(Duration::from_secs(5))
}

async fn reconcile_inner(cep: &DynClusterEndpoint, ctx: &Context) -> Result<Action> {
    let key = CepKey::of(cep)?;
    if cep.metadata.deletion_timestamp.is_some() {
        // Owner references let the garbage collector remove what we wrote.
        ctx.forget(&key);
        return Ok(Action::await_change());
    }
    let owner = Owner {
        api_version: ctx.resource.api_version.clone(),
        kind: ctx.resource.kind.clone(),
        name: key.name.clone(),
        namespace: key.namespace.clone(),
        uid: cep.uid().ok_or(Error::MissingField("metadata.uid"))?,
    };
    let planned = plan(&key.name, &cep.spec);
    let (service_sync, endpoints_sync, health) = match &planned {
        Ok(plan) => {
            let seed =
                builder::seed_from_slices(plan, own_slices(ctx, &owner).iter().map(Arc::as_ref));
            ctx.scheduler
                .sync(&key, plan.targets(), |id: &TargetId| seed.get(id).copied());
            let health = ctx.scheduler.health(&key);
            ctx.metrics.set_host_readiness(
                &key.namespace,
                &key.name,
                health.iter().map(|(id, h)| {
                    let ready = h.state == kube_endpoints_probe::HealthState::Ready;
                    (id.port.clone(), id.host.to_string(), ready)
                }),
            );
            let (service, endpoints) = sync_objects(ctx, &owner, plan, &health).await;
            (service, endpoints, health)
        }
        Err(_) => {
            // Stop probing a spec we cannot trust; keep what was written so
            // far in place rather than tearing down working endpoints.
            ctx.forget(&key);
            (Sync::Done, Sync::Done, BTreeMap::new())
        }
    };

    let now = builder::rfc3339(SystemTime::now());
    let previous = cep.status.as_ref();
    let status = builder::status(&StatusInput {
        generation: cep.metadata.generation,
        plan: planned.as_ref(),
        health: &health,
        service: service_sync.clone(),
        endpoints: endpoints_sync.clone(),
        previous,
        now: &now,
    });
    announce_condition_changes(ctx, cep, previous, &status).await;
    if previous != Some(&status) {
        write_status(ctx, &key, &status).await?;
    }
    match (&service_sync, &endpoints_sync) {
        (Sync::Failed { .. }, _) | (_, Sync::Failed { .. }) => Ok(Action::requeue(RETRY_AFTER)),
        _ => Ok(Action::await_change()),
    }
}

/// Service first (slices hang off it), then slices, then the compatibility
/// Endpoints. A refused Service stops the rest: our slices would otherwise
/// attach hosts to somebody else's Service.
async fn sync_objects(
    ctx: &Context,
    owner: &Owner,
    plan: &Plan,
    health: &BTreeMap<TargetId, kube_endpoints_probe::Health>,
) -> (Sync, Sync) {
    let service = match sync_service(ctx, owner, plan).await {
        Ok(()) => Sync::Done,
        Err(failed) => {
            let endpoints = Sync::Failed {
                reason: "ServiceNotSynced".into(),
                message: "endpoints are not written until the Service is synced".into(),
            };
            return (failed, endpoints);
        }
    };
    let mut endpoints = match sync_slices(ctx, owner, plan, health).await {
        Ok(()) => Sync::Done,
        Err(e) => failed_sync(&e),
    };
    if endpoints == Sync::Done
        && let Err(failed) = sync_endpoints(ctx, owner, plan, health).await
    {
        endpoints = failed;
    }
    (service, endpoints)
}

fn failed_sync(e: &Error) -> Sync {
    Sync::Failed {
        reason: e.reason().to_string(),
        message: e.to_string(),
    }
}

fn refused(r: builder::Refusal) -> Sync {
    Sync::Failed {
        reason: r.reason.to_string(),
        message: r.message,
    }
}

fn to_value<T: Serialize>(what: &'static str, obj: &T) -> Result<Value> {
    serde_json::to_value(obj).map_err(|source| Error::Serialize { what, source })
}

fn cached<K>(store: &Store<K>, owner: &Owner, name: &str) -> Option<Arc<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    store.get(&ObjectRef::new(name).within(&owner.namespace))
}

fn own_slices(ctx: &Context, owner: &Owner) -> Vec<Arc<EndpointSlice>> {
    ctx.caches.slices.state_filter(|s| {
        s.metadata.namespace.as_deref() == Some(owner.namespace.as_str())
            && s.labels().get(builder::LABEL_SERVICE_NAME) == Some(&owner.name)
            && s.labels().get(builder::LABEL_MANAGED_BY) == Some(&ctx.settings.controller_id)
            && s.owner_references().iter().any(|r| r.uid == owner.uid)
    })
}

async fn apply<K>(
    ctx: &Context,
    api: &Api<K>,
    name: &str,
    desired: &K,
    resource: &'static str,
) -> Result<K>
where
    K: Resource + Clone + Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let params = PatchParams::apply(&ctx.settings.field_manager).force();
    let applied = api.patch(name, &params, &Patch::Apply(desired)).await?;
    ctx.metrics.write(resource, "apply");
    Ok(applied)
}

async fn sync_service(ctx: &Context, owner: &Owner, plan: &Plan) -> Result<(), Sync> {
    let live = cached(&ctx.caches.services, owner, &owner.name);
    let decision = builder::service_ownership(live.as_deref(), owner, plan);
    if let Ownership::Refuse(r) = decision {
        return Err(refused(r));
    }
    let desired = builder::service(owner, plan);
    let desired_value = to_value("Service", &desired).map_err(|e| failed_sync(&e))?;
    let live_value = match &live {
        Some(l) => Some(to_value("Service", l.as_ref()).map_err(|e| failed_sync(&e))?),
        None => None,
    };
    if live_value
        .as_ref()
        .is_some_and(|l| contains(l, &desired_value))
    {
        return Ok(());
    }
    if decision == Ownership::Adopt {
        info!(namespace = %owner.namespace, name = %owner.name, "adopting existing Service");
    }
    let api: Api<Service> = Api::namespaced(ctx.client.clone(), &owner.namespace);
    let applied = apply(ctx, &api, &owner.name, &desired, "services")
        .await
        .map_err(|e| failed_sync(&e))?;
    prune_service_ports(ctx, &api, &applied, &desired)
        .await
        .map_err(|e| failed_sync(&e))
}

/// Ports another manager wrote (an adopted hand-made Service) survive our
/// apply; drop those that are not in the spec, guarded by resourceVersion.
async fn prune_service_ports(
    ctx: &Context,
    api: &Api<Service>,
    live: &Service,
    desired: &Service,
) -> Result<()> {
    let key = |p: &k8s_openapi::api::core::v1::ServicePort| {
        (p.port, p.protocol.clone().unwrap_or_else(|| "TCP".into()))
    };
    let wanted: Vec<_> = desired
        .spec
        .iter()
        .flat_map(|s| s.ports.iter().flatten())
        .map(key)
        .collect();
    let live_ports: Vec<_> = live
        .spec
        .iter()
        .flat_map(|s| s.ports.iter().flatten())
        .collect();
    if live_ports.iter().all(|p| wanted.contains(&key(p))) {
        return Ok(());
    }
    let kept: Vec<_> = live_ports
        .into_iter()
        .filter(|p| wanted.contains(&key(p)))
        .cloned()
        .collect();
    // A JSON merge patch replaces the list whole; the resourceVersion makes
    // it fail rather than clobber a concurrent change.
    let patch = json!({
        "metadata": {"resourceVersion": live.resource_version()},
        "spec": {"ports": kept},
    });
    api.patch(
        &live.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    ctx.metrics.write("services", "patch");
    Ok(())
}

async fn sync_slices(
    ctx: &Context,
    owner: &Owner,
    plan: &Plan,
    health: &BTreeMap<TargetId, kube_endpoints_probe::Health>,
) -> Result<()> {
    let desired = builder::endpoint_slices(owner, plan, health, &ctx.settings.controller_id);
    let api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), &owner.namespace);
    for slice in &desired {
        let name = slice.name_any();
        let live = cached(&ctx.caches.slices, owner, &name);
        let unchanged = match &live {
            Some(l) => contains(
                &to_value("EndpointSlice", l.as_ref())?,
                &to_value("EndpointSlice", slice)?,
            ),
            None => false,
        };
        if !unchanged {
            apply(ctx, &api, &name, slice, "endpointslices").await?;
        }
    }
    let wanted = builder::names(&desired);
    for stale in own_slices(ctx, owner) {
        let name = stale.name_any();
        if !wanted.contains(&name) {
            debug!(%name, "deleting stale EndpointSlice");
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => ctx.metrics.write("endpointslices", "delete"),
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

async fn sync_endpoints(
    ctx: &Context,
    owner: &Owner,
    plan: &Plan,
    health: &BTreeMap<TargetId, kube_endpoints_probe::Health>,
) -> Result<(), Sync> {
    let live = cached(&ctx.caches.endpoints, owner, &owner.name);
    let decision = builder::endpoints_ownership(live.as_deref(), owner);
    let api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), &owner.namespace);
    if !ctx.settings.write_endpoints {
        // Switched off: remove ours, leave anybody else's alone.
        if decision == Ownership::Owned {
            match api.delete(&owner.name, &DeleteParams::default()).await {
                Ok(_) => ctx.metrics.write("endpoints", "delete"),
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(failed_sync(&e.into())),
            }
        }
        return Ok(());
    }
    if let Ownership::Refuse(r) = decision {
        return Err(refused(r));
    }
    let desired = builder::endpoints(owner, plan, health);
    let desired_value = to_value("Endpoints", &desired).map_err(|e| failed_sync(&e))?;
    if let Some(l) = &live {
        let live_value = to_value("Endpoints", l.as_ref()).map_err(|e| failed_sync(&e))?;
        if contains(&live_value, &desired_value) {
            return Ok(());
        }
    }
    apply(ctx, &api, &owner.name, &desired, "endpoints")
        .await
        .map(|_| ())
        .map_err(|e| failed_sync(&e))
}

async fn write_status(ctx: &Context, key: &CepKey, status: &ClusterEndpointStatus) -> Result<()> {
    let api: Api<DynClusterEndpoint> =
        Api::namespaced_with(ctx.client.clone(), &key.namespace, &ctx.resource);
    let body = json!({
        "apiVersion": ctx.resource.api_version,
        "kind": ctx.resource.kind,
        "status": status,
    });
    let params = PatchParams::apply(&ctx.settings.field_manager).force();
    api.patch_status(&key.name, &params, &Patch::Apply(&body))
        .await?;
    ctx.metrics.write("clusterendpoints/status", "apply");
    Ok(())
}

/// Events for conditions that turned false (invalid spec, refused adoption,
/// failed sync), once per change rather than once per reconcile.
async fn announce_condition_changes(
    ctx: &Context,
    cep: &DynClusterEndpoint,
    previous: Option<&ClusterEndpointStatus>,
    status: &ClusterEndpointStatus,
) {
    let before: BTreeMap<&str, &Condition> = previous
        .map(|s| s.conditions.iter().map(|c| (c.type_.as_str(), c)).collect())
        .unwrap_or_default();
    for c in &status.conditions {
        if c.status != "False" || c.type_ == kube_endpoints_api::CONDITION_READY {
            continue;
        }
        let unchanged = before
            .get(c.type_.as_str())
            .is_some_and(|p| p.reason == c.reason && p.message == c.message);
        if unchanged {
            continue;
        }
        let event = Event {
            type_: EventType::Warning,
            reason: c.reason.clone(),
            note: Some(truncate(&c.message, 1000)),
            action: c.type_.clone(),
            secondary: None,
        };
        publish(ctx, cep, event).await;
    }
}

/// Publish an Event about `cep`; failures are logged, never fatal.
pub async fn publish(ctx: &Context, cep: &DynClusterEndpoint, event: Event) {
    let reference = cep.object_ref(&ctx.resource);
    match ctx.recorder.publish(&event, &reference).await {
        Ok(()) => ctx.metrics.write("events", "create"),
        Err(e) => warn!(reason = %event.reason, error = %e, "could not publish Event"),
    }
}

pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}
