//! Prometheus metrics (OpenMetrics text on `/metrics`).
//!
//! Label cardinality is bounded by design: probe type (4), result (3),
//! resource (5), verb (3), reason (a fixed set of error reasons) and
//! transition direction (2). No label carries an object or host name, so the
//! series count does not grow with the number of ClusterEndpoints.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kube_endpoints_probe::{ProbeKind, Verdict};
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
pub struct TransitionLabels {
    pub to: &'static str,
}

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
    ready: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
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
        Metrics {
            registry,
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
            ready: AtomicBool::new(false),
        }
    }

    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }

    pub fn write(&self, resource: &'static str, verb: &'static str) {
        self.api_writes
            .get_or_create(&WriteLabels { resource, verb })
            .inc();
    }

    /// `/readyz` turns true once the caches are synced and the controller runs.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
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
