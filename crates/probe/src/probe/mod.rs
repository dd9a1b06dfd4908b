//! One probe of one address, with the kubelet's semantics (fixed where
//! endpoints-operator was wrong) and some checks beyond them (expected
//! statuses, body and reply matching, TLS options). A probe always returns
//! an [`Outcome`] by its timeout; it never panics and never hangs.
//!
//! Where a probe connects is decided by the caller alone: every connection
//! goes to the address passed to [`Prober::probe`]. Virtual hosts, TLS
//! server names and redirects change the `Host` header, the SNI and the
//! path, never the destination address (see [`validate_virtual_host`]).
//!
//! Messages are part of the contract: they end up in `status` and Events, so
//! they never contain anything the probed host sent (bodies, headers, gRPC
//! status messages), a duration measured at run time, a header value or a
//! query string. Repeated failures therefore give byte-equal messages and
//! cause no status writes, and a host cannot write into `status`.
//!
//! Modules: `http` (HTTP(S) on hyper), `tcp`, `udp`, `grpc`, `tls` (client
//! configuration, handshake, certificate expiry), `net` (dialling, closing,
//! error classification), `vhost` (virtual host validation).

mod grpc;
mod http;
mod net;
mod tcp;
mod tls;
mod udp;
mod vhost;

use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use thiserror::Error;
use tokio::time::{Instant, timeout_at};

pub use http::OWNED_HEADERS;
pub use tls::{TlsConfig, TlsVersion, not_after as certificate_not_after};
pub use vhost::{validate_host_header, validate_virtual_host};

use net::Problem;

/// Body bytes read from an HTTP response at most (as the kubelet does),
/// and the bytes a TCP or UDP reply is matched against at most. Reading
/// stops as soon as this much has arrived; nothing read is ever shown.
pub const MAX_READ: usize = 10 * 1024;
/// Requests made for one HTTP probe at most, as Go's client (and so the
/// kubelet) does: the original request and 9 same-host redirects; a 10th
/// redirect fails the probe ("too many redirects").
pub const MAX_REQUESTS: usize = 10;
/// Longest pattern accepted by [`BoundedRegex`].
pub const MAX_REGEX_LEN: usize = 1024;
/// Compiled-size limit of a [`BoundedRegex`] (the `regex` crate's
/// `size_limit`, and its lazy DFA cache limit).
const REGEX_SIZE_LIMIT: usize = 256 * 1024;
/// Longest timeout honoured (one day); only absurd values are cut.
const MAX_TIMEOUT: Duration = Duration::from_secs(86_400);

/// What to do to a host. One variant per kubelet handler; each has a
/// `Default` that is the kubelet's probe, so callers can write
/// `TcpProbe { send: .., ..Default::default() }`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Probe {
    /// TCP connect, optionally over TLS, optionally sending and expecting
    /// bytes.
    Tcp(TcpProbe),
    /// HTTP(S) request; success for an expected status (default 200–399).
    Http(HttpGet),
    /// Send a datagram; success when a (matching) reply comes back.
    Udp(UdpProbe),
    /// `grpc.health.v1.Health/Check`, plaintext or over TLS.
    Grpc(GrpcProbe),
}

/// A TCP probe. The default is the kubelet's: success when a connection
/// opens.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct TcpProbe {
    /// Bytes written once connected (and after the TLS handshake). Empty:
    /// nothing is sent.
    pub send: Vec<u8>,
    /// The reply must match this within the first [`MAX_READ`] bytes read
    /// (reading stops as soon as it does). `None`: no reply is needed; the
    /// probe succeeds once connected and `send` is written.
    pub expect: Option<Expect>,
    /// Speak TLS first (see [`TlsConfig`]); success then also needs a
    /// completed handshake.
    pub tls: Option<TlsConfig>,
}

/// A UDP probe: send `data` (may be empty) to a connected socket.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct UdpProbe {
    pub data: Vec<u8>,
    /// A reply datagram must match this (in its first [`MAX_READ`] bytes);
    /// replies that do not match are ignored until the timeout. `None`: any
    /// non-empty datagram is a success (the kubelet-like default).
    pub expect: Option<Expect>,
}

