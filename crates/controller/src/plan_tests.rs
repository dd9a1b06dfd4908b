use super::*;
use crate::testing::{LEGACY, parse, port, wordpress};
use kube_endpoints_api::ClusterEndpoint;

fn errors_of(name: &str, spec: &ClusterEndpointSpec) -> Vec<FieldError> {
    plan(name, spec).expect_err("spec must be rejected").0
}

fn assert_rejected(spec: &ClusterEndpointSpec, field: &str, needle: &str) {
    let errors = errors_of("wordpress", spec);
    assert!(
        errors
            .iter()
            .any(|e| e.field == field && e.message.contains(needle)),
        "expected an error on {field} containing {needle:?}, got {errors:?}"
    );
}

#[test]
fn the_example_plans_four_ports_with_their_probes() {
    let plan = plan("wordpress", &wordpress()).expect("the example is valid");
    let names: Vec<&str> = plan.ports.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["wp-grpc", "wp-http", "wp-https", "wp-udp"]);
    let by_name = |n| port(&plan, n);
    assert_eq!(by_name("wp-https").probe, Some(Probe::tcp()));
    assert_eq!(
        by_name("wp-http").probe,
        Some(Probe::Http(HttpGet {
            scheme: Scheme::Http,
            path: "/healthz".into(),
            host: None,
            headers: vec![],
            ..HttpGet::default()
        }))
    );
    assert_eq!(
        by_name("wp-udp").probe,
        Some(Probe::Udp(UdpProbe {
            data: b"This is flag data for UDP svc test".to_vec(),
            expect: None,
        }))
    );
    assert_eq!(
        by_name("wp-grpc").probe,
        Some(Probe::Grpc(GrpcProbe {
            service: String::new(),
            tls: None,
        }))
    );
    assert_eq!(by_name("wp-udp").protocol, "UDP");
    assert_eq!(by_name("wp-http").period, Duration::from_secs(10));
    assert_eq!(plan.targets().len(), 8);
    assert!(!plan.headless);
}

#[test]
fn defaults_fill_in_what_the_manifest_leaves_out() {
    let spec = parse(LEGACY).spec;
    let plan = plan("wordpress", &spec).expect("the legacy form is valid");
    let http = port(&plan, "http");
    assert_eq!(http.timeout, Duration::from_secs(1));
    assert_eq!(
        http.thresholds,
        Thresholds {
            failure: 3,
            success: 1
        }
    );
    assert_eq!(http.initial_delay, Duration::ZERO);
    assert_eq!(http.protocol, "TCP");
    // Legacy top-level hosts apply to every port that lists none.
    assert!(
        plan.ports
            .iter()
            .all(|p| p.hosts == ["10.33.40.151".parse::<IpAddr>().unwrap()])
    );

    let minimal: ClusterEndpoint = parse(
        "apiVersion: khulnasoft-lab.github.io/v1beta1\nkind: ClusterEndpoint\nmetadata: {name: db}\nspec:\n  ports:\n  - {name: pg, port: 5432, targetPort: 5432, hosts: [198.18.0.2]}\n",
    );
    assert_eq!(minimal.spec.period_seconds, 10);
    let plan = super::plan("db", &minimal.spec).expect("minimal is valid");
    assert_eq!(
        plan.ports[0].probe, None,
        "no handler means a static endpoint"
    );
    assert_eq!(plan.ports[0].probe_label(), "none");
    assert!(plan.targets().is_empty());
}

#[test]
fn per_port_period_and_initial_delay_extend_the_original_schema() {
    let mut spec = wordpress();
    spec.ports[0].period_seconds = Some(2);
    spec.ports[0].initial_delay_seconds = Some(5);
    let plan = plan("wordpress", &spec).expect("valid");
    let https = port(&plan, "wp-https");
    assert_eq!(https.period, Duration::from_secs(2));
    assert_eq!(https.initial_delay, Duration::from_secs(5));
}

#[test]
fn hosts_are_sorted_and_ipv6_accepted() {
    let mut spec = wordpress();
    spec.ports[0].hosts = vec!["fd00::2".into(), "198.18.0.9".into(), "198.18.0.10".into()];
    let plan = plan("wordpress", &spec).expect("valid");
    let https = port(&plan, "wp-https");
    let hosts: Vec<String> = https.hosts.iter().map(ToString::to_string).collect();
    assert_eq!(hosts, ["198.18.0.9", "198.18.0.10", "fd00::2"]);
}

