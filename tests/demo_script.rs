//! The README's main job, `scripts/demo.sh`, run as a user runs it (with this build's
//! binaries instead of a release build): Pebble for the route certificate, the internal
//! PKI, HAProxy and the three services; the chain through both routes; one rotation
//! round served by every hop and the edge; everything stopped at the end.

mod common;

use common::pebble::free_port;
use common::*;
use std::process::Command;

#[test]
fn demo_script_prints_the_chain_through_both_routes_and_stops_everything() {
    if !require("haproxy") || !require("curl") || !require("openssl") {
        return;
    }
    let bins = std::path::Path::new(bin())
        .parent()
        .expect("bin dir")
        .to_path_buf();
    demo_bin();
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("state");
    let out = Command::new("bash")
        .arg(repo().join("scripts/demo.sh"))
        .args(["--rotate", "2", "--exit"])
        .env("STATE", &state)
        .env("CERTWRIGHT_BIN_DIR", &bins)
        .env("EDGE_PORT", free_port().to_string())
        .output()
        .expect("demo.sh runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{}", text(&out));
    let line_after = |header: &str| {
        let i = stdout
            .find(header)
            .unwrap_or_else(|| panic!("{header:?} missing:\n{stdout}"));
        stdout[i..].lines().nth(1).unwrap_or_default().to_string()
    };
    // The first request down the chain: recommendation counts 1.
    let chain = line_after("== re-encrypt route");
    assert!(
        chain.starts_with("customer => preference => recommendation v1 from '")
            && chain.ends_with("': 1"),
        "{stdout}"
    );
    assert!(
        line_after("== passthrough route").starts_with("preference => recommendation v1 from '"),
        "{stdout}"
    );
    assert!(
        stdout.contains("demo/customer")
            && stdout.contains("reencrypt")
            && stdout.contains("passthrough"),
        "{stdout}"
    );
    // The route certificate came from the ACME server (Pebble), not the stand-in CA.
    assert!(!stdout.contains("--no-acme"), "{stdout}");
    let issuer = Command::new("openssl")
        .args(["x509", "-noout", "-issuer", "-in"])
        .arg(secret_dir(&state, "demo", "route-customer").join("tls.crt"))
        .output()
        .expect("openssl");
    let issuer = String::from_utf8_lossy(&issuer.stdout).into_owned();
    assert!(
        issuer.contains("Pebble"),
        "route-customer's issuer: {issuer}"
    );
    // One rotation round: every hop and the edge serve what their Secret holds.
    let round = stdout
        .lines()
        .find(|l| l.starts_with("round 1:"))
        .unwrap_or_else(|| panic!("no rotation round:\n{stdout}"));
    assert!(!round.contains("secret has"), "{round}");
    assert_eq!(round.matches(" serves ").count(), 4, "{round}");
    let after = line_after("round 1:");
    assert!(
        after
            .trim()
            .starts_with("customer => preference => recommendation v1"),
        "{stdout}"
    );
    // Stopped: no process of this run is left (HAProxy included).
    assert!(stdout.contains("demo: stopped"), "{stdout}");
    let left = Command::new("pgrep")
        .args(["-f", &state.display().to_string()])
        .output()
        .expect("pgrep");
    assert!(
        left.stdout.is_empty(),
        "left running: {}",
        String::from_utf8_lossy(&left.stdout)
    );
}
