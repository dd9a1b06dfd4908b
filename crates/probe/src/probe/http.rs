//! HTTP(S) probes, on hyper directly: every request's connection is dialled
//! to the probed IP by [`dial`], so no name in a URL, `Host` header or
//! redirect can choose the destination (a resolver is never involved).
//!
//! Kubelet parity: status 200–399 by default; same-host redirects followed
//! as Go's client does (at most [`MAX_REQUESTS`] requests in all; 301/302/
//! 303 turn a non-HEAD request into a GET without body); an off-host
//! redirect ends the probe with its 3xx; `User-Agent` and `Accept: */*`
//! defaults; no proxies; at most [`MAX_READ`] body bytes read; a fresh
//! connection per probe with `Connection: close` (Go's `DisableKeepAlives`);
//! header names in Title-Case on HTTP/1 as Go writes them; HTTPS offers
//! ALPN h2 and http/1.1 and speaks whichever the server picks.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ::http::header::{ACCEPT, CONNECTION, HOST, LOCATION, USER_AGENT};
use ::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::time::{Instant, timeout_at};
use url::Url;

use super::net::{Close, Problem, Stream, classify, dial};
use super::tls::{Alpn, handshake, server_name};
use super::vhost::{sni_name, split_host_header, validate_virtual_host};
use super::{HttpGet, HttpMethod, Inner, MAX_READ, MAX_REQUESTS, Report, Scheme, secs, shown_path};

/// Request headers the prober sets itself (hop-by-hop and framing): setting
/// them would break the framing or the connection handling (and HTTP/2
/// forbids the hop-by-hop ones). Lowercase; compared case-insensitively.
pub const OWNED_HEADERS: [&str; 7] = [
    "connection",
    "content-length",
    "transfer-encoding",
    "te",
    "upgrade",
    "keep-alive",
    "proxy-connection",
];

/// `http GET /path`: the start of every message of this probe.
pub(super) fn what(get: &HttpGet) -> String {
    format!("http {} {}", get.method.as_str(), shown_path(&get.path))
}

/// A probe checked and prepared before any connection is made.
struct Plan<'a> {
    get: &'a HttpGet,
    headers: HeaderMap,
    /// The configured `Host` value (header or `host` field), if any.
    host: Option<String>,
    /// The virtual host's DNS name, the default TLS server name.
    sni: Option<String>,
    /// Host names a redirect may go to: the virtual host and the address.
    same_host: Vec<String>,
    tls: Option<Arc<rustls::ClientConfig>>,
}

pub(super) async fn probe(
    inner: &Inner,
    get: &HttpGet,
    addr: SocketAddr,
    timeout: Duration,
    deadline: Instant,
) -> Report {
    let what = what(get);
    let (plan, mut url) = match prepare(inner, get, addr) {
        Ok(p) => p,
        Err(detail) => return Report::config(&what, &detail),
    };
    let mut method = get.method;
    let mut body = Bytes::from(get.body.clone());
    let mut cert: Option<SystemTime> = None;
    let mut requests = 0;
    loop {
        requests += 1;
        let step = request(
            inner,
            &plan,
            &url,
            method,
            body.clone(),
            addr,
            requests == 1,
            &what,
            timeout,
            deadline,
        )
        .await;
        let (hop, not_after) = match step {
            Ok(done) => done,
            Err(report) => return report.with_cert(cert),
        };
        cert = not_after.or(cert);
        match hop {
            Hop::Done(report) => return report.with_cert(cert),
            Hop::Follow(next, status) => {
                if requests >= MAX_REQUESTS {
                    return Report::failure("redirects", format!("{what}: too many redirects"))
                        .with_cert(cert);
                }
                if matches!(status, 301..=303) && method != HttpMethod::Head {
                    method = HttpMethod::Get;
                    body = Bytes::new();
                }
                url = next;
            }
        }
    }
}

