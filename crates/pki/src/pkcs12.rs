//! PKCS#12 (RFC 7292) key and trust stores with cert-manager's three profiles.
//!
//! - `LegacyRC2`: certificates under pbeWithSHAAnd40BitRC2-CBC, the key under
//!   pbeWithSHAAnd3-KeyTripleDES-CBC, HMAC-SHA-1 MAC (cert-manager's default; readable by
//!   old Java and, with `-legacy`, by OpenSSL 3).
//! - `LegacyDES`: certificates and key under pbeWithSHAAnd3-KeyTripleDES-CBC, HMAC-SHA-1.
//! - `Modern2023`: certificates and key under PBES2 (PBKDF2-HMAC-SHA-256, AES-256-CBC),
//!   HMAC-SHA-256 MAC.
//!
//! Iteration counts are 2,048 throughout. Trust store certificates carry Oracle's
//! trusted-key-usage attribute so that Java loads them as trusted entries.
//!
//! Guarantee: salts and IVs are derived from the inputs, so unchanged inputs give
//! identical bytes.

// 3DES is deprecated in aws-lc-rs; the legacy PKCS#12 profiles need it to stay readable
// by older Java releases.
#![allow(deprecated)]

use crate::der::{self, Element, Reader};
use aws_lc_rs::cipher::{
    DecryptionContext, EncryptionContext, PaddedBlockDecryptingKey, PaddedBlockEncryptingKey,
    UnboundCipherKey, AES_256, DES_EDE3_FOR_LEGACY_USE_ONLY,
};
use aws_lc_rs::digest::{self, Algorithm as Hash, SHA1_FOR_LEGACY_USE_ONLY as SHA1, SHA256};
use aws_lc_rs::iv::FixedLength;
use aws_lc_rs::{hmac, pbkdf2};
use rc2::cipher::generic_array::GenericArray;
use rc2::cipher::{BlockDecrypt, BlockEncrypt};
use std::num::NonZeroU32;

const ITERATIONS: u32 = 2048;

const OID_DATA: &str = "1.2.840.113549.1.7.1";
const OID_ENCRYPTED_DATA: &str = "1.2.840.113549.1.7.6";
const OID_KEY_BAG: &str = "1.2.840.113549.1.12.10.1.1";
const OID_SHROUDED_KEY_BAG: &str = "1.2.840.113549.1.12.10.1.2";
const OID_CERT_BAG: &str = "1.2.840.113549.1.12.10.1.3";
const OID_X509_CERT: &str = "1.2.840.113549.1.9.22.1";
const OID_FRIENDLY_NAME: &str = "1.2.840.113549.1.9.20";
const OID_LOCAL_KEY_ID: &str = "1.2.840.113549.1.9.21";
const OID_JAVA_TRUSTED_KEY_USAGE: &str = "2.16.840.1.113894.746875.1.1";
const OID_ANY_EKU: &str = "2.5.29.37.0";
const OID_PBE_SHA1_3DES: &str = "1.2.840.113549.1.12.1.3";
const OID_PBE_SHA1_RC2_40: &str = "1.2.840.113549.1.12.1.6";
const OID_PBES2: &str = "1.2.840.113549.1.5.13";
const OID_PBKDF2: &str = "1.2.840.113549.1.5.12";
const OID_HMAC_SHA256: &str = "1.2.840.113549.2.9";
const OID_HMAC_SHA1: &str = "1.2.840.113549.2.7";
const OID_AES256_CBC: &str = "2.16.840.1.101.3.4.1.42";
const OID_SHA1: &str = "1.3.14.3.2.26";
const OID_SHA256: &str = "2.16.840.1.101.3.4.2.1";

