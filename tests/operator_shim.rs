//! cert-manager's ingress-shim on a real control plane, under the shipped RBAC: an Ingress
//! annotated with an issuer gets one Certificate per tls entry, owned by it and shaped by
//! its annotations, which is issued; editing the Ingress updates or deletes them; a
//! Certificate of that name it does not own is left alone; an Ingress naming two issuers
//! gets a Warning Event.

mod common;

use common::*;
use std::time::Duration;

fn ingress(name: &str, annotations: &str, tls: &[(&str, &str)]) -> String {
    let tls: String = tls
        .iter()
        .map(|(host, secret)| format!("  - {{hosts: [{host}], secretName: {secret}}}\n"))
        .collect();
    format!("apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  namespace: demo\n  annotations: {{{annotations}}}\nspec:\n  rules:\n  - host: web.demo.example.com\n    http: {{paths: [{{path: /, pathType: Prefix, backend: {{service: {{name: web, port: {{number: 443}}}}}}}}]}}\n  tls:\n{tls}")
}

fn certificate(cp: &certwright_testkube::ControlPlane, name: &str) -> Option<serde_json::Value> {
    cp.admin(
        "GET",
        &format!("/apis/cert-manager.io/v1/namespaces/demo/certificates/{name}"),
        None,
    )
    .ok()
}

#[test]
fn an_annotated_ingress_owns_its_certificates() {
    let Some((cp, kubeconfig, _)) = operator_control_plane() else {
        return;
    };
    cp.create_all(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: demo}}\n---\napiVersion: cert-manager.io/v1\nkind: Issuer\nmetadata: {{name: self, namespace: demo}}\nspec: {{selfSigned: {{}}}}\n---\napiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {{name: other-tls, namespace: demo}}\nspec: {{secretName: other-tls, issuerRef: {{name: self}}, dnsNames: [mine.example.com]}}\n---\n{}---\n{}",
        ingress(
            "web",
            "cert-manager.io/issuer: self, cert-manager.io/duration: 24h, cert-manager.io/private-key-algorithm: ECDSA",
            &[("web.demo.example.com", "web-tls"), ("api.demo.example.com", "api-tls"), ("other.demo.example.com", "other-tls")],
        ),
        ingress("both", "cert-manager.io/issuer: self, cert-manager.io/cluster-issuer: x", &[("b.example.com", "both-tls")]),
    ))
    .expect("manifests");
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("operator.log");
    let mut op = start_operator(&kubeconfig, &log, &["--metrics-address", ""]);
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();
    let uid = cp
        .admin(
            "GET",
            "/apis/networking.k8s.io/v1/namespaces/demo/ingresses/web",
            None,
        )
        .expect("ingress")["metadata"]["uid"]
        .as_str()
        .expect("uid")
        .to_string();
    for name in ["web-tls", "api-tls"] {
        let c = cp
            .wait_for(
                &format!("Certificate {name}"),
                Duration::from_secs(30),
                || certificate(&cp, name),
            )
            .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
        let owner = &c["metadata"]["ownerReferences"][0];
        assert_eq!(owner["uid"], uid.as_str(), "{c}");
        assert_eq!(owner["controller"], true);
        assert_eq!(c["spec"]["secretName"], name);
        assert_eq!(c["spec"]["duration"], "24h");
        assert_eq!(c["spec"]["privateKey"]["algorithm"], "ECDSA");
        assert_eq!(c["spec"]["issuerRef"]["name"], "self");
    }
    assert_eq!(
        certificate(&cp, "web-tls").expect("web")["spec"]["dnsNames"][0],
        "web.demo.example.com"
    );
    // Issued like any Certificate.
    cp.wait_for("web-tls issued", Duration::from_secs(60), || {
        cp.admin("GET", "/api/v1/namespaces/demo/secrets/web-tls", None)
            .ok()
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    // Not its own: left alone.
    let other = certificate(&cp, "other-tls").expect("other");
    assert!(other["metadata"]["ownerReferences"].is_null(), "{other}");
    assert_eq!(other["spec"]["dnsNames"][0], "mine.example.com");
    // Two issuers named: a Warning Event, no Certificate.
    cp.wait_for("the BadConfig Event", Duration::from_secs(30), || {
        let events = cp
            .admin("GET", "/api/v1/namespaces/demo/events", None)
            .ok()?;
        events["items"]
            .as_array()?
            .iter()
            .any(|e| {
                e["involvedObject"]["name"] == "both"
                    && e["type"] == "Warning"
                    && e["reason"] == "BadConfig"
            })
            .then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    assert!(certificate(&cp, "both-tls").is_none());

    // The Ingress changes: a new duration, and the api entry gone.
    let (ok, out) = cp.kubectl(
        &["apply", "-f", "-"],
        &ingress(
            "web",
            "cert-manager.io/issuer: self, cert-manager.io/duration: 48h, cert-manager.io/private-key-algorithm: ECDSA",
            &[("web.demo.example.com", "web-tls")],
        ),
    );
    assert!(ok, "{out}");
    cp.wait_for("web-tls updated", Duration::from_secs(30), || {
        certificate(&cp, "web-tls").filter(|c| c["spec"]["duration"] == "48h")
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    cp.wait_for("api-tls deleted", Duration::from_secs(30), || {
        certificate(&cp, "api-tls").is_none().then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", logs()));

    // A restart writes neither the Ingress's Certificate nor its Secret.
    cp.wait_for("web-tls issued again", Duration::from_secs(60), || {
        let c = certificate(&cp, "web-tls")?;
        let ready = c["status"]["conditions"].as_array()?.iter().any(|r| {
            r["type"] == "Ready"
                && r["status"] == "True"
                && r["observedGeneration"] == c["metadata"]["generation"]
        });
        ready.then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    let paths = vec![
        "/apis/cert-manager.io/v1/namespaces/demo/certificates/web-tls".to_string(),
        "/api/v1/namespaces/demo/secrets/web-tls".to_string(),
        "/apis/networking.k8s.io/v1/namespaces/demo/ingresses/web".to_string(),
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
