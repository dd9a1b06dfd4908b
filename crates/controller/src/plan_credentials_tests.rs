//! `plan_with`: TLS options and header values from Secrets and ConfigMaps,
//! resolved through a map standing in for the controller's caches.

use std::collections::BTreeMap;

use kube_endpoints_api::ClusterEndpointSpec;
use kube_endpoints_probe::{Probe, TlsVersion};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};

use super::*;

const TOKEN: &str = "s3cr3t-t0ken-value";

/// ConfigMaps and Secrets of one namespace, by (kind, name) then key.
#[derive(Default)]
struct Objects(BTreeMap<(SourceKind, String), BTreeMap<String, Vec<u8>>>);

impl Objects {
    fn with(mut self, kind: SourceKind, name: &str, key: &str, value: &[u8]) -> Self {
        self.0
            .entry((kind, name.to_string()))
            .or_default()
            .insert(key.to_string(), value.to_vec());
        self
    }

    /// A `kubernetes.io/tls` Secret named `client`.
    fn with_client_secret(self, cert: &str, key: &str) -> Self {
        self.with(SourceKind::Secret, "client", "tls.crt", cert.as_bytes())
            .with(SourceKind::Secret, "client", "tls.key", key.as_bytes())
    }
}

impl Resolve for Objects {
    fn lookup(&self, kind: SourceKind, name: &str, key: &str) -> Lookup {
        match self.0.get(&(kind, name.to_string())) {
            None => Lookup::Missing(format!("{} {name:?} not found", kind.as_str())),
            Some(keys) => match keys.get(key) {
                Some(v) => Lookup::Found(Sensitive::new(v.clone())),
                None => Lookup::Missing(format!("{} {name:?} has no key {key:?}", kind.as_str())),
            },
        }
    }
}

struct Pem {
    ca: String,
    cert: String,
    key: String,
    other_key: String,
}

fn pem() -> Pem {
    let ca_key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = params.self_signed(&ca_key).expect("ca");
    let leaf_key = KeyPair::generate().expect("key");
    let leaf = CertificateParams::new(vec!["client.example".to_string()])
        .expect("params")
        .self_signed(&leaf_key)
        .expect("leaf");
    Pem {
        ca: ca.pem(),
        cert: leaf.pem(),
        key: leaf_key.serialize_pem(),
        other_key: KeyPair::generate().expect("key").serialize_pem(),
    }
}

/// A port whose `handler` presents the client certificate of the
/// Secret `client`, which `Objects` holds.
fn client_certificate_on(handler: &str) -> (Pem, Objects, ClusterEndpointSpec) {
    let pem = pem();
    let objects = Objects::default().with_client_secret(&pem.cert, &pem.key);
    let spec = spec(serde_json::json!({handler: {"enable": true, "tls": {
        "clientCertSecretRef": {"name": "client"}}}}));
    (pem, objects, spec)
}

fn spec(port: serde_json::Value) -> ClusterEndpointSpec {
    let mut port = port;
    let fields = port.as_object_mut().expect("an object");
    fields.insert("name".into(), "p".into());
    fields.insert("port".into(), 443.into());
    fields.insert("targetPort".into(), 443.into());
    fields.insert("hosts".into(), serde_json::json!(["198.18.0.1"]));
    serde_json::from_value(serde_json::json!({ "ports": [port] })).expect("spec deserialises")
}

