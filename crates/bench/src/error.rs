//! The bench's error type: every failure says what was being done.

use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Testkit(#[from] kube_endpoints_testkit::Error),
    #[error("Kubernetes API, {what}: {source}")]
    Kube {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error(
        "profile {profile} did not finish within {limit:?} (it was {phase}); raise --profile-timeout or look at the controller's log: {log}"
    )]
    ProfileTimeout {
        profile: String,
        limit: Duration,
        phase: String,
        /// The controller's log, or each replica's.
        log: String,
    },
    #[error("{0}")]
    Deadline(String),
    #[error("plot {path}: {message}")]
    Plot { path: PathBuf, message: String },
    #[error("{0}")]
    Usage(String),
    #[error("background task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub fn kube_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let what = what.into();
    move |source| Error::Kube { what, source }
}

pub fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}
