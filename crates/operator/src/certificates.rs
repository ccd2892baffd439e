//! The Certificate controller: asks the engine what to do with each Certificate, then
//! writes its Secret (one whole write), records the issuance as a CertificateRequest,
//! and patches status. Renewal is scheduled from the renewal time, not polled.

use crate::requests::MANAGED_BY;

/// Label on the CertificateRequests certwright records: the UID of their Certificate.
pub(crate) const CERTIFICATE_UID: &str = "certwright.io/certificate-uid";
use crate::{
    certificate_requests, certificates, event, log, now, observe, problem, read_secret,
    resolve_issuer, secret_data, typed, Context, Error, Problem, LAST_ISSUANCE,
};
use certwright_api::validate::{self, CertificateParams, PasswordSource};
use certwright_api::{Certificate, CertificateStatus, API_VERSION};
use certwright_engine::issue::{self, Outcome, Request};
use certwright_engine::render::{self, Material, Passwords};
use certwright_engine::status::{remove_condition, set_condition};
use certwright_engine::{
    decide, BackoffPolicy, Decision, Failures, Inputs, LastIssuance, SecretData, TlsMaterial,
};
use certwright_pki::der::rfc3339;
use certwright_pki::inspect::CertInfo;
use certwright_pki::PrivateKey;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::ResourceExt;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

async fn password(
    ctx: &Context,
    ns: &str,
    src: &PasswordSource,
    field: &str,
) -> Result<Result<String, Problem>, Error> {
    Ok(match src {
        PasswordSource::Literal(p) => Ok(p.clone()),
        PasswordSource::SecretRef { name, key } => {
            match read_secret(&ctx.client, ns, name).await? {
                None => Err(problem(
                    "MissingPasswordSecret",
                    format!("{field}.passwordSecretRef: secret {ns}/{name} not found"),
                )),
                Some(s) => match s.data.get(key).map(|v| String::from_utf8(v.clone())) {
                    None => Err(problem(
                        "MissingPasswordSecret",
                        format!("{field}.passwordSecretRef: secret {ns}/{name} has no key {key:?}"),
                    )),
                    Some(Err(_)) => Err(problem(
                        "InvalidPassword",
                        format!(
                        "{field}.passwordSecretRef: secret {ns}/{name} key {key:?} is not UTF-8"
                    ),
                    )),
                    Some(Ok(p)) if p.is_empty() => Err(problem(
                        "InvalidPassword",
                        format!(
                            "{field}.passwordSecretRef: secret {ns}/{name} key {key:?} is empty"
                        ),
                    )),
                    Some(Ok(p)) => Ok(p),
                },
            }
        }
    })
}

async fn passwords(
    ctx: &Context,
    ns: &str,
    p: &CertificateParams,
) -> Result<Result<Passwords, Problem>, Error> {
    let mut out = Passwords::default();
    if let Some(j) = &p.jks {
        match password(ctx, ns, &j.password, "spec.keystores.jks").await? {
            Ok(pw) => out.jks = Some(pw),
            Err(e) => return Ok(Err(e)),
        }
    }
    if let Some(k) = &p.pkcs12 {
        match password(ctx, ns, &k.password, "spec.keystores.pkcs12").await? {
            Ok(pw) => out.pkcs12 = Some(pw),
            Err(e) => return Ok(Err(e)),
        }
    }
    Ok(Ok(out))
}

async fn patch_status(
    ctx: &Context,
    ns: &str,
    name: &str,
    before: &Option<CertificateStatus>,
    status: &CertificateStatus,
) -> Result<(), Error> {
    let t = |v: &Option<String>| v.as_deref().and_then(certwright_pki::der::parse_rfc3339);
    let issuer = ctx
        .issuer_labels
        .lock()
        .ok()
        .and_then(|m| m.get(&(ns.to_string(), name.to_string())).cloned())
        .unwrap_or_default();
    ctx.metrics.set(
        ns,
        name,
        observe::CertMetric {
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
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), ns, &certificates());
    let body = json!({"status": status});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&body))
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

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
}

/// How a request ended: (chain, CA) on success, (reason, message) on failure.
type RequestResult<'a> = Result<(&'a [CertInfo], &'a [CertInfo]), (&'a str, &'a str)>;

