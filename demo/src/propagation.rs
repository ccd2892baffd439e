//! `certwright-demo propagation`: for each new version of a Secret directory, how long
//! until a TLS endpoint presents its certificate. One JSON line per swap and endpoint:
//! `{"secret": "...", "endpoint": "...", "serial": "...", "delay_ms": N}` (or
//! `"timeout": true` after 30 s). Versions that change only `ca.crt` are counted as
//! `"trust_only": true` (no certificate to see in a handshake).
//!
//! The swap's time is when inotify reports the `..data` rename (the watcher is a thread
//! of its own, so a busy probe does not delay it); probes are fresh handshakes every
//! 10 ms.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use notify::{RecursiveMode, Watcher};

#[derive(clap::Parser)]
pub struct Propagation {
    /// SECRET_DIR=ADDRESS=SERVER_NAME: the endpoint that serves SECRET_DIR's certificate
    /// (repeatable; one directory may have several endpoints).
    #[arg(long = "watch", value_name = "DIR=ADDR=NAME", required = true)]
    watches: Vec<String>,
}

struct Target {
    dir: PathBuf,
    addr: SocketAddr,
    name: String,
}

impl Propagation {
    pub async fn run(self) -> Result<()> {
        let mut targets = Vec::new();
        for w in &self.watches {
            let mut parts = w.splitn(3, '=');
            let (Some(dir), Some(addr), Some(name)) = (parts.next(), parts.next(), parts.next())
            else {
                bail!("--watch {w:?}: expected DIR=ADDRESS=NAME");
            };
            targets.push(Arc::new(Target {
                dir: dir.into(),
                addr: addr
                    .parse()
                    .with_context(|| format!("--watch {w:?}: address"))?,
                name: name.into(),
            }));
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(PathBuf, Instant)>();
        let mut watcher =
            notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
                let at = Instant::now();
                if let Ok(ev) = res {
                    for p in ev.paths {
                        if p.file_name().is_some_and(|n| n == "..data") {
                            if let Some(dir) = p.parent() {
                                let _ = tx.send((dir.to_path_buf(), at));
                            }
                        }
                    }
                }
            })?;
        let mut dirs: Vec<PathBuf> = targets.iter().map(|t| t.dir.clone()).collect();
        dirs.sort();
        dirs.dedup();
        // Per directory: the version (`..data` target) and serial last seen. A rename is
        // reported more than once; only a new version counts.
        let mut last = std::collections::HashMap::new();
        for d in &dirs {
            watcher
                .watch(d, RecursiveMode::NonRecursive)
                .with_context(|| format!("watching {}", d.display()))?;
            last.insert(
                d.clone(),
                (
                    crate::material::current_version(d),
                    serial_in(d).unwrap_or_default(),
                ),
            );
        }
        eprintln!("propagation: watching {} directories", dirs.len());
        while let Some((dir, at)) = rx.recv().await {
            let dir = targets
                .iter()
                .find(|t| dir.ends_with(&t.dir) || t.dir.ends_with(&dir) || t.dir == dir)
                .map(|t| t.dir.clone())
                .unwrap_or(dir);
            let version = crate::material::current_version(&dir);
            let Ok(serial) = serial_in(&dir) else {
                continue;
            };
            let before = last.insert(dir.clone(), (version.clone(), serial.clone()));
            match before {
                Some((v, _)) if v == version => continue,
                Some((_, s)) if s == serial => {
                    println!(
                        "{{\"secret\": {:?}, \"trust_only\": true}}",
                        dir.display().to_string()
                    );
                    continue;
                }
                _ => {}
            }
            for t in targets.iter().filter(|t| t.dir == dir).cloned() {
                let (serial, provider) = (serial.clone(), provider.clone());
                tokio::spawn(async move {
                    let deadline = at + Duration::from_secs(30);
                    loop {
                        if let Ok(s) = crate::probe::serial_at(&provider, t.addr, &t.name).await {
                            if s == serial {
                                println!(
                                    "{{\"secret\": {:?}, \"endpoint\": \"{}={}\", \"serial\": \"{serial}\", \"delay_ms\": {}}}",
                                    t.dir.display().to_string(),
                                    t.addr,
                                    t.name,
                                    at.elapsed().as_millis()
                                );
                                return;
                            }
                        }
                        if Instant::now() > deadline {
                            println!("{{\"secret\": {:?}, \"endpoint\": \"{}={}\", \"serial\": \"{serial}\", \"timeout\": true}}", t.dir.display().to_string(), t.addr, t.name);
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                });
            }
        }
        Ok(())
    }
}

/// The serial of the certificate the directory publishes now.
fn serial_in(dir: &std::path::Path) -> Result<String> {
    use rustls::pki_types::pem::PemObject;
    let pem = std::fs::read(dir.join("tls.crt"))?;
    let der = rustls::pki_types::CertificateDer::from_pem_slice(&pem)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(crate::material::leaf_facts(&der)?.0)
}
