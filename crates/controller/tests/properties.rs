//! Property tests of the spec decoder and `plan()`, the code every
//! user-written object goes through (also objects of a CRD without our
//! schema, whose fields can hold anything):
//!
//! - any JSON, and any corruption of a valid spec, decodes or is refused
//!   without a panic, and `plan()` then never panics;
//! - every error `plan()` reports names a `spec.` field, and a corrupted
//!   field is reported under its exact path;
//! - a valid spec plans into a plan whose invariants hold (sorted unique
//!   ports and hosts, one primary entry per spec port, targets exactly for
//!   the probed host-ports, settings carried over), independent of the
//!   order of hosts and ports in the spec.
//!
//! The number of cases is bounded so that the whole file runs in a few
//! seconds in CI; `PROPTEST_CASES` raises it for a longer local run. A case
//! that ever fails belongs in `plan_tests.rs` as a unit test.

use std::collections::BTreeSet;

use kube_endpoints::plan::{Host, Plan, parse_host, plan};
use kube_endpoints_api::ClusterEndpointSpec;
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{Map, Value, json};

fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(256);
    Config {
        cases,
        // Failures are turned into unit tests by hand, not stored files.
        failure_persistence: None,
        ..Config::default()
    }
}

// ------------------------------------------------------------ generators

fn ipv4() -> impl Strategy<Value = String> {
    (0u8..2, any::<u8>(), 1u8..255).prop_map(|(a, b, c)| format!("198.{}.{b}.{c}", 18 + a))
}

fn ipv6() -> impl Strategy<Value = String> {
    (any::<u16>(), 1u16..).prop_map(|(a, b)| format!("fd00:6b65:{a:x}::{b:x}"))
}

fn host() -> impl Strategy<Value = String> {
    prop_oneof![3 => ipv4(), 1 => ipv6()]
}

fn hosts(min: usize, max: usize) -> impl Strategy<Value = Vec<String>> {
    prop::collection::btree_set(host(), min..max).prop_map(|s| s.into_iter().collect())
}

/// A probe handler (or none: a static port).
fn handler() -> impl Strategy<Value = Option<(&'static str, Value)>> {
    prop_oneof![
        Just(None),
        Just(Some(("tcpSocket", json!({"enable": true})))),
        (
            "(/[a-z0-9._-]{0,8}){0,3}",
            prop::option::of(prop_oneof![Just("http"), Just("https"), Just("HTTPS")]),
            prop::collection::vec(("X-[A-Za-z]{1,6}", "[ -~]{0,12}"), 0..3),
        )
            .prop_map(|(path, scheme, headers)| {
                let headers: Vec<Value> = headers
                    .into_iter()
                    .map(|(name, value)| json!({"name": name, "value": value}))
                    .collect();
                let mut h = json!({"path": path, "httpHeaders": headers});
                if let Some(s) = scheme {
                    h["scheme"] = json!(s);
                }
                Some(("httpGet", h))
            }),
        "[a-z]{0,32}".prop_map(|data| Some(("udpSocket", json!({"enable": true, "data": data})))),
        "[a-z.]{0,16}"
            .prop_map(|service| Some(("grpc", json!({"enable": true, "service": service})))),
        // Disabled handlers count as none.
        Just(Some(("tcpSocket", json!({"enable": false})))),
        // The probe options.
        Just(Some((
            "tcpSocket",
            json!({"enable": true, "send": {"text": "PING\r\n"}, "expect": {"regex": "^\\+PONG"}})
        ))),
        Just(Some((
            "httpGet",
            json!({"path": "/primary", "method": "POST", "body": "{}", "expectedStatuses": [200, "300-399"], "bodyMatch": {"base64": "b2s="}})
        ))),
        Just(Some((
            "udpSocket",
            json!({"enable": true, "send": {"base64": "AAE="}, "expect": {"text": "pong"}})
        ))),
    ]
}

