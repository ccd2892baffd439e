//! Secrets on disk, laid out as the kubelet mounts a Secret volume:
//!
//! ```text
//! NAME/
//!   ..data -> ..2026_11_28_02_02_32.123456789   (swapped atomically by rename)
//!   ..2026_11_28_02_02_32.123456789/
//!     tls.crt  tls.key  ca.crt  …                (0600)
//!     ..metadata.json                             (type, annotations, labels)
//!   tls.crt -> ..data/tls.crt                     (one link per key)
//! ```
//!
//! Guarantees: a reader that resolves `..data` once sees one whole version (keys, key and
//! certificate always match); a crash at any point leaves the previous version in place;
//! the previous version directory is kept until the next write, so a reader that resolved
//! `..data` just before a swap can finish reading it. Directories are 0700, files 0600.

use certwright_engine::SecretData;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{symlink, DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

const DATA_LINK: &str = "..data";
const META_FILE: &str = "..metadata.json";

/// A Secret version on disk that is not visible yet.
#[derive(Debug)]
pub struct Staged {
    id: String,
    dir: PathBuf,
    version: String,
    keys: Vec<String>,
}

impl Staged {
    /// `namespace/name`.
    pub fn id(&self) -> &str {
        &self.id
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Meta {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    type_: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    labels: BTreeMap<String, String>,
}

/// The root of the secret tree: `ROOT/NAMESPACE/NAME/`.
#[derive(Debug, Clone)]
pub struct SecretStore {
    root: PathBuf,
    /// fsync files and directories before swapping (crash-safe against power loss too).
    pub durable: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("secret {secret}: {op} {path}: {source}")]
    Io {
        secret: String,
        op: &'static str,
        path: String,
        source: io::Error,
    },
    #[error("secret {secret}: invalid key {key:?}: keys are letters, digits, '-', '_' and '.', and do not start with '..'")]
    BadKey { secret: String, key: String },
}

fn mkdir_private(p: &Path) -> io::Result<()> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(p)
}

/// Whether a data key is acceptable as a file name (Kubernetes' Secret key rule).
pub fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 253
        && !k.starts_with("..")
        && k != "."
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

impl SecretStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            durable: true,
        }
    }

    pub fn dir(&self, namespace: &str, name: &str) -> PathBuf {
        self.root.join(namespace).join(name)
    }

    /// Reads a Secret, or `None` if it does not exist. A plain directory of files (no
    /// `..data` link), as a user may create by hand, is read too.
    pub fn read(&self, namespace: &str, name: &str) -> Result<Option<SecretData>, StoreError> {
        let dir = self.dir(namespace, name);
        let io_err = |op: &'static str, path: &Path, source: io::Error| StoreError::Io {
            secret: format!("{namespace}/{name}"),
            op,
            path: path.display().to_string(),
            source,
        };
        if !dir.is_dir() {
            return Ok(None);
        }
        // Resolve ..data once so that every key comes from one version; retry if the
        // version is swapped away while reading.
        for _ in 0..5 {
            let data_dir = match fs::read_link(dir.join(DATA_LINK)) {
                Ok(target) => dir.join(target),
                Err(e) if e.kind() == io::ErrorKind::NotFound => dir.clone(),
                Err(e) => return Err(io_err("readlink", &dir.join(DATA_LINK), e)),
            };
            match read_version(&data_dir) {
                Ok(s) => return Ok(Some(s)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err("read", &data_dir, e)),
            }
        }
        Ok(None)
    }

    /// Reads a Secret directory at any path (for `certwright inspect`).
    pub fn read_path(dir: &Path) -> Result<Option<SecretData>, StoreError> {
        let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
            return Ok(None);
        };
        let store = SecretStore::new(parent);
        store.read("", &name.to_string_lossy())
    }

    /// The current version's directory name, which changes on every write: a cheap
    /// change detector.
    pub fn version(&self, namespace: &str, name: &str) -> Option<String> {
        fs::read_link(self.dir(namespace, name).join(DATA_LINK))
            .ok()
            .map(|p| p.to_string_lossy().into_owned())
    }

    /// Writes a whole Secret as one atomic swap ([`Self::stage`] then [`Self::commit`]),
    /// fsyncing as it goes when `durable`.
    pub fn write(
        &self,
        namespace: &str,
        name: &str,
        secret: &SecretData,
    ) -> Result<(), StoreError> {
        let staged = self.stage(namespace, name, secret, self.durable)?;
        self.commit(staged, self.durable)
    }

    /// Writes a new version directory that readers cannot see yet. Batch writers stage
    /// many Secrets, make them durable with one [`Self::sync`], then commit each.
    pub fn stage(
        &self,
        namespace: &str,
        name: &str,
        secret: &SecretData,
        fsync: bool,
    ) -> Result<Staged, StoreError> {
        let id = format!("{namespace}/{name}");
        for k in secret.data.keys() {
            if !valid_key(k) {
                return Err(StoreError::BadKey {
                    secret: id,
                    key: k.clone(),
                });
            }
        }
        let dir = self.dir(namespace, name);
        let io_err = |op: &'static str, path: &Path, source: io::Error| StoreError::Io {
            secret: id.clone(),
            op,
            path: path.display().to_string(),
            source,
        };
        mkdir_private(&dir).map_err(|e| io_err("mkdir", &dir, e))?;
        let version = new_version_name(&dir);
        let vdir = dir.join(&version);
        mkdir_private(&vdir).map_err(|e| io_err("mkdir", &vdir, e))?;
        for (k, v) in &secret.data {
            write_file(&vdir.join(k), v, fsync).map_err(|e| io_err("write", &vdir.join(k), e))?;
        }
        let meta = Meta {
            type_: secret.type_.clone(),
            annotations: secret.annotations.clone(),
            labels: secret.labels.clone(),
        };
        let meta_bytes = serde_json::to_vec_pretty(&meta).unwrap_or_default();
        write_file(&vdir.join(META_FILE), &meta_bytes, fsync)
            .map_err(|e| io_err("write", &vdir.join(META_FILE), e))?;
        if fsync {
            sync_dir(&vdir).map_err(|e| io_err("fsync", &vdir, e))?;
        }
        Ok(Staged {
            id,
            dir,
            version,
            keys: secret.data.keys().cloned().collect(),
        })
    }

    /// Makes a staged version the current one: one rename of the `..data` link, then the
    /// per-key links and the cleanup of versions older than the previous one.
    pub fn commit(&self, staged: Staged, fsync: bool) -> Result<(), StoreError> {
        let Staged {
            id,
            dir,
            version,
            keys,
        } = staged;
        let io_err = |op: &'static str, path: &Path, source: io::Error| StoreError::Io {
            secret: id.clone(),
            op,
            path: path.display().to_string(),
            source,
        };
        let old_version = fs::read_link(dir.join(DATA_LINK)).ok();
        let fresh = old_version.is_none();
        // A new Secret gets its key links first and `..data` last, so every link resolves
        // from the moment the Secret appears; an existing one swaps `..data` first.
        if !fresh {
            swap_link(&dir, DATA_LINK, Path::new(&version))
                .map_err(|e| io_err("swap", &dir.join(DATA_LINK), e))?;
        }
        for k in &keys {
            let want = Path::new(DATA_LINK).join(k);
            if fresh || fs::read_link(dir.join(k)).ok().as_deref() != Some(want.as_path()) {
                place_link(&dir, k, &want, fresh).map_err(|e| io_err("link", &dir.join(k), e))?;
            }
        }
        if fresh {
            place_link(&dir, DATA_LINK, Path::new(&version), true)
                .map_err(|e| io_err("link", &dir.join(DATA_LINK), e))?;
        }
        if let Ok(entries) = fs::read_dir(&dir) {
            for e in entries.flatten() {
                let fname = e.file_name().to_string_lossy().into_owned();
                let is_link = e.file_type().map(|t| t.is_symlink()).unwrap_or(false);
                if fname.starts_with("..") {
                    let keep = fname == DATA_LINK
                        || fname == version
                        || old_version
                            .as_deref()
                            .is_some_and(|o| o == Path::new(&fname));
                    if !keep && !is_link {
                        let _ = fs::remove_dir_all(e.path());
                    }
                } else if is_link && !keys.contains(&fname) {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        if fsync {
            sync_dir(&dir).map_err(|e| io_err("fsync", &dir, e))?;
        }
        Ok(())
    }

    /// Flushes the file system holding the store (one `syncfs`), making every staged
    /// version durable at once.
    pub fn sync(&self) -> io::Result<()> {
        let f = fs::File::open(&self.root)?;
        rustix::fs::syncfs(&f).map_err(io::Error::from)
    }

    /// Lists (namespace, name) of every Secret in the store.
    pub fn list(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let Ok(nss) = fs::read_dir(&self.root) else {
            return out;
        };
        for ns in nss.flatten() {
            let Ok(names) = fs::read_dir(ns.path()) else {
                continue;
            };
            for n in names.flatten() {
                if n.path().is_dir() {
                    out.push((
                        ns.file_name().to_string_lossy().into_owned(),
                        n.file_name().to_string_lossy().into_owned(),
                    ));
                }
            }
        }
        out.sort();
        out
    }
}

fn new_version_name(dir: &Path) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let (y, mo, d, h, mi, s) = certwright_pki::der::civil_from_unix(now.as_secs() as i64);
    let base = format!(
        "..{y:04}_{mo:02}_{d:02}_{h:02}_{mi:02}_{s:02}.{:09}",
        now.subsec_nanos()
    );
    let mut name = base.clone();
    let mut n = 1;
    while dir.join(&name).exists() {
        name = format!("{base}{n}");
        n += 1;
    }
    name
}

