//! scripts/images.sh, run as a user runs it (with this build's binaries instead of a
//! release build): both images built with buildah from scratch, without a daemon, each
//! smoke-run inside itself (`--version`, `certwright crds`) with chroot isolation, their
//! user, entrypoint and command checked, and written as OCI archives.

mod common;

use common::*;
use std::process::Command;

#[test]
fn images_are_built_run_and_checked_without_a_daemon() {
    let bins = std::path::Path::new(bin())
        .parent()
        .expect("bin dir")
        .to_path_buf();
    demo_bin();
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = Command::new("bash")
        .arg(repo().join("scripts/images.sh"))
        .env("CERTWRIGHT_BIN_DIR", &bins)
        .env("CERTWRIGHT_IMAGE_STORE", tmp.path().join("store"))
        .env("OUT", tmp.path().join("out"))
        // Debug binaries: far larger than the release ones the default limit is for.
        .env("MAX_IMAGE_MB", "300")
        .output()
        .expect("images.sh runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{}", text(&out));
    let version = env!("CARGO_PKG_VERSION");
    for line in [
        format!("images: localhost/certwright:{version} user 65532:65532, entrypoint [\"/usr/local/bin/certwright\"], command [\"operator\"]"),
        format!("images: localhost/certwright-demo:{version} user 65532:65532, entrypoint [\"/usr/local/bin/certwright-demo\"]"),
        format!("images: certwright image runs: certwright {version}"),
        "images: certwright crds inside the image: 6 CustomResourceDefinitions".to_string(),
        format!("images: certwright-demo image runs: certwright-demo {version}"),
    ] {
        assert!(stdout.contains(&line), "{line:?} missing:\n{stdout}");
    }
    for name in ["certwright", "certwright-demo"] {
        let archive = tmp.path().join("out").join(format!("{name}-{version}.tar"));
        let size = std::fs::metadata(&archive).map(|m| m.len()).unwrap_or(0);
        assert!(size > 1_000_000, "{}: {size} bytes", archive.display());
    }
}
