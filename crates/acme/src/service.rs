//! The ACME service both runtimes hold: accounts (registered once per server, key, email
//! and binding), orders running in the background, and the HTTP-01 tokens being served.
//!
//! The engine asks an ACME issuer to process a request and must not wait: the issuer
//! (`AcmeHandle`, what [`Service::check_issuer`] hands the engine) answers at once from what the order's background run last reported (Pending, with the
//! order record as the issuer state the engine persists), and starts or resumes the run
//! when none is going. Each change wakes the shell ([`Wake`]), which steps the
//! Certificate again. Issuers are checked the same way: registration runs in the
//! background and the issuer's condition says so meanwhile.

use crate::client::{self, AcmeError, Client, Identifier, Signer};
use crate::http::{Recorder, Transport, Trust};
use crate::order::{End, OrderJob};
use crate::record::OrderRecord;
use crate::solve::Tokens;
use certwright_api::acme::{AcmeIssuer, AcmeIssuerStatus, ACCOUNT_KEY};
use certwright_engine::issue::{Issued, Issuer, Outcome, Request};
use certwright_engine::lifecycle::{Problem, Redacted};
use certwright_engine::resolve::Ready;
use certwright_engine::{BackoffPolicy, SecretData};
use certwright_pki::{jose, Curve, KeyAlgorithm, KeyEncoding, PrivateKey};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A failed ACME request backs off from two minutes, doubling to eight hours: a CA is
/// never hammered, and a fixed problem is retried within minutes, not hours.
pub const ACME_BACKOFF: BackoffPolicy = BackoffPolicy {
    base: Duration::from_secs(120),
    cap: Duration::from_secs(8 * 3600),
};

/// While an order runs, its Certificate is stepped again this often (the step only reads
/// what the run last reported): a shell without wake-ups still follows the order.
const RUNNING_RECHECK: Duration = Duration::from_secs(2);

/// What the shell is asked to look at again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wake {
    /// An issuer, by the id the shell gave [`Service::check_issuer`].
    Issuer(String),
    /// A Certificate, by the subject the engine gave (`namespace/name`).
    Certificate(String),
}

pub type Waker = Arc<dyn Fn(Wake) + Send + Sync>;

/// Settings shared by every ACME issuer.
#[derive(Debug, Clone)]
pub struct Config {
    /// New orders per Certificate per hour, at most.
    pub max_orders_per_hour: u32,
    /// Where DNS-01 finds zones and checks propagation.
    pub nameservers: crate::dns::Nameservers,
    /// How long a DNS-01 record may take to be served before the order fails.
    pub propagation_timeout: Duration,
    /// Where HTTP-01 tokens are served by more than this process (operator replicas):
    /// says whether a token is served everywhere, so the CA is not told to validate
    /// before it is. None: the token table of this process is all there is.
    pub http01_published: Option<Http01Published>,
}

/// Whether an HTTP-01 token (by its value) is served by every replica.
#[derive(Clone)]
pub struct Http01Published(pub Arc<dyn Fn(&str) -> bool + Send + Sync>);

impl std::fmt::Debug for Http01Published {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Http01Published")
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_orders_per_hour: 6,
            nameservers: crate::dns::Nameservers {
                recursive: crate::dns::Nameservers::system(),
                recursive_only: false,
            },
            propagation_timeout: Duration::from_secs(300),
            http01_published: None,
        }
    }
}

/// The ACME service. Cheap to clone.
#[derive(Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

struct Inner {
    rt: tokio::runtime::Handle,
    config: Config,
    tokens: Tokens,
    waker: Waker,
    recorder: Option<Recorder>,
    accounts: Mutex<HashMap<String, AccountSlot>>,
    /// Registrations that ended and that no check has seen yet (the service is busy
    /// until one has: a shell waiting for work to finish must step their Certificates).
    unseen: Mutex<std::collections::HashSet<String>>,
    jobs: Mutex<HashMap<String, JobSlot>>,
    /// When each Certificate's recent orders were created (Unix seconds).
    orders: Mutex<HashMap<String, VecDeque<i64>>>,
    /// The HTTPS client for Route 53, made on first use.
    route53: std::sync::OnceLock<Option<Transport>>,
    /// ACME Renewal Information, by certificate id.
    ari: Mutex<HashMap<String, AriSlot>>,
}

