//! TCP probes: connect (the kubelet's probe), optionally TLS, optionally
//! send bytes and expect bytes back (Redis `PING` → `+PONG`, an SMTP
//! banner, ...). What the host sends back is matched, never shown.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{Instant, timeout_at};

use super::net::{Close, Stream, classify, dial};
use super::tls::{Alpn, handshake};
use super::{Inner, MAX_READ, Report, TcpProbe, secs};

/// `tcp connect ADDR` for a plain connect probe, `tcp ADDR` otherwise.
pub(super) fn what(t: &TcpProbe, addr: SocketAddr) -> String {
    if is_plain(t) {
        format!("tcp connect {addr}")
    } else {
        format!("tcp {addr}")
    }
}

fn is_plain(t: &TcpProbe) -> bool {
    t.send.is_empty() && t.expect.is_none() && t.tls.is_none()
}

pub(super) async fn probe(
    inner: &Inner,
    t: &TcpProbe,
    addr: SocketAddr,
    timeout: Duration,
    deadline: Instant,
) -> Report {
    let what = what(t, addr);
    let tls = match inner.tls.for_probe(t.tls.as_ref(), Alpn::None, addr.ip()) {
        Ok(tls) => tls,
        Err(detail) => return Report::config(&what, &detail),
    };
    // A probe that sends and expects nothing back closes gracefully, so
    // that what it sent is delivered (see `net`).
    let close = if !t.send.is_empty() && t.expect.is_none() {
        Close::Graceful
    } else {
        Close::Reset
    };
    let tcp = match timeout_at(deadline, dial(addr, close)).await {
        // Dropping the stream closes it; a plain probe sends nothing.
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Report::problem(&format!("tcp connect {addr}"), classify(&e)),
        Err(_) => return Report::timed_out(&format!("tcp connect {addr}"), timeout),
    };
    let (mut stream, cert) = match tls {
        None => (Stream::Plain(tcp), None),
        Some((config, name)) => match timeout_at(deadline, handshake(config, name, tcp)).await {
            Ok(Ok(done)) => (Stream::Tls(Box::new(done.stream)), done.not_after),
            Ok(Err(e)) => return Report::problem(&what, classify(&e)),
            Err(_) => return Report::timed_out(&what, timeout),
        },
    };
    exchange(t, &mut stream, &what, timeout, deadline)
        .await
        .with_cert(cert)
}

async fn exchange(
    t: &TcpProbe,
    stream: &mut Stream,
    what: &str,
    timeout: Duration,
    deadline: Instant,
) -> Report {
    if !t.send.is_empty() {
        let send = async {
            stream.write_all(&t.send).await?;
            stream.flush().await
        };
        match timeout_at(deadline, send).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Report::problem(&format!("{what}: sending"), classify(&e)),
            Err(_) => return Report::timed_out(&format!("{what}: sending"), timeout),
        }
    }
    let Some(expect) = &t.expect else {
        if matches!(stream, Stream::Tls(_)) {
            // Say goodbye properly (close_notify) so a TLS server logs no
            // truncation; bounded by the deadline, and its failure is not
            // the host's problem once the exchange succeeded.
            let _ = timeout_at(deadline, stream.shutdown()).await;
        }
        return Report::success();
    };
    let mut buf = Vec::with_capacity(1024);
    let read = async {
        let mut chunk = [0u8; 2048];
        loop {
            if expect.matches(&buf) {
                return Ok(true);
            }
            if buf.len() >= MAX_READ {
                return Ok(false);
            }
            let room = (MAX_READ - buf.len()).min(chunk.len());
            let n = stream.read(&mut chunk[..room]).await?;
            if n == 0 {
                return Ok(false);
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    let not_received = |detail: &str| {
        Report::failure(
            "expect_mismatch",
            format!("{what}: expected reply not received{detail}"),
        )
    };
    match timeout_at(deadline, read).await {
        Ok(Ok(true)) => Report::success(),
        Ok(Ok(false)) if buf.len() >= MAX_READ => {
            not_received(&format!(" in the first {MAX_READ} bytes"))
        }
        Ok(Ok(false)) => not_received(" (connection closed)"),
        Ok(Err(e)) => {
            let e: std::io::Error = e;
            Report::problem(&format!("{what}: reading the reply"), classify(&e))
        }
        Err(_) => not_received(&format!(" within {}", secs(timeout))),
    }
}
