//! Each prober against real servers started on 127.0.0.1 / ::1 by the test.
//! Durations are measured here, not taken from `Outcome::latency`, so a
//! prober that misreports its own latency cannot pass.

use std::convert::Infallible;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpSocket, UdpSocket};

use super::*;

const T: Duration = Duration::from_millis(800);
/// Scheduling slack allowed past a timeout on a shared, busy machine.
const MARGIN: Duration = Duration::from_millis(500);
const BODY_MARKER: &str = "SECRET-BODY-MARKER";

fn prober() -> Prober {
    Prober::new("kube-endpoints/test").expect("prober")
}

fn get(path: &str) -> HttpGet {
    HttpGet {
        path: path.into(),
        ..HttpGet::default()
    }
}

fn http(path: &str) -> Probe {
    Probe::Http(get(path))
}

fn with_headers(path: &str, headers: &[(&str, &str)]) -> Probe {
    Probe::Http(HttpGet {
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        ..get(path)
    })
}

/// Probe and measure from the outside.
/// `o` is a failure saying `message`.
fn assert_failure(o: &Outcome, message: impl AsRef<str>) {
    assert_eq!(
        (o.verdict, o.message.as_str()),
        (Verdict::Failure, message.as_ref())
    );
}

/// A TCP listener on `addr` (port 0: any free port) and its address.
async fn bound(addr: &str) -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind(addr).await.expect("bind");
    let local = l.local_addr().expect("addr");
    (l, local)
}

async fn timed(probe: &Probe, addr: SocketAddr, timeout: Duration) -> (Outcome, Duration) {
    let start = std::time::Instant::now();
    let outcome = prober().probe(probe, addr, timeout).await;
    (outcome, start.elapsed())
}

type Seen = Arc<Mutex<Vec<(String, hyper::HeaderMap)>>>;
type Body = BoxBody<Bytes, Infallible>;

fn paths(seen: &Seen) -> Vec<String> {
    seen.lock()
        .expect("lock")
        .iter()
        .map(|(p, _)| p.clone())
        .collect()
}

fn header(seen: &Seen, i: usize, name: &str) -> Vec<String> {
    seen.lock().expect("lock")[i]
        .1
        .get_all(name)
        .iter()
        .map(|v| v.to_str().expect("ascii").to_string())
        .collect()
}

async fn route(path: &str, port: u16) -> Response<Body> {
    let full = |status: u16, location: Option<String>| {
        // Every body is larger than the 10 KiB the prober reads, and
        // carries a marker that must never reach a message.
        let body = format!("{BODY_MARKER} {}", "x".repeat(20_000));
        let mut resp = Response::new(Full::new(Bytes::from(body)).boxed());
        *resp.status_mut() = StatusCode::from_u16(status).expect("status");
        if let Some(l) = location {
            resp.headers_mut()
                .insert("location", l.parse().expect("location"));
        }
        resp
    };
    if let Some(n) = path.strip_prefix("/r/").and_then(|n| n.parse::<u32>().ok()) {
        // A chain of n same-host redirects ending in 200.
        return match n {
            0 => full(200, None),
            n => full(302, Some(format!("/r/{}", n - 1))),
        };
    }
    match path {
        "/ok" | "/healthz" => full(200, None),
        "/moved" => full(301, Some("/healthz".into())),
        "/away" => full(302, Some("http://off-host.invalid/".into())),
        "/loop" => full(302, Some(format!("http://127.0.0.1:{port}/loop"))),
        "/broken" => full(503, Some("/healthz".into())),
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            full(200, None)
        }
        "/stall" => {
            // Headers and a first chunk, then nothing.
            let first =
                futures::stream::once(async { Ok(Frame::data(Bytes::from_static(b"partial"))) });
            let body = StreamBody::new(first.chain(futures::stream::pending()));
            Response::new(BodyExt::boxed(body))
        }
        _ => full(404, None),
    }
}

