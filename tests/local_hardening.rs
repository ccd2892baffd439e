//! The state directory and the host are trust boundaries: manifests cannot make the local
//! runtime write, read or delete outside `--state`, links planted in the state directory
//! are never followed, a hook signals one live process only, and what a certificate was
//! issued for survives with its Secret (a lost status record hides no spec change).

mod common;

use certwright_pki::inspect;
use common::*;
use std::os::unix::fs::symlink;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

const ISSUER: &str = "apiVersion: cert-manager.io/v1\nkind: Issuer\nmetadata: {name: self, namespace: demo}\nspec: {selfSigned: {}}\n";

fn cert(extra: &str) -> String {
    format!(
        "{ISSUER}---\napiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {{name: web, namespace: demo}}\nspec:\n  secretName: web-tls\n  issuerRef: {{name: self}}\n  commonName: web.demo.svc\n  dnsNames: [web.demo.svc]\n  privateKey: {{algorithm: ECDSA}}\n{extra}"
    )
}

/// Every path beneath `dir` (links not followed), for "nothing changed here" checks.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir").flatten() {
            let p = e.path();
            out.push(p.strip_prefix(dir).expect("under").display().to_string());
            if e.file_type().expect("type").is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

fn problems(state: &Path) -> String {
    status_json(state)["problems"].to_string()
}

#[test]
fn namespaces_and_names_cannot_escape_the_state_directory() {
    let tmp = tempfile::tempdir().expect("tmp");
    let victim_root = tmp.path().join("victim-root");
    let victim = victim_root.join("victim");
    std::fs::create_dir_all(victim.join("..keep")).expect("victim");
    std::fs::write(victim.join("config.txt"), "precious").expect("file");
    std::fs::write(victim.join("..keep/inner"), "precious too").expect("file");
    let before = tree(&victim_root);
    let m = tmp.path().join("m");
    std::fs::create_dir(&m).expect("m");
    let state = tmp.path().join("state");
    // An absolute namespace, a relative escape, and names with slashes and dots.
    write(
        &m,
        "evil.yaml",
        &format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: victim, namespace: {root}}}\nstringData: {{config.txt: overwritten}}\n---\n\
             apiVersion: v1\nkind: Secret\nmetadata: {{name: x, namespace: ../..}}\nstringData: {{a: b}}\n---\n\
             apiVersion: v1\nkind: Secret\nmetadata: {{name: ../../../escape, namespace: demo}}\nstringData: {{a: b}}\n---\n\
             apiVersion: cert-manager.io/v1\nkind: Issuer\nmetadata: {{name: self, namespace: ../..}}\nspec: {{selfSigned: {{}}}}\n---\n\
             apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {{name: escape, namespace: ../..}}\nspec:\n  secretName: leak\n  issuerRef: {{name: self}}\n  commonName: x\n---\n\
             apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {{name: ../escape2, namespace: demo}}\nspec:\n  secretName: leak2\n  issuerRef: {{name: self}}\n  commonName: x\n---\n\
             apiVersion: certwright.io/v1alpha1\nkind: ReloadHook\nmetadata: {{name: h, namespace: /tmp}}\nspec: {{secrets: [x], signal: {{name: HUP, pidFile: /nonexistent}}}}\n",
            root = victim_root.display()
        ),
    );
    write(&m, "web.yaml", &cert(""));
    let out = once(&[&m], &state);
    // The bad documents are problems; the good Certificate is still issued.
    assert!(!out.status.success(), "{}", text(&out));
    assert_eq!(
        cert_status(&status_json(&state), "demo", "web")
            .expect("web")
            .0,
        "True"
    );
    assert_eq!(
        before,
        tree(&victim_root),
        "nothing outside --state changed"
    );
    assert_eq!(
        std::fs::read_to_string(victim.join("config.txt")).expect("file"),
        "precious"
    );
    assert!(!tmp.path().join("leak").exists() && !tmp.path().join("escape").exists());
    let p = problems(&state);
    assert!(p.matches("InvalidNamespace").count() >= 5, "{p}");
    assert!(p.matches("InvalidName").count() >= 2, "{p}");
    assert!(p.contains("must be a lowercase RFC 1123 label"), "{p}");
    // Only the demo namespace exists under secrets/, and only the valid Secret in it.
    let secrets: Vec<String> = tree(&state.join("secrets"))
        .into_iter()
        .filter(|p| !p.contains('/'))
        .collect();
    assert_eq!(secrets, ["demo"]);
}

