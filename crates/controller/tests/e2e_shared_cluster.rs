//! Safe on a shared cluster, end to end against the real control plane:
//!
//! - an idle-connection flood on the unauthenticated metrics port cannot
//!   exhaust the controller's file descriptors: probing and reconciling go
//!   on, and `/metrics` answers again once the idle connections are cut;
//! - leader election is fenced: when the leader's apiserver traffic is
//!   blackholed (an nftables rule on its uid) it steps down before its Lease
//!   can expire, and the apiserver's own audit log shows that the old
//!   leader's last write precedes the new leader's first write — also after
//!   the partition heals and anything the old leader had queued could land;
//!   the old leader stands by again without restarting;
//! - standbys racing for a released Lease never lead at once;
//! - a served group whose CRD is missing does not stop the others, and
//!   starts once its CRD is installed;
//! - creating an object writes each of its objects once (Service,
//!   EndpointSlice, Endpoints, status), counted in the audit log: the first
//!   listing waits for the hosts' first verdicts instead of listing them
//!   not ready first.
//!
//! The control plane runs with an audit log of every write (who, which user
//! agent, when), which is how the second test tells the replicas apart: each
//! replica's `User-Agent` names its identity.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use kube_endpoints_api::{GROUP, Phase, SEALOS_GROUP};
use kube_endpoints_testkit::controlplane::{ControlPlane, ControlPlaneOptions};
use kube_endpoints_testkit::http::sum_metric;
use kube_endpoints_testkit::netns::{Backend, BackendPorts, TestHost};
use serde_json::Value;
use support::{
    Controller, events, eventually, install_crd, must_apply, namespace, slice_readiness, wait_phase,
};

/// Both tests load the machine (5,000 connections; timing of a failover):
/// they run one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Audited {
    cp: ControlPlane,
    audit_log: PathBuf,
}

/// One control plane for this binary, with kube-apiserver's audit log on:
/// every write (create, update, patch, delete) at Metadata level.
fn audited() -> &'static Audited {
    static CP: OnceLock<Audited> = OnceLock::new();
    CP.get_or_init(|| {
        // Audit logs of earlier runs whose process is gone.
        for entry in std::fs::read_dir(std::env::temp_dir()).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix("ke-audit-")
                && !std::path::Path::new(&format!("/proc/{pid}")).exists()
            {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        let dir = std::env::temp_dir().join(format!("ke-audit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("audit dir");
        let policy = dir.join("policy.yaml");
        std::fs::write(
            &policy,
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n  verbs: [create, update, patch, delete, deletecollection]\n- level: None\n",
        )
        .expect("audit policy");
        let audit_log = dir.join("audit.log");
        let cp = support::start_control_plane(ControlPlaneOptions {
            extra_apiserver_args: vec![
                format!("--audit-policy-file={}", policy.display()),
                format!("--audit-log-path={}", audit_log.display()),
                "--audit-log-format=json".into(),
                "--audit-log-mode=blocking".into(),
            ],
            ..ControlPlaneOptions::default()
        });
        Audited { cp, audit_log }
    })
}

async fn admin() -> kube::Client {
    audited().cp.client().await.expect("client")
}

fn api_port() -> u16 {
    audited()
        .cp
        .server_url()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("apiserver port")
}

/// How a replica is started beyond the usual `kube-endpoints run`.
#[derive(Default)]
struct Spawn<'a> {
    /// Run as this user, so that nftables can match its packets.
    uid: Option<u32>,
    /// `prlimit --nofile=SOFT:HARD`.
    nofile: Option<(u64, u64)>,
    /// `POD_NAME`: the first part of the leader-election identity.
    pod_name: Option<&'a str>,
    extra: &'a [&'a str],
}

/// A `kube-endpoints run` process against the audited control plane,
/// watching `ns`; returns once it is ready.
async fn start_replica(ns: &str, how: Spawn<'_>) -> Controller {
    let mut launch = support::controller_launch(ns, how.extra, audited().cp.kubeconfig_path());
    if let Some(uid) = how.uid {
        launch.command[0] = accessible_binary().display().to_string();
        launch.uid = Some(uid);
    }
    if let Some((soft, hard)) = how.nofile {
        let prlimit = [
            "prlimit".into(),
            format!("--nofile={soft}:{hard}"),
            "--".into(),
        ];
        launch.command.splice(0..0, prlimit);
    }
    if let Some(name) = how.pod_name {
        launch.env.push(("POD_NAME".into(), name.into()));
    }
    Controller::start(launch).await.expect("the replica starts")
}

