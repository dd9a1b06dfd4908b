//! Resolve: hosts given as DNS names, resolved (A and AAAA) by long-lived
//! workers, one per name, outside reconciliation.
//!
//! A worker resolves its name, waits `min(resolve period, TTL clamped to
//! [floor, ceiling])` and resolves it again. It publishes only changes (a
//! new address set, resolution starting or stopping to fail): each asks for
//! a reconcile of the objects that use the name. A failed resolution keeps
//! the last good addresses, so a DNS outage never empties a Service; a name
//! that never resolved has none.
//!
//! Nothing here knows Kubernetes: users of a name are keys of any type, and
//! the DNS client sits behind [`Lookup`] (hickory-resolver in production,
//! [`hickory`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

/// The most addresses of one name that are kept (sorted, the first ones):
/// a name cannot blow up an object past its target budget on its own.
pub const MAX_ADDRESSES_PER_NAME: usize = 64;

/// What a name resolves to, as the objects using it see it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resolution {
    /// The addresses of the last successful resolution: sorted, unique;
    /// kept while resolution fails; empty until the first success.
    pub addresses: Vec<IpAddr>,
    /// When these addresses were first seen (`None`: never resolved).
    pub resolved_at: Option<SystemTime>,
    /// Why resolution fails, since when; `None` after a success.
    pub failure: Option<Failure>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The first error of this run of failures (kept, so that differing
    /// errors of one outage do not rewrite the status each time).
    pub message: String,
    pub since: SystemTime,
}

/// Name -> resolution.
pub type Resolutions = BTreeMap<String, Resolution>;

/// One answer of the DNS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub addresses: Vec<IpAddr>,
    /// The time to live of the records (their least), if known.
    pub ttl: Option<Duration>,
}

/// Resolves one name (A and AAAA); the error says why in words.
pub type Lookup = Arc<dyn Fn(String) -> BoxFuture<'static, Result<Answer, String>> + Send + Sync>;

/// The TTL bounds (`--dns-min-ttl`, `--dns-max-ttl`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TtlBounds {
    pub floor: Duration,
    pub ceiling: Duration,
}

impl Default for TtlBounds {
    fn default() -> Self {
        TtlBounds {
            floor: Duration::from_secs(5),
            ceiling: Duration::from_secs(3600),
        }
    }
}

/// Fold one answer into a resolution (pure). Returns the new resolution,
/// whether it changed in a way the users must see, and when to resolve
/// again.
pub fn apply(
    previous: &Resolution,
    answer: Result<Answer, String>,
    now: SystemTime,
    period: Duration,
    bounds: TtlBounds,
) -> (Resolution, bool, Duration) {
    let floor = bounds.floor.min(bounds.ceiling);
    match answer {
        Ok(answer) if !answer.addresses.is_empty() => {
            let addresses: Vec<IpAddr> = answer
                .addresses
                .into_iter()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .take(MAX_ADDRESSES_PER_NAME)
                .collect();
            let same = addresses == previous.addresses && previous.resolved_at.is_some();
            let next = Resolution {
                resolved_at: if same {
                    previous.resolved_at
                } else {
                    Some(now)
                },
                addresses,
                failure: None,
            };
            let ttl = answer
                .ttl
                .unwrap_or(bounds.ceiling)
                .clamp(floor, bounds.ceiling);
            let changed = next != *previous;
            (next, changed, period.min(ttl))
        }
        Ok(_) => failed(previous, "no A or AAAA records".to_string(), now, period),
        Err(message) => failed(previous, message, now, period),
    }
}

/// A failure keeps the addresses; only its start is a change. Retried
/// after the resolve period.
fn failed(
    previous: &Resolution,
    message: String,
    now: SystemTime,
    period: Duration,
) -> (Resolution, bool, Duration) {
    let mut next = previous.clone();
    let changed = previous.failure.is_none();
    if changed {
        next.failure = Some(Failure {
            message,
            since: now,
        });
    }
    (next, changed, period)
}

/// The resolvers of one probe scope: which keys use which names (with the
/// resolve period each asks for), and one worker per name in use.
pub struct Resolver<K> {
    inner: Arc<Inner<K>>,
}

