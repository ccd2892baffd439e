//! The local runtime's loop: load manifests, reconcile in dependency order on all cores,
//! persist status, run reload hooks; with `once`, a single pass; otherwise keep going,
//! renew on time, react to manifest and Secret changes, stop on SIGINT/SIGTERM.

use crate::hooks::{self, Hooks};
use crate::model::{Key, Model, Problem};
use crate::reconcile::{self, Ctx};
use crate::records::{CertRecord, HookRecord, IssuerRecord, ProblemRecord, StateDir};
use crate::store::SecretStore;
use crate::watch::Changes;
use certwright_api::validate::{IssuerKind, IssuerType};
use certwright_engine::status::set_condition;
use certwright_engine::Resolved;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// How the runtime is started.
#[derive(Debug, Clone)]
pub struct Options {
    pub paths: Vec<PathBuf>,
    /// Read subdirectories of manifest directories too.
    pub recursive: bool,
    pub state: PathBuf,
    pub once: bool,
    pub cluster_resource_namespace: String,
    pub workers: usize,
    /// fsync every write (default); off trades crash safety against power loss for speed.
    pub durable: bool,
    /// Refuse ReloadHooks' `command` (`--no-command-hooks`); signals still work.
    pub no_command_hooks: bool,
    /// Honour Issuers' `certwright.io/test-issuer` annotation (tests only; not a flag).
    pub test_issuers: bool,
    pub clock: Clock,
    pub acme: crate::acme::AcmeOptions,
    /// With `once`: how long to wait for ACME orders to finish before exiting.
    pub once_timeout: Duration,
    /// The edge (HAProxy driven from Route manifests); not started with `once`.
    pub edge: Option<crate::edge::EdgeOptions>,
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The io error is part of the message (not a separate `source`), so that a printed
    /// error chain names it once.
    #[error("state directory {path}: {error}")]
    State { path: String, error: std::io::Error },
    #[error("state directory {0} is in use by another certwright process")]
    Locked(String),
    #[error("--cluster-resource-namespace: {0}")]
    ClusterNamespace(String),
    #[error("--acme-http01-address: {0}")]
    Http01(std::io::Error),
    #[error("--edge-listen: {0}")]
    Edge(String),
}

/// The result of a run: every Certificate's readiness and the problems found.
#[derive(Debug, Default)]
pub struct Summary {
    pub certificates: Vec<CertRecord>,
    pub problems: Vec<ProblemRecord>,
}

impl Summary {
    pub fn all_ready(&self) -> bool {
        self.certificates.iter().all(CertRecord::ready) && self.problems.is_empty()
    }
}

/// The runtime's clock: the system's, or a time a test sets (the parity suite moves it
/// to a Certificate's renewal time instead of waiting for it).
#[derive(Debug, Clone, Default)]
pub struct Clock(Option<Arc<std::sync::atomic::AtomicI64>>);

impl Clock {
    /// A clock that reads `t` (Unix seconds) until `t` is changed.
    pub fn set_by(t: Arc<std::sync::atomic::AtomicI64>) -> Clock {
        Clock(Some(t))
    }

    pub fn now(&self) -> i64 {
        match &self.0 {
            Some(t) => t.load(Ordering::Relaxed),
            None => SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or_default(),
        }
    }
}

/// Certificates reconciled and published together: each batch is flushed to disk and made
/// visible before the next starts, so a crash loses at most one batch's work.
const BATCH: usize = 256;

/// Request records held before they are written to their shard files.
const REQUESTS_FLUSH: usize = 2048;

/// Certificates grouped by dependency level: a Certificate whose issuer is a CA backed
/// by another Certificate's Secret comes after that Certificate.
pub fn levels(model: &Model, cluster_ns: &str) -> Vec<Vec<Key>> {
    let mut writer: HashMap<(String, String), Key> = HashMap::new();
    for (k, e) in &model.certificates {
        if let Ok(p) = &e.params {
            writer
                .entry((k.0.clone(), p.secret_name.clone()))
                .or_insert_with(|| k.clone());
        }
    }
    let dep = |k: &Key| -> Option<Key> {
        writer
            .get(&ca_secret(model, cluster_ns, k)?)
            .filter(|w| *w != k)
            .cloned()
    };
    fn level_of(
        k: &Key,
        dep: &dyn Fn(&Key) -> Option<Key>,
        memo: &mut HashMap<Key, usize>,
        visiting: &mut BTreeSet<Key>,
    ) -> usize {
        if let Some(l) = memo.get(k) {
            return *l;
        }
        if !visiting.insert(k.clone()) {
            return 0; // a cycle: the CA secret will be reported missing
        }
        let l = dep(k)
            .map(|d| level_of(&d, dep, memo, visiting) + 1)
            .unwrap_or(0);
        visiting.remove(k);
        memo.insert(k.clone(), l);
        l
    }
    let mut level: HashMap<Key, usize> = HashMap::new();
    for k in model.certificates.keys() {
        let mut visiting = BTreeSet::new();
        level_of(k, &dep, &mut level, &mut visiting);
    }
    let max = level.values().copied().max().unwrap_or(0);
    let mut out = vec![Vec::new(); max + 1];
    for (k, l) in level {
        out[l].push(k);
    }
    for l in &mut out {
        l.sort();
    }
    out.retain(|l| !l.is_empty());
    out
}

