use std::collections::BTreeMap;

use kube::ResourceExt;

use super::*;
use crate::plan::plan;
use crate::testing::*;
use kube_endpoints_api::{CONDITION_READY, ClusterEndpointSpec, Phase};

const ID: &str = CONTROLLER_ID;

fn ready_map(slice: &EndpointSlice) -> Vec<(String, bool, bool)> {
    slice
        .endpoints
        .iter()
        .map(|e| {
            let c = e.conditions.clone().unwrap_or_default();
            (
                e.addresses[0].clone(),
                c.ready == Some(true),
                c.serving == Some(true),
            )
        })
        .collect()
}

#[test]
fn the_service_has_four_ports_and_no_selector() {
    let plan = wordpress_plan();
    let svc = service(&owner(), &plan);
    let spec = svc.spec.clone().expect("spec");
    assert_eq!(spec.selector, None);
    assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
    assert_eq!(
        spec.cluster_ip, None,
        "clusterIP left to the apiserver (or kept on adoption)"
    );
    let ports: Vec<(String, i32, String, IntOrString)> = spec
        .ports
        .expect("ports")
        .into_iter()
        .map(|p| {
            (
                p.name.unwrap_or_default(),
                p.port,
                p.protocol.unwrap_or_default(),
                p.target_port.expect("target"),
            )
        })
        .collect();
    assert_eq!(
        ports,
        vec![
            (
                "wp-grpc".into(),
                38083,
                "TCP".into(),
                IntOrString::Int(8080)
            ),
            ("wp-http".into(), 38082, "TCP".into(), IntOrString::Int(80)),
            (
                "wp-https".into(),
                38081,
                "TCP".into(),
                IntOrString::Int(443)
            ),
            ("wp-udp".into(), 38003, "UDP".into(), IntOrString::Int(1234)),
        ]
    );
    let refs = svc.metadata.owner_references.expect("owner refs");
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0].uid, "uid-1");
    assert_eq!(refs[0].controller, Some(true));
}

#[test]
fn headless_when_cluster_ip_is_none() {
    let mut spec = wordpress();
    spec.cluster_ip = Some("None".into());
    let plan = plan("wordpress", &spec).expect("valid");
    let svc = service(&owner(), &plan);
    assert_eq!(svc.spec.and_then(|s| s.cluster_ip).as_deref(), Some("None"));
}

#[test]
fn slices_per_port_with_labels_and_readiness() {
    let plan = wordpress_plan();
    let health = all_ready_but(
        &plan,
        "wp-http",
        "10.33.40.152",
        down(5, "http GET /healthz: status 503"),
    );
    let slices = endpoint_slices(&owner(), &plan, &health, ID, &[]);
    let names: Vec<String> = slices
        .iter()
        .map(|s| s.metadata.name.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        names,
        [
            "wordpress.wp-grpc.ipv4.0",
            "wordpress.wp-http.ipv4.0",
            "wordpress.wp-https.ipv4.0",
            "wordpress.wp-udp.ipv4.0"
        ]
    );
    for s in &slices {
        let labels = s.metadata.labels.clone().expect("labels");
        assert_eq!(
            labels.get(LABEL_SERVICE_NAME).map(String::as_str),
            Some("wordpress")
        );
        assert_eq!(labels.get(LABEL_MANAGED_BY).map(String::as_str), Some(ID));
        assert_eq!(s.address_type, "IPv4");
        assert_eq!(s.metadata.owner_references.as_ref().map(Vec::len), Some(1));
    }
    let http = &slices[1];
    assert_eq!(
        ready_map(http),
        vec![
            ("10.33.40.151".into(), true, true),
            ("10.33.40.152".into(), false, false)
        ],
        "unhealthy hosts stay listed, not ready and not serving"
    );
    let port = &http.ports.as_ref().expect("ports")[0];
    assert_eq!(
        (port.name.as_deref(), port.port, port.protocol.as_deref()),
        (Some("wp-http"), Some(80), Some("TCP"))
    );
    let udp = &slices[3];
    assert_eq!(
        udp.ports.as_ref().expect("ports")[0].protocol.as_deref(),
        Some("UDP")
    );
}

