//! Issuers, CertificateRequests and write conflicts, with `certwright operator` on a real
//! control plane, running under deploy/rbac.yaml's ServiceAccount:
//! - Issuer and ClusterIssuer status says whether each can sign (cert-manager's reasons),
//!   and follows its CA Secret as it goes from missing to broken to valid;
//! - CertificateRequests that others create (CSRs made by openssl) are approved and signed
//!   by CA and self-signed issuers, wait for an issuer that does not exist yet, fail
//!   clearly when invalid, stay denied when denied, and are left alone when they belong to
//!   another issuer group;
//! - a Secret that another writer keeps changing makes the operator's writes conflict
//!   (409); they are retried, and the result is still one consistent Secret that keeps
//!   the other writers' labels (and is not rewritten for them);
//! - revisionHistoryLimit prunes old requests; a deleted Certificate's requests are
//!   garbage-collected (they are owned by it) and its metrics go.

mod common;

use base64::Engine;
use certwright_pki::{inspect, PrivateKey};
use certwright_testkube::ControlPlane;
use common::*;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const MANIFESTS: &str = r#"apiVersion: v1
kind: Namespace
metadata: {name: demo}
---
apiVersion: v1
kind: Namespace
metadata: {name: cert-manager}
---
apiVersion: cert-manager.io/v1
kind: ClusterIssuer
metadata: {name: self-signer}
spec: {selfSigned: {}}
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: rootca, namespace: cert-manager}
spec:
  secretName: rootca
  issuerRef: {name: self-signer, kind: ClusterIssuer}
  commonName: issuers-test-root
  isCA: true
  privateKey: {algorithm: ECDSA}
---
apiVersion: cert-manager.io/v1
kind: ClusterIssuer
metadata: {name: internal-issuer}
spec: {ca: {secretName: rootca}}
---
apiVersion: cert-manager.io/v1
kind: Issuer
metadata: {name: selfsigned, namespace: demo}
spec: {selfSigned: {}}
---
apiVersion: cert-manager.io/v1
kind: Issuer
metadata: {name: fixable-ca, namespace: demo}
spec: {ca: {secretName: fixable-ca}}
---
apiVersion: cert-manager.io/v1
kind: Issuer
metadata: {name: acme, namespace: demo}
spec:
  acme:
    server: https://127.0.0.1:9/dir
    privateKeySecretRef: {name: acme-account}
    solvers:
      - http01: {ingress: {}}
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: leaf, namespace: demo}
spec:
  secretName: leaf-tls
  issuerRef: {name: internal-issuer, kind: ClusterIssuer}
  dnsNames: [leaf.demo.svc]
  privateKey: {algorithm: ECDSA}
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: contended, namespace: demo}
spec:
  secretName: contended-tls
  issuerRef: {name: internal-issuer, kind: ClusterIssuer}
  dnsNames: [contended-0.demo.svc]
  privateKey: {algorithm: ECDSA}
  revisionHistoryLimit: 2
"#;

fn b64d(v: &serde_json::Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str().unwrap_or_default())
        .unwrap_or_default()
}

