//! The operator on a real control plane, with inputs that cannot succeed: a permanent
//! failure (a Secret the API refuses as too large, a notAfter past year 9999) becomes
//! Ready=False with a specific reason and is backed off, not retried every few seconds;
//! two Certificates naming one Secret: the older writes it, the later one reports
//! DuplicateSecretName, and they never alternate.

mod common;

use certwright_testkube::ControlPlane;
use common::*;
use std::time::{Duration, Instant};

fn manifests() -> String {
    let names: Vec<String> = (0..10_000)
        .map(|i| format!("host-{i}.huge.example.com"))
        .collect();
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata: {{name: hard}}
---
apiVersion: cert-manager.io/v1
kind: Issuer
metadata: {{name: self, namespace: hard}}
spec: {{selfSigned: {{}}}}
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {{name: huge, namespace: hard}}
spec:
  secretName: huge-tls
  issuerRef: {{name: self}}
  privateKey: {{algorithm: ECDSA}}
  dnsNames: [{}]
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {{name: forever, namespace: hard}}
spec:
  secretName: forever-tls
  issuerRef: {{name: self}}
  privateKey: {{algorithm: ECDSA}}
  commonName: forever.hard.svc
  duration: 100000000h
"#,
        names.join(", ")
    )
}

const FIRST: &str = r#"apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: first, namespace: hard}
spec:
  secretName: shared-tls
  issuerRef: {name: self}
  privateKey: {algorithm: ECDSA}
  commonName: first.hard.svc
"#;

const SECOND: &str = r#"apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: second, namespace: hard}
spec:
  secretName: shared-tls
  issuerRef: {name: self}
  privateKey: {algorithm: ECDSA}
  commonName: second.hard.svc
"#;

fn cert(cp: &ControlPlane, name: &str) -> serde_json::Value {
    cp.admin(
        "GET",
        &format!("/apis/cert-manager.io/v1/namespaces/hard/certificates/{name}"),
        None,
    )
    .unwrap_or_default()
}

/// (status, reason, message) of a condition.
fn condition(c: &serde_json::Value, t: &str) -> Option<(String, String, String)> {
    let cs = c["status"]["conditions"].as_array()?;
    let r = cs.iter().find(|c| c["type"] == t)?;
    Some((
        r["status"].as_str()?.into(),
        r["reason"].as_str().unwrap_or_default().into(),
        r["message"].as_str().unwrap_or_default().into(),
    ))
}

fn attempts(c: &serde_json::Value) -> i64 {
    c["status"]["failedIssuanceAttempts"].as_i64().unwrap_or(0)
}

/// Like `assert!`, but returns the failure so that the operator is stopped first.
macro_rules! ensure {
    ($c:expr, $($m:tt)+) => {
        if !$c {
            return Err(format!($($m)+));
        }
    };
}

#[test]
fn permanent_failures_back_off_and_duplicate_secret_names_do_not_alternate() {
    let Some((cp, kubeconfig, _)) = operator_control_plane() else {
        return;
    };
    cp.create_all(&manifests()).expect("manifests");
    cp.create_all(FIRST).expect("first");
    let tmp = tempfile::tempdir().expect("tmp");
    let log = tmp.path().join("operator.log");
    let mut op = start_operator(&kubeconfig, &log, &["--metrics-address", ""]);
    let outcome = (|| -> Result<(), String> {
        cp.wait_for("first Ready", Duration::from_secs(120), || {
            (condition(&cert(&cp, "first"), "Ready")?.0 == "True").then_some(())
        })?;
        // The later Certificate with the same secretName.
        cp.create_all(SECOND)?;
        let (_, reason, message) = cp.wait_for(
            "second reports the duplicate",
            Duration::from_secs(120),
            || condition(&cert(&cp, "second"), "Ready").filter(|c| c.1 == "DuplicateSecretName"),
        )?;
        ensure!(message.contains("Certificate first"), "{reason}: {message}");
        // The permanent failures are on the status, with their attempts counted.
        let (_, _, huge) = cp.wait_for("huge fails", Duration::from_secs(180), || {
            let c = cert(&cp, "huge");
            (attempts(&c) >= 1)
                .then(|| condition(&c, "Ready"))
                .flatten()
                .filter(|r| r.0 == "False")
        })?;
        ensure!(huge.contains("SecretUnwritable"), "{huge}");
        let (_, _, forever) = cp.wait_for("forever fails", Duration::from_secs(120), || {
            let c = cert(&cp, "forever");
            (attempts(&c) >= 1)
                .then(|| condition(&c, "Ready"))
                .flatten()
                .filter(|r| r.0 == "False")
        })?;
        ensure!(forever.contains("InvalidDuration"), "{forever}");
        ensure!(forever.contains("9999-12-31T23:59:59Z"), "{forever}");
        // Watch for 30 s: backed off (10 s, 20 s, ...), not retried every 2 s; the shared
        // Secret keeps its writer and is not rewritten.
        let secret = |cp: &ControlPlane| {
            cp.admin("GET", "/api/v1/namespaces/hard/secrets/shared-tls", None)
                .unwrap_or_default()
        };
        let s0 = secret(&cp);
        let (h0, f0) = (
            attempts(&cert(&cp, "huge")),
            attempts(&cert(&cp, "forever")),
        );
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_secs(1));
            let s = secret(&cp);
            let writer = &s["metadata"]["annotations"]["cert-manager.io/certificate-name"];
            ensure!(
                writer == "first",
                "the shared Secret's writer became {writer}"
            );
            ensure!(
                s["metadata"]["resourceVersion"] == s0["metadata"]["resourceVersion"],
                "the shared Secret was rewritten"
            );
            let second = condition(&cert(&cp, "second"), "Ready").map(|c| c.1);
            ensure!(
                second.as_deref() == Some("DuplicateSecretName"),
                "second became {second:?}"
            );
        }
        let (h1, f1) = (
            attempts(&cert(&cp, "huge")),
            attempts(&cert(&cp, "forever")),
        );
        ensure!(h1 - h0 <= 3, "huge: {h0} -> {h1} attempts in 30 s");
        ensure!(f1 - f0 <= 3, "forever: {f0} -> {f1} attempts in 30 s");
        println!("attempts in 30 s: huge {h0} -> {h1}, forever {f0} -> {f1}");
        Ok(())
    })();
    terminate(&mut op);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    outcome.unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert!(!text.contains("PRIVATE KEY"), "no key material in logs");
}
