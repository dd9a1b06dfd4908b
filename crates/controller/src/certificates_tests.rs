use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kube::runtime::events::EventType;
use kube_endpoints_probe::HealthState;

use super::*;
use crate::testing::*;

const DAY: u64 = 86_400;

/// The wordpress example's status with `certificates` filled in, warning
/// 14 days ahead of `at(0)`.
fn filled(certificates: &BTreeMap<TargetId, SystemTime>) -> ClusterEndpointStatus {
    let plan = wordpress_plan();
    let health = health_all(&plan, HealthState::Ready);
    let mut s = synced_status(1, &plan, &health, None, "2026-11-24T10:00:00Z");
    fill(&mut s, &plan, certificates, None, Some(at(14 * DAY)));
    s
}

fn port<'a>(s: &'a ClusterEndpointStatus, name: &str) -> &'a kube_endpoints_api::PortStatus {
    s.ports.iter().find(|p| p.name == name).expect("port")
}

#[test]
fn certificates_are_listed_per_port_earliest_first() {
    let certificates = BTreeMap::from([
        (target("wp-https", "10.33.40.151"), at(30 * DAY)),
        (target("wp-https", "10.33.40.152"), at(3 * DAY)),
        // A target of a port or host the plan does not have is ignored.
        (target("wp-https", "10.33.40.153"), at(DAY)),
    ]);
    let s = filled(&certificates);
    let https = port(&s, "wp-https");
    let listed: Vec<(&str, bool)> = https
        .certificates
        .iter()
        .map(|c| (c.host.as_str(), c.expires_soon))
        .collect();
    assert_eq!(listed, [("10.33.40.152", true), ("10.33.40.151", false)]);
    assert_eq!(https.certificates[0].not_after, rfc3339(at(3 * DAY)));
    assert_eq!(https.certificates_omitted, None);
    assert!(port(&s, "wp-http").certificates.is_empty(), "no TLS there");
    let json = serde_json::to_value(https).expect("json");
    assert_eq!(json["certificates"][0]["expiresSoon"], true);
    assert!(json["certificates"][1].get("expiresSoon").is_none());
}

#[test]
fn the_list_is_bounded() {
    let hosts: Vec<String> = (1..=30).map(|i| format!("198.18.3.{i}")).collect();
    let spec: kube_endpoints_api::ClusterEndpointSpec = serde_json::from_value(serde_json::json!({
        "ports": [{"name": "tls", "port": 443, "targetPort": 443, "hosts": hosts,
                   "tcpSocket": {"enable": true, "tls": {}}}]
    }))
    .expect("spec");
    let plan = crate::plan::plan("many", &spec).expect("valid");
    let certificates: BTreeMap<TargetId, SystemTime> = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| (target("tls", h), at(DAY * (100 - i as u64))))
        .collect();
    let mut s = ClusterEndpointStatus {
        ports: vec![kube_endpoints_api::PortStatus {
            name: "tls".into(),
            probe: "tcp".into(),
            ready: 30,
            total: 30,
            ..kube_endpoints_api::PortStatus::default()
        }],
        ..ClusterEndpointStatus::default()
    };
    fill(&mut s, &plan, &certificates, None, None);
    let listed = &s.ports[0].certificates;
    assert_eq!(listed.len(), MAX_CERTIFICATES_LISTED);
    assert_eq!(s.ports[0].certificates_omitted, Some(10));
    assert_eq!(listed[0].host, "198.18.3.30", "the earliest expiry first");
    assert!(listed.iter().all(|c| !c.expires_soon), "no warning window");
}

#[test]
fn an_event_only_when_a_certificate_enters_the_window() {
    let soon = BTreeMap::from([(target("wp-https", "10.33.40.152"), at(3 * DAY))]);
    let first = expiring(&filled(&soon));
    assert_eq!(first.len(), 1);
    let events = events(&BTreeSet::new(), &first, 14);
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(
        (e.type_, e.reason.as_str()),
        (EventType::Warning, REASON_EXPIRING)
    );
    let note = e.note.as_deref().expect("note");
    assert!(
        note.contains("10.33.40.152") && note.contains("wp-https") && note.contains("14 days"),
        "{note}"
    );
    // Announced already: nothing more.
    assert!(self::events(&first, &first, 14).is_empty());
    // A second host entering the window is news; the first is not repeated.
    let both = BTreeMap::from([
        (target("wp-https", "10.33.40.152"), at(3 * DAY)),
        (target("wp-https", "10.33.40.151"), at(5 * DAY)),
    ]);
    let later = self::events(&first, &expiring(&filled(&both)), 14);
    assert_eq!(later.len(), 1);
    let note = later[0].note.as_deref().expect("note");
    assert!(
        note.contains("1 host(s)") && note.contains("10.33.40.151"),
        "{note}"
    );
    // Far from expiry: no Event.
    let far = BTreeMap::from([(target("wp-https", "10.33.40.152"), at(300 * DAY))]);
    assert!(expiring(&filled(&far)).is_empty());
}

#[test]
fn the_next_crossing_is_when_a_certificate_enters_the_window() {
    let warning = Duration::from_secs(14 * DAY);
    let certificates = BTreeMap::from([
        (target("a", "198.18.0.1"), at(20 * DAY)),
        (target("a", "198.18.0.2"), at(40 * DAY)),
        // Inside the window already: reported, nothing to wait for.
        (target("a", "198.18.0.3"), at(DAY)),
    ]);
    assert_eq!(
        next_crossing(&certificates, warning, at(0)),
        Some(Duration::from_secs(6 * DAY))
    );
    assert_eq!(next_crossing(&BTreeMap::new(), warning, at(0)), None);
}

#[test]
fn a_restart_keeps_listed_certificates_until_probes_see_them_again() {
    let plan = wordpress_plan();
    let before = filled(&BTreeMap::from([
        (target("wp-https", "10.33.40.151"), at(3 * DAY)),
        (target("wp-https", "10.33.40.152"), at(30 * DAY)),
    ]));
    // Restarted: the probe engine knows one certificate so far, a renewed one.
    let mut after = before.clone();
    for p in &mut after.ports {
        p.certificates.clear();
    }
    let renewed = BTreeMap::from([(target("wp-https", "10.33.40.151"), at(90 * DAY))]);
    fill(
        &mut after,
        &plan,
        &renewed,
        Some(&before),
        Some(at(14 * DAY)),
    );
    let listed: Vec<(&str, bool)> = port(&after, "wp-https")
        .certificates
        .iter()
        .map(|c| (c.host.as_str(), c.expires_soon))
        .collect();
    assert_eq!(listed, [("10.33.40.152", false), ("10.33.40.151", false)]);
    // Nothing new at all: the status is the previous one.
    let mut same = before.clone();
    fill(
        &mut same,
        &plan,
        &BTreeMap::new(),
        Some(&before),
        Some(at(14 * DAY)),
    );
    assert_eq!(same, before);
    assert!(events(&expiring(&before), &expiring(&same), 14).is_empty());
}
