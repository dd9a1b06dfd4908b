//! The `kube-endpoints` command line: `run`, `crd`, `check` and `import`.
//! Every subcommand returns its exit code or a [`CliError`], which
//! [`main`] reports once.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};
use kube::Client;
use kube::config::{InferConfigError, KubeConfigOptions, Kubeconfig, KubeconfigError};
use kube_endpoints_probe::{ProbeError, Prober};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::budget::{Budget, Limits};
use crate::builder::BuildSettings;
use crate::cluster_ranges::{self, DiscoverySettings, RangeSource};
use crate::consent::AdoptionPolicy;
use crate::context::{Settings, Shared};
use crate::fence::{ClientOptions, Fence};
use crate::fleet_guard::{FleetGuard, FleetGuardSettings};
use crate::import::{ImportError, ImportOptions, ProbeChoice, ReadError};
use crate::leader::{LeaseConfig, run_while_leading};
use crate::metrics::Metrics;
use crate::policy::AddressPolicy;
use crate::resolve::{ResolverSettings, TtlBounds};
use crate::scope::{Scope, ScopeError};
use crate::server::Liveness;
use crate::yaml;

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
    Run(Box<RunArgs>),
    /// Print the ClusterEndpoint CRD as YAML.
    Crd {
        /// API group to generate the CRD for.
        #[arg(long, default_value = kube_endpoints_api::GROUP)]
        group: String,
    },
    /// Validate manifests and probe their hosts once, locally (no cluster needed).
    ///
    /// Prints, per valid object, how each probed port is probed (method,
    /// expected statuses, send/expect, probe port, schedule; never the
    /// payloads or patterns themselves), then one verdict per host.
    Check {
        /// Manifest file (multi-document YAML).
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
        /// `table` prints the verdicts; `yaml` also prints the objects the controller would write.
        #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Table)]
        output: Output,
        /// DNS server (IP or IP:PORT) that resolves the hosts given as DNS names; repeat for several. Default: the system's resolver configuration.
        #[arg(long = "dns-server", value_delimiter = ',', value_parser = parse_dns_server)]
        dns_servers: Vec<SocketAddr>,
    },
    /// Print a ClusterEndpoint built from an existing selector-less Service and its Endpoints.
    Import(ImportArgs),
    /// Drain a host: it stays listed, terminating (no new connections), with its probe verdict as `serving`.
    ///
    /// Sets `drain: true` on every entry of HOST in the object (a string
    /// entry becomes `{address, drain: true}`) and records who ran the
    /// command (the status and the `HostDrained` Event say who).
    Drain(DrainArgs),
    /// Undrain a host: clears `drain` on every entry of HOST (an entry with no other field becomes a string again).
    Undrain(DrainArgs),
}

