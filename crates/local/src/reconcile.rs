//! Reconciling one Certificate (or one plain Secret manifest) in the local runtime: read,
//! ask the engine, act, record.

use crate::log;
use crate::model::{Key, Model, Problem};
use crate::records::{CertRecord, Pending, StateDir};
use crate::store::SecretStore;
use certwright_api::annotations::keys;
use certwright_api::validate::{CertificateParams, IssuerType, PasswordSource};
use certwright_api::{
    CertificateRequest, CertificateRequestSpec, CertificateRequestStatus, Condition, IssuerRef,
    ObjectMeta,
};
use certwright_engine::issue::{self, CaIssuer, CaMaterial, Issuer, Outcome, Request};
use certwright_engine::render::{self, Material, Passwords};
use certwright_engine::status::{remove_condition, set_condition};
use certwright_engine::{
    decide, BackoffPolicy, Decision, Failures, Inputs, LastIssuance, SecretData, TlsMaterial,
};
use certwright_pki::der::rfc3339;
use certwright_pki::inspect::CertInfo;
use certwright_pki::PrivateKey;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Shared, read-only context of a reconcile pass.
pub struct Ctx<'a> {
    pub model: &'a Model,
    pub store: &'a SecretStore,
    pub state: &'a StateDir,
    pub cluster_ns: &'a str,
    pub now: i64,
    /// When set, Secret writes are staged here and committed by the caller after one
    /// file-system flush; otherwise each write is made durable on its own.
    pub batch: Option<&'a std::sync::Mutex<Batch>>,
}

/// Writes staged in a pass, made visible by the caller after one flush.
#[derive(Debug, Default)]
pub struct Batch {
    pub staged: Vec<crate::store::Staged>,
    /// Request records saying "Issued": saved only once their Secret is committed.
    pub requests: Vec<RequestRecord>,
}

/// A request record, saved after the batch (an issued one only once its Secret is
/// committed).
#[derive(Debug)]
pub struct RequestRecord {
    pub certificate: Key,
    /// `namespace/secretName` whose commit it waits for, if any.
    pub secret: Option<String>,
    pub request: CertificateRequest,
    /// The Certificate's revisionHistoryLimit.
    pub limit: u32,
}

/// Records a request: into the batch, or at once when there is none.
fn keep_request(ctx: &Ctx<'_>, r: RequestRecord) {
    if let Some(batch) = ctx.batch {
        if let Ok(mut b) = batch.lock() {
            b.requests.push(r);
            return;
        }
    }
    let name = r.request.metadata.name.clone();
    if let Err(e) = ctx
        .state
        .add_requests(vec![(r.certificate, r.request, r.limit)], ctx.store.durable)
    {
        log::warn(
            "cannot record request",
            &[("request", &name), ("error", &e.to_string())],
        );
    }
}

/// An issuer as resolved for a pass.
#[derive(Clone)]
pub enum Resolved {
    Ready {
        issuer: Arc<dyn Issuer>,
        policy: BackoffPolicy,
        /// Identifies the issuer's signing material, for backoff resets.
        digest: String,
    },
    Unavailable(Problem),
}

