use std::time::UNIX_EPOCH;

use kube_endpoints_api::{CONDITION_SYNC_SERVICE, Phase};
use kube_endpoints_probe::{Health, TargetId};

use super::*;

fn transition(from: HealthState, to: HealthState, message: &str) -> Transition<&'static str> {
    Transition {
        owner: "default/db",
        target: TargetId {
            port: "pg".into(),
            host: "198.18.0.2".parse().expect("ip"),
        },
        from,
        to: Health {
            state: to,
            since: UNIX_EPOCH,
            message: message.into(),
        },
    }
}

#[test]
fn a_host_leaving_rotation_is_a_warning_naming_host_port_and_why() {
    let event = host_transition_event(&transition(
        HealthState::Ready,
        HealthState::NotReady,
        "tcp connect: connection refused",
    ))
    .expect("news");
    assert_eq!(event.type_, EventType::Warning);
    assert_eq!(event.reason, "HostUnhealthy");
    assert_eq!(
        event.note.as_deref(),
        Some(
            "host 198.18.0.2 port pg is unhealthy and out of rotation: tcp connect: connection refused"
        )
    );
    assert_eq!(event.action, "Probe/pg/198.18.0.2");
    // A new host failing its first probes is news too.
    assert!(
        host_transition_event(&transition(
            HealthState::Pending,
            HealthState::NotReady,
            "x"
        ))
        .is_some()
    );
}

#[test]
fn a_host_returning_is_normal_and_a_new_host_becoming_ready_is_silent() {
    let back = host_transition_event(&transition(HealthState::NotReady, HealthState::Ready, ""))
        .expect("news");
    assert_eq!(
        (back.type_, back.reason.as_str()),
        (EventType::Normal, "HostHealthy")
    );
    assert!(
        host_transition_event(&transition(HealthState::Pending, HealthState::Ready, "")).is_none()
    );
    assert!(
        host_transition_event(&transition(HealthState::Ready, HealthState::Pending, "")).is_none()
    );
}

#[test]
fn notes_are_cut_to_the_api_limit_on_a_character_boundary() {
    let long = "é".repeat(NOTE_MAX);
    let event = host_transition_event(&transition(
        HealthState::Ready,
        HealthState::NotReady,
        &long,
    ))
    .expect("news");
    let note = event.note.expect("note");
    assert!(note.len() <= NOTE_MAX + "…".len(), "{}", note.len());
    assert!(note.ends_with('…'));
    assert_eq!(truncate("short", NOTE_MAX), "short");
}

fn status(conditions: &[(&str, &str, &str, &str)]) -> ClusterEndpointStatus {
    ClusterEndpointStatus {
        observed_generation: Some(1),
        phase: Some(Phase::UnHealthy),
        ready: None,
        conditions: conditions
            .iter()
            .map(|(type_, status, reason, message)| Condition {
                type_: (*type_).into(),
                status: (*status).into(),
                reason: (*reason).into(),
                message: (*message).into(),
                last_transition_time: String::new(),
                last_heartbeat_time: None,
            })
            .collect(),
        ports: Vec::new(),
    }
}

#[test]
fn a_condition_turning_false_is_announced_once() {
    let refused = status(&[
        (
            CONDITION_SYNC_SERVICE,
            "False",
            "ServiceHasSelector",
            "has a selector",
        ),
        (
            CONDITION_READY,
            "False",
            "ServiceHasSelector",
            "has a selector",
        ),
    ]);
    let events = condition_events(&[], &refused);
    let summary: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e.reason.as_str(), e.action.as_str()))
        .collect();
    assert_eq!(summary, [("ServiceHasSelector", CONDITION_SYNC_SERVICE)]);
    assert_eq!(events[0].type_, EventType::Warning);
    // The same condition again: nothing new to say.
    assert!(condition_events(&refused.conditions, &refused).is_empty());
    // Another reason is news again; a true condition never is.
    let other = status(&[(
        CONDITION_SYNC_SERVICE,
        "False",
        "ServiceTypeConflict",
        "NodePort",
    )]);
    assert_eq!(condition_events(&refused.conditions, &other).len(), 1);
    let fixed = status(&[(CONDITION_SYNC_SERVICE, "True", "SyncServiceReady", "ok")]);
    assert!(condition_events(&refused.conditions, &fixed).is_empty());
}
