use super::*;
use kube_endpoints_api::GROUP;

/// Hand-made Ceph RGW objects (addresses in the benchmarking range): one
/// unnamed Service port 80, and twelve subsets that put each of six hosts on
/// 8080 and on 8081.
pub(crate) fn rgw() -> (Service, Endpoints) {
    let service: Service = serde_saphyr::from_str(
        "apiVersion: v1\nkind: Service\nmetadata: {name: ocs-external-rgw-lb, namespace: storage}\nspec:\n  ports:\n  - {protocol: TCP, port: 80, targetPort: 80}\n",
    )
    .expect("service");
    let mut subsets = Vec::new();
    for host in 50..56 {
        for port in [8080, 8081] {
            subsets.push(json!({"addresses": [{"ip": format!("198.18.7.{host}")}], "ports": [{"port": port}]}));
        }
    }
    let endpoints: Endpoints = serde_json::from_value(json!({
        "metadata": {"name": "ocs-external-rgw-lb", "namespace": "storage"},
        "subsets": subsets,
    }))
    .expect("endpoints");
    (service, endpoints)
}

fn options(probe: ProbeChoice) -> ImportOptions {
    ImportOptions {
        group: GROUP.to_string(),
        probe,
        http_path: "/healthz".into(),
        period_seconds: 10,
    }
}

fn spec_of(imported: &Imported) -> ClusterEndpointSpec {
    serde_json::from_value(imported.object["spec"].clone()).expect("spec deserialises")
}

#[test]
fn rgw_becomes_one_port_with_both_target_ports_and_six_hosts() {
    let (service, endpoints) = rgw();
    let imported = import(&service, Some(&endpoints), &options(ProbeChoice::Tcp)).expect("imports");
    assert_eq!(imported.object["apiVersion"], format!("{GROUP}/v1beta1"));
    assert_eq!(imported.object["metadata"]["name"], "ocs-external-rgw-lb");
    assert_eq!(imported.object["metadata"]["namespace"], "storage");
    let spec = spec_of(&imported);
    assert_eq!(spec.ports.len(), 1);
    let port = &spec.ports[0];
    assert_eq!(port.name, "tcp-80");
    assert_eq!((port.port, port.target_port), (80, 8080));
    assert_eq!(port.additional_target_ports, vec![8081]);
    let expected: Vec<String> = (50..56).map(|h| format!("198.18.7.{h}")).collect();
    assert_eq!(port.hosts, expected);
    assert_eq!(
        port.tcp_socket,
        Some(TcpSocketHandler {
            enable: true,
            ..TcpSocketHandler::default()
        })
    );
    assert_eq!(spec.cluster_ip, None);
    // The unnamed port is named, and the note says so.
    assert_eq!(imported.notes.len(), 1, "{:?}", imported.notes);
    assert!(imported.notes[0].contains("tcp-80"));
    // Planned: twelve probed targets, six per target port.
    let plan = plan("ocs-external-rgw-lb", &spec).expect("valid");
    assert_eq!(plan.targets().len(), 12);
}

#[test]
fn the_printed_yaml_reads_back_as_the_same_object() {
    let (service, endpoints) = rgw();
    let imported =
        import(&service, Some(&endpoints), &options(ProbeChoice::Http)).expect("imports");
    let yaml = to_yaml(&imported).expect("yaml");
    assert!(yaml.starts_with("# note: "));
    let back = crate::yaml::documents(&yaml).expect("parses");
    assert_eq!(back, std::slice::from_ref(&imported.object));
    let port = &spec_of(&imported).ports[0];
    assert_eq!(
        port.http_get.as_ref().and_then(|h| h.path.as_deref()),
        Some("/healthz")
    );
}

#[test]
fn named_ports_match_endpoints_ports_by_name_and_protocol() {
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": "db"},
        "spec": {"clusterIP": "None", "ports": [
            {"name": "pg", "port": 5432, "protocol": "TCP"},
            {"name": "dns", "port": 53, "protocol": "UDP"}
        ]}
    }))
    .expect("service");
    let endpoints: Endpoints = serde_json::from_value(json!({
        "metadata": {"name": "db"},
        "subsets": [
            {"addresses": [{"ip": "198.18.0.2"}], "notReadyAddresses": [{"ip": "fd00::2"}],
             "ports": [{"name": "pg", "port": 5433}, {"name": "dns", "port": 5353, "protocol": "UDP"}]}
        ]
    }))
    .expect("endpoints");
    let imported =
        import(&service, Some(&endpoints), &options(ProbeChoice::None)).expect("imports");
    let spec = spec_of(&imported);
    assert_eq!(spec.cluster_ip.as_deref(), Some("None"), "headless is kept");
    let summary: Vec<(String, String, i32, i32, Vec<String>)> = spec
        .ports
        .iter()
        .map(|p| {
            (
                p.name.clone(),
                p.protocol.clone(),
                p.port,
                p.target_port,
                p.hosts.iter().map(|h| h.address().to_string()).collect(),
            )
        })
        .collect();
    let hosts = vec!["198.18.0.2".to_string(), "fd00::2".to_string()];
    assert_eq!(
        summary,
        vec![
            ("pg".into(), "TCP".into(), 5432, 5433, hosts.clone()),
            ("dns".into(), "UDP".into(), 53, 5353, hosts),
        ]
    );
    assert!(
        spec.ports
            .iter()
            .all(|p| p.tcp_socket.is_none() && p.http_get.is_none())
    );
    assert!(imported.notes.is_empty());
}

#[test]
fn refusals_say_why() {
    let (mut service, endpoints) = rgw();
    let spec = service.spec.as_mut().expect("spec");
    spec.selector = Some(BTreeMap::from([("app".into(), "rgw".into())]));
    assert_eq!(
        import(&service, Some(&endpoints), &options(ProbeChoice::Tcp)).map(|_| ()),
        Err(ImportError::HasSelector("ocs-external-rgw-lb".into()))
    );

    let (service, _) = rgw();
    let err = import(&service, None, &options(ProbeChoice::Tcp)).expect_err("no endpoints");
    assert!(err.to_string().contains("no Endpoints port"), "{err}");

    let (service, mut endpoints) = rgw();
    if let Some(subsets) = endpoints.subsets.as_mut() {
        subsets[0].addresses = Some(vec![k8s_openapi::api::core::v1::EndpointAddress {
            ip: "127.0.0.1".into(),
            ..Default::default()
        }]);
    }
    let err = import(&service, Some(&endpoints), &options(ProbeChoice::Tcp)).expect_err("loopback");
    assert!(err.to_string().contains("127.0.0.1"), "{err}");

    let node_port: Service = serde_json::from_value(json!({
        "metadata": {"name": "np"}, "spec": {"type": "NodePort", "ports": [{"port": 80}]}
    }))
    .expect("service");
    let err = import(&node_port, None, &options(ProbeChoice::Tcp)).expect_err("type");
    assert!(err.to_string().contains("NodePort"), "{err}");
}

#[test]
fn hosts_missing_on_some_target_ports_are_noted() {
    let (service, mut endpoints) = rgw();
    if let Some(subsets) = endpoints.subsets.as_mut() {
        subsets.pop(); // 198.18.7.55 no longer on 8081
    }
    let imported = import(&service, Some(&endpoints), &options(ProbeChoice::Tcp)).expect("imports");
    assert!(
        imported.notes.iter().any(|n| n.contains("not every host")),
        "{:?}",
        imported.notes
    );
    assert_eq!(spec_of(&imported).ports[0].hosts.len(), 6);
}
