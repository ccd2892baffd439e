//! Validation with cert-manager's rules and defaults, producing normalized parameters.
//!
//! Every error names the field (`spec.dnsNames[1]`) and the rule it breaks, and carries a
//! condition reason.

use crate::duration;
use crate::types::{
    Certificate, CertificateRequest, CertificateSpec, Issuer, NameConstraintItem, SecretKeySelector,
};
use certwright_pki::cert::{eku, KeyUsage, NameConstraintItems, NameConstraints};
use certwright_pki::{Curve, KeyAlgorithm, KeyEncoding};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

/// cert-manager's defaults and limits.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(90 * 24 * 3600);
pub const MIN_DURATION: Duration = Duration::from_secs(3600);
pub const MIN_RENEW_BEFORE: Duration = Duration::from_secs(5 * 60);

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Condition reason, e.g. `InvalidDNSName`.
    pub reason: &'static str,
    /// Field path, e.g. `spec.dnsNames[1]`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

fn fe(reason: &'static str, field: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError {
        reason,
        field: field.into(),
        message: message.into(),
    }
}

/// Joins errors into one message.
pub fn join(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

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

/// Which kind of issuer an issuerRef names, once validated.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub enum IssuerKind {
    #[default]
    Issuer,
    ClusterIssuer,
}

impl IssuerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IssuerKind::Issuer => "Issuer",
            IssuerKind::ClusterIssuer => "ClusterIssuer",
        }
    }

    /// The kind an issuerRef names: `Issuer` when empty; `None` for any other kind.
    pub fn parse(kind: &str) -> Option<IssuerKind> {
        match kind {
            "" | "Issuer" => Some(IssuerKind::Issuer),
            "ClusterIssuer" => Some(IssuerKind::ClusterIssuer),
            _ => None,
        }
    }
}

/// The kind an issuerRef names, or an `InvalidIssuerRef` error.
fn issuer_kind(r: &crate::types::IssuerRef, errors: &mut Vec<FieldError>) -> Option<IssuerKind> {
    let kind = IssuerKind::parse(r.kind_or_default());
    if kind.is_none() {
        errors.push(fe(
            "InvalidIssuerRef",
            "spec.issuerRef.kind",
            format!("{:?} must be Issuer or ClusterIssuer", r.kind_or_default()),
        ));
    }
    kind
}

impl std::fmt::Display for IssuerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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
    pub key_algorithm: String,
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
        match self.key_algorithm.as_str() {
            "ECDSA" => KeyAlgorithm::Ecdsa(match self.key_size {
                384 => Curve::P384,
                521 => Curve::P521,
                _ => Curve::P256,
            }),
            "Ed25519" => KeyAlgorithm::Ed25519,
            _ => KeyAlgorithm::Rsa(self.key_size),
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
}

impl CertificateParams {
    /// Renewal time for a certificate valid from `not_before` to `not_after`, as
    /// cert-manager computes it: `notAfter - renewBefore`, where a renewBefore that does not
    /// fit the actual lifetime falls back to renewing at two thirds of it.
    pub fn renewal_time(&self, not_before: i64, not_after: i64) -> i64 {
        let lifetime = (not_after - not_before).max(0);
        let before = match self.renew_before {
            RenewBefore::Default => lifetime / 3,
            RenewBefore::Duration(d) => d.as_secs() as i64,
            RenewBefore::Percentage(p) => lifetime * i64::from(p) / 100,
        };
        let before = if before >= lifetime {
            lifetime / 3
        } else {
            before
        };
        not_after - before
    }
}

