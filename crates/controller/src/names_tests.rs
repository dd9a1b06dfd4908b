use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use kube_endpoints_api::ClusterEndpointSpec;
use kube_endpoints_probe::{GrpcProbe, HttpGet, Probe, TargetId, TcpProbe, TlsConfig};
use serde_json::json;

use super::*;
use crate::plan::{parse_host, plan};
use crate::policy::{AddressPolicy, restrict};
use crate::policy::{ClusterRanges, RangeKind};
use crate::resolve::{Failure, Resolution};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn spec(v: serde_json::Value) -> ClusterEndpointSpec {
    serde_json::from_value(v).unwrap()
}

/// The plan of one port `pg` (5432) on `hosts`, with `extra` fields.
fn pg_plan(hosts: &[&str], extra: serde_json::Value) -> Plan {
    let mut port = json!({"name": "pg", "port": 5432, "targetPort": 5432, "hosts": hosts});
    for (k, v) in extra.as_object().unwrap() {
        port[k] = v.clone();
    }
    plan("db", &spec(json!({ "ports": [port] }))).unwrap()
}

fn resolved(entries: &[(&str, &[&str])]) -> Resolutions {
    entries
        .iter()
        .map(|(name, addresses)| {
            (
                name.to_string(),
                Resolution {
                    addresses: addresses.iter().map(|a| ip(a)).collect(),
                    resolved_at: Some(SystemTime::UNIX_EPOCH),
                    failure: None,
                },
            )
        })
        .collect()
}

#[test]
fn host_strings_are_ip_literals_or_lower_case_dns_names() {
    assert_eq!(
        parse_host("198.18.0.2"),
        Ok(Host::Address(ip("198.18.0.2")))
    );
    assert_eq!(
        parse_host("db.example.com"),
        Ok(Host::Name("db.example.com".into()))
    );
    assert_eq!(parse_host("db"), Ok(Host::Name("db".into())));
    let label = "a".repeat(63);
    let longest = format!("{label}.{label}.{label}.{}", "b".repeat(61));
    assert_eq!(longest.len(), 253);
    assert_eq!(parse_host(&longest), Ok(Host::Name(longest.clone())));
    for bad in [
        "127.1",
        "0x7f.1",
        "db.1",
        "db.1a",
        "1.2.3",
        "x@db",
        "x@127.0.0.1",
        "DB.example.com",
        "db.example.com.",
        "-db",
        "db..com",
        "[fd00::1]",
        "a:b",
        "db:80",
        "127.0.0.1",
        "fe80::1",
        "",
        &"a".repeat(64),
        &format!("{label}.{label}.{label}.{}", "b".repeat(62)),
    ] {
        assert!(parse_host(bad).is_err(), "{bad:?} must be refused");
    }
}

#[test]
fn plan_keeps_names_out_of_hosts_and_expand_adds_their_addresses() {
    let plan = pg_plan(
        &["198.18.0.9", "db.test", "198.18.0.2"],
        json!({"resolvePeriodSeconds": 7}),
    );
    let port = &plan.ports[0];
    assert_eq!(port.hosts, vec![ip("198.18.0.2"), ip("198.18.0.9")]);
    assert_eq!(port.names, vec!["db.test".to_string()]);
    assert_eq!(port.resolve_period, Duration::from_secs(7));
    assert_eq!(
        wanted(&plan),
        [("db.test".to_string(), Duration::from_secs(7))].into()
    );

    let expanded = expand(
        plan.clone(),
        &resolved(&[("db.test", &["198.18.0.9", "198.18.0.5", "fd00:6b65::5"])]),
    );
    let port = &expanded.ports[0];
    // Sorted, and the address that is also a literal is one host.
    assert_eq!(
        port.hosts,
        vec![
            ip("198.18.0.2"),
            ip("198.18.0.5"),
            ip("198.18.0.9"),
            ip("fd00:6b65::5")
        ]
    );
    // Only the addresses that come from the name alone carry it.
    assert_eq!(
        port.named,
        [
            (ip("198.18.0.5"), "db.test".to_string()),
            (ip("fd00:6b65::5"), "db.test".to_string())
        ]
        .into()
    );
    assert_eq!(expanded.targets().len(), 0, "a static port is not probed");

    assert!(!pending(&expanded));
    // Never resolved: the name contributes nothing, and is pending.
    let unresolved = expand(plan, &Resolutions::new());
    assert!(pending(&unresolved));
    assert_eq!(
        unresolved.ports[0].hosts,
        vec![ip("198.18.0.2"), ip("198.18.0.9")]
    );
    assert!(unresolved.ports[0].named.is_empty());
    assert_eq!(
        unresolved.ports[0].resolutions["db.test"],
        Resolution::default()
    );
}

