//! The lifecycle parity suite: the scenarios of tests/parity/scenarios.yaml run through
//! the local runtime (in process, with an injected clock) and through the operator (on the
//! test control plane, under the RBAC deploy/ ships); every step must end with the
//! outcome the table names, in both. The table is data; each runtime has one driver that
//! knows how to act and observe, and nothing scenario-specific.

mod common;

use base64::Engine;
use certwright_engine::SecretData;
use certwright_pki::PrivateKey;
use common::*;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Deserialize)]
struct Table {
    fixtures: BTreeMap<String, String>,
    scenarios: Vec<Scenario>,
}

#[derive(Deserialize)]
struct Scenario {
    name: String,
    steps: Vec<Step>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(rename_all = "kebab-case")]
struct Step {
    apply: Option<Vec<String>>,
    delete_secret: Option<String>,
    edit_secret: Option<String>,
    swap_key: Option<String>,
    annotate_secret: Option<String>,
    restart: Option<bool>,
    renewal_time: Option<bool>,
    renew: Option<bool>,
    expect: Expect,
}

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
struct Expect {
    ready: Option<String>,
    ready_message: Option<String>,
    issuing: Option<String>,
    revision: Option<i64>,
    failed_attempts: Option<i64>,
    reason: Option<String>,
    secret: Option<String>,
    key: Option<String>,
    pending_key: Option<String>,
    keystore: Option<bool>,
    issuer: Option<String>,
}

/// What a driver sees of a scenario's namespace at one moment.
#[derive(Debug, Clone, Default)]
struct Seen {
    ready: String,
    ready_message: String,
    issuing: String,
    revision: i64,
    failed_attempts: i64,
    /// The trigger of the request with the highest revision.
    reason: String,
    secret: Option<SecretData>,
    /// The key kept for a pending request (PEM).
    kept_key: Option<Vec<u8>>,
    /// Issuer name → STATUS/REASON.
    issuers: BTreeMap<String, String>,
}

fn cond(conds: &[certwright_api::Condition], t: &str) -> (String, String) {
    conds
        .iter()
        .find(|c| c.type_ == t)
        .map(|c| (format!("{}/{}", c.status, c.reason), c.message.clone()))
        .unwrap_or_else(|| ("none".into(), String::new()))
}

fn spki(pem: &[u8]) -> Option<Vec<u8>> {
    PrivateKey::from_pem(pem)
        .ok()
        .map(|k| k.spki_der().to_vec())
}

/// Memory across the steps of one scenario: the Secret before the step, the pending key.
#[derive(Default)]
struct Memory {
    before: Option<SecretData>,
    pending_key: Option<Vec<u8>>,
}

/// Every way `seen` differs from `e`; empty when the step's outcome is as expected.
fn mismatches(e: &Expect, seen: &Seen, mem: &Memory) -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |what: &str, want: Option<String>, got: String| {
        if let Some(w) = want {
            if w != got {
                out.push(format!("{what}: expected {w:?}, saw {got:?}"));
            }
        }
    };
    check("ready", e.ready.clone(), seen.ready.clone());
    check("issuing", e.issuing.clone(), seen.issuing.clone());
    check(
        "revision",
        e.revision.map(|r| r.to_string()),
        seen.revision.to_string(),
    );
    check(
        "failed_attempts",
        e.failed_attempts.map(|r| r.to_string()),
        seen.failed_attempts.to_string(),
    );
    check("reason", e.reason.clone(), seen.reason.clone());
    if let Some(m) = &e.ready_message {
        if !seen.ready_message.contains(m.as_str()) {
            out.push(format!(
                "ready message: expected to contain {m:?}, saw {:?}",
                seen.ready_message
            ));
        }
    }
    let get = |s: &Option<SecretData>, k: &str| s.as_ref().and_then(|s| s.data.get(k).cloned());
    if let Some(want) = &e.secret {
        let (b, a) = (&mem.before, &seen.secret);
        let got = match (b, a) {
            (_, None) => "absent",
            (None, Some(_)) => "issued",
            (Some(_), Some(_)) if get(b, "tls.crt") != get(a, "tls.crt") => "issued",
            (Some(b), Some(a)) if b.data != a.data => "rewritten",
            _ => "unchanged",
        };
        if want != got {
            out.push(format!("secret: expected {want}, saw {got}"));
        }
    }
    if let Some(want) = &e.key {
        let now = get(&seen.secret, "tls.key").and_then(|k| spki(&k));
        let ok = match want.as_str() {
            "same" => now.is_some() && now == get(&mem.before, "tls.key").and_then(|k| spki(&k)),
            "new" => now.is_some() && now != get(&mem.before, "tls.key").and_then(|k| spki(&k)),
            "pending" => now.is_some() && now == mem.pending_key.as_deref().and_then(spki),
            other => panic!("unknown key expectation {other}"),
        };
        if !ok {
            out.push(format!("key: expected {want}"));
        }
    }
    if e.pending_key.is_some() && seen.kept_key.as_deref().and_then(spki).is_none() {
        out.push("pending_key: no key kept for the pending request".into());
    }
    if let Some(want) = e.keystore {
        let has = get(&seen.secret, "keystore.jks").is_some();
        if has != want {
            out.push(format!("keystore: expected {want}, saw {has}"));
        }
    }
    if let Some(i) = &e.issuer {
        let (name, want) = i.split_once('=').expect("issuer NAME=STATUS/REASON");
        let got = seen.issuers.get(name).cloned().unwrap_or_default();
        if got != want {
            out.push(format!("issuer {name}: expected {want}, saw {got}"));
        }
    }
    out
}

