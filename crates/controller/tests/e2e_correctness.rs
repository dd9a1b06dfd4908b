//! What goes wrong only in real clusters: many objects, migrated data, big
//! outages. Each test here failed before the behaviour it proves was built.
//!
//! Its control plane differs from the other suites': dual-stack Service
//! ranges (so that an IPv6 Service can exist), the EndpointSliceMirroring
//! controller of kube-controller-manager (which turns an Endpoints into
//! slices, as in every cluster), and etcd's request limit lowered from
//! 1.5 MiB to 256 KiB, so that a status that grows with an outage hits the
//! object size limit with 2,000 hosts instead of about 8,000. Needs root.

#![recursion_limit = "256"]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use kube_endpoints_api::{GROUP, Phase, SEALOS_GROUP};
use kube_endpoints_testkit::controlplane::ControlPlaneOptions;
use serde_json::json;
use support::*;

fn options() -> ControlPlaneOptions {
    ControlPlaneOptions {
        service_cluster_ip_range: "10.0.0.0/24,fd00:6b65:ffff::/112".into(),
        extra_controllers: vec!["endpointslicemirroring".into()],
        extra_etcd_args: vec!["--max-request-bytes=262144".into()],
        ..ControlPlaneOptions::default()
    }
}

async fn setup(test: &str) -> (Client, String) {
    control_plane_with(options);
    let client = client().await;
    install_crd(&client, GROUP).await;
    // The hosts that are not test hosts (see `unreachable_hosts`) must never
    // be reached: their block goes nowhere. (Not all of 198.18.0.0/15: the
    // testkit allocates test hosts only where no route exists.)
    let status = std::process::Command::new("ip")
        .args(["route", "replace", "blackhole", UNREACHABLE_BLOCK])
        .status()
        .expect("ip runs");
    assert!(status.success(), "the blackhole route is set");
    let ns = namespace(&client, test).await;
    (client, ns)
}

/// The top of the testkit's alias pool, routed nowhere: the addresses of
/// [`unreachable_hosts`].
const UNREACHABLE_BLOCK: &str = "198.19.248.0/21";

/// `n` (at most 1250) addresses of [`UNREACHABLE_BLOCK`]; no test host has them.
fn unreachable_hosts(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("198.19.{}.{}", 250 + i / 250, i % 250 + 1))
        .collect()
}

fn cep(name: &str, ports: serde_json::Value) -> String {
    json!({
        "apiVersion": format!("{GROUP}/v1beta1"),
        "kind": "ClusterEndpoint",
        "metadata": {"name": name},
        "spec": {"periodSeconds": 1, "ports": ports},
    })
    .to_string()
}

/// Applies ClusterEndpoint `name` with one port (name, port; target port
/// 80) on `hosts` and no probe: its hosts are ready without being probed.
async fn apply_unprobed(
    client: &Client,
    ns: &str,
    name: &str,
    port: (&str, u16),
    hosts: &[impl serde::Serialize],
) {
    let (port_name, port) = port;
    let ports = json!([{"name": port_name, "port": port, "targetPort": 80, "hosts": hosts}]);
    must_apply(client, ns, GROUP, &cep(name, ports)).await;
}

/// Waits until condition `type_` of `name` is False; its (reason, message).
async fn wait_condition_false(
    client: &Client,
    ns: &str,
    name: &str,
    type_: &str,
) -> (String, String) {
    let (_, reason, message) = eventually(&format!("{name} to report {type_}=False"), || async {
        let c = get_cep(client, ns, GROUP, name).await?;
        condition(&c, type_).filter(|(s, _, _)| s == "False")
    })
    .await;
    (reason, message)
}

