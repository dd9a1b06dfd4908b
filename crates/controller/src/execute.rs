//! Execute: carry out the writes the pure [`crate::writes`] step decided,
//! against the apiserver — server-side apply with our one field manager,
//! create-only for slices (never overwriting somebody else's), deletes,
//! the Service port prune — and the status write.

use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::core::DynamicObject;
use kube::{Resource, ResourceExt};
use kube_endpoints_api::ClusterEndpointStatus;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tracing::{debug, info, warn};

use crate::FIELD_MANAGER;
use crate::builder::{LABEL_SKIP_MIRROR, Owner};
use crate::context::{CepKey, Context};
use crate::error::{Error, Result};
use crate::writes::{self, Kind, Object, Refusal, Write};

/// Execute one step's writes in order. A refusal (a slice name that is
/// somebody else's) stops only its own write: the first is returned at the
/// end. Any other failure stops the step.
pub async fn execute(
    ctx: &Context,
    owner: &Owner,
    step: Result<Vec<Write>, Refusal>,
) -> Result<()> {
    let ns = owner.namespace.as_str();
    let mut applied_service = None;
    let mut refused = None;
    for write in step.map_err(Error::Refused)? {
        match write {
            Write::Apply(object) => {
                applied_service = apply_object(ctx, ns, object).await?.or(applied_service);
            }
            Write::Create(object) => match create_object(ctx, owner, object).await {
                Err(Error::Refused(r)) => {
                    warn!(namespace = ns, name = %owner.name, reason = r.reason, "{}", r.message);
                    refused.get_or_insert(r);
                }
                other => other?,
            },
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
            Write::SkipMirror { name } => {
                info!(namespace = ns, name = %name, "labelling an Endpoints we do not manage skip-mirror");
                let label = json!({
                    "apiVersion": "v1",
                    "kind": "Endpoints",
                    "metadata": {"name": name, "namespace": ns, "labels": {LABEL_SKIP_MIRROR: "true"}},
                });
                let api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), ns);
                let params = PatchParams::apply(FIELD_MANAGER).force();
                api.patch(&name, &params, &Patch::Apply(&label)).await?;
                ctx.metrics.count_write(Kind::Endpoints.resource(), "apply");
            }
        }
    }
    refused.map_or(Ok(()), |r| Err(Error::Refused(r)))
}

/// Create a slice we know nothing of. When one of its name exists after
/// all, write it only if it is ours (our cache was behind); otherwise
/// refuse, naming who has it.
async fn create_object(ctx: &Context, owner: &Owner, object: Object) -> Result<()> {
    let ns = owner.namespace.as_str();
    let slice = match object {
        Object::EndpointSlice(slice) => slice,
        // The Service is planned as a create only when a live read just
        // found none ([`live_service`]): applied like any other.
        other => return apply_object(ctx, ns, other).await.map(drop),
    };
    let api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), ns);
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PostParams::default()
    };
    match api.create(&params, &slice).await {
        Ok(_) => {
            ctx.metrics
                .count_write(Kind::EndpointSlice.resource(), "create");
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let name = slice.name_any();
            let existing = api.get_opt(&name).await?;
            let controller_id = &ctx.settings.build.controller_id;
            match existing.and_then(|e| writes::slice_conflict(&e, owner, controller_id)) {
                Some(refusal) => Err(Error::Refused(refusal)),
                None => apply(ctx, ns, &slice, Kind::EndpointSlice).await.map(drop),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// The Service of the object's name as the apiserver has it now, trimmed
/// as the cache trims it. Asked when the cache has none: the Service a
/// previous reconcile applied may not have reached the cache yet (under
/// load the watch lags the write by seconds), and judging from the cache
/// alone would create it again; one somebody else created since the cache
/// was read is judged at once by the adoption rules, never taken over by a
/// forced apply.
pub async fn live_service(ctx: &Context, owner: &Owner) -> Result<Option<Service>> {
    let api: Api<Service> = Api::namespaced(ctx.client.clone(), &owner.namespace);
    let mut service = api.get_opt(&owner.name).await?;
    if let Some(service) = service.as_mut() {
        crate::service_metadata::trim_managed_fields(service);
    }
    Ok(service)
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

/// Write the status: server-side apply, or for an object stored in a form
/// server-side apply cannot type against our schema (endpoints-operator's
/// forms, or no valid form), a merge patch that replaces every field of it.
pub async fn write_status(
    ctx: &Context,
    key: &CepKey,
    status: &ClusterEndpointStatus,
    foreign_form: bool,
) -> Result<()> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), &key.namespace, &ctx.resource);
    if foreign_form {
        let body = json!({ "status": merge_status(status)? });
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PatchParams::default()
        };
        api.patch_status(&key.name, &params, &Patch::Merge(&body))
            .await?;
        ctx.metrics.count_write("clusterendpoints/status", "patch");
        return Ok(());
    }
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

/// `status` as a merge patch: every field we may write, absent ones as
/// `null` so that they are removed.
fn merge_status(status: &ClusterEndpointStatus) -> Result<Value> {
    let mut value = serde_json::to_value(status).map_err(|e| Error::Encode("status", e))?;
    if let Some(map) = value.as_object_mut() {
        for field in [
            "observedGeneration",
            "phase",
            "ready",
            "conditions",
            "ports",
        ] {
            map.entry(field).or_insert(Value::Null);
        }
    }
    Ok(value)
}

#[cfg(test)]
#[path = "reconcile_tests.rs"]
mod tests;
