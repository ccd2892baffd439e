//! cert-utils-operator's Route annotations on a real control plane (the test Route CRD),
//! under the shipped RBAC, with the reference scenario's internal PKI: the customer
//! re-encrypt Route gets the route certificate and the destination CA from the two
//! Secrets; an edge Route naming the same Secret gets it too (with the CA, as it asks);
//! a passthrough Route is left alone; a Route naming a missing Secret gets a Warning Event
//! and a problem annotation and is filled once the Secret exists; a Route annotated with
//! an issuer gets its own Certificate (cert-manager's route shim) and its certificate; a
//! renewal updates each Route that names the Secret exactly once.

mod common;

use base64::Engine;
use common::*;
use std::time::Duration;

const PKI: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: cert-manager}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: demo}\n";

fn certificate(name: &str, dns: &str) -> String {
    format!("apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {{name: {name}, namespace: demo}}\nspec: {{secretName: {name}, issuerRef: {{name: internal-issuer, kind: ClusterIssuer}}, dnsNames: [{dns}], privateKey: {{algorithm: ECDSA}}}}\n")
}

fn route(name: &str, termination: &str, annotations: &str) -> String {
    format!("apiVersion: route.openshift.io/v1\nkind: Route\nmetadata:\n  name: {name}\n  namespace: demo\n  annotations: {{{annotations}}}\nspec:\n  host: {name}-demo.apps.example.com\n  to: {{kind: Service, name: customer}}\n  tls: {{termination: {termination}}}\n")
}

fn get(cp: &certwright_testkube::ControlPlane, path: &str) -> serde_json::Value {
    cp.admin("GET", path, None).unwrap_or_default()
}

fn secret_text(cp: &certwright_testkube::ControlPlane, name: &str, key: &str) -> Option<String> {
    let s = get(cp, &format!("/api/v1/namespaces/demo/secrets/{name}"));
    s["data"][key]
        .as_str()
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}

fn route_obj(cp: &certwright_testkube::ControlPlane, name: &str) -> serde_json::Value {
    get(
        cp,
        &format!("/apis/route.openshift.io/v1/namespaces/demo/routes/{name}"),
    )
}