/// cert-manager's `keystores.pkcs12.profile`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Profile {
    #[default]
    LegacyRc2,
    LegacyDes,
    Modern2023,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Pkcs12Error {
    #[error("PKCS#12: {0}")]
    Malformed(String),
    #[error("PKCS#12: MAC check failed: wrong password or corrupted file")]
    Mac,
    #[error("PKCS#12: cannot decrypt: wrong password or corrupted file")]
    Decrypt,
    #[error("PKCS#12: unsupported algorithm {0}")]
    Unsupported(String),
}

impl From<der::DerError> for Pkcs12Error {
    fn from(e: der::DerError) -> Self {
        Pkcs12Error::Malformed(e.0)
    }
}

/// A key entry: key and chain (leaf first) under one alias.
pub struct KeyEntry<'a> {
    pub alias: &'a str,
    pub pkcs8: &'a [u8],
    pub chain: &'a [Vec<u8>],
}

#[derive(Clone, Copy)]
enum Pbe {
    Sha1TripleDes,
    Sha1Rc2_40,
    Pbes2Aes256,
}

fn bmp_password(password: &str) -> Vec<u8> {
    let mut v: Vec<u8> = password
        .encode_utf16()
        .flat_map(|u| u.to_be_bytes())
        .collect();
    v.extend_from_slice(&[0, 0]);
    v
}

/// RFC 7292 Appendix B.2 key derivation.
fn pkcs12_kdf(
    hash: &'static Hash,
    pw_bmp: &[u8],
    salt: &[u8],
    id: u8,
    iterations: u32,
    n: usize,
) -> Vec<u8> {
    const V: usize = 64;
    let expand = |src: &[u8]| -> Vec<u8> {
        if src.is_empty() {
            return Vec::new();
        }
        let len = V * src.len().div_ceil(V);
        src.iter().copied().cycle().take(len).collect()
    };
    let d = [id; V];
    let mut i_buf = expand(salt);
    i_buf.extend(expand(pw_bmp));
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let mut ctx = digest::Context::new(hash);
        ctx.update(&d);
        ctx.update(&i_buf);
        let mut a = ctx.finish();
        for _ in 1..iterations {
            a = digest::digest(hash, a.as_ref());
        }
        let a = a.as_ref();
        let take = (n - out.len()).min(a.len());
        out.extend_from_slice(&a[..take]);
        if out.len() >= n {
            break;
        }
        let b: Vec<u8> = a.iter().copied().cycle().take(V).collect();
        for block in i_buf.chunks_mut(V) {
            let mut carry: u16 = 1;
            for k in (0..V).rev() {
                let s = u16::from(block[k]) + u16::from(b[k]) + carry;
                block[k] = s as u8;
                carry = s >> 8;
            }
        }
    }
    out
}

fn rc2_cbc(key: &[u8], iv: &[u8], data: &[u8], encrypt: bool) -> Result<Vec<u8>, Pkcs12Error> {
    let cipher = rc2::Rc2::new_with_eff_key_len(key, key.len() * 8);
    let mut prev = [0u8; 8];
    prev.copy_from_slice(iv);
    if encrypt {
        let pad = 8 - data.len() % 8;
        let mut buf = data.to_vec();
        buf.extend(std::iter::repeat_n(pad as u8, pad));
        for chunk in buf.chunks_mut(8) {
            for (c, p) in chunk.iter_mut().zip(prev.iter()) {
                *c ^= p;
            }
            cipher.encrypt_block(GenericArray::from_mut_slice(chunk));
            prev.copy_from_slice(chunk);
        }
        Ok(buf)
    } else {
        if data.is_empty() || !data.len().is_multiple_of(8) {
            return Err(Pkcs12Error::Decrypt);
        }
        let mut buf = data.to_vec();
        for chunk in buf.chunks_mut(8) {
            let mut this = [0u8; 8];
            this.copy_from_slice(chunk);
            cipher.decrypt_block(GenericArray::from_mut_slice(chunk));
            for (c, p) in chunk.iter_mut().zip(prev.iter()) {
                *c ^= p;
            }
            prev = this;
        }
        let pad = *buf.last().unwrap_or(&0) as usize;
        if pad == 0 || pad > 8 || buf[buf.len() - pad..].iter().any(|b| *b as usize != pad) {
            return Err(Pkcs12Error::Decrypt);
        }
        buf.truncate(buf.len() - pad);
        Ok(buf)
    }
}

