//! Safe for shared clusters, end to end against the real control plane,
//! acting as a namespace user ("tenant") whose Role may create
//! ClusterEndpoints but not EndpointSlices:
//!
//! - hosts inside the cluster's own ranges (the Service CIDR, a node's pod
//!   range and address, kube-apiserver's address), a `--denied-cidrs`
//!   range and the cloud metadata addresses are never probed and never
//!   written, and are reported per host in status and in an Event; a node
//!   that starts (and stops) owning an address moves the host out of (and
//!   back into) rotation;
//! - the optional ValidatingAdmissionPolicy of the chart refuses denied
//!   hosts at admission, naming the field, and the per-object target cap
//!   refuses an object naming `spec.ports`;
//! - the target budgets refuse a new object whole, leave other namespaces
//!   alone, and admit it once room is freed;
//! - `default/kubernetes` and a Helm-managed Service are never adopted;
//!   with `--require-adopt-annotation` only an annotated Service is.
//!
//! The cluster's ranges are test ranges: the control plane's Service CIDR
//! and the Node objects' podCIDRs and addresses lie in 198.19.0.0/16. No
//! packet to them (or to the metadata addresses) can leave the machine: a
//! [`Guard`] nftables table in the root namespace drops, and counts, every
//! packet to the watched addresses, and every packet to 198.18.0.0/15 or
//! fd00:6b65::/32 that would not go to a test host's own link. A drop rule
//! rather than a blackhole route: the testkit allocates test-host links by
//! reading the routing table, and a /15 route there would stop every
//! concurrent test process on the machine from creating hosts.

mod support;
// Only `over_target_cap` (11,000 host-ports) is used here.
#[allow(dead_code)]
#[path = "../src/validation_cases.rs"]
mod validation_cases;

use std::net::IpAddr;

use k8s_openapi::api::authorization::v1::SelfSubjectAccessReview;
use k8s_openapi::api::core::v1::{Endpoints, Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use kube_endpoints_api::{CONDITION_HOSTS_ALLOWED, CONDITION_INITIALIZED, GROUP, Phase};
use kube_endpoints_testkit::controlplane::{ControlPlane, ControlPlaneOptions};
use kube_endpoints_testkit::netns::{BackendPorts, TestHost};
use serde_json::{Value, json};
use support::{Controller, eventually, slice_readiness, slices};

/// The control plane's Service CIDR: `default/kubernetes` is 198.19.250.1.
const SERVICE_CIDR: &str = "198.19.250.0/24";
const KUBERNETES_CLUSTER_IP: &str = "198.19.250.1";
/// Node `ke-node-a`: its pod range and its address.
const POD_CIDR: &str = "198.19.64.0/24";
const POD_IP: &str = "198.19.64.7";
const NODE_IP: &str = "198.19.65.10";
/// kube-apiserver's address, as its endpoints in `default/kubernetes` say.
const APISERVER_IP: &str = "198.19.66.1";
/// Denied by `--denied-cidrs`.
const FLAG_DENIED: &str = "198.19.70.5";
const METADATA: [&str; 3] = ["100.100.100.200", "168.63.129.16", "fd00:ec2::254"];
/// The tenant: a static user of the testkit's token file.
const TENANT: &str = "ke-user-a";

/// The tests change cluster-wide objects (Nodes, an admission policy):
/// they run one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One control plane for this binary, with the test Service CIDR.
fn control_plane() -> &'static ControlPlane {
    support::control_plane_with(|| ControlPlaneOptions {
        service_cluster_ip_range: SERVICE_CIDR.into(),
        ..ControlPlaneOptions::default()
    })
}

async fn admin() -> Client {
    control_plane().client().await.expect("admin client")
}

/// The admin client, with the ClusterEndpoint CRD installed.
async fn admin_with_crd() -> Client {
    let client = admin().await;
    support::install_crd(&client, GROUP).await;
    client
}

async fn tenant() -> Client {
    control_plane()
        .client_as(TENANT)
        .await
        .expect("tenant client")
}

// ------------------------------------------------------------------ guard

/// An nftables table in the root namespace that drops and counts packets
/// to the watched addresses, and drops packets to the test ranges that do
/// not go to a test host's link. Removed on drop.
struct Guard {
    table: String,
    watched: Vec<IpAddr>,
}

impl Guard {
    fn new(tag: &str, watched: &[&str]) -> Guard {
        let table = format!("ke_guard_{}_{tag}", std::process::id());
        let watched: Vec<IpAddr> = watched
            .iter()
            .map(|a| a.parse().expect("address"))
            .collect();
        let mut script = format!("table inet {table} {{\n");
        for i in 0..watched.len() {
            script.push_str(&format!("  counter watched_{i} {{}}\n"));
        }
        script.push_str("  counter escaped {}\n");
        script
            .push_str("  chain output {\n    type filter hook output priority 0; policy accept;\n");
        for (i, ip) in watched.iter().enumerate() {
            let family = if ip.is_ipv4() { "ip" } else { "ip6" };
            script.push_str(&format!(
                "    {family} daddr {ip} counter name watched_{i} drop\n"
            ));
        }
        script.push_str(
            "    ip daddr 198.18.0.0/15 oifname != \"ke-*\" counter name escaped drop\n\
             \x20   ip6 daddr fd00:6b65::/32 oifname != \"ke-*\" counter name escaped drop\n  }\n}\n",
        );
        nft(&["-f", "-"], Some(&script));
        Guard { table, watched }
    }

