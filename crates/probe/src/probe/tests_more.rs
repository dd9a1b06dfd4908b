//! Checks beyond the kubelet's (methods, expected statuses, body and reply
//! matching), what goes on the wire (Title-Case header names), and that no
//! virtual host, URL trick or redirect changes where a probe connects.
//! Servers are real sockets on loopback, read at the byte level where the
//! wire format is the point.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

use super::tests_tls::{Pki, Serve, serve_redis, server_config, tls_serve};
use super::*;

const T: Duration = Duration::from_millis(800);
const MARKER: &str = "SECRET-REPLY-MARKER";

fn prober() -> Prober {
    Prober::new("kube-endpoints/test").expect("prober")
}

/// One request as it arrived: the raw head (request line and headers, as
/// written on the wire) and the body.
#[derive(Clone, Debug)]
struct Raw {
    head: String,
    body: Vec<u8>,
}

impl Raw {
    fn request_line(&self) -> &str {
        self.head.lines().next().unwrap_or_default()
    }

    /// Header lines exactly as sent (name case preserved).
    fn header_lines(&self) -> Vec<&str> {
        self.head
            .lines()
            .skip(1)
            .filter(|l| !l.is_empty())
            .collect()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.header_lines().into_iter().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

type Requests = Arc<Mutex<Vec<Raw>>>;

/// The response for a path: `/status/NNN` answers NNN, `/primary` answers
/// 200 with a body naming the role, `/redirect-other` points at another
/// host, `/redirect-vhost` at the virtual host `vhost.test` (same port); every body
/// carries a marker that must never reach a message.
fn respond(path: &str, port: u16) -> String {
    let path = path.split('?').next().unwrap_or_default();
    let redirect = |status: &str, to: String| {
        (
            status.to_string(),
            format!("Location: {to}\r\n"),
            String::new(),
        )
    };
    let (status, extra, body) = if let Some(code) = path.strip_prefix("/status/") {
        (code.to_string(), String::new(), format!("{MARKER} status"))
    } else {
        match path {
            "/primary" => (
                "200".into(),
                String::new(),
                format!("{MARKER} {{\"role\": \"replica\", \"state\": \"running\"}}"),
            ),
            "/redirect-other" => redirect("302", format!("http://127.0.0.1:{port}/status/200")),
            "/redirect-localhost" => redirect("302", format!("http://localhost:{port}/status/200")),
            "/redirect-vhost" => redirect("302", format!("http://vhost.test:{port}/status/204")),
            "/see-other" => redirect("303", "/status/200".into()),
            "/temporary" => redirect("307", "/status/200".into()),
            _ => ("404".into(), String::new(), format!("{MARKER} not found")),
        }
    };
    format!(
        "HTTP/1.1 {status} X\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// A raw HTTP/1.1 server on `listener`: one request per connection.
fn raw_http_serve(listener: TcpListener) -> (SocketAddr, Requests) {
    let addr = listener.local_addr().expect("addr");
    let requests: Requests = Arc::default();
    let record = requests.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let mut data = Vec::new();
                let mut buf = [0u8; 4096];
                let head_end = loop {
                    if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => data.extend_from_slice(&buf[..n]),
                    }
                };
                let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
                let raw = Raw {
                    head: head.clone(),
                    body: Vec::new(),
                };
                let length: usize = raw
                    .header("content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                while data.len() < head_end + length {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => data.extend_from_slice(&buf[..n]),
                    }
                }
                let body = data[head_end..].to_vec();
                let path = raw
                    .request_line()
                    .split(' ')
                    .nth(1)
                    .unwrap_or("/")
                    .to_string();
                let method = raw.request_line().split(' ').next().unwrap_or_default();
                let mut reply = respond(&path, addr.port());
                if method == "HEAD" {
                    // Headers only.
                    let end = reply.find("\r\n\r\n").map_or(reply.len(), |i| i + 4);
                    reply.truncate(end);
                }
                record.lock().expect("lock").push(Raw { head, body });
                let _ = s.write_all(reply.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    (addr, requests)
}

async fn raw_http_server() -> (SocketAddr, Requests) {
    raw_http_serve(TcpListener::bind("127.0.0.1:0").await.expect("bind"))
}

fn http(path: &str) -> HttpGet {
    HttpGet {
        path: path.into(),
        ..HttpGet::default()
    }
}

fn requests(r: &Requests) -> Vec<Raw> {
    r.lock().expect("lock").clone()
}

#[tokio::test]
async fn header_names_go_out_in_title_case_as_go_writes_them() {
    let (addr, seen) = raw_http_server().await;
    let get = HttpGet {
        headers: vec![("x-custom-check".into(), "1".into())],
        ..http("/status/200")
    };
    let o = prober().probe(&Probe::Http(get), addr, T).await;
    assert_eq!(o.verdict, Verdict::Success, "{}", o.message);
    let raw = &requests(&seen)[0];
    assert_eq!(raw.request_line(), "GET /status/200 HTTP/1.1");
    let names: Vec<&str> = raw
        .header_lines()
        .iter()
        .filter_map(|l| l.split_once(':').map(|(n, _)| n))
        .collect();
    for name in [
        "User-Agent",
        "Accept",
        "Host",
        "X-Custom-Check",
        "Connection",
    ] {
        assert!(names.contains(&name), "{name} not in {names:?}");
    }
    assert_eq!(
        raw.header("connection"),
        Some("close"),
        "Go's DisableKeepAlives"
    );
}

#[tokio::test]
async fn expected_statuses_replace_the_default_range() {
    let (addr, _) = raw_http_server().await;
    let probe = |path: &str, ranges: &[(u16, u16)]| {
        Probe::Http(HttpGet {
            expected_statuses: ranges
                .iter()
                .map(|&(from, to)| StatusRange { from, to })
                .collect(),
            ..http(path)
        })
    };
    // The default: 200–399.
    for (path, ok) in [
        ("/status/200", true),
        ("/status/399", true),
        ("/status/400", false),
        ("/status/199", false),
    ] {
        let o = prober().probe(&probe(path, &[]), addr, T).await;
        assert_eq!(o.verdict == Verdict::Success, ok, "{path}: {}", o.message);
    }
    // Elasticsearch-style: 429 is fine too; only 200 and 429.
    let es = [(200, 200), (429, 429)];
    for (path, ok) in [
        ("/status/200", true),
        ("/status/429", true),
        ("/status/204", false),
        ("/status/503", false),
    ] {
        let o = prober().probe(&probe(path, &es), addr, T).await;
        assert_eq!(o.verdict == Verdict::Success, ok, "{path}: {}", o.message);
    }
    let o = prober().probe(&probe("/status/204", &es), addr, T).await;
    assert_eq!(o.message, "http GET /status/204: status 204");
    assert_eq!(o.reason, "http_status");
    assert!(!o.message.contains(MARKER));
}

/// A GET of `path` made with `method` instead.
fn with_method(method: HttpMethod, path: &str) -> Probe {
    Probe::Http(HttpGet {
        method,
        ..http(path)
    })
}

#[tokio::test]
async fn methods_head_post_and_options() {
    let (addr, seen) = raw_http_server().await;
    let head = with_method(HttpMethod::Head, "/status/200");
    let o = prober().probe(&head, addr, T).await;
    assert_eq!(o.verdict, Verdict::Success, "{}", o.message);
    let post = Probe::Http(HttpGet {
        method: HttpMethod::Post,
        body: b"{\"check\": true}".to_vec(),
        headers: vec![("Content-Type".into(), "application/json".into())],
        ..http("/status/200")
    });
    let o = prober().probe(&post, addr, T).await;
    assert_eq!(o.verdict, Verdict::Success, "{}", o.message);
    let options = with_method(HttpMethod::Options, "/status/503");
    let o = prober().probe(&options, addr, T).await;
    assert_eq!(o.message, "http OPTIONS /status/503: status 503");
    let raws = requests(&seen);
    assert_eq!(raws[0].request_line(), "HEAD /status/200 HTTP/1.1");
    assert_eq!(raws[1].request_line(), "POST /status/200 HTTP/1.1");
    assert_eq!(raws[1].body, b"{\"check\": true}");
    assert_eq!(raws[1].header("content-length"), Some("15"));
    assert_eq!(raws[1].header("content-type"), Some("application/json"));
    assert_eq!(raws[2].request_line(), "OPTIONS /status/503 HTTP/1.1");
}

#[tokio::test]
async fn redirects_change_the_method_as_go_does() {
    let (addr, seen) = raw_http_server().await;
    for path in ["/see-other", "/temporary"] {
        let post = Probe::Http(HttpGet {
            method: HttpMethod::Post,
            body: b"payload".to_vec(),
            ..http(path)
        });
        let o = prober().probe(&post, addr, T).await;
        assert_eq!(o.verdict, Verdict::Success, "{path}: {}", o.message);
    }
    let raws = requests(&seen);
    let lines: Vec<&str> = raws.iter().map(Raw::request_line).collect();
    assert_eq!(
        lines,
        [
            "POST /see-other HTTP/1.1",
            "GET /status/200 HTTP/1.1",
            "POST /temporary HTTP/1.1",
            "POST /status/200 HTTP/1.1",
        ]
    );
    assert!(raws[1].body.is_empty(), "303 drops the body");
    assert_eq!(raws[3].body, b"payload", "307 keeps it");
}

#[tokio::test]
async fn body_match_by_substring_and_regex_never_echoes_the_body() {
    let (addr, _) = raw_http_server().await;
    let probe = |expect: Expect| {
        Probe::Http(HttpGet {
            body_match: Some(expect),
            ..http("/primary")
        })
    };
    let o = prober()
        .probe(
            &probe(Expect::Contains(b"\"state\": \"running\"".to_vec())),
            addr,
            T,
        )
        .await;
    assert_eq!(o.verdict, Verdict::Success, "{}", o.message);
    let regex = BoundedRegex::new(r#""role":\s*"(primary|master)""#).expect("regex");
    let o = prober().probe(&probe(Expect::Regex(regex)), addr, T).await;
    assert_eq!(o.verdict, Verdict::Failure);
    assert_eq!(
        o.message,
        "http GET /primary: status 200, body did not match"
    );
    assert_eq!(o.reason, "body_mismatch");
    assert!(!o.message.contains(MARKER) && !o.message.contains("replica"));
    let regex = BoundedRegex::new(r#""role":\s*"replica""#).expect("regex");
    let o = prober().probe(&probe(Expect::Regex(regex)), addr, T).await;
    assert_eq!(o.verdict, Verdict::Success, "{}", o.message);

    // Only what a probe reads is matched: a marker past the first 10 KiB
    // is not seen (the body here is small, so match an absent string).
    let o = prober()
        .probe(
            &probe(Expect::Contains(b"not in the body".to_vec())),
            addr,
            T,
        )
        .await;
    assert_eq!(o.verdict, Verdict::Failure);

    // HEAD has no body to match: a configuration error, host untouched.
    let head = Probe::Http(HttpGet {
        method: HttpMethod::Head,
        body_match: Some(Expect::Contains(b"x".to_vec())),
        ..http("/primary")
    });
    let o = prober().probe(&head, addr, T).await;
    assert_eq!(o.verdict, Verdict::ConfigError);
}

#[test]
fn regexes_are_bounded() {
    assert!(BoundedRegex::new("a+b").is_ok());
    let long = "a".repeat(MAX_REGEX_LEN + 1);
    assert_eq!(
        BoundedRegex::new(&long).err().as_deref(),
        Some("regular expression longer than 1024 bytes")
    );
    // Small to write, huge compiled: refused, not compiled.
    assert_eq!(
        BoundedRegex::new(r"\w{500}\w{500}").err().as_deref(),
        Some("regular expression too large")
    );
    let e = BoundedRegex::new("(unclosed").expect_err("invalid");
    assert!(e.starts_with("invalid regular expression: "), "{e}");
    assert!(!e.contains('\n'), "one line: {e}");
    // Equality and hashing by pattern, so equal specs stay equal.
    assert_eq!(
        BoundedRegex::new("a+").expect("re"),
        BoundedRegex::new("a+").expect("re")
    );
}

#[tokio::test]
async fn messages_show_the_path_without_its_query() {
    let (addr, seen) = raw_http_server().await;
    let probe = Probe::Http(http("/status/503?token=SECRET-TOKEN#frag"));
    let o = prober().probe(&probe, addr, T).await;
    assert_eq!(o.message, "http GET /status/503: status 503");
    assert_eq!(
        requests(&seen)[0].request_line(),
        "GET /status/503?token=SECRET-TOKEN HTTP/1.1",
        "the query is sent, the fragment is not"
    );
    assert!(
        !format!("{probe:?}").contains("SECRET-TOKEN"),
        "nor in Debug"
    );
}

#[tokio::test]
async fn headers_the_prober_owns_are_configuration_errors() {
    let (addr, seen) = raw_http_server().await;
    for name in ["Content-Length", "Transfer-Encoding", "Connection"] {
        let probe = Probe::Http(HttpGet {
            headers: vec![(name.into(), "5".into())],
            ..http("/status/200")
        });
        let o = prober().probe(&probe, addr, T).await;
        assert_eq!(o.verdict, Verdict::ConfigError, "{name}");
    }
    assert!(requests(&seen).is_empty());
}

#[test]
fn debug_hides_header_values_and_bodies() {
    let get = HttpGet {
        headers: vec![("Authorization".into(), "Bearer SECRET".into())],
        body: b"SECRET-BODY".to_vec(),
        ..http("/")
    };
    let shown = format!("{get:?}");
    assert!(shown.contains("Authorization"), "{shown}");
    assert!(!shown.contains("SECRET"), "{shown}");
}

/// A TCP server answering the Redis commands PING and ROLE as a primary
/// ("master") or a replica ("slave").
async fn redis(role: &'static str) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(serve_redis(s, role));
        }
    });
    addr
}

fn send_expect(send: &[u8], expect: Expect) -> Probe {
    Probe::Tcp(TcpProbe {
        send: send.to_vec(),
        expect: Some(expect),
        tls: None,
    })
}

#[tokio::test]
async fn tcp_send_expect_tells_a_redis_primary_from_a_replica() {
    let primary = redis("master").await;
    let replica = redis("slave").await;
    let ping = send_expect(b"PING\r\n", Expect::Contains(b"+PONG".to_vec()));
    let role = send_expect(b"ROLE\r\n", Expect::Contains(b"master".to_vec()));
    for addr in [primary, replica] {
        let o = prober().probe(&ping, addr, T).await;
        assert_eq!(o.verdict, Verdict::Success, "{}", o.message);
    }
    let o = prober().probe(&role, primary, T).await;
    assert_eq!(o.verdict, Verdict::Success, "{}", o.message);
    let short = Duration::from_millis(300);
    let o = prober().probe(&role, replica, short).await;
    assert_eq!(o.verdict, Verdict::Failure);
    assert_eq!(
        o.message,
        format!("tcp {replica}: expected reply not received within 300ms")
    );
    assert_eq!(o.reason, "expect_mismatch");
    assert!(!o.message.contains("slave"), "the reply is never echoed");

    let regex = BoundedRegex::new(r"^\*\d+\r\n\$6\r\nmaster").expect("regex");
    let o = prober()
        .probe(&send_expect(b"ROLE\r\n", Expect::Regex(regex)), primary, T)
        .await;
    assert_eq!(o.verdict, Verdict::Success, "{}", o.message);
}

#[tokio::test]
async fn tcp_expect_fails_when_the_peer_closes_or_floods() {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                let n = s.read(&mut buf).await.unwrap_or(0);
                if &buf[..n] == b"close\n" {
                    let _ = s.write_all(b"220 banner but no match").await;
                    return; // closes
                }
                // Flood: 64 KiB without the expected bytes.
                let _ = s.write_all(&[b'x'; 65536]).await;
                tokio::time::sleep(Duration::from_secs(5)).await;
            });
        }
    });
    let expect = || Expect::Contains(b"+OK".to_vec());
    for (send, why) in [
        (
            &b"close\n"[..],
            "expected reply not received (connection closed)",
        ),
        (
            b"flood\n",
            "expected reply not received in the first 10240 bytes",
        ),
    ] {
        let o = prober().probe(&send_expect(send, expect()), addr, T).await;
        assert_eq!(o.message, format!("tcp {addr}: {why}"));
    }
}

