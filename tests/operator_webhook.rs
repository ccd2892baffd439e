//! The admission webhooks on a real control plane, with the configurations deploy/ ships
//! (only their clientConfig pointed at this machine, as no Service can route here):
//! `cmctl check api` fails before the operator runs and passes once it does (its CA made
//! and injected by the operator); the bad-input catalogue is refused by `kubectl apply`
//! with the catalogue's messages; CertificateRequests record their requester and cannot be
//! changed; `cmctl approve`, `deny`, `version` and `upgrade migrate-api-version` give
//! cert-manager's outcomes; the serving certificate and then the CA rotate while
//! `cmctl check api` keeps passing.

mod common;

use base64::Engine;
use common::catalogue::{cert, certificate_cases, NOT_REFUSED_AT_APPLY};
use common::*;
use serde_json::Value;
use std::time::Duration;

/// The webhook configurations of deploy/operator.yaml, calling `https://127.0.0.1:port`.
fn webhook_configurations(port: u16) -> Vec<Value> {
    let text = std::fs::read_to_string(repo().join("deploy/operator.yaml")).expect("operator.yaml");
    let mut out = Vec::new();
    for mut v in certwright_testkube::yaml_documents(&text).expect("yaml") {
        let kind = v["kind"].as_str().unwrap_or_default().to_string();
        if !kind.ends_with("WebhookConfiguration") {
            continue;
        }
        for w in v["webhooks"].as_array_mut().expect("webhooks") {
            let path = w["clientConfig"]["service"]["path"]
                .as_str()
                .expect("path")
                .to_string();
            w["clientConfig"] =
                serde_json::json!({"url": format!("https://127.0.0.1:{port}{path}")});
        }
        out.push(v);
    }
    assert_eq!(out.len(), 2, "deploy/operator.yaml has both configurations");
    out
}

fn collection(kind: &str) -> String {
    format!(
        "/apis/admissionregistration.k8s.io/v1/{}s",
        kind.to_lowercase()
    )
}

/// The CA bundle in the webhook's Secret, and in each webhook configuration.
fn bundles(cp: &certwright_testkube::ControlPlane) -> (String, Vec<String>) {
    let b64 = |v: &Value| {
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    };
    let secret = cp
        .admin(
            "GET",
            "/api/v1/namespaces/certwright/secrets/certwright-webhook-ca",
            None,
        )
        .map(|s| b64(&s["data"]["ca.crt"]))
        .unwrap_or_default();
    let mut injected = Vec::new();
    for kind in [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ] {
        let c = cp
            .admin(
                "GET",
                &format!("{}/certwright-webhook", collection(kind)),
                None,
            )
            .expect("configuration");
        injected.push(b64(&c["webhooks"][0]["clientConfig"]["caBundle"]));
    }
    (secret, injected)
}

/// The serial number of the certificate the webhook serves (openssl s_client).
fn served_serial(port: u16) -> Option<String> {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect 127.0.0.1:{port} </dev/null 2>/dev/null | openssl x509 -noout -serial"
        ))
        .output()
        .ok()?;
    let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
    s.starts_with("serial=").then_some(s)
}

fn csr_b64() -> String {
    use certwright_pki::{cert, pem, KeyAlgorithm, PrivateKey, Profile};
    let key = PrivateKey::generate(KeyAlgorithm::Ecdsa(certwright_pki::Curve::P256)).expect("key");
    let profile = Profile {
        dns_names: vec!["req.demo.svc".into()],
        ..Default::default()
    };
    let der = cert::build_csr(&profile, &key).expect("csr");
    base64::engine::general_purpose::STANDARD.encode(pem::encode("CERTIFICATE REQUEST", &der))
}

fn request(name: &str, issuer: &str, extra: &str) -> String {
    format!(
        "apiVersion: cert-manager.io/v1\nkind: CertificateRequest\nmetadata: {{name: {name}, namespace: demo}}\nspec:\n  request: {}\n  issuerRef: {issuer}\n{extra}",
        csr_b64()
    )
}

fn conditions(cp: &certwright_testkube::ControlPlane, name: &str) -> Vec<(String, String, String)> {
    cp.admin(
        "GET",
        &format!("/apis/cert-manager.io/v1/namespaces/demo/certificaterequests/{name}"),
        None,
    )
    .ok()
    .and_then(|v| v["status"]["conditions"].as_array().cloned())
    .unwrap_or_default()
    .iter()
    .map(|c| {
        let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
        (s("type"), s("status"), s("reason"))
    })
    .collect()
}

