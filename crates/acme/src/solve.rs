//! Challenge solvers: HTTP-01 tokens served from a shared table (by the local runtime's
//! listener, or by every operator replica), and DNS-01 records.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

/// The path prefix HTTP-01 validation requests use (RFC 8555, 8.3).
pub const HTTP01_PREFIX: &str = "/.well-known/acme-challenge/";

/// HTTP-01 tokens being served: token → key authorization. Cheap to clone.
#[derive(Clone, Default)]
pub struct Tokens(Arc<RwLock<HashMap<String, String>>>);

impl Tokens {
    pub fn insert(&self, token: &str, key_authorization: &str) {
        if let Ok(mut m) = self.0.write() {
            m.insert(token.to_string(), key_authorization.to_string());
        }
    }

    pub fn remove(&self, token: &str) {
        if let Ok(mut m) = self.0.write() {
            m.remove(token);
        }
    }

    pub fn get(&self, token: &str) -> Option<String> {
        self.0.read().ok()?.get(token).cloned()
    }

    pub fn len(&self) -> usize {
        self.0.read().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The response to one HTTP request: the key authorization for a known token, 404
    /// for anything else.
    pub fn answer(&self, method: &hyper::Method, path: &str) -> (StatusCode, String) {
        if method != hyper::Method::GET && method != hyper::Method::HEAD {
            return (StatusCode::METHOD_NOT_ALLOWED, String::new());
        }
        match path.strip_prefix(HTTP01_PREFIX).and_then(|t| self.get(t)) {
            Some(ka) => (StatusCode::OK, ka),
            None => (StatusCode::NOT_FOUND, String::new()),
        }
    }
}

/// Serves the tokens on `listener` until the runtime stops: every request, concurrently
/// (a CA validates from several places at once).
pub async fn serve_http01(listener: tokio::net::TcpListener, tokens: Tokens) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "HTTP-01 listener: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let tokens = tokens.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let (status, body) = tokens.answer(req.method(), req.uri().path());
                tracing::debug!(%peer, path = req.uri().path(), status = status.as_u16(), "HTTP-01 request");
                let rsp = Response::builder()
                    .status(status)
                    .header("content-type", "text/plain")
                    .body(Full::new(Bytes::from(body)));
                async move { rsp }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, svc)
                .await;
        });
    }
}

