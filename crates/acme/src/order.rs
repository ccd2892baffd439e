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
/// Transient failures of one request after which it fails (and the Certificate backs
/// off).
const MAX_TRANSIENT: u32 = 6;

/// The DNS-01 TXT value for a key authorization: base64url(SHA-256).
pub fn dns01_value(key_authorization: &str) -> String {
    use base64::Engine;
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key_authorization.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d.as_ref())
}

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
    /// Whether a token is served by every replica (operator), waited for before the
    /// CA is told to validate.
    pub http01_published: Option<crate::service::Http01Published>,
    /// DNS-01 solvers and the nameservers to check propagation with.
    pub dns: Arc<crate::solve::DnsSolvers>,
    /// The certificate id this order replaces (RFC 9773), sent with a new order.
    pub replaces: Option<String>,
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
    /// The certificate id the order replaces, as the server reflects it (RFC 9773).
    #[serde(default)]
    replaces: Option<String>,
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

/// How long a token may take to be served by every replica before the run stops (and
/// is resumed later).
const PUBLISH_LIMIT: Duration = Duration::from_secs(120);

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
        if let Some(t) = &self.signer.tally {
            rec.requests = t.load(std::sync::atomic::Ordering::Relaxed);
        }
        (self.progress)(rec);
    }

    /// Runs the order from `rec` as far as it goes.
    pub async fn run(&self, rec: &mut OrderRecord) -> End {
        let result = self.drive(rec).await;
        let pauses = match &result {
            Err(Stop::Retry(_)) => true,
            Err(Stop::Acme(e)) => e.is_transient() && rec.transient_failures < MAX_TRANSIENT,
            _ => false,
        };
        // What was presented stays while the order only pauses (the server may be
        // validating it); it goes when the order ends.
        if !pauses {
            self.cleanup(rec).await;
        }
        match result {
            Ok(chain) => {
                rec.transient_failures = 0;
                rec.reason.clear();
                self.report(rec);
                tracing::info!(
                    order = rec.url.as_deref().unwrap_or(""),
                    requests = rec.requests,
                    "ACME order valid: certificate downloaded"
                );
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
            Err(Stop::Acme(e)) if pauses => {
                rec.transient_failures += 1;
                let backoff = Duration::from_secs(15 << rec.transient_failures.min(6));
                let after = e.retry_after().unwrap_or(backoff);
                let what = match e.problem_kind() {
                    Some("rateLimited") => "rate limited by the ACME server",
                    Some("badNonce") => "the ACME server kept refusing nonces",
                    _ => "the ACME server is unavailable",
                };
                rec.reason = format!("{what} ({e}); trying again in {}s", after.as_secs());
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

    /// Checks CAA before ordering (when the CA names its CAA identities): a name whose CAA
    /// records exclude this CA fails at once, without an order the CA would refuse.
    /// Lookups that fail leave the decision to the CA.
    async fn check_caa(&self) -> Result<(), Stop> {
        let ids = &self.client.directory.meta.caa_identities;
        if ids.is_empty() || self.dns.nameservers.recursive.is_empty() {
            return Ok(());
        }
        for i in self.identifiers.iter().filter(|i| i.type_ == "dns") {
            let (name, wildcard) = match i.value.strip_prefix("*.") {
                Some(base) => (base, true),
                None => (i.value.as_str(), false),
            };
            match crate::dns::caa_allows(&self.dns.nameservers, name, wildcard, ids).await {
                Ok(Ok(())) => {}
                Ok(Err(why)) => {
                    return Err(Stop::Failed(
                        "CAAForbidden".into(),
                        format!("{}: {why}", i.value),
                    ))
                }
                Err(e) => {
                    tracing::debug!(name = %i.value, error = %e, "CAA lookup failed: the CA decides")
                }
            }
        }
        Ok(())
    }

    async fn new_order(&self, rec: &mut OrderRecord) -> Result<(), Stop> {
        self.check_caa().await?;
        let mut payload = serde_json::json!({ "identifiers": self.identifiers });
        if let Some(p) = self.issuer.profile.as_deref().filter(|p| !p.is_empty()) {
            payload["profile"] = serde_json::Value::String(p.to_string());
        }
        let url = self.client.directory.new_order.clone();
        let mut result = match &self.replaces {
            Some(r) => {
                let mut with = payload.clone();
                with["replaces"] = serde_json::Value::String(r.clone());
                self.client
                    .post_json::<OrderBody>(&self.signer, &url, Some(&with))
                    .await
            }
            None => {
                self.client
                    .post_json(&self.signer, &url, Some(&payload))
                    .await
            }
        };
        // A server that will not take `replaces` (already replaced, say) still gets the
        // order, without it.
        if let (Some(r), Err(e)) = (&self.replaces, &result) {
            if !e.is_transient() && e.problem_kind().is_some() {
                tracing::info!(replaces = %r, error = %e, "the ACME server refused replaces: ordering without it");
                result = self
                    .client
                    .post_json(&self.signer, &url, Some(&payload))
                    .await;
            }
        }
        let (body, rsp) = result?;
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
        tracing::info!(
            order = loc,
            replaces = body.replaces.as_deref().unwrap_or(""),
            "ACME order created"
        );
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

    /// Brings every authorization forward: a challenge chosen and presented for each
    /// pending one, DNS-01 records seen by the zone's servers, then every challenge
    /// accepted, then polled until the server has validated them all.
    async fn authorize(&self, rec: &mut OrderRecord) -> Result<(), Stop> {
        let mut pending = Vec::new();
        for i in 0..rec.challenges.len() {
            let url = rec.challenges[i].authorization_url.clone();
            let (body, _): (AuthzBody, _) = self.client.post_json(&self.signer, &url, None).await?;
            match body.status.as_str() {
                "valid" => self.mark(rec, i, "valid", ""),
                "pending" => {
                    self.choose(rec, i, &body)?;
                    self.present(rec, i).await?;
                    let st = body
                        .challenges
                        .iter()
                        .find(|c| c.url == rec.challenges[i].url)
                        .map(|c| c.status.clone())
                        .unwrap_or_default();
                    pending.push((i, st));
                }
                other => return Err(self.invalid(rec, i, &body, other)),
            }
        }
        if pending.is_empty() {
            return Ok(());
        }
        self.await_propagation(rec, &pending).await?;
        for (i, st) in &pending {
            let c = &rec.challenges[*i];
            if !c.accepted && st == "pending" {
                let url = c.url.clone();
                self.client
                    .post(&self.signer, &url, Some(&serde_json::json!({})))
                    .await?;
                let c = &mut rec.challenges[*i];
                c.accepted = true;
                c.state = "processing".into();
                c.reason = "waiting for the ACME server to validate".into();
                self.report(rec);
            }
        }
        let mut poll = Poll::new();
        let mut left: Vec<usize> = pending.into_iter().map(|(i, _)| i).collect();
        while !left.is_empty() {
            poll.wait(None).await?;
            let mut still = Vec::new();
            for i in left {
                let url = rec.challenges[i].authorization_url.clone();
                let (body, rsp): (AuthzBody, _) =
                    self.client.post_json(&self.signer, &url, None).await?;
                match body.status.as_str() {
                    "valid" => self.mark(rec, i, "valid", ""),
                    "pending" => {
                        still.push(i);
                        if let Some(ra) = retry_after_of(&rsp) {
                            poll.wait(Some(ra)).await?;
                        }
                    }
                    other => return Err(self.invalid(rec, i, &body, other)),
                }
            }
            left = still;
        }
        Ok(())
    }

    fn mark(&self, rec: &mut OrderRecord, i: usize, state: &str, reason: &str) {
        let c = &mut rec.challenges[i];
        if c.state != state || c.reason != reason {
            c.state = state.into();
            c.reason = reason.into();
            self.report(rec);
        }
    }

    fn invalid(&self, rec: &mut OrderRecord, i: usize, body: &AuthzBody, status: &str) -> Stop {
        let (reason, msg) = authz_failure(body, status);
        self.mark(rec, i, "invalid", &msg);
        Stop::Failed(reason, msg)
    }

    /// Picks the solver and challenge of a pending authorization (once).
    fn choose(&self, rec: &mut OrderRecord, i: usize, body: &AuthzBody) -> Result<(), Stop> {
        if !rec.challenges[i].url.is_empty() {
            return Ok(());
        }
        let name = if body.wildcard {
            format!("*.{}", body.identifier.value)
        } else {
            body.identifier.value.clone()
        };
        let offered: Vec<ChallengeKind> = body
            .challenges
            .iter()
            .filter_map(|c| match c.type_.as_str() {
                "http-01" => Some(ChallengeKind::Http01),
                "dns-01" => Some(ChallengeKind::Dns01),
                _ => None,
            })
            .collect();
        let picked = pick_solver(&self.issuer.solvers, &name, &offered, &self.labels).and_then(
            |(solver, kind)| {
                let ch = body
                    .challenges
                    .iter()
                    .find(|c| c.type_ == kind.acme_type())?;
                Some((solver, kind, ch))
            },
        );
        let Some((solver, kind, ch)) = picked else {
            let offered: Vec<&str> = body.challenges.iter().map(|c| c.type_.as_str()).collect();
            let msg = format!(
                "no configured challenge solver can be used for {name:?} (the server offers {})",
                offered.join(", ")
            );
            rec.challenges[i].reason = msg.clone();
            return Err(Stop::Failed("NoMatchingSolver".into(), msg));
        };
        let c = &mut rec.challenges[i];
        c.dns_name = body.identifier.value.clone();
        c.wildcard = body.wildcard;
        c.kind = Some(kind);
        c.url = ch.url.clone();
        c.token = ch.token.clone();
        c.solver = solver;
        let ka = self.key_authorization(&ch.token);
        c.key = match kind {
            ChallengeKind::Http01 => ka,
            ChallengeKind::Dns01 => dns01_value(&ka),
        };
        Ok(())
    }

    fn key_authorization(&self, token: &str) -> String {
        format!("{token}.{}", self.thumbprint)
    }

    /// Serves the token, or writes the TXT record (where `_acme-challenge.NAME` points,
    /// with cnameStrategy Follow).
    async fn present(&self, rec: &mut OrderRecord, i: usize) -> Result<(), Stop> {
        let c = rec.challenges[i].clone();
        match c.kind {
            Some(ChallengeKind::Http01) => self.tokens.insert(&c.token, &c.key),
            Some(ChallengeKind::Dns01) => {
                let solver = self.dns01_solver(c.solver)?;
                let name = self.record_name(solver, &c).await?;
                solver
                    .present(&self.dns, &name, &c.key)
                    .await
                    .map_err(|m| {
                        Stop::Failed("DNS01PresentFailed".into(), format!("{}: {m}", c.dns_name))
                    })?;
            }
            None => return Ok(()),
        }
        if !rec.challenges[i].presented {
            rec.challenges[i].presented = true;
            self.report(rec);
        }
        if c.kind == Some(ChallengeKind::Http01) {
            self.await_published(rec, i).await?;
        }
        Ok(())
    }

    /// Waits until every replica serves the token (when the shell says there are
    /// others): the CA validates at once and from several places.
    async fn await_published(&self, rec: &mut OrderRecord, i: usize) -> Result<(), Stop> {
        let Some(published) = &self.http01_published else {
            return Ok(());
        };
        let token = rec.challenges[i].token.clone();
        let started = Instant::now();
        while !(published.0)(&token) {
            if started.elapsed() > PUBLISH_LIMIT {
                let msg = format!(
                    "the HTTP-01 token was not served by every replica within {}s",
                    PUBLISH_LIMIT.as_secs()
                );
                self.mark(rec, i, "pending", &msg);
                return Err(Stop::Retry(Duration::from_secs(30)));
            }
            self.mark(
                rec,
                i,
                "pending",
                "waiting for every replica to serve the HTTP-01 token",
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(())
    }

    fn dns01_solver(&self, index: usize) -> Result<&crate::solve::Dns01, Stop> {
        match self.dns.solvers.get(index).and_then(Option::as_ref) {
            Some(Ok(s)) => Ok(s),
            Some(Err(m)) => Err(Stop::Failed("DNS01SolverInvalid".into(), m.clone())),
            None => Err(Stop::Failed(
                "DNS01SolverInvalid".into(),
                format!("spec.acme.solvers[{index}] is not a DNS-01 solver"),
            )),
        }
    }

    async fn record_name(
        &self,
        solver: &crate::solve::Dns01,
        c: &ChallengeRecord,
    ) -> Result<String, Stop> {
        let name = format!("_acme-challenge.{}", c.dns_name);
        if !solver.follow_cname {
            return Ok(name);
        }
        let n = crate::dns::fqdn(&name)
            .map_err(|e| Stop::Failed("DNS01PresentFailed".into(), e.to_string()))?;
        crate::dns::follow_cname(&self.dns.nameservers, &n)
            .await
            .map(|t| t.to_string())
            .map_err(|e| {
                Stop::Failed(
                    "DNS01PresentFailed".into(),
                    format!("following the CNAME at {name}: {e}"),
                )
            })
    }

    /// Waits until the zone's authoritative servers (or the recursive ones, with
    /// --dns01-recursive-nameservers-only) serve every DNS-01 record not yet accepted;
    /// bounded by the configured propagation timeout.
    async fn await_propagation(
        &self,
        rec: &mut OrderRecord,
        pending: &[(usize, String)],
    ) -> Result<(), Stop> {
        let started = Instant::now();
        let mut delay = Duration::from_secs(1);
        for (i, _) in pending {
            let c = rec.challenges[*i].clone();
            if c.kind != Some(ChallengeKind::Dns01) || c.accepted {
                continue;
            }
            let solver = self.dns01_solver(c.solver)?;
            let name = self.record_name(solver, &c).await?;
            let fq = crate::dns::fqdn(&name)
                .map_err(|e| Stop::Failed("DNS01PresentFailed".into(), e.to_string()))?;
            loop {
                let why = match crate::dns::propagated(&self.dns.nameservers, &fq, &c.key).await {
                    Ok(Ok(())) => break,
                    Ok(Err(why)) => why,
                    Err(e) => e.to_string(),
                };
                let limit = self.dns.propagation_timeout;
                if started.elapsed() > limit {
                    let msg = format!(
                        "the DNS-01 record {name} was not seen within {}s: {why}",
                        limit.as_secs()
                    );
                    self.mark(rec, *i, "pending", &msg);
                    return Err(Stop::Failed("DNS01PropagationTimeout".into(), msg));
                }
                self.mark(
                    rec,
                    *i,
                    "pending",
                    &format!("waiting for DNS-01 propagation: {why}"),
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 3 / 2).min(Duration::from_secs(10));
            }
            self.mark(
                rec,
                *i,
                "pending",
                "the DNS-01 record is served by every authoritative server",
            );
        }
        Ok(())
    }

    /// Removes what was presented: tokens, TXT records (failures are logged, not fatal).
    async fn cleanup(&self, rec: &OrderRecord) {
        for c in rec.challenges.iter().filter(|c| c.presented) {
            match c.kind {
                Some(ChallengeKind::Http01) => self.tokens.remove(&c.token),
                Some(ChallengeKind::Dns01) => {
                    let Ok(solver) = self.dns01_solver(c.solver) else {
                        continue;
                    };
                    let Ok(name) = self.record_name(solver, c).await else {
                        continue;
                    };
                    if let Err(m) = solver.cleanup(&self.dns, &name, &c.key).await {
                        tracing::warn!(record = %name, error = %m, "cannot remove the DNS-01 record");
                    }
                }
                None => {}
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

/// The error paths of an order against a scripted ACME server (a few lines of hyper on
/// loopback): what a real CA does only under load or by policy. The happy paths run
/// against Pebble in tests/acme_local.rs.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{Transport, Trust};
    use std::sync::atomic::{AtomicU32, Ordering};

    /// What the scripted server answers to a new order.
    #[derive(Clone, Copy)]
    enum NewOrder {
        RateLimited,
        Unavailable,
        BadNonceAlways,
    }

    async fn server(script: NewOrder, hits: Arc<AtomicU32>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let b = base.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (b, hits) = (b.clone(), hits.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let (b, hits) = (b.clone(), hits.clone());
                            async move {
                                let path = req.uri().path().to_string();
                                let mut rsp =
                                    hyper::Response::builder().header("replay-nonce", "n0nce");
                                let body = match path.as_str() {
                                    "/dir" => format!(
                                        r#"{{"newNonce":"{b}/nonce","newAccount":"{b}/acct","newOrder":"{b}/order"}}"#
                                    ),
                                    "/nonce" => String::new(),
                                    _ => {
                                        hits.fetch_add(1, Ordering::Relaxed);
                                        rsp =
                                            rsp.header("content-type", "application/problem+json");
                                        match script {
                                            NewOrder::RateLimited => {
                                                rsp = rsp.status(429).header("retry-after", "120");
                                                r#"{"type":"urn:ietf:params:acme:error:rateLimited","detail":"too many new orders"}"#.into()
                                            }
                                            NewOrder::Unavailable => {
                                                rsp = rsp.status(503);
                                                "upstream down".into()
                                            }
                                            NewOrder::BadNonceAlways => {
                                                rsp = rsp.status(400);
                                                r#"{"type":"urn:ietf:params:acme:error:badNonce","detail":"nope"}"#.into()
                                            }
                                        }
                                    }
                                };
                                rsp.body(http_body_util::Full::new(bytes::Bytes::from(body)))
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        format!("{base}/dir")
    }

    async fn run_against(script: NewOrder) -> (End, OrderRecord, u32) {
        let hits = Arc::new(AtomicU32::new(0));
        let dir = server(script, hits.clone()).await;
        let transport = Transport::new(&Trust::System, None).expect("transport");
        let client = Client::connect(transport, &dir).await.expect("directory");
        let key = certwright_pki::PrivateKey::generate(certwright_pki::KeyAlgorithm::Ecdsa(
            certwright_pki::Curve::P256,
        ))
        .expect("key");
        let job = OrderJob {
            client: Arc::new(client),
            signer: Signer {
                key: Arc::new(key),
                kid: Some("acct-1".into()),
                tally: Some(Arc::new(AtomicU32::new(0))),
            },
            issuer: Arc::new(AcmeIssuer::default()),
            csr_der: vec![],
            identifiers: vec![Identifier {
                type_: "dns".into(),
                value: "a.example.test".into(),
            }],
            labels: BTreeMap::new(),
            tokens: Tokens::default(),
            http01_published: None,
            dns: Arc::new(crate::solve::DnsSolvers {
                solvers: vec![],
                nameservers: Default::default(),
                propagation_timeout: Duration::from_secs(1),
                transport: None,
            }),
            replaces: None,
            thumbprint: "t".into(),
            progress: Arc::new(|_| {}),
            now: || 1_800_000_000,
        };
        let mut rec = OrderRecord::default();
        let end = job.run(&mut rec).await;
        (end, rec, hits.load(Ordering::Relaxed))
    }

    #[tokio::test]
    async fn rate_limits_are_honoured_and_said() {
        let (end, rec, hits) = run_against(NewOrder::RateLimited).await;
        assert!(
            matches!(end, End::Retry { after } if after == Duration::from_secs(120)),
            "{end:?}"
        );
        assert_eq!(hits, 1, "a rate-limited request was sent again at once");
        assert_eq!(rec.not_before, 1_800_000_000 + 120);
        assert!(
            rec.reason.contains("rateLimited") && rec.reason.contains("120s"),
            "{}",
            rec.reason
        );
        assert_eq!(rec.transient_failures, 1);
    }

    #[tokio::test]
    async fn server_errors_back_off() {
        let (end, rec, hits) = run_against(NewOrder::Unavailable).await;
        assert!(
            matches!(end, End::Retry { after } if after == Duration::from_secs(30)),
            "{end:?}"
        );
        assert_eq!(hits, 1);
        assert!(rec.reason.contains("503"), "{}", rec.reason);
    }

    #[tokio::test]
    async fn bad_nonces_are_retried_at_once_then_later() {
        let (end, rec, hits) = run_against(NewOrder::BadNonceAlways).await;
        assert_eq!(hits, crate::client::NONCE_RETRIES + 1);
        assert!(
            matches!(end, End::Retry { after } if after == Duration::from_secs(1)),
            "{end:?}"
        );
        assert!(
            rec.requests > hits,
            "nonce fetches are counted too: {}",
            rec.requests
        );
    }
}
