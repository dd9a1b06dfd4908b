//! External test hosts: a network namespace per host, joined to the root
//! namespace by a veth pair, running `ke-testbackend`. Traffic to a host
//! never leaves the machine.
//!
//! Addressing (block `b` is unique across threads and processes: it is
//! chosen under a file lock after checking `ip -o addr`/`ip route`/`ip link`
//! of the root namespace):
//!
//! | what                      | root side               | in the namespace          |
//! |---------------------------|-------------------------|---------------------------|
//! | IPv4 link, a /30 of 198.18.0.0/16 | `198.18.x.y+1`  | `198.18.x.y+2` = [`TestHost::ipv4`] |
//! | IPv6 link `fd00:6b65:b::/64`      | `fd00:6b65:b::1`| `fd00:6b65:b::2` = [`TestHost::ipv6`] |
//! | IPv4 aliases              | route via the host      | blocks of 198.19.0.0/16 ([`TestHost::add_ipv4_aliases`]) |
//! | IPv6 aliases              | route via the host      | `fd00:6b65:b:1::/64` ([`TestHost::add_ipv6_aliases`]) |
//!
//! Names: namespace `ke-<pid>-<b>`, root-side link `ke-<b>` (its ifalias is
//! `ke-pid-<pid>`), peer `eth0` inside the namespace, scratch directory
//! `/dev/shm/ke-host-<pid>-<b>/` (control files and backend logs).
//! [`cleanup_stale`] removes what processes that no longer exist left behind.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::{Error, FileLock, Result, die_with_parent, io_err, log_tail, run, run_with_stdin};

/// Pool of the /30 links: 198.18.0.0/16, 16384 blocks.
const LINK_POOL: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 0);
const LINK_BLOCKS: u32 = 1 << 14;
/// Pool of the IPv4 alias blocks: 198.19.0.0/16.
const ALIAS_POOL: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 0);
const ALIAS_POOL_LEN: u8 = 16;
/// The root of the IPv6 prefixes: `fd00:6b65:<b>::/48` per host.
const V6_PREFIX: [u16; 2] = [0xfd00, 0x6b65];

const SCRATCH_PREFIX: &str = "ke-host-";
const PEER: &str = "eth0";
const BACKEND_READY_TIMEOUT: Duration = Duration::from_secs(20);
const ACK_TIMEOUT: Duration = Duration::from_secs(5);
const LOG_TAIL_LINES: usize = 20;

static NEXT: AtomicU32 = AtomicU32::new(0);
static CLEANED: std::sync::Once = std::sync::Once::new();

fn lock() -> Result<FileLock> {
    FileLock::acquire(&crate::lock_dir().join("ke-testkit-netns.lock"))
}

fn ns_name(pid: u32, block: u32) -> String {
    format!("ke-{pid}-{block}")
}

fn link_name(block: u32) -> String {
    format!("ke-{block}")
}

/// (root side, namespace side) IPv4 addresses of link block `b`.
fn link_v4(b: u32) -> (Ipv4Addr, Ipv4Addr) {
    let base = u32::from(LINK_POOL) + b * 4;
    (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2))
}

fn v6(b: u32, s3: u16, s6: u16, s7: u16) -> Ipv6Addr {
    // Blocks are < 2^14, so they fit the segment.
    let b = u16::try_from(b).unwrap_or(u16::MAX);
    Ipv6Addr::new(V6_PREFIX[0], V6_PREFIX[1], b, s3, 0, 0, s6, s7)
}

/// Prefixes in use in the root namespace: addresses (with their subnets)
/// and routes of every table, except default routes.
fn used_prefixes() -> Result<Vec<IpNet>> {
    let mut used = Vec::new();
    for line in run("ip", &["-o", "addr", "show"])?.lines() {
        let mut words = line.split_whitespace();
        while let Some(w) = words.next() {
            if (w == "inet" || w == "inet6")
                && let Some(net) = words.next().and_then(|a| IpNet::from_str(a).ok())
            {
                used.push(net.trunc());
                used.push(IpNet::from(net.addr()));
            }
        }
    }
    for family in ["-4", "-6"] {
        for line in run("ip", &[family, "-o", "route", "show", "table", "all"])?.lines() {
            let mut words = line.split_whitespace();
            let mut dst = words.next().unwrap_or_default();
            if matches!(
                dst,
                "local"
                    | "broadcast"
                    | "multicast"
                    | "unicast"
                    | "unreachable"
                    | "blackhole"
                    | "prohibit"
                    | "throw"
                    | "anycast"
            ) {
                dst = words.next().unwrap_or_default();
            }
            if let Ok(net) = IpNet::from_str(dst) {
                used.push(net);
            } else if let Ok(ip) = IpAddr::from_str(dst) {
                used.push(IpNet::from(ip));
            }
        }
    }
    Ok(used)
}

fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

fn link_names() -> Result<Vec<String>> {
    Ok(run("ip", &["-o", "link", "show"])?
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or_default().to_string())
        .collect())
}

/// Ports the backend serves, on every address of its host (IPv4 and IPv6).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackendPorts {
    /// Accept and close.
    pub tcp: Vec<u16>,
    /// `/healthz` (200, or 503 while unhealthy), `/status/{code}`,
    /// `/redirect-same`, `/redirect-off`, `/slow/{ms}`; `/primary`,
    /// `/replica` and `/role` follow [`Backend::set_role`].
    pub http: Vec<u16>,
    /// Echo (silent while unhealthy).
    pub udp: Vec<u16>,
    /// `grpc.health.v1` for services `""` and `"backend"`.
    pub grpc: Vec<u16>,
    /// A Redis-like responder to inline commands: `PING` gets `+PONG`
    /// (`-LOADING` while unhealthy), `ROLE` says `master` or `slave` as
    /// [`Backend::set_role`] sets it.
    pub redis: Vec<u16>,
}

impl BackendPorts {
    /// One TCP, HTTP, UDP and gRPC port each; no Redis.
    pub fn one_each(tcp: u16, http: u16, udp: u16, grpc: u16) -> Self {
        BackendPorts {
            tcp: vec![tcp],
            http: vec![http],
            udp: vec![udp],
            grpc: vec![grpc],
            redis: vec![],
        }
    }

    /// The target ports of `examples/wordpress.yaml`: TCP 443, HTTP 80,
    /// UDP 1234 and gRPC 8080.
    pub fn wordpress() -> Self {
        Self::one_each(443, 80, 1234, 8080)
    }
}

/// What a backend plays in a replicated service (see [`Backend::set_role`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Role {
    #[default]
    Primary,
    Replica,
}

/// A network namespace acting as one external host. Dropping it kills
/// whatever still runs inside, deletes the namespace and the veth pair (and
/// with it every route to the host's addresses).
pub struct TestHost {
    pid: u32,
    block: u32,
    name: String,
    root_link: String,
    root_v4: Ipv4Addr,
    ipv4: Ipv4Addr,
    root_v6: Ipv6Addr,
    ipv6: Ipv6Addr,
    dir: PathBuf,
    next_backend: AtomicU32,
    next_v6_alias: AtomicU32,
    blackholed: AtomicBool,
    /// Addresses with an nft fault rule on, per [`Fault`] (see
    /// [`TestHost::set_fault`]); `None` until the table exists.
    faults: std::sync::Mutex<Option<FaultSets>>,
}

/// What a per-address fault rule does to traffic for an address of a host
/// (see [`TestHost::set_fault`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fault {
    /// As if nothing listened there: TCP gets a reset (connection refused),
    /// UDP and everything else an ICMP port-unreachable.
    Refuse,
    /// A firewall that silently drops every packet to the address: TCP
    /// connects time out, UDP gets no answer and no ICMP.
    Drop,
}

impl Fault {
    fn set(self, v6: bool) -> &'static str {
        match (self, v6) {
            (Fault::Refuse, false) => "refuse4",
            (Fault::Refuse, true) => "refuse6",
            (Fault::Drop, false) => "drop4",
            (Fault::Drop, true) => "drop6",
        }
    }
}

#[derive(Default)]
struct FaultSets {
    refuse: std::collections::HashSet<IpAddr>,
    drop: std::collections::HashSet<IpAddr>,
}

/// The nft table a host's fault rules live in (inside its namespace).
const FAULT_TABLE: &str = "ke_fault";

/// The table that turns connection tracking on in a test host's namespace.
const CONNTRACK_TABLE: &str = "ke_conntrack";

