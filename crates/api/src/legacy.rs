//! The 2019 `certmanager.k8s.io/v1alpha1` API, read and converted to `cert-manager.io/v1`.
//!
//! Field mapping: `keyAlgorithm` (rsa|ecdsa) → `privateKey.algorithm`, `keySize` →
//! `privateKey.size`, `keyEncoding` (pkcs1|pkcs8) → `privateKey.encoding`, `organization`
//! → `subject.organizations`. ACME: an issuer's `http01` and `dns01.providers` become
//! `solvers`; a certificate's `acme.config` (which provider solves which domains) becomes
//! a `selector.dnsNames` on the matching solver when the issuer is converted in the same
//! run, and is otherwise reported.

use crate::types::{self, CertificateSpec, IssuerRef, PrivateKeySpec, X509Subject};
use serde::Deserialize;
use serde_json::{json, Map, Value};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LegacyCertificateSpec {
    #[serde(default)]
    pub secret_name: String,
    #[serde(default)]
    pub issuer_ref: IssuerRef,
    #[serde(default)]
    pub common_name: Option<String>,
    #[serde(default)]
    pub dns_names: Vec<String>,
    #[serde(default)]
    pub ip_addresses: Vec<String>,
    #[serde(default, rename = "uriSANs")]
    pub uri_sans: Vec<String>,
    #[serde(default, rename = "isCA")]
    pub is_ca: bool,
    #[serde(default)]
    pub duration: Option<String>,
    #[serde(default)]
    pub renew_before: Option<String>,
    #[serde(default)]
    pub key_algorithm: Option<String>,
    #[serde(default)]
    pub key_size: Option<i64>,
    #[serde(default)]
    pub key_encoding: Option<String>,
    #[serde(default)]
    pub organization: Vec<String>,
    #[serde(default)]
    pub usages: Vec<String>,
    #[serde(default)]
    pub acme: Option<LegacyAcmeCertificateConfig>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LegacyAcmeCertificateConfig {
    #[serde(default)]
    pub config: Vec<LegacyDomainSolverConfig>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LegacyDomainSolverConfig {
    #[serde(default)]
    pub domains: Vec<String>,
    #[serde(default)]
    pub http01: Option<Value>,
    #[serde(default)]
    pub dns01: Option<LegacyDns01Ref>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LegacyDns01Ref {
    #[serde(default)]
    pub provider: String,
}

/// Why a v1alpha1 manifest cannot be converted; each names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LegacyError {
    #[error("spec.{field}: {value:?} must be one of {allowed}")]
    NotOneOf {
        field: &'static str,
        value: String,
        allowed: String,
    },
    #[error("{0}: must be a mapping")]
    NotAMapping(String),
    #[error("spec.{0}: unknown field in a v1alpha1 issuer")]
    UnknownIssuerField(String),
    #[error("spec.acme.{0}: unknown field in a v1alpha1 ACME issuer")]
    UnknownAcmeField(String),
}

fn lower_to(
    v: &Option<String>,
    field: &'static str,
    map: &[(&str, &str)],
) -> Result<Option<String>, LegacyError> {
    match v.as_deref() {
        None | Some("") => Ok(None),
        Some(s) => map
            .iter()
            .find(|(from, _)| from.eq_ignore_ascii_case(s))
            .map(|(_, to)| Some(to.to_string()))
            .ok_or_else(|| {
                let allowed: Vec<&str> = map.iter().map(|(f, _)| *f).collect();
                LegacyError::NotOneOf {
                    field,
                    value: s.to_string(),
                    allowed: allowed.join(", "),
                }
            }),
    }
}

/// Converts a legacy Certificate spec. The ACME block, if any, is returned for the caller
/// to merge into the issuer's solvers.
pub fn convert_certificate_spec(
    l: &LegacyCertificateSpec,
) -> Result<(CertificateSpec, Option<LegacyAcmeCertificateConfig>), LegacyError> {
    let algorithm = lower_to(
        &l.key_algorithm,
        "keyAlgorithm",
        &[("rsa", "RSA"), ("ecdsa", "ECDSA")],
    )?;
    let encoding = lower_to(
        &l.key_encoding,
        "keyEncoding",
        &[("pkcs1", "PKCS1"), ("pkcs8", "PKCS8")],
    )?;
    let private_key = if algorithm.is_some() || encoding.is_some() || l.key_size.is_some() {
        Some(PrivateKeySpec {
            algorithm,
            encoding,
            size: l.key_size,
            // The 2019 API always kept the private key across renewals.
            rotation_policy: Some("Never".into()),
        })
    } else {
        None
    };
    let spec = CertificateSpec {
        secret_name: l.secret_name.clone(),
        issuer_ref: l.issuer_ref.clone(),
        common_name: l.common_name.clone(),
        dns_names: l.dns_names.clone(),
        ip_addresses: l.ip_addresses.clone(),
        uris: l.uri_sans.clone(),
        is_ca: l.is_ca,
        duration: l.duration.clone(),
        renew_before: l.renew_before.clone(),
        usages: l.usages.clone(),
        private_key,
        subject: (!l.organization.is_empty()).then(|| X509Subject {
            organizations: l.organization.clone(),
            ..Default::default()
        }),
        ..Default::default()
    };
    Ok((spec, l.acme.clone()))
}

/// Converts a legacy Issuer/ClusterIssuer spec (as JSON) to a v1 spec (as JSON).
pub fn convert_issuer_spec(spec: &Value) -> Result<Value, LegacyError> {
    let obj = spec
        .as_object()
        .ok_or_else(|| LegacyError::NotAMapping("spec".into()))?;
    let mut out = Map::new();
    for (k, v) in obj {
        match k.as_str() {
            "selfSigned" | "ca" | "vault" | "venafi" => {
                out.insert(k.clone(), v.clone());
            }
            "acme" => {
                out.insert("acme".into(), convert_acme(v)?);
            }
            other => return Err(LegacyError::UnknownIssuerField(other.to_string())),
        }
    }
    Ok(Value::Object(out))
}

fn convert_acme(acme: &Value) -> Result<Value, LegacyError> {
    let obj = acme
        .as_object()
        .ok_or_else(|| LegacyError::NotAMapping("spec.acme".into()))?;
    let mut out = Map::new();
    let mut solvers = Vec::new();
    for (k, v) in obj {
        match k.as_str() {
            "server"
            | "email"
            | "privateKeySecretRef"
            | "skipTLSVerify"
            | "externalAccountBinding" => {
                out.insert(k.clone(), v.clone());
            }
            "http01" => {
                let mut ingress = Map::new();
                if let Some(class) = v.get("ingressClass") {
                    ingress.insert("class".into(), class.clone());
                }
                solvers.push(json!({"http01": {"ingress": Value::Object(ingress)}}));
            }
            "dns01" => {
                let providers = v
                    .get("providers")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                for (i, p) in providers.iter().enumerate() {
                    let p = p.as_object().ok_or_else(|| {
                        LegacyError::NotAMapping(format!("spec.acme.dns01.providers[{i}]"))
                    })?;
                    let name = p.get("name").and_then(Value::as_str).unwrap_or_default();
                    let mut dns01 = Map::new();
                    for (pk, pv) in p {
                        if pk != "name" {
                            dns01.insert(pk.clone(), pv.clone());
                        }
                    }
                    // The provider name is kept so that certificates' acme.config can be
                    // matched to it; it is removed once selectors are merged.
                    solvers.push(json!({"dns01": Value::Object(dns01), "x-legacy-provider": name}));
                }
            }
            other => return Err(LegacyError::UnknownAcmeField(other.to_string())),
        }
    }
    out.insert("solvers".into(), Value::Array(solvers));
    Ok(Value::Object(out))
}

/// Merges certificates' legacy `acme.config` into converted ACME issuers' solvers: the
/// domains of each entry become `selector.dnsNames` of the solver whose v1alpha1
/// provider it names (or of the HTTP-01 solvers, for an `http01` entry). Returns what
/// matched no solver, for people to fix by hand.
pub fn merge_solver_selectors(
    issuers: &mut [&mut crate::acme::AcmeIssuer],
    configs: &[(String, LegacyAcmeCertificateConfig)],
) -> Vec<String> {
    let mut unmatched = Vec::new();
    for (cert, cfg) in configs {
        for c in &cfg.config {
            let provider = c.dns01.as_ref().map(|d| d.provider.as_str());
            let mut matched = false;
            for issuer in issuers.iter_mut() {
                for s in issuer.solvers.iter_mut() {
                    let fits = match provider {
                        Some(p) => s.legacy_provider.as_deref() == Some(p),
                        None => s.http01.is_some(),
                    };
                    if fits {
                        let sel = s.selector.get_or_insert_with(Default::default);
                        for d in &c.domains {
                            if !sel.dns_names.contains(d) {
                                sel.dns_names.push(d.clone());
                            }
                        }
                        matched = true;
                    }
                }
            }
            if !matched {
                unmatched.push(format!(
                    "Certificate {cert}: acme.config for {:?} names no solver found in the converted issuers ({}); add it to the issuer's spec.acme.solvers by hand",
                    c.domains,
                    provider.map(|p| format!("dns01 provider {p:?}")).unwrap_or_else(|| "http01".into())
                ));
            }
        }
    }
    unmatched
}

pub fn is_legacy(api_version: &str) -> bool {
    api_version == types::LEGACY_API_VERSION
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_key_fields() {
        let l = LegacyCertificateSpec {
            secret_name: "s".into(),
            key_algorithm: Some("ecdsa".into()),
            key_size: Some(384),
            key_encoding: Some("pkcs8".into()),
            organization: vec!["Acme".into()],
            ..Default::default()
        };
        let (v1, acme) = convert_certificate_spec(&l).expect("converts");
        let pk = v1.private_key.expect("private key");
        assert_eq!(pk.algorithm.as_deref(), Some("ECDSA"));
        assert_eq!(pk.size, Some(384));
        assert_eq!(pk.encoding.as_deref(), Some("PKCS8"));
        assert_eq!(
            v1.subject.expect("subject").organizations,
            vec!["Acme".to_string()]
        );
        assert!(acme.is_none());
        let bad = LegacyCertificateSpec {
            key_algorithm: Some("dsa".into()),
            ..Default::default()
        };
        assert!(convert_certificate_spec(&bad)
            .expect_err("rejects")
            .to_string()
            .contains("keyAlgorithm"));
    }

    #[test]
    fn acme_providers_become_solvers_with_selectors() {
        let spec = json!({"acme": {"server": "https://acme/dir", "email": "a@b.c",
            "privateKeySecretRef": {"name": "k"},
            "dns01": {"providers": [{"name": "cluster-dns", "route53": {"region": "eu-west-1"}}]}}});
        let v1 = convert_issuer_spec(&spec).expect("converts");
        let mut issuer: crate::acme::AcmeIssuer =
            serde_json::from_value(v1["acme"].clone()).expect("typed");
        let cfg = LegacyAcmeCertificateConfig {
            config: vec![LegacyDomainSolverConfig {
                domains: vec!["a.example.com".into()],
                dns01: Some(LegacyDns01Ref {
                    provider: "cluster-dns".into(),
                }),
                http01: None,
            }],
        };
        let unmatched = merge_solver_selectors(&mut [&mut issuer], &[("demo/c".into(), cfg)]);
        assert!(unmatched.is_empty());
        // The provider's name is not written out; the domains became a selector.
        assert_eq!(
            serde_json::to_value(&issuer.solvers[0]).expect("json"),
            json!({"dns01": {"route53": {"region": "eu-west-1"}}, "selector": {"dnsNames": ["a.example.com"]}})
        );
    }
}
