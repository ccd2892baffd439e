//! Certificate requests (PKCS#10, RFC 2986) and certificates (RFC 5280): building,
//! parsing requests, and signing them, self-signed or by a CA. What goes into them is
//! decided here; the `x509` module has rcgen write them, and the DER writer here writes
//! what rcgen cannot (the same bytes for what both can).
//!
//! Guarantee: a certificate carries only the extensions the request asked for (subject
//! alternative names, key usage, extended key usage, name constraints) plus basic
//! constraints, subject key identifier and, when CA-signed, authority key identifier.

use crate::der;
use crate::key::{KeyError, PrivateKey, SignatureAlgorithm};
use crate::name::Name;
use aws_lc_rs::digest;
use std::net::IpAddr;

pub const OID_SAN: &str = "2.5.29.17";
pub const OID_KU: &str = "2.5.29.15";
pub const OID_EKU: &str = "2.5.29.37";
pub const OID_BC: &str = "2.5.29.19";
pub const OID_NC: &str = "2.5.29.30";
pub const OID_SKI: &str = "2.5.29.14";
pub const OID_AKI: &str = "2.5.29.35";
const OID_EXTENSION_REQUEST: &str = "1.2.840.113549.1.9.14";

/// Key usage bits, numbered as in RFC 5280 §4.2.1.3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyUsage {
    DigitalSignature = 0,
    ContentCommitment = 1,
    KeyEncipherment = 2,
    DataEncipherment = 3,
    KeyAgreement = 4,
    CertSign = 5,
    CrlSign = 6,
    EncipherOnly = 7,
    DecipherOnly = 8,
}

/// Extended key usages by OID.
pub mod eku {
    pub const ANY: &str = "2.5.29.37.0";
    pub const SERVER_AUTH: &str = "1.3.6.1.5.5.7.3.1";
    pub const CLIENT_AUTH: &str = "1.3.6.1.5.5.7.3.2";
    pub const CODE_SIGNING: &str = "1.3.6.1.5.5.7.3.3";
    pub const EMAIL_PROTECTION: &str = "1.3.6.1.5.5.7.3.4";
    pub const IPSEC_END_SYSTEM: &str = "1.3.6.1.5.5.7.3.5";
    pub const IPSEC_TUNNEL: &str = "1.3.6.1.5.5.7.3.6";
    pub const IPSEC_USER: &str = "1.3.6.1.5.5.7.3.7";
    pub const TIME_STAMPING: &str = "1.3.6.1.5.5.7.3.8";
    pub const OCSP_SIGNING: &str = "1.3.6.1.5.5.7.3.9";
    pub const MICROSOFT_SGC: &str = "1.3.6.1.4.1.311.10.3.3";
    pub const NETSCAPE_SGC: &str = "2.16.840.1.113730.4.1";
}

/// One side (permitted or excluded) of a name constraints extension.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameConstraintItems {
    pub dns_domains: Vec<String>,
    /// (network address, prefix length)
    pub ip_ranges: Vec<(IpAddr, u8)>,
    pub email_addresses: Vec<String>,
    pub uri_domains: Vec<String>,
}

impl NameConstraintItems {
    fn is_empty(&self) -> bool {
        self.dns_domains.is_empty()
            && self.ip_ranges.is_empty()
            && self.email_addresses.is_empty()
            && self.uri_domains.is_empty()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameConstraints {
    pub critical: bool,
    pub permitted: NameConstraintItems,
    pub excluded: NameConstraintItems,
}

/// What to put into a request: the certificate's identity and intended use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    pub subject: Name,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub uris: Vec<String>,
    pub email_addresses: Vec<String>,
    pub key_usages: Vec<KeyUsage>,
    pub ext_key_usages: Vec<String>,
    pub is_ca: bool,
    pub name_constraints: Option<NameConstraints>,
}

/// An X.509 extension in encoded form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    pub oid: String,
    pub critical: bool,
    pub value: Vec<u8>,
}