impl Ctx<'_> {
    /// Reads a Secret as a consumer sees it: a Secret that a Certificate writes comes from
    /// the store; otherwise a Secret manifest wins (it is the source of truth), then the
    /// store (a Secret put there by hand).
    pub fn secret(&self, ns: &str, name: &str) -> Result<Option<SecretData>, Problem> {
        let key = (ns.to_string(), name.to_string());
        if !self.model.owned_secrets.contains(&key) {
            if let Some((_, s)) = self.model.secrets.get(&key) {
                return Ok(Some(s.clone()));
            }
        }
        self.store
            .read(ns, name)
            .map_err(|e| Problem::new("SecretUnreadable", e.to_string()))
    }

    /// Resolves a Certificate's issuer.
    pub fn resolve(&self, cert_ns: &str, issuer_name: &str, issuer_kind: &str) -> Resolved {
        let (entry, ns, desc) = if issuer_kind == "ClusterIssuer" {
            (
                self.model.cluster_issuers.get(issuer_name),
                self.cluster_ns.to_string(),
                format!("ClusterIssuer {issuer_name:?}"),
            )
        } else {
            (
                self.model
                    .issuers
                    .get(&(cert_ns.to_string(), issuer_name.to_string())),
                cert_ns.to_string(),
                format!("Issuer {issuer_name:?} in namespace {cert_ns:?}"),
            )
        };
        let Some(entry) = entry else {
            return Resolved::Unavailable(Problem::new(
                "IssuerNotFound",
                format!("{desc} not found"),
            ));
        };
        let kind = match &entry.kind {
            Ok(k) => k,
            Err(p) => {
                return Resolved::Unavailable(Problem::new(
                    "IssuerNotReady",
                    format!("{desc} is invalid: {}: {}", p.reason, p.message),
                ))
            }
        };
        match kind {
            IssuerType::SelfSigned => Resolved::Ready {
                issuer: Arc::new(issue::SelfSigned),
                policy: BackoffPolicy::LOCAL,
                digest: "selfSigned".into(),
            },
            IssuerType::Ca { secret_name } => {
                let sdesc = format!("{ns}/{secret_name}");
                let secret = match self.secret(&ns, secret_name) {
                    Ok(Some(s)) => s,
                    Ok(None) => {
                        return Resolved::Unavailable(Problem::new(
                            "IssuerNotReady",
                            format!(
                                "{desc} is not ready: ErrGetKeyPair: CA secret {sdesc} not found"
                            ),
                        ))
                    }
                    Err(p) => {
                        return Resolved::Unavailable(Problem::new(
                            "IssuerNotReady",
                            format!("{desc} is not ready: {}", p.message),
                        ))
                    }
                };
                match CaMaterial::from_secret(&sdesc, &secret, self.now) {
                    Ok(m) => {
                        let digest = format!("ca:{}", m.chain[0].sha256_fingerprint());
                        Resolved::Ready {
                            issuer: Arc::new(CaIssuer { material: m }),
                            policy: BackoffPolicy::LOCAL,
                            digest,
                        }
                    }
                    Err(e) => Resolved::Unavailable(Problem::new(
                        "IssuerNotReady",
                        format!("{desc} is not ready: {}: {}", e.reason, e.message),
                    )),
                }
            }
            IssuerType::Acme(_) => Resolved::Unavailable(Problem::new(
                "IssuerNotReady",
                format!(
                    "{desc} is an ACME issuer, which this build of certwright does not support yet"
                ),
            )),
        }
    }

    fn password(&self, ns: &str, src: &PasswordSource, field: &str) -> Result<String, Problem> {
        match src {
            PasswordSource::Literal(p) => Ok(p.clone()),
            PasswordSource::SecretRef { name, key } => {
                let s = self.secret(ns, name)?.ok_or_else(|| {
                    Problem::new(
                        "MissingPasswordSecret",
                        format!("{field}.passwordSecretRef: secret {ns}/{name} not found"),
                    )
                })?;
                let v = s.data.get(key).ok_or_else(|| {
                    Problem::new(
                        "MissingPasswordSecret",
                        format!("{field}.passwordSecretRef: secret {ns}/{name} has no key {key:?}"),
                    )
                })?;
                let p = String::from_utf8(v.clone()).map_err(|_| {
                    Problem::new("InvalidPassword", format!("{field}.passwordSecretRef: secret {ns}/{name} key {key:?} is not UTF-8"))
                })?;
                if p.is_empty() {
                    return Err(Problem::new(
                        "InvalidPassword",
                        format!(
                            "{field}.passwordSecretRef: secret {ns}/{name} key {key:?} is empty"
                        ),
                    ));
                }
                Ok(p)
            }
        }
    }

    fn passwords(&self, ns: &str, p: &CertificateParams) -> Result<Passwords, Problem> {
        Ok(Passwords {
            jks: p
                .jks
                .as_ref()
                .map(|j| self.password(ns, &j.password, "spec.keystores.jks"))
                .transpose()?,
            pkcs12: p
                .pkcs12
                .as_ref()
                .map(|j| self.password(ns, &j.password, "spec.keystores.pkcs12"))
                .transpose()?,
        })
    }
}

