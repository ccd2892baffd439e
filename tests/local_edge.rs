//! The reference scenario end to end on one machine, through a real HAProxy: the local
//! runtime issues the internal PKI and a stand-in public certificate, serves the Route
//! manifests with HAProxy, and the three demo services (customer → preference →
//! recommendation) serve and call each other over HTTPS. Then, under 40 requests a second
//! through the edge for 70 s (half on kept-alive connections; the CI version of
//! bench/rotation.sh): each certificate renewed in turn, the root CA with a new key, then
//! every service and route certificate at once every 10 s. No request may fail.

mod common;

use common::pebble::free_port;
use common::*;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const CUSTOMER_HOST: &str = "customer-demo.apps.example.com";
const PREFERENCE_HOST: &str = "preference-demo.apps.example.com";
const RECOMMENDATION_HOST: &str = "recommendation-demo.apps.example.com";

/// An edge Route (TLS ends at HAProxy, plain HTTP to the Service) with its certificate
/// from the stand-in public CA, and a Route whose Service has no address.
const EXTRA_ROUTES: &str = r#"
apiVersion: cert-manager.io/v1
kind: Certificate
metadata:
  name: route-recommendation
  namespace: demo
spec:
  secretName: route-recommendation
  issuerRef:
    name: letsencrypt-stand-in
  dnsNames: [recommendation-demo.apps.example.com]
---
apiVersion: route.openshift.io/v1
kind: Route
metadata:
  name: recommendation
  namespace: demo
  annotations:
    cert-utils-operator.redhat-cop.io/certs-from-secret: route-recommendation
spec:
  host: recommendation-demo.apps.example.com
  to: {kind: Service, name: recommendation}
  tls: {termination: edge}
---
apiVersion: route.openshift.io/v1
kind: Route
metadata:
  name: nowhere
  namespace: demo
spec:
  host: nowhere-demo.apps.example.com
  to: {kind: Service, name: nowhere}
  tls: {termination: edge}
"#;

