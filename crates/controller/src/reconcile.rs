//! Reconcile: the thin imperative shell. Read (from caches), validate and
//! build (pure), execute the writes the pure [`writes`] step decided, record
//! status and Events.
//!
//! Probing never happens here: the probe engine runs every target on its own
//! schedule and a health transition merely triggers a reconcile of its object.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use kube_endpoints_api::{ClusterEndpointStatus, DynClusterEndpoint};
use kube_endpoints_probe::{Health, HealthState, TargetId};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use tracing::{debug, info, warn};

use crate::FIELD_MANAGER;
use crate::budget::{self, Verdict};
use crate::builder::{self, Desired, Owner};
use crate::context::{CepKey, Context};
use crate::error::{Error, Result};
use crate::events;
use crate::metrics::ReasonLabels;
use crate::plan::{Plan, plan};
use crate::policy;
use crate::status::{self, NotInitialized, StatusInput, SyncOutcome, Synced};
use crate::writes::{self, Kind, Live, Object, Refusal, Write};

/// How long to wait before retrying a sync that failed (the API may recover,
/// or the user may fix a conflicting object, which also triggers us).
const RETRY_AFTER: Duration = Duration::from_secs(30);

/// How long to wait after an error that stopped the reconcile itself (the
/// status write failed, or the object lacks a field): short, because such
/// errors are transient API trouble far more often than anything lasting.
const ERROR_REQUEUE: Duration = Duration::from_secs(5);

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
    let reason = error.reason().to_string();
    ctx.metrics
        .reconcile_errors
        .get_or_create(&ReasonLabels { reason })
        .inc();
    warn!(reason = error.reason(), %error, "reconcile failed");
    Action::requeue(ERROR_REQUEUE)
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
    let planned = admitted(ctx, cep, &key);
    let (spec, health) = match &planned {
        Ok(plan) => {
            let own_slices = own_slices(ctx, &owner);
            let health = probe(ctx, &key, plan, &own_slices);
            let desired = builder::desired(&owner, plan, &health, &ctx.settings.build);
            let (service, endpoints) = sync(ctx, &desired, &own_slices).await;
            let synced = Synced {
                plan,
                service,
                endpoints,
            };
            (Ok(synced), health)
        }
        Err(not_initialized) => {
            // Stop probing a spec we cannot trust (or carry); keep what was
            // written so far in place rather than tearing down working
            // endpoints.
            ctx.forget(&key);
            (Err(not_initialized.clone()), BTreeMap::new())
        }
    };
    let failed = spec
        .as_ref()
        .is_ok_and(|s| s.service.is_failed() || s.endpoints.is_failed());

    let now = status::rfc3339(SystemTime::now());
    let previous = cep.status.as_ref();
    let status = status::status(&StatusInput {
        generation: cep.metadata.generation,
        spec,
        health: &health,
        previous,
        now: &now,
    });
    for event in events::condition_events(previous, &status) {
        events::publish(ctx, cep, event).await;
    }
    if previous != Some(&status) {
        write_status(ctx, &key, &status).await?;
    }
    Ok(if failed {
        Action::requeue(RETRY_AFTER)
    } else {
        Action::await_change()
    })
}

/// The plan to act on: valid, within the target budgets, and without the
/// hosts the address policy denies ([`policy::restrict`]); or why there is
/// none.
fn admitted(ctx: &Context, cep: &DynClusterEndpoint, key: &CepKey) -> Result<Plan, NotInitialized> {
    let plan = plan(&key.name, &cep.spec).map_err(|invalid| NotInitialized::from(&invalid))?;
    let claim = budget::claim(cep, plan.target_count());
    let budget_key = budget::key(&ctx.resource.group, key);
    if let Verdict::Exceeded(exceeded) = ctx.shared.budget.update(&budget_key, Some(claim)) {
        return Err(NotInitialized {
            reason: "BudgetExceeded",
            message: exceeded.to_string(),
        });
    }
    let ranges = ctx.shared.ranges.borrow().clone();
    Ok(policy::restrict(plan, &ctx.settings.policy, &ranges))
}

/// Hand the plan's targets to the probe engine (seeded from our slices after
/// a restart) and take a health snapshot.
fn probe(
    ctx: &Context,
    key: &CepKey,
    plan: &Plan,
    own_slices: &[Arc<EndpointSlice>],
) -> BTreeMap<TargetId, Health> {
    let seed = builder::seed_from_slices(plan, own_slices.iter().map(Arc::as_ref));
    ctx.scheduler
        .sync(key, plan.targets(), |id: &TargetId| seed.get(id).copied());
    let health = ctx.scheduler.health(key);
    ctx.metrics.set_host_readiness(
        &key.namespace,
        &key.name,
        health.iter().map(|(id, h)| {
            let ready = h.state == HealthState::Ready;
            (id.port.clone(), id.host.to_string(), ready)
        }),
    );
    health
}

