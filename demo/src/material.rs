//! One consistent view of a mounted Secret directory: certificate chain, private key and
//! trust anchors from the same `..data` version.
//!
//! A Secret volume (the kubelet's, and certwright's local runtime) keeps every version in a
//! directory of its own and swaps the `..data` link to publish the next one; `tls.crt` and
//! friends are links through `..data`. Reading `tls.crt` and then `tls.key` by their
//! top-level names can straddle a swap and pair a new certificate with an old key. So the
//! link is resolved once, every file is read inside the version it names, and the link is
//! read again afterwards: if it moved meanwhile the read is retried. The key is checked
//! against the certificate before anything is served. This is a few dozen lines over
//! `std::fs` and rustls; no crate does it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;

/// What one version of the directory holds, parsed and checked.
#[derive(Debug, Clone)]
pub struct Material {
    /// The `..data` target this was read from (`-` for a directory of plain files).
    pub version: String,
    pub certified_key: Arc<CertifiedKey>,
    pub roots: Arc<RootCertStore>,
    /// The leaf's serial number, lower-case hex without separators.
    pub serial: String,
    /// The leaf's notAfter, seconds since the epoch.
    pub not_after: i64,
    /// How many trust anchors `ca.crt` holds (two during a CA rotation's overlap).
    pub anchors: usize,
}

/// The version the directory publishes now, without reading it.
pub fn current_version(dir: &Path) -> Option<String> {
    let target = std::fs::read_link(dir.join("..data")).ok()?;
    target.to_str().map(str::to_owned)
}

/// Reads the directory's current version. A swap during the read is retried a few times.
pub fn load(dir: &Path, provider: &CryptoProvider) -> Result<Material> {
    let mut last = None;
    for _ in 0..5 {
        let version = current_version(dir);
        let base: PathBuf = match &version {
            Some(v) => {
                // The link is the writer's; a target that is not one plain name inside the
                // directory is not a Secret volume's.
                if v.contains('/') || !v.starts_with("..") || v == ".." {
                    bail!(
                        "{}: ..data points at {v:?}, not at a version inside the directory",
                        dir.display()
                    );
                }
                dir.join(v)
            }
            None => dir.to_path_buf(),
        };
        match read_version(
            &base,
            version.clone().unwrap_or_else(|| "-".into()),
            provider,
        ) {
            Ok(m) if current_version(dir) == version => return Ok(m),
            Ok(_) => {
                last = Some(anyhow::anyhow!(
                    "{}: ..data moved during the read",
                    dir.display()
                ))
            }
            Err(e) if version.is_some() && current_version(dir) != version => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("{}: unreadable", dir.display())))
}

fn read_version(base: &Path, version: String, provider: &CryptoProvider) -> Result<Material> {
    let read = |name: &str| {
        std::fs::read(base.join(name))
            .with_context(|| format!("{}: reading {name}", base.display()))
    };
    let crt = read("tls.crt")?;
    let key = read("tls.key")?;
    let ca = read("ca.crt")?;
    let chain = CertificateDer::pem_slice_iter(&crt)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{}: tls.crt is not PEM certificates", base.display()))?;
    if chain.is_empty() {
        bail!("{}: tls.crt holds no certificate", base.display());
    }
    // Only the kind of problem is reported: the key's bytes never reach a message.
    let key = PrivateKeyDer::from_pem_slice(&key)
        .map_err(|_| anyhow::anyhow!("{}: tls.key is not a PEM private key", base.display()))?;
    let certified_key = CertifiedKey::from_der(chain, key, provider).map_err(|e| {
        anyhow::anyhow!("{}: tls.key does not go with tls.crt ({e})", base.display())
    })?;
    let mut roots = RootCertStore::empty();
    let mut anchors = 0;
    for der in CertificateDer::pem_slice_iter(&ca) {
        let der =
            der.with_context(|| format!("{}: ca.crt is not PEM certificates", base.display()))?;
        roots
            .add(der)
            .with_context(|| format!("{}: ca.crt holds an unusable certificate", base.display()))?;
        anchors += 1;
    }
    if anchors == 0 {
        bail!("{}: ca.crt holds no certificate", base.display());
    }
    let (serial, not_after) = leaf_facts(&certified_key.cert[0])?;
    Ok(Material {
        version,
        certified_key: Arc::new(certified_key),
        roots: Arc::new(roots),
        serial,
        not_after,
        anchors,
    })
}

/// Serial (lower-case hex) and notAfter (epoch seconds) of a DER certificate.
pub fn leaf_facts(der: &[u8]) -> Result<(String, i64)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| anyhow::anyhow!("certificate does not parse: {e}"))?;
    let serial = cert
        .tbs_certificate
        .raw_serial()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>();
    let serial = serial.trim_start_matches('0').to_string();
    Ok((
        if serial.is_empty() {
            "0".into()
        } else {
            serial
        },
        cert.validity().not_after.timestamp(),
    ))
}
