//! CA injection on a real control plane, under the shipped RBAC: cert-manager's
//! `inject-ca-from` (a Certificate) and `inject-ca-from-secret` (a Secret that allows it),
//! and cert-utils-operator's `injectca-from-secret`, into a ValidatingWebhookConfiguration,
//! a MutatingWebhookConfiguration, a CRD's conversion webhook, an APIService, a Secret and
//! a ConfigMap; a Secret that does not allow direct injection is refused with a Warning
//! Event; when the CA is renewed, every object gets the new bundle.

mod common;

use base64::Engine;
use common::*;
use serde_json::{json, Value};
use std::time::Duration;

const CA: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: demo}\n---\napiVersion: cert-manager.io/v1\nkind: Issuer\nmetadata: {name: self, namespace: demo}\nspec: {selfSigned: {}}\n---\napiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {name: ca, namespace: demo}\nspec: {secretName: ca, issuerRef: {name: self}, commonName: inject-ca, isCA: true, privateKey: {algorithm: ECDSA}}\n---\napiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {name: allowed, namespace: demo}\nspec:\n  secretName: allowed\n  issuerRef: {name: self}\n  commonName: allowed-ca\n  isCA: true\n  privateKey: {algorithm: ECDSA}\n  secretTemplate: {annotations: {cert-manager.io/allow-direct-injection: 'true'}}\n";

fn webhook(kind: &str, name: &str, annotation: &str, value: &str) -> Value {
    // Matches nothing (a namespace label no namespace has), so it never intercepts.
    let hook = |hook_name: String| {
        json!({
            "name": hook_name,
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "failurePolicy": "Ignore",
            "namespaceSelector": {"matchLabels": {"never": "matched"}},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["configmaps"]}],
            "clientConfig": {"url": "https://127.0.0.1:1/x"}
        })
    };
    json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": kind,
           "metadata": {"name": name, "annotations": {annotation: value}},
           "webhooks": [hook(format!("{name}.example.com")), hook(format!("{name}-2.example.com"))]})
}

fn b64_decode(v: &Value) -> Option<String> {
    v.as_str()
        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}

