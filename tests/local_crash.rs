//! Crash-loop progress: `certwright local run --once` killed with SIGKILL again and again
//! while it issues hundreds of certificates. Secrets are published in bounded batches, so
//! what one run published survives and the next run goes on from there; stale staged
//! versions are cleaned at start; a request record says "Issued" only for a certificate
//! that was committed; in the end every Certificate is Ready and every Secret is whole.

mod common;

use certwright_pki::inspect;
use common::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Enough certificates that no killed run can finish them all: progress must come from
/// batches published by earlier runs.
const N: usize = 2000;
/// The runtime's publishing batch.
const BATCH: usize = 256;

fn manifests(dir: &Path) {
    let mut s = String::from(
        "apiVersion: cert-manager.io/v1\nkind: Issuer\nmetadata: {name: self, namespace: crash}\nspec: {selfSigned: {}}\n---\napiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {name: ca, namespace: crash}\nspec: {secretName: ca, issuerRef: {name: self}, commonName: crash-ca, isCA: true, privateKey: {algorithm: ECDSA}}\n---\napiVersion: cert-manager.io/v1\nkind: Issuer\nmetadata: {name: ca, namespace: crash}\nspec: {ca: {secretName: ca}}\n",
    );
    for i in 0..N {
        s.push_str(&format!(
            "---\napiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {{name: svc-{i}, namespace: crash}}\nspec:\n  secretName: svc-{i}\n  issuerRef: {{name: ca}}\n  dnsNames: [svc-{i}.crash.svc]\n  privateKey: {{algorithm: ECDSA}}\n  keystores:\n    jks: {{create: true, password: changeme}}\n    pkcs12: {{create: true, password: changeme}}\n"
        ));
    }
    write(dir, "certs.yaml", &s);
}

/// Secrets whose `..data` link exists (published), and every version directory count.
fn published(state: &Path) -> (usize, Vec<(String, usize, bool)>) {
    let dir = state.join("secrets/crash");
    let mut visible = 0;
    let mut dirs = Vec::new();
    for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let mut versions = 0;
        let mut tmp = false;
        for v in std::fs::read_dir(e.path()).expect("secret dir").flatten() {
            let n = v.file_name().to_string_lossy().into_owned();
            if n.starts_with("..tmp") {
                tmp = true;
            } else if n.starts_with("..") && n != "..data" {
                versions += 1;
            }
        }
        if e.path().join("..data").exists() {
            visible += 1;
        }
        dirs.push((name, versions, tmp));
    }
    (visible, dirs)
}

#[test]
fn killed_again_and_again_it_still_makes_progress_and_converges() {
    let tmp = tempfile::tempdir().expect("tmp");
    let m = tmp.path().join("m");
    std::fs::create_dir(&m).expect("m");
    manifests(&m);
    let state = tmp.path().join("state");
    // Kill delays (ms): short and long, as a crashing host would.
    let delays = [
        300, 800, 1500, 2500, 3000, 100, 2000, 2800, 1200, 3000, 2200, 3000,
    ];
    let mut seen = Vec::new();
    let mut finished_early = false;
    for d in delays {
        let mut child = Command::new(bin())
            .args(["local", "run", "--once", "--log-level", "error", "-f"])
            .arg(&m)
            .arg("--state")
            .arg(&state)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start");
        // On a busy machine a run may not reach its first batch within the delay: after
        // two runs without progress, the next one is let run until it publishes (at
        // most two minutes), then killed after its delay like the others.
        let stalled = seen.len() >= 2
            && seen[seen.len() - 2..]
                .iter()
                .all(|v| Some(v) == seen.last());
        if stalled {
            let start = published(&state).0;
            let until = std::time::Instant::now() + Duration::from_secs(120);
            while published(&state).0 == start
                && std::time::Instant::now() < until
                && child.try_wait().expect("wait").is_none()
            {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        std::thread::sleep(Duration::from_millis(d));
        if child.try_wait().expect("wait").is_some() {
            finished_early = true;
        }
        let _ = child.kill();
        let _ = child.wait();
        let (visible, _) = published(&state);
        if let Some(prev) = seen.last() {
            assert!(
                visible >= *prev,
                "published Secrets never disappear: {seen:?} then {visible}"
            );
        }
        seen.push(visible);
    }
    println!("published after each kill: {seen:?} (of {})", N + 1);
    // The CA alone is one level; at least one batch of service certificates must have
    // been published by runs that were all killed.
    assert!(
        finished_early || *seen.last().expect("runs") > BATCH,
        "twelve killed runs published no batch: {seen:?}"
    );

    // The next start removes what the kills left staged; the run completes.
    let out = once(&[&m], &state);
    assert!(out.status.success(), "{}", text(&out));
    let (visible, dirs) = published(&state);
    assert_eq!(visible, N + 1);
    for (name, versions, tmp) in &dirs {
        assert!(
            *versions <= 2,
            "{name}: {versions} version directories left"
        );
        assert!(!tmp, "{name}: a temporary link was left");
    }
    // Every request record that says Issued holds the certificate its Secret holds.
    let status = status_json(&state);
    let certs = status["certificates"].as_array().expect("certificates");
    assert_eq!(certs.len(), N + 1);
    use base64::Engine;
    for c in certs {
        let secret = c["secretName"].as_str().expect("secret");
        let crt = std::fs::read(secret_dir(&state, "crash", secret).join("tls.crt")).expect("crt");
        let leaf = &inspect::parse_pem_chain(&crt).expect("chain")[0];
        for r in c["requests"].as_array().into_iter().flatten() {
            let issued = r["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            });
            if !issued {
                continue;
            }
            let pem = base64::engine::general_purpose::STANDARD
                .decode(r["status"]["certificate"].as_str().expect("certificate"))
                .expect("base64");
            let recorded = &inspect::parse_pem_chain(&pem).expect("chain")[0];
            assert_eq!(
                recorded.der, leaf.der,
                "{secret}: an Issued record for a certificate that is not in the Secret"
            );
        }
    }
}
