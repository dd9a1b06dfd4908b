//! `kube-endpoints check -f FILE`: validate ClusterEndpoint manifests and
//! probe their hosts once, locally, with no cluster. Prints a verdict per
//! host and, with `-o yaml`, the objects the controller would write.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::SystemTime;

use futures::StreamExt;
use kube_endpoints_api::{ClusterEndpointSpec, GROUP, VERSION};
use kube_endpoints_probe::{Expect, Health, HealthState, Probe, Prober, TargetId, Verdict};
use serde::Deserialize;

use crate::builder::{self, BuildSettings, Owner};
use crate::names;
use crate::plan::{self, Plan, PortPlan, Resolve, SourceKind, plan_with};
use crate::policy::{self, AddressPolicy, ClusterRanges};
use crate::resolve::{self, Lookup};
use crate::yaml;

#[derive(Deserialize)]
struct Manifest {
    #[serde(rename = "apiVersion", default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    metadata: Meta,
    spec: Option<serde_json::Value>,
}

#[derive(Deserialize, Default)]
struct Meta {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
}

/// `check` reads no cluster: a reference to a Secret or ConfigMap cannot be
/// resolved, and probing without its material would say nothing true.
struct Offline;

impl Resolve for Offline {
    fn lookup(&self, kind: SourceKind, name: &str, _key: &str) -> plan::Lookup {
        plan::Lookup::Missing(format!(
            "{} {name:?} cannot be read: kube-endpoints check reads no Secrets or ConfigMaps",
            kind.as_str()
        ))
    }
}

/// One validated object, ready to probe.
struct Checked {
    owner: Owner,
    plan: Plan,
}

pub struct Report {
    pub text: String,
    /// Some manifest was invalid: the command should fail.
    pub invalid: bool,
}

/// Read, validate and probe. `yaml` adds the objects that would be written.
/// Hosts given as DNS names are resolved once with `dns`.
pub async fn check(
    file: &Path,
    prober: &Prober,
    dns: &Lookup,
    yaml: bool,
) -> Result<Report, yaml::FileError> {
    let mut out = String::new();
    let mut invalid = false;
    let mut checked = Vec::new();
    for (index, value) in yaml::read_file(file)?.into_iter().enumerate() {
        let manifest: Manifest = match serde_json::from_value(value) {
            Ok(m) => m,
            Err(e) => {
                invalid = true;
                let _ = writeln!(out, "document {index}: not a Kubernetes object: {e}");
                continue;
            }
        };
        if manifest.kind != "ClusterEndpoint" {
            let _ = writeln!(
                out,
                "document {index}: skipping {} (not a ClusterEndpoint)",
                manifest.kind
            );
            continue;
        }
        let name = manifest.metadata.name.clone();
        let label = format!("ClusterEndpoint {name:?} (document {index})");
        let spec: ClusterEndpointSpec = match manifest.spec.map(serde_json::from_value).transpose()
        {
            Ok(Some(spec)) => spec,
            Ok(None) => {
                invalid = true;
                let _ = writeln!(out, "{label}: invalid:\n  spec: required");
                continue;
            }
            Err(e) => {
                invalid = true;
                let _ = writeln!(out, "{label}: invalid:\n  spec: {e}");
                continue;
            }
        };
        // Without a cluster only the built-in denies apply: `check` never
        // probes a cloud metadata address from the machine it runs on.
        match plan_with(&name, &spec, &Offline) {
            Ok(plan) => {
                // Names resolve before the address policy judges them.
                let wanted = names::wanted(&plan).into_keys();
                let resolutions = resolve::resolve_once(dns, wanted).await;
                let plan = policy::restrict(
                    names::expand(plan, &resolutions),
                    &AddressPolicy::default(),
                    &ClusterRanges::default(),
                );
                let _ = writeln!(out, "{label}: valid");
                for port in &plan.ports {
                    if let Some(line) = describe(port) {
                        let _ = writeln!(out, "  {}: {line}", port.name);
                    }
                    for line in describe_names(port) {
                        let _ = writeln!(out, "  {}: {line}", port.name);
                    }
                }
                let api_version = if manifest.api_version.is_empty() {
                    format!("{GROUP}/{VERSION}")
                } else {
                    manifest.api_version.clone()
                };
                checked.push(Checked {
                    owner: Owner {
                        api_version,
                        kind: "ClusterEndpoint".into(),
                        namespace: manifest
                            .metadata
                            .namespace
                            .unwrap_or_else(|| "default".into()),
                        name,
                        uid: String::new(),
                    },
                    plan,
                });
            }
            Err(errors) => {
                invalid = true;
                let _ = writeln!(out, "{label}: invalid:");
                for e in errors.0 {
                    let _ = writeln!(out, "  {e}");
                }
            }
        }
    }

    let mut rows = vec![
        [
            "OBJECT", "PORT", "HOST", "PROBE", "RESULT", "LATENCY", "MESSAGE",
        ]
        .map(String::from),
    ];
    let mut objects = Vec::new();
    for c in &checked {
        let health = probe_all(c, prober, &mut rows).await;
        if yaml {
            objects.push(render(c, &health));
        }
    }
    if !checked.is_empty() {
        out.push('\n');
        out.push_str(&table(&rows));
    }
    for o in objects {
        out.push_str(&o);
    }
    Ok(Report { text: out, invalid })
}

