//! Rollouts of Deployments, StatefulSets and DaemonSets annotated as Stakater Reloader
//! reads them, when a Secret or ConfigMap they follow changes. What a workload follows,
//! whether it changed and the patch that rolls it out are the engine's
//! (`certwright_engine::rollout`); this controller decides when:
//!
//! - **Changes, not events.** A workload carries a record of the hash of each resource
//!   it follows (a metadata annotation, so writing it rolls nothing; Reloader's own env
//!   var or annotation counts too). A rollout happens only when a hash read now differs
//!   from the record, so a metadata-only change, or the operator's restart, rolls nothing,
//!   and a change made while the operator was down is rolled once it is back.
//! - **One rollout per change.** The first time a change is seen, the workload waits
//!   `debounce`; the rollout then takes everything written meanwhile (a Certificate's
//!   Secret and the keystores or other Secrets renewed with it) in one patch.
//! - **Not again too soon.** A workload whose pods are not updated from its previous
//!   rollout (its status) waits for them, at most `wait`.
//! - **A global rate.** Rollouts take turns, `per_minute` over all workloads; the turns
//!   waited for are the `certwright_rollouts_backlog` metric.
//!
//! Workloads are watched whole but only annotated ones are kept (as in `annotated`);
//! Secret and ConfigMap changes come from the metadata feeds, and are mapped to the kept
//! workloads of their namespace that may follow them.

use crate::annotated::{listing, only_wanted, slim_metadata, Feed, Objects};
use crate::context::{Context, Error};
use crate::kinds::Watched;
use crate::resources::{event, now};
use certwright_engine::rollout::{
    self, configmap_hash, pods_updated, secret_hash, Observed, ResourceKind, ResourceRef, Workload,
};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::core::{NamespaceResourceScope, PartialObjectMeta};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, ResourceExt};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A kind of workload that rollouts apply to.
pub(crate) trait WorkloadKind:
    Watched + serde::Serialize + kube::Resource<Scope = NamespaceResourceScope>
{
    const KIND: &'static str;
    fn template_annotations(&self) -> Option<&BTreeMap<String, String>>;
}

macro_rules! workload_kind {
    ($t:ty, $name:literal) => {
        impl WorkloadKind for $t {
            const KIND: &'static str = $name;
            fn template_annotations(&self) -> Option<&BTreeMap<String, String>> {
                self.spec
                    .as_ref()?
                    .template
                    .metadata
                    .as_ref()?
                    .annotations
                    .as_ref()
            }
        }
    };
}
workload_kind!(Deployment, "Deployment");
workload_kind!(StatefulSet, "StatefulSet");
workload_kind!(DaemonSet, "DaemonSet");

fn wanted<K: WorkloadKind>(o: &K) -> bool {
    let empty = BTreeMap::new();
    rollout::asks(o.annotations()) || rollout::asks(o.template_annotations().unwrap_or(&empty))
}

