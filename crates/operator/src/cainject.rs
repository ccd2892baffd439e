//! CA injection (cert-manager's cainjector and cert-utils-operator's `injectca-from-secret`)
//! into ValidatingWebhookConfigurations, MutatingWebhookConfigurations,
//! CustomResourceDefinitions (their conversion webhook), APIServices, and into Secrets
//! and ConfigMaps (`ca.crt`). Which bundle an object gets is `certwright_engine::cainject`'s
//! answer; this module reads the source, writes the bundle where it differs, and says why
//! when it cannot (a Warning Event on the object, which is left as it was).
//!
//! Each kind is watched as metadata, only annotated objects kept; Secret changes are
//! mapped, without keeping the Secrets, to the objects whose source they are (directly, or
//! as the Secret of the Certificate named, through its `cert-manager.io/certificate-name`
//! annotation).

use crate::context::{Context, Error};
use crate::kinds::{Certificates, Typed, Watched};
use crate::lookup::read_secret;
use crate::resources::event;
use certwright_api::annotations as ann;
use certwright_engine::cainject::{self, Source};
use certwright_engine::Problem;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
use k8s_openapi::ByteString;
use kube::api::{Api, PostParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Client, ResourceExt};
use std::sync::Arc;

/// A kind that carries a CA bundle.
pub(crate) trait Target: Watched + serde::Serialize {
    /// Where objects of this kind are read and written (`ns`: a namespaced one's).
    fn api(client: &Client, ns: &str) -> Api<Self>;
    /// Writes `bundle` where this kind carries a CA bundle; whether anything changed.
    fn inject(&mut self, bundle: &[u8]) -> bool;
}

fn set(slot: &mut Option<ByteString>, bundle: &[u8]) -> bool {
    if slot.as_ref().map(|b| b.0.as_slice()) == Some(bundle) {
        return false;
    }
    *slot = Some(ByteString(bundle.to_vec()));
    true
}

/// Sets every config's bundle (not stopping at the first that changes).
fn set_all<'a>(configs: impl Iterator<Item = &'a mut WebhookClientConfig>, bundle: &[u8]) -> bool {
    let mut changed = false;
    for c in configs {
        changed |= set(&mut c.ca_bundle, bundle);
    }
    changed
}

/// Both webhook configuration kinds: every webhook's client config.
macro_rules! webhook_configuration {
    ($kind:ty) => {
        impl Target for $kind {
            fn api(client: &Client, _: &str) -> Api<Self> {
                Api::all(client.clone())
            }
            fn inject(&mut self, bundle: &[u8]) -> bool {
                set_all(
                    self.webhooks
                        .iter_mut()
                        .flatten()
                        .map(|w| &mut w.client_config),
                    bundle,
                )
            }
        }
    };
}

webhook_configuration!(MutatingWebhookConfiguration);
webhook_configuration!(ValidatingWebhookConfiguration);

impl Target for CustomResourceDefinition {
    fn api(client: &Client, _: &str) -> Api<Self> {
        Api::all(client.clone())
    }
    /// Only a conversion webhook carries a bundle.
    fn inject(&mut self, bundle: &[u8]) -> bool {
        let config = self
            .spec
            .conversion
            .as_mut()
            .and_then(|c| c.webhook.as_mut())
            .and_then(|w| w.client_config.as_mut());
        config.is_some_and(|c| set(&mut c.ca_bundle, bundle))
    }
}

impl Target for APIService {
    fn api(client: &Client, _: &str) -> Api<Self> {
        Api::all(client.clone())
    }
    fn inject(&mut self, bundle: &[u8]) -> bool {
        self.spec
            .as_mut()
            .is_some_and(|s| set(&mut s.ca_bundle, bundle))
    }
}

impl Target for Secret {
    fn api(client: &Client, ns: &str) -> Api<Self> {
        Api::namespaced(client.clone(), ns)
    }
    fn inject(&mut self, bundle: &[u8]) -> bool {
        let data = self.data.get_or_insert_with(Default::default);
        let mut slot = data.get(ann::keys::CA_CRT).cloned();
        let changed = set(&mut slot, bundle);
        if let Some(v) = slot {
            data.insert(ann::keys::CA_CRT.into(), v);
        }
        changed
    }
}

impl Target for ConfigMap {
    fn api(client: &Client, ns: &str) -> Api<Self> {
        Api::namespaced(client.clone(), ns)
    }
    fn inject(&mut self, bundle: &[u8]) -> bool {
        let text = String::from_utf8_lossy(bundle).into_owned();
        let data = self.data.get_or_insert_with(Default::default);
        if data.get(ann::keys::CA_CRT) == Some(&text) {
            return false;
        }
        data.insert(ann::keys::CA_CRT.into(), text);
        true
    }
}

fn wanted<K: kube::Resource>(m: &PartialObjectMeta<K>) -> bool {
    cainject::wants(m.annotations())
}

