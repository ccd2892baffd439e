//! Private keys: generation, PEM/DER encodings (PKCS#1, SEC 1, PKCS#8) and signing.

use crate::der;
use crate::pem;
use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{self, KeySize};
use aws_lc_rs::signature::{self, EcdsaKeyPair, EcdsaSigningAlgorithm, Ed25519KeyPair, KeyPair};
use std::fmt;

pub const OID_RSA: &str = "1.2.840.113549.1.1.1";
pub const OID_EC: &str = "1.2.840.10045.2.1";
pub const OID_ED25519: &str = "1.3.101.112";
pub const OID_P256: &str = "1.2.840.10045.3.1.7";
pub const OID_P384: &str = "1.3.132.0.34";
pub const OID_P521: &str = "1.3.132.0.35";

/// Elliptic curves for ECDSA keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Curve {
    P256,
    P384,
    P521,
}

impl Curve {
    pub fn bits(self) -> u32 {
        match self {
            Curve::P256 => 256,
            Curve::P384 => 384,
            Curve::P521 => 521,
        }
    }

    fn signing(self) -> &'static EcdsaSigningAlgorithm {
        match self {
            Curve::P256 => &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            Curve::P384 => &signature::ECDSA_P384_SHA384_ASN1_SIGNING,
            Curve::P521 => &signature::ECDSA_P521_SHA512_ASN1_SIGNING,
        }
    }
}

/// Key algorithm and size, as a Certificate's `privateKey` block names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    Rsa(u32),
    Ecdsa(Curve),
    Ed25519,
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyAlgorithm::Rsa(bits) => write!(f, "RSA {bits}"),
            KeyAlgorithm::Ecdsa(c) => write!(f, "ECDSA P-{}", c.bits()),
            KeyAlgorithm::Ed25519 => write!(f, "Ed25519"),
        }
    }
}

/// Private key encoding in `tls.key` (`privateKey.encoding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum KeyEncoding {
    /// PKCS#1 for RSA, SEC 1 for ECDSA; Ed25519 has no such form and uses PKCS#8.
    #[default]
    Pkcs1,
    Pkcs8,
}

/// Why a key could not be made or read. Messages never contain key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("unsupported RSA key size {0}: supported sizes are 2048, 3072, 4096 and 8192")]
    UnsupportedRsaSize(u32),
    #[error("key generation failed for {0}")]
    Generate(KeyAlgorithm),
    #[error("private key: {0}")]
    Pem(#[from] pem::PemError),
    #[error("private key: no private key PEM block (found {0})")]
    NoKeyBlock(String),
    #[error("private key: encrypted PEM private keys are not supported")]
    Encrypted,
    #[error("private key: {0}")]
    Malformed(String),
    #[error("private key: unsupported algorithm {0}")]
    UnsupportedAlgorithm(String),
    #[error("signing failed")]
    Sign,
}

enum Inner {
    Rsa(rsa::KeyPair),
    Ec(EcdsaKeyPair, Curve),
    Ed(Ed25519KeyPair),
}

/// A private key with its PKCS#8 form. `Debug` never shows key material.
pub struct PrivateKey {
    inner: Inner,
    pkcs8: Vec<u8>,
    spki: Vec<u8>,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey({}, redacted)", self.algorithm())
    }
}

impl PartialEq for PrivateKey {
    fn eq(&self, other: &Self) -> bool {
        self.spki == other.spki
    }
}

impl PrivateKey {
    /// Generates a new key.
    pub fn generate(alg: KeyAlgorithm) -> Result<Self, KeyError> {
        let gen_err = |_| KeyError::Generate(alg);
        let inner = match alg {
            KeyAlgorithm::Rsa(bits) => {
                let size = match bits {
                    2048 => KeySize::Rsa2048,
                    3072 => KeySize::Rsa3072,
                    4096 => KeySize::Rsa4096,
                    8192 => KeySize::Rsa8192,
                    other => return Err(KeyError::UnsupportedRsaSize(other)),
                };
                Inner::Rsa(rsa::KeyPair::generate(size).map_err(gen_err)?)
            }
            KeyAlgorithm::Ecdsa(c) => {
                Inner::Ec(EcdsaKeyPair::generate(c.signing()).map_err(gen_err)?, c)
            }
            KeyAlgorithm::Ed25519 => Inner::Ed(Ed25519KeyPair::generate().map_err(gen_err)?),
        };
        Self::from_inner(inner)
    }

