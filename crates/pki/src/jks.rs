//! Java KeyStore (JKS) files, the format `keytool` and `java.security.KeyStore("JKS")`
//! read.
//!
//! Layout: magic `FEEDFEED`, version 2, entry count, entries, then a SHA-1 integrity
//! digest over the password (UTF-16BE), the ASCII string "Mighty Aphrodite" and every
//! preceding byte. Private keys are wrapped by Sun's key protector (OID
//! 1.3.6.1.4.1.42.2.17.1.1): salt(20) ‖ plaintext XOR SHA-1 keystream ‖ SHA-1 check.
//!
//! Guarantee: output bytes depend only on the inputs (salts are derived from them), so an
//! unchanged certificate gives an identical file.

use crate::der;
use aws_lc_rs::digest::{self, SHA1_FOR_LEGACY_USE_ONLY as SHA1};

const MAGIC: u32 = 0xFEED_FEED;
const VERSION: u32 = 2;
const TAG_KEY: u32 = 1;
const TAG_CERT: u32 = 2;
const KEY_PROTECTOR_OID: &str = "1.3.6.1.4.1.42.2.17.1.1";

/// An entry to write or one that was read.
#[derive(Clone, PartialEq, Eq)]
pub enum Entry {
    PrivateKey {
        alias: String,
        /// Unencrypted PKCS#8 DER.
        pkcs8: Vec<u8>,
        /// DER certificates, leaf first.
        chain: Vec<Vec<u8>>,
    },
    TrustedCert {
        alias: String,
        cert: Vec<u8>,
    },
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Entry::PrivateKey { alias, chain, .. } => {
                write!(
                    f,
                    "PrivateKey({alias:?}, chain of {}, key redacted)",
                    chain.len()
                )
            }
            Entry::TrustedCert { alias, .. } => write!(f, "TrustedCert({alias:?})"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JksError {
    #[error("keystore is truncated or malformed: {0}")]
    Malformed(String),
    #[error("not a JKS keystore (bad magic)")]
    BadMagic,
    #[error("keystore integrity check failed: wrong password or corrupted file")]
    Integrity,
    #[error("key entry {0:?} cannot be recovered: wrong password or corrupted entry")]
    KeyCheck(String),
}

fn password_bytes(password: &str) -> Vec<u8> {
    password
        .encode_utf16()
        .flat_map(|u| u.to_be_bytes())
        .collect()
}

/// Java's modified UTF-8 (DataOutput.writeUTF), length-prefixed.
fn write_utf(out: &mut Vec<u8>, s: &str) {
    let mut b = Vec::new();
    for u in s.encode_utf16() {
        match u {
            0x0001..=0x007f => b.push(u as u8),
            0x0000 | 0x0080..=0x07ff => {
                b.push(0xc0 | ((u >> 6) & 0x1f) as u8);
                b.push(0x80 | (u & 0x3f) as u8);
            }
            _ => {
                b.push(0xe0 | ((u >> 12) & 0x0f) as u8);
                b.push(0x80 | ((u >> 6) & 0x3f) as u8);
                b.push(0x80 | (u & 0x3f) as u8);
            }
        }
    }
    out.extend_from_slice(&(b.len() as u16).to_be_bytes());
    out.extend_from_slice(&b);
}

fn keystream_xor(pw: &[u8], salt: &[u8], data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut prev = salt.to_vec();
    while out.len() < data.len() {
        let mut ctx = digest::Context::new(&SHA1);
        ctx.update(pw);
        ctx.update(&prev);
        prev = ctx.finish().as_ref().to_vec();
        for b in &prev {
            let i = out.len();
            if i == data.len() {
                break;
            }
            out.push(data[i] ^ b);
        }
    }
    out
}

fn protect_key(pw: &[u8], pkcs8: &[u8], salt: &[u8; 20]) -> Vec<u8> {
    let mut protected = salt.to_vec();
    protected.extend(keystream_xor(pw, salt, pkcs8));
    let mut ctx = digest::Context::new(&SHA1);
    ctx.update(pw);
    ctx.update(pkcs8);
    protected.extend_from_slice(ctx.finish().as_ref());
    der::seq(&[
        &der::algorithm(KEY_PROTECTOR_OID, Some(&der::null())),
        &der::octets(&protected),
    ])
}

fn derived_salt(pkcs8: &[u8], chain: &[Vec<u8>]) -> [u8; 20] {
    let mut ctx = digest::Context::new(&SHA1);
    ctx.update(b"certwright jks key salt\0");
    ctx.update(pkcs8);
    for c in chain {
        ctx.update(c);
    }
    let mut s = [0u8; 20];
    s.copy_from_slice(ctx.finish().as_ref());
    s
}

/// Encodes a keystore. `timestamp_ms` is the creation date written for every entry
/// (pass something stable, such as the certificate's notBefore, for stable bytes).
pub fn encode(entries: &[Entry], password: &str, timestamp_ms: i64) -> Vec<u8> {
    let pw = password_bytes(password);
    let mut out = Vec::new();
    out.extend_from_slice(&MAGIC.to_be_bytes());
    out.extend_from_slice(&VERSION.to_be_bytes());
    out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    for e in entries {
        match e {
            Entry::PrivateKey {
                alias,
                pkcs8,
                chain,
            } => {
                out.extend_from_slice(&TAG_KEY.to_be_bytes());
                write_utf(&mut out, &alias.to_lowercase());
                out.extend_from_slice(&timestamp_ms.to_be_bytes());
                let protected = protect_key(&pw, pkcs8, &derived_salt(pkcs8, chain));
                out.extend_from_slice(&(protected.len() as u32).to_be_bytes());
                out.extend_from_slice(&protected);
                out.extend_from_slice(&(chain.len() as u32).to_be_bytes());
                for c in chain {
                    write_utf(&mut out, "X.509");
                    out.extend_from_slice(&(c.len() as u32).to_be_bytes());
                    out.extend_from_slice(c);
                }
            }
            Entry::TrustedCert { alias, cert } => {
                out.extend_from_slice(&TAG_CERT.to_be_bytes());
                write_utf(&mut out, &alias.to_lowercase());
                out.extend_from_slice(&timestamp_ms.to_be_bytes());
                write_utf(&mut out, "X.509");
                out.extend_from_slice(&(cert.len() as u32).to_be_bytes());
                out.extend_from_slice(cert);
            }
        }
    }
    let mut ctx = digest::Context::new(&SHA1);
    ctx.update(&pw);
    ctx.update(b"Mighty Aphrodite");
    ctx.update(&out);
    out.extend_from_slice(ctx.finish().as_ref());
    out
}

struct Cursor<'a> {
    d: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], JksError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.d.len())
            .ok_or_else(|| JksError::Malformed(format!("truncated {what}")))?;
        let s = &self.d[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u32(&mut self, what: &str) -> Result<u32, JksError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn utf(&mut self, what: &str) -> Result<String, JksError> {
        let l = self.take(2, what)?;
        let n = u16::from_be_bytes([l[0], l[1]]) as usize;
        let b = self.take(n, what)?;
        // Modified UTF-8 equals UTF-8 for the aliases keystores use; anything else is lossy.
        Ok(String::from_utf8_lossy(b).into_owned())
    }
}

