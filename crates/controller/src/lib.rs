//! kube-endpoints: health-checked Services and EndpointSlices for hosts that
//! live outside Kubernetes.
//!
//! The pipeline for one ClusterEndpoint reads top to bottom, pure until the
//! last step:
//! [`plan`] (validate and normalise the spec) → [`budget`] and [`policy`]
//! (is the object within the target budgets; which hosts the address
//! policy denies — they leave the plan) → [`builder`] (the desired
//! Service, EndpointSlices and Endpoints from the plan and a health
//! snapshot) → [`writes`] (what to apply or delete, against the caches, per
//! [`diff`]) → [`reconcile`] (the thin shell that executes the writes) →
//! [`status`] and [`events`] (what is reported). Probing lives in the
//! `kube-endpoints-probe` crate and runs outside reconciliation; [`scope`]
//! wires the two together for one API group and namespace, [`cli`] runs the
//! scopes (under [`leader`] election when asked).

#![forbid(unsafe_code)]

pub mod backoff;
pub mod budget;
pub mod builder;
pub mod cep_key;
pub mod certificates;
pub mod check;
pub mod cli;
pub mod cluster_ranges;
pub mod coalesce;
pub mod consent;
pub mod context;
pub mod credentials;
pub mod decode;
pub mod diff;
pub mod drain;
pub mod dropped_fields;
pub mod error;
pub mod event_limit;
pub mod events;
pub mod execute;
pub mod fail_open;
pub mod fence;
pub mod first_verdicts;
pub mod fleet_guard;
pub mod host_report;
pub mod host_roles;
pub mod import;
pub mod leader;
pub mod metrics;
pub mod names;
pub mod placement;
pub mod plan;
pub mod policy;
pub mod reconcile;
pub mod record;
pub mod resolve;
pub mod scope;
pub mod server;
pub mod service_metadata;
pub mod sharding;
pub mod shards;
pub mod slice_index;
pub mod status;
mod watch_cache;
pub mod writes;
pub mod yaml;

#[cfg(test)]
mod testing;
// `admission` of each case is read by tests/admission.rs.
#[cfg(test)]
#[allow(dead_code)]
mod validation_cases;

/// Value of the EndpointSlice `managed-by` label unless configured otherwise.
pub const DEFAULT_CONTROLLER_ID: &str = "kube-endpoints.khulnasoft-lab.github.io";
/// The server-side apply field manager.
pub const FIELD_MANAGER: &str = "kube-endpoints";

/// `User-Agent` of HTTP probes.
pub fn user_agent() -> String {
    format!("kube-endpoints/{}", env!("CARGO_PKG_VERSION"))
}
