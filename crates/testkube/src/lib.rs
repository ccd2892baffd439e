//! Test support: a real Kubernetes control plane on 127.0.0.1 — etcd, kube-apiserver
//! (RBAC, static tokens) and kube-controller-manager — started per test and torn down on
//! drop. The binaries come from `CERTWRIGHT_KUBE_BIN_DIR`, or from the cache that
//! `scripts/kube-bin.sh` fills (upstream v1.36 built from the Go module proxy, Debian's
//! etcd).
//!
//! Requests go through `curl`, verifying the API server's certificate; every call is
//! bounded in time.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const KUBE_VERSION: &str = "v1.36.3";
/// Token of `admin` in `system:masters`.
pub const ADMIN_TOKEN: &str = "certwright-test-admin-token";
/// Token of `nobody`, a user with no rights (RBAC denies it everything).
pub const NOBODY_TOKEN: &str = "certwright-test-nobody-token";

/// Where the binaries are: `CERTWRIGHT_KUBE_BIN_DIR`, else the build cache.
pub fn bin_dir() -> PathBuf {
    if let Ok(d) = std::env::var("CERTWRIGHT_KUBE_BIN_DIR") {
        return PathBuf::from(d);
    }
    let cache = std::env::var("CERTWRIGHT_KUBE_CACHE")
        .unwrap_or_else(|_| "/var/tmp/certwright-kube".into());
    Path::new(&cache).join(KUBE_VERSION)
}

fn missing_binaries(dir: &Path) -> Vec<String> {
    [
        "kube-apiserver",
        "kube-controller-manager",
        "kubectl",
        "etcd",
    ]
    .iter()
    .filter(|b| !dir.join(b).is_file())
    .map(|b| dir.join(b).display().to_string())
    .collect()
}

