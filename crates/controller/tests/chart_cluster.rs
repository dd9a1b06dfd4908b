//! The Helm chart against the real kube-apiserver of the end-to-end suite
//! (needs the control plane, root for nothing but the shared fixtures):
//!
//! - every rendered object, with default values and with every optional
//!   feature on, is accepted by the apiserver (server-side dry-run);
//! - the chart's RBAC, applied for real, grants the service account what the
//!   controller calls and no more (`kubectl auth can-i`);
//! - the controller, run with the chart's arguments as the chart's service
//!   account, reconciles an object without one error.

mod support;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::Api;
use kube_endpoints_api::{GROUP, SEALOS_GROUP};
use kube_endpoints_testkit::controller::Launch;
use serde_json::{Value, json};
use support::Controller;
use support::chart::*;

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

// ---------------------------------------------------------------- apiserver

/// Stand-ins for the Prometheus Operator's CRDs: the same names and scope,
/// any content (the real schemas are not ours to pin).
async fn install_monitoring_crds(client: &kube::Client) {
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
        kube_endpoints_testkit::crd::install_and_wait(client, &crd, "chart-test")
            .await
            .expect("stand-in CRD is installed and served");
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
        (
            "default values",
            render("kube-endpoints-dry", &release_ns, &[]),
        ),
        (
            "every optional feature",
            render_all_features("kube-endpoints-dry", &release_ns, &[]),
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
        "kube-endpoints-rbac",
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

    let sa = format!("system:serviceaccount:{release_ns}:kube-endpoints-rbac");
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
        // Probe credentials: listed and watched (by label), in watched
        // namespaces only.
        ("list", "secrets"),
        ("watch", "secrets"),
        ("list", "configmaps"),
        ("watch", "configmaps"),
    ];
    let (watched, other, release) = (watched.as_str(), other.as_str(), release_ns.as_str());
    // (verb, resource, namespace, granted): every answer kubectl must give.
    let mut expected: Vec<(&str, &str, &str, bool)> = Vec::new();
    for (verb, resource) in allowed {
        // Needed in a watched namespace; a leak anywhere else.
        expected.extend([
            (verb, resource, watched, true),
            (verb, resource, other, false),
        ]);
    }
    for (verb, resource) in [
        ("delete", "services"),
        ("update", "clusterendpoints.khulnasoft-lab.github.io"),
        ("delete", "clusterendpoints.khulnasoft-lab.github.io"),
        ("get", "secrets"),
        ("create", "secrets"),
        ("update", "configmaps"),
        ("list", "pods"),
        ("create", "leases.coordination.k8s.io"),
        ("list", "clusterendpoints.sealyun.com"),
    ] {
        expected.push((verb, resource, watched, false));
    }
    let (system, cidrs) = ("kube-system", "servicecidrs.networking.k8s.io");
    let apiserver_slice = "endpointslices.discovery.k8s.io/kubernetes";
    let own_lease = "leases.coordination.k8s.io/kube-endpoints-rbac";
    let other_lease = "leases.coordination.k8s.io/kube-controller-manager";
    expected.extend([
        // The address policy's discovery: read-only, nodes and ServiceCIDRs
        // cluster-wide, kube-apiserver's endpoints by name in `default`.
        ("list", "nodes", system, true),
        ("watch", "nodes", system, true),
        ("list", cidrs, system, true),
        ("watch", cidrs, system, true),
        ("get", "endpoints/kubernetes", "default", true),
        ("get", apiserver_slice, "default", true),
        ("patch", "nodes", system, false),
        ("delete", "nodes", system, false),
        ("create", cidrs, system, false),
        ("get", "endpoints/other", "default", false),
        ("patch", "endpoints/kubernetes", "default", false),
        // Leader election: in the release namespace only, by name except
        // create; other Leases in the release namespace stay out of reach.
        ("create", "leases.coordination.k8s.io", release, true),
        ("update", own_lease, release, true),
        ("update", other_lease, release, false),
        ("get", own_lease, other, false),
    ]);
    for (verb, resource, ns, granted) in expected {
        let must_be = if granted { "granted" } else { "refused" };
        assert_eq!(
            can(verb, resource, ns.to_string()).await,
            granted,
            "{verb} {resource} in {ns} must be {must_be}"
        );
    }
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
    let rendered = render("kube-endpoints-run", &release_ns, &values);
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
    let sa = format!("system:serviceaccount:{release_ns}:kube-endpoints-run");
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
    let controller = start_as_deployed(&args, &kubeconfig_path, &release_ns, metrics_port).await;

    // It takes the release's Lease.
    let leases: Api<Lease> = Api::namespaced(client.clone(), &release_ns);
    let holder = support::eventually("the controller to take the Lease", || async {
        let lease = leases.get_opt("kube-endpoints-run").await.ok().flatten()?;
        lease.spec?.holder_identity.filter(|h| !h.is_empty())
    })
    .await;
    assert!(!holder.is_empty());

    // A ClusterEndpoint with a static port (no probes: the hosts are never
    // contacted) is reconciled to Healthy, with every object written.
    let name = "chart-static";
    support::must_apply(
        &client,
        &watched,
        GROUP,
        &format!(
            "apiVersion: {GROUP}/v1beta1\nkind: ClusterEndpoint\nmetadata: {{name: {name}, namespace: {watched}}}\n\
             spec:\n  ports:\n  - {{name: db, port: 5432, targetPort: 5432, hosts: [198.18.200.1, 198.18.200.2]}}\n"
        ),
    ).await;
    support::wait_phase(&client, &watched, GROUP, name, Phase::Healthy).await;
    assert!(support::service(&client, &watched, name).await.is_some());
    assert!(support::endpoints(&client, &watched, name).await.is_some());
    let readiness = support::slice_readiness(&client, &watched, name).await;
    assert_eq!(readiness.len(), 2, "{readiness:?}");
    assert!(readiness.values().all(|ready| *ready), "{readiness:?}");
    let errors = controller
        .metric("kube_endpoints_reconcile_errors_total")
        .await;
    assert!(
        errors == 0.0,
        "reconcile errors under the chart's RBAC:\n{}",
        controller.log()
    );
    assert_eq!(
        controller.metric("kube_endpoints_leader").await,
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

/// `kube-endpoints` run as the Deployment would run it: the same arguments,
/// the downward-API environment and nothing else from ours.
async fn start_as_deployed(
    args: &[String],
    kubeconfig: &std::path::Path,
    pod_namespace: &str,
    metrics_port: u16,
) -> Controller {
    let mut command = vec![env!("CARGO_BIN_EXE_kube-endpoints").to_string()];
    command.extend_from_slice(args);
    let log = std::env::temp_dir().join(format!("ke-chart-controller-{metrics_port}.log"));
    let mut launch = Launch::new(command, metrics_port, log);
    launch.clear_env = true;
    launch.env = [
        ("KUBECONFIG", kubeconfig.display().to_string()),
        ("POD_NAME", "kube-endpoints-chart-test".into()),
        ("POD_NAMESPACE", pod_namespace.into()),
        ("RUST_LOG", "info,kube_endpoints=debug".into()),
    ]
    .map(|(k, v)| (k.to_string(), v))
    .into();
    launch.ready_timeout = support::DEADLINE;
    Controller::start(launch)
        .await
        .expect("the controller starts as deployed")
}
