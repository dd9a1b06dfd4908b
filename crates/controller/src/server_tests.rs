use std::net::SocketAddr;

use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn start(limits: Limits) -> (SocketAddr, CancellationToken, Liveness) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let addr = listener.local_addr().expect("addr");
    let shutdown = CancellationToken::new();
    let liveness = Liveness::default();
    tokio::spawn(serve_with(
        listener,
        Arc::new(Metrics::new(false)),
        liveness.clone(),
        limits,
        shutdown.clone(),
    ));
    (addr, shutdown, liveness)
}

/// Status code and body of `GET path` (HTTP/1.0, so the server closes).
async fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.ok()?;
    let (head, body) = buf.split_once("\r\n\r\n")?;
    let code = head.split(' ').nth(1)?.parse().ok()?;
    Some((code, body.to_string()))
}

/// Whether the server closed `s` (EOF or reset) within `within`.
async fn closed_by_server(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(within, s.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test]
async fn idle_connections_are_closed_after_the_header_timeout() {
    let limits = Limits {
        header_read_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let (addr, shutdown, _) = start(limits).await;
    let mut idle = TcpStream::connect(addr).await.expect("connects");
    assert!(closed_by_server(&mut idle, Duration::from_secs(5)).await);
    // A half-sent request head is cut off too.
    let mut slow = TcpStream::connect(addr).await.expect("connects");
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost")
        .await
        .expect("writes");
    assert!(closed_by_server(&mut slow, Duration::from_secs(5)).await);
    shutdown.cancel();
}

#[tokio::test]
async fn connections_beyond_the_cap_are_closed_at_once_and_service_resumes() {
    let limits = Limits {
        header_read_timeout: Duration::from_secs(60),
        connection_timeout: Duration::from_secs(60),
        max_connections: 4,
    };
    let (addr, shutdown, _) = start(limits).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(addr).await.expect("connects"));
    }
    // Give the server time to accept the four before the fifth arrives.
    let mut extra = None;
    for _ in 0..50 {
        let mut s = TcpStream::connect(addr).await.expect("connects");
        if closed_by_server(&mut s, Duration::from_millis(200)).await {
            extra = Some(());
            break;
        }
        held.push(s);
    }
    assert!(
        extra.is_some(),
        "a connection beyond the cap was not closed"
    );
    assert_eq!(get(addr, "/metrics").await, None, "served beyond the cap");
    held.clear();
    let mut answered = None;
    for _ in 0..50 {
        answered = get(addr, "/metrics").await;
        if answered.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(answered.map(|(code, _)| code), Some(200));
    shutdown.cancel();
}

#[tokio::test]
async fn healthz_fails_when_a_part_stops_beating_or_fails() {
    let (addr, shutdown, liveness) = start(Limits::default()).await;
    assert_eq!(get(addr, "/healthz").await, Some((200, "ok\n".into())));
    liveness.beat("lease", Duration::from_millis(100));
    assert_eq!(get(addr, "/healthz").await.map(|r| r.0), Some(200));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (code, body) = get(addr, "/healthz").await.expect("answers");
    assert_eq!(code, 503);
    assert!(body.contains("lease: no progress"), "{body}");
    liveness.beat("lease", Duration::from_secs(60));
    assert_eq!(get(addr, "/healthz").await.map(|r| r.0), Some(200));
    liveness.fail("controllers", "did not stop");
    let (code, body) = get(addr, "/healthz").await.expect("answers");
    assert_eq!(code, 503);
    assert!(body.contains("controllers: did not stop"), "{body}");
    liveness.forget("controllers");
    assert_eq!(get(addr, "/healthz").await.map(|r| r.0), Some(200));
    shutdown.cancel();
}

#[tokio::test]
async fn readyz_follows_the_readiness_flag() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let addr = listener.local_addr().expect("addr");
    let metrics = Arc::new(Metrics::new(false));
    let shutdown = CancellationToken::new();
    tokio::spawn(serve(
        listener,
        metrics.clone(),
        Liveness::default(),
        shutdown.clone(),
    ));
    assert_eq!(get(addr, "/readyz").await.map(|r| r.0), Some(503));
    metrics.set_ready(true);
    assert_eq!(get(addr, "/readyz").await.map(|r| r.0), Some(200));
    metrics.set_ready(false);
    assert_eq!(get(addr, "/readyz").await.map(|r| r.0), Some(503));
    shutdown.cancel();
}
