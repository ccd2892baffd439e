//! JSON Web Signature pieces an ACME client needs (RFC 7515, 7517, 7518, 7638): a key's
//! public JWK, its thumbprint, and a signature in JWS form (`RS256` for RSA keys of any
//! size, `ES256`/`ES384`/`ES512` as fixed-width `r || s`, `EdDSA`).
//!
//! Written here rather than taken from a JOSE crate because the keys are certwright's own
//! [`PrivateKey`] (RSA, as cert-manager's account keys are, and ECDSA), and the JWS
//! forms are a few lines over aws-lc-rs.

use crate::der;
use crate::key::{Curve, KeyAlgorithm, KeyError, PrivateKey};
use aws_lc_rs::digest;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

fn malformed(e: der::DerError) -> KeyError {
    KeyError::Malformed(e.to_string())
}

/// The JWS `alg` a key signs with.
pub fn algorithm(key: &PrivateKey) -> &'static str {
    match key.algorithm() {
        KeyAlgorithm::Rsa(_) => "RS256",
        KeyAlgorithm::Ecdsa(Curve::P256) => "ES256",
        KeyAlgorithm::Ecdsa(Curve::P384) => "ES384",
        KeyAlgorithm::Ecdsa(Curve::P521) => "ES512",
        KeyAlgorithm::Ed25519 => "EdDSA",
    }
}

/// The public JWK of a key as a JSON object string with its required members only, in
/// lexicographic order: the form RFC 7638 hashes for the thumbprint.
pub fn jwk(key: &PrivateKey) -> Result<String, KeyError> {
    let top = der::parse_one(key.spki_der(), "SubjectPublicKeyInfo").map_err(malformed)?;
    let mut r = top.reader();
    r.expect(der::SEQUENCE, "algorithm").map_err(malformed)?;
    let bits = r.expect(der::BIT_STRING, "public key").map_err(malformed)?;
    let point = bits.content.get(1..).unwrap_or_default();
    Ok(match key.algorithm() {
        KeyAlgorithm::Rsa(_) => {
            let rsa = der::parse_one(point, "RSAPublicKey").map_err(malformed)?;
            let mut r = rsa.reader();
            let n = r.expect(der::INTEGER, "modulus").map_err(malformed)?;
            let e = r.expect(der::INTEGER, "exponent").map_err(malformed)?;
            let strip = |b: &[u8]| b[b.iter().take_while(|x| **x == 0).count()..].to_vec();
            format!(
                r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
                b64(&strip(e.content)),
                b64(&strip(n.content))
            )
        }
        KeyAlgorithm::Ecdsa(c) => {
            let width = field_bytes(c);
            if point.len() != 1 + 2 * width || point[0] != 4 {
                return Err(KeyError::Malformed(
                    "EC public key is not an uncompressed point".into(),
                ));
            }
            let crv = match c {
                Curve::P256 => "P-256",
                Curve::P384 => "P-384",
                Curve::P521 => "P-521",
            };
            format!(
                r#"{{"crv":"{crv}","kty":"EC","x":"{}","y":"{}"}}"#,
                b64(&point[1..=width]),
                b64(&point[1 + width..])
            )
        }
        KeyAlgorithm::Ed25519 => format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, b64(point)),
    })
}

/// The RFC 7638 thumbprint of a key's JWK (SHA-256, base64url): the suffix of every
/// ACME key authorization.
pub fn thumbprint(key: &PrivateKey) -> Result<String, KeyError> {
    Ok(b64(
        digest::digest(&digest::SHA256, jwk(key)?.as_bytes()).as_ref()
    ))
}

fn field_bytes(c: Curve) -> usize {
    match c {
        Curve::P256 => 32,
        Curve::P384 => 48,
        Curve::P521 => 66,
    }
}

