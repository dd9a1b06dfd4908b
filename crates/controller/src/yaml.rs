//! YAML in and out, one way for the whole project: manifests are read as
//! JSON values (one per non-empty document), and each reader then takes the
//! kinds it knows from them.

use std::path::Path;

use serde::Serialize;
use serde_json::Value;

pub use serde_saphyr::SerializeError as WriteError;

/// Why a text is not the YAML it should be (it says where).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct ReadError(Box<serde_saphyr::Error>);

/// Every non-empty document of a multi-document YAML text, in order.
pub fn documents(text: &str) -> Result<Vec<Value>, ReadError> {
    serde_saphyr::from_multiple(text).map_err(|e| ReadError(Box::new(e)))
}

/// Why a manifest file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not valid YAML: {source}")]
    Yaml { path: String, source: ReadError },
}

/// Every non-empty document of a manifest file.
pub fn read_file(path: &Path) -> Result<Vec<Value>, FileError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| FileError::Read {
        path: shown.clone(),
        source,
    })?;
    documents(&text).map_err(|source| FileError::Yaml {
        path: shown,
        source,
    })
}

/// One document. Strings keep their lines (multi-line ones as literal
/// blocks, long ones unfolded), so a message reads as the code wrote it.
pub fn to_string<T: Serialize>(value: &T) -> Result<String, WriteError> {
    let options = serde_saphyr::ser_options! { folded_wrap_chars: usize::MAX };
    serde_saphyr::to_string_with_options(value, options)
}

/// The ClusterEndpoint CRD of `group`, as `kube-endpoints crd` prints it
/// (and the chart ships it).
pub fn crd(group: &str) -> Result<String, WriteError> {
    to_string(&kube_endpoints_api::crd_for_group(group))
}

#[cfg(test)]
#[path = "yaml_tests.rs"]
mod tests;
