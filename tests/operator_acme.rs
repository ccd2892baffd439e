//! The ACME issuer in the operator, on a real control plane, against Pebble and BIND:
//! a ClusterIssuer whose account key is generated into a Secret and registered (status
//! Ready with the account URI and email), and a Certificate issued through DNS-01
//! (RFC 2136 with TSIG), its chain checked against Pebble's issuing root.

mod common;

use common::pebble::{free_port, Pebble, PebbleOptions};
use common::*;
use std::time::Duration;

fn get(cp: &certwright_testkube::ControlPlane, path: &str) -> serde_json::Value {
    cp.admin("GET", path, None).unwrap_or_default()
}

fn ready(obj: &serde_json::Value) -> (String, String) {
    let r = obj["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready").cloned())
        .unwrap_or_default();
    (
        r["status"].as_str().unwrap_or_default().into(),
        r["reason"].as_str().unwrap_or_default().into(),
    )
}

/// demo/web-tls holds a chain that Pebble issued.
fn assert_secret_issued(
    cp: &certwright_testkube::ControlPlane,
    pebble: &Pebble,
    dir: &std::path::Path,
) {
    use base64::Engine;
    let secret = get(cp, "/api/v1/namespaces/demo/secrets/web-tls");
    let crt = base64::engine::general_purpose::STANDARD
        .decode(secret["data"]["tls.crt"].as_str().unwrap_or_default())
        .expect("tls.crt");
    let chain = dir.join("chain.pem");
    std::fs::write(&chain, &crt).expect("chain");
    pebble.assert_issued(&chain);
}

