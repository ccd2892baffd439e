//! The webhook's TLS, made and rotated by certwright itself, so that installing it needs
//! no other certificate tool and nothing has to exist before it starts:
//! - a CA kept in a Secret (`--webhook-ca-secret`), made by whichever replica comes first
//!   (a create is atomic: the others read the winner's) and replaced once two thirds of its
//!   life has passed; its `ca.crt` then holds the new CA and the previous one while that
//!   one is still valid, so serving certificates of either are trusted during the change;
//! - each replica signs its own serving certificate with that CA, kept in memory only, and
//!   replaces it once two thirds of its life has passed or when the CA changes;
//! - `ca.crt` is written into the caBundle of every webhook of the Mutating- and
//!   ValidatingWebhookConfiguration named by `--webhook-configuration`, and a replica does
//!   that before it serves a certificate of a new CA, so the API server trusts it by then.
//!
//! The Secret is labelled as certwright's webhook CA; a Secret of that name without the
//! label is never overwritten (the flag may name the wrong one).

use crate::Error;
use certwright_pki::cert::{self, eku, KeyUsage, Profile, Signer, Validity};
use certwright_pki::inspect::CertInfo;
use certwright_pki::key::{Curve, KeyAlgorithm, PrivateKey};
use certwright_pki::name::Name;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::{Api, PostParams};
use kube::Client;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// The label that marks the CA Secret as certwright's own.
const CA_LABEL: &str = "certwright.io/webhook-ca";

/// Webhook settings (the `--webhook-*` flags).
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub address: SocketAddr,
    /// Names in the serving certificate: DNS names and IP addresses (the Service's names
    /// in a cluster; 127.0.0.1 where the API server calls a URL on this machine).
    pub hosts: Vec<String>,
    /// The CA Secret (namespace, name).
    pub ca_secret: (String, String),
    /// The Mutating- and ValidatingWebhookConfiguration whose caBundle is kept current.
    pub configuration: String,
    /// Life of each replica's serving certificate.
    pub leaf_duration: Duration,
    /// Life of the CA.
    pub ca_duration: Duration,
}

/// The serving certificate handed to each handshake; none until the first is made.
#[derive(Debug, Default)]
pub(super) struct Resolver(RwLock<Option<Arc<CertifiedKey>>>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.read().ok()?.clone()
    }
}

impl Resolver {
    fn set(&self, key: Arc<CertifiedKey>) {
        if let Ok(mut k) = self.0.write() {
            *k = Some(key);
        }
    }
}

/// The CA as read from (or written to) its Secret.
struct Ca {
    info: CertInfo,
    key: PrivateKey,
    /// `ca.crt`: this CA, then the previous one while it is valid (PEM).
    bundle: String,
}

/// What this replica serves: from which CA, and when to replace it.
struct Served {
    ca_der: Vec<u8>,
    renew_at: i64,
}

/// Keeps the CA, the injected bundle and this replica's serving certificate current, for
/// the life of the process. Failures are logged and retried within seconds.
pub(super) async fn maintain(client: Client, config: WebhookConfig, resolver: Arc<Resolver>) {
    let mut served: Option<Served> = None;
    let tick = (config.leaf_duration / 12).clamp(Duration::from_secs(1), Duration::from_secs(30));
    loop {
        let wait = match step(&client, &config, &resolver, &mut served).await {
            Ok(()) => tick,
            Err(e) => {
                tracing::warn!(error = %e, "webhook TLS: will retry");
                tick.min(Duration::from_secs(5))
            }
        };
        tokio::time::sleep(wait).await;
    }
}

