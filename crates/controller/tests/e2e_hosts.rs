//! Per-host fields and the Service passthrough, end to end against a real
//! kube-apiserver + etcd, a real `kube-endpoints run` and test hosts in
//! network namespaces: `kube-endpoints drain|undrain`, zones and zone
//! hints, backups promoted while the primary fails, and the fields copied
//! onto the Service. Needs root.

mod support;

use std::collections::BTreeMap;

use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use kube_endpoints_api::{DrainedHost, GROUP, Phase};
use serde_json::{Value, json};
use support::*;

/// A ClusterEndpoint `name` with `spec` (periodSeconds 1 added).
fn cep(name: &str, mut spec: Value) -> String {
    spec["periodSeconds"] = json!(1);
    manifest(name, spec)
}

/// One HTTP-probed port (`/healthz` on 80, which `set_healthy` flips).
fn http_port(hosts: Value) -> Value {
    json!([{"name": "http", "port": 80, "targetPort": 80, "hosts": hosts, "httpGet": {"path": "/healthz"}}])
}

/// Every endpoint of the Service's slices, by address.
async fn endpoints_of(client: &Client, ns: &str, name: &str) -> BTreeMap<String, Endpoint> {
    slices(client, ns, name)
        .await
        .into_iter()
        .flat_map(|s| s.endpoints)
        .map(|e| (e.addresses[0].clone(), e))
        .collect()
}

fn conditions(ready: bool, serving: bool, terminating: bool) -> EndpointConditions {
    EndpointConditions {
        ready: Some(ready),
        serving: Some(serving),
        terminating: Some(terminating),
    }
}

/// Wait until the endpoint `host` of `name` is listed with `want`.
async fn wait_conditions(
    client: &Client,
    ns: &str,
    name: &str,
    host: &str,
    want: EndpointConditions,
) {
    eventually(
        &format!("{host} of {ns}/{name} listed {want:?}"),
        || async {
            let all = endpoints_of(client, ns, name).await;
            (all.get(host)?.conditions.as_ref()? == &want).then_some(())
        },
    )
    .await;
}

/// Run `kube-endpoints <args>` against the test cluster as its admin.
async fn cli(args: &[&str]) -> String {
    run_cli(args, control_plane().kubeconfig_path()).await
}

/// The user the test's client is, as the apiserver says.
async fn admin_name(client: &Client) -> String {
    let api: Api<SelfSubjectReview> = Api::all(client.clone());
    api.create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .expect("SelfSubjectReview")
        .status
        .and_then(|s| s.user_info)
        .and_then(|u| u.username)
        .expect("a user name")
}