/// Whether `secret` (namespace, name, its certificate-name annotation) is `source`.
fn is_source(source: &Source, ns: &str, name: &str, certificate: Option<&str>) -> bool {
    match source {
        Source::Secret {
            namespace, name: n, ..
        } => namespace == ns && n == name,
        Source::Certificate { namespace, name: n } => {
            namespace == ns && certificate == Some(n.as_str())
        }
    }
}

/// The injection controller for one kind.
pub(crate) fn controller<K>(
    client: &Client,
    secret_changes: crate::annotated::Objects<PartialObjectMeta<Secret>>,
) -> Controller<PartialObjectMeta<K>>
where
    K: Target,
    PartialObjectMeta<K>: Watched,
{
    let targets: Api<PartialObjectMeta<K>> = Api::all(client.clone());
    let (reader, stream) = crate::annotated::kept(targets, wanted::<K>);
    let index = reader.clone();
    Controller::for_stream(stream, reader).watches_stream(secret_changes, move |s| {
        let ns = s.namespace().unwrap_or_default();
        let name = s.name_any();
        let certificate = s.annotations().get(ann::CERT_NAME).cloned();
        index
            .state()
            .into_iter()
            .filter(|t| {
                cainject::source(t.annotations())
                    .ok()
                    .flatten()
                    .is_some_and(|src| is_source(&src, &ns, &name, certificate.as_deref()))
            })
            .map(|t| ObjectRef::from_obj(t.as_ref()))
            .collect::<Vec<_>>()
    })
}

/// The bundle `source` gives.
async fn resolve(ctx: &Context, source: &Source) -> Result<Result<Vec<u8>, Problem>, Error> {
    let (ns, secret_name) = match source {
        Source::Secret {
            namespace, name, ..
        } => (namespace.clone(), name.clone()),
        Source::Certificate { namespace, name } => {
            let api: Api<Typed<Certificates>> = Api::namespaced(ctx.client.clone(), namespace);
            let cert = api.get_opt(name).await?.and_then(|c| c.object().ok());
            let Some(cert) = cert else {
                return Ok(Err(Problem::new(
                    "CertificateNotFound",
                    format!("Certificate {namespace}/{name} not found (or not readable)"),
                )));
            };
            (namespace.clone(), cert.spec.secret_name)
        }
    };
    let secret = read_secret(&ctx.client, &ns, &secret_name).await?;
    let desc = format!("Secret {ns}/{secret_name}");
    Ok(cainject::bundle(source, &desc, secret.as_ref()))
}

pub(crate) async fn reconcile<K: Target>(
    meta: Arc<PartialObjectMeta<K>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let ns = meta.namespace().unwrap_or_default();
    let name = meta.name_any();
    let api = K::api(&ctx.client, &ns);
    let Some(mut obj) = api.get_opt(&name).await? else {
        return Ok(Action::await_change());
    };
    let outcome = match cainject::source(obj.annotations()) {
        Ok(None) => return Ok(Action::await_change()),
        Ok(Some(source)) => resolve(&ctx, &source).await?,
        Err(p) => Err(p),
    };
    match outcome {
        Ok(bundle) => {
            if obj.inject(&bundle) {
                api.replace(&name, &PostParams::default(), &obj).await?;
                tracing::info!(kind = %K::kind(&()), object = %format!("{ns}/{name}"), "CA bundle injected");
            }
        }
        Err(p) => {
            tracing::warn!(kind = %K::kind(&()), object = %format!("{ns}/{name}"), problem = %p, "CA bundle not injected");
            event(
                &ctx,
                &obj,
                EventType::Warning,
                &p.reason,
                &p.message,
                "InjectCA",
            )
            .await;
        }
    }
    Ok(Action::await_change())
}

/// Runs the injection controllers of every kind until `stopped`, each told of Secret
/// changes by `feed` (subscribed here, before the feed runs).
pub(crate) async fn run(
    ctx: &Arc<Context>,
    feed: &crate::annotated::SecretFeed,
    stopped: &futures::future::Shared<futures::future::BoxFuture<'static, ()>>,
) {
    let c = &ctx.client;
    let m = controller::<MutatingWebhookConfiguration>(c, feed.subscribe());
    let v = controller::<ValidatingWebhookConfiguration>(c, feed.subscribe());
    let crd = controller::<CustomResourceDefinition>(c, feed.subscribe());
    let api = controller::<APIService>(c, feed.subscribe());
    let secret = controller::<Secret>(c, feed.subscribe());
    let cm = controller::<ConfigMap>(c, feed.subscribe());
    futures::join!(
        crate::drive(m, reconcile, ctx, stopped),
        crate::drive(v, reconcile, ctx, stopped),
        crate::drive(crd, reconcile, ctx, stopped),
        crate::drive(api, reconcile, ctx, stopped),
        crate::drive(secret, reconcile, ctx, stopped),
        crate::drive(cm, reconcile, ctx, stopped),
    );
}
