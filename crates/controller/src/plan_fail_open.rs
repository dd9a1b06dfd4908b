//! The fail-open policy of each port ([`crate::fail_open`]): the port's
//! `allHostsDown` and `panicThresholdPercent`, each falling back to the
//! object's, checked as the CRD schema checks them (objects of CRDs that
//! are not ours arrive unchecked).

use kube_endpoints_api::{ClusterEndpointSpec, FAIL_CLOSED, FailOpen, KEEP_LAST_READY};

use super::{Errors, PortPlan};
use crate::fail_open::FailOpenPolicy;

/// Set `fail_open` on every port of `ports` (the extra target ports of a
/// spec port share its policy); errors name the field.
pub(super) fn apply(spec: &ClusterEndpointSpec, ports: &mut [PortPlan], errors: &mut Errors) {
    let object = validated("spec", &spec.fail_open, errors);
    for (i, port) in spec.ports.iter().enumerate() {
        let own = validated(&format!("spec.ports[{i}]"), &port.fail_open, errors);
        let policy = FailOpenPolicy {
            keep_last_ready: own
                .keep_last_ready
                .or(object.keep_last_ready)
                .unwrap_or(false),
            panic_threshold_percent: own
                .panic_threshold_percent
                .or(object.panic_threshold_percent)
                .unwrap_or(0),
        };
        for planned in ports.iter_mut().filter(|p| p.service_port == port.name) {
            planned.fail_open = policy;
        }
    }
}

/// The fields that are set, each `None` when unset or invalid.
struct Partial {
    keep_last_ready: Option<bool>,
    panic_threshold_percent: Option<u8>,
}

fn validated(field: &str, fail_open: &FailOpen, errors: &mut Errors) -> Partial {
    let keep_last_ready = match fail_open.all_hosts_down.as_deref() {
        None => None,
        Some(FAIL_CLOSED) => Some(false),
        Some(KEEP_LAST_READY) => Some(true),
        Some(other) => {
            errors.push(
                format!("{field}.allHostsDown"),
                format!("must be {FAIL_CLOSED} or {KEEP_LAST_READY}, got {other:?}"),
            );
            None
        }
    };
    let panic_threshold_percent = fail_open.panic_threshold_percent.and_then(|p| {
        errors.range(&format!("{field}.panicThresholdPercent"), p.into(), 0, 100);
        u8::try_from(p).ok().filter(|p| *p <= 100)
    });
    Partial {
        keep_last_ready,
        panic_threshold_percent,
    }
}
