//! The data path, end to end: a network namespace plays a node running the
//! real kube-proxy (nftables mode; iptables mode in one test), and a plain
//! client process inside it (`ke-client`) connects to the Service's
//! ClusterIP and port. Every answer names the backend address that served
//! it, so each test asserts which external host answered every request:
//! a wrong port name, protocol, address type, family or condition in what
//! the controller writes cannot pass.
//!
//! The control plane of this binary is dual-stack (an IPv4 and an IPv6
//! Service range); one node (kube-proxy) serves every test, each test wires
//! its own test hosts to it. Before asserting on traffic, a test waits until
//! kube-proxy's rule set holds exactly the endpoints it expects (the real
//! signal that kube-proxy has applied the EndpointSlices), never on a sleep.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use kube::Client;
use kube::api::{Api, PostParams};
use kube_endpoints_api::{GROUP, Phase};
use kube_endpoints_testkit::controlplane::{ControlPlane, ControlPlaneOptions};
use kube_endpoints_testkit::netns::{Backend, TestHost};
use kube_endpoints_testkit::node::{Attempt, Node, NodeOptions, Outcome, Proto, ProxyMode};
use support::{
    Controller, eventually, install_crd, must_apply, namespace, service, slice_readiness, slices,
    wait_phase,
};

/// An IPv4 and an IPv6 Service range: the first is the default family.
const SERVICE_CIDRS: &str = "10.0.0.0/24,fd00:6b65:ffff::/112";

/// A UDP source port below the ephemeral range: no earlier flow of a test
/// can have used it.
const FRESH_UDP_PORT: u16 = 20_053;

/// Connections per check: with two backends chosen at random, all of 40
/// landing on one of them has a chance of 2^-39.
const SPREAD_ATTEMPTS: u64 = 40;

/// The controller sets `ipFamilies` from the hosts' families: until it
/// does, the IPv6 test makes the Service itself (an IPv6-only, selector-less
/// Service that the ClusterEndpoint adopts, keeping its spec). Set to true
/// once the controller chooses the family, so the test proves that too.
const CONTROLLER_SETS_IP_FAMILIES: bool = true;

fn control_plane() -> &'static ControlPlane {
    static CP: OnceLock<ControlPlane> = OnceLock::new();
    CP.get_or_init(|| {
        support::start_control_plane(ControlPlaneOptions {
            service_cluster_ip_range: SERVICE_CIDRS.into(),
            ..ControlPlaneOptions::default()
        })
    })
}

/// A node in `mode`, started on a thread of its own whose runtime keeps
/// the kube-apiserver forwarder running for as long as the test binary.
fn start_node(mode: ProxyMode) -> Node {
    let cp = control_plane();
    let options = NodeOptions {
        mode,
        ..NodeOptions::default()
    };
    support::on_own_thread(move || Node::start(cp, options))
        .unwrap_or_else(|e| panic!("the {mode:?} node starts: {e:?}"))
}

/// The node (nftables mode) shared by the tests.
fn node() -> &'static Node {
    static NODE: OnceLock<Node> = OnceLock::new();
    NODE.get_or_init(|| start_node(ProxyMode::Nftables))
}

async fn client() -> Client {
    control_plane().client().await.expect("client")
}

async fn setup(test: &str) -> (Client, String) {
    let client = client().await;
    install_crd(&client, GROUP).await;
    let ns = namespace(&client, test).await;
    (client, ns)
}

/// Two test hosts with their backends, wired to the node.
type TwoHosts = [(TestHost, Backend); 2];

/// The start of most tests: the CRD, a namespace `test`, and two test hosts
/// wired to `node`.
async fn two_hosts(test: &str, node: &Node) -> (Client, String, TwoHosts) {
    let (client, ns) = setup(test).await;
    let hosts = [host_on(node).await, host_on(node).await];
    (client, ns, hosts)
}

/// The IPv4 addresses of both hosts.
fn ipv4s(hosts: &TwoHosts) -> [IpAddr; 2] {
    [0, 1].map(|i| IpAddr::V4(hosts[i].0.ipv4()))
}

