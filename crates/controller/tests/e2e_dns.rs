//! Hosts given as DNS names, end to end against the real control plane
//! and a DNS server the test controls (the testkit's [`DnsServer`], on a
//! loopback port; the controller runs with `--dns-server` pointing at it):
//!
//! - a name whose records change moves the endpoints within the resolve
//!   period, with no write to the object in between (its generation stays);
//! - while the DNS server is down the last good addresses stay in the
//!   slices, and `NamesResolved=False` (`DNSResolutionFailed`) and a Warning
//!   Event say so;
//! - a name resolving into a denied range is denied like a literal;
//! - an HTTP probe of a resolved address sends the name as `Host`.
//!
//! Network safety: every name resolves only to addresses of TestHosts this
//! test created. Needs root.

mod support;

use std::net::IpAddr;

use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Client;
use kube_endpoints_api::{CONDITION_NAMES_RESOLVED, ClusterEndpointStatus, GROUP};
use kube_endpoints_testkit::DnsServer;
use kube_endpoints_testkit::netns::{Backend, TestHost};
use serde_json::{Value, json};
use support::*;

const NAME: &str = "db.e2e.test";

async fn setup(test: &str) -> (Client, String, DnsServer) {
    let client = client().await;
    install_crd(&client, GROUP).await;
    let ns = namespace(&client, test).await;
    let dns = DnsServer::start()
        .await
        .expect("the test DNS server starts");
    (client, ns, dns)
}

async fn controller(ns: &str, dns: &DnsServer, extra: &[&str]) -> Controller {
    let server = dns.addr().to_string();
    let mut args = vec!["--dns-server", server.as_str(), "--dns-min-ttl", "1"];
    args.extend_from_slice(extra);
    start_controller(ns, &args).await
}

/// One port `web` (80 -> 80) on `hosts`, probed with `probe`, re-resolved
/// every second.
fn cep(name: &str, hosts: &[&str], probe: Value) -> String {
    let mut port = json!({"name": "web", "port": 80, "targetPort": 80, "hosts": hosts,
                          "resolvePeriodSeconds": 1});
    for (k, v) in probe.as_object().expect("probe fields") {
        port[k] = v.clone();
    }
    json!({
        "apiVersion": format!("{GROUP}/v1beta1"),
        "kind": "ClusterEndpoint",
        "metadata": {"name": name},
        "spec": {"periodSeconds": 1, "ports": [port]},
    })
    .to_string()
}

fn tcp() -> Value {
    json!({"tcpSocket": {"enable": true}})
}

async fn host() -> (TestHost, Backend) {
    host_with(tcp_and_http_ports()).await
}

/// The addresses in the slices of `service` and whether each is ready.
async fn endpoints_of(client: &Client, ns: &str, service: &str) -> Vec<(String, bool)> {
    slice_readiness(client, ns, service)
        .await
        .into_iter()
        .map(|((_, _, address), ready)| (address, ready))
        .collect()
}

/// Wait until the slices of `service` list exactly `want`, all ready.
async fn wait_ready_exactly(client: &Client, ns: &str, service: &str, want: &[IpAddr]) {
    let mut want: Vec<(String, bool)> = want.iter().map(|a| (a.to_string(), true)).collect();
    want.sort();
    eventually(
        &format!("{ns}/{service} to serve exactly {want:?}"),
        || async {
            let mut got = endpoints_of(client, ns, service).await;
            got.sort();
            (got == want).then_some(())
        },
    )
    .await;
}

async fn status(client: &Client, ns: &str, name: &str) -> Option<ClusterEndpointStatus> {
    get_cep(client, ns, GROUP, name).await?.status
}

async fn generation(client: &Client, ns: &str, name: &str) -> Option<i64> {
    get_cep(client, ns, GROUP, name).await?.metadata.generation
}

/// Wait until `NamesResolved` has `reason`; returns its message.
async fn wait_names_resolved(client: &Client, ns: &str, name: &str, reason: &str) -> String {
    eventually(&format!("{ns}/{name}: NamesResolved {reason}"), || async {
        let status = status(client, ns, name).await?;
        status
            .conditions
            .iter()
            .find(|c| c.type_ == CONDITION_NAMES_RESOLVED && c.reason == reason)
            .map(|c| c.message.clone())
    })
    .await
}

