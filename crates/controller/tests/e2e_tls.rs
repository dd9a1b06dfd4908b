//! TLS probes with credentials from Secrets and ConfigMaps, against the
//! real control plane and a test host serving HTTPS with a certificate made
//! here (rcgen):
//!
//! - a verified probe fails on the wrong CA with a clear reason and passes
//!   on the right one; TLS on tcpSocket is verified too; mutual TLS passes
//!   with the client certificate of a `kubernetes.io/tls` Secret and fails
//!   without it;
//! - a header value from a Secret reaches the server (its `/auth` answers
//!   200 only with it) and shows up nowhere in status, Events, metrics or
//!   the controller's log;
//! - a missing Secret is reported on its object alone and picked up once it
//!   is created; a rotated one is used at once;
//! - the certificate's expiry is in status and metrics, a certificate
//!   expiring within the warning window raises `CertificateExpiring`, and a
//!   restart of the controller writes nothing and announces nothing again.
//!
//! Needs root.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Client;
use kube::api::{Api, ListParams, PostParams};
use kube_endpoints_api::{GROUP, LABEL_PROBE_CREDENTIALS, Phase};
use kube_endpoints_testkit::netns::BackendPorts;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use support::*;

/// The header value kept in a Secret: must never leave the probe.
const TOKEN: &str = "tok-4f1c9e7a-never-shown";
const HEADER: &str = "X-Probe-Token";

