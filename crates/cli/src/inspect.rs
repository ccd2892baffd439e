//! `certwright inspect`: what a certificate, key, keystore or secret directory holds.
//! Never prints key material.

use crate::text::{annotation_value, clean};
use anyhow::{bail, Context, Result};
use certwright_api::annotations::{self as ann, keys};
use certwright_engine::{SecretData, TlsMaterial};
use certwright_pki::der::rfc3339;
use certwright_pki::inspect::{self, CertInfo};
use certwright_pki::{jks, pem, pkcs12, PrivateKey};
use std::path::Path;
use std::process::ExitCode;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

fn print_cert(c: &CertInfo, indent: &str) {
    let t = now();
    let validity = if t < c.not_before {
        "not yet valid"
    } else if t > c.not_after {
        "EXPIRED"
    } else {
        "valid"
    };
    println!("{indent}Subject:      {}", clean(&c.subject));
    println!("{indent}Issuer:       {}", clean(&c.issuer));
    println!("{indent}Serial:       {}", c.serial_colon());
    println!("{indent}Not before:   {}", rfc3339(c.not_before));
    println!(
        "{indent}Not after:    {} ({validity})",
        rfc3339(c.not_after)
    );
    let mut sans: Vec<String> = c.dns_names.iter().map(|d| format!("DNS:{d}")).collect();
    sans.extend(c.ip_addresses.iter().map(|i| format!("IP:{i}")));
    sans.extend(c.uris.iter().map(|u| format!("URI:{u}")));
    sans.extend(c.email_addresses.iter().map(|e| format!("email:{e}")));
    if !sans.is_empty() {
        println!("{indent}SANs:         {}", clean(&sans.join(", ")));
    }
    println!(
        "{indent}Key:          {}",
        c.key_algorithm
            .map(|k| k.to_string())
            .unwrap_or_else(|| "unknown".into())
    );
    println!(
        "{indent}CA:           {}",
        if c.is_ca { "yes" } else { "no" }
    );
    if !c.key_usages.is_empty() {
        println!("{indent}Key usage:    {}", c.key_usages.join(", "));
    }
    if !c.ext_key_usages.is_empty() {
        println!("{indent}Ext. usage:   {}", c.ext_key_usages.join(", "));
    }
    println!("{indent}SHA-256:      {}", c.sha256_fingerprint());
    println!("{indent}SHA-1:        {}", c.sha1_fingerprint());
}

fn print_chain(label: &str, bytes: &[u8]) -> Option<Vec<CertInfo>> {
    match inspect::parse_pem_chain(bytes) {
        Ok(chain) => {
            for (i, c) in chain.iter().enumerate() {
                println!("{label} [{i}]");
                print_cert(c, "  ");
            }
            Some(chain)
        }
        Err(e) => {
            println!("{label}: INVALID: {e}");
            None
        }
    }
}

fn print_keystore(name: &str, bytes: &[u8], password: &str) {
    if name.ends_with(".jks") {
        match jks::decode(bytes, password) {
            Ok(entries) => {
                println!(
                    "{name}: JKS, {} entr{}",
                    entries.len(),
                    if entries.len() == 1 { "y" } else { "ies" }
                );
                for e in entries {
                    match e {
                        jks::Entry::PrivateKey { alias, chain, .. } => {
                            println!(
                                "  {}: PrivateKeyEntry, chain of {}",
                                clean(&alias),
                                chain.len()
                            );
                            for c in chain.iter().filter_map(|d| CertInfo::parse(d).ok()) {
                                println!("    {}", clean(&c.subject));
                            }
                        }
                        jks::Entry::TrustedCert { alias, cert } => {
                            let s = CertInfo::parse(&cert)
                                .map(|c| c.subject)
                                .unwrap_or_else(|e| e.to_string());
                            println!("  {}: TrustedCertEntry {}", clean(&alias), clean(&s));
                        }
                    }
                }
            }
            Err(e) => println!("{name}: cannot open: {e}"),
        }
    } else {
        match pkcs12::decode(bytes, password) {
            Ok(c) => {
                println!(
                    "{name}: PKCS#12, {} key(s), {} certificate(s)",
                    c.keys.len(),
                    c.certs.len()
                );
                for k in &c.keys {
                    let n = &k.friendly_name;
                    let alg = PrivateKey::from_pkcs8_der(&k.pkcs8)
                        .map(|k| k.algorithm().to_string())
                        .unwrap_or_else(|e| e.to_string());
                    println!(
                        "  key {}: {alg}",
                        clean(n.as_deref().unwrap_or("(no name)"))
                    );
                }
                for cb in &c.certs {
                    let (n, trusted) = (&cb.friendly_name, &cb.trusted);
                    let s = CertInfo::parse(&cb.der)
                        .map(|c| c.subject)
                        .unwrap_or_else(|e| e.to_string());
                    let t = if *trusted { " (trusted)" } else { "" };
                    println!(
                        "  certificate {}: {s}{t}",
                        n.as_deref().unwrap_or("(no name)")
                    );
                }
            }
            Err(e) => println!("{name}: cannot open: {e}"),
        }
    }
}

