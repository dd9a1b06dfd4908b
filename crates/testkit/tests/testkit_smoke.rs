//! Smoke test of the test kit itself: a real control plane, a test host in a
//! network namespace, and its backend in every state the suite relies on.
//! Needs root (network namespaces) and the control-plane binaries.

use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, ResourceExt};
use kube_endpoints_testkit::controlplane::{self, ControlPlane, ControlPlaneOptions, WRITE_VERBS};
use kube_endpoints_testkit::netns::{self, BackendPorts, TestHost};
use kube_endpoints_testkit::{Error, Fault};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

const BACKEND: &str = env!("CARGO_BIN_EXE_ke-testbackend");
const TCP: u16 = 7000;
const CLOSED: u16 = 7001;
const HTTP: u16 = 8080;
const UDP: u16 = 5353;
const GRPC: u16 = 9090;
/// How long a connect may take before we call the host silent.
const SILENCE: Duration = Duration::from_millis(1500);

fn ports() -> BackendPorts {
    BackendPorts::one_each(TCP, HTTP, UDP, GRPC)
}

#[derive(Debug, PartialEq)]
enum Connect {
    Accepted,
    Refused,
    TimedOut,
    Other(ErrorKind),
}

async fn connect(ip: impl Into<IpAddr>, port: u16) -> Connect {
    match tokio::time::timeout(
        SILENCE,
        TcpStream::connect(SocketAddr::new(ip.into(), port)),
    )
    .await
    {
        Ok(Ok(_)) => Connect::Accepted,
        Ok(Err(e)) if e.kind() == ErrorKind::ConnectionRefused => Connect::Refused,
        Ok(Err(e)) => Connect::Other(e.kind()),
        Err(_) => Connect::TimedOut,
    }
}

/// (status, headers + body) of an HTTP/1.0 GET.
async fn http_get(ip: impl Into<IpAddr>, port: u16, path: &str) -> (u16, String) {
    let addr = SocketAddr::new(ip.into(), port);
    let exchange = async {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").as_bytes())
            .await?;
        let mut response = String::new();
        s.read_to_string(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    let response = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .unwrap_or_else(|_| panic!("GET {addr}{path} timed out"))
        .unwrap_or_else(|e| panic!("GET {addr}{path}: {e}"));
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("GET {addr}{path}: no status in {response:?}"));
    (status, response)
}

/// The echo of `data` from a connected UDP socket, or the error / None on
/// silence.
async fn udp_exchange(
    ip: impl Into<IpAddr>,
    port: u16,
    data: &[u8],
) -> Result<Option<Vec<u8>>, ErrorKind> {
    let ip = ip.into();
    let local: SocketAddr = if ip.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }
        .parse()
        .expect("addr");
    let socket = UdpSocket::bind(local).await.map_err(|e| e.kind())?;
    socket.connect((ip, port)).await.map_err(|e| e.kind())?;
    socket.send(data).await.map_err(|e| e.kind())?;
    let mut buf = [0u8; 64];
    match tokio::time::timeout(Duration::from_millis(500), socket.recv(&mut buf)).await {
        Ok(Ok(n)) => Ok(Some(buf[..n].to_vec())),
        Ok(Err(e)) => Err(e.kind()),
        Err(_) => Ok(None),
    }
}

async fn grpc_status(ip: impl Into<IpAddr>, service: &str) -> i32 {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let url = format!("http://{}", SocketAddr::new(ip.into(), GRPC));
    let channel = tonic::transport::Endpoint::from_shared(url.clone())
        .expect("endpoint")
        .timeout(Duration::from_secs(5))
        .connect()
        .await
        .unwrap_or_else(|e| panic!("gRPC connect {url}: {e}"));
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .unwrap_or_else(|e| panic!("gRPC health check {url} {service:?}: {e}"))
        .into_inner()
        .status
}

const SERVING: i32 = 1;
const NOT_SERVING: i32 = 2;

