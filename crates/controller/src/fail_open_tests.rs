use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use kube::runtime::events::EventType;
use kube_endpoints_api::{CONDITION_FAILING_OPEN, CONDITION_FLEET_GUARD, ClusterEndpointSpec};
use kube_endpoints_probe::{Health, HealthState, TargetId};
use serde_json::{Value, json};

use super::*;
use crate::builder::endpoint_slices;
use crate::plan::plan;
use crate::testing::{CONTROLLER_ID, at, down, owner, target};

const HOSTS: [&str; 4] = ["198.18.9.1", "198.18.9.2", "198.18.9.3", "198.18.9.4"];

/// One probed port `web` on [`HOSTS`] (plus a static port `static` on the
/// same hosts), with `object` and `port` merged into the spec and the port.
fn planned(object: Value, port: Value) -> Plan {
    let mut web = json!({"name": "web", "port": 80, "targetPort": 8080, "hosts": HOSTS, "tcpSocket": {"enable": true}});
    merge(&mut web, port);
    let mut spec =
        json!({"ports": [web, {"name": "static", "port": 81, "targetPort": 81, "hosts": HOSTS}]});
    merge(&mut spec, object);
    let spec: ClusterEndpointSpec = serde_json::from_value(spec).expect("spec deserialises");
    plan("web", &spec).expect("valid")
}

fn merge(into: &mut Value, extra: Value) {
    if let (Some(into), Value::Object(extra)) = (into.as_object_mut(), extra) {
        into.extend(extra);
    }
}

fn up() -> Health {
    Health {
        state: HealthState::Ready,
        since: at(1),
        message: String::new(),
    }
}

/// Health of `web`'s hosts: the first `healthy` ready, the rest failing.
fn web_health(healthy: usize) -> BTreeMap<TargetId, Health> {
    HOSTS
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let health = if i < healthy {
                up()
            } else {
                down(2, "tcp connect: connection refused")
            };
            (target("web", h), health)
        })
        .collect()
}

/// `web`'s hosts as the live slices last listed them: all ready.
fn all_last_ready() -> BTreeMap<TargetId, bool> {
    HOSTS.iter().map(|h| (target("web", h), true)).collect()
}

fn ready_hosts(outcome: &Outcome) -> Vec<String> {
    outcome
        .health
        .iter()
        .filter(|(id, h)| id.port == "web" && h.state == HealthState::Ready)
        .map(|(id, _)| id.host.to_string())
        .collect()
}

fn report<'a>(outcome: &'a Outcome, port: &str) -> &'a PortReport {
    outcome
        .ports
        .iter()
        .find(|p| p.port == port)
        .expect("port reported")
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

#[test]
fn fail_closed_by_default_every_failing_host_leaves_rotation() {
    let plan = planned(json!({}), json!({}));
    let health = web_health(0);
    let outcome = decide(&plan, &health, &all_last_ready(), &BTreeSet::new());
    assert_eq!(outcome.health, health, "health passes through unchanged");
    assert!(ready_hosts(&outcome).is_empty());
    assert!(!report(&outcome, "web").failing_open());
    assert!(outcome.conditions().is_empty());
}

#[test]
fn keep_last_ready_keeps_the_last_ready_hosts_when_every_host_fails() {
    let plan = planned(json!({"allHostsDown": "KeepLastReady"}), json!({}));
    // Hosts 1 and 3 were ready last; 2 and 4 were already out.
    let last_ready = BTreeMap::from([
        (target("web", HOSTS[0]), true),
        (target("web", HOSTS[1]), false),
        (target("web", HOSTS[2]), true),
    ]);
    let outcome = decide(&plan, &web_health(0), &last_ready, &BTreeSet::new());
    assert_eq!(ready_hosts(&outcome), vec![HOSTS[0], HOSTS[2]]);
    let web = report(&outcome, "web");
    assert_eq!(web.triggered, Some(REASON_ALL_HOSTS_DOWN));
    assert_eq!(web.kept, vec![ip(HOSTS[0]), ip(HOSTS[2])]);
    assert_eq!((web.healthy, web.probed), (0, 4));
    // The kept hosts' own verdict is untouched apart from the state.
    let kept = &outcome.health[&target("web", HOSTS[0])];
    assert_eq!(kept.message, "tcp connect: connection refused");
    let conditions = outcome.conditions();
    assert_eq!(conditions.len(), 1);
    assert_eq!(conditions[0].type_, CONDITION_FAILING_OPEN);
    assert_eq!(conditions[0].status, "True");
    assert_eq!(conditions[0].reason, REASON_ALL_HOSTS_DOWN);
    assert!(
        conditions[0]
            .message
            .contains("port web keeps 2 last-ready host(s) with 0/4 healthy"),
        "{}",
        conditions[0].message
    );
}