impl Extension {
    fn to_der(&self) -> Vec<u8> {
        if self.critical {
            der::seq(&[
                &der::oid(&self.oid),
                &der::boolean(true),
                &der::octets(&self.value),
            ])
        } else {
            der::seq(&[&der::oid(&self.oid), &der::octets(&self.value)])
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{0}")]
    Der(#[from] der::DerError),
    #[error("{0}")]
    Key(#[from] KeyError),
    #[error("certificate request signature does not verify")]
    BadRequestSignature,
    #[error("unsupported signature algorithm {0}")]
    UnsupportedSignature(String),
}

fn key_usage_bits(usages: &[KeyUsage]) -> Vec<u8> {
    let mut mask: u16 = 0;
    for u in usages {
        mask |= 1 << (*u as u16);
    }
    // Named bit list: bit 0 is the most significant bit of the first octet; DER drops
    // trailing zero bits (X.690 §11.2.2).
    let highest = (0..9).rev().find(|b| mask & (1 << b) != 0);
    let Some(highest) = highest else {
        return der::tlv(der::BIT_STRING, &[0]);
    };
    let nbytes = highest / 8 + 1;
    let mut bytes = vec![0u8; nbytes];
    for b in 0..=highest {
        if mask & (1 << b) != 0 {
            bytes[b / 8] |= 0x80 >> (b % 8);
        }
    }
    let unused = 7 - (highest % 8) as u8;
    let mut content = vec![unused];
    content.extend_from_slice(&bytes);
    der::tlv(der::BIT_STRING, &content)
}

fn ip_bytes(ip: &IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v) => v.octets().to_vec(),
        IpAddr::V6(v) => v.octets().to_vec(),
    }
}

fn subtrees(items: &NameConstraintItems) -> Vec<u8> {
    let mut parts: Vec<Vec<u8>> = Vec::new();
    let mut push = |gn: Vec<u8>| parts.push(der::seq(&[&gn]));
    for d in &items.dns_domains {
        push(der::tlv(der::ctx_prim(2), d.as_bytes()));
    }
    for (net, prefix) in &items.ip_ranges {
        let addr = ip_bytes(net);
        let total = addr.len() * 8;
        let mut mask = vec![0u8; addr.len()];
        for bit in 0..(*prefix as usize).min(total) {
            mask[bit / 8] |= 0x80 >> (bit % 8);
        }
        let mut v = addr;
        v.extend_from_slice(&mask);
        push(der::tlv(der::ctx_prim(7), &v));
    }
    for e in &items.email_addresses {
        push(der::tlv(der::ctx_prim(1), e.as_bytes()));
    }
    for u in &items.uri_domains {
        push(der::tlv(der::ctx_prim(6), u.as_bytes()));
    }
    parts.concat()
}

/// Key usage (critical) and extended key usage extensions; none for empty lists.
fn usage_extensions(key_usages: &[KeyUsage], ext_key_usages: &[String]) -> Vec<Extension> {
    let mut exts = Vec::new();
    if !key_usages.is_empty() {
        exts.push(Extension {
            oid: OID_KU.into(),
            critical: true,
            value: key_usage_bits(key_usages),
        });
    }
    if !ext_key_usages.is_empty() {
        let oids: Vec<Vec<u8>> = ext_key_usages.iter().map(|o| der::oid(o)).collect();
        exts.push(Extension {
            oid: OID_EKU.into(),
            critical: false,
            value: der::tlv(der::SEQUENCE, &oids.concat()),
        });
    }
    exts
}

/// The key usages a signer puts in a certificate in place of the request's (as a
/// CertificateRequest's spec.usages do).
pub struct Usages<'a> {
    pub key: &'a [KeyUsage],
    /// Extended key usage OIDs.
    pub ext: &'a [String],
}

impl Profile {
    /// The extensions a request for this profile carries, in a stable order.
    pub fn extensions(&self) -> Vec<Extension> {
        let mut exts = usage_extensions(&self.key_usages, &self.ext_key_usages);
        exts.push(basic_constraints(self.is_ca));
        let mut names: Vec<Vec<u8>> = Vec::new();
        for d in &self.dns_names {
            names.push(der::tlv(der::ctx_prim(2), d.as_bytes()));
        }
        for e in &self.email_addresses {
            names.push(der::tlv(der::ctx_prim(1), e.as_bytes()));
        }
        for ip in &self.ip_addresses {
            names.push(der::tlv(der::ctx_prim(7), &ip_bytes(ip)));
        }
        for u in &self.uris {
            names.push(der::tlv(der::ctx_prim(6), u.as_bytes()));
        }
        if !names.is_empty() {
            exts.push(Extension {
                oid: OID_SAN.into(),
                // RFC 5280 §4.2.1.6: critical when the subject is empty.
                critical: self.subject.is_empty(),
                value: der::tlv(der::SEQUENCE, &names.concat()),
            });
        }
        if let Some(nc) = &self.name_constraints {
            let mut content = Vec::new();
            if !nc.permitted.is_empty() {
                content.extend(der::tlv(der::ctx(0), &subtrees(&nc.permitted)));
            }
            if !nc.excluded.is_empty() {
                content.extend(der::tlv(der::ctx(1), &subtrees(&nc.excluded)));
            }
            exts.push(Extension {
                oid: OID_NC.into(),
                critical: nc.critical,
                value: der::tlv(der::SEQUENCE, &content),
            });
        }
        exts
    }
}

pub(crate) fn basic_constraints(is_ca: bool) -> Extension {
    Extension {
        oid: OID_BC.into(),
        critical: true,
        value: if is_ca {
            der::seq(&[&der::boolean(true)])
        } else {
            der::seq(&[])
        },
    }
}

/// Builds a DER PKCS#10 request for `profile`, signed by `key`: by rcgen where it can
/// write it (see the `x509` module), otherwise by the DER writer.
pub fn build_csr(profile: &Profile, key: &PrivateKey) -> Result<Vec<u8>, CertError> {
    let subject = profile.subject.to_der();
    let extensions = profile.extensions();
    match crate::x509::request(&subject, &extensions, key) {
        Some(csr) => Ok(csr),
        None => write_csr(&subject, &extensions, key),
    }
}

/// The DER writer's request.
pub(crate) fn write_csr(
    subject: &[u8],
    extensions: &[Extension],
    key: &PrivateKey,
) -> Result<Vec<u8>, CertError> {
    let exts: Vec<Vec<u8>> = extensions.iter().map(Extension::to_der).collect();
    let ext_req = der::seq(&[
        &der::oid(OID_EXTENSION_REQUEST),
        &der::set_of(vec![der::tlv(der::SEQUENCE, &exts.concat())]),
    ]);
    let info = der::seq(&[
        &der::small_uint(0),
        subject,
        key.spki_der(),
        &der::tlv(der::ctx(0), &ext_req),
    ]);
    let alg = key.signature_algorithm();
    let sig = key.sign(&info)?;
    Ok(der::seq(&[
        &info,
        &alg.algorithm_identifier(),
        &der::bits(&sig),
    ]))
}

/// A parsed and signature-checked certificate request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Csr {
    pub subject_der: Vec<u8>,
    pub spki_der: Vec<u8>,
    pub extensions: Vec<Extension>,
}

