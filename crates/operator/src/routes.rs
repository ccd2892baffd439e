//! OpenShift Routes annotated for cert-utils-operator (`certs-from-secret`,
//! `destinationCA-from-secret`, `inject-CA`): their `spec.tls` is filled from the Secrets
//! they name, as `certwright_engine::routes` computes it. Many Routes may name one
//! Secret; when it changes, each of them is patched once (fields compare by content, so
//! a Route already holding the certificates is not written). A Route naming a missing or
//! broken Secret is left as it was and says why: a Warning Event, and the annotation
//! `certwright.io/route-problem` (removed once it is fine again).
//!
//! Routes are watched as metadata, only annotated ones kept (as in `annotated`). Secrets
//! are watched as metadata too, and not kept: each change is mapped to the kept Routes of
//! its namespace that name it.

use crate::context::{Context, Error};
use crate::kinds::{Routes, Spec, Typed};
use crate::lookup::read_secret;
use crate::resources::warn;
use certwright_api::annotations as ann;
use certwright_engine::routes::{self, Lookup};
use kube::api::{Api, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::{Client, ResourceExt};
use serde_json::{json, Value};
use std::sync::Arc;

type RouteMeta = PartialObjectMeta<Typed<Routes>>;

fn route_wanted(m: &RouteMeta) -> bool {
    routes::wants(m.annotations())
}

pub(crate) fn controller(
    client: &Client,
    namespace: Option<&str>,
    secret_changes: crate::annotated::Objects<
        PartialObjectMeta<k8s_openapi::api::core::v1::Secret>,
    >,
) -> Controller<RouteMeta> {
    let routes: Api<RouteMeta> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let (reader, stream) = crate::annotated::kept(routes, route_wanted);
    let index = reader.clone();
    Controller::for_stream(stream, reader).watches_stream(secret_changes, move |s| {
        let ns = s.namespace().unwrap_or_default();
        let name = s.name_any();
        index
            .state()
            .into_iter()
            .filter(|r| r.namespace().as_deref() == Some(ns.as_str()))
            .filter(|r| {
                let a = routes::effective_annotations(&r.name_any(), r.annotations());
                let (c, d) = routes::referenced_secrets(&a);
                c == Some(name.as_str()) || d == Some(name.as_str())
            })
            .map(|r| ObjectRef::from_obj(r.as_ref()))
            .collect::<Vec<_>>()
    })
}

fn as_lookup(s: &Option<Option<certwright_engine::SecretData>>) -> Option<Lookup<'_>> {
    s.as_ref().map(|found| match found {
        Some(d) => Lookup::Found(d),
        None => Lookup::Missing,
    })
}

async fn lookup(
    client: &Client,
    ns: &str,
    name: Option<&str>,
) -> Result<Option<Option<certwright_engine::SecretData>>, Error> {
    match name {
        Some(n) => Ok(Some(read_secret(client, ns, n).await?)),
        None => Ok(None),
    }
}

pub(crate) async fn reconcile(meta: Arc<RouteMeta>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = meta.namespace().unwrap_or_default();
    let name = meta.name_any();
    let api: Api<Typed<Routes>> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(route) = api.get_opt(&name).await? else {
        return Ok(Action::await_change());
    };
    let written = route.metadata.annotations.clone().unwrap_or_default();
    // cert-manager's route shim: a Certificate owned by the Route, read back like
    // certs-from-secret once issued.
    let shimmed = ctx.config.capabilities.shims && certwright_engine::shim::wants(&written);
    if shimmed {
        let spec_host = match &route.spec {
            Spec::Read(spec) => spec.get("host").and_then(Value::as_str).map(str::to_string),
            _ => None,
        };
        let status_host = route
            .status
            .as_ref()
            .and_then(|s| s.pointer("/ingress/0/host"))
            .and_then(Value::as_str)
            .map(str::to_string);
        let host = spec_host.or(status_host);
        match certwright_engine::shim::route_certificate(&written, &name, host.as_deref()) {
            Ok(Some((cert_name, spec))) => {
                if let Some(owner) = crate::shim::controller_ref(&route) {
                    let labels = route.metadata.labels.clone();
                    crate::shim::ensure_certificate(
                        &ctx, &route, &owner, labels, &cert_name, &spec,
                    )
                    .await?;
                }
            }
            Ok(None) => {}
            Err(p) => {
                warn(&ctx, &route, &p, "CreateCertificate").await;
                return Ok(Action::await_change());
            }
        }
    }
    let annotations = if shimmed {
        routes::effective_annotations(&name, &written)
    } else {
        written.clone()
    };
    let (certs_name, dest_name) = routes::referenced_secrets(&annotations);
    let certs = lookup(&ctx.client, &ns, certs_name).await?;
    let dest = lookup(&ctx.client, &ns, dest_name).await?;

    let tls = match &route.spec {
        Spec::Read(spec) => spec.get("tls").cloned(),
        _ => None,
    };
    let had_problem = written.get(ann::ROUTE_PROBLEM).cloned();
    match routes::desired_tls(
        &ns,
        &annotations,
        tls.as_ref(),
        as_lookup(&certs),
        as_lookup(&dest),
    ) {
        Ok(fields) => {
            let mut patch = json!({});
            if !fields.is_empty() {
                patch["spec"] = json!({"tls": fields});
            }
            if had_problem.is_some() {
                patch["metadata"] = json!({"annotations": {ann::ROUTE_PROBLEM: Value::Null}});
            }
            if patch.as_object().is_some_and(|o| !o.is_empty()) {
                api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
                let names: Vec<&str> = fields.keys().copied().collect();
                tracing::info!(route = %format!("{ns}/{name}"), fields = ?names, "route updated");
            }
        }
        // The shim's Certificate is not issued yet: its Secret's creation wakes this.
        Err(p)
            if shimmed
                && p.reason == "SecretNotFound"
                && certs.as_ref().is_some_and(|c| c.is_none()) => {}
        Err(p) => {
            let why = format!("{}: {}", p.reason, p.message);
            tracing::warn!(route = %format!("{ns}/{name}"), problem = %why, "route left as it was");
            if had_problem.as_deref() != Some(why.as_str()) {
                let patch = json!({"metadata": {"annotations": {ann::ROUTE_PROBLEM: why}}});
                api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
            }
            warn(&ctx, &route, &p, "UpdateRoute").await;
        }
    }
    Ok(Action::await_change())
}
