//! Shared fixtures of the integration tests: one real control plane per test
//! binary, a namespace and a `kube-endpoints run` process per test,
//! network-namespace hosts running the test backends, the wordpress example,
//! and (in [`chart`]) the Helm chart rendered by the real `helm`.
//!
//! Each test binary includes this module and uses part of it.
#![allow(dead_code)]

pub mod chart;
pub mod chart_rbac;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Endpoints, Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::core::DynamicObject;
use kube::{Client, ResourceExt};
use kube_endpoints_api::{DynClusterEndpoint, Phase, api_resource, crd_for_group};
pub use kube_endpoints_testkit::controller::ControllerProcess as Controller;
pub use kube_endpoints_testkit::controller::Launch;
use kube_endpoints_testkit::controlplane::{ControlPlane, ControlPlaneOptions};
use kube_endpoints_testkit::netns::{Backend, BackendPorts, TestHost};
use serde_json::{Value, json};

/// How long anything in the suite may take to converge before it fails.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// One control plane for the whole test binary (tests in one binary run in
/// parallel, each in its own namespace). Started on a dedicated runtime so
/// that it outlives any single test's runtime.
pub fn control_plane() -> &'static ControlPlane {
    control_plane_with(ControlPlaneOptions::default)
}

/// [`control_plane`], started with `options()` if it is not running yet (a
/// test binary whose tests need other options calls this first, always
/// with the same options).
pub fn control_plane_with(options: fn() -> ControlPlaneOptions) -> &'static ControlPlane {
    static CP: OnceLock<ControlPlane> = OnceLock::new();
    CP.get_or_init(|| start_control_plane(options()))
}

/// A control plane started on a thread of its own (see [`on_own_thread`]).
pub fn start_control_plane(options: ControlPlaneOptions) -> ControlPlane {
    on_own_thread(move || ControlPlane::start_with(options)).expect("control plane starts")
}

/// What `start` makes, made on a thread of its own whose runtime keeps
/// running for as long as the test binary: fixtures shared by the tests of a
/// binary outlive any one test's runtime, their processes die only with the
/// thread that started them (PR_SET_PDEATHSIG), and their background tasks
/// keep running.
pub fn on_own_thread<T, F, Fut>(start: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
    T: Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime for a shared fixture");
        rt.block_on(async {
            let _ = tx.send(start().await);
            std::future::pending::<()>().await
        });
    });
    rx.recv().expect("the fixture's thread")
}

pub async fn client() -> Client {
    control_plane()
        .client()
        .await
        .expect("client for the control plane")
}

/// Poll `check` until it returns Some, or fail with `what` after `DEADLINE`.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "timed out after {DEADLINE:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Install (or update) the CRD of `group` and wait until it is served.
pub async fn install_crd(client: &Client, group: &str) {
    kube_endpoints_testkit::crd::install_and_wait(client, &crd_for_group(group), "e2e")
        .await
        .expect("the CRD is installed and served");
}

pub fn free_port() -> u16 {
    kube_endpoints_testkit::http::free_port().expect("free port")
}

/// A `kube-endpoints run` process watching `namespace`, as the admin.
pub async fn start_controller(namespace: &str, extra: &[&str]) -> Controller {
    start_controller_as(namespace, extra, control_plane().kubeconfig_path()).await
}

/// A `kube-endpoints run` process watching `namespace` with `kubeconfig`;
/// returns once it is ready.
pub async fn start_controller_as(namespace: &str, extra: &[&str], kubeconfig: &Path) -> Controller {
    Controller::start(controller_launch(namespace, extra, kubeconfig))
        .await
        .expect("the controller starts")
}

/// How [`start_controller_as`] starts its process, for tests that start it
/// differently (as another user, under a resource limit).
pub fn controller_launch(namespace: &str, extra: &[&str], kubeconfig: &Path) -> Launch {
    let metrics_port = free_port();
    let log = std::env::temp_dir().join(format!("ke-e2e-{namespace}-{metrics_port}.log"));
    let mut command: Vec<String> = [env!("CARGO_BIN_EXE_kube-endpoints"), "run", "--kubeconfig"]
        .map(String::from)
        .into();
    command.push(kubeconfig.display().to_string());
    command.extend(["--namespace".into(), namespace.into()]);
    command.extend(["--metrics-addr".into(), format!("127.0.0.1:{metrics_port}")]);
    command.extend(extra.iter().map(|a| a.to_string()));
    let mut launch = Launch::new(command, metrics_port, log);
    launch.env = vec![("RUST_LOG".into(), "info,kube_endpoints=debug".into())];
    launch.ready_timeout = DEADLINE;
    launch
}

