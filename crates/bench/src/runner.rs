//! Runs one profile: a fresh control plane and test host, the controller
//! under test as its own process, the workload, and every measurement.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use kube::core::DynamicObject;
use kube::{Client, ResourceExt};
use kube_endpoints_testkit::controller::{ControllerProcess, Launch};

use crate::replicas::{ReplicaLoad, Replicas};
use kube_endpoints_testkit::{
    Backend, BackendPorts, ControlPlane, ControlPlaneOptions, Fault, TestHost,
};

use crate::error::{Error, Result, io_err, kube_err};
use crate::options::Options;
use crate::prom::{self, Sample};
use crate::report::{
    Convergence, Creation, Detection, ProfileResult, Steady, Unreachable, write_key,
};
use crate::stats::summarize;
use crate::watch::{Combined, Tracker, spawn_watches};
use crate::workload::{BreakMode, Probe, Profile, Workload};

pub(crate) const NAMESPACE: &str = "bench";
const POLL: Duration = Duration::from_millis(100);
const SERIES_EVERY: Duration = Duration::from_millis(250);

/// What the profile is doing now, for the timeout message.
#[derive(Clone, Default)]
struct Phase(Arc<Mutex<String>>);

impl Phase {
    fn set(&self, what: impl Into<String>) {
        let what = what.into();
        eprintln!("  .. {what}");
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = what;
    }

    /// Update without logging (progress counters).
    fn quiet(&self, what: String) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = what;
    }

    fn get(&self) -> String {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

pub async fn run_profile(profile: &Profile, opts: &Options) -> ProfileResult {
    let mut result = ProfileResult::new(profile, opts);
    let limit = opts
        .timeout
        .unwrap_or(Duration::from_secs(profile.timeout_seconds));
    let phase = Phase::default();
    let log = opts.work_dir.join(format!(
        "controller-{}-{}.log",
        slug(&opts.label),
        profile.name
    ));
    let started = Instant::now();
    let outcome =
        tokio::time::timeout(limit, run_inner(profile, opts, &phase, &log, &mut result)).await;
    let error = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(_) => Some(Error::ProfileTimeout {
            profile: profile.name.to_string(),
            limit,
            phase: phase.get(),
            log: crate::replicas::logs_of(&log, profile.scale_out.as_ref()),
        }),
    };
    result.duration_seconds = started.elapsed().as_secs_f64();
    if let Some(e) = error {
        eprintln!("profile {} failed: {e}", profile.name);
        result.error = Some(e.to_string());
    }
    result
}

/// What a profile runs against: a fresh control plane and a test host whose
/// addresses all serve every probe.
struct Fixture {
    cp: ControlPlane,
    client: Client,
    host: TestHost,
    pool: Vec<IpAddr>,
    _backend: Backend,
}

/// When the objects were created.
struct Created {
    first: Instant,
    all: Instant,
    each: HashMap<String, Instant>,
}