enum Usage {
    Key(KeyUsage),
    Ext(&'static str),
}

fn usage(name: &str) -> Option<Usage> {
    use KeyUsage as K;
    Some(match name {
        "signing" | "digital signature" => Usage::Key(K::DigitalSignature),
        "content commitment" => Usage::Key(K::ContentCommitment),
        "key encipherment" => Usage::Key(K::KeyEncipherment),
        "key agreement" => Usage::Key(K::KeyAgreement),
        "data encipherment" => Usage::Key(K::DataEncipherment),
        "cert sign" => Usage::Key(K::CertSign),
        "crl sign" => Usage::Key(K::CrlSign),
        "encipher only" => Usage::Key(K::EncipherOnly),
        "decipher only" => Usage::Key(K::DecipherOnly),
        "any" => Usage::Ext(eku::ANY),
        "server auth" => Usage::Ext(eku::SERVER_AUTH),
        "client auth" => Usage::Ext(eku::CLIENT_AUTH),
        "code signing" => Usage::Ext(eku::CODE_SIGNING),
        "email protection" | "s/mime" => Usage::Ext(eku::EMAIL_PROTECTION),
        "ipsec end system" => Usage::Ext(eku::IPSEC_END_SYSTEM),
        "ipsec tunnel" => Usage::Ext(eku::IPSEC_TUNNEL),
        "ipsec user" => Usage::Ext(eku::IPSEC_USER),
        "timestamping" => Usage::Ext(eku::TIME_STAMPING),
        "ocsp signing" => Usage::Ext(eku::OCSP_SIGNING),
        "microsoft sgc" => Usage::Ext(eku::MICROSOFT_SGC),
        "netscape sgc" => Usage::Ext(eku::NETSCAPE_SGC),
        _ => return None,
    })
}

/// RFC 1123 subdomain, as Kubernetes object names must be.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// A DNS name for a certificate: optional leading `*.` wildcard, then labels of letters,
/// digits, hyphens (and underscores, which real zones use), 63 bytes each, 253 in all.
pub fn check_dns_name(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("empty DNS name".into());
    }
    if !s.is_ascii() {
        return Err(format!(
            "{s:?} is not ASCII (write internationalized names in punycode, xn--…)"
        ));
    }
    if s.len() > 253 {
        return Err(format!("{s:?} is longer than 253 characters"));
    }
    let body = s.strip_prefix("*.").unwrap_or(s);
    for label in body.split('.') {
        if label.is_empty() {
            return Err(format!("{s:?} has an empty label"));
        }
        if label.len() > 63 {
            return Err(format!("{s:?} has a label longer than 63 characters"));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(format!(
                "{s:?} contains {c:?}; a DNS label has letters, digits and hyphens only (RFC 1123)"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!(
                "{s:?} has a label that starts or ends with a hyphen"
            ));
        }
    }
    Ok(())
}

fn parse_cidr(s: &str) -> Result<(IpAddr, u8), String> {
    let (a, p) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?} is not in CIDR form (e.g. 10.0.0.0/8)"))?;
    let ip: IpAddr = a
        .parse()
        .map_err(|_| format!("{a:?} is not an IP address"))?;
    let p: u8 = p
        .parse()
        .map_err(|_| format!("{p:?} is not a prefix length"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    if p > max {
        return Err(format!("prefix /{p} is longer than {max}"));
    }
    Ok((ip, p))
}

fn check_uri(s: &str) -> Result<(), String> {
    let (scheme, rest) = s.split_once(':').ok_or_else(|| {
        format!("{s:?} is not an absolute URI (it needs a scheme, e.g. spiffe://…)")
    })?;
    if scheme.is_empty()
        || !scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    {
        return Err(format!("{s:?} has an invalid scheme"));
    }
    if rest.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{s:?} is not a valid URI"));
    }
    Ok(())
}

fn check_email(s: &str) -> Result<(), String> {
    match s.split_once('@') {
        Some((l, d))
            if !l.is_empty()
                && !d.is_empty()
                && !d.contains('@')
                && !s.contains(char::is_whitespace) =>
        {
            check_dns_name(d).map_err(|e| format!("{s:?}: domain {e}"))
        }
        _ => Err(format!("{s:?} is not an email address")),
    }
}

/// The request records a Certificate keeps when `spec.revisionHistoryLimit` is unset: 1,
/// as cert-manager does since 1.18 (before, records were never removed).
pub const DEFAULT_REVISION_HISTORY_LIMIT: u32 = 1;

/// Validates a namespace name as Kubernetes does: an RFC 1123 label (at most 63
/// characters of a-z, 0-9 and '-', starting and ending with a letter or digit).
pub fn check_namespace(ns: &str, field: &str) -> Result<(), FieldError> {
    let ok = !ns.is_empty()
        && ns.len() <= 63
        && ns
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !ns.starts_with('-')
        && !ns.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(fe(
            "InvalidNamespace",
            field,
            format!("{ns:?} must be a lowercase RFC 1123 label (at most 63 characters of a-z, 0-9 and '-')"),
        ))
    }
}