/// A test host running a backend on the wordpress example's ports.
pub async fn host_with_backend() -> (TestHost, Backend) {
    host_with(BackendPorts::wordpress()).await
}

/// A test host running a backend on `ports`.
pub async fn host_with(ports: BackendPorts) -> (TestHost, Backend) {
    let host = TestHost::create().await.expect("test host is created");
    let backend = host.start_backend(ports).await.expect("backend starts");
    (host, backend)
}

/// `examples/wordpress.yaml` in `group`, with its placeholder addresses
/// replaced by `hosts` and its period set to `period` seconds, for the
/// namespace it is applied in.
pub fn wordpress(group: &str, hosts: &[String], period: u32) -> String {
    example("wordpress.yaml", group, hosts, period)
}

/// `examples/<file>` made testable: in `group`, every host list replaced by
/// `hosts`, the period set to `period` seconds, no namespace of its own.
pub fn example(file: &str, group: &str, hosts: &[String], period: u32) -> String {
    let path = repo_root().join("examples").join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut cep: Value = yaml_object(&text);
    cep["apiVersion"] = json!(format!("{group}/v1beta1"));
    cep["metadata"]
        .as_object_mut()
        .expect("metadata")
        .remove("namespace");
    let spec = &mut cep["spec"];
    spec["periodSeconds"] = json!(period);
    if spec.get("hosts").is_some() {
        spec["hosts"] = json!(hosts);
    }
    for port in spec["ports"].as_array_mut().expect("ports") {
        if port.get("hosts").is_some() {
            port["hosts"] = json!(hosts);
        }
    }
    serde_json::to_string(&cep).expect("JSON")
}

