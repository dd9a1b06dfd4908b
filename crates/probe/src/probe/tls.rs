//! TLS for probes: the client configuration built from a [`TlsConfig`], the
//! handshake over an already-connected socket, stable words for TLS errors,
//! and the leaf certificate's expiry.
//!
//! Without verification (the kubelet's default for HTTPS) any certificate
//! is accepted and the handshake signature is not checked either: it would
//! authenticate nothing, since any certificate passes, and checking it
//! rejects servers the kubelet accepts (RSA-1024 keys, SHA-1 or P-521
//! signatures, which ring cannot verify). Go's `InsecureSkipVerify` client
//! accepts those too.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::vhost::validate_virtual_host;

/// TLS settings of one probe (HTTPS, TCP or gRPC). All bytes are what the
/// controller resolved from Secrets or the spec; none of it is ever logged
/// or put in a message (`Debug` shows sizes only).
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct TlsConfig {
    /// Verify the server's certificate chain and name. `None`: verify if and
    /// only if `ca_pem` is set (so plain HTTPS keeps the kubelet's "no
    /// verification"). Verifying without `ca_pem` uses the system's roots.
    pub verify: Option<bool>,
    /// PEM bundle of the CA certificates to verify against.
    pub ca_pem: Option<Vec<u8>>,
    /// The TLS server name (SNI), also the name verified. `None`: the
    /// HTTP virtual host if there is one, else the address (an IP address
    /// sends no SNI and is verified against the certificate's IP SANs).
    /// Must pass [`validate_virtual_host`].
    pub server_name: Option<String>,
    /// Client certificate chain (PEM, leaf first) for mutual TLS. Needs
    /// `client_key_pem`.
    pub client_cert_pem: Option<Vec<u8>>,
    /// The client certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub client_key_pem: Option<Vec<u8>>,
    /// Lowest TLS version offered. `None`: TLS 1.2.
    pub min_version: Option<TlsVersion>,
}

impl TlsConfig {
    /// Whether the server certificate is verified (see [`TlsConfig::verify`]).
    pub fn verifies(&self) -> bool {
        self.verify.unwrap_or(self.ca_pem.is_some())
    }

    /// Check what can be checked without a server, as a probe would find
    /// it: the server name, the CA bundle and the client certificate and
    /// key (PEM that parses, a key that fits the certificate). For a
    /// controller to refuse a bad setting up front rather than let every
    /// probe report a configuration error. The error is a probe
    /// configuration error's detail: it never contains the bytes.
    pub fn check(&self) -> Result<(), String> {
        if let Some(name) = self.server_name.as_deref().filter(|n| !n.is_empty()) {
            validate_virtual_host(name)
                .map_err(|why| format!("tls: server name {name:?} {why}"))?;
        }
        // The system roots are the probing machine's business; without a
        // CA only the rest is checked.
        let mut offline = self.clone();
        if offline.verifies() && offline.ca_pem.is_none() {
            offline.verify = Some(false);
        }
        build_config(&offline, Alpn::None, None)
            .map(drop)
            .map_err(|e| match e {
                ConfigFailure::Invalid(d) => d,
                ConfigFailure::Rustls(e) => format!("tls: {}", tls_words(&e)),
            })
    }
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let len = |b: &Option<Vec<u8>>| b.as_ref().map(|b| format!("<{} bytes>", b.len()));
        f.debug_struct("TlsConfig")
            .field("verify", &self.verify)
            .field("ca_pem", &len(&self.ca_pem))
            .field("server_name", &self.server_name)
            .field("client_cert_pem", &len(&self.client_cert_pem))
            .field(
                "client_key_pem",
                &self.client_key_pem.as_ref().map(|_| "<redacted>"),
            )
            .field("min_version", &self.min_version)
            .finish()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

/// ALPN protocols offered: HTTPS offers h2 and HTTP/1.1 (as the kubelet's
/// Go transport does), gRPC h2 only, TCP none.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Alpn {
    Http,
    Grpc,
    None,
}

impl Alpn {
    fn protocols(self) -> Vec<Vec<u8>> {
        match self {
            Alpn::Http => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            Alpn::Grpc => vec![b"h2".to_vec()],
            Alpn::None => Vec::new(),
        }
    }
}

