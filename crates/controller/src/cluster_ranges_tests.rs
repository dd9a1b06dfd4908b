use std::net::IpAddr;

use super::*;

fn all() -> DiscoverySettings {
    DiscoverySettings {
        sources: [
            RangeSource::Services,
            RangeSource::Pods,
            RangeSource::Nodes,
            RangeSource::Apiserver,
        ]
        .into(),
        service_cidrs: vec!["198.19.251.0/24".parse().unwrap()],
    }
}

fn from_json<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).expect("test object")
}

fn kind_of(ranges: &ClusterRanges, host: &str) -> Option<RangeKind> {
    let ip: IpAddr = host.parse().unwrap();
    ranges.lookup(ip).map(|(_, k)| k.clone())
}

#[test]
fn ranges_come_from_service_cidrs_nodes_and_the_apiserver_endpoints() {
    let service_cidr: ServiceCIDR = from_json(serde_json::json!({
        "metadata": {"name": "kubernetes"},
        "spec": {"cidrs": ["198.19.250.0/24", "fd00:6b65:ffff::/112"]}
    }));
    let node: Node = from_json(serde_json::json!({
        "metadata": {"name": "n1"},
        "spec": {"podCIDR": "198.19.64.0/24", "podCIDRs": ["198.19.64.0/24", "fd00:6b65:fffe::/80"]},
        "status": {"addresses": [
            {"type": "InternalIP", "address": "198.19.65.10"},
            {"type": "InternalIP", "address": "fd00:6b65:fffd::10"},
            {"type": "Hostname", "address": "n1.example"}
        ]}
    }));
    let endpoints: Endpoints = from_json(serde_json::json!({
        "metadata": {"name": "kubernetes", "namespace": "default"},
        "subsets": [{"addresses": [{"ip": "198.19.66.1"}], "ports": [{"port": 6443}]}]
    }));
    let slice: EndpointSlice = from_json(serde_json::json!({
        "metadata": {"name": "kubernetes", "namespace": "default"},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["198.19.66.2"]}]
    }));
    let sources = Sources {
        service_cidrs: vec![&service_cidr],
        nodes: vec![&node],
        apiserver_endpoints: Some(&endpoints),
        apiserver_slices: vec![&slice],
    };
    let r = ranges(&all(), &sources);
    assert_eq!(kind_of(&r, "198.19.250.9"), Some(RangeKind::Service));
    assert_eq!(
        kind_of(&r, "198.19.251.9"),
        Some(RangeKind::Service),
        "the flag"
    );
    assert_eq!(kind_of(&r, "fd00:6b65:ffff::9"), Some(RangeKind::Service));
    let pod = Some(RangeKind::PodRange { node: "n1".into() });
    assert_eq!(kind_of(&r, "198.19.64.9"), pod);
    assert_eq!(kind_of(&r, "fd00:6b65:fffe::9"), pod);
    let node_address = Some(RangeKind::NodeAddress { node: "n1".into() });
    assert_eq!(kind_of(&r, "198.19.65.10"), node_address);
    assert_eq!(kind_of(&r, "fd00:6b65:fffd::10"), node_address);
    assert_eq!(kind_of(&r, "198.19.65.11"), None);
    assert_eq!(kind_of(&r, "198.19.66.1"), Some(RangeKind::Apiserver));
    assert_eq!(kind_of(&r, "198.19.66.2"), Some(RangeKind::Apiserver));

    // Each source can be switched off.
    let only_pods = DiscoverySettings {
        sources: [RangeSource::Pods].into(),
        ..all()
    };
    let r = ranges(&only_pods, &sources);
    assert_eq!(kind_of(&r, "198.19.64.9"), pod);
    for other in [
        "198.19.250.9",
        "198.19.251.9",
        "198.19.65.10",
        "198.19.66.1",
    ] {
        assert_eq!(kind_of(&r, other), None, "{other}");
    }
    let none = DiscoverySettings {
        sources: [RangeSource::None, RangeSource::Pods].into(),
        ..all()
    };
    assert!(ranges(&none, &sources).is_empty());
}

#[test]
fn nodes_are_cached_with_their_ranges_only() {
    let mut node: Node = from_json(serde_json::json!({
        "metadata": {"name": "n1", "resourceVersion": "7", "labels": {"a": "b"}},
        "spec": {"podCIDRs": ["198.19.64.0/24"], "providerID": "x"},
        "status": {"addresses": [{"type": "InternalIP", "address": "198.19.65.10"}],
                   "images": [{"names": ["a-very-large-image"], "sizeBytes": 1}]}
    }));
    keep_ranges_only(&mut node);
    assert_eq!(
        serde_json::to_value(&node).unwrap(),
        serde_json::json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": "n1", "resourceVersion": "7"},
            "spec": {"podCIDRs": ["198.19.64.0/24"]},
            "status": {"addresses": [{"type": "InternalIP", "address": "198.19.65.10"}]}
        })
    );
}

#[test]
fn single_addresses_parse_as_host_ranges() {
    assert_eq!(
        parse_net("198.19.1.1"),
        Some("198.19.1.1/32".parse().unwrap())
    );
    assert_eq!(parse_net("fd00::1"), Some("fd00::1/128".parse().unwrap()));
    assert_eq!(
        parse_net(" 10.0.0.0/8 "),
        Some("10.0.0.0/8".parse().unwrap())
    );
    assert_eq!(parse_net("n1.example"), None);
}
