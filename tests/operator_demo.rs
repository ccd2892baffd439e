//! deploy/demo, the reference scenario's cluster manifests, applied as they are on a real
//! control plane with the operator under the shipped RBAC: every Certificate Ready with
//! its keystores, the customer Route filled from route-customer and service-customer,
//! the passthrough Route left alone, and a renewal rolling out the one Deployment that
//! follows the renewed Secret (kube-controller-manager makes its ReplicaSet).
//!
//! One change to the manifests: the customer route's public certificate comes from the
//! internal CA instead of Let's Encrypt (no ACME server is reachable here; the ACME path
//! of the same Certificate is tests/operator_acme.rs's
//! `operator_scenario_route_certificate_through_route53`).

mod common;

use base64::Engine;
use certwright_testkube::ControlPlane;
use common::*;
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

const ROUTE_CUSTOMER: &str = "apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: route-customer, namespace: demo}
spec:
  secretName: route-customer
  issuerRef: {name: internal-issuer, kind: ClusterIssuer}
  commonName: customer-demo.apps.example.com
  dnsNames: [customer-demo.apps.example.com]
  privateKey: {encoding: PKCS8}
";

fn get(cp: &ControlPlane, path: &str) -> Value {
    cp.admin("GET", path, None).unwrap_or_default()
}

fn secret_text(cp: &ControlPlane, name: &str, key: &str) -> Option<String> {
    let s = get(cp, &format!("/api/v1/namespaces/demo/secrets/{name}"));
    s["data"][key]
        .as_str()
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}