/// A hand-made Service `name` (port 80) and its Endpoints listing `ips`, as
/// a person or another tool made them before kube-endpoints came.
async fn create_handmade(client: &Client, ns: &str, name: &str, ips: &[&str]) {
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let handmade: Service = serde_json::from_value(json!({
        "metadata": {"name": name}, "spec": {"ports": [{"port": 80, "targetPort": 80}]}
    }))
    .expect("service");
    services
        .create(&PostParams::default(), &handmade)
        .await
        .expect("Service");
    let endpoints_api: Api<Endpoints> = Api::namespaced(client.clone(), ns);
    let addresses: Vec<_> = ips.iter().map(|ip| json!({"ip": ip})).collect();
    let handmade_ep: Endpoints = serde_json::from_value(json!({
        "metadata": {"name": name},
        "subsets": [{"addresses": addresses, "ports": [{"port": 80}]}]
    }))
    .expect("endpoints");
    endpoints_api
        .create(&PostParams::default(), &handmade_ep)
        .await
        .expect("Endpoints");
}

fn condition(
    cep: &kube_endpoints_api::DynClusterEndpoint,
    type_: &str,
) -> Option<(String, String, String)> {
    let c = cep
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Item 1: `a` + port `b-c` and `a-b` + port `c` once made the same slice
/// name, and each object's writes took the slice from the other.
#[tokio::test(flavor = "multi_thread")]
async fn objects_whose_slice_names_collided_both_keep_their_endpoints() {
    let (client, ns) = setup("c-collide").await;
    let _controller = start_controller(&ns, &[]).await;
    let [h1, h2]: [String; 2] = unreachable_hosts(2).try_into().expect("two");
    apply_unprobed(&client, &ns, "a", ("b-c", 80), &[&h1]).await;
    apply_unprobed(&client, &ns, "a-b", ("c", 80), &[&h2]).await;
    let addresses = |service: &'static str| {
        let (client, ns) = (client.clone(), ns.clone());
        async move {
            slice_readiness(&client, &ns, service)
                .await
                .into_keys()
                .map(|(_, _, ip)| ip)
                .collect::<Vec<_>>()
        }
    };
    eventually("each Service to have its own host", || async {
        (addresses("a").await == [h1.clone()] && addresses("a-b").await == [h2.clone()])
            .then_some(())
    })
    .await;
    // Reconcile both again (a spec edit each): nothing is taken over.
    apply_unprobed(&client, &ns, "a", ("b-c", 81), &[&h1]).await;
    apply_unprobed(&client, &ns, "a-b", ("c", 81), &[&h2]).await;
    for name in ["a", "a-b"] {
        eventually(&format!("{name} to observe its edit"), || async {
            let c = get_cep(&client, &ns, GROUP, name).await?;
            (c.status?.observed_generation == c.metadata.generation).then_some(())
        })
        .await;
    }
    assert_eq!(addresses("a").await, vec![h1.clone()]);
    assert_eq!(addresses("a-b").await, vec![h2.clone()]);

    // A slice of our name that somebody else made is never overwritten.
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), &ns);
    let foreign: EndpointSlice = serde_json::from_value(json!({
        "metadata": {"name": "x.web.ipv4.0", "labels": {
            "kubernetes.io/service-name": "other",
            "endpointslice.kubernetes.io/managed-by": "someone-else.example.com"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["198.19.253.1"]}],
    }))
    .expect("slice");
    let created = slices
        .create(&PostParams::default(), &foreign)
        .await
        .expect("created");
    apply_unprobed(&client, &ns, "x", ("web", 80), &[&h1]).await;
    let (reason, message) = wait_condition_false(&client, &ns, "x", "SyncEndpointReady").await;
    assert_eq!(reason, "SliceNameConflict");
    assert!(message.contains("someone-else.example.com"), "{message}");
    wait_event(&client, &ns, "x", "SliceNameConflict", "x.web.ipv4.0").await;
    let after = slices.get("x.web.ipv4.0").await.expect("still there");
    assert_eq!(
        after.resource_version(),
        created.resource_version(),
        "not overwritten"
    );
}

