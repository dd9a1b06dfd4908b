//! [`CepKey`]: which ClusterEndpoint, within one controller (whose group
//! is fixed). Its own module so that the stages that key their state by
//! object (budgets, credentials) need not depend on the shell's context.

use kube::ResourceExt;
use kube::core::{ApiResource, DynamicObject};
use kube::runtime::reflector::ObjectRef;

use crate::error::{Error, Result};

/// Identifies a ClusterEndpoint within one controller (whose group is fixed).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CepKey {
    pub namespace: String,
    pub name: String,
}

impl CepKey {
    pub fn of(cep: &impl ResourceExt) -> Result<Self> {
        Ok(CepKey {
            namespace: cep
                .namespace()
                .ok_or(Error::MissingField("metadata.namespace"))?,
            name: cep.name_any(),
        })
    }

    pub fn object_ref(&self, resource: &ApiResource) -> ObjectRef<DynamicObject> {
        ObjectRef::new_with(&self.name, resource.clone()).within(&self.namespace)
    }
}
