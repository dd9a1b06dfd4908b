//! The service of a test host: TCP, HTTP, UDP echo and gRPC health
//! listeners on every address of the network namespace it runs in (one
//! dual-stack `[::]` socket per port, so IPv4 and IPv6 both reach it). A
//! control file switches it between healthy and unhealthy without closing a
//! port. Prints `ready` on stdout once every listener is bound.
//!
//! Control file (`--control-file PATH`): while it contains `unhealthy`, the
//! backend is unhealthy (HTTP `/healthz` 503, gRPC NOT_SERVING, UDP silent,
//! Redis `-LOADING`); while it contains `replica`, it plays a replica
//! (HTTP `/primary` 503 and `/replica` 200, Redis `ROLE` `slave`), else the
//! primary.
//! It is read every 100 ms and on SIGUSR1; after applying a new content the
//! backend writes the same content to `PATH.ack`.
//!
//! HTTPS (`--https PORT --tls-cert PEM --tls-key PEM`, optionally
//! `--tls-client-ca PEM` for mutual TLS) serves the same routes over TLS;
//! with `--require-header NAME:VALUE`, `/auth` answers 200 only to requests
//! carrying that header (so a test can tell that a probe sent it).
//!
//! Who answered: every listener reports the address a request arrived at
//! (the host's address that kube-proxy or the client chose), so that the
//! data-plane tests can tell which backend served each connection: TCP
//! writes it and closes, HTTP `/whoami` returns it, a UDP datagram `whoami`
//! gets it back, and every gRPC response carries it in the
//! `x-backend-address` header.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::Parser;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, UdpSocket};
use tokio::signal::unix::{SignalKind, signal};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// gRPC services reported by the health service.
const GRPC_SERVICES: [&str; 2] = ["", "backend"];

#[derive(Parser, Debug)]
#[command(about = "TCP/HTTP/UDP/gRPC-health test backend for kube-endpoints' test hosts")]
struct Args {
    /// Accept TCP connections on this port, write the address the connection
    /// arrived at and a newline, and close (repeatable).
    #[arg(long, value_name = "PORT")]
    tcp: Vec<u16>,
    /// Serve HTTP/1.1 on this port (repeatable): /healthz (200 "ok", 503 while
    /// unhealthy; / likewise), /whoami (200, the address the request arrived
    /// at), /status/{code}, /redirect-same (301 to /healthz), /redirect-off
    /// (302 to host off-host.invalid), /slow/{ms} (answers like /healthz after
    /// that delay), /primary and /replica (200 "primary"/"replica" when
    /// healthy and in that role, else 503), /role (200 "role: primary" or
    /// "role: replica", 503 while unhealthy).
    #[arg(long, value_name = "PORT")]
    http: Vec<u16>,
    /// Echo UDP datagrams on this port (repeatable); an empty datagram gets
    /// "ok", a datagram `whoami` the address it was sent to. Silent while
    /// unhealthy.
    #[arg(long, value_name = "PORT")]
    udp: Vec<u16>,
    /// Serve grpc.health.v1 for services "" and "backend" on this port
    /// (repeatable): SERVING, NOT_SERVING while unhealthy; every response has
    /// the header `x-backend-address`.
    #[arg(long, value_name = "PORT")]
    grpc: Vec<u16>,
    /// Answer Redis inline commands on this port (repeatable): `PING` gets
    /// `+PONG` (`-LOADING ...` while unhealthy), `ROLE` a `master` or
    /// `slave` reply as the control file says, anything else `-ERR`.
    #[arg(long, value_name = "PORT")]
    redis: Vec<u16>,
    /// Unhealthy while this file contains "unhealthy".
    #[arg(long, value_name = "PATH")]
    control_file: Option<PathBuf>,
    /// Serve the HTTP routes over TLS (HTTP/1.1) on this port (repeatable),
    /// with the certificate chain of --tls-cert and the key of --tls-key.
    #[arg(long, value_name = "PORT", requires_all = ["tls_cert", "tls_key"])]
    https: Vec<u16>,
    /// PEM certificate chain (leaf first) of the --https listeners.
    #[arg(long, value_name = "PATH")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of the --https listeners.
    #[arg(long, value_name = "PATH")]
    tls_key: Option<PathBuf>,
    /// PEM CA certificates: the --https listeners then require a client
    /// certificate signed by one of them (mutual TLS).
    #[arg(long, value_name = "PATH")]
    tls_client_ca: Option<PathBuf>,
    /// `NAME:VALUE`: HTTP(S) `/auth` answers 200 when the request carries
    /// header NAME with exactly VALUE, else 403 (without it, always 403).
    #[arg(long, value_name = "NAME:VALUE")]
    require_header: Option<String>,
}