fn parse_extensions(seq: der::Element<'_>) -> Result<Vec<Extension>, CertError> {
    let mut out = Vec::new();
    let mut r = seq.expect(der::SEQUENCE, "extensions")?.reader();
    while !r.is_empty() {
        let mut e = r.expect(der::SEQUENCE, "extension")?.reader();
        let oid = e.next("extension id")?.oid_string()?;
        let critical = match e.optional(der::BOOLEAN, "critical")? {
            Some(b) => b.content.first().is_some_and(|v| *v != 0),
            None => false,
        };
        let value = e
            .expect(der::OCTET_STRING, "extension value")?
            .content
            .to_vec();
        out.push(Extension {
            oid,
            critical,
            value,
        });
    }
    Ok(out)
}

/// Parses a DER PKCS#10 request and verifies its self-signature.
pub fn parse_csr(csr: &[u8]) -> Result<Csr, CertError> {
    let top =
        der::parse_one(csr, "certificate request")?.expect(der::SEQUENCE, "certificate request")?;
    let mut r = top.reader();
    let info = r.expect(der::SEQUENCE, "certificationRequestInfo")?;
    let mut alg = r.expect(der::SEQUENCE, "signatureAlgorithm")?.reader();
    let alg_oid = alg.next("signature algorithm")?.oid_string()?;
    let sig = r.expect(der::BIT_STRING, "signature")?;
    let mut ir = info.reader();
    ir.expect(der::INTEGER, "version")?;
    let subject = ir.expect(der::SEQUENCE, "subject")?;
    let spki = ir.expect(der::SEQUENCE, "subjectPKInfo")?;
    let mut extensions = Vec::new();
    if let Some(attrs) = ir.optional(der::ctx(0), "attributes")? {
        let mut ar = attrs.reader();
        while !ar.is_empty() {
            let mut a = ar.expect(der::SEQUENCE, "attribute")?.reader();
            let ty = a.next("attribute type")?;
            let mut vals = a.expect(der::SET, "attribute values")?.reader();
            if ty.is_oid(OID_EXTENSION_REQUEST) {
                extensions = parse_extensions(vals.next("extension request")?)?;
            }
        }
    }
    let alg = SignatureAlgorithm::from_oid(&alg_oid)
        .ok_or_else(|| CertError::UnsupportedSignature(alg_oid.clone()))?;
    let sig_bytes = sig.content.get(1..).unwrap_or_default();
    crate::key::verify_signature(spki.raw, alg, info.raw, sig_bytes)
        .map_err(|_| CertError::BadRequestSignature)?;
    Ok(Csr {
        subject_der: subject.raw.to_vec(),
        spki_der: spki.raw.to_vec(),
        extensions,
    })
}

