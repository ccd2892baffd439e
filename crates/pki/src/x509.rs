//! Requests and certificates written by rcgen, for every input it can write faithfully.
//!
//! rcgen writes the structure (version, serial, algorithm identifiers, validity, the
//! extension request, basic constraints, the key identifiers) and signs through
//! [`SigningKey`], implemented here over certwright's aws-lc-rs keys. What it cannot
//! express stays with the DER writer in [`crate::der`]:
//!
//! - **Names.** rcgen's `DistinguishedName` holds one value per attribute type and one
//!   attribute per RDN, so a subject with two organizations or organizational units (as
//!   cert-manager writes `subject.organizationalUnits: [a, b]`), a multi-valued RDN from
//!   `literalSubject`, a `#hex` value or a string type other than UTF8String,
//!   PrintableString and IA5String cannot be written by it. A certificate's issuer must
//!   also be the CA's subject byte for byte, and a request's subject is copied as
//!   received. Such inputs are built by the DER writer in [`crate::cert`] instead.
//! - **Extensions certwright copies.** Subject alternative names, key usage, extended key
//!   usage and name constraints are copied from the request as encoded (rcgen's own name
//!   constraints have no URI subtrees, and re-encoding what a request asked for could
//!   change it); rcgen writes them as custom extensions.
//! - **Public keys rcgen has no algorithm for** (an RSA-PSS key in a request, say).
//!
//! Whichever writes it, a request or certificate is the same: the unit tests sign the
//! same inputs both ways and compare the bytes. Every output here is also read back and
//! its names and public key compared with the inputs before it is used.

use crate::cert::Extension;
use crate::der;
use crate::key::{spki_algorithm, Curve, KeyAlgorithm, PrivateKey, SignatureAlgorithm};
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType, DnValue, IsCa,
    KeyIdMethod, SerialNumber,
};

/// rcgen's algorithm for a key and the signature algorithm it signs with; None for a
/// combination rcgen does not have.
fn algorithm(
    key: KeyAlgorithm,
    sig: SignatureAlgorithm,
) -> Option<&'static rcgen::SignatureAlgorithm> {
    use SignatureAlgorithm as S;
    Some(match (key, sig) {
        (KeyAlgorithm::Rsa(_), S::RsaSha256) => &rcgen::PKCS_RSA_SHA256,
        (KeyAlgorithm::Rsa(_), S::RsaSha384) => &rcgen::PKCS_RSA_SHA384,
        (KeyAlgorithm::Rsa(_), S::RsaSha512) => &rcgen::PKCS_RSA_SHA512,
        (KeyAlgorithm::Ecdsa(Curve::P256), S::EcdsaSha256) => &rcgen::PKCS_ECDSA_P256_SHA256,
        (KeyAlgorithm::Ecdsa(Curve::P384), S::EcdsaSha384) => &rcgen::PKCS_ECDSA_P384_SHA384,
        (KeyAlgorithm::Ecdsa(Curve::P521), S::EcdsaSha512) => &rcgen::PKCS_ECDSA_P521_SHA512,
        (KeyAlgorithm::Ed25519, S::Ed25519) => &rcgen::PKCS_ED25519,
        _ => return None,
    })
}

/// A private key as rcgen's signer.
struct Signer<'a> {
    key: &'a PrivateKey,
    public: PublicKey,
}

impl<'a> Signer<'a> {
    fn new(key: &'a PrivateKey) -> Option<Self> {
        Some(Signer {
            key,
            public: PublicKey::new(key.spki_der(), Some(key.signature_algorithm()))?,
        })
    }
}

impl rcgen::PublicKeyData for Signer<'_> {
    fn der_bytes(&self) -> &[u8] {
        self.public.der_bytes()
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.public.algorithm
    }
}

impl rcgen::SigningKey for Signer<'_> {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        // rcgen's error has no room for ours: a failed signature makes the caller sign
        // with the DER writer, whose error says why.
        self.key.sign(msg).map_err(|_| rcgen::Error::RemoteKeyError)
    }
}