/// A dual-stack socket bound to `[::]:port` (IPV6_V6ONLY off).
fn dual_stack(ty: Type, protocol: Protocol, port: u16) -> std::io::Result<Socket> {
    let socket = Socket::new(Domain::IPV6, ty, Some(protocol))?;
    socket.set_only_v6(false)?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)).into())?;
    Ok(socket)
}

fn tcp_listener(what: &str, port: u16) -> Result<TcpListener, String> {
    let bind = || {
        let socket = dual_stack(Type::STREAM, Protocol::TCP, port)?;
        socket.listen(1024)?;
        TcpListener::from_std(socket.into())
    };
    bind().map_err(|e| format!("cannot listen for {what} on [::]:{port}: {e}"))
}

fn udp_socket(port: u16) -> Result<UdpSocket, String> {
    let bind = || UdpSocket::from_std(dual_stack(Type::DGRAM, Protocol::UDP, port)?.into());
    bind().map_err(|e| format!("cannot bind udp [::]:{port}: {e}"))
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if let Err(e) = run(args).await {
        eprintln!("ke-testbackend: {e}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<(), String> {
    let healthy = Arc::new(AtomicBool::new(true));
    let replica = Arc::new(AtomicBool::new(false));
    let (reporter, grpc_service) = tonic_health::server::health_reporter();
    let mut control = Control {
        path: args.control_file.clone(),
        applied: None,
        healthy: healthy.clone(),
        replica: replica.clone(),
        reporter,
    };
    control.apply().await;
    // Before `ready`: SIGUSR1's default action would kill us.
    let mut nudge =
        signal(SignalKind::user_defined1()).map_err(|e| format!("cannot handle SIGUSR1: {e}"))?;

    for &port in &args.tcp {
        let listener = tcp_listener("tcp", port)?;
        tokio::spawn(async move {
            loop {
                // Keep going on transient errors (EMFILE…).
                if let Ok((stream, _)) = listener.accept().await {
                    tokio::spawn(tell_address(stream));
                }
            }
        });
    }
    let required: Arc<Option<(String, String)>> = Arc::new(
        args.require_header
            .as_deref()
            .map(|h| {
                h.split_once(':')
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .ok_or_else(|| format!("--require-header {h:?}: expected NAME:VALUE"))
            })
            .transpose()?,
    );
    let state = State {
        healthy: healthy.clone(),
        replica: replica.clone(),
        required,
    };
    for &port in &args.http {
        tokio::spawn(serve_http(tcp_listener("http", port)?, None, state.clone()));
    }
    if !args.https.is_empty() {
        let acceptor = tls_acceptor(
            args.tls_cert.as_deref(),
            args.tls_key.as_deref(),
            args.tls_client_ca.as_deref(),
        )?;
        for &port in &args.https {
            tokio::spawn(serve_http(
                tcp_listener("https", port)?,
                Some(acceptor.clone()),
                state.clone(),
            ));
        }
    }
    for &port in &args.redis {
        let listener = tcp_listener("redis", port)?;
        let state = state.clone();
        tokio::spawn(async move {
            loop {
                if let Ok((stream, _)) = listener.accept().await {
                    tokio::spawn(serve_redis(stream, state.clone()));
                }
            }
        });
    }
    // A reply from the wildcard socket leaves from the interface's primary
    // address, which a prober's connected socket discards when it asked an
    // alias: so also one socket per address present at start (they win over
    // the wildcard one); the wildcard socket covers addresses added later.
    let local = local_addresses();
    // What the wildcard socket reports to `whoami` (it cannot tell which
    // address a datagram was sent to): the host's first address.
    let primary = local
        .first()
        .map_or_else(|| "unknown".to_string(), ToString::to_string);
    for &port in &args.udp {
        tokio::spawn(serve_udp(
            udp_socket(port)?,
            healthy.clone(),
            primary.clone(),
        ));
        for ip in &local {
            // Best effort: the wildcard socket still answers for an address
            // that cannot be bound (e.g. one still in duplicate detection).
            match udp_socket_on(*ip, port) {
                Ok(socket) => {
                    tokio::spawn(serve_udp(socket, healthy.clone(), ip.to_string()));
                }
                Err(e) => eprintln!("ke-testbackend: {e}; the wildcard socket answers instead"),
            }
        }
    }
    for &port in &args.grpc {
        let incoming = tonic::transport::server::TcpIncoming::from(tcp_listener("grpc", port)?);
        let service = grpc_service.clone();
        tokio::spawn(async move {
            if let Err(e) = tonic::transport::Server::builder()
                .add_service(AddressHeader(service))
                .serve_with_incoming(incoming)
                .await
            {
                eprintln!("ke-testbackend: grpc on port {port}: {e}");
            }
        });
    }
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "ready")
            .and_then(|()| out.flush())
            .map_err(|e| format!("cannot print ready: {e}"))?;
    }

    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = nudge.recv() => {}
        }
        control.apply().await;
    }
}