/// What most tests start from: [`two_hosts`], their IPv4 addresses, and a
/// controller watching the namespace.
struct World {
    client: Client,
    ns: String,
    hosts: TwoHosts,
    addrs: [IpAddr; 2],
    _controller: Controller,
}

async fn world(test: &str, node: &Node) -> World {
    let (client, ns, hosts) = two_hosts(test, node).await;
    let _controller = start_controller(&ns, &[]).await;
    let addrs = ipv4s(&hosts);
    World {
        client,
        ns,
        hosts,
        addrs,
        _controller,
    }
}

/// Apply `cep` (named `name`) and wait until it is Healthy.
async fn apply_healthy(client: &Client, ns: &str, name: &str, cep: &str) {
    must_apply(client, ns, GROUP, cep).await;
    wait_phase(client, ns, GROUP, name, Phase::Healthy).await;
}

/// [`http_cep`] `name` on `hosts`, Healthy, and kube-proxy on `node`
/// sending its port to both: the ClusterIP and port, and the endpoints.
async fn serve_http(
    client: &Client,
    ns: &str,
    node: &Node,
    name: &str,
    hosts: [IpAddr; 2],
) -> (SocketAddr, [SocketAddr; 2]) {
    apply_healthy(client, ns, name, &http_cep(name, &hosts)).await;
    let vip = SocketAddr::new(cluster_ip(client, ns, name).await, 8080);
    let endpoints = hosts.map(|a| SocketAddr::new(a, 80));
    wait_programmed(node, ns, name, ("http", "tcp"), &endpoints).await;
    (vip, endpoints)
}

async fn start_controller(ns: &str, extra: &[&str]) -> Controller {
    support::start_controller_as(ns, extra, control_plane().kubeconfig_path()).await
}

/// A test host running the backends of the wordpress example's ports, wired
/// to `node`.
async fn host_on(node: &Node) -> (TestHost, Backend) {
    let (host, backend) = support::host_with_backend().await;
    node.connect(&host)
        .await
        .expect("host is wired to the node");
    (host, backend)
}

/// The Service's ClusterIP (the first, of its primary family).
async fn cluster_ip(client: &Client, ns: &str, name: &str) -> IpAddr {
    eventually("the Service to have a ClusterIP", || async {
        let ip = service(client, ns, name).await?.spec?.cluster_ip?;
        ip.parse().ok()
    })
    .await
}