/// The Secret (namespace, name) a Certificate's CA issuer signs with, if its issuer is a CA.
fn ca_secret(model: &Model, cluster_ns: &str, k: &Key) -> Option<(String, String)> {
    let p = model.certificates.get(k)?.params.as_ref().ok()?;
    let (entry, ns) = if p.issuance.issuer_kind == IssuerKind::ClusterIssuer {
        (
            model.cluster_issuers.get(&p.issuance.issuer_name)?,
            cluster_ns.to_string(),
        )
    } else {
        (
            model
                .issuers
                .get(&(k.0.clone(), p.issuance.issuer_name.clone()))?,
            k.0.clone(),
        )
    };
    match entry.kind.as_ref().ok()? {
        IssuerType::Ca { secret_name, .. } => Some((ns, secret_name.clone())),
        _ => None,
    }
}

/// The Certificates whose CA issuer signs with one of the `secrets`.
fn signed_with(model: &Model, cluster_ns: &str, secrets: &[(String, String)]) -> BTreeSet<Key> {
    model
        .certificates
        .keys()
        .filter(|k| ca_secret(model, cluster_ns, k).is_some_and(|s| secrets.contains(&s)))
        .cloned()
        .collect()
}

/// A record carrying its Certificate's name.
fn named(mut rec: CertRecord, k: &Key) -> CertRecord {
    rec.namespace = k.0.clone();
    rec.name = k.1.clone();
    rec
}

/// Identifies a Certificate's issuer: (kind, namespace or "" for ClusterIssuers, name).
fn issuer_id(k: &Key, p: &certwright_api::validate::CertificateParams) -> (String, String, String) {
    let ns = if p.issuance.issuer_kind == IssuerKind::ClusterIssuer {
        String::new()
    } else {
        k.0.clone()
    };
    (
        p.issuance.issuer_kind.as_str().into(),
        ns,
        p.issuance.issuer_name.clone(),
    )
}

/// The runtime's state across passes.
pub struct Runtime {
    opts: Options,
    state: StateDir,
    store: SecretStore,
    /// ConfigMaps, in the same layout as Secrets.
    configmaps: SecretStore,
    model: Model,
    records: BTreeMap<Key, CertRecord>,
    hooks: Hooks,
    /// Secret versions seen after the last pass, to notice edits and deletions.
    versions: HashMap<(String, String), Option<String>>,
    /// Secret manifests' problems in the last pass.
    last_extra: Vec<(String, Problem)>,
    /// Records changed in this pass and request records made, saved at its end.
    unsaved_records: BTreeSet<Key>,
    unsaved_requests: Vec<crate::records::NewRequest>,
    /// The first state write that failed since the health file was last updated.
    state_errors: Mutex<Option<String>>,
    /// The health file (see [`crate::records::Health`]), when it could be prepared.
    health: Mutex<Option<crate::records::Health>>,
    /// The ACME service: started with the runtime when an HTTP-01 address is given, else
    /// when the manifests first name an ACME issuer.
    acme: Option<crate::acme::LocalAcme>,
    /// The edge, when asked for, and the Routes' status as last applied.
    edge: Option<crate::edge::Edge>,
    routes: Vec<crate::records::RouteRecord>,
    _lock: std::fs::File,
}

