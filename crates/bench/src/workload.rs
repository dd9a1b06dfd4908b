//! Named profiles and the workload they generate: N objects × H hosts × P
//! ports with a probe mix and a period, the hosts spread over a pool of
//! test-host addresses. Pure: no I/O here.

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde::Serialize;
use serde_json::{Value, json};

/// Probe handler of one port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Probe {
    Tcp,
    Http,
    Udp,
    Grpc,
}

impl Probe {
    pub fn as_str(self) -> &'static str {
        match self {
            Probe::Tcp => "tcp",
            Probe::Http => "http",
            Probe::Udp => "udp",
            Probe::Grpc => "grpc",
        }
    }

    /// The port the test backend serves this probe on (on every address).
    pub fn target_port(self) -> u16 {
        match self {
            Probe::Tcp => 9001,
            Probe::Http => 9080,
            Probe::Udp => 9053,
            Probe::Grpc => 9090,
        }
    }

    fn handler(self) -> (&'static str, Value) {
        match self {
            Probe::Tcp => ("tcpSocket", json!({"enable": true})),
            Probe::Http => ("httpGet", json!({"path": "/healthz", "scheme": "http"})),
            Probe::Udp => ("udpSocket", json!({"enable": true, "data": "bench"})),
            Probe::Grpc => ("grpc", json!({"enable": true})),
        }
    }

    fn protocol(self) -> &'static str {
        match self {
            Probe::Udp => "UDP",
            _ => "TCP",
        }
    }
}

/// Rewrite every UDP probe's `data` of `object` from a string into the list
/// of its byte values (the predecessor's CRD form).
pub fn udp_data_as_bytes(object: &mut Value) {
    let Some(ports) = object
        .pointer_mut("/spec/ports")
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    for port in ports {
        if let Some(data) = port.pointer_mut("/udpSocket/data")
            && let Some(text) = data.as_str()
        {
            *data = Value::from(text.bytes().map(Value::from).collect::<Vec<_>>());
        }
    }
}

/// The objects of one run and how they are probed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Workload {
    pub objects: usize,
    pub hosts_per_object: usize,
    /// One port per entry.
    pub probes: Vec<Probe>,
    pub period_seconds: u32,
    pub timeout_seconds: u32,
    pub failure_threshold: u32,
    pub success_threshold: u32,
    /// Distinct host addresses the hosts are spread over.
    pub addresses: usize,
    /// Headless Services (`clusterIP: None`): no ClusterIP allocation.
    pub headless: bool,
}

impl Workload {
    /// (object, port, host) targets in total.
    pub fn targets(&self) -> usize {
        self.objects * self.hosts_per_object * self.probes.len()
    }

    pub fn object_name(i: usize) -> String {
        format!("bench-{i:05}")
    }

    pub fn port_name(&self, idx: usize) -> String {
        format!("p{idx}-{}", self.probes[idx].as_str())
    }

    /// The hosts of object `i`: `hosts_per_object` consecutive addresses of
    /// the pool (wrapping), so every address serves about the same number
    /// of objects and no object lists an address twice.
    pub fn hosts_of<'a>(&self, i: usize, pool: &'a [IpAddr]) -> Vec<&'a IpAddr> {
        if pool.is_empty() {
            return Vec::new();
        }
        let h = self.hosts_per_object.min(pool.len());
        (0..h).map(|j| &pool[(i * h + j) % pool.len()]).collect()
    }

    /// Object `i` as a ClusterEndpoint of `group` (JSON, for the dynamic API).
    pub fn object(&self, i: usize, group: &str, namespace: &str, pool: &[IpAddr]) -> Value {
        let hosts: Vec<String> = self
            .hosts_of(i, pool)
            .iter()
            .map(ToString::to_string)
            .collect();
        let ports: Vec<Value> = self
            .probes
            .iter()
            .enumerate()
            .map(|(idx, probe)| {
                let (handler, body) = probe.handler();
                let mut port = json!({
                    "name": self.port_name(idx),
                    "hosts": hosts,
                    "protocol": probe.protocol(),
                    "port": 10000 + idx,
                    "targetPort": probe.target_port(),
                    "timeoutSeconds": self.timeout_seconds,
                    "failureThreshold": self.failure_threshold,
                    "successThreshold": self.success_threshold,
                });
                port[handler] = body;
                port
            })
            .collect();
        let mut spec = json!({"periodSeconds": self.period_seconds, "ports": ports});
        if self.headless {
            spec["clusterIP"] = json!("None");
        }
        json!({
            "apiVersion": format!("{group}/{}", kube_endpoints_api::VERSION),
            "kind": kube_endpoints_api::KIND,
            "metadata": {"name": Self::object_name(i), "namespace": namespace},
            "spec": spec,
        })
    }

    /// Every target as `object/port/host`, the key the watch tracker uses.
    pub fn target_keys(&self, pool: &[IpAddr]) -> Vec<String> {
        let mut out = Vec::with_capacity(self.targets());
        for i in 0..self.objects {
            let name = Self::object_name(i);
            for idx in 0..self.probes.len() {
                let port = self.port_name(idx);
                for h in self.hosts_of(i, pool) {
                    out.push(target_key(&name, &port, &h.to_string()));
                }
            }
        }
        out
    }

    /// The targets whose host is in `broken`.
    pub fn targets_on(&self, pool: &[IpAddr], broken: &[IpAddr]) -> Vec<String> {
        let broken: BTreeSet<&IpAddr> = broken.iter().collect();
        let mut out = Vec::new();
        for i in 0..self.objects {
            let name = Self::object_name(i);
            for idx in 0..self.probes.len() {
                let port = self.port_name(idx);
                for h in self.hosts_of(i, pool) {
                    if broken.contains(h) {
                        out.push(target_key(&name, &port, &h.to_string()));
                    }
                }
            }
        }
        out
    }
}

