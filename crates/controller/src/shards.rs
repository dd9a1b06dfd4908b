//! Sharding across replicas, the shell (`--shards N`, N > 1): one
//! coordination.k8s.io Lease per shard, each campaigned for with the same
//! election as unsharded leader election ([`crate::leader`]), and one
//! membership Lease per replica so that every replica can count the live
//! ones and lead its fair share ([`crate::sharding`]).
//!
//! While it leads shard `i` a replica runs the controllers for the objects
//! of shard `i` only, writing through shard `i`'s own client and
//! [`Fence`]: losing shard `i`'s Lease stops exactly those writes. A
//! replica leading more than its share hands the excess over gracefully
//! (controllers stopped, fence closed, Lease released); one leading fewer
//! takes free shards at once. Balance is only about load: which replica
//! may write an object is decided by the shard Leases alone.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::fence::Fence;
use crate::leader::{LeaseConfig, Seat, run_seat};
use crate::metrics::{Metrics, ShardLabels};
use crate::server::Liveness;
use crate::sharding::{
    Hysteresis, SHARDS_ANNOTATION, Shard, View, member_lease_name, member_lease_prefix,
    mixed_counts, shard_lease_name, shard_of_lease,
};

/// The liveness part the membership loop beats.
const MEMBERSHIP_PART: &str = "shard-membership";

/// What the shard seats and the membership loop of one replica share.
struct Board {
    identity: String,
    metrics: Arc<Metrics>,
    state: Mutex<BoardState>,
    /// Per shard: wakes its leader to hand the shard over.
    hand_over: Vec<Notify>,
    /// How long a decision to take a shard holds a place in the share
    /// while its Lease write is under way.
    reservation: std::time::Duration,
}

struct BoardState {
    leading: BTreeSet<u32>,
    /// Shards being taken: counted in the share until led or expired, so
    /// that several free shards are not all taken at once past the share.
    reserved: BTreeMap<u32, Instant>,
    /// The last look at the members; `None` before the first.
    view: Option<View>,
    /// Why no shard may be taken now ([`mixed_counts`]).
    barred: Option<String>,
    hysteresis: Hysteresis,
}

impl Board {
    fn state(&self) -> MutexGuard<'_, BoardState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The view with this replica's own count as it is now.
    fn current_view(state: &BoardState, identity: &str) -> Option<View> {
        let mut view = state.view.clone()?;
        let now = Instant::now();
        let reserved = state
            .reserved
            .iter()
            .filter(|(shard, until)| **until > now && !state.leading.contains(shard))
            .count();
        view.leading
            .insert(identity.to_string(), state.leading.len() + reserved);
        Some(view)
    }
}

/// One shard's Lease, as [`run_seat`] campaigns for it.
struct ShardSeat {
    board: Arc<Board>,
    index: u32,
    part: &'static str,
}

impl Seat for ShardSeat {
    fn liveness_part(&self) -> &'static str {
        self.part
    }

    fn set_leading(&self, leading: bool) {
        let mut state = self.board.state();
        state.reserved.remove(&self.index);
        if leading {
            state.leading.insert(self.index);
        } else {
            state.leading.remove(&self.index);
        }
        let metrics = &self.board.metrics;
        let count = state.leading.len();
        metrics
            .shards
            .leading
            .set(i64::try_from(count).unwrap_or(i64::MAX));
        metrics
            .shards
            .leader
            .get_or_create(&ShardLabels::of(self.index))
            .set(i64::from(leading));
        metrics.leader.set(i64::from(count > 0));
    }

    fn can_read(&self) {
        self.board.metrics.set_ready(true);
    }

    fn barred(&self) -> bool {
        let state = self.board.state();
        state.view.is_none() || state.barred.is_some()
    }

    fn may_take(&self) -> bool {
        let mut state = self.board.state();
        let Some(view) = Board::current_view(&state, &self.board.identity) else {
            return false;
        };
        let now = Instant::now();
        if !state.hysteresis.may_take(&view, now) {
            return false;
        }
        state
            .reserved
            .insert(self.index, now + self.board.reservation);
        true
    }

    fn hand_over(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(self.board.hand_over[self.index as usize].notified())
    }
}

