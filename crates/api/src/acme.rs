//! `spec.acme` of an Issuer or ClusterIssuer, with cert-manager's field names: the ACME
//! server and account, and the solvers that answer its challenges.
//!
//! DNS-01 providers certwright does not implement (Cloudflare, Azure DNS, Cloud DNS, ...)
//! are kept as written, so a cert-manager manifest still reads; validation names them.

use crate::types::SecretKeySelector;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// An ACME issuer: the server, the account, and how challenges are solved.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AcmeIssuer {
    /// The ACME server's directory URL, e.g. `https://acme-v02.api.letsencrypt.org/directory`.
    #[serde(default)]
    pub server: String,
    /// The email address registered with the account (its `mailto:` contact).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The Secret holding the account's private key (key `tls.key`). Generated on first
    /// use unless `disableAccountKeyGeneration` is set.
    #[serde(default)]
    pub private_key_secret_ref: SecretKeySelector,
    /// Base64 PEM bundle of CAs to trust for the ACME server's TLS certificate, instead of
    /// the system's roots.
    #[serde(default, rename = "caBundle", skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<String>,
    /// Do not verify the ACME server's TLS certificate (test servers only).
    #[serde(
        default,
        rename = "skipTLSVerify",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub skip_tls_verify: bool,
    /// External account binding, for CAs that require one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_account_binding: Option<ExternalAccountBinding>,
    /// The Common Name of a root or intermediate in the chain to prefer, when the server
    /// offers alternate chains; the default chain when none matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_chain: Option<String>,
    /// The certificate profile to ask for (draft-aaron-acme-profiles), when the server
    /// offers profiles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Never generate an account key: the Secret must exist.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disable_account_key_generation: bool,
    /// Ask the server for the Certificate's duration (notBefore/notAfter in the order).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub enable_duration_feature: bool,
    /// How challenges are solved; the most specific matching selector wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub solvers: Vec<AcmeSolver>,
}

/// External account binding (RFC 8555, 7.3.4).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExternalAccountBinding {
    /// The key identifier the CA gave.
    #[serde(default, rename = "keyID")]
    pub key_id: String,
    /// The Secret holding the base64url HMAC key the CA gave.
    #[serde(default)]
    pub key_secret_ref: SecretKeySelector,
    /// Deprecated in cert-manager: HS256 (default), HS384 or HS512.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_algorithm: Option<String>,
}

/// One way to solve challenges, for the names its selector matches.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AcmeSolver {
    /// Which Certificates and names this solver is for; none: every name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<SolverSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http01: Option<Http01Solver>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns01: Option<Dns01Solver>,
    /// A v1alpha1 issuer's `dns01.providers[].name`, kept while reading legacy manifests so
    /// that certificates' `acme.config` can name the solver; never written out.
    #[serde(default, rename = "x-legacy-provider", skip_serializing)]
    #[schemars(skip)]
    pub legacy_provider: Option<String>,
}

/// Which Certificates and names a solver is for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SolverSelector {
    /// Labels the Certificate must carry.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    /// Exact names this solver is for (the most specific match).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_names: Vec<String>,
    /// Zones whose names (and subdomains) this solver is for; the longest zone wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_zones: Vec<String>,
}

/// HTTP-01: the token is served at `http://NAME/.well-known/acme-challenge/TOKEN`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Http01Solver {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<Http01Ingress>,
    /// HTTP-01 through a Gateway API HTTPRoute (kept as written; not supported by
    /// certwright: refused with a reason).
    #[serde(
        default,
        rename = "gatewayHTTPRoute",
        skip_serializing_if = "Option::is_none"
    )]
    pub gateway_http_route: Option<serde_json::Value>,
}

