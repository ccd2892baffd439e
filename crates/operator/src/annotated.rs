//! cert-utils-operator's annotations on Secrets and ConfigMaps that no Certificate writes:
//! keystores, truststores and certificate info (computed by
//! `certwright_engine::annotated`; a Certificate's own Secret gets them in its own write).
//!
//! Memory must not grow with the cluster's Secrets, and cert-utils' users annotate their
//! Secrets without labelling them, so no label selector can narrow the watch. The watches
//! here ask for metadata only, and only annotated objects reach the store: an
//! unannotated one passes through the stream and is dropped (a list comes in pages), and
//! one that loses its annotations is taken out of the store. A reconcile reads the one
//! object, asks the engine, and writes only when a key's content changed, with a replace
//! at the resourceVersion read (a concurrent writer makes it fail and it is retried from
//! a fresh read). A restart rewrites nothing: the same input gives the same content.

use crate::context::{Context, Error};
use crate::resources::{event, secret_data};
use certwright_api::annotations as ann;
use certwright_engine::annotated;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::ByteString;
use kube::api::{Api, PostParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::reflector::store::Writer;
use kube::runtime::{watcher, WatchStreamExt};
use kube::ResourceExt;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Keeps only the events of objects `wanted` says are ours to look at; an object that is
/// no longer wanted leaves the store as if deleted.
pub(crate) fn only_wanted<K>(
    ev: watcher::Event<K>,
    wanted: fn(&K) -> bool,
) -> Option<watcher::Event<K>> {
    match ev {
        watcher::Event::Apply(o) if !wanted(&o) => Some(watcher::Event::Delete(o)),
        watcher::Event::InitApply(o) if !wanted(&o) => None,
        other => Some(other),
    }
}

/// How the metadata-only watches list: in small pages, so that a cluster with many
/// objects they do not keep never has many of them in memory at once.
pub(crate) fn listing() -> watcher::Config {
    watcher::Config::default().page_size(100)
}

/// Drops what no consumer of a watched object's metadata reads: managedFields (often
/// most of it) and the last-applied annotation.
fn slim<K>(o: &mut PartialObjectMeta<K>) {
    slim_metadata(&mut o.metadata);
}

/// [`slim`] for any object's metadata.
pub(crate) fn slim_metadata(m: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) {
    m.managed_fields = None;
    if let Some(a) = m.annotations.as_mut() {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

/// The stream of a watch's objects.
pub(crate) type Objects<K> = futures::stream::BoxStream<'static, Result<K, watcher::Error>>;

/// A metadata watch of `api` whose store keeps only what `wanted` selects, and the stream
/// of the objects it applies (for `Controller::for_stream`).
pub(crate) fn kept<K>(
    api: Api<PartialObjectMeta<K>>,
    wanted: fn(&PartialObjectMeta<K>) -> bool,
) -> (
    kube::runtime::reflector::Store<PartialObjectMeta<K>>,
    Objects<PartialObjectMeta<K>>,
)
where
    K: crate::kinds::Watched,
    PartialObjectMeta<K>: crate::kinds::Watched,
{
    let writer = Writer::<PartialObjectMeta<K>>::new(());
    let reader = writer.as_reader();
    let stream = watcher(api, listing())
        .default_backoff()
        .try_filter_map(move |ev| futures::future::ready(Ok(only_wanted(ev, wanted))))
        .modify(slim)
        .reflect(writer)
        .applied_objects()
        .boxed();
    (reader, stream)
}

/// Every change to a Secret (or a ConfigMap), as metadata, nothing kept, from one watch
/// shared by every controller that maps such changes to the objects naming them (Routes,
/// each kind of CA injection target, each kind of workload): one list and watch of the
/// cluster's Secrets instead of one per controller. Consumers subscribe before
/// [`Feed::run`] starts; one that goes away is dropped.
pub(crate) struct Feed<K> {
    api: Api<PartialObjectMeta<K>>,
    consumers: std::sync::Mutex<Vec<Sender<PartialObjectMeta<K>>>>,
}

/// The feed of Secret changes.
pub(crate) type SecretFeed = Feed<Secret>;

type Sender<T> = tokio::sync::mpsc::Sender<T>;

/// Changes a consumer may have waiting: the feed waits for a slow consumer rather than
/// queue a whole listing for it (ten consumers of 10,000 Secrets would hold megabytes).
const FEED_BACKLOG: usize = 64;

impl<K> Feed<K>
where
    K: crate::kinds::Watched + kube::Resource<Scope = kube::core::NamespaceResourceScope>,
{
    pub(crate) fn new(client: &kube::Client, namespace: Option<&str>) -> Feed<K> {
        let api = match namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        Feed {
            api,
            consumers: std::sync::Mutex::default(),
        }
    }

    /// A stream of every change from now on, for one more consumer.
    pub(crate) fn subscribe(&self) -> Objects<PartialObjectMeta<K>> {
        let (tx, rx) = tokio::sync::mpsc::channel(FEED_BACKLOG);
        if let Ok(mut c) = self.consumers.lock() {
            c.push(tx);
        }
        futures::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|s| (Ok(s), rx)) },
        )
        .boxed()
    }

    /// Runs the one watch (with the watcher's own backoff) for as long as it is polled.
    pub(crate) async fn run(&self) {
        let mut changes = watcher(self.api.clone(), listing())
            .default_backoff()
            .touched_objects()
            .boxed();
        while let Some(change) = changes.next().await {
            let Ok(object) = change else { continue };
            // Consumers read the name, the namespace and the certificate-name annotation.
            let cert = object
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(ann::CERT_NAME).cloned());
            let object = PartialObjectMeta::<K> {
                types: object.types,
                metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                    name: object.metadata.name,
                    namespace: object.metadata.namespace,
                    annotations: cert.map(|c| {
                        std::collections::BTreeMap::from([(ann::CERT_NAME.to_string(), c)])
                    }),
                    ..Default::default()
                },
                _phantom: Default::default(),
            };
            let consumers: Vec<_> = match self.consumers.lock() {
                Ok(c) => c.clone(),
                Err(_) => continue,
            };
            let mut gone = false;
            for c in &consumers {
                gone |= c.send(object.clone()).await.is_err();
            }
            if gone {
                if let Ok(mut c) = self.consumers.lock() {
                    c.retain(|c| !c.is_closed());
                }
            }
        }
    }
}

