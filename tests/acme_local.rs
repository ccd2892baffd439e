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

/// A `--once` run serving HTTP-01 on `port`, waiting at most `timeout` for orders, with
/// the DNS server Pebble uses as the only resolver (for the CAA pre-check).
fn http01_run(
    p: &Pebble,
    m: &Path,
    state: &Path,
    port: u16,
    timeout: &str,
) -> std::process::Output {
    Command::new(common::bin())
        .args(["local", "run", "--once", "--timeout", timeout, "-f"])
        .arg(m)
        .arg("--state")
        .arg(state)
        .arg("--acme-http01-address")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--dns01-recursive-nameservers")
        .arg(&p.dns_address)
        .output()
        .expect("runs certwright")
}

fn local_once(p: &Pebble, m: &Path, state: &Path, port: u16) -> std::process::Output {
    http01_run(p, m, state, port, "2m")
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

/// A Pebble validating HTTP-01 on a free port, that port, and a fresh state directory;
/// None (skipped) without Pebble, openssl or curl.
fn setup_http() -> Option<(Setup, u16)> {
    setup_http_with(|_| {})
}

/// [`setup_http`] with Pebble's options tuned first.
fn setup_http_with(tune: impl FnOnce(&mut PebbleOptions)) -> Option<(Setup, u16)> {
    if !common::require("openssl") || !common::require("curl") {
        return None;
    }
    let port = free_port();
    let mut o = PebbleOptions::http(port);
    tune(&mut o);
    Some((setup(&o)?, port))
}

/// A Pebble behind BIND authoritative for `zone` (for DNS-01), BIND's address, and a
/// fresh state directory.
fn setup_dns(zone: &str) -> Option<(Setup, String)> {
    let mut o = PebbleOptions::http(free_port());
    o.bind = Some(zone.to_string());
    let s = setup(&o)?;
    let bind = s.pebble.bind.as_ref().expect("bind").address();
    Some((s, bind))
}

/// A `--once` run that must succeed (Pebble's log shown when it does not).
fn issue(pebble: &Pebble, m: &Path, state: &Path, port: u16) {
    let out = local_once(pebble, m, state, port);
    assert!(
        out.status.success(),
        "{}\npebble log:\n{}",
        common::text(&out),
        pebble.log_text()
    );
}

/// Checks that the Secret's chain leads to the root Pebble issues under.
fn assert_chain_verifies(pebble: &Pebble, state: &Path, ns: &str, secret: &str) {
    pebble.assert_issued(&common::secret_dir(state, ns, secret).join("tls.crt"));
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
    let Some((Setup { pebble, dir, state }, port)) = setup_http() else {
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
    // Validation sleeps (up to 10 s per validation) keep the order pending long enough for
    // the first run to stop in the middle of it.
    let Some((Setup { pebble, dir, state }, port)) = setup_http_with(|o| {
        o.validation_sleeps = true;
        o.env.push(("PEBBLE_VA_SLEEPTIME".into(), "10".into()));
    }) else {
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
    // Long enough for a second pass to record the order the first one asked for, on a
    // busy machine too.
    let first = http01_run(&pebble, &m, &state, port, "3s");
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
    dns01_once_env(m, state, bind, &[])
}

/// A `--once` run for DNS-01 with BIND as the recursive nameserver and `env` set.
fn dns01_once_env(
    m: &Path,
    state: &Path,
    bind: &str,
    env: &[(&str, &str)],
) -> std::process::Output {
    Command::new(common::bin())
        .args(["local", "run", "--once", "--timeout", "3m", "-f"])
        .arg(m)
        .arg("--state")
        .arg(state)
        .arg("--dns01-recursive-nameservers")
        .arg(bind)
        .envs(env.iter().copied())
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
    let Some((Setup { pebble, dir, state }, bind)) = setup_dns(common::bind::ZONE) else {
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
    let Some((Setup { pebble, dir, state }, bind)) = setup_dns(common::bind::ZONE) else {
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
    let Some((Setup { pebble, dir, state }, bind)) = setup_dns(common::bind::ZONE) else {
        return;
    };
    let Some(moto) = common::moto::Moto::start() else {
        return;
    };
    let zone_id = moto.create_zone(common::bind::ZONE);
    let copier = common::moto::Copier::start(&moto, &zone_id, pebble.bind.as_ref().expect("bind"));
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
    // The Route 53 variable wins over the general one, as in AWS's SDKs.
    let env = [
        ("AWS_ENDPOINT_URL_ROUTE_53", moto.endpoint.as_str()),
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:9/not-this-one"),
    ];
    let out = dns01_once_env(&m, &state, &bind, &env);
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

/// The reference scenario's external PKI (examples/e2e/external, and its v1alpha1 form in
/// examples/e2e/legacy/external): the `letsencrypt` ClusterIssuer (Route 53 DNS-01) and
/// the customer route's Certificate, run as written except for the server (Pebble), its
/// caBundle, the hosted zone and the endpoint (moto, its records copied into BIND,
/// authoritative for example.com).
#[test]
fn scenario_route_certificate_from_letsencrypt_issuer() {
    if !common::require("curl") || !common::require("nsupdate") || !common::require("openssl") {
        return;
    }
    let Some((Setup { pebble, dir, .. }, bind)) = setup_dns("example.com") else {
        return;
    };
    let Some(moto) = common::moto::Moto::start() else {
        return;
    };
    let zone_id = moto.create_zone("example.com");
    let _copier = common::moto::Copier::start(&moto, &zone_id, pebble.bind.as_ref().expect("bind"));
    let creds = common::write(
        dir.path(),
        "credentials.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: route53-credentials\n  namespace: cert-manager\nstringData:\n  aws_secret_access_key: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n",
    );
    for (form, example) in [
        ("v1", "examples/e2e/external/letsencrypt.yaml"),
        ("v1alpha1", "examples/e2e/legacy/external/letsencrypt.yaml"),
    ] {
        let text = std::fs::read_to_string(common::repo().join(example)).expect("example");
        let le = "server: https://acme-v02.api.letsencrypt.org/directory";
        assert!(
            text.contains(le) && text.contains("hostedZoneID: Z0EXAMPLE"),
            "{text}"
        );
        // v1alpha1 had no caBundle: the legacy form trusts Pebble with skipTLSVerify.
        let trust = match form {
            "v1" => format!("caBundle: {}", pebble.ca_bundle()),
            _ => "skipTLSVerify: true".to_string(),
        };
        let overridden = text
            .replace(
                le,
                &format!("server: {}\n    {trust}", pebble.directory_url),
            )
            .replace(
                "hostedZoneID: Z0EXAMPLE",
                &format!("hostedZoneID: {zone_id}"),
            );
        let m = common::write(dir.path(), &format!("letsencrypt-{form}.yaml"), &overridden);
        let state = dir.path().join(format!("state-{form}"));
        let out = Command::new(common::bin())
            .args(["local", "run", "--once", "--timeout", "3m", "-f"])
            .arg(&m)
            .arg("-f")
            .arg(&creds)
            .arg("--state")
            .arg(&state)
            .arg("--dns01-recursive-nameservers")
            .arg(&bind)
            .env("AWS_ENDPOINT_URL_ROUTE_53", &moto.endpoint)
            .output()
            .expect("runs certwright");
        assert!(
            out.status.success(),
            "{form}: {}\npebble log:\n{}",
            common::text(&out),
            pebble.log_text()
        );
        assert_chain_verifies(&pebble, &state, "demo", "route-customer");
        let key = std::fs::read_to_string(
            common::secret_dir(&state, "demo", "route-customer").join("tls.key"),
        )
        .expect("key");
        assert!(
            key.starts_with("-----BEGIN PRIVATE KEY-----"),
            "{form}: PKCS#8 asked for"
        );
    }
    assert!(
        moto.requests()
            .iter()
            .any(|r| r.path == format!("/2013-04-01/hostedzone/{zone_id}/rrset")),
        "the spec's hostedZoneID was not used"
    );
}

/// ACME Renewal Information: the renewal time is the one chosen in Pebble's suggested
/// window, and when the window moves into the past the certificate is renewed with a
/// new order that names the old certificate in `replaces`.
#[test]
fn renewal_information_decides_when_to_renew() {
    let Some((Setup { pebble, dir, state }, port)) = setup_http() else {
        return;
    };
    let m = common::write(
        dir.path(),
        "m.yaml",
        &manifests(&pebble, &["ari.example.test"]),
    );
    issue(&pebble, &m, &state, port);
    let status = common::status_json(&state);
    let cert = &status["certificates"][0]["status"];
    let at = |k: &str| {
        cert[k]
            .as_str()
            .and_then(|s| {
                time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
            })
            .map(|t| t.unix_timestamp())
            .unwrap_or_else(|| panic!("no {k} in {cert}"))
    };
    let (nb, na, renew) = (at("notBefore"), at("notAfter"), at("renewalTime"));
    // Pebble's window: two days around two thirds of the lifetime (capped at notAfter).
    let ideal = na - (na + 1 - nb) / 3;
    assert!(
        renew >= (ideal - 86_400).max(nb) && renew <= (ideal + 86_400).min(na),
        "renewalTime {renew} is outside Pebble's window around {ideal}: {cert}"
    );

    let secret = common::secret_dir(&state, "demo", "web-tls");
    let pem = std::fs::read_to_string(secret.join("tls.crt")).expect("tls.crt");
    let leaf_end = pem.find("-----END CERTIFICATE-----").expect("pem") + 25;
    let past =
        r#"{"suggestedWindow":{"start":"2020-01-01T00:00:00Z","end":"2020-01-02T00:00:00Z"}}"#;
    pebble.management_post(
        "/set-renewal-info/",
        &serde_json::json!({"Certificate": &pem[..leaf_end], "ARIResponse": past}),
    );
    let serial = |p: &Path| {
        let o = Command::new("openssl")
            .args(["x509", "-noout", "-serial", "-in"])
            .arg(p.join("tls.crt"))
            .output()
            .expect("openssl");
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    let before = serial(&secret);
    let out = local_once(&pebble, &m, &state, port);
    assert!(out.status.success(), "{}", common::text(&out));
    assert_ne!(
        serial(&secret),
        before,
        "not renewed inside the window: {}",
        common::text(&out)
    );
    let log = common::text(&out);
    assert!(log.contains("Renewing"), "{log}");
    let replaces = log
        .lines()
        .find(|l| l.contains("ACME order created"))
        .and_then(|l| l.split("replaces=").nth(1))
        .unwrap_or_default()
        .trim()
        .to_string();
    assert!(
        replaces.contains('.') && replaces.len() > 10,
        "the new order named no replaced certificate: {log}"
    );
    assert_chain_verifies(&pebble, &state, "demo", "web-tls");
}

/// Chaos: Pebble rejects half of the nonces, reuses half of the authorizations (the
/// certificates share names, so there is something to reuse), and sleeps before each
/// validation. 100 orders must all succeed; the ACME requests each took are reported.
#[test]
fn chaos_hundred_orders_all_succeed() {
    let Some((Setup { pebble, dir, state }, port)) = setup_http_with(|o| {
        o.validation_sleeps = true;
        o.env.push(("PEBBLE_WFE_NONCEREJECT".into(), "50".into()));
        o.env.push(("PEBBLE_AUTHZREUSE".into(), "50".into()));
    }) else {
        return;
    };
    let mut m = manifests(&pebble, &["c0.example.test", "shared0.example.test"]);
    for i in 1..100 {
        m.push_str(&format!(
            "---\napiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata:\n  name: web{i}\n  namespace: demo\nspec:\n  secretName: web{i}-tls\n  issuerRef:\n    name: pebble\n    kind: ClusterIssuer\n  dnsNames:\n    - c{i}.example.test\n    - shared{}.example.test\n",
            i % 10
        ));
    }
    let m = common::write(dir.path(), "m.yaml", &m);
    let start = std::time::Instant::now();
    let out = http01_run(&pebble, &m, &state, port, "10m");
    let took = start.elapsed();
    let log = common::text(&out);
    assert!(out.status.success(), "{log}");
    let requests: Vec<u32> = log
        .lines()
        .filter(|l| l.contains("ACME order valid"))
        .filter_map(|l| {
            l.split("requests=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect();
    assert_eq!(requests.len(), 100, "{log}");
    let total: u32 = requests.iter().sum();
    let max = requests.iter().max().copied().unwrap_or(0);
    println!(
        "chaos: 100 orders in {:.1} s, ACME requests per order (nonce fetches and requests sent again included): mean {:.1}, max {max}",
        took.as_secs_f64(),
        f64::from(total) / 100.0
    );
    for i in [0, 1, 50, 99] {
        let name = if i == 0 {
            "web-tls".to_string()
        } else {
            format!("web{i}-tls")
        };
        assert_chain_verifies(&pebble, &state, "demo", &name);
    }
}

/// A ClusterIssuer for the bad-input catalogue.
fn acme_issuer(
    name: &str,
    server: &str,
    bundle: Option<&str>,
    account: &str,
    extra: &str,
    solvers: &str,
) -> String {
    let bundle = bundle
        .map(|b| format!("\n    caBundle: {b}"))
        .unwrap_or_default();
    format!(
        "---\napiVersion: cert-manager.io/v1\nkind: ClusterIssuer\nmetadata:\n  name: {name}\nspec:\n  acme:\n    server: {server}{bundle}\n    privateKeySecretRef:\n      name: {account}{extra}\n    solvers:\n{solvers}\n"
    )
}

fn acme_cert(name: &str, issuer: &str, dns: &str) -> String {
    format!(
        "---\napiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata:\n  name: {name}\n  namespace: demo\nspec:\n  secretName: {name}\n  issuerRef:\n    name: {issuer}\n    kind: ClusterIssuer\n  dnsNames: [\"{dns}\"]\n"
    )
}

/// Every condition message of a Certificate, joined, with its Ready status.
fn cert_conditions(status: &serde_json::Value, name: &str) -> (String, String) {
    let c = status["certificates"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == name))
        .cloned()
        .unwrap_or_else(|| panic!("no certificate {name}"));
    let conds = c["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let ready = conds
        .iter()
        .find(|c| c["type"] == "Ready")
        .map(|c| c["status"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default();
    let text = conds
        .iter()
        .map(|c| {
            format!(
                "{}: {}",
                c["reason"].as_str().unwrap_or_default(),
                c["message"].as_str().unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join(" | ");
    (ready, text)
}

/// The ACME bad-input catalogue: each Certificate fails with its own specific reason, in
/// one run, and the good one beside them becomes Ready (nothing else stalls).
#[test]
fn acme_bad_input_is_specific_and_stalls_nothing() {
    if !common::require("curl") || !common::require("dig") {
        return;
    }
    let mut o = PebbleOptions::http(free_port());
    o.bind = Some(common::bind::ZONE.into());
    o.blocklist = vec!["blocked.example.test".into()];
    let Some(Setup { pebble, dir, state }) = setup(&o) else {
        return;
    };
    let bind = pebble.bind.as_ref().expect("bind").address();
    let b = pebble.ca_bundle();
    let url = pebble.directory_url.clone();
    let rfc2136 = |sel: &str| {
        format!("      - {sel}dns01:\n          rfc2136:\n            nameserver: \"{bind}\"\n            tsigKeyName: {}\n            tsigAlgorithm: HMACSHA256\n            tsigSecretSecretRef: {{name: tsig, key: secret}}", common::bind::TSIG_KEY)
    };
    let mut m = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: tsig, namespace: cert-manager}}\nstringData: {{secret: \"{}\"}}\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: garbage-account, namespace: cert-manager}}\nstringData: {{tls.key: \"not a key\"}}\n",
        common::bind::TSIG_SECRET
    );
    m += &acme_issuer("good", &url, Some(&b), "good-account", "", &rfc2136(""));
    m += &acme_issuer(
        "unreachable",
        "https://127.0.0.1:9/dir",
        None,
        "a1",
        "",
        &rfc2136(""),
    );
    m += &acme_issuer("untrusted", &url, None, "a2", "", &rfc2136(""));
    m += &acme_issuer(
        "garbage-key",
        &url,
        Some(&b),
        "garbage-account",
        "",
        &rfc2136(""),
    );
    m += &acme_issuer(
        "nomatch",
        &url,
        Some(&b),
        "a3",
        "",
        &rfc2136("selector: {dnsZones: [other.test]}\n        "),
    );
    m += &acme_cert("ok", "good", "ok.example.test");
    m += &acme_cert("c-unreachable", "unreachable", "u.example.test");
    m += &acme_cert("c-untrusted", "untrusted", "t.example.test");
    m += &acme_cert("c-garbage-key", "garbage-key", "g.example.test");
    m += &acme_cert("c-nomatch", "nomatch", "nm.example.test");
    m += &acme_cert("c-caa", "good", "caa.example.test");
    m += &acme_cert("c-blocked", "good", "blocked.example.test");
    m += &acme_cert("c-nozone", "good", "x.nozone.test");
    m += &acme_cert("c-lame", "good", &format!("x.{}", common::bind::LAME));
    let m = common::write(dir.path(), "bad.yaml", &m);
    let out = Command::new(common::bin())
        .args([
            "local",
            "run",
            "--once",
            "--timeout",
            "2m",
            "--dns01-propagation-timeout",
            "5s",
            "-f",
        ])
        .arg(&m)
        .arg("--state")
        .arg(&state)
        .arg("--dns01-recursive-nameservers")
        .arg(&bind)
        .output()
        .expect("runs certwright");
    let log = common::text(&out);
    assert!(!out.status.success(), "{log}");
    assert!(
        !log.contains(common::bind::TSIG_SECRET),
        "the TSIG secret leaked into the logs"
    );
    let status = common::status_json(&state);
    assert_eq!(cert_conditions(&status, "ok").0, "True", "{log}");
    for (cert, expected) in [
        ("c-unreachable", "Failed to read the ACME directory"),
        ("c-untrusted", "UnknownIssuer"),
        ("c-garbage-key", "ErrInvalidAccountKey"),
        (
            "c-nomatch",
            "no configured challenge solver can be used for \"nm.example.test\"",
        ),
        ("c-caa", "caa"),
        ("c-blocked", "rejectedIdentifier"),
        (
            "c-nozone",
            "no zone found for _acme-challenge.x.nozone.test",
        ),
        ("c-lame", "was not seen within 5s"),
    ] {
        let (ready, text) = cert_conditions(&status, cert);
        assert_eq!(ready, "False", "{cert}: {text}");
        assert!(
            text.contains(expected),
            "{cert}: expected {expected:?} in: {text}\n{log}"
        );
    }
}

/// A CA that requires external account binding: none given, and a wrong HMAC key.
#[test]
fn acme_external_account_binding_problems_are_named() {
    if !common::require("curl") {
        return;
    }
    let mut o = PebbleOptions::http(free_port());
    o.eab = Some((
        "kid-1".into(),
        "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W".into(),
    ));
    let Some(Setup { pebble, dir, state }) = setup(&o) else {
        return;
    };
    let b = pebble.ca_bundle();
    let url = pebble.directory_url.clone();
    let http = "      - http01:\n          ingress: {}";
    let wrong = "\n    externalAccountBinding:\n      keyID: kid-1\n      keySecretRef: {name: eab, key: secret}";
    let mut m = "apiVersion: v1\nkind: Secret\nmetadata: {name: eab, namespace: cert-manager}\nstringData: {secret: \"d3JvbmctaG1hYy1rZXktd3JvbmctaG1hYy1rZXk\"}\n".to_string();
    m += &acme_issuer("no-eab", &url, Some(&b), "a1", "", http);
    m += &acme_issuer("wrong-eab", &url, Some(&b), "a2", wrong, http);
    m += &acme_cert("c-no-eab", "no-eab", "n.example.test");
    m += &acme_cert("c-wrong-eab", "wrong-eab", "w.example.test");
    let m = common::write(dir.path(), "eab.yaml", &m);
    let out = common::once(&[&m], &state);
    assert!(!out.status.success(), "{}", common::text(&out));
    let status = common::status_json(&state);
    let (_, no) = cert_conditions(&status, "c-no-eab");
    assert!(no.contains("requires an external account binding"), "{no}");
    let (_, w) = cert_conditions(&status, "c-wrong-eab");
    assert!(w.contains("ErrRegisterACMEAccount"), "{w}");
    assert!(
        !common::text(&out).contains("d3JvbmctaG1hYy1rZXktd3JvbmctaG1hYy1rZXk"),
        "the HMAC key leaked"
    );
}

/// The issuer's `profile` is sent (Pebble's `shortlived` profile: 6-day certificates),
/// `preferredChain` picks the alternate chain whose root has that name (Pebble with an
/// alternate root), and `disableAccountKeyGeneration` without the Secret says so.
#[test]
fn profile_preferred_chain_and_no_key_generation() {
    let Some((Setup { pebble, dir, state }, port)) =
        setup_http_with(|o| o.env.push(("PEBBLE_ALTERNATE_ROOTS".into(), "1".into())))
    else {
        return;
    };
    let alternate = pebble.management("/roots/1");
    let root1 = dir.path().join("root1.pem");
    std::fs::write(&root1, &alternate).expect("root 1");
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-subject", "-nameopt", "RFC2253", "-in"])
        .arg(&root1)
        .output()
        .expect("openssl");
    let subject = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let cn = subject
        .strip_prefix("subject=CN=")
        .unwrap_or_else(|| panic!("{subject}"))
        .to_string();
    let url = pebble.directory_url.clone();
    let b = pebble.ca_bundle();
    let http01 = "      - http01:\n          ingress: {}\n";
    let mut m = acme_issuer(
        "short",
        &url,
        Some(&b),
        "acct",
        "\n    profile: shortlived",
        http01,
    );
    m += &acme_issuer(
        "alt",
        &url,
        Some(&b),
        "acct",
        &format!("\n    preferredChain: \"{cn}\""),
        http01,
    );
    m += &acme_issuer(
        "nokey",
        &url,
        Some(&b),
        "missing",
        "\n    disableAccountKeyGeneration: true",
        http01,
    );
    m += &acme_cert("short", "short", "short.example.test");
    m += &acme_cert("alt", "alt", "alt.example.test");
    m += &acme_cert("nokey", "nokey", "nokey.example.test");
    let m = common::write(dir.path(), "m.yaml", &m);
    let out = local_once(&pebble, &m, &state, port);
    let log = common::text(&out);
    let status = common::status_json(&state);
    for ok in ["short", "alt"] {
        assert_eq!(cert_conditions(&status, ok).0, "True", "{ok}: {log}");
    }
    let (ready, text) = cert_conditions(&status, "nokey");
    assert_eq!(ready, "False", "{text}");
    assert!(
        text.contains("disableAccountKeyGeneration is set"),
        "{text}"
    );
    assert!(
        !common::secret_dir(&state, "cert-manager", "missing").exists(),
        "no key generated"
    );

    let c = status["certificates"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == "short").cloned())
        .unwrap_or_default();
    let t = |f: &str| {
        time::OffsetDateTime::parse(
            c["status"][f].as_str().unwrap_or_default(),
            &time::format_description::well_known::Rfc3339,
        )
        .expect(f)
    };
    let days = (t("notAfter") - t("notBefore")).whole_days();
    assert!(
        (5..=6).contains(&days),
        "the shortlived profile: {days} days"
    );

    // The alternate chain leads to root 1, not to the default root 0.
    let chain = common::secret_dir(&state, "demo", "alt").join("tls.crt");
    let verify = |root: &Path| {
        Command::new("openssl")
            .args(["verify", "-CAfile"])
            .arg(root)
            .arg("-untrusted")
            .arg(&chain)
            .arg(&chain)
            .output()
            .expect("openssl")
            .status
            .success()
    };
    assert!(verify(&root1), "the preferred chain ends at {cn}");
    let root0 = dir.path().join("root0.pem");
    std::fs::write(&root0, pebble.issuing_root()).expect("root 0");
    assert!(!verify(&root0), "not the default chain");
}
