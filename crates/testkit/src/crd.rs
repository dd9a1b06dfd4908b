//! Installing a CustomResourceDefinition and waiting until it is served.

use std::time::{Duration, Instant};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};

use crate::{Error, Result};

/// How long a CRD may take to become Established.
pub const ESTABLISHED_TIMEOUT: Duration = Duration::from_secs(60);

/// Server-side apply `crd` (as `manager`, forcing) and wait until the
/// apiserver reports it Established.
pub async fn install_and_wait(
    client: &Client,
    crd: &CustomResourceDefinition,
    manager: &str,
) -> Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = crd.name_any();
    let request = |method, source| Error::Request {
        method,
        path: format!("customresourcedefinitions/{name}"),
        source: Box::new(source),
    };
    crds.patch(
        &name,
        &PatchParams::apply(manager).force(),
        &Patch::Apply(crd),
    )
    .await
    .map_err(|e| request("PATCH", e))?;
    let started = Instant::now();
    loop {
        let established = crds
            .get_opt(&name)
            .await
            .map_err(|e| request("GET", e))?
            .and_then(|c| c.status)
            .and_then(|s| s.conditions)
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
            });
        if established {
            return Ok(());
        }
        if started.elapsed() > ESTABLISHED_TIMEOUT {
            return Err(Error::NotReady {
                process: format!("CRD {name}"),
                after: ESTABLISHED_TIMEOUT,
                last: "not Established".into(),
                log: Default::default(),
                tail: String::new(),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