/// endpoints-operator's CRD, as far as these tests need it: its spec
/// schema takes any fields (its released CRD has unnamed ports and
/// `udpSocket.data` as a list of integers).
fn predecessor_crd() -> CustomResourceDefinition {
    serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "clusterendpoints.sealos.io"},
        "spec": {
            "group": "sealos.io",
            "names": {"kind": "ClusterEndpoint", "plural": "clusterendpoints", "shortNames": ["cep"], "singular": "clusterendpoint", "listKind": "ClusterEndpointList"},
            "scope": "Namespaced",
            "versions": [{
                "name": "v1beta1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {
                        "ports": {"type": "array", "items": {"type": "object", "properties": {
                            "name": {"type": "string"},
                            "port": {"type": "integer"},
                            "targetPort": {"type": "integer"},
                            "protocol": {"type": "string"},
                            "hosts": {"type": "array", "items": {"type": "string"}},
                            "udpSocket": {"type": "object", "properties": {
                                "enable": {"type": "boolean"},
                                "data": {"type": "array", "items": {"type": "integer"}}}},
                            "tcpSocket": {"type": "object", "properties": {"enable": {"type": "boolean"}}}},
                            "required": ["port", "targetPort"]}}},
                        "x-kubernetes-preserve-unknown-fields": true},
                    "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}
            }]
        }
    }))
    .expect("CRD")
}

/// Item 2: one object stored in the predecessor's forms once failed the
/// whole list of its group, so no object of the group was served.
#[tokio::test(flavor = "multi_thread")]
async fn objects_stored_by_the_predecessor_never_stop_their_group() {
    let (client, ns) = setup("c-sealos").await;
    kube_endpoints_testkit::crd::install_and_wait(&client, &predecessor_crd(), "e2e")
        .await
        .expect("the predecessor's CRD is served");
    let (h1, _b1) = host_with_backend().await;
    let legacy = json!({
        "apiVersion": "sealos.io/v1beta1", "kind": "ClusterEndpoint",
        "metadata": {"name": "legacy"},
        "spec": {"periodSeconds": 1, "ports": [{"port": 1234, "targetPort": 1234, "protocol": "UDP",
                  "hosts": [h1.ipv4().to_string()],
                  "udpSocket": {"enable": true, "data": [104, 105]}}]},
    });
    // Stored through the predecessor's loose schema, unreadable to ours.
    let broken = json!({
        "apiVersion": "sealos.io/v1beta1", "kind": "ClusterEndpoint",
        "metadata": {"name": "broken"},
        "spec": {"periodSeconds": "10", "ports": [{"port": 80, "targetPort": 80, "hosts": [h1.ipv4().to_string()]}]},
    });
    for object in [&legacy, &broken] {
        must_apply(&client, &ns, SEALOS_GROUP, &object.to_string()).await;
    }
    // Now ours replaces it; the stored objects stay as they were.
    install_crd(&client, SEALOS_GROUP).await;
    let normal = json!({
        "apiVersion": "sealos.io/v1beta1", "kind": "ClusterEndpoint",
        "metadata": {"name": "normal"},
        "spec": {"periodSeconds": 1, "ports": [{"name": "http", "port": 80, "targetPort": 80,
                  "hosts": [h1.ipv4().to_string()], "httpGet": {"path": "/healthz"}}]},
    });
    must_apply(&client, &ns, SEALOS_GROUP, &normal.to_string()).await;
    let controller = start_controller(&ns, &["--group", SEALOS_GROUP]).await;

    wait_phase(&client, &ns, SEALOS_GROUP, "normal", Phase::Healthy).await;
    // The predecessor's object is served as it was: one unnamed UDP port
    // probed with the bytes "hi". (Our typed client cannot read it either:
    // read it untyped.)
    let raw = Api::<kube::core::DynamicObject>::namespaced_with(
        client.clone(),
        &ns,
        &kube_endpoints_api::api_resource(SEALOS_GROUP),
    );
    eventually("the predecessor's object to be Healthy", || async {
        let o = raw.get("legacy").await.ok()?;
        (o.data["status"]["phase"] == "Healthy").then_some(())
    })
    .await;
    let svc = service(&client, &ns, "legacy").await.expect("Service");
    let ports = svc.spec.and_then(|s| s.ports).unwrap_or_default();
    assert_eq!(ports.len(), 1);
    assert_eq!(
        ports[0].name.as_deref().unwrap_or_default(),
        "",
        "unnamed, as before"
    );
    assert_eq!(
        slice_readiness(&client, &ns, "legacy")
            .await
            .values()
            .filter(|r| **r)
            .count(),
        1
    );
    // The one that does not decode is reported on its own status.
    let (status, reason, message) = eventually("the broken object to be reported", || async {
        let raw = raw.get("broken").await.ok()?;
        let c = raw
            .data
            .get("status")?
            .get("conditions")?
            .as_array()?
            .iter()
            .find(|c| c["type"] == "Initialized")?
            .clone();
        Some((
            c["status"].as_str()?.to_string(),
            c["reason"].as_str()?.to_string(),
            c["message"].as_str()?.to_string(),
        ))
    })
    .await;
    assert_eq!((status.as_str(), reason.as_str()), ("False", "InvalidSpec"));
    assert!(message.contains("spec.periodSeconds"), "{message}");
    wait_event(&client, &ns, "broken", "InvalidSpec", "spec.periodSeconds").await;
    assert_eq!(
        controller.metric("kube_endpoints_watches_failing").await,
        0.0
    );
    assert!(controller.get("/readyz").await.is_some());

    // A served group whose watch fails is not being reconciled: /readyz
    // says so, and the metrics count it.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.delete("clusterendpoints.sealos.io", &Default::default())
        .await
        .expect("the CRD is deleted");
    eventually("/readyz to fail while the watch fails", || async {
        let failing = controller.metric("kube_endpoints_watches_failing").await >= 1.0;
        let errors = controller.metric("kube_endpoints_watch_errors_total").await >= 1.0;
        (failing && errors && controller.get("/readyz").await.is_none()).then_some(())
    })
    .await;
}