fn block_encrypt(
    alg: &'static aws_lc_rs::cipher::Algorithm,
    key: &[u8],
    iv: &[u8],
    data: &[u8],
) -> Result<Vec<u8>, Pkcs12Error> {
    let bad = |_| Pkcs12Error::Unsupported("cipher setup".into());
    let k = PaddedBlockEncryptingKey::cbc_pkcs7(UnboundCipherKey::new(alg, key).map_err(bad)?)
        .map_err(bad)?;
    let ctx = if iv.len() == 16 {
        EncryptionContext::Iv128(FixedLength::try_from(iv).map_err(bad)?)
    } else {
        EncryptionContext::Iv64(FixedLength::try_from(iv).map_err(bad)?)
    };
    let mut buf = data.to_vec();
    k.less_safe_encrypt(&mut buf, ctx).map_err(bad)?;
    Ok(buf)
}

fn block_decrypt(
    alg: &'static aws_lc_rs::cipher::Algorithm,
    key: &[u8],
    iv: &[u8],
    data: &[u8],
) -> Result<Vec<u8>, Pkcs12Error> {
    let k = PaddedBlockDecryptingKey::cbc_pkcs7(
        UnboundCipherKey::new(alg, key).map_err(|_| Pkcs12Error::Decrypt)?,
    )
    .map_err(|_| Pkcs12Error::Decrypt)?;
    let ctx = if iv.len() == 16 {
        DecryptionContext::Iv128(FixedLength::try_from(iv).map_err(|_| Pkcs12Error::Decrypt)?)
    } else {
        DecryptionContext::Iv64(FixedLength::try_from(iv).map_err(|_| Pkcs12Error::Decrypt)?)
    };
    let mut buf = data.to_vec();
    let plain = k.decrypt(&mut buf, ctx).map_err(|_| Pkcs12Error::Decrypt)?;
    Ok(plain.to_vec())
}

/// Derives stable bytes for salts and IVs from everything that determines the output.
fn derive_bytes(purpose: &str, password: &str, content: &[u8], n: usize) -> Vec<u8> {
    let mut ctx = digest::Context::new(&SHA256);
    ctx.update(b"certwright pkcs12\0");
    ctx.update(purpose.as_bytes());
    ctx.update(&[0]);
    ctx.update(password.as_bytes());
    ctx.update(&[0]);
    ctx.update(content);
    ctx.finish().as_ref()[..n].to_vec()
}

