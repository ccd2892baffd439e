//! One Certificate's lifecycle step, the same for both runtimes.
//!
//! A shell loads the Certificate's [`State`] (the local runtime from its status record;
//! the operator from the Certificate's status, its pending CertificateRequest and its
//! next-private-key Secret), observes the world ([`Observed`]: the spec, the Secret, the
//! resolved issuer, keystore passwords, the time) and calls [`step`]. What comes back is
//! the new state and a list of [`Effect`]s to apply in order (write this Secret, record
//! this request, keep or drop this private key, emit this event), plus when to look
//! again. Everything between "observed" and "applied" happens here, once: the decision,
//! issuance, the request record, counting failures and backing off, the Ready and
//! Issuing conditions, a manual renewal.

use crate::carotation::{self, Rotation};
use crate::decide::{decide, inputs_digest, Decision, Failures, Inputs, LastIssuance, Trigger};
use crate::issue::{self, Outcome, Request};
use crate::observe::{SecretData, TlsMaterial};
use crate::render::{self, Material, Metadata, Passwords};
use crate::resolve::Resolved;
use crate::status::{condition, remove_condition, set_condition};
use crate::BackoffPolicy;
use certwright_api::annotations as ann;
use certwright_api::validate::{CertificateParams, IssuanceSpec, PasswordSource};
use certwright_api::{
    CertificateRequest, CertificateRequestSpec, CertificateRequestStatus, CertificateStatus,
    IssuerRef, ObjectMeta,
};
use certwright_pki::der::rfc3339;
use certwright_pki::inspect::CertInfo;
use certwright_pki::{KeyEncoding, PrivateKey};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Why something cannot proceed: a condition reason and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    pub reason: String,
    pub message: String,
}

impl Problem {
    pub fn new(reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.reason, self.message)
    }
}

/// A request the issuer has not answered yet (an ACME order in flight, say). Its private
/// key is kept apart (see [`Effect::StoreKey`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pending {
    pub request_name: String,
    pub spec: IssuanceSpec,
    pub csr_pem: String,
    /// What the issuer returned with its last `Pending` answer.
    #[serde(default)]
    pub state: serde_json::Value,
    /// When to ask the issuer again (Unix seconds).
    pub retry_at: i64,
}

impl Pending {
    /// The pending request a recorded CertificateRequest stands for: one that is neither
    /// issued nor failed, made by certwright for a spec it recorded.
    pub fn from_request(cr: &CertificateRequest) -> Option<Pending> {
        let st = cr.status.as_ref();
        let done = st.is_some_and(|s| {
            s.certificate.is_some()
                || s.failure_time.is_some()
                || s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && (c.status == "True" || c.reason == "Failed"))
        });
        if done {
            return None;
        }
        let a = &cr.metadata.annotations;
        let spec = serde_json::from_str(a.get(ann::REQUEST_SPEC)?).ok()?;
        use base64::Engine;
        let csr = base64::engine::general_purpose::STANDARD
            .decode(cr.spec.request.trim())
            .ok()?;
        Some(Pending {
            request_name: cr.metadata.name.clone(),
            spec,
            csr_pem: String::from_utf8(csr).ok()?,
            state: a
                .get(ann::ISSUER_STATE)
                .and_then(|s| serde_json::from_str(s).ok())
                .unwrap_or_default(),
            retry_at: 0,
        })
    }
}

/// What the engine keeps about a Certificate between steps.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct State {
    /// The Certificate's status, as users see it (conditions, times, revision, failed
    /// attempts, nextPrivateKeySecretName).
    pub status: CertificateStatus,
    pub failures: Failures,
    /// The last issuance, when the Secret does not say (see
    /// [`LastIssuance::from_secret`]).
    pub last: Option<Box<LastIssuance>>,
    pub pending: Option<Box<Pending>>,
}

/// What a shell observed.
pub struct Observed<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    /// The Certificate's labels.
    pub labels: &'a BTreeMap<String, String>,
    pub params: &'a CertificateParams,
    /// The Secret `spec.secretName` as it is now.
    pub secret: Option<&'a SecretData>,
    /// A definition of that Secret that the rendered one builds on (the local runtime's
    /// Secret manifest), if any.
    pub secret_base: Option<&'a SecretData>,
    pub metadata: Metadata,
    pub issuer: &'a Resolved,
    /// Keystore passwords, or why they cannot be read (see [`passwords`]).
    pub passwords: &'a Result<Passwords, Problem>,
    /// The pending request's private key, when the shell holds one.
    pub pending_key: Option<&'a PrivateKey>,
    /// The highest revision the shell's request records know, asked only when neither
    /// the state nor the Secret says.
    pub recorded_revision: &'a dyn Fn() -> Option<i64>,
    /// Unix seconds.
    pub now: i64,
    /// The Certificate's `metadata.generation`, written as every condition's
    /// `observedGeneration` (kstatus and GitOps tools read it); None where there is none.
    pub generation: Option<i64>,
    /// The pace of a CA issuer's rotation under this Certificate (see
    /// [`crate::carotation`]).
    pub ca_rotation: carotation::Timing,
}

/// What to do, in this order.
#[derive(Debug)]
pub enum Effect {
    /// Write the Secret `spec.secretName` whole (its content differs from what is there).
    WriteSecret(SecretData),
    /// Record a request (create it, or update the one of that name), keeping the last
    /// `limit` requests of the Certificate. `after_secret`: only once the Secret of this
    /// step is written (an issued request says what the Secret holds).
    Request {
        request: Box<CertificateRequest>,
        limit: u32,
        after_secret: bool,
    },
    /// Keep the pending request's private key under `name`
    /// (`status.nextPrivateKeySecretName`).
    StoreKey { name: String, pem: Redacted },
    /// Drop the private key kept under `name`.
    DeleteKey { name: String },
    /// An event for people (a Kubernetes Event in a cluster).
    Event {
        warning: bool,
        reason: &'static str,
        /// What was done (the Events API's `action`): events of one reason but another
        /// action are not folded into one series.
        action: &'static str,
        message: String,
    },
}

/// A secret value that never shows in debug output.
pub struct Redacted(pub String);

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("(redacted)")
    }
}

/// What a step amounted to, for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Summary {
    /// The Secret is good; `rewritten` when its derived content was written again.
    UpToDate {
        rewritten: bool,
    },
    /// Cannot proceed: a spec, password or Secret problem.
    Blocked,
    /// Issuance is needed but backing off after failures.
    BackingOff,
    /// Issuance is needed but the issuer is unavailable.
    WaitingForIssuer,
    Issued {
        revision: i64,
    },
    Pending,
    Failed,
}