/// A gauge or counter of `replica`, or `None` when its /metrics does not
/// answer (so that "not answering" never reads as a zero).
async fn metric(replica: &Controller, name: &str) -> Option<f64> {
    let text = replica.get("/metrics").await?;
    Some(sum_metric(&text, name))
}

async fn leads(replica: &Controller) -> bool {
    metric(replica, "kube_endpoints_leader").await == Some(1.0)
}

/// The controller binary at a path every user can reach: the checkout may
/// live under a directory other users cannot enter.
fn accessible_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join("ke-e2e-bin");
        std::fs::create_dir_all(&dir).expect("binary dir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        // Copies of test processes that are gone.
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let pid = name.strip_prefix("kube-endpoints-").unwrap_or_default();
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() || pid.is_empty() {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        let bin = dir.join(format!("kube-endpoints-{}", std::process::id()));
        let _ = std::fs::remove_file(&bin);
        std::fs::copy(env!("CARGO_BIN_EXE_kube-endpoints"), &bin).expect("binary copied");
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        bin
    })
    .clone()
}

/// `Max open files` soft and hard limits of a process.
fn open_files_limit(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("open files line");
    let numbers: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (numbers[0], numbers[1])
}

fn tcp_backend() -> BackendPorts {
    BackendPorts {
        tcp: vec![443],
        http: vec![],
        udp: vec![],
        grpc: vec![],
        redis: vec![],
    }
}

/// The start of a test on the audited control plane: the CRD, a fresh
/// namespace `ns`, and `n` test hosts each with a TCP backend on 443.
async fn fixture(ns: &str, n: usize) -> (kube::Client, String, Vec<TestHost>, Vec<Backend>) {
    let client = admin().await;
    install_crd(&client, GROUP).await;
    let ns = namespace(&client, ns).await;
    let mut hosts = Vec::new();
    let mut backends = Vec::new();
    for _ in 0..n {
        let (host, backend) = support::host_with(tcp_backend()).await;
        hosts.push(host);
        backends.push(backend);
    }
    (client, ns, hosts, backends)
}

fn cep_yaml(name: &str, hosts: &[String]) -> String {
    cep_yaml_in(GROUP, name, hosts)
}

fn cep_yaml_in(group: &str, name: &str, hosts: &[String]) -> String {
    format!(
        "apiVersion: {group}/v1beta1\nkind: ClusterEndpoint\nmetadata: {{name: {name}}}\nspec:\n  periodSeconds: 1\n  ports:\n  - {{name: tls, port: 443, targetPort: 443, hosts: [{}], tcpSocket: {{enable: true}}, failureThreshold: 1}}\n",
        hosts.join(", ")
    )
}

/// IPv4 TCP sockets whose fields (the columns of /proc/net/tcp:
/// local address, remote address, state, tx_queue:rx_queue, ...) match.
fn tcp_sockets(matching: impl Fn(&[&str]) -> bool) -> usize {
    let text = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    text.lines()
        .skip(1)
        .map(|l| l.split_whitespace().skip(1).collect::<Vec<&str>>())
        .filter(|f| f.len() > 3 && matching(f))
        .count()
}

/// Established TCP connections whose local end is `port` on 127.0.0.1
/// (the server's side of the connections to it).
fn established_server_sockets(port: u16) -> usize {
    let local = format!("0100007F:{port:04X}");
    // state 01 = ESTABLISHED
    tcp_sockets(|f| f[0] == local && f[2] == "01")
}

