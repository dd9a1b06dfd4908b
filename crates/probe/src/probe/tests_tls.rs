//! TLS probes (HTTPS, TCP+TLS, gRPC over TLS) against real TLS servers on
//! 127.0.0.1, with certificates made by the test: a CA, server and client
//! certificates (rcgen), expired ones, and legacy keys and signatures that
//! only OpenSSL still serves (RSA-1024, SHA-1, P-521).

use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    date_time_ymd,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

const T: Duration = Duration::from_secs(2);

fn prober() -> Prober {
    Prober::new("kube-endpoints/test").expect("prober")
}

fn ring() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A CA and what it issues.
pub(crate) struct Pki {
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A server certificate and key, and the certificate's notAfter.
pub(crate) struct Leaf {
    chain: Vec<CertificateDer<'static>>,
    key_pem: String,
    cert_pem: String,
    pub(crate) not_after_unix: i64,
}

impl Leaf {
    fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).expect("key")
    }
}

impl Pki {
    pub(crate) fn new(name: &str) -> Pki {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).expect("CA");
        Pki {
            ca_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate for `localhost` and 127.0.0.1, valid until `year`.
    pub(crate) fn leaf(&self, year: i32, client: bool) -> Leaf {
        let key = KeyPair::generate().expect("key");
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .expect("params");
        params.not_before = date_time_ymd(2000, 1, 1);
        params.not_after = date_time_ymd(year, 6, 15);
        params.extended_key_usages = vec![if client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        let cert = params.signed_by(&key, &self.issuer).expect("leaf");
        Leaf {
            chain: vec![cert.der().clone()],
            key_pem: key.serialize_pem(),
            cert_pem: cert.pem(),
            not_after_unix: params.not_after.unix_timestamp(),
        }
    }

    pub(crate) fn tls(&self) -> TlsConfig {
        TlsConfig {
            ca_pem: Some(self.ca_pem.as_bytes().to_vec()),
            ..TlsConfig::default()
        }
    }
}

/// What a TLS server saw of one connection.
#[derive(Clone, Debug, Default)]
pub(crate) struct Seen {
    pub(super) sni: Option<String>,
    pub(super) alpn: Option<String>,
    /// HTTP version and `Host`/`:authority` of the request, if any.
    pub(super) version: Option<String>,
    pub(super) host: Option<String>,
    pub(super) handshake_ok: bool,
    /// Whether the handshake resumed an earlier session.
    pub(super) resumed: bool,
}

pub(crate) type Log = Arc<Mutex<Vec<Seen>>>;

#[derive(Clone, Copy)]
pub(crate) enum Serve {
    /// HTTP/1.1 or h2, whichever ALPN chose; 200 "ok".
    Http,
    /// The Redis-like line protocol of [`redis_reply`].
    Redis,
    /// gRPC health over h2, reporting SERVING for "".
    Grpc,
}

pub(crate) fn server_config(
    leaf: &Leaf,
    alpn: &[&[u8]],
    client_ca: Option<&Pki>,
) -> rustls::ServerConfig {
    let builder = rustls::ServerConfig::builder_with_provider(ring())
        .with_safe_default_protocol_versions()
        .expect("versions");
    let builder = match client_ca {
        Some(pki) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(pki.ca_pem.as_bytes()) {
                roots.add(c.expect("ca")).expect("add");
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), ring())
                .build()
                .expect("verifier");
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(leaf.chain.clone(), leaf.key())
        .expect("cert");
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

/// A TLS server on 127.0.0.1 serving `serve` on every connection.
pub(crate) async fn tls_server(config: rustls::ServerConfig, serve: Serve) -> (SocketAddr, Log) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    tls_serve(listener, config, serve)
}

/// As [`tls_server`], on a listener of the caller's.
pub(super) fn tls_serve(
    listener: TcpListener,
    config: rustls::ServerConfig,
    serve: Serve,
) -> (SocketAddr, Log) {
    let addr = listener.local_addr().expect("addr");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let log: Log = Arc::default();
    let record = log.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, record) = (acceptor.clone(), record.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    record.lock().expect("lock").push(Seen::default());
                    return;
                };
                let (_, session) = tls.get_ref();
                let seen = Seen {
                    sni: session.server_name().map(str::to_string),
                    alpn: session
                        .alpn_protocol()
                        .map(|p| String::from_utf8_lossy(p).into_owned()),
                    handshake_ok: true,
                    resumed: session.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
                    ..Seen::default()
                };
                let h2 = seen.alpn.as_deref() == Some("h2");
                let index = {
                    let mut log = record.lock().expect("lock");
                    log.push(seen);
                    log.len() - 1
                };
                match serve {
                    Serve::Http => serve_http(tls, h2, record, index).await,
                    Serve::Redis => serve_redis(tls, "master").await,
                    Serve::Grpc => serve_grpc(tls).await,
                }
            });
        }
    });
    (addr, log)
}