/// `kube-endpoints drain` leaves the host listed but terminating (ready
/// false, serving = its probe verdict: true) and in the Endpoints'
/// notReadyAddresses; the status and a `HostDrained` Event say who drained
/// it. `undrain` puts it back, as the string it was. The string form of
/// hosts works throughout.
#[tokio::test(flavor = "multi_thread")]
async fn drain_via_the_cli_leaves_the_host_terminating_and_undrain_restores_it() {
    let (client, ns, _controller) = watched_namespace("e2e-hosts-drain").await;
    let (h1, _b1) = host_with_backend().await;
    let (h2, _b2) = host_with_backend().await;
    let (ip1, ip2) = (h1.ipv4().to_string(), h2.ipv4().to_string());
    must_apply(
        &client,
        &ns,
        GROUP,
        &cep("db", json!({"ports": http_port(json!([ip1, ip2]))})),
    )
    .await;
    wait_all_ready(&client, &ns, "db", 2).await;

    let said = cli(&["drain", "db", &ip2, "-n", &ns]).await;
    let admin = admin_name(&client).await;
    assert!(said.contains(&format!("by {admin}")), "{said}");
    wait_conditions(&client, &ns, "db", &ip2, conditions(false, true, true)).await;
    wait_conditions(&client, &ns, "db", &ip1, conditions(true, true, false)).await;
    let cep = get_cep(&client, &ns, GROUP, "db").await.expect("cep");
    let hosts = serde_json::to_value(&cep.spec.ports[0].hosts).expect("JSON");
    assert_eq!(hosts, json!([ip1, {"address": ip2, "drain": true}]));
    eventually(
        "the Endpoints to list the drained host as not ready",
        || async {
            let ep = endpoints(&client, &ns, "db").await?;
            let subset = ep.subsets?.into_iter().next()?;
            let not_ready: Vec<String> = subset
                .not_ready_addresses?
                .into_iter()
                .map(|a| a.ip)
                .collect();
            let ready: Vec<String> = subset.addresses?.into_iter().map(|a| a.ip).collect();
            (not_ready == [ip2.clone()] && ready == [ip1.clone()]).then_some(())
        },
    )
    .await;
    eventually(
        "the status to list the drained host and who drained it",
        || async {
            let cep = get_cep(&client, &ns, GROUP, "db").await?;
            let drained = cep.status?.ports.first()?.drained.clone();
            (drained
                == [DrainedHost {
                    host: ip2.clone(),
                    by: Some(admin.clone()),
                }])
            .then_some(())
        },
    )
    .await;
    wait_event(
        &client,
        &ns,
        "db",
        "HostDrained",
        &format!("host {ip2} port http is drained by {admin}"),
    )
    .await;

    cli(&["undrain", "db", &ip2, "-n", &ns]).await;
    wait_conditions(&client, &ns, "db", &ip2, conditions(true, true, false)).await;
    let cep = get_cep(&client, &ns, GROUP, "db").await.expect("cep");
    assert_eq!(
        serde_json::to_value(&cep.spec.ports[0].hosts).expect("JSON"),
        json!([ip1, ip2]),
        "back to the string form"
    );
    assert!(
        !cep.annotations()
            .contains_key("kube-endpoints.io/drained-by"),
        "who drained it is forgotten"
    );
    wait_event(&client, &ns, "db", "HostUndrained", &ip2).await;
    let cep = wait_phase(&client, &ns, GROUP, "db", Phase::Healthy).await;
    assert!(cep.status.expect("status").ports[0].drained.is_empty());
}

/// Zone hints exactly when the rules allow: every ready host in a zone and
/// every zone with a ready host. A zone whose only host fails, or a ready
/// host without a zone, means no hints at all.
#[tokio::test(flavor = "multi_thread")]
async fn zones_give_hints_only_when_every_zone_keeps_a_ready_host() {
    let (client, ns, _controller) = watched_namespace("e2e-hosts-zones").await;
    let (h1, _b1) = host_with_backend().await;
    let (h2, b2) = host_with_backend().await;
    let (ip1, ip2) = (h1.ipv4().to_string(), h2.ipv4().to_string());
    let zoned = json!([{"address": ip1, "zone": "zone-a"}, {"address": ip2, "zone": "zone-b"}]);
    must_apply(
        &client,
        &ns,
        GROUP,
        &cep(
            "zoned",
            json!({"ports": http_port(zoned), "trafficDistribution": "PreferClose"}),
        ),
    )
    .await;
    let hints = |e: &Endpoint| {
        e.hints
            .as_ref()
            .and_then(|h| h.for_zones.clone())
            .map(|z| z.into_iter().map(|z| z.name).collect::<Vec<_>>())
    };
    eventually("both hosts ready with zones and hints", || async {
        let all = endpoints_of(&client, &ns, "zoned").await;
        let (e1, e2) = (all.get(&ip1)?, all.get(&ip2)?);
        let ok = e1.zone.as_deref() == Some("zone-a")
            && e2.zone.as_deref() == Some("zone-b")
            && hints(e1) == Some(vec!["zone-a".to_string()])
            && hints(e2) == Some(vec!["zone-b".to_string()]);
        ok.then_some(())
    })
    .await;
    let svc = service(&client, &ns, "zoned").await.expect("Service");
    assert_eq!(
        svc.spec.and_then(|s| s.traffic_distribution).as_deref(),
        Some("PreferClose")
    );

    // zone-b loses its only ready host: no hints anywhere; zones stay.
    b2.set_healthy(false).expect("unhealthy");
    eventually("no hints once zone-b has no ready host", || async {
        let all = endpoints_of(&client, &ns, "zoned").await;
        let e2 = all.get(&ip2)?;
        let ok = e2.conditions.as_ref()?.ready == Some(false)
            && all.values().all(|e| e.hints.is_none())
            && e2.zone.as_deref() == Some("zone-b");
        ok.then_some(())
    })
    .await;
    b2.set_healthy(true).expect("healthy");
    eventually("hints back once zone-b has a ready host", || async {
        let all = endpoints_of(&client, &ns, "zoned").await;
        all.values().all(|e| hints(e).is_some()).then_some(())
    })
    .await;

    // A ready host without a zone: no hints (static port: always ready).
    let partly = json!([{"name": "p", "port": 81, "targetPort": 81, "hosts": [{"address": ip1, "zone": "zone-a"}, ip2]}]);
    must_apply(
        &client,
        &ns,
        GROUP,
        &cep("partly", json!({"ports": partly})),
    )
    .await;
    wait_all_ready(&client, &ns, "partly", 2).await;
    let all = endpoints_of(&client, &ns, "partly").await;
    assert_eq!(all[&ip1].zone.as_deref(), Some("zone-a"));
    assert!(all.values().all(|e| e.hints.is_none()), "{all:?}");

    // Zones taken off the hosts: zones and hints leave the slices (no
    // condition changes, so only the dropped fields call for the write).
    must_apply(
        &client,
        &ns,
        GROUP,
        &cep("zoned", json!({"ports": http_port(json!([ip1, ip2]))})),
    )
    .await;
    eventually("zones and hints gone", || async {
        let all = endpoints_of(&client, &ns, "zoned").await;
        (all.len() == 2 && all.values().all(|e| e.zone.is_none() && e.hints.is_none()))
            .then_some(())
    })
    .await;
}

