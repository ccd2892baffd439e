//! The Certificate controller: loads a Certificate's lifecycle state from the cluster,
//! observes its Secret, issuer and passwords, asks the engine for a step, and applies it
//! (Secret, CertificateRequest, next-private-key Secret, Events, status). Renewal is
//! scheduled from the renewal time, not polled.
//!
//! The state lives where cert-manager keeps it, so users' tools read it and a restart
//! forgets nothing: `status.failedIssuanceAttempts` and `status.lastFailureTime` (the
//! backoff), `status.nextPrivateKeySecretName` naming a Secret labelled
//! `cert-manager.io/next-private-key` that holds a pending request's key, and the pending
//! or failed CertificateRequest `<name>-<revision>` (its CSR, the issuer's state, the
//! inputs that failed). Unlike cert-manager, a key is kept in a Secret only while a request
//! is pending: a CA or self-signed issuer answers at once, and an extra Secret per
//! issuance would double the writes for nothing.

use crate::context::{Context, Error};
use crate::kinds::{CertificateObject, RequestObject, Spec};
use crate::lookup::{self, read_secret};
use crate::resources::{
    event, now, owned_by_certificate, secret_data, AnnotationsPatch, StatusPatch,
};
use certwright_api::annotations as ann;
use certwright_api::validate::{self, CertificateParams};
use certwright_api::{Certificate, CertificateRequest, CertificateStatus};
use certwright_engine::lifecycle::{self, Effect, Observed, Summary};
use certwright_engine::render::Metadata;
use certwright_engine::status::set_condition;
use certwright_engine::{Failures, Pending, Problem, SecretData, State};
use certwright_pki::der::{parse_rfc3339, rfc3339};
use certwright_pki::PrivateKey;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::ResourceExt;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// A merge patch that turns `before` into `after`: fields `after` no longer has are
/// set to null (a merge patch leaves out-of-patch fields as they are).
fn status_patch(
    before: &Option<CertificateStatus>,
    after: &CertificateStatus,
) -> StatusPatch<Value> {
    let mut patch =
        serde_json::to_value(after).unwrap_or_else(|_| Value::Object(Default::default()));
    if let (Some(b), Some(p)) = (
        before.as_ref().and_then(|b| serde_json::to_value(b).ok()),
        patch.as_object_mut(),
    ) {
        for k in b.as_object().map(|o| o.keys()).into_iter().flatten() {
            p.entry(k.clone()).or_insert(Value::Null);
        }
    }
    StatusPatch { status: patch }
}

async fn patch_status(
    ctx: &Context,
    ns: &str,
    name: &str,
    before: &Option<CertificateStatus>,
    status: &CertificateStatus,
) -> Result<(), Error> {
    let t = |v: &Option<String>| v.as_deref().and_then(parse_rfc3339);
    let issuer = ctx
        .issuer_labels
        .lock()
        .ok()
        .and_then(|m| m.get(&(ns.to_string(), name.to_string())).cloned())
        .unwrap_or_default();
    ctx.metrics.set(
        ns,
        name,
        crate::observe::CertMetric {
            not_before: t(&status.not_before),
            not_after: t(&status.not_after),
            renewal: t(&status.renewal_time),
            ready: status
                .condition("Ready")
                .map(|c| c.status.clone())
                .unwrap_or_else(|| "Unknown".into()),
            issuer_name: issuer.0,
            issuer_kind: issuer.1,
            issuer_group: issuer.2,
        },
    );
    if before.as_ref() == Some(status) {
        return Ok(());
    }
    let api: Api<CertificateObject> = Api::namespaced(ctx.client.clone(), ns);
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(&status_patch(before, status)),
    )
    .await?;
    Ok(())
}

/// Writes a Secret whole: create, or replace at the resourceVersion read (a conflict is
/// an error the controller retries, so two writers never interleave).
async fn write_secret(
    ctx: &Context,
    ns: &str,
    name: &str,
    desired: &SecretData,
    current: Option<&Secret>,
) -> Result<(), Error> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let mut s = Secret {
        type_: desired.type_.clone(),
        data: Some(
            desired
                .data
                .iter()
                .map(|(k, v)| (k.clone(), ByteString(v.clone())))
                .collect(),
        ),
        ..Default::default()
    };
    s.metadata.name = Some(name.into());
    s.metadata.namespace = Some(ns.into());
    s.metadata.annotations = Some(desired.annotations.clone());
    s.metadata.labels = Some(desired.labels.clone());
    let written = match current {
        Some(c) => {
            s.metadata.resource_version = c.metadata.resource_version.clone();
            s.metadata.owner_references = c.metadata.owner_references.clone();
            api.replace(name, &PostParams::default(), &s).await?
        }
        None => api.create(&PostParams::default(), &s).await?,
    };
    if let (Some(rv), Ok(mut w)) = (written.metadata.resource_version, ctx.own_writes.lock()) {
        w.insert((ns.to_string(), name.to_string()), rv);
    }
    Ok(())
}