/// One runtime, as the suite drives it.
trait Driver {
    /// The namespace's objects become `docs` (fixture name → manifest).
    fn apply(&mut self, ns: &str, docs: &[(String, String)]);
    fn delete_secret(&mut self, ns: &str, name: &str);
    /// Writes `change(secret)` over the Secret, as someone else would.
    fn edit_secret(&mut self, ns: &str, name: &str, change: &dyn Fn(&mut SecretData));
    fn annotate_secret(&mut self, ns: &str, name: &str, key: &str, value: &str);
    fn restart(&mut self);
    fn renewal_time(&mut self, ns: &str);
    fn renew(&mut self, ns: &str);
    /// Lets the runtime act until `done` holds for what it sees, or gives up; returns the
    /// last thing seen.
    fn settle(&mut self, ns: &str, done: &dyn Fn(&Seen) -> bool) -> Seen;
}

fn table() -> Table {
    let text = std::fs::read_to_string(repo().join("tests/parity/scenarios.yaml")).expect("table");
    certwright_api::yaml::from_str(&text).expect("the table parses")
}

/// A CA key pair for the `CA_CRT` / `CA_KEY` placeholders (base64 of PEM).
fn ca_pair() -> (String, String) {
    use certwright_engine::issue::{self, Issuer, Outcome, Request};
    let c: certwright_api::Certificate = certwright_api::yaml::from_str(
        "apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {name: ca, namespace: x}\nspec: {secretName: ca, issuerRef: {name: s}, commonName: parity-ca, isCA: true, privateKey: {algorithm: ECDSA}}\n",
    )
    .expect("ca spec");
    let p = certwright_api::validate::certificate(&c).expect("valid");
    let key = PrivateKey::generate(p.issuance.key()).expect("key");
    let csr = issue::build_request(&p.issuance, &key).expect("csr");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs() as i64;
    let Outcome::Issued(i) = issue::SelfSigned::default().process(&Request {
        subject: "demo/test",
        labels: &Default::default(),
        csr_pem: &csr,
        spec: &p.issuance,
        key: Some(&key),
        state: &serde_json::Value::Null,
        current: None,
        now: now - 60,
    }) else {
        panic!("self-signed CA")
    };
    let b = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let crt = certwright_pki::pem::encode("CERTIFICATE", &i.chain[0]);
    let pem = key
        .to_pem(certwright_pki::KeyEncoding::Pkcs8)
        .expect("key pem");
    (b(&crt), b(&pem))
}