    fn from_inner(inner: Inner) -> Result<Self, KeyError> {
        let enc = |_| KeyError::Malformed("cannot encode key".into());
        let (pkcs8, spki) = match &inner {
            Inner::Rsa(k) => (
                AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(k)
                    .map_err(enc)?
                    .as_ref()
                    .to_vec(),
                spki_der(k.public_key())?,
            ),
            Inner::Ec(k, _) => (
                k.to_pkcs8v1().map_err(enc)?.as_ref().to_vec(),
                spki_der(k.public_key())?,
            ),
            Inner::Ed(k) => (
                k.to_pkcs8v1().map_err(enc)?.as_ref().to_vec(),
                spki_der(k.public_key())?,
            ),
        };
        Ok(Self { inner, pkcs8, spki })
    }

    /// Reads a key from unencrypted PKCS#8 DER.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, KeyError> {
        let (alg_oid, curve, _) = pkcs8_parts(der)?;
        let bad = |e: aws_lc_rs::error::KeyRejected| KeyError::Malformed(e.to_string());
        let inner = match alg_oid.as_str() {
            OID_RSA => Inner::Rsa(rsa::KeyPair::from_pkcs8(der).map_err(bad)?),
            OID_EC => {
                let c = curve.ok_or_else(|| KeyError::Malformed("EC key without curve".into()))?;
                Inner::Ec(EcdsaKeyPair::from_pkcs8(c.signing(), der).map_err(bad)?, c)
            }
            OID_ED25519 => Inner::Ed(Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(bad)?),
            other => return Err(KeyError::UnsupportedAlgorithm(other.to_string())),
        };
        Self::from_inner(inner)
    }

    /// Reads the first private key block of a PEM document: `PRIVATE KEY` (PKCS#8),
    /// `RSA PRIVATE KEY` (PKCS#1) or `EC PRIVATE KEY` (SEC 1).
    pub fn from_pem(input: &[u8]) -> Result<Self, KeyError> {
        let blocks = pem::decode_all(input)?;
        let labels: Vec<&str> = blocks.iter().map(|b| b.label.as_str()).collect();
        for b in &blocks {
            match b.label.as_str() {
                "PRIVATE KEY" => return Self::from_pkcs8_der(&b.der),
                "RSA PRIVATE KEY" => {
                    let k = rsa::KeyPair::from_der(&b.der)
                        .map_err(|e| KeyError::Malformed(format!("PKCS#1: {e}")))?;
                    return Self::from_inner(Inner::Rsa(k));
                }
                "EC PRIVATE KEY" => {
                    for c in [Curve::P256, Curve::P384, Curve::P521] {
                        if let Ok(k) = EcdsaKeyPair::from_private_key_der(c.signing(), &b.der) {
                            return Self::from_inner(Inner::Ec(k, c));
                        }
                    }
                    return Err(KeyError::Malformed(
                        "SEC 1 EC key is malformed or on an unsupported curve".into(),
                    ));
                }
                "ENCRYPTED PRIVATE KEY" => return Err(KeyError::Encrypted),
                _ => {}
            }
        }
        Err(KeyError::NoKeyBlock(labels.join(", ")))
    }

    pub fn algorithm(&self) -> KeyAlgorithm {
        match &self.inner {
            Inner::Rsa(k) => KeyAlgorithm::Rsa((k.public_modulus_len() * 8) as u32),
            Inner::Ec(_, c) => KeyAlgorithm::Ecdsa(*c),
            Inner::Ed(_) => KeyAlgorithm::Ed25519,
        }
    }

    /// Unencrypted PKCS#8 DER (`PrivateKeyInfo`, version 1).
    pub fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8
    }

    /// DER `SubjectPublicKeyInfo` of the public half.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki
    }

    /// The key as PEM in the requested encoding.
    pub fn to_pem(&self, encoding: KeyEncoding) -> Result<String, KeyError> {
        match (encoding, &self.inner) {
            (KeyEncoding::Pkcs8, _) | (KeyEncoding::Pkcs1, Inner::Ed(_)) => {
                Ok(pem::encode("PRIVATE KEY", &self.pkcs8))
            }
            (KeyEncoding::Pkcs1, Inner::Rsa(_)) => {
                // PKCS#8 wraps the PKCS#1 RSAPrivateKey in its privateKey OCTET STRING.
                let (_, _, inner) = pkcs8_parts(&self.pkcs8)?;
                Ok(pem::encode("RSA PRIVATE KEY", inner))
            }
            (KeyEncoding::Pkcs1, Inner::Ec(k, _)) => {
                use aws_lc_rs::encoding::EcPrivateKeyRfc5915Der;
                let der: EcPrivateKeyRfc5915Der = k
                    .private_key()
                    .as_der()
                    .map_err(|_| KeyError::Malformed("cannot encode SEC 1 key".into()))?;
                Ok(pem::encode("EC PRIVATE KEY", der.as_ref()))
            }
        }
    }

    /// The signature algorithm this key signs with (cert-manager's choice: the hash grows
    /// with the key size).
    pub fn signature_algorithm(&self) -> SignatureAlgorithm {
        match self.algorithm() {
            KeyAlgorithm::Rsa(b) if b >= 4096 => SignatureAlgorithm::RsaSha512,
            KeyAlgorithm::Rsa(b) if b >= 3072 => SignatureAlgorithm::RsaSha384,
            KeyAlgorithm::Rsa(_) => SignatureAlgorithm::RsaSha256,
            KeyAlgorithm::Ecdsa(Curve::P256) => SignatureAlgorithm::EcdsaSha256,
            KeyAlgorithm::Ecdsa(Curve::P384) => SignatureAlgorithm::EcdsaSha384,
            KeyAlgorithm::Ecdsa(Curve::P521) => SignatureAlgorithm::EcdsaSha512,
            KeyAlgorithm::Ed25519 => SignatureAlgorithm::Ed25519,
        }
    }

    /// Signs `msg` with [`Self::signature_algorithm`].
    pub fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, KeyError> {
        let rng = SystemRandom::new();
        match &self.inner {
            Inner::Rsa(k) => {
                let pad: &'static dyn signature::RsaEncoding = match self.signature_algorithm() {
                    SignatureAlgorithm::RsaSha512 => &signature::RSA_PKCS1_SHA512,
                    SignatureAlgorithm::RsaSha384 => &signature::RSA_PKCS1_SHA384,
                    _ => &signature::RSA_PKCS1_SHA256,
                };
                let mut sig = vec![0u8; k.public_modulus_len()];
                k.sign(pad, &rng, msg, &mut sig)
                    .map_err(|_| KeyError::Sign)?;
                Ok(sig)
            }
            Inner::Ec(k, _) => Ok(k
                .sign(&rng, msg)
                .map_err(|_| KeyError::Sign)?
                .as_ref()
                .to_vec()),
            Inner::Ed(k) => Ok(k.sign(msg).as_ref().to_vec()),
        }
    }
}