fn fault_table_script() -> String {
    format!(
        "table inet {FAULT_TABLE} {{\n\
         \tset refuse4 {{ type ipv4_addr; }}\n\
         \tset refuse6 {{ type ipv6_addr; }}\n\
         \tset drop4 {{ type ipv4_addr; }}\n\
         \tset drop6 {{ type ipv6_addr; }}\n\
         \tchain input {{\n\
         \t\ttype filter hook input priority -10; policy accept;\n\
         \t\tip daddr @drop4 drop\n\
         \t\tip6 daddr @drop6 drop\n\
         \t\tip daddr @refuse4 meta l4proto tcp reject with tcp reset\n\
         \t\tip6 daddr @refuse6 meta l4proto tcp reject with tcp reset\n\
         \t\tip daddr @refuse4 reject\n\
         \t\tip6 daddr @refuse6 reject\n\
         \t}}\n\
         }}\n"
    )
}

/// nft commands that add (`on`) or delete the given addresses of one fault.
fn fault_element_script(fault: Fault, addrs: &[IpAddr], on: bool) -> String {
    let verb = if on { "add" } else { "delete" };
    let mut script = String::new();
    for v6 in [false, true] {
        let list: Vec<String> = addrs
            .iter()
            .filter(|a| a.is_ipv6() == v6)
            .map(ToString::to_string)
            .collect();
        // nft handles long element lists, but keep each command moderate.
        for chunk in list.chunks(1000) {
            script.push_str(&format!(
                "{verb} element inet {FAULT_TABLE} {} {{ {} }}\n",
                fault.set(v6),
                chunk.join(", ")
            ));
        }
    }
    script
}

impl TestHost {
    /// Create a namespace with its veth pair and addresses. The first call
    /// in a process also runs [`cleanup_stale`].
    pub async fn create() -> Result<TestHost> {
        tokio::task::spawn_blocking(Self::create_blocking).await?
    }

    fn create_blocking() -> Result<TestHost> {
        CLEANED.call_once(|| {
            if let Err(e) = cleanup_stale() {
                eprintln!("kube-endpoints-testkit: cleaning up stale test hosts failed: {e}");
            }
        });
        let pid = std::process::id();
        let lock = lock()?;
        let block = allocate_link_block(pid)?;
        let (root_v4, ipv4) = link_v4(block);
        let mut host = TestHost {
            pid,
            block,
            name: ns_name(pid, block),
            root_link: link_name(block),
            root_v4,
            ipv4,
            root_v6: v6(block, 0, 0, 1),
            ipv6: v6(block, 0, 0, 2),
            dir: crate::scratch_base().join(format!("{SCRATCH_PREFIX}{pid}-{block}")),
            next_backend: AtomicU32::new(0),
            next_v6_alias: AtomicU32::new(0),
            blackholed: AtomicBool::new(false),
            faults: std::sync::Mutex::new(None),
        };
        // From here on, Drop removes whatever was made; a failure keeps the
        // scratch directory.
        let result = host.setup(lock);
        if let Err(e) = result {
            crate::finish_scratch_dir(&host.dir, &format!("test host {}", host.name), true);
            host.dir = PathBuf::new();
            return Err(e);
        }
        Ok(host)
    }

    fn setup(&self, lock: FileLock) -> Result<()> {
        std::fs::create_dir_all(&self.dir)
            .map_err(io_err(format!("creating {}", self.dir.display())))?;
        run("ip", &["netns", "add", &self.name])?;
        // The root-side addresses make the block visible to other
        // processes' allocation, so they go in before the lock is released.
        let root = format!(
            "link add {link} type veth peer name {PEER} netns {ns}\n\
             link set dev {link} alias ke-pid-{pid}\n\
             addr add {v4}/30 dev {link}\n\
             addr add {v6}/64 dev {link} nodad\n",
            link = self.root_link,
            ns = self.name,
            pid = self.pid,
            v4 = self.root_v4,
            v6 = self.root_v6,
        );
        run_with_stdin("ip", &["-batch", "-"], Some(&root))?;
        drop(lock);
        let inside = format!(
            "link set dev lo up\n\
             addr add {v4}/30 dev {PEER}\n\
             addr add {v6}/64 dev {PEER} nodad\n\
             link set dev {PEER} up\n",
            v4 = self.ipv4,
            v6 = self.ipv6,
        );
        run_with_stdin("ip", &["-n", &self.name, "-batch", "-"], Some(&inside))?;
        let root_up = format!(
            "link set dev {link} up\n\
             route add {aliases} via {gw} dev {link}\n",
            link = self.root_link,
            aliases = self.v6_alias_net(),
            gw = self.ipv6,
        );
        run_with_stdin("ip", &["-batch", "-"], Some(&root_up))?;
        Ok(())
    }