#[test]
fn keep_last_ready_changes_nothing_while_one_host_is_healthy() {
    let plan = planned(json!({"allHostsDown": "KeepLastReady"}), json!({}));
    let health = web_health(1);
    let outcome = decide(&plan, &health, &all_last_ready(), &BTreeSet::new());
    assert_eq!(outcome.health, health);
    assert_eq!(report(&outcome, "web").triggered, None);
    assert!(outcome.conditions().is_empty());
}

#[test]
fn nothing_is_kept_when_nothing_was_ready_and_that_is_not_failing_open() {
    let plan = planned(json!({"allHostsDown": "KeepLastReady"}), json!({}));
    let outcome = decide(&plan, &web_health(0), &BTreeMap::new(), &BTreeSet::new());
    assert!(ready_hosts(&outcome).is_empty());
    let web = report(&outcome, "web");
    assert_eq!(web.triggered, Some(REASON_ALL_HOSTS_DOWN));
    assert!(!web.failing_open());
    assert!(outcome.conditions().is_empty());
}

#[test]
fn pending_hosts_count_as_not_healthy_and_are_kept_only_if_listed_ready() {
    let plan = planned(json!({"allHostsDown": "KeepLastReady"}), json!({}));
    let mut health = web_health(0);
    for h in &HOSTS[2..] {
        health.get_mut(&target("web", h)).expect("known").state = HealthState::Pending;
    }
    let last_ready = BTreeMap::from([(target("web", HOSTS[0]), true)]);
    let outcome = decide(&plan, &health, &last_ready, &BTreeSet::new());
    assert_eq!(ready_hosts(&outcome), vec![HOSTS[0]]);
}

#[test]
fn a_host_removed_from_the_spec_is_never_kept() {
    let plan = planned(json!({"allHostsDown": "KeepLastReady"}), json!({}));
    let mut last_ready = all_last_ready();
    last_ready.insert(target("web", "198.18.9.99"), true);
    let outcome = decide(&plan, &web_health(0), &last_ready, &BTreeSet::new());
    assert!(!outcome.health.contains_key(&target("web", "198.18.9.99")));
    assert_eq!(report(&outcome, "web").kept.len(), HOSTS.len());
}

#[test]
fn the_last_ready_set_is_read_from_the_live_slices() {
    // What a previous reconcile (or a previous controller process) wrote.
    let plan = planned(json!({"allHostsDown": "KeepLastReady"}), json!({}));
    let written = endpoint_slices(&owner(), &plan, &web_health(2), CONTROLLER_ID, &[]);
    let live: Vec<&k8s_openapi::api::discovery::v1::EndpointSlice> = written.iter().collect();
    let outcome = apply(&plan, &web_health(0), &live, &BTreeSet::new());
    assert_eq!(ready_hosts(&outcome), vec![HOSTS[0], HOSTS[1]]);
    // Written again from the kept health, the slices are unchanged.
    let again = endpoint_slices(&owner(), &plan, &outcome.health, CONTROLLER_ID, &live);
    assert_eq!(again, written);
}

#[test]
fn panic_threshold_keeps_the_last_ready_hosts_below_the_share() {
    let plan = planned(json!({"panicThresholdPercent": 50}), json!({}));
    let outcome = decide(&plan, &web_health(1), &all_last_ready(), &BTreeSet::new());
    assert_eq!(ready_hosts(&outcome), HOSTS.to_vec());
    let web = report(&outcome, "web");
    assert_eq!(web.triggered, Some(REASON_PANIC_THRESHOLD));
    assert_eq!(web.kept.len(), 3, "the healthy host needs no keeping");
    let conditions = outcome.conditions();
    assert_eq!(conditions[0].reason, REASON_PANIC_THRESHOLD);
    assert!(conditions[0].message.contains("1/4 healthy"));
}

#[test]
fn panic_threshold_is_not_reached_at_exactly_the_share() {
    let plan = planned(json!({"panicThresholdPercent": 50}), json!({}));
    let health = web_health(2);
    let outcome = decide(&plan, &health, &all_last_ready(), &BTreeSet::new());
    assert_eq!(outcome.health, health);
    assert_eq!(report(&outcome, "web").triggered, None);
}