async fn serve_http<S>(io: S, h2: bool, record: Log, index: usize)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let record = record.clone();
        async move {
            let host = req
                .headers()
                .get("host")
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
                .or_else(|| req.uri().authority().map(|a| a.to_string()));
            {
                let mut log = record.lock().expect("lock");
                log[index].version = Some(format!("{:?}", req.version()));
                log[index].host = host;
            }
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok")).boxed()))
        }
    });
    let io = TokioIo::new(io);
    if h2 {
        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(io, service)
            .await;
    } else {
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(io, service)
            .await;
    }
}

/// `PING` → `+PONG`, `ROLE` → a RESP array naming `role` (as Redis answers
/// on a primary, "master", or a replica, "slave"), anything else an error.
fn redis_reply(line: &str, role: &str) -> Vec<u8> {
    match line.trim().to_ascii_uppercase().as_str() {
        "PING" => b"+PONG\r\n".to_vec(),
        "ROLE" if role == "master" => b"*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n".to_vec(),
        "ROLE" => {
            b"*5\r\n$5\r\nslave\r\n$9\r\n127.0.0.1\r\n:6379\r\n$9\r\nconnected\r\n:0\r\n".to_vec()
        }
        _ => b"-ERR unknown command\r\n".to_vec(),
    }
}

pub(super) async fn serve_redis<S>(mut io: S, role: &'static str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut pending = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        let Ok(n) = io.read(&mut buf).await else {
            return;
        };
        if n == 0 {
            return;
        }
        pending.extend_from_slice(&buf[..n]);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let reply = redis_reply(&String::from_utf8_lossy(&line), role);
            if io.write_all(&reply).await.is_err() {
                return;
            }
        }
    }
}

async fn serve_grpc<S>(io: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("db", tonic_health::ServingStatus::NotServing)
        .await;
    let service = hyper_util::service::TowerToHyperService::new(service);
    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(io), service)
        .await;
}

fn https(tls: Option<TlsConfig>) -> Probe {
    Probe::Http(HttpGet {
        scheme: Scheme::Https,
        path: "/ok".into(),
        tls,
        ..HttpGet::default()
    })
}

fn last(log: &Log) -> Seen {
    log.lock()
        .expect("lock")
        .last()
        .cloned()
        .expect("a connection")
}

/// `o` failed in the TLS handshake of the probe described as `what`.
fn assert_tls_failure(o: &Outcome, what: &str) {
    assert_eq!(o.verdict, Verdict::Failure, "{}", o.message);
    assert_eq!(o.reason, "tls", "{}", o.message);
    assert!(
        o.message.starts_with(&format!("{what}: tls: ")),
        "{}",
        o.message
    );
}

fn unix(o: &Outcome) -> Option<i64> {
    o.cert_not_after
        .map(|t| t.duration_since(UNIX_EPOCH).expect("after 1970").as_secs() as i64)
}