    /// Packets dropped on their way to `ip` (a watched address).
    fn packets(&self, ip: &str) -> u64 {
        let ip: IpAddr = ip.parse().expect("address");
        let i = self
            .watched
            .iter()
            .position(|w| *w == ip)
            .expect("a watched address");
        self.counter(&format!("watched_{i}"))
    }

    /// Packets to the test ranges that would have left through another link.
    fn escaped(&self) -> u64 {
        self.counter("escaped")
    }

    fn counter(&self, name: &str) -> u64 {
        let out = nft(&["list", "counter", "inet", &self.table, name], None);
        out.split_whitespace()
            .skip_while(|w| *w != "packets")
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no packet count in {out}"))
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = std::process::Command::new("nft")
            .args(["delete", "table", "inet", &self.table])
            .status();
    }
}

fn nft(args: &[&str], stdin: Option<&str>) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("nft")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("nft runs");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("nft input");
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("nft finishes");
    assert!(
        out.status.success(),
        "nft {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

// ------------------------------------------------------------------ fixtures

/// For the tests that change the cluster's objects: holds [`SERIAL`] and
/// returns the admin client once the CRD and the cluster's objects are in.
async fn serial_with_cluster_objects() -> (tokio::sync::MutexGuard<'static, ()>, Client) {
    let serial = SERIAL.lock().await;
    let client = admin_with_crd().await;
    cluster_objects(&client).await;
    (serial, client)
}

/// The cluster's objects the ranges are discovered from: node `ke-node-a`
/// and kube-apiserver's endpoints (the test control plane runs no endpoint
/// reconciler, so they are written here, as it would write them).
async fn cluster_objects(client: &Client) {
    apply_node(client, "ke-node-a", POD_CIDR, &[NODE_IP]).await;
    let ssa = PatchParams::apply("e2e-cluster").force();
    let endpoints: Endpoints = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "namespace": "default"},
        "subsets": [{"addresses": [{"ip": APISERVER_IP}], "ports": [{"name": "https", "port": 6443}]}]
    }))
    .expect("endpoints");
    Api::<Endpoints>::namespaced(client.clone(), "default")
        .patch("kubernetes", &ssa, &Patch::Apply(&endpoints))
        .await
        .expect("apiserver Endpoints");
    let slice: EndpointSlice = serde_json::from_value(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "kubernetes"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [APISERVER_IP]}],
        "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]
    }))
    .expect("slice");
    Api::<EndpointSlice>::namespaced(client.clone(), "default")
        .patch("kubernetes", &ssa, &Patch::Apply(&slice))
        .await
        .expect("apiserver EndpointSlice");
}

/// Create or update a Node with a pod range and addresses.
async fn apply_node(client: &Client, name: &str, pod_cidr: &str, addresses: &[&str]) {
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name},
        "spec": {"podCIDR": pod_cidr, "podCIDRs": [pod_cidr]}
    }))
    .expect("node");
    nodes
        .patch(
            name,
            &PatchParams::apply("e2e-cluster").force(),
            &Patch::Apply(&node),
        )
        .await
        .expect("node applied");
    set_node_addresses(client, name, addresses).await;
}

async fn set_node_addresses(client: &Client, name: &str, addresses: &[&str]) {
    let list: Vec<Value> = addresses
        .iter()
        .map(|a| json!({"type": "InternalIP", "address": a}))
        .collect();
    Api::<Node>::all(client.clone())
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"addresses": list}})),
        )
        .await
        .expect("node status");
}

/// A namespace where [`TENANT`] may manage ClusterEndpoints, and nothing else.
async fn tenant_namespace(client: &Client, name: &str) -> String {
    let ns = if name == "default" {
        name.to_string()
    } else {
        support::namespace(client, name).await
    };
    let role = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "cep-editor", "namespace": ns},
        "rules": [{"apiGroups": [GROUP], "resources": ["clusterendpoints"],
                   "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]}]
    });
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "cep-editor", "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cep-editor"},
        "subjects": [{"kind": "User", "name": TENANT, "apiGroup": "rbac.authorization.k8s.io"}]
    });
    let ssa = PatchParams::apply("e2e-cluster").force();
    Api::<k8s_openapi::api::rbac::v1::Role>::namespaced(client.clone(), &ns)
        .patch(
            "cep-editor",
            &ssa,
            &Patch::Apply(
                serde_json::from_value::<k8s_openapi::api::rbac::v1::Role>(role).expect("role"),
            ),
        )
        .await
        .expect("Role");
    Api::<k8s_openapi::api::rbac::v1::RoleBinding>::namespaced(client.clone(), &ns)
        .patch(
            "cep-editor",
            &ssa,
            &Patch::Apply(
                serde_json::from_value::<k8s_openapi::api::rbac::v1::RoleBinding>(binding)
                    .expect("binding"),
            ),
        )
        .await
        .expect("RoleBinding");
    ns
}

