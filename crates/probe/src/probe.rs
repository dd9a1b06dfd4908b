//! One probe of one address, with the kubelet's semantics (fixed where
//! endpoints-operator was wrong; the README's "How probes behave" lists
//! them). A probe always returns an [`Outcome`] by its timeout; it never
//! panics and never hangs.
//!
//! Messages are part of the contract: they end up in `status` and Events, so
//! they never contain a response body, a duration measured at run time, or
//! anything else that would differ between two identical failures. Repeated
//! failures therefore give byte-equal messages and cause no status writes.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{ACCEPT, HOST, HeaderMap, HeaderName, HeaderValue, USER_AGENT};
use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use thiserror::Error;
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{Instant, timeout_at};

/// Body bytes read from an HTTP probe at most (as the kubelet does). Reading
/// stops as soon as this much has arrived; the body is never kept.
const MAX_BODY: usize = 10 * 1024;
/// Same-host redirects followed at most; the next one fails the probe.
const MAX_REDIRECTS: usize = 10;
/// Longest timeout honoured (one day); only absurd values are cut.
const MAX_TIMEOUT: Duration = Duration::from_secs(86_400);
/// Longest piece of peer-supplied text (a gRPC status message) put into an
/// outcome message, so a chatty server cannot bloat `status`.
const MAX_PEER_TEXT: usize = 200;

/// What to do to a host. One variant per kubelet handler.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Probe {
    /// Success when a TCP connection opens.
    Tcp,
    /// Success for an HTTP(S) status 200–399.
    Http(HttpGet),
    /// Send `data` (may be empty); success when at least one byte comes back.
    Udp { data: Vec<u8> },
    /// `grpc.health.v1.Health/Check` for `service` (empty: the whole server).
    Grpc { service: String },
}

/// An HTTP(S) GET probe.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HttpGet {
    pub scheme: Scheme,
    /// Request path (and query). Empty means `/`; a missing leading `/` is
    /// added.
    pub path: String,
    /// Virtual host: the `Host` header and, for HTTPS, the TLS server name.
    /// The connection still goes to the probed address. A `Host` entry in
    /// `headers` takes precedence. `None` or empty: the address itself.
    pub host: Option<String>,
    /// Extra request headers, sent in order; repeated names are all sent.
    /// `User-Agent`, `Accept` and `Host` here replace the defaults; an empty
    /// value for one of those three means the default. (The kubelet omits
    /// an empty `User-Agent` or `Accept`; reqwest always sends an `Accept`,
    /// so "default" is the one rule that holds for all three.)
    pub headers: Vec<(String, String)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// The probe type alone, for metrics labels (bounded cardinality).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProbeKind {
    Tcp,
    Http,
    Udp,
    Grpc,
}

impl ProbeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Tcp => "tcp",
            ProbeKind::Http => "http",
            ProbeKind::Udp => "udp",
            ProbeKind::Grpc => "grpc",
        }
    }
}

impl Probe {
    pub fn kind(&self) -> ProbeKind {
        match self {
            Probe::Tcp => ProbeKind::Tcp,
            Probe::Http(_) => ProbeKind::Http,
            Probe::Udp { .. } => ProbeKind::Udp,
            Probe::Grpc { .. } => ProbeKind::Grpc,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Success,
    /// The host did not pass (refused, silent, bad status, ...).
    Failure,
    /// The probe's own configuration is wrong (e.g. an invalid header); the
    /// host was not contacted. Counts as a failure for thresholds, but the
    /// message says it is a configuration error so nobody chases the host.
    ConfigError,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Success => "success",
            Verdict::Failure => "failure",
            Verdict::ConfigError => "config_error",
        }
    }
}

/// The result of one probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub verdict: Verdict,
    /// Empty on success. Never contains a response body or a measured
    /// duration, so that repeated failures give the same message.
    pub message: String,
    /// Wall time the probe took (for metrics only).
    pub latency: Duration,
}