fn run_table(driver: &mut dyn Driver, runtime: &str) {
    let t = table();
    let (ca_crt, ca_key) = ca_pair();
    let mut failures = Vec::new();
    // PARITY_SCENARIO=name runs one scenario (while debugging).
    let only = std::env::var("PARITY_SCENARIO").ok();
    for sc in &t.scenarios {
        if only.as_ref().is_some_and(|o| *o != sc.name) {
            continue;
        }
        let ns = format!("p-{}", sc.name);
        let mut mem = Memory::default();
        for (i, step) in sc.steps.iter().enumerate() {
            let started = Instant::now();
            if let Some(names) = &step.apply {
                let docs: Vec<(String, String)> = names
                    .iter()
                    .map(|n| {
                        let text = t.fixtures.get(n).unwrap_or_else(|| panic!("fixture {n}"));
                        let text = text
                            .replace("namespace: NS", &format!("namespace: {ns}"))
                            .replace("CA_CRT", &ca_crt)
                            .replace("CA_KEY", &ca_key);
                        (n.clone(), text)
                    })
                    .collect();
                driver.apply(&ns, &docs);
            }
            if let Some(s) = &step.delete_secret {
                driver.delete_secret(&ns, s);
            }
            if let Some(s) = &step.edit_secret {
                driver.edit_secret(&ns, s, &|d| {
                    d.data.insert("tls.crt".into(), b"garbage".to_vec());
                });
            }
            if let Some(s) = &step.swap_key {
                let other = PrivateKey::generate(certwright_pki::KeyAlgorithm::Ecdsa(
                    certwright_pki::Curve::P256,
                ))
                .expect("key")
                .to_pem(certwright_pki::KeyEncoding::Pkcs8)
                .expect("pem");
                driver.edit_secret(&ns, s, &|d| {
                    d.data.insert("tls.key".into(), other.as_bytes().to_vec());
                });
            }
            if let Some(s) = &step.annotate_secret {
                driver.annotate_secret(
                    &ns,
                    s,
                    "cert-utils-operator.redhat-cop.io/generate-java-keystores",
                    "true",
                );
            }
            if step.restart == Some(true) {
                driver.restart();
            }
            if step.renewal_time == Some(true) {
                driver.renewal_time(&ns);
            }
            if step.renew == Some(true) {
                driver.renew(&ns);
            }
            let seen = driver.settle(&ns, &|s| mismatches(&step.expect, s, &mem).is_empty());
            let bad = mismatches(&step.expect, &seen, &mem);
            eprintln!(
                "{runtime}: {} step {} {} in {:.1?}",
                sc.name,
                i + 1,
                if bad.is_empty() {
                    "as expected"
                } else {
                    "DIFFERS"
                },
                started.elapsed()
            );
            if !bad.is_empty() {
                failures.push(format!(
                    "{runtime}: scenario {} step {}: {}\n  saw {seen:?}",
                    sc.name,
                    i + 1,
                    bad.join("; ")
                ));
                break;
            }
            if let Some(k) = &seen.kept_key {
                mem.pending_key = Some(k.clone());
            }
            mem.before = seen.secret.clone();
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------------------
// The local runtime, in process.

struct Local {
    root: tempfile::TempDir,
    clock: Arc<AtomicI64>,
    rt: Option<certwright_local::Runtime>,
}

impl Local {
    fn new() -> Local {
        let root = tempfile::tempdir().expect("tmp");
        std::fs::create_dir_all(root.path().join("manifests")).expect("manifests dir");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("time")
            .as_secs() as i64;
        let mut l = Local {
            root,
            clock: Arc::new(AtomicI64::new(now)),
            rt: None,
        };
        l.start();
        l
    }

    fn state(&self) -> PathBuf {
        self.root.path().join("state")
    }

    fn manifests(&self) -> PathBuf {
        self.root.path().join("manifests")
    }

    fn start(&mut self) {
        self.rt = None;
        // Dropping the runtime releases its state lock at once, but a child process that
        // another test thread is spawning right then holds a copy of the lock's descriptor
        // until it execs (close-on-exec): on a busy machine that can take a moment, so a
        // restart waits for the lock instead of failing at once.
        let deadline = Instant::now() + Duration::from_secs(30);
        let rt = loop {
            match self.new_runtime() {
                Err(certwright_local::runtime::RuntimeError::Locked(_))
                    if Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(50))
                }
                other => break other.expect("runtime"),
            }
        };
        self.rt = Some(rt);
    }

    fn new_runtime(
        &self,
    ) -> Result<certwright_local::Runtime, certwright_local::runtime::RuntimeError> {
        certwright_local::Runtime::new(certwright_local::Options {
            paths: vec![self.manifests()],
            recursive: true,
            state: self.state(),
            once: false,
            cluster_resource_namespace: "cert-manager".into(),
            workers: 2,
            durable: false,
            no_command_hooks: true,
            test_issuers: true,
            clock: certwright_local::Clock::set_by(self.clock.clone()),
            acme: Default::default(),
            once_timeout: std::time::Duration::from_secs(60),
            edge: None,
        })
    }

    fn store(&self) -> certwright_local::store::SecretStore {
        certwright_local::records::StateDir::open(self.state(), false)
            .and_then(|s| s.secret_store())
            .expect("store")
    }

    fn see(&self, ns: &str) -> Seen {
        let dir = certwright_local::records::StateDir::open(self.state(), false).expect("state");
        let o = dir.overview();
        let mut seen = Seen::default();
        if let Some(c) = o
            .certificates
            .iter()
            .find(|c| c.namespace == ns && c.name == "web")
        {
            (seen.ready, seen.ready_message) = cond(&c.status.conditions, "Ready");
            seen.issuing = cond(&c.status.conditions, "Issuing").0;
            seen.revision = c.status.revision.unwrap_or(0);
            seen.failed_attempts = c.status.failed_issuance_attempts.unwrap_or(0);
            seen.reason = last_reason(&c.requests);
        }
        seen.secret = self.store().read(ns, "web-tls").expect("read secret");
        seen.kept_key = dir.read_pending_key(ns, "web").ok().flatten();
        for i in o.issuers.iter().filter(|i| i.namespace == ns) {
            seen.issuers
                .insert(i.name.clone(), cond(&i.status.conditions, "Ready").0);
        }
        seen
    }
}

/// The trigger of the request with the highest revision.
fn last_reason(requests: &[certwright_api::CertificateRequest]) -> String {
    requests
        .iter()
        .max_by_key(|r| {
            r.metadata
                .annotations
                .get("cert-manager.io/certificate-revision")
                .and_then(|v| v.parse::<i64>().ok())
        })
        .and_then(|r| r.metadata.annotations.get("certwright.io/issuance-reason"))
        .cloned()
        .unwrap_or_default()
}

impl Driver for Local {
    fn apply(&mut self, ns: &str, docs: &[(String, String)]) {
        let dir = self.manifests().join(ns);
        std::fs::create_dir_all(&dir).expect("ns dir");
        for (name, text) in docs {
            // One file per object: a Certificate fixture replaces the Certificate.
            let file = if name.starts_with("web") {
                "web".to_string()
            } else if name.starts_with("ca-secret") {
                "ca-secret".to_string()
            } else {
                name.clone()
            };
            std::fs::write(dir.join(format!("{file}.yaml")), text).expect("manifest");
        }
    }

    fn delete_secret(&mut self, ns: &str, name: &str) {
        let d = self.state().join("secrets").join(ns).join(name);
        std::fs::remove_dir_all(&d).expect("delete secret");
    }

    fn edit_secret(&mut self, ns: &str, name: &str, change: &dyn Fn(&mut SecretData)) {
        let store = self.store();
        let mut s = store.read(ns, name).expect("read").expect("secret exists");
        change(&mut s);
        store.write(ns, name, &s).expect("write");
    }

    fn annotate_secret(&mut self, ns: &str, name: &str, key: &str, value: &str) {
        // Locally a Secret's definition is its manifest.
        let text = format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: {ns}\n  annotations: {{{key}: \"{value}\"}}\ntype: kubernetes.io/tls\n"
        );
        std::fs::write(
            self.manifests()
                .join(ns)
                .join(format!("secret-{name}.yaml")),
            text,
        )
        .expect("secret manifest");
    }

    fn restart(&mut self) {
        self.start();
    }

    fn renewal_time(&mut self, ns: &str) {
        let dir = certwright_local::records::StateDir::open(self.state(), false).expect("state");
        let o = dir.overview();
        let c = o
            .certificates
            .iter()
            .find(|c| c.namespace == ns && c.name == "web")
            .expect("certificate");
        let at = c
            .status
            .renewal_time
            .as_deref()
            .and_then(certwright_pki::der::parse_rfc3339)
            .expect("renewal time");
        self.clock.store(at + 1, Ordering::Relaxed);
    }

    fn renew(&mut self, ns: &str) {
        let out = run(&[
            "renew",
            "web",
            "-n",
            ns,
            "--state",
            &self.state().display().to_string(),
        ]);
        assert!(out.status.success(), "certwright renew: {}", text(&out));
    }

    fn settle(&mut self, ns: &str, done: &dyn Fn(&Seen) -> bool) -> Seen {
        // A pass now; then, while the outcome is not there yet, passes six seconds apart
        // (the pending test issuer asks to be polled every five).
        let mut seen = Seen::default();
        for i in 0..6 {
            if i > 0 {
                self.clock.fetch_add(6, Ordering::Relaxed);
            }
            self.rt.as_mut().expect("runtime").sync();
            seen = self.see(ns);
            if done(&seen) {
                break;
            }
        }
        seen
    }
}

#[test]
fn lifecycle_parity_local() {
    let mut d = Local::new();
    run_table(&mut d, "local");
}

// ---------------------------------------------------------------------------------------
// The operator, on the test control plane.

struct Operator {
    cp: certwright_testkube::ControlPlane,
    kubeconfig: PathBuf,
    admin_kubeconfig: PathBuf,
    logs: tempfile::TempDir,
    child: Option<std::process::Child>,
    starts: usize,
}

impl Operator {
    fn start(&mut self) {
        if let Some(mut c) = self.child.take() {
            terminate(&mut c);
        }
        self.starts += 1;
        let log = self
            .logs
            .path()
            .join(format!("operator-{}.log", self.starts));
        self.child = Some(start_operator(
            &self.kubeconfig,
            &log,
            &["--metrics-address", "", "--allow-test-issuers"],
        ));
    }

    fn get(&self, path: &str) -> Option<serde_json::Value> {
        self.cp.admin("GET", path, None).ok()
    }

    fn secret(&self, ns: &str, name: &str) -> Option<SecretData> {
        let v = self.get(&format!("/api/v1/namespaces/{ns}/secrets/{name}"))?;
        let b64 = |v: &serde_json::Value| {
            base64::engine::general_purpose::STANDARD
                .decode(v.as_str().unwrap_or_default())
                .unwrap_or_default()
        };
        Some(SecretData {
            type_: v["type"].as_str().map(Into::into),
            data: v["data"]
                .as_object()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), b64(v))).collect())
                .unwrap_or_default(),
            annotations: serde_json::from_value(v["metadata"]["annotations"].clone())
                .unwrap_or_default(),
            labels: serde_json::from_value(v["metadata"]["labels"].clone()).unwrap_or_default(),
        })
    }

    fn see(&self, ns: &str) -> Seen {
        let mut seen = Seen::default();
        let base = format!("/apis/cert-manager.io/v1/namespaces/{ns}");
        if let Some(c) = self.get(&format!("{base}/certificates/web")) {
            let status: certwright_api::CertificateStatus =
                serde_json::from_value(c["status"].clone()).unwrap_or_default();
            (seen.ready, seen.ready_message) = cond(&status.conditions, "Ready");
            seen.issuing = cond(&status.conditions, "Issuing").0;
            seen.revision = status.revision.unwrap_or(0);
            seen.failed_attempts = status.failed_issuance_attempts.unwrap_or(0);
            seen.kept_key = status
                .next_private_key_secret_name
                .as_deref()
                .and_then(|n| self.secret(ns, n))
                .and_then(|s| s.data.get("tls.key").cloned());
        }
        if let Some(list) = self.get(&format!("{base}/certificaterequests")) {
            let crs: Vec<certwright_api::CertificateRequest> =
                serde_json::from_value(list["items"].clone()).unwrap_or_default();
            seen.reason = last_reason(&crs);
        }
        seen.secret = self.secret(ns, "web-tls");
        if let Some(list) = self.get(&format!("{base}/issuers")) {
            for i in list["items"].as_array().into_iter().flatten() {
                let status: certwright_api::IssuerStatus =
                    serde_json::from_value(i["status"].clone()).unwrap_or_default();
                seen.issuers.insert(
                    i["metadata"]["name"].as_str().unwrap_or_default().into(),
                    cond(&status.conditions, "Ready").0,
                );
            }
        }
        seen
    }
}

