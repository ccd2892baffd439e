//! The ACME protocol (RFC 8555) over [`Transport`]: the directory, nonces, JWS-signed
//! requests, problem documents and `Retry-After`.
//!
//! Politeness lives here: a `badNonce` is retried at once with the fresh nonce the error
//! carried (up to [`NONCE_RETRIES`] times); every other problem, and every 5xx, goes back
//! to the caller with the server's `Retry-After`, so that the order's backoff honours it.

use crate::http::{Response, Transport, TransportError};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use certwright_pki::{jose, PrivateKey};
use hyper::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// How many times a request rejected for its nonce is sent again at once; past that the
/// error is transient (the order goes on a second later).
pub const NONCE_RETRIES: u32 = 10;

/// An RFC 7807 problem document, as ACME servers send them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    #[serde(default, rename = "type")]
    pub type_: String,
    #[serde(default)]
    pub detail: String,
    #[serde(default)]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subproblems: Vec<Subproblem>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subproblem {
    #[serde(default, rename = "type")]
    pub type_: String,
    #[serde(default)]
    pub detail: String,
    #[serde(default)]
    pub identifier: Option<Identifier>,
}

impl Problem {
    /// The problem's short type: `rateLimited` for `urn:ietf:params:acme:error:rateLimited`.
    pub fn kind(&self) -> &str {
        self.type_
            .strip_prefix("urn:ietf:params:acme:error:")
            .unwrap_or(&self.type_)
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind(), self.detail)?;
        for s in &self.subproblems {
            match &s.identifier {
                Some(i) => write!(
                    f,
                    "; {}: {}: {}",
                    i.value,
                    s.type_.rsplit(':').next().unwrap_or_default(),
                    s.detail
                )?,
                None => write!(f, "; {}", s.detail)?,
            }
        }
        Ok(())
    }
}

/// Why an ACME request failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AcmeError {
    #[error("{0}")]
    Transport(#[from] TransportError),
    /// The server answered with a problem (or a bare error status).
    #[error("{url}: {status}: {problem}")]
    Problem {
        url: String,
        status: u16,
        problem: Problem,
        retry_after: Option<Duration>,
    },
    /// The server's answer is not what RFC 8555 says it should be.
    #[error("{url}: {message}")]
    Protocol { url: String, message: String },
}

impl AcmeError {
    /// The server asked to wait (`Retry-After`), if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            AcmeError::Problem { retry_after, .. } if retry_after.is_some() => *retry_after,
            AcmeError::Problem { problem, .. } if problem.kind() == "badNonce" => {
                Some(Duration::from_secs(1))
            }
            _ => None,
        }
    }

    /// The problem type (`rateLimited`, `unauthorized`, ...), for a problem.
    pub fn problem_kind(&self) -> Option<&str> {
        match self {
            AcmeError::Problem { problem, .. } => Some(problem.kind()),
            _ => None,
        }
    }

    /// Whether trying again later may succeed without anything changing: no response,
    /// a 5xx, `rateLimited`, `serverInternal`.
    pub fn is_transient(&self) -> bool {
        match self {
            AcmeError::Transport(_) => true,
            AcmeError::Problem {
                status, problem, ..
            } => {
                *status >= 500
                    || matches!(
                        problem.kind(),
                        "rateLimited" | "serverInternal" | "badNonce"
                    )
            }
            AcmeError::Protocol { .. } => false,
        }
    }
}

/// An identifier (RFC 8555, 9.7.7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identifier {
    #[serde(rename = "type")]
    pub type_: String,
    pub value: String,
}

/// The directory's `meta`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Meta {
    #[serde(default)]
    pub external_account_required: bool,
    #[serde(default)]
    pub profiles: serde_json::Map<String, serde_json::Value>,
    /// The names the CA recognises as its own in CAA records.
    #[serde(default)]
    pub caa_identities: Vec<String>,
}

/// The directory (RFC 8555, 7.1.1), with ARI's `renewalInfo`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Directory {
    pub new_nonce: String,
    pub new_account: String,
    pub new_order: String,
    #[serde(default)]
    pub renewal_info: Option<String>,
    #[serde(default)]
    pub meta: Meta,
}

/// How requests are signed: with the account's URL once it has one (`kid`), with its
/// public key before (`jwk`).
#[derive(Clone)]
pub struct Signer {
    pub key: Arc<PrivateKey>,
    pub kid: Option<String>,
    /// Counts the requests made with this signer (an order's own count).
    pub tally: Option<Arc<AtomicU32>>,
}