/// Campaign for `count` shards of `base` until `shutdown`; while leading
/// shard `i`, run `controllers(shard).1` behind the fence `controllers(shard).0`
/// (the fence of the client that controller writes with). Returns the
/// controllers' results of the shards that were led at shutdown.
pub async fn run_sharded<C, F, Fut, T>(
    client: Client,
    base: LeaseConfig,
    count: u32,
    metrics: Arc<Metrics>,
    liveness: Liveness,
    shutdown: CancellationToken,
    controllers: C,
) -> Vec<T>
where
    C: Fn(Shard) -> (Fence, F),
    F: Fn(CancellationToken) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let settle = base.duration();
    let board = Arc::new(Board {
        identity: base.identity.clone(),
        metrics: metrics.clone(),
        state: Mutex::new(BoardState {
            leading: BTreeSet::new(),
            reserved: BTreeMap::new(),
            view: None,
            barred: None,
            hysteresis: Hysteresis::new(settle, settle * 2),
        }),
        hand_over: (0..count).map(|_| Notify::new()).collect(),
        reservation: base.renew_deadline(),
    });
    for index in 0..count {
        metrics
            .shards
            .leader
            .get_or_create(&ShardLabels::of(index))
            .set(0);
    }
    let membership = tokio::spawn(keep_membership(
        Api::namespaced(client.clone(), &base.namespace),
        base.clone(),
        count,
        board.clone(),
        liveness.clone(),
        shutdown.clone(),
    ));
    let campaigns: Vec<_> = (0..count)
        .map(|index| {
            let shard = Shard { index, count };
            let (fence, work) = controllers(shard);
            let config = LeaseConfig {
                name: shard_lease_name(&base.name, index),
                ..base.clone()
            };
            // Bounded: one name per shard, made once.
            let part: &'static str = Box::leak(format!("leader-election/shard-{index}").into());
            let seat = ShardSeat {
                board: board.clone(),
                index,
                part,
            };
            let (client, liveness, shutdown) = (client.clone(), liveness.clone(), shutdown.clone());
            tokio::spawn(async move {
                let result = run_seat(
                    client,
                    config,
                    &seat,
                    &liveness,
                    fence,
                    shutdown.clone(),
                    work,
                )
                .await;
                // A shard whose controllers ended by themselves (an error)
                // ends the process, as unsharded: every shard steps aside
                // and the pod restarts.
                shutdown.cancel();
                result
            })
        })
        .collect();
    let mut results = Vec::new();
    for campaign in futures::future::join_all(campaigns).await {
        if let Ok(Some(result)) = campaign {
            results.push(result);
        }
    }
    // Every shard is released; now leave the membership.
    shutdown.cancel();
    let _ = membership.await;
    results
}

/// What the membership loop remembers of each membership Lease: its
/// resourceVersion and when (on this replica's monotonic clock) it last
/// changed. Like the election, liveness never compares clocks across nodes.
type Seen = HashMap<String, (String, Instant)>;