async fn run_inner(
    profile: &Profile,
    opts: &Options,
    phase: &Phase,
    log: &std::path::Path,
    result: &mut ProfileResult,
) -> Result<()> {
    let w = &profile.workload;
    let Fixture {
        cp,
        client,
        host,
        pool,
        _backend,
    } = fixture(w, opts, phase).await?;

    phase.set("starting the controller under test");
    let mut controller = Replicas::start(opts, profile.scale_out.as_ref(), &cp, log).await?;
    result.controller_command = controller.command().to_vec();

    let tracker = Tracker::new(w.target_keys(&pool), opts.check_endpoints);
    let resource = kube_endpoints_api::api_resource(&opts.group);
    let _watches = AbortOnDrop(spawn_watches(
        &client,
        NAMESPACE,
        &tracker,
        profile.unreachable.then(|| resource.clone()),
    ));

    if profile.unreachable {
        phase.set(format!(
            "dropping every packet to all {} addresses",
            pool.len()
        ));
        host.set_fault(Fault::Drop, &pool, true).await?;
    }

    let before_create = apiserver_counts(&cp).await?;
    phase.set(format!(
        "creating {} objects ({} targets), {} at once",
        w.objects,
        w.targets(),
        opts.concurrency
    ));
    let first = Instant::now();
    let each = create_objects(&client, w, opts, &pool).await?;
    let created = Created {
        first,
        all: Instant::now(),
        each,
    };
    let create_seconds = created.all.duration_since(first).as_secs_f64();
    result.creation = Some(Creation {
        seconds: create_seconds,
        objects_per_second: w.objects as f64 / create_seconds.max(1e-9),
    });
    controller.check_alive()?;

    if profile.unreachable {
        let u = await_reports(w, &tracker, &mut controller, &created, phase).await?;
        let (reported, goal) = (u.reported, u.goal_seconds);
        result.unreachable = Some(u);
        if reported < w.objects {
            return Err(Error::Deadline(format!(
                "only {reported}/{} objects reported their state in status within {goal}s + 60s after creation",
                w.objects
            )));
        }
    } else {
        let (converged, series) =
            await_convergence(w, opts, &tracker, &mut controller, &created, phase).await?;
        let from_first = converged.duration_since(created.first).as_secs_f64();
        let total = w.targets();
        result.convergence = Some(Convergence {
            seconds_after_created: converged.duration_since(created.all).as_secs_f64(),
            seconds_from_first_create: from_first,
            objects_per_minute: w.objects as f64 * 60.0 / from_first.max(1e-9),
            // Filled in after the settle time (see below).
            controller_writes_per_object: 0.0,
            api_writes_per_object: 0.0,
            writes_per_object_by: BTreeMap::new(),
            series,
        });
        eprintln!(
            "  converged: {total} targets {from_first:.1}s after the first create ({:.1}s after the last)",
            converged.duration_since(created.all).as_secs_f64()
        );
    }

    phase.set(format!("settling for {}s", profile.settle_seconds));
    tokio::time::sleep(Duration::from_secs(profile.settle_seconds)).await;
    if let Some(c) = result.convergence.as_mut() {
        // Counted up to the end of the settle time, not to convergence: a
        // write made after the last target turned ready (a status, or a
        // second write from a stale cache) is part of what creating costs.
        let after = apiserver_counts(&cp).await?;
        let cost = CreationWrites::of(&prom::diff_counts(&before_create, &after), w.objects);
        c.controller_writes_per_object = cost.controller_per_object;
        c.api_writes_per_object = cost.all_per_object;
        c.writes_per_object_by = cost.per_object_by;
        eprintln!(
            "  writes per object: {:.2} by the controller ({:.2} in all): {:?}",
            cost.controller_per_object, cost.all_per_object, c.writes_per_object_by
        );
    }
    phase.set(format!(
        "quiet window of {}s (writes, CPU, probes)",
        profile.quiet_window_seconds
    ));
    let (steady, mut loads) = quiet_window(
        &cp,
        &controller,
        &host,
        Duration::from_secs(profile.quiet_window_seconds),
    )
    .await?;
    result.steady = Some(steady);

    let broken = crate::workload::pick_share(&pool, profile.break_share);
    for mode in &profile.break_modes {
        let d = detect(
            profile,
            &host,
            &pool,
            &broken,
            *mode,
            &tracker,
            &controller,
            phase,
        )
        .await?;
        result.detection.push(d);
    }

    let end = controller.snapshot().await;
    if let Some(s) = end.process() {
        result.peak_rss_mib = Some(s.peak_rss_mib);
        result.cpu_seconds_total = Some(s.cpu_seconds);
    }
    end.finish_loads(&mut loads);
    result.replicas = loads;
    result.watch_errors = tracker.watch_errors();
    controller.kill().await;
    Ok(())
}

