//! A Kubernetes node for the data path: a network namespace running the real
//! kube-proxy (built from the Kubernetes Go module by
//! `scripts/build-control-plane.sh`), with a Node object, its own identity
//! (a ServiceAccount bound to `system:node-proxier`, as kubeadm sets it up)
//! and plain client processes ([`Node::ask`], [`Node::client_loop`]: the
//! `ke-client` binary) that connect to Services' ClusterIPs from inside the
//! node, as a Pod on the host network would.
//!
//! Topology (nothing is routed through the root namespace, which never
//! forwards):
//!
//! ```text
//!   root namespace ── veth ── node namespace ── veth ── test host A
//!   (kube-apiserver,          (kube-proxy,     ── veth ── test host B
//!    forwarder on the          ke-client)
//!    node link's root side)
//! ```
//!
//! - The node is a [`TestHost`] (its address block, link to the root
//!   namespace and clean-up are the test hosts'). kube-proxy reaches
//!   kube-apiserver (which listens on 127.0.0.1 of the root namespace)
//!   through a TCP forwarder on the root side of that link.
//! - [`Node::connect`] wires a test host to the node with a veth pair of its
//!   own (unnumbered: IPv4 routes on the link, IPv6 through fixed link-local
//!   next hops), so ClusterIP traffic that kube-proxy rewrites to a host's
//!   address goes straight to that host, and the host answers the node
//!   directly.
//! - The Service ranges are routed to a dead end inside the node (a veth
//!   whose peer is down; the kernel here has no `dummy` device): a local
//!   connection needs a route before kube-proxy's output hook rewrites its
//!   destination, and a packet that kube-proxy does not rewrite goes nowhere.
//!
//! kube-proxy runs with `--hostname-override` (the Node's name),
//! `--cluster-cidr`, metrics and healthz on the node's loopback and
//! `--conntrack-max-per-core=0` (`nf_conntrack_max` is global, not per
//! namespace: leave it alone). Its log is `kube-proxy.log` in the node's
//! scratch directory.
//!
//! ## Why the first routed connection used to take ~30 s
//!
//! kube-proxy 1.34 reads its node's IPs from the Node object before it
//! builds its proxier (`NewNodeManager` in `pkg/proxy/node.go`, called from
//! `cmd/kube-proxy/app/server.go`): while the Node does not exist or has no
//! `status.addresses`, it polls every second for up to 30 s, then logs
//! "Timed out waiting for node to be assigned IPs", assumes a loopback node
//! IP and only then starts its Service/EndpointSlice informers and syncs
//! rules. Measured here: with a Node without addresses the log shows exactly
//! 30.0 s between "Caches are synced" for the node informer and that
//! timeout; with the addresses in place the first sync completes ~0.5 s after
//! start. [`Node::start`] therefore creates the Node with its `InternalIP`s
//! *before* kube-proxy starts, and waits until kube-proxy's first sync is in
//! its rule set (see `Node::wait_synced`) instead of sleeping. Per Service, the
//! signal that kube-proxy has applied a change is the rule set itself
//! ([`Node::programmed_endpoints`]); kube-proxy's `minSyncPeriod` (flag
//! `--iptables-min-sync-period`, which also governs nftables mode; 1 s by
//! default) bounds how often it applies changes after that.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Node as NodeObject, NodeAddress, NodeStatus, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::controlplane::{ControlPlane, kubeconfig_yaml};
use crate::netns::TestHost;
use crate::{Error, Result, die_with_parent, io_err, log_tail, run_with_stdin};

/// The ServiceAccount kube-proxy runs as (in `kube-system`), bound to the
/// ClusterRole `system:node-proxier` by [`PROXIER_BINDING`].
pub const PROXIER_SERVICE_ACCOUNT: &str = "kube-proxy";
pub const PROXIER_BINDING: &str = "kube-endpoints-testkit:node-proxier";
/// kube-proxy's metrics and healthz, on the node's loopback.
pub const METRICS_PORT: u16 = 10249;
pub const HEALTHZ_PORT: u16 = 10256;
/// How long kube-proxy may take to report healthy (its first sync).
pub const KUBE_PROXY_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// The dead-end device the Service ranges are routed to inside the node.
const SERVICE_DEVICE: &str = "ke-svc";
/// Link-local next hops of the node ↔ host links (each link is its own
/// segment, so every link uses the same two).
const NODE_LINK_LOCAL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
const HOST_LINK_LOCAL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2);
const LOG_TAIL_LINES: usize = 30;

static NODES: AtomicU32 = AtomicU32::new(0);

/// kube-proxy's `--proxy-mode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProxyMode {
    #[default]
    Nftables,
    Iptables,
}

