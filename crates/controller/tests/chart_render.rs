//! The Helm chart (charts/kube-endpoints) as the real `helm` renders it: no
//! cluster and no root needed, only helm (built from its Go module by
//! scripts/build-helm.sh, or `$KE_HELM_BIN`).
//!
//! - `helm lint --strict` is clean, and the values schema rejects bad values;
//! - the chart's CRD copies are byte-equal to what the Rust types generate;
//! - RBAC has no wildcards and nothing cluster-wide when namespaces are listed;
//! - the Deployment is hardened and its arguments parse with the real CLI;
//! - the monitoring objects query only metrics the controller exports;
//! - the NetworkPolicy admits only the configured scrapers, and only to the
//!   metrics port; the image can be pinned by digest.
//!
//! `chart_cluster.rs` checks the same chart against a real apiserver.

mod support;

use std::collections::BTreeSet;

use clap::Parser;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube_endpoints::cli::{Cli, Command as CliCommand};
use kube_endpoints_api::{GROUP, SEALOS_GROUP, SEALYUN_GROUP, crd_for_group};
use serde_json::{Value, json};
use support::chart::*;

const GROUPS: [&str; 3] = [GROUP, SEALOS_GROUP, SEALYUN_GROUP];

// ---------------------------------------------------------------- lint

#[test]
fn helm_lint_is_clean_with_default_and_all_optional_values() {
    let chart = chart_dir();
    let chart = chart.to_str().expect("UTF-8 path");
    let values = all_features();
    for args in [
        vec!["lint", "--strict", chart],
        vec![
            "lint",
            "--strict",
            chart,
            "-f",
            values.to_str().expect("UTF-8 path"),
        ],
        // One replica: no PodDisruptionBudget, still clean.
        vec!["lint", "--strict", chart, "--set", "replicaCount=1"],
    ] {
        let out = helm(&args);
        let text = format!("{}{}", out.stdout, out.stderr);
        assert!(out.ok, "helm {args:?} failed:\n{text}");
        assert!(
            text.contains("1 chart(s) linted, 0 chart(s) failed"),
            "{text}"
        );
        assert!(
            !text.contains("[ERROR]") && !text.contains("[WARNING]"),
            "helm {args:?} is not clean:\n{text}"
        );
    }
}

#[test]
fn values_schema_rejects_bad_values() {
    let chart = chart_dir();
    let chart = chart.to_str().expect("UTF-8 path");
    for (set, why) in [
        ("groups[0]=example.com", "a group without a shipped CRD"),
        ("replicaCount=0", "zero replicas"),
        ("logFormat=xml", "an unknown log format"),
        ("watchNamespaces[0]=Not_A_Namespace", "an invalid namespace"),
        ("metrics.servicemonitor.enabled=true", "a misspelt key"),
        ("image.pullPolicy=Sometimes", "an unknown pull policy"),
        (
            "leaderElection.leaseDurationSeconds=1",
            "a lease shorter than the CLI accepts",
        ),
        (
            "certificates.expiryWarningDays=-1",
            "a negative warning window",
        ),
        ("probeCredentials.enabed=true", "a misspelt key"),
        ("fleetGuard.percent=101", "a share over 100 %"),
        ("dns.minTtlSeconds=0", "a TTL floor the CLI refuses"),
        ("dns.servers={db.example}", "a DNS server given by name"),
    ] {
        let out = helm(&["template", "t", chart, "--set", set]);
        assert!(!out.ok, "the schema accepted {why} ({set})");
        assert!(
            out.stderr.contains("schema"),
            "{set} failed for another reason than the schema:\n{}",
            out.stderr
        );
    }
}

// ---------------------------------------------------------------- CRDs