/// Records a request as a CertificateRequest, creating it or updating the one of that
/// name (a pending request that is now issued or failed), then prunes old ones.
async fn record_request(
    ctx: &Context,
    cert: &CertificateObject,
    request: &CertificateRequest,
    limit: u32,
) -> Result<RequestObject, Error> {
    let ns = cert.namespace().unwrap_or_default();
    let api: Api<RequestObject> = Api::namespaced(ctx.client.clone(), &ns);
    let uid = cert.metadata.uid.clone().unwrap_or_default();
    let name = request.metadata.name.clone();
    // Owned by the Certificate, so deleting it deletes its requests (garbage collection);
    // labelled with its UID, so its requests can be listed without reading the others.
    let metadata = ObjectMeta {
        name: Some(name.clone()),
        namespace: Some(ns.clone()),
        labels: Some(BTreeMap::from([
            (ann::MANAGED_BY.0.to_string(), ann::MANAGED_BY.1.to_string()),
            (ann::CERTIFICATE_UID.to_string(), uid.clone()),
        ])),
        annotations: Some(request.metadata.annotations.clone()),
        owner_references: Some(owned_by_certificate(cert)),
        ..Default::default()
    };
    let new = RequestObject::new(metadata, request.spec.clone());
    let written = match api.create(&PostParams::default(), &new).await {
        Ok(o) => o,
        Err(kube::Error::Api(e)) if e.code == 409 => {
            // The same request, further along: its annotations (issuer state, failed
            // inputs) are replaced whole.
            let mut annotations: BTreeMap<String, Option<String>> = request
                .metadata
                .annotations
                .iter()
                .map(|(k, v)| (k.clone(), Some(v.clone())))
                .collect();
            for k in [ann::REQUEST_SPEC, ann::ISSUER_STATE, ann::FAILED_INPUTS] {
                annotations.entry(k.into()).or_insert(None);
            }
            let patch = AnnotationsPatch::new(annotations);
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?
        }
        Err(e) => return Err(e.into()),
    };
    let status = StatusPatch {
        status: &request.status,
    };
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    let revision = lifecycle::request_revision(&name);
    prune_requests(&api, &uid, revision, limit).await?;
    Ok(written)
}

/// Deletes a Certificate's CertificateRequests older than its last `limit` revisions
/// (`spec.revisionHistoryLimit`).
async fn prune_requests(
    api: &Api<RequestObject>,
    uid: &str,
    revision: i64,
    limit: u32,
) -> Result<(), Error> {
    let list = api
        .list(&ListParams::default().labels(&format!("{}={uid}", ann::CERTIFICATE_UID)))
        .await?;
    for cr in list.items {
        let rev: Option<i64> = cr
            .annotations()
            .get(ann::CERT_REVISION)
            .and_then(|r| r.parse().ok());
        if rev.is_some_and(|r| r <= revision - i64::from(limit.max(1))) {
            delete_ignoring_missing(api, &cr.name_any()).await?;
        }
    }
    Ok(())
}

async fn delete_ignoring_missing<K>(api: &Api<K>, name: &str) -> Result<(), Error>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Keeps a pending request's private key in a Secret labelled as cert-manager labels its
/// next-private-key Secrets, owned by the Certificate.
async fn store_key(
    ctx: &Context,
    cert: &CertificateObject,
    name: &str,
    pem: &str,
) -> Result<(), Error> {
    let ns = cert.namespace().unwrap_or_default();
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let s = Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(ns.clone()),
            labels: Some(BTreeMap::from([
                (ann::NEXT_PRIVATE_KEY_LABEL.to_string(), "true".to_string()),
                (ann::MANAGED_BY.0.to_string(), ann::MANAGED_BY.1.to_string()),
            ])),
            owner_references: Some(owned_by_certificate(cert)),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(
            ann::keys::TLS_KEY.to_string(),
            ByteString(pem.as_bytes().to_vec()),
        )])),
        ..Default::default()
    };
    api.create(&PostParams::default(), &s).await?;
    Ok(())
}