#[tokio::test]
async fn https_without_verification_accepts_any_certificate_and_reports_its_expiry() {
    let pki = Pki::new("probe test CA");
    let leaf = pki.leaf(2040, false);
    let (addr, log) = tls_server(server_config(&leaf, &[b"http/1.1"], None), Serve::Http).await;
    let o = prober().probe(&https(None), addr, T).await;
    assert_eq!(o.verdict, Verdict::Success, "{}", o.message);
    assert_eq!(unix(&o), Some(leaf.not_after_unix));
    let seen = last(&log);
    assert_eq!(seen.sni, None, "no SNI for an IP address");
    assert_eq!(seen.version.as_deref(), Some("HTTP/1.1"));
    // Every probe does a full handshake (and so sees the certificate).
    let again = prober();
    for _ in 0..2 {
        let o = again.probe(&https(None), addr, T).await;
        assert_eq!(o.verdict, Verdict::Success, "{}", o.message);
        assert_eq!(unix(&o), Some(leaf.not_after_unix));
    }
    assert!(log.lock().expect("lock").iter().all(|s| !s.resumed));
}

#[tokio::test]
async fn https_negotiates_h2_and_passes_an_h2_only_server() {
    let pki = Pki::new("probe test CA");
    let leaf = pki.leaf(2040, false);
    let (addr, log) = tls_server(server_config(&leaf, &[b"h2"], None), Serve::Http).await;
    let probe = Probe::Http(HttpGet {
        scheme: Scheme::Https,
        path: "/ok".into(),
        host: Some("vhost.test".into()),
        ..HttpGet::default()
    });
    let o = prober().probe(&probe, addr, T).await;
    assert_eq!(o.verdict, Verdict::Success, "{}", o.message);
    let seen = last(&log);
    assert_eq!(seen.alpn.as_deref(), Some("h2"));
    assert_eq!(seen.version.as_deref(), Some("HTTP/2.0"));
    assert_eq!(seen.sni.as_deref(), Some("vhost.test"));
    assert_eq!(seen.host.as_deref(), Some("vhost.test"), "the :authority");
}

#[tokio::test]
async fn https_with_verification_checks_ca_name_and_expiry() {
    let pki = Pki::new("probe test CA");
    let good = pki.leaf(2040, false);
    let (addr, log) = tls_server(server_config(&good, &[], None), Serve::Http).await;

    // The CA given: verified against the IP SAN, then against a name.
    let o = prober().probe(&https(Some(pki.tls())), addr, T).await;
    assert_eq!(o.verdict, Verdict::Success, "{}", o.message);
    let named = TlsConfig {
        server_name: Some("localhost".into()),
        ..pki.tls()
    };
    let o = prober().probe(&https(Some(named)), addr, T).await;
    assert_eq!(o.verdict, Verdict::Success, "{}", o.message);
    assert_eq!(last(&log).sni.as_deref(), Some("localhost"));

    // A name the certificate does not carry.
    let other = TlsConfig {
        server_name: Some("other.test".into()),
        ..pki.tls()
    };
    let o = prober().probe(&https(Some(other)), addr, T).await;
    assert_eq!(o.verdict, Verdict::Failure);
    assert_eq!(
        o.message,
        "http GET /ok: tls: certificate not valid for the server name"
    );
    assert_eq!(o.reason, "tls");

    // Another CA.
    let stranger = Pki::new("another CA");
    let o = prober().probe(&https(Some(stranger.tls())), addr, T).await;
    assert_eq!(
        o.message,
        "http GET /ok: tls: certificate signed by an unknown authority"
    );

    // An expired certificate: refused when verifying, with a stable
    // message; accepted without, with its expiry reported.
    let expired = pki.leaf(2001, false);
    let (addr, _) = tls_server(server_config(&expired, &[], None), Serve::Http).await;
    let first = prober().probe(&https(Some(pki.tls())), addr, T).await;
    let second = prober().probe(&https(Some(pki.tls())), addr, T).await;
    assert_eq!(first.verdict, Verdict::Failure);
    assert_eq!(first.message, "http GET /ok: tls: certificate expired");
    assert_eq!(first.message, second.message, "no times in the message");
    let off = TlsConfig {
        verify: Some(false),
        ..pki.tls()
    };
    let o = prober().probe(&https(Some(off)), addr, T).await;
    assert_eq!(o.verdict, Verdict::Success, "{}", o.message);
    assert_eq!(unix(&o), Some(expired.not_after_unix));
}