    fn v6_alias_net(&self) -> Ipv6Net {
        Ipv6Net::new(v6(self.block, 1, 0, 0), 64).unwrap_or_default()
    }

    /// The host's IPv4 address (inside the namespace).
    pub fn ipv4(&self) -> Ipv4Addr {
        self.ipv4
    }

    /// The host's IPv6 address (inside the namespace).
    pub fn ipv6(&self) -> Ipv6Addr {
        self.ipv6
    }

    /// The root namespace's end of the link (the source of probes).
    pub fn root_ipv4(&self) -> Ipv4Addr {
        self.root_v4
    }

    pub fn root_ipv6(&self) -> Ipv6Addr {
        self.root_v6
    }

    /// The namespace's name (for `ip netns exec`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Scratch directory: control files and backend logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Add `n` more IPv4 addresses to this host, from a block of
    /// 198.19.0.0/16 routed to it (addresses ending in .0 or .255 are
    /// skipped). Backends listen on all of them.
    pub async fn add_ipv4_aliases(&self, n: usize) -> Result<Vec<Ipv4Addr>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let (name, link, gw) = (self.name.clone(), self.root_link.clone(), self.ipv4);
        tokio::task::spawn_blocking(move || {
            let lock = lock()?;
            let (block, addrs) = allocate_alias_block(n)?;
            run(
                "ip",
                &[
                    "route",
                    "add",
                    &block.to_string(),
                    "via",
                    &gw.to_string(),
                    "dev",
                    &link,
                ],
            )?;
            drop(lock);
            let script: String = addrs
                .iter()
                .map(|a| format!("addr add {a}/32 dev {PEER}\n"))
                .collect();
            run_with_stdin("ip", &["-n", &name, "-batch", "-"], Some(&script))?;
            Ok(addrs)
        })
        .await?
    }

    /// Add `n` more IPv6 addresses to this host, from `fd00:6b65:<b>:1::/64`
    /// (routed to it, so the root namespace needs one neighbour entry only).
    pub async fn add_ipv6_aliases(&self, n: usize) -> Result<Vec<Ipv6Addr>> {
        let count = u32::try_from(n).map_err(|_| Error::AddressesExhausted {
            pool: "the host's IPv6 alias /64",
            size: u32::MAX,
        })?;
        let first = self.next_v6_alias.fetch_add(count, Ordering::Relaxed);
        let base = u128::from(self.v6_alias_net().network());
        let addrs: Vec<Ipv6Addr> = (first..first + count)
            .map(|i| Ipv6Addr::from(base + 1 + u128::from(i)))
            .collect();
        let name = self.name.clone();
        let script: String = addrs
            .iter()
            .map(|a| format!("addr add {a}/128 dev {PEER} nodad\n"))
            .collect();
        tokio::task::spawn_blocking(move || {
            run_with_stdin("ip", &["-n", &name, "-batch", "-"], Some(&script))
        })
        .await??;
        Ok(addrs)
    }

    /// Start `ke-testbackend` (found by [`backend_binary`]) in this
    /// namespace and wait until all its listeners are bound.
    pub async fn start_backend(&self, ports: BackendPorts) -> Result<Backend> {
        self.start_backend_with(ports, backend_binary()).await
    }

    /// [`start_backend`](Self::start_backend) with an explicit binary (e.g.
    /// `env!("CARGO_BIN_EXE_ke-testbackend")` in this crate's own tests).
    pub async fn start_backend_with(
        &self,
        ports: BackendPorts,
        binary: impl Into<PathBuf>,
    ) -> Result<Backend> {
        self.start_backend_full(ports, binary.into(), Vec::new())
            .await
    }

    /// [`start_backend`](Self::start_backend) with more `ke-testbackend`
    /// arguments (e.g. `--https 443 --tls-cert .. --tls-key ..`).
    pub async fn start_backend_args(
        &self,
        ports: BackendPorts,
        args: Vec<String>,
    ) -> Result<Backend> {
        self.start_backend_full(ports, backend_binary(), args).await
    }

    async fn start_backend_full(
        &self,
        ports: BackendPorts,
        binary: PathBuf,
        args: Vec<String>,
    ) -> Result<Backend> {
        let n = self.next_backend.fetch_add(1, Ordering::Relaxed);
        let mut backend = Backend {
            netns: self.name.clone(),
            ports,
            args,
            binary,
            control_file: self.dir.join(format!("backend-{n}.control")),
            log: self.dir.join(format!("backend-{n}.log")),
            child: None,
            pid: None,
            seq: AtomicU64::new(0),
            healthy: AtomicBool::new(true),
            replica: AtomicBool::new(false),
        };
        backend.start().await?;
        Ok(backend)
    }

    /// Make the host silent, or audible again. While on, everything the
    /// host would send back to the root namespace is dropped inside the
    /// namespace (a `blackhole` route to the root side's addresses): a TCP
    /// connect times out instead of being accepted or refused, UDP gets no
    /// echo and no ICMP port-unreachable, HTTP and gRPC hang. ARP and
    /// neighbour discovery keep working, so the root side never sees
    /// "host unreachable" either: silence, as from a host behind a
    /// dropping firewall. Covers the host's aliases too.
    pub async fn blackhole(&self, on: bool) -> Result<()> {
        let was = self.blackholed.swap(on, Ordering::SeqCst);
        let verb = match (was, on) {
            (false, true) => "replace",
            (true, false) => "del",
            _ => return Ok(()),
        };
        let script = format!(
            "route {verb} blackhole {}/32\nroute {verb} blackhole {}/128\n",
            self.root_v4, self.root_v6
        );
        let name = self.name.clone();
        let result = tokio::task::spawn_blocking(move || {
            run_with_stdin("ip", &["-n", &name, "-batch", "-"], Some(&script))
        })
        .await?;
        if result.is_err() {
            self.blackholed.store(was, Ordering::SeqCst);
        }
        result.map(drop)
    }

    /// Turn connection tracking on in this host's namespace (a table whose
    /// only rule counts new connections: any `ct` expression makes the
    /// kernel track the namespace's traffic), so that
    /// [`conntrack_count`](Self::conntrack_count) sees the entries the
    /// traffic to this host would create on any stateful hop (a node with
    /// kube-proxy, a NAT gateway). Nothing is dropped or changed.
    pub async fn track_connections(&self) -> Result<()> {
        let script = format!(
            "table inet {CONNTRACK_TABLE} {{\n\
             \tchain input {{\n\
             \t\ttype filter hook input priority -20; policy accept;\n\
             \t\tct state new counter\n\
             \t}}\n\
             }}\n"
        );
        let name = self.name.clone();
        tokio::task::spawn_blocking(move || {
            run_with_stdin(
                "ip",
                &["netns", "exec", &name, "nft", "-f", "-"],
                Some(&script),
            )
        })
        .await?
        .map(drop)
    }

    /// Connection-tracking entries in this host's namespace now (0 until
    /// [`track_connections`](Self::track_connections)).
    pub async fn conntrack_count(&self) -> Result<u64> {
        let name = self.name.clone();
        let out = tokio::task::spawn_blocking(move || {
            run_with_stdin(
                "ip",
                &[
                    "netns",
                    "exec",
                    &name,
                    "cat",
                    "/proc/sys/net/netfilter/nf_conntrack_count",
                ],
                None,
            )
        })
        .await??;
        out.trim().parse().map_err(|_| {
            io_err(format!("reading nf_conntrack_count in {}", self.name))(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("not a count: {:?}", out.trim()),
            ))
        })
    }

    /// Turn a per-address fault rule on or off for some of this host's
    /// addresses (its own or its aliases), with nftables inside the
    /// namespace: [`Fault::Refuse`] makes those addresses refuse connections
    /// (TCP reset, ICMP port-unreachable), [`Fault::Drop`] makes them
    /// silently drop every packet. Other addresses of the host are not
    /// affected. Needs `nft` (Debian package `nftables`). Addresses already
    /// in the wanted state are skipped; `Drop` wins over `Refuse` while
    /// both are on.
    pub async fn set_fault(&self, fault: Fault, addrs: &[IpAddr], on: bool) -> Result<()> {
        let (script, changed) = {
            let mut guard = self
                .faults
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut script = String::new();
            if guard.is_none() {
                script.push_str(&fault_table_script());
            }
            let sets = guard.get_or_insert_with(FaultSets::default);
            let set = match fault {
                Fault::Refuse => &mut sets.refuse,
                Fault::Drop => &mut sets.drop,
            };
            let changed: Vec<IpAddr> = addrs
                .iter()
                .copied()
                .filter(|a| set.contains(a) != on)
                .collect();
            for a in &changed {
                if on {
                    set.insert(*a);
                } else {
                    set.remove(a);
                }
            }
            script.push_str(&fault_element_script(fault, &changed, on));
            (script, changed)
        };
        if script.is_empty() {
            return Ok(());
        }
        let name = self.name.clone();
        let result = tokio::task::spawn_blocking(move || {
            run_with_stdin(
                "ip",
                &["netns", "exec", &name, "nft", "-f", "-"],
                Some(&script),
            )
        })
        .await;
        let failed = !matches!(result, Ok(Ok(_)));
        if failed {
            // Forget what we believed, so a retry re-creates the table and
            // re-sends the elements.
            let mut guard = self
                .faults
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(sets) = guard.as_mut() {
                let set = match fault {
                    Fault::Refuse => &mut sets.refuse,
                    Fault::Drop => &mut sets.drop,
                };
                for a in &changed {
                    if on {
                        set.remove(a);
                    } else {
                        set.insert(*a);
                    }
                }
            }
        }
        result?.map(drop)
    }

    /// Whether [`blackhole`](Self::blackhole) is on.
    pub fn is_blackholed(&self) -> bool {
        self.blackholed.load(Ordering::SeqCst)
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        kill_namespace_processes(&self.name);
        // Deleting the root end deletes the pair and the routes through it
        // at once; the namespace itself goes when its last process has.
        let _ = run("ip", &["link", "del", &self.root_link]);
        let _ = run("ip", &["netns", "del", &self.name]);
        if !self.dir.as_os_str().is_empty() {
            crate::finish_scratch_dir(&self.dir, &format!("test host {}", self.name), false);
        }
    }
}

