//! `kube-endpoints import` end to end: hand-made objects in the cluster
//! become a ClusterEndpoint that, applied, adopts them in place. Needs root
//! (the hosts are network-namespace test hosts).

mod support;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use kube_endpoints_api::{GROUP, Phase};
use kube_endpoints_testkit::netns::{BackendPorts, TestHost};
use support::*;

/// A hand-made Ceph RGW Service + Endpoints (one unnamed port; each test
/// host serving 8080 and 8081) go through `kube-endpoints import`; the
/// printed ClusterEndpoint, applied, adopts the same Service.
#[tokio::test(flavor = "multi_thread")]
async fn import_round_trips_a_hand_made_service_keeping_the_cluster_ip() {
    let client = client().await;
    install_crd(&client, GROUP).await;
    let ns = namespace(&client, "e2e-import").await;
    let ports = BackendPorts {
        tcp: vec![8080, 8081],
        http: vec![],
        udp: vec![],
        grpc: vec![],
        redis: vec![],
    };
    let h1 = TestHost::create().await.expect("host");
    let h2 = TestHost::create().await.expect("host");
    let _b1 = h1.start_backend(ports.clone()).await.expect("backend");
    let _b2 = h2.start_backend(ports).await.expect("backend");
    let ips = [h1.ipv4().to_string(), h2.ipv4().to_string()];
    let handmade_service: Service = yaml_object(
        "metadata: {name: ocs-external-rgw-lb}\nspec:\n  ports:\n  - {protocol: TCP, port: 80, targetPort: 80}\n",
    );
    let created = Api::<Service>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &handmade_service)
        .await
        .expect("hand-made Service");
    let cluster_ip = created.spec.and_then(|s| s.cluster_ip).expect("clusterIP");
    let subsets: Vec<serde_json::Value> = ips
        .iter()
        .flat_map(|ip| {
            [8080, 8081].map(
                |port| serde_json::json!({"addresses": [{"ip": ip}], "ports": [{"port": port}]}),
            )
        })
        .collect();
    let handmade: Endpoints = serde_json::from_value(
        serde_json::json!({"metadata": {"name": "ocs-external-rgw-lb"}, "subsets": subsets}),
    )
    .expect("endpoints");
    Api::<Endpoints>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &handmade)
        .await
        .expect("hand-made Endpoints");

    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_kube-endpoints"))
        .args([
            "import",
            "ocs-external-rgw-lb",
            "-n",
            &ns,
            "--period-seconds",
            "1",
        ])
        .arg("--kubeconfig")
        .arg(control_plane().kubeconfig_path())
        .output()
        .await
        .expect("import runs");
    let yaml = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "import failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(yaml.contains("additionalTargetPorts"), "{yaml}");

    let _controller = start_controller(&ns, &[]).await;
    must_apply(&client, &ns, GROUP, &yaml).await;
    let cep = wait_phase(&client, &ns, GROUP, "ocs-external-rgw-lb", Phase::Healthy).await;
    assert_eq!(
        cep.status.as_ref().and_then(|s| s.ready.as_deref()),
        Some("4/4")
    );
    let svc = eventually("the Service to be adopted", || async {
        let svc = service(&client, &ns, "ocs-external-rgw-lb").await?;
        let owned = svc
            .owner_references()
            .iter()
            .any(|r| Some(&r.uid) == cep.uid().as_ref());
        owned.then_some(svc)
    })
    .await;
    let spec = svc.spec.expect("spec");
    assert_eq!(spec.cluster_ip, Some(cluster_ip), "clusterIP kept");
    let ports: Vec<(Option<String>, i32)> = spec
        .ports
        .unwrap_or_default()
        .into_iter()
        .map(|p| (p.name, p.port))
        .collect();
    assert_eq!(ports, [(Some("tcp-80".to_string()), 80)]);
    // One slice per target port, both under the Service port "tcp-80".
    let summary: Vec<(Option<String>, Option<i32>, usize, bool)> =
        slices(&client, &ns, "ocs-external-rgw-lb")
            .await
            .iter()
            .map(|s| {
                let port = s
                    .ports
                    .as_ref()
                    .and_then(|p| p.first())
                    .cloned()
                    .unwrap_or_default();
                let ready = s
                    .endpoints
                    .iter()
                    .all(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true));
                (port.name, port.port, s.endpoints.len(), ready)
            })
            .collect();
    let mut summary = summary;
    summary.sort();
    assert_eq!(
        summary,
        [
            (Some("tcp-80".to_string()), Some(8080), 2, true),
            (Some("tcp-80".to_string()), Some(8081), 2, true)
        ]
    );
    let addresses = endpoints_addresses(&client, &ns, "ocs-external-rgw-lb").await;
    let mut sorted = ips.to_vec();
    sorted.sort();
    assert_eq!(addresses.get("tcp-80"), Some(&(sorted, vec![])));
}
