//! The `datapath` profile: how long after a backend fails until no new
//! connection through kube-proxy reaches it, beside the slice-level
//! detection the other profiles measure.
//!
//! A fresh control plane, two test hosts (HTTP backends), the controller
//! under test and a node namespace running the real kube-proxy (nftables
//! mode) with a `ke-client` loop inside it opening a new connection to the
//! Service's ClusterIP every [`CLIENT_INTERVAL`]; every answer names the
//! backend that served it. Each round breaks one host (an nftables *refuse*
//! rule in its namespace: TCP reset, as a stopped service) and records,
//! from the moment the rule is in place:
//!
//! - **slice**: until the host is not ready in its EndpointSlice (polled
//!   every [`POLL`]);
//! - **rules**: until kube-proxy's rule set no longer sends connections to it
//!   (polled every [`POLL`]);
//! - **data path**: until the last connection that still reached it (was
//!   refused by it): the client-observed figure, to within one client
//!   interval or so.
//!
//! Then it heals the host and records the same for recovery (the data-path
//! figure: until the first connection it answers). Connections that reached
//! a broken host after the rule set had dropped it are counted as strays
//! (expected: none).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams, PostParams};
use kube::core::DynamicObject;
use kube_endpoints_testkit::node::{Attempt, ClientLoop, Node, NodeOptions, Outcome, Proto};
use kube_endpoints_testkit::{BackendPorts, ControlPlane, ControlPlaneOptions, Fault, TestHost};
use serde::Serialize;

use crate::error::{Error, Result, kube_err};
use crate::options::Options;
use crate::runner::{NAMESPACE, prepare_cluster, start_controller};
use crate::section::Section;
use crate::stats::{Summary, summarize};

pub const NAME: &str = "datapath";
const ROUNDS: usize = 20;
const PROBE: ProbeSettings = ProbeSettings {
    period_seconds: 1,
    failure_threshold: 1,
    success_threshold: 1,
    timeout_seconds: 1,
};
const CLIENT_INTERVAL: Duration = Duration::from_millis(10);
const POLL: Duration = Duration::from_millis(20);
/// Client traffic kept flowing after the rules changed, to catch strays.
const AFTER_RULES: Duration = Duration::from_millis(500);
/// A connection started this long after the rule set was *seen* without
/// the host may not reach it (the rule set is polled, so it changed up to
/// one poll earlier).
const STRAY_SLACK_MS: u64 = 50;
const ROUND_DEADLINE: Duration = Duration::from_secs(30);
const OBJECT: &str = "datapath";
const TARGET_PORT: u16 = 80;
const SERVICE_PORT: u16 = 8080;

#[derive(Clone, Debug, Default, Serialize)]
pub struct DataPathResult {
    pub profile: &'static str,
    pub description: &'static str,
    pub proxy_mode: &'static str,
    pub rounds: usize,
    #[serde(flatten)]
    pub probe: ProbeSettings,
    pub client_interval_ms: u64,
    /// Failure → not ready in the EndpointSlice (s).
    pub slice_detect: Option<Summary>,
    /// Failure → kube-proxy's rules no longer send to it (s).
    pub rules_detect: Option<Summary>,
    /// Failure → the last connection that still reached it (s).
    pub datapath_detect: Option<Summary>,
    /// Slice changed → kube-proxy's rules changed, per round (s): what
    /// kube-proxy adds on top of the controller.
    pub proxy_after_slice: Option<Summary>,
    /// Connections refused by the broken host per round.
    pub failed_connections: Option<Summary>,
    /// Connections that reached a broken host after the rules had dropped it.
    pub strays: usize,
    /// Heal → ready in the EndpointSlice (s).
    pub slice_recover: Option<Summary>,
    /// Heal → kube-proxy's rules send to it again (s).
    pub rules_recover: Option<Summary>,
    /// Heal → the first connection it answered (s).
    pub datapath_recover: Option<Summary>,
    pub duration_seconds: f64,
    pub error: Option<String>,
}

/// How the profile's object is probed.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct ProbeSettings {
    pub period_seconds: u32,
    pub failure_threshold: u32,
    pub success_threshold: u32,
    pub timeout_seconds: u32,
}