#[tokio::test]
async fn tcp_banner_and_send_only_probes() {
    // A banner (SMTP-like): expect without send.
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let received = Arc::new(Mutex::new(Vec::new()));
    let r = received.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let r = r.clone();
            tokio::spawn(async move {
                let _ = s.write_all(b"220 mail.test ESMTP\r\n").await;
                let mut all = Vec::new();
                let _ = s.read_to_end(&mut all).await;
                r.lock().expect("lock").push(all);
            });
        }
    });
    let banner = Probe::Tcp(TcpProbe {
        expect: Some(Expect::Contains(b"220 ".to_vec())),
        ..TcpProbe::default()
    });
    let o = prober().probe(&banner, addr, T).await;
    assert_eq!(o.verdict, Verdict::Success, "{}", o.message);
    // Send only: success once written, and the bytes arrive (a graceful
    // close, not a reset that would drop them).
    let send = Probe::Tcp(TcpProbe {
        send: b"QUIT\r\n".to_vec(),
        ..TcpProbe::default()
    });
    let o = prober().probe(&send, addr, T).await;
    assert_eq!(o.verdict, Verdict::Success, "{}", o.message);
    let start = std::time::Instant::now();
    while received.lock().expect("lock").len() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "server never saw EOF"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        received
            .lock()
            .expect("lock")
            .iter()
            .any(|got| got.as_slice() == b"QUIT\r\n")
    );
}

