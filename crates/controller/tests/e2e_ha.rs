//! High availability, end to end: two (then three) `kube-endpoints run`
//! processes with leader election, authenticated as the chart's
//! ServiceAccount (a real token from the TokenRequest API) with exactly the
//! RBAC the chart renders — not as an admin. Only the leader probes and
//! writes; killing it (SIGKILL, then SIGTERM) hands leadership over, the
//! endpoints keep working, and the failover itself writes nothing.

mod support;

use std::path::Path;
use std::time::Instant;

use kube::Client;
use kube_endpoints_api::{GROUP, Phase};
use kube_endpoints_testkit::netns::TestHost;
use support::chart_rbac::{install_chart_rbac, service_account_kubeconfig};
use support::*;

const RELEASE: &str = "ke";
const SYSTEM_NS: &str = "kube-endpoints-system";
const LEASE_SECONDS: &str = "6";

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
    let install = install_chart_rbac(&admin, RELEASE, SYSTEM_NS, &[]).await;
    let kubeconfig = service_account_kubeconfig(&admin, SYSTEM_NS, &install.service_account).await;
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