/// Why a [`Prober`] could not be built. Probing itself never errors: every
/// problem is an [`Outcome`].
#[derive(Debug, Error)]
pub enum ProbeError {
    #[error("invalid HTTP probe User-Agent {0:?}")]
    InvalidUserAgent(String),
    #[error("cannot build the TLS configuration for HTTPS probes: {0}")]
    Tls(#[from] rustls::Error),
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(#[from] reqwest::Error),
}

impl ProbeError {
    /// A stable CamelCase reason, for logs, Events and conditions.
    pub fn reason(&self) -> &'static str {
        match self {
            ProbeError::InvalidUserAgent(_) => "InvalidUserAgent",
            ProbeError::Tls(_) => "TlsConfigError",
            ProbeError::HttpClient(_) => "HttpClientError",
        }
    }
}

/// Runs probes. Cheap to clone; one HTTP client is shared by all targets.
#[derive(Clone)]
pub struct Prober {
    inner: Arc<Inner>,
}

struct Inner {
    /// The shared client, for every HTTP probe except HTTPS with a virtual
    /// host (see [`Prober::http`]).
    http: reqwest::Client,
    /// Kept to build per-probe clients for HTTPS virtual hosts.
    tls: rustls::ClientConfig,
    user_agent: HeaderValue,
}

/// The TLS settings of HTTPS probes: the ring provider chosen explicitly
/// (reqwest is built with `rustls-no-provider`, and installing a
/// process-wide default from a library would surprise the binary), and no
/// certificate verification, as the kubelet does: a probe asks "does it
/// answer", not "is it who it claims to be".
fn tls_config() -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(AcceptAnyCertificate {
        algorithms: provider.signature_verification_algorithms,
    });
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    // reqwest is built without HTTP/2; the kubelet probes over HTTP/1.1 too.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Accepts any certificate chain and name, but still checks the handshake
/// signature against the presented certificate (as Go's
/// `InsecureSkipVerify` does), so the TLS session itself is sound.
#[derive(Debug)]
struct AcceptAnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// `resolve` pins a virtual host name to the probed address (HTTPS with a
/// virtual host only).
fn http_client(
    tls: &rustls::ClientConfig,
    resolve: Option<(&str, SocketAddr)>,
) -> Result<reqwest::Client, reqwest::Error> {
    let mut builder = reqwest::Client::builder()
        .tls_backend_preconfigured(tls.clone())
        // Probes go straight to the host, whatever HTTP_PROXY says.
        .no_proxy()
        // A fresh connection per probe: a reused one would hide a host that
        // stopped accepting connections.
        .pool_max_idle_per_host(0)
        .referer(false)
        .redirect(redirect_policy());
    if let Some((host, addr)) = resolve {
        builder = builder.resolve(host, addr);
    }
    builder.build()
}

/// Same-host redirects are followed (at most [`MAX_REDIRECTS`]); a redirect
/// to another host ends the probe with the 3xx, which counts as success. As
/// with the kubelet, "same host" compares the host name only, so a redirect
/// from http to https on the same host is followed.
fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let same_host = attempt
            .previous()
            .first()
            .is_none_or(|first| first.host_str() == attempt.url().host_str());
        if !same_host {
            attempt.stop()
        } else if attempt.previous().len() > MAX_REDIRECTS {
            // `previous` holds the original URL too: this is redirect 11.
            attempt.error("too many redirects")
        } else {
            attempt.follow()
        }
    })
}

impl Prober {
    /// `user_agent` is sent by HTTP probes unless a probe sets its own
    /// (the controller passes `kube-endpoints/<version>`).
    pub fn new(user_agent: impl Into<String>) -> Result<Self, ProbeError> {
        let user_agent = user_agent.into();
        let user_agent = HeaderValue::from_str(&user_agent)
            .map_err(|_| ProbeError::InvalidUserAgent(user_agent))?;
        let tls = tls_config()?;
        Ok(Prober {
            inner: Arc::new(Inner {
                http: http_client(&tls, None)?,
                tls,
                user_agent,
            }),
        })
    }