/// An HTTP/1 server with the routes above; records every request.
async fn http_server_on(ip: &str) -> (SocketAddr, Seen) {
    let listener = TcpListener::bind((ip, 0)).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen: Seen = Arc::default();
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let record = record.clone();
                    async move {
                        let path = req.uri().path().to_string();
                        record
                            .lock()
                            .expect("lock")
                            .push((path.clone(), req.headers().clone()));
                        Ok::<_, Infallible>(route(&path, addr.port()).await)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, seen)
}

async fn http_server() -> (SocketAddr, Seen) {
    http_server_on("127.0.0.1").await
}

/// A listener that accepts connections and holds them open, silent.
async fn mute_server() -> SocketAddr {
    let (l, addr) = bound("127.0.0.1:0").await;
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    addr
}

async fn closed_tcp_port() -> SocketAddr {
    let (l, addr) = bound("127.0.0.1:0").await;
    drop(l);
    addr
}

#[tokio::test]
async fn http_200_is_success_with_default_headers() {
    let (addr, seen) = http_server().await;
    let o = prober().probe(&http("/ok"), addr, T).await;
    assert_eq!(o.verdict, Verdict::Success, "{}", o.message);
    assert!(o.message.is_empty());
    assert_eq!(paths(&seen), ["/ok"]);
    assert_eq!(header(&seen, 0, "user-agent"), ["kube-endpoints/test"]);
    assert_eq!(header(&seen, 0, "accept"), ["*/*"]);
    assert_eq!(header(&seen, 0, "host"), [addr.to_string()]);
}

#[tokio::test]
async fn http_path_gets_a_leading_slash() {
    let (addr, seen) = http_server().await;
    let o = prober().probe(&http("healthz"), addr, T).await;
    assert_eq!(o.verdict, Verdict::Success, "{}", o.message);
    // Empty means "/", which this server does not serve.
    let o = prober().probe(&http(""), addr, T).await;
    assert_failure(&o, "http GET /: status 404");
    assert_eq!(paths(&seen), ["/healthz", "/"]);
}

#[tokio::test]
async fn http_same_host_redirect_is_followed() {
    let (addr, seen) = http_server().await;
    let o = prober().probe(&http("/moved"), addr, T).await;
    assert_eq!(o.verdict, Verdict::Success, "{}", o.message);
    assert_eq!(paths(&seen), ["/moved", "/healthz"]);
    assert_eq!(
        header(&seen, 1, "user-agent"),
        ["kube-endpoints/test"],
        "headers survive a redirect"
    );
}

#[tokio::test]
async fn http_off_host_redirect_counts_as_success() {
    let (addr, seen) = http_server().await;
    let o = prober().probe(&http("/away"), addr, T).await;
    assert_eq!(o.verdict, Verdict::Success, "{}", o.message);
    assert_eq!(paths(&seen), ["/away"], "the other host is never contacted");
}

#[tokio::test]
async fn http_makes_at_most_ten_requests_as_go_does() {
    // Go's client (so the kubelet) stops once 10 requests were made: a
    // chain of 9 redirects passes, a 10th redirect fails the probe.
    let (addr, seen) = http_server().await;
    let o = prober()
        .probe(&http("/r/9"), addr, Duration::from_secs(3))
        .await;
    assert_eq!(o.verdict, Verdict::Success, "{}", o.message);
    assert_eq!(paths(&seen).len(), 10);
    let o = prober()
        .probe(&http("/r/10"), addr, Duration::from_secs(3))
        .await;
    assert_failure(&o, "http GET /r/10: too many redirects");
    assert_eq!(o.reason, "redirects");
    assert_eq!(paths(&seen).len(), 20, "the 10th redirect is not followed");
}

#[tokio::test]
async fn http_redirect_loop_fails() {
    let (addr, seen) = http_server().await;
    let (o, elapsed) = timed(&http("/loop"), addr, Duration::from_secs(3)).await;
    assert_failure(&o, "http GET /loop: too many redirects");
    assert_eq!(paths(&seen).len(), MAX_REQUESTS);
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
}