/// Binds the HTTP-01 listener (before anything is issued, so a bad address fails at
/// once).
pub fn bind_http01(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let l = std::net::TcpListener::bind(addr)?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// One DNS-01 provider, with its credentials read.
pub enum Dns01Provider {
    Rfc2136 {
        server: SocketAddr,
        tsig: Option<crate::dns::Tsig>,
    },
    Route53(crate::route53::Route53),
}

/// A DNS-01 solver of an issuer.
pub struct Dns01 {
    pub provider: Dns01Provider,
    /// cnameStrategy Follow.
    pub follow_cname: bool,
}

/// The DNS-01 solvers of an issuer, by solver index (`None` for HTTP-01 ones; `Err` when
/// its Secrets could not be read), and the nameservers DNS-01 uses.
pub struct DnsSolvers {
    pub solvers: Vec<Option<Result<Dns01, String>>>,
    pub nameservers: crate::dns::Nameservers,
    /// How long a DNS-01 record may take to be served everywhere it is checked.
    pub propagation_timeout: std::time::Duration,
    /// For Route 53's API.
    pub transport: Option<crate::http::Transport>,
}

/// Reads a Secret's key (for a solver), as text.
pub type SecretReader<'a> = &'a dyn Fn(&str, &str) -> Result<Vec<u8>, String>;

impl Dns01 {
    /// Builds a solver from its spec, reading its Secrets through `read(name, key)`.
    pub fn build(
        spec: &certwright_api::acme::Dns01Solver,
        read: SecretReader<'_>,
    ) -> Result<Dns01, String> {
        let provider = if let Some(r) = &spec.rfc2136 {
            let server =
                certwright_api::acme::parse_nameserver(&r.nameserver).ok_or_else(|| {
                    format!("rfc2136.nameserver {:?} is not an address", r.nameserver)
                })?;
            let tsig = match r.tsig_key_name.as_deref().filter(|k| !k.is_empty()) {
                None => None,
                Some(name) => {
                    let sel = r
                        .tsig_secret_secret_ref
                        .as_ref()
                        .ok_or("rfc2136.tsigSecretSecretRef: required with tsigKeyName")?;
                    let raw = read(&sel.name, sel.key.as_deref().unwrap_or(""))?;
                    use base64::Engine;
                    let secret = base64::engine::general_purpose::STANDARD
                        .decode(String::from_utf8_lossy(&raw).trim())
                        .map_err(|_| {
                            format!("the TSIG secret in Secret {:?} is not base64", sel.name)
                        })?;
                    let algorithm = certwright_api::acme::TsigAlgorithm::parse(
                        r.tsig_algorithm.as_deref().unwrap_or(""),
                    )
                    .ok_or("rfc2136.tsigAlgorithm: unknown algorithm")?;
                    Some(crate::dns::Tsig {
                        name: name.to_string(),
                        algorithm,
                        secret,
                    })
                }
            };
            Dns01Provider::Rfc2136 { server, tsig }
        } else if let Some(r) = &spec.route53 {
            let text = |raw: Vec<u8>| String::from_utf8_lossy(&raw).trim().to_string();
            let access_key_id = match (&r.access_key_id, &r.access_key_id_secret_ref) {
                (Some(id), _) => id.trim().to_string(),
                (None, Some(sel)) => text(read(&sel.name, sel.key.as_deref().unwrap_or(""))?),
                (None, None) => {
                    return Err("route53: accessKeyID or accessKeyIDSecretRef is required".into())
                }
            };
            let sel = r
                .secret_access_key_secret_ref
                .as_ref()
                .ok_or("route53.secretAccessKeySecretRef: required")?;
            let secret_access_key = text(read(&sel.name, sel.key.as_deref().unwrap_or(""))?);
            Dns01Provider::Route53(crate::route53::Route53 {
                endpoint: crate::route53::endpoint_from_env(),
                region: r
                    .region
                    .clone()
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "us-east-1".into()),
                hosted_zone_id: r.hosted_zone_id.clone(),
                credentials: crate::route53::AwsCredentials {
                    access_key_id,
                    secret_access_key,
                },
            })
        } else {
            return Err("this DNS-01 provider is not supported by certwright".into());
        };
        Ok(Dns01 {
            provider,
            follow_cname: spec.cname_strategy.as_deref() == Some("Follow"),
        })
    }

    /// Writes `value` at `name` (a TXT record).
    pub async fn present(&self, env: &DnsSolvers, name: &str, value: &str) -> Result<(), String> {
        self.change(env, name, value, true).await
    }

    /// Removes `value` at `name`.
    pub async fn cleanup(&self, env: &DnsSolvers, name: &str, value: &str) -> Result<(), String> {
        self.change(env, name, value, false).await
    }

    async fn change(
        &self,
        env: &DnsSolvers,
        name: &str,
        value: &str,
        add: bool,
    ) -> Result<(), String> {
        let fq = crate::dns::fqdn(name).map_err(|e| e.to_string())?;
        match &self.provider {
            Dns01Provider::Rfc2136 { server, tsig } => {
                let zone = crate::dns::find_zone(&env.nameservers, &fq)
                    .await
                    .map_err(|e| format!("finding the zone of {name}: {e}"))?;
                crate::dns::update_txt(*server, &zone, &fq, value, add, tsig.as_ref())
                    .await
                    .map_err(|e| format!("RFC 2136 update: {e}"))
            }
            Dns01Provider::Route53(r) => {
                let t = env
                    .transport
                    .as_ref()
                    .ok_or("no HTTPS transport for Route 53")?;
                // The DNS zone names the hosted zone, unless the spec gives its id.
                let dns_zone = match r.hosted_zone_id.as_deref().filter(|z| !z.is_empty()) {
                    Some(_) => None,
                    None => crate::dns::find_zone(&env.nameservers, &fq).await.ok(),
                };
                let zone = r
                    .zone_for(t, name, dns_zone.as_ref().map(|z| z.to_string()).as_deref())
                    .await
                    .map_err(|e| e.to_string())?;
                let fq = fq.to_string();
                let result = if add {
                    r.add(t, &zone, &fq, value).await
                } else {
                    r.remove(t, &zone, &fq, value).await
                };
                result.map_err(|e| e.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_known_tokens_only() {
        let t = Tokens::default();
        t.insert("abc", "abc.thumb");
        let get = hyper::Method::GET;
        assert_eq!(
            t.answer(&get, "/.well-known/acme-challenge/abc"),
            (StatusCode::OK, "abc.thumb".into())
        );
        assert_eq!(
            t.answer(&get, "/.well-known/acme-challenge/abd").0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(t.answer(&get, "/abc").0, StatusCode::NOT_FOUND);
        assert_eq!(
            t.answer(&hyper::Method::POST, "/.well-known/acme-challenge/abc")
                .0,
            StatusCode::METHOD_NOT_ALLOWED
        );
        t.remove("abc");
        assert_eq!(
            t.answer(&get, "/.well-known/acme-challenge/abc").0,
            StatusCode::NOT_FOUND
        );
    }
}