/// A subject public key (from a request) as rcgen writes it.
struct PublicKey {
    bits: Vec<u8>,
    algorithm: &'static rcgen::SignatureAlgorithm,
}

impl PublicKey {
    /// `signs_with`: the algorithm the key signs with, when it is a signer's; None when
    /// rcgen would not write `spki` back as it is.
    fn new(spki: &[u8], signs_with: Option<SignatureAlgorithm>) -> Option<Self> {
        let key = spki_algorithm(spki).ok()?;
        // A subject key only needs rcgen's entry for its key type: only the key's OIDs
        // are written into the SubjectPublicKeyInfo.
        let sig = signs_with.unwrap_or(match key {
            KeyAlgorithm::Rsa(_) => SignatureAlgorithm::RsaSha256,
            KeyAlgorithm::Ecdsa(Curve::P256) => SignatureAlgorithm::EcdsaSha256,
            KeyAlgorithm::Ecdsa(Curve::P384) => SignatureAlgorithm::EcdsaSha384,
            KeyAlgorithm::Ecdsa(Curve::P521) => SignatureAlgorithm::EcdsaSha512,
            KeyAlgorithm::Ed25519 => SignatureAlgorithm::Ed25519,
        });
        let algorithm = algorithm(key, sig)?;
        let mut r = der::parse_one(spki, "SubjectPublicKeyInfo").ok()?.reader();
        r.expect(der::SEQUENCE, "algorithm").ok()?;
        let bits = r.expect(der::BIT_STRING, "subjectPublicKey").ok()?;
        let public = PublicKey {
            bits: bits.content.get(1..)?.to_vec(),
            algorithm,
        };
        (rcgen::PublicKeyData::subject_public_key_info(&public) == spki).then_some(public)
    }
}

impl rcgen::PublicKeyData for PublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.bits
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.algorithm
    }
}

/// A DER Name as rcgen's, when rcgen writes it back byte for byte (see the module doc).
fn name(name_der: &[u8]) -> Option<DistinguishedName> {
    let mut dn = DistinguishedName::new();
    let mut types: Vec<String> = Vec::new();
    let mut rdns = der::parse_one(name_der, "name").ok()?.reader();
    while !rdns.is_empty() {
        let mut rdn = rdns.expect(der::SET, "RDN").ok()?.reader();
        let mut ava = rdn.expect(der::SEQUENCE, "attribute").ok()?.reader();
        if !rdn.is_empty() {
            return None; // a multi-valued RDN
        }
        let oid = ava.next("attribute type").ok()?.oid_string().ok()?;
        let value = ava.next("attribute value").ok()?;
        if types.contains(&oid) {
            return None; // a second value of one type
        }
        let text = std::str::from_utf8(value.content).ok()?.to_string();
        let value = match value.tag {
            der::UTF8_STRING => DnValue::Utf8String(text),
            der::PRINTABLE_STRING => DnValue::PrintableString(text.try_into().ok()?),
            der::IA5_STRING => DnValue::Ia5String(text.try_into().ok()?),
            _ => return None,
        };
        dn.push(DnType::from_oid(&arcs(&oid)?), value);
        types.push(oid);
    }
    Some(dn)
}

/// A dotted OID as rcgen takes it.
fn arcs(oid: &str) -> Option<Vec<u64>> {
    oid.split('.')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()
}

fn custom(extensions: &[Extension]) -> Option<Vec<CustomExtension>> {
    extensions
        .iter()
        .map(|e| {
            let mut c = CustomExtension::from_oid_content(&arcs(&e.oid)?, e.value.clone());
            c.set_criticality(e.critical);
            Some(c)
        })
        .collect()
}

fn params(subject: &[u8], extensions: &[Extension]) -> Option<CertificateParams> {
    let mut p = CertificateParams::default();
    p.distinguished_name = name(subject)?;
    p.custom_extensions = custom(extensions)?;
    Some(p)
}

/// The subject and public key of a DER request, as encoded in it.
fn request_parts(csr: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut top = der::parse_one(csr, "request").ok()?.reader();
    let mut info = top.expect(der::SEQUENCE, "info").ok()?.reader();
    info.expect(der::INTEGER, "version").ok()?;
    let subject = info.expect(der::SEQUENCE, "subject").ok()?.raw;
    let spki = info.expect(der::SEQUENCE, "spki").ok()?.raw;
    Some((subject, spki))
}

