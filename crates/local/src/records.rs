//! What the local runtime remembers between runs: per-Certificate records (status,
//! failures, last issuance, pending request), issuance requests, problems.

use crate::fsroot::{Dir, Kind};
use crate::model::Problem;
use crate::store::SecretStore;
use certwright_api::{CertificateRequest, CertificateStatus, IssuerStatus};
use certwright_engine::{Failures, LastIssuance};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

pub use certwright_engine::Pending;

/// One Certificate's record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertRecord {
    pub namespace: String,
    pub name: String,
    #[serde(default)]
    pub secret_name: String,
    #[serde(default)]
    pub status: CertificateStatus,
    #[serde(default)]
    pub failures: Failures,
    /// Boxed, like `pending`: records are held for every Certificate, and most have
    /// neither inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<Box<LastIssuance>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Box<Pending>>,
    /// When the runtime looks at this Certificate again (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_check: Option<i64>,
    /// The last requests, as cert-manager CertificateRequests named
    /// `<certificate>-<revision>`, oldest first, at most `spec.revisionHistoryLimit`.
    /// Kept in their own files (see [`StateDir::add_requests`]); filled in for
    /// `certwright status` only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requests: Vec<CertificateRequest>,
}

impl CertRecord {
    /// The engine's part of the record, moved out (see [`CertRecord::put_state`]).
    pub fn take_state(&mut self) -> certwright_engine::State {
        certwright_engine::State {
            status: std::mem::take(&mut self.status),
            failures: std::mem::take(&mut self.failures),
            last: self.last.take(),
            pending: self.pending.take(),
        }
    }

    pub fn put_state(&mut self, s: certwright_engine::State) {
        self.status = s.status;
        self.failures = s.failures;
        self.last = s.last;
        self.pending = s.pending;
    }

    pub fn ready(&self) -> bool {
        self.status
            .condition("Ready")
            .is_some_and(|c| c.status == "True")
    }
}

pub use certwright_engine::lifecycle::request_revision;

/// Whether the runtime can write its state directory: when it cannot (a full disk, a
/// read-only file system), the status records may be stale, and `certwright status` says
/// so.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthState {
    pub ok: bool,
    /// RFC 3339: since when the state could not be written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// The health file, kept open and overwritten in place (it never needs a new block).
#[derive(Debug)]
pub struct Health {
    file: std::fs::File,
    last_ok: Option<bool>,
}

impl Health {
    fn encode(h: &HealthState) -> Vec<u8> {
        let mut b = serde_json::to_vec(h).unwrap_or_default();
        b.truncate(HEALTH_SIZE - 1);
        b.resize(HEALTH_SIZE - 1, b' ');
        b.push(b'\n');
        b
    }

    /// Records the outcome of writing the state; only changes are written.
    pub fn record(&mut self, result: Result<(), String>, now: i64) {
        let ok = result.is_ok();
        if self.last_ok == Some(ok) {
            return;
        }
        let state = match result {
            Ok(()) => HealthState {
                ok: true,
                ..Default::default()
            },
            Err(message) => HealthState {
                ok: false,
                since: Some(certwright_pki::der::rfc3339(now)),
                message: message.chars().take(1000).collect(),
            },
        };
        use std::os::unix::fs::FileExt;
        if self.file.write_all_at(&Self::encode(&state), 0).is_ok() {
            let _ = self.file.sync_data();
            self.last_ok = Some(ok);
        }
    }
}

/// Issuer status as the runtime last saw it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IssuerRecord {
    pub kind: String,
    #[serde(default)]
    pub namespace: String,
    pub name: String,
    pub status: IssuerStatus,
}

/// Everything `certwright status` prints.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Overview {
    pub certificates: Vec<CertRecord>,
    #[serde(default)]
    pub issuers: Vec<IssuerRecord>,
    /// Manifest documents that could not be attached to a resource.
    #[serde(default)]
    pub problems: Vec<ProblemRecord>,
    /// ReloadHooks and their last run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<HookRecord>,
    /// Route manifests and how the edge serves them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteRecord>,
    /// Whether the runtime could write its state at its last try.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthState>,
}