#[tokio::test]
async fn mutual_tls_needs_the_client_certificate() {
    let pki = Pki::new("probe test CA");
    let leaf = pki.leaf(2040, false);
    let client = pki.leaf(2040, true);
    let (addr, log) = tls_server(
        server_config(&leaf, &[b"http/1.1"], Some(&pki)),
        Serve::Http,
    )
    .await;
    let with_cert = TlsConfig {
        client_cert_pem: Some(client.cert_pem.as_bytes().to_vec()),
        client_key_pem: Some(client.key_pem.as_bytes().to_vec()),
        ..pki.tls()
    };
    let o = prober()
        .probe(&https(Some(with_cert.clone())), addr, T)
        .await;
    assert_eq!(o.verdict, Verdict::Success, "{}", o.message);
    assert!(last(&log).handshake_ok);

    let o = prober().probe(&https(Some(pki.tls())), addr, T).await;
    assert_eq!(o.verdict, Verdict::Failure);
    assert_eq!(
        o.message,
        "http GET /ok: tls: the server requires a client certificate"
    );

    // A certificate from another CA is refused by the server.
    let stranger = Pki::new("another CA").leaf(2040, true);
    let wrong = TlsConfig {
        client_cert_pem: Some(stranger.cert_pem.as_bytes().to_vec()),
        client_key_pem: Some(stranger.key_pem.as_bytes().to_vec()),
        ..pki.tls()
    };
    let o = prober().probe(&https(Some(wrong)), addr, T).await;
    assert_tls_failure(&o, "http GET /ok");

    // A key without its certificate is a configuration error, and the
    // key's bytes are never echoed.
    let half = TlsConfig {
        client_cert_pem: None,
        ..with_cert
    };
    let before = log.lock().expect("lock").len();
    let o = prober().probe(&https(Some(half)), addr, T).await;
    assert_eq!(o.verdict, Verdict::ConfigError);
    assert_eq!(
        o.message,
        "http GET /ok: configuration error: tls: client certificate and key must be given together"
    );
    assert_eq!(log.lock().expect("lock").len(), before, "not contacted");
}

/// A CA bundle with no certificate and a server name that is no host
/// name, each with the error it gives.
fn bad_ca_or_server_name(server_name: &str) -> [(TlsConfig, String); 2] {
    [
        (
            TlsConfig {
                ca_pem: Some(b"not a pem".to_vec()),
                ..TlsConfig::default()
            },
            "tls: CA bundle holds no usable certificate".to_string(),
        ),
        (
            TlsConfig {
                server_name: Some(server_name.into()),
                ..TlsConfig::default()
            },
            format!(
                "tls: server name {server_name:?} must be a DNS name or an IP address (only letters, digits, '-' and '.')"
            ),
        ),
    ]
}

#[tokio::test]
async fn bad_tls_settings_are_configuration_errors() {
    let (addr, log) = {
        let pki = Pki::new("probe test CA");
        tls_server(
            server_config(&pki.leaf(2040, false), &[], None),
            Serve::Http,
        )
        .await
    };
    for (tls, detail) in bad_ca_or_server_name("x@127.0.0.1") {
        let o = prober().probe(&https(Some(tls)), addr, T).await;
        assert_eq!(o.verdict, Verdict::ConfigError, "{}", o.message);
        assert_eq!(
            o.message,
            format!("http GET /ok: configuration error: {detail}")
        );
    }
    assert!(log.lock().expect("lock").is_empty(), "never contacted");
}

