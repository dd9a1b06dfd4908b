//! Test support for kube-endpoints:
//!
//! - [`controlplane`]: a real control plane on loopback (etcd with its data
//!   on tmpfs, kube-apiserver with static-token authentication and RBAC, and
//!   the garbage collector of kube-controller-manager), built from the
//!   Kubernetes Go modules by `scripts/build-control-plane.sh`.
//! - [`netns`]: external test hosts, each a network namespace joined to the
//!   root namespace by a veth pair, with addresses from the benchmarking range
//!   198.18.0.0/15 and a ULA IPv6 prefix, running `ke-testbackend` (TCP, HTTP,
//!   UDP echo and gRPC health listeners).
//! - [`controller`]: a controller under test as its own process, [`crd`]:
//!   installing a CRD, [`http`]: `GET` on loopback and a free port.
//! - [`node`]: a network namespace playing a node, running the real
//!   kube-proxy, wired to test hosts, with `ke-client` processes that
//!   connect to Services' ClusterIPs from inside it.
//!
//! Traffic goes only to loopback and to namespaces created here. Everything
//! is killed and removed on drop; on a panic (a failing test) the log
//! directories are kept and their paths printed. Child processes also get
//! `PR_SET_PDEATHSIG`, so they die with the *thread* that started them even
//! when the test process is killed: start long-lived fixtures from a test's
//! runtime thread or a dedicated thread, never from `spawn_blocking`.
//!
//! Needs root (network namespaces), `ip` (iproute2) and `openssl`.

pub mod controller;
pub mod controlplane;
pub mod crd;
pub mod dns;
pub mod http;
pub mod netns;
pub mod node;

use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

pub use controlplane::{ControlPlane, ControlPlaneOptions};
pub use dns::DnsServer;
pub use netns::{Backend, BackendPorts, Fault, Role, TestHost};