/// Records the issuance as a cert-manager CertificateRequest `<name>-<revision>`.
async fn record_request(
    ctx: &Context,
    ns: &str,
    cert: &DynamicObject,
    revision: i64,
    p: &CertificateParams,
    csr_pem: &str,
    result: RequestResult<'_>,
) -> Result<(), Error> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), ns, &certificate_requests());
    let cert_name = cert.name_any();
    let uid = cert.metadata.uid.clone().unwrap_or_default();
    let name = format!("{cert_name}-{revision}");
    // Owned by the Certificate, so deleting it deletes its requests (garbage collection);
    // labelled with its UID, so its requests can be listed without reading the others.
    let obj = json!({
        "apiVersion": API_VERSION,
        "kind": "CertificateRequest",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": {MANAGED_BY.0: MANAGED_BY.1, CERTIFICATE_UID: uid},
            "ownerReferences": [{
                "apiVersion": API_VERSION, "kind": "Certificate", "name": cert_name, "uid": uid,
                "controller": true, "blockOwnerDeletion": true,
            }],
            "annotations": {
                "cert-manager.io/certificate-name": cert_name,
                "cert-manager.io/certificate-revision": revision.to_string(),
            }
        },
        "spec": {
            "request": b64(csr_pem),
            "issuerRef": {"name": p.issuance.issuer_name, "kind": p.issuance.issuer_kind, "group": p.issuance.issuer_group},
            "isCA": p.issuance.is_ca,
            "usages": p.issuance.usages,
            "duration": certwright_api::duration::format(p.issuance.duration()),
        }
    });
    let dynobj: DynamicObject =
        serde_json::from_value(obj).map_err(|e| Error::Other(e.to_string()))?;
    match api.create(&PostParams::default(), &dynobj).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    let t = rfc3339(now());
    let mut conds = vec![
        json!({"type": "Approved", "status": "True", "reason": "cert-manager.io",
        "message": "Certificate request has been approved by certwright", "lastTransitionTime": t}),
    ];
    let mut status = serde_json::Map::new();
    match result {
        Ok((chain, ca)) => {
            let pem_of = |c: &[CertInfo]| {
                c.iter()
                    .map(|c| certwright_pki::pem::encode("CERTIFICATE", &c.der))
                    .collect::<String>()
            };
            status.insert("certificate".into(), json!(b64(&pem_of(chain))));
            status.insert("ca".into(), json!(b64(&pem_of(ca))));
            conds.push(json!({"type": "Ready", "status": "True", "reason": "Issued",
                "message": "Certificate fetched from issuer successfully", "lastTransitionTime": t}));
        }
        Err((reason, message)) => {
            status.insert("failureTime".into(), json!(t));
            conds.push(
                json!({"type": "Ready", "status": "False", "reason": "Failed",
                "message": format!("{reason}: {message}"), "lastTransitionTime": t}),
            );
        }
    }
    status.insert("conditions".into(), Value::Array(conds));
    api.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(&json!({"status": status})),
    )
    .await?;
    if let Some(limit) = p.revision_history_limit {
        prune_requests(&api, &uid, revision, limit).await?;
    }
    Ok(())
}

