//! What wakes each controller: the watches, what their caches keep, and which objects a
//! change to a Secret or an issuer concerns.

use certwright_api::annotations as ann;
use futures::TryStreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::controller::Controller;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{watcher, WatchStreamExt};
use kube::ResourceExt;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use crate::context::Context;
use crate::kinds::{
    CertificateObject, ClusterIssuerObject, IssuerObject, Kind, RequestObject, Typed,
};

/// Only certwright's own Secrets are watched (by label), so memory does not grow with
/// unrelated Secrets; a change to one re-reconciles its Certificate.
pub(crate) fn managed_secrets() -> watcher::Config {
    watcher::Config::default().labels(&format!("{}=true", ann::CONTROLLED_LABEL))
}

/// The Certificate controller. Certificates are reconciled when their spec changes (a new
/// generation) or a manual renewal is asked for, not on status updates (most of those are
/// this controller's own); a managed Secret changed by someone else wakes its Certificate,
/// and any issuer or managed Secret change wakes the Certificates waiting for an issuer.
pub(crate) fn certificates_controller(
    ctx: &Arc<Context>,
    certs: Api<CertificateObject>,
    secrets: Api<Secret>,
    issuers_api: &Api<IssuerObject>,
) -> Controller<CertificateObject> {
    let writer = kube::runtime::reflector::store::Writer::new(());
    let reader = writer.as_reader();
    let forget_ctx = ctx.clone();
    let spec_changes = watcher(certs, watcher::Config::default())
        .default_backoff()
        .modify(|c| {
            note_manual_trigger(c);
            c.keep_metadata_only()
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
    let waiting = ctx.waiting.clone();
    let controller = Controller::for_stream_with(spec_changes, reader, ()).watches(
        secrets,
        managed_secrets(),
        move |s: Secret| {
            let ns = s.namespace().unwrap_or_default();
            // A Secret as this controller just wrote it needs no second look at its
            // Certificate; any other change to it (an edit, a deletion) does.
            let key = (ns.clone(), s.name_any());
            let own = s.metadata.resource_version.as_ref().is_some_and(|rv| {
                own_writes
                    .lock()
                    .is_ok_and(|mut w| w.get(&key) == Some(rv) && w.remove(&key).is_some())
            });
            let mut refs: Vec<ObjectRef<CertificateObject>> = s
                .annotations()
                .get(ann::CERT_NAME)
                .filter(|_| !own)
                .map(|name| ObjectRef::new(name).within(&ns))
                .into_iter()
                .collect();
            refs.extend(waiting_refs(&waiting));
            refs
        },
    );
    wake_on_issuers(controller, ctx, issuers_api, &ctx.waiting)
}

/// The controller of CertificateRequests that others create. Requests that certwright
/// records itself are not watched (they are complete when written); of the others, only
/// metadata is kept (each reconcile reads its request).
pub(crate) fn requests_controller(
    ctx: &Arc<Context>,
    requests_api: Api<RequestObject>,
    issuers_api: &Api<IssuerObject>,
) -> Controller<RequestObject> {
    let writer = kube::runtime::reflector::store::Writer::new(());
    let reader = writer.as_reader();
    let (label, value) = ann::MANAGED_BY;
    let others = watcher(
        requests_api,
        watcher::Config::default().labels(&format!("{label}!={value}")),
    )
    .default_backoff()
    .modify(Typed::keep_metadata_only)
    .reflect(writer)
    .applied_objects();
    let controller = Controller::for_stream_with(others, reader, ());
    wake_on_issuers(controller, ctx, issuers_api, &ctx.pending_requests)
}

/// Keeps, in the cached copy of a Certificate, when `cmctl renew` (or `certwright renew`)
/// set its Issuing condition to ManuallyTriggered, before the status is dropped from the
/// cache (see [`Typed::keep_metadata_only`]): that change is a status change, which the
/// spec filter would otherwise ignore.
fn note_manual_trigger(obj: &mut CertificateObject) {
    let manual = obj
        .status
        .as_ref()
        .and_then(|s| s.condition("Issuing"))
        .filter(|c| c.status == "True" && c.reason == ann::MANUALLY_TRIGGERED)
        .map(|c| {
            c.last_transition_time
                .clone()
                .unwrap_or_else(|| "set".into())
        });
    if let Some(at) = manual {
        obj.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(ann::CACHED_MANUAL_TRIGGER.into(), at);
    }
}

/// What wakes a Certificate: a new generation (spec change) or a new manual renewal.
fn spec_or_renewal(obj: &CertificateObject) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    obj.metadata.generation.hash(&mut h);
    obj.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ann::CACHED_MANUAL_TRIGGER))
        .hash(&mut h);
    Some(h.finish())
}

/// Adds watches of Issuers (and, when all namespaces are watched, ClusterIssuers) to the
/// controller of `target`: an issuer that appears or changes (its status becoming Ready,
/// say) wakes the objects in `waiting`. Watching one namespace, ClusterIssuers are not
/// watched (a namespaced installation may not be allowed to list them; objects still use
/// them by name, and retry).
pub(crate) fn wake_on_issuers<K: Kind>(
    controller: Controller<Typed<K>>,
    ctx: &Context,
    issuers_api: &Api<IssuerObject>,
    waiting: &Arc<Mutex<HashSet<(String, String)>>>,
) -> Controller<Typed<K>> {
    let (w1, w2) = (waiting.clone(), waiting.clone());
    let c = controller.watches(
        issuers_api.clone(),
        watcher::Config::default(),
        move |_: IssuerObject| waiting_refs(&w1),
    );
    if ctx.config.namespace.is_some() {
        return c;
    }
    c.watches(
        Api::<ClusterIssuerObject>::all(ctx.client.clone()),
        watcher::Config::default(),
        move |_: ClusterIssuerObject| waiting_refs(&w2),
    )
}

/// Objects (Certificates or CertificateRequests) waiting for their issuer, to be woken
/// by an issuer or Secret change.
pub(crate) fn waiting_refs<K: Kind>(
    waiting: &Mutex<HashSet<(String, String)>>,
) -> Vec<ObjectRef<Typed<K>>> {
    waiting
        .lock()
        .map(|w| {
            w.iter()
                .map(|(ns, name)| ObjectRef::new(name).within(ns))
                .collect()
        })
        .unwrap_or_default()
}