async fn step(
    client: &Client,
    config: &WebhookConfig,
    resolver: &Resolver,
    served: &mut Option<Served>,
) -> Result<(), Error> {
    let now = now();
    let ca = current_ca(client, config, now).await?;
    inject(client, &config.configuration, &ca.bundle).await?;
    let due = served
        .as_ref()
        .is_none_or(|s| s.ca_der != ca.info.der || now >= s.renew_at);
    if due {
        let (key, validity) = serving_certificate(&ca, config, now)?;
        resolver.set(key);
        *served = Some(Served {
            ca_der: ca.info.der.clone(),
            renew_at: two_thirds(&validity),
        });
        tracing::info!(
            not_after = %certwright_pki::der::rfc3339(validity.not_after),
            "webhook: serving a new certificate"
        );
    }
    Ok(())
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn two_thirds(v: &Validity) -> i64 {
    v.not_before + (v.not_after - v.not_before) * 2 / 3
}

/// Reads the CA Secret, making it the first time and replacing the CA when due.
async fn current_ca(client: &Client, config: &WebhookConfig, now: i64) -> Result<Ca, Error> {
    let (ns, name) = &config.ca_secret;
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let Some(existing) = api.get_opt(name).await? else {
        let ca = new_ca(config, now, None)?;
        return match api
            .create(&PostParams::default(), &ca_secret(name, &ca)?)
            .await
        {
            Ok(_) => {
                tracing::info!(secret = %format!("{ns}/{name}"), "webhook: made the CA");
                Ok(ca)
            }
            // Another replica made it first: use theirs.
            Err(kube::Error::Api(e)) if e.code == 409 => {
                let s = api.get(name).await?;
                read_ca(&s).map_err(|m| Error::Other(format!("webhook CA {ns}/{name}: {m}")))
            }
            Err(e) => Err(e.into()),
        };
    };
    let ours = existing
        .metadata
        .labels
        .as_ref()
        .is_some_and(|l| l.get(CA_LABEL).is_some_and(|v| v == "true"));
    if !ours {
        return Err(Error::Other(format!(
            "Secret {ns}/{name} exists and is not certwright's webhook CA (no {CA_LABEL}=true label): remove it or name another with --webhook-ca-secret"
        )));
    }
    let old = match read_ca(&existing) {
        Ok(ca) if now < two_thirds(&validity_of(&ca.info)) => return Ok(ca),
        Ok(ca) => Some(ca),
        Err(m) => {
            tracing::warn!(secret = %format!("{ns}/{name}"), problem = %m, "webhook: the CA Secret cannot be used; replacing it");
            None
        }
    };
    let ca = new_ca(config, now, old.as_ref())?;
    let mut secret = ca_secret(name, &ca)?;
    secret.metadata.resource_version = existing.metadata.resource_version.clone();
    // A conflict means another replica replaced it first: the next step reads theirs.
    api.replace(name, &PostParams::default(), &secret).await?;
    tracing::info!(secret = %format!("{ns}/{name}"), "webhook: replaced the CA");
    Ok(ca)
}

fn validity_of(info: &CertInfo) -> Validity {
    Validity {
        not_before: info.not_before,
        not_after: info.not_after,
    }
}

fn read_ca(secret: &Secret) -> Result<Ca, String> {
    let data = secret.data.as_ref().ok_or("no data")?;
    let get = |k: &str| data.get(k).map(|v| v.0.as_slice()).unwrap_or_default();
    let der = certwright_pki::inspect::pem_certificates(get("tls.crt"))
        .map_err(|e| format!("tls.crt: {e}"))?
        .into_iter()
        .next()
        .ok_or("tls.crt: no certificate")?;
    let info = CertInfo::parse(&der).map_err(|e| format!("tls.crt: {e}"))?;
    let key = PrivateKey::from_pem(get("tls.key")).map_err(|e| format!("tls.key: {e}"))?;
    if key.spki_der() != info.spki_der.as_slice() || !info.is_ca {
        return Err("tls.key does not match tls.crt, or tls.crt is not a CA".into());
    }
    let bundle = String::from_utf8_lossy(get("ca.crt")).into_owned();
    let own_pem = certwright_pki::pem::encode("CERTIFICATE", &info.der);
    let bundle = if bundle.contains(own_pem.trim()) {
        bundle
    } else {
        own_pem
    };
    Ok(Ca { info, key, bundle })
}

fn ca_secret(name: &str, ca: &Ca) -> Result<Secret, Error> {
    let pem = certwright_pki::pem::encode("CERTIFICATE", &ca.info.der);
    let key = ca
        .key
        .to_pem(certwright_pki::key::KeyEncoding::Pkcs8)
        .map_err(|e| Error::Other(format!("webhook CA key: {e}")))?;
    let data = BTreeMap::from([
        ("tls.crt".to_string(), ByteString(pem.into_bytes())),
        ("tls.key".to_string(), ByteString(key.into_bytes())),
        (
            "ca.crt".to_string(),
            ByteString(ca.bundle.clone().into_bytes()),
        ),
    ]);
    Ok(Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(BTreeMap::from([(CA_LABEL.to_string(), "true".to_string())])),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(data),
        ..Default::default()
    })
}