/// A controller over the metadata of the objects `wanted` selects.
fn controller_for<K>(
    client: &kube::Client,
    namespace: Option<&str>,
    wanted: fn(&PartialObjectMeta<K>) -> bool,
) -> Controller<PartialObjectMeta<K>>
where
    K: crate::kinds::Watched + kube::Resource<Scope = kube::core::NamespaceResourceScope>,
{
    // An Api of PartialObjectMeta lists and watches metadata only.
    let api: Api<PartialObjectMeta<K>> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let (reader, stream) = kept(api, wanted);
    Controller::for_stream(stream, reader)
}

fn secret_wanted(m: &PartialObjectMeta<Secret>) -> bool {
    // A Certificate's own Secret gets the outputs in the Certificate's write; the expiry
    // alert is for any Secret.
    let managed = m
        .labels()
        .get(ann::CONTROLLED_LABEL)
        .is_some_and(|v| v == "true");
    let a = m.annotations();
    (!managed && annotated::secret_wants_outputs(a))
        || a.contains_key(ann::CU_GENERATE_CERT_EXPIRY_ALERT)
}

fn configmap_wanted(m: &PartialObjectMeta<ConfigMap>) -> bool {
    annotated::configmap_wants_truststore(m.annotations())
}

pub(crate) fn secrets_controller(
    client: &kube::Client,
    namespace: Option<&str>,
) -> Controller<PartialObjectMeta<Secret>> {
    controller_for(client, namespace, secret_wanted)
}

pub(crate) fn configmaps_controller(
    client: &kube::Client,
    namespace: Option<&str>,
) -> Controller<PartialObjectMeta<ConfigMap>> {
    controller_for(client, namespace, configmap_wanted)
}

