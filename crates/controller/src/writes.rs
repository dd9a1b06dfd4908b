//! Writes: the pure decision of what to send to the API. From the
//! [`Desired`] state and what is [`Live`] (the caches) it makes a
//! [`WritePlan`]: which objects to apply, which Service ports to prune, which
//! stale objects to delete, or why an object of our name must be left alone.
//! The reconciler only executes the plan, so "nothing changed → no write" is
//! decided (and unit-tested) here.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{Endpoints, Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::ResourceExt;
use serde::Serialize;

use crate::builder::{
    Desired, LABEL_MANAGED_BY, LABEL_SERVICE_NAME, LABEL_SKIP_MIRROR, Owner, is_own_slice,
};
use crate::consent::{self, AdoptionPolicy};
use crate::diff::contains;
use crate::dropped_fields;
pub use crate::error::Refusal;

/// What is in the cluster now (from the watch caches).
#[derive(Clone, Debug, Default)]
pub struct Live<'a> {
    /// The Service of the object's name, whoever owns it.
    pub service: Option<&'a Service>,
    /// The Endpoints of the object's name, whoever owns it.
    pub endpoints: Option<&'a Endpoints>,
    /// Our own EndpointSlices of this object ([`crate::builder::is_own_slice`]).
    pub slices: Vec<&'a EndpointSlice>,
}

/// The kinds of object the controller writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Service,
    EndpointSlice,
    Endpoints,
}

impl Kind {
    /// The API resource, as used in the `resource` label of write metrics.
    pub fn resource(self) -> &'static str {
        match self {
            Kind::Service => "services",
            Kind::EndpointSlice => "endpointslices",
            Kind::Endpoints => "endpoints",
        }
    }
}

/// An object to apply.
#[derive(Clone, Debug, PartialEq)]
#[allow(clippy::large_enum_variant)] // a handful per reconcile, never stored
pub enum Object {
    Service(Service),
    EndpointSlice(EndpointSlice),
    Endpoints(Endpoints),
}

impl Object {
    pub fn kind(&self) -> Kind {
        match self {
            Object::Service(_) => Kind::Service,
            Object::EndpointSlice(_) => Kind::EndpointSlice,
            Object::Endpoints(_) => Kind::Endpoints,
        }
    }

    pub fn name(&self) -> String {
        match self {
            Object::Service(o) => o.name_any(),
            Object::EndpointSlice(o) => o.name_any(),
            Object::Endpoints(o) => o.name_any(),
        }
    }
}

/// A Service port's identity: (port, protocol).
pub type PortKey = (i32, String);

/// One write, executed in order within its step.
#[derive(Clone, Debug, PartialEq)]
pub enum Write {
    /// Server-side apply of an object that is ours.
    Apply(Object),
    /// Create an object that we do not know of (a slice, or the Service of
    /// a new object). Never overwrites: if a slice of its name exists after
    /// all (the cache was behind, or it is somebody else's), the shell reads
    /// it and applies only when [`slice_conflict`] finds it is ours; the
    /// Service is planned against a live read when the cache has none, so
    /// its creation means that read found none either.
    Create(Object),
    /// Server-side apply that takes over a hand-made, unowned object in
    /// place. The object carries the resourceVersion the decision was made
    /// on, so the apply fails (409) if the object changed since — it may
    /// have got an owner — and the next reconcile decides again.
    Adopt(Object),
    /// Follows the Service's apply: ports another manager wrote (an adopted
    /// hand-made Service) survive it; keep only these. Executed against the
    /// applied Service, and a write only when [`pruned_ports`] finds such a
    /// port.
    PrunePorts { keep: Vec<PortKey> },
    /// Delete one of our objects (a missing one is not an error).
    Delete { kind: Kind, name: String },
    /// Label an Endpoints that is not ours `skip-mirror`, touching nothing
    /// else: the EndpointSliceMirroring controller then removes the slices
    /// it made from it, which would keep listing its hosts as ready next to
    /// ours, whatever their health.
    SkipMirror { name: String },
}

/// The writes for one ClusterEndpoint, by step. Each step is either its
/// writes or the reason its object may not be managed.
#[derive(Clone, Debug, PartialEq)]
pub struct WritePlan {
    /// The Service. A refused Service stops the other steps: our slices
    /// would otherwise attach hosts to somebody else's Service.
    pub service: Result<Vec<Write>, Refusal>,
    /// The EndpointSlices: applies first, then deletion of stale ones, so
    /// that kube-proxy never sees fewer endpoints than it should.
    pub slices: Vec<Write>,
    /// The compatibility Endpoints (applied, or removed when switched off).
    pub endpoints: Result<Vec<Write>, Refusal>,
    /// An Endpoints of the object's name that we do not manage (switched
    /// off, or refused) is kept from being mirrored into slices.
    pub unmirror: Option<Write>,
}

