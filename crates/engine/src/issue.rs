//! Issuance: building the request for a Certificate, and the issuer interface that
//! both synchronous signers (self-signed, CA) and asynchronous ones (ACME, whose orders take
//! minutes and survive restarts) implement.
//!
//! An issuer is asked to *process* a request; it answers `Issued`, `Pending` (with state to
//! persist and a time to ask again) or `Failed`. The shell persists the request and its
//! state between calls, so a pending order resumes after a restart.

use crate::observe::SecretData;
use certwright_api::annotations::keys;
use certwright_api::validate::IssuanceSpec;
use certwright_pki::cert::{self, Csr, Signer, Validity};
use certwright_pki::inspect::{self, CertInfo};
use certwright_pki::{der, Name, PrivateKey, Profile, SubjectFields};
use std::time::Duration;

/// Why a certificate request could not be built or read.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("spec.literalSubject: {0}")]
    LiteralSubject(#[from] certwright_pki::NameError),
    #[error("building the certificate request: {0}")]
    Build(#[source] cert::CertError),
    #[error("certificate request: {0}")]
    Pem(#[from] certwright_pki::pem::PemError),
    #[error("certificate request: no CERTIFICATE REQUEST PEM block")]
    NoCsrBlock,
    #[error("certificate request: {0}")]
    Parse(#[source] cert::CertError),
}

/// Why what an issuer returned is not a certificate for the request. The message is an
/// attempt's failure message (reason `InvalidCertificate`), the same in both runtimes.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IssuedError {
    #[error("the issuer returned a certificate that cannot be read: {0}")]
    Chain(#[source] inspect::InspectError),
    #[error("the issuer returned a CA certificate that cannot be read: {0}")]
    Ca(#[source] inspect::InspectError),
    #[error("the issuer returned no certificate")]
    Empty,
    #[error("the issuer returned a certificate for another key than the request's")]
    OtherKey,
}

/// Builds the request profile for a Certificate's issuance parameters.
pub fn profile(spec: &IssuanceSpec) -> Result<Profile, RequestError> {
    let subject = match &spec.subject.literal {
        Some(l) => Name::parse_rfc4514(l)?,
        None => {
            let f = spec.subject.fields.clone().unwrap_or_default();
            Name::from_fields(&SubjectFields {
                common_name: spec.subject.common_name.clone(),
                countries: f.countries,
                provinces: f.provinces,
                localities: f.localities,
                street_addresses: f.street_addresses,
                postal_codes: f.postal_codes,
                organizations: f.organizations,
                organizational_units: f.organizational_units,
                serial_number: f.serial_number,
            })
        }
    };
    let (key_usages, ext_key_usages) = if spec.encode_usages_in_request {
        spec.effective_usages()
    } else {
        (vec![], vec![])
    };
    Ok(Profile {
        subject,
        dns_names: spec.dns_names.clone(),
        ip_addresses: spec.ip_addresses.clone(),
        uris: spec.uris.clone(),
        email_addresses: spec.email_addresses.clone(),
        key_usages,
        ext_key_usages,
        is_ca: spec.is_ca,
        name_constraints: spec.name_constraints_pki(),
    })
}

/// A PEM CSR for the spec, signed by `key`.
pub fn build_request(spec: &IssuanceSpec, key: &PrivateKey) -> Result<String, RequestError> {
    let p = profile(spec)?;
    let der = cert::build_csr(&p, key).map_err(RequestError::Build)?;
    Ok(certwright_pki::pem::encode("CERTIFICATE REQUEST", &der))
}

/// An issued certificate: chain (leaf first) and CA certificates, DER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    pub chain: Vec<Vec<u8>>,
    pub ca: Vec<Vec<u8>>,
    /// What the issuer kept about the issuance (an ACME order's record), recorded with
    /// the issued request so that shells can show how it ended; null for most issuers.
    pub state: serde_json::Value,
}

impl Issued {
    /// Reads what an issuer returned and checks it is a certificate for `key`: the leaf
    /// first, then the CA certificates. Errors are an attempt's failure message
    /// (reason `InvalidCertificate`), the same in both runtimes.
    pub fn check(&self, key: &PrivateKey) -> Result<(Vec<CertInfo>, Vec<CertInfo>), IssuedError> {
        let parse = |ders: &[Vec<u8>]| -> Result<Vec<CertInfo>, inspect::InspectError> {
            ders.iter().map(|d| CertInfo::parse(d)).collect()
        };
        let chain = parse(&self.chain).map_err(IssuedError::Chain)?;
        let ca = parse(&self.ca).map_err(IssuedError::Ca)?;
        match chain.first() {
            None => Err(IssuedError::Empty),
            Some(leaf) if leaf.spki_der != key.spki_der() => Err(IssuedError::OtherKey),
            Some(_) => Ok((chain, ca)),
        }
    }
}

/// What an issuer answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Issued(Issued),
    /// Not done yet: persist `state` with the request and ask again after `retry_after`.
    Pending {
        reason: String,
        message: String,
        retry_after: Duration,
        state: serde_json::Value,
    },
    /// This request failed; the Certificate backs off before a new request.
    Failed {
        reason: String,
        message: String,
    },
}

/// A request being processed.
pub struct Request<'a> {
    /// Who asks: `namespace/name` of the Certificate (or CertificateRequest), for an
    /// issuer that reports progress later (ACME).
    pub subject: &'a str,
    /// The Certificate's labels (ACME solver selectors match them).
    pub labels: &'a std::collections::BTreeMap<String, String>,
    /// PEM CSR.
    pub csr_pem: &'a str,
    pub spec: &'a IssuanceSpec,
    /// The request's private key, when the caller holds it: self-signing needs it; a
    /// CA signs a CertificateRequest without ever seeing its key.
    pub key: Option<&'a PrivateKey>,
    /// State the issuer returned with its last `Pending` answer.
    pub state: &'a serde_json::Value,
    /// The certificate this request renews (the leaf in the Secret), if any: an ACME
    /// order names it in `replaces` (RFC 9773).
    pub current: Option<&'a CertInfo>,
    /// Unix seconds.
    pub now: i64,
}

/// The issuer seam. Implementations must be idempotent for a given request and state.
pub trait Issuer: Send + Sync {
    fn process(&self, req: &Request<'_>) -> Outcome;

    /// When the issuer suggests renewing `leaf` (Unix seconds): ACME Renewal Information
    /// (RFC 9773). It replaces the time the spec gives. Must not wait: an issuer that has
    /// to ask answers from what it last learnt (None until then) and has `subject` looked
    /// at again when it knows more.
    fn renewal_time(&self, subject: &str, leaf: &CertInfo, now: i64) -> Option<i64> {
        let _ = (subject, leaf, now);
        None
    }

    /// A CA issuer's (signing certificate, the CA it hands out as `ca.crt`): leaves it
    /// signed follow a change of either (see [`crate::carotation`]).
    fn trust(&self) -> Option<(&CertInfo, &CertInfo)> {
        None
    }
}

fn parse_csr_pem(pem: &str) -> Result<Csr, RequestError> {
    let blocks = certwright_pki::pem::decode_all(pem.as_bytes())?;
    let b = blocks
        .iter()
        .find(|b| b.label == "CERTIFICATE REQUEST" || b.label == "NEW CERTIFICATE REQUEST")
        .ok_or(RequestError::NoCsrBlock)?;
    cert::parse_csr(&b.der).map_err(RequestError::Parse)
}

/// The usages a certificate gets: the spec's (a Certificate's or a CertificateRequest's),
/// or cert-manager's defaults, whatever the CSR asked for.
struct SpecUsages(Vec<certwright_pki::cert::KeyUsage>, Vec<String>);

impl SpecUsages {
    fn as_usages(&self) -> cert::Usages<'_> {
        cert::Usages {
            key: &self.0,
            ext: &self.1,
        }
    }
}

fn usages(spec: &IssuanceSpec) -> SpecUsages {
    let (k, e) = spec.effective_usages();
    SpecUsages(k, e)
}

fn failed(reason: &str, message: impl Into<String>) -> Outcome {
    Outcome::Failed {
        reason: reason.into(),
        message: message.into(),
    }
}

/// Signs a request with its own key; `extra`: the issuer's URL extensions
/// (`crlDistributionPoints`).
#[derive(Default)]
pub struct SelfSigned {
    pub extra: Vec<cert::Extension>,
}

impl Issuer for SelfSigned {
    fn process(&self, req: &Request<'_>) -> Outcome {
        let csr = match parse_csr_pem(req.csr_pem) {
            Ok(c) => c,
            Err(e) => return failed("InvalidRequest", e.to_string()),
        };
        let Some(key) = req.key else {
            return failed(
                "InvalidRequest",
                "self-signing needs the request's private key",
            );
        };
        if csr.spki_der != key.spki_der() {
            return failed(
                "InvalidRequest",
                "the request's public key does not match its private key",
            );
        }
        let validity = match validity(req, None) {
            Ok(v) => v,
            Err(o) => return o,
        };
        match cert::sign_csr(
            &csr,
            req.spec.is_ca,
            &validity,
            &cert::random_serial(),
            &Signer::SelfSigned(key),
            Some(&usages(req.spec).as_usages()),
            &self.extra,
        ) {
            Ok(der) => Outcome::Issued(Issued {
                chain: vec![der.clone()],
                ca: vec![der],
                state: serde_json::Value::Null,
            }),
            Err(e) => failed("SigningError", format!("signing: {e}")),
        }
    }
}

/// The last instant an X.509 certificate can express: 9999-12-31T23:59:59Z (RFC 5280,
/// 4.1.2.5: GeneralizedTime has four year digits).
pub const MAX_NOT_AFTER: i64 = 253_402_300_799;

/// A certificate's validity from now for the spec's duration, capped at `cap` (the CA's
/// notAfter); a notAfter past [`MAX_NOT_AFTER`] fails: it cannot be encoded.
fn validity(req: &Request<'_>, cap: Option<i64>) -> Result<Validity, Outcome> {
    let end = i64::try_from(req.spec.duration_seconds)
        .ok()
        .and_then(|d| req.now.checked_add(d));
    let not_after = match (end, cap) {
        (Some(e), Some(c)) => e.min(c),
        (Some(e), None) => e,
        (None, Some(c)) => c,
        (None, None) => i64::MAX,
    };
    if not_after > MAX_NOT_AFTER {
        return Err(failed(
            "InvalidDuration",
            format!(
                "spec.duration: the certificate would expire after {} (the latest date a certificate can hold)",
                der::rfc3339(MAX_NOT_AFTER)
            ),
        ));
    }
    Ok(Validity {
        not_before: req.now,
        not_after,
    })
}

/// A CA's signing material, checked.
#[derive(Debug)]
pub struct CaMaterial {
    /// tls.crt: the CA certificate first, then its chain.
    pub chain: Vec<CertInfo>,
    pub key: PrivateKey,
    /// What leaf Secrets get as ca.crt: the top of tls.crt's chain, as cert-manager gives
    /// it. That is the root when tls.crt holds it, else the highest intermediate (a CA
    /// Secret written by a Certificate holds only the intermediate in tls.crt, so its
    /// leaves get the intermediate that issued them); the CA Secret's own ca.crt is not
    /// read.
    pub top: CertInfo,
}

/// A certificate in a message: its subject, or its serial when the subject is empty (as
/// for a leaf named only by its SANs).
fn describe(c: &CertInfo) -> String {
    if c.subject.is_empty() {
        format!("with serial {} and an empty subject", c.serial_hex)
    } else {
        format!("{:?}", c.subject)
    }
}

/// Why a CA secret cannot sign, with cert-manager's issuer condition reasons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaError {
    pub reason: &'static str,
    pub message: String,
}

