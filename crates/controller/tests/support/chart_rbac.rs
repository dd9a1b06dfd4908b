//! The chart's ServiceAccount and RBAC applied to the test cluster as an
//! admin would at install time, and a kubeconfig of that ServiceAccount, so
//! that end-to-end tests run the controller with exactly the chart's
//! permissions rather than as an admin.

use std::path::PathBuf;

use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, ResourceExt};

use super::{chart, control_plane, namespace};

/// The chart's objects for this release.
pub struct Install {
    pub service_account: String,
    /// The chart's own `--lease-name`, which its Role is limited to (with
    /// `shards` 1).
    pub lease_name: String,
}

/// Apply the chart's ServiceAccount, RBAC and CRD (rendered with the helm
/// arguments `extra`) in `system_ns` as the admin would at install time.
pub async fn install_chart_rbac(
    client: &Client,
    release: &str,
    system_ns: &str,
    extra: &[&str],
) -> Install {
    let _ = namespace(client, system_ns).await;
    let objects = chart::objects(&chart::render(release, system_ns, extra));
    let wanted = [
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
    ];
    let mut service_account = None;
    for obj in objects
        .iter()
        .filter(|o| wanted.iter().any(|k| o["kind"] == *k))
    {
        let api_version = obj["apiVersion"].as_str().expect("apiVersion");
        let kind = obj["kind"].as_str().expect("kind");
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
        let object: DynamicObject = serde_json::from_value(obj.clone()).expect("object");
        let api: Api<DynamicObject> = match object.namespace() {
            Some(ns) => Api::namespaced_with(client.clone(), &ns, &resource),
            None => Api::all_with(client.clone(), &resource),
        };
        api.patch(
            &object.name_any(),
            &PatchParams::apply("helm").force(),
            &Patch::Apply(&object),
        )
        .await
        .unwrap_or_else(|e| panic!("{kind} {} applies: {e}", object.name_any()));
        if kind == "ServiceAccount" {
            service_account = Some(object.name_any());
        }
    }
    let args: Vec<String> = objects
        .iter()
        .filter(|o| o["kind"] == "Deployment")
        .flat_map(|d| {
            d["spec"]["template"]["spec"]["containers"][0]["args"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|a| a.as_str().map(String::from))
        .collect();
    let lease_name = args
        .iter()
        .find_map(|a| a.strip_prefix("--lease-name=").map(String::from))
        .expect("the chart passes --lease-name");
    Install {
        service_account: service_account.expect("the chart renders a ServiceAccount"),
        lease_name,
    }
}

/// A kubeconfig holding a TokenRequest token of the chart's ServiceAccount
/// `account` in `system_ns`.
pub async fn service_account_kubeconfig(
    client: &Client,
    system_ns: &str,
    account: &str,
) -> PathBuf {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), system_ns);
    let request: TokenRequest = serde_json::from_value(serde_json::json!({
        "spec": {"audiences": [], "expirationSeconds": 3600}
    }))
    .expect("token request");
    let issued: TokenRequest = api
        .create_subresource("token", account, &PostParams::default(), &request)
        .await
        .expect("a token is issued for the ServiceAccount");
    let token = issued.status.expect("token status").token;
    let server = control_plane().server_url();
    let path = control_plane().dir().join(format!("kubeconfig-{account}"));
    let yaml = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {{server: '{server}', insecure-skip-tls-verify: true}}\nusers:\n- name: sa\n  user: {{token: '{token}'}}\ncontexts:\n- name: c\n  context: {{cluster: c, user: sa}}\ncurrent-context: c\n"
    );
    std::fs::write(&path, yaml).expect("kubeconfig written");
    path
}
