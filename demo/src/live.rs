//! The material a hop serves and trusts right now, swapped in place when the Secret
//! directory publishes a new version.
//!
//! rustls asks for the certificate ([`ResolvesServerCert`]) and for the verdict on the next
//! hop's chain ([`ServerCertVerifier`]) once per handshake, so swapping one `Arc` makes every
//! new handshake use the new version while connections already open keep the session they
//! negotiated. The directory is watched with inotify (the `notify` crate), events are
//! debounced, and a slow poll of the `..data` link backs the watch up.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Result;
use notify::{RecursiveMode, Watcher};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::material::{self, Material};
use crate::metrics::Metrics;

/// How long a burst of events settles before the directory is read.
const DEBOUNCE: Duration = Duration::from_millis(100);
/// The poll that backs up the watch (a missed event costs at most this).
const POLL: Duration = Duration::from_secs(2);

struct Current {
    material: Arc<Material>,
    verifier: Arc<WebPkiServerVerifier>,
}

pub struct Live {
    dir: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Current>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Live {
    /// Reads the directory once; a hop does not start without a usable certificate.
    pub fn open(
        dir: PathBuf,
        provider: Arc<CryptoProvider>,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Self>> {
        let m = material::load(&dir, &provider)?;
        let verifier = verifier(&m, &provider)?;
        metrics.served(&m, None);
        tracing::info!(dir = %dir.display(), version = %m.version, serial = %m.serial, anchors = m.anchors, "certificate loaded");
        Ok(Arc::new(Live {
            dir,
            provider,
            current: RwLock::new(Current {
                material: Arc::new(m),
                verifier,
            }),
            metrics,
        }))
    }

    pub fn material(&self) -> Arc<Material> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .material
            .clone()
    }

    fn verifier(&self) -> Arc<WebPkiServerVerifier> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .verifier
            .clone()
    }

    /// Reads the directory again and swaps if it publishes another version (`force`: a
    /// directory of plain files, which has no version to compare).
    fn refresh(&self, force: bool) {
        let old = self.material();
        if !force && material::current_version(&self.dir).as_deref() == Some(old.version.as_str()) {
            return;
        }
        match material::load(&self.dir, &self.provider)
            .and_then(|m| Ok((verifier(&m, &self.provider)?, m)))
        {
            Ok((_, m)) if m.version == old.version && m.version != "-" => {}
            Ok((verifier, m)) => {
                tracing::info!(version = %m.version, serial = %m.serial, anchors = m.anchors, previous = %old.serial, "certificate reloaded");
                self.metrics.served(&m, Some(&old));
                let mut cur = self.current.write().unwrap_or_else(|e| e.into_inner());
                *cur = Current {
                    material: Arc::new(m),
                    verifier,
                };
            }
            Err(e) => {
                // The old version stays in service; the next event or poll tries again.
                self.metrics.reload_failed();
                tracing::warn!(error = %e, "reload failed; serving the previous certificate");
            }
        }
    }

    /// Watches the directory until the process ends.
    pub fn spawn_watch(self: &Arc<Self>) -> Result<()> {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        let mut watcher =
            notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
                if res.is_ok() {
                    // Full means a wake-up is already queued: that one will read the directory.
                    let _ = tx.try_send(());
                }
            })?;
        watcher.watch(&self.dir, RecursiveMode::NonRecursive)?;
        let live = self.clone();
        tokio::spawn(async move {
            let _watcher = watcher;
            let plain = live.material().version == "-";
            loop {
                let event = tokio::select! {
                    got = rx.recv() => got.is_some(),
                    _ = tokio::time::sleep(POLL) => false,
                };
                if event {
                    tokio::time::sleep(DEBOUNCE).await;
                    while rx.try_recv().is_ok() {}
                }
                let live = live.clone();
                // File reads and key parsing stay off the reactor threads.
                let _ = tokio::task::spawn_blocking(move || live.refresh(event && plain)).await;
            }
        });
        Ok(())
    }
}

fn verifier(m: &Material, provider: &Arc<CryptoProvider>) -> Result<Arc<WebPkiServerVerifier>> {
    Ok(WebPkiServerVerifier::builder_with_provider(m.roots.clone(), provider.clone()).build()?)
}

/// The server side: each handshake gets the current certificate.
#[derive(Debug)]
pub struct Resolver(pub Arc<Live>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.material().certified_key.clone())
    }
}

/// The client side: the next hop's chain is checked against the current `ca.crt`.
#[derive(Debug)]
pub struct Verifier(pub Arc<Live>);

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.0
            .verifier()
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verifier().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verifier().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.verifier().supported_verify_schemes()
    }
}
