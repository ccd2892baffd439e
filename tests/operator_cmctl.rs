//! cert-manager's own CLI, cmctl v2.5.0, against the operator on a real control plane:
//! `status certificate`, `renew`, `inspect secret` and `create certificaterequest
//! --fetch-certificate` give the outcomes they give with cert-manager.

mod common;

use common::*;
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
  commonName: cmctl-ca
  isCA: true
  privateKey: {algorithm: ECDSA}
---
apiVersion: cert-manager.io/v1
kind: Issuer
metadata: {name: ca, namespace: demo}
spec: {ca: {secretName: ca}}
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: web, namespace: demo}
spec:
  secretName: web-tls
  issuerRef: {name: ca}
  dnsNames: [web.demo.svc]
  privateKey: {algorithm: ECDSA}
"#;

fn revision(cp: &certwright_testkube::ControlPlane) -> i64 {
    cp.admin(
        "GET",
        "/apis/cert-manager.io/v1/namespaces/demo/certificates/web",
        None,
    )
    .ok()
    .and_then(|c| c["status"]["revision"].as_i64())
    .unwrap_or(0)
}

#[test]
fn cmctl_status_renew_inspect_and_create_work_against_certwright() {
    let Some(cmctl) = common::cmctl() else {
        return;
    };
    let Some((cp, kubeconfig, _)) = operator_control_plane() else {
        return;
    };
    cp.create_all(MANIFESTS).expect("manifests");
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("operator.log");
    let mut op = start_operator(&kubeconfig, &log, &["--metrics-address", ""]);
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();
    cp.wait_for("web issued", Duration::from_secs(30), || {
        (revision(&cp) == 1).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    let admin = &cp.kubeconfig;
    // The issuer annotations as cert-manager writes them: the kind defaulted, the group
    // as the spec says (omitted here: empty).
    let secret = cp
        .admin("GET", "/api/v1/namespaces/demo/secrets/web-tls", None)
        .expect("secret");
    let a = &secret["metadata"]["annotations"];
    assert_eq!(a["cert-manager.io/issuer-name"], "ca", "{a}");
    assert_eq!(a["cert-manager.io/issuer-kind"], "Issuer", "{a}");
    assert_eq!(a["cert-manager.io/issuer-group"], "", "{a}");

    let (ok, out) = run_cmctl(
        &cmctl,
        admin,
        &["status", "certificate", "web", "-n", "demo"],
    );
    assert!(ok, "{out}");
    for want in [
        "Name: web",
        "Namespace: demo",
        "Certificate is up to date and has not expired",
        "DNS Names:",
        "- web.demo.svc",
        "Issuer:",
        "Name: ca",
        "Kind: Issuer",
        "Secret:",
        "Name: web-tls",
        // cert-manager's four Events of an issuance, with their source.
        "Events:",
        "Issuing",
        "Generated",
        "Requested",
        "Created new CertificateRequest resource \"web-1\"",
        "The certificate has been successfully issued",
    ] {
        assert!(out.contains(want), "status: {want:?} not in:\n{out}");
    }
    // Each Event with its age and source, as cmctl prints them from cert-manager's.
    let events: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.starts_with("Events:"))
        .skip(3)
        .take_while(|l| l.starts_with("  Normal") || l.starts_with("  Warning"))
        .collect();
    assert_eq!(events.len(), 4, "{out}");
    for e in &events {
        assert!(
            !e.contains("<unknown>") && e.contains("certwright"),
            "{e}\n{out}"
        );
    }
    let why = "Issuing certificate as Secret does not exist";
    assert!(out.contains(why), "{out}");

    let (ok, out) = run_cmctl(
        &cmctl,
        admin,
        &["inspect", "secret", "web-tls", "-n", "demo"],
    );
    assert!(ok, "{out}");
    for want in [
        "Valid for:",
        "DNS Names:",
        "web.demo.svc",
        "Issued By:",
        "cmctl-ca",
    ] {
        assert!(out.contains(want), "inspect: {want:?} not in:\n{out}");
    }

    let (ok, out) = run_cmctl(&cmctl, admin, &["renew", "web", "-n", "demo"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("Manually triggered issuance of Certificate demo/web"),
        "{out}"
    );
    cp.wait_for("web renewed", Duration::from_secs(30), || {
        (revision(&cp) == 2).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", logs()));

    // A request from a Certificate manifest: cmctl makes the key and CSR, creates the
    // CertificateRequest, waits for it to be signed and writes the certificate.
    let manifest = common::write(
        dir.path(),
        "req.yaml",
        "apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {name: req, namespace: demo}\nspec:\n  secretName: unused\n  issuerRef: {name: ca}\n  commonName: req.demo.svc\n  dnsNames: [req.demo.svc]\n  privateKey: {algorithm: ECDSA}\n",
    );
    let key = dir.path().join("req.key");
    let crt = dir.path().join("req.crt");
    let (ok, out) = run_cmctl(
        &cmctl,
        admin,
        &[
            "create",
            "certificaterequest",
            "req",
            "-n",
            "demo",
            "--from-certificate-file",
            &manifest.display().to_string(),
            "--output-key-file",
            &key.display().to_string(),
            "--output-certificate-file",
            &crt.display().to_string(),
            "--fetch-certificate",
            "--timeout",
            "2m",
        ],
    );
    assert!(ok, "{out}\n{}", logs());
    let pem = std::fs::read_to_string(&crt).expect("the certificate written");
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
    assert!(key.is_file());
    terminate(&mut op);
}

/// A Certificate whose issuer does not exist yet: as with cert-manager, its
/// CertificateRequest is made and waits, saying so (Ready False, Pending, `Referenced
/// "Issuer" not found`), an IssuerNotFound Event names the issuer, and `cmctl status`
/// shows both; once the Issuer is created, the same request is signed (no second one).
#[test]
fn a_certificate_waits_for_its_missing_issuer_through_a_pending_request() {
    let Some(cmctl) = common::cmctl() else {
        return;
    };
    let Some((cp, kubeconfig, _)) = operator_control_plane() else {
        return;
    };
    cp.create_all(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: demo}\n---\napiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {name: late, namespace: demo}\nspec: {secretName: late-tls, issuerRef: {name: later}, dnsNames: [late.demo.svc]}\n",
    )
    .expect("manifests");
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("operator.log");
    let mut op = start_operator(&kubeconfig, &log, &["--metrics-address", ""]);
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();
    let request = |cp: &certwright_testkube::ControlPlane| {
        cp.admin(
            "GET",
            "/apis/cert-manager.io/v1/namespaces/demo/certificaterequests/late-1",
            None,
        )
        .ok()
    };
    let ready = |cr: &serde_json::Value| {
        cr["status"]["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "Ready").cloned())
            .unwrap_or_default()
    };
    let pending = cp
        .wait_for("a pending request", Duration::from_secs(30), || {
            request(&cp).filter(|cr| ready(cr)["reason"] == "Pending")
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    let message = ready(&pending)["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        message.contains("Waiting for the issuer")
            && message.contains(
                "Referenced \"Issuer\" not found: Issuer \"later\" in namespace \"demo\" not found"
            ),
        "{message}"
    );
    let cert = cp
        .admin(
            "GET",
            "/apis/cert-manager.io/v1/namespaces/demo/certificates/late",
            None,
        )
        .expect("certificate");
    let conditions = cert["status"]["conditions"].to_string();
    assert!(conditions.contains("IssuerNotFound"), "{conditions}");
    let (ok, out) = run_cmctl(
        &cmctl,
        &cp.kubeconfig,
        &["status", "certificate", "late", "-n", "demo"],
    );
    assert!(ok, "{out}");
    for want in [
        "IssuerNotFound",
        "Issuer \"later\" in namespace \"demo\" not found; the request waits for it",
        "CertificateRequest:",
        "Name: late-1",
        "Referenced \"Issuer\" not found",
    ] {
        assert!(out.contains(want), "status: {want:?} not in:\n{out}");
    }

    cp.create_all("apiVersion: cert-manager.io/v1\nkind: Issuer\nmetadata: {name: later, namespace: demo}\nspec: {selfSigned: {}}\n")
        .expect("issuer");
    cp.wait_for("the same request signed", Duration::from_secs(60), || {
        request(&cp).filter(|cr| ready(cr)["status"] == "True")
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    let secret = cp
        .admin("GET", "/api/v1/namespaces/demo/secrets/late-tls", None)
        .expect("the Secret written");
    assert!(secret["data"]["tls.crt"].is_string());
    let list = cp
        .admin(
            "GET",
            "/apis/cert-manager.io/v1/namespaces/demo/certificaterequests",
            None,
        )
        .expect("list");
    let names: Vec<&str> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["late-1"],
        "one request, signed once the issuer came"
    );
    let log_text = logs();
    assert!(!log_text.contains("PRIVATE KEY"), "key material in the log");
    terminate(&mut op);
}
