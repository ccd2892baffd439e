//! Through several renewals on a real control plane, a watch on the Secret never sees a
//! tls.key that does not match tls.crt, nor a keystore that differs from the PEM next to
//! it; a keystore-password change rewrites the keystores only; a CA issuer whose Secret is
//! missing gives a clear condition while other certificates stay Ready.

mod common;

use base64::Engine;
use certwright_pki::{inspect, jks, PrivateKey};
use certwright_testkube::{ControlPlane, ADMIN_TOKEN};
use common::*;
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::Duration;

const MANIFESTS: &str = r#"apiVersion: v1
kind: Namespace
metadata: {name: demo}
---
apiVersion: cert-manager.io/v1
kind: Issuer
metadata: {name: self, namespace: demo}
spec: {selfSigned: {}}
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: ca, namespace: demo}
spec:
  secretName: ca
  issuerRef: {name: self}
  commonName: renewals-ca
  isCA: true
  privateKey: {algorithm: ECDSA}
---
apiVersion: cert-manager.io/v1
kind: Issuer
metadata: {name: ca, namespace: demo}
spec: {ca: {secretName: ca}}
---
apiVersion: cert-manager.io/v1
kind: Issuer
metadata: {name: missing-ca, namespace: demo}
spec: {ca: {secretName: no-such-secret}}
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: orphan, namespace: demo}
spec:
  secretName: orphan-tls
  issuerRef: {name: missing-ca}
  dnsNames: [orphan.demo.svc]
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: renewing, namespace: demo}
spec:
  secretName: renewing-tls
  issuerRef: {name: ca}
  dnsNames: [renewing.demo.svc]
  duration: 1h1m
  renewBefore: 1h
  privateKey: {algorithm: ECDSA}
  keystores:
    jks: {create: true, password: pw-one}
"#;

fn b64(v: &serde_json::Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str().unwrap_or_default())
        .unwrap_or_default()
}

fn cert(cp: &ControlPlane, name: &str) -> serde_json::Value {
    cp.admin(
        "GET",
        &format!("/apis/cert-manager.io/v1/namespaces/demo/certificates/{name}"),
        None,
    )
    .expect("certificate")
}

fn ready_reason(c: &serde_json::Value) -> (String, String, String) {
    let r = c["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready").cloned())
        .unwrap_or_default();
    (
        r["status"].as_str().unwrap_or_default().into(),
        r["reason"].as_str().unwrap_or_default().into(),
        r["message"].as_str().unwrap_or_default().into(),
    )
}

/// Checks one observed version of the Secret; returns its certificate's fingerprint.
fn check_consistent(secret: &serde_json::Value, passwords: &[&str]) -> String {
    let d = &secret["data"];
    let chain = inspect::parse_pem_chain(&b64(&d["tls.crt"])).expect("tls.crt parses");
    let key = PrivateKey::from_pem(&b64(&d["tls.key"])).expect("tls.key parses");
    assert_eq!(
        chain[0].spki_der,
        key.spki_der(),
        "a reader saw tls.key and tls.crt that do not match"
    );
    let ks = b64(&d["keystore.jks"]);
    let entries = passwords
        .iter()
        .find_map(|p| jks::decode(&ks, p).ok())
        .expect("keystore opens");
    match &entries[0] {
        jks::Entry::PrivateKey {
            pkcs8,
            chain: ks_chain,
            ..
        } => {
            let k = PrivateKey::from_pkcs8_der(pkcs8).expect("keystore key");
            assert_eq!(
                k.spki_der(),
                key.spki_der(),
                "keystore key differs from tls.key"
            );
            assert_eq!(
                ks_chain[0], chain[0].der,
                "keystore certificate differs from tls.crt"
            );
        }
        other => panic!("unexpected entry {other:?}"),
    }
    chain[0].sha256_fingerprint()
}