/// Whether the tenant may `verb` `resource` (of `group`) in `ns`, as the
/// apiserver's own authorizer answers it.
async fn tenant_can(verb: &str, group: &str, resource: &str, ns: &str) -> bool {
    let review: SelfSubjectAccessReview = serde_json::from_value(json!({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": {"verb": verb, "group": group, "resource": resource, "namespace": ns}}
    }))
    .expect("review");
    let answer = Api::<SelfSubjectAccessReview>::all(tenant().await)
        .create(&PostParams::default(), &review)
        .await
        .expect("access review");
    answer.status.is_some_and(|s| s.allowed)
}

/// A `kube-endpoints run` of this binary's control plane, as the admin.
async fn controller(namespaces: &[&str], extra: &[&str]) -> Controller {
    let (first, rest) = namespaces.split_first().expect("a namespace");
    let mut args: Vec<String> = rest
        .iter()
        .flat_map(|ns| ["--namespace".to_string(), (*ns).to_string()])
        .collect();
    args.extend(extra.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    support::start_controller_as(first, &args, control_plane().kubeconfig_path()).await
}

fn tcp_backend() -> BackendPorts {
    BackendPorts {
        tcp: vec![443],
        ..BackendPorts::default()
    }
}

/// Creating `yaml` as the tenant is refused at admission (422), saying `words`;
/// `what` names the object in the failure message.
async fn assert_tenant_refused(ns: &str, yaml: &str, words: &str, what: &str) {
    match create_as_tenant(ns, yaml).await {
        Err(kube::Error::Api(s)) if s.code == 422 => {
            assert!(s.message.contains(words), "{what}: {}", s.message);
        }
        other => panic!("{what} passed admission: {other:?}"),
    }
}

async fn create_as_tenant(ns: &str, yaml: &str) -> Result<(), kube::Error> {
    support::apply_yaml(&tenant().await, ns, GROUP, yaml)
        .await
        .map(drop)
}

/// Creates, as the tenant, `name` in `ns` with one static port on `hosts`
/// (static ports are never probed: their hosts only need to be valid).
async fn create_static_as_tenant(ns: &str, name: &str, hosts: &str) {
    let port = format!("{{name: db, port: 5432, targetPort: 5432, hosts: [{hosts}]}}");
    create_as_tenant(ns, &cep(name, ns, &port))
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
}

fn cep(name: &str, ns: &str, port: &str) -> String {
    format!(
        "apiVersion: {GROUP}/v1beta1\nkind: ClusterEndpoint\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  periodSeconds: 1\n  ports:\n  - {port}\n"
    )
}

async fn status_of(
    client: &Client,
    ns: &str,
    name: &str,
) -> Option<kube_endpoints_api::ClusterEndpointStatus> {
    support::get_cep(client, ns, GROUP, name).await?.status
}

// ------------------------------------------------------------------ tests

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_cannot_point_a_service_at_the_cluster_or_a_metadata_address() {
    let (_serial, client) = serial_with_cluster_objects().await;
    let ns = tenant_namespace(&client, "tenancy-policy").await;
    // The threat model, pinned: the tenant may create ClusterEndpoints but
    // not EndpointSlices or Endpoints.
    assert!(tenant_can("create", GROUP, "clusterendpoints", &ns).await);
    assert!(!tenant_can("create", "discovery.k8s.io", "endpointslices", &ns).await);
    assert!(!tenant_can("create", "", "endpoints", &ns).await);

    let denied = [
        KUBERNETES_CLUSTER_IP,
        POD_IP,
        NODE_IP,
        APISERVER_IP,
        FLAG_DENIED,
    ];
    let watched: Vec<&str> = denied.iter().chain(METADATA.iter()).copied().collect();
    let guard = Guard::new("policy", &watched);
    let host = TestHost::create().await.expect("test host");
    let _backend = host.start_backend(tcp_backend()).await.expect("backend");
    let allowed = host.ipv4().to_string();
    let c = controller(
        &[&ns],
        &["--per-host-metrics=true", "--denied-cidrs=198.19.70.0/24"],
    )
    .await;

    let mut hosts = vec![allowed.clone()];
    hosts.extend(watched.iter().map(|h| format!("'{h}'")));
    create_as_tenant(
        &ns,
        &cep(
            "loot",
            &ns,
            &format!(
                "{{name: https, port: 443, targetPort: 443, hosts: [{}], tcpSocket: {{enable: true}}}}",
                hosts.join(", ")
            ),
        ),
    )
    .await
    .expect("the tenant may create it: the schema allows any unicast address");

    // The allowed host is probed and in rotation; nothing else is written.
    support::wait_all_ready(&client, &ns, "loot", 1).await;
    let readiness = slice_readiness(&client, &ns, "loot").await;
    assert_eq!(
        readiness
            .keys()
            .map(|(_, _, a)| a.as_str())
            .collect::<Vec<_>>(),
        [allowed.as_str()]
    );
    let endpoints = support::endpoints_addresses(&client, &ns, "loot").await;
    let written: Vec<&str> = endpoints
        .values()
        .flat_map(|(ready, not_ready)| ready.iter().chain(not_ready))
        .map(String::as_str)
        .collect();
    assert_eq!(written, [allowed.as_str()], "{endpoints:?}");

    // Every denied host is reported, naming its range.
    let status = eventually("every denied host reported", || async {
        let s = status_of(&client, &ns, "loot").await?;
        (s.ports.first()?.denied.len() == watched.len()).then_some(s)
    })
    .await;
    let port = &status.ports[0];
    assert_eq!((port.ready, port.total), (1, 1 + watched.len() as i32));
    let message = |h: &str| {
        port.denied
            .iter()
            .find(|d| d.host == h)
            .map(|d| d.message.clone())
            .unwrap_or_else(|| panic!("{h} not reported: {:?}", port.denied))
    };
    assert_eq!(
        message(KUBERNETES_CLUSTER_IP),
        format!(
            "{KUBERNETES_CLUSTER_IP} is inside the Service range {SERVICE_CIDR} (denied by the address policy)"
        )
    );
    assert_eq!(
        message(POD_IP),
        format!(
            "{POD_IP} is inside the pod range {POD_CIDR} of node ke-node-a (denied by the address policy)"
        )
    );
    assert_eq!(
        message(NODE_IP),
        format!("{NODE_IP} is an address of node ke-node-a (denied by the address policy)")
    );
    assert_eq!(
        message(APISERVER_IP),
        format!("{APISERVER_IP} is an address of kube-apiserver (denied by the address policy)")
    );
    assert!(message(FLAG_DENIED).contains("listed in --denied-cidrs"));
    assert!(message("100.100.100.200").contains("Alibaba Cloud metadata"));
    assert!(message("168.63.129.16").contains("Azure WireServer"));
    assert!(message("fd00:ec2::254").contains("AWS instance metadata"));
    assert_eq!(status.phase, Some(Phase::UnHealthy));
    let allowed_cond = status
        .conditions
        .iter()
        .find(|c| c.type_ == CONDITION_HOSTS_ALLOWED)
        .expect("HostsAllowed");
    assert_eq!(
        (allowed_cond.status.as_str(), allowed_cond.reason.as_str()),
        ("False", "HostsDenied")
    );
    support::wait_event(
        &client,
        &ns,
        "loot",
        "HostsDenied",
        "denied by the address policy",
    )
    .await;

    // Never probed: no packet towards them, no series for them.
    let metrics = c.metrics().await;
    for h in &watched {
        assert_eq!(guard.packets(h), 0, "a packet went to {h}");
        assert!(
            !metrics.contains(&format!("host=\"{h}\"")),
            "{h} has a probe series:\n{metrics}"
        );
    }
    assert!(
        metrics.contains(&format!("host=\"{allowed}\"")),
        "{metrics}"
    );

    // The cluster changes: a new node owns the allowed host's address. The
    // host leaves rotation and is reported; when the node lets go of the
    // address, it comes back.
    apply_node(&client, "ke-node-b", "198.19.71.0/24", &[&allowed]).await;
    eventually("the host to leave the slices", || async {
        slices(&client, &ns, "loot")
            .await
            .iter()
            .all(|s| s.endpoints.is_empty())
            .then_some(())
    })
    .await;
    // The status follows the slices in the same reconcile: wait for it.
    eventually("the host to be reported denied", || async {
        let s = status_of(&client, &ns, "loot").await?;
        s.ports
            .first()?
            .denied
            .iter()
            .any(|d| d.host == allowed && d.message.contains("node ke-node-b"))
            .then_some(())
    })
    .await;
    set_node_addresses(&client, "ke-node-b", &["198.19.71.1"]).await;
    support::wait_all_ready(&client, &ns, "loot", 1).await;
    Api::<Node>::all(client.clone())
        .delete("ke-node-b", &DeleteParams::default())
        .await
        .expect("node deleted");

    for h in &watched {
        assert_eq!(guard.packets(h), 0, "a packet went to {h}");
    }
    assert_eq!(
        guard.escaped(),
        0,
        "a packet to the test ranges left the machine"
    );
    c.check_running().expect("the controller is still running");
}

#[tokio::test(flavor = "multi_thread")]
async fn admission_refuses_denied_hosts_url_tricks_aside_and_oversized_objects() {
    let _serial = SERIAL.lock().await;
    let client = admin_with_crd().await;
    let ns = tenant_namespace(&client, "tenancy-admission").await;

    // The per-object target cap is the controller's (`plan`, on the
    // object's status): no CEL rule can read `hosts`, whose items are
    // strings or objects. Admission lets it through.
    let over = format!(
        "apiVersion: {GROUP}/v1beta1\nkind: ClusterEndpoint\nmetadata: {{name: huge, namespace: {ns}}}\nspec:\n{}",
        validation_cases::over_target_cap()
    );
    create_as_tenant(&ns, &over)
        .await
        .expect("the cap is checked by the controller, not at admission");
    support::ceps(&client, &ns, GROUP)
        .delete("huge", &DeleteParams::default())
        .await
        .expect("deleted");

    // The chart's ValidatingAdmissionPolicy, rendered for this cluster.
    let rendered = support::chart::render(
        "kube-endpoints-vap",
        "kube-endpoints-system",
        &[
            "--set",
            "addressPolicy.admission.enabled=true",
            "--set",
            "addressPolicy.deniedCidrs={198.19.80.0/24}",
            "--show-only",
            "templates/admission-policy.yaml",
        ],
    );
    let objects = support::chart::objects(&rendered);
    assert_eq!(objects.len(), 2, "a policy and its binding");
    let dynamic = |o: &Value| {
        let obj: kube::core::DynamicObject = serde_json::from_value(o.clone()).expect("object");
        let gvk = kube::core::GroupVersionKind::try_from(obj.types.as_ref().expect("types"))
            .expect("gvk");
        let plural = if gvk.kind == "ValidatingAdmissionPolicy" {
            "validatingadmissionpolicies"
        } else {
            "validatingadmissionpolicybindings"
        };
        let resource = kube::core::ApiResource::from_gvk_with_plural(&gvk, plural);
        (
            Api::<kube::core::DynamicObject>::all_with(client.clone(), &resource),
            obj,
        )
    };
    for o in &objects {
        let (api, obj) = dynamic(o);
        api.patch(
            &obj.name_any(),
            &PatchParams::apply("e2e-cluster").force(),
            &Patch::Apply(&obj),
        )
        .await
        .expect("the admission policy applies");
    }
    // A policy takes effect a moment after it is created.
    let denied = cep(
        "vap",
        &ns,
        "{name: a, port: 80, targetPort: 80, hosts: [198.18.0.2, 198.19.80.7]}",
    );
    let message = eventually("the admission policy to refuse a denied host", || async {
        match create_as_tenant(&ns, &denied).await {
            Err(kube::Error::Api(s)) if s.code == 422 => Some(s.message),
            Ok(()) => {
                let _ = support::ceps(&client, &ns, GROUP)
                    .delete("vap", &DeleteParams::default())
                    .await;
                None
            }
            Err(_) => None,
        }
    })
    .await;
    assert!(
        message.contains("spec.ports[0].hosts[1]: 198.19.80.7 is denied by the address policy"),
        "{message}"
    );
    // The object form of a host is checked the same.
    let as_object = cep(
        "vap",
        &ns,
        "{name: a, port: 80, targetPort: 80, hosts: [198.18.0.2, {address: 198.19.80.7, zone: a}]}",
    );
    assert_tenant_refused(
        &ns,
        &as_object,
        "spec.ports[0].hosts[1]: 198.19.80.7 is denied",
        "a denied host object",
    )
    .await;
    let metadata = cep(
        "vap",
        &ns,
        "{name: a, port: 80, targetPort: 80, hosts: ['fd00:ec2::254']}",
    );
    assert_tenant_refused(
        &ns,
        &metadata,
        "spec.ports[0].hosts[0]: fd00:ec2::254",
        "a metadata address",
    )
    .await;
    let legacy = format!(
        "apiVersion: {GROUP}/v1beta1\nkind: ClusterEndpoint\nmetadata: {{name: vap, namespace: {ns}}}\nspec:\n  hosts: [198.18.0.2, 100.100.100.200]\n  ports: [{{name: a, port: 80, targetPort: 80}}]\n"
    );
    assert_tenant_refused(
        &ns,
        &legacy,
        "spec.hosts[1]: 100.100.100.200",
        "a legacy metadata host",
    )
    .await;
    // The Host header tricks (the CRD itself checks only httpGet.host).
    let header = |name: &str, value: &str| {
        cep(
            name,
            &ns,
            &format!(
                "{{name: a, port: 443, targetPort: 443, hosts: [198.18.0.2], httpGet: {{scheme: https, httpHeaders: [{{name: Host, value: '{value}'}}]}}}}"
            ),
        )
    };
    for trick in ["x@127.0.0.1", "127.1", "0x7f.1", "evil#", "%65vil"] {
        assert_tenant_refused(
            &ns,
            &header("vap-header", trick),
            "spec.ports[0].httpGet.httpHeaders: the Host header must be",
            &format!("the Host header {trick}"),
        )
        .await;
    }
    for (i, fine) in [
        "db.internal:8443",
        "198.18.0.9:80",
        "[fd00:6b65::9]:443",
        "1db.internal",
    ]
    .iter()
    .enumerate()
    {
        create_as_tenant(&ns, &header(&format!("vap-header-{i}"), fine))
            .await
            .unwrap_or_else(|e| panic!("the Host header {fine} was refused: {e}"));
    }
    create_as_tenant(
        &ns,
        &cep(
            "vap",
            &ns,
            "{name: a, port: 80, targetPort: 80, hosts: [198.18.0.2]}",
        ),
    )
    .await
    .expect("an allowed host passes the policy");
    for o in objects.iter().rev() {
        let (api, obj) = dynamic(o);
        api.delete(&obj.name_any(), &DeleteParams::default())
            .await
            .expect("policy removed");
    }
}

/// The virtual-host tricks that would turn an HTTPS probe towards another
/// address are refused at admission, as the tenant, in `httpGet.host`. (A
/// `Host` header value is refused at admission by the chart's admission
/// policy — see the test above; a CEL rule of the CRD over header values
/// would exceed the apiserver's cost budget — and always by the
/// controller's `plan`, with `Initialized=False`.)
#[tokio::test(flavor = "multi_thread")]
async fn url_tricks_in_the_virtual_host_are_refused_at_admission() {
    let client = admin_with_crd().await;
    let ns = tenant_namespace(&client, "tenancy-vhost").await;
    let mut failures = Vec::new();
    for (i, trick) in ["x@127.0.0.1", "127.1", "0x7f.1", "evil#", "%65vil"]
        .iter()
        .enumerate()
    {
        let yaml = cep(
            &format!("trick-{i}"),
            &ns,
            &format!(
                "{{name: a, port: 443, targetPort: 443, hosts: [198.18.0.2], httpGet: {{scheme: https, host: '{trick}'}}}}"
            ),
        );
        match create_as_tenant(&ns, &yaml).await {
            Err(kube::Error::Api(s))
                if s.code == 422 && s.message.contains("spec.ports[0].httpGet.host") => {}
            other => failures.push(format!("{trick}: {other:?}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn budgets_refuse_a_new_object_whole_and_admit_it_when_room_is_freed() {
    let client = admin_with_crd().await;
    let a = tenant_namespace(&client, "tenancy-budget-a").await;
    let b = tenant_namespace(&client, "tenancy-budget-b").await;
    let _guard = Guard::new("budget", &[]);
    let c = controller(
        &[&a, &b],
        &["--max-targets-per-namespace=3", "--max-targets=5"],
    )
    .await;
    create_static_as_tenant(&a, "first", "198.18.200.1, 198.18.200.2").await;
    support::wait_phase(&client, &a, GROUP, "first", Phase::Healthy).await;
    create_static_as_tenant(&a, "second", "198.18.200.3, 198.18.200.4").await;
    let refused = eventually("second to be refused", || async {
        let s = status_of(&client, &a, "second").await?;
        let init = s
            .conditions
            .iter()
            .find(|c| c.type_ == CONDITION_INITIALIZED)?;
        (init.reason == "BudgetExceeded").then(|| init.clone())
    })
    .await;
    assert_eq!(refused.status, "False");
    assert!(
        refused.message.starts_with(&format!(
            "this object declares 2 targets (host-ports) but only 1 of the target budget of namespace {a} (--max-targets-per-namespace) of 3 are free"
        )),
        "{}",
        refused.message
    );
    assert!(
        slices(&client, &a, "second").await.is_empty(),
        "refused whole"
    );
    assert!(support::service(&client, &a, "second").await.is_none());
    // Another namespace is not affected, within the global budget.
    create_static_as_tenant(&b, "other", "198.18.200.5, 198.18.200.6").await;
    support::wait_phase(&client, &b, GROUP, "other", Phase::Healthy).await;
    // The first object is untouched by the refusal of the second.
    assert_eq!(slice_readiness(&client, &a, "first").await.len(), 2);
    support::wait_event(&client, &a, "second", "BudgetExceeded", "target budget").await;

    // Room is freed: the refused object is admitted without touching it.
    support::ceps(&client, &a, GROUP)
        .delete("first", &DeleteParams::default())
        .await
        .expect("first deleted");
    support::wait_phase(&client, &a, GROUP, "second", Phase::Healthy).await;
    assert_eq!(slice_readiness(&client, &a, "second").await.len(), 2);
    c.check_running().expect("the controller is still running");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_apiservers_service_and_other_tools_services_are_never_adopted() {
    let (_serial, client) = serial_with_cluster_objects().await;
    let ns = tenant_namespace(&client, "tenancy-adopt").await;
    tenant_namespace(&client, "default").await;
    let _guard = Guard::new("adopt", &[]);
    let host = TestHost::create().await.expect("test host");
    let _backend = host.start_backend(tcp_backend()).await.expect("backend");
    let ip = host.ipv4().to_string();
    let port = format!(
        "{{name: https, port: 443, targetPort: 443, hosts: [{ip}], tcpSocket: {{enable: true}}}}"
    );
    let services = |ns: &str| Api::<Service>::namespaced(client.clone(), ns);
    let kubernetes_before = services("default")
        .get("kubernetes")
        .await
        .expect("svc/kubernetes");
    let apiserver_slices = || async {
        Api::<EndpointSlice>::namespaced(client.clone(), "default")
            .list(&ListParams::default().labels("kubernetes.io/service-name=kubernetes"))
            .await
            .expect("slices")
            .items
            .into_iter()
            .map(|s| (s.name_any(), s.endpoints))
            .collect::<Vec<_>>()
    };
    let slices_before = apiserver_slices().await;

    // A Helm-managed Service and a plain hand-made one in the tenant's namespace.
    let handmade = |name: &str, helm: bool| {
        let mut meta = json!({"name": name, "namespace": ns});
        if helm {
            meta["labels"] = json!({"app.kubernetes.io/managed-by": "Helm"});
            meta["annotations"] = json!({"meta.helm.sh/release-name": name});
        }
        serde_json::from_value::<Service>(json!({
            "apiVersion": "v1", "kind": "Service", "metadata": meta,
            "spec": {"ports": [{"name": "web", "port": 8080}]}
        }))
        .expect("service")
    };
    for (name, helm) in [("web", true), ("db", false)] {
        services(&ns)
            .create(&PostParams::default(), &handmade(name, helm))
            .await
            .expect("hand-made Service");
    }
    let c = controller(&["default", &ns], &["--require-adopt-annotation=true"]).await;

    for (namespace, name) in [
        ("default", "kubernetes"),
        (ns.as_str(), "web"),
        (ns.as_str(), "db"),
    ] {
        create_as_tenant(namespace, &cep(name, namespace, &port))
            .await
            .expect("the tenant may create it");
    }
    let reason = |namespace: String, name: &'static str| {
        let client = client.clone();
        async move {
            eventually(&format!("{namespace}/{name} to be refused"), || async {
                let s = status_of(&client, &namespace, name).await?;
                let c = s
                    .conditions
                    .iter()
                    .find(|c| c.type_ == "SyncServiceReady")?;
                (c.status == "False").then(|| c.reason.clone())
            })
            .await
        }
    };
    assert_eq!(
        reason("default".into(), "kubernetes").await,
        "ProtectedObject"
    );
    assert_eq!(reason(ns.clone(), "web").await, "ManagedByAnotherTool");
    assert_eq!(reason(ns.clone(), "db").await, "AdoptionNotAllowed");

    // Nothing of theirs changed; nothing of ours was written for them.
    let kubernetes_after = services("default")
        .get("kubernetes")
        .await
        .expect("svc/kubernetes");
    assert_eq!(
        kubernetes_after.owner_references(),
        kubernetes_before.owner_references()
    );
    assert_eq!(kubernetes_after.spec, kubernetes_before.spec);
    assert_eq!(apiserver_slices().await, slices_before);
    for name in ["web", "db"] {
        let svc = services(&ns).get(name).await.expect("service");
        assert!(svc.owner_references().is_empty(), "{name} was adopted");
        let ports: Vec<i32> = svc
            .spec
            .iter()
            .flat_map(|s| s.ports.iter().flatten())
            .map(|p| p.port)
            .collect();
        assert_eq!(ports, [8080], "{name}'s ports were changed");
        assert!(
            slices(&client, &ns, name).await.is_empty(),
            "slices written for {name}"
        );
    }

    // Consent: annotating the hand-made Service lets it be adopted in place.
    let before = services(&ns).get("db").await.expect("db");
    services(&ns)
        .patch(
            "db",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"kube-endpoints.io/adopt": "true"}}}),
            ),
        )
        .await
        .expect("annotated");
    // An adoption carries the resourceVersion it was decided on: the
    // apiserver refuses an apply made on a stale one (here, from before the
    // annotation), so an object that changed meanwhile is decided again.
    let stale: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "db", "namespace": ns, "resourceVersion": before.resource_version()},
        "spec": {"ports": [{"name": "web", "port": 8080}]}
    }))
    .expect("service");
    match services(&ns)
        .patch(
            "db",
            &PatchParams::apply("e2e-stale").force(),
            &Patch::Apply(&stale),
        )
        .await
    {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 409, "{s:?}"),
        other => panic!("an apply on a stale resourceVersion was not refused: {other:?}"),
    }
    // (The phase says nothing here: the hosts were probed, and healthy, all
    // along; only the Service was refused.)
    let adopted = eventually("db to be adopted", || async {
        let svc = services(&ns).get("db").await.ok()?;
        svc.owner_references()
            .iter()
            .any(|r| r.name == "db" && r.controller == Some(true))
            .then_some(svc)
    })
    .await;
    eventually(
        "db's ClusterEndpoint to report the Service synced",
        || async {
            let s = status_of(&client, &ns, "db").await?;
            s.conditions
                .iter()
                .any(|c| c.type_ == "SyncServiceReady" && c.status == "True")
                .then_some(())
        },
    )
    .await;
    support::wait_all_ready(&client, &ns, "db", 1).await;
    assert_eq!(
        adopted.spec.as_ref().and_then(|s| s.cluster_ip.clone()),
        before.spec.as_ref().and_then(|s| s.cluster_ip.clone()),
        "adopted in place, keeping its clusterIP"
    );
    // The refused ones stay refused.
    let web = services(&ns).get("web").await.expect("web");
    assert!(web.owner_references().is_empty());
    c.check_running().expect("the controller is still running");
}