fn read_version(dir: &Path) -> io::Result<SecretData> {
    let mut s = SecretData::default();
    for e in fs::read_dir(dir)? {
        let e = e?;
        let fname = e.file_name().to_string_lossy().into_owned();
        if fname.starts_with("..") || fname.starts_with('.') {
            continue;
        }
        let path = e.path();
        if path.is_dir() {
            continue;
        }
        s.data.insert(fname, fs::read(&path)?);
    }
    match fs::read(dir.join(META_FILE)) {
        Ok(b) => {
            let m: Meta = serde_json::from_slice(&b).unwrap_or_default();
            s.type_ = m.type_;
            s.annotations = m.annotations;
            s.labels = m.labels;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    Ok(s)
}

fn write_file(path: &Path, data: &[u8], durable: bool) -> io::Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)?;
    if durable {
        f.sync_all()?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// Points `dir/name` at `target` by renaming a fresh link over it (atomic on POSIX).
/// The state directory is locked to one process and each Secret has one writer at a time,
/// so a fixed temporary name suffices; a leftover from a crash is replaced.
fn swap_link(dir: &Path, name: &str, target: &Path) -> io::Result<()> {
    let tmp = dir.join(format!("..tmp_{name}"));
    if let Err(e) = symlink(target, &tmp) {
        if e.kind() != io::ErrorKind::AlreadyExists {
            return Err(e);
        }
        fs::remove_file(&tmp)?;
        symlink(target, &tmp)?;
    }
    fs::rename(&tmp, dir.join(name))
}

/// Creates a link where none exists (a new Secret), else swaps it in.
fn place_link(dir: &Path, name: &str, target: &Path, fresh: bool) -> io::Result<()> {
    if fresh {
        match symlink(target, dir.join(name)) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            other => return other,
        }
    }
    swap_link(dir, name, target)
}

/// Writes a small state file atomically (temporary file, optional fsync, rename), 0600.
pub fn write_atomic(path: &Path, data: &[u8], fsync: bool) -> io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    match write_file(&tmp, data, fsync) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent() {
                mkdir_private(parent)?;
            }
            write_file(&tmp, data, fsync)?;
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            fs::remove_file(&tmp)?;
            write_file(&tmp, data, fsync)?;
        }
        other => other?,
    }
    fs::rename(&tmp, path)
}