#[test]
fn renewals_are_atomic_and_password_changes_rewrite_keystores_only() {
    let Some((cp, kubeconfig, _)) = operator_control_plane() else {
        return;
    };
    cp.create_all(MANIFESTS).expect("manifests");
    let tmp = tempfile::tempdir().expect("tmp");
    let log = tmp.path().join("operator.log");
    let mut op = start_operator(&kubeconfig, &log, &["--metrics-address", ""]);

    // Watch the Secret for the whole test, as a consumer would.
    let mut watch = Command::new("curl")
        .args(["-sSN", "--max-time", "170", "--cacert"])
        .arg(&cp.ca_file)
        .args(["-H", &format!("Authorization: Bearer {ADMIN_TOKEN}")])
        .arg(format!("{}/api/v1/namespaces/demo/secrets?watch=true&fieldSelector=metadata.name%3Drenewing-tls", cp.url))
        .stdout(Stdio::piped())
        .spawn()
        .expect("watch");
    let stdout = watch.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let ev: serde_json::Value = match serde_json::from_str(&line) {
                Ok(v) => v,
                Err(_) => continue,
            };
            if ev["type"] == "ADDED" || ev["type"] == "MODIFIED" {
                let fp = check_consistent(&ev["object"], &["pw-one", "pw-two"]);
                if seen.last() != Some(&fp) {
                    seen.push(fp);
                }
            }
        }
        seen
    });

    cp.wait_for("first issuance", Duration::from_secs(30), || {
        (cert(&cp, "renewing")["status"]["revision"] == 1).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}: {}", std::fs::read_to_string(&log).unwrap_or_default()));

    // The broken issuer stops only its own certificate.
    let (status, reason, message) = ready_reason(&cert(&cp, "orphan"));
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "IssuerNotReady"),
        "{message}"
    );
    assert!(
        message.contains("CA secret demo/no-such-secret not found"),
        "{message}"
    );
    assert_eq!(ready_reason(&cert(&cp, "ca")).0, "True");

    // Only the keystore password changes: keystores rewritten, certificate and revision kept.
    let before = cp
        .admin("GET", "/api/v1/namespaces/demo/secrets/renewing-tls", None)
        .expect("secret");
    let patch = r#"{"spec":{"keystores":{"jks":{"create":true,"password":"pw-two"}}}}"#;
    cp.admin(
        "PATCH",
        "/apis/cert-manager.io/v1/namespaces/demo/certificates/renewing",
        Some(patch),
    )
    .expect("patch");
    let after = cp
        .wait_for(
            "keystores under the new password",
            Duration::from_secs(20),
            || {
                let s = cp
                    .admin("GET", "/api/v1/namespaces/demo/secrets/renewing-tls", None)
                    .ok()?;
                jks::decode(&b64(&s["data"]["keystore.jks"]), "pw-two")
                    .ok()
                    .map(|_| s)
            },
        )
        .expect("rewritten");
    assert_eq!(
        after["data"]["tls.crt"], before["data"]["tls.crt"],
        "certificate kept"
    );
    assert_eq!(
        after["data"]["tls.key"], before["data"]["tls.key"],
        "key kept"
    );
    assert_eq!(cert(&cp, "renewing")["status"]["revision"], 1);

    // Two renewals, one a minute (1h1m certificates renewed 1h before expiry).
    cp.wait_for("two renewals", Duration::from_secs(150), || {
        (cert(&cp, "renewing")["status"]["revision"] == 3).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}: {}", std::fs::read_to_string(&log).unwrap_or_default()));
    std::thread::sleep(Duration::from_secs(1));
    let _ = watch.kill();
    let _ = watch.wait();
    let seen = reader
        .join()
        .expect("every observed version was consistent");
    assert!(seen.len() >= 3, "the watch saw {} certificates", seen.len());
    terminate(&mut op);
    println!(
        "watched {} certificate versions, all consistent",
        seen.len()
    );
}