#[test]
fn six_hosts_on_two_ports() {
    let plan = rgw_plan();
    let health = health_all(&plan, HealthState::Ready);
    let slices = endpoint_slices(&owner(), &plan, &health, ID, &[]);
    assert_eq!(slices.len(), 2);
    for s in &slices {
        assert_eq!(s.endpoints.len(), 6);
        assert!(ready_map(s).iter().all(|(_, ready, _)| *ready));
    }
    let ep = endpoints(&owner(), &plan, &health);
    let subsets = ep.subsets.expect("subsets");
    assert_eq!(subsets.len(), 2);
    for (subset, port) in subsets.iter().zip([8080, 8081]) {
        assert_eq!(subset.addresses.as_ref().map(Vec::len), Some(6));
        assert_eq!(subset.not_ready_addresses, None);
        assert_eq!(subset.ports.as_ref().expect("ports")[0].port, port);
    }
}

#[test]
fn ipv6_hosts_go_to_ipv6_slices() {
    let spec: ClusterEndpointSpec = serde_json::from_value(serde_json::json!({
        "ports": [{"name": "db", "port": 5432, "targetPort": 5432,
                   "hosts": ["198.18.0.2", "fd00:6b65::2", "198.18.0.3", "fd00:6b65::3"]}]
    }))
    .expect("spec");
    let plan = plan("db", &spec).expect("valid");
    let slices = endpoint_slices(&owner(), &plan, &BTreeMap::new(), ID, &[]);
    let summary: Vec<(String, String, usize)> = slices
        .iter()
        .map(|s| {
            (
                s.metadata.name.clone().unwrap_or_default(),
                s.address_type.clone(),
                s.endpoints.len(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("wordpress.db.ipv4.0".into(), "IPv4".into(), 2),
            ("wordpress.db.ipv6.0".into(), "IPv6".into(), 2)
        ]
    );
    assert_eq!(slices[1].endpoints[0].addresses, ["fd00:6b65::2"]);
    // Static port: everything ready without a probe.
    assert!(ready_map(&slices[1]).iter().all(|(_, r, _)| *r));
}

#[test]
fn more_than_100_hosts_split_into_slices_deterministically() {
    let hosts: Vec<String> = (0..250)
        .map(|i| format!("198.18.{}.{}", i / 200, i % 200 + 1))
        .collect();
    let spec: ClusterEndpointSpec = serde_json::from_value(serde_json::json!({
        "ports": [{"name": "web", "port": 80, "targetPort": 80, "hosts": hosts, "tcpSocket": {"enable": true}}]
    }))
    .expect("spec");
    let plan = plan("web", &spec).expect("valid");
    let health = health_all(&plan, HealthState::Ready);
    let slices = endpoint_slices(&owner(), &plan, &health, ID, &[]);
    let sizes: Vec<usize> = slices.iter().map(|s| s.endpoints.len()).collect();
    assert_eq!(sizes, [100, 100, 50]);
    let mut all: Vec<String> = slices
        .iter()
        .flat_map(|s| s.endpoints.iter().map(|e| e.addresses[0].clone()))
        .collect();
    assert_eq!(all.len(), 250);
    all.dedup();
    assert_eq!(all.len(), 250, "no host appears twice");
    // Same input, byte-equal output.
    let again = endpoint_slices(&owner(), &plan, &health, ID, &[]);
    assert_eq!(
        serde_json::to_string(&slices).ok(),
        serde_json::to_string(&again).ok()
    );
}

#[test]
fn all_unhealthy_lists_every_host_as_not_ready() {
    let plan = wordpress_plan();
    let health = health_all(&plan, HealthState::NotReady);
    let ep = endpoints(&owner(), &plan, &health);
    let labels = ep.metadata.labels.clone().expect("labels");
    assert_eq!(
        labels.get(LABEL_SKIP_MIRROR).map(String::as_str),
        Some("true")
    );
    for subset in ep.subsets.expect("subsets") {
        assert_eq!(subset.addresses, None);
        assert_eq!(subset.not_ready_addresses.map(|a| a.len()), Some(2));
    }
    let status = synced_status(3, &plan, &health, None, "2026-11-24T10:00:00Z");
    assert_eq!(status.phase, Some(Phase::UnHealthy));
    assert_eq!(status.ready.as_deref(), Some("0/8"));
    assert_eq!(status.observed_generation, Some(3));
    let ready = condition(&status, CONDITION_READY);
    assert_eq!(state(ready), ("False", "HostsUnhealthy"));
    for p in &status.ports {
        assert_eq!(p.unhealthy.len(), 2);
        assert!(
            p.unhealthy
                .iter()
                .all(|u| u.message.contains("connection refused"))
        );
    }
}

#[test]
fn slices_round_trip_into_a_seed() {
    let plan = wordpress_plan();
    let health = all_ready_but(&plan, "wp-grpc", "10.33.40.152", down(1, "x"));
    let bad = target("wp-grpc", "10.33.40.152");
    let slices = endpoint_slices(&owner(), &plan, &health, ID, &[]);
    let seed = seed_from_slices(&plan, &slices);
    assert_eq!(seed.len(), 8);
    assert_eq!(seed.get(&bad), Some(&false));
    assert_eq!(seed.values().filter(|r| **r).count(), 7);
    // Seeding the health from the slices reproduces the same slices.
    let reseeded: BTreeMap<TargetId, Health> = seed
        .into_iter()
        .map(|(id, ready)| {
            let state = if ready {
                HealthState::Ready
            } else {
                HealthState::NotReady
            };
            (
                id,
                Health {
                    state,
                    since: at(50),
                    message: String::new(),
                },
            )
        })
        .collect();
    assert_eq!(endpoint_slices(&owner(), &plan, &reseeded, ID, &[]), slices);
}

/// A Ceph RGW farm as `kube-endpoints import` makes it: one Service port
/// whose hosts listen on 8080 and on 8081.
#[test]
fn additional_target_ports_share_one_service_port() {
    let hosts: Vec<String> = (50..56).map(|i| format!("198.18.7.{i}")).collect();
    let spec: ClusterEndpointSpec = serde_json::from_value(serde_json::json!({
        "ports": [{"name": "rgw", "port": 80, "targetPort": 8080, "additionalTargetPorts": [8081],
                   "hosts": hosts, "tcpSocket": {"enable": true}}]
    }))
    .expect("spec deserialises");
    let plan = plan("ocs-external-rgw-lb", &spec).expect("valid");
    // name, Service port, target port, whether it defines the Service port
    let keys: Vec<String> = plan
        .ports
        .iter()
        .map(|p| {
            format!(
                "{} {} {} {}",
                p.name, p.service_port, p.target_port, p.primary
            )
        })
        .collect();
    assert_eq!(keys, ["rgw rgw 8080 true", "rgw-8081 rgw 8081 false"]);
    assert_eq!(plan.targets().len(), 12);

    let svc = service(&owner(), &plan);
    let ports = svc.spec.and_then(|s| s.ports).expect("ports");
    assert_eq!(ports.len(), 1, "one Service port");
    assert_eq!((ports[0].name.as_deref(), ports[0].port), (Some("rgw"), 80));

    let health = all_ready_but(
        &plan,
        "rgw-8081",
        "198.18.7.52",
        down(3, "tcp connect: connection refused"),
    );
    let down = target("rgw-8081", "198.18.7.52");
    let slices = endpoint_slices(&owner(), &plan, &health, ID, &[]);
    let summary: Vec<(String, Option<String>, Option<i32>, usize)> = slices
        .iter()
        .map(|s| {
            let p = &s.ports.as_ref().expect("ports")[0];
            (s.name_any(), p.name.clone(), p.port, s.endpoints.len())
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                "wordpress.rgw-8081.ipv4.0".to_string(),
                Some("rgw".to_string()),
                Some(8081),
                6
            ),
            (
                "wordpress.rgw.ipv4.0".to_string(),
                Some("rgw".to_string()),
                Some(8080),
                6
            ),
        ]
    );
    // Only the 8081 instance of .52 is out of rotation.
    let not_ready: Vec<(String, String)> = slices
        .iter()
        .flat_map(|s| {
            let name = s.name_any();
            ready_map(s)
                .into_iter()
                .filter(|(_, ready, _)| !ready)
                .map(move |(ip, _, _)| (name.clone(), ip))
        })
        .collect();
    assert_eq!(
        not_ready,
        [(
            "wordpress.rgw-8081.ipv4.0".to_string(),
            "198.18.7.52".to_string()
        )]
    );
    // The Endpoints carry both instances under the one Service port name.
    let subsets = endpoints(&owner(), &plan, &health)
        .subsets
        .expect("subsets");
    let ports: Vec<(Option<String>, i32, usize, usize)> = subsets
        .iter()
        .map(|s| {
            let p = &s.ports.as_ref().expect("ports")[0];
            let n = |a: &Option<Vec<_>>| a.as_ref().map_or(0, Vec::len);
            (
                p.name.clone(),
                p.port,
                n(&s.addresses),
                n(&s.not_ready_addresses),
            )
        })
        .collect();
    assert_eq!(
        ports,
        [
            (Some("rgw".to_string()), 8080, 6, 0),
            (Some("rgw".to_string()), 8081, 5, 1)
        ]
    );
    // A restart seeds each instance from its own slice.
    let seed = seed_from_slices(&plan, &slices);
    assert_eq!(seed.len(), 12);
    assert_eq!(seed.get(&down), Some(&false));
    assert_eq!(seed.values().filter(|r| **r).count(), 11);
}

fn spec_json(v: serde_json::Value) -> ClusterEndpointSpec {
    serde_json::from_value(v).expect("spec deserialises")
}

#[test]
fn slice_names_of_different_objects_and_ports_never_collide() {
    // The names that collided with dashes: object `a` + port `b-c` and
    // object `a-b` + port `c`; an extra target port and a port named like it.
    let pairs = [
        (("a", "b-c"), ("a-b", "c")),
        (("web", "http-8081"), ("web-http", "8081")),
    ];
    for ((o1, p1), (o2, p2)) in pairs {
        assert_ne!(slice_name(o1, p1, "IPv4", 0), slice_name(o2, p2, "IPv4", 0));
    }
    // Every name parses back to what made it.
    let name = slice_name("a-b", "c", "IPv6", 12);
    assert_eq!(name, "a-b.c.ipv6.12");
    assert_eq!(parse_slice_name(&name), Some(("a-b", "c", "IPv6", 12)));
    for other in [
        "a-b-c-ipv4-0",
        "a.b.ipv5.0",
        "a.b.ipv4.01",
        "a.b.ipv4.0.1",
        ".b.ipv4.0",
    ] {
        assert_eq!(parse_slice_name(other), None, "{other}");
    }
    // The longest legal inputs: a 63-character object name, a 63-character
    // port name with a 5-digit extra target port, and a large index.
    let object = format!("o{}", "x".repeat(62));
    let port = format!("p{}-65535", "y".repeat(62));
    let longest = slice_name(&object, &port, "IPv6", 99_999);
    assert!(longest.len() <= 253, "{}", longest.len());
    assert!(
        longest
            .split('.')
            .all(|l| l.starts_with(|c: char| c.is_ascii_alphanumeric())
                && l.ends_with(|c: char| c.is_ascii_alphanumeric())),
        "a DNS subdomain: {longest}"
    );
}

#[test]
fn a_host_added_to_a_250_host_port_changes_one_slice() {
    let hosts: Vec<String> = (0..250)
        .map(|i| format!("198.18.{}.{}", 1 + i / 200, i % 200 + 1))
        .collect();
    let before_plan = plan(
        "big",
        &spec_json(serde_json::json!({"ports": [{"name": "a", "port": 80, "targetPort": 80, "hosts": hosts}]})),
    )
    .expect("valid");
    let before = endpoint_slices(&owner(), &before_plan, &BTreeMap::new(), ID, &[]);
    assert_eq!(before.len(), 3);
    let mut more = hosts.clone();
    more.push("198.18.0.1".into()); // sorts before every other host
    let after_plan = plan(
        "big",
        &spec_json(serde_json::json!({"ports": [{"name": "a", "port": 80, "targetPort": 80, "hosts": more}]})),
    )
    .expect("valid");
    let live: Vec<&EndpointSlice> = before.iter().collect();
    let after = endpoint_slices(&owner(), &after_plan, &BTreeMap::new(), ID, &live);
    let changed: Vec<String> = after
        .iter()
        .filter(|s| !before.contains(s))
        .map(|s| s.name_any())
        .collect();
    assert_eq!(changed, ["wordpress.a.ipv4.2"]);
    // Without the live slices (the old behaviour) every slice shifts.
    let repacked = endpoint_slices(&owner(), &after_plan, &BTreeMap::new(), ID, &[]);
    assert_eq!(repacked.iter().filter(|s| !before.contains(s)).count(), 3);
}

#[test]
fn headless_slices_carry_the_headless_label() {
    let mut spec = wordpress();
    spec.cluster_ip = Some("None".into());
    let plan = plan("wordpress", &spec).expect("valid");
    for slice in endpoint_slices(&owner(), &plan, &BTreeMap::new(), ID, &[]) {
        assert_eq!(
            slice.labels().get(LABEL_HEADLESS).map(String::as_str),
            Some("")
        );
    }
    for slice in endpoint_slices(&owner(), &wordpress_plan(), &BTreeMap::new(), ID, &[]) {
        assert!(!slice.labels().contains_key(LABEL_HEADLESS));
    }
}

#[test]
fn the_service_family_follows_the_hosts() {
    let families = |hosts: &[&str]| {
        let p = plan(
            "db",
            &spec_json(serde_json::json!({"ports": [{"name": "a", "port": 80, "targetPort": 80, "hosts": hosts}]})),
        )
        .expect("valid");
        let spec = service(&owner(), &p).spec.expect("spec");
        (spec.ip_family_policy, spec.ip_families)
    };
    assert_eq!(
        families(&["fd00::1"]),
        (Some("SingleStack".into()), Some(vec!["IPv6".into()]))
    );
    assert_eq!(
        families(&["198.18.0.1"]),
        (Some("SingleStack".into()), Some(vec!["IPv4".into()]))
    );
    assert_eq!(
        families(&["198.18.0.1", "fd00::1"]),
        (Some("PreferDualStack".into()), None)
    );
    // Headless: no ClusterIP, so nothing to choose.
    let mut spec = wordpress();
    spec.cluster_ip = Some("None".into());
    spec.ports[0].hosts = vec!["fd00::1".into()];
    let p = plan("wordpress", &spec).expect("valid");
    let svc = service(&owner(), &p).spec.expect("spec");
    assert_eq!((svc.ip_family_policy, svc.ip_families), (None, None));
}

#[test]
fn the_endpoints_keep_at_most_1000_addresses_ready_ones_first() {
    let hosts = |n: u32| -> Vec<String> {
        (0..n)
            .map(|i| format!("198.18.{}.{}", i / 200, i % 200 + 1))
            .collect()
    };
    let spec = spec_json(serde_json::json!({"ports": [
        {"name": "a", "port": 80, "targetPort": 80, "hosts": hosts(900), "tcpSocket": {"enable": true}},
        {"name": "b", "port": 81, "targetPort": 81, "hosts": hosts(300), "tcpSocket": {"enable": true}},
    ]}));
    let plan = plan("big", &spec).expect("valid");
    // Port a: 600 ready, 300 not; port b: all 300 not ready.
    let mut health = health_all(&plan, HealthState::NotReady);
    for (id, h) in health.iter_mut() {
        if id.port == "a"
            && h.state == HealthState::NotReady
            && matches!(id.host, IpAddr::V4(v) if v.octets()[2] < 3)
        {
            h.state = HealthState::Ready;
        }
    }
    let ep = endpoints(&owner(), &plan, &health);
    let count =
        |f: fn(&EndpointSubset) -> usize| -> usize { ep.subsets.iter().flatten().map(f).sum() };
    let ready = count(|s| s.addresses.as_ref().map_or(0, Vec::len));
    let not_ready = count(|s| s.not_ready_addresses.as_ref().map_or(0, Vec::len));
    assert_eq!(ready, 600, "every ready address is kept");
    assert_eq!(ready + not_ready, 1000);
    assert_eq!(
        ep.annotations()
            .get(ANNOTATION_OVER_CAPACITY)
            .map(String::as_str),
        Some("truncated")
    );
    // Within the limit nothing is cut and there is no annotation.
    let small = endpoints(&owner(), &wordpress_plan(), &BTreeMap::new());
    assert!(small.annotations().is_empty());
}

#[test]
fn truncation_keeps_every_subset_valid() {
    let address = |i: usize| EndpointAddress {
        ip: format!("198.18.0.{i}"),
        ..EndpointAddress::default()
    };
    let subset = |ready: usize, not_ready: usize| EndpointSubset {
        addresses: (ready > 0).then(|| (0..ready).map(address).collect()),
        not_ready_addresses: (not_ready > 0).then(|| (0..not_ready).map(address).collect()),
        ports: None,
    };
    // More ready addresses than fit: not-ready ones go, ready ones shrink
    // in proportion; an emptied subset is dropped.
    let mut subsets = vec![subset(9, 3), subset(3, 0), subset(0, 5)];
    assert!(truncate_endpoints(&mut subsets, 8));
    let sizes: Vec<(usize, usize)> = subsets
        .iter()
        .map(|s| {
            (
                s.addresses.as_ref().map_or(0, Vec::len),
                s.not_ready_addresses.as_ref().map_or(0, Vec::len),
            )
        })
        .collect();
    assert_eq!(sizes, [(6, 0), (2, 0)]);
    let mut fits = vec![subset(2, 2)];
    assert!(!truncate_endpoints(&mut fits, 4));
}

#[test]
fn adoption_seeds_from_the_endpoints_and_slices_win() {
    let spec = spec_json(serde_json::json!({"ports": [
        {"name": "http", "port": 80, "targetPort": 8080, "hosts": ["198.18.0.1", "198.18.0.2", "198.18.0.3"], "tcpSocket": {"enable": true}}
    ]}));
    let plan = plan("rgw", &spec).expect("valid");
    // A hand-made Endpoints: an unnamed port, one host ready, one not.
    let handmade: Endpoints = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "rgw"},
        "subsets": [{"addresses": [{"ip": "198.18.0.1"}], "notReadyAddresses": [{"ip": "198.18.0.2"}],
                     "ports": [{"port": 8080}]},
                    {"addresses": [{"ip": "198.18.0.3"}], "ports": [{"port": 9999}]}]
    }))
    .expect("endpoints");
    let seed = seed(&plan, [], Some(&handmade));
    assert_eq!(
        seed,
        BTreeMap::from([
            (target("http", "198.18.0.1"), true),
            (target("http", "198.18.0.2"), false),
        ]),
        "another target port seeds nothing"
    );
    // A port named otherwise does not match.
    let mut named = handmade.clone();
    named.subsets.as_mut().expect("subsets")[0]
        .ports
        .as_mut()
        .expect("ports")[0]
        .name = Some("other".into());
    assert!(seed_from_endpoints(&plan, &named).is_empty());
    // Slices know better than the Endpoints.
    let mut health = health_all(&plan, HealthState::Ready);
    health.insert(target("http", "198.18.0.1"), down(1, "x"));
    let slices = endpoint_slices(&owner(), &plan, &health, ID, &[]);
    let seeded = super::seed(&plan, &slices, Some(&handmade));
    assert_eq!(seeded.get(&target("http", "198.18.0.1")), Some(&false));
    assert_eq!(seeded.get(&target("http", "198.18.0.2")), Some(&true));
}

