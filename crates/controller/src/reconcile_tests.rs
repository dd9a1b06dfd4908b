use kube_endpoints_api::Phase;

use super::*;

#[test]
fn a_merge_patched_status_removes_what_it_no_longer_has() {
    // An invalid spec: no `ready`, no ports. A merge patch must say so
    // explicitly, or the last valid status's ports would stay.
    let status = ClusterEndpointStatus {
        observed_generation: Some(2),
        phase: Some(Phase::UnHealthy),
        ..ClusterEndpointStatus::default()
    };
    let patch = merge_status(&status).expect("encodes");
    assert_eq!(
        patch,
        json!({
            "observedGeneration": 2,
            "phase": "UnHealthy",
            "ready": null,
            "conditions": null,
            "ports": null,
        })
    );
}
