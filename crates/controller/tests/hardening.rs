//! The supply chain, checked statically:
//!
//! - every base image in every Dockerfile is pinned by digest (the chart's
//!   `image.digest` and NetworkPolicy are checked in `chart_render.rs`);
//! - CI runs the cargo-deny gate against the policy in `deny.toml`.

mod support;

use support::repo_root;

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