impl Runtime {
    pub fn new(opts: Options) -> Result<Runtime, RuntimeError> {
        certwright_api::validate::check_namespace(&opts.cluster_resource_namespace, "value")
            .map_err(|e| RuntimeError::ClusterNamespace(e.to_string()))?;
        let serr = |error| RuntimeError::State {
            path: opts.state.display().to_string(),
            error,
        };
        let state = StateDir::open(&opts.state, true).map_err(serr)?;
        let mut store = state.secret_store().map_err(serr)?;
        let lock = state.lock_file().map_err(serr)?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive)
            .map_err(|_| RuntimeError::Locked(opts.state.display().to_string()))?;
        store.durable = opts.durable;
        let mut configmaps = state.configmap_store().map_err(serr)?;
        configmaps.durable = opts.durable;
        // Versions a crash left staged but never committed are removed; after a clean
        // stop (the marker is there) there are none, and the scan is skipped.
        if !state.take_clean_marker() {
            let mut stale = 0;
            for tree in [&store, &configmaps] {
                for (ns, name) in tree.list() {
                    stale += tree.clean_stale(&ns, &name);
                }
            }
            if stale > 0 {
                tracing::info!(count = %stale, "removed stale secret versions");
            }
        }
        let records = state.load_records();
        state.migrate(&records).map_err(serr)?;
        let acme = match opts.acme.http01_address {
            Some(_) => Some(
                crate::acme::LocalAcme::start(&opts.acme, in_flight(&records))
                    .map_err(RuntimeError::Http01)?,
            ),
            None => None,
        };
        let edge = match (&opts.edge, opts.once) {
            (Some(e), false) => Some(
                crate::edge::Edge::new(e.clone(), opts.state.join("edge"))
                    .map_err(|e| RuntimeError::Edge(e.to_string()))?,
            ),
            _ => None,
        };
        let health = state
            .open_health()
            .map_err(|e| tracing::warn!(error = %e, "cannot prepare the health file"))
            .ok();
        Ok(Runtime {
            model: Model::default(),
            records,
            hooks: Hooks::new(opts.no_command_hooks),
            versions: HashMap::new(),
            last_extra: Vec::new(),
            unsaved_records: BTreeSet::new(),
            unsaved_requests: Vec::new(),
            state_errors: Default::default(),
            health: Mutex::new(health),
            acme,
            edge,
            routes: Vec::new(),
            state,
            store,
            configmaps,
            opts,
            _lock: lock,
        })
    }

    fn load(&mut self) {
        let model = Model::load(&self.opts.paths, self.opts.recursive);
        self.install(model);
    }

    /// Makes a newly loaded model current.
    fn install(&mut self, model: Model) {
        self.model = model;
        let names_acme = |e: &crate::model::IssuerEntry| matches!(e.kind, Ok(IssuerType::Acme(_)));
        if self.acme.is_none()
            && (self.model.issuers.values().any(names_acme)
                || self.model.cluster_issuers.values().any(names_acme))
        {
            match crate::acme::LocalAcme::start(&self.opts.acme, in_flight(&self.records)) {
                Ok(a) => self.acme = Some(a),
                Err(e) => tracing::error!(error = %e, "cannot start the ACME service"),
            }
        }
        // Forget records of Certificates that are gone.
        let gone: Vec<Key> = self
            .records
            .keys()
            .filter(|k| !self.model.certificates.contains_key(*k))
            .cloned()
            .collect();
        for k in &gone {
            self.records.remove(k);
        }
        if let Err(e) = self.state.save_records(&self.records, gone.iter(), true) {
            self.state_error("cannot save status", &e);
        }
        self.state.remove_requests(&gone);
        tracing::info!(
            files = self.model.files.len(),
            certificates = self.model.certificates.len(),
            problems = self.model.errors.len(),
            "manifests loaded"
        );
    }

    /// Certificates that write the same Secret as an earlier one get a problem.
    fn secret_conflicts(&self) -> BTreeMap<Key, Problem> {
        let mut owner: BTreeMap<(String, String), Key> = BTreeMap::new();
        let mut out = BTreeMap::new();
        for (k, e) in &self.model.certificates {
            if let Ok(p) = &e.params {
                let s = (k.0.clone(), p.secret_name.clone());
                if let Some(first) = owner.get(&s) {
                    out.insert(
                        k.clone(),
                        Problem::new(
                            "DuplicateSecretName",
                            format!("spec.secretName: secret {}/{} is already written by Certificate {}", s.0, s.1, first.1),
                        ),
                    );
                } else {
                    owner.insert(s, k.clone());
                }
            }
        }
        out
    }

    /// Takes the renewals `certwright renew` asked for: each Certificate's Issuing
    /// condition becomes True with reason ManuallyTriggered, as `cmctl renew` sets it in a
    /// cluster, and the engine reissues. Returns the Certificates concerned.
    fn take_renewals(&mut self, t: i64) -> BTreeSet<Key> {
        let mut out = BTreeSet::new();
        for k in self.state.take_renewals() {
            if !self.model.certificates.contains_key(&k) {
                tracing::warn!(certificate = %format!("{}/{}", k.0, k.1), "renewal asked for an unknown Certificate");
                continue;
            }
            let rec = self.records.entry(k.clone()).or_default();
            certwright_engine::lifecycle::request_renewal(&mut rec.status, t);
            tracing::info!(certificate = %format!("{}/{}", k.0, k.1), "renewal asked for");
            out.insert(k);
        }
        out
    }

    /// One reconcile pass over `only` (or every Certificate). Returns the Secrets written.
    pub fn pass(&mut self, only: Option<&BTreeSet<Key>>) -> Vec<(String, String)> {
        let t = self.opts.clock.now();
        self.take_renewals(t);
        let conflicts = self.secret_conflicts();
        let mut written = Vec::new();
        for level in levels(&self.model, &self.opts.cluster_resource_namespace) {
            let keys: Vec<Key> = level
                .into_iter()
                .filter(|k| only.is_none_or(|o| o.contains(k)))
                .collect();
            if keys.is_empty() {
                continue;
            }
            // Certificates whose Secret does not exist yet go first: after a crash, a
            // restart publishes new work before it re-checks what is already there.
            let (mut keys, present): (Vec<Key>, Vec<Key>) =
                keys.into_iter().partition(|k| !self.secret_exists(k));
            keys.extend(present);
            let resolved = self.resolve_issuers(&keys, t);
            // Bounded batches: each is reconciled, made durable with one flush and
            // published before the next starts, so progress survives a crash.
            for chunk in keys.chunks(BATCH) {
                written.extend(self.reconcile_batch(chunk, &resolved, &conflicts, t));
            }
        }
        // Secret manifests that no Certificate writes.
        let owned = &self.model.owned_secrets;
        let ctx = self.ctx(t, None);
        let mut secret_problems = Vec::new();
        for key in self.model.secrets.keys() {
            if owned.contains(key) {
                continue;
            }
            match reconcile::plain_secret(&ctx, key) {
                Ok(true) => written.push(key.clone()),
                Ok(false) => {}
                Err(p) => secret_problems.push((format!("Secret {}/{}", key.0, key.1), p)),
            }
        }
        for key in self.model.configmaps.keys() {
            if let Err(p) = reconcile::configmap(&ctx, &self.configmaps, key) {
                secret_problems.push((format!("ConfigMap {}/{}", key.0, key.1), p));
            }
        }
        for (ns, s) in &written {
            self.hooks.secret_changed(&self.model, ns, s);
        }
        self.save_changed();
        // Records were saved without fsync: one flush for all of them.
        if self.store.durable {
            if let Err(e) = self.store.sync() {
                self.state_error("cannot flush status to disk", &e);
            }
        }
        self.last_extra = secret_problems;
        self.sync_routes();
        self.save_runtime_status();
        if !self.opts.once {
            self.remember_versions();
        }
        written
    }

    /// The reconcile context of a pass at time `t`.
    fn ctx<'a>(&'a self, t: i64, batch: Option<&'a Mutex<reconcile::Batch>>) -> Ctx<'a> {
        Ctx {
            model: &self.model,
            store: &self.store,
            state: &self.state,
            cluster_ns: &self.opts.cluster_resource_namespace,
            now: t,
            batch,
            test_issuers: self.opts.test_issuers,
            acme: self.acme.as_ref().map(|a| &a.service),
        }
    }

    /// Whether the Secret a Certificate writes has been published.
    fn secret_exists(&self, k: &Key) -> bool {
        let Some(Ok(p)) = self.model.certificates.get(k).map(|e| &e.params) else {
            return true;
        };
        self.store.version(&k.0, &p.secret_name).is_some()
    }

    /// Resolves each issuer of a level once (a CA is parsed once, not per certificate).
    fn resolve_issuers(&self, keys: &[Key], t: i64) -> HashMap<(String, String, String), Resolved> {
        let ctx = self.ctx(t, None);
        let mut resolved = HashMap::new();
        for k in keys {
            if let Some(Ok(p)) = self.model.certificates.get(k).map(|e| &e.params) {
                let id = issuer_id(k, p);
                if let std::collections::hash_map::Entry::Vacant(slot) = resolved.entry(id.clone())
                {
                    slot.insert(ctx.resolve(&k.0, &p.issuance.issuer_name, p.issuance.issuer_kind));
                }
            }
        }
        resolved
    }

    /// Reconciles one batch on all workers, flushes its staged Secrets with one `syncfs`,
    /// publishes them, then records the outcome (request records only for Secrets that
    /// were committed). Returns the Secrets written.
    fn reconcile_batch(
        &mut self,
        keys: &[Key],
        resolved: &HashMap<(String, String, String), Resolved>,
        conflicts: &BTreeMap<Key, Problem>,
        t: i64,
    ) -> Vec<(String, String)> {
        let batch = Mutex::new(reconcile::Batch::default());
        let mut results = self.reconcile_parallel(keys, resolved, conflicts, t, &batch);
        let batch = batch.into_inner().unwrap_or_default();
        let failed_commits = self.publish(batch.staged, &mut results, t);
        let requests = batch
            .requests
            .into_iter()
            .filter(|r| {
                r.secret
                    .as_ref()
                    .is_none_or(|s| !failed_commits.contains(s))
            })
            .map(|r| (r.certificate, r.request, r.limit));
        self.unsaved_requests.extend(requests);
        // Request records are written when many have gathered (and at the end of the
        // pass): bounded memory, and each shard file rewritten a few times per pass.
        if self.unsaved_requests.len() >= REQUESTS_FLUSH {
            let requests = std::mem::take(&mut self.unsaved_requests);
            if let Err(e) = self.state.add_requests(requests, false) {
                self.state_error("cannot record requests", &e);
            }
        }
        let mut written = Vec::new();
        let mut urgent = Vec::new();
        for (k, rec, wrote) in results {
            if wrote && !failed_commits.contains(&format!("{}/{}", k.0, rec.secret_name)) {
                written.push((k.0.clone(), rec.secret_name.clone()));
            }
            if self.records.get(&k) == Some(&rec) {
                continue;
            }
            let ready = rec.status.condition("Ready").cloned().unwrap_or_default();
            if ready.status != "True" {
                tracing::warn!(certificate = %format!("{}/{}", k.0, k.1), reason = %ready.reason, message = %ready.message, "certificate not ready");
            }
            // A pending request's state (an order in flight) is saved with its batch;
            // other records at the end of the pass: the Secrets say what they hold.
            let prev_pending = self.records.get(&k).and_then(|r| r.pending.as_ref());
            if rec.pending.as_ref() != prev_pending {
                urgent.push(k.clone());
            }
            self.records.insert(k.clone(), rec);
            self.unsaved_records.insert(k);
        }
        if !urgent.is_empty() {
            if let Err(e) = self.state.save_records(&self.records, urgent.iter(), false) {
                self.state_error("cannot save status", &e);
            }
        }
        written
    }

    /// Saves the records and request records a pass changed: each shard file once.
    fn save_changed(&mut self) {
        let changed = std::mem::take(&mut self.unsaved_records);
        if let Err(e) = self
            .state
            .save_records(&self.records, changed.iter(), false)
        {
            self.state_error("cannot save status", &e);
        }
        let requests = std::mem::take(&mut self.unsaved_requests);
        if let Err(e) = self.state.add_requests(requests, false) {
            self.state_error("cannot record requests", &e);
        }
    }

    /// Reconciles `keys` on the worker threads; a panic costs its Certificate only.
    fn reconcile_parallel(
        &self,
        keys: &[Key],
        resolved: &HashMap<(String, String, String), Resolved>,
        conflicts: &BTreeMap<Key, Problem>,
        t: i64,
        batch: &Mutex<reconcile::Batch>,
    ) -> Vec<(Key, CertRecord, bool)> {
        let ctx = self.ctx(t, Some(batch));
        let next = AtomicUsize::new(0);
        let results: Mutex<Vec<(Key, CertRecord, bool)>> =
            Mutex::new(Vec::with_capacity(keys.len()));
        let workers = self.opts.workers.max(1).min(keys.len());
        let records = &self.records;
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(k) = keys.get(i) else { break };
                    let prev = records.get(k).cloned().unwrap_or_default();
                    let res = if let Some(p) = conflicts.get(k) {
                        reconcile::fail(named(prev, k), p, t, None)
                    } else {
                        let r = self
                            .model
                            .certificates
                            .get(k)
                            .and_then(|e| e.params.as_ref().ok())
                            .and_then(|p| resolved.get(&issuer_id(k, p)));
                        // A bug must cost one Certificate, not the process.
                        let fallback = prev.clone();
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            reconcile::certificate(&ctx, k, prev, r)
                        }))
                        .unwrap_or_else(|_| {
                            let p = Problem::new(
                                "InternalError",
                                "reconciling this Certificate panicked; please report it",
                            );
                            reconcile::fail(named(fallback, k), &p, t, Some(t + 60))
                        })
                    };
                    if let Ok(mut r) = results.lock() {
                        r.push((k.clone(), res.record, res.wrote));
                    }
                });
            }
        });
        results.into_inner().unwrap_or_default()
    }

    /// Makes staged Secrets durable with one flush, then visible one by one. A Secret that
    /// cannot be committed makes its Certificate not Ready. Returns those that failed.
    fn publish(
        &self,
        staged: Vec<crate::store::Staged>,
        results: &mut [(Key, CertRecord, bool)],
        t: i64,
    ) -> BTreeSet<String> {
        let mut failed = BTreeSet::new();
        if staged.is_empty() {
            return failed;
        }
        if self.store.durable {
            if let Err(e) = self.store.sync() {
                tracing::error!(error = %e, "cannot flush secrets to disk");
            }
        }
        for st in staged {
            let id = st.id();
            if let Err(e) = self.store.commit(st, false) {
                tracing::error!(secret = %id, error = %e, "cannot commit secret");
                for (_, rec, _) in results.iter_mut() {
                    if format!("{}/{}", rec.namespace, rec.secret_name) == id {
                        set_condition(
                            &mut rec.status.conditions,
                            "Ready",
                            false,
                            "SecretUnwritable",
                            &e.to_string(),
                            t,
                        );
                    }
                }
                failed.insert(id);
            }
        }
        failed
    }

    fn save_runtime_status(&self) {
        let extra = &self.last_extra;
        let t = self.opts.clock.now();
        let ctx = self.ctx(t, None);
        let mut issuers = Vec::new();
        let all = self
            .model
            .issuers
            .keys()
            .map(|(ns, n)| (IssuerKind::Issuer, ns.clone(), n.clone()))
            .chain(
                self.model
                    .cluster_issuers
                    .keys()
                    .map(|n| (IssuerKind::ClusterIssuer, String::new(), n.clone())),
            );
        for (kind, ns, name) in all {
            let mut rec = IssuerRecord {
                kind: kind.as_str().into(),
                namespace: ns.clone(),
                name: name.clone(),
                ..Default::default()
            };
            let ((ok, reason, message), acme) = ctx.issuer_ready(&ns, &name, kind);
            rec.status.acme = acme;
            set_condition(
                &mut rec.status.conditions,
                "Ready",
                ok,
                &reason,
                &message,
                t,
            );
            issuers.push(rec);
        }
        let mut problems: Vec<ProblemRecord> =
            self.model.errors.iter().map(ProblemRecord::from).collect();
        problems.extend(extra.iter().map(ProblemRecord::from));
        for (k, (src, h)) in &self.model.hooks {
            for m in hooks::validate(&h.spec, !self.opts.no_command_hooks) {
                problems.push(ProblemRecord {
                    source: src.clone(),
                    reason: "InvalidReloadHook".into(),
                    message: format!("ReloadHook {}/{}: {m}", k.0, k.1),
                });
            }
        }
        let runs = self.hooks.results();
        let hooks: Vec<HookRecord> = self
            .model
            .hooks
            .keys()
            .map(|k| HookRecord {
                namespace: k.0.clone(),
                name: k.1.clone(),
                last_run: runs.get(k).cloned(),
            })
            .collect();
        if let Err(e) = self
            .state
            .save_runtime(&issuers, &problems, &hooks, &self.routes)
        {
            self.state_error("cannot save status", &e);
        }
        // The health file says whether this round of state writes went through.
        let failed = self.state_errors.lock().ok().and_then(|mut e| e.take());
        if let Ok(mut h) = self.health.lock() {
            if let Some(h) = h.as_mut() {
                h.record(failed.map_or(Ok(()), Err), t);
            }
        }
    }

    /// Logs a failed state write and keeps the first one for the health file.
    fn state_error(&self, what: &str, e: &std::io::Error) {
        tracing::error!(error = %e, what);
        if let Ok(mut first) = self.state_errors.lock() {
            first.get_or_insert_with(|| format!("{what}: {e}"));
        }
    }

    fn remember_versions(&mut self) {
        self.versions.clear();
        for (k, e) in &self.model.certificates {
            if let Ok(p) = &e.params {
                let id = (k.0.clone(), p.secret_name.clone());
                let v = self.store.version(&id.0, &id.1);
                self.versions.insert(id, v);
            }
        }
    }

    /// Certificates whose Secret was changed or removed by someone else.
    fn edited(&self) -> BTreeSet<Key> {
        let mut out = BTreeSet::new();
        for (k, e) in &self.model.certificates {
            if let Ok(p) = &e.params {
                let id = (k.0.clone(), p.secret_name.clone());
                if self.versions.get(&id) != Some(&self.store.version(&id.0, &id.1)) {
                    out.insert(k.clone());
                }
            }
        }
        out
    }

    /// Notes a clean stop: the next start need not look for half-written versions.
    fn stopped_cleanly(&self) {
        if let Err(e) = self.state.set_clean_marker() {
            tracing::warn!(error = %e, "cannot write the clean-stop marker");
        }
    }

    /// The outcome of the run; the records move into it (the run is over).
    fn summary(&mut self) -> Summary {
        let o = self.state.runtime_overview();
        Summary {
            certificates: std::mem::take(&mut self.records).into_values().collect(),
            problems: o.problems,
        }
    }

    /// Loads the manifests and reconciles everything once, keeping the runtime's state
    /// (tests drive the runtime step by step with it).
    pub fn sync(&mut self) {
        self.load();
        self.pass(None);
    }

    /// Runs until `stop` is set (or one pass with `once`).
    pub fn run(&mut self, stop: &AtomicBool) -> Summary {
        // Manifests are watched and parsed on their own thread, so that a large or slow
        // manifest never delays a renewal: the loop takes a new model when one is ready.
        // It starts before the first load, so no edit after that load goes unseen.
        let loader =
            (!self.opts.once).then(|| spawn_loader(self.opts.paths.clone(), self.opts.recursive));
        self.load();
        self.pass(None);
        let Some(loader) = loader else {
            self.wait_for_acme(stop);
            self.hooks.run_due(&self.model, true);
            self.hooks.wait();
            if self.hooks.take_results().is_some() {
                self.save_runtime_status();
            }
            self.stopped_cleanly();
            return self.summary();
        };
        let mut last_full = Instant::now();
        // Secrets edited by someone else are noticed through notifications where the
        // state directory can be watched (every Secret's version is read only then, and
        // every 10 s besides), and by reading every version each tick where it cannot.
        let secret_changes = Changes::watch(&[self.opts.state.join(crate::records::SECRETS)], true);
        let mut last_versions = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(200));
            let t = self.opts.clock.now();
            let mut newest = None;
            while let Ok(m) = loader.models.try_recv() {
                newest = Some(m);
            }
            if let Some(model) = newest {
                self.install(model);
                self.pass(None);
                last_full = Instant::now();
            } else {
                let mut due: BTreeSet<Key> = self
                    .records
                    .iter()
                    .filter(|(_, r)| r.next_check.is_some_and(|n| n <= t))
                    .map(|(k, _)| k.clone())
                    .collect();
                let look = match &secret_changes {
                    Some(c) => c.take() || last_versions.elapsed() > Duration::from_secs(10),
                    None => true,
                };
                if look {
                    due.extend(self.edited());
                    last_versions = Instant::now();
                }
                due.extend(self.take_renewals(t));
                due.extend(self.acme_wakes());
                if last_full.elapsed() > Duration::from_secs(60) {
                    // A periodic full pass catches anything missed (cheap when up to date).
                    due.extend(self.model.certificates.keys().cloned());
                    last_full = Instant::now();
                }
                if !due.is_empty() {
                    let written = self.pass(Some(&due));
                    if !written.is_empty() {
                        // Certificates waiting for a CA may be unblocked by a new Secret,
                        // and those a changed CA signed follow it (crate::carotation).
                        let mut waiting: BTreeSet<Key> = self
                            .records
                            .iter()
                            .filter(|(_, r)| !r.ready())
                            .map(|(k, _)| k.clone())
                            .collect();
                        waiting.extend(signed_with(
                            &self.model,
                            &self.opts.cluster_resource_namespace,
                            &written,
                        ));
                        if !waiting.is_empty() {
                            self.pass(Some(&waiting));
                        }
                    }
                }
            }
            self.hooks.run_due(&self.model, false);
            let edge_down = self.edge.as_mut().is_some_and(|e| e.pid().is_none());
            if self.hooks.take_results().is_some() || (edge_down && self.sync_routes()) {
                self.save_runtime_status();
            }
        }
        tracing::info!("stopping");
        if let Some(e) = self.edge.as_mut() {
            e.stop();
        }
        self.hooks.wait();
        if self.hooks.take_results().is_some() {
            self.save_runtime_status();
        }
        self.stopped_cleanly();
        self.summary()
    }
}

