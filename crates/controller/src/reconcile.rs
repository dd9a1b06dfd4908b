//! Reconcile: the thin imperative shell. Read (from caches), validate and
//! build (pure), have [`crate::execute`] carry out the writes the pure
//! [`writes`] step decided, and [`record`] the status and Events.
//!
//! Probing never happens here: the probe engine runs every target on its own
//! schedule and a health transition merely triggers a reconcile of its object.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::Endpoints;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::core::DynamicObject;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use kube_endpoints_api::ClusterEndpointStatus;
use kube_endpoints_probe::{Health, HealthState, TargetId, TargetSpec};
use tracing::{debug, warn};

use crate::budget::{self, Verdict};
use crate::builder::{self, Desired, Owner};
use crate::context::{CepKey, Context};
use crate::credentials;
use crate::decode::{Decoded, decode};
use crate::error::{Error, Result};
use crate::execute::{self, execute};
use crate::fail_open;
use crate::first_verdicts;
use crate::metrics::ReasonLabels;
use crate::names;
use crate::plan::{Plan, plan_with};
use crate::policy;
use crate::record;
use crate::status::{NotInitialized, SyncOutcome, Synced};
use crate::writes::{self, Live};

pub async fn reconcile(object: Arc<DynamicObject>, ctx: Arc<Context>) -> Result<Action> {
    let started = std::time::Instant::now();
    ctx.metrics.reconciles.inc();
    let result = reconcile_inner(&object, &ctx).await;
    ctx.metrics
        .reconcile_duration
        .observe(started.elapsed().as_secs_f64());
    result
}

