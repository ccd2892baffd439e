//! The bad-input catalogue: each malformed input gives its resource a specific reason and
//! message; every other resource still becomes Ready; nothing panics.

mod common;

use certwright_pki::cert::{self, Signer, Validity};
use certwright_pki::{pem, KeyAlgorithm, KeyEncoding, Name, PrivateKey, Profile, SubjectFields};
use common::catalogue::{cert, certificate_cases};
use common::*;

const NOW: i64 = 1_790_000_000; // 2026-09

/// A PEM certificate and key: (cert, key).
fn make_cert(cn: &str, is_ca: bool, not_before: i64, not_after: i64) -> (String, String) {
    let key = PrivateKey::generate(KeyAlgorithm::Ecdsa(certwright_pki::Curve::P256)).expect("key");
    let profile = Profile {
        subject: Name::from_fields(&SubjectFields {
            common_name: Some(cn.into()),
            ..Default::default()
        }),
        is_ca,
        ..Default::default()
    };
    let csr = cert::parse_csr(&cert::build_csr(&profile, &key).expect("csr")).expect("parse");
    let der = cert::sign_csr(
        &csr,
        is_ca,
        &Validity {
            not_before,
            not_after,
        },
        &cert::random_serial(),
        &Signer::SelfSigned(&key),
        None,
        &[],
    )
    .expect("sign");
    (
        pem::encode("CERTIFICATE", &der),
        key.to_pem(KeyEncoding::Pkcs8).expect("pem"),
    )
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("      {l}\n")).collect()
}

fn ca_secret(name: &str, crt: &str, key: &str) -> String {
    let mut out = format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: bad}}\ntype: kubernetes.io/tls\nstringData:\n");
    if !crt.is_empty() {
        out.push_str(&format!("  tls.crt: |\n{}", indent(crt)));
    }
    if !key.is_empty() {
        out.push_str(&format!("  tls.key: |\n{}", indent(key)));
    }
    out
}

fn ca_issuer(name: &str) -> String {
    format!("apiVersion: cert-manager.io/v1\nkind: Issuer\nmetadata: {{name: {name}, namespace: bad}}\nspec: {{ca: {{secretName: {name}}}}}\n")
}