/// The issuer states of the pending requests in `records`.
fn in_flight(records: &BTreeMap<Key, CertRecord>) -> impl Iterator<Item = &serde_json::Value> {
    records
        .values()
        .filter_map(|r| r.pending.as_ref().map(|p| &p.state))
}

impl Runtime {
    /// Certificates that ACME orders and registrations asked to look at again: those
    /// named, and every Certificate when an issuer's registration finished.
    fn acme_wakes(&mut self) -> BTreeSet<Key> {
        let Some(a) = &self.acme else {
            return BTreeSet::new();
        };
        let w = a.take_wakes();
        let mut due: BTreeSet<Key> = w
            .certificates
            .into_iter()
            .filter(|k| self.model.certificates.contains_key(k))
            .collect();
        if w.issuers {
            // A registration that finished may change any of its Certificates: those
            // waiting for it, and those whose renewal the server now advises on.
            due.extend(self.model.certificates.keys().cloned());
            self.save_runtime_status();
        }
        due
    }

    /// With `--once`: keeps reconciling what ACME orders report until none is in
    /// flight, bounded by the timeout.
    fn wait_for_acme(&mut self, stop: &AtomicBool) {
        if self.acme.is_none() {
            return;
        }
        let deadline = Instant::now() + self.opts.once_timeout;
        loop {
            // Wake-ups first: a registration that just finished is no longer "busy", but
            // the Certificates waiting for it have yet to be stepped.
            let t = self.opts.clock.now();
            let mut due = self.acme_wakes();
            due.extend(
                self.records
                    .iter()
                    .filter(|(_, r)| r.next_check.is_some_and(|n| n <= t))
                    .map(|(k, _)| k.clone()),
            );
            let late = Instant::now() > deadline;
            if !due.is_empty() && !late {
                self.pass(Some(&due));
                continue;
            }
            let busy = self.acme.as_ref().is_some_and(|a| a.busy());
            let pending = self
                .records
                .values()
                .any(|r| r.pending.is_some() && !r.ready());
            if !(busy || pending) || stop.load(Ordering::Relaxed) {
                return;
            }
            if late {
                tracing::warn!(
                    timeout_s = self.opts.once_timeout.as_secs(),
                    "ACME orders still pending at the timeout"
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Sends a freshly parsed model after each change to the manifest files, until the
/// [`Loader`] is dropped. Changes are noticed through file notifications (and a check
/// every 5 s besides), or by looking every 200 ms where nothing can be watched.
fn spawn_loader(paths: Vec<PathBuf>, recursive: bool) -> Loader {
    let (tx, rx) = std::sync::mpsc::channel();
    // Watching starts before the first look, so no change falls between the two.
    let changes = Changes::watch(&paths, recursive);
    let mut sig = manifest_signature(&paths, recursive);
    let alive = Arc::new(AtomicBool::new(true));
    let running = alive.clone();
    std::thread::spawn(move || {
        loop {
            match &changes {
                Some(c) => {
                    c.wait(Duration::from_secs(5));
                    // Let a burst of writes (an editor, a `cp -r`) settle into one reload.
                    std::thread::sleep(Duration::from_millis(50));
                    c.take();
                }
                None => std::thread::sleep(Duration::from_millis(200)),
            }
            if !running.load(Ordering::Relaxed) {
                return;
            }
            let new_sig = manifest_signature(&paths, recursive);
            if new_sig != sig {
                sig = new_sig;
                let model = Model::load(&paths, recursive);
                if tx.send(model).is_err() {
                    return;
                }
            }
        }
    });
    Loader { models: rx, alive }
}

/// The manifest loader thread's output; dropping it stops the thread.
struct Loader {
    models: std::sync::mpsc::Receiver<Model>,
    alive: Arc<AtomicBool>,
}

impl Drop for Loader {
    fn drop(&mut self) {
        self.alive.store(false, Ordering::Relaxed);
    }
}

/// A cheap fingerprint of the manifest files: paths, sizes and modification times.
fn manifest_signature(
    paths: &[PathBuf],
    recursive: bool,
) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    let (files, _) = crate::model::manifest_files(paths, recursive);
    files
        .into_iter()
        .map(|f| {
            let m = std::fs::metadata(&f).ok();
            let len = m.as_ref().map(|m| m.len()).unwrap_or(0);
            let mtime = m.and_then(|m| m.modified().ok());
            (f, len, mtime)
        })
        .collect()
}

/// Registers SIGINT and SIGTERM to set the returned flag.
pub fn stop_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(sig, flag.clone()) {
            tracing::warn!(error = %e, "cannot handle a signal");
        }
    }
    flag
}

impl Runtime {
    /// Each Route manifest as the edge is to serve it: the engine's answer on which
    /// Secrets fill its TLS fields (as for a Route in a cluster), then the Service's
    /// address and what the edge needs to serve it.
    fn edge_routes(&self) -> Vec<crate::edge::EdgeRoute> {
        use crate::edge::{EdgeRoute, Termination};
        use certwright_engine::routes::{self, Lookup};
        let mut out = Vec::new();
        for (key, (_, route)) in &self.model.routes {
            let annotations = &route.metadata.annotations;
            let (certs_name, dest_name) = routes::referenced_secrets(annotations);
            let read = |name: Option<&str>| name.map(|n| self.store.read(&key.0, n).ok().flatten());
            let (certs, dest) = (read(certs_name), read(dest_name));
            fn lookup(s: &Option<Option<certwright_engine::SecretData>>) -> Option<Lookup<'_>> {
                s.as_ref()
                    .map(|s| s.as_ref().map_or(Lookup::Missing, Lookup::Found))
            }
            let tls = route.spec.tls.as_ref().filter(|t| t.is_object());
            let (tls, problem) = match routes::applied_tls(
                &key.0,
                annotations,
                tls,
                lookup(&certs),
                lookup(&dest),
            ) {
                Ok(t) => (t, None),
                Err(p) => (tls.cloned(), Some(p)),
            };
            let field = |f: &str| {
                tls.as_ref()
                    .and_then(|t| t.get(f))
                    .and_then(|v| v.as_str())
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
            };
            let termination = Termination::parse(tls.as_ref());
            let certificate = match (field("certificate"), field("key")) {
                (Some(c), Some(k)) => Some(format!("{c}\n{k}\n")),
                _ => None,
            };
            let destination_ca = field("destinationCACertificate").map(|c| format!("{c}\n"));
            let backend = self
                .opts
                .edge
                .as_ref()
                .and_then(|e| {
                    e.endpoints
                        .get(&(key.0.clone(), route.spec.to.name.clone()))
                })
                .copied();
            // What keeps the Route from being served comes first; then what the Secrets
            // or the manifest lack.
            let blocking = match (termination, backend, &destination_ca) {
                (Termination::None, _, _) => Some(Problem::new("NotServed", "no spec.tls: the local edge serves HTTPS routes only")),
                (_, None, _) => Some(Problem::new(
                    "NoEndpoint",
                    format!("Service {}/{} has no address: give one with --endpoint {}/{}=HOST:PORT", key.0, route.spec.to.name, key.0, route.spec.to.name),
                )),
                (Termination::Reencrypt, _, None) => Some(Problem::new(
                    "NoDestinationCA",
                    "a re-encrypt Route needs spec.tls.destinationCACertificate (or the destinationCA-from-secret annotation) locally: there is no service CA to fall back on",
                )),
                _ => None,
            };
            let no_certificate = matches!(termination, Termination::Edge | Termination::Reencrypt)
                && certificate.is_none();
            let problem = blocking.or(problem).or_else(|| {
                no_certificate.then(|| {
                    Problem::new(
                        "DefaultCertificate",
                        "no certificate and key: served with the edge's default certificate",
                    )
                })
            });
            out.push(EdgeRoute {
                key: key.clone(),
                host: route.spec.host.clone(),
                termination,
                service: route.spec.to.name.clone(),
                backend,
                certificate,
                destination_ca,
                problem,
            });
        }
        out
    }

    /// Brings the edge in line with the Routes and records their status. Returns whether
    /// the status changed.
    fn sync_routes(&mut self) -> bool {
        if self.model.routes.is_empty() && self.routes.is_empty() && self.edge.is_none() {
            return false;
        }
        let routes = self.edge_routes();
        let applied = self.edge.as_mut().map(|e| e.apply(&routes));
        if let Some(a) = &applied {
            if !a.updated.is_empty() {
                tracing::info!(files = ?a.updated, "edge certificates updated in place");
            }
            if a.reloaded {
                tracing::info!(routes = routes.len(), "edge configuration reloaded");
            }
        }
        let edge_error = applied.and_then(|a| a.error);
        let records: Vec<crate::records::RouteRecord> = routes
            .iter()
            .map(|r| {
                let leaf = r.certificate.as_deref().and_then(|pem| {
                    certwright_pki::pem::decode_all(pem.as_bytes())
                        .ok()?
                        .into_iter()
                        .find(|b| b.label == "CERTIFICATE")
                        .and_then(|b| certwright_pki::inspect::CertInfo::parse(&b.der).ok())
                });
                let (mut reason, mut message) = (
                    r.problem.as_ref().map(|p| p.reason.clone()),
                    r.problem.as_ref().map(|p| p.message.clone()),
                );
                let admitted = r.admitted() && self.edge.is_some() && edge_error.is_none();
                if let (Some(e), true) = (&edge_error, reason.is_none()) {
                    reason = Some("EdgeError".into());
                    message = Some(e.clone());
                }
                crate::records::RouteRecord {
                    namespace: r.key.0.clone(),
                    name: r.key.1.clone(),
                    host: r.host.clone(),
                    termination: r.termination.as_str().into(),
                    service: r.service.clone(),
                    backend: r.backend.map(|b| b.to_string()),
                    admitted,
                    serial: leaf.as_ref().map(|c| c.serial_hex.clone()),
                    not_after: leaf
                        .as_ref()
                        .map(|c| certwright_pki::der::rfc3339(c.not_after)),
                    reason,
                    message,
                }
            })
            .collect();
        if records == self.routes {
            return false;
        }
        for r in &records {
            match &r.reason {
                Some(reason) => {
                    tracing::warn!(route = %format!("{}/{}", r.namespace, r.name), %reason, message = r.message.as_deref().unwrap_or(""), admitted = r.admitted, "route")
                }
                None => {
                    tracing::info!(route = %format!("{}/{}", r.namespace, r.name), host = %r.host, termination = %r.termination, serial = r.serial.as_deref().unwrap_or("-"), "route served")
                }
            }
        }
        self.routes = records;
        true
    }
}