fn inspect_secret(dir: &Path, s: &SecretData, password: Option<&str>) -> Result<ExitCode> {
    println!("Secret directory {}", dir.display());
    if let Some(t) = &s.type_ {
        println!("Type: {}", clean(t));
    }
    for (k, v) in &s.annotations {
        println!("Annotation: {}={}", clean(k), annotation_value(k, v));
    }
    println!(
        "Keys: {}",
        clean(&s.data.keys().cloned().collect::<Vec<_>>().join(", "))
    );
    let chain = s.get(keys::TLS_CRT).and_then(|b| print_chain("tls.crt", b));
    let ca = s.get(keys::CA_CRT).and_then(|b| print_chain("ca.crt", b));
    let m = TlsMaterial::read(s);
    let mut ok = true;
    match &m.key {
        Some(Ok(k)) => println!("tls.key: {} private key", k.algorithm()),
        Some(Err(e)) => {
            println!("tls.key: INVALID: {e}");
            ok = false;
        }
        None => println!("tls.key: absent"),
    }
    if let (Some(Ok(k)), Some(chain)) = (&m.key, &chain) {
        let matches = chain.first().is_some_and(|c| c.spki_der == k.spki_der());
        println!(
            "Key matches certificate: {}",
            if matches { "yes" } else { "NO" }
        );
        ok &= matches;
    }
    if let Some(chain) = &chain {
        match &ca {
            Some(roots) => match inspect::verify_chain(chain, roots, now()) {
                Ok(()) => println!("Chain verifies against ca.crt: yes"),
                Err(e) => {
                    println!("Chain verifies against ca.crt: NO: {e}");
                    ok = false;
                }
            },
            None => println!("Chain verifies against ca.crt: no ca.crt"),
        }
    }
    let pw = password
        .map(str::to_string)
        .or_else(|| s.annotations.get(ann::CU_JAVA_KEYSTORE_PASSWORD).cloned())
        .unwrap_or_else(|| ann::CU_DEFAULT_PASSWORD.to_string());
    for k in [
        keys::KEYSTORE_JKS,
        keys::TRUSTSTORE_JKS,
        keys::KEYSTORE_P12,
        keys::TRUSTSTORE_P12,
    ] {
        if let Some(b) = s.get(k) {
            print_keystore(k, b, &pw);
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub fn run(path: &Path, password: Option<&str>) -> Result<ExitCode> {
    if path.is_dir() {
        let s = certwright_local::store::SecretStore::read_path(path)?
            .with_context(|| format!("{} is not a secret directory", path.display()))?;
        return inspect_secret(path, &s, password);
    }
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if name.ends_with(".jks") || name.ends_with(".p12") || name.ends_with(".pfx") {
        print_keystore(&name, &bytes, password.unwrap_or(ann::CU_DEFAULT_PASSWORD));
        return Ok(ExitCode::SUCCESS);
    }
    let blocks =
        pem::decode_all(&bytes).with_context(|| format!("{} is not PEM", path.display()))?;
    let mut any = false;
    for (i, b) in blocks.iter().enumerate() {
        match b.label.as_str() {
            "CERTIFICATE" => {
                println!("Certificate [{i}]");
                match CertInfo::parse(&b.der) {
                    Ok(c) => print_cert(&c, "  "),
                    Err(e) => println!("  INVALID: {e}"),
                }
                any = true;
            }
            "PRIVATE KEY" | "RSA PRIVATE KEY" | "EC PRIVATE KEY" => {
                let one = pem::encode(&b.label, &b.der);
                match PrivateKey::from_pem(one.as_bytes()) {
                    Ok(k) => println!("Private key [{i}]: {} ({})", k.algorithm(), b.label),
                    Err(e) => println!("Private key [{i}]: INVALID: {e}"),
                }
                any = true;
            }
            "CERTIFICATE REQUEST" => {
                match certwright_pki::cert::parse_csr(&b.der) {
                    Ok(c) => println!(
                        "Certificate request [{i}]: key {}, {} extension(s), signature verifies",
                        certwright_pki::key::spki_algorithm(&c.spki_der)
                            .map(|a| a.to_string())
                            .unwrap_or_default(),
                        c.extensions.len()
                    ),
                    Err(e) => println!("Certificate request [{i}]: INVALID: {e}"),
                }
                any = true;
            }
            other => println!("[{i}] {other}: not inspected"),
        }
    }
    if !any {
        bail!("{} holds no certificate, key or request", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
