//! One scope's controller: for one API group and all namespaces or one, the
//! wiring of the watch caches, the probe engine, transition handling and the
//! kube-runtime Controller that calls [`reconcile`].

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, ListParams};
use kube::core::{ApiResource, DynamicObject};
use kube::runtime::controller::{self, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use kube_endpoints_api::api_resource;
use kube_endpoints_probe::{CertificateChange, HealthState, Prober, Scheduler, Transition};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::FIELD_MANAGER;
use crate::budget;
use crate::builder::LABEL_MANAGED_BY;
use crate::coalesce::coalesce;
use crate::context::{Caches, CepKey, Context, Settings, Shared};
use crate::credentials;
use crate::decode::decode;
use crate::event_limit::{self, EventLimiter};
use crate::events::{self, host_transition_event};
use crate::fleet_guard::Change;
use crate::metrics::{Metrics, ProbeObserver, ShardLabels, TargetCounter, TransitionLabels};
use crate::names;
use crate::policy;
use crate::reconcile;
use crate::resolve::Resolver;
use crate::sharding::{Shard, ShardKey};
use crate::slice_index::SliceIndex;
use crate::watch_cache::{Cached, spawn_until_shutdown};

#[derive(Debug, thiserror::Error)]
pub enum ScopeError {
    #[error(
        "the ClusterEndpoint CRD of group {group} is not served ({source}); install it with `kube-endpoints crd --group {group} | kubectl apply -f -`"
    )]
    CrdMissing { group: String, source: kube::Error },
    #[error("a watch cache stopped before it was ready")]
    CacheNotReady,
}

impl ScopeError {
    pub fn reason(&self) -> &'static str {
        match self {
            ScopeError::CrdMissing { .. } => "CrdMissing",
            ScopeError::CacheNotReady => "CacheNotReady",
        }
    }
}