#[test]
fn links_planted_in_the_state_directory_are_never_followed() {
    let tmp = tempfile::tempdir().expect("tmp");
    let m = tmp.path().join("m");
    std::fs::create_dir(&m).expect("m");
    write(&m, "web.yaml", &cert(""));
    let state = tmp.path().join("state");
    assert!(once(&[&m], &state).status.success());
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(outside.join("web-tls/..keep")).expect("outside");
    std::fs::write(outside.join("web-tls/..keep/f"), "keep me").expect("file");
    let before = tree(&outside);

    // 1. The namespace directory replaced by a link to a directory outside.
    let ns = state.join("secrets/demo");
    std::fs::rename(&ns, tmp.path().join("demo-moved")).expect("move");
    symlink(&outside, &ns).expect("plant");
    let out = once(&[&m], &state);
    assert!(!out.status.success(), "{}", text(&out));
    let (ready, reason, message, _) =
        cert_status(&status_json(&state), "demo", "web").expect("web");
    assert_eq!(ready, "False");
    assert!(reason.starts_with("Secret"), "{reason}: {message}");
    assert!(message.contains("refusing to follow"), "{message}");
    assert_eq!(
        before,
        tree(&outside),
        "no key written, nothing deleted outside"
    );

    // 2. The Secret's directory replaced by a link.
    std::fs::remove_file(&ns).expect("unplant");
    std::fs::create_dir(&ns).expect("ns");
    symlink(outside.join("web-tls"), ns.join("web-tls")).expect("plant secret link");
    let out = once(&[&m], &state);
    assert!(!out.status.success(), "{}", text(&out));
    assert_eq!(before, tree(&outside));

    // 3. `..data` pointing outside, and a key file that is a link to a host file.
    std::fs::remove_file(ns.join("web-tls")).expect("unplant");
    assert!(once(&[&m], &state).status.success(), "repaired");
    let dir = ns.join("web-tls");
    std::fs::remove_file(dir.join("..data")).expect("rm");
    symlink(outside.join("web-tls"), dir.join("..data")).expect("plant ..data");
    let out = once(&[&m], &state);
    assert!(!out.status.success(), "{}", text(&out));
    let (_, _, message, _) = cert_status(&status_json(&state), "demo", "web").expect("web");
    assert!(message.contains("refusing to follow"), "{message}");
    assert_eq!(before, tree(&outside));

    // A CA secret made by hand whose key is a link to a host file is refused, not read.
    let host_file = tmp.path().join("host-file");
    std::fs::write(&host_file, "not for certwright").expect("host file");
    let hand = state.join("secrets/demo/hand");
    std::fs::create_dir_all(&hand).expect("hand");
    symlink(&host_file, hand.join("tls.key")).expect("plant key link");
    write(
        &m,
        "ca.yaml",
        "apiVersion: cert-manager.io/v1\nkind: Issuer\nmetadata: {name: hand, namespace: demo}\nspec: {ca: {secretName: hand}}\n---\napiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {name: leaf, namespace: demo}\nspec: {secretName: leaf, issuerRef: {name: hand}, commonName: leaf}\n",
    );
    let _ = once(&[&m], &state);
    let (ready, _, message, _) = cert_status(&status_json(&state), "demo", "leaf").expect("leaf");
    assert_eq!(ready, "False");
    assert!(message.contains("refusing to follow"), "{message}");
}

#[test]
fn a_hook_never_signals_a_process_group_or_every_process() {
    let tmp = tempfile::tempdir().expect("tmp");
    let m = tmp.path().join("m");
    std::fs::create_dir(&m).expect("m");
    // A process that leads its own process group: `kill(-pid)` would reach it.
    let mut group = Command::new("sleep")
        .arg("120")
        .process_group(0)
        .spawn()
        .expect("sleep");
    let pidfile = tmp.path().join("app.pid");
    std::fs::write(&pidfile, format!("-{}\n", group.id())).expect("pid file");
    write(&m, "web.yaml", &cert(""));
    write(
        &m,
        "hook.yaml",
        &format!(
            "apiVersion: certwright.io/v1alpha1\nkind: ReloadHook\nmetadata: {{name: app, namespace: demo}}\nspec:\n  secrets: [web-tls]\n  debounce: 0s\n  signal: {{name: TERM, pidFile: {}}}\n",
            pidfile.display()
        ),
    );
    let state = tmp.path().join("state");
    let out = once(&[&m], &state);
    assert!(out.status.success(), "{}", text(&out));
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        group.try_wait().expect("wait").is_none(),
        "the process group leader was not signalled"
    );
    let hooks = status_json(&state)["hooks"].clone();
    let run = &hooks[0]["lastRun"];
    assert_eq!(run["ok"], false, "{hooks}");
    assert_eq!(run["reason"], "InvalidPidFile", "{hooks}");
    assert!(
        run["message"].as_str().unwrap_or_default().contains("\"-"),
        "{hooks}"
    );
    let _ = group.kill();
    let _ = group.wait();

    // With --no-command-hooks, a command hook is refused and reported.
    let marker = tmp.path().join("ran");
    write(
        &m,
        "hook.yaml",
        &format!(
            "apiVersion: certwright.io/v1alpha1\nkind: ReloadHook\nmetadata: {{name: app, namespace: demo}}\nspec:\n  secrets: [web-tls]\n  debounce: 0s\n  command: [touch, {}]\n",
            marker.display()
        ),
    );
    write(&m, "web.yaml", &cert("  duration: 48h\n"));
    let out = Command::new(bin())
        .args(["local", "run", "--once", "--no-command-hooks", "-f"])
        .arg(&m)
        .arg("--state")
        .arg(&state)
        .output()
        .expect("run");
    assert!(!marker.exists(), "the command did not run");
    let s = status_json(&state);
    assert!(
        s["problems"].to_string().contains("--no-command-hooks"),
        "{}",
        text(&out)
    );
    assert_eq!(s["hooks"][0]["lastRun"]["ok"], false);
}