/// A backup (priority 1) is ready only while the primary fails; it steps
/// back when the primary returns. Both moves are Events and the status
/// lists the backup in rotation while it is.
#[tokio::test(flavor = "multi_thread")]
async fn a_backup_is_ready_only_while_the_primary_fails() {
    let (client, ns, _controller) = watched_namespace("e2e-hosts-backup").await;
    let (h1, b1) = host_with_backend().await;
    let (h2, _b2) = host_with_backend().await;
    let (ip1, ip2) = (h1.ipv4().to_string(), h2.ipv4().to_string());
    let hosts = json!([ip1, {"address": ip2, "priority": 1}]);
    must_apply(
        &client,
        &ns,
        GROUP,
        &cep("db", json!({"ports": http_port(hosts)})),
    )
    .await;
    wait_conditions(&client, &ns, "db", &ip1, conditions(true, true, false)).await;
    wait_phase(&client, &ns, GROUP, "db", Phase::Healthy).await;
    // The backup passes its probes but stays on standby (serving says so).
    wait_conditions(&client, &ns, "db", &ip2, conditions(false, true, false)).await;

    b1.set_healthy(false).expect("primary fails");
    wait_conditions(&client, &ns, "db", &ip2, conditions(true, true, false)).await;
    wait_conditions(&client, &ns, "db", &ip1, conditions(false, false, false)).await;
    wait_event(&client, &ns, "db", "BackupPromoted", &ip2).await;
    eventually("the status to list the backup in rotation", || async {
        let cep = get_cep(&client, &ns, GROUP, "db").await?;
        (cep.status?.ports.first()?.backups_in_rotation == [ip2.clone()]).then_some(())
    })
    .await;

    b1.set_healthy(true).expect("primary returns");
    wait_conditions(&client, &ns, "db", &ip1, conditions(true, true, false)).await;
    wait_conditions(&client, &ns, "db", &ip2, conditions(false, true, false)).await;
    wait_event(&client, &ns, "db", "BackupDemoted", &ip2).await;
    eventually("the status to list no backup in rotation", || async {
        let cep = get_cep(&client, &ns, GROUP, "db").await?;
        cep.status?
            .ports
            .first()?
            .backups_in_rotation
            .is_empty()
            .then_some(())
    })
    .await;
}