impl PrivateKey {
    /// Signs `msg` with RSASSA-PKCS1-v1_5 and SHA-256 whatever the key size (JWS `RS256`);
    /// fails for other keys.
    pub fn sign_rsa_sha256(&self, msg: &[u8]) -> Result<Vec<u8>, KeyError> {
        let Inner::Rsa(k) = &self.inner else {
            return Err(KeyError::Sign);
        };
        let mut sig = vec![0u8; k.public_modulus_len()];
        k.sign(
            &signature::RSA_PKCS1_SHA256,
            &SystemRandom::new(),
            msg,
            &mut sig,
        )
        .map_err(|_| KeyError::Sign)?;
        Ok(sig)
    }
}

fn spki_der<K: AsDer<PublicKeyX509Der<'static>>>(k: &K) -> Result<Vec<u8>, KeyError> {
    k.as_der()
        .map(|d| d.as_ref().to_vec())
        .map_err(|_| KeyError::Malformed("cannot encode public key".into()))
}

fn malformed(e: der::DerError) -> KeyError {
    KeyError::Malformed(e.to_string())
}

/// The parts of a PKCS#8 `PrivateKeyInfo`: algorithm OID, curve for EC keys, and the
/// inner private key (PKCS#1 `RSAPrivateKey`, SEC 1 `ECPrivateKey`, or the Ed25519 seed).
fn pkcs8_parts(der: &[u8]) -> Result<(String, Option<Curve>, &[u8]), KeyError> {
    let m = malformed;
    let top = der::parse_one(der, "PKCS#8").map_err(m)?;
    let mut r = top.expect(der::SEQUENCE, "PKCS#8").map_err(m)?.reader();
    r.expect(der::INTEGER, "PKCS#8 version").map_err(m)?;
    let mut alg = r
        .expect(der::SEQUENCE, "PKCS#8 algorithm")
        .map_err(m)?
        .reader();
    let oid = alg.next("algorithm").map_err(m)?.oid_string().map_err(m)?;
    let mut curve = None;
    if oid == OID_EC {
        let p = alg.next("curve").map_err(m)?.oid_string().map_err(m)?;
        curve = Some(match p.as_str() {
            OID_P256 => Curve::P256,
            OID_P384 => Curve::P384,
            OID_P521 => Curve::P521,
            other => return Err(KeyError::UnsupportedAlgorithm(format!("EC curve {other}"))),
        });
    }
    let inner = r
        .expect(der::OCTET_STRING, "PKCS#8 key")
        .map_err(m)?
        .content;
    Ok((oid, curve, inner))
}