/// Every version of `K` objects of `ns` (with `label`) seen from now on,
/// until the task is aborted.
struct Recorder<K> {
    seen: std::sync::Arc<std::sync::Mutex<Vec<K>>>,
    task: tokio::task::JoinHandle<()>,
}

impl<K> Recorder<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + Send
        + serde::de::DeserializeOwned
        + 'static,
{
    /// Returns once the watch has listed what exists.
    async fn start(client: &Client, ns: &str, label: Option<String>) -> Self {
        let api: Api<K> = Api::namespaced(client.clone(), ns);
        let mut config = watcher::Config::default();
        if let Some(l) = label {
            config = config.labels(&l);
        }
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (listed_tx, listed_rx) = tokio::sync::oneshot::channel();
        let task = {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut listed = Some(listed_tx);
                let mut stream = Box::pin(watcher(api, config));
                while let Some(event) = stream.next().await {
                    match event {
                        Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                            seen.lock().expect("lock").push(o);
                        }
                        Ok(watcher::Event::InitDone) => {
                            if let Some(tx) = listed.take() {
                                let _ = tx.send(());
                            }
                        }
                        _ => {}
                    }
                }
            })
        };
        listed_rx.await.expect("the watch lists");
        Recorder { seen, task }
    }

    /// What was seen so far.
    fn seen(&self) -> Vec<K> {
        self.seen.lock().expect("lock").clone()
    }

    fn stop(self) -> Vec<K> {
        self.task.abort();
        self.seen.lock().expect("lock").clone()
    }
}

/// Whether kube-endpoints wrote `slice` (not the mirroring controller).
fn is_ours(slice: &EndpointSlice) -> bool {
    slice
        .labels()
        .get("endpointslice.kubernetes.io/managed-by")
        .map(String::as_str)
        == Some(kube_endpoints::DEFAULT_CONTROLLER_ID)
}

