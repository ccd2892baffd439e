//! Reading certificates: what they say, whether a key matches, whether a chain verifies.

use crate::der;
use crate::key::{self, KeyAlgorithm, SignatureAlgorithm};
use crate::pem;
use aws_lc_rs::digest;
use std::net::IpAddr;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Why certificate data could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InspectError {
    #[error("certificate: {0}")]
    Pem(#[from] pem::PemError),
    #[error("certificate: no CERTIFICATE PEM block (found {0})")]
    NoCertificate(String),
    #[error("certificate #{index}: not a valid X.509 certificate: {reason}")]
    Parse { index: usize, reason: String },
    #[error("not a valid certificate request: {0}")]
    Request(String),
}

/// Why a certificate chain does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("empty chain")]
    Empty,
    #[error("certificate #{index} ({subject}) is not valid now: valid from {from} to {until}")]
    NotValidNow {
        index: usize,
        subject: String,
        from: String,
        until: String,
    },
    #[error("issuer {issuer:?} does not match the subject {next:?} of the next certificate")]
    IssuerMismatch { issuer: String, next: String },
    #[error("unsupported signature algorithm {0}")]
    UnsupportedSignature(String),
    #[error("signature by {0:?} does not verify")]
    BadSignature(String),
    #[error("CA certificate {0} is not valid now")]
    CaNotValidNow(String),
    #[error("no CA certificate to verify against")]
    NoRoots,
    /// The last certificate is signed by none of the roots: why, for each.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    NoRootSigned(Vec<ChainError>),
}

/// What a certificate says, in owned form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub der: Vec<u8>,
    pub subject: String,
    pub issuer: String,
    pub subject_der: Vec<u8>,
    pub issuer_der: Vec<u8>,
    pub common_name: Option<String>,
    pub serial_hex: String,
    pub not_before: i64,
    pub not_after: i64,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub uris: Vec<String>,
    pub email_addresses: Vec<String>,
    pub is_ca: bool,
    pub key_usages: Vec<String>,
    pub ext_key_usages: Vec<String>,
    pub spki_der: Vec<u8>,
    pub key_algorithm: Option<KeyAlgorithm>,
    pub subject_key_id: Option<Vec<u8>>,
    pub authority_key_id: Option<Vec<u8>>,
    pub signature_algorithm: String,
    pub tbs_der: Vec<u8>,
    pub signature: Vec<u8>,
    /// The subject's attributes by type (what cert-manager's subject-* annotations say).
    pub subject_fields: crate::name::SubjectFields,
}

/// The subject's attributes by type, each in the order it appears.
fn subject_fields(n: &x509_parser::x509::X509Name<'_>) -> crate::name::SubjectFields {
    let values = |oid: &str| -> Vec<String> {
        n.iter_attributes()
            .filter(|a| a.attr_type().to_id_string() == oid)
            .filter_map(|a| a.as_str().ok().map(str::to_string))
            .collect()
    };
    crate::name::SubjectFields {
        common_name: values("2.5.4.3").into_iter().next(),
        countries: values("2.5.4.6"),
        provinces: values("2.5.4.8"),
        localities: values("2.5.4.7"),
        street_addresses: values("2.5.4.9"),
        postal_codes: values("2.5.4.17"),
        organizations: values("2.5.4.10"),
        organizational_units: values("2.5.4.11"),
        serial_number: values("2.5.4.5").into_iter().next(),
    }
}

fn hex(b: &[u8], sep: &str) -> String {
    b.iter()
        .map(|x| format!("{x:02X}"))
        .collect::<Vec<_>>()
        .join(sep)
}

impl CertInfo {
    pub fn parse(der_bytes: &[u8]) -> Result<CertInfo, InspectError> {
        Self::parse_indexed(der_bytes, 0)
    }