#[test]
fn panic_threshold_with_every_host_down_keeps_them_too() {
    let plan = planned(json!({"panicThresholdPercent": 1}), json!({}));
    let outcome = decide(&plan, &web_health(0), &all_last_ready(), &BTreeSet::new());
    assert_eq!(ready_hosts(&outcome), HOSTS.to_vec());
    assert_eq!(
        report(&outcome, "web").triggered,
        Some(REASON_PANIC_THRESHOLD)
    );
}

#[test]
fn trigger_boundaries() {
    let keep = FailOpenPolicy {
        keep_last_ready: true,
        panic_threshold_percent: 0,
    };
    assert_eq!(keep.trigger(0, 3), Some(REASON_ALL_HOSTS_DOWN));
    assert_eq!(keep.trigger(1, 3), None);
    assert_eq!(keep.trigger(0, 0), None, "no hosts, nothing to keep");
    let panic = |p| FailOpenPolicy {
        keep_last_ready: false,
        panic_threshold_percent: p,
    };
    assert_eq!(panic(34).trigger(1, 3), Some(REASON_PANIC_THRESHOLD));
    assert_eq!(panic(33).trigger(1, 3), None);
    assert_eq!(panic(100).trigger(3, 3), None);
    assert_eq!(panic(100).trigger(2, 3), Some(REASON_PANIC_THRESHOLD));
    assert_eq!(FailOpenPolicy::default().trigger(0, 3), None);
    let both = FailOpenPolicy {
        keep_last_ready: true,
        panic_threshold_percent: 50,
    };
    assert_eq!(both.trigger(0, 4), Some(REASON_ALL_HOSTS_DOWN));
    assert_eq!(both.trigger(1, 4), Some(REASON_PANIC_THRESHOLD));
}

#[test]
fn a_port_overrides_the_object_policy_field_by_field() {
    let plan = planned(
        json!({"allHostsDown": "KeepLastReady", "panicThresholdPercent": 50}),
        json!({"allHostsDown": "FailClosed"}),
    );
    let web = &crate::testing::port(&plan, "web").fail_open;
    assert_eq!(
        *web,
        FailOpenPolicy {
            keep_last_ready: false,
            panic_threshold_percent: 50,
        }
    );
    let plan = planned(json!({}), json!({"allHostsDown": "KeepLastReady"}));
    assert!(crate::testing::port(&plan, "web").fail_open.keep_last_ready);
    assert!(
        !crate::testing::port(&plan, "static")
            .fail_open
            .keep_last_ready
    );
}

#[test]
fn extra_target_ports_share_their_spec_ports_policy() {
    let plan = planned(
        json!({}),
        json!({"allHostsDown": "KeepLastReady", "additionalTargetPorts": [8081]}),
    );
    assert!(
        crate::testing::port(&plan, "web-8081")
            .fail_open
            .keep_last_ready
    );
}

#[test]
fn static_ports_are_neither_reported_nor_changed() {
    let plan = planned(json!({"allHostsDown": "KeepLastReady"}), json!({}));
    let outcome = decide(&plan, &web_health(0), &all_last_ready(), &BTreeSet::new());
    assert_eq!(outcome.ports.len(), 1);
    assert_eq!(outcome.ports[0].port, "web");
}

#[test]
fn invalid_policies_name_the_field() {
    let spec = |object: Value, port: Value| -> ClusterEndpointSpec {
        let mut web = json!({"name": "web", "port": 80, "targetPort": 80, "hosts": HOSTS});
        merge(&mut web, port);
        let mut spec = json!({"ports": [web]});
        merge(&mut spec, object);
        serde_json::from_value(spec).expect("deserialises")
    };
    for (object, port, expected) in [
        (
            json!({"allHostsDown": "KeepAll"}),
            json!({}),
            "spec.allHostsDown: must be FailClosed or KeepLastReady, got \"KeepAll\"",
        ),
        (
            json!({}),
            json!({"panicThresholdPercent": 101}),
            "spec.ports[0].panicThresholdPercent: must be between 0 and 100, got 101",
        ),
        (
            json!({"panicThresholdPercent": -1}),
            json!({}),
            "spec.panicThresholdPercent: must be between 0 and 100, got -1",
        ),
    ] {
        let err = plan("web", &spec(object, port))
            .expect_err("invalid")
            .to_string();
        assert!(err.contains(expected), "{err}");
    }
}