#[test]
fn webhooks_check_api_validation_requester_and_rotation() {
    let Some(cmctl) = common::cmctl() else {
        return;
    };
    if !require("openssl") {
        return;
    }
    let Some((cp, kubeconfig, _)) = operator_control_plane() else {
        return;
    };
    let admin = cp.kubeconfig.clone();
    let port = certwright_testkube::free_port().expect("port");
    for c in webhook_configurations(port) {
        let kind = c["kind"].as_str().expect("kind").to_string();
        cp.admin("POST", &collection(&kind), Some(&c.to_string()))
            .expect("webhook configuration");
    }
    cp.create_all(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: demo}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: bad}\n---\napiVersion: cert-manager.io/v1\nkind: Issuer\nmetadata: {name: self, namespace: demo}\nspec: {selfSigned: {}}\n",
    )
    .expect_err("an Issuer cannot be created while the webhook does not answer");

    // Before the operator runs: the API is not ready, and creating a Certificate is
    // refused (failurePolicy Fail), while the rest of the cluster is not affected.
    let (ok, out) = run_cmctl(&cmctl, &admin, &["check", "api"]);
    assert!(!ok, "check api passes with no webhook: {out}");
    let (ok, out) = cp.kubectl(&["create", "configmap", "unaffected", "-n", "demo"], "");
    assert!(ok, "a ConfigMap is not sent to the webhook: {out}");

    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("operator.log");
    let address = format!("127.0.0.1:{port}");
    let mut op = start_operator(
        &kubeconfig,
        &log,
        &[
            "--metrics-address",
            "",
            "--webhook-address",
            &address,
            "--webhook-host",
            "127.0.0.1",
            "--webhook-ca-secret",
            "certwright/certwright-webhook-ca",
            "--webhook-certificate-duration",
            "45s",
            "--webhook-ca-duration",
            "150s",
        ],
    );
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();
    let (ok, out) = run_cmctl(
        &cmctl,
        &admin,
        &["check", "api", "--wait", "3m", "--interval", "2s"],
    );
    assert!(ok, "cmctl check api: {out}\n{}", logs());
    assert!(out.contains("The cert-manager API is ready"), "{out}");
    let (secret_bundle, injected) = bundles(&cp);
    assert!(
        secret_bundle.contains("BEGIN CERTIFICATE"),
        "{secret_bundle}"
    );
    assert_eq!(injected, vec![secret_bundle.clone(), secret_bundle.clone()]);
    cp.create_all("apiVersion: cert-manager.io/v1\nkind: Issuer\nmetadata: {name: self, namespace: demo}\nspec: {selfSigned: {}}\n")
        .expect("a valid Issuer is admitted");

    // The catalogue: what the webhook can judge alone is refused with its message.
    let mut refused = 0;
    let mut mismatches = Vec::new();
    for (name, spec, _, fragment) in certificate_cases() {
        let doc = cert(name, &spec.replace("SECRET", &format!("s-{name}")));
        let (ok, out) = cp.kubectl(&["apply", "-f", "-"], &doc);
        if NOT_REFUSED_AT_APPLY.contains(&name) {
            assert!(ok, "{name} is left to the status: {out}");
            continue;
        }
        assert!(!ok, "{name} applied: {out}");
        // The API server's own checks refuse two first, with its messages: the CRD
        // schema's required field and kubectl's strict field validation.
        let by_server = match name {
            "no-secret-name" => Some("spec.secretName: Required value"),
            "typo-field" => Some("unknown field \"spec.dnsName\""),
            _ => None,
        };
        let expected = match by_server {
            Some(m) => out.contains(m),
            None => {
                out.contains("admission webhook \"webhook.cert-manager.io\" denied the request")
                    && out.contains(fragment)
            }
        };
        if !expected {
            mismatches.push(format!("{name}: {out:?} should carry {fragment:?}"));
        }
        refused += 1;
    }
    assert!(mismatches.is_empty(), "{mismatches:#?}");
    let (ok, out) = cp.kubectl(
        &["apply", "-f", "-"],
        "apiVersion: cert-manager.io/v1\nkind: Issuer\nmetadata: {name: empty-issuer, namespace: bad}\nspec: {}\n",
    );
    assert!(!ok && out.contains("exactly one issuer type"), "{out}");
    let (ok, out) = cp.kubectl(
        &["apply", "-f", "-"],
        "apiVersion: cert-manager.io/v1\nkind: ClusterIssuer\nmetadata: {name: bad-acme}\nspec: {acme: {server: 'not a url', privateKeySecretRef: {name: k}}}\n",
    );
    assert!(!ok && out.contains("spec.acme.server"), "{out}");
    refused += 2;
    println!("{refused} bad manifests refused at apply time");
    assert!(refused >= 25, "{refused}");

    // The requester is recorded whatever the request said, and the spec is fixed.
    let (ok, out) = cp.kubectl(
        &["create", "-f", "-"],
        &request(
            "mine",
            "{name: self}",
            "  username: mallory\n  groups: [system:nodes]\n",
        ),
    );
    assert!(ok, "{out}");
    let cr = cp
        .admin(
            "GET",
            "/apis/cert-manager.io/v1/namespaces/demo/certificaterequests/mine",
            None,
        )
        .expect("request");
    assert_eq!(cr["spec"]["username"], "admin", "{cr}");
    assert_eq!(cr["spec"]["uid"], "admin-uid", "{cr}");
    let groups: Vec<&str> = cr["spec"]["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        groups.contains(&"system:masters") && !groups.contains(&"system:nodes"),
        "{groups:?}"
    );
    let (cols, rows) = cp
        .table("/apis/cert-manager.io/v1/namespaces/demo/certificaterequests/mine")
        .expect("table");
    let requester = cols
        .iter()
        .position(|c| c == "Requester")
        .expect("Requester column");
    assert_eq!(rows[0][requester], "admin");
    let (ok, out) = cp.kubectl(
        &[
            "patch",
            "certificaterequest",
            "mine",
            "-n",
            "demo",
            "--type",
            "merge",
            "-p",
            "{\"spec\":{\"duration\":\"2h\"}}",
        ],
        "",
    );
    assert!(
        !ok && out.contains("immutable") && out.contains("spec.duration"),
        "{out}"
    );

    // Approval as cmctl does it: certwright approves requests for its own issuers; an
    // external issuer's requests wait for an approver.
    cp.wait_for("mine approved", Duration::from_secs(30), || {
        conditions(&cp, "mine")
            .iter()
            .any(|c| c.0 == "Approved" && c.1 == "True")
            .then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    let (ok, out) = run_cmctl(&cmctl, &admin, &["approve", "mine", "-n", "demo"]);
    assert!(!ok && out.contains("already approved"), "{out}");
    for name in ["ext-a", "ext-b"] {
        let (ok, out) = cp.kubectl(
            &["create", "-f", "-"],
            &request(name, "{name: x, kind: ExtIssuer, group: example.com}", ""),
        );
        assert!(ok, "{out}");
    }
    let (ok, out) = run_cmctl(
        &cmctl,
        &admin,
        &[
            "approve",
            "ext-a",
            "-n",
            "demo",
            "--reason",
            "TestApproval",
            "--message",
            "approved by the test",
        ],
    );
    assert!(
        ok && out.contains("Approved CertificateRequest 'demo/ext-a'"),
        "{out}"
    );
    assert!(
        conditions(&cp, "ext-a").contains(&(
            "Approved".into(),
            "True".into(),
            "TestApproval".into()
        )),
        "{:?}",
        conditions(&cp, "ext-a")
    );
    let (ok, out) = run_cmctl(&cmctl, &admin, &["deny", "ext-b", "-n", "demo"]);
    assert!(
        ok && out.contains("Denied CertificateRequest 'demo/ext-b'"),
        "{out}"
    );
    let (ok, out) = run_cmctl(&cmctl, &admin, &["approve", "ext-b", "-n", "demo"]);
    assert!(!ok && out.contains("already denied"), "{out}");

    // Every CRD field explains itself, as cert-manager's do.
    let (ok, out) = cp.kubectl(&["explain", "certificate.spec.privateKey"], "");
    assert!(ok, "{out}");
    for want in [
        "The private key: algorithm, size, encoding and rotation.",
        "rotationPolicy",
        "Always (the default): a new private key for each issuance",
    ] {
        assert!(out.contains(want), "explain: {want:?} not in:\n{out}");
    }
    let (ok, out) = cp.kubectl(&["explain", "issuer.spec.acme.solvers.dns01.rfc2136"], "");
    assert!(ok && out.contains("tsigAlgorithm"), "{out}");

    // cmctl version finds the operator's version on its CRDs; the API migration check
    // has nothing to do with v1-only CRDs (the ACME ones included).
    let (ok, out) = run_cmctl(&cmctl, &admin, &["version", "--short"]);
    let expected = format!("Server Version: v{}", env!("CARGO_PKG_VERSION"));
    assert!(ok && out.contains(&expected), "{out}");
    let (ok, out) = run_cmctl(&cmctl, &admin, &["upgrade", "migrate-api-version"]);
    assert!(ok && out.contains("Nothing to do"), "{out}");

    // Rotation: a new serving certificate within the 45 s life, then a new CA (after two
    // thirds of 150 s) whose bundle keeps the old CA; check api passes throughout.
    let first = served_serial(port).expect("served certificate");
    cp.wait_for("a new serving certificate", Duration::from_secs(60), || {
        served_serial(port).filter(|s| *s != first)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    cp.wait_for("a new CA", Duration::from_secs(150), || {
        let (secret, injected) = bundles(&cp);
        (secret.matches("BEGIN CERTIFICATE").count() == 2 && injected.iter().all(|b| *b == secret))
            .then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    let (ok, out) = run_cmctl(
        &cmctl,
        &admin,
        &["check", "api", "--wait", "2m", "--interval", "2s"],
    );
    assert!(ok, "after the CA rotation: {out}\n{}", logs());
    let log_text = logs();
    assert!(!log_text.contains("PRIVATE KEY"), "key material in the log");
    assert!(!log_text.contains("panicked"), "{log_text}");
    terminate(&mut op);
}
