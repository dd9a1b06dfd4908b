//! The `kube-endpoints` command line: `run`, `crd` and `check`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};
use k8s_openapi::api::core::v1::{Endpoints, Service};
use kube::Client;
use kube::api::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube_endpoints_probe::Prober;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::fence::{ClientOptions, Fence};
use crate::import::{ImportOptions, ProbeChoice};
use crate::leader::{LeaseConfig, run_while_leading};
use crate::metrics::Metrics;
use crate::reconcile::Settings;
use crate::run::{RunError, Scope, run_scope};
use crate::server::Liveness;

#[derive(Parser, Debug)]
#[command(
    name = "kube-endpoints",
    version,
    about = "Health-checked Services and EndpointSlices for hosts outside Kubernetes"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the controller.
    Run(RunArgs),
    /// Print the ClusterEndpoint CRD as YAML.
    Crd {
        /// API group to generate the CRD for.
        #[arg(long, default_value = kube_endpoints_api::GROUP)]
        group: String,
    },
    /// Validate manifests and probe their hosts once, locally (no cluster needed).
    Check {
        /// Manifest file (multi-document YAML).
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
        /// `table` prints the verdicts; `yaml` also prints the objects the controller would write.
        #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Print a ClusterEndpoint built from an existing selector-less Service and its Endpoints.
    Import(ImportArgs),
}

#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// Name of the Service (and of its Endpoints).
    pub service: String,
    /// Namespace of the Service; default: the kubeconfig's.
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Read the Service and Endpoints from this manifest instead of the cluster.
    #[arg(short = 'f', long = "filename")]
    pub file: Option<PathBuf>,
    /// Kubeconfig file (when reading from the cluster).
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Health check for the imported ports.
    #[arg(long, value_enum, default_value_t = ProbeChoice::Tcp)]
    pub probe: ProbeChoice,
    /// Path of HTTP(S) probes.
    #[arg(long, default_value = "/")]
    pub http_path: String,
    /// Probe period in seconds.
    #[arg(long, default_value_t = kube_endpoints_api::DEFAULT_PERIOD_SECONDS, value_parser = clap::value_parser!(i32).range(1..=3600))]
    pub period_seconds: i32,
    /// API group of the ClusterEndpoint to print.
    #[arg(long, default_value = kube_endpoints_api::GROUP)]
    pub group: String,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Output {
    Table,
    Yaml,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Kubeconfig file; without it, $KUBECONFIG, ~/.kube/config or the in-cluster service account.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Namespace to watch (repeatable); all namespaces when unset.
    #[arg(long = "namespace", env = "WATCH_NAMESPACES", value_delimiter = ',')]
    pub namespaces: Vec<String>,
    /// API group(s) of ClusterEndpoint to serve (repeatable), e.g. sealos.io to take over endpoints-operator objects in place.
    #[arg(long = "group", env = "KUBE_ENDPOINTS_GROUPS", value_delimiter = ',', default_value = kube_endpoints_api::GROUP)]
    pub groups: Vec<String>,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Also keep the compatibility core/v1 Endpoints object (deprecated upstream since 1.33).
    #[arg(long, env = "COMPAT_ENDPOINTS", default_value_t = true, action = clap::ArgAction::Set)]
    pub compat_endpoints: bool,
    /// Value of the endpointslice.kubernetes.io/managed-by label.
    #[arg(long, default_value = crate::DEFAULT_CONTROLLER_ID)]
    pub controller_id: String,
    /// Run the controller only while holding a coordination.k8s.io Lease, so
    /// that several replicas can run with one active (turn on with replicas > 1).
    #[arg(long, env = "LEADER_ELECTION", default_value_t = false, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    /// Name of the Lease used for leader election.
    #[arg(long, env = "LEASE_NAME", default_value = "kube-endpoints")]
    pub lease_name: String,
    /// Namespace of the Lease; default: the pod's own namespace ($POD_NAMESPACE or the service-account mount), else `default`.
    #[arg(long, env = "LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// Seconds the Lease stays valid without renewal: how long a standby waits after the leader dies without releasing it.
    #[arg(long, env = "LEASE_DURATION_SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(3..=300))]
    pub lease_duration_seconds: u64,
    /// Reconciles running at once (per served group and namespace); bounds the load a burst of new objects puts on kube-apiserver.
    #[arg(long, env = "MAX_CONCURRENT_RECONCILES", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub max_concurrent_reconciles: u16,
    /// Also export kube_endpoints_host_ready{namespace,name,port,host}: one series per probed host-port (cardinality grows with the fleet).
    #[arg(long, env = "PER_HOST_METRICS", default_value_t = false, action = clap::ArgAction::Set)]
    pub per_host_metrics: bool,
}