pub fn target_key(object: &str, port: &str, host: &str) -> String {
    format!("{object}/{port}/{host}")
}

/// A share (0..=1) of the pool, spread evenly over it (every k-th address),
/// at least one address when the share is positive.
pub fn pick_share(pool: &[IpAddr], share: f64) -> Vec<IpAddr> {
    if pool.is_empty() || share <= 0.0 {
        return Vec::new();
    }
    let n = ((pool.len() as f64 * share.min(1.0)).ceil() as usize).clamp(1, pool.len());
    (0..n).map(|k| pool[k * pool.len() / n]).collect()
}

/// How a share of hosts is broken for a detection measurement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BreakMode {
    /// Connection refused / TCP reset (and ICMP port-unreachable for UDP).
    Refuse,
    /// A firewall silently drops every packet.
    Drop,
}

impl BreakMode {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakMode::Refuse => "refuse",
            BreakMode::Drop => "drop",
        }
    }
}

/// A figure of a profile's result that a goal is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Figure {
    /// API writes per minute in the quiet window.
    SteadyWritesPerMinute,
    /// API writes per minute in the quiet window but those of Leases (the
    /// replicas' leader election renews its Leases all the time).
    SteadyWritesBesidesLeasesPerMinute,
    /// Seconds from the last create until every target is ready.
    ConvergenceSeconds,
    /// The worst detection-overhead p99 over the break modes, seconds.
    DetectionP99Seconds,
    /// Controller CPU in the quiet window, % of one core.
    SteadyCpuPercent,
    /// Controller RSS at the end of the quiet window, MiB.
    SteadyRssMib,
    /// Peak controller RSS over the whole run, MiB.
    PeakRssMib,
    /// p99 of how late probes started in the quiet window, seconds.
    LatenessP99Seconds,
    /// The slowest object's time from its creation until its status
    /// reported its state, seconds (infinite when some object never did).
    SlowestReportSeconds,
    /// Objects that reported their state within period + timeout after the
    /// last object was created.
    ReportedInTime,
    /// API writes the controller sent per object created, up to the end of
    /// the settle time (kube-apiserver's own ClusterIP records left out).
    WritesPerObject,
}

/// What a figure must be for its goal to be met.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Bound {
    Zero,
    Below(f64),
    AtMost(f64),
    AtLeast(f64),
}

/// One goal a profile is judged against.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Goal {
    pub text: String,
    pub figure: Figure,
    pub bound: Bound,
}

fn goal(text: impl Into<String>, figure: Figure, bound: Bound) -> Goal {
    Goal {
        text: text.into(),
        figure,
        bound,
    }
}

/// MiB in `mb` megabytes (the goals speak of MB).
fn mib(mb: f64) -> f64 {
    mb / 1.048_576
}