impl ProxyMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyMode::Nftables => "nftables",
            ProxyMode::Iptables => "iptables",
        }
    }
}

/// Tunables of [`Node::start`].
#[derive(Clone, Debug, Default)]
pub struct NodeOptions {
    pub mode: ProxyMode,
    /// Extra kube-proxy flags, appended last.
    pub extra_args: Vec<String>,
}

/// kube-proxy's `--cluster-cidr`: the Pod ranges, here ranges of the test
/// prefixes that no test host uses. There are no Pods; kube-proxy
/// masquerades traffic to a ClusterIP that comes from outside them (such as
/// the node's own).
const CLUSTER_CIDR: &str = "198.19.254.0/24,fd00:6b65:fffe::/64";

/// Which client [`Node::ask`] runs (see `ke-client`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    /// The backend writes its address.
    Tcp,
    /// `GET /whoami`.
    Http,
    /// Datagram `whoami`.
    Udp,
    /// gRPC health check; the `x-backend-address` header.
    Grpc,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Http => "http",
            Proto::Udp => "udp",
            Proto::Grpc => "grpc",
        }
    }
}

/// One attempt of `ke-client`: a new connection, and who answered it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    pub seq: u64,
    /// Wall-clock start of the attempt, milliseconds since the Unix epoch.
    pub at_ms: u64,
    pub outcome: Outcome,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The backend reached at this address answered.
    Answered(IpAddr),
    /// `kind` is `refused` (ECONNREFUSED), `rejected` (EPERM: a rule of
    /// the node's own firewall rejected the packet on its way out),
    /// `timeout`, `reset`, `unreachable` or `other`.
    Failed { kind: String, message: String },
}

impl Attempt {
    pub fn answered_by(&self) -> Option<IpAddr> {
        match self.outcome {
            Outcome::Answered(ip) => Some(ip),
            Outcome::Failed { .. } => None,
        }
    }

    /// Parse a line of `ke-client`'s output.
    pub fn parse(line: &str) -> Option<Attempt> {
        let mut words = line.splitn(5, ' ');
        let seq = words.next()?.parse().ok()?;
        let at_ms = words.next()?.parse().ok()?;
        let outcome = match words.next()? {
            "ok" => Outcome::Answered(words.next()?.trim().parse().ok()?),
            "error" => Outcome::Failed {
                kind: words.next()?.to_string(),
                message: words.next().unwrap_or_default().trim().to_string(),
            },
            _ => return None,
        };
        Some(Attempt {
            seq,
            at_ms,
            outcome,
        })
    }
}

/// Path of the `ke-client` binary: `$KE_CLIENT`, or next to the running
/// executable (as [`crate::netns::backend_binary`] finds `ke-testbackend`).
pub fn client_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("KE_CLIENT") {
        return PathBuf::from(p);
    }
    crate::netns::backend_binary().with_file_name("ke-client")
}

/// A network namespace playing a node, with kube-proxy running in it. Drop
/// kills kube-proxy and the clients, stops the forwarder and removes the
/// namespace with every link to the test hosts.
pub struct Node {
    name: String,
    mode: ProxyMode,
    host: TestHost,
    /// Interface names inside the test hosts are `ke-node<n>`.
    index: u32,
    links: AtomicU32,
    kube_proxy: Option<Child>,
    log: PathBuf,
    forwarder: tokio::task::JoinHandle<()>,
}

