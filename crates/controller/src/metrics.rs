//! Prometheus metrics (OpenMetrics text on `/metrics`).
//!
//! Label cardinality is bounded by design: probe type (4), result (3),
//! resource (6), verb (4), reason (a fixed set of error reasons), target
//! state (3) and transition direction (2). No label carries an object or host
//! name, so the series count does not grow with the number of
//! ClusterEndpoints — except `kube_endpoints_host_ready`, one series per
//! probed host-port, which exists only with `--per-host-metrics`.

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use kube_endpoints_probe::{ProbeKind, StateCounts, Verdict};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeLabels {
    pub probe: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeKindLabels {
    pub probe: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    pub resource: &'static str,
    pub verb: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WatchLabels {
    pub resource: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransitionLabels {
    pub to: &'static str,
}

/// One shard (`--shards`): at most `--shards` series per metric.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShardLabels {
    pub shard: String,
}

impl ShardLabels {
    pub fn of(index: u32) -> Self {
        ShardLabels {
            shard: index.to_string(),
        }
    }
}

/// What sharding across replicas reports (see [`crate::shards`]).
#[derive(Clone, Default)]
pub struct ShardMetrics {
    /// Shards this replica leads.
    pub leading: Gauge,
    /// 1 per shard this replica leads, 0 per shard it stands by for.
    pub leader: Family<ShardLabels, Gauge>,
    /// Reconciles this replica ran, by the shard of the reconciled object.
    pub reconciles: Family<ShardLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: &'static str,
}

/// One probed host-port of one object (only with `--per-host-metrics`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HostLabels {
    pub namespace: String,
    pub name: String,
    pub port: String,
    pub host: String,
}

/// One port of one object with TLS probes.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PortLabels {
    pub namespace: String,
    pub name: String,
    pub port: String,
}

/// The certificate expiry series of one object: per port, per host.
type CertificateSeries = (Vec<PortLabels>, Vec<HostLabels>);

/// Something that can count its targets by state when `/metrics` is read
/// (each running controller's probe engine).
pub trait TargetCounter: Send + Sync {
    fn count(&self) -> StateCounts;
    /// All targets, whatever their state (cheaper than [`Self::count`]).
    fn total(&self) -> usize;
}

impl<K> TargetCounter for kube_endpoints_probe::Scheduler<K>
where
    K: Clone + Eq + Hash + Ord + Debug + Send + Sync + 'static,
{
    fn count(&self) -> StateCounts {
        self.state_counts()
    }

    fn total(&self) -> usize {
        self.target_count()
    }
}

/// Names and help of the fleet guard's metrics ([`crate::fleet_guard`]).
const FLEET_GUARD_METRICS: [(&str, &str); 2] = [
    (
        "fleet_guard_frozen",
        "1 while the fleet guard is frozen: too many targets turned failing at once, so failing hosts are kept in rotation",
    ),
    ("fleet_guard_trips", "Times the fleet guard tripped (froze)"),
];

pub struct Metrics {
    registry: Registry,
    pub probes: Family<ProbeLabels, Counter>,
    pub probe_duration: Family<ProbeKindLabels, Histogram>,
    pub probe_lateness: Histogram,
    pub transitions: Family<TransitionLabels, Counter>,
    pub targets: Gauge,
    pub reconciles: Counter,
    pub reconcile_duration: Histogram,
    pub reconcile_errors: Family<ReasonLabels, Counter>,
    pub api_writes: Family<WriteLabels, Counter>,
    pub leader: Gauge,
    pub shards: ShardMetrics,
    pub watch_errors: Family<WatchLabels, Counter>,
    pub watches_failing: Gauge,
    /// Events not sent because their object exceeded its Event rate.
    pub events_suppressed: Counter,
    /// 1 while the fleet guard is frozen ([`crate::fleet_guard`]).
    pub fleet_guard_frozen: Gauge,
    /// Times the fleet guard tripped.
    pub fleet_guard_trips: Counter,
    host_ports: Family<StateLabels, Gauge>,
    /// Per-host readiness; `None` unless `--per-host-metrics`.
    host_ready: Option<Family<HostLabels, Gauge>>,
    /// The series of `host_ready` each object has, to drop stale ones.
    host_series: Mutex<HashMap<(String, String), Vec<HostLabels>>>,
    /// Earliest TLS certificate expiry per object port (ports with TLS
    /// probes only).
    certificate_expiry: Family<PortLabels, Gauge>,
    /// Per host; `None` unless `--per-host-metrics`.
    host_certificate_expiry: Option<Family<HostLabels, Gauge>>,
    /// The certificate series each object has, to drop stale ones.
    certificate_series: Mutex<HashMap<(String, String), CertificateSeries>>,
    /// Counted at scrape time; a stopped controller's engine drops out.
    counters: Mutex<Vec<Weak<dyn TargetCounter>>>,
    ready: AtomicBool,
    /// Watches whose last event was an error, by a name of the watch.
    failing: Mutex<std::collections::BTreeSet<String>>,
}

