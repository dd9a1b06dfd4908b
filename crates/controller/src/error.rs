//! The error of the reconcile shell. Each has a stable, CamelCase `reason()`
//! used in conditions, Events and the `reason` label of metrics.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),
    #[error("object has no {0}")]
    MissingField(&'static str),
    #[error("cannot encode {0}: {1}")]
    Encode(&'static str, serde_json::Error),
    /// An object of our name that we may not manage (reported in a
    /// condition, never retried by itself: a change to it triggers us).
    #[error("{}", .0.message)]
    Refused(Refusal),
}

impl Error {
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(status)) if status.code == 409 => "Conflict",
            Error::Kube(kube::Error::Api(status)) if status.code == 422 => "Invalid",
            Error::Kube(_) => "ApiError",
            Error::MissingField(_) => "MissingField",
            Error::Encode(..) => "EncodeFailed",
            Error::Refused(r) => r.reason,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a Service or Endpoints of the object's name cannot be managed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// Stable, CamelCase; used as condition reason, Event reason and metric label.
    pub reason: &'static str,
    pub message: String,
}