/// (kind, namespace, name)
type Key = (&'static str, String, String);

/// Workloads with a change to roll out, and the turns the rate limit gives them.
#[derive(Default)]
pub(crate) struct Rollouts {
    /// When a change was first seen, per workload not yet rolled out.
    pending: Mutex<HashMap<Key, Instant>>,
    turns: Mutex<Turns>,
    /// The generation each workload's last rollout by this process made (the one whose
    /// pods must be updated before the next).
    rolled: Mutex<HashMap<Key, i64>>,
}

/// The rate limit: each workload that must roll out gets a turn, one every interval, in
/// the order they asked; and no rollout starts sooner than an interval after the last
/// one did (a reconcile that comes late to its turn does not bunch with the next).
#[derive(Default)]
struct Turns {
    next: Option<Instant>,
    given: HashMap<Key, Instant>,
    last: Option<Instant>,
}

impl Rollouts {
    fn gauges(&self, ctx: &Context) {
        let pending = self.pending.lock().map(|p| p.len()).unwrap_or(0);
        let now = Instant::now();
        let backlog = self
            .turns
            .lock()
            .map(|t| t.given.values().filter(|at| **at > now).count())
            .unwrap_or(0);
        ctx.metrics.rollouts_pending.set(pending as i64);
        ctx.metrics.rollouts_backlog.set(backlog as i64);
    }

    /// When the change to roll out was first seen (now, if this is the first time).
    fn seen(&self, key: &Key) -> Instant {
        self.pending
            .lock()
            .map(|mut p| *p.entry(key.clone()).or_insert_with(Instant::now))
            .unwrap_or_else(|_| Instant::now())
    }

    /// How long the workload waits for its turn under the rate limit (given once, kept
    /// until it is used); zero when it may roll out now, which counts as the last
    /// rollout started.
    fn turn(&self, key: &Key, interval: Duration) -> Duration {
        let now = Instant::now();
        let Ok(mut t) = self.turns.lock() else {
            return Duration::ZERO;
        };
        let at = match t.given.get(key) {
            Some(at) => *at,
            None => {
                let at = t.next.map_or(now, |n| n.max(now));
                t.next = Some(at + interval);
                t.given.insert(key.clone(), at);
                at
            }
        };
        // Its turn, but not before an interval has passed since the last rollout.
        let at = match t.last {
            Some(last) if last + interval > at => last + interval,
            _ => at,
        };
        if at > now {
            t.given.insert(key.clone(), at);
            if t.next.is_none_or(|n| n < at + interval) {
                t.next = Some(at + interval);
            }
            return at - now;
        }
        t.last = Some(now);
        Duration::ZERO
    }

    /// The workload has nothing (more) to roll out.
    fn forget(&self, key: &Key) {
        if let Ok(mut p) = self.pending.lock() {
            p.remove(key);
        }
        if let Ok(mut t) = self.turns.lock() {
            t.given.remove(key);
        }
    }
}

/// The kept workloads of one kind per namespace, as the engine reads them, to map a
/// changed Secret or ConfigMap to those that may follow it.
#[derive(Default)]
struct Index(Mutex<HashMap<String, HashMap<String, Workload>>>);

impl Index {
    fn apply<K: WorkloadKind>(&self, ev: &watcher::Event<K>) {
        let Ok(mut all) = self.0.lock() else { return };
        match ev {
            watcher::Event::Apply(o) | watcher::Event::InitApply(o) => {
                if let Ok(v) = serde_json::to_value(o) {
                    all.entry(o.namespace().unwrap_or_default())
                        .or_default()
                        .insert(o.name_any(), Workload::from_object(&v));
                }
            }
            watcher::Event::Delete(o) => {
                if let Some(ns) = all.get_mut(&o.namespace().unwrap_or_default()) {
                    ns.remove(&o.name_any());
                }
            }
            watcher::Event::Init => all.clear(),
            watcher::Event::InitDone => {}
        }
    }

    fn followers<K: WorkloadKind>(&self, ns: &str, r: &ResourceRef) -> Vec<ObjectRef<K>> {
        self.0
            .lock()
            .ok()
            .and_then(|all| {
                all.get(ns).map(|names| {
                    names
                        .iter()
                        .filter(|(_, w)| w.may_follow(r))
                        .map(|(name, _)| ObjectRef::new(name).within(ns))
                        .collect()
                })
            })
            .unwrap_or_default()
    }
}

/// Maps a feed's changes to the workloads of kind `K` that may follow them.
fn mapped<K: WorkloadKind, R: kube::Resource>(
    index: &Arc<Index>,
    kind: ResourceKind,
) -> impl Fn(PartialObjectMeta<R>) -> Vec<ObjectRef<K>> {
    let index = index.clone();
    move |o| {
        let r = ResourceRef {
            kind,
            name: o.name_any(),
        };
        index.followers::<K>(&o.namespace().unwrap_or_default(), &r)
    }
}

/// The controller of one kind of workload: its annotated objects, woken by their own
/// changes and by changes to the Secrets and ConfigMaps they may follow.
pub(crate) fn controller<K: WorkloadKind>(
    client: &Client,
    namespace: Option<&str>,
    secrets: &Feed<Secret>,
    configmaps: &Feed<ConfigMap>,
) -> Controller<K> {
    let api: Api<K> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let index = Arc::new(Index::default());
    let writer = Writer::<K>::new(());
    let reader = writer.as_reader();
    let indexing = index.clone();
    // Whole workloads are larger than metadata (a Deployment's JSON is a few KiB): smaller
    // pages keep what one page holds in memory small.
    let stream: Objects<K> = watcher(api, listing().page_size(20))
        .default_backoff()
        .try_filter_map(|ev| futures::future::ready(Ok(only_wanted(ev, wanted::<K>))))
        .modify(|o| slim_metadata(o.meta_mut()))
        .reflect(writer)
        .inspect_ok(move |ev| indexing.apply(ev))
        .applied_objects()
        .boxed();
    Controller::for_stream(stream, reader)
        .watches_stream(
            secrets.subscribe(),
            mapped::<K, Secret>(&index, ResourceKind::Secret),
        )
        .watches_stream(
            configmaps.subscribe(),
            mapped::<K, ConfigMap>(&index, ResourceKind::ConfigMap),
        )
}

fn bytes(map: Option<BTreeMap<String, k8s_openapi::ByteString>>) -> BTreeMap<String, Vec<u8>> {
    map.unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect()
}

/// A Secret's or ConfigMap's annotations and Reloader's hash of its data (None: it does
/// not exist).
async fn read(
    client: &Client,
    ns: &str,
    r: &ResourceRef,
) -> Result<Option<(BTreeMap<String, String>, String)>, Error> {
    let (annotations, hash) = match r.kind {
        ResourceKind::Secret => {
            let api = Api::<Secret>::namespaced(client.clone(), ns);
            let Some(s) = api.get_opt(&r.name).await? else {
                return Ok(None);
            };
            (s.metadata.annotations, secret_hash(&bytes(s.data)))
        }
        ResourceKind::ConfigMap => {
            let api = Api::<ConfigMap>::namespaced(client.clone(), ns);
            let Some(c) = api.get_opt(&r.name).await? else {
                return Ok(None);
            };
            let hash = configmap_hash(&c.data.unwrap_or_default(), &bytes(c.binary_data));
            (c.metadata.annotations, hash)
        }
    };
    Ok(Some((annotations.unwrap_or_default(), hash)))
}

/// The names of the objects of `api` (for reload-list patterns).
async fn names<K>(api: Api<K>) -> Result<Vec<String>, Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut out = Vec::new();
    let mut params = ListParams::default().limit(500);
    loop {
        let page = api.list_metadata(&params).await?;
        out.extend(page.items.iter().map(|m| m.name_any()));
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => return Ok(out),
        }
    }
}

