use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use kube_endpoints_probe::HealthState;

use super::*;
use crate::builder::{BuildSettings, desired};
use crate::testing::*;
use crate::writes::{Live, Object, Write, plan_writes_with};

fn handmade(name: &str, namespace: &str, f: impl FnOnce(&mut ObjectMeta)) -> Service {
    let mut meta = ObjectMeta {
        name: Some(name.into()),
        namespace: Some(namespace.into()),
        resource_version: Some("4711".into()),
        ..ObjectMeta::default()
    };
    f(&mut meta);
    foreign_service(meta)
}

fn owner_named(name: &str, namespace: &str) -> Owner {
    Owner {
        name: name.into(),
        namespace: namespace.into(),
        ..owner()
    }
}

fn refusal(meta: &ObjectMeta, owner: &Owner, policy: &AdoptionPolicy) -> Option<&'static str> {
    adoption("Service", meta, owner, policy, false)
        .err()
        .map(|r| r.reason)
}

fn annotated(key: &str, value: &str) -> ObjectMeta {
    ObjectMeta {
        annotations: Some(BTreeMap::from([(key.into(), value.into())])),
        ..ObjectMeta::default()
    }
}

fn labelled(key: &str, value: &str) -> ObjectMeta {
    ObjectMeta {
        labels: Some(BTreeMap::from([(key.into(), value.into())])),
        ..ObjectMeta::default()
    }
}

/// Asserts the adoption decision for each case: (why, the object's metadata,
/// the ClusterEndpoint that would own it, the refusal reason or `None` for
/// "adopted").
fn assert_refusals(policy: &AdoptionPolicy, cases: &[(&str, ObjectMeta, Owner, Option<&str>)]) {
    for (why, meta, owner, want) in cases {
        assert_eq!(refusal(meta, owner, policy), *want, "{why}");
    }
}

#[test]
fn protected_objects_and_other_tools_objects_are_never_adopted() {
    let open = AdoptionPolicy::default();
    let plain = ObjectMeta::default;
    assert_refusals(
        &open,
        &[
            ("hand-made: adopted", plain(), owner(), None),
            (
                "the apiserver's own Service",
                plain(),
                owner_named("kubernetes", "default"),
                Some("ProtectedObject"),
            ),
            (
                "not even with consent",
                annotated(ANNOTATION_ADOPT, "true"),
                owner_named("kubernetes", "default"),
                Some("ProtectedObject"),
            ),
            (
                "only default/kubernetes is the apiserver's",
                plain(),
                owner_named("kubernetes", "team-a"),
                None,
            ),
            (
                "kube-system is protected",
                plain(),
                owner_named("dns", "kube-system"),
                Some("ProtectedObject"),
            ),
            (
                "a Helm release's object",
                annotated(ANNOTATION_HELM_RELEASE, "db"),
                owner(),
                Some("ManagedByAnotherTool"),
            ),
            (
                "managed by Helm",
                labelled(LABEL_APP_MANAGED_BY, "Helm"),
                owner(),
                Some("ManagedByAnotherTool"),
            ),
            (
                "our own name is not another tool",
                labelled(LABEL_APP_MANAGED_BY, "kube-endpoints"),
                owner(),
                None,
            ),
        ],
    );
    let message = adoption(
        "Service",
        &annotated(ANNOTATION_HELM_RELEASE, "db"),
        &owner(),
        &open,
        false,
    )
    .expect_err("refused")
    .message;
    assert_eq!(
        message,
        "Service default/wordpress belongs to Helm release \"db\" (meta.helm.sh/release-name) and is never adopted; choose another name or remove it from the release"
    );
}

#[test]
fn with_required_consent_only_annotated_objects_are_adopted() {
    let strict = AdoptionPolicy {
        require_annotation: true,
        ..AdoptionPolicy::default()
    };
    assert_refusals(
        &strict,
        &[
            (
                "no consent",
                ObjectMeta::default(),
                owner(),
                Some("AdoptionNotAllowed"),
            ),
            (
                "consent withheld",
                annotated(ANNOTATION_ADOPT, "false"),
                owner(),
                Some("AdoptionNotAllowed"),
            ),
            (
                "consent given",
                annotated(ANNOTATION_ADOPT, "true"),
                owner(),
                None,
            ),
        ],
    );
    assert!(
        adoption("Endpoints", &ObjectMeta::default(), &owner(), &strict, true).is_ok(),
        "the Endpoints of a consenting Service follow it"
    );
}