/// Validates object metadata common to all kinds.
pub fn check_name(name: &str, field: &str) -> Result<(), FieldError> {
    if name.is_empty() {
        return Err(fe("MissingName", field, "required"));
    }
    if !is_dns1123_subdomain(name) {
        return Err(fe(
            "InvalidName",
            field,
            format!("{name:?} must be a lowercase RFC 1123 subdomain (a-z, 0-9, '-', '.')"),
        ));
    }
    Ok(())
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

fn parse_duration_field(
    v: &Option<String>,
    field: &str,
    errors: &mut Vec<FieldError>,
) -> Option<Duration> {
    let s = v.as_ref()?;
    match duration::parse(s) {
        Ok(d) => Some(d),
        Err(e) => {
            errors.push(fe("InvalidDuration", field, e));
            None
        }
    }
}

/// spec.usages: known names, without repeats, sorted.
fn check_usages(list: &[String], errors: &mut Vec<FieldError>) -> Vec<String> {
    let mut usages: Vec<String> = Vec::new();
    for (i, u) in list.iter().enumerate() {
        if usage(u).is_none() {
            errors.push(fe(
                "InvalidUsage",
                format!("spec.usages[{i}]"),
                format!("unknown usage {u:?}"),
            ));
        } else if !usages.contains(u) {
            usages.push(u.clone());
        }
    }
    usages.sort();
    usages
}

/// spec.duration: cert-manager's default (90 days) when unset, at least 1h.
fn check_duration(v: &Option<String>, errors: &mut Vec<FieldError>) -> Duration {
    let dur = parse_duration_field(v, "spec.duration", errors).unwrap_or(DEFAULT_DURATION);
    if dur < MIN_DURATION {
        errors.push(fe(
            "InvalidDuration",
            "spec.duration",
            format!("{} is less than the minimum of 1h", duration::format(dur)),
        ));
    }
    dur
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
    if !spec.other_names.is_empty() {
        errors.push(fe(
            "Unsupported",
            "spec.otherNames",
            "otherNames are not supported by certwright yet",
        ));
    }
    for (i, d) in spec.dns_names.iter().enumerate() {
        if let Err(e) = check_dns_name(d) {
            errors.push(fe("InvalidDNSName", format!("spec.dnsNames[{i}]"), e));
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
            errors.push(fe("InvalidURI", format!("spec.uris[{i}]"), e));
        }
    }
    for (i, m) in spec.email_addresses.iter().enumerate() {
        if let Err(e) = check_email(m) {
            errors.push(fe(
                "InvalidEmailAddress",
                format!("spec.emailAddresses[{i}]"),
                e,
            ));
        }
    }
    let usages = check_usages(&spec.usages, &mut errors);

    // Durations.
    let dur = check_duration(&spec.duration, &mut errors);
    let mut renew_before = RenewBefore::Default;
    if spec.renew_before.is_some() && spec.renew_before_percentage.is_some() {
        errors.push(fe(
            "InvalidRenewBefore",
            "spec.renewBefore",
            "renewBefore and renewBeforePercentage are mutually exclusive",
        ));
    }
    if let Some(rb) = parse_duration_field(&spec.renew_before, "spec.renewBefore", &mut errors) {
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

    // Private key.
    let pk = spec.private_key.clone().unwrap_or_default();
    let algorithm = match pk.algorithm.as_deref() {
        None | Some("") | Some("RSA") => "RSA",
        Some("ECDSA") => "ECDSA",
        Some("Ed25519") => "Ed25519",
        Some(other) => {
            errors.push(fe(
                "InvalidPrivateKey",
                "spec.privateKey.algorithm",
                format!("{other:?} must be RSA, ECDSA or Ed25519"),
            ));
            "RSA"
        }
    };
    let size = pk.size.unwrap_or(0);
    let key_size: u32 = match algorithm {
        "RSA" => {
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
        "ECDSA" => {
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
    if let Some(sa) = &spec.signature_algorithm {
        let ok = match algorithm {
            "RSA" => ["SHA256WithRSA", "SHA384WithRSA", "SHA512WithRSA"].contains(&sa.as_str()),
            "ECDSA" => {
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

    // Name constraints.
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
                        e,
                    ));
                }
            }
            for (i, r) in item.ip_ranges.iter().enumerate() {
                if let Err(e) = parse_cidr(r) {
                    errors.push(fe(
                        "InvalidNameConstraints",
                        format!("spec.nameConstraints.{side}.ipRanges[{i}]"),
                        e,
                    ));
                }
            }
        }
    }

    // Outputs.
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
                &mut errors,
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
                &mut errors,
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
        if k.starts_with("cert-manager.io/") {
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
            key_algorithm: algorithm.to_string(),
            key_size,
            duration_seconds: dur.as_secs(),
            issuer_name: spec.issuer_ref.name.clone(),
            issuer_kind: kind.unwrap_or_default(),
            issuer_group: group,
            name_constraints: spec.name_constraints.clone(),
            encode_usages_in_request: spec.encode_usages_in_request.unwrap_or(true),
        },
        renew_before,
        encoding,
        rotation_policy,
        secret_name: spec.secret_name.clone(),
        secret_annotations: template.annotations,
        secret_labels: template.labels,
        jks,
        pkcs12,
        output_der,
        output_combined_pem,
        revision_history_limit,
    })
}

