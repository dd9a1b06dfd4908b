//! `plan()` of the probe options: probe port, schedule, TCP/UDP send and
//! expect, HTTP method, body, statuses and body match; and that manifests
//! written before them keep their meaning.

use super::*;
use crate::testing::{LEGACY, WORDPRESS, parse, port};
use kube_endpoints_api::ClusterEndpoint;
use serde_json::{Value, json};

/// One port on 198.18.0.2 (5432 → 5432) with `extra` merged in.
fn one_port(extra: Value) -> ClusterEndpointSpec {
    let mut p = json!({"name": "pg", "port": 5432, "targetPort": 5432, "hosts": ["198.18.0.2"]});
    for (k, v) in extra.as_object().expect("object") {
        p[k] = v.clone();
    }
    serde_json::from_value(json!({"ports": [p]})).expect("spec deserialises")
}

fn planned(extra: Value) -> PortPlan {
    let plan = plan("db", &one_port(extra.clone()))
        .unwrap_or_else(|e| panic!("{extra} must be valid: {e}"));
    plan.ports[0].clone()
}

fn probe_of(extra: Value) -> Probe {
    planned(extra).probe.expect("a probed port")
}

/// `plan()` refuses `extra` with an error on `field` containing `needle`,
/// and the message never quotes `secret` (a payload or a pattern).
fn refused(extra: Value, field: &str, needle: &str) {
    let errors = plan("db", &one_port(extra.clone()))
        .expect_err(&format!("{extra} must be refused"))
        .0;
    assert!(
        errors
            .iter()
            .any(|e| e.field == field && e.message.contains(needle)),
        "{extra}: expected an error on {field} containing {needle:?}, got {errors:?}"
    );
}

/// The probe a manifest written before these options gets: the kubelet's.
fn assert_old_meaning(p: &PortPlan) {
    assert_eq!(p.probe_port, None, "{}: probe port", p.name);
    assert_eq!(p.intervals, Intervals::default(), "{}: intervals", p.name);
    match &p.probe {
        None => {}
        Some(Probe::Tcp(t)) => assert_eq!(*t, TcpProbe::default(), "{}", p.name),
        Some(Probe::Http(get)) => {
            assert_eq!(get.method, HttpMethod::Get, "{}", p.name);
            assert!(get.body.is_empty(), "{}", p.name);
            assert!(get.expected_statuses.is_empty(), "{}: 200-399", p.name);
            assert_eq!(get.body_match, None, "{}", p.name);
        }
        Some(Probe::Udp(u)) => assert_eq!(u.expect, None, "{}", p.name),
        Some(Probe::Grpc(_)) => {}
    }
}

fn assert_targets_probe_their_target_port(plan: &Plan) {
    for (id, spec) in plan.targets() {
        let port = port(plan, &id.port);
        assert_eq!(spec.probed_port(), port.target_port, "{}", id.port);
        assert_eq!(spec.intervals, Intervals::default(), "{}", id.port);
    }
}

#[test]
fn the_examples_keep_the_kubelets_probes() {
    for (file, yaml) in [("wordpress", WORDPRESS), ("legacy", LEGACY)] {
        let plan = plan("wordpress", &parse(yaml).spec).expect(file);
        assert!(!plan.ports.is_empty());
        for p in &plan.ports {
            assert_old_meaning(p);
        }
        assert_targets_probe_their_target_port(&plan);
    }
    // Every kind of probe is in the wordpress example.
    let plan = plan("wordpress", &parse(WORDPRESS).spec).expect("wordpress");
    let kinds: BTreeSet<&str> = plan.ports.iter().map(PortPlan::probe_label).collect();
    assert_eq!(kinds, BTreeSet::from(["grpc", "http", "tcp", "udp"]));
}