impl Node {
    /// Create the node's namespace, Node object and identity, start
    /// kube-proxy and wait until its first sync is in place (see
    /// [`Node::wait_synced`]).
    pub async fn start(cp: &ControlPlane, options: NodeOptions) -> Result<Node> {
        let host = TestHost::create().await?;
        let name = host.name().to_string();
        let index = NODES.fetch_add(1, Ordering::Relaxed);
        let client = cp.client().await?;

        // The Service ranges are routed to a dead end inside the node (see
        // the module docs).
        setup_node_network(&host, cp.service_cluster_ip_range()).await?;
        let token = proxier_token(&client).await?;
        create_node_object(&client, &name, host.ipv4(), host.ipv6()).await?;
        // kube-apiserver listens on loopback only: forward from the root
        // side of the node's link.
        let api: SocketAddr = cp
            .server_url()
            .trim_start_matches("https://")
            .parse()
            .map_err(|e| Error::Io {
                what: format!("parsing the apiserver URL {}", cp.server_url()),
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
            })?;
        let listener = tokio::net::TcpListener::bind((host.root_ipv4(), 0))
            .await
            .map_err(io_err(format!("binding {}:0", host.root_ipv4())))?;
        let forwarded = listener
            .local_addr()
            .map_err(io_err("reading the forwarder's port"))?;
        let kubeconfig = host.dir().join("kube-proxy.kubeconfig");
        std::fs::write(
            &kubeconfig,
            kubeconfig_yaml(&format!("https://{forwarded}"), &token),
        )
        .map_err(io_err(format!("writing {}", kubeconfig.display())))?;

        // From here on, Drop stops the forwarder and kube-proxy.
        let mut node = Node {
            log: host.dir().join("kube-proxy.log"),
            name,
            mode: options.mode,
            host,
            index,
            links: AtomicU32::new(0),
            kube_proxy: None,
            forwarder: tokio::spawn(forward(listener, api)),
        };
        let bin = crate::controlplane::resolve_bin_dir()
            .await?
            .join("kube-proxy");
        if !bin.is_file() {
            return Err(Error::MissingBinary {
                binary: "kube-proxy".into(),
                dir: bin.parent().map(Path::to_path_buf).unwrap_or_default(),
            });
        }
        let mut args = vec![
            format!("--kubeconfig={}", kubeconfig.display()),
            format!("--hostname-override={}", node.name),
            format!("--proxy-mode={}", options.mode.as_str()),
            format!("--cluster-cidr={CLUSTER_CIDR}"),
            format!("--metrics-bind-address=127.0.0.1:{METRICS_PORT}"),
            format!("--healthz-bind-address=127.0.0.1:{HEALTHZ_PORT}"),
            "--conntrack-max-per-core=0".into(),
            "--v=2".into(),
        ];
        args.extend(options.extra_args.iter().cloned());
        node.spawn_kube_proxy(&bin, &args)?;
        node.wait_synced().await?;
        Ok(node)
    }

