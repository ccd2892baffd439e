//! Scale benchmark of `certwright operator` on a real control plane (etcd, kube-apiserver,
//! kube-controller-manager from scripts/kube-bin.sh): N Certificates (default 1,000; CA
//! issuer, ECDSA P-256) from the first create to all Ready, with the operator's peak and
//! settled RSS; then the same on a fresh control plane that already holds U unrelated
//! Secrets (default 10,000, 1 KiB each, in 10 namespaces).
//!
//! Run with `bash bench/operator.sh` (`cargo bench -p certwright-cli --bench operator_scale`).
//! Under `cargo test` (which builds every target) it does nothing and says so.
//!
//! Environment: N, UNRELATED, CLIENTS (requests in flight while creating, default 8),
//! CONCURRENCY (the operator's --max-concurrent-reconciles; default: its own default).

use certwright_testkube::ControlPlane;
use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SETUP: &str = r#"apiVersion: v1
kind: Namespace
metadata: {name: bench}
---
apiVersion: cert-manager.io/v1
kind: Issuer
metadata: {name: self, namespace: bench}
spec: {selfSigned: {}}
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: bench-ca, namespace: bench}
spec:
  secretName: bench-ca
  issuerRef: {name: self}
  commonName: bench-ca
  isCA: true
  privateKey: {algorithm: ECDSA}
---
apiVersion: cert-manager.io/v1
kind: Issuer
metadata: {name: ca, namespace: bench}
spec: {ca: {secretName: bench-ca}}
"#;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// (VmRSS, VmHWM) of a process, in KiB.
fn memory(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// CPU seconds (user + system) a process has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime and stime are the
    // 12th and 13th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    let ticks = 100.0; // USER_HZ, 100 on Linux for every mainstream architecture
    f.iter().sum::<u64>() as f64 / ticks
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn resource(group: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: group.into(),
        version: "v1".into(),
        api_version: if group.is_empty() {
            "v1".into()
        } else {
            format!("{group}/v1")
        },
        kind: kind.into(),
        plural: plural.into(),
    }
}

/// Creates `n` objects, `make(i)` → (namespace, object), over one keep-alive client with `clients` requests in flight, as a deployment pipeline would; returns the
/// seconds it took.
fn create(
    kubeconfig: &Path,
    res: &ApiResource,
    n: usize,
    clients: usize,
    make: impl Fn(usize) -> (String, serde_json::Value) + Send + Sync + 'static,
) -> f64 {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let kc = Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .expect("config");
        let client = kube::Client::try_from(config).expect("client");
        let make = std::sync::Arc::new(make);
        let t = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for c in 0..clients {
            let (client, make, res) = (client.clone(), make.clone(), res.clone());
            tasks.spawn(async move {
                let mut i = c;
                while i < n {
                    let (ns, v) = make(i);
                    let obj: DynamicObject = serde_json::from_value(v).expect("object");
                    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &res);
                    api.create(&PostParams::default(), &obj)
                        .await
                        .unwrap_or_else(|e| panic!("create {i}: {e}"));
                    i += clients;
                }
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.expect("creator");
        }
        t.elapsed().as_secs_f64()
    })
}

struct Operator(Child);

impl Operator {
    /// SIGTERM, then wait for the exit.
    fn stop(mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.0.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let _ = self.0.wait();
    }
}

fn ready_count(cp: &ControlPlane) -> usize {
    let list = cp
        .admin(
            "GET",
            "/apis/cert-manager.io/v1/namespaces/bench/certificates",
            None,
        )
        .unwrap_or_default();
    list["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter(|c| c["metadata"]["name"] != "bench-ca")
                .filter(|c| {
                    c["status"]["conditions"].as_array().is_some_and(|cs| {
                        cs.iter()
                            .any(|c| c["type"] == "Ready" && c["status"] == "True")
                    })
                })
                .count()
        })
        .unwrap_or(0)
}

struct Figures {
    what: &'static str,
    unrelated: usize,
    unrelated_create_s: f64,
    create_s: f64,
    all_ready_s: f64,
    rss_before_kib: u64,
    peak_kib: u64,
    settled_kib: u64,
    cpu_s: f64,
}