/// The passthrough fields appear on the Service; labels and annotations
/// another manager set on it survive our updates, and a label another
/// manager owns with another value is not taken over.
#[tokio::test(flavor = "multi_thread")]
async fn passthrough_fields_appear_on_the_service_and_others_labels_survive() {
    let (client, ns, _controller) = watched_namespace("e2e-hosts-service").await;
    let (h1, _b1) = host_with_backend().await;
    let ip1 = h1.ipv4().to_string();
    let spec = |team: &str| {
        json!({
            "sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 600}},
            "internalTrafficPolicy": "Local",
            "trafficDistribution": "PreferClose",
            "serviceLabels": {"team": team, "tier": "data"},
            "serviceAnnotations": {"example.com/owner": "dba"},
            "ports": [{"name": "p", "port": 80, "targetPort": 80, "hosts": [ip1]}],
        })
    };
    must_apply(&client, &ns, GROUP, &cep("svc", spec("db"))).await;
    let has = |svc: &Service, key: &str, value: &str| {
        svc.labels().get(key).map(String::as_str) == Some(value)
    };
    let svc = eventually("the Service with the passthrough fields", || async {
        let svc = service(&client, &ns, "svc").await?;
        has(&svc, "team", "db").then_some(svc)
    })
    .await;
    let s = svc.spec.clone().expect("spec");
    let timeout = s
        .session_affinity_config
        .and_then(|c| c.client_ip?.timeout_seconds);
    let fields = (
        s.session_affinity.as_deref(),
        timeout,
        s.internal_traffic_policy.as_deref(),
        s.traffic_distribution.as_deref(),
    );
    assert_eq!(
        fields,
        (
            Some("ClientIP"),
            Some(600),
            Some("Local"),
            Some("PreferClose")
        )
    );
    assert_eq!(
        svc.annotations()
            .get("example.com/owner")
            .map(String::as_str),
        Some("dba")
    );

    // Somebody else labels the Service, and takes `tier` over with
    // another value.
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let theirs = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc",
        "labels": {"owner": "platform", "tier": "gold"}, "annotations": {"example.com/audit": "yes"}}});
    services
        .patch(
            "svc",
            &PatchParams::apply("someone-else").force(),
            &Patch::Apply(&theirs),
        )
        .await
        .expect("another manager labels the Service");
    // Our next update of the Service (the team label changes).
    must_apply(&client, &ns, GROUP, &cep("svc", spec("dba"))).await;
    let svc = eventually("our label to change", || async {
        let svc = service(&client, &ns, "svc").await?;
        has(&svc, "team", "dba").then_some(svc)
    })
    .await;
    assert!(has(&svc, "owner", "platform"), "{:?}", svc.labels());
    assert!(
        has(&svc, "tier", "gold"),
        "their value stays: {:?}",
        svc.labels()
    );
    assert_eq!(
        svc.annotations()
            .get("example.com/audit")
            .map(String::as_str),
        Some("yes")
    );

    // Taken out of the spec: gone from the Service (theirs stay).
    let plain = json!({"ports": [{"name": "p", "port": 80, "targetPort": 80, "hosts": [ip1]}]});
    must_apply(&client, &ns, GROUP, &cep("svc", plain)).await;
    let svc = eventually("our fields to be removed", || async {
        let svc = service(&client, &ns, "svc").await?;
        let spec = svc.spec.clone()?;
        let gone = !svc.labels().contains_key("team")
            && !svc.annotations().contains_key("example.com/owner")
            && spec.session_affinity.as_deref() == Some("None")
            && spec.traffic_distribution.is_none();
        gone.then_some(svc)
    })
    .await;
    assert!(
        has(&svc, "owner", "platform") && has(&svc, "tier", "gold"),
        "{:?}",
        svc.labels()
    );

    // publishNotReadyAddresses on a headless Service.
    let headless = json!({"clusterIP": "None", "publishNotReadyAddresses": true,
        "ports": [{"name": "p", "port": 80, "targetPort": 80, "hosts": [ip1]}]});
    must_apply(&client, &ns, GROUP, &cep("headless", headless)).await;
    eventually(
        "the headless Service publishing not-ready addresses",
        || async {
            let svc = service(&client, &ns, "headless").await?;
            (svc.spec?.publish_not_ready_addresses == Some(true)).then_some(())
        },
    )
    .await;
}

