//! The Helm chart (charts/kube-endpoints), checked with the real `helm` CLI
//! (built from its Go module by scripts/build-helm.sh, or `$KE_HELM_BIN`) and
//! the real kube-apiserver of the end-to-end suite:
//!
//! - `helm lint --strict` is clean, and the values schema rejects bad values;
//! - every rendered object, with default values and with every optional
//!   feature on, is accepted by the apiserver (server-side dry-run);
//! - the chart's CRD copies are byte-equal to what the Rust types generate;
//! - RBAC has no wildcards and grants the service account what the
//!   controller calls, and nothing cluster-wide when namespaces are listed;
//! - the Deployment is hardened and its arguments parse with the real CLI.

mod support;

use support::repo_root;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use clap::Parser;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use kube_endpoints::cli::{Cli, Command as CliCommand};
use kube_endpoints_api::{GROUP, SEALOS_GROUP, SEALYUN_GROUP, crd_for_group};
use serde_json::{Value, json};

const GROUPS: [&str; 3] = [GROUP, SEALOS_GROUP, SEALYUN_GROUP];

/// `kubectl apply --server-side` of `manifest` as the admin; panics with
/// kubectl's message on failure.
async fn kubectl_apply(tag: &str, manifest: &str) {
    let path = std::env::temp_dir().join(format!("{tag}-{}.yaml", std::process::id()));
    std::fs::write(&path, manifest).expect("write manifest");
    let out = support::control_plane()
        .kubectl(["apply", "--server-side", "-f"])
        .arg(&path)
        .output()
        .await
        .expect("kubectl runs");
    let _ = std::fs::remove_file(&path);
    assert!(
        out.status.success(),
        "{tag}: kubectl apply failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn chart_dir() -> PathBuf {
    repo_root().join("charts/kube-endpoints")
}

/// Values with every optional feature on (also used by chart-testing).
fn all_features() -> PathBuf {
    chart_dir().join("ci/all-features-values.yaml")
}

struct Output {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn helm(args: &[&str]) -> Output {
    let out = support::helm_command()
        .args(args)
        .output()
        .expect("helm runs");
    Output {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `helm template` of the chart; panics with helm's message on failure.
fn render(release: &str, namespace: &str, extra: &[&str]) -> String {
    let chart = chart_dir();
    let mut args = vec![
        "template",
        release,
        chart.to_str().expect("UTF-8 path"),
        "--namespace",
        namespace,
    ];
    args.extend_from_slice(extra);
    let out = helm(&args);
    assert!(out.ok, "helm {args:?} failed:\n{}", out.stderr);
    out.stdout
}

fn render_all_features(release: &str, namespace: &str, extra: &[&str]) -> String {
    let values = all_features();
    let mut args = vec!["-f", values.to_str().expect("UTF-8 path")];
    args.extend_from_slice(extra);
    render(release, namespace, &args)
}

/// The rendered documents as JSON values (empty documents dropped).
fn objects(rendered: &str) -> Vec<Value> {
    kube_endpoints::yaml::documents(rendered).expect("rendered YAML")
}

fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

fn one<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    let found = of_kind(objects, kind);
    assert_eq!(found.len(), 1, "expected exactly one {kind}");
    found[0]
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

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

fn rules(objects: &[Value]) -> Vec<(String, &Value)> {
    objects
        .iter()
        .filter(|o| o["kind"] == "ClusterRole" || o["kind"] == "Role")
        .flat_map(|o| {
            let who = format!(
                "{} {}/{}",
                o["kind"].as_str().unwrap_or_default(),
                o["metadata"]["namespace"].as_str().unwrap_or_default(),
                o["metadata"]["name"].as_str().unwrap_or_default()
            );
            o["rules"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |r| (who.clone(), r))
        })
        .collect()
}

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
            for forbidden in ["secrets", "configmaps", "pods", "nodes"] {
                assert!(
                    !strings(&rule["resources"]).iter().any(|r| r == forbidden),
                    "{who} grants {forbidden}, which the controller never reads"
                );
            }
            for verb in ["deletecollection", "escalate", "bind", "impersonate"] {
                assert!(!strings(&rule["verbs"]).iter().any(|v| v == verb));
            }
        }
    }

    // All namespaces: one ClusterRole for the namespaced objects, and the
    // Lease only in the release namespace.
    let cluster_role = one(&default, "ClusterRole");
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
    ] {
        assert!(resources.contains(needed), "ClusterRole lacks {needed}");
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

    // Listed namespaces: nothing cluster-wide at all.
    assert!(of_kind(&listed, "ClusterRole").is_empty());
    assert!(of_kind(&listed, "ClusterRoleBinding").is_empty());
    let namespaces: BTreeSet<String> = of_kind(&listed, "Role")
        .iter()
        .chain(of_kind(&listed, "RoleBinding").iter())
        .filter_map(|r| r["metadata"]["namespace"].as_str().map(str::to_string))
        .collect();
    assert_eq!(
        namespaces,
        ["ke-chart-team-a", "ke-chart-team-b", "ke-system"]
            .map(String::from)
            .into()
    );
    // Every served group is granted in each watched namespace.
    for role in of_kind(&listed, "Role") {
        if role["metadata"]["namespace"] == "ke-system" {
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
    assert_eq!(
        c["resources"]["requests"],
        json!({"cpu": "50m", "memory": "64Mi"})
    );
    assert_eq!(
        c["resources"]["limits"],
        json!({"cpu": "500m", "memory": "256Mi"})
    );
    assert_eq!(
        c["ports"][0],
        json!({"name": "metrics", "containerPort": 8080, "protocol": "TCP"})
    );
    assert_eq!(
        c["livenessProbe"]["httpGet"],
        json!({"path": "/healthz", "port": "metrics"})
    );
    assert_eq!(
        c["readinessProbe"]["httpGet"],
        json!({"path": "/readyz", "port": "metrics"})
    );
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

    let listed = objects(&render_all_features("rel", "ke-system", &[]));
    let run = parse(&args(&listed));
    assert_eq!(run.groups, GROUPS);
    assert_eq!(run.namespaces, ["ke-chart-team-a", "ke-chart-team-b"]);
    assert!(!run.compat_endpoints);
    assert!(run.per_host_metrics);
    // The Lease the RBAC grants is the Lease the controller uses.
    let lease_rule = rules(&listed)
        .into_iter()
        .find(|(_, r)| !strings(&r["resourceNames"]).is_empty())
        .expect("a Lease rule limited by name");
    assert_eq!(strings(&lease_rule.1["resourceNames"]), [run.lease_name]);
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

// ---------------------------------------------------------------- apiserver

/// Stand-ins for the Prometheus Operator's CRDs: the same names and scope,
/// any content (the real schemas are not ours to pin).
async fn install_monitoring_crds(client: &kube::Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for (kind, plural) in [
        ("ServiceMonitor", "servicemonitors"),
        ("PrometheusRule", "prometheusrules"),
    ] {
        let crd: CustomResourceDefinition = serde_json::from_value(json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": format!("{plural}.monitoring.coreos.com")},
            "spec": {
                "group": "monitoring.coreos.com",
                "scope": "Namespaced",
                "names": {"kind": kind, "plural": plural, "listKind": format!("{kind}List"), "singular": kind.to_lowercase()},
                "versions": [{
                    "name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
                }],
            },
        }))
        .expect("stand-in CRD");
        let name = format!("{plural}.monitoring.coreos.com");
        crds.patch(
            &name,
            &PatchParams::apply("chart-test").force(),
            &Patch::Apply(&crd),
        )
        .await
        .expect("stand-in CRD applies");
        support::eventually(&format!("{name} to be established"), || {
            let crds = crds.clone();
            let name = name.clone();
            async move {
                let crd = crds.get(&name).await.ok()?;
                crd.status?
                    .conditions?
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
                    .then_some(())
            }
        })
        .await;
    }
}

/// `kubectl apply --server-side --dry-run=server` of `manifest`; returns the
/// lines kubectl printed for accepted objects.
async fn dry_run_apply(manifest: &str) -> Vec<String> {
    let path = std::env::temp_dir().join(format!(
        "ke-chart-{}-{}.yaml",
        std::process::id(),
        support::free_port()
    ));
    std::fs::write(&path, manifest).expect("write manifest");
    let out = support::control_plane()
        .kubectl([
            "apply",
            "--server-side",
            "--field-manager=helm-chart-test",
            "--dry-run=server",
            "-f",
        ])
        .arg(&path)
        .output()
        .await
        .expect("kubectl runs");
    let _ = std::fs::remove_file(&path);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the apiserver rejected rendered objects:\n{stderr}\n{stdout}"
    );
    stdout
        .lines()
        .filter(|l| l.ends_with("(server dry run)"))
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn every_rendered_object_is_accepted_by_the_apiserver() {
    let client = support::client().await;
    install_monitoring_crds(&client).await;
    let release_ns = support::namespace(&client, "ke-chart-dryrun").await;
    for ns in ["ke-chart-team-a", "ke-chart-team-b"] {
        support::namespace(&client, ns).await;
    }
    for (what, rendered) in [
        ("default values", render("kube-endpoints", &release_ns, &[])),
        (
            "every optional feature",
            render_all_features("kube-endpoints", &release_ns, &[]),
        ),
    ] {
        let expected = objects(&rendered);
        let accepted = dry_run_apply(&rendered).await;
        assert_eq!(
            accepted.len(),
            expected.len(),
            "{what}: kubectl accepted {accepted:#?} of {} objects",
            expected.len()
        );
        for o in &expected {
            let kind = o["kind"].as_str().expect("kind").to_lowercase();
            let name = o["metadata"]["name"].as_str().expect("name");
            assert!(
                accepted.iter().any(|l| (l.starts_with(&format!("{kind}/"))
                    || l.starts_with(&format!("{kind}.")))
                    && l.contains(&format!("/{name} "))),
                "{what}: {kind} {name} was not accepted: {accepted:#?}"
            );
        }
    }
}

/// The chart's RBAC, applied for real, lets the service account do what
/// the controller does, and no more; checked by the apiserver's own
/// authorizer (`kubectl auth can-i --as`).
#[tokio::test]
async fn rbac_grants_the_controller_what_it_calls_and_no_more() {
    let client = support::client().await;
    // Installed so that kubectl's discovery knows the resources it is asked about.
    support::install_crd(&client, GROUP).await;
    support::install_crd(&client, SEALOS_GROUP).await;
    let release_ns = support::namespace(&client, "ke-chart-rbac").await;
    let watched = support::namespace(&client, "ke-chart-rbac-watched").await;
    let other = support::namespace(&client, "ke-chart-rbac-other").await;
    let rendered = render(
        "kube-endpoints",
        &release_ns,
        &[
            "--set",
            &format!("watchNamespaces[0]={watched}"),
            "--set",
            "groups[0]=khulnasoft-lab.github.io",
            "--set",
            "groups[1]=sealos.io",
            "--show-only",
            "templates/rbac.yaml",
            "--show-only",
            "templates/serviceaccount.yaml",
        ],
    );
    kubectl_apply("ke-chart-rbac", &rendered).await;
    let cp = support::control_plane();

    let sa = format!("system:serviceaccount:{release_ns}:kube-endpoints");
    // "resource/status" means the status subresource (kubectl's --subresource);
    // "leases.coordination.k8s.io/NAME" a named object.
    let can = |verb: &'static str, resource: &'static str, ns: String| {
        let sa = sa.clone();
        async move {
            let mut args = vec!["auth", "can-i", verb, "-n", &ns, "--as", &sa];
            match resource.split_once('/') {
                Some((r, sub @ ("status" | "finalizers"))) => {
                    args.extend([r, "--subresource", sub]);
                }
                _ => args.push(resource),
            }
            let out = cp.kubectl(&args).output().await.expect("kubectl runs");
            let answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
            assert!(
                answer == "yes" || answer == "no",
                "kubectl auth can-i {verb} {resource}: {answer} {}",
                String::from_utf8_lossy(&out.stderr)
            );
            answer == "yes"
        }
    };
    let allowed = [
        ("list", "clusterendpoints.khulnasoft-lab.github.io"),
        ("watch", "clusterendpoints.sealos.io"),
        ("patch", "clusterendpoints.khulnasoft-lab.github.io/status"),
        ("update", "clusterendpoints.sealos.io/finalizers"),
        ("watch", "services"),
        ("create", "services"),
        ("patch", "services"),
        ("patch", "endpoints"),
        ("delete", "endpoints"),
        ("list", "endpointslices.discovery.k8s.io"),
        ("patch", "endpointslices.discovery.k8s.io"),
        ("delete", "endpointslices.discovery.k8s.io"),
        ("create", "events.events.k8s.io"),
        ("patch", "events.events.k8s.io"),
    ];
    for (verb, resource) in allowed {
        assert!(
            can(verb, resource, watched.clone()).await,
            "the controller must be able to {verb} {resource} in a watched namespace"
        );
        assert!(
            !can(verb, resource, other.clone()).await,
            "{verb} {resource} leaks into a namespace that is not watched"
        );
    }
    for (verb, resource) in [
        ("delete", "services"),
        ("update", "clusterendpoints.khulnasoft-lab.github.io"),
        ("delete", "clusterendpoints.khulnasoft-lab.github.io"),
        ("get", "secrets"),
        ("list", "pods"),
        ("create", "leases.coordination.k8s.io"),
        ("list", "clusterendpoints.sealyun.com"),
    ] {
        assert!(
            !can(verb, resource, watched.clone()).await,
            "{verb} {resource} should not be granted"
        );
    }
    // Leader election: in the release namespace only, by name except create.
    assert!(can("create", "leases.coordination.k8s.io", release_ns.clone()).await);
    assert!(
        can(
            "update",
            "leases.coordination.k8s.io/kube-endpoints",
            release_ns.clone()
        )
        .await
    );
    assert!(
        !can(
            "update",
            "leases.coordination.k8s.io/kube-controller-manager",
            release_ns.clone()
        )
        .await,
        "other Leases in the release namespace must stay out of reach"
    );
    assert!(
        !can(
            "get",
            "leases.coordination.k8s.io/kube-endpoints",
            other.clone()
        )
        .await
    );
}

/// The real controller, started with the chart's arguments and acting as the
/// chart's service account (the admin kubeconfig impersonating it, so every
/// request is authorised by the chart's RBAC alone), leads, reconciles a
/// ClusterEndpoint to Healthy and writes all its objects without one error.
#[tokio::test]
async fn controller_runs_with_the_chart_rbac_and_args() {
    use k8s_openapi::api::coordination::v1::Lease;
    use kube_endpoints_api::Phase;

    let client = support::client().await;
    support::install_crd(&client, GROUP).await;
    let release_ns = support::namespace(&client, "ke-chart-run-system").await;
    let watched = support::namespace(&client, "ke-chart-run").await;
    let values = [
        "--set",
        &format!("watchNamespaces[0]={watched}"),
        "--set",
        "logFormat=text",
    ];
    let rendered = render("kube-endpoints", &release_ns, &values);
    let rbac: Vec<Value> = objects(&rendered)
        .into_iter()
        .filter(|o| {
            [
                "ServiceAccount",
                "Role",
                "RoleBinding",
                "ClusterRole",
                "ClusterRoleBinding",
            ]
            .contains(&o["kind"].as_str().unwrap_or_default())
        })
        .collect();
    let manifest = rbac
        .iter()
        .map(|o| serde_json::to_string(o).expect("JSON"))
        .collect::<Vec<_>>()
        .join("\n---\n");
    kubectl_apply("ke-chart-run", &manifest).await;
    let cp = support::control_plane();

    // The admin kubeconfig, impersonating the service account.
    let mut kubeconfig: Value = support::yaml_object(
        &std::fs::read_to_string(cp.kubeconfig_path()).expect("admin kubeconfig"),
    );
    let sa = format!("system:serviceaccount:{release_ns}:kube-endpoints");
    for user in kubeconfig["users"]
        .as_array_mut()
        .expect("kubeconfig users")
    {
        let user = user["user"].as_object_mut().expect("user entry");
        user.insert("as".into(), sa.clone().into());
        user.insert(
            "as-groups".into(),
            json!([
                "system:serviceaccounts",
                format!("system:serviceaccounts:{release_ns}"),
                "system:authenticated",
            ]),
        );
    }
    let kubeconfig_path =
        std::env::temp_dir().join(format!("ke-chart-run-kubeconfig-{}", std::process::id()));
    std::fs::write(
        &kubeconfig_path,
        kube_endpoints::yaml::to_string(&kubeconfig).expect("kubeconfig YAML"),
    )
    .expect("write kubeconfig");

    // The chart's arguments, with the metrics address moved to loopback.
    let deployment = one(&objects(&rendered), "Deployment").clone();
    let mut args = strings(&deployment["spec"]["template"]["spec"]["containers"][0]["args"]);
    assert_eq!(args[0], "run");
    assert!(args.contains(&format!("--namespace={watched}")));
    let metrics_port = support::free_port();
    for a in &mut args {
        if a.starts_with("--metrics-addr=") {
            *a = format!("--metrics-addr=127.0.0.1:{metrics_port}");
        }
    }
    let controller =
        ChartController::start(&args, &kubeconfig_path, &release_ns, metrics_port).await;

    // It takes the release's Lease.
    let leases: Api<Lease> = Api::namespaced(client.clone(), &release_ns);
    let holder = support::eventually("the controller to take the Lease", || async {
        let lease = leases.get_opt("kube-endpoints").await.ok().flatten()?;
        lease.spec?.holder_identity.filter(|h| !h.is_empty())
    })
    .await;
    assert!(!holder.is_empty());

    // A ClusterEndpoint with a static port (no probes: the hosts are never
    // contacted) is reconciled to Healthy, with every object written.
    let name = "chart-static";
    support::apply_yaml(
        &client,
        &watched,
        GROUP,
        &format!(
            "apiVersion: {GROUP}/v1beta1\nkind: ClusterEndpoint\nmetadata: {{name: {name}, namespace: {watched}}}\n\
             spec:\n  ports:\n  - {{name: db, port: 5432, targetPort: 5432, hosts: [198.18.200.1, 198.18.200.2]}}\n"
        ),
    )
    .await
    .expect("ClusterEndpoint applies");
    support::wait_phase(&client, &watched, GROUP, name, Phase::Healthy).await;
    assert!(support::service(&client, &watched, name).await.is_some());
    assert!(support::endpoints(&client, &watched, name).await.is_some());
    let readiness = support::slice_readiness(&client, &watched, name).await;
    assert_eq!(readiness.len(), 2, "{readiness:?}");
    assert!(readiness.values().all(|ready| *ready), "{readiness:?}");
    let errors = support::sum_metric(
        &controller.metrics().await,
        "kube_endpoints_reconcile_errors_total",
    );
    assert!(
        errors == 0.0,
        "reconcile errors under the chart's RBAC:\n{}",
        controller.log()
    );
    assert_eq!(
        support::sum_metric(&controller.metrics().await, "kube_endpoints_leader"),
        1.0,
        "{}",
        controller.log()
    );
    assert!(
        !controller.log().to_lowercase().contains("forbidden"),
        "the controller was denied something:\n{}",
        controller.log()
    );
}

/// `kube-endpoints` run as the Deployment would run it (same arguments, the
/// downward-API environment), with its stdout and stderr in a log file.
struct ChartController {
    _child: tokio::process::Child,
    metrics_port: u16,
    log: PathBuf,
}

impl ChartController {
    async fn start(
        args: &[String],
        kubeconfig: &Path,
        pod_namespace: &str,
        metrics_port: u16,
    ) -> Self {
        let log = std::env::temp_dir().join(format!("ke-chart-controller-{metrics_port}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_kube-endpoints"))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("KUBECONFIG", kubeconfig)
            .env("POD_NAME", "kube-endpoints-chart-test")
            .env("POD_NAMESPACE", pod_namespace)
            .env("RUST_LOG", "info,kube_endpoints=debug")
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .expect("kube-endpoints starts");
        let c = ChartController {
            _child: child,
            metrics_port,
            log,
        };
        let start = std::time::Instant::now();
        while c.get("/readyz").await.is_none_or(|b| b.trim() != "ok") {
            assert!(
                start.elapsed() < support::DEADLINE,
                "the controller did not become ready:\n{}",
                c.log()
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        c
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn metrics(&self) -> String {
        self.get("/metrics").await.unwrap_or_default()
    }

    async fn get(&self, path: &str) -> Option<String> {
        support::http_get(self.metrics_port, path).await
    }
}
