//! Shared fixtures of the end-to-end suite: one real control plane per test
//! binary, a namespace and a `kube-endpoints run` process per test, and
//! network-namespace hosts running the test backends.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, TcpListener};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Endpoints, Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::core::DynamicObject;
use kube::{Client, ResourceExt};
use kube_endpoints_api::{DynClusterEndpoint, Phase, api_resource, crd_for_group};
use kube_endpoints_testkit::controlplane::ControlPlane;
use serde_json::Value;
use tokio::process::{Child, Command};

/// How long anything in the suite may take to converge before it fails.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// One control plane for the whole test binary (tests in one binary run in
/// parallel, each in its own namespace). Started on a dedicated runtime so
/// that it outlives any single test's runtime.
pub fn control_plane() -> &'static ControlPlane {
    static CP: OnceLock<ControlPlane> = OnceLock::new();
    CP.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime for the control plane");
            let _ = tx.send(rt.block_on(ControlPlane::start()));
            // The control plane's processes die with the thread that started
            // them (PR_SET_PDEATHSIG), so this thread lives as long as the
            // test binary does.
            loop {
                std::thread::park();
            }
        });
        rx.recv()
            .expect("control plane thread")
            .expect("control plane starts")
    })
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
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = crd_for_group(group);
    let name = crd.name_any();
    crds.patch(
        &name,
        &PatchParams::apply("e2e").force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("CRD applies");
    eventually("the CRD to be established", || {
        let crds = crds.clone();
        let name = name.clone();
        async move {
            let crd = crds.get(&name).await.ok()?;
            let established = crd
                .status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            established.then_some(())
        }
    })
    .await;
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A `kube-endpoints run` process watching one namespace.
pub struct Controller {
    child: Child,
    pub metrics_port: u16,
    pub log: PathBuf,
}

impl Controller {
    pub async fn start(namespace: &str, extra: &[&str]) -> Controller {
        Self::start_with_kubeconfig(
            namespace,
            extra,
            control_plane().kubeconfig_path().to_path_buf(),
        )
        .await
    }

    pub async fn start_with_kubeconfig(
        namespace: &str,
        extra: &[&str],
        kubeconfig: PathBuf,
    ) -> Controller {
        let metrics_port = free_port();
        let log = std::env::temp_dir().join(format!("ke-e2e-{namespace}-{metrics_port}.log"));
        let log_file = std::fs::File::create(&log).expect("controller log file");
        // tracing writes to stdout; keep both streams in the log.
        let stdout = log_file.try_clone().expect("controller log file");
        let child = Command::new(env!("CARGO_BIN_EXE_kube-endpoints"))
            .arg("run")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["--namespace", namespace])
            .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
            .args(extra)
            .env("RUST_LOG", "info,kube_endpoints=debug")
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(log_file))
            .kill_on_drop(true)
            .spawn()
            .expect("kube-endpoints starts");
        let c = Controller {
            child,
            metrics_port,
            log,
        };
        let start = Instant::now();
        while c.readyz().await.is_none() {
            assert!(
                start.elapsed() < DEADLINE,
                "the controller was not ready after {DEADLINE:?}; its log ends:\n{}",
                c.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        c
    }

    async fn readyz(&self) -> Option<()> {
        let body = http_get(self.metrics_port, "/readyz").await?;
        (body.trim() == "ok").then_some(())
    }

    pub async fn metrics(&self) -> String {
        http_get(self.metrics_port, "/metrics")
            .await
            .unwrap_or_default()
    }

    /// Sum of a counter over all its label sets.
    pub async fn counter(&self, name: &str) -> f64 {
        sum_metric(&self.metrics().await, name)
    }

    pub fn pid(&self) -> i32 {
        self.child
            .id()
            .and_then(|p| i32::try_from(p).ok())
            .unwrap_or(0)
    }

    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

pub fn sum_metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// GET `path` on 127.0.0.1:`port`; the body of a 200 answer.
pub async fn http_get(port: u16, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.ok()?;
    let (head, body) = buf.split_once("\r\n\r\n")?;
    // hyper answers an HTTP/1.0 request in HTTP/1.0.
    (head.split(' ').nth(1) == Some("200")).then(|| body.to_string())
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

/// Create a ClusterEndpoint from YAML with a plain POST, as `kubectl
/// apply` (client-side) or `kubectl create` of a new object does.
pub async fn create_yaml(
    client: &Client,
    ns: &str,
    group: &str,
    yaml: &str,
) -> Result<DynamicObject, kube::Error> {
    let (api, obj) = dynamic(client, ns, group, yaml);
    api.create(&PostParams::default(), &obj).await
}

/// A test manifest and the dynamic API of its ClusterEndpoint group.
fn dynamic(
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
        let port = s
            .ports
            .as_ref()
            .and_then(|p| p.first())
            .and_then(|p| p.name.clone())
            .unwrap_or_default();
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

pub async fn service(client: &Client, ns: &str, name: &str) -> Option<Service> {
    Api::<Service>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .ok()
        .flatten()
}

pub async fn endpoints(client: &Client, ns: &str, name: &str) -> Option<Endpoints> {
    Api::<Endpoints>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .ok()
        .flatten()
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

pub fn json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

pub fn ip_string(ip: impl Into<IpAddr>) -> String {
    ip.into().to_string()
}

/// `$KE_HELM_BIN`, or the helm that scripts/build-helm.sh builds (once, into
/// the cache).
pub fn helm_bin() -> PathBuf {
    static HELM: OnceLock<PathBuf> = OnceLock::new();
    HELM.get_or_init(|| {
        if let Some(bin) = std::env::var_os("KE_HELM_BIN") {
            return PathBuf::from(bin);
        }
        let script = repo_root().join("scripts/build-helm.sh");
        let out = std::process::Command::new(&script)
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "{} failed: {}",
            script.display(),
            out.status
        );
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    })
    .clone()
}

/// A helm command that reads no repositories, plugins or registry config
/// from the host.
pub fn helm_command() -> std::process::Command {
    let mut cmd = std::process::Command::new(helm_bin());
    let tmp = std::env::temp_dir();
    cmd.env("HELM_CACHE_HOME", tmp.join("ke-helm-cache"))
        .env("HELM_CONFIG_HOME", tmp.join("ke-helm-config"))
        .env("HELM_DATA_HOME", tmp.join("ke-helm-data"));
    cmd
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `helm template <release> charts/kube-endpoints` as JSON objects.
pub fn render_chart(release: &str, namespace: &str, extra: &[&str]) -> Vec<Value> {
    let chart = repo_root().join("charts/kube-endpoints");
    let out = std::process::Command::new(helm_bin())
        .args(["template", release])
        .arg(&chart)
        .args(["--namespace", namespace])
        .args(extra)
        .env(
            "HELM_CACHE_HOME",
            std::env::temp_dir().join("ke-helm-cache"),
        )
        .env(
            "HELM_CONFIG_HOME",
            std::env::temp_dir().join("ke-helm-config"),
        )
        .env("HELM_DATA_HOME", std::env::temp_dir().join("ke-helm-data"))
        .output()
        .expect("helm runs");
    assert!(
        out.status.success(),
        "helm template failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    kube_endpoints::yaml::documents(&text).expect("rendered YAML")
}

/// The one object of a YAML test manifest.
pub fn yaml_object<T: serde::de::DeserializeOwned>(yaml: &str) -> T {
    let docs = kube_endpoints::yaml::documents(yaml).expect("test manifest is YAML");
    let [doc] = docs.as_slice() else {
        panic!("expected one document, got {}", docs.len());
    };
    serde_json::from_value(doc.clone()).expect("test manifest has the expected kind")
}
