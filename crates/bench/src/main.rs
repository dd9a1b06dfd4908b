//! `kube-endpoints-bench`: speed, scale and API cost of a ClusterEndpoint
//! controller, measured against a real kube-apiserver + etcd with
//! network-namespace test hosts. See BENCHMARKS.md (which it writes).

mod compare;
mod datapath;
mod error;
mod options;
mod plots;
mod prom;
mod replicas;
mod report;
mod runner;
mod section;
mod stats;
mod sys;
mod watch;
mod workload;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;

use crate::error::{Error, Result, io_err};
use crate::options::Options;
use crate::report::Report;

#[derive(Parser, Debug)]
#[command(name = "kube-endpoints-bench", version, about)]
struct Cli {
    /// Profiles to run, comma-separated, or `all`: smoke, 10k, 100k,
    /// 100k-sharded (2 replicas, `--shards 4`), unreachable, mixed, datapath (through kube-proxy; run alone, it
    /// updates only its own section of the Markdown report).
    #[arg(long, default_value = "all", value_delimiter = ',')]
    profile: Vec<String>,
    /// Where the JSON results and the plots go.
    #[arg(long, default_value = "bench")]
    out_dir: PathBuf,
    /// The Markdown report to write.
    #[arg(long, default_value = "BENCHMARKS.md")]
    markdown: PathBuf,
    /// The controller under test as one string, split into words as a
    /// POSIX shell would (quote a word that holds spaces); `{kubeconfig}`,
    /// `{metrics_addr}`, `{metrics_port}`, `{namespace}` and `{group}` are
    /// filled in. Default: this repository's release build of
    /// `kube-endpoints run`.
    #[arg(long, allow_hyphen_values = true)]
    controller_cmd: Option<String>,
    /// Shortcut: the `kube-endpoints` binary for the default command.
    #[arg(long)]
    controller_bin: Option<PathBuf>,
    /// API group the objects are created under (e.g. sealos.io).
    #[arg(long, default_value = kube_endpoints_api::GROUP)]
    group: String,
    /// Judge readiness by EndpointSlices only (for controllers without the
    /// compatibility Endpoints).
    #[arg(long)]
    slices_only: bool,
    /// Objects created at once.
    #[arg(long, default_value_t = 48)]
    concurrency: usize,
    /// Overrides every profile's own time limit (seconds).
    #[arg(long)]
    profile_timeout: Option<u64>,
    /// Exit non-zero unless every profile produced its figures (CI).
    #[arg(long)]
    check: bool,
    /// Create the objects with headless Services (`clusterIP: None`), so
    /// that kube-apiserver allocates no ClusterIPs.
    #[arg(long)]
    headless: bool,
    /// Skip the plots.
    #[arg(long)]
    no_plots: bool,
    /// Compare with the predecessor: its binary (`make bench-peer` builds
    /// it from a checkout of labring/endpoints-operator). Each profile then
    /// runs for kube-endpoints and for it (once per `--peer-concurrency`),
    /// and only the side-by-side section of the Markdown report is
    /// rewritten; the JSON results go to `<out-dir>/peer/`.
    #[arg(long, requires = "peer_crd")]
    peer_bin: Option<PathBuf>,
    /// The predecessor's CRD manifest (its config/crd/sealos.io_clusterendpoints.yaml).
    #[arg(long)]
    peer_crd: Option<PathBuf>,
    /// The predecessor's `--maxconcurrent` values to run, comma-separated:
    /// by default its chart's setting (1) and kube-endpoints' default
    /// concurrency (16).
    #[arg(long, value_delimiter = ',', default_values_t = [1u16, 16])]
    peer_concurrency: Vec<u16>,
    /// The port the predecessor serves its metrics on (fixed in its code).
    #[arg(long, default_value_t = 9090)]
    peer_metrics_port: u16,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                eprintln!("  caused by: {s}");
                source = s.source();
            }
            ExitCode::FAILURE
        }
    }
}

