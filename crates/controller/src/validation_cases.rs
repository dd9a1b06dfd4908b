//! Bad ClusterEndpoint specs and where each is caught, in one table for both
//! validators: the unit tests assert that `plan()` rejects each naming
//! `plan_field`, and the admission test (`tests/admission.rs`) that the
//! apiserver refuses each with a message containing `admission`.
//!
//! Plain data with no imports, so that the integration test can include it.

/// One bad spec.
pub struct Case {
    pub what: &'static str,
    /// The lines under `spec:`, indented by two spaces.
    pub spec: &'static str,
    /// What the apiserver's message must contain (the field, or for a rule on
    /// the whole spec, the rule's message); empty for what only the
    /// controller can check (rules over `hosts`, whose string-or-object
    /// items have no CEL type: see the api crate's `host` module).
    pub admission: &'static str,
    /// The field `plan()` must name.
    pub plan_field: &'static str,
}

/// A valid port to vary: `{name: a, port: 80, targetPort: 80, hosts: [198.18.0.2]}`.
pub const CASES: &[Case] = &[
    Case {
        what: "loopback host",
        spec: "  ports: [{name: a, port: 80, targetPort: 80, hosts: [127.0.0.1]}]",
        admission: "spec.ports[0].hosts[0]",
        plan_field: "spec.ports[0].hosts[0]",
    },
    Case {
        what: "host name ending in a number (read as IPv4 by resolvers)",
        spec: "  ports: [{name: a, port: 80, targetPort: 80, hosts: ['127.1']}]",
        admission: "spec.ports[0].hosts[0]",
        plan_field: "spec.ports[0].hosts[0]",
    },
    Case {
        what: "host name ending in a hex number",
        spec: "  ports: [{name: a, port: 80, targetPort: 80, hosts: [db.example.com, '0x7f.1']}]",
        admission: "spec.ports[0].hosts[1]",
        plan_field: "spec.ports[0].hosts[1]",
    },
    Case {
        what: "host with a user part",
        spec: "  hosts: ['x@db.example.com']\n  ports: [{name: a, port: 80, targetPort: 80}]",
        admission: "spec.hosts[0]",
        plan_field: "spec.hosts[0]",
    },
    Case {
        what: "upper-case host name",
        spec: "  ports: [{name: a, port: 80, targetPort: 80, hosts: [DB.example.com]}]",
        admission: "spec.ports[0].hosts[0]",
        plan_field: "spec.ports[0].hosts[0]",
    },
    Case {
        what: "IPv6 look-alike",
        spec: "  ports: [{name: a, port: 80, targetPort: 80, hosts: ['fd00::1::2']}]",
        // IPv6-shaped for the pattern; only the controller parses exactly.
        admission: "",
        plan_field: "spec.ports[0].hosts[0]",
    },
    Case {
        what: "resolve period",
        spec: "  resolvePeriodSeconds: 0\n  ports: [{name: a, port: 80, targetPort: 80, hosts: [db.example.com]}]",
        admission: "spec.resolvePeriodSeconds",
        plan_field: "spec.resolvePeriodSeconds",
    },
    Case {
        what: "link-local",
        spec: "  ports: [{name: a, port: 80, targetPort: 80, hosts: ['fe80::1']}]",
        admission: "spec.ports[0].hosts[0]",
        plan_field: "spec.ports[0].hosts[0]",
    },
    Case {
        what: "duplicate host",
        spec: "  ports: [{name: a, port: 80, targetPort: 80, hosts: [198.18.0.2, 198.18.0.2]}]",
        admission: "",
        plan_field: "spec.ports[0].hosts[1]",
    },
    Case {
        what: "legacy host",
        spec: "  hosts: [0.0.0.0]\n  ports: [{name: a, port: 80, targetPort: 80}]",
        admission: "spec.hosts[0]",
        plan_field: "spec.hosts[0]",
    },
    Case {
        what: "no hosts",
        spec: "  ports: [{name: a, port: 80, targetPort: 80}]",
        admission: "",
        plan_field: "spec.ports[0].hosts",
    },
    Case {
        what: "no ports",
        spec: "  ports: []",
        admission: "spec.ports",
        plan_field: "spec.ports",
    },
    Case {
        what: "port 0",
        spec: "  ports: [{name: a, port: 0, targetPort: 80, hosts: [198.18.0.2]}]",
        admission: "spec.ports[0].port",
        plan_field: "spec.ports[0].port",
    },
    Case {
        what: "targetPort too big",
        spec: "  ports: [{name: a, port: 80, targetPort: 65536, hosts: [198.18.0.2]}]",
        admission: "spec.ports[0].targetPort",
        plan_field: "spec.ports[0].targetPort",
    },
    Case {
        what: "timeout 0",
        spec: "  ports: [{name: a, port: 80, targetPort: 80, hosts: [198.18.0.2], timeoutSeconds: 0}]",
        admission: "spec.ports[0].timeoutSeconds",
        plan_field: "spec.ports[0].timeoutSeconds",
    },
    Case {
        what: "failureThreshold 0",
        spec: "  ports: [{name: a, port: 80, targetPort: 80, hosts: [198.18.0.2], failureThreshold: 0}]",
        admission: "spec.ports[0].failureThreshold",
        plan_field: "spec.ports[0].failureThreshold",
    },
    Case {
        what: "successThreshold 0",
        spec: "  ports: [{name: a, port: 80, targetPort: 80, hosts: [198.18.0.2], successThreshold: 0}]",
        admission: "spec.ports[0].successThreshold",
        plan_field: "spec.ports[0].successThreshold",
    },
    Case {
        what: "period 0",
        spec: "  periodSeconds: 0\n  ports: [{name: a, port: 80, targetPort: 80, hosts: [198.18.0.2]}]",
        admission: "spec.periodSeconds",
        plan_field: "spec.periodSeconds",
    },
    Case {
        what: "bad protocol",
        spec: "  ports: [{name: a, port: 80, targetPort: 80, hosts: [198.18.0.2], protocol: HTTP}]",
        admission: "spec.ports[0].protocol",
        plan_field: "spec.ports[0].protocol",
    },
    Case {
        what: "bad port name",
        spec: "  ports: [{name: Web_1, port: 80, targetPort: 80, hosts: [198.18.0.2]}]",
        admission: "spec.ports[0].name",
        plan_field: "spec.ports[0].name",
    },
    Case {
        what: "duplicate port name",
        spec: "  ports: [{name: a, port: 80, targetPort: 80, hosts: [198.18.0.2]}, {name: a, port: 81, targetPort: 80, hosts: [198.18.0.2]}]",
        admission: "spec.ports[1]",
        plan_field: "spec.ports[1].name",
    },
    Case {
        what: "duplicate service port",
        spec: "  ports: [{name: a, port: 80, targetPort: 80, hosts: [198.18.0.2]}, {name: b, port: 80, targetPort: 81, hosts: [198.18.0.2]}]",
        admission: "must be unique per protocol",
        plan_field: "spec.ports[1].port",
    },
    Case {
        what: "two probes",
        spec: "  ports: [{name: a, port: 80, targetPort: 80, hosts: [198.18.0.2], tcpSocket: {enable: true}, grpc: {enable: true}}]",
        admission: "at most one of tcpSocket",
        plan_field: "spec.ports[0]",
    },
    Case {
        what: "bad scheme",
        spec: "  ports: [{name: a, port: 80, targetPort: 80, hosts: [198.18.0.2], httpGet: {scheme: ftp}}]",
        admission: "spec.ports[0].httpGet.scheme",
        plan_field: "spec.ports[0].httpGet.scheme",
    },
    Case {
        what: "bad header",
        spec: "  ports: [{name: a, port: 80, targetPort: 80, hosts: [198.18.0.2], httpGet: {httpHeaders: [{name: 'a b', value: x}]}}]",
        admission: "spec.ports[0].httpGet.httpHeaders[0].name",
        plan_field: "spec.ports[0].httpGet.httpHeaders[0].name",
    },
    Case {
        what: "bad clusterIP",
        spec: "  clusterIP: 10.0.0.9\n  ports: [{name: a, port: 80, targetPort: 80, hosts: [198.18.0.2]}]",
        admission: "spec.clusterIP",
        plan_field: "spec.clusterIP",
    },
    Case {
        what: "extra target port repeats targetPort",
        spec: "  ports: [{name: a, port: 80, targetPort: 80, hosts: [198.18.0.2], additionalTargetPorts: [80]}]",
        admission: "spec.ports[0].additionalTargetPorts",
        plan_field: "spec.ports[0].additionalTargetPorts[0]",
    },
    Case {
        what: "extra target port out of range",
        spec: "  ports: [{name: a, port: 80, targetPort: 80, hosts: [198.18.0.2], additionalTargetPorts: [70000]}]",
        admission: "spec.ports[0].additionalTargetPorts[0]",
        plan_field: "spec.ports[0].additionalTargetPorts[0]",
    },
    Case {
        what: "control character in a header value",
        spec: "  ports: [{name: a, port: 80, targetPort: 80, hosts: [198.18.0.2], httpGet: {httpHeaders: [{name: X-A, value: \"a\\u0001b\"}]}}]",
        admission: "spec.ports[0].httpGet.httpHeaders[0].value",
        plan_field: "spec.ports[0].httpGet.httpHeaders[0].value",
    },
    Case {
        what: "header the prober owns",
        spec: "  ports: [{name: a, port: 80, targetPort: 80, hosts: [198.18.0.2], httpGet: {httpHeaders: [{name: Transfer-Encoding, value: chunked}]}}]",
        admission: "spec.ports[0].httpGet.httpHeaders[0].name",
        plan_field: "spec.ports[0].httpGet.httpHeaders[0].name",
    },
    Case {
        what: "virtual host with a percent sign",
        spec: "  ports: [{name: a, port: 80, targetPort: 80, hosts: [198.18.0.2], httpGet: {host: '%65vil'}}]",
        admission: "spec.ports[0].httpGet.host",
        plan_field: "spec.ports[0].httpGet.host",
    },
    Case {
        what: "virtual host ending in a number",
        spec: "  ports: [{name: a, port: 80, targetPort: 80, hosts: [198.18.0.2], httpGet: {host: '127.1'}}]",
        admission: "spec.ports[0].httpGet.host",
        plan_field: "spec.ports[0].httpGet.host",
    },
    Case {
        what: "virtual host with a port",
        spec: "  ports: [{name: a, port: 80, targetPort: 80, hosts: [198.18.0.2], httpGet: {host: 'db.internal:80'}}]",
        admission: "spec.ports[0].httpGet.host",
        plan_field: "spec.ports[0].httpGet.host",
    },
    Case {
        what: "too many extra target ports",
        spec: "  ports: [{name: a, port: 80, targetPort: 80, hosts: [198.18.0.2], additionalTargetPorts: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]}]",
        admission: "spec.ports[0].additionalTargetPorts",
        plan_field: "spec.ports[0].additionalTargetPorts",
    },
    Case {
        what: "path too long",
        spec: PATH_TOO_LONG,
        admission: "spec.ports[0].httpGet.path",
        plan_field: "spec.ports[0].httpGet.path",
    },
    Case {
        what: "gRPC service too long",
        spec: GRPC_SERVICE_TOO_LONG,
        admission: "spec.ports[0].grpc.service",
        plan_field: "spec.ports[0].grpc.service",
    },
];

