//! Sharding across replicas, end to end: two `kube-endpoints run`
//! processes with `--shards 4` against a real apiserver, authenticated as
//! the chart's ServiceAccount with exactly the RBAC the chart renders for
//! `shards=4`. The shards balance
//! two and two; every object is reconciled by exactly one replica (the
//! leader of its shard); killing one replica (SIGKILL) moves its shards to
//! the other, the handover itself changes no EndpointSlice, Endpoints,
//! Service or status, and the survivor goes on detecting host failures on
//! the objects of the shards it took over. A replica started with another
//! shard count takes no shard while a replica of the old count lives.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, Patch, PatchParams};
use kube_endpoints::sharding::shard_of;
use kube_endpoints_api::{GROUP, Phase};
use kube_endpoints_testkit::netns::TestHost;
use support::chart_rbac::{install_chart_rbac, service_account_kubeconfig};
use support::*;

const SHARDS: u32 = 4;
const LEASE_SECONDS: &str = "6";
const NS: &str = "e2e-sharding";
const RELEASE: &str = "ke";
const SYSTEM_NS: &str = "kube-endpoints-system";

/// How the replicas run: as the chart's ServiceAccount, on its Lease.
struct Replicas {
    kubeconfig: PathBuf,
    lease: String,
}

impl Replicas {
    async fn start(&self) -> Controller {
        self.start_with("4").await
    }

    async fn start_with(&self, shards: &str) -> Controller {
        let args = [
            "--leader-election=true",
            "--lease-name",
            &self.lease,
            "--lease-namespace",
            SYSTEM_NS,
            "--lease-duration-seconds",
            LEASE_SECONDS,
            "--shards",
            shards,
        ];
        start_controller_as(NS, &args, &self.kubeconfig).await
    }
}

/// The value of each series of `name`, by its `shard` label.
async fn by_shard(c: &Controller, name: &str) -> BTreeMap<u32, f64> {
    let prefix = format!("{name}{{shard=\"");
    c.metrics()
        .await
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(&prefix)?;
            let (shard, value) = rest.split_once("\"} ")?;
            Some((shard.parse().ok()?, value.trim().parse().ok()?))
        })
        .collect()
}

/// The shards `c` leads now.
async fn led(c: &Controller) -> BTreeSet<u32> {
    by_shard(c, "kube_endpoints_shard_leader")
        .await
        .into_iter()
        .filter(|(_, v)| *v == 1.0)
        .map(|(s, _)| s)
        .collect()
}