    /// Probe `addr` once. Returns by `timeout` whatever the host does.
    pub async fn probe(&self, probe: &Probe, addr: SocketAddr, timeout: Duration) -> Outcome {
        let started = std::time::Instant::now();
        // Libraries below add the timeout to `now` unchecked; an absurd one
        // must not panic them.
        let timeout = timeout.min(MAX_TIMEOUT);
        // One deadline for everything: each prober bounds its own steps by
        // it (for a precise message) and this call bounds the whole probe by
        // it again as a backstop. When both expire at once the prober's own
        // answer wins, because `timeout_at` polls the inner future first.
        let deadline = Instant::now() + timeout;
        let run = async {
            match probe {
                Probe::Tcp => tcp(addr, timeout, deadline).await,
                Probe::Http(get) => self.http(get, addr, timeout, deadline).await,
                Probe::Udp { data } => udp(addr, data, timeout, deadline).await,
                Probe::Grpc { service } => grpc(addr, service, timeout, deadline).await,
            }
        };
        let (verdict, message) = match timeout_at(deadline, run).await {
            Ok(result) => result,
            Err(_) => (Verdict::Failure, timed_out_message(probe, addr, timeout)),
        };
        Outcome {
            verdict,
            message,
            latency: started.elapsed(),
        }
    }

    async fn http(
        &self,
        get: &HttpGet,
        addr: SocketAddr,
        timeout: Duration,
        deadline: Instant,
    ) -> (Verdict, String) {
        let path = normalize_path(&get.path);
        let what = format!("http GET {path}");
        let headers = match self.request_headers(get) {
            Ok(h) => h,
            Err(detail) => return config_error(&what, &detail),
        };
        let virtual_host = headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .and_then(server_name)
            .map(str::to_string);
        // reqwest has no per-request TLS server name. For HTTPS with a
        // virtual host, put the name in the URL (so it is the SNI) and pin
        // it to the probed address in a client made for this probe; the
        // connection still goes to `addr`. Plain HTTP needs no SNI and uses
        // the shared client with the Host header alone.
        let (client, authority) = match (get.scheme, virtual_host) {
            (Scheme::Https, Some(name)) => {
                match http_client(&self.inner.tls, Some((&name, addr))) {
                    Ok(c) => {
                        let authority = format!("{name}:{}", addr.port());
                        (c, authority)
                    }
                    Err(e) => {
                        return config_error(
                            &what,
                            &format!("virtual host {name:?}: {}", innermost(&e)),
                        );
                    }
                }
            }
            _ => (self.inner.http.clone(), authority(addr)),
        };
        let url = format!("{}://{authority}{path}", get.scheme.as_str());
        let Ok(url) = reqwest::Url::parse(&url) else {
            return config_error(&what, &format!("invalid URL {url:?}"));
        };
        let request = client.get(url).headers(headers).timeout(timeout);
        let mut response = match timeout_at(deadline, request.send()).await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => {
                return (
                    Verdict::Failure,
                    format!("{what}: {}", http_error(&e, timeout)),
                );
            }
            Err(_) => {
                return (
                    Verdict::Failure,
                    format!("{what}: timed out after {}", secs(timeout)),
                );
            }
        };
        let status = response.status().as_u16();
        if !(200..400).contains(&status) {
            // The status decides; the body is neither needed nor shown.
            return (Verdict::Failure, format!("{what}: status {status}"));
        }
        // Like the kubelet, a success needs the (bounded) body to arrive:
        // a server that sends headers and then stalls is not healthy.
        let read_body = async {
            let mut read = 0usize;
            while read < MAX_BODY {
                match response.chunk().await? {
                    Some(chunk) => read += chunk.len(),
                    None => break,
                }
            }
            Ok::<(), reqwest::Error>(())
        };
        match timeout_at(deadline, read_body).await {
            Ok(Ok(())) => (Verdict::Success, String::new()),
            Ok(Err(e)) => (
                Verdict::Failure,
                format!(
                    "{what}: status {status}, reading the body: {}",
                    http_error(&e, timeout)
                ),
            ),
            Err(_) => (
                Verdict::Failure,
                format!(
                    "{what}: status {status}, reading the body: timed out after {}",
                    secs(timeout)
                ),
            ),
        }
    }

    /// The request headers: the probe's own, then the defaults it did not
    /// set. Values are never echoed in errors (they may hold credentials).
    fn request_headers(&self, get: &HttpGet) -> Result<HeaderMap, String> {
        let mut headers = HeaderMap::new();
        for (name, value) in &get.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("invalid header name {name:?}"))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| format!("invalid value for header {name:?}"))?;
            if value.is_empty() && [HOST, USER_AGENT, ACCEPT].contains(&name) {
                continue; // empty means "the default", as in the kubelet for Host
            }
            if name == HOST && headers.contains_key(HOST) {
                continue; // one Host only; the first wins, as in the kubelet
            }
            headers.append(name, value);
        }
        if !headers.contains_key(HOST)
            && let Some(host) = get.host.as_deref().filter(|h| !h.is_empty())
        {
            let value =
                HeaderValue::from_str(host).map_err(|_| format!("invalid host {host:?}"))?;
            headers.insert(HOST, value);
        }
        if !headers.contains_key(USER_AGENT) {
            headers.insert(USER_AGENT, self.inner.user_agent.clone());
        }
        if !headers.contains_key(ACCEPT) {
            headers.insert(ACCEPT, HeaderValue::from_static("*/*"));
        }
        Ok(headers)
    }
}