/// How the cluster routes the token requests to the solver.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Http01Ingress {
    /// The type of the solver Service: NodePort (the default, as cert-manager) or ClusterIP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_type: Option<String>,
    /// The IngressClass of the solver's Ingress (spec.ingressClassName).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_class_name: Option<String>,
    /// The legacy `kubernetes.io/ingress.class` annotation of the solver's Ingress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// An existing Ingress to add the token paths to, instead of a new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Solver pod overrides (certwright serves tokens from its own pods: kept as written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_template: Option<serde_json::Value>,
    /// Labels and annotations for the solver's Ingress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_template: Option<IngressTemplate>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IngressTemplate {
    /// Labels and annotations for the solver Ingress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<TemplateMetadata>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TemplateMetadata {
    /// Labels added to the object.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations added to the object.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// DNS-01: a TXT record `_acme-challenge.NAME`. Exactly one provider.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Dns01Solver {
    /// `None` (default) or `Follow`: follow a CNAME at `_acme-challenge.NAME` and write the
    /// record where it points.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cname_strategy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rfc2136: Option<Rfc2136Provider>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route53: Option<Route53Provider>,
    /// Providers certwright does not implement, kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acme_dns: Option<serde_json::Value>,
    /// Akamai (not supported by certwright: refused with a reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub akamai: Option<serde_json::Value>,
    /// Azure DNS (not supported by certwright: refused with a reason).
    #[serde(default, rename = "azureDNS", skip_serializing_if = "Option::is_none")]
    pub azure_dns: Option<serde_json::Value>,
    /// Google Cloud DNS (not supported by certwright: refused with a reason).
    #[serde(default, rename = "cloudDNS", skip_serializing_if = "Option::is_none")]
    pub cloud_dns: Option<serde_json::Value>,
    /// Cloudflare (not supported by certwright: refused with a reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloudflare: Option<serde_json::Value>,
    /// DigitalOcean (not supported by certwright: refused with a reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digitalocean: Option<serde_json::Value>,
    /// A webhook solver (not supported by certwright: refused with a reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<serde_json::Value>,
}

/// RFC 2136 dynamic updates, signed with TSIG.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rfc2136Provider {
    /// The primary server: `HOST` or `HOST:PORT` (port 53 by default), IPv6 in brackets.
    #[serde(default)]
    pub nameserver: String,
    /// The TSIG key's name; no TSIG when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tsig_key_name: Option<String>,
    /// HMACMD5 (default), HMACSHA1, HMACSHA256 or HMACSHA512.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tsig_algorithm: Option<String>,
    /// The Secret holding the base64 TSIG secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tsig_secret_secret_ref: Option<SecretKeySelector>,
}

/// Amazon Route 53.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Route53Provider {
    /// The AWS region (Route 53 is global; the region signs the requests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The hosted zone to change; looked up from the name when empty.
    #[serde(
        default,
        rename = "hostedZoneID",
        skip_serializing_if = "Option::is_none"
    )]
    pub hosted_zone_id: Option<String>,
    /// The access key id, written in the manifest.
    #[serde(
        default,
        rename = "accessKeyID",
        skip_serializing_if = "Option::is_none"
    )]
    pub access_key_id: Option<String>,
    /// The access key id, from a Secret.
    #[serde(
        default,
        rename = "accessKeyIDSecretRef",
        skip_serializing_if = "Option::is_none"
    )]
    pub access_key_id_secret_ref: Option<SecretKeySelector>,
    /// The secret access key, from a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key_secret_ref: Option<SecretKeySelector>,
    /// An IAM role to assume (not implemented: kept as written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Ambient or web-identity credentials (not implemented: kept as written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<serde_json::Value>,
}

/// `status.acme` of an ACME Issuer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AcmeIssuerStatus {
    /// The account's URL on the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// The email last registered with the account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_registered_email: Option<String>,
    /// A digest of the account key last registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_private_key_hash: Option<String>,
}

/// An RFC 2136 `nameserver`: `HOST` or `HOST:PORT`, an IP address (IPv6 in brackets when
/// a port follows); port 53 by default, as cert-manager reads it.
pub fn parse_nameserver(s: &str) -> Option<std::net::SocketAddr> {
    use std::net::{IpAddr, SocketAddr};
    let s = s.trim();
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Some(a);
    }
    let host = s
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(s);
    host.parse::<IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, 53))
}

/// A TSIG algorithm, with cert-manager's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TsigAlgorithm {
    HmacMd5,
    HmacSha1,
    HmacSha256,
    HmacSha512,
}

impl TsigAlgorithm {
    /// cert-manager's names (`HMACSHA256`), case-insensitive; empty is HMACMD5, its
    /// default.
    pub fn parse(s: &str) -> Option<TsigAlgorithm> {
        Some(match s.to_ascii_uppercase().as_str() {
            "" | "HMACMD5" => TsigAlgorithm::HmacMd5,
            "HMACSHA1" => TsigAlgorithm::HmacSha1,
            "HMACSHA256" => TsigAlgorithm::HmacSha256,
            "HMACSHA512" => TsigAlgorithm::HmacSha512,
            _ => return None,
        })
    }
}

/// The Secret key an ACME issuer's account key is read from when the selector names none.
pub const ACCOUNT_KEY: &str = "tls.key";

/// A challenge type an authorization offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ChallengeKind {
    #[serde(rename = "HTTP-01")]
    Http01,
    #[serde(rename = "DNS-01")]
    Dns01,
}

impl ChallengeKind {
    /// The RFC 8555 type, `http-01` or `dns-01`.
    pub fn acme_type(self) -> &'static str {
        match self {
            ChallengeKind::Http01 => "http-01",
            ChallengeKind::Dns01 => "dns-01",
        }
    }
}