    fn parse_indexed(der_bytes: &[u8], index: usize) -> Result<CertInfo, InspectError> {
        let perr = |reason: String| InspectError::Parse { index, reason };
        let (rest, c) = X509Certificate::from_der(der_bytes).map_err(|e| perr(e.to_string()))?;
        if !rest.is_empty() {
            return Err(perr("trailing data".into()));
        }
        let mut info = CertInfo {
            der: der_bytes.to_vec(),
            subject: c.subject().to_string(),
            issuer: c.issuer().to_string(),
            subject_der: c.subject().as_raw().to_vec(),
            issuer_der: c.issuer().as_raw().to_vec(),
            common_name: c
                .subject()
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok())
                .map(str::to_string),
            serial_hex: hex(c.raw_serial(), ""),
            not_before: c.validity().not_before.timestamp(),
            not_after: c.validity().not_after.timestamp(),
            dns_names: vec![],
            ip_addresses: vec![],
            uris: vec![],
            email_addresses: vec![],
            is_ca: c.is_ca(),
            key_usages: vec![],
            ext_key_usages: vec![],
            spki_der: c.public_key().raw.to_vec(),
            key_algorithm: key::spki_algorithm(c.public_key().raw).ok(),
            subject_key_id: None,
            authority_key_id: None,
            signature_algorithm: c.signature_algorithm.algorithm.to_id_string(),
            tbs_der: c.tbs_certificate.as_ref().to_vec(),
            signature: c.signature_value.data.to_vec(),
            subject_fields: subject_fields(c.subject()),
        };
        info.read_alt_names(&c);
        info.read_usages(&c);
        for ext in c.extensions() {
            use x509_parser::extensions::ParsedExtension as P;
            match ext.parsed_extension() {
                P::SubjectKeyIdentifier(k) => info.subject_key_id = Some(k.0.to_vec()),
                P::AuthorityKeyIdentifier(a) => {
                    info.authority_key_id = a.key_identifier.as_ref().map(|k| k.0.to_vec())
                }
                _ => {}
            }
        }
        Ok(info)
    }

    /// The subject alternative names.
    fn read_alt_names(&mut self, c: &X509Certificate<'_>) {
        let info = self;
        if let Ok(Some(san)) = c.subject_alternative_name() {
            for n in &san.value.general_names {
                match n {
                    GeneralName::DNSName(d) => info.dns_names.push(d.to_string()),
                    GeneralName::URI(u) => info.uris.push(u.to_string()),
                    GeneralName::RFC822Name(e) => info.email_addresses.push(e.to_string()),
                    GeneralName::IPAddress(b) => match b.len() {
                        4 => info
                            .ip_addresses
                            .push(IpAddr::from(<[u8; 4]>::try_from(*b).unwrap_or_default())),
                        16 => info
                            .ip_addresses
                            .push(IpAddr::from(<[u8; 16]>::try_from(*b).unwrap_or_default())),
                        _ => {}
                    },
                    _ => {}
                }
            }
        }
    }

    /// Key usages and extended key usages, by cert-manager's names.
    fn read_usages(&mut self, c: &X509Certificate<'_>) {
        let info = self;
        if let Ok(Some(ku)) = c.key_usage() {
            let k = ku.value;
            let names = [
                (k.digital_signature(), "digital signature"),
                (k.non_repudiation(), "content commitment"),
                (k.key_encipherment(), "key encipherment"),
                (k.data_encipherment(), "data encipherment"),
                (k.key_agreement(), "key agreement"),
                (k.key_cert_sign(), "cert sign"),
                (k.crl_sign(), "crl sign"),
                (k.encipher_only(), "encipher only"),
                (k.decipher_only(), "decipher only"),
            ];
            info.key_usages = names
                .iter()
                .filter(|(on, _)| *on)
                .map(|(_, n)| n.to_string())
                .collect();
        }
        if let Ok(Some(eku)) = c.extended_key_usage() {
            let e = eku.value;
            let names = [
                (e.any, "any"),
                (e.server_auth, "server auth"),
                (e.client_auth, "client auth"),
                (e.code_signing, "code signing"),
                (e.email_protection, "email protection"),
                (e.time_stamping, "timestamping"),
                (e.ocsp_signing, "ocsp signing"),
            ];
            info.ext_key_usages = names
                .iter()
                .filter(|(on, _)| *on)
                .map(|(_, n)| n.to_string())
                .collect();
            info.ext_key_usages
                .extend(e.other.iter().map(|o| o.to_id_string()));
        }
    }

    pub fn sha256_fingerprint(&self) -> String {
        hex(digest::digest(&digest::SHA256, &self.der).as_ref(), ":")
    }

    pub fn sha1_fingerprint(&self) -> String {
        hex(
            digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, &self.der).as_ref(),
            ":",
        )
    }

    pub fn is_self_signed(&self) -> bool {
        self.subject_der == self.issuer_der && self.is_signed_by(self).is_ok()
    }

    /// Whether `issuer` signed this certificate: names chain and the signature verifies.
    pub fn is_signed_by(&self, issuer: &CertInfo) -> Result<(), ChainError> {
        if self.issuer_der != issuer.subject_der {
            return Err(ChainError::IssuerMismatch {
                issuer: self.issuer.clone(),
                next: issuer.subject.clone(),
            });
        }
        let alg = SignatureAlgorithm::from_oid(&self.signature_algorithm)
            .ok_or_else(|| ChainError::UnsupportedSignature(self.signature_algorithm.clone()))?;
        key::verify_signature(&issuer.spki_der, alg, &self.tbs_der, &self.signature)
            .map_err(|_| ChainError::BadSignature(issuer.subject.clone()))
    }

    /// Whether the certificate is valid at `now` (Unix seconds).
    pub fn is_valid_at(&self, now: i64) -> bool {
        self.not_before <= now && now <= self.not_after
    }

    /// A text description in openssl's `x509 -text` layout (what cert-utils-operator's
    /// `tls.crt.info` holds). It depends only on the certificate, so it stays the same
    /// bytes for the same certificate.
    pub fn describe(&self) -> String {
        let mut out = String::from("Certificate:\n");
        let line = |out: &mut String, indent: usize, text: String| {
            out.push_str(&" ".repeat(indent));
            out.push_str(&text);
            out.push('\n');
        };
        line(
            &mut out,
            4,
            format!("Serial Number: {}", self.serial_colon().to_lowercase()),
        );
        line(
            &mut out,
            4,
            format!("Signature Algorithm: {}", self.signature_algorithm),
        );
        line(&mut out, 4, format!("Issuer: {}", self.issuer));
        line(&mut out, 4, "Validity".into());
        line(
            &mut out,
            8,
            format!("Not Before: {}", crate::der::rfc3339(self.not_before)),
        );
        line(
            &mut out,
            8,
            format!("Not After : {}", crate::der::rfc3339(self.not_after)),
        );
        line(&mut out, 4, format!("Subject: {}", self.subject));
        line(&mut out, 4, "Subject Public Key Info:".into());
        let key = self
            .key_algorithm
            .map_or_else(|| "unknown".to_string(), |k| k.to_string());
        line(&mut out, 8, format!("Public Key Algorithm: {key}"));
        line(&mut out, 4, "X509v3 extensions:".into());
        let ca = if self.is_ca { "CA:TRUE" } else { "CA:FALSE" };
        line(&mut out, 8, format!("X509v3 Basic Constraints: {ca}"));
        if !self.key_usages.is_empty() {
            line(
                &mut out,
                8,
                format!("X509v3 Key Usage: {}", self.key_usages.join(", ")),
            );
        }
        if !self.ext_key_usages.is_empty() {
            let ext = self.ext_key_usages.join(", ");
            line(&mut out, 8, format!("X509v3 Extended Key Usage: {ext}"));
        }
        let mut sans: Vec<String> = self.dns_names.iter().map(|d| format!("DNS:{d}")).collect();
        sans.extend(self.ip_addresses.iter().map(|i| format!("IP Address:{i}")));
        sans.extend(self.uris.iter().map(|u| format!("URI:{u}")));
        sans.extend(self.email_addresses.iter().map(|e| format!("email:{e}")));
        if !sans.is_empty() {
            line(
                &mut out,
                8,
                format!("X509v3 Subject Alternative Name: {}", sans.join(", ")),
            );
        }
        if let Some(id) = &self.subject_key_id {
            line(
                &mut out,
                8,
                format!("X509v3 Subject Key Identifier: {}", hex(id, ":")),
            );
        }
        if let Some(id) = &self.authority_key_id {
            line(
                &mut out,
                8,
                format!("X509v3 Authority Key Identifier: {}", hex(id, ":")),
            );
        }
        line(
            &mut out,
            4,
            format!("SHA-256 Fingerprint: {}", self.sha256_fingerprint()),
        );
        out
    }

    pub fn serial_colon(&self) -> String {
        self.serial_hex
            .as_bytes()
            .chunks(2)
            .map(|c| String::from_utf8_lossy(c).to_string())
            .collect::<Vec<_>>()
            .join(":")
    }
}