impl WritePlan {
    /// Every write of every step that is not refused, in order.
    pub fn writes(&self) -> impl Iterator<Item = &Write> {
        let none: &[Write] = &[];
        self.service
            .as_deref()
            .unwrap_or(none)
            .iter()
            .chain(&self.slices)
            .chain(self.endpoints.as_deref().unwrap_or(none))
            .chain(&self.unmirror)
    }
}

/// Compare `desired` with `live` and decide every write, adopting unowned
/// objects only as `adoption` allows ([`consent::adoption`]).
pub fn plan_writes_with(
    desired: &Desired,
    live: &Live<'_>,
    adoption: &AdoptionPolicy,
) -> WritePlan {
    let owner = &desired.owner;
    let service_decision = with_consent(
        service_ownership(live.service, owner, &desired.service),
        live.service.map(|s| &s.metadata),
        "Service",
        owner,
        adoption,
        false,
    );
    // The Endpoints of a Service we control, or that consented, follow it.
    let service_consented = live.service.is_some_and(|s| {
        consent::has_consent(&s.metadata)
            || controller_ref(&s.metadata).is_some_and(|r| r.uid == owner.uid)
    });
    let service = match service_decision {
        Ownership::Refuse(r) => Err(r),
        decision => Ok(service_writes(&desired.service, live.service, &decision)),
    };
    let delete = |name: String| Write::Delete {
        kind: Kind::EndpointSlice,
        name,
    };
    if let Err(refusal) = service {
        // Somebody else's Service now (a selector was added, its type
        // changed...): our slices would attach our hosts to it.
        return WritePlan {
            service: Err(refusal),
            slices: live.slices.iter().map(|s| delete(s.name_any())).collect(),
            endpoints: Ok(Vec::new()),
            unmirror: None,
        };
    }
    let mut slices: Vec<Write> = desired
        .slices
        .iter()
        .filter_map(|slice| {
            let name = slice.name_any();
            match live.slices.iter().copied().find(|l| l.name_any() == name) {
                Some(live) if dropped_fields::slice_drops_fields(slice, live) => {
                    Some(Write::Apply(Object::EndpointSlice(slice.clone())))
                }
                Some(live) => {
                    apply_if_changed(Some(live), slice, Ownership::Owned, Object::EndpointSlice)
                }
                None => Some(Write::Create(Object::EndpointSlice(slice.clone()))),
            }
        })
        .collect();
    let wanted: BTreeSet<String> = desired.slices.iter().map(ResourceExt::name_any).collect();
    slices.extend(
        live.slices
            .iter()
            .map(|s| s.name_any())
            .filter(|name| !wanted.contains(name))
            .map(delete),
    );
    let ownership = with_consent(
        endpoints_ownership(live.endpoints, owner),
        live.endpoints.map(|e| &e.metadata),
        "Endpoints",
        owner,
        adoption,
        service_consented,
    );
    let unmirror = match (&desired.endpoints, &ownership, live.endpoints) {
        (None, Ownership::Adopt | Ownership::Refuse(_), Some(ep))
        | (Some(_), Ownership::Refuse(_), Some(ep))
            if !skips_mirroring(ep) =>
        {
            Some(Write::SkipMirror {
                name: owner.name.clone(),
            })
        }
        _ => None,
    };
    let endpoints = match (&desired.endpoints, ownership) {
        // Switched off: remove ours; anybody else's is only kept from
        // being mirrored (`unmirror`).
        (None, Ownership::Owned) => Ok(vec![Write::Delete {
            kind: Kind::Endpoints,
            name: owner.name.clone(),
        }]),
        (None, _) => Ok(Vec::new()),
        (Some(_), Ownership::Refuse(r)) => Err(Refusal {
            reason: r.reason,
            message: format!(
                "{}; it is labelled {LABEL_SKIP_MIRROR} so that its hosts are not mirrored into EndpointSlices of the Service",
                r.message
            ),
        }),
        (Some(desired), decision) => {
            let drops = matches!(decision, Ownership::Owned)
                && live
                    .endpoints
                    .is_some_and(|l| dropped_fields::endpoints_drop_fields(desired, l));
            let compared = if drops { None } else { live.endpoints };
            Ok(
                apply_if_changed(compared, desired, decision, Object::Endpoints)
                    .into_iter()
                    .collect(),
            )
        }
    };
    WritePlan {
        service,
        slices,
        endpoints,
        unmirror,
    }
}