fn wordpress_desired() -> crate::builder::Desired {
    let plan = wordpress_plan();
    desired(
        &owner(),
        &plan,
        &health_all(&plan, HealthState::Ready),
        &BuildSettings {
            controller_id: CONTROLLER_ID.into(),
            compat_endpoints: true,
        },
        &[],
    )
}

#[test]
fn an_adoption_is_conditional_on_the_resource_version_it_was_decided_on() {
    let desired = wordpress_desired();
    let svc = handmade("wordpress", "default", |_| {});
    let mut ep: Endpoints = desired.endpoints.clone().expect("endpoints");
    ep.metadata.owner_references = None;
    ep.metadata.resource_version = Some("99".into());
    let live = Live {
        service: Some(&svc),
        endpoints: Some(&ep),
        ..Live::default()
    };
    let plan = plan_writes_with(&desired, &live, &AdoptionPolicy::default());
    let Ok(
        [
            Write::Adopt(Object::Service(applied)),
            Write::PrunePorts { .. },
        ],
    ) = plan.service.as_deref()
    else {
        panic!("expected an adoption: {:?}", plan.service);
    };
    assert_eq!(applied.metadata.resource_version.as_deref(), Some("4711"));
    let Ok([Write::Adopt(Object::Endpoints(applied))]) = plan.endpoints.as_deref() else {
        panic!("expected an adoption: {:?}", plan.endpoints);
    };
    assert_eq!(applied.metadata.resource_version.as_deref(), Some("99"));
    // Our own objects are applied unconditionally, as before.
    for write in plan.writes() {
        if let Write::Apply(Object::EndpointSlice(s)) = write {
            assert_eq!(s.metadata.resource_version, None);
        }
    }
}

#[test]
fn a_refused_adoption_writes_nothing_for_the_service_and_its_endpoints() {
    let desired = wordpress_desired();
    let helm = handmade("wordpress", "default", |m| {
        m.labels = Some(BTreeMap::from([(
            LABEL_APP_MANAGED_BY.into(),
            "Helm".into(),
        )]));
        m.annotations = Some(BTreeMap::from([(
            ANNOTATION_HELM_RELEASE.into(),
            "wp".into(),
        )]));
    });
    let live = Live {
        service: Some(&helm),
        ..Live::default()
    };
    let plan = plan_writes_with(&desired, &live, &AdoptionPolicy::default());
    assert_eq!(
        plan.service.as_ref().map_err(|r| r.reason),
        Err("ManagedByAnotherTool")
    );
    // Consent required: a hand-made Service without it is refused, one
    // with it is adopted, and so is its hand-made Endpoints.
    let strict = AdoptionPolicy {
        require_annotation: true,
        ..AdoptionPolicy::default()
    };
    let plain = handmade("wordpress", "default", |_| {});
    let mut ep: Endpoints = desired.endpoints.clone().expect("endpoints");
    ep.metadata.owner_references = None;
    let strict_plan = |service: &Service| {
        plan_writes_with(
            &desired,
            &Live {
                service: Some(service),
                endpoints: Some(&ep),
                ..Live::default()
            },
            &strict,
        )
    };
    let refused = strict_plan(&plain);
    assert_eq!(
        refused.service.as_ref().map_err(|r| r.reason),
        Err("AdoptionNotAllowed")
    );
    let consenting = handmade("wordpress", "default", |m| {
        m.annotations = Some(BTreeMap::from([(ANNOTATION_ADOPT.into(), "true".into())]));
    });
    let adopted = strict_plan(&consenting);
    assert!(matches!(
        adopted.service.as_deref(),
        Ok([Write::Adopt(_), Write::PrunePorts { .. }])
    ));
    assert!(matches!(
        adopted.endpoints.as_deref(),
        Ok([Write::Adopt(_)])
    ));
}
