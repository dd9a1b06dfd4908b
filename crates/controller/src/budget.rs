//! Target budgets: how many host-ports (targets) the controller carries per
//! namespace (`--max-targets-per-namespace`) and in all (`--max-targets`),
//! so that no tenant can exhaust the controller for the others.
//!
//! The rule ([`admit`], pure): objects are admitted whole or not at all,
//! in this order —
//!
//! 1. *incumbents* first: objects whose status says they were admitted
//!    with at least as many targets as they declare now (unchanged or
//!    shrunk), oldest first;
//! 2. then every other object (new, grown, or refused before), oldest
//!    first;
//!
//! each admitted when its targets fit into what is left of both its
//! namespace's budget and the global one. "Oldest" is the creation time,
//! then namespace, name and API group. So an admitted object keeps its
//! targets; a new or grown object that does not fit is refused whole,
//! whatever the order reconciles run in; and because the incumbency is
//! read from the objects' own status, the verdicts survive a restart or a
//! failover.
//!
//! [`Budget`] is the shell's shared ledger: every scope reports its objects'
//! claims to it and asks it for verdicts; when a verdict changes (an object
//! was deleted and freed room) it triggers a reconcile of the object.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::{ApiResource, DynamicObject};
use kube::runtime::reflector::ObjectRef;
use kube_endpoints_api::{CONDITION_INITIALIZED, ClusterEndpointStatus};
use tokio::sync::mpsc::UnboundedSender;

/// The budgets; `None` is unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    pub global: Option<usize>,
    pub per_namespace: Option<usize>,
}

impl Limits {
    pub fn is_unlimited(&self) -> bool {
        self.global.is_none() && self.per_namespace.is_none()
    }
}

/// One object, across all served groups.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub namespace: String,
    pub name: String,
    pub group: String,
}

/// What an object asks of the budgets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// `metadata.creationTimestamp`, seconds since the epoch.
    pub created: i64,
    /// Host-ports it declares (0 for a spec that is not valid: it runs nothing).
    pub targets: usize,
    /// Its status says it was admitted with at least `targets`.
    pub incumbent: bool,
}

/// Which budget refused an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    Global,
    Namespace(String),
}

/// Why an object is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exceeded {
    pub budget: Scope,
    pub limit: usize,
    /// Held by the objects admitted before this one.
    pub used: usize,
    pub needs: usize,
}

impl fmt::Display for Exceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match &self.budget {
            Scope::Global => "the global target budget (--max-targets)".to_string(),
            Scope::Namespace(ns) => {
                format!("the target budget of namespace {ns} (--max-targets-per-namespace)")
            }
        };
        write!(
            f,
            "this object declares {} targets (host-ports) but only {} of {what} of {} are free: {} are held by ClusterEndpoints admitted before it (objects are admitted oldest first, and an admitted object keeps its targets while it does not grow)",
            self.needs,
            self.limit.saturating_sub(self.used),
            self.limit,
            self.used,
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Admitted,
    Exceeded(Exceeded),
}

/// The verdict on every object (see the module doc for the rule).
pub fn admit(claims: &BTreeMap<ObjectKey, Claim>, limits: &Limits) -> BTreeMap<ObjectKey, Verdict> {
    let mut order: Vec<(&ObjectKey, &Claim)> = claims.iter().collect();
    order.sort_by(|(ka, a), (kb, b)| {
        (!a.incumbent, &a.created, ka).cmp(&(!b.incumbent, &b.created, kb))
    });
    let mut used_global = 0usize;
    let mut used_ns: BTreeMap<&str, usize> = BTreeMap::new();
    let mut verdicts = BTreeMap::new();
    for (key, claim) in order {
        let ns_used = used_ns.get(key.namespace.as_str()).copied().unwrap_or(0);
        let over = |limit: Option<usize>, used: usize, budget: Scope| {
            let limit = limit?;
            (used.saturating_add(claim.targets) > limit).then_some(Exceeded {
                budget,
                limit,
                used,
                needs: claim.targets,
            })
        };
        let exceeded = over(
            limits.per_namespace,
            ns_used,
            Scope::Namespace(key.namespace.clone()),
        )
        .or_else(|| over(limits.global, used_global, Scope::Global));
        let verdict = match exceeded {
            Some(e) => Verdict::Exceeded(e),
            None => {
                used_global = used_global.saturating_add(claim.targets);
                used_ns.insert(&key.namespace, ns_used.saturating_add(claim.targets));
                Verdict::Admitted
            }
        };
        verdicts.insert(key.clone(), verdict);
    }
    verdicts
}

/// Whether `status` records an admission of at least `targets`: the object
/// was initialized and its ports report that many host-ports in all.
pub fn is_incumbent(status: Option<&ClusterEndpointStatus>, targets: usize) -> bool {
    let Some(status) = status else {
        return false;
    };
    let initialized = status
        .conditions
        .iter()
        .any(|c| c.type_ == CONDITION_INITIALIZED && c.status == "True");
    let held: i64 = status.ports.iter().map(|p| i64::from(p.total)).sum();
    initialized && usize::try_from(held).is_ok_and(|held| held >= targets)
}

/// The budget's key of a ClusterEndpoint of `group`.
pub fn key(group: &str, key: &crate::cep_key::CepKey) -> ObjectKey {
    ObjectKey {
        namespace: key.namespace.clone(),
        name: key.name.clone(),
        group: group.to_string(),
    }
}

