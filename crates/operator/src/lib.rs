//! The operator runtime: certwright in a Kubernetes cluster. kube-rs controllers watch the
//! `cert-manager.io/v1` resources and share one context:
//! - `certificates`: asks the engine what to do with each Certificate, writes its Secret
//!   whole, records the issuance as a CertificateRequest, patches status; renewal is
//!   scheduled from the renewal time, not polled;
//! - `issuers`: Issuer and ClusterIssuer Ready conditions (can this issuer sign?);
//! - `requests`: signs CertificateRequests that others create.
//!
//! Only the Secrets certwright manages (label `controller.cert-manager.io/fao=true`) are
//! watched, so memory does not grow with unrelated Secrets; others (CA key pairs,
//! keystore passwords) are read one by one when needed. `leader` holds the Lease that lets
//! one replica reconcile; `observe` serves metrics and health.

mod certificates;
mod issuers;
pub mod leader;
mod lookup;
pub mod observe;
mod requests;

use certwright_api::{annotations as ann, API_VERSION, GROUP};
use certwright_engine::SecretData;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, ResourceExt};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Annotation on issued Secrets: the issuance the certificate came from, so a later spec
/// can be compared with what was asked.
pub use certwright_api::annotations::LAST_ISSUANCE;

fn ar(kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: GROUP.into(),
        version: "v1".into(),
        api_version: API_VERSION.into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

pub fn certificates() -> ApiResource {
    ar("Certificate", "certificates")
}
pub fn certificate_requests() -> ApiResource {
    ar("CertificateRequest", "certificaterequests")
}
pub fn issuers() -> ApiResource {
    ar("Issuer", "issuers")
}
pub fn cluster_issuers() -> ApiResource {
    ar("ClusterIssuer", "clusterissuers")
}

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
}

/// An issuerRef as metric labels: (name, kind, group).
type IssuerLabels = (String, String, String);

/// Shared state of the controller.
pub struct Context {
    client: Client,
    config: Config,
    /// Certificates waiting for their issuer (a CA Secret, for instance): any managed
    /// Secret change wakes them, so a CA issued a moment ago unblocks them at once.
    waiting: Arc<Mutex<HashSet<(String, String)>>>,
    metrics: Arc<observe::Metrics>,
    recorder: kube::runtime::events::Recorder,
    /// issuerRef (name, kind, group) per Certificate, for metric labels.
    issuer_labels: Mutex<HashMap<(String, String), IssuerLabels>>,
    /// Which issuers sign with which CA Secret.
    ca_index: issuers::CaIndex,
    /// CertificateRequests waiting for their issuer: an issuer change wakes them.
    pending_requests: Arc<Mutex<HashSet<(String, String)>>>,
    /// The resourceVersion of each Secret as this controller last wrote it, so that the
    /// watch event of its own write does not trigger another reconcile.
    own_writes: Arc<Mutex<HashMap<(String, String), String>>>,
}

impl Context {
    /// Drops what is kept about a Certificate that no longer exists.
    fn forget(&self, ns: &str, name: &str) {
        let key = (ns.to_string(), name.to_string());
        self.metrics.forget(ns, name);
        if let Ok(mut m) = self.issuer_labels.lock() {
            m.remove(&key);
        }
        if let Ok(mut m) = self.waiting.lock() {
            m.remove(&key);
        }
    }
}

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

pub(crate) fn typed<T: serde::de::DeserializeOwned>(obj: &DynamicObject) -> Result<T, String> {
    let v = serde_json::to_value(obj).map_err(|e| e.to_string())?;
    serde_json::from_value(v).map_err(|e| e.to_string())
}

pub(crate) fn secret_data(s: &Secret) -> SecretData {
    SecretData {
        type_: s.type_.clone(),
        data: s
            .data
            .as_ref()
            .map(|d| d.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect())
            .unwrap_or_default(),
        annotations: s.metadata.annotations.clone().unwrap_or_default(),
        labels: s.metadata.labels.clone().unwrap_or_default(),
    }
}

use kube::runtime::events::{Event, EventType};

