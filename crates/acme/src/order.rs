//! One order, from creation to the certificate (RFC 8555, 7.4): pick a solver per
//! authorization, present, self-check, tell the server to validate, poll, finalize with
//! the request's own CSR, download (the preferred chain when asked), clean up.
//!
//! The order's progress is kept in an [`OrderRecord`] reported after every change, so a
//! run that stops (a restart, a Retry-After too long to sleep through) resumes where it
//! was. Polls start short and grow; a server's Retry-After is honoured, slept through
//! when short, otherwise handed back as a retry time.

use crate::client::{AcmeError, Client, Identifier, Problem, Signer};
use crate::record::{ChallengeRecord, OrderRecord, OrderState};
use crate::solve::Tokens;
use certwright_api::acme::{pick_solver, AcmeIssuer, ChallengeKind};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The longest Retry-After slept through inside a run; a longer one ends the run.
const MAX_SLEEP: Duration = Duration::from_secs(30);
/// The first poll delay, and the largest it grows to.
const FIRST_POLL: Duration = Duration::from_millis(250);
const MAX_POLL: Duration = Duration::from_secs(5);
/// How long one run polls an order before handing back (the order is resumed later).
const RUN_LIMIT: Duration = Duration::from_secs(10 * 60);
/// Transient failures in a row after which the request fails (and the Certificate
/// backs off).
const MAX_TRANSIENT: u32 = 6;

/// How a run ended.
#[derive(Debug)]
pub enum End {
    /// The certificate chain, leaf first (DER).
    Issued(Vec<Vec<u8>>),
    /// The request failed: the Certificate backs off before a new order.
    Failed { reason: String, message: String },
    /// Not done: resume after `after` with the record.
    Retry { after: Duration },
}

/// What a run needs.
pub struct OrderJob {
    pub client: Arc<Client>,
    pub signer: Signer,
    pub issuer: Arc<AcmeIssuer>,
    pub csr_der: Vec<u8>,
    pub identifiers: Vec<Identifier>,
    /// The Certificate's labels, for solver selectors.
    pub labels: BTreeMap<String, String>,
    pub tokens: Tokens,
    pub thumbprint: String,
    /// Called with the record after every change.
    pub progress: Arc<dyn Fn(&OrderRecord) + Send + Sync>,
    /// Unix seconds now, from the shell's clock (for `not_before`).
    pub now: fn() -> i64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OrderBody {
    status: String,
    #[serde(default)]
    authorizations: Vec<String>,
    #[serde(default)]
    finalize: String,
    #[serde(default)]
    certificate: Option<String>,
    #[serde(default)]
    error: Option<Problem>,
}

#[derive(Debug, Deserialize)]
struct AuthzBody {
    status: String,
    identifier: Identifier,
    #[serde(default)]
    wildcard: bool,
    #[serde(default)]
    challenges: Vec<ChallengeBody>,
}

#[derive(Debug, Deserialize)]
struct ChallengeBody {
    #[serde(rename = "type")]
    type_: String,
    url: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    error: Option<Problem>,
}

/// Why a run stopped early.
enum Stop {
    Acme(Box<AcmeError>),
    Failed(String, String),
    Retry(Duration),
}

impl From<AcmeError> for Stop {
    fn from(e: AcmeError) -> Stop {
        Stop::Acme(Box::new(e))
    }
}

struct Poll {
    delay: Duration,
    started: Instant,
}

impl Poll {
    fn new() -> Poll {
        Poll {
            delay: FIRST_POLL,
            started: Instant::now(),
        }
    }