/// How specifically a solver's selector matches a name: whether `dnsNames` lists it, the
/// number of labels of the longest `dnsZones` entry containing it, the number of
/// `matchLabels`; `None` when it does not match.
fn specificity(
    sel: &SolverSelector,
    domain: &str,
    labels: &BTreeMap<String, String>,
) -> Option<(bool, usize, usize)> {
    if sel
        .match_labels
        .iter()
        .any(|(k, v)| labels.get(k) != Some(v))
    {
        return None;
    }
    let by_name = sel.dns_names.iter().any(|n| n.eq_ignore_ascii_case(domain));
    if !sel.dns_names.is_empty() && !by_name {
        return None;
    }
    let lower = domain.to_ascii_lowercase();
    let zone = sel
        .dns_zones
        .iter()
        .map(|z| z.trim_end_matches('.').to_ascii_lowercase())
        .filter(|z| lower == *z || lower.ends_with(&format!(".{z}")))
        .map(|z| z.split('.').count())
        .max();
    if !sel.dns_zones.is_empty() && zone.is_none() {
        return None;
    }
    Some((by_name, zone.unwrap_or(0), sel.match_labels.len()))
}

/// Picks the solver for one name of an order, with cert-manager's precedence: only solvers
/// of a type the authorization offers; a `dnsNames` match first, then the longest
/// `dnsZones` match, then the most `matchLabels`; a solver without a selector only when
/// nothing more specific matches; the first listed on a tie. `domain` is `*.NAME` for a
/// wildcard; `labels` are the Certificate's.
pub fn pick_solver(
    solvers: &[AcmeSolver],
    domain: &str,
    offered: &[ChallengeKind],
    labels: &BTreeMap<String, String>,
) -> Option<(usize, ChallengeKind)> {
    let mut best: Option<(usize, ChallengeKind, (bool, usize, usize))> = None;
    for (i, s) in solvers.iter().enumerate() {
        let kind = match (&s.http01, &s.dns01) {
            (Some(_), None) => ChallengeKind::Http01,
            (None, Some(_)) => ChallengeKind::Dns01,
            _ => continue,
        };
        if !offered.contains(&kind) {
            continue;
        }
        let spec = match &s.selector {
            None => (false, 0, 0),
            Some(sel) => match specificity(sel, domain, labels) {
                Some(m) => m,
                None => continue,
            },
        };
        match &best {
            None => best = Some((i, kind, spec)),
            Some((_, _, b)) if s.selector.is_some() && spec > *b => best = Some((i, kind, spec)),
            Some(_) => {}
        }
    }
    best.map(|(i, k, _)| (i, k))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn solver(kind: ChallengeKind, sel: Option<SolverSelector>) -> AcmeSolver {
        AcmeSolver {
            selector: sel,
            http01: (kind == ChallengeKind::Http01).then(Http01Solver::default),
            dns01: (kind == ChallengeKind::Dns01).then(Dns01Solver::default),
            legacy_provider: None,
        }
    }

    fn sel(names: &[&str], zones: &[&str], labels: &[(&str, &str)]) -> Option<SolverSelector> {
        Some(SolverSelector {
            match_labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            dns_names: names.iter().map(|s| s.to_string()).collect(),
            dns_zones: zones.iter().map(|s| s.to_string()).collect(),
        })
    }

    #[test]
    fn solver_precedence_is_cert_managers() {
        use ChallengeKind::*;
        let both = [Http01, Dns01];
        let none = BTreeMap::new();
        let team: BTreeMap<String, String> = [("team".to_string(), "a".to_string())].into();
        let solvers = vec![
            solver(Http01, None),
            solver(Dns01, sel(&[], &["example.com"], &[])),
            solver(Dns01, sel(&[], &["sub.example.com"], &[])),
            solver(Http01, sel(&["www.sub.example.com"], &[], &[])),
            solver(Dns01, sel(&[], &[], &[("team", "a")])),
        ];
        // No selector matches: the catch-all.
        assert_eq!(
            pick_solver(&solvers, "other.org", &both, &none),
            Some((0, Http01))
        );
        // Longest zone wins over a shorter one.
        assert_eq!(
            pick_solver(&solvers, "a.example.com", &both, &none),
            Some((1, Dns01))
        );
        assert_eq!(
            pick_solver(&solvers, "a.sub.example.com", &both, &none),
            Some((2, Dns01))
        );
        // A dnsNames match wins over every zone.
        assert_eq!(
            pick_solver(&solvers, "www.sub.example.com", &both, &none),
            Some((3, Http01))
        );
        // Labels only count when nothing names the domain or its zone.
        assert_eq!(
            pick_solver(&solvers, "other.org", &both, &team),
            Some((4, Dns01))
        );
        assert_eq!(
            pick_solver(&solvers, "a.example.com", &both, &team),
            Some((1, Dns01))
        );
        // Only types the authorization offers (a wildcard is DNS-01 only).
        assert_eq!(pick_solver(&solvers, "*.other.org", &[Dns01], &none), None);
        assert_eq!(
            pick_solver(&solvers, "*.example.com", &[Dns01], &none),
            Some((1, Dns01))
        );
        // A zone is not a suffix match on a label boundary.
        assert_eq!(
            pick_solver(&solvers, "notexample.com", &[Dns01], &none),
            None
        );
        assert_eq!(pick_solver(&[], "a.example.com", &both, &none), None);
    }

    #[test]
    fn nameservers_and_tsig_names() {
        assert_eq!(
            parse_nameserver("127.0.0.1"),
            Some("127.0.0.1:53".parse().expect("addr"))
        );
        assert_eq!(
            parse_nameserver("127.0.0.1:5353"),
            Some("127.0.0.1:5353".parse().expect("addr"))
        );
        assert_eq!(
            parse_nameserver("[::1]:54"),
            Some("[::1]:54".parse().expect("addr"))
        );
        assert_eq!(
            parse_nameserver("::1"),
            Some("[::1]:53".parse().expect("addr"))
        );
        assert_eq!(parse_nameserver("ns.example.com"), None);
        assert_eq!(
            TsigAlgorithm::parse("hmacsha256"),
            Some(TsigAlgorithm::HmacSha256)
        );
        assert_eq!(TsigAlgorithm::parse("HMACSHA384"), None);
    }
}

