use std::collections::BTreeMap;

use super::*;
use crate::testing::*;

#[test]
fn status_phases_and_conditions() {
    let plan = wordpress_plan();
    let input = |health: &BTreeMap<TargetId, Health>| {
        synced_status(1, &plan, health, None, "2026-11-24T10:00:00Z")
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
            ("HostsAllowed", "True", "HostsAllowed"),
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
    let plan = wordpress_plan();
    let mut health = all_ready_but(
        &plan,
        "wp-udp",
        "10.33.40.151",
        down(10, "udp: no reply within 1s"),
    );
    let bad = target("wp-udp", "10.33.40.151");
    let first = synced_status(1, &plan, &health, None, "2026-11-24T10:00:00Z");
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
    let second = synced_status(1, &plan, &health, Some(&first), "2026-11-24T11:00:00Z");
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
    let plan = wordpress_plan();
    let healthy = health_all(&plan, HealthState::Ready);
    let unhealthy = health_all(&plan, HealthState::NotReady);
    let mk = |health: &BTreeMap<TargetId, Health>,
              previous: Option<&ClusterEndpointStatus>,
              now: &str| synced_status(1, &plan, health, previous, now);
    let t0 = mk(&healthy, None, "2026-11-24T10:00:00Z");
    let t1 = mk(&unhealthy, Some(&t0), "2026-11-24T10:05:00Z");
    let ready = |s| condition(s, CONDITION_READY).clone();
    let init = |s| condition(s, CONDITION_INITIALIZED).clone();
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
        spec: Err((&invalid).into()),
        health: &BTreeMap::new(),
        previous: None,
        now: "2026-11-24T10:00:00Z",
    });
    let init = condition(&s, CONDITION_INITIALIZED);
    assert_eq!(state(init), ("False", "InvalidSpec"));
    assert!(init.message.contains("spec.ports[0].port"));
    assert_eq!(s.phase, Some(Phase::UnHealthy));

    let plan = wordpress_plan();
    let s = status(&StatusInput {
        generation: Some(2),
        spec: Ok(Synced {
            plan: &plan,
            service: SyncOutcome::failed(
                "ServiceHasSelector",
                "Service default/wordpress has a selector",
            ),
            endpoints: SyncOutcome::failed("ServiceNotSynced", "x"),
            fail_open: Vec::new(),
        }),
        health: &health_all(&plan, HealthState::Ready),
        previous: None,
        now: "2026-11-24T10:00:00Z",
    });
    let ready = condition(&s, CONDITION_READY);
    assert_eq!(state(ready), ("False", "ServiceHasSelector"));
}

#[test]
fn a_large_outage_lists_a_bounded_number_of_hosts_and_counts_the_rest() {
    let hosts: Vec<String> = (0..1000)
        .map(|i| format!("198.18.{}.{}", i / 200, i % 200 + 1))
        .collect();
    let spec: kube_endpoints_api::ClusterEndpointSpec = serde_json::from_value(serde_json::json!({
        "ports": [
            {"name": "a", "port": 80, "targetPort": 80, "hosts": hosts, "tcpSocket": {"enable": true}},
            {"name": "b", "port": 81, "targetPort": 81, "hosts": hosts, "tcpSocket": {"enable": true}},
        ]
    }))
    .expect("spec");
    let plan = crate::plan::plan("big", &spec).expect("valid");
    let health = health_all(&plan, HealthState::NotReady);
    let s = synced_status(1, &plan, &health, None, "2026-11-24T10:00:00Z");
    for port in &s.ports {
        assert_eq!(
            port.unhealthy.len(),
            kube_endpoints_api::MAX_UNHEALTHY_LISTED
        );
        assert_eq!(port.unhealthy_omitted, Some(950));
        assert_eq!((port.ready, port.total), (0, 1000));
        // The first hosts in address order.
        assert_eq!(port.unhealthy[0].host, "198.18.0.1");
    }
    let size = serde_json::to_vec(&s).expect("json").len();
    assert!(
        size < 32 * 1024,
        "status of 2,000 unhealthy host-ports is {size} bytes"
    );
    // Stable: the same outage gives the same status.
    let again = synced_status(1, &plan, &health, Some(&s), "2026-11-24T10:05:00Z");
    assert_eq!(again, s);
}

