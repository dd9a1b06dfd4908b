//! A real Kubernetes control plane on loopback: etcd (data on tmpfs),
//! kube-apiserver with static-token authentication and RBAC, and the garbage
//! collector of kube-controller-manager, so that owner references behave as
//! in a cluster. Killed and removed on drop.
//!
//! The binaries come from `$KE_CONTROL_PLANE_BIN`, or else from
//! `scripts/build-control-plane.sh` (run at most once per process, and by one
//! process at a time: a cold build takes many minutes).
//!
//! Scratch directory: `/dev/shm/ke-cp-<pid>-<n>/` with the etcd data, the
//! serving certificate, the service-account key, the token file, the
//! kubeconfigs and one log per process (`etcd.log`, `kube-apiserver.log`,
//! `kube-controller-manager.log`). It is removed on drop, unless the test is
//! panicking, start-up failed or `KE_KEEP_TMP` is set; directories of dead
//! processes (e.g. a control plane kept in a `static`, which is never
//! dropped) are removed by the next [`ControlPlane::start`].

use std::ffi::OsStr;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use crate::{Error, Result, die_with_parent, io_err, log_tail};

/// One static user of the apiserver's token file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StaticUser {
    pub name: &'static str,
    pub token: &'static str,
    pub groups: &'static [&'static str],
}

/// The administrator (group `system:masters`): the kubeconfig of
/// [`ControlPlane::kubeconfig_path`] and [`ControlPlane::client`] use it.
pub const ADMIN: StaticUser = StaticUser {
    name: "ke-admin",
    token: "ke-admin-token",
    groups: &["system:masters"],
};

/// Users in every control plane's token file. Apart from [`ADMIN`] they have
/// no permissions until a test binds a Role to them (or to their group):
///
/// | user            | groups                        |
/// |-----------------|-------------------------------|
/// | `ke-admin`      | `system:masters`              |
/// | `ke-user-a`     | –                             |
/// | `ke-user-b`     | –                             |
/// | `ke-controller` | `kube-endpoints:controllers`  |
///
/// (every authenticated user is also in `system:authenticated`).
pub const STATIC_USERS: [StaticUser; 4] = [
    ADMIN,
    StaticUser {
        name: "ke-user-a",
        token: "ke-user-a-token",
        groups: &[],
    },
    StaticUser {
        name: "ke-user-b",
        token: "ke-user-b-token",
        groups: &[],
    },
    StaticUser {
        name: "ke-controller",
        token: "ke-controller-token",
        groups: &["kube-endpoints:controllers"],
    },
];

/// How long kube-apiserver may take to report `/readyz` (a cold start on a
/// busy 2-core machine takes several seconds).
pub const APISERVER_READY_TIMEOUT: Duration = Duration::from_secs(120);
const ETCD_READY_TIMEOUT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(100);
const LOG_TAIL_LINES: usize = 30;

const SCRATCH_PREFIX: &str = "ke-cp-";

static INSTANCES: AtomicU32 = AtomicU32::new(0);
static BIN_DIR: tokio::sync::OnceCell<PathBuf> = tokio::sync::OnceCell::const_new();

/// Tunables of [`ControlPlane::start_with`].
#[derive(Clone, Debug)]
pub struct ControlPlaneOptions {
    /// `--service-cluster-ip-range` (envtest's `10.0.0.0/24` by default:
    /// room for 254 ClusterIP Services; widen it for benchmarks).
    pub service_cluster_ip_range: String,
    /// Run kube-controller-manager's garbage collector (needed for owner
    /// references and foreground deletion). Default true.
    pub garbage_collector: bool,
    /// Extra kube-apiserver flags (`--name=value`), appended last.
    pub extra_apiserver_args: Vec<String>,
    /// kube-controller-manager controllers to run besides the garbage
    /// collector (e.g. `endpointslicemirroring`); any of them starts
    /// kube-controller-manager even without the garbage collector.
    pub extra_controllers: Vec<String>,
    /// Extra etcd flags (`--name=value`), appended last (e.g. a smaller
    /// `--max-request-bytes`, to reach the object size limit with less data).
    pub extra_etcd_args: Vec<String>,
}

