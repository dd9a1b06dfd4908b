//! The probe options end to end, against the real control plane: a
//! "primary only" Service whose hosts are probed on another port than the
//! one traffic goes to (as Patroni's REST API on 8008 for Postgres on
//! 5432), with expected statuses and a body match; and TCP send/expect (a
//! Redis-like `PING`/`+PONG` and `ROLE`). The hosts are network-namespace
//! test hosts running `ke-testbackend`. Needs root.

mod support;

use std::collections::BTreeMap;

use kube::Client;
use kube_endpoints_api::GROUP;
use kube_endpoints_testkit::netns::{Backend, BackendPorts, Role, TestHost};
use serde_json::json;
use support::*;

/// Which hosts the slices list ready, per port name: (port, host) → ready.
async fn readiness(client: &Client, ns: &str, name: &str) -> BTreeMap<(String, String), bool> {
    slice_readiness(client, ns, name)
        .await
        .into_iter()
        .map(|((_, port, host), ready)| ((port, host), ready))
        .collect()
}

/// The readiness `expected` lists: for each port, (host, ready).
fn expect(ports: &[&str], ready: &str, not_ready: &str) -> BTreeMap<(String, String), bool> {
    let mut out = BTreeMap::new();
    for port in ports {
        out.insert((port.to_string(), ready.to_string()), true);
        out.insert((port.to_string(), not_ready.to_string()), false);
    }
    out
}

