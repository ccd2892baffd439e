//! Helpers shared by the end-to-end tests: the built binary, temporary state, tools.

#![allow(dead_code)]

pub mod bind;
pub mod catalogue;
pub mod moto;
pub mod pebble;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_certwright")
}

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repo root")
}

/// Whether a tool is on PATH. In CI (`CI=true`) a missing tool fails the test, since
/// `.ci/run` installs it; elsewhere the test is skipped with the reason printed.
pub fn require(tool: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !found {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{tool} is required in CI (.ci/run installs it) but is not on PATH");
        }
        eprintln!("SKIPPED: {tool} is not installed");
    }
    found
}

/// cert-manager's CLI (`scripts/cmctl-bin.sh`, CERTWRIGHT_CMCTL). In CI a missing cmctl
/// fails the test; elsewhere the test is skipped with the reason printed.
pub fn cmctl() -> Option<PathBuf> {
    let path = std::env::var("CERTWRIGHT_CMCTL")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("/var/tmp/certwright-cmctl/v2.5.0/cmctl"));
    if path.is_file() {
        return Some(path);
    }
    let why = format!(
        "cmctl is not built ({}); run scripts/cmctl-bin.sh or set CERTWRIGHT_CMCTL",
        path.display()
    );
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{why}: .ci/run builds it");
    }
    eprintln!("SKIPPED: {why}");
    None
}

/// Runs cmctl with `args` against the control plane of `kubeconfig`: its exit status and
/// its output (stdout then stderr).
pub fn run_cmctl(cmctl: &Path, kubeconfig: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(cmctl)
        .args(args)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .output()
        .expect("cmctl runs");
    (out.status.success(), text(&out))
}

pub fn run(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .output()
        .expect("runs certwright")
}

pub fn once(manifests: &[&Path], state: &Path) -> Output {
    let mut args: Vec<String> = vec!["local".into(), "run".into(), "--once".into()];
    for m in manifests {
        args.push("-f".into());
        args.push(m.display().to_string());
    }
    args.push("--state".into());
    args.push(state.display().to_string());
    let out = Command::new(bin())
        .args(&args)
        .output()
        .expect("runs certwright");
    out
}