/// One controller: one API group, all namespaces or one.
#[derive(Clone, Debug)]
pub struct Scope {
    pub group: String,
    pub namespace: Option<String>,
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

impl Scope {
    /// Runs until `shutdown` is cancelled. Returns an error only when it
    /// cannot start (for example when the CRD is not installed).
    pub async fn run(
        self,
        client: Client,
        settings: Settings,
        metrics: Arc<Metrics>,
        prober: Prober,
        shared: Shared,
        shutdown: CancellationToken,
    ) -> Result<(), ScopeError> {
        let resource = api_resource(&self.group);
        let ns = self.namespace.as_deref();
        // Untyped: each object is decoded on its own in reconcile, so that
        // one that does not decode is reported on its status instead of
        // failing the whole list (and with it every object of the group).
        let ceps: Api<DynamicObject> = match ns {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
            None => Api::all_with(client.clone(), &resource),
        };
        ceps.list_metadata(&ListParams::default().limit(1))
            .await
            .map_err(|source| ScopeError::CrdMissing {
                group: self.group.clone(),
                source,
            })?;
        let watch_name = |what: &str| format!("{}/{}/{what}", self.group, ns.unwrap_or("*"));

        // Child watches fill the caches and ask for a reconcile of the
        // owning object; so do health transitions. The requests are
        // coalesced with a maximum delay.
        let (trigger_tx, trigger_rx) = mpsc::unbounded_channel::<ObjectRef<DynamicObject>>();
        let slice_selector = format!("{LABEL_MANAGED_BY}={}", settings.build.controller_id);
        let children = Children {
            client: &client,
            namespace: ns,
            owner: &resource,
            trigger: &trigger_tx,
            shutdown: &shutdown,
            metrics: &metrics,
            scope: watch_name(""),
            shard: settings.shard,
        };
        let slices_by_service = SliceIndex::default();
        let caches = Caches {
            // The Services keep who owns their labels and annotations
            // (see `service_metadata`).
            services: children.cache(
                watcher::Config::default(),
                "services",
                ShardKey::OwnName,
                crate::service_metadata::trim_managed_fields,
                |_| {},
            ),
            endpoints: children.cache(
                watcher::Config::default(),
                "endpoints",
                ShardKey::OwnName,
                drop_managed_fields,
                |_| {},
            ),
            slices: children.cache(
                watcher::Config::default().labels(&slice_selector),
                "endpointslices",
                ShardKey::ServiceNameLabel,
                drop_managed_fields,
                {
                    let index = slices_by_service.clone();
                    move |event| index.observe(event)
                },
            ),
            slices_by_service,
        };
        // Probe credentials: only labelled Secrets and ConfigMaps are
        // watched (see `credentials`); a change re-plans the objects that
        // refer to it.
        let (credentials_tx, credentials_rx) = mpsc::unbounded_channel();
        let credential_stores = settings.probe_credentials.then(|| {
            credentials::watch(
                &client,
                ns,
                credentials_tx,
                &metrics,
                &watch_name(""),
                &shutdown,
            )
        });
        // Seeding health from the slices needs a complete cache, or a restart
        // would briefly take every host out of rotation. A reference to a
        // credential is judged against a complete cache too, or every such
        // object would report it missing at start.
        let credentials_ready = async {
            match &credential_stores {
                Some(stores) => stores
                    .secrets
                    .wait_until_ready()
                    .await
                    .and(stores.config_maps.wait_until_ready().await),
                None => Ok(()),
            }
        };
        for ready in [
            caches.services.wait_until_ready().await,
            caches.endpoints.wait_until_ready().await,
            caches.slices.wait_until_ready().await,
            credentials_ready.await,
        ] {
            if ready.is_err() {
                // A cache stops early only when told to stop, or when its watch
                // task died; only the latter is an error.
                if shutdown.is_cancelled() {
                    return Ok(());
                }
                return Err(ScopeError::CacheNotReady);
            }
        }

        let (scheduler, transitions) = probe_engine(
            prober,
            Arc::new(ProbeObserver(metrics.clone())),
            settings.max_in_flight_probes,
        );
        // Counted on every scrape for as long as this controller runs.
        let counter: Arc<dyn TargetCounter> = Arc::new(scheduler.clone());
        metrics.register_targets(Arc::downgrade(&counter));
        let reporter = Reporter {
            controller: FIELD_MANAGER.to_string(),
            instance: std::env::var("POD_NAME").ok(),
        };
        let writer = reflector::store::Writer::new(resource.clone());
        let writer_store = writer.as_reader();
        let (resolver, name_changes) = Resolver::new(shared.dns.clone(), settings.dns.bounds);
        let ctx = Arc::new(Context {
            client: client.clone(),
            resource: resource.clone(),
            scheduler: scheduler.clone(),
            resolver: resolver.clone(),
            settings,
            caches,
            metrics: metrics.clone(),
            recorder: Recorder::new(client.clone(), reporter),
            objects: writer_store.clone(),
            backoff: Default::default(),
            announced: Default::default(),
            shared,
            event_limiter: EventLimiter::new(event_limit::BURST, event_limit::REFILL),
            credentials: credential_stores,
            announced_certificates: Default::default(),
            announced_hosts: Default::default(),
        });
        // A budget freed elsewhere (another scope's object was deleted)
        // reconciles this scope's objects that now fit.
        ctx.shared
            .budget
            .subscribe(&self.group, ns, resource.clone(), trigger_tx.clone());

        let (sweep_ctx, sweep_store) = (ctx.clone(), writer_store.clone());
        let cep_watch = watch_name("clusterendpoints");
        let watch_metrics = metrics.clone();
        let scope_ns = self.namespace.clone();
        let shard = ctx.settings.shard;
        let cep_stream = watcher(ceps.clone(), watcher::Config::default())
            .default_backoff()
            // With --shards > 1, only this shard's objects exist for this
            // controller: not cached, not reconciled, not probed.
            .filter(move |event| futures::future::ready(in_shard(event, shard, ShardKey::OwnName)))
            .modify(drop_managed_fields)
            .reflect(writer)
            .inspect(move |event| {
                if let Err(e) = event {
                    warn!(watch = %cep_watch, error = %e, "watch error; retrying with backoff");
                }
                watch_metrics.watch_event(&cep_watch, "clusterendpoints", event.is_ok());
                claim_budget(event, &sweep_ctx, scope_ns.as_deref(), &sweep_store);
                forget_deleted(event, &sweep_ctx, &sweep_store);
            })
            .touched_objects();

        let reactions = Reactions {
            ctx: ctx.clone(),
            store: writer_store.clone(),
            trigger: trigger_tx,
        };
        let reaction_tasks = [
            tokio::spawn(handle_transitions(transitions, reactions.clone())),
            tokio::spawn(reconcile_on_range_changes(reactions.clone())),
            tokio::spawn(reconcile_on_fleet_guard_changes(reactions.clone())),
            tokio::spawn(reconcile_on_credential_changes(
                credentials_rx,
                reactions.clone(),
            )),
            tokio::spawn(reconcile_on_certificate_changes(
                scheduler.certificate_changes(),
                reactions.clone(),
            )),
            tokio::spawn(reconcile_on_name_changes(name_changes, reactions)),
        ];
        info!(group = %self.group, namespace = ns.unwrap_or("*"), "controller started");
        metrics.set_ready(true);

        let stop = shutdown.clone();
        // Bounded concurrency keeps a burst of new objects from stampeding the
        // apiserver (10,000 Service creates at once time out and are retried).
        // Requests from transitions and child changes come coalesced (one
        // reconcile per burst, within a maximum delay); kube-runtime adds no
        // debounce of its own, which would restart on every request and
        // could postpone a busy object forever.
        let config =
            controller::Config::default().concurrency(ctx.settings.max_concurrent_reconciles);
        let requests = coalesce(trigger_rx, RECONCILE_DEBOUNCE, RECONCILE_MAX_DELAY);
        Controller::for_stream_with(cep_stream, writer_store, resource.clone())
            .with_config(config)
            .reconcile_on(requests)
            .graceful_shutdown_on(async move { stop.cancelled().await })
            .run(reconcile::reconcile, reconcile::error_policy, ctx)
            .for_each(|result| {
                count_by_shard(&result, shard, &metrics);
                futures::future::ready(())
            })
            .await;
        scheduler.shutdown();
        resolver.shutdown();
        drop(counter);
        for task in &reaction_tasks {
            task.abort();
        }
        for what in [
            "clusterendpoints",
            "services",
            "endpoints",
            "endpointslices",
            "secrets",
            "configmaps",
        ] {
            metrics.watch_stopped(&watch_name(what));
        }
        Ok(())
    }
}

/// Whether a watch event concerns this controller's shard (all do without
/// sharding). An object never changes shard: its namespace and name are
/// fixed for its lifetime.
fn in_shard<K: Resource>(
    event: &Result<watcher::Event<K>, watcher::Error>,
    shard: Option<Shard>,
    key: ShardKey,
) -> bool {
    let (Some(shard), Ok(event)) = (shard, event) else {
        return true;
    };
    match event {
        watcher::Event::Apply(o) | watcher::Event::InitApply(o) | watcher::Event::Delete(o) => {
            let name = o.name_any();
            shard.owns(
                o.namespace().as_deref().unwrap_or(""),
                key.name(&name, o.labels()),
            )
        }
        watcher::Event::Init | watcher::Event::InitDone => true,
    }
}

/// Count a reconcile by the shard of its object, computed from the object
/// itself: a replica that reconciled another shard's object shows it.
fn count_by_shard<E>(
    result: &Result<(ObjectRef<DynamicObject>, controller::Action), E>,
    shard: Option<Shard>,
    metrics: &Metrics,
) {
    if let (Some(shard), Ok((object, _))) = (shard, result) {
        let index = crate::sharding::shard_of(
            object.namespace.as_deref().unwrap_or(""),
            &object.name,
            shard.count,
        );
        metrics
            .shards
            .reconciles
            .get_or_create(&ShardLabels::of(index))
            .inc();
    }
}

/// The probe engine of one scope, running at most `max_in_flight` probes
/// at once (`--max-in-flight-probes`), so that many slow or silent hosts
/// cannot exhaust the controller's file descriptors.
fn probe_engine(
    prober: Prober,
    observer: Arc<ProbeObserver>,
    max_in_flight: usize,
) -> (
    Scheduler<CepKey>,
    mpsc::UnboundedReceiver<Transition<CepKey>>,
) {
    Scheduler::<CepKey>::with_max_in_flight(prober, observer, max_in_flight)
}

/// Keep the target budgets told about every object of this scope: its
/// claim on each change, its removal on delete, and after a re-list the
/// removal of objects deleted meanwhile.
fn claim_budget(
    event: &Result<watcher::Event<DynamicObject>, watcher::Error>,
    ctx: &Context,
    namespace: Option<&str>,
    store: &Store<DynamicObject>,
) {
    let group = ctx.resource.group.as_str();
    let budget = &ctx.shared.budget;
    if !budget.is_limited() {
        return;
    }
    let claim = |object: &DynamicObject| {
        let key = CepKey::of(object).ok()?;
        let decoded = decode(object);
        let targets = decoded.spec.as_ref().ok().map_or(0, |spec| {
            crate::plan::plan(&key.name, spec).map_or(0, |p| p.target_count())
        });
        let claim = budget::claim(&object.metadata, decoded.status.as_ref(), targets);
        Some((budget::key(group, &key), claim))
    };
    match event {
        Ok(watcher::Event::Apply(cep)) => {
            if let Some((key, claim)) = claim(cep) {
                budget.update(&key, Some(claim));
            }
        }
        // The initial list is judged once, when it is complete (InitDone):
        // judging it object by object would cost the square of its size.
        Ok(watcher::Event::InitApply(cep)) => {
            if let Some((key, claim)) = claim(cep) {
                budget.record(&key, claim);
            }
        }
        Ok(watcher::Event::Delete(cep)) => {
            if let Ok(key) = CepKey::of(cep) {
                budget.update(&budget::key(group, &key), None);
            }
        }
        Ok(watcher::Event::InitDone) => {
            let live: std::collections::BTreeSet<budget::ObjectKey> = store
                .state()
                .iter()
                .filter_map(|o| CepKey::of(o.as_ref()).ok())
                .map(|k| budget::key(group, &k))
                .collect();
            // Also judges what the initial list recorded.
            budget.retain(group, namespace, |k| live.contains(k));
        }
        _ => {}
    }
}

/// When the cluster's ranges change, reconcile the objects whose hosts
/// they now judge differently (a host that became denied leaves its
/// slices; one that was freed is probed and written).
/// What the tasks that react to changes outside the ClusterEndpoints
/// (probe transitions, cluster ranges, credentials, certificates) share:
/// the context, the ClusterEndpoints' cache, and the reconcile requests.
#[derive(Clone)]
struct Reactions {
    ctx: Arc<Context>,
    store: Store<DynamicObject>,
    trigger: mpsc::UnboundedSender<ObjectRef<DynamicObject>>,
}

impl Reactions {
    /// Requests a reconcile of the object `key`.
    fn reconcile(&self, key: &CepKey) {
        let _ = self.trigger.send(key.object_ref(&self.ctx.resource));
    }