/// RFC 5280 §4.2.1.2 method (1): SHA-1 of the subjectPublicKey bits.
pub fn key_identifier(spki_der: &[u8]) -> Result<Vec<u8>, CertError> {
    let top = der::parse_one(spki_der, "SubjectPublicKeyInfo")?;
    let mut r = top.reader();
    r.expect(der::SEQUENCE, "algorithm")?;
    let bits = r.expect(der::BIT_STRING, "subjectPublicKey")?;
    let d = digest::digest(
        &digest::SHA1_FOR_LEGACY_USE_ONLY,
        bits.content.get(1..).unwrap_or_default(),
    );
    Ok(d.as_ref().to_vec())
}

/// Who signs: the subject itself, or a CA.
pub enum Signer<'a> {
    SelfSigned(&'a PrivateKey),
    Ca {
        /// The CA certificate's subject, as encoded in it.
        name_der: &'a [u8],
        /// The CA certificate's subject key identifier, if it has one.
        key_id: Option<&'a [u8]>,
        key: &'a PrivateKey,
    },
}

/// Signing parameters that come from the issuer rather than the request.
pub struct Validity {
    pub not_before: i64,
    pub not_after: i64,
}

pub const OID_CRL_DP: &str = "2.5.29.31";
pub const OID_AIA: &str = "1.3.6.1.5.5.7.1.1";
const OID_AD_OCSP: &str = "1.3.6.1.5.5.7.48.1";
const OID_AD_CA_ISSUERS: &str = "1.3.6.1.5.5.7.48.2";

/// A URI GeneralName ([6] IA5String).
fn uri_name(url: &str) -> Vec<u8> {
    der::tlv(der::ctx_prim(6), url.as_bytes())
}

/// The extensions an issuer writes with its URLs, as Go's x509 package (and so
/// cert-manager) writes them: CRL Distribution Points, one distribution point per URL
/// (a full name of one URI); Authority Information Access, the OCSP servers then the
/// issuing certificate's URLs. None for empty lists.
pub fn url_extensions(crl: &[String], ocsp: &[String], issuing: &[String]) -> Vec<Extension> {
    let mut out = Vec::new();
    if !ocsp.is_empty() || !issuing.is_empty() {
        let access = |method: &str, url: &String| der::seq(&[&der::oid(method), &uri_name(url)]);
        let descriptions: Vec<Vec<u8>> = ocsp
            .iter()
            .map(|u| access(OID_AD_OCSP, u))
            .chain(issuing.iter().map(|u| access(OID_AD_CA_ISSUERS, u)))
            .collect();
        let parts: Vec<&[u8]> = descriptions.iter().map(Vec::as_slice).collect();
        out.push(Extension {
            oid: OID_AIA.into(),
            critical: false,
            value: der::seq(&parts),
        });
    }
    if !crl.is_empty() {
        // DistributionPoint { distributionPoint [0] { fullName [0] { URI } } }.
        let points: Vec<Vec<u8>> = crl
            .iter()
            .map(|u| {
                let full_name = der::tlv(der::ctx(0), &uri_name(u));
                der::seq(&[&der::tlv(der::ctx(0), &full_name)])
            })
            .collect();
        let parts: Vec<&[u8]> = points.iter().map(Vec::as_slice).collect();
        out.push(Extension {
            oid: OID_CRL_DP.into(),
            critical: false,
            value: der::seq(&parts),
        });
    }
    out
}

/// Which requested extensions a signer copies into the certificate.
const COPIED: [&str; 4] = [OID_SAN, OID_KU, OID_EKU, OID_NC];