/// What an object with `metadata` and `status`, declaring `targets`
/// host-ports, claims.
pub fn claim(
    metadata: &ObjectMeta,
    status: Option<&ClusterEndpointStatus>,
    targets: usize,
) -> Claim {
    Claim {
        created: metadata
            .creation_timestamp
            .as_ref()
            .map_or(0, |t| t.0.as_second()),
        targets,
        incumbent: is_incumbent(status, targets),
    }
}

/// Where to send a reconcile request for the objects of one scope.
struct Subscriber {
    group: String,
    namespace: Option<String>,
    resource: ApiResource,
    trigger: UnboundedSender<ObjectRef<DynamicObject>>,
}

#[derive(Default)]
struct Ledger {
    claims: BTreeMap<ObjectKey, Claim>,
    verdicts: BTreeMap<ObjectKey, Verdict>,
    /// Claims changed since the verdicts were computed.
    dirty: bool,
}

/// The budgets shared by every scope of the process.
pub struct Budget {
    limits: Limits,
    ledger: Mutex<Ledger>,
    subscribers: Mutex<Vec<Subscriber>>,
}

impl Budget {
    pub fn new(limits: Limits) -> Self {
        Budget {
            limits,
            ledger: Mutex::new(Ledger::default()),
            subscribers: Mutex::new(Vec::new()),
        }
    }

    /// Reconcile requests for objects of `group` (in `namespace`, or all)
    /// whose verdict changes go to `trigger`.
    pub fn subscribe(
        &self,
        group: &str,
        namespace: Option<&str>,
        resource: ApiResource,
        trigger: UnboundedSender<ObjectRef<DynamicObject>>,
    ) {
        lock(&self.subscribers).push(Subscriber {
            group: group.to_string(),
            namespace: namespace.map(str::to_string),
            resource,
            trigger,
        });
    }

    /// Whether any budget is set (else every object is admitted and claims
    /// need not even be computed).
    pub fn is_limited(&self) -> bool {
        !self.limits.is_unlimited()
    }

    /// Record `claim` for `key` (`None`: the object is gone) and return the
    /// verdict on it.
    pub fn update(&self, key: &ObjectKey, claim: Option<Claim>) -> Verdict {
        if self.limits.is_unlimited() {
            return Verdict::Admitted;
        }
        self.change(|ledger| match claim {
            Some(c) => {
                let old = ledger.claims.insert(key.clone(), c.clone());
                // An admitted object whose status now records its admission
                // changes no verdict (it was admitted in the same place
                // already): skip the recomputation, which every newly
                // admitted object would otherwise cost once.
                let recorded = old.as_ref().is_some_and(|o| {
                    !o.incumbent
                        && c.incumbent
                        && o.targets == c.targets
                        && o.created == c.created
                        && ledger.verdicts.get(key) == Some(&Verdict::Admitted)
                });
                old != Some(c) && !recorded
            }
            None => ledger.claims.remove(key).is_some(),
        });
        self.verdict(key)
    }

    /// Record `claim` without recomputing the verdicts yet: for the initial
    /// list of a scope, which [`Budget::retain`] closes.
    pub fn record(&self, key: &ObjectKey, claim: Claim) {
        if self.limits.is_unlimited() {
            return;
        }
        let mut ledger = lock(&self.ledger);
        if ledger.claims.insert(key.clone(), claim.clone()) != Some(claim) {
            ledger.dirty = true;
        }
    }

    /// Forget the objects of `group` in `namespace` (or all namespaces)
    /// that `keep` rejects (after a re-list: deletes missed meanwhile), and
    /// judge every claim recorded since the last judgement.
    pub fn retain(&self, group: &str, namespace: Option<&str>, keep: impl Fn(&ObjectKey) -> bool) {
        if self.limits.is_unlimited() {
            return;
        }
        self.change(|ledger| {
            let before = ledger.claims.len();
            ledger.claims.retain(|k, _| {
                k.group != group || namespace.is_some_and(|ns| ns != k.namespace) || keep(k)
            });
            ledger.claims.len() != before
        });
    }

    /// The current verdict on `key` (admitted when it is unknown).
    pub fn verdict(&self, key: &ObjectKey) -> Verdict {
        if lock(&self.ledger).dirty {
            self.change(|_| false);
        }
        lock(&self.ledger)
            .verdicts
            .get(key)
            .cloned()
            .unwrap_or(Verdict::Admitted)
    }

    /// Apply `edit` to the claims; when it (or an earlier [`Budget::record`])
    /// changed them, recompute the verdicts and ask for a reconcile of every
    /// object whose verdict moved.
    fn change(&self, edit: impl FnOnce(&mut Ledger) -> bool) {
        let moved: Vec<ObjectKey> = {
            let mut ledger = lock(&self.ledger);
            let edited = edit(&mut ledger);
            if !edited && !ledger.dirty {
                return;
            }
            ledger.dirty = false;
            let verdicts = admit(&ledger.claims, &self.limits);
            let moved = verdicts
                .iter()
                .filter(|(k, v)| ledger.verdicts.get(*k).is_some_and(|old| old != *v))
                .map(|(k, _)| k.clone())
                .collect();
            ledger.verdicts = verdicts;
            moved
        };
        let subscribers = lock(&self.subscribers);
        for key in moved {
            for s in subscribers.iter().filter(|s| {
                s.group == key.group && s.namespace.as_ref().is_none_or(|ns| *ns == key.namespace)
            }) {
                let r = ObjectRef::new_with(&key.name, s.resource.clone()).within(&key.namespace);
                let _ = s.trigger.send(r);
            }
        }
    }
}

/// A lock that survives a panic elsewhere: the ledger is rebuilt from the
/// claims on every change, so a poisoned one is still consistent.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
#[path = "budget_tests.rs"]
mod tests;
