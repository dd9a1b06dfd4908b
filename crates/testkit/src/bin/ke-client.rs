//! A plain client process for the data-plane tests: run inside a node's
//! network namespace (`ip netns exec`), it connects to an address (a
//! Service's ClusterIP and port), asks the `ke-testbackend` that answers who
//! it is, and prints one line per attempt:
//!
//! ```text
//! <seq> <unix time in ms> ok <address the backend was reached at>
//! <seq> <unix time in ms> error <refused|rejected|timeout|reset|unreachable|other> <message>
//! ```
//!
//! Every attempt is a new connection (a new socket for UDP), so that
//! kube-proxy picks a backend for each. `--count 0` repeats until killed.
//! Protocols: `tcp` (the backend writes its address), `http` (`GET
//! /whoami`, or `--path`; the body of a 200 answer), `udp` (datagram
//! `whoami`), `grpc` (`grpc.health.v1.Health/Check`, the
//! `x-backend-address` response header).

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Parser, ValueEnum};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Proto {
    Tcp,
    Http,
    Udp,
    Grpc,
}

#[derive(Parser, Debug)]
#[command(about = "Asks a kube-endpoints test backend who it is, once per new connection")]
struct Args {
    proto: Proto,
    /// `IP:PORT` (`[IPv6]:PORT`).
    target: SocketAddr,
    /// Attempts; 0 repeats until killed.
    #[arg(long, default_value_t = 1)]
    count: u64,
    /// Pause between the start of two attempts.
    #[arg(long, default_value_t = 0)]
    interval_ms: u64,
    /// Time limit of one attempt.
    #[arg(long, default_value_t = 2000)]
    timeout_ms: u64,
    /// HTTP path.
    #[arg(long, default_value = "/whoami")]
    path: String,
    /// UDP: the local port of every attempt's socket (0: an ephemeral one).
    #[arg(long, default_value_t = 0)]
    udp_source_port: u16,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = Args::parse();
    let timeout = Duration::from_millis(args.timeout_ms);
    let interval = Duration::from_millis(args.interval_ms);
    let mut seq = 0u64;
    loop {
        let started = tokio::time::Instant::now();
        let at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let outcome = match tokio::time::timeout(timeout, attempt(&args)).await {
            Ok(r) => r,
            Err(_) => Err(Failure::new(
                "timeout",
                format!("no answer within {timeout:?}"),
            )),
        };
        let line = match outcome {
            Ok(who) => format!("{seq} {at} ok {who}"),
            Err(f) => format!("{seq} {at} error {} {}", f.kind, f.message),
        };
        let mut out = std::io::stdout().lock();
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            // Whoever reads us is gone.
            return;
        }
        drop(out);
        seq += 1;
        if args.count != 0 && seq >= args.count {
            return;
        }
        tokio::time::sleep_until(started + interval).await;
    }
}

struct Failure {
    kind: &'static str,
    message: String,
}

impl Failure {
    fn new(kind: &'static str, message: String) -> Failure {
        Failure {
            kind,
            message: message.replace('\n', " "),
        }
    }

    fn io(what: &str, e: &std::io::Error) -> Failure {
        use std::io::ErrorKind;
        let kind = match e.kind() {
            ErrorKind::ConnectionRefused => "refused",
            ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted => "reset",
            ErrorKind::TimedOut => "timeout",
            ErrorKind::HostUnreachable | ErrorKind::NetworkUnreachable => "unreachable",
            // EPERM: a firewall rule of this machine rejected the packet on
            // its way out (kube-proxy's reject of a Service without
            // endpoints, seen by a client on the node itself).
            ErrorKind::PermissionDenied => "rejected",
            _ => "other",
        };
        Failure::new(kind, format!("{what}: {e}"))
    }
}

async fn attempt(args: &Args) -> Result<String, Failure> {
    match args.proto {
        Proto::Tcp => tcp(args.target).await,
        Proto::Http => http(args.target, &args.path).await,
        Proto::Udp => udp(args.target, args.udp_source_port).await,
        Proto::Grpc => grpc(args.target).await,
    }
}

fn first_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// One TCP connection: send `request` (if any), read until the backend
/// closes.
async fn exchange(target: SocketAddr, request: Option<&[u8]>) -> Result<Vec<u8>, Failure> {
    let mut stream = tokio::net::TcpStream::connect(target)
        .await
        .map_err(|e| Failure::io("connect", &e))?;
    if let Some(request) = request {
        stream
            .write_all(request)
            .await
            .map_err(|e| Failure::io("write", &e))?;
    }
    let mut buf = Vec::new();
    stream
        .read_to_end(&mut buf)
        .await
        .map_err(|e| Failure::io("read", &e))?;
    Ok(buf)
}

async fn tcp(target: SocketAddr) -> Result<String, Failure> {
    let who = first_line(&exchange(target, None).await?);
    if who.is_empty() {
        return Err(Failure::new(
            "other",
            "the connection closed without an address".into(),
        ));
    }
    Ok(who)
}

async fn http(target: SocketAddr, path: &str) -> Result<String, Failure> {
    let request = format!("GET {path} HTTP/1.0\r\nHost: {target}\r\n\r\n");
    let buf = exchange(target, Some(request.as_bytes())).await?;
    let text = String::from_utf8_lossy(&buf);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return Err(Failure::new("other", format!("not HTTP: {text:?}")));
    };
    let status = head.split(' ').nth(1).unwrap_or_default();
    if status != "200" {
        return Err(Failure::new(
            "other",
            format!("HTTP {status}: {}", body.trim()),
        ));
    }
    Ok(first_line(body.as_bytes()))
}

async fn udp(target: SocketAddr, source_port: u16) -> Result<String, Failure> {
    let any: std::net::IpAddr = if target.is_ipv4() {
        std::net::Ipv4Addr::UNSPECIFIED.into()
    } else {
        std::net::Ipv6Addr::UNSPECIFIED.into()
    };
    let bind = SocketAddr::new(any, source_port);
    let socket = tokio::net::UdpSocket::bind(bind)
        .await
        .map_err(|e| Failure::io("bind", &e))?;
    // Connected: an ICMP port-unreachable comes back as ECONNREFUSED.
    socket
        .connect(target)
        .await
        .map_err(|e| Failure::io("connect", &e))?;
    socket
        .send(b"whoami")
        .await
        .map_err(|e| Failure::io("send", &e))?;
    let mut buf = vec![0u8; 1500];
    let n = socket
        .recv(&mut buf)
        .await
        .map_err(|e| Failure::io("recv", &e))?;
    Ok(first_line(&buf[..n]))
}

async fn grpc(target: SocketAddr) -> Result<String, Failure> {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{target}"))
        .map_err(|e| Failure::new("other", format!("endpoint: {e}")))?;
    let channel = endpoint.connect().await.map_err(|e| {
        // tonic wraps the connect error; find the io::Error inside.
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(s) = source {
            if let Some(io) = s.downcast_ref::<std::io::Error>() {
                return Failure::io("connect", io);
            }
            source = s.source();
        }
        Failure::new("other", format!("connect: {e}"))
    })?;
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map_err(|s| Failure::new("other", format!("Check: {s}")))?;
    let who = response
        .metadata()
        .get("x-backend-address")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .ok_or_else(|| Failure::new("other", "no x-backend-address header".into()))?;
    let status = response.into_inner().status;
    // SERVING = 1: an unhealthy backend that still answers is reported too.
    if status != 1 {
        return Err(Failure::new(
            "other",
            format!("{who} answered status {status} (not SERVING)"),
        ));
    }
    Ok(who)
}