/// Whether the EndpointSliceMirroring controller leaves `endpoints` alone.
fn skips_mirroring(endpoints: &Endpoints) -> bool {
    endpoints
        .labels()
        .get(LABEL_SKIP_MIRROR)
        .map(String::as_str)
        == Some("true")
}

/// Why an existing EndpointSlice of a name we want may not be written, or
/// `None` when it is ours after all ([`is_own_slice`]).
pub fn slice_conflict(
    existing: &EndpointSlice,
    owner: &Owner,
    controller_id: &str,
) -> Option<Refusal> {
    if is_own_slice(existing, owner, controller_id) {
        return None;
    }
    let labels = existing.labels();
    let by = |key: &str| labels.get(key).map_or("nobody", String::as_str).to_string();
    let controller = controller_ref(&existing.metadata).map_or_else(
        || "no owner".to_string(),
        |r| format!("{} {}", r.kind, r.name),
    );
    Some(Refusal {
        reason: "SliceNameConflict",
        message: format!(
            "EndpointSlice {}/{} already exists (Service {}, managed by {}, {controller}); refusing to overwrite it: rename or delete it",
            owner.namespace,
            existing.name_any(),
            by(LABEL_SERVICE_NAME),
            by(LABEL_MANAGED_BY),
        ),
    })
}

fn service_writes(desired: &Service, live: Option<&Service>, decision: &Ownership) -> Vec<Write> {
    if live.is_none() {
        // Created: the shell asks the apiserver when its cache has no
        // Service, so none existed a moment ago either.
        return vec![Write::Create(Object::Service(desired.clone()))];
    }
    // Labels and annotations another manager set with other values stay theirs.
    let desired = &crate::service_metadata::yield_foreign(desired, live);
    // A field we set before and no longer want is removed only by an apply.
    let drops = matches!(decision, Ownership::Owned)
        && live.is_some_and(|l| dropped_fields::service_drops_owned(desired, l));
    let compared = if drops { None } else { live };
    match apply_if_changed(compared, desired, decision.clone(), Object::Service) {
        // Which ports survive the apply depends on who owns them, which
        // only the apply's answer tells: the prune is decided on that.
        Some(apply) => vec![
            apply,
            Write::PrunePorts {
                keep: port_keys(desired),
            },
        ],
        None => Vec::new(),
    }
}

/// The apply (or adoption) of `desired`, unless `live` already holds every
/// field of it ([`contains`]). An adoption is conditional on `live`'s
/// resourceVersion.
pub fn apply_if_changed<K: Serialize + Clone + kube::Resource>(
    live: Option<&K>,
    desired: &K,
    decision: Ownership,
    object: impl FnOnce(K) -> Object,
) -> Option<Write> {
    if live.is_some_and(|l| unchanged(l, desired)) {
        return None;
    }
    Some(match decision {
        Ownership::Adopt => {
            let mut adopted = desired.clone();
            adopted.meta_mut().resource_version =
                live.and_then(|l| l.meta().resource_version.clone());
            Write::Adopt(object(adopted))
        }
        _ => Write::Apply(object(desired.clone())),
    })
}

/// An adoption the consent rules forbid becomes a refusal; every other
/// decision stands.
fn with_consent(
    decision: Ownership,
    meta: Option<&ObjectMeta>,
    what: &str,
    owner: &Owner,
    policy: &AdoptionPolicy,
    consented: bool,
) -> Ownership {
    match (decision, meta) {
        (Ownership::Adopt, Some(meta)) => {
            match consent::adoption(what, meta, owner, policy, consented) {
                Ok(()) => Ownership::Adopt,
                Err(refusal) => Ownership::Refuse(refusal),
            }
        }
        (decision, _) => decision,
    }
}

/// Whether applying `desired` would change nothing in `live`. An object that
/// cannot be compared (it does not serialise) counts as changed: a needless
/// write is safe, a missed one is not.
fn unchanged<K: Serialize>(live: &K, desired: &K) -> bool {
    match (serde_json::to_value(live), serde_json::to_value(desired)) {
        (Ok(l), Ok(d)) => contains(&l, &d),
        _ => false,
    }
}

fn port_keys(service: &Service) -> Vec<PortKey> {
    service
        .spec
        .iter()
        .flat_map(|s| s.ports.iter().flatten())
        .map(port_key)
        .collect()
}

fn port_key(p: &ServicePort) -> PortKey {
    (p.port, p.protocol.clone().unwrap_or_else(|| "TCP".into()))
}

