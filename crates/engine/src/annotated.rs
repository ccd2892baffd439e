//! cert-utils-operator's annotations on Secrets and ConfigMaps that no Certificate writes
//! (a Secret made by hand, or by another tool): Java keystores, a Java truststore and
//! certificate info. What to write is computed here, with the renderer a Certificate's
//! Secret uses, so the same input gives the same bytes in both runtimes and across
//! restarts; the shells only read and write.
//!
//! - `generate-java-keystores: "true"` on a Secret: `keystore.jks` (tls.key under alias
//!   `alias`, with tls.crt's chain) and `truststore.jks` (ca.crt as `alias0`, `alias1`, …),
//!   password `java-keystore-password` or `changeme`. A PKCS#1 or SEC 1 key is converted.
//!   Without ca.crt, only the keystore is written.
//! - `generate-cert-info: "true"` on a Secret: `tls.crt.info` and `ca.crt.info`, each
//!   certificate described in openssl's `x509 -text` layout.
//! - `generate-java-truststore: "true"` on a ConfigMap: `truststore.jks` in binaryData,
//!   from the PEM bundle under `source-ca-key` (default `ca-bundle.crt`), password
//!   `java-keystore-password` or `changeit`.

use crate::lifecycle::Problem;
use crate::observe::{SecretData, TlsMaterial};
use crate::render::{self, Material, Passwords, TrustAliases};
use certwright_api::annotations::{self as ann, keys};
use certwright_pki::inspect::{self, CertInfo};
use certwright_pki::KeyEncoding;
use std::collections::BTreeMap;

pub(crate) fn on(annotations: &BTreeMap<String, String>, key: &str) -> bool {
    annotations
        .get(key)
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// Whether a Secret's annotations ask for anything here.
pub fn secret_wants_outputs(annotations: &BTreeMap<String, String>) -> bool {
    on(annotations, ann::CU_GENERATE_JAVA_KEYSTORES) || on(annotations, ann::CU_GENERATE_CERT_INFO)
}

/// Whether a ConfigMap's annotations ask for a truststore.
pub fn configmap_wants_truststore(annotations: &BTreeMap<String, String>) -> bool {
    on(annotations, ann::CU_GENERATE_JAVA_TRUSTSTORE)
}

fn describe_all(certs: &[CertInfo]) -> Vec<u8> {
    certs
        .iter()
        .map(CertInfo::describe)
        .collect::<Vec<_>>()
        .join("\n")
        .into_bytes()
}

/// `tls.crt.info` and `ca.crt.info` for key material (ca.crt.info only with a CA).
pub fn cert_info(chain: &[CertInfo], ca: &[CertInfo]) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::from([(keys::TLS_CRT_INFO.to_string(), describe_all(chain))]);
    if !ca.is_empty() {
        out.insert(keys::CA_CRT_INFO.to_string(), describe_all(ca));
    }
    out
}

fn invalid(message: String) -> Problem {
    Problem::new("InvalidSecret", message)
}

