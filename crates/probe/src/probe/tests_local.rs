//! Local resource errors are not host failures. Proven for real: a child
//! process (this test binary, running one test) lowers its own
//! `RLIMIT_NOFILE` and uses up every descriptor below it, so opening a
//! socket fails with EMFILE; every prober must then report a local error.

use std::net::SocketAddr;
use std::time::Duration;

use super::*;

const CHILD: &str = "KE_PROBE_EMFILE_CHILD";

#[test]
fn running_out_of_file_descriptors_is_a_local_error() {
    let exe = std::env::current_exe().expect("test binary");
    let output = std::process::Command::new(exe)
        .args([
            "--exact",
            "probe::tests_local::emfile_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "child failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("1 passed") && stdout.contains("EMFILE-CHILD-RAN"),
        "the child test did not run:\n{stdout}"
    );
}

/// Runs only as the child of the test above (ignored otherwise).
#[test]
#[ignore = "run by running_out_of_file_descriptors_is_a_local_error"]
fn emfile_child() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        // Everything that needs a descriptor is made first.
        let prober = Prober::new("test").expect("prober");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        let _held = exhaust_descriptors();
        let probes = [
            (
                Probe::tcp(),
                format!("tcp connect {addr}: local error: too many open files"),
            ),
            (
                Probe::Http(HttpGet {
                    path: "/".into(),
                    ..HttpGet::default()
                }),
                "http GET /: local error: too many open files".to_string(),
            ),
            (
                Probe::Udp(UdpProbe::default()),
                format!("udp {addr}: local error: too many open files"),
            ),
        ];
        for (probe, message) in probes {
            let o = prober.probe(&probe, addr, Duration::from_secs(2)).await;
            assert_eq!(o.verdict, Verdict::LocalError, "{probe:?}: {}", o.message);
            assert_eq!(o.reason, "emfile");
            assert_eq!(o.message, message);
        }
        println!("EMFILE-CHILD-RAN");
    });
}

/// Lower the soft descriptor limit to just above the highest descriptor in
/// use and fill every free one below it; returns what keeps them open.
fn exhaust_descriptors() -> Vec<std::fs::File> {
    let highest = std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .max()
        .expect("some descriptor");
    // This runs in a child process of its own.
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).expect("getrlimit");
    rlimit::setrlimit(rlimit::Resource::NOFILE, highest + 1, hard).expect("setrlimit");
    let mut held = Vec::new();
    loop {
        match std::fs::File::open("/dev/null") {
            Ok(f) => held.push(f),
            Err(e) if e.raw_os_error() == Some(libc::EMFILE) => return held,
            Err(e) => panic!("unexpected error filling descriptors: {e}"),
        }
    }
}