pub(crate) async fn reconcile_secret(
    meta: Arc<PartialObjectMeta<Secret>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let ns = meta.namespace().unwrap_or_default();
    let name = meta.name_any();
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(secret) = api.get_opt(&name).await? else {
        ctx.metrics.forget_cert_utils(&ns, &name);
        return Ok(Action::await_change());
    };
    let data = secret_data(&secret);
    let managed = data
        .labels
        .get(ann::CONTROLLED_LABEL)
        .is_some_and(|v| v == "true");
    if !managed {
        write_outputs(&ctx, &api, secret.clone(), &data).await?;
    }
    let now = crate::resources::now();
    match annotated::expiry_check(&data, now) {
        None => {
            ctx.metrics.forget_cert_utils(&ns, &name);
            Ok(Action::await_change())
        }
        Some(Ok(check)) => {
            ctx.metrics
                .set_cert_utils(&ns, &name, check.issue_time, check.expiry_time);
            if let Some(warning) = &check.warning {
                event(
                    &ctx,
                    &secret,
                    EventType::Warning,
                    annotated::SOON_TO_EXPIRE,
                    warning,
                    "CheckExpiry",
                )
                .await;
            }
            let wait = (check.next_check - now).max(60) as u64;
            Ok(Action::requeue(std::time::Duration::from_secs(wait)))
        }
        Some(Err(p)) => {
            let note = format!("{}: {}", p.reason, p.message);
            event(
                &ctx,
                &secret,
                EventType::Warning,
                "InvalidSecret",
                &note,
                "CheckExpiry",
            )
            .await;
            Ok(Action::await_change())
        }
    }
}

/// Writes the keys cert-utils' annotations add to a Secret no Certificate writes, when
/// they changed; a broken Secret gets a Warning Event instead.
async fn write_outputs(
    ctx: &Context,
    api: &Api<Secret>,
    mut secret: Secret,
    data: &certwright_engine::SecretData,
) -> Result<(), Error> {
    let id = format!(
        "{}/{}",
        secret.namespace().unwrap_or_default(),
        secret.name_any()
    );
    match annotated::secret_outputs(data) {
        Ok(out) if out.is_empty() => Ok(()),
        Ok(out) => {
            let keys: Vec<String> = out.keys().cloned().collect();
            let entries = secret.data.get_or_insert_with(BTreeMap::new);
            for (k, v) in out {
                entries.insert(k, ByteString(v));
            }
            api.replace(&secret.name_any(), &PostParams::default(), &secret)
                .await?;
            tracing::info!(secret = %id, keys = ?keys, "annotated secret outputs written");
            Ok(())
        }
        Err(p) => {
            tracing::warn!(secret = %id, reason = %p.reason, problem = %p.message, "annotated secret outputs not written");
            let note = format!("{}: {}", p.reason, p.message);
            event(
                ctx,
                &secret,
                EventType::Warning,
                "InvalidSecret",
                &note,
                "Render",
            )
            .await;
            Ok(())
        }
    }
}

pub(crate) async fn reconcile_configmap(
    meta: Arc<PartialObjectMeta<ConfigMap>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let ns = meta.namespace().unwrap_or_default();
    let name = meta.name_any();
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(mut cm) = api.get_opt(&name).await? else {
        return Ok(Action::await_change());
    };
    let annotations = cm.metadata.annotations.clone().unwrap_or_default();
    let data = cm.data.clone().unwrap_or_default();
    let binary: BTreeMap<String, Vec<u8>> = cm
        .binary_data
        .as_ref()
        .map(|b| b.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect())
        .unwrap_or_default();
    match annotated::configmap_truststore(&annotations, &data, &binary) {
        Ok(None) => Ok(Action::await_change()),
        Ok(Some(store)) => {
            cm.binary_data
                .get_or_insert_with(BTreeMap::new)
                .insert(ann::keys::TRUSTSTORE_JKS.into(), ByteString(store));
            api.replace(&name, &PostParams::default(), &cm).await?;
            tracing::info!(configmap = %format!("{ns}/{name}"), "truststore written");
            Ok(Action::await_change())
        }
        Err(p) => {
            tracing::warn!(configmap = %format!("{ns}/{name}"), reason = %p.reason, problem = %p.message, "truststore not written");
            let note = format!("{}: {}", p.reason, p.message);
            event(
                &ctx,
                &cm,
                EventType::Warning,
                "InvalidConfigMap",
                &note,
                "Render",
            )
            .await;
            Ok(Action::await_change())
        }
    }
}