impl Default for ControlPlaneOptions {
    fn default() -> Self {
        ControlPlaneOptions {
            service_cluster_ip_range: "10.0.0.0/24".into(),
            garbage_collector: true,
            extra_apiserver_args: Vec::new(),
            extra_controllers: Vec::new(),
            extra_etcd_args: Vec::new(),
        }
    }
}

impl ControlPlaneOptions {
    fn runs_controller_manager(&self) -> bool {
        self.garbage_collector || !self.extra_controllers.is_empty()
    }
}

struct Token {
    user: String,
    token: String,
    groups: Vec<String>,
}

/// A running etcd + kube-apiserver (+ garbage collector) on 127.0.0.1.
pub struct ControlPlane {
    options: ControlPlaneOptions,
    dir: PathBuf,
    bin: PathBuf,
    etcd_port: u16,
    etcd_peer_port: u16,
    api_port: u16,
    kubeconfig: PathBuf,
    tokens: Vec<Token>,
    etcd: Option<Child>,
    apiserver: Option<Child>,
    controller_manager: Option<Child>,
    /// Keep the scratch directory on drop (a start or restart failed).
    failed: bool,
}

/// Where the repository is (this crate is `crates/testkit`).
pub fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .and_then(Path::parent)
        .map_or_else(|| manifest.join("../.."), Path::to_path_buf)
}

/// The directory with kube-apiserver, etcd, kubectl, kube-controller-manager
/// and kube-proxy: `$KE_CONTROL_PLANE_BIN`, or what
/// `scripts/build-control-plane.sh` prints (building on a cold cache). The
/// script runs at most once per process, and under a file lock so that
/// concurrent test processes never build the same binaries twice at once.
pub async fn resolve_bin_dir() -> Result<PathBuf> {
    BIN_DIR
        .get_or_try_init(|| async {
            if let Some(dir) = std::env::var_os("KE_CONTROL_PLANE_BIN") {
                return Ok(PathBuf::from(dir));
            }
            tokio::task::spawn_blocking(build_control_plane).await?
        })
        .await
        .cloned()
}

fn build_control_plane() -> Result<PathBuf> {
    let script = repo_root().join("scripts/build-control-plane.sh");
    let _lock =
        crate::FileLock::acquire(&crate::lock_dir().join("ke-testkit-control-plane-build.lock"))?;
    // Its progress goes to our stderr; only the bin dir comes on stdout.
    let out = std::process::Command::new(&script)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|source| Error::Spawn {
            command: script.display().to_string(),
            source,
        })?;
    if !out.status.success() {
        return Err(Error::Build {
            script,
            status: out.status,
        });
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

fn check_binaries(bin: &Path, names: &[&str]) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for name in names {
        let executable = std::fs::metadata(bin.join(name))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
        if !executable {
            return Err(Error::MissingBinary {
                binary: (*name).to_string(),
                dir: bin.to_path_buf(),
            });
        }
    }
    Ok(())
}

/// `n` distinct free TCP ports on 127.0.0.1 (all bound at once, then
/// released: the usual small race with other processes remains, and
/// [`ControlPlane::start`] retries on "address already in use").
fn free_ports<const N: usize>() -> Result<[u16; N]> {
    let listeners = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(io_err("binding 127.0.0.1:0 to find a free port"))?;
    let mut ports = [0u16; N];
    for (port, l) in ports.iter_mut().zip(&listeners) {
        *port = l
            .local_addr()
            .map_err(io_err("reading a bound port"))?
            .port();
    }
    Ok(ports)
}