/// A named benchmark profile.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Profile {
    pub name: &'static str,
    pub description: &'static str,
    pub workload: Workload,
    /// Share of the addresses broken for the detection measurements.
    pub break_share: f64,
    pub break_modes: Vec<BreakMode>,
    /// All hosts drop every packet from the start; measure how long until
    /// every object reports its state in status (no convergence).
    pub unreachable: bool,
    /// Wait after convergence before the quiet window.
    pub settle_seconds: u64,
    /// The steady-state window over which writes, CPU and probes are measured.
    pub quiet_window_seconds: u64,
    /// The whole profile fails after this long.
    pub timeout_seconds: u64,
    /// What the run is judged against (every profile: no steady-state writes).
    pub goals: Vec<Goal>,
    /// Run the controller as several replicas splitting the objects into
    /// shards (`None`: one process, unsharded).
    pub scale_out: Option<ScaleOut>,
}

/// Several replicas of the controller, the objects split into shards.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScaleOut {
    pub replicas: usize,
    pub shards: u32,
}

/// In the order `all` runs them (the longest last).
pub const PROFILE_NAMES: [&str; 6] = [
    "smoke",
    "10k",
    "unreachable",
    "mixed",
    "100k",
    "100k-sharded",
];

pub fn profile(name: &str) -> Option<Profile> {
    let both = vec![BreakMode::Refuse, BreakMode::Drop];
    let mut profile = profile_without_goals(name, both)?;
    profile.goals = goals(&profile);
    Some(profile)
}

/// The goals of a profile, from its name and workload.
fn goals(p: &Profile) -> Vec<Goal> {
    use Figure::*;
    let mut goals = vec![if p.scale_out.is_some() {
        goal(
            "steady-state API writes 0/min besides the Lease renewals of leader election",
            SteadyWritesBesidesLeasesPerMinute,
            Bound::Zero,
        )
    } else {
        goal(
            "steady-state API writes 0/min",
            SteadyWritesPerMinute,
            Bound::Zero,
        )
    }];
    // Shared by the 10k and 100k profiles.
    let writes_per_object = goal(
        "creating an object costs ≤ 4.5 controller writes",
        WritesPerObject,
        Bound::AtMost(4.5),
    );
    let worst_detection = goal(
        "detection overhead p99 < 1 s (worst mode)",
        DetectionP99Seconds,
        Bound::Below(1.0),
    );
    match p.name {
        "10k" => goals.extend([
            goal("converges < 30 s", ConvergenceSeconds, Bound::Below(30.0)),
            writes_per_object.clone(),
            worst_detection.clone(),
            goal(
                "controller < 10 % of one core (steady)",
                SteadyCpuPercent,
                Bound::Below(10.0),
            ),
            goal(
                "controller < 100 MB RSS (steady)",
                SteadyRssMib,
                Bound::Below(mib(100.0)),
            ),
        ]),
        "100k" | "100k-sharded" => goals.extend([
            goal(
                "converges < 300 s after the last create",
                ConvergenceSeconds,
                Bound::Below(300.0),
            ),
            writes_per_object,
            worst_detection,
            goal(
                "probe lateness p99 < 500 ms",
                LatenessP99Seconds,
                Bound::Below(0.5),
            ),
            goal("controller < 1 core", SteadyCpuPercent, Bound::Below(100.0)),
            goal(
                "controller < 1 GB RSS (peak)",
                PeakRssMib,
                Bound::Below(mib(1000.0)),
            ),
        ]),
        "unreachable" => {
            let w = &p.workload;
            let in_time = f64::from(w.period_seconds + w.timeout_seconds);
            goals.extend([
                goal(
                    format!("every object reports its state within one period + timeout ({in_time:.0} s) of creation"),
                    SlowestReportSeconds,
                    Bound::AtMost(in_time),
                ),
                goal(
                    format!("≥ {} objects report within ~{in_time:.0} s after all were created", w.objects),
                    ReportedInTime,
                    Bound::AtLeast(w.objects as f64),
                ),
            ]);
        }
        _ => {}
    }
    goals
}

/// `objects` × `hosts` TCP targets on `addresses` addresses: period
/// `period` s, timeout 1 s, `failure` failures to leave rotation, one
/// success to return.
fn tcp_workload(
    objects: usize,
    hosts: usize,
    period: u32,
    failure: u32,
    addresses: usize,
) -> Workload {
    Workload {
        objects,
        hosts_per_object: hosts,
        probes: vec![Probe::Tcp],
        period_seconds: period,
        timeout_seconds: 1,
        failure_threshold: failure,
        success_threshold: 1,
        headless: false,
        addresses,
    }
}