#[tokio::test]
async fn udp_expect_waits_for_a_matching_reply() {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let addr = socket.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            // First an unrelated datagram, then the real answer.
            let _ = socket.send_to(b"noise", from).await;
            let reply = [b"re: ", &buf[..n]].concat();
            let _ = socket.send_to(&reply, from).await;
        }
    });
    let probe = |expect: &[u8]| {
        Probe::Udp(UdpProbe {
            data: b"hello".to_vec(),
            expect: Some(Expect::Contains(expect.to_vec())),
        })
    };
    let o = prober().probe(&probe(b"re: hello"), addr, T).await;
    assert_eq!(o.verdict, Verdict::Success, "{}", o.message);
    let short = Duration::from_millis(300);
    let o = prober().probe(&probe(b"never"), addr, short).await;
    assert_eq!(
        o.message,
        format!("udp {addr}: expected reply not received within 300ms")
    );
    assert!(!o.message.contains("noise"));
}

/// Listeners on the same port of 127.0.0.2 (the listed host, a raw HTTP
/// server) and 127.0.0.1 (where URL tricks would lead; must never be hit).
async fn listed_and_evil() -> (SocketAddr, Requests, Arc<AtomicUsize>) {
    let (listed, hits) = listed_and_evil_listeners().await;
    let (addr, seen) = raw_http_serve(listed);
    (addr, seen, hits)
}