/// What reconciling one Certificate did.
pub struct Result_ {
    pub record: CertRecord,
    /// The Secret was rewritten.
    pub wrote: bool,
}

fn ready(rec: &mut CertRecord, ok: bool, reason: &str, message: &str, now: i64) {
    set_condition(
        &mut rec.status.conditions,
        "Ready",
        ok,
        reason,
        message,
        now,
    );
}

/// A Certificate that cannot proceed: Ready False with the problem, looked at again at
/// `retry` (or when its inputs change).
pub fn fail(mut rec: CertRecord, p: &Problem, now: i64, retry: Option<i64>) -> Result_ {
    ready(&mut rec, false, &p.reason, &p.message, now);
    remove_condition(&mut rec.status.conditions, "Issuing");
    rec.next_check = retry;
    Result_ {
        record: rec,
        wrote: false,
    }
}

/// Reconciles one Certificate.
pub fn certificate(
    ctx: &Ctx<'_>,
    key: &Key,
    prev: CertRecord,
    issuer: Option<&Resolved>,
) -> Result_ {
    let (ns, name) = (key.0.as_str(), key.1.as_str());
    let now = ctx.now;
    let mut rec = prev;
    rec.namespace = ns.into();
    rec.name = name.into();
    let Some(entry) = ctx.model.certificates.get(key) else {
        return fail(
            rec,
            &Problem::new("NotFound", "no such Certificate"),
            now,
            None,
        );
    };
    let params = match &entry.params {
        Ok(p) => p,
        Err(p) => return fail(rec, p, now, None),
    };
    rec.secret_name = params.secret_name.clone();
    let passwords = match ctx.passwords(ns, params) {
        Ok(p) => p,
        Err(p) => return fail(rec, &p, now, Some(now + 30)),
    };
    let current = match ctx.store.read(ns, &params.secret_name) {
        Ok(c) => c,
        Err(e) => {
            return fail(
                rec,
                &Problem::new("SecretUnreadable", e.to_string()),
                now,
                Some(now + 30),
            )
        }
    };
    let material = current.as_ref().map(TlsMaterial::read);
    // What the certificate in the Secret was issued for is recorded in the Secret itself
    // (written in the same swap), so a lost or stale status record cannot hide a change.
    let last = current
        .as_ref()
        .and_then(LastIssuance::from_secret)
        .or_else(|| rec.last.as_deref().cloned());
    let resolved = issuer.cloned().unwrap_or_else(|| {
        ctx.resolve(
            ns,
            &params.issuance.issuer_name,
            &params.issuance.issuer_kind,
        )
    });
    let (policy, issuer_digest) = match &resolved {
        Resolved::Ready { policy, digest, .. } => (*policy, digest.clone()),
        Resolved::Unavailable(_) => (BackoffPolicy::LOCAL, String::new()),
    };
    let digest = certwright_engine::decide::inputs_digest(&params.issuance, &issuer_digest);
    let key_str = format!("{ns}/{name}");
    let decision = decide(&Inputs {
        key: &key_str,
        cert_name: name,
        params,
        secret: current.as_ref(),
        material: material.as_ref(),
        last: last.as_ref(),
        failures: &rec.failures,
        inputs_digest: &digest,
        backoff: policy,
        now,
    });
    match decision {
        Decision::UpToDate {
            not_before,
            not_after,
            renewal_time,
        } => {
            let Some((k, chain)) = material.as_ref().and_then(|m| m.pair()) else {
                return fail(
                    rec,
                    &Problem::new("InternalError", "up to date without key material"),
                    now,
                    Some(now + 30),
                );
            };
            let ca = material.as_ref().map(|m| m.ca_certs()).unwrap_or_default();
            let m = Material { key: k, chain, ca };
            let record = current
                .as_ref()
                .and_then(|c| {
                    c.annotations
                        .get(certwright_api::annotations::LAST_ISSUANCE)
                })
                .map(String::as_str);
            let wrote = match write_outputs(
                ctx,
                ns,
                name,
                params,
                &m,
                &passwords,
                current.as_ref(),
                record,
            ) {
                Ok(w) => w,
                Err(p) => return fail(rec, &p, now, Some(now + 30)),
            };
            if wrote {
                log::info(
                    "secret outputs rewritten",
                    &[("certificate", &key_str), ("secret", &params.secret_name)],
                );
            }
            up_to_date(&mut rec, not_before, not_after, renewal_time, now);
            Result_ { record: rec, wrote }
        }
        Decision::Backoff {
            trigger,
            message,
            until,
        } => {
            ready(&mut rec, false, trigger.reason(), &message, now);
            rec.next_check = Some(until);
            Result_ {
                record: rec,
                wrote: false,
            }
        }
        Decision::Issue {
            trigger,
            message,
            reuse_key,
        } => {
            let (issuer, policy) = match &resolved {
                Resolved::Ready { issuer, policy, .. } => (issuer.clone(), *policy),
                Resolved::Unavailable(p) => {
                    ready(&mut rec, false, &p.reason, &p.message, now);
                    set_condition(
                        &mut rec.status.conditions,
                        "Issuing",
                        true,
                        trigger.reason(),
                        &message,
                        now,
                    );
                    rec.next_check = Some(now + 30);
                    return Result_ {
                        record: rec,
                        wrote: false,
                    };
                }
            };
            set_condition(
                &mut rec.status.conditions,
                "Issuing",
                true,
                trigger.reason(),
                &message,
                now,
            );
            log::info(
                "issuing",
                &[
                    ("certificate", &key_str),
                    ("reason", trigger.reason()),
                    ("message", &message),
                ],
            );
            let revision = next_revision(ctx, &rec, last.as_ref(), current.is_some());
            issue_certificate(
                ctx,
                rec,
                revision,
                params,
                &passwords,
                current.as_ref(),
                material.as_ref(),
                reuse_key,
                issuer.as_ref(),
                policy,
                &digest,
                trigger.reason(),
            )
        }
    }
}