pub fn status_json(state: &Path) -> serde_json::Value {
    let out = run(&[
        "status",
        "--state",
        &state.display().to_string(),
        "-o",
        "json",
    ]);
    assert!(
        out.status.success(),
        "status failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("status JSON")
}

/// (ready status, reason, message) of a Certificate in the status JSON.
pub fn cert_status(
    status: &serde_json::Value,
    ns: &str,
    name: &str,
) -> Option<(String, String, String, i64)> {
    let certs = status["certificates"].as_array()?;
    let c = certs
        .iter()
        .find(|c| c["namespace"] == ns && c["name"] == name)?;
    let conds = c["status"]["conditions"].as_array()?;
    let r = conds.iter().find(|c| c["type"] == "Ready")?;
    Some((
        r["status"].as_str()?.to_string(),
        r["reason"].as_str().unwrap_or_default().to_string(),
        r["message"].as_str().unwrap_or_default().to_string(),
        c["status"]["revision"].as_i64().unwrap_or(0),
    ))
}

pub fn secret_dir(state: &Path, ns: &str, name: &str) -> PathBuf {
    state.join("secrets").join(ns).join(name)
}

pub fn version(state: &Path, ns: &str, name: &str) -> String {
    std::fs::read_link(secret_dir(state, ns, name).join("..data"))
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write manifest");
    p
}

pub fn text(o: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A real control plane with certwright's CRDs (deploy/crds) and RBAC (deploy/rbac.yaml),
/// and a kubeconfig and token for the operator's ServiceAccount: the operator runs under
/// the RBAC that deploy/ ships, not as admin. None where the control plane binaries are
/// missing outside CI (the reason is printed; in CI that fails instead).
pub fn operator_control_plane() -> Option<(certwright_testkube::ControlPlane, PathBuf, String)> {
    let cp = certwright_testkube::ControlPlane::start_or_skip()?;
    let read = |p: &str| std::fs::read_to_string(repo().join(p)).expect(p);
    cp.install_crds(&read("deploy/crds/crds.yaml"))
        .expect("CRDs served");
    cp.create_all(&read("deploy/rbac.yaml")).expect("RBAC");
    let (kubeconfig, token) = cp
        .service_account_kubeconfig("certwright", "certwright")
        .expect("ServiceAccount token");
    Some((cp, kubeconfig, token))
}

/// Starts `certwright operator ARGS` under `kubeconfig`, its log (stderr) in `log`.
pub fn start_operator(kubeconfig: &Path, log: &Path, args: &[&str]) -> std::process::Child {
    Command::new(bin())
        .arg("operator")
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::from(
            std::fs::File::create(log).expect("operator log"),
        ))
        .spawn()
        .expect("operator starts")
}

/// SIGTERM, then wait for the exit (SIGKILL after 5 s).
pub fn terminate(child: &mut std::process::Child) {
    if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    for _ in 0..100 {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Stops the operator and starts it again with `args` (its log in `log`); after the new
/// one has run a while, asserts that none of the objects at `paths` (API paths) was
/// written: same resourceVersion. Returns the new operator.
pub fn restart_writes_nothing(
    cp: &certwright_testkube::ControlPlane,
    op: &mut std::process::Child,
    kubeconfig: &Path,
    log: &Path,
    args: &[&str],
    paths: &[String],
) -> std::process::Child {
    let versions = || -> Vec<String> {
        paths
            .iter()
            .map(|p| {
                let o = cp.admin("GET", p, None).unwrap_or_default();
                assert!(o.is_object(), "{p} does not exist");
                o["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    };
    let before = versions();
    terminate(op);
    let new = start_operator(kubeconfig, log, args);
    let logs = || std::fs::read_to_string(log).unwrap_or_default();
    cp.wait_for(
        "the restarted operator",
        std::time::Duration::from_secs(30),
        || logs().contains("operator starting").then_some(()),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    // Long enough for every watch to list and every object to be reconciled.
    std::thread::sleep(std::time::Duration::from_secs(15));
    let after = versions();
    for ((p, b), a) in paths.iter().zip(&before).zip(&after) {
        assert_eq!(
            b,
            a,
            "{p} was written after the operator's restart\n{}",
            logs()
        );
    }
    new
}

/// The demo services' binary (`certwright-demo`), beside certwright's; built with Cargo
/// when a test is run alone and it is not there yet.
pub fn demo_bin() -> PathBuf {
    let dir = Path::new(bin())
        .parent()
        .expect("binary directory")
        .to_path_buf();
    let path = dir.join("certwright-demo");
    if !path.is_file() {
        let target = dir.parent().expect("target directory");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let ok = Command::new(cargo)
            .args(["build", "--locked", "-p", "certwright-demo"])
            .env("CARGO_TARGET_DIR", target)
            .current_dir(repo())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(
            ok && path.is_file(),
            "cannot build certwright-demo into {}",
            dir.display()
        );
    }
    path
}

/// A child process stopped (SIGTERM, then waited for) when dropped.
pub struct Stopped(pub std::process::Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        terminate(&mut self.0);
    }
}

/// One hop of the scenario (`certwright-demo serve`), serving the Secret directory
/// `secret`, calling `upstream` (address, service name) if given.
pub fn start_hop(
    name: &str,
    listen: &str,
    secret: &Path,
    upstream: Option<(&str, &str)>,
    extra: &[&str],
) -> Stopped {
    let mut cmd = Command::new(demo_bin());
    cmd.args([
        "serve",
        "--name",
        name,
        "--listen",
        listen,
        "--host",
        "test-host",
        "--secret-dir",
    ])
    .arg(secret)
    .args(extra);
    if let Some((addr, svc)) = upstream {
        cmd.args([
            "--upstream",
            &format!("https://{addr}/"),
            "--upstream-name",
            svc,
        ]);
    }
    Stopped(
        cmd.stdout(std::process::Stdio::null())
            .env("CERTWRIGHT_DEMO_LOG", "warn")
            .spawn()
            .expect("certwright-demo runs"),
    )
}

/// `curl` through `addr` as `host` (SNI and Host), trusting `ca`: (status, body).
pub fn curl(addr: &str, host: &str, ca: &Path, path: &str) -> (u16, String) {
    let (ip, port) = addr.rsplit_once(':').expect("HOST:PORT");
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "20",
            "-w",
            "\n%{http_code}",
            "--cacert",
        ])
        .arg(ca)
        .args([
            "--resolve",
            &format!("{host}:{port}:{ip}"),
            &format!("https://{host}:{port}{path}"),
        ])
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    let code = code.trim().parse().unwrap_or(0);
    if code == 0 {
        return (0, String::from_utf8_lossy(&out.stderr).into_owned());
    }
    (code, format!("{body}\n"))
}

/// The serial (lower-case hex) of the certificate a TLS server presents to `host` now.
pub fn served_serial(addr: &str, host: &str) -> String {
    let out = Command::new(demo_bin())
        .args(["probe", "--connect", addr, "--server-name", host])
        .output()
        .expect("probe runs");
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    line.split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

/// The serial (lower-case hex, no leading zeros) of the first certificate of a PEM file.
pub fn file_serial(pem: &Path) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(pem)
        .output()
        .expect("openssl runs");
    let s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.trim()
        .trim_start_matches("serial=")
        .trim_start_matches('0')
        .to_ascii_lowercase()
}

/// Waits up to `secs` for `what` to hold, polling every 100 ms; panics with `why()`.
pub fn wait_until(secs: u64, why: impl Fn() -> String, mut what: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !what() {
        assert!(
            std::time::Instant::now() < deadline,
            "waited {secs} s: {}",
            why()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