/// A listener on 127.0.0.2 (the listed host, to be served by the caller)
/// and one on the same port of 127.0.0.1 that counts the connections it
/// gets (where URL tricks would lead).
async fn listed_and_evil_listeners() -> (TcpListener, Arc<AtomicUsize>) {
    for _ in 0..50 {
        let listed = TcpListener::bind("127.0.0.2:0")
            .await
            .expect("bind 127.0.0.2");
        let port = listed.local_addr().expect("addr").port();
        let Ok(evil) = TcpListener::bind(("127.0.0.1", port)).await else {
            continue; // taken on 127.0.0.1; try another port
        };
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = evil.accept().await {
                h.fetch_add(1, Ordering::SeqCst);
                drop(s);
            }
        });
        return (listed, hits);
    }
    panic!("no port free on both 127.0.0.1 and 127.0.0.2");
}

const TRICKS: &[&str] = &[
    "x@127.0.0.1",
    "127.1",
    "0x7f.1",
    "2130706433",
    "0177.0.0.1",
    "evil.example#",
    "evil.example?",
    "%65vil.example",
    "localhost:1",
    "[::1]:80",
    "127.0.0.1/x",
    "localhost\\",
];

#[tokio::test]
async fn url_tricks_in_the_virtual_host_never_change_the_destination() {
    let (addr, seen, evil) = listed_and_evil().await;
    for trick in TRICKS {
        for probe in [
            Probe::Http(HttpGet {
                host: Some(trick.to_string()),
                ..http("/status/200")
            }),
            Probe::Http(HttpGet {
                headers: vec![("Host".into(), trick.to_string())],
                ..http("/status/200")
            }),
            Probe::Http(HttpGet {
                scheme: Scheme::Https,
                host: Some(trick.to_string()),
                ..http("/status/200")
            }),
        ] {
            let o = prober().probe(&probe, addr, T).await;
            // A Host header may carry a port; those that are valid are
            // sent to the listed address, everything else is refused.
            assert!(
                o.verdict == Verdict::ConfigError
                    || requests(&seen)
                        .last()
                        .and_then(|r| r.header("host").map(str::to_string))
                        == Some(trick.to_string()),
                "{trick:?}: {o:?}"
            );
        }
    }
    // Valid virtual hosts, including names that resolve to 127.0.0.1, are
    // only ever the Host header: the listed address is what is dialled.
    for vhost in ["localhost", "vhost.test", "127.0.0.1", "::1"] {
        let o = prober()
            .probe(
                &Probe::Http(HttpGet {
                    host: Some(vhost.into()),
                    ..http("/status/200")
                }),
                addr,
                T,
            )
            .await;
        assert_eq!(o.verdict, Verdict::Success, "{vhost}: {}", o.message);
        let expected = if vhost == "::1" { "[::1]" } else { vhost };
        assert_eq!(
            requests(&seen)
                .last()
                .and_then(|r| r.header("host").map(str::to_string)),
            Some(expected.to_string())
        );
    }
    // Redirects to another host are not followed, even to one that
    // resolves to this machine; same-host redirects stay on the listed IP.
    for (path, follows) in [
        ("/redirect-other", false),
        ("/redirect-localhost", false),
        ("/redirect-vhost", true),
    ] {
        let before = requests(&seen).len();
        let o = prober()
            .probe(
                &Probe::Http(HttpGet {
                    host: Some("vhost.test".into()),
                    ..http(path)
                }),
                addr,
                T,
            )
            .await;
        let hops = requests(&seen).len() - before;
        assert_eq!(hops, if follows { 2 } else { 1 }, "{path}: {o:?}");
    }
    assert_eq!(evil.load(Ordering::SeqCst), 0, "the evil listener was hit");
}