/// The health switch, driven by the control file.
struct Control {
    path: Option<PathBuf>,
    /// The content applied last (None: nothing yet).
    applied: Option<String>,
    healthy: Arc<AtomicBool>,
    replica: Arc<AtomicBool>,
    reporter: HealthReporter,
}

/// The switches the HTTP and Redis listeners read.
#[derive(Clone)]
struct State {
    healthy: Arc<AtomicBool>,
    replica: Arc<AtomicBool>,
    /// `--require-header`: what `/auth` checks.
    required: Arc<Option<(String, String)>>,
}

impl State {
    fn healthy(&self) -> bool {
        self.healthy.load(Ordering::SeqCst)
    }

    fn replica(&self) -> bool {
        self.replica.load(Ordering::SeqCst)
    }
}

impl Control {
    async fn apply(&mut self) {
        let content = match &self.path {
            Some(p) => std::fs::read_to_string(p).unwrap_or_default(),
            None => String::new(),
        };
        if self.applied.as_ref() == Some(&content) {
            return;
        }
        let healthy = !content.contains("unhealthy");
        self.healthy.store(healthy, Ordering::SeqCst);
        self.replica
            .store(content.contains("replica"), Ordering::SeqCst);
        let status = if healthy {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        for service in GRPC_SERVICES {
            self.reporter.set_service_status(service, status).await;
        }
        if let Some(path) = &self.path
            && !content.is_empty()
            && let Err(e) = acknowledge(path, &content)
        {
            eprintln!("ke-testbackend: cannot acknowledge {}: {e}", path.display());
        }
        self.applied = Some(content);
    }
}

/// Write `content` to `<path>.ack` atomically.
fn acknowledge(path: &Path, content: &str) -> std::io::Result<()> {
    let mut ack = path.as_os_str().to_owned();
    ack.push(".ack");
    let mut tmp = ack.clone();
    tmp.push(".tmp");
    std::fs::write(&tmp, content)?;
    std::fs::rename(&tmp, &ack)
}

/// A UDP socket bound to one address (SO_REUSEADDR, beside the wildcard one).
fn udp_socket_on(ip: std::net::IpAddr, port: u16) -> Result<UdpSocket, String> {
    let bind = || {
        let domain = if ip.is_ipv4() {
            Domain::IPV4
        } else {
            Domain::IPV6
        };
        let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
        if ip.is_ipv6() {
            socket.set_only_v6(true)?;
        }
        socket.set_reuse_address(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&SocketAddr::new(ip, port).into())?;
        UdpSocket::from_std(socket.into())
    };
    bind().map_err(|e| format!("cannot bind udp {ip}:{port}: {e}"))
}

/// Every unicast address of this namespace (getifaddrs), except loopback
/// and link-local ones.
fn local_addresses() -> Vec<std::net::IpAddr> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return out;
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned.
        let ifa = unsafe { &*cur };
        if !ifa.ifa_addr.is_null() {
            // SAFETY: ifa_addr points to a sockaddr of the family it names.
            let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
            let ip = match family {
                libc::AF_INET => {
                    // SAFETY: an AF_INET address is a sockaddr_in.
                    let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                    Some(std::net::IpAddr::from(
                        u32::from_be(sin.sin_addr.s_addr).to_be_bytes(),
                    ))
                }
                libc::AF_INET6 => {
                    // SAFETY: an AF_INET6 address is a sockaddr_in6.
                    let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                    Some(std::net::IpAddr::from(sin6.sin6_addr.s6_addr))
                }
                _ => None,
            };
            if let Some(ip) = ip {
                let link_local =
                    matches!(ip, std::net::IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80);
                if !ip.is_loopback() && !link_local && !out.contains(&ip) {
                    out.push(ip);
                }
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: freeing the list getifaddrs allocated, once.
    unsafe { libc::freeifaddrs(head) };
    out
}

/// `addr` as the client addressed it: an IPv4 address that arrived on a
/// dual-stack socket as `::ffff:a.b.c.d` is shown as `a.b.c.d`.
fn canonical(addr: SocketAddr) -> IpAddr {
    addr.ip().to_canonical()
}

/// TCP: write the address the connection arrived at, then close.
async fn tell_address(mut stream: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    if let Ok(local) = stream.local_addr() {
        let _ = stream
            .write_all(format!("{}\n", canonical(local)).as_bytes())
            .await;
        let _ = stream.shutdown().await;
    }
}

async fn serve_udp(socket: UdpSocket, healthy: Arc<AtomicBool>, address: String) {
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((n, from)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        if healthy.load(Ordering::SeqCst) {
            // An empty datagram is no answer to a prober: say "ok" instead.
            let reply = match &buf[..n] {
                b"" => &b"ok"[..],
                b"whoami" => address.as_bytes(),
                data => data,
            };
            let _ = socket.send_to(reply, from).await;
        }
    }
}

/// The TLS side of the `--https` listeners (HTTP/1.1 only).
fn tls_acceptor(
    cert: Option<&Path>,
    key: Option<&Path>,
    client_ca: Option<&Path>,
) -> Result<tokio_rustls::TlsAcceptor, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let (Some(cert), Some(key)) = (cert, key) else {
        return Err("--https needs --tls-cert and --tls-key".into());
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("--tls-cert {}: {e}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("--tls-key {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS server configuration: {e}"))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            let cas = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("--tls-client-ca {}: {e}", path.display()))?;
            roots.add_parsable_certificates(cas);
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| format!("--tls-client-ca {}: {e}", path.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("TLS server configuration: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

async fn serve_http(listener: TcpListener, tls: Option<tokio_rustls::TlsAcceptor>, state: State) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let state = state.clone();
        let address = stream
            .local_addr()
            .map_or_else(|_| "unknown".to_string(), |a| canonical(a).to_string());
        let tls = tls.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let state = state.clone();
                let address = address.clone();
                async move {
                    if req.uri().path() == "/auth" {
                        let required = state.required.as_ref().as_ref();
                        return Ok::<_, Infallible>(auth(&req, required));
                    }
                    Ok::<_, Infallible>(route(req.uri().path(), &state, &address).await)
                }
            });
            let builder = hyper::server::conn::http1::Builder::new();
            match tls {
                None => {
                    let _ = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                }
                Some(acceptor) => {
                    if let Ok(stream) = acceptor.accept(stream).await {
                        let _ = builder
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    }
                }
            }
        });
    }
}

/// `/auth`: 200 when the required header has the required value, else 403.
fn auth(req: &Request<Incoming>, required: Option<&(String, String)>) -> Response<Full<Bytes>> {
    let passed = required.is_some_and(|(name, value)| {
        req.headers()
            .get(name.as_str())
            .is_some_and(|v| v.as_bytes() == value.as_bytes())
    });
    let status = if passed {
        StatusCode::OK
    } else {
        StatusCode::FORBIDDEN
    };
    let mut response = Response::new(Full::new(Bytes::from(format!("{}\n", status.as_u16()))));
    *response.status_mut() = status;
    response
}

async fn route(path: &str, state: &State, address: &str) -> Response<Full<Bytes>> {
    if path == "/whoami" {
        return Response::new(Full::new(Bytes::from(format!("{address}\n"))));
    }
    if let Some(response) = role_route(path, state) {
        return response;
    }
    let healthy: &AtomicBool = &state.healthy;
    let health = |healthy: &AtomicBool| {
        if healthy.load(Ordering::SeqCst) {
            (StatusCode::OK, None)
        } else {
            (StatusCode::SERVICE_UNAVAILABLE, None)
        }
    };
    let (status, location) = match path {
        "/healthz" | "/" => health(healthy),
        "/redirect-same" => (StatusCode::MOVED_PERMANENTLY, Some("/healthz")),
        "/redirect-off" => (StatusCode::FOUND, Some("http://off-host.invalid/")),
        p => {
            if let Some(code) = p.strip_prefix("/status/") {
                let status = code
                    .parse::<u16>()
                    .ok()
                    .and_then(|c| StatusCode::from_u16(c).ok());
                (status.unwrap_or(StatusCode::BAD_REQUEST), None)
            } else if let Some(ms) = p
                .strip_prefix("/slow/")
                .and_then(|ms| ms.parse::<u64>().ok())
            {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                health(healthy)
            } else {
                (StatusCode::NOT_FOUND, None)
            }
        }
    };
    let body = match status {
        StatusCode::OK => "ok\n".to_string(),
        StatusCode::SERVICE_UNAVAILABLE => "unhealthy\n".to_string(),
        s => format!("{}\n", s.as_u16()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Some(location) = location {
        response.headers_mut().insert(
            hyper::header::LOCATION,
            hyper::header::HeaderValue::from_static(location),
        );
    }
    response
}

/// `/primary`, `/replica` and `/role`, as a Patroni-like REST API answers.
fn role_route(path: &str, state: &State) -> Option<Response<Full<Bytes>>> {
    let role = if state.replica() {
        "replica"
    } else {
        "primary"
    };
    let (ok, body) = match path {
        "/primary" => (
            state.healthy() && role == "primary",
            "primary\n".to_string(),
        ),
        "/replica" => (
            state.healthy() && role == "replica",
            "replica\n".to_string(),
        ),
        "/role" => (state.healthy(), format!("role: {role}\n")),
        _ => return None,
    };
    let (status, body) = if ok {
        (StatusCode::OK, body)
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable\n".to_string())
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    Some(response)
}

/// Redis inline commands, one per line, until the client closes (or sends
/// a line longer than 4 KiB).
async fn serve_redis(stream: tokio::net::TcpStream, state: State) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read.take(1 << 20)).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if line.len() > 4096 {
            return;
        }
        let reply: &[u8] = match line.trim().to_ascii_uppercase().as_str() {
            _ if !state.healthy() => b"-LOADING Redis is loading the dataset in memory\r\n",
            "PING" => b"+PONG\r\n",
            "ROLE" if state.replica() => {
                b"*5\r\n$5\r\nslave\r\n$10\r\n198.18.0.1\r\n:6379\r\n$9\r\nconnected\r\n:0\r\n"
            }
            "ROLE" => b"*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n",
            _ => b"-ERR unknown command\r\n",
        };
        if write.write_all(reply).await.is_err() {
            return;
        }
    }
}

/// The gRPC health service, with the address each request arrived at in the
/// response header `x-backend-address` (tonic puts the connection's
/// addresses into every request's extensions).
#[derive(Clone)]
struct AddressHeader<S>(S);

impl<S: tonic::server::NamedService> tonic::server::NamedService for AddressHeader<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B, R> tower_service::Service<http::Request<B>> for AddressHeader<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let address = req
            .extensions()
            .get::<tonic::transport::server::TcpConnectInfo>()
            .and_then(tonic::transport::server::TcpConnectInfo::local_addr)
            .and_then(|a| http::HeaderValue::try_from(canonical(a).to_string()).ok());
        let response = self.0.call(req);
        Box::pin(async move {
            let mut response = response.await?;
            if let Some(address) = address {
                response.headers_mut().insert("x-backend-address", address);
            }
            Ok(response)
        })
    }
}