/// Wait until kube-proxy on `node` sends new connections for the Service
/// port exactly to `want` (empty: it rejects them).
async fn wait_programmed(
    node: &Node,
    ns: &str,
    svc: &str,
    port: (&str, &str),
    want: &[SocketAddr],
) {
    let want: BTreeSet<SocketAddr> = want.iter().copied().collect();
    let ipv6 = want.first().is_some_and(SocketAddr::is_ipv6);
    let (port_name, protocol) = port;
    let mut last = None;
    let found = tokio::time::timeout(support::DEADLINE, async {
        loop {
            let now = node
                .programmed_endpoints(ns, svc, port_name, protocol, ipv6)
                .await
                .expect("kube-proxy's rule set can be read");
            if now.as_ref() == Some(&want) {
                return;
            }
            last = Some(now);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(
        found.is_ok(),
        "kube-proxy did not program {ns}/{svc}:{port_name}/{protocol} -> {want:?} within {:?} (last seen {last:?}); its log ends:\n{}",
        support::DEADLINE,
        node.log_tail()
    );
}

/// Who answered, per address, over attempts that must all have succeeded.
fn answers(attempts: &[Attempt], what: &str) -> BTreeMap<IpAddr, usize> {
    let mut by = BTreeMap::new();
    for a in attempts {
        match &a.outcome {
            Outcome::Answered(ip) => *by.entry(*ip).or_default() += 1,
            Outcome::Failed { kind, message } => {
                panic!("{what}: attempt {} failed ({kind}): {message}", a.seq)
            }
        }
    }
    by
}

/// `SPREAD_ATTEMPTS` new connections to `target` are all answered, by
/// exactly the hosts `want`.
async fn assert_spread(node: &Node, proto: Proto, target: SocketAddr, want: &[IpAddr]) {
    let attempts = node
        .ask(proto, target, SPREAD_ATTEMPTS)
        .await
        .expect("ke-client runs in the node");
    let by = answers(&attempts, &format!("{proto:?} {target}"));
    let seen: BTreeSet<IpAddr> = by.keys().copied().collect();
    let want: BTreeSet<IpAddr> = want.iter().copied().collect();
    assert_eq!(
        seen, want,
        "{proto:?} through {target}: answers per backend {by:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_wordpress_example_ports_reach_both_hosts_through_the_cluster_ip() {
    let node = node();
    let w = world("dp-wordpress", node).await;
    let [a1, a2] = w.addrs;
    let example = support::wordpress(GROUP, &[a1.to_string(), a2.to_string()], 1);
    apply_healthy(&w.client, &w.ns, "wordpress", &example).await;
    let vip = cluster_ip(&w.client, &w.ns, "wordpress").await;
    assert!(vip.is_ipv4(), "default family: IPv4 ClusterIP, got {vip}");

    // (Service port name, protocol, Service port, target port, client)
    let ports = [
        ("wp-https", "tcp", 38081, 443, Proto::Tcp),
        ("wp-http", "tcp", 38082, 80, Proto::Http),
        ("wp-udp", "udp", 38003, 1234, Proto::Udp),
        ("wp-grpc", "tcp", 38083, 8080, Proto::Grpc),
    ];
    for (name, protocol, port, target, proto) in ports {
        let endpoints = [SocketAddr::new(a1, target), SocketAddr::new(a2, target)];
        wait_programmed(node, &w.ns, "wordpress", (name, protocol), &endpoints).await;
        assert_spread(node, proto, SocketAddr::new(vip, port), &[a1, a2]).await;
    }
}

/// A cep with one HTTP port on `hosts`, probed every second, leaving
/// rotation after one failure.
fn http_cep(name: &str, hosts: &[IpAddr]) -> String {
    let hosts: Vec<String> = hosts.iter().map(ToString::to_string).collect();
    format!(
        "apiVersion: {GROUP}/v1beta1\nkind: ClusterEndpoint\nmetadata: {{name: {name}}}\nspec:\n  periodSeconds: 1\n  ports:\n  - name: http\n    port: 8080\n    targetPort: 80\n    hosts: [{}]\n    httpGet: {{path: /healthz}}\n    failureThreshold: 1\n",
        hosts.join(", ")
    )
}

/// Wait until the slices of `svc` show `ready` for `host` on every port.
async fn wait_slice_ready(client: &Client, ns: &str, svc: &str, host: IpAddr, ready: bool) {
    let host = host.to_string();
    eventually(
        &format!("{host} to be ready={ready} in the slices of {svc}"),
        || async {
            let r = slice_readiness(client, ns, svc).await;
            let states: Vec<bool> = r
                .iter()
                .filter(|((_, _, a), _)| *a == host)
                .map(|(_, v)| *v)
                .collect();
            (!states.is_empty() && states.iter().all(|s| *s == ready)).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_backend_gets_no_connection_until_it_returns() {
    a_stopped_backend_leaves_and_returns(node(), "dp-failover").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn iptables_mode_routes_to_the_healthy_host_only() {
    let node = start_node(ProxyMode::Iptables);
    a_stopped_backend_leaves_and_returns(&node, "dp-iptables").await;
}

/// Through kube-proxy on `node`: both hosts answer; with one backend
/// stopped, 100 connections all reach the other; once it is back, both
/// answer again.
async fn a_stopped_backend_leaves_and_returns(node: &Node, test: &str) {
    let mut w = world(test, node).await;
    let [a1, a2] = w.addrs;
    let (vip, [e1, e2]) = serve_http(&w.client, &w.ns, node, "web", [a1, a2]).await;
    assert_spread(node, Proto::Http, vip, &[a1, a2]).await;

    w.hosts[1].1.stop().await.expect("backend 2 stops");
    wait_slice_ready(&w.client, &w.ns, "web", a2, false).await;
    wait_programmed(node, &w.ns, "web", ("http", "tcp"), &[e1]).await;
    all_answered_by(node, vip, a1, "100 connections after the failure").await;

    w.hosts[1].1.start().await.expect("backend 2 starts again");
    back_in_rotation(&w, node, vip, [e1, e2]).await;
}

/// 100 new connections to `vip` are all answered by `host`.
async fn all_answered_by(node: &Node, vip: SocketAddr, host: IpAddr, what: &str) {
    let attempts = node
        .ask(Proto::Http, vip, 100)
        .await
        .expect("ke-client runs");
    assert_eq!(
        answers(&attempts, what),
        BTreeMap::from([(host, 100)]),
        "{what}: every connection reaches {host} only"
    );
}

/// The second host of `w` is ready again, kube-proxy sends to both
/// endpoints, and both answer.
async fn back_in_rotation(w: &World, node: &Node, vip: SocketAddr, endpoints: [SocketAddr; 2]) {
    let [a1, a2] = w.addrs;
    wait_slice_ready(&w.client, &w.ns, "web", a2, true).await;
    wait_programmed(node, &w.ns, "web", ("http", "tcp"), &endpoints).await;
    assert_spread(node, Proto::Http, vip, &[a1, a2]).await;
}

/// With every host down, kube-proxy rejects new connections to the
/// ClusterIP (its `no-endpoint-services` map sends them to a `reject`), so a
/// client on the node fails at once, never times out and never reaches a
/// stale backend: a TCP connect gets "connection refused" (ECONNREFUSED,
/// from the ICMP port-unreachable), and a UDP send fails with "operation not
/// permitted" (EPERM: the datagram is rejected on the node's own output
/// path). A Pod in its own network namespace would see ECONNREFUSED for
/// both (its datagram is rejected on the node's forward path and the ICMP
/// error reaches its socket).
#[tokio::test(flavor = "multi_thread")]
async fn all_hosts_down_connections_are_refused() {
    let node = node();
    let mut w = world("dp-alldown", node).await;
    let [a1, a2] = w.addrs;
    let cep = format!(
        "apiVersion: {GROUP}/v1beta1\nkind: ClusterEndpoint\nmetadata: {{name: db}}\nspec:\n  periodSeconds: 1\n  ports:\n  - name: tcp\n    port: 5432\n    targetPort: 443\n    hosts: [{a1}, {a2}]\n    tcpSocket: {{enable: true}}\n    failureThreshold: 1\n  - name: dns\n    protocol: UDP\n    port: 53\n    targetPort: 1234\n    hosts: [{a1}, {a2}]\n    udpSocket: {{enable: true, data: ping}}\n    failureThreshold: 1\n"
    );
    apply_healthy(&w.client, &w.ns, "db", &cep).await;
    let vip = cluster_ip(&w.client, &w.ns, "db").await;
    let tcp = [SocketAddr::new(a1, 443), SocketAddr::new(a2, 443)];
    let udp = [SocketAddr::new(a1, 1234), SocketAddr::new(a2, 1234)];
    wait_programmed(node, &w.ns, "db", ("tcp", "tcp"), &tcp).await;
    wait_programmed(node, &w.ns, "db", ("dns", "udp"), &udp).await;
    assert_spread(node, Proto::Tcp, SocketAddr::new(vip, 5432), &[a1, a2]).await;
    assert_spread(node, Proto::Udp, SocketAddr::new(vip, 53), &[a1, a2]).await;

    for (_, backend) in &mut w.hosts {
        backend.stop().await.expect("backend stops");
    }
    wait_phase(&w.client, &w.ns, GROUP, "db", Phase::UnHealthy).await;
    for host in [a1, a2] {
        wait_slice_ready(&w.client, &w.ns, "db", host, false).await;
    }
    wait_programmed(node, &w.ns, "db", ("tcp", "tcp"), &[]).await;
    wait_programmed(node, &w.ns, "db", ("dns", "udp"), &[]).await;
    let tcp = node.ask(Proto::Tcp, SocketAddr::new(vip, 5432), 10).await;
    // New UDP flows: an ephemeral source port could be one of the spread's
    // flows above, whose conntrack entry (kept, as the Service has no
    // endpoints left) would carry the datagram to the stopped host.
    let udp = node
        .ask_udp_from(SocketAddr::new(vip, 53), 10, FRESH_UDP_PORT)
        .await;
    for (proto, port, want, attempts) in [
        (Proto::Tcp, 5432, "refused", tcp),
        (Proto::Udp, 53, "rejected", udp),
    ] {
        let attempts = attempts.expect("ke-client runs");
        for a in &attempts {
            match &a.outcome {
                Outcome::Failed { kind, .. } if kind == want => {}
                other => panic!(
                    "{proto:?} to {vip}:{port} with every host down: want {want}, got {other:?}"
                ),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_headless_object_gets_no_cluster_ip_and_its_slices_carry_the_hosts() {
    let node = node();
    let w = world("dp-headless", node).await;
    let [a1, a2] = w.addrs;
    let headless = http_cep("headless", &[a1, a2]).replace(
        "spec:\n  periodSeconds: 1\n",
        "spec:\n  periodSeconds: 1\n  clusterIP: None\n",
    );
    apply_healthy(&w.client, &w.ns, "headless", &headless).await;
    let svc = service(&w.client, &w.ns, "headless")
        .await
        .expect("Service");
    let spec = svc.spec.expect("spec");
    assert_eq!(spec.cluster_ip.as_deref(), Some("None"), "headless Service");
    assert_eq!(spec.cluster_ips, Some(vec!["None".to_string()]));

    // No cluster DNS here: what a resolver would return is what the slices
    // say. Every host, ready, as an IPv4 endpoint of port `http` -> 80.
    let slices = slices(&w.client, &w.ns, "headless").await;
    assert_eq!(slices.len(), 1, "one IPv4 slice for the one port");
    let slice = &slices[0];
    assert_eq!(slice.address_type, "IPv4");
    let port = &slice.ports.as_ref().expect("ports")[0];
    assert_eq!(
        (port.name.as_deref(), port.port, port.protocol.as_deref()),
        (Some("http"), Some(80), Some("TCP"))
    );
    let ready: BTreeMap<String, bool> = slice
        .endpoints
        .iter()
        .map(|e| {
            (
                e.addresses.join(","),
                e.conditions.as_ref().and_then(|c| c.ready) == Some(true),
            )
        })
        .collect();
    assert_eq!(
        ready,
        BTreeMap::from([(a1.to_string(), true), (a2.to_string(), true)])
    );

    // kube-proxy ignores headless Services: once a ClusterIP Service made
    // after it is programmed, the headless one still has no rules.
    apply_healthy(&w.client, &w.ns, "witness", &http_cep("witness", &[a1])).await;
    wait_programmed(
        node,
        &w.ns,
        "witness",
        ("http", "tcp"),
        &[SocketAddr::new(a1, 80)],
    )
    .await;
    let rules = node
        .programmed_endpoints(&w.ns, "headless", "http", "tcp", false)
        .await
        .expect("rule set");
    assert_eq!(
        rules, None,
        "kube-proxy has no rules for a headless Service"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ipv6_hosts_are_reached_through_an_ipv6_cluster_ip() {
    let node = node();
    let (client, ns, hosts) = two_hosts("dp-ipv6", node).await;
    let [a1, a2] = [0, 1].map(|i| IpAddr::V6(hosts[i].0.ipv6()));
    if !CONTROLLER_SETS_IP_FAMILIES {
        // A hand-made IPv6-only Service without a selector: the
        // ClusterEndpoint adopts it and keeps its spec (clusterIP, families).
        let handmade: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web6"},
            "spec": {
                "ipFamilies": ["IPv6"],
                "ipFamilyPolicy": "SingleStack",
                "ports": [{"name": "http", "port": 8080, "targetPort": 80}]
            }
        }))
        .expect("Service");
        Api::<Service>::namespaced(client.clone(), &ns)
            .create(&PostParams::default(), &handmade)
            .await
            .expect("the hand-made IPv6 Service is created");
    }
    let _controller = start_controller(&ns, &[]).await;
    apply_healthy(&client, &ns, "web6", &http_cep("web6", &[a1, a2])).await;
    let vip = cluster_ip(&client, &ns, "web6").await;
    assert!(vip.is_ipv6(), "an IPv6 ClusterIP for IPv6 hosts, got {vip}");
    let vip = SocketAddr::new(vip, 8080);
    let endpoints = [SocketAddr::new(a1, 80), SocketAddr::new(a2, 80)];
    wait_programmed(node, &ns, "web6", ("http", "tcp"), &endpoints).await;
    assert_spread(node, Proto::Http, vip, &[a1, a2]).await;
}

async fn leads(c: &Controller) -> bool {
    c.metric("kube_endpoints_leader").await == 1.0
}

#[tokio::test(flavor = "multi_thread")]
async fn a_controller_failover_drops_no_connection() {
    let node = node();
    let (client, ns, hosts) = two_hosts("dp-ha", node).await;
    let [a1, a2] = ipv4s(&hosts);
    let args = [
        "--leader-election=true",
        "--lease-name",
        "dp-ha",
        "--lease-namespace",
        &ns,
        "--lease-duration-seconds",
        "6",
    ];
    let first = start_controller(&ns, &args).await;
    eventually("the first replica to lead", || async {
        leads(&first).await.then_some(())
    })
    .await;
    let second = start_controller(&ns, &args).await;
    let (vip, endpoints) = serve_http(&client, &ns, node, "web", [a1, a2]).await;

    let client_loop = node
        .client_loop(Proto::Http, vip, Duration::from_millis(20))
        .expect("ke-client loop starts");
    eventually("the client loop to run", || async {
        (client_loop.len() >= 20).then_some(())
    })
    .await;
    // SIGTERM: the leader releases the Lease and the standby takes over.
    let status = std::process::Command::new("kill")
        .args(["-TERM", &first.pid().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    eventually("the standby to lead", || async {
        leads(&second).await.then_some(())
    })
    .await;
    let at_takeover = client_loop.len();
    // Keep the client going while the new leader reconciles and probes.
    eventually("the new leader to probe every host twice", || async {
        let probes = second.metric("kube_endpoints_probes_total").await;
        (probes >= 4.0 && client_loop.len() >= at_takeover + 50).then_some(())
    })
    .await;
    let attempts = client_loop.stop().await;
    let by = answers(&attempts, "the client loop through the failover");
    assert_eq!(
        by.keys().copied().collect::<BTreeSet<_>>(),
        BTreeSet::from([a1, a2]),
        "both hosts served throughout: {by:?}"
    );
    wait_programmed(node, &ns, "web", ("http", "tcp"), &endpoints).await;
}

/// `kube-endpoints drain` takes a healthy host out of kube-proxy's
/// rotation (listed terminating: no new connection reaches it, 100 in a
/// row all go to the other host); `undrain` brings it back.
#[tokio::test(flavor = "multi_thread")]
async fn a_drained_host_gets_no_new_connection() {
    let node = node();
    let w = world("dp-drain", node).await;
    let [a1, a2] = w.addrs;
    let (vip, [e1, e2]) = serve_http(&w.client, &w.ns, node, "web", [a1, a2]).await;
    assert_spread(node, Proto::Http, vip, &[a1, a2]).await;

    let drain = |verb: &'static str| {
        let ns = w.ns.clone();
        async move {
            let host = a2.to_string();
            support::run_cli(
                &[verb, "web", &host, "-n", &ns],
                control_plane().kubeconfig_path(),
            )
            .await
        }
    };
    drain("drain").await;
    wait_slice_ready(&w.client, &w.ns, "web", a2, false).await;
    wait_programmed(node, &w.ns, "web", ("http", "tcp"), &[e1]).await;
    all_answered_by(node, vip, a1, "100 connections with a2 drained").await;

    drain("undrain").await;
    back_in_rotation(&w, node, vip, [e1, e2]).await;
}