#[test]
fn controller_ids_must_be_label_values_of_our_own() {
    assert_eq!(validate_controller_id(crate::DEFAULT_CONTROLLER_ID), Ok(()));
    assert_eq!(validate_controller_id("my-team.example.com"), Ok(()));
    for bad in ["", "has space", "-dash", &"x".repeat(64), "a/b"] {
        assert!(validate_controller_id(bad).is_err(), "{bad:?}");
    }
    for reserved in [
        "endpointslice-controller.k8s.io",
        "endpointslicemirroring-controller.k8s.io",
        "x.kubernetes.io",
    ] {
        let e = validate_controller_id(reserved).expect_err("reserved");
        assert!(e.contains("reserved"), "{e}");
    }
}

#[test]
fn orphaned_slices_of_our_controller_are_ours_to_take_over() {
    let slices = endpoint_slices(&owner(), &wordpress_plan(), &BTreeMap::new(), ID, &[]);
    let mut orphan = slices[0].clone();
    assert!(is_own_slice(&orphan, &owner(), ID));
    orphan.metadata.owner_references = None;
    assert!(is_own_slice(&orphan, &owner(), ID));
    let mut other = Owner {
        uid: "uid-2".into(),
        ..owner()
    };
    assert!(
        !is_own_slice(&slices[0], &other, ID),
        "controlled by another object"
    );
    other.name = "other".into();
    assert!(!is_own_slice(&orphan, &other, ID), "another Service");
    assert!(
        !is_own_slice(&orphan, &owner(), "someone-else"),
        "another controller id"
    );
}

