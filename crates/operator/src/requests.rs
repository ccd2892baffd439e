//! The CertificateRequest controller: signs CertificateRequests that others create (a
//! CSR of their own, for an issuer of the cert-manager.io group), as cert-manager does.
//!
//! A request is approved unless an approver denied it first (cert-manager's built-in
//! approver approves every request for its own issuer group); then its issuer signs it
//! and `status.certificate` / `status.ca` hold the result, with Ready=True `Issued`.
//! Failures are final (Ready=False `Failed`, `failureTime`), as in cert-manager; a
//! missing or unready issuer keeps the request `Pending` and is retried.
//!
//! The requests certwright writes itself as issuance records (label
//! `app.kubernetes.io/managed-by: certwright`) are complete when written and skipped.

use crate::context::{Context, Error};
use crate::lookup::{self, read_secret};
use crate::resources::{certificate_requests, event, now, typed};
use certwright_api::annotations::{self as ann, keys};
use certwright_api::{validate, CertificateRequest, CertificateRequestStatus, GROUP};
use certwright_engine::issue::{Outcome, Request};
use certwright_engine::status::set_condition;
use certwright_engine::{Problem, Resolved};
use certwright_pki::der::rfc3339;
use certwright_pki::PrivateKey;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::ResourceExt;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

const RETRY_PENDING: Duration = Duration::from_secs(30);

fn base64_pem(ders: &[Vec<u8>]) -> String {
    use base64::Engine;
    let pem: String = ders
        .iter()
        .map(|d| certwright_pki::pem::encode("CERTIFICATE", d))
        .collect();
    base64::engine::general_purpose::STANDARD.encode(pem)
}

/// Reconciles one CertificateRequest.
pub(crate) async fn reconcile(
    cached: Arc<DynamicObject>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    if cached.labels().get(ann::MANAGED_BY.0).map(String::as_str) == Some(ann::MANAGED_BY.1) {
        return Ok(Action::await_change());
    }
    let ns = cached.namespace().unwrap_or_default();
    let name = cached.name_any();
    let t = now();
    let api: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), &ns, &certificate_requests());
    let Some(obj) = api.get_opt(&name).await? else {
        return Ok(Action::await_change());
    };
    let before: CertificateRequestStatus = obj
        .data
        .get("status")
        .and_then(|s| serde_json::from_value(s.clone()).ok())
        .unwrap_or_default();
    let finished = before.conditions.iter().any(|c| {
        c.type_ == "Ready" && (c.status == "True" || c.reason == "Failed" || c.reason == "Denied")
    });
    if finished {
        return Ok(Action::await_change());
    }
    // Requests for issuers of other groups belong to their own signers (checked before
    // parsing: their specs are theirs to define).
    let group = obj.data["spec"]["issuerRef"]["group"]
        .as_str()
        .filter(|g| !g.is_empty())
        .unwrap_or(GROUP);
    if group != GROUP {
        return Ok(Action::await_change());
    }
    let id = format!("{ns}/{name}");
    if let Ok(mut p) = ctx.pending_requests.lock() {
        p.remove(&(ns.clone(), name.clone()));
    }
    let mut status = before.clone();
    let cr: CertificateRequest = match typed(&obj) {
        Ok(cr) => cr,
        Err(e) => {
            let p = Problem {
                reason: "Failed".into(),
                message: format!("The CertificateRequest is invalid: {e}"),
            };
            return fail(&ctx, &api, &obj, &id, &before, status, &p, t).await;
        }
    };
    let condition = |type_: &str| status.conditions.iter().find(|c| c.type_ == type_).cloned();
    if condition("Denied").is_some_and(|c| c.status == "True") {
        let p = Problem {
            reason: "Denied".into(),
            message: "The CertificateRequest was denied by an approval controller".into(),
        };
        return fail(&ctx, &api, &obj, &id, &before, status, &p, t).await;
    }
    if condition("Approved").is_none() {
        set_condition(
            &mut status.conditions,
            "Approved",
            true,
            "cert-manager.io",
            "Certificate request has been approved by cert-manager.io",
            t,
        );
    }
    let params = match validate::certificate_request(&cr) {
        Ok(p) => p,
        Err(errs) => {
            let p = Problem {
                reason: "Failed".into(),
                message: format!(
                    "The CertificateRequest is invalid: {}",
                    validate::join(&errs)
                ),
            };
            return fail(&ctx, &api, &obj, &id, &before, status, &p, t).await;
        }
    };
    let spec = &params.issuance;
    let found = lookup::issuer(&ctx, &ns, &spec.issuer_name, spec.issuer_kind).await?;
    let resolved = match found.resolve(t) {
        Resolved::Ready(r) => r,
        Resolved::Unavailable(p) => {
            return pending(&ctx, &api, &ns, &name, &before, status, &p.message, t).await;
        }
    };
    // Self-signing needs the request's private key, named by an annotation.
    let key = if resolved.digest == "selfSigned" {
        let Some(secret) = cr.metadata.annotations.get(ann::PRIVATE_KEY_SECRET) else {
            let p = Problem {
                reason: "Failed".into(),
                message: format!(
                    "a self-signed issuer needs the annotation {} naming the Secret that holds the request's private key",
                    ann::PRIVATE_KEY_SECRET
                ),
            };
            return fail(&ctx, &api, &obj, &id, &before, status, &p, t).await;
        };
        let key_pem = read_secret(&ctx.client, &ns, secret)
            .await?
            .and_then(|s| s.data.get(keys::TLS_KEY).cloned());
        let Some(key_pem) = key_pem else {
            let msg =
                format!("Secret {ns}/{secret} with the request's private key (tls.key) not found");
            return pending(&ctx, &api, &ns, &name, &before, status, &msg, t).await;
        };
        match PrivateKey::from_pem(&key_pem) {
            Ok(k) => Some(k),
            Err(e) => {
                let p = Problem {
                    reason: "Failed".into(),
                    message: format!("Secret {ns}/{secret} tls.key: {e}"),
                };
                return fail(&ctx, &api, &obj, &id, &before, status, &p, t).await;
            }
        }
    } else {
        None
    };
    let issuer = resolved.issuer.clone();
    let spec = spec.clone();
    let csr_pem = params.csr_pem.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        issuer.process(&Request {
            csr_pem: &csr_pem,
            spec: &spec,
            key: key.as_ref(),
            state: &serde_json::Value::Null,
            now: t,
        })
    })
    .await
    .map_err(|e| Error::Other(e.to_string()))?;
    match outcome {
        Outcome::Issued(issued) => {
            status.certificate = Some(base64_pem(&issued.chain));
            status.ca = Some(base64_pem(&issued.ca));
            set_condition(
                &mut status.conditions,
                "Ready",
                true,
                "Issued",
                "Certificate fetched from issuer successfully",
                t,
            );
            write_status(&api, &name, &before, &status).await?;
            ctx.metrics.requests_signed.inc();
            tracing::info!(request = %id, "certificate request signed");
            event(
                &ctx,
                &obj,
                &certificate_requests(),
                EventType::Normal,
                "CertificateIssued",
                "Certificate fetched from issuer successfully",
                "Sign",
            )
            .await;
            Ok(Action::await_change())
        }
        Outcome::Pending {
            reason,
            message,
            retry_after,
            ..
        } => {
            pending(
                &ctx,
                &api,
                &ns,
                &name,
                &before,
                status,
                &format!("{reason}: {message}"),
                t,
            )
            .await?;
            Ok(Action::requeue(retry_after))
        }
        Outcome::Failed { reason, message } => {
            let p = Problem {
                reason: "Failed".into(),
                message: format!("{reason}: {message}"),
            };
            fail(&ctx, &api, &obj, &id, &before, status, &p, t).await
        }
    }
}

