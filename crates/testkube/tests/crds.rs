//! certwright's generated CRDs install on a real API server, and manifests in the shapes
//! cert-manager documents for its v1 kinds apply cleanly and read back intact.

use certwright_testkube::{ControlPlane, ADMIN_TOKEN};

fn repo_file(rel: &str) -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn collection(v: &serde_json::Value) -> String {
    let plural = match v["kind"].as_str().unwrap_or_default() {
        "Certificate" => "certificates",
        "CertificateRequest" => "certificaterequests",
        "Issuer" => "issuers",
        "ClusterIssuer" => "clusterissuers",
        other => panic!("unexpected kind {other}"),
    };
    match v["metadata"]["namespace"].as_str() {
        Some(ns) => format!("/apis/cert-manager.io/v1/namespaces/{ns}/{plural}"),
        None => format!("/apis/cert-manager.io/v1/{plural}"),
    }
}

#[test]
fn generated_crds_accept_cert_manager_manifests() {
    let Some(cp) = ControlPlane::start_or_skip() else {
        return;
    };
    cp.install_crds(&repo_file("deploy/crds/crds.yaml"))
        .expect("CRDs install and are served");

    cp.admin(
        "POST",
        "/api/v1/namespaces",
        Some(r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"sandbox"}}"#),
    )
    .expect("namespace");
    let examples = repo_file("tests/controlplane/cert-manager-examples.yaml");
    let mut created = 0;
    for v in certwright_testkube::yaml_documents(&examples).expect("yaml") {
        if v.is_null() {
            continue;
        }
        cp.admin("POST", &collection(&v), Some(&v.to_string()))
            .unwrap_or_else(|e| panic!("{e}"));
        created += 1;
    }
    assert_eq!(created, 6);
    let c = cp
        .admin(
            "GET",
            "/apis/cert-manager.io/v1/namespaces/sandbox/certificates/example-com",
            None,
        )
        .expect("get");
    assert_eq!(c["spec"]["keystores"]["pkcs12"]["profile"], "Modern2023");
    assert_eq!(c["spec"]["privateKey"]["size"], 2048);
    assert_eq!(
        c["spec"]["uris"][0],
        "spiffe://cluster.local/ns/sandbox/sa/example"
    );
    let acme = cp
        .admin(
            "GET",
            "/apis/cert-manager.io/v1/clusterissuers/letsencrypt-staging",
            None,
        )
        .expect("get");
    assert_eq!(
        acme["spec"]["acme"]["solvers"][1]["dns01"]["route53"]["region"], "eu-west-1",
        "ACME config kept whole"
    );
    // cert-manager's spelling of the CA issuer's URL fields, kept by the schema.
    let ca = cp
        .admin(
            "GET",
            "/apis/cert-manager.io/v1/namespaces/sandbox/issuers/ca-issuer",
            None,
        )
        .expect("get");
    assert_eq!(
        ca["spec"]["ca"]["issuingCertificateURLs"][0], "http://pki.example.com/ca.crt",
        "{ca}"
    );
    assert_eq!(
        ca["spec"]["ca"]["ocspServers"][0],
        "http://ocsp.example.com"
    );
    // The schema types fields: a string where a list belongs is refused.
    let bad = r#"{"apiVersion":"cert-manager.io/v1","kind":"Certificate","metadata":{"name":"bad","namespace":"sandbox"},
        "spec":{"secretName":"s","issuerRef":{"name":"ca-issuer"},"dnsNames":"not-a-list"}}"#;
    let (code, body) = cp
        .request(
            ADMIN_TOKEN,
            "POST",
            "/apis/cert-manager.io/v1/namespaces/sandbox/certificates",
            Some(bad),
        )
        .expect("request");
    assert_eq!(code, 422, "{body}");
    let missing = r#"{"apiVersion":"cert-manager.io/v1","kind":"Certificate","metadata":{"name":"bad2","namespace":"sandbox"},
        "spec":{"issuerRef":{"name":"ca-issuer"},"dnsNames":["x"]}}"#;
    let (code, body) = cp
        .request(
            ADMIN_TOKEN,
            "POST",
            "/apis/cert-manager.io/v1/namespaces/sandbox/certificates",
            Some(missing),
        )
        .expect("request");
    assert_eq!(code, 422, "secretName is required: {body}");
}
