//! Reconcile: the thin imperative shell. Read (from caches), validate and
//! build (pure), execute the writes the pure [`writes`] step decided, record
//! status and Events.
//!
//! Probing never happens here: the probe engine runs every target on its own
//! schedule and a health transition merely triggers a reconcile of its object.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use k8s_openapi::api::core::v1::Endpoints;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::core::DynamicObject;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use kube_endpoints_api::ClusterEndpointStatus;
use kube_endpoints_probe::{Health, HealthState, TargetId};
use tracing::{info, warn};

use crate::budget::{self, Verdict};
use crate::builder::{self, Desired, LABEL_SERVICE_NAME, Owner};
use crate::certificates;
use crate::context::{CepKey, Context};
use crate::credentials;
use crate::decode::{Decoded, decode};
use crate::error::{Error, Result};
use crate::events;
use crate::execute::{execute, write_status};
use crate::metrics::ReasonLabels;
use crate::plan::{Plan, plan_with};
use crate::policy;
use crate::status::{self, NotInitialized, StatusInput, SyncOutcome, Synced};
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
        Ok(plan) => {
            let slices = service_slices(ctx, &owner);
            let endpoints = cached(&ctx.caches.endpoints, &owner);
            let health = probe(ctx, &key, plan, &slices, endpoints.as_deref());
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
            let desired = builder::desired(&owner, plan, &health, &ctx.settings.build, &own);
            let (service, endpoints) = sync(ctx, &desired, &own, endpoints.as_deref()).await;
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

    let now_time = SystemTime::now();
    let now = status::rfc3339(now_time);
    let previous = decoded.status.as_ref();
    let certificates = match &planned {
        Ok(_) => ctx.scheduler.cert_not_after(&key),
        Err(_) => BTreeMap::new(),
    };
    let mut status = status::status(&StatusInput {
        generation: object.metadata.generation,
        spec,
        health: &health,
        previous,
        now: &now,
    });
    if let Ok(plan) = &planned {
        let warning = ctx.settings.cert_expiry_warning;
        let warn_before = warning.and_then(|w| now_time.checked_add(w));
        certificates::fill(&mut status, plan, &certificates, previous, warn_before);
        ctx.metrics
            .set_certificates(&key.namespace, &key.name, &certificates);
    }
    let certificate_events = announce_certificates(ctx, &key, previous, &status);
    for event in certificate_events {
        info!(namespace = %key.namespace, name = %key.name, note = ?event.note, "certificate expiring");
        events::publish(ctx, object, event).await;
    }
    let announced = {
        let mut announced = ctx.announced.lock().unwrap_or_else(|e| e.into_inner());
        let before = announced
            .get(&key)
            .cloned()
            .or_else(|| previous.map(|p| p.conditions.clone()))
            .unwrap_or_default();
        announced.insert(key.clone(), status.conditions.clone());
        before
    };
    for event in events::condition_events(&announced, &status) {
        events::publish(ctx, object, event).await;
    }
    if previous != Some(&status) {
        write_status(ctx, &key, &status, decoded.foreign_form).await?;
    }
    // Time alone moves a certificate into the warning window: come back
    // then.
    let crossing = ctx
        .settings
        .cert_expiry_warning
        .and_then(|w| certificates::next_crossing(&certificates, w, now_time));
    Ok(if failed {
        Action::requeue(ctx.backoff.failed(&key))
    } else {
        ctx.backoff.reset(&key);
        match crossing {
            // Capped: the requeue queue refuses delays of years, and a
            // daily look costs nothing when nothing changed.
            Some(delay) => Action::requeue(
                (delay + std::time::Duration::from_secs(1)).min(MAX_CERTIFICATE_REQUEUE),
            ),
            None => Action::await_change(),
        }
    })
}

/// The longest wait for a certificate to enter the warning window.
const MAX_CERTIFICATE_REQUEUE: std::time::Duration = std::time::Duration::from_secs(86_400);

/// The `CertificateExpiring` Events due: certificates in the warning window
/// not announced before (by this process, or in the previous status).
fn announce_certificates(
    ctx: &Context,
    key: &CepKey,
    previous: Option<&ClusterEndpointStatus>,
    status: &ClusterEndpointStatus,
) -> Vec<kube::runtime::events::Event> {
    let Some(warning) = ctx.settings.cert_expiry_warning else {
        return Vec::new();
    };
    let now = certificates::expiring(status);
    let mut announced = ctx
        .announced_certificates
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let before = announced
        .get(key)
        .cloned()
        .or_else(|| previous.map(certificates::expiring))
        .unwrap_or_default();
    let days = u32::try_from(warning.as_secs() / 86_400).unwrap_or(u32::MAX);
    let events = certificates::events(&before, &now, days);
    announced.insert(key.clone(), now);
    events
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

/// Hand the plan's targets to the probe engine and take a health snapshot.
/// Targets it does not know yet start from the health recorded in the
/// Service's slices and Endpoints ([`builder::seed`]): after a restart, a
/// failover, an adoption or a migration, nothing changes until a probe
/// says so.
fn probe(
    ctx: &Context,
    key: &CepKey,
    plan: &Plan,
    slices: &[Arc<EndpointSlice>],
    endpoints: Option<&Endpoints>,
) -> BTreeMap<TargetId, Health> {
    let seed = builder::seed(plan, slices.iter().map(Arc::as_ref), endpoints);
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
    own_slices: &[&EndpointSlice],
    endpoints: Option<&Endpoints>,
) -> (SyncOutcome, SyncOutcome) {
    let owner = &desired.owner;
    let service = cached(&ctx.caches.services, owner);
    let live = Live {
        service: service.as_deref(),
        endpoints,
        slices: own_slices.to_vec(),
    };
    let plan = writes::plan_writes_with(desired, &live, &ctx.settings.adoption);
    if let Err(refusal) = plan.service {
        // Our slices come off a Service that is not ours to serve.
        let removed = execute(ctx, owner, Ok(plan.slices)).await;
        let not_synced = removed.map_or_else(
            |e| outcome(&e),
            |()| {
                SyncOutcome::failed(
                    "ServiceNotSynced",
                    "endpoints are not written until the Service is synced",
                )
            },
        );
        return (outcome(&Error::Refused(refusal)), not_synced);
    }
    if let Err(e) = execute(ctx, owner, plan.service).await {
        let not_synced = SyncOutcome::failed(
            "ServiceNotSynced",
            "endpoints are not written until the Service is synced",
        );
        return (outcome(&e), not_synced);
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
        rest.map_or_else(|e| outcome(&e), |()| SyncOutcome::Done),
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
    ctx.caches.slices.state_filter(|s| {
        s.metadata.namespace.as_deref() == Some(owner.namespace.as_str())
            && s.labels().get(LABEL_SERVICE_NAME) == Some(&owner.name)
    })
}