/// Decodes a keystore, checking its integrity digest and every key's check value.
pub fn decode(data: &[u8], password: &str) -> Result<Vec<Entry>, JksError> {
    let pw = password_bytes(password);
    if data.len() < 32 {
        return Err(JksError::Malformed("file too short".into()));
    }
    let (body, digest_bytes) = data.split_at(data.len() - 20);
    let mut c = Cursor { d: body, pos: 0 };
    if c.u32("magic")? != MAGIC {
        return Err(JksError::BadMagic);
    }
    let version = c.u32("version")?;
    if version != 1 && version != 2 {
        return Err(JksError::Malformed(format!(
            "unsupported version {version}"
        )));
    }
    let mut ctx = digest::Context::new(&SHA1);
    ctx.update(&pw);
    ctx.update(b"Mighty Aphrodite");
    ctx.update(body);
    if ctx.finish().as_ref() != digest_bytes {
        return Err(JksError::Integrity);
    }
    let count = c.u32("entry count")?;
    let mut entries = Vec::new();
    for _ in 0..count {
        let tag = c.u32("entry tag")?;
        let alias = c.utf("alias")?;
        c.take(8, "timestamp")?;
        match tag {
            TAG_KEY => {
                let n = c.u32("key length")? as usize;
                let protected = c.take(n, "key")?;
                let pkcs8 = unprotect_key(&pw, protected)
                    .ok_or_else(|| JksError::KeyCheck(alias.clone()))?;
                let chain_len = c.u32("chain length")?;
                let mut chain = Vec::new();
                for _ in 0..chain_len {
                    if version == 2 {
                        c.utf("certificate type")?;
                    }
                    let n = c.u32("certificate length")? as usize;
                    chain.push(c.take(n, "certificate")?.to_vec());
                }
                entries.push(Entry::PrivateKey {
                    alias,
                    pkcs8,
                    chain,
                });
            }
            TAG_CERT => {
                if version == 2 {
                    c.utf("certificate type")?;
                }
                let n = c.u32("certificate length")? as usize;
                entries.push(Entry::TrustedCert {
                    alias,
                    cert: c.take(n, "certificate")?.to_vec(),
                });
            }
            other => return Err(JksError::Malformed(format!("unknown entry tag {other}"))),
        }
    }
    Ok(entries)
}

