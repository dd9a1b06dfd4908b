//! The part of `plan` that uses material from Secrets and ConfigMaps: TLS
//! options (`tls` on httpGet, tcpSocket and grpc) and header values from
//! `valueFrom.secretKeyRef`.
//!
//! Pure like the rest of `plan`: what the references point to comes in
//! through [`Resolve`], which the controller implements over its
//! label-selected watch caches (`crate::credentials`) and tests with a map.
//! Material is carried as [`Sensitive`] until it is handed to the probe
//! engine, whose types never show it either; error messages name the field
//! and the Secret or ConfigMap key, never a value.

use std::fmt;

use kube_endpoints_api::{
    ClusterEndpointPort, ClusterEndpointSpec, HttpGetHandler, KeyReference, KeySource,
    TLS_CERT_KEY, TLS_PRIVATE_KEY_KEY, TlsOptions,
};
use kube_endpoints_probe::{Probe, TlsConfig, TlsVersion};

use super::{Errors, MAX_HEADER_VALUE, PortPlan};

/// Bytes from a Secret (or a ConfigMap holding a CA bundle): `Debug`
/// shows the size only, so that no log, status or panic message can
/// carry them.
#[derive(Clone, PartialEq, Eq)]
pub struct Sensitive(Vec<u8>);

impl Sensitive {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Sensitive(bytes.into())
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

impl fmt::Debug for Sensitive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sensitive(<{} bytes redacted>)", self.0.len())
    }
}

/// Which kind of object a reference names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SourceKind {
    ConfigMap,
    Secret,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::ConfigMap => "ConfigMap",
            SourceKind::Secret => "Secret",
        }
    }
}

/// What a reference resolved to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    Found(Sensitive),
    /// The object or its key is not there (or not readable): why, in
    /// words naming the object and key (e.g. `Secret "db" has no key "token"`).
    Missing(String),
    /// Not resolved on purpose (counting targets for budgets, which does
    /// not depend on credentials): the material is left out.
    Deferred,
}

/// Resolves `key` of the ConfigMap or Secret `name` in the object's own
/// namespace (references never name another namespace).
pub trait Resolve {
    fn lookup(&self, kind: SourceKind, name: &str, key: &str) -> Lookup;
}

/// Resolves nothing (see [`Lookup::Deferred`]).
pub struct Deferred;

impl Resolve for Deferred {
    fn lookup(&self, _: SourceKind, _: &str, _: &str) -> Lookup {
        Lookup::Deferred
    }
}

/// Every ConfigMap and Secret `spec` refers to, sorted and unique: what a
/// change of which must re-plan the object.
pub fn references(spec: &ClusterEndpointSpec) -> Vec<(SourceKind, String)> {
    let mut refs = Vec::new();
    let mut tls = |t: &Option<TlsOptions>| {
        let Some(t) = t else { return };
        if let Some(source) = &t.ca_bundle_from {
            refs.extend(key_source(source).map(|(kind, r)| (kind, r.name.clone())));
        }
        if let Some(secret) = &t.client_cert_secret_ref {
            refs.push((SourceKind::Secret, secret.name.clone()));
        }
    };
    for port in &spec.ports {
        if let Some(h) = &port.http_get {
            tls(&h.tls);
        }
        if let Some(h) = &port.tcp_socket {
            tls(&h.tls);
        }
        if let Some(h) = &port.grpc {
            tls(&h.tls);
        }
    }
    for port in &spec.ports {
        for header in port.http_get.iter().flat_map(|h| &h.http_headers) {
            if let Some(from) = &header.value_from {
                refs.push((SourceKind::Secret, from.secret_key_ref.name.clone()));
            }
        }
    }
    refs.sort();
    refs.dedup();
    refs
}

fn key_source(source: &KeySource) -> Option<(SourceKind, &KeyReference)> {
    match (&source.config_map_key_ref, &source.secret_key_ref) {
        (Some(r), None) => Some((SourceKind::ConfigMap, r)),
        (None, Some(r)) => Some((SourceKind::Secret, r)),
        _ => None,
    }
}

/// Resolve and check the TLS options and header values of every spec port
/// and put them into the probes of its port plans (a spec port with
/// `additionalTargetPorts` has several). Errors name the field.
pub(super) fn apply(
    spec: &ClusterEndpointSpec,
    ports: &mut [PortPlan],
    resolve: &dyn Resolve,
    errors: &mut Errors,
) {
    let mut resolving = Resolving { resolve, errors };
    for (i, port) in spec.ports.iter().enumerate() {
        let field = format!("spec.ports[{i}]");
        let Some(material) = resolving.port_material(&field, port) else {
            continue;
        };
        for plan in ports.iter_mut().filter(|p| p.service_port == port.name) {
            if let Some(probe) = &mut plan.probe {
                material.put_into(probe);
            }
        }
    }
}

