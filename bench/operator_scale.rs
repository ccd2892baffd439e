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
//!
//! `SCENARIO=rollouts` (`bash bench/rollouts.sh`) measures the rollouts instead: the
//! operator's RSS on an empty cluster, then on one holding UNRELATED Secrets (default
//! 10,000) and UNRELATED_DEPLOYMENTS Deployments (default 2,000) that nothing annotates;
//! then N Certificates (default 1,000) each followed by one Deployment
//! (`secret.reloader.stakater.com/reload`), all renewed at once (`certwright renew
//! --all`): how long until every Deployment is rolled out, the most rollouts in any 60 s
//! against RATE (`--rollouts-per-minute`, default 200), and whether each Deployment got
//! exactly one new ReplicaSet.

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

/// Creates the Certificates `svc-0..n` in `bench` (CA issuer, ECDSA, secret
/// `svc-i-tls`); returns the seconds it took.
fn certificates(cp: &ControlPlane, n: usize, clients: usize) -> f64 {
    create(
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
    )
}

/// Creates `n` unrelated Secrets (1 KiB each, like a small application config or token)
/// in 10 namespaces `noise-0..9`; returns the seconds it took.
fn noise_secrets(cp: &ControlPlane, n: usize, clients: usize) -> f64 {
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
    if n == 0 {
        return 0.0;
    }
    let payload = "A".repeat(1368); // base64 of 1026 bytes
    create(
        &cp.kubeconfig,
        &resource("", "Secret", "secrets"),
        n,
        clients,
        move |i| {
            (
                format!("noise-{}", i % 10),
                json!({"apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": format!("unrelated-{i}"), "labels": {"app": "noise"}},
                    "data": {"config": payload}}),
            )
        },
    )
}

fn run(n: usize, unrelated: usize, backlog: bool, clients: usize, log_dir: &Path) -> Figures {
    let (cp, kubeconfig) = bench_cluster();
    let unrelated_create_s = noise_secrets(&cp, unrelated, clients);

    let concurrency: Vec<String> = std::env::var("CONCURRENCY")
        .map(|c| vec![format!("--max-concurrent-reconciles={c}")])
        .unwrap_or_default();
    let start = |name: &str| {
        let op = operator(&kubeconfig, &concurrency, log_dir, name);
        (op, log_dir.join(format!("operator-{name}.log")))
    };
    let label = format!("{}-{unrelated}", if backlog { "backlog" } else { "live" });
    let (op, log) = start(&label);
    wait_ca(&cp);
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
    let create_s = certificates(&cp, n, clients);
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

/// Starts the operator under `kubeconfig` with `args`, its log in `log_dir/NAME.log`.
fn operator(kubeconfig: &Path, args: &[String], log_dir: &Path, name: &str) -> Operator {
    let log = log_dir.join(format!("operator-{name}.log"));
    Operator(
        Command::new(env!("CARGO_BIN_EXE_certwright"))
            .arg("operator")
            .args(
                (!args.iter().any(|a| a.starts_with("--metrics-address")))
                    .then_some("--metrics-address="),
            )
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).expect("log")))
            .spawn()
            .expect("operator"),
    )
}

/// A control plane with the CRDs, the shipped RBAC and the bench namespace's CA issuer,
/// and the operator's ServiceAccount kubeconfig.
fn bench_cluster() -> (ControlPlane, std::path::PathBuf) {
    let cp = ControlPlane::start().unwrap_or_else(|e| panic!("control plane: {e}"));
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let read = |p: &str| std::fs::read_to_string(repo.join(p)).expect(p);
    cp.install_crds(&read("deploy/crds/crds.yaml"))
        .expect("CRDs");
    cp.create_all(&read("deploy/rbac.yaml")).expect("RBAC");
    cp.create_all(SETUP).expect("setup");
    let (kubeconfig, _) = cp
        .service_account_kubeconfig("certwright", "certwright")
        .expect("token");
    (cp, kubeconfig)
}

fn wait_ca(cp: &ControlPlane) {
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
}

/// A Deployment with no pods (replicas 0: no kubelet runs here) mounting `secret`.
fn workload(
    ns: &str,
    name: &str,
    secret: &str,
    annotations: serde_json::Value,
) -> serde_json::Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "annotations": annotations},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "example.com/app:1",
                        "volumeMounts": [{"name": "tls", "mountPath": "/tls", "readOnly": true}]}],
                    "volumes": [{"name": "tls", "secret": {"secretName": secret}}]}}}})
}