fn errors(spec: &ClusterEndpointSpec, objects: &Objects) -> Vec<String> {
    plan_with("db", spec, objects)
        .expect_err("must be rejected")
        .0
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn probe(spec: &ClusterEndpointSpec, objects: &Objects) -> Probe {
    let plan = plan_with("db", spec, objects).expect("valid");
    plan.ports[0].probe.clone().expect("probed")
}

fn https_tls(p: &Probe) -> kube_endpoints_probe::TlsConfig {
    match p {
        Probe::Http(get) => get.tls.clone().expect("tls set"),
        other => panic!("not http: {other:?}"),
    }
}

#[test]
fn https_ca_from_a_config_map_turns_verification_on() {
    let pem = pem();
    let objects = Objects::default().with(SourceKind::ConfigMap, "ca", "ca.crt", pem.ca.as_bytes());
    let spec = spec(serde_json::json!({"httpGet": {"scheme": "https", "tls": {
        "caBundleFrom": {"configMapKeyRef": {"name": "ca", "key": "ca.crt"}},
        "serverName": "db.example", "minVersion": "1.3"}}}));
    let tls = https_tls(&probe(&spec, &objects));
    assert_eq!(tls.ca_pem.as_deref(), Some(pem.ca.as_bytes()));
    assert!(tls.verifies(), "a CA turns verification on");
    assert_eq!(tls.server_name.as_deref(), Some("db.example"));
    assert_eq!(tls.min_version, Some(TlsVersion::Tls13));
    assert_eq!(
        references(&spec),
        [(SourceKind::ConfigMap, "ca".to_string())]
    );
}

#[test]
fn https_ca_from_a_secret_and_inline() {
    let pem = pem();
    let objects = Objects::default().with(SourceKind::Secret, "ca", "bundle", pem.ca.as_bytes());
    let from_secret = spec(serde_json::json!({"httpGet": {"scheme": "HTTPS", "tls": {
        "caBundleFrom": {"secretKeyRef": {"name": "ca", "key": "bundle"}}}}}));
    assert_eq!(
        https_tls(&probe(&from_secret, &objects)).ca_pem.as_deref(),
        Some(pem.ca.as_bytes())
    );
    let inline = spec(serde_json::json!({"httpGet": {"scheme": "https", "tls": {
        "caBundle": pem.ca, "verify": false}}}));
    let tls = https_tls(&probe(&inline, &Objects::default()));
    assert_eq!(tls.ca_pem.as_deref(), Some(pem.ca.as_bytes()));
    assert!(!tls.verifies(), "verify: false wins");
    assert!(references(&inline).is_empty());
}

#[test]
fn tls_without_options_is_plain_https_without_verification() {
    let spec = spec(serde_json::json!({"httpGet": {"scheme": "https", "tls": {}}}));
    let tls = https_tls(&probe(&spec, &Objects::default()));
    assert!(!tls.verifies());
    assert_eq!(tls.server_name, None, "the virtual host or address is used");
    // verify: true without a CA verifies against the system roots.
    let system =
        self::spec(serde_json::json!({"httpGet": {"scheme": "https", "tls": {"verify": true}}}));
    let tls = https_tls(&probe(&system, &Objects::default()));
    assert!(tls.verifies());
    assert_eq!(tls.ca_pem, None);
}

#[test]
fn bad_tls_settings_are_field_errors() {
    let pem = pem();
    let cases = [
        (
            serde_json::json!({"httpGet": {"tls": {}}}),
            "spec.ports[0].httpGet.tls: tls needs scheme: https",
        ),
        (
            serde_json::json!({"httpGet": {"scheme": "https", "tls": {"caBundle": "not a pem"}}}),
            "spec.ports[0].httpGet.tls: tls: CA bundle holds no usable certificate",
        ),
        (
            serde_json::json!({"httpGet": {"scheme": "https", "tls": {"minVersion": "1.1"}}}),
            "spec.ports[0].httpGet.tls.minVersion: must be \"1.2\" or \"1.3\", got \"1.1\"",
        ),
        (
            serde_json::json!({"httpGet": {"scheme": "https", "tls": {"serverName": "a b"}}}),
            "spec.ports[0].httpGet.tls.serverName: \"a b\" must be a DNS name",
        ),
        (
            serde_json::json!({"httpGet": {"scheme": "https", "tls": {"caBundle": pem.ca,
                "caBundleFrom": {"secretKeyRef": {"name": "ca", "key": "k"}}}}}),
            "spec.ports[0].httpGet.tls.caBundleFrom: set at most one of caBundle and caBundleFrom",
        ),
        (
            serde_json::json!({"httpGet": {"scheme": "https", "tls": {"caBundleFrom": {}}}}),
            "spec.ports[0].httpGet.tls.caBundleFrom: set exactly one of configMapKeyRef and secretKeyRef",
        ),
        (
            serde_json::json!({"tcpSocket": {"tls": {}}}),
            "spec.ports[0].tcpSocket.tls: tls is set but the handler is not enabled",
        ),
        (
            serde_json::json!({"grpc": {"enable": false, "tls": {}}}),
            "spec.ports[0].grpc.tls: tls is set but the handler is not enabled",
        ),
    ];
    for (port, expected) in cases {
        let errors = errors(&spec(port.clone()), &Objects::default());
        assert!(
            errors.iter().any(|e| e.starts_with(expected)),
            "{port}: expected {expected:?}, got {errors:?}"
        );
    }
}

#[test]
fn missing_references_name_the_field_and_the_object() {
    let spec = spec(serde_json::json!({"httpGet": {"scheme": "https", "tls": {
        "caBundleFrom": {"secretKeyRef": {"name": "ca", "key": "ca.crt"}}}}}));
    assert_eq!(
        errors(&spec, &Objects::default()),
        ["spec.ports[0].httpGet.tls.caBundleFrom.secretKeyRef: Secret \"ca\" not found"]
    );
    let wrong_key = Objects::default().with(SourceKind::Secret, "ca", "other", b"x");
    assert_eq!(
        errors(&spec, &wrong_key),
        [
            "spec.ports[0].httpGet.tls.caBundleFrom.secretKeyRef: Secret \"ca\" has no key \"ca.crt\""
        ]
    );
    // A ConfigMap of that name is not a Secret.
    let config_map = Objects::default().with(SourceKind::ConfigMap, "ca", "ca.crt", b"x");
    assert_eq!(errors(&spec, &config_map).len(), 1);
}

#[test]
fn tcp_and_grpc_tls_turn_tls_on() {
    let pem = pem();
    let tcp = spec(serde_json::json!({"tcpSocket": {"enable": true, "tls": {"caBundle": pem.ca}}}));
    match probe(&tcp, &Objects::default()) {
        Probe::Tcp(t) => assert!(t.tls.expect("tls").verifies()),
        other => panic!("{other:?}"),
    }
    let grpc =
        spec(serde_json::json!({"grpc": {"enable": true, "tls": {"serverName": "grpc.example"}}}));
    match probe(&grpc, &Objects::default()) {
        Probe::Grpc(g) => {
            assert_eq!(
                g.tls.expect("tls").server_name.as_deref(),
                Some("grpc.example")
            )
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn client_certificate_comes_from_a_tls_secret() {
    let (pem, objects, spec) = client_certificate_on("grpc");
    match probe(&spec, &objects) {
        Probe::Grpc(g) => {
            let tls = g.tls.expect("tls");
            assert_eq!(tls.client_cert_pem.as_deref(), Some(pem.cert.as_bytes()));
            assert_eq!(tls.client_key_pem.as_deref(), Some(pem.key.as_bytes()));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        references(&spec),
        [(SourceKind::Secret, "client".to_string())]
    );

    let no_key =
        Objects::default().with(SourceKind::Secret, "client", "tls.crt", pem.cert.as_bytes());
    assert_eq!(
        errors(&spec, &no_key),
        ["spec.ports[0].grpc.tls.clientCertSecretRef: Secret \"client\" has no key \"tls.key\""]
    );
    let mismatched = Objects::default().with_client_secret(&pem.cert, &pem.other_key);
    let errors = errors(&spec, &mismatched);
    assert_eq!(
        errors,
        ["spec.ports[0].grpc.tls: tls: client certificate and key do not form a usable pair"]
    );
    assert!(!errors[0].contains("PRIVATE"), "no key bytes");
}

#[test]
fn header_values_come_from_secrets_and_are_never_shown() {
    let objects = Objects::default().with(
        SourceKind::Secret,
        "api",
        "token",
        format!("Bearer {TOKEN}\n").as_bytes(),
    );
    let spec = spec(
        serde_json::json!({"httpGet": {"path": "/auth", "httpHeaders": [
            {"name": "X-Plain", "value": "visible"},
            {"name": "Authorization", "valueFrom": {"secretKeyRef": {"name": "api", "key": "token"}}}
        ]}}),
    );
    let plan = plan_with("db", &spec, &objects).expect("valid");
    match plan.ports[0].probe.as_ref().expect("probed") {
        Probe::Http(get) => assert_eq!(
            get.headers,
            [
                ("X-Plain".to_string(), "visible".to_string()),
                ("Authorization".to_string(), format!("Bearer {TOKEN}")),
            ],
            "the trailing newline of a file-made Secret is dropped"
        ),
        other => panic!("{other:?}"),
    }
    let shown = format!("{plan:?} {:#?}", plan.targets());
    assert!(!shown.contains(TOKEN), "Debug shows no secret: {shown}");
    assert_eq!(references(&spec), [(SourceKind::Secret, "api".to_string())]);

    let missing = errors(&spec, &Objects::default());
    assert_eq!(
        missing,
        ["spec.ports[0].httpGet.httpHeaders[1].valueFrom.secretKeyRef: Secret \"api\" not found"]
    );
}

#[test]
fn bad_header_values_from_secrets_are_refused_without_quoting_them() {
    let spec = spec(serde_json::json!({"httpGet": {"httpHeaders": [
        {"name": "Authorization", "valueFrom": {"secretKeyRef": {"name": "api", "key": "token"}}}
    ]}}));
    let control = Objects::default().with(SourceKind::Secret, "api", "token", b"a\x01b-s3cr3t");
    assert_eq!(
        errors(&spec, &control),
        [
            "spec.ports[0].httpGet.httpHeaders[0].valueFrom.secretKeyRef: Secret \"api\" key \"token\" holds control characters (tab excepted)"
        ]
    );
    let binary = Objects::default().with(SourceKind::Secret, "api", "token", &[0xff, 0xfe]);
    assert!(errors(&spec, &binary)[0].ends_with("is not UTF-8 text"));

    let both = self::spec(serde_json::json!({"httpGet": {"httpHeaders": [
        {"name": "Authorization", "value": "x", "valueFrom": {"secretKeyRef": {"name": "api", "key": "token"}}}
    ]}}));
    assert!(
        errors(&both, &Objects::default()).contains(
            &"spec.ports[0].httpGet.httpHeaders[0].valueFrom: set value or valueFrom, not both"
                .to_string()
        )
    );
    let host = self::spec(serde_json::json!({"httpGet": {"httpHeaders": [
        {"name": "Host", "valueFrom": {"secretKeyRef": {"name": "api", "key": "token"}}}
    ]}}));
    assert!(
        errors(&host, &Objects::default())
            .iter()
            .any(|e| e.starts_with("spec.ports[0].httpGet.httpHeaders[0].valueFrom: a Host header cannot come from a Secret"))
    );
}

#[test]
fn deferred_references_plan_without_the_material() {
    let spec = spec(serde_json::json!({"httpGet": {"scheme": "https",
        "httpHeaders": [{"name": "Authorization", "valueFrom": {"secretKeyRef": {"name": "api", "key": "t"}}}],
        "tls": {"caBundleFrom": {"secretKeyRef": {"name": "ca", "key": "ca.crt"}},
                "clientCertSecretRef": {"name": "client"}}}}));
    let plan = plan("db", &spec).expect("plans without resolving");
    assert_eq!(plan.target_count(), 1);
    assert_eq!(
        references(&spec),
        [
            (SourceKind::Secret, "api".to_string()),
            (SourceKind::Secret, "ca".to_string()),
            (SourceKind::Secret, "client".to_string()),
        ]
    );
}

#[test]
fn additional_target_ports_get_the_same_tls() {
    let pem = pem();
    let mut spec =
        spec(serde_json::json!({"httpGet": {"scheme": "https", "tls": {"caBundle": pem.ca}}}));
    spec.ports[0].additional_target_ports = vec![8443];
    let plan = plan_with("db", &spec, &Objects::default()).expect("valid");
    assert_eq!(plan.ports.len(), 2);
    for p in &plan.ports {
        let tls = https_tls(p.probe.as_ref().expect("probed"));
        assert!(tls.verifies(), "{}", p.name);
    }
}

#[test]
fn sensitive_debug_shows_no_bytes() {
    let s = Sensitive::new(TOKEN.as_bytes());
    let shown = format!("{s:?} {:?}", Lookup::Found(s.clone()));
    assert!(!shown.contains(TOKEN), "{shown}");
    assert!(
        shown.contains(&format!("<{} bytes redacted>", TOKEN.len())),
        "{shown}"
    );
    assert_eq!(s.expose(), TOKEN.as_bytes());
}

#[test]
fn tls_debug_shows_no_key_bytes() {
    let (pem, objects, spec) = client_certificate_on("tcpSocket");
    let plan = plan_with("db", &spec, &objects).expect("valid");
    let shown = format!("{plan:?}");
    let key_body = pem.key.lines().nth(1).expect("a PEM body line");
    assert!(!shown.contains(key_body), "{shown}");
    assert!(!shown.contains("PRIVATE KEY"), "{shown}");
}

#[test]
fn the_tls_cases_of_the_shared_table_are_rejected_naming_the_field() {
    use crate::validation_cases::{manifest, tls_cases};
    for case in tls_cases() {
        let object: kube_endpoints_api::ClusterEndpoint =
            crate::testing::parse(&manifest("khulnasoft-lab.github.io", "x", &case.spec));
        let errors = plan("x", &object.spec).expect_err(case.what).0;
        assert!(
            errors.iter().any(|e| e.field == case.plan_field),
            "{}: expected an error on {}, got {errors:?}",
            case.what,
            case.plan_field
        );
    }
}