#[tokio::test]
async fn minimum_tls_version_is_enforced() {
    let pki = Pki::new("probe test CA");
    let leaf = pki.leaf(2040, false);
    let mut config = rustls::ServerConfig::builder_with_provider(ring())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(leaf.chain.clone(), leaf.key())
        .expect("cert");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let (addr, _) = tls_server(config, Serve::Http).await;
    let o = prober().probe(&https(None), addr, T).await;
    assert_eq!(
        o.verdict,
        Verdict::Success,
        "TLS 1.2 by default: {}",
        o.message
    );
    let tls13 = TlsConfig {
        min_version: Some(TlsVersion::Tls13),
        ..TlsConfig::default()
    };
    let o = prober().probe(&https(Some(tls13)), addr, T).await;
    assert_tls_failure(&o, "http GET /ok");
}

#[tokio::test]
async fn tcp_over_tls_with_send_and_expect() {
    let pki = Pki::new("probe test CA");
    let leaf = pki.leaf(2040, false);
    let (addr, log) = tls_server(server_config(&leaf, &[], None), Serve::Redis).await;
    let probe = |send: &[u8], expect: &[u8], tls: TlsConfig| {
        Probe::Tcp(TcpProbe {
            send: send.to_vec(),
            expect: Some(Expect::Contains(expect.to_vec())),
            tls: Some(tls),
        })
    };
    let o = prober()
        .probe(&probe(b"PING\r\n", b"+PONG", pki.tls()), addr, T)
        .await;
    assert_eq!(o.verdict, Verdict::Success, "{}", o.message);
    assert_eq!(unix(&o), Some(leaf.not_after_unix));
    let o = prober()
        .probe(&probe(b"ROLE\r\n", b"master", pki.tls()), addr, T)
        .await;
    assert_eq!(o.verdict, Verdict::Success, "{}", o.message);
    assert!(log.lock().expect("lock").iter().all(|s| s.handshake_ok));

    // TLS without the server: a plain TCP listener does not do TLS.
    let plain = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let plain_addr = plain.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((s, _)) = plain.accept().await {
            tokio::spawn(serve_redis(s, "master"));
        }
    });
    let o = prober()
        .probe(
            &probe(b"PING\r\n", b"+PONG", TlsConfig::default()),
            plain_addr,
            T,
        )
        .await;
    assert_tls_failure(&o, &format!("tcp {plain_addr}"));
}

#[tokio::test]
async fn grpc_over_tls() {
    let pki = Pki::new("probe test CA");
    let leaf = pki.leaf(2040, false);
    let (addr, log) = tls_server(server_config(&leaf, &[b"h2"], None), Serve::Grpc).await;
    let grpc = |service: &str, tls: TlsConfig| {
        Probe::Grpc(GrpcProbe {
            service: service.into(),
            tls: Some(tls),
        })
    };
    let o = prober().probe(&grpc("", pki.tls()), addr, T).await;
    assert_eq!(o.verdict, Verdict::Success, "{}", o.message);
    assert_eq!(unix(&o), Some(leaf.not_after_unix));
    assert_eq!(last(&log).alpn.as_deref(), Some("h2"));

    let named = TlsConfig {
        server_name: Some("localhost".into()),
        ..pki.tls()
    };
    let o = prober().probe(&grpc("db", named), addr, T).await;
    assert_eq!(o.verdict, Verdict::Failure);
    assert_eq!(o.message, "grpc health check \"db\": NOT_SERVING");
    assert_eq!(last(&log).sni.as_deref(), Some("localhost"));

    // Plaintext gRPC against the TLS server fails, in time.
    let o = prober()
        .probe(
            &Probe::Grpc(GrpcProbe {
                service: String::new(),
                tls: None,
            }),
            addr,
            T,
        )
        .await;
    assert_eq!(o.verdict, Verdict::Failure);
}

