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

use crate::fsroot::{self, Dir, Kind};
use certwright_engine::SecretData;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::sync::Arc;

const DATA_LINK: &str = "..data";
const META_FILE: &str = "..metadata.json";

/// A Secret version on disk that is not visible yet.
#[derive(Debug)]
pub struct Staged {
    namespace: String,
    name: String,
    version: String,
    keys: Vec<String>,
}

impl Staged {
    /// `namespace/name`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
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

/// The root of the secret tree: `ROOT/NAMESPACE/NAME/`, opened once; every Secret is
/// reached from this handle without following links (see [`crate::fsroot`]).
#[derive(Debug, Clone)]
pub struct SecretStore {
    root: Arc<Dir>,
    /// fsync files and directories before swapping (crash-safe against power loss too).
    pub durable: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The io error is part of the message (not a separate `source`), so that a printed
    /// error chain names it once.
    #[error("secret {secret}: {op} {path}: {error}")]
    Io {
        secret: String,
        op: &'static str,
        path: String,
        error: io::Error,
    },
    #[error("secret {secret}: invalid key {key:?}: keys are letters, digits, '-', '_' and '.', and do not start with '..'")]
    BadKey { secret: String, key: String },
    #[error("secret {secret}: {path}: ..data points at {target:?}, which is not a version directory of this secret; refusing to follow it")]
    BadDataLink {
        secret: String,
        path: String,
        target: String,
    },
    #[error(
        "secret {secret}: {path} is a symbolic link certwright did not make; refusing to follow it"
    )]
    ForeignLink { secret: String, path: String },
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

/// Whether `target` can be one of certwright's version directories (`..` + a timestamp).
fn is_version_name(target: &str) -> bool {
    target.len() > 2
        && target.starts_with("..")
        && target != DATA_LINK
        && !target.starts_with("..tmp")
        && fsroot::component(target).is_ok()
}

impl SecretStore {
    /// Opens (creating if needed, 0700) the secret tree at `root`.
    pub fn open(root: &Path) -> io::Result<Self> {
        Ok(Self::from_dir(Dir::open_root(root, true)?))
    }

    pub fn from_dir(root: Dir) -> Self {
        Self {
            root: Arc::new(root),
            durable: true,
        }
    }

    fn io_err(
        namespace: &str,
        name: &str,
        op: &'static str,
        path: &Path,
        e: io::Error,
    ) -> StoreError {
        StoreError::Io {
            secret: format!("{namespace}/{name}"),
            op,
            path: path.display().to_string(),
            error: e,
        }
    }

    /// The Secret's directory handle; `None` when it does not exist and `create` is false.
    fn secret_dir(
        &self,
        namespace: &str,
        name: &str,
        create: bool,
    ) -> Result<Option<Dir>, StoreError> {
        self.root.walk(&[namespace, name], create).map_err(|e| {
            Self::io_err(
                namespace,
                name,
                "open",
                &self.root.path().join(namespace).join(name),
                e,
            )
        })
    }

    /// The Secret's directory handle, which must exist (or is created with `create`).
    fn existing_dir(&self, namespace: &str, name: &str, create: bool) -> Result<Dir, StoreError> {
        self.secret_dir(namespace, name, create)?.ok_or_else(|| {
            let op = if create { "mkdir" } else { "open" };
            let path = self.root.path().join(namespace).join(name);
            Self::io_err(namespace, name, op, &path, io::ErrorKind::NotFound.into())
        })
    }

    /// Reads a Secret, or `None` if it does not exist. A plain directory of files (no
    /// `..data` link), as a user may create by hand, is read too. Links other than
    /// certwright's own `..data` are refused.
    pub fn read(&self, namespace: &str, name: &str) -> Result<Option<SecretData>, StoreError> {
        let Some(dir) = self.secret_dir(namespace, name, false)? else {
            return Ok(None);
        };
        read_secret(&dir, namespace, name)
    }

    /// Reads a Secret directory at any path (for `certwright inspect`): the path up to
    /// the directory is the user's; the directory's contents are read as in the store.
    pub fn read_path(dir: &Path) -> Result<Option<SecretData>, StoreError> {
        let (Some(parent), Some(name)) = (dir.parent(), fsroot::file_name(dir)) else {
            return Ok(None);
        };
        let parent = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        let err = |e| Self::io_err("", name, "open", dir, e);
        let root = Dir::open_root(parent, false).map_err(err)?;
        match root
            .open_dir(name, false)
            .map_err(|e| Self::io_err("", name, "open", dir, e))?
        {
            Some(d) => read_secret(&d, "", name),
            None => Ok(None),
        }
    }

