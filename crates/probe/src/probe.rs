//! One probe of one address, with the semantics of SPEC §3 (the kubelet's,
//! fixed where endpoints-operator was wrong). A probe always returns an
//! [`Outcome`] by its timeout; it never panics and never hangs.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{ACCEPT, HOST, HeaderMap, HeaderName, HeaderValue, USER_AGENT};
use thiserror::Error;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};

/// Body bytes read from an HTTP probe at most (as the kubelet does).
const MAX_BODY: usize = 10 * 1024;
/// Same-host redirects followed at most.
const MAX_REDIRECTS: usize = 10;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Probe {
    Tcp,
    Http(HttpGet),
    Udp { data: Vec<u8> },
    Grpc { service: String },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HttpGet {
    pub scheme: Scheme,
    /// Starts with `/`.
    pub path: String,
    /// Virtual host: Host header and TLS server name; the connection still
    /// goes to the probed address.
    pub host: Option<String>,
    pub headers: Vec<(String, String)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    Http,
    Https,
}

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
    Failure,
    /// The probe's own configuration is wrong (e.g. an invalid header); the
    /// host was not blamed. Counts as a failure for thresholds.
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

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub verdict: Verdict,
    /// Empty on success. Never contains a response body or a duration, so
    /// that repeated failures give the same message.
    pub message: String,
    pub latency: Duration,
}

#[derive(Debug, Error)]
pub enum ProbeError {
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(#[from] reqwest::Error),
}

impl ProbeError {
    pub fn reason(&self) -> &'static str {
        match self {
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
    http: reqwest::Client,
    user_agent: String,
}

fn install_crypto_provider() {
    // reqwest is built without a default provider; ring is ours. An error
    // only means a provider is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn http_client(resolve: Option<(&str, SocketAddr)>) -> Result<reqwest::Client, reqwest::Error> {
    install_crypto_provider();
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .danger_accept_invalid_certs(true)
        .pool_max_idle_per_host(0)
        .redirect(redirect_policy());
    if let Some((host, addr)) = resolve {
        builder = builder.resolve(host, addr);
    }
    builder.build()
}

/// Same-host redirects are followed up to 10; a redirect to another host
/// ends the probe with the 3xx, which counts as success.
fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let same_host = attempt.previous().first().is_none_or(|first| {
            first.host_str() == attempt.url().host_str()
                && first.port_or_known_default() == attempt.url().port_or_known_default()
        });
        if !same_host {
            attempt.stop()
        } else if attempt.previous().len() > MAX_REDIRECTS {
            attempt.error("too many redirects")
        } else {
            attempt.follow()
        }
    })
}

impl Prober {
    /// `user_agent` is sent by HTTP probes unless a probe sets its own.
    pub fn new(user_agent: impl Into<String>) -> Result<Self, ProbeError> {
        Ok(Prober {
            inner: Arc::new(Inner {
                http: http_client(None)?,
                user_agent: user_agent.into(),
            }),
        })
    }

    /// Probe `addr` once. Returns by `timeout` whatever the host does.
    pub async fn probe(&self, probe: &Probe, addr: SocketAddr, timeout: Duration) -> Outcome {
        let started = Instant::now();
        let run = async {
            match probe {
                Probe::Tcp => tcp(addr, timeout).await,
                Probe::Http(get) => self.http(get, addr, timeout).await,
                Probe::Udp { data } => udp(addr, data, timeout).await,
                Probe::Grpc { service } => grpc(addr, service, timeout).await,
            }
        };
        // Every prober bounds its own I/O; this is the backstop.
        let (verdict, message) = match tokio::time::timeout(timeout, run).await {
            Ok(result) => result,
            Err(_) => (
                Verdict::Failure,
                format!("{} {addr}: timed out after {}", probe.kind().as_str(), secs(timeout)),
            ),
        };
        Outcome {
            verdict,
            message,
            latency: started.elapsed(),
        }
    }

