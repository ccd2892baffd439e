//! What the local runtime remembers between runs: per-Certificate records (status,
//! failures, last issuance, pending request), issuance requests, problems.

use crate::fsroot::{Dir, Kind};
use crate::model::Problem;
use crate::store::SecretStore;
use certwright_api::validate::IssuanceSpec;
use certwright_api::{CertificateStatus, IssuerStatus};
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
}

impl CertRecord {
    pub fn ready(&self) -> bool {
        self.status
            .condition("Ready")
            .is_some_and(|c| c.status == "True")
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
const CERTIFICATES: &str = "certificates";
const RUNTIME_FILE: &str = "runtime.json";
const PRIVATE: &str = "private";
const REQUESTS: &str = "requests";
pub const SECRETS: &str = "secrets";

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

    /// Saves a request record `requests/NS/NAME.json`.
    pub fn save_request(
        &self,
        ns: &str,
        request: &str,
        bytes: &[u8],
        fsync: bool,
    ) -> io::Result<()> {
        let d = self.required(&[REQUESTS, ns])?;
        d.write_atomic(&format!("{request}.json"), bytes, fsync)
    }

    /// The request records of a namespace, by file name (`NAME.json`).
    pub fn request_files(&self, ns: &str) -> Vec<String> {
        match self.sub(&[REQUESTS, ns], false) {
            Ok(Some(d)) => d
                .entries()
                .unwrap_or_default()
                .into_iter()
                .filter(|(n, k)| *k == Kind::File && n.ends_with(".json"))
                .map(|(n, _)| n)
                .collect(),
            _ => Vec::new(),
        }
    }

    pub fn remove_request_file(&self, ns: &str, file: &str) {
        if let Ok(Some(d)) = self.sub(&[REQUESTS, ns], false) {
            let _ = d.remove_file(file);
        }
    }

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
                if kind != Kind::File || !f.ends_with(".json") || f.starts_with("..") {
                    continue;
                }
                if let Some(r) = nsdir
                    .read(&f)
                    .ok()
                    .flatten()
                    .and_then(|b| serde_json::from_slice::<CertRecord>(&b).ok())
                {
                    // A record is only believed where it was found.
                    if r.namespace == ns && f == format!("{}.json", r.name) {
                        out.insert((r.namespace.clone(), r.name.clone()), r);
                    }
                }
            }
        }
        out
    }

    /// Saves a record; without `fsync` the caller flushes the file system later.
    pub fn save_record(&self, r: &CertRecord, fsync: bool) -> io::Result<()> {
        let bytes = serde_json::to_vec_pretty(r).unwrap_or_default();
        let d = self.required(&[STATUS, CERTIFICATES, &r.namespace])?;
        d.write_atomic(&format!("{}.json", r.name), &bytes, fsync)
    }

    pub fn remove_record(&self, ns: &str, name: &str) {
        if let Ok(Some(d)) = self.sub(&[STATUS, CERTIFICATES, ns], false) {
            let _ = d.remove_file(&format!("{name}.json"));
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
        o
    }

    pub fn exists(&self) -> bool {
        matches!(self.dir.kind(STATUS), Ok(Some(Kind::Dir)))
    }
}