/// The API group of Orders and Challenges.
pub const ACME_GROUP: &str = "acme.cert-manager.io";
pub const ACME_API_VERSION: &str = "acme.cert-manager.io/v1";

/// `Order.spec`: one ACME order for a CertificateRequest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderSpec {
    /// The CSR (base64 of PEM) the order is finalized with.
    #[serde(default)]
    pub request: String,
    /// The issuer the order belongs to.
    #[serde(default)]
    pub issuer_ref: crate::types::IssuerRef,
    /// The common name of the CSR, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common_name: Option<String>,
    /// The DNS names the order is for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_names: Vec<String>,
    /// The IP addresses the order is for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_addresses: Vec<String>,
    /// The duration asked for (with enableDurationFeature).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
}

/// An authorization of an Order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderAuthorization {
    /// The authorization's URL.
    #[serde(default)]
    pub url: String,
    /// The name it authorizes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifier: Option<String>,
    /// Whether it is for a wildcard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wildcard: Option<bool>,
    /// Its state when first seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_state: Option<String>,
}

/// `Order.status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderStatus {
    /// The order's URL on the ACME server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Where the order is finalized.
    #[serde(
        default,
        rename = "finalizeURL",
        skip_serializing_if = "Option::is_none"
    )]
    pub finalize_url: Option<String>,
    /// The issued certificate chain (base64 of PEM), once valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    /// valid, ready, pending, processing, invalid, expired or errored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Why the order is in its state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The order's authorizations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authorizations: Vec<OrderAuthorization>,
    /// When the order failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_time: Option<String>,
}

/// `Challenge.spec`: one challenge being solved.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChallengeSpec {
    /// The challenge's URL.
    #[serde(default)]
    pub url: String,
    /// The URL of its authorization.
    #[serde(default, rename = "authorizationURL")]
    pub authorization_url: String,
    /// The name being validated (without `*.`).
    #[serde(default)]
    pub dns_name: String,
    /// Whether the name is a wildcard.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub wildcard: bool,
    /// HTTP-01 or DNS-01.
    #[serde(default, rename = "type")]
    pub type_: String,
    /// The challenge token.
    #[serde(default)]
    pub token: String,
    /// What is presented: the key authorization (HTTP-01) or its digest (DNS-01).
    #[serde(default)]
    pub key: String,
    /// The solver used.
    #[serde(default)]
    pub solver: AcmeSolver,
    /// The issuer the challenge belongs to.
    #[serde(default)]
    pub issuer_ref: crate::types::IssuerRef,
}

/// `Challenge.status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChallengeStatus {
    /// Whether certwright is working on it.
    #[serde(default)]
    pub processing: bool,
    /// Whether the token is served or the record written.
    #[serde(default)]
    pub presented: bool,
    /// What it waits for, or why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// valid, ready, pending, processing, invalid, expired or errored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

pub type Order = crate::types::Object<OrderSpec, OrderStatus>;
pub type Challenge = crate::types::Object<ChallengeSpec, ChallengeStatus>;
