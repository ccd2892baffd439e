//! The local runtime end to end, through the `certwright` binary: the reference
//! scenario (v1 and legacy), no needless rewrites, reissue on spec change, output-only
//! rewrites, recovery, the long-running loop (edits, renewal, hooks, signals).

mod common;

use certwright_pki::inspect;
use common::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SERVICES: [(&str, &str, &[&str]); 3] = [
    ("customer", "service-customer", &[]),
    (
        "preference",
        "route-service-preference",
        &["preference-demo.apps.example.com"],
    ),
    ("recommendation", "service-recommendation", &[]),
];

fn check_scenario(state: &Path) {
    let st = status_json(state);
    let root = cert_status(&st, "cert-manager", "rootca").expect("rootca status");
    assert_eq!(root.0, "True", "rootca: {root:?}");
    let ca = inspect::parse_pem_chain(
        &std::fs::read(secret_dir(state, "cert-manager", "rootca").join("tls.crt"))
            .expect("rootca"),
    )
    .expect("ca");
    assert!(ca[0].is_ca);
    assert_eq!(
        ca[0].common_name.as_deref(),
        Some("ca.self-signer.cert-manager")
    );
    for (svc, secret, extra) in SERVICES {
        let s = cert_status(&st, "demo", svc).expect("status");
        assert_eq!(s.0, "True", "{svc}: {s:?}");
        let dir = secret_dir(state, "demo", secret);
        let chain = inspect::parse_pem_chain(&std::fs::read(dir.join("tls.crt")).expect("tls.crt"))
            .expect("chain");
        let roots = inspect::parse_pem_chain(&std::fs::read(dir.join("ca.crt")).expect("ca.crt"))
            .expect("roots");
        assert_eq!(roots[0].der, ca[0].der, "{svc} trusts the root CA");
        inspect::verify_chain(&chain, &roots, chain[0].not_before + 1).expect("chain verifies");
        let mut want: Vec<String> = vec![
            svc.into(),
            format!("{svc}.demo.svc"),
            format!("{svc}.demo.svc.cluster.local"),
        ];
        want.extend(extra.iter().map(|s| s.to_string()));
        assert_eq!(chain[0].dns_names, want, "{svc} SANs");
        assert_eq!(
            chain[0].common_name.as_deref(),
            Some(format!("{svc}.demo.svc").as_str())
        );
        let key = std::fs::read_to_string(dir.join("tls.key")).expect("tls.key");
        assert!(
            key.starts_with("-----BEGIN PRIVATE KEY-----"),
            "{svc}: PKCS#8 key"
        );
        for ks in ["keystore.jks", "truststore.jks"] {
            let bytes = std::fs::read(dir.join(ks)).expect(ks);
            let entries =
                certwright_pki::jks::decode(&bytes, "changeme").expect("opens with changeme");
            assert!(!entries.is_empty());
        }
        use std::os::unix::fs::PermissionsExt;
        let data = std::fs::canonicalize(dir.join("tls.key")).expect("resolve");
        assert_eq!(
            std::fs::metadata(&data).expect("meta").permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::metadata(&dir).expect("meta").permissions().mode() & 0o777,
            0o700
        );
    }
}

#[test]
fn reference_scenario_v1_is_ready_and_a_rerun_rewrites_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let state = tmp.path().join("state");
    let out = once(&[&repo().join("examples/e2e")], &state);
    assert!(out.status.success(), "{}", text(&out));
    check_scenario(&state);
    let before: Vec<String> = SERVICES
        .iter()
        .map(|(_, s, _)| version(&state, "demo", s))
        .collect();
    let status_before = status_files(&state);
    let out = once(&[&repo().join("examples/e2e")], &state);
    assert!(out.status.success(), "{}", text(&out));
    let after: Vec<String> = SERVICES
        .iter()
        .map(|(_, s, _)| version(&state, "demo", s))
        .collect();
    assert_eq!(before, after, "a second run rewrites no secret");
    assert_eq!(status_before, status_files(&state), "no record rewritten");
    // The status table shows every certificate.
    let table = run(&["status", "--state", &state.display().to_string()]);
    let t = String::from_utf8_lossy(&table.stdout);
    assert!(t.starts_with("NAMESPACE"), "{t}");
    for (svc, secret, _) in SERVICES {
        assert!(
            t.lines()
                .any(|l| l.contains(svc) && l.contains("True") && l.contains(secret)),
            "{t}"
        );
    }
}

