//! One hop of the scenario: HTTPS in, HTTPS to the next hop (if any), the chain text out.
//!
//! The contract (docs/demo.md): `GET /` answers `NAME => ` followed by the next hop's
//! answer; the last hop answers `recommendation VERSION from 'HOST': COUNT` and counts.
//! `POST /` forwards its text body down the chain. The last hop's `/misbehave` makes the
//! next requests to `/` answer 503 until `/behave`. A failure of the next hop answers 503
//! with this hop's prefix and the failure.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_rustls::{FixedServerNameResolver, HttpsConnector};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::ServerName;
use tokio::net::TcpListener;

use crate::live::{Live, Resolver, Verifier};
use crate::metrics::Metrics;

/// Bodies forwarded by POST are text; anything larger is refused.
const MAX_BODY: usize = 64 * 1024;
/// Idle pooled connections to the next hop are dropped after this (the next hop never
/// closes an idle connection itself, so a pooled one is not reused as it closes).
const POOL_IDLE: Duration = Duration::from_secs(20);
/// How long connections in flight may take to finish after SIGTERM.
const DRAIN: Duration = Duration::from_secs(10);

pub struct Hop {
    pub name: String,
    pub version: String,
    pub host: String,
    pub upstream: Option<Upstream>,
    count: AtomicU64,
    misbehaving: AtomicBool,
    metrics: Arc<Metrics>,
    registry: prometheus_client::registry::Registry,
}

pub struct Upstream {
    uri: Uri,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl Upstream {
    /// A pooled HTTPS client to `uri` that checks the next hop's certificate for
    /// `server_name` against the hop's current `ca.crt` (and nothing else).
    pub fn new(
        uri: Uri,
        server_name: &str,
        live: Arc<Live>,
        provider: Arc<CryptoProvider>,
    ) -> Result<Self> {
        let name = ServerName::try_from(server_name.to_string())
            .with_context(|| format!("{server_name:?} is not a server name"))?;
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Verifier(live)))
            .with_no_client_auth();
        // Each new connection checks the next hop's certificate against ca.crt as it is now.
        tls.resumption = rustls::client::Resumption::disabled();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .with_server_name_resolver(FixedServerNameResolver::new(name))
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .build(https);
        Ok(Upstream { uri, client })
    }
}

impl Hop {
    pub fn new(
        name: String,
        version: String,
        host: String,
        upstream: Option<Upstream>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let registry = metrics.registry();
        Hop {
            name,
            version,
            host,
            upstream,
            count: AtomicU64::new(0),
            misbehaving: AtomicBool::new(false),
            metrics,
            registry,
        }
    }

    /// Answers, counting the request (and a failure) in the metrics.
    async fn counted(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let res = self.answer(req).await;
        self.metrics.requests.inc();
        if res.status().is_server_error() {
            self.metrics.failures.inc();
        }
        res
    }

