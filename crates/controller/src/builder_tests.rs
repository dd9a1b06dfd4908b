use kube::ResourceExt;
use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::plan::plan;
use crate::plan::tests::{SEED_000, parse};
use k8s_openapi::api::core::v1::ServiceSpec;
use kube_endpoints_api::ClusterEndpointSpec;

const ID: &str = "kube-endpoints.test";

fn owner() -> Owner {
    Owner {
        api_version: "khulnasoft-lab.github.io/v1beta1".into(),
        kind: "ClusterEndpoint".into(),
        name: "wordpress".into(),
        namespace: "default".into(),
        uid: "uid-1".into(),
    }
}

fn at(secs: u64) -> std::time::SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
}

fn health_all(plan: &Plan, state: HealthState) -> BTreeMap<TargetId, Health> {
    plan.targets()
        .into_keys()
        .map(|id| {
            let message = if state == HealthState::NotReady {
                "tcp connect: connection refused"
            } else {
                ""
            };
            (
                id,
                Health {
                    state,
                    since: at(0),
                    message: message.into(),
                },
            )
        })
        .collect()
}

fn seed_plan() -> Plan {
    plan("wordpress", &parse(SEED_000).spec).expect("seed 000 is valid")
}

/// Seed 003: six Ceph RGW hosts behind two ports (addresses rewritten).
fn seed_003_plan() -> Plan {
    let hosts: Vec<String> = (50..56).map(|i| format!("198.18.7.{i}")).collect();
    let spec: ClusterEndpointSpec = serde_json::from_value(serde_json::json!({
        "ports": [
            {"name": "rgw-8080", "port": 8080, "targetPort": 8080, "hosts": hosts, "tcpSocket": {"enable": true}},
            {"name": "rgw-8081", "port": 8081, "targetPort": 8081, "hosts": hosts, "httpGet": {"path": "/"}},
        ]
    }))
    .expect("spec deserialises");
    plan("ocs-external-rgw-lb", &spec).expect("valid")
}

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
fn seed_000_service_has_four_ports_and_no_selector() {
    let plan = seed_plan();
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
    let mut spec = parse(SEED_000).spec;
    spec.cluster_ip = Some("None".into());
    let plan = plan("wordpress", &spec).expect("valid");
    let svc = service(&owner(), &plan);
    assert_eq!(svc.spec.and_then(|s| s.cluster_ip).as_deref(), Some("None"));
}