    /// Waits before the next poll: the server's Retry-After if it sent one, else a delay
    /// that grows by half each time.
    async fn wait(&mut self, retry_after: Option<Duration>) -> Result<(), Stop> {
        if self.started.elapsed() > RUN_LIMIT {
            return Err(Stop::Retry(Duration::from_secs(60)));
        }
        let d = match retry_after {
            Some(r) if r > MAX_SLEEP => return Err(Stop::Retry(r)),
            Some(r) => r.max(FIRST_POLL),
            None => {
                let d = self.delay;
                self.delay = (self.delay * 3 / 2).min(MAX_POLL);
                d
            }
        };
        tokio::time::sleep(d).await;
        Ok(())
    }
}

fn retry_after_of(rsp: &crate::http::Response) -> Option<Duration> {
    rsp.header("retry-after")?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

impl OrderJob {
    fn report(&self, rec: &mut OrderRecord) {
        rec.requests = self
            .client
            .requests
            .load(std::sync::atomic::Ordering::Relaxed);
        (self.progress)(rec);
    }

    /// Runs the order from `rec` as far as it goes.
    pub async fn run(&self, rec: &mut OrderRecord) -> End {
        let result = self.drive(rec).await;
        self.cleanup(rec);
        match result {
            Ok(chain) => {
                rec.transient_failures = 0;
                rec.reason.clear();
                self.report(rec);
                End::Issued(chain)
            }
            Err(Stop::Failed(reason, message)) => {
                rec.reason = message.clone();
                self.report(rec);
                End::Failed { reason, message }
            }
            Err(Stop::Retry(after)) => {
                rec.not_before = (self.now)() + after.as_secs() as i64;
                self.report(rec);
                End::Retry { after }
            }
            Err(Stop::Acme(e)) if e.is_transient() && rec.transient_failures < MAX_TRANSIENT => {
                rec.transient_failures += 1;
                let backoff = Duration::from_secs(15 << rec.transient_failures.min(6));
                let after = e.retry_after().unwrap_or(backoff);
                rec.reason = format!(
                    "the ACME server is unavailable ({e}); trying again in {}s",
                    after.as_secs()
                );
                rec.not_before = (self.now)() + after.as_secs() as i64;
                self.report(rec);
                End::Retry { after }
            }
            Err(Stop::Acme(e)) => {
                let message = e.to_string();
                rec.reason = message.clone();
                self.report(rec);
                End::Failed {
                    reason: "Failed".into(),
                    message,
                }
            }
        }
    }

    async fn drive(&self, rec: &mut OrderRecord) -> Result<Vec<Vec<u8>>, Stop> {
        let mut poll = Poll::new();
        if rec.url.is_some() {
            self.refresh(rec).await?;
        }
        loop {
            match rec.state {
                OrderState::New => self.new_order(rec).await?,
                OrderState::Pending => {
                    self.authorize(rec).await?;
                    let ra = self.refresh(rec).await?;
                    if rec.state == OrderState::Pending {
                        poll.wait(ra).await?;
                    }
                }
                OrderState::Ready => self.finalize(rec).await?,
                OrderState::Processing => {
                    let ra = self.refresh(rec).await?;
                    if rec.state == OrderState::Processing {
                        poll.wait(ra).await?;
                    }
                }
                OrderState::Valid => return self.download(rec).await,
                OrderState::Invalid | OrderState::Expired | OrderState::Errored => {
                    let why = if rec.reason.is_empty() {
                        "no reason given".to_string()
                    } else {
                        rec.reason.clone()
                    };
                    return Err(Stop::Failed(
                        "Failed".into(),
                        format!("the ACME order is {}: {why}", rec.state.as_str()),
                    ));
                }
            }
        }
    }

    async fn new_order(&self, rec: &mut OrderRecord) -> Result<(), Stop> {
        let mut payload = serde_json::json!({ "identifiers": self.identifiers });
        if let Some(p) = self.issuer.profile.as_deref().filter(|p| !p.is_empty()) {
            payload["profile"] = serde_json::Value::String(p.to_string());
        }
        let url = self.client.directory.new_order.clone();
        let (body, rsp): (OrderBody, _) = self
            .client
            .post_json(&self.signer, &url, Some(&payload))
            .await?;
        let Some(loc) = rsp.header("location") else {
            return Err(AcmeError::Protocol {
                url,
                message: "new order without a Location".into(),
            }
            .into());
        };
        *rec = OrderRecord {
            account: rec.account.clone(),
            url: Some(loc.to_string()),
            created: rec.created,
            ..Default::default()
        };
        self.apply(rec, &body);
        tracing::info!(order = loc, "ACME order created");
        self.report(rec);
        Ok(())
    }

    fn apply(&self, rec: &mut OrderRecord, body: &OrderBody) {
        rec.state = OrderState::parse(&body.status);
        if !body.finalize.is_empty() {
            rec.finalize_url = body.finalize.clone();
        }
        rec.certificate_url = body.certificate.clone();
        if let Some(p) = &body.error {
            rec.reason = p.to_string();
        }
        for a in &body.authorizations {
            if !rec.challenges.iter().any(|c| &c.authorization_url == a) {
                rec.challenges.push(ChallengeRecord {
                    authorization_url: a.clone(),
                    state: "pending".into(),
                    ..Default::default()
                });
            }
        }
    }

    /// Reads the order again; an order the server no longer knows starts over.
    async fn refresh(&self, rec: &mut OrderRecord) -> Result<Option<Duration>, Stop> {
        let Some(url) = rec.url.clone() else {
            return Ok(None);
        };
        match self
            .client
            .post_json::<OrderBody>(&self.signer, &url, None)
            .await
        {
            Ok((body, rsp)) => {
                let before = (rec.state, rec.reason.clone());
                self.apply(rec, &body);
                if before != (rec.state, rec.reason.clone()) {
                    self.report(rec);
                }
                Ok(retry_after_of(&rsp))
            }
            Err(AcmeError::Problem { status: 404, .. })
            | Err(AcmeError::Problem { status: 403, .. })
                if rec.state != OrderState::Valid =>
            {
                tracing::info!(
                    order = url,
                    "the ACME server no longer knows the order: a new one"
                );
                *rec = OrderRecord {
                    account: rec.account.clone(),
                    created: rec.created,
                    ..Default::default()
                };
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Brings every authorization forward: solved, presented, accepted; polls while one
    /// is still pending.
    async fn authorize(&self, rec: &mut OrderRecord) -> Result<(), Stop> {
        let mut poll = Poll::new();
        loop {
            let mut waiting = false;
            for i in 0..rec.challenges.len() {
                let url = rec.challenges[i].authorization_url.clone();
                let (body, rsp): (AuthzBody, _) =
                    self.client.post_json(&self.signer, &url, None).await?;
                let ra = retry_after_of(&rsp);
                match body.status.as_str() {
                    "valid" => {
                        let c = &mut rec.challenges[i];
                        if c.state != "valid" {
                            c.state = "valid".into();
                            c.reason.clear();
                            self.report(rec);
                        }
                    }
                    "pending" => {
                        self.advance(rec, i, &body).await?;
                        waiting = true;
                        if ra.is_some() {
                            poll.wait(ra).await?;
                        }
                    }
                    other => {
                        let (reason, msg) = authz_failure(&body, other);
                        let c = &mut rec.challenges[i];
                        c.state = "invalid".into();
                        c.reason = msg.clone();
                        self.report(rec);
                        return Err(Stop::Failed(reason, msg));
                    }
                }
            }
            if !waiting {
                return Ok(());
            }
            poll.wait(None).await?;
        }
    }

    /// One pending authorization: pick the challenge, present it, accept it once.
    async fn advance(&self, rec: &mut OrderRecord, i: usize, body: &AuthzBody) -> Result<(), Stop> {
        let name = if body.wildcard {
            format!("*.{}", body.identifier.value)
        } else {
            body.identifier.value.clone()
        };
        if rec.challenges[i].url.is_empty() {
            let offered: Vec<ChallengeKind> = body
                .challenges
                .iter()
                .filter_map(|c| match c.type_.as_str() {
                    "http-01" => Some(ChallengeKind::Http01),
                    "dns-01" => Some(ChallengeKind::Dns01),
                    _ => None,
                })
                .collect();
            let Some((solver, kind)) =
                pick_solver(&self.issuer.solvers, &name, &offered, &self.labels)
            else {
                let msg = format!(
                    "no configured challenge solver can be used for {name:?} (the server offers {})",
                    body.challenges.iter().map(|c| c.type_.as_str()).collect::<Vec<_>>().join(", ")
                );
                rec.challenges[i].reason = msg.clone();
                return Err(Stop::Failed("NoMatchingSolver".into(), msg));
            };
            let Some(ch) = body.challenges.iter().find(|c| c.type_ == kind.acme_type()) else {
                return Err(Stop::Failed(
                    "NoMatchingSolver".into(),
                    format!("{name}: no {} challenge", kind.acme_type()),
                ));
            };
            let c = &mut rec.challenges[i];
            c.dns_name = body.identifier.value.clone();
            c.wildcard = body.wildcard;
            c.kind = Some(kind);
            c.url = ch.url.clone();
            c.token = ch.token.clone();
            c.key = match kind {
                ChallengeKind::Http01 => self.key_authorization(&ch.token),
                ChallengeKind::Dns01 => String::new(),
            };
            c.solver = solver;
        }
        let chal_state = body
            .challenges
            .iter()
            .find(|c| c.url == rec.challenges[i].url)
            .map(|c| c.status.clone())
            .unwrap_or_default();
        self.present(&rec.challenges[i])?;
        let c = &mut rec.challenges[i];
        c.presented = true;
        if !c.accepted && chal_state == "pending" {
            let url = c.url.clone();
            self.client
                .post(&self.signer, &url, Some(&serde_json::json!({})))
                .await?;
            let c = &mut rec.challenges[i];
            c.accepted = true;
            c.state = "processing".into();
            c.reason = "waiting for the ACME server to validate".into();
            self.report(rec);
        } else if c.state != chal_state && !chal_state.is_empty() {
            c.state = chal_state;
            self.report(rec);
        }
        Ok(())
    }

    fn key_authorization(&self, token: &str) -> String {
        format!("{token}.{}", self.thumbprint)
    }

    fn present(&self, c: &ChallengeRecord) -> Result<(), Stop> {
        match c.kind {
            Some(ChallengeKind::Http01) => {
                self.tokens
                    .insert(&c.token, &self.key_authorization(&c.token));
                Ok(())
            }
            Some(ChallengeKind::Dns01) => Err(Stop::Failed(
                "NotSupported".into(),
                "DNS-01 solving is not in this build yet".into(),
            )),
            None => Ok(()),
        }
    }

    fn cleanup(&self, rec: &OrderRecord) {
        for c in &rec.challenges {
            if c.presented && c.kind == Some(ChallengeKind::Http01) {
                self.tokens.remove(&c.token);
            }
        }
    }

    async fn finalize(&self, rec: &mut OrderRecord) -> Result<(), Stop> {
        use base64::Engine;
        let csr = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&self.csr_der);
        let url = rec.finalize_url.clone();
        match self
            .client
            .post_json::<OrderBody>(&self.signer, &url, Some(&serde_json::json!({ "csr": csr })))
            .await
        {
            Ok((body, _)) => {
                self.apply(rec, &body);
                self.report(rec);
                Ok(())
            }
            // Finalized already (by a run that stopped before it could record it).
            Err(AcmeError::Problem { problem, .. }) if problem.kind() == "orderNotReady" => {
                self.refresh(rec).await.map(|_| ())
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn download(&self, rec: &mut OrderRecord) -> Result<Vec<Vec<u8>>, Stop> {
        let Some(url) = rec.certificate_url.clone() else {
            return Err(Stop::Failed(
                "Failed".into(),
                "the ACME order is valid but names no certificate".into(),
            ));
        };
        let rsp = self.client.post(&self.signer, &url, None).await?;
        let mut chain =
            parse_chain(&rsp.body).map_err(|m| Stop::Failed("InvalidCertificate".into(), m))?;
        if let Some(want) = self
            .issuer
            .preferred_chain
            .as_deref()
            .filter(|s| !s.is_empty())
        {
            if !chain_matches(&chain, want) {
                for alt in alternates(&rsp) {
                    let r = self.client.post(&self.signer, &alt, None).await?;
                    if let Ok(c) = parse_chain(&r.body) {
                        if chain_matches(&c, want) {
                            chain = c;
                            break;
                        }
                    }
                }
            }
        }
        Ok(chain)
    }
}

fn authz_failure(body: &AuthzBody, status: &str) -> (String, String) {
    let detail = body
        .challenges
        .iter()
        .find_map(|c| c.error.as_ref())
        .map(|p| p.to_string())
        .unwrap_or_else(|| "no error given".into());
    (
        "Failed".into(),
        format!(
            "authorization for {:?} is {status}: {detail}",
            body.identifier.value
        ),
    )
}

fn parse_chain(pem: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let chain = certwright_pki::inspect::pem_certificates(pem)
        .map_err(|e| format!("certificate chain: {e}"))?;
    if chain.is_empty() {
        return Err("the ACME server returned no certificate".into());
    }
    Ok(chain)
}

/// Whether a chain holds a certificate above the leaf whose subject or issuer Common
/// Name is `cn` (cert-manager's preferredChain rule).
fn chain_matches(chain: &[Vec<u8>], cn: &str) -> bool {
    chain.iter().skip(1).any(|d| {
        certwright_pki::CertInfo::parse(d)
            .map(|i| {
                i.common_name.as_deref() == Some(cn)
                    || i.issuer.split(',').any(|p| p.trim() == format!("CN={cn}"))
            })
            .unwrap_or(false)
    })
}

/// The `Link: <url>;rel="alternate"` URLs of a certificate response.
fn alternates(rsp: &crate::http::Response) -> Vec<String> {
    rsp.headers
        .get_all("link")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter(|l| l.contains("rel=\"alternate\""))
        .filter_map(|l| {
            let s = l.trim();
            let s = s.strip_prefix('<')?;
            Some(s[..s.find('>')?].to_string())
        })
        .collect()
}