/// A Route and what the edge serves for it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteRecord {
    pub namespace: String,
    pub name: String,
    pub host: String,
    pub termination: String,
    pub service: String,
    /// The Service's address (`--endpoint`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// Served by the edge.
    pub admitted: bool,
    /// The Route certificate served (edge, re-encrypt): serial (hex) and notAfter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
    /// Why the Route is not served, or not as it asks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A ReloadHook and the outcome of its last run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HookRecord {
    pub namespace: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<crate::hooks::HookRun>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProblemRecord {
    pub source: String,
    pub reason: String,
    pub message: String,
}

impl From<&(String, Problem)> for ProblemRecord {
    fn from((source, p): &(String, Problem)) -> Self {
        ProblemRecord {
            source: source.clone(),
            reason: p.reason.clone(),
            message: p.message.clone(),
        }
    }
}

/// The state directory, opened once: `secrets/`, `status/`, `requests/` and `private/`
/// are reached from its handle without following links (see [`crate::fsroot`]), so
/// nothing outside it is ever read or written.
#[derive(Debug, Clone)]
pub struct StateDir {
    pub root: PathBuf,
    dir: Arc<Dir>,
}

const STATUS: &str = "status";
/// Shard files are `shard_XX.json`: the underscore keeps them apart from Certificate
/// names, which are RFC 1123 subdomains.
const SHARD_PREFIX: &str = "shard_";
const SHARDS: u64 = 64;
const REQUESTS: &str = "requests";
const CLEAN_MARKER: &str = ".stopped-cleanly";
const HEALTH_FILE: &str = "health.json";
const HEALTH_SIZE: usize = 4096;

type Key = (String, String);
/// A request record to add: its Certificate, the record, the revisionHistoryLimit.
pub type NewRequest = (Key, CertificateRequest, u32);
const CERTIFICATES: &str = "certificates";
const RUNTIME_FILE: &str = "runtime.json";
const PRIVATE: &str = "private";
/// `renew/NAMESPACE/NAME`: a renewal asked for by `certwright renew`.
const RENEW: &str = "renew";
pub const SECRETS: &str = "secrets";
/// `configmaps/NAMESPACE/NAME`: ConfigMaps, laid out as mounted ones, like Secrets.
pub const CONFIGMAPS: &str = "configmaps";

/// The shard file of a Certificate name (FNV-1a, stable across versions and machines).
fn shard_file(name: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{SHARD_PREFIX}{:02x}.json", h % SHARDS)
}

impl StateDir {
    /// Opens the state directory, creating it (0700) when `create`.
    pub fn open(root: impl Into<PathBuf>, create: bool) -> io::Result<Self> {
        let root = root.into();
        let dir = Dir::open_root(&root, create)?;
        Ok(Self {
            root,
            dir: Arc::new(dir),
        })
    }

    /// The secret tree, `secrets/` (created when missing).
    pub fn secret_store(&self) -> io::Result<SecretStore> {
        self.tree(SECRETS)
    }

    /// The ConfigMap tree, `configmaps/` (created when missing), in the same layout.
    pub fn configmap_store(&self) -> io::Result<SecretStore> {
        self.tree(CONFIGMAPS)
    }

    fn tree(&self, name: &str) -> io::Result<SecretStore> {
        let d = self
            .dir
            .open_dir(name, true)?
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        Ok(SecretStore::from_dir(d))
    }

    fn sub(&self, parts: &[&str], create: bool) -> io::Result<Option<Dir>> {
        self.dir.walk(parts, create)
    }

    /// The lock file that keeps a second process off this state directory.
    pub fn lock_file(&self) -> io::Result<std::fs::File> {
        self.dir.open_or_create(".lock")
    }

    /// Prepares the health file `status/health.json`: allocated once at its full size, so
    /// that later updates overwrite it in place and still land when the disk is full.
    pub fn open_health(&self) -> io::Result<Health> {
        let d = self.required(&[STATUS])?;
        let f = d.open_or_create(HEALTH_FILE)?;
        if f.metadata()?.len() < HEALTH_SIZE as u64 {
            let blank = Health::encode(&HealthState {
                ok: true,
                ..Default::default()
            });
            use std::os::unix::fs::FileExt;
            f.write_all_at(&blank, 0)?;
            f.sync_all()?;
        }
        Ok(Health {
            file: f,
            last_ok: None,
        })
    }