/// `""` → `/`, `healthz` → `/healthz`; anything else unchanged.
fn normalize_path(path: &str) -> String {
    if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    }
}

/// The DNS name in a Host header value, if it is a name and not an IP
/// literal (an IP needs no SNI, and rustls sends none for it anyway).
fn server_name(host: &str) -> Option<&str> {
    if host.starts_with('[') {
        return None; // [v6] or [v6]:port
    }
    let name = match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        Some(_) => return None, // a bare IPv6 literal, or nonsense
        None => host,
    };
    (!name.is_empty() && name.parse::<IpAddr>().is_err()).then_some(name)
}

/// `ip:port`, with IPv6 addresses bracketed, for URLs.
fn authority(addr: SocketAddr) -> String {
    match addr.ip() {
        IpAddr::V4(ip) => format!("{ip}:{}", addr.port()),
        IpAddr::V6(ip) => format!("[{ip}]:{}", addr.port()),
    }
}

fn config_error(what: &str, detail: &str) -> (Verdict, String) {
    (
        Verdict::ConfigError,
        format!("{what}: configuration error: {detail}"),
    )
}

/// The message of a probe stopped by the backstop, in the same words its
/// own prober would use.
fn timed_out_message(probe: &Probe, addr: SocketAddr, timeout: Duration) -> String {
    match probe {
        Probe::Tcp => format!("tcp connect {addr}: timed out after {}", secs(timeout)),
        Probe::Http(get) => format!(
            "http GET {}: timed out after {}",
            normalize_path(&get.path),
            secs(timeout)
        ),
        Probe::Udp { .. } => format!("udp {addr}: no reply within {}", secs(timeout)),
        Probe::Grpc { service } => format!(
            "grpc health check {service:?}: timed out after {}",
            secs(timeout)
        ),
    }
}

/// `1s`, `1500ms`: the configured timeout, never a measured one.
fn secs(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

fn http_error(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!("timed out after {}", secs(timeout));
    }
    if e.is_redirect() {
        return "too many redirects".to_string();
    }
    innermost(e)
}

/// The useful part of an error chain: the first I/O error in words that do
/// not vary ("connection refused"), else the innermost cause. Outer layers
/// only add URLs and "error sending request" noise.
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut current = e;
    loop {
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            return io_error(io);
        }
        match current.source() {
            Some(next) => current = next,
            None => return current.to_string(),
        }
    }
}

/// An I/O error in stable words. TLS and HTTP layers wrap errors in
/// `io::Error`s of kind `Other`, so look through those to what they wrap.
fn io_error(e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    let words = match e.kind() {
        ErrorKind::ConnectionRefused => "connection refused",
        ErrorKind::ConnectionReset => "connection reset",
        ErrorKind::ConnectionAborted => "connection aborted",
        ErrorKind::HostUnreachable => "host unreachable",
        ErrorKind::NetworkUnreachable => "network unreachable",
        ErrorKind::AddrNotAvailable => "address not available",
        ErrorKind::TimedOut => "timed out",
        ErrorKind::UnexpectedEof => "connection closed",
        _ => {
            return match e.get_ref() {
                Some(inner) => innermost(inner),
                None => e.to_string(),
            };
        }
    };
    words.to_string()
}

/// Peer-supplied text, cut to [`MAX_PEER_TEXT`] characters.
fn bounded(text: &str) -> String {
    match text.char_indices().nth(MAX_PEER_TEXT) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_string(),
    }
}

