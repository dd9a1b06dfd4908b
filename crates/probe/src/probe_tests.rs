//! Each prober against real servers started on 127.0.0.1 by the test.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::*;

const T: Duration = Duration::from_millis(800);
const BODY_MARKER: &str = "SECRET-BODY-MARKER";

fn prober() -> Prober {
    Prober::new("kube-endpoints/test").expect("prober")
}

fn http(path: &str) -> Probe {
    Probe::Http(HttpGet {
        scheme: Scheme::Http,
        path: path.into(),
        host: None,
        headers: vec![],
    })
}

type Seen = Arc<Mutex<Vec<(String, hyper::HeaderMap)>>>;

/// An HTTP server with the routes the tests need; records every request.
async fn http_server() -> (SocketAddr, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen: Seen = Arc::default();
    let record = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let record = record.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let record = record.clone();
                    async move {
                        record
                            .lock()
                            .expect("lock")
                            .push((req.uri().path().to_string(), req.headers().clone()));
                        let port = addr.port();
                        let (status, location, delay) = match req.uri().path() {
                            "/ok" | "/healthz" => (200, None, 0),
                            "/moved" => (301, Some("/healthz".to_string()), 0),
                            "/away" => (302, Some("http://off-host.invalid/".to_string()), 0),
                            "/loop" => (302, Some(format!("http://127.0.0.1:{port}/loop")), 0),
                            "/broken" => (503, None, 0),
                            "/slow" => (200, None, 5000),
                            _ => (404, None, 0),
                        };
                        if delay > 0 {
                            tokio::time::sleep(Duration::from_millis(delay)).await;
                        }
                        let mut resp = Response::new(Full::new(Bytes::from(format!("{BODY_MARKER} {}", "x".repeat(20000)))));
                        *resp.status_mut() = StatusCode::from_u16(status).expect("status");
                        if let Some(l) = location {
                            resp.headers_mut().insert("location", l.parse().expect("location"));
                        }
                        Ok::<_, Infallible>(resp)
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

#[tokio::test]
async fn http_200_is_success_with_default_headers() {
    let (addr, seen) = http_server().await;
    let o = prober().probe(&http("/ok"), addr, T).await;
    assert_eq!(o.verdict, Verdict::Success, "{}", o.message);
    assert!(o.message.is_empty());
    let seen = seen.lock().expect("lock");
    let headers = &seen[0].1;
    assert_eq!(headers.get("user-agent").and_then(|v| v.to_str().ok()), Some("kube-endpoints/test"));
    assert_eq!(headers.get("accept").and_then(|v| v.to_str().ok()), Some("*/*"));
}

#[tokio::test]
async fn http_same_host_redirect_is_followed() {
    let (addr, seen) = http_server().await;
    let o = prober().probe(&http("/moved"), addr, T).await;
    assert_eq!(o.verdict, Verdict::Success, "{}", o.message);
    let paths: Vec<String> = seen.lock().expect("lock").iter().map(|(p, _)| p.clone()).collect();
    assert_eq!(paths, ["/moved", "/healthz"]);
}

#[tokio::test]
async fn http_off_host_redirect_counts_as_success() {
    let (addr, seen) = http_server().await;
    let o = prober().probe(&http("/away"), addr, T).await;
    assert_eq!(o.verdict, Verdict::Success, "{}", o.message);
    assert_eq!(seen.lock().expect("lock").len(), 1, "the other host is never contacted");
}

#[tokio::test]
async fn http_redirect_loop_fails() {
    let (addr, _) = http_server().await;
    let o = prober().probe(&http("/loop"), addr, Duration::from_secs(3)).await;
    assert_eq!(o.verdict, Verdict::Failure);
    assert!(o.message.contains("redirect"), "{}", o.message);
}

#[tokio::test]
async fn http_503_fails_without_leaking_the_body() {
    let (addr, _) = http_server().await;
    let o = prober().probe(&http("/broken"), addr, T).await;
    assert_eq!(o.verdict, Verdict::Failure);
    assert_eq!(o.message, "http GET /broken: status 503");
    assert!(!o.message.contains(BODY_MARKER));
}

#[tokio::test]
async fn http_slow_answer_times_out_within_the_timeout() {
    let (addr, _) = http_server().await;
    let o = prober().probe(&http("/slow"), addr, T).await;
    assert_eq!(o.verdict, Verdict::Failure);
    assert!(o.message.contains("timed out"), "{}", o.message);
    assert!(o.latency < T + Duration::from_millis(500), "took {:?}", o.latency);
}

#[tokio::test]
async fn http_custom_headers_and_host_reach_the_server() {
    let (addr, seen) = http_server().await;
    let probe = Probe::Http(HttpGet {
        scheme: Scheme::Http,
        path: "/ok".into(),
        host: None,
        headers: vec![
            ("Host".into(), "db.internal".into()),
            ("User-Agent".into(), "custom/1".into()),
            ("X-Probe".into(), "yes".into()),
        ],
    });
    let o = prober().probe(&probe, addr, T).await;
    assert_eq!(o.verdict, Verdict::Success, "{}", o.message);
    let seen = seen.lock().expect("lock");
    let h = &seen[0].1;
    assert_eq!(h.get("host").and_then(|v| v.to_str().ok()), Some("db.internal"));
    assert_eq!(h.get("user-agent").and_then(|v| v.to_str().ok()), Some("custom/1"));
    assert_eq!(h.get("x-probe").and_then(|v| v.to_str().ok()), Some("yes"));
}

#[tokio::test]
async fn http_virtual_host_field_sets_the_host_header() {
    let (addr, seen) = http_server().await;
    let probe = Probe::Http(HttpGet {
        scheme: Scheme::Http,
        path: "/ok".into(),
        host: Some("vhost.internal".into()),
        headers: vec![],
    });
    let o = prober().probe(&probe, addr, T).await;
    assert_eq!(o.verdict, Verdict::Success, "{}", o.message);
    let seen = seen.lock().expect("lock");
    assert_eq!(seen[0].1.get("host").and_then(|v| v.to_str().ok()), Some("vhost.internal"));
}

#[tokio::test]
async fn http_bad_header_is_a_config_error() {
    let (addr, seen) = http_server().await;
    let probe = Probe::Http(HttpGet {
        scheme: Scheme::Http,
        path: "/ok".into(),
        host: None,
        headers: vec![("bad header".into(), "x".into())],
    });
    let o = prober().probe(&probe, addr, T).await;
    assert_eq!(o.verdict, Verdict::ConfigError);
    assert!(o.message.contains("configuration error"), "{}", o.message);
    assert!(seen.lock().expect("lock").is_empty(), "the host is not contacted");
}

#[tokio::test]
async fn http_refused_connection_fails() {
    let addr = closed_tcp_port().await;
    let o = prober().probe(&http("/"), addr, T).await;
    assert_eq!(o.verdict, Verdict::Failure);
    assert!(o.message.contains("refused"), "{}", o.message);
}

async fn closed_tcp_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    drop(l);
    addr
}

#[tokio::test]
async fn tcp_open_and_closed_ports() {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let o = prober().probe(&Probe::Tcp, addr, T).await;
    assert_eq!(o.verdict, Verdict::Success, "{}", o.message);
    drop(l);
    let o = prober().probe(&Probe::Tcp, addr, T).await;
    assert_eq!(o.verdict, Verdict::Failure);
    assert_eq!(o.message, format!("tcp connect {addr}: connection refused"));
}

#[tokio::test]
async fn udp_echo_silence_and_closed_port() {
    let echo = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let echo_addr = echo.local_addr().expect("addr");
    let received = Arc::new(Mutex::new(Vec::new()));
    let r = received.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = echo.recv_from(&mut buf).await {
            r.lock().expect("lock").push(buf[..n].to_vec());
            let _ = echo.send_to(&buf[..n.max(1)], from).await;
        }
    });
    let probe = Probe::Udp { data: b"hello".to_vec() };
    let o = prober().probe(&probe, echo_addr, T).await;
    assert_eq!(o.verdict, Verdict::Success, "{}", o.message);
    assert_eq!(received.lock().expect("lock")[0], b"hello");
    // Empty payload is allowed and still gets an answer from an echo server.
    let o = prober().probe(&Probe::Udp { data: vec![] }, echo_addr, T).await;
    assert_eq!(o.verdict, Verdict::Success, "{}", o.message);

    let silent = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let silent_addr = silent.local_addr().expect("addr");
    let o = prober().probe(&probe, silent_addr, T).await;
    assert_eq!(o.verdict, Verdict::Failure);
    assert!(o.message.contains("no reply"), "{}", o.message);
    assert!(o.latency < T + Duration::from_millis(500), "took {:?}", o.latency);
    drop(silent);

    let closed = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let closed_addr = closed.local_addr().expect("addr");
    drop(closed);
    let o = prober().probe(&probe, closed_addr, T).await;
    assert_eq!(o.verdict, Verdict::Failure);
    assert!(o.message.contains("connection refused"), "{}", o.message);
    assert!(o.latency < T, "ICMP unreachable is immediate, took {:?}", o.latency);
}