fn repo_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .and_then(|p| p.parent())
        .map_or(manifest.clone(), PathBuf::from)
}

fn default_command(bin: PathBuf) -> Vec<String> {
    let mut cmd = vec![bin.display().to_string()];
    cmd.extend(
        [
            "run",
            "--kubeconfig",
            "{kubeconfig}",
            "--metrics-addr",
            "{metrics_addr}",
            "--namespace",
            "{namespace}",
            "--group",
            "{group}",
        ]
        .map(String::from),
    );
    cmd
}

async fn run(cli: Cli) -> Result<bool> {
    let all = cli.profile.iter().any(|p| p == "all");
    let names: Vec<String> = if all {
        workload::PROFILE_NAMES
            .iter()
            .map(|s| (*s).to_string())
            .collect()
    } else {
        cli.profile.clone()
    };
    let run_datapath = all || names.iter().any(|n| n == datapath::NAME);
    let names: Vec<String> = names.into_iter().filter(|n| n != datapath::NAME).collect();
    let mut profiles: Vec<workload::Profile> = Vec::new();
    for n in &names {
        profiles.push(workload::profile(n).ok_or_else(|| {
            Error::Usage(format!(
                "unknown profile {n:?}; known: {}",
                workload::PROFILE_NAMES.join(", ")
            ))
        })?);
    }
    for p in &mut profiles {
        p.workload.headless = cli.headless;
    }
    let controller_cmd = if let Some(cmd) = &cli.controller_cmd {
        split_command(cmd)?
    } else {
        let bin = cli
            .controller_bin
            .clone()
            .unwrap_or_else(|| repo_root().join("target/release/kube-endpoints"));
        if !bin.is_file() {
            return Err(Error::Usage(format!(
                "{} does not exist: build it (`cargo build --release -p kube-endpoints`) or pass --controller-bin / --controller-cmd",
                bin.display()
            )));
        }
        default_command(bin)
    };
    std::fs::create_dir_all(&cli.out_dir)
        .map_err(io_err(format!("creating {}", cli.out_dir.display())))?;
    let work_dir =
        std::env::temp_dir().join(format!("kube-endpoints-bench-{}", std::process::id()));
    let opts = Options {
        label: "kube-endpoints".into(),
        controller_cmd,
        controller_env: Vec::new(),
        group: cli.group.clone(),
        crd_manifest: None,
        fixed_metrics_port: None,
        kcm_controllers: Vec::new(),
        check_endpoints: !cli.slices_only,
        concurrency: cli.concurrency,
        work_dir: work_dir.clone(),
        shardable: cli.controller_cmd.is_none(),
        udp_data_as_bytes: false,
        timeout: cli.profile_timeout.map(Duration::from_secs),
    };
    if let Some(peer_bin) = &cli.peer_bin {
        let peers = peer_options(&cli, peer_bin, &opts);
        return compare(&cli, &profiles, opts, peers).await;
    }

    let started = Instant::now();
    let datapath_result = if run_datapath {
        eprintln!("== profile {}: through kube-proxy", datapath::NAME);
        let r = datapath::run(&opts).await;
        eprintln!(
            "== profile {} took {:.0}s",
            datapath::NAME,
            r.duration_seconds
        );
        let path = cli.out_dir.join(format!("{}.json", datapath::NAME));
        std::fs::write(&path, serde_json::to_string_pretty(&r)?)
            .map_err(io_err(format!("writing {}", path.display())))?;
        Some(r)
    } else {
        None
    };
    let datapath_section = datapath_result
        .as_ref()
        .map(|r| datapath::markdown(r, &now_utc()));
    let datapath_ok = datapath_result.as_ref().is_none_or(|r| r.error.is_none());
    if profiles.is_empty() {
        // Only the data path: update its section, keep the rest.
        let old = std::fs::read_to_string(&cli.markdown).unwrap_or_default();
        if let Some(section) = &datapath_section {
            std::fs::write(&cli.markdown, datapath::SECTION.splice(&old, section))
                .map_err(io_err(format!("writing {}", cli.markdown.display())))?;
            eprintln!(
                "updated the data-path section of {}",
                cli.markdown.display()
            );
        }
        if !tidy_work_dir(&work_dir, datapath_ok) {
            eprintln!("kept the controller logs in {}", work_dir.display());
        }
        if cli.check
            && !datapath_result
                .as_ref()
                .is_some_and(datapath::DataPathResult::has_figures)
        {
            eprintln!("check failed: no figures from {}", datapath::NAME);
            return Ok(false);
        }
        return Ok(datapath_ok);
    }
    let mut results = Vec::new();
    for p in &profiles {
        eprintln!("== profile {}: {}", p.name, p.description);
        let r = runner::run_profile(p, &opts).await;
        eprintln!("== profile {} took {:.0}s", p.name, r.duration_seconds);
        let path = cli.out_dir.join(format!("{}.json", p.name));
        std::fs::write(&path, serde_json::to_string_pretty(&r)?)
            .map_err(io_err(format!("writing {}", path.display())))?;
        results.push(r);
    }
    let report = write_report(&cli, results, started, datapath_section)?;
    let ok = report.results.iter().all(|r| r.error.is_none()) && datapath_ok;
    if !tidy_work_dir(&work_dir, ok) {
        eprintln!("kept the controller logs in {}", work_dir.display());
    }
    if cli.check {
        let mut missing: Vec<&str> = report
            .results
            .iter()
            .filter(|r| !r.has_figures())
            .map(|r| r.profile.name)
            .collect();
        if datapath_result.as_ref().is_some_and(|r| !r.has_figures()) {
            missing.push(datapath::NAME);
        }
        if !missing.is_empty() {
            eprintln!("check failed: no figures from {}", missing.join(", "));
            return Ok(false);
        }
        eprintln!("check: every profile produced its figures");
    }
    Ok(ok)
}