/// A Service created (with a selector, by someone else) around the
/// ClusterEndpoint's first sync is never taken over, whichever side wins,
/// also when the controller's cache has not seen it yet (a live read
/// before the first apply finds it). Raced with varying delays. (The
/// instant between that read and the apply is not covered: see
/// docs/security.md.)
#[tokio::test(flavor = "multi_thread")]
async fn a_service_created_during_the_first_sync_is_never_taken_over() {
    let client = admin_with_crd().await;
    let ns = tenant_namespace(&client, "tenancy-race").await;
    let _guard = Guard::new("race", &[]);
    let c = controller(&[&ns], &[]).await;
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let mut raced = 0;
    for round in 0..30u64 {
        let name = format!("race-{round}");
        let foreign: Service = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"selector": {"app": "other"}, "ports": [{"name": "db", "port": 5432}]}
        }))
        .expect("service");
        let yaml = cep(
            &name,
            &ns,
            "{name: db, port: 5432, targetPort: 5432, hosts: [198.18.200.1]}",
        );
        let (created, svc) = tokio::join!(create_as_tenant(&ns, &yaml), async {
            tokio::time::sleep(std::time::Duration::from_millis(round % 10 * 3)).await;
            services.create(&PostParams::default(), &foreign).await
        });
        created.expect("the ClusterEndpoint is created");
        if svc.is_err() {
            continue; // the controller created it first: nothing to take over
        }
        raced += 1;
        // Settled: the sync has reported on the Service.
        eventually(&format!("{name} to report on its Service"), || async {
            let s = status_of(&client, &ns, &name).await?;
            s.conditions
                .iter()
                .any(|c| c.type_ == "SyncServiceReady" && c.status == "False")
                .then_some(())
        })
        .await;
        let svc = services.get(&name).await.expect("the foreign Service");
        assert!(
            svc.owner_references().is_empty(),
            "{name}: the foreign Service was taken over: {:?}",
            svc.owner_references()
        );
        assert_eq!(
            svc.spec.as_ref().and_then(|s| s.selector.clone()),
            Some([("app".to_string(), "other".to_string())].into())
        );
    }
    assert!(raced > 0, "the foreign Service never won a round");
    c.check_running().expect("the controller is still running");
}