const FLOOD: usize = 5_000;

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_connection_flood_on_the_metrics_port_does_not_stop_probing() {
    let _serial = SERIAL.lock().await;
    // Backends: [steady, doomed, bystander].
    let (client, ns, hosts, mut backends) = fixture("e2e-flood", 3).await;
    let ip = |i: usize| hosts[i].ipv4().to_string();

    // Started with a soft limit far below the hard one, and a hard limit
    // far below the flood: the controller raises the soft limit itself, and
    // without its connection cap the flood would take every descriptor.
    let controller = start_replica(
        &ns,
        Spawn {
            nofile: Some((256, 1024)),
            ..Spawn::default()
        },
    )
    .await;
    assert_eq!(
        open_files_limit(controller.pid()),
        (1024, 1024),
        "the soft open-files limit is raised to the hard limit"
    );
    must_apply(&client, &ns, GROUP, &cep_yaml("victim", &[ip(0), ip(1)])).await;
    must_apply(&client, &ns, GROUP, &cep_yaml("bystander", &[ip(2)])).await;
    wait_phase(&client, &ns, GROUP, "victim", Phase::Healthy).await;
    wait_phase(&client, &ns, GROUP, "bystander", Phase::Healthy).await;
    let probes_before = metric(&controller, "kube_endpoints_probes_total")
        .await
        .expect("metrics answer before the flood");

    // The flood: FLOOD connections that never send a byte, all held open
    // (the test process itself needs that many descriptors).
    let limit = rlimit::increase_nofile_limit(u64::MAX).expect("open files limit");
    assert!(
        limit > 2 * FLOOD as u64,
        "the test needs an open-files limit above {}, got {limit}",
        2 * FLOOD
    );
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], controller.metrics_port()));
    let mut held = Vec::with_capacity(FLOOD);
    let mut connecting = tokio::task::JoinSet::new();
    for _ in 0..FLOOD {
        connecting.spawn(tokio::time::timeout(
            Duration::from_secs(5),
            tokio::net::TcpStream::connect(addr),
        ));
        if connecting.len() >= 256
            && let Some(Ok(Ok(Ok(s)))) = connecting.join_next().await
        {
            held.push(s);
        }
    }
    while let Some(done) = connecting.join_next().await {
        if let Ok(Ok(Ok(s))) = done {
            held.push(s);
        }
    }
    eprintln!("flood: {} of {FLOOD} connections opened", held.len());
    // More idle connections than the controller may have descriptors.
    assert!(held.len() > 1024, "only {} connections opened", held.len());

    // During the flood a backend dies: the controller must still probe,
    // reconcile and write.
    backends[1].stop().await.expect("stop");
    wait_phase(&client, &ns, GROUP, "victim", Phase::UnHealthy).await;
    eventually("the stopped host to be out of rotation", || async {
        let r = slice_readiness(&client, &ns, "victim").await;
        let down = r.iter().find(|((_, _, a), _)| *a == ip(1)).map(|(_, v)| *v);
        let up = r.iter().find(|((_, _, a), _)| *a == ip(0)).map(|(_, v)| *v);
        (down == Some(false) && up == Some(true)).then_some(())
    })
    .await;

    // Every idle connection is cut by the server (at once beyond the cap,
    // the rest after the header-read timeout) while the test still holds its
    // ends open: no server-side connection stays established.
    eventually("the server to close every idle connection", || async {
        (established_server_sockets(controller.metrics_port()) == 0).then_some(())
    })
    .await;
    let answered = eventually("/metrics to answer again", || async {
        controller.get("/metrics").await
    })
    .await;
    assert!(sum_metric(&answered, "kube_endpoints_probes_total") > probes_before);
    drop(held);

    // Nothing else noticed: no host but the stopped one ever left rotation,
    // and the controller never ran out of descriptors.
    wait_phase(&client, &ns, GROUP, "bystander", Phase::Healthy).await;
    let unhealthy: Vec<_> = events(&client, &ns, "victim")
        .await
        .into_iter()
        .chain(events(&client, &ns, "bystander").await)
        .filter(|(reason, _)| reason == "HostUnhealthy")
        .collect();
    assert_eq!(unhealthy.len(), 1, "{unhealthy:?}");
    assert!(unhealthy[0].1.contains(&ip(1)), "{unhealthy:?}");
    let log = controller.log();
    assert!(
        !log.contains("Too many open files") && !log.contains("os error 24"),
        "the controller ran out of file descriptors:\n{log}"
    );
}

// ------------------------------------------------------------------ fencing

const LEASE_SECONDS: &str = "9";
const UID_A: u32 = 64_001;
const UID_B: u32 = 64_002;