/// Signs a parsed request. Basic constraints come from `is_ca` (the CertificateRequest's
/// field, which wins over the CSR), identifiers are computed. rcgen writes the
/// certificate where it can (see the `x509` module), otherwise the DER writer does; the
/// two write the same bytes.
///
/// With `usages`, key usage and extended key usage come from them instead of the request.
/// `extra` extensions (the issuer's, see [`url_extensions`]) come last.
pub fn sign_csr(
    csr: &Csr,
    is_ca: bool,
    validity: &Validity,
    serial: &[u8; SERIAL_LEN],
    signer: &Signer<'_>,
    usages: Option<&Usages<'_>>,
    extra: &[Extension],
) -> Result<Vec<u8>, CertError> {
    let (issuer, key, authority_key_id) = match signer {
        Signer::SelfSigned(k) => (csr.subject_der.as_slice(), *k, None),
        Signer::Ca {
            name_der,
            key_id,
            key,
        } => (*name_der, *key, *key_id),
    };
    let mut extensions: Vec<Extension> = match usages {
        Some(u) => usage_extensions(u.key, u.ext),
        None => Vec::new(),
    };
    extensions.extend(
        csr.extensions
            .iter()
            .filter(|e| COPIED.contains(&e.oid.as_str()))
            .filter(|e| usages.is_none() || (e.oid != OID_KU && e.oid != OID_EKU))
            .cloned(),
    );
    extensions.extend(extra.iter().cloned());
    let mut serial = *serial;
    // A positive INTEGER of exactly 20 octets (RFC 5280 §4.1.2.2 allows up to 20): the top
    // bit clear, the next one set so that no leading zero byte shortens it.
    serial[0] = (serial[0] & 0x7f) | 0x40;
    let tbs = crate::x509::Tbs {
        subject: &csr.subject_der,
        spki: &csr.spki_der,
        issuer,
        serial: &serial,
        not_before: validity.not_before,
        not_after: validity.not_after,
        is_ca,
        subject_key_id: key_identifier(&csr.spki_der)?,
        authority_key_id,
        extensions: &extensions,
    };
    match crate::x509::certificate(&tbs, key) {
        Some(cert) => Ok(cert),
        None => write_certificate(&tbs, key),
    }
}

/// The DER writer's certificate, with the extensions in rcgen's order: authority and
/// (for a CA) subject key identifiers, basic constraints, then the rest.
pub(crate) fn write_certificate(
    tbs: &crate::x509::Tbs<'_>,
    key: &PrivateKey,
) -> Result<Vec<u8>, CertError> {
    let mut exts = Vec::new();
    if let Some(id) = tbs.authority_key_id {
        exts.push(Extension {
            oid: OID_AKI.into(),
            critical: false,
            value: der::seq(&[&der::tlv(der::ctx_prim(0), id)]),
        });
    }
    // A subject key identifier on CA certificates only, as cert-manager's (Go's) have.
    if tbs.is_ca {
        exts.push(Extension {
            oid: OID_SKI.into(),
            critical: false,
            value: der::octets(&tbs.subject_key_id),
        });
    }
    exts.push(basic_constraints(tbs.is_ca));
    exts.extend(tbs.extensions.iter().cloned());
    let alg = key.signature_algorithm();
    let ext_der: Vec<Vec<u8>> = exts.iter().map(Extension::to_der).collect();
    let tbs_der = der::seq(&[
        &der::tlv(der::ctx(0), &der::small_uint(2)),
        &der::uint(tbs.serial),
        &alg.algorithm_identifier(),
        tbs.issuer,
        &der::seq(&[&der::time(tbs.not_before), &der::time(tbs.not_after)]),
        tbs.subject,
        tbs.spki,
        &der::tlv(der::ctx(3), &der::tlv(der::SEQUENCE, &ext_der.concat())),
    ]);
    let sig = key.sign(&tbs_der)?;
    Ok(der::seq(&[
        &tbs_der,
        &alg.algorithm_identifier(),
        &der::bits(&sig),
    ]))
}

/// Serial numbers' length in octets: 20, as cert-manager's (Go's) certificates have.
pub const SERIAL_LEN: usize = 20;

/// A fresh random serial number (158 random bits once [`sign_csr`] fixes the top two).
pub fn random_serial() -> [u8; SERIAL_LEN] {
    use aws_lc_rs::rand::{SecureRandom, SystemRandom};
    let mut s = [0u8; SERIAL_LEN];
    // The system RNG failing is unrecoverable; fall back to a digest of the time so a
    // serial is still unique in practice.
    if SystemRandom::new().fill(&mut s).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let d = digest::digest(&digest::SHA256, &t.to_be_bytes());
        s.copy_from_slice(&d.as_ref()[..SERIAL_LEN]);
    }
    s
}
