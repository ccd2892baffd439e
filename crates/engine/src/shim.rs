//! cert-manager's ingress-shim: an Ingress annotated `cert-manager.io/issuer` or
//! `cert-manager.io/cluster-issuer` gets one Certificate per `spec.tls` entry, named after
//! the entry's secretName, for its hosts, from that issuer; more annotations on the
//! Ingress shape the Certificates (issuer-kind, issuer-group, common-name, alt-names,
//! duration, renew-before, renew-before-percentage, usages, revision-history-limit,
//! private-key-algorithm, -encoding, -size, -rotation-policy). The shells own the
//! Certificates this computes (owner reference to the Ingress), create them, update them
//! when they differ, and delete those no longer asked for.

use crate::lifecycle::Problem;
use certwright_api::{CertificateSpec, IssuerRef, PrivateKeySpec};
use std::collections::BTreeMap;

pub const ISSUER: &str = "cert-manager.io/issuer";
/// cert-manager's openshift-routes names the issuer of a Route with this (`issuer` is its
/// alias there).
pub const ISSUER_NAME: &str = "cert-manager.io/issuer-name";
pub const CLUSTER_ISSUER: &str = "cert-manager.io/cluster-issuer";
pub const ISSUER_KIND: &str = "cert-manager.io/issuer-kind";
pub const ISSUER_GROUP: &str = "cert-manager.io/issuer-group";
const COMMON_NAME: &str = "cert-manager.io/common-name";
const ALT_NAMES: &str = "cert-manager.io/alt-names";
const DURATION: &str = "cert-manager.io/duration";
const RENEW_BEFORE: &str = "cert-manager.io/renew-before";
const RENEW_BEFORE_PERCENTAGE: &str = "cert-manager.io/renew-before-percentage";
const USAGES: &str = "cert-manager.io/usages";
const REVISION_HISTORY_LIMIT: &str = "cert-manager.io/revision-history-limit";
const KEY_ALGORITHM: &str = "cert-manager.io/private-key-algorithm";
const KEY_ENCODING: &str = "cert-manager.io/private-key-encoding";
const KEY_SIZE: &str = "cert-manager.io/private-key-size";
const KEY_ROTATION: &str = "cert-manager.io/private-key-rotation-policy";

/// Whether an Ingress's or a Route's annotations ask for Certificates.
pub fn wants(annotations: &BTreeMap<String, String>) -> bool {
    [ISSUER, ISSUER_NAME, CLUSTER_ISSUER]
        .iter()
        .any(|k| annotations.contains_key(*k))
}

/// One `spec.tls` entry of an Ingress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsEntry {
    pub hosts: Vec<String>,
    pub secret_name: String,
}

fn bad(message: String) -> Problem {
    Problem::new("BadConfig", message)
}

