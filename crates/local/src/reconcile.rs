//! Reconciling one Certificate (or one plain Secret manifest) in the local runtime: read
//! what the engine needs, ask it for a step, apply the step's effects.

use crate::model::{Key, Model, Problem};
use crate::records::CertRecord;
use crate::records::StateDir;
use crate::store::SecretStore;
use certwright_acme::IssuerInputs;
use certwright_api::acme::{AcmeIssuer, AcmeIssuerStatus};
use certwright_api::annotations as ann;
use certwright_api::validate::{IssuerKind, IssuerType};
use certwright_api::CertificateRequest;
use certwright_engine::lifecycle::{self, Effect, Observed};
use certwright_engine::render::{self, Metadata, Passwords};
use certwright_engine::resolve::{self, Found};
use certwright_engine::{Resolved, SecretData};
use certwright_pki::PrivateKey;
use std::collections::BTreeMap;

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
    /// Honour Issuers' test-issuer annotation (tests only).
    pub test_issuers: bool,
    /// The ACME service, once an ACME issuer has been seen.
    pub acme: Option<&'a certwright_acme::Service>,
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
        tracing::warn!(request = %name, error = %e, "cannot record request");
    }
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

    /// Looks an issuer up and hands what was found to `f` (the engine decides; this only
    /// reads): `None` when there is no such issuer.
    fn with_issuer<R>(
        &self,
        ns: &str,
        issuer_name: &str,
        kind: IssuerKind,
        f: impl FnOnce(Option<&Found<'_>>, &str, Option<AcmeIssuerStatus>) -> R,
    ) -> R {
        let (entry, secret_ns) = match kind {
            IssuerKind::ClusterIssuer => {
                (self.model.cluster_issuers.get(issuer_name), self.cluster_ns)
            }
            IssuerKind::Issuer => (
                self.model
                    .issuers
                    .get(&(ns.to_string(), issuer_name.to_string())),
                ns,
            ),
        };
        let desc = resolve::describe(kind, issuer_name, ns);
        let Some(entry) = entry else {
            return f(None, &desc, None);
        };
        let ca = entry
            .kind
            .as_ref()
            .ok()
            .and_then(|k| k.ca_secret())
            .map(|name| self.secret(secret_ns, name));
        let test_issuer = entry
            .issuer
            .as_ref()
            .filter(|_| self.test_issuers)
            .and_then(|i| i.metadata.annotations.get(ann::TEST_ISSUER))
            .map(String::as_str);
        let acme = match entry.kind.as_ref() {
            Ok(IssuerType::Acme(spec)) => Some(self.acme_check(spec, secret_ns, &desc, true)),
            _ => None,
        };
        let found = Found {
            desc: &desc,
            spec: entry.kind.as_ref(),
            secret_ns,
            ca_secret: ca.as_ref().map(|r| r.as_ref().map(Option::as_ref)),
            acme: acme.as_ref().map(|(r, _)| r),
            test_issuer,
            now: self.now,
        };
        let status = acme.as_ref().and_then(|(_, s)| s.clone());
        f(Some(&found), &desc, status)
    }

    /// Checks an ACME issuer with the service: its account key (generated into the
    /// store when missing and allowed) and its registration.
    fn acme_check(
        &self,
        spec: &AcmeIssuer,
        secret_ns: &str,
        desc: &str,
        may_generate: bool,
    ) -> (Result<resolve::Ready, Problem>, Option<AcmeIssuerStatus>) {
        let Some(svc) = self.acme else {
            return (
                Err(Problem::new(
                    "NotSupported",
                    "the ACME service is not running",
                )),
                None,
            );
        };
        let read = |name: &str| self.secret(secret_ns, name);
        let check = svc.check_issuer(&IssuerInputs {
            id: desc,
            spec,
            read_secret: &read,
            now: self.now,
        });
        match check.generated_key {
            Some(g) if may_generate => {
                let mut data = SecretData::default();
                data.data.insert(g.key, g.pem.0.into_bytes());
                if let Err(e) = self.store.write(secret_ns, &g.secret, &data) {
                    let p = Problem::new(
                        "ErrGenerateAccountKey",
                        format!(
                            "cannot store the account key in Secret {secret_ns}/{}: {e}",
                            g.secret
                        ),
                    );
                    return (Err(p), None);
                }
                tracing::info!(secret = %format!("{secret_ns}/{}", g.secret), "generated an ACME account key");
                self.acme_check(spec, secret_ns, desc, false)
            }
            _ => (check.result, check.status),
        }
    }

    /// Resolves a Certificate's issuer.
    pub fn resolve(&self, cert_ns: &str, issuer_name: &str, kind: IssuerKind) -> Resolved {
        self.with_issuer(cert_ns, issuer_name, kind, |found, desc, _| {
            resolve::resolve(found, desc)
        })
    }

    /// An issuer's own Ready condition (ready, reason, message) and, for an ACME issuer,
    /// its account.
    pub fn issuer_ready(
        &self,
        ns: &str,
        issuer_name: &str,
        kind: IssuerKind,
    ) -> ((bool, String, String), Option<AcmeIssuerStatus>) {
        self.with_issuer(ns, issuer_name, kind, |found, desc, acme| {
            let cond = match found.map(resolve::check) {
                Some(Ok(r)) => (true, r.reason.to_string(), r.message.to_string()),
                Some(Err(p)) => (false, p.reason, p.message),
                None => (false, "NotFound".into(), format!("{desc} not found")),
            };
            (cond, acme)
        })
    }

    /// Keystore passwords of a Certificate, from literal values or password Secrets.
    fn passwords(
        &self,
        ns: &str,
        p: &certwright_api::validate::CertificateParams,
    ) -> Result<Passwords, Problem> {
        let mut secrets = BTreeMap::new();
        for name in lifecycle::password_secrets(p) {
            secrets.insert(name, self.secret(ns, name)?);
        }
        lifecycle::passwords(ns, p, &secrets)
    }
}

