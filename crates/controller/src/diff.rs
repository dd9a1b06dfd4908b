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
mod tests {
    use super::contains;
    use serde_json::json;

    #[test]
    fn server_defaults_and_foreign_fields_are_not_a_change() {
        let live = json!({"metadata": {"name": "a", "uid": "u", "labels": {"x": "y", "mine": "1"}},
                          "spec": {"clusterIP": "10.0.0.7", "ports": [{"name": "p", "port": 80, "protocol": "TCP"}]}});
        let desired = json!({"metadata": {"name": "a", "labels": {"mine": "1"}},
                             "spec": {"ports": [{"name": "p", "port": 80}]}});
        assert!(contains(&live, &desired));
    }

    #[test]
    fn a_changed_value_is_a_change() {
        let live =
            json!({"endpoints": [{"addresses": ["198.18.0.2"], "conditions": {"ready": true}}]});
        let desired =
            json!({"endpoints": [{"addresses": ["198.18.0.2"], "conditions": {"ready": false}}]});
        assert!(!contains(&live, &desired));
    }

    #[test]
    fn a_stale_or_missing_list_entry_is_a_change() {
        let live = json!({"ports": [{"port": 80}, {"port": 81}]});
        assert!(!contains(&live, &json!({"ports": [{"port": 80}]})));
        assert!(!contains(&json!({"ports": [{"port": 80}]}), &live));
    }

    #[test]
    fn list_order_does_not_matter() {
        let live = json!({"ports": [{"port": 81}, {"port": 80}]});
        assert!(contains(
            &live,
            &json!({"ports": [{"port": 80}, {"port": 81}]})
        ));
    }

    #[test]
    fn absent_equals_empty() {
        assert!(contains(
            &json!({"a": 1}),
            &json!({"a": 1, "b": null, "c": []})
        ));
        assert!(!contains(&json!({"a": 1}), &json!({"a": 1, "b": false})));
    }
}