impl CaMaterial {
    /// Checks a CA issuer's Secret: both halves present and parseable, matching, a CA, and
    /// currently valid.
    pub fn from_secret(secret_desc: &str, s: &SecretData, now: i64) -> Result<CaMaterial, CaError> {
        let get = |k: &str| {
            s.get(k).ok_or_else(|| CaError {
                reason: "ErrGetKeyPair",
                message: format!("secret {secret_desc} has no {k}"),
            })
        };
        let chain = inspect::parse_pem_chain(get(keys::TLS_CRT)?).map_err(|e| CaError {
            reason: "ErrInvalidKeyPair",
            message: format!("secret {secret_desc} tls.crt: {e}"),
        })?;
        let key = PrivateKey::from_pem(get(keys::TLS_KEY)?).map_err(|e| CaError {
            reason: "ErrInvalidKeyPair",
            message: format!("secret {secret_desc} tls.key: {e}"),
        })?;
        let ca = &chain[0];
        if ca.spki_der != key.spki_der() {
            return Err(CaError {
                reason: "ErrInvalidKeyPair",
                message: format!(
                    "secret {secret_desc}: tls.key does not match the certificate in tls.crt"
                ),
            });
        }
        if !ca.is_ca {
            return Err(CaError {
                reason: "ErrInvalidKeyPair",
                message: format!(
                    "secret {secret_desc}: the certificate {} is not a CA (basicConstraints CA:TRUE is missing)",
                    describe(ca)
                ),
            });
        }
        if now > ca.not_after {
            return Err(CaError {
                reason: "ErrInvalidKeyPair",
                message: format!(
                    "secret {secret_desc}: the CA certificate expired at {}",
                    der::rfc3339(ca.not_after)
                ),
            });
        }
        if now < ca.not_before {
            return Err(CaError {
                reason: "ErrInvalidKeyPair",
                message: format!(
                    "secret {secret_desc}: the CA certificate is not valid before {}",
                    der::rfc3339(ca.not_before)
                ),
            });
        }
        let top = chain[chain.len() - 1].clone();
        Ok(CaMaterial { chain, key, top })
    }
}