/// Key algorithm of a DER `SubjectPublicKeyInfo`.
pub fn spki_algorithm(spki: &[u8]) -> Result<KeyAlgorithm, KeyError> {
    let top = der::parse_one(spki, "SubjectPublicKeyInfo").map_err(malformed)?;
    let mut r = top.reader();
    let mut alg = r
        .expect(der::SEQUENCE, "algorithm")
        .map_err(malformed)?
        .reader();
    let oid = alg
        .next("algorithm")
        .map_err(malformed)?
        .oid_string()
        .map_err(malformed)?;
    let key = r.expect(der::BIT_STRING, "public key").map_err(malformed)?;
    match oid.as_str() {
        OID_RSA => {
            let bits = key.content.get(1..).unwrap_or_default();
            let rsa = der::parse_one(bits, "RSAPublicKey").map_err(malformed)?;
            let n = rsa
                .reader()
                .expect(der::INTEGER, "modulus")
                .map_err(malformed)?;
            let lead = n.content.iter().take_while(|b| **b == 0).count();
            let mag = &n.content[lead..];
            let bits = if mag.is_empty() {
                0
            } else {
                (mag.len() as u32 - 1) * 8 + (8 - mag[0].leading_zeros())
            };
            Ok(KeyAlgorithm::Rsa(bits))
        }
        OID_EC => {
            let p = alg
                .next("curve")
                .map_err(malformed)?
                .oid_string()
                .map_err(malformed)?;
            Ok(KeyAlgorithm::Ecdsa(match p.as_str() {
                OID_P256 => Curve::P256,
                OID_P384 => Curve::P384,
                OID_P521 => Curve::P521,
                other => return Err(KeyError::UnsupportedAlgorithm(format!("EC curve {other}"))),
            }))
        }
        OID_ED25519 => Ok(KeyAlgorithm::Ed25519),
        other => Err(KeyError::UnsupportedAlgorithm(other.to_string())),
    }
}

/// Signature algorithms certwright signs and verifies with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureAlgorithm {
    RsaSha256,
    RsaSha384,
    RsaSha512,
    EcdsaSha256,
    EcdsaSha384,
    EcdsaSha512,
    Ed25519,
}