/// A CertificateRequest someone else created, validated, ready for its issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestParams {
    /// The PEM CSR (spec.request decoded).
    pub csr_pem: String,
    /// What the issuers read: duration, isCA, usages and the issuerRef; the subject and
    /// names come from the CSR itself.
    pub issuance: IssuanceSpec,
}

/// Validates a CertificateRequest: a base64 PEM CSR, a duration of at least 1h (90 days
/// when unset), known usages, an issuerRef name.
pub fn certificate_request(cr: &CertificateRequest) -> Result<RequestParams, Vec<FieldError>> {
    use base64::Engine;
    let mut errors = Vec::new();
    let spec = &cr.spec;
    if spec.issuer_ref.name.is_empty() {
        errors.push(fe("InvalidIssuerRef", "spec.issuerRef.name", "required"));
    }
    let csr_pem = match base64::engine::general_purpose::STANDARD.decode(spec.request.trim()) {
        _ if spec.request.is_empty() => {
            errors.push(fe("InvalidRequest", "spec.request", "required"));
            String::new()
        }
        Err(e) => {
            errors.push(fe(
                "InvalidRequest",
                "spec.request",
                format!("not base64: {e}"),
            ));
            String::new()
        }
        Ok(b) => match String::from_utf8(b) {
            Ok(s) if s.contains("CERTIFICATE REQUEST-----") => s,
            _ => {
                errors.push(fe(
                    "InvalidRequest",
                    "spec.request",
                    "not a PEM certificate request (base64 of a CERTIFICATE REQUEST PEM block)",
                ));
                String::new()
            }
        },
    };
    let usages = check_usages(&spec.usages, &mut errors);
    let dur = check_duration(&spec.duration, &mut errors);
    let kind = issuer_kind(&spec.issuer_ref, &mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(RequestParams {
        csr_pem,
        issuance: IssuanceSpec {
            subject: SubjectSpec {
                literal: None,
                common_name: None,
                fields: None,
            },
            dns_names: vec![],
            ip_addresses: vec![],
            uris: vec![],
            email_addresses: vec![],
            is_ca: spec.is_ca,
            usages,
            key_algorithm: String::new(),
            key_size: 0,
            duration_seconds: dur.as_secs(),
            issuer_name: spec.issuer_ref.name.clone(),
            issuer_kind: kind.unwrap_or_default(),
            issuer_group: spec.issuer_ref.group_or_default().to_string(),
            name_constraints: None,
            encode_usages_in_request: true,
        },
    })
}

/// What an Issuer is, once validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssuerType {
    SelfSigned,
    Ca { secret_name: String },
    Acme(serde_json::Value),
}

impl IssuerType {
    /// The Secret (in the issuer's Secret namespace) that signing needs, if any.
    pub fn ca_secret(&self) -> Option<&str> {
        match self {
            IssuerType::Ca { secret_name } => Some(secret_name),
            _ => None,
        }
    }
}