/// The README's manifests: the first (the API reference) keeps the
/// kubelet's meaning; every one is valid.
#[test]
fn the_readmes_manifests_plan() {
    let readme = include_str!("../../../README.md");
    let manifests: Vec<&str> = readme
        .split("```yaml\n")
        .skip(1)
        .filter_map(|block| block.split("```").next())
        .filter(|block| block.contains("kind: ClusterEndpoint"))
        .collect();
    assert!(manifests.len() >= 2, "README has its manifests");
    for (i, yaml) in manifests.iter().enumerate() {
        let cep: ClusterEndpoint = parse(yaml);
        let name = cep.metadata.name.clone().unwrap_or_default();
        let plan = plan(&name, &cep.spec).unwrap_or_else(|e| panic!("README manifest {i}: {e}"));
        if i == 0 {
            for p in &plan.ports {
                assert_old_meaning(p);
            }
            assert_targets_probe_their_target_port(&plan);
        }
    }
}

/// endpoints-operator's byte list for `udpSocket.data` still means the
/// same bytes, with no expectation.
#[test]
fn the_predecessors_udp_byte_list_means_the_same() {
    assert_eq!(
        probe_of(json!({"protocol": "UDP", "udpSocket": {"enable": true, "data": [104, 105]}})),
        Probe::Udp(UdpProbe {
            data: b"hi".to_vec(),
            expect: None
        })
    );
}

#[test]
fn probe_port_sends_probes_elsewhere_and_keeps_the_endpoint_port() {
    let p = planned(json!({"probePort": 8008, "httpGet": {"path": "/primary"}}));
    assert_eq!((p.target_port, p.probe_port), (5432, Some(8008)));
    let plan = plan(
        "db",
        &one_port(json!({"probePort": 8008, "httpGet": {"path": "/primary"}})),
    )
    .expect("valid");
    let spec = plan.targets().into_values().next().expect("one target");
    assert_eq!((spec.target_port, spec.probed_port()), (5432, 8008));

    refused(
        json!({"probePort": 0, "tcpSocket": {"enable": true}}),
        "spec.ports[0].probePort",
        "between 1 and 65535",
    );
    refused(
        json!({"probePort": 65536, "tcpSocket": {"enable": true}}),
        "spec.ports[0].probePort",
        "between 1 and 65535",
    );
    refused(
        json!({"probePort": 8008}),
        "spec.ports[0].probePort",
        "needs a probe",
    );
    refused(
        json!({"probePort": 8008, "tcpSocket": {"enable": false}}),
        "spec.ports[0].probePort",
        "needs a probe",
    );
    refused(
        json!({"probePort": 8008, "tcpSocket": {"enable": true}, "additionalTargetPorts": [5433]}),
        "spec.ports[0].probePort",
        "additionalTargetPorts",
    );
}

#[test]
fn schedule_options_become_intervals() {
    let p = planned(json!({
        "tcpSocket": {"enable": true}, "periodSeconds": 5,
        "unhealthyPeriodSeconds": 30, "jitterPercent": 10, "edgePeriodSeconds": 0
    }));
    assert_eq!(
        p.intervals,
        Intervals {
            unhealthy_period: Some(Duration::from_secs(30)),
            jitter_percent: 10,
            edge_period: Some(Duration::ZERO),
        }
    );
    assert_eq!(p.period, Duration::from_secs(5));
    // What the probe engine gets.
    let plan = plan(
        "db",
        &one_port(json!({"tcpSocket": {"enable": true}, "unhealthyPeriodSeconds": 30, "jitterPercent": 10})),
    )
    .expect("valid");
    let spec = plan.targets().into_values().next().expect("one target");
    assert_eq!(
        spec.intervals.unhealthy_period,
        Some(Duration::from_secs(30))
    );
    assert_eq!(spec.intervals.jitter_percent, 10);
    let p = planned(
        json!({"tcpSocket": {"enable": true}, "edgePeriodSeconds": 2, "jitterPercent": 100}),
    );
    assert_eq!(p.intervals.edge_period, Some(Duration::from_secs(2)));
    assert_eq!(p.intervals.jitter_percent, 100);

    for (extra, field, needle) in [
        (
            json!({"unhealthyPeriodSeconds": 0}),
            "spec.ports[0].unhealthyPeriodSeconds",
            "between 1 and 3600",
        ),
        (
            json!({"unhealthyPeriodSeconds": 3601}),
            "spec.ports[0].unhealthyPeriodSeconds",
            "between 1 and 3600",
        ),
        (
            json!({"jitterPercent": 101}),
            "spec.ports[0].jitterPercent",
            "between 0 and 100",
        ),
        (
            json!({"jitterPercent": -1}),
            "spec.ports[0].jitterPercent",
            "between 0 and 100",
        ),
        (
            json!({"edgePeriodSeconds": -1}),
            "spec.ports[0].edgePeriodSeconds",
            "between 0 and 3600",
        ),
        (
            json!({"edgePeriodSeconds": 3601}),
            "spec.ports[0].edgePeriodSeconds",
            "between 0 and 3600",
        ),
        (
            json!({"unhealthyPeriodSeconds": 2, "timeoutSeconds": 3}),
            "spec.ports[0].timeoutSeconds",
            "must not exceed unhealthyPeriodSeconds",
        ),
    ] {
        let mut extra = extra;
        extra["tcpSocket"] = json!({"enable": true});
        refused(extra, field, needle);
    }
}