fn profile_without_goals(name: &str, both: Vec<BreakMode>) -> Option<Profile> {
    Some(match name {
        "smoke" => Profile {
            name: "smoke",
            description: "20 objects × 3 hosts, TCP, period 1 s: proves the harness end to end in seconds",
            workload: tcp_workload(20, 3, 1, 2, 30),
            break_share: 0.2,
            break_modes: both,
            unreachable: false,
            settle_seconds: 3,
            quiet_window_seconds: 10,
            timeout_seconds: 240,
            goals: Vec::new(),
            scale_out: None,
        },
        "10k" => Profile {
            name: "10k",
            description: "1,000 objects × 10 hosts (10,000 TCP targets) on 2,000 addresses, period 10 s",
            workload: tcp_workload(1000, 10, 10, 3, 2000),
            break_share: 0.05,
            break_modes: both,
            unreachable: false,
            settle_seconds: 20,
            quiet_window_seconds: 60,
            timeout_seconds: 600,
            goals: Vec::new(),
            scale_out: None,
        },
        "100k" => Profile {
            name: "100k",
            description: "10,000 objects × 10 hosts (100,000 TCP targets) on 4,000 addresses, period 30 s",
            workload: tcp_workload(10_000, 10, 30, 2, 4000),
            break_share: 0.01,
            break_modes: both,
            unreachable: false,
            settle_seconds: 30,
            quiet_window_seconds: 60,
            timeout_seconds: 1800,
            goals: Vec::new(),
            scale_out: None,
        },
        "100k-sharded" => Profile {
            name: "100k-sharded",
            description: "the 100k workload on 2 replicas of the controller, --shards 4",
            scale_out: Some(ScaleOut {
                replicas: 2,
                shards: 4,
            }),
            ..profile_without_goals("100k", both)?
        },
        "unreachable" => Profile {
            name: "unreachable",
            description: "500 objects, one host each, every packet dropped, period 10 s, timeout 1 s",
            workload: tcp_workload(500, 1, 10, 3, 500),
            break_share: 0.0,
            break_modes: Vec::new(),
            unreachable: true,
            settle_seconds: 10,
            quiet_window_seconds: 30,
            timeout_seconds: 300,
            goals: Vec::new(),
            scale_out: None,
        },
        "mixed" => Profile {
            name: "mixed",
            description: "250 objects × 4 hosts × 4 ports (TCP, HTTP, UDP, gRPC: 4,000 targets) on 500 addresses, period 5 s",
            workload: Workload {
                objects: 250,
                hosts_per_object: 4,
                probes: vec![Probe::Tcp, Probe::Http, Probe::Udp, Probe::Grpc],
                period_seconds: 5,
                timeout_seconds: 1,
                failure_threshold: 3,
                success_threshold: 1,
                headless: false,
                addresses: 500,
            },
            break_share: 0.05,
            break_modes: both,
            unreachable: false,
            settle_seconds: 10,
            quiet_window_seconds: 60,
            timeout_seconds: 420,
            goals: Vec::new(),
            scale_out: None,
        },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn pool(n: u32) -> Vec<IpAddr> {
        (0..n)
            .map(|i| IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 19, 0, 1)) + i)))
            .collect()
    }

    fn small() -> Workload {
        Workload {
            objects: 7,
            hosts_per_object: 3,
            probes: vec![Probe::Tcp, Probe::Udp],
            period_seconds: 2,
            timeout_seconds: 1,
            failure_threshold: 3,
            success_threshold: 1,
            addresses: 5,
            headless: false,
        }
    }

    #[test]
    fn hosts_are_distinct_per_object_and_spread_evenly() {
        let w = small();
        let p = pool(5);
        let mut uses = std::collections::BTreeMap::new();
        for i in 0..w.objects {
            let hosts = w.hosts_of(i, &p);
            assert_eq!(hosts.len(), 3);
            let distinct: BTreeSet<_> = hosts.iter().collect();
            assert_eq!(distinct.len(), 3, "object {i} lists a host twice");
            for h in hosts {
                *uses.entry(*h).or_insert(0) += 1;
            }
        }
        // 21 host slots over 5 addresses: 4 or 5 each.
        assert!(uses.values().all(|u| (4..=5).contains(u)), "{uses:?}");
    }

    #[test]
    fn udp_data_becomes_byte_values_for_the_predecessor() {
        let w = Workload {
            probes: vec![Probe::Tcp, Probe::Udp],
            ..tcp_workload(1, 1, 5, 3, 1)
        };
        let mut o = w.object(0, "sealos.io", "bench", &[IpAddr::from([198, 18, 0, 1])]);
        udp_data_as_bytes(&mut o);
        let ports = o["spec"]["ports"].as_array().cloned().unwrap_or_default();
        assert_eq!(
            ports[1]["udpSocket"]["data"],
            json!([98, 101, 110, 99, 104])
        );
        assert!(ports[0]["tcpSocket"].get("data").is_none());
    }

    #[test]
    fn objects_carry_every_port_with_its_probe_and_settings() {
        let w = small();
        let p = pool(5);
        let o = w.object(2, "sealos.io", "bench", &p);
        assert_eq!(o["apiVersion"], "sealos.io/v1beta1");
        assert_eq!(o["kind"], "ClusterEndpoint");
        assert_eq!(o["metadata"]["name"], "bench-00002");
        assert_eq!(o["spec"]["periodSeconds"], 2);
        let ports = o["spec"]["ports"].as_array().cloned().unwrap_or_default();
        assert_eq!(ports.len(), 2);
        assert_eq!(ports[0]["name"], "p0-tcp");
        assert_eq!(ports[0]["tcpSocket"]["enable"], true);
        assert_eq!(ports[0]["targetPort"], 9001);
        assert_eq!(ports[1]["name"], "p1-udp");
        assert_eq!(ports[1]["protocol"], "UDP");
        assert_eq!(ports[1]["udpSocket"]["data"], "bench");
        assert_eq!(ports[1]["failureThreshold"], 3);
        assert_eq!(ports[1]["hosts"].as_array().map(Vec::len), Some(3));
    }

    #[test]
    fn target_keys_cover_objects_ports_and_hosts() {
        let w = small();
        let p = pool(5);
        let keys = w.target_keys(&p);
        assert_eq!(keys.len(), w.targets());
        assert_eq!(keys.len(), 7 * 3 * 2);
        let distinct: BTreeSet<_> = keys.iter().collect();
        assert_eq!(distinct.len(), keys.len());
        assert_eq!(keys[0], "bench-00000/p0-tcp/198.19.0.1");
        let broken = pick_share(&p, 0.2);
        assert_eq!(broken.len(), 1);
        let on = w.targets_on(&p, &broken);
        assert!(!on.is_empty());
        assert!(on.iter().all(|k| k.ends_with(&format!("/{}", broken[0]))));
    }

    #[test]
    fn share_is_spread_and_at_least_one() {
        let p = pool(100);
        assert_eq!(pick_share(&p, 0.1).len(), 10);
        assert_eq!(pick_share(&p, 0.001).len(), 1);
        assert_eq!(pick_share(&p, 0.0).len(), 0);
        assert_eq!(pick_share(&p, 2.0).len(), 100);
        let picked = pick_share(&p, 0.1);
        assert_eq!(picked[1], p[10]);
    }

    #[test]
    fn named_profiles_have_the_sizes_the_issue_asks_for() {
        for name in PROFILE_NAMES {
            let p = profile(name).unwrap_or_else(|| panic!("profile {name}"));
            assert!(p.workload.addresses >= p.workload.hosts_per_object);
        }
        let t = |n: &str| profile(n).map(|p| p.workload.targets());
        assert_eq!(t("10k"), Some(10_000));
        assert_eq!(t("100k"), Some(100_000));
        assert_eq!(
            profile("unreachable").map(|p| p.workload.objects),
            Some(500)
        );
        assert_eq!(
            profile("unreachable").map(|p| p.workload.period_seconds),
            Some(10)
        );
        assert_eq!(profile("mixed").map(|p| p.workload.probes.len()), Some(4));
        assert!(profile("nope").is_none());
    }

    #[test]
    fn every_profile_is_judged_on_steady_writes_and_goals_follow_the_workload() {
        for name in PROFILE_NAMES {
            let p = profile(name).unwrap_or_else(|| panic!("profile {name}"));
            let steady = if p.scale_out.is_some() {
                Figure::SteadyWritesBesidesLeasesPerMinute
            } else {
                Figure::SteadyWritesPerMinute
            };
            assert_eq!(p.goals[0].figure, steady, "{name}");
        }
        let unreachable = profile("unreachable").expect("profile");
        let slowest = unreachable
            .goals
            .iter()
            .find(|g| g.figure == Figure::SlowestReportSeconds)
            .expect("a reporting goal");
        assert_eq!(slowest.bound, Bound::AtMost(11.0));
        assert!(slowest.text.contains("(11 s)"), "{}", slowest.text);
    }
}
