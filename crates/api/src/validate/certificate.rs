//! Certificates: cert-manager's rules and defaults, one check per part of the spec.

use super::{
    check_dns_name, check_duration, check_email, check_name, check_uri, check_usages, fe,
    is_dns1123_subdomain, issuer_kind, parse_cidr, parse_duration_field, usage, FieldError,
    IssuerKind, KeyType, Usage, DEFAULT_REVISION_HISTORY_LIMIT, MIN_RENEW_BEFORE,
};
use crate::duration;
use crate::types::{Certificate, CertificateSpec, NameConstraintItem, SecretKeySelector};
use certwright_pki::cert::{KeyUsage, NameConstraintItems, NameConstraints};
use certwright_pki::{Curve, KeyAlgorithm, KeyEncoding};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

/// Where a certificate's subject comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubjectSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub literal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<crate::types::X509Subject>,
}

/// The issuance-relevant part of a Certificate: when any of it changes, the certificate
/// is reissued. Stored with each request so that a later spec can be compared with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IssuanceSpec {
    pub subject: SubjectSpec,
    #[serde(default)]
    pub dns_names: Vec<String>,
    #[serde(default)]
    pub ip_addresses: Vec<IpAddr>,
    #[serde(default)]
    pub uris: Vec<String>,
    #[serde(default)]
    pub email_addresses: Vec<String>,
    pub is_ca: bool,
    /// Normalized usage names, sorted.
    #[serde(default)]
    pub usages: Vec<String>,
    pub key_algorithm: KeyType,
    pub key_size: u32,
    pub duration_seconds: u64,
    pub issuer_name: String,
    pub issuer_kind: IssuerKind,
    pub issuer_group: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_constraints: Option<crate::types::NameConstraintsSpec>,
    pub encode_usages_in_request: bool,
}

impl IssuanceSpec {
    /// Fields that differ from `other`, by their Certificate spec path.
    pub fn changed_fields(&self, other: &IssuanceSpec) -> Vec<&'static str> {
        let mut out = Vec::new();
        let sorted = |v: &[String]| {
            let mut v = v.to_vec();
            v.sort();
            v.dedup();
            v
        };
        if self.subject.common_name != other.subject.common_name {
            out.push("spec.commonName");
        }
        if self.subject.literal != other.subject.literal {
            out.push("spec.literalSubject");
        }
        if self.subject.fields.clone().unwrap_or_default()
            != other.subject.fields.clone().unwrap_or_default()
        {
            out.push("spec.subject");
        }
        if sorted(&self.dns_names) != sorted(&other.dns_names) {
            out.push("spec.dnsNames");
        }
        let mut a = self.ip_addresses.clone();
        let mut b = other.ip_addresses.clone();
        a.sort();
        b.sort();
        if a != b {
            out.push("spec.ipAddresses");
        }
        if sorted(&self.uris) != sorted(&other.uris) {
            out.push("spec.uris");
        }
        if sorted(&self.email_addresses) != sorted(&other.email_addresses) {
            out.push("spec.emailAddresses");
        }
        if self.is_ca != other.is_ca {
            out.push("spec.isCA");
        }
        if self.usages != other.usages
            || self.encode_usages_in_request != other.encode_usages_in_request
        {
            out.push("spec.usages");
        }
        if self.key_algorithm != other.key_algorithm {
            out.push("spec.privateKey.algorithm");
        }
        if self.key_size != other.key_size {
            out.push("spec.privateKey.size");
        }
        if self.duration_seconds != other.duration_seconds {
            out.push("spec.duration");
        }
        if (&self.issuer_name, &self.issuer_kind, &self.issuer_group)
            != (&other.issuer_name, &other.issuer_kind, &other.issuer_group)
        {
            out.push("spec.issuerRef");
        }
        if self.name_constraints != other.name_constraints {
            out.push("spec.nameConstraints");
        }
        out
    }

    pub fn key(&self) -> KeyAlgorithm {
        match self.key_algorithm {
            KeyType::Ecdsa => KeyAlgorithm::Ecdsa(match self.key_size {
                384 => Curve::P384,
                521 => Curve::P521,
                _ => Curve::P256,
            }),
            KeyType::Ed25519 => KeyAlgorithm::Ed25519,
            KeyType::Rsa | KeyType::FromRequest => KeyAlgorithm::Rsa(self.key_size),
        }
    }

    pub fn duration(&self) -> Duration {
        Duration::from_secs(self.duration_seconds)
    }

    /// Key usages and extended key usages with cert-manager's defaults applied: no usages
    /// means digital signature and key encipherment; a CA also gets cert sign.
    pub fn effective_usages(&self) -> (Vec<KeyUsage>, Vec<String>) {
        let mut ku = Vec::new();
        let mut ext = Vec::new();
        let names: Vec<&str> = if self.usages.is_empty() {
            vec!["digital signature", "key encipherment"]
        } else {
            self.usages.iter().map(String::as_str).collect()
        };
        for n in names {
            match usage(n) {
                Some(Usage::Key(k)) if !ku.contains(&k) => ku.push(k),
                Some(Usage::Ext(o)) if !ext.iter().any(|e: &String| e == o) => {
                    ext.push(o.to_string())
                }
                _ => {}
            }
        }
        if self.is_ca && !ku.contains(&KeyUsage::CertSign) {
            ku.push(KeyUsage::CertSign);
        }
        ku.sort();
        ext.sort();
        (ku, ext)
    }

    pub fn name_constraints_pki(&self) -> Option<NameConstraints> {
        let nc = self.name_constraints.as_ref()?;
        let conv = |i: &Option<NameConstraintItem>| -> NameConstraintItems {
            let Some(i) = i else {
                return NameConstraintItems::default();
            };
            NameConstraintItems {
                dns_domains: i.dns_domains.clone(),
                ip_ranges: i
                    .ip_ranges
                    .iter()
                    .filter_map(|r| parse_cidr(r).ok())
                    .collect(),
                email_addresses: i.email_addresses.clone(),
                uri_domains: i.uri_domains.clone(),
            }
        };
        Some(NameConstraints {
            critical: nc.critical,
            permitted: conv(&nc.permitted),
            excluded: conv(&nc.excluded),
        })
    }
}