#[test]
fn tcp_send_and_expect_accept_text_base64_and_regex() {
    assert_eq!(
        probe_of(
            json!({"tcpSocket": {"enable": true, "send": {"text": "PING\r\n"}, "expect": {"text": "+PONG"}}})
        ),
        Probe::Tcp(TcpProbe {
            send: b"PING\r\n".to_vec(),
            expect: Some(Expect::Contains(b"+PONG".to_vec())),
            ..TcpProbe::default()
        })
    );
    // "ROLE\r\n" in base64, a regex over the reply.
    let Probe::Tcp(t) = probe_of(json!({"tcpSocket": {
        "enable": true, "send": {"base64": "Uk9MRQ0K"}, "expect": {"regex": "^\\*3\\r\\n\\$6\\r\\nmaster"}
    }})) else {
        panic!("a TCP probe");
    };
    assert_eq!(t.send, b"ROLE\r\n");
    let expect = t.expect.expect("an expectation");
    assert!(expect.matches(b"*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n"));
    assert!(!expect.matches(b"*5\r\n$5\r\nslave\r\n"));
    // Expect alone: a banner (SMTP's 220), and a byte string.
    assert_eq!(
        probe_of(json!({"tcpSocket": {"enable": true, "expect": {"base64": "AAH/"}}})),
        Probe::Tcp(TcpProbe {
            expect: Some(Expect::Contains(vec![0, 1, 255])),
            ..TcpProbe::default()
        })
    );
}

#[test]
fn bad_send_and_expect_are_refused_naming_the_field_without_quoting_it() {
    let secret = "s3cr3t-(";
    let cases = [
        (
            json!({"send": {"text": "a", "base64": "YQ=="}}),
            "spec.ports[0].tcpSocket.send",
            "exactly one of text and base64",
        ),
        (
            json!({"send": {}}),
            "spec.ports[0].tcpSocket.send",
            "exactly one of text and base64",
        ),
        (
            json!({"send": {"base64": "not base64!"}}),
            "spec.ports[0].tcpSocket.send.base64",
            "standard base64",
        ),
        (
            json!({"send": {"text": "x".repeat(8193)}}),
            "spec.ports[0].tcpSocket.send.text",
            "at most 8192",
        ),
        (
            json!({"expect": {"text": "a", "regex": "a"}}),
            "spec.ports[0].tcpSocket.expect",
            "exactly one of text, base64 and regex",
        ),
        (
            json!({"expect": {"text": ""}}),
            "spec.ports[0].tcpSocket.expect.text",
            "1 to 1024",
        ),
        (
            json!({"expect": {"text": "x".repeat(1025)}}),
            "spec.ports[0].tcpSocket.expect.text",
            "1 to 1024",
        ),
        (
            json!({"expect": {"base64": ""}}),
            "spec.ports[0].tcpSocket.expect.base64",
            "1 to 1024",
        ),
        (
            json!({"expect": {"regex": secret}}),
            "spec.ports[0].tcpSocket.expect.regex",
            "invalid regular expression",
        ),
        (
            json!({"expect": {"regex": "a{1000}{1000}"}}),
            "spec.ports[0].tcpSocket.expect.regex",
            "too large",
        ),
    ];
    for (tcp, field, needle) in cases {
        let mut tcp = tcp;
        tcp["enable"] = json!(true);
        refused(json!({"tcpSocket": tcp}), field, needle);
        let errors = plan("db", &one_port(json!({"tcpSocket": tcp}))).expect_err("refused");
        assert!(!errors.to_string().contains(secret), "{errors}");
    }
    // On a disabled handler they would silently probe nothing.
    refused(
        json!({"tcpSocket": {"enable": false, "send": {"text": "PING"}}}),
        "spec.ports[0].tcpSocket",
        "need enable: true",
    );
    refused(
        json!({"udpSocket": {"expect": {"text": "pong"}}}),
        "spec.ports[0].udpSocket",
        "need enable: true",
    );
}