/// Run `kube-endpoints <args> --kubeconfig <kubeconfig>`, which must
/// succeed; its standard output.
pub async fn run_cli(args: &[&str], kubeconfig: &Path) -> String {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_kube-endpoints"))
        .args(args)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .output()
        .await
        .expect("the CLI runs");
    assert!(
        out.status.success(),
        "kube-endpoints {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Kill `controller` and start another watching `ns`; once it has
/// reconciled and run `probes` probes (so any write it was going to make
/// is made), assert it wrote nothing. The new controller.
pub async fn restart_writing_nothing(controller: Controller, ns: &str, probes: f64) -> Controller {
    controller.kill().await;
    let restarted = start_controller(ns, &[]).await;
    eventually(
        "the restarted controller to reconcile and probe",
        || async {
            let reconciled = restarted.metric("kube_endpoints_reconciles_total").await >= 1.0;
            let probed = restarted.metric("kube_endpoints_probes_total").await >= probes;
            (reconciled && probed).then_some(())
        },
    )
    .await;
    assert_wrote_nothing(&restarted).await;
    restarted
}

/// A fresh namespace for one test.
pub async fn namespace(client: &Client, name: &str) -> String {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).expect("namespace");
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace is created");
    name.to_string()
}

pub fn ceps(client: &Client, ns: &str, group: &str) -> Api<DynClusterEndpoint> {
    Api::namespaced_with(client.clone(), ns, &api_resource(group))
}

/// Create a ClusterEndpoint from YAML through the dynamic API (so the
/// apiserver applies defaults and validation exactly as for kubectl).
pub async fn apply_yaml(
    client: &Client,
    ns: &str,
    group: &str,
    yaml: &str,
) -> Result<DynamicObject, kube::Error> {
    let (api, obj) = dynamic(client, ns, group, yaml);
    api.patch(
        &obj.name_any(),
        &PatchParams::apply("e2e-user").force(),
        &Patch::Apply(&obj),
    )
    .await
}

/// A test manifest and the dynamic API of its ClusterEndpoint group.
pub fn dynamic(
    client: &Client,
    ns: &str,
    group: &str,
    yaml: &str,
) -> (Api<DynamicObject>, DynamicObject) {
    let obj: DynamicObject = yaml_object(yaml);
    (
        Api::namespaced_with(client.clone(), ns, &api_resource(group)),
        obj,
    )
}

/// [`apply_yaml`], which must succeed.
pub async fn must_apply(client: &Client, ns: &str, group: &str, yaml: &str) {
    if let Err(e) = apply_yaml(client, ns, group, yaml).await {
        panic!("the manifest does not apply: {e}\n{yaml}");
    }
}

/// Wait until `service` has `count` endpoints in its slices, all ready.
pub async fn wait_all_ready(client: &Client, ns: &str, service: &str, count: usize) {
    eventually(
        &format!("{count} ready endpoints of {ns}/{service}"),
        || async {
            let r = slice_readiness(client, ns, service).await;
            (r.len() == count && r.values().all(|v| *v)).then_some(())
        },
    )
    .await;
}

/// Backend ports for TCP (443) and HTTP (80) probes only.
pub fn tcp_and_http_ports() -> BackendPorts {
    BackendPorts {
        tcp: vec![443],
        http: vec![80],
        udp: vec![],
        grpc: vec![],
        redis: vec![],
    }
}

pub async fn get_cep(
    client: &Client,
    ns: &str,
    group: &str,
    name: &str,
) -> Option<DynClusterEndpoint> {
    ceps(client, ns, group).get_opt(name).await.ok().flatten()
}

pub async fn wait_phase(
    client: &Client,
    ns: &str,
    group: &str,
    name: &str,
    phase: Phase,
) -> DynClusterEndpoint {
    eventually(&format!("{ns}/{name} to be {}", phase.as_str()), || async {
        let cep = get_cep(client, ns, group, name).await?;
        let status = cep.status.as_ref()?;
        (status.phase == Some(phase) && status.observed_generation == cep.metadata.generation)
            .then_some(cep)
    })
    .await
}

pub async fn slices(client: &Client, ns: &str, service: &str) -> Vec<EndpointSlice> {
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().labels(&format!("kubernetes.io/service-name={service}"));
    let mut items = api.list(&lp).await.map(|l| l.items).unwrap_or_default();
    items.sort_by_key(|s| s.name_any());
    items
}

/// (slice address type, address, ready) for every endpoint of the service's slices.
pub async fn slice_readiness(
    client: &Client,
    ns: &str,
    service: &str,
) -> BTreeMap<(String, String, String), bool> {
    let mut out = BTreeMap::new();
    for s in slices(client, ns, service).await {
        let first = s.ports.iter().flatten().next();
        let port = first.and_then(|p| p.name.clone()).unwrap_or_default();
        for e in &s.endpoints {
            let ready = e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false);
            for a in &e.addresses {
                out.insert((s.address_type.clone(), port.clone(), a.clone()), ready);
            }
        }
    }
    out
}

/// resourceVersions of everything the controller writes for `name`: its
/// slices, Endpoints, Service and the ClusterEndpoint (status).
pub async fn resource_versions(
    client: &Client,
    ns: &str,
    group: &str,
    name: &str,
) -> BTreeMap<String, String> {
    let mut v: BTreeMap<String, String> = slices(client, ns, name)
        .await
        .iter()
        .map(|s| {
            (
                format!("slice/{}", s.name_any()),
                s.resource_version().unwrap_or_default(),
            )
        })
        .collect();
    let rv = |o: Option<String>| o.unwrap_or_default();
    let ep = endpoints(client, ns, name)
        .await
        .and_then(|e| e.resource_version());
    v.insert("endpoints".into(), rv(ep));
    let svc = service(client, ns, name)
        .await
        .and_then(|s| s.resource_version());
    v.insert("service".into(), rv(svc));
    let cep = get_cep(client, ns, group, name)
        .await
        .and_then(|c| c.resource_version());
    v.insert("clusterendpoint".into(), rv(cep));
    v
}

/// The object `ns/name` of kind `K`, if it exists (and can be read).
pub async fn get<K>(client: &Client, ns: &str, name: &str) -> Option<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    api.get_opt(name).await.ok().flatten()
}

pub async fn service(client: &Client, ns: &str, name: &str) -> Option<Service> {
    get(client, ns, name).await
}