/// The revision the next issuance makes: one more than the highest known from the status
/// record, the Secret's issuance record and the request records, so that a lost status
/// record never restarts the numbering.
fn next_revision(
    ctx: &Ctx<'_>,
    rec: &CertRecord,
    last: Option<&LastIssuance>,
    secret_exists: bool,
) -> i64 {
    let known = rec.status.revision.max(last.and_then(|l| l.revision));
    if known.is_some() || !secret_exists {
        // A new Certificate (no Secret, no record) starts at 1 without reading anything.
        return known.unwrap_or(0) + 1;
    }
    // The request records are read only when neither record knows the revision.
    let from_requests = || {
        ctx.state
            .requests(&rec.namespace, &rec.name)
            .iter()
            .map(|r| crate::records::request_revision(&r.metadata.name))
            .max()
            .filter(|r| *r > 0)
    };
    known.or_else(from_requests).unwrap_or(0) + 1
}

/// Records a good certificate: times, Ready, no issuance in progress, next look at renewal.
fn up_to_date(rec: &mut CertRecord, nb: i64, na: i64, renewal: i64, now: i64) {
    rec.status.not_before = Some(rfc3339(nb));
    rec.status.not_after = Some(rfc3339(na));
    rec.status.renewal_time = Some(rfc3339(renewal));
    ready(
        rec,
        true,
        "Ready",
        "Certificate is up to date and has not expired",
        now,
    );
    remove_condition(&mut rec.status.conditions, "Issuing");
    rec.next_check = Some(renewal);
}