/// Signs requests with a CA's key; `extra`: the issuer's URL extensions (CRL
/// distribution points, OCSP servers, issuing certificate URLs).
pub struct CaIssuer {
    pub material: CaMaterial,
    pub extra: Vec<cert::Extension>,
}

impl Issuer for CaIssuer {
    fn trust(&self) -> Option<(&CertInfo, &CertInfo)> {
        Some((&self.material.chain[0], &self.material.top))
    }

    fn process(&self, req: &Request<'_>) -> Outcome {
        let csr = match parse_csr_pem(req.csr_pem) {
            Ok(c) => c,
            Err(e) => return failed("InvalidRequest", e.to_string()),
        };
        let ca = &self.material.chain[0];
        // A certificate never outlives its CA here (cert-manager does not cap it; a leaf
        // past its CA's notAfter fails verification anyway, so it would only look valid).
        let validity = match validity(req, Some(ca.not_after)) {
            Ok(v) => v,
            Err(o) => return o,
        };
        let signer = Signer::Ca {
            name_der: &ca.subject_der,
            key_id: ca.subject_key_id.as_deref(),
            key: &self.material.key,
        };
        match cert::sign_csr(
            &csr,
            req.spec.is_ca,
            &validity,
            &cert::random_serial(),
            &signer,
            Some(&usages(req.spec).as_usages()),
            &self.extra,
        ) {
            Ok(der) => {
                // tls.crt: leaf plus the CA's chain without a self-signed root, which goes
                // to ca.crt.
                let mut chain = vec![der];
                for c in &self.material.chain {
                    if !c.is_self_signed() {
                        chain.push(c.der.clone());
                    }
                }
                Outcome::Issued(Issued {
                    chain,
                    ca: vec![self.material.top.der.clone()],
                    state: serde_json::Value::Null,
                })
            }
            Err(e) => failed("SigningError", format!("signing: {e}")),
        }
    }
}
