//! The fail-open policy end to end, against the real control plane:
//! `allHostsDown: KeepLastReady` keeps the hosts that were ready last when
//! every host of a port fails (and says so in a condition and Events), the
//! default fails closed, and `panicThresholdPercent` keeps the last ready
//! hosts when too few are healthy; the fleet guard keeps every object's
//! endpoints when all backends are cut off at once. The hosts are
//! network-namespace test hosts running `ke-testbackend`, judged by HTTP
//! `/healthz`. Needs root.

mod support;

use std::collections::BTreeMap;

use kube::Client;
use kube_endpoints_api::GROUP;
use kube_endpoints_testkit::netns::{Backend, BackendPorts, TestHost};
use serde_json::{Value, json};
use support::*;

const HTTP_PORT: u16 = 8080;

/// Which hosts the slices list ready: host → ready.
async fn readiness(client: &Client, ns: &str, name: &str) -> BTreeMap<String, bool> {
    slice_readiness(client, ns, name)
        .await
        .into_iter()
        .map(|((_, _, host), ready)| (host, ready))
        .collect()
}

async fn wait_readiness(client: &Client, ns: &str, name: &str, expected: &[(&str, bool)]) {
    let expected: BTreeMap<String, bool> =
        expected.iter().map(|(h, r)| (h.to_string(), *r)).collect();
    let what = format!("{ns}/{name} slices to list {expected:?}");
    eventually(&what, || async {
        (readiness(client, ns, name).await == expected).then_some(())
    })
    .await;
}

/// The condition `type_` of `name`: (status, reason, message).
async fn condition(
    client: &Client,
    ns: &str,
    name: &str,
    type_: &str,
) -> Option<(String, String, String)> {
    let cep = get_cep(client, ns, GROUP, name).await?;
    let c = cep
        .status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == type_)?;
    Some((c.status, c.reason, c.message))
}

/// Waits until `name` reports condition `type_` True with `reason`; its
/// message.
async fn wait_condition(
    client: &Client,
    ns: &str,
    name: &str,
    (type_, reason): (&str, &str),
) -> String {
    let what = format!("{name} to report {type_}=True ({reason})");
    eventually(&what, || async {
        condition(client, ns, name, type_)
            .await
            .filter(|(s, r, _)| s == "True" && r == reason)
            .map(|(_, _, m)| m)
    })
    .await
}

/// Waits until `name` no longer has condition `type_`, for the status of
/// the object's current generation.
async fn wait_condition_gone(client: &Client, ns: &str, name: &str, type_: &str) {
    let what = format!("{name} to drop the {type_} condition");
    eventually(&what, || async {
        condition(client, ns, name, type_)
            .await
            .is_none()
            .then_some(())
    })
    .await;
}

/// Waits until the status counts `ready` ready host-ports: the controller
/// has seen the probes' verdicts.
async fn wait_ready_count(client: &Client, ns: &str, name: &str, ready: &str) {
    let what = format!("{name} to report {ready} ready");
    eventually(&what, || async {
        let status = get_cep(client, ns, GROUP, name).await?.status?;
        (status.ready.as_deref() == Some(ready)).then_some(())
    })
    .await;
}

/// ClusterEndpoint `name`: port `web` on `hosts`, judged by HTTP
/// `/healthz` every second, one failure taking a host out; `policy`
/// merged into the spec.
fn web(name: &str, hosts: &[String], policy: Value) -> String {
    let mut spec = json!({
        "periodSeconds": 1,
        "ports": [{
            "name": "web", "hosts": hosts, "port": 80, "targetPort": HTTP_PORT,
            "failureThreshold": 1, "httpGet": {"path": "/healthz"}
        }]
    });
    if let (Some(spec), Value::Object(policy)) = (spec.as_object_mut(), policy) {
        spec.extend(policy);
    }
    manifest(name, spec)
}

/// `n` test hosts serving HTTP, healthy.
async fn hosts(n: usize) -> (Vec<TestHost>, Vec<Backend>, Vec<String>) {
    let (mut hosts, mut backends, mut ips) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        let (h, b) = host_with(BackendPorts {
            http: vec![HTTP_PORT],
            ..BackendPorts::default()
        })
        .await;
        ips.push(h.ipv4().to_string());
        hosts.push(h);
        backends.push(b);
    }
    (hosts, backends, ips)
}