/// `openssl s_server -www` with a key and certificate made by `openssl req`
/// (`newkey`, e.g. `rsa:1024`), answering HTTP on 127.0.0.1. Only OpenSSL
/// still serves such keys and signatures; rustls and ring refuse to.
struct OpenSsl {
    child: std::process::Child,
    addr: SocketAddr,
    _dir: TempDir,
}

impl Drop for OpenSsl {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn openssl_server(newkey: &[&str], digest: &str, server_args: &[&str]) -> OpenSsl {
    use std::process::{Command, Stdio};
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "ke-probe-openssl-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let dir = TempDir(dir);
    let key = dir.0.join("key.pem");
    let cert = dir.0.join("cert.pem");
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
        ])
        .args(newkey)
        .arg(digest)
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("the openssl command (Debian package openssl) is needed for this test");
    assert!(status.success(), "openssl req {newkey:?} failed");
    let mut child = Command::new("openssl")
        .args(["s_server", "-accept", "127.0.0.1:0", "-www", "-key"])
        .arg(&key)
        .arg("-cert")
        .arg(&cert)
        .args(server_args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_server");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("s_server printed its address")
            .expect("line");
        if let Some(addr) = line.strip_prefix("ACCEPT ") {
            break addr.parse().expect("address");
        }
    };
    // Keep draining its output so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    OpenSsl {
        child,
        addr,
        _dir: dir,
    }
}

#[tokio::test]
async fn legacy_servers_the_kubelet_accepts_pass_without_verification() {
    // SECLEVEL=0 lets OpenSSL 3 use SHA-1 at all.
    let legacy = ["-cipher", "DEFAULT:@SECLEVEL=0"];
    let cases: [(&str, &[&str], &str, Vec<&str>); 3] = [
        (
            "RSA-1024",
            &["-newkey", "rsa:1024"],
            "-sha256",
            legacy.to_vec(),
        ),
        (
            "SHA-1 handshake signature",
            &["-newkey", "rsa:2048"],
            "-sha1",
            [&legacy[..], &["-tls1_2", "-sigalgs", "RSA+SHA1"]].concat(),
        ),
        (
            "P-521",
            &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-521"],
            "-sha512",
            vec!["-sigalgs", "ECDSA+SHA512"],
        ),
    ];
    for (name, newkey, digest, args) in cases {
        let server = openssl_server(newkey, digest, &args);
        let o = prober().probe(&https(None), server.addr, T).await;
        assert_eq!(o.verdict, Verdict::Success, "{name}: {}", o.message);
        assert!(o.cert_not_after.is_some(), "{name}: expiry reported");
    }
}

#[test]
fn check_finds_bad_settings_without_a_server() {
    let pki = Pki::new("check CA");
    let client = pki.leaf(2040, true);
    let good = TlsConfig {
        client_cert_pem: Some(client.cert_pem.as_bytes().to_vec()),
        client_key_pem: Some(client.key_pem.as_bytes().to_vec()),
        server_name: Some("db.example".into()),
        ..pki.tls()
    };
    assert_eq!(good.check(), Ok(()));
    // Verification against the system roots is not the checker's business.
    let system = TlsConfig {
        verify: Some(true),
        ..TlsConfig::default()
    };
    assert_eq!(system.check(), Ok(()));
    let other = pki.leaf(2041, true);
    let bad_pair = [
        (
            TlsConfig {
                client_key_pem: Some(other.key_pem.as_bytes().to_vec()),
                ..good.clone()
            },
            "tls: client certificate and key do not form a usable pair".to_string(),
        ),
        (
            TlsConfig {
                client_key_pem: None,
                ..good.clone()
            },
            "tls: client certificate and key must be given together".to_string(),
        ),
    ];
    for (tls, detail) in bad_ca_or_server_name("x@y").into_iter().chain(bad_pair) {
        let err = tls.check().expect_err(&detail);
        assert_eq!(err, detail);
        assert!(!err.contains("PRIVATE KEY"), "no key bytes in {err}");
    }
}