async fn fixture(w: &Workload, opts: &Options, phase: &Phase) -> Result<Fixture> {
    phase.set("starting the control plane");
    let cp = ControlPlane::start_with(ControlPlaneOptions {
        // Room for 10,000+ Services; no ClusterIP is ever contacted.
        service_cluster_ip_range: "10.96.0.0/16".into(),
        // Owner-reference cleanup is not measured; keep its watches out of
        // the figures.
        garbage_collector: false,
        // kube-apiserver renews its own identity Lease every 10 s: six
        // writes a minute that are nobody's controller. Off, so the steady
        // figure is the controller's alone.
        extra_apiserver_args: vec!["--feature-gates=APIServerIdentity=false".into()],
        extra_controllers: opts.kcm_controllers.clone(),
        ..ControlPlaneOptions::default()
    })
    .await?;
    let client = cp.client().await?;

    phase.set(format!(
        "creating a test host with {} addresses",
        w.addresses
    ));
    let host = TestHost::create().await?;
    let pool: Vec<IpAddr> = host
        .add_ipv4_aliases(w.addresses)
        .await?
        .into_iter()
        .map(IpAddr::V4)
        .collect();
    let ports = |p: Probe| vec![p.target_port()];
    let backend = host
        .start_backend(BackendPorts {
            tcp: ports(Probe::Tcp),
            http: ports(Probe::Http),
            udp: ports(Probe::Udp),
            grpc: ports(Probe::Grpc),
            redis: vec![],
        })
        .await?;
    // So that the quiet window can count the connection-tracking entries
    // the probes hold (see `quiet_window`).
    host.track_connections().await?;

    phase.set(format!("installing the CRD of {}", opts.group));
    prepare_cluster(&cp, &client, opts).await?;
    Ok(Fixture {
        cp,
        client,
        host,
        pool,
        _backend: backend,
    })
}

/// Unreachable hosts: wait until every object reported its state in status
/// (or period + timeout + 60 s after the last create).
async fn await_reports(
    w: &Workload,
    tracker: &Tracker,
    controller: &mut Replicas,
    created: &Created,
    phase: &Phase,
) -> Result<Unreachable> {
    let goal = f64::from(w.period_seconds + w.timeout_seconds);
    let deadline = created.all + Duration::from_secs_f64(goal) + Duration::from_secs(60);
    loop {
        let reported = tracker.reported();
        phase.quiet(format!(
            "waiting for status of every object: {}/{} report their state",
            reported.len(),
            w.objects
        ));
        if reported.len() >= w.objects || Instant::now() > deadline {
            break;
        }
        controller.check_alive()?;
        tokio::time::sleep(POLL).await;
    }
    let reported = tracker.reported();
    let since = |t: Instant| {
        reported
            .values()
            .max()
            .map(|l| l.saturating_duration_since(t).as_secs_f64())
    };
    let after_created: Vec<f64> = reported
        .values()
        .map(|at| at.saturating_duration_since(created.all).as_secs_f64())
        .collect();
    let per_object: Vec<f64> = reported
        .iter()
        .filter_map(|(name, at)| {
            let created = created.each.get(name)?;
            Some(at.saturating_duration_since(*created).as_secs_f64())
        })
        .collect();
    let all = reported.len() >= w.objects;
    Ok(Unreachable {
        objects: w.objects,
        reported: reported.len(),
        goal_seconds: goal,
        within_goal_after_created: after_created.iter().filter(|s| **s <= goal).count(),
        all_reported_seconds_after_created: all.then(|| since(created.all)).flatten(),
        all_reported_seconds_from_first_create: all.then(|| since(created.first)).flatten(),
        per_object_seconds: summarize(&per_object),
    })
}

/// Wait until every target is ready; when that was, and the share of ready
/// targets over time (seconds since the first create, share).
async fn await_convergence(
    w: &Workload,
    opts: &Options,
    tracker: &Tracker,
    controller: &mut Replicas,
    created: &Created,
    phase: &Phase,
) -> Result<(Instant, Vec<(f64, f64)>)> {
    let total = w.targets();
    let mut series = vec![(0.0, 0.0)];
    let mut last_sample = Instant::now();
    loop {
        let (ready, not_ready, _) = tracker.counts();
        let now = Instant::now();
        if now.duration_since(last_sample) >= SERIES_EVERY || ready == total {
            series.push((
                now.duration_since(created.first).as_secs_f64(),
                ready as f64 / total.max(1) as f64,
            ));
            last_sample = now;
        }
        phase.quiet(format!(
            "converging: {ready}/{total} targets ready in EndpointSlices{} ({not_ready} not ready), {:.0}s after all objects were created",
            if opts.check_endpoints { " and Endpoints" } else { "" },
            now.duration_since(created.all).as_secs_f64()
        ));
        if ready == total {
            return Ok((now, series));
        }
        controller.check_alive()?;
        tokio::time::sleep(POLL).await;
    }
}

