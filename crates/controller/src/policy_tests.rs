use super::*;
use crate::plan::plan;
use crate::testing::parse;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn net(s: &str) -> IpNet {
    s.parse().expect("test range")
}

/// A small test cluster, all in 198.18.0.0/15.
fn cluster() -> ClusterRanges {
    ranges([
        ("198.19.250.0/24", RangeKind::Service),
        ("198.19.64.0/24", pods_of("n1")),
        ("198.19.65.10/32", address_of("n1")),
        ("198.19.66.1/32", RangeKind::Apiserver),
        ("fd00:6b65:ffff::/112", RangeKind::Service),
    ])
}

/// Cluster ranges from (range, kind), inserted in this order.
fn ranges<const N: usize>(entries: [(&str, RangeKind); N]) -> ClusterRanges {
    let mut c = ClusterRanges::default();
    for (range, kind) in entries {
        c.insert(net(range), kind);
    }
    c
}

fn pods_of(node: &str) -> RangeKind {
    RangeKind::PodRange { node: node.into() }
}

fn address_of(node: &str) -> RangeKind {
    RangeKind::NodeAddress { node: node.into() }
}

fn message(host: &str, policy: &AddressPolicy) -> Option<String> {
    verdict(ip(host), policy, &cluster()).map(|d| d.message)
}

#[test]
fn the_cluster_ranges_are_denied_naming_the_range() {
    let p = AddressPolicy::default();
    assert_eq!(
        message("198.19.250.1", &p).as_deref(),
        Some(
            "198.19.250.1 is inside the Service range 198.19.250.0/24 (denied by the address policy)"
        )
    );
    assert_eq!(
        message("198.19.64.7", &p).as_deref(),
        Some(
            "198.19.64.7 is inside the pod range 198.19.64.0/24 of node n1 (denied by the address policy)"
        )
    );
    assert_eq!(
        message("198.19.65.10", &p).as_deref(),
        Some("198.19.65.10 is an address of node n1 (denied by the address policy)")
    );
    assert_eq!(
        message("198.19.66.1", &p).as_deref(),
        Some("198.19.66.1 is an address of kube-apiserver (denied by the address policy)")
    );
    assert!(message("fd00:6b65:ffff::9", &p).is_some_and(|m| m.contains("Service range")));
    // Next to them, and in no range: allowed.
    for host in [
        "198.19.65.11",
        "198.19.66.2",
        "198.18.0.2",
        "fd00:6b65:1::2",
    ] {
        assert_eq!(message(host, &p), None, "{host}");
    }
}

#[test]
fn the_metadata_addresses_are_always_denied() {
    let allow_all = AddressPolicy {
        allowed: vec![net("0.0.0.0/0"), net("::/0")],
        denied: vec![],
    };
    for (host, what) in [
        ("100.100.100.200", "Alibaba"),
        ("168.63.129.16", "Azure"),
        ("fd00:ec2::254", "AWS"),
    ] {
        for p in [&AddressPolicy::default(), &allow_all] {
            let m = verdict(ip(host), p, &ClusterRanges::default()).map(|d| d.message);
            assert!(
                m.as_deref().is_some_and(|m| m.contains(what)),
                "{host}: {m:?}"
            );
        }
    }
    assert_eq!(
        verdict(
            ip("100.100.100.201"),
            &AddressPolicy::default(),
            &ClusterRanges::default()
        ),
        None
    );
}

#[test]
fn denied_cidrs_win_over_allowed_cidrs_and_allowed_cidrs_confine() {
    let p = AddressPolicy {
        allowed: vec![net("198.18.0.0/16")],
        denied: vec![net("198.18.9.0/24")],
    };
    assert_eq!(
        message("198.18.9.1", &p).as_deref(),
        Some(
            "198.18.9.1 is inside 198.18.9.0/24, listed in --denied-cidrs (denied by the address policy)"
        )
    );
    assert_eq!(
        message("198.18.8.1", &p),
        None,
        "inside the allowed range, outside the denied one"
    );
    assert_eq!(
        message("203.0.113.5", &p).as_deref(),
        Some(
            "203.0.113.5 is outside the allowed ranges 198.18.0.0/16 (--allowed-cidrs) (denied by the address policy)"
        )
    );
    // An allow never re-admits a cluster range.
    let allow_cluster = AddressPolicy {
        allowed: vec![net("198.19.0.0/16")],
        denied: vec![],
    };
    assert!(message("198.19.250.1", &allow_cluster).is_some());
}