/// Encrypts with a password-based scheme; returns (AlgorithmIdentifier, ciphertext).
fn pbe_encrypt(
    pbe: Pbe,
    password: &str,
    purpose: &str,
    plain: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), Pkcs12Error> {
    let salt = derive_bytes(purpose, password, plain, 16);
    let iter = der::small_uint(u64::from(ITERATIONS));
    match pbe {
        Pbe::Sha1TripleDes | Pbe::Sha1Rc2_40 => {
            let salt = &salt[..8];
            let pw = bmp_password(password);
            let iv = pkcs12_kdf(&SHA1, &pw, salt, 2, ITERATIONS, 8);
            let (oid, ct) = if matches!(pbe, Pbe::Sha1TripleDes) {
                let key = pkcs12_kdf(&SHA1, &pw, salt, 1, ITERATIONS, 24);
                (
                    OID_PBE_SHA1_3DES,
                    block_encrypt(&DES_EDE3_FOR_LEGACY_USE_ONLY, &key, &iv, plain)?,
                )
            } else {
                let key = pkcs12_kdf(&SHA1, &pw, salt, 1, ITERATIONS, 5);
                (OID_PBE_SHA1_RC2_40, rc2_cbc(&key, &iv, plain, true)?)
            };
            let params = der::seq(&[&der::octets(salt), &iter]);
            Ok((der::algorithm(oid, Some(&params)), ct))
        }
        Pbe::Pbes2Aes256 => {
            let iv = derive_bytes(&format!("{purpose} iv"), password, plain, 16);
            let mut key = [0u8; 32];
            pbkdf2::derive(
                pbkdf2::PBKDF2_HMAC_SHA256,
                NonZeroU32::new(ITERATIONS).unwrap_or(NonZeroU32::MIN),
                &salt,
                password.as_bytes(),
                &mut key,
            );
            let ct = block_encrypt(&AES_256, &key, &iv, plain)?;
            let kdf = der::seq(&[
                &der::oid(OID_PBKDF2),
                &der::seq(&[
                    &der::octets(&salt),
                    &iter,
                    &der::algorithm(OID_HMAC_SHA256, Some(&der::null())),
                ]),
            ]);
            let enc = der::seq(&[&der::oid(OID_AES256_CBC), &der::octets(&iv)]);
            let params = der::seq(&[&kdf, &enc]);
            Ok((der::algorithm(OID_PBES2, Some(&params)), ct))
        }
    }
}

fn pbe_decrypt(alg: Element<'_>, password: &str, ct: &[u8]) -> Result<Vec<u8>, Pkcs12Error> {
    let mut r = alg.expect(der::SEQUENCE, "encryption algorithm")?.reader();
    let oid = r.next("algorithm")?.oid_string()?;
    match oid.as_str() {
        OID_PBE_SHA1_3DES | OID_PBE_SHA1_RC2_40 => {
            let mut p = r.expect(der::SEQUENCE, "PBE parameters")?.reader();
            let salt = p.expect(der::OCTET_STRING, "salt")?.content;
            let iter = p.next("iterations")?.small_uint()? as u32;
            check_iterations(iter)?;
            let pw = bmp_password(password);
            let iv = pkcs12_kdf(&SHA1, &pw, salt, 2, iter, 8);
            if oid == OID_PBE_SHA1_3DES {
                let key = pkcs12_kdf(&SHA1, &pw, salt, 1, iter, 24);
                block_decrypt(&DES_EDE3_FOR_LEGACY_USE_ONLY, &key, &iv, ct)
            } else {
                let key = pkcs12_kdf(&SHA1, &pw, salt, 1, iter, 5);
                rc2_cbc(&key, &iv, ct, false)
            }
        }
        OID_PBES2 => {
            let mut p = r.expect(der::SEQUENCE, "PBES2 parameters")?.reader();
            let mut kdf = p.expect(der::SEQUENCE, "key derivation")?.reader();
            if !kdf.next("kdf")?.is_oid(OID_PBKDF2) {
                return Err(Pkcs12Error::Unsupported(
                    "PBES2 key derivation other than PBKDF2".into(),
                ));
            }
            let mut kp = kdf.expect(der::SEQUENCE, "PBKDF2 parameters")?.reader();
            let salt = kp.expect(der::OCTET_STRING, "salt")?.content;
            let iter = kp.next("iterations")?.small_uint()? as u32;
            check_iterations(iter)?;
            if kp.peek_tag() == Some(der::INTEGER) {
                kp.next("key length")?;
            }
            let prf = match kp.optional(der::SEQUENCE, "prf")? {
                Some(el) => el.reader().next("prf")?.oid_string()?,
                None => OID_HMAC_SHA1.to_string(),
            };
            let prf = match prf.as_str() {
                OID_HMAC_SHA256 => pbkdf2::PBKDF2_HMAC_SHA256,
                OID_HMAC_SHA1 => pbkdf2::PBKDF2_HMAC_SHA1,
                other => return Err(Pkcs12Error::Unsupported(format!("PBKDF2 PRF {other}"))),
            };
            let mut enc = p.expect(der::SEQUENCE, "encryption scheme")?.reader();
            if !enc.next("cipher")?.is_oid(OID_AES256_CBC) {
                return Err(Pkcs12Error::Unsupported(
                    "PBES2 cipher other than AES-256-CBC".into(),
                ));
            }
            let iv = enc.expect(der::OCTET_STRING, "iv")?.content;
            let mut key = [0u8; 32];
            pbkdf2::derive(
                prf,
                NonZeroU32::new(iter).unwrap_or(NonZeroU32::MIN),
                salt,
                password.as_bytes(),
                &mut key,
            );
            block_decrypt(&AES_256, &key, iv, ct)
        }
        other => Err(Pkcs12Error::Unsupported(other.to_string())),
    }
}