/// Renew this replica's membership Lease, look at the others, and hand
/// over shards beyond the fair share; every renew interval until shutdown,
/// then delete the membership Lease.
async fn keep_membership(
    api: Api<Lease>,
    base: LeaseConfig,
    count: u32,
    board: Arc<Board>,
    liveness: Liveness,
    shutdown: CancellationToken,
) {
    let mine = member_lease_name(&base.name, &base.identity);
    let mut seen = Seen::new();
    loop {
        liveness.beat(MEMBERSHIP_PART, base.duration() * 4);
        let deadline = Instant::now() + base.renew_deadline();
        if let Err(e) = tokio::time::timeout_at(deadline, renew(&api, &base, count, &mine)).await {
            warn!(error = %e, lease = %mine, "cannot renew the membership Lease in time");
        }
        match tokio::time::timeout_at(deadline, api.list(&ListParams::default())).await {
            Ok(Ok(leases)) => {
                let now = Instant::now();
                let look = look(&leases.items, &base, count, &mut seen, now);
                rebalance(&board, look);
                forget_departed(
                    &api,
                    &member_lease_prefix(&base.name),
                    &leases.items,
                    &seen,
                    base.duration() * STALE_DURATIONS,
                    now,
                    deadline,
                )
                .await;
            }
            Ok(Err(e)) => warn!(error = %e, "cannot list the shard Leases"),
            Err(_) => warn!("cannot list the shard Leases in time"),
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(base.renew_interval()) => {}
        }
    }
    liveness.forget(MEMBERSHIP_PART);
    let deadline = Instant::now() + base.renew_deadline();
    match tokio::time::timeout_at(deadline, api.delete(&mine, &DeleteParams::default())).await {
        Ok(Ok(_)) => info!(lease = %mine, "left the shard membership"),
        Ok(Err(e)) => warn!(error = %e, "cannot delete the membership Lease; it expires"),
        Err(_) => warn!("cannot delete the membership Lease in time; it expires"),
    }
}

/// A membership Lease unchanged for this many durations belongs to a
/// replica that died without leaving (SIGKILL, a lost node): deleted, so
/// that restarted pods (new names) do not pile Leases up.
const STALE_DURATIONS: u32 = 10;

/// Delete the membership Leases unchanged for `stale` (as seen here), each
/// on condition that it is still the version seen: a replica that renewed
/// meanwhile keeps its Lease.
async fn forget_departed(
    api: &Api<Lease>,
    prefix: &str,
    leases: &[Lease],
    seen: &Seen,
    stale: std::time::Duration,
    now: Instant,
    deadline: Instant,
) {
    for lease in leases {
        let Some(name) = lease
            .metadata
            .name
            .as_deref()
            .filter(|n| n.starts_with(prefix))
        else {
            continue;
        };
        let Some((version, changed_at)) = seen.get(name) else {
            continue;
        };
        if now < *changed_at + stale {
            continue;
        }
        let params = DeleteParams {
            preconditions: Some(kube::api::Preconditions {
                resource_version: Some(version.clone()),
                uid: None,
            }),
            ..DeleteParams::default()
        };
        match tokio::time::timeout_at(deadline, api.delete(name, &params)).await {
            Ok(Ok(_)) => info!(lease = %name, "deleted the membership Lease of a departed replica"),
            Ok(Err(e)) => {
                debug!(lease = %name, error = %e, "cannot delete a stale membership Lease")
            }
            Err(_) => debug!(lease = %name, "cannot delete a stale membership Lease in time"),
        }
    }
}

/// Create or renew the membership Lease (server-side apply: no conflict
/// to handle, the Lease is this replica's alone).
async fn renew(
    api: &Api<Lease>,
    base: &LeaseConfig,
    count: u32,
    name: &str,
) -> Result<(), kube::Error> {
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(base.namespace.clone()),
            annotations: Some(BTreeMap::from([(
                SHARDS_ANNOTATION.to_string(),
                count.to_string(),
            )])),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(base.identity.clone()),
            lease_duration_seconds: i32::try_from(base.duration().as_secs()).ok(),
            renew_time: Some(MicroTime(k8s_openapi::jiff::Timestamp::now())),
            ..LeaseSpec::default()
        }),
    };
    let params = PatchParams::apply(&base.field_manager()).force();
    let mut body = serde_json::to_value(&lease).map_err(kube::Error::SerdeError)?;
    body["apiVersion"] = "coordination.k8s.io/v1".into();
    body["kind"] = "Lease".into();
    api.patch(name, &params, &Patch::Apply(&body)).await?;
    Ok(())
}

/// What one look at the Leases of the namespace tells.
struct Look {
    view: View,
    /// Why no shard may be taken now ([`mixed_counts`]).
    barred: Option<String>,
    /// An unsharded replica leads: every shard is handed over at once, to
    /// keep the time two replicas may write one object short (an unsharded
    /// replica does not look at the shards; see docs/scaling.md).
    yield_all: bool,
}