async fn write_status(
    api: &Api<DynamicObject>,
    name: &str,
    before: &CertificateRequestStatus,
    status: &CertificateRequestStatus,
) -> Result<(), Error> {
    if before != status {
        api.patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(&json!({ "status": status })),
        )
        .await?;
    }
    Ok(())
}

/// Ends a request: Ready=False with the reason, failureTime, a Warning event.
#[allow(clippy::too_many_arguments)]
async fn fail(
    ctx: &Context,
    api: &Api<DynamicObject>,
    obj: &DynamicObject,
    id: &str,
    before: &CertificateRequestStatus,
    mut status: CertificateRequestStatus,
    p: &Problem,
    t: i64,
) -> Result<Action, Error> {
    set_condition(
        &mut status.conditions,
        "Ready",
        false,
        &p.reason,
        &p.message,
        t,
    );
    status.failure_time = Some(rfc3339(t));
    write_status(api, &obj.name_any(), before, &status).await?;
    tracing::warn!(request = %id, reason = %p.reason, message = %p.message, "certificate request failed");
    event(
        ctx,
        obj,
        &certificate_requests(),
        EventType::Warning,
        &p.reason,
        &p.message,
        "Sign",
    )
    .await;
    Ok(Action::await_change())
}

/// Keeps a request waiting (Ready=False `Pending`) and asks again later.
#[allow(clippy::too_many_arguments)]
async fn pending(
    ctx: &Context,
    api: &Api<DynamicObject>,
    ns: &str,
    name: &str,
    before: &CertificateRequestStatus,
    mut status: CertificateRequestStatus,
    message: &str,
    t: i64,
) -> Result<Action, Error> {
    set_condition(
        &mut status.conditions,
        "Ready",
        false,
        "Pending",
        message,
        t,
    );
    write_status(api, name, before, &status).await?;
    if let Ok(mut p) = ctx.pending_requests.lock() {
        p.insert((ns.to_string(), name.to_string()));
    }
    Ok(Action::requeue(RETRY_PENDING))
}