/// Validates an Issuer or ClusterIssuer.
pub fn issuer(issuer: &Issuer) -> Result<IssuerType, Vec<FieldError>> {
    let mut errors = Vec::new();
    if let Err(e) = check_name(&issuer.metadata.name, "metadata.name") {
        errors.push(e);
    }
    let s = &issuer.spec;
    let set = [
        s.self_signed.is_some(),
        s.ca.is_some(),
        s.acme.is_some(),
        s.vault.is_some(),
        s.venafi.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if set != 1 {
        errors.push(fe(
            "InvalidIssuer",
            "spec",
            format!("exactly one issuer type (selfSigned, ca, acme, vault, venafi) must be set, found {set}"),
        ));
        return Err(errors);
    }
    let t = if s.self_signed.is_some() {
        IssuerType::SelfSigned
    } else if let Some(ca) = &s.ca {
        if ca.secret_name.is_empty() {
            errors.push(fe("InvalidIssuer", "spec.ca.secretName", "required"));
        } else if !is_dns1123_subdomain(&ca.secret_name) {
            errors.push(fe(
                "InvalidIssuer",
                "spec.ca.secretName",
                format!(
                    "{:?} must be a lowercase RFC 1123 subdomain (a-z, 0-9, '-', '.')",
                    ca.secret_name
                ),
            ));
        }
        IssuerType::Ca {
            secret_name: ca.secret_name.clone(),
        }
    } else if let Some(a) = &s.acme {
        IssuerType::Acme(a.clone())
    } else {
        errors.push(fe(
            "UnsupportedIssuer",
            "spec",
            "vault and venafi issuers are not supported by certwright",
        ));
        return Err(errors);
    };
    if errors.is_empty() {
        Ok(t)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{CertificateRequestSpec, IssuerRef};

    fn request(spec: CertificateRequestSpec) -> CertificateRequest {
        CertificateRequest {
            api_version: "cert-manager.io/v1".into(),
            kind: "CertificateRequest".into(),
            metadata: Default::default(),
            spec,
            status: None,
        }
    }

    fn b64(s: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    const CSR: &str =
        "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n";

    #[test]
    fn certificate_requests_get_defaults() {
        let p = certificate_request(&request(CertificateRequestSpec {
            request: b64(CSR),
            issuer_ref: IssuerRef {
                name: "ca".into(),
                ..Default::default()
            },
            usages: vec![
                "server auth".into(),
                "digital signature".into(),
                "server auth".into(),
            ],
            ..Default::default()
        }))
        .expect("valid");
        assert_eq!(p.csr_pem, CSR);
        assert_eq!(p.issuance.duration_seconds, DEFAULT_DURATION.as_secs());
        assert_eq!(p.issuance.issuer_kind, IssuerKind::Issuer);
        assert_eq!(p.issuance.issuer_group, "cert-manager.io");
        assert_eq!(p.issuance.usages, ["digital signature", "server auth"]);
    }

    #[test]
    fn certificate_request_errors_name_their_fields() {
        let cases: [(CertificateRequestSpec, &str, &str); 6] = [
            (Default::default(), "spec.request", "required"),
            (
                CertificateRequestSpec {
                    request: "%%%".into(),
                    ..Default::default()
                },
                "spec.request",
                "not base64",
            ),
            (
                CertificateRequestSpec {
                    request: b64("hello"),
                    ..Default::default()
                },
                "spec.request",
                "not a PEM certificate request",
            ),
            (Default::default(), "spec.issuerRef.name", "required"),
            (
                CertificateRequestSpec {
                    duration: Some("30m".into()),
                    ..Default::default()
                },
                "spec.duration",
                "minimum of 1h",
            ),
            (
                CertificateRequestSpec {
                    usages: vec!["world domination".into()],
                    ..Default::default()
                },
                "spec.usages[0]",
                "unknown usage",
            ),
        ];
        for (spec, field, message) in cases {
            let errs = certificate_request(&request(spec)).expect_err("invalid");
            assert!(
                errs.iter()
                    .any(|e| e.field == field && e.message.contains(message)),
                "{field}: {message} not in {}",
                join(&errs)
            );
        }
    }
}
