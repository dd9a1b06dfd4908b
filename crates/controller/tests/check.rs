//! `kube-endpoints check -f`: validation and one probe per host, with no
//! cluster. The hosts are network-namespace test hosts (loopback addresses
//! cannot be endpoints, so `check` refuses them like the apiserver does).

use std::process::Output;

use kube_endpoints_testkit::netns::{BackendPorts, TestHost};

fn manifest(up: &str, down: &str) -> String {
    format!(
        r#"
apiVersion: khulnasoft-lab.github.io/v1beta1
kind: ClusterEndpoint
metadata: {{name: wordpress, namespace: web}}
spec:
  ports:
  - {{name: wp-https, port: 38081, targetPort: 443, hosts: [{up}, {down}], tcpSocket: {{enable: true}}}}
  - {{name: wp-http, port: 38082, targetPort: 80, hosts: [{up}, {down}], httpGet: {{path: /healthz}}}}
  - {{name: wp-udp, protocol: UDP, port: 38003, targetPort: 1234, hosts: [{up}, {down}], udpSocket: {{enable: true, data: ping}}}}
  - {{name: wp-grpc, port: 38083, targetPort: 8080, hosts: [{up}, {down}], grpc: {{enable: true}}}}
  - {{name: static, port: 5432, targetPort: 5432, hosts: [{up}]}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: unrelated}}
"#
    )
}

