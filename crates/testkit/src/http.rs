//! Plain HTTP on loopback, for the endpoints a controller process serves
//! (`/metrics`, `/readyz`), and a free port to serve them on.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long one request may take before it counts as unanswered.
const TIMEOUT: Duration = Duration::from_secs(10);

/// `GET path` on 127.0.0.1:`port` over HTTP/1.0: the body of a 200 answer,
/// or `None` (refused, another status, no answer within 10 s).
pub async fn get(port: u16, path: &str) -> Option<String> {
    let request = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
            .await
            .ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.ok()?;
        let text = String::from_utf8_lossy(&buf);
        let (head, body) = text.split_once("\r\n\r\n")?;
        let ok = head
            .lines()
            .next()
            .is_some_and(|l| l.split_whitespace().nth(1) == Some("200"));
        ok.then(|| body.to_string())
    };
    tokio::time::timeout(TIMEOUT, request).await.ok().flatten()
}

/// A TCP port on 127.0.0.1 that nothing listens on right now.
pub fn free_port() -> std::io::Result<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
}

/// Sum of a Prometheus counter or gauge over all its label sets in an
/// exposition text.
pub fn sum_metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