/// A gRPC health check.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct GrpcProbe {
    /// The `service` of the `HealthCheckRequest` (empty: the whole server).
    pub service: String,
    /// `None`: plaintext HTTP/2 (h2c), as the kubelet. `Some`: TLS with
    /// ALPN h2; the `:authority` is `server_name` if set, else the address.
    pub tls: Option<TlsConfig>,
}

/// An HTTP(S) probe.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct HttpGet {
    pub scheme: Scheme,
    /// Request method (default GET).
    pub method: HttpMethod,
    /// Request path and query. Empty means `/`; a missing leading `/` is
    /// added; a `#fragment` is not sent. Messages show the path without
    /// its query (which may carry tokens).
    pub path: String,
    /// Virtual host: the `Host` header and, for HTTPS, the TLS server name.
    /// Must pass [`validate_virtual_host`]; anything else is a
    /// configuration error. The connection still goes to the probed
    /// address. A `Host` entry in `headers` takes precedence (it may carry
    /// a port and must pass [`validate_host_header`]). `None` or empty: the
    /// address itself.
    pub host: Option<String>,
    /// Extra request headers, sent in order; repeated names are all sent.
    /// `User-Agent`, `Accept` and `Host` here replace the defaults; an empty
    /// value for one of those three means the default. Values are never
    /// shown (they may hold credentials); `Debug` hides them.
    pub headers: Vec<(String, String)>,
    /// Request body (sent with a `Content-Length`; set `Content-Type` in
    /// `headers`). Empty: none. Never shown.
    pub body: Vec<u8>,
    /// Statuses counted as success. Empty: 200–399, as the kubelet.
    pub expected_statuses: Vec<StatusRange>,
    /// The first [`MAX_READ`] bytes of the body must match this. Not
    /// allowed with `HEAD` (configuration error). Never echoed: a mismatch
    /// says only "body did not match".
    pub body_match: Option<Expect>,
    /// TLS options for HTTPS (for `scheme: Http`, used by redirects to
    /// https). `None`: no verification, as the kubelet.
    pub tls: Option<TlsConfig>,
}

impl fmt::Debug for HttpGet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("HttpGet")
            .field("scheme", &self.scheme)
            .field("method", &self.method)
            .field("path", &shown_path(&self.path))
            .field("host", &self.host)
            .field("header_names", &names)
            .field("body", &format_args!("<{} bytes>", self.body.len()))
            .field("expected_statuses", &self.expected_statuses)
            .field("body_match", &self.body_match)
            .field("tls", &self.tls)
            .finish()
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Scheme {
    #[default]
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

/// The methods an HTTP probe may use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum HttpMethod {
    #[default]
    Get,
    Head,
    Post,
    /// As HAProxy's `option httpchk OPTIONS /primary` for Patroni.
    Options,
}

impl HttpMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Head => "HEAD",
            HttpMethod::Post => "POST",
            HttpMethod::Options => "OPTIONS",
        }
    }
}

/// An inclusive range of HTTP statuses (`200..=299`; one status is
/// `{from: 204, to: 204}`). A range with `from > to` matches nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StatusRange {
    pub from: u16,
    pub to: u16,
}

impl StatusRange {
    pub fn contains(self, status: u16) -> bool {
        (self.from..=self.to).contains(&status)
    }
}

/// What a reply (HTTP body, TCP or UDP reply) must contain.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Expect {
    /// These bytes appear somewhere (empty: always true).
    Contains(Vec<u8>),
    /// The regular expression matches somewhere in the raw bytes (UTF-8
    /// aware, as `regex::bytes` is by default).
    Regex(BoundedRegex),
}

impl Expect {
    pub fn matches(&self, data: &[u8]) -> bool {
        match self {
            Expect::Contains(needle) => {
                needle.is_empty() || data.windows(needle.len()).any(|w| w == needle.as_slice())
            }
            Expect::Regex(re) => re.regex.is_match(data),
        }
    }
}

/// A regular expression with bounded size, compiled once (by the caller,
/// at plan time, so a bad pattern is a field error). Matching is linear in
/// the input (the `regex` crate has no backtracking), and the input is at
/// most [`MAX_READ`] bytes.
#[derive(Clone)]
pub struct BoundedRegex {
    regex: regex::bytes::Regex,
}