/// One valid port. `name` is letters only, so `<name>-<targetPort>` (the
/// key of an additional target port) can never equal another port's name.
fn port(name: String, number: i32, spec_period: i32) -> impl Strategy<Value = Value> {
    (
        prop_oneof![Just("TCP"), Just("UDP"), Just("SCTP")],
        1i32..65536,
        prop::collection::btree_set(1i32..65536, 0..3),
        hosts(0, 5),
        handler(),
        prop::option::of(1i32..60),
        1i32..10,
        1i32..10,
        prop::option::of(0i32..30),
        any::<prop::sample::Index>(),
        // Probe options: a probe port (where allowed) and the schedule.
        (
            any::<bool>(),
            prop::option::of(0i32..100),
            prop::option::of(0i32..=100),
            prop::option::of(0i32..60),
        ),
    )
        .prop_map(
            move |(
                protocol,
                target,
                extra,
                hosts,
                handler,
                period,
                fail,
                ok,
                delay,
                timeout,
                options,
            )| {
                let extra: Vec<i32> = extra.into_iter().filter(|p| *p != target).collect();
                // Never longer than the period: valid under any stricter rule.
                let period_used = period.unwrap_or(spec_period);
                let timeout =
                    i32::try_from(timeout.index(usize::try_from(period_used).unwrap_or(1)))
                        .unwrap_or(0)
                        + 1;
                let mut p = json!({
                    "name": name,
                    "protocol": protocol,
                    "port": number,
                    "targetPort": target,
                    "timeoutSeconds": timeout,
                    "failureThreshold": fail,
                    "successThreshold": ok,
                });
                if !extra.is_empty() {
                    p["additionalTargetPorts"] = json!(extra);
                }
                if !hosts.is_empty() {
                    p["hosts"] = json!(hosts);
                }
                if let Some((key, h)) = handler {
                    p[key] = h;
                }
                if let Some(s) = period {
                    p["periodSeconds"] = json!(s);
                }
                if let Some(d) = delay {
                    p["initialDelaySeconds"] = json!(d);
                }
                let (probe_port, unhealthy, jitter, edge) = options;
                let enabled = p.as_object().is_some_and(|o| {
                    ["tcpSocket", "httpGet", "udpSocket", "grpc"]
                        .iter()
                        .any(|k| {
                            o.get(*k)
                                .is_some_and(|h| h.get("enable") != Some(&json!(false)))
                        })
                });
                if probe_port && enabled && extra.is_empty() {
                    p["probePort"] = json!(target % 65535 + 1);
                }
                if let Some(u) = unhealthy {
                    p["unhealthyPeriodSeconds"] = json!(timeout + u);
                }
                if let Some(j) = jitter {
                    p["jitterPercent"] = json!(j);
                }
                if let Some(e) = edge {
                    p["edgePeriodSeconds"] = json!(e);
                }
                p
            },
        )
}

/// A valid spec as the apiserver would store it.
fn valid_spec() -> impl Strategy<Value = Value> {
    (
        prop::collection::btree_set("[a-z]{1,8}", 1..5),
        1i32..60,
        hosts(1, 4),
        prop::option::of(Just("None")),
    )
        .prop_flat_map(|(names, period, legacy, headless)| {
            let ports: Vec<_> = names
                .into_iter()
                .enumerate()
                .map(|(i, name)| port(name, 1000 + i32::try_from(i).unwrap_or(0), period))
                .collect();
            (ports, Just(period), Just(legacy), Just(headless))
        })
        .prop_map(|(ports, period, legacy, headless)| {
            let mut spec = json!({"periodSeconds": period, "hosts": legacy, "ports": ports});
            if let Some(h) = headless {
                spec["clusterIP"] = json!(h);
            }
            spec
        })
}

