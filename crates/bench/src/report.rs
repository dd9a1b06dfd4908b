//! Results (JSON), BENCHMARKS.md and the goals they are judged against.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::options::Options;
use crate::replicas::ReplicaLoad;
use crate::stats::Summary;
use crate::sys::Machine;
use crate::workload::{Bound, BreakMode, Figure, Profile};

#[derive(Clone, Debug, Serialize)]
pub struct Creation {
    pub seconds: f64,
    pub objects_per_second: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Convergence {
    /// From the last object created until every target is ready.
    pub seconds_after_created: f64,
    /// From the first create until every target is ready.
    pub seconds_from_first_create: f64,
    pub objects_per_minute: f64,
    /// API writes per object from the first create until the end of the
    /// settle time after convergence: all clients but the bench's own
    /// creates and kube-apiserver's own records (the IPAddress of each
    /// allocated ClusterIP), i.e. what the controller under test sent.
    pub controller_writes_per_object: f64,
    /// The same with kube-apiserver's own records.
    pub api_writes_per_object: f64,
    /// `resource[/subresource] VERB` → writes per object (all but the
    /// bench's creates).
    pub writes_per_object_by: BTreeMap<String, f64>,
    /// (seconds since the first create, share of targets ready).
    pub series: Vec<(f64, f64)>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Unreachable {
    pub objects: usize,
    pub reported: usize,
    /// periodSeconds + timeoutSeconds.
    pub goal_seconds: f64,
    /// Objects that reported their state at most `goal_seconds` after the
    /// last object was created.
    pub within_goal_after_created: usize,
    pub all_reported_seconds_after_created: Option<f64>,
    pub all_reported_seconds_from_first_create: Option<f64>,
    /// From each object's own creation until its status reported.
    pub per_object_seconds: Option<Summary>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Steady {
    pub window_seconds: f64,
    pub writes_per_minute: f64,
    /// `resource[/subresource] VERB` → writes per minute.
    pub writes_per_minute_by: BTreeMap<String, f64>,
    pub reads_per_minute: f64,
    pub cpu_seconds_per_minute: Option<f64>,
    pub cpu_percent_of_one_core: Option<f64>,
    pub rss_mib: Option<f64>,
    pub peak_rss_mib: Option<f64>,
    pub probes_per_second: Option<f64>,
    /// `probe/result` → probes per second.
    pub probes_per_second_by: BTreeMap<String, f64>,
    pub lateness_p50_seconds: Option<f64>,
    pub lateness_p99_seconds: Option<f64>,
    /// The controller's open sockets, sampled every second (mean, max).
    pub sockets_mean: Option<f64>,
    pub sockets_max: Option<f64>,
    /// Connection-tracking entries the probe traffic holds, sampled every
    /// second in the test host's namespace with tracking on (mean, max).
    pub conntrack_mean: Option<f64>,
    pub conntrack_max: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Detection {
    pub mode: BreakMode,
    pub addresses_broken: usize,
    pub targets: usize,
    /// failureThreshold × period: subtracted from every detection time.
    pub floor_seconds: f64,
    /// Time until not ready minus the floor.
    pub detect: Option<Summary>,
    pub missed_detect: usize,
    /// successThreshold × period.
    pub recover_floor_seconds: f64,
    pub recover: Option<Summary>,
    pub missed_recover: usize,
    /// Targets on healthy addresses that went not ready meanwhile.
    pub collateral_not_ready: usize,
    pub detect_samples: Vec<f64>,
    pub recover_samples: Vec<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ProfileResult {
    pub profile: Profile,
    /// Which controller ran ([`Options::label`]).
    pub controller: String,
    pub controller_command: Vec<String>,
    pub group: String,
    pub endpoints_checked: bool,
    pub error: Option<String>,
    pub duration_seconds: f64,
    pub creation: Option<Creation>,
    pub convergence: Option<Convergence>,
    pub unreachable: Option<Unreachable>,
    pub steady: Option<Steady>,
    pub detection: Vec<Detection>,
    /// Peak RSS over the whole run (VmHWM).
    pub peak_rss_mib: Option<f64>,
    pub cpu_seconds_total: Option<f64>,
    pub watch_errors: usize,
    /// Each replica's share and cost when the profile scales out (the
    /// figures above are then sums over the replicas).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<ReplicaLoad>,
}

impl ProfileResult {
    pub fn new(profile: &Profile, opts: &Options) -> ProfileResult {
        ProfileResult {
            profile: profile.clone(),
            controller: opts.label.clone(),
            controller_command: opts.controller_cmd.clone(),
            group: opts.group.clone(),
            endpoints_checked: opts.check_endpoints,
            error: None,
            duration_seconds: 0.0,
            creation: None,
            convergence: None,
            unreachable: None,
            steady: None,
            detection: Vec::new(),
            peak_rss_mib: None,
            cpu_seconds_total: None,
            watch_errors: 0,
            replicas: Vec::new(),
        }
    }

    /// Whether the run produced its headline figures (what CI asserts).
    pub fn has_figures(&self) -> bool {
        let headline = if self.profile.unreachable {
            self.unreachable.is_some()
        } else {
            self.convergence.is_some()
        };
        let detection = self.profile.break_modes.is_empty()
            || self
                .detection
                .iter()
                .all(|d| d.detect.is_some() && d.recover.is_some());
        self.error.is_none() && headline && self.steady.is_some() && detection
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub generated_at: String,
    pub machine: Machine,
    pub total_seconds: f64,
    pub results: Vec<ProfileResult>,
    pub goals: Vec<Goal>,
}

/// One goal of the issue, judged against one figure.
#[derive(Clone, Debug, Serialize)]
pub struct Goal {
    pub profile: String,
    pub goal: String,
    pub measured: String,
    /// None when the figure is missing.
    pub met: Option<bool>,
}

/// Every profile's goals, judged against its results.
pub fn goals(results: &[ProfileResult]) -> Vec<Goal> {
    results
        .iter()
        .flat_map(|r| {
            r.profile.goals.iter().map(move |g| {
                let value = figure(g.figure, r);
                let met = match g.bound {
                    Bound::Zero => value.map(|v| v == 0.0),
                    Bound::Below(limit) => value.map(|v| v < limit),
                    Bound::AtMost(limit) => value.map(|v| v <= limit),
                    Bound::AtLeast(limit) => value.map(|v| v >= limit),
                };
                Goal {
                    profile: r.profile.name.into(),
                    goal: g.text.clone(),
                    measured: value.map_or_else(|| "not measured".into(), |v| show(g.figure, v)),
                    met,
                }
            })
        })
        .collect()
}

/// The value of `f` in `r`, when it was measured.
fn figure(f: Figure, r: &ProfileResult) -> Option<f64> {
    let steady = r.steady.as_ref();
    match f {
        Figure::SteadyWritesPerMinute => steady.map(|s| s.writes_per_minute),
        Figure::SteadyWritesBesidesLeasesPerMinute => steady.map(|s| {
            s.writes_per_minute_by
                .iter()
                .filter(|(key, _)| !key.starts_with("leases"))
                .map(|(_, v)| v)
                // An empty float sum is -0.0; report 0.
                .sum::<f64>()
                + 0.0
        }),
        Figure::ConvergenceSeconds => r.convergence.as_ref().map(|c| c.seconds_after_created),
        Figure::DetectionP99Seconds => r
            .detection
            .iter()
            .filter_map(|d| d.detect.as_ref().map(|s| s.p99))
            .reduce(f64::max),
        Figure::SteadyCpuPercent => steady.and_then(|s| s.cpu_percent_of_one_core),
        Figure::SteadyRssMib => steady.and_then(|s| s.rss_mib),
        Figure::PeakRssMib => r.peak_rss_mib.or(steady.and_then(|s| s.peak_rss_mib)),
        Figure::LatenessP99Seconds => steady.and_then(|s| s.lateness_p99_seconds),
        Figure::SlowestReportSeconds => r.unreachable.as_ref().and_then(|u| {
            let max = u.per_object_seconds.as_ref()?.max;
            // The slowest reported object says nothing when some never did.
            Some(if u.reported == u.objects {
                max
            } else {
                f64::INFINITY
            })
        }),
        Figure::ReportedInTime => r
            .unreachable
            .as_ref()
            .map(|u| u.within_goal_after_created as f64),
        Figure::WritesPerObject => r
            .convergence
            .as_ref()
            .map(|c| c.controller_writes_per_object),
    }
}

fn show(f: Figure, v: f64) -> String {
    match f {
        Figure::SteadyWritesPerMinute | Figure::SteadyWritesBesidesLeasesPerMinute => {
            format!("{v:.1}/min")
        }
        Figure::ConvergenceSeconds => format!("{v:.1} s after the last create"),
        Figure::DetectionP99Seconds => format!("{v:.2} s"),
        Figure::SteadyCpuPercent => format!("{v:.1} % of a core"),
        Figure::SteadyRssMib | Figure::PeakRssMib => format!("{v:.0} MiB"),
        Figure::LatenessP99Seconds => format!("{:.0} ms", v * 1000.0),
        Figure::SlowestReportSeconds if v.is_infinite() => "not every object reported".into(),
        Figure::SlowestReportSeconds => format!("max {v:.2} s per object"),
        Figure::ReportedInTime => format!("{v:.0} objects"),
        Figure::WritesPerObject => format!("{v:.2} per object"),
    }
}

pub fn write_key((resource, sub, verb): &crate::prom::RequestKey) -> String {
    if sub.is_empty() {
        format!("{resource} {verb}")
    } else {
        format!("{resource}/{sub} {verb}")
    }
}

fn mean_max(mean: Option<f64>, max: Option<f64>) -> String {
    format!(
        "{} / {}",
        opt(mean, |v| format!("{v:.0}")),
        opt(max, |v| format!("{v:.0}"))
    )
}

fn opt(v: Option<f64>, fmt: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "–".into(), fmt)
}

fn summary_cell(s: Option<&Summary>) -> String {
    s.map_or_else(
        || "–".into(),
        |s| format!("{:.3} / {:.3} / {:.3}", s.p50, s.p99, s.max),
    )
}

/// `key: value` for every entry (`precision` decimals, then `unit`), joined
/// with `, `; `empty` when there is none.
fn by_key(values: &BTreeMap<String, f64>, precision: usize, unit: &str, empty: &str) -> String {
    if values.is_empty() {
        return empty.to_string();
    }
    values
        .iter()
        .map(|(k, v)| format!("{k}: {v:.precision$}{unit}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// BENCHMARKS.md.
pub fn markdown(report: &Report, plots: &[(String, String)], analysis: Option<&str>) -> String {
    let mut md = String::new();
    let m = &report.machine;
    let _ = writeln!(md, "# Benchmarks\n");
    let _ = writeln!(
        md,
        "Generated by `make bench` (`kube-endpoints-bench`, crate `crates/bench`) on {}; the whole run took {:.0} s. Raw figures: `bench/results.json`. Do not edit by hand: re-run the harness.\n",
        report.generated_at, report.total_seconds
    );
    let _ = writeln!(md, "## Machine\n");
    let _ = writeln!(
        md,
        "| cores | memory | CPU | kernel |\n| --- | --- | --- | --- |"
    );
    let _ = writeln!(
        md,
        "| {} | {:.1} GiB | {} | {} |\n",
        m.cores, m.memory_gib, m.cpu_model, m.kernel
    );
    let _ = writeln!(
        md,
        "The control plane (etcd, kube-apiserver), the test hosts' backends, the controller and the harness share this machine. Each profile gets a fresh control plane, a fresh network-namespace test host (one backend listener per port answering on all its addresses) and a fresh controller process.\n"
    );
    let _ = writeln!(md, "## How it measures\n");
    let _ = writeln!(
        md,
        "- **Convergence**: from the last object created (and from the first create) until every (object, port, host) target is ready in the EndpointSlices *and* the Endpoints, seen through watches."
    );
    let _ = writeln!(
        md,
        "- **Detection**: a share of the addresses is broken in the test namespace with nftables, either *refuse* (TCP reset / ICMP port-unreachable) or *drop* (every packet silently dropped); for every target on them, the time until it is not ready in both EndpointSlices and Endpoints (a target that was listed and is now absent from them counts as not ready: it is not routable, as for kube-proxy), minus the floor failureThreshold × period. **Recovery**: the rule is removed; time until ready again minus successThreshold × period. Negative values are possible: the first failing probe can come up to one period after the break."
    );
    let _ = writeln!(
        md,
        "- **Writes per object**: API writes from the first create until the end of the settle time after convergence, from kube-apiserver's `apiserver_request_total`, minus the bench's own creates and the IPAddress records kube-apiserver writes for itself when it allocates a ClusterIP (listed apart, by resource, below the results), per object."
    );
    let _ = writeln!(
        md,
        "- **Steady state**: after convergence and a settle time, over a quiet window: API writes per minute by resource and verb from kube-apiserver's `apiserver_request_total` (all clients), controller CPU seconds per minute and RSS from `/proc`, probes per second and probe start lateness (p50/p99 interpolated from the `kube_endpoints_probe_lateness_seconds` buckets like `histogram_quantile`)."
    );
    let _ = writeln!(
        md,
        "- **Unreachable**: every packet to the hosts is dropped before the objects are created; time until each object's status reports its state (phase not `Pending`, current `observedGeneration`).\n"
    );

    let _ = writeln!(md, "## Goals\n");
    let _ = writeln!(
        md,
        "| profile | goal | measured | met |\n| --- | --- | --- | --- |"
    );
    for g in &report.goals {
        let met = match g.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "–",
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} |",
            g.profile, g.goal, g.measured, met
        );
    }
    let _ = writeln!(md);

    let _ = writeln!(md, "## Profiles\n");
    let _ = writeln!(
        md,
        "| profile | objects × hosts × ports | targets | probes | period / timeout / failure / success | addresses | break share |\n| --- | --- | --- | --- | --- | --- | --- |"
    );
    for r in &report.results {
        let w = &r.profile.workload;
        let probes: Vec<&str> = w.probes.iter().map(|p| p.as_str()).collect();
        let _ = writeln!(
            md,
            "| {}{} | {} × {} × {} | {} | {} | {} s / {} s / {} / {} | {} | {:.0} % |",
            r.profile.name,
            if w.headless {
                " (headless Services)"
            } else {
                ""
            },
            w.objects,
            w.hosts_per_object,
            w.probes.len(),
            w.targets(),
            probes.join(", "),
            w.period_seconds,
            w.timeout_seconds,
            w.failure_threshold,
            w.success_threshold,
            w.addresses,
            r.profile.break_share * 100.0
        );
    }
    let _ = writeln!(md);
    if let Some(r) = report.results.first() {
        let _ = writeln!(
            md,
            "Controller command: `{}` (API group `{}`; Endpoints checked: {}).\n",
            r.controller_command.join(" "),
            r.group,
            r.endpoints_checked
        );
    }

    let _ = writeln!(md, "## Results\n");
    let _ = writeln!(
        md,
        "| profile | create | convergence after last create | from first create | objects/min | controller writes/object | steady writes/min | CPU (% core) | RSS / peak | probes/s | lateness p50 / p99 |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    );
    for r in &report.results {
        let s = r.steady.as_ref();
        let c = r.convergence.as_ref();
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} / {} | {} | {} / {} |",
            r.profile.name,
            opt(r.creation.as_ref().map(|c| c.seconds), |v| format!(
                "{v:.1} s"
            )),
            opt(c.map(|c| c.seconds_after_created), |v| format!("{v:.2} s")),
            opt(c.map(|c| c.seconds_from_first_create), |v| format!(
                "{v:.2} s"
            )),
            opt(c.map(|c| c.objects_per_minute), |v| format!("{v:.0}")),
            opt(c.map(|c| c.controller_writes_per_object), |v| format!(
                "{v:.1}"
            )),
            opt(s.map(|s| s.writes_per_minute), |v| format!("{v:.1}")),
            opt(s.and_then(|s| s.cpu_percent_of_one_core), |v| format!(
                "{v:.1}"
            )),
            opt(s.and_then(|s| s.rss_mib), |v| format!("{v:.0} MiB")),
            opt(r.peak_rss_mib, |v| format!("{v:.0} MiB")),
            opt(s.and_then(|s| s.probes_per_second), |v| format!("{v:.0}")),
            opt(s.and_then(|s| s.lateness_p50_seconds), |v| format!(
                "{:.1} ms",
                v * 1000.0
            )),
            opt(s.and_then(|s| s.lateness_p99_seconds), |v| format!(
                "{:.1} ms",
                v * 1000.0
            )),
        );
    }
    let _ = writeln!(md);

    let _ = writeln!(
        md,
        "### Detection and recovery (seconds over the floor: p50 / p99 / max)\n"
    );
    let _ = writeln!(
        md,
        "| profile | mode | addresses | targets | floor | detection | missed | recovery floor | recovery | missed | collateral |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    );
    for r in &report.results {
        for d in &r.detection {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {:.0} s | {} | {} | {:.0} s | {} | {} | {} |",
                r.profile.name,
                d.mode.as_str(),
                d.addresses_broken,
                d.targets,
                d.floor_seconds,
                summary_cell(d.detect.as_ref()),
                d.missed_detect,
                d.recover_floor_seconds,
                summary_cell(d.recover.as_ref()),
                d.missed_recover,
                d.collateral_not_ready
            );
        }
    }
    let _ = writeln!(md);

    for r in &report.results {
        if let Some(u) = &r.unreachable {
            let _ = writeln!(md, "### Unreachable hosts\n");
            let _ = writeln!(
                md,
                "{} of {} objects reported their state; {} within {:.0} s (period + timeout) after the last create; all reported {} after the last create ({} after the first). Per object, from its own creation: {} (p50 / p99 / max, seconds).\n",
                u.reported,
                u.objects,
                u.within_goal_after_created,
                u.goal_seconds,
                opt(u.all_reported_seconds_after_created, |v| format!(
                    "{v:.2} s"
                )),
                opt(u.all_reported_seconds_from_first_create, |v| format!(
                    "{v:.2} s"
                )),
                summary_cell(u.per_object_seconds.as_ref())
            );
        }
    }

    replicas_markdown(&mut md, &report.results);

    let _ = writeln!(md, "### Writes per object created, by resource and verb\n");
    for r in &report.results {
        if let Some(c) = &r.convergence {
            let _ = writeln!(
                md,
                "- **{}**: {:.2} by the controller, {:.2} with kube-apiserver's own records: {}",
                r.profile.name,
                c.controller_writes_per_object,
                c.api_writes_per_object,
                by_key(&c.writes_per_object_by, 2, "", "none")
            );
        }
    }
    let _ = writeln!(md);

    let _ = writeln!(
        md,
        "### Steady-state API writes by resource and verb (per minute)\n"
    );
    for r in &report.results {
        if let Some(s) = &r.steady {
            let _ = writeln!(
                md,
                "- **{}** ({:.0} s window): {}; reads {:.0}/min; probes {}; controller sockets {} (mean / max); conntrack entries {} (mean / max)",
                r.profile.name,
                s.window_seconds,
                by_key(&s.writes_per_minute_by, 1, "", "none"),
                s.reads_per_minute,
                by_key(&s.probes_per_second_by, 0, "/s", "–"),
                mean_max(s.sockets_mean, s.sockets_max),
                mean_max(s.conntrack_mean, s.conntrack_max),
            );
        }
    }
    let _ = writeln!(md);

    let failed: Vec<&ProfileResult> = report
        .results
        .iter()
        .filter(|r| r.error.is_some())
        .collect();
    if !failed.is_empty() {
        let _ = writeln!(md, "## Failures\n");
        for r in failed {
            let _ = writeln!(
                md,
                "- **{}**: {}",
                r.profile.name,
                r.error.as_deref().unwrap_or_default().replace('\n', " ")
            );
        }
        let _ = writeln!(md);
    }

    if let Some(a) = analysis {
        let _ = writeln!(md, "## What limits it\n");
        let _ = writeln!(md, "{}\n", a.trim());
    }

    if !plots.is_empty() {
        let _ = writeln!(md, "## Plots\n");
        for (title, path) in plots {
            let _ = writeln!(md, "**{title}**\n\n![{title}]({path})\n");
        }
    }
    md
}

/// One table per profile that ran several replicas: each replica's shards,
/// targets, probes and cost (the profile's row above sums them).
fn replicas_markdown(md: &mut String, results: &[ProfileResult]) {
    for r in results.iter().filter(|r| !r.replicas.is_empty()) {
        let shards = r.profile.scale_out.as_ref().map_or(1, |s| s.shards);
        let _ = writeln!(
            md,
            "### Per replica: {} ({} replicas, `--shards {shards}`)\n",
            r.profile.name,
            r.replicas.len()
        );
        let _ = writeln!(
            md,
            "The row of {} in the results sums these: CPU and RSS are the replicas' sums, its peak RSS the sum of their peaks. Steady figures are over the quiet window; reconciles, CPU seconds and peak RSS over the whole run.\n",
            r.profile.name
        );
        let _ = writeln!(
            md,
            "| replica | shards led | targets probed | probes/s | CPU (% core, steady) | RSS steady | reconciles | CPU seconds, whole run | peak RSS |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
        );
        for l in &r.replicas {
            let _ = writeln!(
                md,
                "| {} | {:.0} | {:.0} | {:.0} | {} | {} | {:.0} | {} | {} |",
                l.replica,
                l.shards_leading,
                l.probe_targets,
                l.probes_per_second,
                opt(l.steady_cpu_percent, |v| format!("{v:.1}")),
                opt(l.steady_rss_mib, |v| format!("{v:.0} MiB")),
                l.reconciles,
                opt(l.cpu_seconds_total, |v| format!("{v:.1}")),
                opt(l.peak_rss_mib, |v| format!("{v:.0} MiB")),
            );
        }
        let _ = writeln!(md);
    }
}
