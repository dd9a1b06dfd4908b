use super::*;

fn series(text: &str, name: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

struct Fixed(StateCounts);
impl TargetCounter for Fixed {
    fn count(&self) -> StateCounts {
        self.0
    }

    fn total(&self) -> usize {
        self.0.pending + self.0.ready + self.0.not_ready
    }
}

#[test]
fn per_host_series_exist_only_when_asked_and_follow_the_object() {
    let off = Metrics::new(false);
    off.set_host_readiness("ns", "db", [("pg".into(), "198.18.0.2".into(), true)]);
    let text = off.encode().expect("encodes");
    assert!(
        series(&text, "kube_endpoints_host_ready").is_empty(),
        "{text}"
    );

    let on = Metrics::new(true);
    on.set_host_readiness(
        "ns",
        "db",
        [
            ("pg".into(), "198.18.0.2".into(), true),
            ("pg".into(), "198.18.0.3".into(), false),
        ],
    );
    let text = on.encode().expect("encodes");
    let mut got = series(&text, "kube_endpoints_host_ready{");
    got.sort();
    assert_eq!(
        got,
        [
            r#"kube_endpoints_host_ready{namespace="ns",name="db",port="pg",host="198.18.0.2"} 1"#,
            r#"kube_endpoints_host_ready{namespace="ns",name="db",port="pg",host="198.18.0.3"} 0"#,
        ]
    );
    // A host removed from the spec loses its series; so does a deleted object.
    on.set_host_readiness("ns", "db", [("pg".into(), "198.18.0.2".into(), true)]);
    assert_eq!(
        series(&on.encode().expect("encodes"), "kube_endpoints_host_ready{").len(),
        1
    );
    on.forget_object("ns", "db");
    assert!(series(&on.encode().expect("encodes"), "kube_endpoints_host_ready{").is_empty());
}

#[test]
fn host_ports_sum_the_live_engines_at_scrape_time() {
    let m = Metrics::new(false);
    let a: Arc<dyn TargetCounter> = Arc::new(Fixed(StateCounts {
        pending: 1,
        ready: 5,
        not_ready: 2,
    }));
    let b: Arc<dyn TargetCounter> = Arc::new(Fixed(StateCounts {
        pending: 0,
        ready: 3,
        not_ready: 0,
    }));
    m.register_targets(Arc::downgrade(&a));
    m.register_targets(Arc::downgrade(&b));
    assert_eq!(m.target_total(), 11, "what the fleet guard counts against");
    let text = m.encode().expect("encodes");
    for line in [
        r#"kube_endpoints_host_ports{state="pending"} 1"#,
        r#"kube_endpoints_host_ports{state="ready"} 8"#,
        r#"kube_endpoints_host_ports{state="not_ready"} 2"#,
        "kube_endpoints_probe_targets 11",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
    }
    // A stopped controller's engine drops out.
    drop(b);
    assert_eq!(m.target_total(), 8);
    let text = m.encode().expect("encodes");
    assert!(
        text.lines()
            .any(|l| l == r#"kube_endpoints_host_ports{state="ready"} 5"#),
        "{text}"
    );
}

#[test]
fn a_failing_watch_counts_and_makes_readyz_false_until_it_recovers() {
    let m = Metrics::new(false);
    m.set_ready(true);
    assert!(m.is_ready());
    m.watch_event("sealos.io/*/clusterendpoints", "clusterendpoints", false);
    m.watch_event("sealos.io/*/clusterendpoints", "clusterendpoints", false);
    assert!(!m.is_ready());
    let text = m.encode().expect("encodes");
    assert_eq!(
        series(&text, "kube_endpoints_watch_errors_total"),
        ["kube_endpoints_watch_errors_total{resource=\"clusterendpoints\"} 2"]
    );
    assert_eq!(
        series(&text, "kube_endpoints_watches_failing"),
        ["kube_endpoints_watches_failing 1"]
    );
    m.watch_event("sealos.io/*/clusterendpoints", "clusterendpoints", true);
    assert!(m.is_ready());
    m.watch_event("x/*/services", "services", false);
    m.watch_stopped("x/*/services");
    assert!(m.is_ready());
}

#[test]
fn certificate_expiry_is_per_port_and_per_host_only_when_asked() {
    use std::collections::BTreeMap;
    use std::time::{Duration, UNIX_EPOCH};
    let id = |port: &str, host: &str| kube_endpoints_probe::TargetId {
        port: port.into(),
        host: host.parse().expect("ip"),
    };
    let certificates = BTreeMap::from([
        (
            id("https", "198.18.0.2"),
            UNIX_EPOCH + Duration::from_secs(2_000),
        ),
        (
            id("https", "198.18.0.3"),
            UNIX_EPOCH + Duration::from_secs(1_000),
        ),
    ]);
    // Metrics with per-host series on or off, given `certificates`, and
    // their text.
    let filled = |per_host: bool| {
        let metrics = Metrics::new(per_host);
        metrics.set_certificates("ns", "db", &certificates);
        let text = metrics.encode().expect("encodes");
        (metrics, text)
    };
    let (_, text) = filled(false);
    assert_eq!(
        series(
            &text,
            "kube_endpoints_certificate_expiry_timestamp_seconds{"
        ),
        [
            r#"kube_endpoints_certificate_expiry_timestamp_seconds{namespace="ns",name="db",port="https"} 1000"#
        ],
        "the earliest per port"
    );
    assert!(series(&text, "kube_endpoints_host_certificate_expiry").is_empty());

    let (on, text) = filled(true);
    assert_eq!(
        series(
            &text,
            "kube_endpoints_host_certificate_expiry_timestamp_seconds{"
        )
        .len(),
        2
    );
    // A deleted object loses its series.
    on.forget_object("ns", "db");
    let text = on.encode().expect("encodes");
    assert!(
        series(
            &text,
            "kube_endpoints_certificate_expiry_timestamp_seconds{"
        )
        .is_empty()
    );
    assert!(
        series(
            &text,
            "kube_endpoints_host_certificate_expiry_timestamp_seconds{"
        )
        .is_empty()
    );
}