impl ControlPlane {
    /// Start etcd, kube-apiserver (waiting for `/readyz`) and the garbage
    /// collector with [`ControlPlaneOptions::default`].
    pub async fn start() -> Result<ControlPlane> {
        Self::start_with(ControlPlaneOptions::default()).await
    }

    pub async fn start_with(options: ControlPlaneOptions) -> Result<ControlPlane> {
        crate::remove_stale_scratch_dirs(SCRATCH_PREFIX);
        let bin = resolve_bin_dir().await?;
        let mut needed = vec!["etcd", "kube-apiserver", "kubectl"];
        if options.runs_controller_manager() {
            needed.push("kube-controller-manager");
        }
        check_binaries(&bin, &needed)?;
        let mut attempt = 1;
        loop {
            let mut cp = Self::prepare(bin.clone(), options.clone()).await?;
            match cp.boot().await {
                Ok(()) => return Ok(cp),
                // Another process took one of the ports between our probe
                // and the bind: try again on fresh ports.
                Err(e) if attempt < 3 && is_port_conflict(&e) => attempt += 1,
                Err(e) => {
                    cp.failed = true;
                    return Err(e);
                }
            }
        }
    }

    async fn prepare(bin: PathBuf, options: ControlPlaneOptions) -> Result<ControlPlane> {
        let n = INSTANCES.fetch_add(1, Ordering::Relaxed);
        let dir = crate::scratch_base().join(format!("{SCRATCH_PREFIX}{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("certs"))
            .map_err(io_err(format!("creating {}", dir.display())))?;
        let [etcd_port, etcd_peer_port, api_port] = free_ports()?;
        let tokens = STATIC_USERS
            .iter()
            .map(|u| Token {
                user: u.name.into(),
                token: u.token.into(),
                groups: u.groups.iter().map(|g| (*g).to_string()).collect(),
            })
            .collect();
        let cp = ControlPlane {
            options,
            kubeconfig: dir.join("kubeconfig"),
            dir,
            bin,
            etcd_port,
            etcd_peer_port,
            api_port,
            tokens,
            etcd: None,
            apiserver: None,
            controller_manager: None,
            failed: false,
        };
        // From here on, Drop cleans up.
        cp.generate_service_account_key().await?;
        cp.write_token_file()?;
        write_file(
            &cp.kubeconfig,
            &kubeconfig_yaml(&cp.server_url(), ADMIN.token),
        )?;
        Ok(cp)
    }

    async fn generate_service_account_key(&self) -> Result<()> {
        let key = self.dir.join("sa.key");
        let args = [
            OsStr::new("genrsa"),
            OsStr::new("-out"),
            key.as_os_str(),
            OsStr::new("2048"),
        ];
        let command = || format!("openssl genrsa -out {} 2048", key.display());
        let out = Command::new("openssl")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|source| Error::Spawn {
                command: command(),
                source,
            })?;
        if !out.status.success() {
            return Err(Error::Command {
                command: command(),
                status: out.status,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(())
    }

    fn write_token_file(&self) -> Result<()> {
        // token,user,uid,"group1,group2"
        let text: String = self
            .tokens
            .iter()
            .map(|t| {
                format!(
                    "{},{},{},\"{}\"\n",
                    t.token,
                    t.user,
                    t.user,
                    t.groups.join(",")
                )
            })
            .collect();
        write_file(&self.dir.join("tokens.csv"), &text)
    }

    async fn boot(&mut self) -> Result<()> {
        self.start_etcd().await?;
        self.start_apiserver().await?;
        if self.options.runs_controller_manager() {
            self.start_controller_manager()?;
        }
        Ok(())
    }

    /// The scratch directory (logs, kubeconfigs, etcd data).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The log file of `process` (`etcd`, `kube-apiserver` or
    /// `kube-controller-manager`).
    pub fn log_path(&self, process: &str) -> PathBuf {
        self.dir.join(format!("{process}.log"))
    }

    pub fn bin_dir(&self) -> &Path {
        &self.bin
    }

    /// Admin kubeconfig (token auth, `insecure-skip-tls-verify`).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// Process ids of the running etcd, kube-apiserver and
    /// kube-controller-manager, by name.
    pub fn pids(&self) -> Vec<(&'static str, u32)> {
        [
            ("etcd", &self.etcd),
            ("kube-apiserver", &self.apiserver),
            ("kube-controller-manager", &self.controller_manager),
        ]
        .into_iter()
        .filter_map(|(name, child)| Some((name, child.as_ref()?.id()?)))
        .collect()
    }

    /// Its `--service-cluster-ip-range` (comma-separated when dual-stack).
    pub fn service_cluster_ip_range(&self) -> &str {
        &self.options.service_cluster_ip_range
    }

    /// `https://127.0.0.1:<port>`.
    pub fn server_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.api_port)
    }

    pub fn etcd_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.etcd_port)
    }

