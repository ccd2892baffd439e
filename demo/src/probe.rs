//! Which certificate does a TLS server present right now? A fresh handshake each time,
//! nothing verified (this is a measurement: the serial is the answer), nothing sent after
//! the handshake.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

#[derive(clap::Parser)]
pub struct Probe {
    /// The server's address.
    #[arg(long)]
    connect: SocketAddr,
    /// The name sent as SNI (HAProxy picks a route's certificate by it).
    #[arg(long)]
    server_name: String,
    /// Repeat every this many milliseconds (0: once).
    #[arg(long, default_value_t = 0)]
    every: u64,
    /// Stop after this many probes (with --every; 0: until killed).
    #[arg(long, default_value_t = 0)]
    count: u64,
}

impl Probe {
    pub async fn run(self) -> Result<()> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut done = 0u64;
        loop {
            let line = match serial_at(&provider, self.connect, &self.server_name).await {
                Ok(serial) => serial,
                Err(e) => format!("error {e:#}"),
            };
            let ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0);
            println!("{ms} {line}");
            done += 1;
            if self.every == 0 || (self.count > 0 && done >= self.count) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(self.every)).await;
        }
    }
}

/// The serial of the certificate `addr` presents to `server_name` in a fresh handshake.
pub async fn serial_at(
    provider: &Arc<rustls::crypto::CryptoProvider>,
    addr: SocketAddr,
    server_name: &str,
) -> Result<String> {
    let seen = Arc::new(Recorder {
        provider: provider.clone(),
        leaf: Mutex::new(None),
    });
    let mut tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(seen.clone())
        .with_no_client_auth();
    tls.resumption = rustls::client::Resumption::disabled();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
    let name = ServerName::try_from(server_name.to_string())
        .with_context(|| format!("{server_name:?} is not a server name"))?;
    let tcp = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
        .await
        .context("connect timed out")??;
    let _tls = tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp))
        .await
        .context("handshake timed out")??;
    let leaf = seen
        .leaf
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
        .context("no certificate presented")?;
    Ok(crate::material::leaf_facts(&leaf)?.0)
}

#[derive(Debug)]
struct Recorder {
    provider: Arc<rustls::crypto::CryptoProvider>,
    leaf: Mutex<Option<Vec<u8>>>,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.leaf.lock().unwrap_or_else(|e| e.into_inner()) = Some(end_entity.to_vec());
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
