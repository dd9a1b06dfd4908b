//! The Helm chart (charts/kube-endpoints) as the real `helm` renders it
//! (built from its Go module by scripts/build-helm.sh, or `$KE_HELM_BIN`).

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;

use serde_json::Value;

use super::repo_root;

/// `$KE_HELM_BIN`, or the helm that scripts/build-helm.sh builds (once, into
/// the cache).
pub fn helm_bin() -> PathBuf {
    static HELM: OnceLock<PathBuf> = OnceLock::new();
    HELM.get_or_init(|| {
        if let Some(bin) = std::env::var_os("KE_HELM_BIN") {
            return PathBuf::from(bin);
        }
        let script = repo_root().join("scripts/build-helm.sh");
        let out = std::process::Command::new(&script)
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "{} failed: {}",
            script.display(),
            out.status
        );
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    })
    .clone()
}

pub struct Output {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// `helm args…`, reading no repositories, plugins or registry config from
/// the host.
pub fn helm(args: &[&str]) -> Output {
    let tmp = std::env::temp_dir();
    let out = std::process::Command::new(helm_bin())
        .args(args)
        .env("HELM_CACHE_HOME", tmp.join("ke-helm-cache"))
        .env("HELM_CONFIG_HOME", tmp.join("ke-helm-config"))
        .env("HELM_DATA_HOME", tmp.join("ke-helm-data"))
        .output()
        .expect("helm runs");
    Output {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub fn chart_dir() -> PathBuf {
    repo_root().join("charts/kube-endpoints")
}

/// Values with every optional feature on (also used by chart-testing).
pub fn all_features() -> PathBuf {
    chart_dir().join("ci/all-features-values.yaml")
}

/// `helm template` of the chart; panics with helm's message on failure.
pub fn render(release: &str, namespace: &str, extra: &[&str]) -> String {
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

pub fn render_all_features(release: &str, namespace: &str, extra: &[&str]) -> String {
    let values = all_features();
    let mut args = vec!["-f", values.to_str().expect("UTF-8 path")];
    args.extend_from_slice(extra);
    render(release, namespace, &args)
}

/// The rendered documents as JSON values (empty documents dropped).
pub fn objects(rendered: &str) -> Vec<Value> {
    kube_endpoints::yaml::documents(rendered).expect("rendered YAML")
}

pub fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

pub fn one<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    let found = of_kind(objects, kind);
    assert_eq!(found.len(), 1, "expected exactly one {kind}");
    found[0]
}

pub fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

pub fn rules(objects: &[Value]) -> Vec<(String, &Value)> {
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