/// Deletes a Certificate's CertificateRequests older than its last `limit` revisions
/// (`spec.revisionHistoryLimit`).
async fn prune_requests(
    api: &Api<DynamicObject>,
    uid: &str,
    revision: i64,
    limit: u32,
) -> Result<(), Error> {
    let list = api
        .list(&ListParams::default().labels(&format!("{CERTIFICATE_UID}={uid}")))
        .await?;
    for cr in list.items {
        let rev: Option<i64> = cr
            .annotations()
            .get("cert-manager.io/certificate-revision")
            .and_then(|r| r.parse().ok());
        if rev.is_some_and(|r| r <= revision - i64::from(limit)) {
            match api.delete(&cr.name_any(), &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

/// The Secret a Certificate should have in a cluster, where others' labels and
/// annotations on it stay.
fn desired_secret(
    name: &str,
    params: &CertificateParams,
    m: &Material<'_>,
    passwords: &Passwords,
    base: Option<&SecretData>,
    current: Option<&SecretData>,
) -> Result<render::Desired, Error> {
    render::certificate_secret(
        name,
        params,
        m,
        passwords,
        base,
        current,
        render::Metadata::KeepOthers,
    )
    .map_err(Error::Other)
}

/// A Secret definition carrying only the issuance record annotation, merged into the
/// rendered Secret like any other base annotation.
fn with_issuance_record(record: String) -> SecretData {
    let mut base = SecretData::default();
    base.annotations.insert(LAST_ISSUANCE.into(), record);
    base
}

fn up_to_date(status: &mut CertificateStatus, nb: i64, na: i64, renewal: i64, t: i64) {
    status.not_before = Some(rfc3339(nb));
    status.not_after = Some(rfc3339(na));
    status.renewal_time = Some(rfc3339(renewal));
    set_condition(
        &mut status.conditions,
        "Ready",
        true,
        "Ready",
        "Certificate is up to date and has not expired",
        t,
    );
    remove_condition(&mut status.conditions, "Issuing");
}

/// When the Secret `secret_name` is written by Certificate `writer` and `writer` asks for
/// it too and is older than `obj` (by creation time, then name), `obj` must not write it.
async fn duplicate_of(
    ctx: &Context,
    obj: &DynamicObject,
    writer: &str,
    secret_name: &str,
) -> Result<Option<Problem>, Error> {
    let ns = obj.namespace().unwrap_or_default();
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &ns, &certificates());
    let Some(other) = api.get_opt(writer).await? else {
        return Ok(None);
    };
    let same = other
        .data
        .get("spec")
        .and_then(|s| s.get("secretName"))
        .and_then(Value::as_str)
        == Some(secret_name);
    let order = |o: &DynamicObject| {
        (
            o.metadata.creation_timestamp.clone().map(|t| t.0),
            o.name_any(),
        )
    };
    if same && order(&other) < order(obj) {
        return Ok(Some(crate::problem(
            "DuplicateSecretName",
            format!(
                "spec.secretName: secret {ns}/{secret_name} is already written by Certificate {writer}"
            ),
        )));
    }
    Ok(None)
}

/// A failure of an issuance attempt: (reason, message).
type Failure = (String, String);

/// Whether the API refused a write for its content (too large, invalid): retrying the
/// same write cannot succeed.
fn permanent_write_error(e: &Error) -> Option<String> {
    match e {
        Error::Kube(kube::Error::Api(r)) if matches!(r.code, 400 | 413 | 422) => Some(format!(
            "the API server refused the Secret ({}): {}",
            r.code, r.message
        )),
        Error::Kube(kube::Error::Api(r)) if r.message.contains("too large") => Some(format!(
            "the API server refused the Secret ({}): {}",
            r.code, r.message
        )),
        _ => None,
    }
}

/// Checks what an issuer returned, writes the Secret and records the request. Returns
/// the leaf, or the attempt's failure when the certificate is unusable or the Secret is
/// refused for its content; other API errors (transient) are errors.
#[allow(clippy::too_many_arguments)]
async fn store_issued(
    ctx: &Context,
    obj: &DynamicObject,
    params: &CertificateParams,
    passwords: &Passwords,
    (current, current_obj): (Option<&SecretData>, Option<&Secret>),
    (key, csr): (&PrivateKey, &str),
    issued: &issue::Issued,
    revision: i64,
) -> Result<Result<CertInfo, Failure>, Error> {
    let ns = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let (mut chain, ca) = match issued.check(key) {
        Ok(v) => v,
        Err(message) => return Ok(Err(("InvalidCertificate".into(), message))),
    };
    let m = Material {
        key,
        chain: &chain,
        ca: &ca,
    };
    let record = LastIssuance {
        spec: params.issuance.clone(),
        certificate_sha256: chain[0].sha256_fingerprint(),
        revision: Some(revision),
    };
    let base = with_issuance_record(serde_json::to_string(&record).unwrap_or_default());
    let desired = match desired_secret(&name, params, &m, passwords, Some(&base), current) {
        Ok(d) => d,
        Err(e) => return Ok(Err(("RenderFailed".into(), e.to_string()))),
    };
    if let Err(e) = write_secret(ctx, &ns, &params.secret_name, &desired.secret, current_obj).await
    {
        return match permanent_write_error(&e) {
            Some(message) => Ok(Err(("SecretUnwritable".into(), message))),
            None => Err(e),
        };
    }
    record_request(ctx, &ns, obj, revision, params, csr, Ok((&chain, &ca))).await?;
    Ok(Ok(chain.swap_remove(0)))
}

fn requeue_at(at: i64, t: i64) -> Action {
    Action::requeue(Duration::from_secs((at - t).clamp(1, 30 * 24 * 3600) as u64))
}

/// Reconciles one Certificate.
pub(crate) async fn reconcile(
    cached: Arc<DynamicObject>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let ns = cached.namespace().unwrap_or_default();
    let name = cached.name_any();
    let t = now();
    let cert_key = (ns.clone(), name.clone());
    ctx.metrics
        .reconciles
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // The watch cache can lag behind this controller's own status writes (a Secret event
    // may arrive before the status patch is seen): read the Certificate fresh, so status
    // is never written back from a stale copy (which would, say, regress the revision).
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &ns, &certificates());
    let Some(obj) = api.get_opt(&name).await? else {
        ctx.forget(&ns, &name);
        return Ok(Action::await_change());
    };
    let cert: Certificate = match typed(&obj) {
        Ok(c) => c,
        Err(e) => {
            let before = obj
                .data
                .get("status")
                .and_then(|s| serde_json::from_value(s.clone()).ok());
            let mut status: CertificateStatus = before.clone().unwrap_or_default();
            set_condition(
                &mut status.conditions,
                "Ready",
                false,
                "InvalidManifest",
                &e,
                t,
            );
            patch_status(&ctx, &ns, &name, &before, &status).await?;
            return Ok(Action::await_change());
        }
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
    let mut status = before.clone().unwrap_or_default();
    let params = match validate::certificate(&cert) {
        Ok(p) => p,
        Err(errs) => {
            set_condition(
                &mut status.conditions,
                "Ready",
                false,
                errs[0].reason,
                &validate::join(&errs),
                t,
            );
            patch_status(&ctx, &ns, &name, &before, &status).await?;
            return Ok(Action::await_change());
        }
    };
    let stop = |status: &mut CertificateStatus, p: &Problem| {
        set_condition(
            &mut status.conditions,
            "Ready",
            false,
            &p.reason,
            &p.message,
            t,
        );
    };
    let passwords = match passwords(&ctx, &ns, &params).await? {
        Ok(p) => p,
        Err(p) => {
            stop(&mut status, &p);
            patch_status(&ctx, &ns, &name, &before, &status).await?;
            return Ok(Action::requeue(Duration::from_secs(30)));
        }
    };
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let current_obj = secrets.get_opt(&params.secret_name).await?;
    let current = current_obj.as_ref().map(secret_data);
    // Two Certificates naming one Secret: the older one writes it; the other reports
    // DuplicateSecretName and waits (the order by creation never flips, so they never
    // alternate).
    let writer = current
        .as_ref()
        .and_then(|s| s.annotations.get(certwright_api::annotations::CERT_NAME))
        .filter(|w| **w != name);
    if let Some(writer) = writer {
        if let Some(p) = duplicate_of(&ctx, &obj, writer, &params.secret_name).await? {
            stop(&mut status, &p);
            remove_condition(&mut status.conditions, "Issuing");
            patch_status(&ctx, &ns, &name, &before, &status).await?;
            return Ok(Action::requeue(Duration::from_secs(300)));
        }
    }
    let material = current.as_ref().map(TlsMaterial::read);
    let last = current.as_ref().and_then(LastIssuance::from_secret);
    let resolved = resolve_issuer(
        &ctx,
        &ns,
        &params.issuance.issuer_name,
        &params.issuance.issuer_kind,
        t,
    )
    .await?;
    let (policy, issuer_digest) = match &resolved {
        Ok(r) => (r.policy, r.digest.clone()),
        Err(_) => (BackoffPolicy::LOCAL, String::new()),
    };
    let digest = certwright_engine::decide::inputs_digest(&params.issuance, &issuer_digest);
    let failures = ctx
        .failures
        .lock()
        .ok()
        .and_then(|f| f.get(&cert_key).cloned())
        .unwrap_or_default();
    if resolved.is_ok() {
        if let Ok(mut w) = ctx.waiting.lock() {
            w.remove(&cert_key);
        }
    }
    let key_str = format!("{ns}/{name}");
    let decision = decide(&Inputs {
        key: &key_str,
        cert_name: &name,
        params: &params,
        secret: current.as_ref(),
        material: material.as_ref(),
        last: last.as_ref(),
        failures: &failures,
        inputs_digest: &digest,
        backoff: policy,
        now: t,
    });
    match decision {
        Decision::UpToDate {
            not_before,
            not_after,
            renewal_time,
        } => {
            let Some((k, chain)) = material.as_ref().and_then(|m| m.pair()) else {
                return Err(Error::Other("up to date without key material".into()));
            };
            let ca = material.as_ref().map(|m| m.ca_certs()).unwrap_or_default();
            let m = Material { key: k, chain, ca };
            // The issuance record stays on the Secret; it takes part in the content comparison.
            let record = current
                .as_ref()
                .and_then(|c| c.annotations.get(LAST_ISSUANCE))
                .cloned();
            let base = record.map(with_issuance_record);
            let desired = desired_secret(
                &name,
                &params,
                &m,
                &passwords,
                base.as_ref(),
                current.as_ref(),
            )?;
            if desired.changed {
                write_secret(
                    &ctx,
                    &ns,
                    &params.secret_name,
                    &desired.secret,
                    current_obj.as_ref(),
                )
                .await?;
                log(
                    "INFO",
                    "secret outputs rewritten",
                    &[("certificate", &key_str), ("secret", &params.secret_name)],
                );
            }
            up_to_date(&mut status, not_before, not_after, renewal_time, t);
            patch_status(&ctx, &ns, &name, &before, &status).await?;
            log(
                "DEBUG",
                "certificate up to date",
                &[
                    ("certificate", &key_str),
                    ("renewalTime", &rfc3339(renewal_time)),
                ],
            );
            Ok(requeue_at(renewal_time, t))
        }
        Decision::Backoff {
            trigger,
            message,
            until,
        } => {
            set_condition(
                &mut status.conditions,
                "Ready",
                false,
                trigger.reason(),
                &message,
                t,
            );
            patch_status(&ctx, &ns, &name, &before, &status).await?;
            Ok(requeue_at(until, t))
        }
        Decision::Issue {
            trigger,
            message,
            reuse_key,
        } => {
            set_condition(
                &mut status.conditions,
                "Issuing",
                true,
                trigger.reason(),
                &message,
                t,
            );
            let resolved = match resolved {
                Ok(r) => r,
                Err(p) => {
                    if let Ok(mut w) = ctx.waiting.lock() {
                        w.insert(cert_key.clone());
                    }
                    stop(&mut status, &p);
                    patch_status(&ctx, &ns, &name, &before, &status).await?;
                    return Ok(Action::requeue(Duration::from_secs(30)));
                }
            };
            log(
                "INFO",
                "issuing",
                &[
                    ("certificate", &key_str),
                    ("reason", trigger.reason()),
                    ("message", &message),
                ],
            );
            let existing = if reuse_key {
                material
                    .as_ref()
                    .and_then(|m| m.key.as_ref())
                    .and_then(|k| k.as_ref().ok())
                    .map(|k| k.pkcs8_der().to_vec())
            } else {
                None
            };
            let spec = params.issuance.clone();
            let issuer = resolved.issuer.clone();
            // Key generation and signing are CPU work: off the async threads.
            let work = tokio::task::spawn_blocking(
                move || -> Result<(PrivateKey, String, Outcome), String> {
                    let key = match existing {
                        Some(der) => PrivateKey::from_pkcs8_der(&der).map_err(|e| e.to_string())?,
                        None => PrivateKey::generate(spec.key()).map_err(|e| e.to_string())?,
                    };
                    let csr = issue::build_request(&spec, &key)?;
                    let outcome = issuer.process(&Request {
                        csr_pem: &csr,
                        spec: &spec,
                        key: Some(&key),
                        state: &Value::Null,
                        now: t,
                    });
                    Ok((key, csr, outcome))
                },
            )
            .await
            .map_err(|e| Error::Other(e.to_string()))?
            .map_err(Error::Other)?;
            let (key, csr, outcome) = work;
            let revision = status.revision.unwrap_or(0) + 1;
            let (reason, message) = match outcome {
                Outcome::Issued(issued) => {
                    let stored = store_issued(
                        &ctx,
                        &obj,
                        &params,
                        &passwords,
                        (current.as_ref(), current_obj.as_ref()),
                        (&key, &csr),
                        &issued,
                        revision,
                    )
                    .await?;
                    match stored {
                        Err(failure) => failure,
                        Ok(leaf) => {
                            if let Ok(mut f) = ctx.failures.lock() {
                                f.remove(&cert_key);
                            }
                            status.revision = Some(revision);
                            status.last_failure_time = None;
                            status.failed_issuance_attempts = None;
                            let renewal = params.renewal_time(leaf.not_before, leaf.not_after);
                            up_to_date(&mut status, leaf.not_before, leaf.not_after, renewal, t);
                            patch_status(&ctx, &ns, &name, &before, &status).await?;
                            ctx.metrics
                                .issuances
                                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            event(
                                &ctx,
                                &obj,
                                &certificates(),
                                EventType::Normal,
                                "Issuing",
                                &format!(
                                    "The certificate has been successfully issued (revision {revision})"
                                ),
                                "Issue",
                            )
                            .await;
                            log(
                                "INFO",
                                "certificate issued",
                                &[
                                    ("certificate", &key_str),
                                    ("secret", &params.secret_name),
                                    ("revision", &revision.to_string()),
                                    ("notAfter", &rfc3339(leaf.not_after)),
                                ],
                            );
                            return Ok(requeue_at(renewal, t));
                        }
                    }
                }
                Outcome::Pending {
                    retry_after,
                    reason,
                    message,
                    ..
                } => {
                    set_condition(
                        &mut status.conditions,
                        "Ready",
                        false,
                        trigger.reason(),
                        &format!("Waiting for the issuer: {reason}: {message}"),
                        t,
                    );
                    patch_status(&ctx, &ns, &name, &before, &status).await?;
                    return Ok(Action::requeue(retry_after));
                }
                Outcome::Failed { reason, message } => (reason, message),
            };
            // Every failure of an attempt, the issuer's or a permanent one after it (a
            // certificate that cannot be read, a Secret the API refuses), is recorded,
            // shown on the status and backed off.
            record_request(
                &ctx,
                &ns,
                &obj,
                revision,
                &params,
                &csr,
                Err((&reason, &message)),
            )
            .await?;
            let attempts = if failures.inputs == digest {
                failures.attempts + 1
            } else {
                1
            };
            if let Ok(mut f) = ctx.failures.lock() {
                f.insert(
                    cert_key.clone(),
                    Failures {
                        attempts,
                        last_failure: t,
                        inputs: digest.clone(),
                    },
                );
            }
            let msg = format!("The certificate request has failed to complete and will be retried: {reason}: {message}");
            status.last_failure_time = Some(rfc3339(t));
            status.failed_issuance_attempts = Some(i64::from(attempts));
            set_condition(
                &mut status.conditions,
                "Ready",
                false,
                trigger.reason(),
                &msg,
                t,
            );
            set_condition(&mut status.conditions, "Issuing", false, "Failed", &msg, t);
            patch_status(&ctx, &ns, &name, &before, &status).await?;
            ctx.metrics
                .issuance_failures
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            event(
                &ctx,
                &obj,
                &certificates(),
                EventType::Warning,
                "Failed",
                &msg,
                "Issue",
            )
            .await;
            log(
                "WARN",
                "issuance failed",
                &[
                    ("certificate", &key_str),
                    ("reason", &reason),
                    ("message", &message),
                ],
            );
            Ok(requeue_at(
                t + policy.delay(attempts, &key_str).as_secs() as i64,
                t,
            ))
        }
    }
}