impl BoundedRegex {
    /// Compile `pattern` (at most [`MAX_REGEX_LEN`] bytes, within the
    /// compiled-size limit). The error is one line, for a field error.
    pub fn new(pattern: &str) -> Result<Self, String> {
        if pattern.len() > MAX_REGEX_LEN {
            return Err(format!(
                "regular expression longer than {MAX_REGEX_LEN} bytes"
            ));
        }
        regex::bytes::RegexBuilder::new(pattern)
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map(|regex| BoundedRegex { regex })
            .map_err(|e| match e {
                regex::Error::CompiledTooBig(_) => "regular expression too large".to_string(),
                other => {
                    let text = other.to_string();
                    let last = text.lines().rev().find(|l| !l.trim().is_empty());
                    format!(
                        "invalid regular expression: {}",
                        last.unwrap_or("syntax error").trim()
                    )
                }
            })
    }

    pub fn as_str(&self) -> &str {
        self.regex.as_str()
    }
}

impl PartialEq for BoundedRegex {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for BoundedRegex {}

impl Hash for BoundedRegex {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl fmt::Debug for BoundedRegex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("BoundedRegex").field(&self.as_str()).finish()
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
            Probe::Tcp(_) => ProbeKind::Tcp,
            Probe::Http(_) => ProbeKind::Http,
            Probe::Udp(_) => ProbeKind::Udp,
            Probe::Grpc(_) => ProbeKind::Grpc,
        }
    }

    /// The kubelet's TCP probe: connect, nothing else.
    pub fn tcp() -> Probe {
        Probe::Tcp(TcpProbe::default())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    Success,
    /// The host did not pass (refused, silent, bad status, ...).
    Failure,
    /// The probe's own configuration is wrong (e.g. an invalid header); the
    /// host was not contacted. Says nothing about the host: thresholds
    /// ignore it and the target keeps its state.
    ConfigError,
    /// Probing failed for a local reason (no file descriptors, memory,
    /// buffers or local ports). Says nothing about the host: thresholds
    /// ignore it, as the kubelet ignores its prober's own errors.
    LocalError,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Success => "success",
            Verdict::Failure => "failure",
            Verdict::ConfigError => "config_error",
            Verdict::LocalError => "local_error",
        }
    }

    /// Whether this is a result about the host (success or failure), as
    /// opposed to a problem on the probing side.
    pub fn is_about_the_host(self) -> bool {
        matches!(self, Verdict::Success | Verdict::Failure)
    }
}

/// Every value [`Outcome::reason`] takes, for metrics label sets.
pub const REASONS: &[&str] = &[
    "ok",
    // Failures: the host.
    "refused",
    "reset",
    "closed",
    "unreachable",
    "timeout",
    "tls",
    "http_status",
    "redirects",
    "body_mismatch",
    "expect_mismatch",
    "grpc_status",
    "error",
    // Configuration errors.
    "config",
    // Local errors: this process or node.
    "emfile",
    "enfile",
    "enobufs",
    "enomem",
    "eaddrnotavail",
    "local",
];

/// The result of one probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub verdict: Verdict,
    /// Empty on success. Never contains anything the host sent or a
    /// measured duration, so that repeated failures give the same message.
    pub message: String,
    /// A short stable label for metrics, one of [`REASONS`]: `ok`, or why
    /// it failed (`refused`, `timeout`, `http_status`, `config`, `emfile`,
    /// ...).
    pub reason: &'static str,
    /// Wall time the probe took (for metrics only).
    pub latency: Duration,
    /// The `notAfter` of the leaf certificate the host presented, for any
    /// probe that completed a TLS handshake (also when it failed later,
    /// e.g. on the HTTP status). `None` without TLS or a handshake.
    pub cert_not_after: Option<SystemTime>,
}

/// Why a [`Prober`] could not be built. Probing itself never errors: every
/// problem is an [`Outcome`].
#[derive(Debug, Error)]
pub enum ProbeError {
    #[error("invalid HTTP probe User-Agent {0:?}")]
    InvalidUserAgent(String),
    #[error("cannot build the TLS configuration for probes: {0}")]
    Tls(#[from] rustls::Error),
}

impl ProbeError {
    /// A stable CamelCase reason, for logs, Events and conditions.
    pub fn reason(&self) -> &'static str {
        match self {
            ProbeError::InvalidUserAgent(_) => "InvalidUserAgent",
            ProbeError::Tls(_) => "TlsConfigError",
        }
    }
}