fn unprotect_key(pw: &[u8], epki: &[u8]) -> Option<Vec<u8>> {
    let top = der::parse_one(epki, "EncryptedPrivateKeyInfo").ok()?;
    let mut r = top.reader();
    let mut alg = r.expect(der::SEQUENCE, "algorithm").ok()?.reader();
    if !alg.next("oid").ok()?.is_oid(KEY_PROTECTOR_OID) {
        return None;
    }
    let protected = r.expect(der::OCTET_STRING, "key").ok()?.content;
    if protected.len() < 40 {
        return None;
    }
    let (salt, rest) = protected.split_at(20);
    let (enc, check) = rest.split_at(rest.len() - 20);
    let plain = keystream_xor(pw, salt, enc);
    let mut ctx = digest::Context::new(&SHA1);
    ctx.update(pw);
    ctx.update(&plain);
    (ctx.finish().as_ref() == check).then_some(plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_stable_bytes() {
        let entries = vec![
            Entry::PrivateKey {
                alias: "Alias".into(),
                pkcs8: vec![0x30, 0x03, 2, 1, 0],
                chain: vec![vec![1, 2, 3], vec![4, 5]],
            },
            Entry::TrustedCert {
                alias: "alias0".into(),
                cert: vec![9, 9],
            },
        ];
        let a = encode(&entries, "changeme", 1_000);
        let b = encode(&entries, "changeme", 1_000);
        assert_eq!(a, b);
        let back = decode(&a, "changeme").expect("decodes");
        assert_eq!(back.len(), 2);
        match &back[0] {
            Entry::PrivateKey {
                alias,
                pkcs8,
                chain,
            } => {
                assert_eq!(alias, "alias");
                assert_eq!(pkcs8, &vec![0x30, 0x03, 2, 1, 0]);
                assert_eq!(chain.len(), 2);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(decode(&a, "wrong"), Err(JksError::Integrity));
        assert_eq!(
            decode(&a[..10], "changeme")
                .err()
                .map(|e| matches!(e, JksError::Malformed(_))),
            Some(true)
        );
        let mut bad = a.clone();
        bad[0] = 0;
        assert_eq!(decode(&bad, "changeme"), Err(JksError::BadMagic));
    }
}