/// Probes `check` runs at once.
const CONCURRENT_PROBES: usize = 64;

async fn probe_all(
    c: &Checked,
    prober: &Prober,
    rows: &mut Vec<[String; 7]>,
) -> BTreeMap<TargetId, Health> {
    let mut health = BTreeMap::new();
    let targets = c.plan.targets();
    // A bounded number at once: a manifest of thousands of host-ports must
    // not open thousands of sockets on the machine `check` runs on.
    let outcomes: Vec<_> = futures::stream::iter(targets.iter().map(|(id, spec)| async move {
        let addr = SocketAddr::new(id.host, spec.probed_port());
        (
            id,
            spec,
            prober.probe(&spec.probe, addr, spec.timeout).await,
        )
    }))
    .buffer_unordered(CONCURRENT_PROBES)
    .collect()
    .await;
    let mut by_id = BTreeMap::new();
    for (id, spec, outcome) in outcomes {
        by_id.insert(id.clone(), (spec.probe.kind().as_str(), outcome));
    }
    for port in &c.plan.ports {
        for denied in &port.denied {
            rows.push([
                format!("{}/{}", c.owner.namespace, c.owner.name),
                format!("{}:{}", port.name, port.target_port),
                denied.host.to_string(),
                "none".into(),
                "denied".into(),
                "-".into(),
                denied.message.clone(),
            ]);
        }
        let first_row = rows.len();
        for host in &port.hosts {
            let id = TargetId {
                port: port.name.clone(),
                host: *host,
            };
            let row = match by_id.get(&id) {
                Some((kind, outcome)) => {
                    let ok = outcome.verdict == Verdict::Success;
                    health.insert(
                        id.clone(),
                        Health {
                            state: if ok {
                                HealthState::Ready
                            } else {
                                HealthState::NotReady
                            },
                            since: SystemTime::now(),
                            message: outcome.message.clone(),
                        },
                    );
                    [
                        kind.to_string(),
                        match outcome.verdict {
                            Verdict::Success => "healthy",
                            Verdict::Failure => "unhealthy",
                            Verdict::ConfigError => "config-error",
                            Verdict::LocalError => "local-error",
                        }
                        .to_string(),
                        format!("{:.1}ms", outcome.latency.as_secs_f64() * 1000.0),
                        outcome.message.clone(),
                    ]
                }
                None => [
                    "none".into(),
                    "static".into(),
                    "-".into(),
                    "not probed".into(),
                ],
            };
            let [probe, result, latency, message] = row;
            rows.push([
                format!("{}/{}", c.owner.namespace, c.owner.name),
                format!("{}:{}", port.name, port.target_port),
                host.to_string(),
                probe,
                result,
                latency,
                message,
            ]);
        }
        // Per-host fields change what a verdict means: say how each host
        // would be listed (drained, a backup on standby or in rotation).
        let listing = crate::host_roles::list_port(port, &health);
        for (row, host) in rows[first_row..].iter_mut().zip(&port.hosts) {
            if let Some(role) = crate::host_roles::role(port, &listing, *host) {
                // In the message column (the last, free text), so that
                // the table's columns stay one word each.
                row[6] = if row[6].is_empty() {
                    format!("[{role}]")
                } else {
                    format!("[{role}] {}", row[6])
                };
            }
        }
    }
    health
}