/// An nftables table that drops every packet a user sends to the apiserver
/// port; removed on drop.
struct Blackhole {
    table: String,
}

fn nft(args: &[&str]) {
    kube_endpoints_testkit::run("nft", args).unwrap_or_else(|e| panic!("{e}"));
}

impl Blackhole {
    fn user(uid: u32, port: u16) -> Blackhole {
        let table = format!("ke_fence_{}", std::process::id());
        nft(&["add", "table", "inet", &table]);
        nft(&[
            "add",
            "chain",
            "inet",
            &table,
            "out",
            "{ type filter hook output priority 0 ; policy accept ; }",
        ]);
        nft(&[
            "add",
            "rule",
            "inet",
            &table,
            "out",
            "meta",
            "skuid",
            &uid.to_string(),
            "tcp",
            "dport",
            &port.to_string(),
            "drop",
        ]);
        Blackhole { table }
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        let _ = kube_endpoints_testkit::run("nft", &["delete", "table", "inet", &self.table]);
    }
}

/// One successful write in the audit log.
#[derive(Debug, Clone)]
struct Write {
    received: DateTime<Utc>,
    completed: DateTime<Utc>,
    user_agent: String,
    what: String,
}

fn audit_writes() -> Vec<Write> {
    let text = std::fs::read_to_string(&audited().audit_log).unwrap_or_default();
    let time = |v: &Value| {
        v.as_str()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
    };
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["stage"] == "ResponseComplete")
        .filter(|e| {
            e["responseStatus"]["code"]
                .as_i64()
                .is_some_and(|c| c < 400)
        })
        .filter_map(|e| {
            Some(Write {
                received: time(&e["requestReceivedTimestamp"])?,
                completed: time(&e["stageTimestamp"])?,
                user_agent: e["userAgent"].as_str().unwrap_or_default().to_string(),
                what: format!(
                    "{} {}",
                    e["verb"].as_str().unwrap_or_default(),
                    e["requestURI"].as_str().unwrap_or_default()
                ),
            })
        })
        .collect()
}