fn leaf(state: &Path) -> inspect::CertInfo {
    let crt = std::fs::read(secret_dir(state, "demo", "web-tls").join("tls.crt")).expect("crt");
    inspect::parse_pem_chain(&crt).expect("chain").remove(0)
}

#[test]
fn a_lost_status_record_hides_no_spec_change_and_keeps_the_revision() {
    let tmp = tempfile::tempdir().expect("tmp");
    let m = tmp.path().join("m");
    std::fs::create_dir(&m).expect("m");
    let state = tmp.path().join("state");
    write(
        &m,
        "web.yaml",
        &cert("  subject: {organizations: [Old]}\n  duration: 24h\n"),
    );
    assert!(once(&[&m], &state).status.success());
    assert!(
        leaf(&state).subject.contains("O=Old"),
        "{}",
        leaf(&state).subject
    );
    // The status records of the namespace (sharded files).
    let record = state.join("status/certificates/demo");

    // The record is lost (a crash before it was written, or deleted), and the subject,
    // the usages and the duration change: the Secret's own issuance record shows it.
    std::fs::remove_dir_all(&record).expect("rm records");
    write(
        &m,
        "web.yaml",
        &cert("  subject: {organizations: [New]}\n  duration: 48h\n  usages: [server auth]\n"),
    );
    let out = once(&[&m], &state);
    assert!(out.status.success(), "{}", text(&out));
    let l = leaf(&state);
    assert!(l.subject.contains("O=New"), "{}", l.subject);
    assert_eq!(l.not_after - l.not_before, 48 * 3600);
    assert_eq!(l.ext_key_usages, ["server auth"], "{:?}", l.ext_key_usages);
    let (_, _, _, revision) = cert_status(&status_json(&state), "demo", "web").expect("web");
    assert_eq!(
        revision, 2,
        "the revision continues from the Secret's record"
    );

    // Lost again and no change: nothing is reissued.
    let v = version(&state, "demo", "web-tls");
    std::fs::remove_dir_all(&record).expect("rm records");
    assert!(once(&[&m], &state).status.success());
    assert_eq!(v, version(&state, "demo", "web-tls"), "nothing rewritten");

    // A Secret without certwright's record (made by another tool) is compared field by
    // field: a subject it does not have is a change.
    std::fs::remove_dir_all(&record).expect("rm records");
    let dir = secret_dir(&state, "demo", "web-tls");
    let data = std::fs::read_link(dir.join("..data")).expect("..data");
    let meta = dir.join(&data).join("..metadata.json");
    let mut j: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&meta).expect("meta")).expect("json");
    j["annotations"]
        .as_object_mut()
        .expect("annotations")
        .remove("certwright.io/last-issuance");
    std::fs::write(&meta, serde_json::to_vec(&j).expect("json")).expect("write meta");
    write(
        &m,
        "web.yaml",
        &cert("  subject: {organizations: [Third]}\n  duration: 48h\n  usages: [server auth]\n"),
    );
    assert!(once(&[&m], &state).status.success());
    assert!(
        leaf(&state).subject.contains("O=Third"),
        "{}",
        leaf(&state).subject
    );
    // Neither the status nor the Secret knew the revision: the request records did.
    let (_, _, _, revision) = cert_status(&status_json(&state), "demo", "web").expect("web");
    assert_eq!(
        revision, 3,
        "the revision continues from the request records"
    );
}

/// A small tmpfs mounted for one test, unmounted on drop. None (with the reason printed)
/// where mounting is not allowed; in CI, which runs as root, that fails instead.
struct Mount(std::path::PathBuf);