/// What the server last said about renewing one certificate.
#[derive(Clone, Default)]
struct AriSlot {
    /// The time chosen in the suggested window (Unix seconds).
    chosen: Option<i64>,
    /// When to ask again (the server's Retry-After).
    refresh_at: i64,
    fetching: bool,
}

enum AccountSlot {
    Registering,
    Registered(Arc<Account>),
    Failed { problem: Problem, retry_at: i64 },
}

struct Account {
    client: Arc<Client>,
    signer: Signer,
    thumbprint: String,
    uri: String,
}

enum JobSlot {
    Running(OrderRecord),
    Done(End, OrderRecord),
}

/// What the shell found for an ACME issuer.
pub struct IssuerInputs<'a> {
    /// Identifies the issuer in [`Wake::Issuer`].
    pub id: &'a str,
    pub spec: &'a AcmeIssuer,
    /// Reads a Secret of the issuer's Secret namespace (`Ok(None)`: it does not exist).
    pub read_secret: &'a dyn Fn(&str) -> Result<Option<SecretData>, Problem>,
    /// Unix seconds.
    pub now: i64,
}

/// An ACME issuer's check: ready to sign or why not, its status, and an account key the
/// shell must store (then check again).
pub struct IssuerCheck {
    pub result: Result<Ready, Problem>,
    pub status: Option<AcmeIssuerStatus>,
    pub generated_key: Option<GeneratedKey>,
}

/// A new account key for the `privateKeySecretRef` Secret.
pub struct GeneratedKey {
    pub secret: String,
    pub key: String,
    pub pem: Redacted,
}

fn trust(spec: &AcmeIssuer) -> Result<Trust, Problem> {
    if spec.skip_tls_verify {
        return Ok(Trust::Insecure);
    }
    let Some(b) = &spec.ca_bundle else {
        return Ok(Trust::System);
    };
    use base64::Engine;
    let pem = base64::engine::general_purpose::STANDARD
        .decode(b.trim())
        .map_err(|e| Problem::new("InvalidIssuer", format!("spec.acme.caBundle: {e}")))?;
    let certs = certwright_pki::inspect::pem_certificates(&pem)
        .map_err(|e| Problem::new("InvalidIssuer", format!("spec.acme.caBundle: {e}")))?;
    Ok(Trust::Bundle(certs))
}

fn digest_hex(b: &[u8]) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b)
        .as_ref()
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// What an issuer registers with: one account per server, key, email, binding and trust.
struct Registration {
    server: String,
    email: Option<String>,
    key: PrivateKey,
    /// The binding's key id, HMAC key and algorithm.
    eab: Option<(String, Vec<u8>, String)>,
    trust: Trust,
}

impl Registration {
    fn slot_key(&self) -> String {
        format!(
            "{}|{}|{}|{}|{:?}",
            self.server,
            digest_hex(self.key.spki_der()),
            self.email.clone().unwrap_or_default(),
            self.eab.as_ref().map(|e| e.0.as_str()).unwrap_or_default(),
            self.trust
        )
    }
}

enum AccountKey {
    Found(PrivateKey),
    /// None was there: this one is to be stored.
    Generated(GeneratedKey),
}

