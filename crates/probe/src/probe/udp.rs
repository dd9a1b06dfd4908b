//! UDP probes: send one datagram on a connected socket and wait for a
//! (matching) reply. A connected socket receives only from the host, and an
//! ICMP port-unreachable surfaces as ECONNREFUSED on send or receive.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::{Instant, timeout_at};

use super::net::classify;
use super::{MAX_READ, Report, UdpProbe, secs};

pub(super) async fn probe(
    u: &UdpProbe,
    addr: SocketAddr,
    timeout: Duration,
    deadline: Instant,
) -> Report {
    let what = format!("udp {addr}");
    let local: SocketAddr = match addr {
        SocketAddr::V4(_) => (IpAddr::from([0u8; 4]), 0).into(),
        SocketAddr::V6(_) => (IpAddr::from([0u16; 8]), 0).into(),
    };
    // Opening a socket fails only for local reasons (descriptors, memory,
    // ports): never the host's fault.
    let socket = match UdpSocket::bind(local).await {
        Ok(s) => s,
        Err(e) => {
            let problem = classify(&e);
            return match problem.verdict {
                super::Verdict::LocalError => Report::problem(&what, problem),
                _ => Report::local(&what, "cannot open a socket"),
            };
        }
    };
    if let Err(e) = socket.connect(addr).await {
        return Report::problem(&what, classify(&e));
    }
    let mut matched_none = false;
    let exchange = async {
        socket.send(&u.data).await?;
        let mut buf = vec![0u8; MAX_READ];
        loop {
            let n = socket.recv(&mut buf).await?;
            // An empty datagram is not an answer; keep waiting.
            if n == 0 {
                continue;
            }
            match &u.expect {
                Some(expect) if !expect.matches(&buf[..n]) => matched_none = true,
                _ => return Ok::<(), std::io::Error>(()),
            }
        }
    };
    match timeout_at(deadline, exchange).await {
        Ok(Ok(())) => Report::success(),
        Ok(Err(e)) => Report::problem(&what, classify(&e)),
        Err(_) if matched_none => Report::failure(
            "expect_mismatch",
            format!(
                "{what}: expected reply not received within {}",
                secs(timeout)
            ),
        ),
        Err(_) => Report::failure(
            "timeout",
            format!("{what}: no reply within {}", secs(timeout)),
        ),
    }
}