/// What reconciling one Certificate did.
pub struct Result_ {
    pub record: CertRecord,
    /// The Secret was rewritten.
    pub wrote: bool,
}

/// A Certificate that cannot proceed: Ready False with the problem, looked at again at
/// `retry` (or when its inputs change).
pub fn fail(mut rec: CertRecord, p: &Problem, now: i64, retry: Option<i64>) -> Result_ {
    let step = lifecycle::blocked(rec.take_state(), p, now, retry);
    rec.put_state(step.state);
    rec.next_check = step.next_check;
    Result_ {
        record: rec,
        wrote: false,
    }
}

/// Reconciles one Certificate: observes, asks the engine for a step, applies it.
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
    let current = match ctx.store.read(ns, &params.secret_name) {
        Ok(c) => c,
        Err(e) => {
            let p = Problem::new("SecretUnreadable", e.to_string());
            return fail(rec, &p, now, Some(now + 30));
        }
    };
    let resolved = issuer.cloned().unwrap_or_else(|| {
        ctx.resolve(
            ns,
            &params.issuance.issuer_name,
            params.issuance.issuer_kind,
        )
    });
    let passwords = ctx.passwords(ns, params);
    let pending_key = rec
        .pending
        .as_ref()
        .and_then(|_| ctx.state.read_pending_key(ns, name).ok().flatten())
        .and_then(|pem| PrivateKey::from_pem(&pem).ok());
    let base = ctx
        .model
        .secrets
        .get(&(ns.to_string(), params.secret_name.clone()))
        .map(|(_, s)| s);
    let recorded = || {
        ctx.state
            .requests(ns, name)
            .iter()
            .map(|r| crate::records::request_revision(&r.metadata.name))
            .max()
    };
    let obs = Observed {
        namespace: ns,
        name,
        labels: &entry.labels,
        params,
        secret: current.as_ref(),
        secret_base: base,
        metadata: Metadata::Exact,
        issuer: &resolved,
        passwords: &passwords,
        pending_key: pending_key.as_ref(),
        recorded_revision: &recorded,
        now,
        generation: None,
        ca_rotation: Default::default(),
    };
    let step = lifecycle::step(rec.take_state(), &obs);
    apply(ctx, rec, step, key, &params.secret_name)
}

/// Applies a step's effects in order; a Secret that cannot be written or a key that
/// cannot be kept leaves the Certificate as it was before the step, not Ready.
fn apply(
    ctx: &Ctx<'_>,
    mut rec: CertRecord,
    step: lifecycle::Step,
    key: &Key,
    secret_name: &str,
) -> Result_ {
    let (ns, name) = (key.0.as_str(), key.1.as_str());
    let now = ctx.now;
    let mut wrote = false;
    let lifecycle::Step {
        state,
        effects,
        next_check,
        on_refusal,
        ..
    } = step;
    // An issued certificate that cannot be written leaves the state as it was before the
    // step; any other step keeps its new state.
    let undo = |mut rec: CertRecord, p: Problem, state: certwright_engine::State| {
        rec.put_state(on_refusal.map(|r| r.before()).unwrap_or(state));
        fail(rec, &p, now, Some(now + 30))
    };
    let mut records = Vec::new();
    for effect in effects {
        match effect {
            Effect::WriteSecret(desired) => {
                if let Err(p) = write_secret(ctx, ns, secret_name, &desired) {
                    return undo(rec, p, state);
                }
                wrote = true;
            }
            Effect::Request {
                request,
                limit,
                after_secret,
            } => records.push(RequestRecord {
                certificate: key.clone(),
                secret: after_secret.then(|| format!("{ns}/{secret_name}")),
                request: *request,
                limit,
            }),
            Effect::StoreKey { pem, .. } => {
                if let Err(e) = ctx.state.save_pending_key(ns, name, pem.0.as_bytes()) {
                    let p = Problem::new(
                        "StateUnwritable",
                        format!("saving the pending private key: {e}"),
                    );
                    return undo(rec, p, state);
                }
            }
            Effect::DeleteKey { .. } => ctx.state.remove_pending_key(ns, name),
            // Events are the engine's log lines here.
            Effect::Event { .. } => {}
        }
    }
    for r in records {
        keep_request(ctx, r);
    }
    rec.put_state(state);
    rec.next_check = next_check;
    Result_ { record: rec, wrote }
}