fn check_iterations(iter: u32) -> Result<(), Pkcs12Error> {
    if iter == 0 || iter > 10_000_000 {
        return Err(Pkcs12Error::Malformed(format!(
            "unreasonable iteration count {iter}"
        )));
    }
    Ok(())
}

fn attribute(oid: &str, value: Vec<u8>) -> Vec<u8> {
    der::seq(&[&der::oid(oid), &der::set_of(vec![value])])
}

fn safe_bag(bag_oid: &str, value: &[u8], attrs: Vec<Vec<u8>>) -> Vec<u8> {
    if attrs.is_empty() {
        der::seq(&[&der::oid(bag_oid), &der::tlv(der::ctx(0), value)])
    } else {
        der::seq(&[
            &der::oid(bag_oid),
            &der::tlv(der::ctx(0), value),
            &der::set_of(attrs),
        ])
    }
}

fn cert_bag(cert: &[u8], attrs: Vec<Vec<u8>>) -> Vec<u8> {
    let value = der::seq(&[
        &der::oid(OID_X509_CERT),
        &der::tlv(der::ctx(0), &der::octets(cert)),
    ]);
    safe_bag(OID_CERT_BAG, &value, attrs)
}

fn data_content_info(content: &[u8]) -> Vec<u8> {
    der::seq(&[
        &der::oid(OID_DATA),
        &der::tlv(der::ctx(0), &der::octets(content)),
    ])
}

fn encrypted_content_info(alg: &[u8], ct: &[u8]) -> Vec<u8> {
    let eci = der::seq(&[&der::oid(OID_DATA), alg, &der::tlv(der::ctx_prim(0), ct)]);
    let ed = der::seq(&[&der::small_uint(0), &eci]);
    der::seq(&[&der::oid(OID_ENCRYPTED_DATA), &der::tlv(der::ctx(0), &ed)])
}