/// SIGKILL every process in namespace `name` (our backends).
fn kill_namespace_processes(name: &str) {
    if let Ok(pids) = run("ip", &["netns", "pids", name]) {
        for pid in pids
            .lines()
            .filter_map(|p| p.trim().parse::<libc::pid_t>().ok())
        {
            // SAFETY: kill(2) on a pid listed as living in our namespace.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// A free /30 of the link pool. Caller holds the lock.
fn allocate_link_block(pid: u32) -> Result<u32> {
    let used = used_prefixes()?;
    let links = link_names()?;
    // Spread processes over the pool: start at a pid-derived block.
    let start = pid
        .wrapping_mul(64)
        .wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed));
    for i in 0..LINK_BLOCKS {
        let b = start.wrapping_add(i) % LINK_BLOCKS;
        let (root, _) = link_v4(b);
        let net = IpNet::V4(Ipv4Net::new(root, 30).unwrap_or_default().trunc());
        let net6 = IpNet::V6(Ipv6Net::new(v6(b, 0, 0, 0), 48).unwrap_or_default());
        let free = !used.iter().any(|u| overlaps(u, &net) || overlaps(u, &net6))
            && !links.contains(&link_name(b));
        if free {
            return Ok(b);
        }
    }
    Err(Error::AddressesExhausted {
        pool: "198.18.0.0/16 (test-host links)",
        size: 4,
    })
}

fn usable(a: Ipv4Addr) -> bool {
    !matches!(a.octets()[3], 0 | 255)
}

/// The smallest free block of the alias pool with `n` usable addresses, and
/// those addresses. Caller holds the lock.
fn allocate_alias_block(n: usize) -> Result<(Ipv4Net, Vec<Ipv4Addr>)> {
    let used = used_prefixes()?;
    for len in (ALIAS_POOL_LEN..=32).rev() {
        let size = 1u32 << (32 - len);
        if usize::try_from(size).unwrap_or(usize::MAX) < n {
            continue;
        }
        for i in 0..(1u32 << (len - ALIAS_POOL_LEN)) {
            let first = u32::from(ALIAS_POOL) + i * size;
            let Ok(net) = Ipv4Net::new(Ipv4Addr::from(first), len) else {
                continue;
            };
            if used.iter().any(|u| overlaps(u, &IpNet::V4(net))) {
                continue;
            }
            let addrs: Vec<Ipv4Addr> = (first..first + size)
                .map(Ipv4Addr::from)
                .filter(|a| usable(*a))
                .take(n)
                .collect();
            if addrs.len() == n {
                return Ok((net, addrs));
            }
        }
    }
    Err(Error::AddressesExhausted {
        pool: "198.19.0.0/16 (test-host aliases)",
        size: u32::try_from(n).unwrap_or(u32::MAX),
    })
}

/// What [`cleanup_stale`] removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StaleCleanup {
    pub namespaces: Vec<String>,
    pub links: Vec<String>,
    pub scratch_dirs: usize,
}