/// A request with `subject` and `extensions` (in that order), signed by `key`; None when
/// rcgen cannot write it as asked.
pub(crate) fn request(
    subject: &[u8],
    extensions: &[Extension],
    key: &PrivateKey,
) -> Option<Vec<u8>> {
    let signer = Signer::new(key)?;
    let csr = params(subject, extensions)?
        .serialize_request(&signer)
        .ok()?
        .der()
        .to_vec();
    (request_parts(&csr)? == (subject, key.spki_der())).then_some(csr)
}

/// What a certificate is made of, decided by [`crate::cert::sign_csr`].
pub(crate) struct Tbs<'a> {
    pub subject: &'a [u8],
    pub spki: &'a [u8],
    pub issuer: &'a [u8],
    pub serial: &'a [u8],
    pub not_before: i64,
    pub not_after: i64,
    pub is_ca: bool,
    pub subject_key_id: Vec<u8>,
    pub authority_key_id: Option<&'a [u8]>,
    /// After the key identifiers and basic constraints, in this order.
    pub extensions: &'a [Extension],
}

/// The issuer, subject and public key of a DER certificate, as encoded in it.
fn certificate_parts(cert: &[u8]) -> Option<[&[u8]; 3]> {
    let mut top = der::parse_one(cert, "certificate").ok()?.reader();
    let mut tbs = top.expect(der::SEQUENCE, "tbs").ok()?.reader();
    tbs.expect(der::ctx(0), "version").ok()?;
    tbs.expect(der::INTEGER, "serial").ok()?;
    tbs.expect(der::SEQUENCE, "signature").ok()?;
    let issuer = tbs.expect(der::SEQUENCE, "issuer").ok()?.raw;
    tbs.expect(der::SEQUENCE, "validity").ok()?;
    let subject = tbs.expect(der::SEQUENCE, "subject").ok()?.raw;
    let spki = tbs.expect(der::SEQUENCE, "spki").ok()?.raw;
    Some([issuer, subject, spki])
}