/// Encodes a store holding an optional key entry and trusted certificates.
pub fn encode(
    key: Option<&KeyEntry<'_>>,
    trusted: &[(String, Vec<u8>)],
    password: &str,
    profile: Profile,
) -> Result<Vec<u8>, Pkcs12Error> {
    let (cert_pbe, key_pbe, mac_hash) = match profile {
        Profile::LegacyRc2 => (Pbe::Sha1Rc2_40, Pbe::Sha1TripleDes, &SHA1),
        Profile::LegacyDes => (Pbe::Sha1TripleDes, Pbe::Sha1TripleDes, &SHA1),
        Profile::Modern2023 => (Pbe::Pbes2Aes256, Pbe::Pbes2Aes256, &SHA256),
    };
    let mut cert_bags = Vec::new();
    let mut key_bags = Vec::new();
    if let Some(k) = key {
        let leaf = k
            .chain
            .first()
            .ok_or_else(|| Pkcs12Error::Malformed("key entry without certificate".into()))?;
        let local_id = digest::digest(&SHA1, leaf).as_ref().to_vec();
        let attrs = || {
            vec![
                attribute(OID_FRIENDLY_NAME, der::bmp(k.alias)),
                attribute(OID_LOCAL_KEY_ID, der::octets(&local_id)),
            ]
        };
        cert_bags.push(cert_bag(leaf, attrs()));
        for c in &k.chain[1..] {
            cert_bags.push(cert_bag(c, vec![]));
        }
        let (alg, ct) = pbe_encrypt(key_pbe, password, "key", k.pkcs8)?;
        let epki = der::seq(&[&alg, &der::octets(&ct)]);
        key_bags.push(safe_bag(OID_SHROUDED_KEY_BAG, &epki, attrs()));
    }
    for (alias, cert) in trusted {
        let usage = der::oid(OID_ANY_EKU);
        cert_bags.push(cert_bag(
            cert,
            vec![
                attribute(OID_FRIENDLY_NAME, der::bmp(alias)),
                attribute(OID_JAVA_TRUSTED_KEY_USAGE, usage),
            ],
        ));
    }
    let mut safes = Vec::new();
    if !cert_bags.is_empty() {
        let contents = der::tlv(der::SEQUENCE, &cert_bags.concat());
        let (alg, ct) = pbe_encrypt(cert_pbe, password, "certs", &contents)?;
        safes.push(encrypted_content_info(&alg, &ct));
    }
    if !key_bags.is_empty() {
        safes.push(data_content_info(&der::tlv(
            der::SEQUENCE,
            &key_bags.concat(),
        )));
    }
    let auth_safe = der::tlv(der::SEQUENCE, &safes.concat());
    let mac_salt = derive_bytes("mac", password, &auth_safe, 16);
    let mac = compute_mac(mac_hash, password, &mac_salt, ITERATIONS, &auth_safe);
    let digest_oid = if mac_hash == &SHA1 {
        OID_SHA1
    } else {
        OID_SHA256
    };
    let mac_data = der::seq(&[
        &der::seq(&[
            &der::algorithm(digest_oid, Some(&der::null())),
            &der::octets(&mac),
        ]),
        &der::octets(&mac_salt),
        &der::small_uint(u64::from(ITERATIONS)),
    ]);
    Ok(der::seq(&[
        &der::small_uint(3),
        &data_content_info(&auth_safe),
        &mac_data,
    ]))
}

fn compute_mac(
    hash: &'static Hash,
    password: &str,
    salt: &[u8],
    iter: u32,
    data: &[u8],
) -> Vec<u8> {
    let pw = bmp_password(password);
    let n = hash.output_len();
    let key = pkcs12_kdf(hash, &pw, salt, 3, iter, n);
    let alg = if hash == &SHA1 {
        hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY
    } else {
        hmac::HMAC_SHA256
    };
    hmac::sign(&hmac::Key::new(alg, &key), data)
        .as_ref()
        .to_vec()
}

/// A decoded key bag.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyBag {
    pub friendly_name: Option<String>,
    /// Unencrypted PKCS#8 DER.
    pub pkcs8: Vec<u8>,
    pub local_key_id: Option<Vec<u8>>,
}

/// A decoded certificate bag.
#[derive(Clone, PartialEq, Eq)]
pub struct CertBag {
    pub friendly_name: Option<String>,
    pub der: Vec<u8>,
    pub local_key_id: Option<Vec<u8>>,
    /// Carries Java's trusted-key-usage attribute.
    pub trusted: bool,
}

/// What a decoded store holds.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Contents {
    pub keys: Vec<KeyBag>,
    pub certs: Vec<CertBag>,
}

impl std::fmt::Debug for Contents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Contents({} keys redacted, {} certs)",
            self.keys.len(),
            self.certs.len()
        )
    }
}