/// Records a Kubernetes Event on an object; failing to record one is logged, not fatal.
pub(crate) async fn event(
    ctx: &Context,
    obj: &DynamicObject,
    resource: &ApiResource,
    type_: EventType,
    reason: &str,
    note: &str,
    action: &str,
) {
    let reference = kube::Resource::object_ref(obj, resource);
    let ev = Event {
        type_,
        reason: reason.into(),
        note: Some(note.chars().take(1000).collect()),
        action: action.into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &reference).await {
        tracing::warn!(error = %e, "cannot record event");
    }
}

/// True when the API refused a write because the object changed since it was read.
pub(crate) fn is_conflict(err: &Error) -> bool {
    matches!(err, Error::Kube(kube::Error::Api(e)) if e.code == 409)
}

/// What every controller does with an error: a conflict (someone else wrote the object
/// since it was read) is retried at once from a fresh read, as every reconcile reads
/// before it writes; other errors are retried after a short pause.
fn error_policy(obj: Arc<DynamicObject>, err: &Error, ctx: Arc<Context>) -> Action {
    let kind = obj
        .types
        .as_ref()
        .map(|t| t.kind.clone())
        .unwrap_or_else(|| "object".into());
    let id = match obj.namespace() {
        Some(ns) => format!("{ns}/{}", obj.name_any()),
        None => obj.name_any(),
    };
    if is_conflict(err) {
        ctx.metrics.conflicts.fetch_add(1, Ordering::Relaxed);
        tracing::info!(kind = %kind, object = %id, "write conflict, retrying from a fresh read");
        return Action::requeue(Duration::from_millis(100));
    }
    ctx.metrics.reconcile_errors.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(kind = %kind, object = %id, error = %err, "reconcile failed, retrying");
    Action::requeue(Duration::from_secs(2))
}

/// What the watch caches keep of a Certificate or CertificateRequest: name, namespace,
/// UID, generation, labels and annotations. Every reconcile reads its object fresh, so
/// the spec, status and managedFields would only take memory (a CertificateRequest holds
/// a CSR and a certificate chain).
fn metadata_only(obj: &mut DynamicObject) {
    obj.data = serde_json::Value::Null;
    obj.metadata.managed_fields = None;
}

/// The cache-only annotation holding when a manual renewal was asked for (see
/// [`note_manual_trigger`]); it never reaches the API server.
const MANUAL_TRIGGER_SEEN: &str = "certwright.io/cached-manual-trigger";

/// Keeps, in the cached copy of a Certificate, when `cmctl renew` (or `certwright renew`)
/// set its Issuing condition to ManuallyTriggered, before the status is dropped from the
/// cache: that change is a status change, which the spec filter would otherwise ignore.
fn note_manual_trigger(obj: &mut DynamicObject) {
    let manual = obj.data["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| {
            c["type"] == "Issuing"
                && c["status"] == "True"
                && c["reason"] == ann::MANUALLY_TRIGGERED
        })
        .map(|c| {
            c["lastTransitionTime"]
                .as_str()
                .unwrap_or("set")
                .to_string()
        });
    if let Some(at) = manual {
        obj.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(MANUAL_TRIGGER_SEEN.into(), at);
    }
}

/// What wakes a Certificate: a new generation (spec change) or a new manual renewal.
fn spec_or_renewal(obj: &DynamicObject) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    obj.metadata.generation.hash(&mut h);
    obj.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(MANUAL_TRIGGER_SEEN))
        .hash(&mut h);
    Some(h.finish())
}

/// Adds watches of Issuers (and, when all namespaces are watched, ClusterIssuers) to the
/// controller of `target`: an issuer that appears or changes (its status becoming Ready,
/// say) wakes the objects in `waiting`. Watching one namespace, ClusterIssuers are not
/// watched (a namespaced installation may not be allowed to list them; objects still use
/// them by name, and retry).
fn wake_on_issuers(
    controller: Controller<DynamicObject>,
    ctx: &Context,
    issuers_api: &Api<DynamicObject>,
    waiting: &Arc<Mutex<HashSet<(String, String)>>>,
    target: ApiResource,
) -> Controller<DynamicObject> {
    let mapper = |waiting: Arc<Mutex<HashSet<(String, String)>>>, target: ApiResource| {
        move |_: DynamicObject| waiting_refs(&waiting, &target)
    };
    let c = controller.watches_with(
        issuers_api.clone(),
        issuers(),
        watcher::Config::default(),
        mapper(waiting.clone(), target.clone()),
    );
    if ctx.config.namespace.is_some() {
        return c;
    }
    c.watches_with(
        Api::all_with(ctx.client.clone(), &cluster_issuers()),
        cluster_issuers(),
        watcher::Config::default(),
        mapper(waiting.clone(), target),
    )
}