#[tokio::test]
async fn http_503_fails_without_leaking_the_body() {
    let (addr, seen) = http_server().await;
    let o = prober().probe(&http("/broken"), addr, T).await;
    assert_failure(&o, "http GET /broken: status 503");
    assert!(!o.message.contains(BODY_MARKER));
    assert_eq!(
        paths(&seen),
        ["/broken"],
        "a Location on a 503 is not followed"
    );
}

#[tokio::test]
async fn http_slow_answer_times_out_within_the_timeout() {
    let (addr, _) = http_server().await;
    let (o, elapsed) = timed(&http("/slow"), addr, T).await;
    assert_failure(&o, "http GET /slow: timed out after 800ms");
    assert!(elapsed >= T, "gave up early: {elapsed:?}");
    assert!(elapsed < T + MARGIN, "took {elapsed:?}");
}

#[tokio::test]
async fn http_stalled_body_fails_within_the_timeout() {
    let (addr, _) = http_server().await;
    let (o, elapsed) = timed(&http("/stall"), addr, T).await;
    assert_failure(
        &o,
        "http GET /stall: status 200, reading the body: timed out after 800ms",
    );
    assert!(elapsed < T + MARGIN, "took {elapsed:?}");
}

/// Probes `/ok` of a fresh HTTP server with `headers`, asserts success and
/// that the server received `expected` (a header's name, all its values).
async fn assert_headers_received(
    headers: &[(&str, &str)],
    expected: &[(&str, &[&str])],
) -> (SocketAddr, Seen) {
    let (addr, seen) = http_server().await;
    let o = prober().probe(&with_headers("/ok", headers), addr, T).await;
    assert_eq!(o.verdict, Verdict::Success, "{}", o.message);
    for (name, values) in expected {
        assert_eq!(header(&seen, 0, name), *values, "{name}");
    }
    (addr, seen)
}

#[tokio::test]
async fn http_custom_headers_and_host_reach_the_server() {
    // Repeated headers are all sent.
    assert_headers_received(
        &[
            ("Host", "db.internal"),
            ("User-Agent", "custom/1"),
            ("X-Probe", "one"),
            ("x-probe", "two"),
            ("Accept", "application/json"),
        ],
        &[
            ("host", &["db.internal"]),
            ("user-agent", &["custom/1"]),
            ("accept", &["application/json"]),
            ("x-probe", &["one", "two"]),
        ],
    )
    .await;
}

#[tokio::test]
async fn http_virtual_host_field_sets_the_host_header() {
    let (addr, seen) = http_server().await;
    let probe = Probe::Http(HttpGet {
        host: Some("vhost.internal".into()),
        ..get("/ok")
    });
    let o = prober().probe(&probe, addr, T).await;
    assert_eq!(o.verdict, Verdict::Success, "{}", o.message);
    assert_eq!(header(&seen, 0, "host"), ["vhost.internal"]);

    // A Host header wins over the field; an empty field means the default.
    let probe = Probe::Http(HttpGet {
        host: Some("field.internal".into()),
        headers: vec![("host".into(), "header.internal".into())],
        ..get("/ok")
    });
    prober().probe(&probe, addr, T).await;
    assert_eq!(header(&seen, 1, "host"), ["header.internal"]);
    let probe = Probe::Http(HttpGet {
        host: Some(String::new()),
        ..get("/ok")
    });
    prober().probe(&probe, addr, T).await;
    assert_eq!(header(&seen, 2, "host"), [addr.to_string()]);
}

#[tokio::test]
async fn http_empty_user_agent_accept_and_host_mean_the_default() {
    // Other headers are sent as given, even empty.
    let (addr, seen) = assert_headers_received(
        &["User-Agent", "Accept", "Host", "X-Empty"].map(|name| (name, "")),
        &[
            ("user-agent", &["kube-endpoints/test"]),
            ("accept", &["*/*"]),
            ("x-empty", &[""]),
        ],
    )
    .await;
    assert_eq!(header(&seen, 0, "host"), [addr.to_string()]);
}

