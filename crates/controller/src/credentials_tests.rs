use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use kube::api::ObjectMeta;
use kube::runtime::reflector;

use super::*;

fn meta(namespace: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(namespace.into()),
        ..ObjectMeta::default()
    }
}

/// Stores holding one Secret `token` and one ConfigMap `ca` in `team-a`.
fn stores() -> Stores {
    let (secrets, mut secret_writer) = reflector::store::<Secret>();
    secret_writer.apply_watcher_event(&watcher::Event::Apply(Secret {
        metadata: meta("team-a", "token"),
        data: Some(BTreeMap::from([(
            "token".to_string(),
            ByteString(b"s3cret".to_vec()),
        )])),
        ..Secret::default()
    }));
    let (config_maps, mut config_map_writer) = reflector::store::<ConfigMap>();
    config_map_writer.apply_watcher_event(&watcher::Event::Apply(ConfigMap {
        metadata: meta("team-a", "ca"),
        data: Some(BTreeMap::from([("ca.crt".to_string(), "PEM".to_string())])),
        binary_data: Some(BTreeMap::from([(
            "ca.der".to_string(),
            ByteString(vec![0x30, 0x82]),
        )])),
        ..ConfigMap::default()
    }));
    Stores {
        secrets,
        config_maps,
    }
}

#[test]
fn lookups_stay_in_the_object_namespace() {
    let stores = stores();
    let team_a = Resolver {
        stores: Some(&stores),
        namespace: "team-a",
    };
    assert_eq!(
        team_a.lookup(SourceKind::Secret, "token", "token"),
        Lookup::Found(Sensitive::new(b"s3cret".to_vec()))
    );
    assert_eq!(
        team_a.lookup(SourceKind::ConfigMap, "ca", "ca.crt"),
        Lookup::Found(Sensitive::new(b"PEM".to_vec()))
    );
    assert_eq!(
        team_a.lookup(SourceKind::ConfigMap, "ca", "ca.der"),
        Lookup::Found(Sensitive::new(vec![0x30, 0x82]))
    );
    assert_eq!(
        team_a.lookup(SourceKind::Secret, "token", "other"),
        Lookup::Missing("Secret \"token\" has no key \"other\"".into())
    );
    // A ConfigMap is not a Secret of the same name.
    assert!(matches!(
        team_a.lookup(SourceKind::Secret, "ca", "ca.crt"),
        Lookup::Missing(m) if m.contains("not found in namespace \"team-a\"")
    ));
    // Another namespace sees nothing of team-a's.
    let team_b = Resolver {
        stores: Some(&stores),
        namespace: "team-b",
    };
    assert!(matches!(
        team_b.lookup(SourceKind::Secret, "token", "token"),
        Lookup::Missing(m) if m.contains("labelled kube-endpoints.io/probe-credentials: \"true\"")
    ));
    let off = Resolver {
        stores: None,
        namespace: "team-a",
    };
    assert!(matches!(
        off.lookup(SourceKind::Secret, "token", "token"),
        Lookup::Missing(m) if m.contains("--probe-credentials=false")
    ));
}

#[test]
fn a_change_concerns_the_objects_of_its_namespace_that_refer_to_it() {
    let resource = kube_endpoints_api::api_resource(kube_endpoints_api::GROUP);
    let mut writer = reflector::store::Writer::<DynamicObject>::new(resource.clone());
    let objects = writer.as_reader();
    let object = |ns: &str, name: &str, secret: &str| {
        let mut o = DynamicObject::new(name, &resource).within(ns);
        o.data = serde_json::json!({"spec": {"ports": [{
            "name": "p", "port": 80, "targetPort": 80, "hosts": ["198.18.0.2"],
            "httpGet": {"httpHeaders": [{"name": "Authorization",
                "valueFrom": {"secretKeyRef": {"name": secret, "key": "k"}}}]}
        }]}});
        o
    };
    for o in [
        object("team-a", "uses-token", "token"),
        object("team-a", "uses-other", "other"),
        object("team-b", "uses-token", "token"),
    ] {
        writer.apply_watcher_event(&watcher::Event::Apply(o));
    }
    let changed = Changed {
        kind: SourceKind::Secret,
        namespace: "team-a".into(),
        name: "token".into(),
    };
    assert_eq!(
        affected(&objects, &changed),
        [CepKey {
            namespace: "team-a".into(),
            name: "uses-token".into(),
        }]
    );
    let config_map = Changed {
        kind: SourceKind::ConfigMap,
        ..changed
    };
    assert!(affected(&objects, &config_map).is_empty());
}