#[test]
fn the_default_resolve_period_is_the_objects_else_thirty_seconds() {
    let p = plan(
        "db",
        &spec(json!({"resolvePeriodSeconds": 12, "ports": [
            {"name": "a", "port": 1, "targetPort": 1, "hosts": ["a.test"]},
            {"name": "b", "port": 2, "targetPort": 2, "hosts": ["a.test"], "resolvePeriodSeconds": 3}]})),
    )
    .unwrap();
    assert_eq!(p.ports[0].resolve_period, Duration::from_secs(12));
    assert_eq!(wanted(&p)["a.test"], Duration::from_secs(3));
    let p = plan(
        "db",
        &spec(json!({"ports": [{"name": "a", "port": 1, "targetPort": 1, "hosts": ["a.test"]}]})),
    )
    .unwrap();
    assert_eq!(p.ports[0].resolve_period, Duration::from_secs(30));
    let err = plan(
        "db",
        &spec(json!({"ports": [{"name": "a", "port": 1, "targetPort": 1, "hosts": ["a.test"], "resolvePeriodSeconds": 0}]})),
    )
    .unwrap_err();
    assert!(
        err.0
            .iter()
            .any(|e| e.field == "spec.ports[0].resolvePeriodSeconds"),
        "{err:?}"
    );
}

#[test]
fn a_name_resolving_into_a_denied_range_is_denied_like_a_literal() {
    let plan = pg_plan(&["db.test"], json!({"tcpSocket": {"enable": true}}));
    let mut cluster = ClusterRanges::default();
    cluster.insert("198.19.250.0/24".parse().unwrap(), RangeKind::Service);
    let expanded = expand(
        plan,
        &resolved(&[("db.test", &["198.18.0.2", "198.19.250.7"])]),
    );
    let restricted = restrict(expanded, &AddressPolicy::default(), &cluster);
    let port = &restricted.ports[0];
    assert_eq!(port.hosts, vec![ip("198.18.0.2")]);
    assert_eq!(port.denied.len(), 1);
    assert_eq!(port.denied[0].host, ip("198.19.250.7"));
    let targets = restricted.targets();
    assert_eq!(targets.len(), 1);
    assert!(targets.contains_key(&TargetId {
        port: "pg".into(),
        host: ip("198.18.0.2")
    }));
}

fn probe_of(v: serde_json::Value) -> Probe {
    let mut port = json!({"name": "a", "port": 1, "targetPort": 1, "hosts": ["db.test"]});
    for (k, val) in v.as_object().unwrap() {
        port[k] = val.clone();
    }
    let p = plan("db", &spec(json!({ "ports": [port] }))).unwrap();
    let expanded = expand(p, &resolved(&[("db.test", &["198.18.0.2"])]));
    let targets = expanded.targets();
    let [(_, target)] = targets.into_iter().collect::<Vec<_>>().try_into().unwrap();
    (*target.probe).clone()
}