/// Runs probes. Cheap to clone; the TLS configurations without options
/// are built once and shared.
#[derive(Clone)]
pub struct Prober {
    inner: Arc<Inner>,
}

struct Inner {
    user_agent: ::http::HeaderValue,
    tls: tls::TlsContext,
}

/// What a prober found, before timing is added.
struct Report {
    verdict: Verdict,
    reason: &'static str,
    message: String,
    cert_not_after: Option<SystemTime>,
}

impl Report {
    fn new(verdict: Verdict, reason: &'static str, message: String) -> Self {
        Report {
            verdict,
            reason,
            message,
            cert_not_after: None,
        }
    }

    fn success() -> Self {
        Report::new(Verdict::Success, "ok", String::new())
    }

    fn failure(reason: &'static str, message: String) -> Self {
        Report::new(Verdict::Failure, reason, message)
    }

    fn config(what: &str, detail: &str) -> Self {
        let message = format!("{what}: configuration error: {detail}");
        Report::new(Verdict::ConfigError, "config", message)
    }

    /// `what: words`, with whose fault the problem is.
    fn problem(what: &str, p: Problem) -> Self {
        Report::new(p.verdict, p.reason, format!("{what}: {}", p.words))
    }

    /// A local error outside an I/O call (e.g. a socket that could not be
    /// created for a reason errno does not name).
    fn local(what: &str, detail: &str) -> Self {
        let message = format!("{what}: local error: {detail}");
        Report::new(Verdict::LocalError, "local", message)
    }

    fn timed_out(what: &str, timeout: Duration) -> Self {
        Report::failure(
            "timeout",
            format!("{what}: timed out after {}", secs(timeout)),
        )
    }

    fn with_cert(mut self, not_after: Option<SystemTime>) -> Self {
        self.cert_not_after = self.cert_not_after.or(not_after);
        self
    }
}

impl Prober {
    /// `user_agent` is sent by HTTP probes unless a probe sets its own
    /// (the controller passes `kube-endpoints/<version>`).
    pub fn new(user_agent: impl Into<String>) -> Result<Self, ProbeError> {
        let user_agent = user_agent.into();
        let user_agent = ::http::HeaderValue::from_str(&user_agent)
            .map_err(|_| ProbeError::InvalidUserAgent(user_agent))?;
        Ok(Prober {
            inner: Arc::new(Inner {
                user_agent,
                tls: tls::TlsContext::new()?,
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
        let inner = &self.inner;
        let run = async {
            match probe {
                Probe::Tcp(t) => tcp::probe(inner, t, addr, timeout, deadline).await,
                Probe::Http(get) => http::probe(inner, get, addr, timeout, deadline).await,
                Probe::Udp(u) => udp::probe(u, addr, timeout, deadline).await,
                Probe::Grpc(g) => grpc::probe(inner, g, addr, timeout, deadline).await,
            }
        };
        let report = match timeout_at(deadline, run).await {
            Ok(report) => report,
            Err(_) => timed_out_report(probe, addr, timeout),
        };
        Outcome {
            verdict: report.verdict,
            message: report.message,
            reason: report.reason,
            latency: started.elapsed(),
            cert_not_after: report.cert_not_after,
        }
    }
}

/// The path as messages show it: normalised, without query or fragment.
fn shown_path(path: &str) -> String {
    let end = path.find(['?', '#']).unwrap_or(path.len());
    normalize_path(&path[..end])
}

/// `""` → `/`, `healthz` → `/healthz`; anything else unchanged.
fn normalize_path(path: &str) -> String {
    if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    }
}

/// The message of a probe stopped by the backstop, in the same words its
/// own prober would use.
fn timed_out_report(probe: &Probe, addr: SocketAddr, timeout: Duration) -> Report {
    match probe {
        Probe::Tcp(t) => Report::timed_out(&tcp::what(t, addr), timeout),
        Probe::Http(get) => Report::timed_out(&http::what(get), timeout),
        Probe::Udp(_) => Report::failure(
            "timeout",
            format!("udp {addr}: no reply within {}", secs(timeout)),
        ),
        Probe::Grpc(g) => Report::timed_out(&grpc::what(g), timeout),
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

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_local;
#[cfg(test)]
mod tests_more;
#[cfg(test)]
pub(crate) mod tests_tls;
