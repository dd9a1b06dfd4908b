//! Admission, against the real apiserver: every bad manifest of the shared
//! table (`src/validation_cases.rs`, which the unit tests also run through
//! `plan()`) is refused with a message naming the field; so are a bad
//! object name and a change of the immutable clusterIP.

mod support;
// `plan_field` of each case is read by the unit tests of plan().
#[allow(dead_code)]
#[path = "../src/validation_cases.rs"]
mod validation_cases;

use kube_endpoints_api::GROUP;
use support::*;
use validation_cases::{CASES, manifest};

/// Every admission rule: each bad manifest is refused and the message names
/// the offending field.
#[tokio::test(flavor = "multi_thread")]
async fn bad_manifests_are_rejected_naming_the_field() {
    let client = client().await;
    install_crd(&client, GROUP).await;
    let ns = namespace(&client, "e2e-validation").await;
    let port = "name: a, port: 80, targetPort: 80, hosts: [198.18.0.2]";
    let mut failures = Vec::new();
    for (i, case) in CASES.iter().enumerate() {
        let yaml = manifest(GROUP, &format!("bad-{i}"), case.spec);
        let (what, field) = (case.what, case.admission);
        match create(&client, &ns, &yaml).await {
            Ok(_) => failures.push(format!("{what}: accepted")),
            Err(kube::Error::Api(status)) if status.code == 422 => {
                if !status.message.contains(field) {
                    failures.push(format!(
                        "{what}: message does not name {field}: {}",
                        status.message
                    ));
                }
            }
            Err(e) => failures.push(format!("{what}: unexpected error {e}")),
        }
    }
    // The object's name becomes the Service's name.
    match create(
        &client,
        &ns,
        &manifest(GROUP, "9-bad", &format!("  ports: [{{{port}}}]")),
    )
    .await
    {
        Err(kube::Error::Api(status)) if status.message.contains("metadata.name") => {}
        other => failures.push(format!("bad name: {other:?}")),
    }
    // clusterIP is immutable.
    apply_yaml(
        &client,
        &ns,
        GROUP,
        &manifest(GROUP, "fixed", &format!("  ports: [{{{port}}}]")),
    )
    .await
    .expect("valid object");
    match apply_yaml(
        &client,
        &ns,
        GROUP,
        &manifest(
            GROUP,
            "fixed",
            &format!("  clusterIP: None\n  ports: [{{{port}}}]"),
        ),
    )
    .await
    {
        Err(kube::Error::Api(status))
            if status.message.contains("spec.clusterIP")
                && status.message.contains("immutable") => {}
        other => failures.push(format!("clusterIP change: {other:?}")),
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Create a ClusterEndpoint with a plain POST, as `kubectl create` (or a
/// client-side `kubectl apply` of a new object) does.
async fn create(
    client: &kube::Client,
    ns: &str,
    yaml: &str,
) -> Result<kube::core::DynamicObject, kube::Error> {
    let (api, obj) = dynamic(client, ns, GROUP, yaml);
    api.create(&kube::api::PostParams::default(), &obj).await
}