/// Ensures a directory exists with 0700.
pub fn ensure_private_dir(p: &Path) -> io::Result<()> {
    mkdir_private(p)?;
    fs::set_permissions(p, fs::Permissions::from_mode(0o700))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(pairs: &[(&str, &str)]) -> SecretData {
        SecretData {
            type_: Some("kubernetes.io/tls".into()),
            data: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect(),
            annotations: [("a".to_string(), "b".to_string())].into(),
            labels: Default::default(),
        }
    }

    #[test]
    fn writes_kubelet_layout_and_reads_back() {
        let tmp = tempfile::tempdir().expect("tmp");
        let store = SecretStore::new(tmp.path());
        assert!(store.read("ns", "s").expect("read").is_none());
        store
            .write("ns", "s", &secret(&[("tls.crt", "one"), ("tls.key", "k1")]))
            .expect("write");
        let dir = store.dir("ns", "s");
        assert_eq!(
            fs::read_to_string(dir.join("tls.crt")).expect("through link"),
            "one"
        );
        assert!(fs::symlink_metadata(dir.join("tls.crt"))
            .expect("meta")
            .file_type()
            .is_symlink());
        let v1 = store.version("ns", "s").expect("version");
        let meta = fs::metadata(dir.join("tls.key")).expect("meta");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(
            fs::metadata(&dir).expect("dir").permissions().mode() & 0o777,
            0o700
        );
        store
            .write("ns", "s", &secret(&[("tls.crt", "two"), ("ca.crt", "c")]))
            .expect("write 2");
        let back = store.read("ns", "s").expect("read").expect("exists");
        assert_eq!(back.data.len(), 2);
        assert_eq!(back.data["tls.crt"], b"two");
        assert_eq!(back.annotations["a"], "b");
        assert!(!dir.join("tls.key").exists(), "removed key's link is gone");
        assert!(
            dir.join(&v1).exists(),
            "previous version kept for readers in flight"
        );
        store
            .write("ns", "s", &secret(&[("tls.crt", "three")]))
            .expect("write 3");
        assert!(!dir.join(&v1).exists(), "older versions are removed");
        assert_eq!(store.list(), vec![("ns".to_string(), "s".to_string())]);
    }

    #[test]
    fn rejects_bad_keys() {
        let tmp = tempfile::tempdir().expect("tmp");
        let store = SecretStore::new(tmp.path());
        for bad in ["../x", "..data", "a/b", ""] {
            assert!(
                matches!(
                    store.write("ns", "s", &secret(&[(bad, "v")])),
                    Err(StoreError::BadKey { .. })
                ),
                "{bad}"
            );
        }
    }
}