    pub fn admin_token(&self) -> &str {
        ADMIN.token
    }

    /// The bearer token of a static user or one added with [`add_token`](Self::add_token).
    pub fn token(&self, user: &str) -> Option<&str> {
        self.tokens
            .iter()
            .find(|t| t.user == user)
            .map(|t| t.token.as_str())
    }

    /// Add a user with a bearer token. The token file is read only at
    /// start-up, so this restarts kube-apiserver (a few seconds): prefer
    /// the [`STATIC_USERS`] when they do. Returns the token.
    pub async fn add_token(&mut self, user: &str, groups: &[&str]) -> Result<String> {
        let token = format!("ke-added-{}-{user}-token", self.tokens.len());
        self.tokens.retain(|t| t.user != user);
        self.tokens.push(Token {
            user: user.into(),
            token: token.clone(),
            groups: groups.iter().map(|g| (*g).to_string()).collect(),
        });
        self.write_token_file()?;
        self.restart_apiserver().await?;
        Ok(token)
    }

    /// A kubeconfig that authenticates as `user` (see [`token`](Self::token)).
    pub fn kubeconfig_for(&self, user: &str) -> Result<PathBuf> {
        let token = self
            .token(user)
            .ok_or_else(|| Error::UnknownUser(user.into()))?;
        let path = self.dir.join(format!("kubeconfig-{user}"));
        write_file(&path, &kubeconfig_yaml(&self.server_url(), token))?;
        Ok(path)
    }

    /// A client authenticated as the administrator.
    pub async fn client(&self) -> Result<kube::Client> {
        client_from_kubeconfig(&self.kubeconfig).await
    }

    /// A client authenticated as `user`.
    pub async fn client_as(&self, user: &str) -> Result<kube::Client> {
        client_from_kubeconfig(&self.kubeconfig_for(user)?).await
    }

