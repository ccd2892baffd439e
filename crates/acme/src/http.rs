//! HTTPS transport to an ACME server: hyper's client on rustls (aws-lc-rs), trusting the
//! system's roots, an issuer's `caBundle`, or nothing at all (`skipTLSVerify`), with a
//! timeout on every request and a count of every request for the metrics.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{HeaderMap, Method, StatusCode};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long one request may take, connection included.
const TIMEOUT: Duration = Duration::from_secs(30);
/// The largest response body read (a certificate chain is a few KiB).
const MAX_BODY: usize = 1 << 20;

/// Which TLS server certificates to trust.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Trust {
    /// The system's roots.
    System,
    /// These CA certificates (DER) only: an issuer's `caBundle`.
    Bundle(Vec<Vec<u8>>),
    /// Anything (`skipTLSVerify`).
    Insecure,
}

/// A response, read whole.
#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// One finished request, for the metrics: cert-manager's labels.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    pub scheme: String,
    pub host: String,
    /// The ACME action (`new-order`, `challenge`, ...), as cert-manager labels it.
    pub action: &'static str,
    pub method: &'static str,
    /// The status code, or 0 when no response came.
    pub status: u16,
    pub duration: Duration,
}

/// Where finished requests are reported.
pub type Recorder = Arc<dyn Fn(&RequestRecord) + Send + Sync>;

/// An HTTPS (or, for tests' plain endpoints, HTTP) client.
#[derive(Clone)]
pub struct Transport {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    recorder: Option<Recorder>,
}

/// Why a request got no response.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TransportError {
    #[error("{url}: {message}")]
    Failed { url: String, message: String },
    #[error("{url}: no response within {}s", TIMEOUT.as_secs())]
    Timeout { url: String },
}

fn root_store(trust: &Trust) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    match trust {
        Trust::Bundle(ders) => {
            for d in ders {
                roots
                    .add(CertificateDer::from(d.clone()))
                    .map_err(|e| format!("caBundle: {e}"))?;
            }
        }
        _ => {
            let found = rustls_native_certs::load_native_certs();
            for c in found.certs {
                let _ = roots.add(c);
            }
        }
    }
    Ok(roots)
}

impl Transport {
    pub fn new(trust: &Trust, recorder: Option<Recorder>) -> Result<Transport, String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let tls = match trust {
            Trust::Insecure => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                .with_no_client_auth(),
            _ => builder
                .with_root_certificates(root_store(trust)?)
                .with_no_client_auth(),
        };
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(TIMEOUT));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(https);
        Ok(Transport { client, recorder })
    }

    /// Sends a request and reads the whole response.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
        action: &'static str,
    ) -> Result<Response, TransportError> {
        let failed = |message: String| TransportError::Failed {
            url: url.to_string(),
            message,
        };
        let uri: hyper::Uri = url.parse().map_err(|e| failed(format!("bad URL: {e}")))?;
        let mut req = hyper::Request::builder()
            .method(method.clone())
            .uri(uri.clone())
            .header(
                "user-agent",
                concat!("certwright/", env!("CARGO_PKG_VERSION")),
            );
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| failed(e.to_string()))?;
        let start = Instant::now();
        let result = tokio::time::timeout(TIMEOUT, async {
            let rsp = self
                .client
                .request(req)
                .await
                .map_err(|e| failed(describe(&e)))?;
            let (parts, body) = rsp.into_parts();
            let body = Limited::new(body, MAX_BODY)
                .collect()
                .await
                .map_err(|e| failed(format!("reading the response: {e}")))?
                .to_bytes();
            Ok(Response {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        })
        .await
        .unwrap_or_else(|_| {
            Err(TransportError::Timeout {
                url: url.to_string(),
            })
        });
        if let Some(rec) = &self.recorder {
            rec(&RequestRecord {
                scheme: uri.scheme_str().unwrap_or_default().to_string(),
                // As Go's URL.Host, which cert-manager labels with: the port too.
                host: uri
                    .authority()
                    .map(|a| {
                        a.as_str()
                            .rsplit('@')
                            .next()
                            .unwrap_or_default()
                            .to_string()
                    })
                    .unwrap_or_default(),
                action,
                method: method_name(&method),
                status: result.as_ref().map(|r| r.status.as_u16()).unwrap_or(0),
                duration: start.elapsed(),
            });
        }
        result
    }
}

fn method_name(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        _ => "OTHER",
    }
}

/// The whole chain of causes: hyper's top error says only "client error (Connect)".
fn describe(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(c) = cur {
        let s = c.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = c.source();
    }
    parts.join(": ")
}

/// `skipTLSVerify`: accepts any server certificate, still checking handshake signatures.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