    /// The runtime's last word on whether it can write its state (see [`Health`]).
    pub fn health(&self) -> Option<HealthState> {
        let d = self.sub(&[STATUS], false).ok()??;
        let b = d.read(HEALTH_FILE).ok()??;
        serde_json::from_slice(b.trim_ascii_end()).ok()
    }

    /// Removes the clean-stop marker and says whether it was there: a process that found
    /// it knows the previous one stopped cleanly (no half-written versions to look for).
    pub fn take_clean_marker(&self) -> bool {
        let there = matches!(self.dir.kind(CLEAN_MARKER), Ok(Some(Kind::File)));
        if there {
            let _ = self.dir.remove_file(CLEAN_MARKER);
            let _ = self.dir.sync();
        }
        there
    }

    /// Leaves the clean-stop marker (after everything else is durable).
    pub fn set_clean_marker(&self) -> io::Result<()> {
        self.dir.syncfs()?;
        self.dir.write_atomic(CLEAN_MARKER, b"", true)?;
        self.dir.sync()
    }

    /// Reads the pending request's private key of a Certificate.
    pub fn read_pending_key(&self, ns: &str, name: &str) -> io::Result<Option<Vec<u8>>> {
        match self.sub(&[PRIVATE, ns], false)? {
            Some(d) => d.read(&format!("{name}.next-key.pem")),
            None => Ok(None),
        }
    }

    pub fn save_pending_key(&self, ns: &str, name: &str, pem: &[u8]) -> io::Result<()> {
        let d = self.required(&[PRIVATE, ns])?;
        d.write_atomic(&format!("{name}.next-key.pem"), pem, true)
    }

    pub fn remove_pending_key(&self, ns: &str, name: &str) {
        if let Ok(Some(d)) = self.sub(&[PRIVATE, ns], false) {
            let _ = d.remove_file(&format!("{name}.next-key.pem"));
        }
    }

    /// Asks for a new certificate for a Certificate (`certwright renew`): a marker that a
    /// running runtime picks up within a second, or the next `--once` run.
    pub fn request_renewal(&self, ns: &str, name: &str) -> io::Result<()> {
        let d = self.required(&[RENEW, ns])?;
        d.write_atomic(name, b"", true)
    }

    /// Takes the renewals asked for, removing their markers. Cheap when there are none
    /// (one directory read).
    pub fn take_renewals(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let Ok(Some(root)) = self.sub(&[RENEW], false) else {
            return out;
        };
        for (ns, kind) in root.entries().unwrap_or_default() {
            if kind != Kind::Dir {
                continue;
            }
            let Ok(Some(d)) = root.open_dir(&ns, false) else {
                continue;
            };
            for (name, kind) in d.entries().unwrap_or_default() {
                // `..tmp.*`: a marker being written.
                if kind == Kind::File && !name.starts_with('.') && d.remove_file(&name).is_ok() {
                    out.push((ns.clone(), name));
                }
            }
        }
        out
    }

    fn required(&self, parts: &[&str]) -> io::Result<Dir> {
        self.sub(parts, true)?
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }

    /// Every Certificate record: the shard files of each namespace, and the one-file-per-
    /// Certificate records of earlier versions (moved into shards by [`Self::migrate`]).
    pub fn load_records(&self) -> BTreeMap<(String, String), CertRecord> {
        let mut out = BTreeMap::new();
        let Ok(Some(base)) = self.sub(&[STATUS, CERTIFICATES], false) else {
            return out;
        };
        for (ns, kind) in base.entries().unwrap_or_default() {
            if kind != Kind::Dir {
                continue;
            }
            let Ok(Some(nsdir)) = base.open_dir(&ns, false) else {
                continue;
            };
            for (f, kind) in nsdir.entries().unwrap_or_default() {
                if kind != Kind::File || !f.ends_with(".json") || f.starts_with('.') {
                    continue;
                }
                let Some(bytes) = nsdir.read(&f).ok().flatten() else {
                    continue;
                };
                let sharded = f.starts_with(SHARD_PREFIX);
                let records: Vec<CertRecord> = if sharded {
                    serde_json::from_slice(&bytes).unwrap_or_default()
                } else {
                    serde_json::from_slice::<CertRecord>(&bytes)
                        .ok()
                        .filter(|r| f == format!("{}.json", r.name))
                        .into_iter()
                        .collect()
                };
                // A record is only believed where it was found.
                for r in records {
                    if r.namespace == ns && (!sharded || f == shard_file(&r.name)) {
                        out.insert((r.namespace.clone(), r.name.clone()), r);
                    }
                }
            }
        }
        out
    }