#[test]
fn reference_scenario_legacy_is_ready_and_converts() {
    let tmp = tempfile::tempdir().expect("tmp");
    let state = tmp.path().join("state");
    let out = once(&[&repo().join("examples/e2e/legacy")], &state);
    assert!(out.status.success(), "{}", text(&out));
    check_scenario(&state);
    let conv = run(&[
        "convert",
        "-f",
        &repo()
            .join("examples/e2e/legacy/services.yaml")
            .display()
            .to_string(),
    ]);
    assert!(conv.status.success(), "{}", text(&conv));
    let y = String::from_utf8_lossy(&conv.stdout);
    assert!(y.contains("apiVersion: cert-manager.io/v1"), "{y}");
    assert!(y.contains("encoding: PKCS8"), "{y}");
    assert!(!y.contains("certmanager.k8s.io"), "{y}");
    // The converted output is itself valid input.
    let conv_dir = tmp.path().join("converted");
    std::fs::create_dir(&conv_dir).expect("dir");
    let pki = run(&[
        "convert",
        "-f",
        &repo()
            .join("examples/e2e/legacy/internal-pki.yaml")
            .display()
            .to_string(),
    ]);
    write(&conv_dir, "pki.yaml", &String::from_utf8_lossy(&pki.stdout));
    write(&conv_dir, "services.yaml", &y);
    let out = once(&[&conv_dir], &tmp.path().join("state2"));
    assert!(out.status.success(), "{}", text(&out));

    // Directories as `local run` takes them; -R for subdirectories; a missing path named.
    let legacy = repo().join("examples/e2e/legacy").display().to_string();
    let dir = run(&["convert", "-f", &legacy]);
    assert!(dir.status.success(), "{}", text(&dir));
    let y = String::from_utf8_lossy(&dir.stdout);
    assert!(
        y.contains("kind: ClusterIssuer") && y.contains("kind: Certificate"),
        "{y}"
    );
    assert!(
        !y.contains("name: letsencrypt"),
        "a subdirectory without -R: {y}"
    );
    let rec = run(&["convert", "-R", "-f", &legacy]);
    assert!(rec.status.success(), "{}", text(&rec));
    assert!(String::from_utf8_lossy(&rec.stdout).contains("name: letsencrypt"));
    let missing = run(&["convert", "-f", "/nonexistent/manifests"]);
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/manifests"),
        "{}",
        text(&missing)
    );
}

const CERT: &str = r#"apiVersion: cert-manager.io/v1
kind: Issuer
metadata: {name: self, namespace: demo}
spec: {selfSigned: {}}
---
apiVersion: v1
kind: Secret
metadata: {name: jks-password, namespace: demo}
stringData: {password: PASSWORD}
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: web, namespace: demo}
spec:
  secretName: web-tls
  issuerRef: {name: self}
  commonName: web.demo.svc
  dnsNames: [DNSNAMES]
  duration: DURATION
  renewBefore: RENEW
  privateKey: {algorithm: ECDSA}
  keystores:
    jks: {create: true, passwordSecretRef: {name: jks-password, key: password}}
"#;

fn cert_manifest(dns: &str, password: &str, duration: &str, renew: &str) -> String {
    CERT.replace("DNSNAMES", dns)
        .replace("PASSWORD", password)
        .replace("DURATION", duration)
        .replace("RENEW", renew)
}