/// Any JSON, biased towards the spec's own keys and typical values.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        prop_oneof![
            Just(0i64),
            Just(-1),
            Just(65536),
            Just(i64::from(i32::MAX) + 1)
        ]
        .prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "\\PC{0,12}".prop_map(Value::from),
        prop_oneof![
            Just("TCP"),
            Just("None"),
            Just("::1"),
            Just("127.0.0.1"),
            Just("169.254.169.254"),
            Just("::ffff:198.18.0.1"),
            Just("198.18.0.1"),
            Just("https"),
            Just("a b"),
            Just("x\r\ny"),
            Just(""),
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "ports", "hosts", "name", "port", "targetPort", "protocol", "tcpSocket", "httpGet",
            "udpSocket", "grpc", "enable", "path", "scheme", "host", "httpHeaders", "value",
            "data", "service", "timeoutSeconds", "failureThreshold", "successThreshold",
            "periodSeconds", "initialDelaySeconds", "additionalTargetPorts", "clusterIP",
            "probePort", "unhealthyPeriodSeconds", "jitterPercent", "edgePeriodSeconds", "send",
            "expect", "text", "base64", "regex", "method", "body", "expectedStatuses", "bodyMatch",
        ])
        .prop_map(String::from),
        1 => "[a-zA-Z]{0,8}",
    ]
}

/// Every JSON pointer into `v` (the root excluded).
fn pointers(v: &Value, at: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                let p = format!("{at}/{k}");
                out.push(p.clone());
                pointers(child, &p, out);
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                let p = format!("{at}/{i}");
                out.push(p.clone());
                pointers(child, &p, out);
            }
        }
        _ => {}
    }
}

/// A replacement for `old`: mostly of the same JSON type (so that the spec
/// still decodes and `plan()` sees the bad value), sometimes anything.
fn mutate(old: &Value, pick: &Mutation) -> Value {
    match (old, pick) {
        (_, Mutation::Anything(v)) => v.clone(),
        (Value::Number(_), Mutation::Typed { int, .. }) => json!(int),
        (Value::String(_), Mutation::Typed { text, .. }) => json!(text),
        (Value::Bool(b), Mutation::Typed { .. }) => json!(!b),
        (Value::Array(items), Mutation::Typed { int, .. }) => {
            // Duplicate, drop or empty the list.
            let mut items = items.clone();
            match int.rem_euclid(3) {
                0 => {
                    if let Some(first) = items.first().cloned() {
                        items.push(first);
                    }
                }
                1 => {
                    items.pop();
                }
                _ => items.clear(),
            }
            Value::Array(items)
        }
        (other, Mutation::Typed { .. }) => other.clone(),
    }
}

#[derive(Clone, Debug)]
enum Mutation {
    Typed { int: i64, text: String },
    Anything(Value),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let int = prop_oneof![
        prop::sample::select(vec![
            i64::from(i32::MIN),
            -1,
            0,
            1,
            63,
            64,
            100,
            101,
            1000,
            1001,
            3600,
            3601,
            65535,
            65536,
            i64::from(i32::MAX),
        ]),
        -100_000i64..100_000,
    ];
    let text = prop_oneof![
        prop::sample::select(vec![
            "",
            "TCP",
            "UDP",
            "ICMP",
            "None",
            "none",
            "a",
            "-a",
            "a-",
            "A",
            "a_b",
            "x\r\ny",
            "a b",
            "/",
            "http",
            "https",
            "HTTP",
            "ftp",
            "::",
            "::1",
            "127.0.0.1",
            "169.254.169.254",
            "224.0.0.1",
            "255.255.255.255",
            "0.0.0.0",
            "::ffff:198.18.0.1",
            "fe80::1",
            "198.18.0.1",
            "198.18.0.01",
            "1.2.3",
            "fd00:6b65::1",
            "Host",
        ])
        .prop_map(String::from),
        "\\PC{0,70}",
    ];
    prop_oneof![
        5 => (int, text).prop_map(|(int, text)| Mutation::Typed { int, text }),
        1 => any_json().prop_map(Mutation::Anything),
    ]
}

/// A valid spec with the values at a few of its paths changed.
fn corrupted_spec() -> impl Strategy<Value = Value> {
    (
        valid_spec(),
        prop::collection::vec((any::<prop::sample::Index>(), mutation()), 1..4),
    )
        .prop_map(|(mut spec, changes)| {
            for (at, change) in changes {
                let mut all = Vec::new();
                pointers(&spec, "", &mut all);
                if all.is_empty() {
                    break;
                }
                let path = at.get(&all).clone();
                if let Some(slot) = spec.pointer_mut(&path) {
                    *slot = mutate(slot, &change);
                }
            }
            spec
        })
}

