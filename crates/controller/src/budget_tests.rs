use super::*;
use kube_endpoints_api::{Condition, PortStatus};

fn key(ns: &str, name: &str) -> ObjectKey {
    ObjectKey {
        namespace: ns.into(),
        name: name.into(),
        group: "khulnasoft-lab.github.io".into(),
    }
}

fn claim(created: &str, targets: usize, incumbent: bool) -> Claim {
    Claim {
        created: created.parse().expect("seconds"),
        targets,
        incumbent,
    }
}

fn limits(global: usize, per_namespace: Option<usize>) -> Limits {
    Limits {
        global: Some(global),
        per_namespace,
    }
}

/// Claims by (namespace, name, created, targets, incumbent).
fn claims<const N: usize>(
    entries: [(&str, &str, &str, usize, bool); N],
) -> BTreeMap<ObjectKey, Claim> {
    entries
        .into_iter()
        .map(|(ns, name, created, targets, incumbent)| {
            (key(ns, name), claim(created, targets, incumbent))
        })
        .collect()
}

fn assert_exceeded(budget: &Budget, ns: &str, name: &str) {
    let verdict = budget.verdict(&key(ns, name));
    assert!(
        matches!(verdict, Verdict::Exceeded(_)),
        "{ns}/{name}: {verdict:?}"
    );
}

/// Subscribes to the budget's verdict changes for `namespace` (all when `None`).
fn subscribe(
    budget: &Budget,
    namespace: Option<&str>,
) -> tokio::sync::mpsc::UnboundedReceiver<
    kube::runtime::reflector::ObjectRef<kube::core::DynamicObject>,
> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    budget.subscribe(
        "khulnasoft-lab.github.io",
        namespace,
        kube_endpoints_api::api_resource("khulnasoft-lab.github.io"),
        tx,
    );
    rx
}

fn exceeded(budget: Scope, limit: usize, used: usize, needs: usize) -> Verdict {
    Verdict::Exceeded(Exceeded {
        budget,
        limit,
        used,
        needs,
    })
}

/// Admits `claims` under `limits` and asserts which objects are admitted
/// (as `namespace/name`) and the verdict on one refused; returns all verdicts.
fn assert_admission(
    limits: Limits,
    claims: BTreeMap<ObjectKey, Claim>,
    want_admitted: &[&str],
    (refused, verdict): (ObjectKey, Verdict),
) -> BTreeMap<ObjectKey, Verdict> {
    let verdicts = admit(&claims, &limits);
    assert_eq!(admitted(&verdicts), want_admitted);
    assert_eq!(verdicts[&refused], verdict, "{refused:?}");
    verdicts
}

fn admitted(verdicts: &BTreeMap<ObjectKey, Verdict>) -> Vec<String> {
    verdicts
        .iter()
        .filter(|(_, v)| **v == Verdict::Admitted)
        .map(|(k, _)| format!("{}/{}", k.namespace, k.name))
        .collect()
}

#[test]
fn unlimited_admits_everything() {
    let claims = BTreeMap::from([(key("a", "x"), claim("00", 1_000_000, false))]);
    assert_eq!(admitted(&admit(&claims, &Limits::default())), ["a/x"]);
}

#[test]
fn objects_are_admitted_oldest_first_and_refused_whole() {
    // 60 fits; 60 + 50 does not, so `mid` is refused whole; 60 + 40 fits.
    let verdicts = assert_admission(
        limits(100, None),
        claims([
            ("a", "old", "01", 60, false),
            ("b", "mid", "02", 50, false),
            ("c", "new", "03", 40, false),
        ]),
        &["a/old", "c/new"],
        (key("b", "mid"), exceeded(Scope::Global, 100, 60, 50)),
    );
    let text = match &verdicts[&key("b", "mid")] {
        Verdict::Exceeded(e) => e.to_string(),
        Verdict::Admitted => unreachable!(),
    };
    assert!(
        text.starts_with("this object declares 50 targets (host-ports) but only 40 of the global target budget (--max-targets) of 100 are free"),
        "{text}"
    );
}

#[test]
fn an_incumbent_that_grows_is_refused_and_nobody_else_moves() {
    let limits = limits(100, None);
    // `old` (60) and `new` (40) were admitted; `old` grows to 70.
    let grown = claims([("a", "old", "01", 70, false), ("c", "new", "03", 40, true)]);
    let verdicts = admit(&grown, &limits);
    assert_eq!(admitted(&verdicts), ["c/new"]);
    // Once it shrinks back it fits again.
    let shrunk = claims([("a", "old", "01", 60, false), ("c", "new", "03", 40, true)]);
    assert_eq!(admitted(&admit(&shrunk, &limits)), ["a/old", "c/new"]);
}