fn ec_key() -> Result<PrivateKey, Error> {
    PrivateKey::generate(KeyAlgorithm::Ecdsa(Curve::P256))
        .map_err(|e| Error::Other(format!("webhook key: {e}")))
}

/// Signs `profile`'s request with `signer` (the request is never stored).
fn sign(
    profile: &Profile,
    key: &PrivateKey,
    validity: &Validity,
    signer: &Signer<'_>,
) -> Result<Vec<u8>, Error> {
    let fail = |e: cert::CertError| Error::Other(format!("webhook certificate: {e}"));
    let csr = cert::parse_csr(&cert::build_csr(profile, key).map_err(fail)?).map_err(fail)?;
    cert::sign_csr(
        &csr,
        profile.is_ca,
        validity,
        &cert::random_serial(),
        signer,
        None,
        &[],
    )
    .map_err(fail)
}

/// A new self-signed CA, `previous` kept in its bundle while that one is valid.
fn new_ca(config: &WebhookConfig, now: i64, previous: Option<&Ca>) -> Result<Ca, Error> {
    let key = ec_key()?;
    let profile = Profile {
        subject: Name::parse_rfc4514("CN=certwright-webhook-ca")
            .map_err(|e| Error::Other(e.to_string()))?,
        key_usages: vec![
            KeyUsage::DigitalSignature,
            KeyUsage::CertSign,
            KeyUsage::CrlSign,
        ],
        is_ca: true,
        ..Default::default()
    };
    let validity = Validity {
        not_before: now - 60,
        not_after: now + config.ca_duration.as_secs() as i64,
    };
    let der = sign(&profile, &key, &validity, &Signer::SelfSigned(&key))?;
    let info = CertInfo::parse(&der).map_err(|e| Error::Other(e.to_string()))?;
    let mut bundle = certwright_pki::pem::encode("CERTIFICATE", &der);
    if let Some(p) = previous.filter(|p| p.info.not_after > now) {
        bundle.push_str(&certwright_pki::pem::encode("CERTIFICATE", &p.info.der));
    }
    Ok(Ca { info, key, bundle })
}

/// This replica's serving certificate for `config.hosts`, signed by `ca`, never outliving
/// it.
fn serving_certificate(
    ca: &Ca,
    config: &WebhookConfig,
    now: i64,
) -> Result<(Arc<CertifiedKey>, Validity), Error> {
    let key = ec_key()?;
    let (ips, names): (Vec<&String>, Vec<&String>) = config
        .hosts
        .iter()
        .partition(|h| h.parse::<IpAddr>().is_ok());
    let first = config
        .hosts
        .first()
        .map_or("certwright-webhook", String::as_str);
    let profile = Profile {
        subject: Name::parse_rfc4514(&format!("CN={}", first.replace(',', "\\,")))
            .map_err(|e| Error::Other(e.to_string()))?,
        dns_names: names.into_iter().cloned().collect(),
        ip_addresses: ips.into_iter().filter_map(|h| h.parse().ok()).collect(),
        key_usages: vec![KeyUsage::DigitalSignature],
        ext_key_usages: vec![eku::SERVER_AUTH.to_string()],
        ..Default::default()
    };
    let validity = Validity {
        not_before: now - 60,
        not_after: (now + config.leaf_duration.as_secs() as i64).min(ca.info.not_after),
    };
    let signer = Signer::Ca {
        name_der: &ca.info.subject_der,
        key_id: ca.info.subject_key_id.as_deref(),
        key: &ca.key,
    };
    let der = sign(&profile, &key, &validity, &signer)?;
    let pkcs8 = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.pkcs8_der().to_vec()));
    let signing = rustls::crypto::aws_lc_rs::sign::any_supported_type(&pkcs8)
        .map_err(|e| Error::Other(format!("webhook key: {e}")))?;
    let chain = vec![
        CertificateDer::from(der),
        CertificateDer::from(ca.info.der.clone()),
    ];
    Ok((Arc::new(CertifiedKey::new(chain, signing)), validity))
}

