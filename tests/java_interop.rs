//! Keystores read by real peers: Java 17's keytool and JSSE (a TLS handshake serving the
//! keystore and trusting the truststore), and OpenSSL's pkcs12.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;

fn manifests(dir: &Path) {
    let mut m = String::from(
        "apiVersion: cert-manager.io/v1\nkind: Issuer\nmetadata: {name: self, namespace: demo}\nspec: {selfSigned: {}}\n---\n\
         apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {name: ca, namespace: demo}\nspec:\n  secretName: ca\n  issuerRef: {name: self}\n  commonName: interop-ca\n  isCA: true\n  privateKey: {algorithm: ECDSA, size: 384}\n---\n\
         apiVersion: cert-manager.io/v1\nkind: Issuer\nmetadata: {name: ca, namespace: demo}\nspec: {ca: {secretName: ca}}\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata: {name: store-password, namespace: demo}\nstringData: {password: s3cret-Pass}\n",
    );
    let keys = [
        ("rsa", "RSA", 2048),
        ("p256", "ECDSA", 256),
        ("p384", "ECDSA", 384),
        ("ed25519", "Ed25519", 0),
    ];
    for (name, alg, size) in keys {
        let size = if size > 0 {
            format!(", size: {size}")
        } else {
            String::new()
        };
        m.push_str(&format!(
            "---\napiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {{name: {name}, namespace: demo}}\nspec:\n  secretName: {name}\n  issuerRef: {{name: ca}}\n  dnsNames: [{name}.demo.svc]\n  privateKey: {{algorithm: {alg}{size}}}\n  secretTemplate:\n    annotations: {{cert-utils-operator.redhat-cop.io/generate-java-keystores: \"true\"}}\n"
        ));
    }
    for (name, profile) in [
        ("legacyrc2", "LegacyRC2"),
        ("legacydes", "LegacyDES"),
        ("modern", "Modern2023"),
    ] {
        m.push_str(&format!(
            "---\napiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {{name: {name}, namespace: demo}}\nspec:\n  secretName: {name}\n  issuerRef: {{name: ca}}\n  dnsNames: [{name}.demo.svc]\n  keystores:\n    jks: {{create: true, passwordSecretRef: {{name: store-password, key: password}}}}\n    pkcs12: {{create: true, profile: {profile}, passwordSecretRef: {{name: store-password, key: password}}}}\n"
        ));
    }
    write(dir, "interop.yaml", &m);
}

fn issue() -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().expect("tmp");
    let m = tmp.path().join("m");
    std::fs::create_dir(&m).expect("dir");
    manifests(&m);
    let state = tmp.path().join("state");
    let out = once(&[&m], &state);
    assert!(out.status.success(), "{}", text(&out));
    (tmp, state)
}

fn handshake(dir: &Path, ks: &str, ts: &str, ty: &str, password: &str) {
    let prog = repo().join("tests/java/TlsHandshake.java");
    let out = Command::new("java")
        .arg(&prog)
        .arg(dir.join(ks))
        .arg(ty)
        .arg(password)
        .arg(dir.join(ts))
        .arg(ty)
        .arg(password)
        .output()
        .expect("java runs");
    assert!(
        out.status.success(),
        "JSSE handshake with {}/{ks}: {}",
        dir.display(),
        text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("OK "),
        "{}",
        text(&out)
    );
}