fn list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn issuer_ref(a: &BTreeMap<String, String>) -> Result<IssuerRef, Problem> {
    let get = |k: &str| {
        a.get(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    match (
        get(ISSUER).or_else(|| get(ISSUER_NAME)),
        get(CLUSTER_ISSUER),
    ) {
        (Some(_), Some(_)) => Err(bad(format!(
            "both {ISSUER} and {CLUSTER_ISSUER} are set: name one issuer"
        ))),
        (Some(name), None) => Ok(IssuerRef {
            name,
            kind: Some(get(ISSUER_KIND).unwrap_or_else(|| "Issuer".into())),
            group: get(ISSUER_GROUP),
        }),
        (None, Some(name)) => Ok(IssuerRef {
            name,
            kind: Some("ClusterIssuer".into()),
            group: None,
        }),
        (None, None) => Err(bad(format!(
            "neither {ISSUER} nor {CLUSTER_ISSUER} names an issuer"
        ))),
    }
}

/// What an Ingress asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    /// (name, spec), one per usable `tls` entry, in order.
    pub certificates: Vec<(String, CertificateSpec)>,
    /// Entries skipped (no secretName or hosts, a secretName used twice), as
    /// cert-manager skips them with a warning.
    pub skipped: Vec<Problem>,
}

/// The Certificates an Ingress asks for, or why it asks for none.
pub fn ingress_certificates(
    annotations: &BTreeMap<String, String>,
    tls: &[TlsEntry],
) -> Result<Planned, Problem> {
    let issuer = issuer_ref(annotations)?;
    let a = |k: &str| annotations.get(k).map(|v| v.trim().to_string());
    let mut out: Vec<(String, CertificateSpec)> = Vec::new();
    let mut skipped = Vec::new();
    for (i, entry) in tls.iter().enumerate() {
        if entry.secret_name.is_empty() {
            skipped.push(bad(format!("spec.tls[{i}].secretName: required")));
            continue;
        }
        if entry.hosts.is_empty() {
            skipped.push(bad(format!(
                "spec.tls[{i}].hosts: at least one host is required"
            )));
            continue;
        }
        if out.iter().any(|(n, _)| *n == entry.secret_name) {
            skipped.push(bad(format!(
                "spec.tls[{i}].secretName: {:?} is used by another entry",
                entry.secret_name
            )));
            continue;
        }
        let (ips, mut dns): (Vec<String>, Vec<String>) = entry
            .hosts
            .iter()
            .cloned()
            .partition(|h| h.parse::<std::net::IpAddr>().is_ok());
        if let Some(more) = a(ALT_NAMES) {
            dns.extend(list(&more));
        }
        let size = match a(KEY_SIZE) {
            Some(s) => Some(
                s.parse::<i64>()
                    .map_err(|_| bad(format!("{KEY_SIZE}: {s:?} is not a number")))?,
            ),
            None => None,
        };
        let pct =
            match a(RENEW_BEFORE_PERCENTAGE) {
                Some(s) => Some(s.parse::<i64>().map_err(|_| {
                    bad(format!("{RENEW_BEFORE_PERCENTAGE}: {s:?} is not a number"))
                })?),
                None => None,
            };
        let limit = match a(REVISION_HISTORY_LIMIT) {
            Some(s) => Some(
                s.parse::<i64>()
                    .map_err(|_| bad(format!("{REVISION_HISTORY_LIMIT}: {s:?} is not a number")))?,
            ),
            None => None,
        };
        let key = PrivateKeySpec {
            algorithm: a(KEY_ALGORITHM),
            encoding: a(KEY_ENCODING),
            size,
            rotation_policy: a(KEY_ROTATION),
        };
        let spec = CertificateSpec {
            secret_name: entry.secret_name.clone(),
            dns_names: dns,
            ip_addresses: ips,
            issuer_ref: issuer.clone(),
            common_name: a(COMMON_NAME),
            duration: a(DURATION),
            renew_before: a(RENEW_BEFORE),
            renew_before_percentage: pct,
            revision_history_limit: limit,
            usages: a(USAGES)
                .map(|u| list(&u))
                .unwrap_or_else(|| vec!["digital signature".into(), "key encipherment".into()]),
            private_key: (key != PrivateKeySpec::default()).then_some(key),
            ..Default::default()
        };
        out.push((entry.secret_name.clone(), spec));
    }
    Ok(Planned {
        certificates: out,
        skipped,
    })
}

/// The Secret a Route's shim Certificate writes (the Certificate has the Route's name).
pub fn route_secret_name(route_name: &str) -> String {
    format!("{route_name}-tls")
}

/// The Certificate a Route's annotations ask for (cert-manager's openshift-routes, with
/// the Ingress annotations): named after the Route, for its host, writing
/// [`route_secret_name`]. None when the Route asks for none; a problem when it has no
/// host yet.
pub fn route_certificate(
    annotations: &BTreeMap<String, String>,
    route_name: &str,
    host: Option<&str>,
) -> Result<Option<(String, CertificateSpec)>, Problem> {
    if !wants(annotations) {
        return Ok(None);
    }
    let host = host.filter(|h| !h.is_empty()).ok_or_else(|| {
        bad("the Route has no host yet (spec.host or status.ingress[0].host)".into())
    })?;
    let entry = TlsEntry {
        hosts: vec![host.to_string()],
        secret_name: route_secret_name(route_name),
    };
    let planned = ingress_certificates(annotations, &[entry])?;
    Ok(planned
        .certificates
        .into_iter()
        .next()
        .map(|(_, spec)| (route_name.to_string(), spec)))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_support::annotations as a;

    #[test]
    fn one_certificate_per_tls_entry_shaped_by_the_annotations() {
        let tls = [
            TlsEntry {
                hosts: vec!["web.example.com".into(), "10.0.0.1".into()],
                secret_name: "web-tls".into(),
            },
            TlsEntry {
                hosts: vec![],
                secret_name: "empty".into(),
            },
            TlsEntry {
                hosts: vec!["api.example.com".into()],
                secret_name: "api-tls".into(),
            },
        ];
        let ann = a(&[
            (CLUSTER_ISSUER, "internal-issuer"),
            (DURATION, "24h"),
            (USAGES, "server auth, digital signature"),
            (KEY_ALGORITHM, "ECDSA"),
            (KEY_SIZE, "384"),
        ]);
        let Planned {
            certificates: certs,
            skipped,
        } = ingress_certificates(&ann, &tls).expect("certificates");
        assert_eq!(certs.len(), 2);
        assert_eq!(skipped.len(), 1, "{skipped:?}");
        let (name, spec) = &certs[0];
        assert_eq!(name, "web-tls");
        assert_eq!(spec.dns_names, ["web.example.com"]);
        assert_eq!(spec.ip_addresses, ["10.0.0.1"]);
        assert_eq!(spec.issuer_ref.kind.as_deref(), Some("ClusterIssuer"));
        assert_eq!(spec.usages, ["server auth", "digital signature"]);
        let key = spec.private_key.as_ref().expect("key");
        assert_eq!(
            (key.algorithm.as_deref(), key.size),
            (Some("ECDSA"), Some(384))
        );
        let e = ingress_certificates(&a(&[(ISSUER, "a"), (CLUSTER_ISSUER, "b")]), &tls)
            .expect_err("two issuers");
        assert!(e.message.contains("name one issuer"), "{e}");
    }

    #[test]
    fn a_route_asks_for_one_certificate_for_its_host() {
        let ann = a(&[(ISSUER_NAME, "acme"), (ISSUER_KIND, "ClusterIssuer")]);
        let (name, spec) = route_certificate(&ann, "web", Some("web.apps.example.com"))
            .expect("ok")
            .expect("asked");
        assert_eq!(
            (name.as_str(), spec.secret_name.as_str()),
            ("web", "web-tls")
        );
        assert_eq!(spec.dns_names, ["web.apps.example.com"]);
        assert_eq!(spec.issuer_ref.name, "acme");
        assert_eq!(spec.issuer_ref.kind.as_deref(), Some("ClusterIssuer"));
        assert_eq!(route_certificate(&a(&[]), "web", None).expect("ok"), None);
        let e = route_certificate(&ann, "web", None).expect_err("no host");
        assert!(e.message.contains("no host yet"), "{e}");
    }
}
