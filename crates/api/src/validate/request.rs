//! CertificateRequests that others create: the CSR and the spec's own fields.

use super::{check_duration, check_usages, fe, issuer_kind, FieldError, KeyType};
use super::{IssuanceSpec, SubjectSpec};
use crate::types::CertificateRequest;

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
            Ok(s) if s.contains("CERTIFICATE REQUEST-----") => {
                if let Err(e) = parse_pem_csr(&s) {
                    errors.push(fe("InvalidRequest", "spec.request", e));
                }
                s
            }
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
            key_algorithm: KeyType::FromRequest,
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

/// The CSR in a PEM block, parsed and its signature checked: a request that cannot be
/// signed is refused when it is made, not when an issuer reads it.
fn parse_pem_csr(pem: &str) -> Result<(), String> {
    let blocks = certwright_pki::pem::decode_all(pem.as_bytes())
        .map_err(|e| format!("not a PEM certificate request: {e}"))?;
    let block = blocks
        .iter()
        .find(|b| b.label == "CERTIFICATE REQUEST")
        .ok_or("no CERTIFICATE REQUEST PEM block")?;
    certwright_pki::cert::parse_csr(&block.der)
        .map(|_| ())
        .map_err(|e| format!("the certificate request cannot be read: {e}"))
}