#[test]
fn spec_changes_reissue_output_changes_rewrite_only_and_deleted_secrets_return() {
    let tmp = tempfile::tempdir().expect("tmp");
    let m = tmp.path().join("m");
    std::fs::create_dir(&m).expect("dir");
    let state = tmp.path().join("state");
    write(&m, "web.yaml", &cert_manifest("web", "pw-one", "24h", "8h"));
    assert!(once(&[&m], &state).status.success());
    let dir = secret_dir(&state, "demo", "web-tls");
    let crt1 = std::fs::read(dir.join("tls.crt")).expect("crt");
    let jks1 = std::fs::read(dir.join("keystore.jks")).expect("jks");
    assert_eq!(
        cert_status(&status_json(&state), "demo", "web")
            .expect("s")
            .3,
        1
    );

    // Only the keystore password changes: keystores are rewritten, the certificate kept.
    write(&m, "web.yaml", &cert_manifest("web", "pw-two", "24h", "8h"));
    let out = once(&[&m], &state);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read(dir.join("tls.crt")).expect("crt"),
        crt1,
        "certificate kept"
    );
    let jks2 = std::fs::read(dir.join("keystore.jks")).expect("jks");
    assert_ne!(jks1, jks2);
    certwright_pki::jks::decode(&jks2, "pw-two").expect("new password opens it");
    assert_eq!(
        cert_status(&status_json(&state), "demo", "web")
            .expect("s")
            .3,
        1,
        "no new revision"
    );

    // A spec change reissues and bumps the revision.
    write(
        &m,
        "web.yaml",
        &cert_manifest("web, web.demo.svc", "pw-two", "24h", "8h"),
    );
    let out = once(&[&m], &state);
    assert!(out.status.success(), "{}", text(&out));
    let chain =
        inspect::parse_pem_chain(&std::fs::read(dir.join("tls.crt")).expect("crt")).expect("chain");
    assert_eq!(
        chain[0].dns_names,
        vec!["web".to_string(), "web.demo.svc".into()]
    );
    assert_eq!(
        cert_status(&status_json(&state), "demo", "web")
            .expect("s")
            .3,
        2
    );
    let cr = requests(&state, "web")
        .into_iter()
        .find(|r| r["metadata"]["name"] == "web-2")
        .expect("request web-2 recorded");
    assert_eq!(cr["kind"], "CertificateRequest");
    assert!(cr["status"]["conditions"]
        .as_array()
        .expect("conds")
        .iter()
        .any(|c| c["type"] == "Approved" && c["status"] == "True"));

    // A deleted Secret is recreated.
    std::fs::remove_dir_all(&dir).expect("rm");
    assert!(once(&[&m], &state).status.success());
    assert!(dir.join("tls.key").exists());
    assert_eq!(
        cert_status(&status_json(&state), "demo", "web")
            .expect("s")
            .3,
        3
    );

    // revisionHistoryLimit 2: after revision 4, only the records of revisions 3 and 4 stay.
    write(
        &m,
        "web.yaml",
        &cert_manifest("web, web.demo.svc, web.local", "pw-two", "24h", "8h").replace(
            "  renewBefore:",
            "  revisionHistoryLimit: 2\n  renewBefore:",
        ),
    );
    let out = once(&[&m], &state);
    assert!(out.status.success(), "{}", text(&out));
    let records: Vec<String> = requests(&state, "web")
        .iter()
        .map(|r| {
            r["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert_eq!(records, ["web-3", "web-4"]);
}

/// The request records of Certificate demo/NAME, oldest first.
fn requests(state: &Path, name: &str) -> Vec<serde_json::Value> {
    let s = status_json(state);
    s["certificates"]
        .as_array()
        .expect("certificates")
        .iter()
        .find(|c| c["namespace"] == "demo" && c["name"] == name)
        .and_then(|c| c["requests"].as_array().cloned())
        .unwrap_or_default()
}

/// The status record files and their bytes.
fn status_files(state: &Path) -> Vec<(String, Vec<u8>)> {
    let dir = state.join("status/certificates/demo");
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .expect("status records")
        .map(|e| {
            let e = e.expect("entry");
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).expect("record"),
            )
        })
        .collect();
    out.sort();
    out
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out after {limit:?} waiting for {what}");
}