impl DataPathResult {
    pub fn has_figures(&self) -> bool {
        self.error.is_none() && self.datapath_detect.is_some() && self.datapath_recover.is_some()
    }
}

#[derive(Default)]
struct Samples {
    slice_detect: Vec<f64>,
    rules_detect: Vec<f64>,
    datapath_detect: Vec<f64>,
    proxy_after_slice: Vec<f64>,
    failed: Vec<f64>,
    strays: usize,
    slice_recover: Vec<f64>,
    rules_recover: Vec<f64>,
    datapath_recover: Vec<f64>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub async fn run(opts: &Options) -> DataPathResult {
    let mut result = DataPathResult {
        profile: NAME,
        description: "2 hosts behind one ClusterIP, HTTP, period 1 s, failureThreshold 1; kube-proxy (nftables) in a node namespace, a new connection every 10 ms",
        proxy_mode: "nftables",
        rounds: ROUNDS,
        probe: PROBE,
        client_interval_ms: u64::try_from(CLIENT_INTERVAL.as_millis()).unwrap_or(0),
        ..DataPathResult::default()
    };
    let started = Instant::now();
    let log = opts.work_dir.join(format!("controller-{NAME}.log"));
    let mut samples = Samples::default();
    let limit = opts.timeout.unwrap_or(Duration::from_secs(600));
    let outcome = tokio::time::timeout(limit, measure(opts, &log, &mut samples)).await;
    result.error = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some(format!("did not finish within {limit:?}")),
    };
    if let Some(e) = &result.error {
        eprintln!("profile {NAME} failed: {e}");
    }
    result.slice_detect = summarize(&samples.slice_detect);
    result.rules_detect = summarize(&samples.rules_detect);
    result.datapath_detect = summarize(&samples.datapath_detect);
    result.proxy_after_slice = summarize(&samples.proxy_after_slice);
    result.failed_connections = summarize(&samples.failed);
    result.strays = samples.strays;
    result.slice_recover = summarize(&samples.slice_recover);
    result.rules_recover = summarize(&samples.rules_recover);
    result.datapath_recover = summarize(&samples.datapath_recover);
    result.duration_seconds = started.elapsed().as_secs_f64();
    result
}

struct Setup<'a> {
    client: kube::Client,
    node: &'a Node,
    hosts: &'a [TestHost; 2],
    addrs: [IpAddr; 2],
}

async fn measure(opts: &Options, log: &Path, samples: &mut Samples) -> Result<()> {
    eprintln!("  .. starting the control plane, two test hosts and a kube-proxy node");
    let cp = ControlPlane::start_with(ControlPlaneOptions {
        garbage_collector: false,
        ..ControlPlaneOptions::default()
    })
    .await?;
    let client = cp.client().await?;
    let hosts = [TestHost::create().await?, TestHost::create().await?];
    let ports = BackendPorts {
        http: vec![TARGET_PORT],
        ..BackendPorts::default()
    };
    let _backends = [
        hosts[0].start_backend(ports.clone()).await?,
        hosts[1].start_backend(ports).await?,
    ];
    let node = Node::start(&cp, NodeOptions::default()).await?;
    for h in &hosts {
        node.connect(h).await?;
    }
    prepare_cluster(&cp, &client, opts).await?;
    let mut controller = start_controller(opts, &cp, log).await?;

    let addrs = [IpAddr::V4(hosts[0].ipv4()), IpAddr::V4(hosts[1].ipv4())];
    create_object(&client, &opts.group, &addrs).await?;
    let vip = cluster_ip(&client).await?;
    let setup = Setup {
        client,
        node: &node,
        hosts: &hosts,
        addrs,
    };
    let both: BTreeSet<SocketAddr> = addrs
        .iter()
        .map(|a| SocketAddr::new(*a, TARGET_PORT))
        .collect();
    wait_rules(&setup, |eps| eps == &both, "both hosts").await?;
    let client_loop = node.client_loop(
        Proto::Http,
        SocketAddr::new(vip, SERVICE_PORT),
        CLIENT_INTERVAL,
    )?;
    for round in 0..ROUNDS {
        controller.check_alive()?;
        let victim = round % 2;
        one_round(&setup, &client_loop, victim, samples).await?;
        wait_rules(&setup, |eps| eps == &both, "both hosts").await?;
    }
    let attempts = client_loop.stop().await;
    eprintln!(
        "  {} connections through the ClusterIP in {ROUNDS} rounds",
        attempts.len()
    );
    if let Some(s) = summarize(&samples.datapath_detect) {
        eprintln!(
            "  data-path detection p50 {:.3}s p99 {:.3}s (slice-level p50 {:.3}s)",
            s.p50,
            s.p99,
            summarize(&samples.slice_detect).map_or(f64::NAN, |s| s.p50)
        );
    }
    controller.kill().await;
    Ok(())
}