/// Break `broken` addresses with `mode`, measure until every target on them
/// is not ready; heal them, measure until ready again.
#[allow(clippy::too_many_arguments)]
async fn detect(
    profile: &Profile,
    host: &TestHost,
    pool: &[IpAddr],
    broken: &[IpAddr],
    mode: BreakMode,
    tracker: &Tracker,
    controller: &Replicas,
    phase: &Phase,
) -> Result<Detection> {
    let w = &profile.workload;
    let keys = w.targets_on(pool, broken);
    let fault = match mode {
        BreakMode::Refuse => Fault::Refuse,
        BreakMode::Drop => Fault::Drop,
    };
    let period = f64::from(w.period_seconds);
    let floor = f64::from(w.failure_threshold) * period;
    let recover_floor = f64::from(w.success_threshold) * period;

    let breakage = Breakage {
        host,
        fault,
        broken,
        keys: &keys,
        tracker,
        controller,
        phase,
    };
    phase.set(format!(
        "detection ({}): breaking {} addresses ({} targets)",
        mode.as_str(),
        broken.len(),
        keys.len()
    ));
    let timeout = f64::from(w.timeout_seconds);
    let down = breakage
        .switch(
            true,
            Combined::NotReady,
            floor,
            floor + timeout,
            "not ready",
        )
        .await?;
    let collateral = tracker.collateral(&keys, down.at);
    phase.set(format!("recovery ({}): healing them", mode.as_str()));
    let up = breakage
        .switch(
            false,
            Combined::Ready,
            recover_floor,
            recover_floor + period,
            "ready again",
        )
        .await?;
    let (detect, missed_detect) = (down.overheads, down.missed);
    let (recover, missed_recover) = (up.overheads, up.missed);
    let d = Detection {
        mode,
        addresses_broken: broken.len(),
        targets: keys.len(),
        floor_seconds: floor,
        detect: summarize(&detect),
        missed_detect,
        recover_floor_seconds: recover_floor,
        recover: summarize(&recover),
        missed_recover,
        collateral_not_ready: collateral,
        detect_samples: round_ms(detect),
        recover_samples: round_ms(recover),
    };
    if let Some(s) = &d.detect {
        eprintln!(
            "  {} detection overhead p50 {:.3}s p99 {:.3}s max {:.3}s over {} targets",
            mode.as_str(),
            s.p50,
            s.p99,
            s.max,
            s.count
        );
    }
    Ok(d)
}

/// Some addresses of the test host, broken and healed, and the targets on
/// them.
struct Breakage<'a> {
    host: &'a TestHost,
    fault: Fault,
    broken: &'a [IpAddr],
    keys: &'a [String],
    tracker: &'a Tracker,
    controller: &'a Replicas,
    phase: &'a Phase,
}

/// How long each target took to change, over its floor.
struct Timed {
    /// When the fault was switched.
    at: Instant,
    /// Seconds over the floor, one per target that changed.
    overheads: Vec<f64>,
    /// Targets that did not change in time.
    missed: usize,
}

impl Breakage<'_> {
    /// Switch the fault `on` or off and wait until every target is `want`
    /// (or `expected` + 60 s have passed).
    async fn switch(
        &self,
        on: bool,
        want: Combined,
        floor: f64,
        expected: f64,
        what: &str,
    ) -> Result<Timed> {
        self.tracker.reset_stamps(self.keys);
        self.host.set_fault(self.fault, self.broken, on).await?;
        let at = Instant::now();
        let deadline = at + Duration::from_secs_f64(expected) + Duration::from_secs(60);
        let stamps = wait_stamps(
            self.tracker,
            self.keys,
            want,
            deadline,
            self.controller,
            self.phase,
            what,
        )
        .await?;
        let overheads = stamps
            .iter()
            .flatten()
            .map(|t| t.saturating_duration_since(at).as_secs_f64() - floor)
            .collect();
        let missed = stamps.iter().filter(|s| s.is_none()).count();
        Ok(Timed {
            at,
            overheads,
            missed,
        })
    }
}

fn round_ms(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v.into_iter()
        .map(|s| (s * 1000.0).round() / 1000.0)
        .collect()
}