#[tokio::test(flavor = "multi_thread")]
async fn test_host_and_backend() {
    let host = TestHost::create().await.expect("test host is created");
    let mut backend = host
        .start_backend_with(ports(), BACKEND)
        .await
        .expect("backend starts");
    let (v4, v6) = (host.ipv4(), host.ipv6());
    assert!(
        ipnet::Ipv4Net::new([198, 18, 0, 0].into(), 15)
            .expect("net")
            .contains(&v4),
        "{v4}"
    );
    assert_eq!(v6.segments()[..2], [0xfd00, 0x6b65], "{v6}");

    // Healthy: everything answers, on IPv4 and IPv6.
    for ip in [IpAddr::from(v4), IpAddr::from(v6)] {
        assert_eq!(connect(ip, TCP).await, Connect::Accepted, "tcp {ip}");
        assert_eq!(
            connect(ip, CLOSED).await,
            Connect::Refused,
            "closed port {ip}"
        );
        assert_eq!(http_get(ip, HTTP, "/healthz").await.0, 200, "{ip}");
        assert_eq!(
            udp_exchange(ip, UDP, b"hello").await,
            Ok(Some(b"hello".to_vec())),
            "{ip}"
        );
        assert_eq!(
            udp_exchange(ip, UDP, b"").await,
            Ok(Some(b"ok".to_vec())),
            "{ip}"
        );
        assert_eq!(grpc_status(ip, "").await, SERVING, "{ip}");
        assert_eq!(grpc_status(ip, "backend").await, SERVING, "{ip}");
    }
    assert_eq!(http_get(v4, HTTP, "/status/418").await.0, 418);
    let (status, response) = http_get(v4, HTTP, "/redirect-same").await;
    assert_eq!(status, 301);
    assert!(
        response.to_ascii_lowercase().contains("location: /healthz"),
        "{response}"
    );
    let (status, response) = http_get(v4, HTTP, "/redirect-off").await;
    assert_eq!(status, 302);
    assert!(response.contains("http://off-host.invalid/"), "{response}");
    let started = Instant::now();
    assert_eq!(http_get(v4, HTTP, "/slow/300").await.0, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));

    // Unhealthy: the same ports stay open but answer "unhealthy" at once.
    backend.set_healthy(false).expect("backend turns unhealthy");
    for ip in [IpAddr::from(v4), IpAddr::from(v6)] {
        assert_eq!(http_get(ip, HTTP, "/healthz").await.0, 503, "{ip}");
        assert_eq!(grpc_status(ip, "").await, NOT_SERVING, "{ip}");
        assert_eq!(grpc_status(ip, "backend").await, NOT_SERVING, "{ip}");
        assert_eq!(udp_exchange(ip, UDP, b"hello").await, Ok(None), "{ip}");
        assert_eq!(connect(ip, TCP).await, Connect::Accepted, "{ip}");
    }
    backend.set_healthy(true).expect("backend turns healthy");
    assert_eq!(http_get(v6, HTTP, "/healthz").await.0, 200);
    assert_eq!(grpc_status(v6, "backend").await, SERVING);

    // Aliases: more addresses of the same host, served by the same backend.
    let aliases = host.add_ipv4_aliases(300).await.expect("IPv4 aliases");
    assert_eq!(aliases.len(), 300);
    for a in [aliases[0], aliases[299]] {
        assert!(
            ipnet::Ipv4Net::new([198, 19, 0, 0].into(), 16)
                .expect("net")
                .contains(&a),
            "{a}"
        );
        assert_eq!(connect(a, TCP).await, Connect::Accepted, "alias {a}");
    }
    let aliases6 = host.add_ipv6_aliases(3).await.expect("IPv6 aliases");
    assert_eq!(
        http_get(aliases6[2], HTTP, "/healthz").await.0,
        200,
        "{}",
        aliases6[2]
    );

    // Blackhole: silence, not refusal, for open and closed ports, TCP and UDP.
    host.blackhole(true).await.expect("blackhole on");
    // (All at once: each check waits for silence.)
    let mut checks = tokio::task::JoinSet::new();
    for ip in [IpAddr::from(v4), IpAddr::from(v6), IpAddr::from(aliases[0])] {
        checks.spawn(async move {
            let (tcp, closed, udp, closed_udp) = tokio::join!(
                connect(ip, TCP),
                connect(ip, CLOSED),
                udp_exchange(ip, UDP, b"hello"),
                udp_exchange(ip, 9, b"hello"),
            );
            assert_eq!(tcp, Connect::TimedOut, "tcp {ip}");
            assert_eq!(closed, Connect::TimedOut, "closed tcp port {ip}");
            assert_eq!(udp, Ok(None), "udp {ip}");
            assert_eq!(closed_udp, Ok(None), "closed udp port {ip}");
        });
    }
    while let Some(check) = checks.join_next().await {
        check.expect("blackhole check");
    }
    host.blackhole(false).await.expect("blackhole off");
    assert_eq!(connect(v4, TCP).await, Connect::Accepted);
    assert_eq!(connect(v6, TCP).await, Connect::Accepted);

    // Stopped: refused. Started again: the same ports answer.
    backend.stop().await.expect("backend stops");
    for ip in [IpAddr::from(v4), IpAddr::from(v6)] {
        assert_eq!(connect(ip, TCP).await, Connect::Refused, "{ip}");
        assert_eq!(connect(ip, HTTP).await, Connect::Refused, "{ip}");
        assert_eq!(
            udp_exchange(ip, UDP, b"hello").await,
            Err(ErrorKind::ConnectionRefused),
            "{ip}"
        );
    }
    backend.start().await.expect("backend starts again");
    assert_eq!(connect(v6, TCP).await, Connect::Accepted);
    assert_eq!(http_get(v4, HTTP, "/healthz").await.0, 200);

    // Drop removes the namespace, the link and the backend.
    let (name, pid) = (host.name().to_string(), backend.pid().expect("backend pid"));
    drop(host);
    drop(backend);
    let namespaces = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    assert!(
        !String::from_utf8_lossy(&namespaces.stdout).contains(&name),
        "namespace {name} is left"
    );
    eventually("the backend process to be gone", || {
        !std::path::Path::new(&format!("/proc/{pid}/exe")).exists()
    })
    .await;
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn stale_test_hosts_of_dead_processes_are_removed() {
    // A pid that surely is dead: a child we ran and reaped.
    let mut child = std::process::Command::new("true").spawn().expect("true");
    let dead = child.id();
    child.wait().expect("true exits");
    let ns = format!("ke-{dead}-99999");
    let link = "ke-99999";
    let sh = |args: &[&str]| {
        kube_endpoints_testkit::run("ip", args).unwrap_or_else(|e| panic!("{e}"));
    };
    sh(&["netns", "add", &ns]);
    sh(&[
        "link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", &ns,
    ]);
    sh(&[
        "link",
        "set",
        "dev",
        link,
        "alias",
        &format!("ke-pid-{dead}"),
    ]);
    // Our own (living) host must survive the cleanup.
    let host = TestHost::create().await.expect("test host");

    // The first TestHost::create of a process cleans up too, so this test's
    // leftovers may be gone already, by that or by this call.
    let report = tokio::task::spawn_blocking(netns::cleanup_stale)
        .await
        .expect("join")
        .expect("cleanup");
    let namespaces = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns");
    let namespaces = String::from_utf8_lossy(&namespaces.stdout);
    assert!(!namespaces.contains(&ns), "{ns} is left: {report:?}");
    assert!(
        namespaces.contains(host.name()),
        "{} was removed: {report:?}",
        host.name()
    );
    let links = std::process::Command::new("ip")
        .args(["-o", "link"])
        .output()
        .expect("ip link");
    let links = String::from_utf8_lossy(&links.stdout);
    assert!(
        !links.contains(&format!(" {link}@")),
        "{link} is left: {report:?}"
    );
    // The backend binary is found next to the test executable.
    assert_eq!(netns::backend_binary(), std::path::Path::new(BACKEND));
    let backend = host.start_backend(ports()).await.expect("backend");
    assert_eq!(connect(host.ipv4(), TCP).await, Connect::Accepted);
    drop(backend);
}