impl Metrics {
    /// `per_host` adds `kube_endpoints_host_ready` (one series per probed
    /// host-port).
    pub fn new(per_host: bool) -> Self {
        let mut registry = Registry::with_prefix("kube_endpoints");
        let probes = Family::<ProbeLabels, Counter>::default();
        registry.register(
            "probes",
            "Probes run, by probe type and result (success, failure, config_error)",
            probes.clone(),
        );
        let probe_duration = Family::<ProbeKindLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        registry.register(
            "probe_duration_seconds",
            "How long probes took, by probe type",
            probe_duration.clone(),
        );
        let probe_lateness = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register(
            "probe_lateness_seconds",
            "How late probes started versus their schedule",
            probe_lateness.clone(),
        );
        let transitions = Family::<TransitionLabels, Counter>::default();
        registry.register(
            "host_transitions",
            "Host-port readiness transitions published by the probe engine, by new state",
            transitions.clone(),
        );
        let targets = Gauge::default();
        registry.register(
            "probe_targets",
            "Host-ports currently probed",
            targets.clone(),
        );
        let reconciles = Counter::default();
        registry.register("reconciles", "Reconciliations run", reconciles.clone());
        let reconcile_duration = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register(
            "reconcile_duration_seconds",
            "How long reconciliations took",
            reconcile_duration.clone(),
        );
        let reconcile_errors = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Failed reconciliations, by stable error reason",
            reconcile_errors.clone(),
        );
        let api_writes = Family::<WriteLabels, Counter>::default();
        registry.register(
            "api_writes",
            "Writes sent to the Kubernetes API, by resource and verb",
            api_writes.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica leads and runs the controller",
            leader.clone(),
        );
        let shards = ShardMetrics::default();
        registry.register(
            "shards_leading",
            "Shards this replica leads (--shards)",
            shards.leading.clone(),
        );
        registry.register(
            "shard_leader",
            "1 while this replica leads the shard, 0 while it stands by for it (--shards > 1)",
            shards.leader.clone(),
        );
        registry.register(
            "shard_reconciles",
            "Reconciles this replica ran, by the shard of the object (--shards > 1)",
            shards.reconciles.clone(),
        );
        let watch_errors = Family::<WatchLabels, Counter>::default();
        registry.register(
            "watch_errors",
            "Errors of the watches the controller's caches are built from (each is retried with backoff), by resource",
            watch_errors.clone(),
        );
        let watches_failing = Gauge::default();
        registry.register(
            "watches_failing",
            "Watches whose last attempt failed; /readyz answers 503 while any does",
            watches_failing.clone(),
        );
        let events_suppressed = Counter::default();
        registry.register(
            "events_suppressed",
            "Events not published because their ClusterEndpoint exceeded its Event rate limit",
            events_suppressed.clone(),
        );
        let (fleet_guard_frozen, fleet_guard_trips) = (Gauge::default(), Counter::default());
        let [(frozen, frozen_help), (trips, trips_help)] = FLEET_GUARD_METRICS;
        registry.register(frozen, frozen_help, fleet_guard_frozen.clone());
        registry.register(trips, trips_help, fleet_guard_trips.clone());
        let host_ports = Family::<StateLabels, Gauge>::default();
        registry.register(
            "host_ports",
            "Probed host-ports by state (pending: no verdict yet; ready; not_ready)",
            host_ports.clone(),
        );
        let host_ready = per_host.then(|| {
            let family = Family::<HostLabels, Gauge>::default();
            registry.register(
                "host_ready",
                "1 when the probed host-port is in rotation, else 0 (only with --per-host-metrics)",
                family.clone(),
            );
            family
        });
        let certificate_expiry = Family::<PortLabels, Gauge>::default();
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "Earliest notAfter (Unix time) of the TLS leaf certificates the hosts of a port presented, per object and port with TLS probes",
            certificate_expiry.clone(),
        );
        let host_certificate_expiry = per_host.then(|| {
            let family = Family::<HostLabels, Gauge>::default();
            registry.register(
                "host_certificate_expiry_timestamp_seconds",
                "notAfter (Unix time) of the TLS leaf certificate a host-port presented (only with --per-host-metrics)",
                family.clone(),
            );
            family
        });
        Metrics {
            registry,
            host_ports,
            host_ready,
            host_series: Mutex::new(HashMap::new()),
            certificate_expiry,
            host_certificate_expiry,
            certificate_series: Mutex::new(HashMap::new()),
            counters: Mutex::new(Vec::new()),
            probes,
            probe_duration,
            probe_lateness,
            transitions,
            targets,
            reconciles,
            reconcile_duration,
            reconcile_errors,
            api_writes,
            leader,
            shards,
            watch_errors,
            watches_failing,
            events_suppressed,
            fleet_guard_frozen,
            fleet_guard_trips,
            ready: AtomicBool::new(false),
            failing: Mutex::new(std::collections::BTreeSet::new()),
        }
    }

    /// Count `counter`'s targets on every scrape, for as long as it lives.
    pub fn register_targets(&self, counter: Weak<dyn TargetCounter>) {
        lock(&self.counters).push(counter);
    }

    /// Targets of every running probe engine of the process.
    pub fn target_total(&self) -> usize {
        lock(&self.counters)
            .iter()
            .filter_map(Weak::upgrade)
            .map(|c| c.total())
            .sum()
    }

    fn refresh_host_ports(&self) {
        let mut total = StateCounts::default();
        lock(&self.counters).retain(|weak| match weak.upgrade() {
            Some(counter) => {
                let c = counter.count();
                total.pending += c.pending;
                total.ready += c.ready;
                total.not_ready += c.not_ready;
                true
            }
            None => false,
        });
        let gauge = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
        self.targets
            .set(gauge(total.pending + total.ready + total.not_ready));
        for (state, value) in [
            ("pending", total.pending),
            ("ready", total.ready),
            ("not_ready", total.not_ready),
        ] {
            self.host_ports
                .get_or_create(&StateLabels { state })
                .set(gauge(value));
        }
    }

    /// Replace the per-host series of one object (no-op without
    /// `--per-host-metrics`). `hosts` is (port, host, ready).
    pub fn set_host_readiness(
        &self,
        namespace: &str,
        name: &str,
        hosts: impl IntoIterator<Item = (String, String, bool)>,
    ) {
        let Some(family) = &self.host_ready else {
            return;
        };
        let mut series = lock(&self.host_series);
        let key = (namespace.to_string(), name.to_string());
        let mut now = Vec::new();
        for (port, host, ready) in hosts {
            let labels = HostLabels {
                namespace: namespace.to_string(),
                name: name.to_string(),
                port,
                host,
            };
            family.get_or_create(&labels).set(i64::from(ready));
            now.push(labels);
        }
        for stale in series.remove(&key).unwrap_or_default() {
            if !now.contains(&stale) {
                family.remove(&stale);
            }
        }
        if !now.is_empty() {
            series.insert(key, now);
        }
    }

    /// Drop the per-host series of an object that is gone.
    pub fn forget_object(&self, namespace: &str, name: &str) {
        self.set_host_readiness(namespace, name, std::iter::empty());
        self.set_certificates(namespace, name, &std::collections::BTreeMap::new());
    }

    /// Replace the certificate expiry series of one object: the earliest
    /// per port, and per host with `--per-host-metrics`.
    pub fn set_certificates(
        &self,
        namespace: &str,
        name: &str,
        certificates: &std::collections::BTreeMap<
            kube_endpoints_probe::TargetId,
            std::time::SystemTime,
        >,
    ) {
        let unix = |t: &std::time::SystemTime| {
            t.duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        };
        let mut earliest: std::collections::BTreeMap<&str, i64> = Default::default();
        for (id, not_after) in certificates {
            let t = unix(not_after);
            earliest
                .entry(id.port.as_str())
                .and_modify(|e| *e = (*e).min(t))
                .or_insert(t);
        }
        let ports: Vec<PortLabels> = earliest
            .iter()
            .map(|(port, t)| {
                let labels = PortLabels {
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                    port: port.to_string(),
                };
                self.certificate_expiry.get_or_create(&labels).set(*t);
                labels
            })
            .collect();
        let hosts: Vec<HostLabels> = match &self.host_certificate_expiry {
            Some(family) => certificates
                .iter()
                .map(|(id, not_after)| {
                    let labels = HostLabels {
                        namespace: namespace.to_string(),
                        name: name.to_string(),
                        port: id.port.clone(),
                        host: id.host.to_string(),
                    };
                    family.get_or_create(&labels).set(unix(not_after));
                    labels
                })
                .collect(),
            None => Vec::new(),
        };
        let mut series = lock(&self.certificate_series);
        let key = (namespace.to_string(), name.to_string());
        if let Some((old_ports, old_hosts)) = series.remove(&key) {
            for stale in old_ports.iter().filter(|l| !ports.contains(l)) {
                self.certificate_expiry.remove(stale);
            }
            if let Some(family) = &self.host_certificate_expiry {
                for stale in old_hosts.iter().filter(|l| !hosts.contains(l)) {
                    family.remove(stale);
                }
            }
        }
        if !ports.is_empty() || !hosts.is_empty() {
            series.insert(key, (ports, hosts));
        }
    }

    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        self.refresh_host_ports();
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }

    /// Count one write sent to the Kubernetes API.
    pub fn count_write(&self, resource: &'static str, verb: &'static str) {
        self.api_writes
            .get_or_create(&WriteLabels { resource, verb })
            .inc();
    }

    /// `/readyz` turns true once the caches are synced and the controller runs.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Ready, and no watch failing: a served group whose watch fails (its
    /// CRD was removed, RBAC lost...) is not being reconciled.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed) && lock(&self.failing).is_empty()
    }

    /// Record the outcome of one watch event: an error counts and marks
    /// the watch failing until its next good event.
    pub fn watch_event(&self, watch: &str, resource: &'static str, ok: bool) {
        let mut failing = lock(&self.failing);
        let changed = if ok {
            failing.remove(watch)
        } else {
            self.watch_errors
                .get_or_create(&WatchLabels { resource })
                .inc();
            failing.insert(watch.to_string())
        };
        if changed {
            self.watches_failing
                .set(i64::try_from(failing.len()).unwrap_or(i64::MAX));
        }
    }

    /// Forget a watch that stopped (its controller ended).
    pub fn watch_stopped(&self, watch: &str) {
        self.watch_event(watch, "", true);
    }
}

/// A poisoned lock only means a panic elsewhere mid-update of plain data.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Feeds the probe engine's per-probe callbacks into the metrics.
pub struct ProbeObserver(pub Arc<Metrics>);

impl kube_endpoints_probe::Observer for ProbeObserver {
    fn probe_finished(
        &self,
        kind: ProbeKind,
        verdict: Verdict,
        latency: Duration,
        lateness: Duration,
    ) {
        let m = &self.0;
        m.probes
            .get_or_create(&ProbeLabels {
                probe: kind.as_str(),
                result: verdict.as_str(),
            })
            .inc();
        m.probe_duration
            .get_or_create(&ProbeKindLabels {
                probe: kind.as_str(),
            })
            .observe(latency.as_secs_f64());
        m.probe_lateness.observe(lateness.as_secs_f64());
    }
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
