//! What the local runtime remembers between runs: per-Certificate records (status,
//! failures, last issuance, pending request), issuance requests, problems.

use crate::fsroot::{Dir, Kind};
use crate::model::Problem;
use crate::store::SecretStore;
use certwright_api::validate::IssuanceSpec;
use certwright_api::{CertificateRequest, CertificateStatus, IssuerStatus};
use certwright_engine::{Failures, LastIssuance};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// A request that an issuer has not finished (asynchronous issuers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pending {
    pub request_name: String,
    pub spec: IssuanceSpec,
    pub csr_pem: String,
    #[serde(default)]
    pub state: serde_json::Value,
    pub retry_at: i64,
}

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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<LastIssuance>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Pending>,
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
    pub fn ready(&self) -> bool {
        self.status
            .condition("Ready")
            .is_some_and(|c| c.status == "True")
    }
}

/// The revision in a request name `<certificate>-<revision>` (0 if there is none).
pub fn request_revision(name: &str) -> i64 {
    name.rsplit_once('-')
        .and_then(|(_, r)| r.parse().ok())
        .unwrap_or(0)
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

type Key = (String, String);
/// A request record to add: its Certificate, the record, the revisionHistoryLimit.
pub type NewRequest = (Key, CertificateRequest, u32);
const CERTIFICATES: &str = "certificates";
const RUNTIME_FILE: &str = "runtime.json";
const PRIVATE: &str = "private";
pub const SECRETS: &str = "secrets";

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
        let d = self
            .dir
            .open_dir(SECRETS, true)?
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        Ok(SecretStore::from_dir(d))
    }

    pub fn secrets(&self) -> PathBuf {
        self.root.join(SECRETS)
    }

    fn sub(&self, parts: &[&str], create: bool) -> io::Result<Option<Dir>> {
        self.dir.walk(parts, create)
    }

    /// The lock file that keeps a second process off this state directory.
    pub fn lock_file(&self) -> io::Result<std::fs::File> {
        self.dir.open_or_create(".lock")
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
        let shards: std::collections::BTreeSet<(String, String)> = changed
            .map(|(ns, name)| (ns.clone(), shard_file(name)))
            .collect();
        let mut first_err = None;
        for (ns, file) in shards {
            let members: Vec<&CertRecord> = records
                .range((ns.clone(), String::new())..)
                .take_while(|(k, _)| k.0 == ns)
                .filter(|(k, _)| shard_file(&k.1) == file)
                .map(|(_, r)| r)
                .collect();
            let res = self.required(&[STATUS, CERTIFICATES, &ns]).and_then(|d| {
                if members.is_empty() {
                    return d.remove_file(&file);
                }
                let bytes = serde_json::to_vec_pretty(&members).unwrap_or_default();
                d.write_atomic(&file, &bytes, fsync)
            });
            if let Err(e) = res {
                first_err.get_or_insert(e);
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
                let mut shard: BTreeMap<String, Vec<CertificateRequest>> = d
                    .read(&file)?
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .unwrap_or_default();
                for ((_, name), cr, limit) in adds {
                    let list = shard.entry(name).or_default();
                    list.retain(|r| r.metadata.name != cr.metadata.name);
                    list.push(cr);
                    list.sort_by_key(|r| request_revision(&r.metadata.name));
                    let keep = limit.max(1) as usize;
                    if list.len() > keep {
                        let drop = list.len() - keep;
                        list.drain(..drop);
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

    /// A Certificate's request records, oldest first.
    pub fn requests(&self, ns: &str, name: &str) -> Vec<CertificateRequest> {
        let Ok(Some(d)) = self.sub(&[REQUESTS, ns], false) else {
            return Vec::new();
        };
        d.read(&shard_file(name))
            .ok()
            .flatten()
            .and_then(|b| {
                serde_json::from_slice::<BTreeMap<String, Vec<CertificateRequest>>>(&b).ok()
            })
            .and_then(|mut m| m.remove(name))
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
    ) -> io::Result<()> {
        let o = Overview {
            certificates: vec![],
            issuers: issuers.to_vec(),
            problems: problems.to_vec(),
            hooks: hooks.to_vec(),
        };
        let d = self.required(&[STATUS])?;
        d.write_atomic(
            RUNTIME_FILE,
            &serde_json::to_vec_pretty(&o).unwrap_or_default(),
            true,
        )
    }

    /// Reads everything for `certwright status`.
    pub fn overview(&self) -> Overview {
        let mut o: Overview = self
            .sub(&[STATUS], false)
            .ok()
            .flatten()
            .and_then(|d| d.read(RUNTIME_FILE).ok().flatten())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        o.certificates = self.load_records().into_values().collect();
        for c in &mut o.certificates {
            c.requests = self.requests(&c.namespace, &c.name);
        }
        o
    }

    pub fn exists(&self) -> bool {
        matches!(self.dir.kind(STATUS), Ok(Some(Kind::Dir)))
    }
}