#[derive(clap::Args, Debug)]
pub struct DrainArgs {
    /// Name of the ClusterEndpoint.
    pub object: String,
    /// The host, as listed (an IP address matches any spelling of it).
    pub host: String,
    /// Namespace of the ClusterEndpoint; default: the kubeconfig's.
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Kubeconfig file.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// API group of the ClusterEndpoint.
    #[arg(long, default_value = kube_endpoints_api::GROUP)]
    pub group: String,
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
    /// Value of the endpointslice.kubernetes.io/managed-by label: a label value of your own domain (not Kubernetes' *.k8s.io).
    #[arg(long, default_value = crate::DEFAULT_CONTROLLER_ID, value_parser = controller_id)]
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
    /// Shards the objects are split into (needs --leader-election=true when above 1): each shard has a Lease of its own (`<lease-name>-shard-<i>`), an object belongs to shard hash(namespace/name) mod N, and every replica leads about N/replicas shards, running the controllers for those shards' objects only. 1 keeps a single Lease (`--lease-name`) and one active replica.
    #[arg(long, env = "SHARDS", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub shards: u32,
    /// Seconds the Lease stays valid without renewal: how long a standby waits after the leader dies without releasing it.
    #[arg(long, env = "LEASE_DURATION_SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(3..=300))]
    pub lease_duration_seconds: u64,
    /// Reconciles running at once (per served group and namespace); bounds the load a burst of new objects puts on kube-apiserver.
    #[arg(long, env = "MAX_CONCURRENT_RECONCILES", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub max_concurrent_reconciles: u16,
    /// Also export kube_endpoints_host_ready{namespace,name,port,host}: one series per probed host-port (cardinality grows with the fleet).
    #[arg(long, env = "PER_HOST_METRICS", default_value_t = false, action = clap::ArgAction::Set)]
    pub per_host_metrics: bool,
    /// Address policy: when set, hosts must be inside one of these CIDRs (comma-separated or repeated); the denies below still apply.
    #[arg(long = "allowed-cidrs", env = "ALLOWED_CIDRS", value_delimiter = ',', value_parser = parse_cidr)]
    pub allowed_cidrs: Vec<ipnet::IpNet>,
    /// Address policy: hosts inside these CIDRs are never probed nor written, on top of the cluster's own ranges and the cloud metadata addresses (always denied).
    #[arg(long = "denied-cidrs", env = "DENIED_CIDRS", value_delimiter = ',', value_parser = parse_cidr)]
    pub denied_cidrs: Vec<ipnet::IpNet>,
    /// Address policy: which of the cluster's own ranges are denied, discovered at start and whenever they change (services: ServiceCIDRs and --service-cidrs; pods: the nodes' podCIDRs; nodes: the nodes' addresses; apiserver: the endpoints of default/kubernetes), or none.
    #[arg(
        long,
        env = "DENY_CLUSTER_RANGES",
        value_enum,
        value_delimiter = ',',
        default_value = "services,pods,nodes,apiserver"
    )]
    pub deny_cluster_ranges: Vec<RangeSource>,
    /// The cluster's Service CIDRs, for apiservers that serve no networking.k8s.io/v1 ServiceCIDRs (before Kubernetes 1.33); added to the discovered ones otherwise.
    #[arg(long = "service-cidrs", env = "SERVICE_CIDRS", value_delimiter = ',', value_parser = parse_cidr)]
    pub service_cidrs: Vec<ipnet::IpNet>,
    /// Target budget: host-ports the controller carries in all; 0 is unlimited. An object that does not fit is refused whole (Initialized=False, BudgetExceeded); objects are admitted oldest first and keep their targets.
    #[arg(long, env = "MAX_TARGETS", default_value_t = 0)]
    pub max_targets: usize,
    /// Target budget: host-ports the controller carries per namespace; 0 is unlimited.
    #[arg(long, env = "MAX_TARGETS_PER_NAMESPACE", default_value_t = 0)]
    pub max_targets_per_namespace: usize,
    /// Probes in flight at once (per served group and namespace), so that many slow or silent hosts cannot exhaust file descriptors.
    #[arg(long, env = "MAX_IN_FLIGHT_PROBES", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_in_flight_probes: u32,
    /// Adopt a hand-made Service or Endpoints only when it is annotated kube-endpoints.io/adopt: "true" (recommended in multi-tenant clusters); by default any unowned one is adopted, except default/kubernetes, kube-system, kube-public and other tools' objects.
    #[arg(long, env = "REQUIRE_ADOPT_ANNOTATION", default_value_t = false, action = clap::ArgAction::Set)]
    pub require_adopt_annotation: bool,
    /// Read probe credentials (CA bundles, client certificates, header values) from Secrets and ConfigMaps labelled kube-endpoints.io/probe-credentials: "true" in the watched namespaces (a label-selected watch: no other Secret is read); needs list/watch on secrets and configmaps (the chart grants it and turns this on). Off by default, so that a controller whose RBAC has no such grant keeps working: references to Secrets and ConfigMaps are then reported on their objects as errors.
    #[arg(long, env = "PROBE_CREDENTIALS", default_value_t = false, action = clap::ArgAction::Set)]
    pub probe_credentials: bool,
    /// A TLS certificate a probe sees expiring within this many days raises a CertificateExpiring Warning Event (once, when it enters the window) and is marked expiresSoon in status; 0 turns the warning off.
    #[arg(long, env = "CERT_EXPIRY_WARNING_DAYS", default_value_t = 14, value_parser = clap::value_parser!(u32).range(0..=3650))]
    pub cert_expiry_warning_days: u32,
    /// Fleet guard: when more than this percentage of all the controller's probed host-ports turn from ready to failing within --fleet-guard-window-seconds, stop taking failing hosts out of rotation (the FleetGuard condition and the kube_endpoints_fleet_guard_frozen metric say so) until that share drops to the percentage or below; 0 turns the guard off.
    #[arg(long, env = "FLEET_GUARD_PERCENT", default_value_t = 50, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub fleet_guard_percent: u8,
    /// The fleet guard never trips while the controller probes fewer host-ports than this.
    #[arg(long, env = "FLEET_GUARD_MIN_TARGETS", default_value_t = 10)]
    pub fleet_guard_min_targets: usize,
    /// Failures within this many seconds count as simultaneous for the fleet guard. Hosts cut off at once leave rotation spread over about one probe period, so keep it at least the longest periodSeconds in use.
    #[arg(long, env = "FLEET_GUARD_WINDOW_SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub fleet_guard_window_seconds: u64,
    /// DNS server (IP or IP:PORT, port 53 by default) that resolves the hosts given as DNS names; repeat for several. Default: the system's resolver configuration (/etc/resolv.conf, with its search domains).
    #[arg(long = "dns-server", env = "DNS_SERVERS", value_delimiter = ',', value_parser = parse_dns_server)]
    pub dns_servers: Vec<SocketAddr>,
    /// Seconds: a DNS name is resolved again after its records' TTL, but never sooner than this (a TTL of 0 would ask for every probe); a port's resolvePeriodSeconds still applies when shorter.
    #[arg(long, env = "DNS_MIN_TTL", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=86_400))]
    pub dns_min_ttl: u32,
    /// Seconds: a DNS name is resolved again at the latest after this, however long its TTL.
    #[arg(long, env = "DNS_MAX_TTL", default_value_t = 3600, value_parser = clap::value_parser!(u32).range(1..=86_400))]
    pub dns_max_ttl: u32,
}