/// DER certificates of every CERTIFICATE block of a PEM document, in order.
/// The DNS names and IP addresses a certificate request (DER) asks for in its
/// subjectAltName extension.
pub fn csr_alt_names(der: &[u8]) -> Result<(Vec<String>, Vec<IpAddr>), InspectError> {
    use x509_parser::certification_request::X509CertificationRequest;
    use x509_parser::extensions::ParsedExtension;
    let (_, csr) = X509CertificationRequest::from_der(der)
        .map_err(|e| InspectError::Request(e.to_string()))?;
    let (mut dns, mut ips) = (Vec::new(), Vec::new());
    for ext in csr.requested_extensions().into_iter().flatten() {
        let ParsedExtension::SubjectAlternativeName(san) = ext else {
            continue;
        };
        for n in &san.general_names {
            match n {
                GeneralName::DNSName(d) => dns.push(d.to_string()),
                GeneralName::IPAddress(b) => match b.len() {
                    4 => ips.push(IpAddr::from(<[u8; 4]>::try_from(*b).unwrap_or_default())),
                    16 => ips.push(IpAddr::from(<[u8; 16]>::try_from(*b).unwrap_or_default())),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    Ok((dns, ips))
}

pub fn pem_certificates(input: &[u8]) -> Result<Vec<Vec<u8>>, InspectError> {
    let blocks = pem::decode_all(input)?;
    let certs: Vec<Vec<u8>> = blocks
        .iter()
        .filter(|b| b.label == "CERTIFICATE")
        .map(|b| b.der.clone())
        .collect();
    if certs.is_empty() {
        let labels: Vec<&str> = blocks.iter().map(|b| b.label.as_str()).collect();
        return Err(InspectError::NoCertificate(labels.join(", ")));
    }
    Ok(certs)
}

/// Parses every certificate of a PEM document.
pub fn parse_pem_chain(input: &[u8]) -> Result<Vec<CertInfo>, InspectError> {
    pem_certificates(input)?
        .iter()
        .enumerate()
        .map(|(i, d)| CertInfo::parse_indexed(d, i))
        .collect()
}

/// Verifies that `chain[0]` is signed by `chain[1]` and so on, and that the last
/// certificate is signed by one of `roots` (or is one of them).
pub fn verify_chain(chain: &[CertInfo], roots: &[CertInfo], now: i64) -> Result<(), ChainError> {
    let Some(first) = chain.first() else {
        return Err(ChainError::Empty);
    };
    for (index, c) in chain.iter().enumerate() {
        if !c.is_valid_at(now) {
            return Err(ChainError::NotValidNow {
                index,
                subject: c.subject.clone(),
                from: der::rfc3339(c.not_before),
                until: der::rfc3339(c.not_after),
            });
        }
    }
    for w in chain.windows(2) {
        w[0].is_signed_by(&w[1])?;
    }
    let last = chain.last().unwrap_or(first);
    if roots.iter().any(|r| r.der == last.der) {
        return Ok(());
    }
    let mut errs = Vec::new();
    for r in roots {
        match last.is_signed_by(r) {
            Ok(()) => {
                if !r.is_valid_at(now) {
                    return Err(ChainError::CaNotValidNow(r.subject.clone()));
                }
                return Ok(());
            }
            Err(e) => errs.push(e),
        }
    }
    if roots.is_empty() {
        return Err(ChainError::NoRoots);
    }
    Err(ChainError::NoRootSigned(errs))
}