fn b64e(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// (status, reason, message) of an object's Ready condition.
fn ready(obj: &serde_json::Value) -> (String, String, String) {
    condition(obj, "Ready")
}

fn condition(obj: &serde_json::Value, type_: &str) -> (String, String, String) {
    let r = obj["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_).cloned())
        .unwrap_or_default();
    (
        r["status"].as_str().unwrap_or_default().into(),
        r["reason"].as_str().unwrap_or_default().into(),
        r["message"].as_str().unwrap_or_default().into(),
    )
}

fn get(cp: &ControlPlane, path: &str) -> serde_json::Value {
    cp.admin("GET", path, None).unwrap_or_default()
}

const DEMO: &str = "/apis/cert-manager.io/v1/namespaces/demo";

/// Waits until an object's Ready condition has `status` and `reason`; returns the object.
fn wait_ready(
    cp: &ControlPlane,
    log: &std::path::Path,
    path: &str,
    status: &str,
    reason: &str,
) -> serde_json::Value {
    cp.wait_for(
        &format!("{path} Ready={status} {reason}"),
        Duration::from_secs(30),
        || {
            let o = get(cp, path);
            let (s, r, _) = ready(&o);
            (s == status && r == reason).then_some(o)
        },
    )
    .unwrap_or_else(|e| {
        panic!(
            "{e}; last seen: {:?}\n{}",
            ready(&get(cp, path)),
            std::fs::read_to_string(log).unwrap_or_default()
        )
    })
}

fn openssl(args: &[&str], dir: &std::path::Path) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn request(name: &str, csr_pem: &[u8], issuer: &str, extra: &str) -> String {
    format!(
        r#"{{"apiVersion":"cert-manager.io/v1","kind":"CertificateRequest",
        "metadata":{{"name":"{name}","namespace":"demo"{extra}}},
        "spec":{{"request":"{}","issuerRef":{issuer},"duration":"2h","usages":["digital signature","server auth"]}}}}"#,
        b64e(csr_pem)
    )
}

struct Operator(Child);

impl Drop for Operator {
    fn drop(&mut self) {
        terminate(&mut self.0);
    }
}