#[allow(clippy::too_many_arguments)]
fn issue_certificate(
    ctx: &Ctx<'_>,
    mut rec: CertRecord,
    revision: i64,
    params: &CertificateParams,
    passwords: &Passwords,
    current: Option<&SecretData>,
    material: Option<&TlsMaterial>,
    reuse_key: bool,
    issuer: &dyn Issuer,
    policy: BackoffPolicy,
    digest: &str,
    trigger: &str,
) -> Result_ {
    let now = ctx.now;
    let (ns, name) = (rec.namespace.clone(), rec.name.clone());
    let key_str = format!("{ns}/{name}");
    // The key: the existing one (rotationPolicy Never), the pending request's, or new.
    let pending = rec.pending.clone().filter(|p| p.spec == params.issuance);
    let key = if reuse_key {
        material
            .and_then(|m| m.key.as_ref())
            .and_then(|k| k.as_ref().ok())
            .map(|k| PrivateKey::from_pkcs8_der(k.pkcs8_der()))
    } else if pending.is_some() {
        ctx.state
            .read_pending_key(&ns, &name)
            .ok()
            .flatten()
            .map(|b| PrivateKey::from_pem(&b))
    } else {
        None
    };
    let key = match key {
        Some(Ok(k)) => k,
        _ => match PrivateKey::generate(params.issuance.key()) {
            Ok(k) => k,
            Err(e) => {
                return fail(
                    rec,
                    &Problem::new("KeyGenerationFailed", e.to_string()),
                    now,
                    Some(now + 30),
                )
            }
        },
    };
    let (csr_pem, state, request_name) = match &pending {
        Some(p) if !reuse_key => (p.csr_pem.clone(), p.state.clone(), p.request_name.clone()),
        _ => match issue::build_request(&params.issuance, &key) {
            Ok(c) => (c, serde_json::Value::Null, format!("{name}-{revision}")),
            Err(e) => return fail(rec, &Problem::new("InvalidRequest", e), now, None),
        },
    };
    let outcome = issuer.process(&Request {
        csr_pem: &csr_pem,
        spec: &params.issuance,
        key: Some(&key),
        state: &state,
        now,
    });
    match outcome {
        Outcome::Issued(issued) => {
            let checked = issued.check(&key);
            let (chain, ca) = match checked {
                Ok(v) => v,
                Err(message) => {
                    return failed(
                        rec,
                        "InvalidCertificate",
                        &message,
                        now,
                        policy,
                        digest,
                        trigger,
                        &key_str,
                    )
                }
            };
            let m = Material {
                key: &key,
                chain: &chain,
                ca: &ca,
            };
            let leaf = &chain[0];
            let last = LastIssuance {
                spec: params.issuance.clone(),
                certificate_sha256: leaf.sha256_fingerprint(),
                revision: Some(revision),
            };
            let record = serde_json::to_string(&last).unwrap_or_default();
            if let Err(p) = write_outputs(
                ctx,
                &ns,
                &name,
                params,
                &m,
                passwords,
                current,
                Some(&record),
            ) {
                return fail(rec, &p, now, Some(now + 30));
            }
            rec.status.revision = Some(revision);
            rec.last = Some(Box::new(last));
            rec.failures = Failures::default();
            rec.status.last_failure_time = None;
            rec.status.failed_issuance_attempts = None;
            if rec.pending.take().is_some() {
                ctx.state.remove_pending_key(&ns, &name);
            }
            let cr = request_record(
                ctx,
                &ns,
                &request_name,
                params,
                &csr_pem,
                Some((&chain, &ca)),
                None,
            );
            // An "Issued" record waits for its Secret's commit.
            keep_request(
                ctx,
                RequestRecord {
                    certificate: (ns.clone(), name.clone()),
                    secret: Some(format!("{ns}/{}", params.secret_name)),
                    request: cr,
                    limit: history_limit(params),
                },
            );
            let renewal = params.renewal_time(leaf.not_before, leaf.not_after);
            up_to_date(&mut rec, leaf.not_before, leaf.not_after, renewal, now);
            log::info(
                "certificate issued",
                &[
                    ("certificate", &key_str),
                    ("secret", &params.secret_name),
                    ("revision", &revision.to_string()),
                    ("serial", &leaf.serial_hex),
                    ("notAfter", &rfc3339(leaf.not_after)),
                ],
            );
            Result_ {
                record: rec,
                wrote: true,
            }
        }
        Outcome::Pending {
            reason,
            message,
            retry_after,
            state,
        } => {
            if let Ok(pem) = key.to_pem(certwright_pki::KeyEncoding::Pkcs8) {
                if let Err(e) = ctx.state.save_pending_key(&ns, &name, pem.as_bytes()) {
                    return fail(
                        rec,
                        &Problem::new(
                            "StateUnwritable",
                            format!("saving the pending private key: {e}"),
                        ),
                        now,
                        Some(now + 30),
                    );
                }
            }
            rec.pending = Some(Box::new(Pending {
                request_name,
                spec: params.issuance.clone(),
                csr_pem,
                state,
                retry_at: now + retry_after.as_secs() as i64,
            }));
            ready(
                &mut rec,
                false,
                trigger,
                &format!("Waiting for the issuer: {reason}: {message}"),
                now,
            );
            rec.next_check = Some(now + retry_after.as_secs().max(1) as i64);
            Result_ {
                record: rec,
                wrote: false,
            }
        }
        Outcome::Failed { reason, message } => {
            let cr = request_record(
                ctx,
                &ns,
                &request_name,
                params,
                &csr_pem,
                None,
                Some((&reason, &message)),
            );
            keep_request(
                ctx,
                RequestRecord {
                    certificate: (ns.clone(), name.clone()),
                    secret: None,
                    request: cr,
                    limit: history_limit(params),
                },
            );
            failed(
                rec, &reason, &message, now, policy, digest, trigger, &key_str,
            )
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn failed(
    mut rec: CertRecord,
    reason: &str,
    message: &str,
    now: i64,
    policy: BackoffPolicy,
    digest: &str,
    trigger: &str,
    key_str: &str,
) -> Result_ {
    let attempts = if rec.failures.inputs == digest {
        rec.failures.attempts + 1
    } else {
        1
    };
    rec.failures = Failures {
        attempts,
        last_failure: now,
        inputs: digest.into(),
    };
    rec.status.last_failure_time = Some(rfc3339(now));
    rec.status.failed_issuance_attempts = Some(i64::from(attempts));
    rec.pending = None;
    let msg = format!(
        "The certificate request has failed to complete and will be retried: {reason}: {message}"
    );
    ready(&mut rec, false, trigger, &msg, now);
    set_condition(
        &mut rec.status.conditions,
        "Issuing",
        false,
        "Failed",
        &msg,
        now,
    );
    rec.next_check = Some(now + policy.delay(attempts, key_str).as_secs() as i64);
    log::warn(
        "issuance failed",
        &[
            ("certificate", key_str),
            ("reason", reason),
            ("message", message),
        ],
    );
    Result_ {
        record: rec,
        wrote: false,
    }
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
}

/// How many request records a Certificate keeps.
fn history_limit(params: &CertificateParams) -> u32 {
    params
        .revision_history_limit
        .unwrap_or(certwright_api::validate::DEFAULT_REVISION_HISTORY_LIMIT)
}

/// The request as a cert-manager CertificateRequest (for debugging and `status`).
fn request_record(
    ctx: &Ctx<'_>,
    ns: &str,
    request_name: &str,
    params: &CertificateParams,
    csr_pem: &str,
    issued: Option<(&[CertInfo], &[CertInfo])>,
    failure: Option<(&str, &str)>,
) -> CertificateRequest {
    let now = rfc3339(ctx.now);
    let cond = |t: &str, s: &str, r: &str, m: &str| Condition {
        type_: t.into(),
        status: s.into(),
        reason: r.into(),
        message: m.into(),
        last_transition_time: Some(now.clone()),
        observed_generation: None,
    };
    let mut status = CertificateRequestStatus {
        conditions: vec![cond(
            "Approved",
            "True",
            "cert-manager.io",
            "Certificate request has been approved by certwright",
        )],
        ..Default::default()
    };
    if let Some((chain, ca)) = issued {
        let pem_of = |c: &[CertInfo]| {
            c.iter()
                .map(|c| certwright_pki::pem::encode("CERTIFICATE", &c.der))
                .collect::<String>()
        };
        status.certificate = Some(b64(&pem_of(chain)));
        status.ca = Some(b64(&pem_of(ca)));
        status.conditions.push(cond(
            "Ready",
            "True",
            "Issued",
            "Certificate fetched from issuer successfully",
        ));
    }
    if let Some((reason, message)) = failure {
        status.failure_time = Some(now.clone());
        status.conditions.push(cond(
            "Ready",
            "False",
            "Failed",
            &format!("{reason}: {message}"),
        ));
    }
    CertificateRequest {
        api_version: certwright_api::API_VERSION.into(),
        kind: "CertificateRequest".into(),
        metadata: ObjectMeta {
            name: request_name.into(),
            namespace: Some(ns.into()),
            ..Default::default()
        },
        spec: CertificateRequestSpec {
            duration: Some(certwright_api::duration::format(params.issuance.duration())),
            issuer_ref: IssuerRef {
                name: params.issuance.issuer_name.clone(),
                kind: Some(params.issuance.issuer_kind.clone()),
                group: Some(params.issuance.issuer_group.clone()),
            },
            request: b64(csr_pem),
            is_ca: params.issuance.is_ca,
            usages: params.issuance.usages.clone(),
            ..Default::default()
        },
        status: Some(status),
    }
}

/// Renders a Certificate's Secret and writes it if its content differs. Returns whether
/// it wrote. `record` is the issuance record the Secret carries (see
/// [`LastIssuance::from_secret`]), part of the content like any annotation.
#[allow(clippy::too_many_arguments)]
pub fn write_outputs(
    ctx: &Ctx<'_>,
    ns: &str,
    cert_name: &str,
    params: &CertificateParams,
    m: &Material<'_>,
    passwords: &Passwords,
    current: Option<&SecretData>,
    record: Option<&str>,
) -> Result<bool, Problem> {
    let mut base = ctx
        .model
        .secrets
        .get(&(ns.to_string(), params.secret_name.clone()))
        .map(|(_, s)| s.clone())
        .unwrap_or_default();
    if let Some(r) = record {
        base.annotations
            .insert(certwright_api::annotations::LAST_ISSUANCE.into(), r.into());
    }
    let desired = render::certificate_secret(
        cert_name,
        params,
        m,
        passwords,
        Some(&base),
        current,
        render::Metadata::Exact,
    )
    .map_err(|e| Problem::new("RenderFailed", e))?;
    write_desired(ctx, ns, &params.secret_name, desired)
}

fn write_desired(
    ctx: &Ctx<'_>,
    ns: &str,
    secret_name: &str,
    desired: render::Desired,
) -> Result<bool, Problem> {
    if !desired.changed {
        return Ok(false);
    }
    let unwritable = |e: crate::store::StoreError| Problem::new("SecretUnwritable", e.to_string());
    match ctx.batch {
        Some(batch) => {
            let staged = ctx
                .store
                .stage(ns, secret_name, &desired.secret, false)
                .map_err(unwritable)?;
            batch
                .lock()
                .map_err(|_| Problem::new("InternalError", "batch lock poisoned"))?
                .staged
                .push(staged);
        }
        None => ctx
            .store
            .write(ns, secret_name, &desired.secret)
            .map_err(unwritable)?,
    }
    Ok(true)
}

/// Reconciles a Secret manifest that no Certificate writes: its data, plus Java
/// keystores when it carries cert-utils' annotation and TLS data.
pub fn plain_secret(ctx: &Ctx<'_>, key: &Key) -> Result<bool, Problem> {
    let Some((_, manifest)) = ctx.model.secrets.get(key) else {
        return Ok(false);
    };
    let current = ctx
        .store
        .read(&key.0, &key.1)
        .map_err(|e| Problem::new("SecretUnreadable", e.to_string()))?;
    let mut desired = manifest.clone();
    let mut rendered = BTreeMap::new();
    let ks = render::keystore_options(None, &Passwords::default(), &manifest.annotations);
    if ks.jks.is_some() {
        let m = TlsMaterial::read(manifest);
        if let Some((k, chain)) = m.pair() {
            let mat = Material {
                key: k,
                chain,
                ca: m.ca_certs(),
            };
            let all =
                render::render_data(&mat, certwright_pki::KeyEncoding::Pkcs1, &ks, false, false)
                    .map_err(|e| Problem::new("RenderFailed", e))?;
            for k in [keys::KEYSTORE_JKS, keys::TRUSTSTORE_JKS] {
                if let Some(v) = all.get(k) {
                    rendered.insert(k.to_string(), v.clone());
                }
            }
        }
    }
    for k in rendered.keys() {
        desired.data.remove(k);
    }
    write_desired(
        ctx,
        &key.0,
        &key.1,
        render::settle(desired, rendered, current.as_ref(), &ks),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::StateDir;
    use std::sync::Mutex;

    /// An issuer that answers like an ACME order: pending twice, then issued. It records
    /// the public key of every request it sees.
    struct SlowIssuer {
        seen: Mutex<Vec<Vec<u8>>>,
    }

    impl Issuer for SlowIssuer {
        fn process(&self, req: &Request<'_>) -> Outcome {
            let csr = certwright_pki::pem::decode_all(req.csr_pem.as_bytes()).expect("pem");
            let parsed = certwright_pki::cert::parse_csr(&csr[0].der).expect("csr");
            self.seen.lock().expect("lock").push(parsed.spki_der);
            let polls = req.state.get("polls").and_then(|p| p.as_u64()).unwrap_or(0);
            if polls < 2 {
                return Outcome::Pending {
                    reason: "OrderPending".into(),
                    message: format!("order o-1 poll {}", polls + 1),
                    retry_after: std::time::Duration::from_secs(5),
                    state: serde_json::json!({"order": "o-1", "polls": polls + 1}),
                };
            }
            issue::SelfSigned.process(req)
        }
    }

    #[test]
    fn a_pending_request_resumes_after_a_restart_with_the_same_key() {
        let tmp = tempfile::tempdir().expect("tmp");
        let manifest = tmp.path().join("c.yaml");
        std::fs::write(
            &manifest,
            "apiVersion: cert-manager.io/v1\nkind: Issuer\nmetadata: {name: slow, namespace: demo}\nspec: {selfSigned: {}}\n---\napiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {name: web, namespace: demo}\nspec:\n  secretName: web-tls\n  issuerRef: {name: slow}\n  dnsNames: [web.example.com]\n  privateKey: {algorithm: ECDSA}\n",
        )
        .expect("manifest");
        let model = Model::load(&[manifest], false);
        let state = StateDir::open(tmp.path().join("state"), true).expect("state");
        let store = state.secret_store().expect("store");
        let issuer = Arc::new(SlowIssuer {
            seen: Mutex::new(vec![]),
        });
        let resolved = Resolved::Ready {
            issuer: issuer.clone(),
            policy: BackoffPolicy::REMOTE,
            digest: "slow".into(),
        };
        let key = ("demo".to_string(), "web".to_string());
        let ctx_at = |now: i64| Ctx {
            model: &model,
            store: &store,
            state: &state,
            cluster_ns: "cert-manager",
            now,
            batch: None,
        };
        let t0 = 1_800_000_000;

        let r1 = certificate(&ctx_at(t0), &key, CertRecord::default(), Some(&resolved));
        assert!(!r1.record.ready());
        assert_eq!(r1.record.next_check, Some(t0 + 5));
        assert!(r1.record.pending.is_some());
        assert!(
            state
                .read_pending_key("demo", "web")
                .expect("read")
                .is_some(),
            "the request's key is persisted"
        );
        // A restart: only what is on disk survives.
        let all = BTreeMap::from([(key.clone(), r1.record.clone())]);
        state
            .save_records(&all, [key.clone()].iter(), true)
            .expect("save");
        let reloaded = state.load_records().remove(&key).expect("reloaded");
        let r2 = certificate(&ctx_at(t0 + 5), &key, reloaded, Some(&resolved));
        assert!(!r2.record.ready());
        assert_eq!(
            r2.record.pending.as_ref().map(|p| p.state["polls"].clone()),
            Some(serde_json::json!(2))
        );
        let r3 = certificate(&ctx_at(t0 + 10), &key, r2.record, Some(&resolved));
        assert!(r3.record.ready(), "{:?}", r3.record.status);
        assert!(r3.wrote);
        let seen = issuer.seen.lock().expect("lock").clone();
        assert_eq!(seen.len(), 3);
        assert!(
            seen.iter().all(|k| *k == seen[0]),
            "one key across polls and the restart"
        );
        let secret = store
            .read("demo", "web-tls")
            .expect("read")
            .expect("written");
        let m = TlsMaterial::read(&secret);
        let (_, chain) = m.pair().expect("pair");
        assert_eq!(
            chain[0].spki_der, seen[0],
            "the certificate is for the request's key"
        );
        assert!(
            state
                .read_pending_key("demo", "web")
                .expect("read")
                .is_none(),
            "the pending key is removed"
        );
        assert!(r3.record.pending.is_none());
    }
}
