//! cert-manager's ingress-shim: an Ingress annotated `cert-manager.io/issuer` or
//! `cert-manager.io/cluster-issuer` gets the Certificates `certwright_engine::shim`
//! computes, owned by it (controller reference, so they go when it goes). A Certificate
//! of that name that the Ingress does not own is left alone; one it owns is updated when
//! it differs, and deleted when its `tls` entry is gone. Problems with the Ingress are
//! Warning Events on it.
//!
//! Ingresses are watched as metadata, only annotated ones kept.

use crate::context::{Context, Error};
use crate::kinds::{Certificates, Spec, Typed};
use crate::resources::{event, warn};
use certwright_engine::shim::{self, TlsEntry};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::{Client, ResourceExt};
use std::sync::Arc;

type IngressMeta = PartialObjectMeta<Ingress>;

fn wanted(m: &IngressMeta) -> bool {
    shim::wants(m.annotations())
}

pub(crate) fn controller(client: &Client, namespace: Option<&str>) -> Controller<IngressMeta> {
    let api: Api<IngressMeta> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let (reader, stream) = crate::annotated::kept(api, wanted);
    Controller::for_stream(stream, reader)
}

fn controlled_by(cert: &Typed<Certificates>, uid: &str) -> bool {
    cert.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.uid == uid && o.controller == Some(true))
}

/// Creates the Certificate `name` owned by `owner` (Events on `object`), or updates it
/// when `owner` controls it and it differs; one of that name that `owner` does not
/// control is left alone.
pub(crate) async fn ensure_certificate<K: kube::Resource<DynamicType = ()>>(
    ctx: &Context,
    object: &K,
    owner: &OwnerReference,
    labels: Option<std::collections::BTreeMap<String, String>>,
    name: &str,
    spec: &certwright_api::CertificateSpec,
) -> Result<(), Error> {
    let ns = object.meta().namespace.clone().unwrap_or_default();
    let certs: Api<Typed<Certificates>> = Api::namespaced(ctx.client.clone(), &ns);
    match certs.get_opt(name).await? {
        None => {
            let meta = ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some(ns.clone()),
                labels,
                owner_references: Some(vec![owner.clone()]),
                ..Default::default()
            };
            certs
                .create(&PostParams::default(), &Typed::new(meta, spec.clone()))
                .await?;
            let note = format!("Successfully created Certificate \"{name}\"");
            event(
                ctx,
                object,
                EventType::Normal,
                "CreateCertificate",
                &note,
                "CreateCertificate",
            )
            .await;
        }
        Some(existing) if !controlled_by(&existing, &owner.uid) => {
            tracing::info!(certificate = %format!("{ns}/{name}"), owner = %owner.name, "a Certificate of that name is not this object's: left alone");
        }
        Some(mut existing) => {
            if !matches!(&existing.spec, Spec::Read(s) if s == spec) {
                existing.spec = Spec::Read(spec.clone());
                certs
                    .replace(name, &PostParams::default(), &existing)
                    .await?;
                let note = format!("Successfully updated Certificate \"{name}\"");
                event(
                    ctx,
                    object,
                    EventType::Normal,
                    "UpdateCertificate",
                    &note,
                    "UpdateCertificate",
                )
                .await;
            }
        }
    }
    Ok(())
}

/// A controller reference to `object` (None before it has a uid).
pub(crate) fn controller_ref<K: kube::Resource<DynamicType = ()>>(
    object: &K,
) -> Option<OwnerReference> {
    let m = object.meta();
    Some(OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: m.name.clone().unwrap_or_default(),
        uid: m.uid.clone()?,
        controller: Some(true),
        block_owner_deletion: Some(true),
    })
}

pub(crate) async fn reconcile(meta: Arc<IngressMeta>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = meta.namespace().unwrap_or_default();
    let name = meta.name_any();
    let ingresses: Api<Ingress> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(ingress) = ingresses.get_opt(&name).await? else {
        return Ok(Action::await_change());
    };
    let Some(owner) = controller_ref(&ingress) else {
        return Ok(Action::await_change());
    };
    let tls: Vec<TlsEntry> = ingress
        .spec
        .as_ref()
        .and_then(|s| s.tls.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|t| TlsEntry {
            hosts: t.hosts.unwrap_or_default(),
            secret_name: t.secret_name.unwrap_or_default(),
        })
        .collect();
    let shim::Planned {
        certificates: wanted,
        skipped,
    } = match shim::ingress_certificates(ingress.annotations(), &tls) {
        Ok(v) => v,
        Err(p) => {
            warn(&ctx, &ingress, &p, "CreateCertificate").await;
            return Ok(Action::await_change());
        }
    };
    for p in skipped {
        let note = format!("Skipped a TLS block: {}", p.message);
        event(
            &ctx,
            &ingress,
            EventType::Warning,
            &p.reason,
            &note,
            "CreateCertificate",
        )
        .await;
    }
    let certs: Api<Typed<Certificates>> = Api::namespaced(ctx.client.clone(), &ns);
    for (cert_name, spec) in &wanted {
        let labels = ingress.metadata.labels.clone();
        ensure_certificate(&ctx, &ingress, &owner, labels, cert_name, spec).await?;
    }
    // Certificates this Ingress owns whose tls entry is gone.
    for cert in certs.list(&ListParams::default()).await?.items {
        let cert_name = cert.name_any();
        if controlled_by(&cert, &owner.uid) && !wanted.iter().any(|(n, _)| *n == cert_name) {
            certs.delete(&cert_name, &DeleteParams::default()).await?;
            let note = format!("Deleted Certificate \"{cert_name}\": its tls entry is gone");
            event(
                &ctx,
                &ingress,
                EventType::Normal,
                "DeleteCertificate",
                &note,
                "DeleteCertificate",
            )
            .await;
        }
    }
    Ok(Action::await_change())
}
