//! The test backend reports who answered, and `ke-client` reads it: for
//! every protocol, over IPv4 and IPv6, from the root namespace straight to
//! a test host (the data-plane tests do the same through kube-proxy).
//! Needs root (network namespaces).

use std::net::{IpAddr, SocketAddr};
use std::process::Command;

use kube_endpoints_testkit::netns::{BackendPorts, TestHost};
use kube_endpoints_testkit::node::{Attempt, Outcome};

const BACKEND: &str = env!("CARGO_BIN_EXE_ke-testbackend");
const CLIENT: &str = env!("CARGO_BIN_EXE_ke-client");

fn ask(proto: &str, target: SocketAddr, count: u32) -> Vec<Attempt> {
    let out = Command::new(CLIENT)
        .args([proto, &target.to_string(), "--count", &count.to_string()])
        .args(["--timeout-ms", "1000"])
        .output()
        .expect("ke-client runs");
    assert!(out.status.success(), "ke-client {proto} {target}: {out:?}");
    let attempts: Vec<Attempt> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| Attempt::parse(l).unwrap_or_else(|| panic!("unparsable line {l:?}")))
        .collect();
    assert_eq!(attempts.len(), count as usize);
    attempts
}

fn failure(a: &Attempt) -> Option<&str> {
    match &a.outcome {
        Outcome::Failed { kind, .. } => Some(kind.as_str()),
        Outcome::Answered(_) => None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_protocol_reports_the_address_it_was_reached_at() {
    let host = TestHost::create().await.expect("test host");
    let backend = host
        .start_backend_with(BackendPorts::one_each(7000, 8080, 5353, 9090), BACKEND)
        .await
        .expect("backend starts");
    for ip in [IpAddr::V4(host.ipv4()), IpAddr::V6(host.ipv6())] {
        for (proto, port) in [("tcp", 7000), ("http", 8080), ("udp", 5353), ("grpc", 9090)] {
            let attempts = ask(proto, SocketAddr::new(ip, port), 3);
            for a in &attempts {
                assert_eq!(a.answered_by(), Some(ip), "{proto} {ip}:{port}: {a:?}");
            }
        }
        let closed = ask("tcp", SocketAddr::new(ip, 7001), 1);
        assert_eq!(failure(&closed[0]), Some("refused"), "closed port {ip}");
    }

    // Unhealthy: gRPC answers NOT_SERVING (a failure naming the host), UDP
    // is silent, HTTP /whoami still says who it is.
    backend.set_healthy(false).expect("unhealthy");
    let ip = IpAddr::V4(host.ipv4());
    let grpc = ask("grpc", SocketAddr::new(ip, 9090), 1);
    assert_eq!(failure(&grpc[0]), Some("other"));
    let udp = ask("udp", SocketAddr::new(ip, 5353), 1);
    assert_eq!(failure(&udp[0]), Some("timeout"));
    let http = ask("http", SocketAddr::new(ip, 8080), 1);
    assert_eq!(http[0].answered_by(), Some(ip));
}