/// A pending request's kept key, if its Secret is there and holds one.
async fn load_key(ctx: &Context, ns: &str, name: &str) -> Result<Option<PrivateKey>, Error> {
    Ok(read_secret(&ctx.client, ns, name)
        .await?
        .and_then(|s| s.get("tls.key").and_then(|b| PrivateKey::from_pem(b).ok())))
}

/// Whether the API refused a write for its content (too large, invalid): retrying the
/// same write cannot succeed.
fn permanent_write_error(e: &Error) -> Option<String> {
    match e {
        Error::Kube(kube::Error::Api(r))
            if matches!(r.code, 400 | 413 | 422) || r.message.contains("too large") =>
        {
            Some(format!(
                "the API server refused the Secret ({}): {}",
                r.code, r.message
            ))
        }
        _ => None,
    }
}

/// When the Secret `secret_name` is written by Certificate `writer` and `writer` asks for
/// it too and is older than `obj` (by creation time, then name), `obj` must not write it.
async fn duplicate_of(
    ctx: &Context,
    obj: &CertificateObject,
    writer: &str,
    secret_name: &str,
) -> Result<Option<Problem>, Error> {
    let ns = obj.namespace().unwrap_or_default();
    let api: Api<CertificateObject> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(other) = api.get_opt(writer).await? else {
        return Ok(None);
    };
    let same = matches!(&other.spec, Spec::Read(s) if s.secret_name == secret_name);
    let order = |o: &CertificateObject| {
        (
            o.metadata.creation_timestamp.clone().map(|t| t.0),
            o.name_any(),
        )
    };
    if same && order(&other) < order(obj) {
        return Ok(Some(Problem::new(
            "DuplicateSecretName",
            format!(
                "spec.secretName: secret {ns}/{secret_name} is already written by Certificate {writer}"
            ),
        )));
    }
    Ok(None)
}

fn requeue_at(at: Option<i64>, t: i64) -> Action {
    match at {
        Some(at) => Action::requeue(Duration::from_secs((at - t).clamp(1, 30 * 24 * 3600) as u64)),
        None => Action::await_change(),
    }
}

/// The lifecycle state of a Certificate, from where the operator keeps it: the status,
/// and (when an issuance is in progress or failed) the request `<name>-<revision + 1>`
/// and the kept key.
async fn load_state(
    ctx: &Context,
    ns: &str,
    name: &str,
    status: CertificateStatus,
) -> Result<(State, Option<PrivateKey>), Error> {
    let attempts = status.failed_issuance_attempts.unwrap_or(0);
    let issuing = status
        .condition("Issuing")
        .is_some_and(|c| c.status == "True");
    let mut state = State {
        failures: Failures {
            attempts: u32::try_from(attempts).unwrap_or(0),
            last_failure: status
                .last_failure_time
                .as_deref()
                .and_then(parse_rfc3339)
                .unwrap_or(0),
            inputs: String::new(),
        },
        ..Default::default()
    };
    let mut key = None;
    if attempts > 0 || issuing || status.next_private_key_secret_name.is_some() {
        let api: Api<RequestObject> = Api::namespaced(ctx.client.clone(), ns);
        let request = format!("{name}-{}", status.revision.unwrap_or(0) + 1);
        if let Some(cr) = api.get_opt(&request).await? {
            if let Ok(cr) = cr.object() {
                if let Some(inputs) = lifecycle::failed_inputs(&cr) {
                    state.failures.inputs = inputs.into();
                }
                state.pending = Pending::from_request(&cr).map(Box::new);
            }
        }
        if let (Some(_), Some(k)) = (&state.pending, &status.next_private_key_secret_name) {
            key = load_key(ctx, ns, k).await?;
        }
    }
    state.status = status;
    Ok((state, key))
}

/// What the step needs that the shell read, owned (the step runs on a blocking thread).
struct Observation {
    ns: String,
    name: String,
    params: CertificateParams,
    current: Option<SecretData>,
    resolved: certwright_engine::Resolved,
    passwords: Result<certwright_engine::render::Passwords, Problem>,
    pending_key: Option<PrivateKey>,
    labels: std::collections::BTreeMap<String, String>,
    generation: Option<i64>,
    t: i64,
}

