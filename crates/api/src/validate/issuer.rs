//! Issuers and ClusterIssuers: which kind of issuer, and its own fields.

use super::{check_dns_name, check_email, check_name, fe, is_dns1123_subdomain, FieldError};
use crate::acme::{AcmeIssuer, AcmeSolver, Dns01Solver};
use crate::types::{Issuer, SecretKeySelector};

/// What an Issuer is, once validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssuerType {
    SelfSigned(IssuerUrls),
    Ca {
        secret_name: String,
        urls: IssuerUrls,
    },
    Acme(Box<AcmeIssuer>),
}

/// The URLs a CA or self-signed issuer writes into the certificates it signs, as
/// cert-manager does: CRL Distribution Points, and Authority Information Access (OCSP
/// servers, then where the issuing certificate is served).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IssuerUrls {
    pub crl_distribution_points: Vec<String>,
    pub ocsp_servers: Vec<String>,
    pub issuing_certificate_urls: Vec<String>,
}

/// URLs go into certificates as IA5Strings: printable ASCII, not empty.
fn check_urls(field: &str, urls: &[String], errors: &mut Vec<FieldError>) {
    for (i, u) in urls.iter().enumerate() {
        if u.is_empty() || !u.chars().all(|c| c.is_ascii_graphic()) {
            errors.push(fe(
                "InvalidIssuer",
                format!("{field}[{i}]"),
                format!("{u:?} must be a URL of printable ASCII characters"),
            ));
        }
    }
}

