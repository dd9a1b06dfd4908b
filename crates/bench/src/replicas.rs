//! The controller under test as one process, or as several replicas that
//! split the objects into shards (`kube-endpoints run --shards`), and what
//! each replica costs.
//!
//! Every figure the runner reads from "the controller" (its metrics, CPU and
//! memory) is the sum over the replicas; [`Snapshot::loads_since`] gives
//! them one by one.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kube_endpoints_testkit::ControlPlane;
use kube_endpoints_testkit::controller::ControllerProcess;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::options::Options;
use crate::prom;
use crate::runner::{NAMESPACE, start_controller};
use crate::sys::{self, ProcSample};
use crate::workload::ScaleOut;

/// The Lease name the replicas elect under (`<name>-shard-<i>`).
const LEASE_NAME: &str = "kube-endpoints-bench";
/// Short, so that balancing (which waits one Lease duration before handing
/// an excess shard over) does not dominate the start.
const LEASE_SECONDS: u64 = 10;

/// The running replicas (one without scale-out).
pub struct Replicas {
    procs: Vec<ControllerProcess>,
    shards: u32,
}

/// One replica's share of the work and what it cost.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ReplicaLoad {
    pub replica: usize,
    /// Shards it led at the end of the run.
    pub shards_leading: f64,
    /// Host-ports it probed at the end of the quiet window.
    pub probe_targets: f64,
    /// Probes per second over the quiet window.
    pub probes_per_second: f64,
    /// CPU over the quiet window, % of one core.
    pub steady_cpu_percent: Option<f64>,
    /// RSS at the end of the quiet window.
    pub steady_rss_mib: Option<f64>,
    /// Reconciles it ran over the whole run.
    pub reconciles: f64,
    /// CPU seconds over the whole run.
    pub cpu_seconds_total: Option<f64>,
    pub peak_rss_mib: Option<f64>,
}

/// Every replica's process sample and metrics at one moment (for
/// differences over a window).
pub struct Snapshot {
    at: Instant,
    procs: Vec<(Option<ProcSample>, Vec<prom::Sample>)>,
}

/// The sum of metric `name` over its label sets.
fn total(samples: &[prom::Sample], name: &str) -> f64 {
    prom::counter_by(samples, name, &[]).values().sum()
}

impl Snapshot {
    /// The fleet's metrics: every replica's samples together (the parsers
    /// sum equal series, so counters and histograms read as the fleet's).
    pub fn metrics(&self) -> Vec<prom::Sample> {
        self.procs
            .iter()
            .flat_map(|(_, m)| m.iter().cloned())
            .collect()
    }

    /// CPU and memory summed over the replicas (`None` when one could not
    /// be read). The peak is the sum of each replica's own peak.
    pub fn process(&self) -> Option<ProcSample> {
        let mut sum = ProcSample::default();
        for (proc, _) in &self.procs {
            let p = (*proc)?;
            sum.cpu_seconds += p.cpu_seconds;
            sum.rss_mib += p.rss_mib;
            sum.peak_rss_mib += p.peak_rss_mib;
        }
        Some(sum)
    }

    /// Each replica's load over the window from `before` to this snapshot
    /// (empty with one replica: the profile's own figures say it all).
    pub fn loads_since(&self, before: &Snapshot) -> Vec<ReplicaLoad> {
        if self.procs.len() < 2 {
            return Vec::new();
        }
        let secs = self.at.duration_since(before.at).as_secs_f64().max(1e-9);
        before
            .procs
            .iter()
            .zip(&self.procs)
            .enumerate()
            .map(|(replica, ((p0, m0), (p1, m1)))| ReplicaLoad {
                replica,
                probe_targets: total(m1, "kube_endpoints_probe_targets"),
                probes_per_second: (total(m1, "kube_endpoints_probes")
                    - total(m0, "kube_endpoints_probes"))
                    / secs,
                steady_cpu_percent: match (p0, p1) {
                    (Some(a), Some(b)) => Some((b.cpu_seconds - a.cpu_seconds) / secs * 100.0),
                    _ => None,
                },
                steady_rss_mib: p1.map(|p| p.rss_mib),
                ..ReplicaLoad::default()
            })
            .collect()
    }

    /// Fill in the whole-run figures of `loads` (shards led, reconciles,
    /// CPU seconds, peak RSS) from this end-of-run snapshot.
    pub fn finish_loads(&self, loads: &mut [ReplicaLoad]) {
        for (load, (proc, metrics)) in loads.iter_mut().zip(&self.procs) {
            load.shards_leading = total(metrics, "kube_endpoints_shards_leading");
            load.reconciles = total(metrics, "kube_endpoints_reconciles");
            load.cpu_seconds_total = proc.map(|p| p.cpu_seconds);
            load.peak_rss_mib = proc.map(|p| p.peak_rss_mib);
        }
    }
}

/// The flags that make the default `kube-endpoints run` command one replica
/// of `scale.shards` shards, electing in the bench's namespace.
fn shard_flags(scale: &ScaleOut) -> Vec<String> {
    [
        "--leader-election=true",
        "--lease-name",
        LEASE_NAME,
        "--lease-namespace",
        NAMESPACE,
        "--lease-duration-seconds",
    ]
    .iter()
    .map(|s| (*s).to_string())
    .chain([
        LEASE_SECONDS.to_string(),
        "--shards".into(),
        scale.shards.to_string(),
    ])
    .collect()
}