#[test]
fn udp_send_and_expect() {
    assert_eq!(
        probe_of(
            json!({"protocol": "UDP", "udpSocket": {"enable": true, "send": {"base64": "AAE="}, "expect": {"text": "pong"}}})
        ),
        Probe::Udp(UdpProbe {
            data: vec![0, 1],
            expect: Some(Expect::Contains(b"pong".to_vec())),
        })
    );
    // The older `data` with a new `expect`.
    assert_eq!(
        probe_of(
            json!({"protocol": "UDP", "udpSocket": {"enable": true, "data": "ping", "expect": {"regex": "^po"}}})
        ),
        Probe::Udp(UdpProbe {
            data: b"ping".to_vec(),
            expect: Some(Expect::Regex(BoundedRegex::new("^po").expect("regex"))),
        })
    );
    refused(
        json!({"udpSocket": {"enable": true, "data": "a", "send": {"text": "b"}}}),
        "spec.ports[0].udpSocket.send",
        "either data or send",
    );
    refused(
        json!({"udpSocket": {"enable": true, "expect": {"base64": "!!!!"}}}),
        "spec.ports[0].udpSocket.expect.base64",
        "standard base64",
    );
}

#[test]
fn http_method_body_statuses_and_body_match() {
    let Probe::Http(get) = probe_of(json!({"httpGet": {
        "path": "/primary", "method": "POST", "body": "{\"q\": 1}",
        "expectedStatuses": [204, "200-299", "404"],
        "bodyMatch": {"regex": "\"role\":\\s*\"(master|primary)\""}
    }})) else {
        panic!("an HTTP probe");
    };
    assert_eq!(get.method, HttpMethod::Post);
    assert_eq!(get.body, b"{\"q\": 1}");
    assert_eq!(
        get.expected_statuses,
        [
            StatusRange { from: 204, to: 204 },
            StatusRange { from: 200, to: 299 },
            StatusRange { from: 404, to: 404 },
        ]
    );
    assert!(
        get.body_match
            .expect("match")
            .matches(b"{\"role\": \"master\"}")
    );
    for (method, expected) in [
        ("GET", HttpMethod::Get),
        ("HEAD", HttpMethod::Head),
        ("OPTIONS", HttpMethod::Options),
    ] {
        let Probe::Http(get) = probe_of(json!({"httpGet": {"method": method}})) else {
            panic!("an HTTP probe");
        };
        assert_eq!(get.method, expected);
        assert_eq!(get.path, "/", "the other fields keep their meaning");
    }
    let Probe::Http(get) = probe_of(json!({"httpGet": {"bodyMatch": {"text": "ok"}}})) else {
        panic!("an HTTP probe");
    };
    assert_eq!(get.body_match, Some(Expect::Contains(b"ok".to_vec())));

    let cases = [
        (
            json!({"method": "get"}),
            "spec.ports[0].httpGet.method",
            "GET, HEAD, POST or OPTIONS",
        ),
        (
            json!({"method": "DELETE"}),
            "spec.ports[0].httpGet.method",
            "GET, HEAD, POST or OPTIONS",
        ),
        (
            json!({"body": "x"}),
            "spec.ports[0].httpGet.body",
            "only with method: POST",
        ),
        (
            json!({"method": "GET", "body": "x"}),
            "spec.ports[0].httpGet.body",
            "only with method: POST",
        ),
        (
            json!({"method": "POST", "body": "x".repeat(4097)}),
            "spec.ports[0].httpGet.body",
            "at most 4096",
        ),
        (
            json!({"method": "HEAD", "bodyMatch": {"text": "ok"}}),
            "spec.ports[0].httpGet.bodyMatch",
            "HEAD has none",
        ),
        (
            json!({"expectedStatuses": [99]}),
            "spec.ports[0].httpGet.expectedStatuses[0]",
            "HTTP status",
        ),
        (
            json!({"expectedStatuses": [600]}),
            "spec.ports[0].httpGet.expectedStatuses[0]",
            "HTTP status",
        ),
        (
            json!({"expectedStatuses": [200, "299-200"]}),
            "spec.ports[0].httpGet.expectedStatuses[1]",
            "from <= to",
        ),
        (
            json!({"expectedStatuses": ["2xx"]}),
            "spec.ports[0].httpGet.expectedStatuses[0]",
            "HTTP status",
        ),
        (
            json!({"expectedStatuses": ["200-"]}),
            "spec.ports[0].httpGet.expectedStatuses[0]",
            "HTTP status",
        ),
        (
            json!({"expectedStatuses": ["+200"]}),
            "spec.ports[0].httpGet.expectedStatuses[0]",
            "HTTP status",
        ),
        (
            json!({"expectedStatuses": vec![200; 17]}),
            "spec.ports[0].httpGet.expectedStatuses",
            "at most 16",
        ),
        (
            json!({"bodyMatch": {"regex": "("}}),
            "spec.ports[0].httpGet.bodyMatch.regex",
            "invalid regular expression",
        ),
        (
            json!({"bodyMatch": {}}),
            "spec.ports[0].httpGet.bodyMatch",
            "exactly one of",
        ),
    ];
    for (http, field, needle) in cases {
        refused(json!({"httpGet": http}), field, needle);
    }
}