/// `spec.renewal`: whether renewal is scheduled, and the windows it must start in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Renewal {
    /// Renew at the renewBefore time, moved into a window if there are windows.
    #[default]
    RenewBefore,
    Windows(Vec<RenewalWindow>),
    /// Never renewed; reissued only when missing, changed or expired.
    Disabled,
}

/// One window: when it opens, and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenewalWindow {
    pub schedule: crate::cron::Schedule,
    pub duration: Duration,
}

fn renewal(spec: &CertificateSpec, errors: &mut Vec<FieldError>) -> Renewal {
    const F: &str = "spec.renewal";
    let Some(r) = &spec.renewal else {
        return Renewal::RenewBefore;
    };
    match r.policy.as_str() {
        "Disabled" if !r.windows.is_empty() => {
            errors.push(fe(
                "InvalidRenewal",
                format!("{F}.windows"),
                "windows cannot be set when spec.renewal.policy is Disabled",
            ));
            return Renewal::Disabled;
        }
        "Disabled" => return Renewal::Disabled,
        "RenewBefore" => {}
        other => {
            errors.push(fe(
                "InvalidRenewal",
                format!("{F}.policy"),
                format!("{other:?} must be RenewBefore or Disabled"),
            ));
            return Renewal::RenewBefore;
        }
    }
    let mut windows = Vec::new();
    for (i, w) in r.windows.iter().enumerate() {
        let field = format!("{F}.windows[{i}]");
        let duration = match w.window_duration.as_deref().map(duration::parse) {
            None => {
                errors.push(fe(
                    "InvalidRenewal",
                    format!("{field}.windowDuration"),
                    "required (how long each window stays open)",
                ));
                None
            }
            Some(Ok(d)) if d.is_zero() => {
                errors.push(fe(
                    "InvalidRenewal",
                    format!("{field}.windowDuration"),
                    "must be greater than 0",
                ));
                None
            }
            Some(Ok(d)) => Some(d),
            Some(Err(e)) => {
                errors.push(fe(
                    "InvalidRenewal",
                    format!("{field}.windowDuration"),
                    e.to_string(),
                ));
                None
            }
        };
        let tz = w.timezone.as_deref().unwrap_or_default();
        if let Err(e) = crate::cron::time_zone(tz) {
            errors.push(fe("InvalidRenewal", format!("{field}.timezone"), e));
            continue;
        }
        let schedule = match crate::cron::Schedule::parse(w.cron.as_deref().unwrap_or_default(), tz)
        {
            Ok(s) => Some(s),
            Err(e) => {
                let reason = if e.unsupported {
                    "UnsupportedRenewal"
                } else {
                    "InvalidRenewal"
                };
                errors.push(fe(reason, format!("{field}.cron"), e.message));
                None
            }
        };
        if let (Some(schedule), Some(duration)) = (schedule, duration) {
            windows.push(RenewalWindow { schedule, duration });
        }
    }
    if windows.is_empty() {
        Renewal::RenewBefore
    } else {
        Renewal::Windows(windows)
    }
}