/// Writes `bundle` into the caBundle of every webhook of both configurations named
/// `name`, where it differs. A configuration not there (yet) is skipped: the next step
/// looks again. (The webhook injects into its own configurations itself, so that it works
/// before anything else does.)
async fn inject(client: &Client, name: &str, bundle: &str) -> Result<(), Error> {
    inject_into::<MutatingWebhookConfiguration>(client, name, bundle.as_bytes()).await?;
    inject_into::<ValidatingWebhookConfiguration>(client, name, bundle.as_bytes()).await
}

async fn inject_into<K: crate::cainject::Target>(
    client: &Client,
    name: &str,
    bundle: &[u8],
) -> Result<(), Error> {
    let api = K::api(client, "");
    let Some(mut object) = api.get_opt(name).await? else {
        return Ok(());
    };
    if object.inject(bundle) {
        // resourceVersion is kept: a concurrent change makes this fail, and the next step
        // injects into the changed object.
        api.replace(name, &PostParams::default(), &object).await?;
        tracing::info!(kind = %K::kind(&()), %name, "webhook: injected the CA bundle");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> WebhookConfig {
        WebhookConfig {
            address: "127.0.0.1:0".parse().expect("addr"),
            hosts: vec![
                "certwright-webhook.certwright.svc".into(),
                "127.0.0.1".into(),
            ],
            ca_secret: ("certwright".into(), "certwright-webhook-ca".into()),
            configuration: "certwright-webhook".into(),
            leaf_duration: Duration::from_secs(7 * 86_400),
            ca_duration: Duration::from_secs(365 * 86_400),
        }
    }

    #[test]
    fn the_serving_certificate_chains_to_the_ca_and_names_the_hosts() {
        let now = now();
        let ca = new_ca(&config(), now, None).expect("ca");
        let (key, validity) = serving_certificate(&ca, &config(), now).expect("leaf");
        let leaf = CertInfo::parse(key.cert[0].as_ref()).expect("leaf parses");
        leaf.is_signed_by(&ca.info).expect("signed by the CA");
        assert_eq!(leaf.dns_names, ["certwright-webhook.certwright.svc"]);
        assert_eq!(
            leaf.ip_addresses,
            ["127.0.0.1".parse::<IpAddr>().expect("ip")]
        );
        assert!(!leaf.is_ca && ca.info.is_ca);
        assert_eq!(validity.not_after - validity.not_before, 7 * 86_400 + 60);
        // Read back from its Secret, the CA is the same; a rotation keeps the old one in
        // the bundle.
        let again = read_ca(&ca_secret("x", &ca).expect("secret")).expect("reads back");
        assert_eq!(again.info.der, ca.info.der);
        let next = new_ca(&config(), now, Some(&again)).expect("next");
        let certs = certwright_pki::inspect::pem_certificates(next.bundle.as_bytes()).expect("pem");
        assert_eq!(certs, vec![next.info.der.clone(), ca.info.der.clone()]);
    }

    #[test]
    fn a_secret_that_is_not_a_ca_is_not_used() {
        let ca = new_ca(&config(), now(), None).expect("ca");
        let mut s = ca_secret("x", &ca).expect("secret");
        if let Some(d) = s.data.as_mut() {
            d.insert("tls.key".into(), ByteString(b"garbage".to_vec()));
        }
        let e = read_ca(&s).err().expect("refused");
        assert!(e.starts_with("tls.key"), "{e}");
        assert!(!e.contains("garbage"));
    }
}