/// A path of 2049 characters (the bound is 2048).
const PATH_TOO_LONG: &str = concat!(
    "  ports: [{name: a, port: 80, targetPort: 80, hosts: [198.18.0.2], httpGet: {path: '/",
    include_str!("validation_cases_2048.txt"),
    "'}}]"
);

/// A gRPC service name of 254 characters (the bound is 253).
const GRPC_SERVICE_TOO_LONG: &str = concat!(
    "  ports: [{name: a, port: 80, targetPort: 80, hosts: [198.18.0.2], grpc: {enable: true, service: 'x",
    include_str!("validation_cases_253.txt"),
    "'}}]"
);

/// The manifest of a case: a ClusterEndpoint named `name` of `group`.
pub fn manifest(group: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: {group}/v1beta1\nkind: ClusterEndpoint\nmetadata: {{name: {name}}}\nspec:\n{spec}\n"
    )
}

// ------------------------------------------------------------------ budgets
// The budget rules (a probe never outlives its period; a cap on host-ports
// per object), in a block of their own.

/// A [`Case`] whose spec is built at run time (too long to write out).
pub struct BuiltCase {
    pub what: &'static str,
    pub spec: String,
    pub admission: &'static str,
    pub plan_field: &'static str,
}

/// The budget rules' bad specs.
pub fn budget_cases() -> Vec<BuiltCase> {
    vec![
        BuiltCase {
            what: "timeout above the port's period",
            spec: "  ports: [{name: a, port: 80, targetPort: 80, hosts: [198.18.0.2], periodSeconds: 5, timeoutSeconds: 6}]".into(),
            admission: "timeoutSeconds must not exceed the port's probe period",
            plan_field: "spec.ports[0].timeoutSeconds",
        },
        BuiltCase {
            what: "more host-ports than one object may have",
            spec: over_target_cap(),
            admission: "",
            plan_field: "spec.ports",
        },
    ]
}