fn keytool_list(path: &Path, password: &str) -> String {
    let out = Command::new("keytool")
        .args(["-list", "-v", "-keystore"])
        .arg(path)
        .args(["-storepass", password])
        .output()
        .expect("keytool runs");
    assert!(
        out.status.success(),
        "keytool -list {}: {}",
        path.display(),
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn jks_from_cert_utils_annotation_serves_tls_in_java_for_every_key_type() {
    if !require("java") || !require("keytool") {
        return;
    }
    let (_tmp, state) = issue();
    for name in ["rsa", "p256", "p384", "ed25519"] {
        let dir = secret_dir(&state, "demo", name);
        let list = keytool_list(&dir.join("keystore.jks"), "changeme");
        assert!(list.contains("Alias name: alias"), "{list}");
        assert!(list.contains("Entry type: PrivateKeyEntry"), "{list}");
        assert!(
            list.contains("Certificate chain length: 2"),
            "full chain: {list}"
        );
        let trust = keytool_list(&dir.join("truststore.jks"), "changeme");
        assert!(
            trust.contains("Alias name: alias0") && trust.contains("trustedCertEntry"),
            "{trust}"
        );
        handshake(&dir, "keystore.jks", "truststore.jks", "JKS", "changeme");
    }
}

#[test]
fn cert_manager_keystores_of_every_pkcs12_profile_serve_tls_in_java_and_open_in_openssl() {
    if !require("java") || !require("keytool") || !require("openssl") {
        return;
    }
    let (_tmp, state) = issue();
    let pw = "s3cret-Pass";
    for name in ["legacyrc2", "legacydes", "modern"] {
        let dir = secret_dir(&state, "demo", name);
        let list = keytool_list(&dir.join("keystore.jks"), pw);
        assert!(
            list.contains("Alias name: certificate")
                && list.contains("Certificate chain length: 2"),
            "{list}"
        );
        let p12 = keytool_list(&dir.join("keystore.p12"), pw);
        assert!(
            p12.contains("Entry type: PrivateKeyEntry")
                && p12.contains("Certificate chain length: 2"),
            "{name}: {p12}"
        );
        let t12 = keytool_list(&dir.join("truststore.p12"), pw);
        assert!(
            t12.contains("trustedCertEntry"),
            "{name}: Java sees the trusted CA: {t12}"
        );
        handshake(&dir, "keystore.jks", "truststore.jks", "JKS", pw);
        handshake(&dir, "keystore.p12", "truststore.p12", "PKCS12", pw);
        for file in ["keystore.p12", "truststore.p12"] {
            let mut cmd = Command::new("openssl");
            cmd.args(["pkcs12", "-in"]).arg(dir.join(file)).args([
                "-passin",
                &format!("pass:{pw}"),
                "-nodes",
            ]);
            if name == "legacyrc2" {
                // RC2-40 lives in OpenSSL 3's legacy provider.
                cmd.arg("-legacy");
            }
            let out = cmd.output().expect("openssl runs");
            assert!(
                out.status.success(),
                "openssl pkcs12 {name}/{file}: {}",
                text(&out)
            );
            let s = String::from_utf8_lossy(&out.stdout);
            let certs = s.matches("BEGIN CERTIFICATE").count();
            if file == "keystore.p12" {
                assert!(s.contains("BEGIN PRIVATE KEY"), "{name}: {s}");
                assert_eq!(certs, 2, "{name}: leaf and CA");
            } else {
                assert_eq!(certs, 1, "{name}: CA");
            }
        }
        // A wrong password is refused, not misread.
        let out = Command::new("openssl")
            .args(["pkcs12", "-in"])
            .arg(dir.join("keystore.p12"))
            .args(["-passin", "pass:wrong", "-nodes", "-legacy"])
            .output()
            .expect("openssl runs");
        assert!(!out.status.success(), "{name}: wrong password accepted");
    }
}

#[test]
fn openssl_verifies_chains_and_reads_keys() {
    if !require("openssl") {
        return;
    }
    let (_tmp, state) = issue();
    for name in ["rsa", "p256", "p384", "ed25519", "modern"] {
        let dir = secret_dir(&state, "demo", name);
        let out = Command::new("openssl")
            .args(["verify", "-CAfile"])
            .arg(dir.join("ca.crt"))
            .arg(dir.join("tls.crt"))
            .output()
            .expect("openssl");
        assert!(out.status.success(), "{name}: {}", text(&out));
        let key = Command::new("openssl")
            .args(["pkey", "-in"])
            .arg(dir.join("tls.key"))
            .args(["-pubout"])
            .output()
            .expect("pkey");
        let crt = Command::new("openssl")
            .args(["x509", "-in"])
            .arg(dir.join("tls.crt"))
            .args(["-noout", "-pubkey"])
            .output()
            .expect("x509");
        assert!(key.status.success() && crt.status.success(), "{name}");
        assert_eq!(key.stdout, crt.stdout, "{name}: key matches certificate");
    }
}
