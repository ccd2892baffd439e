//! Issuers and ClusterIssuers: which kind of issuer, and its own fields.

use super::{check_name, fe, is_dns1123_subdomain, FieldError};
use crate::types::Issuer;

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