#[tokio::test]
async fn http_bad_headers_are_config_errors_and_do_not_contact_the_host() {
    let (addr, seen) = http_server().await;
    let o = prober()
        .probe(&with_headers("/ok", &[("bad header", "x")]), addr, T)
        .await;
    assert_eq!(o.verdict, Verdict::ConfigError);
    assert_eq!(
        o.message,
        "http GET /ok: configuration error: invalid header name \"bad header\""
    );

    let o = prober()
        .probe(
            &with_headers("/ok", &[("Authorization", "secret\nvalue")]),
            addr,
            T,
        )
        .await;
    assert_eq!(o.verdict, Verdict::ConfigError);
    assert!(o.message.contains("configuration error"), "{}", o.message);
    assert!(
        !o.message.contains("secret"),
        "header values are never echoed: {}",
        o.message
    );

    let probe = Probe::Http(HttpGet {
        host: Some("bad\nhost".into()),
        ..get("/ok")
    });
    let o = prober().probe(&probe, addr, T).await;
    assert_eq!(o.verdict, Verdict::ConfigError, "{}", o.message);
    assert!(
        seen.lock().expect("lock").is_empty(),
        "the host is not contacted"
    );
}

#[tokio::test]
async fn http_refused_connection_fails() {
    let addr = closed_tcp_port().await;
    let (o, elapsed) = timed(&http("/"), addr, T).await;
    assert_failure(&o, "http GET /: connection refused");
    assert!(elapsed < T, "a refusal is immediate, took {elapsed:?}");
}

#[tokio::test]
async fn http_over_ipv6_brackets_the_address() {
    let (addr, seen) = http_server_on("::1").await;
    let o = prober().probe(&http("/ok"), addr, T).await;
    assert_eq!(o.verdict, Verdict::Success, "{}", o.message);
    assert_eq!(header(&seen, 0, "host"), [addr.to_string()]);
    assert!(addr.to_string().starts_with("[::1]:"));
}

/// What the TLS server saw of one request.
#[derive(Debug)]
struct TlsSeen {
    sni: Option<String>,
    request: String,
}

/// A minimal HTTPS server (self-signed certificate) on a plain thread:
/// answers every request with 200 and reports the SNI and request head.
fn https(path: &str) -> HttpGet {
    HttpGet {
        scheme: Scheme::Https,
        ..get(path)
    }
}

/// Probes the HTTPS server at `addr` with `probe` (a success) and returns
/// what the server saw of the request.
async fn probe_https(
    probe: &Probe,
    addr: SocketAddr,
    seen: &std::sync::mpsc::Receiver<TlsSeen>,
) -> TlsSeen {
    let o = prober().probe(probe, addr, T).await;
    assert_eq!(o.verdict, Verdict::Success, "{}", o.message);
    seen.recv_timeout(Duration::from_secs(5))
        .expect("a request")
}

fn https_server() -> (SocketAddr, std::sync::mpsc::Receiver<TlsSeen>) {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let cert = CertificateDer::from(include_bytes!("testdata/cert.der").to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        include_bytes!("testdata/key.der").to_vec(),
    ));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)
    .expect("certificate");
    let config = Arc::new(config);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let Ok(conn) = rustls::ServerConnection::new(config.clone()) else {
                return;
            };
            let mut tls = rustls::StreamOwned::new(conn, stream);
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match tls.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let _ = tls
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
            tls.conn.send_close_notify();
            let _ = tls.flush();
            let seen = TlsSeen {
                sni: tls.conn.server_name().map(str::to_string),
                request: String::from_utf8_lossy(&request).to_lowercase(),
            };
            if tx.send(seen).is_err() {
                return;
            }
        }
    });
    (addr, rx)
}