/// An issuance attempt: what its failure records.
#[derive(Debug, Clone)]
struct Attempt {
    trigger: &'static str,
    digest: String,
    policy: BackoffPolicy,
    /// The request as made (no result yet).
    request: CertificateRequest,
    limit: u32,
    /// See [`AttemptInputs`]' field of that name.
    carry: Option<String>,
}

/// An issued certificate whose Secret the shell has yet to write: if the write is
/// refused for its content, [`refused`] records the attempt as failed, from the state
/// before the step.
#[derive(Debug)]
pub struct Refusable {
    attempt: Attempt,
    before: State,
}

impl Refusable {
    /// The state before the step.
    pub fn before(self) -> State {
        self.before
    }
}

/// The new state, what to do, and when to look again.
#[derive(Debug)]
pub struct Step {
    pub state: State,
    pub effects: Vec<Effect>,
    /// Unix seconds; None: only when something changes.
    pub next_check: Option<i64>,
    pub summary: Summary,
    /// Set when the step issued a certificate (see [`refused`]).
    pub on_refusal: Option<Box<Refusable>>,
}

impl Step {
    fn new(state: State, summary: Summary, next_check: Option<i64>) -> Step {
        Step {
            state,
            effects: Vec::new(),
            next_check,
            summary,
            on_refusal: None,
        }
    }

    /// The Secret this step writes, if any.
    pub fn secret(&self) -> Option<&SecretData> {
        self.effects.iter().find_map(|e| match e {
            Effect::WriteSecret(s) => Some(s),
            _ => None,
        })
    }
}

fn ready(status: &mut CertificateStatus, ok: bool, reason: &str, message: &str, now: i64) {
    set_condition(&mut status.conditions, "Ready", ok, reason, message, now);
}

/// A Certificate that cannot proceed: Ready False with the problem, no issuance in
/// progress; looked at again at `retry` (or when something changes).
pub fn blocked(mut state: State, p: &Problem, now: i64, retry: Option<i64>) -> Step {
    ready(&mut state.status, false, &p.reason, &p.message, now);
    remove_condition(&mut state.status.conditions, "Issuing");
    Step::new(state, Summary::Blocked, retry)
}

/// Asks for a new certificate now, as `cmctl renew` does: the `Issuing` condition True
/// with reason `ManuallyTriggered`.
pub fn request_renewal(status: &mut CertificateStatus, now: i64) {
    set_condition(
        &mut status.conditions,
        "Issuing",
        true,
        ann::MANUALLY_TRIGGERED,
        "Certificate re-issuance manually triggered",
        now,
    );
}

fn manually_triggered(status: &CertificateStatus) -> bool {
    status
        .condition("Issuing")
        .is_some_and(|c| c.status == "True" && c.reason == ann::MANUALLY_TRIGGERED)
}

/// The Secrets keystore passwords come from (in the Certificate's namespace).
pub fn password_secrets(params: &CertificateParams) -> Vec<&str> {
    let mut out = Vec::new();
    let sources = [
        params.jks.as_ref().map(|j| &j.password),
        params.pkcs12.as_ref().map(|p| &p.password),
    ];
    for src in sources.into_iter().flatten() {
        if let PasswordSource::SecretRef { name, .. } = src {
            if !out.contains(&name.as_str()) {
                out.push(name);
            }
        }
    }
    out
}

/// Keystore passwords from the Secrets [`password_secrets`] named, as the shell read them
/// (`None`: not found).
pub fn passwords(
    ns: &str,
    params: &CertificateParams,
    secrets: &BTreeMap<&str, Option<SecretData>>,
) -> Result<Passwords, Problem> {
    let read = |src: &PasswordSource, field: &str| -> Result<String, Problem> {
        let (name, key) = match src {
            PasswordSource::Literal(p) => return Ok(p.clone()),
            PasswordSource::SecretRef { name, key } => (name, key),
        };
        let missing = |what: String| {
            Problem::new(
                "MissingPasswordSecret",
                format!("{field}.passwordSecretRef: secret {ns}/{name} {what}"),
            )
        };
        let invalid = |what: &str| {
            Problem::new(
                "InvalidPassword",
                format!("{field}.passwordSecretRef: secret {ns}/{name} key {key:?} {what}"),
            )
        };
        let s = secrets
            .get(name.as_str())
            .and_then(Option::as_ref)
            .ok_or_else(|| missing("not found".into()))?;
        let v = s
            .data
            .get(key)
            .ok_or_else(|| missing(format!("has no key {key:?}")))?;
        let p = String::from_utf8(v.clone()).map_err(|_| invalid("is not UTF-8"))?;
        if p.is_empty() {
            return Err(invalid("is empty"));
        }
        Ok(p)
    };
    Ok(Passwords {
        jks: params
            .jks
            .as_ref()
            .map(|j| read(&j.password, "spec.keystores.jks"))
            .transpose()?,
        pkcs12: params
            .pkcs12
            .as_ref()
            .map(|p| read(&p.password, "spec.keystores.pkcs12"))
            .transpose()?,
    })
}

/// How many request records a Certificate keeps.
pub fn history_limit(params: &CertificateParams) -> u32 {
    params
        .revision_history_limit
        .unwrap_or(certwright_api::validate::DEFAULT_REVISION_HISTORY_LIMIT)
}

/// The revision in a request name `<certificate>-<revision>` (0 if there is none).
pub fn request_revision(name: &str) -> i64 {
    name.rsplit_once('-')
        .and_then(|(_, r)| r.parse().ok())
        .unwrap_or(0)
}

/// One step of a Certificate's lifecycle; every condition says which generation of the
/// Certificate it was computed for.
pub fn step(state: State, obs: &Observed<'_>) -> Step {
    let mut s = step_for(state, obs);
    for c in &mut s.state.status.conditions {
        c.observed_generation = obs.generation;
    }
    s
}