#[test]
fn ca_bundles_reach_every_kind_and_follow_a_renewal() {
    let Some((cp, kubeconfig, _)) = operator_control_plane() else {
        return;
    };
    cp.create_all(CA).expect("CA manifests");
    let post = |path: &str, v: Value| cp.admin("POST", path, Some(&v.to_string())).expect(path);
    let wh = "/apis/admissionregistration.k8s.io/v1";
    post(
        &format!("{wh}/validatingwebhookconfigurations"),
        webhook(
            "ValidatingWebhookConfiguration",
            "v1",
            "cert-manager.io/inject-ca-from",
            "demo/ca",
        ),
    );
    post(
        &format!("{wh}/mutatingwebhookconfigurations"),
        webhook(
            "MutatingWebhookConfiguration",
            "m1",
            "cert-manager.io/inject-ca-from-secret",
            "demo/allowed",
        ),
    );
    post(
        &format!("{wh}/mutatingwebhookconfigurations"),
        webhook(
            "MutatingWebhookConfiguration",
            "m2",
            "cert-manager.io/inject-ca-from-secret",
            "demo/ca",
        ),
    );
    let version = |name: &str, storage: bool| {
        json!({"name": name, "served": true, "storage": storage,
               "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}})
    };
    post(
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
               "metadata": {"name": "widgets.example.com",
                            "annotations": {"cert-utils-operator.redhat-cop.io/injectca-from-secret": "demo/ca"}},
               "spec": {"group": "example.com", "scope": "Namespaced",
                        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                        "versions": [version("v1", true), version("v2", false)],
                        "conversion": {"strategy": "Webhook", "webhook": {"conversionReviewVersions": ["v1"],
                            "clientConfig": {"url": "https://127.0.0.1:1/convert"}}}}}),
    );
    post(
        "/apis/apiregistration.k8s.io/v1/apiservices",
        json!({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
               "metadata": {"name": "v1beta1.widgets.example.com",
                            "annotations": {"cert-manager.io/inject-ca-from": "demo/ca"}},
               "spec": {"group": "widgets.example.com", "version": "v1beta1", "groupPriorityMinimum": 1000,
                        "versionPriority": 15, "service": {"name": "nowhere", "namespace": "demo", "port": 443}}}),
    );
    cp.create_all("apiVersion: v1\nkind: Secret\nmetadata:\n  name: bundle\n  namespace: demo\n  annotations: {cert-utils-operator.redhat-cop.io/injectca-from-secret: demo/ca}\ntype: Opaque\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bundle\n  namespace: demo\n  annotations: {cert-utils-operator.redhat-cop.io/injectca-from-secret: demo/ca}\n")
        .expect("secret and configmap");

    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("operator.log");
    let mut op = start_operator(&kubeconfig, &log, &["--metrics-address", ""]);
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();
    let ca_of = |name: &str| {
        cp.admin(
            "GET",
            &format!("/api/v1/namespaces/demo/secrets/{name}"),
            None,
        )
        .ok()
        .and_then(|s| b64_decode(&s["data"]["ca.crt"]))
    };
    let injected = |cp: &certwright_testkube::ControlPlane| -> Vec<Option<String>> {
        let get = |p: &str| cp.admin("GET", p, None).unwrap_or_default();
        let v = get(&format!("{wh}/validatingwebhookconfigurations/v1"));
        let m = get(&format!("{wh}/mutatingwebhookconfigurations/m1"));
        let crd =
            get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com");
        let api = get("/apis/apiregistration.k8s.io/v1/apiservices/v1beta1.widgets.example.com");
        let secret = get("/api/v1/namespaces/demo/secrets/bundle");
        let cm = get("/api/v1/namespaces/demo/configmaps/bundle");
        vec![
            b64_decode(&v["webhooks"][0]["clientConfig"]["caBundle"]),
            b64_decode(&v["webhooks"][1]["clientConfig"]["caBundle"]),
            b64_decode(&crd["spec"]["conversion"]["webhook"]["clientConfig"]["caBundle"]),
            b64_decode(&api["spec"]["caBundle"]),
            b64_decode(&secret["data"]["ca.crt"]),
            cm["data"]["ca.crt"].as_str().map(str::to_string),
            // From the Secret that allows direct injection.
            b64_decode(&m["webhooks"][0]["clientConfig"]["caBundle"]),
        ]
    };
    let ca = cp
        .wait_for("the CA issued", Duration::from_secs(60), || ca_of("ca"))
        .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    let allowed = cp
        .wait_for("the allowed CA issued", Duration::from_secs(60), || {
            ca_of("allowed")
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    let mut want = vec![Some(ca.clone()); 6];
    want.push(Some(allowed.clone()));
    cp.wait_for("every object injected", Duration::from_secs(60), || {
        (injected(&cp) == want).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}\n{}", injected(&cp), logs()));
    // A Secret that does not allow direct injection: refused, with a Warning Event.
    let m2 = cp
        .admin(
            "GET",
            &format!("{wh}/mutatingwebhookconfigurations/m2"),
            None,
        )
        .expect("m2");
    assert!(
        m2["webhooks"][0]["clientConfig"]["caBundle"].is_null(),
        "{m2}"
    );
    let events = cp
        .admin("GET", "/api/v1/namespaces/default/events", None)
        .expect("events");
    let refused = events["items"].as_array().is_some_and(|items| {
        items.iter().any(|e| {
            e["involvedObject"]["name"] == "m2"
                && e["reason"] == "InjectionNotAllowed"
                && e["type"] == "Warning"
        })
    });
    assert!(refused, "{events}");

    // The CA is renewed: every object that names it follows.
    let renew = std::process::Command::new(bin())
        .args(["renew", "ca", "-n", "demo"])
        .env("KUBECONFIG", &cp.kubeconfig)
        .output()
        .expect("renew runs");
    assert!(renew.status.success(), "{}", text(&renew));
    let renewed = cp
        .wait_for("a new CA", Duration::from_secs(60), || {
            ca_of("ca").filter(|c| *c != ca)
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    let mut want = vec![Some(renewed); 6];
    want.push(Some(allowed));
    cp.wait_for(
        "every object follows the renewal",
        Duration::from_secs(60),
        || (injected(&cp) == want).then_some(()),
    )
    .unwrap_or_else(|e| panic!("{e}: {:?}\n{}", injected(&cp), logs()));

    // A restart writes none of the targets again.
    let paths: Vec<String> = vec![
        format!("{wh}/validatingwebhookconfigurations/v1"),
        format!("{wh}/mutatingwebhookconfigurations/m1"),
        format!("{wh}/mutatingwebhookconfigurations/m2"),
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com".into(),
        "/apis/apiregistration.k8s.io/v1/apiservices/v1beta1.widgets.example.com".into(),
        "/api/v1/namespaces/demo/secrets/bundle".into(),
        "/api/v1/namespaces/demo/configmaps/bundle".into(),
    ];
    let mut op = restart_writes_nothing(
        &cp,
        &mut op,
        &kubeconfig,
        &dir.path().join("restarted.log"),
        &["--metrics-address", ""],
        &paths,
    );
    terminate(&mut op);
}