async fn grpc_server() -> (SocketAddr, tonic_health::server::HealthReporter) {
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    reporter
        .set_service_status("db", tonic_health::ServingStatus::NotServing)
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

#[tokio::test]
async fn grpc_serving_not_serving_and_unknown_service() {
    let (addr, _reporter) = grpc_server().await;
    let o = prober().probe(&Probe::Grpc { service: String::new() }, addr, T).await;
    assert_eq!(o.verdict, Verdict::Success, "{}", o.message);

    let o = prober().probe(&Probe::Grpc { service: "db".into() }, addr, T).await;
    assert_eq!(o.verdict, Verdict::Failure);
    assert!(o.message.contains("NOT_SERVING"), "{}", o.message);

    let o = prober().probe(&Probe::Grpc { service: "nope".into() }, addr, T).await;
    assert_eq!(o.verdict, Verdict::Failure);
    assert!(o.message.contains("NotFound"), "{}", o.message);
    assert!(o.latency < T, "took {:?}", o.latency);
}

#[tokio::test]
async fn grpc_against_a_closed_port_and_a_non_grpc_server_fail_in_time() {
    let addr = closed_tcp_port().await;
    let o = prober().probe(&Probe::Grpc { service: String::new() }, addr, T).await;
    assert_eq!(o.verdict, Verdict::Failure);
    assert!(o.latency < T + Duration::from_millis(500));

    // A TCP listener that accepts and never speaks HTTP/2.
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    let o = prober().probe(&Probe::Grpc { service: String::new() }, addr, T).await;
    assert_eq!(o.verdict, Verdict::Failure);
    assert!(o.latency < T + Duration::from_millis(500), "took {:?}", o.latency);
}

#[tokio::test]
async fn every_prober_ends_by_its_timeout_against_a_mute_peer() {
    // A listener that accepts and holds connections open, silent.
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    let short = Duration::from_millis(300);
    for probe in [http("/"), Probe::Grpc { service: String::new() }] {
        let o = prober().probe(&probe, addr, short).await;
        assert_eq!(o.verdict, Verdict::Failure, "{probe:?}");
        assert!(o.latency < short + Duration::from_millis(300), "{probe:?} took {:?}", o.latency);
    }
}
