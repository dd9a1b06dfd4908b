//! Runs one profile: a fresh control plane and test host, the controller
//! under test as its own process, the workload, and every measurement.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::core::DynamicObject;
use kube::{Client, ResourceExt};
use kube_endpoints_testkit::{BackendPorts, ControlPlane, ControlPlaneOptions, Fault, TestHost};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use crate::error::{Error, Result, io_err, kube_err};
use crate::prom::{self, Sample};
use crate::report::{
    Convergence, Creation, Detection, ProfileResult, Steady, Unreachable, write_key,
};
use crate::stats::summarize;
use crate::sys;
use crate::watch::{Combined, Tracker, spawn_watches};
use crate::workload::{BreakMode, Probe, Profile, Workload};

pub(crate) const NAMESPACE: &str = "bench";
const POLL: Duration = Duration::from_millis(100);
const SERIES_EVERY: Duration = Duration::from_millis(250);

/// How the controller under test is run and observed.
#[derive(Clone, Debug)]
pub struct Options {
    /// The controller's command line; `{kubeconfig}`, `{metrics_addr}`,
    /// `{metrics_port}`, `{namespace}` and `{group}` are replaced.
    pub controller_cmd: Vec<String>,
    pub group: String,
    /// Also require the compatibility Endpoints to agree.
    pub check_endpoints: bool,
    /// Objects created at once.
    pub concurrency: usize,
    /// Logs of the controller runs.
    pub work_dir: PathBuf,
    /// Overrides every profile's own timeout.
    pub timeout: Option<Duration>,
}

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
    let log = opts
        .work_dir
        .join(format!("controller-{}.log", profile.name));
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
            log: log.clone(),
        }),
    };
    result.duration_seconds = started.elapsed().as_secs_f64();
    if let Some(e) = error {
        eprintln!("profile {} failed: {e}", profile.name);
        result.error = Some(e.to_string());
    }
    result
}