impl SignatureAlgorithm {
    pub fn oid(self) -> &'static str {
        match self {
            SignatureAlgorithm::RsaSha256 => "1.2.840.113549.1.1.11",
            SignatureAlgorithm::RsaSha384 => "1.2.840.113549.1.1.12",
            SignatureAlgorithm::RsaSha512 => "1.2.840.113549.1.1.13",
            SignatureAlgorithm::EcdsaSha256 => "1.2.840.10045.4.3.2",
            SignatureAlgorithm::EcdsaSha384 => "1.2.840.10045.4.3.3",
            SignatureAlgorithm::EcdsaSha512 => "1.2.840.10045.4.3.4",
            SignatureAlgorithm::Ed25519 => OID_ED25519,
        }
    }

    pub fn from_oid(oid: &str) -> Option<Self> {
        use SignatureAlgorithm::*;
        [
            RsaSha256,
            RsaSha384,
            RsaSha512,
            EcdsaSha256,
            EcdsaSha384,
            EcdsaSha512,
            Ed25519,
        ]
        .into_iter()
        .find(|a| a.oid() == oid)
    }

    /// DER AlgorithmIdentifier (RSA carries NULL parameters, ECDSA and Ed25519 none:
    /// RFC 4055 §5, RFC 5758 §3.2, RFC 8410 §3).
    pub fn algorithm_identifier(self) -> Vec<u8> {
        match self {
            SignatureAlgorithm::RsaSha256
            | SignatureAlgorithm::RsaSha384
            | SignatureAlgorithm::RsaSha512 => der::algorithm(self.oid(), Some(&der::null())),
            _ => der::algorithm(self.oid(), None),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SignatureAlgorithm::RsaSha256 => "SHA256-RSA",
            SignatureAlgorithm::RsaSha384 => "SHA384-RSA",
            SignatureAlgorithm::RsaSha512 => "SHA512-RSA",
            SignatureAlgorithm::EcdsaSha256 => "ECDSA-SHA256",
            SignatureAlgorithm::EcdsaSha384 => "ECDSA-SHA384",
            SignatureAlgorithm::EcdsaSha512 => "ECDSA-SHA512",
            SignatureAlgorithm::Ed25519 => "Ed25519",
        }
    }
}