#[test]
fn every_bad_input_gets_a_specific_reason_and_the_rest_becomes_ready() {
    let tmp = tempfile::tempdir().expect("tmp");
    let m = tmp.path().join("m");
    std::fs::create_dir(&m).expect("dir");
    for f in ["internal-pki.yaml", "services.yaml"] {
        std::fs::copy(repo().join("examples/e2e").join(f), m.join(f)).expect("copy");
    }
    let mut docs = vec![
        "apiVersion: cert-manager.io/v1\nkind: Issuer\nmetadata: {name: self, namespace: bad}\nspec: {selfSigned: {}}\n".to_string(),
        "apiVersion: cert-manager.io/v1\nkind: Issuer\nmetadata: {name: empty-issuer, namespace: bad}\nspec: {}\n".to_string(),
        "apiVersion: v1\nkind: Secret\nmetadata: {name: pw, namespace: bad}\nstringData: {password: x}\n".to_string(),
    ];
    let (leaf_crt, leaf_key) = make_cert("leaf", false, NOW, NOW + 10 * 365 * 86_400);
    let (ca_crt, _) = make_cert("ca", true, NOW, NOW + 10 * 365 * 86_400);
    let (_, other_key) = make_cert("other", true, NOW, NOW + 86_400);
    let (old_crt, old_key) = make_cert("old-ca", true, NOW - 10 * 86_400, NOW - 86_400);
    for (name, crt, key) in [
        ("ca-not-ca", leaf_crt.as_str(), leaf_key.as_str()),
        ("ca-key-mismatch", ca_crt.as_str(), other_key.as_str()),
        ("ca-expired", old_crt.as_str(), old_key.as_str()),
        ("ca-bad-pem", "not a certificate", leaf_key.as_str()),
        ("ca-no-key", ca_crt.as_str(), ""),
    ] {
        docs.push(ca_secret(name, crt, key));
        docs.push(ca_issuer(name));
    }
    docs.push(ca_issuer("ca-missing"));
    let cases = certificate_cases();
    for (name, spec, _, _) in &cases {
        docs.push(cert(name, &spec.replace("SECRET", &format!("s-{name}"))));
    }
    write(&m, "bad.yaml", &docs.join("---\n"));
    // Documents that cannot become resources.
    write(
        &m,
        "broken-yaml.yaml",
        "apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {name: [unclosed\n",
    );
    write(&m, "unknown-kind.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: x}\n---\napiVersion: cert-manager.io/v1\nkind: Certificat\nmetadata: {name: y}\n---\nmetadata: {name: nokind}\n");
    write(&m, "bad-secret.yaml", "apiVersion: v1\nkind: Secret\nmetadata: {name: b64, namespace: bad}\ndata: {tls.crt: '%%%not base64'}\n");
    write(&m, "bad-configmaps.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b64, namespace: bad}\nbinaryData: {x.bin: '%%%not base64'}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: nobundle\n  namespace: bad\n  annotations: {cert-utils-operator.redhat-cop.io/generate-java-truststore: 'true'}\ndata: {other: x}\n");
    // Routes the edge cannot serve: nothing of theirs may reach HAProxy's configuration.
    let route = |name: &str, spec: &str| {
        format!("apiVersion: route.openshift.io/v1\nkind: Route\nmetadata: {{name: {name}, namespace: bad}}\nspec: {spec}\n")
    };
    write(
        &m,
        "bad-routes.yaml",
        &[
            route("nohost", "{to: {kind: Service, name: x}, tls: {termination: edge}}"),
            route("inject", "{host: \"a.example.com\\n    server evil 10.0.0.1:80\", to: {name: x}, tls: {termination: edge}}"),
            route("wild", "{host: '*.example.com', to: {name: x}, tls: {termination: edge}}"),
            route("term", "{host: t.example.com, to: {name: x}, tls: {termination: reencrypt-ish}}"),
            route("kind", "{host: k.example.com, to: {kind: Deployment, name: x}}"),
            route("svc", "{host: s.example.com, to: {name: 'X Y'}, tls: {termination: edge}}"),
        ]
        .join("---\n"),
    );

    let state = tmp.path().join("state");
    let out = once(&[&m], &state);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "not everything is ready: {}",
        text(&out)
    );
    assert!(!err.contains("panicked"), "{err}");
    let st = status_json(&state);
    let mut checked = 0;
    for (name, _, reason, fragment) in &cases {
        let (ready, got_reason, message, _) =
            cert_status(&st, "bad", name).unwrap_or_else(|| panic!("{name} has a status"));
        if *reason == "Ready" {
            assert_eq!(ready, "True", "{name}: {got_reason}: {message}");
        } else {
            assert_eq!(ready, "False", "{name}");
            assert_eq!(&got_reason, reason, "{name}: {message}");
            assert!(
                message.contains(fragment),
                "{name}: {message:?} should mention {fragment:?}"
            );
            assert!(
                err.contains(&format!("bad/{name}")),
                "--once lists {name}: {err}"
            );
            checked += 1;
        }
    }
    // The good scenario is untouched by the bad neighbours.
    for (ns, name) in [
        ("cert-manager", "rootca"),
        ("demo", "customer"),
        ("demo", "preference"),
        ("demo", "recommendation"),
    ] {
        let s = cert_status(&st, ns, name).expect("good status");
        assert_eq!(s.0, "True", "{ns}/{name}: {s:?}");
    }
    let problems: Vec<(String, String)> = st["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .map(|p| {
            (
                p["reason"].as_str().unwrap_or_default().to_string(),
                p["message"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let has = |reason: &str, frag: &str| {
        problems
            .iter()
            .any(|(r, m)| r == reason && m.contains(frag))
    };
    assert!(has("InvalidYAML", "broken-yaml.yaml:1"), "{problems:?}");
    assert!(has("UnknownKind", "v1/Service"), "{problems:?}");
    assert!(
        has("UnknownKind", "unknown kind \"Certificat\""),
        "{problems:?}"
    );
    assert!(has("InvalidManifest", "kind: required"), "{problems:?}");
    assert!(
        has("InvalidSecret", "data.tls.crt: not valid base64"),
        "{problems:?}"
    );
    assert!(
        has("InvalidConfigMap", "binaryData.x.bin: not valid base64"),
        "{problems:?}"
    );
    assert!(
        has("InvalidConfigMap", "ca-bundle.crt: missing or empty"),
        "{problems:?}"
    );
    for (name, frag) in [
        ("nohost", "spec.host: required"),
        ("inject", "spec.host"),
        ("wild", "wildcard routes are not served"),
        ("term", "spec.tls.termination: \"reencrypt-ish\""),
        ("kind", "spec.to.kind: \"Deployment\": only Service"),
        ("svc", "spec.to.name"),
    ] {
        let found = problems.iter().any(|(r, m)| {
            r == "InvalidRoute" && m.contains(&format!("Route bad/{name}: ")) && m.contains(frag)
        });
        assert!(found, "{name}: {problems:?}");
    }
    assert!(
        st["routes"].as_array().is_none_or(|r| r.is_empty()),
        "no bad Route is served: {}",
        st["routes"]
    );
    checked += 13;
    assert!(checked >= 25, "catalogue has {checked} cases");
    // No key material in what users see.
    let status_text = serde_json::to_string(&st).expect("json");
    for secret in [&leaf_key, &other_key, &old_key] {
        let body: String = secret.lines().nth(1).unwrap_or_default().to_string();
        assert!(
            !status_text.contains(&body) && !err.contains(&body),
            "key material leaked"
        );
    }
    println!("{checked} bad inputs checked");
}