async fn tcp(addr: SocketAddr, timeout: Duration, deadline: Instant) -> (Verdict, String) {
    match timeout_at(deadline, TcpStream::connect(addr)).await {
        // Dropping the stream closes it; nothing is sent.
        Ok(Ok(_stream)) => (Verdict::Success, String::new()),
        Ok(Err(e)) => (
            Verdict::Failure,
            format!("tcp connect {addr}: {}", io_error(&e)),
        ),
        Err(_) => (
            Verdict::Failure,
            format!("tcp connect {addr}: timed out after {}", secs(timeout)),
        ),
    }
}

async fn udp(
    addr: SocketAddr,
    data: &[u8],
    timeout: Duration,
    deadline: Instant,
) -> (Verdict, String) {
    let local: SocketAddr = match addr {
        SocketAddr::V4(_) => (IpAddr::from([0u8; 4]), 0).into(),
        SocketAddr::V6(_) => (IpAddr::from([0u16; 8]), 0).into(),
    };
    let fail = |detail: String| (Verdict::Failure, format!("udp {addr}: {detail}"));
    let socket = match UdpSocket::bind(local).await {
        Ok(s) => s,
        Err(e) => return fail(format!("cannot open a socket: {e}")),
    };
    // A connected socket receives only from the host, and an ICMP
    // port-unreachable surfaces as ECONNREFUSED on send or recv.
    if let Err(e) = socket.connect(addr).await {
        return fail(io_error(&e));
    }
    let exchange = async {
        socket.send(data).await?;
        // One byte of room: the reply's content does not matter, only that
        // it has some. An empty datagram is not an answer; keep waiting.
        let mut buf = [0u8; 1];
        while socket.recv(&mut buf).await? == 0 {}
        Ok::<(), std::io::Error>(())
    };
    match timeout_at(deadline, exchange).await {
        Ok(Ok(())) => (Verdict::Success, String::new()),
        Ok(Err(e)) => fail(io_error(&e)),
        Err(_) => fail(format!("no reply within {}", secs(timeout))),
    }
}

async fn grpc(
    addr: SocketAddr,
    service: &str,
    timeout: Duration,
    deadline: Instant,
) -> (Verdict, String) {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

    let what = format!("grpc health check {service:?}");
    let timed_out = || {
        (
            Verdict::Failure,
            format!("{what}: timed out after {}", secs(timeout)),
        )
    };
    // Plaintext HTTP/2 (h2c), a new connection per probe like the kubelet.
    let endpoint =
        match tonic::transport::Endpoint::from_shared(format!("http://{}", authority(addr))) {
            Ok(e) => e.connect_timeout(timeout).timeout(timeout),
            Err(e) => return config_error(&what, &innermost(&e)),
        };
    let channel = match timeout_at(deadline, endpoint.connect()).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return (Verdict::Failure, format!("{what}: {}", innermost(&e))),
        Err(_) => return timed_out(),
    };
    let request = HealthCheckRequest {
        service: service.to_string(),
    };
    let mut client = HealthClient::new(channel);
    match timeout_at(deadline, client.check(request)).await {
        Ok(Ok(response)) => {
            let status = ServingStatus::try_from(response.into_inner().status)
                .unwrap_or(ServingStatus::Unknown);
            if status == ServingStatus::Serving {
                (Verdict::Success, String::new())
            } else {
                (
                    Verdict::Failure,
                    format!("{what}: {}", status.as_str_name()),
                )
            }
        }
        Ok(Err(status)) if status.code() == tonic::Code::Cancelled && is_tonic_timeout(&status) => {
            timed_out()
        }
        Ok(Err(status)) if status.message().is_empty() => {
            (Verdict::Failure, format!("{what}: {:?}", status.code()))
        }
        Ok(Err(status)) => (
            Verdict::Failure,
            format!("{what}: {:?}: {}", status.code(), bounded(status.message())),
        ),
        Err(_) => timed_out(),
    }
}

/// tonic reports its own request timeout as `Cancelled` with a
/// `TimeoutExpired` source.
fn is_tonic_timeout(status: &tonic::Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(s) = source {
        if s.is::<tonic::TimeoutExpired>() {
            return true;
        }
        source = s.source();
    }
    false
}

#[cfg(test)]
#[path = "probe_tests.rs"]
mod tests;