#[test]
fn routes_get_their_certificates_and_each_renewal_once() {
    let Some((cp, kubeconfig, _)) = operator_control_plane() else {
        return;
    };
    cp.install_route_crd().expect("route CRD");
    let internal =
        std::fs::read_to_string(repo().join("examples/e2e/internal-pki.yaml")).expect("pki");
    let cu = "cert-utils-operator.redhat-cop.io";
    let docs = [
        PKI.to_string(),
        internal,
        certificate("service-customer", "customer.demo.svc"),
        certificate("route-customer", "customer-demo.apps.example.com"),
        route(
            "customer",
            "reencrypt",
            &format!("{cu}/certs-from-secret: route-customer, {cu}/destinationCA-from-secret: service-customer"),
        ),
        route("customer-edge", "edge", &format!("{cu}/certs-from-secret: route-customer, {cu}/inject-CA: 'true'")),
        route("customer-pass", "passthrough", &format!("{cu}/certs-from-secret: route-customer")),
        route("waiting", "edge", &format!("{cu}/certs-from-secret: later")),
        // cert-manager's route shim: a Certificate owned by the Route.
        route("shimmed", "edge", "cert-manager.io/cluster-issuer: internal-issuer, cert-manager.io/duration: 48h"),
    ];
    cp.create_all(&docs.join("---\n")).expect("manifests");
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("operator.log");
    let mut op = start_operator(&kubeconfig, &log, &["--metrics-address", ""]);
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();

    let filled = |name: &str, want: &str| {
        let r = route_obj(&cp, name);
        (r["spec"]["tls"]["certificate"].as_str() == Some(want)).then_some(r)
    };
    let crt = cp
        .wait_for(
            "the route certificate issued",
            Duration::from_secs(60),
            || secret_text(&cp, "route-customer", "tls.crt"),
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    let customer = cp
        .wait_for("the customer Route filled", Duration::from_secs(60), || {
            filled("customer", &crt)
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    let tls = &customer["spec"]["tls"];
    assert_eq!(
        tls["key"].as_str(),
        secret_text(&cp, "route-customer", "tls.key").as_deref()
    );
    let service_ca = cp
        .wait_for("the service CA", Duration::from_secs(60), || {
            secret_text(&cp, "service-customer", "ca.crt")
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    let customer = cp
        .wait_for("the destination CA", Duration::from_secs(60), || {
            let r = route_obj(&cp, "customer");
            (r["spec"]["tls"]["destinationCACertificate"].as_str() == Some(service_ca.as_str()))
                .then_some(r)
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    assert!(
        customer["spec"]["tls"]["caCertificate"].is_null(),
        "no CA without inject-CA"
    );
    let edge = cp
        .wait_for("the edge Route filled", Duration::from_secs(60), || {
            filled("customer-edge", &crt)
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    assert_eq!(
        edge["spec"]["tls"]["caCertificate"].as_str(),
        secret_text(&cp, "route-customer", "ca.crt").as_deref()
    );
    let waiting = cp
        .wait_for(
            "the problem on the waiting Route",
            Duration::from_secs(60),
            || {
                let r = route_obj(&cp, "waiting");
                r["metadata"]["annotations"]["certwright.io/route-problem"]
                    .as_str()
                    .map(str::to_string)
            },
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    assert_eq!(
        waiting,
        "SecretNotFound: Secret demo/later (certs-from-secret) not found"
    );
    let events = get(&cp, "/api/v1/namespaces/demo/events");
    let warned = events["items"].as_array().is_some_and(|items| {
        items.iter().any(|e| {
            e["involvedObject"]["name"] == "waiting"
                && e["type"] == "Warning"
                && e["reason"] == "SecretNotFound"
        })
    });
    assert!(warned, "{events}");
    assert!(
        route_obj(&cp, "customer-pass")["spec"]["tls"]["certificate"].is_null(),
        "passthrough left alone"
    );

    // The route shim: the Certificate is the Route's, for its host, and once issued its
    // certificate is in the Route.
    let shim_cert = cp
        .wait_for("the shim Certificate", Duration::from_secs(60), || {
            cp.admin(
                "GET",
                "/apis/cert-manager.io/v1/namespaces/demo/certificates/shimmed",
                None,
            )
            .ok()
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    assert_eq!(
        shim_cert["metadata"]["ownerReferences"][0]["kind"], "Route",
        "{shim_cert}"
    );
    assert_eq!(
        shim_cert["spec"]["dnsNames"][0],
        "shimmed-demo.apps.example.com"
    );
    assert_eq!(shim_cert["spec"]["secretName"], "shimmed-tls");
    assert_eq!(shim_cert["spec"]["duration"], "48h");
    let shim_crt = cp
        .wait_for(
            "the shim certificate issued",
            Duration::from_secs(60),
            || secret_text(&cp, "shimmed-tls", "tls.crt"),
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    cp.wait_for("the shimmed Route filled", Duration::from_secs(60), || {
        filled("shimmed", &shim_crt)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    let shimmed = route_obj(&cp, "shimmed");
    assert!(
        shimmed["metadata"]["annotations"]["certwright.io/route-problem"].is_null(),
        "no problem while the certificate was being issued: {shimmed}"
    );

    // A renewal reaches each Route that names the Secret, once.
    let generation = |name: &str| {
        route_obj(&cp, name)["metadata"]["generation"]
            .as_i64()
            .unwrap_or(0)
    };
    let before = (generation("customer"), generation("customer-edge"));
    let renew = std::process::Command::new(bin())
        .args(["renew", "route-customer", "-n", "demo"])
        .env("KUBECONFIG", &cp.kubeconfig)
        .output()
        .expect("renew runs");
    assert!(renew.status.success(), "{}", text(&renew));
    let renewed = cp
        .wait_for("a new route certificate", Duration::from_secs(60), || {
            secret_text(&cp, "route-customer", "tls.crt").filter(|c| *c != crt)
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    for name in ["customer", "customer-edge"] {
        cp.wait_for(&format!("{name} renewed"), Duration::from_secs(60), || {
            filled(name, &renewed)
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    }
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        (generation("customer"), generation("customer-edge")),
        (before.0 + 1, before.1 + 1),
        "each Route written once for the renewal\n{}",
        logs()
    );

    // The missing Secret appears: the waiting Route is filled and its problem cleared.
    cp.create_all(&certificate("later", "waiting-demo.apps.example.com"))
        .expect("later");
    let later = cp
        .wait_for("the later certificate", Duration::from_secs(60), || {
            secret_text(&cp, "later", "tls.crt")
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    let r = cp
        .wait_for("the waiting Route filled", Duration::from_secs(60), || {
            filled("waiting", &later)
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    assert!(
        r["metadata"]["annotations"]["certwright.io/route-problem"].is_null(),
        "{r}"
    );
    let log_text = logs();
    assert!(!log_text.contains("PRIVATE KEY"), "key material in the log");

    // A restart writes nothing: no Route, Secret or Certificate.
    let mut paths: Vec<String> = [
        "customer",
        "customer-edge",
        "customer-pass",
        "waiting",
        "shimmed",
    ]
    .iter()
    .map(|r| format!("/apis/route.openshift.io/v1/namespaces/demo/routes/{r}"))
    .collect();
    for s in ["route-customer", "service-customer", "later", "shimmed-tls"] {
        paths.push(format!("/api/v1/namespaces/demo/secrets/{s}"));
    }
    paths.push("/apis/cert-manager.io/v1/namespaces/demo/certificates/shimmed".into());
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