#[test]
fn the_name_is_the_host_header_and_server_name_unless_the_spec_sets_them() {
    let http = |v| match probe_of(v) {
        Probe::Http(HttpGet { host, .. }) => host,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        http(json!({"httpGet": {"path": "/"}})),
        Some("db.test".into())
    );
    assert_eq!(
        http(json!({"httpGet": {"path": "/", "host": "vhost.test"}})),
        Some("vhost.test".into())
    );
    // A Host header wins over the name (the prober sends the header).
    assert_eq!(
        http(
            json!({"httpGet": {"path": "/", "httpHeaders": [{"name": "Host", "value": "h.test"}]}})
        ),
        None
    );
    let tcp_sni = |v| match probe_of(v) {
        Probe::Tcp(TcpProbe { tls, .. }) => tls.and_then(|t| t.server_name),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        tcp_sni(json!({"tcpSocket": {"enable": true, "tls": {}}})),
        Some("db.test".into())
    );
    assert_eq!(
        tcp_sni(json!({"tcpSocket": {"enable": true, "tls": {"serverName": "other.test"}}})),
        Some("other.test".into())
    );
    assert_eq!(tcp_sni(json!({"tcpSocket": {"enable": true}})), None);
    match probe_of(json!({"grpc": {"enable": true, "tls": {}}})) {
        Probe::Grpc(GrpcProbe {
            tls: Some(TlsConfig { server_name, .. }),
            ..
        }) => assert_eq!(server_name, Some("db.test".into())),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_literal_address_keeps_its_own_probe_even_when_a_name_resolves_to_it() {
    let p = plan(
        "db",
        &spec(json!({"ports": [{"name": "a", "port": 1, "targetPort": 1,
            "hosts": ["db.test", "198.18.0.2"], "httpGet": {"path": "/"}}]})),
    )
    .unwrap();
    let targets = expand(p, &resolved(&[("db.test", &["198.18.0.2"])])).targets();
    assert_eq!(targets.len(), 1);
    match &*targets.values().next().unwrap().probe {
        Probe::Http(get) => assert_eq!(get.host, None),
        other => panic!("{other:?}"),
    }
}

#[test]
fn status_lists_each_name_and_the_condition_says_whether_all_resolved() {
    let p = plan(
        "db",
        &spec(json!({"ports": [{"name": "a", "port": 1, "targetPort": 1, "hosts": ["a.test", "b.test"]}]})),
    )
    .unwrap();
    assert!(names_resolved(&plan("db", &spec(json!({"ports": [{"name": "a", "port": 1, "targetPort": 1, "hosts": ["198.18.0.2"]}]}))).unwrap()).is_none());

    let half = expand(p.clone(), &resolved(&[("a.test", &["198.18.0.2"])]));
    let c = names_resolved(&half).unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("Unknown", "DNSResolutionPending")
    );
    assert!(c.message.contains("b.test"), "{}", c.message);
    let statuses = name_statuses(&half.ports[0], None);
    assert_eq!(statuses[0].addresses, vec!["198.18.0.2".to_string()]);
    assert_eq!(
        statuses[0].resolved_at.as_deref(),
        Some("1970-01-01T00:00:00Z")
    );
    assert!(statuses[1].addresses.is_empty());
    assert_eq!(statuses[1].resolved_at, None);

    let mut down = resolved(&[("a.test", &["198.18.0.2"]), ("b.test", &["198.18.0.3"])]);
    down.get_mut("b.test").unwrap().failure = Some(Failure {
        message: "timed out".into(),
        since: SystemTime::UNIX_EPOCH + Duration::from_secs(60),
    });
    let failing = expand(p.clone(), &down);
    assert!(!pending(&failing), "a failure is an answer");
    // The last good addresses stay in use.
    assert_eq!(failing.ports[0].hosts.len(), 2);
    let c = names_resolved(&failing).unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "DNSResolutionFailed")
    );
    assert!(
        c.message
            .contains("b.test: timed out (keeping its last 1 address(es))"),
        "{}",
        c.message
    );
    let statuses = name_statuses(&failing.ports[0], None);
    assert_eq!(statuses[1].failure.as_deref(), Some("timed out"));
    assert_eq!(
        statuses[1].failed_since.as_deref(),
        Some("1970-01-01T00:01:00Z")
    );

    // Another controller (a restart) resolving the same addresses later,
    // or failing later in the same outage, keeps the times shown.
    let previous = kube_endpoints_api::PortStatus {
        name: "a".into(),
        probe: "none".into(),
        ready: 2,
        total: 2,
        names: statuses.clone(),
        ..kube_endpoints_api::PortStatus::default()
    };
    let mut later = down.clone();
    for r in later.values_mut() {
        r.resolved_at = Some(SystemTime::UNIX_EPOCH + Duration::from_secs(500));
    }
    if let Some(f) = later.get_mut("b.test").unwrap().failure.as_mut() {
        f.since = SystemTime::UNIX_EPOCH + Duration::from_secs(600);
        f.message = "refused".into();
    }
    let again = name_statuses(&expand(p.clone(), &later).ports[0], Some(&previous));
    assert_eq!(again, statuses);
    let mut moved = later.clone();
    moved.get_mut("a.test").unwrap().addresses = vec![ip("198.18.0.4")];
    let changed = name_statuses(&expand(p.clone(), &moved).ports[0], Some(&previous));
    assert_eq!(
        changed[0].resolved_at.as_deref(),
        Some("1970-01-01T00:08:20Z")
    );

    let fine = expand(
        p,
        &resolved(&[("a.test", &["198.18.0.2"]), ("b.test", &["198.18.0.3"])]),
    );
    let c = names_resolved(&fine).unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("True", "NamesResolved")
    );
}