    /// Moves records kept one file per Certificate (earlier versions) into shard files.
    pub fn migrate(&self, records: &BTreeMap<(String, String), CertRecord>) -> io::Result<()> {
        let Some(base) = self.sub(&[STATUS, CERTIFICATES], false)? else {
            return Ok(());
        };
        for (ns, kind) in base.entries()? {
            if kind != Kind::Dir {
                continue;
            }
            let Some(nsdir) = base.open_dir(&ns, false)? else {
                continue;
            };
            let legacy: Vec<String> = nsdir
                .entries()?
                .into_iter()
                .filter(|(f, k)| {
                    *k == Kind::File
                        && f.ends_with(".json")
                        && !f.starts_with(SHARD_PREFIX)
                        && !f.starts_with('.')
                })
                .map(|(f, _)| f)
                .collect();
            if legacy.is_empty() {
                continue;
            }
            let keys: Vec<(String, String)> =
                records.keys().filter(|k| k.0 == ns).cloned().collect();
            self.save_records(records, keys.iter(), true)?;
            for f in legacy {
                nsdir.remove_file(&f)?;
            }
        }
        Ok(())
    }

    /// Saves the shard files holding the `changed` Certificates, from `records` (a removed
    /// Certificate is one missing from `records`). Records live in at most 64 shard files
    /// per namespace, each rewritten whole and atomically: a few files for many
    /// Certificates instead of one each. Without `fsync` the caller flushes later.
    pub fn save_records<'a>(
        &self,
        records: &BTreeMap<(String, String), CertRecord>,
        changed: impl Iterator<Item = &'a (String, String)>,
        fsync: bool,
    ) -> io::Result<()> {
        let mut shards: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
        for (ns, name) in changed {
            shards
                .entry(ns.clone())
                .or_default()
                .insert(shard_file(name));
        }
        let mut first_err = None;
        for (ns, files) in shards {
            // One pass over the namespace's records, each hashed once.
            let mut members: BTreeMap<String, Vec<&CertRecord>> =
                files.iter().map(|f| (f.clone(), Vec::new())).collect();
            for (k, r) in records
                .range((ns.clone(), String::new())..)
                .take_while(|(k, _)| k.0 == ns)
            {
                if let Some(m) = members.get_mut(&shard_file(&k.1)) {
                    m.push(r);
                }
            }
            for (file, members) in members {
                let res = self.required(&[STATUS, CERTIFICATES, &ns]).and_then(|d| {
                    if members.is_empty() {
                        return d.remove_file(&file);
                    }
                    let bytes = serde_json::to_vec(&members).unwrap_or_default();
                    d.write_atomic(&file, &bytes, fsync)
                });
                if let Err(e) = res {
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Adds request records (each with its Certificate's revisionHistoryLimit) to the
    /// request shard files `requests/NS/shard_XX.json` (Certificate name → its requests,
    /// oldest first), read and rewritten once per shard. Not kept in memory.
    pub fn add_requests(&self, records: Vec<NewRequest>, fsync: bool) -> io::Result<()> {
        let mut by_shard: BTreeMap<(String, String), Vec<NewRequest>> = BTreeMap::new();
        for r in records {
            by_shard
                .entry((r.0 .0.clone(), shard_file(&r.0 .1)))
                .or_default()
                .push(r);
        }
        let mut first_err = None;
        for ((ns, file), adds) in by_shard {
            let res = self.required(&[REQUESTS, &ns]).and_then(|d| {
                // Entries of other Certificates stay raw JSON: only the touched ones
                // are parsed and written again.
                let mut shard: BTreeMap<String, Box<serde_json::value::RawValue>> = d
                    .read(&file)?
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .unwrap_or_default();
                let mut touched: BTreeMap<String, Vec<CertificateRequest>> = BTreeMap::new();
                for ((_, name), cr, limit) in adds {
                    let list = touched.entry(name.clone()).or_insert_with(|| {
                        shard
                            .get(&name)
                            .and_then(|raw| serde_json::from_str(raw.get()).ok())
                            .unwrap_or_default()
                    });
                    list.retain(|r| r.metadata.name != cr.metadata.name);
                    list.push(cr);
                    list.sort_by_key(|r| request_revision(&r.metadata.name));
                    let keep = limit.max(1) as usize;
                    if list.len() > keep {
                        let drop = list.len() - keep;
                        list.drain(..drop);
                    }
                }
                for (name, list) in touched {
                    if let Ok(raw) = serde_json::value::to_raw_value(&list) {
                        shard.insert(name, raw);
                    }
                }
                let bytes = serde_json::to_vec(&shard).unwrap_or_default();
                d.write_atomic(&file, &bytes, fsync)
            });
            if let Err(e) = res {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// A Certificate's request records, oldest first (only its own entry is parsed).
    pub fn requests(&self, ns: &str, name: &str) -> Vec<CertificateRequest> {
        let Ok(Some(d)) = self.sub(&[REQUESTS, ns], false) else {
            return Vec::new();
        };
        d.read(&shard_file(name))
            .ok()
            .flatten()
            .and_then(|b| {
                serde_json::from_slice::<BTreeMap<String, Box<serde_json::value::RawValue>>>(&b)
                    .ok()
            })
            .and_then(|m| {
                m.get(name)
                    .and_then(|raw| serde_json::from_str(raw.get()).ok())
            })
            .unwrap_or_default()
    }

    /// Removes the request records of Certificates that are gone.
    pub fn remove_requests(&self, gone: &[Key]) {
        let mut by_shard: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        for (ns, name) in gone {
            by_shard
                .entry((ns.clone(), shard_file(name)))
                .or_default()
                .push(name.clone());
        }
        for ((ns, file), names) in by_shard {
            let Ok(Some(d)) = self.sub(&[REQUESTS, &ns], false) else {
                continue;
            };
            let Some(mut shard) = d.read(&file).ok().flatten().and_then(|b| {
                serde_json::from_slice::<BTreeMap<String, Vec<CertificateRequest>>>(&b).ok()
            }) else {
                continue;
            };
            for n in names {
                shard.remove(&n);
            }
            let _ = if shard.is_empty() {
                d.remove_file(&file)
            } else {
                d.write_atomic(
                    &file,
                    &serde_json::to_vec(&shard).unwrap_or_default(),
                    false,
                )
            };
        }
    }

    pub fn save_runtime(
        &self,
        issuers: &[IssuerRecord],
        problems: &[ProblemRecord],
        hooks: &[HookRecord],
        routes: &[RouteRecord],
    ) -> io::Result<()> {
        let o = Overview {
            certificates: vec![],
            issuers: issuers.to_vec(),
            problems: problems.to_vec(),
            hooks: hooks.to_vec(),
            routes: routes.to_vec(),
            health: None,
        };
        let d = self.required(&[STATUS])?;
        d.write_atomic(
            RUNTIME_FILE,
            &serde_json::to_vec_pretty(&o).unwrap_or_default(),
            true,
        )
    }

    /// The runtime part of the status (issuers, problems, hooks), without the records.
    pub fn runtime_overview(&self) -> Overview {
        self.sub(&[STATUS], false)
            .ok()
            .flatten()
            .and_then(|d| d.read(RUNTIME_FILE).ok().flatten())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Reads everything for `certwright status` (each shard file once).
    pub fn overview(&self) -> Overview {
        let mut o = self.runtime_overview();
        o.certificates = self.load_records().into_values().collect();
        o.health = self.health();
        let mut shards: BTreeMap<(String, String), BTreeMap<String, Vec<CertificateRequest>>> =
            BTreeMap::new();
        for c in &mut o.certificates {
            let key = (c.namespace.clone(), shard_file(&c.name));
            if !shards.contains_key(&key) {
                let shard = self
                    .sub(&[REQUESTS, &c.namespace], false)
                    .ok()
                    .flatten()
                    .and_then(|d| d.read(&key.1).ok().flatten())
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .unwrap_or_default();
                shards.insert(key.clone(), shard);
            }
            c.requests = shards
                .get_mut(&key)
                .and_then(|s| s.remove(&c.name))
                .unwrap_or_default();
        }
        o
    }

    pub fn exists(&self) -> bool {
        matches!(self.dir.kind(STATUS), Ok(Some(Kind::Dir)))
    }
}