    fn spawn_kube_proxy(&mut self, bin: &Path, args: &[String]) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(io_err(format!("opening {}", self.log.display())))?;
        let log_err = log
            .try_clone()
            .map_err(io_err(format!("duplicating {}", self.log.display())))?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name])
            .arg(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .kill_on_drop(true);
        die_with_parent(&mut cmd);
        self.kube_proxy = Some(cmd.spawn().map_err(|source| Error::Spawn {
            command: format!("ip netns exec {} {}", self.name, bin.display()),
            source,
        })?);
        Ok(())
    }

    /// Poll until kube-proxy's `/healthz` (inside the node) answers 200 and
    /// its first sync of both families' rules is in place; fail early when
    /// it exits. `/healthz` alone is not enough: kube-proxy reports healthy
    /// while it starts up, before its first sync (`ProxyHealthServer.Health`
    /// in `pkg/proxy/healthcheck`), so a rule set read right after it could
    /// still be missing.
    async fn wait_synced(&mut self) -> Result<()> {
        let start = Instant::now();
        loop {
            if let Some(c) = self.kube_proxy.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                self.kube_proxy = None;
                return Err(Error::Exited {
                    process: "kube-proxy".into(),
                    status: status.to_string(),
                    log: self.log.clone(),
                    tail: log_tail(&self.log, LOG_TAIL_LINES),
                });
            }
            let target = SocketAddr::from((Ipv4Addr::LOCALHOST, HEALTHZ_PORT));
            let last = match self.ask_path(Proto::Http, target, "/healthz").await {
                Ok(attempt) => match attempt.outcome {
                    Outcome::Answered(_) if self.synced(false).await && self.synced(true).await => {
                        return Ok(());
                    }
                    Outcome::Answered(_) => "healthy, but its first sync is not in place".into(),
                    Outcome::Failed { kind, message } => format!("{kind}: {message}"),
                },
                Err(e) => e.to_string(),
            };
            if start.elapsed() > KUBE_PROXY_READY_TIMEOUT {
                return Err(Error::NotReady {
                    process: "kube-proxy".into(),
                    after: KUBE_PROXY_READY_TIMEOUT,
                    last,
                    log: self.log.clone(),
                    tail: log_tail(&self.log, LOG_TAIL_LINES),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether kube-proxy's first sync of one family's rules is in place:
    /// in nftables mode its table exists (it is created in the same
    /// transaction as the rules); in iptables mode the Service chain ends
    /// with its jump to the node ports (the last rule of a full sync).
    async fn synced(&self, ipv6: bool) -> bool {
        match (self.mode, self.ruleset(ipv6).await) {
            (_, Err(_)) => false,
            (ProxyMode::Nftables, Ok(_)) => true,
            (ProxyMode::Iptables, Ok(rules)) => {
                rules.contains("this must be the last rule in this chain")
            }
        }
    }

    /// `GET path` on a loopback port of the node, through `ke-client`,
    /// which prints a 200 answer's first line as the "address" (so any 200
    /// counts as answered).
    async fn ask_path(&self, proto: Proto, target: SocketAddr, path: &str) -> Result<Attempt> {
        let out = self
            .client_command(proto, target, 1, Duration::ZERO)
            .args(["--path", path])
            .output()
            .await
            .map_err(io_err("running ke-client"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text.lines().next().unwrap_or_default();
        // A 200 body that is no address still means "answered".
        Ok(Attempt::parse(line).unwrap_or(Attempt {
            seq: 0,
            at_ms: 0,
            outcome: if line.contains(" ok ") {
                Outcome::Answered(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
            } else {
                Outcome::Failed {
                    kind: "other".into(),
                    message: format!("{line} {}", String::from_utf8_lossy(&out.stderr)),
                }
            },
        }))
    }

    /// The Node object's name (also the namespace's name).
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn mode(&self) -> ProxyMode {
        self.mode
    }

    /// The node's own addresses (the source of its clients' connections).
    pub fn ipv4(&self) -> Ipv4Addr {
        self.host.ipv4()
    }

    pub fn ipv6(&self) -> Ipv6Addr {
        self.host.ipv6()
    }

    /// kube-proxy's log.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last lines of kube-proxy's log (for failure messages).
    pub fn log_tail(&self) -> String {
        log_tail(&self.log, LOG_TAIL_LINES)
    }

    /// Wire `host` to this node with a veth pair of its own (see the module
    /// docs). The link goes away with either namespace.
    pub async fn connect(&self, host: &TestHost) -> Result<()> {
        let k = self.links.fetch_add(1, Ordering::Relaxed);
        let node_if = format!("h{k}");
        let host_if = format!("ke-node{}", self.index);
        let (node_ns, host_ns) = (self.name.clone(), host.name().to_string());
        let root = format!(
            "link add {node_if} netns {node_ns} type veth peer name {host_if} netns {host_ns}\n"
        );
        let node_side = format!(
            "addr add {NODE_LINK_LOCAL}/64 dev {node_if} nodad\n\
             link set dev {node_if} up\n\
             route add {h4}/32 dev {node_if} src {n4}\n\
             route add {h6}/128 via {HOST_LINK_LOCAL} dev {node_if}\n",
            h4 = host.ipv4(),
            h6 = host.ipv6(),
            n4 = self.ipv4(),
        );
        let host_side = format!(
            "addr add {HOST_LINK_LOCAL}/64 dev {host_if} nodad\n\
             link set dev {host_if} up\n\
             route add {n4}/32 dev {host_if}\n\
             route add {n6}/128 via {NODE_LINK_LOCAL} dev {host_if}\n",
            n4 = self.ipv4(),
            n6 = self.ipv6(),
        );
        tokio::task::spawn_blocking(move || {
            run_with_stdin("ip", &["-batch", "-"], Some(&root))?;
            run_with_stdin("ip", &["-n", &node_ns, "-batch", "-"], Some(&node_side))?;
            run_with_stdin("ip", &["-n", &host_ns, "-batch", "-"], Some(&host_side))
        })
        .await??;
        Ok(())
    }

    fn client_command(
        &self,
        proto: Proto,
        target: SocketAddr,
        count: u64,
        interval: Duration,
    ) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name])
            .arg(client_binary())
            .arg(proto.as_str())
            .arg(target.to_string())
            .args(["--count", &count.to_string()])
            .args(["--interval-ms", &interval.as_millis().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        die_with_parent(&mut cmd);
        cmd
    }

    /// Run `ke-client` inside the node: `count` attempts, one after the
    /// other, each a new connection to `target`.
    pub async fn ask(&self, proto: Proto, target: SocketAddr, count: u64) -> Result<Vec<Attempt>> {
        self.ask_with(proto, target, count, &[]).await
    }

    /// [`ask`](Self::ask) over UDP, every attempt's socket bound to local
    /// port `source_port`. An ephemeral port may be one an earlier flow to
    /// `target` used, and the datagram then follows that flow's conntrack
    /// entry (to the endpoint it was sent to then) instead of kube-proxy's
    /// current rules; kube-proxy keeps those entries when a Service has no
    /// endpoints left. A fixed port outside the ephemeral range
    /// (`net.ipv4.ip_local_port_range`) is one no such flow can have used.
    pub async fn ask_udp_from(
        &self,
        target: SocketAddr,
        count: u64,
        source_port: u16,
    ) -> Result<Vec<Attempt>> {
        let port = source_port.to_string();
        self.ask_with(Proto::Udp, target, count, &["--udp-source-port", &port])
            .await
    }

    async fn ask_with(
        &self,
        proto: Proto,
        target: SocketAddr,
        count: u64,
        extra: &[&str],
    ) -> Result<Vec<Attempt>> {
        let client = client_binary();
        if !client.is_file() {
            return Err(Error::MissingBinary {
                binary: "ke-client".into(),
                dir: client.parent().map(Path::to_path_buf).unwrap_or_default(),
            });
        }
        let out = self
            .client_command(proto, target, count, Duration::ZERO)
            .args(extra)
            .output()
            .await
            .map_err(io_err("running ke-client"))?;
        let attempts: Vec<Attempt> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(Attempt::parse)
            .collect();
        if !out.status.success() || attempts.len() as u64 != count {
            return Err(Error::Command {
                command: format!(
                    "ke-client {} {target} --count {count} {}",
                    proto.as_str(),
                    extra.join(" ")
                ),
                status: out.status,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(attempts)
    }

    /// Start `ke-client` inside the node repeating attempts every
    /// `interval` until [`ClientLoop::stop`].
    pub fn client_loop(
        &self,
        proto: Proto,
        target: SocketAddr,
        interval: Duration,
    ) -> Result<ClientLoop> {
        let mut child = self
            .client_command(proto, target, 0, interval)
            .spawn()
            .map_err(io_err("starting ke-client"))?;
        let attempts = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take();
        let sink = attempts.clone();
        let reader = tokio::spawn(async move {
            let Some(stdout) = stdout else { return };
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(a) = Attempt::parse(&line) {
                    sink.lock().unwrap_or_else(PoisonError::into_inner).push(a);
                }
            }
        });
        Ok(ClientLoop {
            child,
            attempts,
            reader,
        })
    }

    /// Run a command inside the node; its stdout.
    async fn exec(&self, program: &str, args: &[&str]) -> Result<String> {
        let mut full = vec!["netns", "exec", &self.name, program];
        full.extend_from_slice(args);
        let full: Vec<String> = full.into_iter().map(String::from).collect();
        tokio::task::spawn_blocking(move || {
            let refs: Vec<&str> = full.iter().map(String::as_str).collect();
            crate::run("ip", &refs)
        })
        .await?
    }

    /// kube-proxy's rules for one family, as `nft list table` (nftables
    /// mode) or `iptables-save` (iptables mode) prints them.
    pub async fn ruleset(&self, ipv6: bool) -> Result<String> {
        match (self.mode, ipv6) {
            (ProxyMode::Nftables, false) => {
                self.exec("nft", &["list", "table", "ip", "kube-proxy"])
                    .await
            }
            (ProxyMode::Nftables, true) => {
                self.exec("nft", &["list", "table", "ip6", "kube-proxy"])
                    .await
            }
            (ProxyMode::Iptables, false) => self.exec("iptables-save", &[]).await,
            (ProxyMode::Iptables, true) => self.exec("ip6tables-save", &[]).await,
        }
    }

    /// The endpoints kube-proxy currently sends new connections for
    /// `namespace/service` port `port_name` (`protocol`: tcp, udp, sctp) to,
    /// read from its rule set: an empty set when it rejects them (no ready
    /// endpoint), `None` when it has no rules for that Service port (not
    /// synced yet, or headless). The signal that kube-proxy has applied an
    /// EndpointSlice change.
    pub async fn programmed_endpoints(
        &self,
        namespace: &str,
        service: &str,
        port_name: &str,
        protocol: &str,
        ipv6: bool,
    ) -> Result<Option<BTreeSet<SocketAddr>>> {
        let rules = self.ruleset(ipv6).await?;
        let port = ServicePort {
            namespace,
            service,
            port_name,
            protocol,
        };
        Ok(match self.mode {
            ProxyMode::Nftables => nft_service_endpoints(&rules, &port),
            ProxyMode::Iptables => iptables_service_endpoints(&rules, &port),
        })
    }

    /// kube-proxy's `/metrics` (Prometheus text), read with curl inside the
    /// node.
    pub async fn metrics(&self) -> Result<String> {
        self.exec(
            "curl",
            &[
                "-sf",
                "--max-time",
                "5",
                &format!("http://127.0.0.1:{METRICS_PORT}/metrics"),
            ],
        )
        .await
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.forwarder.abort();
        if let Some(mut c) = self.kube_proxy.take() {
            let _ = c.start_kill();
        }
        // The TestHost's own Drop kills what runs in the namespace and
        // deletes it, and with it every link to the test hosts.
    }
}

/// A running `ke-client` loop (see [`Node::client_loop`]).
pub struct ClientLoop {
    child: Child,
    attempts: Arc<Mutex<Vec<Attempt>>>,
    reader: tokio::task::JoinHandle<()>,
}

impl ClientLoop {
    /// The attempts so far.
    pub fn attempts(&self) -> Vec<Attempt> {
        self.attempts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// How many attempts so far.
    pub fn len(&self) -> usize {
        self.attempts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stop the client; every attempt it made.
    pub async fn stop(mut self) -> Vec<Attempt> {
        let _ = self.child.kill().await;
        let _ = (&mut self.reader).await;
        self.attempts()
    }
}

/// The Service ranges' routes inside the node, to a veth whose peer stays
/// down: routes through it are valid, and what is sent there is dropped.
async fn setup_node_network(host: &TestHost, service_cidrs: &str) -> Result<()> {
    let mut script = format!(
        "link add {SERVICE_DEVICE} type veth peer name {SERVICE_DEVICE}-end\n\
         link set dev {SERVICE_DEVICE} up\n"
    );
    for cidr in service_cidrs.split(',').map(str::trim) {
        let net: IpNet = cidr.parse().map_err(|e| Error::Io {
            what: format!("parsing the Service range {cidr:?}"),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
        })?;
        script.push_str(&format!("route add {net} dev {SERVICE_DEVICE}\n"));
    }
    let name = host.name().to_string();
    tokio::task::spawn_blocking(move || {
        run_with_stdin("ip", &["-n", &name, "-batch", "-"], Some(&script))
    })
    .await??;
    Ok(())
}

/// Accept on `listener` and pipe every connection to `to`.
async fn forward(listener: tokio::net::TcpListener, to: SocketAddr) {
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            if let Ok(mut outbound) = tokio::net::TcpStream::connect(to).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

fn api_error(method: &'static str, path: String) -> impl FnOnce(kube::Error) -> Error {
    move |e| Error::Request {
        method,
        path,
        source: Box::new(e),
    }
}

fn already_exists(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// Create `object` (at `path`, for errors) unless it already exists.
async fn create_once<K>(api: &Api<K>, object: &K, path: &str) -> Result<()>
where
    K: kube::Resource
        + Clone
        + k8s_openapi::serde::Serialize
        + k8s_openapi::serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    match api.create(&PostParams::default(), object).await {
        Ok(_) => Ok(()),
        Err(e) if already_exists(&e) => Ok(()),
        Err(e) => Err(api_error("POST", path.to_string())(e)),
    }
}

/// A token of `kube-system/kube-proxy`, bound to `system:node-proxier`
/// (both made on first use, as kubeadm does).
async fn proxier_token(client: &kube::Client) -> Result<String> {
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "kube-system");
    let account = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(PROXIER_SERVICE_ACCOUNT.into()),
            ..ObjectMeta::default()
        },
        ..ServiceAccount::default()
    };
    let path = format!("/api/v1/namespaces/kube-system/serviceaccounts/{PROXIER_SERVICE_ACCOUNT}");
    create_once(&accounts, &account, &path).await?;
    let bindings: Api<ClusterRoleBinding> = Api::all(client.clone());
    let binding = ClusterRoleBinding {
        metadata: ObjectMeta {
            name: Some(PROXIER_BINDING.into()),
            ..ObjectMeta::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: "system:node-proxier".into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: PROXIER_SERVICE_ACCOUNT.into(),
            namespace: Some("kube-system".into()),
            ..Subject::default()
        }]),
    };
    let binding_path =
        format!("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{PROXIER_BINDING}");
    create_once(&bindings, &binding, &binding_path).await?;
    let request = TokenRequest {
        spec: TokenRequestSpec {
            expiration_seconds: Some(24 * 3600),
            ..TokenRequestSpec::default()
        },
        ..TokenRequest::default()
    };
    let token = accounts
        .create_token_request(PROXIER_SERVICE_ACCOUNT, &PostParams::default(), &request)
        .await
        .map_err(api_error("POST", format!("{path}/token")))?;
    Ok(token.status.map(|s| s.token).unwrap_or_default())
}

/// The Node object, with its InternalIPs in `status.addresses` (see the
/// module docs: without them kube-proxy waits 30 s before its first sync).
async fn create_node_object(
    client: &kube::Client,
    name: &str,
    ipv4: Ipv4Addr,
    ipv6: Ipv6Addr,
) -> Result<()> {
    let nodes: Api<NodeObject> = Api::all(client.clone());
    let node = NodeObject {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(
                [("kubernetes.io/hostname".to_string(), name.to_string())]
                    .into_iter()
                    .collect(),
            ),
            ..ObjectMeta::default()
        },
        ..NodeObject::default()
    };
    let path = format!("/api/v1/nodes/{name}");
    create_once(&nodes, &node, &path).await?;
    let address = |ip: IpAddr| NodeAddress {
        type_: "InternalIP".into(),
        address: ip.to_string(),
    };
    let status = NodeObject {
        status: Some(NodeStatus {
            addresses: Some(vec![address(ipv4.into()), address(ipv6.into())]),
            ..NodeStatus::default()
        }),
        ..NodeObject::default()
    };
    nodes
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(&serde_json_value(&status)?),
        )
        .await
        .map_err(api_error("PATCH", format!("{path}/status")))?;
    Ok(())
}

/// Only the status of a Node as a merge patch (no empty metadata or spec).
fn serde_json_value(node: &NodeObject) -> Result<k8s_openapi::serde_json::Value> {
    let mut value = k8s_openapi::serde_json::to_value(node).map_err(|e| Error::Io {
        what: "serialising a Node status".into(),
        source: std::io::Error::other(e),
    })?;
    if let Some(map) = value.as_object_mut() {
        map.retain(|k, _| k == "status");
    }
    Ok(value)
}

/// One port of a Service, as kube-proxy's rules name it.
#[derive(Clone, Copy, Debug)]
pub struct ServicePort<'a> {
    pub namespace: &'a str,
    pub service: &'a str,
    /// The Service port's name.
    pub port_name: &'a str,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: &'a str,
}

impl ServicePort<'_> {
    /// `<namespace>/<service>:<port name>`: how both modes' rules comment it.
    fn comment(&self) -> String {
        format!("{}/{}:{}", self.namespace, self.service, self.port_name)
    }
}

/// Endpoints of `namespace/service:port_name` in `nft list table` output of
/// kube-proxy's nftables mode: the chain
/// `service-<hash>-<ns>/<svc>/<proto>/<port>` dispatches to chains
/// `endpoint-<hash>-<ns>/<svc>/<proto>/<port>__<ip>/<port>` (an IPv6
/// address with its colons written as dots). A Service port without
/// endpoints is an element `… comment "<ns>/<svc>:<port>" : goto
/// reject-chain` of the map `no-endpoint-services` instead: an empty set.
/// `None`: no rules for it.
pub fn nft_service_endpoints(rules: &str, port: &ServicePort) -> Option<BTreeSet<SocketAddr>> {
    let suffix = format!(
        "-{}/{}/{}/{}",
        port.namespace, port.service, port.protocol, port.port_name
    );
    let mut lines = rules.lines().map(str::trim);
    let found = lines.any(|line| {
        line.strip_prefix("chain service-")
            .and_then(|c| c.strip_suffix(" {"))
            .is_some_and(|chain| chain.ends_with(&suffix))
    });
    if !found {
        let rejected = format!("comment \"{}\" : goto reject-chain", port.comment());
        let proto = format!(". {} .", port.protocol);
        let rejects = rules
            .lines()
            .any(|l| l.contains(&rejected) && l.contains(&proto));
        return rejects.then(BTreeSet::new);
    }
    let marker = format!("{suffix}__");
    let mut endpoints = BTreeSet::new();
    for line in lines.take_while(|l| *l != "}") {
        for part in line.split(&marker).skip(1) {
            let name: String = part
                .chars()
                .take_while(|c| c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '/'))
                .collect();
            if let Some((ip, port)) = name.rsplit_once('/')
                && let Ok(port) = port.parse::<u16>()
                && let Some(ip) = ip
                    .parse::<IpAddr>()
                    .ok()
                    .or_else(|| ip.replace('.', ":").parse().ok())
            {
                endpoints.insert(SocketAddr::new(ip, port));
            }
        }
    }
    Some(endpoints)
}

