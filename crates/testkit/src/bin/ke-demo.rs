//! The one-command demo (`scripts/demo.sh`): a local control plane, two
//! network-namespace hosts running the test backends, the controller, and
//! the wordpress example (examples/wordpress.yaml) pointed at those hosts,
//! plus a node namespace running the real kube-proxy. Shows the objects and
//! `curl` through the Service's ClusterIP answered by both hosts, stops one
//! backend, shows the change and `curl` answered only by the other, brings it
//! back, and cleans everything up (also on failure).
//!
//! Needs root (network namespaces). `KE_CONTROLLER_BIN` names the
//! `kube-endpoints` binary to run.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use kube_endpoints_testkit::node::{Node, NodeOptions};
use kube_endpoints_testkit::{BackendPorts, ControlPlane, TestHost};

type DemoResult<T> = Result<T, String>;

#[tokio::main]
async fn main() -> ExitCode {
    match demo().await {
        Ok(()) => {
            println!("\n== done: everything is stopped and removed");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("demo failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn step(text: &str) {
    println!("\n== {text}");
}

async fn kubectl(cp: &ControlPlane, args: &[&str], stdin: Option<&str>) -> DemoResult<String> {
    let what = format!("kubectl {}", args.join(" "));
    output(cp.kubectl(args), &what, stdin).await
}

/// Run `cmd` to completion, feeding it `stdin`: its stdout, or `what`
/// and its stderr when it fails.
async fn output(
    mut cmd: tokio::process::Command,
    what: &str,
    stdin: Option<&str>,
) -> DemoResult<String> {
    use tokio::io::AsyncWriteExt;
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("{what}: {e}"))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())
            .await
            .map_err(|e| format!("{what}: stdin: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| format!("{what}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

async fn show(cp: &ControlPlane, args: &[&str]) -> DemoResult<()> {
    println!("$ kubectl {}", args.join(" "));
    print!("{}", kubectl(cp, args, None).await?);
    Ok(())
}

/// Poll the phase until it is `want` (at most a minute).
async fn wait_phase(cp: &ControlPlane, want: &str) -> DemoResult<Duration> {
    let start = Instant::now();
    loop {
        let phase = kubectl(
            cp,
            &["get", "cep", "wordpress", "-o", "jsonpath={.status.phase}"],
            None,
        )
        .await
        .unwrap_or_default();
        if phase == want {
            return Ok(start.elapsed());
        }
        if start.elapsed() > Duration::from_secs(60) {
            return Err(format!(
                "the ClusterEndpoint did not become {want} (it is {phase:?})"
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn demo() -> DemoResult<()> {
    let controller_bin = std::env::var_os("KE_CONTROLLER_BIN")
        .map(PathBuf::from)
        .ok_or("set KE_CONTROLLER_BIN to the kube-endpoints binary (scripts/demo.sh does)")?;
    step("starting etcd and kube-apiserver (built from their Go modules)");
    let cp = ControlPlane::start().await.map_err(|e| e.to_string())?;
    println!("kubeconfig: {}", cp.kubeconfig_path().display());

    step("creating two external hosts (network namespaces) with TCP, HTTP, UDP and gRPC backends");
    let ports = BackendPorts::wordpress();
    let h1 = TestHost::create().await.map_err(|e| e.to_string())?;
    let h2 = TestHost::create().await.map_err(|e| e.to_string())?;
    let _b1 = h1
        .start_backend(ports.clone())
        .await
        .map_err(|e| e.to_string())?;
    let mut b2 = h2.start_backend(ports).await.map_err(|e| e.to_string())?;
    println!("hosts: {} and {}", h1.ipv4(), h2.ipv4());

    step("installing the CRD (kube-endpoints crd | kubectl apply -f -)");
    let crd = tokio::process::Command::new(&controller_bin)
        .arg("crd")
        .output()
        .await
        .map_err(|e| format!("{}: {e}", controller_bin.display()))?;
    let crd = String::from_utf8_lossy(&crd.stdout).into_owned();
    print!(
        "{}",
        kubectl(&cp, &["apply", "--server-side", "-f", "-"], Some(&crd)).await?
    );
    kubectl(
        &cp,
        &[
            "wait",
            "--for=condition=Established",
            "crd/clusterendpoints.khulnasoft-lab.github.io",
        ],
        None,
    )
    .await?;

    step("starting the controller");
    let log = cp.dir().join("kube-endpoints.log");
    let log_file = std::fs::File::create(&log).map_err(|e| e.to_string())?;
    let log_err = log_file.try_clone().map_err(|e| e.to_string())?;
    let _controller = tokio::process::Command::new(&controller_bin)
        .arg("run")
        .arg("--kubeconfig")
        .arg(cp.kubeconfig_path())
        .args(["--metrics-addr", "127.0.0.1:0"])
        .stdout(Stdio::from(log_file))
        .stderr(Stdio::from(log_err))
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("{}: {e}", controller_bin.display()))?;
    println!("log: {}", log.display());

    step(
        "applying examples/wordpress.yaml with its addresses rewritten to the test hosts, period 2s",
    );
    let example = std::fs::read_to_string(
        kube_endpoints_testkit::controlplane::repo_root().join("examples/wordpress.yaml"),
    )
    .map_err(|e| format!("examples/wordpress.yaml: {e}"))?
    .replace("10.33.40.151", &h1.ipv4().to_string())
    .replace("10.33.40.152", &h2.ipv4().to_string())
    .replace("periodSeconds: 10", "periodSeconds: 2");
    print!(
        "{}",
        kubectl(&cp, &["apply", "-f", "-"], Some(&example)).await?
    );
    let took = wait_phase(&cp, "Healthy").await?;
    println!("Healthy after {took:.1?}");
    show(&cp, &["get", "cep,svc,endpointslices,endpoints"]).await?;

    step(
        "starting a node: a network namespace running kube-proxy (nftables mode), wired to both hosts",
    );
    let node = Node::start(&cp, NodeOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    for h in [&h1, &h2] {
        node.connect(h).await.map_err(|e| e.to_string())?;
    }
    println!(
        "node {} (kube-proxy log: {})",
        node.name(),
        node.log_path().display()
    );
    let vip = kubectl(
        &cp,
        &[
            "get",
            "svc",
            "wordpress",
            "-o",
            "jsonpath={.spec.clusterIP}",
        ],
        None,
    )
    .await?;
    let url = format!("http://{vip}:38082/whoami");
    let both = [h1.ipv4(), h2.ipv4()].map(|a| SocketAddr::from((a, 80)));
    wait_programmed(&node, &both).await?;
    step("curl through the ClusterIP from the node: both hosts answer (each says its address)");
    curl_several(&node, &url, 2).await?;

    step(&format!("stopping the backends of {}", h2.ipv4()));
    b2.stop().await.map_err(|e| e.to_string())?;
    let took = wait_phase(&cp, "UnHealthy").await?;
    println!("UnHealthy after {took:.1?} (failureThreshold 3 x period 2s)");
    show(&cp, &["get", "cep,endpointslices,endpoints"]).await?;
    let took = wait_programmed(&node, &both[..1]).await?;
    println!("kube-proxy routes to {} only, {took:.1?} later", h1.ipv4());
    step(&format!(
        "curl through the ClusterIP again: only {} answers",
        h1.ipv4()
    ));
    curl_several(&node, &url, 1).await?;
    show(&cp, &["get", "endpointslice", "wordpress.wp-http.ipv4.0", "-o", "jsonpath={range .endpoints[*]}{.addresses[0]}{\" ready=\"}{.conditions.ready}{\"\\n\"}{end}"]).await?;
    show(
        &cp,
        &[
            "get",
            "events",
            "--field-selector",
            "reason=HostUnhealthy",
            "-o",
            "custom-columns=REASON:.reason,MESSAGE:.message",
        ],
    )
    .await?;

    step(&format!("starting the backends of {} again", h2.ipv4()));
    b2.start().await.map_err(|e| e.to_string())?;
    let took = wait_phase(&cp, "Healthy").await?;
    println!("Healthy again after {took:.1?}");
    show(&cp, &["get", "cep"]).await?;
    wait_programmed(&node, &both).await?;
    step("curl through the ClusterIP: both hosts answer again");
    curl_several(&node, &url, 2).await?;

    step("cleaning up");
    Ok(())
}

/// Wait until kube-proxy routes `wordpress:wp-http` to exactly `want` (its
/// rule set says so); how long that took.
async fn wait_programmed(node: &Node, want: &[SocketAddr]) -> DemoResult<Duration> {
    let want: BTreeSet<SocketAddr> = want.iter().copied().collect();
    let start = Instant::now();
    loop {
        let now = node
            .programmed_endpoints("default", "wordpress", "wp-http", "tcp", false)
            .await
            .map_err(|e| e.to_string())?;
        if now.as_ref() == Some(&want) {
            return Ok(start.elapsed());
        }
        if start.elapsed() > Duration::from_secs(60) {
            return Err(format!(
                "kube-proxy did not route to {want:?} (it routes to {now:?}); its log: {}",
                node.log_path().display()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `curl` the URL from inside the node, showing each answer: at least four
/// times, and until `distinct` different hosts have answered (at most 20).
async fn curl_several(node: &Node, url: &str, distinct: usize) -> DemoResult<()> {
    let mut seen = BTreeSet::new();
    for i in 0..20 {
        if i >= 4 && seen.len() >= distinct {
            break;
        }
        let args = ["netns", "exec", node.name(), "curl", "-sS", "-m", "2", url];
        println!("$ ip {}", args.join(" "));
        let mut curl = tokio::process::Command::new("ip");
        curl.args(args);
        let answer = output(curl, &format!("curl {url}"), None).await?;
        print!("{answer}");
        seen.insert(answer);
    }
    if seen.len() != distinct {
        return Err(format!(
            "{distinct} hosts should answer, {} did",
            seen.len()
        ));
    }
    Ok(())
}