/// What the workload follows now, read from the API server.
async fn observe(client: &Client, ns: &str, w: &Workload) -> Result<Vec<Observed>, Error> {
    let (mut candidates, pattern_kinds) = w.candidates();
    for kind in pattern_kinds {
        let all = match kind {
            ResourceKind::Secret => names(Api::<Secret>::namespaced(client.clone(), ns)).await?,
            ResourceKind::ConfigMap => {
                names(Api::<ConfigMap>::namespaced(client.clone(), ns)).await?
            }
        };
        for name in all {
            let r = ResourceRef { kind, name };
            if w.may_follow(&r) {
                candidates.insert(r);
            }
        }
    }
    let mut observed = Vec::new();
    for r in candidates {
        let Some((annotations, hash)) = read(client, ns, &r).await? else {
            continue;
        };
        if let Some(container) = w.follows(&r, &annotations) {
            observed.push(Observed {
                resource: r,
                hash,
                container,
            });
        }
    }
    Ok(observed)
}

pub(crate) async fn reconcile<K: WorkloadKind>(
    obj: Arc<K>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let ns = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let key: Key = (K::KIND, ns.clone(), name.clone());
    let rollouts = &ctx.rollouts;
    let done = |action: Action| {
        rollouts.forget(&key);
        rollouts.gauges(&ctx);
        Ok(action)
    };
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(current) = api.get_opt(&name).await? else {
        if let Ok(mut r) = rollouts.rolled.lock() {
            r.remove(&key);
        }
        return done(Action::await_change());
    };
    let value = serde_json::to_value(&current)
        .map_err(|e| Error::Other(format!("{} {ns}/{name}: {e}", K::KIND)))?;
    let w = Workload::from_object(&value);
    if !w.wants() {
        return done(Action::await_change());
    }
    for problem in w.problems() {
        event(
            &ctx,
            &current,
            EventType::Warning,
            "InvalidReloadList",
            &problem,
            "Reload",
        )
        .await;
    }
    let observed = observe(&ctx.client, &ns, &w).await?;
    let decision = w.decide(&observed);
    let rv = current.resource_version();
    let apply = |patch: serde_json::Value| {
        let mut patch = patch;
        // Written at the version read: a concurrent change makes it fail and retry.
        patch["metadata"]["resourceVersion"] = serde_json::json!(rv);
        patch
    };
    if decision.changed.is_empty() {
        if decision.record.is_some() {
            let patch = apply(w.patch(&decision, ctx.config.rollouts.strategy, &ns, now_ms()));
            api.patch(&name, &PatchParams::default(), &Patch::Strategic(&patch))
                .await?;
        }
        return done(Action::await_change());
    }
    let cfg = ctx.config.rollouts;
    let seen = rollouts.seen(&key);
    rollouts.gauges(&ctx);
    let id = format!("{}/{ns}/{name}", K::KIND);
    if seen.elapsed() < cfg.debounce {
        tracing::debug!(workload = %id, "change seen, waiting for the debounce");
        return Ok(Action::requeue(cfg.debounce - seen.elapsed()));
    }
    // Only a rollout of certwright's is waited for: the generation it made, or after a
    // restart (a rollout recorded on the workload, its generation unknown) the current
    // one. A workload it never rolled out has nothing of its in progress.
    let rolled_generation = rollouts
        .rolled
        .lock()
        .ok()
        .and_then(|r| r.get(&key).copied());
    let since = rolled_generation.or_else(|| {
        w.rolled_out_at()
            .map(|_| current.meta().generation.unwrap_or(0))
    });
    if since.is_some_and(|g| !pods_updated(K::KIND, &value, g)) {
        let waited = match w.rolled_out_at() {
            Some(at) => Duration::from_secs((now() - at).max(0) as u64),
            None => seen.elapsed(),
        };
        if waited < cfg.wait {
            tracing::debug!(workload = %id, waited_s = waited.as_secs(), "waiting for the previous rollout");
            // Its status changes wake it sooner.
            return Ok(Action::requeue(
                (cfg.wait - waited).min(Duration::from_secs(30)),
            ));
        }
    }
    let interval = match cfg.per_minute {
        0 => Duration::ZERO,
        n => Duration::from_secs(60) / n,
    };
    let wait = rollouts.turn(&key, interval);
    rollouts.gauges(&ctx);
    if !wait.is_zero() {
        tracing::debug!(workload = %id, turn_in_ms = wait.as_millis() as u64, "waiting for a turn");
        return Ok(Action::requeue(wait));
    }
    let patch = apply(w.patch(&decision, cfg.strategy, &ns, now_ms()));
    let rolled = api
        .patch(&name, &PatchParams::default(), &Patch::Strategic(&patch))
        .await?;
    if let Ok(mut r) = rollouts.rolled.lock() {
        r.insert(key.clone(), rolled.meta().generation.unwrap_or(0));
    }
    ctx.metrics.rollouts.inc();
    let changed: Vec<String> = decision
        .changed
        .iter()
        .map(|o| o.resource.to_string())
        .collect();
    tracing::info!(workload = %id, changed = ?changed, "rolled out");
    let note = format!("Rolled out: changed {}", changed.join(", "));
    event(
        &ctx,
        &current,
        EventType::Normal,
        "Reloaded",
        &note,
        "Reload",
    )
    .await;
    done(Action::await_change())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// The three controllers, until `stopped`.
pub(crate) async fn run(
    ctx: &Arc<Context>,
    secrets: &Feed<Secret>,
    configmaps: &Feed<ConfigMap>,
    stopped: &futures::future::Shared<futures::future::BoxFuture<'static, ()>>,
) {
    let client = &ctx.client;
    let ns = ctx.config.namespace.as_deref();
    futures::join!(
        crate::drive(
            controller::<Deployment>(client, ns, secrets, configmaps),
            reconcile::<Deployment>,
            ctx,
            stopped,
        ),
        crate::drive(
            controller::<StatefulSet>(client, ns, secrets, configmaps),
            reconcile::<StatefulSet>,
            ctx,
            stopped,
        ),
        crate::drive(
            controller::<DaemonSet>(client, ns, secrets, configmaps),
            reconcile::<DaemonSet>,
            ctx,
            stopped,
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turns_are_an_interval_apart_even_for_late_comers() {
        let r = Rollouts::default();
        let k = |n: &str| ("Deployment", "ns".to_string(), n.to_string());
        let i = Duration::from_millis(200);
        assert_eq!(
            r.turn(&k("a"), i),
            Duration::ZERO,
            "the first rolls at once"
        );
        let b = r.turn(&k("b"), i);
        assert!(b > Duration::from_millis(150) && b <= i, "{b:?}");
        let c = r.turn(&k("c"), i);
        assert!(c > Duration::from_millis(350), "{c:?}");
        // c comes after its turn and rolls; b, later still, must wait an interval more.
        std::thread::sleep(Duration::from_millis(450));
        assert_eq!(r.turn(&k("c"), i), Duration::ZERO);
        let b = r.turn(&k("b"), i);
        assert!(b > Duration::from_millis(150), "{b:?}");
        // No limit: never a wait.
        let r = Rollouts::default();
        for n in ["a", "b", "c"] {
            assert_eq!(r.turn(&k(n), Duration::ZERO), Duration::ZERO);
        }
    }
}