/// Creating an object once listed every new host not ready until its first
/// probe answered, and rewrote the slice a moment later. Its first listing
/// now waits for the first verdicts (at most one probe timeout): a host
/// that answers is ready in every version of the slice ever written, and a
/// silent host, whose probe takes the whole timeout, is listed not ready in
/// that same first version.
#[tokio::test(flavor = "multi_thread")]
async fn a_new_objects_first_listing_carries_its_first_verdicts() {
    let (client, ns) = setup("c-first").await;
    let (up, _b1) = host_with_backend().await;
    let (silent, _b2) = host_with_backend().await;
    silent.blackhole(true).await.expect("blackhole");
    let (up_ip, silent_ip) = (up.ipv4().to_string(), silent.ipv4().to_string());
    let slice_versions = Recorder::<EndpointSlice>::start(
        &client,
        &ns,
        Some("kubernetes.io/service-name=first".into()),
    )
    .await;
    let _controller = start_controller(&ns, &[]).await;
    let yaml = cep(
        "first",
        json!([{"name": "tcp", "port": 80, "targetPort": 80, "hosts": [up_ip, silent_ip],
                "tcpSocket": {"enable": true}, "timeoutSeconds": 1}]),
    );
    must_apply(&client, &ns, GROUP, &yaml).await;
    let cep = wait_phase(&client, &ns, GROUP, "first", Phase::UnHealthy).await;
    let status = cep.status.expect("status");
    assert_eq!(status.ready.as_deref(), Some("1/2"));
    let unhealthy: Vec<&str> = status.ports[0]
        .unhealthy
        .iter()
        .map(|u| u.host.as_str())
        .collect();
    assert_eq!(unhealthy, [silent_ip.as_str()]);
    let readiness = |s: &EndpointSlice| -> BTreeMap<String, Option<bool>> {
        s.endpoints
            .iter()
            .flat_map(|e| {
                let ready = e.conditions.as_ref().and_then(|c| c.ready);
                e.addresses.iter().map(move |a| (a.clone(), ready))
            })
            .collect()
    };
    eventually("the watch to see our slice with both hosts", || async {
        let seen = slice_versions.seen();
        seen.iter()
            .any(|s| is_ours(s) && readiness(s).len() == 2)
            .then_some(())
    })
    .await;
    let versions: Vec<EndpointSlice> = slice_versions.stop().into_iter().filter(is_ours).collect();
    let first = versions.first().expect("our slice was seen");
    assert_eq!(
        readiness(first),
        BTreeMap::from([
            (up_ip.clone(), Some(true)),
            (silent_ip.clone(), Some(false))
        ]),
        "the first listing carries the first verdicts"
    );
    for v in &versions {
        assert_eq!(
            readiness(v).get(&up_ip),
            Some(&Some(true)),
            "{up_ip} listed not ready in {} (rv {:?})",
            v.name_any(),
            v.resource_version()
        );
    }
    silent.blackhole(false).await.expect("blackhole lifted");
}

/// Item 3: adopting a hand-made Service + Endpoints once wrote every host
/// not ready until its first verdicts; with successThreshold 3 that is an
/// outage of seconds.
#[tokio::test(flavor = "multi_thread")]
async fn adoption_never_takes_a_serving_host_out_of_rotation() {
    let (client, ns) = setup("c-adopt").await;
    let (h1, _b1) = host_with_backend().await;
    let ip = h1.ipv4().to_string();
    create_handmade(&client, &ns, "rgw", &[&ip]).await;

    let slice_versions = Recorder::<EndpointSlice>::start(
        &client,
        &ns,
        Some("kubernetes.io/service-name=rgw".into()),
    )
    .await;
    let endpoints_versions = Recorder::<Endpoints>::start(&client, &ns, None).await;
    let _controller = start_controller(&ns, &[]).await;
    let yaml = cep(
        "rgw",
        json!([{"name": "http", "port": 80, "targetPort": 80, "hosts": [ip],
                                   "httpGet": {"path": "/healthz"}, "successThreshold": 3}]),
    );
    must_apply(&client, &ns, GROUP, &yaml).await;
    wait_phase(&client, &ns, GROUP, "rgw", Phase::Healthy).await;
    // Long enough for three probes of a host that had started unready.
    let deadline = Instant::now() + Duration::from_secs(4);
    eventually("our slice and the adopted Endpoints", || async {
        let ours = slices(&client, &ns, "rgw").await.iter().any(is_ours);
        let adopted = endpoints(&client, &ns, "rgw")
            .await?
            .owner_references()
            .len()
            == 1;
        (ours && adopted && Instant::now() > deadline).then_some(())
    })
    .await;
    let slices_seen = slice_versions.stop();
    let endpoints_seen = endpoints_versions.stop();
    assert!(slices_seen.iter().any(is_ours), "our slice was seen");
    for s in &slices_seen {
        for e in &s.endpoints {
            let ready = e.conditions.as_ref().and_then(|c| c.ready);
            assert_eq!(
                ready,
                Some(true),
                "{ip} not ready in {} (rv {:?})",
                s.name_any(),
                s.resource_version()
            );
        }
    }
    let rgw: Vec<&Endpoints> = endpoints_seen
        .iter()
        .filter(|e| e.name_any() == "rgw")
        .collect();
    assert!(
        rgw.iter().any(|e| e.owner_references().len() == 1),
        "the adoption was seen"
    );
    for e in rgw {
        let subsets = e.subsets.clone().unwrap_or_default();
        let ready: Vec<String> = subsets
            .iter()
            .flat_map(|s| s.addresses.iter().flatten().map(|a| a.ip.clone()))
            .collect();
        assert_eq!(
            ready,
            vec![ip.clone()],
            "{ip} left `addresses` (rv {:?})",
            e.resource_version()
        );
    }
}