/// Everything that can go wrong while setting up or driving a fixture. Each
/// variant names what failed and, for processes, where their log is and how
/// it ends. `Debug` prints the same readable message (tests `expect()`).
#[derive(thiserror::Error)]
pub enum Error {
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        command: String,
        #[source]
        source: io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: ExitStatus,
        stderr: String,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("{process} exited ({status}) before it was ready; log {log}:\n{tail}")]
    Exited {
        process: String,
        status: String,
        log: PathBuf,
        tail: String,
    },
    #[error("{process} exited ({status}); log {log}:\n{tail}")]
    Died {
        process: String,
        status: String,
        log: PathBuf,
        tail: String,
    },
    #[error("{process} not ready after {after:?} (last attempt: {last}); log {log}:\n{tail}")]
    NotReady {
        process: String,
        after: Duration,
        last: String,
        log: PathBuf,
        tail: String,
    },
    #[error(
        "{script} failed ({status}); it builds the control-plane binaries, see its output above"
    )]
    Build { script: PathBuf, status: ExitStatus },
    #[error("{binary} not found or not executable in {dir}")]
    MissingBinary { binary: String, dir: PathBuf },
    #[error(
        "the test backend binary {path} does not exist: build it (`cargo build -p kube-endpoints-testkit --bin ke-testbackend`; `cargo test --workspace` does) or set KE_TESTBACKEND"
    )]
    NoBackendBinary { path: PathBuf },
    #[error("kube client from {kubeconfig}: {message}")]
    Client {
        kubeconfig: PathBuf,
        message: String,
    },
    #[error("{method} {path} on the apiserver: {source}")]
    Request {
        method: &'static str,
        path: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("unknown user {0:?}: neither a static user of the token file nor added with add_token")]
    UnknownUser(String),
    #[error("no free block of {size} addresses left in {pool}")]
    AddressesExhausted { pool: &'static str, size: u32 },
    #[error("test backend in {netns}: {message}; log {log}:\n{tail}")]
    Backend {
        netns: String,
        message: String,
        log: PathBuf,
        tail: String,
    },
    #[error("background task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)?;
        let mut source = std::error::Error::source(self);
        while let Some(s) = source {
            write!(f, "\n  caused by: {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// Make a child die with the thread that spawned it (`PR_SET_PDEATHSIG`),
/// so that fixtures never outlive a killed test process.
pub(crate) fn die_with_parent(cmd: &mut tokio::process::Command) {
    // SAFETY: the closure runs in the forked child before exec and only calls
    // prctl, which is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

fn display_command(program: &str, args: &[&str]) -> String {
    std::iter::once(program)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Run a short command to completion; fail with its stderr on a non-zero
/// exit. Blocking: call from `spawn_blocking` or `Drop` (or a test's setup).
pub fn run(program: &str, args: &[&str]) -> Result<String> {
    run_with_stdin(program, args, None)
}

/// [`run`] with `stdin` fed to the command (e.g. `ip -batch -`).
pub(crate) fn run_with_stdin(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let command = || display_command(program, args);
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| Error::Spawn {
            command: command(),
            source,
        })?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())
            .map_err(io_err(format!("writing the input of `{}`", command())))?;
    }
    let out = child
        .wait_with_output()
        .map_err(io_err(format!("waiting for `{}`", command())))?;
    if !out.status.success() {
        return Err(Error::Command {
            command: command(),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The last `lines` lines of a log file (or why it cannot be read).
pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// Whether a process with this pid exists.
pub(crate) fn pid_alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

/// Base directory for per-instance scratch directories: tmpfs when there is
/// one.
pub(crate) fn scratch_base() -> PathBuf {
    dir_or_temp("/dev/shm")
}

/// `dir` when it exists, else the temporary directory.
fn dir_or_temp(dir: &str) -> PathBuf {
    let dir = Path::new(dir);
    if dir.is_dir() {
        dir.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// Marker file in a scratch directory that was kept for a human (a failure
/// or `KE_KEEP_TMP`): stale-state cleanup leaves such directories alone.
pub(crate) const KEEP_MARKER: &str = "KEPT";

/// Remove a fixture's scratch directory, or keep it (and say so on stderr)
/// when the test is failing or `KE_KEEP_TMP` is set.
pub(crate) fn finish_scratch_dir(dir: &Path, what: &str, failed: bool) {
    let failing = failed || std::thread::panicking();
    if failing || std::env::var_os("KE_KEEP_TMP").is_some() {
        let _ = std::fs::write(dir.join(KEEP_MARKER), "");
        if failing {
            eprintln!(
                "kube-endpoints-testkit: kept the logs of {what} in {}",
                dir.display()
            );
        }
    } else {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Remove scratch directories named `<prefix><pid>-<n>` under
/// [`scratch_base`] whose process is gone, unless kept for a human.
pub(crate) fn remove_stale_scratch_dirs(prefix: &str) -> usize {
    let Ok(entries) = std::fs::read_dir(scratch_base()) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(prefix)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let path = entry.path();
        if pid_alive(pid) || path.join(KEEP_MARKER).exists() {
            continue;
        }
        if std::fs::remove_dir_all(&path).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// An exclusive `flock` on a file, shared by every process using the
/// testkit: serialises address allocation and the control-plane build.
pub(crate) struct FileLock {
    file: std::fs::File,
}

impl FileLock {
    /// Block until the lock is held. Blocking: call from `spawn_blocking`.
    pub(crate) fn acquire(path: &Path) -> Result<FileLock> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(io_err(format!("creating {}", parent.display())))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(io_err(format!("opening lock file {}", path.display())))?;
        loop {
            // SAFETY: flock on a file descriptor we own.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(FileLock { file });
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(Error::Io {
                    what: format!("locking {}", path.display()),
                    source: e,
                });
            }
        }
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // SAFETY: unlocking a file descriptor we own (closing it would too).
        unsafe { libc::flock(self.file.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// Directory for the testkit's cross-process lock files.
pub(crate) fn lock_dir() -> PathBuf {
    dir_or_temp("/run/lock")
}