/// A gauge or counter from the operator's /metrics (0 when unreadable).
fn metric(port: u16, name: &str) -> f64 {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return 0.0;
    };
    let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

fn list(cp: &ControlPlane, path: &str) -> Vec<serde_json::Value> {
    cp.admin("GET", path, None).unwrap_or_default()["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn rollouts(n: usize, clients: usize, log_dir: &Path) {
    let unrelated = env_or("UNRELATED", 10_000);
    let unrelated_deployments = env_or("UNRELATED_DEPLOYMENTS", 2_000);
    let rate = env_or("RATE", 200);
    let port = certwright_testkube::free_port().expect("port");
    let args = vec![
        format!("--rollouts-per-minute={rate}"),
        format!("--metrics-address=127.0.0.1:{port}"),
    ];
    println!("certwright rollout benchmark: {unrelated} unrelated Secrets and {unrelated_deployments} unrelated Deployments; {n} Certificates each followed by a Deployment, renewed at once; {rate} rollouts a minute");

    // The operator idle on an empty cluster.
    let (cp, kubeconfig) = bench_cluster();
    let op = operator(&kubeconfig, &args, log_dir, "empty");
    wait_ca(&cp);
    std::thread::sleep(Duration::from_secs(15));
    let (empty_rss, empty_peak) = memory(op.0.id());
    op.stop();
    drop(cp);

    // The same with the unrelated objects present before it starts.
    let (cp, kubeconfig) = bench_cluster();
    let secrets_s = noise_secrets(&cp, unrelated, clients);
    let apps = ApiResource {
        group: "apps".into(),
        version: "v1".into(),
        api_version: "apps/v1".into(),
        kind: "Deployment".into(),
        plural: "deployments".into(),
    };
    let deployments_s = create(&cp.kubeconfig, &apps, unrelated_deployments, clients, |i| {
        let ns = format!("noise-{}", i % 10);
        let d = workload(
            &ns,
            &format!("unrelated-{i}"),
            &format!("unrelated-{i}"),
            json!({}),
        );
        (ns, d)
    });
    println!("created {unrelated} Secrets in {secrets_s:.1} s and {unrelated_deployments} Deployments in {deployments_s:.1} s");
    let op = operator(&kubeconfig, &args, log_dir, "unrelated");
    let pid = op.0.id();
    wait_ca(&cp);
    std::thread::sleep(Duration::from_secs(15));
    let (noise_rss, noise_peak) = memory(pid);
    println!(
        "operator idle: empty cluster {:.1} MiB (peak {:.1}); with the unrelated objects {:.1} MiB (peak {:.1}): {:+.1} MiB at the peak",
        mib(empty_rss),
        mib(empty_peak),
        mib(noise_rss),
        mib(noise_peak),
        mib(noise_peak) - mib(empty_peak)
    );

    // N Certificates, each followed by a Deployment.
    let t = Instant::now();
    certificates(&cp, n, clients);
    create(&cp.kubeconfig, &apps, n, clients, |i| {
        let d = workload(
            "bench",
            &format!("svc-{i}"),
            &format!("svc-{i}-tls"),
            json!({"secret.reloader.stakater.com/reload": format!("svc-{i}-tls")}),
        );
        ("bench".to_string(), d)
    });
    let recorded = |d: &serde_json::Value| {
        d["metadata"]["annotations"]["certwright.io/reloaded-from"]
            .as_str()
            .is_some_and(|r| r.contains("Secret/svc-"))
    };
    // Exactly once is counted in ReplicaSets (kube-controller-manager's), so each
    // Deployment's first one must exist before the renewal.
    let replica_sets = || {
        let mut per_deployment = std::collections::BTreeMap::<String, usize>::new();
        for rs in list(&cp, "/apis/apps/v1/namespaces/bench/replicasets") {
            if let Some(owner) = rs["metadata"]["ownerReferences"][0]["name"].as_str() {
                *per_deployment.entry(owner.to_string()).or_default() += 1;
            }
        }
        per_deployment
    };
    let deadline = Instant::now() + Duration::from_secs(1200);
    loop {
        let ready = ready_count(&cp);
        let deployments = list(&cp, "/apis/apps/v1/namespaces/bench/deployments");
        let seen = deployments.iter().filter(|d| recorded(d)).count();
        let first_rs = replica_sets().len();
        if ready >= n && seen >= n && first_rs >= n {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{ready} Ready, {seen} recorded, {first_rs} with a ReplicaSet"
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    println!(
        "{n} Certificates Ready and their Deployments recorded in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let rolled_before = list(&cp, "/apis/apps/v1/namespaces/bench/deployments")
        .iter()
        .filter(|d| !d["metadata"]["annotations"]["certwright.io/rolled-out-at"].is_null())
        .count();
    assert_eq!(rolled_before, 0, "Deployments rolled out at first sight");

    // All renewed at once.
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_certwright"))
        .args(["renew", "--all", "-n", "bench"])
        .env("KUBECONFIG", &cp.kubeconfig)
        .output()
        .expect("renew");
    assert!(
        out.status.success(),
        "renew: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rolled_at = |d: &serde_json::Value| {
        d["metadata"]["annotations"]["certwright.io/rolled-out-at"]
            .as_str()
            .and_then(|s| {
                time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
            })
            .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
    };
    let limit = Duration::from_secs((n * 60 / rate.max(1)) as u64 + 600);
    let mut backlog = 0.0f64;
    let times: Vec<i64> = loop {
        backlog = backlog.max(metric(port, "certwright_rollouts_backlog"));
        let times: Vec<i64> = list(&cp, "/apis/apps/v1/namespaces/bench/deployments")
            .iter()
            .filter_map(rolled_at)
            .collect();
        if times.len() >= n {
            break times;
        }
        assert!(
            t.elapsed() < limit,
            "only {} of {n} rolled out",
            times.len()
        );
        std::thread::sleep(Duration::from_secs(1));
    };
    let all_s = t.elapsed().as_secs_f64();
    // Exactly once: each Deployment has its first ReplicaSet and one more (made by
    // kube-controller-manager, which takes its time with 1,000; then a while longer, in
    // case a second rollout came late).
    let waited = Instant::now();
    while replica_sets().values().filter(|c| **c >= 2).count() < n
        && waited.elapsed() < Duration::from_secs(600)
    {
        std::thread::sleep(Duration::from_secs(2));
    }
    std::thread::sleep(Duration::from_secs(30));
    let (_, rollout_peak) = memory(pid);
    let cpu_s = cpu_seconds(pid);
    let mut sorted = times.clone();
    sorted.sort();
    let busiest = sorted
        .iter()
        .map(|start| {
            sorted
                .iter()
                .filter(|t| **t >= *start && **t < start + 60_000)
                .count()
        })
        .max()
        .unwrap_or(0);
    let per_deployment = replica_sets();
    let first = sorted.first().copied().unwrap_or(0);
    let last = sorted.last().copied().unwrap_or(0);
    let once = per_deployment.values().filter(|c| **c == 2).count();
    let more = per_deployment.values().filter(|c| **c > 2).count();
    let total = metric(port, "certwright_rollouts_total");
    op.stop();
    println!(
        "renewed {n} at once: all rolled out {all_s:.1} s after `renew --all`, the first to the last rollout {:.1} s; busiest 60 s {busiest} rollouts (limit {rate}), largest backlog {backlog}, {total} rollouts in all; {once} Deployments with exactly one new ReplicaSet, {more} with more (ReplicaSets waited for {:.0} s); operator peak {:.1} MiB, CPU {cpu_s:.1} s",
        (last - first) as f64 / 1000.0,
        waited.elapsed().as_secs_f64(),
        mib(rollout_peak)
    );
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("operator_scale is a benchmark: run `bash bench/operator.sh`; nothing to do under cargo test");
        return;
    }
    if std::env::var("SCENARIO").as_deref() == Ok("rollouts") {
        let logs =
            std::env::temp_dir().join(format!("certwright-rollout-bench-{}", std::process::id()));
        std::fs::create_dir_all(&logs).expect("log dir");
        rollouts(env_or("N", 1000), env_or("CLIENTS", 8), &logs);
        println!("operator logs: {}", logs.display());
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