/// Item 4: with the compatibility Endpoints off, a hand-made Endpoints
/// was mirrored into slices that listed a dead host as ready forever.
#[tokio::test(flavor = "multi_thread")]
async fn a_failing_host_is_never_left_ready_with_compat_endpoints_off() {
    let (client, ns) = setup("c-mirror").await;
    let (h1, _b1) = host_with_backend().await;
    let good = h1.ipv4().to_string();
    let dead = unreachable_hosts(1).remove(0);
    create_handmade(&client, &ns, "db", &[&good, &dead]).await;
    let ready_anywhere = || async {
        slice_readiness(&client, &ns, "db")
            .await
            .into_iter()
            .filter(|((_, _, ip), ready)| ip == &dead && *ready)
            .count()
    };
    eventually(
        "the mirroring controller to publish the hand-made hosts",
        || async { (ready_anywhere().await > 0).then_some(()) },
    )
    .await;

    let _controller = start_controller(&ns, &["--compat-endpoints=false"]).await;
    let yaml = cep(
        "db",
        json!([{"name": "http", "port": 80, "targetPort": 80, "hosts": [good, dead],
                                  "tcpSocket": {"enable": true}, "failureThreshold": 1}]),
    );
    must_apply(&client, &ns, GROUP, &yaml).await;
    wait_phase(&client, &ns, GROUP, "db", Phase::UnHealthy).await;
    eventually(
        "no slice of the Service to list the dead host as ready",
        || async { (ready_anywhere().await == 0).then_some(()) },
    )
    .await;
    // And it stays so: the mirroring controller has stopped.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        assert_eq!(
            ready_anywhere().await,
            0,
            "{dead} is ready in a slice again"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The hand-made Endpoints stays.
    let ep = endpoints_skipping_mirroring(&client, &ns, "db").await;
    assert!(
        ep.owner_references().is_empty(),
        "not adopted: compat is off"
    );
}

/// Item 4, second half: a Service taken over by someone else (a selector
/// added) must lose our slices.
#[tokio::test(flavor = "multi_thread")]
async fn a_service_refused_later_loses_our_slices() {
    let (client, ns) = setup("c-refused").await;
    let _controller = start_controller(&ns, &[]).await;
    let hosts = unreachable_hosts(1);
    apply_unprobed(&client, &ns, "app", ("http", 80), &hosts).await;
    wait_all_ready(&client, &ns, "app", 1).await;
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    services
        .patch(
            "app",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"selector": {"app": "web"}}})),
        )
        .await
        .expect("selector added");
    eventually("our slices to be removed", || async {
        slices(&client, &ns, "app").await.is_empty().then_some(())
    })
    .await;
    let (reason, message) = wait_condition_false(&client, &ns, "app", "SyncServiceReady").await;
    assert_eq!(reason, "ServiceHasSelector");
    assert!(message.contains("no EndpointSlices"), "{message}");
}