fn step_for(mut state: State, obs: &Observed<'_>) -> Step {
    let now = obs.now;
    let passwords = match obs.passwords {
        Ok(p) => p,
        Err(p) => return blocked(state, p, now, Some(now + 30)),
    };
    let material = obs.secret.map(TlsMaterial::read);
    // What the certificate in the Secret was issued for is recorded in the Secret itself
    // (written in the same update), so a lost or stale state cannot hide a change.
    let last = obs
        .secret
        .and_then(LastIssuance::from_secret)
        .or_else(|| state.last.as_deref().cloned());
    let (policy, issuer_digest) = match obs.issuer {
        Resolved::Ready(r) => (r.policy, r.digest.as_str()),
        Resolved::Unavailable(_) => (BackoffPolicy::LOCAL, ""),
    };
    let digest = inputs_digest(&obs.params.issuance, issuer_digest);
    let key_str = key_str(obs);
    let suggested_renewal = suggested_renewal(obs, material.as_ref(), &key_str);
    let decision = decide(&Inputs {
        key: &key_str,
        cert_name: obs.name,
        params: obs.params,
        secret: obs.secret,
        material: material.as_ref(),
        last: last.as_ref(),
        failures: &state.failures,
        inputs_digest: &digest,
        backoff: policy,
        suggested_renewal,
        now,
    });
    let decision = match decision {
        Decision::UpToDate { .. } | Decision::Backoff { .. }
            if manually_triggered(&state.status) =>
        {
            Decision::Issue {
                trigger: Trigger::ManuallyTriggered,
                message: "Re-issuance manually triggered".into(),
                reuse_key: reuse_key(obs, material.as_ref()),
            }
        }
        d => d,
    };
    // Under a CA issuer whose CA changed: trust the new CA before any leaf it signs is
    // presented (see crate::carotation).
    let rotation = match (obs.issuer, material.as_ref()) {
        (Resolved::Ready(r), Some(m)) => match (r.issuer.trust(), m.pair()) {
            (Some((signer, top)), Some((_, chain))) => {
                let annotations = obs.secret.map(|s| &s.annotations);
                let empty = BTreeMap::new();
                let a = annotations.unwrap_or(&empty);
                Some(carotation::check(
                    chain,
                    m.ca_certs(),
                    a,
                    signer,
                    top,
                    now,
                    obs.ca_rotation,
                ))
            }
            _ => None,
        },
        _ => None,
    };
    let defer = |d: Decision, until: i64| match d {
        // A leaf past its notAfter serves nobody: reissued at once.
        Decision::Issue {
            trigger: Trigger::Expired,
            ..
        } => (d, false),
        Decision::Issue { .. } | Decision::Backoff { .. } => {
            (up_to_date_decision(obs, material.as_ref(), until), true)
        }
        d => (d, false),
    };
    let (decision, carry, trust) = match rotation {
        None => (decision, None, TrustStep::default()),
        Some(Rotation::Trust {
            ca,
            annotation,
            wake,
        }) => {
            // Whatever issuance was due waits for the new trust to spread.
            let (d, deferred) = defer(decision, wake.unwrap_or(now));
            (
                d,
                None,
                TrustStep {
                    ca: Some(ca),
                    annotation,
                    wake,
                    set: true,
                    deferred,
                },
            )
        }
        Some(Rotation::Wait { until, carry }) => {
            let (d, deferred) = defer(decision, until);
            (
                d,
                carry.clone(),
                TrustStep {
                    annotation: carry,
                    wake: Some(until),
                    deferred,
                    ..Default::default()
                },
            )
        }
        Some(Rotation::Reissue { message, carry }) => {
            let d = match decision {
                Decision::UpToDate { .. } => Decision::Issue {
                    trigger: Trigger::IssuerCAChanged,
                    message,
                    reuse_key: reuse_key(obs, material.as_ref()),
                },
                d => d,
            };
            (d, carry, TrustStep::default())
        }
        Some(Rotation::Settled { carry, wake }) => (
            decision,
            carry.clone(),
            TrustStep {
                annotation: carry,
                wake,
                ..Default::default()
            },
        ),
    };
    match decision {
        Decision::UpToDate {
            not_before,
            not_after,
            renewal_time,
        } => {
            let times = (not_before, not_after, renewal_time);
            up_to_date_step(state, obs, material.as_ref(), passwords, times, trust)
        }
        Decision::Backoff {
            trigger,
            message,
            until,
        } => {
            ready(&mut state.status, false, trigger.reason(), &message, now);
            Step::new(state, Summary::BackingOff, Some(until))
        }
        Decision::Issue {
            trigger,
            message,
            reuse_key,
        } => {
            set_condition(
                &mut state.status.conditions,
                "Issuing",
                true,
                trigger.reason(),
                &message,
                now,
            );
            let attempt = AttemptInputs {
                trigger: trigger.reason(),
                message,
                digest,
                policy,
                reuse_key,
                last,
                carry,
            };
            let ready_issuer = match obs.issuer {
                Resolved::Ready(r) => r,
                Resolved::Unavailable(p) if p.reason == "IssuerNotFound" => {
                    let waiting =
                        missing_issuer(state, obs, material.as_ref(), passwords, p, attempt);
                    return waiting;
                }
                Resolved::Unavailable(p) => {
                    ready(&mut state.status, false, &p.reason, &p.message, now);
                    return Step::new(state, Summary::WaitingForIssuer, Some(now + 30));
                }
            };
            tracing::info!(certificate = %key_str, reason = trigger.reason(), message = %attempt.message, "issuing");
            issue_certificate(
                state,
                obs,
                material.as_ref(),
                passwords,
                ready_issuer.issuer.as_ref(),
                attempt,
            )
        }
    }
}

/// The issuer answers that its issuer does not exist (yet): the request waits, as with
/// cert-manager.
struct NoIssuer {
    kind: String,
    problem: Problem,
}

impl issue::Issuer for NoIssuer {
    fn process(&self, _req: &issue::Request<'_>) -> issue::Outcome {
        issue::Outcome::Pending {
            reason: "IssuerNotFound".into(),
            message: format!(
                "Referenced \"{}\" not found: {}",
                self.kind, self.problem.message
            ),
            retry_after: std::time::Duration::from_secs(30),
            state: serde_json::Value::Null,
        }
    }
}

/// A Certificate whose issuer does not exist: as with cert-manager, its request is made
/// (key, CertificateRequest, Events) and waits, saying so, and an IssuerNotFound Event is
/// recorded once; the same request is signed when the issuer appears. The Certificate's
/// Ready condition says which issuer is missing.
fn missing_issuer(
    state: State,
    obs: &Observed<'_>,
    material: Option<&TlsMaterial>,
    passwords: &Passwords,
    problem: &Problem,
    attempt: AttemptInputs,
) -> Step {
    let now = obs.now;
    let new_request = state.pending.is_none();
    let waiting = NoIssuer {
        kind: obs.params.issuance.issuer_kind.to_string(),
        problem: problem.clone(),
    };
    let mut s = issue_certificate(state, obs, material, passwords, &waiting, attempt);
    if matches!(s.summary, Summary::Pending) {
        ready(
            &mut s.state.status,
            false,
            &problem.reason,
            &problem.message,
            now,
        );
        s.summary = Summary::WaitingForIssuer;
        if new_request {
            s.effects.push(Effect::Event {
                warning: true,
                reason: "IssuerNotFound",
                action: "Request",
                message: format!("{}; the request waits for it", problem.message),
            });
        }
    }
    s
}