/// The account key from the `privateKeySecretRef` Secret, or a new one when there is none
/// and generation is allowed.
fn account_key(
    spec: &AcmeIssuer,
    read_secret: &dyn Fn(&str) -> Result<Option<SecretData>, Problem>,
) -> Result<AccountKey, Problem> {
    let r = &spec.private_key_secret_ref;
    let key_name = r
        .key
        .clone()
        .filter(|k| !k.is_empty())
        .unwrap_or_else(|| ACCOUNT_KEY.to_string());
    let desc = format!("account key Secret {:?}", r.name);
    let invalid = |m: String| Problem::new("ErrInvalidAccountKey", m);
    match read_secret(&r.name) {
        Err(p) => Err(Problem::new(
            "ErrGetAccountKey",
            format!("{desc}: {}", p.message),
        )),
        Ok(Some(s)) => {
            let pem = s
                .get(&key_name)
                .ok_or_else(|| invalid(format!("{desc} has no {key_name:?}")))?;
            let key = PrivateKey::from_pem(pem).map_err(|e| {
                invalid(format!("{desc}, key {key_name:?}: not a private key: {e}"))
            })?;
            if matches!(key.algorithm(), KeyAlgorithm::Ed25519) {
                return Err(invalid(format!(
                    "{desc}: ACME account keys are RSA or ECDSA, not Ed25519"
                )));
            }
            Ok(AccountKey::Found(key))
        }
        Ok(None) if spec.disable_account_key_generation => Err(Problem::new(
            "ErrGetAccountKey",
            format!("{desc} not found, and disableAccountKeyGeneration is set"),
        )),
        Ok(None) => PrivateKey::generate(KeyAlgorithm::Ecdsa(Curve::P256))
            .and_then(|k| k.to_pem(KeyEncoding::Pkcs8))
            .map(|pem| {
                AccountKey::Generated(GeneratedKey {
                    secret: r.name.clone(),
                    key: key_name,
                    pem: Redacted(pem),
                })
            })
            .map_err(|e| Problem::new("ErrGenerateAccountKey", e.to_string())),
    }
}