#[test]
fn issuers_requests_and_conflicts_on_a_real_control_plane() {
    if !require("openssl") {
        return;
    }
    let Some((cp, kubeconfig, _)) = operator_control_plane() else {
        return;
    };
    cp.create_all(MANIFESTS).expect("manifests");
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();

    // A key and CSR of the requester's own, made by openssl.
    openssl(
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "key.pem",
            "-subj",
            "/CN=user-request",
            "-addext",
            "subjectAltName=DNS:user.demo.svc",
            "-out",
            "csr.pem",
        ],
        dir,
    );
    let csr = std::fs::read(dir.join("csr.pem")).expect("csr");
    let key_pem = std::fs::read(dir.join("key.pem")).expect("key");
    cp.admin(
        "POST",
        "/api/v1/namespaces/demo/secrets",
        Some(&format!(
            r#"{{"apiVersion":"v1","kind":"Secret","metadata":{{"name":"user-key"}},"data":{{"tls.key":"{}"}}}}"#,
            b64e(&key_pem)
        )),
    )
    .expect("key secret");
    let crs = "/apis/cert-manager.io/v1/namespaces/demo/certificaterequests";
    // Denied by an approver before certwright ever sees it: it must stay denied.
    cp.admin(
        "POST",
        crs,
        Some(&request(
            "user-denied",
            &csr,
            r#"{"name":"internal-issuer","kind":"ClusterIssuer"}"#,
            "",
        )),
    )
    .expect("denied request");
    cp.admin(
        "PATCH",
        &format!("{crs}/user-denied/status"),
        Some(r#"{"status":{"conditions":[{"type":"Denied","status":"True","reason":"policy","message":"not on the list","lastTransitionTime":"2026-01-01T00:00:00Z"}]}}"#),
    )
    .expect("deny");

    let log = dir.join("operator.log");
    let port = certwright_testkube::free_port().expect("port");
    let metrics_addr = format!("127.0.0.1:{port}");
    let _op = Operator(start_operator(
        &kubeconfig,
        &log,
        &[
            "--metrics-address",
            &metrics_addr,
            "--log-format",
            "json",
            "--log-level",
            "debug",
        ],
    ));

    // Issuer status, with cert-manager's reasons.
    let cluster = "/apis/cert-manager.io/v1/clusterissuers";
    wait_ready(
        &cp,
        &log,
        &format!("{cluster}/self-signer"),
        "True",
        "IsReady",
    );
    let ca = wait_ready(
        &cp,
        &log,
        &format!("{cluster}/internal-issuer"),
        "True",
        "KeyPairVerified",
    );
    assert_eq!(ready(&ca).2, "Signing CA verified");
    wait_ready(
        &cp,
        &log,
        &format!("{DEMO}/issuers/selfsigned"),
        "True",
        "IsReady",
    );
    let missing = wait_ready(
        &cp,
        &log,
        &format!("{DEMO}/issuers/fixable-ca"),
        "False",
        "ErrGetKeyPair",
    );
    assert!(
        ready(&missing)
            .2
            .contains("CA secret demo/fixable-ca not found"),
        "{:?}",
        ready(&missing)
    );
    // An ACME issuer whose server does not answer: its account key is generated, and the
    // registration failure is its reason.
    let acme = wait_ready(
        &cp,
        &log,
        &format!("{DEMO}/issuers/acme"),
        "False",
        "ErrRegisterACMEAccount",
    );
    assert!(
        ready(&acme).2.contains("Failed to read the ACME directory"),
        "{:?}",
        ready(&acme)
    );
    // Issuer conditions carry the generation they describe.
    let gen = missing["metadata"]["generation"].clone();
    let cond = missing["status"]["conditions"][0].clone();
    assert_eq!(cond["observedGeneration"], gen);

    // The CA Secret appears broken (a leaf, not a CA), then valid: the issuer follows.
    // The Secret carries certwright's label, so its changes re-check the issuer at once.
    let leaf = wait_ready(
        &cp,
        &log,
        &format!("{DEMO}/certificates/leaf"),
        "True",
        "Ready",
    );
    assert_eq!(leaf["status"]["revision"], 1);
    let leaf_secret = get(&cp, "/api/v1/namespaces/demo/secrets/leaf-tls");
    let secret_body = |data: &serde_json::Value, rv: Option<&serde_json::Value>| {
        let mut meta = serde_json::json!({"name": "fixable-ca", "namespace": "demo",
            "labels": {"controller.cert-manager.io/fao": "true"}});
        if let Some(rv) = rv {
            meta["resourceVersion"] = rv.clone();
        }
        serde_json::json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": meta,
            "data": {"tls.crt": data["tls.crt"], "tls.key": data["tls.key"]}})
        .to_string()
    };
    cp.admin(
        "POST",
        "/api/v1/namespaces/demo/secrets",
        Some(&secret_body(&leaf_secret["data"], None)),
    )
    .expect("broken CA secret");
    let broken = wait_ready(
        &cp,
        &log,
        &format!("{DEMO}/issuers/fixable-ca"),
        "False",
        "ErrInvalidKeyPair",
    );
    assert!(
        ready(&broken).2.contains("not a CA"),
        "{:?}",
        ready(&broken)
    );
    let root = get(&cp, "/api/v1/namespaces/cert-manager/secrets/rootca");
    let current = get(&cp, "/api/v1/namespaces/demo/secrets/fixable-ca");
    let fixed_at = std::time::Instant::now();
    cp.admin(
        "PUT",
        "/api/v1/namespaces/demo/secrets/fixable-ca",
        Some(&secret_body(
            &root["data"],
            Some(&current["metadata"]["resourceVersion"]),
        )),
    )
    .expect("valid CA secret");
    wait_ready(
        &cp,
        &log,
        &format!("{DEMO}/issuers/fixable-ca"),
        "True",
        "KeyPairVerified",
    );
    let fixed_in = fixed_at.elapsed();
    // Woken by the Secret's watch, not by the 30-second requeue (generous for a busy
    // machine, still below the requeue).
    assert!(
        fixed_in < Duration::from_secs(25),
        "the issuer noticed its CA Secret after {fixed_in:?}: the Secret change should wake it"
    );

    // A request signed by the CA ClusterIssuer.
    cp.admin(
        "POST",
        crs,
        Some(&request(
            "user-ca",
            &csr,
            r#"{"name":"internal-issuer","kind":"ClusterIssuer"}"#,
            "",
        )),
    )
    .expect("request");
    let signed = wait_ready(&cp, &log, &format!("{crs}/user-ca"), "True", "Issued");
    assert_eq!(condition(&signed, "Approved").0, "True");
    let cert_pem = b64d(&signed["status"]["certificate"]);
    let ca_pem = b64d(&signed["status"]["ca"]);
    std::fs::write(dir.join("cert.pem"), &cert_pem).expect("write");
    std::fs::write(dir.join("ca.pem"), &ca_pem).expect("write");
    openssl(&["verify", "-CAfile", "ca.pem", "cert.pem"], dir);
    let chain = inspect::parse_pem_chain(&cert_pem).expect("chain");
    let user_key = PrivateKey::from_pem(&key_pem).expect("key");
    assert_eq!(
        chain[0].spki_der,
        user_key.spki_der(),
        "issued for the CSR's key"
    );
    assert!(
        chain[0].dns_names.contains(&"user.demo.svc".to_string()),
        "{:?}",
        chain[0].dns_names
    );
    assert_eq!(
        chain[0].not_after - chain[0].not_before,
        7200,
        "spec.duration 2h"
    );
    // The openssl CSR asks for no usages; spec.usages decide them.
    assert_eq!(chain[0].key_usages, ["digital signature"]);
    assert_eq!(chain[0].ext_key_usages, ["server auth"]);

    // A self-signed request, with its key named by cert-manager's annotation.
    cp.admin(
        "POST",
        crs,
        Some(&request(
            "user-self",
            &csr,
            r#"{"name":"selfsigned"}"#,
            r#","annotations":{"cert-manager.io/private-key-secret-name":"user-key"}"#,
        )),
    )
    .expect("request");
    let own = wait_ready(&cp, &log, &format!("{crs}/user-self"), "True", "Issued");
    let own_chain = inspect::parse_pem_chain(&b64d(&own["status"]["certificate"])).expect("cert");
    assert!(own_chain[0].is_self_signed(), "self-signed");
    assert_eq!(own_chain[0].spki_der, user_key.spki_der());

    // An issuer that does not exist yet: Pending, then signed once it appears.
    cp.admin(
        "POST",
        crs,
        Some(&request("user-waiting", &csr, r#"{"name":"later"}"#, "")),
    )
    .expect("request");
    let waiting = wait_ready(
        &cp,
        &log,
        &format!("{crs}/user-waiting"),
        "False",
        "Pending",
    );
    assert!(
        ready(&waiting).2.contains("not found"),
        "{:?}",
        ready(&waiting)
    );
    let created_at = std::time::Instant::now();
    cp.admin(
        "POST",
        &format!("{DEMO}/issuers"),
        Some(r#"{"apiVersion":"cert-manager.io/v1","kind":"Issuer","metadata":{"name":"later","namespace":"demo"},"spec":{"ca":{"secretName":"fixable-ca"}}}"#),
    )
    .expect("issuer");
    wait_ready(&cp, &log, &format!("{crs}/user-waiting"), "True", "Issued");
    // Woken by the issuer's watch, not by a 30-second requeue.
    assert!(
        created_at.elapsed() < Duration::from_secs(25),
        "the request waited {:?} after its issuer appeared\n{}",
        created_at.elapsed(),
        std::fs::read_to_string(&log).unwrap_or_default()
    );

    // Invalid, denied, and another group's requests.
    cp.admin(
        "POST",
        crs,
        Some(&request(
            "user-garbage",
            b"not a certificate request",
            r#"{"name":"internal-issuer","kind":"ClusterIssuer"}"#,
            "",
        )),
    )
    .expect("request");
    let garbage = wait_ready(&cp, &log, &format!("{crs}/user-garbage"), "False", "Failed");
    assert!(
        ready(&garbage).2.contains("spec.request"),
        "{:?}",
        ready(&garbage)
    );
    assert!(garbage["status"]["failureTime"].is_string());
    let denied = wait_ready(&cp, &log, &format!("{crs}/user-denied"), "False", "Denied");
    assert!(
        denied["status"]["certificate"].is_null(),
        "a denied request is never signed"
    );
    cp.admin(
        "POST",
        crs,
        Some(&request(
            "user-external",
            &csr,
            r#"{"name":"vault","kind":"VaultIssuer","group":"example.com"}"#,
            "",
        )),
    )
    .expect("request");

    // Conflicts: three writers keep changing the Secret's labels while the certificate is
    // reissued; the operator's whole-Secret writes at the version it read are refused
    // (409) and retried from a fresh read.
    let metrics_text = || {
        let out = Command::new("curl")
            .args([
                "-s",
                "--max-time",
                "5",
                &format!("http://{metrics_addr}/metrics"),
            ])
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let metrics = || -> u64 {
        metrics_text()
            .lines()
            .find_map(|l| {
                l.strip_prefix("certwright_conflicts_total ")?
                    .trim()
                    .parse()
                    .ok()
            })
            .expect("certwright_conflicts_total")
    };
    wait_ready(
        &cp,
        &log,
        &format!("{DEMO}/certificates/contended"),
        "True",
        "Ready",
    );
    let stop = AtomicBool::new(false);
    let (rounds, conflicts, writes) = std::thread::scope(|scope| {
        let writers: Vec<_> = (0..3)
            .map(|w| {
                let (stop, cp) = (&stop, &cp);
                scope.spawn(move || {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        let body = format!(r#"{{"metadata":{{"labels":{{"noise-{w}":"{n}"}}}}}}"#);
                        let _ = cp.admin(
                            "PATCH",
                            "/api/v1/namespaces/demo/secrets/contended-tls",
                            Some(&body),
                        );
                    }
                    n
                })
            })
            .collect();
        let mut rounds = 0;
        let mut conflicts = 0;
        for round in 1..=15 {
            rounds = round;
            let name = format!("contended-{round}.demo.svc");
            cp.admin(
                "PATCH",
                &format!("{DEMO}/certificates/contended"),
                Some(&format!(r#"{{"spec":{{"dnsNames":["{name}"]}}}}"#)),
            )
            .expect("patch");
            cp.wait_for("reissue under contention", Duration::from_secs(30), || {
                let c = get(&cp, &format!("{DEMO}/certificates/contended"));
                (c["status"]["revision"] == round + 1 && ready(&c).0 == "True").then_some(())
            })
            .unwrap_or_else(|e| {
                panic!("{e}\n{}", std::fs::read_to_string(&log).unwrap_or_default())
            });
            let s = get(&cp, "/api/v1/namespaces/demo/secrets/contended-tls");
            let chain = inspect::parse_pem_chain(&b64d(&s["data"]["tls.crt"])).expect("tls.crt");
            let key = PrivateKey::from_pem(&b64d(&s["data"]["tls.key"])).expect("tls.key");
            assert_eq!(chain[0].spki_der, key.spki_der(), "tls.key matches tls.crt");
            assert_eq!(chain[0].dns_names, vec![name]);
            conflicts = metrics();
            if conflicts > 0 {
                break;
            }
        }
        stop.store(true, Ordering::Relaxed);
        let writes: u64 = writers.into_iter().map(|w| w.join().expect("writer")).sum();
        (rounds, conflicts, writes)
    });
    assert!(
        conflicts > 0,
        "no conflict in {rounds} reissues against {writes} competing writes"
    );
    // The other writers' labels survive certwright's writes.
    let s = get(&cp, "/api/v1/namespaces/demo/secrets/contended-tls");
    for w in 0..3 {
        assert!(
            s["metadata"]["labels"][format!("noise-{w}")].is_string(),
            "{}",
            s["metadata"]
        );
    }
    assert_eq!(
        s["metadata"]["labels"]["controller.cert-manager.io/fao"],
        "true"
    );
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    // Structured logs: one JSON object per line with timestamp, level and message (the
    // tracing subscriber's names); the conflicts are there by kind and object.
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for l in &lines {
        assert!(
            l["timestamp"].is_string() && l["level"].is_string() && l["message"].is_string(),
            "{l}"
        );
    }
    assert!(
        lines.iter().any(
            |l| l["message"] == "write conflict, retrying from a fresh read"
                && l["kind"] == "Certificate"
                && l["object"] == "demo/contended"
        ),
        "{text}"
    );
    assert!(
        lines.iter().any(|l| l["level"] == "DEBUG"),
        "--log-level debug logs debug lines"
    );
    assert!(
        !text.contains("PRIVATE KEY") && !text.contains(&b64e(&key_pem)[..40]),
        "key material in the logs"
    );
    // ... and are no reason to rewrite it: a label added by someone else leaves the Secret
    // as it is.
    cp.admin(
        "PATCH",
        "/api/v1/namespaces/demo/secrets/contended-tls",
        Some(r#"{"metadata":{"labels":{"backup":"daily"},"annotations":{"replicator/allowed":"true"}}}"#),
    )
    .expect("label");
    let rv = get(&cp, "/api/v1/namespaces/demo/secrets/contended-tls")["metadata"]
        ["resourceVersion"]
        .clone();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        get(&cp, "/api/v1/namespaces/demo/secrets/contended-tls")["metadata"]["resourceVersion"],
        rv,
        "certwright rewrote a Secret that only gained someone else's label"
    );

    // One more reissue; revisionHistoryLimit 2 keeps the last two requests only.
    let last = rounds + 2;
    cp.admin(
        "PATCH",
        &format!("{DEMO}/certificates/contended"),
        Some(r#"{"spec":{"dnsNames":["contended-last.demo.svc"]}}"#),
    )
    .expect("patch");
    cp.wait_for("the last reissue", Duration::from_secs(30), || {
        let c = get(&cp, &format!("{DEMO}/certificates/contended"));
        (c["status"]["revision"] == last && ready(&c).0 == "True").then_some(())
    })
    .expect("reissued");
    let mut kept: Vec<String> = get(&cp, crs)["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|cr| cr["metadata"]["name"].as_str())
        .filter(|n| n.starts_with("contended-"))
        .map(String::from)
        .collect();
    kept.sort();
    assert_eq!(
        kept,
        vec![
            format!("contended-{}", last - 1),
            format!("contended-{last}")
        ],
        "revisionHistoryLimit 2"
    );

    // A deleted Certificate leaves the metrics; its Secret stays (certwright never deletes
    // a Secret).
    let leaf_metric = "certmanager_certificate_ready_status{name=\"leaf\",namespace=\"demo\"";
    assert!(metrics_text().contains(leaf_metric));
    cp.admin("DELETE", &format!("{DEMO}/certificates/leaf"), None)
        .expect("delete");
    cp.wait_for(
        "metrics without the deleted Certificate",
        Duration::from_secs(10),
        || (!metrics_text().contains(leaf_metric)).then_some(()),
    )
    .expect("deleted Certificate's metrics removed");
    assert!(
        cp.admin("GET", "/api/v1/namespaces/demo/secrets/leaf-tls", None)
            .is_ok(),
        "the Secret stays"
    );
    // Its CertificateRequest is owned by it: the garbage collector deletes it.
    cp.wait_for(
        "the deleted Certificate's requests collected",
        Duration::from_secs(60),
        || {
            let (code, _) = cp
                .request(
                    certwright_testkube::ADMIN_TOKEN,
                    "GET",
                    &format!("{crs}/leaf-1"),
                    None,
                )
                .ok()?;
            (code == 404).then_some(())
        },
    )
    .expect("leaf-1 garbage-collected");

    // Another group's request was never touched.
    let external = get(&cp, &format!("{crs}/user-external"));
    assert!(
        external["status"]["conditions"].is_null(),
        "{}",
        external["status"]
    );
    println!(
        "issuers ready/failing as expected; CA issuer noticed its fixed Secret in {fixed_in:?}; {conflicts} conflicts retried in {rounds} reissues against {writes} competing writes"
    );
}