/// The certificate in the Secret is good: its outputs are rendered again and written only
/// if they differ (a keystore password changed, say); the status says when to renew.
fn up_to_date_step(
    mut state: State,
    obs: &Observed<'_>,
    material: Option<&TlsMaterial>,
    passwords: &Passwords,
    (not_before, not_after, renewal_time): (i64, i64, Option<i64>),
    trust: TrustStep,
) -> Step {
    let now = obs.now;
    let mut effects = drop_pending(&mut state);
    let Some((key, chain)) = material.and_then(|m| m.pair()) else {
        return blocked(
            state,
            &Problem::new("InternalError", "up to date without key material"),
            now,
            Some(now + 30),
        );
    };
    let ca = match &trust.ca {
        Some(ca) => ca.as_slice(),
        None => material.map(|m| m.ca_certs()).unwrap_or_default(),
    };
    let m = Material { key, chain, ca };
    let record = obs
        .secret
        .and_then(|s| s.annotations.get(ann::LAST_ISSUANCE))
        .cloned();
    let desired = match render_secret(obs, &m, passwords, record, trust.annotation.clone()) {
        Ok(d) => d,
        Err(p) => return blocked(state, &p, now, Some(now + 30)),
    };
    let rewritten = desired.changed;
    if rewritten {
        if trust.set {
            tracing::info!(certificate = %key_str(obs), secret = %obs.params.secret_name, anchors = ca.len(), "ca.crt follows the issuer's CA rotation");
        } else {
            tracing::info!(certificate = %key_str(obs), secret = %obs.params.secret_name, "secret outputs rewritten");
        }
        effects.push(Effect::WriteSecret(desired.secret));
    }
    let issuing = state.status.condition("Issuing").cloned();
    up_to_date(&mut state.status, not_before, not_after, renewal_time, now);
    if let (true, Some(c)) = (trust.deferred, issuing) {
        state.status.conditions.push(c);
    }
    // With renewal disabled, the next look is at expiry (an expired certificate is still
    // reissued); a CA rotation in progress looks again at its next step.
    let wake = renewal_time.unwrap_or(not_after);
    let wake = trust.wake.map_or(wake, |w| w.min(wake));
    let mut s = Step::new(state, Summary::UpToDate { rewritten }, Some(wake));
    s.effects = effects;
    s
}

fn reuse_key(obs: &Observed<'_>, material: Option<&TlsMaterial>) -> bool {
    obs.params.rotation_policy == certwright_api::validate::RotationPolicy::Never
        && material
            .and_then(|m| m.key.as_ref())
            .and_then(|k| k.as_ref().ok())
            .is_some_and(|k| k.algorithm() == obs.params.issuance.key())
}

/// What a CA rotation changes in an up-to-date Secret (see [`crate::carotation`]).
#[derive(Debug, Default)]
struct TrustStep {
    /// `ca.crt` to write instead of the Secret's own.
    ca: Option<Vec<CertInfo>>,
    /// The `trust-extended-at` annotation to keep or set (None: none, or removed).
    annotation: Option<String>,
    /// When the rotation's next step is due.
    wake: Option<i64>,
    /// This step changes the trust (for the log line).
    set: bool,
    /// An issuance that was due waits for this step: its Issuing condition stays.
    deferred: bool,
}

/// The up-to-date decision for the certificate the Secret holds (a CA rotation's trust
/// step comes before an issuance that was due).
fn up_to_date_decision(obs: &Observed<'_>, material: Option<&TlsMaterial>, until: i64) -> Decision {
    let leaf = material.and_then(|m| m.pair()).map(|(_, c)| &c[0]);
    let (nb, na) = leaf
        .map(|l| (l.not_before, l.not_after))
        .unwrap_or((obs.now, obs.now));
    // The issuance that was due comes with the rotation's next step.
    Decision::UpToDate {
        not_before: nb,
        not_after: na,
        renewal_time: Some(until),
    }
}

/// Drops a pending request that is no longer wanted, with its kept key.
fn drop_pending(state: &mut State) -> Vec<Effect> {
    state.pending = None;
    state
        .status
        .next_private_key_secret_name
        .take()
        .map(|name| Effect::DeleteKey { name })
        .into_iter()
        .collect()
}

/// Records a good certificate: times, Ready, no issuance in progress.
fn up_to_date(status: &mut CertificateStatus, nb: i64, na: i64, renewal: Option<i64>, now: i64) {
    status.not_before = Some(rfc3339(nb));
    status.not_after = Some(rfc3339(na));
    status.renewal_time = renewal.map(rfc3339);
    ready(
        status,
        true,
        "Ready",
        "Certificate is up to date and has not expired",
        now,
    );
    remove_condition(&mut status.conditions, "Issuing");
}

/// The Secret a Certificate should have, from key material and the issuance record.
fn render_secret(
    obs: &Observed<'_>,
    m: &Material<'_>,
    passwords: &Passwords,
    record: Option<String>,
    trust_extended_at: Option<String>,
) -> Result<render::Desired, Problem> {
    let mut base = obs.secret_base.cloned().unwrap_or_default();
    if let Some(r) = record {
        base.annotations.insert(ann::LAST_ISSUANCE.into(), r);
    }
    if let Some(t) = trust_extended_at {
        base.annotations
            .insert(carotation::TRUST_EXTENDED_AT.into(), t);
    }
    render::certificate_secret(
        obs.name,
        obs.params,
        m,
        passwords,
        Some(&base),
        obs.secret,
        obs.metadata,
    )
    .map_err(|e| Problem::new("RenderFailed", e.to_string()))
}

/// The revision the next issuance makes: one more than the highest known from the state,
/// the Secret's issuance record and the request records, so that a lost state never
/// restarts the numbering.
fn next_revision(state: &State, last: Option<&LastIssuance>, obs: &Observed<'_>) -> i64 {
    let known = state.status.revision.max(last.and_then(|l| l.revision));
    if known.is_some() || obs.secret.is_none() {
        // A new Certificate (no Secret, no record) starts at 1 without asking the shell.
        return known.unwrap_or(0) + 1;
    }
    known
        .or_else(|| (obs.recorded_revision)().filter(|r| *r > 0))
        .unwrap_or(0)
        + 1
}

/// The Events cert-manager records when an issuance starts: why, the new private key (not
/// with rotationPolicy Never), and the request made.
fn attempt_events(a: &AttemptInputs, request_name: &str) -> Vec<Effect> {
    let event = |reason: &'static str, action: &'static str, message: String| Effect::Event {
        warning: false,
        reason,
        action,
        message,
    };
    let mut out = vec![event("Issuing", "Trigger", a.message.clone())];
    if !a.reuse_key {
        out.push(event(
            "Generated",
            "GenerateKey",
            "Generated a new private key".into(),
        ));
    }
    out.push(event(
        "Requested",
        "Request",
        format!("Created new CertificateRequest resource \"{request_name}\""),
    ));
    out
}

