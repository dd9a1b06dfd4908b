//! gRPC health checks (`grpc.health.v1.Health/Check`), over h2c as the
//! kubelet does or over TLS (ALPN h2). The channel's connector ignores the
//! URI and dials the probed address itself; the URI only names the
//! `:authority`.
//!
//! Only the status code of a failed call is shown, never the server's
//! status message (peer-controlled text).

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use http::Uri;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::time::{Instant, timeout_at};

use super::net::{Close, Stream, classify, dial};
use super::tls::{Alpn, handshake};
use super::{GrpcProbe, Inner, Report};

/// A health response is a few bytes; anything much larger is not one.
const MAX_RESPONSE: usize = 4 * 1024;

pub(super) fn what(g: &GrpcProbe) -> String {
    format!("grpc health check {:?}", g.service)
}

pub(super) async fn probe(
    inner: &Inner,
    g: &GrpcProbe,
    addr: SocketAddr,
    timeout: Duration,
    deadline: Instant,
) -> Report {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

    let what = what(g);
    let tls = match inner.tls.for_probe(g.tls.as_ref(), Alpn::Grpc, addr.ip()) {
        Ok(tls) => tls,
        Err(detail) => return Report::config(&what, &detail),
    };
    // The `:authority`: the TLS server name if set (validated above by
    // `server_name`), else the address; never used to connect.
    let authority = match g.tls.as_ref().and_then(|t| t.server_name.as_deref()) {
        Some(name) if name.parse::<std::net::Ipv6Addr>().is_ok() => {
            format!("[{name}]:{}", addr.port())
        }
        Some(name) => format!("{name}:{}", addr.port()),
        None => match addr.ip() {
            IpAddr::V4(ip) => format!("{ip}:{}", addr.port()),
            IpAddr::V6(ip) => format!("[{ip}]:{}", addr.port()),
        },
    };
    let endpoint = match tonic::transport::Endpoint::from_shared(format!("http://{authority}")) {
        Ok(e) => e.connect_timeout(timeout).timeout(timeout),
        Err(_) => return Report::config(&what, "invalid authority"),
    };
    let cert = Arc::new(Mutex::new(None));
    let connector = Connector {
        addr,
        tls,
        cert: cert.clone(),
    };
    let not_after = || *cert.lock().unwrap_or_else(|e| e.into_inner());
    let channel = match timeout_at(deadline, endpoint.connect_with_connector(connector)).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Report::problem(&what, classify(&e)).with_cert(not_after()),
        Err(_) => return Report::timed_out(&what, timeout).with_cert(not_after()),
    };
    let request = HealthCheckRequest {
        service: g.service.clone(),
    };
    let mut client = HealthClient::new(channel).max_decoding_message_size(MAX_RESPONSE);
    let report = match timeout_at(deadline, client.check(request)).await {
        Ok(Ok(response)) => {
            let status = ServingStatus::try_from(response.into_inner().status)
                .unwrap_or(ServingStatus::Unknown);
            if status == ServingStatus::Serving {
                Report::success()
            } else {
                Report::failure("grpc_status", format!("{what}: {}", status.as_str_name()))
            }
        }
        Ok(Err(status)) if status.code() == tonic::Code::Cancelled && is_tonic_timeout(&status) => {
            Report::timed_out(&what, timeout)
        }
        // The code only: the message is the server's free text.
        Ok(Err(status)) => Report::failure("grpc_status", format!("{what}: {:?}", status.code())),
        Err(_) => Report::timed_out(&what, timeout),
    };
    report.with_cert(not_after())
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

/// Dials the probed address whatever URI the channel asks for, and does
/// the TLS handshake if configured, recording the leaf's expiry.
#[derive(Clone)]
struct Connector {
    addr: SocketAddr,
    tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
    cert: Arc<Mutex<Option<SystemTime>>>,
}

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<Stream>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<TokioIo<Stream>>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let tcp = dial(this.addr, Close::Reset).await?;
            let stream = match this.tls {
                None => Stream::Plain(tcp),
                Some((config, name)) => {
                    let done = handshake(config, name, tcp).await?;
                    *this.cert.lock().unwrap_or_else(|e| e.into_inner()) = done.not_after;
                    Stream::Tls(Box::new(done.stream))
                }
            };
            Ok(TokioIo::new(stream))
        })
    }
}