/// The ACME client's requests under cert-manager's metric names and labels.
fn assert_acme_metrics(port: u16, directory_url: &str) {
    let (code, m) = http_get(port, "/metrics");
    assert_eq!(code, 200, "{m}");
    let host = directory_url
        .trim_start_matches("https://")
        .split('/')
        .next()
        .unwrap_or_default();
    let count = |path: &str, method: &str, status: &str| -> f64 {
        let series = format!(
            "certmanager_http_acme_client_request_count{{scheme=\"https\",host=\"{host}\",path=\"{path}\",method=\"{method}\",status=\"{status}\"}} "
        );
        m.lines()
            .find_map(|l| l.strip_prefix(&series))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    assert_eq!(count("new-order", "POST", "201"), 1.0, "one order:\n{m}");
    assert_eq!(
        count("new-account", "POST", "201"),
        1.0,
        "one account:\n{m}"
    );
    assert!(count("challenge", "POST", "200") >= 1.0, "{m}");
    assert!(count("finalize", "POST", "200") >= 1.0, "{m}");
    assert!(count("authorization", "POST", "200") >= 1.0, "{m}");
    assert!(!m.contains("path=\"other\""), "every request named:\n{m}");
    assert!(
        m.contains(&format!("certmanager_http_acme_client_request_duration_seconds_count{{scheme=\"https\",host=\"{host}\",path=\"new-order\",method=\"POST\",status=\"201\"}} 1")),
        "{m}"
    );
}

#[test]
fn operator_issues_through_dns01() {
    let Some((cp, kubeconfig, _)) = operator_control_plane() else {
        return;
    };
    let mut o = PebbleOptions::http(free_port());
    o.bind = Some(common::bind::ZONE.into());
    let Some(pebble) = Pebble::start(&o) else {
        return;
    };
    let bind = pebble.bind.as_ref().expect("bind").address();
    let manifests = format!(
        r#"apiVersion: v1
kind: Namespace
metadata: {{name: demo}}
---
apiVersion: v1
kind: Namespace
metadata: {{name: cert-manager}}
---
apiVersion: v1
kind: Secret
metadata: {{name: tsig, namespace: cert-manager}}
stringData: {{secret: "{secret}"}}
---
apiVersion: cert-manager.io/v1
kind: ClusterIssuer
metadata: {{name: pebble}}
spec:
  acme:
    server: {server}
    email: ops@example.test
    caBundle: {bundle}
    privateKeySecretRef: {{name: pebble-account}}
    solvers:
      - dns01:
          rfc2136:
            nameserver: "{bind}"
            tsigKeyName: {key}
            tsigAlgorithm: HMACSHA256
            tsigSecretSecretRef: {{name: tsig, key: secret}}
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {{name: web, namespace: demo}}
spec:
  secretName: web-tls
  issuerRef: {{name: pebble, kind: ClusterIssuer}}
  dnsNames: [op.example.test]
"#,
        secret = common::bind::TSIG_SECRET,
        server = pebble.directory_url,
        bundle = pebble.ca_bundle(),
        key = common::bind::TSIG_KEY,
    );
    cp.create_all(&manifests).expect("manifests");
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("operator.log");
    let metrics_port = free_port();
    let mut op = start_operator(
        &kubeconfig,
        &log,
        &[
            "--metrics-address",
            &format!("127.0.0.1:{metrics_port}"),
            "--dns01-recursive-nameservers",
            &bind,
        ],
    );
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();
    let issuer = cp
        .wait_for(
            "ClusterIssuer pebble Ready",
            Duration::from_secs(30),
            || {
                let o = get(&cp, "/apis/cert-manager.io/v1/clusterissuers/pebble");
                (ready(&o).0 == "True").then_some(o)
            },
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    assert_eq!(ready(&issuer).1, "ACMEAccountRegistered");
    assert!(
        issuer["status"]["acme"]["uri"]
            .as_str()
            .unwrap_or_default()
            .starts_with("https://127.0.0.1:"),
        "{issuer}"
    );
    assert_eq!(
        issuer["status"]["acme"]["lastRegisteredEmail"],
        "ops@example.test"
    );
    let account = get(
        &cp,
        "/api/v1/namespaces/cert-manager/secrets/pebble-account",
    );
    assert!(
        account["data"]["tls.key"].is_string(),
        "no account key Secret: {account}"
    );

    let cert = cp
        .wait_for("Certificate web Ready", Duration::from_secs(60), || {
            let o = get(
                &cp,
                "/apis/cert-manager.io/v1/namespaces/demo/certificates/web",
            );
            (ready(&o).0 == "True").then_some(o)
        })
        .unwrap_or_else(|e| panic!("{e}\n{}\npebble:\n{}", logs(), pebble.log_text()));
    assert_eq!(cert["status"]["revision"], 1, "{cert}");
    assert_secret_issued(&cp, &pebble, dir.path());
    assert_acme_metrics(metrics_port, &pebble.directory_url);
    assert_external_request_signed(&cp, &pebble, dir.path(), &logs);
    terminate(&mut op);
}

/// A CertificateRequest made by someone else (a CSR of their own) for the ACME issuer is
/// signed through an order that is kept on the request (its issuer state) and shown as an
/// Order owned by it.
fn assert_external_request_signed(
    cp: &certwright_testkube::ControlPlane,
    pebble: &Pebble,
    dir: &std::path::Path,
    logs: &dyn Fn() -> String,
) {
    let key = dir.join("ext.key");
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-subj", "/CN=ext.example.test"])
        .args(["-addext", "subjectAltName=DNS:ext.example.test", "-keyout"])
        .arg(&key)
        .output()
        .expect("openssl req");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    use base64::Engine;
    let csr = base64::engine::general_purpose::STANDARD.encode(&out.stdout);
    let cr = serde_json::json!({
        "apiVersion": "cert-manager.io/v1", "kind": "CertificateRequest",
        "metadata": {"name": "ext", "namespace": "demo"},
        "spec": {"request": csr, "issuerRef": {"name": "pebble", "kind": "ClusterIssuer"},
                 "usages": ["digital signature", "key encipherment"]}
    });
    cp.admin(
        "POST",
        "/apis/cert-manager.io/v1/namespaces/demo/certificaterequests",
        Some(&cr.to_string()),
    )
    .expect("request");
    let signed = cp
        .wait_for(
            "the external request signed",
            Duration::from_secs(60),
            || {
                let o = get(
                    cp,
                    "/apis/cert-manager.io/v1/namespaces/demo/certificaterequests/ext",
                );
                (ready(&o).0 == "True").then_some(o)
            },
        )
        .unwrap_or_else(|e| {
            let cr = get(
                cp,
                "/apis/cert-manager.io/v1/namespaces/demo/certificaterequests/ext",
            );
            panic!("{e}\n{cr}\n{}", logs())
        });
    let state = signed["metadata"]["annotations"]["certwright.io/issuer-state"]
        .as_str()
        .unwrap_or_default();
    let record: serde_json::Value = serde_json::from_str(state).unwrap_or_default();
    let order_url = record["url"].as_str().unwrap_or_default();
    assert!(order_url.starts_with("https://127.0.0.1:"), "{signed}");
    let orders = items(cp, "/apis/acme.cert-manager.io/v1/namespaces/demo/orders");
    let order = orders
        .iter()
        .find(|o| o["metadata"]["ownerReferences"][0]["name"] == "ext")
        .unwrap_or_else(|| panic!("no Order for the request: {orders:?}"));
    assert_eq!(order["status"]["url"], order_url, "{order}");
    assert_eq!(order["status"]["state"], "valid", "{order}");
    let crt = base64::engine::general_purpose::STANDARD
        .decode(signed["status"]["certificate"].as_str().unwrap_or_default())
        .expect("certificate");
    let chain = dir.join("ext.pem");
    std::fs::write(&chain, crt).expect("chain");
    pebble.assert_issued(&chain);
}

/// GET `path` from 127.0.0.1:`port` (HTTP/1.0): the status code and body.
fn http_get(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = write!(s, "GET {path} HTTP/1.0\r\nHost: web.example.test\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string());
    (code, body.unwrap_or_default())
}

/// A process killed when dropped (a stopped one too), whatever the test's outcome.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn lease_holder(cp: &certwright_testkube::ControlPlane) -> Option<String> {
    let l = get(
        cp,
        "/apis/coordination.k8s.io/v1/namespaces/certwright/leases/certwright",
    );
    l["spec"]["holderIdentity"].as_str().map(str::to_string)
}

fn items(cp: &certwright_testkube::ControlPlane, path: &str) -> Vec<serde_json::Value> {
    get(cp, path)["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// How many of a challenge's objects are left: Challenges, Ingresses, Services and the
/// solver's EndpointSlice in demo.
fn solver_objects_left(cp: &certwright_testkube::ControlPlane, svc: &str) -> usize {
    let n = |path: &str| items(cp, path).len();
    n("/apis/acme.cert-manager.io/v1/namespaces/demo/challenges")
        + n("/apis/networking.k8s.io/v1/namespaces/demo/ingresses")
        + n("/api/v1/namespaces/demo/services")
        + items(
            cp,
            "/apis/discovery.k8s.io/v1/namespaces/demo/endpointslices",
        )
        .into_iter()
        .filter(|s| s["metadata"]["name"] == svc)
        .count()
}

/// A challenge in flight and its Order: cert-manager's fields and owners. The Order's
/// name and ACME URL.
fn assert_order_objects(
    cp: &certwright_testkube::ControlPlane,
    challenge: &serde_json::Value,
) -> (String, String) {
    assert_eq!(challenge["spec"]["type"], "HTTP-01", "{challenge}");
    assert_eq!(challenge["spec"]["dnsName"], "web.example.test");
    assert_eq!(challenge["spec"]["issuerRef"]["name"], "pebble");
    let order_ref = &challenge["metadata"]["ownerReferences"][0];
    assert_eq!(order_ref["kind"], "Order", "{challenge}");
    let order_name = order_ref["name"].as_str().unwrap_or_default().to_string();
    assert!(order_name.starts_with("web-1-"), "{order_name}");
    let order = get(
        cp,
        &format!("/apis/acme.cert-manager.io/v1/namespaces/demo/orders/{order_name}"),
    );
    let order_url = order["status"]["url"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(order_url.starts_with("https://127.0.0.1:"), "{order}");
    assert_eq!(
        order["metadata"]["ownerReferences"][0]["kind"],
        "CertificateRequest"
    );
    assert_eq!(order["metadata"]["ownerReferences"][0]["name"], "web-1");
    assert_eq!(order["spec"]["dnsNames"][0], "web.example.test", "{order}");

    (order_name, order_url)
}

/// The demo namespace, the operator's HTTP-01 Service with two ready addresses and one
/// not ready, and an Issuer with an Ingress solver (class, Service type, template).
fn http01_manifests(pebble: &Pebble) -> String {
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata: {{name: demo}}
---
apiVersion: v1
kind: Service
metadata: {{name: certwright-acme-http01, namespace: certwright}}
spec:
  ports: [{{name: http, port: 8089}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: certwright-acme-http01-x
  namespace: certwright
  labels: {{kubernetes.io/service-name: certwright-acme-http01}}
addressType: IPv4
endpoints:
  - addresses: [10.1.2.3]
    conditions: {{ready: true}}
  - addresses: [10.1.2.4]
    conditions: {{ready: true}}
  - addresses: [10.1.2.5]
    conditions: {{ready: false}}
ports: [{{name: http, port: 8089, protocol: TCP}}]
---
apiVersion: cert-manager.io/v1
kind: Issuer
metadata: {{name: pebble, namespace: demo}}
spec:
  acme:
    server: {server}
    caBundle: {bundle}
    privateKeySecretRef: {{name: pebble-account}}
    solvers:
      - http01:
          ingress:
            ingressClassName: nginx
            serviceType: ClusterIP
            ingressTemplate:
              metadata:
                labels: {{team: web}}
                annotations: {{example.test/note: solver}}
"#,
        server = pebble.directory_url,
        bundle = pebble.ca_bundle(),
    )
}

/// The HTTP-01 solver's Service (no selector), EndpointSlice (the ready addresses of the
/// operator's own Service) and Ingress (class, template, the token's path) for the one
/// challenge in demo: the Service's name.
fn assert_solver_routes(cp: &certwright_testkube::ControlPlane, path: &str) -> String {
    let solver = items(cp, "/api/v1/namespaces/demo/services")
        .into_iter()
        .find(|s| s["metadata"]["labels"]["acme.cert-manager.io/http01-solver"] == "true")
        .expect("a solver Service");
    let svc = solver["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(svc.starts_with("cm-acme-http-solver-"), "{solver}");
    assert_eq!(solver["spec"]["type"], "ClusterIP");
    assert!(solver["spec"]["selector"].is_null(), "{solver}");
    assert_eq!(solver["spec"]["ports"][0]["port"], 8089);
    let slice = get(
        cp,
        &format!("/apis/discovery.k8s.io/v1/namespaces/demo/endpointslices/{svc}"),
    );
    let addresses: Vec<&str> = slice["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["addresses"][0].as_str())
        .collect();
    assert_eq!(
        addresses,
        ["10.1.2.3", "10.1.2.4"],
        "ready addresses only: {slice}"
    );
    assert_eq!(
        slice["metadata"]["labels"]["kubernetes.io/service-name"],
        svc.as_str()
    );
    let ing = get(
        cp,
        &format!("/apis/networking.k8s.io/v1/namespaces/demo/ingresses/{svc}"),
    );
    assert_eq!(ing["spec"]["ingressClassName"], "nginx", "{ing}");
    assert_eq!(ing["metadata"]["labels"]["team"], "web");
    assert_eq!(
        ing["metadata"]["annotations"]["example.test/note"],
        "solver"
    );
    let rule = &ing["spec"]["rules"][0];
    assert_eq!(rule["host"], "web.example.test");
    assert_eq!(rule["http"]["paths"][0]["path"], path);
    assert_eq!(
        rule["http"]["paths"][0]["backend"]["service"]["name"],
        svc.as_str()
    );

    svc
}

/// HTTP-01 in the operator: two replicas; Pebble validates through the standby's
/// listener only, so the certificate proves that a replica that does not lead serves the
/// token. While the order is in flight the Order and Challenge exist with cert-manager's
/// fields, and so do the solver's Service (no selector), its EndpointSlice (the addresses
/// of the operator's own HTTP-01 Service) and its Ingress (class, template). Then the
/// leader stops mid-order; the standby takes over and finishes the same order (same Order
/// URL, same CertificateRequest), and the challenge's objects are cleaned up.
#[test]
fn operator_http01_on_every_replica_and_a_leader_change_mid_order() {
    let Some((cp, kubeconfig, _)) = operator_control_plane() else {
        return;
    };
    let (port_a, port_b) = (free_port(), free_port());
    let Some(pebble) = Pebble::start(&PebbleOptions::http(port_b)) else {
        return;
    };
    let manifests = http01_manifests(&pebble);
    cp.create_all(&manifests).expect("manifests");
    let dir = tempfile::tempdir().expect("tempdir");
    let start = |id: &str, port: u16| {
        let log = dir.path().join(format!("{id}.log"));
        let addr = format!("127.0.0.1:{port}");
        let mut cmd = std::process::Command::new(bin());
        cmd.args(["operator", "--leader-elect", "--metrics-address", ""])
            .args(["--acme-http01-address", &addr])
            .args(["--acme-http01-service", "certwright/certwright-acme-http01"])
            .env("KUBECONFIG", &kubeconfig)
            .env("POD_NAME", id)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"));
        (cmd.spawn().expect("operator starts"), log)
    };
    let (a, log_a) = start("replica-a", port_a);
    let a = Killed(a);
    let logs = || {
        let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
        let b = dir.path().join("replica-b.log");
        format!("A:\n{}\nB:\n{}", read(&log_a), read(&b))
    };
    cp.wait_for("replica-a leads", Duration::from_secs(30), || {
        (lease_holder(&cp).as_deref() == Some("replica-a")).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    let (mut b, _) = start("replica-b", port_b);
    cp.create_all(
        "apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {name: web, namespace: demo}\nspec:\n  secretName: web-tls\n  issuerRef: {name: pebble}\n  dnsNames: [web.example.test]\n",
    )
    .expect("certificate");

    // In flight: a Challenge marked presented (its Service and Ingress exist).
    let challenge = cp
        .wait_for("a presented Challenge", Duration::from_secs(60), || {
            items(
                &cp,
                "/apis/acme.cert-manager.io/v1/namespaces/demo/challenges",
            )
            .into_iter()
            .find(|c| c["status"]["presented"] == true)
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    let token = challenge["spec"]["token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let key = challenge["spec"]["key"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let path = format!("/.well-known/acme-challenge/{token}");
    for (who, port) in [("leader", port_a), ("standby", port_b)] {
        let got = cp
            .wait_for(
                &format!("the {who} serves the token"),
                Duration::from_secs(10),
                || {
                    let r = http_get(port, &path);
                    (r.0 == 200).then_some(r.1)
                },
            )
            .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
        assert_eq!(got, key, "{who}");
    }
    assert_eq!(http_get(port_b, "/.well-known/acme-challenge/nope").0, 404);
    let (order_name, order_url) = assert_order_objects(&cp, &challenge);
    let svc = assert_solver_routes(&cp, &path);

    // The leader freezes mid-order (as a hung or partitioned pod would): its Lease
    // expires and the standby finishes the same order.
    let pid = rustix::process::Pid::from_raw(a.0.id() as i32).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::STOP).expect("SIGSTOP");
    let at_stop = get(
        &cp,
        "/apis/cert-manager.io/v1/namespaces/demo/certificates/web",
    );
    assert_ne!(
        ready(&at_stop).0,
        "True",
        "issued before the leader stopped: {at_stop}"
    );
    assert_tables_mid_order(&cp, &order_name);
    assert_cmctl_status_mid_order(&cp, &order_name, &challenge);
    let cert = cp
        .wait_for("Certificate web Ready", Duration::from_secs(120), || {
            let o = get(
                &cp,
                "/apis/cert-manager.io/v1/namespaces/demo/certificates/web",
            );
            (ready(&o).0 == "True").then_some(o)
        })
        .unwrap_or_else(|e| panic!("{e}\n{}\npebble:\n{}", logs(), pebble.log_text()));
    assert_eq!(lease_holder(&cp).as_deref(), Some("replica-b"));
    assert_eq!(cert["status"]["revision"], 1, "{cert}");
    let order = get(
        &cp,
        &format!("/apis/acme.cert-manager.io/v1/namespaces/demo/orders/{order_name}"),
    );
    assert_eq!(
        order["status"]["url"],
        order_url.as_str(),
        "the same order: {order}"
    );
    assert_eq!(order["status"]["state"], "valid", "{order}");
    let (_, rows) = cp
        .table("/apis/acme.cert-manager.io/v1/namespaces/demo/orders")
        .expect("orders table");
    assert_eq!(rows[0][..2], [order_name.clone(), "valid".to_string()]);
    let requests = items(
        &cp,
        "/apis/cert-manager.io/v1/namespaces/demo/certificaterequests",
    );
    assert_eq!(requests.len(), 1, "one request: {requests:?}");
    let left = || solver_objects_left(&cp, &svc);
    cp.wait_for(
        "the challenge's objects removed",
        Duration::from_secs(30),
        || (left() == 0).then_some(()),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    assert_eq!(
        http_get(port_b, &path).0,
        404,
        "the token is no longer served"
    );
    drop(a);
    assert_secret_issued(&cp, &pebble, dir.path());
    assert_named_ingress_edited_and_restored(&cp, &logs);
    terminate(&mut b);
}

/// What `kubectl get orders,challenges` shows mid-order (the CRDs' printer columns, as the
/// server's Table).
fn assert_tables_mid_order(cp: &certwright_testkube::ControlPlane, order_name: &str) {
    let (cols, rows) = cp
        .table("/apis/acme.cert-manager.io/v1/namespaces/demo/orders")
        .expect("orders table");
    assert_eq!(cols, ["Name", "State", "Age"], "{rows:?}");
    assert_eq!(rows[0][0], order_name);
    assert!(
        ["pending", "ready", "processing"].contains(&rows[0][1].as_str()),
        "{rows:?}"
    );
    let (cols, rows) = cp
        .table("/apis/acme.cert-manager.io/v1/namespaces/demo/challenges")
        .expect("challenges table");
    assert_eq!(cols, ["Name", "State", "Domain", "Age"], "{rows:?}");
    assert!(
        ["pending", "processing", "valid"].contains(&rows[0][1].as_str())
            && rows[0][2] == "web.example.test",
        "{rows:?}"
    );
}

/// `cmctl status certificate` mid-order: cert-manager's CLI finds the request, its Order
/// and its Challenge through their owners, as it does with cert-manager.
fn assert_cmctl_status_mid_order(
    cp: &certwright_testkube::ControlPlane,
    order_name: &str,
    challenge: &serde_json::Value,
) {
    let Some(cmctl) = common::cmctl() else {
        return;
    };
    let (ok, out) = common::run_cmctl(
        &cmctl,
        &cp.kubeconfig,
        &["status", "certificate", "web", "-n", "demo"],
    );
    assert!(ok, "{out}");
    let challenge_name = challenge["metadata"]["name"].as_str().unwrap_or_default();
    for want in [
        "CertificateRequest:",
        "Name: web-1",
        "Order:",
        &format!("Name: {order_name}"),
        "Challenges:",
        &format!("Name: {challenge_name}, Type: HTTP-01"),
    ] {
        assert!(out.contains(want), "{want:?} not in:\n{out}");
    }
}

/// `http01.ingress.name`: the token's path is added to the user's Ingress and taken out
/// again (two spec changes: generation 3), the user's own rule untouched.
fn assert_named_ingress_edited_and_restored(
    cp: &certwright_testkube::ControlPlane,
    logs: &dyn Fn() -> String,
) {
    cp.create_all(
        r#"apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: shop, namespace: demo}
spec:
  rules:
    - host: shop.example.test
      http:
        paths:
          - {path: /, pathType: Prefix, backend: {service: {name: shop, port: {number: 80}}}}
"#,
    )
    .expect("ingress");
    let issuer = get(
        cp,
        "/apis/cert-manager.io/v1/namespaces/demo/issuers/pebble",
    );
    let mut named = serde_json::json!({
        "apiVersion": "cert-manager.io/v1", "kind": "Issuer",
        "metadata": {"name": "pebble-named", "namespace": "demo"},
        "spec": issuer["spec"].clone(),
    });
    named["spec"]["acme"]["solvers"] =
        serde_json::json!([{"http01": {"ingress": {"name": "shop"}}}]);
    cp.admin(
        "POST",
        "/apis/cert-manager.io/v1/namespaces/demo/issuers",
        Some(&named.to_string()),
    )
    .expect("issuer");
    cp.create_all(
        "apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {name: shop, namespace: demo}\nspec:\n  secretName: shop-tls\n  issuerRef: {name: pebble-named}\n  dnsNames: [shop.example.test]\n",
    )
    .expect("certificate");
    cp.wait_for("Certificate shop Ready", Duration::from_secs(60), || {
        let o = get(
            cp,
            "/apis/cert-manager.io/v1/namespaces/demo/certificates/shop",
        );
        (ready(&o).0 == "True").then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    let ing = cp
        .wait_for("the path taken out again", Duration::from_secs(30), || {
            let i = get(
                cp,
                "/apis/networking.k8s.io/v1/namespaces/demo/ingresses/shop",
            );
            (i["metadata"]["generation"] == 3).then_some(i)
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    let rules = ing["spec"]["rules"].as_array().cloned().unwrap_or_default();
    assert_eq!(rules.len(), 1, "{ing}");
    assert_eq!(rules[0]["http"]["paths"][0]["path"], "/", "{ing}");
}

/// The reference scenario's external PKI in the operator: examples/e2e/external's
/// `letsencrypt` ClusterIssuer (Route 53 DNS-01) and the customer route's Certificate, as
/// written except for the server (Pebble), its caBundle, the hosted zone and the endpoint
/// (moto, whose records are copied into BIND, authoritative for example.com).
#[test]
fn operator_scenario_route_certificate_through_route53() {
    if !common::require("nsupdate") || !common::require("openssl") {
        return;
    }
    let Some((cp, kubeconfig, _)) = operator_control_plane() else {
        return;
    };
    let mut o = PebbleOptions::http(free_port());
    o.bind = Some("example.com".into());
    let Some(pebble) = Pebble::start(&o) else {
        return;
    };
    let Some(moto) = common::moto::Moto::start() else {
        return;
    };
    let bind = pebble.bind.as_ref().expect("bind");
    let zone_id = moto.create_zone("example.com");
    let _copier = common::moto::Copier::start(&moto, &zone_id, bind);
    let text = std::fs::read_to_string(repo().join("examples/e2e/external/letsencrypt.yaml"))
        .expect("example");
    let le = "server: https://acme-v02.api.letsencrypt.org/directory";
    assert!(text.contains(le) && text.contains("hostedZoneID: Z0EXAMPLE"));
    let example = text
        .replace(
            le,
            &format!(
                "server: {}\n    caBundle: {}",
                pebble.directory_url,
                pebble.ca_bundle()
            ),
        )
        .replace(
            "hostedZoneID: Z0EXAMPLE",
            &format!("hostedZoneID: {zone_id}"),
        );
    cp.create_all(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: demo}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: cert-manager}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: route53-credentials, namespace: cert-manager}\nstringData: {aws_secret_access_key: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY}\n",
    )
    .expect("namespaces and credentials");
    cp.create_all(&example).expect("example");
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("operator.log");
    let op = std::process::Command::new(bin())
        .args(["operator", "--metrics-address", ""])
        .args(["--dns01-recursive-nameservers", &bind.address()])
        .env("KUBECONFIG", &kubeconfig)
        .env("AWS_ENDPOINT_URL_ROUTE_53", &moto.endpoint)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("operator starts");
    let mut op = Killed(op);
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();
    cp.wait_for(
        "Certificate route-customer Ready",
        Duration::from_secs(120),
        || {
            let o = get(
                &cp,
                "/apis/cert-manager.io/v1/namespaces/demo/certificates/route-customer",
            );
            (ready(&o).0 == "True").then_some(())
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}\npebble:\n{}", logs(), pebble.log_text()));
    use base64::Engine;
    let secret = get(&cp, "/api/v1/namespaces/demo/secrets/route-customer");
    let b64 = |k: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(secret["data"][k].as_str().unwrap_or_default())
            .expect(k)
    };
    assert!(
        b64("tls.key").starts_with(b"-----BEGIN PRIVATE KEY-----"),
        "PKCS#8 asked for"
    );
    let chain = dir.path().join("chain.pem");
    std::fs::write(&chain, b64("tls.crt")).expect("chain");
    pebble.assert_issued(&chain);
    let orders = items(&cp, "/apis/acme.cert-manager.io/v1/namespaces/demo/orders");
    assert_eq!(orders.len(), 1, "{orders:?}");
    assert_eq!(orders[0]["status"]["state"], "valid");
    let left = items(
        &cp,
        "/apis/acme.cert-manager.io/v1/namespaces/demo/challenges",
    );
    assert!(left.is_empty(), "DNS-01 Challenges removed: {left:?}");
    assert_eq!(
        orders[0]["spec"]["dnsNames"][0],
        "customer-demo.apps.example.com"
    );
    let rrset = format!("/2013-04-01/hostedzone/{zone_id}/rrset");
    assert!(
        moto.requests().iter().any(|r| r.path == rrset),
        "the spec's hostedZoneID was not used"
    );
    terminate(&mut op.0);
}