/// KeepLastReady: one host failing leaves rotation as usual; when the last
/// one fails too, the last ready set (that one host, not the one already
/// out) stays ready, the condition and a Warning Event say so; when a host
/// recovers, the probes rule again and a Normal Event says so.
#[tokio::test(flavor = "multi_thread")]
async fn keep_last_ready_keeps_the_last_ready_host_when_every_host_fails() {
    let (client, ns, controller) = watched_namespace("e2e-failopen-keep").await;
    let (_hosts, backends, ips) = hosts(2).await;
    let (a, b) = (ips[0].as_str(), ips[1].as_str());
    let policy = json!({"allHostsDown": "KeepLastReady"});
    must_apply(&client, &ns, GROUP, &web("keep", &ips, policy)).await;
    wait_readiness(&client, &ns, "keep", &[(a, true), (b, true)]).await;

    backends[1].set_healthy(false).expect("unhealthy");
    wait_readiness(&client, &ns, "keep", &[(a, true), (b, false)]).await;
    assert_eq!(condition(&client, &ns, "keep", "FailingOpen").await, None);

    backends[0].set_healthy(false).expect("unhealthy");
    let message = wait_condition(&client, &ns, "keep", ("FailingOpen", "AllHostsDown")).await;
    assert!(
        message.contains("port web keeps 1 last-ready host(s) with 0/2 healthy"),
        "{message}"
    );
    // The status reports the probes as they are; only the endpoints stay.
    wait_ready_count(&client, &ns, "keep", "0/2").await;
    assert_eq!(
        readiness(&client, &ns, "keep").await,
        BTreeMap::from([(a.to_string(), true), (b.to_string(), false)]),
        "the last ready host stays ready, the one already out stays out"
    );
    assert_eq!(
        endpoints_addresses(&client, &ns, "keep").await.get("web"),
        Some(&(vec![a.to_string()], vec![b.to_string()])),
        "the compatibility Endpoints keeps it too"
    );
    wait_event(&client, &ns, "keep", "AllHostsDown", "failing open").await;

    // A new controller process starts from what the slices say: once it
    // has probed both hosts failing, it still keeps the same host.
    controller.kill().await;
    let controller = start_controller(&ns, &[]).await;
    eventually("the new controller to see both hosts failing", || async {
        let text = controller.metrics().await;
        text.lines()
            .any(|l| l == r#"kube_endpoints_host_ports{state="not_ready"} 2"#)
            .then_some(())
    })
    .await;
    assert_eq!(
        readiness(&client, &ns, "keep").await,
        BTreeMap::from([(a.to_string(), true), (b.to_string(), false)]),
        "a restart keeps the last ready host"
    );
    assert_eq!(
        condition(&client, &ns, "keep", "FailingOpen")
            .await
            .map(|(s, r, _)| (s, r)),
        Some(("True".to_string(), "AllHostsDown".to_string()))
    );
    assert!(
        !events(&client, &ns, "keep")
            .await
            .iter()
            .any(|(reason, _)| reason == "FailOpenEnded"),
        "the restart did not end failing open, not even for a moment"
    );

    // A host recovers: normal behaviour again.
    backends[1].set_healthy(true).expect("healthy");
    wait_readiness(&client, &ns, "keep", &[(a, false), (b, true)]).await;
    wait_condition_gone(&client, &ns, "keep", "FailingOpen").await;
    wait_event(&client, &ns, "keep", "FailOpenEnded", "no port fails open").await;
}

/// The default is fail closed: every host failing empties the endpoints,
/// and nothing says it is failing open.
#[tokio::test(flavor = "multi_thread")]
async fn by_default_every_failing_host_leaves_rotation() {
    let (client, ns, _controller) = watched_namespace("e2e-failopen-closed").await;
    let (_hosts, backends, ips) = hosts(2).await;
    let (a, b) = (ips[0].as_str(), ips[1].as_str());
    must_apply(&client, &ns, GROUP, &web("closed", &ips, json!({}))).await;
    wait_readiness(&client, &ns, "closed", &[(a, true), (b, true)]).await;
    for backend in &backends {
        backend.set_healthy(false).expect("unhealthy");
    }
    wait_readiness(&client, &ns, "closed", &[(a, false), (b, false)]).await;
    wait_ready_count(&client, &ns, "closed", "0/2").await;
    assert_eq!(condition(&client, &ns, "closed", "FailingOpen").await, None);
}

/// panicThresholdPercent 60 over three hosts: one failing (2/3 healthy)
/// leaves rotation; a second failing (1/3) is kept with the first one's
/// predecessor set; a recovery ends it.
#[tokio::test(flavor = "multi_thread")]
async fn the_panic_threshold_keeps_the_last_ready_hosts_when_too_few_are_healthy() {
    let (client, ns, _controller) = watched_namespace("e2e-failopen-panic").await;
    let (_hosts, backends, ips) = hosts(3).await;
    let (a, b, c) = (ips[0].as_str(), ips[1].as_str(), ips[2].as_str());
    let policy = json!({"panicThresholdPercent": 60});
    must_apply(&client, &ns, GROUP, &web("panic", &ips, policy)).await;
    wait_readiness(&client, &ns, "panic", &[(a, true), (b, true), (c, true)]).await;

    backends[2].set_healthy(false).expect("unhealthy");
    wait_readiness(&client, &ns, "panic", &[(a, true), (b, true), (c, false)]).await;

    backends[1].set_healthy(false).expect("unhealthy");
    let message = wait_condition(&client, &ns, "panic", ("FailingOpen", "PanicThreshold")).await;
    assert!(message.contains("1/3 healthy"), "{message}");
    wait_ready_count(&client, &ns, "panic", "1/3").await;
    assert_eq!(
        readiness(&client, &ns, "panic").await,
        BTreeMap::from([
            (a.to_string(), true),
            (b.to_string(), true),
            (c.to_string(), false)
        ]),
    );
    wait_event(&client, &ns, "panic", "PanicThreshold", "1/3 healthy").await;

    backends[2].set_healthy(true).expect("healthy");
    wait_readiness(&client, &ns, "panic", &[(a, true), (b, false), (c, true)]).await;
    wait_condition_gone(&client, &ns, "panic", "FailingOpen").await;
}

/// The fleet guard: every backend namespace is cut off at once (their
/// replies are blackholed), so every target of the controller turns
/// failing within one window. The guard freezes: both objects keep their
/// endpoints and say why (condition, Event), and the metric shows it.
/// Once the network is back, the hosts recover, the guard thaws and the
/// real state applies: the one host that is really unhealthy leaves.
#[tokio::test(flavor = "multi_thread")]
async fn the_fleet_guard_keeps_the_endpoints_when_every_host_is_cut_off_at_once() {
    let flags = ["--fleet-guard-percent=50", "--fleet-guard-min-targets=3"];
    let (client, ns, controller) = watched_namespace_with("e2e-failopen-fleet", &flags).await;
    let (hosts, backends, ips) = hosts(3).await;
    let (a, b, c) = (ips[0].as_str(), ips[1].as_str(), ips[2].as_str());
    let one = [ips[0].clone(), ips[1].clone()];
    let two = [ips[2].clone()];
    must_apply(&client, &ns, GROUP, &web("one", &one, json!({}))).await;
    must_apply(&client, &ns, GROUP, &web("two", &two, json!({}))).await;
    wait_readiness(&client, &ns, "one", &[(a, true), (b, true)]).await;
    wait_readiness(&client, &ns, "two", &[(c, true)]).await;
    assert_eq!(
        controller.metric("kube_endpoints_fleet_guard_frozen").await,
        0.0
    );

    for host in &hosts {
        host.blackhole(true).await.expect("cut off");
    }
    // The controller has seen every failure: the status counts none ready
    // and the guard is frozen.
    wait_ready_count(&client, &ns, "one", "0/2").await;
    wait_ready_count(&client, &ns, "two", "0/1").await;
    eventually("the fleet guard metric to say frozen", || async {
        (controller.metric("kube_endpoints_fleet_guard_frozen").await == 1.0).then_some(())
    })
    .await;
    assert_eq!(
        controller
            .metric("kube_endpoints_fleet_guard_trips_total")
            .await,
        1.0
    );
    for name in ["one", "two"] {
        let message = wait_condition(&client, &ns, name, ("FleetGuard", "FleetGuardFrozen")).await;
        assert!(message.contains("port web"), "{message}");
        wait_event(&client, &ns, name, "FleetGuardFrozen", "fleet guard").await;
    }
    wait_readiness(&client, &ns, "one", &[(a, true), (b, true)]).await;
    assert_eq!(
        readiness(&client, &ns, "two").await,
        BTreeMap::from([(c.to_string(), true)])
    );

    // Back on the network, with one host really unhealthy.
    backends[2].set_healthy(false).expect("unhealthy");
    for host in &hosts {
        host.blackhole(false).await.expect("reachable");
    }
    eventually("the fleet guard to thaw", || async {
        (controller.metric("kube_endpoints_fleet_guard_frozen").await == 0.0).then_some(())
    })
    .await;
    wait_readiness(&client, &ns, "two", &[(c, false)]).await;
    wait_readiness(&client, &ns, "one", &[(a, true), (b, true)]).await;
    for name in ["one", "two"] {
        wait_condition_gone(&client, &ns, name, "FleetGuard").await;
        wait_event(
            &client,
            &ns,
            name,
            "FleetGuardThawed",
            "probe results apply",
        )
        .await;
    }
}
