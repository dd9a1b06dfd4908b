//! What the project ships, checked statically:
//!
//! - the chart's NetworkPolicy admits only the configured scrapers, and only
//!   to the metrics port (rendered with the real `helm`; the chart tests
//!   also lint it and dry-run it against kube-apiserver);
//! - every base image in every Dockerfile is pinned by digest, and the chart
//!   can pin the controller's image by digest;
//! - CI runs the cargo-deny gate against the policy in `deny.toml`.

mod support;

use serde_json::{Value, json};
use support::{render_chart, repo_root};

fn network_policies(extra: &[&str]) -> Vec<Value> {
    render_chart("kube-endpoints", "ke-system", extra)
        .into_iter()
        .filter(|o| o["kind"] == "NetworkPolicy")
        .collect()
}

#[test]
fn the_network_policy_admits_only_the_monitoring_namespace_to_the_metrics_port() {
    let objects = render_chart("kube-endpoints", "ke-system", &[]);
    let policies: Vec<&Value> = objects
        .iter()
        .filter(|o| o["kind"] == "NetworkPolicy")
        .collect();
    assert_eq!(policies.len(), 1, "on by default");
    let policy = policies[0];
    assert_eq!(policy["metadata"]["namespace"], "ke-system");
    // It selects exactly the controller's pods...
    let deployment = objects
        .iter()
        .find(|o| o["kind"] == "Deployment")
        .expect("deployment");
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
    let policies = network_policies(&[
        "--set",
        "networkPolicy.metrics.namespaceSelector.matchLabels.team=observability",
        "--set",
        "networkPolicy.metrics.podSelector.matchLabels.app\\.kubernetes\\.io/name=prometheus",
        "--set",
        "networkPolicy.extraIngress[0].from[0].ipBlock.cidr=198.18.0.0/15",
        "--set",
        "networkPolicy.extraIngress[0].ports[0].port=metrics",
    ]);
    assert_eq!(policies.len(), 1);
    let ingress = policies[0]["spec"]["ingress"].as_array().expect("ingress");
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
    assert!(network_policies(&["--set", "networkPolicy.enabled=false"]).is_empty());
}

#[test]
fn the_chart_can_pin_the_controller_image_by_digest() {
    let image = |extra: &[&str]| -> String {
        render_chart("kube-endpoints", "ke-system", extra)
            .into_iter()
            .find(|o| o["kind"] == "Deployment")
            .and_then(|d| {
                d["spec"]["template"]["spec"]["containers"][0]["image"]
                    .as_str()
                    .map(String::from)
            })
            .expect("the Deployment's image")
    };
    let digest = format!("sha256:{}", "0123456789abcdef".repeat(4));
    let pinned = image(&["--set", &format!("image.digest={digest}")]);
    assert!(pinned.ends_with(&format!("@{digest}")), "{pinned}");
    assert!(!image(&[]).contains('@'));
    // Anything but a sha256 digest is refused by the values schema.
    let chart = repo_root().join("charts/kube-endpoints");
    let out = support::helm_command()
        .args(["template", "t"])
        .arg(&chart)
        .args(["--set", "image.digest=latest"])
        .output()
        .expect("helm runs");
    assert!(!out.status.success(), "a tag was accepted as a digest");
    assert!(String::from_utf8_lossy(&out.stderr).contains("schema"));
}

/// `FROM` lines whose image is not pinned by an `@sha256:` digest.
fn unpinned_from_lines(dockerfile: &str) -> Vec<String> {
    dockerfile
        .lines()
        .map(str::trim)
        .filter(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|w| w.eq_ignore_ascii_case("FROM"))
        })
        .filter(|l| {
            // FROM [--platform=...] image [AS name]
            let image = l
                .split_whitespace()
                .skip(1)
                .find(|w| !w.starts_with("--"))
                .unwrap_or_default();
            let pinned = image.split_once("@sha256:").is_some_and(|(_, digest)| {
                digest.len() == 64
                    && digest
                        .chars()
                        .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
            });
            !pinned
        })
        .map(String::from)
        .collect()
}

#[test]
fn the_pin_check_catches_tags_and_malformed_digests() {
    let digest = "a".repeat(64);
    let text = format!(
        "FROM rust:1-bookworm AS builder\nRUN true\nfrom --platform=$BUILDPLATFORM alpine@sha256:{digest}\nFROM scratch@sha256:abc\nFROM x@sha256:{}\n",
        "A".repeat(64)
    );
    assert_eq!(
        unpinned_from_lines(&text),
        vec![
            "FROM rust:1-bookworm AS builder".to_string(),
            "FROM scratch@sha256:abc".to_string(),
            format!("FROM x@sha256:{}", "A".repeat(64)),
        ]
    );
}

/// Every `Dockerfile` or `*.Dockerfile` in the repository (outside target/).
fn dockerfiles(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if !matches!(name.as_str(), "target" | ".git" | "node_modules") {
                dockerfiles(&path, out);
            }
        } else if name == "Dockerfile" || name.ends_with(".Dockerfile") {
            out.push(path);
        }
    }
}

#[test]
fn every_base_image_is_pinned_by_digest() {
    let mut files = Vec::new();
    dockerfiles(&repo_root(), &mut files);
    assert!(
        files.iter().any(|f| f.ends_with("Dockerfile")),
        "the image's Dockerfile was not found"
    );
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable");
        assert!(
            text.lines().any(|l| l.trim_start().starts_with("FROM")),
            "{} has no FROM",
            file.display()
        );
        let unpinned = unpinned_from_lines(&text);
        assert!(
            unpinned.is_empty(),
            "{}: base images must be pinned by digest (IMAGE:TAG@sha256:...): {unpinned:#?}",
            file.display()
        );
    }
}

#[test]
fn ci_runs_the_cargo_deny_gate_offline() {
    let test_sh = std::fs::read_to_string(repo_root().join("scripts/test.sh")).expect("test.sh");
    assert!(
        test_sh
            .lines()
            .any(|l| l.trim_start().starts_with("cargo deny --frozen check")
                && ["licenses", "bans", "sources"]
                    .iter()
                    .all(|c| l.contains(c))),
        "scripts/test.sh must run `cargo deny --frozen check ... licenses bans sources`"
    );
    let deny = std::fs::read_to_string(repo_root().join("deny.toml")).expect("deny.toml");
    for section in ["[licenses]", "[bans]", "[sources]"] {
        assert!(deny.contains(section), "deny.toml lacks {section}");
    }
}