/// Sockets to the apiserver port with data the peer has not acknowledged
/// (`tx_queue` in /proc/net/tcp).
fn unacknowledged_sockets(port: u16) -> usize {
    let remote = format!(":{port:04X}");
    tcp_sockets(|f| {
        f[1].ends_with(&remote)
            && f[3]
                .split(':')
                .next()
                .is_some_and(|tx| u64::from_str_radix(tx, 16).unwrap_or(0) > 0)
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partitioned_leader_stops_writing_before_the_standby_starts() {
    let _serial = SERIAL.lock().await;
    // Backends: [steady, flapping].
    let (client, ns, hosts, mut backends) = fixture("e2e-fence", 2).await;
    let ip = |i: usize| hosts[i].ipv4().to_string();
    let election = [
        "--leader-election=true",
        "--lease-name",
        "ke-fence",
        "--lease-namespace",
        &ns,
        "--lease-duration-seconds",
        LEASE_SECONDS,
    ];
    // Each replica as its own user (for the nftables rule) and pod name.
    let replica = |uid: u32, pod_name: &'static str| Spawn {
        uid: Some(uid),
        pod_name: Some(pod_name),
        extra: &election,
        ..Spawn::default()
    };
    let a = start_replica(&ns, replica(UID_A, "replica-a")).await;
    eventually("replica A to lead", || async {
        leads(&a).await.then_some(())
    })
    .await;
    let b = start_replica(&ns, replica(UID_B, "replica-b")).await;
    must_apply(&client, &ns, GROUP, &cep_yaml("db", &[ip(0), ip(1)])).await;
    wait_phase(&client, &ns, GROUP, "db", Phase::Healthy).await;
    assert!(!leads(&b).await, "only one replica leads");

    // Partition A from the apiserver, then give it something to write.
    let partition = Blackhole::user(UID_A, api_port());
    let partitioned = Instant::now();
    backends[1].stop().await.expect("stop");
    eventually("replica A to step down", || async {
        (metric(&a, "kube_endpoints_leader").await == Some(0.0)).then_some(())
    })
    .await;
    let stepped_down = partitioned.elapsed();
    eventually("replica B to take over", || async {
        leads(&b).await.then_some(())
    })
    .await;
    eprintln!(
        "A stepped down {stepped_down:?} after the partition; B led {:?} after it",
        partitioned.elapsed()
    );
    // B does the work A could not.
    wait_phase(&client, &ns, GROUP, "db", Phase::UnHealthy).await;
    // Heal the partition: whatever A still had queued could land now.
    drop(partition);
    eventually("A to read the Lease again, as a standby", || async {
        a.log()
            .contains("the Lease is held by another replica")
            .then_some(())
    })
    .await;
    eventually("every socket to the apiserver to be drained", || async {
        (unacknowledged_sockets(api_port()) == 0).then_some(())
    })
    .await;
    backends[1].start().await.expect("start");
    wait_phase(&client, &ns, GROUP, "db", Phase::Healthy).await;
    assert!(leads(&b).await && !leads(&a).await);
    // Losing the Lease sent A back to standby in-process: no exit, no
    // CrashLoopBackOff, and it is ready to take over again.
    a.check_running().expect("A exited after losing the Lease");
    assert_eq!(a.get("/readyz").await.as_deref(), Some("ok\n"));
    assert_eq!(a.get("/healthz").await.as_deref(), Some("ok\n"));

    // The apiserver's view: every successful write, by replica.
    let writes = audit_writes();
    let by = |who: &str| -> Vec<Write> {
        writes
            .iter()
            .filter(|w| w.user_agent.contains(&format!("({who}_")))
            .cloned()
            .collect()
    };
    let (a_writes, b_writes) = (by("replica-a"), by("replica-b"));
    assert!(
        a_writes
            .iter()
            .any(|w| w.what.contains("/clusterendpoints/")),
        "A wrote the object while it led: {a_writes:#?}"
    );
    assert!(
        b_writes
            .iter()
            .any(|w| w.what.contains("/clusterendpoints/")),
        "B wrote the object after the takeover: {b_writes:#?}"
    );
    let a_last = a_writes
        .iter()
        .max_by_key(|w| w.completed)
        .expect("A wrote");
    let b_first = b_writes.iter().min_by_key(|w| w.received).expect("B wrote");
    eprintln!(
        "A's last write {} ({}), B's first write {} ({}): {:?} apart",
        a_last.completed,
        a_last.what,
        b_first.received,
        b_first.what,
        (b_first.received - a_last.completed).to_std().ok()
    );
    assert!(
        a_last.completed < b_first.received,
        "two replicas wrote at once: A's last write {a_last:?} ended after B's first {b_first:?}"
    );

    // A stepped down because its renewal hung, and the fence stopped
    // what it was writing.
    let a_log = a.log();
    assert!(
        a_log.contains("stepped down so that two replicas never write at once"),
        "A did not step down for the failed renewal:\n{a_log}"
    );
    assert!(
        a_log.contains("not the leader"),
        "A never had a write fenced off:\n{a_log}"
    );

    // The Lease was written under a field manager per replica; our objects
    // under the one shared manager.
    let lease: k8s_openapi::api::coordination::v1::Lease =
        kube::Api::namespaced(client.clone(), &ns)
            .get("ke-fence")
            .await
            .expect("lease");
    let managers: BTreeMap<String, ()> = lease
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| Some((m.manager?, ())))
        .collect();
    assert!(
        managers
            .keys()
            .any(|m| m.starts_with("kube-endpoints-lease-replica-a_"))
            && managers
                .keys()
                .any(|m| m.starts_with("kube-endpoints-lease-replica-b_")),
        "{managers:?}"
    );
    // One field manager on the slices (a slice is created with a POST, so
    // that an existing one is never overwritten, then applied: the same
    // manager holds an Update and an Apply entry).
    for slice in support::slices(&client, &ns, "db").await {
        let managers: std::collections::BTreeSet<String> = slice
            .metadata
            .managed_fields
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| m.manager)
            .collect();
        assert_eq!(managers, ["kube-endpoints".to_string()].into());
    }
}

// -------------------------------------------------------------- write cost