async fn namespace_names(client: &Client) -> Result<Vec<String>, kube::Error> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    Ok(namespaces
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .map(|n| n.name_any())
        .collect())
}

#[tokio::test(flavor = "multi_thread")]
async fn control_plane_starts_restarts_and_cleans_up() {
    let mut cp = ControlPlane::start().await.expect("control plane starts");
    let client = cp.client().await.expect("admin client");
    let names = namespace_names(&client)
        .await
        .expect("namespaces are listed");
    assert!(names.iter().any(|n| n == "default"), "{names:?}");

    // kubectl with the admin kubeconfig.
    let out = cp
        .kubectl(["get", "namespace", "default", "-o", "name"])
        .output()
        .await
        .expect("kubectl runs");
    assert!(
        out.status.success(),
        "kubectl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "namespace/default"
    );

    // A static non-admin user is authenticated but not authorised.
    let user = cp.client_as("ke-user-a").await.expect("user client");
    match namespace_names(&user).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("ke-user-a listed namespaces: {other:?}"),
    }

    // Writes show up in the apiserver's request counter.
    let before = controlplane::count_requests(
        &cp.metrics_text().await.expect("metrics"),
        &WRITE_VERBS,
        Some("configmaps"),
    );
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some("smoke".into()),
            ..ObjectMeta::default()
        },
        data: Some([("k".to_string(), "v".to_string())].into()),
        ..ConfigMap::default()
    };
    configmaps
        .create(&PostParams::default(), &cm)
        .await
        .expect("configmap is created");
    let after = controlplane::count_requests(
        &cp.metrics_text().await.expect("metrics"),
        &WRITE_VERBS,
        Some("configmaps"),
    );
    assert_eq!(after - before, 1.0, "one write");

    // The apiserver restarts on the same port; the old client reconnects.
    let apiserver_pid =
        |cp: &ControlPlane| cp.pids().into_iter().find(|(n, _)| *n == "kube-apiserver");
    let old_pid = apiserver_pid(&cp);
    cp.restart_apiserver().await.expect("apiserver restarts");
    assert_ne!(apiserver_pid(&cp), old_pid, "a new kube-apiserver process");
    let names = namespace_names(&client)
        .await
        .expect("the same client works after a restart");
    assert!(names.iter().any(|n| n == "default"));

    // etcd keeps its data over a restart.
    cp.restart_etcd_and_apiserver()
        .await
        .expect("etcd and apiserver restart");
    let cm = configmaps
        .get("smoke")
        .await
        .expect("the configmap survived");
    assert_eq!(
        cm.data.and_then(|d| d.get("k").cloned()).as_deref(),
        Some("v")
    );

    // A user added later (restarts the apiserver once more).
    let token = cp
        .add_token("ke-late", &["system:masters"])
        .await
        .expect("token added");
    assert_eq!(cp.token("ke-late"), Some(token.as_str()));
    let late = cp.client_as("ke-late").await.expect("late client");
    namespace_names(&late)
        .await
        .expect("the added user is a master");

    // Drop kills every process and removes the scratch directory.
    let pids = cp.pids();
    assert_eq!(pids.len(), 3, "{pids:?}");
    let dir = cp.dir().to_path_buf();
    drop(cp);
    eventually("the control-plane processes to be gone", || {
        pids.iter()
            .all(|(_, pid)| !std::path::Path::new(&format!("/proc/{pid}/exe")).exists())
    })
    .await;
    if std::env::var_os("KE_KEEP_TMP").is_none() {
        assert!(!dir.exists(), "{} is left", dir.display());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_control_plane_that_cannot_start_says_why() {
    let options = ControlPlaneOptions {
        extra_apiserver_args: vec!["--no-such-flag".into()],
        garbage_collector: false,
        ..ControlPlaneOptions::default()
    };
    let err = match ControlPlane::start_with(options).await {
        Ok(_) => panic!("kube-apiserver started with an unknown flag"),
        Err(e) => e,
    };
    let Error::Exited {
        process, log, tail, ..
    } = &err
    else {
        panic!("unexpected error: {err}");
    };
    assert_eq!(process, "kube-apiserver", "{err}");
    assert!(tail.contains("unknown flag: --no-such-flag"), "{err}");
    assert!(
        err.to_string().contains(&log.display().to_string()),
        "{err}"
    );
    // The logs were kept for a human; this one was expected.
    let dir = log.parent().expect("scratch dir");
    assert!(dir.join("etcd.log").exists(), "{}", dir.display());
    std::fs::remove_dir_all(dir).expect("scratch dir removed");
}

/// Per-address fault rules: one alias refuses, another drops, a third is
/// untouched; UDP to an alias is answered from that alias; turning the
/// rules off restores everything.
/// Turns `fault` on or off for `addr` of `host`.
async fn switch_fault(host: &TestHost, fault: Fault, addr: Ipv4Addr, on: bool) {
    host.set_fault(fault, &[IpAddr::V4(addr)], on)
        .await
        .unwrap_or_else(|e| panic!("{fault:?} {addr} on={on}: {e}"));
}

#[tokio::test(flavor = "multi_thread")]
async fn per_address_faults_refuse_or_drop_only_those_addresses() {
    let host = TestHost::create().await.expect("test host");
    let aliases = host.add_ipv4_aliases(3).await.expect("aliases");
    let _backend = host
        .start_backend_with(ports(), BACKEND)
        .await
        .expect("backend starts");
    let [refused, dropped, fine] = [aliases[0], aliases[1], aliases[2]];
    assert_eq!(
        udp_exchange(fine, UDP, b"hi").await,
        Ok(Some(b"hi".to_vec())),
        "UDP echo from an alias address"
    );
    switch_fault(&host, Fault::Refuse, refused, true).await;
    switch_fault(&host, Fault::Drop, dropped, true).await;
    assert_eq!(connect(refused, TCP).await, Connect::Refused);
    assert_eq!(connect(dropped, TCP).await, Connect::TimedOut);
    assert_eq!(connect(fine, TCP).await, Connect::Accepted);
    assert_eq!(udp_exchange(dropped, UDP, b"x").await, Ok(None));
    // Idempotent, and off again.
    switch_fault(&host, Fault::Refuse, refused, true).await;
    switch_fault(&host, Fault::Refuse, refused, false).await;
    switch_fault(&host, Fault::Drop, dropped, false).await;
    assert_eq!(connect(refused, TCP).await, Connect::Accepted);
    assert_eq!(connect(dropped, TCP).await, Connect::Accepted);
}

/// One Redis inline command and its reply (up to the first `\r\n` of a
/// simple reply, or the whole reply once the backend has written it).
async fn redis(ip: impl Into<IpAddr>, port: u16, command: &str) -> String {
    let addr = SocketAddr::new(ip.into(), port);
    let exchange = async {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(format!("{command}\r\n").as_bytes()).await?;
        let mut buf = vec![0u8; 512];
        let n = s.read(&mut buf).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&buf[..n]).into_owned())
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .unwrap_or_else(|_| panic!("{command} to {addr} timed out"))
        .unwrap_or_else(|e| panic!("{command} to {addr}: {e}"))
}