#[tokio::test]
async fn a_name_whose_records_change_moves_the_endpoints_with_no_write_to_the_object() {
    let (client, ns, dns) = setup("dns-change").await;
    let (h1, _b1) = host().await;
    let (h2, _b2) = host().await;
    let first: Vec<IpAddr> = vec![h1.ipv4().into(), h1.ipv6().into()];
    dns.set(NAME, &first, 1);
    let _controller = controller(&ns, &dns, &[]).await;
    must_apply(&client, &ns, GROUP, &cep("db", &[NAME], tcp())).await;

    // A and AAAA: both addresses, each probed and written on its own (an
    // IPv4 and an IPv6 slice; never an FQDN slice).
    wait_ready_exactly(&client, &ns, "db", &first).await;
    let types: Vec<String> = slices(&client, &ns, "db")
        .await
        .iter()
        .filter(|s: &&EndpointSlice| !s.endpoints.is_empty())
        .map(|s| s.address_type.clone())
        .collect();
    assert_eq!(types, ["IPv4", "IPv6"], "one slice per address family");
    let listed = eventually("status.ports[0].names lists the addresses", || async {
        let status = status(&client, &ns, "db").await?;
        let names = &status.ports.first()?.names;
        (names.len() == 1 && names[0].addresses.len() == 2).then(|| names[0].clone())
    })
    .await;
    assert_eq!(listed.name, NAME);
    assert!(listed.resolved_at.is_some() && listed.failure.is_none());
    let generation_before = generation(&client, &ns, "db").await;

    // The records change; nobody touches the object.
    let second: Vec<IpAddr> = vec![h2.ipv4().into()];
    dns.set(NAME, &second, 1);
    wait_ready_exactly(&client, &ns, "db", &second).await;
    assert_eq!(
        generation(&client, &ns, "db").await,
        generation_before,
        "the spec was not written"
    );
    eventually("status.ports[0].names follows", || async {
        let status = status(&client, &ns, "db").await?;
        (status.ports.first()?.names.first()?.addresses == [h2.ipv4().to_string()]).then_some(())
    })
    .await;
    wait_names_resolved(&client, &ns, "db", "NamesResolved").await;
}

#[tokio::test]
async fn while_dns_is_down_the_last_addresses_stay_and_the_status_says_so() {
    let (client, ns, dns) = setup("dns-down").await;
    let (h1, _b1) = host().await;
    let addresses: Vec<IpAddr> = vec![h1.ipv4().into()];
    dns.set(NAME, &addresses, 1);
    let _controller = controller(&ns, &dns, &[]).await;
    must_apply(&client, &ns, GROUP, &cep("db", &[NAME], tcp())).await;
    wait_ready_exactly(&client, &ns, "db", &addresses).await;
    wait_names_resolved(&client, &ns, "db", "NamesResolved").await;

    dns.set_down(true);
    let message = wait_names_resolved(&client, &ns, "db", "DNSResolutionFailed").await;
    assert!(
        message.contains(NAME) && message.contains("keeping its last 1 address"),
        "{message}"
    );
    wait_event(&client, &ns, "db", "DNSResolutionFailed", NAME).await;
    // The condition is written in the same reconcile as the slices: the
    // last good address is still there, and ready.
    assert_eq!(
        endpoints_of(&client, &ns, "db").await,
        vec![(h1.ipv4().to_string(), true)]
    );
    let names = status(&client, &ns, "db").await.expect("status").ports[0]
        .names
        .clone();
    assert_eq!(names[0].addresses, [h1.ipv4().to_string()]);
    assert!(names[0].failure.is_some() && names[0].failed_since.is_some());

    dns.set_down(false);
    wait_names_resolved(&client, &ns, "db", "NamesResolved").await;
    assert_eq!(
        endpoints_of(&client, &ns, "db").await,
        vec![(h1.ipv4().to_string(), true)]
    );
}

#[tokio::test]
async fn a_name_that_resolves_into_a_denied_range_is_denied_like_a_literal() {
    let (client, ns, dns) = setup("dns-denied").await;
    let (allowed, _b1) = host().await;
    let (denied, _b2) = host().await;
    dns.set(NAME, &[allowed.ipv4().into(), denied.ipv4().into()], 1);
    let denied_cidr = format!("{}/32", denied.ipv4());
    let _controller = controller(&ns, &dns, &["--denied-cidrs", &denied_cidr]).await;
    must_apply(&client, &ns, GROUP, &cep("db", &[NAME], tcp())).await;

    wait_ready_exactly(&client, &ns, "db", &[allowed.ipv4().into()]).await;
    let status = eventually("the denied address in status", || async {
        let status = status(&client, &ns, "db").await?;
        (!status.ports.first()?.denied.is_empty()).then_some(status)
    })
    .await;
    let port = &status.ports[0];
    assert_eq!(port.denied.len(), 1);
    assert_eq!(port.denied[0].host, denied.ipv4().to_string());
    assert_eq!(port.total, 2);
    // Never written, neither ready nor not ready.
    assert!(
        !endpoints_of(&client, &ns, "db")
            .await
            .iter()
            .any(|(a, _)| *a == denied.ipv4().to_string())
    );
}