/// Endpoints of `namespace/service:port_name` in `iptables-save` output of
/// kube-proxy's iptables mode: the DNAT targets of the Service's endpoint
/// chains (`-A KUBE-SEP-…`, comment `"<ns>/<svc>:<port>"`). A Service port
/// without endpoints has a REJECT rule (`… has no endpoints`) in the filter
/// table instead: an empty set. `None`: no rules for it.
pub fn iptables_service_endpoints(rules: &str, port: &ServicePort) -> Option<BTreeSet<SocketAddr>> {
    let comment = format!("--comment \"{}", port.comment());
    let proto = format!(" -p {} ", port.protocol);
    let ours = |l: &&str| l.contains(&comment) && l.contains(&proto);
    let has_service = rules
        .lines()
        .filter(ours)
        .any(|l| l.starts_with("-A KUBE-SERVICES ") && l.contains("cluster IP"));
    if !has_service {
        let rejects = rules
            .lines()
            .filter(ours)
            .any(|l| l.contains("has no endpoints") && l.contains("-j REJECT"));
        return rejects.then(BTreeSet::new);
    }
    let endpoints = rules
        .lines()
        .filter(ours)
        .filter(|l| l.starts_with("-A KUBE-SEP-"))
        .filter_map(|l| l.split("--to-destination ").nth(1))
        .filter_map(|d| d.split_whitespace().next())
        .filter_map(|d| d.parse::<SocketAddr>().ok())
        .collect();
    Some(endpoints)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_client_lines() {
        assert_eq!(
            Attempt::parse("3 1700000000123 ok 198.18.0.6"),
            Some(Attempt {
                seq: 3,
                at_ms: 1_700_000_000_123,
                outcome: Outcome::Answered("198.18.0.6".parse().expect("ip")),
            })
        );
        assert_eq!(
            Attempt::parse(
                "4 1700000000200 error refused connect: Connection refused (os error 111)"
            ),
            Some(Attempt {
                seq: 4,
                at_ms: 1_700_000_000_200,
                outcome: Outcome::Failed {
                    kind: "refused".into(),
                    message: "connect: Connection refused (os error 111)".into(),
                },
            })
        );
        assert_eq!(Attempt::parse("garbage"), None);
    }

    const NFT: &str = r#"table ip6 kube-proxy {
	map no-endpoint-services {
		type ipv6_addr . inet_proto . inet_service : verdict
		elements = { fd00:6b65:ffff::9 . udp . 53 comment "ns/db:dns" : goto reject-chain,
			     fd00:6b65:ffff::9 . tcp . 5432 comment "ns/db:tcp" : goto reject-chain }
	}
	chain endpoint-AIQGUI34-ns/web6/tcp/http__fd00.6b65.3289..2/80 {
		meta l4proto tcp dnat to [fd00:6b65:3289::2]:80
	}
	chain service-4CP73BAY-ns/web6/tcp/http {
		ip6 daddr fd00:6b65:ffff::5cc2 ip6 saddr != fd00:6b65:fffe::/64 jump mark-for-masquerade
		numgen random mod 2 vmap { 0 : goto endpoint-AIQGUI34-ns/web6/tcp/http__fd00.6b65.3289..2/80, 1 : goto endpoint-BYRDVZZQ-ns/web6/tcp/http__198.18.0.6/8080 }
	}
	chain service-XXXXXXXX-ns/web6/tcp/http-alt {
		numgen random mod 1 vmap { 0 : goto endpoint-CCCCCCCC-ns/web6/tcp/http-alt__fd00.6b65.3289..2/81 }
	}
}
"#;

    const IPTABLES: &str = r#"*filter