#[tokio::test]
async fn https_accepts_a_self_signed_certificate_and_sends_the_virtual_host_as_sni() {
    let (addr, seen) = https_server();
    let s = probe_https(&Probe::Http(https("/ok")), addr, &seen).await;
    assert_eq!(s.sni, None, "no SNI for an IP address");
    assert!(s.request.starts_with("get /ok http/1.1"), "{}", s.request);

    let vhost = Probe::Http(HttpGet {
        host: Some("vhost.test".into()),
        ..https("/ok")
    });
    // The same through a Host header with a port.
    let header = Probe::Http(https("/ok")).with_header("Host", "api.test:8443");
    // (probe, the SNI and the Host header the server must see)
    for (probe, sni, host) in [
        (vhost, "vhost.test", "vhost.test"),
        (header, "api.test", "api.test:8443"),
    ] {
        let s = probe_https(&probe, addr, &seen).await;
        assert_eq!(s.sni.as_deref(), Some(sni));
        let host_line = format!("\r\nhost: {host}\r\n");
        assert!(s.request.contains(&host_line), "{}", s.request);
    }
}

#[tokio::test]
async fn https_against_a_plain_http_server_fails() {
    let (addr, _) = http_server().await;
    let (o, elapsed) = timed(&Probe::Http(https("/ok")), addr, T).await;
    assert_eq!(o.verdict, Verdict::Failure);
    assert!(o.message.starts_with("http GET /ok: "), "{}", o.message);
    assert!(elapsed < T + MARGIN, "took {elapsed:?}");
}

impl Probe {
    fn with_header(mut self, name: &str, value: &str) -> Probe {
        if let Probe::Http(get) = &mut self {
            get.headers.push((name.into(), value.into()));
        }
        self
    }
}

#[tokio::test]
async fn tcp_open_and_closed_ports() {
    let (l, addr) = bound("127.0.0.1:0").await;
    let o = prober().probe(&Probe::tcp(), addr, T).await;
    assert_eq!(o.verdict, Verdict::Success, "{}", o.message);
    assert!(o.message.is_empty());
    drop(l);
    let (o, elapsed) = timed(&Probe::tcp(), addr, T).await;
    assert_failure(&o, format!("tcp connect {addr}: connection refused"));
    assert!(elapsed < T, "a refusal is immediate, took {elapsed:?}");
}

#[tokio::test]
async fn tcp_over_ipv6() {
    let (l, addr) = bound("[::1]:0").await;
    let o = prober().probe(&Probe::tcp(), addr, T).await;
    assert_eq!(o.verdict, Verdict::Success, "{}", o.message);
    drop(l);
    let o = prober().probe(&Probe::tcp(), addr, T).await;
    assert_eq!(
        o.message,
        format!("tcp connect [::1]:{}: connection refused", addr.port())
    );
}

/// A TCP connect that never completes, on loopback: a listener with a
/// backlog of 0 that never accepts. Once its accept queue is full Linux
/// drops further SYNs, so a connect hangs in SYN retransmission. Returns the
/// listener (keep it alive) and the fillers, or `None` if this kernel
/// answers anyway.
async fn unanswered_tcp() -> Option<(
    SocketAddr,
    Vec<tokio::net::TcpStream>,
    tokio::net::TcpListener,
)> {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.1:0".parse().expect("addr"))
        .expect("bind");
    let listener = socket.listen(0).expect("listen");
    let addr = listener.local_addr().expect("addr");
    let mut fillers = Vec::new();
    for _ in 0..16 {
        match tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            Ok(Ok(s)) => fillers.push(s),
            Ok(Err(e)) => panic!("filling the backlog: {e}"),
            Err(_) => return Some((addr, fillers, listener)),
        }
    }
    None
}

