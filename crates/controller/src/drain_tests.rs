use serde_json::json;

use super::*;

fn object() -> Value {
    json!({
        "metadata": {"name": "db", "resourceVersion": "42"},
        "spec": {
            "hosts": ["198.18.0.2"],
            "ports": [
                {"name": "a", "hosts": ["198.18.0.1", "198.18.0.2"]},
                {"name": "b", "hosts": [{"address": "198.18.0.2", "zone": "z"}]},
                {"name": "c", "hosts": ["198.18.0.3"]},
            ]
        }
    })
}

fn patch(edit: Option<Edit>) -> Value {
    match edit {
        Some(Edit::Patch(p)) => p,
        other => panic!("expected a patch, got {other:?}"),
    }
}

#[test]
fn draining_turns_every_entry_of_the_host_into_a_drained_object() {
    let p = patch(edit(&object(), "198.18.0.2", true, Some("alice")));
    assert_eq!(p["metadata"]["resourceVersion"], "42", "a precondition");
    assert_eq!(
        p["spec"]["hosts"],
        json!([{"address": "198.18.0.2", "drain": true}])
    );
    let ports = &p["spec"]["ports"];
    assert_eq!(
        ports[0]["hosts"],
        json!(["198.18.0.1", {"address": "198.18.0.2", "drain": true}])
    );
    assert_eq!(
        ports[1]["hosts"],
        json!([{"address": "198.18.0.2", "zone": "z", "drain": true}])
    );
    assert_eq!(
        ports[2]["hosts"],
        json!(["198.18.0.3"]),
        "other ports untouched"
    );
    let by: BTreeMap<String, String> = serde_json::from_str(
        p["metadata"]["annotations"][ANNOTATION_DRAINED_BY]
            .as_str()
            .expect("annotation"),
    )
    .expect("JSON");
    assert_eq!(
        by,
        BTreeMap::from([("198.18.0.2".to_string(), "alice".to_string())])
    );
}

#[test]
fn undraining_restores_the_string_form_and_forgets_who() {
    let mut drained = object();
    let p = patch(edit(&drained, "198.18.0.2", true, Some("alice")));
    drained["spec"]["hosts"] = p["spec"]["hosts"].clone();
    drained["spec"]["ports"] = p["spec"]["ports"].clone();
    drained["metadata"]["annotations"] = p["metadata"]["annotations"].clone();
    assert_eq!(
        edit(&drained, "198.18.0.2", true, Some("bob")),
        Some(Edit::Unchanged)
    );
    let back = patch(edit(&drained, "198.18.0.2", false, None));
    assert_eq!(back["spec"]["hosts"], json!(["198.18.0.2"]));
    assert_eq!(
        back["spec"]["ports"][0]["hosts"],
        json!(["198.18.0.1", "198.18.0.2"])
    );
    assert_eq!(
        back["spec"]["ports"][1]["hosts"],
        json!([{"address": "198.18.0.2", "zone": "z"}])
    );
    assert_eq!(
        back["metadata"]["annotations"][ANNOTATION_DRAINED_BY],
        Value::Null
    );
}

#[test]
fn hosts_compare_as_addresses_and_an_unlisted_host_is_an_error() {
    let v6 = json!({"metadata": {}, "spec": {"ports": [{"name": "a", "hosts": ["fd00:0:0::1"]}]}});
    let p = patch(edit(&v6, "fd00::1", true, None));
    assert_eq!(
        p["spec"]["ports"][0]["hosts"],
        json!([{"address": "fd00:0:0::1", "drain": true}])
    );
    assert_eq!(edit(&object(), "198.18.0.9", true, None), None);
    assert_eq!(
        edit(&object(), "198.18.0.1", false, None),
        Some(Edit::Unchanged)
    );
}