    /// The current version's directory name, which changes on every write: a cheap
    /// change detector.
    pub fn version(&self, namespace: &str, name: &str) -> Option<String> {
        let dir = self.secret_dir(namespace, name, false).ok()??;
        dir.readlink(DATA_LINK).ok()?
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
        let dir = self.existing_dir(namespace, name, true)?;
        let err = |op: &'static str, p: &str, e: io::Error| {
            if fsroot::is_link_refusal(&e) {
                StoreError::ForeignLink {
                    secret: id.clone(),
                    path: dir.path().join(p).display().to_string(),
                }
            } else {
                Self::io_err(namespace, name, op, &dir.path().join(p), e)
            }
        };
        let version = new_version_name(&dir);
        let vdir = dir
            .open_dir(&version, true)
            .map_err(|e| err("mkdir", &version, e))?
            .ok_or_else(|| err("mkdir", &version, io::ErrorKind::NotFound.into()))?;
        let filled = (|| {
            for (k, v) in &secret.data {
                vdir.write_new(k, v, fsync)
                    .map_err(|e| err("write", k, e))?;
            }
            let meta = Meta {
                type_: secret.type_.clone(),
                annotations: secret.annotations.clone(),
                labels: secret.labels.clone(),
            };
            let meta_bytes = serde_json::to_vec_pretty(&meta).unwrap_or_default();
            vdir.write_new(META_FILE, &meta_bytes, fsync)
                .map_err(|e| err("write", META_FILE, e))?;
            if fsync {
                vdir.sync().map_err(|e| err("fsync", &version, e))?;
            }
            Ok(())
        })();
        if let Err(e) = filled {
            // A version that could not be written whole (a full disk) is not left behind.
            let _ = dir.remove_tree(&version);
            return Err(e);
        }
        Ok(Staged {
            namespace: namespace.into(),
            name: name.into(),
            version,
            keys: secret.data.keys().cloned().collect(),
        })
    }

    /// Makes a staged version the current one: one rename of the `..data` link, then the
    /// per-key links and the cleanup of versions older than the previous one.
    pub fn commit(&self, staged: Staged, fsync: bool) -> Result<(), StoreError> {
        let Staged {
            namespace,
            name,
            version,
            keys,
        } = staged;
        let (ns, nm) = (namespace.as_str(), name.as_str());
        let dir = self.existing_dir(ns, nm, false)?;
        let err = |op: &'static str, p: &str, e: io::Error| {
            Self::io_err(ns, nm, op, &dir.path().join(p), e)
        };
        let old_version = match dir.kind(DATA_LINK).map_err(|e| err("stat", DATA_LINK, e))? {
            Some(Kind::Link) => dir
                .readlink(DATA_LINK)
                .map_err(|e| err("readlink", DATA_LINK, e))?,
            Some(_) => {
                return Err(StoreError::ForeignLink {
                    secret: format!("{ns}/{nm}"),
                    path: dir.path().join(DATA_LINK).display().to_string(),
                })
            }
            None => None,
        };
        let fresh = old_version.is_none();
        // A new Secret gets its key links first and `..data` last, so every link resolves
        // from the moment the Secret appears; an existing one swaps `..data` first.
        if !fresh {
            swap_link(&dir, DATA_LINK, &version).map_err(|e| err("swap", DATA_LINK, e))?;
        }
        for k in &keys {
            let want = format!("{DATA_LINK}/{k}");
            if fresh || dir.readlink(k).ok().flatten().as_deref() != Some(want.as_str()) {
                place_link(&dir, k, &want, fresh).map_err(|e| err("link", k, e))?;
            }
        }
        if fresh {
            place_link(&dir, DATA_LINK, &version, true).map_err(|e| err("link", DATA_LINK, e))?;
        }
        if let Ok(entries) = dir.entries() {
            for (fname, kind) in entries {
                if fname.starts_with("..") {
                    let keep = fname == DATA_LINK
                        || fname == version
                        || old_version.as_deref() == Some(fname.as_str());
                    if !keep && kind == Kind::Dir {
                        let _ = dir.remove_tree(&fname);
                    }
                } else if kind == Kind::Link && !keys.contains(&fname) {
                    let _ = dir.remove_file(&fname);
                }
            }
        }
        if fsync {
            dir.sync().map_err(|e| err("fsync", "", e))?;
        }
        Ok(())
    }

    /// Removes version directories that a crash left behind: anything newer than the
    /// current `..data` target (staged, never committed) and all but the newest older one.
    /// Returns how many it removed.
    pub fn clean_stale(&self, namespace: &str, name: &str) -> usize {
        let Ok(Some(dir)) = self.secret_dir(namespace, name, false) else {
            return 0;
        };
        let current = dir.readlink(DATA_LINK).ok().flatten();
        let Ok(entries) = dir.entries() else { return 0 };
        let mut versions: Vec<String> = entries
            .into_iter()
            .filter(|(n, k)| *k == Kind::Dir && is_version_name(n))
            .map(|(n, _)| n)
            .collect();
        versions.sort();
        let keep_prev = current
            .as_ref()
            .and_then(|c| versions.iter().filter(|v| *v < c).max().cloned());
        let mut removed = 0;
        for v in versions {
            if Some(&v) == current.as_ref() || Some(&v) == keep_prev.as_ref() {
                continue;
            }
            if dir.remove_tree(&v).is_ok() {
                removed += 1;
            }
        }
        for (n, k) in dir.entries().unwrap_or_default() {
            if n.starts_with("..tmp") && k != Kind::Dir {
                let _ = dir.remove_file(&n);
            }
        }
        removed
    }

    /// Flushes the file system holding the store (one `syncfs`), making every staged
    /// version durable at once.
    pub fn sync(&self) -> io::Result<()> {
        self.root.syncfs()
    }

    /// Lists (namespace, name) of every Secret in the store (directories only; links are
    /// not followed).
    pub fn list(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (ns, kind) in self.root.entries().unwrap_or_default() {
            if kind != Kind::Dir {
                continue;
            }
            let Ok(Some(nsdir)) = self.root.open_dir(&ns, false) else {
                continue;
            };
            for (n, kind) in nsdir.entries().unwrap_or_default() {
                if kind == Kind::Dir {
                    out.push((ns.clone(), n));
                }
            }
        }
        out.sort();
        out
    }
}