struct AttemptInputs {
    trigger: &'static str,
    /// Why the attempt is made, for people (the Issuing condition's and Event's message).
    message: String,
    digest: String,
    policy: BackoffPolicy,
    reuse_key: bool,
    last: Option<LastIssuance>,
    /// A CA rotation's overlap still running: the new Secret keeps the CAs its `ca.crt`
    /// held and this `trust-extended-at` annotation (see [`crate::carotation`]).
    carry: Option<String>,
}

/// A random suffix for the next-private-key Secret, as cert-manager names it
/// (`<certificate>-<5 characters>`).
fn key_secret_name(cert: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut bytes = [0u8; 5];
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    let suffix: String = bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect();
    let mut base: String = cert.chars().take(247).collect();
    while base.ends_with(['-', '.']) {
        base.pop();
    }
    format!("{base}-{suffix}")
}

/// The key an attempt signs for: the Secret's own (rotationPolicy Never), the pending
/// request's kept key, or a new one. A pending request for another spec, or whose key is
/// lost, is dropped (returned as None, with the effects that drop it).
fn attempt_key(
    state: &mut State,
    obs: &Observed<'_>,
    material: Option<&TlsMaterial>,
    reuse_key: bool,
) -> Result<(Option<Pending>, PrivateKey, Vec<Effect>), Problem> {
    let params = obs.params;
    let mut effects = Vec::new();
    let pending = state
        .pending
        .take()
        .map(|p| *p)
        .filter(|p| p.spec == params.issuance && obs.pending_key.is_some() && !reuse_key);
    if pending.is_none() {
        effects.extend(drop_pending(state));
    }
    let existing = if reuse_key {
        material
            .and_then(|m| m.key.as_ref())
            .and_then(|k| k.as_ref().ok())
            .and_then(|k| PrivateKey::from_pkcs8_der(k.pkcs8_der()).ok())
    } else if pending.is_some() {
        obs.pending_key
            .and_then(|k| PrivateKey::from_pkcs8_der(k.pkcs8_der()).ok())
    } else {
        None
    };
    let key = match existing {
        Some(k) => k,
        None => PrivateKey::generate(params.issuance.key())
            .map_err(|e| Problem::new("KeyGenerationFailed", e.to_string()))?,
    };
    Ok((pending, key, effects))
}

fn issue_certificate(
    mut state: State,
    obs: &Observed<'_>,
    material: Option<&TlsMaterial>,
    passwords: &Passwords,
    issuer: &dyn issue::Issuer,
    a: AttemptInputs,
) -> Step {
    let now = obs.now;
    let params = obs.params;
    let (pending, key, mut effects) = match attempt_key(&mut state, obs, material, a.reuse_key) {
        Ok(v) => v,
        Err(p) => return blocked(state, &p, now, Some(now + 30)),
    };
    let (csr_pem, issuer_state, request_name) = match &pending {
        Some(p) => (p.csr_pem.clone(), p.state.clone(), p.request_name.clone()),
        None => match issue::build_request(&params.issuance, &key) {
            Ok(c) => {
                let revision = next_revision(&state, a.last.as_ref(), obs);
                (
                    c,
                    serde_json::Value::Null,
                    format!("{}-{revision}", obs.name),
                )
            }
            Err(e) => {
                let p = Problem::new("InvalidRequest", e.to_string());
                return blocked(state, &p, now, None);
            }
        },
    };
    if pending.is_none() {
        effects.extend(attempt_events(&a, &request_name));
    }
    let subject = key_str(obs);
    let outcome = issuer.process(&Request {
        subject: &subject,
        labels: obs.labels,
        csr_pem: &csr_pem,
        spec: &params.issuance,
        key: Some(&key),
        state: &issuer_state,
        current: material.and_then(|m| m.pair()).map(|(_, chain)| &chain[0]),
        now,
    });
    let req = RequestRecord {
        trigger: a.trigger,
        namespace: obs.namespace,
        certificate: obs.name,
        name: &request_name,
        revision: request_revision(&request_name),
        spec: &params.issuance,
        csr_pem: &csr_pem,
        now,
    };
    let attempt = |request: CertificateRequest| Attempt {
        trigger: a.trigger,
        digest: a.digest.clone(),
        policy: a.policy,
        request,
        limit: history_limit(params),
        carry: a.carry.clone(),
    };
    match outcome {
        Outcome::Issued(issued) => match issued.check(&key) {
            Ok((chain, mut ca)) => {
                let at = attempt(req.build(RequestResult::Issued(&chain, &ca, &issued.state)));
                // During a CA rotation's overlap the new Secret trusts what the old one
                // did too (callers not yet reissued still present the old CA's leaves).
                if a.carry.is_some() {
                    for c in material.map(|m| m.ca_certs()).unwrap_or_default() {
                        if !ca.iter().any(|x| x.der == c.der) && c.not_after > now {
                            ca.push(c.clone());
                        }
                    }
                }
                let m = Material {
                    key: &key,
                    chain: &chain,
                    ca: &ca,
                };
                issued_step(state, effects, obs, &m, passwords, &req, at)
            }
            Err(e) => {
                let at = attempt(req.build(RequestResult::Pending(None)));
                let message = e.to_string();
                let why = ("InvalidCertificate", message.as_str());
                failure(state, effects, &at, &key_str(obs), now, why)
            }
        },
        Outcome::Pending {
            reason,
            message,
            retry_after,
            state: issuer_state,
        } => {
            let waiting = format!("Waiting for the issuer: {reason}: {message}");
            let kept = match pending {
                Some(_) => None,
                None => Some(&key),
            };
            let wait = Wait {
                issuer_state,
                message: waiting,
                retry_at: now + retry_after.as_secs().max(1) as i64,
            };
            pending_step(state, effects, obs, &req, kept, wait)
        }
        Outcome::Failed { reason, message } => {
            let at = attempt(req.build(RequestResult::Pending(None)));
            failure(state, effects, &at, &key_str(obs), now, (&reason, &message))
        }
    }
}