/// Per-host fields reach the slices and the Endpoints: a drained host is
/// terminating (serving keeps its probe verdict) and in
/// notReadyAddresses; zones, hints and hostnames are written.
#[test]
fn per_host_fields_reach_slices_and_endpoints() {
    let spec: ClusterEndpointSpec = serde_json::from_value(serde_json::json!({"ports": [
        {"name": "p", "port": 80, "targetPort": 80, "tcpSocket": {"enable": true}, "hosts": [
            {"address": "198.18.0.1", "zone": "a", "hostname": "db-1"},
            {"address": "198.18.0.2", "zone": "b", "drain": true},
            {"address": "198.18.0.3", "zone": "b"},
        ]}
    ]}))
    .expect("spec");
    let plan = plan("obj", &spec).expect("valid");
    let health = health_all(&plan, kube_endpoints_probe::HealthState::Ready);
    let slices = endpoint_slices(&owner(), &plan, &health, ID, &[]);
    let endpoints: Vec<&Endpoint> = slices.iter().flat_map(|s| &s.endpoints).collect();
    let conditions: Vec<(String, EndpointConditions)> = endpoints
        .iter()
        .map(|e| {
            (
                e.addresses[0].clone(),
                e.conditions.clone().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        conditions[1],
        (
            "198.18.0.2".to_string(),
            EndpointConditions {
                ready: Some(false),
                serving: Some(true),
                terminating: Some(true)
            }
        )
    );
    assert_eq!(endpoints[0].hostname.as_deref(), Some("db-1"));
    assert_eq!(endpoints[0].zone.as_deref(), Some("a"));
    let hint = |e: &Endpoint| {
        e.hints
            .as_ref()
            .and_then(|h| h.for_zones.clone())
            .map(|z| z.into_iter().map(|z| z.name).collect::<Vec<_>>())
    };
    assert_eq!(hint(endpoints[0]), Some(vec!["a".to_string()]));
    assert_eq!(hint(endpoints[2]), Some(vec!["b".to_string()]));
    // Zone b without a ready host: no hints anywhere.
    let mut down = health.clone();
    down.insert(target("p", "198.18.0.3"), down_health());
    let slices = endpoint_slices(&owner(), &plan, &down, ID, &[]);
    assert!(
        slices
            .iter()
            .flat_map(|s| &s.endpoints)
            .all(|e| e.hints.is_none())
    );
    // The Endpoints object: the drained host is not ready.
    let ep = endpoints_of(&plan, &health);
    let subset = &ep.subsets.expect("subsets")[0];
    let ips = |a: &Option<Vec<EndpointAddress>>| {
        a.iter()
            .flatten()
            .map(|a| (a.ip.clone(), a.hostname.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ips(&subset.addresses),
        vec![
            ("198.18.0.1".to_string(), Some("db-1".to_string())),
            ("198.18.0.3".to_string(), None)
        ]
    );
    assert_eq!(
        ips(&subset.not_ready_addresses),
        vec![("198.18.0.2".to_string(), None)]
    );
}

fn down_health() -> kube_endpoints_probe::Health {
    down(1, "tcp connect: connection refused")
}

fn endpoints_of(
    plan: &Plan,
    health: &BTreeMap<TargetId, kube_endpoints_probe::Health>,
) -> Endpoints {
    endpoints(&owner(), plan, health)
}

/// The passthrough fields are set on the Service; without them it is as
/// before.
#[test]
fn service_passthrough_fields_are_set_when_given() {
    let spec: ClusterEndpointSpec = serde_json::from_value(serde_json::json!({
        "clusterIP": "None",
        "sessionAffinity": "ClientIP",
        "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 600}},
        "internalTrafficPolicy": "Local",
        "trafficDistribution": "PreferClose",
        "serviceLabels": {"team": "db"},
        "serviceAnnotations": {"example.com/owner": "dba"},
        "publishNotReadyAddresses": true,
        "ports": [{"name": "p", "port": 80, "targetPort": 80, "hosts": ["198.18.0.1"]}]
    }))
    .expect("spec");
    let plan = plan("obj", &spec).expect("valid");
    let svc = service(&owner(), &plan);
    let s = svc.spec.clone().expect("spec");
    assert_eq!(s.session_affinity.as_deref(), Some("ClientIP"));
    assert_eq!(
        s.session_affinity_config
            .and_then(|c| c.client_ip)
            .and_then(|c| c.timeout_seconds),
        Some(600)
    );
    assert_eq!(s.internal_traffic_policy.as_deref(), Some("Local"));
    assert_eq!(s.traffic_distribution.as_deref(), Some("PreferClose"));
    assert_eq!(s.publish_not_ready_addresses, Some(true));
    assert_eq!(svc.labels().get("team").map(String::as_str), Some("db"));
    assert_eq!(
        svc.annotations()
            .get("example.com/owner")
            .map(String::as_str),
        Some("dba")
    );
    let plain = service(&owner(), &wordpress_plan());
    let p = plain.spec.expect("spec");
    assert_eq!(
        (
            p.session_affinity,
            p.internal_traffic_policy,
            p.traffic_distribution,
            p.publish_not_ready_addresses
        ),
        (None, None, None, None)
    );
    assert_eq!(plain.metadata.labels, None);
    assert_eq!(plain.metadata.annotations, None);
}