/// 100 ports × 11 target ports × 10 legacy hosts: 11,000 host-ports, each
/// list within its own limit.
pub fn over_target_cap() -> String {
    let hosts: Vec<String> = (2..12).map(|i| format!("198.18.0.{i}")).collect();
    let mut spec = format!("  hosts: [{}]\n  ports:\n", hosts.join(", "));
    for p in 0..100 {
        spec.push_str(&format!(
            "  - {{name: p{p}, port: {}, targetPort: 1, additionalTargetPorts: [2, 3, 4, 5, 6, 7, 8, 9, 10, 11]}}\n",
            10000 + p
        ));
    }
    spec
}

// ------------------------------------------------------------ probe options
// Probe port, schedule, send/expect and HTTP expectations, in a block of
// their own (run by their own tests). A regular expression that does not
// compile is not here: only `plan()` can tell (see the plan unit tests).

/// The probe options' bad specs.
pub const PROBE_OPTION_CASES: &[Case] = &[
    Case {
        what: "probePort 0",
        spec: "  ports: [{name: a, port: 80, targetPort: 80, hosts: [198.18.0.2], probePort: 0, tcpSocket: {enable: true}}]",
        admission: "spec.ports[0].probePort",
        plan_field: "spec.ports[0].probePort",
    },
    Case {
        what: "probePort on a static port",
        spec: "  ports: [{name: a, port: 80, targetPort: 80, hosts: [198.18.0.2], probePort: 8008}]",
        admission: "probePort needs a probe",
        plan_field: "spec.ports[0].probePort",
    },
    Case {
        what: "probePort with additionalTargetPorts",
        spec: "  ports: [{name: a, port: 80, targetPort: 80, hosts: [198.18.0.2], probePort: 8008, additionalTargetPorts: [81], tcpSocket: {enable: true}}]",
        admission: "probePort cannot be combined with additionalTargetPorts",
        plan_field: "spec.ports[0].probePort",
    },
    Case {
        what: "unhealthyPeriodSeconds 0",
        spec: "  ports: [{name: a, port: 80, targetPort: 80, hosts: [198.18.0.2], unhealthyPeriodSeconds: 0, tcpSocket: {enable: true}}]",
        admission: "spec.ports[0].unhealthyPeriodSeconds",
        plan_field: "spec.ports[0].unhealthyPeriodSeconds",
    },
    Case {
        what: "timeout above the unhealthy period",
        spec: "  ports: [{name: a, port: 80, targetPort: 80, hosts: [198.18.0.2], unhealthyPeriodSeconds: 2, timeoutSeconds: 3, tcpSocket: {enable: true}}]",
        admission: "timeoutSeconds must not exceed unhealthyPeriodSeconds",
        plan_field: "spec.ports[0].timeoutSeconds",
    },
    Case {
        what: "jitterPercent 101",
        spec: "  ports: [{name: a, port: 80, targetPort: 80, hosts: [198.18.0.2], jitterPercent: 101, tcpSocket: {enable: true}}]",
        admission: "spec.ports[0].jitterPercent",
        plan_field: "spec.ports[0].jitterPercent",
    },
    Case {
        what: "edgePeriodSeconds -1",
        spec: "  ports: [{name: a, port: 80, targetPort: 80, hosts: [198.18.0.2], edgePeriodSeconds: -1, tcpSocket: {enable: true}}]",
        admission: "spec.ports[0].edgePeriodSeconds",
        plan_field: "spec.ports[0].edgePeriodSeconds",
    },
    Case {
        what: "send as text and base64",
        spec: "  ports: [{name: a, port: 80, targetPort: 80, hosts: [198.18.0.2], tcpSocket: {enable: true, send: {text: PING, base64: UElORw==}}}]",
        admission: "spec.ports[0].tcpSocket.send",
        plan_field: "spec.ports[0].tcpSocket.send",
    },
    Case {
        what: "send that is not base64",
        spec: "  ports: [{name: a, port: 80, targetPort: 80, hosts: [198.18.0.2], tcpSocket: {enable: true, send: {base64: 'PING!'}}}]",
        admission: "spec.ports[0].tcpSocket.send.base64",
        plan_field: "spec.ports[0].tcpSocket.send.base64",
    },
    Case {
        what: "expect with two forms",
        spec: "  ports: [{name: a, port: 80, targetPort: 80, hosts: [198.18.0.2], tcpSocket: {enable: true, expect: {text: PONG, regex: PONG}}}]",
        admission: "spec.ports[0].tcpSocket.expect",
        plan_field: "spec.ports[0].tcpSocket.expect",
    },
    Case {
        what: "empty expect text",
        spec: "  ports: [{name: a, port: 80, targetPort: 80, hosts: [198.18.0.2], tcpSocket: {enable: true, expect: {text: ''}}}]",
        admission: "spec.ports[0].tcpSocket.expect.text",
        plan_field: "spec.ports[0].tcpSocket.expect.text",
    },
    Case {
        what: "send on a disabled tcpSocket",
        spec: "  ports: [{name: a, port: 80, targetPort: 80, hosts: [198.18.0.2], tcpSocket: {send: {text: PING}}}]",
        admission: "send and expect need enable: true",
        plan_field: "spec.ports[0].tcpSocket",
    },
    Case {
        what: "udp data and send",
        spec: "  ports: [{name: a, protocol: UDP, port: 53, targetPort: 53, hosts: [198.18.0.2], udpSocket: {enable: true, data: ab, send: {text: cd}}}]",
        admission: "spec.ports[0].udpSocket.send",
        plan_field: "spec.ports[0].udpSocket.send",
    },
    Case {
        what: "udp expect that is not base64",
        spec: "  ports: [{name: a, protocol: UDP, port: 53, targetPort: 53, hosts: [198.18.0.2], udpSocket: {enable: true, expect: {base64: '****'}}}]",
        admission: "spec.ports[0].udpSocket.expect.base64",
        plan_field: "spec.ports[0].udpSocket.expect.base64",
    },
    Case {
        what: "HTTP method PUT",
        spec: "  ports: [{name: a, port: 80, targetPort: 80, hosts: [198.18.0.2], httpGet: {method: PUT}}]",
        admission: "spec.ports[0].httpGet.method",
        plan_field: "spec.ports[0].httpGet.method",
    },
    Case {
        what: "body with GET",
        spec: "  ports: [{name: a, port: 80, targetPort: 80, hosts: [198.18.0.2], httpGet: {body: '{}'}}]",
        admission: "spec.ports[0].httpGet.body",
        plan_field: "spec.ports[0].httpGet.body",
    },
    Case {
        what: "bodyMatch with HEAD",
        spec: "  ports: [{name: a, port: 80, targetPort: 80, hosts: [198.18.0.2], httpGet: {method: HEAD, bodyMatch: {text: ok}}}]",
        admission: "spec.ports[0].httpGet.bodyMatch",
        plan_field: "spec.ports[0].httpGet.bodyMatch",
    },
    Case {
        what: "bodyMatch with no form",
        spec: "  ports: [{name: a, port: 80, targetPort: 80, hosts: [198.18.0.2], httpGet: {bodyMatch: {}}}]",
        admission: "spec.ports[0].httpGet.bodyMatch",
        plan_field: "spec.ports[0].httpGet.bodyMatch",
    },
    Case {
        what: "expected status 600",
        spec: "  ports: [{name: a, port: 80, targetPort: 80, hosts: [198.18.0.2], httpGet: {expectedStatuses: [200, 600]}}]",
        admission: "spec.ports[0].httpGet.expectedStatuses[1]",
        plan_field: "spec.ports[0].httpGet.expectedStatuses[1]",
    },
    Case {
        what: "expected status range backwards",
        spec: "  ports: [{name: a, port: 80, targetPort: 80, hosts: [198.18.0.2], httpGet: {expectedStatuses: ['299-200']}}]",
        admission: "spec.ports[0].httpGet.expectedStatuses[0]",
        plan_field: "spec.ports[0].httpGet.expectedStatuses[0]",
    },
    Case {
        what: "expected status pattern",
        spec: "  ports: [{name: a, port: 80, targetPort: 80, hosts: [198.18.0.2], httpGet: {expectedStatuses: ['2xx']}}]",
        admission: "spec.ports[0].httpGet.expectedStatuses[0]",
        plan_field: "spec.ports[0].httpGet.expectedStatuses[0]",
    },
    Case {
        what: "too many expected statuses",
        spec: "  ports: [{name: a, port: 80, targetPort: 80, hosts: [198.18.0.2], httpGet: {expectedStatuses: [200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303, 304, 305, 307]}}]",
        admission: "spec.ports[0].httpGet.expectedStatuses",
        plan_field: "spec.ports[0].httpGet.expectedStatuses",
    },
    // Fail-open policy.
    Case {
        what: "unknown allHostsDown",
        spec: "  allHostsDown: KeepAll\n  ports: [{name: a, port: 80, targetPort: 80, hosts: [198.18.0.2]}]",
        admission: "spec.allHostsDown",
        plan_field: "spec.allHostsDown",
    },
    Case {
        what: "unknown port allHostsDown",
        spec: "  ports: [{name: a, port: 80, targetPort: 80, hosts: [198.18.0.2], allHostsDown: failclosed}]",
        admission: "spec.ports[0].allHostsDown",
        plan_field: "spec.ports[0].allHostsDown",
    },
    Case {
        what: "panicThresholdPercent 101",
        spec: "  panicThresholdPercent: 101\n  ports: [{name: a, port: 80, targetPort: 80, hosts: [198.18.0.2]}]",
        admission: "spec.panicThresholdPercent",
        plan_field: "spec.panicThresholdPercent",
    },
    Case {
        what: "port panicThresholdPercent -1",
        spec: "  ports: [{name: a, port: 80, targetPort: 80, hosts: [198.18.0.2], panicThresholdPercent: -1}]",
        admission: "spec.ports[0].panicThresholdPercent",
        plan_field: "spec.ports[0].panicThresholdPercent",
    },
];

