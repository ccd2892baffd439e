//! `certwright operator --namespace NS` (the chart's `watchNamespace`) on a real control
//! plane: Certificates in the watched namespace become Ready, also through a
//! ClusterIssuer used by name; Certificates elsewhere are not touched.

mod common;

use certwright_testkube::ControlPlane;
use common::*;
use std::time::Duration;

const MANIFESTS: &str = r#"apiVersion: v1
kind: Namespace
metadata: {name: watched}
---
apiVersion: v1
kind: Namespace
metadata: {name: elsewhere}
---
apiVersion: cert-manager.io/v1
kind: ClusterIssuer
metadata: {name: cluster-self}
spec: {selfSigned: {}}
---
apiVersion: cert-manager.io/v1
kind: Issuer
metadata: {name: self, namespace: watched}
spec: {selfSigned: {}}
---
apiVersion: cert-manager.io/v1
kind: Issuer
metadata: {name: self, namespace: elsewhere}
spec: {selfSigned: {}}
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: mine, namespace: watched}
spec:
  secretName: mine-tls
  issuerRef: {name: self}
  commonName: mine.watched.svc
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: via-cluster-issuer, namespace: watched}
spec:
  secretName: via-cluster-issuer-tls
  issuerRef: {name: cluster-self, kind: ClusterIssuer}
  commonName: cluster.watched.svc
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: theirs, namespace: elsewhere}
spec:
  secretName: theirs-tls
  issuerRef: {name: self}
  commonName: theirs.elsewhere.svc
"#;

fn ready(cp: &ControlPlane, ns: &str, name: &str) -> bool {
    cp.admin(
        "GET",
        &format!("/apis/cert-manager.io/v1/namespaces/{ns}/certificates/{name}"),
        None,
    )
    .map(|c| {
        c["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
    })
    .unwrap_or(false)
}

#[test]
fn one_namespace_is_watched_and_others_are_left_alone() {
    let Some((cp, kubeconfig, _)) = operator_control_plane() else {
        return;
    };
    cp.create_all(MANIFESTS).expect("manifests");
    let tmp = tempfile::tempdir().expect("tmp");
    let log = tmp.path().join("operator.log");
    let mut op = start_operator(
        &kubeconfig,
        &log,
        &["--metrics-address", "", "--namespace", "watched"],
    );
    let result = cp.wait_for(
        "the watched namespace Ready",
        Duration::from_secs(30),
        || {
            (ready(&cp, "watched", "mine") && ready(&cp, "watched", "via-cluster-issuer"))
                .then_some(())
        },
    );
    // Give the operator time to (wrongly) act elsewhere.
    std::thread::sleep(Duration::from_secs(3));
    let theirs = cp
        .admin(
            "GET",
            "/apis/cert-manager.io/v1/namespaces/elsewhere/certificates/theirs",
            None,
        )
        .expect("certificate");
    let (code, _) = cp
        .request(
            certwright_testkube::ADMIN_TOKEN,
            "GET",
            "/api/v1/namespaces/elsewhere/secrets/theirs-tls",
            None,
        )
        .expect("request");
    let cluster_issuer = cp
        .admin(
            "GET",
            "/apis/cert-manager.io/v1/clusterissuers/cluster-self",
            None,
        )
        .expect("cluster issuer");
    terminate(&mut op);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    result.unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert!(theirs["status"].is_null(), "{}", theirs["status"]);
    assert_eq!(code, 404, "no Secret written outside the watched namespace");
    assert!(
        cluster_issuer["status"].is_null(),
        "ClusterIssuers are not watched in one-namespace mode"
    );
    assert!(!text.contains("elsewhere"), "{text}");
}