async fn wait_readiness(
    client: &Client,
    ns: &str,
    name: &str,
    expected: &BTreeMap<(String, String), bool>,
) {
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        let seen = readiness(client, ns, name).await;
        if seen == *expected {
            return;
        }
        if std::time::Instant::now() > deadline {
            let status = get_cep(client, ns, GROUP, name)
                .await
                .and_then(|c| c.status);
            panic!(
                "timed out after {DEADLINE:?} waiting for {ns}/{name} slices to be {expected:?}; they are {seen:?}; status {status:?}"
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// The status message of `host` on `port` (it must be listed unhealthy).
async fn unhealthy_message(
    client: &Client,
    ns: &str,
    name: &str,
    port: &str,
    host: &str,
) -> String {
    let what = format!("{host} listed unhealthy on {port}");
    eventually(&what, || async {
        let cep = get_cep(client, ns, GROUP, name).await?;
        let status = cep.status?;
        let port = status.ports.iter().find(|p| p.name == port)?;
        port.unhealthy
            .iter()
            .find(|u| u.host == host)
            .map(|u| u.message.clone())
    })
    .await
}

async fn two_hosts(ports: BackendPorts) -> ([TestHost; 2], [Backend; 2], [String; 2]) {
    let (h1, b1) = host_with(ports.clone()).await;
    let (h2, b2) = host_with(ports).await;
    let ips = [h1.ipv4().to_string(), h2.ipv4().to_string()];
    ([h1, h2], [b1, b2], ips)
}

/// Traffic on 5432 (where the backend only accepts TCP), probes on 8008
/// (where it answers HTTP): only the primary is ready, on both ports (one
/// judged by the status of `GET /primary`, one by the body of `GET
/// /role`), and when the roles swap, the slices swap. The endpoints carry
/// the traffic port; what the hosts answered never reaches status or
/// Events.
#[tokio::test(flavor = "multi_thread")]
async fn a_primary_only_service_follows_the_primary() {
    let (client, ns, _controller) = watched_namespace("e2e-probes-primary").await;
    let (_hosts, backends, [first, second]) = two_hosts(BackendPorts {
        tcp: vec![5432],
        http: vec![8008],
        ..BackendPorts::default()
    })
    .await;
    backends[1].set_role(Role::Replica).expect("replica");
    let spec = json!({
        "periodSeconds": 1,
        "ports": [
            {
                "name": "pg", "hosts": [first, second], "port": 5432, "targetPort": 5432,
                "probePort": 8008, "failureThreshold": 1,
                "httpGet": {"path": "/primary", "expectedStatuses": [200]}
            },
            {
                "name": "pg-role", "hosts": [first, second], "port": 5433, "targetPort": 5432,
                "probePort": 8008, "failureThreshold": 1,
                "httpGet": {"path": "/role", "bodyMatch": {"regex": "(?m)^role: primary$"}}
            }
        ]
    });
    must_apply(&client, &ns, GROUP, &cep_manifest("pg", spec)).await;
    let ports = ["pg", "pg-role"];
    wait_readiness(&client, &ns, "pg", &expect(&ports, &first, &second)).await;

    // The endpoints carry the traffic port, never the probe port.
    for slice in slices(&client, &ns, "pg").await {
        let numbers: Vec<Option<i32>> = slice.ports.iter().flatten().map(|p| p.port).collect();
        assert_eq!(numbers, [Some(5432)], "{slice:?}");
    }
    // Why the replica is out: its status (the first host being ready shows
    // that the probes went to 8008: 5432 speaks no HTTP), and for the body
    // match only that it did not match (the body says "replica").
    let status = unhealthy_message(&client, &ns, "pg", "pg", &second).await;
    assert!(status.contains("status 503"), "{status}");
    let body = unhealthy_message(&client, &ns, "pg", "pg-role", &second).await;
    assert!(body.contains("body did not match"), "{body}");
    assert!(!body.contains("replica"), "the body is never shown: {body}");

    // Failover: the roles swap, and so do the slices.
    backends[0].set_role(Role::Replica).expect("replica");
    backends[1].set_role(Role::Primary).expect("primary");
    wait_readiness(&client, &ns, "pg", &expect(&ports, &second, &first)).await;

    wait_event(&client, &ns, "pg", "HostUnhealthy", "body did not match").await;
    for (reason, note) in events(&client, &ns, "pg").await {
        assert!(
            !note.contains("role: replica") && !note.contains("role: primary"),
            "an Event shows what a host sent: {reason}: {note}"
        );
    }
}

/// TCP send/expect: `PING` must get `+PONG` (a host answering `-LOADING`
/// is not ready), and `ROLE`, sent as base64, must say `master` (a regex
/// over the reply): a healthy replica is ready on the first port only.
#[tokio::test(flavor = "multi_thread")]
async fn tcp_send_and_expect_judge_the_reply() {
    let (client, ns, _controller) = watched_namespace("e2e-probes-tcp").await;
    let (_hosts, backends, [first, second]) = two_hosts(BackendPorts {
        redis: vec![6379],
        ..BackendPorts::default()
    })
    .await;
    backends[1].set_healthy(false).expect("unhealthy");
    let spec = json!({
        "periodSeconds": 1,
        "ports": [
            {
                "name": "redis", "hosts": [first, second], "port": 6379, "targetPort": 6379,
                "failureThreshold": 1,
                "tcpSocket": {"enable": true, "send": {"text": "PING\r\n"}, "expect": {"text": "+PONG"}}
            },
            {
                "name": "redis-master", "hosts": [first, second], "port": 6380, "targetPort": 6379,
                "failureThreshold": 1,
                "tcpSocket": {
                    "enable": true,
                    "send": {"base64": "Uk9MRQ0K"},
                    "expect": {"regex": r"^\*3\r\n\$6\r\nmaster\r\n"}
                }
            }
        ]
    });
    must_apply(&client, &ns, GROUP, &cep_manifest("redis", spec)).await;
    wait_readiness(
        &client,
        &ns,
        "redis",
        &expect(&["redis", "redis-master"], &first, &second),
    )
    .await;
    let message = unhealthy_message(&client, &ns, "redis", "redis", &second).await;
    assert!(message.contains("expected reply not received"), "{message}");
    assert!(
        !message.contains("LOADING"),
        "the reply is never shown: {message}"
    );

    // A healthy replica answers PING but its ROLE is not master.
    backends[1].set_role(Role::Replica).expect("replica");
    backends[1].set_healthy(true).expect("healthy");
    let mut expected = expect(&["redis-master"], &first, &second);
    expected.insert(("redis".into(), first.clone()), true);
    expected.insert(("redis".into(), second.clone()), true);
    wait_readiness(&client, &ns, "redis", &expected).await;
}

/// A regular expression that does not compile passes admission (the
/// apiserver cannot compile it) and is refused by the controller: the
/// object is not initialised, its condition and an Event name the field,
/// and neither quotes the pattern.
#[tokio::test(flavor = "multi_thread")]
async fn a_regex_that_does_not_compile_is_reported_naming_the_field() {
    let (client, ns, _controller) = watched_namespace("e2e-probes-regex").await;
    let spec = json!({
        "ports": [{
            "name": "web", "hosts": ["198.18.0.2"], "port": 80, "targetPort": 80,
            "httpGet": {"path": "/", "bodyMatch": {"regex": "(s3cr3t"}}
        }]
    });
    must_apply(&client, &ns, GROUP, &cep_manifest("web", spec)).await;
    let field = "spec.ports[0].httpGet.bodyMatch.regex";
    let message = eventually("Initialized=False naming the regex", || async {
        let status = get_cep(&client, &ns, GROUP, "web").await?.status?;
        let c = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Initialized")?;
        (c.status == "False" && c.message.contains(field)).then(|| c.message.clone())
    })
    .await;
    assert!(message.contains("invalid regular expression"), "{message}");
    assert!(!message.contains("s3cr3t"), "{message}");
    wait_event(&client, &ns, "web", "InvalidSpec", field).await;
    for (_, note) in events(&client, &ns, "web").await {
        assert!(!note.contains("s3cr3t"), "{note}");
    }
    // Nothing was probed or written for it.
    assert!(slices(&client, &ns, "web").await.is_empty());
}