impl Observation {
    fn step(self, state: State) -> lifecycle::Step {
        let none = || None;
        lifecycle::step(
            state,
            &Observed {
                namespace: &self.ns,
                name: &self.name,
                labels: &self.labels,
                params: &self.params,
                secret: self.current.as_ref(),
                secret_base: None,
                metadata: Metadata::KeepOthers,
                issuer: &self.resolved,
                passwords: &self.passwords,
                pending_key: self.pending_key.as_ref(),
                recorded_revision: &none,
                now: self.t,
                generation: self.generation,
                ca_rotation: OPERATOR_CA_ROTATION,
            },
        )
    }
}

/// The pace of a CA rotation in a cluster: the kubelet takes up to a minute or two to
/// update a mounted Secret, so a new CA is trusted for 2 minutes before any leaf it signs
/// is presented, and the old one is dropped 6 minutes after.
const OPERATOR_CA_ROTATION: certwright_engine::carotation::Timing =
    certwright_engine::carotation::Timing {
        grace: 120,
        overlap: 360,
    };

/// Applies a step's effects in order. A Secret the API refuses for its content makes the
/// attempt a failure (the engine's [`lifecycle::refused`]), whose effects are applied in
/// turn.
async fn apply(
    ctx: &Context,
    obj: &CertificateObject,
    params: &CertificateParams,
    current: Option<&Secret>,
    mut step: lifecycle::Step,
    t: i64,
    acme: Option<&certwright_api::acme::AcmeIssuer>,
) -> Result<lifecycle::Step, Error> {
    let ns = obj.namespace().unwrap_or_default();
    let key_str = format!("{ns}/{}", obj.name_any());
    let effects = std::mem::take(&mut step.effects);
    for effect in effects {
        match effect {
            Effect::WriteSecret(desired) => {
                if let Err(e) = write_secret(ctx, &ns, &params.secret_name, &desired, current).await
                {
                    let (Some(message), Some(r)) = (permanent_write_error(&e), step.on_refusal)
                    else {
                        return Err(e);
                    };
                    let failed = lifecycle::refused(*r, &key_str, &message, t);
                    return Box::pin(apply(ctx, obj, params, None, failed, t, acme)).await;
                }
            }
            Effect::Request { request, limit, .. } => {
                let written = record_request(ctx, obj, &request, limit).await?;
                if let Some(acme) = acme {
                    crate::acme_objects::sync(ctx, &written, &request, acme).await?;
                }
            }
            Effect::StoreKey { name, pem } => store_key(ctx, obj, &name, &pem.0).await?,
            Effect::DeleteKey { name } => {
                let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
                delete_ignoring_missing(&api, &name).await?
            }
            Effect::Event {
                warning,
                reason,
                action,
                message,
            } => {
                let type_ = if warning {
                    EventType::Warning
                } else {
                    EventType::Normal
                };
                event(ctx, obj, type_, reason, &message, action).await
            }
        }
    }
    Ok(step)
}

/// Reads the Certificate fresh and validates it; a Certificate that cannot be read as
/// one, or is invalid, gets Ready False with why and waits for a change.
async fn read_certificate(
    ctx: &Context,
    ns: &str,
    name: &str,
    t: i64,
) -> Result<Option<(CertificateObject, Certificate, CertificateParams)>, Error> {
    // The watch cache can lag behind this controller's own status writes: read the
    // Certificate fresh, so status is never written back from a stale copy.
    let api: Api<CertificateObject> = Api::namespaced(ctx.client.clone(), ns);
    let Some(obj) = api.get_opt(name).await? else {
        ctx.forget(ns, name);
        return Ok(None);
    };
    let (problem, before) = match obj.object() {
        Ok(cert) => match validate::certificate(&cert) {
            Ok(p) => return Ok(Some((obj, cert, p))),
            Err(errs) => (
                Problem::new(errs[0].reason, validate::join(&errs)),
                cert.status,
            ),
        },
        Err(e) => (Problem::new("InvalidManifest", e), obj.status.clone()),
    };
    let mut status: CertificateStatus = before.clone().unwrap_or_default();
    set_condition(
        &mut status.conditions,
        "Ready",
        false,
        &problem.reason,
        &problem.message,
        t,
    );
    for c in &mut status.conditions {
        c.observed_generation = obj.metadata.generation;
    }
    patch_status(ctx, ns, name, &before, &status).await?;
    Ok(None)
}

/// Reconciles one Certificate, timed.
pub(crate) async fn reconcile(
    cached: Arc<CertificateObject>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    ctx.metrics.reconciles.inc();
    let result = reconcile_certificate(&cached, &ctx, started).await;
    ctx.metrics
        .reconcile_duration
        .observe(started.elapsed().as_secs_f64());
    result
}

