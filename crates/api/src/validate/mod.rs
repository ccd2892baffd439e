//! Validation with cert-manager's rules and defaults, producing normalized parameters.
//!
//! Every error names the field (`spec.dnsNames[1]`) and the rule it breaks, and carries a
//! condition reason.

//! Split by resource: `certificate`, `request` and `issuer`; the rules they share (names,
//! durations, usages, DNS names, URIs) are here.

pub mod admission;
mod certificate;
mod issuer;
mod request;

pub use certificate::{
    certificate, CertificateParams, IssuanceSpec, JksOutput, PasswordSource, Pkcs12Output,
    RenewBefore, Renewal, RenewalWindow, RotationPolicy, SubjectSpec,
};
pub use issuer::{issuer, IssuerType, IssuerUrls};
pub use request::{certificate_request, RequestParams};

use crate::duration;
use certwright_pki::cert::{eku, KeyUsage};
use serde::{Deserialize, Serialize};
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

/// A private key's algorithm once validated (cert-manager's spelling when stored).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyType {
    #[default]
    #[serde(rename = "RSA")]
    Rsa,
    #[serde(rename = "ECDSA")]
    Ecdsa,
    Ed25519,
    /// A CertificateRequest's: the key is the CSR's, not chosen by a spec.
    #[serde(rename = "")]
    FromRequest,
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyType::Rsa => "RSA",
            KeyType::Ecdsa => "ECDSA",
            KeyType::Ed25519 => "Ed25519",
            KeyType::FromRequest => "(from the request)",
        })
    }
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
/// The issuerRef's kind, for cert-manager.io issuers. An external issuer's kinds are its
/// own (cert-manager checks the kind only in its own group): None, and no error.
fn issuer_kind(r: &crate::types::IssuerRef, errors: &mut Vec<FieldError>) -> Option<IssuerKind> {
    if r.group_or_default() != crate::types::GROUP {
        return None;
    }
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

/// Why a DNS name, IP range, URI or email address in a spec is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("empty DNS name")]
    EmptyDnsName,
    #[error("{0:?} is not ASCII (write internationalized names in punycode, xn--…)")]
    NotAscii(String),
    #[error("{0:?} is longer than 253 characters")]
    DnsNameTooLong(String),
    #[error("{0:?} has an empty label")]
    EmptyLabel(String),
    #[error("{0:?} has a label longer than 63 characters")]
    LabelTooLong(String),
    #[error(
        "{name:?} contains {found:?}; a DNS label has letters, digits and hyphens only (RFC 1123)"
    )]
    BadCharacter { name: String, found: char },
    #[error("{0:?} has a label that starts or ends with a hyphen")]
    HyphenAtEdge(String),
    #[error("{0:?} is not in CIDR form (e.g. 10.0.0.0/8)")]
    NotCidr(String),
    #[error("{0:?} is not an IP address")]
    NotIp(String),
    #[error("{0:?} is not a prefix length")]
    NotPrefix(String),
    #[error("prefix /{prefix} is longer than {max}")]
    PrefixTooLong { prefix: u8, max: u8 },
    #[error("{0:?} is not an absolute URI (it needs a scheme, e.g. spiffe://…)")]
    NotAbsoluteUri(String),
    #[error("{0:?} has an invalid scheme")]
    BadScheme(String),
    #[error("{0:?} is not a valid URI")]
    BadUri(String),
    #[error("{address:?}: domain {domain}")]
    EmailDomain {
        address: String,
        domain: Box<ValueError>,
    },
    #[error("{0:?} is not an email address")]
    NotEmail(String),
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
pub fn check_dns_name(s: &str) -> Result<(), ValueError> {
    if s.is_empty() {
        return Err(ValueError::EmptyDnsName);
    }
    if !s.is_ascii() {
        return Err(ValueError::NotAscii(s.into()));
    }
    if s.len() > 253 {
        return Err(ValueError::DnsNameTooLong(s.into()));
    }
    let body = s.strip_prefix("*.").unwrap_or(s);
    for label in body.split('.') {
        if label.is_empty() {
            return Err(ValueError::EmptyLabel(s.into()));
        }
        if label.len() > 63 {
            return Err(ValueError::LabelTooLong(s.into()));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(ValueError::BadCharacter {
                name: s.into(),
                found: c,
            });
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(ValueError::HyphenAtEdge(s.into()));
        }
    }
    Ok(())
}

fn parse_cidr(s: &str) -> Result<(IpAddr, u8), ValueError> {
    let (a, p) = s
        .split_once('/')
        .ok_or_else(|| ValueError::NotCidr(s.into()))?;
    let ip: IpAddr = a.parse().map_err(|_| ValueError::NotIp(a.into()))?;
    let p: u8 = p.parse().map_err(|_| ValueError::NotPrefix(p.into()))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    if p > max {
        return Err(ValueError::PrefixTooLong { prefix: p, max });
    }
    Ok((ip, p))
}

fn check_uri(s: &str) -> Result<(), ValueError> {
    let (scheme, rest) = s
        .split_once(':')
        .ok_or_else(|| ValueError::NotAbsoluteUri(s.into()))?;
    if scheme.is_empty()
        || !scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    {
        return Err(ValueError::BadScheme(s.into()));
    }
    if rest.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ValueError::BadUri(s.into()));
    }
    Ok(())
}

pub(crate) fn check_email(s: &str) -> Result<(), ValueError> {
    match s.split_once('@') {
        Some((l, d))
            if !l.is_empty()
                && !d.is_empty()
                && !d.contains('@')
                && !s.contains(char::is_whitespace) =>
        {
            check_dns_name(d).map_err(|e| ValueError::EmailDomain {
                address: s.into(),
                domain: Box::new(e),
            })
        }
        _ => Err(ValueError::NotEmail(s.into())),
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

fn parse_duration_field(
    v: &Option<String>,
    field: &str,
    errors: &mut Vec<FieldError>,
) -> Option<Duration> {
    let s = v.as_ref()?;
    match duration::parse(s) {
        Ok(d) => Some(d),
        Err(e) => {
            errors.push(fe("InvalidDuration", field, e.to_string()));
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
/// A real PEM request for tests (requests are parsed and their signature checked).
#[cfg(test)]
pub(crate) fn test_csr_pem() -> String {
    use certwright_pki::key::{Curve, KeyAlgorithm, PrivateKey};
    let key = PrivateKey::generate(KeyAlgorithm::Ecdsa(Curve::P256)).expect("key");
    let profile = certwright_pki::cert::Profile {
        dns_names: vec!["example.com".into()],
        ..Default::default()
    };
    let der = certwright_pki::cert::build_csr(&profile, &key).expect("csr");
    certwright_pki::pem::encode("CERTIFICATE REQUEST", &der)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{CertificateRequest, CertificateRequestSpec, IssuerRef};

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

    #[test]
    fn certificate_requests_get_defaults() {
        let csr = test_csr_pem();
        let p = certificate_request(&request(CertificateRequestSpec {
            request: b64(&csr),
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
        assert_eq!(p.csr_pem, csr);
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