pub fn main(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Crd { group } => match kube_endpoints_api::crd_yaml(&group) {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: cannot render the CRD: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Check { file, output } => {
            runtime().map_or(ExitCode::FAILURE, |rt| rt.block_on(check(file, output)))
        }
        Command::Import(args) => {
            runtime().map_or(ExitCode::FAILURE, |rt| rt.block_on(import(args)))
        }
        Command::Run(args) => {
            init_logging(args.log_format);
            runtime().map_or(ExitCode::FAILURE, |rt| rt.block_on(run(args)))
        }
    }
}

fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            None
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

async fn check(file: PathBuf, output: Output) -> ExitCode {
    let path = file.display().to_string();
    let content = match std::fs::read_to_string(&file) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: cannot read {path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let prober = match Prober::new(crate::user_agent()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: cannot set up probes: {e}");
            return ExitCode::FAILURE;
        }
    };
    match crate::check::check(&path, &content, &prober, output == Output::Yaml).await {
        Ok(report) => {
            print!("{}", report.text);
            if report.invalid {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn import(args: ImportArgs) -> ExitCode {
    let objects = match &args.file {
        Some(file) => read_service_manifest(file, &args.service),
        None => read_service_from_cluster(&args).await,
    };
    let (service, endpoints) = match objects {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let options = ImportOptions {
        group: args.group.clone(),
        probe: args.probe,
        http_path: args.http_path.clone(),
        period_seconds: args.period_seconds,
    };
    let imported = match crate::import::import(&service, endpoints.as_ref(), &options) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match crate::import::to_yaml(&imported) {
        Ok(yaml) => {
            print!("{yaml}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: cannot render YAML: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The Service named `name` and the Endpoints of that name from a manifest.
fn read_service_manifest(
    file: &PathBuf,
    name: &str,
) -> Result<(Service, Option<Endpoints>), String> {
    use serde::Deserialize;
    let path = file.display();
    let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read {path}: {e}"))?;
    let (mut service, mut endpoints) = (None, None);
    for (i, doc) in serde_yaml::Deserializer::from_str(&text).enumerate() {
        let value = serde_yaml::Value::deserialize(doc)
            .map_err(|e| format!("document {i} of {path} is not valid YAML: {e}"))?;
        let kind = value
            .get("kind")
            .and_then(|k| k.as_str())
            .unwrap_or_default();
        let named = value
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(|n| n.as_str())
            == Some(name);
        match kind {
            "Service" if named => {
                service = Some(
                    serde_yaml::from_value(value)
                        .map_err(|e| format!("document {i} of {path}: invalid Service: {e}"))?,
                );
            }
            "Endpoints" if named => {
                endpoints = Some(
                    serde_yaml::from_value(value)
                        .map_err(|e| format!("document {i} of {path}: invalid Endpoints: {e}"))?,
                );
            }
            _ => {}
        }
    }
    let service = service.ok_or_else(|| format!("{path} has no Service named {name:?}"))?;
    Ok((service, endpoints))
}

async fn read_service_from_cluster(
    args: &ImportArgs,
) -> Result<(Service, Option<Endpoints>), String> {
    let client = client(args.kubeconfig.as_ref()).await?;
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string());
    let services: Api<Service> = Api::namespaced(client.clone(), &namespace);
    let service = services
        .get_opt(&args.service)
        .await
        .map_err(|e| format!("cannot read Service {namespace}/{}: {e}", args.service))?
        .ok_or_else(|| format!("Service {namespace}/{} not found", args.service))?;
    let endpoints: Api<Endpoints> = Api::namespaced(client, &namespace);
    let endpoints = endpoints
        .get_opt(&args.service)
        .await
        .map_err(|e| format!("cannot read Endpoints {namespace}/{}: {e}", args.service))?;
    Ok((service, endpoints))
}

async fn client(kubeconfig: Option<&PathBuf>) -> Result<Client, String> {
    let config = kube_config(kubeconfig).await?;
    Client::try_from(config).map_err(|e| format!("cannot build the Kubernetes client: {e}"))
}

async fn kube_config(kubeconfig: Option<&PathBuf>) -> Result<kube::Config, String> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)
                .map_err(|e| format!("cannot read kubeconfig {}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .map_err(|e| format!("invalid kubeconfig {}: {e}", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| format!("no Kubernetes configuration found: {e}"))?,
    };
    // No blind retries of 429/503/504: an overloaded apiserver gets fewer
    // requests, not more; a failed reconcile is requeued, a watch backs off.
    let mut config = config;
    config.default_retry = false;
    Ok(config)
}

async fn run(args: RunArgs) -> ExitCode {
    raise_open_files_limit();
    let config = match kube_config(args.kubeconfig.as_ref()).await {
        Ok(c) => c,
        Err(e) => {
            error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let lease = args.leader_election.then(|| LeaseConfig {
        name: args.lease_name.clone(),
        namespace: args
            .lease_namespace
            .clone()
            .unwrap_or_else(crate::leader::default_namespace),
        identity: crate::leader::identity(),
        duration_seconds: args.lease_duration_seconds,
    });
    // With leader election every write of the controllers passes the fence
    // (see `fence`); the Lease has a client of its own.
    let fence = Fence::new();
    let options = |fenced: bool| ClientOptions {
        user_agent: Some(match &lease {
            Some(l) => format!("{} ({})", crate::user_agent(), l.identity),
            None => crate::user_agent(),
        }),
        tcp_user_timeout: lease.as_ref().map(LeaseConfig::tcp_user_timeout),
        fence: (fenced && lease.is_some()).then(|| fence.clone()),
    };
    let clients = crate::fence::client(config.clone(), options(true))
        .and_then(|controllers| Ok((controllers, crate::fence::client(config, options(false))?)));
    let (client, lease_client) = match clients {
        Ok(c) => c,
        Err(e) => {
            error!("cannot build the Kubernetes client: {e}");
            return ExitCode::FAILURE;
        }
    };
    let prober = match Prober::new(crate::user_agent()) {
        Ok(p) => p,
        Err(e) => {
            error!(error = %e, "cannot set up probes");
            return ExitCode::FAILURE;
        }
    };
    let metrics = Arc::new(Metrics::new(args.per_host_metrics));
    let listener = match crate::server::bind(args.metrics_addr).await {
        Ok(l) => l,
        Err(e) => {
            error!(addr = %args.metrics_addr, error = %e, "cannot listen for metrics");
            return ExitCode::FAILURE;
        }
    };
    let shutdown = CancellationToken::new();
    let liveness = Liveness::default();
    tokio::spawn(crate::server::serve(
        listener,
        metrics.clone(),
        liveness.clone(),
        shutdown.clone(),
    ));
    tokio::spawn(stop_on_signal(shutdown.clone()));

    let settings = Settings {
        controller_id: args.controller_id.clone(),
        field_manager: crate::FIELD_MANAGER.to_string(),
        write_endpoints: args.compat_endpoints,
        max_concurrent_reconciles: args.max_concurrent_reconciles,
    };
    let namespaces: Vec<Option<String>> = if args.namespaces.is_empty() {
        vec![None]
    } else {
        args.namespaces.iter().cloned().map(Some).collect()
    };
    let scopes: Vec<Scope> = args
        .groups
        .iter()
        .flat_map(|group| {
            namespaces.iter().map(|namespace| Scope {
                group: group.clone(),
                namespace: namespace.clone(),
            })
        })
        .collect();
    // Called anew at every takeover.
    let controllers = {
        let (client, metrics) = (client.clone(), metrics.clone());
        move |stop: CancellationToken| {
            let scopes = scopes
                .iter()
                .map(|s| Scope {
                    group: s.group.clone(),
                    namespace: s.namespace.clone(),
                })
                .collect();
            run_scopes(
                client.clone(),
                scopes,
                settings.clone(),
                metrics.clone(),
                prober.clone(),
                stop,
            )
        }
    };
    let Some(lease) = lease else {
        metrics.leader.set(1);
        return controllers(shutdown).await;
    };
    run_while_leading(
        lease_client,
        lease,
        &metrics,
        &liveness,
        fence,
        shutdown,
        controllers,
    )
    .await
    .unwrap_or(ExitCode::SUCCESS)
}

/// Raise the soft limit of open files to the hard limit: every probe and
/// connection needs a descriptor, and container runtimes often start
/// processes with a soft limit of 1024 (Go does this by itself; Rust does not).
fn raise_open_files_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => info!(limit, "open files limit"),
        Err(e) => warn!(error = %e, "cannot raise the open files limit"),
    }
}

/// Retries of a served group whose CRD is missing: doubling from the first
/// to the last.
const SCOPE_RETRY_MIN: std::time::Duration = std::time::Duration::from_secs(5);
const SCOPE_RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(60);

/// Every (group, namespace) controller, until `stop` is cancelled or one of
/// them fails for good.
async fn run_scopes(
    client: Client,
    scopes: Vec<Scope>,
    settings: Settings,
    metrics: Arc<Metrics>,
    prober: Prober,
    stop: CancellationToken,
) -> ExitCode {
    let tasks: Vec<_> = scopes
        .into_iter()
        .map(|scope| {
            let (client, settings, metrics, prober, stop) = (
                client.clone(),
                settings.clone(),
                metrics.clone(),
                prober.clone(),
                stop.clone(),
            );
            // A group whose CRD is missing (or not yet readable) is retried
            // with backoff while the other groups run: one missing CRD must
            // not stop every group, nor crash-loop the pod.
            tokio::spawn(async move {
                let mut pause = SCOPE_RETRY_MIN;
                loop {
                    let scope = Scope {
                        group: scope.group.clone(),
                        namespace: scope.namespace.clone(),
                    };
                    match run_scope(
                        client.clone(),
                        scope,
                        settings.clone(),
                        metrics.clone(),
                        prober.clone(),
                        stop.clone(),
                    )
                    .await
                    {
                        Err(e @ RunError::CrdMissing { .. }) => {
                            error!(reason = e.reason(), retry_in = ?pause, "{e}; the other served groups keep running");
                        }
                        other => return other,
                    }
                    tokio::select! {
                        () = stop.cancelled() => return Ok(()),
                        () = tokio::time::sleep(pause) => {}
                    }
                    pause = (pause * 2).min(SCOPE_RETRY_MAX);
                }
            })
        })
        .collect();
    let mut code = ExitCode::SUCCESS;
    for result in futures::future::join_all(tasks).await {
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                error!(reason = e.reason(), "{e}");
                stop.cancel();
                code = ExitCode::FAILURE;
            }
            Err(e) => {
                error!(error = %e, "controller task failed");
                stop.cancel();
                code = ExitCode::FAILURE;
            }
        }
    }
    info!("stopped");
    code
}

async fn stop_on_signal(shutdown: CancellationToken) {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        () = terminate => {},
    }
    info!("shutting down");
    shutdown.cancel();
}