    /// `kubectl --kubeconfig <admin kubeconfig> <args>`.
    pub fn kubectl<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(self.bin.join("kubectl"));
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .kill_on_drop(true);
        cmd
    }

    /// Kill kube-apiserver (SIGKILL) and start it again on the same port;
    /// returns once it is ready. Clients reconnect by themselves.
    pub async fn restart_apiserver(&mut self) -> Result<()> {
        stop(&mut self.apiserver).await?;
        let result = self.start_apiserver().await;
        self.failed |= result.is_err();
        result
    }

    /// Kill kube-apiserver and etcd, then start both again on the same ports;
    /// etcd keeps its data directory, so nothing is lost.
    pub async fn restart_etcd_and_apiserver(&mut self) -> Result<()> {
        stop(&mut self.apiserver).await?;
        stop(&mut self.etcd).await?;
        let result = async {
            self.start_etcd().await?;
            self.start_apiserver().await
        }
        .await;
        self.failed |= result.is_err();
        result
    }

    /// kube-apiserver's `/metrics` (Prometheus text), read as the admin.
    /// See [`count_requests`] for `apiserver_request_total`.
    pub async fn metrics_text(&self) -> Result<String> {
        let client = self.client().await?;
        get_text(&client, "/metrics").await
    }

    fn log_stdio(&self, process: &str) -> Result<(Stdio, Stdio)> {
        use std::io::Write;
        let path = self.log_path(process);
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(format!("opening {}", path.display())))?;
        let _ = writeln!(file, "==== kube-endpoints-testkit: starting {process}");
        let clone = file
            .try_clone()
            .map_err(io_err(format!("duplicating {}", path.display())))?;
        Ok((Stdio::from(clone), Stdio::from(file)))
    }

    /// Starts `process` with `args`, then the `extra` arguments the options
    /// add (so that they can override ours), logging to its log file.
    fn spawn(&self, process: &str, args: &[String], extra: &[String]) -> Result<Child> {
        let (stdout, stderr) = self.log_stdio(process)?;
        let program = self.bin.join(process);
        let mut cmd = Command::new(&program);
        cmd.args(args)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .kill_on_drop(true);
        die_with_parent(&mut cmd);
        cmd.spawn().map_err(|source| Error::Spawn {
            command: program.display().to_string(),
            source,
        })
    }

    async fn start_etcd(&mut self) -> Result<()> {
        let client = self.etcd_url();
        let peer = format!("http://127.0.0.1:{}", self.etcd_peer_port);
        let args: Vec<String> = vec![
            "--name=default".into(),
            format!("--data-dir={}", self.dir.join("etcd").display()),
            format!("--listen-client-urls={client}"),
            format!("--advertise-client-urls={client}"),
            format!("--listen-peer-urls={peer}"),
            format!("--initial-advertise-peer-urls={peer}"),
            format!("--initial-cluster=default={peer}"),
            "--initial-cluster-state=new".into(),
            // tmpfs anyway; envtest runs etcd like this too.
            "--unsafe-no-fsync=true".into(),
            "--quota-backend-bytes=8589934592".into(),
            "--auto-compaction-mode=periodic".into(),
            "--auto-compaction-retention=5m".into(),
            "--log-level=warn".into(),
        ];
        self.etcd = Some(self.spawn("etcd", &args, &self.options.extra_etcd_args)?);
        let port = self.etcd_port;
        let log = self.log_path("etcd");
        wait_ready("etcd", &mut self.etcd, &log, ETCD_READY_TIMEOUT, || {
            etcd_healthy(port)
        })
        .await
    }

    async fn start_apiserver(&mut self) -> Result<()> {
        let d = |p: &str| self.dir.join(p).display().to_string();
        let args = vec![
            format!("--etcd-servers={}", self.etcd_url()),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={}", self.api_port),
            // A self-signed serving certificate is generated here.
            format!("--cert-dir={}", d("certs")),
            format!("--token-auth-file={}", d("tokens.csv")),
            "--authorization-mode=RBAC".into(),
            format!(
                "--service-cluster-ip-range={}",
                self.options.service_cluster_ip_range
            ),
            "--service-account-issuer=https://kubernetes.default.svc".into(),
            format!("--service-account-key-file={}", d("sa.key")),
            format!("--service-account-signing-key-file={}", d("sa.key")),
            "--disable-admission-plugins=ServiceAccount".into(),
            "--allow-privileged=true".into(),
            // The `kubernetes` Service's endpoint would be 127.0.0.1, which
            // is invalid: the reconciler would only fail and retry, adding
            // writes to the request counters that benchmarks read.
            "--endpoint-reconciler-type=none".into(),
            // Benchmarks write in bursts; don't let the defaults throttle them.
            "--max-requests-inflight=2000".into(),
            "--max-mutating-requests-inflight=1000".into(),
            "--v=1".into(),
        ];
        let extra = &self.options.extra_apiserver_args;
        self.apiserver = Some(self.spawn("kube-apiserver", &args, extra)?);
        let client = client_from_kubeconfig(&self.kubeconfig).await?;
        let log = self.log_path("kube-apiserver");
        wait_ready(
            "kube-apiserver",
            &mut self.apiserver,
            &log,
            APISERVER_READY_TIMEOUT,
            || {
                let client = client.clone();
                async move {
                    get_text(&client, "/readyz")
                        .await
                        .map(drop)
                        .map_err(|e| e.to_string())
                }
            },
        )
        .await
    }

    fn start_controller_manager(&mut self) -> Result<()> {
        let controllers = self
            .options
            .garbage_collector
            .then(|| "garbagecollector".to_string())
            .into_iter()
            .chain(self.options.extra_controllers.iter().cloned())
            .collect::<Vec<_>>()
            .join(",");
        let args = vec![
            format!("--kubeconfig={}", self.kubeconfig.display()),
            format!("--controllers={controllers}"),
            "--leader-elect=false".into(),
            "--secure-port=0".into(),
            "--concurrent-gc-syncs=5".into(),
            "--v=1".into(),
        ];
        self.controller_manager = Some(self.spawn("kube-controller-manager", &args, &[])?);
        Ok(())
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        for child in [
            &mut self.controller_manager,
            &mut self.apiserver,
            &mut self.etcd,
        ] {
            if let Some(mut c) = child.take() {
                // SIGKILL now; kill_on_drop repeats it, and tokio reaps.
                let _ = c.start_kill();
            }
        }
        crate::finish_scratch_dir(&self.dir, "a control plane", self.failed);
    }
}