#[test]
fn held_targets_stay_ready_and_raise_the_fleet_guard_condition() {
    let plan = planned(json!({}), json!({}));
    let held = BTreeSet::from([target("web", HOSTS[2]), target("web", HOSTS[3])]);
    let outcome = decide(&plan, &web_health(1), &BTreeMap::new(), &held);
    assert_eq!(ready_hosts(&outcome), vec![HOSTS[0], HOSTS[2], HOSTS[3]]);
    assert_eq!(
        report(&outcome, "web").held,
        vec![ip(HOSTS[2]), ip(HOSTS[3])]
    );
    let conditions = outcome.conditions();
    assert_eq!(conditions.len(), 1);
    assert_eq!(conditions[0].type_, CONDITION_FLEET_GUARD);
    assert_eq!(conditions[0].reason, REASON_FLEET_GUARD_FROZEN);
    assert!(conditions[0].message.contains("port web: 2 host(s)"));
}

#[test]
fn a_held_target_that_is_healthy_needs_no_holding() {
    let plan = planned(json!({}), json!({}));
    let held = BTreeSet::from([target("web", HOSTS[0])]);
    let outcome = decide(&plan, &web_health(4), &BTreeMap::new(), &held);
    assert!(report(&outcome, "web").held.is_empty());
    assert!(outcome.conditions().is_empty());
}

#[test]
fn events_say_when_failing_open_starts_changes_and_ends() {
    let plan = planned(
        json!({"allHostsDown": "KeepLastReady", "panicThresholdPercent": 50}),
        json!({}),
    );
    let last = all_last_ready();
    let none = BTreeSet::new();
    let panic = decide(&plan, &web_health(1), &last, &none).conditions();
    let all_down = decide(&plan, &web_health(0), &last, &none).conditions();

    let started = events(&[], &panic);
    assert_eq!(started.len(), 1);
    assert_eq!(started[0].type_, EventType::Warning);
    assert_eq!(started[0].reason, REASON_PANIC_THRESHOLD);
    assert!(events(&panic, &panic).is_empty(), "no news, no Event");
    let worse = events(&panic, &all_down);
    assert_eq!(worse.len(), 1);
    assert_eq!(worse[0].reason, REASON_ALL_HOSTS_DOWN);
    let ended = events(&all_down, &[]);
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].type_, EventType::Normal);
    assert_eq!(ended[0].reason, REASON_FAIL_OPEN_ENDED);
}

#[test]
fn events_say_when_the_fleet_guard_holds_and_lets_go() {
    let plan = planned(json!({}), json!({}));
    let held = BTreeSet::from([target("web", HOSTS[3])]);
    let frozen = decide(&plan, &web_health(3), &BTreeMap::new(), &held).conditions();
    let raised = events(&[], &frozen);
    assert_eq!(raised.len(), 1);
    assert_eq!(raised[0].type_, EventType::Warning);
    assert_eq!(raised[0].reason, REASON_FLEET_GUARD_FROZEN);
    let thawed = events(&frozen, &[]);
    assert_eq!(thawed[0].type_, EventType::Normal);
    assert_eq!(thawed[0].reason, REASON_FLEET_GUARD_THAWED);
}

/// The status written for `plan` with `health`, plus `conditions`.
fn status_of(
    plan: &Plan,
    health: &BTreeMap<TargetId, Health>,
    conditions: Vec<kube_endpoints_api::Condition>,
) -> kube_endpoints_api::ClusterEndpointStatus {
    let mut status = crate::testing::synced_status(1, plan, health, None, "2026-11-26T00:00:00Z");
    status.conditions.extend(conditions);
    status
}

#[test]
fn hosts_kept_ready_start_failing_after_a_restart() {
    let plan = planned(json!({"allHostsDown": "KeepLastReady"}), json!({}));
    let last = all_last_ready();
    let outcome = decide(&plan, &web_health(0), &last, &BTreeSet::new());
    let previous = status_of(&plan, &web_health(0), outcome.conditions());
    // The slices list every host ready (kept), so the seed says ready.
    let mut seed = last.clone();
    reseed(&mut seed, &plan, Some(&previous));
    assert!(seed.values().all(|ready| !ready), "{seed:?}");
    // Not failing open before: the seed stands.
    let previous = status_of(&plan, &web_health(0), Vec::new());
    let mut seed = last.clone();
    reseed(&mut seed, &plan, Some(&previous));
    assert_eq!(seed, last);
    // A port without a policy is never reseeded.
    let closed = planned(json!({}), json!({}));
    let previous = status_of(&closed, &web_health(0), outcome.conditions());
    let mut seed = last.clone();
    reseed(&mut seed, &closed, Some(&previous));
    assert_eq!(seed, last);
}
