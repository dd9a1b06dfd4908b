//! Record: what one reconcile reports — the status (written only when it
//! changed), the Warning Events of conditions that turned bad, and the
//! certificates' expiry (status, metric, a `CertificateExpiring` Event once
//! per certificate entering the warning window).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use kube::core::DynamicObject;
use kube_endpoints_api::ClusterEndpointStatus;
use kube_endpoints_probe::{Health, TargetId};
use tracing::info;

use crate::certificates;
use crate::context::{CepKey, Context};
use crate::decode::Decoded;
use crate::error::Result;
use crate::events;
use crate::execute::write_status;
use crate::fail_open;
use crate::host_report;
use crate::plan::Plan;
use crate::status::{self, NotInitialized, StatusInput, Synced};

/// The longest wait for a certificate to enter the warning window.
const MAX_CERTIFICATE_REQUEUE: Duration = Duration::from_secs(86_400);

/// Compute the status from what the reconcile found and did, publish the
/// Events it calls for and write it if it changed. Returns when to look
/// again because time alone moves a certificate into the warning window.
pub async fn record(
    ctx: &Context,
    object: &DynamicObject,
    key: &CepKey,
    decoded: &Decoded,
    planned: &std::result::Result<Plan, NotInitialized>,
    spec: std::result::Result<Synced<'_>, NotInitialized>,
    health: &BTreeMap<TargetId, Health>,
) -> Result<Option<Duration>> {
    let now_time = SystemTime::now();
    let now = status::rfc3339(now_time);
    let previous = decoded.status.as_ref();
    let certificates = match planned {
        Ok(_) => ctx.scheduler.cert_not_after(key),
        Err(_) => BTreeMap::new(),
    };
    let mut status = status::status(&StatusInput {
        generation: object.metadata.generation,
        spec,
        health,
        previous,
        now: &now,
    });
    if let Ok(plan) = planned {
        let warning = ctx.settings.cert_expiry_warning;
        let warn_before = warning.and_then(|w| now_time.checked_add(w));
        certificates::fill(&mut status, plan, &certificates, previous, warn_before);
        ctx.metrics
            .set_certificates(&key.namespace, &key.name, &certificates);
    }
    if let Ok(plan) = planned {
        let drained_by = host_report::drained_by(object.metadata.annotations.as_ref());
        host_report::fill(&mut status, plan, health, &drained_by);
        let now_roles = host_report::roles(&status);
        let before = remember(&ctx.announced_hosts, key, now_roles.clone(), || {
            previous.map(host_report::roles)
        });
        for event in host_report::events(&before, &now_roles, &status) {
            events::publish(ctx, object, event).await;
        }
    }
    let certificate_events = announce_certificates(ctx, key, previous, &status);
    for event in certificate_events {
        info!(namespace = %key.namespace, name = %key.name, note = ?event.note, "certificate expiring");
        events::publish(ctx, object, event).await;
    }
    let announced = remember(&ctx.announced, key, status.conditions.clone(), || {
        previous.map(|p| p.conditions.clone())
    });
    let fail_open_events = fail_open::events(&announced, &status.conditions);
    for event in events::condition_events(&announced, &status)
        .into_iter()
        .chain(fail_open_events)
    {
        events::publish(ctx, object, event).await;
    }
    if previous != Some(&status) {
        write_status(ctx, key, &status, decoded.foreign_form).await?;
    }
    // Time alone moves a certificate into the warning window: come back
    // then.
    let crossing = ctx
        .settings
        .cert_expiry_warning
        .and_then(|w| certificates::next_crossing(&certificates, w, now_time));
    // Capped: the requeue queue refuses delays of years, and a daily look
    // costs nothing when nothing changed.
    Ok(crossing.map(|delay| (delay + Duration::from_secs(1)).min(MAX_CERTIFICATE_REQUEUE)))
}

/// The `CertificateExpiring` Events due: certificates in the warning window
/// not announced before (by this process, or in the previous status).
fn announce_certificates(
    ctx: &Context,
    key: &CepKey,
    previous: Option<&ClusterEndpointStatus>,
    status: &ClusterEndpointStatus,
) -> Vec<kube::runtime::events::Event> {
    let Some(warning) = ctx.settings.cert_expiry_warning else {
        return Vec::new();
    };
    let now = certificates::expiring(status);
    let before = remember(&ctx.announced_certificates, key, now.clone(), || {
        previous.map(certificates::expiring)
    });
    let days = u32::try_from(warning.as_secs() / 86_400).unwrap_or(u32::MAX);
    certificates::events(&before, &now, days)
}

/// Record what is announced now for `key` and return what was announced
/// before: by this process, else (after a restart) what the previous
/// status says, else nothing.
fn remember<T: Clone + Default>(
    announced: &Mutex<HashMap<CepKey, T>>,
    key: &CepKey,
    now: T,
    from_status: impl FnOnce() -> Option<T>,
) -> T {
    let mut announced = announced.lock().unwrap_or_else(|e| e.into_inner());
    let before = announced.get(key).cloned().or_else(from_status);
    announced.insert(key.clone(), now);
    before.unwrap_or_default()
}