impl Driver for Operator {
    fn apply(&mut self, ns: &str, docs: &[(String, String)]) {
        if self.get(&format!("/api/v1/namespaces/{ns}")).is_none() {
            self.cp
                .create_all(&format!(
                    "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n"
                ))
                .expect("namespace");
        }
        for (_, text) in docs {
            let v: serde_json::Value = certwright_api::yaml::from_str(text).expect("fixture");
            let collection = certwright_testkube::collection_for(&v).expect("collection");
            let name = v["metadata"]["name"].as_str().expect("name");
            let path = format!("{collection}/{name}");
            match self.get(&path) {
                None => self
                    .cp
                    .admin("POST", &collection, Some(&v.to_string()))
                    .map(|_| ())
                    .expect("create"),
                Some(cur) => {
                    let mut v = v.clone();
                    v["metadata"]["resourceVersion"] = cur["metadata"]["resourceVersion"].clone();
                    self.cp
                        .admin("PUT", &path, Some(&v.to_string()))
                        .map(|_| ())
                        .expect("replace");
                }
            }
        }
    }

    fn delete_secret(&mut self, ns: &str, name: &str) {
        self.cp
            .admin(
                "DELETE",
                &format!("/api/v1/namespaces/{ns}/secrets/{name}"),
                None,
            )
            .expect("delete secret");
    }