fn write_secret(ctx: &Ctx<'_>, ns: &str, name: &str, s: &SecretData) -> Result<(), Problem> {
    let unwritable = |e: crate::store::StoreError| Problem::new("SecretUnwritable", e.to_string());
    match ctx.batch {
        Some(batch) => {
            let staged = ctx.store.stage(ns, name, s, false).map_err(unwritable)?;
            batch
                .lock()
                .map_err(|_| Problem::new("InternalError", "batch lock poisoned"))?
                .staged
                .push(staged);
        }
        None => ctx.store.write(ns, name, s).map_err(unwritable)?,
    }
    Ok(())
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
    write_secret(ctx, ns, secret_name, &desired.secret)?;
    Ok(true)
}

/// Reconciles a Secret manifest that no Certificate writes: its data, plus what
/// cert-utils' annotations add (keystores, truststore, certificate info), computed by the
/// engine as the operator computes it for the same Secret in a cluster.
pub fn plain_secret(ctx: &Ctx<'_>, key: &Key) -> Result<bool, Problem> {
    let Some((_, manifest)) = ctx.model.secrets.get(key) else {
        return Ok(false);
    };
    let current = ctx
        .store
        .read(&key.0, &key.1)
        .map_err(|e| Problem::new("SecretUnreadable", e.to_string()))?;
    let rendered = certwright_engine::annotated::secret_outputs(manifest)?;
    let ks = render::keystore_options(None, &Passwords::default(), &manifest.annotations);
    let mut desired = manifest.clone();
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

/// Reconciles a ConfigMap manifest into `store`: its data and binaryData as files, as a
/// mounted ConfigMap shows them, plus the truststore cert-utils' annotations ask for,
/// computed by the engine as the operator computes it for the same ConfigMap in a
/// cluster. Written only when a file's content changes.
pub fn configmap(ctx: &Ctx<'_>, store: &SecretStore, key: &Key) -> Result<bool, Problem> {
    let Some((_, cm)) = ctx.model.configmaps.get(key) else {
        return Ok(false);
    };
    let mut files: BTreeMap<String, Vec<u8>> = cm
        .data
        .iter()
        .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
        .collect();
    files.extend(cm.binary.clone());
    if let Some(store) =
        certwright_engine::annotated::configmap_truststore(&cm.annotations, &cm.data, &cm.binary)?
    {
        files.insert(ann::keys::TRUSTSTORE_JKS.to_string(), store);
    }
    let desired = SecretData {
        type_: None,
        data: files,
        annotations: cm.annotations.clone(),
        labels: cm.labels.clone(),
    };
    let current = store
        .read(&key.0, &key.1)
        .map_err(|e| Problem::new("ConfigMapUnreadable", e.to_string()))?;
    if current.is_some_and(|c| {
        c.data == desired.data && c.annotations == desired.annotations && c.labels == desired.labels
    }) {
        return Ok(false);
    }
    store
        .write(&key.0, &key.1, &desired)
        .map_err(|e| Problem::new("ConfigMapUnwritable", e.to_string()))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Model;
    use certwright_engine::issue::{self, Issuer, Outcome, Request};
    use std::sync::{Arc, Mutex};

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
            issue::SelfSigned::default().process(req)
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
        let resolved = Resolved::Ready(certwright_engine::resolve::Ready {
            issuer: issuer.clone(),
            policy: certwright_engine::BackoffPolicy::REMOTE,
            digest: "slow".into(),
            reason: "IsReady",
            message: "",
        });
        let key = ("demo".to_string(), "web".to_string());
        let ctx_at = |now: i64| Ctx {
            model: &model,
            store: &store,
            state: &state,
            cluster_ns: "cert-manager",
            now,
            batch: None,
            test_issuers: false,
            acme: None,
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
        let m = certwright_engine::TlsMaterial::read(&secret);
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