/// When to renew, before the certificate's actual expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RenewBefore {
    Default,
    Duration(Duration),
    Percentage(u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum RotationPolicy {
    /// A new private key for every issuance (cert-manager's default since v1.18).
    #[default]
    Always,
    Never,
}

/// A keystore password: literal or from a Secret key.
#[derive(Clone, PartialEq, Eq)]
pub enum PasswordSource {
    Literal(String),
    SecretRef { name: String, key: String },
}

impl fmt::Debug for PasswordSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PasswordSource::Literal(_) => write!(f, "Literal(redacted)"),
            PasswordSource::SecretRef { name, key } => write!(f, "SecretRef({name}/{key})"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JksOutput {
    pub password: PasswordSource,
    pub alias: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pkcs12Output {
    pub password: PasswordSource,
    pub profile: certwright_pki::pkcs12::Profile,
}

/// A validated Certificate with defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateParams {
    pub issuance: IssuanceSpec,
    pub renew_before: RenewBefore,
    pub renewal: Renewal,
    pub encoding: KeyEncoding,
    pub rotation_policy: RotationPolicy,
    pub secret_name: String,
    pub secret_annotations: BTreeMap<String, String>,
    pub secret_labels: BTreeMap<String, String>,
    pub jks: Option<JksOutput>,
    pub pkcs12: Option<Pkcs12Output>,
    pub output_der: bool,
    pub output_combined_pem: bool,
    /// How many CertificateRequests of this Certificate to keep (None: all).
    pub revision_history_limit: Option<u32>,
    /// `issuerRef.group` as written (empty when omitted): cert-manager's issuer-group
    /// annotation says what the spec says. Not part of the issuance (no reissue).
    pub issuer_group_written: String,
}

fn password_source(
    literal: &Option<String>,
    reference: &Option<SecretKeySelector>,
    field: &str,
    errors: &mut Vec<FieldError>,
) -> Option<PasswordSource> {
    match (literal, reference) {
        (Some(_), Some(_)) => {
            errors.push(fe(
                "InvalidKeystore",
                field,
                "password and passwordSecretRef are mutually exclusive",
            ));
            None
        }
        (Some(p), None) => {
            if p.is_empty() {
                errors.push(fe(
                    "InvalidKeystore",
                    format!("{field}.password"),
                    "must not be empty",
                ));
            }
            Some(PasswordSource::Literal(p.clone()))
        }
        (None, Some(r)) => {
            if r.name.is_empty() {
                errors.push(fe(
                    "InvalidKeystore",
                    format!("{field}.passwordSecretRef.name"),
                    "required",
                ));
            }
            let key = r.key.clone().unwrap_or_default();
            if key.is_empty() {
                errors.push(fe(
                    "InvalidKeystore",
                    format!("{field}.passwordSecretRef.key"),
                    "required",
                ));
            }
            Some(PasswordSource::SecretRef {
                name: r.name.clone(),
                key,
            })
        }
        (None, None) => {
            errors.push(fe(
                "InvalidKeystore",
                field,
                "one of password or passwordSecretRef is required when create is true",
            ));
            None
        }
    }
}

/// Validates a Certificate and applies cert-manager's defaults.
pub fn certificate(cert: &Certificate) -> Result<CertificateParams, Vec<FieldError>> {
    let mut errors = Vec::new();
    if let Err(e) = check_name(&cert.metadata.name, "metadata.name") {
        errors.push(e);
    }
    let spec: &CertificateSpec = &cert.spec;
    if spec.secret_name.is_empty() {
        errors.push(fe("MissingSecretName", "spec.secretName", "required"));
    } else if !is_dns1123_subdomain(&spec.secret_name) {
        errors.push(fe(
            "InvalidSecretName",
            "spec.secretName",
            format!(
                "{:?} must be a lowercase RFC 1123 subdomain",
                spec.secret_name
            ),
        ));
    }
    if spec.issuer_ref.name.is_empty() {
        errors.push(fe("MissingIssuerRef", "spec.issuerRef.name", "required"));
    }
    let kind = issuer_kind(&spec.issuer_ref, &mut errors);
    let group = spec.issuer_ref.group_or_default().to_string();
    if group != crate::types::GROUP {
        errors.push(fe(
            "UnsupportedIssuer",
            "spec.issuerRef.group",
            format!("external issuer group {group:?} is not supported; use cert-manager.io"),
        ));
    }
    check_subject(spec, &mut errors);
    let ips = alt_names(spec, &mut errors);
    let usages = check_usages(&spec.usages, &mut errors);
    let dur = check_duration(&spec.duration, &mut errors);
    let renew_before = renew_before(spec, dur, &mut errors);
    let renewal = renewal(spec, &mut errors);
    let (algorithm, key_size, encoding, rotation_policy) = private_key(spec, &mut errors);
    check_signature_algorithm(spec, algorithm, &mut errors);
    check_name_constraints(spec, &mut errors);
    let out = outputs(spec, &mut errors);
    let revision_history_limit = match spec.revision_history_limit {
        None => Some(DEFAULT_REVISION_HISTORY_LIMIT),
        Some(n) if n >= 1 => Some(u32::try_from(n).unwrap_or(u32::MAX)),
        Some(n) => {
            errors.push(fe(
                "InvalidRevisionHistoryLimit",
                "spec.revisionHistoryLimit",
                format!("{n}: must be at least 1"),
            ));
            None
        }
    };
    let template = spec.secret_template.clone().unwrap_or_default();
    for k in template.annotations.keys() {
        // The one cert-manager.io annotation a template may set, as cert-manager allows:
        // the Secret's consent to direct CA injection.
        if k.starts_with("cert-manager.io/") && k != crate::annotations::ALLOW_DIRECT_INJECTION {
            errors.push(fe(
                "InvalidSecretTemplate",
                "spec.secretTemplate.annotations",
                format!("{k:?}: cert-manager.io/ annotations are set by the issuer"),
            ));
        }
    }

    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(CertificateParams {
        issuance: IssuanceSpec {
            subject: SubjectSpec {
                literal: spec.literal_subject.clone(),
                common_name: spec.common_name.clone(),
                fields: spec.subject.clone().filter(|s| *s != Default::default()),
            },
            dns_names: spec.dns_names.clone(),
            ip_addresses: ips,
            uris: spec.uris.clone(),
            email_addresses: spec.email_addresses.clone(),
            is_ca: spec.is_ca,
            usages,
            key_algorithm: algorithm,
            key_size,
            duration_seconds: dur.as_secs(),
            issuer_name: spec.issuer_ref.name.clone(),
            issuer_kind: kind.unwrap_or_default(),
            issuer_group: group,
            name_constraints: spec.name_constraints.clone(),
            encode_usages_in_request: spec.encode_usages_in_request.unwrap_or(true),
        },
        renew_before,
        renewal,
        encoding,
        rotation_policy,
        secret_name: spec.secret_name.clone(),
        secret_annotations: template.annotations,
        secret_labels: template.labels,
        jks: out.jks,
        pkcs12: out.pkcs12,
        output_der: out.der,
        output_combined_pem: out.combined_pem,
        revision_history_limit,
        issuer_group_written: spec.issuer_ref.group.clone().unwrap_or_default(),
    })
}

/// The subject: at least one identity, a common name that fits, a literal subject alone.
fn check_subject(spec: &CertificateSpec, errors: &mut Vec<FieldError>) {
    let has_subject_fields = spec
        .subject
        .as_ref()
        .is_some_and(|s| *s != Default::default());
    if spec.common_name.is_none()
        && spec.dns_names.is_empty()
        && spec.ip_addresses.is_empty()
        && spec.uris.is_empty()
        && spec.email_addresses.is_empty()
        && spec.literal_subject.is_none()
    {
        errors.push(fe(
            "MissingIdentity",
            "spec",
            "at least one of commonName, literalSubject, dnsNames, uris, emailAddresses or ipAddresses must be set",
        ));
    }
    if let Some(cn) = &spec.common_name {
        if cn.chars().count() > 64 {
            errors.push(fe(
                "InvalidCommonName",
                "spec.commonName",
                format!(
                    "{} characters; at most 64 (RFC 5280 ub-common-name)",
                    cn.chars().count()
                ),
            ));
        }
        if cn.is_empty() {
            errors.push(fe(
                "InvalidCommonName",
                "spec.commonName",
                "must not be empty when set",
            ));
        }
    }
    if let Some(ls) = &spec.literal_subject {
        if spec.common_name.is_some() || has_subject_fields {
            errors.push(fe(
                "InvalidSubject",
                "spec.literalSubject",
                "cannot be combined with commonName or subject",
            ));
        }
        if let Err(e) = certwright_pki::Name::parse_rfc4514(ls) {
            errors.push(fe(
                "InvalidSubject",
                "spec.literalSubject",
                format!("not an RFC 4514 distinguished name: {e}"),
            ));
        }
    }
}

/// The subject alternative names; the IP addresses parsed.
fn alt_names(spec: &CertificateSpec, errors: &mut Vec<FieldError>) -> Vec<IpAddr> {
    if !spec.other_names.is_empty() {
        errors.push(fe(
            "Unsupported",
            "spec.otherNames",
            "otherNames are not supported by certwright yet",
        ));
    }
    for (i, d) in spec.dns_names.iter().enumerate() {
        if let Err(e) = check_dns_name(d) {
            errors.push(fe(
                "InvalidDNSName",
                format!("spec.dnsNames[{i}]"),
                e.to_string(),
            ));
        }
    }
    let mut ips = Vec::new();
    for (i, ip) in spec.ip_addresses.iter().enumerate() {
        match ip.parse::<IpAddr>() {
            Ok(a) => ips.push(a),
            Err(_) => errors.push(fe(
                "InvalidIPAddress",
                format!("spec.ipAddresses[{i}]"),
                format!("{ip:?} is not an IP address"),
            )),
        }
    }
    for (i, u) in spec.uris.iter().enumerate() {
        if let Err(e) = check_uri(u) {
            errors.push(fe("InvalidURI", format!("spec.uris[{i}]"), e.to_string()));
        }
    }
    for (i, m) in spec.email_addresses.iter().enumerate() {
        if let Err(e) = check_email(m) {
            errors.push(fe(
                "InvalidEmailAddress",
                format!("spec.emailAddresses[{i}]"),
                e.to_string(),
            ));
        }
    }
    ips
}

/// renewBefore or renewBeforePercentage, against the duration `dur`.
fn renew_before(
    spec: &CertificateSpec,
    dur: Duration,
    errors: &mut Vec<FieldError>,
) -> RenewBefore {
    let mut renew_before = RenewBefore::Default;
    if spec.renew_before.is_some() && spec.renew_before_percentage.is_some() {
        errors.push(fe(
            "InvalidRenewBefore",
            "spec.renewBefore",
            "renewBefore and renewBeforePercentage are mutually exclusive",
        ));
    }
    if let Some(rb) = parse_duration_field(&spec.renew_before, "spec.renewBefore", errors) {
        if rb < MIN_RENEW_BEFORE {
            errors.push(fe(
                "InvalidRenewBefore",
                "spec.renewBefore",
                format!("{} is less than the minimum of 5m", duration::format(rb)),
            ));
        } else if rb >= dur {
            errors.push(fe(
                "InvalidRenewBefore",
                "spec.renewBefore",
                format!(
                    "{} must be less than spec.duration ({})",
                    duration::format(rb),
                    duration::format(dur)
                ),
            ));
        }
        renew_before = RenewBefore::Duration(rb);
    }
    if let Some(p) = spec.renew_before_percentage {
        if !(1..=99).contains(&p) {
            errors.push(fe(
                "InvalidRenewBefore",
                "spec.renewBeforePercentage",
                format!("{p} must be between 1 and 99"),
            ));
        } else {
            let rb = dur.mul_f64(p as f64 / 100.0);
            if rb < MIN_RENEW_BEFORE {
                errors.push(fe(
                    "InvalidRenewBefore",
                    "spec.renewBeforePercentage",
                    format!(
                        "{p}% of {} is less than the minimum of 5m",
                        duration::format(dur)
                    ),
                ));
            }
            renew_before = RenewBefore::Percentage(p as u32);
        }
    }

    renew_before
}

/// The private key's algorithm, size, encoding and rotation policy, cert-manager's defaults applied.
fn private_key(
    spec: &CertificateSpec,
    errors: &mut Vec<FieldError>,
) -> (KeyType, u32, KeyEncoding, RotationPolicy) {
    let pk = spec.private_key.clone().unwrap_or_default();
    let algorithm = match pk.algorithm.as_deref() {
        None | Some("") | Some("RSA") => KeyType::Rsa,
        Some("ECDSA") => KeyType::Ecdsa,
        Some("Ed25519") => KeyType::Ed25519,
        Some(other) => {
            errors.push(fe(
                "InvalidPrivateKey",
                "spec.privateKey.algorithm",
                format!("{other:?} must be RSA, ECDSA or Ed25519"),
            ));
            KeyType::Rsa
        }
    };
    let size = pk.size.unwrap_or(0);
    let key_size: u32 = match algorithm {
        KeyType::Rsa => {
            let s = if size == 0 { 2048 } else { size };
            if !(2048..=8192).contains(&s) {
                errors.push(fe(
                    "InvalidPrivateKey",
                    "spec.privateKey.size",
                    format!("RSA key size {s} must be between 2048 and 8192"),
                ));
            } else if ![2048, 3072, 4096, 8192].contains(&s) {
                errors.push(fe(
                    "UnsupportedKeySize",
                    "spec.privateKey.size",
                    format!("RSA key size {s} is not supported: use 2048, 3072, 4096 or 8192"),
                ));
            }
            s as u32
        }
        KeyType::Ecdsa => {
            let s = if size == 0 { 256 } else { size };
            if ![256, 384, 521].contains(&s) {
                errors.push(fe(
                    "InvalidPrivateKey",
                    "spec.privateKey.size",
                    format!("ECDSA key size {s} must be 256, 384 or 521"),
                ));
            }
            s as u32
        }
        _ => {
            if size != 0 {
                errors.push(fe(
                    "InvalidPrivateKey",
                    "spec.privateKey.size",
                    "must not be set for Ed25519 keys",
                ));
            }
            0
        }
    };
    let encoding = match pk.encoding.as_deref() {
        None | Some("") | Some("PKCS1") => KeyEncoding::Pkcs1,
        Some("PKCS8") => KeyEncoding::Pkcs8,
        Some(other) => {
            errors.push(fe(
                "InvalidPrivateKey",
                "spec.privateKey.encoding",
                format!("{other:?} must be PKCS1 or PKCS8"),
            ));
            KeyEncoding::Pkcs1
        }
    };
    let rotation_policy = match pk.rotation_policy.as_deref() {
        None | Some("") | Some("Always") => RotationPolicy::Always,
        Some("Never") => RotationPolicy::Never,
        Some(other) => {
            errors.push(fe(
                "InvalidPrivateKey",
                "spec.privateKey.rotationPolicy",
                format!("{other:?} must be Always or Never"),
            ));
            RotationPolicy::Always
        }
    };
    (algorithm, key_size, encoding, rotation_policy)
}

/// A signatureAlgorithm must fit the key.
fn check_signature_algorithm(
    spec: &CertificateSpec,
    algorithm: KeyType,
    errors: &mut Vec<FieldError>,
) {
    if let Some(sa) = &spec.signature_algorithm {
        let ok = match algorithm {
            KeyType::Rsa => {
                ["SHA256WithRSA", "SHA384WithRSA", "SHA512WithRSA"].contains(&sa.as_str())
            }
            KeyType::Ecdsa => {
                ["ECDSAWithSHA256", "ECDSAWithSHA384", "ECDSAWithSHA512"].contains(&sa.as_str())
            }
            _ => sa == "PureEd25519",
        };
        if !ok {
            errors.push(fe(
                "InvalidSignatureAlgorithm",
                "spec.signatureAlgorithm",
                format!("{sa:?} does not fit a {algorithm} key"),
            ));
        }
    }
}

/// Name constraints: CA certificates only, valid domains and ranges.
fn check_name_constraints(spec: &CertificateSpec, errors: &mut Vec<FieldError>) {
    if let Some(nc) = &spec.name_constraints {
        if !spec.is_ca {
            errors.push(fe(
                "InvalidNameConstraints",
                "spec.nameConstraints",
                "only allowed when isCA is true",
            ));
        }
        for (side, item) in [("permitted", &nc.permitted), ("excluded", &nc.excluded)] {
            let Some(item) = item else { continue };
            for (i, d) in item.dns_domains.iter().enumerate() {
                if let Err(e) = check_dns_name(d.trim_start_matches('.')) {
                    errors.push(fe(
                        "InvalidNameConstraints",
                        format!("spec.nameConstraints.{side}.dnsDomains[{i}]"),
                        e.to_string(),
                    ));
                }
            }
            for (i, r) in item.ip_ranges.iter().enumerate() {
                if let Err(e) = parse_cidr(r) {
                    errors.push(fe(
                        "InvalidNameConstraints",
                        format!("spec.nameConstraints.{side}.ipRanges[{i}]"),
                        e.to_string(),
                    ));
                }
            }
        }
    }
}

/// What a Certificate asks to be written besides tls.crt, tls.key and ca.crt.
struct Outputs {
    jks: Option<JksOutput>,
    pkcs12: Option<Pkcs12Output>,
    der: bool,
    combined_pem: bool,
}

/// Keystores and additional output formats.
fn outputs(spec: &CertificateSpec, errors: &mut Vec<FieldError>) -> Outputs {
    let mut jks = None;
    let mut pkcs12 = None;
    if let Some(ks) = &spec.keystores {
        if let Some(j) = ks.jks.as_ref().filter(|j| j.create) {
            let alias = j.alias.clone().unwrap_or_else(|| "certificate".into());
            if alias.is_empty() {
                errors.push(fe(
                    "InvalidKeystore",
                    "spec.keystores.jks.alias",
                    "must not be empty",
                ));
            }
            if let Some(password) = password_source(
                &j.password,
                &j.password_secret_ref,
                "spec.keystores.jks",
                errors,
            ) {
                jks = Some(JksOutput { password, alias });
            }
        }
        if let Some(p) = ks.pkcs12.as_ref().filter(|p| p.create) {
            use certwright_pki::pkcs12::Profile;
            let profile = match p.profile.as_deref() {
                None | Some("") | Some("LegacyRC2") => Profile::LegacyRc2,
                Some("LegacyDES") => Profile::LegacyDes,
                Some("Modern2023") => Profile::Modern2023,
                Some(other) => {
                    errors.push(fe(
                        "InvalidKeystore",
                        "spec.keystores.pkcs12.profile",
                        format!("{other:?} must be LegacyRC2, LegacyDES or Modern2023"),
                    ));
                    Profile::LegacyRc2
                }
            };
            if let Some(password) = password_source(
                &p.password,
                &p.password_secret_ref,
                "spec.keystores.pkcs12",
                errors,
            ) {
                pkcs12 = Some(Pkcs12Output { password, profile });
            }
        }
    }
    let mut output_der = false;
    let mut output_combined_pem = false;
    for (i, f) in spec.additional_output_formats.iter().enumerate() {
        match f.format.as_str() {
            "DER" => output_der = true,
            "CombinedPEM" => output_combined_pem = true,
            other => errors.push(fe(
                "InvalidOutputFormat",
                format!("spec.additionalOutputFormats[{i}].type"),
                format!("{other:?} must be DER or CombinedPEM"),
            )),
        }
    }
    Outputs {
        jks,
        pkcs12,
        der: output_der,
        combined_pem: output_combined_pem,
    }
}
