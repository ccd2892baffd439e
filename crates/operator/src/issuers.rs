//! The Issuer and ClusterIssuer controller: checks that each issuer can sign and says so
//! in its Ready condition with cert-manager's reasons: `IsReady` for self-signed,
//! `KeyPairVerified` for a CA whose Secret holds a valid CA key pair, `ErrGetKeyPair` /
//! `ErrInvalidKeyPair` when it does not. Certificates do not wait for this status (they
//! check their issuer themselves when they issue); it is there for people and tools.

use crate::context::{Context, Error};
use crate::kinds::{IssuerKinds, Spec, Typed};
use crate::lookup;
use crate::resources::{event, now, StatusPatch};
use certwright_api::validate::IssuerKind;
use certwright_api::IssuerStatus;
use certwright_engine::resolve;
use certwright_engine::status::set_condition;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::ResourceExt;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// An issuer: ClusterIssuer (no namespace) or Issuer (its namespace), and its name.
pub(crate) type IssuerKey = (Option<String>, String);

/// Which issuers use which CA Secret (namespace, name), so that a change to a Secret
/// certwright manages re-checks the issuers built on it at once.
#[derive(Default)]
pub(crate) struct CaIndex(Mutex<HashMap<(String, String), HashSet<IssuerKey>>>);

impl CaIndex {
    fn set(&self, issuer: &IssuerKey, secret: Option<(String, String)>) {
        if let Ok(mut m) = self.0.lock() {
            m.retain(|_, users| {
                users.remove(issuer);
                !users.is_empty()
            });
            if let Some(s) = secret {
                m.entry(s).or_default().insert(issuer.clone());
            }
        }
    }

    fn users(&self, secret: &(String, String)) -> Vec<IssuerKey> {
        self.0
            .lock()
            .ok()
            .and_then(|m| m.get(secret).map(|u| u.iter().cloned().collect()))
            .unwrap_or_default()
    }
}

/// How often an issuer is checked again without any event: its CA Secret may be one
/// certwright does not manage (and so does not watch), or may expire.
const RECHECK_READY: Duration = Duration::from_secs(600);
const RECHECK_NOT_READY: Duration = Duration::from_secs(30);

/// A controller for Issuers or ClusterIssuers, woken by changes to the managed Secrets
/// their CA key pairs live in.
pub(crate) fn controller<K: IssuerKinds>(
    api: Api<Typed<K>>,
    secrets: Api<Secret>,
    ctx: Arc<Context>,
) -> Controller<Typed<K>> {
    let cluster = K::KIND_REF == IssuerKind::ClusterIssuer;
    let managed = crate::watches::managed_secrets();
    Controller::new(api, watcher::Config::default()).watches(secrets, managed, move |s: Secret| {
        let key = (s.namespace().unwrap_or_default(), s.name_any());
        ctx.ca_index
            .users(&key)
            .into_iter()
            .filter(|(ns, _)| ns.is_none() == cluster)
            .map(|(ns, name)| match ns {
                None => ObjectRef::new(&name),
                Some(ns) => ObjectRef::new(&name).within(&ns),
            })
            .collect::<Vec<_>>()
    })
}

/// Reconciles one Issuer or ClusterIssuer.
pub(crate) async fn reconcile<K: IssuerKinds>(
    cached: Arc<Typed<K>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let ns = cached.namespace();
    let name = cached.name_any();
    let t = now();
    let in_ns = ns.as_deref().unwrap_or_default();
    let api = K::api(&ctx.client, in_ns);
    let secret_ns = K::secret_namespace(&ctx.config.cluster_resource_namespace, in_ns);
    let key: IssuerKey = (ns.clone(), name.clone());
    let Some(obj) = api.get_opt(&name).await? else {
        ctx.ca_index.set(&key, None);
        return Ok(Action::await_change());
    };
    let ca_secret = match &obj.spec {
        Spec::Read(spec) => spec.ca.as_ref(),
        _ => None,
    }
    .map(|ca| (secret_ns.clone(), ca.secret_name.clone()));
    ctx.ca_index.set(&key, ca_secret);
    let before: IssuerStatus = obj.status_or_default();
    let mut status = before.clone();
    let desc = resolve::describe(K::KIND_REF, &name, in_ns);
    let found = lookup::issuer_object(&ctx, &obj, desc, secret_ns.clone()).await?;
    status.acme = found.acme.as_ref().and_then(|(_, s)| s.clone());
    let checked = found.check(t);
    let (ready, reason, message) = match checked {
        Ok(r) => (true, r.reason.to_string(), r.message.to_string()),
        Err(p) => (false, p.reason, p.message),
    };
    set_condition(&mut status.conditions, "Ready", ready, &reason, &message, t);
    if let Some(c) = status.conditions.iter_mut().find(|c| c.type_ == "Ready") {
        c.observed_generation = obj.metadata.generation;
    }
    if status != before {
        api.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&StatusPatch { status: &status }),
        )
        .await?;
        let was = before.conditions.iter().find(|c| c.type_ == "Ready");
        if was.map(|c| (c.status == "True", c.reason.as_str())) != Some((ready, reason.as_str())) {
            let id = match &ns {
                Some(ns) => format!("{ns}/{name}"),
                None => name.clone(),
            };
            let (type_, note) = if ready {
                (EventType::Normal, "The issuer is ready".to_string())
            } else {
                (EventType::Warning, format!("{reason}: {message}"))
            };
            if ready {
                tracing::info!(kind = %K::KIND, issuer = %id, reason = %reason, "issuer ready");
            } else {
                tracing::warn!(kind = %K::KIND, issuer = %id, reason = %reason, message = %message, "issuer not ready");
            }
            event(&ctx, &obj, type_, &reason, &note, "Check").await;
        }
    }
    Ok(Action::requeue(if ready {
        RECHECK_READY
    } else if reason == "ACMEAccountRegistering" || reason == "GeneratingAccountKey" {
        // The registration runs in the background: look again in a moment.
        Duration::from_secs(1)
    } else {
        RECHECK_NOT_READY
    }))
}
