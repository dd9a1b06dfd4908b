//! High availability, end to end: two (then three) `kube-endpoints run`
//! processes with leader election, authenticated as the chart's
//! ServiceAccount (a real token from the TokenRequest API) with exactly the
//! RBAC the chart renders — not as an admin. Only the leader probes and
//! writes; killing it (SIGKILL, then SIGTERM) hands leadership over, the
//! endpoints keep working, and the failover itself writes nothing.

mod support;

use std::path::{Path, PathBuf};
use std::time::Instant;

use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, ResourceExt};
use kube_endpoints_api::{GROUP, Phase};
use kube_endpoints_testkit::netns::TestHost;
use support::*;

const RELEASE: &str = "ke";
const SYSTEM_NS: &str = "kube-endpoints-system";
const LEASE_SECONDS: &str = "6";

/// The chart's objects for this release.
struct Install {
    service_account: String,
    /// The chart's own `--lease-name`, which its Role is limited to.
    lease_name: String,
}

/// Apply the chart's ServiceAccount, RBAC and CRD as the admin would at
/// install time.
async fn install_chart_rbac(client: &Client) -> Install {
    let _ = namespace(client, SYSTEM_NS).await;
    let objects = chart::objects(&chart::render(RELEASE, SYSTEM_NS, &[]));
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

/// A kubeconfig holding a TokenRequest token of the chart's ServiceAccount.
async fn service_account_kubeconfig(client: &Client, account: &str) -> PathBuf {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), SYSTEM_NS);
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

async fn start_replica(ns: &str, kubeconfig: &Path, lease: &str) -> Controller {
    let args = [
        "--leader-election=true",
        "--lease-name",
        lease,
        "--lease-namespace",
        SYSTEM_NS,
        "--lease-duration-seconds",
        LEASE_SECONDS,
    ];
    start_controller_as(ns, &args, kubeconfig).await
}

async fn is_leader(c: &Controller) -> bool {
    c.metric("kube_endpoints_leader").await == 1.0
}

/// Wait until `next` leads and has reconciled and probed `targets` targets
/// at least twice; returns how long the handover took since `since`.
async fn takeover(next: &Controller, since: Instant, targets: f64) -> std::time::Duration {
    eventually("the standby to take the Lease", || async {
        is_leader(next).await.then_some(())
    })
    .await;
    let took = since.elapsed();
    eventually("the new leader to reconcile and probe", || async {
        let reconciled = next.metric("kube_endpoints_reconciles_total").await >= 1.0;
        let probed = next.metric("kube_endpoints_probes_total").await >= 2.0 * targets;
        (reconciled && probed).then_some(())
    })
    .await;
    took
}

/// The new leader wrote nothing and every object is as it was (`before`).
async fn assert_wrote_nothing(
    leader: &Controller,
    client: &Client,
    ns: &str,
    before: &std::collections::BTreeMap<String, String>,
) {
    assert_eq!(
        leader.metric("kube_endpoints_api_writes_total").await,
        0.0,
        "{}",
        leader.metrics().await
    );
    assert_eq!(
        &resource_versions(client, ns, GROUP, "db").await,
        before,
        "failover changed an object"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_leader_works_and_failover_moves_no_endpoint() {
    let admin = client().await;
    let install = install_chart_rbac(&admin).await;
    let kubeconfig = service_account_kubeconfig(&admin, &install.service_account).await;
    let lease = install.lease_name.as_str();
    let ns = namespace(&admin, "e2e-ha").await;
    let host = TestHost::create().await.expect("host");
    let other = TestHost::create().await.expect("host");
    let ports = tcp_and_http_ports();
    let _backend = host.start_backend(ports.clone()).await.expect("backend");
    let mut down = other.start_backend(ports).await.expect("backend");

    let a = start_replica(&ns, &kubeconfig, lease).await;
    let b = start_replica(&ns, &kubeconfig, lease).await;
    let yaml = format!(
        "apiVersion: {GROUP}/v1beta1\nkind: ClusterEndpoint\nmetadata: {{name: db}}\nspec:\n  periodSeconds: 1\n  ports:\n  - {{name: tls, port: 443, targetPort: 443, hosts: [{h1}, {h2}], tcpSocket: {{enable: true}}}}\n  - {{name: web, port: 80, targetPort: 80, hosts: [{h1}, {h2}], httpGet: {{path: /healthz}}, failureThreshold: 1}}\n",
        h1 = host.ipv4(),
        h2 = other.ipv4()
    );
    must_apply(&admin, &ns, GROUP, &yaml).await;
    wait_phase(&admin, &ns, GROUP, "db", Phase::Healthy).await;
    // One host down, so that failover must also keep an unhealthy state.
    down.stop().await.expect("stop");
    wait_phase(&admin, &ns, GROUP, "db", Phase::UnHealthy).await;
    eventually("both ports to list the stopped host", || async {
        let s = get_cep(&admin, &ns, GROUP, "db").await?.status?;
        s.ports.iter().all(|p| p.unhealthy.len() == 1).then_some(())
    })
    .await;

    let (leader, standby) = if is_leader(&a).await { (a, b) } else { (b, a) };
    assert!(is_leader(&leader).await, "one replica leads");
    assert!(!is_leader(&standby).await, "only one replica leads");
    for metric in [
        "kube_endpoints_probes_total",
        "kube_endpoints_api_writes_total",
        "kube_endpoints_reconciles_total",
    ] {
        assert_eq!(
            standby.metric(metric).await,
            0.0,
            "the standby must not work: {metric}"
        );
    }
    assert!(leader.metric("kube_endpoints_api_writes_total").await > 0.0);

    // SIGKILL: the Lease is left to expire.
    let before = resource_versions(&admin, &ns, GROUP, "db").await;
    let ready_before = slice_readiness(&admin, &ns, "db").await;
    let killed = Instant::now();
    leader.kill().await;
    let took = takeover(&standby, killed, 4.0).await;
    eprintln!(
        "failover after SIGKILL: the standby led {took:?} after the leader died (Lease {LEASE_SECONDS}s)"
    );
    assert_wrote_nothing(&standby, &admin, &ns, &before).await;
    assert_eq!(
        slice_readiness(&admin, &ns, "db").await,
        ready_before,
        "endpoints moved"
    );

    // The new leader keeps the endpoints working: the host comes back.
    down.start().await.expect("start");
    wait_phase(&admin, &ns, GROUP, "db", Phase::Healthy).await;
    wait_all_ready(&admin, &ns, "db", 4).await;

    // SIGTERM: the leader releases the Lease and the standby takes it at once.
    let c = start_replica(&ns, &kubeconfig, lease).await;
    assert!(!is_leader(&c).await);
    let before = resource_versions(&admin, &ns, GROUP, "db").await;
    let terminated = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &standby.pid().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let took = takeover(&c, terminated, 4.0).await;
    eprintln!("failover after SIGTERM: the standby led {took:?} after the leader was told to stop");
    // Taken because it was released, not because it expired.
    eventually(
        "the stopped leader to log that it released the Lease",
        || async {
            let log = standby.log();
            log.contains("released the Lease").then_some(())
        },
    )
    .await;
    assert_wrote_nothing(&c, &admin, &ns, &before).await;
}