/// Item 5: every unhealthy host in status once made the object too large
/// to store in a big outage, and the status was never written again.
#[tokio::test(flavor = "multi_thread")]
async fn two_thousand_unhealthy_hosts_keep_the_status_written() {
    let (client, ns) = setup("c-outage").await;
    let _controller = start_controller(&ns, &[]).await;
    let hosts = unreachable_hosts(1000);
    let yaml = cep(
        "outage",
        json!([
            {"name": "a", "port": 80, "targetPort": 80, "hosts": hosts, "tcpSocket": {"enable": true}, "failureThreshold": 1, "periodSeconds": 5},
            {"name": "b", "port": 81, "targetPort": 81, "hosts": hosts, "tcpSocket": {"enable": true}, "failureThreshold": 1, "periodSeconds": 5},
        ]),
    );
    must_apply(&client, &ns, GROUP, &yaml).await;
    let cep = eventually("every host to be reported unhealthy", || async {
        let c = get_cep(&client, &ns, GROUP, "outage").await?;
        let s = c.status.clone()?;
        (s.observed_generation == c.metadata.generation
            && s.ready.as_deref() == Some("0/2000")
            && s.phase == Some(Phase::UnHealthy))
        .then_some(c)
    })
    .await;
    for port in &cep.status.expect("status").ports {
        assert_eq!(port.unhealthy.len(), 50, "{}", port.name);
        assert_eq!(port.unhealthy_omitted, Some(950), "{}", port.name);
    }
    let ep = endpoints(&client, &ns, "outage").await.expect("Endpoints");
    let count: usize = ep
        .subsets
        .iter()
        .flatten()
        .map(|s| s.not_ready_addresses.as_ref().map_or(0, Vec::len))
        .sum();
    assert_eq!(count, 1000, "truncated as Kubernetes does");
    assert_eq!(
        ep.annotations()
            .get("endpoints.kubernetes.io/over-capacity")
            .map(String::as_str),
        Some("truncated")
    );
}

/// Item 6: one host added to a 250-host port once shifted every host
/// after it, rewriting all three slices.
#[tokio::test(flavor = "multi_thread")]
async fn adding_one_host_to_250_changes_exactly_one_slice() {
    let (client, ns) = setup("c-placement").await;
    let _controller = start_controller(&ns, &[]).await;
    let mut hosts = unreachable_hosts(251);
    let first = hosts.remove(0); // 198.19.250.1 sorts before the others
    apply_unprobed(&client, &ns, "big", ("a", 80), &hosts).await;
    wait_all_ready(&client, &ns, "big", 250).await;
    let versions = || async {
        slices(&client, &ns, "big")
            .await
            .iter()
            .map(|s| (s.name_any(), s.resource_version().unwrap_or_default()))
            .collect::<BTreeMap<_, _>>()
    };
    let before = versions().await;
    assert_eq!(before.len(), 3);
    hosts.push(first);
    apply_unprobed(&client, &ns, "big", ("a", 80), &hosts).await;
    wait_all_ready(&client, &ns, "big", 251).await;
    let after = versions().await;
    let changed: BTreeSet<&String> = after
        .iter()
        .filter(|(name, rv)| before.get(*name) != Some(*rv))
        .map(|(name, _)| name)
        .collect();
    assert_eq!(changed.len(), 1, "changed: {changed:?}");
    assert_eq!(after.len(), 3, "no slice was added or removed");
}

