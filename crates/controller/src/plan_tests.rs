use super::*;
use kube_endpoints_api::ClusterEndpoint;

/// Seed 000's example (addresses as in the seed; nothing is probed here).
pub const SEED_000: &str = r#"
apiVersion: khulnasoft-lab.github.io/v1beta1
kind: ClusterEndpoint
metadata:
  name: wordpress
  namespace: default
spec:
  periodSeconds: 10
  ports:
    - name: wp-https
      hosts: [10.33.40.151, 10.33.40.152]
      protocol: TCP
      port: 38081
      targetPort: 443
      tcpSocket:
        enable: true
      timeoutSeconds: 1
      failureThreshold: 3
      successThreshold: 1
    - name: wp-http
      hosts: [10.33.40.151, 10.33.40.152]
      protocol: TCP
      port: 38082
      targetPort: 80
      httpGet:
        path: /healthz
        scheme: http
      timeoutSeconds: 1
      failureThreshold: 3
      successThreshold: 1
    - name: wp-udp
      hosts: [10.33.40.151, 10.33.40.152]
      protocol: UDP
      port: 38003
      targetPort: 1234
      udpSocket:
        enable: true
        data: "This is flag data for UDP svc test"
      timeoutSeconds: 1
      failureThreshold: 3
      successThreshold: 1
    - name: wp-grpc
      hosts: [10.33.40.151, 10.33.40.152]
      protocol: TCP
      port: 38083
      targetPort: 8080
      grpc:
        enable: true
      timeoutSeconds: 1
      failureThreshold: 3
      successThreshold: 1
"#;

/// Seed 001's legacy form: top-level hosts, a port without probe settings.
pub const SEED_001: &str = r#"
apiVersion: sealyun.com/v1beta1
kind: ClusterEndpoint
metadata:
  name: wordpress
  namespace: default
spec:
  hosts:
  - 172.18.191.215
  periodSeconds: 10
  ports:
  - failureThreshold: 3
    name: https
    port: 38082
    protocol: TCP
    successThreshold: 1
    targetPort: 80
    tcpSocket:
      enable: true
    timeoutSeconds: 1
  - httpGet:
      path: /
      scheme: http
    name: http
    port: 38081
    protocol: TCP
    targetPort: 80
"#;

pub fn parse(yaml: &str) -> ClusterEndpoint {
    serde_yaml::from_str(yaml).expect("test manifest parses")
}

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

fn seed000() -> ClusterEndpointSpec {
    parse(SEED_000).spec
}

#[test]
fn seed_000_plans_four_ports_with_their_probes() {
    let plan = plan("wordpress", &seed000()).expect("seed 000 is valid");
    let names: Vec<&str> = plan.ports.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["wp-grpc", "wp-http", "wp-https", "wp-udp"]);
    let by_name = |n: &str| {
        plan.ports
            .iter()
            .find(|p| p.name == n)
            .expect("port exists")
    };
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
    let spec = parse(SEED_001).spec;
    let plan = plan("wordpress", &spec).expect("seed 001 is valid");
    let http = plan
        .ports
        .iter()
        .find(|p| p.name == "http")
        .expect("http port");
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
            .all(|p| p.hosts == ["172.18.191.215".parse::<IpAddr>().unwrap()])
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
fn per_port_period_and_initial_delay_extend_the_seed_schema() {
    let mut spec = seed000();
    spec.ports[0].period_seconds = Some(2);
    spec.ports[0].initial_delay_seconds = Some(5);
    let plan = plan("wordpress", &spec).expect("valid");
    let https = plan
        .ports
        .iter()
        .find(|p| p.name == "wp-https")
        .expect("port");
    assert_eq!(https.period, Duration::from_secs(2));
    assert_eq!(https.initial_delay, Duration::from_secs(5));
}

#[test]
fn hosts_are_sorted_and_ipv6_accepted() {
    let mut spec = seed000();
    spec.ports[0].hosts = vec!["fd00::2".into(), "198.18.0.9".into(), "198.18.0.10".into()];
    let plan = plan("wordpress", &spec).expect("valid");
    let https = plan
        .ports
        .iter()
        .find(|p| p.name == "wp-https")
        .expect("port");
    let hosts: Vec<String> = https.hosts.iter().map(ToString::to_string).collect();
    assert_eq!(hosts, ["198.18.0.9", "198.18.0.10", "fd00::2"]);
}

