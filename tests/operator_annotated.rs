//! cert-utils-operator's annotations on objects no Certificate writes, on a real control
//! plane under the shipped RBAC: a Secret made by hand (an RSA key in PKCS#1, made by
//! openssl) gets keystore.jks, truststore.jks and certificate info, which Java's keytool
//! opens; the local runtime writes the same bytes for the same Secret and ConfigMap
//! manifests; a
//! ConfigMap's CA bundle becomes a truststore; a broken Secret gets a Warning Event; an
//! unannotated Secret is not touched; and a restart of the operator rewrites nothing.

mod common;

use base64::Engine;
use common::*;
use std::process::Command;
use std::time::Duration;

fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl runs");
    assert!(out.status.success(), "openssl {args:?}: {}", text(&out));
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn get(cp: &certwright_testkube::ControlPlane, path: &str) -> serde_json::Value {
    cp.admin("GET", path, None).unwrap_or_default()
}

fn data_key(v: &serde_json::Value, field: &str, key: &str) -> Option<Vec<u8>> {
    v[field][key]
        .as_str()
        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
}

/// `keytool -list` of a store, or None where Java is missing outside CI.
fn keytool_list(dir: &std::path::Path, name: &str, bytes: &[u8], password: &str) -> Option<String> {
    if !require("keytool") {
        return None;
    }
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("store written");
    let out = Command::new("keytool")
        .args([
            "-list",
            "-storetype",
            "JKS",
            "-storepass",
            password,
            "-keystore",
        ])
        .arg(&path)
        .output()
        .expect("keytool runs");
    assert!(out.status.success(), "keytool: {}", text(&out));
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

const SECRETS: &str = "/api/v1/namespaces/demo/secrets";

#[test]
fn annotated_secrets_and_configmaps_get_their_stores_and_a_restart_rewrites_nothing() {
    if !require("openssl") {
        return;
    }
    let Some((cp, kubeconfig, _)) = operator_control_plane() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    openssl(d, &["genrsa", "-traditional", "-out", "key.pem", "2048"]);
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-key",
            "key.pem",
            "-out",
            "crt.pem",
            "-days",
            "30",
            "-subj",
            "/CN=hand.demo.svc",
            "-addext",
            "subjectAltName=DNS:hand.demo.svc",
        ],
    );
    let key = std::fs::read(d.join("key.pem")).expect("key");
    assert!(
        String::from_utf8_lossy(&key).contains("BEGIN RSA PRIVATE KEY"),
        "PKCS#1"
    );
    let crt = std::fs::read(d.join("crt.pem")).expect("crt");
    let secret = |name: &str, annotations: &str, tls_crt: &str| {
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: demo\n  annotations: {{{annotations}}}\ntype: kubernetes.io/tls\ndata: {{tls.crt: {tls_crt}, tls.key: {}, ca.crt: {}}}\n",
            b64(&key),
            b64(&crt)
        )
    };
    let keystores = "cert-utils-operator.redhat-cop.io/generate-java-keystores: 'true', cert-utils-operator.redhat-cop.io/java-keystore-password: s3cret, cert-utils-operator.redhat-cop.io/generate-cert-info: 'true'";
    let alert = "cert-utils-operator.redhat-cop.io/generate-cert-expiry-alert: 'true'";
    let bundle = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bundle\n  namespace: demo\n  annotations: {{cert-utils-operator.redhat-cop.io/generate-java-truststore: 'true'}}\ndata:\n  ca-bundle.crt: |\n{}",
        String::from_utf8_lossy(&crt)
            .lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    );
    let manifests = [
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: demo}\n".to_string(),
        secret("hand", keystores, &b64(&crt)),
        secret("plain", "", &b64(&crt)),
        secret("expiring", alert, &b64(&crt)),
        secret("broken", keystores, &b64(b"not a certificate")),
        bundle.clone(),
    ];
    cp.create_all(&manifests.join("---\n")).expect("manifests");
    let rv = |path: &str| {
        get(&cp, path)["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let plain_rv = rv(&format!("{SECRETS}/plain"));

    let log = d.join("operator.log");
    let metrics_port = certwright_testkube::free_port().expect("port");
    let metrics_address = format!("127.0.0.1:{metrics_port}");
    let mut op = start_operator(&kubeconfig, &log, &["--metrics-address", &metrics_address]);
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();
    let hand = cp
        .wait_for(
            "keystores in the hand-made Secret",
            Duration::from_secs(30),
            || {
                let s = get(&cp, &format!("{SECRETS}/hand"));
                data_key(&s, "data", "keystore.jks").map(|_| s)
            },
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    let keystore = data_key(&hand, "data", "keystore.jks").expect("keystore");
    let truststore = data_key(&hand, "data", "truststore.jks").expect("truststore");
    let info =
        String::from_utf8(data_key(&hand, "data", "tls.crt.info").expect("info")).expect("text");
    assert!(
        info.contains("Subject: CN=hand.demo.svc") && info.contains("DNS:hand.demo.svc"),
        "{info}"
    );
    assert!(data_key(&hand, "data", "ca.crt.info").is_some());
    // Java opens them with the annotation's password: the key under `alias`, the CA as alias0.
    if let Some(list) = keytool_list(d, "keystore.jks", &keystore, "s3cret") {
        assert!(
            list.contains("alias,") && list.contains("PrivateKeyEntry"),
            "{list}"
        );
    }
    if let Some(list) = keytool_list(d, "truststore.jks", &truststore, "s3cret") {
        assert!(
            list.contains("alias0,") && list.contains("trustedCertEntry"),
            "{list}"
        );
    }
    let cm = cp
        .wait_for(
            "a truststore in the ConfigMap",
            Duration::from_secs(30),
            || {
                let c = get(&cp, "/api/v1/namespaces/demo/configmaps/bundle");
                data_key(&c, "binaryData", "truststore.jks").map(|_| c)
            },
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    let store = data_key(&cm, "binaryData", "truststore.jks").expect("store");
    if let Some(list) = keytool_list(d, "cm-truststore.jks", &store, "changeit") {
        assert!(
            list.contains("alias0,") && list.contains("trustedCertEntry"),
            "{list}"
        );
    }
    // The local runtime gives the same files for the same manifest (one rendering code).
    let local = d.join("local");
    std::fs::create_dir(&local).expect("dir");
    write(&local, "hand.yaml", &secret("hand", keystores, &b64(&crt)));
    write(&local, "bundle.yaml", &bundle);
    let state = d.join("state");
    let out = once(&[&local], &state);
    assert!(out.status.success(), "{}", text(&out));
    let local_dir = secret_dir(&state, "demo", "hand");
    for (key, cluster) in [
        ("keystore.jks", &keystore),
        ("truststore.jks", &truststore),
        ("tls.crt.info", &info.clone().into_bytes()),
    ] {
        let here = std::fs::read(local_dir.join(key)).expect(key);
        assert_eq!(
            &here, cluster,
            "{key}: the local runtime and the operator differ"
        );
    }
    // And for the ConfigMap, laid out as a mounted one under configmaps/.
    let local_cm = state.join("configmaps/demo/bundle");
    assert_eq!(
        std::fs::read(local_cm.join("truststore.jks")).expect("local truststore"),
        store,
        "the ConfigMap's truststore: the local runtime and the operator differ"
    );
    assert_eq!(
        std::fs::read(local_cm.join("ca-bundle.crt")).expect("bundle file"),
        crt
    );
    assert!(
        std::fs::symlink_metadata(local_cm.join("..data"))
            .is_ok_and(|m| m.file_type().is_symlink()),
        "a ..data link, as in a mounted ConfigMap"
    );
    // cert-utils' expiry alert: the certificate (30 days) is within the 90-day threshold,
    // so a Warning Event as cert-utils writes it, and its metrics.
    let warned = cp
        .wait_for("the soon-to-expire Event", Duration::from_secs(30), || {
            let list = get(&cp, "/api/v1/namespaces/demo/events");
            list["items"].as_array().and_then(|items| {
                items
                    .iter()
                    .find(|e| {
                        e["involvedObject"]["name"] == "expiring"
                            && e["reason"] == "Certs Soon to Expire"
                    })
                    .cloned()
            })
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    assert_eq!(warned["type"], "Warning");
    let note = warned["message"].as_str().unwrap_or_default();
    assert!(
        note.starts_with("Certificate expiring in 29 days")
            || note.starts_with("Certificate expiring in 30 days"),
        "{note}"
    );
    if require("curl") {
        let out = Command::new("curl")
            .args(["-s", &format!("http://{metrics_address}/metrics")])
            .output()
            .expect("curl");
        let metrics = String::from_utf8_lossy(&out.stdout);
        let line = metrics
            .lines()
            .find(|l| {
                l.starts_with("certutils_certificate_expiry_time{")
                    && l.contains("name=\"expiring\"")
            })
            .unwrap_or_else(|| panic!("no expiry metric:\n{metrics}"));
        let value: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .expect("value");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("time")
            .as_secs_f64();
        assert!((value - now - 30.0 * 86_400.0).abs() < 3_600.0, "{line}");
        assert!(
            metrics.contains("certutils_certificate_issue_time{"),
            "{metrics}"
        );
    }
    // The broken Secret is named in a Warning Event, and left as it was.
    let events = cp
        .wait_for(
            "a Warning Event on the broken Secret",
            Duration::from_secs(30),
            || {
                let list = get(&cp, "/api/v1/namespaces/demo/events");
                list["items"].as_array().and_then(|items| {
                    items
                        .iter()
                        .find(|e| e["involvedObject"]["name"] == "broken" && e["type"] == "Warning")
                        .cloned()
                })
            },
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    let note = events["message"].as_str().unwrap_or_default();
    assert!(note.contains("tls.crt"), "{note}");
    assert!(data_key(
        &get(&cp, &format!("{SECRETS}/broken")),
        "data",
        "keystore.jks"
    )
    .is_none());
    assert_eq!(
        rv(&format!("{SECRETS}/plain")),
        plain_rv,
        "an unannotated Secret is not written"
    );

    // A restart rewrites nothing: the stores' bytes are stable for the same input.
    let before = (
        rv(&format!("{SECRETS}/hand")),
        rv("/api/v1/namespaces/demo/configmaps/bundle"),
    );
    terminate(&mut op);
    let mut op = start_operator(&kubeconfig, &log, &["--metrics-address", ""]);
    cp.create_all(&secret("late", keystores, &b64(&crt)))
        .expect("late secret");
    cp.wait_for(
        "the restarted operator at work",
        Duration::from_secs(30),
        || {
            data_key(
                &get(&cp, &format!("{SECRETS}/late")),
                "data",
                "keystore.jks",
            )
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    std::thread::sleep(Duration::from_secs(2));
    let after = (
        rv(&format!("{SECRETS}/hand")),
        rv("/api/v1/namespaces/demo/configmaps/bundle"),
    );
    assert_eq!(
        before,
        after,
        "a restart rewrote an annotated object\n{}",
        logs()
    );
    let late = get(&cp, &format!("{SECRETS}/late"));
    assert_eq!(
        data_key(&late, "data", "keystore.jks"),
        Some(keystore),
        "the same key and chain give the same keystore bytes"
    );
    let log_text = logs();
    assert!(
        !log_text.contains("PRIVATE KEY") && !log_text.contains("s3cret"),
        "secrets in the log"
    );
    terminate(&mut op);
}