/// Whether a Lease changed within its duration, as this replica saw it
/// (recorded in `seen`).
fn live(
    lease: &Lease,
    name: &str,
    fallback: std::time::Duration,
    seen: &mut Seen,
    now: Instant,
) -> bool {
    let version = lease.metadata.resource_version.clone().unwrap_or_default();
    let changed_at = match seen.get(name) {
        Some((v, at)) if *v == version => *at,
        _ => now,
    };
    seen.insert(name.to_string(), (version, changed_at));
    let duration = lease
        .spec
        .as_ref()
        .and_then(|s| s.lease_duration_seconds)
        .and_then(|d| u64::try_from(d).ok())
        .map_or(fallback, std::time::Duration::from_secs);
    now < changed_at + duration
}

/// The live members and how many shards each leads, from the Leases of
/// the namespace at `now`. A member is live while its Lease changed within
/// its duration (as this replica saw it); a shard counts for its holder
/// only while the holder is a live member.
fn look(leases: &[Lease], base: &LeaseConfig, count: u32, seen: &mut Seen, now: Instant) -> Look {
    let prefix = member_lease_prefix(&base.name);
    let mut leading = BTreeMap::from([(base.identity.clone(), 0)]);
    let mut announced = BTreeMap::new();
    let mut unsharded_holder = None;
    let mut names = BTreeSet::new();
    for lease in leases {
        let Some(name) = lease.metadata.name.as_deref() else {
            continue;
        };
        let member = name.starts_with(&prefix);
        if !member && name != base.name {
            continue;
        }
        names.insert(name.to_string());
        let holder = lease
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.clone())
            .filter(|h| !h.is_empty());
        let (true, Some(holder)) = (live(lease, name, base.duration(), seen, now), holder) else {
            continue;
        };
        if !member {
            unsharded_holder = Some(holder);
            continue;
        }
        if holder != base.identity
            && let Some(n) = lease
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(SHARDS_ANNOTATION))
                .and_then(|n| n.parse::<u32>().ok())
        {
            announced.insert(holder.clone(), n);
        }
        leading.entry(holder).or_insert(0);
    }
    seen.retain(|name, _| names.contains(name));
    for lease in leases {
        let holder = lease.spec.as_ref().and_then(|s| s.holder_identity.as_ref());
        if let (Some(_), Some(holder)) = (
            lease
                .metadata
                .name
                .as_deref()
                .and_then(|n| shard_of_lease(&base.name, n, count)),
            holder,
        ) && let Some(n) = leading.get_mut(holder)
        {
            *n += 1;
        }
    }
    Look {
        view: View {
            shards: count,
            me: base.identity.clone(),
            leading,
        },
        barred: mixed_counts(count, &announced, unsharded_holder.as_deref()),
        yield_all: unsharded_holder.is_some(),
    }
}

/// Record the view and hand over the shards beyond this replica's share
/// once the excess has settled (the highest shard indices first).
fn rebalance(board: &Board, look: Look) {
    let mut state = board.state();
    if look.barred != state.barred {
        match &look.barred {
            Some(why) => warn!("taking no shard: {why}"),
            None => info!("every live replica splits the objects alike; taking shards again"),
        }
    }
    state.view = Some(look.view);
    state.barred = look.barred;
    if look.yield_all {
        for index in &state.leading {
            warn!(
                shard = index,
                "an unsharded replica leads; handing the shard over"
            );
            board.hand_over[*index as usize].notify_waiters();
        }
        return;
    }
    let Some(current) = Board::current_view(&state, &board.identity) else {
        return;
    };
    debug!(members = current.leading.len(), leading = ?state.leading, "shard membership");
    let release = state.hysteresis.release(&current, Instant::now());
    for index in state.leading.iter().rev().take(release) {
        info!(
            shard = index,
            members = current.leading.len(),
            "leading more than the fair share; handing the shard over"
        );
        board.hand_over[*index as usize].notify_waiters();
    }
}

#[cfg(test)]
#[path = "shards_tests.rs"]
mod tests;