/// Remove the `ke-<pid>-<b>` namespaces (killing what runs inside), the
/// `ke-<b>` links and the scratch directories left by processes that no
/// longer exist (a killed test run). Things of living processes are left
/// alone. Blocking.
pub fn cleanup_stale() -> Result<StaleCleanup> {
    let _lock = lock()?;
    let mut report = StaleCleanup::default();
    let dead = |pid: &str| pid.parse::<u32>().is_ok_and(|p| !crate::pid_alive(p));
    for line in run("ip", &["netns", "list"])?.lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let mut parts = name.split('-');
        if let (Some("ke"), Some(pid), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
            && dead(pid)
        {
            kill_namespace_processes(name);
            if run("ip", &["netns", "del", name]).is_ok() {
                report.namespaces.push(name.to_string());
            }
        }
    }
    for line in run("ip", &["-o", "link", "show"])?.lines() {
        let Some(name) = line
            .split(':')
            .nth(1)
            .map(|n| n.trim().split('@').next().unwrap_or_default())
        else {
            continue;
        };
        let owner = line.split_whitespace().skip_while(|w| *w != "alias").nth(1);
        if let (true, Some(pid)) = (
            name.starts_with("ke-"),
            owner.and_then(|o| o.strip_prefix("ke-pid-")),
        ) && dead(pid)
            && run("ip", &["link", "del", name]).is_ok()
        {
            report.links.push(name.to_string());
        }
    }
    report.scratch_dirs = crate::remove_stale_scratch_dirs(SCRATCH_PREFIX);
    Ok(report)
}