/// The worker's process id, from HAProxy's runtime API.
fn worker_pid(state: &Path) -> Option<String> {
    let mut s = std::os::unix::net::UnixStream::connect(state.join("edge/admin.sock")).ok()?;
    s.write_all(b"show info\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.lines()
        .find_map(|l| l.strip_prefix("Pid: "))
        .map(str::to_owned)
}

fn anchors(pem: &Path) -> usize {
    std::fs::read_to_string(pem)
        .map(|s| s.matches("BEGIN CERTIFICATE").count())
        .unwrap_or(0)
}

#[test]
fn scenario_through_haproxy_rotates_every_certificate_under_load_without_a_failure() {
    if !require("haproxy") || !require("curl") || !require("openssl") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let m = tmp.path().join("manifests");
    std::fs::create_dir(&m).expect("manifests");
    for f in [
        "deploy/demo/pki.yaml",
        "deploy/demo/certificates.yaml",
        "deploy/demo/routes.yaml",
        "demo/manifests/stand-in-public-ca.yaml",
    ] {
        let src = repo().join(f);
        std::fs::copy(&src, m.join(src.file_name().expect("name"))).expect("copy");
    }
    write(&m, "extra.yaml", EXTRA_ROUTES);
    let state = tmp.path().join("state");
    let port = || format!("127.0.0.1:{}", free_port());
    let (edge, cust, pref, rec, rec_plain) = (port(), port(), port(), port(), port());
    let log = std::fs::File::create(tmp.path().join("runtime.log")).expect("log");
    let runtime = Command::new(bin())
        .args(["local", "run", "-f"])
        .arg(&m)
        .arg("--state")
        .arg(&state)
        .args(["--edge-listen", &edge])
        .args(["--endpoint", &format!("demo/customer={cust}")])
        .args(["--endpoint", &format!("demo/preference={pref}")])
        .args(["--endpoint", &format!("demo/recommendation={rec_plain}")])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("runtime starts");
    let mut runtime = Stopped(runtime);
    let runtime_log =
        || std::fs::read_to_string(tmp.path().join("runtime.log")).unwrap_or_default();
    let secret = |n: &str| secret_dir(&state, "demo", n);
    wait_until(120, runtime_log, || {
        [
            "service-customer",
            "route-service-preference",
            "service-recommendation",
            "route-customer",
            "route-recommendation",
        ]
        .iter()
        .all(|s| secret(s).join("tls.crt").exists())
    });
    let _hops = [
        start_hop(
            "recommendation",
            &rec,
            &secret("service-recommendation"),
            None,
            &["--plain-listen", &rec_plain],
        ),
        start_hop(
            "preference",
            &pref,
            &secret("route-service-preference"),
            Some((&rec, "recommendation.demo.svc")),
            &[],
        ),
        start_hop(
            "customer",
            &cust,
            &secret("service-customer"),
            Some((&pref, "preference.demo.svc")),
            &[],
        ),
    ];
    // The public CA bundle a browser would trust (the stand-in for Let's Encrypt's root).
    let public_ca = secret("route-customer").join("ca.crt");
    wait_until(60, runtime_log, || {
        curl(&edge, CUSTOMER_HOST, &public_ca, "/").0 == 200
    });

    // Re-encrypt: the edge presents route-customer's certificate and checks customer's
    // against service-customer's ca.crt; each hop checks the next against its own.
    let (code, body) = curl(&edge, CUSTOMER_HOST, &public_ca, "/");
    assert_eq!(code, 200, "{body}");
    assert!(
        body.starts_with("customer => preference => recommendation v1 from 'test-host': "),
        "{body}"
    );
    assert_eq!(
        served_serial(&edge, CUSTOMER_HOST),
        file_serial(&secret("route-customer").join("tls.crt"))
    );
    // Passthrough: preference's own multi-SAN certificate, through the edge untouched.
    let internal_ca = secret("route-service-preference").join("ca.crt");
    let (code, body) = curl(&edge, PREFERENCE_HOST, &internal_ca, "/");
    assert_eq!(code, 200, "{body}");
    assert!(
        body.starts_with("preference => recommendation v1 from 'test-host': "),
        "{body}"
    );
    assert_eq!(
        served_serial(&edge, PREFERENCE_HOST),
        file_serial(&secret("route-service-preference").join("tls.crt"))
    );
    // Edge: TLS ends at HAProxy, plain HTTP to recommendation.
    let (code, body) = curl(
        &edge,
        RECOMMENDATION_HOST,
        &secret("route-recommendation").join("ca.crt"),
        "/",
    );
    assert_eq!(code, 200, "{body}");
    assert!(
        body.starts_with("recommendation v1 from 'test-host': "),
        "{body}"
    );
    // A host no Route serves: 503 from the edge, with its default certificate.
    let (code, _) = curl(&edge, "unknown.apps.example.com", &public_ca, "/");
    assert_eq!(
        code, 0,
        "the default certificate is nobody's: curl refuses it"
    );

    // certwright status shows the Routes, what they serve, and the one not served.
    let s = status_json(&state);
    let routes = s["routes"].as_array().expect("routes in status");
    let route = |n: &str| {
        routes
            .iter()
            .find(|r| r["name"] == n)
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(routes.len(), 4, "{routes:?}");
    assert_eq!(route("customer")["admitted"], true);
    assert_eq!(route("customer")["termination"], "reencrypt");
    assert_eq!(
        route("customer")["serial"]
            .as_str()
            .map(|s| s.trim_start_matches('0').to_ascii_lowercase()),
        Some(file_serial(&secret("route-customer").join("tls.crt")))
    );
    assert_eq!(route("preference")["termination"], "passthrough");
    assert_eq!(route("recommendation")["admitted"], true);
    assert_eq!(route("nowhere")["admitted"], false);
    assert_eq!(route("nowhere")["reason"], "NoEndpoint");
    let table = run(&["status", "--state", &state.display().to_string()]);
    let table = String::from_utf8_lossy(&table.stdout).into_owned();
    assert!(
        table.contains("demo/customer")
            && table.contains("reencrypt")
            && table.contains("Route demo/nowhere not served: NoEndpoint"),
        "{table}"
    );

    // Load through the re-encrypt route while everything is renewed.
    let load = Command::new(demo_bin())
        .args([
            "load",
            "--connect",
            &edge,
            "--host",
            CUSTOMER_HOST,
            "--rate",
            "40",
            "--duration",
            "70",
            "--expect",
            "customer => preference => recommendation v1 from 'test-host': ",
        ])
        .arg("--ca")
        .arg(&public_ca)
        .stdout(Stdio::piped())
        .spawn()
        .expect("load runs");
    let load_started = std::time::Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let renew = |name: &str, ns: &str| {
        let out = run(&[
            "renew",
            name,
            "-n",
            ns,
            "--state",
            &state.display().to_string(),
        ]);
        assert!(out.status.success(), "{}", text(&out));
    };
    // The Route certificate: updated in place, no reload (the same worker serves it).
    let worker = worker_pid(&state).expect("haproxy answers");
    let before = file_serial(&secret("route-customer").join("tls.crt"));
    renew("route-customer", "demo");
    wait_until(30, runtime_log, || {
        let now = file_serial(&secret("route-customer").join("tls.crt"));
        now != before && served_serial(&edge, CUSTOMER_HOST) == now
    });
    assert_eq!(
        worker_pid(&state),
        Some(worker),
        "a Route certificate renewal must not reload HAProxy"
    );
    // Each service: its hop serves the new certificate.
    for (name, dir, addr) in [
        ("customer", "service-customer", &cust),
        ("preference", "route-service-preference", &pref),
        ("recommendation", "service-recommendation", &rec),
    ] {
        let before = file_serial(&secret(dir).join("tls.crt"));
        renew(name, "demo");
        wait_until(30, runtime_log, || {
            let now = file_serial(&secret(dir).join("tls.crt"));
            now != before && served_serial(addr, name) == now
        });
    }
    // The root CA, with a new key: the services trust both CAs, then get leaves of the
    // new one, then trust it alone.
    let root_before = file_serial(&secret_dir(&state, "cert-manager", "rootca").join("tls.crt"));
    let leaf_before = file_serial(&secret("service-customer").join("tls.crt"));
    renew("rootca", "cert-manager");
    wait_until(30, runtime_log, || {
        anchors(&secret("service-customer").join("ca.crt")) == 2
    });
    assert_eq!(
        file_serial(&secret("service-customer").join("tls.crt")),
        leaf_before,
        "trust first: the leaf waits"
    );
    wait_until(60, runtime_log, || {
        file_serial(&secret("service-customer").join("tls.crt")) != leaf_before
    });
    assert_ne!(
        file_serial(&secret_dir(&state, "cert-manager", "rootca").join("tls.crt")),
        root_before
    );
    for dir in [
        "service-customer",
        "route-service-preference",
        "service-recommendation",
    ] {
        wait_until(60, runtime_log, || {
            anchors(&secret(dir).join("ca.crt")) == 1
        });
        let out = run(&["inspect", &secret(dir).display().to_string()]);
        assert!(out.status.success(), "{dir}: {}", text(&out));
    }
    // Then every certificate of the routes and services at once, every 10 s, until the
    // load's last 20 s (at least once).
    let mut rounds = 0;
    loop {
        let t = std::time::Instant::now();
        for name in ["customer", "preference", "recommendation", "route-customer"] {
            renew(name, "demo");
        }
        rounds += 1;
        if load_started.elapsed() > Duration::from_secs(40) {
            break;
        }
        std::thread::sleep(Duration::from_secs(10).saturating_sub(t.elapsed()));
    }
    eprintln!("{rounds} rounds of renewals of every certificate under the load");
    let out = load.wait_with_output().expect("load ends");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("load summary");
    eprintln!("load during the rotations: {summary}");
    assert_eq!(summary["requests"], 40 * 70, "{summary}");
    assert_eq!(
        summary["failed"],
        0,
        "requests failed during the rotations: {summary}\n{}",
        runtime_log()
    );
    let (code, body) = curl(&edge, CUSTOMER_HOST, &public_ca, "/");
    assert_eq!(code, 200, "{body}");
    // Every rotation step is in the log, in order.
    let log = runtime_log();
    let at = |needle: &str| {
        log.find(needle)
            .unwrap_or_else(|| panic!("{needle:?} not in the log:\n{log}"))
    };
    assert!(at("edge certificates updated in place") < at("reason=\"IssuerCAChanged\""));
    assert!(at("ca.crt follows the issuer's CA rotation") < at("reason=\"IssuerCAChanged\""));

    // Stopping the runtime stops HAProxy.
    let worker = worker_pid(&state).expect("haproxy answers");
    terminate(&mut runtime.0);
    wait_until(30, runtime_log, || {
        !Path::new(&format!("/proc/{worker}")).exists()
    });
}
