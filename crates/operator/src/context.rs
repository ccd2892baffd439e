//! What the controllers share: settings, the context, errors and how they are retried.

use kube::runtime::controller::Action;
use kube::{Client, Resource, ResourceExt};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::{issuers, leader, observe};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Other(String),
}

/// Operator settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Namespace of ClusterIssuers' secrets.
    pub cluster_resource_namespace: String,
    /// Watch one namespace only (None: all).
    pub namespace: Option<String>,
    /// Where `/metrics`, `/healthz` and `/readyz` are served (None: nowhere).
    pub metrics_address: Option<std::net::SocketAddr>,
    /// This replica's name in Events and in the Lease (the pod name in a cluster).
    pub instance: String,
    /// Leader election: reconcile only while holding this Lease (None: always).
    pub leader_election: Option<leader::LeaseConfig>,
    /// Reconciles in flight per controller (at least 1). A bound keeps memory flat when
    /// thousands of objects need work at once (a start with a backlog).
    pub max_concurrent_reconciles: u16,
    /// Honour Issuers' `certwright.io/test-issuer` annotation (tests only; no flag).
    pub test_issuers: bool,
    /// ACME settings (orders per hour, DNS-01 nameservers and propagation timeout).
    pub acme: certwright_acme::Config,
    /// Where every replica serves HTTP-01 tokens (None: nowhere; HTTP-01 cannot work).
    pub acme_http01_address: Option<std::net::SocketAddr>,
    /// The operator's own Service in front of that address (namespace, name): the solver
    /// Services in Certificates' namespaces get its ready addresses.
    pub acme_http01_service: Option<(String, String)>,
    /// The admission webhooks every replica serves (None: not served).
    pub webhook: Option<crate::webhook::WebhookConfig>,
    /// What the operator does besides cert-manager's work (`--enable`).
    pub capabilities: Capabilities,
    /// How workloads are rolled out when what they follow changes.
    pub rollouts: RolloutConfig,
}

/// How workloads are rolled out (Reloader's annotations).
#[derive(Debug, Clone, Copy)]
pub struct RolloutConfig {
    /// How a rollout is made (Reloader's `--reload-strategy`).
    pub strategy: certwright_engine::rollout::Strategy,
    /// How long after a change is first seen the workload is rolled out, taking every
    /// change made meanwhile with it (several writes, one rollout).
    pub debounce: Duration,
    /// Rollouts per minute, over all workloads (0: no limit).
    pub per_minute: u32,
    /// How long a workload whose pods are not yet updated from its previous rollout is
    /// left alone before it is rolled out again anyway.
    pub wait: Duration,
}

impl Default for RolloutConfig {
    fn default() -> Self {
        RolloutConfig {
            strategy: Default::default(),
            debounce: Duration::from_secs(5),
            per_minute: 60,
            wait: Duration::from_secs(600),
        }
    }
}

/// The capabilities `--enable` turns on; cert-manager's own work (Certificates, issuers,
/// CertificateRequests, ACME) is always on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// cert-utils' keystores, truststores and certificate info on annotated Secrets and
    /// ConfigMaps that no Certificate writes.
    pub keystores: bool,
    /// cert-utils' Route annotations.
    pub routes: bool,
    /// CA injection.
    pub cainjector: bool,
    /// cert-manager's ingress-shim: Certificates for annotated Ingresses.
    pub shims: bool,
    /// Reloader's annotations: rollouts of the workloads following a changed Secret or
    /// ConfigMap.
    pub reloader: bool,
}

impl Capabilities {
    pub const NAMES: [&'static str; 5] = ["cainjector", "keystores", "reloader", "routes", "shims"];

    pub fn all() -> Capabilities {
        Capabilities {
            keystores: true,
            routes: true,
            cainjector: true,
            shims: true,
            reloader: true,
        }
    }

    /// A comma-separated list of [`Self::NAMES`] (empty: none).
    pub fn parse(list: &str) -> Result<Capabilities, String> {
        let mut c = Capabilities {
            keystores: false,
            routes: false,
            cainjector: false,
            shims: false,
            reloader: false,
        };
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name {
                "keystores" => c.keystores = true,
                "routes" => c.routes = true,
                "cainjector" => c.cainjector = true,
                "shims" => c.shims = true,
                "reloader" => c.reloader = true,
                other => {
                    return Err(format!(
                        "unknown capability {other:?}: use {}",
                        Self::NAMES.join(", ")
                    ))
                }
            }
        }
        Ok(c)
    }
}

/// An issuerRef as metric labels: (name, kind, group).
pub(crate) type IssuerLabels = (String, String, String);

/// Shared state of the controller.
pub struct Context {
    pub(crate) client: Client,
    pub(crate) config: Config,
    /// Certificates waiting for their issuer (a CA Secret, for instance): any managed
    /// Secret change wakes them, so a CA issued a moment ago unblocks them at once.
    pub(crate) waiting: Arc<Mutex<HashSet<(String, String)>>>,
    pub(crate) metrics: Arc<observe::Metrics>,
    pub(crate) recorder: crate::events::Recorder,
    /// issuerRef (name, kind, group) per Certificate, for metric labels.
    pub(crate) issuer_labels: Mutex<HashMap<(String, String), IssuerLabels>>,
    /// Which issuers sign with which CA Secret.
    pub(crate) ca_index: issuers::CaIndex,
    /// CertificateRequests waiting for their issuer: an issuer change wakes them.
    pub(crate) pending_requests: Arc<Mutex<HashSet<(String, String)>>>,
    /// The resourceVersion of each Secret as this controller last wrote it, so that the
    /// watch event of its own write does not trigger another reconcile.
    pub(crate) own_writes: Arc<Mutex<HashMap<(String, String), String>>>,
    /// Failures per object, for the error policy's backoff.
    pub(crate) retries: Retries,
    /// Workloads with a change to roll out, and the rate limiter they share.
    pub(crate) rollouts: crate::rollouts::Rollouts,
    /// The ACME service: accounts, orders in flight, HTTP-01 tokens.
    pub(crate) acme: certwright_acme::Service,
}

