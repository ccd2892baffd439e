//! The ACME issuer in the local runtime against a real Pebble: HTTP-01 served by
//! `--acme-http01-address`, the account key generated once and reused, the issued chain
//! verified against Pebble's issuing root with openssl.

mod common;

use common::pebble::{free_port, Pebble, PebbleOptions};
use std::path::Path;
use std::process::Command;

fn manifests(p: &Pebble, dns_names: &[&str]) -> String {
    let names: Vec<String> = dns_names.iter().map(|n| format!("      - {n}")).collect();
    format!(
        r#"apiVersion: cert-manager.io/v1
kind: ClusterIssuer
metadata:
  name: pebble
spec:
  acme:
    server: {server}
    email: ops@example.test
    caBundle: {bundle}
    privateKeySecretRef:
      name: pebble-account
    solvers:
      - http01:
          ingress: {{}}
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata:
  name: web
  namespace: demo
spec:
  secretName: web-tls
  issuerRef:
    name: pebble
    kind: ClusterIssuer
  dnsNames:
{names}
"#,
        server = p.directory_url,
        bundle = p.ca_bundle(),
        names = names.join("\n"),
    )
}

fn local_once(m: &Path, state: &Path, port: u16) -> std::process::Output {
    Command::new(common::bin())
        .args(["local", "run", "--once", "--timeout", "2m", "-f"])
        .arg(m)
        .arg("--state")
        .arg(state)
        .arg("--acme-http01-address")
        .arg(format!("127.0.0.1:{port}"))
        .output()
        .expect("runs certwright")
}

/// A Pebble and a fresh state directory; None (skipped) when Pebble is not built.
struct Setup {
    pebble: Pebble,
    dir: tempfile::TempDir,
    state: std::path::PathBuf,
}

fn setup(o: &PebbleOptions) -> Option<Setup> {
    let pebble = Pebble::start(o)?;
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    Some(Setup { pebble, dir, state })
}

/// A Pebble behind BIND (for DNS-01), its address, and a fresh state directory.
fn setup_dns() -> Option<(Setup, String)> {
    let mut o = PebbleOptions::http(free_port());
    o.bind = true;
    let s = setup(&o)?;
    let bind = s.pebble.bind.as_ref().expect("bind").address();
    Some((s, bind))
}

/// A `--once` run that must succeed (Pebble's log shown when it does not).
fn issue(pebble: &Pebble, m: &Path, state: &Path, port: u16) {
    let out = local_once(m, state, port);
    assert!(
        out.status.success(),
        "{}\npebble log:\n{}",
        common::text(&out),
        pebble.log_text()
    );
}

/// Checks with `openssl verify` that the Secret's chain leads to the root Pebble issues
/// under (the intermediates taken from the chain).
fn assert_chain_verifies(pebble: &Pebble, state: &Path, ns: &str, secret: &str) {
    let chain = common::secret_dir(state, ns, secret).join("tls.crt");
    let root = pebble.tmp().join("issuing-root.pem");
    std::fs::write(&root, pebble.issuing_root()).expect("root");
    let out = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(&root)
        .arg("-untrusted")
        .arg(&chain)
        .arg(&chain)
        .output()
        .expect("openssl");
    let text = common::text(&out);
    assert!(out.status.success() && text.contains(": OK"), "{text}");
}

/// The local status of the ClusterIssuer `name`.
fn issuer_status(state: &Path, name: &str) -> serde_json::Value {
    let status = common::status_json(state);
    status["issuers"]
        .as_array()
        .and_then(|a| a.iter().find(|i| i["name"] == name))
        .cloned()
        .unwrap_or_else(|| panic!("no issuer {name} in {status}"))
}