/// Distinct TLS settings whose configurations are kept; past this the
/// cache starts over (a fleet has a handful of distinct settings).
const MAX_CACHED: usize = 256;

/// The process-wide parts: the configurations without options (shared by
/// every probe that has no `tls` settings), the configurations built from
/// settings (cached, since parsing a CA bundle and a client key for every
/// probe of every host would cost a core at scale), and the system roots,
/// loaded once on first use.
pub(crate) struct TlsContext {
    http: Arc<ClientConfig>,
    grpc: Arc<ClientConfig>,
    tcp: Arc<ClientConfig>,
    cache: Mutex<HashMap<Alpn, HashMap<TlsConfig, Arc<ClientConfig>>>>,
    system_roots: OnceLock<Result<Arc<RootCertStore>, String>>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    // reqwest/kube may install a process default; a library picks its own.
    Arc::new(rustls::crypto::ring::default_provider())
}

impl TlsContext {
    pub(crate) fn new() -> Result<Self, rustls::Error> {
        let default = TlsConfig::default();
        let build = |alpn| {
            build_config(&default, alpn, None).map_err(|e| match e {
                ConfigFailure::Rustls(e) => e,
                ConfigFailure::Invalid(d) => rustls::Error::General(d),
            })
        };
        Ok(TlsContext {
            http: build(Alpn::Http)?,
            grpc: build(Alpn::Grpc)?,
            tcp: build(Alpn::None)?,
            cache: Mutex::new(HashMap::new()),
            system_roots: OnceLock::new(),
        })
    }

    /// For a probe of `ip` whose TLS options are `tls` (`None`: no TLS):
    /// the client configuration and the server name to present. The error
    /// is a configuration error's detail (the configuration's first).
    pub(crate) fn for_probe(
        &self,
        tls: Option<&TlsConfig>,
        alpn: Alpn,
        ip: IpAddr,
    ) -> Result<Option<(Arc<ClientConfig>, ServerName<'static>)>, String> {
        let Some(tls) = tls else {
            return Ok(None);
        };
        let config = self.config(Some(tls), alpn)?;
        Ok(Some((config, server_name(Some(tls), None, ip)?)))
    }

    /// The client configuration for `tls` (`None`: no options). The error
    /// is a configuration error's detail, never containing secret bytes.
    pub(crate) fn config(
        &self,
        tls: Option<&TlsConfig>,
        alpn: Alpn,
    ) -> Result<Arc<ClientConfig>, String> {
        let Some(tls) = tls.filter(|t| **t != TlsConfig::default()) else {
            return Ok(match alpn {
                Alpn::Http => self.http.clone(),
                Alpn::Grpc => self.grpc.clone(),
                Alpn::None => self.tcp.clone(),
            });
        };
        let lock = || self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(config) = lock().get(&alpn).and_then(|by_tls| by_tls.get(tls)) {
            return Ok(config.clone());
        }
        let roots = if tls.verifies() && tls.ca_pem.is_none() {
            Some(self.system_roots()?)
        } else {
            None
        };
        // Built outside the lock; errors are not cached (they are rare, and
        // the next probe reports them again).
        let config = build_config(tls, alpn, roots).map_err(|e| match e {
            ConfigFailure::Invalid(d) => d,
            ConfigFailure::Rustls(e) => format!("tls: {}", tls_words(&e)),
        })?;
        let mut cache = lock();
        if cache.values().map(HashMap::len).sum::<usize>() >= MAX_CACHED {
            cache.clear();
        }
        cache
            .entry(alpn)
            .or_default()
            .insert(tls.clone(), config.clone());
        Ok(config)
    }

    fn system_roots(&self) -> Result<Arc<RootCertStore>, String> {
        self.system_roots
            .get_or_init(|| {
                let mut roots = RootCertStore::empty();
                roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
                if roots.is_empty() {
                    Err(
                        "tls: no system CA certificates found to verify with; give a CA bundle"
                            .to_string(),
                    )
                } else {
                    Ok(Arc::new(roots))
                }
            })
            .clone()
    }
}

enum ConfigFailure {
    Invalid(String),
    Rustls(rustls::Error),
}

impl From<rustls::Error> for ConfigFailure {
    fn from(e: rustls::Error) -> Self {
        ConfigFailure::Rustls(e)
    }
}