/// Drained hosts, a standby backup, zones, hints, hostnames and the
/// passthrough fields change nothing while nothing changes: no write in
/// several probe rounds, and none (not even an Event) from a restarted
/// controller, which seeds every host from the slices.
#[tokio::test(flavor = "multi_thread")]
async fn per_host_fields_cause_no_steady_writes_and_none_after_a_restart() {
    let (client, ns, controller) = watched_namespace("e2e-hosts-steady").await;
    let (h1, _b1) = host_with_backend().await;
    let (h2, _b2) = host_with_backend().await;
    let (h3, _b3) = host_with_backend().await;
    let [ip1, ip2, ip3] = [&h1, &h2, &h3].map(|h| h.ipv4().to_string());
    let hosts = json!([
        {"address": ip1, "zone": "zone-a", "hostname": "db-1"},
        {"address": ip2, "zone": "zone-a", "drain": true},
        {"address": ip3, "zone": "zone-b", "priority": 1},
    ]);
    let spec = json!({"ports": http_port(hosts), "serviceLabels": {"team": "db"},
        "sessionAffinity": "ClientIP", "trafficDistribution": "PreferClose"});
    must_apply(&client, &ns, GROUP, &cep("db", spec)).await;
    wait_conditions(&client, &ns, "db", &ip1, conditions(true, true, false)).await;
    wait_conditions(&client, &ns, "db", &ip2, conditions(false, true, true)).await;
    wait_conditions(&client, &ns, "db", &ip3, conditions(false, true, false)).await;
    wait_phase(&client, &ns, GROUP, "db", Phase::Healthy).await;
    wait_event(&client, &ns, "db", "HostDrained", &ip2).await;

    // Steady: three more probes of every host write nothing.
    let metric = |name: &'static str| controller.metric(name);
    let (writes, probes) = (
        metric("kube_endpoints_api_writes_total").await,
        metric("kube_endpoints_probes_total").await,
    );
    eventually("three more probe rounds", || async {
        (metric("kube_endpoints_probes_total").await >= probes + 9.0).then_some(())
    })
    .await;
    assert_eq!(
        metric("kube_endpoints_api_writes_total").await,
        writes,
        "writes while nothing changed:\n{}",
        controller.metrics().await
    );

    // Restart: the new process reconciles, probes every host twice, and
    // writes nothing.
    let versions = || resource_versions(&client, &ns, GROUP, "db");
    let before = versions().await;
    let events_before = events(&client, &ns, "db").await.len();
    // Every host probed twice.
    let _restarted = restart_writing_nothing(controller, &ns, 6.0).await;
    assert_eq!(versions().await, before, "resourceVersions changed");
    assert_eq!(
        events(&client, &ns, "db").await.len(),
        events_before,
        "no Event repeated"
    );
}

/// What admission cannot check about a host object (an unknown field: the
/// items of `hosts` preserve unknown fields) is refused by the controller,
/// naming the field on the object's status; its other objects are served.
#[tokio::test(flavor = "multi_thread")]
async fn a_bad_host_object_is_reported_naming_the_field() {
    let (client, ns, _controller) = watched_namespace("e2e-hosts-bad").await;
    let (h1, _b1) = host_with_backend().await;
    let ip1 = h1.ipv4().to_string();
    let bad = json!([ip1, {"address": "198.18.0.2", "zones": "a"}]);
    must_apply(
        &client,
        &ns,
        GROUP,
        &cep("bad", json!({"ports": http_port(bad)})),
    )
    .await;
    must_apply(
        &client,
        &ns,
        GROUP,
        &cep("good", json!({"ports": http_port(json!([ip1]))})),
    )
    .await;
    // Read untyped: the object does not decode into our types.
    let api: Api<kube::core::DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns,
        &kube_endpoints_api::api_resource(GROUP),
    );
    let message = eventually("the bad object to report Initialized=False", || async {
        let object = api.get_opt("bad").await.ok()??;
        let conditions = object
            .data
            .pointer("/status/conditions")?
            .as_array()?
            .clone();
        conditions
            .iter()
            .find(|c| c["type"] == "Initialized" && c["status"] == "False")
            .and_then(|c| c["message"].as_str().map(String::from))
    })
    .await;
    assert!(
        message.contains("spec.ports[0].hosts[1].zones"),
        "{message}"
    );
    wait_phase(&client, &ns, GROUP, "good", Phase::Healthy).await;
}