async fn run_inner(
    profile: &Profile,
    opts: &Options,
    phase: &Phase,
    log: &std::path::Path,
    result: &mut ProfileResult,
) -> Result<()> {
    let w = &profile.workload;
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
    let _backend = host
        .start_backend(BackendPorts {
            tcp: ports(Probe::Tcp),
            http: ports(Probe::Http),
            udp: ports(Probe::Udp),
            grpc: ports(Probe::Grpc),
        })
        .await?;

    phase.set(format!("installing the CRD of {}", opts.group));
    install_crd(&client, &opts.group).await?;
    create_namespace(&client).await?;

    phase.set("starting the controller under test");
    let mut controller = Controller::start(opts, &cp, log).await?;
    result.controller_command = controller.command.clone();

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
    let first_create = Instant::now();
    let created_at = create_objects(&client, w, &opts.group, &pool, opts.concurrency).await?;
    let all_created = Instant::now();
    let create_seconds = all_created.duration_since(first_create).as_secs_f64();
    result.creation = Some(Creation {
        seconds: create_seconds,
        objects_per_second: w.objects as f64 / create_seconds.max(1e-9),
    });
    controller.check_alive().await?;

    if profile.unreachable {
        let goal = f64::from(w.period_seconds + w.timeout_seconds);
        let deadline = all_created + Duration::from_secs_f64(goal) + Duration::from_secs(60);
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
            controller.check_alive().await?;
            tokio::time::sleep(POLL).await;
        }
        let reported = tracker.reported();
        let after_created: Vec<f64> = reported
            .values()
            .map(|at| at.saturating_duration_since(all_created).as_secs_f64())
            .collect();
        let per_object: Vec<f64> = reported
            .iter()
            .filter_map(|(name, at)| {
                let created = created_at.get(name)?;
                Some(at.saturating_duration_since(*created).as_secs_f64())
            })
            .collect();
        let last = reported.values().max().copied();
        result.unreachable = Some(Unreachable {
            objects: w.objects,
            reported: reported.len(),
            goal_seconds: goal,
            within_goal_after_created: after_created.iter().filter(|s| **s <= goal).count(),
            all_reported_seconds_after_created: (reported.len() >= w.objects)
                .then(|| last.map(|l| l.saturating_duration_since(all_created).as_secs_f64()))
                .flatten(),
            all_reported_seconds_from_first_create: (reported.len() >= w.objects)
                .then(|| last.map(|l| l.saturating_duration_since(first_create).as_secs_f64()))
                .flatten(),
            per_object_seconds: summarize(&per_object),
        });
        if reported.len() < w.objects {
            return Err(Error::Deadline(format!(
                "only {}/{} objects reported their state in status within {goal}s + 60s after creation",
                reported.len(),
                w.objects
            )));
        }
    } else {
        let total = w.targets();
        let mut series = vec![(0.0, 0.0)];
        let mut last_sample = Instant::now();
        loop {
            let (ready, not_ready, _) = tracker.counts();
            let now = Instant::now();
            if now.duration_since(last_sample) >= SERIES_EVERY || ready == total {
                series.push((
                    now.duration_since(first_create).as_secs_f64(),
                    ready as f64 / total.max(1) as f64,
                ));
                last_sample = now;
            }
            phase.quiet(format!(
                "converging: {ready}/{total} targets ready in EndpointSlices{} ({not_ready} not ready), {:.0}s after all objects were created",
                if opts.check_endpoints { " and Endpoints" } else { "" },
                now.duration_since(all_created).as_secs_f64()
            ));
            if ready == total {
                break;
            }
            controller.check_alive().await?;
            tokio::time::sleep(POLL).await;
        }
        let converged = Instant::now();
        let after = apiserver_counts(&cp).await?;
        let writes = write_total(&prom::diff_counts(&before_create, &after));
        let from_first = converged.duration_since(first_create).as_secs_f64();
        result.convergence = Some(Convergence {
            seconds_after_created: converged.duration_since(all_created).as_secs_f64(),
            seconds_from_first_create: from_first,
            objects_per_minute: w.objects as f64 * 60.0 / from_first.max(1e-9),
            // Minus the bench's own creates.
            controller_writes_per_object: (writes - w.objects as f64) / w.objects.max(1) as f64,
            series,
        });
        eprintln!(
            "  converged: {total} targets {from_first:.1}s after the first create ({:.1}s after the last)",
            converged.duration_since(all_created).as_secs_f64()
        );
    }

    phase.set(format!("settling for {}s", profile.settle_seconds));
    tokio::time::sleep(Duration::from_secs(profile.settle_seconds)).await;
    phase.set(format!(
        "quiet window of {}s (writes, CPU, probes)",
        profile.quiet_window_seconds
    ));
    result.steady = Some(
        quiet_window(
            &cp,
            &controller,
            Duration::from_secs(profile.quiet_window_seconds),
        )
        .await?,
    );

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

    if let Some(s) = controller.proc_sample() {
        result.peak_rss_mib = Some(s.peak_rss_mib);
        result.cpu_seconds_total = Some(s.cpu_seconds);
    }
    result.watch_errors = tracker.watch_errors();
    controller.stop().await;
    Ok(())
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
    controller: &Controller,
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
    let slack = Duration::from_secs(60);

    phase.set(format!(
        "detection ({}): breaking {} addresses ({} targets)",
        mode.as_str(),
        broken.len(),
        keys.len()
    ));
    tracker.reset_stamps(&keys);
    host.set_fault(fault, broken, true).await?;
    let t0 = Instant::now();
    let down = wait_stamps(
        tracker,
        &keys,
        Combined::NotReady,
        t0 + Duration::from_secs_f64(floor + f64::from(w.timeout_seconds)) + slack,
        controller,
        phase,
        "not ready",
    )
    .await?;
    let collateral = tracker.collateral(&keys, t0);
    let detect: Vec<f64> = down
        .iter()
        .flatten()
        .map(|at| at.saturating_duration_since(t0).as_secs_f64() - floor)
        .collect();
    let missed_detect = down.iter().filter(|d| d.is_none()).count();

    phase.set(format!("recovery ({}): healing them", mode.as_str()));
    tracker.reset_stamps(&keys);
    host.set_fault(fault, broken, false).await?;
    let t1 = Instant::now();
    let up = wait_stamps(
        tracker,
        &keys,
        Combined::Ready,
        t1 + Duration::from_secs_f64(recover_floor + period) + slack,
        controller,
        phase,
        "ready again",
    )
    .await?;
    let recover: Vec<f64> = up
        .iter()
        .flatten()
        .map(|at| at.saturating_duration_since(t1).as_secs_f64() - recover_floor)
        .collect();
    let missed_recover = up.iter().filter(|d| d.is_none()).count();
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
    controller: &Controller,
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
        controller.check_alive_ref()?;
        tokio::time::sleep(POLL).await;
    }
}

async fn quiet_window(
    cp: &ControlPlane,
    controller: &Controller,
    window: Duration,
) -> Result<Steady> {
    let api0 = apiserver_counts(cp).await?;
    let ctl0 = prom::parse(&controller.metrics().await.unwrap_or_default());
    let proc0 = controller.proc_sample();
    let t0 = Instant::now();
    tokio::time::sleep(window).await;
    let api1 = apiserver_counts(cp).await?;
    let ctl1 = prom::parse(&controller.metrics().await.unwrap_or_default());
    let proc1 = controller.proc_sample();
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
    Ok(Steady {
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
    })
}

fn write_total(counts: &BTreeMap<prom::RequestKey, f64>) -> f64 {
    counts
        .iter()
        .filter(|((_, _, verb), _)| prom::WRITE_VERBS.contains(&verb.as_str()))
        .map(|(_, v)| v)
        .sum()
}