fn build_config(
    tls: &TlsConfig,
    alpn: Alpn,
    system_roots: Option<Arc<RootCertStore>>,
) -> Result<Arc<ClientConfig>, ConfigFailure> {
    let provider = provider();
    let versions: &[&rustls::SupportedProtocolVersion] = match tls.min_version {
        Some(TlsVersion::Tls13) => &[&rustls::version::TLS13],
        Some(TlsVersion::Tls12) | None => &[&rustls::version::TLS13, &rustls::version::TLS12],
    };
    let builder =
        ClientConfig::builder_with_provider(provider.clone()).with_protocol_versions(versions)?;
    let builder = if tls.verifies() {
        let roots = match (&tls.ca_pem, system_roots) {
            (Some(pem), _) => Arc::new(ca_roots(pem)?),
            (None, Some(roots)) => roots,
            (None, None) => {
                return Err(ConfigFailure::Invalid(
                    "tls: no CA certificates to verify with".into(),
                ));
            }
        };
        let verifier = WebPkiServerVerifier::builder_with_provider(roots, provider)
            .build()
            .map_err(|e| ConfigFailure::Invalid(format!("tls: CA bundle: {e}")))?;
        builder.with_webpki_verifier(verifier)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate))
    };
    let mut config = match (&tls.client_cert_pem, &tls.client_key_pem) {
        (None, None) => builder.with_no_client_auth(),
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_slice_iter(cert)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| invalid("tls: client certificate is not valid PEM"))?;
            if chain.is_empty() {
                return Err(invalid("tls: client certificate PEM holds no certificate"));
            }
            let key = PrivateKeyDer::from_pem_slice(key)
                .map_err(|_| invalid("tls: client key is not a valid PEM private key"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|_| invalid("tls: client certificate and key do not form a usable pair"))?
        }
        _ => {
            return Err(invalid(
                "tls: client certificate and key must be given together",
            ));
        }
    };
    config.alpn_protocols = alpn.protocols();
    // Every probe does a full handshake, as the kubelet's (Go's default
    // has no session cache): a resumed session would skip the certificate,
    // hiding an expiry or a changed certificate for the ticket's lifetime,
    // and hosts sharing a server name would be offered each other's tickets.
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

fn invalid(detail: &str) -> ConfigFailure {
    ConfigFailure::Invalid(detail.to_string())
}

fn ca_roots(pem: &[u8]) -> Result<RootCertStore, ConfigFailure> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| invalid("tls: CA bundle is not valid PEM"))?;
    let mut roots = RootCertStore::empty();
    let (_, unusable) = roots.add_parsable_certificates(certs);
    if roots.is_empty() {
        return Err(invalid("tls: CA bundle holds no usable certificate"));
    }
    if unusable > 0 {
        return Err(invalid(
            "tls: CA bundle holds a certificate that cannot be parsed",
        ));
    }
    Ok(roots)
}

/// The name to present (SNI) and verify: `TlsConfig::server_name`, else the
/// virtual host, else the address.
pub(crate) fn server_name(
    tls: Option<&TlsConfig>,
    virtual_host: Option<&str>,
    ip: IpAddr,
) -> Result<ServerName<'static>, String> {
    let name = tls.and_then(|t| t.server_name.as_deref()).or(virtual_host);
    let Some(name) = name.filter(|n| !n.is_empty()) else {
        return Ok(ServerName::IpAddress(ip.into()));
    };
    validate_virtual_host(name).map_err(|why| format!("tls: server name {name:?} {why}"))?;
    let bare = name.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(ServerName::IpAddress(ip.into()));
    }
    ServerName::try_from(bare.to_string())
        .map_err(|_| format!("tls: server name {name:?} is not a valid DNS name"))
}

/// The outcome of a handshake: the stream, whether h2 was negotiated and
/// the leaf certificate's expiry.
pub(crate) struct Handshake {
    pub(crate) stream: TlsStream<TcpStream>,
    pub(crate) h2: bool,
    pub(crate) not_after: Option<SystemTime>,
}

pub(crate) async fn handshake(
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    tcp: TcpStream,
) -> std::io::Result<Handshake> {
    let stream = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await?;
    let (_, session) = stream.get_ref();
    let h2 = session.alpn_protocol() == Some(b"h2");
    let not_after = session
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|leaf| not_after(leaf));
    Ok(Handshake {
        stream,
        h2,
        not_after,
    })
}

