use super::*;
use serde_json::Value;

fn schema_of(group: &str) -> Value {
    let crd = crd_for_group(group);
    let version = crd.spec.versions.first().expect("one version").clone();
    serde_json::to_value(
        version
            .schema
            .expect("schema")
            .open_api_v3_schema
            .expect("openAPIV3Schema"),
    )
    .expect("schema serialises")
}

fn rules(v: &Value) -> Vec<String> {
    v.get("x-kubernetes-validations")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|r| r["rule"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn crd_is_named_for_each_group() {
    for group in [GROUP, SEALOS_GROUP, SEALYUN_GROUP] {
        let crd = crd_for_group(group);
        assert_eq!(
            crd.metadata.name.as_deref(),
            Some(format!("clusterendpoints.{group}").as_str())
        );
        assert_eq!(crd.spec.group, group);
        assert_eq!(
            crd.spec.names.short_names.as_deref(),
            Some(&["cep".to_string()][..])
        );
        assert_eq!(crd.spec.scope, "Namespaced");
        let v = &crd.spec.versions[0];
        assert_eq!(
            (v.name.as_str(), v.served, v.storage),
            (VERSION, true, true)
        );
        assert!(
            v.subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some()
        );
    }
}

#[test]
fn printer_columns_are_name_ready_status_age() {
    let crd = crd_for_group(GROUP);
    let cols: Vec<(String, String)> = crd.spec.versions[0]
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| (c.name.clone(), c.json_path.clone()))
        .collect();
    assert_eq!(
        cols,
        [
            ("Ready".to_string(), ".status.ready".to_string()),
            ("Status".to_string(), ".status.phase".to_string()),
            ("Age".to_string(), ".metadata.creationTimestamp".to_string()),
        ]
    );
}

#[test]
fn schema_carries_defaults_bounds_and_cel_rules() {
    let root = schema_of(GROUP);
    assert!(
        rules(&root)
            .iter()
            .any(|r| r.contains("self.metadata.name"))
    );
    let spec = &root["properties"]["spec"];
    assert_eq!(spec["properties"]["periodSeconds"]["default"], 10);
    assert_eq!(spec["properties"]["periodSeconds"]["minimum"], 1.0);
    let spec_rules = rules(spec);
    assert_eq!(spec_rules.len(), 4, "{spec_rules:?}");
    assert!(spec_rules.iter().any(|r| r.contains("oldSelf.clusterIP")));
    assert!(
        spec_rules
            .iter()
            .any(|r| r.contains("publishNotReadyAddresses"))
    );
    // No rule can read `hosts` (its items have no CEL type): the apiserver
    // would refuse the CRD.
    assert!(!spec_rules.iter().any(|r| r.contains("hosts")));
    let ports = &spec["properties"]["ports"];
    assert_eq!(ports["x-kubernetes-list-type"], "map");
    assert_eq!(
        ports["x-kubernetes-list-map-keys"],
        serde_json::json!(["name"])
    );
    assert_eq!(
        (ports["minItems"].as_u64(), ports["maxItems"].as_u64()),
        (Some(1), Some(100))
    );
    let port = &ports["items"];
    let port_rules = rules(port);
    // 3 + the probe options' (probePort needs a probe, not with
    // additionalTargetPorts; timeout within the unhealthy period).
    assert_eq!(port_rules.len(), 6, "{port_rules:?}");
    assert!(port_rules.iter().any(|r| r.contains("tcpSocket")));
    // timeout <= the port's period (a budget).
    assert!(
        port_rules
            .iter()
            .any(|r| r.contains("self.timeoutSeconds <="))
    );
    assert!(
        port_rules
            .iter()
            .any(|r| r.contains("additionalTargetPorts"))
    );
    let extra = &port["properties"]["additionalTargetPorts"];
    assert_eq!(extra["x-kubernetes-list-type"], "set");
    assert_eq!(
        (
            extra["items"]["minimum"].as_f64(),
            extra["items"]["maximum"].as_f64()
        ),
        (Some(1.0), Some(65535.0))
    );
    for (field, default) in [
        ("timeoutSeconds", 1),
        ("failureThreshold", 3),
        ("successThreshold", 1),
    ] {
        assert_eq!(port["properties"][field]["default"], default, "{field}");
        assert_eq!(port["properties"][field]["minimum"], 1.0, "{field}");
    }
    assert_eq!(port["properties"]["protocol"]["default"], "TCP");
    assert_eq!(port["properties"]["targetPort"]["maximum"], 65535.0);
    for hosts in [&port["properties"]["hosts"], &spec["properties"]["hosts"]] {
        assert_eq!(hosts["maxItems"], 1000);
        let item = &hosts["items"];
        assert_eq!(item["x-kubernetes-preserve-unknown-fields"], true);
        assert!(item.get("type").is_none(), "a string or an object");
        assert!(rules(item).is_empty(), "no CEL on an untyped item");
        assert_eq!(item["pattern"], HOST_PATTERN);
        assert_eq!(item["required"], serde_json::json!(["address"]));
        assert_eq!(item["properties"]["address"]["pattern"], HOST_PATTERN);
        assert_eq!(item["properties"]["priority"]["maximum"], 100.0);
        assert_eq!(item["properties"]["drain"]["type"], "boolean");
    }
    assert_eq!(port["properties"]["minReady"]["minimum"], 1.0);
}

/// The admission pattern of a host string: what it lets through and what
/// it refuses (the controller parses exactly; this only has to catch the
/// usual mistakes and never refuse a valid endpoint address or DNS name).
#[test]
fn the_host_pattern_accepts_unicast_literals_and_names_and_refuses_the_rest() {
    let pattern = regex::Regex::new(HOST_PATTERN).expect("compiles");
    for good in [
        "10.33.40.151",
        "198.18.0.2",
        "1.2.3.4",
        "126.255.255.255",
        "128.0.0.1",
        "169.253.1.1",
        "169.255.0.1",
        "223.255.255.254",
        "fd00::1",
        "2001:db8::1",
        "fe7f::1",
        "fec0::1",
        "fe8::1",
        "::2",
        "::ffff:198.18.0.1",
        "1::",
        "FD00:6B65::1",
        "db.example.com",
        "db",
        "db-1.x9",
        "a1.b2.example",
    ] {
        assert!(pattern.is_match(good), "{good} refused");
    }
    for bad in [
        "127.0.0.1",
        "0.0.0.0",
        "0.1.2.3",
        "169.254.1.1",
        "224.0.0.1",
        "255.255.255.255",
        "256.1.1.1",
        "1.2.3",
        "127.1",
        "0x7f.1",
        "db.1",
        "x@db",
        "DB.example.com",
        "db..example",
        "-db.example",
        "db.example.",
        "::1",
        "::",
        "fe80::1",
        "febf::1",
        "ff02::1",
        "10.0.0.1 ",
        "",
    ] {
        assert!(!pattern.is_match(bad), "{bad} accepted");
    }
}

#[test]
fn a_host_is_a_string_or_an_object() {
    let port: ClusterEndpointPort = serde_json::from_value(serde_json::json!({
        "name": "a", "port": 80, "targetPort": 80,
        "hosts": ["198.18.0.1", {"address": "198.18.0.2", "zone": "z1", "drain": true, "priority": 2, "hostname": "db-1"}],
    }))
    .expect("parses");
    assert_eq!(port.hosts[0], HostEntry::Address("198.18.0.1".into()));
    assert_eq!(
        port.hosts[1],
        HostEntry::Detailed(HostDetails {
            address: "198.18.0.2".into(),
            zone: Some("z1".into()),
            drain: true,
            priority: Some(2),
            hostname: Some("db-1".into()),
        })
    );
    // Written back as read: the string stays a string.
    let back = serde_json::to_value(&port.hosts).expect("serialises");
    assert_eq!(back[0], "198.18.0.1");
    assert_eq!(back[1]["zone"], "z1");
    assert_eq!(back[1]["drain"], true);
    // Errors keep the path into the object.
    for (host, path) in [
        (
            serde_json::json!({"address": "198.18.0.2", "zone": 3}),
            "hosts[0].zone",
        ),
        (
            serde_json::json!({"address": "198.18.0.2", "zones": "a"}),
            "hosts[0].zones",
        ),
        (serde_json::json!({"zone": "a"}), "hosts[0]"),
        (serde_json::json!(7), "hosts[0]"),
    ] {
        let value = serde_json::json!({"name": "a", "port": 80, "targetPort": 80, "hosts": [host]});
        let err = serde_path_to_error::deserialize::<_, ClusterEndpointPort>(&value)
            .expect_err("refused");
        assert_eq!(err.path().to_string(), path, "{err}");
    }
}

#[test]
fn seed_manifests_deserialise_with_defaults() {
    let cep: ClusterEndpoint = serde_json::from_value(serde_json::json!({
        "apiVersion": "khulnasoft-lab.github.io/v1beta1", "kind": "ClusterEndpoint", "metadata": {"name": "wp"},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 80, "hosts": ["198.18.0.2"], "tcpSocket": {"enable": true}}]}
    }))
    .expect("parses");
    assert_eq!(cep.spec.period_seconds, DEFAULT_PERIOD_SECONDS);
    let p = &cep.spec.ports[0];
    assert_eq!(
        (p.timeout_seconds, p.failure_threshold, p.success_threshold),
        (1, 3, 1)
    );
    assert_eq!(p.protocol, "TCP");
    assert_eq!(
        p.tcp_socket,
        Some(TcpSocketHandler {
            enable: true,
            ..TcpSocketHandler::default()
        })
    );
}