impl<K> Clone for Resolver<K> {
    fn clone(&self) -> Self {
        Resolver {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<K> {
    lookup: Lookup,
    bounds: TtlBounds,
    changes: mpsc::UnboundedSender<K>,
    state: Mutex<State<K>>,
}

struct State<K> {
    names: BTreeMap<String, Entry<K>>,
    by_key: HashMap<K, BTreeSet<String>>,
}

struct Entry<K> {
    resolution: Resolution,
    /// Users and the period each asks for; the worker uses the least.
    users: HashMap<K, Duration>,
    /// Wakes the worker when the least period shrank.
    wake: Arc<Notify>,
    worker: JoinHandle<()>,
}

impl<K> Entry<K> {
    fn period(&self) -> Duration {
        self.users
            .values()
            .min()
            .copied()
            .unwrap_or(Duration::from_secs(30))
    }
}

impl<K> Resolver<K>
where
    K: Clone + Eq + Hash + Send + Sync + 'static,
{
    /// A resolver and the stream of keys whose names changed.
    pub fn new(lookup: Lookup, bounds: TtlBounds) -> (Self, mpsc::UnboundedReceiver<K>) {
        let (changes, receiver) = mpsc::unbounded_channel();
        let inner = Inner {
            lookup,
            bounds,
            changes,
            state: Mutex::new(State {
                names: BTreeMap::new(),
                by_key: HashMap::new(),
            }),
        };
        (
            Resolver {
                inner: Arc::new(inner),
            },
            receiver,
        )
    }

    /// `key` uses exactly `names` (name -> resolve period): workers start
    /// for new names and stop for names nobody uses any more. Returns the
    /// current resolution of each of `names`.
    pub fn sync(&self, key: &K, names: &BTreeMap<String, Duration>) -> Resolutions {
        let mut state = self.inner.lock();
        let before = state.by_key.remove(key).unwrap_or_default();
        for gone in before.iter().filter(|n| !names.contains_key(*n)) {
            let unused = state.names.get_mut(gone).is_some_and(|entry| {
                entry.users.remove(key);
                entry.users.is_empty()
            });
            if unused && let Some(entry) = state.names.remove(gone) {
                entry.worker.abort();
            }
        }
        let mut out = Resolutions::new();
        for (name, period) in names {
            let entry = match state.names.get_mut(name) {
                Some(entry) => entry,
                None => {
                    let wake = Arc::new(Notify::new());
                    let worker =
                        tokio::spawn(run(Arc::downgrade(&self.inner), name.clone(), wake.clone()));
                    state.names.entry(name.clone()).or_insert(Entry {
                        resolution: Resolution::default(),
                        users: HashMap::new(),
                        wake,
                        worker,
                    })
                }
            };
            let least = entry.period();
            entry.users.insert(key.clone(), *period);
            if entry.period() < least {
                entry.wake.notify_one();
            }
            out.insert(name.clone(), entry.resolution.clone());
        }
        if !names.is_empty() {
            state
                .by_key
                .insert(key.clone(), names.keys().cloned().collect());
        }
        out
    }

    /// `key` uses no names any more.
    pub fn remove(&self, key: &K) {
        self.sync(key, &BTreeMap::new());
    }

    /// Names with a running worker.
    pub fn names(&self) -> Vec<String> {
        self.inner.lock().names.keys().cloned().collect()
    }

    /// Stop every worker.
    pub fn shutdown(&self) {
        let mut state = self.inner.lock();
        for (_, entry) in std::mem::take(&mut state.names) {
            entry.worker.abort();
        }
        state.by_key.clear();
    }
}

impl<K> Inner<K> {
    fn lock(&self) -> std::sync::MutexGuard<'_, State<K>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The worker of one name: resolve, publish a change, wait, again. Ends
/// when the resolver is gone or the name is no longer used (it is also
/// aborted then).
async fn run<K>(inner: std::sync::Weak<Inner<K>>, name: String, wake: Arc<Notify>)
where
    K: Clone + Eq + Hash + Send + Sync + 'static,
{
    loop {
        let Some(lookup) = inner.upgrade().map(|i| i.lookup.clone()) else {
            return;
        };
        let answer = lookup(name.clone()).await;
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let delay = {
            let mut state = strong.lock();
            let Some(entry) = state.names.get_mut(&name) else {
                return;
            };
            let (next, changed, delay) = apply(
                &entry.resolution,
                answer,
                SystemTime::now(),
                entry.period(),
                strong.bounds,
            );
            entry.resolution = next;
            if changed {
                for key in entry.users.keys() {
                    let _ = strong.changes.send(key.clone());
                }
            }
            delay
        };
        drop(strong);
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = wake.notified() => {}
        }
    }
}

/// Resolve each of `names` once (for `kube-endpoints check`).
pub async fn resolve_once(lookup: &Lookup, names: impl IntoIterator<Item = String>) -> Resolutions {
    let lookups = names.into_iter().map(|name| async move {
        let answer = lookup(name.clone()).await;
        let (resolution, _, _) = apply(
            &Resolution::default(),
            answer,
            SystemTime::now(),
            Duration::ZERO,
            TtlBounds::default(),
        );
        (name, resolution)
    });
    futures::future::join_all(lookups)
        .await
        .into_iter()
        .collect()
}

/// Where DNS queries go: the given servers (`--dns-server`), or the
/// system's configuration (`/etc/resolv.conf`) when none is given.
#[derive(Clone, Debug, Default)]
pub struct ResolverSettings {
    pub servers: Vec<SocketAddr>,
    pub bounds: TtlBounds,
}

/// Why the DNS client could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up DNS resolution: {0}")]
pub struct SetupError(String);

/// The production [`Lookup`]: hickory-resolver, A and AAAA in parallel,
/// with its cache off (the workers decide when to ask again; a cache would
/// answer a period shorter than the TTL with stale records).
pub fn hickory(settings: &ResolverSettings) -> Result<Lookup, SetupError> {
    use hickory_resolver::config::{
        ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolverConfig,
    };
    use hickory_resolver::net::runtime::TokioRuntimeProvider;
    let provider = TokioRuntimeProvider::default();
    let mut builder = if settings.servers.is_empty() {
        hickory_resolver::TokioResolver::builder(provider).map_err(|e| SetupError(e.to_string()))?
    } else {
        let servers = settings
            .servers
            .iter()
            .map(|addr| {
                let mut udp = ConnectionConfig::udp();
                udp.port = addr.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = addr.port();
                NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
            })
            .collect();
        hickory_resolver::TokioResolver::builder_with_config(
            ResolverConfig::from_parts(None, Vec::new(), servers),
            provider,
        )
    };
    let options = builder.options_mut();
    options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    options.cache_size = 0;
    options.timeout = Duration::from_secs(2);
    options.attempts = 2;
    let resolver = builder.build().map_err(|e| SetupError(e.to_string()))?;
    Ok(Arc::new(move |name: String| {
        let resolver = resolver.clone();
        Box::pin(async move {
            let now = std::time::Instant::now();
            let lookup = resolver
                .lookup_ip(name.as_str())
                .await
                .map_err(|e| e.to_string())?;
            let ttl = lookup.valid_until().saturating_duration_since(now);
            Ok(Answer {
                addresses: lookup.iter().collect(),
                ttl: Some(ttl),
            })
        })
    }))
}

/// [`hickory`], or, when the DNS client cannot be set up (no readable
/// resolver configuration), a lookup that fails with that reason: objects
/// listing names then say so in their status, and the others run on.
pub fn hickory_or_failing(settings: &ResolverSettings) -> Lookup {
    match hickory(settings) {
        Ok(lookup) => lookup,
        Err(e) => {
            tracing::warn!(error = %e, "hosts given as DNS names will not resolve");
            let message = e.to_string();
            Arc::new(move |_| {
                let message = message.clone();
                Box::pin(async move { Err(message) })
            })
        }
    }
}

#[cfg(test)]
#[path = "resolve_tests.rs"]
mod tests;