/// A certificate issued for the attempt's key: the Secret to write, the request to
/// record after it, the state as up to date (and the state before, should the Secret be
/// refused).
fn issued_step(
    mut state: State,
    mut effects: Vec<Effect>,
    obs: &Observed<'_>,
    m: &Material<'_>,
    passwords: &Passwords,
    req: &RequestRecord<'_>,
    at: Attempt,
) -> Step {
    let carry = at.carry.clone();
    let (now, params, revision) = (obs.now, obs.params, req.revision);
    let leaf = &m.chain[0];
    let last = LastIssuance {
        spec: params.issuance.clone(),
        certificate_sha256: leaf.sha256_fingerprint(),
        revision: Some(revision),
    };
    let record = serde_json::to_string(&last).unwrap_or_default();
    let desired = match render_secret(obs, m, passwords, Some(record), carry.clone()) {
        Ok(d) => d,
        Err(p) => {
            let why = (p.reason.as_str(), p.message.as_str());
            return failure(state, effects, &at, &key_str(obs), now, why);
        }
    };
    let prev = state.clone();
    effects.push(Effect::WriteSecret(desired.secret));
    effects.push(Effect::Request {
        request: Box::new(at.request.clone()),
        limit: at.limit,
        after_secret: true,
    });
    effects.extend(drop_pending(&mut state));
    state.status.revision = Some(revision);
    state.last = Some(Box::new(last));
    state.failures = Failures::default();
    state.status.last_failure_time = None;
    state.status.failed_issuance_attempts = None;
    let renewal = crate::decide::renewal_time(params, leaf.not_before, leaf.not_after, None);
    up_to_date(
        &mut state.status,
        leaf.not_before,
        leaf.not_after,
        renewal,
        now,
    );
    effects.push(Effect::Event {
        warning: false,
        reason: "Issuing",
        action: "Issue",
        message: "The certificate has been successfully issued".into(),
    });
    tracing::info!(
        certificate = %key_str(obs),
        secret = %params.secret_name,
        revision,
        serial = %leaf.serial_hex,
        not_after = %rfc3339(leaf.not_after),
        "certificate issued"
    );
    // The attempt keeps the state before it, for a refused Secret write.
    let mut attempt = at;
    attempt.request = req.build(RequestResult::Pending(None));
    // A CA rotation's overlap still running ends with a trust-only write.
    let overlap_end = carry
        .as_deref()
        .and_then(certwright_pki::der::parse_rfc3339)
        .map(|t| t + obs.ca_rotation.overlap);
    let wake = renewal.unwrap_or(leaf.not_after);
    let mut s = Step::new(
        state,
        Summary::Issued { revision },
        Some(overlap_end.map_or(wake, |o| o.min(wake))),
    );
    s.effects = effects;
    s.on_refusal = Some(Box::new(Refusable {
        attempt,
        before: prev,
    }));
    s
}

/// What an issuer that answered "pending" said.
struct Wait {
    issuer_state: serde_json::Value,
    message: String,
    retry_at: i64,
}

/// The issuer answered "pending": the request is recorded as pending and kept in the
/// state, with its key stored when it is new (`new_key`), until `retry_at`.
fn pending_step(
    mut state: State,
    mut effects: Vec<Effect>,
    obs: &Observed<'_>,
    req: &RequestRecord<'_>,
    new_key: Option<&PrivateKey>,
    wait: Wait,
) -> Step {
    let now = obs.now;
    if let Some(key) = new_key {
        let name = key_secret_name(obs.name);
        match key.to_pem(KeyEncoding::Pkcs8) {
            Ok(pem) => effects.push(Effect::StoreKey {
                name: name.clone(),
                pem: Redacted(pem),
            }),
            Err(e) => {
                let p = Problem::new("KeyEncodingFailed", e.to_string());
                return blocked(state, &p, now, Some(now + 30));
            }
        }
        state.status.next_private_key_secret_name = Some(name);
    }
    let request = req.build(RequestResult::Pending(Some((
        &wait.issuer_state,
        &wait.message,
    ))));
    effects.push(Effect::Request {
        request: Box::new(request),
        limit: history_limit(obs.params),
        after_secret: false,
    });
    state.pending = Some(Box::new(Pending {
        request_name: req.name.to_string(),
        spec: obs.params.issuance.clone(),
        csr_pem: req.csr_pem.to_string(),
        state: wait.issuer_state,
        retry_at: wait.retry_at,
    }));
    ready(&mut state.status, false, req.trigger, &wait.message, now);
    let mut s = Step::new(state, Summary::Pending, Some(wait.retry_at));
    s.effects = effects;
    s
}

/// When the issuer suggests renewing the certificate in the Secret, if it does.
fn suggested_renewal(obs: &Observed<'_>, material: Option<&TlsMaterial>, key: &str) -> Option<i64> {
    let Resolved::Ready(r) = obs.issuer else {
        return None;
    };
    let (_, chain) = material?.pair()?;
    r.issuer.renewal_time(key, &chain[0], obs.now)
}

fn key_str(obs: &Observed<'_>) -> String {
    format!("{}/{}", obs.namespace, obs.name)
}

/// Records a failed attempt: the request as failed, one more failure (or the first for
/// new inputs), Ready and Issuing False, and the next attempt after the backoff.
fn failure(
    mut state: State,
    mut effects: Vec<Effect>,
    at: &Attempt,
    key: &str,
    now: i64,
    (reason, message): (&str, &str),
) -> Step {
    effects.extend(drop_pending(&mut state));
    let mut request = at.request.clone();
    finish_failed(&mut request, reason, message, &at.digest, now);
    effects.push(Effect::Request {
        request: Box::new(request),
        limit: at.limit,
        after_secret: false,
    });
    let attempts = if state.failures.inputs == at.digest {
        state.failures.attempts + 1
    } else {
        1
    };
    state.failures = Failures {
        attempts,
        last_failure: now,
        inputs: at.digest.clone(),
    };
    state.status.last_failure_time = Some(rfc3339(now));
    state.status.failed_issuance_attempts = Some(i64::from(attempts));
    let msg = format!(
        "The certificate request has failed to complete and will be retried: {reason}: {message}"
    );
    ready(&mut state.status, false, at.trigger, &msg, now);
    set_condition(
        &mut state.status.conditions,
        "Issuing",
        false,
        "Failed",
        &msg,
        now,
    );
    effects.push(Effect::Event {
        warning: true,
        reason: "Failed",
        action: "Issue",
        message: msg,
    });
    tracing::warn!(certificate = %key, reason, message, attempts, "issuance failed");
    let next = now + at.policy.delay(attempts, key).as_secs() as i64;
    let mut s = Step::new(state, Summary::Failed, Some(next));
    s.effects = effects;
    s
}

/// The shell could not write the Secret of an issued certificate because of its content
/// (too large, refused by the API server, say): the attempt failed, and is backed off
/// like any failure. Transient errors are not refusals: the shell retries those.
pub fn refused(r: Refusable, key: &str, message: &str, now: i64) -> Step {
    failure(
        r.before,
        Vec::new(),
        &r.attempt,
        key,
        now,
        ("SecretUnwritable", message),
    )
}

/// How a recorded request ended.
enum RequestResult<'a> {
    /// Issued: the chain, the CA, and what the issuer kept about it (or null).
    Issued(&'a [CertInfo], &'a [CertInfo], &'a serde_json::Value),
    /// Not answered yet: the issuer's state and what it said, if it said anything.
    Pending(Option<(&'a serde_json::Value, &'a str)>),
}