/// Decodes a store: checks the MAC, decrypts every bag.
pub fn decode(data: &[u8], password: &str) -> Result<Contents, Pkcs12Error> {
    let pfx = der::parse_one(data, "PFX")?.expect(der::SEQUENCE, "PFX")?;
    let mut r = pfx.reader();
    let version = r.next("version")?.small_uint()?;
    if version != 3 {
        return Err(Pkcs12Error::Malformed(format!(
            "unsupported version {version}"
        )));
    }
    let auth_safe = data_content(r.expect(der::SEQUENCE, "authSafe")?)?;
    if let Some(mac) = r.optional(der::SEQUENCE, "macData")? {
        let mut m = mac.reader();
        let mut di = m.expect(der::SEQUENCE, "DigestInfo")?.reader();
        let alg = di
            .expect(der::SEQUENCE, "digest algorithm")?
            .reader()
            .next("oid")?
            .oid_string()?;
        let expected = di.expect(der::OCTET_STRING, "digest")?.content;
        let salt = m.expect(der::OCTET_STRING, "macSalt")?.content;
        let iter = match m.optional(der::INTEGER, "iterations")? {
            Some(i) => i.small_uint()? as u32,
            None => 1,
        };
        check_iterations(iter)?;
        let hash = match alg.as_str() {
            OID_SHA1 => &SHA1,
            OID_SHA256 => &SHA256,
            other => return Err(Pkcs12Error::Unsupported(format!("MAC digest {other}"))),
        };
        if compute_mac(hash, password, salt, iter, auth_safe) != expected {
            return Err(Pkcs12Error::Mac);
        }
    }
    let mut out = Contents::default();
    let mut safes = der::parse_one(auth_safe, "AuthenticatedSafe")?
        .expect(der::SEQUENCE, "AuthenticatedSafe")?
        .reader();
    while !safes.is_empty() {
        let ci = safes.expect(der::SEQUENCE, "ContentInfo")?;
        let mut cr = ci.reader();
        let ty = cr.next("content type")?;
        let contents: Vec<u8> = if ty.is_oid(OID_DATA) {
            data_content(ci)?.to_vec()
        } else if ty.is_oid(OID_ENCRYPTED_DATA) {
            let wrapped = cr.expect(der::ctx(0), "content")?;
            let mut ed = wrapped
                .reader()
                .expect(der::SEQUENCE, "EncryptedData")?
                .reader();
            ed.next("version")?;
            let mut eci = ed.expect(der::SEQUENCE, "EncryptedContentInfo")?.reader();
            eci.next("content type")?;
            let alg = eci.next("algorithm")?;
            let ct = eci.expect(der::ctx_prim(0), "encrypted content")?.content;
            pbe_decrypt(alg, password, ct)?
        } else {
            return Err(Pkcs12Error::Unsupported(format!(
                "content type {}",
                ty.oid_string()?
            )));
        };
        read_bags(&contents, password, &mut out)?;
    }
    Ok(out)
}

fn data_content<'a>(ci: Element<'a>) -> Result<&'a [u8], Pkcs12Error> {
    let mut r = ci.reader();
    if !r.next("content type")?.is_oid(OID_DATA) {
        return Err(Pkcs12Error::Malformed("expected a data ContentInfo".into()));
    }
    let wrapped = r.expect(der::ctx(0), "content")?;
    Ok(wrapped.reader().expect(der::OCTET_STRING, "data")?.content)
}