/// Kill a child (SIGKILL) and wait until it is gone, so that its ports and
/// files are free again.
async fn stop(child: &mut Option<Child>) -> Result<()> {
    if let Some(mut c) = child.take() {
        c.kill()
            .await
            .map_err(io_err("killing a control-plane process"))?;
    }
    Ok(())
}

/// Poll `check` every [`POLL`] until it succeeds; fail early with the log's
/// tail when the process exits, or after `timeout`.
async fn wait_ready<F, Fut>(
    process: &str,
    child: &mut Option<Child>,
    log: &Path,
    timeout: Duration,
    mut check: F,
) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = std::result::Result<(), String>>,
{
    let start = Instant::now();
    loop {
        if let Some(c) = child.as_mut()
            && let Ok(Some(status)) = c.try_wait()
        {
            *child = None;
            return Err(Error::Exited {
                process: process.into(),
                status: status.to_string(),
                log: log.to_path_buf(),
                tail: log_tail(log, LOG_TAIL_LINES),
            });
        }
        let last = match tokio::time::timeout(Duration::from_secs(5), check()).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => e,
            Err(_) => "no answer within 5s".into(),
        };
        if start.elapsed() > timeout {
            return Err(Error::NotReady {
                process: process.into(),
                after: timeout,
                last,
                log: log.to_path_buf(),
                tail: log_tail(log, LOG_TAIL_LINES),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

fn is_port_conflict(e: &Error) -> bool {
    matches!(e, Error::Exited { tail, .. } if tail.contains("address already in use"))
}

/// etcd's `/health` over plain HTTP/1.0.
async fn etcd_healthy(port: u16) -> std::result::Result<(), String> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    s.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut response = String::new();
    s.read_to_string(&mut response)
        .await
        .map_err(|e| format!("read: {e}"))?;
    if response.contains("\"health\":\"true\"") {
        Ok(())
    } else {
        Err(format!(
            "/health answered {:?}",
            response.lines().last().unwrap_or_default()
        ))
    }
}

async fn get_text(client: &kube::Client, path: &str) -> Result<String> {
    let request = http::Request::get(path)
        .body(Vec::new())
        .map_err(|e| Error::Request {
            method: "GET",
            path: path.into(),
            source: Box::new(kube::Error::HttpError(e)),
        })?;
    client
        .request_text(request)
        .await
        .map_err(|e| Error::Request {
            method: "GET",
            path: path.into(),
            source: Box::new(e),
        })
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(io_err(format!("writing {}", path.display())))
}

pub(crate) fn kubeconfig_yaml(server: &str, token: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: kube-endpoints-test
  cluster:
    server: {server}
    insecure-skip-tls-verify: true
users:
- name: user
  user:
    token: {token}
contexts:
- name: kube-endpoints-test
  context:
    cluster: kube-endpoints-test
    user: user
current-context: kube-endpoints-test
"
    )
}

/// A kube client from a kubeconfig file (its current context).
pub async fn client_from_kubeconfig(path: &Path) -> Result<kube::Client> {
    let fail = |message: String| Error::Client {
        kubeconfig: path.to_path_buf(),
        message,
    };
    // Only ring is compiled in; make it the process default explicitly.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kubeconfig = kube::config::Kubeconfig::read_from(path).map_err(|e| fail(e.to_string()))?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .map_err(|e| fail(e.to_string()))?;
    kube::Client::try_from(config).map_err(|e| fail(e.to_string()))
}

/// Sum of `apiserver_request_total` over the series whose `verb` label is in
/// `verbs` (e.g. `["POST", "PUT", "PATCH", "APPLY", "DELETE"]` for writes)
/// and, when given, whose `resource` label equals `resource`.
pub fn count_requests(metrics: &str, verbs: &[&str], resource: Option<&str>) -> f64 {
    metrics
        .lines()
        .filter_map(|line| line.strip_prefix("apiserver_request_total{"))
        .filter_map(|rest| {
            let (labels, value) = rest.rsplit_once("} ")?;
            let label = |name: &str| {
                labels.split(',').find_map(|kv| {
                    kv.strip_prefix(name)?
                        .strip_prefix("=\"")?
                        .strip_suffix('"')
                })
            };
            let verb_ok = label("verb").is_some_and(|v| verbs.contains(&v));
            let resource_ok = resource.is_none_or(|r| label("resource") == Some(r));
            (verb_ok && resource_ok).then(|| value.trim().parse::<f64>().ok())?
        })
        .sum()
}

/// Verbs of `apiserver_request_total` that write.
pub const WRITE_VERBS: [&str; 6] = [
    "POST",
    "PUT",
    "PATCH",
    "APPLY",
    "DELETE",
    "DELETECOLLECTION",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_requests_by_verb_and_resource() {
        let metrics = r#"# HELP apiserver_request_total x
# TYPE apiserver_request_total counter
apiserver_request_total{code="201",component="apiserver",dry_run="",group="",resource="configmaps",scope="resource",subresource="",verb="POST",version="v1"} 3
apiserver_request_total{code="200",component="apiserver",dry_run="",group="discovery.k8s.io",resource="endpointslices",scope="resource",subresource="",verb="APPLY",version="v1"} 2
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="configmaps",scope="resource",subresource="",verb="GET",version="v1"} 7
apiserver_request_total_other{verb="POST",resource="configmaps"} 100
"#;
        assert_eq!(count_requests(metrics, &WRITE_VERBS, None), 5.0);
        assert_eq!(
            count_requests(metrics, &WRITE_VERBS, Some("configmaps")),
            3.0
        );
        assert_eq!(count_requests(metrics, &["GET"], Some("configmaps")), 7.0);
        assert_eq!(count_requests(metrics, &["DELETE"], None), 0.0);
    }

    #[test]
    fn kubeconfig_uses_the_token_and_skips_tls_verification() {
        let yaml = kubeconfig_yaml("https://127.0.0.1:6443", "t0k3n");
        let kc = kube::config::Kubeconfig::from_yaml(&yaml).expect("kubeconfig parses");
        let cluster = kc.clusters[0].cluster.as_ref().expect("cluster");
        assert_eq!(cluster.server.as_deref(), Some("https://127.0.0.1:6443"));
        assert_eq!(cluster.insecure_skip_tls_verify, Some(true));
    }
}