/// A free loopback port that no other caller in this process got.
///
/// Ports come from below the kernel's ephemeral range (32768 and up), so an
/// outgoing connection cannot take one between this check and the server's
/// bind, and each is handed out once, so two servers started together never
/// share one (binding port 0 twice can return the same port once released).
pub fn free_port() -> Result<u16, String> {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    // Each test process starts at its own offset so parallel binaries spread out.
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(97) % SPAN,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..SPAN {
        let port = (LOW + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok()
            && std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok()
        {
            return Ok(port);
        }
    }
    Err(format!(
        "no free loopback port between {LOW} and {}",
        LOW + SPAN
    ))
}

/// A running control plane. Dropping it stops every process and removes its files.
pub struct ControlPlane {
    pub url: String,
    pub ca_file: PathBuf,
    pub kubeconfig: PathBuf,
    pub dir: tempfile::TempDir,
    children: Vec<(String, Child)>,
}

impl ControlPlane {
    /// Starts a control plane, or explains why it cannot. Outside CI a missing build is a
    /// skip (`None`, with the reason printed); in CI (`CI=true`) it is a failure.
    pub fn start_or_skip() -> Option<ControlPlane> {
        let missing = missing_binaries(&bin_dir());
        if !missing.is_empty() {
            let msg = format!(
                "Kubernetes control plane binaries missing ({}); run scripts/kube-bin.sh or set CERTWRIGHT_KUBE_BIN_DIR",
                missing.join(", ")
            );
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{msg}");
            }
            eprintln!("SKIPPED: {msg}");
            return None;
        }
        match ControlPlane::start() {
            Ok(cp) => Some(cp),
            Err(e) => panic!("control plane did not start: {e}"),
        }
    }

    /// Starts etcd, kube-apiserver and kube-controller-manager and waits until the API
    /// server is ready.
    pub fn start() -> Result<ControlPlane, String> {
        let bins = bin_dir();
        let missing = missing_binaries(&bins);
        if !missing.is_empty() {
            return Err(format!("missing {}", missing.join(", ")));
        }
        let dir = tempfile::Builder::new()
            .prefix("certwright-kube-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let p = dir.path();
        let io = |e: std::io::Error| e.to_string();
        // Service-account signing key pair.
        let sa = certwright_pki::PrivateKey::generate(certwright_pki::KeyAlgorithm::Rsa(2048))
            .map_err(|e| e.to_string())?;
        std::fs::write(
            p.join("sa.key"),
            sa.to_pem(certwright_pki::KeyEncoding::Pkcs1)
                .map_err(|e| e.to_string())?,
        )
        .map_err(io)?;
        std::fs::write(
            p.join("sa.pub"),
            certwright_pki::pem::encode("PUBLIC KEY", sa.spki_der()),
        )
        .map_err(io)?;
        std::fs::write(
            p.join("tokens.csv"),
            format!(
                "{ADMIN_TOKEN},admin,admin-uid,system:masters\n{NOBODY_TOKEN},nobody,nobody-uid\n"
            ),
        )
        .map_err(io)?;
        let mut cp = ControlPlane {
            url: String::new(),
            ca_file: p.join("apiserver-certs").join("apiserver.crt"),
            kubeconfig: p.join("kubeconfig"),
            children: Vec::new(),
            dir,
        };
        let p = cp.dir.path().to_path_buf();
        let (client, peer, metrics) = (free_port()?, free_port()?, free_port()?);
        let etcd_url = format!("http://127.0.0.1:{client}");
        cp.spawn(
            "etcd",
            Command::new(bins.join("etcd")).args([
                "--name=certwright",
                &format!("--data-dir={}", p.join("etcd").display()),
                &format!("--listen-client-urls={etcd_url}"),
                &format!("--advertise-client-urls={etcd_url}"),
                &format!("--listen-peer-urls=http://127.0.0.1:{peer}"),
                &format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"),
                &format!("--initial-cluster=certwright=http://127.0.0.1:{peer}"),
                &format!("--listen-metrics-urls=http://127.0.0.1:{metrics}"),
            ]),
        )?;
        let api_port = free_port()?;
        cp.url = format!("https://127.0.0.1:{api_port}");
        cp.spawn(
            "kube-apiserver",
            Command::new(bins.join("kube-apiserver")).args([
                &format!("--etcd-servers={etcd_url}"),
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                &format!("--secure-port={api_port}"),
                &format!("--cert-dir={}", p.join("apiserver-certs").display()),
                "--service-cluster-ip-range=10.0.0.0/24",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                &format!("--service-account-key-file={}", p.join("sa.pub").display()),
                &format!(
                    "--service-account-signing-key-file={}",
                    p.join("sa.key").display()
                ),
                &format!("--token-auth-file={}", p.join("tokens.csv").display()),
                "--authorization-mode=RBAC",
                // As on OpenShift: setting blockOwnerDeletion needs permission to update
                // the owner's finalizers, so the operator's RBAC is checked for it.
                "--enable-admission-plugins=OwnerReferencesPermissionEnforcement",
            ]),
        )?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if cp.ca_file.exists() {
                if let Ok((200, body)) = cp.request(ADMIN_TOKEN, "GET", "/readyz", None) {
                    if body.trim() == "ok" {
                        break;
                    }
                }
            }
            cp.check_alive()?;
            if Instant::now() > deadline {
                return Err(format!(
                    "kube-apiserver not ready within 60 s; logs in {}",
                    p.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let kubeconfig = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\n    certificate-authority: {}\nusers:\n- name: admin\n  user:\n    token: {ADMIN_TOKEN}\ncontexts:\n- name: test\n  context: {{cluster: test, user: admin}}\ncurrent-context: test\n",
            cp.url,
            cp.ca_file.display()
        );
        std::fs::write(&cp.kubeconfig, kubeconfig).map_err(io)?;
        let kcm_port = free_port()?;
        cp.spawn(
            "kube-controller-manager",
            Command::new(bins.join("kube-controller-manager")).args([
                &format!("--kubeconfig={}", cp.kubeconfig.display()),
                "--bind-address=127.0.0.1",
                &format!("--secure-port={kcm_port}"),
                &format!("--cert-dir={}", p.join("kcm-certs").display()),
                &format!(
                    "--service-account-private-key-file={}",
                    p.join("sa.key").display()
                ),
                &format!("--root-ca-file={}", cp.ca_file.display()),
                "--leader-elect=false",
            ]),
        )?;
        Ok(cp)
    }

    fn spawn(&mut self, name: &str, cmd: &mut Command) -> Result<(), String> {
        let log = std::fs::File::create(self.dir.path().join(format!("{name}.log")))
            .map_err(|e| e.to_string())?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .spawn()
            .map_err(|e| format!("starting {name}: {e}"))?;
        self.children.push((name.to_string(), child));
        Ok(())
    }

    fn check_alive(&mut self) -> Result<(), String> {
        for (name, c) in &mut self.children {
            if let Ok(Some(st)) = c.try_wait() {
                let log = std::fs::read_to_string(self.dir.path().join(format!("{name}.log")))
                    .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(20).collect();
                return Err(format!(
                    "{name} exited ({st}):\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                ));
            }
        }
        Ok(())
    }

    /// One API request as `token`: (HTTP status, body). JSON bodies.
    pub fn request(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Result<(u16, String), String> {
        self.request_as(token, method, path, body, "application/json")
    }

    /// A list as `kubectl get` shows it: the server's Table (the CRDs' printer columns),
    /// as (column names, rows of cells as text), columns of priority 0 only.
    pub fn table(&self, path: &str) -> Result<(Vec<String>, Vec<Vec<String>>), String> {
        let accept = "application/json;as=Table;v=v1;g=meta.k8s.io";
        let (code, text) = self.request_as(ADMIN_TOKEN, "GET", path, None, accept)?;
        if code != 200 {
            return Err(format!("GET {path} as a Table: HTTP {code}: {text}"));
        }
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        let columns = v["columnDefinitions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let shown: Vec<usize> = (0..columns.len())
            .filter(|i| columns[*i]["priority"].as_i64().unwrap_or(0) == 0)
            .collect();
        let names = shown
            .iter()
            .map(|i| columns[*i]["name"].as_str().unwrap_or_default().to_string())
            .collect();
        let rows = v["rows"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                shown
                    .iter()
                    .map(|i| match &r["cells"][*i] {
                        serde_json::Value::String(s) => s.clone(),
                        serde_json::Value::Null => String::new(),
                        other => other.to_string(),
                    })
                    .collect()
            })
            .collect();
        Ok((names, rows))
    }

    fn request_as(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<&str>,
        accept: &str,
    ) -> Result<(u16, String), String> {
        let mut cmd = Command::new("curl");
        cmd.args(["-H", &format!("Accept: {accept}")]);
        cmd.args([
            "-sS",
            "--max-time",
            "20",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            "-X",
            method,
        ])
        .arg("--cacert")
        .arg(&self.ca_file)
        .args(["-H", &format!("Authorization: Bearer {token}")]);
        if body.is_some() {
            let ctype = if method == "PATCH" {
                "application/merge-patch+json"
            } else {
                "application/json"
            };
            // The body goes through stdin: large objects exceed the argument limit.
            cmd.args([
                "-H",
                &format!("Content-Type: {ctype}"),
                "--data-binary",
                "@-",
            ]);
        }
        let mut child = cmd
            .arg(format!("{}{path}", self.url))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("curl: {e}"))?;
        if let Some(mut stdin) = child.stdin.take() {
            use std::io::Write;
            stdin
                .write_all(body.unwrap_or_default().as_bytes())
                .map_err(|e| format!("curl stdin: {e}"))?;
        }
        let out = child.wait_with_output().map_err(|e| format!("curl: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "curl {method} {path}: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        Ok((code.trim().parse().unwrap_or(0), body.to_string()))
    }

    /// A request as the admin, which must succeed (2xx); returns the JSON body.
    pub fn admin(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Result<serde_json::Value, String> {
        let (code, text) = self.request(ADMIN_TOKEN, method, path, body)?;
        if !(200..300).contains(&code) {
            return Err(format!("{method} {path}: HTTP {code}: {text}"));
        }
        serde_json::from_str(&text).map_err(|e| format!("{method} {path}: {e}: {text}"))
    }

    /// Runs kubectl v1.36 (built with the control plane) as the admin, with `stdin` fed to
    /// it; returns whether it succeeded and its stdout and stderr together.
    pub fn kubectl(&self, args: &[&str], stdin: &str) -> (bool, String) {
        use std::io::Write;
        let child = Command::new(bin_dir().join("kubectl"))
            .arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => return (false, format!("kubectl: {e}")),
        };
        if let Some(mut input) = child.stdin.take() {
            let _ = input.write_all(stdin.as_bytes());
        }
        match child.wait_with_output() {
            Ok(out) => (
                out.status.success(),
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            ),
            Err(e) => (false, format!("kubectl: {e}")),
        }
    }

    /// Creates every object of a YAML file (CRDs and the like) at `collection`.
    pub fn create_from_yaml(&self, collection: &str, yaml: &str) -> Result<(), String> {
        for v in yaml_documents(yaml)? {
            if v.is_null() {
                continue;
            }
            self.admin("POST", collection, Some(&v.to_string()))?;
        }
        Ok(())
    }

    /// Polls `f` every 100 ms until it returns `Some`. Tests say how long a step should
    /// take; the wait allows four times that and at least a minute, since test machines
    /// are often busy (a wait that succeeds costs nothing extra; speed is for benchmarks).
    pub fn wait_for<T>(
        &self,
        what: &str,
        limit: Duration,
        mut f: impl FnMut() -> Option<T>,
    ) -> Result<T, String> {
        let limit = (limit * 4).max(Duration::from_secs(60));
        let deadline = Instant::now() + limit;
        loop {
            if let Some(v) = f() {
                return Ok(v);
            }
            if Instant::now() > deadline {
                return Err(format!("timed out after {limit:?} waiting for {what}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Creates every object of a multi-document YAML text at its collection (the kinds
    /// certwright's tests use).
    pub fn create_all(&self, yaml: &str) -> Result<(), String> {
        for v in yaml_documents(yaml)? {
            if v.is_null() {
                continue;
            }
            self.admin("POST", &collection_for(&v)?, Some(&v.to_string()))?;
        }
        Ok(())
    }

    /// A kubeconfig for a ServiceAccount, with a token from the TokenRequest API: to run
    /// the operator under the RBAC it ships with.
    pub fn service_account_kubeconfig(
        &self,
        ns: &str,
        sa: &str,
    ) -> Result<(PathBuf, String), String> {
        let req = r#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{"expirationSeconds":3600}}"#;
        let v = self.admin(
            "POST",
            &format!("/api/v1/namespaces/{ns}/serviceaccounts/{sa}/token"),
            Some(req),
        )?;
        let token = v["status"]["token"]
            .as_str()
            .ok_or("TokenRequest returned no token")?;
        let path = self.dir.path().join(format!("kubeconfig-{ns}-{sa}"));
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\n    certificate-authority: {}\nusers:\n- name: sa\n  user:\n    token: {token}\ncontexts:\n- name: test\n  context: {{cluster: test, user: sa, namespace: {ns}}}\ncurrent-context: test\n",
            self.url,
            self.ca_file.display()
        );
        std::fs::write(&path, text).map_err(|e| e.to_string())?;
        Ok((path, token.to_string()))
    }

    /// Installs CRDs (a multi-document YAML text) and waits until every one is served.
    pub fn install_crds(&self, yaml: &str) -> Result<(), String> {
        self.create_from_yaml(
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            yaml,
        )?;
        for v in yaml_documents(yaml)? {
            let (Some(group), Some(plural)) = (
                v["spec"]["group"].as_str(),
                v["spec"]["names"]["plural"].as_str(),
            ) else {
                continue;
            };
            let version = v["spec"]["versions"][0]["name"].as_str().unwrap_or("v1");
            let path = format!("/apis/{group}/{version}/{plural}");
            self.wait_for(&path, Duration::from_secs(30), || {
                matches!(self.request(ADMIN_TOKEN, "GET", &path, None), Ok((200, _))).then_some(())
            })?;
        }
        Ok(())
    }

    /// The test-only Route CRD (route.openshift.io/v1), installed and served.
    pub fn install_route_crd(&self) -> Result<(), String> {
        self.install_crds(include_str!("../../../tests/controlplane/route-crd.yaml"))
    }
}

/// The collection URL an object is created at.
pub fn collection_for(v: &serde_json::Value) -> Result<String, String> {
    let kind = v["kind"].as_str().unwrap_or_default();
    let api_version = v["apiVersion"].as_str().unwrap_or_default();
    let ns = v["metadata"]["namespace"].as_str();
    let (plural, cluster) = match kind {
        "Namespace" => ("namespaces", true),
        "ClusterRole" => ("clusterroles", true),
        "ClusterRoleBinding" => ("clusterrolebindings", true),
        "CustomResourceDefinition" => ("customresourcedefinitions", true),
        "ClusterIssuer" => ("clusterissuers", true),
        "ServiceAccount" => ("serviceaccounts", false),
        "Secret" => ("secrets", false),
        "ConfigMap" => ("configmaps", false),
        "Service" => ("services", false),
        "Role" => ("roles", false),
        "RoleBinding" => ("rolebindings", false),
        "Deployment" => ("deployments", false),
        "StatefulSet" => ("statefulsets", false),
        "DaemonSet" => ("daemonsets", false),
        "Certificate" => ("certificates", false),
        "Issuer" => ("issuers", false),
        "CertificateRequest" => ("certificaterequests", false),
        "Route" => ("routes", false),
        "EndpointSlice" => ("endpointslices", false),
        "Ingress" => ("ingresses", false),
        other => return Err(format!("no collection known for kind {other:?}")),
    };
    let base = if api_version.contains('/') {
        format!("/apis/{api_version}")
    } else {
        format!("/api/{api_version}")
    };
    Ok(match (cluster, ns) {
        (true, _) => format!("{base}/{plural}"),
        (false, Some(ns)) => format!("{base}/namespaces/{ns}/{plural}"),
        (false, None) => format!("{base}/namespaces/default/{plural}"),
    })
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        // Controller manager, API server, then etcd: the reverse of the start order.
        for (_, c) in self.children.iter_mut().rev() {
            if let Some(pid) = rustix::process::Pid::from_raw(c.id() as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Every document of a multi-document YAML text, as JSON values (empty ones skipped).
pub fn yaml_documents(yaml: &str) -> Result<Vec<serde_json::Value>, String> {
    serde_saphyr::from_multiple(yaml).map_err(|e| e.to_string())
}
