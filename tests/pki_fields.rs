//! Every certificate field the spec can ask for, read back by OpenSSL: subject fields,
//! literal subjects, all SAN types, usages, name constraints, serials, validity, the
//! issuers' CRL distribution points and authority information access, and nothing the
//! spec did not ask for.

mod common;

use common::*;
use std::process::Command;

const MANIFEST: &str = r#"apiVersion: cert-manager.io/v1
kind: Issuer
metadata: {name: self, namespace: f}
spec: {selfSigned: {crlDistributionPoints: ["http://pki.example.com/root.crl"]}}
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: ca, namespace: f}
spec:
  secretName: ca
  issuerRef: {name: self}
  literalSubject: "CN=Literal CA,O=Acme+OU=Ops,DC=example,DC=com"
  isCA: true
  privateKey: {algorithm: ECDSA, size: 384}
  nameConstraints:
    critical: true
    permitted:
      dnsDomains: [example.com]
      ipRanges: [10.0.0.0/8, "fd00::/8"]
    excluded:
      emailAddresses: [bad.example.com]
---
apiVersion: cert-manager.io/v1
kind: Issuer
metadata: {name: ca, namespace: f}
spec:
  ca:
    secretName: ca
    crlDistributionPoints: ["http://pki.example.com/ca.crl"]
    ocspServers: ["http://ocsp.example.com"]
    issuingCertificateURLs: ["http://pki.example.com/ca.crt"]
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: leaf, namespace: f}
spec:
  secretName: leaf
  issuerRef: {name: ca}
  commonName: web.example.com
  subject:
    countries: [NL]
    provinces: [Noord-Holland]
    localities: [Amsterdam]
    streetAddresses: [Damrak 1]
    postalCodes: [1012 LG]
    organizations: [Acme]
    organizationalUnits: [Web]
    serialNumber: "42"
  dnsNames: [web.example.com, "*.api.example.com"]
  ipAddresses: [10.1.2.3, "fd00::1"]
  uris: ["spiffe://example.com/ns/f/sa/web"]
  emailAddresses: [ops@example.com]
  usages: [server auth, client auth, digital signature, key encipherment]
  duration: 48h
  privateKey: {algorithm: RSA, size: 3072}
"#;

fn x509_text(path: &std::path::Path) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-nameopt", "RFC2253", "-in"])
        .arg(path)
        .output()
        .expect("openssl");
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn every_field_reaches_the_certificate_and_nothing_else_does() {
    if !require("openssl") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let m = tmp.path().join("m");
    std::fs::create_dir(&m).expect("dir");
    write(&m, "f.yaml", MANIFEST);
    let state = tmp.path().join("state");
    let out = once(&[&m], &state);
    assert!(out.status.success(), "{}", text(&out));

    let ca = x509_text(&secret_dir(&state, "f", "ca").join("tls.crt"));
    assert!(
        ca.contains("Subject: CN=Literal CA,O=Acme+OU=Ops,DC=example,DC=com"),
        "{ca}"
    );
    assert!(ca.contains("X509v3 Name Constraints: critical"), "{ca}");
    assert!(ca.contains("DNS:example.com"), "{ca}");
    assert!(ca.contains("IP:10.0.0.0/255.0.0.0"), "{ca}");
    assert!(ca.contains("email:bad.example.com"), "{ca}");
    assert!(ca.contains("CA:TRUE"), "{ca}");
    assert!(ca.contains("X509v3 Subject Key Identifier:"), "{ca}");
    assert!(ca.contains("Certificate Sign"), "{ca}");
    // The self-signed issuer's CRL distribution point, as cert-manager writes it.
    assert!(ca.contains("X509v3 CRL Distribution Points:"), "{ca}");
    assert!(ca.contains("URI:http://pki.example.com/root.crl"), "{ca}");

    let leaf_path = secret_dir(&state, "f", "leaf").join("tls.crt");
    let leaf = x509_text(&leaf_path);
    for want in [
        "Subject: serialNumber=42,CN=web.example.com,OU=Web,O=Acme,postalCode=1012 LG,street=Damrak 1,L=Amsterdam,ST=Noord-Holland,C=NL",
        "DNS:web.example.com",
        "DNS:*.api.example.com",
        "IP Address:10.1.2.3",
        "IP Address:FD00:0:0:0:0:0:0:1",
        "URI:spiffe://example.com/ns/f/sa/web",
        "email:ops@example.com",
        "TLS Web Server Authentication, TLS Web Client Authentication",
        "Digital Signature, Key Encipherment",
        "CA:FALSE",
        "Public-Key: (3072 bit)",
        "ecdsa-with-SHA384",
        "Issuer: CN=Literal CA,O=Acme+OU=Ops,DC=example,DC=com",
    ] {
        assert!(leaf.contains(want), "missing {want:?} in\n{leaf}");
    }
    // Only the extensions asked for, plus the authority key identifier (a subject key
    // identifier on CA certificates only, as cert-manager's), in the order rcgen writes them
    // (this leaf's issuer has a multi-valued RDN, so the DER writer wrote it, in that order
    // too).
    let exts: Vec<&str> = leaf
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("X509v3 "))
        .filter(|l| *l != "X509v3 extensions:")
        .collect();
    assert_eq!(
        exts,
        vec![
            "X509v3 Authority Key Identifier:",
            "X509v3 Basic Constraints: critical",
            "X509v3 Key Usage: critical",
            "X509v3 Extended Key Usage:",
            "X509v3 Subject Alternative Name:",
            "X509v3 CRL Distribution Points:",
        ],
        "{leaf}"
    );
    // The CA issuer's URLs: CRL distribution point and Authority Information Access.
    for want in [
        "Full Name:",
        "URI:http://pki.example.com/ca.crl",
        "Authority Information Access:",
        "OCSP - URI:http://ocsp.example.com",
        "CA Issuers - URI:http://pki.example.com/ca.crt",
    ] {
        assert!(leaf.contains(want), "missing {want:?} in\n{leaf}");
    }
    // A 20-octet serial, as cert-manager's, and the requested lifetime.
    let serial = Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(&leaf_path)
        .output()
        .expect("serial");
    let hex = String::from_utf8_lossy(&serial.stdout)
        .trim()
        .trim_start_matches("serial=")
        .to_string();
    assert_eq!(hex.len(), 40, "serial {hex}");
    let dates = Command::new("openssl")
        .args(["x509", "-noout", "-startdate", "-enddate", "-in"])
        .arg(&leaf_path)
        .output()
        .expect("dates");
    let d = String::from_utf8_lossy(&dates.stdout);
    let st = status_json(&state);
    let c = st["certificates"]
        .as_array()
        .expect("certs")
        .iter()
        .find(|c| c["name"] == "leaf")
        .expect("leaf")
        .clone();
    let nb = certwright_pki::der::parse_rfc3339(c["status"]["notBefore"].as_str().expect("nb"))
        .expect("nb");
    let na = certwright_pki::der::parse_rfc3339(c["status"]["notAfter"].as_str().expect("na"))
        .expect("na");
    assert_eq!(na - nb, 48 * 3600, "{d}");
    // The name-constrained CA verifies its leaf.
    let v = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(secret_dir(&state, "f", "leaf").join("ca.crt"))
        .arg(&leaf_path)
        .output()
        .expect("verify");
    assert!(v.status.success(), "{}", text(&v));
}

