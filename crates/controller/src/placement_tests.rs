use std::collections::BTreeSet;
use std::net::IpAddr;

use super::*;

fn ip(i: u32) -> IpAddr {
    IpAddr::from([198, 18, (i / 256) as u8, (i % 256) as u8])
}

fn hosts(range: std::ops::Range<u32>) -> BTreeSet<IpAddr> {
    range.map(ip).collect()
}

/// The slices whose content differs between two layouts.
fn touched(before: &Layout, after: &Layout) -> Vec<usize> {
    let indexes: BTreeSet<usize> = before.keys().chain(after.keys()).copied().collect();
    indexes
        .into_iter()
        .filter(|i| before.get(i) != after.get(i))
        .collect()
}

/// `range` laid out fresh (100 hosts a slice), then laid out again without
/// `removed` and with `added`: (before, after).
fn relayout(range: std::ops::Range<u32>, removed: &[u32], added: &[u32]) -> (Layout, Layout) {
    let before = place(&hosts(range.clone()), &Layout::new(), 100);
    let mut wanted = hosts(range);
    for i in removed {
        wanted.remove(&ip(*i));
    }
    wanted.extend(added.iter().copied().map(ip));
    let after = place(&wanted, &before, 100);
    (before, after)
}

#[test]
fn a_fresh_port_is_packed_in_order() {
    let layout = place(&hosts(10..260), &Layout::new(), 100);
    let sizes: Vec<(usize, usize)> = layout.iter().map(|(i, h)| (*i, h.len())).collect();
    assert_eq!(sizes, [(0, 100), (1, 100), (2, 50)]);
    assert_eq!(layout[&0][0], ip(10));
}

#[test]
fn adding_one_host_that_sorts_first_touches_one_slice() {
    let (before, after) = relayout(10..260, &[], &[1]);
    assert_eq!(touched(&before, &after), [2], "only the slice with room");
    assert!(after[&2].contains(&ip(1)));
    assert_eq!(after.values().map(Vec::len).sum::<usize>(), 251);
}

#[test]
fn removing_one_host_touches_only_its_slice() {
    let (before, after) = relayout(10..260, &[10], &[]);
    assert_eq!(touched(&before, &after), [0]);
}

#[test]
fn a_replacement_host_takes_the_freed_place() {
    let (before, after) = relayout(10..260, &[50], &[1000]);
    assert_eq!(
        touched(&before, &after),
        [0],
        "the slice that changes anyway"
    );
    assert!(after[&0].contains(&ip(1000)));
}

#[test]
fn full_slices_get_a_new_one_at_the_lowest_free_index() {
    let (before, after) = relayout(0..200, &[], &[500]);
    assert_eq!(touched(&before, &after), [2]);
    assert_eq!(after[&2], vec![ip(500)]);
}

#[test]
fn no_host_ever_moves_between_slices() {
    // Whatever changes, every host that stays keeps its slice.
    let before = place(&hosts(0..300), &Layout::new(), 100);
    let mut wanted = hosts(0..300);
    for i in (0..300).step_by(7) {
        wanted.remove(&ip(i));
    }
    wanted.extend(hosts(1000..1090));
    let after = place(&wanted, &before, 100);
    for (index, hosts) in &before {
        for host in hosts.iter().filter(|h| wanted.contains(h)) {
            assert!(after[index].contains(host), "{host} left slice {index}");
        }
    }
    let all: BTreeSet<IpAddr> = after.values().flatten().copied().collect();
    assert_eq!(all, wanted);
    assert!(after.values().all(|h| h.len() <= 100));
}

#[test]
fn emptied_slices_disappear_and_duplicates_are_dropped() {
    let mut current = Layout::new();
    current.insert(0, vec![ip(1), ip(2)]);
    current.insert(3, vec![ip(2), ip(9)]);
    let wanted: BTreeSet<IpAddr> = [ip(1), ip(2)].into();
    let after = place(&wanted, &current, 100);
    assert_eq!(after.len(), 1);
    assert_eq!(after[&0], vec![ip(1), ip(2)]);
}

#[test]
fn the_same_input_gives_the_same_layout() {
    let before = place(&hosts(0..250), &Layout::new(), 100);
    let again = place(&hosts(0..250), &before, 100);
    assert_eq!(before, again, "nothing changed, nothing moves");
}
