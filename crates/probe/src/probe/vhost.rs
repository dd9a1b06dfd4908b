//! Virtual hosts: the names an HTTP(S) probe may put in its `Host` header
//! and TLS server name.
//!
//! A virtual host never decides where a probe connects: the prober always
//! dials the listed address itself. These checks are a second fence that
//! also lets the controller refuse, at plan time, values that a URL parser
//! would read as something else (`x@127.0.0.1`, `127.1`, `0x7f.1`,
//! `evil#`, `%65vil`, ...), so that what a user sees is what is sent.

use std::net::{IpAddr, Ipv6Addr};

/// Longest DNS name accepted (RFC 1035 §2.3.4, without the trailing dot).
const MAX_NAME: usize = 253;
/// Longest DNS label (RFC 1035 §2.3.4).
const MAX_LABEL: usize = 63;

/// Checks a virtual host (`HttpGet::host`, `TlsConfig::server_name`): an
/// RFC 1123 host name of at most 253 characters, or an IP literal (IPv4 in
/// dotted-quad form, IPv6 bare or in brackets). Nothing else: no port, no
/// user info, no percent-encoding, no trailing dot, and no name whose last
/// label is a number (`127.1`, `0x7f.1`, `2130706433`), since URL parsers
/// read those as IPv4 addresses.
///
/// The error is a short English reason for a field error, without the
/// value itself.
pub fn validate_virtual_host(host: &str) -> Result<(), &'static str> {
    if host.is_empty() {
        return Err("must not be empty");
    }
    if let Some(inner) = host.strip_prefix('[') {
        return match inner.strip_suffix(']').map(str::parse::<Ipv6Addr>) {
            Some(Ok(_)) => Ok(()),
            _ => Err("must be a DNS name or an IP address (invalid IPv6 literal)"),
        };
    }
    if host.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    dns_name(host)
}

/// Checks the value of a `Host` request header: a virtual host as
/// [`validate_virtual_host`] accepts it, optionally followed by `:port`
/// (1–65535); an IPv6 literal must then be in brackets.
pub fn validate_host_header(value: &str) -> Result<(), &'static str> {
    split_host_header(value).map(|_| ())
}

/// The host part of a valid `Host` header value (no port, no brackets).
pub(crate) fn split_host_header(value: &str) -> Result<&str, &'static str> {
    let (host, port) = if let Some(rest) = value.strip_prefix('[') {
        let Some((inner, after)) = rest.split_once(']') else {
            return Err("must be a DNS name or an IP address (invalid IPv6 literal)");
        };
        if inner.parse::<Ipv6Addr>().is_err() {
            return Err("must be a DNS name or an IP address (invalid IPv6 literal)");
        }
        return match after.strip_prefix(':') {
            None if after.is_empty() => Ok(inner),
            Some(port) if valid_port(port) => Ok(inner),
            Some(_) => Err("has an invalid port (must be 1-65535)"),
            None => Err("must be a host, optionally followed by :port"),
        };
    } else {
        match value.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (value, None),
        }
    };
    if port.is_some_and(|p| p.contains(':')) {
        // A bare IPv6 literal: valid as a host, not in a Host header.
        return Err("must put an IPv6 address in brackets");
    }
    if port.is_some_and(|p| !valid_port(p)) {
        return Err("has an invalid port (must be 1-65535)");
    }
    validate_virtual_host(host).map(|()| host)
}

fn valid_port(port: &str) -> bool {
    !port.is_empty()
        && port.len() <= 5
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u16>().is_ok_and(|p| p != 0)
}

/// The TLS server name of a valid virtual host: the name itself, or `None`
/// for an IP literal (TLS sends no SNI for addresses).
pub(crate) fn sni_name(host: &str) -> Option<&str> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>().is_err().then_some(host)
}

/// An RFC 1123 host name whose last label is not a number.
fn dns_name(name: &str) -> Result<(), &'static str> {
    if name.len() > MAX_NAME {
        return Err("must be at most 253 characters");
    }
    let mut labels = name.split('.').peekable();
    while let Some(label) = labels.next() {
        if label.is_empty() {
            return Err("must be a DNS name or an IP address (empty label)");
        }
        if label.len() > MAX_LABEL {
            return Err("must be a DNS name or an IP address (label longer than 63)");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err("must be a DNS name or an IP address (only letters, digits, '-' and '.')");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("must be a DNS name or an IP address (label starts or ends with '-')");
        }
        if labels.peek().is_none() && is_number(label) {
            // WHATWG URL parsing turns such names into IPv4 addresses.
            return Err("must be a DNS name or an IP address (ends in a number)");
        }
    }
    Ok(())
}

/// A label URL parsers read as an IPv4 number: decimal, or `0x` hex.
fn is_number(label: &str) -> bool {
    if let Some(hex) = label
        .strip_prefix("0x")
        .or_else(|| label.strip_prefix("0X"))
    {
        return hex.bytes().all(|b| b.is_ascii_hexdigit());
    }
    label.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_dns_names_and_ip_literals() {
        for ok in [
            "db.internal",
            "DB.Internal",
            "a",
            "1db",
            "x-1.example-2.com",
            "10.0.0.1",
            "::1",
            "[::1]",
            "fd00::1",
            "svc.ns.svc.cluster.local",
        ] {
            assert_eq!(validate_virtual_host(ok), Ok(()), "{ok}");
        }
        let long = format!("{}.com", vec!["a".repeat(63); 3].join("."));
        assert_eq!(long.len(), 195);
        assert_eq!(validate_virtual_host(&long), Ok(()));
    }

    #[test]
    fn refuses_url_tricks_and_non_names() {
        for bad in [
            "",
            "x@127.0.0.1",
            "127.1",
            "0x7f.1",
            "0x7f000001",
            "2130706433",
            "0251.0376.0251.0376",
            "evil.example#",
            "evil.example?",
            "evil.example\\",
            "evil.example/",
            "%65vil.example",
            "evil.example:8443",
            "evil.example.",
            ".evil",
            "a..b",
            "-a.example",
            "a-.example",
            "[::1",
            "[evil]",
            "::1]",
            "exa mple",
            "bad\nhost",
            "ünicode.example",
        ] {
            assert!(validate_virtual_host(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(validate_virtual_host(&"a".repeat(64)).is_err());
        let too_long = format!("{}.com", vec!["a".repeat(63); 4].join("."));
        assert_eq!(
            validate_virtual_host(&too_long),
            Err("must be at most 253 characters")
        );
    }

    #[test]
    fn host_headers_may_carry_a_port() {
        assert_eq!(split_host_header("api.test:8443"), Ok("api.test"));
        assert_eq!(split_host_header("api.test"), Ok("api.test"));
        assert_eq!(split_host_header("10.0.0.1:80"), Ok("10.0.0.1"));
        assert_eq!(split_host_header("[::1]:80"), Ok("::1"));
        assert_eq!(split_host_header("[::1]"), Ok("::1"));
        for bad in [
            "::1",
            "api.test:",
            "api.test:0",
            "api.test:65536",
            "api.test:+80",
            "api.test:80:80",
            "x@127.0.0.1:80",
            "127.1:80",
            "[::1]x",
            "[::1]:",
            "evil#:80",
        ] {
            assert!(validate_host_header(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn sni_only_for_names() {
        assert_eq!(sni_name("db.internal"), Some("db.internal"));
        assert_eq!(sni_name("10.0.0.1"), None);
        assert_eq!(sni_name("::1"), None);
    }
}