/// The controller's successful writes to objects in `ns`, from the audit
/// log: `resource[/subresource] verb` → count. The controller's
/// `User-Agent` is `kube-endpoints/<version>`; the test's own client is not.
fn controller_writes_in(ns: &str) -> BTreeMap<String, usize> {
    let text = std::fs::read_to_string(&audited().audit_log).unwrap_or_default();
    let mut writes = BTreeMap::new();
    for e in text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
    {
        let ok = e["responseStatus"]["code"]
            .as_i64()
            .is_some_and(|c| c < 400);
        let ours = e["userAgent"]
            .as_str()
            .is_some_and(|ua| ua.starts_with("kube-endpoints/"));
        let object = &e["objectRef"];
        if e["stage"] != "ResponseComplete" || !ok || !ours || object["namespace"] != ns {
            continue;
        }
        let resource = object["resource"].as_str().unwrap_or_default();
        let what = match object["subresource"].as_str() {
            Some(sub) => format!("{resource}/{sub}"),
            None => resource.to_string(),
        };
        let verb = e["verb"].as_str().unwrap_or_default();
        *writes.entry(format!("{what} {verb}")).or_default() += 1;
    }
    writes
}

#[tokio::test(flavor = "multi_thread")]
async fn creating_an_object_writes_each_of_its_objects_once() {
    let _serial = SERIAL.lock().await;
    // Backends: [up, up, down]: the first verdicts are two successes and
    // one failure (refused at once).
    let (client, ns, hosts, mut backends) = fixture("e2e-writes", 3).await;
    backends[2].stop().await.expect("stop");
    let ip = |i: usize| hosts[i].ipv4().to_string();
    let controller = start_replica(&ns, Spawn::default()).await;
    must_apply(
        &client,
        &ns,
        GROUP,
        &cep_yaml("fresh", &[ip(0), ip(1), ip(2)]),
    )
    .await;
    wait_phase(&client, &ns, GROUP, "fresh", Phase::UnHealthy).await;
    let readiness = eventually("the hosts' verdicts in the slice", || async {
        let r = slice_readiness(&client, &ns, "fresh").await;
        (r.len() == 3).then_some(r)
    })
    .await;
    let by_host: BTreeMap<String, bool> =
        readiness.into_iter().map(|((_, _, a), r)| (a, r)).collect();
    assert_eq!(
        by_host,
        BTreeMap::from([(ip(0), true), (ip(1), true), (ip(2), false)])
    );
    // Three more rounds of probes (period 1 s): any write the controller
    // was still going to make for the creation is made by then, including
    // those of reconciles its own writes' watch events trigger.
    let probes = metric(&controller, "kube_endpoints_probes_total")
        .await
        .expect("metrics answer");
    eventually("three more rounds of probes", || async {
        let now = metric(&controller, "kube_endpoints_probes_total").await?;
        (now >= probes + 9.0).then_some(())
    })
    .await;

    let mut writes = controller_writes_in(&ns);
    // The failing host's HostUnhealthy Event is not part of the objects.
    let events = writes.remove("events create");
    assert_eq!(
        writes,
        BTreeMap::from([
            ("services patch".to_string(), 1),
            ("endpointslices create".to_string(), 1),
            ("endpoints patch".to_string(), 1),
            ("clusterendpoints/status patch".to_string(), 1),
        ]),
        "each object written once, with the first verdicts (Events: {events:?})"
    );
    let cep = support::get_cep(&client, &ns, GROUP, "fresh")
        .await
        .expect("the object");
    let status = cep.status.expect("status");
    assert_eq!(status.ready.as_deref(), Some("2/3"));
    assert_eq!(status.ports[0].unhealthy.len(), 1, "{status:?}");
    assert_eq!(status.ports[0].unhealthy[0].host, ip(2));
}

