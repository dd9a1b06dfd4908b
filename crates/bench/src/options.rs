//! How the controller under test is run and observed (from the command line).

use std::path::PathBuf;
use std::time::Duration;

/// How the controller under test is run and observed.
#[derive(Clone, Debug)]
pub struct Options {
    /// What the reports call this controller (`kube-endpoints`,
    /// `endpoints-operator --maxconcurrent 1`).
    pub label: String,
    /// The controller's command line; `{kubeconfig}`, `{metrics_addr}`,
    /// `{metrics_port}`, `{namespace}` and `{group}` are replaced.
    pub controller_cmd: Vec<String>,
    /// Variables set in the controller's environment (`{kubeconfig}` is
    /// replaced in the values), for controllers that read their kubeconfig
    /// from `KUBECONFIG` rather than a flag.
    pub controller_env: Vec<(String, String)>,
    pub group: String,
    /// The CRD manifest (YAML or JSON) of a controller that brings its own
    /// schema (the predecessor's); `None`: this repository's CRD served
    /// under `group`.
    pub crd_manifest: Option<PathBuf>,
    /// The port a controller that cannot be told where to serve its
    /// metrics serves them on; `None`: a free port, passed as
    /// `{metrics_addr}`/`{metrics_port}`.
    pub fixed_metrics_port: Option<u16>,
    /// kube-controller-manager controllers the controller relies on (the
    /// predecessor writes Endpoints only and needs `endpointslicemirroring`
    /// for EndpointSlices); their writes count as the controller's.
    pub kcm_controllers: Vec<String>,
    /// Also require the compatibility Endpoints to agree.
    pub check_endpoints: bool,
    /// Objects created at once.
    pub concurrency: usize,
    /// Logs of the controller runs.
    pub work_dir: PathBuf,
    /// Whether the command takes kube-endpoints' sharding flags (profiles
    /// that scale out run it as several replicas with `--shards`).
    pub shardable: bool,
    /// Write a UDP probe's `data` as a list of byte values, as the
    /// predecessor's CRD declares it (Go's `[]uint8`), not as a string.
    pub udp_data_as_bytes: bool,
    /// Overrides every profile's own timeout.
    pub timeout: Option<Duration>,
}
