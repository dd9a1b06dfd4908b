//! Errors of the controller layer. Each has a stable `reason()` used in
//! conditions, Events and the `reason` label of metrics.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),
    #[error("could not serialise {what}: {source}")]
    Serialize {
        what: &'static str,
        source: serde_json::Error,
    },
    #[error("object has no {0}")]
    MissingField(&'static str),
    #[error("sync failed ({reason}): {message}")]
    SyncFailed { reason: String, message: String },
}

impl Error {
    /// Stable, CamelCase reason.
    pub fn reason(&self) -> &str {
        match self {
            Error::Kube(kube::Error::Api(status)) if status.code == 409 => "Conflict",
            Error::Kube(kube::Error::Api(status)) if status.code == 422 => "Invalid",
            Error::Kube(_) => "ApiError",
            Error::Serialize { .. } => "SerializationError",
            Error::MissingField(_) => "MissingField",
            Error::SyncFailed { .. } => "SyncFailed",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