fn read_secret(dir: &Dir, namespace: &str, name: &str) -> Result<Option<SecretData>, StoreError> {
    let secret = || format!("{namespace}/{name}");
    let io_err = |op, p: &str, e| SecretStore::io_err(namespace, name, op, &dir.path().join(p), e);
    // Resolve ..data once so that every key comes from one version; retry if the
    // version is swapped away while reading.
    for _ in 0..5 {
        let (data_dir, plain) = match dir
            .kind(DATA_LINK)
            .map_err(|e| io_err("stat", DATA_LINK, e))?
        {
            None => (dir.try_clone().map_err(|e| io_err("open", "", e))?, true),
            Some(Kind::Link) => {
                let Some(target) = dir
                    .readlink(DATA_LINK)
                    .map_err(|e| io_err("readlink", DATA_LINK, e))?
                else {
                    continue;
                };
                if !is_version_name(&target) {
                    return Err(StoreError::BadDataLink {
                        secret: secret(),
                        path: dir.path().join(DATA_LINK).display().to_string(),
                        target,
                    });
                }
                match dir.open_dir(&target, false) {
                    Ok(Some(d)) => (d, false),
                    Ok(None) => continue,
                    Err(e) if fsroot::is_link_refusal(&e) => {
                        return Err(StoreError::ForeignLink {
                            secret: secret(),
                            path: dir.path().join(&target).display().to_string(),
                        })
                    }
                    Err(e) => return Err(io_err("open", &target, e)),
                }
            }
            Some(_) => {
                return Err(StoreError::ForeignLink {
                    secret: secret(),
                    path: dir.path().join(DATA_LINK).display().to_string(),
                })
            }
        };
        match read_version(&data_dir, plain) {
            Ok(s) => return Ok(s),
            Err(ReadError::Io(e)) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(ReadError::ForeignLink(key)) => {
                return Err(StoreError::ForeignLink {
                    secret: secret(),
                    path: data_dir.path().join(key).display().to_string(),
                })
            }
            Err(ReadError::Io(e)) => return Err(io_err("read", "", e)),
        }
    }
    Ok(None)
}

fn new_version_name(dir: &Dir) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let t = certwright_pki::der::utc(now.as_secs() as i64);
    let base = format!(
        "..{:04}_{:02}_{:02}_{:02}_{:02}_{:02}.{:09}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        now.subsec_nanos()
    );
    let mut name = base.clone();
    let mut n = 1;
    while !matches!(dir.kind(&name), Ok(None)) {
        name = format!("{base}_{n:03}");
        n += 1;
    }
    name
}