/// Wait until every key is in state `want` (or the deadline); the stamps.
#[allow(clippy::too_many_arguments)]
async fn wait_stamps(
    tracker: &Tracker,
    keys: &[String],
    want: Combined,
    deadline: Instant,
    controller: &Replicas,
    phase: &Phase,
    what: &str,
) -> Result<Vec<Option<Instant>>> {
    loop {
        let stamps = tracker.stamps(keys, want);
        let done = stamps.iter().filter(|s| s.is_some()).count();
        phase.quiet(format!(
            "waiting for {}/{} targets to be {what}",
            done,
            keys.len()
        ));
        if done == keys.len() || Instant::now() > deadline {
            if done < keys.len() {
                eprintln!(
                    "  warning: only {done}/{} targets {what} by the deadline",
                    keys.len()
                );
            }
            return Ok(stamps);
        }
        controller.check_running()?;
        tokio::time::sleep(POLL).await;
    }
}

async fn quiet_window(
    cp: &ControlPlane,
    controller: &Replicas,
    host: &TestHost,
    window: Duration,
) -> Result<(Steady, Vec<ReplicaLoad>)> {
    let api0 = apiserver_counts(cp).await?;
    let snap0 = controller.snapshot().await;
    let (ctl0, proc0) = (snap0.metrics(), snap0.process());
    let t0 = Instant::now();
    // Sockets and conntrack entries come and go with each probe: sampled
    // every second over the window.
    let (mut sockets, mut conntrack) = (Vec::new(), Vec::new());
    while t0.elapsed() < window {
        tokio::time::sleep(Duration::from_secs(1).min(window.saturating_sub(t0.elapsed()))).await;
        if let Some(n) = controller.sockets() {
            sockets.push(n as f64);
        }
        if let Ok(n) = host.conntrack_count().await {
            conntrack.push(n as f64);
        }
    }
    let api1 = apiserver_counts(cp).await?;
    let snap1 = controller.snapshot().await;
    let (ctl1, proc1) = (snap1.metrics(), snap1.process());
    let loads = snap1.loads_since(&snap0);
    let secs = t0.elapsed().as_secs_f64();
    let per_min = 60.0 / secs.max(1e-9);

    let writes: BTreeMap<String, f64> = prom::diff_counts(&api0, &api1)
        .into_iter()
        .filter(|((_, _, verb), _)| prom::WRITE_VERBS.contains(&verb.as_str()))
        .map(|(k, v)| (write_key(&k), v * per_min))
        .collect();
    let reads: f64 = prom::diff_counts(&api0, &api1)
        .iter()
        .filter(|((_, _, verb), _)| !prom::WRITE_VERBS.contains(&verb.as_str()))
        .fold(0.0, |a, (_, v)| a + v)
        * per_min;

    let probes0 = prom::counter_by(&ctl0, "kube_endpoints_probes", &["probe", "result"]);
    let probes1 = prom::counter_by(&ctl1, "kube_endpoints_probes", &["probe", "result"]);
    let probes = prom::diff_counts(&probes0, &probes1);
    let probes_per_second_by: BTreeMap<String, f64> = probes
        .iter()
        .map(|(k, v)| (k.join("/"), v / secs.max(1e-9)))
        .collect();
    let late = prom::diff_buckets(
        &prom::histogram_buckets(&ctl0, "kube_endpoints_probe_lateness_seconds"),
        &prom::histogram_buckets(&ctl1, "kube_endpoints_probe_lateness_seconds"),
    );
    let cpu = match (proc0, proc1) {
        (Some(a), Some(b)) => Some((b.cpu_seconds - a.cpu_seconds) * per_min),
        _ => None,
    };
    let steady = Steady {
        window_seconds: secs,
        writes_per_minute: writes.values().fold(0.0, |a, v| a + v),
        writes_per_minute_by: writes,
        reads_per_minute: reads,
        cpu_seconds_per_minute: cpu,
        cpu_percent_of_one_core: cpu.map(|c| c / 60.0 * 100.0),
        rss_mib: proc1.map(|p| p.rss_mib),
        peak_rss_mib: proc1.map(|p| p.peak_rss_mib),
        probes_per_second: (!ctl1.is_empty())
            .then(|| probes.values().fold(0.0, |a, v| a + v) / secs.max(1e-9)),
        probes_per_second_by,
        lateness_p50_seconds: prom::histogram_quantile(0.5, &late),
        lateness_p99_seconds: prom::histogram_quantile(0.99, &late),
        sockets_mean: mean(&sockets),
        sockets_max: max(&sockets),
        conntrack_mean: mean(&conntrack),
        conntrack_max: max(&conntrack),
    };
    Ok((steady, loads))
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

fn max(v: &[f64]) -> Option<f64> {
    v.iter().copied().reduce(f64::max)
}

/// Resources kube-apiserver writes for itself as a consequence of a
/// controller's write: the IPAddress object of each allocated ClusterIP.
const APISERVER_OWN: &[&str] = &["ipaddresses"];

/// What creating the objects cost in API writes, per object.
#[derive(Debug, PartialEq)]
struct CreationWrites {
    /// Every write but the bench's own creates.
    all_per_object: f64,
    /// Without the writes kube-apiserver makes for itself
    /// ([`APISERVER_OWN`]): what the controller under test sent.
    controller_per_object: f64,
    /// `resource[/subresource] VERB` → writes per object (the bench's
    /// creates left out).
    per_object_by: BTreeMap<String, f64>,
}

impl CreationWrites {
    /// From the request counts of the whole creation (a difference of
    /// `apiserver_request_total`), for `objects` objects the bench created
    /// with one POST each.
    fn of(counts: &BTreeMap<prom::RequestKey, f64>, objects: usize) -> CreationWrites {
        let n = objects.max(1) as f64;
        let mut per_object_by = BTreeMap::new();
        let (mut all, mut own) = (0.0, 0.0);
        for (key, v) in counts {
            let (resource, sub, verb) = key;
            if !prom::WRITE_VERBS.contains(&verb.as_str()) {
                continue;
            }
            let mut v = *v;
            if resource == "clusterendpoints" && sub.is_empty() && verb == "POST" {
                v -= objects as f64;
            }
            if v <= 0.0 {
                continue;
            }
            all += v;
            if APISERVER_OWN.contains(&resource.as_str()) {
                own += v;
            }
            per_object_by.insert(write_key(key), v / n);
        }
        CreationWrites {
            all_per_object: all / n,
            controller_per_object: (all - own) / n,
            per_object_by,
        }
    }
}

async fn apiserver_counts(cp: &ControlPlane) -> Result<BTreeMap<prom::RequestKey, f64>> {
    let text = cp.metrics_text().await?;
    let samples: Vec<Sample> = prom::parse(&text);
    Ok(prom::request_counts(&samples))
}

/// What every profile needs in the cluster before the controller starts:
/// the CRD (ours served under `opts.group`, or the controller's own
/// manifest) and the bench's namespace.
pub(crate) async fn prepare_cluster(
    cp: &ControlPlane,
    client: &Client,
    opts: &Options,
) -> Result<()> {
    let crd = match &opts.crd_manifest {
        None => kube_endpoints_api::crd_for_group(&opts.group),
        Some(path) => crd_from_manifest(cp, path).await?,
    };
    kube_endpoints_testkit::crd::install_and_wait(client, &crd, "kube-endpoints-bench").await?;
    create_namespace(client).await
}

/// A CRD manifest (YAML or JSON) as an object, read by kubectl (a client
/// dry run: nothing is sent), so the bench needs no YAML parser of its own.
async fn crd_from_manifest(
    cp: &ControlPlane,
    path: &std::path::Path,
) -> Result<
    k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
> {
    let what = format!("reading the CRD manifest {} with kubectl", path.display());
    let out = cp
        .kubectl([
            std::ffi::OsStr::new("create"),
            std::ffi::OsStr::new("--dry-run=client"),
            std::ffi::OsStr::new("-o"),
            std::ffi::OsStr::new("json"),
            std::ffi::OsStr::new("-f"),
            path.as_os_str(),
        ])
        .output()
        .await
        .map_err(io_err(what.clone()))?;
    if !out.status.success() {
        return Err(Error::Usage(format!(
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

async fn create_namespace(client: &Client) -> Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": NAMESPACE}}))?;
    api.create(&PostParams::default(), &ns)
        .await
        .map_err(kube_err(format!("creating namespace {NAMESPACE}")))?;
    Ok(())
}

/// Create every object, `concurrency` at a time, retrying throttling and
/// server errors; when each was created.
async fn create_objects(
    client: &Client,
    w: &Workload,
    opts: &Options,
    pool: &[IpAddr],
) -> Result<HashMap<String, Instant>> {
    let (group, concurrency) = (opts.group.as_str(), opts.concurrency);
    let api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        NAMESPACE,
        &kube_endpoints_api::api_resource(group),
    );
    let mut objects = Vec::with_capacity(w.objects);
    for i in 0..w.objects {
        let mut value = w.object(i, group, NAMESPACE, pool);
        if opts.udp_data_as_bytes {
            crate::workload::udp_data_as_bytes(&mut value);
        }
        let obj: DynamicObject = serde_json::from_value(value)?;
        objects.push(obj);
    }
    let results: Vec<Result<(String, Instant)>> = futures::stream::iter(objects)
        .map(|obj| {
            let api = api.clone();
            async move {
                let name = obj.name_any();
                let mut attempt = 0;
                loop {
                    match api.create(&PostParams::default(), &obj).await {
                        Ok(_) => return Ok((name, Instant::now())),
                        Err(kube::Error::Api(s)) if s.code == 409 => {
                            return Ok((name, Instant::now()));
                        }
                        Err(e) if attempt < 5 && retriable(&e) => {
                            attempt += 1;
                            tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                        }
                        Err(e) => return Err(kube_err(format!("creating {name}"))(e)),
                    }
                }
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    results.into_iter().collect()
}

fn retriable(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => s.code == 429 || s.code >= 500,
        _ => true,
    }
}

/// Start the controller under test: `opts.controller_cmd` with its
/// placeholders filled in, ready once `/metrics` answers (any controller
/// has that; not every one has `/readyz`).
pub(crate) async fn start_controller(
    opts: &Options,
    cp: &ControlPlane,
    log: &std::path::Path,
) -> Result<ControllerProcess> {
    let metrics_port = match opts.fixed_metrics_port {
        Some(port) => port,
        None => kube_endpoints_testkit::http::free_port().map_err(crate::error::io_err(
            "finding a free port for the controller's metrics",
        ))?,
    };
    let kubeconfig = cp.kubeconfig_path().display().to_string();
    let fill = |a: &String| {
        a.replace("{kubeconfig}", &kubeconfig)
            .replace("{metrics_addr}", &format!("127.0.0.1:{metrics_port}"))
            .replace("{metrics_port}", &metrics_port.to_string())
            .replace("{namespace}", NAMESPACE)
            .replace("{group}", &opts.group)
    };
    let command: Vec<String> = opts.controller_cmd.iter().map(fill).collect();
    if command.is_empty() {
        return Err(Error::Usage("the controller command is empty".into()));
    }
    let mut launch = Launch::new(command, metrics_port, log.to_path_buf());
    launch.ready_path = "/metrics".into();
    launch.env = vec![(
        "RUST_LOG".into(),
        std::env::var("KE_BENCH_RUST_LOG").unwrap_or_else(|_| "warn".into()),
    )];
    launch.env.extend(
        opts.controller_env
            .iter()
            .map(|(k, v)| (k.clone(), fill(v))),
    );
    Ok(ControllerProcess::start(launch).await?)
}

/// `label` as a file-name part: lower-case letters, digits and dashes.
pub(crate) fn slug(label: &str) -> String {
    let mut out = String::new();
    for c in label.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for h in &self.0 {
            h.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(resource: &str, sub: &str, verb: &str) -> prom::RequestKey {
        (resource.into(), sub.into(), verb.into())
    }

    #[test]
    fn creation_writes_leave_out_the_bench_and_count_the_apiserver_apart() {
        let counts = BTreeMap::from([
            (key("clusterendpoints", "", "POST"), 10.0),
            (key("clusterendpoints", "status", "APPLY"), 10.0),
            (key("services", "", "APPLY"), 10.0),
            (key("endpointslices", "", "POST"), 10.0),
            (key("endpoints", "", "APPLY"), 10.0),
            (key("ipaddresses", "", "POST"), 10.0),
            (key("services", "", "GET"), 40.0),
        ]);
        let cost = CreationWrites::of(&counts, 10);
        assert_eq!(cost.all_per_object, 5.0);
        assert_eq!(cost.controller_per_object, 4.0);
        assert_eq!(
            cost.per_object_by,
            BTreeMap::from([
                ("clusterendpoints/status APPLY".to_string(), 1.0),
                ("endpoints APPLY".to_string(), 1.0),
                ("endpointslices POST".to_string(), 1.0),
                ("ipaddresses POST".to_string(), 1.0),
                ("services APPLY".to_string(), 1.0),
            ])
        );
    }
}