/// Accepts any certificate, name and handshake signature (see the module
/// docs), offering every signature scheme rustls knows, SHA-1 last.
#[derive(Debug)]
struct AcceptAnyCertificate;

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
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify_tls12_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![
            SignatureScheme::ECDSA_NISTP256_SHA256,
            SignatureScheme::ECDSA_NISTP384_SHA384,
            SignatureScheme::ECDSA_NISTP521_SHA512,
            SignatureScheme::ED25519,
            SignatureScheme::ED448,
            SignatureScheme::RSA_PSS_SHA256,
            SignatureScheme::RSA_PSS_SHA384,
            SignatureScheme::RSA_PSS_SHA512,
            SignatureScheme::RSA_PKCS1_SHA256,
            SignatureScheme::RSA_PKCS1_SHA384,
            SignatureScheme::RSA_PKCS1_SHA512,
            SignatureScheme::RSA_PKCS1_SHA1,
            SignatureScheme::ECDSA_SHA1_Legacy,
        ]
    }
}

/// A TLS error in stable words: rustls' own texts for some errors carry
/// times ("expired ... 3 seconds ago") that would change every probe.
pub(crate) fn tls_words(e: &rustls::Error) -> String {
    use rustls::AlertDescription as A;
    let words = match e {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "certificate expired"
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "certificate not valid yet"
            }
            CertificateError::UnknownIssuer => "certificate signed by an unknown authority",
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                "certificate not valid for the server name"
            }
            CertificateError::BadSignature => "certificate has a bad signature",
            CertificateError::Revoked => "certificate revoked",
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                "certificate not valid for server authentication"
            }
            CertificateError::BadEncoding => "certificate badly encoded",
            _ => "invalid certificate",
        },
        rustls::Error::AlertReceived(alert) => match alert {
            A::CertificateRequired => "the server requires a client certificate",
            A::BadCertificate | A::UnknownCA | A::CertificateUnknown => {
                "the server refused the client certificate"
            }
            A::CertificateExpired => "the server refused the client certificate (expired)",
            A::HandshakeFailure => "handshake failure alert from the server",
            A::ProtocolVersion => "no TLS version in common with the server",
            A::NoApplicationProtocol => "no application protocol (ALPN) in common with the server",
            A::UnrecognisedName => "the server does not know the server name",
            _ => "alert from the server",
        },
        rustls::Error::NoCertificatesPresented => "the server presented no certificate",
        rustls::Error::PeerIncompatible(_) => "no parameters in common with the server",
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
            "not a TLS server (unexpected message)"
        }
        rustls::Error::InappropriateHandshakeMessage { .. } | rustls::Error::PeerMisbehaved(_) => {
            "the server broke the TLS protocol"
        }
        _ => "handshake failed",
    };
    words.to_string()
}

/// The `notAfter` of a DER certificate, read with a minimal DER walk
/// (Certificate → TBSCertificate → Validity); `None` if it does not parse.
pub fn not_after(der: &[u8]) -> Option<SystemTime> {
    const SEQUENCE: u8 = 0x30;
    let (tag, certificate, _) = tlv(der)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, tbs, _) = tlv(certificate)?;
    if tag != SEQUENCE {
        return None;
    }
    let mut rest = tbs;
    if rest.first() == Some(&0xa0) {
        rest = tlv(rest)?.2; // [0] version
    }
    rest = tlv(rest)?.2; // serialNumber
    rest = tlv(rest)?.2; // signature algorithm
    rest = tlv(rest)?.2; // issuer
    let (tag, validity, _) = tlv(rest)?;
    if tag != SEQUENCE {
        return None;
    }
    let (_, _, after_not_before) = tlv(validity)?;
    let (tag, time, _) = tlv(after_not_before)?;
    der_time(tag, time)
}

/// One DER tag-length-value: (tag, content, the bytes after it).
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *input.first()?;
    let first = *input.get(1)?;
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for b in input.get(2..2 + n)? {
            len = (len << 8) | usize::from(*b);
        }
        (len, 2 + n)
    };
    let end = header.checked_add(len)?;
    Some((tag, input.get(header..end)?, input.get(end..)?))
}

/// UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`).
fn der_time(tag: u8, text: &[u8]) -> Option<SystemTime> {
    let digits = |range: std::ops::Range<usize>| -> Option<u64> {
        let part = text.get(range)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    let (year, rest) = match (tag, text.len()) {
        (0x17, 13) => {
            let yy = digits(0..2)?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, 2)
        }
        (0x18, 15) => (digits(0..4)?, 4),
        _ => return None,
    };
    if text.last() != Some(&b'Z') {
        return None;
    }
    let month = digits(rest..rest + 2)?;
    let day = digits(rest + 2..rest + 4)?;
    let hour = digits(rest + 4..rest + 6)?;
    let minute = digits(rest + 6..rest + 8)?;
    let second = digits(rest + 8..rest + 10)?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    if second > 60 || year < 1970 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second;
    UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (year ≥ 1970),
/// after Howard Hinnant's `days_from_civil`.
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_from_civil_matches_known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2024, 2, 29), 19_782);
        assert_eq!(days_from_civil(2050, 1, 1), 29_220);
    }

    #[test]
    fn der_times_of_both_kinds() {
        let t = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
        assert_eq!(der_time(0x17, b"700101000000Z"), Some(t(0)));
        assert_eq!(der_time(0x17, b"491231235959Z"), Some(t(2_524_607_999)));
        assert_eq!(der_time(0x18, b"20500101000000Z"), Some(t(2_524_608_000)));
        assert_eq!(der_time(0x17, b"700101000000+"), None);
        assert_eq!(der_time(0x17, b"70010100000Z"), None);
        assert_eq!(der_time(0x18, b"2050130100000Z"), None);
        assert_eq!(der_time(0x04, b"700101000000Z"), None);
    }

    #[test]
    fn not_after_survives_garbage() {
        assert_eq!(not_after(&[]), None);
        assert_eq!(not_after(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(not_after(&[0x30, 0x03, 0x30, 0x01]), None);
        for n in 0..64 {
            let junk: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
            let _ = not_after(&junk);
        }
    }

    #[test]
    fn debug_never_shows_key_or_bundle_bytes() {
        let tls = TlsConfig {
            ca_pem: Some(b"CA-BYTES".to_vec()),
            client_cert_pem: Some(b"CERT-BYTES".to_vec()),
            client_key_pem: Some(b"KEY-BYTES".to_vec()),
            ..TlsConfig::default()
        };
        let shown = format!("{tls:?}");
        assert!(!shown.contains("BYTES"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn configurations_from_settings_are_built_once() {
        let context = TlsContext::new().expect("context");
        let tls = TlsConfig {
            server_name: Some("db.internal".into()),
            min_version: Some(TlsVersion::Tls13),
            ..TlsConfig::default()
        };
        let a = context.config(Some(&tls), Alpn::Http).expect("config");
        let b = context.config(Some(&tls), Alpn::Http).expect("config");
        assert!(Arc::ptr_eq(&a, &b), "cached");
        let grpc = context.config(Some(&tls), Alpn::Grpc).expect("config");
        assert!(!Arc::ptr_eq(&a, &grpc), "one per ALPN set");
        assert_eq!(grpc.alpn_protocols, [b"h2".to_vec()]);
        let other = TlsConfig {
            min_version: None,
            ..tls.clone()
        };
        let c = context.config(Some(&other), Alpn::Http).expect("config");
        assert!(!Arc::ptr_eq(&a, &c), "other settings, other configuration");
        // Bounded: past the limit the cache starts over.
        for i in 0..MAX_CACHED + 10 {
            let t = TlsConfig {
                server_name: Some(format!("h{i}.internal")),
                ..TlsConfig::default()
            };
            context.config(Some(&t), Alpn::None).expect("config");
        }
        let size: usize = context
            .cache
            .lock()
            .expect("lock")
            .values()
            .map(HashMap::len)
            .sum();
        assert!(size <= MAX_CACHED, "{size}");
    }

    #[test]
    fn verification_follows_the_ca_unless_set() {
        assert!(!TlsConfig::default().verifies());
        let with_ca = TlsConfig {
            ca_pem: Some(vec![]),
            ..TlsConfig::default()
        };
        assert!(with_ca.verifies());
        let off = TlsConfig {
            verify: Some(false),
            ..with_ca
        };
        assert!(!off.verifies());
    }
}