// ------------------------------------------------------------ properties

/// What must hold of any outcome of `plan()` on a decoded spec.
fn check_outcome(
    spec: &ClusterEndpointSpec,
    outcome: &Result<Plan, kube_endpoints::plan::InvalidSpec>,
) {
    match outcome {
        Ok(plan) => check_plan(spec, plan),
        Err(invalid) => {
            assert!(!invalid.0.is_empty(), "an error without a field error");
            for e in &invalid.0 {
                assert!(
                    e.field.starts_with("spec."),
                    "{e} does not name a spec field"
                );
                assert!(!e.message.is_empty(), "{e} has no message");
            }
        }
    }
}

/// The invariants of a plan of `spec`.
fn check_plan(spec: &ClusterEndpointSpec, plan: &Plan) {
    // Ports sorted and unique by name.
    let names: Vec<&str> = plan.ports.iter().map(|p| p.name.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(names, sorted, "port plans not sorted and unique");
    assert_eq!(plan.headless, spec.cluster_ip.as_deref() == Some("None"));
    let expected: usize = spec
        .ports
        .iter()
        .map(|p| 1 + p.additional_target_ports.len())
        .sum();
    assert_eq!(plan.ports.len(), expected);
    for sp in &spec.ports {
        let mine: Vec<_> = plan
            .ports
            .iter()
            .filter(|p| p.service_port == sp.name)
            .collect();
        assert_eq!(mine.len(), 1 + sp.additional_target_ports.len());
        assert_eq!(mine.iter().filter(|p| p.primary).count(), 1);
        let targets: BTreeSet<i32> = mine.iter().map(|p| i32::from(p.target_port)).collect();
        let wanted: BTreeSet<i32> = std::iter::once(sp.target_port)
            .chain(sp.additional_target_ports.iter().copied())
            .collect();
        assert_eq!(targets, wanted);
        let hosts_in_spec = if sp.hosts.is_empty() {
            &spec.hosts
        } else {
            &sp.hosts
        };
        // A planned spec's hosts all parse (a corrupted one may hold a
        // DNS name, which goes to `names`, not `hosts`).
        let (mut wanted_hosts, mut wanted_names) = (BTreeSet::new(), BTreeSet::new());
        for h in hosts_in_spec {
            match parse_host(h.address()).expect("planned specs have valid hosts") {
                Host::Address(ip) => {
                    wanted_hosts.insert(ip);
                }
                Host::Name(name) => {
                    wanted_names.insert(name);
                }
            }
        }
        for p in &mine {
            assert!(!p.hosts.is_empty() || !p.names.is_empty());
            assert!(p.names.windows(2).all(|w| w[0] < w[1]), "names not sorted");
            assert_eq!(
                p.names.iter().cloned().collect::<BTreeSet<_>>(),
                wanted_names
            );
            let set: BTreeSet<_> = p.hosts.iter().copied().collect();
            assert_eq!(set.len(), p.hosts.len(), "duplicate hosts");
            assert!(p.hosts.windows(2).all(|w| w[0] < w[1]), "hosts not sorted");
            assert_eq!(set, wanted_hosts);
            assert_eq!(p.protocol, sp.protocol);
            assert_eq!(p.port, sp.port);
            let period = sp.period_seconds.unwrap_or(spec.period_seconds);
            assert_eq!(p.period.as_secs(), u64::try_from(period).expect("positive"));
            assert_eq!(
                p.timeout.as_secs(),
                u64::try_from(sp.timeout_seconds).expect("positive")
            );
            assert_eq!(
                i64::from(p.thresholds.failure),
                i64::from(sp.failure_threshold)
            );
            assert_eq!(
                i64::from(p.thresholds.success),
                i64::from(sp.success_threshold)
            );
            let probed = sp.tcp_socket.as_ref().is_some_and(|h| h.enable)
                || sp.http_get.is_some()
                || sp.udp_socket.as_ref().is_some_and(|h| h.enable)
                || sp.grpc.as_ref().is_some_and(|h| h.enable);
            assert_eq!(p.probe.is_some(), probed, "{}", p.name);
            let probe_port = sp.probe_port.map(|q| u16::try_from(q).expect("a port"));
            assert_eq!(p.probe_port, probe_port, "{}", p.name);
            let secs = |s: Option<i32>| {
                s.map(|s| std::time::Duration::from_secs(u64::try_from(s).expect("positive")))
            };
            assert_eq!(
                p.intervals.unhealthy_period,
                secs(sp.unhealthy_period_seconds)
            );
            assert_eq!(p.intervals.edge_period, secs(sp.edge_period_seconds));
            assert_eq!(
                i32::from(p.intervals.jitter_percent),
                sp.jitter_percent.unwrap_or(0)
            );
        }
    }
    // Targets: exactly the probed (port, host) pairs.
    let targets = plan.targets();
    let probed: usize = plan
        .ports
        .iter()
        .filter(|p| p.probe.is_some())
        .map(|p| p.hosts.len())
        .sum();
    assert_eq!(targets.len(), probed);
    for id in targets.keys() {
        let port = plan
            .ports
            .iter()
            .find(|p| p.name == id.port)
            .expect("a target of an unknown port");
        assert!(port.hosts.contains(&id.host));
    }
}

fn decode(v: &Value) -> Option<ClusterEndpointSpec> {
    serde_json::from_value(v.clone()).ok()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_json_decodes_or_is_refused_and_plans_without_panicking(v in any_json()) {
        if let Some(spec) = decode(&v) {
            let outcome = plan("db", &spec);
            check_outcome(&spec, &outcome);
        }
    }

    #[test]
    fn corrupted_specs_never_panic_and_errors_name_spec_fields(v in corrupted_spec()) {
        if let Some(spec) = decode(&v) {
            let outcome = plan("db", &spec);
            check_outcome(&spec, &outcome);
        }
    }

    #[test]
    fn valid_specs_plan_and_their_invariants_hold(v in valid_spec()) {
        let spec = decode(&v).expect("a valid spec decodes");
        let planned = plan("db", &spec);
        prop_assert!(planned.is_ok(), "{:?} refused: {}", v, planned.err().map(|e| e.to_string()).unwrap_or_default());
        let planned = planned.expect("checked");
        check_plan(&spec, &planned);
        // The same spec plans the same, whatever the order of its hosts and
        // ports.
        let mut shuffled = spec.clone();
        shuffled.ports.reverse();
        shuffled.hosts.reverse();
        for p in &mut shuffled.ports {
            p.hosts.reverse();
        }
        prop_assert_eq!(plan("db", &shuffled).ok(), Some(planned));
    }

    #[test]
    fn a_bad_field_is_reported_under_its_exact_path(
        v in valid_spec(),
        which in any::<prop::sample::Index>(),
        bad in 0usize..7,
    ) {
        let mut v = v;
        let ports = v["ports"].as_array().map_or(0, Vec::len);
        let i = which.index(ports);
        let (key, value, field) = match bad {
            0 => ("targetPort", json!(0), format!("spec.ports[{i}].targetPort")),
            1 => ("port", json!(65536), format!("spec.ports[{i}].port")),
            2 => ("timeoutSeconds", json!(0), format!("spec.ports[{i}].timeoutSeconds")),
            3 => ("failureThreshold", json!(-3), format!("spec.ports[{i}].failureThreshold")),
            4 => ("protocol", json!("ICMP"), format!("spec.ports[{i}].protocol")),
            5 => ("name", json!("Not_A_Label"), format!("spec.ports[{i}].name")),
            _ => ("hosts", json!(["198.18.0.1", "127.0.0.1"]), format!("spec.ports[{i}].hosts[1]")),
        };
        v["ports"][i][key] = value;
        let spec = decode(&v).expect("still decodes");
        let invalid = plan("db", &spec).expect_err("refused");
        prop_assert!(
            invalid.0.iter().any(|e| e.field == field),
            "expected an error on {}, got {}", field, invalid
        );
        check_outcome(&spec, &Err(invalid));
    }
}
