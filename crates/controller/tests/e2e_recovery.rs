//! Restarting the control plane under a running controller: it recovers by
//! itself and loses nothing. Its own control plane, since it is torn down.

mod support;

use kube_endpoints_api::{GROUP, Phase};
use kube_endpoints_testkit::controlplane::ControlPlane;
use kube_endpoints_testkit::netns::TestHost;
use support::*;

#[tokio::test(flavor = "multi_thread")]
async fn the_controller_survives_an_apiserver_and_etcd_restart() {
    let mut cp = ControlPlane::start().await.expect("control plane");
    let client = cp.client().await.expect("client");
    install_crd(&client, GROUP).await;
    let ns = namespace(&client, "e2e-recovery").await;
    let host = TestHost::create().await.expect("host");
    let ports = tcp_and_http_ports();
    let mut backend = host.start_backend(ports).await.expect("backend");
    let _controller = start_controller_as(&ns, &[], cp.kubeconfig_path()).await;
    let yaml = format!(
        "apiVersion: {GROUP}/v1beta1\nkind: ClusterEndpoint\nmetadata: {{name: db}}\nspec:\n  periodSeconds: 1\n  ports:\n  - {{name: tcp, port: 443, targetPort: 443, hosts: [{ip}], tcpSocket: {{enable: true}}}}\n  - {{name: http, port: 80, targetPort: 80, hosts: [{ip}], httpGet: {{path: /healthz}}}}\n",
        ip = host.ipv4()
    );
    must_apply(&client, &ns, GROUP, &yaml).await;
    wait_phase(&client, &ns, GROUP, "db", Phase::Healthy).await;

    cp.restart_etcd_and_apiserver()
        .await
        .expect("control plane restarts");
    let client = cp.client().await.expect("client after restart");
    // Nothing was lost, and the controller still acts on health changes.
    let cep = wait_phase(&client, &ns, GROUP, "db", Phase::Healthy).await;
    assert_eq!(cep.status.expect("status").ready.as_deref(), Some("2/2"));
    backend.stop().await.expect("stop");
    wait_phase(&client, &ns, GROUP, "db", Phase::UnHealthy).await;

    cp.restart_apiserver().await.expect("apiserver restarts");
    let client = cp.client().await.expect("client after restart");
    backend.start().await.expect("start");
    wait_phase(&client, &ns, GROUP, "db", Phase::Healthy).await;
    // The status reports the hosts' health even when a slice write failed
    // on the restarting apiserver (SyncEndpointReady says so); the retry
    // brings the slices along.
    wait_all_ready(&client, &ns, "db", 2).await;
}
