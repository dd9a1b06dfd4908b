//! Write only on change: decide whether applying `desired` would change `live`.
//!
//! A server-side apply that changes nothing still costs a request, so the
//! reconciler compares first. `live` carries server defaults and fields other
//! managers own, so the test is containment: every field we set must already
//! have our value. Lists must have the same length (a stale entry is a change)
//! and are matched in order first, then as a multiset, because the apiserver
//! may keep an adopted object's list in its own order.

use serde_json::Value;

/// True when `live` already holds every field of `desired` with the same value.
pub fn contains(live: &Value, desired: &Value) -> bool {
    match (live, desired) {
        (Value::Object(l), Value::Object(d)) => d.iter().all(|(k, dv)| match l.get(k) {
            Some(lv) => contains(lv, dv),
            // An absent field equals an empty/false/null one we would set.
            None => is_empty(dv),
        }),
        (Value::Array(l), Value::Array(d)) => {
            l.len() == d.len()
                && (l.iter().zip(d).all(|(lv, dv)| contains(lv, dv))
                    || d.iter().all(|dv| l.iter().any(|lv| contains(lv, dv))))
        }
        (Value::Null, d) => is_empty(d),
        (l, d) => l == d,
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.values().all(is_empty),
        _ => false,
    }
}

#[cfg(test)]
#[path = "diff_tests.rs"]
mod tests;
