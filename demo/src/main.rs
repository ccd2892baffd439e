//! `certwright-demo`: the reference scenario's services (customer → preference →
//! recommendation), each serving HTTPS from a mounted Secret directory and calling the next
//! hop over HTTPS, trusting only its `ca.crt`. New certificate versions are picked up for
//! new handshakes without a restart (see `live`).
//!
//! `certwright-demo probe` prints the serial a TLS server presents now (the rotation
//! benchmark uses it to time how long a new certificate takes to be served).

mod live;
mod load;
mod material;
mod metrics;
mod probe;
mod propagation;
mod service;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "certwright-demo",
    version,
    about = "The reference scenario's services, with certificates reloaded in place"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve one hop of the chain.
    Serve(Serve),
    /// Print the serial of the certificate a TLS server presents now, one line per
    /// connection (`--every` repeats).
    Probe(probe::Probe),
    /// Send GET / at a fixed rate (kept-alive and new connections) and print a JSON
    /// summary: requests, failures, latency percentiles.
    Load(load::Load),
    /// For each new version of Secret directories, print (JSON lines) how long until an
    /// endpoint presents its certificate.
    Propagation(propagation::Propagation),
}

#[derive(Parser)]
struct Serve {
    /// This hop's name, the prefix of its answers (customer, preference, recommendation).
    #[arg(long)]
    name: String,
    /// Address to serve HTTPS on (port 0: any free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// The mounted Secret directory: tls.crt, tls.key and ca.crt, through `..data`.
    #[arg(long)]
    secret_dir: PathBuf,
    /// The next hop, e.g. https://127.0.0.1:8444/ (none: this is the last hop).
    #[arg(long, requires = "upstream_name")]
    upstream: Option<hyper::Uri>,
    /// The name the next hop's certificate must carry, e.g. preference.demo.svc.
    #[arg(long)]
    upstream_name: Option<String>,
    /// The version the last hop reports.
    #[arg(long, default_value = "v1")]
    version: String,
    /// The host name the last hop reports (default: this machine's).
    #[arg(long)]
    host: Option<String>,
    /// Also answer plain HTTP here (what an edge Route calls: TLS ends at the edge).
    #[arg(long)]
    plain_listen: Option<SocketAddr>,
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CERTWRIGHT_DEMO_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        match cli.command {
            Command::Serve(s) => serve(s).await,
            Command::Probe(p) => p.run().await,
            Command::Load(l) => l.run().await,
            Command::Propagation(p) => p.run().await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(s: Serve) -> Result<()> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let metrics = Arc::new(metrics::Metrics::default());
    let live = live::Live::open(s.secret_dir.clone(), provider.clone(), metrics.clone())?;
    live.spawn_watch()
        .with_context(|| format!("watching {}", s.secret_dir.display()))?;
    let upstream = match (s.upstream, s.upstream_name) {
        (Some(uri), Some(name)) => Some(service::Upstream::new(
            uri,
            &name,
            live.clone(),
            provider.clone(),
        )?),
        _ => None,
    };
    let host = s.host.unwrap_or_else(hostname);
    let hop = Arc::new(service::Hop::new(
        s.name.clone(),
        s.version,
        host,
        upstream,
        metrics,
    ));
    let listener = tokio::net::TcpListener::bind(s.listen)
        .await
        .with_context(|| format!("binding {}", s.listen))?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let plain = match s.plain_listen {
        Some(a) => {
            let l = tokio::net::TcpListener::bind(a)
                .await
                .with_context(|| format!("binding {a}"))?;
            tracing::info!(addr = %l.local_addr()?, "serving plain HTTP");
            let (hop, mut stopped) = (hop.clone(), stopped.clone());
            Some(tokio::spawn(service::serve_plain(l, hop, async move {
                let _ = stopped.wait_for(|s| *s).await;
            })))
        }
        None => None,
    };
    // One line on stdout for whoever started this hop (the demo script, the tests).
    println!("{} listening on {addr}", s.name);
    tracing::info!(name = %s.name, %addr, "serving");
    let result = service::serve(listener, hop, live, provider, async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    })
    .await;
    if let Some(p) = plain {
        let _ = p.await;
    }
    drop(stopped);
    result
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    tracing::info!("stopping: finishing the connections in flight");
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .unwrap_or_else(|| "localhost".into())
}