/// The role switch and the Redis-like responder: `/primary`, `/replica`,
/// `/role` and `ROLE` follow `set_role`, `PING` and all of them follow
/// `set_healthy`, and each setting survives a change of the other.
#[tokio::test(flavor = "multi_thread")]
async fn roles_and_the_redis_responder_follow_the_control_file() {
    const REDIS: u16 = 6379;
    let host = TestHost::create().await.expect("test host is created");
    let ports = BackendPorts {
        http: vec![HTTP],
        redis: vec![REDIS],
        ..BackendPorts::default()
    };
    let backend = host
        .start_backend_with(ports, BACKEND)
        .await
        .expect("backend starts");
    let ip = host.ipv4();
    let role = |response: String| response.lines().last().unwrap_or_default().to_string();

    assert_eq!(http_get(ip, HTTP, "/primary").await.0, 200);
    assert_eq!(http_get(ip, HTTP, "/replica").await.0, 503);
    assert_eq!(role(http_get(ip, HTTP, "/role").await.1), "role: primary");
    assert_eq!(redis(ip, REDIS, "PING").await, "+PONG\r\n");
    assert!(redis(ip, REDIS, "ROLE").await.contains("master"));
    assert!(redis(ip, REDIS, "GET x").await.starts_with("-ERR"));

    backend
        .set_role(kube_endpoints_testkit::Role::Replica)
        .expect("replica");
    assert_eq!(http_get(ip, HTTP, "/primary").await.0, 503);
    assert_eq!(http_get(ip, HTTP, "/replica").await.0, 200);
    assert_eq!(role(http_get(ip, HTTP, "/role").await.1), "role: replica");
    assert!(redis(ip, REDIS, "ROLE").await.contains("slave"));

    backend.set_healthy(false).expect("unhealthy");
    assert_eq!(http_get(ip, HTTP, "/replica").await.0, 503);
    assert_eq!(http_get(ip, HTTP, "/role").await.0, 503);
    assert!(redis(ip, REDIS, "PING").await.starts_with("-LOADING"));

    backend.set_healthy(true).expect("healthy");
    assert_eq!(
        http_get(ip, HTTP, "/replica").await.0,
        200,
        "still a replica"
    );
    assert_eq!(redis(ip, REDIS, "PING").await, "+PONG\r\n");
}