#[test]
fn bad_hosts_are_rejected_naming_the_item() {
    for (host, needle) in [
        ("127.1", "ends in a number"),
        ("0x7f.1", "ends in a number"),
        (
            "x@db.example.com",
            "not an IPv4 or IPv6 address literal nor a lower-case DNS name",
        ),
        ("DB.example.com", "lower-case DNS name"),
        ("10.0.0.300", "ends in a number"),
        ("127.0.0.1", "loopback"),
        ("169.254.1.1", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("::1", "loopback"),
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
    ] {
        let mut spec = wordpress();
        spec.ports[1].hosts = vec!["198.18.0.2".into(), host.into()];
        assert_rejected(&spec, "spec.ports[1].hosts[1]", needle);
    }
    let mut spec = wordpress();
    spec.ports[1].hosts = vec!["198.18.0.2".into(), "198.18.0.2".into()];
    assert_rejected(&spec, "spec.ports[1].hosts[1]", "duplicate host");
    let mut spec = wordpress();
    spec.ports[1].hosts = vec!["db.example.com".into(), "db.example.com".into()];
    assert_rejected(
        &spec,
        "spec.ports[1].hosts[1]",
        "duplicate host db.example.com",
    );
    let mut spec = wordpress();
    spec.ports[1].hosts = (0..1001)
        .map(|i| format!("198.18.{}.{}", i / 250, i % 250 + 1).into())
        .collect();
    assert_rejected(&spec, "spec.ports[1].hosts", "at most 1000");
}

#[test]
fn numeric_bounds_are_enforced() {
    type Setter = fn(&mut ClusterEndpointPort);
    let cases: [(Setter, &str); 8] = [
        (|p| p.port = 0, "spec.ports[0].port"),
        (|p| p.port = 65536, "spec.ports[0].port"),
        (|p| p.target_port = 0, "spec.ports[0].targetPort"),
        (|p| p.target_port = 70000, "spec.ports[0].targetPort"),
        (|p| p.timeout_seconds = 0, "spec.ports[0].timeoutSeconds"),
        (
            |p| p.failure_threshold = 0,
            "spec.ports[0].failureThreshold",
        ),
        (
            |p| p.success_threshold = -1,
            "spec.ports[0].successThreshold",
        ),
        (
            |p| p.period_seconds = Some(0),
            "spec.ports[0].periodSeconds",
        ),
    ];
    for (set, field) in cases {
        let mut spec = wordpress();
        set(&mut spec.ports[0]);
        assert_rejected(&spec, field, "must be between");
    }
    let mut spec = wordpress();
    spec.period_seconds = 0;
    assert_rejected(&spec, "spec.periodSeconds", "must be between 1 and 3600");
}

#[test]
fn structural_rules_are_enforced() {
    type Change = fn(&mut ClusterEndpointSpec);
    let cases: [(Change, &str, &str); 7] = [
        (
            |s| s.ports[1].name = s.ports[0].name.clone(),
            "spec.ports[1].name",
            "duplicate port name",
        ),
        (
            |s| s.ports[1].port = s.ports[0].port,
            "spec.ports[1].port",
            "already used",
        ),
        (
            |s| s.ports[0].name = "Bad_Name".into(),
            "spec.ports[0].name",
            "DNS label",
        ),
        (
            |s| s.ports[0].protocol = "HTTP".into(),
            "spec.ports[0].protocol",
            "TCP, UDP or SCTP",
        ),
        (
            |s| s.ports[0].hosts.clear(),
            "spec.ports[0].hosts",
            "at least one host",
        ),
        (|s| s.ports.clear(), "spec.ports", "at least one port"),
        (
            |s| s.cluster_ip = Some("10.0.0.1".into()),
            "spec.clusterIP",
            "only \"None\"",
        ),
    ];
    for (change, field, needle) in cases {
        let mut spec = wordpress();
        change(&mut spec);
        assert_rejected(&spec, field, needle);
    }

    let errors = errors_of("Word.Press", &wordpress());
    assert!(
        errors.iter().any(|e| e.field == "metadata.name"),
        "{errors:?}"
    );
}

#[test]
fn at_most_one_probe_handler() {
    let mut spec = wordpress();
    spec.ports[0].http_get = Some(HttpGetHandler::default());
    assert_rejected(&spec, "spec.ports[0]", "at most one of");

    // enable: false counts as unset.
    let mut spec = wordpress();
    spec.ports[1].tcp_socket = Some(kube_endpoints_api::TcpSocketHandler {
        enable: false,
        ..Default::default()
    });
    assert!(plan("wordpress", &spec).is_ok());
}

#[test]
fn http_handler_is_normalised_and_checked() {
    let mut spec = wordpress();
    let http = spec.ports[1].http_get.as_mut().expect("http port");
    http.scheme = Some("HTTPS".into());
    http.path = Some("healthz".into());
    http.host = Some("db.internal".into());
    http.http_headers = vec![kube_endpoints_api::HttpHeader {
        name: "X-Probe".into(),
        value: "1".into(),
        value_from: None,
    }];
    let plan = plan("wordpress", &spec).expect("valid");
    assert_eq!(
        port(&plan, "wp-http").probe,
        Some(Probe::Http(HttpGet {
            scheme: Scheme::Https,
            path: "/healthz".into(),
            host: Some("db.internal".into()),
            headers: vec![("X-Probe".into(), "1".into())],
            ..HttpGet::default()
        }))
    );

    let mut spec = wordpress();
    spec.ports[1].http_get.as_mut().expect("http").scheme = Some("ftp".into());
    assert_rejected(&spec, "spec.ports[1].httpGet.scheme", "http or https");

    for (name, value, field, needle) in [
        ("Bad Header", "x", "name", "not a valid HTTP header name"),
        ("X", "a\r\nInjected: 1", "value", "control characters"),
    ] {
        let mut spec = wordpress();
        let header = kube_endpoints_api::HttpHeader {
            name: name.into(),
            value: value.into(),
            value_from: None,
        };
        spec.ports[1].http_get.as_mut().expect("http").http_headers = vec![header];
        let field = format!("spec.ports[1].httpGet.httpHeaders[0].{field}");
        assert_rejected(&spec, &field, needle);
    }
}

#[test]
fn every_error_is_reported_at_once() {
    let mut spec = wordpress();
    spec.ports[0].port = 0;
    spec.ports[2].timeout_seconds = 0;
    let errors = errors_of("wordpress", &spec);
    assert_eq!(errors.len(), 2, "{errors:?}");
    let text = InvalidSpec(errors).to_string();
    assert!(text.contains("spec.ports[0].port") && text.contains("spec.ports[2].timeoutSeconds"));
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

/// Every case of the shared table (also asserted against the apiserver by
/// `tests/admission.rs`) is rejected here too, naming the same field.
#[test]
fn the_admission_cases_are_rejected_by_plan_too() {
    use crate::validation_cases::CASES;
    let failures = not_refused_by_plan(CASES.iter().map(|c| (c.what, c.spec, c.plan_field)));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The cases of a table of bad specs (what, spec lines, field) that
/// `plan()` does not refuse naming their field, as messages.
pub(super) fn not_refused_by_plan<'a>(
    cases: impl Iterator<Item = (&'a str, &'a str, &'a str)>,
) -> Vec<String> {
    let mut failures = Vec::new();
    for (what, spec, field) in cases {
        let yaml = crate::validation_cases::manifest(kube_endpoints_api::GROUP, "bad", spec);
        let cep: ClusterEndpoint = match crate::yaml::documents(&yaml)
            .ok()
            .and_then(|d| d.into_iter().next())
            .map(serde_json::from_value)
        {
            Some(Ok(cep)) => cep,
            // The schema's types already refuse it (e.g. a port above 65535
            // does not fit the field): nothing reaches plan().
            other => {
                failures.push(format!("{what}: does not deserialise: {other:?}"));
                continue;
            }
        };
        match plan("bad", &cep.spec) {
            Ok(_) => failures.push(format!("{what}: accepted")),
            Err(InvalidSpec(errors)) => {
                if !errors.iter().any(|e| e.field == field) {
                    failures.push(format!("{what}: no error on {field}: {errors:?}"));
                }
            }
        }
    }
    failures
}

/// A `Host` header is checked by `plan` only (a CEL rule over header values
/// would exceed the apiserver's cost budget; see the api crate).
#[test]
fn host_headers_must_be_hosts_with_an_optional_port() {
    type Validate = fn(&str) -> Result<(), &'static str>;
    let cases: [(Validate, &[&str], &[&str]); 2] = [
        (
            validate_host_header,
            &[
                "db.internal",
                "db.internal:8443",
                "10.0.0.1:80",
                "[fd00::1]:443",
                "[fd00::1]",
            ],
            &[
                "x@evil:80",
                "db.internal:70000",
                "db.internal:0",
                "fd00::1",
                "127.1",
                "a b",
                "[zz]",
                "",
            ],
        ),
        (
            validate_virtual_host,
            &[
                "db.internal",
                "DB.Internal",
                "1db",
                "10.0.0.1",
                "::1",
                "[::1]",
            ],
            &[
                "%65vil",
                "127.1",
                "0x7f.1",
                "a..b",
                "-a",
                "db.internal:80",
                "x/y",
                "",
            ],
        ),
    ];
    for (validate, good, bad) in cases {
        for ok in good {
            assert_eq!(validate(ok), Ok(()), "{ok}");
        }
        for bad in bad {
            assert!(validate(bad).is_err(), "{bad}");
        }
    }
}

/// The budget block of the shared table, through `plan()`.
#[test]
fn the_budget_cases_are_rejected_by_plan_too() {
    use crate::validation_cases::{budget_cases, manifest};
    for case in budget_cases() {
        let yaml = manifest(kube_endpoints_api::GROUP, "bad", &case.spec);
        let cep: ClusterEndpoint = parse(&yaml);
        let errors = errors_of("bad", &cep.spec);
        assert!(
            errors.iter().any(|e| e.field == case.plan_field),
            "{}: no error on {}: {errors:?}",
            case.what,
            case.plan_field
        );
    }
}

#[test]
fn the_target_cap_counts_hosts_times_target_ports_and_admits_the_limit() {
    // 10 ports × 1000 hosts: exactly the cap.
    let hosts: Vec<String> = (0..1000)
        .map(|i| format!("198.18.{}.{}", i / 250, i % 250 + 1))
        .collect();
    let ports: Vec<serde_json::Value> = (0..10)
        .map(|p| serde_json::json!({"name": format!("p{p}"), "port": 100 + p, "targetPort": 80, "hosts": hosts}))
        .collect();
    let spec: ClusterEndpointSpec =
        serde_json::from_value(serde_json::json!({"ports": ports})).expect("spec");
    let planned = plan("big", &spec).expect("10,000 host-ports are allowed");
    assert_eq!(planned.target_count(), 10_000);
    let mut one_more = spec.clone();
    one_more.ports[0].additional_target_ports = vec![81];
    let errors = errors_of("big", &one_more);
    assert!(
        errors
            .iter()
            .any(|e| e.field == "spec.ports" && e.message.contains("got 11000")),
        "{errors:?}"
    );
}

/// Against the object's period only `plan` checks (see the api crate).
#[test]
fn a_timeout_above_the_objects_period_is_refused_by_plan() {
    let errors = errors_of("a", &three_second_timeout(2));
    assert!(
        errors
            .iter()
            .any(|e| e.field == "spec.ports[0].timeoutSeconds"),
        "{errors:?}"
    );
}

#[test]
fn timeout_may_equal_the_period() {
    assert!(plan("a", &three_second_timeout(3)).is_ok());
}

/// One port probed with a 3 s timeout, every `period_seconds`.
fn three_second_timeout(period_seconds: i32) -> ClusterEndpointSpec {
    serde_json::from_value(serde_json::json!({
        "periodSeconds": period_seconds,
        "ports": [{"name": "a", "port": 80, "targetPort": 80, "hosts": ["198.18.0.2"], "timeoutSeconds": 3}]
    }))
    .expect("spec")
}

/// The CRD's admission rule refuses the headers the prober sets itself:
/// the same list the prober and `plan` use.
#[test]
fn the_crd_refuses_every_header_the_prober_owns() {
    let crd = serde_json::to_string(&kube_endpoints_api::crd_for_group(
        kube_endpoints_api::GROUP,
    ))
    .expect("CRD serialises");
    for header in OWNED_HEADERS {
        assert!(crd.contains(&format!("'{header}'")), "{header}");
    }
}

/// Per-host fields, minReady and the passthrough fields: each bad value is
/// refused naming its field (objects can arrive through a CRD that does
/// not check them, and admission cannot check everything about hosts).
#[test]
fn per_host_and_service_fields_are_checked_naming_the_field() {
    use serde_json::json;
    let with = |extra: serde_json::Value, hosts: serde_json::Value| {
        let mut spec =
            json!({"ports": [{"name": "a", "port": 80, "targetPort": 80, "hosts": hosts}]});
        if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
            s.extend(e.clone());
        }
        serde_json::from_value::<ClusterEndpointSpec>(spec).expect("spec")
    };
    let h = json!(["198.18.0.2"]);
    for (spec, field, text) in [
        (
            with(
                json!({}),
                json!(["198.18.0.1", {"address": "198.18.0.2", "zone": "a b"}]),
            ),
            "spec.ports[0].hosts[1].zone",
            "label value",
        ),
        (
            with(json!({}), json!([{"address": "127.0.0.1"}])),
            "spec.ports[0].hosts[0].address",
            "cannot be an endpoint",
        ),
        (
            with(
                json!({}),
                json!([{"address": "198.18.0.2", "priority": 101}]),
            ),
            "spec.ports[0].hosts[0].priority",
            "between 0 and 100",
        ),
        (
            with(
                json!({}),
                json!([{"address": "198.18.0.2", "hostname": "DB"}]),
            ),
            "spec.ports[0].hosts[0].hostname",
            "DNS label",
        ),
        (
            with(
                json!({}),
                json!([{"address": "198.18.0.2", "hostname": "db"}, {"address": "198.18.0.3", "hostname": "db"}]),
            ),
            "spec.ports[0].hosts[1].hostname",
            "already given to 198.18.0.2",
        ),
        (
            with(json!({}), json!(["198.18.0.2", {"address": "198.18.0.2"}])),
            "spec.ports[0].hosts[1]",
            "duplicate host",
        ),
        (
            with(json!({"sessionAffinity": "Sticky"}), h.clone()),
            "spec.sessionAffinity",
            "None, ClientIP",
        ),
        (
            with(
                json!({"sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 5}}}),
                h.clone(),
            ),
            "spec.sessionAffinityConfig",
            "ClientIP",
        ),
        (
            with(
                json!({"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 0}}}),
                h.clone(),
            ),
            "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
            "between 1 and 86400",
        ),
        (
            with(json!({"internalTrafficPolicy": "Node"}), h.clone()),
            "spec.internalTrafficPolicy",
            "Cluster, Local",
        ),
        (
            with(json!({"trafficDistribution": "Anywhere"}), h.clone()),
            "spec.trafficDistribution",
            "PreferClose",
        ),
        (
            with(json!({"publishNotReadyAddresses": true}), h.clone()),
            "spec.publishNotReadyAddresses",
            "headless",
        ),
        (
            with(json!({"serviceLabels": {"bad key!": "x"}}), h.clone()),
            "spec.serviceLabels[bad key!]",
            "qualified name",
        ),
        (
            with(json!({"serviceLabels": {"team": "a b"}}), h.clone()),
            "spec.serviceLabels[team]",
            "label value",
        ),
        (
            with(json!({"serviceAnnotations": {"/x": "y"}}), h.clone()),
            "spec.serviceAnnotations[/x]",
            "qualified name",
        ),
    ] {
        assert_rejected(&spec, field, text);
    }
    let mut spec = with(json!({}), h);
    spec.ports[0].min_ready = Some(0);
    assert_rejected(&spec, "spec.ports[0].minReady", "between 1 and 1000");
}

/// The same host may carry the same hostname on several ports; attributes
/// are per port, and the legacy spec.hosts carry theirs to every port
/// that lists none.
#[test]
fn host_attributes_are_kept_per_port() {
    let spec: ClusterEndpointSpec = serde_json::from_value(serde_json::json!({
        "hosts": [{"address": "198.18.0.9", "zone": "z", "hostname": "db-9"}],
        "ports": [
            {"name": "a", "port": 80, "targetPort": 80, "minReady": 2, "hosts": [{"address": "198.18.0.9", "hostname": "db-9", "priority": 1}, "198.18.0.1"]},
            {"name": "b", "port": 81, "targetPort": 81},
        ]
    }))
    .expect("spec");
    let plan = plan("obj", &spec).expect("valid");
    let a = port(&plan, "a");
    let b = port(&plan, "b");
    let ip: std::net::IpAddr = "198.18.0.9".parse().expect("ip");
    assert_eq!(a.min_ready, 2);
    assert_eq!(b.min_ready, 1);
    assert_eq!(a.attributes[&ip].priority, 1);
    assert_eq!(a.attributes[&ip].zone, None);
    assert_eq!(b.attributes[&ip].zone.as_deref(), Some("z"));
    assert!(
        !a.attributes
            .contains_key(&"198.18.0.1".parse().expect("ip"))
    );
}