async fn apiserver_counts(cp: &ControlPlane) -> Result<BTreeMap<prom::RequestKey, f64>> {
    let text = cp.metrics_text().await?;
    let samples: Vec<Sample> = prom::parse(&text);
    Ok(prom::request_counts(&samples))
}

pub(crate) async fn install_crd(client: &Client, group: &str) -> Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = kube_endpoints_api::crd_for_group(group);
    let name = crd.name_any();
    crds.patch(
        &name,
        &PatchParams::apply("kube-endpoints-bench").force(),
        &Patch::Apply(&crd),
    )
    .await
    .map_err(kube_err(format!("applying CRD {name}")))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let established = crds
            .get_opt(&name)
            .await
            .map_err(kube_err(format!("reading CRD {name}")))?
            .and_then(|c| c.status)
            .and_then(|s| s.conditions)
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
            });
        if established {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::Deadline(format!(
                "CRD {name} not established after 60s"
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

pub(crate) async fn create_namespace(client: &Client) -> Result<()> {
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
    group: &str,
    pool: &[IpAddr],
    concurrency: usize,
) -> Result<HashMap<String, Instant>> {
    let api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        NAMESPACE,
        &kube_endpoints_api::api_resource(group),
    );
    let mut objects = Vec::with_capacity(w.objects);
    for i in 0..w.objects {
        let obj: DynamicObject = serde_json::from_value(w.object(i, group, NAMESPACE, pool))?;
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

/// The controller under test, as a child process.
pub(crate) struct Controller {
    child: Child,
    pid: u32,
    metrics_port: u16,
    command: Vec<String>,
    log: PathBuf,
}

impl Controller {
    pub(crate) async fn start(
        opts: &Options,
        cp: &ControlPlane,
        log: &std::path::Path,
    ) -> Result<Controller> {
        let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(io_err("finding a free port for the controller's metrics"))?;
        let kubeconfig = cp.kubeconfig_path().display().to_string();
        let command: Vec<String> = opts
            .controller_cmd
            .iter()
            .map(|a| {
                a.replace("{kubeconfig}", &kubeconfig)
                    .replace("{metrics_addr}", &format!("127.0.0.1:{metrics_port}"))
                    .replace("{metrics_port}", &metrics_port.to_string())
                    .replace("{namespace}", NAMESPACE)
                    .replace("{group}", &opts.group)
            })
            .collect();
        let Some((program, args)) = command.split_first() else {
            return Err(Error::Usage("the controller command is empty".into()));
        };
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
        }
        let file =
            std::fs::File::create(log).map_err(io_err(format!("creating {}", log.display())))?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env(
                "RUST_LOG",
                std::env::var("KE_BENCH_RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(file))
            .kill_on_drop(true);
        let child = cmd
            .spawn()
            .map_err(|e| Error::Controller(format!("cannot run `{}`: {e}", command.join(" "))))?;
        let pid = child
            .id()
            .ok_or_else(|| Error::Controller("exited at once".into()))?;
        let mut c = Controller {
            child,
            pid,
            metrics_port,
            command,
            log: log.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            c.check_alive().await?;
            if c.metrics().await.is_some() {
                return Ok(c);
            }
            if Instant::now() > deadline {
                return Err(Error::Controller(format!(
                    "no /metrics on 127.0.0.1:{metrics_port} after 60s; log {}:\n{}",
                    c.log.display(),
                    c.log_tail()
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    pub(crate) async fn check_alive(&mut self) -> Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(Error::Controller(format!(
                "exited ({status}); log {}:\n{}",
                self.log.display(),
                self.log_tail()
            ))),
            Err(e) => Err(Error::Controller(format!("cannot check it: {e}"))),
        }
    }

    /// Like [`check_alive`](Self::check_alive) through `/proc`, for shared refs.
    fn check_alive_ref(&self) -> Result<()> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).unwrap_or_default();
        let state = stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next());
        match state {
            Some("Z") | Some("X") | None => Err(Error::Controller(format!(
                "exited; log {}:\n{}",
                self.log.display(),
                self.log_tail()
            ))),
            _ => Ok(()),
        }
    }

    fn proc_sample(&self) -> Option<sys::ProcSample> {
        sys::sample(self.pid)
    }

    async fn metrics(&self) -> Option<String> {
        http_get(self.metrics_port, "/metrics").await
    }

    pub(crate) async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// GET over plain HTTP/1.0 on loopback; the body when the status is 200.
async fn http_get(port: u16, path: &str) -> Option<String> {
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
            .await
            .ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.ok()?;
        let text = String::from_utf8_lossy(&buf);
        let (head, body) = text.split_once("\r\n\r\n")?;
        let ok = head
            .lines()
            .next()
            .is_some_and(|l| l.split_whitespace().nth(1) == Some("200"));
        ok.then(|| body.to_string())
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .ok()
        .flatten()
}

struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for h in &self.0 {
            h.abort();
        }
    }
}
