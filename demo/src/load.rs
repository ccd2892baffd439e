//! `certwright-demo load`: requests at a fixed rate through a TLS endpoint, half on
//! kept-alive connections and half on a new connection each, counting every failure.
//! The tests and the CI rotation run use it; the benchmark measures with a registry load
//! generator as well (bench/rotation.sh).
//!
//! Open loop: request `n` is due at `start + n / rate` whatever happened to the ones
//! before it, so a stall shows as latency and failures instead of fewer requests.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::sync::Mutex;

#[derive(clap::Parser)]
pub struct Load {
    /// The address to connect to (the edge).
    #[arg(long)]
    connect: SocketAddr,
    /// The host name: SNI, Host header and the name the certificate must carry.
    #[arg(long)]
    host: String,
    /// PEM file of the CAs to trust (read again whenever it changes).
    #[arg(long)]
    ca: PathBuf,
    /// Requests per second.
    #[arg(long, default_value_t = 50)]
    rate: u32,
    /// How long to run, in seconds.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Kept-alive connections (every other request goes on one of them; the rest on a
    /// new connection each).
    #[arg(long, default_value_t = 4)]
    keepalive: usize,
    /// The body every answer must start with (a 200 with another body is a failure).
    #[arg(long, default_value = "")]
    expect: String,
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

#[derive(Default)]
struct Tally {
    requests: u64,
    failed: u64,
    errors: Vec<String>,
    latencies_us: Vec<u64>,
    new_connections: u64,
}

impl Load {
    pub async fn run(self) -> Result<()> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let name = ServerName::try_from(self.host.clone())
            .with_context(|| format!("{:?} is not a server name", self.host))?;
        let this = Arc::new(self);
        let tally = Arc::new(std::sync::Mutex::new(Tally::default()));
        let pool: Arc<Vec<Mutex<Option<Sender>>>> = Arc::new(
            (0..this.keepalive.max(1))
                .map(|_| Mutex::new(None))
                .collect(),
        );
        let start = Instant::now();
        let total = u64::from(this.rate) * this.duration;
        let mut tasks = Vec::with_capacity(total as usize);
        for n in 0..total {
            let due = start + Duration::from_secs_f64(n as f64 / f64::from(this.rate.max(1)));
            tokio::time::sleep_until(due.into()).await;
            let (this, tally, pool, provider, name) = (
                this.clone(),
                tally.clone(),
                pool.clone(),
                provider.clone(),
                name.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let t = Instant::now();
                let kept = (n % 2 == 0).then(|| &pool[(n as usize / 2) % pool.len()]);
                let result = this.one(kept, &provider, name).await.with_context(|| {
                    if kept.is_some() {
                        "kept-alive connection"
                    } else {
                        "new connection"
                    }
                });
                let us = t.elapsed().as_micros() as u64;
                let mut tl = tally.lock().unwrap_or_else(|e| e.into_inner());
                tl.requests += 1;
                tl.latencies_us.push(us);
                match result {
                    Ok(new) => tl.new_connections += u64::from(new),
                    Err(e) => {
                        tl.failed += 1;
                        if tl.errors.len() < 5 {
                            let ms = start.elapsed().as_millis();
                            tl.errors.push(format!("at {ms} ms: {e:#}"));
                        }
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        let mut tl = std::mem::take(&mut *tally.lock().unwrap_or_else(|e| e.into_inner()));
        tl.latencies_us.sort_unstable();
        let pct = |p: f64| {
            tl.latencies_us
                .get(
                    ((tl.latencies_us.len() as f64 * p) as usize)
                        .min(tl.latencies_us.len().saturating_sub(1)),
                )
                .copied()
                .unwrap_or(0) as f64
                / 1000.0
        };
        let summary = format!(
            "{{\"requests\": {}, \"failed\": {}, \"new_connections\": {}, \"p50_ms\": {:.2}, \"p99_ms\": {:.2}, \"max_ms\": {:.2}, \"seconds\": {:.1}, \"errors\": [{}]}}",
            tl.requests,
            tl.failed,
            tl.new_connections,
            pct(0.50),
            pct(0.99),
            pct(1.0),
            start.elapsed().as_secs_f64(),
            tl.errors.iter().map(|e| format!("{e:?}")).collect::<Vec<_>>().join(", ")
        );
        println!("{summary}");
        Ok(())
    }

    /// One request; `kept`: the kept-alive connection slot to use (None: a new
    /// connection). Returns whether a connection was made.
    async fn one(
        &self,
        kept: Option<&Mutex<Option<Sender>>>,
        provider: &Arc<rustls::crypto::CryptoProvider>,
        name: ServerName<'static>,
    ) -> Result<bool> {
        let Some(slot) = kept else {
            let mut s = self.connect(provider, name).await?;
            self.request(&mut s).await?;
            return Ok(true);
        };
        let mut guard = slot.lock().await;
        let mut made = false;
        let reusable = guard.as_ref().is_some_and(|s| !s.is_closed());
        if !reusable {
            *guard = Some(self.connect(provider, name).await?);
            made = true;
        }
        let Some(s) = guard.as_mut() else {
            unreachable!("just set")
        };
        s.ready().await.context("connection not ready")?;
        let close = self.request(s).await?;
        if close {
            *guard = None;
        }
        Ok(made)
    }

    async fn connect(
        &self,
        provider: &Arc<rustls::crypto::CryptoProvider>,
        name: ServerName<'static>,
    ) -> Result<Sender> {
        let pem =
            std::fs::read(&self.ca).with_context(|| format!("reading {}", self.ca.display()))?;
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(&pem) {
            roots.add(c?)?;
        }
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.resumption = rustls::client::Resumption::disabled();
        let tcp = tokio::time::timeout(
            Duration::from_secs(10),
            tokio::net::TcpStream::connect(self.connect),
        )
        .await
        .context("connect timed out")??;
        let _ = tcp.set_nodelay(true);
        let tls = tokio::time::timeout(
            Duration::from_secs(10),
            tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(name, tcp),
        )
        .await
        .context("handshake timed out")??;
        let (send, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await?;
        tokio::spawn(conn);
        Ok(send)
    }

    /// GET /; returns whether the server closes the connection after it.
    async fn request(&self, s: &mut Sender) -> Result<bool> {
        let req = hyper::Request::get("/")
            .header("host", &self.host)
            .body(Empty::new())?;
        let res = tokio::time::timeout(Duration::from_secs(30), s.send_request(req))
            .await
            .context("no answer in 30 s")??;
        let status = res.status();
        let close = res
            .headers()
            .get("connection")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
        let body = res.into_body().collect().await?.to_bytes();
        let body = String::from_utf8_lossy(&body);
        if !status.is_success() {
            anyhow::bail!("{status}: {}", body.trim());
        }
        if !body.starts_with(&self.expect) {
            anyhow::bail!("unexpected answer: {}", body.trim());
        }
        Ok(close)
    }
}