/// A DNS server address: `IP:PORT`, `[IPv6]:PORT`, or a bare IP (port 53).
fn parse_dns_server(s: &str) -> Result<SocketAddr, String> {
    s.parse::<SocketAddr>()
        .or_else(|_| {
            s.parse::<std::net::IpAddr>()
                .map(|ip| SocketAddr::new(ip, 53))
        })
        .map_err(|_| format!("{s:?} is neither IP:PORT nor an IP address"))
}

/// A CIDR, or a single address (its /32 or /128).
fn parse_cidr(s: &str) -> Result<ipnet::IpNet, String> {
    cluster_ranges::parse_net(s)
        .ok_or_else(|| format!("{s:?} is neither a CIDR (10.0.0.0/8, fd00::/8) nor an IP address"))
}

impl RunArgs {
    fn settings(&self) -> Settings {
        Settings {
            build: BuildSettings {
                controller_id: self.controller_id.clone(),
                compat_endpoints: self.compat_endpoints,
            },
            max_concurrent_reconciles: self.max_concurrent_reconciles,
            policy: AddressPolicy {
                allowed: self.allowed_cidrs.clone(),
                denied: self.denied_cidrs.clone(),
            },
            adoption: AdoptionPolicy {
                require_annotation: self.require_adopt_annotation,
                our_names: vec![crate::FIELD_MANAGER.to_string(), self.controller_id.clone()],
            },
            max_in_flight_probes: usize::try_from(self.max_in_flight_probes).unwrap_or(usize::MAX),
            probe_credentials: self.probe_credentials,
            cert_expiry_warning: (self.cert_expiry_warning_days > 0).then(|| {
                std::time::Duration::from_secs(u64::from(self.cert_expiry_warning_days) * 86_400)
            }),
            fleet_guard: FleetGuardSettings {
                percent: self.fleet_guard_percent,
                min_targets: self.fleet_guard_min_targets,
                window: std::time::Duration::from_secs(self.fleet_guard_window_seconds),
            },
            dns: ResolverSettings {
                servers: self.dns_servers.clone(),
                bounds: TtlBounds {
                    floor: std::time::Duration::from_secs(self.dns_min_ttl.into()),
                    ceiling: std::time::Duration::from_secs(
                        self.dns_max_ttl.max(self.dns_min_ttl).into(),
                    ),
                },
            },
            shard: None,
        }
    }

