//! `certwright operator` on a real control plane (etcd, kube-apiserver, controller manager):
//! the reference scenario's internal PKI becomes Ready with Secrets as the contract says,
//! a spec change reissues, a deleted Secret returns, a restart rewrites nothing.
//!
//! The operator runs with a ServiceAccount token under deploy/rbac.yaml, not as admin.

mod common;

use base64::Engine;
use certwright_pki::inspect;
use certwright_testkube::ControlPlane;
use common::*;
use std::process::{Child, Command};
use std::time::Duration;

fn stop(mut child: Child) {
    if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    for _ in 0..100 {
        if let Ok(Some(st)) = child.try_wait() {
            assert!(st.success(), "operator exit status {st:?}");
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("operator did not stop within 5 s of SIGTERM");
}

fn cert(cp: &ControlPlane, ns: &str, name: &str) -> serde_json::Value {
    cp.admin(
        "GET",
        &format!("/apis/cert-manager.io/v1/namespaces/{ns}/certificates/{name}"),
        None,
    )
    .expect("certificate")
}

fn ready(c: &serde_json::Value) -> bool {
    c["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

fn secret(cp: &ControlPlane, ns: &str, name: &str) -> Option<serde_json::Value> {
    cp.admin(
        "GET",
        &format!("/api/v1/namespaces/{ns}/secrets/{name}"),
        None,
    )
    .ok()
}

fn data(s: &serde_json::Value, key: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(s["data"][key].as_str().unwrap_or_default())
        .expect("base64")
}

const CERTS: [(&str, &str, &str); 4] = [
    ("cert-manager", "rootca", "rootca"),
    ("demo", "customer", "service-customer"),
    ("demo", "preference", "route-service-preference"),
    ("demo", "recommendation", "service-recommendation"),
];

#[test]
fn operator_runs_the_reference_scenario_on_a_real_control_plane() {
    let Some((cp, kubeconfig, token)) = operator_control_plane() else {
        return;
    };
    for ns in ["cert-manager", "demo"] {
        cp.admin(
            "POST",
            "/api/v1/namespaces",
            Some(&format!(
                r#"{{"apiVersion":"v1","kind":"Namespace","metadata":{{"name":"{ns}"}}}}"#
            )),
        )
        .expect("namespace");
    }
    for f in ["internal-pki.yaml", "services.yaml"] {
        let text = std::fs::read_to_string(repo().join("examples/e2e").join(f)).expect("example");
        cp.create_all(&text).expect("create");
    }
    // Least privilege is real: the operator's identity may not delete namespaces, nor
    // create or delete Deployments (it may read and patch them, for rollouts).
    let (code, _) = cp
        .request(&token, "DELETE", "/api/v1/namespaces/demo", None)
        .expect("request");
    assert_eq!(code, 403);
    let (code, _) = cp
        .request(
            &token,
            "DELETE",
            "/apis/apps/v1/namespaces/demo/deployments/customer",
            None,
        )
        .expect("request");
    assert_eq!(code, 403);
    let (code, _) = cp
        .request(&token, "GET", "/apis/apps/v1/deployments", None)
        .expect("request");
    assert_eq!(code, 200);
    let tmp = tempfile::tempdir().expect("tmp");
    let log1 = tmp.path().join("operator-1.log");
    let port = certwright_testkube::free_port().expect("port");
    let metrics_addr = format!("127.0.0.1:{port}");
    let op = start_operator(&kubeconfig, &log1, &["--metrics-address", &metrics_addr]);
    let started = std::time::Instant::now();
    cp.wait_for(
        "all four Certificates Ready",
        Duration::from_secs(60),
        || {
            CERTS
                .iter()
                .all(|(ns, name, _)| ready(&cert(&cp, ns, name)))
                .then_some(())
        },
    )
    .unwrap_or_else(|e| {
        panic!(
            "{e}\n{}",
            std::fs::read_to_string(&log1).unwrap_or_default()
        )
    });
    println!("reference scenario Ready in {:?}", started.elapsed());

    // Secrets hold what the contract says.
    let s = secret(&cp, "demo", "service-customer").expect("secret");
    assert_eq!(s["type"], "kubernetes.io/tls");
    for k in [
        "tls.crt",
        "tls.key",
        "ca.crt",
        "keystore.jks",
        "truststore.jks",
    ] {
        assert!(!data(&s, k).is_empty(), "{k}");
    }
    let a = &s["metadata"]["annotations"];
    assert_eq!(a["cert-manager.io/certificate-name"], "customer");
    assert_eq!(a["cert-manager.io/issuer-name"], "internal-issuer");
    assert_eq!(a["cert-manager.io/issuer-kind"], "ClusterIssuer");
    assert_eq!(
        a["cert-manager.io/alt-names"],
        "customer,customer.demo.svc,customer.demo.svc.cluster.local"
    );
    assert_eq!(
        s["metadata"]["labels"]["controller.cert-manager.io/fao"],
        "true"
    );
    let chain = inspect::parse_pem_chain(&data(&s, "tls.crt")).expect("chain");
    let roots = inspect::parse_pem_chain(&data(&s, "ca.crt")).expect("roots");
    inspect::verify_chain(&chain, &roots, chain[0].not_before + 1).expect("chain verifies");
    certwright_pki::jks::decode(&data(&s, "keystore.jks"), "changeme")
        .expect("keystore opens with changeme");
    let cr = cp
        .admin(
            "GET",
            "/apis/cert-manager.io/v1/namespaces/demo/certificaterequests/customer-1",
            None,
        )
        .expect("request");
    let conds = cr["status"]["conditions"]
        .as_array()
        .expect("conditions")
        .clone();
    assert!(conds
        .iter()
        .any(|c| c["type"] == "Approved" && c["status"] == "True"));
    assert!(conds
        .iter()
        .any(|c| c["type"] == "Ready" && c["status"] == "True"));
    let c = cert(&cp, "demo", "customer");
    assert_eq!(c["status"]["revision"], 1);
    // Every condition says which generation it is about (kstatus, GitOps tools).
    for cond in c["status"]["conditions"].as_array().expect("conditions") {
        assert_eq!(
            cond["observedGeneration"], c["metadata"]["generation"],
            "{c}"
        );
    }
    for f in ["notBefore", "notAfter", "renewalTime"] {
        assert!(c["status"][f].is_string(), "{f}");
    }

    // Metrics with cert-manager's names, health, and Events.
    let get = |path: &str| -> String {
        let out = Command::new("curl")
            .args([
                "-s",
                "--max-time",
                "5",
                &format!("http://{metrics_addr}{path}"),
            ])
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let m = get("/metrics");
    assert!(
        m.lines().any(|l| l.starts_with("certmanager_certificate_expiration_timestamp_seconds{name=\"customer\",namespace=\"demo\",issuer_name=\"internal-issuer\",issuer_kind=\"ClusterIssuer\"")),
        "{m}"
    );
    assert!(m.contains("certmanager_certificate_ready_status{name=\"customer\",namespace=\"demo\",issuer_name=\"internal-issuer\",issuer_kind=\"ClusterIssuer\",issuer_group=\"cert-manager.io\",condition=\"True\"} 1"), "{m}");
    assert!(m.contains("certwright_issuances_total 4"), "{m}");
    // Histograms: one issuance duration per issuance, reconcile durations in buckets.
    assert!(
        m.contains("certwright_issuance_duration_seconds_count 4"),
        "{m}"
    );
    assert!(
        m.lines()
            .any(|l| l.starts_with("certwright_reconcile_duration_seconds_bucket{le=\"+Inf\"}")),
        "{m}"
    );
    assert_eq!(get("/healthz"), "ok\n");
    assert_eq!(get("/readyz"), "ok\n");
    let events = cp
        .admin("GET", "/apis/events.k8s.io/v1/namespaces/demo/events", None)
        .expect("events");
    assert!(
        events["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|e| e["reason"] == "Issuing" && e["regarding"]["name"] == "customer"),
        "{events}"
    );

    // A spec change reissues and bumps the revision.
    let patch = r#"{"spec":{"dnsNames":["customer","customer.demo.svc","customer.demo.svc.cluster.local","customer.example.com"]}}"#;
    cp.admin(
        "PATCH",
        "/apis/cert-manager.io/v1/namespaces/demo/certificates/customer",
        Some(patch),
    )
    .expect("patch");
    cp.wait_for("revision 2", Duration::from_secs(30), || {
        (cert(&cp, "demo", "customer")["status"]["revision"] == 2).then_some(())
    })
    .expect("reissued");
    let s = secret(&cp, "demo", "service-customer").expect("secret");
    let chain = inspect::parse_pem_chain(&data(&s, "tls.crt")).expect("chain");
    assert!(chain[0]
        .dns_names
        .contains(&"customer.example.com".to_string()));

    // A deleted Secret is recreated.
    cp.admin(
        "DELETE",
        "/api/v1/namespaces/demo/secrets/service-recommendation",
        None,
    )
    .expect("delete");
    cp.wait_for("the Secret to return", Duration::from_secs(30), || {
        secret(&cp, "demo", "service-recommendation")
    })
    .expect("recreated");

    // A restart rewrites nothing.
    cp.wait_for("all Ready again", Duration::from_secs(30), || {
        CERTS
            .iter()
            .all(|(ns, name, _)| ready(&cert(&cp, ns, name)))
            .then_some(())
    })
    .expect("ready");
    std::thread::sleep(Duration::from_secs(2));
    let versions = |cp: &ControlPlane| -> Vec<String> {
        CERTS
            .iter()
            .map(|(ns, _, s)| {
                secret(cp, ns, s)
                    .map(|s| s["metadata"]["resourceVersion"].to_string())
                    .unwrap_or_default()
            })
            .collect()
    };
    let before = versions(&cp);
    stop(op);
    let log2 = tmp.path().join("operator-2.log");
    let op2 = start_operator(&kubeconfig, &log2, &["--metrics-address", &metrics_addr]);
    // Long enough for the restarted operator to list and reconcile everything.
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(
        versions(&cp),
        before,
        "a restart rewrote a Secret:\n{}",
        std::fs::read_to_string(&log2).unwrap_or_default()
    );
    stop(op2);
    let logs = format!(
        "{}{}",
        std::fs::read_to_string(&log1).unwrap_or_default(),
        std::fs::read_to_string(&log2).unwrap_or_default()
    );
    assert!(!logs.contains("PRIVATE KEY"), "no key material in logs");
}