/// The certificate `tbs` describes, signed by `key`; None when rcgen cannot write it.
pub(crate) fn certificate(tbs: &Tbs<'_>, key: &PrivateKey) -> Option<Vec<u8>> {
    let signer = Signer::new(key)?;
    let public = PublicKey::new(tbs.spki, None)?;
    // rcgen writes a subject key identifier with any basic constraints it writes; a leaf
    // has none (as cert-manager's), so its basic constraints go first among the rest.
    let mut p = if tbs.is_ca {
        params(tbs.subject, tbs.extensions)?
    } else {
        let mut exts = vec![crate::cert::basic_constraints(false)];
        exts.extend(tbs.extensions.iter().cloned());
        params(tbs.subject, &exts)?
    };
    p.not_before = der::utc(tbs.not_before);
    p.not_after = der::utc(tbs.not_after);
    p.serial_number = Some(SerialNumber::from_slice(tbs.serial));
    p.is_ca = if tbs.is_ca {
        IsCa::Ca(BasicConstraints::Unconstrained)
    } else {
        IsCa::NoCa
    };
    p.key_identifier_method = KeyIdMethod::PreSpecified(tbs.subject_key_id.clone());
    p.use_authority_key_identifier_extension = tbs.authority_key_id.is_some();
    let mut issuer_params = CertificateParams::default();
    issuer_params.distinguished_name = name(tbs.issuer)?;
    issuer_params.key_identifier_method =
        KeyIdMethod::PreSpecified(tbs.authority_key_id.unwrap_or_default().to_vec());
    let issuer = rcgen::Issuer::new(issuer_params, signer);
    let cert = p.signed_by(&public, &issuer).ok()?.der().to_vec();
    (certificate_parts(&cert)? == [tbs.issuer, tbs.subject, tbs.spki]).then_some(cert)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert::{
        build_csr, eku, parse_csr, sign_csr, KeyUsage, NameConstraintItems, NameConstraints,
        Profile, Signer as CertSigner, Validity,
    };
    use crate::name::{Name, SubjectFields};

    /// The signed part of a certificate or request (signatures may be randomized).
    fn signed_part(der_bytes: &[u8]) -> Vec<u8> {
        let top = der::parse_one(der_bytes, "top").expect("parses");
        let mut r = top.reader();
        r.expect(der::SEQUENCE, "tbs").expect("tbs").raw.to_vec()
    }

    fn keys() -> Vec<PrivateKey> {
        [
            KeyAlgorithm::Rsa(2048),
            KeyAlgorithm::Rsa(3072),
            KeyAlgorithm::Ecdsa(Curve::P256),
            KeyAlgorithm::Ecdsa(Curve::P384),
            KeyAlgorithm::Ecdsa(Curve::P521),
            KeyAlgorithm::Ed25519,
        ]
        .into_iter()
        .map(|a| PrivateKey::generate(a).expect("key"))
        .collect()
    }

    fn leaf_profile(subject: Name) -> Profile {
        Profile {
            subject,
            dns_names: vec!["svc.example.com".into(), "*.example.com".into()],
            ip_addresses: vec!["10.0.0.1".parse().expect("ip"), "::1".parse().expect("ip")],
            uris: vec!["spiffe://example.com/svc".into()],
            email_addresses: vec!["ops@example.com".into()],
            key_usages: vec![KeyUsage::DigitalSignature, KeyUsage::KeyEncipherment],
            ext_key_usages: vec![eku::SERVER_AUTH.into(), eku::CLIENT_AUTH.into()],
            is_ca: false,
            name_constraints: None,
        }
    }

    fn ca_profile() -> Profile {
        Profile {
            subject: Name::from_fields(&SubjectFields {
                common_name: Some("Example Root".into()),
                countries: vec!["DE".into()],
                organizations: vec!["Example".into()],
                ..Default::default()
            }),
            key_usages: vec![KeyUsage::CertSign, KeyUsage::CrlSign],
            is_ca: true,
            name_constraints: Some(NameConstraints {
                critical: true,
                permitted: NameConstraintItems {
                    dns_domains: vec!["example.com".into()],
                    ip_ranges: vec![("10.0.0.0".parse().expect("ip"), 8)],
                    email_addresses: vec![],
                    uri_domains: vec![".example.com".into()],
                },
                excluded: NameConstraintItems::default(),
            }),
            ..Default::default()
        }
    }

    /// Both writers, from the same inputs: the request's and certificate's signed parts
    /// must be the same bytes.
    #[test]
    fn rcgen_and_the_der_writer_write_the_same_bytes() {
        let ca_key = PrivateKey::generate(KeyAlgorithm::Ecdsa(Curve::P256)).expect("key");
        let ca_profile = ca_profile();
        let ca_subject = ca_profile.subject.to_der();
        for key in keys() {
            for profile in [
                leaf_profile(Name::from_fields(&SubjectFields {
                    common_name: Some("svc".into()),
                    organizations: vec!["Example".into()],
                    ..Default::default()
                })),
                ca_profile.clone(),
            ] {
                let subject = profile.subject.to_der();
                let exts = profile.extensions();
                let ours = crate::cert::write_csr(&subject, &exts, &key).expect("csr");
                let theirs = request(&subject, &exts, &key).expect("rcgen writes it");
                assert_eq!(
                    signed_part(&ours),
                    signed_part(&theirs),
                    "{:?}",
                    key.algorithm()
                );
                let csr = parse_csr(&theirs).expect("rcgen's request verifies");
                let usages_key = [KeyUsage::DigitalSignature];
                let usages_ext = [eku::SERVER_AUTH.to_string()];
                // A serial with its top bit set after a leading byte, and one with
                // leading zero bytes (both writers must drop them).
                let serials: [&[u8]; 2] = [
                    &[0x01, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9],
                    &[0, 0, 0x7f, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13],
                ];
                // The issuer's URL extensions after the request's, as sign_csr adds them.
                let mut exts = csr.extensions.clone();
                exts.extend(crate::cert::url_extensions(
                    &["http://pki.example.com/ca.crl".into()],
                    &["http://ocsp.example.com".into()],
                    &["http://pki.example.com/ca.crt".into()],
                ));
                for (aki, serial) in [None, Some(&[7u8; 20][..])].into_iter().zip(serials) {
                    let tbs = Tbs {
                        subject: &csr.subject_der,
                        spki: &csr.spki_der,
                        issuer: &ca_subject,
                        serial,
                        not_before: 1_700_000_000,
                        not_after: 2_600_000_000, // after 2049: GeneralizedTime
                        is_ca: profile.is_ca,
                        subject_key_id: crate::cert::key_identifier(&csr.spki_der).expect("id"),
                        authority_key_id: aki,
                        extensions: &exts,
                    };
                    let ours = crate::cert::write_certificate(&tbs, &ca_key).expect("writes");
                    let theirs = certificate(&tbs, &ca_key).expect("rcgen writes it");
                    assert_eq!(
                        signed_part(&ours),
                        signed_part(&theirs),
                        "{:?}",
                        key.algorithm()
                    );
                }
                // And through the public entry point, with usages from the signer.
                let cert = sign_csr(
                    &csr,
                    profile.is_ca,
                    &Validity {
                        not_before: 1_700_000_000,
                        not_after: 1_800_000_000,
                    },
                    &[0x42; 20],
                    &CertSigner::Ca {
                        name_der: &ca_subject,
                        key_id: Some(&[1u8; 20]),
                        key: &ca_key,
                    },
                    Some(&crate::cert::Usages {
                        key: &usages_key,
                        ext: &usages_ext,
                    }),
                    &[],
                )
                .expect("signs");
                let info = crate::inspect::CertInfo::parse(&cert).expect("reads back");
                assert_eq!(info.is_ca, profile.is_ca);
            }
        }
    }

    /// Names rcgen cannot hold (two values of one type, a multi-valued RDN, a T61String)
    /// go to the DER writer, and still come out as asked.
    #[test]
    fn names_rcgen_cannot_write_fall_back_to_the_der_writer() {
        let key = PrivateKey::generate(KeyAlgorithm::Ecdsa(Curve::P256)).expect("key");
        let two_units = Name::from_fields(&SubjectFields {
            common_name: Some("svc".into()),
            organizational_units: vec!["a".into(), "b".into()],
            ..Default::default()
        });
        let multi = Name::parse_rfc4514("CN=svc+UID=42,O=Example").expect("parses");
        let hex = Name::parse_rfc4514("CN=#1403737663").expect("parses");
        for subject in [two_units, multi, hex] {
            let der_name = subject.to_der();
            assert!(name(&der_name).is_none(), "rcgen cannot hold {subject:?}");
            let profile = leaf_profile(subject);
            assert!(request(&der_name, &profile.extensions(), &key).is_none());
            let csr = parse_csr(&build_csr(&profile, &key).expect("DER writer")).expect("verifies");
            assert_eq!(csr.subject_der, der_name);
            let cert = sign_csr(
                &csr,
                false,
                &Validity {
                    not_before: 1_700_000_000,
                    not_after: 1_800_000_000,
                },
                &[0x42; 20],
                &CertSigner::SelfSigned(&key),
                None,
                &[],
            )
            .expect("signs");
            assert_eq!(
                certificate_parts(&cert).expect("parts")[1],
                der_name.as_slice()
            );
            // The serial: 20 octets, positive, as cert-manager's (Go's) certificates.
            let info = crate::inspect::CertInfo::parse(&cert).expect("parses");
            assert_eq!(info.serial_hex.len(), 40, "{}", info.serial_hex);
            assert!(info.serial_hex.starts_with("42"), "{}", info.serial_hex);
        }
    }

    #[test]
    fn simple_names_go_through_rcgen() {
        let subject = ca_profile().subject.to_der();
        assert!(name(&subject).is_some());
        assert!(name(&der::seq(&[])).is_some(), "an empty subject");
    }
}
