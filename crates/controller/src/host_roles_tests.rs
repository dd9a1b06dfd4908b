use kube_endpoints_api::ClusterEndpointSpec;
use kube_endpoints_probe::HealthState;
use serde_json::{Value, json};

use super::*;
use crate::plan::{Plan, plan};
use crate::testing::*;

/// A plan of one probed port `p` with `hosts` (strings or objects).
fn one_port(hosts: Value, extra: Value) -> Plan {
    let mut port = json!({"name": "p", "port": 80, "targetPort": 80, "hosts": hosts, "tcpSocket": {"enable": true}});
    if let (Some(p), Some(e)) = (port.as_object_mut(), extra.as_object()) {
        p.extend(e.clone());
    }
    let spec: ClusterEndpointSpec =
        serde_json::from_value(json!({"ports": [port]})).expect("spec deserialises");
    plan("obj", &spec).expect("valid")
}

/// Health with the hosts in `failing` not ready, the rest ready.
fn health(plan: &Plan, failing: &[&str]) -> BTreeMap<TargetId, Health> {
    let mut all = health_all(plan, HealthState::Ready);
    for host in failing {
        all.insert(
            target("p", host),
            down(1, "tcp connect: connection refused"),
        );
    }
    all
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn conditions(listing: &PortListing, host: &str) -> (bool, bool, bool) {
    let l = listing.hosts[&ip(host)];
    (l.ready, l.serving, l.terminating)
}

#[test]
fn a_drained_host_is_terminating_and_serving_keeps_the_probe_verdict() {
    let plan = one_port(
        json!(["198.18.0.1", {"address": "198.18.0.2", "drain": true}, {"address": "198.18.0.3", "drain": true}]),
        json!({}),
    );
    let listing = list_port(&plan.ports[0], &health(&plan, &["198.18.0.3"]));
    assert_eq!(conditions(&listing, "198.18.0.1"), (true, true, false));
    assert_eq!(conditions(&listing, "198.18.0.2"), (false, true, true));
    assert_eq!(conditions(&listing, "198.18.0.3"), (false, false, true));
}

#[test]
fn the_string_form_lists_exactly_as_before() {
    let plan = one_port(json!(["198.18.0.1", "198.18.0.2"]), json!({}));
    let listing = list_port(&plan.ports[0], &health(&plan, &["198.18.0.2"]));
    assert_eq!(conditions(&listing, "198.18.0.1"), (true, true, false));
    assert_eq!(conditions(&listing, "198.18.0.2"), (false, false, false));
    assert!(listing.promoted.is_empty());
    assert!(!listing.zone_hints);
}

#[test]
fn a_backup_is_ready_only_while_too_few_primaries_are() {
    let hosts = json!(["198.18.0.1", {"address": "198.18.0.9", "priority": 1}]);
    let plan = one_port(hosts, json!({}));
    let port = &plan.ports[0];
    let primary_up = list_port(port, &health(&plan, &[]));
    assert_eq!(conditions(&primary_up, "198.18.0.9"), (false, true, false));
    assert!(primary_up.promoted.is_empty());
    let primary_down = list_port(port, &health(&plan, &["198.18.0.1"]));
    assert_eq!(conditions(&primary_down, "198.18.0.9"), (true, true, false));
    assert_eq!(primary_down.promoted, vec![ip("198.18.0.9")]);
    // A drained primary is not ready either: the backup takes over.
    let drained = one_port(
        json!([{"address": "198.18.0.1", "drain": true}, {"address": "198.18.0.9", "priority": 1}]),
        json!({}),
    );
    let listing = list_port(&drained.ports[0], &health(&drained, &[]));
    assert_eq!(listing.promoted, vec![ip("198.18.0.9")]);
}

#[test]
fn backups_are_promoted_tier_by_tier_up_to_min_ready() {
    let hosts = json!([
        "198.18.0.1", "198.18.0.2",
        {"address": "198.18.0.11", "priority": 1},
        {"address": "198.18.0.21", "priority": 2},
        {"address": "198.18.0.22", "priority": 2},
    ]);
    let plan = one_port(hosts, json!({"minReady": 2}));
    let port = &plan.ports[0];
    assert_eq!(port.min_ready, 2);
    assert!(list_port(port, &health(&plan, &[])).promoted.is_empty());
    // One primary down: tier 1 is enough for two ready.
    let one_down = list_port(port, &health(&plan, &["198.18.0.1"]));
    assert_eq!(one_down.promoted, vec![ip("198.18.0.11")]);
    // Both primaries down: tier 1 and all of tier 2.
    let both = list_port(port, &health(&plan, &["198.18.0.1", "198.18.0.2"]));
    assert_eq!(
        both.promoted,
        vec![ip("198.18.0.11"), ip("198.18.0.21"), ip("198.18.0.22")]
    );
    // A failing promoted backup does not count: the next tier steps in.
    let failing = list_port(port, &health(&plan, &["198.18.0.1", "198.18.0.11"]));
    assert_eq!(failing.promoted, vec![ip("198.18.0.21"), ip("198.18.0.22")]);
}

#[test]
fn zone_hints_only_when_every_ready_host_has_a_zone_and_every_zone_a_ready_host() {
    let zoned = json!([
        {"address": "198.18.0.1", "zone": "a"},
        {"address": "198.18.0.2", "zone": "b"},
    ]);
    let plan = one_port(zoned, json!({}));
    assert!(list_port(&plan.ports[0], &health(&plan, &[])).zone_hints);
    // Zone b has no ready host left.
    assert!(!list_port(&plan.ports[0], &health(&plan, &["198.18.0.2"])).zone_hints);
    // A ready host without a zone.
    let partly = one_port(
        json!([{"address": "198.18.0.1", "zone": "a"}, "198.18.0.2"]),
        json!({}),
    );
    assert!(!list_port(&partly.ports[0], &health(&partly, &[])).zone_hints);
    // ... unless it is not ready: then every ready host has a zone.
    assert!(list_port(&partly.ports[0], &health(&partly, &["198.18.0.2"])).zone_hints);
    // Nothing ready: no hints.
    let none = health(&plan, &["198.18.0.1", "198.18.0.2"]);
    assert!(!list_port(&plan.ports[0], &none).zone_hints);
}

#[test]
fn a_drained_hosts_zone_needs_no_ready_host() {
    let plan = one_port(
        json!([
            {"address": "198.18.0.1", "zone": "a"},
            {"address": "198.18.0.2", "zone": "b", "drain": true},
        ]),
        json!({}),
    );
    assert!(list_port(&plan.ports[0], &health(&plan, &[])).zone_hints);
}