/// Two object names per shard.
fn names() -> Vec<(String, u32)> {
    let mut per_shard = BTreeMap::<u32, usize>::new();
    (0..)
        .map(|i| format!("cep-{i}"))
        .filter_map(|name| {
            let shard = shard_of(NS, &name, SHARDS);
            let n = per_shard.entry(shard).or_default();
            (*n < 2).then(|| {
                *n += 1;
                (name, shard)
            })
        })
        .take(2 * SHARDS as usize)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn shards_balance_each_object_has_one_writer_and_failover_moves_nothing() {
    let admin = client().await;
    let install = install_chart_rbac(&admin, RELEASE, SYSTEM_NS, &["--set", "shards=4"]).await;
    let replicas = Replicas {
        kubeconfig: service_account_kubeconfig(&admin, SYSTEM_NS, &install.service_account).await,
        lease: install.lease_name,
    };
    install_crd(&admin, GROUP).await;
    let ns = namespace(&admin, NS).await;
    let steady = TestHost::create().await.expect("host");
    let victim = TestHost::create().await.expect("host");
    let ports = tcp_and_http_ports();
    let _steady_backend = steady.start_backend(ports.clone()).await.expect("backend");
    let mut victim_backend = victim.start_backend(ports).await.expect("backend");

    // (a) The shards balance two and two, before any object exists (so that
    // the start-up rebalancing cannot make both replicas reconcile one).
    let a = replicas.start().await;
    let b = replicas.start().await;
    eventually("the shards to balance 2/2", || async {
        let (la, lb) = (led(&a).await, led(&b).await);
        (la.len() == 2 && lb.len() == 2 && la.is_disjoint(&lb)).then_some(())
    })
    .await;
    for c in [&a, &b] {
        assert_eq!(c.metric("kube_endpoints_shards_leading").await, 2.0);
        assert_eq!(c.metric("kube_endpoints_leader").await, 1.0);
    }

    let objects = names();
    for (name, _) in &objects {
        let yaml = format!(
            "apiVersion: {GROUP}/v1beta1\nkind: ClusterEndpoint\nmetadata: {{name: {name}}}\nspec:\n  periodSeconds: 1\n  ports:\n  - {{name: tls, port: 443, targetPort: 443, hosts: [{h1}, {h2}], tcpSocket: {{enable: true}}, failureThreshold: 1}}\n",
            h1 = steady.ipv4(),
            h2 = victim.ipv4()
        );
        must_apply(&admin, &ns, GROUP, &yaml).await;
    }
    for (name, _) in &objects {
        wait_phase(&admin, &ns, GROUP, name, Phase::Healthy).await;
        wait_all_ready(&admin, &ns, name, 2).await;
    }

    // (b) Each object was reconciled by the leader of its shard and by no
    // other replica: the counter is labelled with the shard computed from
    // the reconciled object itself.
    let (led_a, led_b) = (led(&a).await, led(&b).await);
    let (count_a, count_b) = (
        by_shard(&a, "kube_endpoints_shard_reconciles_total").await,
        by_shard(&b, "kube_endpoints_shard_reconciles_total").await,
    );
    for (name, shard) in &objects {
        let (ra, rb) = (
            count_a.get(shard).copied().unwrap_or(0.0),
            count_b.get(shard).copied().unwrap_or(0.0),
        );
        let (leader, reconciled, other) = if led_a.contains(shard) {
            ("a", ra, rb)
        } else {
            ("b", rb, ra)
        };
        assert!(
            reconciled > 0.0,
            "{name} (shard {shard}) was not reconciled by its leader {leader}"
        );
        assert_eq!(
            other, 0.0,
            "{name} (shard {shard}) was also reconciled by the replica not leading it"
        );
    }
    for c in [&a, &b] {
        assert!(c.metric("kube_endpoints_api_writes_total").await > 0.0);
    }

    // (c) SIGKILL b: its Leases are left to expire, a takes its shards.
    let moved = led_b.clone();
    let mut before = BTreeMap::new();
    for (name, _) in &objects {
        before.insert(
            name.clone(),
            (
                resource_versions(&admin, &ns, GROUP, name).await,
                slice_readiness(&admin, &ns, name).await,
            ),
        );
    }
    let killed = std::time::Instant::now();
    b.kill().await;
    eventually("the survivor to lead all shards", || async {
        (led(&a).await.len() == SHARDS as usize).then_some(())
    })
    .await;
    eprintln!(
        "after SIGKILL the survivor led all shards {:?} later (Lease {LEASE_SECONDS}s)",
        killed.elapsed()
    );
    eventually(
        "the survivor to reconcile and probe the moved shards",
        || async {
            let counts = by_shard(&a, "kube_endpoints_shard_reconciles_total").await;
            let reconciled = moved
                .iter()
                .all(|s| counts.get(s).copied().unwrap_or(0.0) > 0.0);
            let metrics = a.metrics().await;
            let probed = metrics
                .lines()
                .any(|l| l == "kube_endpoints_host_ports{state=\"ready\"} 16")
                && metrics
                    .lines()
                    .any(|l| l == "kube_endpoints_host_ports{state=\"pending\"} 0");
            (reconciled && probed).then_some(())
        },
    )
    .await;
    for (name, (versions, readiness)) in &before {
        assert_eq!(
            &resource_versions(&admin, &ns, GROUP, name).await,
            versions,
            "the handover changed an object of {name}"
        );
        assert_eq!(
            &slice_readiness(&admin, &ns, name).await,
            readiness,
            "the handover moved an endpoint of {name}"
        );
    }

    // The survivor detects a host failure on the objects of moved shards.
    victim_backend.stop().await.expect("stop");
    for (name, shard) in objects.iter().filter(|(_, s)| moved.contains(s)) {
        wait_phase(&admin, &ns, GROUP, name, Phase::UnHealthy).await;
        eventually("the stopped host to be listed unhealthy", || async {
            let s = get_cep(&admin, &ns, GROUP, name).await?.status?;
            s.ports.iter().all(|p| p.unhealthy.len() == 1).then_some(())
        })
        .await;
        eprintln!("{name} (shard {shard}, moved) detected the failure");
    }

    // (d) A replica that splits the objects differently (a rollout changing
    // --shards) takes no shard while a replica of the other count lives,
    // not even a free one its share would let it take, and takes over once
    // that replica is gone.
    let c = replicas.start_with("2").await;
    eventually("the replica of another count to hold back", || async {
        c.log().contains("taking no shard").then_some(())
    })
    .await;
    let leases: Api<Lease> = Api::namespaced(admin.clone(), SYSTEM_NS);
    leases
        .patch(
            &format!("{}-shard-0", replicas.lease),
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"holderIdentity": null}})),
        )
        .await
        .expect("shard 0 is set free");
    eventually("the survivor to notice it lost shard 0", || async {
        (!led(&a).await.contains(&0)).then_some(())
    })
    .await;
    // Absence over a window: two Lease durations, in which c would have
    // taken the free shard at once (0 shards led, share 1) were it not held
    // back.
    let window = std::time::Instant::now();
    while window.elapsed() < std::time::Duration::from_secs(12) {
        assert_eq!(
            c.metric("kube_endpoints_shards_leading").await,
            0.0,
            "a replica of another shard count took a shard: {}",
            c.log_tail(20)
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    a.kill().await;
    eventually(
        "the replica of the new count to lead once alone",
        || async { (led(&c).await.len() == 2).then_some(()) },
    )
    .await;
}
