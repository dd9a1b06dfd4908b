//! kube-endpoints: health-checked Services and EndpointSlices for hosts that
//! live outside Kubernetes.
//!
//! The pipeline for one ClusterEndpoint reads top to bottom:
//! [`plan`] (validate and normalise the spec) → [`builder`] (pure: desired
//! Service, EndpointSlices, Endpoints and status from the plan and a health
//! snapshot) → [`reconcile`] (the thin shell that applies what differs, per
//! [`diff`]). Probing lives in the `kube-endpoints-probe` crate and runs
//! outside reconciliation; [`run`] wires the two together.

pub mod builder;
pub mod check;
pub mod cli;
pub mod diff;
pub mod error;
pub mod fence;
pub mod import;
pub mod leader;
pub mod metrics;
pub mod plan;
pub mod reconcile;
pub mod run;
pub mod server;

/// Value of the EndpointSlice `managed-by` label unless configured otherwise.
pub const DEFAULT_CONTROLLER_ID: &str = "kube-endpoints.khulnasoft-lab.github.io";
/// The server-side apply field manager.
pub const FIELD_MANAGER: &str = "kube-endpoints";

/// `User-Agent` of HTTP probes.
pub fn user_agent() -> String {
    format!("kube-endpoints/{}", env!("CARGO_PKG_VERSION"))
}