/// Signs a JWS signing input (`protected.payload`) with [`algorithm`]'s algorithm.
pub fn sign(key: &PrivateKey, input: &[u8]) -> Result<Vec<u8>, KeyError> {
    match key.algorithm() {
        KeyAlgorithm::Rsa(_) => key.sign_rsa_sha256(input),
        KeyAlgorithm::Ecdsa(c) => fixed(&key.sign(input)?, field_bytes(c)),
        KeyAlgorithm::Ed25519 => key.sign(input),
    }
}

/// An ASN.1 `ECDSA-Sig-Value` as JWS wants it: `r || s`, each left-padded to the field
/// width.
fn fixed(sig: &[u8], width: usize) -> Result<Vec<u8>, KeyError> {
    let seq = der::parse_one(sig, "ECDSA signature").map_err(malformed)?;
    let mut r = seq.reader();
    let mut out = Vec::with_capacity(2 * width);
    for what in ["r", "s"] {
        let i = r.expect(der::INTEGER, what).map_err(malformed)?;
        let v = &i.content[i.content.iter().take_while(|b| **b == 0).count()..];
        if v.len() > width {
            return Err(KeyError::Sign);
        }
        out.extend(std::iter::repeat_n(0u8, width - v.len()));
        out.extend_from_slice(v);
    }
    Ok(out)
}

/// An HMAC-SHA-2 signature (external account binding's HS256/HS384/HS512).
pub fn hmac(alg: &str, key: &[u8], input: &[u8]) -> Option<Vec<u8>> {
    use aws_lc_rs::hmac;
    let a = match alg {
        "HS256" => hmac::HMAC_SHA256,
        "HS384" => hmac::HMAC_SHA384,
        "HS512" => hmac::HMAC_SHA512,
        _ => return None,
    };
    Some(hmac::sign(&hmac::Key::new(a, key), input).as_ref().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature;

    /// Verifies a JWS signature made by [`sign`].
    fn verify(key: &PrivateKey, input: &[u8], sig: &[u8]) -> bool {
        let spki = key.spki_der();
        let Ok(top) = der::parse_one(spki, "SubjectPublicKeyInfo") else {
            return false;
        };
        let mut r = top.reader();
        if r.expect(der::SEQUENCE, "algorithm").is_err() {
            return false;
        }
        let Ok(bits) = r.expect(der::BIT_STRING, "public key") else {
            return false;
        };
        let public = bits.content.get(1..).unwrap_or_default();
        let alg: &dyn signature::VerificationAlgorithm = match key.algorithm() {
            KeyAlgorithm::Rsa(_) => &signature::RSA_PKCS1_2048_8192_SHA256,
            KeyAlgorithm::Ecdsa(Curve::P256) => &signature::ECDSA_P256_SHA256_FIXED,
            KeyAlgorithm::Ecdsa(Curve::P384) => &signature::ECDSA_P384_SHA384_FIXED,
            KeyAlgorithm::Ecdsa(Curve::P521) => &signature::ECDSA_P521_SHA512_FIXED,
            KeyAlgorithm::Ed25519 => &signature::ED25519,
        };
        signature::UnparsedPublicKey::new(alg, public)
            .verify(input, sig)
            .is_ok()
    }

    #[test]
    fn every_account_key_type_signs_verifiably() {
        for alg in [
            KeyAlgorithm::Rsa(2048),
            KeyAlgorithm::Ecdsa(Curve::P256),
            KeyAlgorithm::Ecdsa(Curve::P384),
            KeyAlgorithm::Ecdsa(Curve::P521),
        ] {
            let key = PrivateKey::generate(alg).expect("key");
            let sig = sign(&key, b"header.payload").expect("sign");
            assert!(verify(&key, b"header.payload", &sig), "{alg}");
            assert!(!verify(&key, b"header.other", &sig), "{alg}");
            let jwk = jwk(&key).expect("jwk");
            let v: serde_json::Value = serde_json::from_str(&jwk).expect("json");
            assert!(v.get("kty").is_some(), "{jwk}");
            assert_eq!(thumbprint(&key).expect("thumb").len(), 43);
        }
    }
}