    fn edit_secret(&mut self, ns: &str, name: &str, change: &dyn Fn(&mut SecretData)) {
        let mut s = self.secret(ns, name).expect("secret exists");
        change(&mut s);
        let data: serde_json::Map<String, serde_json::Value> = s
            .data
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    base64::engine::general_purpose::STANDARD.encode(v).into(),
                )
            })
            .collect();
        self.cp
            .admin(
                "PATCH",
                &format!("/api/v1/namespaces/{ns}/secrets/{name}"),
                Some(&serde_json::json!({"data": data}).to_string()),
            )
            .expect("edit secret");
    }

    fn annotate_secret(&mut self, ns: &str, name: &str, key: &str, value: &str) {
        self.cp
            .admin(
                "PATCH",
                &format!("/api/v1/namespaces/{ns}/secrets/{name}"),
                Some(&serde_json::json!({"metadata": {"annotations": {key: value}}}).to_string()),
            )
            .expect("annotate secret");
    }

    fn restart(&mut self) {
        self.start();
    }

    fn renewal_time(&mut self, _ns: &str) {
        // The short certificate renews about a minute after it was issued; settle waits.
    }

    fn renew(&mut self, ns: &str) {
        let out = std::process::Command::new(bin())
            .args(["renew", "web", "-n", ns])
            .env("KUBECONFIG", &self.admin_kubeconfig)
            .output()
            .expect("certwright renew");
        assert!(out.status.success(), "certwright renew: {}", text(&out));
    }

    fn settle(&mut self, ns: &str, done: &dyn Fn(&Seen) -> bool) -> Seen {
        let mut last = Seen::default();
        let res = self
            .cp
            .wait_for("the step's outcome", Duration::from_secs(45), || {
                last = self.see(ns);
                done(&last).then_some(())
            });
        if res.is_ok() {
            // An outcome that holds must keep holding (no late rewrite, no second issue).
            std::thread::sleep(Duration::from_secs(2));
            let again = self.see(ns);
            if !done(&again) {
                return again;
            }
        }
        last
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            terminate(&mut c);
        }
        if std::thread::panicking() {
            for i in 1..=self.starts {
                let log = self.logs.path().join(format!("operator-{i}.log"));
                eprintln!(
                    "--- operator log {i} ---\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
        }
    }
}

#[test]
fn lifecycle_parity_operator() {
    let Some((cp, kubeconfig, _)) = operator_control_plane() else {
        return;
    };
    let admin_kubeconfig = cp.kubeconfig.clone();
    let mut d = Operator {
        cp,
        kubeconfig,
        admin_kubeconfig,
        logs: tempfile::tempdir().expect("tmp"),
        child: None,
        starts: 0,
    };
    d.start();
    run_table(&mut d, "operator");
}