/// Every probe option set, validly: admitted by the apiserver and planned.
pub const VALID_PROBE_OPTIONS: &str = r#"  allHostsDown: KeepLastReady
  panicThresholdPercent: 50
  ports:
  - name: pg
    hosts: [198.18.0.2]
    port: 5432
    targetPort: 5432
    probePort: 8008
    httpGet: {path: /primary, method: POST, body: '{}', expectedStatuses: [200, "201", "202-204"], bodyMatch: {regex: 'role.{0,4}primary'}}
    unhealthyPeriodSeconds: 30
    jitterPercent: 10
    edgePeriodSeconds: 0
    allHostsDown: FailClosed
    panicThresholdPercent: 0
  - name: redis
    hosts: [198.18.0.2]
    port: 6379
    targetPort: 6379
    tcpSocket: {enable: true, send: {text: "PING\r\n"}, expect: {base64: K1BPTkc=}}
  - name: dns
    protocol: UDP
    hosts: [198.18.0.2]
    port: 53
    targetPort: 53
    udpSocket: {enable: true, send: {base64: AAE=}, expect: {text: x}}"#;
// ---------------------------------------------------------------------- tls
// TLS options and references to Secrets and ConfigMaps, in a block of
// their own.

/// A port probed over HTTPS with `tls` (a YAML flow mapping) and `headers`.
fn https_port(tls: &str, headers: &str) -> String {
    format!(
        "  ports: [{{name: a, port: 443, targetPort: 443, hosts: [198.18.0.2], httpGet: {{scheme: https, httpHeaders: {headers}, tls: {tls}}}}}]"
    )
}