#[test]
fn seed_000_slices_per_port_with_labels_and_readiness() {
    let plan = seed_plan();
    let mut health = health_all(&plan, HealthState::Ready);
    let bad = TargetId {
        port: "wp-http".into(),
        host: "10.33.40.152".parse().expect("ip"),
    };
    health.insert(
        bad,
        Health {
            state: HealthState::NotReady,
            since: at(5),
            message: "http GET /healthz: status 503".into(),
        },
    );
    let slices = endpoint_slices(&owner(), &plan, &health, ID);
    let names: Vec<String> = slices
        .iter()
        .map(|s| s.metadata.name.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        names,
        [
            "wordpress-wp-grpc-ipv4-0",
            "wordpress-wp-http-ipv4-0",
            "wordpress-wp-https-ipv4-0",
            "wordpress-wp-udp-ipv4-0"
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
fn seed_003_six_hosts_two_ports() {
    let plan = seed_003_plan();
    let health = health_all(&plan, HealthState::Ready);
    let slices = endpoint_slices(&owner(), &plan, &health, ID);
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
    let slices = endpoint_slices(&owner(), &plan, &BTreeMap::new(), ID);
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
            ("wordpress-db-ipv4-0".into(), "IPv4".into(), 2),
            ("wordpress-db-ipv6-0".into(), "IPv6".into(), 2)
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
    let slices = endpoint_slices(&owner(), &plan, &health, ID);
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
    let again = endpoint_slices(&owner(), &plan, &health, ID);
    assert_eq!(
        serde_json::to_string(&slices).ok(),
        serde_json::to_string(&again).ok()
    );
}

#[test]
fn all_unhealthy_lists_every_host_as_not_ready() {
    let plan = seed_plan();
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
    let status = status(&StatusInput {
        generation: Some(3),
        plan: Ok(&plan),
        health: &health,
        service: Sync::Done,
        endpoints: Sync::Done,
        previous: None,
        now: "2026-11-24T10:00:00Z",
    });
    assert_eq!(status.phase, Some(Phase::UnHealthy));
    assert_eq!(status.ready.as_deref(), Some("0/8"));
    assert_eq!(status.observed_generation, Some(3));
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == CONDITION_READY)
        .expect("ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "HostsUnhealthy")
    );
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
fn status_phases_and_seed_conditions() {
    let plan = seed_plan();
    let input = |health: &BTreeMap<TargetId, Health>| {
        status(&StatusInput {
            generation: Some(1),
            plan: Ok(&plan),
            health,
            service: Sync::Done,
            endpoints: Sync::Done,
            previous: None,
            now: "2026-11-24T10:00:00Z",
        })
    };
    let healthy = input(&health_all(&plan, HealthState::Ready));
    assert_eq!(healthy.phase, Some(Phase::Healthy));
    assert_eq!(healthy.ready.as_deref(), Some("8/8"));
    let types: Vec<(&str, &str, &str)> = healthy
        .conditions
        .iter()
        .map(|c| (c.type_.as_str(), c.status.as_str(), c.reason.as_str()))
        .collect();
    assert_eq!(
        types,
        [
            ("Initialized", "True", "Initialized"),
            ("SyncServiceReady", "True", "SyncServiceReady"),
            ("SyncEndpointReady", "True", "SyncEndpointReady"),
            ("Ready", "True", "Ready"),
        ]
    );
    assert!(
        healthy
            .conditions
            .iter()
            .all(|c| c.last_transition_time == "2026-11-24T10:00:00Z")
    );

    let pending = input(&BTreeMap::new());
    assert_eq!(pending.phase, Some(Phase::Pending));
    assert_eq!(pending.ready.as_deref(), Some("0/8"));
    assert!(
        pending.ports.iter().all(|p| p.unhealthy.is_empty()),
        "no verdict, nothing to report"
    );
}

#[test]
fn status_is_stable_when_nothing_changed() {
    let plan = seed_plan();
    let mut health = health_all(&plan, HealthState::Ready);
    let bad = TargetId {
        port: "wp-udp".into(),
        host: "10.33.40.151".parse().expect("ip"),
    };
    health.insert(
        bad.clone(),
        Health {
            state: HealthState::NotReady,
            since: at(10),
            message: "udp: no reply within 1s".into(),
        },
    );
    let first = status(&StatusInput {
        generation: Some(1),
        plan: Ok(&plan),
        health: &health,
        service: Sync::Done,
        endpoints: Sync::Done,
        previous: None,
        now: "2026-11-24T10:00:00Z",
    });
    // Later, after a restart: the host is seeded NotReady with another
    // message and time; the status must come out identical.
    health.insert(
        bad,
        Health {
            state: HealthState::NotReady,
            since: at(999),
            message: "restored from existing EndpointSlice".into(),
        },
    );
    let second = status(&StatusInput {
        generation: Some(1),
        plan: Ok(&plan),
        health: &health,
        service: Sync::Done,
        endpoints: Sync::Done,
        previous: Some(&first),
        now: "2026-11-24T11:00:00Z",
    });
    assert_eq!(first, second);
    let udp = first
        .ports
        .iter()
        .find(|p| p.name == "wp-udp")
        .expect("udp");
    assert_eq!(udp.unhealthy[0].since, rfc3339(at(10)));
    assert_eq!(udp.probe, "udp");
    assert_eq!((udp.ready, udp.total), (1, 2));
}

#[test]
fn condition_times_move_only_on_change() {
    let plan = seed_plan();
    let healthy = health_all(&plan, HealthState::Ready);
    let unhealthy = health_all(&plan, HealthState::NotReady);
    let mk = |health: &BTreeMap<TargetId, Health>,
              previous: Option<&ClusterEndpointStatus>,
              now: &str| {
        status(&StatusInput {
            generation: Some(1),
            plan: Ok(&plan),
            health,
            service: Sync::Done,
            endpoints: Sync::Done,
            previous,
            now,
        })
    };
    let t0 = mk(&healthy, None, "2026-11-24T10:00:00Z");
    let t1 = mk(&unhealthy, Some(&t0), "2026-11-24T10:05:00Z");
    let ready = |s: &ClusterEndpointStatus| {
        s.conditions
            .iter()
            .find(|c| c.type_ == CONDITION_READY)
            .cloned()
            .expect("ready")
    };
    let init = |s: &ClusterEndpointStatus| {
        s.conditions
            .iter()
            .find(|c| c.type_ == CONDITION_INITIALIZED)
            .cloned()
            .expect("init")
    };
    assert_eq!(ready(&t1).last_transition_time, "2026-11-24T10:05:00Z");
    assert_eq!(
        ready(&t1).last_heartbeat_time.as_deref(),
        Some("2026-11-24T10:05:00Z")
    );
    assert_eq!(
        init(&t1),
        init(&t0),
        "unchanged conditions keep their times"
    );
}

#[test]
fn invalid_spec_and_refusals_show_in_conditions() {
    let invalid = crate::plan::InvalidSpec(vec![crate::plan::FieldError {
        field: "spec.ports[0].port".into(),
        message: "must be between 1 and 65535, got 0".into(),
    }]);
    let s = status(&StatusInput {
        generation: Some(2),
        plan: Err(&invalid),
        health: &BTreeMap::new(),
        service: Sync::Done,
        endpoints: Sync::Done,
        previous: None,
        now: "2026-11-24T10:00:00Z",
    });
    let init = s
        .conditions
        .iter()
        .find(|c| c.type_ == CONDITION_INITIALIZED)
        .expect("init");
    assert_eq!(
        (init.status.as_str(), init.reason.as_str()),
        ("False", "InvalidSpec")
    );
    assert!(init.message.contains("spec.ports[0].port"));
    assert_eq!(s.phase, Some(Phase::UnHealthy));

    let plan = seed_plan();
    let s = status(&StatusInput {
        generation: Some(2),
        plan: Ok(&plan),
        health: &health_all(&plan, HealthState::Ready),
        service: Sync::Failed {
            reason: "ServiceHasSelector".into(),
            message: "Service default/wordpress has a selector".into(),
        },
        endpoints: Sync::Failed {
            reason: "ServiceNotSynced".into(),
            message: "x".into(),
        },
        previous: None,
        now: "2026-11-24T10:00:00Z",
    });
    let ready = s
        .conditions
        .iter()
        .find(|c| c.type_ == CONDITION_READY)
        .expect("ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "ServiceHasSelector")
    );
}

fn existing_service(f: impl FnOnce(&mut Service)) -> Service {
    let mut svc = Service {
        metadata: ObjectMeta {
            name: Some("wordpress".into()),
            namespace: Some("default".into()),
            labels: Some(BTreeMap::from([("team".into(), "db".into())])),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            cluster_ip: Some("10.0.0.42".into()),
            ports: Some(vec![ServicePort {
                port: 80,
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };
    f(&mut svc);
    svc
}

#[test]
fn adoption_decisions() {
    let plan = seed_plan();
    let o = owner();
    assert_eq!(service_ownership(None, &o, &plan), Ownership::Create);
    assert_eq!(
        service_ownership(Some(&existing_service(|_| {})), &o, &plan),
        Ownership::Adopt
    );
    let ours = existing_service(|s| s.metadata.owner_references = Some(vec![o.owner_reference()]));
    assert_eq!(service_ownership(Some(&ours), &o, &plan), Ownership::Owned);

    let reason = |svc: Service, plan: &Plan| match service_ownership(Some(&svc), &o, plan) {
        Ownership::Refuse(r) => r.reason,
        other => panic!("expected a refusal, got {other:?}"),
    };
    let with_selector = existing_service(|s| {
        s.spec.as_mut().expect("spec").selector =
            Some(BTreeMap::from([("app".into(), "wp".into())]))
    });
    assert_eq!(reason(with_selector, &plan), "ServiceHasSelector");
    let foreign = existing_service(|s| {
        s.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            name: "other".into(),
            uid: "uid-2".into(),
            controller: Some(true),
            block_owner_deletion: None,
        }])
    });
    assert_eq!(reason(foreign, &plan), "OwnedByAnotherController");
    let node_port =
        existing_service(|s| s.spec.as_mut().expect("spec").type_ = Some("NodePort".into()));
    assert_eq!(reason(node_port, &plan), "ServiceTypeConflict");
    let mut headless_spec = parse(SEED_000).spec;
    headless_spec.cluster_ip = Some("None".into());
    let headless_plan = crate::plan::plan("wordpress", &headless_spec).expect("valid");
    assert_eq!(
        reason(existing_service(|_| {}), &headless_plan),
        "ClusterIPConflict"
    );

    // Endpoints: unowned is adopted, foreign controller refused.
    let ep = endpoints(&o, &plan, &BTreeMap::new());
    assert_eq!(endpoints_ownership(Some(&ep), &o), Ownership::Owned);
    let mut handmade = ep.clone();
    handmade.metadata.owner_references = None;
    assert_eq!(endpoints_ownership(Some(&handmade), &o), Ownership::Adopt);
    assert_eq!(endpoints_ownership(None, &o), Ownership::Create);
}

#[test]
fn slices_round_trip_into_a_seed() {
    let plan = seed_plan();
    let mut health = health_all(&plan, HealthState::Ready);
    let bad = TargetId {
        port: "wp-grpc".into(),
        host: "10.33.40.152".parse().expect("ip"),
    };
    health.insert(
        bad.clone(),
        Health {
            state: HealthState::NotReady,
            since: at(1),
            message: "x".into(),
        },
    );
    let slices = endpoint_slices(&owner(), &plan, &health, ID);
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
    assert_eq!(endpoint_slices(&owner(), &plan, &reseeded, ID), slices);
}

/// Seed 003 as written: one Service port whose hosts listen on 8080 and 8081
/// (what `kube-endpoints import` makes of it).
#[test]
fn additional_target_ports_share_one_service_port() {
    let hosts: Vec<String> = (50..56).map(|i| format!("198.18.7.{i}")).collect();
    let spec: ClusterEndpointSpec = serde_json::from_value(serde_json::json!({
        "ports": [{"name": "rgw", "port": 80, "targetPort": 8080, "additionalTargetPorts": [8081],
                   "hosts": hosts, "tcpSocket": {"enable": true}}]
    }))
    .expect("spec deserialises");
    let plan = plan("ocs-external-rgw-lb", &spec).expect("valid");
    let keys: Vec<(&str, &str, u16, bool)> = plan
        .ports
        .iter()
        .map(|p| {
            (
                p.name.as_str(),
                p.service_port.as_str(),
                p.target_port,
                p.primary,
            )
        })
        .collect();
    assert_eq!(
        keys,
        [("rgw", "rgw", 8080, true), ("rgw-8081", "rgw", 8081, false)]
    );
    assert_eq!(plan.targets().len(), 12);

    let svc = service(&owner(), &plan);
    let ports = svc.spec.and_then(|s| s.ports).expect("ports");
    assert_eq!(ports.len(), 1, "one Service port");
    assert_eq!((ports[0].name.as_deref(), ports[0].port), (Some("rgw"), 80));

    let mut health = health_all(&plan, HealthState::Ready);
    let down = TargetId {
        port: "rgw-8081".into(),
        host: "198.18.7.52".parse().expect("ip"),
    };
    health.insert(
        down.clone(),
        Health {
            state: HealthState::NotReady,
            since: at(3),
            message: "tcp connect: connection refused".into(),
        },
    );
    let slices = endpoint_slices(&owner(), &plan, &health, ID);
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
                "wordpress-rgw-8081-ipv4-0".to_string(),
                Some("rgw".to_string()),
                Some(8081),
                6
            ),
            (
                "wordpress-rgw-ipv4-0".to_string(),
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
            "wordpress-rgw-8081-ipv4-0".to_string(),
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

#[test]
fn additional_target_ports_are_validated() {
    let spec = |extra: serde_json::Value, other: &str| -> ClusterEndpointSpec {
        serde_json::from_value(serde_json::json!({
            "ports": [
                {"name": "rgw", "port": 80, "targetPort": 8080, "additionalTargetPorts": extra, "hosts": ["198.18.7.50"]},
                {"name": other, "port": 81, "targetPort": 81, "hosts": ["198.18.7.50"]}
            ]
        }))
        .expect("spec deserialises")
    };
    let errors = |s: &ClusterEndpointSpec| plan("x", s).expect_err("invalid").to_string();
    let e = errors(&spec(serde_json::json!([8080]), "b"));
    assert!(
        e.contains("spec.ports[0].additionalTargetPorts[0]: duplicate target port 8080"),
        "{e}"
    );
    let e = errors(&spec(serde_json::json!([0]), "b"));
    assert!(
        e.contains("spec.ports[0].additionalTargetPorts[0]: must be between 1 and 65535"),
        "{e}"
    );
    let e = errors(&spec(serde_json::json!([8081]), "rgw-8081"));
    assert!(e.contains("rename that port"), "{e}");
}