impl Signer {
    fn count(&self) {
        if let Some(t) = &self.tally {
            t.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A connection to one ACME server.
pub struct Client {
    pub transport: Transport,
    pub directory_url: String,
    pub directory: Directory,
    nonces: Mutex<Vec<String>>,
    /// Requests sent, for the figures the chaos test and the benchmark report.
    pub requests: AtomicU32,
}

fn retry_after(r: &Response) -> Option<Duration> {
    let v = r.header("retry-after")?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs.min(7 * 24 * 3600)));
    }
    let at = httpdate(v)?;
    Some(at.duration_since(SystemTime::now()).unwrap_or_default())
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the `Retry-After` date form.
fn httpdate(s: &str) -> Option<SystemTime> {
    let fmt = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let t = time::PrimitiveDateTime::parse(s, fmt).ok()?.assume_utc();
    let secs = u64::try_from(t.unix_timestamp()).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

fn action_of(url: &str, d: &Directory) -> &'static str {
    // Servers name their paths freely (Pebble: /authZ/, /chalZ/, /my-order/): the
    // directory's URLs first, then the usual words in the path, case aside.
    let path = url.to_ascii_lowercase();
    if url == d.new_nonce {
        "new-nonce"
    } else if url == d.new_account {
        "new-account"
    } else if url == d.new_order {
        "new-order"
    } else if path.contains("/chal") {
        "challenge"
    } else if path.contains("/authz") {
        "authorization"
    } else if path.contains("finalize") {
        "finalize"
    } else if path.contains("/cert") {
        "certificate"
    } else if path.contains("order") {
        "order"
    } else if path.contains("acct") || path.contains("account") {
        "account"
    } else if path.contains("renewal") {
        "renewal-info"
    } else {
        "other"
    }
}

impl Client {
    /// Reads the directory.
    pub async fn connect(transport: Transport, directory_url: &str) -> Result<Client, AcmeError> {
        let rsp = transport
            .send(Method::GET, directory_url, &[], None, "directory")
            .await?;
        if !rsp.status.is_success() {
            return Err(problem(directory_url, &rsp));
        }
        let directory: Directory =
            serde_json::from_slice(&rsp.body).map_err(|e| AcmeError::Protocol {
                url: directory_url.into(),
                message: format!("not an ACME directory: {e}"),
            })?;
        Ok(Client {
            transport,
            directory_url: directory_url.into(),
            directory,
            nonces: Mutex::new(Vec::new()),
            requests: AtomicU32::new(0),
        })
    }

    fn keep_nonce(&self, r: &Response) {
        if let Some(n) = r.header("replay-nonce") {
            if let Ok(mut v) = self.nonces.lock() {
                v.push(n.to_string());
                let len = v.len();
                if len > 32 {
                    v.drain(..len - 32);
                }
            }
        }
    }