// ------------------------------------------------------------ served groups

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_crd_stops_only_its_group_until_it_is_installed() {
    let _serial = SERIAL.lock().await;
    let (client, ns, host, _backend) = fixture("e2e-groups", 1).await;
    let hosts = [host[0].ipv4().to_string()];
    // sealos.io is served but its CRD is not installed (yet).
    let mut controller = start_replica(
        &ns,
        Spawn {
            extra: &["--group", GROUP, "--group", SEALOS_GROUP],
            ..Spawn::default()
        },
    )
    .await;
    must_apply(&client, &ns, GROUP, &cep_yaml("db", &hosts)).await;
    wait_phase(&client, &ns, GROUP, "db", Phase::Healthy).await;
    eventually("the missing CRD to be reported", || async {
        controller.log().contains("CrdMissing").then_some(())
    })
    .await;
    controller
        .check_alive()
        .expect("one missing CRD stopped the process");

    install_crd(&client, SEALOS_GROUP).await;
    must_apply(
        &client,
        &ns,
        SEALOS_GROUP,
        &cep_yaml_in(SEALOS_GROUP, "legacy", &hosts),
    )
    .await;
    wait_phase(&client, &ns, SEALOS_GROUP, "legacy", Phase::Healthy).await;
    controller
        .check_alive()
        .expect("the process exited once the CRD was installed");
    wait_phase(&client, &ns, GROUP, "db", Phase::Healthy).await;
}

// ------------------------------------------------------- racing standbys

/// When the leader releases the Lease, every standby races for it at once;
/// the conditional update lets exactly one win. Electors in one process, so
/// that one monotonic clock orders their periods of leadership.
#[tokio::test(flavor = "multi_thread")]
async fn standbys_racing_for_a_released_lease_never_lead_at_once() {
    use kube_endpoints::fence::Fence;
    use kube_endpoints::leader::{LeaseConfig, run_while_leading};
    use kube_endpoints::metrics::Metrics;
    use kube_endpoints::server::Liveness;
    use std::sync::{Arc, Mutex};
    use tokio_util::sync::CancellationToken;

    let _serial = SERIAL.lock().await;
    let client = admin().await;
    let ns = namespace(&client, "e2e-race").await;
    // (elector, started leading, stopped leading)
    type Period = (usize, Instant, Option<Instant>);
    let periods: Arc<Mutex<Vec<Period>>> = Arc::default();
    const ROUNDS: usize = 10;
    const RACERS: usize = 3;
    for round in 0..ROUNDS {
        let mut electors = Vec::new();
        for i in 0..RACERS {
            let shutdown = CancellationToken::new();
            let config = LeaseConfig {
                name: "ke-race".into(),
                namespace: ns.clone(),
                identity: format!("racer-{round}-{i}"),
                duration_seconds: 3,
            };
            let periods = periods.clone();
            let id = round * RACERS + i;
            let client = client.clone();
            let token = shutdown.clone();
            let task = tokio::spawn(async move {
                let metrics = Metrics::new(false);
                run_while_leading(
                    client,
                    config,
                    &metrics,
                    &Liveness::default(),
                    Fence::new(),
                    token,
                    move |stop: CancellationToken| {
                        let periods = periods.clone();
                        async move {
                            let at = {
                                let mut p = periods.lock().expect("lock");
                                p.push((id, Instant::now(), None));
                                p.len() - 1
                            };
                            stop.cancelled().await;
                            periods.lock().expect("lock")[at].2 = Some(Instant::now());
                        }
                    },
                )
                .await
            });
            electors.push((id, shutdown, task));
        }
        // Stop whoever leads; the others race for the released Lease.
        for _ in 0..RACERS {
            let leader = eventually("one elector to lead", || async {
                let p = periods.lock().expect("lock");
                let leading: Vec<usize> = p
                    .iter()
                    .filter(|(_, _, end)| end.is_none())
                    .map(|(id, _, _)| *id)
                    .collect();
                assert!(leading.len() <= 1, "electors {leading:?} led at once");
                leading.first().copied()
            })
            .await;
            let (_, shutdown, task) = electors
                .iter_mut()
                .find(|(id, _, _)| *id == leader)
                .expect("the leader is ours");
            shutdown.cancel();
            task.await.expect("elector ends");
        }
    }
    let mut periods = periods.lock().expect("lock").clone();
    assert_eq!(
        periods.len(),
        ROUNDS * RACERS,
        "every elector led exactly once: {periods:?}"
    );
    periods.sort_by_key(|(_, start, _)| *start);
    for pair in periods.windows(2) {
        let (first, second) = (&pair[0], &pair[1]);
        let first_end = first.2.expect("every period ended");
        assert!(
            first_end <= second.1,
            "electors {} and {} led at once",
            first.0,
            second.0
        );
    }
}