/// `kube-endpoints check -f` (no cluster) applies the built-in denies: a
/// manifest listing the metadata addresses makes no packet go to them.
#[tokio::test(flavor = "multi_thread")]
async fn check_never_probes_a_metadata_address() {
    let guard = Guard::new("check", &METADATA);
    let hosts: Vec<String> = METADATA.iter().map(|h| format!("'{h}'")).collect();
    let yaml = cep(
        "meta",
        "web",
        &format!(
            "{{name: a, port: 80, targetPort: 80, hosts: [{}], tcpSocket: {{enable: true}}}}",
            hosts.join(", ")
        ),
    );
    let file = std::env::temp_dir().join(format!("ke-check-metadata-{}.yaml", std::process::id()));
    std::fs::write(&file, yaml).expect("manifest");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_kube-endpoints"))
        .args(["check", "-f"])
        .arg(&file)
        .output()
        .await
        .expect("check runs");
    let _ = std::fs::remove_file(&file);
    let text = String::from_utf8_lossy(&out.stdout);
    for h in METADATA {
        let row = text
            .lines()
            .find(|l| l.split_whitespace().nth(2) == Some(h))
            .unwrap_or_else(|| panic!("no row for {h}:\n{text}"));
        assert!(
            row.contains(" denied ") && row.contains("(denied by the address policy)"),
            "{row}"
        );
        assert_eq!(guard.packets(h), 0, "check sent a packet to {h}");
    }
}