/// Why a version could not be read.
enum ReadError {
    Io(io::Error),
    /// A key that is a link certwright did not make (its name).
    ForeignLink(String),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

/// Reads one version, or a plain directory (`plain`): its regular files, and
/// `..metadata.json`. A key that is a link is refused, except, in a plain directory, the
/// per-key links certwright itself made (`KEY -> ..data/KEY`) before a crash kept it
/// from creating `..data`: those dangle and are skipped. `None` when a plain directory
/// holds nothing else (such an interrupted first write).
fn read_version(dir: &Dir, plain: bool) -> Result<Option<SecretData>, ReadError> {
    let mut s = SecretData::default();
    let mut own_links = false;
    for (fname, kind) in dir.entries()? {
        if fname.starts_with('.') {
            continue;
        }
        match kind {
            Kind::File => {
                if let Some(b) = dir.read(&fname)? {
                    s.data.insert(fname, b);
                }
            }
            Kind::Link => {
                let ours = format!("{DATA_LINK}/{fname}");
                if plain && dir.readlink(&fname)?.as_deref() == Some(ours.as_str()) {
                    own_links = true;
                    continue;
                }
                return Err(ReadError::ForeignLink(fname));
            }
            Kind::Dir | Kind::Other => {}
        }
    }
    let meta = dir.read(META_FILE)?;
    if plain && own_links && s.data.is_empty() && meta.is_none() {
        return Ok(None);
    }
    if let Some(b) = meta {
        let m: Meta = serde_json::from_slice(&b).unwrap_or_default();
        s.type_ = m.type_;
        s.annotations = m.annotations;
        s.labels = m.labels;
    }
    Ok(Some(s))
}

/// Creates the link where nothing is (a new Secret: one system call), else swaps it in.
fn place_link(dir: &Dir, name: &str, target: &str, fresh: bool) -> io::Result<()> {
    if fresh {
        match dir.symlink(target, name) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            other => return other,
        }
    }
    swap_link(dir, name, target)
}

/// Points `dir/name` at `target` by renaming a fresh link over it (atomic on POSIX; a
/// planted link or file of that name is replaced, never followed).
/// The state directory is locked to one process and each Secret has one writer at a time,
/// so a fixed temporary name suffices; a leftover from a crash is replaced.
fn swap_link(dir: &Dir, name: &str, target: &str) -> io::Result<()> {
    let tmp = format!("..tmp_{name}");
    if let Err(e) = dir.symlink(target, &tmp) {
        if e.kind() != io::ErrorKind::AlreadyExists {
            return Err(e);
        }
        dir.remove_file(&tmp)?;
        dir.symlink(target, &tmp)?;
    }
    dir.rename(&tmp, name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

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
        let store = SecretStore::open(tmp.path()).expect("open");
        assert!(store.read("ns", "s").expect("read").is_none());
        store
            .write("ns", "s", &secret(&[("tls.crt", "one"), ("tls.key", "k1")]))
            .expect("write");
        let dir = tmp.path().join("ns").join("s");
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
    fn an_interrupted_first_commit_reads_as_missing_and_is_rewritten() {
        let tmp = tempfile::tempdir().expect("tmp");
        let store = SecretStore::open(tmp.path()).expect("open");
        // A crash after the key links of a new Secret, before its `..data`.
        let dir = tmp.path().join("ns").join("s");
        fs::create_dir_all(dir.join("..2026_01_01_00_00_00.000000000")).expect("dirs");
        std::os::unix::fs::symlink("..data/tls.crt", dir.join("tls.crt")).expect("link");
        assert!(store.read("ns", "s").expect("read").is_none());
        store
            .write("ns", "s", &secret(&[("tls.crt", "one")]))
            .expect("write");
        assert_eq!(
            fs::read_to_string(dir.join("tls.crt")).expect("read"),
            "one"
        );
        assert_eq!(store.list().len(), 1);
        let versions = fs::read_dir(&dir)
            .expect("dir")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("..20"))
            .count();
        assert_eq!(versions, 1, "the orphan version is removed");
        // A link someone else planted is still refused.
        std::os::unix::fs::symlink("/etc/passwd", tmp.path().join("ns/t")).expect("link");
        assert!(store.read("ns", "t").is_err());
    }

    #[test]
    fn rejects_bad_keys() {
        let tmp = tempfile::tempdir().expect("tmp");
        let store = SecretStore::open(tmp.path()).expect("open");
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
