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
use crate::resources::event;
use certwright_engine::shim::{self, TlsEntry};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::{Client, Resource, ResourceExt};
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

fn owned_by(ingress: &Ingress) -> Option<OwnerReference> {
    let uid = ingress.metadata.uid.clone()?;
    Some(OwnerReference {
        api_version: Ingress::api_version(&()).into_owned(),
        kind: Ingress::kind(&()).into_owned(),
        name: ingress.name_any(),
        uid,
        controller: Some(true),
        block_owner_deletion: Some(true),
    })
}

fn controlled_by(cert: &Typed<Certificates>, uid: &str) -> bool {
    cert.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.uid == uid && o.controller == Some(true))
}

pub(crate) async fn reconcile(meta: Arc<IngressMeta>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = meta.namespace().unwrap_or_default();
    let name = meta.name_any();
    let ingresses: Api<Ingress> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(ingress) = ingresses.get_opt(&name).await? else {
        return Ok(Action::await_change());
    };
    let Some(owner) = owned_by(&ingress) else {
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
            event(
                &ctx,
                &ingress,
                EventType::Warning,
                &p.reason,
                &p.message,
                "CreateCertificate",
            )
            .await;
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
        match certs.get_opt(cert_name).await? {
            None => {
                let meta = ObjectMeta {
                    name: Some(cert_name.clone()),
                    namespace: Some(ns.clone()),
                    labels: ingress.metadata.labels.clone(),
                    owner_references: Some(vec![owner.clone()]),
                    ..Default::default()
                };
                certs
                    .create(&PostParams::default(), &Typed::new(meta, spec.clone()))
                    .await?;
                let note = format!("Successfully created Certificate \"{cert_name}\"");
                event(
                    &ctx,
                    &ingress,
                    EventType::Normal,
                    "CreateCertificate",
                    &note,
                    "CreateCertificate",
                )
                .await;
            }
            Some(existing) if !controlled_by(&existing, &owner.uid) => {
                tracing::info!(certificate = %format!("{ns}/{cert_name}"), ingress = %name, "a Certificate of that name is not this Ingress's: left alone");
            }
            Some(mut existing) => {
                let same = matches!(&existing.spec, Spec::Read(s) if s == spec);
                if !same {
                    existing.spec = Spec::Read(spec.clone());
                    certs
                        .replace(cert_name, &PostParams::default(), &existing)
                        .await?;
                    let note = format!("Successfully updated Certificate \"{cert_name}\"");
                    event(
                        &ctx,
                        &ingress,
                        EventType::Normal,
                        "UpdateCertificate",
                        &note,
                        "UpdateCertificate",
                    )
                    .await;
                }
            }
        }
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