struct Pki {
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).expect("CA");
        Pki {
            ca_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A server certificate for `ip`, expiring at the midnight (UTC) `days`
    /// days from now; (certificate PEM, key PEM, notAfter).
    fn leaf(&self, ip: &str, days: i64) -> (String, String, SystemTime) {
        self.certificate(ip, days, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate (for mutual TLS); (certificate PEM, key PEM).
    fn client(&self) -> (String, String) {
        let (cert, key, _) = self.certificate("probe", 365, ExtendedKeyUsagePurpose::ClientAuth);
        (cert, key)
    }

    fn certificate(
        &self,
        name: &str,
        days: i64,
        usage: ExtendedKeyUsagePurpose,
    ) -> (String, String, SystemTime) {
        use chrono::Datelike;
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(vec![name.to_string()]).expect("params");
        let day = (chrono::Utc::now() + chrono::Duration::days(days)).date_naive();
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(day.year(), day.month() as u8, day.day() as u8);
        params.extended_key_usages = vec![usage];
        let not_after = u64::try_from(params.not_after.unix_timestamp()).expect("after 1970");
        let cert = params.signed_by(&key, &self.issuer).expect("leaf");
        (
            cert.pem(),
            key.serialize_pem(),
            UNIX_EPOCH + Duration::from_secs(not_after),
        )
    }
}

fn labels() -> BTreeMap<String, String> {
    BTreeMap::from([(LABEL_PROBE_CREDENTIALS.to_string(), "true".to_string())])
}

/// Creates `object` as `name` in `ns`, labelled for probes.
async fn create_labelled<K>(client: &Client, ns: &str, name: &str, mut object: K)
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::Serialize
        + serde::de::DeserializeOwned,
{
    let meta = object.meta_mut();
    meta.name = Some(name.into());
    meta.labels = Some(labels());
    Api::<K>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &object)
        .await
        .unwrap_or_else(|e| panic!("{} {name} is not created: {e}", K::kind(&())));
}

async fn create_secret(client: &Client, ns: &str, name: &str, key: &str, value: &str) {
    let secret = Secret {
        string_data: Some(BTreeMap::from([(key.to_string(), value.to_string())])),
        ..Default::default()
    };
    create_labelled(client, ns, name, secret).await;
}

/// A `kubernetes.io/tls` Secret, labelled for probes.
async fn create_tls_secret(client: &Client, ns: &str, name: &str, cert: &str, key: &str) {
    let secret = Secret {
        type_: Some("kubernetes.io/tls".into()),
        string_data: Some(BTreeMap::from([
            ("tls.crt".to_string(), cert.to_string()),
            ("tls.key".to_string(), key.to_string()),
        ])),
        ..Default::default()
    };
    create_labelled(client, ns, name, secret).await;
}

async fn create_config_map(client: &Client, ns: &str, name: &str, key: &str, value: &str) {
    let config_map = ConfigMap {
        data: Some(BTreeMap::from([(key.to_string(), value.to_string())])),
        ..Default::default()
    };
    create_labelled(client, ns, name, config_map).await;
}

/// The test backend's arguments to serve HTTPS on `port` with the given
/// certificate and key, and one more option.
fn https_args(
    port: u16,
    cert: &std::path::Path,
    key: &std::path::Path,
    option: [String; 2],
) -> Vec<String> {
    let mut args = vec![
        "--https".to_string(),
        port.to_string(),
        "--tls-cert".into(),
        cert.display().to_string(),
        "--tls-key".into(),
        key.display().to_string(),
    ];
    args.extend(option);
    args
}

/// An HTTPS ClusterEndpoint probing `/auth` on `host`:443 with the given
/// `tls` block and headers (YAML flow mappings).
fn https_cep(name: &str, host: &str, tls: &str, headers: &str) -> String {
    format!(
        r#"
apiVersion: {GROUP}/v1beta1
kind: ClusterEndpoint
metadata: {{name: {name}}}
spec:
  periodSeconds: 1
  ports:
  - name: https
    hosts: ["{host}"]
    port: 443
    targetPort: 443
    failureThreshold: 1
    httpGet:
      scheme: https
      path: /auth
      httpHeaders: {headers}
      tls: {tls}
"#
    )
}

/// A ClusterEndpoint of one port on `host` (`probe`: the handler, a YAML
/// flow mapping).
fn cep(name: &str, host: &str, port: u16, probe: &str) -> String {
    format!(
        "apiVersion: {GROUP}/v1beta1\nkind: ClusterEndpoint\nmetadata: {{name: {name}}}\nspec:\n  periodSeconds: 1\n  ports:\n  - {{name: tls, hosts: ['{host}'], port: {port}, targetPort: {port}, failureThreshold: 1, {probe}}}\n"
    )
}

/// The message of `name`'s first unhealthy host, once it has one.
async fn unhealthy_message(client: &Client, ns: &str, name: &str) -> String {
    let cep = wait_phase(client, ns, GROUP, name, Phase::UnHealthy).await;
    let status = cep.status.expect("status");
    status.ports[0].unhealthy[0].message.clone()
}

/// (status, reason, message) of the `Initialized` condition.
async fn initialized(client: &Client, ns: &str, name: &str) -> Option<(String, String, String)> {
    let cep = get_cep(client, ns, GROUP, name).await?;
    let status = cep.status?;
    let c = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Initialized")?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_verification_secret_headers_and_certificate_expiry() {
    let client = client().await;
    install_crd(&client, GROUP).await;
    let ns = namespace(&client, "tls").await;

    let pki = Pki::new("e2e TLS CA");
    let other = Pki::new("another CA");
    let host = kube_endpoints_testkit::TestHost::create()
        .await
        .expect("test host");
    let ip = host.ipv4().to_string();
    // Expires in 7 days: inside the 14-day warning window.
    let (cert, key, not_after) = pki.leaf(&ip, 7);
    let cert_path = host.dir().join("server.crt");
    let key_path = host.dir().join("server.key");
    std::fs::write(&cert_path, cert).expect("write certificate");
    std::fs::write(&key_path, key).expect("write key");
    // Mutual TLS on 8443: a client certificate of `clients` is required.
    let clients = Pki::new("e2e client CA");
    let client_ca_path = host.dir().join("client-ca.crt");
    std::fs::write(&client_ca_path, &clients.ca_pem).expect("write client CA");
    let _mtls_backend = host
        .start_backend_args(
            BackendPorts::default(),
            https_args(
                8443,
                &cert_path,
                &key_path,
                [
                    "--tls-client-ca".into(),
                    client_ca_path.display().to_string(),
                ],
            ),
        )
        .await
        .expect("the mutual TLS backend starts");
    let _backend = host
        .start_backend_args(
            BackendPorts::default(),
            https_args(
                443,
                &cert_path,
                &key_path,
                ["--require-header".into(), format!("{HEADER}:{TOKEN}")],
            ),
        )
        .await
        .expect("the HTTPS backend starts");

    create_config_map(&client, &ns, "right-ca", "ca.crt", &pki.ca_pem).await;
    create_secret(&client, &ns, "wrong-ca", "ca.crt", &other.ca_pem).await;
    // As `kubectl create secret --from-file` of an echoed file: a newline.
    create_secret(&client, &ns, "token", "token", &format!("{TOKEN}\n")).await;

    let (client_cert, client_key) = clients.client();
    create_tls_secret(&client, &ns, "probe-client", &client_cert, &client_key).await;

    let mut controller = start_controller(
        &ns,
        &[
            "--probe-credentials=true",
            "--cert-expiry-warning-days",
            "14",
        ],
    )
    .await;

    let header =
        format!("[{{name: {HEADER}, valueFrom: {{secretKeyRef: {{name: token, key: token}}}}}}]");
    let right_ca = "{caBundleFrom: {configMapKeyRef: {name: right-ca, key: ca.crt}}}";
    let wrong_ca = "{caBundleFrom: {secretKeyRef: {name: wrong-ca, key: ca.crt}}}";
    for (name, tls, headers) in [
        ("verified", right_ca, header.as_str()),
        ("wrong-ca", wrong_ca, header.as_str()),
        // The negative control: without the header, /auth refuses.
        ("no-token", right_ca, "[]"),
    ] {
        must_apply(&client, &ns, GROUP, &https_cep(name, &ip, tls, headers)).await;
    }

    // The right CA verifies and the Secret's header value reached the server.
    wait_phase(&client, &ns, GROUP, "verified", Phase::Healthy).await;
    let wrong = unhealthy_message(&client, &ns, "wrong-ca").await;
    assert!(
        wrong.contains("certificate signed by an unknown authority"),
        "{wrong}"
    );
    let refused = unhealthy_message(&client, &ns, "no-token").await;
    assert!(refused.contains("403"), "{refused}");

    // TLS on tcpSocket (verified), and mutual TLS with the client
    // certificate from a kubernetes.io/tls Secret; without it the server
    // refuses the handshake.
    let ca = "caBundleFrom: {configMapKeyRef: {name: right-ca, key: ca.crt}}";
    let tcp = format!("tcpSocket: {{enable: true, tls: {{{ca}}}}}");
    must_apply(&client, &ns, GROUP, &cep("tcp-tls", &ip, 443, &tcp)).await;
    let mtls = format!(
        "httpGet: {{scheme: https, path: /healthz, tls: {{{ca}, clientCertSecretRef: {{name: probe-client}}}}}}"
    );
    must_apply(&client, &ns, GROUP, &cep("mtls", &ip, 8443, &mtls)).await;
    let anonymous = format!("httpGet: {{scheme: https, path: /healthz, tls: {{{ca}}}}}");
    must_apply(
        &client,
        &ns,
        GROUP,
        &cep("anonymous", &ip, 8443, &anonymous),
    )
    .await;
    wait_phase(&client, &ns, GROUP, "tcp-tls", Phase::Healthy).await;
    wait_phase(&client, &ns, GROUP, "mtls", Phase::Healthy).await;
    let anonymous = unhealthy_message(&client, &ns, "anonymous").await;
    assert!(anonymous.contains("client certificate"), "{anonymous}");

    // The certificate's expiry, in status, marked as expiring soon.
    let listed = eventually("the certificate in status", || async {
        let cep = get_cep(&client, &ns, GROUP, "verified").await?;
        let port = cep.status?.ports.into_iter().next()?;
        port.certificates.into_iter().next()
    })
    .await;
    let expected = chrono::DateTime::<chrono::Utc>::from(not_after)
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    assert_eq!(
        (
            listed.host.as_str(),
            listed.not_after.as_str(),
            listed.expires_soon
        ),
        (ip.as_str(), expected.as_str(), true)
    );
    wait_event(&client, &ns, "verified", "CertificateExpiring", &ip).await;
    wait_event(
        &client,
        &ns,
        "verified",
        "CertificateExpiring",
        "within 14 days",
    )
    .await;
    let metric = format!(
        "kube_endpoints_certificate_expiry_timestamp_seconds{{namespace=\"{ns}\",name=\"verified\",port=\"https\"}}"
    );
    let seconds = not_after
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let line = eventually("the expiry metric", || async {
        controller
            .metrics()
            .await
            .lines()
            .find(|l| l.starts_with(&metric))
            .map(String::from)
    })
    .await;
    assert_eq!(line, format!("{metric} {seconds}"));

    // A reference to a Secret that does not exist: reported on that object
    // alone, naming the field and the Secret; fixed by creating it.
    let late =
        format!("[{{name: {HEADER}, valueFrom: {{secretKeyRef: {{name: late, key: token}}}}}}]");
    must_apply(
        &client,
        &ns,
        GROUP,
        &https_cep("missing", &ip, right_ca, &late),
    )
    .await;
    let (status, reason, message) = eventually("the missing Secret reported", || async {
        initialized(&client, &ns, "missing")
            .await
            .filter(|(s, _, _)| s == "False")
    })
    .await;
    assert_eq!((status.as_str(), reason.as_str()), ("False", "InvalidSpec"));
    assert!(
        message.contains("spec.ports[0].httpGet.httpHeaders[0].valueFrom.secretKeyRef")
            && message.contains("Secret \"late\" not found"),
        "{message}"
    );
    wait_event(&client, &ns, "missing", "InvalidSpec", "Secret \"late\"").await;
    let still = get_cep(&client, &ns, GROUP, "verified")
        .await
        .expect("there");
    assert_eq!(still.status.and_then(|s| s.phase), Some(Phase::Healthy));
    create_secret(&client, &ns, "late", "token", TOKEN).await;
    wait_phase(&client, &ns, GROUP, "missing", Phase::Healthy).await;

    // A rotated Secret is used at once: a wrong token fails the probe, the
    // right one again passes.
    let set_token = |value: String| {
        let client = client.clone();
        let ns = ns.clone();
        async move {
            let patch = serde_json::json!({"stringData": {"token": value}});
            Api::<Secret>::namespaced(client, &ns)
                .patch(
                    "late",
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(&patch),
                )
                .await
                .expect("Secret is patched");
        }
    };
    set_token("not-the-token".into()).await;
    let rotated = unhealthy_message(&client, &ns, "missing").await;
    assert!(rotated.contains("403"), "{rotated}");
    set_token(TOKEN.into()).await;
    wait_phase(&client, &ns, GROUP, "missing", Phase::Healthy).await;

    // The token appears nowhere: not in any status, Event or log line.
    let all = ceps(&client, &ns, GROUP)
        .list(&ListParams::default())
        .await
        .expect("list");
    let statuses = serde_json::to_string(&all.items.iter().map(|c| &c.status).collect::<Vec<_>>())
        .expect("json");
    assert!(!statuses.contains(TOKEN), "{statuses}");
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), &ns);
    let events = serde_json::to_string(&events.list(&ListParams::default()).await.expect("events"))
        .expect("json");
    assert!(events.contains("CertificateExpiring"), "Events were listed");
    assert!(!events.contains(TOKEN), "{events}");
    let metrics = controller.metrics().await;
    assert!(!metrics.contains(TOKEN));
    controller.check_alive().expect("the controller runs");
    let log = controller.log();
    assert!(log.contains("certificate expiring"), "the log was read");
    assert!(!log.contains(TOKEN), "the token is in the controller's log");

    // A restart writes nothing: the certificates stay listed until the new
    // process's probes see them again, and their expiry is not announced
    // a second time.
    let versions = || resource_versions(&client, &ns, GROUP, "verified");
    let before = versions().await;
    controller.kill().await;
    let restarted = start_controller(
        &ns,
        &[
            "--probe-credentials=true",
            "--cert-expiry-warning-days",
            "14",
        ],
    )
    .await;
    eventually(
        "the restarted controller to reconcile and probe",
        || async {
            // Seven objects, one target each.
            let reconciled = restarted.metric("kube_endpoints_reconciles_total").await >= 7.0;
            let probed = restarted.metric("kube_endpoints_probes_total").await >= 21.0;
            let seen = restarted.metrics().await.contains(&metric);
            (reconciled && probed && seen).then_some(())
        },
    )
    .await;
    assert_eq!(
        restarted.metric("kube_endpoints_api_writes_total").await,
        0.0,
        "the restarted controller wrote to the API:\n{}",
        restarted.metrics().await
    );
    assert_eq!(versions().await, before, "resourceVersions changed");
    let expiring = events_of(&client, &ns, "verified", "CertificateExpiring").await;
    assert_eq!(expiring, 1, "the expiry was announced once");
}

/// How many Events about `name` have `reason` (counting repeats of one
/// series).
async fn events_of(client: &Client, ns: &str, name: &str, reason: &str) -> i32 {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), ns);
    api.list(&ListParams::default())
        .await
        .expect("events")
        .items
        .iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .filter(|e| e.reason.as_deref() == Some(reason))
        .map(|e| 1 + e.series.as_ref().map_or(0, |s| s.count.max(1) - 1))
        .sum()
}