    async fn answer(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        match (req.method(), req.uri().path()) {
            (&Method::GET, "/") => self.chain(None).await,
            (&Method::POST, "/") => match Limited::new(req.into_body(), MAX_BODY).collect().await {
                Ok(body) => self.chain(Some(body.to_bytes())).await,
                Err(_) => text(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("{} => body over {MAX_BODY} bytes\n", self.name),
                ),
            },
            (&Method::GET, "/misbehave") if self.upstream.is_none() => {
                self.misbehaving.store(true, Ordering::SeqCst);
                text(
                    StatusCode::OK,
                    "Following requests to / will return a 503\n".into(),
                )
            }
            (&Method::GET, "/behave") if self.upstream.is_none() => {
                self.misbehaving.store(false, Ordering::SeqCst);
                text(
                    StatusCode::OK,
                    "Following requests to / will return a 200\n".into(),
                )
            }
            (&Method::GET, "/metrics") => {
                let mut out = String::new();
                match prometheus_client::encoding::text::encode(&mut out, &self.registry) {
                    Ok(()) => text(StatusCode::OK, out),
                    Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
                }
            }
            (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n".into()),
            _ => text(
                StatusCode::NOT_FOUND,
                format!("{} => no such path\n", self.name),
            ),
        }
    }

    /// `GET /` (body `None`) or `POST /`: the next hop's answer behind this hop's prefix.
    async fn chain(&self, body: Option<Bytes>) -> Response<Full<Bytes>> {
        let Some(up) = &self.upstream else {
            if self.misbehaving.load(Ordering::SeqCst) {
                return text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("{} misbehavior from '{}'\n", self.name, self.host),
                );
            }
            return match body {
                None => {
                    let n = self.count.fetch_add(1, Ordering::SeqCst) + 1;
                    text(
                        StatusCode::OK,
                        format!("{} {} from '{}': {n}\n", self.name, self.version, self.host),
                    )
                }
                Some(b) => text(
                    StatusCode::OK,
                    format!(
                        "{} {} from '{}': {}\n",
                        self.name,
                        self.version,
                        self.host,
                        String::from_utf8_lossy(&b).trim_end()
                    ),
                ),
            };
        };
        let mut req = Request::builder()
            .uri(up.uri.clone())
            .header("user-agent", "certwright-demo");
        req = match &body {
            None => req.method(Method::GET),
            Some(_) => req
                .method(Method::POST)
                .header("content-type", "text/plain"),
        };
        let req = match req.body(Full::new(body.unwrap_or_default())) {
            Ok(r) => r,
            Err(e) => {
                return text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("{} => {e}\n", self.name),
                )
            }
        };
        let res = match up.client.request(req).await {
            Ok(r) => r,
            Err(e) => {
                return text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("{} => {}\n", self.name, error_chain(&e)),
                )
            }
        };
        let status = res.status();
        match Limited::new(res.into_body(), MAX_BODY).collect().await {
            Ok(b) if status.is_success() => text(
                StatusCode::OK,
                format!(
                    "{} => {}",
                    self.name,
                    String::from_utf8_lossy(&b.to_bytes())
                ),
            ),
            Ok(b) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "{} => {} {}",
                    self.name,
                    status.as_u16(),
                    String::from_utf8_lossy(&b.to_bytes())
                ),
            ),
            Err(e) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{} => reading the answer: {e}\n", self.name),
            ),
        }
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// An error and its causes on one line (hyper's own message is only "client error").
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

/// Serves plain HTTP on `listener` until `shutdown` resolves (an edge Route's backend).
pub async fn serve_plain(
    listener: TcpListener,
    hop: Arc<Hop>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let tcp = tokio::select! {
            got = listener.accept() => match got {
                Ok((tcp, _)) => tcp,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let hop = hop.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let hop = hop.clone();
                async move { Ok::<_, Infallible>(hop.counted(req).await) }
            });
            let _ = watcher
                .watch(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc),
                )
                .await;
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(DRAIN) => {}
    }
}

/// Serves HTTPS on `listener` until `shutdown` resolves, then lets connections in flight
/// finish (up to 10 s).
pub async fn serve(
    listener: TcpListener,
    hop: Arc<Hop>,
    live: Arc<Live>,
    provider: Arc<CryptoProvider>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<()> {
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Resolver(live.clone())));
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    // No resumption: a resumed session skips the certificate, and every new connection is
    // to see (and have checked) the certificate served now. Callers keep connections
    // alive instead.
    tls.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    tls.send_tls13_tickets = 0;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer): (_, SocketAddr) = tokio::select! {
            got = listener.accept() => match got {
                Ok(x) => x,
                Err(e) => {
                    // Out of descriptors and the like: wait, do not spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let acceptor = acceptor.clone();
        let hop = hop.clone();
        let live = live.clone();
        let watcher = graceful.watcher();
        // The version this connection's handshake will see (read before it, so a reload
        // during the handshake errs on the side of closing the connection early).
        let version = live.material().version.clone();
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let stream = match acceptor.accept(tcp).await {
                Ok(s) => {
                    hop.metrics.handshake(true);
                    s
                }
                Err(e) => {
                    hop.metrics.handshake(false);
                    tracing::debug!(%peer, error = %e, "handshake failed");
                    return;
                }
            };
            let svc = hyper::service::service_fn(move |req| {
                let hop = hop.clone();
                let live = live.clone();
                let version = version.clone();
                async move {
                    let mut res = hop.counted(req).await;
                    // A connection made with an older certificate is closed after this
                    // answer, which says so: the caller's next request makes a new
                    // handshake (and checks the new certificate). The server never closes
                    // an idle connection, which could race with a request being sent.
                    if live.material().version != version {
                        res.headers_mut().insert(
                            hyper::header::CONNECTION,
                            hyper::header::HeaderValue::from_static("close"),
                        );
                    }
                    hop.metrics.requests.inc();
                    if res.status().is_server_error() {
                        hop.metrics.failures.inc();
                    }
                    Ok::<_, Infallible>(res)
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(DRAIN) => tracing::warn!("connections still open after the drain time"),
    }
    Ok(())
}