/// Every problem of one port is reported at once, not only the first.
#[test]
fn option_errors_are_reported_together() {
    let errors = plan(
        "db",
        &one_port(json!({
            "probePort": 0, "jitterPercent": 200,
            "httpGet": {"scheme": "ftp", "method": "PUT", "expectedStatuses": [1]}
        })),
    )
    .expect_err("invalid")
    .0;
    let fields: BTreeSet<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    for field in [
        "spec.ports[0].probePort",
        "spec.ports[0].jitterPercent",
        "spec.ports[0].httpGet.scheme",
        "spec.ports[0].httpGet.method",
        "spec.ports[0].httpGet.expectedStatuses[0]",
    ] {
        assert!(fields.contains(field), "{field} missing from {errors:?}");
    }
}

/// The probe options' block of the shared table (also asserted against
/// the apiserver by `tests/admission.rs`), through `plan()`.
#[test]
fn the_probe_option_admission_cases_are_rejected_by_plan_too() {
    use crate::validation_cases::PROBE_OPTION_CASES;
    let failures = super::tests::not_refused_by_plan(
        PROBE_OPTION_CASES
            .iter()
            .map(|c| (c.what, c.spec, c.plan_field)),
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A valid manifest using every option is admitted and planned (the
/// admission test applies the same text).
#[test]
fn the_valid_probe_options_manifest_plans() {
    use crate::validation_cases::{VALID_PROBE_OPTIONS, manifest};
    let cep: ClusterEndpoint = parse(&manifest(
        kube_endpoints_api::GROUP,
        "ok",
        VALID_PROBE_OPTIONS,
    ));
    let plan = plan("ok", &cep.spec).expect("valid");
    assert_eq!(plan.ports.len(), 3);
}