#[test]
fn bad_hosts_are_rejected_naming_the_item() {
    for (host, needle) in [
        ("db.example.com", "not an IPv4 or IPv6 address"),
        ("10.0.0.300", "not an IPv4 or IPv6 address"),
        ("127.0.0.1", "loopback"),
        ("169.254.1.1", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("::1", "loopback"),
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
    ] {
        let mut spec = seed000();
        spec.ports[1].hosts = vec!["198.18.0.2".into(), host.into()];
        assert_rejected(&spec, "spec.ports[1].hosts[1]", needle);
    }
    let mut spec = seed000();
    spec.ports[1].hosts = vec!["198.18.0.2".into(), "198.18.0.2".into()];
    assert_rejected(&spec, "spec.ports[1].hosts[1]", "duplicate host");
    let mut spec = seed000();
    spec.ports[1].hosts = (0..1001)
        .map(|i| format!("198.18.{}.{}", i / 250, i % 250 + 1))
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
        let mut spec = seed000();
        set(&mut spec.ports[0]);
        assert_rejected(&spec, field, "must be between");
    }
    let mut spec = seed000();
    spec.period_seconds = 0;
    assert_rejected(&spec, "spec.periodSeconds", "must be between 1 and 3600");
}

#[test]
fn structural_rules_are_enforced() {
    let mut spec = seed000();
    spec.ports[1].name = spec.ports[0].name.clone();
    assert_rejected(&spec, "spec.ports[1].name", "duplicate port name");

    let mut spec = seed000();
    spec.ports[1].port = spec.ports[0].port;
    assert_rejected(&spec, "spec.ports[1].port", "already used");

    let mut spec = seed000();
    spec.ports[0].name = "Bad_Name".into();
    assert_rejected(&spec, "spec.ports[0].name", "DNS label");

    let mut spec = seed000();
    spec.ports[0].protocol = "HTTP".into();
    assert_rejected(&spec, "spec.ports[0].protocol", "TCP, UDP or SCTP");

    let mut spec = seed000();
    spec.ports[0].hosts.clear();
    assert_rejected(&spec, "spec.ports[0].hosts", "at least one host");

    let mut spec = seed000();
    spec.ports.clear();
    assert_rejected(&spec, "spec.ports", "at least one port");

    let mut spec = seed000();
    spec.cluster_ip = Some("10.0.0.1".into());
    assert_rejected(&spec, "spec.clusterIP", "only \"None\"");

    let errors = errors_of("Word.Press", &seed000());
    assert!(
        errors.iter().any(|e| e.field == "metadata.name"),
        "{errors:?}"
    );
}

#[test]
fn at_most_one_probe_handler() {
    let mut spec = seed000();
    spec.ports[0].http_get = Some(HttpGetHandler::default());
    assert_rejected(&spec, "spec.ports[0]", "at most one of");

    // enable: false counts as unset.
    let mut spec = seed000();
    spec.ports[1].tcp_socket = Some(kube_endpoints_api::TcpSocketHandler { enable: false });
    assert!(plan("wordpress", &spec).is_ok());
}

#[test]
fn http_handler_is_normalised_and_checked() {
    let mut spec = seed000();
    let http = spec.ports[1].http_get.as_mut().expect("http port");
    http.scheme = Some("HTTPS".into());
    http.path = Some("healthz".into());
    http.host = Some("db.internal".into());
    http.http_headers = vec![kube_endpoints_api::HttpHeader {
        name: "X-Probe".into(),
        value: "1".into(),
    }];
    let plan = plan("wordpress", &spec).expect("valid");
    let port = plan
        .ports
        .iter()
        .find(|p| p.name == "wp-http")
        .expect("port");
    assert_eq!(
        port.probe,
        Some(Probe::Http(HttpGet {
            scheme: Scheme::Https,
            path: "/healthz".into(),
            host: Some("db.internal".into()),
            headers: vec![("X-Probe".into(), "1".into())],
            ..HttpGet::default()
        }))
    );

    let mut spec = seed000();
    spec.ports[1].http_get.as_mut().expect("http").scheme = Some("ftp".into());
    assert_rejected(&spec, "spec.ports[1].httpGet.scheme", "http or https");

    let mut spec = seed000();
    spec.ports[1].http_get.as_mut().expect("http").http_headers =
        vec![kube_endpoints_api::HttpHeader {
            name: "Bad Header".into(),
            value: "x".into(),
        }];
    assert_rejected(
        &spec,
        "spec.ports[1].httpGet.httpHeaders[0].name",
        "not a valid HTTP header name",
    );

    let mut spec = seed000();
    spec.ports[1].http_get.as_mut().expect("http").http_headers =
        vec![kube_endpoints_api::HttpHeader {
            name: "X".into(),
            value: "a\r\nInjected: 1".into(),
        }];
    assert_rejected(
        &spec,
        "spec.ports[1].httpGet.httpHeaders[0].value",
        "line breaks",
    );
}

#[test]
fn every_error_is_reported_at_once() {
    let mut spec = seed000();
    spec.ports[0].port = 0;
    spec.ports[2].timeout_seconds = 0;
    let errors = errors_of("wordpress", &spec);
    assert_eq!(errors.len(), 2, "{errors:?}");
    let text = InvalidSpec(errors).to_string();
    assert!(text.contains("spec.ports[0].port") && text.contains("spec.ports[2].timeoutSeconds"));
}