    /// The cached ClusterEndpoint `key`, if it still exists.
    fn cached(&self, key: &CepKey) -> Option<Arc<DynamicObject>> {
        self.store.get(&key.object_ref(&self.ctx.resource))
    }
}

async fn reconcile_on_range_changes(reactions: Reactions) {
    let mut ranges = reactions.ctx.shared.ranges.clone();
    let mut seen = ranges.borrow_and_update().clone();
    while ranges.changed().await.is_ok() {
        let now = ranges.borrow_and_update().clone();
        for object in reactions.store.state() {
            let Ok(spec) = decode(&object).spec else {
                continue;
            };
            let hosts = policy::hosts_of(&spec);
            // Names: their addresses are not in the spec; judge them anew.
            if (names::lists_names(&spec)
                || policy::affected(&hosts, &reactions.ctx.settings.policy, &seen, &now))
                && let Ok(key) = CepKey::of(object.as_ref())
            {
                reactions.reconcile(&key);
            }
        }
        seen = now;
    }
}

/// When a labelled Secret or ConfigMap changes, reconcile the objects
/// that refer to it (a rotated CA or token is picked up; a deleted one is
/// reported missing).
async fn reconcile_on_credential_changes(
    mut changes: mpsc::UnboundedReceiver<credentials::Changed>,
    reactions: Reactions,
) {
    while let Some(changed) = changes.recv().await {
        for key in credentials::affected(&reactions.store, &changed) {
            reactions.reconcile(&key);
        }
    }
}

/// A target's TLS certificate was seen first, or changed: reconcile its
/// object, whose status lists it.
async fn reconcile_on_certificate_changes(
    mut changes: mpsc::UnboundedReceiver<CertificateChange<CepKey>>,
    reactions: Reactions,
) {
    while let Some(change) = changes.recv().await {
        if reactions.cached(&change.owner).is_some() {
            reactions.reconcile(&change.owner);
        }
    }
}

/// A DNS name an object lists resolved to other addresses, or started or
/// stopped failing: reconcile the objects using it.
async fn reconcile_on_name_changes(
    mut changes: mpsc::UnboundedReceiver<CepKey>,
    reactions: Reactions,
) {
    while let Some(key) = changes.recv().await {
        if reactions.cached(&key).is_some() {
            reactions.reconcile(&key);
        }
    }
}

/// How long a reconcile request waits for more requests about the same
/// object. Short against any probe period, long enough to fold a burst.
const RECONCILE_DEBOUNCE: Duration = Duration::from_millis(200);
/// The longest a request waits however many follow it.
const RECONCILE_MAX_DELAY: Duration = Duration::from_secs(1);

/// Caches never read managed fields; dropping them saves much of each
/// cached object's memory.
fn drop_managed_fields<K: Resource>(obj: &mut K) {
    obj.meta_mut().managed_fields = None;
}

/// Stop probing objects that are gone: on a delete event, and after every
/// re-list (deletes missed while the watch was down show up only there).
fn forget_deleted(
    event: &Result<watcher::Event<DynamicObject>, watcher::Error>,
    ctx: &Context,
    store: &Store<DynamicObject>,
) {
    let gone = match event {
        Ok(watcher::Event::Delete(obj)) => CepKey::of(obj).ok().into_iter().collect(),
        Ok(watcher::Event::InitDone) => {
            let live: std::collections::BTreeSet<CepKey> = store
                .state()
                .iter()
                .filter_map(|o| CepKey::of(o.as_ref()).ok())
                .collect();
            ctx.scheduler.retain(|key| live.contains(key))
        }
        _ => return,
    };
    for key in gone {
        ctx.forget(&key);
    }
}

/// Where the caches of the objects we write come from, and whom their
/// changes concern.
struct Children<'a> {
    client: &'a Client,
    namespace: Option<&'a str>,
    /// The ClusterEndpoint resource: a change to an object it controls
    /// triggers a reconcile of that ClusterEndpoint.
    owner: &'a ApiResource,
    trigger: &'a mpsc::UnboundedSender<ObjectRef<DynamicObject>>,
    shutdown: &'a CancellationToken,
    metrics: &'a Arc<Metrics>,
    /// `<group>/<namespace>/`, to name the watches in metrics.
    scope: String,
    /// With --shards > 1, only the children of this shard's objects are
    /// cached: a replica leading k shards then holds each child once, not k
    /// times.
    shard: Option<Shard>,
}