/// A request as a cert-manager CertificateRequest `<certificate>-<revision>`.
struct RequestRecord<'a> {
    trigger: &'a str,
    namespace: &'a str,
    certificate: &'a str,
    name: &'a str,
    revision: i64,
    spec: &'a IssuanceSpec,
    csr_pem: &'a str,
    now: i64,
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
}

impl RequestRecord<'_> {
    fn build(&self, result: RequestResult<'_>) -> CertificateRequest {
        let mut status = CertificateRequestStatus {
            conditions: vec![condition(
                "Approved",
                "True",
                "cert-manager.io",
                "Certificate request has been approved by certwright",
                self.now,
            )],
            ..Default::default()
        };
        let mut annotations = BTreeMap::from([
            (ann::CERT_NAME.to_string(), self.certificate.to_string()),
            (ann::CERT_REVISION.to_string(), self.revision.to_string()),
            (ann::REQUEST_REASON.to_string(), self.trigger.to_string()),
        ]);
        match result {
            RequestResult::Issued(chain, ca, state) => {
                if !state.is_null() {
                    annotations.insert(ann::ISSUER_STATE.into(), state.to_string());
                }
                let pem_of = |c: &[CertInfo]| {
                    c.iter()
                        .map(|c| certwright_pki::pem::encode("CERTIFICATE", &c.der))
                        .collect::<String>()
                };
                status.certificate = Some(b64(&pem_of(chain)));
                status.ca = Some(b64(&pem_of(ca)));
                status.conditions.push(condition(
                    "Ready",
                    "True",
                    "Issued",
                    "Certificate fetched from issuer successfully",
                    self.now,
                ));
            }
            RequestResult::Pending(waiting) => {
                annotations.insert(
                    ann::REQUEST_SPEC.into(),
                    serde_json::to_string(self.spec).unwrap_or_default(),
                );
                if let Some((state, message)) = waiting {
                    if !state.is_null() {
                        annotations.insert(ann::ISSUER_STATE.into(), state.to_string());
                    }
                    status
                        .conditions
                        .push(condition("Ready", "False", "Pending", message, self.now));
                }
            }
        }
        CertificateRequest {
            api_version: certwright_api::API_VERSION.into(),
            kind: "CertificateRequest".into(),
            metadata: ObjectMeta {
                name: self.name.into(),
                namespace: Some(self.namespace.into()),
                annotations,
                ..Default::default()
            },
            spec: CertificateRequestSpec {
                duration: Some(certwright_api::duration::format(self.spec.duration())),
                issuer_ref: IssuerRef {
                    name: self.spec.issuer_name.clone(),
                    kind: Some(self.spec.issuer_kind.as_str().into()),
                    group: Some(self.spec.issuer_group.clone()),
                },
                request: b64(self.csr_pem),
                is_ca: self.spec.is_ca,
                usages: self.spec.usages.clone(),
                ..Default::default()
            },
            status: Some(status),
        }
    }
}

/// Marks a recorded request failed, with the digest of the inputs that failed.
fn finish_failed(cr: &mut CertificateRequest, reason: &str, message: &str, digest: &str, now: i64) {
    let a = &mut cr.metadata.annotations;
    a.remove(ann::REQUEST_SPEC);
    a.remove(ann::ISSUER_STATE);
    a.insert(ann::FAILED_INPUTS.into(), digest.into());
    let status = cr.status.get_or_insert_with(Default::default);
    status.failure_time = Some(rfc3339(now));
    status.conditions.retain(|c| c.type_ != "Ready");
    status.conditions.push(condition(
        "Ready",
        "False",
        "Failed",
        &format!("{reason}: {message}"),
        now,
    ));
}

