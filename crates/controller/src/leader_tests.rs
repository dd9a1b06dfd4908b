use super::*;

fn config(seconds: u64) -> LeaseConfig {
    LeaseConfig {
        name: "ke".into(),
        namespace: "sys".into(),
        identity: "me_0001".into(),
        duration_seconds: seconds,
    }
}

fn lease(rv: &str, holder: Option<&str>, seconds: i32) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some("ke".into()),
            resource_version: Some(rv.into()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: holder.map(String::from),
            lease_duration_seconds: Some(seconds),
            lease_transitions: Some(4),
            ..LeaseSpec::default()
        }),
    }
}

#[test]
fn timing_leaves_a_margin_between_the_last_write_and_any_takeover() {
    for seconds in [3, 6, 15, 300] {
        let c = config(seconds);
        assert!(c.renew_interval() < c.renew_deadline());
        // Two renewal attempts fit before stepping down.
        assert!(c.renew_interval() * 2 <= c.renew_deadline());
        // Stepping down at the deadline, plus the time the kernel may
        // still deliver an abandoned write, ends before a standby that
        // saw the last renewal may take over.
        assert!(c.renew_deadline() + c.tcp_user_timeout() < c.duration());
        assert!(c.retry() < c.renew_interval());
    }
    assert_eq!(config(15).renew_deadline(), Duration::from_secs(10));
    assert_eq!(config(15).tcp_user_timeout(), Duration::from_millis(2500));
}

#[test]
fn field_managers_differ_per_replica_and_fit_the_limit() {
    let a = config(15);
    let mut b = config(15);
    b.identity = "other_0002".into();
    assert_ne!(a.field_manager(), b.field_manager());
    assert_eq!(a.field_manager(), "kube-endpoints-lease-me_0001");
    b.identity = "x".repeat(300);
    assert_eq!(b.field_manager().len(), 128);
}

#[test]
fn a_standby_waits_a_whole_duration_from_when_it_saw_the_lease_change() {
    let t0 = Instant::now();
    let me = "me_0001";
    // The Lease held by another replica at resourceVersion `rv`, as seen at `at`.
    let observe = |previous: Option<&Observation>, rv: &str, at: Instant| {
        Observation::next(
            previous,
            &lease(rv, Some("other"), 6),
            Duration::from_secs(15),
            at,
        )
    };
    let first = observe(None, "1", t0);
    assert_eq!(first.changed_at, t0);
    assert_eq!(first.duration, Duration::from_secs(6));
    assert!(!first.may_take(me, t0 + Duration::from_secs(5)));
    // The same resourceVersion later: the clock keeps running from t0.
    let t1 = t0 + Duration::from_secs(4);
    let same = observe(Some(&first), "1", t1);
    assert_eq!(same.changed_at, t0);
    assert!(same.may_take(me, t0 + Duration::from_secs(6)));
    // A renewal (new resourceVersion) restarts it, whatever
    // renewTime says: the holder's clock is never trusted.
    let renewed = observe(Some(&same), "2", t1);
    assert_eq!(renewed.changed_at, t1);
    assert!(!renewed.may_take(me, t0 + Duration::from_secs(6)));
    assert!(renewed.may_take(me, t1 + Duration::from_secs(6)));
}

#[test]
fn a_free_or_own_lease_may_be_taken_at_once() {
    let t0 = Instant::now();
    let fallback = Duration::from_secs(15);
    let free = Observation::next(None, &lease("1", None, 6), fallback, t0);
    assert!(free.may_take("me_0001", t0));
    let empty = Observation::next(None, &lease("1", Some(""), 6), fallback, t0);
    assert!(empty.may_take("me_0001", t0));
    let ours = Observation::next(None, &lease("1", Some("me_0001"), 6), fallback, t0);
    assert!(ours.may_take("me_0001", t0));
    // A nonsensical duration falls back to ours.
    let odd = Observation::next(None, &lease("1", Some("x"), 0), fallback, t0);
    assert_eq!(odd.duration, fallback);
}

#[test]
fn holding_is_conditional_and_counts_transitions_only_on_takeover() {
    let c = config(15);
    let now = now_micro();
    let taken = holding(Some(&lease("7", Some("other"), 6)), &c, now.clone());
    assert_eq!(taken.metadata.resource_version.as_deref(), Some("7"));
    let spec = taken.spec.expect("spec");
    assert_eq!(spec.holder_identity.as_deref(), Some("me_0001"));
    assert_eq!(spec.lease_transitions, Some(5));
    assert_eq!(spec.lease_duration_seconds, Some(15));
    assert_eq!(spec.acquire_time, Some(now.clone()));

    let mut mine = lease("8", Some("me_0001"), 15);
    if let Some(s) = mine.spec.as_mut() {
        s.acquire_time = Some(MicroTime(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
    }
    let renewed = holding(Some(&mine), &c, now.clone()).spec.expect("spec");
    assert_eq!(renewed.lease_transitions, Some(4));
    assert_eq!(
        renewed.acquire_time,
        Some(MicroTime(k8s_openapi::jiff::Timestamp::UNIX_EPOCH))
    );
    assert_eq!(renewed.renew_time, Some(now.clone()));

    let created = holding(None, &c, now);
    assert_eq!(created.metadata.resource_version, None);

    let free = released(&mine);
    assert_eq!(free.metadata.resource_version.as_deref(), Some("8"));
    assert_eq!(free.spec.and_then(|s| s.holder_identity), None);
}