#[test]
fn chart_crds_are_the_generated_crds() {
    for group in GROUPS {
        let path = chart_dir().join(format!("files/crds/{group}.yaml"));
        let file = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let generated = kube_endpoints::yaml::crd(group).expect("CRD renders");
        assert!(
            file == generated,
            "{} is stale: run scripts/update-chart-crds.sh",
            path.display()
        );
    }

    // The rendered CRDs: one per served group, equal to the generated ones
    // apart from the chart's labels and the keep annotation.
    let rendered = objects(&render_all_features("t", "ke-chart-crd", &[]));
    let crds = of_kind(&rendered, "CustomResourceDefinition");
    assert_eq!(crds.len(), GROUPS.len());
    for (crd, group) in crds.iter().zip(GROUPS) {
        let mut crd = (*crd).clone();
        assert_eq!(
            crd["metadata"]["annotations"]["helm.sh/resource-policy"], "keep",
            "uninstalling must keep the CRD of {group}"
        );
        assert_eq!(
            crd["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "Helm"
        );
        let meta = crd["metadata"].as_object_mut().expect("metadata");
        meta.remove("labels");
        meta.remove("annotations");
        let parsed: CustomResourceDefinition =
            serde_json::from_value(crd).expect("rendered CRD parses");
        assert_eq!(parsed, crd_for_group(group), "rendered CRD of {group}");
    }

    // Only the groups asked for; none at all when CRDs are managed elsewhere.
    let sealos = objects(&render("t", "ke", &["--set", "groups[0]=sealos.io"]));
    let names: Vec<_> = of_kind(&sealos, "CustomResourceDefinition")
        .iter()
        .map(|c| c["metadata"]["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("clusterendpoints.sealos.io")]);
    let none = objects(&render("t", "ke", &["--set", "crds.install=false"]));
    assert!(of_kind(&none, "CustomResourceDefinition").is_empty());
    let dropped = objects(&render("t", "ke", &["--set", "crds.keep=false"]));
    assert!(
        one(&dropped, "CustomResourceDefinition")["metadata"]["annotations"].is_null(),
        "crds.keep=false must drop the keep annotation"
    );
}

// ---------------------------------------------------------------- RBAC

#[test]
fn rbac_has_no_wildcards_and_stays_in_the_watched_namespaces() {
    let default = objects(&render("t", "ke-system", &[]));
    let listed = objects(&render_all_features("t", "ke-system", &[]));
    for objects in [&default, &listed] {
        let rules = rules(objects);
        assert!(!rules.is_empty());
        for (who, rule) in &rules {
            for field in ["verbs", "resources", "apiGroups", "resourceNames"] {
                assert!(
                    !strings(&rule[field]).iter().any(|s| s.contains('*')),
                    "{who} has a wildcard in {field}: {rule}"
                );
            }
            assert!(
                rule["nonResourceURLs"].is_null(),
                "{who} grants non-resource URLs"
            );
            assert!(
                !strings(&rule["resources"]).iter().any(|r| r == "pods"),
                "{who} grants pods, which the controller never reads"
            );
            // Probe credentials: listed and watched by label, never read
            // by name, never written.
            if strings(&rule["resources"])
                .iter()
                .any(|r| r == "secrets" || r == "configmaps")
            {
                assert_eq!(
                    strings(&rule["resources"]),
                    ["secrets", "configmaps"],
                    "{who}"
                );
                assert_eq!(strings(&rule["verbs"]), ["list", "watch"], "{who}");
            }
            // The address policy reads nodes and ServiceCIDRs, and only that.
            let resources = strings(&rule["resources"]);
            if resources
                .iter()
                .any(|r| r == "nodes" || r == "servicecidrs")
            {
                assert!(
                    who.ends_with("-cluster-ranges"),
                    "{who} grants {resources:?}"
                );
                assert_eq!(strings(&rule["verbs"]), ["get", "list", "watch"], "{who}");
            }
            for verb in ["deletecollection", "escalate", "bind", "impersonate"] {
                assert!(!strings(&rule["verbs"]).iter().any(|v| v == verb));
            }
        }
    }

    // All namespaces: one ClusterRole for the namespaced objects, one
    // read-only ClusterRole for the address policy's discovery, and the
    // Lease only in the release namespace.
    let cluster_roles = of_kind(&default, "ClusterRole");
    assert_eq!(cluster_roles.len(), 2);
    let cluster_role = cluster_roles
        .iter()
        .find(|r| r["metadata"]["name"] == "t-kube-endpoints")
        .expect("the controller's ClusterRole");
    let cluster_rules = rules(std::slice::from_ref(cluster_role));
    let resources: BTreeSet<String> = cluster_rules
        .iter()
        .flat_map(|(_, r)| strings(&r["resources"]))
        .collect();
    assert!(
        !resources.contains("leases"),
        "leases must not be cluster-wide"
    );
    for needed in [
        "clusterendpoints",
        "clusterendpoints/status",
        "clusterendpoints/finalizers",
        "services",
        "endpoints",
        "endpointslices",
        "events",
        "secrets",
        "configmaps",
    ] {
        assert!(resources.contains(needed), "ClusterRole lacks {needed}");
    }
    // Without probe credentials, no Secret or ConfigMap is granted at all.
    let no_credentials = objects(&render(
        "t",
        "ke-system",
        &["--set", "probeCredentials.enabled=false"],
    ));
    for (who, rule) in rules(&no_credentials) {
        for forbidden in ["secrets", "configmaps"] {
            assert!(
                !strings(&rule["resources"]).iter().any(|r| r == forbidden),
                "{who} grants {forbidden} with probeCredentials.enabled=false"
            );
        }
    }
    let services = cluster_rules
        .iter()
        .find(|(_, r)| strings(&r["resources"]) == ["services"])
        .expect("a rule for services");
    assert!(
        !strings(&services.1["verbs"]).contains(&"delete".to_string()),
        "the controller never deletes Services (the garbage collector does)"
    );
    let roles = of_kind(&default, "Role");
    assert_eq!(roles.len(), 1);
    assert_eq!(roles[0]["metadata"]["namespace"], "ke-system");

    // Listed namespaces: nothing cluster-wide but the discovery's reads of
    // nodes and ServiceCIDRs; kube-apiserver's endpoints read by name in
    // `default`.
    let cluster_wide: Vec<String> = roles_and_bindings(&listed, "ClusterRole", "name");
    assert_eq!(
        cluster_wide,
        [
            "t-kube-endpoints-cluster-ranges",
            "t-kube-endpoints-cluster-ranges"
        ]
    );
    let namespaces: BTreeSet<String> = roles_and_bindings(&listed, "Role", "namespace");
    assert_eq!(
        namespaces,
        ["default", "ke-chart-team-a", "ke-chart-team-b", "ke-system"]
            .map(String::from)
            .into()
    );
    let apiserver = of_kind(&listed, "Role")
        .into_iter()
        .find(|r| r["metadata"]["namespace"] == "default")
        .expect("a Role in default");
    for rule in apiserver["rules"].as_array().expect("rules") {
        assert_eq!(strings(&rule["resourceNames"]), ["kubernetes"], "{rule}");
        assert_eq!(strings(&rule["verbs"]), ["get", "list", "watch"], "{rule}");
    }
    // Discovery off: no cluster-wide read at all.
    let off = objects(&render_all_features(
        "t",
        "ke-system",
        &["--set", "addressPolicy.denyClusterRanges={none}"],
    ));
    assert!(of_kind(&off, "ClusterRole").is_empty());
    assert!(
        !of_kind(&off, "Role")
            .iter()
            .any(|r| r["metadata"]["namespace"] == "default")
    );
    // Listed namespaces: Secrets and ConfigMaps only there.
    for role in of_kind(&listed, "Role") {
        let ns = role["metadata"]["namespace"].as_str().unwrap_or_default();
        let grants_secrets = role["rules"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|r| strings(&r["resources"]).iter().any(|x| x == "secrets"));
        assert_eq!(
            grants_secrets,
            ns.starts_with("ke-chart-team-"),
            "Secrets in {ns}"
        );
    }
    // Every served group is granted in each watched namespace.
    for role in of_kind(&listed, "Role") {
        if ["ke-system", "default"]
            .contains(&role["metadata"]["namespace"].as_str().unwrap_or_default())
        {
            continue;
        }
        let groups: BTreeSet<String> = role["rules"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| strings(&r["resources"]) == ["clusterendpoints"])
            .flat_map(|r| strings(&r["apiGroups"]))
            .collect();
        assert_eq!(groups, GROUPS.map(String::from).into());
    }
}

/// The metadata `field` (name or namespace) of every `kind` (Role or
/// ClusterRole) in `objects` and of every matching binding.
fn roles_and_bindings<C: FromIterator<String>>(objects: &[Value], kind: &str, field: &str) -> C {
    of_kind(objects, kind)
        .into_iter()
        .chain(of_kind(objects, &format!("{kind}Binding")))
        .filter_map(|r| r["metadata"][field].as_str().map(str::to_string))
        .collect()
}

// ---------------------------------------------------------------- Deployment

#[test]
fn deployment_is_hardened_and_its_args_parse() {
    let default = objects(&render("rel", "ke-system", &[]));
    let deployment = one(&default, "Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_eq!(pod["automountServiceAccountToken"], true);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let spread = &pod["topologySpreadConstraints"][0];
    assert_eq!(spread["topologyKey"], "kubernetes.io/hostname");
    let containers = pod["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(strings(&sc["capabilities"]["drop"]), ["ALL"]);
    for (field, want) in [
        (
            &c["resources"]["requests"],
            json!({"cpu": "50m", "memory": "64Mi"}),
        ),
        (
            &c["resources"]["limits"],
            json!({"cpu": "500m", "memory": "256Mi"}),
        ),
        (
            &c["ports"][0],
            json!({"name": "metrics", "containerPort": 8080, "protocol": "TCP"}),
        ),
        (
            &c["livenessProbe"]["httpGet"],
            json!({"path": "/healthz", "port": "metrics"}),
        ),
        (
            &c["readinessProbe"]["httpGet"],
            json!({"path": "/readyz", "port": "metrics"}),
        ),
    ] {
        assert_eq!(field, &want);
    }
    let env: Vec<(String, String)> = c["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap_or_default().to_string(),
                e["valueFrom"]["fieldRef"]["fieldPath"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    assert!(env.contains(&("POD_NAME".into(), "metadata.name".into())));
    assert!(env.contains(&("POD_NAMESPACE".into(), "metadata.namespace".into())));
    let pdb = one(&default, "PodDisruptionBudget");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"]
    );

    // The arguments, default and with every option, parse with the real CLI.
    let args = |objects: &[Value]| -> Vec<String> {
        let d = one(objects, "Deployment");
        strings(&d["spec"]["template"]["spec"]["containers"][0]["args"])
    };
    let parse = |args: &[String]| {
        let cli = Cli::try_parse_from(
            std::iter::once("kube-endpoints".to_string()).chain(args.iter().cloned()),
        )
        .unwrap_or_else(|e| panic!("the chart's args {args:?} do not parse: {e}"));
        match cli.command {
            CliCommand::Run(run) => run,
            other => panic!("the chart runs {other:?}, not `run`"),
        }
    };
    let run = parse(&args(&default));
    assert_eq!(run.groups, [GROUP]);
    assert!(run.namespaces.is_empty());
    assert!(run.compat_endpoints);
    assert!(run.leader_election, "two replicas need leader election");
    assert_eq!(run.lease_name, "rel-kube-endpoints");
    assert_eq!(run.lease_namespace.as_deref(), Some("ke-system"));
    assert!(!run.per_host_metrics);
    assert_eq!(run.metrics_addr.port(), 8080);
    assert!(run.probe_credentials);
    assert_eq!(run.cert_expiry_warning_days, 14);
    let fleet_guard = |run: &kube_endpoints::cli::RunArgs| {
        let r = run;
        (
            r.fleet_guard_percent,
            r.fleet_guard_min_targets,
            r.fleet_guard_window_seconds,
        )
    };
    assert_eq!(fleet_guard(&run), (50, 10, 30));
    let dns = |run: &kube_endpoints::cli::RunArgs| {
        let servers: Vec<String> = run.dns_servers.iter().map(ToString::to_string).collect();
        (servers, run.dns_min_ttl, run.dns_max_ttl)
    };
    assert_eq!(dns(&run), (vec![], 5, 3600));

    let listed = objects(&render_all_features("rel", "ke-system", &[]));
    let run = parse(&args(&listed));
    assert_eq!(fleet_guard(&run), (60, 100, 20));
    assert_eq!(
        dns(&run),
        (
            vec![
                "198.18.0.53:53".to_string(),
                "[fd00:6b65::53]:5353".to_string()
            ],
            10,
            600
        )
    );
    assert_eq!(run.groups, GROUPS);
    assert_eq!(run.namespaces, ["ke-chart-team-a", "ke-chart-team-b"]);
    assert!(!run.compat_endpoints);
    assert!(run.per_host_metrics);
    // The Lease the RBAC grants is the Lease the controller uses.
    let lease_rule = rules(&listed)
        .into_iter()
        .find(|(_, r)| {
            strings(&r["resources"]) == ["leases"] && !strings(&r["resourceNames"]).is_empty()
        })
        .expect("a Lease rule limited by name");
    assert_eq!(strings(&lease_rule.1["resourceNames"]), [run.lease_name]);
    assert_eq!(run.shards, 1);
    // Sharded: the flag reaches the controller, and the Lease rule (still
    // in the release namespace only) covers the shard and membership
    // Leases, whose names are not known in advance.
    let sharded = objects(&render("rel", "ke-system", &["--set", "shards=4"]));
    assert_eq!(parse(&args(&sharded)).shards, 4);
    let lease_rules: Vec<_> = rules(&sharded)
        .into_iter()
        .filter(|(_, r)| strings(&r["resources"]) == ["leases"])
        .collect();
    assert!(
        lease_rules
            .iter()
            .all(|(who, _)| who.starts_with("Role ke-system/"))
    );
    let verbs: BTreeSet<String> = lease_rules
        .iter()
        .filter(|(_, r)| strings(&r["resourceNames"]).is_empty())
        .flat_map(|(_, r)| strings(&r["verbs"]))
        .collect();
    for verb in [
        "create", "get", "list", "watch", "update", "patch", "delete",
    ] {
        assert!(
            verbs.contains(verb),
            "sharded Lease rules lack {verb}: {verbs:?}"
        );
    }
    // The address policy, budgets and adoption values reach the flags.
    assert_eq!(
        run.allowed_cidrs,
        [
            "198.18.0.0/15".parse::<ipnet::IpNet>().unwrap(),
            "fd00:6b65::/32".parse().unwrap()
        ]
    );
    assert_eq!(
        run.denied_cidrs,
        [
            "198.19.250.0/24".parse::<ipnet::IpNet>().unwrap(),
            "198.19.66.1/32".parse().unwrap()
        ]
    );
    assert_eq!(run.deny_cluster_ranges.len(), 4);
    assert_eq!(
        run.service_cidrs,
        ["198.19.251.0/24".parse::<ipnet::IpNet>().unwrap()]
    );
    assert_eq!(
        (run.max_targets, run.max_targets_per_namespace),
        (50000, 5000)
    );
    assert_eq!(run.max_in_flight_probes, 1024);
    assert!(run.require_adopt_annotation);
    assert!(run.probe_credentials);
    assert_eq!(run.cert_expiry_warning_days, 30);
    let c = &one(&listed, "Deployment")["spec"]["template"]["spec"];
    assert_eq!(c["priorityClassName"], "system-cluster-critical");
    assert_eq!(
        c["topologySpreadConstraints"][0]["topologyKey"], "topology.kubernetes.io/zone",
        "user constraints replace the default"
    );

    let single = objects(&render("rel", "ke-system", &["--set", "replicaCount=1"]));
    assert!(
        of_kind(&single, "PodDisruptionBudget").is_empty(),
        "a PDB on one replica would block node drains"
    );
}

#[test]
fn monitoring_objects_match_the_metrics_service() {
    let listed = objects(&render_all_features("rel", "ke-system", &[]));
    let service = one(&listed, "Service");
    let monitor = one(&listed, "ServiceMonitor");
    for (k, v) in monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("matchLabels")
    {
        assert_eq!(&service["metadata"]["labels"][k], v, "label {k}");
    }
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(service["spec"]["ports"][0]["name"], "metrics");

    // Every alert scopes itself to this release's job and namespace and
    // reads only metrics the controller exports.
    let rule = one(&listed, "PrometheusRule");
    let alerts: Vec<&Value> = rule["spec"]["groups"][0]["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .collect();
    let names: BTreeSet<&str> = alerts.iter().filter_map(|a| a["alert"].as_str()).collect();
    for needed in [
        "KubeEndpointsHostDown",
        "KubeEndpointsProbesFailing",
        "KubeEndpointsNoLeader",
        "KubeEndpointsReconcileErrors",
        "KubeEndpointsWatchFailing",
        "KubeEndpointsFleetGuardFrozen",
    ] {
        assert!(names.contains(needed), "missing alert {needed}");
    }
    let job = format!(
        "job=\"{}\"",
        service["metadata"]["name"].as_str().expect("service name")
    );
    let metrics = exercised_metrics();
    let exported = metrics_names(&metrics.encode().expect("metrics encode"));
    for alert in &alerts {
        let expr = alert["expr"].as_str().expect("expr");
        assert!(expr.contains(&job), "{expr} is not scoped to {job}");
        for name in metric_names_in(expr) {
            assert!(
                name == "up" || exported.contains(&name),
                "alert {} uses {name}, which the controller does not export ({exported:?})",
                alert["alert"]
            );
        }
    }

    // The dashboard is valid JSON and queries only exported metrics.
    let cm = one(&listed, "ConfigMap");
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    let dashboard: Value = serde_json::from_str(
        cm["data"]["kube-endpoints.json"]
            .as_str()
            .expect("dashboard data"),
    )
    .expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    assert!(exprs.len() >= 8, "dashboard has {} queries", exprs.len());
    for expr in exprs {
        for name in metric_names_in(&expr) {
            assert!(
                exported.contains(&name),
                "dashboard query {expr} uses {name}, which is not exported"
            );
        }
    }
}

// ---------------------------------------------------------------- network policy and image

#[test]
fn the_network_policy_admits_only_the_monitoring_namespace_to_the_metrics_port() {
    let listed = objects(&render("kube-endpoints", "ke-system", &[]));
    let policy = one(&listed, "NetworkPolicy");
    assert_eq!(policy["metadata"]["namespace"], "ke-system");
    // It selects exactly the controller's pods...
    let deployment = one(&listed, "Deployment");
    assert_eq!(
        policy["spec"]["podSelector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"]
    );
    // ...for ingress only (probes and the apiserver are egress)...
    assert_eq!(policy["spec"]["policyTypes"], json!(["Ingress"]));
    // ...and admits one peer, on one port.
    let ingress = policy["spec"]["ingress"].as_array().expect("ingress");
    assert_eq!(ingress.len(), 1, "{ingress:#?}");
    assert_eq!(
        ingress[0]["from"],
        json!([{
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
            "podSelector": {}
        }])
    );
    assert_eq!(
        ingress[0]["ports"],
        json!([{"port": "metrics", "protocol": "TCP"}])
    );
    // The named port is the one the server listens on.
    let ports = &deployment["spec"]["template"]["spec"]["containers"][0]["ports"];
    assert!(
        ports
            .as_array()
            .expect("ports")
            .iter()
            .any(|p| p["name"] == "metrics"),
        "{ports}"
    );
}

#[test]
fn the_network_policy_takes_the_prometheus_selectors_and_extra_rules() {
    let listed = objects(&render(
        "kube-endpoints",
        "ke-system",
        &[
            "--set",
            "networkPolicy.metrics.namespaceSelector.matchLabels.team=observability",
            "--set",
            "networkPolicy.metrics.podSelector.matchLabels.app\\.kubernetes\\.io/name=prometheus",
            "--set",
            "networkPolicy.extraIngress[0].from[0].ipBlock.cidr=198.18.0.0/15",
            "--set",
            "networkPolicy.extraIngress[0].ports[0].port=metrics",
        ],
    ));
    let ingress = one(&listed, "NetworkPolicy")["spec"]["ingress"]
        .as_array()
        .expect("ingress");
    assert_eq!(ingress.len(), 2, "{ingress:#?}");
    let peer = &ingress[0]["from"][0];
    assert_eq!(
        peer["namespaceSelector"]["matchLabels"]["team"],
        "observability"
    );
    assert_eq!(
        peer["podSelector"],
        json!({"matchLabels": {"app.kubernetes.io/name": "prometheus"}})
    );
    assert_eq!(ingress[1]["from"][0]["ipBlock"]["cidr"], "198.18.0.0/15");
}

#[test]
fn the_network_policy_can_be_turned_off() {
    let listed = objects(&render(
        "kube-endpoints",
        "ke-system",
        &["--set", "networkPolicy.enabled=false"],
    ));
    assert!(of_kind(&listed, "NetworkPolicy").is_empty());
}

#[test]
fn the_chart_can_pin_the_controller_image_by_digest() {
    let image = |extra: &[&str]| -> String {
        let listed = objects(&render("kube-endpoints", "ke-system", extra));
        one(&listed, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .expect("the Deployment's image")
            .to_string()
    };
    let digest = format!("sha256:{}", "0123456789abcdef".repeat(4));
    let pinned = image(&["--set", &format!("image.digest={digest}")]);
    assert!(pinned.ends_with(&format!("@{digest}")), "{pinned}");
    assert!(!image(&[]).contains('@'));
    // Anything but a sha256 digest is refused by the values schema.
    let chart = chart_dir();
    let chart = chart.to_str().expect("UTF-8 path");
    let out = helm(&["template", "t", chart, "--set", "image.digest=latest"]);
    assert!(!out.ok, "a tag was accepted as a digest");
    assert!(out.stderr.contains("schema"), "{}", out.stderr);
}

/// The controller's real metrics registry with every family holding a
/// series (families without one are not exposed at all).
fn exercised_metrics() -> kube_endpoints::metrics::Metrics {
    use kube_endpoints::metrics::{
        Metrics, ProbeKindLabels, ProbeLabels, ReasonLabels, TransitionLabels,
    };
    let metrics = Metrics::new(true);
    metrics.leader.set(1);
    metrics
        .probes
        .get_or_create(&ProbeLabels {
            probe: "tcp",
            result: "failure",
        })
        .inc();
    metrics
        .probe_duration
        .get_or_create(&ProbeKindLabels { probe: "tcp" })
        .observe(0.01);
    metrics
        .transitions
        .get_or_create(&TransitionLabels { to: "not_ready" })
        .inc();
    metrics
        .reconcile_errors
        .get_or_create(&ReasonLabels {
            reason: "Test".into(),
        })
        .inc();
    metrics.count_write("services", "apply");
    metrics.set_host_readiness("ns", "cep", [("http".into(), "198.18.0.1".into(), true)]);
    metrics.set_certificates(
        "ns",
        "cep",
        &std::collections::BTreeMap::from([(
            kube_endpoints_probe::TargetId {
                port: "https".into(),
                host: "198.18.0.1".parse().expect("ip"),
            },
            std::time::UNIX_EPOCH,
        )]),
    );
    metrics
}

/// Series names in an OpenMetrics exposition (histograms with their suffixes).
fn metrics_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                continue;
            };
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                _ => &[""],
            };
            for s in suffixes {
                names.insert(format!("{name}{s}"));
            }
        }
    }
    names
}

/// `kube_endpoints_*` and `up` identifiers in a PromQL expression.
fn metric_names_in(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    for ch in expr.chars().chain(std::iter::once(' ')) {
        if ch.is_ascii_alphanumeric() || ch == '_' {
            word.push(ch);
        } else {
            if word.starts_with("kube_endpoints_") || word == "up" {
                out.push(std::mem::take(&mut word));
            }
            word.clear();
        }
    }
    out
}

fn collect_exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr" | "query", Value::String(s)) => out.push(s.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}
