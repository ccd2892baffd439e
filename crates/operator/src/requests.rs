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
use crate::kinds::{RequestObject, Spec};
use crate::lookup::{self, read_secret};
use crate::resources::{event, now, StatusPatch};
use certwright_api::annotations::{self as ann, keys};
use certwright_api::{validate, CertificateRequest, CertificateRequestStatus, GROUP};
use certwright_engine::issue::{Outcome, Request};
use certwright_engine::status::set_condition;
use certwright_engine::{Problem, Resolved};
use certwright_pki::der::rfc3339;
use certwright_pki::PrivateKey;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::ResourceExt;
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
    cached: Arc<RequestObject>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    if cached.labels().get(ann::MANAGED_BY.0).map(String::as_str) == Some(ann::MANAGED_BY.1) {
        return Ok(Action::await_change());
    }
    let ns = cached.namespace().unwrap_or_default();
    let name = cached.name_any();
    let api: Api<RequestObject> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(obj) = api.get_opt(&name).await? else {
        return Ok(Action::await_change());
    };
    let before: CertificateRequestStatus = obj.status_or_default();
    if finished(&before) || !for_our_issuers(&obj) {
        return Ok(Action::await_change());
    }
    if let Ok(mut p) = ctx.pending_requests.lock() {
        p.remove(&(ns.clone(), name.clone()));
    }
    let job = Job {
        ctx: &ctx,
        api: &api,
        obj: &obj,
        id: format!("{ns}/{name}"),
        ns: &ns,
        before: &before,
        t: now(),
    };
    let mut status = before.clone();
    let (cr, params) = match admit(&obj, &mut status, job.t) {
        Ok(v) => v,
        Err(p) => return job.fail(status, &p).await,
    };
    let spec = &params.issuance;
    let found = lookup::issuer(&ctx, &ns, &spec.issuer_name, spec.issuer_kind).await?;
    let resolved = match found.resolve(job.t) {
        Resolved::Ready(r) => r,
        Resolved::Unavailable(p) => return job.pending(status, &p.message).await,
    };
    let key = if resolved.digest == "selfSigned" {
        match self_signed_key(&ctx, &ns, &cr).await? {
            Ok(k) => Some(k),
            Err(KeyProblem::Missing(msg)) => return job.pending(status, &msg).await,
            Err(KeyProblem::Invalid(p)) => return job.fail(status, &p).await,
        }
    } else {
        None
    };
    let issuer = resolved.issuer.clone();
    // What the issuer keeps between steps (an ACME order's record), kept on the request
    // so that a restart or another replica resumes the same order.
    let state: serde_json::Value = obj
        .annotations()
        .get(ann::ISSUER_STATE)
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default();
    let outcome = process(issuer, &params, key, &state, &job, obj.labels().clone()).await?;
    let acme = found.acme_spec().map(|a| (a, cr));
    match outcome {
        Outcome::Issued(issued) => {
            job.keep_state(&state, &issued.state, acme, Some(Ok(())))
                .await?;
            job.signed(status, &issued.chain, &issued.ca).await
        }
        Outcome::Pending {
            reason,
            message,
            retry_after,
            state: next,
        } => {
            job.keep_state(&state, &next, acme, None).await?;
            job.pending(status, &format!("{reason}: {message}")).await?;
            Ok(Action::requeue(retry_after))
        }
        Outcome::Failed { reason, message } => {
            let p = Problem {
                reason: "Failed".into(),
                message: format!("{reason}: {message}"),
            };
            job.keep_state(&state, &state, acme, Some(Err(p.message.clone())))
                .await?;
            job.fail(status, &p).await
        }
    }
}