/// The keys a Secret's cert-utils annotations add that it does not already hold with the
/// same content: empty when there is nothing to write. Keystores compare by what they
/// hold, so a store written by cert-utils-operator itself is kept.
pub fn secret_outputs(secret: &SecretData) -> Result<BTreeMap<String, Vec<u8>>, Problem> {
    let a = &secret.annotations;
    if !secret_wants_outputs(a) {
        return Ok(BTreeMap::new());
    }
    let material = TlsMaterial::read(secret);
    let chain = match &material.chain {
        None => return Err(invalid("tls.crt: missing or empty".into())),
        Some(Err(e)) => return Err(invalid(format!("tls.crt: {e}"))),
        Some(Ok(c)) if c.is_empty() => return Err(invalid("tls.crt: no certificate".into())),
        Some(Ok(c)) => c.as_slice(),
    };
    let ca = match &material.ca {
        Some(Err(e)) => return Err(invalid(format!("ca.crt: {e}"))),
        Some(Ok(c)) => c.as_slice(),
        None => &[],
    };
    let ks = render::keystore_options(None, &Passwords::default(), a);
    let mut desired = BTreeMap::new();
    if ks.jks.is_some() {
        let key = match &material.key {
            None => return Err(invalid("tls.key: missing or empty".into())),
            Some(Err(e)) => return Err(invalid(format!("tls.key: {e}"))),
            Some(Ok(k)) => k,
        };
        if key.spki_der() != chain[0].spki_der.as_slice() {
            return Err(invalid(
                "tls.key does not match the first certificate of tls.crt".into(),
            ));
        }
        let m = Material { key, chain, ca };
        let mut rendered = render::render_data(&m, KeyEncoding::Pkcs8, &ks, false, false)
            .map_err(|e| invalid(e.to_string()))?;
        for k in [keys::KEYSTORE_JKS, keys::TRUSTSTORE_JKS] {
            if k == keys::TRUSTSTORE_JKS && ca.is_empty() {
                continue;
            }
            if let Some(v) = rendered.remove(k) {
                desired.insert(k.to_string(), v);
            }
        }
    }
    if on(a, ann::CU_GENERATE_CERT_INFO) {
        desired.extend(cert_info(chain, ca));
    }
    let changed = render::changed_keys(&desired, secret, &ks);
    desired.retain(|k, _| changed.contains(k));
    Ok(desired)
}

/// The truststore a ConfigMap's annotations ask for, when it differs from the one in its
/// binaryData (None: nothing to write).
pub fn configmap_truststore(
    annotations: &BTreeMap<String, String>,
    data: &BTreeMap<String, String>,
    binary: &BTreeMap<String, Vec<u8>>,
) -> Result<Option<Vec<u8>>, Problem> {
    if !configmap_wants_truststore(annotations) {
        return Ok(None);
    }
    let source = annotations
        .get(ann::CU_SOURCE_CA_KEY)
        .map(String::as_str)
        .unwrap_or(ann::CU_DEFAULT_SOURCE_CA_KEY);
    let pem = data
        .get(source)
        .map(|s| s.as_bytes())
        .or_else(|| binary.get(source).map(Vec::as_slice))
        .filter(|b| !b.is_empty())
        .ok_or_else(|| {
            Problem::new(
                "InvalidConfigMap",
                format!("{source}: missing or empty (the CA bundle the truststore is made from)"),
            )
        })?;
    let certs = inspect::parse_pem_chain(pem)
        .map_err(|e| Problem::new("InvalidConfigMap", format!("{source}: {e}")))?;
    let pw = annotations
        .get(ann::CU_JAVA_KEYSTORE_PASSWORD)
        .map(String::as_str)
        .unwrap_or(ann::CU_DEFAULT_TRUSTSTORE_PASSWORD);
    let stamp = certs.first().map_or(0, |c| c.not_before * 1000);
    let store = render::jks_truststore(&certs, TrustAliases::Numbered, pw, stamp);
    let same = binary
        .get(keys::TRUSTSTORE_JKS)
        .is_some_and(|have| render::same_jks(have, &store, pw));
    Ok((!same).then_some(store))
}

/// What cert-utils' `generate-cert-expiry-alert` asks of a Secret at `now`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiryCheck {
    /// The latest notBefore of tls.crt's certificates (cert-utils' issue time).
    pub issue_time: i64,
    /// The earliest notAfter of tls.crt's certificates.
    pub expiry_time: i64,
    /// A Warning Event's message when the certificate expires within the threshold.
    pub warning: Option<String>,
    /// When to look again (the soon-to-expire frequency once within the threshold).
    pub next_check: i64,
}

/// The reason of cert-utils' soon-to-expire Event, as it writes it.
pub const SOON_TO_EXPIRE: &str = "Certs Soon to Expire";