#[tokio::test]
async fn tcp_connect_that_hangs_times_out_within_the_timeout() {
    let Some((addr, _fillers, _listener)) = unanswered_tcp().await else {
        panic!("could not make a loopback TCP connect hang (accept queue never filled)");
    };
    let short = Duration::from_millis(400);
    let (o, elapsed) = timed(&Probe::tcp(), addr, short).await;
    assert_failure(&o, format!("tcp connect {addr}: timed out after 400ms"));
    assert!(elapsed >= short, "gave up early: {elapsed:?}");
    assert!(elapsed < short + MARGIN, "took {elapsed:?}");
}

/// A UDP server that answers every datagram with `reply(payload)`, and
/// records what it got.
async fn udp_server(reply: fn(&[u8]) -> Vec<u8>) -> (SocketAddr, Arc<Mutex<Vec<Vec<u8>>>>) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let addr = socket.local_addr().expect("addr");
    let received = Arc::new(Mutex::new(Vec::new()));
    let r = received.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            r.lock().expect("lock").push(buf[..n].to_vec());
            let _ = socket.send_to(&reply(&buf[..n]), from).await;
        }
    });
    (addr, received)
}

#[tokio::test]
async fn udp_echo_is_success() {
    let (addr, received) = udp_server(|p| {
        if p.is_empty() {
            b"pong".to_vec()
        } else {
            p.to_vec()
        }
    })
    .await;
    let o = prober().probe(&udp(b"hello".to_vec()), addr, T).await;
    assert_eq!(o.verdict, Verdict::Success, "{}", o.message);
    // An empty payload is allowed: an empty datagram is sent.
    let o = prober().probe(&udp(vec![]), addr, T).await;
    assert_eq!(o.verdict, Verdict::Success, "{}", o.message);
    assert_eq!(*received.lock().expect("lock"), [b"hello".to_vec(), vec![]]);
}

#[tokio::test]
async fn udp_empty_reply_is_not_an_answer() {
    let (addr, received) = udp_server(|_| Vec::new()).await;
    let short = Duration::from_millis(400);
    let (o, elapsed) = timed(&udp(b"x".to_vec()), addr, short).await;
    assert_failure(&o, format!("udp {addr}: no reply within 400ms"));
    assert_eq!(
        received.lock().expect("lock").len(),
        1,
        "the server did get the probe"
    );
    assert!(elapsed < short + MARGIN, "took {elapsed:?}");
}

#[tokio::test]
async fn udp_silence_fails_within_the_timeout() {
    let silent = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let addr = silent.local_addr().expect("addr");
    let (o, elapsed) = timed(&udp(b"hello".to_vec()), addr, T).await;
    assert_failure(&o, format!("udp {addr}: no reply within 800ms"));
    assert!(elapsed >= T, "gave up early: {elapsed:?}");
    assert!(elapsed < T + MARGIN, "took {elapsed:?}");
    let mut buf = [0u8; 16];
    let (n, _) = silent
        .try_recv_from(&mut buf)
        .expect("the probe reached the silent socket");
    assert_eq!(&buf[..n], b"hello");
}

#[tokio::test]
async fn udp_closed_port_is_refused_at_once() {
    let closed = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let addr = closed.local_addr().expect("addr");
    drop(closed);
    let (o, elapsed) = timed(&udp(b"hello".to_vec()), addr, T).await;
    assert_failure(&o, format!("udp {addr}: connection refused"));
    assert!(
        elapsed < T,
        "ICMP port unreachable is immediate, took {elapsed:?}"
    );
}

async fn grpc_server() -> (SocketAddr, tonic_health::server::HealthReporter) {
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    reporter
        .set_service_status("db", tonic_health::ServingStatus::NotServing)
        .await;
    reporter
        .set_service_status("cache", tonic_health::ServingStatus::Unknown)
        .await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(incoming)
            .await;
    });
    (addr, reporter)
}

fn grpc_probe(service: &str) -> Probe {
    Probe::Grpc(GrpcProbe {
        service: service.into(),
        tls: None,
    })
}

fn udp(data: Vec<u8>) -> Probe {
    Probe::Udp(UdpProbe { data, expect: None })
}