impl Children<'_> {
    /// A cache of `K` whose changes trigger a reconcile of the owning
    /// ClusterEndpoint (found through the controller owner reference).
    /// `observe` sees each event after the store has applied it (an index
    /// kept next to the store).
    fn cache<K>(
        &self,
        config: watcher::Config,
        resource: &'static str,
        key: ShardKey,
        trim: fn(&mut K),
        observe: impl Fn(&watcher::Event<K>) + Send + 'static,
    ) -> Store<K>
    where
        K: Cached + Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    {
        let (reader, writer) = reflector::store();
        let owner = self.owner.clone();
        let trigger = self.trigger.clone();
        let metrics = self.metrics.clone();
        let watch = format!("{}{resource}", self.scope);
        let shard = self.shard;
        let stream = watcher(api::<K>(self.client, self.namespace), config)
            .default_backoff()
            .filter(move |event| futures::future::ready(in_shard(event, shard, key)))
            .modify(trim)
            .reflect(writer)
            .inspect(move |event| {
                if let Ok(event) = event {
                    observe(event);
                }
            })
            .touched_objects()
            .for_each(move |obj| {
                metrics.watch_event(&watch, resource, obj.is_ok());
                match obj {
                    Ok(obj) => {
                        for r in obj.owner_references() {
                            if r.controller == Some(true)
                                && r.kind == owner.kind
                                && r.api_version == owner.api_version
                                && let Some(ns) = obj.namespace()
                            {
                                let _ = trigger
                                    .send(ObjectRef::new_with(&r.name, owner.clone()).within(&ns));
                            }
                        }
                    }
                    Err(e) => {
                        warn!(watch = %watch, error = %e, "watch error; retrying with backoff")
                    }
                }
                futures::future::ready(())
            });
        spawn_until_shutdown(stream, self.shutdown);
        reader
    }
}