    async fn http(&self, get: &HttpGet, addr: SocketAddr, timeout: Duration) -> (Verdict, String) {
        let what = format!("http GET {}", get.path);
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("*/*"));
        match HeaderValue::from_str(&self.inner.user_agent) {
            Ok(v) => {
                headers.insert(USER_AGENT, v);
            }
            Err(_) => return config_error(&what, "invalid User-Agent"),
        }
        if let Some(host) = &get.host {
            match HeaderValue::from_str(host) {
                Ok(v) => {
                    headers.insert(HOST, v);
                }
                Err(_) => return config_error(&what, &format!("invalid host {host:?}")),
            }
        }
        for (name, value) in &get.headers {
            let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) else {
                return config_error(&what, &format!("invalid header {name:?}"));
            };
            headers.insert(n, v);
        }
        let scheme = match get.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        let virtual_host = headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .map(|h| h.split(':').next().unwrap_or(h).to_string())
            .filter(|h| h.parse::<IpAddr>().is_err() && !h.is_empty());
        // For HTTPS with a virtual host, connect by name so that the TLS
        // server name matches, pinning the name to the probed address.
        let (client, authority) = match (get.scheme, &virtual_host) {
            (Scheme::Https, Some(name)) => match http_client(Some((name, addr))) {
                Ok(c) => (c, format!("{name}:{}", addr.port())),
                Err(e) => return config_error(&what, &e.to_string()),
            },
            _ => (self.inner.http.clone(), authority(addr)),
        };
        let url = format!("{scheme}://{authority}{}", get.path);
        let Ok(url) = reqwest::Url::parse(&url) else {
            return config_error(&what, &format!("invalid URL {url:?}"));
        };
        let request = client.get(url).headers(headers).timeout(timeout);
        match request.send().await {
            Ok(mut response) => {
                let status = response.status();
                // Read a bounded prefix of the body, then drop the connection.
                let mut read = 0usize;
                while read < MAX_BODY {
                    match response.chunk().await {
                        Ok(Some(chunk)) => read += chunk.len(),
                        _ => break,
                    }
                }
                if (200..400).contains(&status.as_u16()) {
                    (Verdict::Success, String::new())
                } else {
                    (Verdict::Failure, format!("{what}: status {}", status.as_u16()))
                }
            }
            Err(e) => (Verdict::Failure, format!("{what}: {}", http_error(&e, timeout))),
        }
    }
}

fn authority(addr: SocketAddr) -> String {
    match addr.ip() {
        IpAddr::V4(ip) => format!("{ip}:{}", addr.port()),
        IpAddr::V6(ip) => format!("[{ip}]:{}", addr.port()),
    }
}

fn config_error(what: &str, detail: &str) -> (Verdict, String) {
    (Verdict::ConfigError, format!("{what}: configuration error: {detail}"))
}

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
    // The innermost cause is the useful part ("connection refused").
    let mut source: Option<&dyn std::error::Error> = Some(e);
    let mut last = e.to_string();
    while let Some(s) = source {
        last = s.to_string();
        source = s.source();
    }
    last
}

fn io_error(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
        std::io::ErrorKind::ConnectionReset => "connection reset".into(),
        _ => e.to_string(),
    }
}

async fn tcp(addr: SocketAddr, timeout: Duration) -> (Verdict, String) {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(mut stream)) => {
            let _ = stream.shutdown().await;
            (Verdict::Success, String::new())
        }
        Ok(Err(e)) => (Verdict::Failure, format!("tcp connect {addr}: {}", io_error(&e))),
        Err(_) => (Verdict::Failure, format!("tcp connect {addr}: timed out after {}", secs(timeout))),
    }
}

async fn udp(addr: SocketAddr, data: &[u8], timeout: Duration) -> (Verdict, String) {
    let local: SocketAddr = match addr {
        SocketAddr::V4(_) => (IpAddr::from([0, 0, 0, 0]), 0).into(),
        SocketAddr::V6(_) => (IpAddr::from([0u16; 8]), 0).into(),
    };
    let fail = |detail: String| (Verdict::Failure, format!("udp {addr}: {detail}"));
    let socket = match UdpSocket::bind(local).await {
        Ok(s) => s,
        Err(e) => return fail(format!("cannot open a socket: {e}")),
    };
    // A connected socket receives only from the host, and ICMP
    // port-unreachable surfaces as ECONNREFUSED.
    if let Err(e) = socket.connect(addr).await {
        return fail(io_error(&e));
    }
    let exchange = async {
        socket.send(data).await?;
        let mut buf = [0u8; 1];
        socket.recv(&mut buf).await
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(_)) => (Verdict::Success, String::new()),
        Ok(Err(e)) => fail(io_error(&e)),
        Err(_) => fail(format!("no reply within {}", secs(timeout))),
    }
}

async fn grpc(addr: SocketAddr, service: &str, timeout: Duration) -> (Verdict, String) {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

    let what = format!("grpc health check {service:?}");
    let endpoint = match tonic::transport::Endpoint::from_shared(format!("http://{}", authority(addr))) {
        Ok(e) => e.connect_timeout(timeout).timeout(timeout),
        Err(e) => return config_error(&what, &e.to_string()),
    };
    let channel = match tokio::time::timeout(timeout, endpoint.connect()).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            let mut detail = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                detail = s.to_string();
                source = s.source();
            }
            return (Verdict::Failure, format!("{what}: {detail}"));
        }
        Err(_) => return (Verdict::Failure, format!("{what}: timed out after {}", secs(timeout))),
    };
    let request = HealthCheckRequest {
        service: service.to_string(),
    };
    match HealthClient::new(channel).check(request).await {
        Ok(response) => {
            let status = ServingStatus::try_from(response.into_inner().status).unwrap_or(ServingStatus::Unknown);
            if status == ServingStatus::Serving {
                (Verdict::Success, String::new())
            } else {
                (Verdict::Failure, format!("{what}: {}", status.as_str_name()))
            }
        }
        Err(status) => (
            Verdict::Failure,
            format!("{what}: {:?}: {}", status.code(), status.message()),
        ),
    }
}

#[cfg(test)]
#[path = "probe_tests.rs"]
mod tests;