impl Replicas {
    /// Start the controller under test: once, or `scale.replicas` times
    /// with the sharding flags (each with its own metrics port and log
    /// `<log>-r<i>`), then wait until every replica leads its share of the
    /// shards, so that the measurement starts from a balanced fleet.
    pub async fn start(
        opts: &Options,
        scale: Option<&ScaleOut>,
        cp: &ControlPlane,
        log: &Path,
    ) -> Result<Replicas> {
        let Some(scale) = scale else {
            let one = start_controller(opts, cp, log).await?;
            return Ok(Replicas {
                procs: vec![one],
                shards: 1,
            });
        };
        if !opts.shardable {
            return Err(Error::Usage(format!(
                "{} cannot run as {} replicas with --shards (only kube-endpoints' own command can)",
                opts.label, scale.replicas
            )));
        }
        let mut sharded = opts.clone();
        sharded.controller_cmd.extend(shard_flags(scale));
        let mut procs = Vec::with_capacity(scale.replicas);
        for i in 0..scale.replicas {
            procs.push(start_controller(&sharded, cp, &replica_log(log, i)).await?);
        }
        let replicas = Replicas {
            procs,
            shards: scale.shards,
        };
        replicas.await_balanced().await?;
        Ok(replicas)
    }

    /// Until every replica leads floor(shards / replicas) shards or more
    /// and every shard has a leader.
    async fn await_balanced(&self) -> Result<()> {
        let fair = self.shards / self.procs.len().max(1) as u32;
        let deadline = Instant::now() + Duration::from_secs(LEASE_SECONDS * 8);
        loop {
            let mut leading = Vec::with_capacity(self.procs.len());
            for p in &self.procs {
                leading.push(p.metric("kube_endpoints_shards_leading").await);
            }
            let total: f64 = leading.iter().sum();
            if total >= f64::from(self.shards) && leading.iter().all(|l| *l >= f64::from(fair)) {
                eprintln!("  replicas balanced: shards led {leading:?}");
                return Ok(());
            }
            self.check_running()?;
            if Instant::now() > deadline {
                return Err(Error::Deadline(format!(
                    "the {} replicas did not balance {} shards within {}s (leading {leading:?})",
                    self.procs.len(),
                    self.shards,
                    LEASE_SECONDS * 8
                )));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The first replica's command line (the others differ only in their
    /// metrics port).
    pub fn command(&self) -> &[String] {
        self.procs.first().map_or(&[], |p| p.command())
    }

    /// Fails when any replica has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        for p in &mut self.procs {
            p.check_alive()?;
        }
        Ok(())
    }

    /// [`check_alive`](Self::check_alive) for a shared reference.
    pub fn check_running(&self) -> Result<()> {
        for p in &self.procs {
            p.check_running()?;
        }
        Ok(())
    }

    /// Open sockets summed over the replicas.
    pub fn sockets(&self) -> Option<usize> {
        self.procs.iter().map(|p| sys::sockets(p.pid())).sum()
    }

    /// Each replica's process sample and metrics now.
    pub async fn snapshot(&self) -> Snapshot {
        let mut procs = Vec::with_capacity(self.procs.len());
        for p in &self.procs {
            procs.push((sys::sample(p.pid()), prom::parse(&p.metrics().await)));
        }
        Snapshot {
            at: Instant::now(),
            procs,
        }
    }

    /// SIGKILL every replica.
    pub async fn kill(self) {
        for p in self.procs {
            p.kill().await;
        }
    }
}

/// Replica `i`'s log: `<log>` with the extension `r<i>.log`.
fn replica_log(log: &Path, i: usize) -> PathBuf {
    log.with_extension(format!("r{i}.log"))
}

/// The log or logs a profile's controller writes, as an error names them.
pub fn logs_of(log: &Path, scale: Option<&ScaleOut>) -> String {
    match scale {
        Some(scale) if scale.replicas > 1 => (0..scale.replicas)
            .map(|i| replica_log(log, i).display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        _ => log.display().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_flags_elect_in_the_bench_namespace() {
        let flags = shard_flags(&ScaleOut {
            replicas: 2,
            shards: 4,
        });
        let joined = flags.join(" ");
        assert!(joined.contains("--leader-election=true"), "{joined}");
        assert!(
            joined.contains(&format!("--lease-namespace {NAMESPACE}")),
            "{joined}"
        );
        assert!(joined.ends_with("--shards 4"), "{joined}");
    }

    #[test]
    fn a_failed_scale_out_names_each_replica_log() {
        let log = Path::new("/w/controller-ours-100k-sharded.log");
        let scale = ScaleOut {
            replicas: 2,
            shards: 4,
        };
        assert_eq!(
            logs_of(log, Some(&scale)),
            "/w/controller-ours-100k-sharded.r0.log, /w/controller-ours-100k-sharded.r1.log"
        );
        assert_eq!(logs_of(log, None), "/w/controller-ours-100k-sharded.log");
    }
}