/// cert-utils' expiry alert for a Secret (None when it does not ask for one): the
/// threshold (default 90 days) and the check frequencies (7 days; 1 hour once within the
/// threshold) come from its annotations, as Go durations; one that does not parse falls
/// back to the default, as with cert-utils.
pub fn expiry_check(secret: &SecretData, now: i64) -> Option<Result<ExpiryCheck, Problem>> {
    let a = &secret.annotations;
    if !on(a, ann::CU_GENERATE_CERT_EXPIRY_ALERT) {
        return None;
    }
    let chain = match TlsMaterial::read(secret).chain {
        Some(Ok(c)) if !c.is_empty() => c,
        Some(Err(e)) => return Some(Err(invalid(format!("tls.crt: {e}")))),
        _ => return Some(Err(invalid("tls.crt: missing or empty".into()))),
    };
    let duration = |key: &str, default_s: i64| {
        a.get(key)
            .and_then(|v| certwright_api::duration::parse(v.trim()).ok())
            .map_or(default_s, |d| d.as_secs() as i64)
    };
    let threshold = duration(ann::CU_SOON_TO_EXPIRE_THRESHOLD, 90 * 86_400);
    let issue_time = chain.iter().map(|c| c.not_before).max().unwrap_or(0);
    let expiry_time = chain.iter().map(|c| c.not_after).min().unwrap_or(0);
    let soon = now + threshold > expiry_time;
    let warning = soon.then(|| {
        format!(
            "Certificate expiring in {} days",
            (expiry_time - now).div_euclid(86_400)
        )
    });
    let every = if soon {
        duration(ann::CU_SOON_TO_EXPIRE_CHECK_FREQUENCY, 3_600)
    } else {
        duration(ann::CU_CERT_EXPIRY_CHECK_FREQUENCY, 7 * 86_400)
    };
    Some(Ok(ExpiryCheck {
        issue_time,
        expiry_time,
        warning,
        next_check: now + every.max(60),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{hand_made, self_signed_pem};
    use certwright_pki::{KeyAlgorithm, PrivateKey};

    fn annotated(s: &mut SecretData, pairs: &[(&str, &str)]) {
        for (k, v) in pairs {
            s.annotations.insert(k.to_string(), v.to_string());
        }
    }

    #[test]
    fn a_hand_made_secret_gets_stable_keystores_and_info() {
        let mut s = hand_made("hand.example.com");
        assert!(secret_outputs(&s).expect("nothing asked").is_empty());
        annotated(
            &mut s,
            &[
                (ann::CU_GENERATE_JAVA_KEYSTORES, "true"),
                (ann::CU_JAVA_KEYSTORE_PASSWORD, "s3cret"),
                (ann::CU_GENERATE_CERT_INFO, "true"),
            ],
        );
        let out = secret_outputs(&s).expect("outputs");
        let names: Vec<&str> = out.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "ca.crt.info",
                "keystore.jks",
                "tls.crt.info",
                "truststore.jks"
            ]
        );
        let ks = certwright_pki::jks::decode(&out["keystore.jks"], "s3cret").expect("opens");
        assert!(
            matches!(&ks[0], certwright_pki::jks::Entry::PrivateKey { alias, .. } if alias == "alias")
        );
        let info = String::from_utf8_lossy(&out["tls.crt.info"]).into_owned();
        assert!(info.contains("DNS:hand.example.com"), "{info}");
        // Written back, nothing more to write: the same input gives the same content.
        s.data.extend(out.clone());
        assert!(secret_outputs(&s).expect("again").is_empty());
        // Rendered again from scratch, the bytes are the same (no restart rewrites).
        let mut fresh = s.clone();
        fresh.data.remove("keystore.jks");
        assert_eq!(
            secret_outputs(&fresh).expect("again")["keystore.jks"],
            out["keystore.jks"]
        );
    }

    #[test]
    fn a_pkcs1_key_is_converted_and_bad_secrets_are_named() {
        let mut s = hand_made("rsa.example.com");
        let key = PrivateKey::generate(KeyAlgorithm::Rsa(2048)).expect("key");
        // Replace the pair with an RSA key in PKCS#1 and a certificate for it.
        let rsa = self_signed_pem(&key, "rsa.example.com");
        s.data.insert(keys::TLS_CRT.into(), rsa.into_bytes());
        s.data.insert(
            keys::TLS_KEY.into(),
            key.to_pem(KeyEncoding::Pkcs1).expect("pkcs1").into_bytes(),
        );
        assert!(String::from_utf8_lossy(&s.data[keys::TLS_KEY]).contains("BEGIN RSA PRIVATE KEY"));
        annotated(&mut s, &[(ann::CU_GENERATE_JAVA_KEYSTORES, "true")]);
        let out = secret_outputs(&s).expect("converted, not refused");
        assert!(certwright_pki::jks::decode(&out["keystore.jks"], "changeme").is_ok());
        s.data.insert(keys::TLS_KEY.into(), b"garbage".to_vec());
        let e = secret_outputs(&s).expect_err("bad key");
        assert!(
            e.message.starts_with("tls.key:") && !e.message.contains("garbage"),
            "{e}"
        );
        s.data.remove(keys::TLS_CRT);
        assert_eq!(
            secret_outputs(&s).expect_err("no cert").message,
            "tls.crt: missing or empty"
        );
    }

    #[test]
    fn expiry_alerts_follow_the_threshold_and_frequencies() {
        let mut s = hand_made("soon.example.com");
        assert_eq!(expiry_check(&s, 1_850_000_000), None, "not asked");
        annotated(&mut s, &[(ann::CU_GENERATE_CERT_EXPIRY_ALERT, "true")]);
        // Valid until 1_900_000_000: 50,000,000 s (578 days) away, no alert.
        let far = expiry_check(&s, 1_850_000_000).expect("asked").expect("ok");
        assert_eq!(
            (far.issue_time, far.expiry_time),
            (1_800_000_000, 1_900_000_000)
        );
        assert_eq!(far.warning, None);
        assert_eq!(far.next_check, 1_850_000_000 + 7 * 86_400);
        // 30 days before expiry: a warning, and hourly checks.
        let now = 1_900_000_000 - 30 * 86_400;
        let soon = expiry_check(&s, now).expect("asked").expect("ok");
        assert_eq!(
            soon.warning.as_deref(),
            Some("Certificate expiring in 30 days")
        );
        assert_eq!(soon.next_check, now + 3_600);
        // A threshold of 10 days and a bad frequency (the default then).
        annotated(
            &mut s,
            &[
                (ann::CU_SOON_TO_EXPIRE_THRESHOLD, "240h"),
                (ann::CU_CERT_EXPIRY_CHECK_FREQUENCY, "often"),
            ],
        );
        let later = expiry_check(&s, now).expect("asked").expect("ok");
        assert_eq!((later.warning, later.next_check), (None, now + 7 * 86_400));
    }

    #[test]
    fn a_configmap_bundle_becomes_a_truststore() {
        let s = hand_made("ca.example.com");
        let bundle = String::from_utf8(s.data[keys::TLS_CRT].clone()).expect("pem");
        let mut a = BTreeMap::new();
        let data = BTreeMap::from([("ca-bundle.crt".to_string(), bundle)]);
        assert_eq!(
            configmap_truststore(&a, &data, &BTreeMap::new()).expect("none"),
            None
        );
        a.insert(
            ann::CU_GENERATE_JAVA_TRUSTSTORE.to_string(),
            "true".to_string(),
        );
        let store = configmap_truststore(&a, &data, &BTreeMap::new())
            .expect("ok")
            .expect("a store");
        let entries = certwright_pki::jks::decode(&store, "changeit").expect("changeit");
        assert!(
            matches!(&entries[0], certwright_pki::jks::Entry::TrustedCert { alias, .. } if alias == "alias0")
        );
        let binary = BTreeMap::from([(keys::TRUSTSTORE_JKS.to_string(), store)]);
        assert_eq!(
            configmap_truststore(&a, &data, &binary).expect("same"),
            None
        );
        a.insert(ann::CU_SOURCE_CA_KEY.to_string(), "other.pem".to_string());
        let e = configmap_truststore(&a, &data, &binary).expect_err("missing source");
        assert!(e.message.starts_with("other.pem: missing"), "{e}");
    }
}