/// Asks the issuer about the request (off the async threads: signing is CPU work).
async fn process(
    issuer: Arc<dyn certwright_engine::issue::Issuer>,
    params: &validate::RequestParams,
    key: Option<PrivateKey>,
    state: &serde_json::Value,
    job: &Job<'_>,
    labels: std::collections::BTreeMap<String, String>,
) -> Result<Outcome, Error> {
    let (spec, csr_pem, t) = (params.issuance.clone(), params.csr_pem.clone(), job.t);
    let (subject, state) = (job.id.clone(), state.clone());
    tokio::task::spawn_blocking(move || {
        issuer.process(&Request {
            subject: &subject,
            labels: &labels,
            csr_pem: &csr_pem,
            spec: &spec,
            key: key.as_ref(),
            state: &state,
            current: None,
            now: t,
        })
    })
    .await
    .map_err(|e| Error::Other(e.to_string()))
}

/// A request that is Ready, Failed or Denied is done with, as in cert-manager.
fn finished(status: &CertificateRequestStatus) -> bool {
    status.conditions.iter().any(|c| {
        c.type_ == "Ready" && (c.status == "True" || c.reason == "Failed" || c.reason == "Denied")
    })
}

/// Requests for issuers of other groups belong to their own signers (checked before
/// parsing: their specs are theirs to define).
fn for_our_issuers(obj: &RequestObject) -> bool {
    let group = match &obj.spec {
        Spec::Read(spec) => spec.issuer_ref.group.as_deref(),
        Spec::Unreadable { issuer_group, .. } => issuer_group.as_deref(),
        Spec::NotKept => None,
    };
    group.filter(|g| !g.is_empty()).unwrap_or(GROUP) == GROUP
}

/// Reads and validates the request, and approves it unless an approver denied it.
fn admit(
    obj: &RequestObject,
    status: &mut CertificateRequestStatus,
    t: i64,
) -> Result<(CertificateRequest, validate::RequestParams), Problem> {
    let invalid = |e: String| Problem {
        reason: "Failed".into(),
        message: format!("The CertificateRequest is invalid: {e}"),
    };
    let cr: CertificateRequest = obj.object().map_err(invalid)?;
    let denied = status
        .conditions
        .iter()
        .any(|c| c.type_ == "Denied" && c.status == "True");
    if denied {
        return Err(Problem {
            reason: "Denied".into(),
            message: "The CertificateRequest was denied by an approval controller".into(),
        });
    }
    if !status.conditions.iter().any(|c| c.type_ == "Approved") {
        set_condition(
            &mut status.conditions,
            "Approved",
            true,
            "cert-manager.io",
            "Certificate request has been approved by cert-manager.io",
            t,
        );
    }
    let params =
        validate::certificate_request(&cr).map_err(|errs| invalid(validate::join(&errs)))?;
    Ok((cr, params))
}

/// Why a self-signed request's private key is not there to sign with.
enum KeyProblem {
    /// Not there yet: the request waits.
    Missing(String),
    /// Wrong: the request fails.
    Invalid(Problem),
}

/// Self-signing needs the request's private key, in the Secret an annotation names.
async fn self_signed_key(
    ctx: &Context,
    ns: &str,
    cr: &CertificateRequest,
) -> Result<Result<PrivateKey, KeyProblem>, Error> {
    let Some(secret) = cr.metadata.annotations.get(ann::PRIVATE_KEY_SECRET) else {
        return Ok(Err(KeyProblem::Invalid(Problem {
            reason: "Failed".into(),
            message: format!(
                "a self-signed issuer needs the annotation {} naming the Secret that holds the request's private key",
                ann::PRIVATE_KEY_SECRET
            ),
        })));
    };
    let key_pem = read_secret(&ctx.client, ns, secret)
        .await?
        .and_then(|s| s.data.get(keys::TLS_KEY).cloned());
    let Some(key_pem) = key_pem else {
        return Ok(Err(KeyProblem::Missing(format!(
            "Secret {ns}/{secret} with the request's private key (tls.key) not found"
        ))));
    };
    Ok(PrivateKey::from_pem(&key_pem).map_err(|e| {
        KeyProblem::Invalid(Problem {
            reason: "Failed".into(),
            message: format!("Secret {ns}/{secret} tls.key: {e}"),
        })
    }))
}

/// One request being reconciled: what each way of ending it needs.
struct Job<'a> {
    ctx: &'a Context,
    api: &'a Api<RequestObject>,
    obj: &'a RequestObject,
    /// `namespace/name`, for logs.
    id: String,
    ns: &'a str,
    before: &'a CertificateRequestStatus,
    t: i64,
}