fn run(n: usize, unrelated: usize, backlog: bool, clients: usize, log_dir: &Path) -> Figures {
    let cp = ControlPlane::start().unwrap_or_else(|e| panic!("control plane: {e}"));
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let read = |p: &str| std::fs::read_to_string(repo.join(p)).expect(p);
    cp.install_crds(&read("deploy/crds/crds.yaml"))
        .expect("CRDs");
    cp.create_all(&read("deploy/rbac.yaml")).expect("RBAC");
    cp.create_all(SETUP).expect("setup");

    let mut unrelated_create_s = 0.0;
    if unrelated > 0 {
        for ns in 0..10 {
            cp.admin(
                "POST",
                "/api/v1/namespaces",
                Some(&format!(
                    r#"{{"apiVersion":"v1","kind":"Namespace","metadata":{{"name":"noise-{ns}"}}}}"#
                )),
            )
            .expect("namespace");
        }
        // 1 KiB of data each, like a small application config or token.
        let payload = "A".repeat(1368); // base64 of 1026 bytes
        unrelated_create_s = create(
            &cp.kubeconfig,
            &resource("", "Secret", "secrets"),
            unrelated,
            clients,
            move |i| {
                (
                    format!("noise-{}", i % 10),
                    json!({"apiVersion": "v1", "kind": "Secret",
                        "metadata": {"name": format!("unrelated-{i}"), "labels": {"app": "noise"}},
                        "data": {"config": payload}}),
                )
            },
        );
    }

    let (kubeconfig, _) = cp
        .service_account_kubeconfig("certwright", "certwright")
        .expect("token");
    let start = |name: &str| {
        let log = log_dir.join(format!("operator-{name}.log"));
        let op = Operator(
            Command::new(env!("CARGO_BIN_EXE_certwright"))
                .args(["operator", "--metrics-address", ""])
                .args(
                    std::env::var("CONCURRENCY")
                        .map(|c| vec![format!("--max-concurrent-reconciles={c}")])
                        .unwrap_or_default(),
                )
                .env("KUBECONFIG", &kubeconfig)
                .stdout(Stdio::null())
                .stderr(Stdio::from(std::fs::File::create(&log).expect("log")))
                .spawn()
                .expect("operator"),
        );
        (op, log)
    };
    let label = format!("{}-{unrelated}", if backlog { "backlog" } else { "live" });
    let (op, log) = start(&label);
    cp.wait_for("CA issuer", Duration::from_secs(60), || {
        let i = cp
            .admin(
                "GET",
                "/apis/cert-manager.io/v1/namespaces/bench/issuers/ca",
                None,
            )
            .ok()?;
        (i["status"]["conditions"][0]["status"] == "True").then_some(())
    })
    .expect("CA issuer ready");
    std::thread::sleep(Duration::from_secs(2));
    let (rss_before_kib, _) = memory(op.0.id());

    // Backlog: the operator is down while the Certificates are created (an upgrade, an
    // outage) and starts with all of them waiting.
    let running = if backlog {
        op.stop();
        None
    } else {
        Some(op)
    };
    let mut t0 = Instant::now();
    let create_s = create(
        &cp.kubeconfig,
        &resource("cert-manager.io", "Certificate", "certificates"),
        n,
        clients,
        |i| {
            (
                "bench".to_string(),
                json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
                    "metadata": {"name": format!("svc-{i}"), "namespace": "bench"},
                    "spec": {"secretName": format!("svc-{i}-tls"), "issuerRef": {"name": "ca"},
                        "dnsNames": [format!("svc-{i}.bench.svc")],
                        "privateKey": {"algorithm": "ECDSA"}}}),
            )
        },
    );
    let (op, log) = match running {
        Some(op) => (op, log),
        None => {
            let started = start(&format!("{label}-restarted"));
            t0 = Instant::now();
            started
        }
    };
    let pid = op.0.id();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let ready = ready_count(&cp);
        if ready >= n {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {ready} of {n} Ready after 10 minutes; see {}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let all_ready_s = t0.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(5));
    let (settled_kib, peak_kib) = memory(pid);
    let cpu_s = cpu_seconds(pid);
    op.stop();
    Figures {
        what: if backlog {
            "operator started with all waiting"
        } else {
            "created while running"
        },
        unrelated,
        unrelated_create_s,
        create_s,
        all_ready_s,
        rss_before_kib,
        peak_kib,
        settled_kib,
        cpu_s,
    }
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("operator_scale is a benchmark: run `bash bench/operator.sh`; nothing to do under cargo test");
        return;
    }
    let n = env_or("N", 1000);
    let unrelated = env_or("UNRELATED", 10_000);
    let clients = env_or("CLIENTS", 8);
    let logs =
        std::env::temp_dir().join(format!("certwright-operator-bench-{}", std::process::id()));
    std::fs::create_dir_all(&logs).expect("log dir");
    println!("certwright operator scale benchmark: {n} Certificates (CA issuer, ECDSA P-256), created with {clients} requests in flight");
    let mut runs = vec![run(n, 0, false, clients, &logs)];
    if unrelated > 0 {
        runs.push(run(n, unrelated, false, clients, &logs));
    }
    runs.push(run(n, 0, true, clients, &logs));
    println!(
        "{:<34} {:>18} {:>10} {:>12} {:>10} {:>11} {:>12} {:>13} {:>8} {:>14}",
        "Certificates",
        "unrelated Secrets",
        "create s",
        "all Ready s",
        "certs/s",
        "RSS idle",
        "RSS peak",
        "RSS settled",
        "CPU s",
        "(creating them)"
    );
    for f in &runs {
        println!(
            "{:<34} {:>18} {:>10.2} {:>12.2} {:>10.0} {:>7.1} MiB {:>8.1} MiB {:>9.1} MiB {:>8.1} {:>13.1} s",
            f.what,
            f.unrelated,
            f.create_s,
            f.all_ready_s,
            n as f64 / f.all_ready_s,
            mib(f.rss_before_kib),
            mib(f.peak_kib),
            mib(f.settled_kib),
            f.cpu_s,
            f.unrelated_create_s
        );
    }
    if let [a, b, ..] = &runs[..] {
        println!(
            "unrelated Secrets add {:+.1} MiB to the peak and {:+.1} MiB settled",
            mib(b.peak_kib) - mib(a.peak_kib),
            mib(b.settled_kib) - mib(a.settled_kib)
        );
    }
    println!("operator logs: {}", logs.display());
}