/// The ports of the applied Service that are in `keep`, or `None` when it
/// has no others (nothing to prune).
pub fn pruned_ports(applied: &Service, keep: &[PortKey]) -> Option<Vec<ServicePort>> {
    let ports: Vec<&ServicePort> = applied
        .spec
        .iter()
        .flat_map(|s| s.ports.iter().flatten())
        .collect();
    if ports.iter().all(|p| keep.contains(&port_key(p))) {
        return None;
    }
    Some(
        ports
            .into_iter()
            .filter(|p| keep.contains(&port_key(p)))
            .cloned()
            .collect(),
    )
}

fn is_headless(service: &Service) -> bool {
    service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

/// What to do with an object of our name that may already exist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ownership {
    /// Nothing there: create it.
    Create,
    /// Already ours.
    Owned,
    /// Hand-made and unowned: take it over in place.
    Adopt,
    Refuse(Refusal),
}

fn controller_ref(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
}

fn ownership_by_refs(meta: &ObjectMeta, owner: &Owner, what: &str) -> Ownership {
    match controller_ref(meta) {
        Some(r) if r.uid == owner.uid => Ownership::Owned,
        Some(r) => Ownership::Refuse(Refusal {
            reason: "OwnedByAnotherController",
            message: format!(
                "{what} {}/{} is controlled by {} {}; refusing to take it over",
                owner.namespace, owner.name, r.kind, r.name
            ),
        }),
        None => Ownership::Adopt,
    }
}

/// Decide whether an existing Service may be managed as `desired`: adopt
/// an unowned selector-less ClusterIP Service (keeping its clusterIP,
/// labels and annotations); refuse anything else, saying why.
pub fn service_ownership(
    existing: Option<&Service>,
    owner: &Owner,
    desired: &Service,
) -> Ownership {
    let Some(svc) = existing else {
        return Ownership::Create;
    };
    let headless = is_headless(desired);
    let decision = ownership_by_refs(&svc.metadata, owner, "Service");
    if matches!(decision, Ownership::Refuse(_)) {
        return decision;
    }
    let spec = svc.spec.clone().unwrap_or_default();
    let refuse = |reason, message: String| Ownership::Refuse(Refusal { reason, message });
    let what = "kube-endpoints publishes no EndpointSlices for it";
    if spec.selector.as_ref().is_some_and(|s| !s.is_empty()) {
        return refuse(
            "ServiceHasSelector",
            format!(
                "Service {}/{} has a selector, so Kubernetes manages its endpoints; remove the selector or choose another name ({what})",
                owner.namespace, owner.name
            ),
        );
    }
    let type_ = spec.type_.as_deref().unwrap_or("ClusterIP");
    if type_ != "ClusterIP" {
        return refuse(
            "ServiceTypeConflict",
            format!(
                "Service {}/{} is of type {type_}; only ClusterIP Services can be managed ({what})",
                owner.namespace, owner.name
            ),
        );
    }
    let existing_headless = spec.cluster_ip.as_deref() == Some("None");
    let has_ip = spec.cluster_ip.as_deref().is_some_and(|ip| !ip.is_empty());
    if has_ip && existing_headless != headless {
        let (have, want) = if existing_headless {
            ("headless", "a ClusterIP")
        } else {
            ("a ClusterIP", "headless")
        };
        return refuse(
            "ClusterIPConflict",
            format!(
                "Service {}/{} is {have} Service but spec.clusterIP asks for {want} one; clusterIP is immutable, delete the Service or change spec.clusterIP ({what})",
                owner.namespace, owner.name
            ),
        );
    }
    let primary = |s: &Service| {
        s.spec
            .as_ref()
            .and_then(|s| s.ip_families.as_ref())
            .and_then(|f| f.first().cloned())
    };
    if let (Some(have), Some(want)) = (primary(svc), primary(desired))
        && have != want
    {
        return refuse(
            "IPFamilyConflict",
            format!(
                "Service {}/{} has primary IP family {have}, but the hosts are {want} only; the primary family of a Service is immutable: delete the Service (it is recreated with an {want} ClusterIP) or add {have} hosts ({what})",
                owner.namespace, owner.name
            ),
        );
    }
    decision
}

/// Decide whether an existing Endpoints may be managed.
pub fn endpoints_ownership(existing: Option<&Endpoints>, owner: &Owner) -> Ownership {
    match existing {
        None => Ownership::Create,
        Some(ep) => ownership_by_refs(&ep.metadata, owner, "Endpoints"),
    }
}

#[cfg(test)]
#[path = "writes_tests.rs"]
mod tests;