/// Path of the `ke-testbackend` binary: `$KE_TESTBACKEND` if set, else next
/// to the running test executable's directory: tests run from
/// `target/<profile>/deps/`, binaries are in `target/<profile>/`. `cargo
/// test --workspace` builds it; `cargo test -p <other crate>` does not (build
/// it with `cargo build -p kube-endpoints-testkit --bin ke-testbackend`).
pub fn backend_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("KE_TESTBACKEND") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join("ke-testbackend")
}

/// `ke-testbackend` running inside a host's namespace. Killed on drop.
pub struct Backend {
    netns: String,
    ports: BackendPorts,
    /// More arguments, passed as they are.
    args: Vec<String>,
    binary: PathBuf,
    control_file: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    pid: Option<u32>,
    seq: AtomicU64,
    /// What the control file says (both are written on every change).
    healthy: AtomicBool,
    replica: AtomicBool,
}

impl Backend {
    /// Start the backend again (same ports, same health as last set) and
    /// wait for its `ready` line; a no-op while it runs.
    pub async fn start(&mut self) -> Result<()> {
        if let Some(child) = self.child.as_mut()
            && child.try_wait().ok().flatten().is_none()
        {
            return Ok(());
        }
        self.child = None;
        self.pid = None;
        if !self.binary.is_file() {
            return Err(Error::NoBackendBinary {
                path: self.binary.clone(),
            });
        }
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.netns]).arg(&self.binary);
        for (flag, ports) in [
            ("--tcp", &self.ports.tcp),
            ("--http", &self.ports.http),
            ("--udp", &self.ports.udp),
            ("--grpc", &self.ports.grpc),
            ("--redis", &self.ports.redis),
        ] {
            for p in ports {
                cmd.arg(flag).arg(p.to_string());
            }
        }
        cmd.args(&self.args);
        cmd.arg("--control-file").arg(&self.control_file);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(io_err(format!("opening {}", self.log.display())))?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        die_with_parent(&mut cmd);
        // `ip netns exec` execs the binary without forking: the child's pid
        // is the backend's.
        let mut child = cmd.spawn().map_err(|source| Error::Spawn {
            command: format!("ip netns exec {} {}", self.netns, self.binary.display()),
            source,
        })?;
        let stdout = child.stdout.take();
        self.pid = child.id();
        self.child = Some(child);
        let Some(stdout) = stdout else {
            return Err(self.error("no stdout to read `ready` from".into()));
        };
        let mut lines = BufReader::new(stdout).lines();
        let deadline = Instant::now() + BACKEND_READY_TIMEOUT;
        loop {
            match tokio::time::timeout_at(deadline.into(), lines.next_line()).await {
                Ok(Ok(Some(line))) if line.trim() == "ready" => return Ok(()),
                Ok(Ok(Some(_))) => {}
                Ok(Ok(None)) | Ok(Err(_)) => {
                    let status = match self.child.as_mut() {
                        Some(c) => c.wait().await.map(|s| s.to_string()).unwrap_or_default(),
                        None => String::new(),
                    };
                    self.child = None;
                    self.pid = None;
                    return Err(self.error(format!("exited ({status}) before it was ready")));
                }
                Err(_) => {
                    self.stop().await?;
                    return Err(self.error(format!("not ready after {BACKEND_READY_TIMEOUT:?}")));
                }
            }
        }
    }

    fn error(&self, message: String) -> Error {
        Error::Backend {
            netns: self.netns.clone(),
            message,
            log: self.log.clone(),
            tail: log_tail(&self.log, LOG_TAIL_LINES),
        }
    }

    /// Kill the backend (SIGKILL) and wait until it is gone: its ports are
    /// closed, connections are refused. A no-op when it is not running.
    pub async fn stop(&mut self) -> Result<()> {
        self.pid = None;
        if let Some(mut child) = self.child.take() {
            child.kill().await.map_err(io_err(format!(
                "killing the test backend in {}",
                self.netns
            )))?;
        }
        Ok(())
    }

    /// Whether the backend process runs.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    pub fn ports(&self) -> &BackendPorts {
        &self.ports
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Healthy: HTTP `/healthz` 200, gRPC SERVING, UDP echo. Unhealthy:
    /// HTTP 503, gRPC NOT_SERVING, UDP silent. TCP accepts either way, and
    /// no port closes. While the backend runs, this returns once it has
    /// applied the change (it acknowledges through a file; it is nudged with
    /// SIGUSR1, so this blocks for a millisecond or so). The setting also
    /// holds for a later [`start`](Self::start).
    pub fn set_healthy(&self, healthy: bool) -> Result<()> {
        self.healthy.store(healthy, Ordering::SeqCst);
        self.write_control()
    }

    /// Primary (the default): HTTP `/primary` 200 and `/replica` 503, `/role`
    /// says `role: primary`, Redis `ROLE` says `master`. Replica: the
    /// reverse (`role: replica`, `slave`). While unhealthy, all of them
    /// fail (503, `-LOADING`). Applied as [`set_healthy`](Self::set_healthy)
    /// is, and kept across a restart like it.
    pub fn set_role(&self, role: Role) -> Result<()> {
        self.replica.store(role == Role::Replica, Ordering::SeqCst);
        self.write_control()
    }

    fn write_control(&self) -> Result<()> {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let health = if self.healthy.load(Ordering::SeqCst) {
            "healthy"
        } else {
            "unhealthy"
        };
        let role = if self.replica.load(Ordering::SeqCst) {
            "replica"
        } else {
            "primary"
        };
        let content = format!("{health} {role} {seq}\n");
        let tmp = self.control_file.with_extension("control.tmp");
        std::fs::write(&tmp, &content).map_err(io_err(format!("writing {}", tmp.display())))?;
        std::fs::rename(&tmp, &self.control_file)
            .map_err(io_err(format!("writing {}", self.control_file.display())))?;
        let Some(pid) = self.pid.and_then(|p| libc::pid_t::try_from(p).ok()) else {
            return Ok(());
        };
        // SAFETY: kill(2) on our own child, which handles SIGUSR1 since
        // before it printed `ready`.
        unsafe { libc::kill(pid, libc::SIGUSR1) };
        let ack = ack_path(&self.control_file);
        let deadline = Instant::now() + ACK_TIMEOUT;
        loop {
            if std::fs::read_to_string(&ack).is_ok_and(|a| a == content) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(self.error(format!(
                    "did not acknowledge {:?} in {} within {ACK_TIMEOUT:?}",
                    content.trim(),
                    ack.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Where the backend acknowledges a control-file change: `<control>.ack`.
pub fn ack_path(control_file: &Path) -> PathBuf {
    let mut p = control_file.as_os_str().to_owned();
    p.push(".ack");
    PathBuf::from(p)
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
        }
    }
}
