//! The lifecycle of a ClusterEndpoint, end to end: a real kube-apiserver +
//! etcd (+ the garbage collector of kube-controller-manager), real
//! `kube-endpoints run` processes, and external hosts in network namespaces
//! made by the test itself. Needs root.

mod support;

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, PostParams};
use kube::{Client, ResourceExt};
use kube_endpoints_api::{GROUP, Phase, SEALOS_GROUP};
use kube_endpoints_testkit::netns::{Backend, TestHost};
use support::*;

async fn setup(test: &str) -> (Client, String) {
    let client = client().await;
    install_crd(&client, GROUP).await;
    let ns = namespace(&client, test).await;
    (client, ns)
}

/// A controller in a fresh namespace, two test hosts with backends, and the
/// wordpress example on them (period 1 s), applied.
struct Wordpress {
    client: Client,
    ns: String,
    controller: Controller,
    hosts: [TestHost; 2],
    backends: [Backend; 2],
    /// The hosts' IPv4 addresses.
    ips: Vec<String>,
}

async fn wordpress_on_two_hosts(test: &str) -> Wordpress {
    let (client, ns) = setup(test).await;
    let controller = start_controller(&ns, &[]).await;
    let (h1, b1) = host_with_backend().await;
    let (h2, b2) = host_with_backend().await;
    let ips = vec![h1.ipv4().to_string(), h2.ipv4().to_string()];
    must_apply(&client, &ns, GROUP, &wordpress(GROUP, &ips, 1)).await;
    Wordpress {
        client,
        ns,
        controller,
        hosts: [h1, h2],
        backends: [b1, b2],
        ips,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_wordpress_example_yields_service_slices_endpoints_and_healthy_status() {
    let w = wordpress_on_two_hosts("e2e-wordpress").await;
    let (client, ns, hosts) = (w.client.clone(), w.ns.clone(), w.ips.clone());

    let cep = wait_phase(&client, &ns, GROUP, "wordpress", Phase::Healthy).await;
    let status = cep.status.clone().expect("status");
    assert_eq!(status.ready.as_deref(), Some("8/8"));
    let conditions: Vec<(String, String)> = status
        .conditions
        .iter()
        .map(|c| (c.type_.clone(), c.status.clone()))
        .collect();
    assert_eq!(
        conditions,
        [
            ("Initialized", "True"),
            ("SyncServiceReady", "True"),
            ("SyncEndpointReady", "True"),
            ("Ready", "True"),
            ("HostsAllowed", "True"),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );

    let svc = service(&client, &ns, "wordpress")
        .await
        .expect("Service exists");
    let spec = svc.spec.clone().expect("spec");
    assert_eq!(spec.selector, None, "selector-less");
    assert!(
        spec.cluster_ip
            .as_deref()
            .is_some_and(|ip| ip != "None" && !ip.is_empty())
    );
    let mut ports: Vec<(String, i32, String)> = spec
        .ports
        .unwrap_or_default()
        .into_iter()
        .map(|p| {
            (
                p.name.unwrap_or_default(),
                p.port,
                p.protocol.unwrap_or_default(),
            )
        })
        .collect();
    ports.sort();
    assert_eq!(
        ports,
        [
            ("wp-grpc", 38083, "TCP"),
            ("wp-http", 38082, "TCP"),
            ("wp-https", 38081, "TCP"),
            ("wp-udp", 38003, "UDP")
        ]
        .map(|(n, p, proto)| (n.to_string(), p, proto.to_string()))
    );
    assert_eq!(svc.owner_references()[0].uid, cep.uid().expect("uid"));

    let all = slices(&client, &ns, "wordpress").await;
    assert_eq!(all.len(), 4, "one IPv4 slice per port");
    for s in &all {
        assert_eq!(
            s.labels()
                .get("endpointslice.kubernetes.io/managed-by")
                .map(String::as_str),
            Some(kube_endpoints::DEFAULT_CONTROLLER_ID)
        );
        assert_eq!(s.endpoints.len(), 2);
    }
    let readiness = slice_readiness(&client, &ns, "wordpress").await;
    assert_eq!(readiness.len(), 8);
    assert!(readiness.values().all(|r| *r), "{readiness:?}");

    endpoints_skipping_mirroring(&client, &ns, "wordpress").await;
    let addresses = endpoints_addresses(&client, &ns, "wordpress").await;
    let mut sorted_hosts = hosts.clone();
    sorted_hosts.sort();
    for port in ["wp-grpc", "wp-http", "wp-https", "wp-udp"] {
        assert_eq!(
            addresses.get(port),
            Some(&(sorted_hosts.clone(), vec![])),
            "{port}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_backend_leaves_rotation_and_returns() {
    let mut w = wordpress_on_two_hosts("e2e-failover").await;
    let (client, ns, down) = (w.client.clone(), w.ns.clone(), w.ips[1].clone());
    let b2 = &mut w.backends[1];
    wait_phase(&client, &ns, GROUP, "wordpress", Phase::Healthy).await;

    let stopped = std::time::Instant::now();
    b2.stop().await.expect("backend stops");
    let cep = wait_phase(&client, &ns, GROUP, "wordpress", Phase::UnHealthy).await;
    eventually(
        "every port of the stopped host to be not ready in the slices",
        || async {
            let r = slice_readiness(&client, &ns, "wordpress").await;
            let ok = r.len() == 8 && r.iter().all(|((_, _, ip), ready)| *ready == (ip != &down));
            ok.then_some(())
        },
    )
    .await;
    // failureThreshold 3 × period 1 s is the floor; the deadline is the ceiling.
    eprintln!(
        "host out of rotation {:?} after its backend stopped",
        stopped.elapsed()
    );
    let status = cep.status.expect("status");
    for port in &status.ports {
        assert_eq!(port.unhealthy.len(), 1, "{port:?}");
        assert_eq!(port.unhealthy[0].host, down);
        assert!(!port.unhealthy[0].message.is_empty());
    }
    let addresses = endpoints_addresses(&client, &ns, "wordpress").await;
    eventually("the Endpoints to list the host as not ready", || async {
        let a = endpoints_addresses(&client, &ns, "wordpress").await;
        a.values()
            .all(|(_, not_ready)| not_ready == &vec![down.clone()])
            .then_some(())
    })
    .await;
    drop(addresses);
    wait_event(&client, &ns, "wordpress", "HostUnhealthy", &down).await;

    b2.start().await.expect("backend restarts");
    wait_phase(&client, &ns, GROUP, "wordpress", Phase::Healthy).await;
    wait_all_ready(&client, &ns, "wordpress", 8).await;
    wait_event(&client, &ns, "wordpress", "HostHealthy", &down).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unhealthy_answer_and_a_silent_host_both_leave_rotation() {
    let w = wordpress_on_two_hosts("e2e-silent").await;
    let (client, ns) = (w.client.clone(), w.ns.clone());
    let ([h1, h2], b1) = (&w.hosts, &w.backends[0]);
    wait_phase(&client, &ns, GROUP, "wordpress", Phase::Healthy).await;

    // h1 answers, but unhealthy: HTTP 503 and gRPC NOT_SERVING, UDP silent.
    b1.set_healthy(false).expect("backend turns unhealthy");
    // h2 drops every packet: nothing answers, every probe must time out.
    h2.blackhole(true).await.expect("blackhole");
    let (sick, silent) = (IpAddr::V4(h1.ipv4()), IpAddr::V4(h2.ipv4()));
    // Status lists hosts in address order (198.18.0.10 after 198.18.0.9),
    // so both sides are addresses, not strings.
    let mut both = vec![sick, silent];
    both.sort();
    let cep = eventually("the expected hosts to leave rotation", || async {
        let cep = get_cep(&client, &ns, GROUP, "wordpress").await?;
        let status = cep.status.clone()?;
        let unhealthy: BTreeMap<String, Vec<IpAddr>> = status
            .ports
            .iter()
            .map(|p| {
                let hosts = p.unhealthy.iter().filter_map(|u| u.host.parse().ok());
                (p.name.clone(), hosts.collect())
            })
            .collect();
        let ok = unhealthy.get("wp-http") == Some(&both)
            && unhealthy.get("wp-grpc") == Some(&both)
            && unhealthy.get("wp-udp") == Some(&both)
            && unhealthy.get("wp-https") == Some(&vec![silent]);
        ok.then_some(cep)
    })
    .await;
    let sick = sick.to_string();
    let status = cep.status.expect("status");
    // Why the answering host is out: what its backend said.
    for (port, says) in [("wp-http", "503"), ("wp-grpc", "NOT_SERVING")] {
        let entry = status
            .ports
            .iter()
            .filter(|p| p.name == port)
            .flat_map(|p| &p.unhealthy)
            .find(|u| u.host == sick)
            .unwrap_or_else(|| panic!("{port}: {sick} is not listed"));
        assert!(entry.message.contains(says), "{port}: {}", entry.message);
    }
    assert_eq!(status.ready.as_deref(), Some("1/8"));
    h2.blackhole(false).await.expect("blackhole lifted");
}

#[tokio::test(flavor = "multi_thread")]
async fn spec_edits_converge_and_unchanged_hosts_keep_their_state() {
    let (client, ns) = setup("e2e-edits").await;
    let _controller = start_controller(&ns, &[]).await;
    let (h1, _b1) = host_with_backend().await;
    let (h2, mut b2) = host_with_backend().await;
    let (h3, _b3) = host_with_backend().await;
    let (ip1, ip2, ip3) = (
        h1.ipv4().to_string(),
        h2.ipv4().to_string(),
        h3.ipv4().to_string(),
    );
    // Apply the object with these hosts, Service port and probe.
    let edit = |hosts: &[&String], port: u16, probe: &str| {
        let hosts = hosts
            .iter()
            .map(|h| h.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let yaml = format!(
            "apiVersion: {GROUP}/v1beta1\nkind: ClusterEndpoint\nmetadata: {{name: db}}\nspec:\n  periodSeconds: 1\n  ports:\n  - name: main\n    hosts: [{hosts}]\n    port: {port}\n    targetPort: 80\n    {probe}\n    failureThreshold: 1\n"
        );
        let (client, ns) = (client.clone(), ns.clone());
        async move { must_apply(&client, &ns, GROUP, &yaml).await }
    };
    edit(&[&ip1, &ip2], 5432, "tcpSocket: {enable: true}").await;
    wait_phase(&client, &ns, GROUP, "db", Phase::Healthy).await;
    // Take h2 down so that it has a state worth keeping.
    b2.stop().await.expect("stop");
    let before = wait_phase(&client, &ns, GROUP, "db", Phase::UnHealthy).await;
    let since = before.status.as_ref().expect("status").ports[0].unhealthy[0]
        .since
        .clone();

    // Add a host: it converges, and h2 keeps its unhealthy entry untouched.
    edit(&[&ip1, &ip2, &ip3], 5432, "tcpSocket: {enable: true}").await;
    let cep = eventually("the new host to be ready", || async {
        let cep = get_cep(&client, &ns, GROUP, "db").await?;
        let s = cep.status.clone()?;
        (s.observed_generation == cep.metadata.generation && s.ready.as_deref() == Some("2/3"))
            .then_some(cep)
    })
    .await;
    let port = &cep.status.expect("status").ports[0];
    assert_eq!(port.unhealthy.len(), 1);
    assert_eq!(
        (
            port.unhealthy[0].host.as_str(),
            port.unhealthy[0].since.as_str()
        ),
        (ip2.as_str(), since.as_str())
    );
    let readiness = slice_readiness(&client, &ns, "db").await;
    assert_eq!(readiness.len(), 3);

    // Remove a host.
    edit(&[&ip2, &ip3], 5432, "tcpSocket: {enable: true}").await;
    eventually("the removed host to leave the slices", || async {
        let r = slice_readiness(&client, &ns, "db").await;
        (r.len() == 2 && !r.keys().any(|(_, _, ip)| ip == &ip1)).then_some(())
    })
    .await;

    // Change the Service port.
    edit(&[&ip2, &ip3], 6543, "tcpSocket: {enable: true}").await;
    eventually("the Service port to change", || async {
        let svc = service(&client, &ns, "db").await?;
        let ports: Vec<i32> = svc.spec?.ports?.iter().map(|p| p.port).collect();
        (ports == [6543]).then_some(())
    })
    .await;

    // Change the probe: HTTP on the same port; h3 stays ready, h2 stays down.
    edit(&[&ip2, &ip3], 6543, "httpGet: {path: /healthz}").await;
    let cep = eventually("the probe change to be observed", || async {
        let cep = get_cep(&client, &ns, GROUP, "db").await?;
        let s = cep.status.clone()?;
        (s.observed_generation == cep.metadata.generation && s.ports.first()?.probe == "http")
            .then_some(cep)
    })
    .await;
    let s = cep.status.expect("status");
    assert_eq!(s.ready.as_deref(), Some("1/2"));
    assert_eq!(s.ports[0].unhealthy[0].host, ip2);
}

const HANDMADE: &str = r#"
apiVersion: v1
kind: Service
metadata:
  name: ocs-external-rgw-lb
  labels: {team: storage}
  annotations: {note: hand-made}
spec:
  ports:
  - protocol: TCP
    port: 80
    targetPort: 80
"#;

#[tokio::test(flavor = "multi_thread")]
async fn hand_made_service_and_endpoints_are_adopted_keeping_cluster_ip() {
    let (client, ns) = setup("e2e-adopt").await;
    let (h1, _b1) = host_with_backend().await;
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let handmade: Service = yaml_object(HANDMADE);
    let created = services
        .create(&PostParams::default(), &handmade)
        .await
        .expect("hand-made Service");
    let cluster_ip = created.spec.and_then(|s| s.cluster_ip).expect("clusterIP");
    let endpoints_api: Api<Endpoints> = Api::namespaced(client.clone(), &ns);
    let handmade_ep: Endpoints = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "ocs-external-rgw-lb"},
        "subsets": [{"addresses": [{"ip": h1.ipv4().to_string()}], "ports": [{"port": 8080}]}]
    }))
    .expect("endpoints");
    endpoints_api
        .create(&PostParams::default(), &handmade_ep)
        .await
        .expect("hand-made Endpoints");

    let _controller = start_controller(&ns, &[]).await;
    let cep_yaml = format!(
        "apiVersion: {GROUP}/v1beta1\nkind: ClusterEndpoint\nmetadata: {{name: ocs-external-rgw-lb}}\nspec:\n  periodSeconds: 1\n  ports:\n  - name: http\n    port: 80\n    targetPort: 80\n    hosts: [{}]\n    httpGet: {{path: /healthz}}\n",
        h1.ipv4()
    );
    must_apply(&client, &ns, GROUP, &cep_yaml).await;
    let cep = wait_phase(&client, &ns, GROUP, "ocs-external-rgw-lb", Phase::Healthy).await;
    let svc = eventually("the Service to be adopted", || async {
        let svc = service(&client, &ns, "ocs-external-rgw-lb").await?;
        let ports = svc.spec.as_ref()?.ports.clone()?;
        (ports.len() == 1 && ports[0].name.as_deref() == Some("http")).then_some(svc)
    })
    .await;
    assert_eq!(
        svc.spec.as_ref().and_then(|s| s.cluster_ip.clone()),
        Some(cluster_ip),
        "clusterIP kept"
    );
    assert_eq!(
        svc.labels().get("team").map(String::as_str),
        Some("storage")
    );
    assert_eq!(
        svc.annotations().get("note").map(String::as_str),
        Some("hand-made")
    );
    assert_eq!(svc.owner_references()[0].uid, cep.uid().expect("uid"));
    let ep = endpoints(&client, &ns, "ocs-external-rgw-lb")
        .await
        .expect("endpoints");
    assert_eq!(ep.owner_references()[0].uid, cep.uid().expect("uid"));
    let addresses = endpoints_addresses(&client, &ns, "ocs-external-rgw-lb").await;
    assert_eq!(
        addresses.get("http"),
        Some(&(vec![h1.ipv4().to_string()], vec![]))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_service_with_a_selector_is_refused_with_a_condition() {
    let (client, ns) = setup("e2e-refuse").await;
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let with_selector: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "app"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}
    }))
    .expect("service");
    let created = services
        .create(&PostParams::default(), &with_selector)
        .await
        .expect("created");
    let _controller = start_controller(&ns, &[]).await;
    must_apply(
        &client,
        &ns,
        GROUP,
        &format!("apiVersion: {GROUP}/v1beta1\nkind: ClusterEndpoint\nmetadata: {{name: app}}\nspec:\n  ports:\n  - {{name: http, port: 80, targetPort: 80, hosts: [198.18.255.254]}}\n"),
    ).await;
    let condition = eventually("the refusal condition", || async {
        let cep = get_cep(&client, &ns, GROUP, "app").await?;
        let c = cep
            .status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == "SyncServiceReady")?;
        (c.status == "False").then_some(c)
    })
    .await;
    assert_eq!(condition.reason, "ServiceHasSelector");
    assert!(
        condition.message.contains("selector"),
        "{}",
        condition.message
    );
    let after = service(&client, &ns, "app")
        .await
        .expect("service still there");
    assert_eq!(
        after.resource_version(),
        created.resource_version(),
        "nothing overwritten"
    );
    assert!(
        slices(&client, &ns, "app").await.is_empty(),
        "no slices attached to a foreign Service"
    );
    wait_event(&client, &ns, "app", "ServiceHasSelector", "selector").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_the_object_removes_what_it_owns() {
    let (client, ns) = setup("e2e-delete").await;
    let (h1, _b1) = host_with_backend().await;
    let _controller = start_controller(&ns, &[]).await;
    must_apply(
        &client,
        &ns,
        GROUP,
        &wordpress(GROUP, &[h1.ipv4().to_string()], 1),
    )
    .await;
    wait_phase(&client, &ns, GROUP, "wordpress", Phase::Healthy).await;
    assert_eq!(slices(&client, &ns, "wordpress").await.len(), 4);
    ceps(&client, &ns, GROUP)
        .delete("wordpress", &DeleteParams::foreground())
        .await
        .expect("deleted");
    eventually(
        "the Service, Endpoints and EndpointSlices to be garbage-collected",
        || async {
            let gone = service(&client, &ns, "wordpress").await.is_none()
                && endpoints(&client, &ns, "wordpress").await.is_none()
                && slices(&client, &ns, "wordpress").await.is_empty()
                && get_cep(&client, &ns, GROUP, "wordpress").await.is_none();
            gone.then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_controller_restart_writes_nothing() {
    let Wordpress {
        client,
        ns,
        controller,
        hosts: _hosts,
        backends: [_b1, mut b2],
        ..
    } = wordpress_on_two_hosts("e2e-restart").await;
    wait_phase(&client, &ns, GROUP, "wordpress", Phase::Healthy).await;
    // One host down, so the restart must also preserve an unhealthy state.
    b2.stop().await.expect("stop");
    wait_phase(&client, &ns, GROUP, "wordpress", Phase::UnHealthy).await;
    eventually("the status to list the host on every port", || async {
        let cep = get_cep(&client, &ns, GROUP, "wordpress").await?;
        cep.status?
            .ports
            .iter()
            .all(|p| p.unhealthy.len() == 1)
            .then_some(())
    })
    .await;

    let versions = || resource_versions(&client, &ns, GROUP, "wordpress");
    let before = versions().await;
    // Every target probed at least twice.
    let _restarted = restart_writing_nothing(controller, &ns, 16.0).await;
    assert_eq!(
        versions().await,
        before,
        "resourceVersions changed across the restart"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ipv6_hosts_land_in_ipv6_slices() {
    let (client, ns) = setup("e2e-ipv6").await;
    let (h1, _b1) = host_with_backend().await;
    let _controller = start_controller(&ns, &[]).await;
    let yaml = format!(
        "apiVersion: {GROUP}/v1beta1\nkind: ClusterEndpoint\nmetadata: {{name: dual}}\nspec:\n  periodSeconds: 1\n  ports:\n  - name: web\n    port: 80\n    targetPort: 80\n    hosts: [{}, '{}']\n    httpGet: {{path: /healthz}}\n",
        h1.ipv4(),
        h1.ipv6()
    );
    must_apply(&client, &ns, GROUP, &yaml).await;
    wait_phase(&client, &ns, GROUP, "dual", Phase::Healthy).await;
    let all: Vec<EndpointSlice> = slices(&client, &ns, "dual").await;
    let summary: Vec<(String, String, Vec<String>)> = all
        .iter()
        .map(|s| {
            (
                s.name_any(),
                s.address_type.clone(),
                s.endpoints
                    .iter()
                    .flat_map(|e| e.addresses.clone())
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                "dual.web.ipv4.0".to_string(),
                "IPv4".to_string(),
                vec![h1.ipv4().to_string()]
            ),
            (
                "dual.web.ipv6.0".to_string(),
                "IPv6".to_string(),
                vec![h1.ipv6().to_string()]
            ),
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sealos_group_and_legacy_top_level_hosts_work() {
    let client = client().await;
    install_crd(&client, SEALOS_GROUP).await;
    let ns = namespace(&client, "e2e-sealos").await;
    let (h1, _b1) = host_with_backend().await;
    let _controller = start_controller(&ns, &["--group", SEALOS_GROUP]).await;
    // The legacy form of endpoints-operator 0.1: hosts at the top level, a
    // port without probe settings.
    let yaml = example("legacy.yaml", SEALOS_GROUP, &[h1.ipv4().to_string()], 1);
    must_apply(&client, &ns, SEALOS_GROUP, &yaml).await;
    let cep = wait_phase(&client, &ns, SEALOS_GROUP, "wordpress", Phase::Healthy).await;
    assert_eq!(cep.status.expect("status").ready.as_deref(), Some("2/2"));
    let svc = service(&client, &ns, "wordpress").await.expect("service");
    assert_eq!(
        svc.owner_references()[0].api_version,
        format!("{SEALOS_GROUP}/v1beta1")
    );
    let readiness = slice_readiness(&client, &ns, "wordpress").await;
    assert_eq!(readiness.len(), 2);
    assert!(readiness.values().all(|r| *r));
}