/// Verifies `sig` over `msg` with the key in DER `spki`.
pub fn verify_signature(
    spki: &[u8],
    alg: SignatureAlgorithm,
    msg: &[u8],
    sig: &[u8],
) -> Result<(), KeyError> {
    let key_alg = spki_algorithm(spki)?;
    let top = der::parse_one(spki, "SubjectPublicKeyInfo").map_err(malformed)?;
    let mut r = top.reader();
    r.expect(der::SEQUENCE, "algorithm").map_err(malformed)?;
    let key = r.expect(der::BIT_STRING, "public key").map_err(malformed)?;
    let key_bytes = key.content.get(1..).unwrap_or_default();
    use SignatureAlgorithm as S;
    let v: &'static dyn signature::VerificationAlgorithm = match (key_alg, alg) {
        (KeyAlgorithm::Rsa(_), S::RsaSha256) => &signature::RSA_PKCS1_2048_8192_SHA256,
        (KeyAlgorithm::Rsa(_), S::RsaSha384) => &signature::RSA_PKCS1_2048_8192_SHA384,
        (KeyAlgorithm::Rsa(_), S::RsaSha512) => &signature::RSA_PKCS1_2048_8192_SHA512,
        (KeyAlgorithm::Ecdsa(Curve::P256), S::EcdsaSha256) => &signature::ECDSA_P256_SHA256_ASN1,
        (KeyAlgorithm::Ecdsa(Curve::P256), S::EcdsaSha384) => &signature::ECDSA_P256_SHA384_ASN1,
        (KeyAlgorithm::Ecdsa(Curve::P384), S::EcdsaSha256) => &signature::ECDSA_P384_SHA256_ASN1,
        (KeyAlgorithm::Ecdsa(Curve::P384), S::EcdsaSha384) => &signature::ECDSA_P384_SHA384_ASN1,
        (KeyAlgorithm::Ecdsa(Curve::P521), S::EcdsaSha512) => &signature::ECDSA_P521_SHA512_ASN1,
        (KeyAlgorithm::Ed25519, S::Ed25519) => &signature::ED25519,
        (k, a) => {
            return Err(KeyError::UnsupportedAlgorithm(format!(
                "{} signature with a {k} key",
                a.name()
            )))
        }
    };
    signature::UnparsedPublicKey::new(v, key_bytes)
        .verify(msg, sig)
        .map_err(|_| KeyError::Malformed("signature does not verify".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_algorithm_round_trips_through_every_encoding() {
        for alg in [
            KeyAlgorithm::Rsa(2048),
            KeyAlgorithm::Ecdsa(Curve::P256),
            KeyAlgorithm::Ecdsa(Curve::P384),
            KeyAlgorithm::Ecdsa(Curve::P521),
            KeyAlgorithm::Ed25519,
        ] {
            let k = PrivateKey::generate(alg).expect("generates");
            assert_eq!(k.algorithm(), alg);
            assert_eq!(spki_algorithm(k.spki_der()).expect("spki"), alg);
            for enc in [KeyEncoding::Pkcs1, KeyEncoding::Pkcs8] {
                let pem = k.to_pem(enc).expect("encodes");
                let back = PrivateKey::from_pem(pem.as_bytes()).expect("reads back");
                assert_eq!(back, k, "{alg} {enc:?}");
            }
            let msg = b"hello";
            let sig = k.sign(msg).expect("signs");
            verify_signature(k.spki_der(), k.signature_algorithm(), msg, &sig).expect("verifies");
            assert!(
                verify_signature(k.spki_der(), k.signature_algorithm(), b"other", &sig).is_err()
            );
        }
    }

    #[test]
    fn pem_labels_follow_encoding() {
        let rsa = PrivateKey::generate(KeyAlgorithm::Rsa(2048)).expect("rsa");
        assert!(rsa
            .to_pem(KeyEncoding::Pkcs1)
            .expect("pem")
            .starts_with("-----BEGIN RSA PRIVATE KEY"));
        assert!(rsa
            .to_pem(KeyEncoding::Pkcs8)
            .expect("pem")
            .starts_with("-----BEGIN PRIVATE KEY"));
        let ec = PrivateKey::generate(KeyAlgorithm::Ecdsa(Curve::P256)).expect("ec");
        assert!(ec
            .to_pem(KeyEncoding::Pkcs1)
            .expect("pem")
            .starts_with("-----BEGIN EC PRIVATE KEY"));
        let ed = PrivateKey::generate(KeyAlgorithm::Ed25519).expect("ed");
        assert!(ed
            .to_pem(KeyEncoding::Pkcs1)
            .expect("pem")
            .starts_with("-----BEGIN PRIVATE KEY"));
    }

    #[test]
    fn bad_keys_get_specific_errors() {
        assert_eq!(
            PrivateKey::generate(KeyAlgorithm::Rsa(2049)).err(),
            Some(KeyError::UnsupportedRsaSize(2049))
        );
        assert!(matches!(
            PrivateKey::from_pem(b"nonsense"),
            Err(KeyError::Pem(_))
        ));
        let cert_only = pem::encode("CERTIFICATE", &[1, 2, 3]);
        assert!(matches!(
            PrivateKey::from_pem(cert_only.as_bytes()),
            Err(KeyError::NoKeyBlock(_))
        ));
        let garbage = pem::encode("PRIVATE KEY", &[0x30, 0x03, 1, 2, 3]);
        let err = PrivateKey::from_pem(garbage.as_bytes()).expect_err("rejects");
        assert!(matches!(err, KeyError::Malformed(_)));
        let dbg = format!(
            "{:?}",
            PrivateKey::generate(KeyAlgorithm::Ed25519).expect("ed")
        );
        assert_eq!(dbg, "PrivateKey(Ed25519, redacted)");
    }
}