async fn create_object(client: &kube::Client, group: &str, hosts: &[IpAddr]) -> Result<()> {
    let api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        NAMESPACE,
        &kube_endpoints_api::api_resource(group),
    );
    let hosts: Vec<String> = hosts.iter().map(ToString::to_string).collect();
    let obj: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": format!("{group}/v1beta1"),
        "kind": "ClusterEndpoint",
        "metadata": {"name": OBJECT, "namespace": NAMESPACE},
        "spec": {
            "periodSeconds": PROBE.period_seconds,
            "ports": [{
                "name": "http",
                "port": SERVICE_PORT,
                "targetPort": TARGET_PORT,
                "hosts": hosts,
                "httpGet": {"path": "/healthz"},
                "timeoutSeconds": PROBE.timeout_seconds,
                "failureThreshold": PROBE.failure_threshold,
                "successThreshold": PROBE.success_threshold,
            }]
        }
    }))?;
    api.create(&PostParams::default(), &obj)
        .await
        .map_err(kube_err(format!("creating {OBJECT}")))?;
    Ok(())
}

async fn cluster_ip(client: &kube::Client) -> Result<IpAddr> {
    let api: Api<Service> = Api::namespaced(client.clone(), NAMESPACE);
    let deadline = Instant::now() + ROUND_DEADLINE;
    loop {
        let ip = api
            .get_opt(OBJECT)
            .await
            .map_err(kube_err(format!("reading Service {OBJECT}")))?
            .and_then(|s| s.spec?.cluster_ip)
            .and_then(|ip| ip.parse().ok());
        if let Some(ip) = ip {
            return Ok(ip);
        }
        if Instant::now() > deadline {
            return Err(Error::Deadline(format!(
                "the controller made no Service {OBJECT} with a ClusterIP"
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Whether `host` is ready in the object's EndpointSlice (None: not listed).
async fn slice_ready(client: &kube::Client, host: IpAddr) -> Result<Option<bool>> {
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), NAMESPACE);
    let lp = ListParams::default().labels(&format!("kubernetes.io/service-name={OBJECT}"));
    let slices = api
        .list(&lp)
        .await
        .map_err(kube_err("listing EndpointSlices"))?;
    let host = host.to_string();
    Ok(slices
        .items
        .iter()
        .flat_map(|s| &s.endpoints)
        .find(|e| e.addresses.contains(&host))
        .map(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true)))
}

async fn rules(setup: &Setup<'_>) -> Result<Option<BTreeSet<SocketAddr>>> {
    Ok(setup
        .node
        .programmed_endpoints(NAMESPACE, OBJECT, "http", "tcp", false)
        .await?)
}

async fn wait_rules(
    setup: &Setup<'_>,
    want: impl Fn(&BTreeSet<SocketAddr>) -> bool,
    what: &str,
) -> Result<()> {
    let deadline = Instant::now() + ROUND_DEADLINE;
    loop {
        if rules(setup).await?.as_ref().is_some_and(&want) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::Deadline(format!(
                "kube-proxy did not route to {what} within {ROUND_DEADLINE:?}; its log {}:\n{}",
                setup.node.log_path().display(),
                setup.node.log_tail()
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Poll until the slice shows `host` as `ready` and the rules agree
/// (contain it when ready, lack it when not); wall-clock ms of each.
async fn watch_change(setup: &Setup<'_>, host: IpAddr, ready: bool) -> Result<(u64, u64)> {
    let endpoint = SocketAddr::new(host, TARGET_PORT);
    let deadline = Instant::now() + ROUND_DEADLINE;
    let (mut slice_at, mut rules_at) = (None, None);
    loop {
        if slice_at.is_none() && slice_ready(&setup.client, host).await? == Some(ready) {
            slice_at = Some(now_ms());
        }
        if rules_at.is_none()
            && rules(setup)
                .await?
                .is_some_and(|eps| eps.contains(&endpoint) == ready)
        {
            rules_at = Some(now_ms());
        }
        if let (Some(s), Some(r)) = (slice_at, rules_at) {
            return Ok((s, r));
        }
        if Instant::now() > deadline {
            return Err(Error::Deadline(format!(
                "{host} did not become ready={ready} in the slice ({slice_at:?}) and kube-proxy's rules ({rules_at:?}) within {ROUND_DEADLINE:?}"
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// An attempt that reached `host` while it refuses: refused, or (just
/// before the rule applied) answered by it.
fn reached(a: &Attempt, host: IpAddr) -> bool {
    match &a.outcome {
        Outcome::Answered(ip) => *ip == host,
        Outcome::Failed { .. } => true,
    }
}

fn seconds(from_ms: u64, to_ms: u64) -> f64 {
    (to_ms as f64 - from_ms as f64) / 1000.0
}

async fn one_round(
    setup: &Setup<'_>,
    client_loop: &ClientLoop,
    victim: usize,
    samples: &mut Samples,
) -> Result<()> {
    let host = setup.addrs[victim];
    let fault_addr = [host];
    setup.hosts[victim]
        .set_fault(Fault::Refuse, &fault_addr, true)
        .await?;
    let failed_at = now_ms();
    let (slice_at, rules_at) = watch_change(setup, host, false).await?;
    tokio::time::sleep(AFTER_RULES).await;
    let attempts = client_loop.attempts();
    let after: Vec<&Attempt> = attempts.iter().filter(|a| a.at_ms >= failed_at).collect();
    let hits: Vec<&&Attempt> = after.iter().filter(|a| reached(a, host)).collect();
    let last_hit = hits.iter().map(|a| a.at_ms).max().unwrap_or(failed_at);
    samples.slice_detect.push(seconds(failed_at, slice_at));
    samples.rules_detect.push(seconds(failed_at, rules_at));
    samples.datapath_detect.push(seconds(failed_at, last_hit));
    samples.proxy_after_slice.push(seconds(slice_at, rules_at));
    samples.failed.push(
        after
            .iter()
            .filter(|a| matches!(a.outcome, Outcome::Failed { .. }))
            .count() as f64,
    );
    samples.strays += hits
        .iter()
        .filter(|a| a.at_ms > rules_at + STRAY_SLACK_MS)
        .count();

    setup.hosts[victim]
        .set_fault(Fault::Refuse, &fault_addr, false)
        .await?;
    let healed_at = now_ms();
    let (slice_at, rules_at) = watch_change(setup, host, true).await?;
    let deadline = Instant::now() + ROUND_DEADLINE;
    let first_answer = loop {
        let first = client_loop
            .attempts()
            .iter()
            .filter(|a| a.at_ms >= healed_at && a.answered_by() == Some(host))
            .map(|a| a.at_ms)
            .min();
        if let Some(at) = first {
            break at;
        }
        if Instant::now() > deadline {
            return Err(Error::Deadline(format!(
                "no connection reached {host} within {ROUND_DEADLINE:?} after it healed"
            )));
        }
        tokio::time::sleep(POLL).await;
    };
    samples.slice_recover.push(seconds(healed_at, slice_at));
    samples.rules_recover.push(seconds(healed_at, rules_at));
    samples
        .datapath_recover
        .push(seconds(healed_at, first_answer));
    Ok(())
}

fn cell(s: &Option<Summary>) -> String {
    s.as_ref().map_or_else(
        || "–".to_string(),
        |s| format!("{:.3} / {:.3} / {:.3}", s.p50, s.p99, s.max),
    )
}

/// Start and end markers of the data-path section in BENCHMARKS.md.
/// Where the data-path figures go in BENCHMARKS.md.
pub const SECTION: Section = Section {
    begin: "<!-- datapath:begin -->",
    end: "<!-- datapath:end -->",
};

/// The data-path section of BENCHMARKS.md ([`SECTION`]).
pub fn markdown(r: &DataPathResult, generated_at: &str) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "{}", SECTION.begin);
    let _ = writeln!(md, "## Data path: through kube-proxy\n");
    let _ = writeln!(
        md,
        "Profile `{}` (`kube-endpoints-bench --profile {}`, run {generated_at}, {:.0} s; raw figures: `bench/{}.json`): {}. Each of {} rounds breaks one host with an nftables *refuse* rule in its namespace, then heals it. Times in seconds from the break (or the heal), p50 / p99 / max; with {} rounds p99 is the worst round.\n",
        r.profile, r.profile, r.duration_seconds, r.profile, r.description, r.rounds, r.rounds
    );
    let _ = writeln!(
        md,
        "| | EndpointSlice (controller) | kube-proxy rule set | data path (client) |\n| --- | --- | --- | --- |"
    );
    // Rows: (what, the slice, rule set and client columns).
    for (what, [slice, rules, client]) in [
        (
            "detection: host fails → out of …",
            [&r.slice_detect, &r.rules_detect, &r.datapath_detect],
        ),
        (
            "recovery: host heals → back in …",
            [&r.slice_recover, &r.rules_recover, &r.datapath_recover],
        ),
    ] {
        let (slice, rules, client) = (cell(slice), cell(rules), cell(client));
        let _ = writeln!(md, "| {what} | {slice} | {rules} | {client} |");
    }
    md.push('\n');
    let _ = writeln!(
        md,
        "- **EndpointSlice**: until the host is not ready (ready again) in its slice, polled every {} ms; floor failureThreshold × period = {} s (successThreshold × period = {} s on recovery).",
        POLL.as_millis(),
        r.probe.failure_threshold * r.probe.period_seconds,
        r.probe.success_threshold * r.probe.period_seconds
    );
    let _ = writeln!(
        md,
        "- **kube-proxy rule set**: until kube-proxy's nftables rules in the node no longer (again) send the Service's connections to the host, polled every {} ms. The gap to the slice column is kube-proxy's watch delivery plus its sync, rate-limited by its `minSyncPeriod` (flag `--iptables-min-sync-period`, which governs nftables mode too; default 1 s).",
        POLL.as_millis()
    );
    let _ = writeln!(
        md,
        "- **data path (client)**: detection: until the start of the last new connection (one every {} ms from inside the node, HTTP to the ClusterIP) that still reached the broken host (it was refused); recovery: until the first connection the healed host answered. What a client sees, to within a few client intervals.",
        r.client_interval_ms
    );
    let _ = writeln!(
        md,
        "- kube-proxy after the slice changed (rule set − EndpointSlice, per round of detection): {}.",
        cell(&r.proxy_after_slice)
    );
    let counts = r.failed_connections.as_ref().map_or_else(
        || "–".to_string(),
        |s| format!("{:.0} / {:.0} / {:.0}", s.p50, s.p99, s.max),
    );
    let _ = writeln!(
        md,
        "- Refused connections per round while the broken host was still in rotation: {counts}; connections that reached a broken host more than {STRAY_SLACK_MS} ms after the rule set had dropped it: **{}**.",
        r.strays
    );
    if let Some(e) = &r.error {
        let _ = writeln!(md, "- **Failed**: {e}");
    }
    let _ = writeln!(md, "\n{}", SECTION.end);
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stray_is_any_attempt_that_reached_the_broken_host() {
        let host: IpAddr = "198.18.0.6".parse().expect("ip");
        let other: IpAddr = "198.18.0.10".parse().expect("ip");
        let answered = |ip| Attempt {
            seq: 0,
            at_ms: 0,
            outcome: Outcome::Answered(ip),
        };
        assert!(reached(&answered(host), host));
        assert!(!reached(&answered(other), host));
        let refused = Attempt {
            seq: 0,
            at_ms: 0,
            outcome: Outcome::Failed {
                kind: "refused".into(),
                message: String::new(),
            },
        };
        assert!(reached(&refused, host));
    }
}
