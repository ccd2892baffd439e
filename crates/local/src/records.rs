//! What the local runtime remembers between runs: per-Certificate records (status,
//! failures, last issuance, pending request), issuance requests, problems.

use crate::model::Problem;
use crate::store::write_atomic;
use certwright_api::validate::IssuanceSpec;
use certwright_api::{CertificateStatus, IssuerStatus};
use certwright_engine::{Failures, LastIssuance};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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

/// The state directory's layout.
#[derive(Debug, Clone)]
pub struct StateDir {
    pub root: PathBuf,
}

impl StateDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
    pub fn secrets(&self) -> PathBuf {
        self.root.join("secrets")
    }
    fn cert_path(&self, ns: &str, name: &str) -> PathBuf {
        self.root
            .join("status")
            .join("certificates")
            .join(ns)
            .join(format!("{name}.json"))
    }
    fn other_path(&self) -> PathBuf {
        self.root.join("status").join("runtime.json")
    }
    pub fn pending_key_path(&self, ns: &str, name: &str) -> PathBuf {
        self.root
            .join("private")
            .join(ns)
            .join(format!("{name}.next-key.pem"))
    }
    pub fn requests_dir(&self, ns: &str) -> PathBuf {
        self.root.join("requests").join(ns)
    }
    pub fn request_path(&self, ns: &str, request: &str) -> PathBuf {
        self.requests_dir(ns).join(format!("{request}.json"))
    }
    pub fn lock_path(&self) -> PathBuf {
        self.root.join(".lock")
    }

    pub fn load_records(&self) -> BTreeMap<(String, String), CertRecord> {
        let mut out = BTreeMap::new();
        let base = self.root.join("status").join("certificates");
        let Ok(nss) = std::fs::read_dir(&base) else {
            return out;
        };
        for ns in nss.flatten() {
            let Ok(files) = std::fs::read_dir(ns.path()) else {
                continue;
            };
            for f in files.flatten() {
                let p = f.path();
                if p.extension().and_then(|e| e.to_str()) != Some("json") {
                    continue;
                }
                if let Some(r) = std::fs::read(&p)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<CertRecord>(&b).ok())
                {
                    out.insert((r.namespace.clone(), r.name.clone()), r);
                }
            }
        }
        out
    }

    /// Saves a record; without `fsync` the caller flushes the file system later.
    pub fn save_record(&self, r: &CertRecord, fsync: bool) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(r).unwrap_or_default();
        write_atomic(&self.cert_path(&r.namespace, &r.name), &bytes, fsync)
    }

    pub fn remove_record(&self, ns: &str, name: &str) {
        let _ = std::fs::remove_file(self.cert_path(ns, name));
    }

    pub fn save_runtime(
        &self,
        issuers: &[IssuerRecord],
        problems: &[ProblemRecord],
    ) -> std::io::Result<()> {
        let o = Overview {
            certificates: vec![],
            issuers: issuers.to_vec(),
            problems: problems.to_vec(),
        };
        write_atomic(
            &self.other_path(),
            &serde_json::to_vec_pretty(&o).unwrap_or_default(),
            true,
        )
    }

    /// Reads everything for `certwright status`.
    pub fn overview(&self) -> Overview {
        let mut o: Overview = std::fs::read(self.other_path())
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        o.certificates = self.load_records().into_values().collect();
        o
    }

    pub fn exists(&self) -> bool {
        Path::new(&self.root).join("status").is_dir()
    }
}