enum Hop {
    /// A same-host redirect to follow (and the status that asked for it).
    Follow(Url, u16),
    Done(Report),
}

/// Check the configuration; the error is a configuration error's detail.
fn prepare<'a>(
    inner: &Inner,
    get: &'a HttpGet,
    addr: SocketAddr,
) -> Result<(Plan<'a>, Url), String> {
    if get.method == HttpMethod::Head && get.body_match.is_some() {
        return Err("bodyMatch needs a body, and HEAD has none".into());
    }
    let mut headers = HeaderMap::new();
    let mut host: Option<String> = None;
    for (name, value) in &get.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("invalid header name {name:?}"))?;
        if OWNED_HEADERS.contains(&name.as_str()) {
            return Err(format!("header {name:?} is set by the prober"));
        }
        // Values are never echoed: they may hold credentials.
        let value = HeaderValue::from_str(value)
            .map_err(|_| format!("invalid value for header {name:?}"))?;
        if value.is_empty() && [HOST, USER_AGENT, ACCEPT].contains(&name) {
            continue; // empty means "the default", as in the kubelet for Host
        }
        if name == HOST {
            if host.is_none() {
                // One Host only; the first wins, as in the kubelet.
                let text = value
                    .to_str()
                    .map_err(|_| "invalid Host header".to_string())?;
                split_host_header(text).map_err(|why| format!("Host header {why}"))?;
                host = Some(text.to_string());
            }
            continue;
        }
        headers.append(name, value);
    }
    if host.is_none()
        && let Some(field) = get.host.as_deref().filter(|h| !h.is_empty())
    {
        validate_virtual_host(field).map_err(|why| format!("host {field:?} {why}"))?;
        // A bare IPv6 literal needs brackets in a Host header.
        let bracketed = match field.parse::<std::net::Ipv6Addr>() {
            Ok(_) => format!("[{field}]"),
            Err(_) => field.to_string(),
        };
        host = Some(bracketed);
    }
    if !headers.contains_key(USER_AGENT) {
        headers.insert(USER_AGENT, inner.user_agent.clone());
    }
    if !headers.contains_key(ACCEPT) {
        headers.insert(ACCEPT, HeaderValue::from_static("*/*"));
    }
    let host_name = match &host {
        Some(h) => Some(split_host_header(h).map_err(|why| format!("Host {why}"))?),
        None => None,
    };
    let sni = host_name.and_then(sni_name).map(str::to_string);
    let tls = match (get.scheme, &get.tls) {
        (Scheme::Https, tls) => Some(inner.tls.config(tls.as_ref(), Alpn::Http)?),
        (Scheme::Http, Some(tls)) => Some(inner.tls.config(Some(tls), Alpn::Http)?),
        (Scheme::Http, None) => None,
    };
    // The URL redirects are resolved against: the virtual host (or the
    // address) and the probed port. It only names things; it is never
    // used to connect.
    let url_host = match host_name {
        Some(name) if name.contains(':') => format!("[{name}]"),
        Some(name) => name.to_string(),
        None => match addr.ip() {
            IpAddr::V4(ip) => ip.to_string(),
            IpAddr::V6(ip) => format!("[{ip}]"),
        },
    };
    let mut url = Url::parse(&format!(
        "{}://{url_host}:{}/",
        get.scheme.as_str(),
        addr.port()
    ))
    .map_err(|_| format!("invalid virtual host {url_host:?}"))?;
    let path = get.path.split('#').next().unwrap_or_default();
    let (path, query) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    url.set_path(&super::normalize_path(path));
    url.set_query(query);
    let mut same_host = vec![match addr.ip() {
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
    }];
    if let Some(h) = url.host_str() {
        same_host.push(h.to_ascii_lowercase());
    }
    Ok((
        Plan {
            get,
            headers,
            host,
            sni,
            same_host,
            tls,
        },
        url,
    ))
}