/// The digest of the inputs a recorded failed request failed with (see
/// [`Failures::inputs`]).
pub fn failed_inputs(cr: &CertificateRequest) -> Option<&str> {
    cr.metadata
        .annotations
        .get(ann::FAILED_INPUTS)
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve::Ready;
    use certwright_api::validate;
    use certwright_api::Certificate;

    const T0: i64 = 1_800_000_000;

    fn params(extra: &str) -> CertificateParams {
        let yaml = format!(
            "apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {{name: web, namespace: demo}}\nspec:\n  secretName: web-tls\n  issuerRef: {{name: i}}\n  dnsNames: [web.example.com]\n  privateKey: {{algorithm: ECDSA}}\n{extra}"
        );
        let c: Certificate = serde_saphyr::from_str(&yaml).expect("fixture parses");
        validate::certificate(&c).expect("fixture is valid")
    }

    fn issuer(test: Option<&str>) -> Resolved {
        let ready = match test {
            Some(t) => crate::testing::issuer(t).expect("test issuer"),
            None => Ready {
                issuer: std::sync::Arc::new(crate::issue::SelfSigned::default()),
                policy: BackoffPolicy::LOCAL,
                digest: "selfSigned".into(),
                reason: "IsReady",
                message: "",
            },
        };
        Resolved::Ready(ready)
    }

    /// A tiny shell: holds the Secret and the kept key, applies effects.
    #[derive(Default)]
    struct World {
        secret: Option<SecretData>,
        keys: BTreeMap<String, String>,
        requests: Vec<CertificateRequest>,
        events: Vec<String>,
    }

    impl World {
        fn step(&mut self, state: State, p: &CertificateParams, r: &Resolved, now: i64) -> Step {
            let pending_key = state
                .status
                .next_private_key_secret_name
                .as_ref()
                .and_then(|n| self.keys.get(n))
                .map(|pem| PrivateKey::from_pem(pem.as_bytes()).expect("kept key"));
            let pw = Ok(Passwords::default());
            let none = || None;
            let s = step(
                state,
                &Observed {
                    namespace: "demo",
                    name: "web",
                    labels: &BTreeMap::new(),
                    params: p,
                    secret: self.secret.as_ref(),
                    secret_base: None,
                    metadata: Metadata::Exact,
                    issuer: r,
                    passwords: &pw,
                    pending_key: pending_key.as_ref(),
                    recorded_revision: &none,
                    ca_rotation: Default::default(),
                    now,
                    generation: Some(3),
                },
            );
            for e in &s.effects {
                match e {
                    Effect::WriteSecret(d) => self.secret = Some(d.clone()),
                    Effect::Request { request, .. } => {
                        self.requests
                            .retain(|r| r.metadata.name != request.metadata.name);
                        self.requests.push((**request).clone());
                    }
                    Effect::StoreKey { name, pem } => {
                        self.keys.insert(name.clone(), pem.0.clone());
                    }
                    Effect::DeleteKey { name } => {
                        self.keys.remove(name);
                    }
                    Effect::Event { reason, .. } => self.events.push((*reason).into()),
                }
            }
            s
        }
    }

    fn reason(s: &State, t: &str) -> String {
        s.status
            .condition(t)
            .map(|c| format!("{}/{}", c.status, c.reason))
            .unwrap_or_default()
    }

    #[test]
    fn a_pending_request_keeps_its_key_and_resumes_from_a_recorded_request() {
        let p = params("");
        let r = issuer(Some("pending-twice"));
        let mut w = World::default();
        let s1 = w.step(State::default(), &p, &r, T0);
        assert_eq!(s1.summary, Summary::Pending);
        assert_eq!(s1.next_check, Some(T0 + 5));
        let key_name = s1
            .state
            .status
            .next_private_key_secret_name
            .clone()
            .expect("next private key named");
        assert!(
            key_name.starts_with("web-") && key_name.len() == 9,
            "{key_name}"
        );
        assert!(w.keys.contains_key(&key_name));
        assert_eq!(reason(&s1.state, "Issuing"), "True/DoesNotExist");
        // A restart that kept only the status and the recorded request (the operator).
        let cr = w.requests.last().expect("pending request recorded").clone();
        assert_eq!(cr.metadata.name, "web-1");
        let pending = Pending::from_request(&cr).expect("the request is pending");
        assert_eq!(pending.state["polls"], 1);
        let restored = State {
            status: s1.state.status.clone(),
            pending: Some(Box::new(pending)),
            ..Default::default()
        };
        let s2 = w.step(restored, &p, &r, T0 + 5);
        assert_eq!(s2.summary, Summary::Pending);
        assert_eq!(
            s2.state.status.next_private_key_secret_name.as_deref(),
            Some(key_name.as_str()),
            "the same kept key"
        );
        let kept = PrivateKey::from_pem(w.keys[&key_name].as_bytes()).expect("key");
        let s3 = w.step(s2.state, &p, &r, T0 + 10);
        assert_eq!(s3.summary, Summary::Issued { revision: 1 });
        assert!(w.keys.is_empty(), "the kept key is deleted after issuance");
        assert_eq!(s3.state.status.next_private_key_secret_name, None);
        let m = TlsMaterial::read(w.secret.as_ref().expect("secret"));
        let (k, _) = m.pair().expect("pair");
        assert_eq!(k.spki_der(), kept.spki_der(), "issued for the pending key");
        assert_eq!(reason(&s3.state, "Ready"), "True/Ready");
        assert_eq!(reason(&s3.state, "Issuing"), "");
        let issued = w.requests.last().expect("request");
        assert!(
            Pending::from_request(issued).is_none(),
            "issued is not pending"
        );
        assert_eq!(
            w.events,
            ["Issuing", "Generated", "Requested", "Issuing"],
            "cert-manager's four Events, the last once the pending request is issued"
        );
    }

    #[test]
    fn garbage_fails_and_backs_off_until_the_inputs_change() {
        let p = params("");
        let garbage = issuer(Some("garbage"));
        let mut w = World::default();
        let s1 = w.step(State::default(), &p, &garbage, T0);
        assert_eq!(s1.summary, Summary::Failed);
        assert_eq!(s1.state.status.failed_issuance_attempts, Some(1));
        assert_eq!(reason(&s1.state, "Issuing"), "False/Failed");
        let msg = &s1.state.status.condition("Ready").expect("ready").message;
        assert!(msg.contains("InvalidCertificate"), "{msg}");
        let delay = s1.next_check.expect("retry") - T0;
        assert!(
            (3240..=3960).contains(&delay),
            "an hour, give or take: {delay}"
        );
        // Restored as the operator restores it: attempts from the status, the inputs
        // from the failed request.
        let cr = w.requests.last().expect("failed request");
        let restored = State {
            status: s1.state.status.clone(),
            failures: Failures {
                attempts: 1,
                last_failure: T0,
                inputs: failed_inputs(cr).expect("inputs recorded").into(),
            },
            ..Default::default()
        };
        let s2 = w.step(restored.clone(), &p, &garbage, T0 + 60);
        assert_eq!(s2.summary, Summary::BackingOff);
        // Another issuer is another input: at once.
        let s3 = w.step(restored, &p, &issuer(None), T0 + 2);
        assert_eq!(s3.summary, Summary::Issued { revision: 1 });
        assert_eq!(s3.state.status.failed_issuance_attempts, None);
        assert_eq!(s3.state.status.last_failure_time, None);
    }

    #[test]
    fn manual_renewal_reissues_an_up_to_date_certificate_once() {
        let p = params("");
        let r = issuer(None);
        let mut w = World::default();
        let s1 = w.step(State::default(), &p, &r, T0);
        let s2 = w.step(s1.state, &p, &r, T0 + 5);
        assert_eq!(s2.summary, Summary::UpToDate { rewritten: false });
        let mut state = s2.state;
        request_renewal(&mut state.status, T0 + 6);
        let s3 = w.step(state, &p, &r, T0 + 6);
        assert_eq!(s3.summary, Summary::Issued { revision: 2 });
        let s4 = w.step(s3.state, &p, &r, T0 + 7);
        assert_eq!(s4.summary, Summary::UpToDate { rewritten: false });
    }

    #[test]
    fn a_refused_secret_is_a_failed_attempt() {
        let p = params("");
        let r = issuer(None);
        let mut w = World::default();
        let s1 = w.step(State::default(), &p, &r, T0);
        let back = refused(
            *s1.on_refusal.expect("refusable"),
            "demo/web",
            "too large",
            T0,
        );
        assert_eq!(back.summary, Summary::Failed);
        assert_eq!(back.state.status.revision, None);
        assert_eq!(back.state.status.failed_issuance_attempts, Some(1));
        let m = &back.state.status.condition("Ready").expect("ready").message;
        assert!(m.contains("SecretUnwritable: too large"), "{m}");
    }

    #[test]
    fn passwords_come_from_their_secrets() {
        let p = params(
            "  keystores:\n    jks:\n      create: true\n      passwordSecretRef: {name: pw, key: password}\n",
        );
        assert_eq!(password_secrets(&p), ["pw"]);
        let none = BTreeMap::from([("pw", None)]);
        let e = passwords("demo", &p, &none).expect_err("missing");
        assert_eq!(e.reason, "MissingPasswordSecret");
        assert_eq!(
            e.message,
            "spec.keystores.jks.passwordSecretRef: secret demo/pw not found"
        );
        let mut s = SecretData::default();
        s.data.insert("password".into(), b"".to_vec());
        let e =
            passwords("demo", &p, &BTreeMap::from([("pw", Some(s.clone()))])).expect_err("empty");
        assert_eq!(e.reason, "InvalidPassword");
        s.data.insert("password".into(), b"secret".to_vec());
        let ok = passwords("demo", &p, &BTreeMap::from([("pw", Some(s))])).expect("ok");
        assert_eq!(ok.jks.as_deref(), Some("secret"));
    }
}