/// Item 7: the reconcile debounce restarted on every request, so an
/// object whose requests never paused was never reconciled.
#[tokio::test(flavor = "multi_thread")]
async fn an_object_with_a_steady_stream_of_requests_is_still_reconciled() {
    let (client, ns) = setup("c-starve").await;
    let _controller = start_controller(&ns, &[]).await;
    let (h1, mut b1) = host_with_backend().await;
    let ip = h1.ipv4().to_string();
    must_apply(&client, &ns, GROUP, &cep("busy", json!([{"name": "tcp", "port": 443, "targetPort": 443, "hosts": [ip],
                                                          "tcpSocket": {"enable": true}, "failureThreshold": 1}]))).await;
    wait_all_ready(&client, &ns, "busy", 1).await;
    // Touch the object's Service every 50 ms (without waiting for the
    // answers, so that the changes never pause): each change asks for a
    // reconcile of its owner.
    let poker = {
        let services: Api<Service> = Api::namespaced(client.clone(), &ns);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            for i in 0u64.. {
                tick.tick().await;
                let services = services.clone();
                tokio::spawn(async move {
                    let patch = json!({"metadata": {"annotations": {"e2e/poke": i.to_string()}}});
                    let _ = services
                        .patch("busy", &PatchParams::default(), &Patch::Merge(&patch))
                        .await;
                });
            }
        })
    };
    b1.stop().await.expect("backend stops");
    eventually(
        "the stopped host to leave rotation while the Service is busy",
        || async {
            let r = slice_readiness(&client, &ns, "busy").await;
            (r.len() == 1 && r.values().all(|ready| !ready)).then_some(())
        },
    )
    .await;
    poker.abort();
}

/// Item 8: IPv6 hosts once got an IPv4 ClusterIP (the cluster's default),
/// through which kube-proxy sends them nothing.
#[tokio::test(flavor = "multi_thread")]
async fn an_ipv6_only_object_gets_an_ipv6_service_and_headless_slices_are_marked() {
    let (client, ns) = setup("c-ipv6").await;
    let _controller = start_controller(&ns, &[]).await;
    let (h1, _b1) = host_with_backend().await;
    must_apply(&client, &ns, GROUP, &cep("v6", json!([{"name": "http", "port": 80, "targetPort": 80,
                                                        "hosts": [h1.ipv6().to_string()], "httpGet": {"path": "/healthz"}}]))).await;
    wait_phase(&client, &ns, GROUP, "v6", Phase::Healthy).await;
    let spec = service(&client, &ns, "v6")
        .await
        .and_then(|s| s.spec)
        .expect("Service");
    assert_eq!(spec.ip_families, Some(vec!["IPv6".to_string()]));
    let ip: std::net::IpAddr = spec
        .cluster_ip
        .as_deref()
        .expect("clusterIP")
        .parse()
        .expect("an address");
    assert!(ip.is_ipv6(), "{ip}");
    // Both families: a dual-stack Service with a ClusterIP of each.
    must_apply(&client, &ns, GROUP, &cep("both", json!([{"name": "http", "port": 80, "targetPort": 80,
                                                          "hosts": [h1.ipv4().to_string(), h1.ipv6().to_string()], "httpGet": {"path": "/healthz"}}]))).await;
    wait_phase(&client, &ns, GROUP, "both", Phase::Healthy).await;
    let spec = service(&client, &ns, "both")
        .await
        .and_then(|s| s.spec)
        .expect("Service");
    assert_eq!(spec.ip_family_policy.as_deref(), Some("PreferDualStack"));
    assert_eq!(spec.cluster_ips.map(|ips| ips.len()), Some(2));
    // Headless: the slices say so, as Kubernetes' own do.
    let headless = json!({
        "apiVersion": format!("{GROUP}/v1beta1"), "kind": "ClusterEndpoint", "metadata": {"name": "hl"},
        "spec": {"clusterIP": "None", "ports": [{"name": "http", "port": 80, "targetPort": 80, "hosts": unreachable_hosts(1)}]},
    });
    must_apply(&client, &ns, GROUP, &headless.to_string()).await;
    wait_all_ready(&client, &ns, "hl", 1).await;
    for s in slices(&client, &ns, "hl").await {
        assert_eq!(
            s.labels()
                .get("service.kubernetes.io/headless")
                .map(String::as_str),
            Some("")
        );
    }
    // Changing the only family is refused, saying why.
    must_apply(&client, &ns, GROUP, &cep("v6", json!([{"name": "http", "port": 80, "targetPort": 80,
                                                        "hosts": [h1.ipv4().to_string()], "httpGet": {"path": "/healthz"}}]))).await;
    let (reason, message) = wait_condition_false(&client, &ns, "v6", "SyncServiceReady").await;
    assert_eq!(reason, "IPFamilyConflict");
    assert!(message.contains("immutable"), "{message}");
}