#[test]
fn denied_hosts_are_reported_per_host_counted_in_total_and_never_ready() {
    use crate::policy::{AddressPolicy, ClusterRanges, RangeKind, restrict};
    let mut cluster = ClusterRanges::default();
    cluster.insert("10.33.40.151/32".parse().unwrap(), RangeKind::Apiserver);
    let plan = restrict(wordpress_plan(), &AddressPolicy::default(), &cluster);
    let s = synced_status(
        1,
        &plan,
        &health_all(&plan, HealthState::Ready),
        None,
        "2026-11-24T10:00:00Z",
    );
    assert_eq!(s.ready.as_deref(), Some("4/8"));
    assert_eq!(s.phase, Some(Phase::UnHealthy));
    for port in &s.ports {
        assert_eq!((port.ready, port.total), (1, 2), "{}", port.name);
        assert_eq!(port.denied.len(), 1);
        assert_eq!(port.denied[0].host, "10.33.40.151");
        assert_eq!(
            port.denied[0].message,
            "10.33.40.151 is an address of kube-apiserver (denied by the address policy)"
        );
        assert!(port.unhealthy.is_empty(), "denied is not unhealthy");
    }
    let allowed = condition(&s, CONDITION_HOSTS_ALLOWED);
    assert_eq!(state(allowed), ("False", "HostsDenied"));
    assert!(
        allowed
            .message
            .starts_with("4 host-port(s) denied by the address policy"),
        "{}",
        allowed.message
    );
    assert!(
        allowed
            .message
            .contains("10.33.40.151 is an address of kube-apiserver")
    );
    // An Event follows from the condition turning false.
    let events = crate::events::condition_events(&[], &s);
    assert!(events.iter().any(|e| e.reason == "HostsDenied"));
}

#[test]
fn the_denied_list_is_capped_but_the_count_is_not() {
    use crate::policy::{AddressPolicy, ClusterRanges, RangeKind, restrict};
    let hosts: Vec<String> = (1..=200)
        .map(|i| format!("198.19.{}.{}", i / 250, i % 250 + 1))
        .collect();
    let spec: kube_endpoints_api::ClusterEndpointSpec = serde_json::from_value(serde_json::json!({
        "ports": [{"name": "a", "port": 80, "targetPort": 80, "hosts": hosts}]
    }))
    .unwrap();
    let mut cluster = ClusterRanges::default();
    cluster.insert("198.19.0.0/16".parse().unwrap(), RangeKind::Service);
    let plan = restrict(
        crate::plan::plan("a", &spec).unwrap(),
        &AddressPolicy::default(),
        &cluster,
    );
    let s = synced_status(1, &plan, &BTreeMap::new(), None, "2026-11-24T10:00:00Z");
    assert_eq!(s.ports[0].denied.len(), MAX_DENIED_LISTED);
    assert_eq!(s.ports[0].total, 200);
    let allowed = condition(&s, CONDITION_HOSTS_ALLOWED);
    assert!(
        allowed.message.starts_with("200 host-port(s)"),
        "{}",
        allowed.message
    );
    assert!(
        allowed
            .message
            .ends_with("and 197 more (see status.ports[].denied)"),
        "{}",
        allowed.message
    );
}

#[test]
fn an_exceeded_budget_shows_in_initialized() {
    let s = status(&StatusInput {
        generation: Some(3),
        spec: Err(NotInitialized {
            reason: "BudgetExceeded",
            message: "over budget".into(),
        }),
        health: &BTreeMap::new(),
        previous: None,
        now: "2026-11-24T10:00:00Z",
    });
    assert_eq!(
        state(condition(&s, CONDITION_INITIALIZED)),
        ("False", "BudgetExceeded")
    );
    assert_eq!(
        state(condition(&s, CONDITION_READY)),
        ("False", "BudgetExceeded")
    );
    assert!(s.ports.is_empty());
}

#[test]
fn quote_first_lists_the_first_few_and_counts_the_rest() {
    let items = ["a", "b", "c"];
    assert_eq!(
        quote_first(&items, 2, ", ", " and {} more"),
        "a, b and 1 more"
    );
    assert_eq!(quote_first(&items, 3, "; ", "; and {} more"), "a; b; c");
    assert_eq!(quote_first(&items[..0], 2, ", ", " and {} more"), "");
}
