//! The HTTP endpoints a platform expects: `/metrics` (OpenMetrics text),
//! `/healthz` (the process is making progress: see [`Liveness`]) and
//! `/readyz` (the readiness flag in [`Metrics`]: caches synced and the
//! controller running, or standing by as a healthy non-leader).
//!
//! The port is reachable by any pod unless a NetworkPolicy says otherwise
//! (the chart ships one), so the server protects the process from its
//! clients: a client that sends nothing, or never finishes, is cut off after
//! a deadline; at most [`Limits::max_connections`] connections are served at
//! once and any beyond are closed at once; and when accepting fails (for
//! example because the process ran out of file descriptors) the loop backs
//! off instead of spinning. Idle connections therefore cannot take the file
//! descriptors the probes need.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::metrics::Metrics;

/// How the server bounds what its clients can hold.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// A connection must deliver a complete request head within this time,
    /// including while idle between keep-alive requests.
    pub header_read_timeout: Duration,
    /// A connection is closed after this time whatever it does (a client
    /// that never reads its response, or trickles its body).
    pub connection_timeout: Duration,
    /// Connections served at once; any beyond are closed as soon as accepted.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(5),
            connection_timeout: Duration::from_secs(30),
            // A scraper or two and the kubelet's probes need a handful.
            max_connections: 32,
        }
    }
}

/// Pauses after a failed `accept` (EMFILE, ENFILE, ENOBUFS, ...): doubling
/// from the first to the last, reset by the next success.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(50);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Parts of the process that must keep showing progress for `/healthz` to
/// answer 200. A part that stops beating (or says it is broken) fails the
/// liveness probe, and the kubelet restarts the pod. Parts that never
/// registered are not checked, so with nothing registered `/healthz` only
/// says that the process serves requests.
#[derive(Clone, Debug, Default)]
pub struct Liveness {
    parts: Arc<Mutex<BTreeMap<&'static str, Beat>>>,
}

#[derive(Clone, Debug)]
enum Beat {
    /// Alive until this instant unless it beats again.
    Until(Instant),
    /// Broken for good: the reason.
    Failed(String),
}

impl Liveness {
    /// `part` is alive for the next `valid_for`.
    pub fn beat(&self, part: &'static str, valid_for: Duration) {
        self.set(part, Some(Beat::Until(Instant::now() + valid_for)));
    }

    /// `part` cannot recover in this process: `/healthz` fails from now on.
    pub fn fail(&self, part: &'static str, reason: impl Into<String>) {
        self.set(part, Some(Beat::Failed(reason.into())));
    }

    /// Stop checking `part`.
    pub fn forget(&self, part: &'static str) {
        self.set(part, None);
    }

    fn set(&self, part: &'static str, beat: Option<Beat>) {
        let mut parts = self.parts.lock().unwrap_or_else(PoisonError::into_inner);
        match beat {
            Some(b) => parts.insert(part, b),
            None => parts.remove(part),
        };
    }

    /// `Err` names every part that is stale or broken.
    pub fn check(&self) -> Result<(), String> {
        let now = Instant::now();
        let parts = self.parts.lock().unwrap_or_else(PoisonError::into_inner);
        let problems: Vec<String> = parts
            .iter()
            .filter_map(|(part, beat)| match beat {
                Beat::Until(until) if *until < now => Some(format!(
                    "{part}: no progress for {:?}",
                    now.duration_since(*until)
                )),
                Beat::Until(_) => None,
                Beat::Failed(reason) => Some(format!("{part}: {reason}")),
            })
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

fn respond(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, v);
    }
    response
}

fn route(path: &str, metrics: &Metrics, liveness: &Liveness) -> Response<Full<Bytes>> {
    match path {
        "/metrics" => match metrics.encode() {
            Ok(text) => respond(
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                text,
            ),
            Err(_) => respond(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain",
                "encoding failed\n".into(),
            ),
        },
        "/healthz" | "/livez" => match liveness.check() {
            Ok(()) => respond(StatusCode::OK, "text/plain", "ok\n".into()),
            Err(why) => respond(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("unhealthy: {why}\n"),
            ),
        },
        "/readyz" if metrics.is_ready() => respond(StatusCode::OK, "text/plain", "ok\n".into()),
        "/readyz" => respond(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "not ready\n".into(),
        ),
        _ => respond(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}

/// Serve with the default [`Limits`] until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    liveness: Liveness,
    shutdown: CancellationToken,
) {
    serve_with(listener, metrics, liveness, Limits::default(), shutdown).await;
}

pub async fn serve_with(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    liveness: Liveness,
    limits: Limits,
    shutdown: CancellationToken,
) {
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, ?limits, "serving /metrics, /healthz and /readyz");
    }
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut backoff = ACCEPT_BACKOFF_MIN;
    let mut rejected: u64 = 0;
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => {
                backoff = ACCEPT_BACKOFF_MIN;
                stream
            }
            Err(e) => {
                // Typically out of file descriptors: retrying at once would
                // spin a core and starve the probes further.
                warn!(error = %e, pause = ?backoff, "cannot accept a metrics connection; backing off");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Closing at once frees the descriptor; leaving it in the
            // accept queue would make every later client wait behind it.
            rejected += 1;
            if rejected.is_power_of_two() {
                warn!(
                    rejected,
                    max = limits.max_connections,
                    "too many metrics connections; closing new ones"
                );
            }
            drop(stream);
            continue;
        };
        let metrics = metrics.clone();
        let liveness = liveness.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                let response = route(req.uri().path(), &metrics, &liveness);
                async move { Ok::<_, std::convert::Infallible>(response) }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(limits.connection_timeout, connection).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => debug!(error = %e, "metrics connection ended with an error"),
                Err(_) => debug!("metrics connection closed after the connection timeout"),
            }
        });
    }
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
