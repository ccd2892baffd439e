//! The ACME issuer in the operator, on a real control plane, against Pebble and BIND:
//! a ClusterIssuer whose account key is generated into a Secret and registered (status
//! Ready with the account URI and email), and a Certificate issued through DNS-01
//! (RFC 2136 with TSIG), its chain checked against Pebble's issuing root.

mod common;

use common::pebble::{free_port, Pebble, PebbleOptions};
use common::*;
use std::time::Duration;

fn get(cp: &certwright_testkube::ControlPlane, path: &str) -> serde_json::Value {
    cp.admin("GET", path, None).unwrap_or_default()
}

fn ready(obj: &serde_json::Value) -> (String, String) {
    let r = obj["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready").cloned())
        .unwrap_or_default();
    (
        r["status"].as_str().unwrap_or_default().into(),
        r["reason"].as_str().unwrap_or_default().into(),
    )
}

#[test]
fn operator_issues_through_dns01() {
    let Some((cp, kubeconfig, _)) = operator_control_plane() else {
        return;
    };
    let mut o = PebbleOptions::http(free_port());
    o.bind = Some(common::bind::ZONE.into());
    let Some(pebble) = Pebble::start(&o) else {
        return;
    };
    let bind = pebble.bind.as_ref().expect("bind").address();
    let manifests = format!(
        r#"apiVersion: v1
kind: Namespace
metadata: {{name: demo}}
---
apiVersion: v1
kind: Namespace
metadata: {{name: cert-manager}}
---
apiVersion: v1
kind: Secret
metadata: {{name: tsig, namespace: cert-manager}}
stringData: {{secret: "{secret}"}}
---
apiVersion: cert-manager.io/v1
kind: ClusterIssuer
metadata: {{name: pebble}}
spec:
  acme:
    server: {server}
    email: ops@example.test
    caBundle: {bundle}
    privateKeySecretRef: {{name: pebble-account}}
    solvers:
      - dns01:
          rfc2136:
            nameserver: "{bind}"
            tsigKeyName: {key}
            tsigAlgorithm: HMACSHA256
            tsigSecretSecretRef: {{name: tsig, key: secret}}
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {{name: web, namespace: demo}}
spec:
  secretName: web-tls
  issuerRef: {{name: pebble, kind: ClusterIssuer}}
  dnsNames: [op.example.test]
"#,
        secret = common::bind::TSIG_SECRET,
        server = pebble.directory_url,
        bundle = pebble.ca_bundle(),
        key = common::bind::TSIG_KEY,
    );
    cp.create_all(&manifests).expect("manifests");
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("operator.log");
    let mut op = start_operator(
        &kubeconfig,
        &log,
        &[
            "--metrics-address",
            "",
            "--dns01-recursive-nameservers",
            &bind,
        ],
    );
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();
    let issuer = cp
        .wait_for(
            "ClusterIssuer pebble Ready",
            Duration::from_secs(30),
            || {
                let o = get(&cp, "/apis/cert-manager.io/v1/clusterissuers/pebble");
                (ready(&o).0 == "True").then_some(o)
            },
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    assert_eq!(ready(&issuer).1, "ACMEAccountRegistered");
    assert!(
        issuer["status"]["acme"]["uri"]
            .as_str()
            .unwrap_or_default()
            .starts_with("https://127.0.0.1:"),
        "{issuer}"
    );
    assert_eq!(
        issuer["status"]["acme"]["lastRegisteredEmail"],
        "ops@example.test"
    );
    let account = get(
        &cp,
        "/api/v1/namespaces/cert-manager/secrets/pebble-account",
    );
    assert!(
        account["data"]["tls.key"].is_string(),
        "no account key Secret: {account}"
    );

    let cert = cp
        .wait_for("Certificate web Ready", Duration::from_secs(60), || {
            let o = get(
                &cp,
                "/apis/cert-manager.io/v1/namespaces/demo/certificates/web",
            );
            (ready(&o).0 == "True").then_some(o)
        })
        .unwrap_or_else(|e| panic!("{e}\n{}\npebble:\n{}", logs(), pebble.log_text()));
    assert_eq!(cert["status"]["revision"], 1, "{cert}");
    let secret = get(&cp, "/api/v1/namespaces/demo/secrets/web-tls");
    use base64::Engine;
    let crt = base64::engine::general_purpose::STANDARD
        .decode(secret["data"]["tls.crt"].as_str().unwrap_or_default())
        .expect("tls.crt");
    let chain = dir.path().join("chain.pem");
    std::fs::write(&chain, &crt).expect("chain");
    pebble.assert_issued(&chain);
    terminate(&mut op);
}