fn ready(cp: &ControlPlane, ns: &str, name: &str) -> bool {
    let c = get(
        cp,
        &format!("/apis/cert-manager.io/v1/namespaces/{ns}/certificates/{name}"),
    );
    c["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

fn route(cp: &ControlPlane, name: &str) -> Value {
    get(
        cp,
        &format!("/apis/route.openshift.io/v1/namespaces/demo/routes/{name}"),
    )
}

/// The ReplicaSets of the Deployments labelled app=APP.
fn replica_sets(cp: &ControlPlane, app: &str) -> usize {
    get(
        cp,
        &format!("/apis/apps/v1/namespaces/demo/replicasets?labelSelector=app%3D{app}"),
    )["items"]
        .as_array()
        .map_or(0, Vec::len)
}

fn renew(kubeconfig: &std::path::Path, name: &str) {
    let out = Command::new(bin())
        .args(["renew", name, "-n", "demo"])
        .env("KUBECONFIG", kubeconfig)
        .output()
        .expect("renew");
    assert!(out.status.success(), "renew: {}", text(&out));
}

#[test]
fn deploy_demo_applies_as_is_and_delivers_routes_and_rollouts() {
    let Some((cp, kubeconfig, _)) = operator_control_plane() else {
        return;
    };
    cp.install_route_crd().expect("route CRD");
    let dir = repo().join("deploy/demo");
    let mut docs = Vec::new();
    for f in [
        "namespaces.yaml",
        "pki.yaml",
        "certificates.yaml",
        "workloads.yaml",
        "routes.yaml",
    ] {
        docs.push(
            std::fs::read_to_string(dir.join(f)).unwrap_or_else(|e| panic!("deploy/demo/{f}: {e}")),
        );
    }
    docs.push(ROUTE_CUSTOMER.to_string());
    cp.create_all(&docs.join("\n---\n"))
        .expect("deploy/demo applies");
    let tmp = tempfile::tempdir().expect("tempdir");
    let log = tmp.path().join("operator.log");
    let mut op = start_operator(
        &kubeconfig,
        &log,
        &["--metrics-address", "", "--rollout-debounce", "2s"],
    );
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();

    for (ns, name) in [
        ("cert-manager", "rootca"),
        ("demo", "customer"),
        ("demo", "preference"),
        ("demo", "recommendation"),
        ("demo", "route-customer"),
    ] {
        cp.wait_for(
            &format!("Certificate {ns}/{name} Ready"),
            Duration::from_secs(120),
            || ready(&cp, ns, name).then_some(()),
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    }
    // cert-utils' keystore annotation from the Certificates' secretTemplate.
    for s in [
        "service-customer",
        "route-service-preference",
        "service-recommendation",
    ] {
        let secret = get(&cp, &format!("/api/v1/namespaces/demo/secrets/{s}"));
        assert!(
            secret["data"]["keystore.jks"].is_string()
                && secret["data"]["truststore.jks"].is_string(),
            "{s}: no keystores"
        );
    }
    // The re-encrypt Route: certificate and key from route-customer, destination CA from
    // service-customer. The passthrough Route carries no certificate.
    let want_crt = secret_text(&cp, "route-customer", "tls.crt").expect("route-customer tls.crt");
    let want_ca = secret_text(&cp, "service-customer", "ca.crt").expect("service-customer ca.crt");
    let filled = cp
        .wait_for("the customer Route filled", Duration::from_secs(60), || {
            let r = route(&cp, "customer");
            (r["spec"]["tls"]["certificate"].as_str() == Some(want_crt.as_str())).then_some(r)
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    assert_eq!(
        filled["spec"]["tls"]["destinationCACertificate"].as_str(),
        Some(want_ca.as_str())
    );
    assert_eq!(
        filled["spec"]["tls"]["key"].as_str(),
        secret_text(&cp, "route-customer", "tls.key").as_deref()
    );
    let pass = route(&cp, "preference");
    assert_eq!(pass["spec"]["tls"]["termination"], "passthrough");
    assert!(pass["spec"]["tls"]["certificate"].is_null(), "{pass}");

    // Each Deployment has its first ReplicaSet (kube-controller-manager's); a renewal of
    // the customer's certificate rolls out customer alone, once.
    for app in ["customer", "preference", "recommendation"] {
        cp.wait_for(
            &format!("{app}'s first ReplicaSet"),
            Duration::from_secs(60),
            || (replica_sets(&cp, app) == 1).then_some(()),
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    }
    // Give the operator time to record each Deployment's Secret before the renewal.
    cp.wait_for("each Deployment's record", Duration::from_secs(60), || {
        ["customer", "preference-v1", "recommendation-v1"]
            .iter()
            .all(|d| {
                get(
                    &cp,
                    &format!("/apis/apps/v1/namespaces/demo/deployments/{d}"),
                )["metadata"]["annotations"]["certwright.io/reloaded-from"]
                    .is_string()
            })
            .then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    let generation = route(&cp, "customer")["metadata"]["generation"]
        .as_i64()
        .unwrap_or(0);
    renew(&kubeconfig, "customer");
    cp.wait_for(
        "customer's second ReplicaSet",
        Duration::from_secs(90),
        || (replica_sets(&cp, "customer") == 2).then_some(()),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    // The new service certificate changes no field of the Route (same CA): not written.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(replica_sets(&cp, "customer"), 2, "rolled out once");
    assert_eq!(replica_sets(&cp, "preference"), 1);
    assert_eq!(replica_sets(&cp, "recommendation"), 1);
    assert_eq!(
        route(&cp, "customer")["metadata"]["generation"].as_i64(),
        Some(generation)
    );
    // A renewal of the route certificate reaches the Route once.
    renew(&kubeconfig, "route-customer");
    cp.wait_for(
        "the customer Route's new certificate",
        Duration::from_secs(60),
        || {
            let now = secret_text(&cp, "route-customer", "tls.crt")?;
            (now != want_crt
                && route(&cp, "customer")["spec"]["tls"]["certificate"].as_str()
                    == Some(now.as_str()))
            .then_some(())
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    assert_eq!(
        route(&cp, "customer")["metadata"]["generation"].as_i64(),
        Some(generation + 1)
    );
    terminate(&mut op);
}