impl Service {
    /// A service on `rt`; `waker` is called from the runtime's threads.
    pub fn new(
        rt: tokio::runtime::Handle,
        config: Config,
        waker: Waker,
        recorder: Option<Recorder>,
    ) -> Service {
        Service {
            inner: Arc::new(Inner {
                rt,
                config,
                tokens: Tokens::default(),
                waker,
                recorder,
                accounts: Mutex::new(HashMap::new()),
                unseen: Mutex::default(),
                jobs: Mutex::new(HashMap::new()),
                orders: Mutex::new(HashMap::new()),
                route53: std::sync::OnceLock::new(),
                ari: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The HTTP-01 tokens this service's orders present.
    pub fn tokens(&self) -> Tokens {
        self.inner.tokens.clone()
    }

    /// Checks an ACME issuer: its account key, and its registration with the server.
    pub fn check_issuer(&self, i: &IssuerInputs<'_>) -> IssuerCheck {
        let fail = |p: Problem| IssuerCheck {
            result: Err(p),
            status: None,
            generated_key: None,
        };
        let spec = i.spec;
        let account_key = match account_key(spec, i.read_secret) {
            Ok(AccountKey::Found(k)) => k,
            Ok(AccountKey::Generated(g)) => {
                let desc = format!("account key Secret {:?}", g.secret);
                return IssuerCheck {
                    result: Err(Problem::new(
                        "GeneratingAccountKey",
                        format!("generated a new account key into {desc}"),
                    )),
                    status: None,
                    generated_key: Some(g),
                };
            }
            Err(p) => return fail(p),
        };
        let eab_secret = spec
            .external_account_binding
            .as_ref()
            .map(|b| (i.read_secret)(&b.key_secret_ref.name));
        let eab = match eab(
            spec,
            eab_secret.as_ref().map(|r| r.as_ref().map(Option::as_ref)),
        ) {
            Ok(e) => e,
            Err(p) => return fail(p),
        };
        let trust = match trust(spec) {
            Ok(t) => t,
            Err(p) => return fail(p),
        };
        let reg = Registration {
            server: spec.server.clone(),
            email: spec.email.clone().filter(|e| !e.is_empty()),
            key: account_key,
            eab,
            trust,
        };
        match self.registered(&reg, i.now) {
            Some(Ok(acct)) => IssuerCheck {
                status: Some(AcmeIssuerStatus {
                    uri: Some(acct.uri.clone()),
                    last_registered_email: reg.email.clone(),
                    last_private_key_hash: Some(digest_hex(reg.key.spki_der())),
                }),
                result: Ok(Ready {
                    digest: format!("acme:{}", acct.uri),
                    issuer: Arc::new(AcmeHandle {
                        service: self.clone(),
                        spec: Arc::new(spec.clone()),
                        dns: Arc::new(self.dns_solvers(spec, i.read_secret)),
                        account: acct,
                    }),
                    policy: ACME_BACKOFF,
                    reason: "ACMEAccountRegistered",
                    message: "The ACME account was registered with the ACME server",
                }),
                generated_key: None,
            },
            Some(Err(p)) => fail(p),
            None => {
                self.register_in_background(i.id, reg, i.now);
                fail(Problem::new(
                    "ACMEAccountRegistering",
                    format!("registering the ACME account with {}", spec.server),
                ))
            }
        }
    }

    /// The account for a registration, or why there is none yet (registering, or failed
    /// and not to be tried again yet); None: register it now.
    fn registered(&self, reg: &Registration, now: i64) -> Option<Result<Arc<Account>, Problem>> {
        let Ok(accounts) = self.inner.accounts.lock() else {
            return Some(Err(Problem::new("Internal", "account table poisoned")));
        };
        let key = reg.slot_key();
        let slot = accounts.get(&key);
        if !matches!(slot, Some(AccountSlot::Registering) | None) {
            if let Ok(mut u) = self.inner.unseen.lock() {
                u.remove(&key);
            }
        }
        match slot {
            Some(AccountSlot::Registered(acct)) => Some(Ok(acct.clone())),
            Some(AccountSlot::Registering) => Some(Err(Problem::new(
                "ACMEAccountRegistering",
                format!("registering the ACME account with {}", reg.server),
            ))),
            Some(AccountSlot::Failed { problem, retry_at }) if *retry_at > now => {
                Some(Err(problem.clone()))
            }
            _ => None,
        }
    }

    /// Registers the account on the runtime, then wakes the issuer `id`.
    fn register_in_background(&self, id: &str, reg: Registration, now: i64) {
        let key = reg.slot_key();
        if let Ok(mut a) = self.inner.accounts.lock() {
            if matches!(a.get(&key), Some(AccountSlot::Registering)) {
                return;
            }
            a.insert(key.clone(), AccountSlot::Registering);
        }
        tracing::debug!(issuer = %id, server = %reg.server, "registering the ACME account");
        let inner = self.inner.clone();
        let id = id.to_string();
        self.inner.rt.spawn(async move {
            let slot = match register(&inner, reg).await {
                Ok(acct) => {
                    tracing::info!(issuer = %id, account = %acct.uri, "ACME account registered");
                    AccountSlot::Registered(Arc::new(acct))
                }
                Err(problem) => {
                    tracing::warn!(issuer = %id, reason = %problem.reason, message = %problem.message, "ACME account registration failed");
                    AccountSlot::Failed {
                        problem,
                        retry_at: now + 60,
                    }
                }
            };
            if let Ok(mut u) = inner.unseen.lock() {
                u.insert(key.clone());
            }
            if let Ok(mut a) = inner.accounts.lock() {
                a.insert(key, slot);
            }
            (inner.waker)(Wake::Issuer(id));
        });
    }

    /// The issuer's DNS-01 solvers, their Secrets read.
    fn dns_solvers(
        &self,
        spec: &AcmeIssuer,
        read_secret: &dyn Fn(&str) -> Result<Option<SecretData>, Problem>,
    ) -> crate::solve::DnsSolvers {
        let read = |name: &str, key: &str| -> Result<Vec<u8>, String> {
            if key.is_empty() {
                return Err(format!("the reference to Secret {name:?} names no key"));
            }
            match read_secret(name) {
                Ok(Some(s)) => s
                    .get(key)
                    .map(<[u8]>::to_vec)
                    .ok_or_else(|| format!("Secret {name:?} has no key {key:?}")),
                Ok(None) => Err(format!("Secret {name:?} not found")),
                Err(p) => Err(format!("Secret {name:?}: {}", p.message)),
            }
        };
        let solvers = spec
            .solvers
            .iter()
            .enumerate()
            .map(|(i, s)| {
                s.dns01.as_ref().map(|d| {
                    crate::solve::Dns01::build(d, &read)
                        .map_err(|m| format!("spec.acme.solvers[{i}].dns01: {m}"))
                })
            })
            .collect();
        crate::solve::DnsSolvers {
            solvers,
            nameservers: self.inner.config.nameservers.clone(),
            propagation_timeout: self.inner.config.propagation_timeout,
            transport: self
                .inner
                .route53
                .get_or_init(|| Transport::new(&Trust::System, self.inner.recorder.clone()).ok())
                .clone(),
        }
    }

    /// Whether an account registration or an order run is going, or an order's end is
    /// not yet collected.
    pub fn busy(&self) -> bool {
        let registering = self
            .inner
            .accounts
            .lock()
            .map(|a| a.values().any(|s| matches!(s, AccountSlot::Registering)))
            .unwrap_or(false);
        let unseen = self
            .inner
            .unseen
            .lock()
            .map(|u| !u.is_empty())
            .unwrap_or(false);
        registering
            || unseen
            || self
                .inner
                .jobs
                .lock()
                .map(|j| !j.is_empty())
                .unwrap_or(false)
    }
}

/// The binding's key id, HMAC key and algorithm, when the spec has one.
fn eab(
    spec: &AcmeIssuer,
    secret: Option<Result<Option<&SecretData>, &Problem>>,
) -> Result<Option<(String, Vec<u8>, String)>, Problem> {
    let Some(b) = &spec.external_account_binding else {
        return Ok(None);
    };
    let key = b
        .key_secret_ref
        .key
        .clone()
        .filter(|k| !k.is_empty())
        .unwrap_or_else(|| "secret".into());
    let desc = format!(
        "external account binding Secret {:?}",
        b.key_secret_ref.name
    );
    let s = match secret {
        None | Some(Ok(None)) => {
            return Err(Problem::new("ErrGetEABKey", format!("{desc} not found")))
        }
        Some(Err(p)) => {
            return Err(Problem::new(
                "ErrGetEABKey",
                format!("{desc}: {}", p.message),
            ))
        }
        Some(Ok(Some(s))) => s,
    };
    let raw = s
        .get(&key)
        .ok_or_else(|| Problem::new("ErrGetEABKey", format!("{desc} has no {key:?}")))?;
    use base64::Engine;
    let text = String::from_utf8_lossy(raw);
    let hmac = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text.trim().trim_end_matches('='))
        .map_err(|_| {
            Problem::new(
                "ErrGetEABKey",
                format!("{desc}, key {key:?}: not base64url"),
            )
        })?;
    let alg = b
        .key_algorithm
        .clone()
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| "HS256".into());
    Ok(Some((b.key_id.clone(), hmac, alg)))
}

async fn register(inner: &Inner, reg: Registration) -> Result<Account, Problem> {
    let Registration {
        server,
        email,
        key,
        eab,
        trust,
    } = reg;
    let server = server.as_str();
    let failed = |e: AcmeError| {
        let reason = if e.problem_kind() == Some("externalAccountRequired") {
            "ErrExternalAccountRequired"
        } else {
            "ErrRegisterACMEAccount"
        };
        Problem::new(reason, format!("Failed to register ACME account: {e}"))
    };
    let transport = Transport::new(&trust, inner.recorder.clone())
        .map_err(|m| Problem::new("ErrRegisterACMEAccount", m))?;
    let client = Client::connect(transport, server).await.map_err(|e| {
        Problem::new(
            "ErrRegisterACMEAccount",
            format!("Failed to read the ACME directory: {e}"),
        )
    })?;
    if client.directory.meta.external_account_required && eab.is_none() {
        return Err(Problem::new(
            "ErrExternalAccountRequired",
            format!(
                "{server} requires an external account binding (spec.acme.externalAccountBinding)"
            ),
        ));
    }
    let key = Arc::new(key);
    let thumbprint =
        jose::thumbprint(&key).map_err(|e| Problem::new("ErrInvalidAccountKey", e.to_string()))?;
    let mut payload = serde_json::json!({ "termsOfServiceAgreed": true });
    if let Some(e) = &email {
        payload["contact"] = serde_json::json!([format!("mailto:{e}")]);
    }
    if let Some((kid, hmac, alg)) = &eab {
        let b =
            client::external_account_binding(&key, kid, hmac, alg, &client.directory.new_account)
                .map_err(|m| Problem::new("ErrGetEABKey", m))?;
        payload["externalAccountBinding"] = b;
    }
    let signer = Signer {
        key: key.clone(),
        kid: None,
        tally: None,
    };
    let url = client.directory.new_account.clone();
    let rsp = client
        .post(&signer, &url, Some(&payload))
        .await
        .map_err(failed)?;
    let uri = rsp
        .header("location")
        .ok_or_else(|| {
            Problem::new(
                "ErrRegisterACMEAccount",
                "the ACME server gave no account URL",
            )
        })?
        .to_string();
    // An existing account keeps its old contact: bring it up to date.
    if let Some(e) = &email {
        let signer = Signer {
            key: key.clone(),
            kid: Some(uri.clone()),
            tally: None,
        };
        let _ = client
            .post(
                &signer,
                &uri,
                Some(&serde_json::json!({ "contact": [format!("mailto:{e}")] })),
            )
            .await;
    }
    Ok(Account {
        client: Arc::new(client),
        signer: Signer {
            key,
            kid: Some(uri.clone()),
            tally: None,
        },
        thumbprint,
        uri,
    })
}

/// The engine's view of an ACME issuer with a registered account.
struct AcmeHandle {
    service: Service,
    account: Arc<Account>,
    spec: Arc<AcmeIssuer>,
    dns: Arc<crate::solve::DnsSolvers>,
}

fn pending(message: String, after: Duration, state: serde_json::Value) -> Outcome {
    Outcome::Pending {
        reason: "Pending".into(),
        message,
        retry_after: after,
        state,
    }
}

impl AcmeHandle {
    /// Whether one more order may be created for `subject` now; when not, how long until
    /// it may.
    fn may_order(&self, subject: &str, now: i64) -> Result<(), i64> {
        let max = self.service.inner.config.max_orders_per_hour.max(1) as usize;
        let Ok(mut orders) = self.service.inner.orders.lock() else {
            return Ok(());
        };
        let q = orders.entry(subject.to_string()).or_default();
        while q.front().is_some_and(|t| *t <= now - 3600) {
            q.pop_front();
        }
        if q.len() >= max {
            return Err(q.front().copied().unwrap_or(now) + 3600 - now);
        }
        q.push_back(now);
        Ok(())
    }

    /// The certificate id a new order names in `replaces`: only for a certificate the
    /// server gave renewal information for (so it knows it).
    fn replaces(&self, current: Option<&certwright_pki::CertInfo>) -> Option<String> {
        let id = cert_id(current?)?;
        let known = self
            .service
            .inner
            .ari
            .lock()
            .ok()?
            .get(&id)
            .is_some_and(|s| s.chosen.is_some());
        known.then_some(id)
    }

    fn start(&self, key: String, req: &Request<'_>, mut rec: OrderRecord) -> Result<(), String> {
        let csr_der = certwright_pki::pem::decode_all(req.csr_pem.as_bytes())
            .ok()
            .and_then(|b| {
                b.into_iter()
                    .find(|b| b.label.contains("CERTIFICATE REQUEST"))
            })
            .map(|b| b.der)
            .ok_or("the request holds no CSR")?;
        let mut identifiers: Vec<Identifier> = req
            .spec
            .dns_names
            .iter()
            .map(|d| Identifier {
                type_: "dns".into(),
                value: d.clone(),
            })
            .collect();
        let mut ips = req.spec.ip_addresses.clone();
        if identifiers.is_empty() && ips.is_empty() {
            // A request made by someone else: the names are the CSR's.
            let (dns, csr_ips) =
                certwright_pki::inspect::csr_alt_names(&csr_der).map_err(|e| e.to_string())?;
            identifiers.extend(dns.into_iter().map(|d| Identifier {
                type_: "dns".into(),
                value: d,
            }));
            ips = csr_ips;
        }
        identifiers.extend(ips.iter().map(|ip| Identifier {
            type_: "ip".into(),
            value: ip.to_string(),
        }));
        if identifiers.is_empty() {
            return Err("an ACME certificate needs at least one DNS name or IP address".into());
        }
        let inner = self.service.inner.clone();
        let subject = req.subject.to_string();
        let progress_inner = inner.clone();
        let progress_key = key.clone();
        let progress_subject = subject.clone();
        let job = OrderJob {
            client: self.account.client.clone(),
            signer: Signer {
                tally: Some(Arc::new(std::sync::atomic::AtomicU32::new(rec.requests))),
                ..self.account.signer.clone()
            },
            issuer: self.spec.clone(),
            csr_der,
            identifiers,
            labels: req.labels.clone(),
            tokens: inner.tokens.clone(),
            http01_published: inner.config.http01_published.clone(),
            dns: self.dns.clone(),
            replaces: self.replaces(req.current),
            thumbprint: self.account.thumbprint.clone(),
            progress: Arc::new(move |r: &OrderRecord| {
                if let Ok(mut j) = progress_inner.jobs.lock() {
                    j.insert(progress_key.clone(), JobSlot::Running(r.clone()));
                }
                (progress_inner.waker)(Wake::Certificate(progress_subject.clone()));
            }),
            now: unix_now,
        };
        rec.account = self.account.uri.clone();
        if rec.created == 0 {
            rec.created = req.now;
        }
        if let Ok(mut j) = inner.jobs.lock() {
            j.insert(key.clone(), JobSlot::Running(rec.clone()));
        }
        tracing::debug!(certificate = %subject, order = rec.url.as_deref().unwrap_or("(new)"), "ACME order run starts");
        self.service.inner.rt.spawn(async move {
            let end = job.run(&mut rec).await;
            if let Ok(mut j) = inner.jobs.lock() {
                j.insert(key, JobSlot::Done(end, rec));
            }
            (inner.waker)(Wake::Certificate(subject));
        });
        Ok(())
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The RFC 9773 certificate id: base64url(AKI key identifier) "." base64url(serial).
pub fn cert_id(leaf: &certwright_pki::CertInfo) -> Option<String> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let aki = leaf.authority_key_id.as_ref()?;
    let serial: Vec<u8> = (0..leaf.serial_hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(leaf.serial_hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<_>>()?;
    Some(format!("{}.{}", b64.encode(aki), b64.encode(serial)))
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct RenewalInfo {
    suggested_window: SuggestedWindow,
}

#[derive(serde::Deserialize)]
struct SuggestedWindow {
    start: String,
    end: String,
}

/// A time in `[start, end)`, uniformly at random as RFC 9773 asks, or `prev` when it is
/// still inside; `now` when the window has passed.
fn choose_in(start: i64, end: i64, prev: Option<i64>, now: i64) -> i64 {
    if let Some(p) = prev.filter(|p| *p >= start && *p < end) {
        return p;
    }
    if end <= now {
        return now;
    }
    let from = start.max(now);
    let mut b = [0u8; 8];
    let _ = aws_lc_rs::rand::fill(&mut b);
    let span = (end - from).max(1) as u64;
    from + (u64::from_le_bytes(b) % span) as i64
}

impl AcmeHandle {
    /// Asks the server's renewalInfo for `id` in the background and wakes `subject`.
    fn fetch_renewal_info(&self, id: String, subject: String, now: i64) {
        let Some(base) = self.account.client.directory.renewal_info.clone() else {
            return;
        };
        let inner = self.service.inner.clone();
        let transport = self.account.client.transport.clone();
        self.service.inner.rt.spawn(async move {
            let url = format!("{}/{id}", base.trim_end_matches('/'));
            let result = transport
                .send(hyper::Method::GET, &url, &[], None, "renewal-info")
                .await;
            let (chosen, retry) = match &result {
                Ok(rsp) if rsp.status.is_success() => {
                    let retry = rsp
                        .header("retry-after")
                        .and_then(|v| v.trim().parse::<i64>().ok())
                        .unwrap_or(6 * 3600)
                        .clamp(60, 7 * 24 * 3600);
                    let window = serde_json::from_slice::<RenewalInfo>(&rsp.body).ok().and_then(|r| {
                        let s = certwright_pki::der::parse_rfc3339(&r.suggested_window.start)?;
                        let e = certwright_pki::der::parse_rfc3339(&r.suggested_window.end)?;
                        (s < e).then_some((s, e))
                    });
                    match window {
                        Some(w) => (Some(w), retry),
                        None => {
                            tracing::warn!(%url, "renewalInfo: no valid suggested window");
                            (None, retry)
                        }
                    }
                }
                Ok(rsp) => {
                    tracing::debug!(%url, status = rsp.status.as_u16(), "renewalInfo not available");
                    (None, 3600)
                }
                Err(e) => {
                    tracing::debug!(%url, error = %e, "renewalInfo not available");
                    (None, 3600)
                }
            };
            if let Ok(mut u) = inner.unseen.lock() {
                u.insert(format!("ari|{id}"));
            }
            if let Ok(mut a) = inner.ari.lock() {
                let slot = a.entry(id.clone()).or_default();
                slot.fetching = false;
                slot.refresh_at = now + retry;
                if let Some((s, e)) = chosen {
                    let at = choose_in(s, e, slot.chosen, now);
                    tracing::info!(certificate = %subject, window_start = s, window_end = e, renew_at = at, "ACME renewal information");
                    slot.chosen = Some(at);
                }
            }
            (inner.waker)(Wake::Certificate(subject));
        });
    }
}

impl Issuer for AcmeHandle {
    fn renewal_time(
        &self,
        subject: &str,
        leaf: &certwright_pki::CertInfo,
        now: i64,
    ) -> Option<i64> {
        self.account.client.directory.renewal_info.as_ref()?;
        let id = cert_id(leaf)?;
        let mut ari = self.service.inner.ari.lock().ok()?;
        let slot = ari.entry(id.clone()).or_default();
        if !slot.fetching {
            if let Ok(mut u) = self.service.inner.unseen.lock() {
                u.remove(&format!("ari|{id}"));
            }
        }
        let chosen = slot.chosen;
        if slot.refresh_at <= now && !slot.fetching {
            slot.fetching = true;
            drop(ari);
            // Busy from now until a step has seen the answer: a `--once` run must not end
            // while the fetch is in flight.
            if let Ok(mut u) = self.service.inner.unseen.lock() {
                u.insert(format!("ari|{id}"));
            }
            self.fetch_renewal_info(id, subject.to_string(), now);
        }
        chosen
    }

    fn process(&self, req: &Request<'_>) -> Outcome {
        let key = digest_hex(req.csr_pem.as_bytes());
        let slot = {
            let Ok(mut jobs) = self.service.inner.jobs.lock() else {
                return pending("waiting".into(), Duration::from_secs(5), req.state.clone());
            };
            match jobs.get(&key) {
                Some(JobSlot::Running(rec)) => {
                    return pending(rec.summary(), RUNNING_RECHECK, rec.to_state())
                }
                Some(JobSlot::Done(..)) => jobs.remove(&key),
                None => None,
            }
        };
        if let Some(JobSlot::Done(end, rec)) = slot {
            return match end {
                End::Issued(chain) => Outcome::Issued(Issued {
                    chain,
                    ca: vec![],
                    state: rec.to_state(),
                }),
                End::Failed { reason, message } => Outcome::Failed { reason, message },
                End::Retry { after } => pending(rec.summary(), after, rec.to_state()),
            };
        }
        let rec = OrderRecord::from_state(req.state);
        if rec.not_before > req.now {
            let after = Duration::from_secs((rec.not_before - req.now) as u64);
            return pending(rec.summary(), after, req.state.clone());
        }
        if rec.url.is_none() {
            if let Err(wait) = self.may_order(req.subject, req.now) {
                let mut rec = rec;
                rec.not_before = req.now + wait;
                rec.reason = format!(
                    "{} new orders in the last hour for this Certificate (the most allowed): the next in {wait}s",
                    self.service.inner.config.max_orders_per_hour
                );
                return pending(
                    rec.summary(),
                    Duration::from_secs(wait as u64),
                    rec.to_state(),
                );
            }
        }
        match self.start(key, req, rec.clone()) {
            Ok(()) => pending(rec.summary(), RUNNING_RECHECK, rec.to_state()),
            Err(m) => Outcome::Failed {
                reason: "InvalidRequest".into(),
                message: m,
            },
        }
    }
}
