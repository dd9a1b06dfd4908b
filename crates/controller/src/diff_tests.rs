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
    let live = json!({"endpoints": [{"addresses": ["198.18.0.2"], "conditions": {"ready": true}}]});
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
