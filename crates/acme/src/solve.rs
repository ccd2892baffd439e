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