/// A reconcile that failed (a write, usually the status) is retried with
/// the object's backoff.
pub fn error_policy(object: Arc<DynamicObject>, error: &Error, ctx: Arc<Context>) -> Action {
    let reason = error.reason().to_string();
    ctx.metrics
        .reconcile_errors
        .get_or_create(&ReasonLabels { reason })
        .inc();
    let delay = CepKey::of(object.as_ref())
        .map_or(crate::backoff::FIRST_RETRY, |key| ctx.backoff.failed(&key));
    warn!(reason = error.reason(), %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

async fn reconcile_inner(object: &DynamicObject, ctx: &Context) -> Result<Action> {
    let key = CepKey::of(object)?;
    if object.metadata.deletion_timestamp.is_some() {
        // Owner references let the garbage collector remove what we wrote.
        ctx.forget(&key);
        return Ok(Action::await_change());
    }
    let owner = Owner {
        api_version: ctx.resource.api_version.clone(),
        kind: ctx.resource.kind.clone(),
        name: key.name.clone(),
        namespace: key.namespace.clone(),
        uid: object.uid().ok_or(Error::MissingField("metadata.uid"))?,
    };
    let decoded = decode(object);
    let planned = admitted(ctx, object, &decoded, &key);
    let (spec, health) = match &planned {
        Ok(plan) if names::pending(plan) => {
            debug!(namespace = %key.namespace, name = %key.name, "waiting for the first resolution of its names");
            return Ok(Action::requeue(names::PENDING_RECHECK));
        }
        Ok(plan) => {
            let slices = service_slices(ctx, &owner);
            let endpoints = cached(&ctx.caches.endpoints, &owner);
            let targets = plan.targets();
            let timeouts: Vec<(TargetId, Duration)> = targets
                .iter()
                .map(|(id, spec)| (id.clone(), spec.timeout))
                .collect();
            let (endpoints_ref, previous) = (endpoints.as_deref(), decoded.status.as_ref());
            let health = probe(ctx, &key, targets, plan, &slices, endpoints_ref, previous);
            if !still_there(ctx, &key, &owner) {
                // Deleted while we were starting its probes: the delete
                // event may have been handled before, so stop them here.
                ctx.forget(&key);
                return Ok(Action::await_change());
            }
            let id = &ctx.settings.build.controller_id;
            let own: Vec<&EndpointSlice> = slices
                .iter()
                .map(Arc::as_ref)
                .filter(|s| builder::is_own_slice(s, &owner, id))
                .collect();
            let hold = first_verdicts::hold(
                !own.is_empty() || endpoints.is_some(),
                timeouts
                    .iter()
                    .filter_map(|(id, timeout)| Some((health.get(id)?, *timeout))),
                SystemTime::now(),
            );
            let held = ctx
                .shared
                .fleet_guard
                .held(&budget::key(&ctx.resource.group, &key));
            let open = fail_open::apply(plan, &health, &own, &held);
            let desired = builder::desired(&owner, plan, &open.health, &ctx.settings.build, &own);
            let (service, endpoints) =
                sync(ctx, &desired, &own, endpoints.as_deref(), hold.is_none()).await;
            let Some(endpoints) = endpoints else {
                // Held back ([`first_verdicts`]): the Service is written;
                // the rest waits for the first verdicts, whose transitions
                // reconcile again, or for this requeue when the last probe
                // timeout runs out. Nothing to report meanwhile.
                let wait = hold.unwrap_or(first_verdicts::MIN_HOLD);
                debug!(namespace = %key.namespace, name = %key.name, ?wait, "waiting for the first probe verdicts");
                ctx.backoff.reset(&key);
                return Ok(Action::requeue(wait));
            };
            let synced = Synced {
                plan,
                service,
                endpoints,
                fail_open: open.conditions(),
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

    let crossing = record::record(ctx, object, &key, &decoded, &planned, spec, &health).await?;
    Ok(if failed {
        Action::requeue(ctx.backoff.failed(&key))
    } else {
        ctx.backoff.reset(&key);
        match crossing {
            Some(delay) => Action::requeue(delay),
            None => Action::await_change(),
        }
    })
}

/// Whether the object is still in the cache as this very object (not
/// deleted, not deleted and recreated).
fn still_there(ctx: &Context, key: &CepKey, owner: &Owner) -> bool {
    ctx.objects
        .get(&key.object_ref(&ctx.resource))
        .is_some_and(|o| o.uid().as_deref() == Some(owner.uid.as_str()))
}

/// The plan to act on: decoded, valid, within the target budgets, and
/// without the hosts the address policy denies ([`policy::restrict`]); or
/// why there is none.
fn admitted(
    ctx: &Context,
    object: &DynamicObject,
    decoded: &Decoded,
    key: &CepKey,
) -> Result<Plan, NotInitialized> {
    let spec = decoded.spec.as_ref().map_err(NotInitialized::from)?;
    let resolver = credentials::Resolver {
        stores: ctx.credentials.as_ref(),
        namespace: &key.namespace,
    };
    let plan =
        plan_with(&key.name, spec, &resolver).map_err(|invalid| NotInitialized::from(&invalid))?;
    // Names become addresses before the budgets and the address policy
    // see the plan: resolved addresses are judged exactly as literals.
    let resolutions = ctx.resolver.sync(key, &names::wanted(&plan));
    let plan = names::expand(plan, &resolutions);
    let claim = budget::claim(
        &object.metadata,
        decoded.status.as_ref(),
        plan.target_count(),
    );
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

/// Hand the plan's targets (`targets`, from [`Plan::targets`]) to the
/// probe engine and take a health snapshot.
/// Targets it does not know yet start from the health recorded in the
/// Service's slices and Endpoints ([`builder::seed`]; hosts kept ready by
/// a fail-open policy start failing, [`fail_open::reseed`]): after a
/// restart, a failover, an adoption or a migration, nothing changes until
/// a probe says so.
fn probe(
    ctx: &Context,
    key: &CepKey,
    targets: BTreeMap<TargetId, TargetSpec>,
    plan: &Plan,
    slices: &[Arc<EndpointSlice>],
    endpoints: Option<&Endpoints>,
    previous: Option<&ClusterEndpointStatus>,
) -> BTreeMap<TargetId, Health> {
    let mut seed = builder::seed(plan, slices.iter().map(Arc::as_ref), endpoints);
    fail_open::reseed(&mut seed, plan, previous);
    ctx.scheduler
        .sync(key, targets, |id: &TargetId| seed.get(id).copied());
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

/// Decide the writes against the caches (a live read for a Service the
/// cache lacks) and execute them: the Service first (slices hang off it),
/// then the slices, then the compatibility Endpoints. Returns the outcome
/// of the Service step and of the rest; `None` for the rest when the
/// Service is done and `with_endpoints` is false (they are held back:
/// nothing of them was written).
async fn sync(
    ctx: &Context,
    desired: &Desired,
    own_slices: &[&EndpointSlice],
    endpoints: Option<&Endpoints>,
    with_endpoints: bool,
) -> (SyncOutcome, Option<SyncOutcome>) {
    let owner = &desired.owner;
    let not_synced = || {
        SyncOutcome::failed(
            "ServiceNotSynced",
            "endpoints are not written until the Service is synced",
        )
    };
    let service = match cached(&ctx.caches.services, owner) {
        Some(service) => Some(service),
        None => match execute::live_service(ctx, owner).await {
            Ok(service) => service.map(Arc::new),
            Err(e) => return (outcome(&e), Some(not_synced())),
        },
    };
    let live = Live {
        service: service.as_deref(),
        endpoints,
        slices: own_slices.to_vec(),
    };
    let plan = writes::plan_writes_with(desired, &live, &ctx.settings.adoption);
    if let Err(refusal) = plan.service {
        // Our slices come off a Service that is not ours to serve.
        let removed = execute(ctx, owner, Ok(plan.slices)).await;
        let rest = removed.map_or_else(|e| outcome(&e), |()| not_synced());
        return (outcome(&Error::Refused(refusal)), Some(rest));
    }
    if let Err(e) = execute(ctx, owner, plan.service).await {
        return (outcome(&e), Some(not_synced()));
    }
    if !with_endpoints {
        return (SyncOutcome::Done, None);
    }
    let slices = execute(ctx, owner, Ok(plan.slices)).await;
    // A slice name taken by somebody else stops only that slice.
    let rest = match &slices {
        Err(Error::Refused(_)) | Ok(()) => {
            let unmirror = execute(ctx, owner, Ok(plan.unmirror.into_iter().collect())).await;
            let endpoints = execute(ctx, owner, plan.endpoints).await;
            slices.and(unmirror).and(endpoints)
        }
        Err(_) => slices,
    };
    (
        SyncOutcome::Done,
        Some(rest.map_or_else(|e| outcome(&e), |()| SyncOutcome::Done)),
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

/// The cached slices of the object's Service: ours, and any other of our
/// controller id (orphaned, or another served group's object of the same
/// name).
fn service_slices(ctx: &Context, owner: &Owner) -> Vec<Arc<EndpointSlice>> {
    let caches = &ctx.caches;
    caches
        .slices_by_service
        .slices(&caches.slices, &owner.namespace, &owner.name)
}