pub async fn endpoints(client: &Client, ns: &str, name: &str) -> Option<Endpoints> {
    get(client, ns, name).await
}

/// Ready and not-ready addresses of the compatibility Endpoints, per port name.
pub async fn endpoints_addresses(
    client: &Client,
    ns: &str,
    name: &str,
) -> BTreeMap<String, (Vec<String>, Vec<String>)> {
    let mut out = BTreeMap::new();
    for subset in endpoints(client, ns, name)
        .await
        .and_then(|e| e.subsets)
        .unwrap_or_default()
    {
        let port = subset
            .ports
            .as_ref()
            .and_then(|p| p.first())
            .and_then(|p| p.name.clone())
            .unwrap_or_default();
        let ips = |a: Option<Vec<k8s_openapi::api::core::v1::EndpointAddress>>| {
            let mut v: Vec<String> = a.unwrap_or_default().into_iter().map(|a| a.ip).collect();
            v.sort();
            v
        };
        out.insert(
            port,
            (ips(subset.addresses), ips(subset.not_ready_addresses)),
        );
    }
    out
}

/// Events (events.k8s.io) about `name` in `ns`: (reason, note).
pub async fn events(client: &Client, ns: &str, name: &str) -> Vec<(String, String)> {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), ns);
    api.list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
        .collect()
}

/// Wait for an Event about `name` with `reason` whose note contains `text`.
pub async fn wait_event(client: &Client, ns: &str, name: &str, reason: &str, text: &str) {
    let what = format!("a {reason} Event about {name} saying {text:?}");
    eventually(&what, || async {
        events(client, ns, name)
            .await
            .iter()
            .any(|(r, note)| r == reason && note.contains(text))
            .then_some(())
    })
    .await;
}

/// The Endpoints `name`, which must tell the EndpointSlice mirroring
/// controller to skip it (else its hosts would be mirrored into slices of
/// their own, ready whatever the probes say).
pub async fn endpoints_skipping_mirroring(client: &Client, ns: &str, name: &str) -> Endpoints {
    let ep = endpoints(client, ns, name)
        .await
        .unwrap_or_else(|| panic!("Endpoints {ns}/{name} exists"));
    assert_eq!(
        label(&ep, "endpointslice.kubernetes.io/skip-mirror"),
        Some("true"),
        "{ns}/{name}"
    );
    ep
}

/// The value of `object`'s label `key`, if it has one.
pub fn label<'a>(object: &'a impl ResourceExt, key: &str) -> Option<&'a str> {
    object.labels().get(key).map(String::as_str)
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The one object of a YAML test manifest.
pub fn yaml_object<T: serde::de::DeserializeOwned>(yaml: &str) -> T {
    let docs = kube_endpoints::yaml::documents(yaml).expect("test manifest is YAML");
    let [doc] = docs.as_slice() else {
        panic!("expected one document, got {}", docs.len());
    };
    serde_json::from_value(doc.clone()).expect("test manifest has the expected kind")
}

/// A ClusterEndpoint `name` of our group with `spec`, as JSON (which is YAML).
pub fn manifest(name: &str, spec: Value) -> String {
    json!({
        "apiVersion": format!("{}/v1beta1", kube_endpoints_api::GROUP),
        "kind": "ClusterEndpoint",
        "metadata": {"name": name},
        "spec": spec,
    })
    .to_string()
}

/// A namespace of its own with a controller watching it (kept running
/// while the returned handle lives).
pub async fn watched_namespace(name: &str) -> (Client, String, Controller) {
    watched_namespace_with(name, &[]).await
}

/// [`watched_namespace`], the controller started with `flags`.
pub async fn watched_namespace_with(name: &str, flags: &[&str]) -> (Client, String, Controller) {
    let client = client().await;
    install_crd(&client, kube_endpoints_api::GROUP).await;
    let ns = namespace(&client, name).await;
    let controller = start_controller(&ns, flags).await;
    (client, ns, controller)
}

/// `controller` has sent no write to the API (its metrics say why not).
pub async fn assert_wrote_nothing(controller: &Controller) {
    let writes = controller.metric("kube_endpoints_api_writes_total").await;
    assert_eq!(
        writes,
        0.0,
        "the controller wrote to the API:\n{}",
        controller.metrics().await
    );
}