#[test]
fn the_namespace_budget_confines_a_namespace_only() {
    assert_admission(
        limits(5000, Some(2000)),
        claims([
            ("a", "big", "01", 3000, false),
            ("a", "small", "02", 1500, false),
            ("a", "more", "03", 600, false),
            ("b", "ok", "04", 5, false),
        ]),
        &["a/small", "b/ok"],
        (
            key("a", "more"),
            exceeded(Scope::Namespace("a".into()), 2000, 1500, 600),
        ),
    );
}

#[test]
fn verdicts_do_not_depend_on_the_order_claims_arrive_in() {
    let limits = limits(10, Some(6));
    let all = [
        (key("a", "p"), claim("05", 4, false)),
        (key("a", "q"), claim("01", 4, true)),
        (key("b", "r"), claim("03", 5, false)),
        (key("b", "s"), claim("02", 1, false)),
    ];
    let expected = admit(&all.iter().cloned().collect(), &limits);
    let budget = Budget::new(limits);
    for order in [[0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1]] {
        let budget_run = Budget::new(limits);
        for i in order {
            budget_run.update(&all[i].0, Some(all[i].1.clone()));
        }
        for (k, v) in &expected {
            assert_eq!(budget_run.verdict(k), *v, "{k:?} in order {order:?}");
        }
    }
    // Deleting the incumbent frees room for `p`, and its scope is told.
    let mut rx = subscribe(&budget, Some("a"));
    for (k, c) in &all {
        budget.update(k, Some(c.clone()));
    }
    assert_exceeded(&budget, "a", "p");
    // (`p` arrived before the incumbent `q` and was admitted until then.)
    while rx.try_recv().is_ok() {}
    assert_eq!(budget.update(&key("a", "q"), None), Verdict::Admitted);
    assert_eq!(budget.verdict(&key("a", "p")), Verdict::Admitted);
    let told = rx.try_recv().expect("a reconcile of a/p is requested");
    assert_eq!(
        (told.name.as_str(), told.namespace.as_deref()),
        ("p", Some("a"))
    );
    assert!(rx.try_recv().is_err(), "nobody else moved");
}

#[test]
fn retain_forgets_objects_gone_from_a_scope() {
    let limits = limits(5, None);
    let budget = Budget::new(limits);
    budget.update(&key("a", "x"), Some(claim("01", 5, true)));
    budget.update(&key("b", "y"), Some(claim("02", 5, false)));
    assert_exceeded(&budget, "b", "y");
    // Namespace b's scope re-lists: it says nothing about namespace a.
    budget.retain("khulnasoft-lab.github.io", Some("b"), |_| true);
    assert_exceeded(&budget, "b", "y");
    budget.retain("khulnasoft-lab.github.io", Some("a"), |_| false);
    assert_eq!(budget.verdict(&key("b", "y")), Verdict::Admitted);
}

#[test]
fn incumbency_is_read_from_the_status() {
    let port = |total| PortStatus {
        name: "p".into(),
        probe: "tcp".into(),
        ready: 0,
        total,
        ..kube_endpoints_api::PortStatus::default()
    };
    let initialized = |ok: bool| Condition {
        type_: CONDITION_INITIALIZED.into(),
        status: if ok { "True" } else { "False" }.into(),
        reason: String::new(),
        message: String::new(),
        last_transition_time: String::new(),
        last_heartbeat_time: None,
    };
    let status = ClusterEndpointStatus {
        conditions: vec![initialized(true)],
        ports: vec![port(3), port(4)],
        ..ClusterEndpointStatus::default()
    };
    assert!(is_incumbent(Some(&status), 7));
    assert!(is_incumbent(Some(&status), 5), "shrunk");
    assert!(!is_incumbent(Some(&status), 8), "grown");
    assert!(!is_incumbent(None, 1));
    let refused = ClusterEndpointStatus {
        conditions: vec![initialized(false)],
        ..status
    };
    assert!(!is_incumbent(Some(&refused), 0));
}

#[test]
fn an_initial_list_is_judged_once_it_is_complete_and_in_creation_order() {
    let limits = limits(5, None);
    let budget = Budget::new(limits);
    // Listed newest first: recorded, not judged one by one.
    budget.record(&key("a", "new"), claim("02", 5, false));
    budget.record(&key("a", "old"), claim("01", 5, false));
    budget.retain("khulnasoft-lab.github.io", None, |_| true);
    assert_eq!(budget.verdict(&key("a", "old")), Verdict::Admitted);
    assert_exceeded(&budget, "a", "new");
}

#[test]
fn an_admitted_object_becoming_incumbent_moves_nobody() {
    let limits = limits(10, None);
    let budget = Budget::new(limits);
    let mut rx = subscribe(&budget, None);
    budget.update(&key("a", "x"), Some(claim("01", 6, false)));
    budget.update(&key("b", "y"), Some(claim("02", 6, false)));
    budget.update(&key("a", "x"), Some(claim("01", 6, true)));
    assert_eq!(budget.verdict(&key("a", "x")), Verdict::Admitted);
    assert_exceeded(&budget, "b", "y");
    assert!(rx.try_recv().is_err(), "no verdict moved");
}