impl Context {
    /// Drops what is kept about a Certificate that no longer exists.
    pub(crate) fn forget(&self, ns: &str, name: &str) {
        let key = (ns.to_string(), name.to_string());
        self.metrics.forget(ns, name);
        if let Ok(mut m) = self.issuer_labels.lock() {
            m.remove(&key);
        }
        if let Ok(mut m) = self.waiting.lock() {
            m.remove(&key);
        }
        self.retries.succeeded(&format!("Certificate {ns}/{name}"));
    }
}

/// True when the API refused a write because the object changed since it was read.
pub(crate) fn is_conflict(err: &Error) -> bool {
    matches!(err, Error::Kube(kube::Error::Api(e)) if e.code == 409)
}

/// Failed reconciliations per object, for an exponential backoff per object: one broken
/// object is retried less and less often, and does not slow the others down.
#[derive(Default)]
pub(crate) struct Retries(Mutex<HashMap<String, u32>>);

/// The first retry's pause; each further failure doubles it, up to [`MAX_RETRY`].
pub(crate) const FIRST_RETRY: Duration = Duration::from_secs(1);
/// The longest pause between two retries of one object.
pub(crate) const MAX_RETRY: Duration = Duration::from_secs(300);

impl Retries {
    /// Counts one more failure of `key` and says how long to wait before the next try.
    pub(crate) fn failed(&self, key: &str) -> Duration {
        let n = self
            .0
            .lock()
            .map(|mut m| {
                let n = m.entry(key.to_string()).or_insert(0);
                *n = n.saturating_add(1);
                *n
            })
            .unwrap_or(1);
        FIRST_RETRY
            .saturating_mul(1u32 << (n - 1).min(16))
            .min(MAX_RETRY)
    }

    /// Forgets the failures of `key` (it reconciled, or it is gone).
    pub(crate) fn succeeded(&self, key: &str) {
        if let Ok(mut m) = self.0.lock() {
            m.remove(key);
        }
    }
}

/// How an object is named in logs: its kind, and namespace/name (or name).
fn object_id<K: Resource<DynamicType = ()>>(obj: &K) -> (String, String) {
    let kind = K::kind(&()).into_owned();
    let id = match obj.namespace() {
        Some(ns) => format!("{ns}/{}", obj.name_any()),
        None => obj.name_any(),
    };
    (kind, id)
}

/// An object's key in [`Retries`].
fn object_key<K: Resource<DynamicType = ()>>(obj: &K) -> String {
    let (kind, id) = object_id(obj);
    format!("{kind} {id}")
}

/// Runs one reconcile and, when it succeeds, forgets the object's earlier failures.
pub(crate) async fn tracked<K, F, Fut>(
    reconcile: F,
    obj: Arc<K>,
    ctx: Arc<Context>,
) -> Result<Action, Error>
where
    K: Resource<DynamicType = ()>,
    F: FnOnce(Arc<K>, Arc<Context>) -> Fut,
    Fut: std::future::Future<Output = Result<Action, Error>>,
{
    let key = object_key(obj.as_ref());
    let result = reconcile(obj, ctx.clone()).await;
    if result.is_ok() {
        ctx.retries.succeeded(&key);
    }
    result
}

/// What every controller does with an error: a conflict (someone else wrote the object
/// since it was read) is retried at once from a fresh read, as every reconcile reads
/// before it writes; other errors are retried after a pause that doubles with each
/// failure of that object (1 s, 2 s, 4 s … 5 min), reset by its next success.
pub(crate) fn error_policy<K: Resource<DynamicType = ()>>(
    obj: Arc<K>,
    err: &Error,
    ctx: Arc<Context>,
) -> Action {
    let (kind, id) = object_id(obj.as_ref());
    if is_conflict(err) {
        ctx.metrics.conflicts.inc();
        tracing::info!(kind = %kind, object = %id, "write conflict, retrying from a fresh read");
        return Action::requeue(Duration::from_millis(100));
    }
    ctx.metrics.reconcile_errors.inc();
    let pause = ctx.retries.failed(&object_key(obj.as_ref()));
    tracing::warn!(kind = %kind, object = %id, error = %err, retry_in_s = pause.as_secs(), "reconcile failed, retrying");
    Action::requeue(pause)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_parse_and_name_the_unknown() {
        assert_eq!(
            Capabilities::parse("cainjector,keystores,reloader,routes,shims").expect("all"),
            Capabilities::all()
        );
        let some = Capabilities::parse(" routes ,").expect("one");
        assert!(some.routes && !some.keystores && !some.cainjector);
        let none = Capabilities::parse("").expect("none");
        assert!(!none.routes && !none.keystores && !none.cainjector);
        let e = Capabilities::parse("routes,reloaderz").expect_err("unknown");
        assert!(
            e.contains("\"reloaderz\"")
                && e.contains("cainjector, keystores, reloader, routes, shims"),
            "{e}"
        );
    }

    #[test]
    fn each_object_backs_off_on_its_own() {
        let r = Retries::default();
        let pauses: Vec<u64> = (0..12).map(|_| r.failed("a").as_secs()).collect();
        assert_eq!(pauses, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(r.failed("b"), FIRST_RETRY, "another object starts afresh");
        r.succeeded("a");
        assert_eq!(r.failed("a"), FIRST_RETRY, "a success resets the backoff");
    }
}