/// With an intermediate as the CA issuer, its leaves get the intermediate as ca.crt (the
/// top of the CA Secret's tls.crt, as cert-manager gives it) and tls.crt holds the leaf
/// then the intermediate; the intermediate's own Secret keeps the root as ca.crt.
#[test]
fn an_intermediate_issuer_gives_its_leaves_the_intermediate_as_ca_crt() {
    if !require("openssl") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let m = tmp.path().join("m");
    std::fs::create_dir(&m).expect("dir");
    let mut docs = vec![
        "apiVersion: cert-manager.io/v1\nkind: Issuer\nmetadata: {name: self, namespace: i}\nspec: {selfSigned: {}}\n".to_string(),
    ];
    for (name, issuer) in [("root", "self"), ("inter", "root")] {
        docs.push(format!("apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {{name: {name}, namespace: i}}\nspec: {{secretName: {name}, issuerRef: {{name: {issuer}}}, commonName: {name}-ca, isCA: true, privateKey: {{algorithm: ECDSA}}}}\n"));
        docs.push(format!("apiVersion: cert-manager.io/v1\nkind: Issuer\nmetadata: {{name: {name}, namespace: i}}\nspec: {{ca: {{secretName: {name}}}}}\n"));
    }
    docs.push("apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {name: leaf, namespace: i}\nspec: {secretName: leaf, issuerRef: {name: inter}, dnsNames: [leaf.example.com], privateKey: {algorithm: ECDSA}}\n".to_string());
    write(&m, "i.yaml", &docs.join("---\n"));
    let state = tmp.path().join("state");
    let out = once(&[&m], &state);
    assert!(out.status.success(), "{}", text(&out));
    let read = |name: &str, key: &str| {
        std::fs::read_to_string(secret_dir(&state, "i", name).join(key)).expect(key)
    };
    let certs = |pem: &str| certwright_pki::inspect::pem_certificates(pem.as_bytes()).expect("pem");
    let root = certs(&read("root", "tls.crt"));
    let inter = certs(&read("inter", "tls.crt"));
    assert_eq!(
        inter.len(),
        1,
        "the root is not in the intermediate's tls.crt"
    );
    assert_eq!(certs(&read("inter", "ca.crt")), root);
    let leaf_chain = certs(&read("leaf", "tls.crt"));
    assert_eq!(leaf_chain.len(), 2);
    assert_eq!(leaf_chain[1], inter[0]);
    assert_eq!(
        certs(&read("leaf", "ca.crt")),
        inter,
        "ca.crt is the issuing intermediate"
    );
    // The leaf verifies against the intermediate as a trust anchor, and up to the root.
    let leaf_path = secret_dir(&state, "i", "leaf").join("tls.crt");
    let v = Command::new("openssl")
        .args(["verify", "-partial_chain", "-CAfile"])
        .arg(secret_dir(&state, "i", "leaf").join("ca.crt"))
        .arg(&leaf_path)
        .output()
        .expect("verify");
    assert!(v.status.success(), "{}", text(&v));
    let v = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(secret_dir(&state, "i", "root").join("tls.crt"))
        .arg("-untrusted")
        .arg(secret_dir(&state, "i", "inter").join("tls.crt"))
        .arg(&leaf_path)
        .output()
        .expect("verify");
    assert!(v.status.success(), "{}", text(&v));
}