    async fn nonce(&self, signer: &Signer) -> Result<String, AcmeError> {
        if let Some(n) = self.nonces.lock().ok().and_then(|mut v| v.pop()) {
            return Ok(n);
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        signer.count();
        let url = &self.directory.new_nonce;
        let rsp = self
            .transport
            .send(Method::HEAD, url, &[], None, "new-nonce")
            .await?;
        match rsp.header("replay-nonce") {
            Some(n) if rsp.status.is_success() => Ok(n.to_string()),
            _ => Err(problem(url, &rsp)),
        }
    }

    /// A JWS-signed POST (`payload` None: POST-as-GET). A `badNonce` is sent again at once
    /// with a fresh nonce; any other error status is an [`AcmeError::Problem`].
    pub async fn post(
        &self,
        signer: &Signer,
        url: &str,
        payload: Option<&serde_json::Value>,
    ) -> Result<Response, AcmeError> {
        let body = match payload {
            Some(p) => URL_SAFE_NO_PAD.encode(serde_json::to_vec(p).unwrap_or_default()),
            None => String::new(),
        };
        let action = action_of(url, &self.directory);
        let mut attempt = 0;
        loop {
            let nonce = self.nonce(signer).await?;
            let jws = sign(signer, url, &nonce, &body).map_err(|message| AcmeError::Protocol {
                url: url.into(),
                message,
            })?;
            self.requests.fetch_add(1, Ordering::Relaxed);
            signer.count();
            let rsp = self
                .transport
                .send(
                    Method::POST,
                    url,
                    &[("content-type", "application/jose+json")],
                    Some(jws.into_bytes()),
                    action,
                )
                .await?;
            self.keep_nonce(&rsp);
            if rsp.status.is_success() {
                return Ok(rsp);
            }
            let err = problem(url, &rsp);
            if err.problem_kind() == Some("badNonce") && attempt < NONCE_RETRIES {
                attempt += 1;
                tracing::debug!(url, attempt, "badNonce: sending again with a fresh nonce");
                continue;
            }
            return Err(err);
        }
    }

    /// POST and read a JSON object.
    pub async fn post_json<T: serde::de::DeserializeOwned>(
        &self,
        signer: &Signer,
        url: &str,
        payload: Option<&serde_json::Value>,
    ) -> Result<(T, Response), AcmeError> {
        let rsp = self.post(signer, url, payload).await?;
        let v = serde_json::from_slice(&rsp.body).map_err(|e| AcmeError::Protocol {
            url: url.into(),
            message: format!("unexpected response: {e}"),
        })?;
        Ok((v, rsp))
    }
}

fn problem(url: &str, rsp: &Response) -> AcmeError {
    let problem = serde_json::from_slice::<Problem>(&rsp.body)
        .ok()
        .filter(|p| !p.type_.is_empty() || !p.detail.is_empty())
        .unwrap_or_else(|| Problem {
            type_: if rsp.status.is_server_error() {
                "urn:ietf:params:acme:error:serverInternal".into()
            } else {
                String::new()
            },
            detail: format!(
                "HTTP {}{}",
                rsp.status.as_u16(),
                rsp.status
                    .canonical_reason()
                    .map(|r| format!(" {r}"))
                    .unwrap_or_default()
            ),
            ..Default::default()
        });
    AcmeError::Problem {
        url: url.into(),
        status: if rsp.status == StatusCode::OK {
            0
        } else {
            rsp.status.as_u16()
        },
        problem,
        retry_after: retry_after(rsp),
    }
}

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

/// A flattened JWS (RFC 7515, 7.2.2) as ACME wants it.
fn sign(signer: &Signer, url: &str, nonce: &str, payload_b64: &str) -> Result<String, String> {
    let alg = jose::algorithm(&signer.key);
    let protected = match &signer.kid {
        Some(kid) => serde_json::json!({"alg": alg, "kid": kid, "nonce": nonce, "url": url}),
        None => {
            let jwk: serde_json::Value =
                serde_json::from_str(&jose::jwk(&signer.key).map_err(|e| e.to_string())?)
                    .map_err(|e| e.to_string())?;
            serde_json::json!({"alg": alg, "jwk": jwk, "nonce": nonce, "url": url})
        }
    };
    let protected = b64(protected.to_string().as_bytes());
    let input = format!("{protected}.{payload_b64}");
    let sig = jose::sign(&signer.key, input.as_bytes()).map_err(|e| e.to_string())?;
    Ok(
        serde_json::json!({"protected": protected, "payload": payload_b64, "signature": b64(&sig)})
            .to_string(),
    )
}

/// The external account binding JWS (RFC 8555, 7.3.4): the account's JWK signed with
/// the CA's HMAC key.
pub fn external_account_binding(
    key: &PrivateKey,
    key_id: &str,
    hmac_key: &[u8],
    alg: &str,
    url: &str,
) -> Result<serde_json::Value, String> {
    let jwk = jose::jwk(key).map_err(|e| e.to_string())?;
    let protected = b64(serde_json::json!({"alg": alg, "kid": key_id, "url": url})
        .to_string()
        .as_bytes());
    let payload = b64(jwk.as_bytes());
    let input = format!("{protected}.{payload}");
    let sig = jose::hmac(alg, hmac_key, input.as_bytes())
        .ok_or_else(|| format!("unsupported external account binding algorithm {alg:?}"))?;
    Ok(serde_json::json!({"protected": protected, "payload": payload, "signature": b64(&sig)}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_both_forms() {
        let mut r = Response {
            status: StatusCode::TOO_MANY_REQUESTS,
            headers: Default::default(),
            body: Default::default(),
        };
        r.headers
            .insert("retry-after", "120".parse().expect("header"));
        assert_eq!(retry_after(&r), Some(Duration::from_secs(120)));
        r.headers.insert(
            "retry-after",
            "Sun, 06 Nov 1994 08:49:37 GMT".parse().expect("header"),
        );
        assert_eq!(retry_after(&r), Some(Duration::ZERO));
        assert!(httpdate("Sun, 06 Nov 1994 08:49:37 GMT").is_some());
        assert!(httpdate("yesterday").is_none());
    }

    #[test]
    fn problems_are_read_and_classified() {
        let mut r = Response {
            status: StatusCode::TOO_MANY_REQUESTS,
            headers: Default::default(),
            body: Bytes::from_static(
                br#"{"type":"urn:ietf:params:acme:error:rateLimited","detail":"too many new orders"}"#,
            ),
        };
        r.headers
            .insert("retry-after", "30".parse().expect("header"));
        let e = problem("https://ca/new-order", &r);
        assert_eq!(e.problem_kind(), Some("rateLimited"));
        assert!(e.is_transient());
        assert_eq!(e.retry_after(), Some(Duration::from_secs(30)));
        assert_eq!(
            e.to_string(),
            "https://ca/new-order: 429: rateLimited: too many new orders"
        );
        let r = Response {
            status: StatusCode::BAD_GATEWAY,
            headers: Default::default(),
            body: Bytes::from_static(b"<html>"),
        };
        let e = problem("https://ca/dir", &r);
        assert!(e.is_transient());
        assert_eq!(e.problem_kind(), Some("serverInternal"));
        let r = Response {
            status: StatusCode::FORBIDDEN,
            headers: Default::default(),
            body: Bytes::from_static(
                br#"{"type":"urn:ietf:params:acme:error:unauthorized","detail":"no"}"#,
            ),
        };
        assert!(!problem("u", &r).is_transient());
    }

    use bytes::Bytes;
}
