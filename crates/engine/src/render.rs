//! Rendering a Secret's content from certificate material and output options, and
//! comparing it with what is there by content, so nothing is rewritten needlessly.

use crate::observe::SecretData;
use certwright_api::annotations::{self as ann, keys};
use certwright_api::validate::CertificateParams;
use certwright_pki::inspect::CertInfo;
use certwright_pki::{jks, pem, pkcs12, KeyEncoding, PrivateKey};
use std::collections::BTreeMap;

/// Resolved keystore passwords (the shell reads password Secrets).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Passwords {
    pub jks: Option<String>,
    pub pkcs12: Option<String>,
}

impl std::fmt::Debug for Passwords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Passwords(redacted)")
    }
}

/// Key material to render.
pub struct Material<'a> {
    pub key: &'a PrivateKey,
    /// Leaf first.
    pub chain: &'a [CertInfo],
    pub ca: &'a [CertInfo],
}

/// Keystore options derived from a Certificate or from cert-utils annotations.
#[derive(Clone, PartialEq, Eq)]
pub struct KeystoreOptions {
    pub jks: Option<(String, String, TrustAliases)>,
    pub pkcs12: Option<(String, String, pkcs12::Profile)>,
}

/// How trust store entries are named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrustAliases {
    /// `ca`, `ca-1`, … (cert-manager)
    Ca,
    /// `alias0`, `alias1`, … (cert-utils-operator)
    Numbered,
}

impl TrustAliases {
    fn alias(self, i: usize) -> String {
        match (self, i) {
            (TrustAliases::Ca, 0) => "ca".into(),
            (TrustAliases::Ca, n) => format!("ca-{n}"),
            (TrustAliases::Numbered, n) => format!("alias{n}"),
        }
    }
}

/// Which keystores a Secret gets: the Certificate's `spec.keystores` first; otherwise
/// cert-utils-operator's `generate-java-keystores` annotation on the Secret (password from
/// `java-keystore-password`, default `changeme`; key alias `alias`).
pub fn keystore_options(
    params: Option<&CertificateParams>,
    passwords: &Passwords,
    secret_annotations: &BTreeMap<String, String>,
) -> KeystoreOptions {
    let mut out = KeystoreOptions {
        jks: None,
        pkcs12: None,
    };
    if let Some(p) = params {
        if let (Some(j), Some(pw)) = (&p.jks, &passwords.jks) {
            out.jks = Some((j.alias.clone(), pw.clone(), TrustAliases::Ca));
        }
        if let (Some(k), Some(pw)) = (&p.pkcs12, &passwords.pkcs12) {
            out.pkcs12 = Some(("certificate".into(), pw.clone(), k.profile));
        }
    }
    let cu = secret_annotations
        .get(ann::CU_GENERATE_JAVA_KEYSTORES)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    if cu && out.jks.is_none() {
        let pw = secret_annotations
            .get(ann::CU_JAVA_KEYSTORE_PASSWORD)
            .cloned()
            .unwrap_or_else(|| ann::CU_DEFAULT_PASSWORD.into());
        out.jks = Some((ann::CU_KEY_ALIAS.into(), pw, TrustAliases::Numbered));
    }
    out
}

/// The chain a keystore's key entry carries: tls.crt's certificates, then the CA
/// certificates not already in it.
fn full_chain(m: &Material<'_>) -> Vec<Vec<u8>> {
    let mut chain: Vec<Vec<u8>> = m.chain.iter().map(|c| c.der.clone()).collect();
    for c in m.ca {
        if !chain.contains(&c.der) {
            chain.push(c.der.clone());
        }
    }
    chain
}

