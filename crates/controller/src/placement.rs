//! Placement: which EndpointSlice of a (port, address family) holds which
//! host. Pure.
//!
//! As the Kubernetes EndpointSlice reconciler does, hosts stay where they
//! are: a host that leaves is removed from its slice, a new host fills the
//! free room of a slice that changes anyway, then of the fullest slice that
//! can take all new hosts, and only then goes to a new slice. So adding or
//! removing one host rewrites exactly one slice, and no host ever moves from
//! one slice to another (which would leave it in no slice between the two
//! writes, or in two).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// Hosts by slice index (the `<n>` of the slice's name), each list sorted.
pub type Layout = BTreeMap<usize, Vec<IpAddr>>;

/// Where each of `wanted` goes, given what the slices hold now
/// (`current`, read from the live slices), at most `max` per slice. Slices
/// left empty are absent from the result (they are deleted).
pub fn place(wanted: &BTreeSet<IpAddr>, current: &Layout, max: usize) -> Layout {
    let max = max.max(1);
    let mut layout = Layout::new();
    let mut placed = BTreeSet::new();
    let mut changed = BTreeSet::new();
    for (index, hosts) in current {
        let mut kept: Vec<IpAddr> = Vec::with_capacity(hosts.len());
        for host in hosts {
            // A host listed twice (by an older layout) stays in the first
            // slice only; a slice over `max` sheds its surplus.
            if wanted.contains(host) && kept.len() < max && placed.insert(*host) {
                kept.push(*host);
            }
        }
        if kept.len() != hosts.len() {
            changed.insert(*index);
        }
        layout.insert(*index, kept);
    }
    let mut new: Vec<IpAddr> = wanted.difference(&placed).copied().collect();

    // 1. Room in slices that are rewritten anyway.
    for index in &changed {
        fill(layout.entry(*index).or_default(), &mut new, max);
    }
    // 2. The fullest unchanged slice that takes every remaining host.
    if !new.is_empty() {
        let fits = layout
            .iter()
            .filter(|(i, hosts)| !changed.contains(*i) && hosts.len() + new.len() <= max)
            .max_by_key(|(i, hosts)| (hosts.len(), std::cmp::Reverse(**i)))
            .map(|(i, _)| *i);
        if let Some(index) = fits {
            fill(layout.entry(index).or_default(), &mut new, max);
        }
    }
    // 3. New slices at the lowest free indexes.
    let mut index = 0;
    while !new.is_empty() {
        while layout.get(&index).is_some_and(|h| !h.is_empty()) {
            index += 1;
        }
        fill(layout.entry(index).or_default(), &mut new, max);
    }

    layout.retain(|_, hosts| !hosts.is_empty());
    for hosts in layout.values_mut() {
        hosts.sort();
    }
    layout
}

/// Move hosts from the front of `new` into `slice` while it has room.
fn fill(slice: &mut Vec<IpAddr>, new: &mut Vec<IpAddr>, max: usize) {
    let room = max.saturating_sub(slice.len()).min(new.len());
    slice.extend(new.drain(..room));
}

#[cfg(test)]
#[path = "placement_tests.rs"]
mod tests;