fn render(c: &Checked, health: &BTreeMap<TargetId, Health>) -> String {
    let settings = BuildSettings {
        controller_id: crate::DEFAULT_CONTROLLER_ID.to_string(),
        compat_endpoints: true,
    };
    let desired = builder::desired(&c.owner, &c.plan, health, &settings, &[]);
    let mut out = String::new();
    let mut push = |v: Result<String, yaml::WriteError>| match v {
        Ok(s) => {
            out.push_str("---\n");
            out.push_str(&s);
        }
        Err(e) => {
            let _ = writeln!(out, "# could not render: {e}");
        }
    };
    push(yaml::to_string(&desired.service));
    for slice in &desired.slices {
        push(yaml::to_string(slice));
    }
    if let Some(endpoints) = &desired.endpoints {
        push(yaml::to_string(endpoints));
    }
    out
}

// ------------------------------------------------------- probe settings
// One line per probed port: what is sent where, what counts as success,
// and the schedule. Never what is sent or expected itself (a payload may
// be a credential), nor a path's query.

/// How `port` is probed, or `None` for a static port.
/// One line per host given as a DNS name: what it resolved to, or why not.
fn describe_names(port: &PortPlan) -> Vec<String> {
    names::name_statuses(port, None)
        .into_iter()
        .map(|n| match n.failure {
            Some(why) => format!("name {} does not resolve: {why}", n.name),
            None => format!("name {} resolves to {}", n.name, n.addresses.join(", ")),
        })
        .collect()
}

fn describe(port: &PortPlan) -> Option<String> {
    let probe = port.probe.as_ref()?;
    let what = match probe {
        Probe::Tcp(t) if t.send.is_empty() && t.expect.is_none() => "tcp connect".to_string(),
        Probe::Tcp(t) => format!("tcp{}", exchange(&t.send, t.expect.as_ref())),
        Probe::Udp(u) => format!("udp{}", exchange(&u.data, u.expect.as_ref())),
        Probe::Http(get) => {
            let path = get.path.split(['?', '#']).next().unwrap_or_default();
            let mut what = format!("{} {} {path}", get.scheme.as_str(), get.method.as_str());
            if !get.body.is_empty() {
                let _ = write!(what, " with a {}-byte body", get.body.len());
            }
            let statuses: Vec<String> = get
                .expected_statuses
                .iter()
                .map(|r| {
                    if r.from == r.to {
                        r.from.to_string()
                    } else {
                        format!("{}-{}", r.from, r.to)
                    }
                })
                .collect();
            let statuses = if statuses.is_empty() {
                "200-399".to_string()
            } else {
                statuses.join(",")
            };
            let _ = write!(what, ", status {statuses}");
            if let Some(m) = &get.body_match {
                let _ = write!(what, ", body must match {}", expect_kind(m));
            }
            what
        }
        Probe::Grpc(g) if g.service.is_empty() => "grpc health of the server".to_string(),
        Probe::Grpc(g) => format!("grpc health of service {:?}", g.service),
    };
    let probed = port.probe_port.unwrap_or(port.target_port);
    let mut line = format!("{what}; probed on port {probed}");
    if port.probe_port.is_some() {
        let _ = write!(line, " (traffic to {})", port.target_port);
    }
    let _ = write!(line, "; every {}", secs(port.period));
    if let Some(p) = port.intervals.unhealthy_period {
        let _ = write!(line, ", every {} while unhealthy", secs(p));
    }
    if port.intervals.jitter_percent > 0 {
        let _ = write!(line, ", jitter {}%", port.intervals.jitter_percent);
    }
    if let Some(e) = port.intervals.edge_period {
        let _ = write!(line, ", confirmed {} after a change", secs(e));
    }
    Some(line)
}

/// `: send 6 bytes, expect text`, or nothing for neither.
fn exchange(send: &[u8], expect: Option<&Expect>) -> String {
    let mut parts = Vec::new();
    if !send.is_empty() {
        parts.push(format!("send {} bytes", send.len()));
    }
    if let Some(m) = expect {
        parts.push(format!("expect {}", expect_kind(m)));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(": {}", parts.join(", "))
    }
}

fn expect_kind(m: &Expect) -> &'static str {
    match m {
        Expect::Contains(_) => "a byte string",
        Expect::Regex(_) => "a regex",
    }
}

fn secs(d: std::time::Duration) -> String {
    if d.is_zero() {
        "at once".to_string()
    } else {
        format!("{}s", d.as_secs())
    }
}

fn table(rows: &[[String; 7]]) -> String {
    let mut widths = [0usize; 7];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i == 6 {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