/// Objects (Certificates or CertificateRequests) waiting for their issuer, to be woken
/// by an issuer or Secret change.
fn waiting_refs(
    waiting: &Mutex<HashSet<(String, String)>>,
    resource: &ApiResource,
) -> Vec<ObjectRef<DynamicObject>> {
    waiting
        .lock()
        .map(|w| {
            w.iter()
                .map(|(ns, name)| ObjectRef::new_with(name, resource.clone()).within(ns))
                .collect()
        })
        .unwrap_or_default()
}

/// Runs the controllers until `shutdown` resolves.
pub async fn run(
    client: Client,
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let certs: Api<DynamicObject> = match &config.namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &certificates()),
        None => Api::all_with(client.clone(), &certificates()),
    };
    let secrets: Api<Secret> = match &config.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let issuers_api: Api<DynamicObject> = match &config.namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &issuers()),
        None => Api::all_with(client.clone(), &issuers()),
    };
    let requests_api: Api<DynamicObject> = match &config.namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &certificate_requests()),
        None => Api::all_with(client.clone(), &certificate_requests()),
    };
    let waiting = Arc::new(Mutex::new(HashSet::new()));
    let pending_requests = Arc::new(Mutex::new(HashSet::new()));
    let metrics = Arc::new(observe::Metrics::default());
    if let Some(addr) = config.metrics_address {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| Error::Other(format!("metrics address {addr}: {e}")))?;
        tracing::info!(address = %addr, "serving metrics and health");
        tokio::spawn(observe::serve(listener, metrics.clone()));
    }
    client.apiserver_version().await?;
    metrics
        .ready
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let mut shutdown = Box::pin(shutdown);
    let lost = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let lease = config.leader_election.clone();
    let stop: futures::future::BoxFuture<'static, ()> = match &lease {
        None => Box::pin(shutdown),
        Some(cfg) => {
            tracing::info!(lease = %format!("{}/{}", cfg.namespace, cfg.name), identity = %cfg.identity, "waiting for leadership");
            tokio::select! {
                _ = leader::acquire(&client, cfg) => {}
                _ = &mut shutdown => {
                    tracing::info!("operator stopped before becoming leader");
                    return Ok(());
                }
            }
            tracing::info!(identity = %cfg.identity, "became leader");
            let holding = leader::hold(client.clone(), cfg.clone());
            let lost = lost.clone();
            Box::pin(async move {
                tokio::select! {
                    _ = shutdown => {}
                    _ = holding => { lost.store(true, std::sync::atomic::Ordering::Relaxed); }
                }
            })
        }
    };
    // The controller wants a Sync shutdown trigger: relay the stop through a channel.
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        stop.await;
        let _ = stop_tx.send(());
    });
    let recorder = kube::runtime::events::Recorder::new(
        client.clone(),
        kube::runtime::events::Reporter {
            controller: "certwright".into(),
            instance: Some(config.instance.clone()),
        },
    );
    let ctx_client = client.clone();
    let ctx = Arc::new(Context {
        client,
        config,
        waiting: waiting.clone(),
        metrics,
        recorder,
        issuer_labels: Mutex::new(HashMap::new()),
        ca_index: Default::default(),
        pending_requests: pending_requests.clone(),
        own_writes: Default::default(),
    });
    tracing::info!("operator starting");
    let stopped = futures::future::FutureExt::shared(Box::pin(async move {
        let _ = stop_rx.await;
    }));
    // Only certwright's own Secrets are watched (by label), so memory does not grow with
    // unrelated Secrets; a change to one re-reconciles its Certificate.
    let managed = watcher::Config::default().labels(&format!("{}=true", ann::CONTROLLED_LABEL));
    let limits = kube::runtime::controller::Config::default()
        .concurrency(ctx.config.max_concurrent_reconciles.max(1));
    // Certificates are reconciled when their spec changes (a new generation), not on
    // status updates: most of those are this controller's own.
    let writer = kube::runtime::reflector::store::Writer::new(certificates());
    let reader = writer.as_reader();
    let forget_ctx = ctx.clone();
    let spec_changes = watcher(certs, watcher::Config::default())
        .default_backoff()
        .modify(|c| {
            note_manual_trigger(c);
            metadata_only(c)
        })
        .reflect(writer)
        // A deleted Certificate leaves no metrics or bookkeeping behind.
        .inspect_ok(move |ev| {
            if let watcher::Event::Delete(c) = ev {
                forget_ctx.forget(&c.namespace().unwrap_or_default(), &c.name_any());
            }
        })
        .applied_objects()
        .predicate_filter(spec_or_renewal, Default::default());
    let own_writes = ctx.own_writes.clone();
    let certificates_controller = Controller::for_stream_with(spec_changes, reader, certificates())
        .with_config(limits.clone())
        .watches(secrets.clone(), managed.clone(), move |s: Secret| {
            let ns = s.namespace().unwrap_or_default();
            // A Secret as this controller just wrote it needs no second look at its
            // Certificate; any other change to it (an edit, a deletion) does.
            let key = (ns.clone(), s.name_any());
            let own = s.metadata.resource_version.as_ref().is_some_and(|rv| {
                own_writes
                    .lock()
                    .is_ok_and(|mut w| w.get(&key) == Some(rv) && w.remove(&key).is_some())
            });
            let mut refs: Vec<ObjectRef<DynamicObject>> = s
                .annotations()
                .get(ann::CERT_NAME)
                .filter(|_| !own)
                .map(|name| ObjectRef::new_with(name, certificates()).within(&ns))
                .into_iter()
                .collect();
            refs.extend(waiting_refs(&waiting, &certificates()));
            refs
        });
    let certificates_done = wake_on_issuers(
        certificates_controller,
        &ctx,
        &issuers_api,
        &ctx.waiting,
        certificates(),
    )
    .graceful_shutdown_on(stopped.clone())
    .run(certificates::reconcile, error_policy, ctx.clone())
    .for_each(|_| futures::future::ready(()));
    let issuers_done = issuers::controller(
        issuers_api.clone(),
        issuers(),
        secrets.clone(),
        managed.clone(),
        ctx.clone(),
    )
    .with_config(limits.clone())
    .graceful_shutdown_on(stopped.clone())
    .run(issuers::reconcile, error_policy, ctx.clone())
    .for_each(|_| futures::future::ready(()));
    let cluster_issuers_done = async {
        if ctx.config.namespace.is_none() {
            issuers::controller(
                Api::all_with(ctx.client.clone(), &cluster_issuers()),
                cluster_issuers(),
                secrets.clone(),
                managed.clone(),
                ctx.clone(),
            )
            .with_config(limits.clone())
            .graceful_shutdown_on(stopped.clone())
            .run(issuers::reconcile, error_policy, ctx.clone())
            .for_each(|_| futures::future::ready(()))
            .await;
        }
    };
    // Requests that certwright records itself are not watched (they are complete when
    // written); of the others, only metadata is kept (each reconcile reads its request).
    let writer = kube::runtime::reflector::store::Writer::new(certificate_requests());
    let reader = writer.as_reader();
    let others_requests = watcher(
        requests_api,
        watcher::Config::default().labels(&format!(
            "{}!={}",
            requests::MANAGED_BY.0,
            requests::MANAGED_BY.1
        )),
    )
    .default_backoff()
    .modify(metadata_only)
    .reflect(writer)
    .applied_objects();
    let requests_controller =
        Controller::for_stream_with(others_requests, reader, certificate_requests())
            .with_config(limits.clone());
    let requests_done = wake_on_issuers(
        requests_controller,
        &ctx,
        &issuers_api,
        &ctx.pending_requests,
        certificate_requests(),
    )
    .graceful_shutdown_on(stopped.clone())
    .run(requests::reconcile, error_policy, ctx.clone())
    .for_each(|_| futures::future::ready(()));
    futures::join!(
        certificates_done,
        issuers_done,
        cluster_issuers_done,
        requests_done
    );
    if lost.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(Error::Other(
            "leadership lost; stopping so that one replica reconciles".into(),
        ));
    }
    if let Some(cfg) = &lease {
        leader::release(&ctx_client, cfg).await;
    }
    tracing::info!("operator stopped");
    Ok(())
}
