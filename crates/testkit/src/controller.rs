//! A controller under test as its own process: started with a command line,
//! its stdout and stderr in a log file, ready once its metrics port answers,
//! killed on drop.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use crate::{Error, Result, http, io_err, log_tail};

/// How to start a controller process.
#[derive(Clone, Debug)]
pub struct Launch {
    /// Program and arguments.
    pub command: Vec<String>,
    /// Variables set in its environment.
    pub env: Vec<(String, String)>,
    /// Start from an empty environment (only `PATH` kept, then `env`), as a
    /// Deployment's container would.
    pub clear_env: bool,
    /// Run as this user id (and the group of the same id) instead of ours,
    /// for example so that an nftables rule can match its packets.
    pub uid: Option<u32>,
    /// Where its stdout and stderr go.
    pub log: PathBuf,
    /// The loopback port of its HTTP endpoints.
    pub metrics_port: u16,
    /// It is ready when `GET` of this path answers 200.
    pub ready_path: String,
    pub ready_timeout: Duration,
}

impl Launch {
    /// `command` serving on `metrics_port`, ready when `/readyz` answers.
    pub fn new(command: Vec<String>, metrics_port: u16, log: PathBuf) -> Launch {
        Launch {
            command,
            env: Vec::new(),
            clear_env: false,
            uid: None,
            log,
            metrics_port,
            ready_path: "/readyz".into(),
            ready_timeout: Duration::from_secs(60),
        }
    }
}

/// A running controller process.
pub struct ControllerProcess {
    child: Child,
    pid: u32,
    metrics_port: u16,
    command: Vec<String>,
    log: PathBuf,
}

impl ControllerProcess {
    /// Spawn it and wait until it is ready; fails with the end of its log
    /// when it exits first or is not ready in time.
    pub async fn start(launch: Launch) -> Result<ControllerProcess> {
        let Some((program, args)) = launch.command.split_first() else {
            return Err(Error::Spawn {
                command: String::new(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "empty command"),
            });
        };
        if let Some(dir) = launch.log.parent() {
            std::fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
        }
        let log = std::fs::File::create(&launch.log)
            .map_err(io_err(format!("creating {}", launch.log.display())))?;
        let stdout = log
            .try_clone()
            .map_err(io_err(format!("opening {}", launch.log.display())))?;
        let mut cmd = Command::new(program);
        cmd.args(args);
        // A controller left behind by a killed test or bench would go on
        // probing addresses whose test namespace is gone.
        crate::die_with_parent(&mut cmd);
        if launch.clear_env {
            cmd.env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default());
        }
        if let Some(uid) = launch.uid {
            cmd.uid(uid).gid(uid);
        }
        cmd.envs(launch.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        let command = launch.command.join(" ");
        let child = cmd.spawn().map_err(|source| Error::Spawn {
            command: command.clone(),
            source,
        })?;
        let pid = child.id().unwrap_or_default();
        let mut process = ControllerProcess {
            child,
            pid,
            metrics_port: launch.metrics_port,
            command: launch.command.clone(),
            log: launch.log.clone(),
        };
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = process.child.try_wait() {
                return Err(Error::Exited {
                    process: command,
                    status: status.to_string(),
                    log: launch.log,
                    tail: process.log_tail(40),
                });
            }
            if process.get(&launch.ready_path).await.is_some() {
                return Ok(process);
            }
            if started.elapsed() > launch.ready_timeout {
                return Err(Error::NotReady {
                    process: command,
                    after: launch.ready_timeout,
                    last: format!(
                        "GET 127.0.0.1:{}{} did not answer 200",
                        launch.metrics_port, launch.ready_path
                    ),
                    log: launch.log,
                    tail: process.log_tail(40),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// `GET path` on its port: the body of a 200 answer.
    pub async fn get(&self, path: &str) -> Option<String> {
        http::get(self.metrics_port, path).await
    }

    /// Its `/metrics` text (empty when it does not answer).
    pub async fn metrics(&self) -> String {
        self.get("/metrics").await.unwrap_or_default()
    }

    /// Sum of a metric over all its label sets.
    pub async fn metric(&self, name: &str) -> f64 {
        http::sum_metric(&self.metrics().await, name)
    }

    /// Fails when the process has exited, with the end of its log.
    pub fn check_alive(&mut self) -> Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(self.exited(status.to_string())),
            Err(e) => Err(io_err(format!("checking on {}", self.command.join(" ")))(e)),
        }
    }

    /// [`check_alive`](Self::check_alive) for a shared reference (reads
    /// `/proc`: a zombie counts as exited).
    pub fn check_running(&self) -> Result<()> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).unwrap_or_default();
        let state = stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next());
        match state {
            Some("Z") | Some("X") | None => Err(self.exited("exited".into())),
            _ => Ok(()),
        }
    }

    fn exited(&self, status: String) -> Error {
        Error::Died {
            process: self.command.join(" "),
            status,
            log: self.log.clone(),
            tail: self.log_tail(40),
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn metrics_port(&self) -> u16 {
        self.metrics_port
    }

    pub fn command(&self) -> &[String] {
        &self.command
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The whole log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }

    /// SIGKILL it and wait until it is gone.
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }
}
