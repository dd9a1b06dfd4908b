use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use tokio::time::Instant;

use super::*;

fn base() -> LeaseConfig {
    LeaseConfig {
        name: "ke".into(),
        namespace: "ns".into(),
        identity: "me".into(),
        duration_seconds: 6,
    }
}

fn lease(name: &str, version: &str, holder: Option<&str>, shards: Option<u32>) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(name.into()),
            resource_version: Some(version.into()),
            annotations: shards
                .map(|n| BTreeMap::from([(SHARDS_ANNOTATION.into(), n.to_string())])),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: holder.map(String::from),
            lease_duration_seconds: Some(6),
            ..LeaseSpec::default()
        }),
    }
}

#[test]
fn members_count_while_their_lease_changes_and_shards_count_for_live_members() {
    let mut seen = Seen::new();
    let t0 = Instant::now();
    let leases = vec![
        lease("ke-member-me", "1", Some("me"), Some(4)),
        lease("ke-member-other", "1", Some("other"), Some(4)),
        lease("ke-shard-0", "5", Some("other"), None),
        lease("ke-shard-1", "5", Some("me"), None),
        lease("ke-shard-2", "5", Some("ghost"), None),
        lease("unrelated", "9", Some("other"), None),
    ];
    let look1 = look(&leases, &base(), 4, &mut seen, t0);
    assert_eq!(
        look1.view.leading,
        BTreeMap::from([("me".to_string(), 1), ("other".to_string(), 1)]),
        "ghost is no member; unrelated Leases are ignored"
    );
    assert_eq!(look1.barred, None);
    assert!(!look1.yield_all);
    assert!(!seen.contains_key("unrelated"));

    // Other stops renewing: after its duration it no longer counts.
    let mut renewed = leases.clone();
    renewed[0] = lease("ke-member-me", "2", Some("me"), Some(4));
    let later = look(&renewed, &base(), 4, &mut seen, t0 + Duration::from_secs(7));
    assert_eq!(later.view.leading, BTreeMap::from([("me".to_string(), 1)]));
}

#[test]
fn another_count_or_an_unsharded_leader_bars_taking() {
    let t0 = Instant::now();
    let other = vec![lease("ke-member-old", "1", Some("old"), Some(2))];
    let look1 = look(&other, &base(), 4, &mut Seen::new(), t0);
    assert!(look1.barred.expect("barred").contains("--shards 2"));
    assert!(!look1.yield_all);

    let unsharded = vec![lease("ke", "1", Some("old"), None)];
    let look2 = look(&unsharded, &base(), 4, &mut Seen::new(), t0);
    assert!(look2.barred.is_some());
    assert!(look2.yield_all);

    // A released unsharded Lease bars nothing.
    let released = vec![lease("ke", "1", None, None)];
    let look3 = look(&released, &base(), 4, &mut Seen::new(), t0);
    assert_eq!(look3.barred, None);
}