/// Two Certificates naming one Secret: the older one writes it; the other reports
/// DuplicateSecretName and waits (the order by creation never flips, so they never
/// alternate). True when this Certificate is the one that waits (its status then says so).
async fn blocked_by_duplicate(
    ctx: &Context,
    obj: &CertificateObject,
    current: Option<&SecretData>,
    secret_name: &str,
    before: &Option<CertificateStatus>,
    t: i64,
) -> Result<bool, Error> {
    let (ns, name) = (obj.namespace().unwrap_or_default(), obj.name_any());
    let writer = current
        .and_then(|s| s.annotations.get(ann::CERT_NAME))
        .filter(|w| **w != name);
    let Some(writer) = writer else {
        return Ok(false);
    };
    let Some(p) = duplicate_of(ctx, obj, writer, secret_name).await? else {
        return Ok(false);
    };
    let state = State {
        status: before.clone().unwrap_or_default(),
        ..Default::default()
    };
    let blocked = lifecycle::blocked(state, &p, t, None);
    patch_status(ctx, &ns, &name, before, &blocked.state.status).await?;
    Ok(true)
}

async fn reconcile_certificate(
    cached: &CertificateObject,
    ctx: &Context,
    started: std::time::Instant,
) -> Result<Action, Error> {
    let ns = cached.namespace().unwrap_or_default();
    let name = cached.name_any();
    let t = now();
    let cert_key = (ns.clone(), name.clone());
    let Some((obj, cert, params)) = read_certificate(ctx, &ns, &name, t).await? else {
        return Ok(Action::await_change());
    };
    if let Ok(mut l) = ctx.issuer_labels.lock() {
        let r = &cert.spec.issuer_ref;
        l.insert(
            cert_key.clone(),
            (
                r.name.clone(),
                r.kind_or_default().to_string(),
                r.group_or_default().to_string(),
            ),
        );
    }
    let before = cert.status.clone();
    let status = before.clone().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let current_obj = secrets.get_opt(&params.secret_name).await?;
    let current = current_obj.as_ref().map(secret_data);
    if blocked_by_duplicate(ctx, &obj, current.as_ref(), &params.secret_name, &before, t).await? {
        return Ok(Action::requeue(Duration::from_secs(300)));
    }
    let (state, pending_key) = load_state(ctx, &ns, &name, status).await?;
    let mut password_secrets = BTreeMap::new();
    for s in lifecycle::password_secrets(&params) {
        password_secrets.insert(s, read_secret(&ctx.client, &ns, s).await?);
    }
    let passwords = lifecycle::passwords(&ns, &params, &password_secrets);
    let issuance = &params.issuance;
    let found = lookup::issuer(ctx, &ns, &issuance.issuer_name, issuance.issuer_kind).await?;
    let resolved = found.resolve(t);
    let acme = found.acme_spec().cloned();
    let observation = Observation {
        ns: ns.clone(),
        name: name.clone(),
        params: params.clone(),
        current,
        resolved,
        passwords,
        pending_key,
        labels: obj.labels().clone(),
        generation: obj.metadata.generation,
        t,
    };
    // Key generation and signing are CPU work: off the async threads.
    let step = tokio::task::spawn_blocking(move || observation.step(state))
        .await
        .map_err(|e| Error::Other(e.to_string()))?;
    if let Ok(mut w) = ctx.waiting.lock() {
        if step.summary == Summary::WaitingForIssuer {
            w.insert(cert_key.clone());
        } else {
            w.remove(&cert_key);
        }
    }
    let step = apply(
        ctx,
        &obj,
        &params,
        current_obj.as_ref(),
        step,
        t,
        acme.as_ref(),
    )
    .await?;
    patch_status(ctx, &ns, &name, &before, &step.state.status).await?;
    match step.summary {
        Summary::Issued { .. } => {
            ctx.metrics.issuances.inc();
            ctx.metrics
                .issuance_duration
                .observe(started.elapsed().as_secs_f64());
        }
        Summary::Failed => {
            ctx.metrics.issuance_failures.inc();
        }
        _ => {}
    }
    if let Some(at) = step.next_check {
        tracing::debug!(certificate = %format!("{ns}/{name}"), next = %rfc3339(at), "certificate reconciled");
    }
    Ok(requeue_at(step.next_check, t))
}