#[test]
fn nat64_and_6to4_addresses_are_judged_by_the_ipv4_they_embed() {
    let p = AddressPolicy::default();
    // 64:ff9b::c613:fa01 is 198.19.250.1; 2002:c613:fa01:: too.
    for host in ["64:ff9b::c613:fa01", "2002:c613:fa01::1"] {
        assert_eq!(
            message(host, &p),
            Some(format!(
                "{host} embeds 198.19.250.1, which is inside the Service range 198.19.250.0/24 (denied by the address policy)"
            )),
        );
    }
    assert!(message("64:ff9b::6464:64c8", &p).is_some_and(|m| m.contains("Alibaba")));
    assert_eq!(message("64:ff9b::c612:2", &p), None, "embeds 198.18.0.2");
}

#[test]
fn the_most_specific_range_names_the_denial_and_priority_breaks_ties() {
    let mut c = ranges([
        ("198.19.0.0/16", RangeKind::Service),
        ("198.19.1.0/24", pods_of("n2")),
    ]);
    // One address claimed three times: the apiserver's claim wins the tie.
    for kind in [address_of("n2"), RangeKind::Apiserver, address_of("n3")] {
        c.insert(net("198.19.1.5/32"), kind);
    }
    let kind = |h| c.lookup(ip(h)).map(|(n, k)| (n.to_string(), k.clone()));
    assert_eq!(
        kind("198.19.1.5"),
        Some(("198.19.1.5/32".into(), RangeKind::Apiserver))
    );
    assert_eq!(
        kind("198.19.1.6"),
        Some(("198.19.1.0/24".into(), pods_of("n2")))
    );
    assert_eq!(
        kind("198.19.2.6"),
        Some(("198.19.0.0/16".into(), RangeKind::Service))
    );
    assert_eq!(kind("198.18.2.6"), None);
    // Inserting an untruncated range works as its network.
    c.insert(net("198.18.7.9/24"), RangeKind::Service);
    assert!(c.lookup(ip("198.18.7.1")).is_some());
}

#[test]
fn restrict_moves_denied_hosts_out_of_the_plan_and_its_targets() {
    let spec = parse(
        "apiVersion: khulnasoft-lab.github.io/v1beta1\nkind: ClusterEndpoint\nmetadata: {name: db}\nspec:\n  ports:\n  - {name: pg, port: 5432, targetPort: 5432, hosts: [198.18.0.2, 198.19.250.1, 100.100.100.200], tcpSocket: {enable: true}, additionalTargetPorts: [5433]}\n",
    )
    .spec;
    let planned = plan("db", &spec).expect("valid");
    assert_eq!(planned.target_count(), 6);
    let restricted = restrict(planned, &AddressPolicy::default(), &cluster());
    assert_eq!(restricted.target_count(), 6, "denied hosts still count");
    for port in &restricted.ports {
        assert_eq!(port.hosts, [ip("198.18.0.2")], "{}", port.name);
        let denied: Vec<IpAddr> = port.denied.iter().map(|d| d.host).collect();
        assert_eq!(denied, [ip("100.100.100.200"), ip("198.19.250.1")]);
    }
    let targets: Vec<IpAddr> = restricted.targets().keys().map(|t| t.host).collect();
    assert_eq!(targets, [ip("198.18.0.2"), ip("198.18.0.2")]);
}

#[test]
fn a_change_of_ranges_affects_only_objects_whose_verdicts_change() {
    let p = AddressPolicy::default();
    let old = cluster();
    let mut new = cluster();
    new.insert(net("198.18.40.0/24"), pods_of("n9"));
    let inside = [ip("198.18.0.2"), ip("198.18.40.3")];
    let outside = [ip("198.18.0.2"), ip("198.19.250.1")];
    assert!(affected(&inside, &p, &old, &new));
    assert!(!affected(&outside, &p, &old, &new));
    assert!(affected(&inside, &p, &new, &old), "and back");
}

#[test]
fn hosts_of_reads_both_host_lists() {
    let spec = parse(crate::testing::LEGACY).spec;
    let hosts = hosts_of(&spec);
    assert_eq!(hosts.into_iter().collect::<Vec<_>>(), [ip("10.33.40.151")]);
}

#[test]
fn every_metadata_range_parses() {
    assert_eq!(metadata().len(), METADATA.len());
}