impl Mount {
    fn tmpfs(at: &Path, options: &str) -> Option<Mount> {
        std::fs::create_dir_all(at).expect("mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(at)
            .output()
            .expect("mount runs");
        if out.status.success() {
            return Some(Mount(at.to_path_buf()));
        }
        let why = String::from_utf8_lossy(&out.stderr).into_owned();
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("mounting a tmpfs is required in CI (root): {why}");
        }
        eprintln!("SKIPPED: cannot mount a tmpfs (needs root): {why}");
        None
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Fills a file system until it refuses another byte.
fn fill(dir: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(dir.join("filler")).expect("filler");
    let block = vec![0u8; 4096];
    while f.write_all(&block).is_ok() {}
    let _ = f.sync_all();
}

#[test]
fn a_full_disk_is_reported_not_hidden_behind_a_stale_ready() {
    let tmp = tempfile::tempdir().expect("tmp");
    let Some(disk) = Mount::tmpfs(&tmp.path().join("disk"), "size=400k") else {
        return;
    };
    let m = tmp.path().join("m");
    std::fs::create_dir(&m).expect("m");
    write(&m, "web.yaml", &cert(""));
    let state = disk.0.join("state");
    assert!(once(&[&m], &state).status.success());
    fill(&disk.0);
    // A spec change cannot be written: the Certificate is not Ready, and since its
    // record cannot be written either, `status` says the records may be stale.
    write(&m, "web.yaml", &cert("  duration: 48h\n"));
    let out = once(&[&m], &state);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("No space left on device"),
        "{}",
        text(&out)
    );
    let table = Command::new(bin())
        .args(["status", "--state"])
        .arg(&state)
        .output()
        .expect("status");
    assert_eq!(table.status.code(), Some(1), "{}", text(&table));
    let t = String::from_utf8_lossy(&table.stdout);
    assert!(
        t.starts_with("WARNING: certwright cannot write its state directory"),
        "{t}"
    );
    let versions = |state: &Path| {
        std::fs::read_dir(secret_dir(state, "demo", "web-tls"))
            .expect("dir")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("..20"))
            .count()
    };
    assert_eq!(
        versions(&state),
        1,
        "no half-written version is left behind"
    );
    // Space again: the change lands and the warning goes.
    std::fs::remove_file(disk.0.join("filler")).expect("rm filler");
    let out = once(&[&m], &state);
    assert!(out.status.success(), "{}", text(&out));
    let s = status_json(&state);
    assert_eq!(s["health"]["ok"], true, "{}", s["health"]);
    assert_eq!(leaf(&state).not_after - leaf(&state).not_before, 48 * 3600);
}

#[test]
fn a_read_only_state_directory_is_one_clear_error() {
    let tmp = tempfile::tempdir().expect("tmp");
    let Some(ro) = Mount::tmpfs(&tmp.path().join("ro"), "ro,size=64k") else {
        return;
    };
    let m = tmp.path().join("m");
    std::fs::create_dir(&m).expect("m");
    write(&m, "web.yaml", &cert(""));
    let out = once(&[&m], &ro.0.join("state"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("Read-only file system").count(), 1, "{err}");
    assert!(err.contains("state directory"), "{err}");
}

#[test]
fn status_escapes_control_characters_and_inspect_redacts_passwords() {
    let tmp = tempfile::tempdir().expect("tmp");
    let m = tmp.path().join("m");
    std::fs::create_dir(&m).expect("m");
    write(&m, "web.yaml", &cert(""));
    // A file name with a terminal escape, holding a broken document.
    write(&m, "evil\u{1b}[2J\u{7}.yaml", "kind: [unclosed\n");
    write(
        &m,
        "secret.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: web-tls\n  namespace: demo\n  annotations:\n    cert-utils-operator.redhat-cop.io/generate-java-keystores: \"true\"\n    cert-utils-operator.redhat-cop.io/java-keystore-password: hunter2-secret\n    note: \"bell\\u0007here\"\n",
    );
    let state = tmp.path().join("state");
    let _ = once(&[&m], &state);
    let table = run(&["status", "--state", &state.display().to_string()]);
    let t = String::from_utf8_lossy(&table.stdout);
    assert!(t.contains("\\u{1b}[2J\\u{7}.yaml"), "{t}");
    assert!(
        !t.contains('\u{1b}') && !t.contains('\u{7}'),
        "raw control characters: {t:?}"
    );
    let out = run(&[
        "inspect",
        &secret_dir(&state, "demo", "web-tls").display().to_string(),
        "--password",
        "hunter2-secret",
    ]);
    let o = String::from_utf8_lossy(&out.stdout);
    assert!(o.contains("java-keystore-password=(redacted)"), "{o}");
    assert!(!o.contains("hunter2-secret"), "{o}");
    assert!(o.contains("note=bell\\u{7}here"), "{o}");
}
