use super::*;
use serde_json::json;

#[test]
fn documents_skips_empty_ones_and_keeps_the_order() {
    let text = "# a comment\n---\napiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\n---\nkind: Endpoints\nports: [80, '81']\n";
    let docs = documents(text).expect("valid YAML");
    assert_eq!(
        docs,
        vec![
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"}}),
            json!({"kind": "Endpoints", "ports": [80, "81"]}),
        ]
    );
}

#[test]
fn a_syntax_error_says_where() {
    let err = documents("kind: Service\n---\nmetadata: {name: [a\n").expect_err("broken");
    assert!(err.to_string().contains("line"), "{err}");
}

#[test]
fn what_is_written_reads_back() {
    let value = json!({"kind": "Service", "spec": {"clusterIP": "None", "ports": [{"port": 80}]}, "note": "yes"});
    let text = to_string(&value).expect("serialises");
    assert_eq!(documents(&text).expect("parses"), vec![value]);
}

#[test]
fn the_crd_reads_back_as_the_same_object() {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let group = kube_endpoints_api::SEALOS_GROUP;
    let text = crd(group).expect("renders");
    let docs = documents(&text).expect("parses back");
    let back: CustomResourceDefinition = serde_json::from_value(docs[0].clone()).expect("a CRD");
    assert_eq!(docs.len(), 1);
    assert_eq!(back, kube_endpoints_api::crd_for_group(group));
    // Long messages stay on one line.
    assert!(
        text.contains("message: must be a DNS name (RFC 1123, at most 253 characters, not ending in a number) or an IP address literal"),
        "{text}"
    );
}
