//! How the controller under test is run and observed (from the command line).

use std::path::PathBuf;
use std::time::Duration;

/// How the controller under test is run and observed.
#[derive(Clone, Debug)]
pub struct Options {
    /// The controller's command line; `{kubeconfig}`, `{metrics_addr}`,
    /// `{metrics_port}`, `{namespace}` and `{group}` are replaced.
    pub controller_cmd: Vec<String>,
    pub group: String,
    /// Also require the compatibility Endpoints to agree.
    pub check_endpoints: bool,
    /// Objects created at once.
    pub concurrency: usize,
    /// Logs of the controller runs.
    pub work_dir: PathBuf,
    /// Overrides every profile's own timeout.
    pub timeout: Option<Duration>,
}