#[tokio::test]
async fn https_virtual_hosts_are_the_sni_only() {
    // The TLS server listens on 127.0.0.2 only; the evil one on 127.0.0.1.
    let (listed, evil_hits) = listed_and_evil_listeners().await;
    let pki = Pki::new("probe test CA");
    let (addr, log) = tls_serve(
        listed,
        server_config(&pki.leaf(2040, false), &[b"http/1.1"], None),
        Serve::Http,
    );
    assert_eq!(addr.ip(), IpAddr::from([127, 0, 0, 2]));
    // HTTPS to the listed address with `host` as the virtual host.
    let https_as = |host: &str| {
        Probe::Http(HttpGet {
            scheme: Scheme::Https,
            host: Some(host.into()),
            ..http("/ok")
        })
    };
    for vhost in ["localhost", "vhost.test"] {
        let o = prober().probe(&https_as(vhost), addr, T).await;
        assert_eq!(o.verdict, Verdict::Success, "{vhost}: {}", o.message);
        let seen = log.lock().expect("lock").last().cloned().expect("seen");
        assert_eq!(seen.sni.as_deref(), Some(vhost));
        assert_eq!(seen.host.as_deref(), Some(vhost));
    }
    for trick in TRICKS {
        let o = prober().probe(&https_as(trick), addr, T).await;
        assert_eq!(o.verdict, Verdict::ConfigError, "{trick}: {}", o.message);
    }
    assert_eq!(evil_hits.load(Ordering::SeqCst), 0);
}