    fn discovery(&self) -> DiscoverySettings {
        DiscoverySettings {
            sources: self.deny_cluster_ranges.iter().copied().collect(),
            service_cidrs: self.service_cidrs.clone(),
        }
    }

    fn limits(&self) -> Limits {
        let limit = |n: usize| (n > 0).then_some(n);
        Limits {
            global: limit(self.max_targets),
            per_namespace: limit(self.max_targets_per_namespace),
        }
    }
}

fn controller_id(value: &str) -> Result<String, String> {
    crate::builder::validate_controller_id(value).map(|()| value.to_string())
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot render the CRD: {0}")]
    Crd(yaml::WriteError),
    #[error("cannot set up probes: {0}")]
    Probes(ProbeError),
    #[error(transparent)]
    Manifest(#[from] yaml::FileError),
    #[error(transparent)]
    ImportRead(#[from] ReadError),
    #[error(transparent)]
    Import(#[from] ImportError),
    #[error(transparent)]
    Drain(#[from] crate::drain::DrainError),
    #[error("cannot render YAML: {0}")]
    Yaml(yaml::WriteError),
    #[error("cannot read kubeconfig {path}: {source}")]
    Kubeconfig {
        path: String,
        source: KubeconfigError,
    },
    #[error("no Kubernetes configuration found: {0}")]
    NoKubeconfig(InferConfigError),
    #[error("cannot build the Kubernetes client: {0}")]
    Client(kube::Error),
    #[error("cannot listen for metrics on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Scope(#[from] ScopeError),
    #[error("a controller task failed: {0}")]
    Task(tokio::task::JoinError),
    #[error("--shards {0} needs --leader-election=true: the shards are handed out with Leases")]
    ShardsWithoutLeaderElection(u32),
}

impl CliError {
    /// Stable, CamelCase; logged by `run` (operators grep for it).
    pub fn reason(&self) -> &'static str {
        match self {
            CliError::Scope(e) => e.reason(),
            CliError::Runtime(_) | CliError::Task(_) => "RuntimeFailed",
            CliError::Probes(_) => "ProbeSetupFailed",
            CliError::Kubeconfig { .. } | CliError::NoKubeconfig(_) | CliError::Client(_) => {
                "KubeconfigInvalid"
            }
            CliError::Listen { .. } => "ListenFailed",
            CliError::Crd(_) | CliError::Yaml(_) => "RenderFailed",
            CliError::Manifest(_) | CliError::ImportRead(_) => "ReadFailed",
            CliError::Import(_) => "ImportFailed",
            CliError::Drain(_) => "DrainFailed",
            CliError::ShardsWithoutLeaderElection(_) => "InvalidFlags",
        }
    }
}

/// Run the command; an error is reported here, once (logged by `run`,
/// printed by the others).
pub fn main(cli: Cli) -> ExitCode {
    let logs = matches!(cli.command, Command::Run(_));
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) if logs => {
            error!(reason = e.reason(), "{e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(cli: Cli) -> Result<ExitCode, CliError> {
    match cli.command {
        Command::Crd { group } => {
            print!("{}", yaml::crd(&group).map_err(CliError::Crd)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Check {
            file,
            output,
            dns_servers,
        } => runtime()?.block_on(check(file, output, dns_servers)),
        Command::Import(args) => runtime()?.block_on(import(args)),
        Command::Drain(args) => runtime()?.block_on(drain(args, true)),
        Command::Undrain(args) => runtime()?.block_on(drain(args, false)),
        Command::Run(args) => {
            init_logging(args.log_format);
            runtime()?.block_on(run(*args))
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)
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

async fn check(
    file: PathBuf,
    output: Output,
    dns_servers: Vec<SocketAddr>,
) -> Result<ExitCode, CliError> {
    let prober = Prober::new(crate::user_agent()).map_err(CliError::Probes)?;
    let dns = crate::resolve::hickory_or_failing(&ResolverSettings {
        servers: dns_servers,
        bounds: TtlBounds::default(),
    });
    let report = crate::check::check(&file, &prober, &dns, output == Output::Yaml).await?;
    print!("{}", report.text);
    Ok(if report.invalid {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

async fn import(args: ImportArgs) -> Result<ExitCode, CliError> {
    let (service, endpoints) = match &args.file {
        Some(file) => crate::import::read_from_manifest(file, &args.service)?,
        None => {
            let client = client(args.kubeconfig.as_ref()).await?;
            let namespace = args
                .namespace
                .clone()
                .unwrap_or_else(|| client.default_namespace().to_string());
            crate::import::read_from_cluster(client, &namespace, &args.service).await?
        }
    };
    let options = ImportOptions {
        group: args.group.clone(),
        probe: args.probe,
        http_path: args.http_path.clone(),
        period_seconds: args.period_seconds,
    };
    let imported = crate::import::import(&service, endpoints.as_ref(), &options)?;
    print!(
        "{}",
        crate::import::to_yaml(&imported).map_err(CliError::Yaml)?
    );
    Ok(ExitCode::SUCCESS)
}

async fn drain(args: DrainArgs, drain: bool) -> Result<ExitCode, CliError> {
    let client = client(args.kubeconfig.as_ref()).await?;
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string());
    let resource = kube_endpoints_api::api_resource(&args.group);
    let done = crate::drain::drain(
        client,
        &resource,
        &namespace,
        &args.object,
        &args.host,
        drain,
    )
    .await?;
    println!("{done}");
    Ok(ExitCode::SUCCESS)
}

async fn client(kubeconfig: Option<&PathBuf>) -> Result<Client, CliError> {
    Client::try_from(kube_config(kubeconfig).await?).map_err(CliError::Client)
}

async fn kube_config(kubeconfig: Option<&PathBuf>) -> Result<kube::Config, CliError> {
    let mut config = match kubeconfig {
        Some(path) => {
            let invalid = |source| CliError::Kubeconfig {
                path: path.display().to_string(),
                source,
            };
            let kc = Kubeconfig::read_from(path).map_err(invalid)?;
            kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .map_err(invalid)?
        }
        None => kube::Config::infer()
            .await
            .map_err(CliError::NoKubeconfig)?,
    };
    // No blind retries of 429/503/504: an overloaded apiserver gets fewer
    // requests, not more; a failed reconcile is requeued, a watch backs off.
    config.default_retry = false;
    Ok(config)
}

async fn run(args: RunArgs) -> Result<ExitCode, CliError> {
    raise_open_files_limit();
    let config = kube_config(args.kubeconfig.as_ref()).await?;
    let lease = args.leader_election.then(|| LeaseConfig {
        name: args.lease_name.clone(),
        namespace: args
            .lease_namespace
            .clone()
            .unwrap_or_else(crate::leader::default_namespace),
        identity: crate::leader::identity(),
        duration_seconds: args.lease_duration_seconds,
    });
    if args.shards > 1 && lease.is_none() {
        return Err(CliError::ShardsWithoutLeaderElection(args.shards));
    }
    // With leader election every write of the controllers passes the fence
    // (see `fence`); the Lease has a client of its own. With shards, each
    // shard has a fence and a client of its own.
    let fence = Fence::new();
    let options = |fence: Option<&Fence>| ClientOptions {
        user_agent: Some(match &lease {
            Some(l) => format!("{} ({})", crate::user_agent(), l.identity),
            None => crate::user_agent(),
        }),
        tcp_user_timeout: lease.as_ref().map(LeaseConfig::tcp_user_timeout),
        fence: fence.filter(|_| lease.is_some()).cloned(),
    };
    let client =
        crate::fence::client(config.clone(), options(Some(&fence))).map_err(CliError::Client)?;
    let shard_clients = (1..args.shards)
        .map(|_| {
            let fence = Fence::new();
            crate::fence::client(config.clone(), options(Some(&fence)))
                .map(|client| (fence, client))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(CliError::Client)?;
    let lease_client = crate::fence::client(config, options(None)).map_err(CliError::Client)?;
    let prober = Prober::new(crate::user_agent()).map_err(CliError::Probes)?;
    let metrics = Arc::new(Metrics::new(args.per_host_metrics));
    // Bind before anything runs, so that a bad address fails start-up.
    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .map_err(|source| CliError::Listen {
            addr: args.metrics_addr,
            source,
        })?;
    let shutdown = CancellationToken::new();
    let liveness = Liveness::default();
    tokio::spawn(crate::server::serve(
        listener,
        metrics.clone(),
        liveness.clone(),
        shutdown.clone(),
    ));
    tokio::spawn(stop_on_signal(shutdown.clone()));

    let settings = args.settings();
    let discovery = args.discovery();
    let limits = args.limits();
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
    let controllers = Controllers {
        scopes,
        settings,
        discovery,
        limits,
        metrics: metrics.clone(),
        prober,
    };
    let Some(lease) = lease else {
        metrics.leader.set(1);
        controllers.run(client, None, shutdown).await?;
        return Ok(ExitCode::SUCCESS);
    };
    if args.shards > 1 {
        // Shard 0 writes with the first client, the others with their own.
        let fenced: Vec<(Fence, Client)> = std::iter::once((fence, client))
            .chain(shard_clients)
            .collect();
        let controllers = Arc::new(controllers);
        let per_shard = |shard: crate::sharding::Shard| {
            let (fence, client) = fenced[shard.index as usize].clone();
            let controllers = controllers.clone();
            // Called anew at every takeover of the shard.
            let work = move |stop| {
                controllers
                    .clone()
                    .run_owned(client.clone(), Some(shard), stop)
            };
            (fence, work)
        };
        let results = crate::shards::run_sharded(
            lease_client,
            lease,
            args.shards,
            metrics,
            liveness,
            shutdown,
            per_shard,
        )
        .await;
        return results
            .into_iter()
            .collect::<Result<Vec<()>, _>>()
            .map(|_| ExitCode::SUCCESS);
    }
    // Called anew at every takeover.
    let work = move |stop| {
        let controllers = controllers.clone();
        let client = client.clone();
        async move { controllers.run(client, None, stop).await }
    };
    // Losing the Lease is not an error: the replica stands by again
    // in-process (see `leader`).
    let led = run_while_leading(
        lease_client,
        lease,
        &metrics,
        &liveness,
        fence,
        shutdown,
        work,
    )
    .await;
    led.unwrap_or(Ok(())).map(|()| ExitCode::SUCCESS)
}

/// What every run of the controllers (one per leadership term, or per
/// shard's term) starts from.
#[derive(Clone)]
struct Controllers {
    scopes: Vec<Scope>,
    settings: Settings,
    discovery: DiscoverySettings,
    limits: Limits,
    metrics: Arc<Metrics>,
    prober: Prober,
}

impl Controllers {
    /// Every scope's controller, writing with `client`, for the objects of
    /// `shard` only when given, until `stop`.
    async fn run(
        &self,
        client: Client,
        shard: Option<crate::sharding::Shard>,
        stop: CancellationToken,
    ) -> Result<(), CliError> {
        let mut settings = self.settings.clone();
        settings.shard = shard;
        run_scopes(client, self, settings, stop).await
    }

    /// [`Self::run`] as a `'static` future.
    async fn run_owned(
        self: Arc<Self>,
        client: Client,
        shard: Option<crate::sharding::Shard>,
        stop: CancellationToken,
    ) -> Result<(), CliError> {
        self.run(client, shard, stop).await
    }
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
/// them fails for good (then the others are stopped too). A group whose CRD
/// is missing is retried, see [`run_scope_retrying`]. They share the
/// cluster's ranges (discovered first: nothing is probed or written before
/// the address policy knows them) and the target budgets.
async fn run_scopes(
    client: Client,
    controllers: &Controllers,
    settings: Settings,
    stop: CancellationToken,
) -> Result<(), CliError> {
    let Controllers {
        scopes,
        discovery,
        limits,
        metrics,
        prober,
        ..
    } = controllers.clone();
    let ranges = if discovery.sources.iter().any(|s| *s != RangeSource::None)
        && !discovery.sources.contains(&RangeSource::None)
    {
        match cluster_ranges::discover(client.clone(), discovery, stop.clone()).await {
            Ok(ranges) => ranges,
            // Stopped before it was ready: nothing ran, nothing to undo.
            Err(_) => return Ok(()),
        }
    } else {
        cluster_ranges::fixed(&discovery)
    };
    let shared = Shared {
        ranges,
        budget: Arc::new(Budget::new(limits)),
        fleet_guard: Arc::new(FleetGuard::new(settings.fleet_guard)),
        dns: crate::resolve::hickory_or_failing(&settings.dns),
    };
    // A fresh guard per run (leadership term): a standby holds nothing.
    let frozen = metrics.fleet_guard_frozen.clone();
    frozen.set(0);
    let deps = ScopeDeps {
        client,
        settings,
        metrics,
        prober,
        shared,
        stop: stop.clone(),
    };
    let tasks: Vec<_> = scopes
        .into_iter()
        .map(|scope| tokio::spawn(run_scope_retrying(scope, deps.clone())))
        .collect();
    let mut first_error = None;
    for result in futures::future::join_all(tasks).await {
        let failed = match result {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => CliError::Scope(e),
            Err(e) => CliError::Task(e),
        };
        stop.cancel();
        // The first error is returned (and reported by `main`); any others
        // are logged here.
        match &first_error {
            None => first_error = Some(failed),
            Some(_) => error!(reason = failed.reason(), "{failed}"),
        }
    }
    frozen.set(0);
    info!("stopped");
    first_error.map_or(Ok(()), Err)
}

/// What every scope's controller runs with (each scope's task gets a clone).
#[derive(Clone)]
struct ScopeDeps {
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    prober: Prober,
    shared: Shared,
    stop: CancellationToken,
}

/// Run one scope; while its CRD is missing (or not yet readable), retry it
/// with backoff: one missing CRD must neither stop the other served groups
/// nor crash-loop the pod.
async fn run_scope_retrying(scope: Scope, deps: ScopeDeps) -> Result<(), ScopeError> {
    let ScopeDeps {
        client,
        settings,
        metrics,
        prober,
        shared,
        stop,
    } = deps;
    let mut pause = SCOPE_RETRY_MIN;
    loop {
        let run = scope.clone().run(
            client.clone(),
            settings.clone(),
            metrics.clone(),
            prober.clone(),
            shared.clone(),
            stop.clone(),
        );
        match run.await {
            Err(e @ ScopeError::CrdMissing { .. }) => {
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