/// Why a Secret's outputs could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("encoding the private key: {0}")]
    Key(#[from] certwright_pki::key::KeyError),
    #[error("re-reading the private key: {0}")]
    Pem(#[from] pem::PemError),
    #[error("{0}")]
    Pkcs12(#[from] pkcs12::Pkcs12Error),
}

/// Renders the data keys derived from key material: PEM files, keystores, extra formats.
pub fn render_data(
    m: &Material<'_>,
    encoding: KeyEncoding,
    ks: &KeystoreOptions,
    der_output: bool,
    combined_pem: bool,
) -> Result<BTreeMap<String, Vec<u8>>, RenderError> {
    let mut data = BTreeMap::new();
    let chain_pem: String = m
        .chain
        .iter()
        .map(|c| pem::encode("CERTIFICATE", &c.der))
        .collect();
    let ca_pem: String =
        m.ca.iter()
            .map(|c| pem::encode("CERTIFICATE", &c.der))
            .collect();
    let key_pem = m.key.to_pem(encoding)?;
    data.insert(keys::TLS_CRT.into(), chain_pem.clone().into_bytes());
    data.insert(keys::TLS_KEY.into(), key_pem.clone().into_bytes());
    data.insert(keys::CA_CRT.into(), ca_pem.into_bytes());
    let stamp = m.chain.first().map(|c| c.not_before * 1000).unwrap_or(0);
    let chain = full_chain(m);
    if let Some((alias, pw, trust)) = &ks.jks {
        let key_entry = jks::Entry::PrivateKey {
            alias: alias.clone(),
            pkcs8: m.key.pkcs8_der().to_vec(),
            chain: chain.clone(),
        };
        data.insert(
            keys::KEYSTORE_JKS.into(),
            jks::encode(&[key_entry], pw, stamp),
        );
        data.insert(
            keys::TRUSTSTORE_JKS.into(),
            jks_truststore(m.ca, *trust, pw, stamp),
        );
    }
    if let Some((alias, pw, profile)) = &ks.pkcs12 {
        let entry = pkcs12::KeyEntry {
            alias,
            pkcs8: m.key.pkcs8_der(),
            chain: &chain,
        };
        let ks = pkcs12::encode(Some(&entry), &[], pw, *profile)?;
        data.insert(keys::KEYSTORE_P12.into(), ks);
        let trusted: Vec<(String, Vec<u8>)> =
            m.ca.iter()
                .enumerate()
                .map(|(i, c)| (TrustAliases::Ca.alias(i), c.der.clone()))
                .collect();
        data.insert(
            keys::TRUSTSTORE_P12.into(),
            trust_store_p12(&trusted, pw, *profile)?,
        );
    }
    if combined_pem {
        data.insert(
            keys::TLS_COMBINED_PEM.into(),
            format!("{key_pem}{chain_pem}").into_bytes(),
        );
    }
    if der_output {
        let blocks = pem::decode_all(key_pem.as_bytes())?;
        data.insert(keys::KEY_DER.into(), blocks[0].der.clone());
    }
    Ok(data)
}

/// A JKS truststore of `certs`, named by `aliases`, stamped `stamp_ms` (so that the same
/// input gives the same bytes).
pub fn jks_truststore(
    certs: &[CertInfo],
    aliases: TrustAliases,
    pw: &str,
    stamp_ms: i64,
) -> Vec<u8> {
    let trusted: Vec<jks::Entry> = certs
        .iter()
        .enumerate()
        .map(|(i, c)| jks::Entry::TrustedCert {
            alias: aliases.alias(i),
            cert: c.der.clone(),
        })
        .collect();
    jks::encode(&trusted, pw, stamp_ms)
}

/// A PKCS#12 trust store, memoized: many certificates share one CA, and the store's bytes
/// depend only on the CA certificates, aliases, password and profile (the encoding is
/// deterministic), so its key derivations run once per CA rather than once per secret.
fn trust_store_p12(
    trusted: &[(String, Vec<u8>)],
    pw: &str,
    profile: pkcs12::Profile,
) -> Result<Vec<u8>, RenderError> {
    use aws_lc_rs::digest;
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static CACHE: OnceLock<Mutex<HashMap<Vec<u8>, Vec<u8>>>> = OnceLock::new();
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(format!("{profile:?}").as_bytes());
    ctx.update(&(pw.len() as u64).to_be_bytes());
    ctx.update(pw.as_bytes());
    for (alias, der) in trusted {
        ctx.update(&(alias.len() as u64).to_be_bytes());
        ctx.update(alias.as_bytes());
        ctx.update(&(der.len() as u64).to_be_bytes());
        ctx.update(der);
    }
    let key = ctx.finish().as_ref().to_vec();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(hit) = cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
        return Ok(hit);
    }
    let bytes = pkcs12::encode(None, trusted, pw, profile)?;
    if let Ok(mut c) = cache.lock() {
        if c.len() >= 256 {
            c.clear();
        }
        c.insert(key, bytes.clone());
    }
    Ok(bytes)
}

/// The cert-manager annotations on an issued Secret.
pub fn issued_annotations(
    cert_name: &str,
    params: &CertificateParams,
    leaf: &CertInfo,
) -> BTreeMap<String, String> {
    let s = &params.issuance;
    let mut a = BTreeMap::new();
    a.insert(ann::CERT_NAME.into(), cert_name.into());
    a.insert(ann::ISSUER_NAME.into(), s.issuer_name.clone());
    a.insert(ann::ISSUER_KIND.into(), s.issuer_kind.as_str().into());
    // As cert-manager: the kind defaults to Issuer, the group is what the spec says.
    a.insert(
        ann::ISSUER_GROUP.into(),
        params.issuer_group_written.clone(),
    );
    a.insert(
        ann::COMMON_NAME.into(),
        leaf.common_name.clone().unwrap_or_default(),
    );
    a.insert(ann::ALT_NAMES.into(), leaf.dns_names.join(","));
    a.insert(
        ann::IP_SANS.into(),
        leaf.ip_addresses
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(","),
    );
    a.insert(ann::URI_SANS.into(), leaf.uris.join(","));
    // The issued certificate's subject, each list one CSV line, and its email addresses, as
    // cert-manager writes them: left out when empty (cert-manager's AnnotationsForCertificate
    // keeps only common-name and the three SAN lists when empty).
    let f = &leaf.subject_fields;
    if let Some(serial) = f.serial_number.as_ref().filter(|s| !s.is_empty()) {
        a.insert(ann::SUBJECT_SERIAL_NUMBER.into(), serial.clone());
    }
    for (key, values) in [
        (ann::EMAIL_SANS, &leaf.email_addresses),
        (ann::SUBJECT_ORGANIZATIONS, &f.organizations),
        (ann::SUBJECT_ORGANIZATIONAL_UNITS, &f.organizational_units),
        (ann::SUBJECT_COUNTRIES, &f.countries),
        (ann::SUBJECT_PROVINCES, &f.provinces),
        (ann::SUBJECT_LOCALITIES, &f.localities),
        (ann::SUBJECT_POSTAL_CODES, &f.postal_codes),
        (ann::SUBJECT_STREET_ADDRESSES, &f.street_addresses),
    ] {
        if !values.is_empty() {
            a.insert(key.into(), csv_line(values));
        }
    }
    a
}

/// One CSV line, quoted as Go's encoding/csv quotes (a field with a comma, a quote or a
/// line break, or starting with a space, is quoted and its quotes doubled).
fn csv_line(values: &[String]) -> String {
    values
        .iter()
        .map(|v| {
            let quote = v.contains([',', '"', '\r', '\n']) || v.starts_with(char::is_whitespace);
            if quote {
                format!("\"{}\"", v.replace('"', "\"\""))
            } else {
                v.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Keys whose content differs between `desired` and `current`. PEM values compare by
/// their decoded blocks, keystores by what they hold (opened with `ks`'s passwords), so a
/// keystore written by another tool with the same content is kept.
pub fn changed_keys(
    desired: &BTreeMap<String, Vec<u8>>,
    current: &SecretData,
    ks: &KeystoreOptions,
) -> Vec<String> {
    let mut out = Vec::new();
    for (k, want) in desired {
        let Some(have) = current.data.get(k) else {
            out.push(k.clone());
            continue;
        };
        if have == want {
            continue;
        }
        let same = match k.as_str() {
            keys::TLS_CRT | keys::TLS_KEY | keys::CA_CRT | keys::TLS_COMBINED_PEM => {
                match (pem::decode_all(have), pem::decode_all(want)) {
                    (Ok(a), Ok(b)) => a == b,
                    (Err(_), Err(_)) => have.is_empty() && want.is_empty(),
                    _ => false,
                }
            }
            keys::KEYSTORE_JKS | keys::TRUSTSTORE_JKS => ks
                .jks
                .as_ref()
                .is_some_and(|(_, pw, _)| same_jks(have, want, pw)),
            keys::KEYSTORE_P12 | keys::TRUSTSTORE_P12 => ks
                .pkcs12
                .as_ref()
                .is_some_and(|(_, pw, _)| same_p12(have, want, pw)),
            _ => false,
        };
        if !same {
            out.push(k.clone());
        }
    }
    out
}

fn key_spki(pkcs8: &[u8]) -> Option<Vec<u8>> {
    PrivateKey::from_pkcs8_der(pkcs8)
        .ok()
        .map(|k| k.spki_der().to_vec())
}

/// Whether two JKS stores hold the same entries (aliases, keys by their public key,
/// certificates), whatever their bytes.
pub fn same_jks(have: &[u8], want: &[u8], pw: &str) -> bool {
    let (Ok(a), Ok(b)) = (jks::decode(have, pw), jks::decode(want, pw)) else {
        return false;
    };
    /// (alias, public key of the private key if any, certificates)
    type Normalized = (String, Option<Vec<u8>>, Vec<Vec<u8>>);
    let norm = |v: Vec<jks::Entry>| -> Vec<Normalized> {
        v.into_iter()
            .map(|e| match e {
                jks::Entry::PrivateKey {
                    alias,
                    pkcs8,
                    chain,
                } => (alias.to_lowercase(), key_spki(&pkcs8), chain),
                jks::Entry::TrustedCert { alias, cert } => (alias.to_lowercase(), None, vec![cert]),
            })
            .collect()
    };
    norm(a) == norm(b)
}

fn same_p12(have: &[u8], want: &[u8], pw: &str) -> bool {
    let (Ok(a), Ok(b)) = (pkcs12::decode(have, pw), pkcs12::decode(want, pw)) else {
        return false;
    };
    let keys = |c: &pkcs12::Contents| -> Vec<(Option<String>, Option<Vec<u8>>)> {
        c.keys
            .iter()
            .map(|k| (k.friendly_name.clone(), key_spki(&k.pkcs8)))
            .collect()
    };
    let certs = |c: &pkcs12::Contents| -> Vec<(Vec<u8>, bool)> {
        let mut v: Vec<(Vec<u8>, bool)> =
            c.certs.iter().map(|c| (c.der.clone(), c.trusted)).collect();
        v.sort();
        v
    };
    keys(&a) == keys(&b) && certs(&a) == certs(&b)
}

/// Keys certwright writes into a Certificate's Secret; others are preserved.
pub const MANAGED_KEYS: [&str; 9] = [
    keys::TLS_CRT,
    keys::TLS_KEY,
    keys::CA_CRT,
    keys::KEYSTORE_JKS,
    keys::TRUSTSTORE_JKS,
    keys::KEYSTORE_P12,
    keys::TRUSTSTORE_P12,
    keys::TLS_COMBINED_PEM,
    keys::KEY_DER,
];

/// A Secret's desired content, and whether it differs from the current one.
#[derive(Debug)]
pub struct Desired {
    pub secret: SecretData,
    /// False when the current Secret already holds this content: write nothing.
    pub changed: bool,
}

/// Merges rendered keys into `desired`: values whose content equals the current ones keep
/// their current bytes (so another tool's keystore with the same entries is kept).
pub fn settle(
    mut desired: SecretData,
    rendered: BTreeMap<String, Vec<u8>>,
    current: Option<&SecretData>,
    ks: &KeystoreOptions,
) -> Desired {
    let empty = SecretData::default();
    let cur = current.unwrap_or(&empty);
    let changed = changed_keys(&rendered, cur, ks);
    for (k, v) in rendered {
        match cur.data.get(&k) {
            Some(old) if !changed.contains(&k) => desired.data.insert(k, old.clone()),
            _ => desired.data.insert(k, v),
        };
    }
    let same = current.is_some()
        && cur.data == desired.data
        && cur.annotations == desired.annotations
        && cur.labels == desired.labels
        && cur.type_ == desired.type_;
    Desired {
        secret: desired,
        changed: !same,
    }
}

/// The whole Secret a Certificate should have: rendered key material and keystores,
/// cert-manager's annotations, the template's annotations and labels, the managed label,
/// and any keys others put there (kept, as cert-manager keeps them). `base` is a Secret
/// definition of the same name whose annotations, labels and extra keys apply too.
#[allow(clippy::too_many_arguments)]
pub fn certificate_secret(
    cert_name: &str,
    params: &CertificateParams,
    m: &Material<'_>,
    passwords: &Passwords,
    base: Option<&SecretData>,
    current: Option<&SecretData>,
    metadata: Metadata,
) -> Result<Desired, RenderError> {
    let mut annotations = base.map(|b| b.annotations.clone()).unwrap_or_default();
    annotations.extend(params.secret_annotations.clone());
    // In a cluster, annotations others put on the Secret stay, and cert-utils'
    // keystore annotation is honoured wherever it comes from (`kubectl annotate` too).
    let all = match (metadata, current) {
        (Metadata::KeepOthers, Some(c)) => {
            let mut all = c.annotations.clone();
            all.extend(annotations.clone());
            all
        }
        _ => annotations.clone(),
    };
    let ks = keystore_options(Some(params), passwords, &all);
    let mut rendered = render_data(
        m,
        params.encoding,
        &ks,
        params.output_der,
        params.output_combined_pem,
    )?;
    // cert-utils' certificate info, in the same write as the certificate it describes.
    if crate::annotated::on(&all, ann::CU_GENERATE_CERT_INFO) {
        rendered.extend(crate::annotated::cert_info(m.chain, m.ca));
    }
    let mut desired = SecretData {
        type_: Some(ann::SECRET_TYPE_TLS.into()),
        ..Default::default()
    };
    for src in [current, base].into_iter().flatten() {
        for (k, v) in &src.data {
            if !MANAGED_KEYS.contains(&k.as_str()) {
                desired.data.insert(k.clone(), v.clone());
            }
        }
    }
    if let Some(b) = base {
        desired.labels.extend(b.labels.clone());
    }
    desired.annotations = annotations;
    desired
        .annotations
        .extend(issued_annotations(cert_name, params, &m.chain[0]));
    desired.labels.extend(params.secret_labels.clone());
    desired
        .labels
        .insert(ann::CONTROLLED_LABEL.into(), "true".into());
    if metadata == Metadata::KeepOthers {
        keep_others_metadata(&mut desired, params, current);
    }
    Ok(settle(desired, rendered, current, &ks))
}

/// Whose labels and annotations a Secret may carry besides the ones certwright sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metadata {
    /// The Secret's whole definition is known (the local runtime, from manifests):
    /// anything else on it is removed.
    Exact,
    /// Others may label and annotate the Secret (a cluster: users, backup or replication
    /// tools): what certwright does not manage is kept, and its presence is no change.
    KeepOthers,
}

/// Keys in the namespaces certwright (and cert-manager before it) manages.
fn managed_metadata_key(key: &str) -> bool {
    ann::MANAGED_PREFIXES.iter().any(|p| key.starts_with(p))
}

fn keep_others_metadata(
    desired: &mut SecretData,
    params: &CertificateParams,
    current: Option<&SecretData>,
) {
    let mut template: Vec<String> = params
        .secret_labels
        .keys()
        .map(|k| format!("label:{k}"))
        .chain(
            params
                .secret_annotations
                .keys()
                .map(|k| format!("annotation:{k}")),
        )
        .collect();
    template.sort();
    if !template.is_empty() {
        desired
            .annotations
            .insert(ann::TEMPLATE_KEYS.into(), template.join(","));
    }
    let Some(cur) = current else {
        return;
    };
    let previous: std::collections::BTreeSet<&str> = cur
        .annotations
        .get(ann::TEMPLATE_KEYS)
        .map(|v| v.split(',').collect())
        .unwrap_or_default();
    for (kind, from, to) in [
        ("label", &cur.labels, &mut desired.labels),
        ("annotation", &cur.annotations, &mut desired.annotations),
    ] {
        for (k, v) in from {
            if !managed_metadata_key(k) && !previous.contains(format!("{kind}:{k}").as_str()) {
                to.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
    }
}