/// What one spec port's probe gets from its TLS options and headers.
#[derive(Default)]
struct Material {
    tls: Option<TlsConfig>,
    /// (index in `httpHeaders`, name, value) of headers from Secrets.
    headers: Vec<(usize, String, String)>,
}

impl Material {
    fn put_into(&self, probe: &mut Probe) {
        match probe {
            Probe::Http(get) => {
                if self.tls.is_some() {
                    get.tls = self.tls.clone();
                }
                for (index, name, value) in &self.headers {
                    // `plan_http` keeps the spec's order; the name check
                    // guards against a future change of that.
                    if let Some(entry) = get.headers.get_mut(*index)
                        && entry.0 == *name
                    {
                        entry.1 = value.clone();
                    }
                }
            }
            Probe::Tcp(tcp) => {
                if self.tls.is_some() {
                    tcp.tls = self.tls.clone();
                }
            }
            Probe::Grpc(grpc) => {
                if self.tls.is_some() {
                    grpc.tls = self.tls.clone();
                }
            }
            Probe::Udp(_) => {}
        }
    }
}

/// Resolves the references of one spec, collecting a field error for
/// each one that is bad or missing.
struct Resolving<'a> {
    resolve: &'a dyn Resolve,
    errors: &'a mut Errors,
}

impl Resolving<'_> {
    fn port_material(&mut self, field: &str, port: &ClusterEndpointPort) -> Option<Material> {
        let before = self.errors.0.len();
        let mut material = Material::default();
        if let Some(http) = &port.http_get {
            let field = format!("{field}.httpGet");
            material.headers = self.header_values(&field, http);
            if let Some(tls) = &http.tls {
                let https = http
                    .scheme
                    .as_deref()
                    .is_some_and(|s| s.eq_ignore_ascii_case("https"));
                if !https {
                    self.errors
                        .push(format!("{field}.tls"), "tls needs scheme: https");
                }
                material.tls = self.tls_config(&format!("{field}.tls"), tls);
            }
        }
        // TLS over TCP and gRPC: only on an enabled handler.
        let handlers = [
            (
                "tcpSocket",
                port.tcp_socket.as_ref().map(|h| (h.enable, &h.tls)),
            ),
            ("grpc", port.grpc.as_ref().map(|h| (h.enable, &h.tls))),
        ];
        for (handler, options) in handlers {
            let Some((enable, Some(tls))) = options else {
                continue;
            };
            let field = format!("{field}.{handler}.tls");
            if enable {
                material.tls = self.tls_config(&field, tls);
            } else {
                self.errors.push(
                    field,
                    "tls is set but the handler is not enabled (set enable: true)",
                );
            }
        }
        (self.errors.0.len() == before).then_some(material)
    }

    /// The values of the headers set with `valueFrom`, checked as header
    /// values (without ever quoting them).
    fn header_values(
        &mut self,
        field: &str,
        http: &HttpGetHandler,
    ) -> Vec<(usize, String, String)> {
        let mut values = Vec::new();
        for (i, header) in http.http_headers.iter().enumerate() {
            let Some(from) = &header.value_from else {
                continue;
            };
            let field = format!("{field}.httpHeaders[{i}]");
            if !header.value.is_empty() {
                self.errors.push(
                    format!("{field}.valueFrom"),
                    "set value or valueFrom, not both",
                );
                continue;
            }
            if header.name.eq_ignore_ascii_case("host") {
                self.errors.push(
                    format!("{field}.valueFrom"),
                    "a Host header cannot come from a Secret: set its value (it is the virtual host, not a credential)",
                );
                continue;
            }
            let key_field = format!("{field}.valueFrom.secretKeyRef");
            let Some(bytes) = self.lookup(&key_field, SourceKind::Secret, &from.secret_key_ref)
            else {
                continue;
            };
            let described = describe(SourceKind::Secret, &from.secret_key_ref);
            let Ok(value) = String::from_utf8(bytes.into_bytes()) else {
                self.errors
                    .push(key_field, format!("{described} is not UTF-8 text"));
                continue;
            };
            // A trailing newline is what `kubectl create secret --from-file`
            // of an `echo`ed file leaves; it cannot be part of a header value.
            let value = value.trim_end_matches(['\r', '\n']).to_string();
            if value.chars().count() > MAX_HEADER_VALUE {
                self.errors.push(
                    key_field,
                    format!("{described} is longer than {MAX_HEADER_VALUE} characters"),
                );
                continue;
            }
            if value.chars().any(|c| c != '\t' && c.is_ascii_control()) {
                self.errors.push(
                    key_field,
                    format!("{described} holds control characters (tab excepted)"),
                );
                continue;
            }
            values.push((i, header.name.clone(), value));
        }
        values
    }

    fn tls_config(&mut self, field: &str, tls: &TlsOptions) -> Option<TlsConfig> {
        let before = self.errors.0.len();
        if let Some(name) = tls.server_name.as_deref().filter(|n| !n.is_empty())
            && let Err(why) = super::validate_virtual_host(name)
        {
            self.errors
                .push(format!("{field}.serverName"), format!("{name:?} {why}"));
        }
        let min_version = match tls.min_version.as_deref() {
            None | Some("") => None,
            Some("1.2") => Some(TlsVersion::Tls12),
            Some("1.3") => Some(TlsVersion::Tls13),
            Some(other) => {
                self.errors.push(
                    format!("{field}.minVersion"),
                    format!("must be \"1.2\" or \"1.3\", got {other:?}"),
                );
                None
            }
        };
        let ca_pem = match (&tls.ca_bundle, &tls.ca_bundle_from) {
            (Some(_), Some(_)) => {
                self.errors.push(
                    format!("{field}.caBundleFrom"),
                    "set at most one of caBundle and caBundleFrom",
                );
                None
            }
            (Some(pem), None) => Some(pem.clone().into_bytes()),
            (None, Some(source)) => {
                let from = format!("{field}.caBundleFrom");
                match key_source(source) {
                    Some((kind, r)) => {
                        let ref_field = match kind {
                            SourceKind::ConfigMap => format!("{from}.configMapKeyRef"),
                            SourceKind::Secret => format!("{from}.secretKeyRef"),
                        };
                        self.lookup(&ref_field, kind, r).map(Sensitive::into_bytes)
                    }
                    None => {
                        self.errors
                            .push(from, "set exactly one of configMapKeyRef and secretKeyRef");
                        None
                    }
                }
            }
            (None, None) => None,
        };
        let (client_cert_pem, client_key_pem) = match &tls.client_cert_secret_ref {
            None => (None, None),
            Some(secret) => {
                let ref_field = format!("{field}.clientCertSecretRef");
                let key = |key: &str| KeyReference {
                    name: secret.name.clone(),
                    key: key.to_string(),
                };
                let cert = self.lookup(&ref_field, SourceKind::Secret, &key(TLS_CERT_KEY));
                let private =
                    self.lookup(&ref_field, SourceKind::Secret, &key(TLS_PRIVATE_KEY_KEY));
                (
                    cert.map(Sensitive::into_bytes),
                    private.map(Sensitive::into_bytes),
                )
            }
        };
        if self.errors.0.len() != before {
            return None;
        }
        let config = TlsConfig {
            verify: tls.verify,
            ca_pem,
            server_name: tls.server_name.clone().filter(|n| !n.is_empty()),
            client_cert_pem,
            client_key_pem,
            min_version,
        };
        // Deferred material is left out: nothing to check it against.
        let deferred = (tls.ca_bundle_from.is_some() && config.ca_pem.is_none())
            || (tls.client_cert_secret_ref.is_some() && config.client_key_pem.is_none());
        if !deferred && let Err(detail) = config.check() {
            self.errors.push(field.to_string(), detail);
            return None;
        }
        Some(config)
    }

    /// Resolve one reference; a missing one is a field error naming it.
    /// `None` also when deferred (no error then).
    fn lookup(&mut self, field: &str, kind: SourceKind, r: &KeyReference) -> Option<Sensitive> {
        let before = self.errors.0.len();
        if !is_dns1123_subdomain(&r.name) {
            self.errors.push(
                format!("{field}.name"),
                format!(
                    "{:?} is not a valid {} name (a DNS subdomain: lowercase letters, digits, '-' and '.', at most 253 characters)",
                    r.name,
                    kind.as_str()
                ),
            );
        }
        let key_ok = !r.key.is_empty()
            && r.key.len() <= 253
            && r.key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
        if !key_ok {
            self.errors.push(
                format!("{field}.key"),
                format!(
                    "{:?} is not a valid key (letters, digits, '-', '_' and '.', at most 253 characters)",
                    r.key
                ),
            );
        }
        if self.errors.0.len() != before {
            return None;
        }
        match self.resolve.lookup(kind, &r.name, &r.key) {
            Lookup::Found(bytes) => Some(bytes),
            Lookup::Missing(why) => {
                self.errors.push(field, why);
                None
            }
            Lookup::Deferred => None,
        }
    }
}

/// `Secret "db" key "token"`.
fn describe(kind: SourceKind, r: &KeyReference) -> String {
    format!("{} {:?} key {:?}", kind.as_str(), r.name, r.key)
}

fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}