#[test]
fn http01_issues_and_reuses_the_account() {
    if !common::require("openssl") || !common::require("curl") {
        return;
    }
    let port = free_port();
    let Some(Setup { pebble, dir, state }) = setup(&PebbleOptions::http(port)) else {
        return;
    };
    let m = common::write(
        dir.path(),
        "m.yaml",
        &manifests(&pebble, &["web.example.test", "www.example.test"]),
    );

    issue(&pebble, &m, &state, port);

    // The chain verifies against the root Pebble issues under; the names are the spec's.
    assert_chain_verifies(&pebble, &state, "demo", "web-tls");
    let secret = common::secret_dir(&state, "demo", "web-tls");
    let text = Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
        .arg(secret.join("tls.crt"))
        .output()
        .expect("openssl");
    let sans = String::from_utf8_lossy(&text.stdout);
    assert!(
        sans.contains("DNS:web.example.test") && sans.contains("DNS:www.example.test"),
        "{sans}"
    );

    // The account: a key generated into the Secret, the issuer Ready with its URI.
    let account = common::secret_dir(&state, "cert-manager", "pebble-account").join("tls.key");
    let key1 = std::fs::read(&account).expect("account key written");
    let issuer = issuer_status(&state, "pebble");
    let ready = issuer["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .cloned()
        .expect("Ready");
    assert_eq!(ready["status"], "True", "{issuer}");
    assert_eq!(ready["reason"], "ACMEAccountRegistered", "{issuer}");
    let uri = issuer["status"]["acme"]["uri"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(uri.starts_with("https://127.0.0.1:"), "{issuer}");
    assert_eq!(
        issuer["status"]["acme"]["lastRegisteredEmail"],
        "ops@example.test"
    );

    // A second run: nothing to issue, and the same account (the key is not replaced).
    let v1 = common::version(&state, "demo", "web-tls");
    issue(&pebble, &m, &state, port);
    assert_eq!(
        common::version(&state, "demo", "web-tls"),
        v1,
        "an up-to-date certificate was reissued"
    );
    assert_eq!(std::fs::read(&account).expect("account key"), key1);

    // A new name: a new order with the same account.
    let m = common::write(
        dir.path(),
        "m.yaml",
        &manifests(&pebble, &["web.example.test", "api.example.test"]),
    );
    issue(&pebble, &m, &state, port);
    assert_ne!(common::version(&state, "demo", "web-tls"), v1);
    assert_chain_verifies(&pebble, &state, "demo", "web-tls");
    let issuer = issuer_status(&state, "pebble");
    assert_eq!(
        issuer["status"]["acme"]["uri"].as_str(),
        Some(uri.as_str()),
        "the account changed"
    );
}

/// Orders Pebble created, from its log (a request it rejected for its nonce and that was
/// sent again is logged twice as a request, once as an order).
fn orders_created(p: &Pebble) -> usize {
    p.log_text()
        .lines()
        .filter(|l| l.contains("Added order"))
        .count()
}

#[test]
fn an_order_in_flight_survives_a_restart() {
    if !common::require("openssl") || !common::require("curl") {
        return;
    }
    let port = free_port();
    // Validation sleeps (up to 4 s per validation) keep the order pending long enough for
    // the first run to stop in the middle of it.
    let mut o = PebbleOptions::http(port);
    o.validation_sleeps = true;
    o.env.push(("PEBBLE_VA_SLEEPTIME".into(), "4".into()));
    let Some(Setup { pebble, dir, state }) = setup(&o) else {
        return;
    };
    let m = common::write(
        dir.path(),
        "m.yaml",
        &manifests(
            &pebble,
            &["a.example.test", "b.example.test", "c.example.test"],
        ),
    );
    let first = Command::new(common::bin())
        .args(["local", "run", "--once", "--timeout", "1s", "-f"])
        .arg(&m)
        .arg("--state")
        .arg(&state)
        .arg("--acme-http01-address")
        .arg(format!("127.0.0.1:{port}"))
        .output()
        .expect("runs");
    let status = common::status_json(&state);
    let cert = status["certificates"]
        .as_array()
        .and_then(|c| c.first())
        .cloned()
        .expect("certificate");
    if first.status.success() {
        // Every validation slept 0 s: nothing was left in flight to resume.
        eprintln!("SKIPPED resume check: the order finished within the first run");
        return;
    }
    let order = cert["pending"]["state"]["url"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        order.starts_with("https://127.0.0.1:"),
        "no order in flight: {cert}\n{}\npebble log:\n{}",
        common::text(&first),
        pebble.log_text()
    );
    let table = common::run(&["status", "--state", &state.display().to_string()]);
    let table = String::from_utf8_lossy(&table.stdout).into_owned();
    assert!(
        table.contains(&format!("order {order}: pending")),
        "{table}"
    );
    assert!(
        table.contains("challenge http-01 a.example.test:"),
        "{table}"
    );
    assert_eq!(orders_created(&pebble), 1);

    // The second run resumes the same order: no new one is created.
    issue(&pebble, &m, &state, port);
    assert_eq!(
        orders_created(&pebble),
        1,
        "a new order was created instead of resuming {order}"
    );
    assert_chain_verifies(&pebble, &state, "demo", "web-tls");
}

/// An issuer solving DNS-01 through BIND with TSIG (`secret` is the TSIG Secret's value).
fn rfc2136_manifests(p: &Pebble, bind: &str, tsig_secret: &str, dns_names: &[&str]) -> String {
    let names: Vec<String> = dns_names
        .iter()
        .map(|n| format!("      - \"{n}\""))
        .collect();
    format!(
        r#"apiVersion: v1
kind: Secret
metadata:
  name: tsig
  namespace: cert-manager
stringData:
  secret: "{tsig_secret}"
---
apiVersion: cert-manager.io/v1
kind: ClusterIssuer
metadata:
  name: pebble-dns
spec:
  acme:
    server: {server}
    caBundle: {bundle}
    privateKeySecretRef:
      name: pebble-dns-account
    solvers:
      - dns01:
          rfc2136:
            nameserver: "{bind}"
            tsigKeyName: {key}
            tsigAlgorithm: HMACSHA256
            tsigSecretSecretRef:
              name: tsig
              key: secret
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata:
  name: wild
  namespace: demo
spec:
  secretName: wild-tls
  issuerRef:
    name: pebble-dns
    kind: ClusterIssuer
  dnsNames:
{names}
"#,
        server = p.directory_url,
        bundle = p.ca_bundle(),
        key = common::bind::TSIG_KEY,
        names = names.join("\n"),
    )
}

fn dns01_once(m: &Path, state: &Path, bind: &str) -> std::process::Output {
    Command::new(common::bin())
        .args(["local", "run", "--once", "--timeout", "3m", "-f"])
        .arg(m)
        .arg("--state")
        .arg(state)
        .arg("--dns01-recursive-nameservers")
        .arg(bind)
        .output()
        .expect("runs certwright")
}

/// The TXT values BIND serves at `name`.
fn txt(bind: &str, name: &str) -> String {
    let (ip, port) = bind.rsplit_once(':').expect("HOST:PORT");
    let out = Command::new("dig")
        .args(["+short", "+tcp", "-p", port, &format!("@{ip}"), "TXT", name])
        .output()
        .expect("dig");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn dns01_rfc2136_with_tsig_issues_a_wildcard() {
    if !common::require("openssl") || !common::require("curl") || !common::require("dig") {
        return;
    }
    let Some((Setup { pebble, dir, state }, bind)) = setup_dns() else {
        return;
    };
    let names = ["dns.example.test", "*.example.test"];
    let m = common::write(
        dir.path(),
        "m.yaml",
        &rfc2136_manifests(&pebble, &bind, common::bind::TSIG_SECRET, &names),
    );
    let out = dns01_once(&m, &state, &bind);
    assert!(
        out.status.success(),
        "{}\npebble log:\n{}\nnamed log:\n{}",
        common::text(&out),
        pebble.log_text(),
        pebble
            .bind
            .as_ref()
            .map(|b| b.log_text())
            .unwrap_or_default()
    );
    assert_chain_verifies(&pebble, &state, "demo", "wild-tls");
    let sans = Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
        .arg(common::secret_dir(&state, "demo", "wild-tls").join("tls.crt"))
        .output()
        .expect("openssl");
    let sans = String::from_utf8_lossy(&sans.stdout);
    assert!(
        sans.contains("DNS:*.example.test") && sans.contains("DNS:dns.example.test"),
        "{sans}"
    );
    // The update went through BIND (signed: the zone only takes updates with the key), and
    // the records were removed once validated.
    let log = pebble
        .bind
        .as_ref()
        .map(|b| b.log_text())
        .unwrap_or_default();
    assert!(
        log.contains("_acme-challenge.dns.example.test"),
        "BIND saw no update:\n{log}"
    );
    for name in [
        "_acme-challenge.dns.example.test",
        "_acme-challenge.example.test",
    ] {
        assert_eq!(
            txt(&bind, name),
            "",
            "TXT records left behind at {name}\n{}",
            common::text(&out)
        );
    }
}

#[test]
fn dns01_with_a_wrong_tsig_secret_says_badsig() {
    if !common::require("curl") || !common::require("dig") {
        return;
    }
    let Some((Setup { pebble, dir, state }, bind)) = setup_dns() else {
        return;
    };
    let wrong = "d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldC13cm9uZy1zZWNyZXQ=";
    let m = common::write(
        dir.path(),
        "m.yaml",
        &rfc2136_manifests(&pebble, &bind, wrong, &["bad.example.test"]),
    );
    let out = dns01_once(&m, &state, &bind);
    assert!(!out.status.success(), "{}", common::text(&out));
    // The attempt's failure (the Issuing condition, as cert-manager keeps it) names the
    // server's TSIG verdict.
    let status = common::status_json(&state);
    let cert = status["certificates"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "wild"))
        .cloned()
        .expect("certificate");
    let issuing = cert["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Issuing"))
        .cloned()
        .unwrap_or_default();
    let message = issuing["message"].as_str().unwrap_or_default();
    assert_eq!(issuing["status"], "False", "{cert}");
    assert!(message.contains("BADSIG"), "{cert}");
    assert!(
        !message.contains(wrong),
        "the TSIG secret leaked: {message}"
    );
    assert!(
        !common::text(&out).contains(wrong),
        "the TSIG secret leaked into the logs"
    );
}

#[test]
fn dns01_route53_through_moto_and_bind() {
    if !common::require("curl") || !common::require("nsupdate") || !common::require("openssl") {
        return;
    }
    let Some((Setup { pebble, dir, state }, bind)) = setup_dns() else {
        return;
    };
    let Some(moto) = common::moto::Moto::start() else {
        return;
    };
    let zone_id = moto.create_zone(common::bind::ZONE);
    let copier = common::moto::Copier::start(&moto, &zone_id, &bind);
    let m = common::write(
        dir.path(),
        "m.yaml",
        &format!(
            r#"apiVersion: v1
kind: Secret
metadata:
  name: route53
  namespace: cert-manager
stringData:
  secret-access-key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
---
apiVersion: cert-manager.io/v1
kind: ClusterIssuer
metadata:
  name: letsencrypt
spec:
  acme:
    server: {server}
    caBundle: {bundle}
    privateKeySecretRef:
      name: letsencrypt-account
    solvers:
      - dns01:
          route53:
            region: eu-west-1
            accessKeyID: AKIAIOSFODNN7EXAMPLE
            secretAccessKeySecretRef:
              name: route53
              key: secret-access-key
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata:
  name: route-customer
  namespace: demo
spec:
  secretName: route-customer
  issuerRef:
    name: letsencrypt
    kind: ClusterIssuer
  dnsNames:
    - customer.example.test
"#,
            server = pebble.directory_url,
            bundle = pebble.ca_bundle(),
        ),
    );
    let out = Command::new(common::bin())
        .args(["local", "run", "--once", "--timeout", "3m", "-f"])
        .arg(&m)
        .arg("--state")
        .arg(&state)
        .arg("--dns01-recursive-nameservers")
        .arg(&bind)
        .env("AWS_ENDPOINT_URL_ROUTE_53", &moto.endpoint)
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9/not-this-one")
        .output()
        .expect("runs certwright");
    drop(copier);
    assert!(
        out.status.success(),
        "{}\npebble log:\n{}",
        common::text(&out),
        pebble.log_text()
    );
    assert_chain_verifies(&pebble, &state, "demo", "route-customer");

    // The requests' shape: SigV4 for route53 in the spec's region, the zone looked up by
    // name, a quoted TXT value UPSERTed, then DELETEd. (moto answers a change INSYNC at
    // once, so GetChange polling is not seen here.)
    let seen = moto.requests();
    assert!(!seen.is_empty(), "no request reached the Route 53 endpoint");
    for r in &seen {
        let auth = r.header("authorization").unwrap_or_default();
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/")
                && auth.contains("/eu-west-1/route53/aws4_request")
                && auth.contains("Signature="),
            "{} {}: {auth}",
            r.method,
            r.path
        );
        assert!(r.header("x-amz-date").is_some(), "{} {}", r.method, r.path);
        assert!(!auth.contains("wJalrXUtnFEMI"), "the secret key was sent");
    }
    assert!(
        seen.iter()
            .any(|r| r.method == "GET"
                && r.path.contains("/hostedzonesbyname?dnsname=example.test.")),
        "{seen:#?}"
    );
    let changes: Vec<&common::moto::Seen> = seen
        .iter()
        .filter(|r| {
            r.method == "POST" && r.path == format!("/2013-04-01/hostedzone/{zone_id}/rrset")
        })
        .collect();
    assert_eq!(changes.len(), 2, "{changes:#?}");
    assert!(
        changes[0].body.contains("<Action>UPSERT</Action>"),
        "{}",
        changes[0].body
    );
    assert!(
        changes[0]
            .body
            .contains("<Name>_acme-challenge.customer.example.test.</Name>"),
        "{}",
        changes[0].body
    );
    assert!(
        changes[0].body.contains("<Value>&quot;"),
        "TXT value not quoted: {}",
        changes[0].body
    );
    assert!(
        changes[1].body.contains("<Action>DELETE</Action>"),
        "{}",
        changes[1].body
    );
    assert!(
        moto.txt_records(&zone_id).is_empty(),
        "records left in the zone"
    );
}