-A KUBE-SERVICES -d 10.0.0.9/32 -p tcp -m comment --comment "ns/db:tcp has no endpoints" -m tcp --dport 5432 -j REJECT --reject-with icmp-port-unreachable
COMMIT
*nat
-A KUBE-SEP-AAA -s 198.18.0.6/32 -m comment --comment "ns/web:http" -j KUBE-MARK-MASQ
-A KUBE-SEP-AAA -p tcp -m comment --comment "ns/web:http" -m tcp -j DNAT --to-destination 198.18.0.6:80
-A KUBE-SEP-BBB -p tcp -m comment --comment "ns/web:http" -m tcp -j DNAT --to-destination 198.18.0.10:80
-A KUBE-SERVICES -d 10.0.0.5/32 -p tcp -m comment --comment "ns/web:http cluster IP" -m tcp --dport 8080 -j KUBE-SVC-XYZ
COMMIT
"#;

    /// The parsed endpoints of a service port of a rule set.
    type Reader = fn(&str, &ServicePort) -> Option<BTreeSet<SocketAddr>>;

    fn addrs(list: &[&str]) -> Option<BTreeSet<SocketAddr>> {
        Some(list.iter().map(|a| a.parse().expect("addr")).collect())
    }

    #[test]
    fn reads_endpoints_and_rejections_of_both_modes() {
        // (mode, reader, rule set, service with two endpoints, them)
        let modes: [(&str, Reader, &str, &str, &[&str]); 2] = [
            (
                "nftables",
                nft_service_endpoints,
                NFT,
                "web6",
                &["[fd00:6b65:3289::2]:80", "198.18.0.6:8080"],
            ),
            (
                "iptables",
                iptables_service_endpoints,
                IPTABLES,
                "web",
                &["198.18.0.6:80", "198.18.0.10:80"],
            ),
        ];
        for (mode, reader, rules, web, endpoints) in modes {
            let read = |service, port_name, protocol| {
                let port = ServicePort {
                    namespace: "ns",
                    service,
                    port_name,
                    protocol,
                };
                reader(rules, &port)
            };
            assert_eq!(read(web, "http", "tcp"), addrs(endpoints), "{mode}");
            // A port with no endpoints is rejected: known, and empty.
            assert_eq!(read("db", "tcp", "tcp"), addrs(&[]), "{mode}");
            // Another protocol, or a Service whose name is a prefix of a
            // known one: unknown.
            assert_eq!(read("db", "tcp", "udp"), None, "{mode}");
            let prefix = &web[..web.len() - 1];
            assert_eq!(read(prefix, "http", "tcp"), None, "{mode}");
        }
    }
}