/// The bad specs of TLS options and credential references.
pub fn tls_cases() -> Vec<BuiltCase> {
    let token = "{secretKeyRef: {name: api, key: token}}";
    vec![
        BuiltCase {
            what: "tls on plain http",
            spec: "  ports: [{name: a, port: 80, targetPort: 80, hosts: [198.18.0.2], httpGet: {tls: {}}}]".into(),
            admission: "spec.ports[0].httpGet.tls",
            plan_field: "spec.ports[0].httpGet.tls",
        },
        BuiltCase {
            what: "caBundle and caBundleFrom",
            spec: https_port("{caBundle: x, caBundleFrom: {secretKeyRef: {name: ca, key: ca.crt}}}", "[]"),
            admission: "spec.ports[0].httpGet.tls.caBundleFrom",
            plan_field: "spec.ports[0].httpGet.tls.caBundleFrom",
        },
        BuiltCase {
            what: "caBundleFrom naming nothing",
            spec: https_port("{caBundleFrom: {}}", "[]"),
            admission: "set exactly one of configMapKeyRef and secretKeyRef",
            plan_field: "spec.ports[0].httpGet.tls.caBundleFrom",
        },
        BuiltCase {
            what: "TLS 1.1",
            spec: https_port("{minVersion: '1.1'}", "[]"),
            admission: "spec.ports[0].httpGet.tls.minVersion",
            plan_field: "spec.ports[0].httpGet.tls.minVersion",
        },
        BuiltCase {
            what: "server name with a space",
            spec: https_port("{serverName: 'a b'}", "[]"),
            admission: "spec.ports[0].httpGet.tls.serverName",
            plan_field: "spec.ports[0].httpGet.tls.serverName",
        },
        BuiltCase {
            what: "bad Secret name",
            spec: https_port("{clientCertSecretRef: {name: Bad_Name}}", "[]"),
            admission: "spec.ports[0].httpGet.tls.clientCertSecretRef.name",
            plan_field: "spec.ports[0].httpGet.tls.clientCertSecretRef.name",
        },
        BuiltCase {
            what: "tls on a disabled tcpSocket",
            spec: "  ports: [{name: a, port: 443, targetPort: 443, hosts: [198.18.0.2], tcpSocket: {tls: {}}}]".into(),
            admission: "spec.ports[0].tcpSocket.tls",
            plan_field: "spec.ports[0].tcpSocket.tls",
        },
        BuiltCase {
            what: "tls on a disabled grpc",
            spec: "  ports: [{name: a, port: 443, targetPort: 443, hosts: [198.18.0.2], grpc: {enable: false, tls: {}}}]".into(),
            admission: "spec.ports[0].grpc.tls",
            plan_field: "spec.ports[0].grpc.tls",
        },
        BuiltCase {
            what: "header value and valueFrom",
            spec: https_port("{}", &format!("[{{name: Authorization, value: x, valueFrom: {token}}}]")),
            admission: "spec.ports[0].httpGet.httpHeaders[0].valueFrom",
            plan_field: "spec.ports[0].httpGet.httpHeaders[0].valueFrom",
        },
        BuiltCase {
            what: "Host header from a Secret",
            spec: https_port("{}", &format!("[{{name: Host, valueFrom: {token}}}]")),
            admission: "spec.ports[0].httpGet.httpHeaders[0].valueFrom",
            plan_field: "spec.ports[0].httpGet.httpHeaders[0].valueFrom",
        },
        BuiltCase {
            what: "bad Secret key",
            spec: https_port("{}", "[{name: Authorization, valueFrom: {secretKeyRef: {name: api, key: 'a/b'}}}]"),
            admission: "spec.ports[0].httpGet.httpHeaders[0].valueFrom.secretKeyRef.key",
            plan_field: "spec.ports[0].httpGet.httpHeaders[0].valueFrom.secretKeyRef.key",
        },
    ]
}
