use kube_endpoints_api::ClusterEndpointSpec;
use kube_endpoints_probe::HealthState;
use serde_json::json;

use super::*;
use crate::plan::plan;
use crate::testing::*;

fn spec_plan(hosts: serde_json::Value) -> Plan {
    let spec: ClusterEndpointSpec = serde_json::from_value(json!({"ports": [
        {"name": "p", "port": 80, "targetPort": 80, "hosts": hosts, "tcpSocket": {"enable": true}}
    ]}))
    .expect("spec");
    plan("obj", &spec).expect("valid")
}

fn status_of(
    plan: &Plan,
    health: &BTreeMap<TargetId, Health>,
    by: &BTreeMap<String, String>,
) -> ClusterEndpointStatus {
    let mut status = synced_status(1, plan, health, None, "2026-11-26T00:00:00Z");
    fill(&mut status, plan, health, by);
    status
}

#[test]
fn drained_hosts_are_listed_with_who_drained_them() {
    let plan = spec_plan(json!(["198.18.0.1", {"address": "198.18.0.2", "drain": true}]));
    let annotations = BTreeMap::from([(
        ANNOTATION_DRAINED_BY.to_string(),
        r#"{"198.18.0.2": "alice"}"#.to_string(),
    )]);
    let by = drained_by(Some(&annotations));
    let status = status_of(&plan, &health_all(&plan, HealthState::Ready), &by);
    assert_eq!(
        status.ports[0].drained,
        vec![DrainedHost {
            host: "198.18.0.2".into(),
            by: Some("alice".into())
        }]
    );
    // A bad annotation only loses the name.
    let bad = BTreeMap::from([(ANNOTATION_DRAINED_BY.to_string(), "{".to_string())]);
    assert!(drained_by(Some(&bad)).is_empty());
}

#[test]
fn drain_and_promotion_events_once_per_change() {
    let plan = spec_plan(json!([
        {"address": "198.18.0.1", "drain": true},
        {"address": "198.18.0.9", "priority": 1},
    ]));
    let status = status_of(
        &plan,
        &health_all(&plan, HealthState::Ready),
        &BTreeMap::new(),
    );
    assert_eq!(
        status.ports[0].backups_in_rotation,
        vec!["198.18.0.9".to_string()]
    );
    let now = roles(&status);
    let first = events(&BTreeSet::new(), &now, &status);
    let reasons: Vec<&str> = first.iter().map(|e| e.reason.as_str()).collect();
    assert_eq!(reasons, ["HostDrained", "BackupPromoted"]);
    assert!(events(&now, &now, &status).is_empty(), "nothing new");
    // Undrained: the primary is back, the backup steps down.
    let plan = spec_plan(json!(["198.18.0.1", {"address": "198.18.0.9", "priority": 1}]));
    let after = status_of(
        &plan,
        &health_all(&plan, HealthState::Ready),
        &BTreeMap::new(),
    );
    let reasons: Vec<String> = events(&now, &roles(&after), &after)
        .into_iter()
        .map(|e| e.reason)
        .collect();
    assert_eq!(reasons, ["HostUndrained", "BackupDemoted"]);
}