/// The probe options' schema: bounds, formats and the rules that keep the
/// CEL cost small (an int-or-string without `maxLength` is refused by the
/// apiserver).
#[test]
fn probe_options_carry_bounds_and_rules() {
    let root = schema_of(GROUP);
    let port = &root["properties"]["spec"]["properties"]["ports"]["items"];
    let props = &port["properties"];
    for (field, min, max) in [
        ("probePort", 1.0, 65535.0),
        ("unhealthyPeriodSeconds", 1.0, 3600.0),
        ("jitterPercent", 0.0, 100.0),
        ("edgePeriodSeconds", 0.0, 3600.0),
    ] {
        assert_eq!(
            (
                props[field]["minimum"].as_f64(),
                props[field]["maximum"].as_f64()
            ),
            (Some(min), Some(max)),
            "{field}"
        );
        assert!(props[field].get("default").is_none(), "{field}: no default");
    }
    let http = &props["httpGet"];
    assert_eq!(
        http["properties"]["method"]["enum"],
        serde_json::json!(["GET", "HEAD", "POST", "OPTIONS"])
    );
    assert_eq!(http["properties"]["body"]["maxLength"], 4096);
    let statuses = &http["properties"]["expectedStatuses"];
    assert_eq!(statuses["maxItems"], 16);
    assert_eq!(statuses["items"]["x-kubernetes-int-or-string"], true);
    assert_eq!(statuses["items"]["maxLength"], 7);
    assert_eq!(rules(http).len(), 3);
    let tcp = &props["tcpSocket"];
    let send = &tcp["properties"]["send"];
    assert_eq!(send["properties"]["base64"]["format"], "byte");
    assert_eq!(rules(send), ["has(self.text) != has(self.base64)"]);
    let expect = &tcp["properties"]["expect"];
    assert_eq!(expect["properties"]["regex"]["maxLength"], 1024);
    assert_eq!(rules(expect).len(), 1);
    assert_eq!(rules(tcp).len(), 2);
    assert_eq!(rules(&props["udpSocket"]).len(), 2);
}