/// Whether a socket with local port `port` on 127.0.0.1 is in TIME_WAIT.
fn in_time_wait(port: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let local = format!("0100007F:{port:04X}");
    table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.get(1) == Some(&local.as_str()) && fields.get(3) == Some(&"06")
    })
}

/// A listener that reports each client's port once the client has closed.
async fn close_watcher(http: bool) -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<u16>) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, peer)) = l.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                if http {
                    let _ = s.read(&mut buf).await;
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                        .await;
                }
                // Until the client closes (EOF or reset).
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
                let _ = tx.send(peer.port());
            });
        }
    });
    (addr, rx)
}

#[tokio::test]
async fn probe_connections_leave_no_time_wait_behind() {
    // The control: a plain connect-and-close from here does leave one, so
    // the check below can see it.
    let (addr, mut closed) = close_watcher(false).await;
    drop(std::net::TcpStream::connect(addr).expect("connect"));
    let port = closed.recv().await.expect("closed");
    assert!(in_time_wait(port), "the control left no TIME_WAIT socket");

    for (probe, http) in [(Probe::tcp(), false), (Probe::Http(http("/")), true)] {
        let (addr, mut closed) = close_watcher(http).await;
        let o = prober().probe(&probe, addr, T).await;
        assert_eq!(o.verdict, Verdict::Success, "{}", o.message);
        let port = closed.recv().await.expect("closed");
        assert!(!in_time_wait(port), "{probe:?} left a TIME_WAIT socket");
    }
}