/// One request and its response, on a new connection to the probed IP
/// (and the port of `url`, which is the probed port unless a same-host
/// redirect named another). Returns the leaf certificate's expiry too.
#[allow(clippy::too_many_arguments)]
async fn request(
    inner: &Inner,
    plan: &Plan<'_>,
    url: &Url,
    method: HttpMethod,
    body: Bytes,
    addr: SocketAddr,
    first: bool,
    what: &str,
    timeout: Duration,
    deadline: Instant,
) -> Result<(Hop, Option<SystemTime>), Report> {
    let https = url.scheme() == "https";
    let port = url.port_or_known_default().unwrap_or(addr.port());
    let tcp = dial(SocketAddr::new(addr.ip(), port), Close::Reset)
        .await
        .map_err(|e| Report::problem(what, classify(&e)))?;
    let (stream, h2, not_after) = if https {
        let config = match &plan.tls {
            Some(c) => c.clone(),
            // An http probe redirected to https, without TLS options.
            None => inner
                .tls
                .config(None, Alpn::Http)
                .map_err(|d| Report::config(what, &d))?,
        };
        let name = server_name(plan.get.tls.as_ref(), plan.sni.as_deref(), addr.ip())
            .map_err(|d| Report::config(what, &d))?;
        let done = handshake(config, name, tcp)
            .await
            .map_err(|e| Report::problem(what, classify(&e)))?;
        (Stream::Tls(Box::new(done.stream)), done.h2, done.not_after)
    } else {
        (Stream::Plain(tcp), false, None)
    };
    // Whatever fails after the handshake still reports the certificate.
    let exchange_on_connection = async {
        // The Host: as configured, else the address with its port (as Go
        // writes `host:port` URLs), else, after a redirect, the URL's.
        let host = match &plan.host {
            Some(h) => h.clone(),
            None if first => match addr {
                SocketAddr::V4(a) => a.to_string(),
                SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
            },
            None => match (url.host_str(), url.port()) {
                (Some(h), Some(p)) => format!("{h}:{p}"),
                (Some(h), None) => h.to_string(),
                (None, _) => return Err(Report::config(what, "redirect without a host")),
            },
        };
        let target = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        let uri = if h2 {
            format!("{}://{host}{target}", url.scheme())
        } else {
            target
        };
        let uri: Uri = uri
            .parse()
            .map_err(|_| Report::config(what, "invalid request path"))?;
        let mut req = Request::builder()
            .method(match method {
                HttpMethod::Get => Method::GET,
                HttpMethod::Head => Method::HEAD,
                HttpMethod::Post => Method::POST,
                HttpMethod::Options => Method::OPTIONS,
            })
            .uri(uri)
            .body(Full::new(body))
            .map_err(|_| Report::config(what, "invalid request"))?;
        *req.headers_mut() = plan.headers.clone();
        if !h2 {
            let value =
                HeaderValue::from_str(&host).map_err(|_| Report::config(what, "invalid Host"))?;
            req.headers_mut().insert(HOST, value);
            req.headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        let io = TokioIo::new(stream);
        let exchange = |resp: Response<Incoming>| decide(plan, url, resp, what, timeout, deadline);
        let hop = if h2 {
            let (mut sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
                .handshake::<_, Full<Bytes>>(io)
                .await
                .map_err(|e| Report::problem(what, classify(&e)))?;
            drive(conn, answer(sender.send_request(req), what, exchange)).await?
        } else {
            let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
                .title_case_headers(true)
                .handshake::<_, Full<Bytes>>(io)
                .await
                .map_err(|e| Report::problem(what, classify(&e)))?;
            drive(conn, answer(sender.send_request(req), what, exchange)).await?
        };
        Ok::<_, Report>(hop)
    };
    match exchange_on_connection.await {
        Ok(hop) => Ok((hop, not_after)),
        Err(report) => Err(report.with_cert(not_after)),
    }
}

/// Run `work` while driving the connection `conn` in the same task (no
/// spawned task can outlive the probe). Once the connection ends, `work`
/// sees it as an error of its own.
/// The response to a request sent over HTTP/1.1 or HTTP/2, through
/// `exchange`.
async fn answer<R, E, F>(
    response: R,
    what: &str,
    exchange: impl FnOnce(Response<Incoming>) -> E,
) -> Result<F, Report>
where
    R: Future<Output = hyper::Result<Response<Incoming>>>,
    E: Future<Output = F>,
{
    let resp = response
        .await
        .map_err(|e| Report::problem(what, classify(&e)))?;
    Ok(exchange(resp).await)
}

async fn drive<C, W>(conn: C, work: W) -> W::Output
where
    C: Future,
    W: Future,
{
    tokio::pin!(conn);
    tokio::pin!(work);
    let mut conn_done = false;
    loop {
        tokio::select! {
            biased;
            out = &mut work => return out,
            _ = &mut conn, if !conn_done => conn_done = true,
        }
    }
}

/// Follow, succeed or fail on one response.
async fn decide(
    plan: &Plan<'_>,
    url: &Url,
    resp: Response<Incoming>,
    what: &str,
    timeout: Duration,
    deadline: Instant,
) -> Hop {
    let status = resp.status().as_u16();
    if matches!(status, 301..=303 | 307 | 308)
        && let Some(next) = redirect(plan, url, &resp)
    {
        return Hop::Follow(next, status);
    }
    let get = plan.get;
    let expected = if get.expected_statuses.is_empty() {
        (200..400).contains(&status)
    } else {
        get.expected_statuses.iter().any(|r| r.contains(status))
    };
    if !expected {
        // The status decides; the body is neither needed nor shown.
        return Hop::Done(Report::failure(
            "http_status",
            format!("{what}: status {status}"),
        ));
    }
    // Like the kubelet, a success needs the (bounded) body to arrive:
    // a server that sends headers and then stalls is not healthy.
    let keep = get.body_match.is_some();
    match timeout_at(deadline, read_body(resp.into_body(), keep)).await {
        Ok(Ok(body)) => match &get.body_match {
            Some(expect) if !expect.matches(&body) => Hop::Done(Report::failure(
                "body_mismatch",
                format!("{what}: status {status}, body did not match"),
            )),
            _ => Hop::Done(Report::success()),
        },
        Ok(Err(problem)) => Hop::Done(Report::problem(
            &format!("{what}: status {status}, reading the body"),
            problem,
        )),
        Err(_) => Hop::Done(Report::failure(
            "timeout",
            format!(
                "{what}: status {status}, reading the body: timed out after {}",
                secs(timeout)
            ),
        )),
    }
}

/// The same-host URL a redirect response points to, if it is to be
/// followed. "Same host" compares host names only, as the kubelet does, so
/// http→https and another port on the same host are followed; the
/// connection still goes to the probed IP.
fn redirect(plan: &Plan<'_>, url: &Url, resp: &Response<Incoming>) -> Option<Url> {
    let location = resp.headers().get(LOCATION)?.to_str().ok()?;
    let next = url.join(location).ok()?;
    if !matches!(next.scheme(), "http" | "https") {
        return None;
    }
    let host = next.host_str()?.to_ascii_lowercase();
    plan.same_host.contains(&host).then_some(next)
}

/// Read at most [`MAX_READ`] body bytes, keeping them only if they are to be
/// matched.
async fn read_body(mut body: Incoming, keep: bool) -> Result<Vec<u8>, Problem> {
    let mut kept = Vec::new();
    let mut read = 0usize;
    while read < MAX_READ {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    if keep {
                        let room = MAX_READ - kept.len();
                        kept.extend_from_slice(&data[..data.len().min(room)]);
                    }
                    read += data.len();
                }
            }
            Some(Err(e)) => return Err(classify(&e)),
            None => break,
        }
    }
    Ok(kept)
}
