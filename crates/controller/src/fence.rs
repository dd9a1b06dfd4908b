//! Fencing: with leader election, the writes of a replica that does not hold
//! the Lease never reach kube-apiserver.
//!
//! The controllers write through a [`kube::Client`] whose every mutating
//! request passes a [`Fence`]:
//!
//! - a request is sent only while the fence is open, that is while this
//!   replica leads and its last successful renewal is recent enough
//!   (`open_until`, on the monotonic clock): the fence closes by itself at
//!   that instant, even if the election loop is late;
//! - a request in flight when the fence closes is abandoned: its future is
//!   dropped, which drops its connection;
//! - every connection of the client has `TCP_USER_TIMEOUT`, so the bytes of
//!   an abandoned request that the network has not acknowledged (a
//!   partition) are discarded by the kernel after that time instead of being
//!   delivered whenever the partition heals.
//!
//! Together: no write of a deposed leader lands later than
//! `open_until + TCP_USER_TIMEOUT`, and the election timing
//! (see `leader::LeaseConfig`) puts that before any standby may take over.
//! Reads (GET, and watches) are never fenced.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderValue, Method, Request};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kube::client::{Body, ConfigExt};
use tokio::sync::watch;
use tokio::time::Instant;
use tower::{BoxError, Layer, Service, ServiceBuilder};

/// Whether this replica may write now. Clones share one state.
#[derive(Clone, Debug)]
pub struct Fence {
    /// `Some(until)`: writes are allowed before `until`.
    open_until: Arc<watch::Sender<Option<Instant>>>,
}

impl Default for Fence {
    fn default() -> Self {
        Fence {
            open_until: Arc::new(watch::Sender::new(None)),
        }
    }
}

/// A write refused or abandoned by the [`Fence`].
#[derive(Debug, thiserror::Error)]
#[error("not the leader: {0} (leader election fences every write)")]
pub struct NotLeader(&'static str);

impl Fence {
    /// A closed fence: nothing may be written until [`Fence::open_until`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Allow writes until `until` (extended by each successful renewal).
    pub fn open_until(&self, until: Instant) {
        self.open_until.send_replace(Some(until));
    }

    /// Refuse writes from now on, and abandon those in flight.
    pub fn close(&self) {
        self.open_until.send_replace(None);
    }

    pub fn is_open(&self) -> bool {
        matches!(*self.open_until.borrow(), Some(until) if Instant::now() < until)
    }

    /// Resolves once writes are no longer allowed: closed, or past the
    /// instant it was opened until.
    pub async fn closed(&self) {
        let mut rx = self.open_until.subscribe();
        loop {
            let Some(until) = *rx.borrow_and_update() else {
                return;
            };
            if Instant::now() >= until {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep_until(until) => return,
                changed = rx.changed() => if changed.is_err() { return },
            }
        }
    }
}

/// Methods that never change anything.
fn is_read(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Puts a [`Fence`] in front of every mutating request.
#[derive(Clone, Debug)]
pub struct FenceLayer(pub Fence);

impl<S> Layer<S> for FenceLayer {
    type Service = Fenced<S>;

    fn layer(&self, inner: S) -> Fenced<S> {
        Fenced {
            inner,
            fence: self.0.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Fenced<S> {
    inner: S,
    fence: Fence,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> Service<Request<B>> for Fenced<S>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BoxFuture<Result<S::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if is_read(request.method()) {
            let response = self.inner.call(request);
            return Box::pin(async move { response.await.map_err(Into::into) });
        }
        // Checked here, as late as possible: right before the request is
        // handed to a connection.
        if !self.fence.is_open() {
            return Box::pin(async { Err(NotLeader("write refused").into()) });
        }
        let response = self.inner.call(request);
        let fence = self.fence.clone();
        Box::pin(async move {
            tokio::select! {
                biased;
                () = fence.closed() => Err(NotLeader("write abandoned when leadership ended").into()),
                response = response => response.map_err(Into::into),
            }
        })
    }
}

/// How the controller's API clients connect.
#[derive(Clone, Debug, Default)]
pub struct ClientOptions {
    /// Sent as `User-Agent`, so that audit logs tell replicas apart.
    pub user_agent: Option<String>,
    /// `TCP_USER_TIMEOUT` of every connection: data unacknowledged for this
    /// long kills the connection (and is never delivered later).
    pub tcp_user_timeout: Option<Duration>,
    /// Gate every write on this fence.
    pub fence: Option<Fence>,
}

/// A client like [`kube::Client::try_from`] builds (same TLS, auth,
/// timeouts and headers), with [`ClientOptions`] applied. Through a proxy
/// (`proxy-url` in the kubeconfig) kube's own stack is used, without
/// `TCP_USER_TIMEOUT`: the proxy holds the connection to the apiserver.
pub fn client(
    mut config: kube::Config,
    options: ClientOptions,
) -> Result<kube::Client, kube::Error> {
    if let Some(agent) = options
        .user_agent
        .as_deref()
        .and_then(|a| HeaderValue::from_str(a).ok())
    {
        config.headers.push((http::header::USER_AGENT, agent));
    }
    if config.proxy_url.is_some() {
        let builder = kube::client::ClientBuilder::try_from(config)?;
        return Ok(match options.fence {
            Some(fence) => builder.with_layer(&FenceLayer(fence)).build(),
            None => builder.build(),
        });
    }
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(config.connect_timeout);
    http.set_nodelay(true);
    http.set_tcp_user_timeout(options.tcp_user_timeout);
    let https = config.rustls_https_connector_with_connector(http)?;
    let mut connector = hyper_timeout::TimeoutConnector::new(https);
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    connector.set_reset_reader_on_write(config.reset_reader_on_write);
    let http_client: hyper_util::client::legacy::Client<_, Body> =
        hyper_util::client::legacy::Builder::new(TokioExecutor::new()).build(connector);
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .option_layer(options.fence.map(FenceLayer))
        .map_err(BoxError::from)
        .service(http_client);
    Ok(kube::Client::new(service, config.default_namespace))
}

#[cfg(test)]
#[path = "fence_tests.rs"]
mod tests;