fn read_bags(contents: &[u8], password: &str, out: &mut Contents) -> Result<(), Pkcs12Error> {
    let mut bags = der::parse_one(contents, "SafeContents")?
        .expect(der::SEQUENCE, "SafeContents")?
        .reader();
    while !bags.is_empty() {
        let mut b = bags.expect(der::SEQUENCE, "SafeBag")?.reader();
        let id = b.next("bag id")?;
        let value = b
            .expect(der::ctx(0), "bag value")?
            .reader()
            .next("bag value")?;
        let (mut name, mut local_id, mut trusted) = (None, None, false);
        if let Some(attrs) = b.optional(der::SET, "attributes")? {
            let mut ar = attrs.reader();
            while !ar.is_empty() {
                let mut a = ar.expect(der::SEQUENCE, "attribute")?.reader();
                let ty = a.next("attribute type")?;
                let mut vals: Reader<'_> = a.expect(der::SET, "attribute values")?.reader();
                let v = vals.next("attribute value")?;
                if ty.is_oid(OID_FRIENDLY_NAME) {
                    let units: Vec<u16> = v
                        .content
                        .chunks(2)
                        .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))
                        .collect();
                    name = Some(String::from_utf16_lossy(&units));
                } else if ty.is_oid(OID_LOCAL_KEY_ID) {
                    local_id = Some(v.content.to_vec());
                } else if ty.is_oid(OID_JAVA_TRUSTED_KEY_USAGE) {
                    trusted = true;
                }
            }
        }
        if id.is_oid(OID_CERT_BAG) {
            let mut cb = value.reader();
            cb.next("cert type")?;
            let cert = cb
                .expect(der::ctx(0), "cert value")?
                .reader()
                .expect(der::OCTET_STRING, "cert")?
                .content;
            out.certs.push(CertBag {
                friendly_name: name,
                der: cert.to_vec(),
                local_key_id: local_id,
                trusted,
            });
        } else if id.is_oid(OID_SHROUDED_KEY_BAG) {
            let mut e = value.reader();
            let alg = e.next("algorithm")?;
            let ct = e.expect(der::OCTET_STRING, "encrypted key")?.content;
            out.keys.push(KeyBag {
                friendly_name: name,
                pkcs8: pbe_decrypt(alg, password, ct)?,
                local_key_id: local_id,
            });
        } else if id.is_oid(OID_KEY_BAG) {
            out.keys.push(KeyBag {
                friendly_name: name,
                pkcs8: value.raw.to_vec(),
                local_key_id: local_id,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kdf_matches_rfc7292_vector() {
        // Test vector widely used for the PKCS#12 KDF (password "smeg", SHA-1).
        let salt = [0x0A, 0x58, 0xCF, 0x64, 0x53, 0x0D, 0x82, 0x3F];
        let key = pkcs12_kdf(&SHA1, &bmp_password("smeg"), &salt, 1, 1, 24);
        assert_eq!(
            key,
            vec![
                0x8A, 0xAA, 0xE6, 0x29, 0x7B, 0x6C, 0xB0, 0x46, 0x42, 0xAB, 0x5B, 0x07, 0x78, 0x51,
                0x28, 0x4E, 0xB7, 0x12, 0x8F, 0x1A, 0x2A, 0x7F, 0xBC, 0xA3
            ]
        );
    }

    #[test]
    fn every_profile_round_trips_with_stable_bytes() {
        let chain = vec![vec![0x30, 0x00], vec![0x30, 0x01, 0x00]];
        let key = [0x30, 0x03, 0x02, 0x01, 0x00];
        for profile in [Profile::LegacyRc2, Profile::LegacyDes, Profile::Modern2023] {
            let entry = KeyEntry {
                alias: "alias",
                pkcs8: &key,
                chain: &chain,
            };
            let trusted = vec![("ca".to_string(), vec![0x30, 0x02, 0x05, 0x00])];
            let a = encode(Some(&entry), &trusted, "changeme", profile).expect("encodes");
            let b = encode(Some(&entry), &trusted, "changeme", profile).expect("encodes");
            assert_eq!(a, b, "{profile:?}");
            let c = decode(&a, "changeme").expect("decodes");
            assert_eq!(c.keys.len(), 1);
            assert_eq!(c.keys[0].pkcs8, key.to_vec());
            assert_eq!(c.keys[0].friendly_name.as_deref(), Some("alias"));
            assert_eq!(c.certs.len(), 3);
            assert!(c.certs[2].trusted, "trusted attribute on {profile:?}");
            assert_eq!(decode(&a, "nope"), Err(Pkcs12Error::Mac));
        }
        assert!(decode(b"garbage", "x").is_err());
    }
}