impl IssuerType {
    /// The Secret (in the issuer's Secret namespace) that signing needs, if any.
    pub fn ca_secret(&self) -> Option<&str> {
        match self {
            IssuerType::Ca { secret_name, .. } => Some(secret_name),
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
    let t = if let Some(ss) = &s.self_signed {
        let f = "spec.selfSigned.crlDistributionPoints";
        check_urls(f, &ss.crl_distribution_points, &mut errors);
        IssuerType::SelfSigned(IssuerUrls {
            crl_distribution_points: ss.crl_distribution_points.clone(),
            ..Default::default()
        })
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
        check_urls(
            "spec.ca.crlDistributionPoints",
            &ca.crl_distribution_points,
            &mut errors,
        );
        check_urls("spec.ca.ocspServers", &ca.ocsp_servers, &mut errors);
        check_urls(
            "spec.ca.issuingCertificateURLs",
            &ca.issuing_certificate_urls,
            &mut errors,
        );
        IssuerType::Ca {
            secret_name: ca.secret_name.clone(),
            urls: IssuerUrls {
                crl_distribution_points: ca.crl_distribution_points.clone(),
                ocsp_servers: ca.ocsp_servers.clone(),
                issuing_certificate_urls: ca.issuing_certificate_urls.clone(),
            },
        }
    } else if let Some(a) = &s.acme {
        acme(a, &mut errors);
        IssuerType::Acme(Box::new(a.clone()))
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

fn secret_ref(r: &SecretKeySelector, field: &str, errors: &mut Vec<FieldError>) {
    if r.name.is_empty() {
        errors.push(fe("InvalidIssuer", format!("{field}.name"), "required"));
    } else if !is_dns1123_subdomain(&r.name) {
        errors.push(fe(
            "InvalidIssuer",
            format!("{field}.name"),
            format!(
                "{:?} must be a lowercase RFC 1123 subdomain (a-z, 0-9, '-', '.')",
                r.name
            ),
        ));
    }
}

fn acme(a: &AcmeIssuer, errors: &mut Vec<FieldError>) {
    const F: &str = "spec.acme";
    let server = a.server.trim();
    if server.is_empty() {
        errors.push(fe("InvalidIssuer", format!("{F}.server"), "required"));
    } else if !(server.starts_with("https://") || server.starts_with("http://"))
        || server.contains(char::is_whitespace)
    {
        errors.push(fe(
            "InvalidIssuer",
            format!("{F}.server"),
            format!("{server:?} must be an http(s) URL (the ACME directory)"),
        ));
    }
    if let Some(email) = a.email.as_deref().filter(|e| !e.is_empty()) {
        if let Err(e) = check_email(email) {
            errors.push(fe("InvalidIssuer", format!("{F}.email"), e.to_string()));
        }
    }
    secret_ref(
        &a.private_key_secret_ref,
        &format!("{F}.privateKeySecretRef"),
        errors,
    );
    if let Some(b) = &a.ca_bundle {
        if let Err(m) = ca_bundle(b) {
            errors.push(fe("InvalidIssuer", format!("{F}.caBundle"), m));
        }
        if a.skip_tls_verify {
            errors.push(fe(
                "InvalidIssuer",
                format!("{F}.caBundle"),
                "caBundle and skipTLSVerify are mutually exclusive",
            ));
        }
    }
    if let Some(eab) = &a.external_account_binding {
        let f = format!("{F}.externalAccountBinding");
        if eab.key_id.is_empty() {
            errors.push(fe("InvalidIssuer", format!("{f}.keyID"), "required"));
        }
        secret_ref(&eab.key_secret_ref, &format!("{f}.keySecretRef"), errors);
        if let Some(alg) = eab.key_algorithm.as_deref() {
            if !matches!(alg, "" | "HS256" | "HS384" | "HS512") {
                errors.push(fe(
                    "InvalidIssuer",
                    format!("{f}.keyAlgorithm"),
                    format!("{alg:?} must be HS256, HS384 or HS512"),
                ));
            }
        }
    }
    for (i, s) in a.solvers.iter().enumerate() {
        solver(s, &format!("{F}.solvers[{i}]"), errors);
    }
}

fn ca_bundle(b64: &str) -> Result<(), String> {
    use base64::Engine;
    let pem = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| format!("not base64: {e}"))?;
    let blocks = certwright_pki::pem::decode_all(&pem).map_err(|e| e.to_string())?;
    let certs: Vec<_> = blocks.iter().filter(|b| b.label == "CERTIFICATE").collect();
    if certs.is_empty() {
        return Err("no CERTIFICATE PEM block".into());
    }
    for (i, c) in certs.iter().enumerate() {
        certwright_pki::inspect::CertInfo::parse(&c.der)
            .map_err(|e| format!("certificate {}: {e}", i + 1))?;
    }
    Ok(())
}

fn solver(s: &AcmeSolver, f: &str, errors: &mut Vec<FieldError>) {
    if let Some(sel) = &s.selector {
        for (list, names) in [("dnsNames", &sel.dns_names), ("dnsZones", &sel.dns_zones)] {
            for (i, n) in names.iter().enumerate() {
                if let Err(e) = check_dns_name(n) {
                    errors.push(fe(
                        "InvalidIssuer",
                        format!("{f}.selector.{list}[{i}]"),
                        e.to_string(),
                    ));
                }
            }
        }
    }
    match (&s.http01, &s.dns01) {
        (Some(_), Some(_)) | (None, None) => errors.push(fe(
            "InvalidIssuer",
            f,
            "exactly one of http01 and dns01 must be set",
        )),
        (Some(h), None) => {
            if h.gateway_http_route.is_some() {
                errors.push(fe(
                    "UnsupportedIssuer",
                    format!("{f}.http01.gatewayHTTPRoute"),
                    "Gateway API solving is not supported by certwright; use http01.ingress",
                ));
            }
            if let Some(t) = h.ingress.as_ref().and_then(|i| i.service_type.as_deref()) {
                if !matches!(t, "" | "ClusterIP" | "NodePort") {
                    errors.push(fe(
                        "InvalidIssuer",
                        format!("{f}.http01.ingress.serviceType"),
                        format!("{t:?} must be ClusterIP or NodePort"),
                    ));
                }
            }
        }
        (None, Some(d)) => dns01(d, &format!("{f}.dns01"), errors),
    }
}

fn dns01(d: &Dns01Solver, f: &str, errors: &mut Vec<FieldError>) {
    if let Some(c) = d.cname_strategy.as_deref() {
        if !matches!(c, "" | "None" | "Follow") {
            errors.push(fe(
                "InvalidIssuer",
                format!("{f}.cnameStrategy"),
                format!("{c:?} must be None or Follow"),
            ));
        }
    }
    let unsupported = [
        ("acmeDNS", d.acme_dns.is_some()),
        ("akamai", d.akamai.is_some()),
        ("azureDNS", d.azure_dns.is_some()),
        ("cloudDNS", d.cloud_dns.is_some()),
        ("cloudflare", d.cloudflare.is_some()),
        ("digitalocean", d.digitalocean.is_some()),
        ("webhook", d.webhook.is_some()),
    ];
    let set = unsupported.iter().filter(|(_, s)| *s).count()
        + usize::from(d.rfc2136.is_some())
        + usize::from(d.route53.is_some());
    if set != 1 {
        errors.push(fe(
            "InvalidIssuer",
            f,
            format!("exactly one DNS provider must be set, found {set}"),
        ));
        return;
    }
    if let Some((name, _)) = unsupported.iter().find(|(_, s)| *s) {
        errors.push(fe(
            "UnsupportedIssuer",
            format!("{f}.{name}"),
            "this DNS-01 provider is not supported by certwright; use rfc2136 or route53",
        ));
    }
    if let Some(r) = &d.rfc2136 {
        rfc2136(r, &format!("{f}.rfc2136"), errors);
    }
    if let Some(r) = &d.route53 {
        route53(r, &format!("{f}.route53"), errors);
    }
}

fn rfc2136(r: &crate::acme::Rfc2136Provider, f: &str, errors: &mut Vec<FieldError>) {
    if r.nameserver.trim().is_empty() {
        errors.push(fe("InvalidIssuer", format!("{f}.nameserver"), "required"));
    } else if crate::acme::parse_nameserver(&r.nameserver).is_none() {
        errors.push(fe(
            "InvalidIssuer",
            format!("{f}.nameserver"),
            format!(
                "{:?} must be an IP address with an optional port (HOST, HOST:PORT, [IPv6]:PORT)",
                r.nameserver
            ),
        ));
    }
    let alg = r.tsig_algorithm.as_deref().unwrap_or("");
    let signed = r.tsig_key_name.as_deref().is_some_and(|k| !k.is_empty());
    use crate::acme::TsigAlgorithm as A;
    match A::parse(alg) {
        None => errors.push(fe(
            "InvalidIssuer",
            format!("{f}.tsigAlgorithm"),
            format!("{alg:?} must be HMACMD5, HMACSHA1, HMACSHA256 or HMACSHA512"),
        )),
        Some(A::HmacMd5 | A::HmacSha1) if signed => errors.push(fe(
            "UnsupportedIssuer",
            format!("{f}.tsigAlgorithm"),
            format!(
                "{} is not supported by certwright (TSIG is signed with SHA-2 only): set HMACSHA256 or HMACSHA512, and the same on the DNS server's key",
                if alg.is_empty() { "HMACMD5 (cert-manager's default when unset)" } else { alg }
            ),
        )),
        Some(_) => {}
    }
    if signed {
        match &r.tsig_secret_secret_ref {
            Some(s) => secret_ref(s, &format!("{f}.tsigSecretSecretRef"), errors),
            None => errors.push(fe(
                "InvalidIssuer",
                format!("{f}.tsigSecretSecretRef"),
                "required when tsigKeyName is set",
            )),
        }
    }
}

fn route53(r: &crate::acme::Route53Provider, f: &str, errors: &mut Vec<FieldError>) {
    if r.role.as_deref().is_some_and(|s| !s.is_empty()) || r.auth.is_some() {
        errors.push(fe(
            "UnsupportedIssuer",
            format!("{f}.role"),
            "assuming a role or ambient AWS credentials are not supported by certwright; give accessKeyID (or accessKeyIDSecretRef) and secretAccessKeySecretRef",
        ));
    }
    if r.access_key_id.is_some() && r.access_key_id_secret_ref.is_some() {
        errors.push(fe(
            "InvalidIssuer",
            format!("{f}.accessKeyID"),
            "accessKeyID and accessKeyIDSecretRef are mutually exclusive",
        ));
    }
    if let Some(s) = &r.access_key_id_secret_ref {
        secret_ref(s, &format!("{f}.accessKeyIDSecretRef"), errors);
    }
    match &r.secret_access_key_secret_ref {
        Some(s) => secret_ref(s, &format!("{f}.secretAccessKeySecretRef"), errors),
        None => errors.push(fe(
            "InvalidIssuer",
            format!("{f}.secretAccessKeySecretRef"),
            "required (certwright does not read ambient AWS credentials)",
        )),
    }
}