async fn check(yaml: &str, extra: &[&str]) -> (Output, String) {
    let dir = std::env::temp_dir().join(format!("ke-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    // One file per call: the tests of this binary run in parallel.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let file = dir.join(format!("m-{n}.yaml"));
    std::fs::write(&file, yaml).expect("manifest written");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_kube-endpoints"))
        .arg("check")
        .arg("-f")
        .arg(&file)
        .args(extra)
        .output()
        .await
        .expect("check runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out, text)
}

/// `check` refuses `yaml`, its output saying each of `said`.
async fn check_fails_saying(yaml: &str, said: &[&str]) {
    let (out, text) = check(yaml, &[]).await;
    assert!(!out.status.success(), "{text}");
    for what in said {
        assert!(text.contains(what), "{what}:\n{text}");
    }
}

/// Table rows as (port, host, probe, result, message).
fn rows(text: &str) -> Vec<(String, String, String, String, String)> {
    text.lines()
        .skip_while(|l| !l.starts_with("OBJECT"))
        .skip(1)
        .take_while(|l| !l.is_empty() && !l.starts_with("---"))
        .map(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            let message = cells.get(6..).map(|m| m.join(" ")).unwrap_or_default();
            (
                cells[1].to_string(),
                cells[2].to_string(),
                cells[3].to_string(),
                cells[4].to_string(),
                message,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn check_probes_every_host_once_and_reports_each_verdict() {
    let up = TestHost::create().await.expect("host");
    let down = TestHost::create().await.expect("host");
    let ports = BackendPorts::wordpress();
    let _backend = up.start_backend(ports).await.expect("backend");
    // `down` has no backend: TCP is refused, UDP gets port-unreachable.
    let (up_ip, down_ip) = (up.ipv4().to_string(), down.ipv4().to_string());
    let (out, text) = check(&manifest(&up_ip, &down_ip), &[]).await;
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("ClusterEndpoint \"wordpress\" (document 0): valid"),
        "{text}"
    );
    assert!(text.contains("skipping ConfigMap"), "{text}");
    let mut got = rows(&text);
    got.sort();
    let verdict = |port: &str, host: &str, probe: &str, result: &str| {
        (
            port.to_string(),
            host.to_string(),
            probe.to_string(),
            result.to_string(),
        )
    };
    let summary: Vec<_> = got
        .iter()
        .map(|(p, h, k, r, _)| verdict(p, h, k, r))
        .collect();
    let mut expected = vec![
        verdict("static:5432", &up_ip, "none", "static"),
        verdict("wp-grpc:8080", &up_ip, "grpc", "healthy"),
        verdict("wp-grpc:8080", &down_ip, "grpc", "unhealthy"),
        verdict("wp-http:80", &up_ip, "http", "healthy"),
        verdict("wp-http:80", &down_ip, "http", "unhealthy"),
        verdict("wp-https:443", &up_ip, "tcp", "healthy"),
        verdict("wp-https:443", &down_ip, "tcp", "unhealthy"),
        verdict("wp-udp:1234", &up_ip, "udp", "healthy"),
        verdict("wp-udp:1234", &down_ip, "udp", "unhealthy"),
    ];
    expected.sort();
    assert_eq!(summary, expected, "{text}");
    for (port, host, _, result, message) in &got {
        if result == "unhealthy" {
            assert!(!message.is_empty(), "{port} {host} says why");
        }
    }
    let tcp_down = got
        .iter()
        .find(|(p, h, ..)| p == "wp-https:443" && h == &down_ip)
        .expect("row");
    assert!(tcp_down.4.contains("connection refused"), "{}", tcp_down.4);

    // -o yaml adds the objects the controller would write.
    let (out, text) = check(&manifest(&up_ip, &down_ip), &["-o", "yaml"]).await;
    assert!(out.status.success());
    for kind in ["kind: Service", "kind: EndpointSlice", "kind: Endpoints"] {
        assert!(text.contains(kind), "{kind} missing:\n{text}");
    }
    assert!(text.contains("wordpress.wp-http.ipv4.0"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_manifest_fails_naming_the_field() {
    let yaml = "apiVersion: khulnasoft-lab.github.io/v1beta1\nkind: ClusterEndpoint\nmetadata: {name: bad}\nspec:\n  ports:\n  - {name: a, port: 80, targetPort: 0, hosts: [127.0.0.1]}\n";
    check_fails_saying(
        yaml,
        &[
            "spec.ports[0].targetPort: must be between 1 and 65535, got 0",
            "spec.ports[0].hosts[0]",
        ],
    )
    .await;
}

/// The probe options: `check` probes the probe port with the method,
/// statuses and body match and the TCP exchange, and says how each port is
/// probed without quoting what is sent or expected.
#[tokio::test(flavor = "multi_thread")]
async fn check_uses_and_shows_the_probe_options() {
    use kube_endpoints_testkit::netns::Role;
    let primary = TestHost::create().await.expect("host");
    let replica = TestHost::create().await.expect("host");
    let ports = BackendPorts {
        tcp: vec![5432],
        http: vec![8008],
        redis: vec![6379],
        ..BackendPorts::default()
    };
    let _b1 = primary.start_backend(ports.clone()).await.expect("backend");
    let b2 = replica.start_backend(ports).await.expect("backend");
    b2.set_role(Role::Replica).expect("replica");
    let (p, r) = (primary.ipv4().to_string(), replica.ipv4().to_string());
    let yaml = format!(
        r#"
apiVersion: khulnasoft-lab.github.io/v1beta1
kind: ClusterEndpoint
metadata: {{name: db}}
spec:
  ports:
  - name: pg
    hosts: [{p}, {r}]
    port: 5432
    targetPort: 5432
    probePort: 8008
    httpGet: {{path: "/role?token=abc", expectedStatuses: [200], bodyMatch: {{text: "role: primary"}}}}
    unhealthyPeriodSeconds: 30
    jitterPercent: 10
    edgePeriodSeconds: 0
  - name: redis
    hosts: [{p}, {r}]
    port: 6379
    targetPort: 6379
    tcpSocket: {{enable: true, send: {{base64: Uk9MRQ0K}}, expect: {{regex: "master"}}}}
"#
    );
    let (out, text) = check(&yaml, &[]).await;
    assert!(out.status.success(), "{text}");
    let line = |port: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("  {port}: ")))
            .unwrap_or_else(|| panic!("no settings line for {port}:\n{text}"))
            .to_string()
    };
    assert_eq!(
        line("pg"),
        "  pg: http GET /role, status 200, body must match a byte string; probed on port 8008 (traffic to 5432); every 10s, every 30s while unhealthy, jitter 10%, confirmed at once after a change"
    );
    assert_eq!(
        line("redis"),
        "  redis: tcp: send 6 bytes, expect a regex; probed on port 6379; every 10s"
    );
    assert!(!text.contains("token=abc"), "{text}");
    let mut got: Vec<_> = rows(&text)
        .into_iter()
        .map(|(port, host, _, result, _)| (port, host, result))
        .collect();
    got.sort();
    let mut expected = vec![
        ("pg:5432".to_string(), p.clone(), "healthy".to_string()),
        ("pg:5432".to_string(), r.clone(), "unhealthy".to_string()),
        ("redis:6379".to_string(), p.clone(), "healthy".to_string()),
        ("redis:6379".to_string(), r.clone(), "unhealthy".to_string()),
    ];
    expected.sort();
    assert_eq!(got, expected, "{text}");
    assert!(!text.contains("slave"), "a reply is never shown:\n{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reference_to_a_secret_is_reported_not_probed_without_it() {
    let yaml = "apiVersion: khulnasoft-lab.github.io/v1beta1\nkind: ClusterEndpoint\nmetadata: {name: tls}\nspec:\n  ports:\n  - {name: a, port: 443, targetPort: 443, hosts: [198.18.0.2], httpGet: {scheme: https, tls: {caBundleFrom: {secretKeyRef: {name: ca, key: ca.crt}}}}}\n";
    check_fails_saying(
        yaml,
        &["spec.ports[0].httpGet.tls.caBundleFrom.secretKeyRef: Secret \"ca\" cannot be read: kube-endpoints check reads no Secrets or ConfigMaps"],
    )
    .await;
}

/// Hosts given as DNS names are resolved (with `--dns-server`, here the
/// testkit's DNS server) and each address probed, with the name as `Host`;
/// a name that does not resolve is reported; a malformed one is refused.
#[tokio::test(flavor = "multi_thread")]
async fn names_are_resolved_probed_and_reported() {
    let host = TestHost::create().await.expect("host");
    let _backend = host
        .start_backend_args(
            BackendPorts::wordpress(),
            vec!["--require-header".into(), "host:db.check.test".into()],
        )
        .await
        .expect("backend");
    let dns = kube_endpoints_testkit::DnsServer::start()
        .await
        .expect("DNS server");
    dns.set("db.check.test", &[host.ipv4().into()], 30);
    let ip = host.ipv4().to_string();
    let yaml = "apiVersion: khulnasoft-lab.github.io/v1beta1\nkind: ClusterEndpoint\nmetadata: {name: db}\nspec:\n  ports:\n  - {name: web, port: 80, targetPort: 80, hosts: [db.check.test, gone.check.test], httpGet: {path: /auth}}\n";
    let server = dns.addr().to_string();
    let (out, text) = check(yaml, &["--dns-server", &server]).await;
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!("web: name db.check.test resolves to {ip}")),
        "{text}"
    );
    assert!(
        text.contains("web: name gone.check.test does not resolve"),
        "{text}"
    );
    // `/auth` answers 200 only with `Host: db.check.test`.
    let got: Vec<_> = rows(&text)
        .into_iter()
        .map(|(p, h, k, r, _)| (p, h, k, r))
        .collect();
    assert_eq!(
        got,
        [("web:80".into(), ip, "http".into(), "healthy".into())],
        "{text}"
    );

    let bad = yaml.replace("gone.check.test", "'127.1'");
    check_fails_saying(&bad, &["spec.ports[0].hosts[1]", "ends in a number"]).await;
}

/// Hosts as objects: `check` accepts them and says how each would be
/// listed (drained, a backup on standby or in rotation); `-o yaml` shows
/// the zone, hint and hostname in the slices and the drained host
/// terminating.
#[tokio::test(flavor = "multi_thread")]
async fn check_handles_per_host_fields() {
    let up = TestHost::create().await.expect("host");
    let backup = TestHost::create().await.expect("host");
    let drained = TestHost::create().await.expect("host");
    let ports = BackendPorts::wordpress();
    let _b1 = up.start_backend(ports.clone()).await.expect("backend");
    let _b2 = backup.start_backend(ports.clone()).await.expect("backend");
    let _b3 = drained.start_backend(ports).await.expect("backend");
    let (u, b, d) = (
        up.ipv4().to_string(),
        backup.ipv4().to_string(),
        drained.ipv4().to_string(),
    );
    let yaml = format!(
        r#"
apiVersion: khulnasoft-lab.github.io/v1beta1
kind: ClusterEndpoint
metadata: {{name: db, namespace: web}}
spec:
  ports:
  - name: tcp
    port: 443
    targetPort: 443
    tcpSocket: {{enable: true}}
    hosts:
    - {{address: {u}, zone: zone-a, hostname: db-0}}
    - {{address: {b}, zone: zone-a, priority: 1}}
    - {{address: {d}, zone: zone-b, drain: true}}
"#
    );
    let (out, text) = check(&yaml, &["-o", "yaml"]).await;
    assert!(out.status.success(), "{text}");
    let got = rows(&text);
    let message = |host: &str| {
        got.iter()
            .find(|(_, h, ..)| h == host)
            .map(|r| (r.3.clone(), r.4.clone()))
            .unwrap_or_else(|| panic!("no row for {host}:\n{text}"))
    };
    assert_eq!(
        message(&u),
        ("healthy".to_string(), String::new()),
        "{text}"
    );
    assert_eq!(message(&b).1, "[backup 1, standby]", "{text}");
    assert_eq!(message(&d).1, "[drained]", "{text}");
    for line in [
        "zone: zone-a",
        "hostname: db-0",
        "terminating: true",
        "name: zone-a",
    ] {
        assert!(text.contains(line), "{line} missing:\n{text}");
    }
}
