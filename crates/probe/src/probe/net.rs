//! Sockets for probes and the classification of what went wrong.
//!
//! Every probe connection is dialled here, to exactly the address given;
//! nothing above may resolve names or pick another destination.
//!
//! Closing: a connection whose exchange is over is closed with a reset
//! (`SO_LINGER` on with a zero timeout). The probing side then keeps no
//! TIME_WAIT socket and conntrack drops the entry at once, which matters
//! when one pod probes 10,000 hosts a second. The kubelet sets
//! `SO_LINGER {on, 1s}` for the same reason; on Linux a non-zero linger
//! leaves the TIME_WAIT socket in place (measured: only linger 0 removes
//! it), and it makes `close` block the thread for up to the linger time
//! when unsent data remains, which an async runtime cannot afford.
//! A TCP probe that only sends (no reply expected) closes normally, so the
//! data it sent is delivered rather than discarded by the reset.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;

use super::Verdict;
use super::tls::tls_words;

/// How a probe's connection is closed (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Close {
    /// Reset: no TIME_WAIT left behind. For finished exchanges.
    Reset,
    /// The usual FIN handshake, so that data just sent is delivered.
    Graceful,
}

/// Open a TCP connection to `addr`. Creating the socket can only fail for
/// local reasons (descriptors, memory), which [`classify`] reports as such.
pub(crate) async fn dial(addr: SocketAddr, close: Close) -> io::Result<TcpStream> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    let stream = socket.connect(addr).await?;
    if close == Close::Reset {
        stream.set_zero_linger()?;
    }
    // Probes write small requests and wait for the answer: no Nagle delay.
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A probe connection, with or without TLS.
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// What went wrong, in stable words, with whose fault it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Problem {
    pub(crate) verdict: Verdict,
    pub(crate) reason: &'static str,
    pub(crate) words: String,
}

impl Problem {
    pub(crate) fn failure(reason: &'static str, words: impl Into<String>) -> Self {
        Problem {
            verdict: Verdict::Failure,
            reason,
            words: words.into(),
        }
    }
}

/// A local resource error: the errno's stable reason label and words.
/// These say nothing about the host, so they must not count against it.
pub(crate) fn local_errno(e: &io::Error) -> Option<(&'static str, &'static str)> {
    let found = match e.raw_os_error()? {
        libc::EMFILE => ("emfile", "too many open files"),
        libc::ENFILE => ("enfile", "system file table full"),
        libc::ENOBUFS => ("enobufs", "no buffer space"),
        libc::ENOMEM => ("enomem", "out of memory"),
        // On connect: no free local port (or source address) to use.
        libc::EADDRNOTAVAIL => ("eaddrnotavail", "no local address or port available"),
        _ => return None,
    };
    Some(found)
}

/// Classify an error chain (hyper, tonic, rustls and I/O errors wrap one
/// another): the first local errno makes it a local error; otherwise the
/// first I/O error kind or TLS error gives stable words; else the
/// innermost message.
pub(crate) fn classify(e: &(dyn std::error::Error + 'static)) -> Problem {
    let mut current = e;
    loop {
        if let Some(io) = current.downcast_ref::<io::Error>() {
            return classify_io(io);
        }
        if let Some(tls) = current.downcast_ref::<rustls::Error>() {
            return Problem::failure("tls", format!("tls: {}", tls_words(tls)));
        }
        match current.source() {
            Some(next) => current = next,
            None => return Problem::failure("error", current.to_string()),
        }
    }
}

fn classify_io(e: &io::Error) -> Problem {
    use io::ErrorKind as K;
    if let Some((reason, words)) = local_errno(e) {
        return Problem {
            verdict: Verdict::LocalError,
            reason,
            words: format!("local error: {words}"),
        };
    }
    let (reason, words) = match e.kind() {
        K::ConnectionRefused => ("refused", "connection refused"),
        K::ConnectionReset => ("reset", "connection reset"),
        K::ConnectionAborted => ("reset", "connection aborted"),
        K::HostUnreachable => ("unreachable", "host unreachable"),
        K::NetworkUnreachable => ("unreachable", "network unreachable"),
        K::TimedOut => ("timeout", "timed out"),
        K::UnexpectedEof | K::BrokenPipe => ("closed", "connection closed"),
        // TLS and HTTP layers wrap their errors in `io::Error`s of kind
        // `Other`; `io::Error::source` skips the wrapped error itself, so
        // look at it here.
        _ => {
            return match e.get_ref() {
                Some(inner) => classify(inner),
                None => Problem::failure("error", e.to_string()),
            };
        }
    };
    Problem::failure(reason, words)
}

#[cfg(test)]
mod tests {
    use super::*;
    use io::{Error, ErrorKind};

    #[test]
    fn local_errnos_are_local_errors() {
        for (errno, reason) in [
            (libc::EMFILE, "emfile"),
            (libc::ENFILE, "enfile"),
            (libc::ENOBUFS, "enobufs"),
            (libc::ENOMEM, "enomem"),
            (libc::EADDRNOTAVAIL, "eaddrnotavail"),
        ] {
            let p = classify(&Error::from_raw_os_error(errno));
            assert_eq!((p.verdict, p.reason), (Verdict::LocalError, reason));
            assert!(p.words.starts_with("local error: "), "{}", p.words);
            // Also when wrapped, as hyper and tonic do.
            let wrapped = Error::other(Error::from_raw_os_error(errno));
            assert_eq!(classify(&wrapped).verdict, Verdict::LocalError);
        }
        let refused = classify(&Error::from_raw_os_error(libc::ECONNREFUSED));
        assert_eq!(
            (refused.verdict, refused.reason, refused.words.as_str()),
            (Verdict::Failure, "refused", "connection refused")
        );
    }

    #[test]
    fn io_errors_are_put_in_stable_words_through_wrappers() {
        assert_eq!(
            classify(&Error::from(ErrorKind::ConnectionRefused)).words,
            "connection refused"
        );
        let wrapped = Error::other(Error::from(ErrorKind::ConnectionReset));
        assert_eq!(classify(&wrapped).words, "connection reset");
        assert_eq!(classify(&Error::other("tls alert")).words, "tls alert");
        let tls = Error::new(
            ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::Expired),
        );
        let p = classify(&tls);
        assert_eq!(
            (p.reason, p.words.as_str()),
            ("tls", "tls: certificate expired")
        );
    }
}