/// Feed a transition to the fleet guard; a trip or thaw is counted and
/// logged here, and every scope reconciles its objects then
/// ([`reconcile_on_fleet_guard_changes`]).
fn guard_fleet(ctx: &Context, t: &Transition<CepKey>) {
    let total = ctx.metrics.target_total();
    let owner = budget::key(&ctx.resource.group, &t.owner);
    let (change, failing) =
        ctx.shared
            .fleet_guard
            .observe(owner, t.target.clone(), t.from, t.to.state, total);
    match change {
        Change::Tripped => {
            ctx.metrics.fleet_guard_frozen.set(1);
            ctx.metrics.fleet_guard_trips.inc();
            warn!(
                failing,
                total,
                percent = ctx.settings.fleet_guard.percent,
                "fleet guard tripped: too many targets turned failing at once; failing hosts stay in rotation until the share drops"
            );
        }
        Change::Thawed => {
            ctx.metrics.fleet_guard_frozen.set(0);
            info!(total, "fleet guard thawed: probe results apply again");
        }
        Change::None => {}
    }
}

/// When the fleet guard trips or thaws, reconcile every object of the
/// scope: the held hosts of each are kept, or let go, and its `FleetGuard`
/// condition follows.
async fn reconcile_on_fleet_guard_changes(reactions: Reactions) {
    let guard = reactions.ctx.shared.fleet_guard.clone();
    let mut changes = guard.subscribe();
    while changes.changed().await.is_ok() {
        // Also after a thaw that no transition caused (objects deleted).
        let frozen = guard.is_frozen();
        reactions
            .ctx
            .metrics
            .fleet_guard_frozen
            .set(i64::from(frozen));
        for object in reactions.store.state() {
            if let Ok(key) = CepKey::of(object.as_ref()) {
                reactions.reconcile(&key);
            }
        }
    }
}

/// Every transition: count it, tell the user (Event) and reconcile the object.
async fn handle_transitions(
    mut transitions: mpsc::UnboundedReceiver<Transition<CepKey>>,
    reactions: Reactions,
) {
    while let Some(t) = transitions.recv().await {
        let to = match t.to.state {
            HealthState::Ready => "ready",
            HealthState::NotReady => "not_ready",
            HealthState::Pending => continue,
        };
        reactions
            .ctx
            .metrics
            .transitions
            .get_or_create(&TransitionLabels { to })
            .inc();
        let Some(cep) = reactions.cached(&t.owner) else {
            reactions.ctx.forget(&t.owner);
            continue;
        };
        guard_fleet(&reactions.ctx, &t);
        reactions.reconcile(&t.owner);
        let Some(event) = host_transition_event(&t) else {
            continue;
        };
        info!(namespace = %t.owner.namespace, name = %t.owner.name, host = %t.target.host, port = %t.target.port, reason = %event.reason, "host transition");
        let ctx = reactions.ctx.clone();
        tokio::spawn(async move { events::publish(&ctx, cep.as_ref(), event).await });
    }
}