/// Decide the writes against the caches and execute them: the Service
/// first (slices hang off it), then the slices, then the compatibility
/// Endpoints. Returns the outcome of the Service step and of the rest.
async fn sync(
    ctx: &Context,
    desired: &Desired,
    own_slices: &[Arc<EndpointSlice>],
) -> (SyncOutcome, SyncOutcome) {
    let owner = &desired.owner;
    let service = cached(&ctx.caches.services, owner);
    let endpoints = cached(&ctx.caches.endpoints, owner);
    let live = Live {
        service: service.as_deref(),
        endpoints: endpoints.as_deref(),
        slices: own_slices.iter().map(Arc::as_ref).collect(),
    };
    let plan = writes::plan_writes_with(desired, &live, &ctx.settings.adoption);
    if let Err(e) = execute(ctx, owner, plan.service).await {
        let not_synced = SyncOutcome::failed(
            "ServiceNotSynced",
            "endpoints are not written until the Service is synced",
        );
        return (outcome(&e), not_synced);
    }
    let endpoints = match execute(ctx, owner, Ok(plan.slices)).await {
        Ok(()) => execute(ctx, owner, plan.endpoints).await,
        failed => failed,
    };
    (
        SyncOutcome::Done,
        endpoints.map_or_else(|e| outcome(&e), |()| SyncOutcome::Done),
    )
}

fn outcome(e: &Error) -> SyncOutcome {
    SyncOutcome::failed(e.reason(), e.to_string())
}

fn cached<K>(store: &Store<K>, owner: &Owner) -> Option<Arc<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    store.get(&ObjectRef::new(&owner.name).within(&owner.namespace))
}

fn own_slices(ctx: &Context, owner: &Owner) -> Vec<Arc<EndpointSlice>> {
    let id = &ctx.settings.build.controller_id;
    ctx.caches
        .slices
        .state_filter(|s| builder::is_own_slice(s, owner, id))
}

/// Execute one step's writes in order; the first failure stops the step.
async fn execute(ctx: &Context, owner: &Owner, step: Result<Vec<Write>, Refusal>) -> Result<()> {
    let ns = owner.namespace.as_str();
    let mut applied_service = None;
    for write in step.map_err(Error::Refused)? {
        match write {
            Write::Apply(object) => {
                applied_service = apply_object(ctx, ns, object).await?.or(applied_service);
            }
            Write::Adopt(object) => {
                info!(namespace = ns, name = %object.name(), kind = ?object.kind(), "adopting an existing object");
                applied_service = apply_object(ctx, ns, object).await?.or(applied_service);
            }
            Write::PrunePorts { keep } => {
                if let Some(applied) = &applied_service {
                    prune_service_ports(ctx, ns, applied, &keep).await?;
                }
            }
            Write::Delete { kind, name } => match kind {
                // Never planned today: the garbage collector removes the
                // Service with its ClusterEndpoint (and RBAC grants no delete).
                Kind::Service => delete::<Service>(ctx, ns, &name, kind).await?,
                Kind::EndpointSlice => delete::<EndpointSlice>(ctx, ns, &name, kind).await?,
                Kind::Endpoints => delete::<Endpoints>(ctx, ns, &name, kind).await?,
            },
        }
    }
    Ok(())
}

/// Apply `object`; the applied Service when it is one (its ports may need pruning).
async fn apply_object(ctx: &Context, ns: &str, object: Object) -> Result<Option<Service>> {
    let kind = object.kind();
    match object {
        Object::Service(o) => apply(ctx, ns, &o, kind).await.map(Some),
        Object::EndpointSlice(o) => apply(ctx, ns, &o, kind).await.map(|_| None),
        Object::Endpoints(o) => apply(ctx, ns, &o, kind).await.map(|_| None),
    }
}

/// Server-side apply with our field manager, forcing ownership of our fields.
async fn apply<K>(ctx: &Context, ns: &str, object: &K, kind: Kind) -> Result<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Serialize
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), ns);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let applied = api
        .patch(&object.name_any(), &params, &Patch::Apply(object))
        .await?;
    ctx.metrics.count_write(kind.resource(), "apply");
    Ok(applied)
}

async fn delete<K>(ctx: &Context, ns: &str, name: &str, kind: Kind) -> Result<()>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    debug!(namespace = ns, name, ?kind, "deleting");
    let api: Api<K> = Api::namespaced(ctx.client.clone(), ns);
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => ctx.metrics.count_write(kind.resource(), "delete"),
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

/// Drop the applied Service's ports that are not ours. A JSON merge patch
/// replaces the list whole; the resourceVersion makes it fail rather than
/// clobber a concurrent change.
async fn prune_service_ports(
    ctx: &Context,
    ns: &str,
    applied: &Service,
    keep: &[writes::PortKey],
) -> Result<()> {
    let Some(kept) = writes::pruned_ports(applied, keep) else {
        return Ok(());
    };
    let patch = json!({
        "metadata": {"resourceVersion": applied.resource_version()},
        "spec": {"ports": kept},
    });
    let api: Api<Service> = Api::namespaced(ctx.client.clone(), ns);
    api.patch(
        &applied.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    ctx.metrics.count_write(Kind::Service.resource(), "patch");
    Ok(())
}

async fn write_status(ctx: &Context, key: &CepKey, status: &ClusterEndpointStatus) -> Result<()> {
    let api: Api<DynClusterEndpoint> =
        Api::namespaced_with(ctx.client.clone(), &key.namespace, &ctx.resource);
    let body = json!({
        "apiVersion": ctx.resource.api_version,
        "kind": ctx.resource.kind,
        "status": status,
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch_status(&key.name, &params, &Patch::Apply(&body))
        .await?;
    ctx.metrics.count_write("clusterendpoints/status", "apply");
    Ok(())
}
