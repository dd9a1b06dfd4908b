use super::*;

#[test]
fn delays_double_up_to_the_cap() {
    let secs: Vec<u64> = (0..9).map(|n| retry_delay(n).as_secs()).collect();
    assert_eq!(secs, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
    assert_eq!(retry_delay(u32::MAX), MAX_RETRY);
}

#[test]
fn a_success_starts_over_and_keys_are_independent() {
    let b = Backoff::default();
    assert_eq!(b.failed(&"a"), Duration::from_secs(5));
    assert_eq!(b.failed(&"a"), Duration::from_secs(10));
    assert_eq!(b.failed(&"b"), Duration::from_secs(5));
    b.reset(&"a");
    assert_eq!(b.failed(&"a"), Duration::from_secs(5));
}
