//! The `kube-endpoints` command line: `run`, `crd` and `check`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};
use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube_endpoints_probe::Prober;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::metrics::Metrics;
use crate::reconcile::Settings;
use crate::run::{Scope, run_scope};

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

async fn client(kubeconfig: Option<&PathBuf>) -> Result<Client, String> {
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
    Client::try_from(config).map_err(|e| format!("cannot build the Kubernetes client: {e}"))
}

async fn run(args: RunArgs) -> ExitCode {
    let client = match client(args.kubeconfig.as_ref()).await {
        Ok(c) => c,
        Err(e) => {
            error!("{e}");
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
    let metrics = Arc::new(Metrics::new());
    let listener = match crate::server::bind(args.metrics_addr).await {
        Ok(l) => l,
        Err(e) => {
            error!(addr = %args.metrics_addr, error = %e, "cannot listen for metrics");
            return ExitCode::FAILURE;
        }
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(crate::server::serve(
        listener,
        metrics.clone(),
        shutdown.clone(),
    ));
    tokio::spawn(stop_on_signal(shutdown.clone()));

    let settings = Settings {
        controller_id: args.controller_id.clone(),
        field_manager: crate::FIELD_MANAGER.to_string(),
        write_endpoints: args.compat_endpoints,
    };
    let namespaces: Vec<Option<String>> = if args.namespaces.is_empty() {
        vec![None]
    } else {
        args.namespaces.iter().cloned().map(Some).collect()
    };
    let mut scopes = Vec::new();
    for group in &args.groups {
        for namespace in &namespaces {
            let scope = Scope {
                group: group.clone(),
                namespace: namespace.clone(),
            };
            scopes.push(tokio::spawn(run_scope(
                client.clone(),
                scope,
                settings.clone(),
                metrics.clone(),
                prober.clone(),
                shutdown.clone(),
            )));
        }
    }
    metrics.leader.set(1);
    let mut code = ExitCode::SUCCESS;
    for result in futures::future::join_all(scopes).await {
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                error!(reason = e.reason(), "{e}");
                shutdown.cancel();
                code = ExitCode::FAILURE;
            }
            Err(e) => {
                error!(error = %e, "controller task failed");
                shutdown.cancel();
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
