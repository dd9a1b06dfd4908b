//! Events: which health transitions and condition changes a user is told
//! about (pure), and publishing them (the only I/O here).

use std::collections::BTreeMap;

use kube::Resource;
use kube::core::ApiResource;
use kube::runtime::events::{Event, EventType};
use kube_endpoints_api::{CONDITION_READY, ClusterEndpointStatus, Condition};
use kube_endpoints_probe::{HealthState, Transition};
use tracing::warn;

use crate::context::Context;
use crate::status::{NOTE_MAX, truncate};

/// The Event for a host's health transition, or `None` when it is not news:
/// a new host becoming ready is the normal start, and nothing is said about
/// a host going back to pending.
pub fn host_transition_event<K>(t: &Transition<K>) -> Option<Event> {
    let (type_, reason, note) = match (t.from, t.to.state) {
        (_, HealthState::Pending) | (HealthState::Pending, HealthState::Ready) => return None,
        (_, HealthState::Ready) => (
            EventType::Normal,
            "HostHealthy",
            format!(
                "host {} port {} is healthy again and back in rotation",
                t.target.host, t.target.port
            ),
        ),
        (_, HealthState::NotReady) => (
            EventType::Warning,
            "HostUnhealthy",
            format!(
                "host {} port {} is unhealthy and out of rotation: {}",
                t.target.host, t.target.port, t.to.message
            ),
        ),
    };
    Some(Event {
        type_,
        reason: reason.to_string(),
        note: Some(truncate(&note, NOTE_MAX)),
        // The host is part of the action so that Events about different
        // hosts are not folded into one series.
        action: format!("Probe/{}/{}", t.target.port, t.target.host),
        secondary: None,
    })
}

/// Warning Events for conditions that turned false (invalid spec, refused
/// adoption, failed sync), once per change rather than once per reconcile:
/// `previous` are the conditions the last Events were decided on (the
/// written status, or what was computed last when writing it failed).
pub fn condition_events(previous: &[Condition], status: &ClusterEndpointStatus) -> Vec<Event> {
    let before: BTreeMap<&str, &Condition> =
        previous.iter().map(|c| (c.type_.as_str(), c)).collect();
    status
        .conditions
        .iter()
        .filter(|c| c.status == "False" && c.type_ != CONDITION_READY)
        .filter(|c| {
            !before
                .get(c.type_.as_str())
                .is_some_and(|p| p.reason == c.reason && p.message == c.message)
        })
        .map(|c| Event {
            type_: EventType::Warning,
            reason: c.reason.clone(),
            note: Some(truncate(&c.message, NOTE_MAX)),
            action: c.type_.clone(),
            secondary: None,
        })
        .collect()
}

/// Publish an Event about `cep`; failures are logged, never fatal. Events
/// over the object's rate limit ([`crate::event_limit`]) are dropped.
pub async fn publish<K: Resource<DynamicType = ApiResource>>(ctx: &Context, cep: &K, event: Event) {
    if let Ok(key) = crate::context::CepKey::of(cep)
        && !ctx.event_limiter.allow(&key)
    {
        ctx.metrics.events_suppressed.inc();
        return;
    }
    let reference = cep.object_ref(&ctx.resource);
    match ctx.recorder.publish(&event, &reference).await {
        Ok(()) => ctx.metrics.count_write("events", "create"),
        Err(e) => warn!(reason = %event.reason, error = %e, "could not publish Event"),
    }
}

#[cfg(test)]
#[path = "events_tests.rs"]
mod tests;