impl Job<'_> {
    /// Keeps the issuer's state on the request when it changed and, for an ACME issuer,
    /// shows it as an Order and Challenges (`ended`: issued, failed, or still pending).
    async fn keep_state(
        &self,
        before: &serde_json::Value,
        after: &serde_json::Value,
        acme: Option<(&certwright_api::acme::AcmeIssuer, CertificateRequest)>,
        ended: Option<Result<(), String>>,
    ) -> Result<(), Error> {
        if after != before && !after.is_null() {
            let patch = crate::resources::AnnotationsPatch::new(std::collections::BTreeMap::from(
                [(ann::ISSUER_STATE.to_string(), Some(after.to_string()))],
            ));
            self.api
                .patch(
                    &self.obj.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await?;
        }
        let Some((issuer, mut view)) = acme else {
            return Ok(());
        };
        if !after.is_null() {
            view.metadata
                .annotations
                .insert(ann::ISSUER_STATE.into(), after.to_string());
        }
        if let Some(end) = ended {
            let mut st = CertificateRequestStatus::default();
            let (ok, reason, message) = match &end {
                Ok(()) => (true, "Issued", ""),
                Err(m) => (false, "Failed", m.as_str()),
            };
            set_condition(&mut st.conditions, "Ready", ok, reason, message, self.t);
            view.status = Some(st);
        }
        crate::acme_objects::sync(self.ctx, self.obj, &view, issuer).await
    }

    async fn write_status(&self, status: &CertificateRequestStatus) -> Result<(), Error> {
        if self.before != status {
            self.api
                .patch_status(
                    &self.obj.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&StatusPatch { status }),
                )
                .await?;
        }
        Ok(())
    }

    async fn event(&self, type_: EventType, reason: &str, note: &str) {
        event(self.ctx, self.obj, type_, reason, note, "Sign").await;
    }

    /// Signed: the chain and CA in the status, Ready=True `Issued`.
    async fn signed(
        &self,
        mut status: CertificateRequestStatus,
        chain: &[Vec<u8>],
        ca: &[Vec<u8>],
    ) -> Result<Action, Error> {
        const ISSUED: &str = "Certificate fetched from issuer successfully";
        status.certificate = Some(base64_pem(chain));
        status.ca = Some(base64_pem(ca));
        set_condition(
            &mut status.conditions,
            "Ready",
            true,
            "Issued",
            ISSUED,
            self.t,
        );
        self.write_status(&status).await?;
        self.ctx.metrics.requests_signed.inc();
        tracing::info!(request = %self.id, "certificate request signed");
        self.event(EventType::Normal, "CertificateIssued", ISSUED)
            .await;
        Ok(Action::await_change())
    }

    /// Ends a request: Ready=False with the reason, failureTime, a Warning event.
    async fn fail(
        &self,
        mut status: CertificateRequestStatus,
        p: &Problem,
    ) -> Result<Action, Error> {
        set_condition(
            &mut status.conditions,
            "Ready",
            false,
            &p.reason,
            &p.message,
            self.t,
        );
        status.failure_time = Some(rfc3339(self.t));
        self.write_status(&status).await?;
        tracing::warn!(request = %self.id, reason = %p.reason, message = %p.message, "certificate request failed");
        self.event(EventType::Warning, &p.reason, &p.message).await;
        Ok(Action::await_change())
    }

    /// Keeps a request waiting (Ready=False `Pending`) and asks again later.
    async fn pending(
        &self,
        mut status: CertificateRequestStatus,
        message: &str,
    ) -> Result<Action, Error> {
        set_condition(
            &mut status.conditions,
            "Ready",
            false,
            "Pending",
            message,
            self.t,
        );
        self.write_status(&status).await?;
        if let Ok(mut p) = self.ctx.pending_requests.lock() {
            p.insert((self.ns.to_string(), self.obj.name_any()));
        }
        Ok(Action::requeue(RETRY_PENDING))
    }
}