/// Write the results of kube-endpoints' profiles: `<out-dir>/results.json`,
/// the plots and the Markdown report, which keeps the data-path section
/// (unless this run has its own) and the side-by-side section of the file
/// it replaces.
fn write_report(
    cli: &Cli,
    results: Vec<report::ProfileResult>,
    started: Instant,
    datapath_section: Option<String>,
) -> Result<Report> {
    let report = Report {
        generated_at: now_utc(),
        machine: sys::machine(),
        total_seconds: started.elapsed().as_secs_f64(),
        goals: report::goals(&results),
        results,
    };
    let path = cli.out_dir.join("results.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report)?)
        .map_err(io_err(format!("writing {}", path.display())))?;

    let mut plots = Vec::new();
    if !cli.no_plots {
        match plots::register() {
            Ok(()) => {
                let conv = cli.out_dir.join("convergence.png");
                let det = cli.out_dir.join("detection.png");
                if plots::convergence(&report.results, &conv)? {
                    plots.push((
                        "Convergence over time".to_string(),
                        rel(&cli.markdown, &conv),
                    ));
                }
                if plots::detection(&report.results, &det)? {
                    plots.push((
                        "Detection and recovery time distribution".to_string(),
                        rel(&cli.markdown, &det),
                    ));
                }
            }
            Err(e) => eprintln!("warning: no plots: {e}"),
        }
    }
    // Hand-written analysis of the figures (what limits them), kept next to
    // the results and included verbatim.
    let analysis = std::fs::read_to_string(cli.out_dir.join("analysis.md")).ok();
    // The data-path section: this run's, or the one already in the report.
    let datapath_section = datapath_section.or_else(|| {
        datapath::SECTION.existing(&std::fs::read_to_string(&cli.markdown).unwrap_or_default())
    });
    // The side-by-side section comes from its own run (`make bench-peer`).
    let compare_section =
        compare::SECTION.existing(&std::fs::read_to_string(&cli.markdown).unwrap_or_default());
    let mut markdown = report::markdown(&report, &plots, analysis.as_deref());
    if let Some(section) = &datapath_section {
        markdown = datapath::SECTION.splice(&markdown, section);
    }
    if let Some(section) = &compare_section {
        markdown = compare::SECTION.splice(&markdown, section);
    }
    std::fs::write(&cli.markdown, markdown)
        .map_err(io_err(format!("writing {}", cli.markdown.display())))?;
    eprintln!(
        "wrote {}, {} and {}",
        cli.markdown.display(),
        path.display(),
        cli.out_dir.display()
    );
    Ok(report)
}

/// The predecessor as the harness runs it, once per `--peer-concurrency`:
/// its own CRD under sealos.io, its kubeconfig from `KUBECONFIG`, metrics
/// on its fixed port, and kube-controller-manager's EndpointSlice mirroring
/// beside it (it writes Endpoints only).
fn peer_options(cli: &Cli, peer_bin: &std::path::Path, ours: &Options) -> Vec<Options> {
    cli.peer_concurrency
        .iter()
        .map(|n| Options {
            label: format!("endpoints-operator --maxconcurrent {n}"),
            controller_cmd: vec![
                peer_bin.display().to_string(),
                "--maxconcurrent".into(),
                n.to_string(),
                "--v".into(),
                "1".into(),
            ],
            controller_env: vec![("KUBECONFIG".into(), "{kubeconfig}".into())],
            group: "sealos.io".into(),
            crd_manifest: cli.peer_crd.clone(),
            fixed_metrics_port: Some(cli.peer_metrics_port),
            kcm_controllers: vec!["endpointslicemirroring".into()],
            shardable: false,
            udp_data_as_bytes: true,
            ..ours.clone()
        })
        .collect()
}

/// Every profile for kube-endpoints, then for each peer setting, in one
/// run; writes `<out-dir>/peer/*.json` and the comparison section.
async fn compare(
    cli: &Cli,
    profiles: &[workload::Profile],
    ours: Options,
    peers: Vec<Options>,
) -> Result<bool> {
    let started = Instant::now();
    let dir = cli.out_dir.join("peer");
    std::fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
    let mut results = Vec::new();
    for p in profiles {
        let others = if ours_only(p) { &[][..] } else { &peers[..] };
        for opts in std::iter::once(&ours).chain(others.iter()) {
            eprintln!(
                "== profile {} with {}: {}",
                p.name, opts.label, p.description
            );
            let r = runner::run_profile(p, opts).await;
            eprintln!(
                "== profile {} with {} took {:.0}s",
                p.name, opts.label, r.duration_seconds
            );
            let path = dir.join(format!("{}-{}.json", p.name, runner::slug(&opts.label)));
            std::fs::write(&path, serde_json::to_string_pretty(&r)?)
                .map_err(io_err(format!("writing {}", path.display())))?;
            results.push(r);
        }
    }
    // Ours' runs are the main report too (the same figures as `make
    // bench` of those profiles), then the side-by-side section goes in.
    let ours_results: Vec<_> = results
        .iter()
        .filter(|r| r.controller == ours.label)
        .cloned()
        .collect();
    for r in &ours_results {
        let path = cli.out_dir.join(format!("{}.json", r.profile.name));
        std::fs::write(&path, serde_json::to_string_pretty(r)?)
            .map_err(io_err(format!("writing {}", path.display())))?;
    }
    write_report(cli, ours_results, started, None)?;
    let compared: Vec<_> = results
        .iter()
        .filter(|r| !ours_only(&r.profile))
        .cloned()
        .collect();
    let section = compare::markdown(&compared, &sys::machine(), &now_utc());
    let old = std::fs::read_to_string(&cli.markdown).unwrap_or_default();
    std::fs::write(&cli.markdown, compare::SECTION.splice(&old, &section))
        .map_err(io_err(format!("writing {}", cli.markdown.display())))?;
    eprintln!(
        "wrote the side-by-side section of {}; results in {}",
        cli.markdown.display(),
        dir.display()
    );
    // Ours must produce its figures; a peer that does not is itself a
    // finding (reported in the table), not a failed run.
    let ok = results
        .iter()
        .filter(|r| r.controller == ours.label)
        .all(|r| r.error.is_none());
    if !tidy_work_dir(
        &ours.work_dir,
        ok && results.iter().all(|r| r.error.is_none()),
    ) {
        eprintln!("kept the controller logs in {}", ours.work_dir.display());
    }
    Ok(ok)
}

/// Profiles run for kube-endpoints only in a comparison: those that scale
/// out (the predecessor has no sharding) and the 100k ones (it reconciles
/// its objects one probe round at a time: 10,000 objects would take hours).
fn ours_only(p: &workload::Profile) -> bool {
    p.scale_out.is_some() || p.workload.objects >= 10_000
}

/// The words of `--controller-cmd`.
fn split_command(cmd: &str) -> Result<Vec<String>> {
    match shlex::split(cmd) {
        Some(words) if !words.is_empty() => Ok(words),
        Some(_) => Err(Error::Usage("--controller-cmd is empty".into())),
        None => Err(Error::Usage(format!(
            "--controller-cmd {cmd:?}: unbalanced quotes or a trailing backslash"
        ))),
    }
}

/// Remove the work directory after a clean run. Keep it when a profile
/// failed, since that profile's error names a controller log in it; returns
/// whether it was removed.
fn tidy_work_dir(dir: &std::path::Path, ok: bool) -> bool {
    ok && std::fs::remove_dir_all(dir).is_ok()
}

/// A path to `target` as seen from the directory of `from`.
fn rel(from: &std::path::Path, target: &std::path::Path) -> String {
    let base = from.parent().unwrap_or(std::path::Path::new(""));
    target
        .strip_prefix(base)
        .unwrap_or(target)
        .display()
        .to_string()
}

/// The current UTC time as RFC 3339 (seconds), without a date library.
fn now_utc() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_controller_command_is_one_argument() {
        let cli = Cli::try_parse_from([
            "kube-endpoints-bench",
            "--controller-cmd",
            "/opt/ke run --kubeconfig {kubeconfig} --metrics-addr {metrics_addr}",
            "--profile",
            "smoke",
            "--slices-only",
        ])
        .expect("parses");
        assert_eq!(cli.profile, vec!["smoke"]);
        assert!(cli.slices_only, "the flags after it are not swallowed");
        let words = split_command(cli.controller_cmd.as_deref().expect("set")).expect("words");
        assert_eq!(
            words,
            [
                "/opt/ke",
                "run",
                "--kubeconfig",
                "{kubeconfig}",
                "--metrics-addr",
                "{metrics_addr}"
            ]
        );
    }

    #[test]
    fn the_controller_command_splits_like_a_shell() {
        assert_eq!(
            split_command("'/opt/my controller' run --flag=\"a b\"").expect("words"),
            ["/opt/my controller", "run", "--flag=a b"]
        );
        // A command that starts with a dash is still the value.
        let cli = Cli::try_parse_from(["b", "--controller-cmd", "-x y"]).expect("parses");
        assert_eq!(cli.controller_cmd.as_deref(), Some("-x y"));
        assert!(split_command("  ").is_err());
        assert!(split_command("run 'unbalanced").is_err());
    }

    #[test]
    fn the_work_directory_is_kept_when_a_profile_failed() {
        let dir = std::env::temp_dir().join(format!("ke-bench-tidy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(dir.join("controller-smoke.log"), "log").expect("log");
        assert!(!tidy_work_dir(&dir, false));
        assert!(
            dir.join("controller-smoke.log").exists(),
            "the log the error names"
        );
        assert!(tidy_work_dir(&dir, true));
        assert!(!dir.exists());
    }
}