#[test]
fn long_running_loop_reacts_to_edits_renews_on_time_runs_hooks_and_stops_on_sigterm() {
    let tmp = tempfile::tempdir().expect("tmp");
    let m = tmp.path().join("m");
    std::fs::create_dir(&m).expect("dir");
    let state = tmp.path().join("state");
    let marker = tmp.path().join("hook-ran");
    // renewBefore 1h on a 1h1m certificate: renewal every minute (the reference demo).
    write(&m, "web.yaml", &cert_manifest("web", "pw", "1h1m", "1h"));
    write(
        &m,
        "hook.yaml",
        &format!(
            "apiVersion: certwright.io/v1alpha1\nkind: ReloadHook\nmetadata: {{name: web, namespace: demo}}\nspec:\n  secrets: [web-tls]\n  debounce: 500ms\n  command: [sh, -c, 'echo reload >> {}']\n",
            marker.display()
        ),
    );
    let mut child = Command::new(bin())
        .args([
            "local",
            "run",
            "-f",
            &m.display().to_string(),
            "--state",
            &state.display().to_string(),
        ])
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let ready = |rev: i64| {
        let state = state.clone();
        move || {
            state.join("status/runtime.json").exists()
                && cert_status(&status_json(&state), "demo", "web")
                    .is_some_and(|s| s.0 == "True" && s.3 >= rev)
        }
    };
    wait_for("first issuance", Duration::from_secs(120), ready(1));
    let hook_runs = |p: &Path| {
        std::fs::read_to_string(p)
            .map(|s| s.lines().count())
            .unwrap_or(0)
    };
    // The hook's shell creates the file before it writes the line: wait for the line.
    wait_for(
        "the hook after the first write",
        Duration::from_secs(60),
        || hook_runs(&marker) >= 1,
    );
    assert_eq!(hook_runs(&marker), 1);

    // An edit is picked up (polled every 200 ms; the time is printed, not asserted: speed
    // belongs in benchmarks, and this machine may be busy).
    let edited = Instant::now();
    write(
        &m,
        "web.yaml",
        &cert_manifest("web, web.demo.svc", "pw", "1h1m", "1h"),
    );
    wait_for("reissue after an edit", Duration::from_secs(60), ready(2));
    let reaction = edited.elapsed();
    let issued_at = Instant::now();

    // Renewal one minute after issuance, with no edit.
    wait_for("renewal on schedule", Duration::from_secs(240), ready(3));
    let renewed_after = issued_at.elapsed();
    assert!(
        renewed_after > Duration::from_secs(50),
        "renewed too early: {renewed_after:?}"
    );
    wait_for("hooks after each write", Duration::from_secs(60), || {
        hook_runs(&marker) >= 3
    });

    // SIGTERM stops it cleanly.
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&child),
        rustix::process::Signal::TERM,
    )
    .expect("signal");
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "did not stop within 60 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit status {status:?}");
    let mut err = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("read");
    assert!(err.contains("stopping"), "{err}");
    assert!(
        !err.contains("PRIVATE KEY") && !err.contains("pw\""),
        "logs carry no secrets"
    );
    println!(
        "edit picked up in {reaction:?}; renewed {renewed_after:?} after the previous issuance"
    );
}

/// The process a signal hook reloads: this test binary itself, started again with
/// `CERTWRIGHT_TEST_SIGNAL_CHILD` set. A Rust child installs its SIGHUP handler whatever
/// disposition it inherited (a POSIX shell cannot trap a signal ignored on entry, as under
/// `nohup`), so the test does not depend on how the test run was started.
#[test]
fn signal_child_helper() {
    let Ok(dir) = std::env::var("CERTWRIGHT_TEST_SIGNAL_CHILD") else {
        return; // only does something as the helper process
    };
    let dir = std::path::PathBuf::from(dir);
    let hup = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone()).expect("handler");
    std::fs::write(dir.join("app.pid.tmp"), std::process::id().to_string()).expect("pid");
    std::fs::rename(dir.join("app.pid.tmp"), dir.join("app.pid")).expect("pid");
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(300) {
        if hup.load(std::sync::atomic::Ordering::Relaxed) {
            std::fs::write(dir.join("got-hup"), "hup").expect("got");
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn signal_hook_reaches_a_process() {
    let tmp = tempfile::tempdir().expect("tmp");
    let m = tmp.path().join("m");
    std::fs::create_dir(&m).expect("dir");
    let got = tmp.path().join("got-hup");
    let pidfile = tmp.path().join("app.pid");
    let mut app = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "signal_child_helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("CERTWRIGHT_TEST_SIGNAL_CHILD", tmp.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("app");
    wait_for("pid file", Duration::from_secs(60), || pidfile.exists());
    write(&m, "web.yaml", &cert_manifest("web", "pw", "24h", "8h"));
    write(
        &m,
        "hook.yaml",
        &format!(
            "apiVersion: certwright.io/v1alpha1\nkind: ReloadHook\nmetadata: {{name: app, namespace: demo}}\nspec:\n  secrets: [web-tls]\n  signal: {{name: HUP, pidFile: {}}}\n",
            pidfile.display()
        ),
    );
    let out = once(&[&m], &tmp.path().join("state"));
    assert!(out.status.success(), "{}", text(&out));
    wait_for("SIGHUP delivered", Duration::from_secs(60), || got.exists());
    let _ = app.kill();
    let _ = app.wait();
}
