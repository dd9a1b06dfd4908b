//! Admission, against the real apiserver: every bad manifest of the shared
//! table (`src/validation_cases.rs`, which the unit tests also run through
//! `plan()`) is refused with a message naming the field; so are a bad
//! object name and a change of the immutable clusterIP.

mod support;
// `plan_field` of each case is read by the unit tests of plan().
#[allow(dead_code)]
#[path = "../src/validation_cases.rs"]
mod validation_cases;

use kube_endpoints_api::GROUP;
use support::*;
use validation_cases::{CASES, budget_cases, manifest, tls_cases};
use validation_cases::{PROBE_OPTION_CASES, VALID_PROBE_OPTIONS};

/// Every admission rule: each bad manifest is refused and the message names
/// the offending field.
#[tokio::test(flavor = "multi_thread")]
async fn bad_manifests_are_rejected_naming_the_field() {
    let client = client().await;
    install_crd(&client, GROUP).await;
    let ns = namespace(&client, "e2e-validation").await;
    let port = "name: a, port: 80, targetPort: 80, hosts: [198.18.0.2]";
    let mut failures = not_refused(
        &client,
        &ns,
        CASES
            .iter()
            .map(|c| (c.what, c.spec.to_string(), c.admission)),
    )
    .await;
    // The object's name becomes the Service's name.
    match create(
        &client,
        &ns,
        &manifest(GROUP, "9-bad", &format!("  ports: [{{{port}}}]")),
    )
    .await
    {
        Err(kube::Error::Api(status)) if status.message.contains("metadata.name") => {}
        other => failures.push(format!("bad name: {other:?}")),
    }
    // clusterIP is immutable.
    apply_yaml(
        &client,
        &ns,
        GROUP,
        &manifest(GROUP, "fixed", &format!("  ports: [{{{port}}}]")),
    )
    .await
    .expect("valid object");
    match apply_yaml(
        &client,
        &ns,
        GROUP,
        &manifest(
            GROUP,
            "fixed",
            &format!("  clusterIP: None\n  ports: [{{{port}}}]"),
        ),
    )
    .await
    {
        Err(kube::Error::Api(status))
            if status.message.contains("spec.clusterIP")
                && status.message.contains("immutable") => {}
        other => failures.push(format!("clusterIP change: {other:?}")),
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The budget rules (timeout within the period, a cap on host-ports per
/// object) are refused at admission, naming the rule's field.
#[tokio::test(flavor = "multi_thread")]
async fn over_budget_manifests_are_rejected_naming_the_field() {
    // The largest object the cap allows is accepted: 10 ports × 1000 hosts.
    let hosts: Vec<String> = (0..1000)
        .map(|i| format!("198.18.{}.{}", i / 250, i % 250 + 1))
        .collect();
    let ports: String = (0..10)
        .map(|p| format!("  - {{name: p{p}, port: {}, targetPort: 80}}\n", 100 + p))
        .collect();
    let at_cap = format!("  hosts: [{}]\n  ports:\n{ports}", hosts.join(", "));
    refused_and_admitted(
        "e2e-validation-budget",
        budget_cases()
            .into_iter()
            .map(|c| (c.what, c.spec, c.admission)),
        ("10,000 host-ports", "at-cap", &at_cap),
    )
    .await;
}

/// The probe options (probe port, schedule, send/expect, HTTP method, body,
/// statuses and body match): each bad manifest is refused naming the
/// field, and a manifest using every option validly is admitted (so the
/// CRD with these rules also fits the apiserver's CEL cost budget).
#[tokio::test(flavor = "multi_thread")]
async fn probe_option_manifests_are_checked_at_admission() {
    refused_and_admitted(
        "e2e-validation-probe-options",
        PROBE_OPTION_CASES
            .iter()
            .map(|c| (c.what, c.spec.to_string(), c.admission)),
        ("the valid manifest", "all-options", VALID_PROBE_OPTIONS),
    )
    .await;
}

/// Hosts as objects: bad per-host fields are refused naming the field (by
/// type, bounds and pattern: the items of `hosts` can carry no CEL), and a
/// manifest mixing strings and objects with every per-host field, minReady
/// and the Service passthrough fields is admitted.
#[tokio::test(flavor = "multi_thread")]
async fn host_objects_are_checked_at_admission() {
    let port =
        |hosts: &str| format!("  ports: [{{name: a, port: 80, targetPort: 80, hosts: [{hosts}]}}]");
    let cases = [
        ("object without address", port("{zone: a}"), "spec.ports[0].hosts[0].address"),
        ("loopback address", port("{address: 127.0.0.1}"), "spec.ports[0].hosts[0].address"),
        ("link-local string", port("'fe80::1'"), "spec.ports[0].hosts[0]"),
        ("bad zone", port("{address: 198.18.0.2, zone: 'a b'}"), "spec.ports[0].hosts[0].zone"),
        ("drain not a boolean", port("{address: 198.18.0.2, drain: 3}"), "spec.ports[0].hosts[0].drain"),
        ("priority too high", port("198.18.0.1, {address: 198.18.0.2, priority: 101}"), "spec.ports[0].hosts[1].priority"),
        ("hostname not a DNS label", port("{address: 198.18.0.2, hostname: DB_1}"), "spec.ports[0].hosts[0].hostname"),
        ("legacy object", "  hosts: [{address: 0.0.0.0}]\n  ports: [{name: a, port: 80, targetPort: 80}]".to_string(), "spec.hosts[0].address"),
        ("minReady 0", "  ports: [{name: a, port: 80, targetPort: 80, hosts: [198.18.0.2], minReady: 0}]".to_string(), "spec.ports[0].minReady"),
        ("sessionAffinity", "  sessionAffinity: Sticky\n  ports: [{name: a, port: 80, targetPort: 80, hosts: [198.18.0.2]}]".to_string(), "spec.sessionAffinity"),
        ("affinity config without ClientIP", "  sessionAffinityConfig: {clientIP: {timeoutSeconds: 10}}\n  ports: [{name: a, port: 80, targetPort: 80, hosts: [198.18.0.2]}]".to_string(), "sessionAffinityConfig needs sessionAffinity: ClientIP"),
        ("affinity timeout", "  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 86401}}\n  ports: [{name: a, port: 80, targetPort: 80, hosts: [198.18.0.2]}]".to_string(), "timeoutSeconds"),
        ("internalTrafficPolicy", "  internalTrafficPolicy: Node\n  ports: [{name: a, port: 80, targetPort: 80, hosts: [198.18.0.2]}]".to_string(), "spec.internalTrafficPolicy"),
        ("trafficDistribution", "  trafficDistribution: Anywhere\n  ports: [{name: a, port: 80, targetPort: 80, hosts: [198.18.0.2]}]".to_string(), "spec.trafficDistribution"),
        ("publishNotReadyAddresses with a ClusterIP", "  publishNotReadyAddresses: true\n  ports: [{name: a, port: 80, targetPort: 80, hosts: [198.18.0.2]}]".to_string(), "publishNotReadyAddresses is only for a headless Service"),
    ];
    let good = "  clusterIP: None
  publishNotReadyAddresses: true
  sessionAffinity: ClientIP
  sessionAffinityConfig: {clientIP: {timeoutSeconds: 600}}
  internalTrafficPolicy: Cluster
  trafficDistribution: PreferClose
  serviceLabels: {team: db}
  serviceAnnotations: {example.com/owner: dba}
  hosts: [198.18.0.9]
  ports:
  - {name: a, port: 80, targetPort: 80, minReady: 2, hosts: [198.18.0.1, {address: 198.18.0.2, zone: zone-a, drain: true, priority: 1, hostname: db-2}, {address: 'fd00::2'}]}
  - {name: b, port: 81, targetPort: 81}";
    refused_and_admitted(
        "e2e-validation-hosts",
        cases.into_iter(),
        ("hosts as strings and objects", "hosts-good", good),
    )
    .await;
}

/// TLS options and credential references: each bad one refused naming the
/// field; a good one with every option (Secrets need not exist to admit it)
/// accepted.
#[tokio::test(flavor = "multi_thread")]
async fn bad_tls_options_are_rejected_naming_the_field() {
    let good = "  ports:
  - {name: a, port: 443, targetPort: 443, hosts: [198.18.0.2], httpGet: {scheme: HTTPS, host: db.example, httpHeaders: [{name: Authorization, valueFrom: {secretKeyRef: {name: api, key: token}}}], tls: {verify: true, caBundleFrom: {configMapKeyRef: {name: ca, key: ca.crt}}, serverName: db.example, clientCertSecretRef: {name: client}, minVersion: '1.3'}}}\n  - {name: b, port: 444, targetPort: 444, hosts: [198.18.0.2], tcpSocket: {enable: true, tls: {caBundle: x}}}\n  - {name: c, port: 445, targetPort: 445, hosts: [198.18.0.2], grpc: {enable: true, tls: {}}}";
    refused_and_admitted(
        "e2e-validation-tls",
        tls_cases()
            .into_iter()
            .map(|c| (c.what, c.spec, c.admission)),
        ("every TLS option", "tls-good", good),
    )
    .await;
}

/// In a new namespace `ns`: every case of a table of bad specs is refused
/// naming its field (see [`not_refused`]), and `good` (what it is, the
/// object's name, its spec lines) is admitted.
async fn refused_and_admitted(
    ns: &str,
    cases: impl Iterator<Item = (&'static str, String, &'static str)>,
    (what, name, spec): (&str, &str, &str),
) {
    let client = client().await;
    install_crd(&client, GROUP).await;
    let ns = namespace(&client, ns).await;
    let mut failures = not_refused(&client, &ns, cases).await;
    if let Err(e) = create(&client, &ns, &manifest(GROUP, name, spec)).await {
        failures.push(format!("{what} refused: {e}"));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The cases of a table of bad specs (what, spec lines, what the message
/// must contain) that the apiserver does not refuse as expected, as
/// messages.
async fn not_refused(
    client: &kube::Client,
    ns: &str,
    cases: impl Iterator<Item = (&'static str, String, &'static str)>,
) -> Vec<String> {
    let mut failures = Vec::new();
    for (i, (what, spec, expected)) in cases.enumerate() {
        let yaml = manifest(GROUP, &format!("bad-{i}"), &spec);
        let result = create(client, ns, &yaml).await;
        // What only the controller checks (rules over `hosts`, whose items
        // have no CEL type) is admitted; `plan` refuses it (unit tests).
        if expected.is_empty() {
            if let Err(e) = result {
                failures.push(format!(
                    "{what}: expected to be admitted (checked by the controller), got {e}"
                ));
            }
            continue;
        }
        match result {
            Ok(_) => failures.push(format!("{what}: accepted")),
            Err(kube::Error::Api(status)) if status.code == 422 => {
                if !status.message.contains(expected) {
                    failures.push(format!(
                        "{what}: message does not name {expected}: {}",
                        status.message
                    ));
                }
            }
            Err(e) => failures.push(format!("{what}: unexpected error {e}")),
        }
    }
    failures
}

/// Create a ClusterEndpoint with a plain POST, as `kubectl create` (or a
/// client-side `kubectl apply` of a new object) does.
async fn create(
    client: &kube::Client,
    ns: &str,
    yaml: &str,
) -> Result<kube::core::DynamicObject, kube::Error> {
    let (api, obj) = dynamic(client, ns, GROUP, yaml);
    api.create(&kube::api::PostParams::default(), &obj).await
}
