//! Sharding across replicas, the pure part: which shard an object belongs
//! to, the names of the shard and membership Leases, and how many shards a
//! replica should lead (its fair share) with hysteresis against flapping.
//! The shell that campaigns for the shard Leases is [`crate::shards`].
//!
//! An object belongs to shard `fnv1a64("<namespace>/<name>") % shards`.
//! FNV-1a is written out here rather than taken from `std`'s hasher, whose
//! output may change between Rust releases: every replica of every build
//! must agree on where an object lives, or two replicas would write it.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

/// One shard of `count`, as a controller filters its objects by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// Whether the object `namespace/name` belongs to this shard.
    pub fn owns(&self, namespace: &str, name: &str) -> bool {
        shard_of(namespace, name, self.count) == self.index
    }
}

/// What names the ClusterEndpoint a watched object belongs to, and with
/// it the object's shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShardKey {
    /// Its own name: a ClusterEndpoint, and its Service and Endpoints
    /// (named after it).
    OwnName,
    /// Its `kubernetes.io/service-name` label (the ClusterEndpoint's name):
    /// an EndpointSlice. A slice without it belongs to no ClusterEndpoint;
    /// it is kept by its own name.
    ServiceNameLabel,
}

impl ShardKey {
    /// The name whose shard `name` (with `labels`) follows.
    pub fn name<'a>(self, name: &'a str, labels: &'a BTreeMap<String, String>) -> &'a str {
        match self {
            ShardKey::OwnName => name,
            ShardKey::ServiceNameLabel => labels
                .get(crate::builder::LABEL_SERVICE_NAME)
                .map_or(name, String::as_str),
        }
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a, 64 bits: stable across builds, platforms and Rust releases.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(FNV_PRIME)
    })
}

/// The shard of the object `namespace/name` among `count` (0 when `count`
/// is 0 or 1).
pub fn shard_of(namespace: &str, name: &str, count: u32) -> u32 {
    if count <= 1 {
        return 0;
    }
    let key = format!("{namespace}/{name}");
    // The remainder is below `count`, so it fits.
    u32::try_from(fnv1a64(key.as_bytes()) % u64::from(count)).unwrap_or(0)
}

/// The Lease of shard `index`.
pub fn shard_lease_name(base: &str, index: u32) -> String {
    format!("{base}-shard-{index}")
}

/// The prefix of every membership Lease of `base`.
pub fn member_lease_prefix(base: &str) -> String {
    format!("{base}-member-")
}

/// The membership Lease of the replica `identity`: a valid object name
/// (lower case alphanumerics and '-', at most 253 characters), unique per
/// identity as long as identities differ in their name-safe characters.
pub fn member_lease_name(base: &str, identity: &str) -> String {
    let safe: String = identity
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let name = format!("{}{}", member_lease_prefix(base), safe.trim_matches('-'));
    let name: String = name.chars().take(253).collect();
    name.trim_end_matches('-').to_string()
}

/// The shard index a Lease name stands for, if it is one of `base`'s.
pub fn shard_of_lease(base: &str, lease: &str, count: u32) -> Option<u32> {
    let index: u32 = lease
        .strip_prefix(&format!("{base}-shard-"))?
        .parse()
        .ok()?;
    (index < count).then_some(index)
}

/// The annotation of a membership Lease that carries its replica's shard
/// count.
pub const SHARDS_ANNOTATION: &str = "kube-endpoints.io/shards";

/// Why a replica must take no shard now, if it must not: replicas split
/// the objects differently (another live member announces another shard
/// count, or an unsharded replica holds the single Lease), so shard `i` of
/// one is not shard `i` of the other and both could write one object. The
/// replicas that lead keep leading; the others wait until the differing ones
/// are gone (a rollout that changes the shard count).
pub fn mixed_counts(
    count: u32,
    announced: &BTreeMap<String, u32>,
    unsharded_holder: Option<&str>,
) -> Option<String> {
    if let Some(holder) = unsharded_holder {
        return Some(format!(
            "the unsharded Lease is held by {holder} (a replica without --shards)"
        ));
    }
    announced
        .iter()
        .find(|(_, n)| **n != count)
        .map(|(who, n)| format!("the live replica {who} runs with --shards {n}, not {count}"))
}

/// The fewest and the most shards a replica should lead when `members`
/// live replicas share `shards`: floor and ceiling of `shards / members`.
pub fn fair_share(shards: u32, members: usize) -> (usize, usize) {
    let shards = shards as usize;
    let members = members.max(1);
    (shards / members, shards.div_ceil(members))
}

/// What a replica sees of the others at one look: the live members (by
/// identity, itself included) and how many shards each leads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct View {
    pub shards: u32,
    pub me: String,
    /// Shards led, per live member; every live member is a key (0 if it
    /// leads none).
    pub leading: BTreeMap<String, usize>,
}

impl View {
    fn mine(&self) -> usize {
        self.leading.get(&self.me).copied().unwrap_or(0)
    }

    fn share(&self) -> (usize, usize) {
        fair_share(self.shards, self.leading.len())
    }

    /// Whether this replica should take a free (or released, or expired)
    /// shard now: it leads fewer than the ceiling of its share.
    pub fn may_take(&self) -> bool {
        self.mine() < self.share().1
    }

    /// How many shards this replica leads beyond its share: above the
    /// ceiling, or above the floor while another member is below the floor
    /// and this replica leads the most (ties: the smallest identity, so
    /// that only one of equals gives way).
    pub fn excess(&self) -> usize {
        let (floor, ceiling) = self.share();
        let mine = self.mine();
        if mine > ceiling {
            return mine - ceiling;
        }
        let starved = self.leading.values().any(|n| *n < floor);
        let most = self
            .leading
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))
            .map(|(who, _)| who.as_str());
        usize::from(mine > floor && starved && most == Some(self.me.as_str()))
    }
}

/// Hysteresis for giving shards away: an excess must persist, with the same
/// members, for `settle` before any shard is released, and after a release
/// the replica takes no shard by its share for `cooldown` (a released shard
/// goes to a member with fewer rather than back to the one that let it go)
/// — unless members have left since, whose shards need a new leader now.
#[derive(Clone, Debug)]
pub struct Hysteresis {
    settle: Duration,
    cooldown: Duration,
    /// Since when the current excess has been seen, with how many members.
    excess_since: Option<(Instant, usize)>,
    /// Until when, and with how many members at the release.
    cooling_until: Option<(Instant, usize)>,
}

impl Hysteresis {
    pub fn new(settle: Duration, cooldown: Duration) -> Self {
        Hysteresis {
            settle,
            cooldown,
            excess_since: None,
            cooling_until: None,
        }
    }

    /// How many shards to release now, given `view` at `now`.
    pub fn release(&mut self, view: &View, now: Instant) -> usize {
        let excess = view.excess();
        let members = view.leading.len();
        if excess == 0 {
            self.excess_since = None;
            return 0;
        }
        let since = match self.excess_since {
            Some((since, seen)) if seen == members => since,
            _ => {
                self.excess_since = Some((now, members));
                now
            }
        };
        if now < since + self.settle {
            return 0;
        }
        self.excess_since = None;
        self.cooling_until = Some((now + self.cooldown, members));
        excess
    }

    /// Whether a free shard may be taken at `now`: the share allows it and
    /// no release is cooling down (a member leaving ends the cooldown).
    pub fn may_take(&self, view: &View, now: Instant) -> bool {
        view.may_take()
            && self
                .cooling_until
                .is_none_or(|(until, members)| now >= until || view.leading.len() < members)
    }
}

#[cfg(test)]
#[path = "sharding_tests.rs"]
mod tests;