#[tokio::test]
async fn an_http_probe_of_a_resolved_address_sends_the_name_as_host() {
    let (client, ns, dns) = setup("dns-host").await;
    let h1 = TestHost::create().await.expect("test host");
    // `/auth` answers 200 only with `Host: db.e2e.test`.
    let _backend = h1
        .start_backend_args(
            tcp_and_http_ports(),
            vec!["--require-header".into(), format!("host:{NAME}")],
        )
        .await
        .expect("backend starts");
    dns.set(NAME, &[h1.ipv4().into()], 1);
    let _controller = controller(&ns, &dns, &[]).await;
    let probe = json!({"httpGet": {"path": "/auth"}, "failureThreshold": 1});
    must_apply(&client, &ns, GROUP, &cep("by-name", &[NAME], probe.clone())).await;
    // The same address as a literal is probed with its address as Host:
    // refused by the backend, so the header is what made the difference.
    let literal = h1.ipv4().to_string();
    must_apply(&client, &ns, GROUP, &cep("by-address", &[&literal], probe)).await;

    wait_ready_exactly(&client, &ns, "by-name", &[h1.ipv4().into()]).await;
    eventually("the literal address to be listed not ready", || async {
        let got = endpoints_of(&client, &ns, "by-address").await;
        (got == vec![(literal.clone(), false)]).then_some(())
    })
    .await;
}

/// A restarted controller has resolved nothing yet: it must not write the
/// slices without the names' addresses meanwhile. Once it has resolved and
/// probed, it has written nothing at all.
#[tokio::test]
async fn a_controller_restart_writes_nothing_while_names_resolve_again() {
    let (client, ns, dns) = setup("dns-restart").await;
    let (h1, _b1) = host().await;
    let (h2, _b2) = host().await;
    dns.set(NAME, &[h1.ipv4().into()], 1);
    let controller_1 = controller(&ns, &dns, &[]).await;
    let literal = h2.ipv4().to_string();
    must_apply(&client, &ns, GROUP, &cep("db", &[NAME, &literal], tcp())).await;
    wait_ready_exactly(&client, &ns, "db", &[h1.ipv4().into(), h2.ipv4().into()]).await;
    wait_names_resolved(&client, &ns, "db", "NamesResolved").await;

    let versions = || resource_versions(&client, &ns, GROUP, "db");
    let before = versions().await;
    controller_1.kill().await;
    let answered = dns.answered(NAME);
    let restarted = controller(&ns, &dns, &[]).await;
    // Resolved again, then reconciled (the hold, then the sync) and probed.
    let settled = || async {
        let metric = |name| restarted.metric(name);
        dns.answered(NAME) > answered
            && metric("kube_endpoints_reconciles_total").await >= 2.0
            && metric("kube_endpoints_probes_total").await >= 4.0
    };
    eventually("the restarted controller to settle", || async {
        settled().await.then_some(())
    })
    .await;
    assert_wrote_nothing(&restarted).await;
    assert_eq!(versions().await, before, "resourceVersions changed");
}

/// HTTPS to a resolved address verifies the server's certificate against
/// the name (and sends it as SNI): a certificate for the name alone passes
/// by name and fails for the same address listed as a literal.
#[tokio::test]
async fn an_https_probe_of_a_resolved_address_verifies_the_name() {
    let (client, ns, dns) = setup("dns-sni").await;
    let h1 = TestHost::create().await.expect("test host");
    let certified = rcgen::generate_simple_self_signed(vec![NAME.to_string()]).expect("cert");
    let cert_pem = certified.cert.pem();
    let (cert, key) = (h1.dir().join("name.crt"), h1.dir().join("name.key"));
    std::fs::write(&cert, &cert_pem).expect("write cert");
    std::fs::write(&key, certified.signing_key.serialize_pem()).expect("write key");
    let args = ["--https", "443", "--tls-cert", &cert.display().to_string()]
        .into_iter()
        .chain(["--tls-key", &key.display().to_string()])
        .map(String::from)
        .collect();
    let _backend = h1
        .start_backend_args(Default::default(), args)
        .await
        .expect("HTTPS backend starts");
    dns.set(NAME, &[h1.ipv4().into()], 1);
    let _controller = controller(&ns, &dns, &[]).await;
    let probe = json!({"httpGet": {"scheme": "https", "path": "/healthz",
                                   "tls": {"caBundle": cert_pem}},
                       "failureThreshold": 1});
    let mut by_name: Value = serde_json::from_str(&cep("by-name", &[NAME], probe.clone())).unwrap();
    let literal = h1.ipv4().to_string();
    let mut by_address: Value =
        serde_json::from_str(&cep("by-address", &[&literal], probe)).unwrap();
    for object in [&mut by_name, &mut by_address] {
        object["spec"]["ports"][0]["port"] = json!(443);
        object["spec"]["ports"][0]["targetPort"] = json!(443);
    }
    must_apply(&client, &ns, GROUP, &by_name.to_string()).await;
    must_apply(&client, &ns, GROUP, &by_address.to_string()).await;

    wait_ready_exactly(&client, &ns, "by-name", &[h1.ipv4().into()]).await;
    eventually("the literal address to be listed not ready", || async {
        let got = endpoints_of(&client, &ns, "by-address").await;
        (got == vec![(literal.clone(), false)]).then_some(())
    })
    .await;
}