#[tokio::test]
async fn grpc_default_empty_service_serving_is_success() {
    let (addr, _reporter) = grpc_server().await;
    let (o, elapsed) = timed(&grpc_probe(""), addr, T).await;
    assert_eq!(o.verdict, Verdict::Success, "{}", o.message);
    assert!(elapsed < T, "took {elapsed:?}");
}

#[tokio::test]
async fn grpc_statuses_other_than_serving_fail_with_the_status() {
    let (addr, reporter) = grpc_server().await;
    let (o, elapsed) = timed(&grpc_probe("db"), addr, T).await;
    assert_failure(&o, "grpc health check \"db\": NOT_SERVING");
    assert!(elapsed < T, "took {elapsed:?}");

    let o = prober().probe(&grpc_probe("cache"), addr, T).await;
    assert_failure(&o, "grpc health check \"cache\": UNKNOWN");

    let (o, elapsed) = timed(&grpc_probe("nope"), addr, T).await;
    assert_eq!(o.verdict, Verdict::Failure);
    // The code only: the server's status message ("service not
    // registered") is peer-controlled text and never shown.
    assert_eq!(o.message, "grpc health check \"nope\": NotFound");
    assert_eq!(o.reason, "grpc_status");
    assert!(elapsed < T, "took {elapsed:?}");

    // The overall status follows the reporter.
    reporter
        .set_service_status("", tonic_health::ServingStatus::NotServing)
        .await;
    let o = prober().probe(&grpc_probe(""), addr, T).await;
    assert_eq!(o.message, "grpc health check \"\": NOT_SERVING");
}

#[tokio::test]
async fn grpc_against_a_closed_port_and_a_non_grpc_server_fail_in_time() {
    let addr = closed_tcp_port().await;
    let (o, elapsed) = timed(&grpc_probe(""), addr, T).await;
    assert_failure(&o, "grpc health check \"\": connection refused");
    assert!(elapsed < T + MARGIN, "took {elapsed:?}");

    // An HTTP/1 server does not speak h2c.
    let (addr, _) = http_server().await;
    let (o, elapsed) = timed(&grpc_probe(""), addr, T).await;
    assert_eq!(o.verdict, Verdict::Failure);
    assert!(
        o.message.starts_with("grpc health check \"\": "),
        "{}",
        o.message
    );
    assert!(elapsed < T + MARGIN, "took {elapsed:?}");
}

#[tokio::test]
async fn every_prober_ends_by_its_timeout_against_a_mute_peer() {
    let addr = mute_server().await;
    let short = Duration::from_millis(300);
    for (probe, message) in [
        (http("/"), "http GET /: timed out after 300ms"),
        (
            grpc_probe(""),
            "grpc health check \"\": timed out after 300ms",
        ),
    ] {
        let (o, elapsed) = timed(&probe, addr, short).await;
        assert_eq!(o.verdict, Verdict::Failure, "{probe:?}");
        assert_eq!(o.message, message);
        assert!(elapsed >= short, "{probe:?} gave up early: {elapsed:?}");
        assert!(elapsed < short + MARGIN, "{probe:?} took {elapsed:?}");
    }
}

#[test]
fn prober_rejects_an_invalid_user_agent() {
    let Err(e) = Prober::new("bad\nagent") else {
        panic!("an invalid User-Agent must be refused");
    };
    assert_eq!(e.reason(), "InvalidUserAgent");
}

#[test]
fn kinds_and_verdicts_have_stable_names() {
    let kinds = [Probe::tcp(), http("/"), udp(vec![]), grpc_probe("")].map(|p| p.kind().as_str());
    assert_eq!(kinds, ["tcp", "http", "udp", "grpc"]);
    let verdicts = [
        Verdict::Success,
        Verdict::Failure,
        Verdict::ConfigError,
        Verdict::LocalError,
    ]
    .map(Verdict::as_str);
    assert_eq!(
        verdicts,
        ["success", "failure", "config_error", "local_error"]
    );
}
